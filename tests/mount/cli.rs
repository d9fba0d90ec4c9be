//! The `sectorfs` command line: `root`, and the online admin commands that
//! work through a mount's files. Errors come back as sentences.

use std::process::Output;

use super::harness::{Mount, sector};
use sectorfs::merkle::sector_root;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A refusal: non-zero exit, and one `sectorfs: <sentence>` on stderr
/// containing `words`.
fn assert_refused(o: &Output, words: &str) {
    assert!(!o.status.success(), "succeeded: {}", stdout(o));
    let err = stderr(o);
    assert!(err.starts_with("sectorfs: "), "{err}");
    assert!(err.contains(words), "{err:?} lacks {words:?}");
}

#[test]
fn root_prints_roots_like_b2sum() {
    let m = Mount::start(&[]);
    let s = m.scratch();
    std::fs::write(s.join("a"), sector(900)).unwrap();
    std::fs::write(s.join("b"), sector(901)).unwrap();
    let out = m.sh_ok("cd $S && sectorfs root a b");
    assert_eq!(
        out,
        format!(
            "{}  a\n{}  b\n",
            sector_root(&sector(900)),
            sector_root(&sector(901))
        )
    );
    // a file that is not 4 MiB: non-zero, naming the file and its size
    std::fs::write(s.join("short"), vec![7u8; 1000]).unwrap();
    let o = m.sh("cd $S && sectorfs root a short");
    assert_refused(&o, "short");
    assert!(stderr(&o).contains("1000 bytes"), "{}", stderr(&o));
    // the good file is still printed
    assert!(stdout(&o).contains("  a\n"));
    let o = m.sh("cd $S && sectorfs root missing");
    assert_refused(&o, "missing");
    // an endless input is refused, not read forever
    let o = m.sh("timeout 20 sectorfs root /dev/zero");
    assert_refused(&o, "/dev/zero");
    assert!(stderr(&o).contains("longer than 4 MiB"), "{}", stderr(&o));
    // the README's pipeline
    let cut = m.sh_ok("sectorfs root $S/a | cut -c1-64");
    assert_eq!(cut.trim(), sector_root(&sector(900)).to_string());
}

#[test]
fn put_stores_sectors_through_the_mount() {
    let m = Mount::start(&["--default-volume", "3"]);
    let s = m.scratch();
    for (name, seed) in [("a", 910), ("b", 911), ("c", 912), ("d", 913)] {
        std::fs::write(s.join(name), sector(seed)).unwrap();
    }
    let (a, b, c) = (
        sector_root(&sector(910)),
        sector_root(&sector(911)),
        sector_root(&sector(912)),
    );
    let out = m.sh_ok("cd $S && sectorfs put a b --mount $MNT");
    assert_eq!(out, format!("{a}  a\n{b}  b\n"));
    assert_eq!(std::fs::read(m.sector_path(&a)).unwrap(), sector(910));
    assert_eq!(m.refs(&b), "pin=1 contracts=0 temp=0");
    // --temp makes the directory if needed and adds a temp entry
    m.sh_ok("sectorfs put $S/c --mount $MNT --temp 40");
    assert_eq!(m.refs(&c), "pin=0 contracts=0 temp=1");
    assert!(m.path(&format!("temp/40/{c}")).exists());
    // no room left: a sentence, not a bare errno
    let o = m.sh("sectorfs put $S/d --mount $MNT");
    assert_refused(&o, "free space");
    assert_eq!(m.listed().len(), 3);
    // not a sector file
    std::fs::write(s.join("short"), b"abc").unwrap();
    let o = m.sh("sectorfs put $S/short --mount $MNT");
    assert_refused(&o, "3 bytes");
    // not a mount
    let o = m.sh("sectorfs put $S/a --mount $S");
    assert!(!o.status.success());
    assert!(stderr(&o).starts_with("sectorfs: "), "{}", stderr(&o));
}

