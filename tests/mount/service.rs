//! Running under systemd: `contrib/sectorfs.service` (Type=notify). The
//! daemon says READY=1 on `$NOTIFY_SOCKET` only once the mount answers, and
//! stops cleanly on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::harness::{BIN, sector};
use sectorfs::merkle::sector_root;

#[test]
fn ready_is_sent_once_the_mount_answers_and_sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mnt, data) = (dir.path().join("mnt"), dir.path().join("data"));
    std::fs::create_dir(&mnt).unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let log = std::fs::File::create(dir.path().join("daemon.log")).unwrap();
    let mut child = Command::new(BIN)
        .arg("mount")
        .arg(&mnt)
        .arg("--data-dir")
        .arg(&data)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification: {e}\n{}", read_log()));
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    // by the time READY=1 arrives, the mount answers
    assert!(
        message.lines().any(|l| l == "READY=1"),
        "{message:?}\n{}",
        read_log()
    );
    let status = std::fs::read_to_string(mnt.join("status")).unwrap();
    assert!(status.starts_with("ok"), "{status}");
    let s = sector(960);
    let root = sector_root(&s);
    std::fs::write(mnt.join("sectors").join(root.to_string()), &s).unwrap();

    // SIGTERM: unmounted, engine shut down, exit 0
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
            panic!("no exit after SIGTERM:\n{}", read_log());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exited with {exit}:\n{}", read_log());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&mnt.display().to_string()), "{mounts}");
    // what was stored is there, and the store is consistent
    let out = Command::new(BIN)
        .args(["check", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 sector checked"));
}

/// The unit in contrib/ runs `sectorfs mount` in the foreground as
/// Type=notify, and its command line is one this binary accepts.
#[test]
fn the_systemd_unit_runs_mount_as_type_notify() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/sectorfs.service"
    ))
    .unwrap();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    assert!(lines.contains(&"Type=notify"), "{unit}");
    let exec = lines
        .iter()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert!(words[0].ends_with("/sectorfs"), "{exec}");
    assert_eq!(words[1], "mount", "{exec}");
    // every option it passes is one `mount` knows
    let help = Command::new(BIN)
        .args(["mount", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for w in words.iter().filter(|w| w.starts_with("--")) {
        assert!(help.contains(w.split('=').next().unwrap()), "{w}");
    }
}
