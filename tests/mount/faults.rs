//! Faults: SIGKILL of the daemon at random points of sector writes,
//! contract revisions, height changes and volume jobs, each followed by a
//! remount, a check of everything acknowledged and the offline consistency
//! check; a volume whose file system fills up mid-write; and the database's
//! file system turning read-only under a live daemon.
//!
//! `SECTORFS_FAULT_ROUNDS` sets the number of kills (default 20) and
//! `SECTORFS_FAULT_SEED` the seed of the random choices (printed, so a
//! failing run can be replayed).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::harness::{
    Mount, Rng, errno, offline_check, read_uncached, sector, wait_for, write_file, write_with,
};
use super::loopfs::{LoopFs, run};
use sectorfs::merkle::{Root, sector_root};

/// One call of a table of calls that must fail.
type Call<'a> = Box<dyn Fn() -> std::io::Result<()> + 'a>;

/// Detaches a mount when dropped, even when the test fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

// ------------------------------------------------------------ full disk

/// A volume on a 10 MiB tmpfs claims 16 slots (64 MiB): the file system
/// fills up in the middle of the third sector. That write fails cleanly
/// with ENOSPC (only volume) or goes to the other volume; the sectors
/// already there keep being served, and nothing else changes.
#[test]
fn a_volume_whose_file_system_fills_up_mid_write() {
    let mut m = Mount::start(&["--default-volume", "0"]);
    let small = m.scratch().join("small");
    std::fs::create_dir(&small).unwrap();
    run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=10m", "tmpfs"])
        .arg(&small));
    let guard = Unmount(small.clone());
    m.write(
        "volumes/add",
        &format!("{} 16\n", small.join("a.vol").display()),
    )
    .unwrap();
    let a1 = m.put(&sector(1));
    let a2 = m.put(&sector(2));
    write_file(&m.path("contracts/k"), format!("{a1}\n{a2}\n").as_bytes()).unwrap();
    m.write("height", "5\n").unwrap();
    let snapshot = |m: &Mount| {
        (
            m.listed(),
            m.read("contracts/k"),
            m.read("height"),
            m.read("volumes/1/used"),
            m.read("volumes/1/slots"),
            m.read("volumes/1/state"),
            m.refs(&a1),
        )
    };
    let before = snapshot(&m);
    let stored_ok = |m: &Mount, when: &str| {
        for (r, seed) in [(&a1, 1), (&a2, 2)] {
            let got = read_uncached(&m.sector_path(r))
                .unwrap_or_else(|e| panic!("{when}: read {r}: {e}"));
            assert!(got == sector(seed), "{when}: {r} differs");
        }
    };

    // the only volume: every write that does not fit fails with ENOSPC
    for seed in 3..9 {
        let e = m.try_put(&sector(seed)).unwrap_err();
        assert_eq!(errno(&e), libc::ENOSPC, "write {seed}: {e}");
        assert_eq!(snapshot(&m), before, "after write {seed}");
        stored_ok(&m, &format!("after write {seed}"));
    }
    let stats = m.read("volumes/1/stats");
    assert!(!stats.contains("write_errors 0\n"), "{stats}");
    assert!(stats.contains("read_errors 0\n"), "{stats}");
    assert!(m.log().contains("No space left on device"), "no log line");
    // the partial data was punched out again: the file system has room for
    // what is stored, and no more than a page or so of the failed writes
    let st = nix::sys::statvfs::statvfs(&small).unwrap();
    let used = (st.blocks() - st.blocks_free()) * st.fragment_size();
    assert!(used < 9 << 20, "{used} bytes used on the tmpfs");

    // with a second volume, the write goes there instead
    m.write(
        "volumes/add",
        &format!("{} 16\n", m.scratch().join("b.vol").display()),
    )
    .unwrap();
    let b: Vec<Root> = (10..14).map(|seed| m.put(&sector(seed))).collect();
    assert_eq!(m.used(1), 2);
    assert_eq!(m.used(2), b.len() as u64);
    stored_ok(&m, "after the failover");
    assert_eq!(m.read("volumes/1/state"), "ready\n");
    // freeing a sector on the full volume makes room there again
    std::fs::remove_file(m.sector_path(&a2)).unwrap();
    write_file(&m.path("contracts/k"), format!("{a1}\n").as_bytes()).unwrap();
    m.write("volumes/2/readonly", "1\n").unwrap();
    let again = m.put(&sector(20));
    assert_eq!(
        super::harness::xattr(&m.sector_path(&again), "user.sectorfs.volume").unwrap(),
        "1"
    );
    m.unmount();
    offline_check(&m, "after the full file system");
    drop(guard);
}

