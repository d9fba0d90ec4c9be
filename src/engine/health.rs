//! Volume health: re-opening unavailable volumes when their file is back,
//! noticing files that vanish or keep failing while mounted, and the
//! background scrub that verifies every sector over time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{Engine, Severity, VolumeState, now_secs};
use crate::error::{Error, Result};

/// How often unavailable volumes are retried and files looked at.
const HEALTH_INTERVAL: Duration = Duration::from_secs(10);

/// The background scrub: every sector verified once per `interval`, reading
/// at most `bytes_per_sec`.
#[derive(Debug, Clone, Copy)]
pub struct ScrubOptions {
    pub interval: Duration,
    pub bytes_per_sec: u64,
}

/// Health's flags.
#[derive(Default)]
pub(super) struct Health {
    /// Set at shutdown: background loops (health, scrub) end.
    stopping: AtomicBool,
    /// Held while an unavailable volume is reopened: one at a time.
    reopening: Mutex<()>,
    /// Volumes seen unavailable: since when, and whether their sectors'
    /// repair was asked for.
    unavailable: Mutex<std::collections::HashMap<u32, (Instant, bool)>>,
}

impl Health {
    /// Tells the background loops to end.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub(super) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

impl Engine {
    /// Re-opens an unavailable volume whose file is back (missing, short or
    /// unreadable before). Ready at once, no restart needed.
    pub fn reopen_volume(&self, id: u32) -> Result<()> {
        let v = self.volume(id)?;
        // one at a time: two reopens would both punch the slots freed while
        // it was away, the second after the first gave them back
        let _one = self.health.reopening.lock();
        if v.state() != VolumeState::Unavailable {
            return Ok(());
        }
        let (slots, _) = self.alloc.lock().usage(id).unwrap_or((0, 0));
        let file = self.open_checked(&v, slots).map_err(|m| {
            Error::Unavailable(format!("volume {id} is still unavailable: {}", m.reason))
        })?;
        // a disk that fails rarely vanishes: it answers EIO, so it stays
        // out of service until a read and a write of it work again
        file.probe().map_err(|e| {
            Error::Unavailable(format!(
                "volume {id} is still unavailable: a read and a write of {} fail: {e}",
                v.path.display()
            ))
        })?;
        // slots freed while it was away are punched out before it takes
        // new sectors again, and before it has its file: a free meanwhile
        // leaves its slot pending rather than punch it twice
        let file = Arc::new(file);
        self.retry_punches(id, &file);
        v.set_file(file);
        self.alloc.lock().set_device(id, v.device());
        self.note_back_in_service(&v);
        self.aggregates_wake();
        {
            // a job under way keeps its state (a volume being removed must
            // not take new sectors because its file came back); decided
            // under the jobs' lock, so a job ending meanwhile sets it after
            let running = self.jobs.running.lock();
            v.set_state_if_open(running.get(&id).map_or(VolumeState::Ready, |c| c.state));
            self.alloc.lock().set_writable(id, v.writable());
        }
        self.alerts.raise(
            &format!("volume-back-{id}"),
            Severity::Info,
            format!("volume {id} ({}) is available again", v.path.display()),
            serde_json::json!({"volume": id}),
        );
        self.space_changed();
        Ok(())
    }

    /// One look at every volume: retry the unavailable ones, and take out
    /// of service those whose file was removed or replaced under them.
    pub fn health_pass(&self) {
        for id in self.volume_ids() {
            let Ok(v) = self.volume(id) else { continue };
            self.note_availability(id, v.state() == VolumeState::Unavailable);
            if v.state() == VolumeState::Unavailable {
                match self.reopen_volume(id) {
                    Ok(()) => tracing::info!(volume = id, "volume {id} is back"),
                    // its alert says so already; this, every pass
                    Err(e) => tracing::debug!(volume = id, "{e}"),
                }
                continue;
            }
            self.check_file_still_there(&v);
        }
        self.check_overcommit();
    }

    /// Churn: a volume unavailable for `repair_after` has its sectors'
    /// copies made elsewhere; one back after that has the extra copies
    /// dropped.
    fn note_availability(&self, id: u32, unavailable: bool) {
        let mut seen = self.health.unavailable.lock();
        if !unavailable {
            if let Some((_, true)) = seen.remove(&id) {
                drop(seen);
                self.request_repair(&format!("volume {id} is back"));
            }
            return;
        }
        let (since, asked) = seen.entry(id).or_insert((Instant::now(), false));
        if !*asked && since.elapsed() >= self.options.repair_after {
            *asked = true;
            drop(seen);
            self.request_repair(&format!(
                "volume {id} has been unavailable for {}",
                crate::plural::count(self.options.repair_after.as_secs(), "second")
            ));
        }
    }

