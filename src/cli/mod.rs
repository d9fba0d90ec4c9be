//! Command-line parsing and dispatch. `mount` and `root` work offline; the
//! admin commands go through the mount's own files (see `online`).

mod online;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use sectorfs::engine::{Engine, Options, Placement};
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
    Mount {
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
    },
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
        Command::Mount {
            mountpoint,
            data_dir,
            placement,
            threads,
            allow_other,
            default_volume,
            verify_reads,
        } => run_mount(
            &mountpoint,
            data_dir,
            placement,
            threads,
            allow_other,
            &default_volume,
            verify_reads,
        ),
        Command::Root { files } => root(&files),
        Command::Put { files, mount, temp } => online::put(&mount, &files, temp),
        Command::Volume { action, mount } => match mount {
            Some(m) => online::volume(&m, action),
            None => Err("volume commands need --mount MOUNTPOINT".into()),
        },
        Command::Status { mount, json, watch } => online::status(&mount, json, watch),
        Command::Check { .. } => Err("check is not available in this version of sectorfs".into()),
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

fn run_mount(
    mountpoint: &Path,
    data_dir: Option<PathBuf>,
    placement: Placement,
    threads: usize,
    allow_other: bool,
    default_volume: &str,
    verify_reads: bool,
) -> Result<(), String> {
    let data_dir = match data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    let default_volume_slots = sectorfs::parse::parse_size(default_volume)
        .map_err(|e| format!("--default-volume: {e}"))?;
    let options = Options {
        placement,
        verify_reads,
        default_volume_slots,
    };
    let engine = Engine::open(&data_dir, options).map_err(|e| e.to_string())?;
    tracing::info!("data dir {}", data_dir.display());
    let mount_options = sectorfs::fs::MountOptions {
        threads,
        allow_other,
    };
    sectorfs::fs::mount(Arc::new(engine), mountpoint, &mount_options).map_err(|e| e.to_string())
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
pub fn read_sector_file(path: &Path) -> Result<Vec<u8>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if data.len() != SECTOR_SIZE {
        return Err(format!(
            "{} is {} bytes; a sector is exactly {SECTOR_SIZE} bytes (4 MiB)",
            path.display(),
            data.len()
        ));
    }
    Ok(data)
}
