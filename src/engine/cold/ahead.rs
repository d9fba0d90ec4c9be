//! Read-ahead across cold sectors: a reader going through `/sectors` in
//! its listing order (`cp -r`, `tar`, `find`, `ls -U`: by id) reads one
//! cold sector after another, each waiting out the store's time to first
//! byte. When a reader's read from the start of a cold-only sector is of
//! the one listed after its last such read, the downloads of the next ones
//! start at once, so their wait overlaps this one's transfer. Readers are
//! told apart by the thread that reads (as the kernel names it), so
//! readers side by side, in any order, start nothing for each other.

use std::num::NonZeroUsize;

use parking_lot::Mutex;

use super::download::download;
use super::{Cold, bump};
use crate::engine::{Engine, SectorRow};

/// Readers followed at once (the last to read are kept).
const READERS: usize = 64;

/// The sector each reader reads next if it goes through the listing.
pub(super) struct Trails(Mutex<lru::LruCache<u32, i64>>);

impl Default for Trails {
    fn default() -> Trails {
        Trails(Mutex::new(lru::LruCache::new(
            NonZeroUsize::new(READERS).expect("not zero"),
        )))
    }
}

impl Engine {
    /// `reader`'s read from the start of the cold-only sector `at` (its
    /// own download started first): the next cold-only sector is the one
    /// it is expected to read; and when `at` was expected itself, the
    /// downloads of the next `--cold-read-ahead` start now.
    pub(super) fn read_ahead(&self, cold: &Cold, at: &SectorRow, reader: u32) {
        let depth = cold.options.read_ahead as usize;
        if depth == 0 {
            return;
        }
        // what the read asks for goes out before what it may ask next
        if !cold.shelf.holds_whole(&at.root) {
            download(&cold.store, &cold.shelf, &at.root, 0);
        }
        let follows = cold.trails.0.lock().pop(&reader) == Some(at.id);
        let next = match self
            .meta
            .cold_only_after(at.id, if follows { depth } else { 1 })
        {
            Ok(next) => next,
            Err(e) => {
                tracing::debug!("no read-ahead after sector {}: {e}", at.root);
                return;
            }
        };
        if let Some((id, _)) = next.first() {
            cold.trails.0.lock().put(reader, *id);
        }
        if !follows {
            return;
        }
        for (_, root) in &next {
            if !cold.shelf.holds_whole(root) {
                download(&cold.store, &cold.shelf, root, 0);
                bump(&cold.shelf.counters.read_ahead, 1);
            }
        }
    }
}