    /// Starts the health loop and, if asked, the scrub. Both end at
    /// [`shutdown`](Self::shutdown).
    pub fn start_background(self: &Arc<Self>, scrub: Option<ScrubOptions>) -> Result<()> {
        self.spawn_background("volume-health", |engine| {
            while engine.sleep_unless_stopping(HEALTH_INTERVAL) {
                engine.health_pass();
            }
        })?;
        self.spawn_background("repair", |engine| engine.repair_loop())?;
        self.spawn_background("aggregates", |engine| engine.aggregates_loop())?;
        if self.cold.is_some() {
            self.spawn_background("cold-mover", |engine| engine.cold_loop())?;
        }
        if self.cache.is_some() {
            self.spawn_background("cache", |engine| engine.cache_loop())?;
        }
        if let Some(opts) = scrub {
            self.spawn_background("scrub", move |engine| engine.scrub_loop(opts))?;
        }
        Ok(())
    }

    /// Runs `f` on a thread of its own named `name`, joined at shutdown.
    pub(super) fn spawn_background(
        self: &Arc<Self>,
        name: &str,
        f: impl FnOnce(&Engine) + Send + 'static,
    ) -> Result<()> {
        let engine = self.clone();
        let t = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || f(&engine))
            .map_err(|e| Error::io(format!("cannot start the {name} thread"), e))?;
        self.jobs.threads.lock().push(t);
        Ok(())
    }

    /// Lowers the calling thread's priority to `nice` (threads it starts
    /// inherit it); `what` names it in the log when that cannot be done.
    pub(super) fn lower_priority(nice: libc::c_int, what: &str) {
        // SAFETY: plain syscall on the calling thread (tid 0: this one).
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } != 0 {
            tracing::debug!(
                "cannot lower the {what}'s priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }

    /// Sleeps up to `d`; false when the engine is stopping.
    pub(super) fn sleep_unless_stopping(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.health.stopping() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
        }
        !self.health.stopping()
    }

    /// Walks every sector in id order from where the last pass stopped (so
    /// the next sector is always the one checked longest ago; new sectors
    /// were verified when stored), verifying at the given rate.
    fn scrub_loop(&self, opts: ScrubOptions) {
        loop {
            let pass_started = Instant::now();
            match self.scrub_pass(opts) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::error!("scrub pass failed: {e}"),
            }
            let rest = opts.interval.saturating_sub(pass_started.elapsed());
            if !self.sleep_unless_stopping(rest.max(Duration::from_secs(1))) {
                return;
            }
        }
    }

    /// One scrub pass; false if the engine is stopping.
    pub fn scrub_pass(&self, opts: ScrubOptions) -> Result<bool> {
        let mut cursor = self.meta.scrub_cursor()?;
        let started = Instant::now();
        let mut bytes: u64 = 0;
        loop {
            if self.health.stopping() {
                return Ok(false);
            }
            let batch = self.meta.list_sectors(cursor, 8)?;
            let Some(last) = batch.last() else {
                self.meta.set_scrub_cursor(0)?;
                return Ok(true);
            };
            cursor = last.id;
            let mut good = Vec::new();
            let mut buf = vec![0u8; crate::merkle::SECTOR_SIZE];
            let mut copies = Vec::with_capacity(batch.len());
            for s in &batch {
                copies.extend(self.meta.copies_of(s.id)?);
            }
            for s in &copies {
                // a volume removed or out of service meanwhile: its alerts
                // say so, and a later pass reads the sector where it is
                let Ok(v) = self.volume(s.volume_id) else {
                    continue;
                };
                let Ok(file) = v.file() else { continue };
                match file.read(s.slot, 0, &mut buf) {
                    Ok(()) if crate::merkle::sector_root(&buf) == s.root => {
                        good.push((s.id, s.volume_id))
                    }
                    // moved or freed since it was listed: nothing to hold
                    // against it (the next pass reads it where it is)
                    _ if !self.still_at(s)? => {}
                    Err(e) => {
                        self.note_scrub_read_error(&v, &e.to_string());
                        self.heal_later(s);
                    }
                    Ok(()) => self.note_corrupt(&v, s),
                }
                bytes += buf.len() as u64;
            }
            self.meta.mark_checked(&good, now_secs())?;
            self.meta.set_scrub_cursor(cursor)?;
            // rate limit: never ahead of bytes_per_sec on average
            let due = Duration::from_secs_f64(bytes as f64 / opts.bytes_per_sec.max(1) as f64);
            let ahead = due.saturating_sub(started.elapsed());
            if !ahead.is_zero() && !self.sleep_unless_stopping(ahead) {
                return Ok(false);
            }
        }
    }
}
