//! Volume jobs through the engine: shrinking and removing with room in the
//! same volume, in others, split, or missing; corrupt and missing data;
//! reads and writes while jobs run; cancel; one job per volume; SIGKILL at
//! random points and resumption.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{assert_slots_match, make_sector, open, read_whole, wait_job};
use sectorfs::engine::{ContractEdit, Engine, Reference, Severity, VolumeState};
use sectorfs::merkle::{Root, SECTOR_SIZE};

struct Store {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    /// root → content of every sector written
    sectors: HashMap<Root, Vec<u8>>,
}

impl Store {
    fn new(volumes: &[u64]) -> Store {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(open(dir.path()));
        for (i, &slots) in volumes.iter().enumerate() {
            engine
                .add_volume(&dir.path().join(format!("v{i}.vol")), slots)
                .unwrap();
        }
        Store {
            _dir: dir,
            engine,
            sectors: HashMap::new(),
        }
    }

    /// Writes sectors `seeds` (pinned); returns their roots in order.
    fn write(&mut self, seeds: std::ops::Range<u64>) -> Vec<Root> {
        seeds
            .map(|seed| {
                let (root, data) = make_sector(seed);
                self.engine
                    .write_sector(&root, &data, Reference::Pin)
                    .unwrap();
                self.sectors.insert(root, data);
                root
            })
            .collect()
    }

    fn unpin(&mut self, root: &Root) {
        self.engine.unpin(root).unwrap();
        self.sectors.remove(root);
    }

    fn location(&self, root: &Root) -> (u32, u64) {
        let s = self.engine.lookup(root).unwrap().expect("stored");
        (s.volume_id, s.slot)
    }

    /// Every sector written and not unpinned is stored once and verifies.
    fn assert_all_present(&self) {
        for (root, data) in &self.sectors {
            assert!(
                read_whole(&self.engine, root) == *data,
                "sector {root} differs"
            );
        }
        assert_eq!(
            self.engine.meta().count_sectors().unwrap(),
            self.sectors.len() as u64
        );
        assert_slots_match(&self.engine);
    }

    fn volume_file_len(&self, id: u32) -> u64 {
        let path = self.engine.volume_info(id).unwrap().path;
        std::fs::metadata(path).unwrap().len()
    }

    fn job_alert(&self, id: u32) -> sectorfs::engine::Alert {
        self.engine
            .alerts()
            .get(&format!("job-{id}"))
            .expect("a job alert")
    }
}

#[test]
fn shrink_into_free_slots_below_the_new_size() {
    let mut s = Store::new(&[16]);
    let roots = s.write(0..16);
    for r in &roots[..8] {
        s.unpin(r);
    }
    s.engine.resize_volume(1, 8).unwrap();
    wait_job(&s.engine, 1, 60);
    for r in &roots[8..] {
        let (vol, slot) = s.location(r);
        assert_eq!(vol, 1);
        assert!(slot < 8);
    }
    let info = s.engine.volume_info(1).unwrap();
    assert_eq!(
        (info.slots, info.used, info.state),
        (8, 8, VolumeState::Ready)
    );
    assert_eq!(s.volume_file_len(1), 8 * SECTOR_SIZE as u64);
    assert!(
        s.job_alert(1).message.contains("done"),
        "{:?}",
        s.job_alert(1)
    );
    s.assert_all_present();
}

#[test]
fn shrink_into_another_volume() {
    let mut s = Store::new(&[16, 16]);
    let roots = s.write(0..16);
    s.engine.resize_volume(1, 8).unwrap();
    wait_job(&s.engine, 1, 60);
    for r in &roots[8..] {
        assert_eq!(s.location(r).0, 2);
    }
    assert_eq!(s.engine.volume_info(1).unwrap().slots, 8);
    assert_eq!(s.engine.volume_info(2).unwrap().used, 8);
    s.assert_all_present();
}

