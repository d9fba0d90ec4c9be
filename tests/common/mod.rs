//! Helpers shared by the engine test binaries.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use sectorfs::engine::{Engine, Options, Placement};
use sectorfs::merkle::{Root, SECTOR_SIZE, sector_root};

pub mod hostd;
pub mod reliability;
pub mod rng;

/// A sector and its root.
pub type Sector = (Root, Vec<u8>);

/// The sector of `seed`, made once per test binary (hashing is the slow
/// part) and shared by every test.
pub fn cached_sector(seed: u64) -> &'static Sector {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<HashMap<u64, &'static Sector>>> =
        std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(s) = cache.lock().unwrap().get(&seed) {
        return s;
    }
    let made: &'static _ = Box::leak(Box::new(make_sector(seed)));
    cache.lock().unwrap().entry(seed).or_insert(made)
}

/// A sector of noise and its root: distinct per seed, cheap to make.
pub fn make_sector(seed: u64) -> (Root, Vec<u8>) {
    let data = rng::noise_sector(seed);
    (sector_root(&data), data)
}

/// Opens a store with no default volume.
pub fn open(dir: &Path) -> Engine {
    Engine::open(
        dir,
        Options {
            placement: Placement::FillFirst,
            default_volume_slots: 0,
            ..Options::default()
        },
    )
    .expect("open the engine")
}

/// Reads a whole stored sector back.
pub fn read_whole(engine: &Engine, root: &Root) -> Vec<u8> {
    let mut buf = vec![0u8; SECTOR_SIZE];
    engine
        .read_sector(root, 0, &mut buf)
        .expect("read a sector");
    buf
}

/// Waits until no job runs on `volume` (panics after `secs`).
pub fn wait_job(engine: &Engine, volume: u32, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while engine.job_running(volume) {
        assert!(
            Instant::now() < deadline,
            "the job on volume {volume} did not finish"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every stored sector owns exactly one slot and every occupied slot
/// belongs to a stored sector.
pub fn assert_slots_match(engine: &Engine) {
    let mut copies = Vec::new();
    let mut after = 0;
    loop {
        let page = engine.list_sectors(after, 1000).unwrap();
        for s in &page {
            copies.extend(engine.sector_copies(s.id).unwrap());
        }
        match page.last() {
            Some(s) => after = s.id,
            None => break,
        }
    }
    let used: u64 = engine.volume_infos().iter().map(|v| v.used).sum();
    assert_eq!(
        used,
        copies.len() as u64,
        "occupied slots differ from the copies of stored sectors"
    );
    let mut seen = std::collections::HashSet::new();
    for c in &copies {
        assert!(seen.insert((c.volume_id, c.slot)), "slot shared: {c:?}");
        let info = engine.volume_info(c.volume_id).unwrap();
        assert!(c.slot < info.slots, "copy outside its volume: {c:?}");
    }
}
