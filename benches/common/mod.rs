//! Helpers shared by the benchmarks: noise sectors, timing, and the one
//! table each benchmark prints (every figure beside its yardstick measured
//! in the same run, the ratio and the target).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

pub const MB: f64 = 1e6;

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

pub mod daemon;

#[path = "../../tests/common/rng.rs"]
mod rng;
pub use rng::Rng;

/// A sector of noise, distinct per seed.
pub fn make_sector(seed: u64) -> Vec<u8> {
    rng::noise_sector(seed)
}

/// Fastest of `passes` runs of `f`: the machine is shared, so the best run
/// is the one least disturbed by others.
pub fn best(passes: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..passes).map(|_| f()).min().unwrap()
}

pub fn mbs(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / MB / d.as_secs_f64()
}

/// Where the stores are made: `BENCH_DIR`, else the system temp dir.
pub fn tempdir() -> tempfile::TempDir {
    match std::env::var_os("BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(PathBuf::from(d)).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

/// Median and 99th percentile of some latencies.
pub fn median_p99(lat: &mut [Duration]) -> (Duration, Duration) {
    assert!(!lat.is_empty(), "no latencies measured");
    lat.sort();
    let p99 = ((lat.len() * 99).div_ceil(100)).clamp(1, lat.len()) - 1;
    (lat[lat.len() / 2], lat[p99])
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub fn us(d: Duration) -> String {
    format!("{:.0} us", d.as_secs_f64() * 1e6)
}

pub struct Row {
    pub what: String,
    pub figure: String,
    pub yardstick: String,
    pub ratio: String,
    pub target: String,
    pub met: bool,
}

/// A throughput beside its yardstick; met when the ratio reaches `target`.
pub fn ratio_row(what: &str, a: f64, yard_name: &str, b: f64, target: f64) -> Row {
    let r = a / b;
    Row {
        what: what.into(),
        figure: format!("{a:.0} MB/s"),
        yardstick: format!("{yard_name} {b:.0} MB/s"),
        ratio: format!("{r:.3}x"),
        target: format!(">= {target}x"),
        met: r >= target,
    }
}

/// A figure with no yardstick; met when `value <= limit`.
pub fn limit_row(what: &str, figure: String, value: f64, limit: f64, target: String) -> Row {
    Row {
        what: what.into(),
        figure,
        yardstick: "-".into(),
        ratio: "-".into(),
        target,
        met: value <= limit,
    }
}

/// A row that could not be measured, with the reason (never a made-up figure).
pub fn na_row(what: &str, why: &str, target: &str) -> Row {
    Row {
        what: what.into(),
        figure: "n/a".into(),
        yardstick: format!("n/a: {why}"),
        ratio: "-".into(),
        target: target.into(),
        met: false,
    }
}

pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn print_table(rows: &[Row]) {
    let head = ["what", "figure", "yardstick", "ratio", "target", "met"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.what.clone(),
                r.figure.clone(),
                r.yardstick.clone(),
                r.ratio.clone(),
                r.target.clone(),
                if r.target == "-" {
                    "-".into()
                } else if r.figure == "n/a" {
                    "n/a".into()
                } else if r.met {
                    "yes".into()
                } else {
                    "NO".into()
                },
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |row: &[String]| {
        let padded: Vec<String> = row
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(&head.map(String::from));
    let rule: Vec<String> = width.iter().map(|&w| "-".repeat(w)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in &cells {
        line(row);
    }
}

/// The yardstick of anything that hashes on every core: MB/s of the sector
/// root of `sample` (in memory) over `n` sectors on one thread per core.
pub fn root_mbs_all_cores(sample: &[Vec<u8>], n: usize) -> f64 {
    let threads = sectorfs::volume::scan::hashing_threads();
    let per = n.div_ceil(threads);
    let t = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(move || {
                for i in 0..per {
                    std::hint::black_box(sectorfs::merkle::sector_root(&sample[i % sample.len()]));
                }
            });
        }
    });
    mbs(per * threads * sectorfs::merkle::SECTOR_SIZE, t.elapsed())
}