// ------------------------------------------------------ read-only database

#[test]
fn a_read_only_database_fails_writes_and_serves_reads() {
    let Some(fs) = LoopFs::new_or_skip() else {
        return;
    };
    let db_dir = fs.mnt.join("data");
    let mut m = Mount::start_with(&["--default-volume", "0"], |data| {
        std::fs::create_dir(&db_dir).unwrap();
        std::os::unix::fs::symlink(&db_dir, data).unwrap();
    });
    // the volume lives elsewhere: only the database goes read-only
    m.write(
        "volumes/add",
        &format!("{} 32\n", m.scratch().join("v.vol").display()),
    )
    .unwrap();
    let a = m.put(&sector(1));
    let b = m.put(&sector(2));
    write_file(&m.path("contracts/k"), format!("{a}\n{b}\n").as_bytes()).unwrap();
    std::fs::create_dir(m.path("temp/50")).unwrap();
    std::fs::hard_link(m.sector_path(&b), m.path(&format!("temp/50/{b}"))).unwrap();
    std::fs::remove_file(m.sector_path(&b)).unwrap(); // b: no pin
    m.write("height", "7\n").unwrap();
    let snapshot = |m: &Mount| {
        (
            m.listed(),
            m.read("contracts/k"),
            m.read("height"),
            m.read("volumes/1/used"),
            m.refs(&a),
            m.refs(&b),
        )
    };
    let before = snapshot(&m);

    fs.fail();
    let log_start = m.log().len();
    let c_data = sector(3);
    let c = sector_root(&c_data);
    let refusals: Vec<(&str, Call)> = vec![
        (
            "write a new sector",
            Box::new(|| m.try_put(&c_data).map(|_| ())),
        ),
        (
            "write a stored sector again (adds its pin)",
            Box::new(|| m.try_put(&sector(2)).map(|_| ())),
        ),
        (
            "replace a contract",
            Box::new(|| write_file(&m.path("contracts/k"), format!("{a}\n").as_bytes())),
        ),
        (
            "append to a contract",
            Box::new(|| {
                write_with(
                    std::fs::OpenOptions::new().append(true),
                    &m.path("contracts/k"),
                    format!("{a}\n").as_bytes(),
                )
            }),
        ),
        (
            "create a contract",
            Box::new(|| write_file(&m.path("contracts/new"), format!("{a}\n").as_bytes())),
        ),
        (
            "remove a contract",
            Box::new(|| std::fs::remove_file(m.path("contracts/k"))),
        ),
        (
            "unpin a sector",
            Box::new(|| std::fs::remove_file(m.sector_path(&a))),
        ),
        (
            "remove a temp entry",
            Box::new(|| std::fs::remove_file(m.path(&format!("temp/50/{b}")))),
        ),
        (
            "link a temp entry",
            Box::new(|| {
                std::fs::create_dir_all(m.path("temp/60"))?;
                std::fs::hard_link(m.sector_path(&a), m.path(&format!("temp/60/{a}")))
            }),
        ),
        ("set the height", Box::new(|| m.write("height", "60\n"))),
        (
            "set a volume read-only",
            Box::new(|| m.write("volumes/1/readonly", "1\n")),
        ),
        (
            "add a volume",
            Box::new(|| {
                m.write(
                    "volumes/add",
                    &format!("{} 8\n", m.scratch().join("w.vol").display()),
                )
            }),
        ),
    ];
    let mut seen = BTreeMap::new();
    for (what, op) in &refusals {
        let e = op().expect_err(what);
        assert_eq!(errno(&e), libc::EROFS, "{what}: {e}");
        *seen.entry(e.to_string()).or_insert(0) += 1;
        // reads go on, and nothing changed
        assert_eq!(snapshot(&m), before, "after: {what}");
        for (r, seed) in [(&a, 1), (&b, 2)] {
            let got = read_uncached(&m.sector_path(r)).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(got == sector(seed), "{what}: {r} differs");
        }
    }
    let log = &m.log()[log_start..];
    let says = "cannot be written, its file system is read-only";
    assert!(
        log.matches(says).count() >= refusals.len(),
        "not every refusal has a line that says the database is read-only:\n{log}"
    );
    assert!(!m.sector_path(&c).exists());
    m.read("status");
    m.read("status.json");
    m.read("metrics");
    m.read("volumes/1/stats");
    eprintln!(
        "read-only database: {} kinds of write refused ({seen:?}), reads served",
        refusals.len()
    );
    drop(refusals);

    // a clean stop even so, then the file system repaired: all still there
    m.unmount();
    fs.restore();
    m.mount();
    assert_eq!(snapshot(&m), before, "after the repair");
    for (r, seed) in [(&a, 1), (&b, 2)] {
        assert!(std::fs::read(m.sector_path(r)).unwrap() == sector(seed));
    }
    // and writes work again
    m.put(&c_data);
    m.write("height", "60\n").unwrap();
    assert_eq!(m.refs(&b), "pin=0 contracts=1 temp=0");
    m.unmount();
    offline_check(&m, "after the read-only database");
    drop(m);
    drop(fs);
}

