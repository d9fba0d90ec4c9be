//! Crash test: a child process (this test binary, re-executed) writes
//! sectors, unpins them and revises contracts in a loop, printing each
//! operation before it starts and after it returned. The parent SIGKILLs it
//! at random moments, reopens the store and checks that every acknowledged
//! operation is there, that the one in flight either landed whole or not at
//! all, that every sector verifies, and that no slot is leaked or shared.
//!
//! A second run keeps two copies of every sector on three volumes, and one
//! child thread also changes the copies setting and runs repairs: after
//! every kill each sector has between two and three copies on distinct
//! volumes, each of which verifies.
//!
//! `CRASH_ROUNDS` (default 40) and `CRASH_SEED` override the number of
//! kills and the random seed (printed at the start, to replay the same
//! choices of operations and kill points).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sectorfs::engine::{ContractEdit, Engine, Options, Placement, Reference};
use sectorfs::merkle::{Root, SECTOR_SIZE, sector_root};

const THREADS: u64 = 2;
const CONTRACTS_PER_THREAD: u64 = 3;
const VOLUMES: usize = 2;
/// Volumes of a store keeping two copies of each sector.
const COPIES_VOLUMES: usize = 3;
const VOLUME_SLOTS: u64 = 64;
/// Pinned sectors a child thread keeps at most (bounds disk use).
const MAX_PINNED: usize = 10;
/// Longest contract list a child builds by appending.
const MAX_LIST: usize = 12;
/// A child that is never killed stops after this many operations per thread.
const MAX_OPS: u64 = 400;

#[path = "common/reliability.rs"]
mod reliability;
#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

fn make_sector(seed: u64) -> (Root, Vec<u8>) {
    let data = rng::noise_sector(seed);
    (sector_root(&data), data)
}

fn options() -> Options {
    Options {
        placement: Placement::RoundRobin,
        default_volume_slots: 0,
        ..Options::default()
    }
}

fn contract_name(thread: u64, k: u64) -> String {
    format!("t{thread}-c{k}")
}

fn roots_text(roots: &[Root]) -> String {
    if roots.is_empty() {
        return "-".into();
    }
    roots
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

// ------------------------------------------------------------------ child

/// One line to the parent, written and flushed whole.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {line}").unwrap();
    out.flush().unwrap();
}

/// Stops the child on an error the parent must see.
fn die(msg: String) -> ! {
    say(&format!("error {msg}"));
    std::process::exit(3);
}

/// The child process of `crash_recovery`: does nothing unless re-executed
/// by it (so a plain run counts it as passed, not skipped).
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("SECTORFS_CRASH_DIR") else {
        return;
    };
    let round: u64 = std::env::var("SECTORFS_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let seed: u64 = std::env::var("SECTORFS_CRASH_SEED")
        .unwrap()
        .parse()
        .unwrap();
    let copies = std::env::var_os("SECTORFS_CRASH_COPIES").is_some();
    let dir = Path::new(&dir);
    let engine = Engine::open(dir, options()).unwrap_or_else(|e| die(format!("open: {e}")));
    // a kill during an earlier add may have left a file without a row, so
    // each round names its volumes afresh
    let volumes = if copies { COPIES_VOLUMES } else { VOLUMES };
    for i in engine.volume_ids().len()..volumes {
        let path = dir.join(format!("r{round}-v{i}.vol"));
        engine
            .add_volume(&path, VOLUME_SLOTS)
            .unwrap_or_else(|e| die(format!("add volume: {e}")));
    }
    if copies && engine.copies_setting().min < 2 {
        engine
            .set_copies(2, 2)
            .unwrap_or_else(|e| die(format!("copies: {e}")));
    }
    // Each thread owns the pins of the sectors whose id has its parity, so
    // no two threads ever race on one pin or one contract, and a thread's
    // contracts only name sectors it has pinned (which nobody else frees).
    let mut owned: Vec<Vec<Root>> = vec![Vec::new(); THREADS as usize];
    for row in engine.list_sectors(0, 1 << 20).unwrap() {
        if engine.ref_counts(row.id).unwrap().pins > 0 {
            owned[(row.id as u64 % THREADS) as usize].push(row.root);
        }
    }
    say("ready");
    std::thread::scope(|scope| {
        for (t, pinned) in owned.into_iter().enumerate() {
            let engine = &engine;
            let mut rng = Rng::new(seed ^ ((t as u64 + 1) << 48));
            scope.spawn(move || child_thread(engine, round, t as u64, pinned, copies, &mut rng));
        }
    });
}

