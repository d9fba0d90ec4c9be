//! Telling the kernel what it must forget, before the call that made it
//! untrue returns.
//!
//! Three kinds, each sent where it cannot deadlock:
//! - attributes (a link count changed, a sector freed): they take no kernel
//!   lock, so they go at once, from whatever thread made the change;
//! - names (a sector freed, a temp directory expired, a contract gone):
//!   the kernel drops a name holding its directory's lock, which the
//!   system call being answered may hold (`rm /temp/5/<root>` holds
//!   `/temp/5`), as may calls waiting for a FUSE thread. So a request
//!   collects them ([`collecting`]) and its answer goes from a thread of
//!   its own once they are sent ([`Invalidator::answer_after`]): the FUSE
//!   threads never wait on a directory lock, and the call still returns
//!   only after the kernel dropped the names. Outside a request (a job's
//!   thread, which holds no kernel lock) they go at once;
//! - pages of a freed sector: from one thread of their own, not waited
//!   for. A freed sector's inode is never given again, so no other sector
//!   can show them; they only leave memory sooner.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use fuser::{INodeNo, Notifier};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use super::known::Name;
use crate::error::{Error, Result};

thread_local! {
    /// The names a request being served on this thread made untrue.
    static PENDING: RefCell<Option<Vec<Name>>> = const { RefCell::new(None) };
}

/// Runs a request's work, collecting the names it made untrue instead of
/// sending them.
pub fn collecting<T>(work: impl FnOnce() -> T) -> (T, Vec<Name>) {
    PENDING.with_borrow_mut(|p| *p = Some(Vec::new()));
    let out = work();
    let mut names = PENDING.with_borrow_mut(|p| p.take()).unwrap_or_default();
    names.dedup();
    (out, names)
}

#[derive(Default)]
pub struct Invalidator {
    notifier: OnceLock<Notifier>,
    pages: Mutex<Option<mpsc::Sender<u64>>>,
    /// Held (shared) while a name is looked up and answered: a change takes
    /// it exclusively, for a moment, before it tells which names went, so
    /// that a lookup that read the store before the change has had its
    /// answer cached by then, and is dropped with the rest.
    answering: RwLock<()>,
}

impl Invalidator {
    /// Starts telling the kernel, through `notifier`.
    pub fn start(&self, notifier: Notifier) -> Result<()> {
        let (tx, rx) = mpsc::channel::<u64>();
        let pages = notifier.clone();
        std::thread::Builder::new()
            .name("invalidate".into())
            .spawn(move || {
                for ino in rx {
                    inode(&pages, ino, 0);
                }
            })
            .map_err(|e| Error::io("cannot start a thread", e))?;
        *self.pages.lock() = Some(tx);
        let _ = self.notifier.set(notifier);
        Ok(())
    }

    /// The attributes of inode `ino` changed.
    pub fn attrs(&self, ino: u64) {
        if let Some(n) = self.notifier.get() {
            inode(n, ino, -1);
        }
    }

    /// Inode `ino` is gone: its pages may go, in the background.
    pub fn pages(&self, ino: u64) {
        if let Some(tx) = self.pages.lock().as_ref()
            && tx.send(ino).is_err()
        {
            tracing::debug!("inode {ino} gone while the mount ends");
        }
    }

    /// `name` may be cached and is no longer true: collected if a request
    /// is being served on this thread, else told now.
    pub fn entry(&self, name: Name) {
        let collected = PENDING.with_borrow_mut(|p| match p {
            Some(names) => {
                names.push(name.clone());
                true
            }
            None => false,
        });
        if !collected {
            self.entries(&[name]);
        }
    }

    /// Tells the kernel to drop `names`.
    pub fn entries(&self, names: &[Name]) {
        let Some(n) = self.notifier.get() else {
            return;
        };
        drop(self.answering.write());
        for name in names {
            match n.inval_entry(INodeNo(name.parent), OsStr::new(&name.name)) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => tracing::warn!(
                    "cannot tell the kernel to forget the name {} (in directory inode {}); it \
                     may show until it expires: {e}",
                    name.name,
                    name.parent
                ),
            }
        }
    }

    /// Held while a lookup is done and answered (see `answering`).
    pub fn answering(&self) -> RwLockReadGuard<'_, ()> {
        self.answering.read()
    }

    /// Sends `answer` once `names` are dropped: at once if there are none,
    /// else from a thread of its own (see the module's comment).
    pub fn answer_after(
        self: &Arc<Self>,
        names: Vec<Name>,
        answer: impl FnOnce() + Send + 'static,
    ) {
        if names.is_empty() || self.notifier.get().is_none() {
            return answer();
        }
        let this = self.clone();
        crate::engine::spawn_or_run("answer", move || {
            this.entries(&names);
            answer();
        });
    }
}

/// Tells the kernel to drop what it caches of inode `ino`: its attributes
/// (`offset` -1) or its pages too (0). An inode the kernel has already
/// forgotten is routine; anything else is logged.
fn inode(notifier: &Notifier, ino: u64, offset: i64) {
    match notifier.inval_inode(INodeNo(ino), offset, 0) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => tracing::warn!(
            "cannot tell the kernel to drop its cache of inode {ino}; a stale link count or \
             freed sector data may show until it expires: {e}"
        ),
    }
}
