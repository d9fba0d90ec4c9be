//! A real sectorfs daemon mounted in a temporary directory, driven like a
//! user would drive it. Unmounted on drop, even when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sectorfs::merkle::{Root, SECTOR_SIZE, sector_root};

pub struct Mount {
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
    pub data: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Mount {
    /// Mounts a new store (default 1 GiB volume) with extra `mount` args.
    pub fn start(args: &[&str]) -> Mount {
        let dir = tempfile::tempdir().expect("temp dir");
        let mnt = dir.path().join("mnt");
        let data = dir.path().join("data");
        std::fs::create_dir(&mnt).unwrap();
        let mut m = Mount {
            dir,
            mnt,
            data,
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        m.mount();
        m
    }

    /// Starts the daemon and waits until the mount answers. A mount that
    /// cannot be made fails the test: it never skips.
    pub fn mount(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sectorfs"))
            .arg("mount")
            .arg(&self.mnt)
            .arg("--data-dir")
            .arg(&self.data)
            .args(&self.args)
            .env("RUST_LOG", "sectorfs=debug,info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sectorfs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.mnt.join("status").exists() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sectorfs mount exited with {status}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "mount did not come up:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Clean unmount with SIGTERM; waits for the daemon to exit.
    pub fn unmount(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(status.success(), "daemon exited with {status}:\n{}", self.log());
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    lazy_unmount(&self.mnt);
                    panic!("daemon did not stop on SIGTERM:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL: the daemon dies mid-flight, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        lazy_unmount(&self.mnt);
    }

    pub fn remount(&mut self) {
        self.unmount();
        self.mount();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    pub fn sector_path(&self, root: &Root) -> PathBuf {
        self.mnt.join("sectors").join(root.to_string())
    }

    /// Writes a sector with std::fs (create, write, close) under its root.
    pub fn put(&self, data: &[u8]) -> Root {
        let root = sector_root(data);
        std::fs::write(self.sector_path(&root), data).expect("store sector");
        root
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// Writes `text` to a control file as `echo text > file` would.
    pub fn write(&self, rel: &str, text: &str) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(self.path(rel))?;
        f.write_all(text.as_bytes())?;
        close(f)
    }

    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.read("status.json")).expect("status.json is JSON")
    }

    /// Runs a shell command with the mount as working directory.
    pub fn sh(&self, script: &str) -> std::process::Output {
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(&self.mnt)
            .output()
            .expect("run bash")
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        lazy_unmount(&self.mnt);
    }
}

fn lazy_unmount(mnt: &Path) {
    let _ = nix::mount::umount2(mnt, nix::mount::MntFlags::MNT_DETACH);
}

/// Closes a file and returns close's error, which is where a sector write
/// is verified and made durable.
pub fn close(f: std::fs::File) -> std::io::Result<()> {
    let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
    nix::unistd::close(fd).map_err(std::io::Error::from)
}

/// Deterministic pseudo-random sector content for `seed`.
pub fn sector(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = vec![0u8; SECTOR_SIZE];
    for chunk in out.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    out
}

pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}
