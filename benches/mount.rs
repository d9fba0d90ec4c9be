//! Mount benchmark (issue 3): the real `sectorfs` binary mounted in a
//! temporary directory, driven as a user would. Prints one table, each
//! figure beside a yardstick measured in the same run:
//!
//! - reading sectors through the mount, cold (just remounted, so the
//!   kernel holds none of it; the volume file itself in the page cache) and
//!   warm (second read), beside a plain read of the volume file and beside
//!   libfuse's `passthrough_ll` example (`cache=never`) serving the same
//!   bytes; and, as the ceiling FUSE itself sets for a warm read on the
//!   running kernel, the same bytes read twice through `passthrough_ll`
//!   with `cache=always`;
//! - writing sectors with `cp` through the mount, one writer (one `cp`
//!   process copying every sector, each source file named by its root) and
//!   then two at once (each copying half), beside the engine's own durable
//!   write (in-process, another data dir, the same sectors);
//! - `ls /sectors | wc -l` and `stat` of random sectors at 100,000 stored
//!   sectors, beside the same through `passthrough_ll` over a plain
//!   directory of 100,000 files with the same names.
//!
//! Environment:
//! - `BENCH_MOUNT_SECTORS`: sectors read (default 128);
//! - `BENCH_MOUNT_WRITE_SECTORS`: sectors written per pass (default 64);
//! - `BENCH_LIST_SECTORS`: sectors for `ls` and `stat` (default 100,000);
//! - `BENCH_MOUNT_PASSES`: passes of each measurement, the best kept
//!   (default 5);
//! - `BENCH_PASSTHROUGH_LL`: path of a built `passthrough_ll`
//!   (scripts/bench.sh builds it); `BENCH_PASSTHROUGH_LL_MISSING`: why
//!   there is none (printed in its rows);
//! - `BENCH_DIR`: where the stores are made (default: the system temp dir).

mod common;

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::*;
use sectorfs::engine::{Engine, Options, Placement, Reference};
use sectorfs::merkle::{Root, SECTOR_SIZE, sector_root};

fn options() -> Options {
    Options {
        placement: Placement::FillFirst,
        default_volume_slots: 0,
        ..Options::default()
    }
}

/// Reads each file whole with 4 MiB reads; returns the time taken.
///
/// Each file is read for exactly its 4 MiB, as a host serving a sector
/// would, not on to EOF: with attributes never cached, a read past the end
/// costs one more round trip to the daemon per file (`GETATTR`, so the
/// kernel learns the size anew). `main` checks, untimed, that files end
/// there.
fn read_files(paths: &[PathBuf], buf: &mut [u8]) -> Duration {
    let t = Instant::now();
    for p in paths {
        let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        f.read_exact(buf).unwrap();
    }
    t.elapsed()
}

/// Reads `n` sectors from the start of one file with 4 MiB reads.
fn read_range(path: &Path, n: usize, buf: &mut [u8]) -> Duration {
    let t = Instant::now();
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for i in 0..n {
        f.read_exact_at(buf, (i * SECTOR_SIZE) as u64).unwrap();
    }
    t.elapsed()
}

/// One writer: a single `cp -t MNT/sectors <blobs>`, each blob named by
/// its root, as a host copying a batch of sectors would run it.
fn cp_all(blobs: &[(Root, PathBuf)], mnt: &Path) {
    let status = Command::new("cp")
        .arg("-t")
        .arg(mnt.join("sectors"))
        .args(blobs.iter().map(|(_, blob)| blob))
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp of {} sectors into the mount failed",
        blobs.len()
    );
}

fn rm_all(blobs: &[(Root, PathBuf)], mnt: &Path) {
    for (root, _) in blobs {
        std::fs::remove_file(mnt.join("sectors").join(root.to_string())).unwrap();
    }
}

fn passthrough_bin() -> Result<PathBuf, String> {
    match std::env::var_os("BENCH_PASSTHROUGH_LL") {
        Some(p) if Path::new(&p).is_file() => Ok(PathBuf::from(p)),
        Some(p) => Err(format!("{} is not a file", Path::new(&p).display())),
        None => Err(
            std::env::var("BENCH_PASSTHROUGH_LL_MISSING").unwrap_or_else(|_| {
                "BENCH_PASSTHROUGH_LL not set (scripts/bench.sh builds it)".into()
            }),
        ),
    }
}

