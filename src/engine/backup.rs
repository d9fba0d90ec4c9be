//! Metadata backups: a consistent copy of the database written beside
//! every volume (`<path>.sectorfs.db`, replaced atomically) every
//! `--backup-interval` and at a clean unmount, so `sectorfs recover` can
//! rebuild a store whose database disk died.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Engine, Severity, now_secs};
use crate::error::{Error, Result};
use crate::volume::sidecar;

/// The backup beside a volume file.
pub fn backup_path(volume: &std::path::Path) -> PathBuf {
    sidecar::beside(volume, ".sectorfs.db")
}

impl Engine {
    /// Writes the backup beside every volume that can be read now (never
    /// beside one that is unavailable: an empty mount point must not fill
    /// up). Returns how many were written; an alert when any failed.
    pub fn backup_now(&self) -> Result<usize> {
        let result = self.write_backups();
        match &result {
            Ok(n) => {
                self.alerts.clear("backup-failed");
                tracing::info!(
                    "metadata backup written beside {}",
                    crate::plural::count(*n as u64, "volume")
                );
            }
            Err(e) => {
                tracing::error!("metadata backup failed: {e}");
                self.alerts.raise(
                    "backup-failed",
                    Severity::Error,
                    format!("the metadata backup failed: {e}"),
                    serde_json::json!({}),
                );
            }
        }
        result
    }

    fn write_backups(&self) -> Result<usize> {
        let at = now_secs();
        let tmp = self.data_dir.join("sectorfs.db.backup");
        let _ = std::fs::remove_file(&tmp);
        self.meta.vacuum_into(&tmp, at)?;
        let mut written = 0;
        let mut failed = Vec::new();
        for id in self.volume_ids() {
            let Ok(v) = self.volume(id) else { continue };
            if !v.readable() {
                continue;
            }
            let dest = backup_path(&v.path);
            let copied = sidecar::replace_file(&dest, |f| {
                let mut from = std::fs::File::open(&tmp)?;
                std::io::copy(&mut from, f).map(|_| ())
            });
            match copied {
                Ok(()) => written += 1,
                Err(e) => failed.push(format!("{}: {e}", dest.display())),
            }
        }
        let _ = std::fs::remove_file(&tmp);
        if !failed.is_empty() {
            return Err(Error::Unavailable(format!(
                "cannot write {}",
                failed.join("; ")
            )));
        }
        if written > 0 {
            self.meta.set_last_backup(at)?;
        }
        Ok(written)
    }

    /// When the last backup was written (unix seconds; 0: never).
    pub fn last_backup(&self) -> i64 {
        self.meta.last_backup().unwrap_or(0)
    }

    /// Writes the backups every `interval` until shutdown (0: only when
    /// asked, as at a clean unmount).
    pub fn start_backups(self: &Arc<Self>, interval: Duration) -> Result<()> {
        if interval.is_zero() {
            return Ok(());
        }
        self.spawn_background("backup", move |engine| {
            while engine.sleep_unless_stopping(interval) {
                let _ = engine.backup_now();
            }
        })
    }
}
