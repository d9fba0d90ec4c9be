//! The outcomes the spec allows for a call, and the check of what a call
//! returned against them.

use std::fmt;
use std::io;

pub fn errno_name(e: i32) -> String {
    let name = match e {
        0 => "success",
        libc::ENOENT => "ENOENT",
        libc::EINVAL => "EINVAL",
        libc::EEXIST => "EEXIST",
        libc::EBUSY => "EBUSY",
        libc::EBADMSG => "EBADMSG",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::EIO => "EIO",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EXDEV => "EXDEV",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

/// A refusal from a driver with no system call in between: the errno and
/// the file system's own sentence, as one `io::Error`.
#[derive(Debug)]
pub struct Refusal {
    pub errno: i32,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", errno_name(self.errno), self.message)
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    pub fn error(errno: i32, message: impl Into<String>) -> io::Error {
        io::Error::other(Refusal {
            errno,
            message: message.into(),
        })
    }
}

/// The errno of an error from either driver (0 if it has none).
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error()
        .or_else(|| Some(e.get_ref()?.downcast_ref::<Refusal>()?.errno))
        .unwrap_or(0)
}

thread_local! {
    /// Calls refused with the errno the model expected, in this test.
    pub static REFUSED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The outcomes the spec allows for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    One(i32),
    Either(i32, i32),
}

impl Want {
    fn allows(self, errno: i32) -> bool {
        match self {
            Want::One(a) => a == errno,
            Want::Either(a, b) => a == errno || b == errno,
        }
    }

    pub fn ok(self) -> bool {
        self == Want::One(0)
    }
}

impl From<i32> for Want {
    fn from(errno: i32) -> Want {
        Want::One(errno)
    }
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Want::One(a) => f.write_str(&errno_name(*a)),
            Want::Either(a, b) => write!(f, "{} or {}", errno_name(*a), errno_name(*b)),
        }
    }
}

fn outcome(r: &io::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => errno(e).max(1),
    }
}

/// Fails unless `got` is what the model expects.
pub fn expect(
    what: &dyn fmt::Display,
    got: io::Result<()>,
    want: impl Into<Want>,
) -> Result<(), String> {
    let want = want.into();
    let g = outcome(&got);
    if want.allows(g) {
        if g != 0 {
            REFUSED.set(REFUSED.get() + 1);
        }
        return Ok(());
    }
    let detail = got.err().map(|e| format!(" ({e})")).unwrap_or_default();
    Err(format!(
        "{what}: got {}{detail}, the model expects {want}",
        errno_name(g),
    ))
}
