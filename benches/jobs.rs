//! Volume job and integrity benchmark (issues 4 and 5), in-process. Prints
//! one table, each figure beside a yardstick measured in the same run:
//!
//! - shrinking a volume so that every stored sector must move (a volume of
//!   2N slots whose N sectors sit in slots N..2N, shrunk to N, timed until
//!   the job is done and the file cut), beside a plain `dd` copy of the same
//!   bytes to another file with `fdatasync`, run just before and just after
//!   it; best of a few rounds, each on a new store. Meanwhile a reader
//!   thread reads random sectors of the volume, and its latency is set
//!   beside the same reader's with no job running;
//! - checking that volume (`Engine::check_offline`, every sector read back
//!   and verified), beside the sector root of the same bytes on one core.
//!
//! Environment:
//! - `BENCH_SHRINK_SECTORS`: N, the sectors moved and checked (default 256);
//! - `BENCH_SHRINK_ROUNDS`: rounds of setup, dd, shrink, dd (default 3);
//! - `BENCH_READER_PAUSE_MS`: the reader's pause between reads (default 10);
//! - `BENCH_DIR`: where the stores are made (default: the system temp dir).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// `dd` of `n` sectors from slot `skip` of `vol` into a new file, synced.
fn dd(vol: &Path, copy: &Path, n: usize, skip: usize) -> Duration {
    let _ = std::fs::remove_file(copy);
    let t = Instant::now();
    let status = Command::new("dd")
        .arg(format!("if={}", vol.display()))
        .arg(format!("of={}", copy.display()))
        .args(["bs=4M", &format!("count={n}"), &format!("skip={skip}")])
        .args(["conv=fdatasync", "status=none"])
        .status()
        .expect("run dd");
    let took = t.elapsed();
    assert!(status.success(), "dd failed");
    assert_eq!(
        std::fs::metadata(copy).unwrap().len(),
        (n * SECTOR_SIZE) as u64
    );
    std::fs::remove_file(copy).unwrap();
    took
}

/// Reads random sectors whole until `stop`, pausing `pause` between reads;
/// returns each read's latency. Every read is compared with the data.
fn reader(
    engine: &Engine,
    sectors: &[(Root, Vec<u8>)],
    pause: Duration,
    stop: &AtomicBool,
    failed: &AtomicU64,
) -> Vec<Duration> {
    let mut rng = Rng::new(0xDEAD_BEEF);
    let mut buf = vec![0u8; SECTOR_SIZE];
    let mut lat = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let (root, data) = rng.pick(sectors);
        let t = Instant::now();
        let r = engine.read_sector(root, 0, &mut buf);
        lat.push(t.elapsed());
        if r.is_err() || buf != *data {
            eprintln!("read of {root} failed or was wrong: {r:?}");
            failed.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(pause);
    }
    lat
}

/// A store whose one volume has 2n slots: n fillers (recorded, no data)
/// were in 0..n, the n sectors in n..2n; the fillers are unpinned again, so
/// a shrink to n must move all n sectors down.
fn setup(dir: &Path, sectors: &[(Root, Vec<u8>)]) -> (Arc<Engine>, u32, PathBuf) {
    let n = sectors.len();
    let data = dir.join("data");
    let vol_path = dir.join("shrink.vol");
    let vol = {
        let engine = Engine::open(&data, options()).unwrap();
        let vol = engine.add_volume(&vol_path, 2 * n as u64).unwrap();
        let fillers: Vec<Root> = (0..n as u64).map(filler_root).collect();
        engine
            .meta()
            .insert_synthetic(vol, 0, &fillers, 1_700_000_000)
            .unwrap();
        vol
    };
    // reopened: the free-slot map is built at open
    let engine = Arc::new(Engine::open(&data, options()).unwrap());
    for (r, d) in sectors {
        // hashed once in main: the data is known to match
        engine.write_verified(r, d, Reference::Pin).unwrap();
    }
    for (i, (r, _)) in sectors.iter().enumerate() {
        assert_eq!(engine.lookup(r).unwrap().unwrap().slot, (n + i) as u64);
    }
    for i in 0..n as u64 {
        engine.unpin(&filler_root(i)).unwrap();
    }
    assert_eq!(engine.volume_info(vol).unwrap().used, n as u64);
    (engine, vol, vol_path)
}

