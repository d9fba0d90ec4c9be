//! Volumes as the engine sees them: the open file, state, counters, and
//! adding one or setting it read-only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;
use serde::Serialize;

use super::Engine;
use super::slots::SlotMap;
use crate::error::{Error, Result};
use crate::volume::{SECTOR_BYTES, VolumeFile};

/// The most slots one volume may have: 2^30, a 4 PiB volume. Every slot
/// costs a bit of memory while the store is open (128 MiB at this size), and
/// file systems such as tmpfs and XFS accept sparse files up to 8 EiB, whose
/// bitmap (256 GiB) would abort the daemon at every start.
pub const MAX_SLOTS: u64 = 1 << 30;
const _: () = assert!(MAX_SLOTS <= (i64::MAX as u64) / SECTOR_BYTES);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeState {
    Ready,
    Resizing,
    Removing,
    Checking,
    Unavailable,
    /// Out of the store without its data moved (`detach`), until attached.
    Detached,
}

impl std::fmt::Display for VolumeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VolumeState::Ready => "ready",
            VolumeState::Resizing => "resizing",
            VolumeState::Removing => "removing",
            VolumeState::Checking => "checking",
            VolumeState::Unavailable => "unavailable",
            VolumeState::Detached => "detached",
        })
    }
}

/// Per-volume counters, kept in memory since the mount started.
#[derive(Debug, Default)]
pub struct VolumeStats {
    pub reads: AtomicU64,
    pub bytes_read: AtomicU64,
    pub writes: AtomicU64,
    pub read_errors: AtomicU64,
    pub write_errors: AtomicU64,
    pub corrupt: AtomicU64,
    /// Bad copies rewritten from a good copy of the same sector.
    pub healed: AtomicU64,
    /// I/O errors since the last success: too many take the volume offline.
    pub consecutive_errors: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub reads: u64,
    pub bytes_read: u64,
    pub writes: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub corrupt: u64,
    pub healed: u64,
}

impl VolumeStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            reads: get(&self.reads),
            bytes_read: get(&self.bytes_read),
            writes: get(&self.writes),
            read_errors: get(&self.read_errors),
            write_errors: get(&self.write_errors),
            corrupt: get(&self.corrupt),
            healed: get(&self.healed),
        }
    }
}

#[derive(Debug)]
pub struct Volume {
    pub id: u32,
    pub uuid: String,
    pub path: PathBuf,
    /// `None` while the volume is unavailable.
    file: RwLock<Option<Arc<VolumeFile>>>,
    readonly: AtomicBool,
    state: RwLock<VolumeState>,
    /// The device its file is on (`st_dev`), as of when it was opened.
    device: AtomicU64,
    pub stats: VolumeStats,
    /// Its sidecar was written (see `identity.rs`).
    pub(crate) identified: AtomicBool,
}

/// The device `path` is on; a volume whose device cannot be told gets one
/// of its own (`u64::MAX - id`), so it never seems to share one.
fn device_of(id: u32, path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(u64::MAX - id as u64, |m| m.dev())
}

impl Volume {
    pub(crate) fn new(
        id: u32,
        uuid: String,
        path: PathBuf,
        file: Option<VolumeFile>,
        readonly: bool,
    ) -> Volume {
        let state = if file.is_some() {
            VolumeState::Ready
        } else {
            VolumeState::Unavailable
        };
        let device = device_of(id, &path);
        Volume {
            id,
            uuid,
            path,
            file: RwLock::new(file.map(Arc::new)),
            readonly: AtomicBool::new(readonly),
            state: RwLock::new(state),
            device: AtomicU64::new(device),
            stats: VolumeStats::default(),
            identified: AtomicBool::new(false),
        }
    }

    /// Gives a volume made without its file (at open, before its
    /// identity was checked) its file: ready.
    pub(crate) fn open_with(&mut self, file: Arc<VolumeFile>) {
        *self.file.get_mut() = Some(file);
        *self.state.get_mut() = VolumeState::Ready;
    }

