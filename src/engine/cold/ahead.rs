//! Read-ahead across cold sectors: a reader going through `/sectors` in
//! its listing order (`cp -r`, `tar`, a loop over `ls -U`: by id) reads
//! one cold sector after another, each waiting out the store's time to
//! first byte. When a reader's read from the start of a cold-only sector is
//! of the one listed after its last such read, the downloads of the next
//! ones start at once, so their wait overlaps this one's transfer.
//! Readers are told apart by the thread that reads (as the kernel names
//! it), so readers side by side start nothing for each other; a reader in
//! another order starts read-ahead only where two sectors it reads one
//! after the other happen to be listed so.

use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use super::download::download;
use super::{BLOCK, Cold, KEPT_BLOCKS, bump};
use crate::engine::{Engine, SectorRow};
use crate::merkle::{Root, SECTOR_SIZE};

/// Readers followed at once (the last to read are kept).
const READERS: usize = 64;

/// Objects read ahead and not read yet, at most: their blocks stay kept
/// beside those of two sectors being read (more would push each other out
/// and be fetched twice).
const UNREAD: usize = KEPT_BLOCKS / (SECTOR_SIZE / BLOCK as usize) - 2;

/// What read-ahead follows.
pub(super) struct ReadAhead {
    /// The sector each reader reads next if it goes through the listing.
    trails: Mutex<lru::LruCache<u32, i64>>,
    /// Objects read ahead, not read from the start since.
    unread: Mutex<Vec<Root>>,
}

impl Default for ReadAhead {
    fn default() -> ReadAhead {
        ReadAhead {
            trails: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(READERS).expect("not zero"),
            )),
            unread: Mutex::default(),
        }
    }
}

impl Engine {
    /// `reader`'s read from the start of the cold-only sector `at` (its
    /// own download started first): the next cold-only sector is the one
    /// it is expected to read; and when `at` was expected itself, the
    /// downloads of the next `--cold-read-ahead` start now (not while the
    /// store does not answer).
    pub(super) fn read_ahead(&self, cold: &Cold, at: &SectorRow, reader: u32) {
        let depth = cold.options.read_ahead as usize;
        if depth == 0 {
            return;
        }
        // what the read asks for goes out before what it may ask next
        if !cold.shelf.holds_whole(&at.root) {
            download(&cold.store, &cold.shelf, &at.root, 0, false);
        }
        cold.ahead.unread.lock().retain(|r| *r != at.root);
        let follows = cold.ahead.trails.lock().pop(&reader) == Some(at.id);
        let next = match self
            .meta
            .cold_only_after(at.id, if follows { depth } else { 1 })
        {
            Ok(next) => next,
            Err(e) => {
                // only speed is lost: the reads themselves go on
                tracing::warn!("no read-ahead after sector {}: {e}", at.root);
                return;
            }
        };
        if let Some((id, _)) = next.first() {
            cold.ahead.trails.lock().put(reader, *id);
        }
        if follows && cold.reachable.load(Ordering::Relaxed) {
            self.start_ahead(cold, next.iter().map(|(_, root)| root));
        }
    }

    /// Starts downloading the objects of `roots` not held already, while
    /// fewer than [`UNREAD`] read ahead are waiting for their reader.
    fn start_ahead<'a>(&self, cold: &Cold, roots: impl Iterator<Item = &'a Root>) {
        let mut unread = cold.ahead.unread.lock();
        // those pushed out of the kept blocks are read ahead no more
        unread.retain(|r| cold.shelf.holds_whole(r));
        for root in roots {
            if unread.len() >= UNREAD {
                return;
            }
            if !cold.shelf.holds_whole(root) {
                download(&cold.store, &cold.shelf, root, 0, true);
                unread.push(*root);
                bump(&cold.shelf.counters.read_ahead, 1);
            }
        }
    }
}
