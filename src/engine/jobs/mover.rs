//! Moving a job's sectors, a batch at a time: reserve destinations (all
//! first, so a full store fails before any copying), copy (several in
//! flight), sync, re-point them all in one short transaction, and punch
//! the slots they left. No transaction is held across disk I/O; readers
//! look a sector up again after reading, so they never return bytes from a
//! slot it has left.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::run::JobRun;
use crate::engine::Engine;
use crate::engine::workers::Crew;
use crate::engine::{SectorRow, Volume};
use crate::error::{Error, Result};
use crate::merkle;
use crate::meta::{JobKind, Move};
use crate::volume::VolumeFile;

/// Copies in flight at once within a batch.
const COPIERS: usize = 4;

impl JobRun<'_> {
    /// Copies a batch to new slots (several in flight), syncs, then
    /// re-points them all in one transaction.
    pub(super) fn move_batch(&mut self, batch: &[SectorRow]) -> Result<()> {
        let e = self.engine;
        let id = self.volume.id;
        let (src, afresh) = match job_source(self.engine, self.volume) {
            Ok(source) => source,
            Err(err) => {
                for s in batch {
                    self.cannot_read(s, &err.to_string())?;
                }
                return Ok(());
            }
        };
        // a removal verifies what it moves, and so does any job reading a
        // volume that is out of service (through its path opened afresh)
        let verify = matches!(self.kind, JobKind::Remove { .. }) || afresh;
        // destinations first, so a full store fails before any copying
        let epoch = e.truncations.snapshot();
        let min = e.copies_setting().min as usize;
        let mut plan = Vec::with_capacity(batch.len());
        for s in batch {
            let others: Vec<SectorRow> = e
                .meta
                .copies_of(s.id)?
                .into_iter()
                .filter(|c| c.volume_id != id)
                .collect();
            // a removal drops a copy the sector can do without
            if matches!(self.kind, JobKind::Remove { .. })
                && others.iter().filter(|c| e.counts_toward_min(c)).count() >= min
                && e.meta.drop_copy(s.id, s.volume_id, s.slot)?
            {
                e.punch_and_release(&[(s.volume_id, s.slot)]);
                self.moved += 1;
                continue;
            }
            // never onto a volume with a copy already, and apart from
            // their devices where there is room
            let mut exclude: Vec<u32> = others.iter().map(|c| c.volume_id).collect();
            exclude.push(id);
            let devices: Vec<u64> = others
                .iter()
                .filter_map(|c| e.volume(c.volume_id).ok())
                .map(|v| v.device())
                .collect();
            let dest = {
                let mut alloc = e.alloc.lock();
                let same = match self.kind {
                    JobKind::Shrink(target) => alloc.reserve_in(id, target).map(|slot| (id, slot)),
                    JobKind::Remove { .. } => None,
                };
                same.or_else(|| alloc.reserve_copies(1, &exclude, &devices).0.pop())
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
        src: Arc<VolumeFile>,
        epoch: u64,
        verify: bool,
    ) -> Result<()> {
        let e = self.engine;
        let id = self.volume.id;
        // a destination without its file fails its copies (and the job)
        let mut files: HashMap<u32, Arc<VolumeFile>> = HashMap::new();
        let mut unusable = HashSet::new();
        for (_, vol, _) in plan {
            if files.contains_key(vol) || unusable.contains(vol) {
                continue;
            }
            match e.volume(*vol).and_then(|v| v.file()) {
                Ok(f) => {
                    files.insert(*vol, f);
                }
                Err(err) => {
                    tracing::error!(
                        volume = id,
                        "{}: cannot move sectors into volume {vol}: {err}",
                        self.verb
                    );
                    unusable.insert(*vol);
                }
            }
        }
        let marks: HashMap<u32, u64> = files.iter().map(|(v, f)| (*v, f.error_mark())).collect();
        let crew = Crew {
            alerts: &e.alerts,
            job: &self.verb,
            volume: id,
        };
        let results = crew.run(
            COPIERS,
            plan,
            |(s, vol, slot)| format!("copying sector {} to volume {vol} slot {slot}", s.root),
            |(s, vol, slot), buf| {
                // a copy that cannot be read here is read from another
                let elsewhere = |buf: &mut [u8]| {
                    e.meta.copies_of(s.id).ok().is_some_and(|copies| {
                        e.read_good_copy(&copies, Some((s.volume_id, s.slot)), buf)
                            .is_some()
                    })
                };
                // a copy known to be corrupt is taken from a good copy
                // where there is one
                let known_bad = e.is_corrupt_copy(s);
                copy_one(
                    &src,
                    files.get(vol),
                    s,
                    *slot,
                    verify,
                    known_bad,
                    &elsewhere,
                    buf,
                )
            },
        )?;
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
                Ok(_) => {
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
                    e.note_unmovable(self.volume, matches!(why, CopyError::Corrupt));
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
                // written from a good copy: the copy is good now (one
                // carried as it was stays marked, under its sector and volume)
                if matches!(results[i], Ok(true)) {
                    e.corrupt.lock().remove(&(m.sector_id, m.to_volume));
                    e.corrupt.lock().remove(&(m.sector_id, m.from_volume));
                }
            } else {
                // freed or moved by someone else meanwhile
                e.discard_slot(m.to_volume, m.to_slot);
            }
        }
        e.crash_point("move:repointed");
        e.punch_and_release(&freed);
        Ok(())
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
/// file went missing), its path opened afresh (then true). Only a file
/// that cannot be opened at all makes its sectors unreadable as a whole.
pub(super) fn job_source(e: &Engine, v: &Volume) -> Result<(Arc<VolumeFile>, bool)> {
    if let Ok(own) = v.file() {
        return Ok((own, false));
    }
    // out of service: its alert says why
    match VolumeFile::open(e.storage(), &v.path, 0) {
        Ok(file) => Ok((Arc::new(file), true)),
        Err(e) => Err(Error::Unavailable(format!(
            "volume {} is out of service and its file {} cannot be opened: {e}",
            v.id,
            v.path.display()
        ))),
    }
}

/// Copies one sector to its new slot; with `verify`, checks its root first.
/// A copy that cannot be read, or reads wrong, or is `known_bad`, is
/// replaced by another copy of the sector where there is one (`elsewhere`
/// reads one, verified, into the buffer); true when it was.
#[allow(clippy::too_many_arguments)]
fn copy_one(
    src: &VolumeFile,
    dest: Option<&Arc<VolumeFile>>,
    s: &SectorRow,
    to_slot: u64,
    verify: bool,
    known_bad: bool,
    elsewhere: &dyn Fn(&mut [u8]) -> bool,
    buf: &mut [u8],
) -> std::result::Result<bool, CopyError> {
    #[cfg(test)]
    tests::panic_if_chosen(s);
    let from_elsewhere = if known_bad && elsewhere(buf) {
        true
    } else {
        match read_source(src, s, verify, buf) {
            Ok(()) => false,
            Err(_) if elsewhere(buf) => true,
            Err(e) => return Err(e),
        }
    };
    let dest =
        dest.ok_or_else(|| CopyError::Destination("the destination volume is unavailable".into()))?;
    dest.write_sector(to_slot, buf)
        .map_err(|e| CopyError::Destination(e.to_string()))?;
    // the disk writes this copy while the next ones are made, rather than
    // the whole batch at its sync; only a hint, so a failure is left to the
    // sync to report
    if let Err(e) = dest.start_writeback(to_slot) {
        tracing::debug!(
            slot = to_slot,
            "cannot start writing a moved sector back early: {e}"
        );
    }
    Ok(from_elsewhere)
}

/// Reads the copy a job moves; with `verify`, checks its root.
fn read_source(
    src: &VolumeFile,
    s: &SectorRow,
    verify: bool,
    buf: &mut [u8],
) -> std::result::Result<(), CopyError> {
    // once more before giving up: a failing disk often reads on a retry
    src.read(s.slot, 0, buf)
        .or_else(|e| {
            tracing::warn!(
                volume = s.volume_id,
                slot = s.slot,
                "reading sector {} to move it failed, trying once more: {e}",
                s.root
            );
            src.read(s.slot, 0, buf)
        })
        .map_err(|e| CopyError::Unreadable(e.to_string()))?;
    if verify && merkle::sector_root(buf) != s.root {
        return Err(CopyError::Corrupt);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use crate::engine::{Reference, SectorRow, Severity, VolumeState, test_engine};
    use crate::merkle::{Root, SECTOR_SIZE, sector_root};

    /// The sector whose copy panics (one test sets it; roots are unique).
    static PANIC_ON: Mutex<Option<Root>> = Mutex::new(None);

    pub(super) fn panic_if_chosen(s: &SectorRow) {
        if *PANIC_ON.lock().unwrap() == Some(s.root) {
            panic!("injected panic copying sector {}", s.root);
        }
    }

    #[test]
    fn a_panicking_copier_fails_the_job_and_gives_its_destinations_back() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(test_engine(dir.path()));
        let from = engine.add_volume(&dir.path().join("from.vol"), 8).unwrap();
        let to = engine.add_volume(&dir.path().join("to.vol"), 8).unwrap();
        // bytes no other test stores, so the chosen root is this test's
        let sectors: Vec<(Root, Vec<u8>)> = (0..4u8)
            .map(|i| {
                let data = vec![0xA0 + i; SECTOR_SIZE];
                (sector_root(&data), data)
            })
            .collect();
        for (root, data) in &sectors {
            engine.write_verified(root, data, Reference::Pin).unwrap();
        }
        assert_eq!(engine.volume_info(from).unwrap().used, 4);
        *PANIC_ON.lock().unwrap() = Some(sectors[2].0);

        engine.remove_volume(from, false).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while engine.job_running(from) {
            assert!(Instant::now() < deadline, "the job hangs");
            std::thread::sleep(Duration::from_millis(5));
        }
        *PANIC_ON.lock().unwrap() = None;

        let panic = engine
            .alerts()
            .get(&format!("worker-panic-{from}"))
            .unwrap();
        assert_eq!(panic.severity, Severity::Error);
        assert!(
            panic.message.contains(&format!("removing volume {from}"))
                && panic.message.contains("injected panic")
                && panic.message.contains(&sectors[2].0.to_string()),
            "{}",
            panic.message
        );
        let job = engine.alerts().get(&format!("job-{from}")).unwrap();
        assert_eq!(job.severity, Severity::Error);
        assert!(job.message.contains("failed"), "{}", job.message);
        // the job is over and forgotten; the volume serves as before
        assert!(engine.meta().jobs().unwrap().is_empty());
        let v = engine.volume_info(from).unwrap();
        assert_eq!((v.state, v.used), (VolumeState::Ready, 4));
        // every destination was given back, nothing moved
        assert_eq!(engine.volume_info(to).unwrap().used, 0);
        let mut buf = vec![0u8; SECTOR_SIZE];
        for (root, data) in &sectors {
            engine.read_sector(root, 0, &mut buf).unwrap();
            assert!(buf == *data);
            assert_eq!(engine.lookup(root).unwrap().unwrap().volume_id, from);
        }
        engine.shutdown();
    }
}
