//! Sectors found on a volume's disk that the database does not know (a
//! redeclare, an adopted volume): registered pinned, and the job rows of
//! the redeclare.

use rusqlite::params;

use super::aggregates::{copy_counted_in, restate_in, sector_added_in};
use super::db::Meta;
use super::pins::pin_in;
use super::query::{copies_in, lookup_in, slot_inside};
use super::sectors::insert_copy_in;
use crate::error::{DbContext, Result};
use crate::merkle::Root;

/// What became of one found sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// A sector new to the store, pinned.
    New,
    /// A root already stored: this slot is one more copy of it, and it is pinned.
    Copy,
    /// Not recorded (the root already has a copy on this volume, or the
    /// slot is outside it or taken): the slot stays free.
    Skipped,
}

impl Meta {
    /// Registers `found` (slot, root) on `volume_id` in one transaction.
    pub fn register_found(
        &self,
        volume_id: u32,
        found: &[(u64, Root)],
        now: i64,
    ) -> Result<Vec<Registered>> {
        self.write(|tx| {
            let mut out = Vec::with_capacity(found.len());
            for (slot, root) in found {
                let taken: bool = tx
                    .prepare_cached(
                        "SELECT count(*) > 0 FROM copies WHERE volume_id = ?1 AND slot = ?2",
                    )
                    .and_then(|mut s| s.query_row(params![volume_id, *slot as i64], |r| r.get(0)))
                    .ctx("looking at a found slot")?;
                if taken || !slot_inside(tx, volume_id, *slot)? {
                    out.push(Registered::Skipped);
                    continue;
                }
                let (id, kind) = match lookup_in(tx, root)? {
                    Some(s)
                        if copies_in(tx, s.id)?
                            .iter()
                            .any(|c| c.volume_id == volume_id) =>
                    {
                        out.push(Registered::Skipped);
                        continue;
                    }
                    Some(s) => (s.id, Registered::Copy),
                    None => {
                        tx.prepare_cached("INSERT INTO sectors (root, stored_at) VALUES (?1, ?2)")
                            .and_then(|mut s| s.execute(params![&root.0[..], now]))
                            .ctx("recording a found sector")?;
                        (tx.last_insert_rowid(), Registered::New)
                    }
                };
                insert_copy_in(tx, id, volume_id, *slot, now)?;
                // the aggregates follow in this transaction
                match kind {
                    Registered::New => sector_added_in(tx, id)?,
                    _ => {
                        copy_counted_in(tx, id, volume_id, true)?;
                        restate_in(tx, id)?;
                    }
                }
                pin_in(tx, id)?;
                out.push(kind);
            }
            Ok(out)
        })
    }

    /// Records a redeclare of `volume_id` under way, so a crash resumes it.
    pub fn insert_redeclare_job(&self, volume_id: u32, started_at: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO jobs (volume_id, kind, target, force, started_at) \
                 VALUES (?1, 'redeclare', 0, 0, ?2)",
                params![volume_id, started_at],
            )
            .ctx("recording a redeclare")?;
            Ok(())
        })
    }

    /// Volumes whose redeclare a previous process left unfinished.
    pub fn redeclare_jobs(&self) -> Result<Vec<u32>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT volume_id FROM jobs WHERE kind = 'redeclare'")
                .ctx("reading redeclare jobs")?;
            stmt.query_map([], |r| r.get(0))
                .ctx("reading redeclare jobs")?
                .collect::<rusqlite::Result<_>>()
                .ctx("reading redeclare jobs")
        })
    }
}

impl Meta {
    /// Writes a consistent copy of the database to `dest` (which must not
    /// exist) from a reader's snapshot: writers go on meanwhile (WAL).
    /// The copy records `at` as the time of its backup.
    pub fn vacuum_into(&self, dest: &std::path::Path, at: i64) -> Result<()> {
        let text = dest.to_str().ok_or_else(|| {
            crate::error::Error::Invalid(format!("{} is not valid UTF-8", dest.display()))
        })?;
        self.read(|c| {
            c.execute("VACUUM INTO ?1", [text])
                .ctx("writing a backup of the database")?;
            Ok(())
        })?;
        let copy = rusqlite::Connection::open(dest).ctx("opening the new backup")?;
        copy.execute(
            "INSERT OR REPLACE INTO settings (key, value) VALUES ('last_backup', ?1)",
            [at],
        )
        .ctx("stamping the new backup")?;
        Ok(())
    }

    /// When the last backup was written (unix seconds; 0: never).
    pub fn last_backup(&self) -> Result<i64> {
        self.read(|c| {
            c.query_row(
                "SELECT coalesce((SELECT value FROM settings WHERE key = 'last_backup'), 0)",
                [],
                |r| r.get(0),
            )
            .ctx("reading the time of the last backup")
        })
    }

    pub fn set_last_backup(&self, at: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES ('last_backup', ?1)",
                [at],
            )
            .ctx("recording the time of the last backup")?;
            Ok(())
        })
    }
}

/// The references a store holds, as `recover` reports them.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ReferenceTotals {
    pub sectors: u64,
    pub pins: u64,
    pub contracts: u64,
    pub contract_entries: u64,
    pub temp_entries: u64,
}

impl Meta {
    pub fn reference_totals(&self) -> Result<ReferenceTotals> {
        self.read(|c| {
            let n = |table: &str| -> Result<u64> {
                c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .ctx("counting references")
            };
            Ok(ReferenceTotals {
                sectors: n("sectors")?,
                pins: n("pins")?,
                contracts: n("contracts")?,
                contract_entries: n("contract_entries")?,
                temp_entries: n("temp_entries")?,
            })
        })
    }
}

impl Meta {
    /// When the backup at `path` was written, once SQLite finds it sound
    /// (`quick_check`); read only, never changed.
    pub fn backup_time(path: &std::path::Path) -> Result<i64> {
        let c = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ctx("opening a backup")?;
        let check: String = c
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .ctx("checking a backup")?;
        if check != "ok" {
            return Err(crate::error::Error::Invalid(format!(
                "{} is damaged: {check}",
                path.display()
            )));
        }
        c.query_row(
            "SELECT value FROM settings WHERE key = 'last_backup'",
            [],
            |r| r.get(0),
        )
        .ctx("reading a backup's time")
    }
}
