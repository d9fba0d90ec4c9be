//! Engine integration tests through the public API: round trips, dedup,
//! references, persistence, the data-dir lock, concurrency, placement and
//! errnos.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sectorfs::engine::{
    ContractEdit, Engine, MAX_TEMP_HEIGHT, Options, Placement, RefCounts, Reference,
};
use sectorfs::error::Error;
use sectorfs::merkle::{Root, SECTOR_SIZE};

mod common;
use common::make_sector;

// ---------------------------------------------------------------- helpers

use common::cached_sector as sector;

fn root(seed: u64) -> Root {
    sector(seed).0
}

fn options(placement: Placement) -> Options {
    Options {
        placement,
        default_volume_slots: 0,
        ..Options::default()
    }
}

fn open(dir: &Path, placement: Placement) -> Engine {
    Engine::open(dir, options(placement)).expect("open the engine")
}

/// Adds one volume file per entry of `slots`, named `v<i>.vol` in `dir`.
fn add_volumes(engine: &Engine, dir: &Path, slots: &[u64]) -> Vec<u32> {
    slots
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let path = dir.join(format!("v{i}.vol"));
            engine.add_volume(&path, n).expect("add a volume")
        })
        .collect()
}

/// A fresh store with volumes of the given sizes.
fn store(placement: Placement, slots: &[u64]) -> (tempfile::TempDir, Engine, Vec<u32>) {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), placement);
    let ids = add_volumes(&engine, dir.path(), slots);
    (dir, engine, ids)
}

fn write(engine: &Engine, seed: u64, reference: Reference) -> sectorfs::error::Result<bool> {
    let (root, data) = sector(seed);
    engine.write_sector(root, data, reference).map(|s| s.new)
}

fn pin(engine: &Engine, seed: u64) {
    write(engine, seed, Reference::Pin).expect("write a sector");
}

fn read_whole(engine: &Engine, root: &Root) -> Vec<u8> {
    let mut buf = vec![0u8; SECTOR_SIZE];
    engine
        .read_sector(root, 0, &mut buf)
        .expect("read a sector");
    buf
}

/// Reads the sector back and checks it is the seed's data (and so hashes
/// to its root).
fn assert_reads_back(engine: &Engine, seed: u64) {
    let (root, data) = sector(seed);
    assert!(
        read_whole(engine, root) == *data,
        "sector {root} reads back"
    );
}

/// The volume a stored sector lives in.
fn volume_of(engine: &Engine, seed: u64) -> u32 {
    engine
        .lookup(&root(seed))
        .unwrap()
        .expect("stored")
        .volume_id
}

fn refs(engine: &Engine, seed: u64) -> Option<RefCounts> {
    let row = engine.lookup(&root(seed)).unwrap()?;
    Some(engine.ref_counts(row.id).unwrap())
}

fn counts(pins: u64, contracts: u64, temp: u64) -> RefCounts {
    RefCounts {
        pins,
        contracts,
        temp,
    }
}

/// Occupied slots (the allocator's view) equal stored sectors (the
/// database's view), and no two sectors share a slot.
fn assert_consistent(engine: &Engine) {
    let used: u64 = engine.volume_infos().iter().map(|v| v.used).sum();
    let stored = engine.meta().count_sectors().unwrap();
    assert_eq!(used, stored, "occupied slots equal stored sectors");
    let rows = engine.list_sectors(0, usize::MAX >> 1).unwrap();
    let places: HashSet<(u32, u64)> = rows.iter().map(|r| (r.volume_id, r.slot)).collect();
    assert_eq!(places.len(), rows.len(), "no slot is owned twice");
    for r in &rows {
        let refs = engine.ref_counts(r.id).unwrap();
        assert!(
            refs.total() > 0,
            "sector {} is stored with no reference",
            r.root
        );
    }
}

/// The bytes of `slot` read straight from a volume file.
fn slot_bytes(path: &Path, slot: u64) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; SECTOR_SIZE];
    file.read_exact_at(&mut buf, slot * SECTOR_SIZE as u64)
        .unwrap();
    buf
}

fn volume_path(engine: &Engine, id: u32) -> PathBuf {
    engine.volume_info(id).unwrap().path
}

fn errno<T: std::fmt::Debug>(r: sectorfs::error::Result<T>) -> i32 {
    r.expect_err("the call should fail").errno()
}

// ----------------------------------------------------------- round trips

#[test]
fn many_sectors_round_trip_across_volumes() {
    let (_dir, engine, ids) = store(Placement::RoundRobin, &[4, 4, 4]);
    let seeds: Vec<u64> = (100..112).collect();
    for &s in &seeds {
        assert!(write(&engine, s, Reference::Pin).unwrap(), "a new sector");
    }
    for &s in &seeds {
        assert_reads_back(&engine, s);
    }
    // a range inside a sector, and one that runs past its end
    let (r3, data) = sector(seeds[3]);
    let mut part = vec![0u8; 1000];
    engine.read_sector(r3, 4096 + 7, &mut part).unwrap();
    assert_eq!(part, data[4096 + 7..4096 + 7 + 1000]);
    let mut past = vec![0u8; 2];
    assert_eq!(
        errno(engine.read_sector(r3, SECTOR_SIZE as u64 - 1, &mut past)),
        libc::EINVAL
    );
    assert_eq!(
        errno(engine.read_sector(r3, u64::MAX - 1, &mut past)),
        libc::EINVAL,
        "an offset near u64::MAX does not wrap around"
    );
    for info in engine.volume_infos() {
        assert!(ids.contains(&info.id));
        assert_eq!((info.slots, info.used), (4, 4), "volume {}", info.id);
        assert_eq!(info.stats.writes, 4);
        assert!(info.stats.reads >= 4);
    }
    // every sector is where its row says, byte for byte in the volume file
    for &s in &seeds {
        let row = engine.lookup(&root(s)).unwrap().unwrap();
        let on_disk = slot_bytes(&volume_path(&engine, row.volume_id), row.slot);
        assert!(on_disk == sector(s).1, "sector {} in its slot", row.root);
    }
    let listed: HashSet<Root> = engine
        .list_sectors(0, 100)
        .unwrap()
        .iter()
        .map(|r| r.root)
        .collect();
    assert_eq!(listed, seeds.iter().map(|&s| root(s)).collect());
    assert_consistent(&engine);
}