fn child_thread(
    engine: &Engine,
    round: u64,
    t: u64,
    mut pinned: Vec<Root>,
    copies: bool,
    rng: &mut Rng,
) {
    for n in 0..MAX_OPS {
        let p = rng.below(100);
        // one thread changes the copies and repairs (one repair at a time,
        // as in the mount)
        if copies && t == 0 && p < 10 {
            let max = 2 + rng.below(2) as u32;
            say(&format!("begin {t} C {max}"));
            engine
                .set_copies(2, max)
                .and_then(|()| engine.repair_now())
                .unwrap_or_else(|e| die(format!("copies 2 {max}: {e}")));
        } else if pinned.is_empty() || (p < 45 && pinned.len() < MAX_PINNED) {
            let (root, data) = make_sector((round << 32) | (t << 24) | n);
            say(&format!("begin {t} W {root}"));
            match engine.write_sector(&root, &data, Reference::Pin) {
                Ok(_) => pinned.push(root),
                Err(e) => die(format!("write {root}: {e}")),
            }
        } else if p < 65 {
            let root = pinned.swap_remove(rng.below(pinned.len() as u64) as usize);
            say(&format!("begin {t} U {root}"));
            if let Err(e) = engine.unpin(&root) {
                die(format!("unpin {root}: {e}"));
            }
        } else {
            let name = contract_name(t, rng.below(CONTRACTS_PER_THREAD));
            let q = rng.below(100);
            let len = engine
                .contract_roots(&name)
                .unwrap_or_else(|e| die(format!("read {name}: {e}")))
                .map_or(0, |l| l.len());
            if q < 15 {
                say(&format!("begin {t} D {name}"));
                match engine.delete_contract(&name) {
                    Ok(()) => {}
                    Err(e) if e.errno() == libc::ENOENT => {
                        say(&format!("fail {t} {}", e.errno()));
                        continue;
                    }
                    Err(e) => die(format!("delete {name}: {e}")),
                }
            } else {
                let append = q < 45 && len < MAX_LIST;
                let count = if append {
                    1 + rng.below(3)
                } else {
                    rng.below(7)
                };
                let roots: Vec<Root> = (0..count)
                    .map(|_| pinned[rng.below(pinned.len() as u64) as usize])
                    .collect();
                let (tag, edit) = if append {
                    ("A", ContractEdit::Append)
                } else {
                    ("R", ContractEdit::Replace)
                };
                say(&format!("begin {t} {tag} {name} {}", roots_text(&roots)));
                if let Err(e) = engine.revise_contract(&name, &roots, edit) {
                    die(format!("revise {name}: {e}"));
                }
            }
        }
        say(&format!("ok {t}"));
    }
}

// ----------------------------------------------------------------- parent

#[derive(Debug, Clone)]
enum Op {
    Write(Root),
    Unpin(Root),
    Replace(String, Vec<Root>),
    Append(String, Vec<Root>),
    Delete(String),
    /// Copies set to 2 and a max of 2 or 3, then a repair.
    Copies,
}

impl Op {
    fn parse(words: &[&str]) -> Op {
        let roots = |s: &str| -> Vec<Root> {
            if s == "-" {
                return Vec::new();
            }
            s.split(',').map(|r| r.parse().unwrap()).collect()
        };
        match words {
            ["W", r] => Op::Write(r.parse().unwrap()),
            ["U", r] => Op::Unpin(r.parse().unwrap()),
            ["R", n, rs] => Op::Replace(n.to_string(), roots(rs)),
            ["A", n, rs] => Op::Append(n.to_string(), roots(rs)),
            ["D", n] => Op::Delete(n.to_string()),
            ["C", _max] => Op::Copies,
            _ => panic!("unknown operation {words:?}"),
        }
    }

