//! `/sectors`: writing, reading, stat, xattrs, unlink and every errno.

use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::{SystemTime, UNIX_EPOCH};

use super::harness::{Mount, close, errno, sector, unstored_root, write_file, xattr, xattr_names};
use sectorfs::merkle::{SECTOR_SIZE, sector_root};

#[test]
fn write_read_stat_and_remove() {
    let m = Mount::start(&[]);
    let data = sector(1);
    let root = m.put(&data);
    let path = m.sector_path(&root);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), SECTOR_SIZE as u64);
    assert!(meta.is_file());
    assert_eq!(meta.nlink(), 1);
    assert_eq!(m.listed(), vec![root.to_string()]);
    assert_eq!(m.used(1), 1);
    std::fs::remove_file(&path).unwrap();
    assert!(!path.exists());
    assert!(m.listed().is_empty());
    assert_eq!(m.used(1), 0);
    let e = std::fs::read(&path).unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
}

/// A close reports on the data as it is then: a truncate through another
/// descriptor after a close that found the file short is data changed, so
/// the next close decides anew.
#[test]
fn a_truncate_after_a_refused_close_is_decided_anew() {
    let m = Mount::start(&[]);
    let mut data = sector(4);
    data[SECTOR_SIZE - 4096..].fill(0);
    let root = sector_root(&data);
    let mut f = std::fs::File::create(m.sector_path(&root)).unwrap();
    f.write_all(&data[..SECTOR_SIZE - 4096]).unwrap();
    let g = f.try_clone().unwrap();
    assert_eq!(errno(&close(f).unwrap_err()), libc::EINVAL);
    // zero-extended to 4 MiB, it is the whole sector
    g.set_len(SECTOR_SIZE as u64).unwrap();
    close(g).unwrap();
    assert_eq!(std::fs::read(m.sector_path(&root)).unwrap(), data);
}

#[test]
fn bad_writes_store_nothing() {
    let m = Mount::start(&[]);
    let data = sector(2);
    let root = sector_root(&data);
    // bad names: EINVAL at create
    let upper = root.to_string().to_uppercase();
    let short_name = &root.to_string()[..63];
    let long_name = format!("{root}0");
    for name in ["nothex", upper.as_str(), short_name, long_name.as_str()] {
        let e = std::fs::write(m.path(&format!("sectors/{name}")), &data).unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "name {name}");
    }
    // short file: EINVAL at close
    let mut f = std::fs::File::create(m.sector_path(&root)).unwrap();
    f.write_all(&data[..1000]).unwrap();
    assert_eq!(errno(&close(f).unwrap_err()), libc::EINVAL);
    // empty file: EINVAL at close too
    let f = std::fs::File::create(m.sector_path(&root)).unwrap();
    assert_eq!(errno(&close(f).unwrap_err()), libc::EINVAL);
    // wrong data: EBADMSG at close
    let mut f = std::fs::File::create(m.sector_path(&root)).unwrap();
    f.write_all(&sector(3)).unwrap();
    assert_eq!(errno(&close(f).unwrap_err()), libc::EBADMSG);
    // past 4 MiB: EFBIG, on the write and again at close, even with the
    // whole right sector written too. (The write past the end comes first:
    // a close of a copy of the fd, e.g. by a process another test thread
    // forks and execs, is a flush, and with the whole sector written it
    // would store it, as it should.)
    let mut f = std::fs::File::create(m.sector_path(&root)).unwrap();
    let e = f.write_at(b"x", SECTOR_SIZE as u64).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG);
    f.write_all(&data).unwrap();
    assert_eq!(errno(&f.write_all(b"x").unwrap_err()), libc::EFBIG);
    assert_eq!(errno(&close(f).unwrap_err()), libc::EFBIG);
    // a positioned write that straddles the end: EFBIG
    let f = std::fs::File::create(m.sector_path(&root)).unwrap();
    let e = f.write_at(b"xy", SECTOR_SIZE as u64 - 1).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG);
    f.write_all_at(&data, 0).unwrap();
    assert_eq!(errno(&close(f).unwrap_err()), libc::EFBIG);
    assert!(m.listed().is_empty());
    assert_eq!(m.used(1), 0);
    // every refusal has a line in the log that says why in words
    let log = m.log();
    for words in [
        "not a sector root",
        "is 1000 bytes at close",
        "hashes to",
        "runs past it",
        "was written past 4 MiB",
    ] {
        assert!(log.contains(words), "no {words:?} in the log:\n{log}");
    }
    // and the right data under the same name still stores fine afterwards
    m.put(&data);
    assert_eq!(m.listed(), vec![root.to_string()]);
}