#[test]
fn volume_and_status_commands() {
    let m = Mount::start(&[]);
    let out = m.sh_ok("sectorfs volume list --mount $MNT");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("PATH"), "{out}");
    assert!(
        lines[1].contains("default.vol") && lines[1].contains("256"),
        "{out}"
    );
    // add, with a size with a unit
    let out = m.sh_ok("sectorfs volume add $S/v2.vol 64MiB --mount $MNT");
    assert!(out.contains("added volume 2"), "{out}");
    assert_eq!(m.read("volumes/2/slots"), "16\n");
    assert_eq!(
        m.read("volumes/2/path"),
        format!("{}\n", m.scratch().join("v2.vol").display())
    );
    let out = m.sh_ok("sectorfs volume list --mount $MNT");
    assert!(out.contains("v2.vol") && out.contains("16"), "{out}");
    // a relative path is taken from the current directory; a size may
    // have a space before its unit
    m.sh_ok("cd $S && sectorfs volume add v3.vol '8 MiB' --mount $MNT");
    assert_eq!(m.read("volumes/3/slots"), "2\n");
    assert_eq!(
        m.read("volumes/3/path"),
        format!("{}\n", m.scratch().join("v3.vol").display())
    );
    // refusals, each as a sentence
    let o = m.sh("sectorfs volume add $S/v2.vol 8 --mount $MNT");
    assert_refused(&o, "already exists");
    let o = m.sh("sectorfs volume add $S/v4.vol 5MiB --mount $MNT");
    assert_refused(&o, "whole number");
    let o = m.sh("sectorfs volume add $S/nodir/v.vol 8 --mount $MNT");
    assert_refused(&o, "does not exist");
    // read-only on and off
    m.sh_ok("sectorfs volume readonly 2 on --mount $MNT");
    assert_eq!(m.read("volumes/2/readonly"), "1\n");
    let out = m.sh_ok("sectorfs volume list --mount $MNT");
    assert!(
        out.lines()
            .any(|l| l.contains("v2.vol") && l.contains("ro")),
        "{out}"
    );
    m.sh_ok("sectorfs volume readonly 2 off --mount $MNT");
    assert_eq!(m.read("volumes/2/readonly"), "0\n");
    let o = m.sh("sectorfs volume readonly 2 maybe --mount $MNT");
    assert_refused(&o, "maybe");
    let o = m.sh("sectorfs volume readonly 9 on --mount $MNT");
    assert_refused(&o, "does not exist");
    // status, for people and for programs; the refusals above are alerts
    let out = m.sh_ok("sectorfs status --mount $MNT");
    assert_eq!(out, m.read("status"));
    assert!(out.starts_with("warning"), "{out}");
    let out = m.sh_ok("sectorfs status --json --mount $MNT");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["volumes"].as_array().unwrap().len(), 3);
    assert!(!s["alerts"].as_array().unwrap().is_empty());
    // --watch into a pipe: a screen a second, no terminal codes; not JSON
    let o = m.sh("timeout 2.5 sectorfs status --watch --mount $MNT");
    let screens = stdout(&o).matches("slots used").count();
    assert!(screens >= 2, "{screens} screens: {}", stdout(&o));
    assert!(!stdout(&o).contains('\x1b'), "{:?}", stdout(&o));
    let o = m.sh("sectorfs status --watch --json --mount $MNT");
    assert_refused(&o, "--watch");
    // a mount that is not there
    let o = m.sh("sectorfs status --mount $S");
    assert!(!o.status.success());
    assert!(stderr(&o).starts_with("sectorfs: "), "{}", stderr(&o));
}

