//! Stored sectors: where each lives, and inserting new ones with their
//! first reference.

use rusqlite::{Connection, params};

use super::aggregates::sector_added_in;
use super::db::Meta;
use super::pins::pin_in;
use super::query::{
    RefCounts, SECTOR_COLUMNS, SECTOR_COPIES, SECTOR_FIRST_COPY, SectorInfo, SectorKey, SectorRow,
    lookup_in, ref_counts_in, root_of, sector_by_id_in, sector_info_in, sector_of, slot_inside,
};
use super::temp::{add_temp_in, check_expiration_in};
use crate::error::{DbContext, Error, Result};
use crate::merkle::Root;

/// A reason to keep a sector that a write can add. Contract entries are
/// added by revisions instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    Pin,
    /// A temp entry expiring at this height.
    Temp(u64),
}

/// What inserting a sector found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// A new sector row now owns the slots given, but for those in `gone`
    /// (no longer inside their volume, or not intact), which are still the
    /// caller's to release.
    New { id: i64, gone: Vec<(u32, u64)> },
    /// Another writer stored the root first; only the reference was added,
    /// and the slots given are still the caller's to release.
    AlreadyStored(i64),
    /// No slot given is still inside its volume (it shrank or was removed
    /// while the data was being written): nothing was recorded.
    SlotGone,
}

impl Meta {
    pub fn lookup(&self, root: &Root) -> Result<Option<SectorRow>> {
        self.read(|c| lookup_in(c, root))
    }