// ------------------------------------------------------------- SIGKILL

fn fault_rounds() -> u64 {
    std::env::var("SECTORFS_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn fault_seed() -> u64 {
    std::env::var("SECTORFS_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_122)
}

/// What a round's second client does (the first always writes sectors).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Writes,
    Contracts,
    TempAndHeight,
    VolumeJobs,
}

const KINDS: [Kind; 4] = [
    Kind::Writes,
    Kind::Contracts,
    Kind::TempAndHeight,
    Kind::VolumeJobs,
];

/// One client operation through the mount.
#[derive(Clone, Debug)]
enum Op {
    /// Write a sector into /sectors (new, or stored already: adds the pin).
    Write(Root),
    Unpin(Root),
    Replace(String, Vec<Root>),
    Append(String, Vec<Root>),
    Rename(String, String),
    DeleteContract(String),
    /// Write a new sector into /temp/<height>.
    TempWrite(u64, Root),
    TempLink(u64, Root),
    TempUnlink(u64, Root),
    Height(u64),
    AddVolume(PathBuf),
    Readonly(u32, bool),
    RemoveVolume(u32),
    Shrink(u32, u64),
}

/// What one client owns and was told is done. Clients own disjoint
/// sectors (by seed), contracts (by name prefix) and, for the one that
/// uses them, temp entries and the height: so each one's view of the
/// store can be checked on its own, exactly.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    pins: BTreeSet<Root>,
    contracts: BTreeMap<String, Vec<Root>>,
    temp: BTreeSet<(u64, Root)>,
    height: u64,
}

/// A client's part of the store as it can be seen through the mount.
#[derive(Debug, Default, PartialEq)]
struct View {
    /// Every stored sector and its (pin, contract, temp) reference counts.
    stored: BTreeMap<Root, (u64, u64, u64)>,
    contracts: BTreeMap<String, Vec<Root>>,
    temp: BTreeSet<(u64, Root)>,
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write(r) => {
                self.pins.insert(*r);
            }
            Op::Unpin(r) => {
                self.pins.remove(r);
            }
            Op::Replace(n, roots) => {
                self.contracts.insert(n.clone(), roots.clone());
            }
            Op::Append(n, roots) => self
                .contracts
                .entry(n.clone())
                .or_default()
                .extend(roots.iter().copied()),
            Op::Rename(from, to) => {
                let list = self.contracts.remove(from).unwrap();
                self.contracts.insert(to.clone(), list);
            }
            Op::DeleteContract(n) => {
                self.contracts.remove(n);
            }
            Op::TempWrite(h, r) | Op::TempLink(h, r) => {
                self.temp.insert((*h, *r));
            }
            Op::TempUnlink(h, r) => {
                self.temp.remove(&(*h, *r));
            }
            Op::Height(h) => {
                self.height = *h;
                self.temp.retain(|(e, _)| e > h);
            }
            Op::AddVolume(_) | Op::Readonly(..) | Op::RemoveVolume(_) | Op::Shrink(..) => {}
        }
    }

    fn stored(&self) -> BTreeSet<Root> {
        let mut all = self.pins.clone();
        all.extend(self.contracts.values().flatten().copied());
        all.extend(self.temp.iter().map(|(_, r)| *r));
        all
    }

    fn view(&self) -> View {
        let stored = self
            .stored()
            .into_iter()
            .map(|r| {
                let contracts = self.contracts.values().flatten().filter(|x| **x == r);
                let temp = self.temp.iter().filter(|(_, x)| *x == r);
                let pin = self.pins.contains(&r) as u64;
                (r, (pin, contracts.count() as u64, temp.count() as u64))
            })
            .collect();
        View {
            stored,
            contracts: self.contracts.clone(),
            temp: self.temp.clone(),
        }
    }
}

