//! Model-based test: random sequences of operations through a real mount —
//! sector writes (good, wrong root, short, oversized, duplicate) in
//! `/sectors` and `/temp/<h>`, `rm` of sectors, contract replace / append /
//! rename / delete (valid and refused), `ln` and `rm` of temp entries,
//! mkdir / rmdir in `/temp`, height changes, volume add and read-only, clean
//! remount and kill -9 + remount — each step checked against a small
//! in-memory model of what the spec (`interface.md`) says must be true
//! afterwards: the `/sectors` listing, every sector's bytes, `st_nlink` and
//! reference xattrs, fill-first placement, every contract's list, `/temp`,
//! the height, each volume's `used`, `slots` and `readonly`, and `df`; and
//! every refused call's errno against the model's.
//!
//! A failing case shrinks to a minimal sequence of operations (printed with
//! the seed that found it). Bounded by default; longer runs with
//! `SECTORFS_MODEL_CASES=500 SECTORFS_MODEL_OPS=100`, and a run is repeated
//! with `SECTORFS_MODEL_SEED=<seed>`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::{BoxedStrategy, Union};
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

use super::harness::{Mount, close, errno, sector, write_with, xattr};
use sectorfs::merkle::{Root, SECTOR_SIZE, sector_root};

/// Distinct sector contents a case draws from: few, so hashing stays cheap
/// and the same roots come back (dedup, EBUSY, ENOSPC, reuse of slots).
const POOL: usize = 6;
/// Contract ids a case uses: `c0`, `c1`, `c2`.
const CONTRACTS: usize = 3;
/// Slots of the default volume: small, so the store fills up.
const DEFAULT_SLOTS: u64 = 3;
/// Default cases and longest sequence per case (one mount per case).
const CASES: u32 = 32;
const OPS: usize = 40;

struct Blob {
    data: Vec<u8>,
    root: Root,
}

/// `POOL` sectors, and one more (the last) that is never stored.
fn pool() -> &'static [Blob] {
    static POOL_BLOBS: OnceLock<Vec<Blob>> = OnceLock::new();
    POOL_BLOBS.get_or_init(|| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..=POOL as u64)
                .map(|i| {
                    s.spawn(move || {
                        let data = sector(7000 + i);
                        let root = sector_root(&data);
                        Blob { data, root }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    })
}

fn root(seed: usize) -> Root {
    pool()[seed].root
}

/// A root that is never stored.
fn unknown_root() -> Root {
    pool()[POOL].root
}

/// How a sector file is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// The sector's 4 MiB under its own root.
    Good,
    /// The sector's 4 MiB under another pool sector's root: `EBADMSG`.
    WrongRoot(usize),
    /// Only the first n bytes: `EINVAL` at close.
    Short(usize),
    /// A write past 4 MiB, then the whole sector: `EFBIG`.
    Oversized,
}

impl fmt::Debug for How {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            How::Good => write!(f, "good"),
            How::WrongRoot(s) => write!(f, "named #{s}"),
            How::Short(n) => write!(f, "short {n}"),
            How::Oversized => write!(f, "oversized"),
        }
    }
}

/// A malformed or refused contract revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bad {
    NotHex,
    Uppercase,
    TrailingSpace,
    BlankLine,
    ShortRoot,
    TwoRootsOneLine,
    /// A stored-or-not pool root, then a root never stored: `ENOENT`.
    UnknownAfterGood,
    UnknownOnly,
}

impl Bad {
    const ALL: [Bad; 8] = [
        Bad::NotHex,
        Bad::Uppercase,
        Bad::TrailingSpace,
        Bad::BlankLine,
        Bad::ShortRoot,
        Bad::TwoRootsOneLine,
        Bad::UnknownAfterGood,
        Bad::UnknownOnly,
    ];

    fn text(self) -> String {
        let (a, b) = (root(0).to_string(), root(1).to_string());
        match self {
            Bad::NotHex => "nothex\n".into(),
            Bad::Uppercase => format!("{}\n", a.to_uppercase()),
            Bad::TrailingSpace => format!("{a} \n"),
            Bad::BlankLine => format!("{a}\n\n{b}\n"),
            Bad::ShortRoot => format!("{}\n", &a[..63]),
            Bad::TwoRootsOneLine => format!("{a}{b}\n"),
            Bad::UnknownAfterGood => format!("{a}\n{}\n", unknown_root()),
            Bad::UnknownOnly => format!("{}\n", unknown_root()),
        }
    }

    fn errno(self) -> i32 {
        match self {
            Bad::UnknownAfterGood | Bad::UnknownOnly => libc::ENOENT,
            _ => libc::EINVAL,
        }
    }
}

/// A pool sector: mostly one that is stored (so references to it can be
/// made), sometimes any.
#[derive(Clone, Copy)]
enum Pick {
    Stored(Index),
    Any(usize),
}

