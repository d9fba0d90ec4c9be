//! Rows and queries every table family shares: a sector's row, its
//! reference counts, freeing sectors left without references, and id
//! numbering. A leaf: it imports no other meta module, so each family can
//! import it without importing another.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::aggregates::sector_removed_in;
use crate::error::{DbContext, Result};
use crate::merkle::Root;

/// A stored sector and one of its copies: the copy's volume and slot.
/// Where one row stands for the sector (a lookup by root or id, a listing),
/// it names the sector's first copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectorRow {
    pub id: i64,
    pub root: Root,
    pub volume_id: u32,
    pub slot: u64,
    /// Unix seconds when the sector was first stored.
    pub stored_at: i64,
    /// Its modification time in Unix nanoseconds, when one was set.
    pub mtime_ns: Option<i64>,
}

/// A stored sector itself, without where its copies are: what a file's
/// name and attributes need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectorInfo {
    pub id: i64,
    pub root: Root,
    /// Unix seconds when the sector was first stored.
    pub stored_at: i64,
    /// Its modification time in Unix nanoseconds, when one was set.
    pub mtime_ns: Option<i64>,
}

/// A copy that went (one per copy of a sector whose last reference went,
/// or a copy dropped alone): its slot is free in the database and its
/// bytes must be punched out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freed {
    pub root: Root,
    pub sector_id: i64,
    pub volume_id: u32,
    pub slot: u64,
}

/// What a reference change did.
#[derive(Debug, Default)]
pub struct RefChange {
    /// Sectors whose reference counts changed (freed ones included).
    pub touched: Vec<i64>,
    pub freed: Vec<Freed>,
}

/// How many references of each kind a sector has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefCounts {
    pub pins: u64,
    pub contracts: u64,
    pub temp: u64,
}

impl RefCounts {
    pub fn total(&self) -> u64 {
        self.pins + self.contracts + self.temp
    }
}

/// The columns of a [`SectorRow`], selected from [`SECTOR_COPIES`].
pub(super) const SECTOR_COLUMNS: &str =
    "s.id, s.root, c.volume_id, c.slot, s.stored_at, s.mtime_ns";
/// Sectors with each of their copies.
pub(super) const SECTOR_COPIES: &str = "sectors s JOIN copies c ON c.sector_id = s.id";
/// Sectors with their first copy only.
pub(super) const SECTOR_FIRST_COPY: &str = "sectors s JOIN copies c ON c.id = \
     (SELECT min(f.id) FROM copies f WHERE f.sector_id = s.id)";

pub(super) fn root_of(row: &rusqlite::Row, idx: usize) -> rusqlite::Result<Root> {
    let blob = row.get_ref(idx)?.as_blob()?;
    Root::from_slice(blob).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Blob,
            "a stored root is not 32 bytes".into(),
        )
    })
}

/// A row of `SECTOR_COLUMNS`.
pub(super) fn sector_of(row: &rusqlite::Row) -> rusqlite::Result<SectorRow> {
    Ok(SectorRow {
        id: row.get(0)?,
        root: root_of(row, 1)?,
        volume_id: row.get(2)?,
        slot: row.get::<_, i64>(3)? as u64,
        stored_at: row.get(4)?,
        mtime_ns: row.get(5)?,
    })
}

// A sector and its copies are read with two simple statements rather than
// one join, on every lookup and stat: measured 3-4 us against about 20 us
// for the join through the statement cache.

/// The sector `key` (a root or an id: `column` says which), without a copy
/// yet (volume and slot 0).
fn sector_in(c: &Connection, column: &str, key: &dyn rusqlite::ToSql) -> Result<Option<SectorRow>> {
    c.prepare_cached(&format!(
        "SELECT id, root, stored_at, mtime_ns FROM sectors WHERE {column} = ?1"
    ))
    .and_then(|mut s| {
        s.query_row([key], |r| {
            Ok(SectorRow {
                id: r.get(0)?,
                root: root_of(r, 1)?,
                volume_id: 0,
                slot: 0,
                stored_at: r.get(2)?,
                mtime_ns: r.get(3)?,
            })
        })
        .optional()
    })
    .ctx("looking up a sector")
}