/// Everything visible through the mount, with each sector's owner.
struct Observed {
    stored: BTreeMap<Root, (u64, u64, u64)>,
    contracts: BTreeMap<String, Vec<Root>>,
    temp: BTreeSet<(u64, Root)>,
    height: u64,
}

fn parse_root(s: &str) -> Root {
    s.parse().unwrap_or_else(|_| panic!("{s:?} is not a root"))
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn observe(m: &Mount) -> Observed {
    let stored = m
        .listed()
        .iter()
        .map(|name| {
            let r = parse_root(name);
            let refs = m.refs(&r);
            let n: Vec<u64> = refs
                .split_whitespace()
                .map(|kv| kv.split_once('=').unwrap().1.parse().unwrap())
                .collect();
            (r, (n[0], n[1], n[2]))
        })
        .collect();
    let contracts = names(&m.path("contracts"))
        .into_iter()
        .map(|c| {
            let text = m.read(&format!("contracts/{c}"));
            (c, text.lines().map(parse_root).collect())
        })
        .collect();
    let mut temp = BTreeSet::new();
    for h in names(&m.path("temp")) {
        for r in names(&m.path(&format!("temp/{h}"))) {
            temp.insert((h.parse().unwrap(), parse_root(&r)));
        }
    }
    Observed {
        stored,
        contracts,
        temp,
        height: m.read("height").trim().parse().unwrap(),
    }
}

impl Observed {
    /// Client `c`'s part: its sectors, its contracts, its temp entries.
    fn view(&self, c: &Client) -> View {
        let prefix = format!("t{}-", c.id);
        View {
            stored: self
                .stored
                .iter()
                .filter(|(r, _)| c.seeds.contains_key(r))
                .map(|(r, v)| (*r, *v))
                .collect(),
            contracts: self
                .contracts
                .iter()
                .filter(|(n, _)| n.starts_with(&prefix))
                .map(|(n, l)| (n.clone(), l.clone()))
                .collect(),
            temp: self
                .temp
                .iter()
                .filter(|(_, r)| c.seeds.contains_key(r))
                .copied()
                .collect(),
        }
    }
}

fn mkdir_ok(p: &Path) -> std::io::Result<()> {
    match std::fs::create_dir(p) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        r => r,
    }
}

fn list_text(roots: &[Root]) -> String {
    roots.iter().map(|r| format!("{r}\n")).collect()
}

fn volume_ids(m: &Mount) -> Vec<u32> {
    let mut ids: Vec<u32> = names(&m.path("volumes"))
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    ids.sort();
    ids
}

struct Client {
    id: u64,
    model: Model,
    /// Every sector this client ever made, by root.
    seeds: HashMap<Root, u64>,
    next_seed: u64,
    rng: Rng,
    /// Volume operations acknowledged this round, in order, with the id a
    /// volume added got.
    volume_ops: Vec<(Op, Option<u32>)>,
    /// Operations acknowledged, all rounds.
    acked: u64,
}

impl Client {
    fn new(id: u64, seed: u64) -> Client {
        Client {
            id,
            model: Model::default(),
            seeds: HashMap::new(),
            next_seed: 1_000_000 * (id + 1),
            rng: Rng::new(seed ^ (id + 1) << 40),
            volume_ops: Vec::new(),
            acked: 0,
        }
    }

