//! `sectorfs import hostd|siad` (issue 21): a hostd-shaped database made by
//! the test (each schema shape a running host may be on), imported by the
//! real binary, then mounted and read with std::fs.

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sectorfs::merkle::{Root, SECTOR_SIZE, sector_root};

use super::common::hostd::{Hostd, MapRef, Shape, contract_id, contract_name, synthetic};
use super::common::rng::Rng;
use super::harness::{BIN, Mount, errno, sector, xattr};

const SLOT: u64 = SECTOR_SIZE as u64;
const TEMP_HEIGHT: i64 = 500;

fn sectorfs(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "sectorfs=info")
        .output()
        .expect("run sectorfs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "sectorfs failed with {}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn import_hostd(db: &Path, data: &Path, flags: &[&str]) -> Output {
    let mut args = vec![
        "import",
        "hostd",
        "--hostd-db",
        db.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    sectorfs(&args)
}

fn report(data: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(data.join("import-report.json")).unwrap()).unwrap()
}

/// Every file in `dir` with its bytes: hostd's files must never change.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

/// The sectors of the fixture, by number (noise of seed 9000 + n).
fn s(n: u64) -> Vec<u8> {
    sector(9000 + n)
}

fn r(n: u64) -> Root {
    sector_root(&s(n))
}

/// The fixture of the issue, in `dir`:
/// - volume 1 `a.vol` (8 slots): s1 @0, s2 @3, s3 @5, s4 @6, s7 @7;
/// - volume 2 `b.vol` (6 slots, read-only): s5 @1, s10 @2, s11 @3, s6 @4;
/// - volume 3 `missing.vol` (4 slots, its file missing): s8 @2;
/// - s9 stored in no slot;
/// - v1 contract C1 (open): s1 s2 s1 s9; v1 C2 (resolved): s10;
/// - v2 C3a (renewed, resolved) and its renewal C3 (open): s2 s5 s8 (from
///   schema 49: one roots map, C3 rewriting positions 0 and 2 of C3a's
///   s6 s5 s3 and writing a position 3 past its sector count);
/// - v2 C4 (rejected): s11;
/// - a temp root s7 at height 500;
///
/// so s3, s4, s6, s10, s11 are unreferenced, s8 and s9 lost. C3, C4 and
/// the temp root are committed only in the `-wal` that a crash left.
/// Returns the path of hostd's database.
fn fixture(dir: &Path, shape: Shape) -> PathBuf {
    let live = dir.join("live");
    let hostd_dir = dir.join("hostd");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::create_dir_all(&hostd_dir).unwrap();
    let h = Hostd::create(&live.join("hostd.db"), shape);
    let a = dir.join("a.vol");
    let b = dir.join("b.vol");
    h.volume(1, &a, 8, false);
    h.volume(2, &b, 6, true);
    h.volume(3, &dir.join("missing.vol"), 4, false);
    let place: [(u64, i64, i64); 10] = [
        (1, 1, 0),
        (2, 1, 3),
        (3, 1, 5),
        (4, 1, 6),
        (7, 1, 7),
        (5, 2, 1),
        (10, 2, 2),
        (11, 2, 3),
        (6, 2, 4),
        (8, 3, 2),
    ];
    for (path, slots) in [(&a, 8), (&b, 6)] {
        std::fs::File::create(path)
            .unwrap()
            .set_len(slots * SLOT)
            .unwrap();
    }
    for (n, volume, slot) in place {
        h.sector(n as i64, &r(n), Some((volume, slot)));
        if volume < 3 {
            let path = if volume == 1 { &a } else { &b };
            let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            f.write_all_at(&s(n), slot as u64 * SLOT).unwrap();
        }
    }
    h.sector(9, &r(9), None);
    h.v1_contract(1, &contract_id(1), false);
    for (i, n) in [1, 2, 1, 9].into_iter().enumerate() {
        h.v1_root(1, i as i64, n);
    }
    h.v1_contract(2, &contract_id(2), true);
    h.v1_root(2, 0, 10);
    // the rest only in the WAL
    h.conn
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA wal_autocheckpoint = 0;")
        .unwrap();
    match shape {
        Shape::V49 => {
            let map = |revision, sector_count| MapRef {
                map: 1,
                revision,
                sector_count,
            };
            h.v2_contract(1, &contract_id(31), "renewed", true, Some(map(0, 3)));
            h.v2_contract(2, &contract_id(3), "active", false, Some(map(1, 3)));
            for (rev, idx, n) in [
                (0, 0, 6),
                (0, 1, 5),
                (0, 2, 3),
                (1, 0, 2),
                (1, 2, 8),
                (1, 3, 3),
            ] {
                h.map_root(1, rev, idx, n);
            }
            let own = MapRef {
                map: 2,
                revision: 0,
                sector_count: 1,
            };
            h.v2_contract(3, &contract_id(4), "rejected", false, Some(own));
            h.map_root(2, 0, 0, 11);
        }
        _ => {
            h.v2_contract(1, &contract_id(31), "renewed", true, None);
            h.v2_root(1, 0, 6);
            h.v2_contract(2, &contract_id(3), "active", false, None);
            for (i, n) in [2, 5, 8].into_iter().enumerate() {
                h.v2_root(2, i as i64, n);
            }
            h.v2_contract(3, &contract_id(4), "rejected", false, None);
            h.v2_root(3, 0, 11);
        }
    }
    h.temp_root(7, TEMP_HEIGHT);
    let wal = std::fs::metadata(live.join("hostd.db-wal")).unwrap().len();
    assert!(wal > 0, "the fixture leaves committed data in the WAL");
    h.crash_copy(&hostd_dir)
}

fn contract_text(roots: &[u64]) -> String {
    roots.iter().map(|n| format!("{}\n", r(*n))).collect()
}

fn alerts_text(m: &Mount) -> String {
    m.read("status")
}

/// The whole fixture, imported and mounted, checked item by item.
fn hostd_fixture_imports(shape: Shape) {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path(), shape);
    let before = snapshot(db.parent().unwrap());
    let mut summary = String::new();
    let mut m = Mount::start_with(&[], |data| {
        summary = ok(&import_hostd(&db, data, &[]));
    });
    assert!(summary.contains("do not start hostd"), "{summary}");
    assert_eq!(
        snapshot(db.parent().unwrap()),
        before,
        "hostd's files changed"
    );

    let c1 = contract_name(&contract_id(1));
    let c3 = contract_name(&contract_id(3));
    let listed: BTreeSet<String> = std::fs::read_dir(m.path("contracts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([c1.clone(), c3.clone()]),
        "{summary}"
    );
    assert_eq!(
        m.read(&format!("contracts/{c1}")),
        contract_text(&[1, 2, 1])
    );
    assert_eq!(
        m.read(&format!("contracts/{c3}")),
        contract_text(&[2, 5, 8])
    );
    for n in [1, 2, 5, 7] {
        let got = std::fs::read(m.sector_path(&r(n))).unwrap();
        assert!(got == s(n), "sector s{n} reads back as written");
    }
    // s2 is held twice by C1 and once by C3; s1 twice by C1
    assert_eq!(m.refs(&r(2)), "pin=0 contracts=2 temp=0");
    assert_eq!(m.refs(&r(1)), "pin=0 contracts=2 temp=0");
    assert_eq!(
        xattr(&m.sector_path(&r(5)), "user.sectorfs.volume").unwrap(),
        "2"
    );
    assert_eq!(m.read("volumes/2/readonly").trim(), "1");
    assert_eq!(m.read("volumes/3/state").trim(), "unavailable");
    let e = std::fs::read(m.sector_path(&r(8))).unwrap_err();
    assert_eq!(errno(&e), libc::EIO, "s8's volume is missing");
    let temp: Vec<String> = std::fs::read_dir(m.path(&format!("temp/{TEMP_HEIGHT}")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(temp, vec![r(7).to_string()]);
    // unreferenced: gone, and their slots free and punched
    for n in [3, 4, 6, 10, 11] {
        assert!(!m.sector_path(&r(n)).exists(), "s{n} was freed");
    }
    assert_eq!(m.used(1), 3);
    assert_eq!(m.used(2), 1);
    let a = std::fs::File::open(dir.path().join("a.vol")).unwrap();
    let mut slot6 = vec![1u8; SECTOR_SIZE];
    a.read_exact_at(&mut slot6, 6 * SLOT).unwrap();
    assert!(slot6.iter().all(|b| *b == 0), "a freed slot is punched");
    // lost: in the report and in /status, with their contracts
    let rep = report(&m.data);
    let lost = rep["lost"].as_array().unwrap();
    assert_eq!(lost.len(), 2, "{rep:#}");
    let find = |root: Root| {
        lost.iter()
            .find(|l| l["root"] == root.to_string())
            .unwrap_or_else(|| panic!("{root} is reported lost: {rep:#}"))
    };
    assert_eq!(find(r(9))["contracts"][0]["contract"], c1.as_str());
    assert_eq!(find(r(9))["contracts"][0]["index"], 3);
    assert_eq!(find(r(8))["contracts"][0]["contract"], c3.as_str());
    assert_eq!(rep["freed"], 5);
    assert_eq!(rep["sectors"], 5);
    assert_eq!(rep["contracts"], 2);
    assert_eq!(rep["contracts_resolved"], 3);
    assert_eq!(rep["temp_entries"], 1);
    let status = alerts_text(&m);
    for needle in [r(9).to_string(), r(8).to_string(), c1.clone(), c3.clone()] {
        assert!(status.contains(&needle), "{needle} in /status:\n{status}");
    }
    m.unmount();
    // the offline check: the metadata and every available volume clean
    for v in ["1", "2"] {
        let data = m.data.to_str().unwrap().to_string();
        ok(&sectorfs(&["check", "--data-dir", &data, "--volume", v]));
    }
}

#[test]
fn import_hostd_before_schema_44() {
    hostd_fixture_imports(Shape::V43);
}

#[test]
fn import_hostd_schema_48() {
    hostd_fixture_imports(Shape::V48);
}

#[test]
fn import_hostd_schema_49_roots_maps() {
    hostd_fixture_imports(Shape::V49);
}

#[test]
fn import_hostd_pins_unreferenced_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path(), Shape::V49);
    let m = Mount::start_with(&[], |data| {
        ok(&import_hostd(&db, data, &["--pin-unreferenced"]));
    });
    for n in [3, 4, 6, 10, 11] {
        assert_eq!(m.refs(&r(n)), "pin=1 contracts=0 temp=0", "s{n} is pinned");
        assert!(std::fs::read(m.sector_path(&r(n))).unwrap() == s(n));
    }
    assert_eq!(m.used(1), 5);
    assert_eq!(report(&m.data)["pinned"], 5);
}

#[test]
fn import_hostd_verify_reports_a_damaged_slot() {
    let dir = tempfile::tempdir().unwrap();
    let db = fixture(dir.path(), Shape::V49);
    // s2 (slot 3 of a.vol): one byte flipped
    let a = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path().join("a.vol"))
        .unwrap();
    let mut byte = [0u8; 1];
    a.read_exact_at(&mut byte, 3 * SLOT + 1234).unwrap();
    a.write_all_at(&[byte[0] ^ 0xff], 3 * SLOT + 1234).unwrap();
    let mut out = None;
    let m = Mount::start_with(&[], |data| {
        out = Some(import_hostd(&db, data, &["--verify"]));
    });
    let summary = ok(out.as_ref().unwrap());
    assert!(summary.contains("corrupt       1"), "{summary}");
    let rep = report(&m.data);
    assert_eq!(rep["verified"], 4, "{rep:#}");
    let corrupt = rep["corrupt"].as_array().unwrap();
    assert_eq!(corrupt.len(), 1, "{rep:#}");
    assert_eq!(corrupt[0]["root"], r(2).to_string());
    let holders: Vec<(String, u64)> = corrupt[0]["contracts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["contract"].as_str().unwrap().to_string(),
                e["index"].as_u64().unwrap(),
            )
        })
        .collect();
    let c1 = contract_name(&contract_id(1));
    let c3 = contract_name(&contract_id(3));
    assert_eq!(holders, vec![(c1, 1), (c3, 0)]);
    let status = m.read("status");
    assert!(
        status.contains("corrupt") && status.contains(&r(2).to_string()),
        "{status}"
    );
    let e = std::fs::read(m.sector_path(&r(2))).unwrap_err();
    assert_eq!(errno(&e), libc::EIO);
    assert!(std::fs::read(m.sector_path(&r(1))).unwrap() == s(1));
}

