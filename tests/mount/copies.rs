//! Copies: every sector on `min` volumes of distinct devices, reads that
//! go on when a copy is gone or corrupt, self-healing, and the repair that
//! adds copies on churn and drops those beyond `max`.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::harness::{Mount, errno, offline_check, read_uncached, sector, wait_for, xattr};
use super::loopfs::LoopFs;
use sectorfs::merkle::Root;

const SECTOR: usize = 4 << 20;

/// Each copy of a sector as (volume, slot), from `user.sectorfs.copies`.
fn copies(m: &Mount, root: &Root) -> Vec<(u32, u64)> {
    xattr(&m.sector_path(root), "user.sectorfs.copies")
        .unwrap()
        .split_whitespace()
        .map(|c| {
            let (v, s) = c.split_once(':').expect("volume:slot");
            (v.parse().unwrap(), s.parse().unwrap())
        })
        .collect()
}

/// Sectors by readable copies, as `/status.json` counts them.
fn by_copies(m: &Mount) -> BTreeMap<u64, u64> {
    let s = m.status_json();
    s["totals"]["by_copies"]
        .as_object()
        .expect("copies in status.json")
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.as_u64().unwrap()))
        .collect()
}

fn add_volume(m: &Mount, path: &Path, slots: u64) -> u32 {
    m.write("volumes/add", &format!("{} {slots}\n", path.display()))
        .unwrap();
    let ids: Vec<u32> = std::fs::read_dir(m.path("volumes"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .collect();
    *ids.iter().max().unwrap()
}

fn assert_reads(m: &Mount, sectors: &[(Root, Vec<u8>)], when: &str) {
    for (root, data) in sectors {
        let got = std::fs::read(m.sector_path(root))
            .unwrap_or_else(|e| panic!("{when}: reading {root}: {e}"));
        assert!(got == *data, "{when}: sector {root} reads wrong bytes");
    }
}

/// Three volumes on three ext4 file systems (three devices): with `copies
/// 2`, every sector lands on two devices; one volume's file deleted under
/// the mount, every sector still reads right at once; once it has been
/// unavailable for --repair-after, the repair puts the lost copies on the
/// remaining devices; removed with force, the store checks clean.
#[test]
fn a_deleted_volume_loses_no_sector_and_the_repair_restores_two_copies() {
    let fs: Vec<LoopFs> = (0..3)
        .filter_map(|_| LoopFs::sized_or_skip(256 << 20))
        .collect();
    if fs.len() < 3 {
        return;
    }
    let mut m = Mount::start(&["--default-volume", "0", "--repair-after", "1s"]);
    let a = add_volume(&m, &fs[0].mnt.join("a.vol"), 24);
    let b = add_volume(&m, &fs[1].mnt.join("b.vol"), 24);
    m.write("copies", "2\n").unwrap();
    assert_eq!(m.read("copies"), "2 2\n");
    let sectors: Vec<(Root, Vec<u8>)> = (0..12)
        .map(|i| {
            let data = sector(7100 + i);
            (m.put(&data), data)
        })
        .collect();
    for (root, _) in &sectors {
        let mut vols: Vec<u32> = copies(&m, root).iter().map(|c| c.0).collect();
        vols.sort();
        assert_eq!(vols, [a, b], "two copies, one per device");
    }
    assert_eq!(by_copies(&m), BTreeMap::from([(2, 12)]));

    std::fs::remove_file(fs[0].mnt.join("a.vol")).unwrap();
    assert_reads(&m, &sectors, "right after the file went");
    wait_for("volume a to be unavailable", 30, || {
        m.read(&format!("volumes/{a}/state")).trim() == "unavailable"
    });
    assert_reads(&m, &sectors, "with the volume unavailable");
    // one device left: no room for a second copy yet
    wait_for("the census to count the lost copies", 30, || {
        by_copies(&m) == BTreeMap::from([(1, 12)])
    });
    let status = m.read("status");
    assert!(status.contains("fewer than 2 readable copies"), "{status}");

    let c = add_volume(&m, &fs[2].mnt.join("c.vol"), 24);
    wait_for("the repair to add the missing copies", 60, || {
        by_copies(&m) == BTreeMap::from([(2, 12)])
    });
    assert_reads(&m, &sectors, "after the repair");
    for (root, _) in &sectors {
        let vols: Vec<u32> = copies(&m, root).iter().map(|c| c.0).collect();
        assert!(vols.contains(&b) && vols.contains(&c), "{vols:?}");
    }
    m.write(&format!("volumes/{a}/remove"), "force\n").unwrap();
    wait_for("volume a to be removed", 60, || {
        !m.path(&format!("volumes/{a}")).exists()
    });
    for (root, _) in &sectors {
        assert_eq!(copies(&m, root).len(), 2);
    }
    assert_reads(&m, &sectors, "after the removal");
    m.unmount();
    offline_check(&m, "after the repair and the removal");
}

/// With verified reads, a flipped byte in one copy is never served: the
/// read is answered from the other copy, the bad copy is rewritten, and
/// its volume's counters and an alert say so.
#[test]
fn a_corrupt_copy_is_read_from_the_other_and_rewritten() {
    let m = Mount::start(&["--default-volume", "0", "--verify-reads"]);
    let one = add_volume(&m, &m.scratch().join("one.vol"), 8);
    let two = add_volume(&m, &m.scratch().join("two.vol"), 8);
    m.write("copies", "2\n").unwrap();
    let data = sector(7200);
    let root = m.put(&data);
    let before = copies(&m, &root);
    assert_eq!(before.len(), 2);
    let (bad_vol, bad_slot) = before[0];
    let path = m.read(&format!("volumes/{bad_vol}/path"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path.trim())
        .unwrap();
    let at = bad_slot * SECTOR as u64 + 1000;
    file.write_all_at(&[data[1000] ^ 0xFF], at).unwrap();
    drop(file);

    let got = std::fs::read(m.sector_path(&root)).unwrap();
    assert!(got == data, "the read is answered by the good copy");
    wait_for("the bad copy to be rewritten", 30, || {
        m.read(&format!("volumes/{bad_vol}/stats"))
            .contains("healed 1\n")
    });
    let stats = m.read(&format!("volumes/{bad_vol}/stats"));
    assert!(stats.contains("corrupt 1\n"), "{stats}");
    let status = m.read("status");
    assert!(status.contains("was rewritten from its copy"), "{status}");
    // the rewritten copy holds the right bytes, in a fresh slot
    let after = copies(&m, &root);
    assert_eq!(after.len(), 2);
    let healed = after.iter().find(|c| c.0 == bad_vol).unwrap();
    assert_ne!(healed.1, bad_slot);
    let path = m.read(&format!("volumes/{bad_vol}/path"));
    let mut buf = vec![0u8; SECTOR];
    std::fs::File::open(path.trim())
        .unwrap()
        .read_exact_at(&mut buf, healed.1 * SECTOR as u64)
        .unwrap();
    assert!(buf == data, "the rewritten copy is right");
    assert!(after.iter().any(|c| c.0 == two) && after.iter().any(|c| c.0 == one));
    let metrics = m.read("metrics");
    assert!(
        metrics.contains(&format!("sectorfs_healed_total{{volume=\"{bad_vol}\"}} 1")),
        "{metrics}"
    );
}

/// Raising min from 1 to 2 on a store of 256 sectors copies them all while
/// readers go on without one failed read; lowering it again drops the
/// copies added last and punches their slots.
#[test]
fn raising_and_lowering_copies_with_reads_going_on() {
    let m = Mount::start(&["--default-volume", "0"]);
    let one = add_volume(&m, &m.scratch().join("one.vol"), 260);
    let two = add_volume(&m, &m.scratch().join("two.vol"), 260);
    let sectors: Vec<(Root, Vec<u8>)> = (0..256)
        .map(|i| {
            let data = sector(7300 + i);
            (m.put(&data), data)
        })
        .collect();
    assert_eq!(m.used(one), 256);
    assert_eq!(by_copies(&m), BTreeMap::from([(1, 256)]));

    let stop = AtomicBool::new(false);
    let (reads, failures) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let (root, data) = &sectors[i % sectors.len()];
                // past the kernel's cache: the daemon answers
                match read_uncached(&m.sector_path(root)) {
                    Ok(got) if got == *data => {}
                    Ok(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("read failed: {e}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                reads.fetch_add(1, Ordering::Relaxed);
                i += 7;
            }
        });
        m.write("copies", "2\n").unwrap();
        wait_for("every sector to have two copies", 120, || {
            by_copies(&m) == BTreeMap::from([(2, 256)])
        });
        stop.store(true, Ordering::Relaxed);
    });
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no read failed");
    assert_eq!((m.used(one), m.used(two)), (256, 256));
    let status = m.read("status");
    assert!(status.contains("repair of copies is done"), "{status}");

    m.write("copies", "1\n").unwrap();
    wait_for("the extra copies to go", 120, || {
        by_copies(&m) == BTreeMap::from([(1, 256)]) && m.used(two) == 0
    });
    assert_eq!(m.used(one), 256, "the copies added last went");
    assert_reads(&m, &sectors, "after lowering the copies");
    // the dropped copies' slots are punched out of the file
    let path = m.read(&format!("volumes/{two}/path"));
    let blocks = std::fs::metadata(path.trim()).unwrap().blocks();
    assert!(
        blocks * 512 < SECTOR as u64,
        "{blocks} blocks still allocated"
    );
}

/// A volume away long enough to be repaired around, then back: the copies
/// added meanwhile go again, so no sector keeps more than `max`.
#[test]
fn a_volume_gone_and_back_leaves_no_sector_above_max() {
    let m = Mount::start(&["--default-volume", "0", "--repair-after", "1s"]);
    let one = add_volume(&m, &m.scratch().join("one.vol"), 16);
    let two = add_volume(&m, &m.scratch().join("two.vol"), 16);
    m.write("copies", "2\n").unwrap();
    let sectors: Vec<(Root, Vec<u8>)> = (0..6)
        .map(|i| {
            let data = sector(7400 + i);
            (m.put(&data), data)
        })
        .collect();
    let three = add_volume(&m, &m.scratch().join("three.vol"), 16);
    assert_eq!(m.used(three), 0);
    let path = m.scratch().join("one.vol");
    let away = m.scratch().join("one.vol.away");
    std::fs::rename(&path, &away).unwrap();
    wait_for("volume one to be unavailable", 30, || {
        m.read(&format!("volumes/{one}/state")).trim() == "unavailable"
    });
    wait_for("copies on volume three", 60, || {
        m.used(three) == 6 && by_copies(&m) == BTreeMap::from([(2, 6)])
    });
    assert_reads(&m, &sectors, "with volume one away");
    std::fs::rename(&away, &path).unwrap();
    // a check brings it back at once (the health pass would, within 10 s)
    m.write(&format!("volumes/{one}/check"), "1\n").unwrap();
    wait_for("the extra copies to be dropped", 60, || {
        m.read(&format!("volumes/{one}/state")).trim() == "ready"
            && m.used(three) == 0
            && by_copies(&m) == BTreeMap::from([(2, 6)])
    });
    for (root, _) in &sectors {
        let mut vols: Vec<u32> = copies(&m, root).iter().map(|c| c.0).collect();
        vols.sort();
        assert_eq!(vols, [one, two], "the copies added last went");
    }
    assert_reads(&m, &sectors, "after the volume came back");
}

/// `/copies` refuses what is not `<min>` or `<min> <max>` with max >= min
/// >= 1, at the write, and keeps what it had.
#[test]
fn bad_copies_lines_are_refused_at_their_write() {
    let m = Mount::start(&[]);
    for bad in ["0\n", "3 2\n", "two\n", "1 2 3\n", "-1\n", "99999999999\n"] {
        let e = m.write("copies", bad).unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "{bad:?}");
        assert_eq!(m.read("copies"), "1 1\n", "{bad:?} changed nothing");
    }
    m.write("copies", "1 3\n").unwrap();
    assert_eq!(m.read("copies"), "1 3\n");
    wait_for("the repair pass to end", 30, || {
        m.read("status").contains("repair of copies is done")
    });
    let e = m.write("copies", "cancel\n").unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT, "no repair runs");
}