#[test]
fn shrink_split_between_the_volume_and_another() {
    let mut s = Store::new(&[16, 16]);
    let roots = s.write(0..12);
    s.unpin(&roots[0]);
    s.unpin(&roots[1]);
    // sectors at 8..12 must move: two fit in slots 0 and 1, two go to volume 2
    s.engine.resize_volume(1, 8).unwrap();
    wait_job(&s.engine, 1, 60);
    let places: Vec<(u32, u64)> = roots[8..].iter().map(|r| s.location(r)).collect();
    assert_eq!(
        places.iter().filter(|(v, _)| *v == 1).count(),
        2,
        "{places:?}"
    );
    assert_eq!(
        places.iter().filter(|(v, _)| *v == 2).count(),
        2,
        "{places:?}"
    );
    s.assert_all_present();
}

#[test]
fn shrink_without_room_is_refused_and_moves_nothing() {
    let mut s = Store::new(&[16, 4]);
    let roots = s.write(0..16);
    let before: Vec<_> = roots.iter().map(|r| s.location(r)).collect();
    let err = s.engine.resize_volume(1, 8).unwrap_err();
    assert_eq!(err.errno(), libc::ENOSPC, "{err}");
    assert!(!s.engine.job_running(1));
    let after: Vec<_> = roots.iter().map(|r| s.location(r)).collect();
    assert_eq!(before, after);
    assert_eq!(s.engine.volume_info(1).unwrap().slots, 16);
    s.assert_all_present();
    // growing is immediate and needs no job
    s.engine.resize_volume(2, 64).unwrap();
    assert_eq!(s.engine.volume_info(2).unwrap().slots, 64);
    assert_eq!(s.volume_file_len(2), 64 * SECTOR_SIZE as u64);
}

#[test]
fn remove_with_room_elsewhere_and_without() {
    let mut s = Store::new(&[8, 8, 4]);
    s.write(0..8);
    // 8 sectors, 12 free elsewhere: accepted
    let path = s.engine.volume_info(1).unwrap().path;
    s.engine.remove_volume(1, false).unwrap();
    wait_job(&s.engine, 1, 60);
    assert!(s.engine.volume(1).is_err(), "volume 1 is gone");
    assert!(!path.exists(), "its file is deleted");
    assert!(s.job_alert(1).message.contains("done"));
    s.assert_all_present();
    // volume 2 holds 8 and only 4 slots are free elsewhere: refused at once
    let err = s.engine.remove_volume(2, false).unwrap_err();
    assert_eq!(err.errno(), libc::ENOSPC, "{err}");
    assert_eq!(s.engine.volume_info(2).unwrap().state, VolumeState::Ready);
    s.assert_all_present();
}

/// Flips one byte of a stored sector in its volume file.
fn corrupt(engine: &Engine, root: &Root) {
    let at = engine.lookup(root).unwrap().unwrap();
    let path = engine.volume_info(at.volume_id).unwrap().path;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let off = at.slot * SECTOR_SIZE as u64 + 1234;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off).unwrap();
    f.write_all_at(&[b[0] ^ 0xff], off).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn remove_with_a_corrupt_sector_fails_without_force_and_loses_it_with_force() {
    let mut s = Store::new(&[8, 16]);
    let roots = s.write(0..6);
    s.engine
        .revise_contract("c1", &[roots[2], roots[3]], ContractEdit::Replace)
        .unwrap();
    corrupt(&s.engine, &roots[2]);
    s.engine.remove_volume(1, false).unwrap();
    wait_job(&s.engine, 1, 60);
    let alert = s.job_alert(1);
    assert_eq!(alert.severity, Severity::Error);
    assert!(
        alert.message.contains("1 sector could not be read"),
        "{}",
        alert.message
    );
    assert!(
        alert.message.contains(&roots[2].to_string()),
        "{}",
        alert.message
    );
    let info = s.engine.volume_info(1).expect("the volume is kept");
    assert_eq!(info.state, VolumeState::Ready);
    assert_eq!(info.used, 1, "only the corrupt sector is left");
    assert_eq!(s.location(&roots[2]).0, 1);
    // everything else moved and reads back
    s.sectors.remove(&roots[2]);
    for r in roots.iter().filter(|r| **r != roots[2]) {
        assert_eq!(s.location(r).0, 2);
    }

    s.engine.remove_volume(1, true).unwrap();
    wait_job(&s.engine, 1, 60);
    assert!(
        s.engine.volume(1).is_err(),
        "forced removal removes the volume"
    );
    let lost = s
        .engine
        .alerts()
        .get(&format!("lost-{}", roots[2]))
        .expect("a lost alert");
    assert!(lost.message.contains("c1"), "{}", lost.message);
    assert!(s.engine.lookup(&roots[2]).unwrap().is_none());
    assert_eq!(
        s.engine.contract_roots("c1").unwrap().unwrap(),
        vec![roots[3]]
    );
    s.assert_all_present();
}

