//! The raw operations a volume file needs, behind a trait (as redb's
//! `StorageBackend`), so tests can put a file that fails on demand in the
//! real one's place ([`faults`](super::faults)). Byte offsets throughout:
//! slots are [`VolumeFile`](super::VolumeFile)'s business.

use std::fmt::Debug;
use std::io;
use std::path::Path;

/// One open volume file. Every call is positioned, so one handle serves
/// many threads at once; each is one system call or a few, so a dynamic
/// call per operation costs nothing beside it.
pub trait Storage: Debug + Send + Sync {
    /// Writes `parts`, back to back, from byte `at`: all of it, or an error.
    fn write_at(&self, at: u64, parts: &[&[u8]]) -> io::Result<()>;
    /// Fills `buf` from byte `at`.
    fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Starts writing `len` bytes from `at` to disk without waiting.
    fn start_writeback(&self, at: u64, len: u64) -> io::Result<()>;
    /// Makes every completed write durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// As [`sync_data`](Self::sync_data), with the file's metadata too.
    fn sync_all(&self) -> io::Result<()>;
    /// Frees `len` bytes from `at`: read back as zeros from then on.
    fn punch(&self, at: u64, len: u64) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's length in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Bytes the file really occupies on disk.
    fn allocated(&self) -> io::Result<u64>;
    /// Whether `path` names this open file (not removed nor replaced).
    fn is_at(&self, path: &Path) -> io::Result<bool>;
}

/// How the engine gets its volume files (`engine::Options::storage`): the
/// real files ([`Disk`](super::Disk)), or in tests files that fail on
/// demand.
pub trait StorageOpener: Debug + Send + Sync {
    /// Creates a new file at `path`, owner-only; refuses an existing path
    /// (and a symlink).
    fn create(&self, path: &Path) -> io::Result<Box<dyn Storage>>;
    /// Opens the existing file at `path` for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn Storage>>;
    /// The engine passed the named step (see `faults::CRASH_POINTS`); a
    /// test opener may stop it there. Called only in builds with the
    /// `faults` feature (or the crate's own tests).
    fn crash_point(&self, _name: &'static str) {}
}
