//! `sectorfs mount`: the daemon. Serves in the foreground until SIGINT or
//! SIGTERM, then unmounts, lets the engine finish (jobs pause, everything
//! acknowledged is already durable) and exits 0. Under systemd
//! (`Type=notify`) it says READY=1 once the mount answers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::builder::TypedValueParser;
use sectorfs::engine::placement::POLICIES;
use sectorfs::engine::{
    CacheOptions, ColdOptions, ColdUrl, Engine, Options, Placement, ScrubOptions,
};
use sectorfs::merkle::SECTOR_SIZE;

#[derive(clap::Args)]
pub struct MountArgs {
    /// Empty directory to mount the store on
    pub mountpoint: PathBuf,
    /// Where the database and default volume live
    /// [default: $SECTORFS_DATA_DIR, $XDG_DATA_HOME/sectorfs or ~/.local/share/sectorfs]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Which volume gets a new sector
    #[arg(
        long,
        default_value = "fill-first",
        value_parser = clap::builder::PossibleValuesParser::new(POLICIES.iter().map(|(n, _)| *n))
            .map(|s| s.parse::<Placement>().expect("a listed policy"))
    )]
    pub placement: Placement,
    /// FUSE worker threads
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub threads: usize,
    /// Let other users use the mount
    #[arg(long)]
    pub allow_other: bool,
    /// Size of the volume made on first start when there is none (0: none)
    #[arg(long, default_value = "1GiB", value_name = "SIZE")]
    pub default_volume: String,
    /// Verify every sector read from disk against its root
    #[arg(long)]
    pub verify_reads: bool,
    /// Verify every stored sector once per this long in the background
    /// (e.g. 7d; off unless given)
    #[arg(long, value_name = "DURATION")]
    pub scrub_interval: Option<String>,
    /// Most MB/s the background scrub reads
    #[arg(long, default_value_t = 50, value_name = "MB_PER_SEC")]
    pub scrub_rate: u64,
    /// Memory the data of sectors being written may take at once (e.g.
    /// 512MiB) [default: an eighth of physical memory, at most 1GiB]
    #[arg(long, value_name = "SIZE")]
    pub upload_memory: Option<String>,
    /// Sector files open for writing at once; more are refused with EMFILE
    /// [default: one per 1 MiB of --upload-memory]
    #[arg(long, value_name = "N")]
    pub max_uploads: Option<usize>,
    /// How long a volume may be unavailable before its sectors get new
    /// copies on other volumes (with /copies above 1), e.g. 10m
    #[arg(long, default_value = "10m")]
    pub repair_after: String,
    /// How often the metadata is backed up beside every volume, e.g. 1h
    /// (also at a clean unmount; 0: only then)
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub backup_interval: String,
    /// A cold tier on S3-compatible object storage, s3://bucket/prefix
    /// (endpoint, region and credentials from the AWS_* variables;
    /// AWS_ALLOW_HTTP=true for a plain-HTTP endpoint)
    #[arg(long, value_name = "URL")]
    pub cold: Option<String>,
    /// Sectors not read for this long go to the cold tier (e.g. 30d)
    #[arg(
        long,
        default_value = "30d",
        value_name = "DURATION",
        requires = "cold"
    )]
    pub cold_after: String,
    /// Keep the local copies of sectors that went to the cold tier
    #[arg(long, requires = "cold")]
    pub cold_keep_local: bool,
    /// Reads (from the start) of a cold-only sector after which it gets a
    /// local copy again (0: never)
    #[arg(long, default_value_t = sectorfs::engine::DEFAULT_PROMOTE_AFTER, value_name = "N")]
    pub promote_after: u32,
    /// Cold-only sectors downloaded ahead of a reader going through
    /// /sectors in listing order (cp -r, tar), at most 4 (0: none)
    #[arg(
        long,
        default_value_t = sectorfs::engine::DEFAULT_READ_AHEAD,
        value_name = "N",
        requires = "cold",
        value_parser = clap::value_parser!(u32).range(0..=4)
    )]
    pub cold_read_ahead: u32,
    /// A cache tier: one sparse file at PATH on a fast disk holding SIZE
    /// (e.g. 64GiB) of the sectors read most recently
    #[arg(long, num_args = 2, value_names = ["PATH", "SIZE"])]
    pub cache: Option<Vec<String>>,
}

pub fn default_data_dir() -> Result<PathBuf, String> {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = env("SECTORFS_DATA_DIR") {
        return Ok(d);
    }
    if let Some(d) = env("XDG_DATA_HOME") {
        return Ok(d.join("sectorfs"));
    }
    env("HOME")
        .map(|h| h.join(".local/share/sectorfs"))
        .ok_or_else(|| {
            "no --data-dir given and neither SECTORFS_DATA_DIR nor HOME is set; pass \
         --data-dir DIR"
                .into()
        })
}

