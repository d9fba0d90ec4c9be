//! Removing a volume: every copy on it moves to other volumes (verified as
//! it is read, and read from another copy when it cannot be), or is
//! dropped where the sector keeps `min` copies without it; then the row
//! and the file go. A forced removal drops the copies it cannot read, and
//! a sector with no other copy is lost.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::run::JobRun;
use crate::engine::{Engine, SectorRow, Severity};
use crate::error::Result;
use crate::meta::{JobKind, LostCopy, RefChange};

impl Engine {
    /// Moves every sector of a volume elsewhere, then deletes its file and
    /// row. With `force`, sectors that cannot be read are dropped as lost.
    pub fn remove_volume(self: &Arc<Self>, id: u32, force: bool) -> Result<()> {
        self.volume(id)?;
        let _sizing = self.jobs.sizing.lock();
        self.start_job(id, JobKind::Remove { force }, false)
    }
}

impl JobRun<'_> {
    /// Deletes the volume's file, then its row; false when a sector landed
    /// in it meanwhile. The file first: a crash between leaves the job to
    /// resume (and finish) at the next start, not a file no row names. No
    /// sector can land meanwhile: the volume takes none while it is removed.
    pub(super) fn finish_remove(&mut self) -> Result<bool> {
        let e = self.engine;
        let id = self.volume.id;
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
        e.clear_volume_alerts(id);
        Ok(true)
    }

    /// A forced removal drops a copy it cannot read; a sector with no other
    /// copy is lost, and the alert tells which contracts held it.
    pub(super) fn drop_lost(&mut self, s: &SectorRow, why: &str) -> Result<()> {
        let e = self.engine;
        let (freed, contracts) = match e.meta.drop_lost_copy(s.id, s.volume_id, s.slot)? {
            LostCopy::Gone => return Ok(()),
            LostCopy::Copy(freed) => {
                tracing::warn!(
                    volume = self.volume.id,
                    slot = s.slot,
                    "the copy of sector {} could not be read and was dropped; its other \
                     copies keep it: {why}",
                    s.root
                );
                e.punch_and_release(&[(freed.volume_id, freed.slot)]);
                e.request_repair(&format!(
                    "a copy was dropped from volume {}",
                    self.volume.id
                ));
                self.moved += 1;
                return Ok(());
            }
            LostCopy::Sector(freed, contracts) => (freed, contracts),
        };
        {
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
            e.release(RefChange {
                touched: vec![s.id],
                freed,
            });
            self.lost.push(*s);
        }
        Ok(())
    }
}
