//! Inode numbers. Stable across mounts: fixed for the control files, and
//! derived from database ids for sectors and contracts.

/// Top two bits tag the kind of object; the rest is its id.
const TAG_SHIFT: u32 = 62;
const TAG_SECTOR: u64 = 1 << TAG_SHIFT;
const TAG_CONTRACT: u64 = 2 << TAG_SHIFT;
const TAG_TEMP_DIR: u64 = 3 << TAG_SHIFT;
const ID_MASK: u64 = (1 << TAG_SHIFT) - 1;
/// Volume directories and files: `VOLUME_BASE + id * 16 + file`.
const VOLUME_BASE: u64 = 1 << 32;
/// Sectors being written have no id yet: a number per open handle.
const PENDING_BASE: u64 = 1 << 48;
/// Staging files (`.<name>` in `/sectors` or `/temp/<h>`): a number each.
const STAGING_BASE: u64 = 1 << 40;

/// Largest height a `/temp/<height>` directory can have: the engine's,
/// which is what the inode's id bits hold.
pub use crate::engine::MAX_TEMP_HEIGHT;
const _: () = assert!(MAX_TEMP_HEIGHT == ID_MASK);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolFile {
    Path,
    Uuid,
    Slots,
    Used,
    Readonly,
    State,
    Stats,
    Remove,
    Check,
    Weight,
    MaxSectors,
    MinFree,
    Detach,
    Redeclare,
}

impl VolFile {
    pub const ALL: [VolFile; 14] = [
        VolFile::Path,
        VolFile::Uuid,
        VolFile::Slots,
        VolFile::Used,
        VolFile::Readonly,
        VolFile::State,
        VolFile::Stats,
        VolFile::Remove,
        VolFile::Check,
        VolFile::Weight,
        VolFile::MaxSectors,
        VolFile::MinFree,
        VolFile::Detach,
        VolFile::Redeclare,
    ];

    pub fn name(self) -> &'static str {
        match self {
            VolFile::Path => "path",
            VolFile::Uuid => "uuid",
            VolFile::Slots => "slots",
            VolFile::Used => "used",
            VolFile::Readonly => "readonly",
            VolFile::State => "state",
            VolFile::Stats => "stats",
            VolFile::Remove => "remove",
            VolFile::Check => "check",
            VolFile::Weight => "weight",
            VolFile::MaxSectors => "max_sectors",
            VolFile::MinFree => "min_free",
            VolFile::Detach => "detach",
            VolFile::Redeclare => "redeclare",
        }
    }

    pub fn from_name(name: &str) -> Option<VolFile> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn writable(self) -> bool {
        matches!(
            self,
            VolFile::Slots
                | VolFile::Readonly
                | VolFile::Remove
                | VolFile::Check
                | VolFile::Weight
                | VolFile::MaxSectors
                | VolFile::MinFree
                | VolFile::Detach
                | VolFile::Redeclare
        )
    }

    fn index(self) -> u64 {
        Self::ALL.iter().position(|f| *f == self).unwrap_or(0) as u64 + 1
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    Root,
    SectorsDir,
    ContractsDir,
    TempDir,
    Height,
    /// `/copies`: how many copies of each sector the store keeps.
    Copies,
    VolumesDir,
    VolumesAdd,
    /// `/volumes/attach`: a detached or another store's volume brought in.
    VolumesAttach,
    Status,
    StatusJson,
    Metrics,
    VolumeDir(u32),
    Volume(u32, VolFile),
    /// A stored sector, by database id (also what `/temp/<h>/<root>` links to).
    Sector(i64),
    /// A contract, by database id.
    Contract(i64),
    /// `/temp/<height>`.
    TempHeight(u64),
    /// A sector being written, by handle number.
    Pending(u64),
    /// A staging file, by its number.
    Staging(u64),
    /// `/tiers`, `/tiers/cold`, `/tiers/cold/stats`, `/tiers/cache`,
    /// `/tiers/cache/stats`.
    TiersDir,
    ColdDir,
    ColdStats,
    CacheDir,
    CacheStats,
}

/// The fixed entries of the root directory.
pub const ROOT_ENTRIES: [(&str, Node); 10] = [
    ("sectors", Node::SectorsDir),
    ("contracts", Node::ContractsDir),
    ("temp", Node::TempDir),
    ("height", Node::Height),
    ("copies", Node::Copies),
    ("volumes", Node::VolumesDir),
    ("status", Node::Status),
    ("status.json", Node::StatusJson),
    ("metrics", Node::Metrics),
    ("tiers", Node::TiersDir),
];

