//! Shrinking a volume (and growing one, which needs no job): the sectors at
//! or above the new size move below it or to other volumes, then the row
//! and the file are cut.

use std::sync::Arc;

use super::run::JobRun;
use crate::engine::{Engine, MAX_SLOTS};
use crate::error::{Error, Result};
use crate::meta::JobKind;

impl Engine {
    /// Resizes a volume. Growing is immediate (sparse, no per-slot work);
    /// shrinking starts a background job that moves every sector at or above
    /// the new size, refused at once with `ENOSPC` if they cannot all fit.
    pub fn resize_volume(self: &Arc<Self>, id: u32, slots: u64) -> Result<()> {
        let v = self.volume(id)?;
        if slots == 0 || slots > MAX_SLOTS {
            return Err(Error::Invalid(format!(
                "a volume needs between 1 and {} slots, not {slots}",
                MAX_SLOTS
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
        self.rewrite_sidecar(&v, slots);
        tracing::info!(volume = id, from = current, to = slots, "volume grown");
        self.space_changed();
        self.check_overcommit();
        Ok(())
    }
}

impl JobRun<'_> {
    /// Cuts the volume to `target` slots once nothing lies there; false
    /// when a sector landed in the part being cut off meanwhile.
    pub(super) fn finish_shrink(&mut self, target: u64) -> Result<bool> {
        let e = self.engine;
        let id = self.volume.id;
        if !e.meta.shrink_volume(id, target)? {
            return Ok(false);
        }
        e.crash_point("shrink:recorded");
        e.alloc.lock().resize(id, target);
        e.rewrite_sidecar(self.volume, target);
        match self.volume.file() {
            Ok(f) => {
                // the row already says `target`; a longer file still opens
                let cut = e.truncations.during(|| f.set_len(target));
                if let Err(err) = cut.and_then(|()| f.sync()) {
                    tracing::warn!("volume {id} shrank but its file could not be truncated: {err}");
                }
            }
            Err(err) => tracing::warn!(
                "volume {id} shrank but its file was not truncated (a longer file still opens): \
                 {err}"
            ),
        }
        Ok(true)
    }
}