/// A refused rewrite of a stored sector leaves it exactly as it was.
#[test]
fn failed_rewrite_changes_nothing() {
    let m = Mount::start(&[]);
    let data = sector(10);
    let root = m.put(&data);
    // keep it by a contract entry only, so a new pin would show
    write_file(&m.path("contracts/c"), format!("{root}\n").as_bytes()).unwrap();
    std::fs::remove_file(m.sector_path(&root)).unwrap();
    assert_eq!(m.refs(&root), "pin=0 contracts=1 temp=0");
    let ino = std::fs::metadata(m.sector_path(&root)).unwrap().ino();
    let unchanged = |what: &str| {
        assert_eq!(m.refs(&root), "pin=0 contracts=1 temp=0", "{what}");
        assert_eq!(m.nlink(&root), 1, "{what}");
        assert_eq!(std::fs::read(m.sector_path(&root)).unwrap(), data, "{what}");
        assert_eq!(m.used(1), 1, "{what}");
        assert_eq!(m.listed(), vec![root.to_string()], "{what}");
    };
    let trunc = || {
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(m.sector_path(&root))
            .unwrap()
    };
    let mut f = trunc();
    f.write_all(&data[..SECTOR_SIZE - 1]).unwrap();
    assert_eq!(errno(&close(f).unwrap_err()), libc::EINVAL);
    unchanged("short rewrite");
    let mut f = trunc();
    f.write_all(&sector(11)).unwrap();
    assert_eq!(errno(&close(f).unwrap_err()), libc::EBADMSG);
    unchanged("wrong data");
    let mut f = trunc();
    let e = f.write_at(b"!", SECTOR_SIZE as u64).unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG);
    f.write_all(&data).unwrap();
    assert_eq!(errno(&f.write_all(b"!").unwrap_err()), libc::EFBIG);
    assert_eq!(errno(&close(f).unwrap_err()), libc::EFBIG);
    unchanged("too long");
    // without O_TRUNC: EPERM at open, whatever the other flags
    let mut opts = std::fs::OpenOptions::new();
    for (what, o) in [
        ("write", opts.write(true)),
        (
            "read-write",
            std::fs::OpenOptions::new().read(true).write(true),
        ),
        ("append", std::fs::OpenOptions::new().append(true)),
    ] {
        let e = o.open(m.sector_path(&root)).unwrap_err();
        assert_eq!(errno(&e), libc::EPERM, "{what}");
        unchanged(what);
    }
    // O_CREAT without O_TRUNC on an existing sector is the same open
    let e = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(m.sector_path(&root))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EPERM);
    // O_CREAT|O_EXCL: it exists
    let e = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.sector_path(&root))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST);
    unchanged("create_new");
    // stored data cannot be truncated
    let f = std::fs::File::open(m.sector_path(&root)).unwrap();
    drop(f);
    let e = nix::unistd::truncate(&m.sector_path(&root), 10).unwrap_err();
    assert_eq!(e as i32, libc::EPERM);
    unchanged("truncate");
    // a correct rewrite adds the pin back, and stores no second copy
    let mut f = trunc();
    f.write_all(&data).unwrap();
    close(f).unwrap();
    assert_eq!(m.refs(&root), "pin=1 contracts=1 temp=0");
    assert_eq!(m.nlink(&root), 2);
    assert_eq!(m.used(1), 1);
    assert_eq!(std::fs::metadata(m.sector_path(&root)).unwrap().ino(), ino);
}

