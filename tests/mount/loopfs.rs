//! Scratch ext4 file systems on loop devices: a device of its own for a
//! data dir or a volume (distinct `st_dev`), that a test can fail.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `cmd`, panicking with its output unless it succeeds; its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An ext4 file system in a file on a loop device, where the data dir
/// lives, so the test can make it read-only under the daemon.
pub struct LoopFs {
    /// Holds the image and the mountpoint; removed after the unmount.
    _dir: tempfile::TempDir,
    pub mnt: PathBuf,
    image: PathBuf,
}

impl LoopFs {
    /// A new file system of 64 MiB, or `None` (a skip, never under CI)
    /// where this machine has no loop devices.
    pub fn new_or_skip() -> Option<LoopFs> {
        LoopFs::sized_or_skip(64 << 20)
    }

    /// A new file system of `bytes`, or `None` (a skip, never under CI)
    /// where this machine has no loop devices.
    pub fn sized_or_skip(bytes: u64) -> Option<LoopFs> {
        if !Path::new("/dev/loop-control").exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "no loop devices (/dev/loop-control): a test that needs one cannot run"
            );
            eprintln!("skipped: no loop devices (/dev/loop-control) on this machine");
            return None;
        }
        Some(LoopFs::of_size(bytes))
    }

    /// A new file system of `bytes` (a sparse image).
    fn of_size(bytes: u64) -> LoopFs {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("fs.img");
        let mnt = dir.path().join("fs");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&image)
            .unwrap()
            .set_len(bytes)
            .unwrap();
        run(Command::new("mkfs.ext4").arg("-q").arg(&image));
        let fs = LoopFs {
            _dir: dir,
            mnt,
            image,
        };
        fs.mount();
        fs
    }

    fn mount(&self) {
        run(Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(&self.image)
            .arg(&self.mnt));
    }

    /// The ext4 name of the mounted device (`loop3`), for /sys/fs/ext4.
    pub fn device(&self) -> String {
        let src = run(Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(&self.mnt));
        src.trim().trim_start_matches("/dev/").to_string()
    }

    /// An ext4 error with errors=remount-ro: the file system turns
    /// read-only at once, even with files open for writing (which a
    /// `mount -o remount,ro` refuses with EBUSY).
    pub fn fail(&self) {
        let knob = format!("/sys/fs/ext4/{}/trigger_fs_error", self.device());
        std::fs::write(&knob, "sectorfs fault test\n")
            .unwrap_or_else(|e| panic!("write {knob}: {e}"));
        let opts = run(Command::new("findmnt")
            .args(["-n", "-o", "OPTIONS"])
            .arg(&self.mnt));
        assert!(
            opts.starts_with("ro") || opts.contains("emergency_ro"),
            "still writable: {opts}"
        );
    }

    /// Unmounts, repairs the error state and mounts read-write again.
    pub fn restore(&self) {
        run(Command::new("umount").arg(&self.mnt));
        let out = Command::new("e2fsck")
            .arg("-fy")
            .arg(&self.image)
            .output()
            .unwrap();
        // 0: clean, 1: errors corrected
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "e2fsck: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.mount();
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
    }
}
