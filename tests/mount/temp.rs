//! `/temp/<height>` and `/height`: temp entries, their expiry and every errno.

use std::os::fd::AsRawFd;

use super::harness::{Mount, close, errno, sector, write_file};
use sectorfs::merkle::{Root, sector_root};

fn temp_path(m: &Mount, h: u64, root: &Root) -> std::path::PathBuf {
    m.path(&format!("temp/{h}/{root}"))
}

fn dir_names(m: &Mount, rel: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(m.path(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn temp_write_link_and_remove() {
    let m = Mount::start(&[]);
    assert_eq!(m.read("height"), "0\n");
    assert!(dir_names(&m, "temp").is_empty());
    m.sh_ok("mkdir temp/10");
    assert_eq!(dir_names(&m, "temp"), ["10"]);
    assert!(std::fs::metadata(m.path("temp/10")).unwrap().is_dir());
    // its ".." is /temp
    let listing = m.sh_ok("ls -ia temp/10");
    let dotdot = listing
        .lines()
        .find_map(|l| l.trim().strip_suffix(" ..").map(str::trim))
        .unwrap_or_else(|| panic!("no .. in {listing:?}"));
    let temp_ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(m.path("temp")).unwrap());
    assert_eq!(dotdot, temp_ino.to_string());
    // mkdir twice: EEXIST
    assert_eq!(
        errno(&std::fs::create_dir(m.path("temp/10")).unwrap_err()),
        libc::EEXIST
    );
    // create and write as in /sectors: stored with a temp entry
    let data = sector(200);
    let a = sector_root(&data);
    write_file(&temp_path(&m, 10, &a), &data).unwrap();
    assert_eq!(m.listed(), vec![a.to_string()]);
    assert_eq!(m.refs(&a), "pin=0 contracts=0 temp=1");
    assert_eq!(m.nlink(&a), 1);
    assert_eq!(dir_names(&m, "temp/10"), [a.to_string()]);
    assert_eq!(std::fs::read(temp_path(&m, 10, &a)).unwrap(), data);
    assert_eq!(
        std::fs::metadata(temp_path(&m, 10, &a)).unwrap().len(),
        4 << 20
    );
    // writing it again where it is (a retried upload) changes nothing: no
    // pin appears, or the sector would never expire
    write_file(&temp_path(&m, 10, &a), &data).unwrap();
    std::fs::write(m.scratch().join("a"), &data).unwrap();
    m.sh_ok(&format!(
        "cp $S/a temp/10/{a} && sectorfs put $S/a --mount $MNT --temp 10 >/dev/null"
    ));
    assert_eq!(m.refs(&a), "pin=0 contracts=0 temp=1");
    assert_eq!(m.used(1), 1);
    // the same errnos as /sectors when writing
    let bad = sector(201);
    let e = write_file(&temp_path(&m, 10, &sector_root(&sector(202))), &bad).unwrap_err();
    assert_eq!(errno(&e), libc::EBADMSG);
    let e = write_file(&temp_path(&m, 10, &sector_root(&bad)), &bad[..100]).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    let e = write_file(&m.path("temp/10/nothex"), &bad).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    assert_eq!(m.listed(), vec![a.to_string()]);
    assert_eq!(m.used(1), 1);
    // ln adds a temp entry to a stored sector
    m.sh_ok("mkdir temp/20");
    m.sh_ok(&format!("ln sectors/{a} temp/20/{a}"));
    assert_eq!(m.nlink(&a), 2);
    assert_eq!(m.refs(&a), "pin=0 contracts=0 temp=2");
    let b = m.put(&sector(203));
    m.sh_ok(&format!("ln sectors/{b} temp/10/"));
    assert_eq!(m.refs(&b), "pin=1 contracts=0 temp=1");
    assert_eq!(dir_names(&m, "temp/10").len(), 2);
    // a temp entry is the same file as the sector: same inode
    let ino =
        |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    assert_eq!(ino(&temp_path(&m, 10, &b)), ino(&m.sector_path(&b)));
    assert_eq!(m.sh_ok(&format!("stat -c %h temp/10/{b}")).trim(), "2");
    // a link must be named by the root; only sectors can be linked
    let out = m.sh(&format!("ln sectors/{b} temp/20/{a}"));
    assert!(!out.status.success());
    let e = std::fs::hard_link(m.sector_path(&b), m.path("temp/20/other")).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    let e = std::fs::hard_link(m.path("height"), m.path("temp/20/x")).unwrap_err();
    assert_ne!(errno(&e), 0);
    // ln of a sector that is not stored: ENOENT
    let e = std::fs::hard_link(
        m.path(&format!("sectors/{}", sector_root(&bad))),
        m.path("temp/20/y"),
    )
    .unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
    assert_eq!(m.refs(&b), "pin=1 contracts=0 temp=1");
    // ln into a temp dir that does not exist: ENOENT
    let e = std::fs::hard_link(m.sector_path(&b), temp_path(&m, 30, &b)).unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
    // rm drops one entry; the directory stays
    m.sh_ok(&format!("rm temp/20/{a}"));
    assert_eq!(m.refs(&a), "pin=0 contracts=0 temp=1");
    assert_eq!(dir_names(&m, "temp"), ["10", "20"]);
    assert!(dir_names(&m, "temp/20").is_empty());
    assert_eq!(
        errno(&std::fs::remove_file(temp_path(&m, 20, &a)).unwrap_err()),
        libc::ENOENT
    );
    // a directory with entries is not removed; an empty one is
    assert_eq!(
        errno(&std::fs::remove_dir(m.path("temp/10")).unwrap_err()),
        libc::ENOTEMPTY
    );
    m.sh_ok("rmdir temp/20");
    assert_eq!(dir_names(&m, "temp"), ["10"]);
    // the last entry of a temp-only sector: freed
    std::fs::remove_file(temp_path(&m, 10, &a)).unwrap();
    assert!(!m.sector_path(&a).exists());
    assert_eq!(m.used(1), 1);
    // directories can only be made in /temp, named by a plain number
    for name in ["abc", "007", "-1", "1.5"] {
        let e = std::fs::create_dir(m.path(&format!("temp/{name}"))).unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "{name}");
    }
    assert!(std::fs::create_dir(m.path("sectors/dir")).is_err());
    assert_eq!(dir_names(&m, "temp"), ["10"]);
}

#[test]
fn heights_must_be_above_the_current_one() {
    let m = Mount::start(&[]);
    // height 0: temp/0 is not above it
    assert_eq!(
        errno(&std::fs::create_dir(m.path("temp/0")).unwrap_err()),
        libc::EINVAL
    );
    m.sh_ok("mkdir temp/8");
    let dir = std::fs::File::open(m.path("temp/8")).unwrap();
    m.sh_ok("echo 5 > height");
    assert_eq!(m.read("height"), "5\n");
    for h in [3, 5] {
        let e = std::fs::create_dir(m.path(&format!("temp/{h}"))).unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "mkdir temp/{h}");
    }
    m.sh_ok("mkdir temp/6");
    // the height passes temp/8: creating or linking in it is EINVAL
    m.sh_ok("echo 8 > height");
    assert_eq!(m.read("height"), "8\n");
    let data = sector(210);
    let root = sector_root(&data);
    let e = write_file(&temp_path(&m, 8, &root), &data).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    let e = write_file(&temp_path(&m, 2, &root), &data).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    assert!(m.listed().is_empty());
    m.put(&data);
    let e = std::fs::hard_link(m.sector_path(&root), temp_path(&m, 8, &root)).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    assert_eq!(m.refs(&root), "pin=1 contracts=0 temp=0");
    // through a directory fd opened before it expired: EINVAL or gone
    let name = std::ffi::CString::new(root.to_string()).unwrap();
    // SAFETY: a valid directory fd and C string.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            0o644,
        )
    };
    let err = std::io::Error::last_os_error().raw_os_error();
    assert_eq!(fd, -1);
    assert!(matches!(err, Some(libc::EINVAL | libc::ENOENT)), "{err:?}");
    assert_eq!(m.refs(&root), "pin=1 contracts=0 temp=0");
    drop(dir);
    // expired directories are gone from the listing
    assert!(dir_names(&m, "temp").is_empty());
    // `sectorfs put --temp` with an expired height is refused too
    std::fs::write(m.scratch().join("blob"), sector(211)).unwrap();
    let out = m.sh(&format!(
        "sectorfs put $S/blob --mount {} --temp 8",
        m.mnt.display()
    ));
    assert!(!out.status.success());
    assert_eq!(m.listed(), vec![root.to_string()]);
}