/// ENOSPC when no writable volume has room; a freed slot is reused.
#[test]
fn no_space_and_slot_reuse() {
    let m = Mount::start(&["--default-volume", "2"]);
    assert_eq!(m.read("volumes/1/slots"), "2\n");
    let a = m.put(&sector(20));
    let no_space = |m: &Mount| {
        m.status_json()["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| {
                a["message"]
                    .as_str()
                    .unwrap()
                    .contains("no writable volume")
            })
    };
    assert!(!no_space(&m));
    let b = m.put(&sector(21));
    // full: the operator is told at once, before a write is refused
    assert!(no_space(&m), "{}", m.read("status"));
    let c_data = sector(22);
    let e = m.try_put(&c_data).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC);
    let mut want = vec![a.to_string(), b.to_string()];
    want.sort();
    assert_eq!(m.listed(), want);
    assert_eq!(m.used(1), 2);
    assert_eq!(std::fs::read(m.sector_path(&a)).unwrap(), sector(20));
    assert_eq!(std::fs::read(m.sector_path(&b)).unwrap(), sector(21));
    // the operator is told
    let status = m.status_json();
    let alerts = status["alerts"].as_array().unwrap();
    assert!(
        alerts.iter().any(|a| a["message"]
            .as_str()
            .unwrap()
            .contains("no writable volume")),
        "{status}"
    );
    assert!(!m.read("status").starts_with("ok"));
    // a freed slot is reused by the next sector
    let slot_a = xattr(&m.sector_path(&a), "user.sectorfs.slot").unwrap();
    std::fs::remove_file(m.sector_path(&a)).unwrap();
    assert_eq!(m.used(1), 1);
    let c = m.put(&c_data);
    assert_eq!(
        xattr(&m.sector_path(&c), "user.sectorfs.slot").unwrap(),
        slot_a
    );
    assert_eq!(
        xattr(&m.sector_path(&c), "user.sectorfs.volume").unwrap(),
        "1"
    );
    assert_eq!(std::fs::read(m.sector_path(&c)).unwrap(), c_data);
    assert_eq!(std::fs::read(m.sector_path(&b)).unwrap(), sector(21));
    assert!(!m.sector_path(&a).exists());
    assert_eq!(m.used(1), 2);
    // the space alert went away once there was room again
    std::fs::remove_file(m.sector_path(&b)).unwrap();
    let status = m.status_json();
    assert!(
        !status["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["message"]
                .as_str()
                .unwrap()
                .contains("no writable volume")),
        "{status}"
    );
}

/// Writing a root that is stored stores no second copy; it adds the pin.
#[test]
fn dedup_adds_the_pin_only() {
    let m = Mount::start(&[]);
    let data = sector(30);
    let root = m.put(&data);
    let ino = std::fs::metadata(m.sector_path(&root)).unwrap().ino();
    m.put(&data);
    m.put(&data);
    assert_eq!(m.used(1), 1);
    assert_eq!(m.nlink(&root), 1);
    assert_eq!(m.refs(&root), "pin=1 contracts=0 temp=0");
    assert_eq!(std::fs::metadata(m.sector_path(&root)).unwrap().ino(), ino);
    assert_eq!(m.listed(), vec![root.to_string()]);
    // a sector held by a temp entry only gets the pin added
    let data2 = sector(31);
    let root2 = sector_root(&data2);
    std::fs::create_dir(m.path("temp/100")).unwrap();
    write_file(&m.path(&format!("temp/100/{root2}")), &data2).unwrap();
    assert_eq!(m.refs(&root2), "pin=0 contracts=0 temp=1");
    m.put(&data2);
    assert_eq!(m.refs(&root2), "pin=1 contracts=0 temp=1");
    assert_eq!(m.nlink(&root2), 2);
    assert_eq!(m.used(1), 2);
    // several writers of the same new root at once: one copy
    let data3 = sector(32);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| m.put(&data3));
        }
    });
    let root3 = sector_root(&data3);
    assert_eq!(m.refs(&root3), "pin=1 contracts=0 temp=0");
    assert_eq!(m.used(1), 3);
    assert_eq!(std::fs::read(m.sector_path(&root3)).unwrap(), data3);
}

