//! Helpers for benchmarks and tests only (feature `bench`): a store of a
//! million sectors made without writing them, and the database's size.

use std::path::PathBuf;

use rusqlite::params;

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
                .prepare_cached("INSERT INTO sectors (root, stored_at) VALUES (?1, ?2)")
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
            Ok(())
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
