//! What the kernel holds (looked up and not yet forgotten): sector inodes
//! with the names it found them under, and `/temp/<height>` directories.
//! Only these can be cached; when they stop being true, these say which
//! names and attributes the kernel must drop.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use parking_lot::Mutex;

use super::inode::Node;
use crate::merkle::Root;

/// A name in a directory, as the kernel caches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub parent: u64,
    pub name: String,
}

impl Name {
    pub fn new(parent: Node, name: impl ToString) -> Name {
        Name {
            parent: parent.ino(),
            name: name.to_string(),
        }
    }
}

/// A sector the kernel holds: its lookups not yet forgotten, its root (its
/// name everywhere), and the directories it was found in (`/sectors`,
/// `/temp/<h>`), each possibly still cached there.
struct Held {
    lookups: u64,
    root: Root,
    dirs: Vec<Node>,
}

#[derive(Default)]
struct State {
    sectors: HashMap<i64, Held>,
    /// `/temp/<h>` → lookups not yet forgotten.
    temp_dirs: HashMap<u64, u64>,
}

#[derive(Default, Clone)]
pub struct Known(Arc<Mutex<State>>);

impl Known {
    /// The kernel was given `node` as `name` in `dir` (a lookup, link or
    /// mkdir answered).
    pub fn looked_up(&self, dir: Node, node: Node, name: &str) {
        let mut state = self.0.lock();
        match node {
            Node::Sector(id) => {
                let Ok(root) = name.parse::<Root>() else {
                    return;
                };
                let held = state.sectors.entry(id).or_insert_with(|| Held {
                    lookups: 0,
                    root,
                    dirs: Vec::new(),
                });
                held.lookups += 1;
                if !held.dirs.contains(&dir) {
                    held.dirs.push(dir);
                }
            }
            Node::TempHeight(h) => *state.temp_dirs.entry(h).or_default() += 1,
            _ => {}
        }
    }

    /// The kernel forgot `lookups` of `node`.
    pub fn forgotten(&self, node: Node, lookups: u64) {
        fn drop_count(left: &mut u64, lookups: u64) -> bool {
            *left = left.saturating_sub(lookups);
            *left == 0
        }
        let mut state = self.0.lock();
        match node {
            Node::Sector(id) => {
                if let Entry::Occupied(mut e) = state.sectors.entry(id)
                    && drop_count(&mut e.get_mut().lookups, lookups)
                {
                    e.remove();
                }
            }
            Node::TempHeight(h) => {
                if let Entry::Occupied(mut e) = state.temp_dirs.entry(h)
                    && drop_count(e.get_mut(), lookups)
                {
                    e.remove();
                }
            }
            _ => {}
        }
    }

    /// The ones among `ids` the kernel holds.
    pub fn held(&self, ids: &[i64]) -> Vec<i64> {
        let known = self.0.lock();
        ids.iter()
            .copied()
            .filter(|id| known.sectors.contains_key(id))
            .collect()
    }

    /// Every name sector `id` may be cached under: it was freed, so none
    /// of them is true any more.
    pub fn freed(&self, id: i64) -> Vec<Name> {
        match self.0.lock().sectors.get_mut(&id) {
            Some(held) => {
                let root = held.root.to_string();
                std::mem::take(&mut held.dirs)
                    .into_iter()
                    .map(|dir| Name::new(dir, &root))
                    .collect()
            }
            None => Vec::new(),
        }
    }

    /// Every name the kernel may cache in or of `/temp/<h>` directories
    /// at or below `height`, which the height just took away.
    pub fn expired(&self, height: u64) -> Vec<Name> {
        let gone = |dir: &Node| matches!(dir, Node::TempHeight(h) if *h <= height);
        let mut state = self.0.lock();
        let mut names = Vec::new();
        for held in state.sectors.values_mut() {
            if held.dirs.iter().any(gone) {
                let root = held.root.to_string();
                names.extend(
                    held.dirs
                        .iter()
                        .filter(|d| gone(d))
                        .map(|d| Name::new(*d, &root)),
                );
                held.dirs.retain(|d| !gone(d));
            }
        }
        names.extend(
            state
                .temp_dirs
                .keys()
                .filter(|h| **h <= height)
                .map(|h| Name::new(Node::TempDir, h)),
        );
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(n: u8) -> Root {
        Root([n; 32])
    }

    #[test]
    fn counts_lookups_until_forgotten() {
        let k = Known::default();
        let name = |n| root(n).to_string();
        k.looked_up(Node::SectorsDir, Node::Sector(1), &name(1));
        k.looked_up(Node::TempHeight(5), Node::Sector(1), &name(1));
        k.looked_up(Node::SectorsDir, Node::Sector(2), &name(2));
        k.forgotten(Node::Sector(1), 1);
        assert_eq!(k.held(&[1, 2, 3]), vec![1, 2]);
        k.forgotten(Node::Sector(1), 1);
        k.forgotten(Node::Sector(2), 5);
        assert!(k.held(&[1, 2, 3]).is_empty());
        assert!(k.freed(1).is_empty());
    }

    #[test]
    fn names_of_freed_sectors_and_expired_temp_dirs() {
        let k = Known::default();
        let r = root(7).to_string();
        k.looked_up(Node::SectorsDir, Node::Sector(1), &r);
        k.looked_up(Node::TempHeight(5), Node::Sector(1), &r);
        k.looked_up(Node::TempHeight(9), Node::Sector(1), &r);
        k.looked_up(Node::TempDir, Node::TempHeight(5), "5");
        k.looked_up(Node::TempDir, Node::TempHeight(9), "9");
        let mut expired = k.expired(5);
        expired.sort_by_key(|n| n.parent);
        assert_eq!(
            expired,
            vec![
                Name::new(Node::TempDir, 5),
                Name::new(Node::TempHeight(5), &r)
            ]
        );
        assert_eq!(
            k.freed(1),
            vec![
                Name::new(Node::SectorsDir, &r),
                Name::new(Node::TempHeight(9), &r)
            ]
        );
        // told once
        assert!(k.freed(1).is_empty());
    }
}
