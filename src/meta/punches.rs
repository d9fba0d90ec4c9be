//! Pending punches: slots freed in committed transactions whose bytes may
//! not be punched out yet (a crash between the two leaves them here).

use rusqlite::params;

use super::db::Meta;
use crate::error::{DbContext, Result};

impl Meta {
    /// Slots freed in committed transactions whose bytes may not be punched yet.
    pub fn pending_punches(&self) -> Result<Vec<(u32, u64)>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT volume_id, slot FROM pending_punches")
                .ctx("reading pending punches")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
                .ctx("reading pending punches")?
                .collect::<rusqlite::Result<_>>()
                .ctx("reading pending punches")
        })
    }

    /// Records slots whose bytes must be punched out before they are used
    /// again (a punch that failed), for the next open to finish.
    pub fn record_punches(&self, slots: &[(u32, u64)]) -> Result<()> {
        self.per_slot(
            "INSERT OR IGNORE INTO pending_punches (volume_id, slot) VALUES (?1, ?2)",
            slots,
            "recording slots to punch",
        )
    }

    /// The pending punches of volume `vol` whose slot no sector owns.
    pub fn pending_free_punches(&self, vol: u32) -> Result<Vec<u64>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT p.slot FROM pending_punches p WHERE p.volume_id = ?1 AND NOT EXISTS \
                     (SELECT 1 FROM copies c WHERE c.volume_id = ?1 AND c.slot = p.slot)",
                )
                .ctx("reading pending punches")?;
            stmt.query_map([vol], |r| Ok(r.get::<_, i64>(0)? as u64))
                .ctx("reading pending punches")?
                .collect::<rusqlite::Result<_>>()
                .ctx("reading pending punches")
        })
    }

    /// Forgets slots whose bytes are now punched out.
    pub fn clear_punches(&self, slots: &[(u32, u64)]) -> Result<()> {
        self.per_slot(
            "DELETE FROM pending_punches WHERE volume_id = ?1 AND slot = ?2",
            slots,
            "clearing punched slots",
        )
    }

    /// Runs `sql` (parameters: volume, slot) for each of `slots`, in one
    /// transaction.
    fn per_slot(&self, sql: &str, slots: &[(u32, u64)], what: &str) -> Result<()> {
        if slots.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx.prepare_cached(sql).ctx(what)?;
            for (vol, slot) in slots {
                stmt.execute(params![vol, *slot as i64]).ctx(what)?;
            }
            Ok(())
        })
    }
}