    fn new_root(&mut self) -> Root {
        self.next_seed += 1;
        let root = sector_root(&sector(self.next_seed));
        self.seeds.insert(root, self.next_seed);
        root
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| items[self.rng.below(items.len() as u64) as usize].clone())
    }

    fn some_roots(&mut self, max: u64) -> Vec<Root> {
        let stored: Vec<Root> = self.model.stored().into_iter().collect();
        (0..self.rng.below(max + 1))
            .filter_map(|_| self.pick(&stored))
            .collect()
    }

    fn contract_name(&mut self) -> String {
        format!("t{}-c{}", self.id, self.rng.below(4))
    }

    /// The next operation of a client writing and unpinning sectors.
    fn next_write(&mut self) -> Op {
        let pins: Vec<Root> = self.model.pins.iter().copied().collect();
        if pins.len() < 6 || (pins.len() < 12 && self.rng.below(100) < 60) {
            Op::Write(self.new_root())
        } else {
            Op::Unpin(self.pick(&pins).unwrap())
        }
    }

    fn next_contract(&mut self) -> Op {
        let stored = self.model.stored();
        let pins: Vec<Root> = self.model.pins.iter().copied().collect();
        let names: Vec<String> = self.model.contracts.keys().cloned().collect();
        let p = self.rng.below(100);
        if stored.len() < 4 || (p < 15 && stored.len() < 16) {
            return Op::Write(self.new_root());
        }
        if p < 30 && pins.len() > 1 {
            // unpinned sectors live on in contracts, until a revision drops them
            return Op::Unpin(self.pick(&pins).unwrap());
        }
        if p < 35 {
            let held: Vec<Root> = stored.difference(&self.model.pins).copied().collect();
            if let Some(r) = self.pick(&held) {
                return Op::Write(r);
            }
        }
        if p < 60 || names.is_empty() {
            let n = self.contract_name();
            return Op::Replace(n, self.some_roots(5));
        }
        if p < 75 {
            let n = self.contract_name();
            return Op::Append(n, self.some_roots(3));
        }
        let from = self.pick(&names).unwrap();
        if p < 88 {
            let to = self.contract_name();
            if to != from {
                return Op::Rename(from, to);
            }
        }
        Op::DeleteContract(from)
    }

    fn next_temp(&mut self) -> Op {
        let stored: Vec<Root> = self.model.stored().into_iter().collect();
        let pins: Vec<Root> = self.model.pins.iter().copied().collect();
        let temp: Vec<(u64, Root)> = self.model.temp.iter().copied().collect();
        let h = self.model.height + 1 + self.rng.below(4);
        let p = self.rng.below(100);
        if stored.len() < 2 {
            return Op::Write(self.new_root());
        }
        if p < 30 && stored.len() < 16 {
            return Op::TempWrite(h, self.new_root());
        }
        if p < 50 {
            let r = self.pick(&stored).unwrap();
            if !self.model.temp.contains(&(h, r)) {
                return Op::TempLink(h, r);
            }
        }
        if p < 65
            && let Some((h, r)) = self.pick(&temp)
        {
            return Op::TempUnlink(h, r);
        }
        if p < 85 || stored.len() >= 16 {
            return Op::Height(self.model.height + 1 + self.rng.below(3));
        }
        if pins.len() > 2 {
            return Op::Unpin(self.pick(&pins).unwrap());
        }
        Op::Write(self.new_root())
    }

    /// Runs `op`; returns the id of a volume it added.
    fn run(&self, m: &Mount, op: &Op) -> std::io::Result<Option<u32>> {
        let data = |r: &Root| sector(self.seeds[r]);
        let contract = |n: &str| m.path(&format!("contracts/{n}"));
        let temp = |h: u64| m.path(&format!("temp/{h}"));
        match op {
            Op::Write(r) => write_file(&m.sector_path(r), &data(r))?,
            Op::Unpin(r) => std::fs::remove_file(m.sector_path(r))?,
            Op::Replace(n, roots) => write_file(&contract(n), list_text(roots).as_bytes())?,
            Op::Append(n, roots) => write_with(
                std::fs::OpenOptions::new().append(true).create(true),
                &contract(n),
                list_text(roots).as_bytes(),
            )?,
            Op::Rename(from, to) => std::fs::rename(contract(from), contract(to))?,
            Op::DeleteContract(n) => std::fs::remove_file(contract(n))?,
            Op::TempWrite(h, r) => {
                mkdir_ok(&temp(*h))?;
                write_file(&temp(*h).join(r.to_string()), &data(r))?
            }
            Op::TempLink(h, r) => {
                mkdir_ok(&temp(*h))?;
                std::fs::hard_link(m.sector_path(r), temp(*h).join(r.to_string()))?
            }
            Op::TempUnlink(h, r) => std::fs::remove_file(temp(*h).join(r.to_string()))?,
            Op::Height(h) => m.write("height", &format!("{h}\n"))?,
            Op::AddVolume(path) => {
                let before = volume_ids(m);
                m.write("volumes/add", &format!("{} 32\n", path.display()))?;
                let id = volume_ids(m).into_iter().find(|v| !before.contains(v));
                return Ok(id);
            }
            Op::Readonly(v, on) => m.write(
                &format!("volumes/{v}/readonly"),
                if *on { "1\n" } else { "0\n" },
            )?,
            Op::RemoveVolume(v) => m.write(&format!("volumes/{v}/remove"), "1\n")?,
            Op::Shrink(v, n) => m.write(&format!("volumes/{v}/slots"), &format!("{n}\n"))?,
        }
        Ok(None)
    }

    /// Runs operations until the daemon is killed. Returns the operation
    /// in flight at the kill, if any; an error before the kill fails.
    fn work(
        &mut self,
        m: &Mount,
        kind: Kind,
        round: u64,
        killing: &AtomicBool,
    ) -> Result<Option<Op>, String> {
        self.volume_ops.clear();
        // the volume script of a jobs round: a new volume gets sectors,
        // then is removed or shrunk while sectors keep coming
        let mut script: Vec<Op> = Vec::new();
        let jobs = kind == Kind::VolumeJobs && self.id == 1;
        if jobs {
            let path = m.scratch().join(format!("r{round}.vol"));
            script.push(Op::AddVolume(path));
        }
        let mut added = None;
        let mut step = 0;
        loop {
            let op = if jobs && step < 8 {
                step += 1;
                match (step, added) {
                    (1, _) => script[0].clone(),
                    (2, _) => Op::Readonly(1, true),
                    (3..=5, _) => Op::Write(self.new_root()),
                    (6, _) => Op::Readonly(1, false),
                    (7, Some(v)) if round % 8 < 4 => Op::RemoveVolume(v),
                    (7, Some(v)) => Op::Shrink(v, 2),
                    _ => self.next_write(),
                }
            } else {
                match kind {
                    Kind::Contracts if self.id == 1 => self.next_contract(),
                    Kind::TempAndHeight if self.id == 1 => self.next_temp(),
                    _ => self.next_write(),
                }
            };
            match self.run(m, &op) {
                Ok(id) => {
                    if let Some(id) = id {
                        added = Some(id);
                    }
                    if let (Op::AddVolume(_), None) = (&op, id) {
                        return Err(format!("client {}: {op:?} added no volume", self.id));
                    }
                    self.model.apply(&op);
                    self.acked += 1;
                    if matches!(
                        op,
                        Op::AddVolume(_) | Op::Readonly(..) | Op::RemoveVolume(_) | Op::Shrink(..)
                    ) {
                        self.volume_ops.push((op, id));
                    }
                }
                Err(_) if killing.load(Ordering::SeqCst) => return Ok(Some(op)),
                Err(e) => {
                    return Err(format!(
                        "client {} round {round}: {op:?} failed before the kill: {e}",
                        self.id
                    ));
                }
            }
            if killing.load(Ordering::SeqCst) {
                return Ok(None);
            }
        }
    }
}

