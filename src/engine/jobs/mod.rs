//! Volume jobs: shrinking and removing, in the background, one per volume.
//! This is their registry: starting, cancelling, resuming and pausing them
//! at shutdown. A job is recorded in the database when accepted, and
//! resumed at the next start if the daemon dies. What a job does on its
//! thread is in `run.rs`, moving sectors in `mover.rs`, and what is
//! particular to each kind in `shrink.rs` and `remove.rs`.

mod mover;
mod remove;
mod run;
mod shrink;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use parking_lot::Mutex;

use super::{Engine, Severity, Volume, VolumeState, now_secs};
use crate::error::{Error, Result};
use crate::meta::JobKind;
use crate::plural::count;

#[derive(Default)]
pub struct Jobs {
    pub(super) running: Mutex<HashMap<u32, Arc<JobControl>>>,
    /// Every background thread (jobs, checks, health, scrub), joined at
    /// shutdown.
    pub(super) threads: Mutex<Vec<JoinHandle<()>>>,
    /// Sectors dropped by forced removals since start.
    pub lost: AtomicU64,
    /// Held by a resize or removal while it is decided (a grow: until its
    /// file and row say the new size), so no other can start meanwhile and
    /// cut the file under it.
    sizing: Mutex<()>,
}

pub(super) struct JobControl {
    /// The operator cancelled: stop, forget the job.
    pub(super) cancel: AtomicBool,
    /// The daemon is stopping: stop, resume at next start.
    pub(super) pause: AtomicBool,
    /// The volume's state while the job runs.
    pub(super) state: VolumeState,
}

impl JobControl {
    pub(super) fn new(state: VolumeState) -> Arc<JobControl> {
        Arc::new(JobControl {
            cancel: AtomicBool::new(false),
            pause: AtomicBool::new(false),
            state,
        })
    }
}

/// How a job ended.
pub(super) enum Ended {
    Done,
    Cancelled,
    Paused,
}

impl Engine {
    /// Cancels the job running on a volume; every sector stays in a valid place.
    pub fn cancel_job(&self, id: u32) -> Result<()> {
        self.volume(id)?;
        match self.jobs.running.lock().get(&id) {
            Some(c) => {
                c.cancel.store(true, Ordering::Relaxed);
                Ok(())
            }
            None => Err(Error::NotFound(format!("no job is running on volume {id}"))),
        }
    }

    /// Sectors dropped as lost by forced removals since start.
    pub fn lost_sectors(&self) -> u64 {
        self.jobs.lost.load(Ordering::Relaxed)
    }

    /// Volumes with a job (resize, remove or check) running.
    pub fn jobs_running(&self) -> usize {
        self.jobs.running.lock().len()
    }

    /// Whether a job runs on the volume.
    pub fn job_running(&self, id: u32) -> bool {
        self.jobs.running.lock().contains_key(&id)
    }

    /// Restarts the jobs a previous process left unfinished.
    pub fn resume_jobs(self: &Arc<Self>) -> Result<()> {
        self.resume_redeclares()?;
        for job in self.meta.jobs()? {
            tracing::info!(volume = job.volume_id, "resuming an interrupted job");
            if let Err(e) = self.start_job(job.volume_id, job.kind, true) {
                self.alerts.raise(
                    &format!("job-{}", job.volume_id),
                    Severity::Error,
                    format!("cannot resume the job on volume {}: {e}", job.volume_id),
                    serde_json::json!({"volume": job.volume_id}),
                );
                self.meta.delete_job(job.volume_id)?;
            }
        }
        Ok(())
    }

    /// Pauses every job (they resume at the next start) and waits for them.
    pub fn shutdown(&self) {
        self.health.stop();
        self.repair_wake();
        self.aggregates_wake();
        for c in self.jobs.running.lock().values() {
            c.pause.store(true, Ordering::Relaxed);
        }
        let threads: Vec<_> = self.jobs.threads.lock().drain(..).collect();
        for t in threads {
            let name = t
                .thread()
                .name()
                .unwrap_or("a background thread")
                .to_string();
            if t.join().is_err() {
                tracing::error!("{name} had panicked; it was stopped at shutdown");
            }
        }
    }

    pub(super) fn check_idle(&self, id: u32) -> Result<()> {
        if self.volume(id)?.state() == VolumeState::Detached {
            return Err(Error::Invalid(format!(
                "volume {id} is detached; attach it again first (echo <path> > /volumes/attach)"
            )));
        }
        if self.job_running(id) {
            return Err(Error::Busy(format!(
                "volume {id} already has a job running; cancel it or wait for it to finish"
            )));
        }
        Ok(())
    }

