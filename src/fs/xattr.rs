//! Extended attributes: where a sector's copies are and what references it.

use super::dir::node_of;
use super::filesystem::SectorFs;
use super::inode::Node;
use crate::engine::{COLD_VOLUME, SectorKey, SectorRow};
use crate::error::{Error, Result};

const XATTRS: [&str; 6] = [
    "user.sectorfs.volume",
    "user.sectorfs.slot",
    "user.sectorfs.copies",
    "user.sectorfs.refs",
    "user.sectorfs.stored_at",
    "user.sectorfs.tier",
];

/// Names outside the `user.` namespace (SELinux labels, capabilities,
/// ACLs) are not supported here at all, as on a file system without them:
/// `ls -l` asks each file for its SELinux label until a device answers
/// ENOTSUP, then asks that device no more (one round trip per listing,
/// not one per file).
fn not_ours(name: &std::ffi::OsStr) -> Option<Error> {
    (!name.as_encoded_bytes().starts_with(b"user.")).then(|| {
        Error::NotSupported(format!(
            "no attribute {name:?}: sectorfs has only user.sectorfs.* attributes"
        ))
    })
}

impl SectorFs {
    pub fn getxattr(&self, ino: u64, name: &std::ffi::OsStr) -> Result<Vec<u8>> {
        let missing = || Error::NoAttribute(format!("no attribute {name:?} here"));
        let Ok(node) = node_of(ino) else {
            return Err(not_ours(name).unwrap_or_else(missing));
        };
        if let Some(value) = self.aggregate_xattr(node, &name.to_string_lossy())? {
            return Ok(value.into_bytes());
        }
        let Node::Sector(id) = node else {
            return Err(not_ours(name).unwrap_or_else(missing));
        };
        let gone = || Error::NotFound(format!("sector #{id} is no longer stored"));
        // names of ours only: `ls -l` asks every file for security.* and
        // ACL attributes, and those answers cost no look at the copies
        if !name.to_str().is_some_and(|n| XATTRS.contains(&n)) {
            self.engine
                .sector_info(SectorKey::Id(id))?
                .ok_or_else(gone)?;
            return Err(not_ours(name).unwrap_or_else(missing));
        }
        // the first readable copy first
        let copies = self.engine.sector_copies(id)?;
        let s = copies.first().ok_or_else(gone)?;
        let cold = |c: &SectorRow| c.volume_id == COLD_VOLUME;
        let value = match name.to_str() {
            // a sector only in the cold store has no volume nor slot
            Some("user.sectorfs.volume") if cold(s) => "cold".to_string(),
            Some("user.sectorfs.slot") if cold(s) => String::new(),
            Some("user.sectorfs.volume") => s.volume_id.to_string(),
            Some("user.sectorfs.slot") => s.slot.to_string(),
            Some("user.sectorfs.copies") => copies
                .iter()
                .map(|c| match cold(c) {
                    true => "cold".to_string(),
                    false => format!("{}:{}", c.volume_id, c.slot),
                })
                .collect::<Vec<_>>()
                .join(" "),
            Some("user.sectorfs.tier") => {
                let local = copies.iter().any(|c| !cold(c));
                let cached = self.engine.is_cached(&s.root);
                match (local, copies.iter().any(cold)) {
                    (true, true) => "volume+cold",
                    (false, _) => "cold",
                    (true, false) if cached => "cache+volume",
                    (true, false) => "volume",
                }
                .to_string()
            }
            // when it was first stored: its mtime may be set since
            Some("user.sectorfs.stored_at") => s.stored_at.to_string(),
            Some("user.sectorfs.refs") => {
                let r = self.engine.ref_counts(id)?;
                format!("pin={} contracts={} temp={}", r.pins, r.contracts, r.temp)
            }
            _ => return Err(missing()),
        };
        Ok(value.into_bytes())
    }

    /// The attribute names of a node, each followed by a NUL.
    pub fn listxattr(&self, ino: u64) -> Vec<u8> {
        match node_of(ino) {
            Ok(Node::Sector(_)) => XATTRS.iter().flat_map(|n| n.bytes().chain([0])).collect(),
            Ok(node) => self.aggregate_xattr_names(node),
            _ => Vec::new(),
        }
    }

    pub fn setxattr(&self, name: &std::ffi::OsStr) -> Result<()> {
        Err(Error::NotSupported(format!(
            "cannot set {name:?}: sectorfs attributes are read-only"
        )))
    }

    pub fn removexattr(&self, name: &std::ffi::OsStr) -> Result<()> {
        Err(Error::NotSupported(format!(
            "cannot remove {name:?}: sectorfs attributes are read-only"
        )))
    }
}
