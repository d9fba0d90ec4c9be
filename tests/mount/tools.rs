//! Standard tools that copy files the usual way: attributes they set,
//! temporary names they write and rename, times they keep.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::harness::{Mount, errno, sector};

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
