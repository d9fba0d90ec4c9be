//! Volume files that fail on demand, and crash points: the deterministic
//! fault tests of the engine (`tests/engine_faults.rs`), as redb's crash
//! tests do with a failing `StorageBackend`.
//!
//! A [`Faults`] is an engine's [`StorageOpener`] (`engine::Options::storage`):
//! it opens real files wrapped so that, as planned, the Nth read, write,
//! sync, punch, resize or open (counted per kind, or all together) fails
//! with an errno, a write is torn (its first bytes land, then it fails or
//! the engine "dies"), or the engine dies at a named crash point.
//!
//! Dying: the calling thread unwinds with a [`Crashed`] panic, and from
//! then on every crash point and every volume I/O of that engine panics too
//! (in a thread not already unwinding; there they fail with `EIO` and do
//! nothing), so nothing after the point reaches a disk or commits. The test
//! catches the panic (or waits for [`Faults::crashed`] when a job thread
//! died), drops the engine without its clean shutdown, and opens the data
//! dir again. It models a process killed at that point: bytes written and
//! not synced are still in the page cache, as after `kill -9`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::disk::Disk;
use super::storage::{Storage, StorageOpener};

/// Every named step where an engine can be stopped, in the order each path
/// passes them.
pub const CRASH_POINTS: &[&str] = &[
    // write: the slot written, then synced (before the commit), then committed
    "write:slot-written",
    "write:synced",
    "write:committed",
    // move (shrink, remove): a batch copied, synced, re-pointed
    "move:copied",
    "move:synced",
    "move:repointed",
    // a job's end: a shrink's row cut (file not yet), a removal's file
    // deleted (rows not yet), and the job ended (its row not yet forgotten)
    "shrink:recorded",
    "remove:file-deleted",
    "job:ended",
    // free: rows deleted and punches recorded, slots punched, pending rows
    // cleared (slots not yet handed back)
    "free:recorded",
    "free:punched",
    "free:cleared",
    // a repair of copies: a batch's new copies written (not yet synced nor
    // recorded), and the batch recorded (the cursor not yet saved)
    "repair:written",
    "repair:batch",
];

/// The kinds of call a plan counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Open,
    Read,
    Write,
    Sync,
    Punch,
    SetLen,
}

/// What a planned call does instead of its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails with the errno, having done nothing.
    Fail(i32),
    /// (A write) lands its first `keep` bytes, then fails with `errno`.
    Tear { keep: usize, errno: i32 },
    /// (A write) lands its first `keep` bytes, then the engine dies.
    TearAndCrash { keep: usize },
}

/// The panic payload of an engine stopped at a crash point (or by a torn
/// write): the point's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crashed(pub String);

/// Whether a caught panic is a planned crash (and not a real failure).
pub fn is_crash(payload: &(dyn std::any::Any + Send)) -> bool {
    payload.is::<Crashed>()
}

#[derive(Debug, Default)]
struct Plan {
    /// Calls of this kind are counted (`None`: every kind).
    op: Option<Op>,
    /// Only calls on this file are counted (`None`: every file).
    path: Option<PathBuf>,
    /// The counted call that gets the fault (1-based; 0: none).
    nth: u64,
    /// And every counted call after it too.
    sticky: bool,
    fault: Option<Fault>,
    counted: u64,
    fired: u64,
    crash_at: Option<(&'static str, u64)>,
    points_seen: u64,
    /// Every call since the last [`Faults::reset`], per kind.
    calls: Vec<(Op, u64)>,
}

#[derive(Debug, Default)]
struct Shared {
    plan: Mutex<Plan>,
    dead: AtomicBool,
    crashed: Mutex<Option<String>>,
}

/// A fault plan and the opener of the files it applies to. Clones share
/// the plan.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Shared>);

impl Faults {
    pub fn new() -> Faults {
        Faults::default()
    }

    /// The `nth` call of kind `op` (any kind: `None`) from now on fails
    /// with `fault`; counts start again from zero.
    pub fn inject(&self, op: Option<Op>, nth: u64, fault: Fault) {
        self.arm(op, nth, fault, false);
    }

    /// As [`inject`](Self::inject), and every counted call after it too.
    pub fn inject_from(&self, op: Option<Op>, nth: u64, fault: Fault) {
        self.arm(op, nth, fault, true);
    }

    fn arm(&self, op: Option<Op>, nth: u64, fault: Fault, sticky: bool) {
        assert!(nth > 0, "calls are counted from 1");
        let mut plan = self.0.plan.lock();
        plan.op = op;
        plan.nth = nth;
        plan.sticky = sticky;
        plan.fault = Some(fault);
        plan.counted = 0;
        plan.fired = 0;
    }

