//! Rows behind the volume jobs: the job itself (so a crash resumes it),
//! re-pointing moved copies, and deleting a volume.

use rusqlite::{OptionalExtension, params};

use super::aggregates::moved_in;
use super::db::Meta;
use super::query::slot_inside;
use crate::error::{DbContext, Result};

/// A job as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRow {
    pub volume_id: u32,
    pub kind: JobKind,
    pub started_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Shrink to this many slots.
    Shrink(u64),
    /// Remove; `force` drops sectors that cannot be read.
    Remove { force: bool },
}

/// One sector moved from (`from_volume`, `from_slot`) to (`to_volume`, `to_slot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub sector_id: i64,
    pub from_volume: u32,
    pub from_slot: u64,
    pub to_volume: u32,
    pub to_slot: u64,
}

impl Meta {
    pub fn insert_job(&self, volume_id: u32, kind: JobKind, started_at: i64) -> Result<()> {
        let (name, target, force) = match kind {
            JobKind::Shrink(slots) => ("resize", slots as i64, false),
            JobKind::Remove { force } => ("remove", 0, force),
        };
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO jobs (volume_id, kind, target, force, started_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![volume_id, name, target, force, started_at],
            )
            .ctx("recording a job")?;
            Ok(())
        })
    }

    pub fn delete_job(&self, volume_id: u32) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM jobs WHERE volume_id = ?1", [volume_id])
                .ctx("finishing a job")?;
            Ok(())
        })
    }

    pub fn jobs(&self) -> Result<Vec<JobRow>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT volume_id, kind, target, force, started_at FROM jobs \
                     WHERE kind != 'redeclare'",
                )
                .ctx("reading jobs")?;
            stmt.query_map([], |r| {
                let kind: String = r.get(1)?;
                let kind = match kind.as_str() {
                    "resize" => JobKind::Shrink(r.get::<_, i64>(2)? as u64),
                    _ => JobKind::Remove { force: r.get(3)? },
                };
                Ok(JobRow {
                    volume_id: r.get(0)?,
                    kind,
                    started_at: r.get(4)?,
                })
            })
            .ctx("reading jobs")?
            .collect::<rusqlite::Result<_>>()
            .ctx("reading jobs")
        })
    }

    /// Sectors of a volume at or above `from_slot`.
    pub fn count_sectors_from(&self, volume_id: u32, from_slot: u64) -> Result<u64> {
        self.read(|c| {
            c.prepare_cached("SELECT count(*) FROM copies WHERE volume_id = ?1 AND slot >= ?2")
                .and_then(|mut s| {
                    s.query_row(params![volume_id, from_slot as i64], |r| r.get::<_, i64>(0))
                })
                .map(|n| n as u64)
                .ctx("counting sectors to move")
        })
    }

    /// Re-points moved copies and frees their old slots, in one short
    /// transaction. A copy freed or moved by someone else meanwhile, or
    /// whose sector got a copy on the destination volume meanwhile, is left
    /// alone: its entry in the result is false and its new slot is the
    /// caller's to release.
    ///
    /// `slots_intact` is asked inside the transaction whether the new slots
    /// still hold what was copied (no shrink cut them off); when it says no,
    /// or a new slot lies outside its volume, nothing moves.
    pub fn relocate(&self, moves: &[Move], slots_intact: &dyn Fn() -> bool) -> Result<Vec<bool>> {
        self.write(|tx| {
            let mut inside = true;
            for m in moves {
                inside &= slot_inside(tx, m.to_volume, m.to_slot)?;
            }
            if !inside || !slots_intact() {
                return Ok(vec![false; moves.len()]);
            }
            let mut update = tx
                .prepare_cached(
                    "UPDATE copies SET volume_id = ?1, slot = ?2 \
                     WHERE sector_id = ?3 AND volume_id = ?4 AND slot = ?5",
                )
                .ctx("re-pointing moved sectors")?;
            let mut pending = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO pending_punches (volume_id, slot) VALUES (?1, ?2)",
                )
                .ctx("recording moved-from slots")?;
            let mut taken = tx
                .prepare_cached(
                    "SELECT count(*) FROM copies WHERE sector_id = ?1 AND volume_id = ?2 \
                     AND NOT (volume_id = ?3 AND slot = ?4)",
                )
                .ctx("re-pointing moved sectors")?;
            let mut done = Vec::with_capacity(moves.len());
            for m in moves {
                let twice: i64 = taken
                    .query_row(
                        params![m.sector_id, m.to_volume, m.from_volume, m.from_slot as i64],
                        |r| r.get(0),
                    )
                    .ctx("re-pointing moved sectors")?;
                if twice > 0 {
                    done.push(false);
                    continue;
                }
                let n = update
                    .execute(params![
                        m.to_volume,
                        m.to_slot as i64,
                        m.sector_id,
                        m.from_volume,
                        m.from_slot as i64
                    ])
                    .ctx("re-pointing moved sectors")?;
                if n == 1 {
                    moved_in(tx, m.sector_id, m.from_volume, m.to_volume)?;
                    pending
                        .execute(params![m.from_volume, m.from_slot as i64])
                        .ctx("recording moved-from slots")?;
                }
                done.push(n == 1);
            }
            Ok(done)
        })
    }

    /// Shrinks a volume's row, if nothing is stored at or above `slots`.
    /// False when something still is (a write landed meanwhile).
    pub fn shrink_volume(&self, volume_id: u32, slots: u64) -> Result<bool> {
        self.write(|tx| {
            let left: i64 = tx
                .query_row(
                    "SELECT count(*) FROM copies WHERE volume_id = ?1 AND slot >= ?2",
                    params![volume_id, slots as i64],
                    |r| r.get(0),
                )
                .ctx("checking a shrunk volume")?;
            if left > 0 {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM pending_punches WHERE volume_id = ?1 AND slot >= ?2",
                params![volume_id, slots as i64],
            )
            .ctx("shrinking a volume")?;
            tx.execute(
                "UPDATE volumes SET slots = ?1 WHERE id = ?2",
                params![slots as i64, volume_id],
            )
            .ctx("shrinking a volume")?;
            tx.execute("DELETE FROM jobs WHERE volume_id = ?1", [volume_id])
                .ctx("finishing a job")?;
            Ok(true)
        })
    }

    /// Deletes an empty volume's rows. `Busy` if a sector is still on it.
    /// False (and nothing deleted) if a sector landed in the volume.
    pub fn delete_volume(&self, volume_id: u32) -> Result<bool> {
        self.write(|tx| {
            let left: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM copies WHERE volume_id = ?1 LIMIT 1",
                    [volume_id],
                    |r| r.get(0),
                )
                .optional()
                .ctx("checking a removed volume")?;
            if left.is_some() {
                return Ok(false);
            }
            for sql in [
                "DELETE FROM pending_punches WHERE volume_id = ?1",
                "DELETE FROM jobs WHERE volume_id = ?1",
                "DELETE FROM volumes WHERE id = ?1",
                "DELETE FROM volume_health WHERE volume_id = ?1",
                "DELETE FROM health_passes WHERE volume_id = ?1",
                "DELETE FROM aggregates WHERE kind = 3 AND key = ?1",
            ] {
                tx.execute(sql, [volume_id]).ctx("deleting a volume")?;
            }
            Ok(true)
        })
    }
}