#[test]
fn default_volume_is_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        default_volume_slots: 3,
        ..Options::default()
    };
    let engine = Engine::open(dir.path(), opts.clone()).unwrap();
    let infos = engine.volume_infos();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].slots, 3);
    assert_eq!(infos[0].path, dir.path().join("volumes/default.vol"));
    let len = std::fs::metadata(&infos[0].path).unwrap().len();
    assert_eq!(len, 3 * SECTOR_SIZE as u64);
    pin(&engine, 1);
    drop(engine);
    let engine = Engine::open(dir.path(), opts).unwrap();
    assert_eq!(engine.volume_infos().len(), 1, "no second default volume");
    assert_reads_back(&engine, 1);
}

#[test]
fn dedup_writes_nothing_and_adds_one_reference() {
    let (_dir, engine, ids) = store(Placement::FillFirst, &[4]);
    let stored = engine.write_sector(&root(1), &sector(1).1, Reference::Temp(10));
    let first = stored.unwrap();
    assert!(first.new);
    let before = engine.volume_info(ids[0]).unwrap();
    assert_eq!(before.used, 1);

    let second = engine
        .write_sector(&root(1), &sector(1).1, Reference::Pin)
        .unwrap();
    assert!(!second.new, "a second write of a root is not new");
    assert_eq!(second.sector_id, first.sector_id);
    let after = engine.volume_info(ids[0]).unwrap();
    assert_eq!(after.used, 1, "no second copy");
    assert_eq!(after.stats.writes, before.stats.writes, "no data written");
    assert_eq!(refs(&engine, 1), Some(counts(1, 0, 1)), "one pin added");

    // a pin is a flag: pinning again adds nothing; a new temp height adds one
    assert!(!write(&engine, 1, Reference::Pin).unwrap());
    assert_eq!(refs(&engine, 1), Some(counts(1, 0, 1)));
    assert!(!write(&engine, 1, Reference::Temp(11)).unwrap());
    assert_eq!(refs(&engine, 1), Some(counts(1, 0, 2)));
    assert_eq!(engine.volume_info(ids[0]).unwrap().used, 1);
    assert_consistent(&engine);
}

// ------------------------------------------------------------ references

#[derive(Debug, Clone, Copy)]
enum Op {
    Write(u64, Reference),
    AddRef(u64, Reference),
    Unpin(u64),
    Revise(&'static str, &'static [u64], ContractEdit),
    /// (from, to, replace an existing `to`)
    Rename(&'static str, &'static str, bool),
    Delete(&'static str),
    RemoveTemp(u64, u64),
    Height(u64),
}

const A: u64 = 1;
const B: u64 = 2;
const OK: i32 = 0;

/// (pins, contract entries, temp entries)
type Counts = (u64, u64, u64);

struct Case {
    name: &'static str,
    /// Each operation with the errno it must fail with (`OK`: succeeds).
    steps: &'static [(Op, i32)],
    /// Each sector's references at the end; `None`: not stored.
    end: &'static [(u64, Option<Counts>)],
}

fn apply(engine: &Engine, op: Op) -> sectorfs::error::Result<()> {
    match op {
        Op::Write(s, r) => write(engine, s, r).map(|_| ()),
        Op::AddRef(s, r) => engine.add_reference(&root(s), r),
        Op::Unpin(s) => engine.unpin(&root(s)),
        Op::Revise(name, seeds, edit) => {
            let roots: Vec<Root> = seeds.iter().map(|&s| root(s)).collect();
            engine.revise_contract(name, &roots, edit)
        }
        Op::Rename(from, to, replace) => engine.rename_contract(from, to, replace),
        Op::Delete(name) => engine.delete_contract(name),
        Op::RemoveTemp(s, h) => engine.remove_temp(h, &root(s)),
        Op::Height(h) => engine.set_height(h),
    }
}

/// Everything a reference operation could change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    sectors: Vec<Option<(u32, u64, RefCounts)>>,
    contracts: BTreeMap<String, Vec<Root>>,
    height: u64,
    temp: Vec<u64>,
}

fn snapshot(engine: &Engine) -> Snapshot {
    let sectors = [A, B]
        .iter()
        .map(|&s| {
            let row = engine.lookup(&root(s)).unwrap()?;
            Some((row.volume_id, row.slot, engine.ref_counts(row.id).unwrap()))
        })
        .collect();
    let contracts = engine
        .list_contracts()
        .unwrap()
        .into_iter()
        .map(|c| {
            let roots = engine.contract_roots(&c.name).unwrap().unwrap();
            (c.name, roots)
        })
        .collect();
    Snapshot {
        sectors,
        contracts,
        height: engine.height().unwrap(),
        temp: engine.temp_heights().unwrap(),
    }
}

