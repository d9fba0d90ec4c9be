//! Engine benchmark: prints one table, each figure beside a yardstick
//! measured in the same run (absolute figures drift between machines and
//! runs; the ratios are what the targets are about). The durable write is
//! also shown beside the disk alone (each sector written and synced, nothing
//! hashed or recorded), which bounds it on this machine.
//!
//! Environment:
//! - `BENCH_SECTORS`: sectors of metadata for the database figures
//!   (default 1,000,000);
//! - `BENCH_IO_SECTORS`: sectors written and read for throughput (default 64);
//! - `BENCH_DIR`: where the stores are made (default: the system temp dir).

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use sectorfs::engine::{Engine, Options, Placement, Reference};
use sectorfs::merkle::{Root, SECTOR_SIZE, sector_root};

mod common;

use common::{
    Rng, best, env_u64, fmt_count, limit_row, make_sector, mbs, print_table, ratio_row, tempdir,
};

fn options() -> Options {
    Options {
        placement: Placement::FillFirst,
        default_volume_slots: 0,
        ..Options::default()
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood
    let io_sectors = env_u64("BENCH_IO_SECTORS", 64).max(1) as usize;
    let meta_sectors = env_u64("BENCH_SECTORS", 1_000_000).max(1);
    let mut rows = Vec::new();

    eprintln!("making {io_sectors} sectors of noise...");
    let data: Vec<Vec<u8>> = (0..io_sectors as u64).map(make_sector).collect();
    let bytes = io_sectors * SECTOR_SIZE;

    // 1. sector root vs plain BLAKE2b over the same bytes, one core
    eprintln!("hashing...");
    let mut roots: Vec<Root> = Vec::new();
    let root_time = best(3, || {
        let t = Instant::now();
        roots = data.iter().map(|d| sector_root(d)).collect();
        t.elapsed()
    });
    let plain_time = best(3, || {
        let t = Instant::now();
        for d in &data {
            std::hint::black_box(blake2b_simd::blake2b(d));
        }
        t.elapsed()
    });
    let root_mbs = mbs(bytes, root_time);
    rows.push(ratio_row(
        "sector root, 1 core",
        root_mbs,
        "blake2b single-stream",
        mbs(bytes, plain_time),
        0.35,
    ));

    // 2. durable sequential writes (hash + write + fdatasync + commit)
    eprintln!("writing...");
    let dir = tempdir();
    let engine = Engine::open(dir.path(), options()).unwrap();
    let vol = engine
        .add_volume(&dir.path().join("bench.vol"), io_sectors as u64)
        .unwrap();
    // The disk alone: each sector written and synced into a sparse file,
    // nothing hashed or recorded (what the engine's writes cost the disk).
    let disk_path = dir.path().join("disk-only.vol");
    let disk = std::fs::File::create(&disk_path).unwrap();
    let disk_pass = || {
        disk.set_len(0).unwrap();
        disk.set_len(bytes as u64).unwrap();
        let t = Instant::now();
        for (i, d) in data.iter().enumerate() {
            disk.write_all_at(d, (i * SECTOR_SIZE) as u64).unwrap();
            disk.sync_data().unwrap();
        }
        t.elapsed()
    };
    // best of five, interleaved with the disk alone: the figure is the
    // disk's (each sector is synced), and the virtual disk's sync latency
    // swings widely from pass to pass
    let (mut write_time, mut disk_time) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        for r in &roots {
            if engine.lookup(r).unwrap().is_some() {
                engine.unpin(r).unwrap();
            }
        }
        let t = Instant::now();
        for (r, d) in roots.iter().zip(&data) {
            engine.write_sector(r, d, Reference::Pin).unwrap();
        }
        write_time = write_time.min(t.elapsed());
        disk_time = disk_time.min(disk_pass());
    }
    drop(disk);
    rows.push(ratio_row(
        "engine write, durable",
        mbs(bytes, write_time),
        "sector root",
        root_mbs,
        0.7,
    ));
    let mut disk_row = ratio_row(
        "engine write, durable",
        mbs(bytes, write_time),
        "disk alone: pwrite + fdatasync",
        mbs(bytes, disk_time),
        0.0,
    );
    disk_row.target = "-".into();
    rows.push(disk_row);

    // 3. whole-sector reads, page cache warm, beside pread of the same slots
    eprintln!("reading...");
    let file = std::fs::File::open(engine.volume_info(vol).unwrap().path).unwrap();
    let slots: Vec<u64> = roots
        .iter()
        .map(|r| engine.lookup(r).unwrap().unwrap().slot)
        .collect();
    let mut buf = vec![0u8; SECTOR_SIZE];
    let engine_read = |buf: &mut [u8]| {
        let t = Instant::now();
        for r in &roots {
            engine.read_sector(r, 0, buf).unwrap();
        }
        t.elapsed()
    };
    let plain_read = |buf: &mut [u8]| {
        let t = Instant::now();
        for &s in &slots {
            file.read_exact_at(buf, s * SECTOR_SIZE as u64).unwrap();
        }
        t.elapsed()
    };
    plain_read(&mut buf); // warm the page cache
    let (mut engine_best, mut plain_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        // interleaved, so both see the same machine
        engine_best = engine_best.min(engine_read(&mut buf));
        plain_best = plain_best.min(plain_read(&mut buf));
    }
    rows.push(ratio_row(
        "engine read, whole sectors",
        mbs(bytes, engine_best),
        "pread",
        mbs(bytes, plain_best),
        0.9,
    ));
    drop(engine);
    drop(dir);

    // 4. metadata at scale: synthetic roots in one sparse volume
    eprintln!("recording {meta_sectors} synthetic sectors...");
    let dir = tempdir();
    let engine = Engine::open(dir.path(), options()).unwrap();
    let vol = engine
        .add_volume(&dir.path().join("big.vol"), meta_sectors)
        .unwrap();
    let mut rng = Rng::new(0x5EC7_0A5F);
    let synthetic = rng.roots(meta_sectors);
    let t = Instant::now();
    engine
        .meta()
        .insert_synthetic(vol, 0, &synthetic, 1_700_000_000)
        .unwrap();
    let insert_time = t.elapsed();
    engine.meta().checkpoint().unwrap();
    let per_sector = engine.meta().size_bytes().unwrap() as f64 / meta_sectors as f64;
    drop(engine);

    let t = Instant::now();
    let engine = Engine::open(dir.path(), options()).unwrap();
    let open_time = t.elapsed();
    assert_eq!(engine.volume_info(vol).unwrap().used, meta_sectors);

    let lookups = 100_000;
    let mut lat = Vec::with_capacity(lookups);
    for i in 0..lookups + 1000 {
        let r = &synthetic[(rng.next() % meta_sectors) as usize];
        let t = Instant::now();
        let found = engine.lookup(r).unwrap();
        let d = t.elapsed();
        assert!(found.is_some());
        if i >= 1000 {
            lat.push(d); // the first thousand warm the caches
        }
    }
    lat.sort();
    let median = lat[lat.len() / 2];
    let p99 = lat[lat.len() * 99 / 100];
    let n = fmt_count(meta_sectors);
    rows.push(limit_row(
        &format!("database bytes/sector @ {n}"),
        format!("{per_sector:.0} B"),
        per_sector,
        200.0,
        "<= 200 B".into(),
    ));
    rows.push(limit_row(
        &format!("open @ {n}"),
        format!("{:.3} s", open_time.as_secs_f64()),
        open_time.as_secs_f64(),
        2.0,
        "<= 2 s".into(),
    ));
    rows.push(limit_row(
        &format!("root lookup median @ {n}"),
        format!("{:.1} us", median.as_secs_f64() * 1e6),
        0.0,
        0.0,
        "-".into(),
    ));
    rows.push(limit_row(
        &format!("root lookup p99 @ {n}"),
        format!("{:.1} us", p99.as_secs_f64() * 1e6),
        p99.as_secs_f64() * 1e6,
        100.0,
        "<= 100 us".into(),
    ));
    drop(engine);

    print_table(&rows);
    println!(
        "({io_sectors} sectors of I/O; {n} synthetic sectors recorded in {:.1} s in one \
         transaction; lookups: {lookups} random roots)",
        insert_time.as_secs_f64()
    );
}
