//! Attributes of every node, and how long the kernel may keep them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::filesystem::SectorFs;
use super::generated;
use super::handle::Handle;
use super::inode::Node;
use crate::engine::SectorKey;
use crate::error::{Error, Result};
use crate::merkle::SECTOR_SIZE;

/// Entries and attributes that never change may be cached for a while.
const TTL_FIXED: Duration = Duration::from_secs(60);
/// Everything else is looked up every time (generated files, files being
/// written, volumes).
pub const TTL_NONE: Duration = Duration::ZERO;
/// Sectors (names and attributes), `/temp/<height>` directories and
/// contract names: kept until told otherwise. Whatever makes one untrue
/// (a sector freed, its link count or mtime changed, a height passing a
/// temp directory, a contract gone) has the kernel drop it before the call
/// that did it returns (`invalidate.rs`); the day is only a bound.
const TTL_CACHED: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// What `stat` shows of a node.
#[derive(Debug, Clone, Copy)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub perm: u16,
    pub size: u64,
    pub nlink: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub uid: u32,
    pub gid: u32,
    /// How long the kernel may keep these attributes.
    pub ttl: Duration,
}

/// A name looked up: its node's attributes, and how long the kernel may
/// keep the name → inode mapping.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub attr: Attr,
    pub ttl: Duration,
}

/// How long the kernel may keep a name → inode mapping.
pub fn entry_ttl(node: Node) -> Duration {
    match node {
        Node::Root | Node::SectorsDir | Node::ContractsDir | Node::TempDir | Node::VolumesDir => {
            TTL_FIXED
        }
        Node::Sector(_) | Node::TempHeight(_) | Node::Contract(_) => TTL_CACHED,
        _ => TTL_NONE,
    }
}

impl SectorFs {
    pub(super) fn base_attr(&self, node: Node, kind: Kind, perm: u16, size: u64) -> Attr {
        Attr {
            ino: node.ino(),
            kind,
            perm,
            size,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            uid: self.uid,
            gid: self.gid,
            ttl: TTL_NONE,
        }
    }

    /// Attributes of a node.
    pub(super) fn attr(&self, node: Node) -> Result<Attr> {
        let e = &self.engine;
        let file = |perm, size| self.base_attr(node, Kind::File, perm, size);
        let dir = |ttl| Attr {
            ttl,
            ..self.base_attr(node, Kind::Dir, 0o755, 0)
        };
        Ok(match node {
            Node::Root
            | Node::SectorsDir
            | Node::ContractsDir
            | Node::TempDir
            | Node::VolumesDir
            | Node::TiersDir
            | Node::ColdDir
            | Node::CacheDir => dir(TTL_FIXED),
            Node::VolumeDir(id) => {
                e.volume(id)?;
                dir(TTL_NONE)
            }
            Node::TempHeight(h) => {
                if !e.temp_dir_exists(h)? {
                    return Err(Error::NotFound(format!("/temp/{h} does not exist")));
                }
                dir(TTL_CACHED)
            }
            Node::Sector(id) => {
                let s = e
                    .sector_info(SectorKey::Id(id))?
                    .ok_or_else(|| Error::NotFound(format!("sector #{id} is no longer stored")))?;
                let refs = e.ref_counts(id)?;
                let stored = UNIX_EPOCH + Duration::from_secs(s.stored_at.max(0) as u64);
                let mtime = match s.mtime_ns {
                    Some(ns) if ns >= 0 => UNIX_EPOCH + Duration::from_nanos(ns as u64),
                    Some(ns) => UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs()),
                    None => stored,
                };
                Attr {
                    mtime,
                    ctime: stored,
                    nlink: refs.total().min(u32::MAX as u64) as u32,
                    ttl: TTL_CACHED,
                    ..file(0o644, SECTOR_SIZE as u64)
                }
            }
            Node::Contract(id) => {
                let c = e
                    .contract_by_id(id)?
                    .ok_or_else(|| Error::NotFound(format!("contract #{id} no longer exists")))?;
                // its size changes with every revision: asked every time
                file(0o644, c.entries * 65)
            }
            Node::Pending(fh) => match self.handles.get(fh).as_deref() {
                Ok(Handle::SectorWrite(up)) => file(0o644, up.lock().len()),
                _ => {
                    return Err(Error::NotFound(
                        "the sector being written was closed".into(),
                    ));
                }
            },
            Node::Staging(id) => {
                let staged = self.staged(id)?;
                let staged = staged.lock();
                let mtime = staged.mtime.unwrap_or(self.started);
                Attr {
                    mtime,
                    ctime: mtime,
                    ..file(0o644, staged.len())
                }
            }
            Node::Status
            | Node::Metrics
            | Node::StatusJson
            | Node::ColdStats
            | Node::CacheStats => {
                let perm = if node == Node::Status { 0o644 } else { 0o444 };
                // generated on open; size 0 like /proc, read until EOF
                file(perm, 0)
            }
            Node::Height | Node::Copies | Node::VolumesAdd | Node::VolumesAttach => {
                file(0o644, generated::content(e, node)?.len() as u64)
            }
            Node::Volume(_, f) => {
                let perm = if f.writable() { 0o644 } else { 0o444 };
                file(perm, generated::content(e, node)?.len() as u64)
            }
        })
    }
}
