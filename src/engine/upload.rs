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
//!
//! Memory: buffers come from the engine's budget (`buffers::Pool`) as data
//! arrives, never ahead of it. A chunk written into its slot leaves the
//! upload's hands: the pool keeps its buffer while it has room (so a close
//! whose slot was lost can still store the sector elsewhere) and takes it
//! back first when another upload needs one; the close then reads what it
//! still needs back from the slot. A write that can get no buffer fails
//! with `ENOBUFS`, gives back all the upload holds, and the close refuses
//! to store it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use super::buffers::{self, Buf};
use super::chunk_hasher::ChunkHasher;
use super::copies::Placed;
use super::slot_writer::{SlotWriter, copy_error};
use super::upload_limits::Permit;
use super::workers::no_thread;
use super::{Engine, Reference, Stored, Volume};
use crate::error::{Error, Result};
use crate::merkle::{self, Root, SECTOR_SIZE};
use crate::volume::VolumeFile;

/// Bytes written together: a quarter of the mount's largest write, so the
/// device starts on a write before all of it arrived. The mount reports it
/// as the files' block size, so tools write in pieces of this size.
/// The root of an upload not named yet: no data hashes to it, so no
/// stored sector has it and a slot is reserved as for any new sector.
pub const UNNAMED: Root = Root([0; 32]);
pub const CHUNK: usize = buffers::LEN;
const CHUNKS: usize = SECTOR_SIZE / CHUNK;

/// Numbers uploads, for the pool's kept buffers.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

enum Chunk {
    /// Nothing written, or all of it cut by a truncate: zeros, no buffer.
    Empty,
    /// Being filled; its first `filled` bytes arrived without a gap, and
    /// `in_order` stays true while nothing else was written. While it is,
    /// the bytes from `filled` on are left over from an earlier upload;
    /// once it is not, every byte not written is zero.
    Open {
        buf: Buf,
        filled: usize,
        in_order: bool,
    },
    /// Complete and sent to the slot (when there is one). `held` while its
    /// bytes are nowhere else (no slot, or its write failed); else only
    /// `seen`, alive while the slot's writer, the pool or the hasher holds
    /// the buffer, and read back from the slot once it is gone.
    Sent {
        seen: Weak<Buf>,
        held: Option<Arc<Buf>>,
    },
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
    id: u64,
    /// Counts this upload against the cap on sector files being written.
    _permit: Permit,
    /// Why a write failed for want of memory: nothing is stored then.
    refused: Option<String>,
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
    /// A new upload of the sector named `root`; refused with
    /// [`Error::TooManyUploads`] past the engine's cap. Takes no memory
    /// until data arrives.
    pub fn new(engine: Arc<Engine>, root: Root) -> Result<Upload> {
        let permit = engine.uploads.admit()?;
        Ok(Upload {
            engine,
            root,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            _permit: permit,
            refused: None,
            target: Target::Unchosen,
            chunks: (0..CHUNKS).map(|_| Chunk::Empty).collect(),
            written: nowhere(),
            sent: [0; CHUNKS],
            hasher: ChunkHasher::new(CHUNKS),
        })
    }

    /// An upload whose root is not known yet (a staging file, written
    /// under a temporary name and renamed onto its root): named by
    /// [`name`](Self::name) before it is finished.
    pub fn unnamed(engine: Arc<Engine>) -> Result<Upload> {
        Upload::new(engine, UNNAMED)
    }

    /// The root the data must hash to when it is finished ([`UNNAMED`]
    /// again when a rename onto it was refused).
    pub fn name(&mut self, root: Root) {
        self.root = root;
    }

    /// Refuses if an earlier write failed for want of memory: the upload
    /// then holds nothing, and nothing may be stored from it.
    pub fn refused(&self) -> Result<()> {
        match &self.refused {
            Some(why) => Err(Error::OutOfBuffers(format!(
                "sector {}: an earlier write failed ({why}); nothing was stored, write it \
                 again",
                self.root
            ))),
            None => Ok(()),
        }
    }

