//! Roots of uploads' chunks, hashed in the background as the chunks
//! complete: a lone writer's transfer leaves a core idle (the writer and the
//! mount take turns), so the close finds most roots done instead of hashing
//! the whole sector while the writer waits.
//!
//! One thread serves every upload, at idle priority, from one queue: it
//! never delays a writer or the mount. A thread at that priority can be
//! stopped for long on a busy machine, so nothing on the write path ever
//! waits for it, not even for a lock it might hold: the queue is lock-free
//! and its thread is woken with `unpark`, jobs hold their upload and bytes
//! only weakly, a buffer the thread ends up holding last goes back to the
//! pool whatever it holds (an unmap takes the process's memory-map lock,
//! which a thread at idle priority could keep while it is not scheduled),
//! and a close that finds a root missing (or being stored) hashes that
//! chunk itself. (The pool's queue can still make a writer spin for a
//! moment, should this thread be stopped halfway through a push.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::Thread;

use crossbeam_queue::SegQueue;
use parking_lot::Mutex;

use super::buffers::{self, Buf};
use crate::merkle::{self, Root};

/// What one upload shares with the thread.
struct Shared {
    /// Per chunk, the root of a sending of it.
    roots: Mutex<Vec<Option<(u64, Root)>>>,
    /// Set at close: what is still queued is no longer wanted.
    stopped: AtomicBool,
}

struct Job {
    upload: Weak<Shared>,
    chunk: usize,
    /// Which sending of the chunk this is.
    sent: u64,
    buf: Weak<Buf>,
}

/// Most jobs queued at once; beyond, chunks are left for their close to
/// hash (a thread starved on a saturated host must not grow the queue
/// without end).
const MAX_QUEUED: usize = 4096;

struct Queue {
    jobs: SegQueue<Job>,
    thread: Thread,
}

static QUEUE: OnceLock<Option<Queue>> = OnceLock::new();

/// The queue, its thread started on first use; `None` if no thread could be
/// had (closes then hash everything).
fn queue() -> Option<&'static Queue> {
    QUEUE
        .get_or_init(|| {
            let handle = std::thread::Builder::new()
                .name("chunk-hash".into())
                .spawn(serve)
                .map_err(|e| super::workers::no_thread("chunk-hash", &e))
                .ok()?;
            Some(Queue {
                jobs: SegQueue::new(),
                thread: handle.thread().clone(),
            })
        })
        .as_ref()
}

fn serve() {
    idle_priority();
    buffers::quiet_thread();
    // woken by the first job, once the queue is in place
    let q = loop {
        match QUEUE.get() {
            Some(Some(q)) => break q,
            _ => std::thread::park(),
        }
    };
    loop {
        match q.jobs.pop() {
            Some(job) => hash(job),
            None => std::thread::park(),
        }
    }
}

fn hash(job: Job) {
    let Some(upload) = job.upload.upgrade() else {
        return;
    };
    if upload.stopped.load(Ordering::Relaxed) {
        return;
    }
    let Some(buf) = job.buf.upgrade() else {
        return;
    };
    let root = merkle::subtree_root(&buf);
    // back to its pool if the upload let go of it meanwhile (without an
    // unmap or a wake on this thread: see `buffers::quiet_thread`)
    drop(buf);
    upload.roots.lock()[job.chunk] = Some((job.sent, root));
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
    shared: Arc<Shared>,
}

impl ChunkHasher {
    pub(super) fn new(chunks: usize) -> ChunkHasher {
        ChunkHasher {
            shared: Arc::new(Shared {
                roots: Mutex::new(vec![None; chunks]),
                stopped: AtomicBool::new(false),
            }),
        }
    }

    /// Queues chunk `chunk`, in its `sent`-th sending, to be hashed.
    pub(super) fn send(&self, chunk: usize, sent: u64, buf: &Arc<Buf>) {
        self.shared.stopped.store(false, Ordering::Relaxed);
        if let Some(q) = queue().filter(|q| q.jobs.len() < MAX_QUEUED) {
            q.jobs.push(Job {
                upload: Arc::downgrade(&self.shared),
                chunk,
                sent,
                buf: Arc::downgrade(buf),
            });
            q.thread.unpark();
        }
    }

    /// Drops what is still queued: the close hashes what is left itself,
    /// at once, rather than wait for the thread.
    pub(super) fn stop(&self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
    }

    /// Chunk `chunk`'s root if its `sent`-th sending has been hashed (a
    /// root of bytes it no longer holds is never returned); `None` too
    /// while the thread is storing one, rather than wait for it.
    pub(super) fn root(&self, chunk: usize, sent: u64) -> Option<Root> {
        match self.shared.roots.try_lock()?[chunk] {
            Some((s, root)) if s == sent => Some(root),
            _ => None,
        }
    }
}