    fn contract(&self) -> Option<&str> {
        match self {
            Op::Replace(n, _) | Op::Append(n, _) | Op::Delete(n) => Some(n),
            _ => None,
        }
    }
}

/// What the parent knows was acknowledged.
#[derive(Debug, Default)]
struct Model {
    pinned: HashSet<Root>,
    contracts: HashMap<String, Vec<Root>>,
}

impl Model {
    /// The contract's list after `op`, from `before`.
    fn contract_after(before: Option<&Vec<Root>>, op: &Op) -> Option<Vec<Root>> {
        match op {
            Op::Replace(_, roots) => Some(roots.clone()),
            Op::Append(_, roots) => {
                let mut list = before.cloned().unwrap_or_default();
                list.extend(roots);
                Some(list)
            }
            Op::Delete(_) => None,
            _ => before.cloned(),
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write(r) => {
                self.pinned.insert(*r);
            }
            Op::Unpin(r) => {
                self.pinned.remove(r);
            }
            Op::Replace(n, _) | Op::Append(n, _) | Op::Delete(n) => {
                match Model::contract_after(self.contracts.get(n), op) {
                    Some(list) => self.contracts.insert(n.clone(), list),
                    None => self.contracts.remove(n),
                };
            }
            Op::Copies => {}
        }
    }
}

/// How the round's kill is timed.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// This long after the spawn (may land while the store opens).
    AfterSpawn(Duration),
    /// This long after the n-th acknowledged operation.
    AfterAcks(u64, Duration),
}

struct RoundResult {
    acked: u64,
    in_flight: HashMap<u64, Op>,
    killed: bool,
}

fn run_child(
    dir: &Path,
    round: u64,
    seed: u64,
    kill: Kill,
    copies: bool,
    model: &mut Model,
) -> RoundResult {
    let mut child = Command::new(std::env::current_exe().unwrap());
    if copies {
        child.env("SECTORFS_CRASH_COPIES", "1");
    }
    let mut child = child
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("SECTORFS_CRASH_DIR", dir)
        .env("SECTORFS_CRASH_ROUND", round.to_string())
        .env("SECTORFS_CRASH_SEED", seed.to_string())
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child");
    let pid = child.id() as libc::pid_t;
    // The child is reaped only after the killer is joined, so the pid
    // cannot be reused while the killer may still signal it.
    let killer = |delay: Duration| {
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            // SAFETY: signals our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        })
    };
    let mut killers = Vec::new();
    if let Kill::AfterSpawn(d) = kill {
        killers.push(killer(d));
    }
    let mut in_flight: HashMap<u64, Op> = HashMap::new();
    let mut acked = 0;
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("@@ ") else {
            continue;
        };
        let words: Vec<&str> = rest.split(' ').collect();
        match words[..] {
            ["ready"] => {}
            ["begin", t, ..] => {
                let op = Op::parse(&words[2..]);
                let before = in_flight.insert(t.parse().unwrap(), op);
                assert!(before.is_none(), "thread {t} began twice");
            }
            ["ok", t] => {
                let op = in_flight
                    .remove(&t.parse().unwrap())
                    .expect("an op in flight");
                model.apply(&op);
                acked += 1;
                if let Kill::AfterAcks(n, d) = kill
                    && acked == n
                {
                    killers.push(killer(d));
                }
            }
            ["fail", t, errno] => {
                let op = in_flight
                    .remove(&t.parse().unwrap())
                    .expect("an op in flight");
                assert!(
                    matches!(op, Op::Delete(_)) && errno == libc::ENOENT.to_string(),
                    "only deleting a contract that does not exist may fail: {op:?} {errno}"
                );
            }
            _ => panic!("round {round}: the child reported: {rest}"),
        }
    }
    for k in killers {
        k.join().unwrap();
    }
    let status = child.wait().unwrap();
    let killed = status.signal() == Some(libc::SIGKILL);
    assert!(
        killed || status.success(),
        "round {round}: the child failed: {status}"
    );
    RoundResult {
        acked,
        in_flight,
        killed,
    }
}

/// Where each verified sector lived, so its slot can be checked once it is
/// freed.
type Verified = HashMap<Root, (u32, u64)>;

