//! Deterministic fault tests: every write, move (shrink, remove), free
//! and repair (volume reopen) path run against volume files that fail on
//! demand (`sectorfs::volume::faults`). Each path runs once per fault: the
//! 1st, 2nd, 3rd, … volume I/O call fails with `EIO`, then with `ENOSPC`,
//! then the 1st, 2nd, … write is torn, until the path runs without the
//! fault being reached; then it is stopped at each crash point. After each
//! run: a call that failed changed nothing visible, a call that succeeded
//! is there after a reopen, no slot leaked, no freed sector's bytes can be
//! read back, and the offline check is clean. The kill -9 tests
//! (`engine_crash.rs`) stay beside these.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::FileExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use common::{assert_slots_match, wait_job};
use sectorfs::engine::{Engine, Options, Placement, Reference, Severity, Upload, VolumeState};
use sectorfs::merkle::{Root, SECTOR_SIZE, sector_root};
use sectorfs::volume::faults::{CRASH_POINTS, Fault, Faults, Op, is_crash};

use common::{Sector, cached_sector};

/// Sectors shared by every test (hashing is the slow part).
fn sector(seed: u64) -> &'static Sector {
    cached_sector(0xFA17_0000 + seed)
}

fn root(seed: u64) -> Root {
    sector(seed).0
}

/// Planned crashes unwind quietly; every other panic is reported as usual.
fn quiet_crashes() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !is_crash(info.payload()) {
                report(info);
            }
        }));
    });
}

/// A store whose volume files go through `faults`.
struct Store {
    dir: tempfile::TempDir,
    faults: Faults,
    engine: Option<Arc<Engine>>,
}

impl Store {
    fn new(slots: &[u64]) -> Store {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let engine = Arc::new(Engine::open(dir.path(), options(&faults)).unwrap());
        for (i, n) in slots.iter().enumerate() {
            engine
                .add_volume(&dir.path().join(format!("v{i}.vol")), *n)
                .unwrap();
        }
        Store {
            dir,
            faults,
            engine: Some(engine),
        }
    }

    fn engine(&self) -> &Arc<Engine> {
        self.engine.as_ref().expect("open")
    }

    /// Drops the engine without its clean shutdown (once every thread of
    /// it has let go, a crashed job's too), then opens the data dir again
    /// with no fault planned, resumes jobs and waits for them.
    fn reopen(&mut self) {
        let mut engine = self.engine.take().expect("open");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match Arc::try_unwrap(engine) {
                Ok(e) => break drop(e),
                Err(still) => engine = still,
            }
            assert!(Instant::now() < deadline, "the engine's threads hold on");
            std::thread::sleep(Duration::from_millis(2));
        }
        self.faults.reset();
        let engine = Arc::new(Engine::open(self.dir.path(), options(&self.faults)).unwrap());
        engine.resume_jobs().unwrap();
        for id in engine.volume_ids() {
            wait_job(&engine, id, 60);
        }
        self.engine = Some(engine);
    }
}

fn options(faults: &Faults) -> Options {
    Options {
        placement: Placement::FillFirst,
        default_volume_slots: 0,
        storage: Arc::new(faults.clone()),
        ..Options::default()
    }
}

/// How the call under test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    Failed(String),
    /// Stopped at a crash point: neither acknowledged nor refused.
    Crashed,
}

/// One path under test.
trait Scenario {
    fn name(&self) -> &str;
    fn volumes(&self) -> &[u64];
    /// Whether it writes sectors (torn writes apply).
    fn writes(&self) -> bool {
        true
    }
    /// Builds the store it starts from (no fault planned yet).
    fn setup(&self, s: &Store);
    /// The call under test.
    fn act(&self, s: &Store) -> Outcome;
    /// What must hold after `outcome`, before (`reopened` false; never
    /// after a crash) and after a reopen.
    fn expect(&self, s: &Store, outcome: &Outcome, reopened: bool);
}

