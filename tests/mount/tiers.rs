//! Tiers through the mount, against a real S3 server (`s3.rs`): sectors
//! going cold and reading back, promotion, keep-local, the object deleted
//! with the last reference, an unreachable store, kill -9 during the
//! mover's work, orphans reconciled, and mount errors.

use std::os::unix::fs::FileExt;
use std::process::Command;

use super::harness::{
    BIN, Mount, errno, noise_sector, offline_check, read_mapped, read_uncached, wait_for, xattr,
};
use super::s3::{BUCKET, S3Server, SECRET_KEY};
use sectorfs::merkle::Root;

const SECTOR: usize = 4 << 20;

fn cold_url(prefix: &str) -> String {
    format!("s3://{BUCKET}/{prefix}")
}

fn tier(m: &Mount, root: &Root) -> String {
    xattr(&m.sector_path(root), "user.sectorfs.tier").unwrap()
}

fn cold_stat(m: &Mount, key: &str) -> u64 {
    m.read("tiers/cold/stats")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} "))?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /tiers/cold/stats"))
}

fn roots_sorted(roots: &[Root]) -> Vec<String> {
    let mut v: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
    v.sort();
    v
}

fn put_sectors(m: &Mount, seeds: std::ops::Range<u64>) -> Vec<(Root, Vec<u8>)> {
    seeds
        .map(|s| {
            let data = noise_sector(0x7135 + s);
            (m.put(&data), data)
        })
        .collect()
}

fn assert_reads_back(m: &Mount, sectors: &[(Root, Vec<u8>)]) {
    for (root, data) in sectors {
        let got = read_uncached(&m.sector_path(root)).unwrap();
        assert!(got == *data, "sector {root} reads wrong bytes whole");
        assert!(
            read_mapped(&m.sector_path(root)) == *data,
            "sector {root} reads wrong bytes mapped"
        );
        // ranges: the start, across the middle, an odd piece at the end
        let f = std::fs::File::open(m.sector_path(root)).unwrap();
        for (off, len) in [
            (0usize, 4096usize),
            (SECTOR / 2 - 1000, 70_001),
            (SECTOR - 333, 333),
        ] {
            let mut buf = vec![0u8; len];
            f.read_exact_at(&mut buf, off as u64).unwrap();
            assert!(
                buf == data[off..off + len],
                "sector {root}: bytes {off}+{len} wrong"
            );
        }
    }
}

/// Ranges of a cold sector read before anything of it was fetched, each
/// past the kernel's cache (ranges inside one block, and across blocks).
fn assert_ranges_read_first(m: &Mount, (root, data): &(Root, Vec<u8>)) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(m.sector_path(root)).unwrap();
    for (off, len) in [
        (3 * SECTOR / 4 + 5, 1000usize),
        (SECTOR / 4 - 77, SECTOR / 2),
        (SECTOR / 4 + 9, 4096),
    ] {
        // SAFETY: plain syscall on an open fd.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off as u64).unwrap();
        assert!(
            buf == data[off..off + len],
            "sector {root}: bytes {off}+{len} read first wrong"
        );
    }
}

