//! The real volume file: positioned I/O on a sparse file, past the page
//! cache where the file system allows.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::OnceLock;

use super::storage::{Storage, StorageOpener};

/// Alignment of buffer, offset and length that a write needs to bypass the
/// page cache. A page: enough for any logical block size up to 4 KiB.
pub const DIRECT_ALIGN: usize = 4096;

/// Opens real files: the engine's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

impl StorageOpener for Disk {
    fn create(&self, path: &Path) -> io::Result<Box<dyn Storage>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        Ok(Box::new(DiskFile::new(file)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn Storage>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(DiskFile::new(file)))
    }
}

#[derive(Debug)]
pub struct DiskFile {
    file: File,
    /// The same file opened again with `O_DIRECT`, once a write could use
    /// it; `None` where the file system refuses direct I/O.
    direct: OnceLock<Option<File>>,
}

impl DiskFile {
    pub fn new(file: File) -> DiskFile {
        DiskFile {
            file,
            direct: OnceLock::new(),
        }
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
}

impl Storage for DiskFile {
    /// Parts aligned to [`DIRECT_ALIGN`] (address and length, and the
    /// offset) go straight to the device in one `pwritev`: no copy, and
    /// none of the file system's per-block work for cached writes, which
    /// together cost about as much CPU as hashing the data did. Anything
    /// else, or a file system without direct I/O, takes the page cache.
    fn write_at(&self, at: u64, parts: &[&[u8]]) -> io::Result<()> {
        let aligned = at.is_multiple_of(DIRECT_ALIGN as u64)
            && parts.iter().all(|p| {
                (p.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
                    && p.len().is_multiple_of(DIRECT_ALIGN)
            });
        if aligned && let Some(direct) = self.direct() {
            let len: usize = parts.iter().map(|p| p.len()).sum();
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

    fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, at)
    }

    fn start_writeback(&self, at: u64, len: u64) -> io::Result<()> {
        // SAFETY: plain syscall on an fd we own.
        let rc = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                at as libc::off64_t,
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

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    /// `fallocate(PUNCH_HOLE|KEEP_SIZE)`, so the space returns to the file
    /// system; zeroes the range where the file system cannot punch.
    fn punch(&self, at: u64, len: u64) -> io::Result<()> {
        // SAFETY: plain syscall on an fd we own.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                at as libc::off_t,
                len as libc::off_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
                self.file.write_all_at(&vec![0u8; len as usize], at)
            }
            _ => Err(err),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn allocated(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.blocks() * 512)
    }

    fn is_at(&self, path: &Path) -> io::Result<bool> {
        let (open, named) = (self.file.metadata()?, std::fs::metadata(path)?);
        Ok(open.dev() == named.dev() && open.ino() == named.ino())
    }
}
