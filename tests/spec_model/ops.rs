//! The operations a case draws, and the sectors they write.

use std::fmt;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::{BoxedStrategy, Union};
use sectorfs::merkle::{Root, SECTOR_SIZE};

/// Distinct sector contents a case draws from: few, so hashing stays cheap
/// and the same roots come back (dedup, EBUSY, ENOSPC, reuse of slots).
pub const POOL: usize = 6;
/// Contract ids a case uses: `c0`, `c1`, `c2`.
pub const CONTRACTS: usize = 3;

pub struct Blob {
    pub data: Vec<u8>,
    pub root: Root,
}

/// `POOL` sectors, and one more (the last) that is never stored.
pub fn pool() -> &'static [Blob] {
    static POOL_BLOBS: OnceLock<Vec<Blob>> = OnceLock::new();
    POOL_BLOBS.get_or_init(|| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..=POOL as u64)
                .map(|i| {
                    s.spawn(move || {
                        let (root, data) = crate::common::make_sector(7000 + i);
                        Blob { data, root }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    })
}

pub fn root(seed: usize) -> Root {
    pool()[seed].root
}

/// A root that is never stored.
pub fn unknown_root() -> Root {
    pool()[POOL].root
}

/// How a sector file is written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum How {
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

impl How {
    /// The pool sector whose root names a file of `seed`'s bytes written
    /// this way (never `seed` itself for a wrong root).
    pub fn name_seed(self, seed: usize) -> usize {
        match self {
            How::WrongRoot(o) if o == seed => (o + 1) % POOL,
            How::WrongRoot(o) => o,
            _ => seed,
        }
    }
}

/// A malformed or refused contract revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
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

    pub fn text(self) -> String {
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

    pub fn errno(self) -> i32 {
        match self {
            Bad::UnknownAfterGood | Bad::UnknownOnly => libc::ENOENT,
            _ => libc::EINVAL,
        }
    }
}

/// A pool sector: mostly one that is stored (so references to it can be
/// made), sometimes any.
#[derive(Clone, Copy)]
pub enum Pick {
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
pub enum Op {
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
    /// Write `/copies` as `<min> <max>`: min 0 or 1 (0 is refused; the
    /// model places one copy per sector, so it never asks for more; the
    /// copies tests cover those), max 0 to 3 (below min: refused).
    SetCopies { min: u32, max: u32 },
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

pub fn op_strategy() -> impl Strategy<Value = Op> {
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
        (
            1,
            (0u32..=1, 0u32..=3)
                .prop_map(|(min, max)| Op::SetCopies { min, max })
                .boxed(),
        ),
        (1, Just(Op::Remount).boxed()),
        (1, Just(Op::KillRemount).boxed()),
    ];
    Union::new_weighted(arms)
}

pub fn contract_name(id: usize) -> String {
    format!("c{id}")
}

pub fn list_text(seeds: &[usize]) -> String {
    seeds.iter().map(|s| format!("{}\n", root(*s))).collect()
}
