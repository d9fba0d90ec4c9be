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
    assert_refused(&o, "is not a mounted sectorfs store");
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
    // not on or off: refused before anything is written, with the values
    let o = m.sh("sectorfs volume readonly 2 maybe --mount $MNT");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("'maybe'") && stderr(&o).contains("off"),
        "{}",
        stderr(&o)
    );
    let o = m.sh("sectorfs volume readonly 9 on --mount $MNT");
    assert_refused(&o, "no volume 9 (volumes: 1, 2, 3)");
    // status, for people and for programs; the refusals above are alerts
    let out = m.sh_ok("sectorfs status --mount $MNT");
    assert_eq!(out, m.read("status"));
    assert!(out.starts_with("warning"), "{out}");
    assert!(out.starts_with("warning: 3 volumes,"), "{out}");
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
    assert_refused(&o, "is not a mounted sectorfs store");
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
    assert_eq!(m.sh_ok("ls volumes"), "add\nattach\n");
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

/// Every online command checks first that it was given a mounted store,
/// and says what to run instead; `$SECTORFS_MOUNT` stands in for `--mount`.
#[test]
fn online_commands_need_a_mounted_store() {
    let m = Mount::start(&[]);
    std::fs::write(m.scratch().join("a"), sector(970)).unwrap();
    let mnt = m.mnt.display().to_string();
    for cmd in [
        "put $S/a --mount $S",
        "status --mount $S",
        "volume list --mount $S",
        "volume resize 1 300 --mount $S",
        "check --mount $S",
    ] {
        let o = m.sh(&format!("sectorfs {cmd}"));
        assert_refused(
            &o,
            &format!("{} is not a mounted sectorfs store", m.scratch().display()),
        );
        // the stores that are mounted, this one among them, and a command
        // with --mount set
        assert!(
            stderr(&o).contains(&mnt) || stderr(&o).contains("mounted stores"),
            "{}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("`sectorfs "), "{}", stderr(&o));
    }
    // nothing was stored through the wrong path
    assert!(m.listed().is_empty());
    // a path that does not exist, a directory inside the store
    let o = m.sh("sectorfs status --mount $S/nowhere");
    assert_refused(&o, "does not exist");
    let o = m.sh("sectorfs status --mount $MNT/sectors");
    assert_refused(
        &o,
        &format!("inside the sectorfs store mounted at {mnt}; use --mount {mnt}"),
    );
    // no --mount and no $SECTORFS_MOUNT: which one, and the mounted ones
    let o = m.sh("unset SECTORFS_MOUNT; sectorfs status");
    assert_refused(&o, "pass --mount MOUNTPOINT or set SECTORFS_MOUNT");
    assert!(
        stderr(&o).contains(&mnt) || stderr(&o).contains("mounted stores"),
        "{}",
        stderr(&o)
    );
    // $SECTORFS_MOUNT is the default, on every online command
    let out = m.sh_ok("SECTORFS_MOUNT=$MNT sectorfs status");
    assert!(out.starts_with("ok"), "{out}");
    let out = m.sh_ok("export SECTORFS_MOUNT=$MNT; sectorfs put $S/a && sectorfs volume list");
    assert!(out.contains("default.vol"), "{out}");
    assert_eq!(m.listed(), vec![sector_root(&sector(970)).to_string()]);
    // --mount wins over it
    let o = m.sh("SECTORFS_MOUNT=$MNT sectorfs status --mount $S");
    assert_refused(&o, "is not a mounted sectorfs store");
    // the hint, with one store named, is a command that works as pasted
    let o = m.sh("sectorfs status --mount $MNT/sectors");
    let hint = stderr(&o);
    let pasted = hint.split("use --mount ").nth(1).unwrap().trim();
    let out = m.sh_ok(&format!("sectorfs status --mount {pasted}"));
    assert!(out.starts_with("ok"), "{out}");
}

/// Errors name the thing that is wrong and the next step.
#[test]
fn errors_name_the_thing_and_the_next_step() {
    let m = Mount::start(&[]);
    m.sh_ok("sectorfs volume add $S/v2.vol 8 --mount $MNT");
    for cmd in [
        "volume resize 9 10",
        "volume readonly 9 on",
        "volume remove 9",
        "check --volume 9",
    ] {
        let o = m.sh(&format!("sectorfs {cmd} --mount $MNT"));
        assert_refused(&o, "no volume 9 (volumes: 1, 2)");
    }
    // no alert was raised: nothing was written to the store
    assert!(m.read("status").starts_with("ok"), "{}", m.read("status"));
    // a temp height at or below the current one
    std::fs::write(m.scratch().join("a"), sector(971)).unwrap();
    m.sh_ok("echo 5 > height");
    let o = m.sh("sectorfs put $S/a --temp 5 --mount $MNT");
    assert_refused(&o, "--temp 5 is not above the current height 5");
    // a file to store that is not there
    let o = m.sh("sectorfs put $S/missing --mount $MNT");
    assert_refused(&o, "cannot read");
    assert!(stderr(&o).contains("missing"), "{}", stderr(&o));
    // suggested follow-ups are whole commands
    let out = m.sh_ok("sectorfs volume remove 2 --mount $MNT");
    let follow = out.split('`').nth(1).unwrap();
    assert_eq!(
        follow,
        format!("sectorfs status --watch --mount {}", m.mnt.display())
    );
    // a mountpoint that does not exist: the mkdir to run
    let o = m.sh("sectorfs mount $S/not-made --data-dir $S/d2");
    assert_refused(&o, "mkdir -p");
    // the offline check of a running store: stop it, or check it online
    let o = m.sh(&format!("sectorfs check --data-dir {}", m.data.display()));
    assert_refused(&o, "in use by another sectorfs process");
    // the offline check of a directory that holds no store
    let o = m.sh("sectorfs check --data-dir $S");
    assert_refused(&o, "holds no sectorfs store");
}

/// Counts read right: 1 volume, 1 sector.
#[test]
fn counts_read_right() {
    let m = Mount::start(&[]);
    m.put(&sector(972));
    let first = m.read("status").lines().next().unwrap().to_string();
    assert!(
        first.contains("1 volume,") && first.contains(" 1 sector,"),
        "{first}"
    );
    m.put(&sector(973));
    let first = m.read("status").lines().next().unwrap().to_string();
    assert!(first.contains(" 2 sectors,"), "{first}");
}

/// Every subcommand and every argument has a line of help; `--help` ends
/// with three examples; completions and man pages come from the same
/// definitions.
#[test]
fn help_completions_and_man_page() {
    let m = Mount::start(&[]);
    let help = m.sh_ok("sectorfs --help");
    let tail: Vec<&str> = help.trim_end().lines().rev().take(4).collect();
    assert_eq!(tail[3], "Examples:", "{help}");
    assert!(
        tail[..3]
            .iter()
            .all(|l| l.trim_start().starts_with("sectorfs ")),
        "{help}"
    );
    // the examples are commands this binary accepts
    for l in &tail[..3] {
        let cmd = l.split('#').next().unwrap().trim();
        let sub = cmd.split_whitespace().nth(1).unwrap();
        m.sh_ok(&format!("sectorfs {sub} --help"));
    }
    let subcommands = [
        "mount",
        "root",
        "put",
        "volume",
        "volume list",
        "volume add",
        "volume resize",
        "volume readonly",
        "volume remove",
        "status",
        "check",
        "recover",
        "contracts",
        "completions",
        "man",
    ];
    for sub in subcommands {
        let text = m.sh_ok(&format!("sectorfs {sub} --help"));
        // each line that starts an option or argument has words after it
        let mut section = "";
        for line in text.lines() {
            if !line.starts_with(' ') {
                section = line;
                continue;
            }
            if matches!(section, "Options:" | "Arguments:" | "Commands:") {
                let words: Vec<&str> = line.split("  ").filter(|w| !w.trim().is_empty()).collect();
                assert!(
                    words.len() >= 2 || line.trim_start().starts_with('['),
                    "`sectorfs {sub} --help`: no description for {line:?}\n{text}"
                );
            }
        }
    }
    for (shell, flag) in [
        ("bash", "--mount"),
        ("zsh", "--mount"),
        ("fish", "-l mount"),
    ] {
        let out = m.sh_ok(&format!("sectorfs completions {shell}"));
        assert!(
            out.contains("volume") && out.contains(flag),
            "{shell}:\n{out}"
        );
    }
    m.sh_ok("sectorfs completions bash > $S/c.bash && bash -n $S/c.bash");
    let o = m.sh("sectorfs completions powershell-or-not");
    assert!(!o.status.success());
    let page = m.sh_ok("sectorfs man");
    assert!(page.contains(".TH sectorfs 1"), "{page}");
    assert!(page.contains("volume"), "{page}");
    m.sh_ok("sectorfs man --dir $S");
    for page in ["sectorfs.1", "sectorfs-volume-add.1", "sectorfs-mount.1"] {
        assert!(m.scratch().join(page).exists(), "{page}");
    }
}

/// The offline check: a summary line off a terminal; on a terminal a bar
/// with rate and time left. Logs carry no colour codes off a terminal or
/// with NO_COLOR.
#[test]
fn offline_check_progress_and_plain_logs() {
    let mut m = Mount::start(&[]);
    for seed in 980..984 {
        m.put(&sector(seed));
    }
    m.unmount();
    assert!(
        !m.log().contains('\x1b'),
        "colour in a log file:\n{}",
        m.log()
    );
    let data = m.data.display().to_string();
    let o = m.sh(&format!("RUST_LOG=debug sectorfs check --data-dir {data}"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("4 sectors checked"), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.lines().any(|l| l.starts_with("verified 4 sectors in")),
        "{err}"
    );
    assert!(!err.contains('\x1b'), "{err:?}");
    // on a terminal (script(1) makes one): the bar, and colours unless
    // NO_COLOR; the check's summary still prints
    let tty = |env: &str| {
        let cmd = format!("{env} RUST_LOG=debug sectorfs check --data-dir {data}");
        m.sh_ok(&format!("script -qec '{cmd}' /dev/null"))
    };
    let out = tty("");
    assert!(
        out.contains("sectors verified") && out.contains("left"),
        "{out:?}"
    );
    assert!(out.contains("clean"), "{out:?}");
    assert!(out.contains("\x1b[2m"), "no colour on a terminal: {out:?}");
    let out = tty("NO_COLOR=1");
    let logged: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("DEBUG") || l.contains("INFO"))
        .collect();
    assert!(!logged.is_empty(), "{out:?}");
    assert!(logged.iter().all(|l| !l.contains("\x1b[2m")), "{logged:?}");
}

/// A bad line written to any control file fails the very write that
/// carries it with EINVAL, so a shell reports it.
#[test]
fn a_bad_line_fails_its_write_in_every_control_file() {
    let m = Mount::start(&[]);
    for file in [
        "height",
        "status",
        "volumes/add",
        "volumes/1/slots",
        "volumes/1/readonly",
        "volumes/1/remove",
        "volumes/1/check",
    ] {
        let o = m.sh(&format!("echo zz > {file}"));
        assert!(!o.status.success(), "{file}");
        assert!(
            stderr(&o).contains("write error: Invalid argument"),
            "{file}: {}",
            stderr(&o)
        );
    }
    // a line before a bad one takes effect; the write carrying the bad one
    // fails
    let o = m.sh("printf '7\\nzz\\n' > height");
    assert!(!o.status.success());
    assert_eq!(m.read("height"), "7\n");
    // the status names each refusal
    let text = m.read("status");
    for file in ["/height", "/status", "/volumes/add", "/volumes/1/slots"] {
        assert!(
            text.contains(&format!("refused a write to {file}:")),
            "{file}:\n{text}"
        );
    }
    // the store is as it was
    assert_eq!(m.read("volumes/1/slots"), "256\n");
    assert_eq!(m.read("volumes/1/readonly"), "0\n");
    assert_eq!(m.read("volumes/1/state"), "ready\n");
}
