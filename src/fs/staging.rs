//! Staging files: `.<name>` in `/sectors` or `/temp/<height>`, written
//! like a sector under a temporary name (rsync, editors, tools that write
//! and then rename) and stored only when renamed onto its root. Not
//! listed, not durable, no reference: kept in memory until the rename, an
//! `rm`, or the end of the mount (a restart finds nothing of them: their
//! slots were only reserved in memory).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::inode::Node;
use super::sector_file::SectorFile;

/// Whether `name` in a sector directory is a staging name.
pub fn is_staging_name(name: &str) -> bool {
    name.starts_with('.')
}

type Staged = Arc<Mutex<SectorFile>>;

#[derive(Default)]
pub struct Staging {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    by_name: HashMap<(Node, String), u64>,
    files: HashMap<u64, Staged>,
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
        inner.files.insert(id, file);
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
        self.inner.lock().files.get(&id).cloned()
    }

    /// Takes `name` out of `dir` (an `rm`, or a rename that stored it).
    pub fn remove(&self, dir: Node, name: &str) -> Option<Staged> {
        let mut inner = self.inner.lock();
        let id = inner.by_name.remove(&(dir, name.to_string()))?;
        inner.files.remove(&id)
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
        true
    }
}