#[test]
fn reference_cases() {
    use ContractEdit::{Append, Replace};
    use Op::*;
    use Reference::{Pin, Temp};
    let cases = [
        Case {
            name: "pin alone",
            steps: &[(Write(A, Pin), OK)],
            end: &[(A, Some((1, 0, 0)))],
        },
        Case {
            name: "pinning twice is one pin",
            steps: &[(Write(A, Pin), OK), (AddRef(A, Pin), OK)],
            end: &[(A, Some((1, 0, 0)))],
        },
        Case {
            name: "unpinning the only reference frees",
            steps: &[(Write(A, Pin), OK), (Unpin(A), OK)],
            end: &[(A, None)],
        },
        Case {
            name: "unpinning a sector not stored",
            steps: &[(Unpin(A), libc::ENOENT)],
            end: &[(A, None)],
        },
        Case {
            name: "a reference to a sector not stored",
            steps: &[(AddRef(A, Pin), libc::ENOENT)],
            end: &[(A, None)],
        },
        Case {
            name: "contract alone",
            steps: &[
                (Write(A, Pin), OK),
                (Revise("c", &[A], Replace), OK),
                (Unpin(A), OK),
            ],
            end: &[(A, Some((0, 1, 0)))],
        },
        Case {
            name: "the same root twice in a list is two entries",
            steps: &[
                (Write(A, Pin), OK),
                (Revise("c", &[A, A], Replace), OK),
                (Unpin(A), OK),
            ],
            end: &[(A, Some((0, 2, 0)))],
        },
        Case {
            name: "EBUSY: contract entries but no pin",
            steps: &[
                (Write(A, Pin), OK),
                (Revise("c", &[A], Replace), OK),
                (Unpin(A), OK),
                (Unpin(A), libc::EBUSY),
            ],
            end: &[(A, Some((0, 1, 0)))],
        },
        Case {
            name: "EBUSY: a temp entry but no pin",
            steps: &[(Write(A, Temp(10)), OK), (Unpin(A), libc::EBUSY)],
            end: &[(A, Some((0, 0, 1)))],
        },
        Case {
            name: "deleting the contract frees",
            steps: &[
                (Write(A, Pin), OK),
                (Revise("c", &[A, A], Replace), OK),
                (Unpin(A), OK),
                (Delete("c"), OK),
            ],
            end: &[(A, None)],
        },
        Case {
            name: "replacing with an empty list frees",
            steps: &[
                (Write(A, Pin), OK),
                (Revise("c", &[A], Replace), OK),
                (Unpin(A), OK),
                (Revise("c", &[], Replace), OK),
            ],
            end: &[(A, None)],
        },
        Case {
            name: "a replace keeps what the new list names",
            steps: &[
                (Write(A, Pin), OK),
                (Write(B, Pin), OK),
                (Revise("c", &[A, B], Replace), OK),
                (Unpin(A), OK),
                (Unpin(B), OK),
                (Revise("c", &[B], Replace), OK),
            ],
            end: &[(A, None), (B, Some((0, 1, 0)))],
        },
        Case {
            name: "append adds entries",
            steps: &[
                (Write(A, Pin), OK),
                (Revise("c", &[A], Replace), OK),
                (Revise("c", &[A], Append), OK),
                (Unpin(A), OK),
            ],
            end: &[(A, Some((0, 2, 0)))],
        },
        Case {
            name: "a rename onto a contract is refused unless it may replace, then frees the \
                   target's sectors",
            steps: &[
                (Write(A, Pin), OK),
                (Write(B, Pin), OK),
                (Revise("c1", &[A], Replace), OK),
                (Revise("c2", &[B], Replace), OK),
                (Unpin(A), OK),
                (Unpin(B), OK),
                (Rename("c1", "c2", false), libc::EEXIST),
                (Rename("c1", "c1", false), libc::EEXIST),
                (Rename("c1", "c2", true), OK),
            ],
            end: &[(A, Some((0, 1, 0))), (B, None)],
        },
        Case {
            name: "a revision naming a sector not stored changes nothing",
            steps: &[
                (Write(A, Pin), OK),
                (Revise("c", &[A], Replace), OK),
                (Unpin(A), OK),
                (Revise("c", &[B], Replace), libc::ENOENT),
                (Revise("c", &[A, B], Append), libc::ENOENT),
                (Revise("new", &[B], Replace), libc::ENOENT),
            ],
            end: &[(A, Some((0, 1, 0))), (B, None)],
        },
        Case {
            name: "a malformed contract id changes nothing",
            steps: &[
                (Write(A, Pin), OK),
                (Revise("c", &[A], Replace), OK),
                (Revise("a/b", &[A], Replace), libc::EINVAL),
                (Revise("", &[A], Replace), libc::EINVAL),
                (Revise("..", &[A], Replace), libc::EINVAL),
                (Rename("c", "x y", true), libc::EINVAL),
                (Rename("nope", "d", true), libc::ENOENT),
                (Delete("nope"), libc::ENOENT),
            ],
            end: &[(A, Some((1, 1, 0)))],
        },
        Case {
            name: "temp alone",
            steps: &[(Write(A, Temp(10)), OK)],
            end: &[(A, Some((0, 0, 1)))],
        },
        Case {
            name: "temp entries at or below the height are refused",
            steps: &[
                (Height(5), OK),
                (Write(A, Temp(5)), libc::EINVAL),
                (Write(A, Temp(4)), libc::EINVAL),
                (Write(A, Pin), OK),
                (AddRef(A, Temp(5)), libc::EINVAL),
            ],
            end: &[(A, Some((1, 0, 0)))],
        },
        Case {
            name: "temp entries past the largest height are refused",
            steps: &[
                (Write(A, Temp(MAX_TEMP_HEIGHT + 1)), libc::EINVAL),
                (Write(A, Temp(u64::MAX)), libc::EINVAL),
                (Write(A, Pin), OK),
                (AddRef(A, Temp(u64::MAX)), libc::EINVAL),
                (AddRef(A, Temp(MAX_TEMP_HEIGHT)), OK),
            ],
            end: &[(A, Some((1, 0, 1)))],
        },
        Case {
            name: "a height below a temp entry keeps it",
            steps: &[(Write(A, Temp(10)), OK), (Height(9), OK)],
            end: &[(A, Some((0, 0, 1)))],
        },
        Case {
            name: "a height at a temp entry drops it and frees",
            steps: &[(Write(A, Temp(10)), OK), (Height(10), OK)],
            end: &[(A, None)],
        },
        Case {
            name: "temp entries expire one at a time",
            steps: &[
                (Write(A, Temp(10)), OK),
                (AddRef(A, Temp(20)), OK),
                (Height(15), OK),
            ],
            end: &[(A, Some((0, 0, 1)))],
        },
        Case {
            name: "removing the temp entry frees",
            steps: &[(Write(A, Temp(10)), OK), (RemoveTemp(A, 10), OK)],
            end: &[(A, None)],
        },
        Case {
            name: "removing a temp entry that does not exist",
            steps: &[(Write(A, Temp(10)), OK), (RemoveTemp(A, 11), libc::ENOENT)],
            end: &[(A, Some((0, 0, 1)))],
        },
        Case {
            name: "heights never go back",
            steps: &[
                (Height(10), OK),
                (Height(9), libc::EINVAL),
                (Height(10), OK),
                (Write(A, Temp(11)), OK),
            ],
            end: &[(A, Some((0, 0, 1)))],
        },
        Case {
            name: "a pin outlives the temp entry",
            steps: &[
                (Write(A, Pin), OK),
                (AddRef(A, Temp(10)), OK),
                (Height(10), OK),
            ],
            end: &[(A, Some((1, 0, 0)))],
        },
        Case {
            name: "a contract outlives the temp entry",
            steps: &[
                (Write(A, Temp(10)), OK),
                (Revise("c", &[A], Replace), OK),
                (Height(12), OK),
            ],
            end: &[(A, Some((0, 1, 0)))],
        },
        Case {
            name: "a pin written after a temp entry",
            steps: &[(Write(A, Temp(10)), OK), (Write(A, Pin), OK)],
            end: &[(A, Some((1, 0, 1)))],
        },
        Case {
            name: "all three, dropped one by one",
            steps: &[
                (Write(A, Pin), OK),
                (AddRef(A, Temp(10)), OK),
                (Revise("c", &[A], Replace), OK),
                (Unpin(A), OK),
                (Unpin(A), libc::EBUSY),
                (Height(10), OK),
                (Unpin(A), libc::EBUSY),
                (Delete("c"), OK),
            ],
            end: &[(A, None)],
        },
        Case {
            name: "a freed slot is reused by the next write",
            steps: &[(Write(A, Pin), OK), (Unpin(A), OK), (Write(B, Temp(3)), OK)],
            end: &[(A, None), (B, Some((0, 0, 1)))],
        },
    ];
    for case in &cases {
        let (_dir, engine, ids) = store(Placement::FillFirst, &[4]);
        let path = volume_path(&engine, ids[0]);
        let mut slots_used: HashMap<u64, u64> = HashMap::new();
        for (i, &(op, want)) in case.steps.iter().enumerate() {
            let before = snapshot(&engine);
            let got = apply(&engine, op);
            match (got, want) {
                (Ok(()), OK) => {}
                (Ok(()), _) => panic!(
                    "{}: step {i} {op:?} succeeded, want errno {want}",
                    case.name
                ),
                (Err(e), OK) => panic!("{}: step {i} {op:?} failed: {e}", case.name),
                (Err(e), _) => {
                    assert_eq!(e.errno(), want, "{}: step {i} {op:?}: {e}", case.name);
                    assert!(!e.to_string().is_empty());
                    assert_eq!(
                        before,
                        snapshot(&engine),
                        "{}: {op:?} changed nothing",
                        case.name
                    );
                }
            }
            if let Op::Write(s, _) = op
                && let Some(row) = engine.lookup(&root(s)).unwrap()
            {
                slots_used.insert(s, row.slot);
            }
            assert_consistent(&engine);
        }
        for &(s, want) in case.end {
            let want = want.map(|(p, c, t)| counts(p, c, t));
            assert_eq!(refs(&engine, s), want, "{}: sector {s}", case.name);
            if want.is_some() {
                assert_reads_back(&engine, s);
            }
        }
        // a freed sector's slot reads back zeros unless reused since
        for (s, slot) in slots_used {
            let owner = engine
                .list_sectors(0, 100)
                .unwrap()
                .into_iter()
                .find(|r| r.slot == slot);
            let bytes = slot_bytes(&path, slot);
            match owner {
                Some(r) => assert!(bytes == sector_bytes(&r.root), "{}", case.name),
                None => assert!(
                    bytes.iter().all(|&b| b == 0),
                    "{}: freed {s} is zeros",
                    case.name
                ),
            }
        }
        // the volume is no fuller than what is stored
        let stored = case.end.iter().filter(|(_, w)| w.is_some()).count() as u64;
        assert_eq!(
            engine.volume_info(ids[0]).unwrap().used,
            stored,
            "{}",
            case.name
        );
    }
}

