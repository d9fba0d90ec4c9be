//! Mounting: session settings, and a clean unmount on SIGINT/SIGTERM.

use std::path::Path;
use std::sync::Arc;

use fuser::{Config, MountOption, Session, SessionACL};
use nix::sys::signal::{SigSet, Signal};

use super::filesystem::SectorFs;
use super::fuse::Fuse;
use super::inode::Node;
use crate::engine::Engine;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct MountOptions {
    /// FUSE worker threads, each with its own cloned /dev/fuse fd.
    pub threads: usize,
    /// Let other users see the mount (off by default).
    pub allow_other: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            threads: 4,
            allow_other: false,
        }
    }
}

/// Blocks SIGINT and SIGTERM in the calling thread. Call it before any
/// thread starts (the engine's background threads included): every thread
/// inherits the mask, so only [`mount`]'s waiter receives them and unmounts
/// cleanly; a thread started earlier would take the signal and die with it.
pub fn block_signals() -> Result<SigSet> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals
        .thread_block()
        .map_err(|e| Error::io("cannot block signals", e.into()))?;
    Ok(signals)
}

/// Mounts `engine` at `mountpoint` and serves until SIGINT/SIGTERM or an
/// external unmount.
pub fn mount(engine: Arc<Engine>, mountpoint: &Path, options: &MountOptions) -> Result<()> {
    // the caller should have blocked them already; blocking again is harmless
    let signals = block_signals()?;

    // symlinks resolved (before it is mounted over): what a volume path
    // must not resolve into
    let mountpoint = std::fs::canonicalize(mountpoint)
        .or_else(|_| std::path::absolute(mountpoint))
        .map_err(|e| Error::io(format!("bad mountpoint {}", mountpoint.display()), e))?;
    let fs = SectorFs::new(engine.clone(), &mountpoint);
    listen(&engine, &fs);
    let invalidator = fs.invalidator();
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("sectorfs".into()),
        MountOption::Subtype("sectorfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
    ];
    config.acl = if options.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(options.threads.max(1));
    config.clone_fd = true;

    let mut session = Session::new(Fuse::new(fs), &mountpoint, &config).map_err(|e| {
        Error::io(
            format!("cannot mount sectorfs at {}", mountpoint.display()),
            e,
        )
    })?;
    invalidator.start(session.notifier())?;

    let mut unmounter = session.unmount_callable();
    let shown = mountpoint.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                tracing::info!("{sig}: unmounting {}", shown.display());
                if let Err(e) = unmounter.unmount() {
                    unmount_busy(&shown, e);
                }
            }
        })
        .map_err(|e| Error::io("cannot start a thread", e))?;

    tracing::info!(
        threads = options.threads,
        "sectorfs mounted at {}",
        mountpoint.display()
    );
    match session.run() {
        Ok(()) => {}
        // The kernel ends a connection by failing reads with ENODEV, but a
        // read that raced with the end (a request taken just as the last
        // open file of a detached mount closed) fails with ECONNABORTED
        // instead; fuser reports that one as an error. Either way the
        // connection is gone and every acknowledged call is already durable.
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
            tracing::info!("the kernel closed the FUSE connection ({e})");
        }
        Err(e) => return Err(Error::io("the FUSE session failed", e)),
    }
    tracing::info!("sectorfs unmounted from {}", mountpoint.display());
    Ok(())
}

/// Has the kernel drop what reference changes make untrue, before the call
/// that made them returns: a link count (attributes), a freed sector's
/// names (and, in the background, its pages).
fn listen(engine: &Engine, fs: &SectorFs) {
    let (known, invalidator) = (fs.known(), fs.invalidator());
    engine.set_refs_listener(Box::new(move |ids| {
        for id in known.held(ids) {
            invalidator.attrs(Node::Sector(id).ino());
        }
    }));
    let (known, invalidator) = (fs.known(), fs.invalidator());
    engine.set_free_listener(Box::new(move |f| {
        for name in known.freed(f.sector_id) {
            invalidator.entry(name);
        }
        invalidator.pages(Node::Sector(f.sector_id).ino());
    }));
}

/// How long a busy mount is retried before it is detached.
const BUSY_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// The unmount on SIGINT/SIGTERM failed with `e`. A mount is often busy
/// only for a moment (a file still open, a process that forked while it
/// had one): retry for a while, then detach it (lazy unmount), so the stop
/// never hangs; the session ends when the last file open in it is closed.
fn unmount_busy(mountpoint: &Path, e: std::io::Error) {
    if e.raw_os_error() != Some(libc::EBUSY) {
        tracing::error!("cannot unmount {}: {e}", mountpoint.display());
        return;
    }
    tracing::warn!(
        "{} is busy (a file or directory in it is in use); retrying for {}s",
        mountpoint.display(),
        BUSY_RETRY.as_secs()
    );
    let deadline = std::time::Instant::now() + BUSY_RETRY;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        match nix::mount::umount(mountpoint) {
            Ok(()) => return,
            Err(nix::errno::Errno::EBUSY) if std::time::Instant::now() < deadline => {}
            Err(nix::errno::Errno::EBUSY) => break,
            // unmounted meanwhile by someone else
            Err(nix::errno::Errno::EINVAL) => return,
            Err(e) => {
                tracing::error!("cannot unmount {}: {e}", mountpoint.display());
                return;
            }
        }
    }
    match nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => tracing::warn!(
            "{} was still busy after {}s: detached it; sectorfs stops when the last file \
             open in it is closed",
            mountpoint.display(),
            BUSY_RETRY.as_secs()
        ),
        Err(e) => tracing::error!("cannot unmount {}: {e}", mountpoint.display()),
    }
}