#[test]
fn height_expires_entries_and_frees_sectors() {
    let m = Mount::start(&[]);
    let pinned = m.put(&sector(220));
    m.sh_ok("mkdir temp/10 temp/20");
    let data_b = sector(221);
    let b = sector_root(&data_b);
    write_file(&temp_path(&m, 10, &b), &data_b).unwrap();
    let data_c = sector(222);
    let c = sector_root(&data_c);
    write_file(&temp_path(&m, 20, &c), &data_c).unwrap();
    m.sh_ok(&format!("ln sectors/{c} temp/10/{c}"));
    m.sh_ok(&format!("ln sectors/{pinned} temp/10/{pinned}"));
    // a contract holds d, which also has an entry at 10
    let data_d = sector(223);
    let d = sector_root(&data_d);
    write_file(&temp_path(&m, 10, &d), &data_d).unwrap();
    write_file(&m.path("contracts/k"), format!("{d}\n").as_bytes()).unwrap();
    assert_eq!(m.used(1), 4);
    // height 9: nothing expires yet
    m.sh_ok("echo 9 > height");
    assert_eq!(m.used(1), 4);
    assert_eq!(m.refs(&b), "pin=0 contracts=0 temp=1");
    // height 10: every entry at 10 goes; b had nothing else and is freed
    m.sh_ok("echo 10 > height");
    assert_eq!(m.read("height"), "10\n");
    assert!(!m.sector_path(&b).exists());
    assert_eq!(m.refs(&c), "pin=0 contracts=0 temp=1");
    assert_eq!(m.refs(&pinned), "pin=1 contracts=0 temp=0");
    assert_eq!(m.refs(&d), "pin=0 contracts=1 temp=0");
    assert_eq!(m.used(1), 3);
    assert_eq!(dir_names(&m, "temp"), ["20"]);
    // lower heights and garbage: EINVAL, nothing changes
    for text in [
        "9",
        "0",
        "abc",
        "-1",
        "1e3",
        "10 11",
        "99999999999999999999999",
    ] {
        let e = m.write("height", &format!("{text}\n")).unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "{text:?}");
        assert_eq!(m.read("height"), "10\n", "{text:?}");
    }
    assert_eq!(m.used(1), 3);
    // the same height again changes nothing either
    m.write("height", "10\n").unwrap();
    assert_eq!(m.read("height"), "10\n");
    // a jump past 20 frees c in the same go
    m.write("height", "1000").unwrap();
    assert_eq!(m.read("height"), "1000\n");
    assert!(!m.sector_path(&c).exists());
    assert!(dir_names(&m, "temp").is_empty());
    let mut want = vec![pinned.to_string(), d.to_string()];
    want.sort();
    assert_eq!(m.listed(), want);
    assert_eq!(m.used(1), 2);
    assert_eq!(std::fs::read(m.sector_path(&d)).unwrap(), data_d);
    // the freed slots are free for new sectors
    let f = std::fs::File::create(m.sector_path(&b)).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &data_b, 0).unwrap();
    close(f).unwrap();
    assert_eq!(m.used(1), 3);
}

