//! Copies benchmark (issue 15): the real `sectorfs` mounted, driven with
//! `cp` and the control files. Prints one table, each figure beside a
//! yardstick measured in the same run:
//!
//! - writing sectors through the mount with `copies 2` beside `copies 1`,
//!   the two copies on two files of one disk, and (as root, where loop
//!   devices exist) on two ext4 file systems of their own devices (loop
//!   devices backed by files on the same disk: distinct `st_dev`, one
//!   physical disk);
//! - the repair that `echo 2 > /copies` starts on a store of sectors with
//!   one copy each: sectors per second and MB/s beside `dd` copying the
//!   same bytes (with `conv=fsync`), and a reader's p99 latency meanwhile;
//! - a verified read that falls back from a corrupt copy to the good one,
//!   beside a verified read of a good copy.
//!
//! Environment: `BENCH_COPIES_WRITE_SECTORS` (default 32 per pass),
//! `BENCH_COPIES_REPAIR_SECTORS` (default 128), `BENCH_MOUNT_PASSES`
//! (default 3, the best kept), `BENCH_DIR` (where the stores are made).

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::*;
use sectorfs::merkle::{Root, SECTOR_SIZE, sector_root};

fn write_ctl(mnt: &Path, rel: &str, line: &str) {
    std::fs::write(mnt.join(rel), format!("{line}\n"))
        .unwrap_or_else(|e| panic!("write {line:?} to /{rel}: {e}"));
}

fn add_volume(mnt: &Path, path: &Path, slots: u64) -> u32 {
    write_ctl(mnt, "volumes/add", &format!("{} {slots}", path.display()));
    std::fs::read_dir(mnt.join("volumes"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .max()
        .unwrap()
}

/// Sectors with each number of readable copies, from `/status.json`.
fn by_copies(mnt: &Path) -> Vec<(u64, u64)> {
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(mnt.join("status.json")).unwrap()).unwrap();
    s["totals"]["by_copies"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.as_u64().unwrap()))
        .collect()
}

/// Reads a sector past the kernel's page cache (the daemon answers);
/// returns the time taken.
fn read_uncached(path: &Path, buf: &mut [u8]) -> Duration {
    let t = Instant::now();
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: a plain syscall on an open descriptor.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    f.read_exact_at(buf, 0).unwrap();
    t.elapsed()
}

/// `cp` of every blob into `/sectors` (one process), then `rm` of them all
/// (untimed); the time of the copy.
fn cp_all(blobs: &[PathBuf], mnt: &Path) -> Duration {
    let t = Instant::now();
    let ok = Command::new("cp")
        .args(blobs)
        .arg(mnt.join("sectors"))
        .status()
        .unwrap()
        .success();
    let d = t.elapsed();
    assert!(ok, "cp into the mount failed");
    for b in blobs {
        std::fs::remove_file(mnt.join("sectors").join(b.file_name().unwrap())).unwrap();
    }
    d
}

/// Two ext4 file systems on loop devices (each its own `st_dev`), or why
/// there are none.
struct LoopPair {
    mnts: Vec<PathBuf>,
}

impl LoopPair {
    fn new(dir: &Path, bytes: u64) -> Result<LoopPair, String> {
        if unsafe { libc::geteuid() } != 0 || !Path::new("/dev/loop-control").exists() {
            return Err("needs root and loop devices".into());
        }
        let mut mnts = Vec::new();
        for i in 0..2 {
            let image = dir.join(format!("dev{i}.img"));
            let mnt = dir.join(format!("dev{i}"));
            std::fs::create_dir_all(&mnt).unwrap();
            std::fs::File::create(&image)
                .unwrap()
                .set_len(bytes)
                .unwrap();
            let run = |cmd: &mut Command| {
                let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "{cmd:?}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                Ok(())
            };
            run(Command::new("mkfs.ext4").arg("-q").arg(&image))?;
            run(Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(&mnt))?;
            mnts.push(mnt);
        }
        Ok(LoopPair { mnts })
    }
}