#[test]
fn unlink_drops_the_pin_or_is_busy() {
    let m = Mount::start(&[]);
    let data = sector(40);
    let root = m.put(&data);
    write_file(&m.path("contracts/c"), format!("{root}\n").as_bytes()).unwrap();
    std::fs::create_dir(m.path("temp/100")).unwrap();
    m.sh_ok(&format!("ln sectors/{root} temp/100/{root}"));
    assert_eq!(m.nlink(&root), 3);
    // rm drops the pin; the sector stays for its other references
    m.sh_ok(&format!("rm sectors/{root}"));
    assert_eq!(m.refs(&root), "pin=0 contracts=1 temp=1");
    assert_eq!(m.nlink(&root), 2);
    assert_eq!(m.listed(), vec![root.to_string()]);
    // no pin left: EBUSY, and nothing changes
    let e = std::fs::remove_file(m.sector_path(&root)).unwrap_err();
    assert_eq!(errno(&e), libc::EBUSY);
    let out = m.sh(&format!("rm sectors/{root}"));
    assert!(!out.status.success());
    assert_eq!(m.refs(&root), "pin=0 contracts=1 temp=1");
    assert_eq!(m.read("contracts/c"), format!("{root}\n"));
    assert_eq!(m.listed(), vec![root.to_string()]);
    assert_eq!(std::fs::read(m.sector_path(&root)).unwrap(), data);
    // not stored, or not a root: ENOENT
    let e = std::fs::remove_file(m.sector_path(&unstored_root(41))).unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
    let e = std::fs::remove_file(m.path("sectors/nothex")).unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
    // dropping the last references frees it
    std::fs::remove_file(m.path(&format!("temp/100/{root}"))).unwrap();
    assert_eq!(m.nlink(&root), 1);
    std::fs::remove_file(m.path("contracts/c")).unwrap();
    assert!(m.listed().is_empty());
    assert_eq!(m.used(1), 0);
    assert_eq!(
        errno(&std::fs::read(m.sector_path(&root)).unwrap_err()),
        libc::ENOENT
    );
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn stat_xattrs_and_stable_inodes() {
    let mut m = Mount::start(&[]);
    let before = unix_now();
    let a = m.put(&sector(50));
    let after = unix_now();
    let b = m.put(&sector(51));
    let meta = std::fs::metadata(m.sector_path(&a)).unwrap();
    assert_eq!(meta.len(), SECTOR_SIZE as u64);
    assert!(
        (before..=after).contains(&meta.mtime()),
        "mtime {}",
        meta.mtime()
    );
    assert_eq!(meta.nlink(), 1);
    let ino_a = meta.ino();
    let ino_b = std::fs::metadata(m.sector_path(&b)).unwrap().ino();
    assert_ne!(ino_a, ino_b);
    // the same through stat(1)
    let out = m.sh_ok(&format!("stat -c '%s %h %i %Y' sectors/{a}"));
    assert_eq!(
        out.trim(),
        format!("{SECTOR_SIZE} 1 {ino_a} {}", meta.mtime())
    );
    // and through ls -i
    let out = m.sh_ok(&format!("ls -i sectors/{a}"));
    assert!(out.starts_with(&ino_a.to_string()), "{out}");
    // xattrs
    let pa = m.sector_path(&a);
    assert_eq!(xattr(&pa, "user.sectorfs.volume").unwrap(), "1");
    assert_eq!(xattr(&pa, "user.sectorfs.slot").unwrap(), "0");
    assert_eq!(
        xattr(&m.sector_path(&b), "user.sectorfs.slot").unwrap(),
        "1"
    );
    assert_eq!(
        xattr(&pa, "user.sectorfs.refs").unwrap(),
        "pin=1 contracts=0 temp=0"
    );
    assert_eq!(xattr(&pa, "user.sectorfs.copies").unwrap(), "1:0");
    let mut names = xattr_names(&pa).unwrap();
    names.sort();
    assert_eq!(
        names,
        [
            "user.sectorfs.copies",
            "user.sectorfs.refs",
            "user.sectorfs.slot",
            "user.sectorfs.stored_at",
            "user.sectorfs.tier",
            "user.sectorfs.volume"
        ]
    );
    assert_eq!(errno(&xattr(&pa, "user.other").unwrap_err()), libc::ENODATA);
    // other namespaces are not supported at all, so `ls -l` stops asking
    // each file for its label and ACL after the first
    for name in ["security.selinux", "system.posix_acl_access"] {
        for p in [&pa, &m.path("sectors")] {
            assert_eq!(errno(&xattr(p, name).unwrap_err()), libc::ENOTSUP, "{name}");
        }
    }
    if m.sh("command -v getfattr").status.success() {
        let out = m.sh_ok(&format!(
            "getfattr --only-values -n user.sectorfs.refs sectors/{a}"
        ));
        assert_eq!(out, "pin=1 contracts=0 temp=0");
    }
    // attributes are the store's: they cannot be set
    let p = std::ffi::CString::new(pa.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new("user.sectorfs.refs").unwrap();
    // SAFETY: valid C strings and a 1-byte value.
    let rc = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), b"x".as_ptr().cast(), 1, 0) };
    assert_eq!(rc, -1);
    assert_eq!(
        xattr(&pa, "user.sectorfs.refs").unwrap(),
        "pin=1 contracts=0 temp=0"
    );
    // st_nlink counts every reference: the same root twice in a contract is two
    write_file(
        &m.path("contracts/c"),
        format!("{a}\n{a}\n{b}\n").as_bytes(),
    )
    .unwrap();
    std::fs::create_dir(m.path("temp/9")).unwrap();
    std::fs::hard_link(&pa, m.path(&format!("temp/9/{a}"))).unwrap();
    assert_eq!(m.nlink(&a), 4);
    assert_eq!(
        xattr(&pa, "user.sectorfs.refs").unwrap(),
        "pin=1 contracts=2 temp=1"
    );
    assert_eq!(m.nlink(&b), 2);
    // the inode and mtime survive a remount
    m.remount();
    let meta2 = std::fs::metadata(m.sector_path(&a)).unwrap();
    assert_eq!(meta2.ino(), ino_a);
    assert_eq!(meta2.mtime(), meta.mtime());
    assert_eq!(meta2.nlink(), 4);
    assert_eq!(std::fs::metadata(m.sector_path(&b)).unwrap().ino(), ino_b);
    // readdir reports the same inode numbers as stat
    let out = m.sh_ok("ls -i sectors");
    assert!(out.contains(&format!("{ino_a} {a}")), "{out}");
    assert!(out.contains(&format!("{ino_b} {b}")), "{out}");
}