fn sector_bytes(root: &Root) -> Vec<u8> {
    [A, B]
        .iter()
        .map(|&s| sector(s))
        .find(|(r, _)| r == root)
        .map(|(_, d)| d.clone())
        .expect("a known sector")
}

#[test]
fn freeing_is_immediate_and_the_slot_is_reused_and_zeroed() {
    let (_dir, engine, ids) = store(Placement::FillFirst, &[2]);
    let path = volume_path(&engine, ids[0]);
    pin(&engine, 10);
    pin(&engine, 11);
    let slot = engine.lookup(&root(10)).unwrap().unwrap().slot;
    assert!(slot_bytes(&path, slot) == sector(10).1);

    engine.unpin(&root(10)).unwrap();
    // gone for lookups, reads and listings the moment the call returns
    assert_eq!(engine.lookup(&root(10)).unwrap(), None);
    let mut buf = vec![0u8; 16];
    assert_eq!(
        errno(engine.read_sector(&root(10), 0, &mut buf)),
        libc::ENOENT
    );
    assert_eq!(engine.list_sectors(0, 10).unwrap().len(), 1);
    assert_eq!(engine.volume_info(ids[0]).unwrap().used, 1);
    assert!(
        slot_bytes(&path, slot).iter().all(|&b| b == 0),
        "freed bytes cannot be read back from the volume file"
    );

    // the volume has room for exactly one more: the freed slot
    pin(&engine, 12);
    assert_eq!(engine.lookup(&root(12)).unwrap().unwrap().slot, slot);
    assert!(slot_bytes(&path, slot) == sector(12).1);
    let full = write(&engine, 13, Reference::Pin).unwrap_err();
    assert!(matches!(full, Error::NoSpace(_)), "{full}");
    assert_eq!(full.errno(), libc::ENOSPC);
    assert_consistent(&engine);

    // freeing through a contract and the height zeroes too
    engine
        .revise_contract("c", &[root(11)], ContractEdit::Replace)
        .unwrap();
    engine.unpin(&root(11)).unwrap();
    let slot11 = engine.lookup(&root(11)).unwrap().unwrap().slot;
    engine.delete_contract("c").unwrap();
    assert!(slot_bytes(&path, slot11).iter().all(|&b| b == 0));
    write(&engine, 13, Reference::Temp(5)).unwrap();
    let slot13 = engine.lookup(&root(13)).unwrap().unwrap().slot;
    assert_eq!(slot13, slot11, "reused");
    engine.set_height(5).unwrap();
    assert_eq!(engine.lookup(&root(13)).unwrap(), None);
    assert!(slot_bytes(&path, slot13).iter().all(|&b| b == 0));
    assert_eq!(engine.volume_info(ids[0]).unwrap().used, 1);
    assert_consistent(&engine);
}

#[test]
fn height_rules() {
    let (_dir, engine, _) = store(Placement::FillFirst, &[4]);
    assert_eq!(engine.height().unwrap(), 0);
    write(&engine, 20, Reference::Temp(3)).unwrap();
    write(&engine, 21, Reference::Temp(5)).unwrap();
    engine.add_reference(&root(21), Reference::Temp(8)).unwrap();
    assert_eq!(engine.temp_heights().unwrap(), [3, 5, 8]);
    let at5: Vec<Root> = engine
        .temp_roots(5)
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    assert_eq!(at5, [root(21)]);

    engine.set_height(5).unwrap();
    assert_eq!(engine.height().unwrap(), 5);
    assert_eq!(
        engine.temp_heights().unwrap(),
        [8],
        "entries at or below 5 dropped"
    );
    assert_eq!(engine.lookup(&root(20)).unwrap(), None);
    assert_eq!(refs(&engine, 21), Some(counts(0, 0, 1)));

    let lower = engine.set_height(4).unwrap_err();
    assert!(matches!(lower, Error::Invalid(_)), "{lower}");
    assert_eq!(lower.errno(), libc::EINVAL);
    assert!(
        lower.to_string().contains('5'),
        "names the current height: {lower}"
    );
    assert_eq!(engine.height().unwrap(), 5);
    for h in [0, 4, 5] {
        assert_eq!(errno(write(&engine, 22, Reference::Temp(h))), libc::EINVAL);
        assert_eq!(
            errno(engine.add_reference(&root(21), Reference::Temp(h))),
            libc::EINVAL
        );
    }
    assert_eq!(engine.lookup(&root(22)).unwrap(), None, "nothing stored");
    assert_eq!(
        engine.set_height(u64::MAX).unwrap_err().errno(),
        libc::EINVAL
    );
    engine.set_height(8).unwrap();
    assert!(engine.temp_heights().unwrap().is_empty());
    assert_eq!(engine.meta().count_sectors().unwrap(), 0);
    assert_consistent(&engine);
}

