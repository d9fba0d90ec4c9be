//! Safe defaults: the mount is private unless --allow-other, files the
//! store creates are owner-only, control files are writable by the owner
//! only, and /volumes/add will not clobber or loop.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::harness::{Mount, errno};

const NOBODY: u32 = 65534;

/// Runs a shell command as `nobody`.
fn as_nobody(script: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o777
}

#[test]
fn the_mount_is_private_unless_allow_other() {
    for allow_other in [false, true] {
        let args: &[&str] = if allow_other { &["--allow-other"] } else { &[] };
        let m = Mount::start(args);
        // let others reach the mountpoint itself
        std::fs::set_permissions(m.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let listed = as_nobody(&format!("ls {}", m.mnt.display()));
        assert_eq!(
            listed.status.success(),
            allow_other,
            "allow_other={allow_other}: {}",
            String::from_utf8_lossy(&listed.stderr)
        );
        if allow_other {
            // others may look, but control files are the owner's to write
            let read = as_nobody(&format!("cat {}/height", m.mnt.display()));
            assert!(read.status.success());
            let wrote = as_nobody(&format!("echo 5 > {}/height", m.mnt.display()));
            assert!(!wrote.status.success(), "nobody must not set the height");
            assert_eq!(m.read("height"), "0\n");
            let added = as_nobody(&format!(
                "echo '/tmp/x.vol 1' > {}/volumes/add",
                m.mnt.display()
            ));
            assert!(!added.status.success(), "nobody must not add volumes");
        }
    }
}

#[test]
fn store_files_are_owner_only() {
    let m = Mount::start(&[]);
    assert_eq!(mode(&m.data), 0o700);
    assert_eq!(mode(&m.data.join("sectorfs.db")), 0o600);
    assert_eq!(mode(&m.data.join("volumes/default.vol")), 0o600);
    let added = m.scratch().join("added.vol");
    m.write("volumes/add", &format!("{} 4\n", added.display()))
        .unwrap();
    assert_eq!(mode(&added), 0o600);
    for (file, want) in [
        ("height", 0o644),
        ("status", 0o644),
        ("status.json", 0o444),
        ("metrics", 0o444),
        ("volumes/add", 0o644),
        ("volumes/1/readonly", 0o644),
        ("volumes/1/slots", 0o644),
        ("volumes/1/remove", 0o644),
        ("volumes/1/check", 0o644),
        ("volumes/1/path", 0o444),
        ("volumes/1/uuid", 0o444),
        ("volumes/1/used", 0o444),
        ("volumes/1/state", 0o444),
        ("volumes/1/stats", 0o444),
    ] {
        assert_eq!(mode(&m.path(file)), want, "{file}");
    }
}

/// With one FUSE thread, a volume path through a link into the mount is
/// refused without the mount ever looking at its own files (that look would
/// wait for the very thread making it).
#[test]
fn volumes_add_into_the_mount_never_waits_on_itself() {
    let m = Mount::start(&["--threads", "1"]);
    let door = m.scratch().join("door");
    std::os::unix::fs::symlink(m.mnt.join("sectors"), &door).unwrap();
    let e = m
        .write("volumes/add", &format!("{}/loop.vol 4\n", door.display()))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    assert_eq!(m.read("height").trim(), "0", "the mount still answers");
}

#[test]
fn volumes_add_will_not_clobber_or_loop() {
    let m = Mount::start(&[]);
    let existing = m.scratch().join("existing.dat");
    std::fs::write(&existing, b"precious").unwrap();
    let e = m
        .write("volumes/add", &format!("{} 4\n", existing.display()))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST);
    assert_eq!(std::fs::read(&existing).unwrap(), b"precious");

    let link = m.scratch().join("link.vol");
    std::os::unix::fs::symlink(m.scratch().join("target.vol"), &link).unwrap();
    let e = m
        .write("volumes/add", &format!("{} 4\n", link.display()))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EEXIST);
    assert!(
        !m.scratch().join("target.vol").exists(),
        "nothing created through the link"
    );

    let inside = m.mnt.join("sectors/loop.vol");
    let e = m
        .write("volumes/add", &format!("{} 4\n", inside.display()))
        .unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    // a symlinked directory that leads into the mount
    let door = m.scratch().join("door");
    std::os::unix::fs::symlink(m.mnt.join("temp"), &door).unwrap();
    let e = m
        .write(
            "volumes/add",
            &format!("{} 4\n", door.join("loop.vol").display()),
        )
        .unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    // a relative link to that link, and a walk up and back in
    let door2 = m.scratch().join("door2");
    std::os::unix::fs::symlink("door", &door2).unwrap();
    for dir in [door2.clone(), m.scratch().join("sub/../door2/.")] {
        let e = m
            .write("volumes/add", &format!("{}/loop.vol 4\n", dir.display()))
            .unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "{}", dir.display());
    }
    let e = m.write("volumes/add", "relative/path.vol 4\n").unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    assert_eq!(
        std::fs::read_dir(m.path("volumes")).unwrap().count(),
        3,
        "add, attach and 1"
    );
}
