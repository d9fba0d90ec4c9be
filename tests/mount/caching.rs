//! The kernel caches sector names and attributes, temp directories and
//! contract names; whatever makes one untrue has it dropped before the
//! call returns. Each name is looked up (and so cached) first, then made
//! untrue from another path, then used at once.

use std::io::Write;
use std::os::unix::fs::MetadataExt;

use super::harness::{Mount, errno, sector, xattr};
use sectorfs::merkle::{Root, sector_root};

/// `stat`, `open` and `ls` of a name that must be gone: ENOENT each time
/// (`gone_errno` for names under a directory that went too).
fn assert_gone(m: &Mount, rel: &str, gone_errno: i32) {
    let path = m.path(rel);
    let stat = std::fs::metadata(&path).map(|md| md.ino());
    assert_eq!(stat.map_err(|e| errno(&e)), Err(gone_errno), "stat {rel}");
    let open = std::fs::File::open(&path).map(|_| ());
    assert_eq!(open.map_err(|e| errno(&e)), Err(gone_errno), "open {rel}");
    let (dir, name) = rel.rsplit_once('/').unwrap();
    if let Ok(list) = std::fs::read_dir(m.path(dir)) {
        let names: Vec<String> = list
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n == name), "ls {dir} shows {name}");
    }
}

/// Looks `rel` up (caching its name and attributes) and reads it all.
fn warm(m: &Mount, rel: &str, data: &[u8]) -> u64 {
    let md = std::fs::metadata(m.path(rel)).unwrap_or_else(|e| panic!("stat {rel}: {e}"));
    assert!(
        std::fs::read(m.path(rel)).unwrap() == data,
        "{rel} reads back"
    );
    md.ino()
}