    /// Copies `data` in at `offset`; the caller keeps writes inside the
    /// sector. A buffer that cannot be had fails the write and the upload.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        assert!(offset + data.len() <= SECTOR_SIZE, "write past the sector");
        self.refused()?;
        let (mut at, mut rest) = (offset, data);
        while !rest.is_empty() {
            let (i, start) = (at / CHUNK, at % CHUNK);
            let (part, tail) = rest.split_at(rest.len().min(CHUNK - start));
            let end = start + part.len();
            let chunk = match self.reopen(i) {
                Ok(chunk) => chunk,
                Err(e) => return Err(self.refuse(e)),
            };
            let complete = match chunk {
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
            if complete && let Err(e) = self.send(i) {
                return Err(self.refuse(e));
            }
            at += part.len();
            rest = tail;
        }
        Ok(())
    }

    /// Fails the upload for `e` (no memory to be had): gives back all it
    /// holds, its slot included, so that others can go on.
    fn refuse(&mut self, e: Error) -> Error {
        self.refused = Some(e.to_string());
        self.hasher.stop();
        self.discard_target();
        self.chunks.iter_mut().for_each(|c| *c = Chunk::Empty);
        self.engine.uploads.pool.forget(self.id);
        e
    }

    /// Zeroes everything from `len` on (a truncate while writing).
    pub fn zero_from(&mut self, len: usize) -> Result<()> {
        self.refused()?;
        // a chunk's write under way must report before the chunk changes
        self.settle();
        for i in (len / CHUNK)..CHUNKS {
            let cut = len.saturating_sub(i * CHUNK);
            if cut == 0 || matches!(self.chunks[i], Chunk::Empty) {
                self.chunks[i] = Chunk::Empty;
                self.written[i] = Written::Nowhere;
                continue;
            }
            let chunk = match self.reopen(i) {
                Ok(chunk) => chunk,
                Err(e) => return Err(self.refuse(e)),
            };
            if let Chunk::Open { buf, filled, .. } = chunk {
                buf[cut..].fill(0);
                *filled = (*filled).min(cut);
            }
        }
        Ok(())
    }

