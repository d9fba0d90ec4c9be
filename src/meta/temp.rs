//! Temp entries (a sector kept until a height) and the `/temp/<height>`
//! directories that hold them, made ones included.

use rusqlite::{Connection, OptionalExtension, params};

use super::aggregates::temp_counted_in;
use super::db::Meta;
use super::height::height_in;
use super::query::{RefChange, SectorRow, changed, lookup_in, root_of};
use crate::error::{DbContext, Error, Result};
use crate::merkle::Root;

/// The largest height a temp entry can expire at: the database keeps
/// heights as signed 64-bit numbers, and the mount numbers a temp
/// directory's inode from its height with two bits to spare.
pub const MAX_TEMP_HEIGHT: u64 = (1 << 62) - 1;

/// The one rule for a temp entry's height (and its directory's): above the
/// `current` height, else it would have expired already, and at most
/// `MAX_TEMP_HEIGHT`.
pub fn check_temp_height(height: u64, current: u64) -> Result<()> {
    if height <= current {
        return Err(Error::Invalid(format!(
            "temp entries must expire above the current height {current}, not at {height}"
        )));
    }
    if height > MAX_TEMP_HEIGHT {
        return Err(Error::Invalid(format!(
            "temp entries must expire at height {MAX_TEMP_HEIGHT} or below, not at {height}"
        )));
    }
    Ok(())
}

impl Meta {
    /// The sector with a temp entry at `expiration` under `root`, if any.
    pub fn temp_entry(&self, expiration: u64, root: &Root) -> Result<Option<SectorRow>> {
        self.read(|c| {
            let Some(sector) = lookup_in(c, root)? else {
                return Ok(None);
            };
            let found = c
                .prepare_cached(
                    "SELECT 1 FROM temp_entries WHERE expiration = ?1 AND sector_id = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![expiration as i64, sector.id], |_| Ok(()))
                        .optional()
                })
                .ctx("looking up a temp entry")?;
            Ok(found.map(|()| sector))
        })
    }

    /// Drops one temp entry.
    pub fn remove_temp(&self, expiration: u64, root: &Root) -> Result<RefChange> {
        self.write(|tx| {
            let sector = lookup_in(tx, root)?
                .ok_or_else(|| Error::NotFound(format!("sector {root} is not stored")))?;
            let n = tx
                .prepare_cached("DELETE FROM temp_entries WHERE expiration = ?1 AND sector_id = ?2")
                .and_then(|mut s| s.execute(params![expiration as i64, sector.id]))
                .ctx("removing a temp entry")?;
            if n == 0 {
                return Err(Error::NotFound(format!(
                    "sector {root} has no temp entry at height {expiration}"
                )));
            }
            temp_counted_in(tx, sector.id, expiration, -1)?;
            // the directory stays, as it would on any file system
            tx.prepare_cached("INSERT OR IGNORE INTO temp_dirs (height) VALUES (?1)")
                .and_then(|mut s| s.execute([expiration as i64]))
                .ctx("keeping a temp directory")?;
            changed(tx, vec![sector.id])
        })
    }

    /// Makes the directory `/temp/<height>`: `EINVAL` unless the height
    /// passes `check_temp_height`, `EEXIST` if it is there already.
    pub fn make_temp_dir(&self, height: u64) -> Result<()> {
        self.write(|tx| {
            check_expiration_in(tx, height)?;
            if temp_dir_in(tx, height)? {
                return Err(Error::Exists(format!("/temp/{height} already exists")));
            }
            tx.prepare_cached("INSERT INTO temp_dirs (height) VALUES (?1)")
                .and_then(|mut s| s.execute([height as i64]))
                .ctx("making a temp directory")?;
            Ok(())
        })
    }

    /// Removes the empty directory `/temp/<height>`: `EBUSY` if it has
    /// entries, `ENOENT` if there is no such directory.
    pub fn remove_temp_dir(&self, height: u64) -> Result<()> {
        self.write(|tx| {
            let entries: i64 = tx
                .prepare_cached("SELECT count(*) FROM temp_entries WHERE expiration = ?1")
                .and_then(|mut s| s.query_row([height as i64], |r| r.get(0)))
                .ctx("counting temp entries")?;
            if entries > 0 {
                return Err(Error::Busy(format!("/temp/{height} still has entries")));
            }
            let removed = tx
                .prepare_cached("DELETE FROM temp_dirs WHERE height = ?1")
                .and_then(|mut s| s.execute([height as i64]))
                .ctx("removing a temp directory")?;
            if removed == 0 || height <= height_in(tx)? {
                return Err(Error::NotFound(format!("/temp/{height} does not exist")));
            }
            Ok(())
        })
    }

    /// Whether `/temp/<height>` exists: above the current height, and made
    /// or holding entries.
    pub fn temp_dir_exists(&self, height: u64) -> Result<bool> {
        self.read(|c| Ok(height > height_in(c)? && temp_dir_in(c, height)?))
    }

    /// Every `/temp/<height>` directory (made, or holding entries), ascending.
    pub fn temp_dirs(&self) -> Result<Vec<u64>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT height FROM temp_dirs WHERE height > ?1 \
                     UNION SELECT expiration FROM temp_entries WHERE expiration > ?1 ORDER BY 1",
                )
                .ctx("listing temp directories")?;
            stmt.query_map([height_in(c)? as i64], |r| {
                r.get::<_, i64>(0).map(|h| h as u64)
            })
            .ctx("listing temp directories")?
            .collect::<rusqlite::Result<_>>()
            .ctx("listing temp directories")
        })
    }

    /// Heights that have temp entries, ascending.
    pub fn temp_heights(&self) -> Result<Vec<u64>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT DISTINCT expiration FROM temp_entries ORDER BY 1")
                .ctx("listing temp heights")?;
            stmt.query_map([], |r| r.get::<_, i64>(0).map(|h| h as u64))
                .ctx("listing temp heights")?
                .collect::<rusqlite::Result<_>>()
                .ctx("listing temp heights")
        })
    }

    /// Sectors (id, root) with a temp entry expiring at `expiration`.
    pub fn temp_roots(&self, expiration: u64) -> Result<Vec<(i64, Root)>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT s.id, s.root FROM temp_entries t JOIN sectors s ON s.id = t.sector_id \
                     WHERE t.expiration = ?1 ORDER BY s.id",
                )
                .ctx("listing temp entries")?;
            stmt.query_map([expiration as i64], |r| Ok((r.get(0)?, root_of(r, 1)?)))
                .ctx("listing temp entries")?
                .collect::<rusqlite::Result<_>>()
                .ctx("listing temp entries")
        })
    }
}

