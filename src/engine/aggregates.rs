//! Keeping the aggregates up to date with what only the engine knows:
//! which volumes are in service (and their devices) and which copies were
//! found corrupt. Changes made through the mount update the aggregates in
//! their own transactions (meta); a volume changing state asks for a
//! background pass over its copies, run here on a thread of its own.

use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::{Engine, SectorRow, Volume};
use crate::error::Result;
use crate::meta::{AggregateView, Scope, VolumeHealth};

/// Sectors brought up to date per transaction of a pass.
const PASS_BATCH: usize = 1000;

/// The pass thread's nice value, as the repair's: requests come first.
const PASS_NICE: libc::c_int = 10;

#[derive(Default)]
pub(super) struct Aggregates {
    woken: Mutex<bool>,
    wake: Condvar,
    /// The volumes' health as last recorded (nothing written while it
    /// stays the same).
    synced: Mutex<Vec<VolumeHealth>>,
}

impl Engine {
    /// Wakes the pass thread: a volume may have changed state.
    pub(crate) fn aggregates_wake(&self) {
        *self.aggregates.woken.lock() = true;
        self.aggregates.wake.notify_all();
    }

    /// Records the volumes' health as it is now; a volume that changed
    /// gets a background pass. True if one was asked for.
    pub(crate) fn sync_volume_health(&self) -> Result<bool> {
        let now: Vec<VolumeHealth> = self
            .volumes
            .read()
            .values()
            .map(|v| VolumeHealth {
                id: v.id,
                out: !v.readable(),
                device: Some(v.device()),
            })
            .collect();
        let mut synced = self.aggregates.synced.lock();
        if *synced == now {
            return Ok(false);
        }
        let asked = self.meta.sync_volume_health(&now)?;
        *synced = now;
        Ok(asked)
    }

    /// Syncs the volumes' health and runs every pass due to the end, on
    /// the calling thread; the sectors brought up to date.
    pub fn settle_aggregates(&self) -> Result<u64> {
        self.sync_volume_health()?;
        let mut changed = 0;
        while let Some(step) = self.meta.health_pass_step(PASS_BATCH)? {
            changed += step.changed;
            if self.health.stopping() {
                break;
            }
        }
        Ok(changed)
    }

    /// The pass thread: syncs at least every second, and runs the passes
    /// due.
    pub(super) fn aggregates_loop(&self) {
        // SAFETY: plain syscall on the calling thread (tid 0: this one).
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, PASS_NICE) } != 0 {
            tracing::debug!(
                "cannot lower the aggregates pass's priority: {}",
                std::io::Error::last_os_error()
            );
        }
        while !self.health.stopping() {
            match self.settle_aggregates() {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    "aggregates brought up to date: {} changed condition",
                    crate::plural::count(n, "sector")
                ),
                Err(e) => tracing::error!("the aggregates pass failed (retried in 1 s): {e}"),
            }
            let mut woken = self.aggregates.woken.lock();
            if !*woken {
                self.aggregates
                    .wake
                    .wait_for(&mut woken, Duration::from_secs(1));
            }
            *woken = false;
        }
    }

    /// A copy found corrupt: recorded, with the sector's condition and
    /// every aggregate holding it, in one transaction.
    pub(crate) fn record_corrupt(&self, v: &Volume, s: &SectorRow) {
        if let Err(e) = self.meta.set_copy_corrupt(s.id, v.id, true) {
            tracing::error!(
                "cannot record that sector {} in volume {} is corrupt (the health figures \
                 miss it until the next check finds it): {e}",
                s.root,
                v.id
            );
        }
    }

    /// The copies recorded corrupt, known again after a restart.
    pub(super) fn load_corrupt(&self) -> Result<()> {
        let known = self.meta.corrupt_copies()?;
        self.corrupt.lock().extend(known);
        Ok(())
    }

    /// Recounts every aggregate from the tables once the passes due have
    /// run: each that differs, in words (then every one is rebuilt).
    pub fn recount_aggregates(&self) -> Result<Vec<String>> {
        self.settle_aggregates()?;
        let differences = self.meta.aggregate_differences()?;
        if !differences.is_empty() {
            for d in &differences {
                tracing::error!("{d}; rebuilding the aggregates from the tables");
            }
            self.meta.rebuild_aggregates()?;
            self.aggregates.synced.lock().clear();
            self.settle_aggregates()?;
        }
        Ok(differences)
    }

    /// One scope's aggregates.
    pub fn aggregate(&self, scope: Scope) -> Result<AggregateView> {
        self.meta.aggregate(scope)
    }

    /// The root's aggregates (every reference).
    pub fn root_aggregate(&self) -> Result<AggregateView> {
        self.meta.root_aggregate()
    }
}
