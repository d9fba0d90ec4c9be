//! Metadata backups beside every volume, and `sectorfs recover` from them
//! when the database is lost.

use std::path::{Path, PathBuf};
use std::process::Command;

use sectorfs::merkle::Root;

use super::harness::{BIN, Mount, offline_check, read_uncached, sector, wait_for, write_file};

fn backup_of(vol: &Path) -> PathBuf {
    let mut name = vol.as_os_str().to_os_string();
    name.push(".sectorfs.db");
    PathBuf::from(name)
}

fn store(args: &[&str]) -> (Mount, PathBuf) {
    let mut all = vec!["--default-volume", "0"];
    all.extend_from_slice(args);
    let m = Mount::start(&all);
    let vol = m.scratch().join("a.vol");
    m.write("volumes/add", &format!("{} 32\n", vol.display()))
        .unwrap();
    (m, vol)
}

/// `sectorfs recover --data-dir DATA VOLUME`, run to its end.
fn recover(data: &std::path::Path, vol: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .args(["recover", "--data-dir"])
        .arg(data)
        .arg(vol)
        .output()
        .unwrap()
}

#[test]
fn backups_are_written_every_interval_and_at_unmount_and_failures_alert() {
    let (mut m, vol) = store(&["--backup-interval", "1s"]);
    let backup = backup_of(&vol);
    wait_for("a backup", 30, || {
        m.read("status").contains("metadata backed up") && backup.exists()
    });
    let at = m.status_json()["totals"]["last_backup"].as_i64().unwrap();
    assert!(at > 0);
    assert!(
        m.read("metrics")
            .contains("sectorfs_last_backup_timestamp_seconds")
    );
    // a directory where the backup goes: it cannot be replaced
    std::fs::remove_file(&backup).unwrap();
    std::fs::create_dir_all(backup.join("in-the-way")).unwrap();
    wait_for("the failure alert", 30, || {
        m.read("status").contains("the metadata backup failed")
    });
    std::fs::remove_dir_all(&backup).unwrap();
    wait_for("the alert cleared", 30, || {
        !m.read("status").contains("the metadata backup failed")
    });
    m.unmount();
    std::fs::remove_file(&backup).unwrap();
    m.mount();
    m.unmount();
    assert!(backup.exists(), "a clean unmount writes one");
}

/// The database deleted after a backup plus more writes and revisions:
/// recover restores the contracts as of the backup, the sectors stored
/// since (pinned), reports references to sectors freed since, and the
/// recovered store mounts and checks clean.
#[test]
fn recover_rebuilds_a_store_whose_database_is_lost() {
    let (mut m, vol) = store(&["--backup-interval", "0"]);
    let roots: Vec<Root> = (0..4).map(|i| m.put(&sector(i))).collect();
    write_file(
        &m.path("contracts/c1"),
        format!("{}\n{}\n", roots[0], roots[1]).as_bytes(),
    )
    .unwrap();
    write_file(
        &m.path("contracts/c2"),
        format!("{}\n", roots[3]).as_bytes(),
    )
    .unwrap();
    m.unmount(); // the backup
    assert!(backup_of(&vol).exists());
    m.mount();
    let since: Vec<Root> = (10..12).map(|i| m.put(&sector(i))).collect();
    write_file(
        &m.path("contracts/c1"),
        format!("{}\n{}\n{}\n", roots[0], roots[1], since[0]).as_bytes(),
    )
    .unwrap();
    std::fs::remove_file(m.sector_path(&roots[2])).unwrap(); // freed since
    std::fs::remove_file(m.path("contracts/c2")).unwrap();
    std::fs::remove_file(m.sector_path(&roots[3])).unwrap(); // freed since, was in c2
    m.kill(); // no backup at a clean unmount
    for name in ["sectorfs.db", "sectorfs.db-wal", "sectorfs.db-shm"] {
        let _ = std::fs::remove_file(m.data.join(name));
    }
    let out = recover(&m.data, &vol);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("stored since the backup (now pinned): 2"),
        "{text}"
    );
    assert!(
        text.contains("referenced but missing (freed since the backup, or lost): 2"),
        "{text}"
    );
    assert!(text.contains("contracts: c2"), "{text}");
    assert!(text.contains("2 contracts (3 entries)"), "{text}");

    let again = recover(&m.data, &vol);
    assert!(
        !again.status.success(),
        "a data dir with a database is refused"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));

    m.mount();
    assert_eq!(
        m.read("contracts/c1"),
        format!("{}\n{}\n", roots[0], roots[1]),
        "as of the backup"
    );
    for (i, r) in since.iter().enumerate() {
        assert_eq!(m.refs(r), "pin=1 contracts=0 temp=0");
        assert_eq!(
            read_uncached(&m.sector_path(r)).unwrap(),
            sector(10 + i as u64)
        );
    }
    assert_eq!(read_uncached(&m.sector_path(&roots[1])).unwrap(), sector(1));
    assert!(!m.sector_path(&roots[2]).exists());
    assert!(!m.sector_path(&roots[3]).exists());
    m.unmount();
    offline_check(&m, "after recover");
}
