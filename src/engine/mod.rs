//! The storage engine: placement, references, jobs and alerts over the
//! metadata (`meta`) and the volume files (`volume`). Knows nothing of FUSE.

mod aggregates;
mod alerts;
mod alloc;
mod attach;
mod backup;
mod buffers;
mod cache;
mod check;
mod chunk_hasher;
mod cold;
mod copies;
mod heal;
mod health;
mod identity;
mod import_alerts;
mod jobs;
mod limits;
mod lock;
pub mod placement;
mod punches;
mod redeclare;
mod refs;
mod repair;
mod sectors;
mod slot_writer;
mod slots;
mod status;
mod upload;
mod upload_limits;
mod volume_errors;
mod volumes;
mod workers;

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use alerts::{Alert, Alerts, Progress, Severity};
pub use backup::backup_path;
pub use cache::{CacheOptions, CacheStats};
pub use check::{CheckReport, OfflineReport};
pub use cold::{ColdOptions, ColdStats, ColdUrl, DEFAULT_PROMOTE_AFTER, DEFAULT_READ_AHEAD};
pub use copies::CopyCensus;
pub use health::ScrubOptions;
pub use lock::DataDirLock;
pub use placement::Placement;
pub use redeclare::Redeclared;
pub use refs::check_contract_name;
pub use sectors::Stored;
pub use status::Capacity;
pub use upload::{CHUNK as UPLOAD_CHUNK, UNNAMED as UNNAMED_UPLOAD, Upload};
pub use upload_limits::{MIN_UPLOAD_MEMORY, default_max_uploads, default_upload_memory};
pub use volumes::{MAX_SLOTS, StatsSnapshot, Volume, VolumeInfo, VolumeState};
pub use workers::spawn_or_run;

pub use crate::meta::{
    Agg, AggregateView, COLD_VOLUME, ContractEdit, ContractRow, CopiesSetting, Freed, Limits,
    MAX_TEMP_HEIGHT, RefCounts, Reference, Scope, SectorInfo, SectorKey, SectorRow,
    check_temp_height,
};

use crate::error::{IoContext, Result};
use crate::meta::Meta;
use crate::volume::{Disk, StorageOpener};
use alloc::Allocator;
use slots::SlotMap;

/// Settings chosen when the store is opened.
#[derive(Debug, Clone)]
pub struct Options {
    pub placement: Placement,
    /// Verify every sector read from disk against its root.
    pub verify_reads: bool,
    /// Slots of the volume created on first start when there is none (0: none).
    pub default_volume_slots: u64,
    /// Bytes the buffers of sectors being written may take at once
    /// (`None`: [`default_upload_memory`]).
    pub upload_memory: Option<u64>,
    /// Sector files open for writing at once (`None`:
    /// [`default_max_uploads`] of the memory).
    pub max_uploads: Option<usize>,
    /// Opens the volume files: the real files, or in tests files that fail
    /// on demand (`volume::faults`).
    pub storage: Arc<dyn StorageOpener>,
    /// How long a volume may be unavailable before its sectors get new
    /// copies elsewhere.
    pub repair_after: std::time::Duration,
    /// The cold tier on an object store (`None`: none).
    pub cold: Option<ColdOptions>,
    /// The cache tier on a fast disk (`None`: none).
    pub cache: Option<CacheOptions>,
}

/// The default of [`Options::repair_after`]: ten minutes.
pub const DEFAULT_REPAIR_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

impl Default for Options {
    fn default() -> Self {
        Options {
            placement: Placement::default(),
            verify_reads: false,
            default_volume_slots: 256,
            upload_memory: None,
            max_uploads: None,
            storage: Arc::new(Disk),
            repair_after: DEFAULT_REPAIR_AFTER,
            cold: None,
            cache: None,
        }
    }
}

/// Called with every sector freed, so caches of its bytes can be dropped.
pub type FreeListener = Box<dyn Fn(&Freed) + Send + Sync>;
/// Called, before the call that made the change returns, with the ids of
/// sectors whose reference counts changed, so cached link counts can be
/// dropped.
pub type RefsListener = Box<dyn Fn(&[i64]) + Send + Sync>;