/// `check_temp_height` against the height as this transaction sees it.
pub(super) fn check_expiration_in(c: &Connection, expiration: u64) -> Result<()> {
    check_temp_height(expiration, height_in(c)?)
}

/// Adds a temp entry for a stored sector (none twice), once its height
/// passes the rule.
pub(super) fn add_temp_in(c: &Connection, expiration: u64, sector_id: i64) -> Result<()> {
    check_expiration_in(c, expiration)?;
    let added = c
        .prepare_cached(
            "INSERT OR IGNORE INTO temp_entries (expiration, sector_id) VALUES (?1, ?2)",
        )
        .and_then(|mut s| s.execute(params![expiration as i64, sector_id]))
        .ctx("adding a temp entry")?;
    if added > 0 {
        temp_counted_in(c, sector_id, expiration, 1)?;
    }
    Ok(())
}

/// Whether `/temp/<height>` was made or holds entries (expired or not).
fn temp_dir_in(c: &Connection, height: u64) -> Result<bool> {
    c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM temp_dirs WHERE height = ?1) \
         OR EXISTS (SELECT 1 FROM temp_entries WHERE expiration = ?1)",
    )
    .and_then(|mut s| s.query_row([height as i64], |r| r.get(0)))
    .ctx("looking up a temp directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temp_height_rule() {
        assert!(check_temp_height(11, 10).is_ok());
        assert!(check_temp_height(MAX_TEMP_HEIGHT, 10).is_ok());
        for (height, current) in [(10, 10), (9, 10), (0, 0), (MAX_TEMP_HEIGHT + 1, 10)] {
            let e = check_temp_height(height, current).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{height} at {current}: {e}");
            assert!(e.to_string().contains(&height.to_string()), "names it: {e}");
        }
        // nothing is above the largest height
        assert!(check_temp_height(u64::MAX, MAX_TEMP_HEIGHT).is_err());
    }
}
