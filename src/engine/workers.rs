//! Worker threads for a job's batch of sectors (a move copying them, a
//! check hashing them): the batch split among a few threads, each with a
//! sector-sized buffer of its own, the results back in the batch's order.
//!
//! A worker that panics is logged, raises an alert naming the job and the
//! volume, and fails the batch with an error: the caller never waits for a
//! thread that is gone, nor takes a missing result for a real one.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Alerts, Severity};
use crate::error::{Error, Result};
use crate::merkle::SECTOR_SIZE;

/// The job the workers serve, for the log and the alert if one panics.
pub(super) struct Crew<'a> {
    pub alerts: &'a Alerts,
    /// The job in words, e.g. "removing volume 3".
    pub job: &'a str,
    pub volume: u32,
}

/// A worker's panic, and the item it was working on.
struct Panicked {
    on: String,
    message: String,
}

impl Crew<'_> {
    /// Runs `work` on every item, spread over `workers` threads at most
    /// (worker `w` takes items `w`, `w + workers`, …); the results in item
    /// order. `describe` names an item for the log should its work panic.
    pub(super) fn run<T: Sync, R: Send>(
        &self,
        workers: usize,
        items: &[T],
        describe: impl Fn(&T) -> String + Sync,
        work: impl Fn(&T, &mut [u8]) -> R + Sync,
    ) -> Result<Vec<R>> {
        let size = workers.min(items.len()).max(1);
        // set by a worker that panicked: the others stop early
        let stop = AtomicBool::new(false);
        let share = |w: usize| -> std::result::Result<Vec<(usize, R)>, Panicked> {
            let mut buf = vec![0u8; SECTOR_SIZE];
            let mut done = Vec::new();
            for (i, item) in items.iter().enumerate().skip(w).step_by(size) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match catch_unwind(AssertUnwindSafe(|| work(item, &mut buf))) {
                    Ok(r) => done.push((i, r)),
                    Err(payload) => {
                        let payload = go_on_if_crash(payload);
                        stop.store(true, Ordering::Relaxed);
                        return Err(Panicked {
                            on: describe(item),
                            message: panic_message(payload.as_ref()),
                        });
                    }
                }
            }
            Ok(done)
        };
        let shares = std::thread::scope(|scope| {
            let spawned: Vec<_> = (1..size)
                .map(|w| {
                    let share = &share;
                    std::thread::Builder::new()
                        .name(format!("worker-{}-{w}", self.volume))
                        .spawn_scoped(scope, move || share(w))
                        .map_err(|e| (w, e))
                })
                .collect();
            // worker 0 is this thread, and so is any that could not start
            let mut shares = vec![share(0)];
            for s in spawned {
                shares.push(match s {
                    Ok(h) => h.join().unwrap_or_else(|payload| {
                        let payload = go_on_if_crash(payload);
                        Err(Panicked {
                            on: "its share of the batch".into(),
                            message: panic_message(payload.as_ref()),
                        })
                    }),
                    Err((w, e)) => {
                        no_thread(&format!("{} worker", self.job), &e);
                        share(w)
                    }
                });
            }
            shares
        });
        let mut all = Vec::with_capacity(items.len());
        for s in shares {
            match s {
                Ok(done) => all.extend(done),
                Err(p) => return Err(self.panicked(&p.on, &p.message)),
            }
        }
        all.sort_unstable_by_key(|(i, _)| *i);
        Ok(all.into_iter().map(|(_, r)| r).collect())
    }

    /// Runs `body` (a job's own work, on its thread); a panic in it is
    /// logged and alerted as a worker's, and returned as an error.
    pub(super) fn guard<R>(&self, what: &str, body: impl FnOnce() -> Result<R>) -> Result<R> {
        catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
            let payload = go_on_if_crash(payload);
            Err(self.panicked(what, &panic_message(payload.as_ref())))
        })
    }

    /// Logs a panic and raises its alert; the error the job fails with.
    fn panicked(&self, on: &str, message: &str) -> Error {
        let what = format!(
            "{}: a worker thread panicked while working on {on}: {message}",
            self.job
        );
        tracing::error!(volume = self.volume, "{what}");
        self.alerts.raise(
            &format!("worker-panic-{}", self.volume),
            Severity::Error,
            format!("{what} (volume {}); the job failed", self.volume),
            serde_json::json!({"volume": self.volume, "job": self.job, "item": on,
                "panic": message}),
        );
        Error::Io {
            context: what,
            source: std::io::Error::from_raw_os_error(libc::EIO),
        }
    }
}

