//! Volume files: sparse files of N slots, slot i at byte offset i × 4 MiB
//! (the hostd/siad data-file format: no header, no overflow file).

mod disk;
#[cfg(any(test, feature = "faults"))]
pub mod faults;
pub mod scan;
pub mod sidecar;
mod storage;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use disk::{DIRECT_ALIGN, Disk};
pub use storage::{Storage, StorageOpener};

use crate::merkle::SECTOR_SIZE;
use crate::plural::count;

pub const SECTOR_BYTES: u64 = SECTOR_SIZE as u64;

/// An open volume file: slots over a [`Storage`]. Every method uses
/// positioned I/O, so one handle serves many threads at once without a lock.
#[derive(Debug)]
pub struct VolumeFile {
    storage: Box<dyn Storage>,
    path: PathBuf,
    /// Syncs of this file that failed so far (see [`sync_since`](Self::sync_since)).
    sync_errors: AtomicU64,
}

/// What [`VolumeFile::sync_since`] fails with when its own sync succeeded
/// but another failed meanwhile: this write may be lost, and the error was
/// already counted against the volume by the sync that saw it.
#[derive(Debug)]
pub struct SharedSyncError;

impl std::fmt::Display for SharedSyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "a write-back error on this volume file since the write began: its bytes may not be \
             on disk",
        )
    }
}

impl std::error::Error for SharedSyncError {}

/// Bytes an unprivileged writer may still use on the file system holding
/// `path` (a volume file grows into them as it fills: it is sparse).
pub fn fs_free_bytes(path: &Path) -> io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// `e` is a [`SharedSyncError`].
pub fn is_shared_sync_error(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<SharedSyncError>())
}

impl VolumeFile {
    fn new(storage: Box<dyn Storage>, path: &Path) -> VolumeFile {
        VolumeFile {
            storage,
            path: path.to_path_buf(),
            sync_errors: AtomicU64::new(0),
        }
    }

