//! Integrity: verifying stored sectors against their roots, online (a job
//! per volume, with progress) and offline (plus the metadata's own
//! consistency).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;

use super::jobs::JobControl;
use super::workers::Crew;
use super::{Engine, Progress, SectorRow, Severity, Volume, VolumeState, now_secs};
use crate::error::{Error, Result};
use crate::merkle::{self, Root, SECTOR_SIZE};

/// Sectors verified per batch (each batch is hashed on two threads).
const BATCH: usize = 16;
const HASHERS: usize = 2;

/// What a check of one volume found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    pub volume: u32,
    pub checked: u64,
    pub good: u64,
    pub corrupt: Vec<Root>,
    pub unreadable: Vec<Root>,
    /// The volume's file could not be opened at all.
    pub unavailable: Option<String>,
    /// Aggregates that differed from a recount (then rebuilt).
    pub aggregates: Vec<String>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty()
            && self.unreadable.is_empty()
            && self.unavailable.is_none()
            && self.aggregates.is_empty()
    }

    pub fn summary(&self) -> String {
        if let Some(why) = &self.unavailable {
            return format!("volume {} is unavailable: {why}", self.volume);
        }
        let mut s = format!(
            "{} checked: {} good, {} corrupt, {} unreadable",
            crate::plural::count(self.checked, "sector"),
            self.good,
            self.corrupt.len(),
            self.unreadable.len()
        );
        for (what, roots) in [("corrupt", &self.corrupt), ("unreadable", &self.unreadable)] {
            if !roots.is_empty() {
                let list: Vec<String> = roots.iter().take(20).map(|r| r.to_string()).collect();
                let more = if roots.len() > 20 { ", …" } else { "" };
                s.push_str(&format!("; {what}: {}{more}", list.join(", ")));
            }
        }
        if !self.aggregates.is_empty() {
            s.push_str(&format!(
                "; {} differed from a recount and were rebuilt: {}",
                crate::plural::count(self.aggregates.len() as u64, "aggregate"),
                self.aggregates.join("; ")
            ));
        }
        s
    }
}

/// One sector's verdict.
enum Verdict {
    Good,
    Corrupt,
    Unreadable(String),
}

impl Engine {
    /// Starts a background check of a volume (`echo 1 > check`). An
    /// unavailable volume is first re-opened: its file may be back.
    pub fn check_volume(self: &Arc<Self>, id: u32) -> Result<()> {
        let v = self.volume(id)?;
        // a busy volume is refused before anything about it changes
        self.check_idle(id)?;
        // a file removed or replaced under an open volume would go on
        // "working" through the old fd: look before checking
        self.check_file_still_there(&v);
        if v.state() == VolumeState::Unavailable {
            self.reopen_volume(id)?;
        }
        self.start_reading_job(
            &v,
            "check",
            || Ok(()),
            || Ok(()),
            |engine, v, control| engine.run_check(v, control),
        )
    }

    fn run_check(&self, v: &Arc<Volume>, control: &JobControl) {
        let id = v.id;
        let key = format!("job-{id}");
        let started = Instant::now();
        let job = format!("checking volume {id}");
        let crew = Crew {
            alerts: &self.alerts,
            job: &job,
            volume: id,
        };
        let result = crew.guard("the check itself", || {
            let mut report = self.verify_volume(v, Some(control), |done, total| {
                let progress = Progress::new(done, total, started);
                self.alerts.raise_with(
                    &key,
                    Severity::Info,
                    format!("{job}: {done}/{total} sectors checked"),
                    serde_json::json!({"volume": id}),
                    Some(progress),
                );
            })?;
            // what the check found corrupt is counted by now
            report.aggregates = self.recount_aggregates()?;
            Ok(report)
        });
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let (severity, message, data) = match result {
            Ok(r) => {
                let mb = r.checked as f64 * SECTOR_SIZE as f64 / 1e6 / secs;
                let severity = if r.is_clean() {
                    Severity::Info
                } else {
                    Severity::Error
                };
                let message = format!(
                    "check of volume {id}: done in {secs:.1}s ({mb:.0} MB/s): {}",
                    r.summary()
                );
                (severity, message, super::alerts::data_of(&r))
            }
            Err(e) => (
                Severity::Error,
                format!("check of volume {id}: failed: {e}"),
                serde_json::json!({"volume": id}),
            ),
        };
        self.alerts.raise(&key, severity, message, data);
        let mut running = self.jobs.running.lock();
        if v.state() == VolumeState::Checking {
            v.set_state_if_open(VolumeState::Ready);
        }
        running.remove(&id);
    }

