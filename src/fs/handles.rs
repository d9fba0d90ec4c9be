//! Open files. Each open gets a handle number; the handle holds what the
//! open needs: a snapshot of generated content, the root being read, or a
//! write in progress that is applied at close.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::inode::Node;
use super::sector_writer::SectorWriter;
use crate::engine::{ContractEdit, Reference};
use crate::merkle::Root;

pub enum Handle {
    /// Generated content, fixed when the file was opened.
    Snapshot(Vec<u8>),
    /// A stored sector open for reading.
    SectorRead(Root),
    /// A sector being written; stored at the first flush.
    SectorWrite(Mutex<SectorUpload>),
    /// A contract open for writing; revised at the first flush.
    ContractWrite(Mutex<ContractUpload>),
    /// A control file: lines apply as they are written.
    Control {
        node: Node,
        snapshot: Vec<u8>,
        partial: Mutex<Vec<u8>>,
    },
}

pub struct SectorUpload {
    pub writer: SectorWriter,
    pub reference: Reference,
    /// Set by a flush that stored (or definitely refused) the sector; later
    /// flushes report the same outcome until the next write.
    pub outcome: Option<Result<(), i32>>,
}

pub struct ContractUpload {
    pub name: String,
    /// `None`: opened without O_TRUNC or O_APPEND, so a write is refused.
    pub edit: Option<ContractEdit>,
    pub snapshot: Vec<u8>,
    /// Replace: the whole new list; append: what to append at next flush.
    pub data: Vec<u8>,
    /// Something was written since the handle was opened.
    pub written: bool,
    /// Something was written since the last flush applied it.
    pub dirty: bool,
    pub outcome: Option<Result<(), i32>>,
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

    pub fn get(&self, fh: u64) -> Option<Arc<Handle>> {
        self.map.read().get(&fh).cloned()
    }

    pub fn remove(&self, fh: u64) {
        self.map.write().remove(&fh);
    }
}
