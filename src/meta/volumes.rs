//! Volume rows. A volume is one row whatever its size: slots have no rows.

use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};

use super::db::Meta;
use super::query::next_id;
use crate::error::{DbContext, Error, Result};

/// A volume as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    pub id: u32,
    pub uuid: String,
    pub path: PathBuf,
    pub slots: u64,
    pub readonly: bool,
    /// Its sidecar was written (a volume of an older store gets its own
    /// at its first open; after that a missing one is an alarm).
    pub sidecar: bool,
    pub limits: Limits,
    /// Out of the store without its data moved (`detach`).
    pub detached: bool,
}

/// How much of a volume new sectors may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Share of new sectors (the weighted policy); 0: none.
    pub weight: u32,
    /// Most sectors it holds; 0: no cap.
    pub max_sectors: u64,
    /// No new sectors while its file system has this many bytes free or fewer.
    pub min_free: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            weight: 1,
            max_sectors: 0,
            min_free: 0,
        }
    }
}

impl Meta {
    /// Some volume was added to this store at some time (a store whose
    /// volumes were all removed is no new store).
    pub fn had_volumes(&self) -> Result<bool> {
        self.read(|c| {
            c.query_row(
                "SELECT value > 1 FROM settings WHERE key = 'next_volume_id'",
                [],
                |r| r.get(0),
            )
            .ctx("reading the volume numbering")
        })
    }

    /// The store's uuid, made at the first call.
    pub fn store_uuid(&self) -> Result<String> {
        self.write(|tx| {
            let found: Option<String> = tx
                .query_row("SELECT uuid FROM store WHERE id = 1", [], |r| r.get(0))
                .optional()
                .ctx("reading the store's uuid")?;
            if let Some(uuid) = found {
                return Ok(uuid);
            }
            let uuid = uuid::Uuid::new_v4().to_string();
            tx.execute("INSERT INTO store (id, uuid) VALUES (1, ?1)", [&uuid])
                .ctx("recording the store's uuid")?;
            Ok(uuid)
        })
    }

    /// Records that a volume's sidecar was written.
    pub fn set_sidecar_written(&self, id: u32) -> Result<()> {
        self.update_volume(
            id,
            "UPDATE volumes SET sidecar = 1 WHERE id = ?1",
            params![id],
        )
    }

    pub fn set_limits(&self, id: u32, l: Limits) -> Result<()> {
        self.update_volume(
            id,
            "UPDATE volumes SET weight = ?2, max_sectors = ?3, min_free = ?4 WHERE id = ?1",
            params![id, l.weight, l.max_sectors as i64, l.min_free as i64],
        )
    }

    pub fn set_detached(&self, id: u32, detached: bool) -> Result<()> {
        self.update_volume(
            id,
            "UPDATE volumes SET detached = ?2 WHERE id = ?1",
            params![id, detached],
        )
    }

    pub fn set_volume_path(&self, id: u32, path: &Path) -> Result<()> {
        let text = path_text(path)?;
        self.update_volume(
            id,
            "UPDATE volumes SET path = ?2 WHERE id = ?1",
            params![id, text],
        )
    }

    fn update_volume(&self, id: u32, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<()> {
        self.write(|tx| {
            let n = tx.execute(sql, args).ctx("updating a volume")?;
            if n == 0 {
                return Err(Error::NotFound(format!("there is no volume {id}")));
            }
            Ok(())
        })
    }

    pub fn insert_volume(&self, uuid: &str, path: &Path, slots: u64) -> Result<u32> {
        let path_text = path_text(path)?;
        self.write(|tx| {
            let id = next_id(tx, "volumes", "next_volume_id")?;
            let id = u32::try_from(id).map_err(|_| {
                Error::Invalid(format!("volume ids are used up ({id} given so far)"))
            })?;
            tx.execute(
                "INSERT INTO volumes (id, uuid, path, slots, sidecar) VALUES (?1, ?2, ?3, ?4, 1)",
                params![id, uuid, path_text, slots as i64],
            )
            .map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::ConstraintViolation) => {
                    Error::Exists(format!("a volume at {} is already known", path.display()))
                }
                _ => Error::db("recording a new volume", e),
            })?;
            Ok(id)
        })
    }

    pub fn volumes(&self) -> Result<Vec<VolumeRow>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, uuid, path, slots, readonly, sidecar, weight, max_sectors, \
                     min_free, detached FROM volumes ORDER BY id",
                )
                .ctx("listing volumes")?;
            stmt.query_map([], |r| {
                Ok(VolumeRow {
                    id: r.get(0)?,
                    uuid: r.get(1)?,
                    path: PathBuf::from(r.get::<_, String>(2)?),
                    slots: r.get::<_, i64>(3)? as u64,
                    readonly: r.get(4)?,
                    sidecar: r.get(5)?,
                    limits: Limits {
                        weight: r.get(6)?,
                        max_sectors: r.get::<_, i64>(7)? as u64,
                        min_free: r.get::<_, i64>(8)? as u64,
                    },
                    detached: r.get(9)?,
                })
            })
            .ctx("listing volumes")?
            .collect::<rusqlite::Result<_>>()
            .ctx("listing volumes")
        })
    }

    pub fn set_readonly(&self, id: u32, readonly: bool) -> Result<()> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE volumes SET readonly = ?1 WHERE id = ?2",
                    params![readonly, id],
                )
                .ctx("setting a volume read-only")?;
            if n == 0 {
                return Err(Error::NotFound(format!("there is no volume {id}")));
            }
            Ok(())
        })
    }

    pub fn set_slots(&self, id: u32, slots: u64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE volumes SET slots = ?1 WHERE id = ?2",
                params![slots as i64, id],
            )
            .ctx("resizing a volume")?;
            Ok(())
        })
    }

    /// Number of sectors stored in a volume.
    pub fn used_slots(&self, id: u32) -> Result<u64> {
        self.read(|c| {
            c.prepare_cached("SELECT count(*) FROM copies WHERE volume_id = ?1")
                .and_then(|mut s| s.query_row([id], |r| r.get::<_, i64>(0)))
                .map(|n| n as u64)
                .ctx("counting a volume's sectors")
        })
    }
}

fn path_text(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| Error::Invalid(format!("volume path {} is not valid UTF-8", path.display())))
}
