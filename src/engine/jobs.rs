//! Volume jobs: shrinking and removing, in the background, one per volume.
//!
//! Each move copies a sector to its new slot, syncs, and then one short
//! transaction per batch re-points the sectors and frees their old slots;
//! no transaction is held across disk I/O. Readers look a sector up again
//! after reading, so they never return bytes from a slot it has left. A job
//! is recorded in the database when accepted, and resumed at the next start
//! if the daemon dies.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::Mutex;

use super::volumes::bump;
use super::{Engine, Progress, SectorRow, Severity, Volume, VolumeState, now_secs};
use crate::error::{Error, Result};
use crate::merkle::{self, SECTOR_SIZE};
use crate::meta::{JobKind, Move};
use crate::volume::VolumeFile;

/// Sectors moved per transaction.
const BATCH: usize = 32;
/// Copies in flight at once within a batch.
const COPIERS: usize = 4;

#[derive(Default)]
pub struct Jobs {
    pub(super) running: Mutex<HashMap<u32, Arc<JobControl>>>,
    pub(super) threads: Mutex<Vec<JoinHandle<()>>>,
    /// Sectors dropped by forced removals since start.
    pub lost: AtomicU64,
    /// Set at shutdown: background loops (health, scrub) end.
    pub(super) stopping: AtomicBool,
    /// Held by a resize or removal while it is decided (a grow: until its
    /// file and row say the new size), so no other can start meanwhile and
    /// cut the file under it.
    sizing: Mutex<()>,
    /// Held while an unavailable volume is reopened: one at a time.
    pub(super) reopening: Mutex<()>,
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
enum Ended {
    Done,
    Cancelled,
    Paused,
}

impl Engine {
    /// Resizes a volume. Growing is immediate (sparse, no per-slot work);
    /// shrinking starts a background job that moves every sector at or above
    /// the new size, refused at once with `ENOSPC` if they cannot all fit.
    pub fn resize_volume(self: &Arc<Self>, id: u32, slots: u64) -> Result<()> {
        let v = self.volume(id)?;
        if slots == 0 || slots > super::MAX_SLOTS {
            return Err(Error::Invalid(format!(
                "a volume needs between 1 and {} slots, not {slots}",
                super::MAX_SLOTS
            )));
        }
        let _sizing = self.jobs.sizing.lock();
        self.check_idle(id)?;
        let (current, _) = self.alloc.lock().usage(id).unwrap_or((0, 0));
        if slots < current {
            return self.start_job(id, JobKind::Shrink(slots), false);
        }
        if slots == current {
            return Ok(());
        }
        let file = v.file()?;
        // file first: a crash before the row changes leaves a file with
        // unused room past its recorded end, which opens fine
        file.set_len(slots)
            .and_then(|()| file.sync())
            .map_err(|e| Error::io(format!("cannot grow volume {id}"), e))?;
        self.meta.set_slots(id, slots)?;
        self.alloc.lock().resize(id, slots);
        tracing::info!(volume = id, from = current, to = slots, "volume grown");
        self.space_changed();
        Ok(())
    }

