//! The FUSE adapter: paths and inodes in, engine calls out, engine errors
//! mapped to errnos. Holds no storage logic of its own.

mod control;
mod fds;
mod handles;
mod inode;
mod known;
mod ops;
mod sector_writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo};
use parking_lot::Mutex;

use crate::engine::{Engine, UPLOAD_CHUNK};
use crate::error::{Error, Result};
use crate::merkle::{Root, SECTOR_SIZE};
use handles::{Handle, Handles};
use inode::{MAX_TEMP_HEIGHT, Node, ROOT_ENTRIES, VolFile};
use known::KnownSectors;

pub use mount::{MountOptions, block_signals, mount};

mod mount;

/// Entries and attributes that never change may be cached for a while.
const TTL_FIXED: Duration = Duration::from_secs(60);
/// Everything else is looked up every time: sectors come and go, and their
/// link counts change with references made elsewhere.
const TTL_NONE: Duration = Duration::ZERO;
/// A sector's attributes change only with its references. Its entry is
/// still looked up every time (it may be freed, and stored again under a
/// new inode), and each lookup refreshes them, so a `stat` by path is
/// always exact; caching them spares the permission check's GETATTR on
/// every open, and reference changes made through the mount invalidate them
/// for `fstat` of open files.
const TTL_SECTOR_ATTR: Duration = Duration::from_secs(1);

/// How long the kernel may keep a name → inode mapping.
fn entry_ttl(node: Node) -> Duration {
    match node {
        Node::Root | Node::SectorsDir | Node::ContractsDir | Node::TempDir | Node::VolumesDir => {
            TTL_FIXED
        }
        _ => TTL_NONE,
    }
}

pub struct SectorFs {
    engine: Arc<Engine>,
    mountpoint: PathBuf,
    handles: Handles,
    /// `/temp/<height>` a sector was last looked up in, per (sector id,
    /// thread): FUSE opens an inode, not a path, and a sector has one inode
    /// wherever it is linked, so this tells a rewrite of
    /// `/temp/<height>/<root>` (keep the temp entry) from one of
    /// `/sectors/<root>` (add the pin).
    temp_lookups: Mutex<lru::LruCache<(i64, u32), u64>>,
    /// Sector inodes the kernel holds, whose cached attributes reference
    /// changes must drop.
    known: KnownSectors,
    uid: u32,
    gid: u32,
    started: SystemTime,
}