fn main() {
    // `BENCH_MOUNT_PART=cache`: only the comparison with passthrough_ll
    // cache=always (scripts/bench.sh cache)
    if std::env::var("BENCH_MOUNT_PART").as_deref() == Ok("cache") {
        let passes = env_u64("BENCH_MOUNT_PASSES", 5).max(1) as usize;
        let scratch = tempdir();
        let rows = caching(scratch.path(), &passthrough_bin(), passes);
        print_table(&rows);
        return;
    }
    let n = env_u64("BENCH_MOUNT_SECTORS", 128).max(1) as usize;
    let w = (env_u64("BENCH_MOUNT_WRITE_SECTORS", 64).max(2) as usize) & !1;
    let list_n = env_u64("BENCH_LIST_SECTORS", 100_000).max(1);
    let passthrough = passthrough_bin();
    let passes = env_u64("BENCH_MOUNT_PASSES", 5).max(1) as usize;
    let mut rows = Vec::new();

    let scratch = tempdir();
    let dir = scratch.path();
    let data = dir.join("data");
    let mnt = dir.join("mnt");
    let mnt_pt = dir.join("mnt-passthrough");
    let blob_dir = dir.join("blobs");
    for d in [&mnt, &mnt_pt, &blob_dir] {
        std::fs::create_dir_all(d).unwrap();
    }

    // --- the store: n sectors to read, room for w more to write -----------
    eprintln!("making {} sectors of noise...", n + w);
    let sectors: Vec<(Root, Vec<u8>)> = (0..(n + w) as u64)
        .map(|i| {
            let d = make_sector(0x3000 + i);
            (sector_root(&d), d)
        })
        .collect();
    let (read_set, write_set) = sectors.split_at(n);
    let vol_path = data.join("volumes").join("bench.vol");
    {
        let engine = Engine::open(&data, options()).unwrap();
        std::fs::create_dir_all(vol_path.parent().unwrap()).unwrap();
        engine.add_volume(&vol_path, (n + w) as u64).unwrap();
        for (r, d) in read_set {
            engine.write_sector(r, d, Reference::Pin).unwrap();
        }
        // fill-first: the sectors to read are slots 0..n, in order
        for (i, (r, _)) in read_set.iter().enumerate() {
            assert_eq!(engine.lookup(r).unwrap().unwrap().slot, i as u64);
        }
    }
    let blobs: Vec<(Root, PathBuf)> = write_set
        .iter()
        .map(|(r, d)| {
            let p = blob_dir.join(r.to_string());
            std::fs::write(&p, d).unwrap();
            (*r, p)
        })
        .collect();
    let write_bytes = w * SECTOR_SIZE;
    let log = dir.join("sectorfs.log");

    // --- writes: engine in-process vs cp through the mount, 1 and 2 writers
    eprintln!("writing {w} sectors, {passes} passes...");
    let edir = dir.join("engine-data");
    let engine = Engine::open(&edir, options()).unwrap();
    engine
        .add_volume(&edir.join("bench.vol"), w as u64)
        .unwrap();
    let mut mounted = Daemon::sectorfs(&data, &mnt, &log);
    let (mut engine_best, mut one_best, mut two_best) =
        (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..passes {
        // interleaved, so all three see the same machine
        for (r, _) in write_set {
            if engine.lookup(r).unwrap().is_some() {
                engine.unpin(r).unwrap();
            }
        }
        let t = Instant::now();
        for (r, d) in write_set {
            engine.write_sector(r, d, Reference::Pin).unwrap();
        }
        engine_best = engine_best.min(t.elapsed());

        let t = Instant::now();
        cp_all(&blobs, &mnt);
        one_best = one_best.min(t.elapsed());
        rm_all(&blobs, &mnt);

        let (a, b) = blobs.split_at(w / 2);
        let t = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| cp_all(a, &mnt));
            s.spawn(|| cp_all(b, &mnt));
        });
        two_best = two_best.min(t.elapsed());
        rm_all(&blobs, &mnt);
    }
    drop(engine);
    let engine_mbs = mbs(write_bytes, engine_best);
    let one_mbs = mbs(write_bytes, one_best);
    rows.push(ratio_row(
        "write via mount, cp, 1 writer",
        one_mbs,
        "engine write",
        engine_mbs,
        0.7,
    ));
    rows.push(ratio_row(
        "write via mount, cp, 2 writers",
        mbs(write_bytes, two_best),
        "1 writer",
        one_mbs,
        1.5,
    ));

    // --- reads: plain file, passthrough_ll, sectorfs cold and warm --------
    eprintln!("reading {n} sectors, {passes} passes...");
    let read_bytes = n * SECTOR_SIZE;
    let mut buf = vec![0u8; SECTOR_SIZE];
    let sector_files: Vec<PathBuf> = read_set
        .iter()
        .map(|(r, _)| mnt.join("sectors").join(r.to_string()))
        .collect();
    let probe = mnt_pt.join("bench.vol");
    let vol_dir = vol_path.parent().unwrap();
    let pt = passthrough
        .as_ref()
        .map_err(|e| e.clone())
        .and_then(|bin| Daemon::passthrough(bin, "never", vol_dir, &mnt_pt, &probe));
    read_range(&vol_path, n, &mut buf); // the volume file in the page cache
    let (mut plain, mut cold, mut warm, mut through) =
        (Duration::MAX, Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..passes {
        // a remount drops the kernel's cache of every sector file
        mounted.stop();
        mounted = Daemon::sectorfs(&data, &mnt, &log);
        plain = plain.min(read_range(&vol_path, n, &mut buf));
        cold = cold.min(read_files(&sector_files, &mut buf));
        warm = warm.min(read_files(&sector_files, &mut buf));
        if pt.is_ok() {
            through = through.min(read_range(&probe, n, &mut buf));
        }
    }
    // what was read is what was stored, and each file ends there
    for (p, (r, d)) in sector_files.iter().zip(read_set).take(4) {
        assert!(
            std::fs::read(p).unwrap() == *d,
            "sector {r} read back wrong"
        );
    }
    let cold_mbs = mbs(read_bytes, cold);
    match &pt {
        Ok(_) => rows.push(ratio_row(
            "read via mount, cold",
            cold_mbs,
            "passthrough_ll cache=never",
            mbs(read_bytes, through),
            0.9,
        )),
        Err(why) => {
            let mut r = na_row("read via mount, cold", why, ">= 0.9x");
            r.figure = format!("{cold_mbs:.0} MB/s");
            rows.push(r);
        }
    }
    rows.push(ratio_row(
        "read via mount, warm (2nd read)",
        mbs(read_bytes, warm),
        "plain read of the volume",
        mbs(read_bytes, plain),
        0.8,
    ));
    drop(pt);
    mounted.stop();
    drop(mounted);
    // FUSE's own ceiling for a warm read on this kernel: the same bytes
    // through passthrough_ll's page cache, one file opened once
    if let Ok(bin) = &passthrough
        && let Ok(pt) = Daemon::passthrough(bin, "always", vol_dir, &mnt_pt, &probe)
    {
        read_range(&probe, n, &mut buf);
        let mut cached = Duration::MAX;
        for _ in 0..passes {
            cached = cached.min(read_range(&probe, n, &mut buf));
        }
        drop(pt);
        let mut row = ratio_row(
            "passthrough_ll cache=always, 2nd read",
            mbs(read_bytes, cached),
            "plain read of the volume",
            mbs(read_bytes, plain),
            0.0,
        );
        // a yardstick for the row above, not a target of ours
        row.target = "-".into();
        rows.push(row);
    }

    // --- ls and stat at 100,000 sectors ---------------------------------
    rows.extend(listing(dir, list_n, &passthrough_bin(), passes));
    // --- beside passthrough_ll cache=always (issue 20) ---------------------
    rows.extend(caching(dir, &passthrough_bin(), passes));

    print_table(&rows);
    println!(
        "({n} sectors read, 4 MiB reads, best of {passes}; {w} sectors written per pass, \
         best of {passes}; speed ratios for ls and stat are yardstick time / our time; \
         issue 3 sets no target for them)"
    );
}

