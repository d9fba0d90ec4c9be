//! The `fuser::Filesystem` adapter: each request is decoded, handed to
//! [`SectorFs`], and answered with its result or its error's errno. No
//! decisions are made here; refusals are logged in one place.

use std::ffi::OsStr;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use std::sync::Arc;

use super::attr::{Attr, Entry, Kind};
use super::filesystem::{self, Caching, ColdRead, SectorFs, SetAttr};
use super::invalidate::{self, Invalidator};
use super::known::Name;
use crate::engine::UPLOAD_CHUNK;
use crate::error::Error;

/// The mounted file system: [`SectorFs`] behind the kernel's protocol,
/// and what tells the kernel to drop what a change made untrue.
pub struct Fuse(SectorFs, Arc<Invalidator>);

impl Fuse {
    pub fn new(fs: SectorFs) -> Fuse {
        let invalidator = fs.invalidator();
        Fuse(fs, invalidator)
    }

    /// Does a request's `work` that may change what the kernel caches,
    /// then `answer`s once the names it made untrue are dropped (see
    /// `invalidate.rs`). `own`: the names the request itself removes or
    /// renames, which the kernel drops on the answer.
    fn changing<T: Send + 'static>(
        &self,
        own: &[Name],
        work: impl FnOnce(&SectorFs) -> T,
        answer: impl FnOnce(T) + Send + 'static,
    ) {
        let (out, mut names) = invalidate::collecting(|| work(&self.0));
        names.retain(|n| !own.contains(n));
        self.1.answer_after(names, move || answer(out));
    }
}

/// The name `name` in directory `parent`, as the kernel caches it.
fn name_in(parent: INodeNo, name: &OsStr) -> Name {
    Name {
        parent: parent.0,
        name: name.to_string_lossy().into_owned(),
    }
}

/// Logs a refusal in words and turns it into the errno to return.
fn refuse(op: &str, e: &Error) -> Errno {
    match e.errno() {
        // looking for what is not there is routine (shells, `test -e`, the
        // kernel before a create, `ls` asking for ACLs, `cp` trying to
        // clone); any other refusal is logged
        libc::ENOENT if matches!(op, "look up" | "stat" | "list" | "getxattr") => {
            tracing::debug!("{op}: {e}")
        }
        libc::ENODATA | libc::ENOTTY => tracing::debug!("{op}: {e}"),
        libc::ENOTSUP if op == "getxattr" => tracing::debug!("{op}: {e}"),
        libc::EIO => tracing::error!("{op} failed: {e}"),
        _ => tracing::warn!("refused {op}: {e}"),
    }
    Errno::from_i32(e.errno())
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        // the engine's write chunk: `cp` and friends then write in pieces
        // the engine sends to the disk at once, rather than reading a
        // whole sector before writing any of it (measured about 15% faster
        // `cp` than a 4 MiB block size)
        blksize: UPLOAD_CHUNK as u32,
        flags: 0,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
    }
}

fn fopen(caching: Caching) -> FopenFlags {
    match caching {
        Caching::KeepCache => FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
        Caching::Direct => FopenFlags::FOPEN_DIRECT_IO,
        Caching::Uncached => FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_NOFLUSH,
    }
}

fn reply_entry(reply: ReplyEntry, op: &str, entry: Result<Entry, Error>) {
    match entry {
        Ok(e) => reply.entry_with_ttls(&e.attr.ttl, &e.ttl, &file_attr(&e.attr), Generation(0)),
        Err(e) => reply.error(refuse(op, &e)),
    }
}

fn reply_attr(reply: ReplyAttr, op: &str, attr: Result<Attr, Error>) {
    match attr {
        Ok(a) => reply.attr(&a.ttl, &file_attr(&a)),
        Err(e) => reply.error(refuse(op, &e)),
    }
}

fn reply_empty(reply: ReplyEmpty, op: &str, result: Result<(), Error>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(refuse(op, &e)),
    }
}

/// An extended attribute's value or a list of names: its size when asked
/// for the size, else the bytes if they fit.
fn reply_xattr(reply: ReplyXattr, op: &str, size: u32, value: Result<Vec<u8>, Error>) {
    match value {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if (size as usize) < v.len() => reply.error(refuse(
            op,
            &Error::Range(format!("the value is {} bytes, more than {size}", v.len())),
        )),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(refuse(op, &e)),
    }
}

