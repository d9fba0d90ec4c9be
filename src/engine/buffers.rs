//! Page-aligned 256 KiB buffers, pooled: what sector data is gathered in so
//! that a volume can write it past the page cache.
//!
//! Each is its own anonymous mapping rather than a heap block: aligned
//! blocks of this size, freed whenever more were out than the pool keeps,
//! fragmented the allocator's heap and the daemon's memory grew with it.

use std::sync::{Arc, LazyLock};

use crossbeam_queue::SegQueue;
use memmap2::MmapMut;
use parking_lot::Mutex;

use crate::merkle::SECTOR_SIZE;

/// Bytes in a buffer.
pub(super) const LEN: usize = 1 << 18;

pub(super) type Buf = MmapMut;

/// Buffers kept for reuse: a fresh one takes a page fault per 4 KiB on its
/// first writes, a reused one none. They keep their old bytes (zeroing 4 MiB
/// per sector cost more than the rest of the copying), so a user overwrites
/// or zeroes all it reads.
static SPARE: Mutex<Vec<Buf>> = Mutex::new(Vec::new());
/// Buffers given back by a thread that must not take the pool's lock (see
/// [`give_back_later`]); taken before the pool's.
static RETURNED: SegQueue<Buf> = SegQueue::new();
/// Enough for a few sectors on the way at once.
const SPARE_MAX: usize = 8 * SECTOR_SIZE / LEN;

/// A buffer of [`LEN`] bytes, holding whatever its last user left in it.
/// Panics if the system has no memory left to map.
pub(super) fn take() -> Buf {
    if let Some(buf) = RETURNED.pop() {
        return buf;
    }
    SPARE.lock().pop().unwrap_or_else(|| {
        MmapMut::map_anon(LEN).unwrap_or_else(|e| panic!("cannot map a {LEN}-byte buffer: {e}"))
    })
}

/// A shared buffer of no bytes, to stand in for one while it is moved.
pub(super) fn empty() -> Arc<Buf> {
    static EMPTY: LazyLock<Arc<Buf>> = LazyLock::new(|| {
        Arc::new(MmapMut::map_anon(0).unwrap_or_else(|e| panic!("cannot map a buffer: {e}")))
    });
    EMPTY.clone()
}

/// Keeps `buf` for reuse without taking a lock: for the idle-priority
/// hashing thread, which could be stopped while holding the pool's lock (or
/// the memory map's, were it to unmap the buffer). At most as many wait
/// here as were ever out at once.
pub(super) fn give_back_later(buf: Buf) {
    RETURNED.push(buf);
}

/// Keeps `buf` for reuse.
pub(super) fn give_back(buf: Buf) {
    if buf.len() != LEN {
        return;
    }
    let mut spare = SPARE.lock();
    if spare.len() < SPARE_MAX {
        spare.push(buf);
    }
}
