//! Volume files: sparse files of N slots, slot i at byte offset i × 4 MiB
//! (the hostd/siad data-file format: no header, no overflow file).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::merkle::SECTOR_SIZE;

pub const SECTOR_BYTES: u64 = SECTOR_SIZE as u64;

/// An open volume file. Every method uses positioned I/O, so one handle
/// serves many threads at once without a lock.
#[derive(Debug)]
pub struct VolumeFile {
    file: File,
    path: PathBuf,
}

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
    /// durable until [`sync`](Self::sync).
    pub fn write_part(&self, slot: u64, offset: u64, data: &[u8]) -> io::Result<()> {
        debug_assert!(offset + data.len() as u64 <= SECTOR_BYTES);
        self.file.write_all_at(data, slot * SECTOR_BYTES + offset)
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
        self.file.sync_data()
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