fn diff_views(seen: &View, want: &View) -> String {
    let mut out = Vec::new();
    for (r, v) in &seen.stored {
        if want.stored.get(r) != Some(v) {
            out.push(format!(
                "sector {r}: seen refs {v:?}, model {:?}",
                want.stored.get(r)
            ));
        }
    }
    for (r, v) in &want.stored {
        if !seen.stored.contains_key(r) {
            out.push(format!("sector {r}: missing, model refs {v:?}"));
        }
    }
    for (n, l) in &seen.contracts {
        if want.contracts.get(n) != Some(l) {
            out.push(format!(
                "contract {n}: seen {l:?}, model {:?}",
                want.contracts.get(n)
            ));
        }
    }
    for n in want.contracts.keys() {
        if !seen.contracts.contains_key(n) {
            out.push(format!("contract {n}: missing"));
        }
    }
    for e in seen.temp.symmetric_difference(&want.temp) {
        out.push(format!(
            "temp entry {e:?}: seen {}, model {}",
            seen.temp.contains(e),
            want.temp.contains(e)
        ));
    }
    out.join("\n")
}

/// The end of the daemon's log (all mounts of the store), for failures.
fn log_tail(m: &Mount) -> String {
    let log = m.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(150)..].join("\n")
}

fn volume_state(m: &Mount, v: u32) -> Option<String> {
    std::fs::read_to_string(m.path(&format!("volumes/{v}/state"))).ok()
}

