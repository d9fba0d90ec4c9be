//! A new sector arriving in pieces, as writes through the mount do.
//!
//! Each 256 KiB chunk written in order is, once complete, handed to a thread
//! that writes it into a slot reserved for the sector, straight to the
//! device where the file system allows ([`SlotWriter`]), and queued to be
//! hashed when a core is idle ([`ChunkHasher`]), while the next chunk
//! arrives. The close waits for those writes, hashes what the background
//! did not on two threads while the sync runs, then commits. (Hashing each
//! chunk in the request that completed it was measured about 15% slower
//! through `cp`: the writer waited for it.) Chunks written out of order,
//! rewritten or cut by a truncate are simply done again at close. Nothing is
//! recorded before the whole sector hashes to its name and is synced, as on
//! every write path.

use std::sync::Arc;

use super::buffers::{self, Buf};
use super::chunk_hasher::ChunkHasher;
use super::slot_writer::SlotWriter;
use super::{Engine, Reference, Stored, Volume};
use crate::error::{Error, Result};
use crate::merkle::{self, Root, SECTOR_SIZE};
use crate::volume::VolumeFile;

/// Bytes written together: a quarter of the mount's largest write, so the
/// device starts on a write before all of it arrived. The mount reports it
/// as the files' block size, so tools write in pieces of this size.
pub const CHUNK: usize = buffers::LEN;
const CHUNKS: usize = SECTOR_SIZE / CHUNK;

/// What stands in a chunk's place while its buffer is moved.
fn placeholder() -> Chunk {
    Chunk::Sent(buffers::empty())
}

enum Chunk {
    /// Being filled; its first `filled` bytes arrived without a gap, and
    /// `in_order` stays true while nothing else was written. While it is,
    /// the bytes from `filled` on are left over from an earlier upload;
    /// once it is not, every byte not written is zero.
    Open {
        buf: Buf,
        filled: usize,
        in_order: bool,
    },
    /// Complete and sent to the slot (when there is one), whose writer may
    /// still hold it; hashed at close.
    Sent(Arc<Buf>),
}

/// Where the sector's data goes.
enum Target {
    /// Not chosen yet: the first complete chunk chooses.
    Unchosen,
    /// Hash only: the root was already stored (a reference is all a close
    /// adds) or no slot was free; the close takes the whole write path.
    Nowhere,
    Slot {
        volume: Arc<Volume>,
        file: Arc<VolumeFile>,
        slot: u64,
        /// Truncations counted when the slot was reserved.
        epoch: u64,
        /// The file's failed syncs counted then.
        sync_mark: u64,
        /// Writes chunks into the slot as they complete; `None` if it could
        /// not be started, and then each is written as it is sent.
        writer: Option<SlotWriter>,
    },
}

/// The sync of the slot at close.
enum Syncing<'s> {
    Thread(std::thread::ScopedJoinHandle<'s, std::io::Result<()>>),
    Done(std::io::Result<()>),
}

pub struct Upload {
    engine: Arc<Engine>,
    root: Root,
    target: Target,
    chunks: Vec<Chunk>,
    /// Per chunk, where its bytes are.
    written: [Written; CHUNKS],
    /// Per chunk, how many times it was sent: a root is of one sending.
    sent: [u64; CHUNKS],
    /// Hashes chunks in the background as they are sent.
    hasher: ChunkHasher,
}

/// Whether a chunk's bytes are in the reserved slot.
enum Written {
    Nowhere,
    /// Queued to the slot's writer.
    Pending,
    InSlot,
    Failed(std::io::Error),
}

fn nowhere() -> [Written; CHUNKS] {
    std::array::from_fn(|_| Written::Nowhere)
}

impl Upload {
    pub fn new(engine: Arc<Engine>, root: Root) -> Upload {
        Upload {
            engine,
            root,
            target: Target::Unchosen,
            chunks: (0..CHUNKS)
                .map(|_| Chunk::Open {
                    buf: buffers::take(),
                    filled: 0,
                    in_order: true,
                })
                .collect(),
            written: nowhere(),
            sent: [0; CHUNKS],
            hasher: ChunkHasher::new(CHUNKS),
        }
    }