/// `mv` between `/sectors` and `/temp/<height>` copies and removes, which
/// is what moving a sector between a pin and a temp entry means.
#[test]
fn mv_between_sectors_and_temp() {
    let m = Mount::start(&[]);
    let data = sector(230);
    let root = m.put(&data);
    let ino =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(m.sector_path(&root)).unwrap());
    m.sh_ok("mkdir temp/10");
    m.sh_ok(&format!("mv sectors/{root} temp/10/"));
    assert_eq!(m.refs(&root), "pin=0 contracts=0 temp=1");
    assert_eq!(m.used(1), 1);
    assert_eq!(std::fs::read(temp_path(&m, 10, &root)).unwrap(), data);
    // stored all along: the same sector, not a new copy
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(m.sector_path(&root)).unwrap()),
        ino
    );
    // back: a stored sector is always in /sectors already (mv and cp see
    // the same file), so it is pinned by writing its bytes there again,
    // and its temp entry is dropped with rm
    std::fs::write(m.scratch().join("blob"), &data).unwrap();
    m.sh_ok(&format!("cp $S/blob sectors/{root} && rm temp/10/{root}"));
    assert_eq!(m.refs(&root), "pin=1 contracts=0 temp=0");
    assert_eq!(m.used(1), 1);
    // renaming within /sectors or /temp is not a thing a sector can do
    let other = sector_root(&sector(231));
    let e = std::fs::rename(m.sector_path(&root), m.path(&format!("sectors/{other}"))).unwrap_err();
    assert_eq!(errno(&e), libc::EPERM);
    assert_eq!(m.listed(), vec![root.to_string()]);
}