impl fmt::Debug for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // which one depends on what is stored then: failures print it
            Pick::Stored(_) => write!(f, "stored"),
            Pick::Any(s) => write!(f, "#{s}"),
        }
    }
}

fn pick_strategy() -> BoxedStrategy<Pick> {
    prop_oneof![
        3 => any::<Index>().prop_map(Pick::Stored),
        1 => (0..POOL).prop_map(Pick::Any),
    ]
    .boxed()
}

/// One operation. Heights are relative to the current one (`dh`), and
/// sectors picked among those stored at the time, so an operation keeps
/// its meaning when shrinking drops the ones before it.
#[derive(Clone, Debug)]
enum Op {
    /// create + write + close `/sectors/<root>`.
    Put { seed: usize, how: How },
    /// `rm /sectors/<root>`.
    Unpin { seed: Pick },
    /// Write the list with `O_TRUNC`.
    Replace { id: usize, seeds: Vec<Pick> },
    /// Write the list with `O_APPEND`.
    Append { id: usize, seeds: Vec<Pick> },
    /// A refused revision, with `O_APPEND` or `O_TRUNC`.
    BadRevision { id: usize, append: bool, bad: Bad },
    /// `mv /contracts/<from> /contracts/<to>`.
    Rename { from: usize, to: usize },
    /// `rm /contracts/<id>`.
    Delete { id: usize },
    /// `mkdir /temp/<h>` (if it is not there), then write `/temp/<h>/<root>`.
    TempPut { seed: Pick, dh: i64, how: How },
    /// `mkdir /temp/<h>` (if it is not there), then
    /// `ln /sectors/<root> /temp/<h>/<root>`.
    Link { seed: Pick, dh: i64 },
    /// `rm /temp/<h>/<root>`: an existing entry (`pick`) or any.
    TempUnlink {
        pick: Option<Index>,
        seed: usize,
        dh: i64,
    },
    /// `mkdir /temp/<h>`.
    Mkdir { dh: i64 },
    /// `rmdir /temp/<h>`.
    Rmdir { dh: i64 },
    /// Write `/height`.
    SetHeight { dh: i64 },
    /// `echo "<scratch>/vN.vol <slots>" > /volumes/add`.
    AddVolume { slots: u64 },
    /// Write `/volumes/<id>/readonly`.
    ReadOnly { volume: Index, on: bool },
    /// Clean unmount, then mount again.
    Remount,
    /// SIGKILL the daemon between calls, then mount again: every call that
    /// returned success is still there.
    KillRemount,
}

fn how_strategy() -> BoxedStrategy<How> {
    prop_oneof![
        6 => Just(How::Good),
        1 => (0..POOL).prop_map(How::WrongRoot),
        1 => prop::sample::select(vec![0, 1, 65_536, SECTOR_SIZE - 1]).prop_map(How::Short),
        1 => Just(How::Oversized),
    ]
    .boxed()
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let seed = || 0..POOL;
    let id = || 0..CONTRACTS;
    let seeds = || prop::collection::vec(pick_strategy(), 1..4);
    // mostly above the current height, sometimes not (EINVAL)
    let dh = || prop_oneof![1 => -1i64..=0, 4 => 1i64..=4];
    let arms: Vec<(u32, BoxedStrategy<Op>)> = vec![
        (
            10,
            (seed(), how_strategy())
                .prop_map(|(seed, how)| Op::Put { seed, how })
                .boxed(),
        ),
        (
            3,
            pick_strategy().prop_map(|seed| Op::Unpin { seed }).boxed(),
        ),
        (
            3,
            (id(), seeds())
                .prop_map(|(id, seeds)| Op::Replace { id, seeds })
                .boxed(),
        ),
        (
            3,
            (id(), seeds())
                .prop_map(|(id, seeds)| Op::Append { id, seeds })
                .boxed(),
        ),
        (
            2,
            (id(), any::<bool>(), prop::sample::select(Bad::ALL.to_vec()))
                .prop_map(|(id, append, bad)| Op::BadRevision { id, append, bad })
                .boxed(),
        ),
        (
            2,
            (id(), id())
                .prop_map(|(from, to)| Op::Rename { from, to })
                .boxed(),
        ),
        (2, id().prop_map(|id| Op::Delete { id }).boxed()),
        (
            4,
            (pick_strategy(), dh(), how_strategy())
                .prop_map(|(seed, dh, how)| Op::TempPut { seed, dh, how })
                .boxed(),
        ),
        (
            3,
            (pick_strategy(), dh())
                .prop_map(|(seed, dh)| Op::Link { seed, dh })
                .boxed(),
        ),
        (
            3,
            (prop::option::weighted(0.75, any::<Index>()), seed(), dh())
                .prop_map(|(pick, seed, dh)| Op::TempUnlink { pick, seed, dh })
                .boxed(),
        ),
        (1, dh().prop_map(|dh| Op::Mkdir { dh }).boxed()),
        (1, dh().prop_map(|dh| Op::Rmdir { dh }).boxed()),
        (3, (-2i64..=4).prop_map(|dh| Op::SetHeight { dh }).boxed()),
        (
            1,
            (1u64..=3).prop_map(|slots| Op::AddVolume { slots }).boxed(),
        ),
        (
            2,
            (any::<Index>(), prop::bool::weighted(0.4))
                .prop_map(|(volume, on)| Op::ReadOnly { volume, on })
                .boxed(),
        ),
        (1, Just(Op::Remount).boxed()),
        (1, Just(Op::KillRemount).boxed()),
    ];
    Union::new_weighted(arms)
}

