//! Volume jobs through the mount's files: shrink via `slots`, remove via
//! `remove`, `cancel`, and SIGKILL of the daemon mid-job with resumption.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use super::harness::{Mount, errno, offline_check, sector};
use sectorfs::engine::{Engine, Options, Reference};
use sectorfs::merkle::{Root, sector_root};

/// A store with volume 1 (`slots`) holding `n` sectors and volume 2 (64
/// slots, empty), written offline through the engine.
fn prefill(data: &Path, slots: u64, n: u64, seed: u64) -> HashMap<Root, Vec<u8>> {
    let engine = Engine::open(
        data,
        Options {
            default_volume_slots: 0,
            ..Options::default()
        },
    )
    .unwrap();
    engine.add_volume(&data.join("a.vol"), slots).unwrap();
    let mut sectors = HashMap::new();
    for i in 0..n {
        let d = sector(seed + i);
        let root = sector_root(&d);
        engine.write_sector(&root, &d, Reference::Pin).unwrap();
        sectors.insert(root, d);
    }
    engine.add_volume(&data.join("b.vol"), 64).unwrap();
    sectors
}

fn wait_state(m: &Mount, volume: u32, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let state = std::fs::read_to_string(m.path(&format!("volumes/{volume}/state")));
        match state.as_deref() {
            Ok("ready\n") | Err(_) => return,
            _ => {}
        }
        assert!(Instant::now() < deadline, "volume {volume} stays busy");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_all_read_back(m: &Mount, sectors: &HashMap<Root, Vec<u8>>) {
    for (root, data) in sectors {
        let got = std::fs::read(m.sector_path(root)).unwrap();
        assert!(got == *data, "sector {root} differs");
    }
    assert_eq!(m.listed().len(), sectors.len());
}

#[test]
fn shrink_and_remove_through_the_files() {
    let mut sectors = HashMap::new();
    let m = Mount::start_with(&["--default-volume", "0"], |data| {
        sectors = prefill(data, 16, 12, 100);
    });
    m.write("volumes/1/slots", "8\n").unwrap();
    wait_state(&m, 1, 60);
    assert_eq!(m.read("volumes/1/slots"), "8\n");
    assert_eq!(m.used(1) + m.used(2), 12);
    let status = m.read("status");
    assert!(
        status.contains("resizing volume 1 to 8 slots: done"),
        "{status}"
    );
    assert_all_read_back(&m, &sectors);

    // refused at once: not enough room anywhere for what must move
    let e = m.write("volumes/2/slots", "1\n").unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC);
    // no job to cancel
    let e = m.write("volumes/1/remove", "cancel\n").unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
    let e = m.write("volumes/1/remove", "please\n").unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);

    m.write("volumes/1/remove", "1\n").unwrap();
    wait_state(&m, 1, 60);
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.path("volumes/1").exists() {
        assert!(Instant::now() < deadline, "volume 1 was not removed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(m.used(2), 12);
    assert!(m.read("status").contains("removing volume 1: done"));
    while !m.read("metrics").contains("sectorfs_jobs_running 0") {
        assert!(
            Instant::now() < deadline,
            "the job is still counted as running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_all_read_back(&m, &sectors);
}

#[test]
fn sigkill_during_a_shrink_and_a_removal_then_remount() {
    for round in 0..6u64 {
        let mut sectors = HashMap::new();
        let mut m = Mount::start_with(&["--default-volume", "0"], |data| {
            sectors = prefill(data, 40, 32, 1000 + round * 100);
        });
        let removing = round % 2 == 1;
        if removing {
            m.write("volumes/1/remove", "1\n").unwrap();
        } else {
            m.write("volumes/1/slots", "4\n").unwrap();
        }
        std::thread::sleep(Duration::from_millis(round * 37 % 150));
        m.kill();
        m.mount();
        // the job resumes at mount and finishes
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let done = if removing {
                !m.path("volumes/1").exists()
            } else {
                m.read("volumes/1/slots") == "4\n" && m.read("volumes/1/state") == "ready\n"
            };
            if done {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the job did not finish"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_all_read_back(&m, &sectors);
        let total: u64 = [1, 2]
            .iter()
            .filter(|v| m.path(&format!("volumes/{v}")).exists())
            .map(|v| m.used(*v))
            .sum();
        assert_eq!(
            total,
            sectors.len() as u64,
            "round {round}: slots leaked or shared"
        );
        m.unmount();
        offline_check(&m, &format!("round {round}"));
    }
}

#[test]
fn resize_and_remove_through_the_command_line() {
    let mut sectors = HashMap::new();
    let m = Mount::start_with(&["--default-volume", "0"], |data| {
        sectors = prefill(data, 16, 6, 300);
    });
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sectorfs"))
            .args(args)
            .arg("--mount")
            .arg(&m.mnt)
            .output()
            .unwrap()
    };
    let out = cli(&["volume", "resize", "1", "32MiB"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_state(&m, 1, 60);
    assert_eq!(m.read("volumes/1/slots"), "8\n");
    // refused with a sentence, not a bare errno
    let out = cli(&["volume", "resize", "1", "3MiB"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a whole number of 4 MiB sectors"), "{err}");
    assert_eq!(m.read("volumes/1/slots"), "8\n");
    let out = cli(&["volume", "remove", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.path("volumes/1").exists() {
        assert!(Instant::now() < deadline, "volume 1 was not removed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_all_read_back(&m, &sectors);
}