/// Every copy of `sector` (a row of it), the first added first. Sorted
/// here: an `ORDER BY` costs SQLite a sorter per call (10 us more a
/// lookup, measured), for the two or three copies a sector has.
fn copies_of_row(c: &Connection, sector: SectorRow) -> Result<Vec<SectorRow>> {
    let mut stmt = c
        .prepare_cached("SELECT id, volume_id, slot FROM copies WHERE sector_id = ?1")
        .ctx("listing a sector's copies")?;
    let rows = stmt
        .query_map([sector.id], |r| {
            let copy = SectorRow {
                volume_id: r.get(1)?,
                slot: r.get::<_, i64>(2)? as u64,
                ..sector
            };
            Ok((r.get::<_, i64>(0)?, copy))
        })
        .ctx("listing a sector's copies")?;
    let mut copies: Vec<(i64, SectorRow)> = rows
        .collect::<rusqlite::Result<_>>()
        .ctx("listing a sector's copies")?;
    copies.sort_unstable_by_key(|(id, _)| *id);
    Ok(copies.into_iter().map(|(_, c)| c).collect())
}

/// The sector stored under `root`, named by its first copy.
pub(super) fn lookup_in(c: &Connection, root: &Root) -> Result<Option<SectorRow>> {
    Ok(lookup_copies_in(c, root)?.into_iter().next())
}

/// Sector `id`, named by its first copy.
pub(super) fn sector_by_id_in(c: &Connection, id: i64) -> Result<Option<SectorRow>> {
    Ok(copies_in(c, id)?.into_iter().next())
}

/// The sector stored under `root`, or sector `id`, without its copies.
pub(super) fn sector_info_in(c: &Connection, key: SectorKey) -> Result<Option<SectorInfo>> {
    let row = match key {
        SectorKey::Root(root) => sector_in(c, "root", &&root.0[..])?,
        SectorKey::Id(id) => sector_in(c, "id", &id)?,
    };
    Ok(row.map(|s| SectorInfo {
        id: s.id,
        root: s.root,
        stored_at: s.stored_at,
        mtime_ns: s.mtime_ns,
    }))
}

/// How a sector is named in a lookup.
#[derive(Debug, Clone, Copy)]
pub enum SectorKey<'a> {
    Root(&'a Root),
    Id(i64),
}

/// Every copy of the sector stored under `root`, the first added first.
pub(super) fn lookup_copies_in(c: &Connection, root: &Root) -> Result<Vec<SectorRow>> {
    match sector_in(c, "root", &&root.0[..])? {
        Some(s) => copies_of_row(c, s),
        None => Ok(Vec::new()),
    }
}

pub(super) fn ref_counts_in(c: &Connection, sector_id: i64) -> Result<RefCounts> {
    c.prepare_cached(
        "SELECT (SELECT count(*) FROM pins WHERE sector_id = ?1), \
                (SELECT count(*) FROM contract_entries WHERE sector_id = ?1), \
                (SELECT count(*) FROM temp_entries WHERE sector_id = ?1)",
    )
    .and_then(|mut s| {
        s.query_row([sector_id], |r| {
            Ok(RefCounts {
                pins: r.get::<_, i64>(0)? as u64,
                contracts: r.get::<_, i64>(1)? as u64,
                temp: r.get::<_, i64>(2)? as u64,
            })
        })
    })
    .ctx("counting a sector's references")
}

/// Every copy of sector `sector_id`, the first added first.
pub(super) fn copies_in(c: &Connection, sector_id: i64) -> Result<Vec<SectorRow>> {
    match sector_in(c, "id", &sector_id)? {
        Some(s) => copies_of_row(c, s),
        None => Ok(Vec::new()),
    }
}

