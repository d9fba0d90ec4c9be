//! The sidecar beside each volume file (`<path>.sectorfs`): who the volume
//! is (its uuid, its store's uuid, its slot count) and, once detached, its
//! index. The volume file itself stays headerless.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a sidecar holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    pub volume_uuid: String,
    pub store_uuid: String,
    pub slots: u64,
    /// Written at detach: every occupied slot and the root it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Vec<IndexEntry>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub slot: u64,
    /// 64 hex characters.
    pub root: String,
}

/// `<volume>` with `suffix` appended to its file name.
pub fn beside(volume: &Path, suffix: &str) -> PathBuf {
    let mut name = volume.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// The sidecar's path.
pub fn path_of(volume: &Path) -> PathBuf {
    beside(volume, ".sectorfs")
}

/// The sidecar of `volume`; `None` when there is none.
pub fn read(volume: &Path) -> io::Result<Option<Sidecar>> {
    let path = path_of(volume);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a sectorfs sidecar: {e}", path.display()),
        )
    })
}

/// Writes the sidecar of `volume` atomically.
pub fn write(volume: &Path, sidecar: &Sidecar) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(sidecar).map_err(io::Error::other)?;
    replace_file(&path_of(volume), |f| f.write_all(&json))
}

/// Replaces `path` atomically with what `fill` writes: into a temporary
/// name beside it, synced, renamed over `path`, the directory synced. A
/// crash leaves the old file or the new one, never a part.
pub fn replace_file(path: &Path, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
    let tmp = beside(path, ".tmp");
    let written = (|| {
        let mut f = File::create(&tmp)?;
        fill(&mut f)?;
        f.sync_all()
    })();
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir_of(path)
}

/// Syncs the directory holding `path`, so a new name in it survives a crash.
pub fn sync_dir_of(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("a.vol");
        assert_eq!(read(&vol).unwrap(), None);
        let s = Sidecar {
            volume_uuid: "v".into(),
            store_uuid: "s".into(),
            slots: 8,
            index: Some(vec![IndexEntry {
                slot: 3,
                root: "ab".repeat(32),
            }]),
        };
        write(&vol, &s).unwrap();
        assert_eq!(read(&vol).unwrap(), Some(s));
        assert!(dir.path().join("a.vol.sectorfs").exists());
        assert!(!dir.path().join("a.vol.sectorfs.tmp").exists());
        std::fs::write(dir.path().join("a.vol.sectorfs"), b"garbage").unwrap();
        assert_eq!(read(&vol).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
