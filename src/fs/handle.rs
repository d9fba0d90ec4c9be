//! Open files. Each open gets a handle number; the handle is the state of
//! one kind of open file, kept in its own module.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::contract_file::ContractFile;
use super::control_file::ControlFile;
use super::sector_file::SectorFile;
use crate::error::{Error, Result};
use crate::merkle::Root;

pub enum Handle {
    /// Generated content, fixed when the file was opened.
    Snapshot(Vec<u8>),
    /// A stored sector open for reading, and whether it had no copy but a
    /// cold one when opened (only such a sector's reads look for the cold
    /// store: one that goes cold while open is one not being read).
    SectorRead(Root, bool),
    /// A sector being written; stored at the first deciding flush (or, a
    /// staging file, at its rename: it outlives the handle).
    SectorWrite(Arc<Mutex<SectorFile>>),
    /// A contract open for writing; revised at the first deciding flush.
    ContractWrite(Mutex<ContractFile>),
    /// A control file: lines apply as they are written.
    Control(ControlFile),
}

/// The processes that wrote through a handle, by FUSE lock owner (one per
/// fd table). A flush is the close of one copy of the fd, and only a
/// writer's own close decides the outcome: a process that merely holds a
/// copy (a child forked while the file was open, closing it at exec)
/// flushes too, maybe in the middle of the writes, and must not apply half
/// the data.
#[derive(Default)]
pub struct Writers {
    owners: Vec<u64>,
    /// A write came without an owner, or too many wrote: any flush decides.
    unknown: bool,
}

impl Writers {
    pub fn note(&mut self, owner: Option<u64>) {
        match owner {
            Some(o) if self.owners.contains(&o) => {}
            Some(o) if self.owners.len() < 64 => self.owners.push(o),
            _ => self.unknown = true,
        }
    }

    /// Whether a flush by `owner` decides: it wrote, nothing was written
    /// yet, or who wrote is not known. `None` (an fsync) always decides.
    pub fn may_decide(&self, owner: Option<u64>) -> bool {
        match owner {
            None => true,
            Some(o) => self.unknown || self.owners.is_empty() || self.owners.contains(&o),
        }
    }
}

#[derive(Default)]
pub struct Handles {
    next: AtomicU64,
    map: RwLock<HashMap<u64, Arc<Handle>>>,
}

impl Handles {
    pub fn insert(&self, handle: Handle) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map.write().insert(fh, Arc::new(handle));
        fh
    }

    pub fn get(&self, fh: u64) -> Result<Arc<Handle>> {
        self.map
            .read()
            .get(&fh)
            .cloned()
            .ok_or_else(|| Error::BadHandle(format!("file handle {fh} is not open")))
    }

    pub fn remove(&self, fh: u64) -> Option<Arc<Handle>> {
        self.map.write().remove(&fh)
    }
}
