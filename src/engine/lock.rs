//! One daemon per data dir: an exclusive `flock` on `sectorfs.lock`, held
//! for the life of the engine and released by the kernel if it dies.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    pub fn acquire(dir: &Path) -> Result<DataDirLock> {
        let path = dir.join("sectorfs.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .io_ctx(|| format!("cannot open the lock file {}", path.display()))?;
        // SAFETY: plain syscall on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            if let Err(e) = file.read_to_string(&mut holder) {
                tracing::debug!("cannot read the process id in {}: {e}", path.display());
            }
            let holder = holder.trim();
            let who = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            return Err(Error::Locked(format!(
                "the data dir {} is in use by another sectorfs process{who}; stop it first or \
                 use another --data-dir",
                dir.display()
            )));
        }
        // only for the message another process gets: the lock holds anyway
        let noted = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|_| write!(file, "{}", std::process::id()));
        if let Err(e) = noted {
            tracing::warn!(
                "cannot write this process's id into {}: {e}",
                path.display()
            );
        }
        Ok(DataDirLock { _file: file })
    }
}
