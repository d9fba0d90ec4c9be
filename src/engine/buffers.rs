//! Page-aligned 256 KiB buffers that sector data is gathered in, so that a
//! volume can write it past the page cache; taken from a pool that never
//! maps more than its budget.
//!
//! Each is its own anonymous mapping rather than a heap block: aligned
//! blocks of this size, freed whenever more were out than the pool keeps,
//! fragmented the allocator's heap and the daemon's memory grew with it.
//!
//! A buffer goes back to its pool when dropped, wherever that happens (the
//! idle-priority hashing thread included), so the count of buffers mapped
//! is exact and the budget cannot leak.

use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::SegQueue;
use memmap2::MmapMut;
use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::merkle::SECTOR_SIZE;

/// Bytes in a buffer.
pub(super) const LEN: usize = 1 << 18;

/// Idle buffers kept mapped for reuse (within the budget): a fresh one
/// takes a page fault per 4 KiB on its first writes, a reused one none.
const SPARE_MAX: usize = 8 * SECTOR_SIZE / LEN;

/// Longest a taker waits while buffers are on their way back (chunks being
/// written to their slots): a device that slow fails the write rather than
/// hold the mount's thread for ever.
const WAIT_MAX: Duration = Duration::from_secs(10);
/// Longest a taker waits when nothing is on its way back: only another
/// upload going on (its writer filling a chunk) or closing frees a buffer
/// then, and every thread of the mount may be waiting here.
const WAIT_IDLE: Duration = Duration::from_secs(1);
/// How often a waiter looks again: a buffer given back by the hashing
/// thread wakes nobody (see [`Buf`]'s drop).
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// The buffers of one engine, at most `limit` mapped at once.
pub(super) struct Pool {
    limit: usize,
    /// Buffers mapped: handed out, kept, or spare.
    mapped: AtomicUsize,
    /// Idle buffers, holding whatever their last user left in them (zeroing
    /// 4 MiB per sector cost more than the rest of the copying), so a user
    /// overwrites or zeroes all it reads. Lock-free: the idle-priority
    /// hashing thread gives buffers back too, and must hold no lock a
    /// writer could wait on.
    spare: SegQueue<MmapMut>,
    /// Buffers whose bytes are already in a slot, kept (oldest first) while
    /// the budget has room, so an upload whose slot is lost can still store
    /// the sector elsewhere; taken back first when it has none.
    kept: Mutex<VecDeque<(u64, Arc<Buf>)>>,
    /// Buffers queued to a slot's writer: they come back by themselves.
    in_flight: AtomicUsize,
    waiting: Mutex<()>,
    returned: Condvar,
}