    /// Sets sector `id`'s modification time (Unix nanoseconds); false if
    /// it is no longer stored.
    pub fn set_mtime(&self, id: i64, mtime_ns: i64) -> Result<bool> {
        self.write(|tx| {
            tx.prepare_cached("UPDATE sectors SET mtime_ns = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, mtime_ns]))
                .map(|n| n > 0)
                .ctx("setting a sector's modification time")
        })
    }

    /// A sector without its copies (cheaper: names and attributes).
    pub fn sector_info(&self, key: SectorKey) -> Result<Option<SectorInfo>> {
        self.read(|c| sector_info_in(c, key))
    }

    pub fn sector_by_id(&self, id: i64) -> Result<Option<SectorRow>> {
        self.read(|c| sector_by_id_in(c, id))
    }

    /// One page of sectors in id order after `after_id`, without their
    /// copies (a listing of names).
    pub fn list_sector_infos(&self, after_id: i64, limit: usize) -> Result<Vec<SectorInfo>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, root, stored_at, mtime_ns FROM sectors WHERE id > ?1 \
                     ORDER BY id LIMIT ?2",
                )
                .ctx("listing sectors")?;
            let rows = stmt
                .query_map(params![after_id, limit as i64], |r| {
                    Ok(SectorInfo {
                        id: r.get(0)?,
                        root: root_of(r, 1)?,
                        stored_at: r.get(2)?,
                        mtime_ns: r.get(3)?,
                    })
                })
                .ctx("listing sectors")?;
            rows.collect::<rusqlite::Result<_>>().ctx("listing sectors")
        })
    }

    /// One page of sectors in id order after `after_id` (keyset paging, so
    /// listing a million sectors never holds them all).
    pub fn list_sectors(&self, after_id: i64, limit: usize) -> Result<Vec<SectorRow>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {SECTOR_COLUMNS} FROM {SECTOR_FIRST_COPY} WHERE s.id > ?1 \
                     ORDER BY s.id LIMIT ?2"
                ))
                .ctx("listing sectors")?;
            let rows = stmt
                .query_map(params![after_id, limit as i64], sector_of)
                .ctx("listing sectors")?;
            rows.collect::<rusqlite::Result<_>>().ctx("listing sectors")
        })
    }

    /// Every copy in one volume, in slot order, from `from_slot` on.
    pub fn sectors_in_volume(
        &self,
        volume_id: u32,
        from_slot: u64,
        limit: usize,
    ) -> Result<Vec<SectorRow>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {SECTOR_COLUMNS} FROM {SECTOR_COPIES} \
                     WHERE c.volume_id = ?1 AND c.slot >= ?2 ORDER BY c.slot LIMIT ?3"
                ))
                .ctx("listing a volume's sectors")?;
            let rows = stmt
                .query_map(
                    params![volume_id, from_slot as i64, limit as i64],
                    sector_of,
                )
                .ctx("listing a volume's sectors")?;
            rows.collect::<rusqlite::Result<_>>()
                .ctx("listing a volume's sectors")
        })
    }

    /// Calls `f(volume_id, slot)` for every occupied slot (used at open to
    /// derive the free slots, which have no rows).
    pub fn for_each_occupied(&self, mut f: impl FnMut(u32, u64)) -> Result<()> {
        self.read(|c| {
            let mut stmt = c
                .prepare("SELECT volume_id, slot FROM copies")
                .ctx("reading occupied slots")?;
            let mut rows = stmt.query([]).ctx("reading occupied slots")?;
            while let Some(row) = rows.next().ctx("reading occupied slots")? {
                let vol: u32 = row.get(0).ctx("reading occupied slots")?;
                let slot: i64 = row.get(1).ctx("reading occupied slots")?;
                f(vol, slot as u64);
            }
            Ok(())
        })
    }

    pub fn count_sectors(&self) -> Result<u64> {
        self.read(|c| {
            c.query_row("SELECT count(*) FROM sectors", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .ctx("counting sectors")
        })
    }

    pub fn ref_counts(&self, sector_id: i64) -> Result<RefCounts> {
        self.read(|c| ref_counts_in(c, sector_id))
    }

    /// Records a sector just written and synced to `slots` (volume, slot:
    /// one per copy, each on its own volume), with its first reference, in
    /// one transaction. If the root was stored meanwhile by another writer,
    /// only the reference is added. `intact(volume)` is asked inside the
    /// transaction whether a copy's slot still holds what was written.
    pub fn insert_sector(
        &self,
        root: &Root,
        slots: &[(u32, u64)],
        stored_at: i64,
        reference: Reference,
        intact: &dyn Fn(u32) -> bool,
    ) -> Result<Inserted> {
        self.write(|tx| {
            if let Some(existing) = lookup_in(tx, root)? {
                add_reference_in(tx, existing.id, reference)?;
                return Ok(Inserted::AlreadyStored(existing.id));
            }
            check_reference(tx, reference)?;
            // a slot reserved before a shrink or removal began may no
            // longer exist by the time its data is written
            let mut kept = Vec::with_capacity(slots.len());
            let mut gone = Vec::new();
            for &(volume_id, slot) in slots {
                if slot_inside(tx, volume_id, slot)? && intact(volume_id) {
                    kept.push((volume_id, slot));
                } else {
                    gone.push((volume_id, slot));
                }
            }
            if kept.is_empty() {
                return Ok(Inserted::SlotGone);
            }
            tx.prepare_cached("INSERT INTO sectors (root, stored_at) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![&root.0[..], stored_at]))
                .ctx("recording a new sector")?;
            let id = tx.last_insert_rowid();
            for (volume_id, slot) in kept {
                insert_copy_in(tx, id, volume_id, slot, stored_at)?;
            }
            sector_added_in(tx, id)?;
            add_reference_in(tx, id, reference)?;
            Ok(Inserted::New { id, gone })
        })
    }

    /// Adds a reference to a stored sector. `NotFound` when it is not stored.
    pub fn add_reference(&self, root: &Root, reference: Reference) -> Result<i64> {
        self.write(|tx| {
            let sector = lookup_in(tx, root)?
                .ok_or_else(|| Error::NotFound(format!("sector {root} is not stored")))?;
            add_reference_in(tx, sector.id, reference)?;
            Ok(sector.id)
        })
    }
}

/// Records a copy of sector `id` at (`volume_id`, `slot`).
pub(super) fn insert_copy_in(
    c: &Connection,
    id: i64,
    volume_id: u32,
    slot: u64,
    added_at: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO copies (sector_id, volume_id, slot, added_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![id, volume_id, slot as i64, added_at]))
    .ctx("recording a sector's copy")?;
    Ok(())
}

/// Refuses a reference that could never hold (a temp entry that is already
/// expired) before anything is written.
fn check_reference(c: &Connection, reference: Reference) -> Result<()> {
    match reference {
        Reference::Pin => Ok(()),
        Reference::Temp(expiration) => check_expiration_in(c, expiration),
    }
}

fn add_reference_in(c: &Connection, sector_id: i64, reference: Reference) -> Result<()> {
    match reference {
        Reference::Pin => pin_in(c, sector_id),
        Reference::Temp(expiration) => add_temp_in(c, expiration, sector_id),
    }
}
