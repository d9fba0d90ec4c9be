//! A new store's database written in bulk by an import (`sectorfs import`):
//! one connection, one transaction from creation to [`ImportDb::finish`],
//! no journal and no syncs until the end. That is safe only because the
//! file has a temporary name until it is complete: an import that fails or
//! is killed leaves a file nobody opens, removed when the import runs again.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use super::query::root_of;
use super::schema;
use super::sectors::insert_copy_in;
use crate::error::{DbContext, Error, IoContext, Result};
use crate::merkle::Root;

/// Pages the import's connection may cache (in KiB, SQLite's negative
/// form): the indexes of a million sectors stay in memory, and the memory
/// used stays the same whatever the store's size.
const CACHE_KIB: i64 = 192 * 1024;

/// A stored sector as the import reads it back (for `--verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportedSector {
    pub id: i64,
    pub root: Root,
    pub volume_id: u32,
    pub slot: u64,
}

/// Where a referenced sector is referenced from (for lost and corrupt
/// reports): contract names with the entry's index, and temp heights.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holders {
    pub contracts: Vec<(String, u64)>,
    pub temp: Vec<u64>,
}

pub struct ImportDb {
    conn: Connection,
    path: PathBuf,
}

impl ImportDb {
    /// Creates the database at `path` (a temporary name, where nothing is)
    /// through the normal migrations, and opens the import's one
    /// transaction.
    pub fn create(path: &Path) -> Result<ImportDb> {
        let mut conn = Connection::open(path).ctx("creating the new database")?;
        // no journal, no syncs: see the module's comment
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; \
             PRAGMA foreign_keys = OFF; PRAGMA cache_size = -{CACHE_KIB};"
        ))
        .ctx("setting up the new database")?;
        schema::migrate(&mut conn)?;
        conn.execute_batch("BEGIN").ctx("starting the import")?;
        Ok(ImportDb {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Records a volume under the id it had in the host it comes from.
    pub fn add_volume(
        &self,
        id: u32,
        uuid: &str,
        path: &Path,
        slots: u64,
        readonly: bool,
    ) -> Result<()> {
        let text = path.to_str().ok_or_else(|| {
            Error::Invalid(format!("volume path {} is not valid UTF-8", path.display()))
        })?;
        self.conn
            .prepare_cached(
                "INSERT INTO volumes (id, uuid, path, slots, readonly) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut s| s.execute(params![id, uuid, text, slots as i64, readonly]))
            .ctx("recording an imported volume")?;
        Ok(())
    }

    /// THE way an import records a stored sector: `root` in (`volume_id`,
    /// `slot`), under sector id `id` when given (the host's own, so its
    /// references need no translation) or the next one. `None` when the
    /// root is already stored elsewhere or the slot already taken: nothing
    /// was recorded.
    pub fn add_stored_sector(
        &self,
        id: Option<i64>,
        root: &Root,
        volume_id: u32,
        slot: u64,
        stored_at: i64,
    ) -> Result<Option<i64>> {
        let taken = self
            .conn
            .prepare_cached("SELECT 1 FROM copies WHERE volume_id = ?1 AND slot = ?2")
            .and_then(|mut s| s.exists(params![volume_id, slot as i64]))
            .ctx("recording an imported sector")?;
        if taken {
            return Ok(None);
        }
        let id: Option<i64> = self
            .conn
            .prepare_cached(
                "INSERT INTO sectors (id, root, stored_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .and_then(|mut s| {
                s.query_row(params![id, &root.0[..], stored_at], |r| r.get(0))
                    .optional()
            })
            .ctx("recording an imported sector")?;
        if let Some(id) = id {
            // its one copy, where the host kept it
            insert_copy_in(&self.conn, id, volume_id, slot, stored_at)?;
        }
        Ok(id)
    }

    /// Records a slot whose bytes hold nothing the store keeps (a second
    /// copy of a root found by a rescan): punched at the first mount.
    pub fn add_free_slot(&self, volume_id: u32, slot: u64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO pending_punches (volume_id, slot) VALUES (?1, ?2)",
            )
            .and_then(|mut s| s.execute(params![volume_id, slot as i64]))
            .ctx("recording a slot to free")?;
        Ok(())
    }

    /// The id of the sector stored under `root`, if any.
    pub fn sector_id(&self, root: &Root) -> Result<Option<i64>> {
        self.conn
            .prepare_cached("SELECT id FROM sectors WHERE root = ?1")
            .and_then(|mut s| s.query_row([&root.0[..]], |r| r.get(0)).optional())
            .ctx("looking up an imported sector")
    }

    /// Records an empty contract named `name` under id `id`.
    pub fn add_contract(&self, id: i64, name: &str) -> Result<()> {
        // each contract its own revision (migration 5): numbered by its id
        self.conn
            .prepare_cached("INSERT INTO contracts (id, name, revision) VALUES (?1, ?2, ?1)")
            .and_then(|mut s| s.execute(params![id, name]))
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ConstraintViolation) => {
                    Error::Exists(format!("two contracts are named {name}"))
                }
                _ => Error::db("recording an imported contract", e),
            })?;
        Ok(())
    }

    /// Entry `idx` of contract `contract` is sector `sector_id`; false
    /// (nothing recorded) when that sector is not stored.
    pub fn add_contract_entry(&self, contract: i64, idx: u64, sector_id: i64) -> Result<bool> {
        self.conn
            .prepare_cached(
                "INSERT INTO contract_entries (contract_id, idx, sector_id) \
                 SELECT ?1, ?2, id FROM sectors WHERE id = ?3",
            )
            .and_then(|mut s| s.execute(params![contract, idx as i64, sector_id]))
            .map(|n| n == 1)
            .ctx("recording a contract entry")
    }

    /// A temp entry of sector `sector_id` expiring at `expiration` (the same
    /// one twice is one entry); false (nothing recorded) when that sector
    /// is not stored.
    pub fn add_temp_entry(&self, expiration: u64, sector_id: i64) -> Result<bool> {
        let stored = self
            .conn
            .prepare_cached("SELECT 1 FROM sectors WHERE id = ?1")
            .and_then(|mut s| s.exists([sector_id]))
            .ctx("looking up an imported sector")?;
        if stored {
            self.conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO temp_entries (expiration, sector_id) VALUES (?1, ?2)",
                )
                .and_then(|mut s| s.execute(params![expiration as i64, sector_id]))
                .ctx("recording a temp entry")?;
        }
        Ok(stored)
    }

    /// Sectors stored per volume, by volume id.
    pub fn volume_sector_counts(&self) -> Result<Vec<(u32, u64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT volume_id, count(*) FROM copies GROUP BY volume_id")
            .ctx("counting imported sectors")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .ctx("counting imported sectors")?
            .collect::<rusqlite::Result<_>>()
            .ctx("counting imported sectors")
    }

    /// Sectors that no contract entry or temp entry holds: pinned when
    /// `pin`, otherwise deleted with their slots recorded to be punched at
    /// the first mount. Returns how many.
    pub fn release_unreferenced(&self, pin: bool) -> Result<u64> {
        const UNREFERENCED: &str = "NOT EXISTS (SELECT 1 FROM contract_entries e \
             WHERE e.sector_id = s.id) AND NOT EXISTS (SELECT 1 FROM temp_entries t \
             WHERE t.sector_id = s.id)";
        let n = if pin {
            self.conn
                .execute(
                    &format!(
                        "INSERT INTO pins (sector_id) SELECT id FROM sectors s WHERE {UNREFERENCED}"
                    ),
                    [],
                )
                .ctx("pinning unreferenced sectors")?
        } else {
            self.conn
                .execute(
                    &format!(
                        "INSERT OR IGNORE INTO pending_punches (volume_id, slot) \
                         SELECT c.volume_id, c.slot FROM copies c JOIN sectors s \
                         ON s.id = c.sector_id WHERE {UNREFERENCED}"
                    ),
                    [],
                )
                .ctx("freeing unreferenced sectors")?;
            // copies first: they point at their sector
            self.conn
                .execute(
                    &format!(
                        "DELETE FROM copies AS c WHERE c.sector_id IN \
                         (SELECT s.id FROM sectors s WHERE {UNREFERENCED})"
                    ),
                    [],
                )
                .ctx("freeing unreferenced sectors")?;
            self.conn
                .execute(
                    &format!("DELETE FROM sectors AS s WHERE {UNREFERENCED}"),
                    [],
                )
                .ctx("freeing unreferenced sectors")?
        };
        Ok(n as u64)
    }

    /// Up to `limit` stored sectors after (`volume_id`, `slot`) in volume
    /// and slot order: a page of the sectors to verify.
    pub fn stored_after(&self, after: (u32, i64), limit: usize) -> Result<Vec<ImportedSector>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT s.id, s.root, c.volume_id, c.slot FROM copies c \
                 JOIN sectors s ON s.id = c.sector_id \
                 WHERE (c.volume_id, c.slot) > (?1, ?2) ORDER BY c.volume_id, c.slot LIMIT ?3",
            )
            .ctx("listing imported sectors")?;
        stmt.query_map(params![after.0, after.1, limit as i64], |r| {
            Ok(ImportedSector {
                id: r.get(0)?,
                root: root_of(r, 1)?,
                volume_id: r.get(2)?,
                slot: r.get::<_, i64>(3)? as u64,
            })
        })
        .ctx("listing imported sectors")?
        .collect::<rusqlite::Result<_>>()
        .ctx("listing imported sectors")
    }

    /// Counts of what was recorded: stored sectors, contracts, contract
    /// entries, temp entries.
    pub fn counts(&self) -> Result<(u64, u64, u64, u64)> {
        self.conn
            .query_row(
                "SELECT (SELECT count(*) FROM sectors), (SELECT count(*) FROM contracts), \
                 (SELECT count(*) FROM contract_entries), (SELECT count(*) FROM temp_entries)",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, i64>(2)? as u64,
                        r.get::<_, i64>(3)? as u64,
                    ))
                },
            )
            .ctx("counting what was imported")
    }

    /// Stored sectors of volume `volume_id` (in slot order) that have a
    /// reference, each with what holds it: the sectors an import counts as
    /// lost when the volume's file is missing.
    pub fn held_in_volume(
        &self,
        volume_id: u32,
        mut f: impl FnMut(ImportedSector, Holders) -> Result<()>,
    ) -> Result<()> {
        let mut after = -1i64;
        loop {
            let page: Vec<ImportedSector> = self
                .stored_after((volume_id, after), 1024)?
                .into_iter()
                .filter(|s| s.volume_id == volume_id)
                .collect();
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.slot as i64;
            for s in page {
                f(s, self.holders(s.id)?)?;
            }
        }
    }

    /// What holds sector `sector_id`.
    pub fn holders(&self, sector_id: i64) -> Result<Holders> {
        let contracts = self
            .conn
            .prepare_cached(
                "SELECT c.name, e.idx FROM contract_entries e JOIN contracts c \
                 ON c.id = e.contract_id WHERE e.sector_id = ?1 ORDER BY c.name, e.idx",
            )
            .and_then(|mut s| {
                s.query_map([sector_id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                    .collect::<rusqlite::Result<_>>()
            })
            .ctx("finding a sector's contracts")?;
        let temp = self
            .conn
            .prepare_cached(
                "SELECT expiration FROM temp_entries WHERE sector_id = ?1 ORDER BY expiration",
            )
            .and_then(|mut s| {
                s.query_map([sector_id], |r| Ok(r.get::<_, i64>(0)? as u64))?
                    .collect::<rusqlite::Result<_>>()
            })
            .ctx("finding a sector's temp entries")?;
        Ok(Holders { contracts, temp })
    }

    /// Records that these sectors verified at `when` (Unix seconds).
    pub fn mark_checked(&self, ids: &[i64], when: i64) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare_cached("UPDATE copies SET checked_at = ?1 WHERE sector_id = ?2")
            .ctx("recording verified sectors")?;
        for id in ids {
            stmt.execute(params![when, id])
                .ctx("recording verified sectors")?;
        }
        Ok(())
    }

    /// Sets the id counters past what was imported, commits, and makes the
    /// file durable. The caller then renames it into place.
    pub fn finish(self) -> Result<()> {
        self.conn
            .execute_batch(
                "UPDATE settings SET value = (SELECT coalesce(max(id), 0) + 1 FROM volumes) \
                     WHERE key = 'next_volume_id'; \
                 UPDATE settings SET value = (SELECT coalesce(max(id), 0) + 1 FROM contracts) \
                     WHERE key = 'next_contract_id'; \
                 UPDATE settings SET value = (SELECT coalesce(max(revision), 0) FROM contracts) \
                     WHERE key = 'contract_revision'; \
                 COMMIT; \
                 PRAGMA journal_mode = DELETE;",
            )
            .ctx("completing the new database")?;
        let path = self.path.clone();
        self.conn
            .close()
            .map_err(|(_, e)| Error::db("closing the new database", e))?;
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .io_ctx(|| format!("cannot sync the new database {}", path.display()))
    }
}
