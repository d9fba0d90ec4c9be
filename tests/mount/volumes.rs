//! `/volumes/add`, the per-volume files, `readonly` and `df`.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::harness::{Mount, errno, sector, xattr};

const MIB: u64 = 1 << 20;
const TIB: u64 = 1 << 40;

fn volume_ids(m: &Mount) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(m.path("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    ids.sort();
    ids
}

/// (size, avail) in 4 MiB blocks, as `df -B4M` shows them.
fn df(m: &Mount) -> (u64, u64) {
    let out = m.sh_ok("df -B4M --output=size,avail .");
    let line = out.lines().nth(1).expect("a df line");
    let nums: Vec<u64> = line
        .split_whitespace()
        .map(|w| w.trim_end_matches('M').parse().unwrap())
        .collect();
    (nums[0], nums[1])
}

/// A directory whose file system takes a 20 TiB sparse file, if there is
/// one (ext4 stops at 16 TiB; tmpfs does not).
fn huge_sparse_dir(m: &Mount) -> Option<PathBuf> {
    let candidates = [m.scratch().to_path_buf(), PathBuf::from("/dev/shm")];
    for dir in candidates {
        let probe = dir.join(format!("sectorfs-probe-{}", std::process::id()));
        let ok = std::fs::File::create(&probe)
            .and_then(|f| f.set_len(20 * TIB))
            .is_ok();
        let _ = std::fs::remove_file(&probe);
        if ok {
            return Some(dir);
        }
    }
    None
}

#[test]
fn add_makes_a_sparse_volume_ready_at_once() {
    let m = Mount::start(&[]);
    let path = m.scratch().join("v2.vol");
    m.write("volumes/add", &format!("{} 8\n", path.display()))
        .unwrap();
    assert_eq!(volume_ids(&m), ["1", "2", "add", "attach"]);
    let mut files: Vec<String> = std::fs::read_dir(m.path("volumes/2"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    for f in [
        "path", "uuid", "slots", "used", "readonly", "state", "stats",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} missing from {files:?}");
    }
    assert_eq!(m.read("volumes/2/path"), format!("{}\n", path.display()));
    let uuid = m.read("volumes/2/uuid");
    assert_eq!(uuid.trim().len(), 36, "{uuid}");
    assert_ne!(uuid, m.read("volumes/1/uuid"));
    assert_eq!(m.read("volumes/2/slots"), "8\n");
    assert_eq!(m.read("volumes/2/used"), "0\n");
    assert_eq!(m.read("volumes/2/readonly"), "0\n");
    assert_eq!(m.read("volumes/2/state"), "ready\n");
    let stats = m.read("volumes/2/stats");
    for key in ["reads", "writes", "read_errors", "write_errors", "corrupt"] {
        assert!(
            stats
                .lines()
                .any(|l| l.split_whitespace().next() == Some(key)
                    && l.split_whitespace()
                        .nth(1)
                        .is_some_and(|v| v.parse::<u64>().is_ok())),
            "{key} missing from stats:\n{stats}"
        );
    }
    // a sparse file of the full size, with nothing allocated
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 8 * 4 * MIB);
    assert!(
        meta.blocks() * 512 < MIB,
        "{} blocks allocated",
        meta.blocks()
    );
    // with the default volume read-only, new sectors go to it at once
    m.write("volumes/1/readonly", "1").unwrap();
    let root = m.put(&sector(300));
    assert_eq!(
        xattr(&m.sector_path(&root), "user.sectorfs.volume").unwrap(),
        "2"
    );
    assert_eq!(m.read("volumes/2/used"), "1\n");
    let stats = m.read("volumes/2/stats");
    assert!(stats.contains("writes 1\n"), "{stats}");
    std::fs::read(m.sector_path(&root)).unwrap();
    assert!(m.read("volumes/2/stats").contains("reads "));
    // the generated files cannot be written
    for f in ["path", "uuid", "used", "state", "stats"] {
        let e = m.write(&format!("volumes/2/{f}"), "x").unwrap_err();
        assert!(matches!(errno(&e), libc::EACCES | libc::EPERM), "{f}: {e}");
    }
    assert_eq!(m.read("volumes/2/path"), format!("{}\n", path.display()));
    // a volume that does not exist
    assert_eq!(
        errno(&std::fs::read(m.path("volumes/9/slots")).unwrap_err()),
        libc::ENOENT
    );
}

/// "no per-slot work, so a 20 TiB volume is added in well under a second"
#[test]
fn a_huge_volume_is_added_in_well_under_a_second() {
    let m = Mount::start(&[]);
    let (dir, size) = match huge_sparse_dir(&m) {
        Some(d) => (d, 20 * TIB),
        None => (m.scratch().to_path_buf(), TIB),
    };
    let path = dir.join(format!("sectorfs-huge-{}.vol", std::process::id()));
    let _cleanup = RemoveOnDrop(path.clone());
    let t = Instant::now();
    m.write(
        "volumes/add",
        &format!("{} {}TiB\n", path.display(), size / TIB),
    )
    .unwrap();
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "adding {size} bytes took {took:?}"
    );
    let slots = size / (4 * MIB);
    assert_eq!(m.read("volumes/2/slots"), format!("{slots}\n"));
    assert_eq!(m.read("volumes/2/state"), "ready\n");
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), size);
    assert!(
        meta.blocks() * 512 < MIB,
        "{} blocks allocated",
        meta.blocks()
    );
    // ready at once: df counts it, and a sector lands in it
    let (total, avail) = df(&m);
    assert_eq!(total, 256 + slots);
    assert_eq!(avail, 256 + slots);
    m.write("volumes/1/readonly", "1").unwrap();
    let root = m.put(&sector(310));
    assert_eq!(
        xattr(&m.sector_path(&root), "user.sectorfs.volume").unwrap(),
        "2"
    );
    assert_eq!(std::fs::read(m.sector_path(&root)).unwrap(), sector(310));
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn add_refuses_bad_input() {
    let m = Mount::start(&[]);
    let s = m.scratch();
    std::fs::write(s.join("exists.vol"), b"").unwrap();
    let p = |name: &str| s.join(name).display().to_string();
    let cases = [
        ("garbage".to_string(), libc::EINVAL),
        (p("nosize.vol"), libc::EINVAL),
        ("relative.vol 8".to_string(), libc::EINVAL),
        ("./relative.vol 8".to_string(), libc::EINVAL),
        (format!("{} 0", p("zero.vol")), libc::EINVAL),
        (format!("{} 1000B", p("partial.vol")), libc::EINVAL),
        (format!("{} 5MiB", p("partial.vol")), libc::EINVAL),
        (format!("{} 8XB", p("unit.vol")), libc::EINVAL),
        (format!("{} -8", p("neg.vol")), libc::EINVAL),
        (
            format!("{} 8", m.path("inside.vol").display()),
            libc::EINVAL,
        ),
        (format!("{} 8", p("exists.vol")), libc::EEXIST),
        (format!("{} 8", s.display()), libc::EEXIST),
        (format!("{} 8", p("missing/dir.vol")), libc::ENOENT),
    ];
    for (line, want) in &cases {
        let e = m.write("volumes/add", &format!("{line}\n")).unwrap_err();
        assert_eq!(errno(&e), *want, "{line:?}: {e}");
    }
    // nothing was made, and the file that was there is untouched
    assert_eq!(volume_ids(&m), ["1", "add", "attach"]);
    for name in [
        "nosize.vol",
        "zero.vol",
        "partial.vol",
        "unit.vol",
        "neg.vol",
        "missing",
    ] {
        assert!(!s.join(name).exists(), "{name} was created");
    }
    assert_eq!(std::fs::metadata(s.join("exists.vol")).unwrap().len(), 0);
    assert_eq!(df(&m), (256, 256));
    // sizes with units are whole sectors
    m.write("volumes/add", &format!("{} 64MiB", p("units.vol")))
        .unwrap();
    assert_eq!(m.read("volumes/2/slots"), "16\n");
    // a path with spaces works: the size is the last word
    let spaced = s.join("with space.vol");
    m.write("volumes/add", &format!("{} 2", spaced.display()))
        .unwrap();
    assert_eq!(m.read("volumes/3/path"), format!("{}\n", spaced.display()));
    assert_eq!(std::fs::metadata(&spaced).unwrap().len(), 8 * MIB);
}

