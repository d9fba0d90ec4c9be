//! Pins: a sector kept because it was written to (or linked into)
//! `/sectors`, until it is removed from there.

use rusqlite::Connection;

use super::aggregates::pin_counted_in;
use super::db::Meta;
use super::query::{RefChange, changed, lookup_in, ref_counts_in};
use crate::error::{DbContext, Error, Result};
use crate::merkle::Root;

impl Meta {
    /// Drops a sector's pin. `EBUSY` if it has no pin but other references.
    pub fn unpin(&self, root: &Root) -> Result<RefChange> {
        self.write(|tx| {
            let sector = lookup_in(tx, root)?
                .ok_or_else(|| Error::NotFound(format!("sector {root} is not stored")))?;
            let removed = tx
                .prepare_cached("DELETE FROM pins WHERE sector_id = ?1")
                .and_then(|mut s| s.execute([sector.id]))
                .ctx("unpinning a sector")?;
            if removed == 0 {
                let refs = ref_counts_in(tx, sector.id)?;
                return Err(Error::Busy(format!(
                    "sector {root} is not pinned but is still held by {} and {}",
                    crate::plural::count(refs.contracts, "contract entry"),
                    crate::plural::count(refs.temp, "temp entry")
                )));
            }
            pin_counted_in(tx, sector.id, -1)?;
            changed(tx, vec![sector.id])
        })
    }
}

/// Pins a stored sector (a second pin is the same pin).
pub(super) fn pin_in(c: &Connection, sector_id: i64) -> Result<()> {
    let added = c
        .prepare_cached("INSERT OR IGNORE INTO pins (sector_id) VALUES (?1)")
        .and_then(|mut s| s.execute([sector_id]))
        .ctx("pinning a sector")?;
    if added > 0 {
        pin_counted_in(c, sector_id, 1)?;
    }
    Ok(())
}