#[derive(Clone, Copy, Debug)]
struct Sector {
    pin: bool,
    volume: u32,
}

#[derive(Clone, Copy, Debug)]
struct Volume {
    slots: u64,
    readonly: bool,
}

/// Where a new reference goes.
#[derive(Clone, Copy, Debug)]
enum Target {
    Pin,
    Temp(u64),
}

/// What the spec says the store holds.
#[derive(Clone, Debug)]
struct Model {
    height: u64,
    /// Stored sectors by pool index.
    sectors: BTreeMap<usize, Sector>,
    contracts: BTreeMap<String, Vec<usize>>,
    /// Temp entries: (expiry height, pool index).
    temp: BTreeSet<(u64, usize)>,
    /// `/temp/<h>` directories made with mkdir (or emptied by `rm`);
    /// heights with entries are directories too.
    temp_dirs: BTreeSet<u64>,
    volumes: BTreeMap<u32, Volume>,
}

impl Model {
    fn new() -> Model {
        Model {
            height: 0,
            sectors: BTreeMap::new(),
            contracts: BTreeMap::new(),
            temp: BTreeSet::new(),
            temp_dirs: BTreeSet::new(),
            volumes: BTreeMap::from([(
                1,
                Volume {
                    slots: DEFAULT_SLOTS,
                    readonly: false,
                },
            )]),
        }
    }

    /// The pool sector a pick names now.
    fn resolve(&self, pick: Pick) -> usize {
        match pick {
            Pick::Stored(i) if !self.sectors.is_empty() => *self
                .sectors
                .keys()
                .nth(i.index(self.sectors.len()))
                .unwrap(),
            Pick::Stored(i) => i.index(POOL),
            Pick::Any(s) => s,
        }
    }

    fn stored(&self, seed: usize) -> bool {
        self.sectors.contains_key(&seed)
    }

    /// (pin, contract entries, temp entries)
    fn refs(&self, seed: usize) -> (u64, u64, u64) {
        let pin = self.sectors.get(&seed).is_some_and(|s| s.pin) as u64;
        let contracts = self
            .contracts
            .values()
            .flatten()
            .filter(|s| **s == seed)
            .count() as u64;
        let temp = self.temp.iter().filter(|(_, s)| *s == seed).count() as u64;
        (pin, contracts, temp)
    }

    fn used(&self, volume: u32) -> u64 {
        self.sectors.values().filter(|s| s.volume == volume).count() as u64
    }

    /// Fill-first: the lowest-numbered writable volume with a free slot.
    fn place(&self) -> Option<u32> {
        self.volumes
            .iter()
            .find(|(id, v)| !v.readonly && self.used(**id) < v.slots)
            .map(|(id, _)| *id)
    }

    /// Frees every sector left without references.
    fn gc(&mut self) {
        let dead: Vec<usize> = self
            .sectors
            .keys()
            .copied()
            .filter(|s| self.refs(*s) == (0, 0, 0))
            .collect();
        for s in dead {
            self.sectors.remove(&s);
        }
    }

    fn temp_dir_exists(&self, h: u64) -> bool {
        h > self.height && (self.temp_dirs.contains(&h) || self.temp.iter().any(|(t, _)| *t == h))
    }

    fn dirs(&self) -> BTreeSet<u64> {
        let mut all = self.temp_dirs.clone();
        all.extend(self.temp.iter().map(|(h, _)| *h));
        all
    }

    /// The errnos writing a pool sector's bytes as `how` under the name of
    /// `name_seed` may end with (0: stored).
    fn write_errno(&self, name_seed: usize, how: How) -> Want {
        match how {
            How::Short(_) => Want::One(libc::EINVAL),
            How::Oversized => Want::One(libc::EFBIG),
            How::WrongRoot(_) if self.stored(name_seed) => Want::One(libc::EBADMSG),
            // bad data under a new name with no room for it: both are
            // true, and the spec does not rank them (the engine may hash
            // before or while it writes into a reserved slot)
            How::WrongRoot(_) if self.place().is_none() => {
                Want::Either(libc::EBADMSG, libc::ENOSPC)
            }
            How::WrongRoot(_) => Want::One(libc::EBADMSG),
            How::Good if self.stored(name_seed) => Want::One(0),
            How::Good if self.place().is_none() => Want::One(libc::ENOSPC),
            How::Good => Want::One(0),
        }
    }