    /// Copies `data` in at `offset`; the caller keeps writes inside the
    /// sector.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= SECTOR_SIZE, "write past the sector");
        let (mut at, mut rest) = (offset, data);
        while !rest.is_empty() {
            let (i, start) = (at / CHUNK, at % CHUNK);
            let (part, tail) = rest.split_at(rest.len().min(CHUNK - start));
            let end = start + part.len();
            let complete = match self.reopen(i) {
                Chunk::Open {
                    buf,
                    filled,
                    in_order,
                } => {
                    if *in_order && start > *filled {
                        // a gap: what was never written must read as zeros
                        buf[*filled..].fill(0);
                        *in_order = false;
                    }
                    buf[start..end].copy_from_slice(part);
                    if start <= *filled {
                        *filled = (*filled).max(end);
                    }
                    *in_order && *filled == CHUNK
                }
                _ => unreachable!("reopen leaves the chunk open"),
            };
            if complete {
                self.send(i);
            }
            at += part.len();
            rest = tail;
        }
    }

    /// Zeroes everything from `len` on (a truncate while writing).
    pub fn zero_from(&mut self, len: usize) {
        for i in (len / CHUNK)..CHUNKS {
            let cut = len.saturating_sub(i * CHUNK);
            if let Chunk::Open { buf, filled, .. } = self.reopen(i) {
                buf[cut..].fill(0);
                *filled = (*filled).min(cut);
            }
        }
    }

    /// Stores the sector with `reference`: checks it hashes to its name,
    /// makes it durable, then records it. The caller checks the length
    /// first. Leaves the data in place, so a failed close can be retried
    /// after more writes.
    pub fn finish(&mut self, reference: Reference) -> Result<Stored> {
        for i in 0..CHUNKS {
            if matches!(self.chunks[i], Chunk::Open { .. }) {
                self.send(i);
            }
        }
        self.settle();
        // every chunk is in the slot now: hash while it syncs
        let slot = match &self.target {
            Target::Slot {
                volume,
                file,
                slot,
                epoch,
                sync_mark,
                ..
            } => Some((volume.clone(), file.clone(), *slot, *epoch, *sync_mark)),
            _ => None,
        };
        let (mut all_in_slot, mut write_error) = (true, None);
        for w in std::mem::replace(&mut self.written, nowhere()) {
            match w {
                Written::InSlot => {}
                Written::Nowhere | Written::Pending => all_in_slot = false,
                Written::Failed(e) => {
                    all_in_slot = false;
                    write_error.get_or_insert(e);
                }
            }
        }
        let (roots, synced) = std::thread::scope(|scope| {
            let sync = match &slot {
                Some((_, file, _, _, mark)) if all_in_slot => {
                    self.engine.crash_point("write:slot-written");
                    // the hash waits until the sync is under way: started
                    // beside it, it kept both cores and the sync waited to
                    // be scheduled (up to 5 ms, seen in traces)
                    let (started, wait_started) = std::sync::mpsc::sync_channel::<()>(1);
                    let spawned = std::thread::Builder::new()
                        .name("sector-sync".into())
                        .spawn_scoped(scope, move || {
                            drop(started);
                            file.sync_since(*mark)
                        });
                    Some(match spawned {
                        Ok(h) => {
                            let _ = wait_started.recv();
                            Syncing::Thread(h)
                        }
                        // no thread to be had: synced here, before the hash
                        Err(_) => Syncing::Done(file.sync_since(*mark)),
                    })
                }
                _ => None,
            };
            let (hasher, sent) = (&self.hasher, &self.sent);
            hasher.stop();
            let roots = chunk_roots(&self.chunks, |i| hasher.root(i, sent[i]));
            let synced = sync.map(|s| match s {
                Syncing::Thread(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Syncing::Done(r) => r,
            });
            (roots, synced)
        });
        let actual = merkle::combine(&roots);
        if actual != self.root {
            self.drop_target();
            return Err(Error::BadDigest(format!(
                "the data hashes to {actual}, not to the name {}",
                self.root
            )));
        }
        let mut failed = Vec::new();
        if let Some((volume, file, slot, epoch, _)) = slot {
            let outcome = match (synced, write_error) {
                (Some(Ok(())), _) => Ok(true),
                (Some(Err(e)), _) | (None, Some(e)) => Err(e),
                // some chunk went nowhere: write it all elsewhere
                (None, None) => Ok(false),
            };
            match outcome {
                Ok(true) => {
                    // the slot is the commit's now, whatever it decides
                    self.target = Target::Unchosen;
                    if let Some(stored) = self
                        .engine
                        .commit_new(&self.root, &volume, &file, slot, epoch, reference)?
                    {
                        return Ok(stored);
                    }
                }
                Ok(false) => self.drop_target(),
                Err(e) => {
                    let e = Error::io(
                        format!("writing slot {slot} of volume {} failed", volume.id),
                        e,
                    );
                    tracing::error!(volume = volume.id, slot, "write failed: {e}");
                    self.engine.note_write_error(&volume, &e);
                    failed.push(volume.id);
                    self.drop_target();
                }
            }
        }
        // the slot went, or there was none: the whole write path, already
        // verified, with the data in one piece
        self.target = Target::Unchosen;
        let mut data = Vec::with_capacity(SECTOR_SIZE);
        for chunk in &self.chunks {
            data.extend_from_slice(chunk.bytes());
        }
        self.engine
            .store(&self.root, &data, reference, None, failed)
    }

    /// Sends chunk `i` to be written into the slot (once one is chosen).
    fn send(&mut self, i: usize) {
        let buf = match std::mem::replace(&mut self.chunks[i], placeholder()) {
            Chunk::Open {
                mut buf,
                filled,
                in_order,
            } => {
                if in_order {
                    // a short chunk: the rest of it was never written
                    buf[filled..].fill(0);
                }
                buf
            }
            Chunk::Sent(_) => unreachable!("only open chunks are sent"),
        };
        let buf = Arc::new(buf);
        self.sent[i] += 1;
        self.hasher.send(i, self.sent[i], &buf);
        let offset = (i * CHUNK) as u64;
        self.written[i] = match self.choose_target() {
            Target::Slot {
                writer: Some(writer),
                ..
            } => match writer.send(i, offset, buf.clone()) {
                Ok(()) => Written::Pending,
                // the thread died, not the disk: the close writes it
                // elsewhere without counting it against the volume
                Err(_) => Written::Nowhere,
            },
            Target::Slot { file, slot, .. } => match file
                .write_part(*slot, offset, &buf)
                .and_then(|()| file.start_writeback_part(*slot, offset, CHUNK as u64))
            {
                Ok(()) => Written::InSlot,
                Err(e) => Written::Failed(e),
            },
            _ => Written::Nowhere,
        };
        self.chunks[i] = Chunk::Sent(buf);
    }

    /// Waits for the chunk writes under way and records how each went.
    fn settle(&mut self) {
        if let Target::Slot {
            writer: Some(writer),
            ..
        } = &mut self.target
        {
            for (i, outcome) in writer.settle() {
                self.written[i] = match outcome {
                    Ok(()) => Written::InSlot,
                    Err(e) => Written::Failed(e),
                };
            }
        }
    }

    fn choose_target(&mut self) -> &mut Target {
        if matches!(self.target, Target::Unchosen) {
            self.target = self.reserve().unwrap_or(Target::Nowhere);
        }
        &mut self.target
    }

    fn reserve(&self) -> Option<Target> {
        if self.engine.lookup(&self.root).ok()?.is_some() {
            return None;
        }
        let (id, slot) = self.engine.reserve(&[]).ok()?;
        let epoch = self.engine.truncations.snapshot();
        let file = self.engine.volume(id).and_then(|v| Ok((v.file()?, v)));
        match file {
            Ok((file, volume)) => Some(Target::Slot {
                volume,
                sync_mark: file.error_mark(),
                writer: SlotWriter::start(file.clone(), slot),
                file,
                slot,
                epoch,
            }),
            Err(_) => {
                self.engine.discard_slot(id, slot);
                None
            }
        }
    }

    /// Gives back a reserved slot; chunks written into it are written
    /// again wherever the close puts the sector.
    pub fn drop_target(&mut self) {
        if let Target::Slot {
            volume,
            slot,
            writer,
            ..
        } = std::mem::replace(&mut self.target, Target::Unchosen)
        {
            // waits for the writes under way: none may land in the slot
            // once it is given back
            drop(writer);
            self.engine.discard_slot(volume.id, slot);
        }
        self.written = nowhere();
    }

    /// Makes chunk `i` writable again; a sent chunk must be redone at close.
    fn reopen(&mut self, i: usize) -> &mut Chunk {
        if matches!(self.chunks[i], Chunk::Sent(_)) {
            // the writer lets go of the buffer once it wrote it
            self.settle();
            // taken first: should it fail, the chunk is as it was
            let spare = buffers::take();
            let Chunk::Sent(shared) = std::mem::replace(&mut self.chunks[i], placeholder()) else {
                unreachable!("matched above")
            };
            let buf = match Arc::try_unwrap(shared) {
                Ok(buf) => {
                    buffers::give_back(spare);
                    buf
                }
                // the background hasher has it in hand
                Err(shared) => {
                    let mut copy = spare;
                    copy.copy_from_slice(&shared);
                    copy
                }
            };
            self.written[i] = Written::Nowhere;
            self.chunks[i] = Chunk::Open {
                buf,
                filled: CHUNK,
                in_order: false,
            };
        }
        &mut self.chunks[i]
    }
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Open { buf, .. } => buf,
            Chunk::Sent(buf) => buf,
        }
    }

    /// The buffer, unless a writer still shares it.
    fn into_buffer(self) -> Option<Buf> {
        match self {
            Chunk::Open { buf, .. } => Some(buf),
            Chunk::Sent(buf) => Arc::try_unwrap(buf).ok(),
        }
    }
}

