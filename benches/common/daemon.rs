//! A FUSE daemon under a benchmark: sectorfs itself, or libfuse's
//! `passthrough_ll` as a yardstick.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The `sectorfs` binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_sectorfs");

/// A FUSE daemon serving a mountpoint; stopped (SIGTERM, then `umount -l`
/// if it did not unmount) on drop, even when the benchmark panics.
pub struct Daemon {
    child: Option<Child>,
    mnt: PathBuf,
    what: String,
    /// Stopped already: the mountpoint may be someone else's now.
    stopped: bool,
}

impl Daemon {
    /// `sectorfs mount MNT --data-dir DATA`, ready once MNT/status exists.
    pub fn sectorfs(data: &Path, mnt: &Path, log: &Path) -> Daemon {
        Daemon::sectorfs_with(data, mnt, log, &[])
    }

    /// As [`sectorfs`](Self::sectorfs), with more `mount` arguments.
    pub fn sectorfs_with(data: &Path, mnt: &Path, log: &Path, args: &[&str]) -> Daemon {
        let log_file = std::fs::File::create(log).unwrap();
        let child = Command::new(BIN)
            .arg("mount")
            .arg(mnt)
            .arg("--data-dir")
            .arg(data)
            .args(["--default-volume", "0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start sectorfs");
        let mut d = Daemon {
            child: Some(child),
            mnt: mnt.to_path_buf(),
            what: format!("sectorfs (log: {})", log.display()),
            stopped: false,
        };
        d.wait_ready(&mnt.join("status"))
            .unwrap_or_else(|e| panic!("{e}"));
        d
    }

    /// `passthrough_ll -f -o source=SOURCE,cache=CACHE MNT`, ready once
    /// `probe` (a path under MNT) exists.
    pub fn passthrough(
        bin: &Path,
        cache: &str,
        source: &Path,
        mnt: &Path,
        probe: &Path,
    ) -> Result<Daemon, String> {
        let mut cmd = Command::new(bin);
        // it holds a descriptor per inode the kernel knows: `ls -l` of
        // 100,000 files needs more than the usual limit (root may raise it)
        // SAFETY: only setrlimit, async-signal-safe, between fork and exec
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 1 << 20,
                    rlim_max: 1 << 20,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    // not root: what the hard limit allows
                    let mut cur = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur);
                    cur.rlim_cur = cur.rlim_max;
                    libc::setrlimit(libc::RLIMIT_NOFILE, &cur);
                }
                Ok(())
            });
        }
        let child = cmd
            .arg("-f")
            .arg("-o")
            .arg(format!("source={},cache={cache}", source.display()))
            .arg(mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut d = Daemon {
            child: Some(child),
            mnt: mnt.to_path_buf(),
            what: "passthrough_ll".into(),
            stopped: false,
        };
        d.wait_ready(probe)?;
        Ok(d)
    }

    fn wait_ready(&mut self, probe: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if probe.exists() {
                return Ok(());
            }
            let child = self.child.as_mut().expect("running");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(format!("{} exited before mounting: {status}", self.what));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not mount at {} in 30 s",
                    self.what,
                    self.mnt.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM and wait for a clean exit; `umount -l` if it did not unmount.
    pub fn stop(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        eprintln!("{} did not stop on SIGTERM: killing it", self.what);
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if is_mountpoint(&self.mnt) {
            eprintln!(
                "{} left {} mounted: umount -l",
                self.what,
                self.mnt.display()
            );
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `path` is mounted on (its device differs from its parent's).
pub fn is_mountpoint(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(m), Some(parent)) = (std::fs::symlink_metadata(path), path.parent()) else {
        // a dead FUSE mount fails stat with ENOTCONN: still mounted
        return std::fs::symlink_metadata(path).is_err();
    };
    std::fs::metadata(parent).is_ok_and(|p| p.dev() != m.dev())
}