    /// Stores the sector with `reference`: checks it hashes to its name,
    /// makes it durable, then records it. The caller checks the length
    /// first. Leaves the data in place, so a failed close can be retried
    /// after more writes.
    pub fn finish(&mut self, reference: Reference) -> Result<Stored> {
        self.refused()?;
        for i in 0..CHUNKS {
            if !matches!(self.chunks[i], Chunk::Sent { .. }) {
                self.send(i)?;
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
        let all_in_slot = self.written.iter().all(|w| matches!(w, Written::InSlot));
        let write_error = self.written.iter().find_map(|w| match w {
            Written::Failed(e) => Some(copy_error(e)),
            _ => None,
        });
        // the roots the background has not hashed: from memory where the
        // bytes still are (taken before the hasher is stopped, which may
        // let go of them), else read back from the slot one at a time
        let mut roots: Vec<Option<Root>> = (0..CHUNKS)
            .map(|i| self.hasher.root(i, self.sent[i]))
            .collect();
        let mut in_memory = Vec::new();
        for (i, root) in roots.iter_mut().enumerate() {
            if root.is_some() {
                continue;
            }
            match self.in_memory(i) {
                Some(buf) => in_memory.push((i, buf)),
                None => *root = Some(merkle::subtree_root(&self.read_back(i)?)),
            }
        }
        // the other copies the store keeps are written from the whole
        // sector beside the first one's sync and the hash
        let extra = (self.engine.copies_setting().min as usize).saturating_sub(1);
        let extra_data = match &slot {
            Some((_, file, at, _, _)) if all_in_slot && extra > 0 => {
                Some(self.whole(Some((file, *at)))?)
            }
            _ => None,
        };
        let engine = self.engine.clone();
        let first_volume = slot.as_ref().map(|(v, ..)| v.id);
        let (synced, extras) = std::thread::scope(|scope| {
            let extras = extra_data.as_deref().map(|data| {
                let engine = &engine;
                let holders: Vec<u32> = first_volume.into_iter().collect();
                std::thread::Builder::new()
                    .name("sector-copies".into())
                    .spawn_scoped(scope, move || {
                        engine.write_copies(data, extra, &holders, &mut Vec::new(), None)
                    })
            });
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
                        Err(e) => {
                            no_thread("sector-sync", &e);
                            Syncing::Done(file.sync_since(*mark))
                        }
                    })
                }
                _ => None,
            };
            self.hasher.stop();
            for (i, root) in chunk_roots(&in_memory) {
                roots[i] = Some(root);
            }
            let synced = sync.map(|s| match s {
                Syncing::Thread(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Syncing::Done(r) => r,
            });
            let extras = extras.map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Err(e) => {
                    no_thread("sector-copies", &e);
                    let data = extra_data.as_deref().expect("extras have their data");
                    let holders: Vec<u32> = first_volume.into_iter().collect();
                    engine.write_copies(data, extra, &holders, &mut Vec::new(), None)
                }
            });
            (synced, extras)
        });
        // a copy the store could not place is no reason to fail the write:
        // the commit counts it as under-replicated
        let extras: Vec<Placed> = match extras {
            Some(Ok(placed)) => placed,
            Some(Err(e)) if matches!(e.errno(), libc::ENOBUFS | libc::ENOMEM) => {
                self.drop_target();
                return Err(e);
            }
            Some(Err(e)) => {
                tracing::warn!(
                    "sector {}: its other copies could not be written: {e}",
                    self.root
                );
                Vec::new()
            }
            None => Vec::new(),
        };
        let give_back_extras = |extras: &[Placed]| {
            for p in extras {
                self.engine.discard_slot(p.volume.id, p.slot);
            }
        };
        drop(in_memory);
        let roots: Vec<Root> = roots
            .into_iter()
            .map(|r| r.expect("every chunk was hashed"))
            .collect();
        let actual = merkle::combine(&roots);
        if actual != self.root {
            give_back_extras(&extras);
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
                    let Target::Slot { writer, .. } =
                        std::mem::replace(&mut self.target, Target::Unchosen)
                    else {
                        unreachable!("a slot was chosen")
                    };
                    drop(writer);
                    let mut placed = vec![Placed {
                        volume: volume.clone(),
                        file: file.clone(),
                        slot,
                    }];
                    placed.extend(extras);
                    if let Some(stored) = self
                        .engine
                        .commit_new(&self.root, &placed, epoch, reference)?
                    {
                        self.engine.uploads.pool.forget(self.id);
                        return Ok(stored);
                    }
                    // read back from the slot (the file is still open)
                    // before it may be reused; checked below
                    let data = match extra_data {
                        Some(data) => data,
                        None => self.whole(Some((&file, slot)))?,
                    };
                    self.written = nowhere();
                    return self.store_elsewhere(&data, reference, Vec::new());
                }
                Ok(false) => give_back_extras(&extras),
                Err(e) => {
                    give_back_extras(&extras);
                    let e = Error::io(
                        format!("writing slot {slot} of volume {} failed", volume.id),
                        e,
                    );
                    tracing::error!(volume = volume.id, slot, "write failed: {e}");
                    self.engine.note_write_error(&volume, &e);
                    failed.push(volume.id);
                }
            }
        }
        // the slot went, or there was none: the whole write path, with the
        // data in one piece
        let data = self.whole(None)?;
        self.discard_target();
        self.store_elsewhere(&data, reference, failed)
    }

    /// Stores the sector through the whole write path, once `data` is known
    /// to be it: bytes read back from a slot cut off meanwhile may not be.
    fn store_elsewhere(
        &mut self,
        data: &[u8],
        reference: Reference,
        failed: Vec<u32>,
    ) -> Result<Stored> {
        if merkle::sector_root(data) != self.root {
            return Err(Error::Unavailable(format!(
                "sector {}: its slot was cut off (a shrink or a removal of its volume) while \
                 it arrived, and the memory budget no longer held its bytes; nothing was \
                 stored, write it again",
                self.root
            )));
        }
        let stored = self.engine.store(&self.root, data, reference, None, failed);
        if stored.is_ok() {
            self.engine.uploads.pool.forget(self.id);
        }
        stored
    }

    /// The whole sector in one piece; chunks held nowhere else are read back
    /// from `from`, or else from the reserved slot.
    fn whole(&self, from: Option<(&VolumeFile, u64)>) -> Result<Vec<u8>> {
        let mut data = vec![0u8; SECTOR_SIZE];
        for (i, part) in data.chunks_exact_mut(CHUNK).enumerate() {
            match self.in_memory(i) {
                Some(buf) => part.copy_from_slice(&buf),
                None => match from {
                    Some((file, slot)) => file
                        .read(slot, (i * CHUNK) as u64, part)
                        .map_err(|e| Error::io(format!("reading back slot {slot}"), e))?,
                    None => self.read_back_into(i, part)?,
                },
            }
        }
        Ok(data)
    }

    /// Chunk `i`'s bytes if a buffer still holds them.
    fn in_memory(&self, i: usize) -> Option<Arc<Buf>> {
        match &self.chunks[i] {
            Chunk::Sent { held: Some(b), .. } => Some(b.clone()),
            Chunk::Sent { seen, .. } => seen.upgrade(),
            _ => None,
        }
    }

    /// Chunk `i`'s bytes, read back from the reserved slot into a buffer.
    fn read_back(&self, i: usize) -> Result<Buf> {
        let mut buf = self
            .engine
            .uploads
            .pool
            .take(&format_args!("reading back part of sector {}", self.root))?;
        self.read_back_into(i, &mut buf)?;
        Ok(buf)
    }

    fn read_back_into(&self, i: usize, into: &mut [u8]) -> Result<()> {
        match (&self.target, &self.written[i]) {
            (
                Target::Slot {
                    file, slot, epoch, ..
                },
                Written::InSlot,
            ) => {
                file.read(*slot, (i * CHUNK) as u64, into).map_err(|e| {
                    Error::io(format!("reading back part of sector {}", self.root), e)
                })?;
                if !self.engine.truncations.none_since(*epoch) {
                    return Err(self.lost());
                }
                Ok(())
            }
            _ => Err(self.lost()),
        }
    }

    fn lost(&self) -> Error {
        Error::NotPermitted(format!(
            "part of sector {} is no longer held (it was stored, or its slot was cut off \
             while it arrived); nothing more can be stored from this file, write it again",
            self.root
        ))
    }

    /// Sends chunk `i` to be written into the slot (once one is chosen).
    fn send(&mut self, i: usize) -> Result<()> {
        let buf = match std::mem::replace(&mut self.chunks[i], Chunk::Empty) {
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
            Chunk::Empty => {
                let taken = self
                    .engine
                    .uploads
                    .pool
                    .take(&format_args!("sector {}", self.root));
                let mut buf = taken?;
                buf.fill(0);
                buf
            }
            Chunk::Sent { .. } => unreachable!("only open chunks are sent"),
        };
        let buf = Arc::new(buf);
        self.sent[i] += 1;
        self.hasher.send(i, self.sent[i], &buf);
        let seen = Arc::downgrade(&buf);
        let offset = (i * CHUNK) as u64;
        let (id, pool) = (self.id, self.engine.uploads.pool.clone());
        let (written, held) = match self.choose_target() {
            Target::Slot {
                writer: Some(writer),
                ..
            } => match writer.send(i, offset, buf) {
                Ok(()) => (Written::Pending, None),
                // the thread died, not the disk: the close writes it
                // elsewhere without counting it against the volume
                Err(buf) => {
                    tracing::warn!(
                        "the writer thread of sector {} stopped; the close writes it elsewhere",
                        self.root
                    );
                    (Written::Nowhere, Some(buf))
                }
            },
            Target::Slot { file, slot, .. } => match file
                .write_part(*slot, offset, &buf)
                .and_then(|()| file.start_writeback_part(*slot, offset, CHUNK as u64))
            {
                Ok(()) => {
                    pool.keep(id, buf);
                    (Written::InSlot, None)
                }
                Err(e) => (Written::Failed(e), Some(buf)),
            },
            _ => (Written::Nowhere, Some(buf)),
        };
        self.written[i] = written;
        self.chunks[i] = Chunk::Sent { seen, held };
        Ok(())
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
                    Err((e, buf)) => {
                        if let Chunk::Sent { held, .. } = &mut self.chunks[i] {
                            *held = Some(buf);
                        }
                        Written::Failed(e)
                    }
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
        // an error here leaves the sector to the close, which reports it
        match self.engine.lookup(&self.root) {
            Ok(None) => {}
            Ok(Some(_)) => return None,
            Err(e) => {
                tracing::warn!("cannot look up sector {} before storing it: {e}", self.root);
                return None;
            }
        }
        let (id, slot) = match self.engine.reserve(&[]) {
            Ok(reserved) => reserved,
            Err(e) => {
                tracing::debug!("no slot for sector {} yet: {e}", self.root);
                return None;
            }
        };
        let epoch = self.engine.truncations.snapshot();
        let file = self.engine.volume(id).and_then(|v| Ok((v.file()?, v)));
        match file {
            Ok((file, volume)) => Some(Target::Slot {
                volume,
                sync_mark: file.error_mark(),
                writer: SlotWriter::start(
                    file.clone(),
                    slot,
                    self.engine.uploads.pool.clone(),
                    self.id,
                ),
                file,
                slot,
                epoch,
            }),
            Err(e) => {
                tracing::debug!("no slot for sector {} yet: {e}", self.root);
                // nothing was written into it: no punch needed
                self.engine.alloc.lock().release(id, slot);
                None
            }
        }
    }

    /// Gives back a reserved slot; chunks written into it are written
    /// again wherever the close puts the sector. Keeps it (till the upload
    /// goes) while some chunk's bytes are in it only: they would be lost.
    pub fn drop_target(&mut self) {
        self.settle();
        let mut held = Vec::with_capacity(CHUNKS);
        for i in 0..CHUNKS {
            if let Chunk::Sent { held: None, seen } = &self.chunks[i] {
                match seen.upgrade() {
                    Some(buf) => held.push((i, buf)),
                    None => return,
                }
            }
        }
        for (i, buf) in held {
            if let Chunk::Sent { held, .. } = &mut self.chunks[i] {
                *held = Some(buf);
            }
        }
        self.discard_target();
    }

    /// Gives back the reserved slot, whatever it holds.
    fn discard_target(&mut self) {
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

    /// Makes chunk `i` writable again (taking a buffer for it); a sent
    /// chunk must be redone at close. Should no buffer be had, the chunk
    /// is as it was.
    fn reopen(&mut self, i: usize) -> Result<&mut Chunk> {
        match &self.chunks[i] {
            Chunk::Open { .. } => {}
            Chunk::Empty => {
                let buf = self
                    .engine
                    .uploads
                    .pool
                    .take(&format_args!("sector {}", self.root))?;
                self.chunks[i] = Chunk::Open {
                    buf,
                    filled: 0,
                    in_order: true,
                };
            }
            Chunk::Sent { .. } => {
                // the writer lets go of the buffer once it wrote it
                self.settle();
                let buf = match self.in_memory(i) {
                    Some(shared) => {
                        let mut copy = self
                            .engine
                            .uploads
                            .pool
                            .take(&format_args!("sector {}", self.root))?;
                        copy.copy_from_slice(&shared);
                        copy
                    }
                    None => self.read_back(i)?,
                };
                self.written[i] = Written::Nowhere;
                self.chunks[i] = Chunk::Open {
                    buf,
                    filled: CHUNK,
                    in_order: false,
                };
            }
        }
        Ok(&mut self.chunks[i])
    }
}

/// The roots of chunks still in memory, on two threads.
fn chunk_roots(chunks: &[(usize, Arc<Buf>)]) -> Vec<(usize, Root)> {
    let hash = |part: &[(usize, Arc<Buf>)]| -> Vec<(usize, Root)> {
        part.iter()
            .map(|(i, buf)| (*i, merkle::subtree_root(buf)))
            .collect()
    };
    let (mine, theirs) = chunks.split_at(chunks.len() / 2);
    std::thread::scope(|scope| {
        let other = (!theirs.is_empty())
            .then(|| {
                std::thread::Builder::new()
                    .name("sector-hash".into())
                    .spawn_scoped(scope, || hash(theirs))
                    .map_err(|e| no_thread("sector-hash", &e))
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
    })
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.hasher.stop();
        self.discard_target();
        self.engine.uploads.pool.forget(self.id);
    }
}