#[test]
fn contract_revisions() {
    use ContractEdit::{Append, Replace};
    let (_dir, engine, _) = store(Placement::FillFirst, &[8]);
    for s in 30..34 {
        pin(&engine, s);
    }
    let r = |seeds: &[u64]| seeds.iter().map(|&s| root(s)).collect::<Vec<_>>();
    engine
        .revise_contract("alpha", &r(&[30, 31, 30]), Replace)
        .unwrap();
    assert_eq!(
        engine.contract_roots("alpha").unwrap(),
        Some(r(&[30, 31, 30]))
    );
    engine.revise_contract("alpha", &r(&[32]), Append).unwrap();
    assert_eq!(
        engine.contract_roots("alpha").unwrap(),
        Some(r(&[30, 31, 30, 32]))
    );
    // append creates a contract that does not exist yet
    engine
        .revise_contract("beta", &r(&[33, 33]), Append)
        .unwrap();
    assert_eq!(engine.contract_roots("beta").unwrap(), Some(r(&[33, 33])));

    // failed revisions keep the old list exactly
    let unknown = make_sector(999).0;
    let old = engine.contract_roots("alpha").unwrap();
    for (roots, edit) in [
        (vec![root(30), unknown], Replace),
        (vec![unknown], Append),
        (vec![root(31), root(32), unknown], Append),
    ] {
        let e = engine.revise_contract("alpha", &roots, edit).unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        assert!(
            e.to_string().contains(&unknown.to_string()),
            "names the root: {e}"
        );
        assert_eq!(engine.contract_roots("alpha").unwrap(), old);
    }
    let long = "x".repeat(129);
    let e = engine
        .revise_contract(&long, &r(&[30]), Replace)
        .unwrap_err();
    assert!(matches!(e, Error::Invalid(_)), "{e}");
    assert_eq!(engine.contract_roots(&long).unwrap(), None);
    let max = "A-z_0.9".repeat(19)[..128].to_string();
    engine.revise_contract(&max, &r(&[30]), Replace).unwrap();

    // rename replaces the target's list atomically and removes the source
    engine.rename_contract("alpha", "beta", true).unwrap();
    assert_eq!(engine.contract_roots("alpha").unwrap(), None);
    assert_eq!(
        engine.contract_roots("beta").unwrap(),
        Some(r(&[30, 31, 30, 32]))
    );
    engine.rename_contract("beta", "gamma", false).unwrap();
    let names: Vec<(String, u64)> = engine
        .list_contracts()
        .unwrap()
        .into_iter()
        .map(|c| (c.name, c.entries))
        .collect();
    assert_eq!(names, [(max.clone(), 1), ("gamma".to_string(), 4)]);

    // replace with fewer, then delete
    engine.revise_contract("gamma", &r(&[31]), Replace).unwrap();
    assert_eq!(engine.contract_roots("gamma").unwrap(), Some(r(&[31])));
    assert_eq!(refs(&engine, 30), Some(counts(1, 1, 0)));
    engine.delete_contract("gamma").unwrap();
    assert_eq!(engine.contract_roots("gamma").unwrap(), None);
    assert_eq!(refs(&engine, 31), Some(counts(1, 0, 0)));
    assert_eq!(errno(engine.delete_contract("gamma")), libc::ENOENT);
    // 33 had two entries in beta, dropped by the rename; its pin stays
    assert_eq!(refs(&engine, 33), Some(counts(1, 0, 0)));
    assert_consistent(&engine);
}

/// `RENAME_NOREPLACE`: a rename that must not replace is refused with
/// `Exists` when the target is there, decided in the renaming transaction,
/// and changes nothing; the same rename allowed to replace does.
#[test]
fn rename_without_replace() {
    use ContractEdit::Replace;
    let (_dir, engine, _) = store(Placement::FillFirst, &[8]);
    for s in 50..53 {
        write(&engine, s, Reference::Pin).unwrap();
    }
    let r = |seeds: &[u64]| seeds.iter().map(|&s| root(s)).collect::<Vec<_>>();
    engine
        .revise_contract("src", &r(&[50, 51]), Replace)
        .unwrap();
    engine.revise_contract("dst", &r(&[52]), Replace).unwrap();
    for s in 50..53 {
        engine.unpin(&root(s)).unwrap();
    }
    let lists = |engine: &Engine| {
        let names: Vec<String> = engine
            .list_contracts()
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        let roots = ["src", "dst"].map(|n| engine.contract_roots(n).unwrap());
        (names, roots)
    };
    let before = lists(&engine);

    let e = engine.rename_contract("src", "dst", false).unwrap_err();
    assert!(matches!(e, Error::Exists(_)), "{e}");
    assert_eq!(e.errno(), libc::EEXIST);
    assert!(e.to_string().contains("dst"), "names the target: {e}");
    assert_eq!(lists(&engine), before, "both lists exactly as they were");
    assert_eq!(
        refs(&engine, 52),
        Some(counts(0, 1, 0)),
        "dst's sector kept"
    );
    assert_consistent(&engine);

    engine.rename_contract("src", "dst", true).unwrap();
    assert_eq!(engine.contract_roots("src").unwrap(), None);
    assert_eq!(engine.contract_roots("dst").unwrap(), Some(r(&[50, 51])));
    assert_eq!(
        refs(&engine, 52),
        None,
        "the replaced list's sector is freed"
    );
    assert_consistent(&engine);
}