    /// The open file, or `EIO` with the reason when the volume is unavailable.
    pub fn file(&self) -> Result<Arc<VolumeFile>> {
        self.file.read().clone().ok_or_else(|| {
            Error::Unavailable(format!(
                "volume {} ({}) is unavailable",
                self.id,
                self.path.display()
            ))
        })
    }

    pub fn readonly(&self) -> bool {
        self.readonly.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> VolumeState {
        *self.state.read()
    }

    /// Takes new sectors: not read-only, and neither unavailable nor being
    /// removed (a shrinking volume takes them below its new size).
    pub fn writable(&self) -> bool {
        !self.readonly()
            && matches!(
                self.state(),
                VolumeState::Ready | VolumeState::Resizing | VolumeState::Checking
            )
    }

    /// `file` is the volume's file now (it was not closed, nor replaced
    /// by a reopened one, since it was taken).
    pub(crate) fn holds(&self, file: &Arc<VolumeFile>) -> bool {
        self.file
            .read()
            .as_ref()
            .is_some_and(|f| Arc::ptr_eq(f, file))
    }

    pub(crate) fn set_file(&self, file: Arc<VolumeFile>) {
        self.device
            .store(device_of(self.id, &self.path), Ordering::Relaxed);
        *self.file.write() = Some(file);
    }

    /// The device its file is on (`st_dev`).
    pub fn device(&self) -> u64 {
        self.device.load(Ordering::Relaxed)
    }

    /// Its sectors can be read: it has its file and is not out of service.
    pub fn readable(&self) -> bool {
        self.state() != VolumeState::Unavailable && self.file.read().is_some()
    }

    /// Drops the file and shows the volume unavailable (see
    /// `set_state_if_open` for the order of the locks).
    pub(crate) fn close_file(&self) {
        self.close_file_as(VolumeState::Unavailable);
    }

    /// Drops the file and shows `state` (unavailable or detached).
    pub(crate) fn close_file_as(&self, to: VolumeState) {
        let mut state = self.state.write();
        *self.file.write() = None;
        *state = to;
    }

    pub(crate) fn set_state(&self, state: VolumeState) {
        *self.state.write() = state;
    }

    /// Sets `state`, or `Unavailable` if the volume has no open file:
    /// decided under the state's lock, which `close_file` takes before it
    /// drops the file, so a volume never shows a state it cannot serve.
    pub(crate) fn set_state_if_open(&self, state: VolumeState) {
        let mut now = self.state.write();
        *now = if self.file.read().is_some() {
            state
        } else {
            VolumeState::Unavailable
        };
    }
}

/// A volume's row plus its live numbers, for listings and control files.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeInfo {
    pub id: u32,
    pub uuid: String,
    pub path: PathBuf,
    pub slots: u64,
    pub used: u64,
    pub readonly: bool,
    pub state: VolumeState,
    pub stats: StatsSnapshot,
    pub limits: crate::meta::Limits,
}

