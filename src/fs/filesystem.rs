//! The file system's semantics, without FUSE: every operation takes inode
//! numbers, names and flags, and returns a `Result` whose error knows its
//! errno. `fuse.rs` only translates to and from the kernel's requests; the
//! in-process model test drives this layer directly.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;

use super::attr::{Attr, Entry, Kind, entry_ttl};
use super::contract_file::{self, ContractFile, contract_text};
use super::control_file::ControlFile;
use super::dir::node_of;
use super::fds;
use super::generated;
use super::handle::{Handle, Handles};
use super::inode::Node;
use super::invalidate::Invalidator;
use super::known::{Known, Name};
use super::sector_file::SectorFile;
use super::staging::{Staging, is_staging_name};
use crate::engine::{Engine, Reference, SectorKey, check_temp_height};
use crate::error::{Error, Result};
use crate::merkle::{Root, SECTOR_SIZE};

/// How the kernel should treat an open file's pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Content never changes for a root: keep the kernel's cache, and a
    /// reader's close has nothing to flush.
    KeepCache,
    /// Generated or being written: every read and write reaches us.
    Direct,
    /// Content never changes, but is read from the cold store: every read
    /// reaches us (one copy into the reader's buffer, not two through the
    /// kernel's cache: about 10% faster cold reads), nothing to flush.
    Uncached,
}

/// How [`SectorFs::cold_read`] answers a read.
pub enum ColdRead<F> {
    /// The bytes, from a block kept in memory.
    Kept(bytes::Bytes),
    /// Work that reads them through the store.
    Fetch(F),
}

/// An open file: its handle number and how the kernel may cache it.
#[derive(Debug, Clone, Copy)]
pub struct Opened {
    pub fh: u64,
    pub caching: Caching,
}

/// What a `setattr` asks to change (the rest is ignored).
#[derive(Debug, Default, Clone, Copy)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    /// A modification time (`touch`, `utimensat`).
    pub mtime: Option<SystemTime>,
}

/// How a rename may treat an existing target.
#[derive(Debug, Default, Clone, Copy)]
pub struct RenameFlags {
    pub noreplace: bool,
    pub exchange: bool,
}

/// What `df` shows, in 4 MiB blocks, from [`crate::figures::Df`] (where
/// each number is defined): used = what sectors occupy (`blocks - free`),
/// available = what new sectors can take. Free slots that take none
/// (read-only, unavailable, being cut off) are free but not available, as
/// ext4 treats its reserved blocks.
#[derive(Debug, Clone, Copy)]
pub struct Statfs {
    pub blocks: u64,
    pub free: u64,
    pub available: u64,
    pub files: u64,
    pub block_size: u32,
}

pub struct SectorFs {
    pub(super) engine: Arc<Engine>,
    mountpoint: PathBuf,
    pub(super) handles: Handles,
    /// `/temp/<height>` a sector was last looked up in, per (sector id,
    /// thread): FUSE opens an inode, not a path, and a sector has one inode
    /// wherever it is linked, so this tells a rewrite of
    /// `/temp/<height>/<root>` (keep the temp entry) from one of
    /// `/sectors/<root>` (add the pin).
    temp_lookups: Mutex<lru::LruCache<(i64, u32), u64>>,
    /// What the kernel holds: sector inodes and their names, temp
    /// directories; what a change makes untrue is dropped through
    /// `invalidator`.
    known: Known,
    invalidator: Arc<Invalidator>,
    /// Files written under a `.` name, stored when renamed onto a root.
    pub(super) staging: Staging,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) started: SystemTime,
    /// Sectors stored only in the cold store are opened
    /// [`Caching::Uncached`]: the kernel maps such files too.
    cold_uncached: AtomicBool,
}