/// First start: `DIR/volumes/default.vol`, 1 GiB (256 slots), unless
/// `--default-volume` says another size; `0` makes none.
#[test]
fn mount_makes_the_default_volume() {
    let m = Mount::start(&[]);
    let vol = m.data.join("volumes/default.vol");
    assert_eq!(std::fs::metadata(&vol).unwrap().len(), 1 << 30);
    assert_eq!(m.read("volumes/1/path"), format!("{}\n", vol.display()));
    assert_eq!(m.read("volumes/1/slots"), "256\n");
    assert!(m.data.join("sectorfs.db").exists());
    drop(m);

    let m = Mount::start(&["--default-volume", "512MiB"]);
    assert_eq!(m.read("volumes/1/slots"), "128\n");
    drop(m);

    let m = Mount::start(&["--default-volume", "0"]);
    assert_eq!(m.sh_ok("ls volumes"), "add\n");
    assert!(!m.data.join("volumes/default.vol").exists());
    let e = m.try_put(&sector(920)).unwrap_err();
    assert_eq!(super::harness::errno(&e), libc::ENOSPC);
    // a volume added later is used at once
    m.write(
        "volumes/add",
        &format!("{} 2", m.scratch().join("v.vol").display()),
    )
    .unwrap();
    m.put(&sector(920));
    drop(m);

    // a size that is not whole sectors: refused before mounting, in words
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(super::harness::BIN)
        .arg("mount")
        .arg(dir.path())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--default-volume", "5MiB"])
        .output()
        .unwrap();
    assert_refused(&out, "--default-volume");
    assert!(stderr(&out).contains("whole number"), "{}", stderr(&out));
}

/// `--data-dir` defaults to `$SECTORFS_DATA_DIR`, else
/// `$XDG_DATA_HOME/sectorfs`, else `~/.local/share/sectorfs`.
#[test]
fn mount_finds_its_default_data_dir() {
    for (vars, data) in [
        (vec![("SECTORFS_DATA_DIR", "store")], "store"),
        (
            vec![("SECTORFS_DATA_DIR", ""), ("XDG_DATA_HOME", "xdg")],
            "xdg/sectorfs",
        ),
        (
            vec![
                ("SECTORFS_DATA_DIR", ""),
                ("XDG_DATA_HOME", ""),
                ("HOME", "home"),
            ],
            "home/.local/share/sectorfs",
        ),
    ] {
        let m = Mount::start_env(&vars, data);
        let r = m.put(&sector(930));
        assert!(m.data.join("sectorfs.db").exists(), "{vars:?}");
        assert!(m.data.join("volumes/default.vol").exists(), "{vars:?}");
        assert_eq!(m.listed(), vec![r.to_string()]);
    }
}

/// The daemon runs until SIGINT or SIGTERM, then unmounts cleanly.
#[test]
fn sigint_and_sigterm_unmount_cleanly() {
    use nix::sys::signal::Signal;
    let mut m = Mount::start(&[]);
    let r = m.put(&sector(940));
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        let status = m.stop_with(sig);
        assert!(
            status.success(),
            "{sig}: exited with {status}:\n{}",
            m.log()
        );
        assert!(!m.path("status").exists(), "still mounted after {sig}");
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        assert!(!mounts.contains(&m.mnt.display().to_string()), "{mounts}");
        m.mount();
        assert_eq!(std::fs::read(m.sector_path(&r)).unwrap(), sector(940));
    }
    assert!(m.log().contains("unmounting"));
}

/// SIGTERM while a file in the mount is open: the unmount is retried, then
/// the mount is detached (gone from the tree, open files still served) and
/// the daemon exits cleanly once the last one is closed.
#[test]
fn sigterm_on_a_busy_mount_detaches_it() {
    use nix::sys::signal::Signal;
    use std::io::Read;
    let mut m = Mount::start(&[]);
    let r = m.put(&sector(950));
    let mut held = std::fs::File::open(m.sector_path(&r)).unwrap();
    m.signal(Signal::SIGTERM);
    let mounted = |m: &Mount| {
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .contains(&m.mnt.display().to_string())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while mounted(&m) {
        assert!(
            std::time::Instant::now() < deadline,
            "never detached:\n{}",
            m.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // the open file is still served
    let mut buf = Vec::new();
    held.read_to_end(&mut buf).unwrap();
    assert!(buf == sector(950));
    drop(held);
    let status = m.wait_exit();
    assert!(status.success(), "exited with {status}:\n{}", m.log());
    assert!(m.log().contains("busy"), "{}", m.log());
}
