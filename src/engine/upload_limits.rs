//! What uploads may hold at once: the memory budget of their buffers, and
//! the number of sector files open for writing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::buffers::{self, Pool};
use crate::error::{Error, Result};
use crate::merkle::SECTOR_SIZE;

/// The budget when none is given: an eighth of physical memory, at most
/// 1 GiB. The daemon shares the host with the host software and the page
/// cache that serves reads; 1 GiB already lets 256 sectors arrive at full
/// speed at once (a sector in flight needs at most 16 buffers), far more
/// than a host's network brings in.
pub fn default_upload_memory() -> u64 {
    // SAFETY: sysconf reads system constants only.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let ram = (pages.max(0) as u64).saturating_mul(page.max(0) as u64);
    (ram / 8).clamp(MIN_UPLOAD_MEMORY, 1 << 30)
}

/// The smallest budget: one whole sector, so an upload written in any
/// order can always complete on its own.
pub const MIN_UPLOAD_MEMORY: u64 = SECTOR_SIZE as u64;

/// The cap on uploads when none is given: a quarter of the budget's
/// buffers, so that every upload open can hold the chunk it is filling and
/// three on their way to disk without waiting for another's.
pub fn default_max_uploads(upload_memory: u64) -> usize {
    (upload_memory / buffers::LEN as u64 / 4).max(1) as usize
}

pub(super) struct UploadLimits {
    pub(super) pool: Arc<Pool>,
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One upload counted against the cap, until dropped.
pub(crate) struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl UploadLimits {
    pub(super) fn new(memory: u64, max: usize) -> UploadLimits {
        UploadLimits {
            pool: Pool::new(memory),
            open: Arc::default(),
            max: max.max(1),
        }
    }

    /// The budget in bytes, and the cap.
    pub(super) fn describe(&self) -> (u64, usize) {
        ((self.pool.limit() * buffers::LEN) as u64, self.max)
    }

    /// Counts one more upload, or refuses past the cap.
    pub(super) fn admit(&self) -> Result<Permit> {
        let admitted = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            });
        match admitted {
            Ok(_) => Ok(Permit(self.open.clone())),
            Err(_) => Err(Error::TooManyUploads(format!(
                "too many sector files are open for writing ({}); close some or raise \
                 --max-uploads",
                self.max
            ))),
        }
    }
}
