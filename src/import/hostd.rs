//! `sectorfs import hostd`: volumes at the same paths and slot counts, each
//! occupied slot a stored sector under hostd's own sector id (so references
//! need no translation table), and references recalculated from what the
//! unresolved contracts and temp storage hold, never from hostd's counts.

use std::collections::HashMap;
use std::path::Path;

use super::hostd_db::{HostdDb, Kind};
use super::report::{Entry, Report};
use super::{LostRoots, Options, Target, adopt_volume, complete};
use crate::error::{Error, Result};
use crate::meta::{ImportDb, MAX_TEMP_HEIGHT};

const STORED_NOWHERE: &str = "no volume of hostd stores it";

/// Imports the stopped hostd whose database is `hostd_db` into a new store
/// in `options.data_dir`.
pub fn import_hostd(hostd_db: &Path, options: &Options) -> Result<Report> {
    let target = Target::take(&options.data_dir)?;
    let hostd = HostdDb::open(hostd_db, &target.hostd_copy())?;
    tracing::info!(
        "importing hostd's database {} (schema {:?}: {:?})",
        hostd_db.display(),
        hostd.shape.db_version,
        hostd.shape
    );
    let db = ImportDb::create(&target.building())?;
    let mut report = Report {
        source: "hostd".into(),
        hostd_db_version: hostd.shape.db_version,
        ..Report::default()
    };

    let mut slots = HashMap::new();
    for v in hostd.volumes()? {
        slots.insert(v.id, v.slots);
        report
            .volumes
            .push(adopt_volume(&db, v.id, &v.path, v.slots, v.readonly)?);
    }

    let now = crate::engine::now_secs();
    hostd.for_each_slot(|s| {
        let inside = slots.get(&s.volume_id).is_some_and(|&n| s.slot < n);
        if !inside {
            tracing::warn!(
                "hostd's sector {} is at slot {} of volume {}, outside the volume: not imported",
                s.root,
                s.slot,
                s.volume_id
            );
            return Ok(());
        }
        if db
            .add_stored_sector(Some(s.sector_id), &s.root, s.volume_id, s.slot, now)?
            .is_none()
        {
            // hostd's own constraints forbid it; a second slot of one
            // root holds nothing the store needs
            tracing::warn!(
                "sector {} is in more than one slot of hostd; volume {} slot {} is freed",
                s.root,
                s.volume_id,
                s.slot
            );
            db.add_free_slot(s.volume_id, s.slot)?;
            report.freed += 1;
        }
        Ok(())
    })?;

    let (contracts, resolved) = hostd.contracts()?;
    report.contracts_resolved = resolved;
    let mut ours: HashMap<(Kind, i64), (i64, String)> = HashMap::with_capacity(contracts.len());
    for (n, c) in contracts.into_iter().enumerate() {
        let id = n as i64 + 1;
        let name = hex(&c.contract_id);
        db.add_contract(id, &name)?;
        ours.insert((c.kind, c.id), (id, name));
    }

    let mut lost = LostRoots::default();
    hostd.for_each_contract_root(|r| {
        let Some((id, name)) = ours.get(&(r.kind, r.owner)) else {
            return Err(Error::Invalid(format!(
                "hostd's database changed while it was read: a root of contract {} of no \
                 unresolved contract",
                r.owner
            )));
        };
        if !db.add_contract_entry(*id, r.index, r.sector_id)? {
            lost.entry(r.root, STORED_NOWHERE).contracts.push(Entry {
                contract: name.clone(),
                index: r.index,
            });
        }
        Ok(())
    })?;
    hostd.for_each_temp_root(|r| {
        let height = r.index;
        if height == 0 || height > MAX_TEMP_HEIGHT {
            tracing::warn!(
                "hostd's temp root {} expires at height {height}, which sectorfs cannot keep: \
                 left out",
                r.root
            );
            return Ok(());
        }
        if !db.add_temp_entry(height, r.sector_id)? {
            lost.entry(r.root, STORED_NOWHERE).temp.push(height);
        }
        Ok(())
    })?;
    hostd.remove_copy()?;
    complete(target, db, report, lost, options)
}

/// Lowercase hex, as contract ids are named in `/contracts`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