/// After a remount: waits for resumed jobs, checks the volume operations
/// of the round held (an acknowledged removal or shrink finishes; the one
/// in flight may or may not have happened), then brings the store back to
/// volume 1 alone, writable, for the next round.
fn settle_volumes(m: &Mount, acked: &[(Op, Option<u32>)], inflight: Option<&Op>, round: u64) {
    let busy = |m: &Mount| {
        volume_ids(m)
            .iter()
            .any(|v| volume_state(m, *v).is_some_and(|s| s != "ready\n"))
    };
    wait_for(&format!("round {round}: resumed jobs"), 120, || !busy(m));
    let ids = volume_ids(m);
    let mut readonly_1 = vec![false];
    for (op, id) in acked {
        match (op, id) {
            (Op::AddVolume(_), Some(v)) => {
                let removed = acked
                    .iter()
                    .any(|(o, _)| matches!(o, Op::RemoveVolume(x) if x == v));
                let maybe = matches!(inflight, Some(Op::RemoveVolume(x)) if x == v);
                assert!(
                    maybe || ids.contains(v) != removed,
                    "round {round}: volume {v} added{} but {}; volume ops {acked:?}, in flight \
                     {inflight:?}; the daemon's log:\n{}",
                    if removed { " and removed" } else { "" },
                    if removed { "still there" } else { "gone" },
                    log_tail(m)
                );
            }
            (Op::Readonly(1, on), _) => readonly_1 = vec![*on],
            (Op::Shrink(v, n), _) => assert_eq!(
                m.read(&format!("volumes/{v}/slots")),
                format!("{n}\n"),
                "round {round}: acknowledged shrink of volume {v}"
            ),
            _ => {}
        }
    }
    if let Some(Op::Readonly(1, on)) = inflight {
        readonly_1.push(*on);
    }
    let ro = m.read("volumes/1/readonly") == "1\n";
    assert!(
        readonly_1.contains(&ro),
        "round {round}: volume 1 read-only is {ro}, expected one of {readonly_1:?}"
    );
    // a volume nobody acknowledged is only the add in flight
    let known: Vec<u32> = acked.iter().filter_map(|(_, id)| *id).collect();
    let extra: Vec<u32> = ids
        .iter()
        .copied()
        .filter(|v| *v != 1 && !known.contains(v))
        .collect();
    assert!(
        extra.is_empty() || matches!(inflight, Some(Op::AddVolume(_))) && extra.len() == 1,
        "round {round}: unexpected volumes {extra:?}"
    );
    // back to volume 1 alone
    if ro {
        m.write("volumes/1/readonly", "0\n").unwrap();
    }
    for v in ids.into_iter().filter(|v| *v != 1) {
        m.write(&format!("volumes/{v}/remove"), "1\n").unwrap();
        wait_for(
            &format!("round {round}: removal of volume {v}"),
            120,
            || !m.path(&format!("volumes/{v}")).exists(),
        );
    }
}

