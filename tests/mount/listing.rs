//! `ls /sectors` of a few thousand sectors. They are recorded offline with
//! the engine (rows only, no data: writing thousands of 4 MiB sectors
//! through FUSE would take minutes), then the store is mounted.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

use super::harness::{Mount, sector};
use sectorfs::engine::{Engine, Options};
use sectorfs::merkle::Root;

const N: u64 = 3000;

fn synthetic_root(i: u64) -> Root {
    let mut r = [0u8; 32];
    r[..8].copy_from_slice(&i.to_le_bytes());
    r[8..16].copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
    r[31] = 0x5a;
    Root(r)
}

#[test]
fn ls_lists_thousands_of_sectors() {
    let roots: Vec<Root> = (0..N).map(synthetic_root).collect();
    let mut m = Mount::start_with(&["--default-volume", "0"], |data| {
        let options = Options {
            default_volume_slots: N + 1,
            ..Options::default()
        };
        let engine = Engine::open(data, options).expect("open the engine offline");
        engine
            .meta()
            .insert_synthetic(1, 0, &roots, 1_700_000_000)
            .expect("record sectors");
    });
    // ls, through a pipe as people do
    let count = m.sh_ok("ls sectors | wc -l");
    assert_eq!(count.trim(), N.to_string());
    let unique = m.sh_ok("ls -f sectors | grep -v '^\\.' | sort -u | wc -l");
    assert_eq!(unique.trim(), N.to_string());
    // read_dir: exactly the recorded roots, each once
    let names: Vec<String> = m.listed();
    assert_eq!(names.len() as u64, N);
    let set: HashSet<&String> = names.iter().collect();
    assert_eq!(set.len() as u64, N);
    for r in &roots {
        assert!(set.contains(&r.to_string()), "{r} not listed");
    }
    // readdir's inode numbers are the ones stat gives
    let out = m.sh_ok("ls -i sectors | head -n 3");
    for line in out.lines() {
        let (ino, name) = line.trim().split_once(' ').unwrap();
        let meta = std::fs::metadata(m.path(&format!("sectors/{name}"))).unwrap();
        assert_eq!(meta.ino().to_string(), ino);
        assert_eq!(meta.len(), 4 << 20);
        assert_eq!(meta.nlink(), 1);
        assert_eq!(meta.mtime(), 1_700_000_000);
    }
    // ls -l stats every one of them
    let long = m.sh_ok("ls -l sectors | grep -c ' 4194304 '");
    assert_eq!(long.trim(), N.to_string());
    assert_eq!(m.used(1), N);
    // the list stays exact while it changes: one removed, one added
    std::fs::remove_file(m.path(&format!("sectors/{}", roots[1234]))).unwrap();
    let new = m.put(&sector(800));
    let names = m.listed();
    assert_eq!(names.len() as u64, N);
    assert!(names.contains(&new.to_string()));
    assert!(!names.contains(&roots[1234].to_string()));
    // and after a remount
    m.remount();
    assert_eq!(m.sh_ok("ls sectors | wc -l").trim(), N.to_string());
    assert_eq!(std::fs::read(m.sector_path(&new)).unwrap(), sector(800));
}