/// Each chunk's root: those `known` (hashed while the sector arrived), and
/// the rest on two threads.
fn chunk_roots(chunks: &[Chunk], known: impl Fn(usize) -> Option<Root>) -> Vec<Root> {
    let mut roots: Vec<Option<Root>> = (0..chunks.len()).map(known).collect();
    let missing: Vec<usize> = (0..chunks.len()).filter(|&i| roots[i].is_none()).collect();
    let hash = |part: &[usize]| -> Vec<(usize, Root)> {
        part.iter()
            .map(|&i| (i, merkle::subtree_root(chunks[i].bytes())))
            .collect()
    };
    let (mine, theirs) = missing.split_at(missing.len() / 2);
    let hashed = std::thread::scope(|scope| {
        let other = (!theirs.is_empty())
            .then(|| {
                std::thread::Builder::new()
                    .name("sector-hash".into())
                    .spawn_scoped(scope, || hash(theirs))
                    .ok()
            })
            .flatten();
        let mut hashed = hash(mine);
        hashed.extend(match other {
            Some(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            // no thread to be had, or nothing for one: hash them here
            None => hash(theirs),
        });
        hashed
    });
    for (i, root) in hashed {
        roots[i] = Some(root);
    }
    roots
        .into_iter()
        .map(|r| r.expect("every chunk was hashed"))
        .collect()
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.hasher.stop();
        self.drop_target();
        for chunk in std::mem::take(&mut self.chunks) {
            if let Some(buf) = chunk.into_buffer() {
                buffers::give_back(buf);
            }
        }
    }
}