/// A late truncation drops the entries a contract had when it was read,
/// unless its list was replaced since (the same list again) or the contract
/// is gone (deleted, replaced by a rename): entries appended since stay, a
/// rename does not matter, and the check and the drop are one transaction.
#[test]
fn emptying_if_unrevised() {
    use ContractEdit::{Append, Replace};
    let (_dir, engine, _) = store(Placement::FillFirst, &[8]);
    for s in 40..43 {
        write(&engine, s, Reference::Pin).unwrap();
    }
    engine.revise_contract("c", &[root(40)], Replace).unwrap();
    engine.unpin(&root(40)).unwrap();
    let mark = |engine: &Engine| {
        let c = engine.contract_by_name("c").unwrap().unwrap();
        (c.id, c.revision, c.end)
    };

    // unchanged: emptied, and the sector it alone held is freed
    let (id, rev, end) = mark(&engine);
    assert_eq!(end, 1);
    assert!(engine.empty_contract_if_unrevised(id, rev, end).unwrap());
    assert_eq!(engine.contract_roots("c").unwrap(), Some(vec![]));
    assert_eq!(refs(&engine, 40), None);
    // emptying is itself a new revision
    assert!(!engine.empty_contract_if_unrevised(id, rev, end).unwrap());

    // appended since: only the entries from before go
    engine
        .revise_contract("c", &[root(41), root(42)], Replace)
        .unwrap();
    let (id, rev, end) = mark(&engine);
    engine.revise_contract("c", &[root(41)], Append).unwrap();
    assert!(engine.empty_contract_if_unrevised(id, rev, end).unwrap());
    assert_eq!(engine.contract_roots("c").unwrap(), Some(vec![root(41)]));
    assert_eq!(refs(&engine, 42), Some(counts(1, 0, 0)));

    // the same list written again since: kept
    let (id, rev, end) = mark(&engine);
    engine.revise_contract("c", &[root(41)], Replace).unwrap();
    assert!(!engine.empty_contract_if_unrevised(id, rev, end).unwrap());
    assert_eq!(engine.contract_roots("c").unwrap(), Some(vec![root(41)]));

    // renamed: still the same contract, emptied under its new name
    let (id, rev, end) = mark(&engine);
    engine.rename_contract("c", "d", false).unwrap();
    assert!(engine.empty_contract_if_unrevised(id, rev, end).unwrap());
    assert_eq!(engine.contract_roots("d").unwrap(), Some(vec![]));
    assert_eq!(engine.contract_roots("c").unwrap(), None);
    engine.rename_contract("d", "c", false).unwrap();

    // deleted and made again, or replaced by a rename onto its name: the
    // new one is another contract and keeps its list
    engine.revise_contract("c", &[root(41)], Replace).unwrap();
    let (id, rev, end) = mark(&engine);
    engine.delete_contract("c").unwrap();
    assert!(!engine.empty_contract_if_unrevised(id, rev, end).unwrap());
    engine.revise_contract("c", &[root(41)], Append).unwrap();
    assert!(!engine.empty_contract_if_unrevised(id, rev, end).unwrap());
    assert_eq!(engine.contract_roots("c").unwrap(), Some(vec![root(41)]));
    let (id, rev, end) = mark(&engine);
    engine.revise_contract("e", &[root(41)], Replace).unwrap();
    engine.rename_contract("e", "c", true).unwrap();
    assert!(!engine.empty_contract_if_unrevised(id, rev, end).unwrap());
    assert_eq!(engine.contract_roots("c").unwrap(), Some(vec![root(41)]));

    // a revision by id follows renames, and is refused once it is gone
    let (id, _, _) = mark(&engine);
    engine.rename_contract("c", "f", false).unwrap();
    engine
        .revise_contract_by_id(id, &[root(42)], Append)
        .unwrap();
    assert_eq!(
        engine.contract_roots("f").unwrap(),
        Some(vec![root(41), root(42)])
    );
    engine.delete_contract("f").unwrap();
    assert_eq!(
        errno(engine.revise_contract_by_id(id, &[root(42)], Replace)),
        libc::ENOENT
    );
    assert_eq!(engine.contract_roots("f").unwrap(), None);
    assert_consistent(&engine);
}

// ----------------------------------------------------------- persistence

#[test]
fn everything_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, infos, contracts, sectors_before) = {
        let engine = open(dir.path(), Placement::RoundRobin);
        let ids = add_volumes(&engine, dir.path(), &[3, 5]);
        pin(&engine, 40);
        write(&engine, 41, Reference::Temp(100)).unwrap();
        pin(&engine, 42);
        pin(&engine, 43);
        engine
            .add_reference(&root(43), Reference::Temp(50))
            .unwrap();
        engine
            .add_reference(&root(43), Reference::Temp(60))
            .unwrap();
        engine
            .revise_contract("c1", &[root(42), root(40), root(42)], ContractEdit::Replace)
            .unwrap();
        engine
            .revise_contract("c2", &[root(43)], ContractEdit::Replace)
            .unwrap();
        engine
            .revise_contract("empty", &[], ContractEdit::Replace)
            .unwrap();
        engine.unpin(&root(42)).unwrap();
        pin(&engine, 44);
        engine.unpin(&root(44)).unwrap(); // freed: must stay gone
        engine.set_height(42).unwrap();
        engine.set_readonly(ids[1], true).unwrap();
        let infos = engine.volume_infos();
        let contracts: Vec<_> = ["c1", "c2", "empty"]
            .iter()
            .map(|n| engine.contract_roots(n).unwrap())
            .collect();
        (ids, infos, contracts, engine.list_sectors(0, 100).unwrap())
    };

    let engine = open(dir.path(), Placement::RoundRobin);
    assert_eq!(engine.height().unwrap(), 42);
    assert_eq!(engine.list_sectors(0, 100).unwrap(), sectors_before);
    assert_eq!(engine.lookup(&root(44)).unwrap(), None);
    assert_eq!(refs(&engine, 40), Some(counts(1, 1, 0)));
    assert_eq!(refs(&engine, 41), Some(counts(0, 0, 1)));
    assert_eq!(refs(&engine, 42), Some(counts(0, 2, 0)));
    assert_eq!(refs(&engine, 43), Some(counts(1, 1, 2)));
    assert_eq!(engine.temp_heights().unwrap(), [50, 60, 100]);
    let after: Vec<_> = ["c1", "c2", "empty"]
        .iter()
        .map(|n| engine.contract_roots(n).unwrap())
        .collect();
    assert_eq!(after, contracts);
    assert_eq!(contracts[2], Some(vec![]));
    for s in 40..44 {
        assert_reads_back(&engine, s);
    }
    let now = engine.volume_infos();
    assert_eq!(now.len(), infos.len());
    for (a, b) in now.iter().zip(&infos) {
        assert_eq!(
            (a.id, &a.uuid, &a.path, a.slots, a.used, a.readonly),
            (b.id, &b.uuid, &b.path, b.slots, b.used, b.readonly)
        );
    }
    assert!(now[1].readonly);
    assert_consistent(&engine);
    // free slots were derived from the occupied ones: the next write takes
    // the lowest free slot of the writable volume
    pin(&engine, 45);
    let row = engine.lookup(&root(45)).unwrap().unwrap();
    assert_eq!(row.volume_id, ids[0], "the read-only volume gets nothing");
    let taken: HashSet<u64> = sectors_before
        .iter()
        .filter(|r| r.volume_id == ids[0])
        .map(|r| r.slot)
        .collect();
    let lowest_free = (0..).find(|s| !taken.contains(s)).unwrap();
    assert_eq!(row.slot, lowest_free);
    assert_consistent(&engine);
}

