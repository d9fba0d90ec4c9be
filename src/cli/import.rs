//! `sectorfs import hostd|siad`: the arguments, and the summary printed.

use std::path::PathBuf;

use clap::Subcommand;
use sectorfs::import::{Options, import_hostd, import_siad};

#[derive(Subcommand)]
pub enum Source {
    /// From a stopped hostd: its database (read, never changed) and volume files.
    Hostd {
        /// hostd's database file (hostd.db)
        #[arg(long)]
        hostd_db: PathBuf,
        /// The new store's data dir (must hold no database)
        #[arg(long)]
        data_dir: PathBuf,
        /// Hash every imported sector against its root, on all cores
        #[arg(long)]
        verify: bool,
        /// Pin sectors no contract or temp entry holds, instead of freeing them
        #[arg(long)]
        pin_unreferenced: bool,
    },
    /// From stopped siad storage folders, rescanned, and contract root files.
    Siad {
        /// The new store's data dir (must hold no database)
        #[arg(long)]
        data_dir: PathBuf,
        /// A storage folder holding siahostdata.dat (repeat for each)
        #[arg(long, required = true, num_args = 1..)]
        folder: Vec<PathBuf>,
        /// A directory with one file per contract, named by its id, roots one per line
        #[arg(long)]
        contracts: PathBuf,
        /// Pin sectors no contract holds, instead of freeing them
        #[arg(long)]
        pin_unreferenced: bool,
    },
}

pub fn run(source: Source) -> Result<(), String> {
    let (report, data_dir) = match source {
        Source::Hostd {
            hostd_db,
            data_dir,
            verify,
            pin_unreferenced,
        } => {
            let options = Options {
                data_dir,
                verify,
                pin_unreferenced,
            };
            (import_hostd(&hostd_db, &options), options.data_dir)
        }
        Source::Siad {
            data_dir,
            folder,
            contracts,
            pin_unreferenced,
        } => {
            let options = Options {
                data_dir,
                verify: false,
                pin_unreferenced,
            };
            (import_siad(&folder, &contracts, &options), options.data_dir)
        }
    };
    let report = report.map_err(|e| format!("import failed, nothing was made: {e}"))?;
    print!("{}", report.summary(&data_dir));
    Ok(())
}
