//! The cold worker: one thread that alone uploads, records and deletes
//! objects, so none of those can race another. Each round it saves when
//! sectors were read, deletes the objects of freed sectors, promotes
//! sectors read often, reconciles the prefix (at start, then hourly), and
//! moves the sectors not read for `--cold-after`.
//!
//! A move: the sector read from a good local copy (verified against its
//! root, on a helper thread while the sector before uploads: reading
//! changes nothing), uploaded create-only under its root (an object there
//! already is ours from an upload a crash cut short: the same bytes),
//! confirmed with a HEAD, recorded as a copy, and only then are local
//! copies freed (unless `--cold-keep-local`). A crash between any two
//! steps leaves the sector with its local copy, and at worst an object no
//! row names, which the next upload of the sector adopts or the reconcile
//! deletes.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::store::StoreError;
use super::{Cold, bump};
use crate::engine::{Engine, SectorRow, now_secs};
use crate::error::{Error, Result};
use crate::merkle::SECTOR_SIZE;
use crate::meta::COLD_VOLUME;
use crate::volume::SECTOR_BYTES;

/// Where a move of a sector starts.
enum ToMove {
    /// Not stored any more, or no good local copy: nothing to move.
    Gone,
    /// Its object is recorded: only local copies to free.
    Uploaded,
    /// Its verified bytes, to upload.
    Upload(crate::merkle::Root, Bytes),
}

