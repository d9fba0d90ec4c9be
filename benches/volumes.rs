//! Self-describing volumes (issue 16), each figure beside its yardstick or
//! target:
//!
//! - redeclare of a volume with `BENCH_REDECLARE_SECTORS` (default 256)
//!   sectors in 4x as many slots (three quarters holes), from the page
//!   cache: MB/s over the allocated slots beside the sector root on all
//!   cores from memory (target >= 0.8x);
//! - the metadata backup of a store of `BENCH_BACKUP_SECTORS` (default
//!   1,000,000) synthetic sectors: its duration, and the longest stall of
//!   a writer (one small transaction after another) while it runs, beside
//!   the longest without a backup (target <= 50 ms);
//! - recover of that store from its backup, metadata part (restore, open,
//!   count the references, load the volume's index; no slot hashed):
//!   seconds (target <= 60).

mod common;

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Rng, Row, env_u64, fmt_count, limit_row, make_sector, print_table, ratio_row};
use sectorfs::engine::{Engine, Options, backup_path};
use sectorfs::merkle::{Root, SECTOR_SIZE};

fn options() -> Options {
    Options {
        default_volume_slots: 0,
        ..Options::default()
    }
}

fn redeclare(rows: &mut Vec<Row>) {
    let n = env_u64("BENCH_REDECLARE_SECTORS", 256);
    let dir = common::tempdir();
    let engine = Engine::open(&dir.path().join("data"), options()).unwrap();
    let vol = dir.path().join("v.vol");
    let id = engine.add_volume(&vol, 4 * n).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&vol).unwrap();
    let mut sample = Vec::new();
    for i in 0..n {
        let data = make_sector(i);
        // every fourth slot: the rest are holes
        f.write_all_at(&data, 4 * i * SECTOR_SIZE as u64).unwrap();
        if sample.len() < 8 {
            sample.push(data);
        }
    }
    f.sync_all().unwrap();
    let t = Instant::now();
    let r = engine.recover_volume(id).unwrap();
    let took = t.elapsed();
    assert_eq!(r.found, n, "every sector found: {}", r.summary());
    let yard = common::root_mbs_all_cores(&sample, n as usize);
    let got = common::mbs(n as usize * SECTOR_SIZE, took);
    rows.push(ratio_row(
        &format!(
            "redeclare, {} allocated of {} slots",
            fmt_count(n),
            fmt_count(4 * n)
        ),
        got,
        "sector root, all cores",
        yard,
        0.8,
    ));
}

/// The latencies of one small transaction after another for `d` (or
/// until `stop`).
fn writer_latencies(
    engine: &Engine,
    stop: &AtomicBool,
    d: Duration,
    height: &mut u64,
) -> Vec<Duration> {
    let until = Instant::now() + d;
    let mut lat = Vec::new();
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        *height += 1;
        let t = Instant::now();
        engine.set_height(*height).unwrap();
        lat.push(t.elapsed());
    }
    lat
}

fn backup_and_recover(rows: &mut Vec<Row>) {
    let n = env_u64("BENCH_BACKUP_SECTORS", 1_000_000);
    let dir = common::tempdir();
    let data = dir.path().join("data");
    let vol = dir.path().join("big.vol");
    {
        let engine = Engine::open(&data, options()).unwrap();
        let id = engine.add_volume(&vol, n).unwrap();
        let mut rng = Rng::new(16);
        let roots: Vec<Root> = rng.roots(n);
        for (k, chunk) in roots.chunks(100_000).enumerate() {
            engine
                .meta()
                .insert_synthetic(id, k as u64 * 100_000, chunk, 0)
                .unwrap();
        }
    }
    let engine = Arc::new(Engine::open(&data, options()).unwrap());
    let mut height = 0;
    let stop = AtomicBool::new(false);
    let mut quiet = writer_latencies(&engine, &stop, Duration::from_secs(3), &mut height);
    let (took, mut during) = std::thread::scope(|s| {
        let e = engine.clone();
        let stop = &stop;
        let writer = s.spawn(move || {
            let mut h = 1_000_000;
            writer_latencies(&e, stop, Duration::from_secs(3600), &mut h)
        });
        let t = Instant::now();
        engine.backup_now().unwrap();
        let took = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        (took, writer.join().unwrap())
    });
    rows.push(limit_row(
        &format!("backup of {} sectors", fmt_count(n)),
        format!("{:.1} s", took.as_secs_f64()),
        0.0,
        f64::MAX,
        "-".into(),
    ));
    let (_, quiet_p99) = common::median_p99(&mut quiet);
    let (_, p99) = common::median_p99(&mut during);
    let (worst, quiet_worst) = (*during.last().unwrap(), *quiet.last().unwrap());
    rows.push(Row {
        yardstick: format!("{} without a backup", common::ms(quiet_worst)),
        ..limit_row(
            "longest writer stall during it",
            common::ms(worst),
            worst.as_secs_f64(),
            0.050,
            "<= 50 ms".into(),
        )
    });
    rows.push(Row {
        yardstick: format!("{} without a backup", common::ms(quiet_p99)),
        ..limit_row(
            "writer p99 during it",
            common::ms(p99),
            p99.as_secs_f64(),
            0.050,
            "<= 50 ms".into(),
        )
    });
    drop(engine);
    // recover, metadata part: the backup restored into a new data dir
    let fresh = dir.path().join("recovered");
    std::fs::create_dir(&fresh).unwrap();
    let t = Instant::now();
    std::fs::copy(backup_path(&vol), fresh.join("sectorfs.db")).unwrap();
    let engine = Engine::open(&fresh, options()).unwrap();
    let refs = engine.meta().reference_totals().unwrap();
    let mut from = 0;
    let mut indexed = 0u64;
    loop {
        let page = engine.meta().sectors_in_volume(1, from, 4096).unwrap();
        let Some(last) = page.last() else { break };
        from = last.slot + 1;
        indexed += page.len() as u64;
    }
    let took = t.elapsed();
    assert_eq!((refs.sectors, indexed), (n, n));
    rows.push(limit_row(
        &format!("recover of {} sectors, metadata part", fmt_count(n)),
        format!("{:.1} s", took.as_secs_f64()),
        took.as_secs_f64(),
        60.0,
        "<= 60 s".into(),
    ));
}

fn main() {
    let mut rows = Vec::new();
    redeclare(&mut rows);
    backup_and_recover(&mut rows);
    print_table(&rows);
}