#[test]
fn sigkill_at_random_points_loses_nothing_acknowledged() {
    let rounds = fault_rounds();
    let seed = fault_seed();
    eprintln!(
        "faults: {rounds} kills, seed {seed} (set SECTORFS_FAULT_ROUNDS, SECTORFS_FAULT_SEED)"
    );
    let started = Instant::now();
    let mut m = Mount::start(&["--placement", "round-robin"]);
    let mut rng = Rng::new(seed);
    let mut clients = [Client::new(0, seed), Client::new(1, seed)];
    let (mut landed, mut not_landed, mut idle, mut created_only) = (0, 0, 0, 0);
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for round in 0..rounds {
        let kind = KINDS[(round % KINDS.len() as u64) as usize];
        *by_kind.entry(format!("{kind:?}")).or_default() += 1;
        let delay = Duration::from_millis(match kind {
            Kind::VolumeJobs => 150 + rng.below(1500),
            _ => 20 + rng.below(700),
        });
        let killing = AtomicBool::new(false);
        let results: Vec<Result<Option<Op>, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = clients
                .iter_mut()
                .map(|c| {
                    let (m, killing) = (&m, &killing);
                    s.spawn(move || c.work(m, kind, round, killing))
                })
                .collect();
            std::thread::sleep(delay);
            killing.store(true, Ordering::SeqCst);
            m.signal(nix::sys::signal::Signal::SIGKILL);
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        m.kill();
        let inflight: Vec<Option<Op>> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
            .collect();
        m.mount();

        // every acknowledged operation held; the one in flight landed whole or not at all
        settle_volumes(&m, &clients[1].volume_ops, inflight[1].as_ref(), round);
        let seen = observe(&m);
        for (c, fl) in clients.iter_mut().zip(&inflight) {
            let view = seen.view(c);
            let owns_height = c.id == 1;
            let matches = |model: &Model| {
                view == model.view() && (!owns_height || seen.height == model.height)
            };
            if matches(&c.model) {
                if fl.is_some() {
                    not_landed += 1;
                } else {
                    idle += 1;
                }
                continue;
            }
            let mut with = c.model.clone();
            if let Some(op) = fl {
                with.apply(op);
                if matches(&with) {
                    c.model = with;
                    landed += 1;
                    continue;
                }
                // writing a contract that did not exist is two calls: the
                // create (an empty list, durable once open returned) and the
                // revision at close
                if let Op::Replace(n, _) | Op::Append(n, _) = op {
                    let mut created = c.model.clone();
                    created.contracts.entry(n.clone()).or_default();
                    if created != c.model && matches(&created) {
                        c.model = created;
                        created_only += 1;
                        continue;
                    }
                }
            }
            panic!(
                "round {round} ({kind:?}), client {}: the store is neither as acknowledged \
                 nor with the operation in flight ({fl:?}) applied; height {} (model {}):\n\
                 against the acknowledged state:\n{}\nagainst it with {fl:?}:\n{}",
                c.id,
                seen.height,
                c.model.height,
                diff_views(&view, &c.model.view()),
                diff_views(&view, &with.view())
            );
        }
        // every stored sector is one of ours, and its bytes verify
        for r in seen.stored.keys() {
            let seed = clients
                .iter()
                .find_map(|c| c.seeds.get(r))
                .unwrap_or_else(|| panic!("round {round}: sector {r} was never written"));
            let got = std::fs::read(m.sector_path(r)).unwrap();
            assert!(got == sector(*seed), "round {round}: sector {r} differs");
        }
        // no slot leaked or shared
        let used: u64 = volume_ids(&m).iter().map(|v| m.used(*v)).sum();
        assert_eq!(
            used,
            seen.stored.len() as u64,
            "round {round}: used slots vs stored sectors"
        );
        m.unmount();
        offline_check(&m, &format!("after kill {round}"));
        m.mount();
    }
    let acked: u64 = clients.iter().map(|c| c.acked).sum();
    let stored = m.listed().len();
    super::common::reliability::record(&format!(
        "faults: {rounds} kills survived ({by_kind:?}) in {:.1}s: {acked} operations \
         acknowledged, all held; operations in flight at a kill: {landed} landed whole, \
         {not_landed} not at all, {created_only} new contracts created but not yet written \
         ({idle} clients idle); {stored} sectors stored, all verified; offline check clean \
         after every kill",
        started.elapsed().as_secs_f64()
    ));
}
