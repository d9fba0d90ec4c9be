//! Redeclare: a volume's index rebuilt from its data. Every allocated slot
//! (holes skipped) is read and hashed on all cores and set against the
//! database: sectors found and known are kept, found and unknown are
//! registered pinned, known but missing or corrupt are lost copies (a
//! repair pass copies them from elsewhere; a sector with no other copy is
//! reported lost with its contracts). A job with progress, cancel and
//! crash resume; also what an adopted volume and `recover` go through.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;

use super::jobs::JobControl;
use super::{Engine, Progress, Severity, Volume, now_secs};
use crate::error::{Error, Result};
use crate::merkle::Root;
use crate::meta::Registered;
use crate::plural::count;
use crate::volume::scan::scan_volume;

/// Found sectors registered per transaction.
const BATCH: usize = 256;

/// What a redeclare found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Redeclared {
    pub volume: u32,
    /// Allocated slots read.
    pub read: u64,
    /// Known sectors found where the database has them.
    pub kept: u64,
    /// Sectors found that the database did not know, now pinned.
    pub found: u64,
    /// Known copies missing or corrupt, dropped (their sectors have others).
    pub lost_copies: u64,
    /// Sectors whose only copy is missing or corrupt: root and contracts.
    pub lost: Vec<(String, Vec<String>)>,
    /// Slots whose data did not match the root the volume's index names
    /// (an adopted volume): left unregistered.
    pub mismatched: u64,
    /// Stopped by a cancel or a shutdown before the end.
    pub stopped: bool,
}

impl Redeclared {
    pub fn summary(&self) -> String {
        let contracts: std::collections::BTreeSet<&String> =
            self.lost.iter().flat_map(|(_, c)| c).collect();
        let mut s = format!(
            "{} read: {} kept, {} found and pinned, {} lost (repaired from other copies), {} \
             lost with no other copy",
            count(self.read, "slot"),
            self.kept,
            self.found,
            count(self.lost_copies, "copy"),
            count(self.lost.len() as u64, "sector"),
        );
        if !contracts.is_empty() {
            let names: Vec<&str> = contracts.iter().map(|c| c.as_str()).collect();
            s.push_str(&format!(" (contracts: {})", names.join(", ")));
        }
        if self.mismatched > 0 {
            s.push_str(&format!(
                ", {} not matching the volume's index",
                count(self.mismatched, "slot")
            ));
        }
        if self.read == 0 && self.kept == 0 && self.found == 0 && self.lost_copies == 0 {
            s.push_str(" (no difference)");
        } else if self.found == 0 && self.lost_copies == 0 && self.lost.is_empty() {
            s.push_str("; no difference");
        }
        s
    }
}

impl Engine {
    /// A redeclare done now, on this thread, for `sectorfs recover`: a
    /// sector whose only copy is missing is dropped with its references
    /// (and reported with its contracts).
    pub fn recover_volume(&self, id: u32) -> Result<Redeclared> {
        let v = self.volume(id)?;
        v.file()?;
        self.reconcile(&v, None, None, true, |_, _| {})
    }

    /// `echo 1 > /volumes/<id>/redeclare`: starts the job.
    pub fn redeclare_volume(self: &Arc<Self>, id: u32) -> Result<()> {
        self.start_redeclare(id, false)
    }

    /// Restarts redeclares a previous process left unfinished (from the
    /// start: a redeclare changes nothing that a second pass would undo).
    pub(crate) fn resume_redeclares(self: &Arc<Self>) -> Result<()> {
        for id in self.meta.redeclare_jobs()? {
            tracing::info!(volume = id, "resuming an interrupted redeclare");
            if let Err(e) = self.start_redeclare(id, true) {
                self.alerts.raise(
                    &format!("job-{id}"),
                    Severity::Error,
                    format!("cannot resume the redeclare of volume {id}: {e}"),
                    serde_json::json!({"volume": id}),
                );
                self.meta.delete_job(id)?;
            }
        }
        Ok(())
    }