    /// Verifies every sector of a volume now, on this thread (plus helpers),
    /// calling `progress(done, total)` after each batch.
    fn verify_volume(
        &self,
        v: &Volume,
        control: Option<&JobControl>,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<CheckReport> {
        let mut report = CheckReport {
            volume: v.id,
            ..CheckReport::default()
        };
        let total = self.meta.used_slots(v.id)?;
        let mut cursor = 0;
        loop {
            if control.is_some_and(|c| {
                c.cancel.load(Ordering::Relaxed) || c.pause.load(Ordering::Relaxed)
            }) {
                return Err(Error::Busy(format!(
                    "the check of volume {} was stopped",
                    v.id
                )));
            }
            let batch = self.meta.sectors_in_volume(v.id, cursor, BATCH)?;
            let Some(last) = batch.last() else {
                break;
            };
            cursor = last.slot + 1;
            let verdicts = self.verify_batch(v, &batch)?;
            let mut good = Vec::new();
            for (s, verdict) in batch.iter().zip(verdicts) {
                // moved or freed since it was listed: the read was of a
                // slot it no longer owns, and says nothing about it
                if !matches!(verdict, Verdict::Good) && !self.still_at(s)? {
                    continue;
                }
                report.checked += 1;
                match verdict {
                    Verdict::Good => {
                        report.good += 1;
                        good.push((s.id, s.volume_id));
                    }
                    Verdict::Corrupt => {
                        self.note_corrupt(v, s);
                        report.corrupt.push(s.root);
                    }
                    Verdict::Unreadable(why) => {
                        self.note_unreadable(v, s, &why);
                        report.unreadable.push(s.root);
                    }
                }
            }
            self.meta.mark_checked(&good, now_secs())?;
            progress(report.checked, total.max(report.checked));
        }
        Ok(report)
    }

    /// Each sector's verdict, read and hashed on the crew's threads.
    fn verify_batch(&self, v: &Volume, batch: &[SectorRow]) -> Result<Vec<Verdict>> {
        let file = match v.file() {
            Ok(f) => f,
            Err(e) => {
                return Ok(batch
                    .iter()
                    .map(|_| Verdict::Unreadable(e.to_string()))
                    .collect());
            }
        };
        let job = format!("checking volume {}", v.id);
        let crew = Crew {
            alerts: &self.alerts,
            job: &job,
            volume: v.id,
        };
        crew.run(
            HASHERS,
            batch,
            |s| format!("sector {} at slot {}", s.root, s.slot),
            |s, buf| match file.read(s.slot, 0, buf) {
                Err(e) => Verdict::Unreadable(e.to_string()),
                Ok(()) if merkle::sector_root(buf) == s.root => Verdict::Good,
                Ok(()) => Verdict::Corrupt,
            },
        )
    }
}

/// What the offline check found.
#[derive(Debug, Default, Serialize)]
pub struct OfflineReport {
    /// Contradictions in the metadata, and volume files missing or short.
    pub problems: Vec<String>,
    pub volumes: Vec<CheckReport>,
}

impl OfflineReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.volumes.iter().all(CheckReport::is_clean)
    }
}

impl Engine {
    /// Checks the whole store (or one volume) while no daemon runs: the
    /// metadata's consistency, every volume file, and every sector.
    pub fn check_offline(&self, only: Option<u32>) -> Result<OfflineReport> {
        self.check_offline_with(only, |_, _| {})
    }

    /// As [`check_offline`](Self::check_offline), calling `progress(done,
    /// total)` with the sectors verified so far of all volumes checked.
    pub fn check_offline_with(
        &self,
        only: Option<u32>,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<OfflineReport> {
        let mut report = OfflineReport {
            problems: self.meta.consistency_problems()?,
            ..OfflineReport::default()
        };
        report.problems.extend(
            self.recount_aggregates()?
                .into_iter()
                .map(|d| format!("{d} (rebuilt from the tables)")),
        );
        let ids = match only {
            Some(id) => vec![self.volume(id)?.id],
            None => self.volume_ids(),
        };
        let mut total = 0;
        for id in &ids {
            total += self.meta.used_slots(*id)?;
        }
        let mut before = 0;
        progress(0, total);
        let mut per_volume: HashMap<u32, CheckReport> = HashMap::new();
        for id in ids {
            let v = self.volume(id)?;
            let row = self.volume_info(id)?;
            let r = match v.file() {
                Err(_) => {
                    let why = match std::fs::metadata(&row.path) {
                        Err(e) => format!("its file {} cannot be opened: {e}", row.path.display()),
                        Ok(m) => format!(
                            "its file {} is {}, expected at least {}",
                            row.path.display(),
                            crate::plural::count(m.len(), "byte"),
                            row.slots * SECTOR_SIZE as u64
                        ),
                    };
                    report.problems.push(format!("volume {id}: {why}"));
                    CheckReport {
                        volume: id,
                        unavailable: Some(why),
                        ..CheckReport::default()
                    }
                }
                Ok(_) => self.verify_volume(&v, None, |done, _| {
                    progress(before + done, total.max(before + done))
                })?,
            };
            before += r.checked;
            per_volume.insert(id, r);
        }
        let mut volumes: Vec<_> = per_volume.into_values().collect();
        volumes.sort_by_key(|r| r.volume);
        report.volumes = volumes;
        Ok(report)
    }
}