/// A planned fault.
#[derive(Debug, Clone, Copy)]
enum Plan {
    Fault(Option<Op>, u64, Fault),
    Crash(&'static str),
}

/// Runs `sc` once under `plan`; whether the plan was reached.
fn run_once(sc: &dyn Scenario, plan: Plan) -> bool {
    let mut s = Store::new(sc.volumes());
    sc.setup(&s);
    let before = places(&s);
    match plan {
        Plan::Fault(op, n, fault) => s.faults.inject(op, n, fault),
        Plan::Crash(point) => s.faults.crash_at(point, 1),
    }
    let ctx = format!("{}, {plan:?}", sc.name());
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| sc.act(&s))) {
        Ok(outcome) => outcome,
        Err(p) if is_crash(&*p) => Outcome::Crashed,
        Err(p) => std::panic::resume_unwind(p),
    };
    let reached = s.faults.fired() > 0 || s.faults.crashed().is_some();
    if !reached {
        assert_eq!(outcome, Outcome::Done, "{ctx}: failed with no fault");
    }
    if outcome != Outcome::Crashed && s.faults.crashed().is_none() {
        s.faults.reset();
        sc.expect(&s, &outcome, false);
        no_slot_leaked(s.engine(), &ctx);
    }
    s.reopen();
    sc.expect(&s, &outcome, true);
    let engine = s.engine();
    assert!(
        engine.meta().pending_punches().unwrap().is_empty(),
        "{ctx}: punches left pending after a reopen"
    );
    assert_slots_match(engine);
    no_freed_bytes(&s, &before, &ctx);
    let report = engine.check_offline(None).unwrap();
    assert!(report.is_clean(), "{ctx}: offline check: {report:?}");
    reached
}

/// Runs `sc` under every fault in turn, and at every crash point; the
/// crash points it passed.
fn drive(sc: &dyn Scenario) -> BTreeSet<&'static str> {
    quiet_crashes();
    let faults = [
        (None, Fault::Fail(libc::EIO)),
        (None, Fault::Fail(libc::ENOSPC)),
        (
            Some(Op::Write),
            Fault::Tear {
                keep: 3 * 4096 + 17,
                errno: libc::EIO,
            },
        ),
        (Some(Op::Write), Fault::TearAndCrash { keep: 100_000 }),
    ];
    for (op, fault) in faults {
        let mut n = 1;
        while run_once(sc, Plan::Fault(op, n, fault)) {
            n += 1;
            assert!(n < 200, "{}: no end to the I/O calls", sc.name());
        }
        if op.is_none() || sc.writes() {
            assert!(n > 1, "{}: {fault:?} was never reached", sc.name());
        }
    }
    CRASH_POINTS
        .iter()
        .copied()
        .filter(|point| run_once(sc, Plan::Crash(point)))
        .collect()
}

// ------------------------------------------------------------ invariants

/// Every occupied slot is a copy of a stored sector, or a freed one's
/// waiting to be punched (held back until it is).
fn no_slot_leaked(engine: &Engine, ctx: &str) {
    let used: u64 = engine.volume_infos().iter().map(|v| v.used).sum();
    let stored: u64 = engine
        .list_sectors(0, 1 << 20)
        .unwrap()
        .iter()
        .map(|s| engine.sector_copies(s.id).unwrap().len() as u64)
        .sum();
    let pending = engine.meta().pending_punches().unwrap().len() as u64;
    assert_eq!(used, stored + pending, "{ctx}: slots leaked");
}

/// Where each stored sector's bytes are (file, slot).
fn places(s: &Store) -> HashMap<Root, (PathBuf, u64)> {
    let engine = s.engine();
    engine
        .list_sectors(0, 1 << 20)
        .unwrap()
        .into_iter()
        .map(|r| {
            let path = engine.volume_info(r.volume_id).unwrap().path;
            (r.root, (path, r.slot))
        })
        .collect()
}