#[test]
fn a_second_open_of_a_held_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path(), Placement::FillFirst);
    let err = match Engine::open(dir.path(), options(Placement::FillFirst)) {
        Ok(_) => panic!("a second engine opened a held data dir"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Locked(_)), "{err}");
    assert_eq!(err.errno(), libc::EWOULDBLOCK);
    let msg = err.to_string();
    assert!(msg.contains("in use"), "{msg}");
    assert!(
        msg.contains(&dir.path().display().to_string()),
        "names the dir: {msg}"
    );
    assert!(
        msg.contains(&std::process::id().to_string()),
        "names the holder: {msg}"
    );
    // the holder is untouched, and the dir opens again once it is closed
    add_volumes(&first, dir.path(), &[1]);
    drop(first);
    let again = open(dir.path(), Placement::FillFirst);
    assert_eq!(again.volume_infos().len(), 1);
}

// ----------------------------------------------------------- concurrency

#[test]
fn concurrent_writers_and_readers() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 6;
    let (_dir, engine, _) = store(Placement::RoundRobin, &[12, 12, 12]);
    let written = Mutex::new(Vec::<u64>::new());
    // Each thread writes its own sectors plus two that every thread writes
    // (concurrent dedup), reads back sectors of all threads as they appear,
    // and writes and unpins a scratch sector (concurrent frees).
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (engine, written) = (&engine, &written);
            scope.spawn(move || {
                let mine = (0..PER_THREAD).map(|i| 1000 + t * 100 + i);
                for (i, s) in mine.chain([7777, 7778]).enumerate() {
                    write(engine, s, Reference::Pin).unwrap();
                    written.lock().unwrap().push(s);
                    let seen = written.lock().unwrap().clone();
                    assert_reads_back(engine, seen[(i * 7 + t as usize) % seen.len()]);
                    let mut head = [0u8; 64];
                    engine.read_sector(&root(s), 0, &mut head).unwrap();
                    assert_eq!(head, sector(s).1[..64]);
                    if i % 3 == 0 {
                        let scratch = 5000 + t * 100 + i as u64;
                        write(engine, scratch, Reference::Pin).unwrap();
                        engine.unpin(&root(scratch)).unwrap();
                    }
                }
            });
        }
    });
    for t in 0..THREADS {
        for i in 0..PER_THREAD {
            assert_reads_back(&engine, 1000 + t * 100 + i);
        }
    }
    assert_reads_back(&engine, 7777);
    assert_reads_back(&engine, 7778);
    assert_eq!(refs(&engine, 7777), Some(counts(1, 0, 0)));
    let expected = THREADS * PER_THREAD + 2;
    assert_eq!(engine.meta().count_sectors().unwrap(), expected);
    let writes: u64 = engine.volume_infos().iter().map(|v| v.stats.writes).sum();
    // each shared sector is written once or more (racing writers), never
    // kept twice
    assert!(writes >= expected, "{writes} writes");
    assert_consistent(&engine);
}

// -------------------------------------------------------------- placement

/// Writes sectors from `seed` on and returns the volume each one landed in.
fn placements(engine: &Engine, seed: u64, n: u64) -> Vec<u32> {
    (seed..seed + n)
        .map(|s| {
            pin(engine, s);
            volume_of(engine, s)
        })
        .collect()
}

fn assert_no_space(engine: &Engine, seed: u64) {
    let err = write(engine, seed, Reference::Pin).unwrap_err();
    assert!(matches!(err, Error::NoSpace(_)), "{err}");
    assert_eq!(err.errno(), libc::ENOSPC);
    assert!(err.to_string().contains("free slot"), "{err}");
    assert_eq!(engine.lookup(&root(seed)).unwrap(), None);
}

#[test]
fn placement_deterministic_policies() {
    // fill-first fills volume 1, then 2, then 3
    let (_d, e, v) = store(Placement::FillFirst, &[2, 2, 2]);
    assert_eq!(placements(&e, 200, 6), [v[0], v[0], v[1], v[1], v[2], v[2]]);
    assert_no_space(&e, 206);

    // round-robin takes each in turn, skipping read-only and full ones
    let (_d, e, v) = store(Placement::RoundRobin, &[3, 1, 2, 3]);
    e.set_readonly(v[3], true).unwrap();
    assert_eq!(placements(&e, 200, 4), [v[0], v[1], v[2], v[0]]);
    assert_eq!(placements(&e, 204, 2), [v[2], v[0]], "1 full, 3 read-only");
    assert_no_space(&e, 206);
    e.set_readonly(v[3], false).unwrap();
    assert_eq!(placements(&e, 206, 1), [v[3]], "writable again");

    // most-free: the volume with the most free slots, lowest id on ties
    let (_d, e, v) = store(Placement::MostFree, &[2, 4]);
    assert_eq!(placements(&e, 200, 6), [v[1], v[1], v[0], v[1], v[0], v[1]]);
    assert_no_space(&e, 206);

    // least-used: lowest fill fraction, lowest id on ties
    let (_d, e, v) = store(Placement::LeastUsed, &[2, 4]);
    assert_eq!(placements(&e, 200, 6), [v[0], v[1], v[1], v[0], v[1], v[1]]);
    assert_no_space(&e, 206);
}

#[test]
fn placement_random_policies() {
    for policy in [Placement::Random, Placement::WeightedRandom] {
        // volume 1 read-only, 2 and 3 writable: everything lands in 2 or 3
        let (_d, e, v) = store(policy, &[4, 3, 3]);
        e.set_readonly(v[0], true).unwrap();
        let picks = placements(&e, 300, 6);
        assert!(picks.iter().all(|p| *p != v[0]), "{policy}: {picks:?}");
        assert_eq!(e.volume_info(v[1]).unwrap().used, 3, "{policy}");
        assert_eq!(e.volume_info(v[2]).unwrap().used, 3, "{policy}");
        assert_no_space(&e, 306);
        // one writable volume left with room: every pick is it
        e.set_readonly(v[0], false).unwrap();
        e.set_readonly(v[1], true).unwrap();
        assert_eq!(placements(&e, 306, 4), [v[0]; 4], "{policy}");
        assert_no_space(&e, 310);
        assert_consistent(&e);
    }
}

