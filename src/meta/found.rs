//! Sectors found on a volume's disk that the database does not know (a
//! redeclare, an adopted volume): registered pinned, and the job rows of
//! the redeclare.

use rusqlite::params;

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
