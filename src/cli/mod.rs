//! Command-line parsing and dispatch. `mount` and `root` work offline; the
//! admin commands go through the mount's own files (see `online`).

mod import;
mod online;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use sectorfs::engine::{Engine, Options, Placement, ScrubOptions};
use sectorfs::merkle::{self, SECTOR_SIZE};

#[derive(Parser)]
#[command(
    name = "sectorfs",
    version,
    about = "A storage host's sector store, mounted as a file system"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount the store and serve it in the foreground until SIGINT/SIGTERM.
    Mount(MountArgs),
    /// Print the Merkle root of each 4 MiB file, like b2sum.
    Root {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Store files as sectors through a mount.
    Put {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        mount: PathBuf,
        /// Store as temp entries expiring at this height instead of pinning
        #[arg(long)]
        temp: Option<u64>,
    },
    /// List, add, resize, set read-only or remove volumes of a mount.
    Volume {
        #[command(subcommand)]
        action: VolumeAction,
        #[arg(long, global = true)]
        mount: Option<PathBuf>,
    },
    /// Show health, capacity and alerts of a mount.
    Status {
        #[arg(long)]
        mount: PathBuf,
        #[arg(long)]
        json: bool,
        /// Redraw every second, with a progress bar per running job
        #[arg(long)]
        watch: bool,
    },
    /// Verify stored sectors (and, offline, the metadata).
    Check {
        #[arg(long)]
        mount: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        volume: Option<u32>,
    },
    /// Make a new store from a stopped hostd's or siad's files, in place.
    Import {
        #[command(subcommand)]
        source: import::Source,
    },
}

#[derive(Subcommand)]
pub enum VolumeAction {
    /// One line per volume.
    List,
    /// Create a new sparse volume file: PATH must not exist.
    Add { path: PathBuf, size: String },
    /// Grow or shrink a volume (slots, or bytes with a unit).
    Resize { id: u32, size: String },
    /// Stop (on) or resume (off) placing new sectors on a volume.
    Readonly { id: u32, value: String },
    /// Move every sector elsewhere, then delete the volume.
    Remove {
        id: u32,
        #[arg(long)]
        force: bool,
    },
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Mount(args) => run_mount(args),
        Command::Root { files } => root(&files),
        Command::Put { files, mount, temp } => online::put(&mount, &files, temp),
        Command::Volume { action, mount } => match mount {
            Some(m) => online::volume(&m, action),
            None => Err("volume commands need --mount MOUNTPOINT".into()),
        },
        Command::Status { mount, json, watch } => online::status(&mount, json, watch),
        Command::Check {
            mount,
            data_dir,
            volume,
        } => match (mount, data_dir) {
            (Some(m), None) => online::check(&m, volume),
            (None, Some(d)) => check_offline(&d, volume),
            _ => Err("check needs either --mount MOUNTPOINT or --data-dir DIR".into()),
        },
        Command::Import { source } => import::run(source),
    };
    match result {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("sectorfs: {msg}");
            1
        }
    }
}

fn default_data_dir() -> Result<PathBuf, String> {
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
        .ok_or_else(|| "no --data-dir given and neither SECTORFS_DATA_DIR nor HOME is set".into())
}

#[derive(clap::Args)]
struct MountArgs {
    mountpoint: PathBuf,
    /// Where the database and default volume live
    /// [default: $SECTORFS_DATA_DIR, $XDG_DATA_HOME/sectorfs or ~/.local/share/sectorfs]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// fill-first, round-robin, random, most-free, least-used or weighted-random
    #[arg(long, default_value = "fill-first")]
    placement: Placement,
    /// FUSE worker threads
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Let other users use the mount
    #[arg(long)]
    allow_other: bool,
    /// Size of the volume made on first start when there is none (0: none)
    #[arg(long, default_value = "1GiB")]
    default_volume: String,
    /// Verify every sector read from disk against its root
    #[arg(long)]
    verify_reads: bool,
    /// Verify every stored sector once per this long in the background
    /// (e.g. 7d; off unless given)
    #[arg(long)]
    scrub_interval: Option<String>,
    /// Most MB/s the background scrub reads
    #[arg(long, default_value_t = 50)]
    scrub_rate: u64,
    /// Memory the data of sectors being written may take at once (e.g.
    /// 512MiB) [default: an eighth of physical memory, at most 1GiB]
    #[arg(long)]
    upload_memory: Option<String>,
    /// Sector files open for writing at once; more are refused with EMFILE
    /// [default: one per 1 MiB of --upload-memory]
    #[arg(long)]
    max_uploads: Option<usize>,
}

fn run_mount(a: MountArgs) -> Result<(), String> {
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
    let options = Options {
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
        "sectors being written may take {} MiB of memory; at most {max_uploads} sector files \
         open for writing at once",
        memory >> 20
    );
    engine.resume_jobs().map_err(|e| e.to_string())?;
    engine.start_background(scrub).map_err(|e| e.to_string())?;
    let mount_options = sectorfs::fs::MountOptions {
        threads: a.threads,
        allow_other: a.allow_other,
    };
    let served = sectorfs::fs::mount(engine.clone(), &a.mountpoint, &mount_options);
    // jobs pause here and resume at the next start
    engine.shutdown();
    served.map_err(|e| e.to_string())
}

/// `check --data-dir`: the store must not be mounted.
fn check_offline(data_dir: &Path, volume: Option<u32>) -> Result<(), String> {
    if !data_dir.join("sectorfs.db").exists() {
        return Err(format!("{} holds no sectorfs store", data_dir.display()));
    }
    let options = Options {
        default_volume_slots: 0,
        ..Options::default()
    };
    let engine = Engine::open(data_dir, options).map_err(|e| e.to_string())?;
    let report = engine.check_offline(volume).map_err(|e| e.to_string())?;
    for p in &report.problems {
        println!("PROBLEM  {p}");
    }
    for v in &report.volumes {
        let mark = if v.is_clean() { "ok     " } else { "PROBLEM" };
        println!("{mark}  volume {}: {}", v.volume, v.summary());
    }
    if report.is_clean() {
        println!("clean: metadata consistent, every sector verified");
        Ok(())
    } else {
        Err("the store has problems (listed above)".into())
    }
}

fn root(files: &[PathBuf]) -> Result<(), String> {
    let mut failed = false;
    for f in files {
        match read_sector_file(f) {
            Ok(data) => println!("{}  {}", merkle::sector_root(&data), f.display()),
            Err(msg) => {
                eprintln!("sectorfs: {msg}");
                failed = true;
            }
        }
    }
    if failed {
        Err("some files are not sectors".into())
    } else {
        Ok(())
    }
}

/// Reads a file that must be exactly one sector.
/// Reads no more than one byte past a sector, so an endless input (a
/// device, a pipe) is refused rather than read forever.
pub fn read_sector_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut data = Vec::with_capacity(SECTOR_SIZE + 1);
    file.take(SECTOR_SIZE as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match data.len() {
        SECTOR_SIZE => Ok(data),
        n if n > SECTOR_SIZE => Err(format!(
            "{} is longer than 4 MiB; a sector is exactly {SECTOR_SIZE} bytes",
            path.display()
        )),
        n => Err(format!(
            "{} is {n} bytes; a sector is exactly {SECTOR_SIZE} bytes (4 MiB)",
            path.display()
        )),
    }
}
