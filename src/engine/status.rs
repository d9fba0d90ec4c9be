//! Capacity figures and the no-space alert.

use serde::Serialize;

use super::{Engine, Severity, VolumeState};

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Capacity {
    /// Slots in all volumes.
    pub total_slots: u64,
    /// Occupied slots in all volumes.
    pub used_slots: u64,
    /// Free slots that new sectors can take (in a volume being shrunk,
    /// those below its new size).
    pub free_writable: u64,
    /// Free slots that take no new sectors: in read-only volumes, volumes
    /// being removed, and the part a shrink is cutting off.
    pub free_readonly: u64,
    /// Free slots in unavailable volumes.
    pub free_unavailable: u64,
}

impl Engine {
    pub fn capacity(&self) -> Capacity {
        let mut cap = Capacity::default();
        let volumes: Vec<_> = self.volumes.read().values().cloned().collect();
        let alloc = self.alloc.lock();
        for v in volumes {
            let Some((total, used)) = alloc.usage(v.id) else {
                continue;
            };
            cap.total_slots += total;
            cap.used_slots += used;
            let free = total - used;
            if v.writable() {
                let placeable = alloc.placeable(v.id).unwrap_or(free).min(free);
                cap.free_writable += placeable;
                cap.free_readonly += free - placeable;
            } else if matches!(v.state(), VolumeState::Unavailable | VolumeState::Detached) {
                cap.free_unavailable += free;
            } else {
                cap.free_readonly += free;
            }
        }
        cap
    }

    /// Raises the critical no-space alert when no writable slot is left,
    /// and clears it when space returns.
    pub(crate) fn space_changed(&self) {
        let cap = self.capacity();
        if cap.free_writable > 0 {
            self.alerts.clear("no-space");
            return;
        }
        self.alerts.raise(
            "no-space",
            Severity::Critical,
            format!(
                "no writable volume has a free slot: new sectors are refused (free slots: 0 \
                 writable, {} read-only, {} unavailable); add a volume, grow one, or set one \
                 writable",
                cap.free_readonly, cap.free_unavailable
            ),
            super::alerts::data_of(&cap),
        );
    }
}