thread_local! {
    /// Set on the idle-priority hashing thread: it never wakes a waiter (a
    /// wake takes a lock inside the condition variable).
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as one that must not take locks when it gives
/// a buffer back.
pub(super) fn quiet_thread() {
    QUIET.with(|q| q.set(true));
}

impl Pool {
    /// A pool mapping at most `bytes` (at least one buffer).
    pub(super) fn new(bytes: u64) -> Arc<Pool> {
        Arc::new(Pool {
            limit: (bytes / LEN as u64).max(1) as usize,
            mapped: AtomicUsize::new(0),
            spare: SegQueue::new(),
            kept: Mutex::new(VecDeque::new()),
            in_flight: AtomicUsize::new(0),
            waiting: Mutex::new(()),
            returned: Condvar::new(),
        })
    }

    /// Buffers the pool may map.
    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// A buffer of [`LEN`] bytes, holding whatever its last user left in
    /// it. Past the budget, waits for one to come back: while some are on
    /// their way (being written to their slots) up to [`WAIT_MAX`], else
    /// up to [`WAIT_IDLE`]; then refuses with [`Error::OutOfBuffers`]
    /// naming `what`. A mapping the system refuses is an [`Error::Io`].
    pub(super) fn take(self: &Arc<Self>, what: &dyn std::fmt::Display) -> Result<Buf> {
        let start = Instant::now();
        let mut idle_since: Option<Instant> = None;
        loop {
            if let Some(buf) = self.try_take()? {
                return Ok(buf);
            }
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                idle_since = None;
            } else if idle_since.get_or_insert_with(Instant::now).elapsed() >= WAIT_IDLE {
                return Err(self.exhausted(what, "no buffer was on its way back"));
            }
            if start.elapsed() >= WAIT_MAX {
                return Err(self.exhausted(what, "none came back in time"));
            }
            let mut guard = self.waiting.lock();
            self.returned.wait_for(&mut guard, WAIT_SLICE);
        }
    }

    fn exhausted(&self, what: &dyn std::fmt::Display, why: &str) -> Error {
        Error::OutOfBuffers(format!(
            "{what}: the uploads' memory budget ({} MiB) is all in use and {why}; other \
             sector files open for writing hold it (written out of order, or left open \
             half written): close them, or raise --upload-memory",
            (self.limit * LEN) >> 20
        ))
    }

    /// A spare buffer, a new mapping within the budget, or one taken back
    /// from those kept; `None` when the budget is all in use.
    fn try_take(self: &Arc<Self>) -> Result<Option<Buf>> {
        loop {
            if let Some(map) = self.spare.pop() {
                return Ok(Some(self.wrap(map)));
            }
            let mapped = self.mapped.load(Ordering::SeqCst);
            if mapped < self.limit {
                if self
                    .mapped
                    .compare_exchange(mapped, mapped + 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_err()
                {
                    continue;
                }
                return match MmapMut::map_anon(LEN) {
                    Ok(map) => Ok(Some(self.wrap(map))),
                    Err(e) => {
                        self.mapped.fetch_sub(1, Ordering::SeqCst);
                        Err(Error::io(
                            format!("cannot map a {} KiB buffer for sector data", LEN >> 10),
                            e,
                        ))
                    }
                };
            }
            // dropped outside the lock: its buffer comes back to `spare`
            // unless a reader still holds it, then try the next
            let oldest = self.kept.lock().pop_front();
            match oldest {
                Some(kept) => drop(kept),
                None => return Ok(None),
            }
        }
    }

    fn wrap(self: &Arc<Self>, map: MmapMut) -> Buf {
        Buf {
            map: ManuallyDrop::new(map),
            pool: self.clone(),
        }
    }

    /// Keeps `buf` (whose bytes are in a slot now) for upload `owner` while
    /// the budget has room; drops it otherwise.
    pub(super) fn keep(&self, owner: u64, buf: Arc<Buf>) {
        if self.mapped.load(Ordering::SeqCst) < self.limit || !self.spare.is_empty() {
            self.kept.lock().push_back((owner, buf));
        }
    }

    /// Drops what is kept for upload `owner` (it closed or went away).
    pub(super) fn forget(&self, owner: u64) {
        let mine: VecDeque<_> = {
            let mut kept = self.kept.lock();
            let (mine, others) = std::mem::take(&mut *kept)
                .into_iter()
                .partition(|(o, _)| *o == owner);
            *kept = others;
            mine
        };
        drop(mine);
    }

    /// Counts a buffer queued to a slot's writer until the guard is dropped
    /// (written, failed, or the queue dropped).
    pub(super) fn flight(self: &Arc<Self>) -> Flight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Flight(self.clone())
    }

    fn wake(&self) {
        if !QUIET.with(|q| q.get()) {
            self.returned.notify_all();
        }
    }

    fn give_back(&self, map: MmapMut) {
        self.spare.push(map);
        // trimmed here, not on the hashing thread: an unmap takes the
        // process's memory-map lock, which a thread at idle priority could
        // keep while it is not scheduled
        if !QUIET.with(|q| q.get()) {
            while self.spare.len() > SPARE_MAX {
                match self.spare.pop() {
                    Some(extra) => {
                        drop(extra);
                        self.mapped.fetch_sub(1, Ordering::SeqCst);
                    }
                    None => break,
                }
            }
        }
        self.wake();
    }
}

/// A buffer on its way to a slot; see [`Pool::flight`].
pub(super) struct Flight(Arc<Pool>);

impl Drop for Flight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.wake();
    }
}

/// A buffer of [`LEN`] bytes from a [`Pool`], back in it when dropped.
pub(super) struct Buf {
    map: ManuallyDrop<MmapMut>,
    pool: Arc<Pool>,
}

impl Deref for Buf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: `map` is taken once, here, and never used again.
        let map = unsafe { ManuallyDrop::take(&mut self.map) };
        self.pool.give_back(map);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_the_buffers_mapped() {
        let pool = Pool::new(2 * LEN as u64);
        let a = pool.take(&"test").unwrap();
        let b = pool.take(&"test").unwrap();
        let Err(refused) = pool.take(&"test") else {
            panic!("a third buffer past a budget of two")
        };
        assert_eq!(refused.errno(), libc::ENOBUFS, "{refused}");
        drop(a);
        let c = pool.take(&"test").unwrap();
        assert_eq!(pool.mapped.load(Ordering::SeqCst), 2);
        drop((b, c));
    }

    #[test]
    fn kept_buffers_are_taken_back_when_the_budget_is_used() {
        let pool = Pool::new(LEN as u64);
        let a = pool.take(&"test").unwrap();
        pool.keep(7, Arc::new(a));
        // the pool is full, so the kept one is dropped at once
        assert!(pool.kept.lock().is_empty());
        let b = pool.take(&"test").unwrap();
        drop(b);
        let pool = Pool::new(2 * LEN as u64);
        let a = pool.take(&"test").unwrap();
        pool.keep(7, Arc::new(a));
        let b = pool.take(&"test").unwrap();
        let c = pool.take(&"test").unwrap();
        assert!(pool.kept.lock().is_empty(), "taken back for c");
        drop((b, c));
    }
}