#[test]
fn placement_every_policy_refuses_when_nothing_is_writable() {
    for (name, policy) in sectorfs::engine::placement::POLICIES {
        let (_d, e, v) = store(*policy, &[1, 2]);
        assert_eq!(name.parse::<Placement>().unwrap(), *policy);
        // all read-only: nothing is chosen, even with free slots
        e.set_readonly(v[0], true).unwrap();
        e.set_readonly(v[1], true).unwrap();
        assert_no_space(&e, 400);
        assert_eq!(e.capacity().free_writable, 0);
        assert!(
            e.alerts().get("no-space").is_some(),
            "{name}: no-space alert"
        );
        // one writable volume: it alone is chosen until full
        e.set_readonly(v[1], false).unwrap();
        assert!(
            e.alerts().get("no-space").is_none(),
            "{name}: alert cleared"
        );
        assert_eq!(placements(&e, 400, 2), [v[1], v[1]], "{name}");
        assert_no_space(&e, 402);
        // a read-only volume still serves reads
        e.set_readonly(v[1], true).unwrap();
        assert_reads_back(&e, 400);
        // a dedup write needs no slot even when everything is full
        assert!(!write(&e, 401, Reference::Temp(9)).unwrap(), "{name}");
    }
}

// ----------------------------------------------------------------- errnos

#[test]
fn errors_carry_their_errno_and_a_message() {
    let (dir, engine, ids) = store(Placement::FillFirst, &[1]);
    let d = dir.path();
    let (r1, data1) = sector(1);
    let wrong = root(2);
    let mut buf = vec![0u8; 8];
    let cases: Vec<(&str, Error, i32)> = vec![
        (
            "data that does not hash to its name",
            engine
                .write_sector(&wrong, data1, Reference::Pin)
                .unwrap_err(),
            libc::EBADMSG,
        ),
        (
            "a short sector",
            engine
                .write_sector(r1, &data1[..SECTOR_SIZE - 1], Reference::Pin)
                .unwrap_err(),
            libc::EINVAL,
        ),
        (
            "reading a sector not stored",
            engine.read_sector(r1, 0, &mut buf).unwrap_err(),
            libc::ENOENT,
        ),
        (
            "a relative volume path",
            engine.add_volume(Path::new("rel.vol"), 1).unwrap_err(),
            libc::EINVAL,
        ),
        (
            "a volume of no slots",
            engine.add_volume(&d.join("zero.vol"), 0).unwrap_err(),
            libc::EINVAL,
        ),
        (
            "a volume path that exists",
            engine.add_volume(&d.join("v0.vol"), 1).unwrap_err(),
            libc::EEXIST,
        ),
        (
            "a volume in a missing directory",
            engine.add_volume(&d.join("missing/v.vol"), 1).unwrap_err(),
            libc::ENOENT,
        ),
        (
            "an unknown volume",
            engine.set_readonly(99, true).unwrap_err(),
            libc::ENOENT,
        ),
        (
            "a contract id with a slash",
            engine
                .revise_contract("a/b", &[], ContractEdit::Replace)
                .unwrap_err(),
            libc::EINVAL,
        ),
    ];
    for (what, err, want) in cases {
        assert_eq!(err.errno(), want, "{what}: {err}");
        assert!(
            err.to_string().len() > 10,
            "{what}: a message in words: {err}"
        );
    }
    assert!(!d.join("zero.vol").exists());
    assert_eq!(engine.volume_infos().len(), 1, "no volume half-added");

    pin(&engine, 1);
    engine
        .revise_contract("c", &[*r1], ContractEdit::Replace)
        .unwrap();
    engine.unpin(r1).unwrap();
    let busy = engine.unpin(r1).unwrap_err();
    assert!(matches!(busy, Error::Busy(_)));
    assert_eq!(busy.errno(), libc::EBUSY);
    assert!(busy.to_string().contains("contract"), "{busy}");
    assert_no_space(&engine, 3);
    assert_eq!(engine.volume_info(ids[0]).unwrap().stats.write_errors, 0);
}

#[test]
fn a_first_start_killed_while_making_the_default_volume_opens_again() {
    // a kill between creating default.vol and recording it leaves the file
    // without a row; the next start must not be refused because of it
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("volumes")).unwrap();
    let leftover = dir.path().join("volumes/default.vol");
    std::fs::write(&leftover, b"left over").unwrap();
    let opts = Options {
        default_volume_slots: 2,
        ..Options::default()
    };
    let engine = Engine::open(dir.path(), opts).expect("open despite the leftover file");
    let infos = engine.volume_infos();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].slots, 2);
    assert_eq!(infos[0].path, dir.path().join("volumes/default-2.vol"));
    assert_eq!(
        std::fs::read(&leftover).unwrap(),
        b"left over",
        "an unknown file is never overwritten"
    );
    pin(&engine, 1);
    assert_reads_back(&engine, 1);
}

#[test]
fn a_write_that_does_not_verify_leaves_nothing() {
    let (_dir, engine, ids) = store(Placement::FillFirst, &[1]);
    let path = volume_path(&engine, ids[0]);
    // data is written while it is hashed: a mismatch must leave no trace
    let bad = engine.write_sector(&root(2), &sector(1).1, Reference::Pin);
    assert_eq!(errno(bad), libc::EBADMSG);
    assert_eq!(engine.lookup(&root(2)).unwrap(), None);
    assert_eq!(engine.lookup(&root(1)).unwrap(), None);
    assert_eq!(engine.volume_info(ids[0]).unwrap().used, 0);
    assert!(
        slot_bytes(&path, 0).iter().all(|&b| b == 0),
        "bad data punched out"
    );
    // the slot is free again
    pin(&engine, 2);
    assert_eq!(engine.lookup(&root(2)).unwrap().unwrap().slot, 0);
    // bad data under a root already stored adds no reference
    let bad = engine.write_sector(&root(2), &sector(1).1, Reference::Temp(7));
    assert_eq!(errno(bad), libc::EBADMSG);
    assert_eq!(refs(&engine, 2), Some(counts(1, 0, 0)));
    assert!(slot_bytes(&path, 0) == sector(2).1);
    assert_consistent(&engine);
}