#[test]
fn import_refuses_a_running_hostd_and_a_store_that_exists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostd.db");
    let h = Hostd::create(&path, Shape::V48);
    h.volume(1, &dir.path().join("a.vol"), 2, false);
    // another process holds the database open, mid-write
    h.conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO stored_sectors (id, sector_root, last_access_timestamp) VALUES (1, x'00', 0);").unwrap();
    let data = dir.path().join("data");
    let out = import_hostd(&path, &data, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("open in another process") && err.contains("hostd"),
        "{err}"
    );
    assert!(!data.join("sectorfs.db").exists(), "nothing written");
    assert!(!data.join("import-report.json").exists());
    h.conn.execute_batch("ROLLBACK").unwrap();
    drop(h);
    // stopped: imported; then the data dir holds a store and is refused
    ok(&import_hostd(&path, &data, &[]));
    let out = import_hostd(&path, &data, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds a sectorfs database"), "{err}");
}

/// kill -9 at random points: no database is left behind, and a rerun
/// makes the same store as an import that was never interrupted.
#[test]
fn import_killed_at_random_points_leaves_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let (sectors, contracts, per) = (20_000u64, 200u64, 200u64);
    let db = dir.path().join("hostd.db");
    drop(synthetic(
        &db,
        &dir.path().join("v.vol"),
        sectors,
        contracts,
        per,
        7,
    ));
    let whole = dir.path().join("whole");
    let t = std::time::Instant::now();
    ok(&import_hostd(&db, &whole, &[]));
    let took = t.elapsed();
    let want = report(&whole);
    let mut rng = Rng::new(21);
    let data = dir.path().join("data");
    let mut killed = 0;
    for round in 0..6 {
        let delay = took.mul_f64(rng.below(1000) as f64 / 1000.0);
        let mut child = Command::new(BIN)
            .args(["import", "hostd", "--hostd-db"])
            .arg(&db)
            .arg("--data-dir")
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap_or(());
        child.wait().unwrap();
        if finished {
            // done before the kill: a complete store, started over
            assert!(data.join("sectorfs.db").exists());
            std::fs::remove_dir_all(&data).unwrap();
            continue;
        }
        let has_db = data.join("sectorfs.db").exists();
        assert!(
            !has_db,
            "round {round}: killed after {delay:?}, a database was left"
        );
        killed += 1;
    }
    assert!(killed > 0, "some round killed an import under way");
    ok(&import_hostd(&db, &data, &[]));
    let got = report(&data);
    for key in ["sectors", "contracts", "contract_entries", "freed"] {
        assert_eq!(got[key], want[key], "{key}");
    }
    assert_eq!(got["sectors"], sectors);
    assert_eq!(got["contract_entries"], contracts * per);
    let leftovers: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("importing"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let engine = sectorfs::engine::Engine::open(
        &data,
        sectorfs::engine::Options {
            default_volume_slots: 0,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        engine.meta().consistency_problems().unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(engine.meta().count_sectors().unwrap(), sectors);
}

#[test]
fn import_siad_rescans_allocated_slots_only() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    let data_file = folder.join("siahostdata.dat");
    let f = std::fs::File::create(&data_file).unwrap();
    f.set_len(64 * SLOT).unwrap();
    // sectors at scattered slots, a stale one nobody holds, and a second
    // copy of one of them; every other slot a hole
    let at = [
        (0u64, 20u64),
        (5, 21),
        (6, 22),
        (30, 23),
        (63, 24),
        (40, 25),
        (50, 21),
    ];
    for (slot, n) in at {
        f.write_all_at(&s(n), slot * SLOT).unwrap();
    }
    f.sync_all().unwrap();
    let contracts = dir.path().join("contracts");
    std::fs::create_dir(&contracts).unwrap();
    std::fs::write(contracts.join("siad-a"), contract_text(&[20, 21, 20, 22])).unwrap();
    let lost = sector_root(&sector(77));
    let mut b = contract_text(&[23, 24]);
    b.push_str(&format!("{lost}\n"));
    std::fs::write(contracts.join("siad-b"), &b).unwrap();
    let m = Mount::start_with(&[], |data| {
        ok(&sectorfs(&[
            "import",
            "siad",
            "--data-dir",
            data.to_str().unwrap(),
            "--folder",
            folder.to_str().unwrap(),
            "--contracts",
            contracts.to_str().unwrap(),
        ]));
    });
    let rep = report(&m.data);
    assert_eq!(
        rep["volumes"][0]["slots_read"], 7,
        "holes are not read: {rep:#}"
    );
    assert_eq!(rep["sectors"], 5);
    assert_eq!(rep["freed"], 2, "the stale sector and the second copy");
    assert_eq!(rep["lost"][0]["root"], lost.to_string());
    assert_eq!(rep["lost"][0]["contracts"][0]["contract"], "siad-b");
    assert_eq!(rep["lost"][0]["contracts"][0]["index"], 2);
    assert_eq!(m.read("contracts/siad-a"), contract_text(&[20, 21, 20, 22]));
    assert_eq!(m.read("contracts/siad-b"), contract_text(&[23, 24]));
    for (slot, n) in at.iter().take(5) {
        let path = m.sector_path(&r(*n));
        assert!(std::fs::read(&path).unwrap() == s(*n), "s{n} reads back");
        assert_eq!(
            xattr(&path, "user.sectorfs.slot").unwrap(),
            slot.to_string()
        );
    }
    assert!(
        !m.sector_path(&r(25)).exists(),
        "the stale sector was freed"
    );
    assert_eq!(m.refs(&r(20)), "pin=0 contracts=2 temp=0");
    assert!(m.read("status").contains(&lost.to_string()));
}
