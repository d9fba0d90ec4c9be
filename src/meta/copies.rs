//! Copies of sectors: each a (volume, slot) of one sector, one row each.
//! Adding and dropping single copies (repair, trimming, self-heal,
//! removal), how many copies the store keeps, where the repair goes on
//! from, and the census of copies per sector.

use rusqlite::{Connection, OptionalExtension, params};

use super::aggregates::{copy_counted_in, references_dropped_in, restate_in};
use super::contracts::contracts_of_in;
use super::db::Meta;
use super::health::request_pass_in;
use super::query::{
    Freed, SectorRow, copies_in, free_unreferenced, lookup_copies_in, record_punch_in, slot_inside,
};
use super::sectors::insert_copy_in;
use crate::error::{DbContext, Result};
use crate::merkle::Root;

/// What dropping a copy that cannot be read did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostCopy {
    /// The copy was not there (moved, dropped or freed meanwhile).
    Gone,
    /// The copy went; the sector lives on in its other copies.
    Copy(Freed),
    /// It was the sector's last copy: the sector went with every
    /// reference to it. The contracts that held it.
    Sector(Vec<Freed>, Vec<String>),
}

/// How many copies of each sector the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopiesSetting {
    pub min: u32,
    pub max: u32,
}

impl Meta {
    /// Every copy of sector `id`, the first added first.
    pub fn copies_of(&self, id: i64) -> Result<Vec<SectorRow>> {
        self.read(|c| copies_in(c, id))
    }

    /// Every copy of the sector stored under `root`, the first added first
    /// (none: it is not stored).
    pub fn lookup_copies(&self, root: &Root) -> Result<Vec<SectorRow>> {
        self.read(|c| lookup_copies_in(c, root))
    }