    fn start_redeclare(self: &Arc<Self>, id: u32, resuming: bool) -> Result<()> {
        let v = self.volume(id)?;
        self.check_idle(id)?;
        v.file()?;
        self.start_reading_job(
            &v,
            "redeclare",
            || match resuming {
                true => Ok(()),
                false => self.meta.insert_redeclare_job(id, now_secs()),
            },
            || self.meta.delete_job(id),
            |engine, v, control| engine.run_redeclare(v, control),
        )
    }

    fn run_redeclare(&self, v: &Arc<Volume>, control: &JobControl) {
        let id = v.id;
        let key = format!("job-{id}");
        let started = Instant::now();
        let result = self.reconcile(v, None, Some(control), false, |done, total| {
            self.alerts.raise_with(
                &key,
                Severity::Info,
                format!("redeclaring volume {id}: {done}/{total} slots read"),
                serde_json::json!({"volume": id}),
                Some(Progress::new(done, total, started)),
            );
        });
        let paused = control.pause.load(Ordering::Relaxed);
        let (severity, message, data) = match &result {
            Ok(r) if r.stopped && paused => (
                Severity::Info,
                format!("redeclaring volume {id}: paused at shutdown, resumes at next start"),
                serde_json::json!({"volume": id}),
            ),
            Ok(r) if r.stopped => (
                Severity::Info,
                format!("redeclare of volume {id}: cancelled; {}", r.summary()),
                super::alerts::data_of(r),
            ),
            Ok(r) => (
                if r.lost.is_empty() {
                    Severity::Info
                } else {
                    Severity::Error
                },
                format!("redeclare of volume {id}: done: {}", r.summary()),
                super::alerts::data_of(r),
            ),
            Err(e) => (
                Severity::Error,
                format!("redeclare of volume {id}: failed: {e}"),
                serde_json::json!({"volume": id}),
            ),
        };
        if !(paused && matches!(&result, Ok(r) if r.stopped))
            && let Err(e) = self.meta.delete_job(id)
        {
            tracing::error!("cannot forget the finished redeclare of volume {id}: {e}");
        }
        self.alerts.raise(&key, severity, message, data);
        let mut running = self.jobs.running.lock();
        self.back_in_business(v);
        running.remove(&id);
        drop(running);
        self.space_changed();
    }

