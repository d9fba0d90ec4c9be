//! The cold tier's rows. A sector's object in the cold store is one more
//! copy: a `copies` row on volume [`COLD_VOLUME`] (no volume has id 0) with
//! the sector's id as its slot, so everything that counts, frees or lists
//! copies sees it. When sectors were last read (`sectors.read_at`, kept in
//! memory and saved in batches) says which go cold.

use rusqlite::params;

use super::aggregates::{copy_counted_in, restate_in};
use super::db::Meta;
use super::query::root_of;
use super::sectors::insert_copy_in;
use crate::error::{DbContext, Result};
use crate::merkle::Root;

pub use super::aggregates::COLD_VOLUME;

/// Objects [`Meta::cold_only_after`] looks through at most.
const AHEAD_SCAN: i64 = 64;

/// What the cold tier holds, as recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColdCounts {
    /// Sectors with an object in the cold store.
    pub objects: u64,
    /// Of those, sectors with no local copy.
    pub cold_only: u64,
}

impl Meta {
    /// Up to `limit` sectors after id `after` not read (nor stored) since
    /// `cutoff` (unix seconds), held by a pin or a contract (not temp
    /// entries alone), that the mover has work on: no object yet, or (with
    /// `drop_local`) more local copies than `keep`.
    pub fn cold_candidates(
        &self,
        cutoff: i64,
        after: i64,
        drop_local: bool,
        keep: u32,
        limit: usize,
    ) -> Result<Vec<i64>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT s.id FROM sectors s WHERE s.id > ?1 \
                     AND coalesce(s.read_at, s.stored_at) <= ?2 \
                     AND (EXISTS (SELECT 1 FROM pins p WHERE p.sector_id = s.id) \
                          OR EXISTS (SELECT 1 FROM contract_entries e WHERE e.sector_id = s.id)) \
                     AND EXISTS (SELECT 1 FROM copies c WHERE c.sector_id = s.id AND c.volume_id != 0) \
                     AND (NOT EXISTS (SELECT 1 FROM copies c WHERE c.sector_id = s.id AND c.volume_id = 0) \
                          OR (?3 AND (SELECT count(*) FROM copies c WHERE c.sector_id = s.id \
                                      AND c.volume_id != 0) > ?4)) \
                     ORDER BY s.id LIMIT ?5",
                )
                .ctx("listing sectors to move to the cold tier")?;
            let rows = stmt
                .query_map(params![after, cutoff, drop_local, keep, limit as i64], |r| {
                    r.get(0)
                })
                .ctx("listing sectors to move to the cold tier")?;
            rows.collect::<rusqlite::Result<_>>()
                .ctx("listing sectors to move to the cold tier")
        })
    }

    /// Records sector `id`'s object in the cold store as one of its copies;
    /// false when the sector is no longer stored (or has one already).
    pub fn add_cold_copy(&self, id: i64, added_at: i64) -> Result<bool> {
        self.write(|tx| {
            let stored: bool = tx
                .prepare_cached("SELECT 1 FROM sectors WHERE id = ?1")
                .and_then(|mut s| s.exists([id]))
                .ctx("looking up a sector")?;
            let has: bool = tx
                .prepare_cached("SELECT 1 FROM copies WHERE sector_id = ?1 AND volume_id = 0")
                .and_then(|mut s| s.exists([id]))
                .ctx("looking up a cold copy")?;
            if !stored || has {
                return Ok(false);
            }
            insert_copy_in(tx, id, COLD_VOLUME, id as u64, added_at)?;
            copy_counted_in(tx, id, COLD_VOLUME, true)?;
            restate_in(tx, id)?;
            Ok(true)
        })
    }

    /// The sector stored under `root` has an object in the cold store.
    pub fn has_cold_copy(&self, root: &Root) -> Result<bool> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT 1 FROM sectors s JOIN copies c ON c.sector_id = s.id \
                 WHERE s.root = ?1 AND c.volume_id = 0",
            )
            .and_then(|mut s| s.exists([&root.0[..]]))
            .ctx("looking up a cold copy")
        })
    }

    /// Up to `limit` sectors after id `after`, in listing order (by id),
    /// stored in the cold store only: the ones a reader going through
    /// `/sectors` reads next from the store. Looks at the next
    /// [`AHEAD_SCAN`] objects only (with keep-local, most have local
    /// copies too).
    pub fn cold_only_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, Root)>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT s.id, s.root FROM \
                     (SELECT sector_id FROM copies WHERE volume_id = 0 AND slot > ?1 \
                      ORDER BY slot LIMIT ?2) o \
                     JOIN sectors s ON s.id = o.sector_id \
                     WHERE NOT EXISTS (SELECT 1 FROM copies l \
                                       WHERE l.sector_id = s.id AND l.volume_id != 0) \
                     ORDER BY s.id LIMIT ?3",
                )
                .ctx("finding the next cold sectors")?;
            let rows = stmt
                .query_map(params![after, AHEAD_SCAN, limit as i64], |r| {
                    Ok((r.get(0)?, root_of(r, 1)?))
                })
                .ctx("finding the next cold sectors")?;
            rows.collect::<rusqlite::Result<_>>()
                .ctx("finding the next cold sectors")
        })
    }

    /// Saves when sectors were last read (id, unix seconds).
    pub fn save_read_times(&self, reads: &[(i64, i64)]) -> Result<()> {
        if reads.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE sectors SET read_at = max(coalesce(read_at, 0), ?2) WHERE id = ?1",
                )
                .ctx("saving when sectors were read")?;
            for (id, at) in reads {
                stmt.execute(params![id, at])
                    .ctx("saving when sectors were read")?;
            }
            Ok(())
        })
    }

    /// How many sectors have an object in the cold store, and how many
    /// have nothing else: kept up to date by triggers on `copies`
    /// (migration 13), so a read of /status does not count them.
    pub fn cold_counts(&self) -> Result<ColdCounts> {
        self.read(|c| {
            c.query_row(
                "SELECT objects, cold_only FROM cold_totals WHERE id = 0",
                [],
                |r| {
                    Ok(ColdCounts {
                        objects: r.get::<_, i64>(0)? as u64,
                        cold_only: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .ctx("counting cold copies")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Reference;

    fn root(n: u8) -> Root {
        Root([n; 32])
    }

    /// The next cold-only sectors in listing order: sectors with a local
    /// copy (kept or never cold) are passed over, the limit holds.
    #[test]
    fn cold_only_after_lists_the_next_cold_only_sectors_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("db")).unwrap();
        let v = meta.insert_volume("a", &dir.path().join("a"), 100).unwrap();
        let yes = |_: u32| true;
        let mut ids = Vec::new();
        for n in 0..6u8 {
            meta.insert_sector(&root(n), &[(v, n as u64)], 1, Reference::Pin, &yes)
                .unwrap();
            ids.push(meta.lookup(&root(n)).unwrap().unwrap().id);
        }
        // 1, 2, 4 and 5 go cold; 2 keeps its local copy; 3 never goes
        for n in [1, 2, 4, 5] {
            assert!(meta.add_cold_copy(ids[n], 1).unwrap());
        }
        for n in [1, 4, 5] {
            assert!(meta.drop_copy(ids[n], v, n as u64).unwrap());
        }
        let after = |n: usize, limit| {
            let got = meta.cold_only_after(ids[n], limit).unwrap();
            got.iter()
                .map(|(id, r)| (ids.iter().position(|i| i == id).unwrap(), *r))
                .collect::<Vec<_>>()
        };
        assert_eq!(after(0, 1), vec![(1, root(1))]);
        assert_eq!(after(1, 1), vec![(4, root(4))], "2 has a local copy");
        assert_eq!(after(1, 5), vec![(4, root(4)), (5, root(5))]);
        assert_eq!(after(5, 1), vec![]);
    }
}
