//! Volumes that move: detach and attach (to this store or another), and
//! redeclare (the index rebuilt from the data).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sectorfs::merkle::{Root, sector_root};

use super::harness::{Mount, errno, read_uncached, sector, wait_for, write_file, xattr};

const SECTOR: u64 = 4 << 20;

/// A store with one 16-slot volume at `<scratch>/<name>`.
fn store_with_volume(name: &str, slots: u64) -> (Mount, PathBuf) {
    let m = Mount::start(&["--default-volume", "0"]);
    let vol = m.scratch().join(name);
    m.write("volumes/add", &format!("{} {slots}\n", vol.display()))
        .unwrap();
    (m, vol)
}

/// Writes sectors `sector(seed + i)` into the first `n` slots of volume
/// file `vol`, behind the store's back (what a redeclare then finds).
fn fill_behind(vol: &std::path::Path, n: u64, seed: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(vol).unwrap();
    for i in 0..n {
        f.write_all_at(&sector(seed + i), i * SECTOR).unwrap();
    }
    f.sync_all().unwrap();
}

fn slot_of(m: &Mount, r: &Root) -> u64 {
    xattr(&m.sector_path(r), "user.sectorfs.slot")
        .unwrap()
        .parse()
        .unwrap()
}

fn alerts_text(m: &Mount) -> String {
    m.read("status")
}

/// Waits for the job on volume 1 to end and returns its alert message.
fn job_done(m: &Mount) -> String {
    let mut msg = String::new();
    wait_for("the redeclare to end", 60, || {
        let status = m.status_json();
        msg = status["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["message"].as_str().unwrap().to_string())
            .find(|t| t.starts_with("redeclare of volume 1:"))
            .unwrap_or_default();
        !msg.is_empty()
    });
    msg
}

#[test]
fn a_detached_volume_fails_with_eio_and_attached_again_reads_back() {
    let (m, vol) = store_with_volume("a.vol", 16);
    let roots: Vec<Root> = (0..3).map(|i| m.put(&sector(i))).collect();
    m.write("volumes/1/detach", "1\n").unwrap();
    assert_eq!(m.read("volumes/1/state"), "detached\n");
    let mut name = vol.as_os_str().to_os_string();
    name.push(".sectorfs");
    let side: serde_json::Value = serde_json::from_slice(&std::fs::read(&name).unwrap()).unwrap();
    assert_eq!(side["index"].as_array().unwrap().len(), 3, "{side}");
    for r in &roots {
        assert_eq!(m.nlink(r), 1, "still referenced");
        let e = read_uncached(&m.sector_path(r)).unwrap_err();
        assert_eq!(errno(&e), libc::EIO);
    }
    // the aggregates' pass, woken by the detach, counts them
    wait_for("the alert of sectors with no readable copy", 30, || {
        alerts_text(&m).contains("no readable copy")
    });
    let e = m.write("volumes/1/detach", "1\n").unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL, "already detached");
    for bad in ["0", "yes", "11", "1 1"] {
        let e = m
            .write("volumes/1/detach", &format!("{bad}\n"))
            .unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "{bad:?}");
    }
    m.write("volumes/attach", &format!("{}\n", vol.display()))
        .unwrap();
    assert_eq!(m.read("volumes/1/state"), "ready\n");
    for (i, r) in roots.iter().enumerate() {
        assert_eq!(read_uncached(&m.sector_path(r)).unwrap(), sector(i as u64));
    }
    let e = m
        .write("volumes/attach", &format!("{}\n", vol.display()))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST, "already attached");
    let bare = m.scratch().join("bare.vol");
    std::fs::write(&bare, b"").unwrap();
    let e = m
        .write("volumes/attach", &format!("{}\n", bare.display()))
        .unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT, "no sidecar");
    for bad in ["relative.vol", "/a/../b", "", "/x\u{1b}y"] {
        let e = m.write("volumes/attach", &format!("{bad}\n")).unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "{bad:?}");
    }
    m.put(&sector(7));
    assert_eq!(m.used(1), 4, "takes new sectors again");
}

/// Detached from store A, attached to a new store B: B has every sector,
/// pinned, verified (a slot whose bytes changed is not taken).
#[test]
fn a_volume_detached_from_one_store_is_adopted_by_another() {
    let (a, vol) = store_with_volume("moving.vol", 16);
    let roots: Vec<Root> = (0..4).map(|i| a.put(&sector(i))).collect();
    let list: String = roots.iter().map(|r| format!("{r}\n")).collect();
    write_file(&a.path("contracts/c"), list.as_bytes()).unwrap();
    let spoiled = slot_of(&a, &roots[3]);
    a.write("volumes/1/detach", "1\n").unwrap();
    // a bad block on the way: those bytes no longer hash to their root
    let f = std::fs::OpenOptions::new().write(true).open(&vol).unwrap();
    f.write_all_at(b"rot", spoiled * SECTOR + 4096).unwrap();
    drop(f);
    let b = Mount::start(&[]);
    b.write("volumes/attach", &format!("{}\n", vol.display()))
        .unwrap();
    assert_eq!(b.read("volumes/2/path").trim(), vol.to_str().unwrap());
    for (i, r) in roots.iter().take(3).enumerate() {
        assert_eq!(read_uncached(&b.sector_path(r)).unwrap(), sector(i as u64));
        assert_eq!(b.refs(r), "pin=1 contracts=0 temp=0");
    }
    assert!(
        !b.sector_path(&roots[3]).exists(),
        "the spoiled slot is not taken"
    );
    let status = alerts_text(&b);
    assert!(
        status.contains("3 sectors registered and pinned") && status.contains("1 slot not"),
        "{status}"
    );
    let e = b
        .write("volumes/attach", &format!("{}\n", vol.display()))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST);
}

