//! Standard tools that copy files the usual way: attributes they set,
//! temporary names they write and rename, times they keep.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use super::harness::{Mount, errno, offline_check, sector};
use sectorfs::merkle::{SECTOR_SIZE, sector_root};

/// chmod, chown and chgrp of sectors and of the directories sectors go
/// into succeed and change nothing (tar, cp -a, rsync -a set them);
/// elsewhere they are refused as before.
#[test]
fn attributes_of_sectors_and_their_directories_are_accepted_and_kept() {
    let m = Mount::start(&[]);
    let root = m.put(&sector(61));
    let path = m.sector_path(&root);
    std::fs::create_dir(m.path("temp/10")).unwrap();
    std::fs::hard_link(&path, m.path(&format!("temp/10/{root}"))).unwrap();
    for target in [
        path.clone(),
        m.path("sectors"),
        m.path("temp/10"),
        m.path(&format!("temp/10/{root}")),
    ] {
        let before = std::fs::metadata(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&target, Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(&target, None, Some(42)).unwrap();
        let after = std::fs::metadata(&target).unwrap();
        assert_eq!(after.mode(), before.mode(), "{}", target.display());
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    }
    // the shell tools too, with their exit codes
    m.sh_ok(&format!(
        "chmod 0600 {p} && chown 0:0 {p} && chgrp 0 {p} && chmod -R a+r {d}",
        p = path.display(),
        d = m.path("sectors").display()
    ));
    assert_eq!(std::fs::read(&path).unwrap(), sector(61));
    // elsewhere: EPERM, as before
    for other in [
        "height",
        "status",
        "contracts",
        "volumes",
        "volumes/1/slots",
        "temp",
    ] {
        let e = std::fs::set_permissions(m.path(other), std::fs::Permissions::from_mode(0o600))
            .unwrap_err();
        assert_eq!(errno(&e), libc::EPERM, "chmod {other}");
        let e = std::os::unix::fs::chown(m.path(other), Some(1), None).unwrap_err();
        assert_eq!(errno(&e), libc::EPERM, "chown {other}");
    }
}

/// A directory of sector files named by their roots, in the scratch dir
/// (another file system than the mount): `seeds` good ones, and the data
/// of `damaged.0` under the name of `damaged.1`'s root.
fn source_dir(m: &Mount, name: &str, seeds: &[u64], damaged: Option<(u64, u64)>) -> PathBuf {
    let dir = m.scratch().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for &seed in seeds {
        let data = sector(seed);
        std::fs::write(dir.join(sector_root(&data).to_string()), &data).unwrap();
    }
    if let Some((data_seed, name_seed)) = damaged {
        let name = sector_root(&sector(name_seed)).to_string();
        std::fs::write(dir.join(name), sector(data_seed)).unwrap();
    }
    dir
}

fn root_of(seed: u64) -> String {
    sector_root(&sector(seed)).to_string()
}

/// Every listed sector's bytes are its seed's.
fn assert_stored(m: &Mount, seeds: &[u64]) {
    let listed = m.listed();
    for &seed in seeds {
        let root = root_of(seed);
        assert!(listed.contains(&root), "{root} (seed {seed}) not stored");
        let back = std::fs::read(m.path(&format!("sectors/{root}"))).unwrap();
        assert!(back == sector(seed), "sector of seed {seed} differs");
    }
}

/// rsync's default mode writes each file under a hidden temporary name and
/// renames it: each rename stores its sector; a damaged file's rename fails
/// with EBADMSG, rsync says so (exit 23) and the others are stored.
#[test]
fn rsync_stores_through_staging_names_and_a_damaged_file_fails_alone() {
    let m = Mount::start(&[]);
    let good = [71, 72, 73, 74];
    let src = source_dir(&m, "src", &good, Some((75, 76)));
    let out = m.sh(&format!("rsync -a {}/ \"$MNT/sectors/\"", src.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(23), "rsync: {stderr}");
    assert!(
        stderr.contains("Bad message"),
        "rsync names the failure: {stderr}"
    );
    assert_stored(&m, &good);
    assert_eq!(
        m.listed().len(),
        good.len(),
        "the damaged file is not stored"
    );
    assert_eq!(m.used(1), good.len() as u64);
    // nothing staged is left behind, listed or looked up
    let all = m.sh_ok("ls -a \"$MNT/sectors\" | grep -c '^\\.[^.]' || true");
    assert_eq!(all.trim(), "0", "no staging file is listed");
    // the good ones again, with --inplace and to /temp/<h>: exit 0
    std::fs::remove_file(src.join(root_of(76))).unwrap();
    m.sh_ok(&format!(
        "rsync -a --inplace {}/ \"$MNT/sectors/\"",
        src.display()
    ));
    std::fs::create_dir(m.path("temp/50")).unwrap();
    m.sh_ok(&format!("rsync -a {}/ \"$MNT/temp/50/\"", src.display()));
    for seed in good {
        assert_eq!(m.refs_of(seed), "pin=1 contracts=0 temp=1");
    }
}

/// tar as root (which sets owners, modes and times, of `.` too), cp -a,
/// cp -p, install, mv from another file system and Python's copy2 store
/// sectors and exit 0.
#[test]
fn archivers_and_copiers_store_sectors_and_exit_0() {
    let m = Mount::start(&[]);
    let tar_seeds = [81, 82, 83];
    let src = source_dir(&m, "tar-src", &tar_seeds, None);
    m.sh_ok(&format!("tar -C {} -cf \"$S/s.tar\" .", src.display()));
    m.sh_ok("tar -C \"$MNT/sectors\" -xf \"$S/s.tar\"");
    m.sh_ok("tar -C \"$MNT/sectors\" --no-same-owner -xf \"$S/s.tar\"");
    std::fs::create_dir(m.path("temp/60")).unwrap();
    m.sh_ok("tar -C \"$MNT/temp/60\" -xf \"$S/s.tar\"");
    assert_stored(&m, &tar_seeds);

    let cp_seeds = [84, 85];
    let src = source_dir(&m, "cp-src", &cp_seeds, None);
    m.sh_ok(&format!("cp -a {}/. \"$MNT/sectors/\"", src.display()));
    assert_stored(&m, &cp_seeds);

    let one = source_dir(&m, "one", &[86, 87, 88, 89], None);
    let file = |seed| one.join(root_of(seed));
    m.sh_ok(&format!(
        "cp -p {} \"$MNT/sectors/\" && install -m 644 {} \"$MNT/sectors/\" && mv {} \"$MNT/sectors/\"",
        file(86).display(),
        file(87).display(),
        file(88).display()
    ));
    assert!(!file(88).exists(), "mv removed its source");
    m.sh_ok(&format!(
        "python3 -c 'import shutil, sys; shutil.copy2(sys.argv[1], sys.argv[2])' {} \"$MNT/sectors/\"",
        file(89).display()
    ));
    assert_stored(&m, &[86, 87, 88, 89]);
}

/// A staging file is not listed, gives no reference, holds its slot only
/// while it waits, and goes with `rm`, an unmount or a kill -9.
#[test]
fn staging_files_are_dropped_by_rm_unmount_and_restart() {
    let mut m = Mount::start(&[]);
    let before = m.df_free();
    let stage = |m: &Mount, name: &str, seed: u64| {
        std::fs::write(m.path(&format!("sectors/{name}")), sector(seed)).unwrap()
    };
    stage(&m, ".a", 91);
    stage(&m, ".b", 92);
    assert!(m.listed().is_empty(), "staging files are not listed");
    assert!(
        std::fs::metadata(m.path("sectors/.a")).is_ok(),
        "but they can be looked up"
    );
    assert_eq!(
        std::fs::metadata(m.path("sectors/.a")).unwrap().len(),
        SECTOR_SIZE as u64
    );
    assert_eq!(
        m.used(1),
        2,
        "each holds a slot while it waits for its rename"
    );
    // renamed onto a name that is not a root: EINVAL, and it stays as it was
    let e = std::fs::rename(m.path("sectors/.a"), m.path("sectors/nothex")).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    // onto the wrong root: EBADMSG, nothing stored, still there
    let e = std::fs::rename(
        m.path("sectors/.a"),
        m.path(&format!("sectors/{}", root_of(92))),
    )
    .unwrap_err();
    assert_eq!(errno(&e), libc::EBADMSG);
    assert!(m.listed().is_empty());
    // onto its root: stored, pinned, and the staging name is gone
    std::fs::rename(
        m.path("sectors/.a"),
        m.path(&format!("sectors/{}", root_of(91))),
    )
    .unwrap();
    assert_stored(&m, &[91]);
    let e = std::fs::metadata(m.path("sectors/.a")).unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
    // rm drops one, and its slot comes back
    std::fs::remove_file(m.path("sectors/.b")).unwrap();
    assert_eq!(
        m.df_free(),
        before - 1,
        "only the stored sector takes a slot"
    );
    // left behind at a kill -9: gone after the restart, no slot leaked
    stage(&m, ".c", 93);
    m.kill();
    m.mount();
    let e = std::fs::metadata(m.path("sectors/.c")).unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
    assert_eq!(m.used(1), 1);
    assert_eq!(m.df_free(), before - 1);
    // and at a clean unmount, with its writer killed half way (it still
    // held the file)
    stage(&m, ".d", 94);
    let half = m.path("sectors/.e");
    let mut writer = std::process::Command::new("sh")
        .arg("-c")
        .arg("head -c 1048576 /dev/zero > \"$0\" && exec sleep 60")
        .arg(&half)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::metadata(&half).map_or(0, |md| md.len()) < 1 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never wrote"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    m.remount();
    for name in [".d", ".e"] {
        assert!(std::fs::metadata(m.path(&format!("sectors/{name}"))).is_err());
    }
    assert_eq!(m.df_free(), before - 1);
    m.unmount();
    offline_check(&m, "after staging files were left behind");
    m.mount();
    // a staging name elsewhere is refused as before
    for dir in ["", "volumes/", "volumes/1/"] {
        let e = std::fs::write(m.path(&format!("{dir}.x")), b"1").unwrap_err();
        assert_eq!(errno(&e), libc::EPERM, "/{dir}.x");
    }
    // and in /contracts it is a contract id, as before
    std::fs::write(m.path("contracts/.x"), format!("{}\n", root_of(91))).unwrap();
    assert_eq!(m.read("contracts/.x"), format!("{}\n", root_of(91)));
    let e = std::fs::rename(m.path("contracts/.x"), m.path("contracts/bad name")).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
}

/// A sector's mtime may be set, by path or through the file being
/// written, and is reported from then on; the time it was first stored
/// stays in user.sectorfs.stored_at; rsync -a run twice sends nothing the
/// second time.
#[test]
fn mtimes_are_kept_so_rsync_twice_sends_nothing() {
    let mut m = Mount::start(&[]);
    let seeds = [101, 102, 103];
    let src = source_dir(&m, "src", &seeds, None);
    m.sh_ok(&format!(
        "touch -d '2020-02-03 04:05:06.789' {}/*",
        src.display()
    ));
    assert_eq!(rsync_transferred(&m, &src), 3);
    assert_eq!(rsync_transferred(&m, &src), 0);
    let path = m.path(&format!("sectors/{}", root_of(101)));
    assert_eq!(mtime_of(&path), mtime_of(&src.join(root_of(101))));
    // stored_at: when it was first stored, not the time set
    let stored_at: u64 = super::harness::xattr(&path, "user.sectorfs.stored_at")
        .unwrap()
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now - stored_at < 600,
        "stored_at {stored_at} is the store's time"
    );
    // touch by path (the shell's time zone: compare with date's answer)
    m.sh_ok(&format!(
        "touch -d '2021-01-01 00:00:00' {}",
        path.display()
    ));
    let secs: u64 = m
        .sh_ok("date -d '2021-01-01 00:00:00' +%s")
        .trim()
        .parse()
        .unwrap();
    let touched = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    assert_eq!(mtime_of(&path), touched);
    // cp -p sets the times through the file it is writing, before its close
    let one = source_dir(&m, "one", &[104], None);
    let original = one.join(root_of(104));
    m.sh_ok(&format!(
        "touch -d '2019-05-05 05:05:05.5' {0} && cp -p {0} \"$MNT/sectors/\"",
        original.display()
    ));
    let copied = m.path(&format!("sectors/{}", root_of(104)));
    assert_eq!(mtime_of(&copied), mtime_of(&original));
    // kept across a restart
    m.remount();
    assert_eq!(mtime_of(&path), touched);
    assert_eq!(mtime_of(&copied), mtime_of(&original));
    assert_eq!(rsync_transferred(&m, &src), 1, "only the one touched");
}

fn mtime_of(p: &std::path::Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// Staging files of a /temp/<h> go when the height passes it or the
/// directory is removed; a rename with RENAME_NOREPLACE looks at the
/// target name in that directory only.
#[test]
fn staging_files_go_with_their_temp_directory() {
    let m = Mount::start(&[]);
    let before = m.df_free();
    for h in [20, 21] {
        std::fs::create_dir(m.path(&format!("temp/{h}"))).unwrap();
        std::fs::write(m.path(&format!("temp/{h}/.x")), sector(111)).unwrap();
    }
    assert_eq!(m.df_free(), before - 2);
    std::fs::remove_dir(m.path("temp/20")).unwrap();
    m.write("height", "21\n").unwrap();
    // the next staging file made sweeps them
    std::fs::write(m.path("sectors/.y"), sector(112)).unwrap();
    assert_eq!(m.df_free(), before - 1, "only .y holds a slot");
    // mv -n (RENAME_NOREPLACE) onto a root pinned elsewhere but not in
    // this /temp/<h>: the name is free there, so it is stored
    let root = m.put(&sector(113));
    std::fs::create_dir(m.path("temp/30")).unwrap();
    std::fs::write(m.path("temp/30/.z"), sector(113)).unwrap();
    m.sh_ok(&format!(
        "mv -n \"$MNT/temp/30/.z\" \"$MNT/temp/30/{root}\""
    ));
    assert_eq!(m.refs(&root), "pin=1 contracts=0 temp=1");
}

/// `rsync -a` of `src` into /sectors: how many files it sent (`--stats`).
fn rsync_transferred(m: &Mount, src: &std::path::Path) -> u64 {
    let out = m.sh_ok(&format!(
        "rsync -a --stats {}/ \"$MNT/sectors/\"",
        src.display()
    ));
    out.lines()
        .find_map(|l| l.strip_prefix("Number of regular files transferred: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no transfer count in rsync's stats:\n{out}"))
}
