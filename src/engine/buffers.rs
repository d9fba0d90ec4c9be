//! Page-aligned 256 KiB buffers, pooled: what sector data is gathered in so
//! that a volume can write it past the page cache.
//!
//! Each is its own anonymous mapping rather than a heap block: aligned
//! blocks of this size, freed whenever more were out than the pool keeps,
//! fragmented the allocator's heap and the daemon's memory grew with it.

use std::sync::{Arc, LazyLock};

use crossbeam_queue::SegQueue;
use memmap2::MmapMut;

use crate::merkle::SECTOR_SIZE;

/// Bytes in a buffer.
pub(super) const LEN: usize = 1 << 18;

pub(super) type Buf = MmapMut;

/// Buffers kept for reuse: a fresh one takes a page fault per 4 KiB on its
/// first writes, a reused one none. They keep their old bytes (zeroing 4 MiB
/// per sector cost more than the rest of the copying), so a user overwrites
/// or zeroes all it reads. Lock-free: the idle-priority hashing thread gives
/// buffers back too, and should hold no lock a writer could wait on.
static SPARE: SegQueue<Buf> = SegQueue::new();
/// Enough for a few sectors on the way at once.
const SPARE_MAX: usize = 8 * SECTOR_SIZE / LEN;

/// A buffer of [`LEN`] bytes, holding whatever its last user left in it.
/// Panics if the system has no memory left to map.
pub(super) fn take() -> Buf {
    SPARE.pop().unwrap_or_else(|| {
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

/// Keeps `buf` for reuse, or unmaps it when the pool is full.
pub(super) fn give_back(buf: Buf) {
    keep(buf);
    // trimmed here rather than in `keep`: see there
    while SPARE.len() > SPARE_MAX {
        drop(SPARE.pop());
    }
}

/// Keeps `buf` for reuse even when the pool is full, for the idle-priority
/// hashing thread: it must not unmap (which takes the process's memory-map
/// lock); the next [`give_back`] trims the pool.
pub(super) fn keep(buf: Buf) {
    if buf.len() == LEN {
        SPARE.push(buf);
    }
}