impl Filesystem for Fuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_readahead(1 << 20);
        let _ = config.set_max_background(64);
        // O_TRUNC arrives with open, so a contract knows replace from append
        // and a control file is not truncated separately.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC) {
            tracing::warn!("the kernel lacks {missing:?}");
        }
        // listings carry each entry's attributes when the kernel sees
        // lookups follow them (`ls -l`): no round trip per entry
        if let Err(missing) = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO)
        {
            tracing::debug!("the kernel lacks {missing:?}: listings without attributes");
        }
        // files the kernel does not cache can still be mapped
        let mappable = config
            .add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
            .is_ok();
        if !mappable {
            tracing::debug!(
                "the kernel cannot map uncached files: cold sectors read through its cache"
            );
        }
        self.0.set_cold_uncached(mappable);
        Ok(())
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.0.forget(ino.0, nlookup);
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let _answering = self.1.answering();
        reply_entry(reply, "look up", self.0.lookup(parent.0, name, req.pid()));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(reply, "stat", self.0.getattr(ino.0, fh.map(|f| f.0)));
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
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            mtime: mtime.map(|t| match t {
                TimeOrNow::SpecificTime(t) => t,
                TimeOrNow::Now => std::time::SystemTime::now(),
            }),
        };
        self.changing(
            &[],
            |fs| fs.setattr(ino.0, fh.map(|f| f.0), set),
            |r| reply_attr(reply, "setattr", r),
        );
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
        let _answering = self.1.answering();
        reply_entry(reply, "mkdir", self.0.mkdir(parent.0, name));
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
        let e = Error::NotPermitted(format!(
            "{name:?}: sectorfs holds sectors, contracts and control files, no device nodes, \
             fifos or sockets"
        ));
        reply.error(refuse("mknod", &e));
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        link_name: &OsStr,
        target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        let e = Error::NotPermitted(format!(
            "{link_name:?} -> {target:?}: sectorfs has no symbolic links; use ln (a hard link) \
             to add a reference to a sector"
        ));
        reply.error(refuse("symlink", &e));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.changing(
            &[name_in(parent, name)],
            |fs| fs.rmdir(parent.0, name),
            |r| reply_empty(reply, "rmdir", r),
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.changing(
            &[name_in(parent, name)],
            |fs| fs.unlink(parent.0, name),
            |r| reply_empty(reply, "remove", r),
        );
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
        let flags = filesystem::RenameFlags {
            noreplace: flags.contains(RenameFlags::RENAME_NOREPLACE),
            exchange: flags.contains(RenameFlags::RENAME_EXCHANGE),
        };
        self.changing(
            &[name_in(parent, name), name_in(newparent, newname)],
            |fs| fs.rename(parent.0, name, newparent.0, newname, flags),
            |r| reply_empty(reply, "rename", r),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let _answering = self.1.answering();
        self.changing(
            &[],
            |fs| fs.link(ino.0, newparent.0, newname),
            |r| reply_entry(reply, "link", r),
        );
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.0.open(ino.0, flags.0, req.pid()) {
            Ok(o) => reply.opened(FileHandle(o.fh), fopen(o.caching)),
            Err(e) => reply.error(refuse("open", &e)),
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
        let _answering = self.1.answering();
        let answer = |created: Result<_, Error>| match created {
            Ok((e, o)) => {
                let (e, o): (Entry, filesystem::Opened) = (e, o);
                // one time for the name and the attributes: the shorter
                reply.created(
                    &e.attr.ttl.min(e.ttl),
                    &file_attr(&e.attr),
                    Generation(0),
                    FileHandle(o.fh),
                    fopen(o.caching),
                )
            }
            Err(e) => reply.error(refuse("create", &e)),
        };
        self.changing(
            &[],
            |fs| fs.create(parent.0, name, flags, req.pid()),
            answer,
        );
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.0.cold_read(fh.0, offset, size, req.pid()) {
            None => {}
            Some(ColdRead::Kept(data)) => return reply.data(&data),
            Some(ColdRead::Fetch(work)) => {
                let answer = move || match work() {
                    Ok(data) => reply.data(&data),
                    Err(e) => reply.error(refuse("read", &e)),
                };
                crate::engine::spawn_or_run("cold-read", answer);
                return;
            }
        }
        // the reply is moved into the closure, which runs only on success
        let mut reply = Some(reply);
        let result = self.0.read(fh.0, offset, size, |data| {
            if let Some(r) = reply.take() {
                r.data(data)
            }
        });
        if let (Err(e), Some(r)) = (result, reply) {
            r.error(refuse("read", &e));
        }
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let owner = lock_owner.map(|o| o.0);
        self.changing(
            &[],
            |fs| fs.write(fh.0, offset, data, owner, req.pid()),
            |written| match written {
                Ok(n) => reply.written(n as u32),
                Err(e) => reply.error(refuse("write", &e)),
            },
        );
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.changing(
            &[],
            |fs| fs.flush(fh.0, lock_owner.0, req.pid()),
            |r| reply_empty(reply, "close", r),
        );
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
        // the close was answered already: a failure here can only be logged
        self.changing(
            &[],
            |fs| fs.release(fh.0),
            |r| {
                if let Err(e) = r {
                    refuse("release", &e);
                }
                reply.ok();
            },
        );
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        let e = Error::NoIoctl(format!("ioctl {cmd:#x}: sectorfs files answer no ioctl"));
        reply.error(refuse("ioctl", &e));
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        self.changing(&[], |fs| fs.fsync(fh.0), |r| reply_empty(reply, "fsync", r));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = self.0.readdir(ino.0, offset, &mut |e| {
            reply.add(INodeNo(e.ino), e.next, file_type(e.kind), e.name)
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(refuse("list", &e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        // as a lookup: a change made untrue meanwhile waits for the answer
        let _answering = self.1.answering();
        let listed = self.0.readdirplus(ino.0, offset, &mut |e, entry| {
            // one TTL for both: the shorter (a contract's name is cached,
            // its size never)
            let ttl = entry.ttl.min(entry.attr.ttl);
            reply.add(
                INodeNo(e.ino),
                e.next,
                e.name,
                &ttl,
                &file_attr(&entry.attr),
                Generation(0),
            )
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(refuse("list", &e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.0.statfs();
        reply.statfs(
            s.blocks,
            s.free,
            s.available,
            s.files,
            s.available,
            s.block_size,
            255,
            s.block_size,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, "getxattr", size, self.0.getxattr(ino.0, name));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, "listxattr", size, Ok(self.0.listxattr(ino.0)));
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
        reply_empty(reply, "setxattr", self.0.setxattr(name));
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, "removexattr", self.0.removexattr(name));
    }
}
