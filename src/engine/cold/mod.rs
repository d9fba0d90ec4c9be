//! The cold tier: sectors not read for a while go to an S3-compatible
//! object store, one object each, named by root. An object is one more
//! copy of its sector (`meta::COLD_VOLUME`).
//!
//! `store.rs` is the only code that knows `object_store` and tokio;
//! `mover.rs` the cold worker thread (uploads, deleting the objects of
//! freed sectors, the reconcile pass); `read.rs` reads of cold copies
//! (by blocks, the last ones kept; promotion); `ahead.rs` read-ahead
//! across sectors read in listing order; `download.rs` objects
//! streamed (the whole one, or a block), one download of a range in
//! flight, each read answered as its bytes come; `pieces.rs` bytes kept
//! in the pieces they came in.

mod ahead;
mod download;
mod mover;
mod pieces;
mod read;
mod store;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

use store::ColdStore;
pub use store::ColdUrl;

use super::{Engine, Severity, bump};
use crate::error::Result;
use crate::merkle::Root;

/// Blocks of cold objects kept in memory (1 MiB each).
const KEPT_BLOCKS: usize = 32;

/// Cold objects are fetched and kept in aligned blocks of this many bytes.
const BLOCK: u64 = 1 << 20;

/// The default of [`ColdOptions::promote_after`].
pub const DEFAULT_PROMOTE_AFTER: u32 = 3;

/// The default of [`ColdOptions::read_ahead`]: two. With one, a reader
/// that reads faster than the store's wait before an object still waits
/// out part of it (`cat` of 64 cold sectors from a local SeaweedFS: 0.87x
/// a direct GET with one ahead, 1.0x with two).
pub const DEFAULT_READ_AHEAD: u32 = 2;

/// How the cold tier is set up (`mount --cold` and its companions).
#[derive(Debug, Clone)]
pub struct ColdOptions {
    /// `s3://bucket/prefix`.
    pub url: ColdUrl,
    /// Sectors not read (nor stored) for this long go cold.
    pub after: Duration,
    /// Keep the local copies of sectors that went cold.
    pub keep_local: bool,
    /// Reads (from the start of the sector) of a cold-only sector after
    /// which it gets a local copy again (0: never).
    pub promote_after: u32,
    /// Cold-only sectors downloaded ahead of a reader going through the
    /// listing in order (0: none).
    pub read_ahead: u32,
}

/// Counters of the cold tier since start.
#[derive(Debug, Default)]
pub(super) struct Counters {
    uploads: AtomicU64,
    uploaded_bytes: AtomicU64,
    downloads: AtomicU64,
    downloaded_bytes: AtomicU64,
    read_ahead: AtomicU64,
    deletes: AtomicU64,
    errors: AtomicU64,
    promotions: AtomicU64,
    freed_local: AtomicU64,
    /// Sectors waiting for the mover at the start of its last pass.
    mover_pending: AtomicU64,
    mover_passes: AtomicU64,
    orphans_deleted: AtomicU64,
}

/// What `/tiers/cold/stats`, `/status.json` and `/metrics` show.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ColdStats {
    /// Sectors with an object in the cold store (each 4 MiB).
    pub objects: u64,
    pub bytes: u64,
    /// Of those, sectors with no local copy.
    pub cold_only: u64,
    pub uploads: u64,
    pub uploaded_bytes: u64,
    pub downloads: u64,
    pub downloaded_bytes: u64,
    /// Downloads started ahead of a reader going through the listing.
    pub read_ahead: u64,
    pub deletes: u64,
    pub errors: u64,
    pub promotions: u64,
    /// Local copies freed once their object was confirmed.
    pub freed_local: u64,
    pub mover_pending: u64,
    pub mover_passes: u64,
    pub orphans_deleted: u64,
    /// The store answered the last request.
    pub reachable: bool,
}

pub(super) struct Cold {
    store: ColdStore,
    options: ColdOptions,
    reachable: AtomicBool,
    /// The blocks fetched last, the downloads in flight, the
    /// counters: shared with the downloads' tasks.
    shelf: Arc<download::Shelf>,
    /// When sectors were read (unix seconds), not yet saved.
    read_at: Mutex<HashMap<i64, i64>>,
    /// Reads from the start of cold-only sectors, toward promotion.
    cold_reads: Mutex<HashMap<i64, u32>>,
    /// The readers going through the listing, and what was read ahead.
    ahead: ahead::ReadAhead,
    /// Roots of freed sectors whose objects are still to delete.
    deletes: Mutex<Vec<Root>>,
    /// Sectors to promote, and those being promoted.
    promotions: Mutex<Vec<i64>>,
    promoting: Mutex<HashSet<i64>>,
    woken: Mutex<bool>,
    wake: Condvar,
}