impl Engine {
    pub fn volume(&self, id: u32) -> Result<Arc<Volume>> {
        self.volumes
            .read()
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("there is no volume {id}")))
    }

    pub fn volume_ids(&self) -> Vec<u32> {
        self.volumes.read().keys().copied().collect()
    }

    pub fn volume_info(&self, id: u32) -> Result<VolumeInfo> {
        let v = self.volume(id)?;
        let (slots, used, limits) = {
            let alloc = self.alloc.lock();
            let (slots, used) = alloc.usage(id).unwrap_or((0, 0));
            (slots, used, alloc.limits(id).unwrap_or_default())
        };
        Ok(VolumeInfo {
            id,
            uuid: v.uuid.clone(),
            path: v.path.clone(),
            slots,
            used,
            readonly: v.readonly(),
            state: v.state(),
            stats: v.stats.snapshot(),
            limits,
        })
    }

    pub fn volume_infos(&self) -> Vec<VolumeInfo> {
        self.volume_ids()
            .into_iter()
            .filter_map(|id| self.volume_info(id).ok())
            .collect()
    }

    /// A volume just recorded (id `id`, file `file` open) put in service:
    /// placeable if `writable`, with no limits yet.
    pub(super) fn register_volume(
        &self,
        id: u32,
        uuid: String,
        path: &Path,
        file: VolumeFile,
        slots: u64,
        writable: bool,
    ) -> Arc<Volume> {
        let volume = Arc::new(Volume::new(id, uuid, path.to_path_buf(), Some(file), false));
        volume.identified.store(true, Ordering::Relaxed);
        {
            let mut alloc = self.alloc.lock();
            alloc.add_volume(id, SlotMap::new(slots), writable);
            alloc.set_device(id, volume.device());
            alloc.set_limits(id, Default::default(), path);
        }
        self.volumes.write().insert(id, volume.clone());
        volume
    }

    /// Creates a sparse volume file at `path` of `slots` slots and makes it
    /// writable at once. The path must be absolute, must not exist (nor be a
    /// symlink), and its directory must exist.
    pub fn add_volume(&self, path: &Path, slots: u64) -> Result<u32> {
        if !path.is_absolute() {
            return Err(Error::Invalid(format!(
                "volume path {} must be absolute",
                path.display()
            )));
        }
        if slots == 0 || slots > MAX_SLOTS {
            return Err(Error::Invalid(format!(
                "a volume needs between 1 and {MAX_SLOTS} slots (4 PiB), not {slots}"
            )));
        }
        if path.symlink_metadata().is_ok() {
            return Err(Error::Exists(format!(
                "{} already exists; a new volume needs a new file",
                path.display()
            )));
        }
        match path.parent().map(|d| d.is_dir()) {
            Some(true) => {}
            _ => {
                return Err(Error::NotFound(format!(
                    "the directory of {} does not exist",
                    path.display()
                )));
            }
        }
        let file = VolumeFile::create(self.storage(), path, slots).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                Error::Exists(format!("{} already exists", path.display()))
            }
            _ => Error::io(format!("cannot create volume file {}", path.display()), e),
        })?;
        let uuid = uuid::Uuid::new_v4().to_string();
        let sidecar = self.sidecar_of(&uuid, slots);
        let recorded = crate::volume::sidecar::write(path, &sidecar)
            .map_err(|e| {
                Error::io(
                    format!("cannot write the sidecar of volume file {}", path.display()),
                    e,
                )
            })
            .and_then(|()| self.meta.insert_volume(&uuid, path, slots));
        let id = match recorded {
            Ok(id) => id,
            Err(e) => {
                let _ = std::fs::remove_file(crate::volume::sidecar::path_of(path));
                if let Err(rm) = std::fs::remove_file(path) {
                    tracing::warn!(
                        "volume file {} was made but not recorded ({e}), and cannot be deleted: \
                         {rm}",
                        path.display()
                    );
                }
                return Err(e);
            }
        };
        self.register_volume(id, uuid, path, file, slots, true);
        tracing::info!(volume = id, slots, "added volume {}", path.display());
        self.space_changed();
        self.check_overcommit();
        self.room_for_copies(&format!("volume {id} was added"));
        // recorded in service at once (its pass has no copy to look at)
        if let Err(e) = self.sync_volume_health() {
            tracing::error!("cannot record volume {id}'s health for the aggregates: {e}");
        }
        Ok(id)
    }

    /// Sets a volume read-only (no new sectors; reads go on) or writable.
    pub fn set_readonly(&self, id: u32, readonly: bool) -> Result<()> {
        let v = self.volume(id)?;
        self.meta.set_readonly(id, readonly)?;
        v.readonly.store(readonly, Ordering::Relaxed);
        self.alloc.lock().set_writable(id, v.writable());
        tracing::info!(volume = id, readonly, "volume read-only flag changed");
        self.space_changed();
        if !readonly {
            self.room_for_copies(&format!("volume {id} takes new sectors again"));
        }
        Ok(())
    }
}