fn slot(m: &Mount, root: &Root) -> u64 {
    xattr(&m.sector_path(root), "user.sectorfs.slot")
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_sector_freed_elsewhere_is_gone_at_once() {
    let m = Mount::start(&["--default-volume", "16"]);
    for round in 0..10u64 {
        // by a contract revision: held only by contract c, cached, freed
        // by a new list that no longer names it
        let (a, b) = (sector(1000 + round * 4), sector(1001 + round * 4));
        let (ra, rb) = (m.put(&a), m.put(&b));
        std::fs::write(m.path("contracts/c"), format!("{ra}\n")).unwrap();
        std::fs::remove_file(m.sector_path(&ra)).unwrap();
        warm(&m, &format!("sectors/{ra}"), &a);
        assert_eq!(m.nlink(&ra), 1);
        std::fs::write(m.path("contracts/c"), format!("{rb}\n")).unwrap();
        assert_gone(&m, &format!("sectors/{ra}"), libc::ENOENT);
        assert_eq!(m.nlink(&rb), 2, "the cached link count of {rb} follows");

        // by a height change: a temp entry only, cached under both names
        // and its directory
        let t = sector(1002 + round * 4);
        let rt = sector_root(&t);
        let h = round + 1;
        std::fs::create_dir(m.path(&format!("temp/{h}"))).unwrap();
        std::fs::write(m.path(&format!("temp/{h}/{rt}")), &t).unwrap();
        warm(&m, &format!("temp/{h}/{rt}"), &t);
        warm(&m, &format!("sectors/{rt}"), &t);
        // pinned too: the height takes only the temp entry
        let p = sector(1003 + round * 4);
        let rp = sector_root(&p);
        std::fs::write(m.path(&format!("temp/{h}/{rp}")), &p).unwrap();
        m.put(&p);
        warm(&m, &format!("temp/{h}/{rp}"), &p);
        assert_eq!(m.nlink(&rp), 2);
        m.write("height", &format!("{h}\n")).unwrap();
        assert_gone(&m, &format!("sectors/{rt}"), libc::ENOENT);
        let expired = std::fs::metadata(m.path(&format!("temp/{h}")));
        assert!(
            expired.is_err(),
            "/temp/{h} is still there after the height passed it"
        );
        assert!(std::fs::metadata(m.path(&format!("temp/{h}/{rt}"))).is_err());
        assert!(std::fs::metadata(m.path(&format!("temp/{h}/{rp}"))).is_err());
        assert_eq!(m.nlink(&rp), 1, "the pin stays");
        warm(&m, &format!("sectors/{rp}"), &p);
        std::fs::remove_file(m.sector_path(&rp)).unwrap();
        assert_gone(&m, &format!("sectors/{rp}"), libc::ENOENT);
    }
    // by removing the contract that held it last (the free happens in
    // the unlink of another directory)
    let d = sector(1999);
    let rd = m.put(&d);
    std::fs::write(m.path("contracts/d"), format!("{rd}\n")).unwrap();
    std::fs::remove_file(m.sector_path(&rd)).unwrap();
    warm(&m, &format!("sectors/{rd}"), &d);
    std::fs::remove_file(m.path("contracts/d")).unwrap();
    assert_gone(&m, &format!("sectors/{rd}"), libc::ENOENT);
    assert_gone(&m, "contracts/d", libc::ENOENT);
}

#[test]
fn a_freed_sector_stored_again_reads_anew() {
    // two slots: the store is full, so each slot's next sector is known
    let m = Mount::start(&["--default-volume", "2"]);
    let (a, b, c) = (sector(2000), sector(2001), sector(2002));
    let (ra, rb) = (m.put(&a), m.put(&b));
    let first = warm(&m, &format!("sectors/{ra}"), &a);
    let old_slot = slot(&m, &ra);
    let mut reader = std::fs::File::open(m.sector_path(&ra)).unwrap();
    std::fs::write(m.path("contracts/keep"), format!("{ra}\n")).unwrap();
    std::fs::remove_file(m.sector_path(&ra)).unwrap();
    // freed by emptying the contract; its slot goes to c
    std::fs::write(m.path("contracts/keep"), "").unwrap();
    assert_gone(&m, &format!("sectors/{ra}"), libc::ENOENT);
    let rc = m.put(&c);
    assert_eq!(slot(&m, &rc), old_slot, "c takes the only free slot");
    // a's old descriptor never shows c's bytes (nor zeros)
    let mut got = Vec::new();
    use std::io::Read;
    if reader.read_to_end(&mut got).is_ok() {
        assert!(
            got.is_empty() || got == a,
            "a descriptor of a freed sector shows other bytes"
        );
    }
    // stored again, in b's slot: a new inode, the new slot, a's bytes
    std::fs::remove_file(m.sector_path(&rb)).unwrap();
    let ra2 = m.put(&a);
    assert_eq!(ra2, ra);
    let again = warm(&m, &format!("sectors/{ra}"), &a);
    assert_ne!(again, first, "stored again under a new inode");
    assert_ne!(slot(&m, &ra), old_slot, "stored again in another slot");
    assert_eq!(m.nlink(&ra), 1);
    // the old descriptor reads the sector by its root: a's bytes again
    let mut got = vec![0; a.len()];
    use std::os::unix::fs::FileExt;
    reader.read_exact_at(&mut got, 0).unwrap();
    assert!(got == a, "the old descriptor reads a's bytes");
    // c, in a's old slot, is untouched by a's punch
    assert!(std::fs::read(m.sector_path(&rc)).unwrap() == c);
}

#[test]
fn a_moved_sector_keeps_its_cached_name() {
    let m = Mount::start(&["--default-volume", "8"]);
    let data: Vec<Vec<u8>> = (0..6).map(|i| sector(3000 + i)).collect();
    let roots: Vec<Root> = data.iter().map(|d| m.put(d)).collect();
    let vol = m.scratch().join("more.vol");
    m.write("volumes/add", &format!("{} 8\n", vol.display()))
        .unwrap();
    let before: Vec<(u64, u64)> = roots
        .iter()
        .zip(&data)
        .map(|(r, d)| (warm(&m, &format!("sectors/{r}"), d), slot(&m, r)))
        .collect();
    m.write("volumes/1/slots", "2\n").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while m.read("volumes/1/state") != "ready\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "the shrink never ends"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut moved = 0;
    for ((r, d), (ino, slot_before)) in roots.iter().zip(&data).zip(&before) {
        assert_eq!(warm(&m, &format!("sectors/{r}"), d), *ino);
        let volume = xattr(&m.sector_path(r), "user.sectorfs.volume").unwrap();
        if volume != "1" || slot(&m, r) != *slot_before {
            moved += 1;
        }
    }
    assert!(moved >= 4, "only {moved} sectors moved");
}

#[test]
fn a_rewrite_through_a_cached_name_adds_the_reference_it_was_opened_as() {
    let m = Mount::start(&["--default-volume", "8"]);
    let a = sector(4000);
    let ra = sector_root(&a);
    std::fs::create_dir(m.path("temp/9")).unwrap();
    std::fs::write(m.path(&format!("temp/9/{ra}")), &a).unwrap();
    // both names cached, the temp one looked up last by this thread
    warm(&m, &format!("sectors/{ra}"), &a);
    warm(&m, &format!("temp/9/{ra}"), &a);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.sector_path(&ra))
        .unwrap();
    f.write_all(&a).unwrap();
    drop(f);
    assert_eq!(m.refs(&ra), "pin=1 contracts=0 temp=1");
    // and through the temp name: its entry stays as it is
    warm(&m, &format!("sectors/{ra}"), &a);
    std::fs::write(m.path(&format!("temp/9/{ra}")), &a).unwrap();
    assert_eq!(m.refs(&ra), "pin=1 contracts=0 temp=1");
}

/// A job frees a sector too: a forced removal drops a sector it cannot
/// read right, and its cached name is gone by the time the job is done;
/// the sectors it moved keep theirs.
#[test]
fn a_sector_dropped_by_a_forced_removal_is_gone_at_once() {
    let m = Mount::start(&["--default-volume", "8", "--verify-reads"]);
    let (bad, good) = (sector(5000), sector(5001));
    let (rbad, rgood) = (m.put(&bad), m.put(&good));
    let more = m.scratch().join("more.vol");
    m.write("volumes/add", &format!("{} 8\n", more.display()))
        .unwrap();
    warm(&m, &format!("sectors/{rbad}"), &bad);
    let ino_good = warm(&m, &format!("sectors/{rgood}"), &good);
    // one byte of the bad sector flipped behind the store's back
    let path = m.read("volumes/1/path");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.trim())
        .unwrap();
    let at = slot(&m, &rbad) * sectorfs::merkle::SECTOR_SIZE as u64 + 4096;
    let mut byte = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut byte, at).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[byte[0] ^ 0xff], at).unwrap();
    file.sync_all().unwrap();
    drop(file);
    m.write("volumes/1/remove", "force\n").unwrap();
    super::harness::wait_for("the forced removal to end", 60, || {
        !m.path("volumes/1").exists()
    });
    assert_gone(&m, &format!("sectors/{rbad}"), libc::ENOENT);
    assert_eq!(warm(&m, &format!("sectors/{rgood}"), &good), ino_good);
}