/// Logs that a helper thread could not be started; the caller does its
/// work on its own thread instead.
pub(crate) fn no_thread(name: &str, e: &std::io::Error) {
    tracing::warn!("cannot start a {name} thread ({e}); its work is done on the calling thread");
}

/// Runs `work` on a thread of its own named `name`, or, when no thread can
/// be started, on the calling thread: late rather than never.
pub fn spawn_or_run(name: &str, work: impl FnOnce() + Send + 'static) {
    // taken back if the thread cannot start
    let job = std::sync::Arc::new(parking_lot::Mutex::new(Some(work)));
    let theirs = job.clone();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || theirs.lock().take().map(|w| w()));
    if let Err(e) = spawned {
        no_thread(name, &e);
        if let Some(w) = job.lock().take() {
            w()
        }
    }
}

/// A planned crash of the fault tests (`volume::faults`) is no worker's
/// failure: it goes on unwinding, so nothing after it runs (no cleanup,
/// no job row deleted), as after a real crash. Any other panic is handed
/// back to be reported.
fn go_on_if_crash(payload: Box<dyn Any + Send>) -> Box<dyn Any + Send> {
    #[cfg(any(test, feature = "faults"))]
    if crate::volume::faults::is_crash(payload.as_ref()) {
        std::panic::resume_unwind(payload);
    }
    payload
}

/// The text a panic was raised with.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn crew(alerts: &Alerts) -> Crew<'_> {
        Crew {
            alerts,
            job: "removing volume 7",
            volume: 7,
        }
    }

    #[test]
    fn results_come_back_in_item_order_with_a_buffer_each() {
        let alerts = Alerts::default();
        let items: Vec<u64> = (0..37).collect();
        let out = crew(&alerts)
            .run(
                4,
                &items,
                |i| format!("item {i}"),
                |i, buf| {
                    assert_eq!(buf.len(), SECTOR_SIZE);
                    i * 2
                },
            )
            .unwrap();
        assert_eq!(out, (0..37).map(|i| i * 2).collect::<Vec<_>>());
        assert!(alerts.list().is_empty());
    }

    thread_local! {
        /// What was logged on this thread since the capture began.
        static LOG: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    /// A tracing writer into the emitting thread's `LOG`.
    struct ThreadLog;

    impl Write for ThreadLog {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            LOG.with(|log| log.borrow_mut().extend_from_slice(buf));
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Logs of every thread go to its own `LOG`. A process-wide subscriber:
    /// one scoped to a thread can lose events to tracing's interest cache
    /// while other tests log on their threads.
    fn capture_logs() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(|| ThreadLog)
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other test sets a global subscriber");
        });
        LOG.with(|log| log.borrow_mut().clear());
    }

    #[test]
    fn a_panicking_worker_is_logged_alerted_and_fails_the_batch() {
        let alerts = Alerts::default();
        capture_logs();
        let items: Vec<u64> = (0..16).collect();
        let result = crew(&alerts).run(
            4,
            &items,
            |i| format!("sector number {i}"),
            |&i, _| {
                if i == 5 {
                    panic!("boom on five");
                }
                i
            },
        );
        let err = result.expect_err("the batch fails");
        assert_eq!(err.errno(), libc::EIO);
        let text = err.to_string();
        assert!(text.contains("removing volume 7"), "{text}");
        assert!(text.contains("sector number 5"), "{text}");
        assert!(text.contains("boom on five"), "{text}");

        let alert = alerts.get("worker-panic-7").expect("an alert is raised");
        assert_eq!(alert.severity, Severity::Error);
        assert!(
            alert.message.contains("removing volume 7"),
            "{}",
            alert.message
        );
        assert!(alert.message.contains("boom on five"), "{}", alert.message);
        assert_eq!(alert.data["volume"], 7);

        let logged = LOG.with(|log| String::from_utf8(log.borrow().clone()).unwrap());
        assert!(logged.contains("ERROR"), "{logged}");
        assert!(
            logged.contains("panicked while working on sector number 5: boom on five"),
            "{logged}"
        );
    }

    #[test]
    fn a_panic_in_the_job_itself_is_an_error_too() {
        let alerts = Alerts::default();
        let result: Result<()> =
            crew(&alerts).guard("the job's own thread", || panic!("the job broke: {}", 42));
        let text = result.expect_err("the job fails").to_string();
        assert!(text.contains("the job broke: 42"), "{text}");
        assert!(alerts.get("worker-panic-7").is_some());
    }
}
