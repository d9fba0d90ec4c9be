//! The model-based test of `tests/spec_model`, in-process: no mount. Each
//! operation goes through [`SectorFs`], the file system's semantics layer,
//! as the kernel would call it for the same system calls: a path looked up
//! name by name from the root (inode 1); `lookup` then `open`, or `create`
//! where the name is missing and `O_CREAT` asks for it; writes of at most
//! 1 MiB (the mount's `max_write`); `flush` then `release` at close (the
//! flush's error is close's); `unlink`, `rename` (nothing when source and
//! target are the same inode, as the VFS does), `mkdir` and `link` after a
//! lookup of the new name (`EEXIST` if it is there); `readdir` in small
//! batches for a listing; `getattr` for `st_nlink`, `getxattr`, `statfs`.
//!
//! A clean remount is `Engine::shutdown`, then the file system and the
//! engine dropped (the test fails if anything still holds the engine) and
//! opened again on the same data dir. A kill -9 between calls keeps what
//! the kernel has and loses the process: the metadata files are copied
//! while the engine is open, the engine is dropped without a shutdown, and
//! the copies are put back before it is opened again (the volume files are
//! not touched by a drop).
//!
//! The data dir is on tmpfs (`/dev/shm`; volume files then fall back from
//! `O_DIRECT`, as on any file system without it), so a step costs little
//! more than hashing the sector it writes. Every step checks listings,
//! counts, references, slots, contracts, `/temp`, volumes and `df`; the
//! bytes of a sector are read back after the step that stored it, and of
//! every stored sector every `ALL_BYTES_EVERY` steps and after a case's
//! last step.
//!
//! A few thousand operations by default; the long mode, over 100,000:
//! `SECTORFS_MODEL_CASES=1200 SECTORFS_MODEL_OPS=200 cargo test --test
//! model_inprocess -- --nocapture`.

mod common;
mod spec_model;

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sectorfs::engine::{Engine, Options, Placement};
use sectorfs::error::Error;
use sectorfs::fs::{Caching, Entry, RenameFlags, SectorFs};
use spec_model::{Driver, Open, Refusal, errno};

/// The root directory's inode.
const ROOT: u64 = 1;
/// The largest write the kernel sends (the mount's `max_write`).
const MAX_WRITE: usize = 1 << 20;
/// The largest read asked for at once.
const MAX_READ: u32 = 1 << 20;
/// Entries a `readdir` reply takes before it is full.
const READDIR_BATCH: usize = 32;
/// The lock owner of this process's descriptors.
const OWNER: u64 = 1;

/// The thread making a call: what FUSE reports as a request's pid.
fn pid() -> u32 {
    nix::unistd::gettid().as_raw() as u32
}

fn refused(e: Error) -> io::Error {
    Refusal::error(e.errno(), e.to_string())
}

/// An open engine and its file system.
struct Store {
    engine: Arc<Engine>,
    fs: SectorFs,
}

pub struct InProcess {
    dir: tempfile::TempDir,
    slots: u64,
    store: Option<Store>,
}

/// A file descriptor: its handle and position.
pub struct OpenFile {
    fh: u64,
    pos: u64,
}

impl InProcess {
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn fs(&self) -> &SectorFs {
        &self.store.as_ref().expect("the store is open").fs
    }

    fn open_store(&mut self) -> Result<(), String> {
        let options = Options {
            placement: Placement::FillFirst,
            verify_reads: false,
            default_volume_slots: self.slots,
            ..Options::default()
        };
        let engine =
            Engine::open(&self.data_dir(), options).map_err(|e| format!("open the engine: {e}"))?;
        let engine = Arc::new(engine);
        engine
            .resume_jobs()
            .map_err(|e| format!("resume jobs: {e}"))?;
        // never mounted: only volume paths inside it are refused
        let fs = SectorFs::new(engine.clone(), &self.dir.path().join("mnt"));
        self.store = Some(Store { engine, fs });
        Ok(())
    }

    /// Drops the file system and the engine; `clean`: after a shutdown.
    fn close_store(&mut self, clean: bool) -> Result<(), String> {
        let Store { engine, fs } = self.store.take().expect("the store is open");
        drop(fs);
        if clean {
            engine.shutdown();
        }
        match Arc::try_unwrap(engine) {
            Ok(engine) => {
                drop(engine);
                Ok(())
            }
            Err(_) => Err("the engine is still held after every file was closed".into()),
        }
    }

    fn entry(&self, parent: u64, name: &str) -> io::Result<Entry> {
        let entry = self.fs().lookup(parent, OsStr::new(name), pid());
        entry.map_err(refused)
    }