    /// Adds a reference, storing the sector first if it is new.
    fn reference(&mut self, seed: usize, target: Target) {
        if !self.stored(seed) {
            let volume = self.place().expect("a slot, as write_errno said");
            self.sectors.insert(seed, Sector { pin: false, volume });
        }
        match target {
            Target::Pin => self.sectors.get_mut(&seed).unwrap().pin = true,
            Target::Temp(h) => {
                self.temp.insert((h, seed));
            }
        }
    }

    fn set_height(&mut self, h: u64) {
        self.height = h;
        self.temp.retain(|(t, _)| *t > h);
        self.temp_dirs.retain(|t| *t > h);
        self.gc();
    }
}

fn contract_name(id: usize) -> String {
    format!("c{id}")
}

fn list_text(seeds: &[usize]) -> String {
    seeds.iter().map(|s| format!("{}\n", root(*s))).collect()
}

fn errno_name(e: i32) -> String {
    let name = match e {
        0 => "success",
        libc::ENOENT => "ENOENT",
        libc::EINVAL => "EINVAL",
        libc::EEXIST => "EEXIST",
        libc::EBUSY => "EBUSY",
        libc::EBADMSG => "EBADMSG",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::EIO => "EIO",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EXDEV => "EXDEV",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

thread_local! {
    /// Calls refused with the errno the model expected, in this test.
    static REFUSED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The outcomes the spec allows for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    One(i32),
    Either(i32, i32),
}

impl Want {
    fn allows(self, errno: i32) -> bool {
        match self {
            Want::One(a) => a == errno,
            Want::Either(a, b) => a == errno || b == errno,
        }
    }

    fn ok(self) -> bool {
        self == Want::One(0)
    }
}

impl From<i32> for Want {
    fn from(errno: i32) -> Want {
        Want::One(errno)
    }
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Want::One(a) => f.write_str(&errno_name(*a)),
            Want::Either(a, b) => write!(f, "{} or {}", errno_name(*a), errno_name(*b)),
        }
    }
}

fn outcome(r: &std::io::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => errno(e).max(1),
    }
}

/// Fails unless `got` is what the model expects.
fn expect(
    what: &dyn fmt::Display,
    got: std::io::Result<()>,
    want: impl Into<Want>,
) -> Result<(), String> {
    let want = want.into();
    let g = outcome(&got);
    if want.allows(g) {
        if g != 0 {
            REFUSED.set(REFUSED.get() + 1);
        }
        return Ok(());
    }
    let detail = got.err().map(|e| format!(" ({e})")).unwrap_or_default();
    Err(format!(
        "{what}: got {}{detail}, the model expects {want}",
        errno_name(g),
    ))
}

/// Writes a sector file as `how` says with `seed`'s data; the outer error
/// is the harness's (a step that did not behave like one call), the inner
/// one the file system's answer.
fn write_sector_file(path: &Path, seed: usize, how: How) -> Result<std::io::Result<()>, String> {
    let data = &pool()[seed].data;
    let create = || std::fs::File::create(path);
    Ok(match how {
        How::Good | How::WrongRoot(_) => super::harness::write_file(path, data),
        How::Short(n) => (|| {
            let mut f = create()?;
            f.write_all(&data[..n])?;
            close(f)
        })(),
        How::Oversized => {
            let f = match create() {
                Ok(f) => f,
                Err(e) => return Ok(Err(e)),
            };
            let past = f.write_at(b"x", SECTOR_SIZE as u64);
            if past.as_ref().map_err(errno).err() != Some(libc::EFBIG) {
                return Err(format!(
                    "a write past 4 MiB of {}: got {past:?}, want EFBIG",
                    path.display()
                ));
            }
            if let Err(e) = f.write_all_at(data, 0) {
                return Err(format!("writing {} after EFBIG: {e}", path.display()));
            }
            close(f)
        }
    })
}

/// One case: a fresh mount and its model.
struct Case {
    m: Mount,
    model: Model,
    volume_files: u32,
}

impl Case {
    fn new() -> Case {
        let m = Mount::start(&["--default-volume", &DEFAULT_SLOTS.to_string()]);
        Case {
            m,
            model: Model::new(),
            volume_files: 0,
        }
    }

    fn temp_height(&self, dh: i64) -> u64 {
        self.model.height.saturating_add_signed(dh)
    }

    fn temp_path(&self, h: u64, seed: usize) -> PathBuf {
        self.m.path(&format!("temp/{h}/{}", root(seed)))
    }

