//! What a case needs of the file system under test: the few system calls
//! a user makes, by path relative to the mountpoint. One driver goes
//! through a real mount, the other calls the semantics layer in-process.

use std::io;
use std::path::Path;

/// How a file is opened for writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// `File::create`: `O_WRONLY | O_CREAT | O_TRUNC`.
    Create,
    /// `O_WRONLY | O_CREAT | O_APPEND`.
    Append,
    /// `echo x > file` of an existing file: `O_WRONLY | O_TRUNC`.
    Truncate,
}

impl Open {
    /// The open(2) flags.
    pub fn flags(self) -> i32 {
        match self {
            Open::Create => libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            Open::Append => libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
            Open::Truncate => libc::O_WRONLY | libc::O_TRUNC,
        }
    }
}

pub trait Driver: Sized {
    type File;
    /// What the summary says the operations went through.
    const THROUGH: &'static str;
    /// Cases and longest sequence per case, unless the environment says.
    const CASES: u32;
    const OPS: usize;
    /// Every how many steps the bytes of every stored sector are read back
    /// (those stored by a step are read back after it in any case).
    const ALL_BYTES_EVERY: usize;

    /// A new store whose default volume has `slots` slots.
    fn start(slots: u64) -> Self;
    fn open(&self, path: &str, how: Open) -> io::Result<Self::File>;
    /// `write_all` at the file's position.
    fn write(&self, f: &mut Self::File, data: &[u8]) -> io::Result<()>;
    fn write_at(&self, f: &mut Self::File, offset: u64, data: &[u8]) -> io::Result<()>;
    /// close(2): its error is the store's verdict.
    fn close(&self, f: Self::File) -> io::Result<()>;
    fn read(&self, path: &str) -> io::Result<Vec<u8>>;
    fn remove_file(&self, path: &str) -> io::Result<()>;
    fn create_dir(&self, path: &str) -> io::Result<()>;
    fn remove_dir(&self, path: &str) -> io::Result<()>;
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    fn hard_link(&self, from: &str, to: &str) -> io::Result<()>;
    /// The names in a directory, sorted, without `.` and `..`.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// (size, st_nlink)
    fn stat(&self, path: &str) -> io::Result<(u64, u64)>;
    fn xattr(&self, path: &str, name: &str) -> io::Result<String>;
    /// (blocks, free, available, fragment size)
    fn statfs(&self) -> io::Result<(u64, u64, u64, u64)>;
    /// A directory outside the file system, for volume files.
    fn scratch(&self) -> &Path;
    /// A clean stop, then start again on the same data.
    fn remount(&mut self) -> Result<(), String>;
    /// A stop with no warning between calls (kill -9), then start again.
    fn kill_remount(&mut self) -> Result<(), String>;
    /// What the file system logged last, for a failure's report.
    fn log_tail(&self) -> String;

    /// Opens, writes and closes; the first error wins, and the file is
    /// closed whatever happens, as a process's descriptors are.
    fn write_file(&self, path: &str, how: Open, data: &[u8]) -> io::Result<()> {
        let mut f = self.open(path, how)?;
        let written = self.write(&mut f, data);
        let closed = self.close(f);
        written.and(closed)
    }
}
