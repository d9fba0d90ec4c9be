//! Command-line parsing and dispatch. `mount` is the daemon (`daemon`);
//! `root` and `check --data-dir` work offline (`offline`); the admin
//! commands go through a running mount's own files (`online`), found by
//! `--mount` or `$SECTORFS_MOUNT` (`mountpoint`).

mod contracts;
mod daemon;
mod docs;
mod import;
mod logging;
mod mountpoint;
mod offline;
mod online;
mod recover;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use mountpoint::MountArg;

const EXAMPLES: &str = "\
Examples:
  sectorfs mount /mnt/sectorfs                      # serve a store (first start makes a 1 GiB volume)
  sectorfs put blob --mount /mnt/sectorfs           # store a 4 MiB file as a sector
  sectorfs status --watch --mount /mnt/sectorfs     # follow health, capacity and jobs";

#[derive(Parser)]
#[command(
    name = "sectorfs",
    version,
    about = "A storage host's sector store, mounted as a file system",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Mount the store and serve it in the foreground until SIGINT/SIGTERM
    // boxed: its options make it far larger than the other commands
    Mount(Box<daemon::MountArgs>),
    /// Print the Merkle root of each 4 MiB file, like b2sum
    Root {
        /// Files of exactly 4 MiB (4194304 bytes)
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Store 4 MiB files as sectors through a mount
    Put {
        /// Files of exactly 4 MiB, each stored under its root
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        mount: MountArg,
        /// Store as temp entries expiring at this height instead of pinning
        #[arg(long, value_name = "HEIGHT")]
        temp: Option<u64>,
    },
    /// List, add, resize, set read-only, check or remove volumes of a mount
    Volume {
        #[command(subcommand)]
        action: VolumeAction,
        #[command(flatten)]
        mount: MountArg,
    },
    /// Show health, capacity and alerts of a mount
    Status {
        #[command(flatten)]
        mount: MountArg,
        /// Print /status.json (for programs) instead of /status
        #[arg(long)]
        json: bool,
        /// Redraw every second, with a progress bar per running job
        #[arg(long)]
        watch: bool,
    },
    /// List contracts with their aggregates (entries, health, lost, ...),
    /// worst health first
    Contracts {
        #[command(flatten)]
        mount: MountArg,
        /// Only contracts whose health is below 1
        #[arg(long)]
        unhealthy: bool,
        /// Print a JSON array (for programs) instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Verify stored sectors: online through a mount, or offline (plus the
    /// metadata) with --data-dir
    Check {
        #[command(flatten)]
        mount: MountArg,
        /// Check a stopped store's data dir instead of a mount
        #[arg(long, value_name = "DIR", conflicts_with = "mount")]
        data_dir: Option<PathBuf>,
        /// Check only this volume
        #[arg(long, value_name = "ID")]
        volume: Option<u32>,
    },
    /// Print a shell completion script (bash, zsh or fish)
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Print the man page, sectorfs(1), or write one per subcommand to a
    /// directory
    Man {
        /// Write sectorfs.1 and a page per subcommand here instead
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Make a new store from a stopped hostd's or siad's files, in place
    Import {
        #[command(subcommand)]
        source: import::Source,
    },
    /// Rebuild a store whose database is lost (offline): the newest valid
    /// backup beside the given volumes, then a redeclare of each
    Recover {
        /// The data dir to rebuild into (must hold no database)
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// The store's volume files
        #[arg(required = true, value_name = "VOLUME_PATH")]
        volumes: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum VolumeAction {
    /// One line per volume: id, state, read-only, slots, used, path
    List,
    /// Create a new sparse volume file and use it at once
    Add {
        /// Where to create it; must not exist, its directory must
        path: PathBuf,
        /// Slots, or bytes with a unit (e.g. 4TiB) that are whole 4 MiB sectors
        size: String,
    },
    /// Grow or shrink a volume; shrinking moves its sectors first
    Resize {
        /// The volume's id (see `sectorfs volume list`)
        id: u32,
        /// New size: slots, or bytes with a unit (e.g. 4TiB)
        size: String,
    },
    /// Stop (on) or resume (off) placing new sectors on a volume
    Readonly {
        /// The volume's id (see `sectorfs volume list`)
        id: u32,
        /// on or off
        #[arg(value_parser = ["on", "off", "1", "0", "true", "false", "yes", "no"])]
        value: String,
    },
    /// Move every sector elsewhere, then delete the volume
    Remove {
        /// The volume's id (see `sectorfs volume list`)
        id: u32,
        /// Drop the sectors that cannot be read (counted as lost) instead of failing
        #[arg(long)]
        force: bool,
    },
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    logging::init();
    let result = match cli.command {
        Command::Mount(args) => daemon::run(*args),
        Command::Root { files } => offline::root(&files),
        Command::Put { files, mount, temp } => {
            mount.resolve().and_then(|m| online::put(&m, &files, temp))
        }
        Command::Volume { action, mount } => {
            mount.resolve().and_then(|m| online::volume(&m, action))
        }
        Command::Status { mount, json, watch } => mount
            .resolve()
            .and_then(|m| online::status(&m, json, watch)),
        Command::Contracts {
            mount,
            unhealthy,
            json,
        } => mount
            .resolve()
            .and_then(|m| contracts::contracts(&m, unhealthy, json)),
        Command::Check {
            mount,
            data_dir: Some(dir),
            volume,
        } if mount.path.is_none() => offline::check(&dir, volume),
        Command::Check { mount, volume, .. } => {
            mount.resolve().and_then(|m| online::check(&m, volume))
        }
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { dir } => docs::man(dir.as_deref()),
        Command::Import { source } => import::run(source),
        Command::Recover { data_dir, volumes } => recover::run(&data_dir, &volumes),
    };
    match result {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("sectorfs: {msg}");
            1
        }
    }
}