/// `ls /sectors | wc -l` and `stat` of random sectors with `count` stored
/// (recorded without data), beside a plain directory of `count` files with
/// the same names served by `passthrough_ll` (or read directly without it).
fn listing(
    dir: &Path,
    count: u64,
    passthrough: &Result<PathBuf, String>,
    passes: usize,
) -> Vec<Row> {
    let n = fmt_count(count);
    eprintln!("recording {n} synthetic sectors...");
    let data = dir.join("list-data");
    let mnt = dir.join("list-mnt");
    let plain = dir.join("list-plain");
    let mnt_pt = dir.join("list-mnt-passthrough");
    for d in [&mnt, &plain, &mnt_pt] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut rng = Rng::new(0x1157_5EC7);
    let roots = rng.roots(count);
    {
        let engine = Engine::open(&data, options()).unwrap();
        std::fs::create_dir_all(data.join("volumes")).unwrap();
        let vol = engine
            .add_volume(&data.join("volumes").join("big.vol"), count)
            .unwrap();
        engine
            .meta()
            .insert_synthetic(vol, 0, &roots, 1_700_000_000)
            .unwrap();
        engine.meta().checkpoint().unwrap();
    }
    eprintln!("making a plain directory of {n} files...");
    for r in &roots {
        std::fs::File::create(plain.join(r.to_string())).unwrap();
    }
    let mounted = Daemon::sectorfs(&data, &mnt, &dir.join("list.log"));
    let probe = mnt_pt.join(roots[0].to_string());
    let pt = passthrough
        .clone()
        .and_then(|bin| Daemon::passthrough(&bin, "never", &plain, &mnt_pt, &probe));
    let (yard_dir, yard_name) = match &pt {
        Ok(_) => (mnt_pt.clone(), "passthrough_ll, plain dir"),
        Err(_) => (plain.clone(), "plain dir, no FUSE"),
    };

    eprintln!("listing and stat...");
    let ls = |d: &Path| {
        let t = Instant::now();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("ls '{}' | wc -l", d.display()))
            .output()
            .expect("run ls");
        let took = t.elapsed();
        let listed: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert_eq!(listed, count, "ls of {} listed {listed}", d.display());
        took
    };
    let (mut ls_ours, mut ls_yard) = (Duration::MAX, Duration::MAX);
    for _ in 0..passes {
        ls_ours = ls_ours.min(ls(&mnt.join("sectors")));
        ls_yard = ls_yard.min(ls(&yard_dir));
    }
    let stats = 2000;
    let warmup = 200;
    let picks: Vec<&Root> = (0..stats + warmup).map(|_| rng.pick(&roots)).collect();
    let stat_all = |d: &Path| {
        let mut lat = Vec::with_capacity(stats);
        for (i, r) in picks.iter().enumerate() {
            let p = d.join(r.to_string());
            let t = Instant::now();
            let m = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let took = t.elapsed();
            assert!(m.is_file());
            if i >= warmup {
                lat.push(took);
            }
        }
        median_p99(&mut lat)
    };
    let (ours_med, ours_p99) = stat_all(&mnt.join("sectors"));
    let (yard_med, yard_p99) = stat_all(&yard_dir);
    let m = std::fs::metadata(mnt.join("sectors").join(roots[0].to_string())).unwrap();
    assert_eq!(m.len(), SECTOR_SIZE as u64);
    let pt_missing = pt.as_ref().err().cloned();
    drop(pt);
    drop(mounted);

    let time_row =
        |what: String, ours: Duration, yard: Duration, fmt: fn(Duration) -> String| Row {
            what,
            figure: fmt(ours),
            yardstick: format!("{yard_name} {}", fmt(yard)),
            ratio: format!("{:.3}x", yard.as_secs_f64() / ours.as_secs_f64()),
            target: "-".into(),
            met: true,
        };
    let secs = |d: Duration| format!("{:.3} s", d.as_secs_f64());
    let mut rows = vec![
        time_row(format!("ls /sectors | wc -l @ {n}"), ls_ours, ls_yard, secs),
        time_row(format!("stat median @ {n}"), ours_med, yard_med, us),
        time_row(format!("stat p99 @ {n}"), ours_p99, yard_p99, us),
    ];
    if let Some(why) = pt_missing {
        for r in &mut rows {
            r.yardstick = format!("{} (passthrough_ll n/a: {why})", r.yardstick);
        }
    }
    rows
}

