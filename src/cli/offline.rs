//! Commands that need no running store: `root`, and `check --data-dir`
//! (the store must not be mounted).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sectorfs::engine::{Engine, Options};
use sectorfs::error::Error;
use sectorfs::merkle::{self, SECTOR_SIZE};
use sectorfs::plural::count;

/// `check --data-dir`: the metadata's consistency, then every sector.
pub fn check(data_dir: &Path, volume: Option<u32>) -> Result<(), String> {
    if !data_dir.join("sectorfs.db").exists() {
        return Err(format!(
            "{} holds no sectorfs store (no sectorfs.db in it); give the --data-dir the \
             daemon was started with",
            data_dir.display()
        ));
    }
    let options = Options {
        default_volume_slots: 0,
        ..Options::default()
    };
    let engine = Engine::open(data_dir, options).map_err(|e| match (&e, mounted_hint()) {
        // the daemon holds the data dir: check through its mount instead
        (Error::Locked(_), Some(hint)) => format!("{e}; {hint}"),
        _ => e.to_string(),
    })?;
    tracing::info!(
        "checking the store in {}: its metadata, then every sector",
        data_dir.display()
    );
    let mut progress = Progress::new();
    let report = engine
        .check_offline_with(volume, |done, total| progress.update(done, total))
        .map_err(|e| e.to_string())?;
    progress.finish();
    for p in &report.problems {
        println!("PROBLEM  {p}");
    }
    for v in &report.volumes {
        let mark = if v.is_clean() { "ok     " } else { "PROBLEM" };
        println!("{mark}  volume {}: {}", v.volume, v.summary());
    }
    if report.is_clean() {
        println!("clean: metadata consistent, every sector verified");
        Ok(())
    } else {
        Err("the store has problems (listed above)".into())
    }
}

/// The online check of a running store, when one is mounted.
fn mounted_hint() -> Option<String> {
    match super::mountpoint::mounted_stores().as_slice() {
        [one] => Some(format!(
            "to check it while it runs: sectorfs check --mount {}",
            one.display()
        )),
        _ => None,
    }
}

/// Progress of a long offline run: a bar with rate and time left on a
/// terminal, else one summary line at the end.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    done: u64,
}

impl Progress {
    pub fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} sectors verified, {per_sec}, {eta} left",
                )
                .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            started: Instant::now(),
            done: 0,
        }
    }

    pub fn update(&mut self, done: u64, total: u64) {
        self.done = done;
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let secs = self.started.elapsed().as_secs_f64();
        let mb = self.done as f64 * SECTOR_SIZE as f64 / 1e6 / secs.max(1e-3);
        eprintln!(
            "verified {} in {secs:.1}s ({mb:.0} MB/s)",
            count(self.done, "sector")
        );
    }
}

pub fn root(files: &[PathBuf]) -> Result<(), String> {
    let mut failed = 0;
    for f in files {
        match read_sector_file(f) {
            Ok(data) => println!("{}  {}", merkle::sector_root(&data), f.display()),
            Err(msg) => {
                eprintln!("sectorfs: {msg}");
                failed += 1;
            }
        }
    }
    match failed {
        0 => Ok(()),
        1 => Err("1 file is not a sector (said above)".into()),
        n => Err(format!("{n} files are not sectors (said above)")),
    }
}

/// Reads a file that must be exactly one sector.
/// Reads no more than one byte past a sector, so an endless input (a
/// device, a pipe) is refused rather than read forever.
pub fn read_sector_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut data = Vec::with_capacity(SECTOR_SIZE + 1);
    file.take(SECTOR_SIZE as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match data.len() {
        SECTOR_SIZE => Ok(data),
        n if n > SECTOR_SIZE => Err(format!(
            "{} is longer than 4 MiB; a sector is exactly {SECTOR_SIZE} bytes",
            path.display()
        )),
        n => Err(format!(
            "{} is {}; a sector is exactly {SECTOR_SIZE} bytes (4 MiB)",
            path.display(),
            count(n as u64, "byte")
        )),
    }
}