/// Sectors not read for --cold-after go to the store (one object each,
/// keyed by root), their slots are freed, and they read back right whole
/// and by ranges; a temp-only sector stays local. Read --promote-after
/// times, a cold sector has a local copy again.
#[test]
fn sectors_go_cold_read_back_and_come_back_when_read() {
    let s3 = S3Server::start();
    let url = cold_url("host-a");
    // no promotion while the reads are checked: each read from the start
    // reaches the mount (cold sectors are not kept in the kernel's cache)
    let mut m = Mount::start_env_args(
        &["--cold", &url, "--cold-after", "1s", "--promote-after", "0"],
        &s3.env(),
    );
    let sectors = put_sectors(&m, 0..3);
    std::fs::create_dir(m.path("temp/100")).unwrap();
    let temp = noise_sector(0x7e39);
    let temp_root = sectorfs::merkle::sector_root(&temp);
    super::harness::write_file(&m.path(&format!("temp/100/{temp_root}")), &temp).unwrap();
    let roots: Vec<Root> = sectors.iter().map(|(r, _)| *r).collect();
    wait_for("the sectors to go cold", 60, || {
        roots.iter().all(|r| tier(&m, r) == "cold")
    });
    assert_eq!(
        s3.keys("host-a"),
        roots_sorted(&roots),
        "one object per sector, by root"
    );
    assert_eq!(
        tier(&m, &temp_root),
        "volume",
        "temp-only sectors stay local"
    );
    wait_for("the cold sectors' slots to be freed", 30, || m.used(1) == 1);
    assert_eq!(
        xattr(&m.sector_path(&roots[0]), "user.sectorfs.copies").unwrap(),
        "cold"
    );
    // the object is the sector
    assert!(s3.get(&format!("host-a/{}", roots[0])) == sectors[0].1);
    // read from the middle first, nothing of it fetched yet: a block of
    // its own, then a range across blocks (not from the start: those count
    // toward promotion)
    assert_ranges_read_first(&m, &sectors[2]);
    // readers of a sector nothing of which was fetched yet, all at once:
    // one download, each answered as its bytes come
    let (root, data) = &sectors[0];
    let downloads = cold_stat(&m, "downloads");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| assert!(read_uncached(&m.sector_path(root)).unwrap() == *data));
        }
    });
    assert_eq!(cold_stat(&m, "downloads"), downloads + 1, "one download");
    assert_reads_back(&m, &sectors);
    assert_eq!(cold_stat(&m, "objects"), 3);
    assert_eq!(cold_stat(&m, "cold_only"), 3);
    assert!(cold_stat(&m, "downloads") > 0);
    let totals = &m.status_json()["totals"];
    assert_eq!(totals["cold"]["objects"], 3);
    // a cold copy is a copy: no sector counts as lost
    assert_eq!(totals["without_copy"], 0);
    assert!(m.read("metrics").contains("sectorfs_cold_objects 3"));

    // a long --cold-after from now on, so the promoted copy stays
    m.set_args(&["--cold", &url, "--cold-after", "1h", "--promote-after", "2"]);
    m.remount();
    let (root, data) = &sectors[1];
    for _ in 0..2 {
        assert!(read_uncached(&m.sector_path(root)).unwrap() == *data);
    }
    wait_for("the sector read twice to be promoted", 60, || {
        tier(&m, root) == "volume+cold"
    });
    assert_eq!(m.used(1), 2, "the promoted sector has a slot again");
    assert_eq!(tier(&m, &roots[0]), "cold", "a sector not read stays cold");
    assert_reads_back(&m, &sectors);
    m.unmount();
    offline_check(&m, "after promotion");
}

/// `cp -r` of /sectors reads cold sectors in listing order: from the
/// second on, the next two are downloaded ahead, each object once; two
/// threads each reading one, one reading backwards, reads while the store
/// is away, or --cold-read-ahead 0: nothing is fetched ahead.
#[test]
fn a_reader_in_listing_order_gets_the_next_sectors_read_ahead() {
    let mut s3 = S3Server::start();
    let url = cold_url("ahead");
    let ahead = |n: &'static str| {
        [
            "--cold",
            url.as_str(),
            "--cold-after",
            "1h",
            "--promote-after",
            "0",
            "--cold-read-ahead",
            n,
        ]
    };
    let mut m = Mount::start_env_args(
        &["--cold", &url, "--cold-after", "1s", "--promote-after", "0"],
        &s3.env(),
    );
    let sectors = put_sectors(&m, 20..26);
    wait_for("the sectors to go cold and their slots freed", 60, || {
        sectors.iter().all(|(r, _)| tier(&m, r) == "cold") && m.used(1) == 0
    });
    m.set_args(&ahead("2"));
    m.remount();
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(m.path("sectors"))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success(), "cp -r of /sectors");
    for (root, data) in &sectors {
        let got = std::fs::read(copy.path().join("sectors").join(root.to_string())).unwrap();
        assert!(got == *data, "sector {root} copied wrong");
    }
    // the first two read on demand, the other four ahead; no object twice
    // (a download is counted once it ended, which may be after its reader)
    assert_eq!(cold_stat(&m, "read_ahead"), 4);
    wait_for("six downloads", 10, || cold_stat(&m, "downloads") == 6);
    assert!(
        m.read("metrics")
            .contains("sectorfs_cold_read_ahead_total 4")
    );

    // readers side by side: one thread reads the first sector, another
    // the second, so neither goes through the listing; then one reads
    // them all backwards
    m.remount();
    for (root, data) in &sectors[..2] {
        let (path, data) = (m.sector_path(root), data.clone());
        std::thread::spawn(move || assert!(read_uncached(&path).unwrap() == data))
            .join()
            .unwrap();
    }
    for (root, data) in sectors.iter().rev() {
        assert!(read_uncached(&m.sector_path(root)).unwrap() == *data);
    }
    assert_eq!(cold_stat(&m, "read_ahead"), 0);
    wait_for("six downloads", 10, || cold_stat(&m, "downloads") == 6);

    // the store stopped: reads in order fail, nothing is read ahead of a
    // store that does not answer; back, every sector reads right
    m.remount();
    s3.stop();
    for (root, _) in &sectors[..2] {
        let e = read_uncached(&m.sector_path(root)).unwrap_err();
        assert_eq!(errno(&e), libc::EIO, "a cold read with the store away");
    }
    assert_eq!(cold_stat(&m, "read_ahead"), 0);
    s3.restart();
    wait_for("cold reads to work again", 90, || {
        read_uncached(&m.sector_path(&sectors[0].0)).is_ok_and(|d| d == sectors[0].1)
    });
    for (root, data) in &sectors {
        assert!(read_uncached(&m.sector_path(root)).unwrap() == *data);
    }

    m.set_args(&ahead("0"));
    m.remount();
    for (root, data) in &sectors {
        assert!(read_uncached(&m.sector_path(root)).unwrap() == *data);
    }
    assert_eq!(cold_stat(&m, "read_ahead"), 0);
}

