//! Soak: writers, readers, a reference changer (contracts, temp entries,
//! height) and a status reader work through the mount for a fixed time
//! while the daemon's memory (VmRSS) is sampled every second. There must be
//! no error at all, every sector must verify at the end, the store must be
//! exactly what the clients were told, and memory must stay flat.
//!
//! `SECTORFS_SOAK_SECS` sets the duration (default 20 s).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::harness::{Mount, Rng, offline_check, sector, write_file, write_with};
use sectorfs::merkle::{Root, SECTOR_SIZE, sector_root};

/// Sectors pinned at the start and never dropped: what readers read.
const BASE: u64 = 8;
/// Sectors each writer keeps pinned at most.
const WRITER_KEEPS: usize = 10;
const WRITERS: u64 = 2;
const READERS: u64 = 2;
/// Memory the daemon may gain from the first third of the run to the last,
/// for allocator noise (see `memory_stays_flat`).
const RSS_SLACK_KIB: u64 = 16 << 10;

fn soak_secs() -> u64 {
    std::env::var("SECTORFS_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// The daemon's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Everything the clients did, and what went wrong.
#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    unpins: AtomicU64,
    reads: AtomicU64,
    bytes_read: AtomicU64,
    revisions: AtomicU64,
    temp_ops: AtomicU64,
    heights: AtomicU64,
    listings: AtomicU64,
    status_reads: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Counters {
    fn error(&self, what: String) {
        self.errors.lock().push(what);
    }
    fn total(&self) -> u64 {
        [
            &self.writes,
            &self.unpins,
            &self.reads,
            &self.revisions,
            &self.temp_ops,
            &self.heights,
            &self.listings,
            &self.status_reads,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// Reads `len` bytes at `off` past the kernel's page cache, so the daemon
/// serves every read.
fn read_at_uncached(path: &std::path::Path, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    // SAFETY: plain syscall on an open fd.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, off)?;
    Ok(buf)
}

fn writer(m: &Mount, id: u64, stop: &AtomicBool, c: &Counters) -> BTreeMap<Root, u64> {
    let mut rng = Rng::new(0x50a4 + id);
    let mut pinned: BTreeMap<Root, u64> = BTreeMap::new();
    let mut seed = 10_000_000 * (id + 1);
    while !stop.load(Ordering::Relaxed) {
        if pinned.len() < WRITER_KEEPS && (pinned.len() < 3 || rng.below(100) < 60) {
            seed += 1;
            let data = sector(seed);
            let root = sector_root(&data);
            match write_file(&m.sector_path(&root), &data) {
                Ok(()) => {
                    pinned.insert(root, seed);
                    c.writes.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => c.error(format!("writer {id}: write {root}: {e}")),
            }
        } else {
            let i = rng.below(pinned.len() as u64) as usize;
            let root = *pinned.keys().nth(i).unwrap();
            match std::fs::remove_file(m.sector_path(&root)) {
                Ok(()) => {
                    pinned.remove(&root);
                    c.unpins.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => c.error(format!("writer {id}: unpin {root}: {e}")),
            }
        }
    }
    pinned
}

fn reader(m: &Mount, id: u64, base: &[(Root, Vec<u8>)], stop: &AtomicBool, c: &Counters) {
    let mut rng = Rng::new(0x4ead + id);
    while !stop.load(Ordering::Relaxed) {
        let (root, data) = &base[rng.below(base.len() as u64) as usize];
        let path = m.sector_path(root);
        // a whole sector now and then, else a random range
        let (off, len) = if rng.below(8) == 0 {
            (0, SECTOR_SIZE)
        } else {
            let len = 1 + rng.below(256 << 10) as usize;
            (rng.below((SECTOR_SIZE - len) as u64), len)
        };
        match read_at_uncached(&path, off, len) {
            Ok(got) if got[..] == data[off as usize..off as usize + len] => {
                c.reads.fetch_add(1, Ordering::Relaxed);
                c.bytes_read.fetch_add(len as u64, Ordering::Relaxed);
            }
            Ok(_) => c.error(format!("reader {id}: {root} at {off}+{len}: wrong bytes")),
            Err(e) => c.error(format!("reader {id}: {root} at {off}+{len}: {e}")),
        }
        if rng.below(50) == 0 {
            // the whole listing, paged from the database
            match std::fs::read_dir(m.path("sectors")).map(|d| d.count()) {
                Ok(n) if n >= base.len() => {
                    c.listings.fetch_add(1, Ordering::Relaxed);
                }
                Ok(n) => c.error(format!("reader {id}: only {n} sectors listed")),
                Err(e) => c.error(format!("reader {id}: ls /sectors: {e}")),
            }
        }
    }
}

/// Control and status files, as a monitoring agent would poll them.
fn status_reader(m: &Mount, stop: &AtomicBool, c: &Counters) {
    while !stop.load(Ordering::Relaxed) {
        for rel in [
            "status",
            "status.json",
            "metrics",
            "volumes/1/stats",
            "height",
        ] {
            let mut text = String::new();
            let read =
                std::fs::File::open(m.path(rel)).and_then(|mut f| f.read_to_string(&mut text));
            match read {
                Ok(_)
                    if rel != "status.json"
                        || serde_json::from_str::<serde_json::Value>(&text).is_ok() =>
                {
                    c.status_reads.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => c.error(format!("/status.json is not JSON: {text}")),
                Err(e) => c.error(format!("read /{rel}: {e}")),
            }
        }
        if let Err(e) = nix::sys::statvfs::statvfs(&m.mnt) {
            c.error(format!("statfs: {e}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The one client that changes references: contracts (replace, append,
/// rename, delete), temp entries (new sectors and links) and the height.
/// Alone in doing so, it knows exactly what the store must hold.
#[derive(Default)]
struct RefModel {
    contracts: BTreeMap<String, Vec<Root>>,
    temp: BTreeSet<(u64, Root)>,
    height: u64,
    seeds: BTreeMap<Root, u64>,
}

impl RefModel {
    /// Sectors this client keeps stored (its own, not the base ones).
    fn own_stored(&self) -> BTreeSet<Root> {
        self.contracts
            .values()
            .flatten()
            .chain(self.temp.iter().map(|(_, r)| r))
            .filter(|r| self.seeds.contains_key(r))
            .copied()
            .collect()
    }
}

fn ref_changer(m: &Mount, base: &[Root], stop: &AtomicBool, c: &Counters) -> RefModel {
    let mut rng = Rng::new(0xc4a9);
    let mut model = RefModel::default();
    let mut seed = 90_000_000;
    let list = |roots: &[Root]| -> String { roots.iter().map(|r| format!("{r}\n")).collect() };
    while !stop.load(Ordering::Relaxed) {
        let mut candidates: Vec<Root> = base.to_vec();
        candidates.extend(model.own_stored());
        let pick = |rng: &mut Rng, max: u64| -> Vec<Root> {
            (0..rng.below(max + 1))
                .map(|_| candidates[rng.below(candidates.len() as u64) as usize])
                .collect()
        };
        let name = format!("soak-{}", rng.below(5));
        let contract = m.path(&format!("contracts/{name}"));
        let h = model.height + 1 + rng.below(5);
        let p = rng.below(100);
        let (what, result) = if p < 25 {
            let roots = pick(&mut rng, 6);
            let r = write_file(&contract, list(&roots).as_bytes());
            if r.is_ok() {
                model.contracts.insert(name.clone(), roots);
                c.revisions.fetch_add(1, Ordering::Relaxed);
            }
            (format!("replace {name}"), r)
        } else if p < 40 {
            let roots = pick(&mut rng, 3);
            let r = write_with(
                std::fs::OpenOptions::new().append(true).create(true),
                &contract,
                list(&roots).as_bytes(),
            );
            if r.is_ok() {
                model
                    .contracts
                    .entry(name.clone())
                    .or_default()
                    .extend(roots);
                c.revisions.fetch_add(1, Ordering::Relaxed);
            }
            (format!("append to {name}"), r)
        } else if p < 48 && model.contracts.contains_key(&name) {
            let to = format!("soak-{}", rng.below(5));
            let r = std::fs::rename(&contract, m.path(&format!("contracts/{to}")));
            if r.is_ok() {
                let l = model.contracts.remove(&name).unwrap();
                model.contracts.insert(to, l);
                c.revisions.fetch_add(1, Ordering::Relaxed);
            }
            (format!("rename {name}"), r)
        } else if p < 55 && model.contracts.contains_key(&name) {
            let r = std::fs::remove_file(&contract);
            if r.is_ok() {
                model.contracts.remove(&name);
                c.revisions.fetch_add(1, Ordering::Relaxed);
            }
            (format!("rm {name}"), r)
        } else if p < 75 && model.own_stored().len() < 16 {
            // a new sector held by a temp entry only
            seed += 1;
            let data = sector(seed);
            let root = sector_root(&data);
            let dir = m.path(&format!("temp/{h}"));
            let r = match std::fs::create_dir(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => write_file(&dir.join(root.to_string()), &data),
            };
            if r.is_ok() {
                model.seeds.insert(root, seed);
                model.temp.insert((h, root));
                c.temp_ops.fetch_add(1, Ordering::Relaxed);
            }
            (format!("temp write at {h}"), r)
        } else if p < 85 {
            let root = base[rng.below(base.len() as u64) as usize];
            if model.temp.contains(&(h, root)) {
                continue;
            }
            let dir = m.path(&format!("temp/{h}"));
            let r = match std::fs::create_dir(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => std::fs::hard_link(m.sector_path(&root), dir.join(root.to_string())),
            };
            if r.is_ok() {
                model.temp.insert((h, root));
                c.temp_ops.fetch_add(1, Ordering::Relaxed);
            }
            (format!("temp link at {h}"), r)
        } else {
            let to = model.height + 1 + rng.below(3);
            let r = m.write("height", &format!("{to}\n"));
            if r.is_ok() {
                model.height = to;
                model.temp.retain(|(e, _)| *e > to);
                c.heights.fetch_add(1, Ordering::Relaxed);
            }
            (format!("height {to}"), r)
        };
        if let Err(e) = result {
            c.error(format!("ref changer: {what}: {e}"));
        }
    }
    model
}

/// RSS in the last third of the run may not exceed the first third's
/// maximum by more than `RSS_SLACK_KIB`. The first third holds the warm-up
/// (FUSE worker buffers, SQLite page caches of the pooled connections,
/// malloc arenas of each thread, 4 MiB upload buffers kept by the
/// allocator); after that the daemon holds nothing per operation, so the
/// last third stays at the same level give or take allocator noise. A leak
/// of even one upload buffer per write (4 MiB × tens of writes a second)
/// or of a few KiB per operation over a longer run fails it.
fn memory_stays_flat(samples: &[u64], ops: u64) {
    let third = samples.len() / 3;
    assert!(third >= 1, "too few RSS samples: {samples:?}");
    let first_max = *samples[..third].iter().max().unwrap();
    let last_max = *samples[samples.len() - third..].iter().max().unwrap();
    let mean = |s: &[u64]| s.iter().sum::<u64>() as f64 / s.len() as f64;
    let growth = mean(&samples[samples.len() - third..]) - mean(&samples[..third]);
    eprintln!(
        "soak: RSS samples (KiB): first {} min {} max {} last {}; first-third max {first_max}, \
         last-third max {last_max}; mean growth first to last third {:+.0} KiB ({:+.1} bytes \
         per operation)",
        samples[0],
        samples.iter().min().unwrap(),
        samples.iter().max().unwrap(),
        samples[samples.len() - 1],
        growth,
        growth * 1024.0 / ops.max(1) as f64
    );
    assert!(
        last_max <= first_max + RSS_SLACK_KIB,
        "the daemon's memory grew: last-third max {last_max} KiB vs first-third max \
         {first_max} KiB (+{RSS_SLACK_KIB} KiB allowed); samples: {samples:?}"
    );
}

#[test]
fn soak_with_writers_readers_and_reference_changes() {
    let secs = soak_secs();
    let mut m = Mount::start(&[]);
    let base: Vec<(Root, Vec<u8>)> = (0..BASE)
        .map(|i| {
            let data = sector(1_000 + i);
            (m.put(&data), data)
        })
        .collect();
    let base_roots: Vec<Root> = base.iter().map(|(r, _)| *r).collect();
    let pid = m.pid().expect("the daemon runs");
    let stop = AtomicBool::new(false);
    let c = Counters::default();
    let started = Instant::now();
    let mut samples = Vec::new();
    let (pinned, model) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|id| {
                let (m, stop, c) = (&m, &stop, &c);
                s.spawn(move || writer(m, id, stop, c))
            })
            .collect();
        for id in 0..READERS {
            let (m, base, stop, c) = (&m, &base, &stop, &c);
            s.spawn(move || reader(m, id, base, stop, c));
        }
        let status = {
            let (m, stop, c) = (&m, &stop, &c);
            s.spawn(move || status_reader(m, stop, c))
        };
        let changer = {
            let (m, base, stop, c) = (&m, &base_roots, &stop, &c);
            s.spawn(move || ref_changer(m, base, stop, c))
        };
        let end = started + Duration::from_secs(secs);
        while Instant::now() < end {
            std::thread::sleep(Duration::from_secs(1));
            samples.push(rss_kib(pid));
        }
        stop.store(true, Ordering::Relaxed);
        let mut pinned = BTreeMap::new();
        for w in writers {
            pinned.extend(w.join().unwrap());
        }
        status.join().unwrap();
        (pinned, changer.join().unwrap())
    });
    let elapsed = started.elapsed().as_secs_f64();
    let errors = c.errors.lock().clone();
    assert!(
        errors.is_empty(),
        "{} errors during the soak, first: {:#?}\nthe daemon's refusals:\n{}",
        errors.len(),
        &errors[..errors.len().min(10)],
        m.log()
            .lines()
            .filter(|l| l.contains("refused") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let ops = c.total();
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    super::common::reliability::record(&format!(
        "soak: {elapsed:.1}s, {ops} operations, no error: {} sector writes ({:.0} MiB), {} \
         unpins, {} verified reads ({:.0} MiB, page cache dropped), {} contract revisions, {} \
         temp entries, {} height changes, {} listings, {} status reads",
        get(&c.writes),
        get(&c.writes) as f64 * 4.0,
        get(&c.unpins),
        get(&c.reads),
        get(&c.bytes_read) as f64 / (1 << 20) as f64,
        get(&c.revisions),
        get(&c.temp_ops),
        get(&c.heights),
        get(&c.listings),
        get(&c.status_reads),
    ));

    // the store is exactly what the clients were told, and every sector verifies
    let mut expected: BTreeMap<Root, u64> = base
        .iter()
        .enumerate()
        .map(|(i, (r, _))| (*r, 1_000 + i as u64))
        .collect();
    expected.extend(pinned);
    for r in model.own_stored() {
        expected.insert(r, model.seeds[&r]);
    }
    let listed: BTreeSet<String> = m.listed().into_iter().collect();
    let want: BTreeSet<String> = expected.keys().map(|r| r.to_string()).collect();
    assert_eq!(
        listed, want,
        "the listing is not what the clients were told"
    );
    for (name, roots) in &model.contracts {
        let text: String = roots.iter().map(|r| format!("{r}\n")).collect();
        assert_eq!(
            m.read(&format!("contracts/{name}")),
            text,
            "contract {name}"
        );
    }
    let names: BTreeSet<String> = std::fs::read_dir(m.path("contracts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, model.contracts.keys().cloned().collect());
    assert_eq!(m.read("height"), format!("{}\n", model.height));
    assert_eq!(m.used(1), expected.len() as u64, "used slots");
    memory_stays_flat(&samples, ops);
    // verified from disk: a fresh mount has no page cache
    m.remount();
    for (r, seed) in &expected {
        assert!(
            std::fs::read(m.sector_path(r)).unwrap() == sector(*seed),
            "sector {r} differs"
        );
    }
    m.unmount();
    offline_check(&m, "after the soak");
}