    /// `mkdir /temp/<h>` if the model has no such directory (and `h` is
    /// valid), as a user would before writing into it.
    fn ensure_temp_dir(&mut self, h: u64) -> Result<(), String> {
        if h > self.model.height && !self.model.temp_dir_exists(h) {
            let r = std::fs::create_dir(self.m.path(&format!("temp/{h}")));
            expect(&format_args!("mkdir /temp/{h}"), r, 0)?;
            self.model.temp_dirs.insert(h);
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), String> {
        let what = format!("{op:?}");
        match op {
            Op::Put { seed, how } => {
                let name_seed = match how {
                    How::WrongRoot(o) if *o == *seed => (o + 1) % POOL,
                    How::WrongRoot(o) => *o,
                    _ => *seed,
                };
                let want = self.model.write_errno(name_seed, *how);
                let got = write_sector_file(&self.m.sector_path(&root(name_seed)), *seed, *how)?;
                expect(&what, got, want)?;
                if want.ok() {
                    self.model.reference(*seed, Target::Pin);
                }
            }
            Op::Unpin { seed } => {
                let seed = &self.model.resolve(*seed);
                let what = format!("{what} (#{seed})");
                let want = match self.model.sectors.get(seed) {
                    None => libc::ENOENT,
                    Some(s) if s.pin => 0,
                    Some(_) => libc::EBUSY,
                };
                let got = std::fs::remove_file(self.m.sector_path(&root(*seed)));
                expect(&what, got, want)?;
                if want == 0 {
                    self.model.sectors.get_mut(seed).unwrap().pin = false;
                    self.model.gc();
                }
            }
            Op::Replace { id, seeds } | Op::Append { id, seeds } => {
                let seeds: Vec<usize> = seeds.iter().map(|p| self.model.resolve(*p)).collect();
                let seeds = &seeds;
                let what = format!("{what} ({seeds:?})");
                let append = matches!(op, Op::Append { .. });
                let mut opts = std::fs::OpenOptions::new();
                opts.create(true);
                if append {
                    opts.append(true);
                } else {
                    opts.write(true).truncate(true);
                }
                let want = if seeds.iter().all(|s| self.model.stored(*s)) {
                    0
                } else {
                    libc::ENOENT
                };
                let name = contract_name(*id);
                let path = self.m.path(&format!("contracts/{name}"));
                let got = write_with(&opts, &path, list_text(seeds).as_bytes());
                expect(&what, got, want)?;
                // a contract made by this write goes again if its first
                // list is refused
                if want == 0 {
                    let list = self.model.contracts.entry(name).or_default();
                    if append {
                        list.extend(seeds);
                    } else {
                        *list = seeds.clone();
                        self.model.gc();
                    }
                }
            }
            Op::BadRevision { id, append, bad } => {
                let mut opts = std::fs::OpenOptions::new();
                opts.create(true);
                if *append {
                    opts.append(true);
                } else {
                    opts.write(true).truncate(true);
                }
                let name = contract_name(*id);
                let path = self.m.path(&format!("contracts/{name}"));
                let got = write_with(&opts, &path, bad.text().as_bytes());
                expect(&what, got, bad.errno())?;
            }
            Op::Rename { from, to } => {
                let (from, to) = (contract_name(*from), contract_name(*to));
                let want = if self.model.contracts.contains_key(&from) {
                    0
                } else {
                    libc::ENOENT
                };
                let got = std::fs::rename(
                    self.m.path(&format!("contracts/{from}")),
                    self.m.path(&format!("contracts/{to}")),
                );
                expect(&what, got, want)?;
                if want == 0 && from != to {
                    let list = self.model.contracts.remove(&from).unwrap();
                    self.model.contracts.insert(to, list);
                    self.model.gc();
                }
            }
            Op::Delete { id } => {
                let name = contract_name(*id);
                let want = if self.model.contracts.contains_key(&name) {
                    0
                } else {
                    libc::ENOENT
                };
                let got = std::fs::remove_file(self.m.path(&format!("contracts/{name}")));
                expect(&what, got, want)?;
                if want == 0 {
                    self.model.contracts.remove(&name);
                    self.model.gc();
                }
            }
            Op::TempPut { seed, dh, how } => {
                let seed = &self.model.resolve(*seed);
                let h = self.temp_height(*dh);
                let what = format!("{what} (#{seed} at /temp/{h})");
                self.ensure_temp_dir(h)?;
                let name_seed = match how {
                    How::WrongRoot(o) if *o == *seed => (o + 1) % POOL,
                    How::WrongRoot(o) => *o,
                    _ => *seed,
                };
                // /temp/<h> not above the height: refused at create
                let want = if h <= self.model.height {
                    Want::One(libc::EINVAL)
                } else {
                    self.model.write_errno(name_seed, *how)
                };
                let got = write_sector_file(&self.temp_path(h, name_seed), *seed, *how)?;
                expect(&what, got, want)?;
                if want.ok() {
                    self.model.reference(*seed, Target::Temp(h));
                }
            }
            Op::Link { seed, dh } => {
                let seed = &self.model.resolve(*seed);
                let h = self.temp_height(*dh);
                let what = format!("{what} (#{seed} at /temp/{h})");
                self.ensure_temp_dir(h)?;
                let want = if !self.model.stored(*seed) {
                    libc::ENOENT
                } else if h <= self.model.height {
                    libc::EINVAL
                } else if self.model.temp.contains(&(h, *seed)) {
                    libc::EEXIST
                } else {
                    0
                };
                let got =
                    std::fs::hard_link(self.m.sector_path(&root(*seed)), self.temp_path(h, *seed));
                expect(&what, got, want)?;
                if want == 0 {
                    self.model.reference(*seed, Target::Temp(h));
                }
            }
            Op::TempUnlink { pick, seed, dh } => {
                let entries: Vec<(u64, usize)> = self.model.temp.iter().copied().collect();
                let (h, seed) = match pick {
                    Some(i) if !entries.is_empty() => entries[i.index(entries.len())],
                    _ => (self.temp_height(*dh), *seed),
                };
                let want = if h <= self.model.height {
                    libc::EINVAL
                } else if self.model.temp.contains(&(h, seed)) {
                    0
                } else {
                    libc::ENOENT
                };
                let got = std::fs::remove_file(self.temp_path(h, seed));
                expect(&format_args!("{what} (/temp/{h}/#{seed})"), got, want)?;
                if want == 0 {
                    self.model.temp.remove(&(h, seed));
                    // the directory stays, as on any file system
                    self.model.temp_dirs.insert(h);
                    self.model.gc();
                }
            }
            Op::Mkdir { dh } => {
                let h = self.temp_height(*dh);
                let want = if h <= self.model.height {
                    libc::EINVAL
                } else if self.model.temp_dir_exists(h) {
                    libc::EEXIST
                } else {
                    0
                };
                let got = std::fs::create_dir(self.m.path(&format!("temp/{h}")));
                expect(&format_args!("{what} (/temp/{h})"), got, want)?;
                if want == 0 {
                    self.model.temp_dirs.insert(h);
                }
            }
            Op::Rmdir { dh } => {
                let h = self.temp_height(*dh);
                let want = if h <= self.model.height {
                    libc::EINVAL
                } else if !self.model.temp_dir_exists(h) {
                    libc::ENOENT
                } else if self.model.temp.iter().any(|(t, _)| *t == h) {
                    libc::ENOTEMPTY
                } else {
                    0
                };
                let got = std::fs::remove_dir(self.m.path(&format!("temp/{h}")));
                expect(&format_args!("{what} (/temp/{h})"), got, want)?;
                if want == 0 {
                    self.model.temp_dirs.remove(&h);
                }
            }
            Op::SetHeight { dh } => {
                let h = self.model.height as i64 + dh;
                let want = if h < self.model.height as i64 {
                    libc::EINVAL
                } else {
                    0
                };
                let got = self.m.write("height", &format!("{h}\n"));
                expect(&format_args!("{what} (to {h})"), got, want)?;
                if want == 0 {
                    self.model.set_height(h as u64);
                }
            }
            Op::AddVolume { slots } => {
                self.volume_files += 1;
                let path = self
                    .m
                    .scratch()
                    .join(format!("model-{}.vol", self.volume_files));
                let got = self
                    .m
                    .write("volumes/add", &format!("{} {slots}\n", path.display()));
                expect(&what, got, 0)?;
                let id = self.model.volumes.keys().max().unwrap() + 1;
                self.model.volumes.insert(
                    id,
                    Volume {
                        slots: *slots,
                        readonly: false,
                    },
                );
            }
            Op::ReadOnly { volume, on } => {
                let ids: Vec<u32> = self.model.volumes.keys().copied().collect();
                let id = ids[volume.index(ids.len())];
                let got = self.m.write(
                    &format!("volumes/{id}/readonly"),
                    if *on { "1\n" } else { "0\n" },
                );
                expect(&format_args!("{what} (volume {id})"), got, 0)?;
                self.model.volumes.get_mut(&id).unwrap().readonly = *on;
            }
            Op::Remount => {
                // everything survives, empty /temp/<h> directories too: a
                // mkdir that returned success is durable like any call
                self.m.remount();
            }
            Op::KillRemount => {
                self.m.kill();
                self.m.mount();
            }
        }
        Ok(())
    }

    /// Everything the model says must be visible through the mount.
    fn check(&self) -> Result<(), String> {
        let m = &self.m;
        let model = &self.model;
        // the listing
        let mut want: Vec<String> = model.sectors.keys().map(|s| root(*s).to_string()).collect();
        want.sort();
        let got = names(&m.path("sectors"))?;
        if got != want {
            return Err(format!("ls /sectors: {got:?}, the model has {want:?}"));
        }
        // every pool sector: bytes, nlink, xattrs; or ENOENT
        for seed in 0..POOL {
            let path = m.sector_path(&root(seed));
            let Some(s) = model.sectors.get(&seed) else {
                match std::fs::metadata(&path) {
                    Err(e) if errno(&e) == libc::ENOENT => continue,
                    other => {
                        return Err(format!(
                            "sector #{seed} is not stored, yet stat gives {other:?}"
                        ));
                    }
                }
            };
            let meta = std::fs::metadata(&path).map_err(|e| format!("stat #{seed}: {e}"))?;
            let (pin, contracts, temp) = model.refs(seed);
            if meta.len() != SECTOR_SIZE as u64 || meta.nlink() != pin + contracts + temp {
                return Err(format!(
                    "sector #{seed}: size {} nlink {}, the model has {} references \
                     (pin={pin} contracts={contracts} temp={temp})",
                    meta.len(),
                    meta.nlink(),
                    pin + contracts + temp
                ));
            }
            let refs = xattr(&path, "user.sectorfs.refs").map_err(|e| e.to_string())?;
            let want_refs = format!("pin={pin} contracts={contracts} temp={temp}");
            if refs != want_refs {
                return Err(format!("sector #{seed}: refs {refs:?}, want {want_refs:?}"));
            }
            let volume = xattr(&path, "user.sectorfs.volume").map_err(|e| e.to_string())?;
            if volume != s.volume.to_string() {
                return Err(format!(
                    "sector #{seed} is on volume {volume}, fill-first puts it on {}",
                    s.volume
                ));
            }
            let data = std::fs::read(&path).map_err(|e| format!("read #{seed}: {e}"))?;
            if data != pool()[seed].data {
                return Err(format!("sector #{seed} reads back different bytes"));
            }
        }
        // contracts
        let want: Vec<String> = model.contracts.keys().cloned().collect();
        let got = names(&m.path("contracts"))?;
        if got != want {
            return Err(format!("ls /contracts: {got:?}, the model has {want:?}"));
        }
        for (name, seeds) in &model.contracts {
            let text = std::fs::read_to_string(m.path(&format!("contracts/{name}")))
                .map_err(|e| format!("read contract {name}: {e}"))?;
            if text != list_text(seeds) {
                return Err(format!(
                    "contract {name} reads {} lines, the model has {:?}",
                    text.lines().count(),
                    seeds
                ));
            }
        }
        // height and /temp
        let height = std::fs::read_to_string(m.path("height")).map_err(|e| e.to_string())?;
        if height != format!("{}\n", model.height) {
            return Err(format!(
                "/height is {height:?}, the model has {}",
                model.height
            ));
        }
        let want: Vec<String> = {
            let mut v: Vec<String> = model.dirs().iter().map(|h| h.to_string()).collect();
            v.sort();
            v
        };
        let got = names(&m.path("temp"))?;
        if got != want {
            return Err(format!("ls /temp: {got:?}, the model has {want:?}"));
        }
        for h in model.dirs() {
            let mut want: Vec<String> = model
                .temp
                .iter()
                .filter(|(t, _)| *t == h)
                .map(|(_, s)| root(*s).to_string())
                .collect();
            want.sort();
            let got = names(&m.path(&format!("temp/{h}")))?;
            if got != want {
                return Err(format!("ls /temp/{h}: {got:?}, the model has {want:?}"));
            }
        }
        // volumes: used, slots, readonly; and df
        let mut want: Vec<String> = model.volumes.keys().map(|id| id.to_string()).collect();
        want.push("add".into());
        want.sort();
        let got = names(&m.path("volumes"))?;
        if got != want {
            return Err(format!("ls /volumes: {got:?}, the model has {want:?}"));
        }
        let (mut total, mut free) = (0, 0);
        for (id, v) in &model.volumes {
            let read = |f: &str| {
                std::fs::read_to_string(m.path(&format!("volumes/{id}/{f}")))
                    .map_err(|e| format!("read volumes/{id}/{f}: {e}"))
            };
            let used = model.used(*id);
            let got = (read("used")?, read("slots")?, read("readonly")?);
            let want = (
                format!("{used}\n"),
                format!("{}\n", v.slots),
                format!("{}\n", v.readonly as u8),
            );
            if got != want {
                return Err(format!(
                    "volume {id}: used/slots/readonly {got:?}, the model has {want:?}"
                ));
            }
            total += v.slots;
            if !v.readonly {
                free += v.slots - used;
            }
        }
        let vfs = nix::sys::statvfs::statvfs(&m.mnt).map_err(|e| format!("statvfs: {e}"))?;
        let got = (
            vfs.blocks() as u64,
            vfs.blocks_free() as u64,
            vfs.blocks_available() as u64,
            vfs.fragment_size() as u64,
        );
        if got != (total, free, free, SECTOR_SIZE as u64) {
            return Err(format!(
                "df: (blocks, bfree, bavail, frsize) {got:?}, the model has \
                 ({total}, {free}, {free}, {SECTOR_SIZE})"
            ));
        }
        Ok(())
    }
}

/// Sorted names in a directory.
fn names(dir: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("ls {}: {e}", dir.display()))? {
        let e = e.map_err(|e| format!("ls {}: {e}", dir.display()))?;
        out.push(e.file_name().into_string().unwrap());
    }
    out.sort();
    Ok(out)
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Runs `ops` on a fresh mount, checking everything after each.
fn run_case(ops: &[Op], ops_run: &AtomicU64) -> Result<(), String> {
    let mut case = Case::new();
    case.check().map_err(|e| format!("fresh mount: {e}"))?;
    for (i, op) in ops.iter().enumerate() {
        ops_run.fetch_add(1, Ordering::Relaxed);
        case.apply(op)
            .and_then(|()| case.check().map_err(|e| format!("after {op:?}: {e}")))
            .map_err(|e| {
                format!(
                    "step {} of {}: {e}\nmodel: {:?}\ndaemon log tail:\n{}",
                    i + 1,
                    ops.len(),
                    case.model,
                    log_tail(&case.m.log(), 15)
                )
            })?;
    }
    Ok(())
}

#[test]
fn operations_match_the_model() {
    let cases: u32 = env_number("SECTORFS_MODEL_CASES", CASES);
    let max_ops: usize = env_number("SECTORFS_MODEL_OPS", OPS);
    let seed: u64 = env_number("SECTORFS_MODEL_SEED", rand::random());
    let config = Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        // a shrink step is a whole mounted case: bound the time it may take
        max_shrink_time: env_number("SECTORFS_MODEL_SHRINK_SECS", 300u32) * 1000,
        ..Config::default()
    };
    pool();
    let started = Instant::now();
    let runs = AtomicU64::new(0);
    let ops_run = AtomicU64::new(0);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(op_strategy(), 1..=max_ops), |ops| {
        runs.fetch_add(1, Ordering::Relaxed);
        run_case(&ops, &ops_run).map_err(TestCaseError::fail)
    });
    let summary = format!(
        "model: {} cases, {} operations through a real mount ({} calls refused with the \
         expected errno), the whole state checked against the model after each ({:.1}s, \
         seed {seed})",
        runs.load(Ordering::Relaxed),
        ops_run.load(Ordering::Relaxed),
        REFUSED.get(),
        started.elapsed().as_secs_f64()
    );
    // not through eprintln!, which the test harness captures
    let _ = writeln!(std::io::stderr(), "{summary}");
    if let Err(e) = result {
        panic!("{e}\n{summary}\nrerun with SECTORFS_MODEL_SEED={seed}");
    }
}