/// `cp blob /mnt/sectors/$(sectorfs root blob | cut -c1-64)`, then the
/// standard tools agree on the bytes.
#[test]
fn standard_tools() {
    let m = Mount::start(&[]);
    let data = sector(60);
    let root = sector_root(&data);
    std::fs::write(m.scratch().join("blob"), &data).unwrap();
    m.sh_ok("cp $S/blob $MNT/sectors/$(sectorfs root $S/blob | cut -c1-64)");
    assert_eq!(m.listed(), vec![root.to_string()]);
    let sums = m.sh_ok(&format!(
        "b2sum < $S/blob; b2sum < sectors/{root}; cat sectors/{root} | b2sum"
    ));
    let lines: Vec<&str> = sums.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| *l == lines[0]), "{sums}");
    m.sh_ok(&format!("cmp $S/blob sectors/{root}"));
    // a shell redirection (the shell duplicates the fd) and dd work too
    let data2 = sector(61);
    let root2 = sector_root(&data2);
    std::fs::write(m.scratch().join("blob2"), &data2).unwrap();
    m.sh_ok(&format!("cat $S/blob2 > sectors/{root2}"));
    m.sh_ok(&format!("cmp $S/blob2 sectors/{root2}"));
    let data3 = sector(62);
    let root3 = sector_root(&data3);
    std::fs::write(m.scratch().join("blob3"), &data3).unwrap();
    m.sh_ok(&format!(
        "dd if=$S/blob3 of=sectors/{root3} bs=1M status=none"
    ));
    m.sh_ok(&format!("cmp $S/blob3 sectors/{root3}"));
    // ls -l shows three 4 MiB files
    let out = m.sh_ok("ls -l sectors");
    let files: Vec<&str> = out.lines().filter(|l| l.starts_with('-')).collect();
    assert_eq!(files.len(), 3, "{out}");
    assert!(files.iter().all(|l| l.contains(" 4194304 ")), "{out}");
    // cp of a file that is not the named sector fails and stores nothing
    let out = m.sh(&format!("cp $S/blob sectors/{}", unstored_root(63)));
    assert!(!out.status.success(), "cp of wrong data succeeded");
    assert_eq!(m.listed().len(), 3);
    // cp of a stored sector onto itself again: dedup, still one copy
    m.sh_ok(&format!("cp $S/blob sectors/{root}"));
    assert_eq!(m.used(1), 3);
    // a sector copied out is byte-for-byte the original
    m.sh_ok(&format!("cp sectors/{root} $S/out && cmp $S/out $S/blob"));
}