    /// Sector `id` still has a copy at (`volume_id`, `slot`).
    pub fn copy_exists(&self, id: i64, volume_id: u32, slot: u64) -> Result<bool> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT 1 FROM copies WHERE sector_id = ?1 AND volume_id = ?2 AND slot = ?3",
            )
            .and_then(|mut s| s.exists(params![id, volume_id, slot as i64]))
            .ctx("looking up a copy")
        })
    }

    /// Records new copies (sector, volume, slot), written and synced, in
    /// one transaction; for each, whether it was recorded. Not recorded
    /// (the slot still the caller's): when the sector is no longer stored,
    /// already has a copy on that volume, or the slot left its volume; none
    /// when `intact()` says no.
    pub fn add_copies(
        &self,
        copies: &[(i64, u32, u64)],
        added_at: i64,
        intact: &dyn Fn() -> bool,
    ) -> Result<Vec<bool>> {
        if copies.is_empty() {
            return Ok(Vec::new());
        }
        self.write(|tx| {
            if !intact() {
                return Ok(vec![false; copies.len()]);
            }
            let mut out = Vec::with_capacity(copies.len());
            for &(id, volume_id, slot) in copies {
                let now = copies_in(tx, id)?;
                let ok = !now.is_empty()
                    && !now.iter().any(|c| c.volume_id == volume_id)
                    && slot_inside(tx, volume_id, slot)?;
                if ok {
                    insert_copy_in(tx, id, volume_id, slot, added_at)?;
                    copy_counted_in(tx, id, volume_id, true)?;
                    restate_in(tx, id)?;
                }
                out.push(ok);
            }
            Ok(out)
        })
    }

    /// Drops copy (`volume_id`, `slot`) of sector `id` and records its slot
    /// as pending a punch, unless it is the sector's last copy. False when
    /// nothing was dropped.
    pub fn drop_copy(&self, id: i64, volume_id: u32, slot: u64) -> Result<bool> {
        self.write(|tx| {
            let copies = copies_in(tx, id)?;
            if copies.len() < 2
                || !copies
                    .iter()
                    .any(|c| (c.volume_id, c.slot) == (volume_id, slot))
            {
                return Ok(false);
            }
            delete_copy_in(tx, id, volume_id, slot)?;
            Ok(true)
        })
    }

    /// Drops a copy that cannot be read (a forced removal): the copy alone
    /// while the sector has others, else the sector with every reference.
    pub fn drop_lost_copy(&self, id: i64, volume_id: u32, slot: u64) -> Result<LostCopy> {
        self.write(|tx| {
            let copies = copies_in(tx, id)?;
            let Some(copy) = copies
                .iter()
                .find(|c| (c.volume_id, c.slot) == (volume_id, slot))
            else {
                return Ok(LostCopy::Gone);
            };
            if copies.len() > 1 {
                delete_copy_in(tx, id, volume_id, slot)?;
                return Ok(LostCopy::Copy(Freed {
                    root: copy.root,
                    sector_id: id,
                    volume_id,
                    slot,
                }));
            }
            let contracts = contracts_of_in(tx, id)?;
            references_dropped_in(tx, id)?;
            for table in ["pins", "contract_entries", "temp_entries"] {
                tx.execute(&format!("DELETE FROM {table} WHERE sector_id = ?1"), [id])
                    .ctx("dropping a lost sector's references")?;
            }
            Ok(LostCopy::Sector(free_unreferenced(tx, &[id])?, contracts))
        })
    }

    /// The copies setting (`1 1` until set).
    pub fn copies_setting(&self) -> Result<CopiesSetting> {
        self.read(|c| {
            let get = |key: &str| -> Result<u32> {
                c.prepare_cached("SELECT value FROM settings WHERE key = ?1")
                    .and_then(|mut s| s.query_row([key], |r| r.get::<_, i64>(0)).optional())
                    .map(|v| v.unwrap_or(1).clamp(1, u32::MAX as i64) as u32)
                    .ctx("reading the copies setting")
            };
            Ok(CopiesSetting {
                min: get("copies_min")?,
                max: get("copies_max")?,
            })
        })
    }

    /// Sets the copies setting and, in the same transaction, asks for a
    /// repair pass from the first sector (it adds or drops copies).
    pub fn set_copies_setting(&self, setting: CopiesSetting) -> Result<()> {
        self.write(|tx| {
            for (key, value) in [("copies_min", setting.min), ("copies_max", setting.max)] {
                tx.execute(
                    "INSERT OR REPLACE INTO settings (key, value) VALUES (?1, ?2)",
                    params![key, value],
                )
                .ctx("saving the copies setting")?;
            }
            // every sector's condition is measured against min
            request_pass_in(tx, 0)?;
            request_repair_in(tx)
        })
    }

    /// Where a repair pass goes on from (the last sector id it finished),
    /// `None` when no pass is due.
    pub fn repair_cursor(&self) -> Result<Option<i64>> {
        self.read(|c| {
            c.query_row(
                "SELECT value FROM settings WHERE key = 'repair_cursor'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|v| v.filter(|v| *v >= 0))
            .ctx("reading the repair cursor")
        })
    }

    /// Saves where the repair pass goes on from (`None`: no pass due).
    pub fn set_repair_cursor(&self, cursor: Option<i64>) -> Result<()> {
        self.write(|tx| set_repair_cursor_in(tx, cursor.unwrap_or(-1)))
    }

    /// Saves the last sector a repair pass finished.
    pub fn advance_repair_cursor(&self, cursor: i64) -> Result<()> {
        self.write(|tx| set_repair_cursor_in(tx, cursor.max(0)))
    }

    /// Asks for a repair pass from the first sector: at once when none is
    /// due, else once the pass under way ends (it may be past sectors the
    /// reason for asking affects). Kept in the database, so a crash
    /// resumes it.
    pub fn request_repair(&self) -> Result<()> {
        self.write(|tx| request_repair_in(tx))
    }

    /// Asks for a repair pass from the first sector unless one is due
    /// already (then that one will do).
    pub fn request_repair_if_idle(&self) -> Result<()> {
        self.write(|tx| start_repair_if_idle(tx).map(|_| ()))
    }

    /// Ends a repair pass: true (and the cursor back at the start) when
    /// another was asked for while it ran.
    pub fn finish_repair_pass(&self) -> Result<bool> {
        self.write(|tx| {
            let again: i64 = tx
                .query_row(
                    "SELECT coalesce((SELECT value FROM settings WHERE key = 'repair_again'), 0)",
                    [],
                    |r| r.get(0),
                )
                .ctx("ending a repair pass")?;
            tx.execute("DELETE FROM settings WHERE key = 'repair_again'", [])
                .ctx("ending a repair pass")?;
            set_repair_cursor_in(tx, if again > 0 { 0 } else { -1 })?;
            Ok(again > 0)
        })
    }

    /// Sector ids after `after`, in order, `limit` at most (a repair pass).
    pub fn sector_ids_after(&self, after: i64, limit: usize) -> Result<Vec<i64>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT id FROM sectors WHERE id > ?1 ORDER BY id LIMIT ?2")
                .ctx("listing sectors to repair")?;
            let rows = stmt
                .query_map(params![after, limit as i64], |r| r.get(0))
                .ctx("listing sectors to repair")?;
            rows.collect::<rusqlite::Result<_>>()
                .ctx("listing sectors to repair")
        })
    }
}

/// Drops one copy of a sector that keeps others; its condition follows.
fn delete_copy_in(c: &Connection, id: i64, volume_id: u32, slot: u64) -> Result<()> {
    copy_counted_in(c, id, volume_id, false)?;
    c.prepare_cached("DELETE FROM copies WHERE sector_id = ?1 AND volume_id = ?2 AND slot = ?3")
        .and_then(|mut s| s.execute(params![id, volume_id, slot as i64]))
        .ctx("dropping a copy")?;
    restate_in(c, id)?;
    record_punch_in(c, volume_id, slot)
}

/// Starts a repair pass from the first sector when none is due; whether
/// it did.
fn start_repair_if_idle(c: &Connection) -> Result<bool> {
    c.execute(
        "UPDATE settings SET value = 0 WHERE key = 'repair_cursor' AND value < 0",
        [],
    )
    .map(|n| n > 0)
    .ctx("asking for a repair pass")
}

fn request_repair_in(c: &Connection) -> Result<()> {
    if !start_repair_if_idle(c)? {
        c.execute(
            "INSERT OR REPLACE INTO settings (key, value) VALUES ('repair_again', 1)",
            [],
        )
        .ctx("asking for a repair pass")?;
    }
    Ok(())
}

fn set_repair_cursor_in(c: &Connection, value: i64) -> Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO settings (key, value) VALUES ('repair_cursor', ?1)",
        [value],
    )
    .ctx("saving the repair cursor")?;
    Ok(())
}
