//! The `fuser::Filesystem` implementation: each call decodes its inode,
//! asks `SectorFs`/the engine, and replies.

use std::ffi::OsStr;

use fuser::{
    Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use parking_lot::Mutex;

use super::handles::{ContractUpload, ControlInput, Handle, SectorUpload, Writers};
use super::inode::{MAX_TEMP_HEIGHT, Node};
use super::sector_writer::SectorWriter;
use super::{SectorFs, TTL_NONE, control, entry_ttl, fds, parse_temp_height};
use crate::engine::{ContractEdit, Reference};
use crate::error::Error;
use crate::merkle::{Root, SECTOR_SIZE};

const XATTRS: [&str; 3] = [
    "user.sectorfs.volume",
    "user.sectorfs.slot",
    "user.sectorfs.refs",
];
/// The longest contract list a write may build (about a million roots).
const MAX_CONTRACT_BYTES: usize = 64 << 20;
/// Sectors listed per database query while reading `/sectors`.
const PAGE: usize = 512;

fn name_str(name: &OsStr) -> Result<&str, Errno> {
    name.to_str().ok_or(Errno::ENOENT)
}

fn node_of(ino: INodeNo) -> Result<Node, Errno> {
    Node::from_ino(ino.0).ok_or(Errno::ENOENT)
}

impl SectorFs {
    fn entry(&self, node: Node, reply: ReplyEntry) {
        match self.attr(node) {
            Ok((attr, attr_ttl)) => {
                if let Node::Sector(id) = node {
                    self.known.looked_up(id);
                }
                reply.entry_with_ttls(&attr_ttl, &entry_ttl(node), &attr, Generation(0))
            }
            Err(e) => reply.error(self.refuse("stat", &format_args!("{node:?}"), &e)),
        }
    }

    /// Stores a sector being written. A flush before any data (the shell
    /// closing a duplicate of the fd) refuses without deciding anything.
    /// `owner`: the lock owner of a flush (a close); `None` for an fsync,
    /// which always decides.
    fn commit_sector(&self, up: &mut SectorUpload, owner: Option<u64>) -> Result<(), Errno> {
        if let Some(done) = up.outcome {
            return done.map_err(Errno::from_i32);
        }
        let root = up.writer.root;
        if owner.is_some_and(|o| !up.writers.may_decide(o)) {
            tracing::debug!(%root, "flush by a process that did not write: left to the writer");
            return Ok(());
        }
        if up.writer.is_untouched() {
            // a shell's redirection closes its first fd before the command
            // writes: routine, so logged only if it stays so (at release)
            tracing::debug!(%root, "flush before any data: nothing stored yet");
            return Err(Errno::EINVAL);
        }
        let reference = up.reference;
        let stored = up.writer.store(reference);
        let outcome = match stored {
            Ok(s) => {
                tracing::debug!(%root, new = s.new, "sector stored");
                Ok(())
            }
            Err(e) => Err(self.refuse("store sector", &root, &e)),
        };
        up.outcome = Some(outcome.map_err(i32::from));
        outcome
    }

    /// Applies what was written to a contract since the last flush, in one
    /// transaction. A replace that wrote nothing empties the list, unless
    /// the closing process still holds the file: a shell redirection closes
    /// its first descriptor before the command writes the new list, and
    /// emptying there would free sectors the new list names. Such a handle
    /// is emptied at its last flush or at release.
    ///
    /// `owner`: the lock owner of a flush (a close); `None` for an fsync,
    /// which applies what was written so far (a truncation included) and,
    /// when refused, leaves the handle as it was for more writes and the
    /// close.
    fn commit_contract(
        &self,
        up: &mut ContractUpload,
        owner: Option<u64>,
        pid: u32,
    ) -> Result<(), Errno> {
        // renamed since it was opened: messages and the holder check use
        // the name it has now
        if let Ok(Some(name)) = self.engine.contract_name(up.id) {
            up.name = name;
        }
        if let Some(errno) = up.failed {
            tracing::warn!(
                "refused revise contract {}: a write to it failed, so its list is unchanged",
                up.name
            );
            if owner.is_some() {
                self.unmake_contract(up);
            }
            return Err(Errno::from_i32(errno));
        }
        let was_dirty = up.dirty;
        if up.edit == Some(ContractEdit::Replace) && !up.written && !up.applied {
            // an fsync asks for the truncation now; at a close, another
            // process (a child that inherited the descriptor, even one
            // closing it at exec) never empties the list for its opener
            let opener_may_write = || {
                let pid = fds::process_of(pid);
                pid != up.opener
                    || fds::holds_open(pid, &std::path::Path::new("contracts").join(&up.name))
            };
            if owner.is_some() && opener_may_write() {
                tracing::debug!(
                    "contract {} closed with nothing written while its opener may still \
                     write: emptied at its last close",
                    up.name
                );
            } else {
                up.dirty = true;
            }
        }
        if !up.dirty || owner.is_some_and(|o| !up.writers.may_decide(o)) {
            return up.outcome.unwrap_or(Ok(())).map_err(Errno::from_i32);
        }
        up.dirty = false;
        let applied_before = std::mem::replace(&mut up.applied, true);
        let result = match up.edit {
            None => Err(Error::Invalid(format!(
                "contract {} was written without O_TRUNC (replace) or O_APPEND (append); \
                 its list is unchanged",
                up.name
            ))),
            // nothing written: the truncation of the open, applied now to
            // the entries it would have dropped
            Some(ContractEdit::Replace) if !up.written => self.empty_if_unrevised(up),
            Some(edit) => crate::parse::parse_root_list(&up.data)
                .and_then(|roots| self.engine.revise_contract_by_id(up.id, &roots, edit)),
        };
        let outcome = result.map_err(|e| self.refuse("revise contract", &up.name, &e));
        if owner.is_none() && outcome.is_err() {
            // refused at an fsync: the writes go on, the close decides
            up.dirty = was_dirty;
            up.applied = applied_before;
            return outcome;
        }
        if up.edit == Some(ContractEdit::Append) {
            up.data.clear();
        }
        if outcome.is_err() {
            self.unmake_contract(up);
        }
        up.made = false;
        up.outcome = Some(outcome.map_err(i32::from));
        outcome
    }

    /// A contract this handle made, whose first list was refused, goes
    /// again (unless a list was written to it meanwhile): a failed `cp` of
    /// a new contract leaves nothing behind.
    fn unmake_contract(&self, up: &mut ContractUpload) {
        if std::mem::take(&mut up.made)
            && self
                .engine
                .delete_contract_if_unrevised(up.id, up.opened_at.0)
                .unwrap_or(false)
        {
            tracing::info!(
                "contract {} was made by this file and its first list refused: it is gone again",
                up.name
            );
        }
    }

    /// A handle opened with `O_TRUNC` whose flushes all came while its
    /// process still held the file, released with nothing written: the
    /// truncation is done now (see `empty_if_unrevised`).
    fn empty_at_release(&self, up: &ContractUpload) {
        if let Err(e) = self.empty_if_unrevised(up) {
            self.refuse("truncate contract", &up.name, &e);
        }
    }

    /// The truncation of a handle opened with `O_TRUNC` that wrote nothing,
    /// done late: drops the entries the contract had at open, unless its
    /// list was replaced since. Checked and done in one transaction, so a
    /// replace by another handle meanwhile always wins, and entries
    /// appended meanwhile stay, as after a truncation at open.
    fn empty_if_unrevised(&self, up: &ContractUpload) -> Result<(), Error> {
        let (revision, end) = up.opened_at;
        if !self
            .engine
            .empty_contract_if_unrevised(up.id, revision, end)?
        {
            tracing::info!(
                "contract {} was opened to be emptied but revised or removed since; it \
                 stays as it is",
                up.name
            );
        }
        Ok(())
    }

    /// Applies each complete line in `partial`; `all` applies the rest too.
    /// On a refused line, also the bytes of the lines applied before it
    /// (the rest is dropped).
    fn apply_lines(
        &self,
        node: Node,
        input: &Mutex<ControlInput>,
        all: bool,
    ) -> Result<(), (Errno, usize)> {
        let mut input = input.lock();
        let mut applied = 0;
        loop {
            let buf = &mut input.partial;
            let line: Vec<u8> = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => buf.drain(..=i).collect(),
                None if all && !buf.is_empty() => std::mem::take(buf),
                // at close, a handle written with only empty lines did
                // nothing: say so (`echo $UNSET > slots` must not pass for
                // a resize)
                None if all && input.wrote && !input.acted => {
                    input.acted = true;
                    let e =
                        Error::Invalid("only empty lines were written: nothing was done".into());
                    return Err((self.refuse_control(node, &e), applied));
                }
                None => return Ok(()),
            };
            let result = std::str::from_utf8(&line)
                .map_err(|_| Error::Invalid("control input must be text".into()))
                .and_then(|text| {
                    if text.trim().is_empty() {
                        return Ok(());
                    }
                    input.acted = true;
                    control::apply(&self.engine, node, text, &self.mountpoint)
                });
            if let Err(e) = result {
                input.acted = true;
                input.partial.clear();
                return Err((self.refuse_control(node, &e), applied));
            }
            applied += line.len();
        }
    }

    fn open_sector_write(&self, root: Root, reference: Reference) -> u64 {
        self.handles
            .insert(Handle::SectorWrite(Mutex::new(SectorUpload {
                writer: SectorWriter::new(self.engine.clone(), root),
                writers: Writers::default(),
                reference,
                outcome: None,
            })))
    }

    /// A directory listed in pages straight from the database, never held
    /// whole. Cookies: 1 ".", 2 "..", then an entry's id + 2 (ids start at
    /// 1 and are never given twice), so a listing resumes after the last
    /// entry it returned whatever was added or removed meanwhile.
    fn readdir_paged(
        &self,
        dir: Node,
        offset: u64,
        mut reply: ReplyDirectory,
        page_after: impl Fn(i64) -> Result<Vec<(i64, Node, String)>, Error>,
    ) {
        if offset < 1 && reply.add(INodeNo(dir.ino()), 1, FileType::Directory, ".") {
            return reply.ok();
        }
        if offset < 2 && reply.add(INodeNo(Node::Root.ino()), 2, FileType::Directory, "..") {
            return reply.ok();
        }
        let mut after = offset.saturating_sub(2) as i64;
        loop {
            let page = match page_after(after) {
                Ok(p) => p,
                Err(e) => return reply.error(self.refuse("list", &format_args!("{dir:?}"), &e)),
            };
            for (id, node, name) in &page {
                if reply.add(
                    INodeNo(node.ino()),
                    *id as u64 + 2,
                    FileType::RegularFile,
                    name,
                ) {
                    return reply.ok();
                }
                after = *id;
            }
            if page.len() < PAGE {
                return reply.ok();
            }
        }
    }
}

