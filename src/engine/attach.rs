//! Detach and attach: a volume leaves the store without its data moved
//! (its index written into its sidecar, its sectors still referenced and
//! served from other copies), and comes back; or another store's volume
//! is adopted, its sectors verified against their roots as they are
//! registered, and pinned.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Engine, SectorRow, Severity, Volume, VolumeState};
use crate::error::{Error, Result};
use crate::merkle::Root;
use crate::volume::VolumeFile;
use crate::volume::sidecar::{self, IndexEntry, Sidecar};

impl Engine {
    /// `echo 1 > /volumes/<id>/detach`.
    pub fn detach_volume(&self, id: u32) -> Result<()> {
        let v = self.volume(id)?;
        self.check_idle(id)?;
        let (slots, _) = self.alloc.lock().usage(id).unwrap_or((0, 0));
        // no new sector lands there while its index is taken
        self.alloc.lock().set_writable(id, false);
        let index = self.index_of(id);
        let written = index.and_then(|index| {
            let s = Sidecar {
                index: Some(index),
                ..self.sidecar_of(&v.uuid, slots)
            };
            sidecar::write(&v.path, &s).map_err(|e| {
                Error::io(
                    format!("cannot write the index of volume {id} into its sidecar"),
                    e,
                )
            })
        });
        if let Err(e) = written.and_then(|()| self.meta.set_detached(id, true)) {
            self.alloc.lock().set_writable(id, v.writable());
            return Err(e);
        }
        v.close_file_as(VolumeState::Detached);
        self.alloc.lock().set_writable(id, false);
        self.alerts.clear(&format!("volume-unavailable-{id}"));
        tracing::info!(volume = id, "volume {id} ({}) detached", v.path.display());
        self.space_changed();
        self.aggregates_wake();
        self.request_repair(&format!("volume {id} was detached"));
        Ok(())
    }

    /// Every copy on the volume: slot and root.
    fn index_of(&self, id: u32) -> Result<Vec<IndexEntry>> {
        let mut out = Vec::new();
        self.each_copy_on(id, |s| {
            out.push(IndexEntry {
                slot: s.slot,
                root: s.root.to_string(),
            })
        })?;
        Ok(out)
    }

    /// Calls `f` with every copy on volume `id`, by slot, read a page at a
    /// time.
    pub(super) fn each_copy_on(&self, id: u32, mut f: impl FnMut(&SectorRow)) -> Result<()> {
        let mut from = 0;
        loop {
            let page = self.meta.sectors_in_volume(id, from, 4096)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            from = last.slot + 1;
            page.iter().for_each(&mut f);
        }
    }