    /// Reads and hashes every allocated slot of `v` and sets the database
    /// right, as the module says. `expected` (an adopted volume's index):
    /// only slots it names are registered, and only with the root it names.
    pub(super) fn reconcile(
        &self,
        v: &Volume,
        expected: Option<&HashMap<u64, Root>>,
        control: Option<&JobControl>,
        forget_lost: bool,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Redeclared> {
        let id = v.id;
        let mut out = Redeclared {
            volume: id,
            ..Default::default()
        };
        let (slots, _) = self.alloc.lock().usage(id).unwrap_or((0, 0));
        let mut known: HashMap<u64, (i64, Root)> = HashMap::new();
        self.each_copy_on(id, |s| {
            known.insert(s.slot, (s.id, s.root));
        })?;
        let file = std::fs::File::open(&v.path).map_err(|e| {
            Error::io(
                format!("cannot open {} to redeclare it", v.path.display()),
                e,
            )
        })?;
        let total = crate::volume::scan::allocated_slots(&file, slots)
            .map(|r| r.iter().map(|r| r.end - r.start).sum::<u64>())
            .unwrap_or(slots);
        let mut lost: Vec<(i64, u64, Root)> = Vec::new();
        let mut found: Vec<(u64, Root)> = Vec::new();
        let stop = || {
            control.is_some_and(|c| {
                c.cancel.load(Ordering::Relaxed) || c.pause.load(Ordering::Relaxed)
            })
        };
        let scanned = scan_volume(&file, slots, |slot, root| {
            out.read += 1;
            if out.read.is_multiple_of(64) {
                progress(out.read, total);
                if stop() {
                    return Err(Error::Busy("stopped".into()));
                }
            }
            if let Some((sector, want)) = known.remove(&slot) {
                match root {
                    Ok(r) if r == want => out.kept += 1,
                    _ => lost.push((sector, slot, want)),
                }
                return Ok(());
            }
            let Ok(root) = root else { return Ok(()) };
            if let Some(index) = expected {
                match index.get(&slot) {
                    Some(r) if *r == root => {}
                    Some(_) => {
                        out.mismatched += 1;
                        return Ok(());
                    }
                    None => return Ok(()),
                }
            }
            // a slot in use in memory (being written, or pending its
            // punch) is not what it seems: left alone; a free one is held
            // now, so no new sector takes it before it is registered
            let mut alloc = self.alloc.lock();
            if !alloc.is_used(id, slot) {
                alloc.hold(id, slot);
                found.push((slot, root));
            }
            Ok(())
        });
        let stopped = matches!(&scanned, Err(Error::Busy(m)) if m == "stopped");
        if let Err(e) = scanned
            && !stopped
        {
            self.release_all(id, &found);
            return Err(e);
        }
        out.stopped = stopped;
        self.register(id, &found, &mut out)?;
        if !stopped {
            // known slots the scan never saw are holes: their data is gone
            lost.extend(
                known
                    .into_iter()
                    .map(|(slot, (sector, root))| (sector, slot, root)),
            );
        }
        self.note_lost(v, &lost, forget_lost, &mut out)?;
        progress(out.read, total);
        Ok(out)
    }

    fn release_all(&self, id: u32, found: &[(u64, Root)]) {
        let mut alloc = self.alloc.lock();
        for (slot, _) in found {
            alloc.release(id, *slot);
        }
    }

    /// Registers found sectors pinned; slots not recorded go back.
    fn register(&self, id: u32, found: &[(u64, Root)], out: &mut Redeclared) -> Result<()> {
        for (n, batch) in found.chunks(BATCH).enumerate() {
            let done = match self.meta.register_found(id, batch, now_secs()) {
                Ok(d) => d,
                Err(e) => {
                    self.release_all(id, &found[n * BATCH..]);
                    return Err(e);
                }
            };
            let mut alloc = self.alloc.lock();
            for ((slot, root), r) in batch.iter().zip(done) {
                match r {
                    Registered::Skipped => alloc.release(id, *slot),
                    _ => {
                        out.found += 1;
                        tracing::info!(volume = id, slot, "found sector {root}, now pinned");
                    }
                }
            }
        }
        Ok(())
    }

    /// Known copies missing or corrupt: dropped where the sector has
    /// another (and a repair asked for), else reported lost.
    fn note_lost(
        &self,
        v: &Volume,
        lost: &[(i64, u64, Root)],
        forget_lost: bool,
        out: &mut Redeclared,
    ) -> Result<()> {
        for &(sector, slot, root) in lost {
            // freed or moved since the scan began: nothing lost
            if !self.meta.copy_exists(sector, v.id, slot)? {
                continue;
            }
            if self.meta.drop_copy(sector, v.id, slot)? {
                self.punch_and_release(&[(v.id, slot)]);
                out.lost_copies += 1;
                continue;
            }
            let contracts = if forget_lost {
                // recover: freed since the backup, most likely; the store
                // keeps no reference to what it cannot serve
                match self.meta.drop_lost_copy(sector, v.id, slot)? {
                    crate::meta::LostCopy::Sector(freed, contracts) => {
                        let slots: Vec<_> = freed.iter().map(|f| (f.volume_id, f.slot)).collect();
                        self.punch_and_release(&slots);
                        contracts
                    }
                    _ => continue,
                }
            } else {
                self.corrupt.lock().insert((sector, v.id));
                self.meta.contracts_of(sector)?
            };
            tracing::error!(
                volume = v.id,
                slot,
                "sector {root} is missing from its only copy; contracts: {contracts:?}"
            );
            out.lost.push((root.to_string(), contracts));
        }
        if out.lost_copies > 0 {
            self.request_repair(&format!(
                "a redeclare of volume {} found {} missing or corrupt",
                v.id,
                count(out.lost_copies, "copy")
            ));
        }
        Ok(())
    }
}