#[test]
fn forced_removal_of_a_volume_whose_file_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut sectors = HashMap::new();
    let (vol_path, lost_roots) = {
        let engine = open(dir.path());
        // three slots: full after three sectors, so later ones go to b.vol
        engine.add_volume(&dir.path().join("a.vol"), 3).unwrap();
        let mut lost = Vec::new();
        for seed in 0..3 {
            let (root, data) = make_sector(seed);
            engine.write_sector(&root, &data, Reference::Pin).unwrap();
            lost.push(root);
        }
        engine.add_volume(&dir.path().join("b.vol"), 8).unwrap();
        for seed in 10..12 {
            let (root, data) = make_sector(seed);
            engine.write_sector(&root, &data, Reference::Pin).unwrap();
            sectors.insert(root, data);
        }
        (dir.path().join("a.vol"), lost)
    };
    std::fs::remove_file(&vol_path).unwrap();
    let engine = Arc::new(open(dir.path()));
    assert_eq!(
        engine.volume_info(1).unwrap().state,
        VolumeState::Unavailable
    );
    let err = engine.remove_volume(1, false);
    if err.is_ok() {
        wait_job(&engine, 1, 60);
        assert!(engine.volume(1).is_ok(), "without force the volume is kept");
    }
    engine.remove_volume(1, true).unwrap();
    wait_job(&engine, 1, 60);
    assert!(engine.volume(1).is_err());
    for r in &lost_roots {
        assert!(engine.lookup(r).unwrap().is_none());
        assert!(engine.alerts().get(&format!("lost-{r}")).is_some());
    }
    for (root, data) in &sectors {
        assert!(read_whole(&engine, root) == *data);
    }
    assert_slots_match(&engine);
}

/// A volume out of service for a moment (its file renamed away and back,
/// not yet reopened) is still read by a forced removal: its sectors move
/// and none is dropped as lost.
#[test]
fn forced_removal_of_a_volume_out_of_service_moves_what_it_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path()));
    let a_path = dir.path().join("a.vol");
    let a = engine.add_volume(&a_path, 3).unwrap();
    let mut sectors = HashMap::new();
    for seed in 20..23 {
        let (root, data) = make_sector(seed);
        engine.write_sector(&root, &data, Reference::Pin).unwrap();
        sectors.insert(root, data);
    }
    let b = engine.add_volume(&dir.path().join("b.vol"), 8).unwrap();
    let away = dir.path().join("a.away");
    std::fs::rename(&a_path, &away).unwrap();
    engine.health_pass();
    assert_eq!(
        engine.volume_info(a).unwrap().state,
        VolumeState::Unavailable
    );
    std::fs::rename(&away, &a_path).unwrap();
    engine.remove_volume(a, true).unwrap();
    wait_job(&engine, a, 60);
    assert!(engine.volume(a).is_err(), "the volume was removed");
    assert_eq!(engine.lost_sectors(), 0);
    for (root, data) in &sectors {
        assert_eq!(engine.lookup(root).unwrap().unwrap().volume_id, b);
        assert!(read_whole(&engine, root) == *data);
    }
    assert_slots_match(&engine);
}

