//! Page-aligned 256 KiB buffers, pooled: what sector data is gathered in so
//! that a volume can write it past the page cache.

use aligned_vec::{ABox, AVec, ConstAlign};
use parking_lot::Mutex;

use crate::merkle::SECTOR_SIZE;
use crate::volume::DIRECT_ALIGN;

/// Bytes in a buffer.
pub(super) const LEN: usize = 1 << 18;

pub(super) type Buf = ABox<[u8], ConstAlign<DIRECT_ALIGN>>;

/// Buffers kept for reuse: a fresh one takes a page fault per 4 KiB on its
/// first writes, a reused one none. They keep their old bytes (zeroing 4 MiB
/// per sector cost more than the rest of the copying), so a user overwrites
/// or zeroes all it reads.
static SPARE: Mutex<Vec<Buf>> = Mutex::new(Vec::new());
/// Enough for a few sectors on the way at once.
const SPARE_MAX: usize = 8 * SECTOR_SIZE / LEN;

/// A buffer of [`LEN`] bytes, holding whatever its last user left in it.
pub(super) fn take() -> Buf {
    SPARE.lock().pop().unwrap_or_else(|| {
        let mut v = AVec::<u8, ConstAlign<DIRECT_ALIGN>>::with_capacity(DIRECT_ALIGN, LEN);
        v.resize(LEN, 0);
        v.into_boxed_slice()
    })
}

/// A buffer of no bytes, to stand in for one while it is moved.
pub(super) fn empty() -> Buf {
    AVec::new(DIRECT_ALIGN).into_boxed_slice()
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
