//! Helpers for benchmarks and tests only (feature `bench`): a store of a
//! million sectors made without writing them, and the database's size.

use std::path::PathBuf;

use rusqlite::params;

use super::aggregates::{Agg, Scope, add_in, rebuild_in};
use super::db::Meta;
use crate::error::{DbContext, Error, Result};
use crate::merkle::Root;

impl Meta {
    /// Records `roots` as pinned sectors in consecutive slots of
    /// `volume_id` from `first_slot` on, in ONE transaction, without writing
    /// any data. The engine's free-slot map is built at open, so reopen the
    /// engine before writing to that volume.
    pub fn insert_synthetic(
        &self,
        volume_id: u32,
        first_slot: u64,
        roots: &[Root],
        stored_at: i64,
    ) -> Result<()> {
        self.write(|tx| {
            let mut sector = tx
                .prepare_cached(
                    "INSERT INTO sectors (root, stored_at, ready, health) VALUES (?1, ?2, 1, \
                     CASE WHEN (SELECT value FROM settings WHERE key = 'copies_min') > 1 \
                     THEN 1 ELSE 0 END)",
                )
                .ctx("recording synthetic sectors")?;
            let mut copy = tx
                .prepare_cached(
                    "INSERT INTO copies (sector_id, volume_id, slot, added_at) \
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .ctx("recording synthetic sectors")?;
            let mut pin = tx
                .prepare_cached("INSERT INTO pins (sector_id) VALUES (?1)")
                .ctx("recording synthetic sectors")?;
            for (i, root) in roots.iter().enumerate() {
                let slot = (first_slot + i as u64) as i64;
                sector
                    .execute(params![&root.0[..], stored_at])
                    .ctx("recording synthetic sectors")?;
                let id = tx.last_insert_rowid();
                copy.execute(params![id, volume_id, slot, stored_at])
                    .ctx("recording synthetic sectors")?;
                pin.execute([id]).ctx("recording synthetic sectors")?;
            }
            if roots.is_empty() {
                return Ok(());
            }
            // counted as the writes would have: one ready copy each
            let health: i64 = tx
                .query_row(
                    "SELECT health FROM sectors WHERE id = ?1",
                    [tx.last_insert_rowid()],
                    |r| r.get(0),
                )
                .ctx("recording synthetic sectors")?;
            let n = roots.len() as i64;
            let all = Agg::of_sector(health, n, n);
            for scope in [
                Scope::Store,
                Scope::Ready(1),
                Scope::Volume(volume_id),
                Scope::Pins,
            ] {
                add_in(tx, scope, all)?;
            }
            Ok(())
        })
    }

    /// `contracts` synthetic contracts (`bench-<n>`) of `entries_each`
    /// entries each, naming the sectors with ids from `first_sector` on in
    /// turn (wrapping after `sectors`), in one transaction; the aggregates
    /// are recounted from the tables at the end.
    pub fn insert_synthetic_contracts(
        &self,
        contracts: u64,
        entries_each: u64,
        first_sector: i64,
        sectors: u64,
    ) -> Result<()> {
        self.write(|tx| {
            let mut contract = tx
                .prepare_cached("INSERT INTO contracts (id, name, revision) VALUES (?1, ?2, ?1)")
                .ctx("recording synthetic contracts")?;
            let mut entry = tx
                .prepare_cached(
                    "INSERT INTO contract_entries (contract_id, idx, sector_id) VALUES (?1, ?2, ?3)",
                )
                .ctx("recording synthetic contracts")?;
            let first_id: i64 = tx
                .query_row(
                    "SELECT coalesce(max(id), 0) + 1 FROM contracts",
                    [],
                    |r| r.get(0),
                )
                .ctx("recording synthetic contracts")?;
            let mut k: u64 = 0;
            for c in 0..contracts as i64 {
                let id = first_id + c;
                contract
                    .execute(params![id, format!("bench-{id}")])
                    .ctx("recording synthetic contracts")?;
                for i in 0..entries_each as i64 {
                    entry
                        .execute(params![id, i, first_sector + (k % sectors.max(1)) as i64])
                        .ctx("recording synthetic contracts")?;
                    k += 1;
                }
            }
            tx.execute(
                "UPDATE settings SET value = max(value, ?1) WHERE key = 'next_contract_id'",
                [first_id + contracts as i64],
            )
            .ctx("recording synthetic contracts")?;
            rebuild_in(tx)
        })
    }

    /// Bytes the database occupies on disk, WAL included (a WAL that is
    /// not there counts nothing).
    pub fn size_bytes(&self) -> Result<u64> {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        let mut total = 0;
        for path in [&self.path, &wal] {
            match std::fs::metadata(path) {
                Ok(m) => total += m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && *path == wal => {}
                Err(e) => {
                    let context = format!("measuring the database file {}", path.display());
                    return Err(Error::io(context, e));
                }
            }
        }
        Ok(total)
    }

    /// Folds the WAL back into the main file (used before measuring size).
    pub fn checkpoint(&self) -> Result<()> {
        self.writer
            .lock()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .ctx("checkpointing the WAL")
    }
}