/// Minimal sequences the model once found, kept as they shrank.
#[test]
fn model_regressions() {
    let ops_run = AtomicU64::new(0);
    let cases: Vec<(&str, Vec<Op>)> = vec![
        (
            "an empty /temp/<h> made with mkdir survives a clean remount",
            vec![Op::Mkdir { dh: 1 }, Op::Remount],
        ),
        (
            "an empty /temp/<h> made with mkdir survives kill -9",
            vec![Op::Mkdir { dh: 2 }, Op::KillRemount, Op::Rmdir { dh: 2 }],
        ),
        (
            "an emptied /temp/<h> stays, across a remount, until the height passes it",
            vec![
                Op::TempPut {
                    seed: Pick::Any(0),
                    dh: 3,
                    how: How::Good,
                },
                Op::TempUnlink {
                    pick: None,
                    seed: 0,
                    dh: 3,
                },
                Op::Remount,
                Op::SetHeight { dh: 3 },
                Op::Remount,
            ],
        ),
        (
            "bad data under a new name in a full store: EBADMSG or ENOSPC, nothing stored",
            vec![
                Op::Put {
                    seed: 2,
                    how: How::Good,
                },
                Op::Put {
                    seed: 1,
                    how: How::Good,
                },
                Op::Put {
                    seed: 0,
                    how: How::Good,
                },
                Op::Put {
                    seed: 0,
                    how: How::WrongRoot(3),
                },
            ],
        ),
    ];
    for (what, ops) in cases {
        if let Err(e) = run_case(&ops, &ops_run) {
            panic!("{what}: {ops:?}\n{e}");
        }
    }
}

/// The last `n` lines of the daemon's log, without colour codes.
fn log_tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
    let mut out = String::with_capacity(tail.len());
    let mut chars = tail.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