/// Reopens the store after a kill and checks it against the model and the
/// operations that were in flight; then makes the model what was found.
fn check_after_kill(
    dir: &Path,
    round: u64,
    model: &mut Model,
    in_flight: &HashMap<u64, Op>,
    verified: &mut Verified,
    verify_all: bool,
    copies: bool,
) {
    let engine = Engine::open(dir, options()).expect("reopen after the kill");
    let ctx = format!("round {round}, in flight {in_flight:?}");

    // nothing leaked, nothing double-owned, no punch left undone
    let rows = engine.list_sectors(0, 1 << 20).unwrap();
    let all: Vec<_> = rows
        .iter()
        .flat_map(|r| engine.sector_copies(r.id).unwrap())
        .collect();
    let used: u64 = engine.volume_infos().iter().map(|v| v.used).sum();
    assert_eq!(
        used,
        all.len() as u64,
        "{ctx}: slots used and copies differ"
    );
    assert!(engine.meta().pending_punches().unwrap().is_empty(), "{ctx}");
    let places: HashSet<(u32, u64)> = all.iter().map(|r| (r.volume_id, r.slot)).collect();
    assert_eq!(places.len(), all.len(), "{ctx}: a slot owned twice");
    assert!(
        engine.meta().consistency_problems().unwrap().is_empty(),
        "{ctx}: {:?}",
        engine.meta().consistency_problems()
    );
    // the aggregates were kept by the transactions that committed, none
    // lost with the process: a recount agrees (passes due run first)
    let differences = engine.recount_aggregates().unwrap();
    assert!(differences.is_empty(), "{ctx}: {differences:#?}");
    // with copies: two or three, on distinct volumes, each verifying
    if copies {
        for r in &rows {
            let mine: Vec<_> = all.iter().filter(|c| c.id == r.id).collect();
            assert!(
                (2..=3).contains(&mine.len()),
                "{ctx}: sector {} has {} copies",
                r.root,
                mine.len()
            );
            let vols: HashSet<u32> = mine.iter().map(|c| c.volume_id).collect();
            assert_eq!(vols.len(), mine.len(), "{ctx}: two copies on one volume");
            for c in mine {
                let info = engine.volume_info(c.volume_id).unwrap();
                let file = std::fs::File::open(&info.path).unwrap();
                let mut buf = vec![0u8; SECTOR_SIZE];
                file.read_exact_at(&mut buf, c.slot * SECTOR_SIZE as u64)
                    .unwrap();
                assert_eq!(
                    sector_root(&buf),
                    r.root,
                    "{ctx}: the copy in volume {} slot {} does not verify",
                    c.volume_id,
                    c.slot
                );
            }
        }
    }
    let slots: HashMap<u32, u64> = engine
        .volume_infos()
        .iter()
        .map(|v| (v.id, v.slots))
        .collect();

    // pins: every acknowledged pin is there unless its unpin was in flight;
    // no pin is there unless acknowledged or its write was in flight
    let writing: HashSet<Root> = in_flight
        .values()
        .filter_map(|op| match op {
            Op::Write(r) => Some(*r),
            _ => None,
        })
        .collect();
    let unpinning: HashSet<Root> = in_flight
        .values()
        .filter_map(|op| match op {
            Op::Unpin(r) => Some(*r),
            _ => None,
        })
        .collect();
    let mut pinned = HashSet::new();
    for row in &rows {
        let refs = engine.ref_counts(row.id).unwrap();
        assert!(
            refs.total() > 0,
            "{ctx}: {} stored with no reference",
            row.root
        );
        assert_eq!(refs.temp, 0, "{ctx}");
        assert!(row.slot < slots[&row.volume_id], "{ctx}");
        if refs.pins > 0 {
            pinned.insert(row.root);
        }
    }
    for r in &model.pinned {
        assert!(
            pinned.contains(r) || unpinning.contains(r),
            "{ctx}: acknowledged write {r} lost"
        );
    }
    for r in &pinned {
        assert!(
            model.pinned.contains(r) || writing.contains(r),
            "{ctx}: {r} pinned without being acknowledged or in flight"
        );
    }

    // contracts: the acknowledged list, or the one in flight
    let mut names: BTreeSet<String> = model.contracts.keys().cloned().collect();
    names.extend(
        in_flight
            .values()
            .filter_map(|op| op.contract().map(String::from)),
    );
    names.extend(engine.list_contracts().unwrap().into_iter().map(|c| c.name));
    let mut contracts = HashMap::new();
    for name in names {
        let actual = engine.contract_roots(&name).unwrap();
        let acked = model.contracts.get(&name).cloned();
        let op = in_flight.values().find(|op| op.contract() == Some(&name));
        let landed = op.map(|op| Model::contract_after(model.contracts.get(&name), op));
        assert!(
            actual == acked || Some(&actual) == landed.as_ref(),
            "{ctx}: contract {name} is {actual:?}, acknowledged {acked:?}, in flight {landed:?}"
        );
        if let Some(list) = actual {
            contracts.insert(name, list);
        }
    }

    // a freed sector's bytes cannot be read back from its old slot
    let stored: HashSet<Root> = rows.iter().map(|r| r.root).collect();
    let gone: Vec<(Root, (u32, u64))> = verified
        .iter()
        .filter(|(r, _)| !stored.contains(r))
        .map(|(r, at)| (*r, *at))
        .collect();
    for (root, (vol, slot)) in gone {
        verified.remove(&root);
        let Ok(info) = engine.volume_info(vol) else {
            continue;
        };
        let file = std::fs::File::open(&info.path).unwrap();
        let mut buf = vec![0u8; SECTOR_SIZE];
        file.read_exact_at(&mut buf, slot * SECTOR_SIZE as u64)
            .unwrap();
        assert_ne!(
            sector_root(&buf),
            root,
            "{ctx}: freed {root} still readable"
        );
    }

    // every stored sector verifies (each new one once, all at the end)
    for row in &rows {
        let at = (row.volume_id, row.slot);
        if !verify_all && verified.get(&row.root) == Some(&at) {
            continue;
        }
        let mut buf = vec![0u8; SECTOR_SIZE];
        engine
            .read_sector(&row.root, 0, &mut buf)
            .unwrap_or_else(|e| panic!("{ctx}: read {}: {e}", row.root));
        assert_eq!(sector_root(&buf), row.root, "{ctx}: sector does not verify");
        verified.insert(row.root, at);
    }

    model.pinned = pinned;
    model.contracts = contracts;
}