impl Filesystem for SectorFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        // O_TRUNC arrives with open, so a contract knows replace from append
        // and a control file is not truncated separately.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC) {
            tracing::warn!("the kernel lacks {missing:?}");
        }
        Ok(())
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if let Some(Node::Sector(id)) = Node::from_ino(ino.0) {
            self.known.forgotten(id, nlookup);
        }
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = node_of(parent)
            .and_then(|p| Ok((p, name_str(name)?)))
            .and_then(|(p, n)| self.child(p, n).map_err(|e| self.refuse("look up", &n, &e)));
        match found {
            Ok(node) => {
                if let Node::Sector(id) = node {
                    let mut lookups = self.temp_lookups.lock();
                    match node_of(parent) {
                        Ok(Node::TempHeight(h)) => {
                            lookups.put((id, req.pid()), h);
                        }
                        _ => {
                            lookups.pop(&(id, req.pid()));
                        }
                    }
                }
                self.entry(node, reply)
            }
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let node = match node_of(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        if let Some(Handle::SectorWrite(up)) = fh.and_then(|f| self.handles.get(f.0)).as_deref() {
            let mut attr = self.base_attr(node, FileType::RegularFile, 0o644, 0);
            attr.size = up.lock().writer.len();
            return reply.attr(&TTL_NONE, &attr);
        }
        match self.attr(node) {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(e) => reply.error(self.refuse("stat", &format_args!("{node:?}"), &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let node = match node_of(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        if mode.is_some() || uid.is_some() || gid.is_some() {
            tracing::warn!("refused chmod/chown of {node:?}: sectorfs sets its own modes");
            return reply.error(Errno::EPERM);
        }
        if let Some(size) = size {
            let handle = match node {
                Node::Pending(n) => self.handles.get(n),
                _ => fh.and_then(|f| self.handles.get(f.0)),
            };
            let result = match (node, handle.as_deref()) {
                (_, Some(Handle::SectorWrite(up))) => {
                    let mut up = up.lock();
                    // the data changed: the next close decides anew
                    up.outcome = None;
                    up.writer.set_len(size)
                }
                (_, Some(Handle::ContractWrite(up))) if size == 0 => {
                    let mut up = up.lock();
                    up.data.clear();
                    if up.edit != Some(ContractEdit::Replace) {
                        // ftruncate(0) on a contract opened without O_TRUNC
                        // (`truncate -s 0`, editors): from here on the handle
                        // replaces the list, empty unless more is written,
                        // applied at close like any revision
                        up.edit = Some(ContractEdit::Replace);
                        up.written = true;
                        up.dirty = true;
                        up.outcome = None;
                    }
                    Ok(())
                }
                (Node::Contract(id), _) if size == 0 => {
                    self.engine
                        .revise_contract_by_id(id, &[], ContractEdit::Replace)
                }
                (Node::Sector(_), _) if size == SECTOR_SIZE as u64 => Ok(()),
                (Node::Sector(_) | Node::Contract(_), _) => Err(Error::NotPermitted(format!(
                    "stored data cannot be truncated to {size} bytes"
                ))),
                // generated files: truncation is meaningless and harmless
                _ => Ok(()),
            };
            if let Err(e) = result {
                return reply.error(self.refuse("truncate", &format_args!("{node:?}"), &e));
            }
        }
        self.getattr(_req, ino, fh, reply);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        if node_of(parent) != Ok(Node::TempDir) {
            tracing::warn!("refused mkdir {name:?}: only /temp has directories to make");
            return reply.error(Errno::EPERM);
        }
        let made = name_str(name)
            .map_err(|_| Error::Invalid("a temp directory name must be a height".into()))
            .and_then(parse_temp_height)
            // durable, like any call that returns success: an empty
            // directory survives a restart
            .and_then(|h| self.engine.make_temp_dir(h).map(|()| h));
        match made {
            Ok(h) => self.entry(Node::TempHeight(h), reply),
            Err(e) => reply.error(self.refuse("mkdir", &format_args!("/temp/{name:?}"), &e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        tracing::warn!(
            "refused mknod {name:?}: sectorfs holds sectors, contracts and control files, no \
             device nodes, fifos or sockets"
        );
        reply.error(Errno::EPERM);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        tracing::warn!(
            "refused symlink {link_name:?} -> {target:?}: sectorfs has no symbolic links; \
             use ln (a hard link) to add a reference to a sector"
        );
        reply.error(Errno::EPERM);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if node_of(parent) != Ok(Node::TempDir) {
            tracing::warn!("refused rmdir {name:?}: only /temp directories can be removed");
            return reply.error(Errno::EPERM);
        }
        let result = name_str(name)
            .map_err(|_| Error::NotFound("no such directory".into()))
            .and_then(|n| parse_temp_height(n).map_err(|_| Error::NotFound(n.to_string())))
            .and_then(|h| self.engine.remove_temp_dir(h));
        match result {
            Ok(()) => reply.ok(),
            Err(Error::Busy(m)) => {
                tracing::warn!("refused rmdir: {m}");
                reply.error(Errno::from_i32(libc::ENOTEMPTY))
            }
            Err(e) => reply.error(self.refuse("rmdir", &format_args!("/temp/{name:?}"), &e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (parent, name) = match node_of(parent).and_then(|p| Ok((p, name_str(name)?))) {
            Ok(x) => x,
            Err(e) => return reply.error(e),
        };
        let root = || {
            name.parse::<Root>()
                .map_err(|_| Error::NotFound(name.to_string()))
        };
        let result = match parent {
            Node::SectorsDir => root().and_then(|r| self.engine.unpin(&r)),
            Node::ContractsDir => self.engine.delete_contract(name),
            // the directory stays, as it would on any file system
            Node::TempHeight(h) => root().and_then(|r| self.engine.remove_temp(h, &r)),
            _ => Err(Error::NotPermitted(format!("{name} cannot be removed"))),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(self.refuse("remove", &name, &e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (from, to) = match (name_str(name), name_str(newname)) {
            (Ok(a), Ok(b)) => (a, b),
            // no stored name is anything but text
            (Err(e), _) => return reply.error(e),
            (Ok(a), Err(_)) => {
                tracing::warn!(
                    "refused rename {a} to {newname:?}: not UTF-8 text, so not a valid name"
                );
                return reply.error(Errno::EINVAL);
            }
        };
        let (p, np) = (node_of(parent), node_of(newparent));
        let result = if p != np {
            // mv falls back to copy and remove, which is what moving a
            // sector between /sectors and /temp means
            Err(Error::NotPermitted(format!(
                "{from} can only be renamed within its directory"
            )))
            .map_err(|e| (e, Errno::EXDEV))
        } else if p != Ok(Node::ContractsDir) {
            Err((
                Error::NotPermitted(format!("only contracts can be renamed, not {from}")),
                Errno::EPERM,
            ))
        } else if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            Err((
                Error::Invalid("contracts cannot be exchanged".into()),
                Errno::EINVAL,
            ))
        } else {
            let replace = !flags.contains(RenameFlags::RENAME_NOREPLACE);
            self.engine.rename_contract(from, to, replace).map_err(|e| {
                let errno = Errno::from_i32(e.errno());
                (e, errno)
            })
        };
        match result {
            Ok(()) => reply.ok(),
            Err((e, errno)) => {
                self.refuse("rename", &from, &e);
                reply.error(errno)
            }
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (node, parent, name) = match (node_of(ino), node_of(newparent), name_str(newname)) {
            (Ok(a), Ok(b), Ok(c)) => (a, b, c),
            _ => return reply.error(Errno::ENOENT),
        };
        let result = (|| {
            let Node::Sector(id) = node else {
                return Err(Error::NotPermitted("only sectors can be linked".into()));
            };
            let sector = self
                .engine
                .sector_by_id(id)?
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
            self.engine.add_reference(&sector.root, reference)
        })();
        match result {
            Ok(()) => self.entry(node, reply),
            Err(e) => reply.error(self.refuse("link", &name, &e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let node = match node_of(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let trunc = flags.0 & libc::O_TRUNC != 0;
        let append = flags.0 & libc::O_APPEND != 0;
        let direct = FopenFlags::FOPEN_DIRECT_IO;
        let opened: Result<(Handle, FopenFlags), Error> = (|| match node {
            Node::Sector(id) => {
                let s = self
                    .engine
                    .sector_by_id(id)?
                    .ok_or_else(|| Error::NotFound("the sector is no longer stored".into()))?;
                if !write {
                    // content never changes for a root: keep the kernel's
                    // cache; and a reader's close has nothing to flush
                    return Ok((
                        Handle::SectorRead(s.root),
                        FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
                    ));
                }
                if !trunc {
                    return Err(Error::NotPermitted(format!(
                        "sector {} is stored and cannot be modified; open it with O_TRUNC to \
                         write it again",
                        s.root
                    )));
                }
                // rewritten where it was opened: in /temp/<height>, its
                // temp entry stays as it is; in /sectors, the pin is added
                let reference = match self.temp_lookups.lock().pop(&(id, req.pid())) {
                    Some(h) => Reference::Temp(h),
                    None => Reference::Pin,
                };
                let up = SectorUpload {
                    writer: SectorWriter::new(self.engine.clone(), s.root),
                    writers: Writers::default(),
                    reference,
                    outcome: None,
                };
                Ok((Handle::SectorWrite(Mutex::new(up)), direct))
            }
            Node::Contract(id) => {
                let c = self
                    .engine
                    .contract_by_id(id)?
                    .ok_or_else(|| Error::NotFound("the contract no longer exists".into()))?;
                // read with the id and name, before the list: a revision in
                // between shows as a newer list, never as an older mark
                // for reading only: an append to a long list must not read
                // it all
                let snapshot = if flags.acc_mode() == OpenAccMode::O_WRONLY {
                    Vec::new()
                } else {
                    contract_text(&self.engine.contract_roots_by_id(c.id)?)
                };
                let edit = if !write {
                    None
                } else if append {
                    Some(ContractEdit::Append)
                } else if trunc {
                    Some(ContractEdit::Replace)
                } else {
                    None
                };
                let opener = fds::process_of(req.pid());
                let up = ContractUpload::new(c, edit, snapshot, opener, false);
                Ok((Handle::ContractWrite(Mutex::new(up)), direct))
            }
            Node::Pending(_) => Err(Error::Busy("this sector is still being written".into())),
            n if n.is_dir() => Err(Error::Invalid(
                "a directory cannot be opened as a file".into(),
            )),
            n => {
                let writable = matches!(n, Node::Height | Node::VolumesAdd | Node::Status)
                    || matches!(n, Node::Volume(_, f) if f.writable());
                if write && !writable {
                    return Err(Error::NotPermitted(format!(
                        "{} is read-only",
                        self.node_path(n)
                    )));
                }
                let snapshot = if flags.acc_mode() == OpenAccMode::O_WRONLY {
                    Vec::new()
                } else {
                    control::content(&self.engine, n)?
                };
                if write {
                    return Ok((
                        Handle::Control {
                            node: n,
                            snapshot,
                            input: Mutex::default(),
                        },
                        direct,
                    ));
                }
                Ok((Handle::Snapshot(snapshot), direct))
            }
        })();
        match opened {
            Ok((handle, fopen)) => reply.opened(FileHandle(self.handles.insert(handle)), fopen),
            Err(e) => {
                let errno = match &e {
                    Error::NotPermitted(_) if !matches!(node, Node::Sector(_)) => Errno::EACCES,
                    Error::Invalid(_) if node.is_dir() => Errno::EISDIR,
                    _ => Errno::from_i32(e.errno()),
                };
                self.refuse("open", &format_args!("{node:?}"), &e);
                reply.error(errno)
            }
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (parent, name) = match node_of(parent).and_then(|p| Ok((p, name_str(name)?))) {
            Ok(x) => x,
            Err(_) => {
                tracing::warn!(
                    "refused create {name:?}: not UTF-8 text, so neither a root nor a contract id"
                );
                return reply.error(Errno::EINVAL);
            }
        };
        let root = || {
            name.parse::<Root>().map_err(|_| {
                Error::Invalid(format!(
                    "{name:?} is not a sector root (64 lowercase hex characters)"
                ))
            })
        };
        let created: Result<(Node, u64), Error> = (|| match parent {
            Node::SectorsDir => {
                let fh = self.open_sector_write(root()?, Reference::Pin);
                Ok((Node::Pending(fh), fh))
            }
            Node::TempHeight(h) => {
                let root = root()?;
                let current = self.engine.height()?;
                if h <= current || h > MAX_TEMP_HEIGHT {
                    return Err(Error::Invalid(format!(
                        "temp entries must expire above the current height {current}, not at {h}"
                    )));
                }
                let fh = self.open_sector_write(root, Reference::Temp(h));
                Ok((Node::Pending(fh), fh))
            }
            Node::ContractsDir => {
                let (c, created) = self.engine.create_contract_if_absent(name)?;
                let existed = !created;
                if existed && flags & libc::O_EXCL != 0 {
                    return Err(Error::Exists(format!("contract {name} already exists")));
                }
                // Existing: made by another process since the kernel looked,
                // so this is an open like any other (without O_TRUNC it must
                // not empty the list).
                let readable = flags & libc::O_ACCMODE != libc::O_WRONLY;
                let snapshot = match existed && readable {
                    true => contract_text(&self.engine.contract_roots_by_id(c.id)?),
                    false => Vec::new(),
                };
                let edit = if flags & libc::O_APPEND != 0 {
                    Some(ContractEdit::Append)
                } else if !existed || flags & libc::O_TRUNC != 0 {
                    Some(ContractEdit::Replace)
                } else {
                    None
                };
                // made empty here: its truncation is done
                let opener = fds::process_of(req.pid());
                let id = c.id;
                let up = ContractUpload::new(c, edit, snapshot, opener, created);
                let fh = self.handles.insert(Handle::ContractWrite(Mutex::new(up)));
                Ok((Node::Contract(id), fh))
            }
            _ => Err(Error::NotPermitted(format!(
                "files can be created in /sectors, /temp/<height> and /contracts only, not {name}"
            ))),
        })();
        let (node, fh) = match created {
            Ok(x) => x,
            Err(e) => return reply.error(self.refuse("create", &name, &e)),
        };
        match self.attr(node) {
            Ok((attr, ttl)) => reply.created(
                &ttl,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => {
                self.handles.remove(fh);
                reply.error(self.refuse("create", &name, &e))
            }
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let Some(handle) = self.handles.get(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let slice = |data: &[u8]| -> Vec<u8> {
            let start = (offset as usize).min(data.len());
            let end = start.saturating_add(size as usize).min(data.len());
            data[start..end].to_vec()
        };
        match &*handle {
            Handle::Snapshot(data) | Handle::Control { snapshot: data, .. } => {
                reply.data(&slice(data))
            }
            Handle::ContractWrite(up) => reply.data(&slice(&up.lock().snapshot)),
            Handle::SectorWrite(_) => reply.error(Errno::EBADF),
            Handle::SectorRead(root) => {
                let end = (offset + size as u64).min(SECTOR_SIZE as u64);
                if offset >= end {
                    return reply.data(&[]);
                }
                // one buffer per worker thread: no allocation or page faults per read
                thread_local!(static BUF: std::cell::RefCell<Vec<u8>> = const {
                    std::cell::RefCell::new(Vec::new())
                });
                BUF.with_borrow_mut(|buf| {
                    let len = (end - offset) as usize;
                    if buf.len() < len {
                        buf.resize(len, 0);
                    }
                    match self.engine.read_sector(root, offset, &mut buf[..len]) {
                        Ok(()) => reply.data(&buf[..len]),
                        Err(e) => reply.error(self.refuse("read", root, &e)),
                    }
                })
            }
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(handle) = self.handles.get(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let result = match &*handle {
            Handle::SectorWrite(up) => {
                let mut up = up.lock();
                let root = up.writer.root;
                up.outcome = None;
                up.writers.note(lock_owner.map(|o| o.0));
                up.writer
                    .write(offset, data)
                    .map_err(|e| self.refuse("write sector", &root, &e))
            }
            Handle::ContractWrite(up) => {
                let mut up = up.lock();
                up.written = true;
                up.writers.note(lock_owner.map(|o| o.0));
                up.dirty = true;
                up.outcome = None;
                let append = up.edit == Some(ContractEdit::Append);
                let (start, end) = if append {
                    (up.data.len(), up.data.len().saturating_add(data.len()))
                } else {
                    let start = usize::try_from(offset).unwrap_or(usize::MAX);
                    (start, start.saturating_add(data.len()))
                };
                if let Some(errno) = up.failed {
                    Err(Errno::from_i32(errno))
                } else if end > MAX_CONTRACT_BYTES {
                    // sticky: a list with a hole must never be applied
                    up.failed = Some(libc::EFBIG);
                    tracing::warn!(
                        "refused write to contract {}: a list is at most {MAX_CONTRACT_BYTES} \
                         bytes; the revision will not apply",
                        up.name
                    );
                    Err(Errno::EFBIG)
                } else {
                    if up.data.len() < end {
                        up.data.resize(end, 0);
                    }
                    up.data[start..end].copy_from_slice(data);
                    Ok(())
                }
            }
            Handle::Control { node, input, .. } => {
                let earlier = {
                    let mut input = input.lock();
                    input.wrote = true;
                    let earlier = input.partial.len();
                    if earlier + data.len() > 64 << 10 {
                        input.partial.clear();
                        drop(input);
                        let e = Error::Invalid("control input longer than 64 KiB".into());
                        return reply.error(self.refuse_control(*node, &e));
                    }
                    // empty lines before any command: refused here, where
                    // a shell sees it (`echo $UNSET > slots` must not pass
                    // for a resize); a shell does not look at the close
                    if earlier == 0
                        && !input.acted
                        && data.contains(&b'\n')
                        && data.iter().all(u8::is_ascii_whitespace)
                    {
                        input.acted = true;
                        drop(input);
                        let e = Error::Invalid("an empty line: nothing was done".into());
                        return reply.error(self.refuse_control(*node, &e));
                    }
                    input.partial.extend_from_slice(data);
                    earlier
                };
                match self.apply_lines(*node, input, false) {
                    Ok(()) => Ok(()),
                    // lines of this write took effect before the refused
                    // one: a short write says so (a call that fails changes
                    // nothing), and the rest, written again, is refused
                    Err((_, applied)) if applied > earlier => {
                        // (capped: another write on the handle may have
                        // come between)
                        return reply.written((applied - earlier).min(data.len()) as u32);
                    }
                    Err((e, _)) => Err(e),
                }
            }
            Handle::Snapshot(_) | Handle::SectorRead(_) => Err(Errno::EBADF),
        };
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let Some(handle) = self.handles.get(fh.0) else {
            return reply.ok();
        };
        let result = match &*handle {
            Handle::SectorWrite(up) => self.commit_sector(&mut up.lock(), Some(lock_owner.0)),
            Handle::ContractWrite(up) => {
                self.commit_contract(&mut up.lock(), Some(lock_owner.0), req.pid())
            }
            Handle::Control { node, input, .. } => {
                self.apply_lines(*node, input, true).map_err(|(e, _)| e)
            }
            Handle::Snapshot(_) | Handle::SectorRead(_) => Ok(()),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        match self.handles.get(fh.0).as_deref() {
            Some(Handle::ContractWrite(up)) => {
                let up = up.lock();
                if up.edit == Some(ContractEdit::Replace) && !up.written && !up.applied {
                    self.empty_at_release(&up);
                }
            }
            Some(Handle::SectorWrite(up)) => {
                let up = up.lock();
                if up.writer.is_untouched() {
                    let root = up.writer.root;
                    tracing::warn!(
                        "refused store sector {root}: it was closed with nothing written (a \
                         sector is exactly {SECTOR_SIZE} bytes); nothing new was stored"
                    );
                }
            }
            _ => {}
        }
        self.handles.remove(fh.0);
        reply.ok();
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    /// What a close would do, done now, so that a success is durable: a
    /// whole sector is stored, a contract's list applied. A sector file not
    /// yet 4 MiB cannot be stored, and says so rather than succeed.
    fn fsync(&self, req: &Request, _ino: INodeNo, fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        let Some(handle) = self.handles.get(fh.0) else {
            return reply.ok();
        };
        let result = match &*handle {
            Handle::SectorWrite(up) => {
                let mut up = up.lock();
                let len = up.writer.len();
                if up.outcome.is_none() && len < SECTOR_SIZE as u64 {
                    tracing::warn!(
                        root = %up.writer.root,
                        "refused fsync: the sector is {len} bytes so far, and is stored (and \
                         durable) only once it is all {SECTOR_SIZE}"
                    );
                    Err(Errno::EINVAL)
                } else {
                    self.commit_sector(&mut up, None)
                }
            }
            Handle::ContractWrite(up) => self.commit_contract(&mut up.lock(), None, req.pid()),
            // each complete line took effect when it was written; a
            // partial one waits for the rest or the close
            Handle::Control { .. } | Handle::Snapshot(_) | Handle::SectorRead(_) => Ok(()),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let node = match node_of(ino) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let e = &self.engine;
        match node {
            Node::SectorsDir => {
                return self.readdir_paged(node, offset, reply, |after| {
                    Ok(e.list_sectors(after, PAGE)?
                        .into_iter()
                        .map(|s| (s.id, Node::Sector(s.id), s.root.to_string()))
                        .collect())
                });
            }
            Node::ContractsDir => {
                return self.readdir_paged(node, offset, reply, |after| {
                    Ok(e.contract_names_after(after, PAGE)?
                        .into_iter()
                        .map(|(id, name)| (id, Node::Contract(id), name))
                        .collect())
                });
            }
            _ => {}
        }
        let entries = match self.entries(node) {
            Ok(e) => e,
            Err(e) => return reply.error(self.refuse("list", &format_args!("{node:?}"), &e)),
        };
        let parent = match node {
            Node::TempHeight(_) => Node::TempDir,
            Node::VolumeDir(_) => Node::VolumesDir,
            _ => Node::Root,
        };
        let dots = [(".".to_string(), node), ("..".to_string(), parent)];
        for (i, (name, child)) in dots
            .into_iter()
            .chain(entries)
            .enumerate()
            .skip(offset as usize)
        {
            let kind = if child.is_dir() {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            if reply.add(INodeNo(child.ino()), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let cap = self.engine.capacity();
        let sectors = self.engine.meta().count_sectors().unwrap_or(cap.used_slots);
        reply.statfs(
            cap.total_slots,
            cap.free_writable,
            cap.free_writable,
            sectors + cap.free_writable,
            cap.free_writable,
            SECTOR_SIZE as u32,
            255,
            SECTOR_SIZE as u32,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let Ok(Node::Sector(id)) = node_of(ino) else {
            return reply.error(Errno::from_i32(libc::ENODATA));
        };
        let value = (|| {
            let s = self
                .engine
                .sector_by_id(id)?
                .ok_or_else(|| Error::NotFound("gone".into()))?;
            Ok::<_, Error>(match name.to_str() {
                Some("user.sectorfs.volume") => Some(s.volume_id.to_string()),
                Some("user.sectorfs.slot") => Some(s.slot.to_string()),
                Some("user.sectorfs.refs") => {
                    let r = self.engine.ref_counts(id)?;
                    Some(format!(
                        "pin={} contracts={} temp={}",
                        r.pins, r.contracts, r.temp
                    ))
                }
                _ => None,
            })
        })();
        match value {
            Ok(Some(v)) => reply_xattr(reply, size, v.as_bytes()),
            Ok(None) => reply.error(Errno::from_i32(libc::ENODATA)),
            Err(e) => reply.error(self.refuse("getxattr", &name.to_string_lossy(), &e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let names: Vec<u8> = match node_of(ino) {
            Ok(Node::Sector(_)) => XATTRS.iter().flat_map(|n| n.bytes().chain([0])).collect(),
            _ => Vec::new(),
        };
        reply_xattr(reply, size, &names);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        tracing::warn!("refused setxattr {name:?}: sectorfs attributes are read-only");
        reply.error(Errno::from_i32(libc::ENOTSUP));
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        tracing::warn!("refused removexattr {name:?}: sectorfs attributes are read-only");
        reply.error(Errno::from_i32(libc::ENOTSUP));
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if (size as usize) < value.len() {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

pub(super) fn contract_text(roots: &[Root]) -> Vec<u8> {
    let mut out = Vec::with_capacity(roots.len() * 65);
    for r in roots {
        out.extend_from_slice(r.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}