/// A sector no longer stored cannot be read back from any slot it had.
fn no_freed_bytes(s: &Store, before: &HashMap<Root, (PathBuf, u64)>, ctx: &str) {
    let now = places(s);
    for (root, (path, slot)) in before {
        if now.contains_key(root) {
            continue;
        }
        assert_ne!(
            slot_root(path, *slot),
            Some(*root),
            "{ctx}: freed {root} still readable in {} slot {slot}",
            path.display()
        );
    }
}

/// The root of what `slot` of the file at `path` holds, if it has it whole.
fn slot_root(path: &Path, slot: u64) -> Option<Root> {
    let file = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; SECTOR_SIZE];
    file.read_exact_at(&mut buf, slot * SECTOR_SIZE as u64)
        .ok()?;
    Some(sector_root(&buf))
}

/// The volumes holding a copy of stored sector `seed`.
fn copy_volumes(engine: &Engine, seed: u64) -> BTreeSet<u32> {
    let id = engine.lookup(&root(seed)).unwrap().expect("stored").id;
    engine
        .sector_copies(id)
        .unwrap()
        .iter()
        .map(|c| c.volume_id)
        .collect()
}

/// `seed` is stored and reads back whole (`true`), or is not stored.
fn assert_stored(engine: &Engine, seed: u64, stored: bool, ctx: &str) {
    let (root, data) = sector(seed);
    let found = engine.lookup(root).unwrap().is_some();
    assert_eq!(found, stored, "{ctx}: sector {seed} stored: {found}");
    if stored {
        let mut buf = vec![0u8; SECTOR_SIZE];
        engine
            .read_sector(root, 0, &mut buf)
            .unwrap_or_else(|e| panic!("{ctx}: read {seed}: {e}"));
        assert!(buf == *data, "{ctx}: sector {seed} reads back wrong");
    }
}

fn pin(engine: &Engine, seed: u64) {
    let (root, data) = sector(seed);
    engine.write_sector(root, data, Reference::Pin).unwrap();
}

