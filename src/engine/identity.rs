//! Volume identity: every volume file has a sidecar naming its uuid and its
//! store's. A volume whose sidecar is missing or names another volume (an
//! empty mount point, another disk mounted at its path) is never written
//! to and none of its sectors is dropped: it is unavailable until its own
//! file is back.

use std::sync::atomic::Ordering;

use super::{Engine, Severity, Volume};
use crate::volume::VolumeFile;
use crate::volume::sidecar::{self, Sidecar};

/// Why a volume's sidecar does not let it be used.
pub(crate) struct Mismatch {
    pub reason: String,
    pub found: Option<String>,
}

impl Engine {
    /// The store's uuid, named in every volume's sidecar.
    pub fn store_uuid(&self) -> &str {
        &self.store_uuid
    }

    /// The sidecar this store writes for the volume with uuid `uuid`.
    pub(crate) fn sidecar_of(&self, uuid: &str, slots: u64) -> Sidecar {
        Sidecar {
            volume_uuid: uuid.to_string(),
            store_uuid: self.store_uuid.clone(),
            slots,
            index: None,
        }
    }

    /// Checks `v`'s sidecar against the database, once its file opened. A
    /// volume that never had one (a store made before sidecars, an
    /// import) gets it now.
    pub(crate) fn check_identity(&self, v: &Volume, slots: u64) -> Result<(), Mismatch> {
        let path = sidecar::path_of(&v.path);
        let expected = format!("volume {} of store {}", v.uuid, self.store_uuid);
        match sidecar::read(&v.path) {
            Ok(Some(s)) if s.volume_uuid == v.uuid && s.store_uuid == self.store_uuid => {
                if !v.identified.load(Ordering::Relaxed) {
                    self.note_sidecar_written(v);
                }
                Ok(())
            }
            Ok(Some(s)) => Err(Mismatch {
                reason: format!(
                    "its sidecar {} names volume {} of store {}, expected {expected}: another \
                     disk at its path?",
                    path.display(),
                    s.volume_uuid,
                    s.store_uuid
                ),
                found: Some(s.volume_uuid),
            }),
            Ok(None) if !v.identified.load(Ordering::Relaxed) => {
                match sidecar::write(&v.path, &self.sidecar_of(&v.uuid, slots)) {
                    Ok(()) => {
                        tracing::info!(volume = v.id, "wrote the sidecar {}", path.display());
                        self.note_sidecar_written(v);
                    }
                    // it works on without one, and is tried again next open
                    Err(e) => {
                        self.alerts.raise(
                            &format!("sidecar-{}", v.id),
                            Severity::Warning,
                            format!(
                                "cannot write the sidecar {} of volume {}: {e}",
                                path.display(),
                                v.id
                            ),
                            serde_json::json!({"volume": v.id}),
                        );
                    }
                }
                Ok(())
            }
            Ok(None) => Err(Mismatch {
                reason: format!(
                    "its sidecar {} is missing: expected {expected}, found none (an empty mount \
                     point, or another disk at its path?)",
                    path.display()
                ),
                found: None,
            }),
            Err(e) => Err(Mismatch {
                reason: format!(
                    "cannot read its sidecar {} (expected {expected}): {e}",
                    path.display()
                ),
                found: None,
            }),
        }
    }

    /// Opens `v`'s file once its sidecar says it is this volume (a
    /// volume that never had one: the file first, then its sidecar made).
    pub(crate) fn open_checked(&self, v: &Volume, slots: u64) -> Result<VolumeFile, Mismatch> {
        let open = || {
            VolumeFile::open(self.storage(), &v.path, slots).map_err(|e| Mismatch {
                reason: format!("cannot open {}: {e}", v.path.display()),
                found: None,
            })
        };
        if v.identified.load(Ordering::Relaxed) {
            self.check_identity(v, slots)?;
            open()
        } else {
            let file = open()?;
            self.check_identity(v, slots)?;
            Ok(file)
        }
    }

    fn note_sidecar_written(&self, v: &Volume) {
        match self.meta.set_sidecar_written(v.id) {
            Ok(()) => {
                v.identified.store(true, Ordering::Relaxed);
                self.alerts.clear(&format!("sidecar-{}", v.id));
            }
            Err(e) => tracing::warn!(volume = v.id, "cannot record its sidecar: {e}"),
        }
    }

    /// Rewrites a volume's sidecar (its slot count changed).
    pub(crate) fn rewrite_sidecar(&self, v: &Volume, slots: u64) {
        if let Err(e) = sidecar::write(&v.path, &self.sidecar_of(&v.uuid, slots)) {
            tracing::warn!(
                volume = v.id,
                "cannot rewrite the sidecar of {}: {e}",
                v.path.display()
            );
        }
    }
}