/// Writes `data` into `slot` of the volume file, behind the store's back.
fn write_behind(vol: &Path, slot: u64, data: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(vol).unwrap();
    f.write_all_at(data, slot * SECTOR).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn redeclare_finds_registers_and_reports_lost() {
    let (m, vol) = store_with_volume("r.vol", 16);
    let roots: Vec<Root> = (0..3).map(|i| m.put(&sector(i))).collect();
    write_file(
        &m.path("contracts/deal"),
        format!("{}\n", roots[1]).as_bytes(),
    )
    .unwrap();

    // (c) nothing changed: no difference
    m.write("volumes/1/redeclare", "1\n").unwrap();
    let msg = job_done(&m);
    assert!(
        msg.contains("3 kept") && msg.contains("no difference"),
        "{msg}"
    );

    // (a) a sector written into a free slot behind the store's back
    write_behind(&vol, 9, &sector(50));
    m.write("status", "dismiss all\n").unwrap();
    m.write("volumes/1/redeclare", "1\n").unwrap();
    let msg = job_done(&m);
    assert!(msg.contains("1 found and pinned"), "{msg}");
    let found = sector_root(&sector(50));
    assert_eq!(m.refs(&found), "pin=1 contracts=0 temp=0");
    assert_eq!(slot_of(&m, &found), 9);
    assert_eq!(read_uncached(&m.sector_path(&found)).unwrap(), sector(50));

    // (b) a stored slot punched out: lost, reported with its contract
    let slot = slot_of(&m, &roots[1]);
    m.sh_ok(&format!(
        "fallocate -p -o {} -l {SECTOR} {}",
        slot * SECTOR,
        vol.display()
    ));
    m.write("status", "dismiss all\n").unwrap();
    m.write("volumes/1/redeclare", "1\n").unwrap();
    let msg = job_done(&m);
    assert!(
        msg.contains("1 sector lost with no other copy") && msg.contains("deal"),
        "{msg}"
    );
    assert_eq!(m.nlink(&roots[1]), 2, "references are kept, reported");
    let e = read_uncached(&m.sector_path(&roots[1])).unwrap_err();
    assert_eq!(errno(&e), libc::EIO);
    assert_eq!(read_uncached(&m.sector_path(&roots[0])).unwrap(), sector(0));

    for bad in ["2", "yes", "-1"] {
        let e = m
            .write("volumes/1/redeclare", &format!("{bad}\n"))
            .unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "{bad}");
    }
}

/// kill -9 during a redeclare: it resumes at the next mount and finishes.
#[test]
fn a_redeclare_killed_resumes_at_the_next_mount() {
    let n = 96;
    let (mut m, vol) = store_with_volume("big.vol", n);
    fill_behind(&vol, n, 1000);
    m.write("volumes/1/redeclare", "1\n").unwrap();
    m.kill();
    m.mount();
    let msg = job_done(&m);
    assert!(
        msg.contains(&format!("{n} found and pinned")) || msg.contains("found and pinned"),
        "{msg}"
    );
    assert!(
        m.log().contains("resuming an interrupted redeclare"),
        "the job was resumed"
    );
    for i in [0, n / 2, n - 1] {
        let r = sector_root(&sector(1000 + i));
        assert_eq!(m.refs(&r), "pin=1 contracts=0 temp=0");
    }
    assert_eq!(m.used(1), n);
}

#[test]
fn a_redeclare_cancelled_stops_and_a_new_one_finishes() {
    let n = 160;
    let (m, vol) = store_with_volume("big.vol", n);
    fill_behind(&vol, n, 2000);
    m.write("volumes/1/redeclare", "1\n").unwrap();
    // hashing 640 MiB takes far longer than this write
    m.write("volumes/1/redeclare", "cancel\n").unwrap();
    let msg = job_done(&m);
    assert!(msg.contains("cancelled"), "{msg}");
    // what it registered before the cancel stays registered, nothing more
    let found = m.used(1);
    assert!(found < n, "{found} of {n} registered before the cancel");
    let e = m.write("volumes/1/redeclare", "cancel\n").unwrap_err();
    assert!(
        [libc::EINVAL, libc::ENOENT].contains(&errno(&e)),
        "a cancel with no redeclare running: {e}"
    );
    m.write("volumes/1/redeclare", "1\n").unwrap();
    wait_for("the second redeclare to register every slot", 120, || {
        m.used(1) == n
    });
    let r = sector_root(&sector(2000 + n - 1));
    assert_eq!(m.refs(&r), "pin=1 contracts=0 temp=0");
}
