//! Per-volume limits (`weight`, `max_sectors`, `min_free`), which placement,
//! `df` and `/status` honour through the allocator, and the warning about
//! a volume whose file system cannot hold its free slots.

use super::{Engine, Severity};
use crate::error::Result;
use crate::meta::Limits;
use crate::plural::count;
use crate::volume::SECTOR_BYTES;

impl Engine {
    /// A volume's limits.
    pub fn limits(&self, id: u32) -> Result<Limits> {
        self.volume(id)?;
        Ok(self.alloc.lock().limits(id).unwrap_or_default())
    }

    /// Changes a volume's limits: recorded, then in force for the next
    /// sector placed.
    pub fn set_limits(&self, id: u32, change: impl FnOnce(&mut Limits)) -> Result<()> {
        let v = self.volume(id)?;
        let mut limits = self.limits(id)?;
        change(&mut limits);
        self.meta.set_limits(id, limits)?;
        self.alloc.lock().set_limits(id, limits, &v.path);
        tracing::info!(
            volume = id,
            weight = limits.weight,
            max_sectors = limits.max_sectors,
            min_free = limits.min_free,
            "volume limits changed"
        );
        self.space_changed();
        self.check_overcommit();
        self.room_for_copies(&format!("the limits of volume {id} changed"));
        Ok(())
    }

    /// Warns of each writable volume whose file system has less room than
    /// its free slots (sparse files promise more than the disk may hold),
    /// naming the shortfall; clears the warning once it holds them.
    pub(crate) fn check_overcommit(&self) {
        for id in self.volume_ids() {
            let key = format!("overcommit-{id}");
            let Ok(v) = self.volume(id) else { continue };
            let (free, limits) = {
                let alloc = self.alloc.lock();
                (alloc.within_limits(id), alloc.limits(id))
            };
            let (Some(free), Some(limits)) = (free, limits) else {
                continue;
            };
            if !v.writable() || free == 0 {
                self.alerts.clear(&key);
                continue;
            }
            let Ok(have) = crate::volume::fs_free_bytes(&v.path) else {
                continue;
            };
            let need = free
                .saturating_mul(SECTOR_BYTES)
                .saturating_add(limits.min_free);
            if have >= need {
                self.alerts.clear(&key);
                continue;
            }
            let short = need - have;
            self.alerts.raise(
                &key,
                Severity::Warning,
                format!(
                    "volume {id} ({}) has {} free but its file system has only {} MiB left \
                     (above its min_free of {} MiB): {} MiB short; sectors will fail to write \
                     there once it fills",
                    v.path.display(),
                    count(free, "slot"),
                    have >> 20,
                    limits.min_free >> 20,
                    short.div_ceil(1 << 20)
                ),
                serde_json::json!({"volume": id, "free_slots": free, "fs_free_bytes": have,
                    "shortfall_bytes": short}),
            );
        }
    }
}
