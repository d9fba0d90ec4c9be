//! Integrity through the mount and the CLI: corrupt sectors, verify-reads,
//! unavailable volumes and their return, failing files, the offline check,
//! and the no-space alert.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::harness::{Mount, errno, sector};
use sectorfs::merkle::{Root, SECTOR_SIZE};

fn flip_byte(volume_file: &Path, slot: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(volume_file)
        .unwrap();
    let off = slot * SECTOR_SIZE as u64 + 4321;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], off).unwrap();
    f.sync_all().unwrap();
}

fn slot_of(m: &Mount, root: &Root) -> u64 {
    super::harness::xattr(&m.sector_path(root), "user.sectorfs.slot")
        .unwrap()
        .parse()
        .unwrap()
}

fn sectorfs(args: &[&str], extra: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sectorfs"))
        .args(args)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_flipped_byte_is_found_by_check_and_verify_reads() {
    let mut m = Mount::start(&["--verify-reads"]);
    let roots: Vec<Root> = (0..3).map(|i| m.put(&sector(500 + i))).collect();
    let vol = m.data.join("volumes/default.vol");
    flip_byte(&vol, slot_of(&m, &roots[1]));

    let out = sectorfs(&["check", "--mount"], &[m.mnt.as_os_str()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "check must fail: {text}");
    assert!(text.contains("2 good, 1 corrupt"), "{text}");
    assert!(text.contains(&roots[1].to_string()), "{text}");
    assert!(!text.contains(&roots[0].to_string()), "{text}");
    assert!(m.read("volumes/1/stats").contains("corrupt 1"));
    let status = m.status_json();
    assert!(status["alerts"].to_string().contains(&roots[1].to_string()));

    // drop the kernel's cache: a fresh mount reads from the volume
    m.remount();
    let e = std::fs::read(m.sector_path(&roots[1])).unwrap_err();
    assert_eq!(errno(&e), libc::EIO);
    for r in [&roots[0], &roots[2]] {
        assert_eq!(
            std::fs::read(m.sector_path(r)).unwrap(),
            sector(500 + if *r == roots[0] { 0 } else { 2 })
        );
    }
    m.unmount();
    let out = sectorfs(&["check", "--data-dir"], &[m.data.as_os_str()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&roots[1].to_string()));
}

#[test]
fn a_missing_volume_file_is_unavailable_until_it_is_back() {
    let mut m = Mount::start(&[]);
    let a = m.put(&sector(600));
    m.write(
        "volumes/add",
        &format!("{} 8\n", m.scratch().join("v2.vol").display()),
    )
    .unwrap();
    m.write("volumes/1/readonly", "1\n").unwrap();
    let b = m.put(&sector(601));
    assert_eq!(m.used(2), 1);
    m.unmount();
    let v2 = m.scratch().join("v2.vol");
    let aside = m.scratch().join("v2.aside");
    std::fs::rename(&v2, &aside).unwrap();
    m.mount();
    assert_eq!(m.read("volumes/2/state"), "unavailable\n");
    assert!(m.read("status").contains("volume 2 is unavailable"));
    assert_eq!(
        errno(&std::fs::read(m.sector_path(&b)).unwrap_err()),
        libc::EIO
    );
    assert_eq!(std::fs::read(m.sector_path(&a)).unwrap(), sector(600));
    // still missing: check refuses; back: check re-opens it, no remount
    assert_eq!(
        errno(&m.write("volumes/2/check", "1\n").unwrap_err()),
        libc::EIO
    );
    std::fs::rename(&aside, &v2).unwrap();
    m.write("volumes/2/check", "1\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while m.read("volumes/2/state") != "ready\n" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read(m.sector_path(&b)).unwrap(), sector(601));

    // a truncated file is unavailable too
    m.unmount();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&v2)
        .unwrap()
        .set_len(SECTOR_SIZE as u64)
        .unwrap();
    m.mount();
    assert_eq!(m.read("volumes/2/state"), "unavailable\n");
    assert_eq!(std::fs::read(m.sector_path(&a)).unwrap(), sector(600));
}

#[test]
fn a_file_removed_while_mounted_takes_the_volume_out_of_service() {
    let m = Mount::start(&["--default-volume", "0"]);
    for (i, name) in ["a.vol", "b.vol"].iter().enumerate() {
        m.write(
            "volumes/add",
            &format!("{} 8\n", m.scratch().join(name).display()),
        )
        .unwrap();
        assert!(m.path(&format!("volumes/{}", i + 1)).exists());
    }
    m.put(&sector(700));
    assert_eq!(m.used(1), 1);
    std::fs::remove_file(m.scratch().join("a.vol")).unwrap();
    // the check looks at the file first
    assert_eq!(
        errno(&m.write("volumes/1/check", "1\n").unwrap_err()),
        libc::EIO
    );
    assert_eq!(m.read("volumes/1/state"), "unavailable\n");
    assert!(m.read("status").contains("was removed or replaced"));
    m.put(&sector(701));
    assert_eq!(m.used(2), 1, "new sectors go to the other volume");
}

#[test]
fn a_volume_on_a_full_file_system_fails_over_and_keeps_serving_reads() {
    let m = Mount::start(&["--default-volume", "0"]);
    let small = m.scratch().join("small");
    std::fs::create_dir(&small).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=10m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(ok.success(), "mount a small tmpfs");
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _guard = Unmount(&small);
    m.write(
        "volumes/add",
        &format!("{} 16\n", small.join("a.vol").display()),
    )
    .unwrap();
    m.write(
        "volumes/add",
        &format!("{} 16\n", m.scratch().join("b.vol").display()),
    )
    .unwrap();
    // 10 MiB holds two sectors; every write still succeeds, elsewhere
    let roots: Vec<Root> = (0..7).map(|i| m.put(&sector(800 + i))).collect();
    let stats = m.read("volumes/1/stats");
    assert!(!stats.contains("write_errors 0"), "{stats}");
    // a full file system is no failing disk: what is there is still served
    assert_eq!(m.read("volumes/1/state"), "ready\n");
    assert_eq!(m.used(1) + m.used(2), 7);
    for (i, r) in roots.iter().enumerate() {
        assert!(std::fs::read(m.sector_path(r)).unwrap() == sector(800 + i as u64));
    }
    assert!(
        m.read("metrics")
            .contains("sectorfs_write_errors_total{volume=\"1\"}")
    );
}

#[test]
fn no_space_raises_a_critical_alert_that_clears() {
    let m = Mount::start(&["--default-volume", "2"]);
    let a = m.put(&sector(900));
    m.put(&sector(901));
    let e = m.try_put(&sector(902)).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC);
    let status = m.read("status");
    assert!(status.starts_with("error"), "{status}");
    assert!(status.contains("critical"), "{status}");
    assert!(
        status.contains("no writable volume has a free slot"),
        "{status}"
    );
    std::fs::remove_file(m.sector_path(&a)).unwrap();
    let status = m.read("status");
    assert!(!status.contains("no writable volume"), "{status}");
}

/// Breaks a stopped store in one way through SQL and expects the offline
/// check to name it and exit non-zero.
fn broken(how: &str, sql: &str, expect: &str) {
    let mut m = Mount::start(&[]);
    let r = m.put(&sector(950));
    m.put(&sector(951));
    std::fs::write(m.path("contracts/c"), format!("{r}\n")).unwrap();
    m.unmount();
    let out = sectorfs(&["check", "--data-dir"], &[m.data.as_os_str()]);
    assert!(
        out.status.success(),
        "healthy before {how}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("clean"));
    let db = rusqlite::Connection::open(m.data.join("sectorfs.db")).unwrap();
    db.execute_batch(sql).unwrap();
    drop(db);
    let out = sectorfs(&["check", "--data-dir"], &[m.data.as_os_str()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{how}: {text}");
    assert!(
        text.contains(expect),
        "{how}: expected {expect:?} in {text}"
    );
}

#[test]
fn the_offline_check_finds_each_kind_of_damage() {
    broken(
        "a contract entry without its sector",
        "PRAGMA foreign_keys=OFF; INSERT INTO contract_entries VALUES (1, 99, 12345);",
        "contract entries point at a sector that is not stored",
    );
    broken(
        "a temp entry without its sector",
        "PRAGMA foreign_keys=OFF; INSERT INTO temp_entries VALUES (50, 12345);",
        "temp entries point at a sector that is not stored",
    );
    broken(
        "a sector without references",
        "DELETE FROM pins WHERE sector_id = (SELECT max(id) FROM sectors);",
        "have no reference left",
    );
    broken(
        "a sector outside its volume",
        "UPDATE copies SET slot = 100000 WHERE id = (SELECT max(id) FROM copies);",
        "lie outside their volume",
    );
    broken(
        "two sectors in one slot",
        "DROP INDEX copies_location; UPDATE copies SET slot = 0;",
        "owned by more than one sector",
    );
    broken(
        "two copies of a sector on one volume",
        "DROP INDEX copies_sector; INSERT INTO copies (sector_id, volume_id, slot, added_at) \
         SELECT sector_id, volume_id, 200, added_at FROM copies LIMIT 1;",
        "two copies on one volume",
    );
    broken(
        "a sector without a copy",
        "DELETE FROM copies WHERE id = (SELECT max(id) FROM copies);",
        "have no copy",
    );
}

#[test]
fn the_offline_check_finds_missing_and_short_volume_files() {
    for truncate in [false, true] {
        let mut m = Mount::start(&[]);
        m.put(&sector(960));
        m.unmount();
        let vol = m.data.join("volumes/default.vol");
        if truncate {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&vol)
                .unwrap()
                .set_len(4096)
                .unwrap();
        } else {
            std::fs::remove_file(&vol).unwrap();
        }
        let out = sectorfs(&["check", "--data-dir"], &[m.data.as_os_str()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("volume 1"), "{text}");
    }
}