impl Node {
    pub fn ino(self) -> u64 {
        match self {
            Node::Root => 1,
            Node::SectorsDir => 2,
            Node::ContractsDir => 3,
            Node::TempDir => 4,
            Node::Height => 5,
            Node::VolumesDir => 6,
            Node::VolumesAdd => 7,
            Node::Status => 8,
            Node::StatusJson => 9,
            Node::Metrics => 10,
            Node::Copies => 11,
            Node::VolumesAttach => 20,
            Node::TiersDir => 12,
            Node::ColdDir => 13,
            Node::ColdStats => 14,
            Node::CacheDir => 15,
            Node::CacheStats => 16,
            Node::VolumeDir(id) => VOLUME_BASE + id as u64 * 16,
            Node::Volume(id, f) => VOLUME_BASE + id as u64 * 16 + f.index(),
            Node::Sector(id) => TAG_SECTOR | (id as u64 & ID_MASK),
            Node::Contract(id) => TAG_CONTRACT | (id as u64 & ID_MASK),
            Node::TempHeight(h) => TAG_TEMP_DIR | (h & ID_MASK),
            Node::Pending(n) => PENDING_BASE + n,
            Node::Staging(n) => STAGING_BASE + n,
        }
    }

    pub fn from_ino(ino: u64) -> Option<Node> {
        let id = ino & ID_MASK;
        match ino >> TAG_SHIFT {
            1 => return Some(Node::Sector(id as i64)),
            2 => return Some(Node::Contract(id as i64)),
            3 => return Some(Node::TempHeight(id)),
            _ => {}
        }
        Some(match ino {
            1 => Node::Root,
            2 => Node::SectorsDir,
            3 => Node::ContractsDir,
            4 => Node::TempDir,
            5 => Node::Height,
            6 => Node::VolumesDir,
            7 => Node::VolumesAdd,
            8 => Node::Status,
            9 => Node::StatusJson,
            10 => Node::Metrics,
            11 => Node::Copies,
            20 => Node::VolumesAttach,
            12 => Node::TiersDir,
            13 => Node::ColdDir,
            14 => Node::ColdStats,
            15 => Node::CacheDir,
            16 => Node::CacheStats,
            n if n >= PENDING_BASE => Node::Pending(n - PENDING_BASE),
            n if n >= STAGING_BASE => Node::Staging(n - STAGING_BASE),
            n if n >= VOLUME_BASE => {
                let rel = n - VOLUME_BASE;
                let id = u32::try_from(rel / 16).ok()?;
                match rel % 16 {
                    0 => Node::VolumeDir(id),
                    k => Node::Volume(id, *VolFile::ALL.get(k as usize - 1)?),
                }
            }
            _ => return None,
        })
    }

    /// The path of a fixed node, for messages; others by kind and id.
    pub fn path(self) -> String {
        if let Some((name, _)) = ROOT_ENTRIES.iter().find(|(_, n)| *n == self) {
            return format!("/{name}");
        }
        match self {
            Node::Root => "/".into(),
            Node::VolumesAdd => "/volumes/add".into(),
            Node::VolumesAttach => "/volumes/attach".into(),
            Node::ColdDir => "/tiers/cold".into(),
            Node::ColdStats => "/tiers/cold/stats".into(),
            Node::CacheDir => "/tiers/cache".into(),
            Node::CacheStats => "/tiers/cache/stats".into(),
            Node::VolumeDir(id) => format!("/volumes/{id}"),
            Node::Volume(id, f) => format!("/volumes/{id}/{}", f.name()),
            Node::TempHeight(h) => format!("/temp/{h}"),
            Node::Sector(id) => format!("sector #{id}"),
            Node::Contract(id) => format!("contract #{id}"),
            Node::Pending(n) => format!("sector being written (handle {n})"),
            Node::Staging(n) => format!("staging file #{n}"),
            other => format!("{other:?}"),
        }
    }

    /// The directory holding a directory (`..`).
    pub fn parent(self) -> Node {
        match self {
            Node::TempHeight(_) => Node::TempDir,
            Node::VolumeDir(_) => Node::VolumesDir,
            Node::ColdDir | Node::CacheDir => Node::TiersDir,
            _ => Node::Root,
        }
    }

    pub fn is_dir(self) -> bool {
        matches!(
            self,
            Node::Root
                | Node::SectorsDir
                | Node::ContractsDir
                | Node::TempDir
                | Node::VolumesDir
                | Node::VolumeDir(_)
                | Node::TempHeight(_)
                | Node::TiersDir
                | Node::ColdDir
                | Node::CacheDir
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_numbers_round_trip() {
        let mut nodes = vec![
            Node::Root,
            Node::Metrics,
            Node::VolumesAttach,
            Node::VolumeDir(0),
            Node::VolumeDir(7),
            Node::Sector(1),
            Node::Sector(123_456_789),
            Node::Contract(5),
            Node::TempHeight(0),
            Node::TempHeight(MAX_TEMP_HEIGHT),
            Node::Pending(9),
            Node::Staging(0),
            Node::Staging(12345),
        ];
        nodes.extend(ROOT_ENTRIES.iter().map(|(_, n)| *n));
        nodes.extend(VolFile::ALL.iter().map(|f| Node::Volume(3, *f)));
        nodes.extend([
            Node::ColdDir,
            Node::ColdStats,
            Node::CacheDir,
            Node::CacheStats,
        ]);
        for n in nodes {
            assert_eq!(Node::from_ino(n.ino()), Some(n), "{n:?}");
        }
        assert_eq!(Node::from_ino(17), None);
    }
}