    /// Counts only calls on the file at `path` (`None`: every file).
    pub fn only_file(&self, path: Option<&Path>) {
        self.0.plan.lock().path = path.map(Path::to_path_buf);
    }

    /// The engine dies the `nth` time it passes the crash point `name`.
    pub fn crash_at(&self, name: &'static str, nth: u64) {
        assert!(CRASH_POINTS.contains(&name), "no crash point {name}");
        let mut plan = self.0.plan.lock();
        plan.crash_at = Some((name, nth));
        plan.points_seen = 0;
    }

    /// No fault planned, nothing counted, and alive again (for the next
    /// engine opened with it).
    pub fn reset(&self) {
        *self.0.plan.lock() = Plan::default();
        *self.0.crashed.lock() = None;
        self.0.dead.store(false, Ordering::SeqCst);
    }

    /// How many times the planned fault was applied.
    pub fn fired(&self) -> u64 {
        self.0.plan.lock().fired
    }

    /// Calls of kind `op` since the last reset.
    pub fn calls(&self, op: Op) -> u64 {
        let plan = self.0.plan.lock();
        plan.calls.iter().find(|(o, _)| *o == op).map_or(0, |c| c.1)
    }

    /// Where the engine died, if it did.
    pub fn crashed(&self) -> Option<String> {
        self.0.crashed.lock().clone()
    }

    /// The fault for this call, if it is the planned one; counts it.
    fn hit(&self, op: Op, path: &Path) -> Option<Fault> {
        let mut plan = self.0.plan.lock();
        match plan.calls.iter_mut().find(|(o, _)| *o == op) {
            Some(c) => c.1 += 1,
            None => plan.calls.push((op, 1)),
        }
        let counted = plan.fault.is_some()
            && plan.op.is_none_or(|o| o == op)
            && plan.path.as_deref().is_none_or(|p| p == path);
        if !counted {
            return None;
        }
        plan.counted += 1;
        let due = plan.counted == plan.nth || (plan.sticky && plan.counted > plan.nth);
        if !due {
            return None;
        }
        plan.fired += 1;
        plan.fault
    }

    /// Stops the engine: this thread unwinds, and every other one at its
    /// next crash point or volume I/O.
    fn die(&self, at: &str) -> ! {
        self.0.dead.store(true, Ordering::SeqCst);
        self.0.crashed.lock().get_or_insert_with(|| at.to_string());
        std::panic::panic_any(Crashed(at.to_string()))
    }

    /// Before any I/O: a dead engine does none.
    fn alive(&self) -> io::Result<()> {
        if !self.0.dead.load(Ordering::SeqCst) {
            return Ok(());
        }
        if std::thread::panicking() {
            // a drop while unwinding: a second panic would abort
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.die("after the crash")
    }

    /// A call's fault, once it is known to be due: the error to return
    /// (a tear lands its bytes first).
    fn apply(&self, fault: Fault, write: Option<(&dyn Storage, u64, &[&[u8]])>) -> io::Error {
        match fault {
            Fault::Fail(errno) => io::Error::from_raw_os_error(errno),
            Fault::Tear { keep, errno } => {
                if let Some((inner, at, parts)) = write {
                    let _ = inner.write_at(at, &first_bytes(parts, keep));
                }
                io::Error::from_raw_os_error(errno)
            }
            Fault::TearAndCrash { keep } => {
                if let Some((inner, at, parts)) = write {
                    let _ = inner.write_at(at, &first_bytes(parts, keep));
                }
                self.die("a torn write")
            }
        }
    }

    /// Runs `call` unless this call is the planned fault.
    fn run<T>(&self, op: Op, path: &Path, call: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        self.alive()?;
        match self.hit(op, path) {
            Some(fault) => Err(self.apply(fault, None)),
            None => call(),
        }
    }
}

/// The first `keep` bytes of `parts`.
fn first_bytes<'a>(parts: &[&'a [u8]], mut keep: usize) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    for p in parts {
        if keep == 0 {
            break;
        }
        let n = keep.min(p.len());
        out.push(&p[..n]);
        keep -= n;
    }
    out
}