    /// `echo <path> > /volumes/attach`: this store's detached volume back
    /// in service, or another store's adopted. Returns the volume's id.
    pub fn attach_volume(&self, path: &Path) -> Result<u32> {
        let found = sidecar::read(path)
            .map_err(|e| Error::Invalid(format!("cannot attach {}: {e}", path.display())))?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "{} has no sidecar ({}): it is no sectorfs volume",
                    path.display(),
                    sidecar::path_of(path).display()
                ))
            })?;
        let ours = (found.store_uuid == self.store_uuid)
            .then(|| {
                self.volumes
                    .read()
                    .values()
                    .find(|v| v.uuid == found.volume_uuid)
                    .cloned()
            })
            .flatten();
        if let Some(v) = ours {
            return self.reattach(&v, path, &found).map(|()| v.id);
        }
        if let Some(v) = self.volumes.read().values().find(|v| v.path == path) {
            return Err(Error::Exists(format!(
                "{} is already volume {} of this store",
                path.display(),
                v.id
            )));
        }
        self.adopt(path, found)
    }

    /// This store's detached volume, back in service.
    fn reattach(&self, v: &Arc<Volume>, path: &Path, s: &Sidecar) -> Result<()> {
        if v.state() != VolumeState::Detached {
            return Err(Error::Exists(format!(
                "{} is volume {} of this store, already attached",
                path.display(),
                v.id
            )));
        }
        let id = v.id;
        let (slots, _) = self.alloc.lock().usage(id).unwrap_or((0, 0));
        let file = VolumeFile::open(self.storage(), path, slots)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        let fresh = Sidecar {
            index: None,
            ..s.clone()
        };
        sidecar::write(path, &fresh).map_err(|e| {
            Error::io(
                format!("cannot rewrite the sidecar of {}", path.display()),
                e,
            )
        })?;
        if v.path != path {
            self.meta.set_volume_path(id, path)?;
        }
        self.meta.set_detached(id, false)?;
        let back = Arc::new(Volume::new(
            id,
            v.uuid.clone(),
            path.to_path_buf(),
            Some(file),
            v.readonly(),
        ));
        back.identified.store(true, Ordering::Relaxed);
        {
            let mut alloc = self.alloc.lock();
            alloc.set_device(id, back.device());
            alloc.set_writable(id, back.writable());
        }
        self.volumes.write().insert(id, back);
        tracing::info!(
            volume = id,
            "volume {id} ({}) attached again",
            path.display()
        );
        self.space_changed();
        self.aggregates_wake();
        self.request_repair(&format!("volume {id} was attached again"));
        Ok(())
    }

    /// Another store's volume becomes one of ours: every slot its index
    /// names (every allocated slot, without one) read and hashed, and
    /// registered pinned where the data matches.
    fn adopt(&self, path: &Path, found: Sidecar) -> Result<u32> {
        let slots = found.slots;
        let file = VolumeFile::open(self.storage(), path, slots)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        let expected: Option<HashMap<u64, Root>> = match &found.index {
            Some(index) => Some(
                index
                    .iter()
                    .map(|e| {
                        e.root.parse::<Root>().map(|r| (e.slot, r)).map_err(|_| {
                            Error::Invalid(format!(
                                "the sidecar of {} has a bad root {:?}",
                                path.display(),
                                e.root
                            ))
                        })
                    })
                    .collect::<Result<_>>()?,
            ),
            None => None,
        };
        // a uuid this store already has (a copy of one of its volumes) gets a new one
        let taken = self
            .volumes
            .read()
            .values()
            .any(|v| v.uuid == found.volume_uuid);
        let uuid = match taken {
            true => uuid::Uuid::new_v4().to_string(),
            false => found.volume_uuid.clone(),
        };
        let mut ours = Sidecar {
            volume_uuid: uuid.clone(),
            store_uuid: self.store_uuid.clone(),
            ..found.clone()
        };
        // ours from now on, its index kept until every sector is registered
        sidecar::write(path, &ours).map_err(|e| {
            Error::io(
                format!("cannot rewrite the sidecar of {}", path.display()),
                e,
            )
        })?;
        let id = self.meta.insert_volume(&uuid, path, slots)?;
        // not placeable until its sectors are registered
        let v = self.register_volume(id, uuid, path, file, slots, false);
        let report = self.reconcile(&v, expected.as_ref(), None, false, |_, _| {})?;
        ours.index = None;
        if let Err(e) = sidecar::write(path, &ours) {
            tracing::warn!(volume = id, "cannot drop the index from the sidecar: {e}");
        }
        self.alloc.lock().set_writable(id, v.writable());
        let severity = match report.mismatched {
            0 => Severity::Info,
            _ => Severity::Error,
        };
        self.alerts.raise(
            &format!("adopted-{id}"),
            severity,
            format!(
                "adopted volume {id} ({}) from store {}: {} registered and pinned (verified \
                 against their roots), {} not matching the volume's index",
                path.display(),
                found.store_uuid,
                crate::plural::count(report.found, "sector"),
                crate::plural::count(report.mismatched, "slot")
            ),
            super::alerts::data_of(&report),
        );
        tracing::info!(
            volume = id,
            "adopted {}: {}",
            path.display(),
            report.summary()
        );
        self.space_changed();
        self.room_for_copies(&format!("volume {id} was adopted"));
        Ok(id)
    }
}