    /// Moves every sector of a volume elsewhere, then deletes its file and
    /// row. With `force`, sectors that cannot be read are dropped as lost.
    pub fn remove_volume(self: &Arc<Self>, id: u32, force: bool) -> Result<()> {
        self.volume(id)?;
        let _sizing = self.jobs.sizing.lock();
        self.start_job(id, JobKind::Remove { force }, false)
    }

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
        self.jobs.stopping.store(true, Ordering::Relaxed);
        for c in self.jobs.running.lock().values() {
            c.pause.store(true, Ordering::Relaxed);
        }
        let threads: Vec<_> = self.jobs.threads.lock().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    pub(super) fn check_idle(&self, id: u32) -> Result<()> {
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
        let all_lost =
            matches!(kind, JobKind::Remove { force: true }) && job_source(self, &v).is_none();
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
                "volume {id} has {to_move} sectors to move but only {room} free slots can take \
                 them; nothing was moved"
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

    fn run_job(&self, v: &Arc<Volume>, kind: JobKind, control: &JobControl) {
        let id = v.id;
        let verb = match kind {
            JobKind::Shrink(t) => format!("resizing volume {id} to {t} slots"),
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
        let result = job.run();
        let key = format!("job-{id}");
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        let rate = job.moved as f64 / secs;
        let summary = format!(
            "{} sectors moved in {:.1}s ({rate:.0} sectors/s, {:.0} MB/s)",
            job.moved,
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

struct JobRun<'a> {
    engine: &'a Engine,
    volume: &'a Arc<Volume>,
    kind: JobKind,
    control: &'a JobControl,
    verb: String,
    started: Instant,
    total: u64,
    moved: u64,
    /// Sectors that could not be read (removal without force keeps them).
    unreadable: Vec<SectorRow>,
    unreadable_ids: HashSet<i64>,
    lost: Vec<SectorRow>,
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
                return Err(Error::Io {
                    context: format!(
                        "{} sectors could not be read and were left in place, so volume {id} \
                         was kept (write force to drop them as lost): {}",
                        self.unreadable.len(),
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

    /// Copies a batch to new slots (several in flight), syncs, then
    /// re-points them all in one transaction.
    fn move_batch(&mut self, batch: &[SectorRow]) -> Result<()> {
        let e = self.engine;
        let id = self.volume.id;
        // a removal verifies what it moves, and so does any job reading a
        // volume that is out of service (through its path opened afresh)
        let own = self.volume.file().ok();
        let verify = matches!(self.kind, JobKind::Remove { .. }) || own.is_none();
        let src = own.or_else(|| job_source(e, self.volume));
        if src.is_none() {
            for s in batch {
                self.cannot_read(s, "the volume's file is unavailable")?;
            }
            return Ok(());
        }
        // destinations first, so a full store fails before any copying
        let epoch = e.truncations.snapshot();
        let mut plan = Vec::with_capacity(batch.len());
        for s in batch {
            let dest = {
                let mut alloc = e.alloc.lock();
                let same = match self.kind {
                    JobKind::Shrink(target) => alloc.reserve_in(id, target).map(|slot| (id, slot)),
                    JobKind::Remove { .. } => None,
                };
                same.or_else(|| alloc.reserve(&[id]))
            };
            match dest {
                Some((vol, slot)) => plan.push((*s, vol, slot)),
                None => {
                    for (_, vol, slot) in plan {
                        e.alloc.lock().release(vol, slot);
                    }
                    return Err(Error::NoSpace(format!(
                        "no free slot is left to move sectors of volume {id} into"
                    )));
                }
            }
        }
        let mut settled = vec![false; plan.len()];
        let moved = self.copy_and_relocate(&plan, &mut settled, src, epoch, verify);
        // a destination neither taken by its sector nor given back (an
        // error cut the batch short) is given back now
        for ((_, vol, slot), done) in plan.iter().zip(settled) {
            if !done {
                e.discard_slot(*vol, *slot);
            }
        }
        moved
    }

    /// Copies `plan`'s sectors, syncs, then re-points them all in one
    /// transaction; marks in `settled` each destination taken by its sector
    /// or given back.
    fn copy_and_relocate(
        &mut self,
        plan: &[(SectorRow, u32, u64)],
        settled: &mut [bool],
        src: Option<Arc<VolumeFile>>,
        epoch: u64,
        verify: bool,
    ) -> Result<()> {
        let e = self.engine;
        let id = self.volume.id;
        let files: HashMap<u32, Arc<VolumeFile>> = plan
            .iter()
            .filter_map(|(_, vol, _)| Some((*vol, e.volume(*vol).ok()?.file().ok()?)))
            .collect();
        let marks: HashMap<u32, u64> = files.iter().map(|(v, f)| (*v, f.error_mark())).collect();
        // copy: each worker takes every COPIERS-th sector
        let results: Vec<std::result::Result<(), CopyError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..COPIERS.min(plan.len().max(1)))
                .map(|w| {
                    let plan = &plan;
                    let files = &files;
                    let src = src.clone();
                    scope.spawn(move || {
                        let mut buf = vec![0u8; SECTOR_SIZE];
                        plan.iter()
                            .enumerate()
                            .filter(|(i, _)| i % COPIERS == w)
                            .map(|(i, (s, vol, slot))| {
                                (
                                    i,
                                    copy_one(
                                        src.as_deref(),
                                        files.get(vol),
                                        s,
                                        *slot,
                                        verify,
                                        &mut buf,
                                    ),
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            // a copy a worker never reported (it panicked) was not made
            let mut all: Vec<std::result::Result<(), CopyError>> = (0..plan.len())
                .map(|_| Err(CopyError::Destination("the copy was not made".into())))
                .collect();
            for (i, r) in workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
            {
                all[i] = r;
            }
            all
        });
        e.crash_point("move:copied");
        for (v, f) in &files {
            f.sync_since(marks[v])
                .map_err(|err| Error::io("cannot sync moved sectors", err))?;
        }
        e.crash_point("move:synced");
        let mut moves = Vec::new();
        let mut planned = Vec::new();
        for (i, ((s, vol, slot), r)) in plan.iter().zip(&results).enumerate() {
            match r {
                Ok(()) => {
                    moves.push(Move {
                        sector_id: s.id,
                        from_volume: id,
                        from_slot: s.slot,
                        to_volume: *vol,
                        to_slot: *slot,
                    });
                    planned.push(i);
                }
                Err(CopyError::Destination(why)) => {
                    return Err(Error::Io {
                        context: format!("moving sector {} to volume {vol} failed: {why}", s.root),
                        source: std::io::Error::from_raw_os_error(libc::EIO),
                    });
                }
                Err(why) => {
                    e.discard_slot(*vol, *slot);
                    settled[i] = true;
                    // freed since the batch was listed: its slot may be
                    // punched already, which is no sign of damage
                    if !e.still_at(s)? {
                        tracing::debug!(
                            volume = id,
                            slot = s.slot,
                            "sector {} was freed while it was moved",
                            s.root
                        );
                        continue;
                    }
                    if matches!(why, CopyError::Corrupt) {
                        bump(&self.volume.stats.corrupt);
                    } else {
                        bump(&self.volume.stats.read_errors);
                    }
                    self.cannot_read(s, &why.to_string())?;
                }
            }
        }
        // and the files copied into are still their volumes' (none went
        // missing and came back meanwhile)
        let intact = || {
            e.truncations.none_since(epoch)
                && files
                    .iter()
                    .all(|(v, f)| e.volume(*v).is_ok_and(|vol| vol.holds(f)))
        };
        let done = match e.meta.relocate(&moves, &intact) {
            Ok(done) => done,
            Err(err) => {
                // may yet be found committed at the next open: the copies
                // stay where they are, reserved, and the rows decide then
                if err.commit_uncertain() {
                    planned.iter().for_each(|i| settled[*i] = true);
                }
                return Err(err);
            }
        };
        let mut freed = Vec::new();
        for ((m, ok), i) in moves.iter().zip(done).zip(planned) {
            settled[i] = true;
            if ok {
                self.moved += 1;
                freed.push((m.from_volume, m.from_slot));
            } else {
                // freed or moved by someone else meanwhile
                e.discard_slot(m.to_volume, m.to_slot);
            }
        }
        e.crash_point("move:repointed");
        e.punch_and_release(&freed);
        Ok(())
    }

    fn cannot_read(&mut self, s: &SectorRow, why: &str) -> Result<()> {
        let e = self.engine;
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
        if let Some((freed, contracts)) = e.meta.drop_lost_sector(s.id)? {
            e.jobs.lost.fetch_add(1, Ordering::Relaxed);
            e.alerts.raise(
                &format!("lost-{}", s.root),
                Severity::Error,
                format!(
                    "sector {} was lost with volume {} (slot {}): {why}; contracts that held it: {}",
                    s.root,
                    self.volume.id,
                    s.slot,
                    if contracts.is_empty() { "none".to_string() } else { contracts.join(", ") }
                ),
                serde_json::json!({"root": s.root.to_string(), "volume": self.volume.id,
                    "slot": s.slot, "contracts": contracts}),
            );
            e.release(crate::meta::RefChange {
                touched: vec![freed.sector_id],
                freed: vec![freed],
            });
            self.lost.push(*s);
        }
        Ok(())
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
        let e = self.engine;
        let id = self.volume.id;
        match self.kind {
            JobKind::Shrink(target) => {
                if !e.meta.shrink_volume(id, target)? {
                    return Ok(false);
                }
                e.crash_point("shrink:recorded");
                e.alloc.lock().resize(id, target);
                if let Ok(f) = self.volume.file() {
                    // the row already says `target`; a longer file still opens
                    let cut = e.truncations.during(|| f.set_len(target));
                    if let Err(err) = cut.and_then(|()| f.sync()) {
                        tracing::warn!(
                            "volume {id} shrank but its file could not be truncated: {err}"
                        );
                    }
                }
            }
            JobKind::Remove { .. } => {
                // the file before the rows: a crash between leaves the job
                // to resume (and finish) at the next start, not a file no
                // row names. No sector can land meanwhile: the volume takes
                // none while it is removed.
                if e.meta.used_slots(id)? > 0 {
                    return Ok(false);
                }
                match std::fs::remove_file(&self.volume.path) {
                    Ok(()) => {}
                    // deleted by the run a crash cut short
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => tracing::warn!(
                        "volume {id} is being removed but its file {} could not be deleted: {err}",
                        self.volume.path.display()
                    ),
                }
                e.crash_point("remove:file-deleted");
                if !e.meta.delete_volume(id)? {
                    return Ok(false);
                }
                e.alloc.lock().remove_volume(id);
                e.volumes.write().remove(&id);
                for key in [
                    "volume-unavailable",
                    "volume-read-errors",
                    "volume-write-errors",
                ] {
                    e.alerts.clear(&format!("{key}-{id}"));
                }
            }
        }
        Ok(true)
    }
}

/// Why a sector could not be moved.
#[derive(Debug, Clone)]
enum CopyError {
    Unreadable(String),
    Corrupt,
    /// Writing the new copy failed: the sector itself is fine.
    Destination(String),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Unreadable(why) => write!(f, "it cannot be read: {why}"),
            CopyError::Corrupt => f.write_str("its data no longer matches its root (corrupt)"),
            CopyError::Destination(why) => write!(f, "writing its new copy failed: {why}"),
        }
    }
}

/// The file a job reads a volume's sectors from: the volume's own, or,
/// while the volume is out of service (too many errors in a row, or its
/// file went missing), its path opened afresh. Only a file that cannot be
/// opened at all makes its sectors unreadable as a whole.
fn job_source(e: &Engine, v: &Volume) -> Option<Arc<VolumeFile>> {
    v.file()
        .ok()
        .or_else(|| VolumeFile::open(e.storage(), &v.path, 0).ok().map(Arc::new))
}

/// Copies one sector to its new slot; with `verify`, checks its root first.
fn copy_one(
    src: Option<&VolumeFile>,
    dest: Option<&Arc<VolumeFile>>,
    s: &SectorRow,
    to_slot: u64,
    verify: bool,
    buf: &mut [u8],
) -> std::result::Result<(), CopyError> {
    let src =
        src.ok_or_else(|| CopyError::Unreadable("the volume's file is unavailable".into()))?;
    // once more before giving up: a failing disk often reads on a retry
    src.read(s.slot, 0, buf)
        .or_else(|_| src.read(s.slot, 0, buf))
        .map_err(|e| CopyError::Unreadable(e.to_string()))?;
    if verify && merkle::sector_root(buf) != s.root {
        return Err(CopyError::Corrupt);
    }
    let dest =
        dest.ok_or_else(|| CopyError::Destination("the destination volume is unavailable".into()))?;
    dest.write_sector(to_slot, buf)
        .map_err(|e| CopyError::Destination(e.to_string()))?;
    // the disk writes this copy while the next ones are made, rather than
    // the whole batch at its sync; only a hint, so a failure is left to the
    // sync to report
    let _ = dest.start_writeback(to_slot);
    Ok(())
}
