//! Repair: every sector kept at `min` readable copies and at most `max`.
//!
//! A pass walks the sectors in id order, from a cursor kept in the database
//! (a crash resumes it): a sector with fewer readable copies than `min`
//! gets new ones, written from any good copy (verified against its root) to
//! volumes without one; a sector with more than `max` loses the copies
//! added last. A pass is asked for when a volume has been unavailable for
//! `--repair-after`, comes back, is removed, or loses sectors, and when the
//! copies setting changes. Asked for while one runs, the pass starts over
//! once it ends.
//!
//! Healing: a copy found bad (a read error, or data no longer hashing to
//! its root) is rewritten from a good copy into a fresh slot of its volume
//! (else of another) and re-pointed in one transaction, exactly as a job
//! moves a sector, so a copy freed or moved meanwhile is never written over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{Engine, Progress, SectorRow, Severity, VolumeState, now_secs};
use crate::error::{Error, Result};
use crate::merkle::{self, SECTOR_SIZE};
use crate::meta::Move;

/// Sectors looked at between two saves of the cursor.
const BATCH: usize = 64;

/// The repair's flags and the copies waiting to be healed.
#[derive(Default)]
pub(super) struct Repair {
    heals: Mutex<Vec<SectorRow>>,
    woken: Mutex<bool>,
    wake: Condvar,
    cancel: AtomicBool,
    running: AtomicBool,
}

/// What one sector's repair did.
#[derive(Debug, Default, Clone, Copy)]
struct Done {
    added: u64,
    dropped: u64,
    /// No good copy to copy from.
    unreadable: bool,
    /// Copies missing for want of room.
    short: bool,
}

impl Engine {
    /// Wakes the repair thread: a pass or a heal is waiting.
    pub(crate) fn repair_wake(&self) {
        *self.repair.woken.lock() = true;
        self.repair.wake.notify_all();
    }

    /// Asks for a repair pass (kept in the database) and wakes the thread.
    pub(crate) fn request_repair(&self, why: &str) {
        tracing::info!("a repair pass is due: {why}");
        match self.meta.request_repair() {
            Ok(()) => self.repair_wake(),
            Err(e) => tracing::error!("cannot ask for a repair pass ({why}): {e}"),
        }
    }

    /// Stops the repair pass under way (a later event starts a new one).
    pub fn cancel_repair(&self) -> Result<()> {
        if self.meta.repair_cursor()?.is_none() {
            return Err(Error::NotFound("no repair is running".into()));
        }
        self.repair.cancel.store(true, Ordering::Relaxed);
        self.repair_wake();
        Ok(())
    }

    /// A repair pass is due or under way.
    pub fn repair_due(&self) -> Result<bool> {
        Ok(self.meta.repair_cursor()?.is_some())
    }

    /// Queues a bad copy to be rewritten from a good one.
    pub(crate) fn heal_later(&self, at: &SectorRow) {
        let mut heals = self.repair.heals.lock();
        if !heals
            .iter()
            .any(|h| (h.id, h.volume_id) == (at.id, at.volume_id))
        {
            heals.push(*at);
        }
        drop(heals);
        self.repair_wake();
    }

