//! A job on its thread: passes over the volume, a batch at a time, until
//! only sectors that cannot move are left; then the kind's last step, and
//! the outcome told in an alert.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Ended, JobControl};
use crate::engine::workers::Crew;
use crate::engine::{Engine, Progress, SectorRow, Severity, Volume};
use crate::error::{Error, Result};
use crate::merkle::SECTOR_SIZE;
use crate::meta::JobKind;
use crate::plural::count;

/// Sectors moved per transaction.
const BATCH: usize = 32;

impl Engine {
    pub(super) fn run_job(&self, v: &Arc<Volume>, kind: JobKind, control: &JobControl) {
        let id = v.id;
        let verb = match kind {
            JobKind::Shrink(t) => format!("resizing volume {id} to {}", count(t, "slot")),
            JobKind::Remove { force: true } => format!("removing volume {id} (forced)"),
            JobKind::Remove { force: false } => format!("removing volume {id}"),
        };
        let started = Instant::now();
        let mut job = JobRun {
            engine: self,
            volume: v,
            kind,
            control,
            verb: verb.clone(),
            started,
            total: 0,
            moved: 0,
            unreadable: Vec::new(),
            unreadable_ids: HashSet::new(),
            lost: Vec::new(),
        };
        tracing::info!("{verb}: started");
        let crew = Crew {
            alerts: &self.alerts,
            job: &verb,
            volume: id,
        };
        let result = crew.guard("the job itself", || job.run());
        let key = format!("job-{id}");
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let rate = job.moved as f64 / secs;
        let summary = format!(
            "{} moved in {:.1}s ({rate:.0} sectors/s, {:.0} MB/s)",
            count(job.moved, "sector"),
            secs,
            rate * SECTOR_SIZE as f64 / 1e6
        );
        let (severity, message) = match &result {
            Ok(Ended::Done) => (Severity::Info, format!("{verb}: done, {summary}")),
            Ok(Ended::Cancelled) => (Severity::Info, format!("{verb}: cancelled, {summary}")),
            Ok(Ended::Paused) => (
                Severity::Info,
                format!("{verb}: paused at shutdown, resumes at next start; {summary}"),
            ),
            Err(e) => (Severity::Error, format!("{verb}: failed: {e}; {summary}")),
        };
        self.crash_point("job:ended");
        if !matches!(result, Ok(Ended::Paused))
            && let Err(e) = self.meta.delete_job(id)
        {
            tracing::error!("cannot forget the finished job on volume {id}: {e}");
        }
        self.alerts.raise(
            &key,
            severity,
            message,
            serde_json::json!({"volume": id, "moved": job.moved, "seconds": secs}),
        );
        {
            let mut running = self.jobs.running.lock();
            if !matches!(result, Ok(Ended::Done) if matches!(kind, JobKind::Remove { .. })) {
                // the volume stays: open for business again
                self.back_in_business(v);
            }
            running.remove(&id);
        }
        self.space_changed();
    }
}

pub(super) struct JobRun<'a> {
    pub(super) engine: &'a Engine,
    pub(super) volume: &'a Arc<Volume>,
    pub(super) kind: JobKind,
    pub(super) control: &'a JobControl,
    pub(super) verb: String,
    pub(super) started: Instant,
    pub(super) total: u64,
    pub(super) moved: u64,
    /// Sectors that could not be read (removal without force keeps them).
    pub(super) unreadable: Vec<SectorRow>,
    pub(super) unreadable_ids: HashSet<i64>,
    pub(super) lost: Vec<SectorRow>,
}

impl JobRun<'_> {
    fn first_slot(&self) -> u64 {
        match self.kind {
            JobKind::Shrink(target) => target,
            JobKind::Remove { .. } => 0,
        }
    }

    fn run(&mut self) -> Result<Ended> {
        let e = self.engine;
        let id = self.volume.id;
        let first = self.first_slot();
        self.total = e.meta.count_sectors_from(id, first)?;
        loop {
            // passes until only sectors that cannot move are left: a write
            // reserved before the job began may land behind the cursor
            let mut cursor = first;
            loop {
                if self.control.cancel.load(Ordering::Relaxed) {
                    return Ok(Ended::Cancelled);
                }
                if self.control.pause.load(Ordering::Relaxed) {
                    return Ok(Ended::Paused);
                }
                let batch = e.meta.sectors_in_volume(id, cursor, BATCH)?;
                let Some(last) = batch.last() else {
                    break;
                };
                cursor = last.slot + 1;
                let todo: Vec<SectorRow> = batch
                    .into_iter()
                    .filter(|s| !self.unreadable_ids.contains(&s.id))
                    .collect();
                self.move_batch(&todo)?;
                self.report();
            }
            let left = e.meta.count_sectors_from(id, first)?;
            if left > self.unreadable.len() as u64 {
                self.total = self.total.max(self.moved + left);
                continue;
            }
            if !self.unreadable.is_empty() {
                let roots: Vec<String> = self
                    .unreadable
                    .iter()
                    .take(20)
                    .map(|s| s.root.to_string())
                    .collect();
                let n = self.unreadable.len() as u64;
                let (were, them) = if n == 1 {
                    ("was", "it")
                } else {
                    ("were", "them")
                };
                return Err(Error::Io {
                    context: format!(
                        "{} could not be read and {were} left in place, so volume {id} was kept \
                         (write force to drop {them} as lost): {}",
                        count(n, "sector"),
                        roots.join(", ")
                    ),
                    source: std::io::Error::from_raw_os_error(libc::EIO),
                });
            }
            if self.finish()? {
                return Ok(Ended::Done);
            }
            // a write reserved before the job began landed just now: move it
        }
    }

    /// A sector that cannot be moved: kept in place (the job then fails),
    /// or with `force`, dropped as lost.
    pub(super) fn cannot_read(&mut self, s: &SectorRow, why: &str) -> Result<()> {
        tracing::error!(
            volume = self.volume.id,
            slot = s.slot,
            "sector {} cannot be moved: {why}",
            s.root
        );
        if !matches!(self.kind, JobKind::Remove { force: true }) {
            if self.unreadable_ids.insert(s.id) {
                self.unreadable.push(*s);
            }
            return Ok(());
        }
        self.drop_lost(s, why)
    }

    fn report(&self) {
        let done = self.moved + self.lost.len() as u64;
        let progress = Progress::new(done, self.total.max(done), self.started);
        self.engine.alerts.raise_with(
            &format!("job-{}", self.volume.id),
            Severity::Info,
            format!("{}: {}/{} sectors moved", self.verb, done, progress.total),
            serde_json::json!({"volume": self.volume.id}),
            Some(progress),
        );
    }

    /// False when a sector landed in the part being cut off meanwhile.
    fn finish(&mut self) -> Result<bool> {
        match self.kind {
            JobKind::Shrink(target) => self.finish_shrink(target),
            JobKind::Remove { .. } => self.finish_remove(),
        }
    }
}
