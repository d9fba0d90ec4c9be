//! Open files. Each open gets a handle number; the handle holds what the
//! open needs: a snapshot of generated content, the root being read, or a
//! write in progress that is applied at close.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use super::inode::Node;
use super::sector_writer::SectorWriter;
use crate::engine::{ContractEdit, ContractRow, Reference};
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
        input: Mutex<ControlInput>,
    },
}

/// What was written to a control file and not applied yet.
#[derive(Default)]
pub struct ControlInput {
    /// The start of a line still to come.
    pub partial: Vec<u8>,
    /// Something was written.
    pub wrote: bool,
    /// A line that was not blank came (applied or refused).
    pub acted: bool,
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
    /// yet, or who wrote is not known.
    pub fn may_decide(&self, owner: u64) -> bool {
        self.unknown || self.owners.is_empty() || self.owners.contains(&owner)
    }
}

pub struct SectorUpload {
    pub writer: SectorWriter,
    pub writers: Writers,
    pub reference: Reference,
    /// Set by a flush that stored (or definitely refused) the sector; later
    /// flushes report the same outcome until the next write.
    pub outcome: Option<Result<(), i32>>,
}

pub struct ContractUpload {
    /// The contract's id: the handle follows it through renames.
    pub id: i64,
    /// Its name, as last seen (for messages and for finding who holds it).
    pub name: String,
    pub writers: Writers,
    /// `None`: opened without O_TRUNC or O_APPEND, so a write is refused.
    pub edit: Option<ContractEdit>,
    pub snapshot: Vec<u8>,
    /// The contract's revision and end (one past its last entry index) at
    /// open: a late truncation drops the entries below that end, and only
    /// while the list was not replaced since.
    pub opened_at: (i64, i64),
    /// Replace: the whole new list; append: what to append at next flush.
    pub data: Vec<u8>,
    /// Something was written since the handle was opened.
    pub written: bool,
    /// Something was written since the last flush applied it.
    pub dirty: bool,
    /// A flush applied this handle's list (an empty one included).
    pub applied: bool,
    /// This handle made the contract (a create), and no list of it was
    /// applied yet: a refused first list takes the contract away again.
    pub made: bool,
    /// The process that opened it (its thread group: any of its threads
    /// may close the file).
    pub opener: u32,
    pub outcome: Option<Result<(), i32>>,
    /// A write through this handle failed: its data is incomplete, so no
    /// later flush applies it and the list keeps what it had.
    pub failed: Option<i32>,
}

impl ContractUpload {
    /// A handle on contract `c` as read at open (its id and mark before
    /// its list); `made`: this handle's create made it, empty, so its
    /// truncation is done.
    pub fn new(
        c: ContractRow,
        edit: Option<ContractEdit>,
        snapshot: Vec<u8>,
        opener: u32,
        made: bool,
    ) -> ContractUpload {
        ContractUpload {
            id: c.id,
            name: c.name,
            writers: Writers::default(),
            edit,
            snapshot,
            opened_at: (c.revision, c.end),
            data: Vec::new(),
            written: false,
            dirty: false,
            applied: made,
            made,
            opener,
            outcome: None,
            failed: None,
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

    pub fn get(&self, fh: u64) -> Option<Arc<Handle>> {
        self.map.read().get(&fh).cloned()
    }

    pub fn remove(&self, fh: u64) {
        self.map.write().remove(&fh);
    }
}
