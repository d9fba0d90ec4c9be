//! What was stored survives an unmount and a crash of the daemon.

use std::os::unix::fs::MetadataExt;

use super::harness::{Mount, sector, write_file};
use sectorfs::merkle::{Root, sector_root};

/// Everything a user can see of the store, for comparing before and after.
fn snapshot(m: &Mount, roots: &[Root]) -> Vec<String> {
    let mut out = vec![
        format!("sectors {:?}", m.listed()),
        format!("height {}", m.read("height")),
        format!("temp {}", m.sh_ok("ls temp")),
        format!("contracts {}", m.sh_ok("ls contracts")),
        format!("volumes {}", m.sh_ok("ls volumes")),
        format!("used {}", m.used(1)),
    ];
    for c in m.sh_ok("ls contracts").lines() {
        out.push(format!(
            "contract {c}: {}",
            m.read(&format!("contracts/{c}"))
        ));
    }
    for t in m.sh_ok("ls temp").lines() {
        out.push(format!("temp {t}: {}", m.sh_ok(&format!("ls temp/{t}"))));
    }
    for r in roots {
        let meta = std::fs::metadata(m.sector_path(r)).unwrap();
        out.push(format!(
            "{r}: ino {} mtime {} nlink {} refs {}",
            meta.ino(),
            meta.mtime(),
            meta.nlink(),
            m.refs(r)
        ));
    }
    out
}

#[test]
fn data_contracts_temp_entries_and_height_survive_remount() {
    let mut m = Mount::start(&[]);
    let a = m.put(&sector(500));
    let b = m.put(&sector(501));
    write_file(
        &m.path("contracts/k1"),
        format!("{a}\n{b}\n{a}\n").as_bytes(),
    )
    .unwrap();
    m.sh_ok("mkdir temp/50 temp/60");
    let c_data = sector(502);
    let c = sector_root(&c_data);
    write_file(&m.path(&format!("temp/50/{c}")), &c_data).unwrap();
    m.sh_ok(&format!("ln sectors/{a} temp/60/{a}"));
    // b is held by the contract only; d was freed before the remount
    m.sh_ok(&format!("rm sectors/{b}"));
    let d = m.put(&sector(503));
    m.sh_ok(&format!("rm sectors/{d}"));
    m.sh_ok("echo 7 > height");
    let v2 = m.scratch().join("v2.vol");
    m.write("volumes/add", &format!("{} 4", v2.display()))
        .unwrap();
    m.write("volumes/2/readonly", "1").unwrap();
    let roots = [a, b, c];
    let before = snapshot(&m, &roots);

    m.remount();
    assert_eq!(snapshot(&m, &roots), before);
    for (r, seed) in [(a, 500), (b, 501), (c, 502)] {
        assert_eq!(std::fs::read(m.sector_path(&r)).unwrap(), sector(seed));
    }
    assert!(!m.sector_path(&d).exists());
    assert_eq!(m.read("volumes/2/path"), format!("{}\n", v2.display()));
    assert_eq!(m.read("volumes/2/readonly"), "1\n");
    // and the store goes on working: the height still expires entries
    m.sh_ok("echo 50 > height");
    assert!(!m.sector_path(&c).exists());
    assert_eq!(m.refs(&a), "pin=1 contracts=2 temp=1");
    m.sh_ok("echo 60 > height");
    assert_eq!(m.refs(&a), "pin=1 contracts=2 temp=0");
    // a second remount right away is fine too
    m.remount();
    assert_eq!(m.read("height"), "60\n");
    assert_eq!(m.listed().len(), 2);
}

/// "A call that returned success is durable: after a crash or kill -9 it is
/// still there."
#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut m = Mount::start(&[]);
    let a = m.put(&sector(510));
    let b = m.put(&sector(511));
    write_file(&m.path("contracts/k"), format!("{b}\n").as_bytes()).unwrap();
    m.sh_ok(&format!("rm sectors/{b}"));
    m.sh_ok("mkdir temp/9");
    m.sh_ok(&format!("ln sectors/{a} temp/9/{a}"));
    m.sh_ok("echo 4 > height");
    let roots = [a, b];
    let before = snapshot(&m, &roots);
    m.kill();
    m.mount();
    assert_eq!(snapshot(&m, &roots), before);
    assert_eq!(std::fs::read(m.sector_path(&a)).unwrap(), sector(510));
    assert_eq!(std::fs::read(m.sector_path(&b)).unwrap(), sector(511));
    // no slot was leaked or doubled: a new sector takes the next free one
    let c = m.put(&sector(512));
    assert_eq!(m.used(1), 3);
    let slots: std::collections::BTreeSet<String> = [a, b, c]
        .iter()
        .map(|r| super::harness::xattr(&m.sector_path(r), "user.sectorfs.slot").unwrap())
        .collect();
    assert_eq!(slots.len(), 3);
}

/// fsync does what a close would, so its success survives `kill -9` with
/// the files still open: a whole sector is stored, a contract's list is
/// applied. A sector file not yet 4 MiB refuses it (EINVAL): it cannot be
/// stored yet, and a success would claim it was.
#[test]
fn fsync_is_durable_before_the_close() {
    use std::io::Write;
    let mut m = Mount::start(&[]);
    let data = sector(520);
    let root = sector_root(&data);
    let mut f = std::fs::File::create(m.sector_path(&root)).unwrap();
    f.write_all(&data[..3 << 20]).unwrap();
    let e = f.sync_all().unwrap_err();
    assert_eq!(super::harness::errno(&e), libc::EINVAL);
    f.write_all(&data[3 << 20..]).unwrap();
    f.sync_all().unwrap();
    let mut c = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.path("contracts/fsynced"))
        .unwrap();
    c.write_all(format!("{root}\n{root}\n").as_bytes()).unwrap();
    c.sync_all().unwrap();
    m.kill();
    drop((f, c));
    m.mount();
    assert_eq!(std::fs::read(m.sector_path(&root)).unwrap(), data);
    assert_eq!(m.read("contracts/fsynced"), format!("{root}\n{root}\n"));
    assert_eq!(m.refs(&root), "pin=1 contracts=2 temp=0");
}

/// A second daemon on the same data dir is refused with a clear message.
#[test]
fn one_daemon_per_data_dir() {
    let m = Mount::start(&[]);
    let other = m.scratch().join("other-mnt");
    std::fs::create_dir(&other).unwrap();
    let out = std::process::Command::new(super::harness::BIN)
        .arg("mount")
        .arg(&other)
        .arg("--data-dir")
        .arg(&m.data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&m.data.display().to_string()), "{err}");
    // and the first mount is unharmed
    let r = m.put(&sector(520));
    assert_eq!(m.listed(), vec![r.to_string()]);
}
