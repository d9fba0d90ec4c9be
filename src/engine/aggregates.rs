//! Keeping the aggregates up to date with what only the engine knows:
//! which volumes are in service (and their devices) and which copies were
//! found corrupt. Changes made through the mount update the aggregates in
//! their own transactions (meta); a volume changing state asks for a
//! background pass over its copies, run here on a thread of its own.

use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::{Engine, SectorRow, Severity, Volume};
use crate::error::Result;
use crate::meta::{Agg, AggregateView, Scope, VolumeHealth};

/// Sectors brought up to date per transaction of a pass.
const PASS_BATCH: usize = 1000;

/// Contracts named in the alert about unhealthy ones.
const ALERT_NAMES: usize = 5;

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
        if !self.meta.health_pass_due()? {
            return Ok(0);
        }
        let mut changed = 0;
        while let Some(step) = self.meta.health_pass_step(PASS_BATCH)? {
            changed += step.changed;
            if !step.more || self.health.stopping() {
                break;
            }
        }
        Ok(changed)
    }

    /// The pass thread: syncs at least every second, and runs the passes
    /// due.
    pub(super) fn aggregates_loop(&self) {
        Engine::lower_priority(PASS_NICE, "aggregates pass");
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

    /// The copies recorded corrupt, known again after a restart, and
    /// queued to be rewritten from a good copy again.
    pub(super) fn load_corrupt(&self) -> Result<()> {
        for (sector, volume) in self.meta.corrupt_copies()? {
            self.corrupt.lock().insert((sector, volume));
            if let Some(at) = self
                .meta
                .copies_of(sector)?
                .into_iter()
                .find(|c| c.volume_id == volume)
            {
                self.heal_later(&at);
            }
        }
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

    /// Contracts (name, aggregates), worst health first; those below 1
    /// only if `unhealthy_only`.
    pub fn contracts_by_health(
        &self,
        unhealthy_only: bool,
        limit: usize,
    ) -> Result<Vec<(String, Agg)>> {
        self.meta.contracts_by_health(unhealthy_only, limit)
    }

    /// Raises (or clears) the alert naming the contracts whose health is
    /// below 1: the worst few, and how many more. Their number.
    pub fn contract_health_alert(&self) -> Result<u64> {
        let count = self.meta.unhealthy_contracts()?;
        if count == 0 {
            self.alerts.clear("contracts-unhealthy");
            return Ok(0);
        }
        let worst = self.meta.contracts_by_health(true, ALERT_NAMES)?;
        let named: Vec<String> = worst
            .iter()
            .map(|(name, a)| {
                let mut why = vec![format!("health {}", a.health_text())];
                for (n, what) in [
                    (a.lost, "lost"),
                    (a.unavailable, "unavailable"),
                    (a.corrupt, "corrupt"),
                ] {
                    if n > 0 {
                        why.push(format!("{n} {what}"));
                    }
                }
                format!("{name} ({})", why.join(", "))
            })
            .collect();
        let rest = count.saturating_sub(worst.len() as u64);
        let more = if rest > 0 {
            format!(", and {} more", crate::plural::count(rest, "contract"))
        } else {
            String::new()
        };
        let min = self.copies_setting().min;
        let severity = if worst.iter().any(|(_, a)| a.lost > 0) {
            Severity::Error
        } else {
            Severity::Warning
        };
        self.alerts.raise(
            "contracts-unhealthy",
            severity,
            format!(
                "{} entries whose sectors have fewer than {min} ready copies: {}{more}",
                if count == 1 {
                    "1 contract has".to_string()
                } else {
                    format!("{count} contracts have")
                },
                named.join("; ")
            ),
            serde_json::json!({
                "contracts": count,
                "worst": worst.iter().map(|(n, a)| serde_json::json!({
                    "name": n, "health": a.health(), "entries": a.entries,
                    "lost": a.lost, "unavailable": a.unavailable, "corrupt": a.corrupt,
                })).collect::<Vec<_>>(),
            }),
        );
        Ok(count)
    }

    /// One scope's aggregates (`oldest_check` only `with_oldest_check`:
    /// it costs a walk of the scope's entries).
    pub fn aggregate(&self, scope: Scope, with_oldest_check: bool) -> Result<AggregateView> {
        self.meta.aggregate(scope, with_oldest_check)
    }

    /// The root's aggregates (every reference).
    pub fn root_aggregate(&self, with_oldest_check: bool) -> Result<AggregateView> {
        self.meta.root_aggregate(with_oldest_check)
    }
}
