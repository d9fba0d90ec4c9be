//! Many threads reading and writing through the mount at once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::harness::{Mount, sector};
use sectorfs::merkle::{Root, sector_root};

const WRITERS: u64 = 4;
const PER_WRITER: u64 = 8;
const READERS: usize = 4;

#[test]
fn many_threads_read_and_write_at_once() {
    let m = Mount::start(&[]);
    // sectors the readers verify while the writers write
    let old: Vec<(Root, u64)> = (0..8).map(|i| (m.put(&sector(600 + i)), 600 + i)).collect();
    let old_data: Vec<Vec<u8>> = old.iter().map(|(_, seed)| sector(*seed)).collect();
    let writing = AtomicBool::new(true);
    let reads = AtomicUsize::new(0);
    let written: Vec<Root> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let m = &m;
                s.spawn(move || {
                    (0..PER_WRITER)
                        .map(|i| {
                            let data = sector(1000 + w * 100 + i);
                            let root = m.put(&data);
                            // read back at once, by the writer itself
                            assert_eq!(std::fs::read(m.sector_path(&root)).unwrap(), data);
                            root
                        })
                        .collect::<Vec<Root>>()
                })
            })
            .collect();
        for r in 0..READERS {
            let (m, old, old_data, writing, reads) = (&m, &old, &old_data, &writing, &reads);
            s.spawn(move || {
                let mut i = r;
                while writing.load(Ordering::Relaxed) || i < r + old.len() {
                    let k = i % old.len();
                    let got = std::fs::read(m.sector_path(&old[k].0)).unwrap();
                    assert!(
                        got == old_data[k],
                        "reader {r} read wrong bytes of sector {k}"
                    );
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        // one more thread lists and stats while all this goes on
        {
            let (m, writing) = (&m, &writing);
            s.spawn(move || {
                while writing.load(Ordering::Relaxed) {
                    let names = m.listed();
                    let unique: HashSet<&String> = names.iter().collect();
                    assert_eq!(unique.len(), names.len(), "a name listed twice");
                    assert!(names.len() >= 8);
                    let _ = m.read("status.json");
                }
            });
        }
        let all = writers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        writing.store(false, Ordering::Relaxed);
        all
    });
    assert!(reads.load(Ordering::Relaxed) >= READERS * old.len());
    // every sector is there, once, with its bytes
    assert_eq!(written.len() as u64, WRITERS * PER_WRITER);
    let listed: HashSet<String> = m.listed().into_iter().collect();
    assert_eq!(listed.len(), old.len() + written.len());
    assert_eq!(m.used(1), listed.len() as u64);
    for w in 0..WRITERS {
        for i in 0..PER_WRITER {
            let data = sector(1000 + w * 100 + i);
            let root = sector_root(&data);
            assert!(listed.contains(&root.to_string()));
            let got = std::fs::read(m.sector_path(&root)).unwrap();
            assert!(sector_root(&got) == root, "sector {w}/{i} reads back wrong");
        }
    }
    let slots: HashSet<String> = listed
        .iter()
        .map(|r| {
            super::harness::xattr(&m.path(&format!("sectors/{r}")), "user.sectorfs.slot").unwrap()
        })
        .collect();
    assert_eq!(slots.len(), listed.len(), "two sectors share a slot");
}

/// Writers and removers of references racing on the same sectors never
/// lose one that is still referenced.
#[test]
fn references_race_without_losing_sectors() {
    let m = Mount::start(&[]);
    let roots: Vec<Root> = (0..4).map(|i| m.put(&sector(700 + i))).collect();
    m.sh_ok("mkdir temp/100");
    std::thread::scope(|s| {
        for (t, root) in roots.iter().enumerate() {
            let m = &m;
            s.spawn(move || {
                let contract = m.path(&format!("contracts/k{t}"));
                let temp = m.path(&format!("temp/100/{root}"));
                for _ in 0..20 {
                    super::harness::write_file(&contract, format!("{root}\n").as_bytes()).unwrap();
                    std::fs::hard_link(m.sector_path(root), &temp).unwrap();
                    std::fs::remove_file(&temp).unwrap();
                    std::fs::remove_file(&contract).unwrap();
                }
            });
        }
    });
    for (i, r) in roots.iter().enumerate() {
        assert_eq!(m.refs(r), "pin=1 contracts=0 temp=0");
        assert_eq!(
            std::fs::read(m.sector_path(r)).unwrap(),
            sector(700 + i as u64)
        );
    }
    assert_eq!(m.used(1), 4);
}