    /// Creates a new sparse volume file of `slots` slots: `ftruncate`, never
    /// filled, so a volume of any size is ready at once. Refuses an existing
    /// path (and a symlink, since `O_EXCL` does not follow it).
    pub fn create(opener: &dyn StorageOpener, path: &Path, slots: u64) -> io::Result<VolumeFile> {
        let vol = VolumeFile::new(opener.create(path)?, path);
        let made = vol.set_len(slots).and_then(|()| vol.storage.sync_all());
        if let Err(e) = made {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        // The new name must survive a crash as well as the file's size.
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(vol)
    }

    /// Opens an existing volume file and checks it holds `slots` slots.
    pub fn open(opener: &dyn StorageOpener, path: &Path, slots: u64) -> io::Result<VolumeFile> {
        let storage = opener.open(path)?;
        let len = storage.size()?;
        let want = slots * SECTOR_BYTES;
        // Longer is fine: a grow that crashed before its row was updated.
        if len < want {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "volume file is {}, expected {want} ({})",
                    count(len, "byte"),
                    count(slots, "slot")
                ),
            ));
        }
        Ok(VolumeFile::new(storage, path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a whole sector into `slot`. Not durable until [`sync`](Self::sync).
    pub fn write_sector(&self, slot: u64, data: &[u8]) -> io::Result<()> {
        debug_assert_eq!(data.len(), SECTOR_SIZE);
        self.storage.write_at(slot * SECTOR_BYTES, &[data])
    }

    /// Writes part of a sector into `slot` at `offset` within it. Not
    /// durable until [`sync`](Self::sync). See [`write_parts`](Self::write_parts).
    pub fn write_part(&self, slot: u64, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_parts(slot, offset, &[data])
    }

    /// Writes `parts`, back to back, into `slot` from `offset` within it, in
    /// one system call where they can go past the page cache (parts aligned
    /// to [`DIRECT_ALIGN`], on a file system with direct I/O). Not durable
    /// until [`sync`](Self::sync).
    pub fn write_parts(&self, slot: u64, offset: u64, parts: &[&[u8]]) -> io::Result<()> {
        debug_assert!(offset + parts.iter().map(|p| p.len() as u64).sum::<u64>() <= SECTOR_BYTES);
        self.storage.write_at(slot * SECTOR_BYTES + offset, parts)
    }

    /// Starts writing a slot's dirty pages to disk without waiting, so a
    /// later [`sync`](Self::sync) has less left to wait for.
    pub fn start_writeback(&self, slot: u64) -> io::Result<()> {
        self.start_writeback_part(slot, 0, SECTOR_BYTES)
    }

    /// As [`start_writeback`](Self::start_writeback) for `len` bytes at
    /// `offset` within the slot.
    pub fn start_writeback_part(&self, slot: u64, offset: u64, len: u64) -> io::Result<()> {
        self.storage
            .start_writeback(slot * SECTOR_BYTES + offset, len)
    }

    /// Makes every completed write durable.
    pub fn sync(&self) -> io::Result<()> {
        self.storage.sync_data().inspect_err(|_| {
            self.sync_errors.fetch_add(1, Ordering::SeqCst);
        })
    }

    /// What to pass to [`sync_since`](Self::sync_since): taken before
    /// writing.
    pub fn error_mark(&self) -> u64 {
        self.sync_errors.load(Ordering::SeqCst)
    }

    /// [`sync`](Self::sync), failed too when another sync of this file
    /// failed since `mark`. Every writer shares one open file, and the
    /// kernel tells a write-back error to the first sync that follows it
    /// only: that may be another writer's, and this one's own pages may be
    /// the ones lost.
    pub fn sync_since(&self, mark: u64) -> io::Result<()> {
        self.sync()?;
        if self.error_mark() != mark {
            return Err(io::Error::other(SharedSyncError));
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes of `slot` starting at `offset` within the sector.
    /// A read and a write of the device under the file: the first 4 KiB
    /// read, written back as they were, and synced. Only for a file no one
    /// else writes through yet (a volume coming back into service): a
    /// device that answers EIO fails it.
    pub fn probe(&self) -> io::Result<()> {
        let mut block = vec![0u8; 4096];
        self.read(0, 0, &mut block)?;
        self.write_part(0, 0, &block)?;
        self.sync()
    }

    pub fn read(&self, slot: u64, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        debug_assert!(offset + buf.len() as u64 <= SECTOR_BYTES);
        self.storage.read_at(slot * SECTOR_BYTES + offset, buf)
    }

    /// Frees a slot's bytes: punches a hole so the data cannot be read back
    /// and the space returns to the file system (zeroes where it cannot).
    pub fn punch(&self, slot: u64) -> io::Result<()> {
        self.storage.punch(slot * SECTOR_BYTES, SECTOR_BYTES)
    }

    /// Sets the file to hold exactly `slots` slots (sparse growth or truncation).
    pub fn set_len(&self, slots: u64) -> io::Result<()> {
        self.storage.set_len(slots * SECTOR_BYTES)
    }

    /// Whether the path still names this open file (it may have been removed
    /// or replaced while open: the fd would go on working on the old one).
    pub fn still_at_path(&self) -> io::Result<bool> {
        self.storage.is_at(&self.path)
    }

    /// Bytes the file really occupies on disk (sparse files use less).
    pub fn allocated_bytes(&self) -> io::Result<u64> {
        self.storage.allocated()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Aligned writes (past the page cache where the file system allows)
    /// and unaligned ones (through it) land the same bytes, one part or
    /// many, and read back through the cache.
    #[test]
    fn aligned_and_unaligned_writes_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let vol = VolumeFile::create(&Disk, &dir.path().join("v.vol"), 2).unwrap();
        let mut page = memmap2::MmapMut::map_anon(4 * DIRECT_ALIGN).unwrap();
        for (i, b) in page.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let (a, b) = page.split_at(2 * DIRECT_ALIGN);
        vol.write_parts(1, DIRECT_ALIGN as u64, &[a, b]).unwrap();
        vol.write_part(1, 0, &page[..DIRECT_ALIGN]).unwrap();
        // unaligned: an odd offset and length
        vol.write_part(0, 3, &page[5..1005]).unwrap();
        vol.write_parts(0, 2000, &[&page[1..10], &page[20..30]])
            .unwrap();
        vol.sync().unwrap();
        let mut got = vec![0u8; 5 * DIRECT_ALIGN];
        vol.read(1, 0, &mut got).unwrap();
        assert!(got[..DIRECT_ALIGN] == page[..DIRECT_ALIGN]);
        assert!(got[DIRECT_ALIGN..] == page[..]);
        let mut got = vec![0u8; 2020];
        vol.read(0, 0, &mut got).unwrap();
        assert!(got[3..1003] == page[5..1005]);
        assert!(got[2000..2009] == page[1..10] && got[2009..2019] == page[20..30]);
        assert!(got[..3].iter().chain(&got[1003..2000]).all(|b| *b == 0));
    }

    /// A sync that succeeds itself fails when another sync of the file
    /// failed since the mark: the kernel told that error to the other one.
    #[test]
    fn a_sync_hears_of_an_error_another_sync_saw() {
        let dir = tempfile::tempdir().unwrap();
        let vol = VolumeFile::create(&Disk, &dir.path().join("v.vol"), 1).unwrap();
        let mark = vol.error_mark();
        vol.sync_since(mark).unwrap();
        // as `sync` counts a failure
        vol.sync_errors.fetch_add(1, Ordering::SeqCst);
        let e = vol.sync_since(mark).unwrap_err();
        assert!(is_shared_sync_error(&e), "{e}");
        vol.sync_since(vol.error_mark()).unwrap();
    }
}
