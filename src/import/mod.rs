//! `sectorfs import`: a new store made from an existing host's files, in
//! place (hostd's and siad's volume files already have sectorfs's layout, so
//! no sector is copied). The steps both sources share are here; `hostd.rs`
//! and `siad.rs` find the volumes, sectors and references; the new database
//! is written by `meta::ImportDb`.
//!
//! Crash safety: the database is built under a temporary name and renamed
//! to `sectorfs.db` as the very last step (after the report is written), so
//! an import that dies leaves no database, and the next run removes what
//! it left and starts over.

mod hostd;
mod hostd_db;
pub mod report;
mod siad;
mod verify;

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use hostd::import_hostd;
pub use report::{REPORT_NAME, Report};
pub use siad::import_siad;

use crate::engine::DataDirLock;
use crate::error::{Error, IoContext, Result};
use crate::merkle::Root;
use crate::meta::ImportDb;
use crate::volume::SECTOR_BYTES;
use report::{Lost, VolumeReport};

/// The database's name in a data dir, and the names an import works under.
const DB_NAME: &str = "sectorfs.db";
const BUILDING: &str = "sectorfs.db.importing";
const HOSTD_COPY: &str = "hostd-copy.db.importing";

/// What both imports are asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub data_dir: PathBuf,
    /// Hash every imported sector against its root (hostd; a siad rescan
    /// hashes everything anyway).
    pub verify: bool,
    /// Pin sectors nothing references instead of freeing them.
    pub pin_unreferenced: bool,
}

/// The data dir, held for the import: no daemon can open it meanwhile.
struct Target {
    dir: PathBuf,
    started: Instant,
    _lock: DataDirLock,
}

impl Target {
    /// Takes the data dir (made if missing), refusing one that already
    /// holds a database, and removes what an interrupted import left.
    fn take(dir: &Path) -> Result<Target> {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .io_ctx(|| format!("cannot create the data dir {}", dir.display()))?;
        }
        let lock = DataDirLock::acquire(dir)?;
        if dir.join(DB_NAME).exists() {
            return Err(Error::Exists(format!(
                "the data dir {} already holds a sectorfs database: an import makes a new \
                 store, so give it an empty data dir",
                dir.display()
            )));
        }
        for name in [BUILDING, HOSTD_COPY] {
            for suffix in ["", "-journal", "-wal", "-shm"] {
                let p = dir.join(format!("{name}{suffix}"));
                match std::fs::remove_file(&p) {
                    Ok(()) => {
                        tracing::info!("removed {}, left by an interrupted import", p.display())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::io(format!("cannot remove {}", p.display()), e));
                    }
                }
            }
        }
        Ok(Target {
            dir: dir.to_path_buf(),
            started: Instant::now(),
            _lock: lock,
        })
    }

    fn building(&self) -> PathBuf {
        self.dir.join(BUILDING)
    }

    fn hostd_copy(&self) -> PathBuf {
        self.dir.join(HOSTD_COPY)
    }
}

/// Records a volume adopted in place: its file must hold `slots` slots,
/// else the volume is recorded unavailable (its sectors count as lost).
fn adopt_volume(
    db: &ImportDb,
    id: u32,
    path: &Path,
    slots: u64,
    readonly: bool,
) -> Result<VolumeReport> {
    if slots > crate::engine::MAX_SLOTS {
        return Err(Error::Invalid(format!(
            "volume {} has {slots} slots, more than sectorfs takes in one volume ({})",
            path.display(),
            crate::engine::MAX_SLOTS
        )));
    }
    let reason = match std::fs::metadata(path) {
        Err(e) => Some(format!("its file cannot be opened: {e}")),
        Ok(m) if !m.is_file() => Some("it is not a regular file".into()),
        Ok(m) if m.len() < slots * SECTOR_BYTES => Some(format!(
            "its file is {} bytes, short of {slots} slots",
            m.len()
        )),
        Ok(_) => None,
    };
    if let Some(why) = &reason {
        tracing::warn!(
            "volume {} ({}) is imported as unavailable: {why}; its sectors count as lost until \
             the file is back",
            id,
            path.display()
        );
    }
    db.add_volume(id, &uuid::Uuid::new_v4().to_string(), path, slots, readonly)?;
    Ok(VolumeReport {
        id,
        path: path.to_path_buf(),
        slots,
        readonly,
        state: if reason.is_some() {
            "unavailable"
        } else {
            "ready"
        }
        .into(),
        reason,
        ..VolumeReport::default()
    })
}

/// Roots held by contracts or temp storage that the new store cannot hold.
#[derive(Default)]
struct LostRoots(BTreeMap<Root, Lost>);

impl LostRoots {
    fn entry(&mut self, root: Root, reason: &str) -> &mut Lost {
        self.0.entry(root).or_insert_with(|| Lost {
            root,
            reason: reason.into(),
            contracts: Vec::new(),
            temp: Vec::new(),
        })
    }
}

/// The steps after the references are in: unreferenced sectors freed (or
/// pinned), lost sectors of missing volumes listed, `--verify`, the counts;
/// then the database completed, the report written and the database
/// renamed into place.
fn complete(
    target: Target,
    db: ImportDb,
    mut report: Report,
    mut lost: LostRoots,
    options: &Options,
) -> Result<Report> {
    let released = db.release_unreferenced(options.pin_unreferenced)?;
    if options.pin_unreferenced {
        report.pinned = released;
    } else {
        report.freed += released;
    }
    for v in report.volumes.iter().filter(|v| v.state != "ready") {
        let reason = format!("volume {}'s file {} is missing", v.id, v.path.display());
        db.held_in_volume(v.id, |s, holders| {
            lost.0
                .insert(s.root, Lost::held(s.root, reason.clone(), holders));
            Ok(())
        })?;
    }
    report.lost = lost.0.into_values().collect();
    for l in &report.lost {
        tracing::warn!(
            "sector {} is lost ({}): {}",
            l.root,
            l.reason,
            report::holders_text(&l.contracts, &l.temp)
        );
    }
    if options.verify {
        verify::verify(&db, &mut report)?;
    }
    let (sectors, contracts, entries, temp) = db.counts()?;
    report.sectors = sectors;
    report.contracts = contracts;
    report.contract_entries = entries;
    report.temp_entries = temp;
    for (id, n) in db.volume_sector_counts()? {
        if let Some(v) = report.volumes.iter_mut().find(|v| v.id == id) {
            v.sectors = n;
        }
    }
    db.finish()?;
    report.seconds = target.started.elapsed().as_secs_f64();
    report.finished_at = crate::engine::now_secs();
    report.write(&target.dir)?;
    // the last step: from here on the data dir holds the new store
    let db_path = target.dir.join(DB_NAME);
    std::fs::rename(target.building(), &db_path)
        .and_then(|()| std::fs::File::open(&target.dir)?.sync_all())
        .io_ctx(|| {
            format!(
                "cannot put the new database in place at {}",
                db_path.display()
            )
        })?;
    Ok(report)
}