/// Records `slot` of `volume_id` as pending a punch.
pub(super) fn record_punch_in(c: &Connection, volume_id: u32, slot: u64) -> Result<()> {
    c.prepare_cached("INSERT OR IGNORE INTO pending_punches (volume_id, slot) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![volume_id, slot as i64]))
        .ctx("recording a freed slot")?;
    Ok(())
}

/// Whether `slot` lies inside volume `volume_id` as recorded (false if the
/// volume is gone).
pub(super) fn slot_inside(c: &Connection, volume_id: u32, slot: u64) -> Result<bool> {
    let slots: Option<i64> = c
        .prepare_cached("SELECT slots FROM volumes WHERE id = ?1")
        .and_then(|mut s| s.query_row([volume_id], |r| r.get(0)).optional())
        .ctx("checking a slot is inside its volume")?;
    Ok(slots.is_some_and(|n| slot < n as u64))
}

/// The change to `touched`, whose references changed: those left with none
/// are freed.
pub(super) fn changed(c: &Connection, touched: Vec<i64>) -> Result<RefChange> {
    let freed = free_unreferenced(c, &touched)?;
    Ok(RefChange { touched, freed })
}

/// Deletes every candidate sector that has no reference left, with its
/// copies, records their slots as pending a punch, and returns what was
/// freed (one entry per copy).
pub(super) fn free_unreferenced(c: &Connection, candidates: &[i64]) -> Result<Vec<Freed>> {
    free_unreferenced_counted(c, candidates).map(|(freed, _)| freed)
}

/// Each distinct candidate of a free with the number of contract entries
/// that hold it now.
pub(super) type ContractHeld = Vec<(i64, u64)>;

/// As [`free_unreferenced`], also giving each distinct candidate with the
/// number of contract entries that hold it now (the counts it asked for
/// anyway: a revision's aggregates use them).
pub(super) fn free_unreferenced_counted(
    c: &Connection,
    candidates: &[i64],
) -> Result<(Vec<Freed>, ContractHeld)> {
    let mut freed = Vec::new();
    let mut held = Vec::new();
    let mut seen = HashSet::new();
    for &id in candidates {
        if !seen.insert(id) {
            continue;
        }
        let refs = ref_counts_in(c, id)?;
        held.push((id, refs.contracts));
        if refs.total() > 0 {
            continue;
        }
        sector_removed_in(c, id)?;
        let copies: Vec<(u32, u64)> = c
            .prepare_cached("DELETE FROM copies WHERE sector_id = ?1 RETURNING volume_id, slot")
            .and_then(|mut s| {
                s.query_map([id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                    .collect()
            })
            .ctx("freeing a sector's copies")?;
        let root: Option<Root> = c
            .prepare_cached("DELETE FROM sectors WHERE id = ?1 RETURNING root")
            .and_then(|mut s| s.query_row([id], |r| root_of(r, 0)).optional())
            .ctx("freeing a sector")?;
        let Some(root) = root else { continue };
        for (volume_id, slot) in copies {
            // a cold copy has no slot: its object is deleted after the
            // commit (a crash first leaves an orphan for the reconcile)
            if volume_id != 0 {
                record_punch_in(c, volume_id, slot)?;
            }
            freed.push(Freed {
                root,
                sector_id: id,
                volume_id,
                slot,
            });
        }
    }
    Ok((freed, held))
}

/// The next id for a row of `table` (whose counter in `settings` is
/// `counter`, migration 6): ids are never given twice, even after the
/// newest row is deleted. Taken in the caller's transaction, so an insert
/// that fails takes nothing.
pub(super) fn next_id(tx: &Transaction, table: &str, counter: &str) -> Result<i64> {
    tx.query_row(
        &format!(
            "UPDATE settings SET value = max(value, (SELECT coalesce(max(id), 0) + 1 \
             FROM {table})) + 1 WHERE key = ?1 RETURNING value - 1"
        ),
        [counter],
        |r| r.get(0),
    )
    .ctx("numbering a new row")
}
