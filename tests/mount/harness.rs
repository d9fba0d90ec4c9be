//! A real sectorfs daemon mounted in a temporary directory, driven like a
//! user would drive it. Unmounted on drop, even when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sectorfs::merkle::{Root, sector_root};

pub use crate::common::rng::{Rng, noise_sector};

/// The `sectorfs` binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_sectorfs");

pub struct Mount {
    pub dir: tempfile::TempDir,
    pub mnt: PathBuf,
    pub data: PathBuf,
    args: Vec<String>,
    /// Extra environment of the daemon; without `--data-dir` when set.
    env: Option<Vec<(String, String)>>,
    /// Variables added to the daemon's environment (a cold store's).
    daemon_env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Mount {
    /// Mounts a new store (default 1 GiB volume) with extra `mount` args.
    pub fn start(args: &[&str]) -> Mount {
        Mount::start_with(args, |_| {})
    }

    /// As [`start`](Self::start), after `setup` has prepared the (still
    /// unmounted) data dir, e.g. with the engine used offline.
    pub fn start_with(args: &[&str], setup: impl FnOnce(&Path)) -> Mount {
        Mount::start_full(args, &[], setup)
    }

    /// As [`start`](Self::start), with `env` added to the daemon's
    /// environment.
    pub fn start_env_args(args: &[&str], env: &[(String, String)]) -> Mount {
        Mount::start_full(args, env, |_| {})
    }

    fn start_full(args: &[&str], env: &[(String, String)], setup: impl FnOnce(&Path)) -> Mount {
        let dir = tempfile::tempdir().expect("temp dir");
        let mnt = dir.path().join("mnt");
        let data = dir.path().join("data");
        std::fs::create_dir(&mnt).unwrap();
        setup(&data);
        let mut m = Mount {
            dir,
            mnt,
            data,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: None,
            daemon_env: env.to_vec(),
            child: None,
        };
        m.mount();
        m
    }

    /// Mounts with no `--data-dir`, so the daemon picks its default from
    /// `vars` (values relative to the scratch dir; "" stays empty); the data
    /// dir is expected at `data` (relative to the scratch dir).
    pub fn start_env(vars: &[(&str, &str)], data: &str) -> Mount {
        let dir = tempfile::tempdir().expect("temp dir");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let env = vars
            .iter()
            .map(|(k, v)| {
                let value = if v.is_empty() {
                    String::new()
                } else {
                    dir.path().join(v).display().to_string()
                };
                (k.to_string(), value)
            })
            .collect();
        let mut m = Mount {
            data: dir.path().join(data),
            dir,
            mnt,
            args: Vec::new(),
            env: Some(env),
            daemon_env: Vec::new(),
            child: None,
        };
        m.mount();
        m
    }

    /// Sends `sig` to the daemon and waits (up to 20 s) for it to exit.
    pub fn stop_with(&mut self, sig: nix::sys::signal::Signal) -> std::process::ExitStatus {
        self.signal(sig);
        self.wait_exit()
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("a running daemon");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// Waits (up to 20 s) for the daemon to exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("a running daemon");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("daemon did not stop:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the daemon and waits until the mount answers. A mount that
    /// cannot be made fails the test: it never skips.
    ///
    /// One retry case: the data dir lock still held for a moment by a copy
    /// of the test process's own lock fd (an engine used offline in `setup`)
    /// that a child forked by another test thread has not yet closed at
    /// its exec.
    pub fn mount(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log_start = self.log().len();
            self.spawn_daemon();
            loop {
                if self.mnt.join("status").exists() {
                    return;
                }
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    self.child = None;
                    let log = self.log();
                    let locked = log[log_start..].contains("is in use by another sectorfs process");
                    if locked && Instant::now() < deadline {
                        break;
                    }
                    panic!("sectorfs mount exited with {status}:\n{log}");
                }
                assert!(
                    Instant::now() < deadline,
                    "mount did not come up:\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn_daemon(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("mount").arg(&self.mnt);
        match &self.env {
            None => {
                cmd.arg("--data-dir").arg(&self.data);
            }
            Some(vars) => {
                cmd.envs(vars.iter().map(|(k, v)| (k, v)));
            }
        }
        let child = cmd
            .args(&self.args)
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "sectorfs=debug,info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sectorfs");
        self.child = Some(child);
    }

    /// Clean unmount with SIGTERM; waits for the daemon to exit.
    pub fn unmount(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(
                        status.success(),
                        "daemon exited with {status}:\n{}",
                        self.log()
                    );
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

    /// The `mount` arguments of the next start.
    pub fn set_args(&mut self, args: &[&str]) {
        self.args = args.iter().map(|s| s.to_string()).collect();
    }

    pub fn remount(&mut self) {
        self.unmount();
        self.mount();
    }

    /// The daemon's process id while it runs (for /proc/<pid>/status).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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

    /// A scratch directory outside the mount, removed with the mount.
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a sector with std::fs (create, write, close) under its root;
    /// close's error is the store's verdict.
    pub fn try_put(&self, data: &[u8]) -> std::io::Result<Root> {
        let root = sector_root(data);
        write_file(&self.sector_path(&root), data)?;
        Ok(root)
    }

    pub fn put(&self, data: &[u8]) -> Root {
        self.try_put(data).expect("store sector")
    }

    /// Names listed in `/sectors`.
    pub fn listed(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("sectors"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// Occupied slots of a volume, from `/volumes/<id>/used`.
    pub fn used(&self, volume: u32) -> u64 {
        self.read(&format!("volumes/{volume}/used"))
            .trim()
            .parse()
            .unwrap()
    }

    /// st_nlink of a stored sector: its number of references.
    pub fn nlink(&self, root: &Root) -> u64 {
        std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(self.sector_path(root)).unwrap())
    }

    /// `user.sectorfs.refs` of a stored sector.
    pub fn refs(&self, root: &Root) -> String {
        xattr(&self.sector_path(root), "user.sectorfs.refs").unwrap()
    }

    /// Free writable slots, as `df` counts them (`f_bavail`).
    pub fn df_free(&self) -> u64 {
        self.sh_ok("stat -f -c %a \"$MNT\"").trim().parse().unwrap()
    }

    /// The references of the sector of noise `seed`.
    pub fn refs_of(&self, seed: u64) -> String {
        self.refs(&sector_root(&sector(seed)))
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

    /// Runs a shell command with the mount as working directory, `sectorfs`
    /// on the PATH, `$S` the scratch dir and `$MNT` the mountpoint.
    pub fn sh(&self, script: &str) -> std::process::Output {
        let bin_dir = Path::new(BIN).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(&self.mnt)
            .env("PATH", path)
            .env("S", self.scratch())
            .env("MNT", &self.mnt)
            .output()
            .expect("run bash")
    }

    /// As [`sh`](Self::sh), and the command must succeed; returns its stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "`{script}` failed with {}:\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
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
    noise_sector(seed)
}

pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Creates (or truncates) `path`, writes `data` and closes it, returning the
/// first error including close's.
pub fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    close(f)
}

/// Opens `path` with `opts`, writes `data`, closes; the first error wins.
pub fn write_with(opts: &std::fs::OpenOptions, path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    close(f)
}

/// An extended attribute as text, through getxattr(2) itself.
pub fn xattr(path: &Path, name: &str) -> std::io::Result<String> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the length given.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(len as usize);
    Ok(String::from_utf8(buf).unwrap())
}

/// Every extended attribute name, through listxattr(2).
pub fn xattr_names(path: &Path) -> std::io::Result<Vec<String>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut buf = vec![0u8; 1024];
    // SAFETY: a valid C string and a buffer of the length given.
    let len = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(len as usize);
    Ok(buf
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect())
}

/// The root of data that is not stored anywhere.
pub fn unstored_root(seed: u64) -> Root {
    sector_root(&sector(seed))
}

/// `sectorfs check --data-dir` on a stopped store must find it clean.
pub fn offline_check(m: &Mount, when: &str) {
    let out = Command::new(BIN)
        .args(["check", "--data-dir"])
        .arg(&m.data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "offline check {when}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `done` every 20 ms until it holds; fails the test after `secs`.
pub fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a file past the kernel's page cache: the daemon serves it.
/// The whole file read through a private read-only mapping.
pub fn read_mapped(path: &Path) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    // SAFETY: a read-only mapping of an open file, copied out and unmapped
    // before the file is closed.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            f.as_raw_fd(),
            0,
        );
        assert!(
            p != libc::MAP_FAILED,
            "{} cannot be mapped: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        let bytes = std::slice::from_raw_parts(p as *const u8, len).to_vec();
        libc::munmap(p, len);
        bytes
    }
}

pub fn read_uncached(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut f = std::fs::File::open(path)?;
    // SAFETY: plain syscall on an open fd.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}
