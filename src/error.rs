//! The one error type of the engine. Every case knows its errno, so the FUSE
//! layer maps errors instead of guessing, and every case carries a sentence a
//! host operator can act on.

use std::io;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: a malformed name, line, number or size.
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist (a root, a volume, a contract, a path).
    #[error("{0}")]
    NotFound(String),
    /// Something to be created already exists.
    #[error("{0}")]
    Exists(String),
    /// The target is in use: a sector still referenced, a volume with a job.
    #[error("{0}")]
    Busy(String),
    /// No writable volume has a free slot.
    #[error("{0}")]
    NoSpace(String),
    /// Data does not hash to the root it was written under.
    #[error("{0}")]
    BadDigest(String),
    /// A write past the end of a sector.
    #[error("{0}")]
    TooBig(String),
    /// An operation that is not allowed on this object.
    #[error("{0}")]
    NotPermitted(String),
    /// The volume holding the data cannot be used right now.
    #[error("{0}")]
    Unavailable(String),
    /// Stored data that no longer matches its root.
    #[error("{0}")]
    Corrupt(String),
    /// Another process holds the data dir.
    #[error("{0}")]
    Locked(String),
    /// The uploads' memory budget is in use and no buffer came back in time.
    #[error("{0}")]
    OutOfBuffers(String),
    /// As many sector files are open for writing as the mount allows.
    #[error("{0}")]
    TooManyUploads(String),
    /// A failed system call on a volume or the data dir.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A directory where a file was expected.
    #[error("{0}")]
    IsDir(String),
    /// A file the caller may not open that way (a read-only generated file).
    #[error("{0}")]
    Access(String),
    /// A rename across directories: tools fall back to copy and remove.
    #[error("{0}")]
    CrossDevice(String),
    /// A directory that still has entries.
    #[error("{0}")]
    NotEmpty(String),
    /// An extended attribute the object does not have.
    #[error("{0}")]
    NoAttribute(String),
    /// A request the file system does not support (setting attributes, ioctl).
    #[error("{0}")]
    NotSupported(String),
    /// An ioctl: sectorfs files answer none.
    #[error("{0}")]
    NoIoctl(String),
    /// A reply buffer too small for the answer (extended attributes).
    #[error("{0}")]
    Range(String),
    /// A file handle that is not open, or not open for this.
    #[error("{0}")]
    BadHandle(String),
    /// An outcome decided by an earlier call, reported again (a second
    /// close of the same file).
    #[error("{message}")]
    Reported { errno: i32, message: String },
    /// The metadata database failed.
    #[error("metadata database error while {context}: {source}")]
    Db {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
}

impl Error {
    /// The errno a file system call reports for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Invalid(_) => libc::EINVAL,
            Error::NotFound(_) => libc::ENOENT,
            Error::Exists(_) => libc::EEXIST,
            Error::Busy(_) => libc::EBUSY,
            Error::NoSpace(_) => libc::ENOSPC,
            Error::BadDigest(_) => libc::EBADMSG,
            Error::TooBig(_) => libc::EFBIG,
            Error::NotPermitted(_) => libc::EPERM,
            Error::Unavailable(_) | Error::Corrupt(_) => libc::EIO,
            Error::Locked(_) => libc::EWOULDBLOCK,
            Error::IsDir(_) => libc::EISDIR,
            Error::Access(_) => libc::EACCES,
            Error::CrossDevice(_) => libc::EXDEV,
            Error::NotEmpty(_) => libc::ENOTEMPTY,
            Error::NoAttribute(_) => libc::ENODATA,
            Error::NotSupported(_) => libc::ENOTSUP,
            Error::Range(_) => libc::ERANGE,
            Error::NoIoctl(_) => libc::ENOTTY,
            Error::BadHandle(_) => libc::EBADF,
            Error::Reported { errno, .. } => *errno,
            Error::OutOfBuffers(_) => libc::ENOBUFS,
            Error::TooManyUploads(_) => libc::EMFILE,
            Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            Error::Db { source, .. } => match source.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DiskFull) => libc::ENOSPC,
                Some(rusqlite::ErrorCode::ReadOnly) => libc::EROFS,
                _ => libc::EIO,
            },
        }
    }

    /// A database write that failed with an I/O error may still be found
    /// committed at the next open (its pages written to the WAL, the sync
    /// failing): what it would have made owned must stay as it is till then.
    pub fn commit_uncertain(&self) -> bool {
        matches!(self, Error::Db { source, .. }
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::SystemIoFailure))
    }

    /// This error as it is reported again later: same errno, same words.
    pub fn reported(&self) -> Error {
        Error::Reported {
            errno: self.errno(),
            message: self.to_string(),
        }
    }

    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn db(context: impl Into<String>, source: rusqlite::Error) -> Self {
        Error::Db {
            context: context.into(),
            source,
        }
    }
}

/// Attach a sentence to a database result.
pub trait DbContext<T> {
    fn ctx(self, context: &str) -> Result<T>;
}

impl<T> DbContext<T> for std::result::Result<T, rusqlite::Error> {
    fn ctx(self, context: &str) -> Result<T> {
        self.map_err(|e| Error::db(context, e))
    }
}

/// Attach a sentence to an I/O result.
pub trait IoContext<T> {
    fn io_ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn io_ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}