/// Issue 20: what the kernel's caches give, beside `passthrough_ll`
/// `cache=always` serving the same sector files from a plain directory:
/// the second read of 64 sectors (each file opened and read whole), `stat`
/// of 10,000 sectors already looked up (median and p99), and `ls -l` of
/// 100,000 sectors (the first after mounting, and again), each taken
/// alternately from the two, best of the passes.
fn caching(dir: &Path, passthrough: &Result<PathBuf, String>, passes: usize) -> Vec<Row> {
    let reads = env_u64("BENCH_CACHE_READS", 64).max(1) as usize;
    let stats = env_u64("BENCH_CACHE_STATS", 10_000).max(1);
    // passthrough_ll holds a descriptor per inode the kernel knows: no
    // more files than its descriptor limit allows (20,000 in some
    // containers, where even root cannot raise it)
    let fd_limit = {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit fills the struct it is given
        match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } {
            0 => lim.rlim_max,
            _ => 1 << 20,
        }
    };
    let wanted = env_u64("BENCH_CACHE_LS", 100_000);
    let listed = wanted.min(fd_limit / 10 * 9 - reads as u64).max(stats);
    if listed < wanted {
        eprintln!(
            "cache: ls -l of {} sectors, not {}: passthrough_ll may hold only {} descriptors",
            fmt_count(listed),
            fmt_count(wanted),
            fmt_count(fd_limit)
        );
    }
    let bin = match passthrough {
        Ok(bin) => bin.clone(),
        Err(why) => {
            return vec![
                na_row(
                    "2nd read beside passthrough_ll cache=always",
                    why,
                    ">= 0.9x",
                ),
                na_row("stat beside passthrough_ll cache=always", why, ">= 0.9x"),
                na_row("ls -l beside passthrough_ll cache=always", why, ">= 1.0x"),
            ];
        }
    };
    let base = dir.join("cache");
    let (data, mnt, plain, mnt_pt) = (
        base.join("data"),
        base.join("mnt"),
        base.join("plain"),
        base.join("mnt-passthrough"),
    );
    for d in [&mnt, &plain, &mnt_pt] {
        std::fs::create_dir_all(d).unwrap();
    }
    // the sectors read: real data, in the store and as plain files; then
    // synthetic ones (no data) up to `listed`, and empty plain files
    eprintln!(
        "cache: {reads} sectors to read, {} to stat and list...",
        fmt_count(listed)
    );
    let sectors: Vec<(Root, Vec<u8>)> = (0..reads as u64)
        .map(|i| {
            let d = make_sector(0x5000 + i);
            (sector_root(&d), d)
        })
        .collect();
    let mut rng = Rng::new(0xCAC4E);
    let synthetic = rng.roots(listed);
    {
        let engine = Engine::open(&data, options()).unwrap();
        std::fs::create_dir_all(data.join("volumes")).unwrap();
        let vol = engine
            .add_volume(&data.join("volumes").join("c.vol"), listed + reads as u64)
            .unwrap();
        for (r, d) in &sectors {
            engine.write_sector(r, d, Reference::Pin).unwrap();
            std::fs::write(plain.join(r.to_string()), d).unwrap();
        }
        engine
            .meta()
            .insert_synthetic(vol, reads as u64, &synthetic, 1_700_000_000)
            .unwrap();
        engine.meta().checkpoint().unwrap();
    }
    for r in &synthetic {
        std::fs::File::create(plain.join(r.to_string())).unwrap();
    }
    let names: Vec<String> = sectors.iter().map(|(r, _)| r.to_string()).collect();
    let stat_names: Vec<String> = synthetic[..stats as usize]
        .iter()
        .map(|r| r.to_string())
        .collect();
    let mut buf = vec![0u8; SECTOR_SIZE];

    let sectors_dir = mnt.join("sectors");
    let mounted = Daemon::sectorfs(&data, &mnt, &base.join("sectorfs.log"));
    let probe = mnt_pt.join(&names[0]);
    let pt = match Daemon::passthrough(&bin, "always", &plain, &mnt_pt, &probe) {
        Ok(pt) => pt,
        Err(why) => {
            return vec![na_row(
                "beside passthrough_ll cache=always",
                &why,
                ">= 0.9x",
            )];
        }
    };
    // both mounted, every measurement alternating between them, so both
    // see the same machine (it is shared: a figure taken alone drifts)
    let dirs = [sectors_dir.as_path(), mnt_pt.as_path()];
    let ls_l = |d: &Path| {
        let t = Instant::now();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("ls -l '{}' | wc -l", d.display()))
            .output()
            .expect("run ls -l");
        let took = t.elapsed();
        let lines: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        // "total N" and one line per file
        assert_eq!(lines, listed + reads as u64 + 1, "ls -l of {}", d.display());
        took
    };
    eprintln!("cache: ls -l, 2nd reads and stat, alternating...");
    let ls_first = dirs.map(ls_l);
    let mut ls_again = [Duration::MAX; 2];
    let mut second = [Duration::MAX; 2];
    let mut stat = [(Duration::MAX, Duration::MAX); 2];
    let files = dirs.map(|d| names.iter().map(|n| d.join(n)).collect::<Vec<_>>());
    for (i, f) in files.iter().enumerate() {
        read_files(f, &mut buf); // the first read
        for n in &stat_names {
            std::fs::metadata(dirs[i].join(n)).unwrap(); // looked up once
        }
    }
    for _ in 0..passes {
        for i in 0..2 {
            ls_again[i] = ls_again[i].min(ls_l(dirs[i]));
            second[i] = second[i].min(read_files(&files[i], &mut buf));
            let mut lat = Vec::with_capacity(stat_names.len());
            for n in &stat_names {
                let p = dirs[i].join(n);
                let t = Instant::now();
                let m = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                lat.push(t.elapsed());
                assert!(m.is_file());
            }
            let (med, p99) = median_p99(&mut lat);
            stat[i] = (stat[i].0.min(med), stat[i].1.min(p99));
        }
    }
    for ((_, d), n) in sectors.iter().zip(&names).take(4) {
        assert!(
            std::fs::read(sectors_dir.join(n)).unwrap() == *d,
            "{n} reads back wrong"
        );
    }
    drop(pt);
    drop(mounted);
    let [
        (ls_ours, ls_pt),
        (ls_ours_again, ls_pt_again),
        (read_ours, read_pt),
    ] = [ls_first, ls_again, second].map(|[a, b]| (a, b));
    let [(stat_ours_med, stat_ours_p99), (stat_pt_med, stat_pt_p99)] = stat;

    let bytes = reads * SECTOR_SIZE;
    let yard = "passthrough_ll cache=always";
    // time ratios: yardstick time / our time (higher is better)
    let time_row = |what: String, ours: Duration, theirs: Duration, target: f64| {
        let fmt = |d: Duration| match d.as_secs_f64() {
            s if s >= 0.1 => format!("{s:.3} s"),
            s => format!("{:.2} us", s * 1e6),
        };
        let ratio = theirs.as_secs_f64() / ours.as_secs_f64();
        Row {
            what,
            figure: fmt(ours),
            yardstick: format!("{yard} {}", fmt(theirs)),
            ratio: format!("{ratio:.2}x"),
            target: format!(">= {target:.1}x"),
            met: ratio >= target,
        }
    };
    let count = fmt_count(listed + reads as u64);
    let scount = fmt_count(stats);
    vec![
        ratio_row(
            &format!("2nd read of {reads} sectors, one open each"),
            mbs(bytes, read_ours),
            yard,
            mbs(bytes, read_pt),
            0.9,
        ),
        time_row(
            format!("stat median, {scount} warm"),
            stat_ours_med,
            stat_pt_med,
            0.9,
        ),
        time_row(
            format!("stat p99, {scount} warm"),
            stat_ours_p99,
            stat_pt_p99,
            0.9,
        ),
        time_row(
            format!("ls -l @ {count}, first after mount"),
            ls_ours,
            ls_pt,
            1.0,
        ),
        time_row(
            format!("ls -l @ {count}, again"),
            ls_ours_again,
            ls_pt_again,
            1.0,
        ),
    ]
}