/// Readers verify random sectors of the volume in a loop while it is
/// shrunk and then removed; a writer keeps storing to other volumes.
#[test]
fn reads_and_writes_go_on_during_jobs() {
    let mut s = Store::new(&[48, 128]);
    let roots = s.write(0..48);
    let expected: Arc<HashMap<Root, Vec<u8>>> = Arc::new(s.sectors.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for t in 0..3u64 {
        let (engine, expected, stop, reads, failures, roots) = (
            s.engine.clone(),
            expected.clone(),
            stop.clone(),
            reads.clone(),
            failures.clone(),
            roots.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; SECTOR_SIZE];
            let mut i = t as usize;
            while !stop.load(Ordering::Relaxed) {
                let root = &roots[i % roots.len()];
                i = i.wrapping_mul(31).wrapping_add(7);
                match engine.read_sector(root, 0, &mut buf) {
                    Ok(()) if buf == expected[root] => {}
                    other => {
                        eprintln!("read of {root} failed or differed: {:?}", other.err());
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let writer = {
        let (engine, stop) = (s.engine.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut written = Vec::new();
            let mut seed = 1000;
            while !stop.load(Ordering::Relaxed) && seed < 1040 {
                let (root, data) = make_sector(seed);
                engine.write_sector(&root, &data, Reference::Pin).unwrap();
                written.push((root, data));
                seed += 1;
            }
            written
        })
    };
    s.engine.resize_volume(1, 16).unwrap();
    wait_job(&s.engine, 1, 120);
    s.engine.remove_volume(1, false).unwrap();
    wait_job(&s.engine, 1, 120);
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    for (root, data) in writer.join().unwrap() {
        s.sectors.insert(root, data);
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "failed or wrong reads");
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert!(s.engine.volume(1).is_err());
    s.assert_all_present();
}

#[test]
fn cancel_and_one_job_per_volume() {
    let mut s = Store::new(&[128, 256]);
    s.write(0..128);
    s.engine.remove_volume(1, false).unwrap();
    let busy = s.engine.resize_volume(1, 8).unwrap_err();
    assert_eq!(busy.errno(), libc::EBUSY, "{busy}");
    let busy = s.engine.remove_volume(1, true).unwrap_err();
    assert_eq!(busy.errno(), libc::EBUSY, "{busy}");
    s.engine.cancel_job(1).unwrap();
    wait_job(&s.engine, 1, 60);
    let info = s
        .engine
        .volume_info(1)
        .expect("a cancelled removal keeps the volume");
    assert_eq!(info.state, VolumeState::Ready);
    assert!(s.job_alert(1).message.contains("cancelled"));
    assert_eq!(s.engine.cancel_job(1).unwrap_err().errno(), libc::ENOENT);
    s.assert_all_present();
    // the volume takes new sectors again
    assert!(s.engine.meta().jobs().unwrap().is_empty());
}

// ------------------------------------------------------------ kill tests

const CHILD_ENV: &str = "SECTORFS_JOB_CHILD";

/// In the child: open the store, start (or resume) the job, and wait.
#[test]
fn job_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, kind) = spec.split_once(';').unwrap();
    let engine = Arc::new(open(Path::new(dir)));
    engine.resume_jobs().unwrap();
    if !engine.job_running(1) && engine.volume(1).is_ok() {
        match kind {
            "shrink" => engine.resize_volume(1, 4).unwrap(),
            _ => engine.remove_volume(1, false).unwrap(),
        }
    }
    println!("started");
    wait_job(&engine, 1, 300);
    println!("finished");
}

fn kill_during(kind: &str, rounds: u64) {
    let mut rng = 0x1234_5678_u64 ^ kind.len() as u64;
    let mut survived = 0;
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let mut sectors = HashMap::new();
        {
            let engine = open(dir.path());
            engine.add_volume(&dir.path().join("a.vol"), 40).unwrap();
            for seed in 0..32 {
                let (root, data) = make_sector(round * 100 + seed);
                engine.write_sector(&root, &data, Reference::Pin).unwrap();
                sectors.insert(root, data);
            }
            engine.add_volume(&dir.path().join("b.vol"), 64).unwrap();
        }
        // kill the child a random number of milliseconds after the job starts
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_millis(rng % 120);
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "job_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{};{kind}", dir.path().display()))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !line.contains("started") && Instant::now() < deadline {
            line.clear();
            if std::io::BufRead::read_line(&mut out, &mut line).unwrap() == 0 {
                break;
            }
        }
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        survived += 1;

        // reopen: the job resumes and finishes; nothing lost or duplicated
        let engine = Arc::new(open(dir.path()));
        engine.resume_jobs().unwrap();
        wait_job(&engine, 1, 120);
        for (root, data) in &sectors {
            assert!(
                read_whole(&engine, root) == *data,
                "round {round}: sector {root}"
            );
        }
        assert_eq!(engine.meta().count_sectors().unwrap(), sectors.len() as u64);
        assert_slots_match(&engine);
        match kind {
            "shrink" => assert_eq!(engine.volume_info(1).unwrap().slots, 4, "round {round}"),
            _ => assert!(engine.volume(1).is_err(), "round {round}: volume removed"),
        }
        assert!(engine.meta().jobs().unwrap().is_empty());
    }
    assert_eq!(survived, rounds);
}