/// With --cold-keep-local a sector is in both places; the object of a
/// sector whose last reference goes is deleted, kept or cold alike.
#[test]
fn keep_local_keeps_both_and_the_last_reference_deletes_the_object() {
    let s3 = S3Server::start();
    let url = cold_url("keep");
    let m = Mount::start_env_args(
        &["--cold", &url, "--cold-after", "1s", "--cold-keep-local"],
        &s3.env(),
    );
    let sectors = put_sectors(&m, 10..13);
    let roots: Vec<Root> = sectors.iter().map(|(r, _)| *r).collect();
    wait_for("the sectors to be uploaded", 60, || {
        roots.iter().all(|r| tier(&m, r) == "volume+cold")
    });
    assert_eq!(m.used(1), 3, "kept local");
    assert_eq!(s3.keys("keep"), roots_sorted(&roots));
    assert_reads_back(&m, &sectors);
    // one in a contract too: its last reference is the contract's
    std::fs::write(m.path("contracts/c1"), format!("{}\n", roots[1])).unwrap();
    std::fs::remove_file(m.sector_path(&roots[0])).unwrap();
    std::fs::remove_file(m.sector_path(&roots[1])).unwrap();
    assert!(m.sector_path(&roots[1]).exists(), "the contract holds it");
    std::fs::remove_file(m.path("contracts/c1")).unwrap();
    wait_for("the freed sectors' objects to go", 60, || {
        s3.keys("keep") == roots_sorted(&roots[2..])
    });
    wait_for("the freed slots to be free", 30, || m.used(1) == 1);
    assert!(cold_stat(&m, "deletes") >= 2);
}

