//! A volume's errors: every read or write error, corrupt sector and missing
//! file is counted here, and here alone it is decided when a volume goes
//! out of service (three I/O errors in a row, or its file gone).

use std::sync::atomic::Ordering;

use super::bump;
use super::{Engine, SectorRow, Severity, Volume, VolumeState};
use crate::error::Error;
use crate::volume::is_shared_sync_error;

/// I/O errors in a row after which a volume is taken out of service.
const ERRORS_BEFORE_UNAVAILABLE: u64 = 3;

/// The keys of the alerts this module raises about a volume as a whole.
const VOLUME_ALERTS: [&str; 4] = [
    "overcommit",
    "volume-unavailable",
    "volume-read-errors",
    "volume-write-errors",
];

impl Engine {
    /// A read or write that worked: the errors in a row start again at 0.
    pub(crate) fn note_success(&self, v: &Volume) {
        if v.stats.consecutive_errors.load(Ordering::Relaxed) != 0 {
            v.stats.consecutive_errors.store(0, Ordering::Relaxed);
        }
    }

    /// A client's read of sector `at` failed: counted, alerted, and one more
    /// error in a row.
    pub(crate) fn note_read_error(&self, volume: &Volume, at: &SectorRow, what: &str) {
        bump(&volume.stats.read_errors, 1);
        self.note_io_error(volume, what);
        let errors = volume.stats.snapshot().read_errors;
        self.volume_warning(
            "read-errors",
            volume,
            format!(
                "had read errors ({errors} so far); last: sector {} at slot {}: {what}",
                at.root, at.slot
            ),
            serde_json::json!({"volume": volume.id, "root": at.root.to_string(), "slot": at.slot}),
        );
    }

    /// A write of a new sector failed: counted and alerted; one more error
    /// in a row unless the file system is full or another writer's sync
    /// already counted it.
    pub(crate) fn note_write_error(&self, volume: &Volume, e: &Error) {
        bump(&volume.stats.write_errors, 1);
        // A full file system is no failing device: the volume keeps serving
        // its sectors, and takes new ones again once there is room.
        let full = matches!(e.errno(), libc::ENOSPC | libc::EDQUOT);
        // an error another writer's sync saw (and counted) first
        let shared = matches!(e, Error::Io { source, .. } if is_shared_sync_error(source));
        if !full && !shared {
            self.note_io_error(volume, &e.to_string());
        }
        let what = if full {
            "the file system holding it is full, new sectors go elsewhere"
        } else {
            "had write errors"
        };
        let errors = volume.stats.snapshot().write_errors;
        self.volume_warning(
            "write-errors",
            volume,
            format!(
                "{what} ({} so far); last: {e}",
                crate::plural::count(errors, "write error")
            ),
            serde_json::json!({"volume": volume.id}),
        );
    }

    /// A warning about a volume as a whole, keyed `volume-<kind>-<id>`;
    /// `what` follows the volume's id and path.
    fn volume_warning(&self, kind: &str, v: &Volume, what: String, data: serde_json::Value) {
        self.alerts.raise(
            &format!("volume-{kind}-{}", v.id),
            Severity::Warning,
            format!("volume {} ({}) {what}", v.id, v.path.display()),
            data,
        );
    }

    /// The scrub could not read a sector: one more error in a row (the
    /// scrub keeps no count of its own).
    pub(crate) fn note_scrub_read_error(&self, v: &Volume, what: &str) {
        self.note_io_error(v, what);
    }

    /// Counts and alerts a sector whose data no longer matches its root; its
    /// reads fail with `EIO` from now on.
    pub(crate) fn note_corrupt(&self, v: &Volume, s: &SectorRow) {
        bump(&v.stats.corrupt, 1);
        self.corrupt.lock().insert((s.id, v.id));
        self.record_corrupt(v, s);
        self.heal_later(s);
        self.sector_alert(
            "corrupt",
            v,
            s,
            "is corrupt: its data no longer hashes to its root",
        );
    }

    /// A check could not read a sector: counted and alerted.
    pub(crate) fn note_unreadable(&self, v: &Volume, s: &SectorRow, why: &str) {
        bump(&v.stats.read_errors, 1);
        self.sector_alert("unreadable", v, s, &format!("cannot be read: {why}"));
    }

    /// A job could not move a sector off `v`: counted only (the job logs
    /// it, and keeps or drops the sector).
    pub(crate) fn note_unmovable(&self, v: &Volume, corrupt: bool) {
        if corrupt {
            bump(&v.stats.corrupt, 1);
        } else {
            bump(&v.stats.read_errors, 1);
        }
    }

    /// Takes `v` out of service when its file was removed or replaced under
    /// it (an open volume would go on "working" through the old fd).
    pub(crate) fn check_file_still_there(&self, v: &Volume) {
        let Ok(file) = v.file() else { return };
        match file.still_at_path() {
            Ok(true) => {
                let (slots, _) = self.alloc.lock().usage(v.id).unwrap_or((0, 0));
                if let Err(m) = self.check_identity(v, slots) {
                    self.mark_unavailable(v, &m.reason);
                }
            }
            Ok(false) => self.mark_unavailable(
                v,
                &format!("its file {} was removed or replaced", v.path.display()),
            ),
            Err(e) => self.mark_unavailable(
                v,
                &format!(
                    "its file {} was removed or replaced (it cannot be found: {e})",
                    v.path.display()
                ),
            ),
        }
    }

    /// A volume back in service: no errors in a row, no unavailable alert.
    pub(crate) fn note_back_in_service(&self, v: &Volume) {
        v.stats.consecutive_errors.store(0, Ordering::Relaxed);
        self.alerts.clear(&format!("volume-unavailable-{}", v.id));
    }

    /// A volume removed: its alerts go with it.
    pub(crate) fn clear_volume_alerts(&self, id: u32) {
        for key in VOLUME_ALERTS {
            self.alerts.clear(&format!("{key}-{id}"));
        }
    }

    /// Counts an I/O error; after several in a row the volume is taken out
    /// of service so no new sectors go to it.
    fn note_io_error(&self, v: &Volume, what: &str) {
        let n = v.stats.consecutive_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= ERRORS_BEFORE_UNAVAILABLE && v.state() != VolumeState::Unavailable {
            self.mark_unavailable(v, &format!("{n} I/O errors in a row; last: {what}"));
        }
    }

    /// Takes a volume out of service: no file, no new sectors, an alert.
    pub(crate) fn mark_unavailable(&self, v: &Volume, reason: &str) {
        v.close_file();
        self.aggregates_wake();
        tracing::error!(
            volume = v.id,
            "volume {} is now unavailable: {reason}",
            v.id
        );
        self.alloc.lock().set_writable(v.id, false);
        self.alerts.raise(
            &format!("volume-unavailable-{}", v.id),
            Severity::Error,
            format!(
                "volume {} ({}) is unavailable: {reason}",
                v.id,
                v.path.display()
            ),
            serde_json::json!({"volume": v.id, "path": v.path, "reason": reason}),
        );
        self.space_changed();
    }

    /// An error alert about one sector, keyed `<kind>-<root>`, naming its
    /// root, volume and slot.
    fn sector_alert(&self, kind: &str, v: &Volume, s: &SectorRow, what: &str) {
        self.alerts.raise(
            &format!("{kind}-{}", s.root),
            Severity::Error,
            format!(
                "sector {} in volume {} slot {} {what}",
                s.root, v.id, s.slot
            ),
            serde_json::json!({"root": s.root.to_string(), "volume": v.id, "slot": s.slot}),
        );
    }
}
