//! Import benchmark (issue 21): the `sectorfs import hostd` binary on a
//! synthetic hostd database, each figure beside its yardstick measured in
//! the same run:
//!
//! - metadata: a schema-49 hostd database of `BENCH_IMPORT_SECTORS` sectors
//!   (default 1,000,000) and `BENCH_IMPORT_CONTRACTS` contracts (default
//!   10,000) of two roots per sector in all (2,000,000 roots): seconds
//!   (target ≤ 60) and the import process's peak RSS;
//! - `--verify` of `BENCH_VERIFY_SECTORS` real sectors (default 256) in a
//!   volume file in the page cache: MB/s, beside the sector root hashed on
//!   every core from memory (target ≥ 0.8×).
//!
//! `BENCH_DIR`: where the files are made (default: the system temp dir).

#[path = "../tests/common/hostd.rs"]
mod hostd;
#[path = "../tests/common/rng.rs"]
mod rng;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sectorfs::merkle::{SECTOR_SIZE, sector_root};

const BIN: &str = env!("CARGO_BIN_EXE_sectorfs");

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `sectorfs import hostd` and returns its wall time, peak RSS (KiB,
/// from wait4's rusage of that one child) and what it wrote to stderr.
// reaped by wait4, which also gives its rusage
#[allow(clippy::zombie_processes)]
fn run_import(db: &Path, data: &Path, flags: &[&str]) -> (Duration, i64, String) {
    let t = Instant::now();
    let mut child = Command::new(BIN)
        .args(["import", "hostd", "--hostd-db"])
        .arg(db)
        .arg("--data-dir")
        .arg(data)
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start sectorfs import");
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, filling in the two out-parameters.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let took = t.elapsed();
    assert_eq!(pid, child.id() as i32, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "import failed ({status})"
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (took, usage.ru_maxrss, err)
}

fn metadata(base: &Path) {
    let sectors = env("BENCH_IMPORT_SECTORS", 1_000_000);
    let contracts = env("BENCH_IMPORT_CONTRACTS", 10_000).max(1);
    let per = 2 * sectors / contracts;
    let dir = tempfile::tempdir_in(base).unwrap();
    let db = dir.path().join("hostd.db");
    let t = Instant::now();
    drop(hostd::synthetic(
        &db,
        &dir.path().join("v.vol"),
        sectors,
        contracts,
        per,
        1,
    ));
    let made = t.elapsed();
    let size = std::fs::metadata(&db).unwrap().len();
    let (took, rss, _) = run_import(&db, &dir.path().join("data"), &[]);
    println!(
        "import hostd, metadata: {sectors} sectors, {contracts} contracts, {} roots \
         (hostd db {:.0} MB, made in {:.1}s)",
        contracts * per,
        size as f64 / 1e6,
        made.as_secs_f64()
    );
    println!(
        "  {:>8.1} s   import (target <= 60 s)   {:.0} sectors/s",
        took.as_secs_f64(),
        sectors as f64 / took.as_secs_f64()
    );
    println!(
        "  {:>8.0} MiB peak RSS of the import process",
        rss as f64 / 1024.0
    );
}

fn verify(base: &Path) {
    let n = env("BENCH_VERIFY_SECTORS", 256);
    let dir = tempfile::tempdir_in(base).unwrap();
    let vol = dir.path().join("v.vol");
    let f = std::fs::File::create(&vol).unwrap();
    f.set_len(n * SECTOR_SIZE as u64).unwrap();
    let h = hostd::Hostd::create(&dir.path().join("hostd.db"), hostd::Shape::V48);
    h.conn.execute_batch("BEGIN").unwrap();
    h.volume(1, &vol, n as i64, false);
    h.v1_contract(1, &hostd::contract_id(1), false);
    let mut rng = rng::Rng::new(3);
    let mut sample = Vec::new();
    for i in 0..n {
        let data = rng.bytes(SECTOR_SIZE);
        f.write_all_at(&data, i * SECTOR_SIZE as u64).unwrap();
        h.sector(i as i64 + 1, &sector_root(&data), Some((1, i as i64)));
        h.v1_root(1, i as i64, i as i64 + 1);
        if sample.len() < 8 {
            sample.push(data);
        }
    }
    h.conn.execute_batch("COMMIT").unwrap();
    drop(h);
    // the yardstick: the sector root on every core, from memory
    let threads = sectorfs::volume::scan::hashing_threads();
    let per_thread = (n as usize).div_ceil(threads);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let sample = &sample;
            s.spawn(move || {
                for i in 0..per_thread {
                    std::hint::black_box(sector_root(&sample[i % sample.len()]));
                }
            });
        }
    });
    let root_mbs = (per_thread * threads * SECTOR_SIZE) as f64 / 1e6 / t.elapsed().as_secs_f64();
    // the rate --verify prints: "verified N sectors (X GB) in Ts, R MB/s: ..."
    let (_, _, err) = run_import(
        &dir.path().join("hostd.db"),
        &dir.path().join("data"),
        &["--verify"],
    );
    let verify_mbs: f64 = err
        .lines()
        .find_map(|l| {
            l.split(", ")
                .nth(1)?
                .strip_suffix(" MB/s: 0 corrupt")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no verify rate in the import's output:\n{err}"));
    println!("import hostd --verify: {n} sectors in the page cache, {threads} cores");
    println!("  {root_mbs:>8.0} MB/s  sector root on all cores, from memory (yardstick)");
    println!(
        "  {verify_mbs:>8.0} MB/s  --verify ({:.2}x the yardstick; target >= 0.8x)",
        verify_mbs / root_mbs
    );
}

fn main() {
    let base = std::env::var_os("BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    // cargo bench passes --bench; anything else (a filter) is ignored
    metadata(&base);
    verify(&base);
}