    fn lookup(&self, parent: u64, name: &str) -> io::Result<u64> {
        Ok(self.entry(parent, name)?.attr.ino)
    }

    fn resolve(&self, path: &str) -> io::Result<u64> {
        Ok(self.resolve_entry(path)?.attr.ino)
    }

    fn resolve_entry(&self, path: &str) -> io::Result<Entry> {
        let (parent, name) = self.parent_of(path)?;
        self.entry(parent, name)
    }

    /// The directory holding `path`, and its last name.
    fn parent_of<'a>(&self, path: &'a str) -> io::Result<(u64, &'a str)> {
        match path.rsplit_once('/') {
            Some((dir, name)) => Ok((self.resolve(dir)?, name)),
            None => Ok((ROOT, path)),
        }
    }

    /// Whether `name` is in `parent`: a lookup that finds it, or `ENOENT`.
    fn exists(&self, parent: u64, name: &str) -> io::Result<Option<u64>> {
        match self.lookup(parent, name) {
            Ok(ino) => Ok(Some(ino)),
            Err(e) if errno(&e) == libc::ENOENT => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `write_all` from `offset`, in writes of at most `MAX_WRITE`; a
    /// short write is followed by the rest, as `write_all` does.
    fn write_from(&self, fh: u64, mut offset: u64, mut data: &[u8]) -> io::Result<u64> {
        let start = offset;
        while !data.is_empty() {
            let chunk = &data[..data.len().min(MAX_WRITE)];
            let n = self
                .fs()
                .write(fh, offset, chunk, Some(OWNER), pid())
                .map_err(refused)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            offset += n as u64;
            data = &data[n..];
        }
        Ok(offset - start)
    }

    /// close(2) of the only descriptor: flush (its error is close's), then
    /// release, whose failure no process would see but a test must.
    fn close_fh(&self, fh: u64, flush: bool) -> io::Result<()> {
        let fs = self.fs();
        let flushed = match flush {
            true => fs.flush(fh, OWNER, pid()).map_err(refused),
            false => Ok(()),
        };
        let released = fs
            .release(fh)
            .map_err(|e| Refusal::error(e.errno(), format!("release failed: {e}")));
        flushed.and(released)
    }

    /// The kill -9 copy of the metadata: every file at the top of the data
    /// dir but the lock (the volume files are not touched by a drop).
    fn metadata_files(&self) -> Result<Vec<(PathBuf, Vec<u8>)>, String> {
        let dir = self.data_dir();
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("ls {}: {e}", dir.display()))?;
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_file() && path.file_name() != Some(OsStr::new("sectorfs.lock")) {
                let bytes = std::fs::read(&path).map_err(|e| format!("copy {path:?}: {e}"))?;
                files.push((path, bytes));
            }
        }
        Ok(files)
    }
}

impl Driver for InProcess {
    type File = OpenFile;
    const THROUGH: &'static str = "in-process through the file system's semantics layer";
    const CASES: u32 = 64;
    const OPS: usize = 80;
    const ALL_BYTES_EVERY: usize = 10;

    fn start(slots: u64) -> InProcess {
        // tmpfs where there is one
        let shm = Path::new("/dev/shm");
        let dir = match shm.is_dir() {
            true => tempfile::Builder::new()
                .prefix("sectorfs-model-")
                .tempdir_in(shm),
            false => tempfile::tempdir(),
        }
        .expect("a temp dir");
        std::fs::create_dir(dir.path().join("mnt")).expect("a mountpoint");
        let mut d = InProcess {
            dir,
            slots,
            store: None,
        };
        d.open_store().unwrap_or_else(|e| panic!("{e}"));
        d
    }

    fn open(&self, path: &str, how: Open) -> io::Result<OpenFile> {
        let (parent, name) = self.parent_of(path)?;
        let flags = how.flags();
        let fh = match self.exists(parent, name)? {
            Some(ino) => {
                let flags = flags & !(libc::O_CREAT | libc::O_EXCL);
                self.fs().open(ino, flags, pid()).map_err(refused)?.fh
            }
            None if flags & libc::O_CREAT != 0 => {
                let created = self.fs().create(parent, OsStr::new(name), flags, pid());
                created.map_err(refused)?.1.fh
            }
            None => {
                return Err(Refusal::error(
                    libc::ENOENT,
                    format!("{path} does not exist"),
                ));
            }
        };
        Ok(OpenFile { fh, pos: 0 })
    }

    fn write(&self, f: &mut OpenFile, data: &[u8]) -> io::Result<()> {
        f.pos += self.write_from(f.fh, f.pos, data)?;
        Ok(())
    }

    fn write_at(&self, f: &mut OpenFile, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_from(f.fh, offset, data).map(|_| ())
    }