/// The store stopped, then frozen (connections accepted, never answered):
/// reads of cold-only sectors fail with EIO and an alert, local sectors
/// read and new ones are stored as before; the store back, cold reads work
/// and the uploads left waiting finish. The secret key appears nowhere.
#[test]
fn an_unreachable_store_fails_only_cold_reads() {
    let mut s3 = S3Server::start();
    let url = cold_url("away");
    let m = Mount::start_env_args(&["--cold", &url, "--cold-after", "2s"], &s3.env());
    let all_cold = put_sectors(&m, 20..24);
    wait_for("the sectors to go cold", 60, || {
        all_cold.iter().all(|(r, _)| tier(&m, r) == "cold")
    });
    // two sectors per round, not read before it: the mount keeps the
    // last blocks read in memory, and downloads the sectors listed after
    // those read in listing order, so round two reads the first two
    for (down, cold) in [("stopped", &all_cold[2..]), ("frozen", &all_cold[..2])] {
        match down {
            "stopped" => s3.stop(),
            _ => s3.freeze(),
        }
        // more cold reads waiting on the store than the mount has FUSE
        // threads: reads of local sectors and writes go on beside them
        let waiting: Vec<_> = (0..6u64)
            .map(|i| {
                let path = m.sector_path(&cold[(i % 2) as usize].0);
                std::thread::spawn(move || {
                    let f = std::fs::File::open(path).unwrap();
                    // past the kernel's page cache: the daemon answers
                    // SAFETY: plain syscall on an open fd.
                    unsafe {
                        libc::posix_fadvise(
                            std::os::fd::AsRawFd::as_raw_fd(&f),
                            0,
                            0,
                            libc::POSIX_FADV_DONTNEED,
                        )
                    };
                    let mut buf = vec![0u8; 4096];
                    f.read_exact_at(&mut buf, i * 65536 + 4096)
                })
            })
            .collect();
        // written while the store is away: local, its upload waits
        let local = put_sectors(&m, if down == "stopped" { 30..31 } else { 31..32 });
        assert_reads_back(&m, &local);
        for w in waiting {
            let e = w.join().unwrap().unwrap_err();
            assert_eq!(
                errno(&e),
                libc::EIO,
                "{down}: a cold-only read fails with EIO"
            );
        }
        let e = read_uncached(&m.sector_path(&cold[0].0)).unwrap_err();
        assert_eq!(
            errno(&e),
            libc::EIO,
            "{down}: a cold-only read fails with EIO"
        );
        assert!(
            m.read("status").contains("does not answer"),
            "{down}: an alert says the store does not answer:\n{}",
            m.read("status")
        );
        assert_eq!(cold_stat(&m, "reachable"), 0);
        match down {
            "stopped" => s3.restart(),
            _ => s3.thaw(),
        }
        wait_for("cold reads to work again", 90, || {
            read_uncached(&m.sector_path(&cold[0].0)).is_ok_and(|d| d == cold[0].1)
        });
        wait_for("the waiting upload to finish", 90, || {
            local.iter().all(|(r, _)| tier(&m, r) == "cold")
        });
        assert_reads_back(&m, cold);
        assert_reads_back(&m, &local);
    }
    wait_for("the alert to clear", 30, || {
        !m.read("status").contains("does not answer")
    });
    for shown in [
        m.log(),
        m.read("status"),
        m.read("status.json"),
        m.read("metrics"),
    ] {
        assert!(!shown.contains(SECRET_KEY), "the secret key was shown");
    }
    assert!(cold_stat(&m, "errors") > 0);
}

/// kill -9 while the mover uploads and frees slots, while promotions and
/// deletes run: after each restart every sector reads right, the offline
/// check is clean (no slot freed before its object was recorded), and in
/// the end the prefix holds exactly the cold sectors' objects: an orphan
/// left by a crash (here: one put by hand) is deleted by the reconcile.
#[test]
fn kill_9_during_uploads_promotions_and_deletes_loses_nothing() {
    let s3 = S3Server::start();
    let url = cold_url("crash");
    let orphan = super::harness::unstored_root(0x0c0f);
    s3.put(&format!("crash/{orphan}"), noise_sector(1));
    let mut m = Mount::start_env_args(
        &["--cold", &url, "--cold-after", "1s", "--promote-after", "1"],
        &s3.env(),
    );
    let mut sectors = put_sectors(&m, 40..52);
    let mut kills = 0;
    for round in 0..6u64 {
        // work for the mover, promotions (read once each) and deletes
        sectors.extend(put_sectors(&m, 100 + round * 2..102 + round * 2));
        for (root, data) in sectors.iter().take(3) {
            if let Ok(got) = read_uncached(&m.sector_path(root)) {
                assert!(got == *data, "round {round}: {root} reads wrong bytes");
            }
        }
        let (gone, _) = sectors.remove(0);
        std::fs::remove_file(m.sector_path(&gone)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300 + round * 150));
        m.kill();
        kills += 1;
        offline_check(&m, &format!("after kill {kills}"));
        m.mount();
        for (root, data) in &sectors {
            let got = read_uncached(&m.sector_path(root))
                .unwrap_or_else(|e| panic!("round {round}: {root} lost: {e}"));
            assert!(got == *data, "round {round}: {root} reads wrong bytes");
        }
    }
    // at rest (a long --cold-after: no promotion goes on), every pinned
    // sector cold and the prefix exactly theirs: orphans reconciled
    m.set_args(&["--cold", &url, "--cold-after", "1s", "--promote-after", "0"]);
    m.remount();
    let roots: Vec<Root> = sectors.iter().map(|(r, _)| *r).collect();
    wait_for("every sector to go cold", 90, || {
        roots.iter().all(|r| tier(&m, r) == "cold")
    });
    wait_for("the prefix to hold exactly the cold sectors", 60, || {
        s3.keys("crash") == roots_sorted(&roots)
    });
    assert_reads_back(&m, &sectors);
    super::common::reliability::record(&format!(
        "tiers: {kills} kill -9 of a mount during cold uploads, promotions and deletes, no \
         sector lost"
    ));
}