impl SectorFs {
    /// The file system of `engine`, to be mounted at `mountpoint` (which
    /// volume paths must stay out of).
    pub fn new(engine: Arc<Engine>, mountpoint: &Path) -> SectorFs {
        SectorFs {
            engine,
            mountpoint: mountpoint.to_path_buf(),
            handles: Handles::default(),
            temp_lookups: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(4096).expect("non-zero"),
            )),
            known: Known::default(),
            invalidator: Arc::default(),
            staging: Staging::default(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            started: SystemTime::now(),
            cold_uncached: AtomicBool::new(false),
        }
    }

    /// The kernel can map files it does not cache (FUSE_DIRECT_IO_ALLOW_MMAP):
    /// sectors stored only in the cold store are read uncached.
    pub fn set_cold_uncached(&self, can: bool) {
        self.cold_uncached.store(can, Ordering::Relaxed);
    }

    pub fn known(&self) -> Known {
        self.known.clone()
    }

    pub fn invalidator(&self) -> Arc<Invalidator> {
        self.invalidator.clone()
    }

    /// `node`, the kernel is told, is `name` in `dir`: its attributes, and
    /// the name noted as held by the kernel.
    pub(super) fn entry(&self, dir: Node, node: Node, name: &str) -> Result<Entry> {
        // known before it is read: a free committed after the read finds
        // the name to drop; one committed before fails the read
        self.known.looked_up(dir, node, name);
        let attr = self
            .attr(node)
            .inspect_err(|_| self.known.forgotten(node, 1))?;
        Ok(Entry {
            attr,
            ttl: entry_ttl(node),
        })
    }

    /// `pid`: the thread that asked (a sector looked up in
    /// `/temp/<height>` and rewritten keeps its temp entry).
    pub fn lookup(&self, parent: u64, name: &OsStr, pid: u32) -> Result<Entry> {
        let parent = node_of(parent)?;
        let name = text(name, || {
            Error::NotFound(format!("{name:?} is not a name here"))
        })?;
        let node = self.child(parent, name)?;
        if let Node::Sector(id) = node {
            let mut lookups = self.temp_lookups.lock();
            match parent {
                Node::TempHeight(h) => {
                    lookups.put((id, pid), h);
                }
                _ => {
                    lookups.pop(&(id, pid));
                }
            }
        }
        self.entry(parent, node, name)
    }

    pub fn forget(&self, ino: u64, lookups: u64) {
        if let Some(node) = Node::from_ino(ino) {
            self.known.forgotten(node, lookups);
        }
    }

    /// The height was written: the names of `/temp/<h>` directories it
    /// passed, and in them, go from the kernel.
    fn height_written(&self) {
        match self.engine.height() {
            Ok(height) => self
                .known
                .expired(height)
                .into_iter()
                .for_each(|n| self.invalidator.entry(n)),
            Err(e) => tracing::warn!(
                "cannot read the height to drop expired /temp names from the kernel's cache;                  they may show until they expire: {e}"
            ),
        }
    }

    /// A contract file was closed: if its contract went meanwhile (made by
    /// this file and its first list refused), its name goes from the
    /// kernel.
    fn contract_closed(&self, file: &Mutex<ContractFile>) {
        let (id, name) = {
            let f = file.lock();
            (f.id, f.name.clone())
        };
        match self.engine.contract_name(id) {
            Ok(Some(_)) => {}
            Ok(None) => self.invalidator.entry(Name::new(Node::ContractsDir, name)),
            Err(e) => tracing::warn!(
                "cannot tell whether contract {name} still exists; if it went, its name may                  show until it expires: {e}"
            ),
        }
    }

    pub fn getattr(&self, ino: u64, fh: Option<u64>) -> Result<Attr> {
        let node = node_of(ino)?;
        if let Some(Ok(handle)) = fh.map(|f| self.handles.get(f))
            && let Handle::SectorWrite(up) = &*handle
        {
            return Ok(self.base_attr(node, Kind::File, 0o644, up.lock().len()));
        }
        self.attr(node)
    }

    pub fn setattr(&self, ino: u64, fh: Option<u64>, set: SetAttr) -> Result<Attr> {
        let node = node_of(ino)?;
        if set.mode.is_some() || set.uid.is_some() || set.gid.is_some() {
            // tools that copy attributes (tar, cp -a, rsync -a) set them on
            // every sector they store and on the directory they fill: a
            // no-op there, so they do not fail; the store keeps its own
            if !matches!(
                node,
                Node::Sector(_)
                    | Node::Pending(_)
                    | Node::Staging(_)
                    | Node::SectorsDir
                    | Node::TempHeight(_)
            ) {
                return Err(Error::NotPermitted(format!(
                    "chmod/chown of {}: sectorfs sets its own modes",
                    node.path()
                )));
            }
            tracing::debug!(
                mode = ?set.mode, uid = ?set.uid, gid = ?set.gid,
                "chmod/chown of {}: accepted, nothing changes (sectorfs keeps its own modes)",
                node.path()
            );
        }
        if let Some(size) = set.size {
            let handle = match node {
                Node::Pending(n) => self.handles.get(n).ok(),
                _ => fh.and_then(|f| self.handles.get(f).ok()),
            };
            match (node, handle.as_deref()) {
                (Node::Staging(id), _) => self.staged(id)?.lock().set_len(size)?,
                (_, Some(Handle::SectorWrite(up))) => up.lock().set_len(size)?,
                (_, Some(Handle::ContractWrite(up))) if size == 0 => up.lock().truncate(),
                (Node::Contract(id), _) if size == 0 => self.engine.revise_contract_by_id(
                    id,
                    &[],
                    crate::engine::ContractEdit::Replace,
                )?,
                (Node::Sector(_), _) if size == SECTOR_SIZE as u64 => {}
                (Node::Sector(_) | Node::Contract(_), _) => {
                    return Err(Error::NotPermitted(format!(
                        "{}: stored data cannot be truncated to {}",
                        node.path(),
                        crate::plural::count(size, "byte")
                    )));
                }
                // generated files: truncation is meaningless and harmless
                _ => {}
            }
        }
        if let Some(mtime) = set.mtime {
            self.set_mtime(node, fh, mtime)?;
        }
        self.getattr(ino, fh)
    }

    /// A sector keeps a modification time set on it (rsync -a compares it);
    /// a file still being written keeps it for the sector it stores. On
    /// other files and directories it changes nothing, as before.
    fn set_mtime(&self, node: Node, fh: Option<u64>, mtime: SystemTime) -> Result<()> {
        let writing = |n| match self.handles.get(n).as_deref() {
            Ok(Handle::SectorWrite(up)) => Some(up.clone()),
            _ => None,
        };
        // through a file being written (futimens) first: a sector opened
        // to be written again takes its time with what it stores
        let file = match (fh.and_then(writing), node) {
            (Some(file), _) => file,
            (None, Node::Sector(id)) => return self.engine.set_mtime(id, mtime),
            (None, Node::Staging(id)) => self.staged(id)?,
            (None, Node::Pending(n)) => match writing(n) {
                Some(file) => file,
                None => return Ok(()),
            },
            (None, _) => {
                tracing::debug!("times of {}: accepted, nothing changes", node.path());
                return Ok(());
            }
        };
        let mut file = file.lock();
        file.mtime = Some(mtime);
        // stored already (an fsync): the sector takes it now
        match file.stored {
            Some(id) => self.engine.set_mtime(id, mtime),
            None => Ok(()),
        }
    }

    /// The modification time set while a sector was written, given to the
    /// sector it stored. The sector is stored whatever happens here: a
    /// failure is only logged (the time it was first stored shows instead).
    fn keep_mtime(&self, file: &SectorFile, id: i64) {
        if let Some(mtime) = file.mtime
            && let Err(e) = self.engine.set_mtime(id, mtime)
        {
            tracing::warn!(
                "sector #{id} is stored, but the modification time set while it was written \
                 could not be kept: {e}"
            );
        }
    }

    /// Stores what a sector file holds (at a close or fsync, `owner` as
    /// [`SectorFile::commit`] takes it), and the modification time set
    /// while it was written.
    fn commit_sector(&self, file: &Mutex<SectorFile>, owner: Option<u64>) -> Result<()> {
        let mut file = file.lock();
        if let Some(id) = file.commit(owner)? {
            self.keep_mtime(&file, id);
        }
        Ok(())
    }

    pub fn unlink(&self, parent: u64, name: &OsStr) -> Result<()> {
        let parent = node_of(parent)?;
        let name = text(name, || Error::NotFound(format!("{name:?} does not exist")))?;
        let root = || {
            name.parse::<Root>()
                .map_err(|_| Error::NotFound(format!("{}/{name} does not exist", parent.path())))
        };
        match parent {
            Node::SectorsDir | Node::TempHeight(_) if is_staging_name(name) => self
                .staging
                .remove(parent, name)
                .map(|_| ())
                .ok_or_else(|| Error::NotFound(format!("{}/{name} does not exist", parent.path()))),
            Node::SectorsDir => self.engine.unpin(&root()?),
            Node::ContractsDir => self.engine.delete_contract(name),
            // the directory stays, as it would on any file system
            Node::TempHeight(h) => self.engine.remove_temp(h, &root()?),
            _ => Err(Error::NotPermitted(format!(
                "{}/{name} cannot be removed",
                parent.path()
            ))),
        }
    }

    /// Renames a contract onto another name; `noreplace`: refused when the
    /// target exists, checked in the transaction that renames.
    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        let from = text(name, || Error::NotFound(format!("{name:?} does not exist")))?;
        let to = text(newname, || {
            Error::Invalid(format!(
                "cannot rename {from} to {newname:?}: not UTF-8 text, so not a valid name"
            ))
        })?;
        let (p, np) = (node_of(parent)?, node_of(newparent)?);
        if p != np {
            // mv falls back to copy and remove, which is what moving a
            // sector between /sectors and /temp means
            return Err(Error::CrossDevice(format!(
                "{from} can only be renamed within its directory"
            )));
        }
        if matches!(p, Node::SectorsDir | Node::TempHeight(_)) && is_staging_name(from) {
            return self.rename_staged(p, from, to, flags);
        }
        if p != Node::ContractsDir {
            return Err(Error::NotPermitted(format!(
                "only contracts and staging files (.<name>) can be renamed, not {}/{from}",
                p.path()
            )));
        }
        if flags.exchange {
            return Err(Error::Invalid("contracts cannot be exchanged".into()));
        }
        self.engine.rename_contract(from, to, !flags.noreplace)
    }

    /// A staging file renamed: onto a root, it is stored (checked, synced,
    /// committed) before the rename returns, with a close's errnos, and
    /// leaves nothing behind if refused; onto another staging name, it is
    /// only renamed.
    fn rename_staged(&self, dir: Node, from: &str, to: &str, flags: RenameFlags) -> Result<()> {
        let missing = || Error::NotFound(format!("{}/{from} does not exist", dir.path()));
        let id = self.staging.find(dir, from).ok_or_else(missing)?;
        if flags.exchange {
            return Err(Error::Invalid("staging files cannot be exchanged".into()));
        }
        if is_staging_name(to) {
            if flags.noreplace && self.staging.find(dir, to).is_some() {
                return Err(Error::Exists(format!("{}/{to} exists", dir.path())));
            }
            self.staging.rename(dir, from, to);
            return Ok(());
        }
        let root: Root = to.parse().map_err(|_| {
            Error::Invalid(format!(
                "cannot rename {from} to {to:?}: a sector is named by its root (64 lowercase                  hex characters)"
            ))
        })?;
        if flags.noreplace && self.child(dir, to).is_ok() {
            return Err(Error::Exists(format!("{}/{to} exists", dir.path())));
        }
        let file = self.staged(id)?;
        let mut file = file.lock();
        let id = file.store_as(root)?;
        self.staging.remove(dir, from);
        self.keep_mtime(&file, id);
        Ok(())
    }

    /// The file of staging file `id`.
    pub(super) fn staged(&self, id: u64) -> Result<Arc<Mutex<SectorFile>>> {
        self.staging
            .file(id)
            .ok_or_else(|| Error::NotFound(format!("staging file #{id} is gone")))
    }

    /// `ln /sectors/<root> /temp/<h>/<root>` (or back into `/sectors`):
    /// another reference to a stored sector.
    pub fn link(&self, ino: u64, newparent: u64, newname: &OsStr) -> Result<Entry> {
        let node = node_of(ino)?;
        let parent = node_of(newparent)?;
        let name = text(newname, || {
            Error::NotFound(format!("{newname:?} is not a root"))
        })?;
        let Node::Sector(id) = node else {
            return Err(Error::NotPermitted(format!(
                "only sectors can be linked, not {}",
                node.path()
            )));
        };
        let sector = self
            .engine
            .sector_info(SectorKey::Id(id))?
            .ok_or_else(|| Error::NotFound("the sector is no longer stored".into()))?;
        if name != sector.root.to_string() {
            return Err(Error::Invalid(format!(
                "a link to sector {} must be named by its root, not {name}",
                sector.root
            )));
        }
        let reference = match parent {
            Node::TempHeight(h) => Reference::Temp(h),
            Node::SectorsDir => Reference::Pin,
            _ => {
                return Err(Error::NotPermitted(
                    "sectors can be linked into /sectors or /temp/<height> only".into(),
                ));
            }
        };
        self.engine.add_reference(&sector.root, reference)?;
        self.entry(parent, node, name)
    }

    /// `flags`: the open(2) flags; `pid`: the thread that asked.
    pub fn open(&self, ino: u64, flags: i32, pid: u32) -> Result<Opened> {
        let node = node_of(ino)?;
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let readable = flags & libc::O_ACCMODE != libc::O_WRONLY;
        let direct = Caching::Direct;
        let (handle, caching) = match node {
            Node::Sector(id) => {
                let s = self
                    .engine
                    .sector_info(SectorKey::Id(id))?
                    .ok_or_else(|| Error::NotFound("the sector is no longer stored".into()))?;
                if !write {
                    // in doubt, cold: its reads look again
                    let cold =
                        self.engine.has_cold() && self.engine.is_cold_only(&s.root).unwrap_or(true);
                    // a cold sector's bytes pass once: straight to the
                    // reader, not through the kernel's cache as well
                    let caching = match cold && self.cold_uncached.load(Ordering::Relaxed) {
                        true => Caching::Uncached,
                        false => Caching::KeepCache,
                    };
                    (Handle::SectorRead(s.root, cold), caching)
                } else if flags & libc::O_TRUNC == 0 {
                    return Err(Error::NotPermitted(format!(
                        "sector {} is stored and cannot be modified; open it with O_TRUNC to \
                         write it again",
                        s.root
                    )));
                } else {
                    // rewritten where it was opened: in /temp/<height>, its
                    // temp entry stays as it is; in /sectors, the pin is added
                    // a guess: the entry may have been cached, so no
                    // lookup told where it was opened; the writer's
                    // descriptor confirms it at the first write
                    let reference = match self.temp_lookups.lock().pop(&(id, pid)) {
                        Some(h) => Reference::Temp(h),
                        None => Reference::Pin,
                    };
                    let mut file = SectorFile::new(self.engine.clone(), Some(s.root), reference)?;
                    file.reference_unconfirmed = true;
                    (Handle::SectorWrite(Arc::new(Mutex::new(file))), direct)
                }
            }
            Node::Contract(id) => {
                let c = self
                    .engine
                    .contract_by_id(id)?
                    .ok_or_else(|| Error::NotFound("the contract no longer exists".into()))?;
                // read with the id and name, before the list: a revision in
                // between shows as a newer list, never as an older mark.
                // For reading only: an append to a long list must not read
                // it all.
                let snapshot = match readable {
                    true => contract_text(&self.engine.contract_roots_by_id(c.id)?),
                    false => Vec::new(),
                };
                let edit = write.then(|| ContractFile::edit_of(flags, false)).flatten();
                let opener = fds::process_of(pid);
                let file = ContractFile::new(c, edit, snapshot, opener, false);
                (Handle::ContractWrite(Mutex::new(file)), direct)
            }
            Node::Pending(_) => {
                return Err(Error::Busy("this sector is still being written".into()));
            }
            Node::Staging(id) if write => {
                (Handle::SectorWrite(self.reopen_staged(id, flags)?), direct)
            }
            Node::Staging(_) => {
                return Err(Error::Busy(
                    "a staging file cannot be read: rename it onto its root to store it, then \
                     read the sector"
                        .into(),
                ));
            }
            n if n.is_dir() => {
                return Err(Error::IsDir(format!(
                    "{} is a directory and cannot be opened as a file",
                    n.path()
                )));
            }
            n => {
                let writable = matches!(
                    n,
                    Node::Height
                        | Node::Copies
                        | Node::VolumesAdd
                        | Node::VolumesAttach
                        | Node::Status
                ) || matches!(n, Node::Volume(_, f) if f.writable());
                if write && !writable {
                    return Err(Error::Access(format!("{} is read-only", n.path())));
                }
                let snapshot = match readable {
                    true => generated::content(&self.engine, n)?,
                    false => Vec::new(),
                };
                match write {
                    true => (Handle::Control(ControlFile::new(n, snapshot)), direct),
                    false => (Handle::Snapshot(snapshot), direct),
                }
            }
        };
        Ok(Opened {
            fh: self.handles.insert(handle),
            caching,
        })
    }

    /// Creates a sector file (stored at close) or a contract.
    pub fn create(
        &self,
        parent: u64,
        name: &OsStr,
        flags: i32,
        pid: u32,
    ) -> Result<(Entry, Opened)> {
        let parent = node_of(parent)?;
        let name = text(name, || {
            Error::Invalid(format!(
                "{name:?} is not UTF-8 text, so neither a root nor a contract id"
            ))
        })?;
        let root = || {
            name.parse::<Root>().map_err(|_| {
                Error::Invalid(format!(
                    "{name:?} is not a sector root (64 lowercase hex characters)"
                ))
            })
        };
        let sector = |root, reference| -> Result<(Node, u64)> {
            let file = SectorFile::new(self.engine.clone(), Some(root), reference)?;
            let fh = self
                .handles
                .insert(Handle::SectorWrite(Arc::new(Mutex::new(file))));
            Ok((Node::Pending(fh), fh))
        };
        let (node, fh) = match parent {
            Node::SectorsDir | Node::TempHeight(_) if is_staging_name(name) => {
                self.create_staged(parent, name, flags)?
            }
            Node::SectorsDir => sector(root()?, Reference::Pin)?,
            Node::TempHeight(h) => {
                let root = root()?;
                self.check_temp_height(h)?;
                sector(root, Reference::Temp(h))?
            }
            Node::ContractsDir => {
                let (c, made) = self.engine.create_contract_if_absent(name)?;
                if !made && flags & libc::O_EXCL != 0 {
                    return Err(Error::Exists(format!("contract {name} already exists")));
                }
                // Existing: made by another process since the kernel looked,
                // so this is an open like any other (without O_TRUNC it must
                // not empty the list).
                let readable = flags & libc::O_ACCMODE != libc::O_WRONLY;
                let snapshot = match !made && readable {
                    true => contract_text(&self.engine.contract_roots_by_id(c.id)?),
                    false => Vec::new(),
                };
                let edit = ContractFile::edit_of(flags, made);
                let opener = fds::process_of(pid);
                let id = c.id;
                let file = ContractFile::new(c, edit, snapshot, opener, made);
                let fh = self.handles.insert(Handle::ContractWrite(Mutex::new(file)));
                (Node::Contract(id), fh)
            }
            _ => {
                return Err(Error::NotPermitted(format!(
                    "files can be created in /sectors, /temp/<height> and /contracts only, not \
                     {}/{name}",
                    parent.path()
                )));
            }
        };
        match self.attr(node) {
            Ok(attr) => Ok((
                Entry {
                    attr,
                    ttl: entry_ttl(node),
                },
                Opened {
                    fh,
                    caching: Caching::Direct,
                },
            )),
            Err(e) => {
                self.handles.remove(fh);
                Err(e)
            }
        }
    }

    /// A staging file made (or, made meanwhile by another process, opened
    /// as by `open`).
    fn create_staged(&self, dir: Node, name: &str, flags: i32) -> Result<(Node, u64)> {
        let height = self.engine.height()?;
        let reference = match dir {
            Node::TempHeight(h) => {
                check_temp_height(h, height)?;
                Reference::Temp(h)
            }
            _ => Reference::Pin,
        };
        self.staging
            .sweep(|d| matches!(d, Node::TempHeight(h) if h <= height));
        let file = match self.staging.find(dir, name) {
            Some(_) if flags & libc::O_EXCL != 0 => {
                return Err(Error::Exists(format!("{}/{name} exists", dir.path())));
            }
            Some(id) => (id, self.reopen_staged(id, flags)?),
            None => {
                let file = Arc::new(Mutex::new(SectorFile::new(
                    self.engine.clone(),
                    None,
                    reference,
                )?));
                (self.staging.add(dir, name, file.clone()), file)
            }
        };
        let fh = self.handles.insert(Handle::SectorWrite(file.1));
        Ok((Node::Staging(file.0), fh))
    }

    /// Staging file `id` opened for writing again (`O_TRUNC` empties it).
    fn reopen_staged(&self, id: u64, flags: i32) -> Result<Arc<Mutex<SectorFile>>> {
        let file = self.staged(id)?;
        if flags & libc::O_TRUNC != 0 {
            file.lock().set_len(0)?;
        }
        Ok(file)
    }

    /// A read of a sector with a cold copy that a block kept from an
    /// earlier fetch holds (answered in place: no thread, lookup or
    /// request), or of a sector stored only in the cold store, as work to
    /// run on a thread of its own (a read waiting on the store must not take
    /// a FUSE thread that reads of local sectors need). `None`: any other
    /// read (answered in place by [`read`](Self::read)). `pid`: the thread
    /// that asked, told apart from other readers for read-ahead.
    pub fn cold_read(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
        pid: u32,
    ) -> Option<ColdRead<impl FnOnce() -> Result<Vec<u8>> + Send + 'static>> {
        if !self.engine.has_cold() {
            return None;
        }
        let handle = self.handles.get(fh).ok()?;
        let Handle::SectorRead(root, cold) = &*handle else {
            return None;
        };
        let end = (offset + size as u64).min(SECTOR_SIZE as u64);
        if offset >= end {
            return None;
        }
        if let Some(kept) = self.engine.cold_kept(root, offset, end - offset) {
            return Some(ColdRead::Kept(kept));
        }
        // a sector local when opened is read in place; a cold one on a
        // thread, without a look-up (promoted since, its new local copy is
        // read first there)
        if !*cold {
            return None;
        }
        let (engine, root) = (self.engine.clone(), *root);
        Some(ColdRead::Fetch(move || {
            let mut buf = vec![0u8; (end - offset) as usize];
            // 0: a reader the kernel cannot name (another pid namespace)
            let reader = Some(pid).filter(|&p| p != 0);
            engine.read_sector_by(&root, offset, &mut buf, reader)?;
            Ok(buf)
        }))
    }

    /// Reads up to `size` bytes at `offset` and hands them to `reply`
    /// (sector bytes go through a buffer kept per thread: no allocation or
    /// page faults per read).
    pub fn read<R>(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
        reply: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        let handle = self.handles.get(fh)?;
        let slice = |data: &[u8]| {
            let start = (offset as usize).min(data.len());
            let end = start.saturating_add(size as usize).min(data.len());
            start..end
        };
        match &*handle {
            Handle::Snapshot(data) => Ok(reply(&data[slice(data)])),
            Handle::Control(c) => Ok(reply(&c.snapshot[slice(&c.snapshot)])),
            Handle::ContractWrite(up) => {
                let up = up.lock();
                Ok(reply(&up.snapshot[slice(&up.snapshot)]))
            }
            Handle::SectorWrite(_) => Err(Error::BadHandle(
                "a sector being written cannot be read until it is stored".into(),
            )),
            Handle::SectorRead(root, _) => {
                let end = (offset + size as u64).min(SECTOR_SIZE as u64);
                if offset >= end {
                    return Ok(reply(&[]));
                }
                thread_local!(static BUF: std::cell::RefCell<Vec<u8>> = const {
                    std::cell::RefCell::new(Vec::new())
                });
                BUF.with_borrow_mut(|buf| {
                    let len = (end - offset) as usize;
                    if buf.len() < len {
                        buf.resize(len, 0);
                    }
                    self.engine.read_sector(root, offset, &mut buf[..len])?;
                    Ok(reply(&buf[..len]))
                })
            }
        }
    }

    /// Writes `data` at `offset`; `owner`: the lock owner of the writing
    /// process, `pid` the thread that wrote. Returns the bytes taken (fewer
    /// for a control write whose later line was refused).
    pub fn write(
        &self,
        fh: u64,
        offset: u64,
        data: &[u8],
        owner: Option<u64>,
        pid: u32,
    ) -> Result<usize> {
        let handle = self.handles.get(fh)?;
        match &*handle {
            Handle::SectorWrite(up) => {
                let mut up = up.lock();
                up.confirm_reference(|root| fds::opened_as(pid, &self.mountpoint, root));
                up.write(offset, data, owner)?
            }
            Handle::ContractWrite(up) => up.lock().write(&self.engine, offset, data, owner)?,
            Handle::Control(c) => {
                let written = c.write(&self.engine, &self.mountpoint, data, owner);
                if c.node() == Node::Height {
                    self.height_written();
                }
                return written;
            }
            Handle::Snapshot(_) | Handle::SectorRead(..) => {
                return Err(Error::BadHandle("the file is open for reading only".into()));
            }
        }
        Ok(data.len())
    }

    /// A close of one descriptor (`owner`: its lock owner, `pid`: the
    /// thread): a sector is stored, a contract revised, a control file's
    /// last line applied, when this close decides.
    pub fn flush(&self, fh: u64, owner: u64, pid: u32) -> Result<()> {
        let Ok(handle) = self.handles.get(fh) else {
            return Ok(());
        };
        match &*handle {
            Handle::SectorWrite(up) => self.commit_sector(up, Some(owner)),
            Handle::ContractWrite(up) => {
                // looked at without the file's lock: see `opener_may_write`
                let probe = up.lock().opener_probe(&self.engine);
                let may_write = probe.map(|p| contract_file::opener_may_write(pid, p));
                let committed = up.lock().commit(&self.engine, Some(owner), may_write);
                self.contract_closed(up);
                committed
            }
            Handle::Control(c) => {
                let flushed = c.flush(&self.engine, &self.mountpoint, owner);
                if c.node() == Node::Height {
                    self.height_written();
                }
                flushed
            }
            Handle::Snapshot(_) | Handle::SectorRead(..) => Ok(()),
        }
    }

    /// The last close: the handle goes, and what only a release can tell
    /// is done (a contract's late truncation).
    pub fn release(&self, fh: u64) -> Result<()> {
        let Some(handle) = self.handles.remove(fh) else {
            return Ok(());
        };
        match &*handle {
            Handle::ContractWrite(up) => {
                let released = up.lock().release(&self.engine);
                self.contract_closed(up);
                released
            }
            Handle::SectorWrite(up) => {
                up.lock().release();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// What a close would do, done now, so that a success is durable: a
    /// whole sector is stored, a contract's list applied. A sector file not
    /// yet 4 MiB cannot be stored, and says so rather than succeed.
    pub fn fsync(&self, fh: u64) -> Result<()> {
        let Ok(handle) = self.handles.get(fh) else {
            return Ok(());
        };
        match &*handle {
            Handle::SectorWrite(up) => self.commit_sector(up, None),
            Handle::ContractWrite(up) => {
                let committed = up.lock().commit(&self.engine, None, None);
                self.contract_closed(up);
                committed
            }
            // each complete line took effect when it was written; a
            // partial one waits for the rest or the close
            Handle::Control(_) | Handle::Snapshot(_) | Handle::SectorRead(..) => Ok(()),
        }
    }

    pub fn statfs(&self) -> Statfs {
        // the two figures df shows, not every total /status shows
        let cap = self.engine.capacity();
        let sectors = match self.engine.copy_census() {
            Ok(census) => census.sectors,
            Err(e) => {
                tracing::warn!(
                    "statfs: cannot count the stored sectors, using the used slots: {e}"
                );
                cap.used_slots
            }
        };
        let df = crate::figures::Df::of(&cap, sectors);
        Statfs {
            blocks: df.blocks,
            free: df.free,
            available: df.available,
            files: df.files,
            block_size: SECTOR_SIZE as u32,
        }
    }
}

/// A name as text; `bad` says what a name that is not UTF-8 means here.
pub(super) fn text(name: &OsStr, bad: impl FnOnce() -> Error) -> Result<&str> {
    name.to_str().ok_or_else(bad)
}