impl Cold {
    /// Connects to the store and checks the bucket can be used: an error
    /// naming the problem (credentials, bucket, endpoint) when not.
    pub(super) fn open(options: &ColdOptions) -> Result<Cold> {
        let store = ColdStore::connect(options.url.clone())?;
        store.check()?;
        tracing::info!(
            "cold tier: {} (sectors not read for {} s go there{})",
            options.url,
            options.after.as_secs(),
            if options.keep_local {
                ", local copies kept"
            } else {
                ""
            }
        );
        Ok(Cold {
            store,
            options: options.clone(),
            reachable: AtomicBool::new(true),
            shelf: Arc::new(download::Shelf::new(KEPT_BLOCKS)),
            read_at: Mutex::default(),
            cold_reads: Mutex::default(),
            ahead: ahead::ReadAhead::default(),
            promotions: Mutex::default(),
            deletes: Mutex::default(),
            promoting: Mutex::default(),
            woken: Mutex::new(false),
            wake: Condvar::new(),
        })
    }

    fn wake(&self) {
        *self.woken.lock() = true;
        self.wake.notify_all();
    }
}

impl Engine {
    /// The cold tier is set up.
    pub fn has_cold(&self) -> bool {
        self.cold.is_some()
    }

    /// The cold tier's figures (`None`: no cold tier).
    pub fn cold_stats(&self) -> Result<Option<ColdStats>> {
        let Some(cold) = &self.cold else {
            return Ok(None);
        };
        let counts = self.meta.cold_counts()?;
        let c = &cold.shelf.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Ok(Some(ColdStats {
            objects: counts.objects,
            bytes: counts.objects * crate::volume::SECTOR_BYTES,
            cold_only: counts.cold_only,
            uploads: get(&c.uploads),
            uploaded_bytes: get(&c.uploaded_bytes),
            downloads: get(&c.downloads),
            downloaded_bytes: get(&c.downloaded_bytes),
            read_ahead: get(&c.read_ahead),
            deletes: get(&c.deletes),
            errors: get(&c.errors),
            promotions: get(&c.promotions),
            freed_local: get(&c.freed_local),
            mover_pending: get(&c.mover_pending),
            mover_passes: get(&c.mover_passes),
            orphans_deleted: get(&c.orphans_deleted),
            reachable: cold.reachable.load(Ordering::Relaxed),
        }))
    }

    /// Freed sectors that had an object: deleted by the cold worker (the
    /// sector's row went in the transaction that freed it).
    pub(crate) fn cold_freed(&self, roots: Vec<Root>) {
        if roots.is_empty() {
            return;
        }
        let Some(cold) = &self.cold else {
            tracing::warn!(
                "{} freed had an object in a cold store this mount does not use (no --cold): \
                 the objects stay until a mount with --cold reconciles the prefix",
                crate::plural::count(roots.len() as u64, "sector")
            );
            return;
        };
        cold.deletes.lock().extend(roots);
        cold.wake();
    }

    /// A request to the store failed: counted, and while the store does
    /// not answer, an alert says so.
    fn cold_failed(&self, what: &str, why: &str) {
        let Some(cold) = &self.cold else { return };
        bump(&cold.shelf.counters.errors, 1);
        tracing::warn!("cold store {}: {what} failed: {why}", cold.store.url());
        self.cold_unreachable(what, why);
    }

    /// The store did not answer (a failure counted already): the alert.
    fn cold_unreachable(&self, what: &str, why: &str) {
        let Some(cold) = &self.cold else { return };
        if cold.reachable.swap(false, Ordering::Relaxed) {
            tracing::error!(
                "the cold store {} does not answer: reads of sectors stored only there fail, \
                 uploads wait and retry",
                cold.store.url()
            );
        }
        self.alerts.raise(
            "cold-unreachable",
            Severity::Error,
            format!(
                "the cold store {} does not answer ({what}: {why}); reads of sectors stored \
                 only there fail with EIO and uploads wait until it is back",
                cold.store.url()
            ),
            serde_json::json!({"url": cold.store.url().to_string()}),
        );
    }

    /// A request to the store worked: the unreachable alert goes.
    fn cold_answered(&self) {
        let Some(cold) = &self.cold else { return };
        if !cold.reachable.swap(true, Ordering::Relaxed) {
            tracing::info!("the cold store {} answers again", cold.store.url());
        }
        self.alerts.clear("cold-unreachable");
    }
}