#[test]
fn kill_during_shrink_then_resume() {
    kill_during("shrink", 8);
}

#[test]
fn kill_during_remove_then_resume() {
    kill_during("remove", 8);
}

/// The default volume is made on a store's first start only: a store whose
/// volumes were all removed opens with none.
#[test]
fn the_default_volume_is_made_on_a_first_start_only() {
    use sectorfs::engine::{Options, Placement};
    let dir = tempfile::tempdir().unwrap();
    let open_default = || {
        Arc::new(
            Engine::open(
                dir.path(),
                Options {
                    placement: Placement::FillFirst,
                    default_volume_slots: 4,
                    ..Options::default()
                },
            )
            .unwrap(),
        )
    };
    let engine = open_default();
    let ids: Vec<u32> = engine.volume_infos().iter().map(|v| v.id).collect();
    assert_eq!(ids.len(), 1, "made on the first start");
    engine.remove_volume(ids[0], false).unwrap();
    wait_job(&engine, ids[0], 30);
    assert!(engine.volume_infos().is_empty());
    drop(engine);
    let engine = open_default();
    assert!(engine.volume_infos().is_empty(), "not made again");
}

/// A removal whose destination runs out of room mid-batch fails, and every
/// slot the batch reserved there is either its sector's or free again:
/// none stays reserved with nothing in it.
#[test]
fn a_failed_batch_leaves_no_slot_reserved() {
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    // room for two sectors, though the volume says sixteen
    nix::mount::mount(
        Some("tmpfs"),
        &small,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=10m"),
    )
    .expect("mount a small tmpfs (run as root)");
    let _guard = Unmount(small.clone());
    let engine = Arc::new(open(dir.path()));
    let a = engine.add_volume(&dir.path().join("a.vol"), 6).unwrap();
    let mut sectors = HashMap::new();
    for seed in 30..36 {
        let (root, data) = make_sector(seed);
        engine.write_sector(&root, &data, Reference::Pin).unwrap();
        sectors.insert(root, data);
    }
    let b = engine.add_volume(&small.join("b.vol"), 16).unwrap();
    engine.remove_volume(a, false).unwrap();
    wait_job(&engine, a, 60);
    assert!(engine.volume(a).is_ok(), "the removal failed: a stays");
    let job = engine.alerts().get(&format!("job-{a}")).unwrap();
    assert!(job.message.contains("failed"), "{}", job.message);
    for (root, data) in &sectors {
        assert!(read_whole(&engine, root) == *data);
    }
    assert!(engine.volume_info(b).unwrap().used <= 2);
    assert_slots_match(&engine);
}