    fn close(&self, f: OpenFile) -> io::Result<()> {
        self.close_fh(f.fh, true)
    }

    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let attr = self.resolve_entry(path)?.attr;
        let opened = self
            .fs()
            .open(attr.ino, libc::O_RDONLY, pid())
            .map_err(refused)?;
        // generated files say 0 or their size at lookup
        let mut out = Vec::with_capacity(attr.size as usize);
        let read = loop {
            let n = self.fs().read(opened.fh, out.len() as u64, MAX_READ, |b| {
                out.extend_from_slice(b);
                b.len()
            });
            match n {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(refused(e)),
            }
        };
        // a file the kernel caches is opened with FOPEN_NOFLUSH
        let closed = self.close_fh(opened.fh, opened.caching != Caching::KeepCache);
        read.and(closed).map(|()| out)
    }

    fn remove_file(&self, path: &str) -> io::Result<()> {
        let (parent, name) = self.parent_of(path)?;
        self.lookup(parent, name)?;
        self.fs().unlink(parent, OsStr::new(name)).map_err(refused)
    }

    fn create_dir(&self, path: &str) -> io::Result<()> {
        let (parent, name) = self.parent_of(path)?;
        if self.exists(parent, name)?.is_some() {
            return Err(Refusal::error(libc::EEXIST, format!("{path} exists")));
        }
        self.fs()
            .mkdir(parent, OsStr::new(name))
            .map(|_| ())
            .map_err(refused)
    }

    fn remove_dir(&self, path: &str) -> io::Result<()> {
        let (parent, name) = self.parent_of(path)?;
        self.lookup(parent, name)?;
        self.fs().rmdir(parent, OsStr::new(name)).map_err(refused)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (parent, name) = self.parent_of(from)?;
        let (newparent, newname) = self.parent_of(to)?;
        let source = self.lookup(parent, name)?;
        if self.exists(newparent, newname)? == Some(source) {
            return Ok(());
        }
        let flags = RenameFlags::default();
        let (name, newname) = (OsStr::new(name), OsStr::new(newname));
        self.fs()
            .rename(parent, name, newparent, newname, flags)
            .map_err(refused)
    }

    fn hard_link(&self, from: &str, to: &str) -> io::Result<()> {
        let ino = self.resolve(from)?;
        let (newparent, newname) = self.parent_of(to)?;
        if self.exists(newparent, newname)?.is_some() {
            return Err(Refusal::error(libc::EEXIST, format!("{to} exists")));
        }
        self.fs()
            .link(ino, newparent, OsStr::new(newname))
            .map(|_| ())
            .map_err(refused)
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let ino = self.resolve(dir)?;
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let mut batch = 0;
            let listed = self.fs().readdir(ino, offset, &mut |e| {
                if batch == READDIR_BATCH {
                    return true;
                }
                batch += 1;
                offset = e.next;
                if e.name != "." && e.name != ".." {
                    names.push(e.name.to_string());
                }
                false
            });
            listed.map_err(refused)?;
            if batch == 0 {
                break;
            }
        }
        names.sort();
        Ok(names)
    }

    fn stat(&self, path: &str) -> io::Result<(u64, u64)> {
        let ino = self.resolve(path)?;
        let attr = self.fs().getattr(ino, None).map_err(refused)?;
        Ok((attr.size, attr.nlink as u64))
    }

    fn xattr(&self, path: &str, name: &str) -> io::Result<String> {
        // "": the root itself
        let ino = if path.is_empty() {
            ROOT
        } else {
            self.resolve(path)?
        };
        let value = self.fs().getxattr(ino, OsStr::new(name)).map_err(refused)?;
        String::from_utf8(value).map_err(|_| io::Error::other(format!("{name} is not text")))
    }

    fn statfs(&self) -> io::Result<(u64, u64, u64, u64)> {
        let s = self.fs().statfs();
        Ok((s.blocks, s.free, s.available, s.block_size as u64))
    }

    fn scratch(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&mut self) -> Result<(), String> {
        self.close_store(true)?;
        self.open_store()
    }

    fn kill_remount(&mut self) -> Result<(), String> {
        let kept = self.metadata_files()?;
        self.close_store(false)?;
        for (path, _) in self.metadata_files()? {
            std::fs::remove_file(&path).map_err(|e| format!("remove {path:?}: {e}"))?;
        }
        for (path, bytes) in kept {
            std::fs::write(&path, bytes).map_err(|e| format!("put back {path:?}: {e}"))?;
        }
        self.open_store()
    }

    fn log_tail(&self) -> String {
        "(in-process: each refusal above carries the file system's own message)".into()
    }
}

spec_model::model_tests!(InProcess);
