//! Volume files: sparse files of N slots, slot i at byte offset i × 4 MiB
//! (the hostd/siad data-file format: no header, no overflow file).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::merkle::SECTOR_SIZE;

pub const SECTOR_BYTES: u64 = SECTOR_SIZE as u64;

/// An open volume file. Every method uses positioned I/O, so one handle
/// serves many threads at once without a lock.
#[derive(Debug)]
pub struct VolumeFile {
    file: File,
    path: PathBuf,
    /// The same file opened again with `O_DIRECT`, once a write could use
    /// it; `None` where the file system refuses direct I/O.
    direct: OnceLock<Option<File>>,
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

/// `e` is a [`SharedSyncError`].
pub fn is_shared_sync_error(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<SharedSyncError>())
}

/// Alignment of buffer, offset and length that a write needs to bypass the
/// page cache. A page: enough for any logical block size up to 4 KiB.
pub const DIRECT_ALIGN: usize = 4096;

impl VolumeFile {
    /// Creates a new sparse volume file of `slots` slots: `ftruncate`, never
    /// filled, so a volume of any size is ready at once. Refuses an existing
    /// path (and a symlink, since `O_EXCL` does not follow it).
    pub fn create(path: &Path, slots: u64) -> io::Result<VolumeFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let vol = VolumeFile {
            file,
            path: path.to_path_buf(),
            direct: OnceLock::new(),
            sync_errors: AtomicU64::new(0),
        };
        let made = vol.set_len(slots).and_then(|()| vol.file.sync_all());
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
    pub fn open(path: &Path, slots: u64) -> io::Result<VolumeFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        let want = slots * SECTOR_BYTES;
        // Longer is fine: a grow that crashed before its row was updated.
        if len < want {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("volume file is {len} bytes, expected {want} ({slots} slots)"),
            ));
        }
        Ok(VolumeFile {
            file,
            path: path.to_path_buf(),
            direct: OnceLock::new(),
            sync_errors: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a whole sector into `slot`. Not durable until [`sync`](Self::sync).
    pub fn write_sector(&self, slot: u64, data: &[u8]) -> io::Result<()> {
        debug_assert_eq!(data.len(), SECTOR_SIZE);
        self.file.write_all_at(data, slot * SECTOR_BYTES)
    }

    /// Writes part of a sector into `slot` at `offset` within it. Not
    /// durable until [`sync`](Self::sync). See [`write_parts`](Self::write_parts).
    pub fn write_part(&self, slot: u64, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_parts(slot, offset, &[data])
    }

    /// Writes `parts`, back to back, into `slot` from `offset` within it, in
    /// one system call where they can go past the page cache. Not durable
    /// until [`sync`](Self::sync).
    ///
    /// Parts aligned to [`DIRECT_ALIGN`] (address and length, and the
    /// offset) go straight to the device: no copy, and none of the file
    /// system's per-block work for cached writes, which together cost about
    /// as much CPU as hashing the data did. Anything else, or a file system
    /// without direct I/O, takes the page cache.
    pub fn write_parts(&self, slot: u64, offset: u64, parts: &[&[u8]]) -> io::Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        debug_assert!(offset + len as u64 <= SECTOR_BYTES);
        let at = slot * SECTOR_BYTES + offset;
        let aligned = at.is_multiple_of(DIRECT_ALIGN as u64)
            && parts.iter().all(|p| {
                (p.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
                    && p.len().is_multiple_of(DIRECT_ALIGN)
            });
        if aligned && let Some(direct) = self.direct() {
            let iov: Vec<libc::iovec> = parts
                .iter()
                .map(|p| libc::iovec {
                    iov_base: p.as_ptr() as *mut libc::c_void,
                    iov_len: p.len(),
                })
                .collect();
            // SAFETY: every iovec points into a live slice of its length,
            // which the kernel only reads.
            let n = unsafe {
                libc::pwritev(
                    direct.as_raw_fd(),
                    iov.as_ptr(),
                    iov.len() as libc::c_int,
                    at as libc::off_t,
                )
            };
            if n >= 0 && n as usize == len {
                return Ok(());
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                // refused after all (a block size above a page, say)
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e);
                }
            }
            // short, or refused: all of it again through the cache, below
        }
        let mut from = at;
        for p in parts {
            self.file.write_all_at(p, from)?;
            from += p.len() as u64;
        }
        Ok(())
    }

    /// The file opened for direct I/O, opened on first use through
    /// `/proc/self/fd` (so it is this very file even if its path was
    /// replaced meanwhile). Only the file system's refusal is final; any
    /// other failure (out of descriptors, say) is tried again next time.
    fn direct(&self) -> Option<&File> {
        if let Some(known) = self.direct.get() {
            return known.as_ref();
        }
        let fd = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(fd)
        {
            Ok(f) => self.direct.get_or_init(|| Some(f)).as_ref(),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                self.direct.get_or_init(|| None).as_ref()
            }
            Err(_) => None,
        }
    }

    /// Starts writing a slot's dirty pages to disk without waiting, so a
    /// later [`sync`](Self::sync) has less left to wait for.
    pub fn start_writeback(&self, slot: u64) -> io::Result<()> {
        self.start_writeback_part(slot, 0, SECTOR_BYTES)
    }

    /// As [`start_writeback`](Self::start_writeback) for `len` bytes at
    /// `offset` within the slot.
    pub fn start_writeback_part(&self, slot: u64, offset: u64, len: u64) -> io::Result<()> {
        // SAFETY: plain syscall on an fd we own.
        let rc = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                (slot * SECTOR_BYTES + offset) as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Makes every completed write durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data().inspect_err(|_| {
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
    pub fn read(&self, slot: u64, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        debug_assert!(offset + buf.len() as u64 <= SECTOR_BYTES);
        self.file.read_exact_at(buf, slot * SECTOR_BYTES + offset)
    }

    /// Frees a slot's bytes: punches a hole so the data cannot be read back
    /// and the space returns to the file system; zeroes the range where the
    /// file system cannot punch.
    pub fn punch(&self, slot: u64) -> io::Result<()> {
        let off = (slot * SECTOR_BYTES) as libc::off_t;
        // SAFETY: plain syscall on an fd we own.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off,
                SECTOR_BYTES as libc::off_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
                self.file.write_all_at(&vec![0u8; SECTOR_SIZE], off as u64)
            }
            _ => Err(err),
        }
    }

    /// Sets the file to hold exactly `slots` slots (sparse growth or truncation).
    pub fn set_len(&self, slots: u64) -> io::Result<()> {
        self.file.set_len(slots * SECTOR_BYTES)
    }

    /// Whether the path still names this open file (it may have been removed
    /// or replaced while open: the fd would go on working on the old one).
    pub fn still_at_path(&self) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let (open, named) = (self.file.metadata()?, std::fs::metadata(&self.path)?);
        Ok(open.dev() == named.dev() && open.ino() == named.ino())
    }

    /// Bytes the file really occupies on disk (sparse files use less).
    pub fn allocated_bytes(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        Ok(self.file.metadata()?.blocks() * 512)
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
        let vol = VolumeFile::create(&dir.path().join("v.vol"), 2).unwrap();
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
        let vol = VolumeFile::create(&dir.path().join("v.vol"), 1).unwrap();
        let mark = vol.error_mark();
        vol.sync_since(mark).unwrap();
        // as `sync` counts a failure
        vol.sync_errors.fetch_add(1, Ordering::SeqCst);
        let e = vol.sync_since(mark).unwrap_err();
        assert!(is_shared_sync_error(&e), "{e}");
        vol.sync_since(vol.error_mark()).unwrap();
    }
}
