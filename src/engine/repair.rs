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
//! The same thread heals bad copies (`heal.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::workers::Crew;
use super::{Engine, Progress, SectorRow, Severity, VolumeState, now_secs};
use crate::error::{Error, Result};
use crate::volume::VolumeFile;

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

/// Copies in flight at once within a batch.
const COPIERS: usize = 4;

/// The repair thread's nice value: about a tenth of a core's share when
/// requests want the cores, all of them when they do not.
const REPAIR_NICE: libc::c_int = 10;

/// What a batch's repair did.
#[derive(Debug, Default, Clone, Copy)]
struct Done {
    added: u64,
    dropped: u64,
    /// Sectors with no good copy to copy from.
    unreadable: u64,
    /// Sectors still short of copies for want of room.
    short: u64,
}

/// New copies for one sector: its copies now, and the slots reserved.
struct Add {
    id: i64,
    copies: Vec<SectorRow>,
    dest: Vec<(u32, u64)>,
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
    /// Runs (with its copiers, which inherit it) at a lower priority than
    /// the requests it serves beside: readers come first, and a busy store
    /// still leaves it a share, so it never starves.
    pub(super) fn repair_loop(&self) {
        Engine::lower_priority(REPAIR_NICE, "repair");
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
            let d = self.repair_batch(&ids)?;
            added += d.added;
            dropped += d.dropped;
            unreadable += d.unreadable;
            short += d.short;
            done += ids.len() as u64;
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

    /// Brings a batch of sectors to between `min` and `max` readable
    /// copies: drops first, then every missing copy reserved, read from a
    /// good copy (verified) and written (several in flight), one sync per
    /// volume written, and all recorded in one transaction.
    fn repair_batch(&self, ids: &[i64]) -> Result<Done> {
        let setting = self.copies_setting();
        let (min, max) = (setting.min as usize, setting.max as usize);
        let mut done = Done::default();
        let epoch = self.truncations.snapshot();
        let mut adds: Vec<Add> = Vec::new();
        for &id in ids {
            let copies = self.meta.copies_of(id)?;
            let counted: Vec<&SectorRow> = copies
                .iter()
                .filter(|c| self.counts_toward_min(c))
                .collect();
            let have = counted.len();
            // a cold copy counts toward min but is never trimmed, nor
            // makes local copies (kept with --cold-keep-local) too many
            let local: Vec<&SectorRow> = counted
                .iter()
                .filter(|c| c.volume_id != crate::meta::COLD_VOLUME)
                .copied()
                .collect();
            if copies.is_empty() || (have >= min && local.len() <= max) {
                continue;
            }
            if local.len() > max {
                // the copies added last go first
                for c in local.iter().rev().take(local.len() - max) {
                    if self.meta.drop_copy(id, c.volume_id, c.slot)? {
                        self.punch_and_release(&[(c.volume_id, c.slot)]);
                        done.dropped += 1;
                    }
                }
                continue;
            }
            if have >= min {
                continue;
            }
            let holders: Vec<u32> = copies.iter().map(|c| c.volume_id).collect();
            let devices: Vec<u64> = counted
                .iter()
                .filter_map(|c| self.volume(c.volume_id).ok())
                .map(|v| v.device())
                .collect();
            let (dest, _) = self
                .alloc
                .lock()
                .reserve_copies(min - have, &holders, &devices);
            done.short += (dest.len() < min - have) as u64;
            if !dest.is_empty() {
                adds.push(Add { id, copies, dest });
            }
        }
        if adds.is_empty() {
            return Ok(done);
        }
        self.copy_batch(&adds, epoch, &mut done)?;
        Ok(done)
    }

    /// Writes `adds`' new copies, syncs them and records them; gives back
    /// every slot not recorded, once, on every path (a slot given back
    /// twice could be punched under a sector stored in it meanwhile).
    fn copy_batch(&self, adds: &[Add], epoch: u64, done: &mut Done) -> Result<()> {
        let mut files: HashMap<u32, Arc<VolumeFile>> = HashMap::new();
        for (vol, _) in adds.iter().flat_map(|a| &a.dest) {
            if !files.contains_key(vol)
                && let Ok(f) = self.volume(*vol).and_then(|v| v.file())
            {
                files.insert(*vol, f);
            }
        }
        let marks: HashMap<u32, u64> = files.iter().map(|(v, f)| (*v, f.error_mark())).collect();
        let crew = Crew {
            alerts: &self.alerts,
            job: "repairing copies",
            volume: 0,
        };
        // per sector: which of its new copies were written (None: no good
        // copy to read)
        let results = crew.run(
            COPIERS,
            adds,
            |a| format!("copying sector #{}", a.id),
            |a, buf| {
                self.read_good_copy(&a.copies, None, buf)?;
                Some(
                    a.dest
                        .iter()
                        .map(|(vol, slot)| {
                            files.get(vol).is_some_and(|f| {
                                let ok = f.write_sector(*slot, buf).is_ok();
                                // written back while the next are made (a
                                // hint: a failure is the sync's to report)
                                if ok {
                                    let _ = f.start_writeback(*slot);
                                }
                                ok
                            })
                        })
                        .collect::<Vec<bool>>(),
                )
            },
        );
        let results = match results {
            Ok(results) => results,
            // a copier panicked: nothing recorded, every slot goes back
            Err(e) => {
                for (vol, slot) in adds.iter().flat_map(|a| &a.dest) {
                    self.discard_slot(*vol, *slot);
                }
                return Err(e);
            }
        };
        self.crash_point("repair:written");
        let synced: HashMap<u32, bool> = files
            .iter()
            .map(|(v, f)| {
                let ok = f.sync_since(marks[v]);
                if let Err(e) = &ok {
                    tracing::error!(volume = v, "syncing new copies in volume {v} failed: {e}");
                }
                (*v, ok.is_ok())
            })
            .collect();
        let mut records = Vec::new();
        for (a, written) in adds.iter().zip(&results) {
            let Some(written) = written else {
                done.unreadable += 1;
                for (vol, slot) in &a.dest {
                    self.discard_slot(*vol, *slot);
                }
                continue;
            };
            for ((vol, slot), ok) in a.dest.iter().zip(written) {
                if *ok && synced.get(vol) == Some(&true) {
                    records.push((a.id, *vol, *slot));
                } else {
                    self.discard_slot(*vol, *slot);
                }
            }
        }
        // and the files written are still their volumes' (none went
        // missing and came back meanwhile)
        let intact = || {
            self.truncations.none_since(epoch)
                && files
                    .iter()
                    .all(|(v, f)| self.volume(*v).is_ok_and(|vol| vol.holds(f)))
        };
        let added = match self.meta.add_copies(&records, now_secs(), &intact) {
            Ok(added) => added,
            // may yet be found committed at the next open: the slots stay
            // reserved, and the rows decide then
            Err(e) if e.commit_uncertain() => return Ok(()),
            Err(e) => {
                for (_, vol, slot) in &records {
                    self.discard_slot(*vol, *slot);
                }
                return Err(e);
            }
        };
        for ((_, vol, slot), ok) in records.iter().zip(added) {
            if ok {
                done.added += 1;
                if let Ok(v) = self.volume(*vol) {
                    super::bump(&v.stats.writes, 1);
                }
            } else {
                self.discard_slot(*vol, *slot);
            }
        }
        Ok(())
    }

    /// A copy that counts toward `min`: on a readable volume that is not
    /// being removed, and not found corrupt.
    pub(crate) fn counts_toward_min(&self, c: &SectorRow) -> bool {
        if c.volume_id == crate::meta::COLD_VOLUME {
            return self.has_cold();
        }
        !self.is_corrupt_copy(c)
            && self
                .volume(c.volume_id)
                .is_ok_and(|v| v.readable() && v.state() != VolumeState::Removing)
    }
}
