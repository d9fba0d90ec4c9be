//! The model-based test of `tests/spec_model` through a real mount: each
//! operation is the std::fs call a user makes, and kill -9 is a SIGKILL of
//! the daemon between calls. Longer runs with
//! `SECTORFS_MODEL_CASES=500 SECTORFS_MODEL_OPS=100`.

use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use super::harness::{Mount, close, xattr};
use crate::spec_model::{self, Driver, Open};

/// A mounted daemon.
pub struct Mounted(Mount);

impl Driver for Mounted {
    type File = std::fs::File;
    const THROUGH: &'static str = "through a real mount";
    // one mount per case
    const CASES: u32 = 32;
    const OPS: usize = 40;
    const ALL_BYTES_EVERY: usize = 1;

    fn start(slots: u64) -> Mounted {
        Mounted(Mount::start(&["--default-volume", &slots.to_string()]))
    }

    fn open(&self, path: &str, how: Open) -> io::Result<std::fs::File> {
        let mut opts = std::fs::OpenOptions::new();
        match how {
            Open::Create => opts.write(true).create(true).truncate(true),
            Open::Append => opts.create(true).append(true),
            Open::Truncate => opts.write(true).truncate(true),
        };
        opts.open(self.0.path(path))
    }

    fn write(&self, f: &mut std::fs::File, data: &[u8]) -> io::Result<()> {
        f.write_all(data)
    }

    fn write_at(&self, f: &mut std::fs::File, offset: u64, data: &[u8]) -> io::Result<()> {
        f.write_all_at(data, offset)
    }

    fn close(&self, f: std::fs::File) -> io::Result<()> {
        close(f)
    }

    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.0.path(path))
    }

    fn remove_file(&self, path: &str) -> io::Result<()> {
        std::fs::remove_file(self.0.path(path))
    }

    fn create_dir(&self, path: &str) -> io::Result<()> {
        std::fs::create_dir(self.0.path(path))
    }

    fn remove_dir(&self, path: &str) -> io::Result<()> {
        std::fs::remove_dir(self.0.path(path))
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.0.path(from), self.0.path(to))
    }

    fn hard_link(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::hard_link(self.0.path(from), self.0.path(to))
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.0.path(dir))? {
            out.push(e?.file_name().into_string().unwrap());
        }
        out.sort();
        Ok(out)
    }

    fn stat(&self, path: &str) -> io::Result<(u64, u64)> {
        let meta = std::fs::metadata(self.0.path(path))?;
        Ok((meta.len(), meta.nlink()))
    }

    fn xattr(&self, path: &str, name: &str) -> io::Result<String> {
        xattr(&self.0.path(path), name)
    }

    fn statfs(&self) -> io::Result<(u64, u64, u64, u64)> {
        let vfs = nix::sys::statvfs::statvfs(&self.0.mnt)?;
        Ok((
            vfs.blocks() as u64,
            vfs.blocks_free() as u64,
            vfs.blocks_available() as u64,
            vfs.fragment_size() as u64,
        ))
    }

    fn scratch(&self) -> &Path {
        self.0.scratch()
    }

    fn remount(&mut self) -> Result<(), String> {
        self.0.remount();
        Ok(())
    }

    fn kill_remount(&mut self) -> Result<(), String> {
        self.0.kill();
        self.0.mount();
        Ok(())
    }

    fn log_tail(&self) -> String {
        log_tail(&self.0.log(), 15)
    }
}

spec_model::model_tests!(Mounted);

/// The last `n` lines of the daemon's log, without colour codes.
fn log_tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
    let mut out = String::with_capacity(tail.len());
    let mut chars = tail.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