    fn start_job(self: &Arc<Self>, id: u32, kind: JobKind, resuming: bool) -> Result<()> {
        let v = self.volume(id)?;
        self.check_idle(id)?;
        // counted, and the file tried, before the jobs' and the allocator's
        // locks are taken: a count can scan millions of rows, an open can
        // hang on a failing disk, and every write and status read waits on
        // those locks (resizes and removals are decided one at a time)
        let to_move = match kind {
            JobKind::Shrink(target) => self.meta.count_sectors_from(id, target)?,
            JobKind::Remove { .. } => self.meta.used_slots(id)?,
        };
        // a forced removal of a volume whose file cannot be opened moves
        // nothing: its sectors are lost. Never on a resume, though: a disk
        // not mounted yet at a restart is no sign its sectors are gone.
        let source = match kind {
            JobKind::Remove { force: true } => mover::job_source(self, &v).err(),
            _ => None,
        };
        if let Some(why) = &source {
            tracing::warn!(volume = id, "{why}");
        }
        let all_lost = source.is_some();
        if all_lost && resuming {
            return Err(Error::Unavailable(format!(
                "the file of volume {id} ({}) cannot be opened, so its forced removal was not \
                 resumed (it would drop every sector as lost); write force to its remove file \
                 again to do that",
                v.path.display()
            )));
        }
        let mut running = self.jobs.running.lock();
        if running.contains_key(&id) {
            return Err(Error::Busy(format!(
                "volume {id} already has a job running; cancel it or wait for it to finish"
            )));
        }
        let (room, state) = {
            let alloc = self.alloc.lock();
            match kind {
                JobKind::Shrink(target) => (
                    alloc.free_below(id, target) + alloc.placeable_free(id),
                    VolumeState::Resizing,
                ),
                JobKind::Remove { .. } => (alloc.placeable_free(id), VolumeState::Removing),
            }
        };
        if to_move > room && !all_lost {
            return Err(Error::NoSpace(format!(
                "volume {id} has {} to move but only {} can take them; nothing was moved",
                count(to_move, "sector"),
                count(room, "free slot")
            )));
        }
        if !resuming {
            self.meta.insert_job(id, kind, now_secs())?;
        }
        v.set_state(state);
        {
            let mut alloc = self.alloc.lock();
            if let JobKind::Shrink(target) = kind {
                alloc.set_limit(id, Some(target));
            }
            alloc.set_writable(id, v.writable());
        }
        let control = JobControl::new(state);
        running.insert(id, control.clone());
        drop(running);
        self.space_changed();
        let engine = self.clone();
        let job_volume = v.clone();
        let spawned = self.spawn_job(format!("job-volume-{id}"), move || {
            engine.run_job(&job_volume, kind, &control)
        });
        if let Err(e) = spawned {
            // no job after all: the volume as it was, no row to resume
            {
                let mut running = self.jobs.running.lock();
                self.back_in_business(&v);
                running.remove(&id);
            }
            if !resuming {
                self.meta.delete_job(id)?;
            }
            return Err(Error::io("cannot start a job thread", e));
        }
        Ok(())
    }

    /// Starts a job that reads volume `v` in place (a check, a redeclare):
    /// refused while another job runs on it; `record` runs once it is
    /// known to be free (under the jobs' lock), then the volume is
    /// `checking` and `run` goes on a thread of its own. If that thread
    /// cannot start, the volume is as it was and `forget` undoes `record`.
    pub(super) fn start_reading_job(
        self: &Arc<Self>,
        v: &Arc<Volume>,
        what: &str,
        record: impl FnOnce() -> Result<()>,
        forget: impl FnOnce() -> Result<()>,
        run: impl FnOnce(&Engine, &Arc<Volume>, &JobControl) + Send + 'static,
    ) -> Result<()> {
        let id = v.id;
        let control = JobControl::new(VolumeState::Checking);
        {
            let mut running = self.jobs.running.lock();
            if running.contains_key(&id) {
                return Err(Error::Busy(format!(
                    "volume {id} already has a job running; cancel it or wait for it to finish"
                )));
            }
            record()?;
            running.insert(id, control.clone());
        }
        v.set_state_if_open(VolumeState::Checking);
        let engine = self.clone();
        let job_volume = v.clone();
        let spawned = self.spawn_job(format!("{what}-volume-{id}"), move || {
            run(&engine, &job_volume, &control)
        });
        if let Err(e) = spawned {
            let mut running = self.jobs.running.lock();
            self.back_in_business(v);
            running.remove(&id);
            drop(running);
            forget()?;
            return Err(Error::io(format!("cannot start a {what} thread"), e));
        }
        Ok(())
    }

    /// Runs `job` on a thread of its own, joined at shutdown.
    pub(super) fn spawn_job(
        &self,
        name: String,
        job: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<()> {
        let thread = std::thread::Builder::new().name(name).spawn(job)?;
        self.jobs.threads.lock().push(thread);
        Ok(())
    }

    /// A volume whose job ended (or never started) takes new sectors again
    /// anywhere, if it can. Called with the jobs' lock held, so a reopen
    /// of the volume never sees the job's state after this.
    pub(super) fn back_in_business(&self, v: &Volume) {
        v.set_state_if_open(VolumeState::Ready);
        let mut alloc = self.alloc.lock();
        alloc.set_limit(v.id, None);
        alloc.set_writable(v.id, v.writable());
    }
}
