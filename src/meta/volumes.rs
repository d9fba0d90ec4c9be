//! Volume rows. A volume is one row whatever its size: slots have no rows.

use std::path::{Path, PathBuf};

use rusqlite::params;

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

    pub fn insert_volume(&self, uuid: &str, path: &Path, slots: u64) -> Result<u32> {
        let path_text = path_text(path)?;
        self.write(|tx| {
            let id = next_id(tx, "volumes", "next_volume_id")?;
            let id = u32::try_from(id).map_err(|_| {
                Error::Invalid(format!("volume ids are used up ({id} given so far)"))
            })?;
            tx.execute(
                "INSERT INTO volumes (id, uuid, path, slots) VALUES (?1, ?2, ?3, ?4)",
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
                .prepare_cached("SELECT id, uuid, path, slots, readonly FROM volumes ORDER BY id")
                .ctx("listing volumes")?;
            stmt.query_map([], |r| {
                Ok(VolumeRow {
                    id: r.get(0)?,
                    uuid: r.get(1)?,
                    path: PathBuf::from(r.get::<_, String>(2)?),
                    slots: r.get::<_, i64>(3)? as u64,
                    readonly: r.get(4)?,
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