#[test]
fn crash_recovery() {
    crash_rounds("crash_recovery", false, 40);
}

#[test]
fn crash_recovery_with_copies() {
    crash_rounds("crash_recovery_with_copies", true, 20);
}

fn crash_rounds(name: &str, copies: bool, default_rounds: u64) {
    let rounds: u64 = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_rounds);
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("{name}: CRASH_SEED={seed} CRASH_ROUNDS={rounds}");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let mut verified = Verified::new();
    let (mut total_acked, mut kills, mut mid_op) = (0, 0, 0);
    let started = Instant::now();
    for round in 0..rounds {
        let kill = if rng.below(4) == 0 {
            Kill::AfterSpawn(Duration::from_millis(rng.below(120)))
        } else {
            let delay = Duration::from_micros(rng.below(25_000));
            Kill::AfterAcks(1 + rng.below(16), delay)
        };
        let result = run_child(dir.path(), round, rng.next(), kill, copies, &mut model);
        total_acked += result.acked;
        kills += u64::from(result.killed);
        mid_op += u64::from(!result.in_flight.is_empty());
        check_after_kill(
            dir.path(),
            round,
            &mut model,
            &result.in_flight,
            &mut verified,
            round + 1 == rounds,
            copies,
        );
    }
    reliability::record(&format!(
        "{name}: {rounds} rounds, {kills} kills ({mid_op} with an operation in flight), \
         {total_acked} acknowledged operations, {} sectors stored at the end, {:.1} s",
        verified.len(),
        started.elapsed().as_secs_f64()
    ));
    assert!(total_acked > rounds, "the children did real work");
    assert!(kills > rounds / 2, "most rounds ended in a kill");
}