fn main() {
    let n = env_u64("BENCH_SHRINK_SECTORS", 256).max(1) as usize;
    let rounds = env_u64("BENCH_SHRINK_ROUNDS", 3).max(1) as usize;
    let pause = Duration::from_millis(env_u64("BENCH_READER_PAUSE_MS", 10));
    let bytes = n * SECTOR_SIZE;
    let mut rows = Vec::new();

    eprintln!("making {n} sectors of noise...");
    let sectors: Vec<(Root, Vec<u8>)> = (0..n as u64)
        .map(|i| {
            let d = make_sector(0x6000 + i);
            (sector_root(&d), d)
        })
        .collect();

    let failed = AtomicU64::new(0);
    let (mut shrink_time, mut dd_time) = (Duration::MAX, Duration::MAX);
    let (mut idle, mut during) = (Vec::new(), Vec::new());
    let mut each = Vec::new();
    let mut last = None;
    for round in 0..rounds {
        eprintln!("round {}/{rounds}: writing {n} sectors...", round + 1);
        let scratch = tempdir();
        let (engine, vol, vol_path) = setup(scratch.path(), &sectors);
        if round == 0 {
            // the reader alone, for its latency with no job running
            eprintln!("reading with no job running...");
            let stop = AtomicBool::new(false);
            idle = std::thread::scope(|s| {
                let h = s.spawn(|| reader(&engine, &sectors, pause, &stop, &failed));
                std::thread::sleep(Duration::from_secs(2));
                stop.store(true, Ordering::Relaxed);
                h.join().unwrap()
            });
        }
        eprintln!("dd, shrink with a reader, dd...");
        let copy = scratch.path().join("dd-copy");
        let before = dd(&vol_path, &copy, n, n);
        let stop = AtomicBool::new(false);
        let (took, lat) = std::thread::scope(|s| {
            let h = s.spawn(|| reader(&engine, &sectors, pause, &stop, &failed));
            std::thread::sleep(Duration::from_millis(200));
            let t = Instant::now();
            engine.resize_volume(vol, n as u64).unwrap();
            let deadline = t + Duration::from_secs(600);
            while engine.job_running(vol) {
                assert!(Instant::now() < deadline, "the shrink did not finish");
                std::thread::sleep(Duration::from_millis(1));
            }
            let took = t.elapsed();
            std::thread::sleep(Duration::from_millis(100));
            stop.store(true, Ordering::Relaxed);
            (took, h.join().unwrap())
        });
        let info = engine.volume_info(vol).unwrap();
        assert_eq!(
            (info.slots, info.used),
            (n as u64, n as u64),
            "the shrink did not complete: {:?}",
            engine.alerts().get(&format!("job-{vol}"))
        );
        assert_eq!(
            std::fs::metadata(&vol_path).unwrap().len(),
            bytes as u64,
            "the volume file was not cut to its new size"
        );
        // the moved sectors are slots 0..n now
        let after = dd(&vol_path, &copy, n, 0);
        each.push((before, took, after));
        shrink_time = shrink_time.min(took);
        dd_time = dd_time.min(before).min(after);
        during.extend(lat);
        last = Some((engine, vol, scratch));
    }
    let shrink_mbs = mbs(bytes, shrink_time);
    let mut row = ratio_row(
        &format!("shrink, {n} sectors moved"),
        shrink_mbs,
        "dd copy + fdatasync",
        mbs(bytes, dd_time),
        0.8,
    );
    row.figure = format!(
        "{:.0} sectors/s, {shrink_mbs:.0} MB/s",
        n as f64 / shrink_time.as_secs_f64()
    );
    rows.push(row);
    let reads = during.len();
    let (idle_med, idle_p99) = median_p99(&mut idle);
    let (med, p99) = median_p99(&mut during);
    let failed = failed.load(Ordering::Relaxed);
    rows.push(Row {
        what: "read during shrink, median".into(),
        figure: ms(med),
        yardstick: format!("no job running {}", ms(idle_med)),
        ratio: format!("{:.3}x", idle_med.as_secs_f64() / med.as_secs_f64()),
        target: "-".into(),
        met: true,
    });
    rows.push(Row {
        what: "read during shrink, p99".into(),
        figure: ms(p99),
        yardstick: format!("no job running {}", ms(idle_p99)),
        ratio: format!("{:.3}x", idle_p99.as_secs_f64() / p99.as_secs_f64()),
        target: "<= 20 ms".into(),
        met: p99 <= Duration::from_millis(20),
    });
    rows.push(limit_row(
        "failed or wrong reads",
        failed.to_string(),
        failed as f64,
        0.0,
        "0".into(),
    ));

    // check: every sector of the shrunk volume read back and verified
    eprintln!("checking...");
    let (engine, vol, _scratch) = last.expect("one round at least");
    let (mut check_best, mut root_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        // interleaved, so both see the same machine
        let t = Instant::now();
        let report = engine.check_offline(Some(vol)).unwrap();
        check_best = check_best.min(t.elapsed());
        assert!(report.is_clean(), "check found problems: {report:?}");
        assert_eq!(report.volumes[0].checked, n as u64);
        let t = Instant::now();
        for (r, d) in &sectors {
            assert_eq!(sector_root(d), *r);
        }
        root_best = root_best.min(t.elapsed());
    }
    rows.push(ratio_row(
        &format!("check, {n} sectors"),
        mbs(bytes, check_best),
        "sector root, 1 core",
        mbs(bytes, root_best),
        0.8,
    ));
    drop(engine);

    print_table(&rows);
    let rounds_list: Vec<String> = each
        .iter()
        .map(|(b, s, a)| {
            let [b, s, a] = [b, s, a].map(|d| mbs(bytes, *d));
            format!("{b:.0}/{s:.0}/{a:.0}")
        })
        .collect();
    println!(
        "(shrink: {n} sectors from slots {n}..{} into 0..{n} of the same volume, until the \
         file is cut; best of {rounds} rounds, each between two dd copies of the same bytes, \
         the yardstick the best of all dd copies (MB/s, dd/shrink/dd: {}); reader: whole \
         sectors, {} ms pause, {reads} reads during the shrinks; check: page cache warm, best \
         of 3)",
        2 * n,
        rounds_list.join(", "),
        pause.as_millis()
    );
}

/// A root no real sector has: for filler rows with no data.
fn filler_root(i: u64) -> Root {
    let mut r = [0xF1u8; 32];
    r[..8].copy_from_slice(&i.to_le_bytes());
    Root(r)
}