impl Drop for LoopPair {
    fn drop(&mut self) {
        for m in &self.mnts {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn main() {
    let w = env_u64("BENCH_COPIES_WRITE_SECTORS", 32).max(1) as usize;
    let r = env_u64("BENCH_COPIES_REPAIR_SECTORS", 128).max(16) as usize;
    let passes = env_u64("BENCH_MOUNT_PASSES", 3).max(1) as usize;
    let scratch = tempdir();
    let dir = scratch.path();
    let (data, mnt, blob_dir) = (dir.join("data"), dir.join("mnt"), dir.join("blobs"));
    for d in [&mnt, &blob_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut rows = Vec::new();

    eprintln!("making {} sectors of noise...", w + r);
    let blobs: Vec<PathBuf> = (0..(w + r) as u64)
        .map(|i| {
            let d = make_sector(0x7000 + i);
            let p = blob_dir.join(sector_root(&d).to_string());
            std::fs::write(&p, d).unwrap();
            p
        })
        .collect();
    let (write_set, repair_set) = blobs.split_at(w);
    let slots = (w + r) as u64 + 8;

    let mut daemon = Daemon::sectorfs(&data, &mnt, &dir.join("sectorfs.log"));
    let a = add_volume(&mnt, &dir.join("a.vol"), slots);
    let b = add_volume(&mnt, &dir.join("b.vol"), slots);

    // --- writes: copies 2 beside copies 1, alternating passes -------------
    let bytes = w * SECTOR_SIZE;
    let mut write_pair = |what: &str| {
        let (mut one, mut two) = (Duration::MAX, Duration::MAX);
        for _ in 0..passes {
            write_ctl(&mnt, "copies", "1");
            one = one.min(cp_all(write_set, &mnt));
            write_ctl(&mnt, "copies", "2");
            two = two.min(cp_all(write_set, &mnt));
        }
        write_ctl(&mnt, "copies", "1");
        rows.push(ratio_row(
            &format!("write {w} sectors with cp, copies 2, {what}"),
            mbs(bytes, two),
            "copies 1",
            mbs(bytes, one),
            0.5,
        ));
    };
    write_pair("two files of one disk");
    match LoopPair::new(dir, slots * SECTOR_SIZE as u64 * 2) {
        Ok(pair) => {
            let c = add_volume(&mnt, &pair.mnts[0].join("c.vol"), slots);
            let d = add_volume(&mnt, &pair.mnts[1].join("d.vol"), slots);
            for v in [a, b] {
                write_ctl(&mnt, &format!("volumes/{v}/readonly"), "1");
            }
            write_pair("two devices (loop ext4 on one disk)");
            for v in [a, b] {
                write_ctl(&mnt, &format!("volumes/{v}/readonly"), "0");
            }
            for v in [c, d] {
                write_ctl(&mnt, &format!("volumes/{v}/remove"), "1");
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while [c, d]
                .iter()
                .any(|v| mnt.join(format!("volumes/{v}")).exists())
            {
                assert!(
                    Instant::now() < deadline,
                    "the loop volumes were not removed"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Err(why) => rows.push(na_row("write with copies 2, two devices", &why, ">= 0.5x")),
    }

    // --- repair: copies 1 → 2 on r sectors, beside dd ----------------------
    let ok = Command::new("cp")
        .args(repair_set)
        .arg(mnt.join("sectors"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp into the mount failed");
    let rbytes = r * SECTOR_SIZE;
    // the same bytes copied by dd: the occupied slots of volume a, synced
    let dd_copy = dir.join("dd.copy");
    let dd = best(passes, || {
        let _ = std::fs::remove_file(&dd_copy);
        let t = Instant::now();
        let ok = Command::new("dd")
            .arg(format!("if={}", dir.join("a.vol").display()))
            .arg(format!("of={}", dd_copy.display()))
            .args(["bs=4M", &format!("count={r}"), "conv=fsync", "status=none"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "dd failed");
        t.elapsed()
    });
    let _ = std::fs::remove_file(&dd_copy);
    let roots: Vec<Root> = repair_set
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    let stop = AtomicBool::new(false);
    let (repair, mut lat) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut lat = Vec::new();
            let mut buf = vec![0u8; SECTOR_SIZE];
            let mut rng = Rng::new(7);
            while !stop.load(Ordering::Relaxed) {
                let root = roots[rng.below(roots.len() as u64) as usize];
                lat.push(read_uncached(
                    &mnt.join("sectors").join(root.to_string()),
                    &mut buf,
                ));
            }
            lat
        });
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        write_ctl(&mnt, "copies", "2");
        let deadline = Instant::now() + Duration::from_secs(600);
        while by_copies(&mnt) != [(2, r as u64)] {
            assert!(Instant::now() < deadline, "the repair did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
        let repair = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        (repair, reader.join().unwrap())
    });
    let mut row = ratio_row(
        &format!("repair: {r} sectors to 2 copies while a reader reads"),
        mbs(rbytes, repair),
        "dd of the same bytes, conv=fsync",
        mbs(rbytes, dd),
        0.8,
    );
    row.figure = format!(
        "{} ({:.0} sectors/s)",
        row.figure,
        r as f64 / repair.as_secs_f64()
    );
    rows.push(row);
    // the repair verifies every copy it reads (dd hashes nothing): the
    // sector root on every core bounds it
    let hash = root_speed(&blobs[..blobs.len().min(32)], passes);
    rows.push(Row {
        what: "repair beside the sector root on all cores (its bound: it verifies what it copies)"
            .into(),
        figure: format!("{:.0} MB/s", mbs(rbytes, repair)),
        yardstick: format!("sector root, all cores {hash:.0} MB/s"),
        ratio: format!("{:.3}x", mbs(rbytes, repair) / hash),
        target: "-".into(),
        met: true,
    });
    let (median, p99) = median_p99(&mut lat);
    rows.push(limit_row(
        &format!(
            "reader during the repair: p99 of {} reads (median {})",
            lat.len(),
            ms(median)
        ),
        ms(p99),
        p99.as_secs_f64() * 1e3,
        20.0,
        "<= 20 ms".into(),
    ));

    // --- a verified read falling back from a corrupt copy ------------------
    daemon.stop();
    let mut daemon =
        Daemon::sectorfs_with(&data, &mnt, &dir.join("verify.log"), &["--verify-reads"]);
    let k = 16.min(r / 2);
    let mut buf = vec![0u8; SECTOR_SIZE];
    let vol_a = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("a.vol"))
        .unwrap();
    let mut plain = Vec::new();
    let mut fallback = Vec::new();
    for (i, root) in roots.iter().take(2 * k).enumerate() {
        let path = mnt.join("sectors").join(root.to_string());
        let copies = xattr_copies(&path);
        let first = copies[0];
        if i % 2 == 0 {
            assert_eq!(first.0, a, "the first copy is the one in volume a");
            vol_a
                .write_all_at(&[0x5a], first.1 * SECTOR_SIZE as u64 + 4096)
                .unwrap();
            fallback.push(read_uncached(&path, &mut buf));
        } else {
            plain.push(read_uncached(&path, &mut buf));
        }
        assert_eq!(
            sector_root(&buf),
            *root,
            "the read returned the right bytes"
        );
    }
    let (fb, _) = median_p99(&mut fallback);
    let (pl, _) = median_p99(&mut plain);
    rows.push(Row {
        what: format!("verified read falling back from a corrupt copy (median of {k})"),
        figure: ms(fb),
        yardstick: format!("verified read of a good copy {}", ms(pl)),
        ratio: format!("{:.2}x", fb.as_secs_f64() / pl.as_secs_f64()),
        target: "-".into(),
        met: true,
    });
    daemon.stop();
    print_table(&rows);
}

/// MB/s of the sector root over `blobs` (read into memory first), hashed
/// on every core.
fn root_speed(blobs: &[PathBuf], passes: usize) -> f64 {
    let data: Vec<Vec<u8>> = blobs.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let d = best(passes, || {
        let t = Instant::now();
        std::thread::scope(|s| {
            for c in 0..cores {
                let data = &data;
                s.spawn(move || {
                    for d in data.iter().skip(c).step_by(cores) {
                        std::hint::black_box(sector_root(d));
                    }
                });
            }
        });
        t.elapsed()
    });
    mbs(data.len() * SECTOR_SIZE, d)
}

/// `user.sectorfs.copies` of a sector: (volume, slot) per copy.
fn xattr_copies(path: &Path) -> Vec<(u32, u64)> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let name = c"user.sectorfs.copies";
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the length given.
    let n = unsafe {
        libc::getxattr(
            c.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert!(n >= 0, "getxattr: {}", std::io::Error::last_os_error());
    String::from_utf8_lossy(&buf[..n as usize])
        .split_whitespace()
        .map(|c| {
            let (v, s) = c.split_once(':').unwrap();
            (v.parse().unwrap(), s.parse().unwrap())
        })
        .collect()
}
