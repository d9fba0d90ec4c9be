//! `sectorfs import siad`: siad's metadata keeps only salted sector ids, so
//! each folder's `siahostdata.dat` is adopted in place and rescanned (every
//! allocated slot read and hashed, holes skipped), and the references come
//! from contract root files, one per contract, named by its id.

use std::path::{Path, PathBuf};

use super::report::{Entry, Report};
use super::{LostRoots, Options, Target, adopt_volume, complete};
use crate::error::{Error, IoContext, Result};
use crate::meta::ImportDb;
use crate::volume::SECTOR_BYTES;
use crate::volume::scan::scan_volume;

const DATA_FILE: &str = "siahostdata.dat";

/// Imports siad's storage `folders` with the contracts in `contracts` into
/// a new store in `options.data_dir`.
pub fn import_siad(folders: &[PathBuf], contracts: &Path, options: &Options) -> Result<Report> {
    if folders.is_empty() {
        return Err(Error::Invalid(
            "name at least one storage folder with --folder".into(),
        ));
    }
    let target = Target::take(&options.data_dir)?;
    let db = ImportDb::create(&target.building())?;
    let mut report = Report {
        source: "siad".into(),
        ..Report::default()
    };
    let now = crate::engine::now_secs();
    for (n, folder) in folders.iter().enumerate() {
        let id = n as u32 + 1;
        let path = std::path::absolute(folder.join(DATA_FILE))
            .io_ctx(|| format!("cannot resolve {}", folder.display()))?;
        let file = std::fs::File::open(&path).io_ctx(|| {
            format!(
                "storage folder {} has no readable {DATA_FILE}",
                folder.display()
            )
        })?;
        let len = file
            .metadata()
            .io_ctx(|| format!("cannot read the size of {}", path.display()))?
            .len();
        let slots = len / SECTOR_BYTES;
        if len % SECTOR_BYTES != 0 {
            tracing::warn!(
                "{} is {len} bytes, not a whole number of sectors: its last {} bytes are \
                 left out",
                path.display(),
                len % SECTOR_BYTES
            );
        }
        let mut volume = adopt_volume(&db, id, &path, slots, false)?;
        let mut duplicates = 0;
        let read = scan_volume(&file, slots, |slot, root| {
            let root = root.map_err(|e| {
                Error::io(format!("cannot read slot {slot} of {}", path.display()), e)
            })?;
            if db.add_stored_sector(None, &root, id, slot, now)?.is_none() {
                // the same root in two slots: one copy is enough
                db.add_free_slot(id, slot)?;
                duplicates += 1;
            }
            Ok(())
        })?;
        tracing::info!(
            "rescanned {}: {read} allocated slots of {slots} read, {duplicates} duplicates freed",
            path.display()
        );
        report.freed += duplicates;
        volume.slots_read = Some(read);
        report.volumes.push(volume);
    }
    let lost = add_contracts(&db, contracts)?;
    complete(target, db, report, lost, options)
}

/// One contract per file of `dir`, named by its id, roots one per line.
fn add_contracts(db: &ImportDb, dir: &Path) -> Result<LostRoots> {
    let mut names: Vec<String> = Vec::new();
    let listing = std::fs::read_dir(dir)
        .io_ctx(|| format!("cannot list the contracts directory {}", dir.display()))?;
    for entry in listing {
        let entry = entry.io_ctx(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().into_string().map_err(|n| {
            Error::Invalid(format!(
                "contract file {n:?} in {} is not named by a contract id",
                dir.display()
            ))
        })?;
        crate::engine::check_contract_name(&name)?;
        names.push(name);
    }
    names.sort();
    let mut lost = LostRoots::default();
    for (n, name) in names.iter().enumerate() {
        let id = n as i64 + 1;
        let path = dir.join(name);
        let text = std::fs::read(&path).io_ctx(|| format!("cannot read {}", path.display()))?;
        let roots = crate::parse::parse_root_list(&text)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        db.add_contract(id, name)?;
        for (index, root) in roots.into_iter().enumerate() {
            let index = index as u64;
            let stored = match db.sector_id(&root)? {
                Some(sector) => db.add_contract_entry(id, index, sector)?,
                None => false,
            };
            if !stored {
                lost.entry(root, "no storage folder holds it")
                    .contracts
                    .push(Entry {
                        contract: name.clone(),
                        index,
                    });
            }
        }
    }
    Ok(lost)
}
