//! `--verify`: every imported sector of an available volume read and hashed
//! against its root on all cores, with a progress bar (rate, time left) on
//! a terminal and one summary line otherwise. A mismatch is reported as a
//! corrupt sector of the contracts that hold it; the sector stays, as it
//! would after a check, and its reads fail until it is dealt with.

use std::collections::HashMap;
use std::fs::File;
use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use super::report::{Corrupt, Report, entries};
use crate::error::{IoContext, Result};
use crate::meta::{ImportDb, ImportedSector};
use crate::volume::SECTOR_BYTES;
use crate::volume::scan::{SlotJob, hash_slots, hashing_threads};

/// Sectors read from the database at a time, and verified ones recorded at
/// a time.
const PAGE: usize = 1024;

pub(super) fn verify(db: &ImportDb, report: &mut Report) -> Result<()> {
    let mut files = Vec::new();
    let mut index: HashMap<u32, usize> = HashMap::new();
    let mut total = 0;
    for v in report.volumes.iter().filter(|v| v.state == "ready") {
        let f = File::open(&v.path).io_ctx(|| format!("cannot open {}", v.path.display()))?;
        index.insert(v.id, files.len());
        files.push(f);
    }
    for (id, n) in db.volume_sector_counts()? {
        if index.contains_key(&id) {
            total += n;
        }
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(total * SECTOR_BYTES);
        bar.set_style(
            ProgressStyle::with_template(
                "verifying {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec}, {eta} left",
            )
            .expect("a valid progress template"),
        );
        bar
    });
    let started = Instant::now();
    let now = crate::engine::now_secs();
    let mut verified = 0u64;
    let mut good = Vec::with_capacity(PAGE);
    let mut corrupt = Vec::new();

    // pages of sectors in volume and slot order, those of available volumes
    let mut after = (0u32, -1i64);
    let mut page = std::collections::VecDeque::new();
    let work = std::iter::from_fn(|| {
        loop {
            if let Some(s) = page.pop_front() {
                return Some(Ok(s));
            }
            match db.stored_after(after, PAGE) {
                Err(e) => return Some(Err(e)),
                Ok(next) => {
                    let last = next.last()?;
                    after = (last.volume_id, last.slot as i64);
                    page.extend(next);
                }
            }
        }
    })
    .filter_map(|s: Result<ImportedSector>| match s {
        Err(e) => Some(Err(e)),
        Ok(s) => index.get(&s.volume_id).map(|&file| {
            Ok(SlotJob {
                file,
                slot: s.slot,
                tag: s,
            })
        }),
    });
    hash_slots(&files, hashing_threads(), work, |s, root| {
        verified += 1;
        if let Some(bar) = &bar {
            bar.inc(SECTOR_BYTES);
        }
        match root {
            Ok(root) if root == s.root => {
                good.push(s.id);
                if good.len() >= PAGE {
                    db.mark_checked(&good, now)?;
                    good.clear();
                }
            }
            Ok(_) => corrupt.push((s, "its bytes do not hash to its root".to_string())),
            Err(e) => corrupt.push((s, format!("its slot cannot be read: {e}"))),
        }
        Ok(())
    })?;
    db.mark_checked(&good, now)?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    for (s, reason) in corrupt {
        let holders = db.holders(s.id)?;
        tracing::error!(
            "sector {} in volume {} slot {} is corrupt: {reason}",
            s.root,
            s.volume_id,
            s.slot
        );
        report.corrupt.push(Corrupt {
            root: s.root,
            sector_id: s.id,
            volume: s.volume_id,
            slot: s.slot,
            reason,
            contracts: entries(holders.contracts),
            temp: holders.temp,
        });
    }
    report.corrupt.sort_by_key(|c| (c.volume, c.slot));
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    eprintln!(
        "verified {verified} sectors ({:.1} GB) in {secs:.1}s, {:.0} MB/s: {} corrupt",
        (verified * SECTOR_BYTES) as f64 / 1e9,
        (verified * SECTOR_BYTES) as f64 / 1e6 / secs,
        report.corrupt.len()
    );
    report.verified = Some(verified);
    Ok(())
}