pub fn run(a: MountArgs) -> Result<(), String> {
    let data_dir = match a.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    let default_volume_slots = sectorfs::parse::parse_size(&a.default_volume)
        .map_err(|e| format!("--default-volume: {e}"))?;
    let scrub = match &a.scrub_interval {
        Some(text) => Some(ScrubOptions {
            interval: sectorfs::parse::parse_duration(text)
                .map_err(|e| format!("--scrub-interval: {e}"))?,
            bytes_per_sec: a.scrub_rate.max(1) * 1_000_000,
        }),
        None => None,
    };
    let upload_memory = match &a.upload_memory {
        Some(text) => Some(
            sectorfs::parse::parse_size(text)
                .map_err(|e| format!("--upload-memory: {e}"))?
                .saturating_mul(SECTOR_SIZE as u64),
        ),
        None => None,
    };
    check_mountpoint(&a.mountpoint)?;
    let repair_after = sectorfs::parse::parse_duration(&a.repair_after)
        .map_err(|e| format!("--repair-after: {e}"))?;
    let backup_interval = sectorfs::parse::parse_duration(&a.backup_interval)
        .map_err(|e| format!("--backup-interval: {e}"))?;
    let cold = match &a.cold {
        Some(url) => Some(ColdOptions {
            url: ColdUrl::parse(url).map_err(|e| e.to_string())?,
            after: sectorfs::parse::parse_duration(&a.cold_after)
                .map_err(|e| format!("--cold-after: {e}"))?,
            keep_local: a.cold_keep_local,
            promote_after: a.promote_after,
            read_ahead: a.cold_read_ahead,
        }),
        None => None,
    };
    let cache = match a.cache.as_deref() {
        Some([path, size]) => Some(CacheOptions {
            path: PathBuf::from(path),
            slots: sectorfs::parse::parse_size(size).map_err(|e| format!("--cache: {e}"))?,
        }),
        _ => None,
    };
    let options = Options {
        cache,
        cold,
        repair_after,
        placement: a.placement,
        verify_reads: a.verify_reads,
        default_volume_slots,
        upload_memory,
        max_uploads: a.max_uploads,
        ..Options::default()
    };
    // before the engine starts its threads, so they leave SIGINT/SIGTERM
    // to the mount's clean unmount
    sectorfs::fs::block_signals().map_err(|e| e.to_string())?;
    let engine = Arc::new(Engine::open(&data_dir, options).map_err(|e| e.to_string())?);
    tracing::info!("data dir {}", data_dir.display());
    let (memory, max_uploads) = engine.upload_limits();
    tracing::info!(
        "sectors being written may take {} MiB of memory; at most {} open for writing at once",
        memory >> 20,
        sectorfs::plural::count(max_uploads as u64, "sector file")
    );
    engine.resume_jobs().map_err(|e| e.to_string())?;
    engine.start_background(scrub).map_err(|e| e.to_string())?;
    engine
        .start_backups(backup_interval)
        .map_err(|e| e.to_string())?;
    let mount_options = sectorfs::fs::MountOptions {
        threads: a.threads,
        allow_other: a.allow_other,
    };
    let serving = Arc::new(AtomicBool::new(true));
    notify_when_ready(&a.mountpoint, serving.clone());
    let served = sectorfs::fs::mount(engine.clone(), &a.mountpoint, &mount_options);
    serving.store(false, Ordering::Relaxed);
    // jobs pause here and resume at the next start
    engine.shutdown();
    // its alert and log line say why, if it fails
    let _ = engine.backup_now();
    served.map_err(|e| e.to_string())
}

/// A mountpoint that cannot be mounted on, said before the store opens.
fn check_mountpoint(mp: &Path) -> Result<(), String> {
    let shown = mp.display();
    match std::fs::metadata(mp) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("mountpoint {shown} is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "mountpoint {shown} does not exist; make it first: mkdir -p {shown}"
        )),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Err(format!(
            "{shown} is still mounted by a sectorfs daemon that is no longer running; \
             unmount it first: umount {shown} (or fusermount3 -u {shown})"
        )),
        Err(e) => Err(format!("mountpoint {shown}: {e}")),
    }
}

/// Under a service manager (`$NOTIFY_SOCKET` set), tells it READY=1 once
/// the mount answers: `status` can be looked up on a file system other than
/// the mountpoint's own before the mount.
fn notify_when_ready(mountpoint: &Path, serving: Arc<AtomicBool>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let mountpoint = mountpoint.to_path_buf();
    let before = std::fs::metadata(&mountpoint).map(|m| m.dev()).ok();
    let spawned = std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || {
            while serving.load(Ordering::Relaxed) {
                let answers = std::fs::metadata(mountpoint.join("status"))
                    .is_ok_and(|m| Some(m.dev()) != before);
                if answers {
                    let status = format!("serving {}", mountpoint.display());
                    let sent = sd_notify::notify(&[
                        sd_notify::NotifyState::Ready,
                        sd_notify::NotifyState::Status(&status),
                    ]);
                    match sent {
                        Ok(()) => tracing::info!("told the service manager it is ready"),
                        Err(e) => tracing::warn!(
                            "cannot tell the service manager that the mount is ready \
                             (NOTIFY_SOCKET): {e}"
                        ),
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the thread that tells the service manager when ready: {e}");
    }
}
