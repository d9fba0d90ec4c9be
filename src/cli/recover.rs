//! `sectorfs recover --data-dir DIR VOLUME_PATH...`: a store whose database
//! is lost, rebuilt offline from the newest valid backup beside the given
//! volumes plus a redeclare of each.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use sectorfs::engine::{Engine, Options, Redeclared, backup_path};
use sectorfs::meta::Meta;
use sectorfs::plural::count;
use sectorfs::volume::sidecar;

pub fn run(data_dir: &Path, volumes: &[PathBuf]) -> Result<(), String> {
    let db = data_dir.join("sectorfs.db");
    for name in ["sectorfs.db", "sectorfs.db-wal"] {
        let p = data_dir.join(name);
        if p.symlink_metadata().is_ok() {
            return Err(format!(
                "{} exists: recover writes only into a data dir without a database (move it \
                 away first if it is the broken one)",
                p.display()
            ));
        }
    }
    let (at, backup) = newest_backup(volumes)?;
    println!("restoring {} (written at unix time {at})", backup.display());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    sidecar::replace_file(&db, |f| {
        std::io::copy(&mut std::fs::File::open(&backup)?, f).map(|_| ())
    })
    .map_err(|e| {
        format!(
            "cannot restore {} to {}: {e}",
            backup.display(),
            db.display()
        )
    })?;
    let (known, unknown, refs) = place_volumes(&db, volumes)?;
    let engine = Engine::open(
        data_dir,
        Options {
            default_volume_slots: 0,
            ..Options::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let mut total = Redeclared::default();
    for (id, path) in &known {
        let r = engine
            .recover_volume(*id)
            .map_err(|e| format!("cannot redeclare volume {id} ({}): {e}", path.display()))?;
        println!("volume {id} ({}): {}", path.display(), r.summary());
        total.kept += r.kept;
        total.found += r.found;
        total.lost.extend(r.lost);
    }
    for path in &unknown {
        // added after the backup: adopted, every sector registered pinned
        match engine.attach_volume(path) {
            Ok(id) => println!(
                "volume {id} ({}): added since the backup, adopted",
                path.display()
            ),
            Err(e) => println!("{}: not recovered: {e}", path.display()),
        }
    }
    let after = engine
        .meta()
        .reference_totals()
        .map_err(|e| e.to_string())?;
    println!(
        "references as of the backup: {} ({} entries), {} pinned, {} temp entries",
        count(refs.contracts, "contract"),
        refs.contract_entries,
        count(refs.pins, "sector"),
        refs.temp_entries
    );
    println!("sectors recovered: {}", after.sectors);
    println!(
        "sectors stored since the backup (now pinned): {}",
        total.found
    );
    println!(
        "sectors referenced but missing (freed since the backup, or lost): {}",
        total.lost.len()
    );
    for (root, contracts) in &total.lost {
        match contracts.is_empty() {
            true => println!("  missing {root} (pinned only)"),
            false => println!("  missing {root} (contracts: {})", contracts.join(", ")),
        }
    }
    Ok(())
}

/// The newest backup beside `volumes` that SQLite finds sound.
fn newest_backup(volumes: &[PathBuf]) -> Result<(i64, PathBuf), String> {
    let mut best: Option<(i64, PathBuf)> = None;
    for v in volumes {
        let b = backup_path(v);
        if !b.exists() {
            println!("no backup beside {}", v.display());
            continue;
        }
        match Meta::backup_time(&b) {
            Ok(at) if best.as_ref().is_none_or(|(t, _)| at > *t) => best = Some((at, b)),
            Ok(_) => {}
            Err(e) => println!("skipping {}: {e}", b.display()),
        }
    }
    best.ok_or_else(|| "no valid backup (<volume>.sectorfs.db) beside the given volumes".into())
}

/// Points the restored database at each given volume (matched by its
/// sidecar's uuid; it may have moved), and counts the references it holds.
/// Returns the volumes it knows and those it does not.
type Placed = (
    Vec<(u32, PathBuf)>,
    Vec<PathBuf>,
    sectorfs::meta::ReferenceTotals,
);

fn place_volumes(db: &Path, volumes: &[PathBuf]) -> Result<Placed, String> {
    let meta = Meta::open(db).map_err(|e| e.to_string())?;
    let rows = meta.volumes().map_err(|e| e.to_string())?;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for path in volumes {
        let side = sidecar::read(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .ok_or_else(|| {
                format!(
                    "{} has no sidecar: it is no sectorfs volume",
                    path.display()
                )
            })?;
        match rows.iter().find(|r| r.uuid == side.volume_uuid) {
            Some(r) => {
                if r.path != *path {
                    meta.set_volume_path(r.id, path)
                        .map_err(|e| e.to_string())?;
                }
                known.push((r.id, path.clone()));
            }
            None => unknown.push(path.clone()),
        }
    }
    let refs = meta.reference_totals().map_err(|e| e.to_string())?;
    Ok((known, unknown, refs))
}
