//! The chain height, kept in `settings`: raising it expires every temp
//! entry and temp directory at or below it.

use rusqlite::Connection;

use super::aggregates::temps_expiring_in;
use super::db::Meta;
use super::query::{RefChange, changed};
use crate::error::{DbContext, Error, Result};

impl Meta {
    pub fn height(&self) -> Result<u64> {
        self.read(height_in)
    }

    /// Sets the chain height and drops every temp entry at or below it.
    /// Heights never go back.
    pub fn set_height(&self, height: u64) -> Result<RefChange> {
        if height > i64::MAX as u64 {
            return Err(Error::Invalid(format!("height {height} is too large")));
        }
        self.write(|tx| {
            let current = height_in(tx)?;
            if height < current {
                return Err(Error::Invalid(format!(
                    "the height cannot go back from {current} to {height}"
                )));
            }
            tx.execute(
                "UPDATE settings SET value = ?1 WHERE key = 'height'",
                [height as i64],
            )
            .ctx("setting the height")?;
            temps_expiring_in(tx, height)?;
            tx.execute("DELETE FROM temp_dirs WHERE height <= ?1", [height as i64])
                .ctx("dropping expired temp directories")?;
            let expired: Vec<i64> = {
                let mut stmt = tx
                    .prepare_cached(
                        "DELETE FROM temp_entries WHERE expiration <= ?1 RETURNING sector_id",
                    )
                    .ctx("dropping expired temp entries")?;
                stmt.query_map([height as i64], |r| r.get(0))
                    .ctx("dropping expired temp entries")?
                    .collect::<rusqlite::Result<_>>()
                    .ctx("dropping expired temp entries")?
            };
            changed(tx, expired)
        })
    }
}

pub(super) fn height_in(c: &Connection) -> Result<u64> {
    c.prepare_cached("SELECT value FROM settings WHERE key = 'height'")
        .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
        .map(|h| h as u64)
        .ctx("reading the height")
}