impl SectorFs {
    pub fn new(engine: Arc<Engine>, mountpoint: &Path) -> SectorFs {
        SectorFs {
            engine,
            mountpoint: mountpoint.to_path_buf(),
            handles: Handles::default(),
            temp_lookups: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(4096).expect("non-zero"),
            )),
            known: KnownSectors::default(),
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            started: SystemTime::now(),
        }
    }

    pub(super) fn known_sectors(&self) -> KnownSectors {
        self.known.clone()
    }

    fn base_attr(&self, node: Node, kind: FileType, perm: u16, size: u64) -> FileAttr {
        FileAttr {
            ino: INodeNo(node.ino()),
            size,
            blocks: size.div_ceil(512),
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            // the engine's write chunk: `cp` and friends then write in
            // pieces the engine sends to the disk at once, rather than
            // reading a whole sector before writing any of it (measured
            // about 15% faster `cp` than a 4 MiB block size)
            blksize: UPLOAD_CHUNK as u32,
            flags: 0,
        }
    }

    /// Attributes of a node, and how long the kernel may keep them.
    fn attr(&self, node: Node) -> Result<(FileAttr, Duration)> {
        let e = &self.engine;
        let file = |perm, size| {
            (
                self.base_attr(node, FileType::RegularFile, perm, size),
                TTL_NONE,
            )
        };
        Ok(match node {
            Node::Root
            | Node::SectorsDir
            | Node::ContractsDir
            | Node::TempDir
            | Node::VolumesDir => (
                self.base_attr(node, FileType::Directory, 0o755, 0),
                TTL_FIXED,
            ),
            Node::VolumeDir(id) => {
                e.volume(id)?;
                (
                    self.base_attr(node, FileType::Directory, 0o755, 0),
                    TTL_NONE,
                )
            }
            Node::TempHeight(h) => {
                if !self.temp_dir_exists(h)? {
                    return Err(Error::NotFound(format!("/temp/{h} does not exist")));
                }
                (
                    self.base_attr(node, FileType::Directory, 0o755, 0),
                    TTL_NONE,
                )
            }
            Node::Sector(id) => {
                let s = e
                    .sector_by_id(id)?
                    .ok_or_else(|| Error::NotFound(format!("sector #{id} is no longer stored")))?;
                let refs = e.ref_counts(id)?;
                let mut attr =
                    self.base_attr(node, FileType::RegularFile, 0o644, SECTOR_SIZE as u64);
                let stored = UNIX_EPOCH + Duration::from_secs(s.stored_at.max(0) as u64);
                attr.mtime = stored;
                attr.ctime = stored;
                attr.crtime = stored;
                attr.nlink = refs.total().min(u32::MAX as u64) as u32;
                (attr, TTL_SECTOR_ATTR)
            }
            Node::Contract(id) => {
                let c = e
                    .contract_by_id(id)?
                    .ok_or_else(|| Error::NotFound(format!("contract #{id} no longer exists")))?;
                file(0o644, c.entries * 65)
            }
            Node::Pending(fh) => match self.handles.get(fh).as_deref() {
                Some(Handle::SectorWrite(up)) => file(0o644, up.lock().writer.len()),
                _ => {
                    return Err(Error::NotFound(
                        "the sector being written was closed".into(),
                    ));
                }
            },
            Node::Status | Node::Metrics | Node::StatusJson => {
                let perm = if node == Node::Status { 0o644 } else { 0o444 };
                // generated on open; size 0 like /proc, read until EOF
                file(perm, 0)
            }
            Node::Height | Node::VolumesAdd => file(0o644, control::content(e, node)?.len() as u64),
            Node::Volume(_, f) => {
                let perm = if f.writable() { 0o644 } else { 0o444 };
                file(perm, control::content(e, node)?.len() as u64)
            }
        })
    }

    /// `/temp/<height>` directories live in the database (made ones too,
    /// so an empty one survives a restart): above the current height, and
    /// made with mkdir or holding entries.
    fn temp_dir_exists(&self, h: u64) -> Result<bool> {
        self.engine.temp_dir_exists(h)
    }

    /// Every `/temp/<height>` directory, ascending.
    fn temp_heights(&self) -> Result<Vec<u64>> {
        self.engine.temp_dirs()
    }

    /// The child `name` of directory `parent`.
    fn child(&self, parent: Node, name: &str) -> Result<Node> {
        let e = &self.engine;
        let missing = || Error::NotFound(format!("{name} does not exist"));
        Ok(match parent {
            Node::Root => ROOT_ENTRIES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, node)| *node)
                .ok_or_else(missing)?,
            Node::SectorsDir => {
                let root: Root = name.parse().map_err(|_| missing())?;
                Node::Sector(e.lookup(&root)?.ok_or_else(missing)?.id)
            }
            Node::ContractsDir => Node::Contract(e.contract_by_name(name)?.ok_or_else(missing)?.id),
            Node::TempDir => {
                let h = parse_temp_height(name).map_err(|_| missing())?;
                let current = e.height()?;
                if h <= current {
                    // expired, or never valid: creating under it is refused
                    // as the spec says, not reported as missing
                    return Err(Error::Invalid(format!(
                        "/temp/{h} is not above the current height {current}: temp entries \
                         must expire above it"
                    )));
                }
                if !self.temp_dir_exists(h)? {
                    return Err(missing());
                }
                Node::TempHeight(h)
            }
            Node::TempHeight(h) => {
                let root: Root = name.parse().map_err(|_| missing())?;
                Node::Sector(e.temp_entry(h, &root)?.ok_or_else(missing)?.id)
            }
            Node::VolumesDir if name == "add" => Node::VolumesAdd,
            Node::VolumesDir => {
                let id: u32 = name.parse().map_err(|_| missing())?;
                if id.to_string() != name {
                    return Err(missing());
                }
                e.volume(id)?;
                Node::VolumeDir(id)
            }
            Node::VolumeDir(id) => Node::Volume(id, VolFile::from_name(name).ok_or_else(missing)?),
            _ => return Err(Error::Invalid(format!("{parent:?} is not a directory"))),
        })
    }

    /// Every entry of a small directory (not `/sectors` or `/contracts`,
    /// which page).
    fn entries(&self, dir: Node) -> Result<Vec<(String, Node)>> {
        let e = &self.engine;
        Ok(match dir {
            Node::Root => ROOT_ENTRIES
                .iter()
                .map(|(n, node)| (n.to_string(), *node))
                .collect(),
            Node::TempDir => self
                .temp_heights()?
                .into_iter()
                .map(|h| (h.to_string(), Node::TempHeight(h)))
                .collect(),
            Node::TempHeight(h) => e
                .temp_roots(h)?
                .into_iter()
                .map(|(id, root)| (root.to_string(), Node::Sector(id)))
                .collect(),
            Node::VolumesDir => std::iter::once(("add".to_string(), Node::VolumesAdd))
                .chain(
                    e.volume_ids()
                        .into_iter()
                        .map(|id| (id.to_string(), Node::VolumeDir(id))),
                )
                .collect(),
            Node::VolumeDir(id) => {
                e.volume(id)?;
                VolFile::ALL
                    .iter()
                    .map(|f| (f.name().to_string(), Node::Volume(id, *f)))
                    .collect()
            }
            _ => return Err(Error::Invalid(format!("{dir:?} is not a directory"))),
        })
    }

    /// Logs a refusal in words and turns it into the errno to return.
    fn refuse(&self, op: &str, what: &dyn std::fmt::Display, e: &Error) -> Errno {
        match e.errno() {
            // looking for what is not there is routine (shells, `test -e`,
            // the kernel before a create); any other refusal is logged
            libc::ENOENT if matches!(op, "look up" | "stat" | "list" | "getxattr") => {
                tracing::debug!("{op} {what}: {e}")
            }
            libc::EIO => tracing::error!("{op} {what} failed: {e}"),
            _ => tracing::warn!("refused {op} {what}: {e}"),
        }
        Errno::from_i32(e.errno())
    }

    /// As [`refuse`](Self::refuse), and raises an alert: used for control
    /// writes, whose refusals an operator must see in /status.
    fn refuse_control(&self, node: Node, e: &Error) -> Errno {
        let path = self.node_path(node);
        self.engine.alerts().raise(
            &format!("refused-{}", node.ino()),
            crate::engine::Severity::Warning,
            format!("refused a write to {path}: {e}"),
            serde_json::json!({"path": path, "errno": e.errno()}),
        );
        self.refuse("write to", &path, e)
    }

    fn node_path(&self, node: Node) -> String {
        match node {
            Node::Height => "/height".into(),
            Node::VolumesAdd => "/volumes/add".into(),
            Node::Status => "/status".into(),
            Node::Volume(id, f) => format!("/volumes/{id}/{}", f.name()),
            other => format!("{other:?}"),
        }
    }
}

/// A `/temp/<height>` name: decimal, in range.
fn parse_temp_height(name: &str) -> Result<u64> {
    let h = crate::parse::parse_height(name)?;
    if h.to_string() != name || h > MAX_TEMP_HEIGHT {
        return Err(Error::Invalid(format!(
            "temp directory {name:?} must be a height written as a plain number"
        )));
    }
    Ok(h)
}
