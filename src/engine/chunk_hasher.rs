//! Roots of uploads' chunks, hashed in the background as the chunks
//! complete: a lone writer's transfer leaves a core idle (the writer and the
//! mount take turns), so the close finds most roots done instead of hashing
//! the whole sector while the writer waits.
//!
//! One thread serves every upload, at idle priority, from one queue: it
//! never delays a writer or the mount, and a close takes its upload's
//! queued chunks back and hashes them itself.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use parking_lot::{Condvar, Mutex};

use super::buffers::{self, Buf};
use crate::merkle::{self, Root};

/// Per chunk of one upload, the root of a sending of it.
type Roots = Mutex<Vec<Option<(u64, Root)>>>;

struct Job {
    roots: Arc<Roots>,
    chunk: usize,
    /// Which sending of the chunk this is.
    sent: u64,
    buf: Arc<Buf>,
}

struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

static QUEUE: Queue = Queue {
    jobs: Mutex::new(VecDeque::new()),
    ready: Condvar::new(),
};

/// The queue, its thread started on first use; `None` if no thread could be
/// had (closes then hash everything).
fn queue() -> Option<&'static Queue> {
    static RUNNING: OnceLock<bool> = OnceLock::new();
    let running = *RUNNING.get_or_init(|| {
        std::thread::Builder::new()
            .name("chunk-hash".into())
            .spawn(serve)
            .is_ok()
    });
    running.then_some(&QUEUE)
}

fn serve() {
    idle_priority();
    loop {
        let job = {
            let mut jobs = QUEUE.jobs.lock();
            loop {
                match jobs.pop_front() {
                    Some(job) => break job,
                    None => QUEUE.ready.wait(&mut jobs),
                }
            }
        };
        let root = merkle::subtree_root(&job.buf);
        // the last holder once the upload let go: back to the pool
        if let Ok(buf) = Arc::try_unwrap(job.buf) {
            buffers::give_back(buf);
        }
        job.roots.lock()[job.chunk] = Some((job.sent, root));
    }
}

/// Runs the hashing thread only when a core would otherwise idle: the
/// writer and the mount's threads, woken for each piece, must never wait for
/// a hash (at normal priority they did, and the transfer slowed by half).
fn idle_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread with a valid parameter.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        tracing::debug!(
            "cannot lower the chunk hasher's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// One upload's chunks in the background queue.
pub(super) struct ChunkHasher {
    roots: Arc<Roots>,
}

impl ChunkHasher {
    pub(super) fn new(chunks: usize) -> ChunkHasher {
        ChunkHasher {
            roots: Arc::new(Mutex::new(vec![None; chunks])),
        }
    }

    /// Queues chunk `chunk`, in its `sent`-th sending, to be hashed.
    pub(super) fn send(&self, chunk: usize, sent: u64, buf: Arc<Buf>) {
        if let Some(q) = queue() {
            q.jobs.lock().push_back(Job {
                roots: self.roots.clone(),
                chunk,
                sent,
                buf,
            });
            q.ready.notify_one();
        }
    }

    /// Takes this upload's chunks out of the queue: the close hashes what
    /// is left itself, at once, rather than wait for a thread that runs
    /// only when a core is idle. Their buffers are free again.
    pub(super) fn stop(&self) {
        if let Some(q) = queue() {
            q.jobs
                .lock()
                .retain(|job| !Arc::ptr_eq(&job.roots, &self.roots));
        }
    }

    /// Chunk `chunk`'s root if its `sent`-th sending has been hashed: a root
    /// of bytes it no longer holds is never returned.
    pub(super) fn root(&self, chunk: usize, sent: u64) -> Option<Root> {
        match self.roots.lock()[chunk] {
            Some((s, root)) if s == sent => Some(root),
            _ => None,
        }
    }
}

impl Drop for ChunkHasher {
    fn drop(&mut self) {
        self.stop();
    }
}
