//! Staging files: `.<name>` in `/sectors` or `/temp/<height>`, written
//! like a sector under a temporary name (rsync, editors, tools that write
//! and then rename) and stored only when renamed onto its root. Not
//! listed, not durable, no reference: kept in memory until the rename, an
//! `rm`, or the end of the mount (a restart finds nothing of them: their
//! slots were only reserved in memory).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::inode::Node;
use super::sector_file::SectorFile;

/// Whether `name` in a sector directory is a staging name.
pub fn is_staging_name(name: &str) -> bool {
    name.starts_with('.')
}

type Staged = Arc<Mutex<SectorFile>>;

/// A staging file closed and left this long without its rename (its
/// writer killed, say) is dropped: it holds a slot, memory and one of the
/// uploads the mount allows.
pub const IDLE: Duration = Duration::from_secs(10 * 60);

struct Entry {
    file: Staged,
    dir: Node,
    name: String,
    /// Made, or last opened.
    used: Instant,
}

#[derive(Default)]
pub struct Staging {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    by_name: HashMap<(Node, String), u64>,
    files: HashMap<u64, Entry>,
}

impl Staging {
    /// Adds `file` as `name` in `dir`; its number (its inode's).
    pub fn add(&self, dir: Node, name: &str, file: Staged) -> u64 {
        let mut inner = self.inner.lock();
        inner.next += 1;
        let id = inner.next;
        if let Some(old) = inner.by_name.insert((dir, name.to_string()), id) {
            inner.files.remove(&old);
        }
        let entry = Entry {
            file,
            dir,
            name: name.to_string(),
            used: Instant::now(),
        };
        inner.files.insert(id, entry);
        id
    }

    pub fn find(&self, dir: Node, name: &str) -> Option<u64> {
        self.inner
            .lock()
            .by_name
            .get(&(dir, name.to_string()))
            .copied()
    }

    pub fn file(&self, id: u64) -> Option<Staged> {
        let mut inner = self.inner.lock();
        let entry = inner.files.get_mut(&id)?;
        entry.used = Instant::now();
        Some(entry.file.clone())
    }

    /// Takes `name` out of `dir` (an `rm`, or a rename that stored it).
    pub fn remove(&self, dir: Node, name: &str) -> Option<Staged> {
        let mut inner = self.inner.lock();
        let id = inner.by_name.remove(&(dir, name.to_string()))?;
        inner.files.remove(&id).map(|e| e.file)
    }

    /// Drops the staging files no one has open and left idle past
    /// [`IDLE`], and those of a directory that is gone (`gone`: a
    /// `/temp/<h>` at or below the height, or removed).
    pub fn sweep(&self, gone: impl Fn(Node) -> bool) {
        let mut inner = self.inner.lock();
        let stale: Vec<u64> = inner
            .files
            .iter()
            .filter(|(_, e)| {
                gone(e.dir) || (Arc::strong_count(&e.file) == 1 && e.used.elapsed() > IDLE)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(e) = inner.files.remove(&id) {
                inner.by_name.remove(&(e.dir, e.name.clone()));
                tracing::info!(
                    "dropped staging file {}/{}: never renamed onto its root{}",
                    e.dir.path(),
                    e.name,
                    if gone(e.dir) {
                        ", and its directory is gone"
                    } else {
                        " while idle"
                    }
                );
            }
        }
    }

    /// Renames staging file `from` to `to` in `dir`, replacing one there.
    pub fn rename(&self, dir: Node, from: &str, to: &str) -> bool {
        let mut inner = self.inner.lock();
        let Some(id) = inner.by_name.remove(&(dir, from.to_string())) else {
            return false;
        };
        if let Some(old) = inner.by_name.insert((dir, to.to_string()), id) {
            inner.files.remove(&old);
        }
        if let Some(e) = inner.files.get_mut(&id) {
            e.name = to.to_string();
        }
        true
    }
}