/// A mount whose store refuses the credentials, or whose bucket does not
/// exist, fails at once with a sentence naming the problem (and never the
/// secret).
#[test]
fn a_bad_store_fails_the_mount_with_a_clear_error() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let cases = [
        (
            "wrong-key",
            cold_url("p"),
            s3.env_with("nobody", "wrong-secret-value"),
            "refused the credentials",
        ),
        (
            "no-bucket",
            "s3://no-such-bucket-here/p".to_string(),
            s3.env(),
            "does not exist",
        ),
    ];
    for (name, url, env, says) in cases {
        let out = Command::new(BIN)
            .arg("mount")
            .arg(&mnt)
            .arg("--data-dir")
            .arg(dir.path().join(name))
            .args(["--cold", &url])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: the mount must fail");
        assert!(
            stderr.contains(says),
            "{name}: the error must say {says:?}:\n{stderr}"
        );
        assert!(!stderr.contains("wrong-secret-value") && !stderr.contains(SECRET_KEY));
    }
}

fn cache_stat(m: &Mount, key: &str) -> u64 {
    m.read("tiers/cache/stats")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} "))?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /tiers/cache/stats"))
}

/// The cache tier: a sector read from a volume is copied into the cache
/// file and then served from it (its volume slot overwritten under the
/// mount, it still reads right); at capacity the least recently used goes;
/// a corrupt cache entry is detected (as a volume copy is, with
/// --verify-reads), dropped, and the read served from the volume.
#[test]
fn the_cache_serves_reads_evicts_at_capacity_and_bypasses_a_bad_entry() {
    let cache_dir = tempfile::tempdir().unwrap();
    let cache_file = cache_dir.path().join("cache.bin");
    let cache_arg = cache_file.display().to_string();
    let m = Mount::start(&["--cache", &cache_arg, "2", "--verify-reads"]);
    let sectors = put_sectors(&m, 60..63);
    let [(a, a_data), (b, b_data), (c, c_data)] = &sectors[..] else {
        unreachable!()
    };
    assert_eq!(tier(&m, a), "volume");
    assert!(read_uncached(&m.sector_path(a)).unwrap() == *a_data);
    wait_for("the sector read to be cached", 30, || {
        tier(&m, a) == "cache+volume"
    });
    assert_eq!(cache_stat(&m, "entries"), 1);

    // its volume slot overwritten: the read is the cache's
    let slot: u64 = xattr(&m.sector_path(a), "user.sectorfs.slot")
        .unwrap()
        .parse()
        .unwrap();
    let volume = std::fs::OpenOptions::new()
        .write(true)
        .open(m.data.join("volumes/default.vol"))
        .unwrap();
    volume
        .write_all_at(&vec![0xA5; SECTOR], slot * SECTOR as u64)
        .unwrap();
    volume.sync_all().unwrap();
    let hits = cache_stat(&m, "hits");
    assert!(read_uncached(&m.sector_path(a)).unwrap() == *a_data);
    assert!(cache_stat(&m, "hits") > hits, "served from the cache file");
    assert!(m.read("volumes/1/stats").contains("corrupt 0"));

    // two more read: the cache holds two, the least recently used goes
    assert!(read_uncached(&m.sector_path(b)).unwrap() == *b_data);
    wait_for("b to be cached", 30, || tier(&m, b) == "cache+volume");
    assert!(read_uncached(&m.sector_path(c)).unwrap() == *c_data);
    wait_for("c to be cached, a evicted", 30, || {
        tier(&m, c) == "cache+volume" && tier(&m, a) == "volume"
    });
    assert_eq!(cache_stat(&m, "entries"), 2);
    assert!(cache_stat(&m, "evictions") >= 1);

    // the cache file damaged: the bad entries are found, dropped and
    // bypassed
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&cache_file)
        .unwrap();
    for s in 0..2u64 {
        file.write_all_at(&[0x5A; 8192], s * SECTOR as u64 + 4096)
            .unwrap();
    }
    assert!(read_uncached(&m.sector_path(b)).unwrap() == *b_data);
    assert!(read_uncached(&m.sector_path(c)).unwrap() == *c_data);
    assert!(
        cache_stat(&m, "corrupt") >= 2,
        "{}",
        m.read("tiers/cache/stats")
    );
}