pub struct Engine {
    data_dir: PathBuf,
    meta: Meta,
    volumes: RwLock<BTreeMap<u32, Arc<Volume>>>,
    alloc: Mutex<Allocator>,
    truncations: alloc::Truncations,
    alerts: Alerts,
    options: Options,
    free_listener: RwLock<Option<FreeListener>>,
    refs_listener: RwLock<Option<RefsListener>>,
    jobs: jobs::Jobs,
    health: health::Health,
    /// Copies (sector, volume) found corrupt since start and not rewritten
    /// since: reads skip them, and fail with EIO when no other copy reads.
    corrupt: Mutex<std::collections::HashSet<(i64, u32)>>,
    /// How many copies of each sector the store keeps.
    copies: RwLock<CopiesSetting>,
    repair: repair::Repair,
    aggregates: aggregates::Aggregates,
    /// The memory and the number of sector files being written.
    uploads: upload_limits::UploadLimits,
    /// Named in every volume's sidecar.
    store_uuid: String,
    /// The cold tier, when the store has one.
    cold: Option<cold::Cold>,
    /// The cache tier, when the mount has one.
    cache: Option<cache::Cache>,
    _lock: DataDirLock,
}

impl Engine {
    /// Opens the store in `data_dir`, creating it on first use. Refuses a
    /// data dir another process holds.
    pub fn open(data_dir: &Path, options: Options) -> Result<Engine> {
        if !data_dir.exists() {
            // the store's map and data: owner only
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_dir)
                .io_ctx(|| format!("cannot create the data dir {}", data_dir.display()))?;
        }
        let upload_memory = options.upload_memory.unwrap_or_else(default_upload_memory);
        if upload_memory < MIN_UPLOAD_MEMORY {
            return Err(crate::error::Error::Invalid(format!(
                "the upload memory must hold at least one sector ({} MiB), not {upload_memory} \
                 bytes",
                MIN_UPLOAD_MEMORY >> 20
            )));
        }
        let max_uploads = options
            .max_uploads
            .unwrap_or_else(|| default_max_uploads(upload_memory));
        let lock = DataDirLock::acquire(data_dir)?;
        let meta = Meta::open(&data_dir.join("sectorfs.db"))?;
        let copies = meta.copies_setting()?;
        let store_uuid = meta.store_uuid()?;
        // a store that cannot be used fails the mount, with the reason
        let cold = match &options.cold {
            Some(o) => Some(cold::Cold::open(o)?),
            None => None,
        };
        let cache = match &options.cache {
            Some(o) => Some(cache::Cache::open(o)?),
            None => None,
        };
        let engine = Engine {
            data_dir: data_dir.to_path_buf(),
            meta,
            volumes: RwLock::new(BTreeMap::new()),
            alloc: Mutex::new(Allocator::new(options.placement)),
            truncations: Default::default(),
            alerts: Alerts::default(),
            options,
            free_listener: RwLock::new(None),
            refs_listener: RwLock::new(None),
            jobs: jobs::Jobs::default(),
            health: health::Health::default(),
            corrupt: Mutex::new(Default::default()),
            copies: RwLock::new(copies),
            repair: Default::default(),
            aggregates: Default::default(),
            uploads: upload_limits::UploadLimits::new(upload_memory, max_uploads),
            store_uuid,
            cold,
            cache,
            _lock: lock,
        };
        engine.load_volumes()?;
        engine.load_corrupt()?;
        engine.finish_punches()?;
        engine.raise_import_alerts();
        // only on a first start: an operator who removed every volume
        // meant it
        if engine.options.default_volume_slots > 0
            && engine.volumes.read().is_empty()
            && !engine.meta.had_volumes()?
        {
            let dir = data_dir.join("volumes");
            std::fs::create_dir_all(&dir).io_ctx(|| format!("cannot create {}", dir.display()))?;
            // A kill between creating default.vol and recording it leaves a
            // file no row names; never overwrite it, take the next name.
            let name = (1..)
                .map(|n| match n {
                    1 => "default.vol".to_string(),
                    n => format!("default-{n}.vol"),
                })
                .find(|n| dir.join(n).symlink_metadata().is_err())
                .expect("some name is free");
            if name != "default.vol" {
                tracing::warn!(
                    "{} exists but is no known volume (a first start interrupted?); \
                     creating {name} instead",
                    dir.join("default.vol").display()
                );
            }
            let path = std::path::absolute(dir.join(name))
                .io_ctx(|| "cannot resolve the default volume path".into())?;
            engine.add_volume(&path, engine.options.default_volume_slots)?;
        }
        engine.space_changed();
        engine.check_overcommit();
        engine.sync_volume_health()?;
        Ok(engine)
    }

    /// Opens every known volume file and derives free slots from the
    /// occupied ones. A volume whose file cannot be opened is unavailable.
    fn load_volumes(&self) -> Result<()> {
        let rows = self.meta.volumes()?;
        let mut alloc = self.alloc.lock();
        let mut volumes = self.volumes.write();
        let mut maps: BTreeMap<u32, SlotMap> = BTreeMap::new();
        let mut limits = BTreeMap::new();
        for row in rows {
            limits.insert(row.id, row.limits);
            let mut v = Volume::new(row.id, row.uuid, row.path, None, row.readonly);
            v.identified = row.sidecar.into();
            // a detached volume's file is not this store's to open
            let file = if row.detached {
                v.close_file_as(VolumeState::Detached);
                None
            } else {
                match self.open_checked(&v, row.slots) {
                    Ok(f) => Some(f),
                    Err(m) => {
                        self.unavailable_at_open(&v, &m.reason, m.found.as_deref());
                        None
                    }
                }
            };
            if let Some(f) = file {
                v.open_with(Arc::new(f));
            }
            maps.insert(row.id, SlotMap::new(row.slots));
            volumes.insert(row.id, Arc::new(v));
        }
        self.meta.for_each_occupied(|vol, slot| {
            if let Some(m) = maps.get_mut(&vol) {
                m.mark(slot);
            }
        })?;
        for (id, map) in maps {
            alloc.add_volume(id, map, volumes[&id].writable());
            alloc.set_device(id, volumes[&id].device());
            alloc.set_limits(id, limits[&id], &volumes[&id].path);
        }
        Ok(())
    }

    /// A volume found unusable at open: an alert naming why.
    fn unavailable_at_open(&self, v: &Volume, reason: &str, found: Option<&str>) {
        tracing::error!(volume = v.id, "volume {} is unavailable: {reason}", v.id);
        self.alerts.raise(
            &format!("volume-unavailable-{}", v.id),
            Severity::Error,
            format!("volume {} is unavailable: {reason}", v.id),
            serde_json::json!({"volume": v.id, "path": v.path, "reason": reason,
                "expected_uuid": v.uuid, "found_uuid": found}),
        );
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn alerts(&self) -> &Alerts {
        &self.alerts
    }

    /// The memory budget of uploads in bytes, and the cap on sector files
    /// open for writing.
    pub fn upload_limits(&self) -> (u64, usize) {
        self.uploads.describe()
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// What opens the volume files.
    pub(crate) fn storage(&self) -> &dyn StorageOpener {
        &*self.options.storage
    }

    /// A named step of a write, move or free path (`faults::CRASH_POINTS`),
    /// where a test's storage may stop the engine. Nothing in builds
    /// without the `faults` feature.
    #[inline(always)]
    pub(crate) fn crash_point(&self, _name: &'static str) {
        #[cfg(any(test, feature = "faults"))]
        self.options.storage.crash_point(_name);
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// Registers the callback told of every freed sector.
    pub fn set_free_listener(&self, listener: FreeListener) {
        *self.free_listener.write() = Some(listener);
    }

    pub fn set_refs_listener(&self, listener: RefsListener) {
        *self.refs_listener.write() = Some(listener);
    }

    pub(crate) fn refs_changed(&self, sectors: &[i64]) {
        if sectors.is_empty() {
            return;
        }
        if let Some(listener) = self.refs_listener.read().as_ref() {
            listener(sectors);
        }
    }
}

/// A store for unit tests: sectors fill the first volume first, and there
/// is no default volume.
#[cfg(test)]
pub(crate) fn test_engine(dir: &Path) -> Engine {
    let options = Options {
        placement: Placement::FillFirst,
        default_volume_slots: 0,
        ..Options::default()
    };
    Engine::open(dir, options).expect("open the engine")
}

/// Adds `n` to a counter read by figures only (no order with other memory).
pub(crate) fn bump(c: &std::sync::atomic::AtomicU64, n: u64) {
    c.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
}

/// Unix seconds now.
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