fn outcome_of<T>(r: sectorfs::error::Result<T>) -> Outcome {
    match r {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Waits for the job on `id` to end (or the engine to die in it); how it
/// went, by its alert.
fn job_outcome(s: &Store, id: u32) -> Outcome {
    let engine = s.engine();
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.job_running(id) && s.faults.crashed().is_none() {
        assert!(Instant::now() < deadline, "the job on volume {id} hangs");
        std::thread::sleep(Duration::from_millis(2));
    }
    if s.faults.crashed().is_some() {
        return Outcome::Crashed;
    }
    let alert = engine
        .alerts()
        .get(&format!("job-{id}"))
        .expect("a job alert");
    match alert.severity {
        Severity::Info => Outcome::Done,
        _ => Outcome::Failed(alert.message),
    }
}

// ------------------------------------------------------------ the paths

/// A new sector, written whole (`Engine::write_sector`) or in pieces as
/// the mount writes it (`Upload`), into one volume (a failed write fails
/// the call) or two (it goes to the other).
struct Write {
    name: String,
    volumes: Vec<u64>,
    upload: bool,
    /// The store's min (and max) copies.
    copies: u32,
}

impl Scenario for Write {
    fn name(&self) -> &str {
        &self.name
    }

    fn volumes(&self) -> &[u64] {
        &self.volumes
    }

    fn setup(&self, s: &Store) {
        let engine = s.engine();
        engine.set_copies(self.copies, self.copies).unwrap();
        pin(engine, 1);
    }

    fn act(&self, s: &Store) -> Outcome {
        let (root, data) = sector(2);
        if !self.upload {
            return outcome_of(s.engine().write_sector(root, data, Reference::Pin));
        }
        let mut up = Upload::new(s.engine().clone(), *root).expect("room for an upload");
        for (i, piece) in data.chunks(1 << 20).enumerate() {
            if let Err(e) = up.write(i << 20, piece) {
                return outcome_of::<()>(Err(e));
            }
        }
        outcome_of(up.finish(Reference::Pin))
    }

    fn expect(&self, s: &Store, outcome: &Outcome, reopened: bool) {
        let ctx = format!("{}, {outcome:?}, reopened {reopened}", self.name);
        let engine = s.engine();
        assert_stored(engine, 1, true, &ctx);
        match outcome {
            Outcome::Done => assert_stored(engine, 2, true, &ctx),
            Outcome::Failed(_) => assert_stored(engine, 2, false, &ctx),
            Outcome::Crashed => {
                let there = engine.lookup(&root(2)).unwrap().is_some();
                assert_stored(engine, 2, there, &ctx);
            }
        }
    }
}

/// A repair of copies: two sectors with one copy each, then `copies 2`
/// and a repair pass. Whatever stops it, both stay stored and readable with
/// one or two copies, and the offline check (in `run_once`) is clean.
struct CopiesRepair;

impl Scenario for CopiesRepair {
    fn name(&self) -> &str {
        "copies repair"
    }

    fn volumes(&self) -> &[u64] {
        &[4, 4]
    }

    fn setup(&self, s: &Store) {
        let engine = s.engine();
        (1..=2).for_each(|seed| pin(engine, seed));
    }

    fn act(&self, s: &Store) -> Outcome {
        let engine = s.engine();
        outcome_of(engine.set_copies(2, 2).and_then(|()| engine.repair_now()))
    }

    fn expect(&self, s: &Store, outcome: &Outcome, reopened: bool) {
        let ctx = format!("copies repair, {outcome:?}, reopened {reopened}");
        let engine = s.engine();
        for seed in 1..=2 {
            assert_stored(engine, seed, true, &ctx);
            let copies = copy_volumes(engine, seed);
            assert!((1..=2).contains(&copies.len()), "{ctx}: {copies:?}");
        }
    }
}

/// Unpinning a sector: its row goes and its slot is recorded as pending in
/// one transaction, then the slot is punched and handed back.
struct Free;

impl Scenario for Free {
    fn name(&self) -> &str {
        "free"
    }

    fn writes(&self) -> bool {
        false
    }

    fn volumes(&self) -> &[u64] {
        &[4]
    }

    fn setup(&self, s: &Store) {
        let engine = s.engine();
        (1..=3).for_each(|seed| pin(engine, seed));
    }

    fn act(&self, s: &Store) -> Outcome {
        outcome_of(s.engine().unpin(&root(2)))
    }

    fn expect(&self, s: &Store, outcome: &Outcome, reopened: bool) {
        let ctx = format!("free, {outcome:?}, reopened {reopened}");
        let engine = s.engine();
        assert_stored(engine, 1, true, &ctx);
        assert_stored(engine, 3, true, &ctx);
        match outcome {
            Outcome::Done => assert_stored(engine, 2, false, &ctx),
            Outcome::Failed(_) => assert_stored(engine, 2, true, &ctx),
            Outcome::Crashed => {}
        }
    }
}

/// Shrinking a volume from 8 slots to 4: the sectors in slots 4 and 5 move
/// down into the slots 0 and 1 left free.
struct Shrink;

impl Scenario for Shrink {
    fn name(&self) -> &str {
        "shrink"
    }

    fn volumes(&self) -> &[u64] {
        &[8]
    }

    fn setup(&self, s: &Store) {
        let engine = s.engine();
        (1..=6).for_each(|seed| pin(engine, seed));
        engine.unpin(&root(1)).unwrap();
        engine.unpin(&root(2)).unwrap();
    }

    fn act(&self, s: &Store) -> Outcome {
        match s.engine().resize_volume(1, 4) {
            Ok(()) => job_outcome(s, 1),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    fn expect(&self, s: &Store, outcome: &Outcome, reopened: bool) {
        let ctx = format!("shrink, {outcome:?}, reopened {reopened}");
        let engine = s.engine();
        (3..=6).for_each(|seed| assert_stored(engine, seed, true, &ctx));
        let slots = engine.volume_info(1).unwrap().slots;
        // a crashed job resumes at the reopen and finishes
        let shrunk = !matches!(outcome, Outcome::Failed(_));
        assert_eq!(slots, if shrunk { 4 } else { 8 }, "{ctx}");
        if let Outcome::Failed(why) = outcome
            && !reopened
        {
            let alert = engine.alerts().get("job-1");
            assert!(
                alert.is_some_and(|a| a.severity == Severity::Error),
                "{ctx}: a failed job raises an error alert ({why})"
            );
        }
    }
}

/// Removing a volume: its three sectors move to the other one.
struct Remove;

impl Scenario for Remove {
    fn name(&self) -> &str {
        "remove"
    }

    fn volumes(&self) -> &[u64] {
        &[4, 4]
    }

    fn setup(&self, s: &Store) {
        let engine = s.engine();
        (1..=3).for_each(|seed| pin(engine, seed));
    }

    fn act(&self, s: &Store) -> Outcome {
        match s.engine().remove_volume(1, false) {
            Ok(()) => job_outcome(s, 1),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    fn expect(&self, s: &Store, outcome: &Outcome, reopened: bool) {
        let ctx = format!("remove, {outcome:?}, reopened {reopened}");
        let engine = s.engine();
        (1..=3).for_each(|seed| assert_stored(engine, seed, true, &ctx));
        let gone = engine.volume(1).is_err();
        assert_eq!(gone, !matches!(outcome, Outcome::Failed(_)), "{ctx}");
        assert_eq!(
            s.dir.path().join("v0.vol").exists(),
            !gone,
            "{ctx}: a volume's file is there as long as the volume"
        );
    }
}

/// Reopening a volume taken out of service by read errors, after a sector
/// was freed while it was away (its slot is punched at the reopen).
struct Repair;

impl Scenario for Repair {
    fn name(&self) -> &str {
        "repair"
    }

    fn writes(&self) -> bool {
        false
    }

    fn volumes(&self) -> &[u64] {
        &[4]
    }

    fn setup(&self, s: &Store) {
        let engine = s.engine();
        (1..=3).for_each(|seed| pin(engine, seed));
        // reads fail until the volume is out of service
        let faults = &s.faults;
        faults.inject_from(Some(Op::Read), 1, Fault::Fail(libc::EIO));
        let mut buf = vec![0u8; SECTOR_SIZE];
        while engine.volume_info(1).unwrap().state != VolumeState::Unavailable {
            assert!(engine.read_sector(&root(1), 0, &mut buf).is_err());
        }
        faults.reset();
        engine.unpin(&root(2)).unwrap();
        assert_eq!(engine.meta().pending_punches().unwrap().len(), 1);
    }

    fn act(&self, s: &Store) -> Outcome {
        outcome_of(s.engine().reopen_volume(1))
    }

    fn expect(&self, s: &Store, outcome: &Outcome, reopened: bool) {
        let ctx = format!("repair, {outcome:?}, reopened {reopened}");
        let engine = s.engine();
        let state = engine.volume_info(1).unwrap().state;
        match outcome {
            _ if reopened => assert_eq!(state, VolumeState::Ready, "{ctx}"),
            Outcome::Done => assert_eq!(state, VolumeState::Ready, "{ctx}"),
            _ => assert_eq!(state, VolumeState::Unavailable, "{ctx}"),
        }
        assert_stored(engine, 2, false, &ctx);
        if state == VolumeState::Ready {
            assert_stored(engine, 1, true, &ctx);
            assert_stored(engine, 3, true, &ctx);
        }
    }
}

// ------------------------------------------------------------ the tests

/// Runs `sc` and checks it passed exactly the crash points `points`.
fn check(sc: &dyn Scenario, points: &[&str]) {
    let passed = drive(sc);
    let want: BTreeSet<&str> = points.iter().copied().collect();
    assert_eq!(passed, want, "{}: crash points passed", sc.name());
}

const WRITE_POINTS: &[&str] = &["write:slot-written", "write:synced", "write:committed"];
const FREE_POINTS: &[&str] = &["free:recorded", "free:punched", "free:cleared"];
const SHRINK_POINTS: &[&str] = &[
    "move:copied",
    "move:synced",
    "move:repointed",
    "free:punched",
    "free:cleared",
    "shrink:recorded",
    "job:ended",
];
const REMOVE_POINTS: &[&str] = &[
    "move:copied",
    "move:synced",
    "move:repointed",
    "free:punched",
    "free:cleared",
    "remove:file-deleted",
    "job:ended",
];
const REPAIR_POINTS: &[&str] = &["free:punched", "free:cleared"];
const COPIES_POINTS: &[&str] = &["repair:written", "repair:batch"];

#[test]
fn every_crash_point_is_tested() {
    let tested: BTreeSet<&str> = [
        WRITE_POINTS,
        FREE_POINTS,
        SHRINK_POINTS,
        REMOVE_POINTS,
        REPAIR_POINTS,
        COPIES_POINTS,
    ]
    .concat()
    .into_iter()
    .collect();
    let all: BTreeSet<&str> = CRASH_POINTS.iter().copied().collect();
    assert_eq!(tested, all);
}

/// A write of one sector, through `write_sector` or an upload, into
/// volumes of these slot counts.
fn write_case(name: &str, volumes: &[u64], upload: bool) {
    let sc = Write {
        name: name.into(),
        volumes: volumes.to_vec(),
        upload,
        copies: 1,
    };
    check(&sc, WRITE_POINTS);
}

#[test]
fn write_sector_into_one_volume() {
    write_case("write_sector, one volume", &[4], false);
}

#[test]
fn write_sector_into_two_volumes() {
    write_case("write_sector, two volumes", &[2, 2], false);
}

#[test]
fn upload_into_one_volume() {
    write_case("upload, one volume", &[4], true);
}

#[test]
fn upload_into_two_volumes() {
    write_case("upload, two volumes", &[2, 2], true);
}

#[test]
fn free() {
    check(&Free, FREE_POINTS);
}

#[test]
fn shrink() {
    check(&Shrink, SHRINK_POINTS);
}

#[test]
fn remove() {
    check(&Remove, REMOVE_POINTS);
}

#[test]
fn repair() {
    check(&Repair, REPAIR_POINTS);
}

#[test]
fn copies_repair() {
    check(&CopiesRepair, COPIES_POINTS);
}

#[test]
fn write_sector_with_two_copies() {
    let sc = Write {
        name: "write_sector, copies 2 on three volumes".into(),
        volumes: vec![2, 2, 2],
        upload: false,
        copies: 2,
    };
    check(&sc, WRITE_POINTS);
}

#[test]
fn upload_with_two_copies() {
    let sc = Write {
        name: "upload, copies 2 on three volumes".into(),
        volumes: vec![2, 2, 2],
        upload: true,
        copies: 2,
    };
    check(&sc, WRITE_POINTS);
}

/// A slot freed by a transaction whose punch failed stays pending and out
/// of use; when its punch fails again at the next start, it stays out of
/// use still (it was handed out to new sectors, its pending row beside it,
/// which a later reopen of the volume would punch under a new sector).
#[test]
fn a_slot_whose_punch_fails_at_open_stays_out_of_use() {
    let mut s = Store::new(&[2]);
    pin(s.engine(), 1);
    pin(s.engine(), 2);
    s.faults.inject(Some(Op::Punch), 1, Fault::Fail(libc::EIO));
    s.engine().unpin(&root(2)).unwrap();
    no_slot_leaked(s.engine(), "after a failed punch");
    let engine = s.engine.take().unwrap();
    drop(Arc::try_unwrap(engine).ok().expect("no thread holds it"));
    // every punch fails at the next start too
    s.faults.reset();
    s.faults
        .inject_from(Some(Op::Punch), 1, Fault::Fail(libc::EIO));
    let engine = Arc::new(Engine::open(s.dir.path(), options(&s.faults)).unwrap());
    assert_eq!(engine.meta().pending_punches().unwrap().len(), 1);
    no_slot_leaked(&engine, "after a start whose punch failed");
    let (root3, data3) = sector(3);
    let err = engine
        .write_sector(root3, data3, Reference::Pin)
        .unwrap_err();
    assert_eq!(err.errno(), libc::ENOSPC, "{err}");
    s.engine = Some(engine);
    // once punches work again, the slot is punched and free
    s.reopen();
    assert!(s.engine().meta().pending_punches().unwrap().is_empty());
    let freed = slot_root(&s.dir.path().join("v0.vol"), 1);
    assert_ne!(freed, Some(root(2)), "freed bytes readable");
    pin(s.engine(), 3);
    assert_stored(s.engine(), 1, true, "after the reopen");
    assert_stored(s.engine(), 3, true, "after the reopen");
    assert_slots_match(s.engine());
}

/// A volume whose every read fails is removed while its sectors keep two
/// copies: each copy it held is read from the sector's other copy instead,
/// written to the third volume, and the removal ends with no sector short
/// of a copy and none lost.
#[test]
fn a_removal_copies_from_another_copy_when_its_own_cannot_be_read() {
    quiet_crashes();
    let s = Store::new(&[4, 4, 4]);
    let engine = s.engine();
    engine.set_copies(2, 2).unwrap();
    (1..=3).for_each(|seed| pin(engine, seed));
    let ids = engine.volume_ids();
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    for seed in 1..=3 {
        let vols = copy_volumes(engine, seed);
        assert_eq!(vols, BTreeSet::from([a, b]), "fill-first: volumes a and b");
    }
    let failing = engine.volume_info(a).unwrap().path;
    s.faults.only_file(Some(&failing));
    s.faults
        .inject_from(Some(Op::Read), 1, Fault::Fail(libc::EIO));
    engine.remove_volume(a, false).unwrap();
    assert_eq!(job_outcome(&s, a), Outcome::Done);
    s.faults.reset();
    assert!(engine.volume(a).is_err(), "volume a is gone");
    for seed in 1..=3 {
        assert_stored(engine, seed, true, "after the removal");
        let vols = copy_volumes(engine, seed);
        assert_eq!(vols, BTreeSet::from([b, c]), "sector {seed}");
    }
    assert_eq!(engine.lost_sectors(), 0);
    let report = engine.check_offline(None).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// A repair stopped half way (at each of its crash points) is still due
/// after a restart, and the next pass brings every sector to two copies,
/// with no slot leaked.
#[test]
fn a_repair_stopped_half_way_resumes_after_a_restart() {
    quiet_crashes();
    for point in COPIES_POINTS {
        let mut s = Store::new(&[8, 8]);
        (1..=3).for_each(|seed| pin(s.engine(), seed));
        s.engine().set_copies(2, 2).unwrap();
        s.faults.crash_at(point, 1);
        let stopped = std::panic::catch_unwind(AssertUnwindSafe(|| s.engine().repair_now()));
        assert!(
            matches!(&stopped, Err(p) if is_crash(&**p)),
            "{point}: the repair did not stop there"
        );
        s.reopen();
        let engine = s.engine();
        assert!(
            engine.repair_due().unwrap(),
            "{point}: no repair due after the restart"
        );
        engine.repair_now().unwrap();
        assert!(!engine.repair_due().unwrap(), "{point}");
        for seed in 1..=3 {
            assert_stored(engine, seed, true, point);
            assert_eq!(copy_volumes(engine, seed).len(), 2, "{point}");
        }
        assert!(
            engine.meta().pending_punches().unwrap().is_empty(),
            "{point}"
        );
        assert_slots_match(engine);
        let report = engine.check_offline(None).unwrap();
        assert!(report.is_clean(), "{point}: {report:?}");
    }
}

/// A disk that answers EIO stays out of service while a read and a write
/// of its file fail (the health pass's probe), its sectors served from
/// their other copies meanwhile, and is back once they work.
#[test]
fn a_volume_answering_eio_stays_out_until_its_probe_works() {
    quiet_crashes();
    let s = Store::new(&[4, 4]);
    let engine = s.engine();
    engine.set_copies(2, 2).unwrap();
    pin(engine, 1);
    let ids = engine.volume_ids();
    let failing = engine.volume_info(ids[0]).unwrap().path;
    s.faults.only_file(Some(&failing));
    s.faults
        .inject_from(Some(Op::Read), 1, Fault::Fail(libc::EIO));
    // reads fail over to the other copy; three errors in a row take the
    // volume out of service
    for _ in 0..3 {
        assert_stored(engine, 1, true, "while volume 1 fails");
    }
    assert_eq!(
        engine.volume_info(ids[0]).unwrap().state,
        VolumeState::Unavailable
    );
    engine.health_pass();
    assert_eq!(
        engine.volume_info(ids[0]).unwrap().state,
        VolumeState::Unavailable,
        "the probe fails: still out of service"
    );
    assert_stored(engine, 1, true, "served from the other copy");
    s.faults.reset();
    engine.health_pass();
    assert_eq!(
        engine.volume_info(ids[0]).unwrap().state,
        VolumeState::Ready
    );
    let report = engine.check_offline(None).unwrap();
    assert!(report.is_clean(), "{report:?}");
}

/// A shrink moving a copy known to be corrupt takes its bytes from the
/// sector's good copy: the moved copy is right, and reads of it verify.
#[test]
fn a_shrink_moves_a_corrupt_copy_from_the_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        placement: Placement::FillFirst,
        default_volume_slots: 0,
        verify_reads: true,
        ..Options::default()
    };
    let engine = Arc::new(Engine::open(dir.path(), options).unwrap());
    let a = engine.add_volume(&dir.path().join("a.vol"), 8).unwrap();
    let b = engine.add_volume(&dir.path().join("b.vol"), 8).unwrap();
    engine.set_copies(2, 2).unwrap();
    (1..=5).for_each(|seed| pin(&engine, seed));
    // sector 5 sits in slot 4 of both volumes; slots 0-3 are freed
    (1..=4).for_each(|seed| engine.unpin(&root(seed)).unwrap());
    let id = engine.lookup(&root(5)).unwrap().unwrap().id;
    let in_a = |engine: &Engine| {
        engine
            .sector_copies(id)
            .unwrap()
            .into_iter()
            .find(|c| c.volume_id == a)
            .unwrap()
    };
    let before = in_a(&engine);
    assert_eq!(before.slot, 4);
    let path = engine.volume_info(a).unwrap().path;
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0xAB], 4 * SECTOR_SIZE as u64 + 99)
        .unwrap();
    // a verified read finds the bad copy, answers from the other
    assert_stored(&engine, 5, true, "with a corrupt copy in volume a");
    assert_eq!(engine.volume_info(a).unwrap().stats.corrupt, 1);
    engine.resize_volume(a, 4).unwrap();
    wait_job(&engine, a, 60);
    let after = in_a(&engine);
    assert!(after.slot < 4, "moved below the new size: {after:?}");
    assert_eq!(
        slot_root(&path, after.slot),
        Some(root(5)),
        "the moved copy is right"
    );
    let copies: Vec<u32> = engine
        .sector_copies(id)
        .unwrap()
        .iter()
        .map(|c| c.volume_id)
        .collect();
    assert_eq!(copies, [a, b], "volume a's copy is readable again, first");
    assert_eq!(
        engine.volume_info(b).unwrap().stats.reads,
        1,
        "only the first read went to b"
    );
    assert_stored(&engine, 5, true, "after the shrink");
    let report = engine.check_offline(None).unwrap();
    assert!(report.is_clean(), "{report:?}");
    engine.shutdown();
}
