//! Directories: what a name in each one is, their listings (`/sectors`
//! and `/contracts` in pages straight from the database), and the
//! `/temp/<height>` directories made and removed.

use std::ffi::OsStr;

use super::attr::{Entry, Kind, entry_ttl};
use super::filesystem::{SectorFs, text};
use super::inode::{MAX_TEMP_HEIGHT, Node, ROOT_ENTRIES, VolFile};
use super::staging::is_staging_name;
use crate::engine::{SectorKey, check_temp_height};
use crate::error::{Error, Result};
use crate::merkle::Root;

/// Entries listed per database query while reading `/sectors` and
/// `/contracts`.
const PAGE: usize = 512;

/// One entry of a listing, handed to the caller's sink.
pub struct DirEntry<'a> {
    pub ino: u64,
    /// The offset a listing resumes from after this entry.
    pub next: u64,
    pub kind: Kind,
    pub name: &'a str,
}

impl SectorFs {
    /// The child `name` of directory `parent`.
    pub(super) fn child(&self, parent: Node, name: &str) -> Result<Node> {
        let e = &self.engine;
        let missing = || Error::NotFound(format!("{}/{name} does not exist", parent.path()));
        Ok(match parent {
            Node::Root => ROOT_ENTRIES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, node)| *node)
                .ok_or_else(missing)?,
            Node::SectorsDir | Node::TempHeight(_) if is_staging_name(name) => {
                Node::Staging(self.staging.find(parent, name).ok_or_else(missing)?)
            }
            Node::SectorsDir => {
                let root: Root = name.parse().map_err(|_| missing())?;
                Node::Sector(
                    e.sector_info(SectorKey::Root(&root))?
                        .ok_or_else(missing)?
                        .id,
                )
            }
            Node::ContractsDir => Node::Contract(e.contract_by_name(name)?.ok_or_else(missing)?.id),
            Node::TempDir => {
                let h = parse_temp_height(name).map_err(|_| missing())?;
                // expired, or never valid: creating under it is refused as
                // the spec says, not reported as missing
                self.check_temp_height(h)?;
                if !e.temp_dir_exists(h)? {
                    return Err(missing());
                }
                Node::TempHeight(h)
            }
            Node::TempHeight(h) => {
                let root: Root = name.parse().map_err(|_| missing())?;
                Node::Sector(e.temp_entry(h, &root)?.ok_or_else(missing)?.id)
            }
            Node::VolumesDir if name == "add" => Node::VolumesAdd,
            Node::VolumesDir if name == "attach" => Node::VolumesAttach,
            Node::VolumesDir => {
                let id: u32 = name.parse().map_err(|_| missing())?;
                if id.to_string() != name {
                    return Err(missing());
                }
                e.volume(id)?;
                Node::VolumeDir(id)
            }
            Node::VolumeDir(id) => Node::Volume(id, VolFile::from_name(name).ok_or_else(missing)?),
            Node::TiersDir if name == "cold" => Node::ColdDir,
            Node::ColdDir if name == "stats" => Node::ColdStats,
            Node::TiersDir if name == "cache" => Node::CacheDir,
            Node::CacheDir if name == "stats" => Node::CacheStats,
            Node::TiersDir | Node::ColdDir | Node::CacheDir => return Err(missing()),
            _ => {
                return Err(Error::Invalid(format!(
                    "{} is not a directory",
                    parent.path()
                )));
            }
        })
    }

    /// A temp entry at height `h` must expire above the current height
    /// (the engine's one rule).
    pub(super) fn check_temp_height(&self, h: u64) -> Result<()> {
        check_temp_height(h, self.engine.height()?)
    }

    /// As [`readdir`](Self::readdir), each entry with what a lookup of it
    /// answers (READDIRPLUS: `ls -l` needs no lookup per entry). An entry
    /// gone since it was listed is left out; each one handed to the kernel
    /// (but `.` and `..`, which it does not keep) counts as looked up, so
    /// what makes it untrue drops it as it drops a looked-up name.
    pub fn readdirplus(
        &self,
        ino: u64,
        offset: u64,
        add: &mut dyn FnMut(&DirEntry, &Entry) -> bool,
    ) -> Result<()> {
        let dir = node_of(ino)?;
        self.readdir(ino, offset, &mut |e| {
            let Some(node) = Node::from_ino(e.ino) else {
                return false;
            };
            // known before it is read, as a lookup's (see `entry`)
            let kept = e.name != "." && e.name != "..";
            if kept {
                self.known().looked_up(dir, node, e.name);
            }
            let forget = || {
                if kept {
                    self.known().forgotten(node, 1);
                }
            };
            let Ok(attr) = self.attr(node) else {
                forget();
                return false;
            };
            let entry = Entry {
                attr,
                ttl: entry_ttl(node),
            };
            let full = add(&e, &entry);
            if full {
                forget();
            }
            full
        })
    }

    /// Lists directory `ino` from `offset`, handing each entry to `add`
    /// until it says it is full.
    pub fn readdir(
        &self,
        ino: u64,
        offset: u64,
        add: &mut dyn FnMut(DirEntry) -> bool,
    ) -> Result<()> {
        let node = node_of(ino)?;
        let e = &self.engine;
        match node {
            Node::SectorsDir => self.readdir_paged(node, offset, add, |after| {
                Ok(e.list_sectors(after, PAGE)?
                    .into_iter()
                    .map(|s| (s.id, Node::Sector(s.id), s.root.to_string()))
                    .collect())
            }),
            Node::ContractsDir => self.readdir_paged(node, offset, add, |after| {
                Ok(e.contract_names_after(after, PAGE)?
                    .into_iter()
                    .map(|(id, name)| (id, Node::Contract(id), name))
                    .collect())
            }),
            _ => {
                let entries = self.entries(node)?;
                let dots = [(".".to_string(), node), ("..".to_string(), node.parent())];
                for (i, (name, child)) in dots
                    .into_iter()
                    .chain(entries)
                    .enumerate()
                    .skip(offset as usize)
                {
                    let kind = if child.is_dir() {
                        Kind::Dir
                    } else {
                        Kind::File
                    };
                    let entry = DirEntry {
                        ino: child.ino(),
                        next: i as u64 + 1,
                        kind,
                        name: &name,
                    };
                    if add(entry) {
                        break;
                    }
                }
                Ok(())
            }
        }
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
            Node::TempDir => e
                .temp_dirs()?
                .into_iter()
                .map(|h| (h.to_string(), Node::TempHeight(h)))
                .collect(),
            Node::TempHeight(h) => e
                .temp_roots(h)?
                .into_iter()
                .map(|(id, root)| (root.to_string(), Node::Sector(id)))
                .collect(),
            Node::VolumesDir => [("add", Node::VolumesAdd), ("attach", Node::VolumesAttach)]
                .into_iter()
                .map(|(n, node)| (n.to_string(), node))
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
            Node::TiersDir => vec![
                ("cache".to_string(), Node::CacheDir),
                ("cold".to_string(), Node::ColdDir),
            ],
            Node::ColdDir => vec![("stats".to_string(), Node::ColdStats)],
            Node::CacheDir => vec![("stats".to_string(), Node::CacheStats)],
            _ => return Err(Error::Invalid(format!("{} is not a directory", dir.path()))),
        })
    }

    /// A directory listed in pages straight from the database, never held
    /// whole. Offsets: 1 ".", 2 "..", then an entry's id + 2 (ids start at
    /// 1 and are never given twice), so a listing resumes after the last
    /// entry it returned whatever was added or removed meanwhile.
    fn readdir_paged(
        &self,
        dir: Node,
        offset: u64,
        add: &mut dyn FnMut(DirEntry) -> bool,
        page_after: impl Fn(i64) -> Result<Vec<(i64, Node, String)>>,
    ) -> Result<()> {
        let dot = |name, ino, next| DirEntry {
            ino,
            next,
            kind: Kind::Dir,
            name,
        };
        if offset < 1 && add(dot(".", dir.ino(), 1)) {
            return Ok(());
        }
        if offset < 2 && add(dot("..", Node::Root.ino(), 2)) {
            return Ok(());
        }
        let mut after = offset.saturating_sub(2) as i64;
        loop {
            let page = page_after(after)?;
            for (id, node, name) in &page {
                let entry = DirEntry {
                    ino: node.ino(),
                    next: *id as u64 + 2,
                    kind: Kind::File,
                    name,
                };
                if add(entry) {
                    return Ok(());
                }
                after = *id;
            }
            if page.len() < PAGE {
                return Ok(());
            }
        }
    }

    /// `mkdir /temp/<height>`: made durable, like any call that returns
    /// success, so an empty directory survives a restart.
    pub fn mkdir(&self, parent: u64, name: &OsStr) -> Result<Entry> {
        if node_of(parent)? != Node::TempDir {
            return Err(Error::NotPermitted(format!(
                "cannot make {name:?}: only /temp has directories to make"
            )));
        }
        let name = text(name, || {
            Error::Invalid("a temp directory name must be a height".into())
        })?;
        let h = parse_temp_height(name)?;
        self.engine.make_temp_dir(h)?;
        self.entry(Node::TempDir, Node::TempHeight(h), name)
    }

    /// `rmdir /temp/<height>`: only an empty one.
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> Result<()> {
        if node_of(parent)? != Node::TempDir {
            return Err(Error::NotPermitted(format!(
                "cannot remove {name:?}: only /temp directories can be removed"
            )));
        }
        let name = text(name, || Error::NotFound("no such directory".into()))?;
        let h = parse_temp_height(name)
            .map_err(|_| Error::NotFound(format!("/temp/{name} does not exist")))?;
        self.engine.remove_temp_dir(h).map_err(|e| match e {
            Error::Busy(m) => Error::NotEmpty(m),
            e => e,
        })?;
        // its staging files (never listed) go with it
        self.staging.sweep(|d| d == Node::TempHeight(h));
        Ok(())
    }
}

/// The node of an inode number the kernel gave.
pub(super) fn node_of(ino: u64) -> Result<Node> {
    Node::from_ino(ino).ok_or_else(|| Error::NotFound(format!("inode {ino} is not one of ours")))
}

/// A `/temp/<height>` name: decimal, in range.
pub(super) fn parse_temp_height(name: &str) -> Result<u64> {
    let h = crate::parse::parse_height(name)?;
    if h.to_string() != name || h > MAX_TEMP_HEIGHT {
        return Err(Error::Invalid(format!(
            "temp directory {name:?} must be a height written as a plain number"
        )));
    }
    Ok(h)
}