#[test]
fn readonly_volumes_serve_reads_and_take_nothing_new() {
    let m = Mount::start(&["--default-volume", "2"]);
    let a = m.put(&sector(320));
    let v2 = m.scratch().join("v2.vol");
    m.sh_ok(&format!("echo '{} 4' > volumes/add", v2.display()));
    assert_eq!(df(&m), (6, 5));
    m.sh_ok("echo 1 > volumes/1/readonly");
    assert_eq!(m.read("volumes/1/readonly"), "1\n");
    // df: free slots of writable volumes only
    assert_eq!(df(&m), (6, 4));
    let vfs = nix::sys::statvfs::statvfs(&m.mnt).unwrap();
    assert_eq!(vfs.fragment_size() as u64, 4 * MIB);
    assert_eq!(
        vfs.blocks() as u64 * vfs.fragment_size() as u64,
        6 * 4 * MIB
    );
    assert_eq!(vfs.blocks_available() as u64, 4);
    // used is what sectors occupy: the read-only volume's free slots are
    // free, not used (df showed them as used)
    assert_eq!(vfs.blocks_free() as u64, 5);
    let used = m.sh_ok("df -B4M --output=used . | tail -1");
    assert_eq!(used.trim().trim_end_matches('M'), "1", "df's Used column");
    // new sectors go to the writable volume, until it is full
    let mut on_v2 = Vec::new();
    for seed in 321..325 {
        let r = m.put(&sector(seed));
        assert_eq!(
            xattr(&m.sector_path(&r), "user.sectorfs.volume").unwrap(),
            "2"
        );
        on_v2.push(r);
    }
    assert_eq!(m.used(1), 1);
    assert_eq!(m.used(2), 4);
    assert_eq!(df(&m), (6, 0));
    // volume 1 has a free slot, but it is read-only: ENOSPC
    let e = m.try_put(&sector(325)).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC);
    assert_eq!(m.used(1), 1);
    // reads go on from the read-only volume
    assert_eq!(std::fs::read(m.sector_path(&a)).unwrap(), sector(320));
    // and its sectors can still be dropped
    let b = on_v2.pop().unwrap();
    std::fs::remove_file(m.sector_path(&b)).unwrap();
    assert_eq!(df(&m), (6, 1));
    // writable again: it takes sectors again
    m.write("volumes/1/readonly", "0\n").unwrap();
    assert_eq!(m.read("volumes/1/readonly"), "0\n");
    assert_eq!(df(&m), (6, 2));
    m.write("volumes/2/readonly", "1\n").unwrap();
    let c = m.put(&sector(325));
    assert_eq!(
        xattr(&m.sector_path(&c), "user.sectorfs.volume").unwrap(),
        "1"
    );
    // only 0 and 1
    for bad in ["2", "yes", "", "01x"] {
        let before = m.read("volumes/1/readonly");
        let r = m.write("volumes/1/readonly", &format!("{bad}\n"));
        if !bad.is_empty() {
            assert_eq!(errno(&r.unwrap_err()), libc::EINVAL, "{bad:?}");
        }
        assert_eq!(m.read("volumes/1/readonly"), before, "{bad:?}");
    }
    // the flag survives a remount
    let mut m = m;
    m.remount();
    assert_eq!(m.read("volumes/2/readonly"), "1\n");
    assert_eq!(m.read("volumes/1/readonly"), "0\n");
    assert_eq!(df(&m), (6, 0));
    for r in on_v2.iter().chain([&a, &c]) {
        assert!(m.sector_path(r).exists());
    }
}