/// Writes may come in any order within the first 4 MiB.
#[test]
fn writes_in_any_order() {
    let m = Mount::start(&[]);
    let data = sector(70);
    let root = sector_root(&data);
    let f = std::fs::File::create(m.sector_path(&root)).unwrap();
    const CHUNK: usize = 128 << 10;
    for i in (0..SECTOR_SIZE / CHUNK).rev() {
        f.write_all_at(&data[i * CHUNK..(i + 1) * CHUNK], (i * CHUNK) as u64)
            .unwrap();
    }
    close(f).unwrap();
    assert_eq!(std::fs::read(m.sector_path(&root)).unwrap(), data);

    // odd sizes, overlaps and rewrites of already written ranges
    let data = sector(71);
    let root = sector_root(&data);
    let f = std::fs::File::create(m.sector_path(&root)).unwrap();
    f.write_all_at(&data[3_000_000..], 3_000_000).unwrap();
    f.write_all_at(&[0xAA; 5000], 12_345).unwrap();
    f.write_all_at(&data[..1_500_001], 0).unwrap();
    f.write_all_at(&data[1_000_000..3_000_007], 1_000_000)
        .unwrap();
    close(f).unwrap();
    assert_eq!(std::fs::read(m.sector_path(&root)).unwrap(), data);

    // a sector with a hole that is never written: ftruncate to 4 MiB
    let mut data = sector(72);
    data[1 << 20..2 << 20].fill(0);
    let root = sector_root(&data);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.sector_path(&root))
        .unwrap();
    f.write_all_at(&data[2 << 20..], 2 << 20).unwrap();
    f.write_all_at(&data[..1 << 20], 0).unwrap();
    f.set_len(SECTOR_SIZE as u64).unwrap();
    close(f).unwrap();
    assert_eq!(std::fs::read(m.sector_path(&root)).unwrap(), data);
    assert_eq!(m.used(1), 3);
}

/// A sector written and read in many small pieces and at odd offsets.
#[test]
fn partial_reads() {
    let m = Mount::start(&[]);
    let data = sector(80);
    let root = m.put(&data);
    let f = std::fs::File::open(m.sector_path(&root)).unwrap();
    for (off, len) in [
        (0usize, 1usize),
        (4095, 2),
        (1 << 20, 70_000),
        (SECTOR_SIZE - 10, 10),
    ] {
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off as u64).unwrap();
        assert_eq!(buf, &data[off..off + len]);
    }
    // past the end: EOF
    let mut buf = [0u8; 16];
    assert_eq!(f.read_at(&mut buf, SECTOR_SIZE as u64).unwrap(), 0);
    assert_eq!(f.read_at(&mut buf, SECTOR_SIZE as u64 - 4).unwrap(), 4);
}