    /// The repair thread: heals as they come, passes while one is due.
    pub(super) fn repair_loop(&self) {
        while !self.health.stopping() {
            {
                let mut woken = self.repair.woken.lock();
                if !*woken {
                    self.repair
                        .wake
                        .wait_for(&mut woken, Duration::from_millis(500));
                }
                *woken = false;
            }
            self.run_heals();
            match self.meta.repair_cursor() {
                Ok(Some(cursor)) => {
                    if let Err(e) = self.repair_pass(cursor) {
                        tracing::error!("the repair pass failed, it is tried again: {e}");
                        self.alerts.raise(
                            "repair",
                            Severity::Error,
                            format!("the repair of copies failed, it is tried again: {e}"),
                            serde_json::json!({}),
                        );
                        self.sleep_unless_stopping(Duration::from_secs(5));
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!("cannot read the repair cursor: {e}"),
            }
        }
    }

    /// Runs repair passes until none is due (each from `cursor`, then from
    /// the start if one was asked for meanwhile). For tests and the
    /// command line: the mount's thread does the same in the background.
    pub fn repair_now(&self) -> Result<()> {
        self.run_heals();
        while let Some(cursor) = self.meta.repair_cursor()? {
            self.repair_pass(cursor)?;
            if self.repair.cancel.load(Ordering::Relaxed) {
                break;
            }
        }
        Ok(())
    }

    fn run_heals(&self) {
        loop {
            let Some(at) = self.repair.heals.lock().pop() else {
                return;
            };
            if let Err(e) = self.heal(&at) {
                tracing::error!(
                    volume = at.volume_id,
                    slot = at.slot,
                    "cannot rewrite the bad copy of sector {}: {e}",
                    at.root
                );
            }
        }
    }

    fn repair_pass(&self, mut cursor: i64) -> Result<()> {
        self.repair.running.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let total = self.meta.count_sectors()?;
        let (mut done, mut added, mut dropped, mut unreadable, mut short) = (0u64, 0, 0, 0, 0);
        let outcome = loop {
            if self.health.stopping() {
                break Ok(());
            }
            if self.repair.cancel.swap(false, Ordering::Relaxed) {
                self.meta.set_repair_cursor(None)?;
                self.alerts.raise(
                    "repair",
                    Severity::Warning,
                    format!(
                        "the repair of copies was cancelled after {done} of {total} sectors; \
                         it starts again at the next volume change or copies setting"
                    ),
                    serde_json::json!({}),
                );
                break Ok(());
            }
            self.run_heals();
            let ids = self.meta.sector_ids_after(cursor, BATCH)?;
            let Some(&last) = ids.last() else {
                if self.meta.finish_repair_pass()? {
                    // asked for again while it ran: from the start
                    cursor = 0;
                    continue;
                }
                let message = format!(
                    "the repair of copies is done: {total} sectors looked at, {added} copies \
                     added, {dropped} dropped{}{}",
                    if unreadable > 0 {
                        format!(", {unreadable} with no readable copy")
                    } else {
                        String::new()
                    },
                    if short > 0 {
                        format!(", {short} still short of copies (no room)")
                    } else {
                        String::new()
                    }
                );
                tracing::info!("{message}");
                let severity = if unreadable + short > 0 {
                    Severity::Warning
                } else {
                    Severity::Info
                };
                self.alerts.raise(
                    "repair",
                    severity,
                    message,
                    serde_json::json!({"added": added, "dropped": dropped,
                        "unreadable": unreadable, "short": short}),
                );
                break Ok(());
            };
            for id in ids {
                let d = self.repair_sector(id)?;
                added += d.added;
                dropped += d.dropped;
                unreadable += d.unreadable as u64;
                short += d.short as u64;
                done += 1;
            }
            self.crash_point("repair:batch");
            cursor = last;
            self.meta.advance_repair_cursor(cursor)?;
            let progress = Progress::new(done, total.max(done), started);
            self.alerts.raise_with(
                "repair",
                Severity::Info,
                format!(
                    "repairing copies: {done}/{} sectors looked at, {added} copies added, \
                     {dropped} dropped",
                    progress.total
                ),
                serde_json::json!({"added": added, "dropped": dropped}),
                Some(progress),
            );
        };
        self.repair.running.store(false, Ordering::Relaxed);
        outcome
    }

    /// Brings one sector to between `min` and `max` readable copies.
    fn repair_sector(&self, id: i64) -> Result<Done> {
        let mut done = Done::default();
        let copies = self.meta.copies_of(id)?;
        if copies.is_empty() {
            return Ok(done);
        }
        let setting = self.copies_setting();
        let counted: Vec<&SectorRow> = copies
            .iter()
            .filter(|c| self.counts_toward_min(c))
            .collect();
        let have = counted.len();
        if have < setting.min as usize {
            let mut buf = vec![0u8; SECTOR_SIZE];
            if self.read_good_copy(&copies, None, &mut buf).is_none() {
                done.unreadable = true;
                return Ok(done);
            }
            let holders: Vec<u32> = copies.iter().map(|c| c.volume_id).collect();
            let epoch = self.truncations.snapshot();
            let mut failed = Vec::new();
            let want = setting.min as usize - have;
            let placed = match self.write_copies(&buf, want, &holders, &mut failed, None) {
                Ok(placed) => placed,
                Err(Error::NoSpace(_)) => Vec::new(),
                Err(e) => return Err(e),
            };
            self.crash_point("repair:written");
            for p in &placed {
                let intact = || self.truncations.none_since(epoch) && p.volume.holds(&p.file);
                if self
                    .meta
                    .add_copy(id, p.volume.id, p.slot, now_secs(), &intact)?
                {
                    done.added += 1;
                    super::volumes::bump(&p.volume.stats.writes);
                } else {
                    self.discard_slot(p.volume.id, p.slot);
                }
            }
            done.short = (done.added as usize) < want;
        } else if have > setting.max as usize {
            // the copies added last go first
            for c in counted.iter().rev().take(have - setting.max as usize) {
                if self.meta.drop_copy(id, c.volume_id, c.slot)? {
                    self.punch_and_release(&[(c.volume_id, c.slot)]);
                    done.dropped += 1;
                }
            }
        }
        Ok(done)
    }

    /// A copy that counts toward `min`: on a readable volume that is not
    /// being removed, and not found corrupt.
    pub(crate) fn counts_toward_min(&self, c: &SectorRow) -> bool {
        !self.is_corrupt_copy(c)
            && self
                .volume(c.volume_id)
                .is_ok_and(|v| v.readable() && v.state() != VolumeState::Removing)
    }

    /// Reads a whole copy of the sector that hashes to its root into `buf`,
    /// trying `copies` in read order, but `skip`; the copy read. A copy
    /// that reads wrong is noted corrupt on the way.
    pub(crate) fn read_good_copy(
        &self,
        copies: &[SectorRow],
        skip: Option<(u32, u64)>,
        buf: &mut [u8],
    ) -> Option<SectorRow> {
        for c in self.read_order(copies.to_vec()) {
            if Some((c.volume_id, c.slot)) == skip || self.is_corrupt_copy(&c) {
                continue;
            }
            let Ok(volume) = self.volume(c.volume_id) else {
                continue;
            };
            let Ok(file) = volume.file() else { continue };
            if let Err(e) = file.read(c.slot, 0, buf) {
                tracing::warn!(
                    volume = c.volume_id,
                    slot = c.slot,
                    "reading a copy of sector {} failed: {e}",
                    c.root
                );
                continue;
            }
            if merkle::sector_root(buf) != c.root {
                if self.still_at(&c).unwrap_or(false) {
                    self.note_corrupt(&volume, &c);
                }
                continue;
            }
            return Some(c);
        }
        None
    }

    /// Rewrites bad copy `at` from a good one: into a fresh slot of its own
    /// volume (else a volume without a copy), re-pointed in one
    /// transaction; the bad slot is punched.
    fn heal(&self, at: &SectorRow) -> Result<()> {
        if !self.still_at(at)? {
            self.corrupt.lock().remove(&(at.id, at.volume_id));
            return Ok(());
        }
        let copies = self.meta.copies_of(at.id)?;
        let mut buf = vec![0u8; SECTOR_SIZE];
        let Some(source) = self.read_good_copy(&copies, Some((at.volume_id, at.slot)), &mut buf)
        else {
            return Err(Error::Corrupt(format!(
                "sector {} has no other good copy to rewrite it from",
                at.root
            )));
        };
        let volume = self.volume(at.volume_id)?;
        let epoch = self.truncations.snapshot();
        let fresh = self.alloc.lock().reserve_in(at.volume_id, u64::MAX);
        let healed_in_place = match fresh {
            Some(slot) => {
                let written = self
                    .write_slot(&volume, slot, &buf, || {})
                    .map(|f| (f, slot));
                match written {
                    Ok((file, slot)) => {
                        let intact = || self.truncations.none_since(epoch) && volume.holds(&file);
                        let moved = self.meta.relocate(
                            &[Move {
                                sector_id: at.id,
                                from_volume: at.volume_id,
                                from_slot: at.slot,
                                to_volume: at.volume_id,
                                to_slot: slot,
                            }],
                            &intact,
                        )?;
                        if moved == [true] {
                            self.punch_and_release(&[(at.volume_id, at.slot)]);
                            true
                        } else {
                            self.discard_slot(at.volume_id, slot);
                            false
                        }
                    }
                    Err(e) => {
                        self.discard_slot(at.volume_id, slot);
                        tracing::warn!(
                            volume = at.volume_id,
                            "cannot rewrite sector {} in its volume: {e}",
                            at.root
                        );
                        false
                    }
                }
            }
            None => false,
        };
        if !healed_in_place {
            // elsewhere: a new copy first, then the bad one dropped
            let holders: Vec<u32> = copies.iter().map(|c| c.volume_id).collect();
            let epoch = self.truncations.snapshot();
            let placed = self.write_copies(&buf, 1, &holders, &mut Vec::new(), None)?;
            let mut added = false;
            for p in &placed {
                let intact = || self.truncations.none_since(epoch) && p.volume.holds(&p.file);
                if !added
                    && self
                        .meta
                        .add_copy(at.id, p.volume.id, p.slot, now_secs(), &intact)?
                {
                    added = true;
                } else {
                    self.discard_slot(p.volume.id, p.slot);
                }
            }
            if !added || !self.meta.drop_copy(at.id, at.volume_id, at.slot)? {
                return Err(Error::NoSpace(format!(
                    "no slot to rewrite sector {} into",
                    at.root
                )));
            }
            self.punch_and_release(&[(at.volume_id, at.slot)]);
        }
        self.corrupt.lock().remove(&(at.id, at.volume_id));
        super::volumes::bump(&volume.stats.healed);
        let message = format!(
            "the bad copy of sector {} in volume {} slot {} was rewritten from its copy in \
             volume {}",
            at.root, at.volume_id, at.slot, source.volume_id
        );
        tracing::warn!("{message}");
        self.alerts.raise(
            &format!("healed-{}", at.root),
            Severity::Warning,
            message,
            serde_json::json!({"root": at.root.to_string(), "volume": at.volume_id,
                "slot": at.slot, "from_volume": source.volume_id}),
        );
        Ok(())
    }
}