/// Sectors looked at per query of the mover.
const BATCH: usize = 32;
/// How often the prefix is reconciled (and at start).
const RECONCILE_EVERY: Duration = Duration::from_secs(3600);
/// The longest wait between tries while the store does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Engine {
    /// The cold worker's loop (when there is a cold tier): uploads,
    /// records and deletes, one at a time, till shutdown.
    pub(crate) fn cold_loop(&self) {
        let Some(cold) = &self.cold else { return };
        // often enough that a short --cold-after (tests) is kept to
        let interval =
            (cold.options.after / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
        let mut next_reconcile = Instant::now();
        let mut backoff = Duration::from_secs(1);
        while !self.health.stopping() {
            let round = self.cold_round(cold, &mut next_reconcile);
            let wait = match round {
                Ok(()) => {
                    backoff = Duration::from_secs(1);
                    interval
                }
                Err(e) => {
                    tracing::warn!("the cold tier's work waits {} s: {e}", backoff.as_secs());
                    let w = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    w
                }
            };
            // in short waits: a shutdown is seen at once
            let until = Instant::now() + wait;
            let mut woken = cold.woken.lock();
            while !*woken && !self.health.stopping() && Instant::now() < until {
                cold.wake
                    .wait_for(&mut woken, Duration::from_millis(100).min(wait));
            }
            *woken = false;
        }
        // what was read since the last round
        self.save_read_times(cold);
    }

    /// One round of the cold worker's work; an error when the store does
    /// not answer (the round is tried again after a back-off).
    fn cold_round(&self, cold: &Cold, next_reconcile: &mut Instant) -> Result<()> {
        self.save_read_times(cold);
        self.run_cold_deletes(cold)?;
        self.run_promotions(cold);
        if Instant::now() >= *next_reconcile {
            self.reconcile_cold(cold)?;
            *next_reconcile = Instant::now() + RECONCILE_EVERY;
        }
        self.mover_pass(cold)
    }

    fn save_read_times(&self, cold: &Cold) {
        let reads: Vec<(i64, i64)> = cold.read_at.lock().drain().collect();
        if let Err(e) = self.meta.save_read_times(&reads) {
            tracing::warn!("cannot save when sectors were read (tried again): {e}");
            let mut pending = cold.read_at.lock();
            for (id, at) in reads {
                let t = pending.entry(id).or_insert(at);
                *t = (*t).max(at);
            }
        }
    }

    /// Deletes the objects of freed sectors; one that fails stays queued
    /// (and the reconcile would find it anyway).
    fn run_cold_deletes(&self, cold: &Cold) -> Result<()> {
        loop {
            let Some(root) = cold.deletes.lock().pop() else {
                return Ok(());
            };
            // stored again since, and its object adopted: it stays
            if self.meta.has_cold_copy(&root)? {
                continue;
            }
            match cold.store.delete(&root) {
                Ok(()) => {
                    bump(&cold.shelf.counters.deletes, 1);
                    self.cold_answered();
                }
                Err(e) => {
                    cold.deletes.lock().push(root);
                    self.cold_failed(&format!("deleting sector {root}'s object"), &e.to_string());
                    return Err(Error::Unavailable(e.to_string()));
                }
            }
        }
    }

    /// Deletes every object under the prefix that no sector has as its
    /// cold copy: left by a crash between a free's commit and the delete,
    /// or between an upload and its record when the sector went meanwhile.
    fn reconcile_cold(&self, cold: &Cold) -> Result<()> {
        let roots = cold.store.list_roots().map_err(|e| {
            self.cold_failed("listing the prefix", &e.to_string());
            Error::Unavailable(e.to_string())
        })?;
        self.cold_answered();
        let mut deleted = 0u64;
        for root in roots {
            if self.meta.has_cold_copy(&root)? {
                continue;
            }
            cold.store.delete(&root).map_err(|e| {
                self.cold_failed(&format!("deleting the orphan {root}"), &e.to_string());
                Error::Unavailable(e.to_string())
            })?;
            deleted += 1;
        }
        if deleted > 0 {
            bump(&cold.shelf.counters.orphans_deleted, deleted);
            tracing::info!(
                "the cold store's prefix is reconciled: {} no sector holds deleted",
                crate::plural::count(deleted, "object")
            );
        }
        Ok(())
    }

    /// Moves every sector not read for `--cold-after`.
    fn mover_pass(&self, cold: &Cold) -> Result<()> {
        let cutoff = now_secs() - cold.options.after.as_secs() as i64;
        let drop_local = !cold.options.keep_local;
        // the cold copy counts as one: local copies beyond min - 1 go
        let keep = self.copies_setting().min.saturating_sub(1);
        let mut after = 0;
        let mut first = true;
        loop {
            let ids = self
                .meta
                .cold_candidates(cutoff, after, drop_local, keep, BATCH)?;
            if first {
                cold.shelf
                    .counters
                    .mover_pending
                    .store(ids.len() as u64, std::sync::atomic::Ordering::Relaxed);
                first = false;
            }
            let Some(&last) = ids.last() else { break };
            if !self.move_batch(cold, &ids, keep)? {
                return Ok(());
            }
            after = last;
        }
        cold.shelf
            .counters
            .mover_pending
            .store(0, std::sync::atomic::Ordering::Relaxed);
        bump(&cold.shelf.counters.mover_passes, 1);
        Ok(())
    }

    /// Moves the sectors `ids`, in order, each read and verified while the
    /// one before uploads; false when the daemon stops meanwhile.
    fn move_batch(&self, cold: &Cold, ids: &[i64], keep: u32) -> Result<bool> {
        std::thread::scope(|s| {
            let read = |id| s.spawn(move || self.read_to_move(id));
            let mut next = ids.first().map(|&id| read(id));
            for (i, &id) in ids.iter().enumerate() {
                let ready = next
                    .take()
                    .expect("read before")
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
                if self.health.stopping() {
                    return Ok(false);
                }
                next = ids.get(i + 1).map(|&id| read(id));
                // on failure the next one's bytes are dropped: the pass
                // starts again from its first sector after a wait
                self.move_cold(cold, id, ready, keep)?;
            }
            Ok(true)
        })
    }

    /// What a move of sector `id` starts from: its bytes read from a good
    /// local copy and verified against its root, when it has no object
    /// yet.
    fn read_to_move(&self, id: i64) -> Result<ToMove> {
        let copies = self.meta.copies_of(id)?;
        let Some(first) = copies.first() else {
            return Ok(ToMove::Gone);
        };
        if copies.iter().any(|c| c.volume_id == COLD_VOLUME) {
            return Ok(ToMove::Uploaded);
        }
        let local: Vec<SectorRow> = copies
            .iter()
            .filter(|c| c.volume_id != COLD_VOLUME)
            .copied()
            .collect();
        let mut data = vec![0u8; SECTOR_SIZE];
        // verified against the root: only good bytes go cold
        if self.read_good_copy(&local, None, &mut data).is_none() {
            tracing::warn!(
                "sector {} has no good local copy to upload; it stays local",
                first.root
            );
            return Ok(ToMove::Gone);
        }
        Ok(ToMove::Upload(first.root, Bytes::from(data)))
    }

    /// Moves one sector: upload, confirm, record, then free local copies.
    fn move_cold(&self, cold: &Cold, id: i64, ready: ToMove, keep: u32) -> Result<()> {
        match ready {
            ToMove::Gone => return Ok(()),
            ToMove::Uploaded => {}
            ToMove::Upload(root, data) => {
                match self.upload(cold, &root, data) {
                    Ok(()) => {}
                    // not this sector's to fix now: the others go on
                    Err(Error::Corrupt(why)) => {
                        tracing::error!("{why}");
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
                if !self.meta.add_cold_copy(id, now_secs())? {
                    // freed meanwhile: its object goes unless stored again
                    cold.deletes.lock().push(root);
                    return Ok(());
                }
            }
        }
        if cold.options.keep_local {
            return Ok(());
        }
        let local: Vec<SectorRow> = self
            .meta
            .copies_of(id)?
            .into_iter()
            .filter(|c| c.volume_id != COLD_VOLUME)
            .collect();
        // the copies added last go first
        for c in local
            .iter()
            .rev()
            .take(local.len().saturating_sub(keep as usize))
        {
            if self.meta.drop_copy(id, c.volume_id, c.slot)? {
                self.punch_and_release(&[(c.volume_id, c.slot)]);
                bump(&cold.shelf.counters.freed_local, 1);
            }
        }
        self.space_changed();
        Ok(())
    }

    /// Uploads `data` as `root`'s object and confirms it is there whole.
    fn upload(&self, cold: &Cold, root: &crate::merkle::Root, data: Bytes) -> Result<()> {
        let len = data.len() as u64;
        let failed = |what: &str, e: StoreError| {
            self.cold_failed(&format!("{what} sector {root}"), &e.to_string());
            Error::Unavailable(format!("{what} sector {root} failed: {e}"))
        };
        match cold.store.put_new(root, data) {
            Ok(()) => {
                bump(&cold.shelf.counters.uploads, 1);
                bump(&cold.shelf.counters.uploaded_bytes, len);
            }
            // an upload cut short by a crash, or a sector stored again:
            // the same root, the same bytes
            Err(StoreError::Exists) => {}
            Err(e) => return Err(failed("uploading", e)),
        }
        match cold.store.size(root) {
            Ok(SECTOR_BYTES) => {
                self.cold_answered();
                Ok(())
            }
            Ok(n) => {
                bump(&cold.shelf.counters.errors, 1);
                Err(Error::Corrupt(format!(
                    "the object of sector {root} in the cold store has {n} bytes, not \
                     {SECTOR_BYTES}: it is not recorded; delete it and it is uploaded again"
                )))
            }
            Err(e) => Err(failed("confirming", e)),
        }
    }
}