impl StorageOpener for Faults {
    fn create(&self, path: &Path) -> io::Result<Box<dyn Storage>> {
        let inner = self.run(Op::Open, path, || Disk.create(path))?;
        Ok(Box::new(self.wrap(inner, path)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn Storage>> {
        let inner = self.run(Op::Open, path, || Disk.open(path))?;
        Ok(Box::new(self.wrap(inner, path)))
    }

    fn crash_point(&self, name: &'static str) {
        debug_assert!(CRASH_POINTS.contains(&name), "unlisted crash point {name}");
        if self.0.dead.load(Ordering::SeqCst) {
            if !std::thread::panicking() {
                self.die(name);
            }
            return;
        }
        let due = {
            let mut plan = self.0.plan.lock();
            match plan.crash_at {
                Some((at, nth)) if at == name => {
                    plan.points_seen += 1;
                    plan.points_seen == nth
                }
                _ => false,
            }
        };
        if due {
            self.die(name);
        }
    }
}

impl Faults {
    fn wrap(&self, inner: Box<dyn Storage>, path: &Path) -> FaultyStorage {
        FaultyStorage {
            inner,
            path: path.to_path_buf(),
            faults: self.clone(),
        }
    }
}

/// A real file whose calls go through a [`Faults`] plan.
#[derive(Debug)]
pub struct FaultyStorage {
    inner: Box<dyn Storage>,
    path: PathBuf,
    faults: Faults,
}

impl Storage for FaultyStorage {
    fn write_at(&self, at: u64, parts: &[&[u8]]) -> io::Result<()> {
        self.faults.alive()?;
        match self.faults.hit(Op::Write, &self.path) {
            Some(fault) => Err(self.faults.apply(fault, Some((&*self.inner, at, parts)))),
            None => self.inner.write_at(at, parts),
        }
    }

    fn read_at(&self, at: u64, buf: &mut [u8]) -> io::Result<()> {
        self.faults
            .run(Op::Read, &self.path, || self.inner.read_at(at, buf))
    }

    /// A hint: never faulted (a failed one is left to the sync to report).
    fn start_writeback(&self, at: u64, len: u64) -> io::Result<()> {
        self.faults.alive()?;
        self.inner.start_writeback(at, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.faults
            .run(Op::Sync, &self.path, || self.inner.sync_data())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.faults
            .run(Op::Sync, &self.path, || self.inner.sync_all())
    }

    fn punch(&self, at: u64, len: u64) -> io::Result<()> {
        self.faults
            .run(Op::Punch, &self.path, || self.inner.punch(at, len))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults
            .run(Op::SetLen, &self.path, || self.inner.set_len(len))
    }

    fn size(&self) -> io::Result<u64> {
        self.faults.alive()?;
        self.inner.size()
    }

    fn allocated(&self) -> io::Result<u64> {
        self.faults.alive()?;
        self.inner.allocated()
    }

    fn is_at(&self, path: &Path) -> io::Result<bool> {
        self.faults.alive()?;
        self.inner.is_at(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::VolumeFile;
    use std::panic::AssertUnwindSafe;

    /// The Nth write of a kind is torn and fails; the calls around it work.
    #[test]
    fn the_nth_write_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let vol = VolumeFile::create(&faults, &dir.path().join("v.vol"), 1).unwrap();
        faults.inject(
            Some(Op::Write),
            2,
            Fault::Tear {
                keep: 10,
                errno: libc::ENOSPC,
            },
        );
        vol.write_part(0, 0, &[1; 100]).unwrap();
        let e = vol.write_part(0, 100, &[2; 100]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        vol.write_part(0, 200, &[3; 100]).unwrap();
        vol.sync().unwrap();
        let mut got = [0u8; 300];
        vol.read(0, 0, &mut got).unwrap();
        assert!(
            got[..110]
                .iter()
                .enumerate()
                .all(|(i, b)| *b == 1 + (i >= 100) as u8)
        );
        assert!(
            got[110..200].iter().all(|b| *b == 0),
            "only 10 bytes landed"
        );
        assert!(got[200..].iter().all(|b| *b == 3));
        assert_eq!((faults.fired(), faults.calls(Op::Write)), (1, 3));
    }

    /// After a crash point, every volume call panics too (and fails
    /// quietly in a thread already unwinding).
    #[test]
    fn nothing_runs_after_a_crash_point() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::new();
        let vol = VolumeFile::create(&faults, &dir.path().join("v.vol"), 1).unwrap();
        faults.crash_at("write:synced", 2);
        faults.crash_point("write:synced");
        let crash =
            std::panic::catch_unwind(AssertUnwindSafe(|| faults.crash_point("write:synced")));
        assert!(is_crash(&*crash.unwrap_err()));
        assert_eq!(faults.crashed().as_deref(), Some("write:synced"));
        let write = std::panic::catch_unwind(AssertUnwindSafe(|| vol.write_part(0, 0, &[1; 10])));
        assert!(is_crash(&*write.unwrap_err()));
        faults.reset();
        vol.write_part(0, 0, &[1; 10]).unwrap();
    }
}
