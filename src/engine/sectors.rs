//! The write path and the read path of sectors.
//!
//! Write: if the root is stored, verify the root (no lock held) and add the
//! reference → else reserve a slot in memory, write and sync the data while
//! verifying the root, then one short transaction inserts the sector and its
//! reference. A crash before the commit leaves the slot free (it never had a
//! row); after it, the sector.

use std::sync::Arc;

use super::buffers;
use super::bump;
use super::copies::Placed;
use super::workers::no_thread;
use super::{Engine, Reference, SectorRow, check_temp_height, now_secs};
use crate::error::{Error, Result};
use crate::merkle::{self, Root, SECTOR_SIZE};
use crate::meta::Inserted;
use crate::volume::{SECTOR_BYTES, VolumeFile};

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub sector_id: i64,
    /// False when the root was already stored and only a reference was added.
    pub new: bool,
}

/// What a read of a slot found.
enum SlotRead {
    Read,
    /// `None`: the volume or its file is not open.
    Failed(Option<std::io::Error>),
    /// Read whole (verified reads) and not hashing to the root.
    Corrupt,
}

impl Engine {
    /// Stores a sector under `root` with `reference`, after checking that the
    /// data is one whole sector that hashes to `root`.
    ///
    /// A new sector's data is written and synced into a reserved slot while
    /// it is hashed, so a lone writer waits for the longer of the two rather
    /// than their sum; data that does not hash to `root` is punched out of
    /// the slot again, and nothing is recorded.
    pub fn write_sector(&self, root: &Root, data: &[u8], reference: Reference) -> Result<Stored> {
        // (`store` checks the length before anything runs)
        let verify = || {
            let actual = parallel_root(data);
            if actual != *root {
                return Err(Error::BadDigest(format!(
                    "the data hashes to {actual}, not to the name {root}"
                )));
            }
            Ok(())
        };
        self.store(root, data, reference, Some(&verify), Vec::new())
    }

    /// As [`write_sector`](Self::write_sector) for data the caller has
    /// already hashed to `root`.
    pub fn write_verified(&self, root: &Root, data: &[u8], reference: Reference) -> Result<Stored> {
        self.store(root, data, reference, None, Vec::new())
    }

    /// The write path; `verify`, when given, must pass before anything is
    /// recorded, and runs alongside the slot write. Volumes in `failed` are
    /// not tried.
    pub(super) fn store(
        &self,
        root: &Root,
        data: &[u8],
        reference: Reference,
        mut verify: Option<&(dyn Fn() -> Result<()> + Sync)>,
        mut failed: Vec<u32>,
    ) -> Result<Stored> {
        check_length(data.len())?;
        if self.meta.lookup(root)?.is_some() {
            if let Some(v) = verify.take() {
                v()?;
            }
            match self.meta.add_reference(root, reference) {
                Ok(id) => {
                    self.refs_changed(&[id]);
                    return Ok(Stored {
                        sector_id: id,
                        new: false,
                    });
                }
                // freed since the lookup: store it anew
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if let Reference::Temp(expiration) = reference {
            check_temp_height(expiration, self.meta.height()?)?;
        }
        loop {
            let epoch = self.truncations.snapshot();
            let want = self.copies_setting().min as usize;
            let placed = self.write_copies(data, want, &[], &mut failed, verify.take())?;
            match self.commit_new(root, &placed, epoch, reference)? {
                Some(stored) => return Ok(stored),
                // the volumes shrank or went meanwhile: write it elsewhere
                None => continue,
            }
        }
    }

    /// Records a new sector whose copies are written and synced in
    /// `placed`, reserved when the truncation count was `epoch`. A copy is
    /// not recorded when its slot left its volume meanwhile, a shrink may
    /// have cut its bytes off, its volume's file is another one now (it
    /// went missing and came back), or its volume takes no new sectors any
    /// more (read-only, unavailable, being removed); `None` when no copy is
    /// left: the caller writes the data elsewhere. Every slot not recorded
    /// is given back.
    pub(super) fn commit_new(
        &self,
        root: &Root,
        placed: &[Placed],
        epoch: u64,
        reference: Reference,
    ) -> Result<Option<Stored>> {
        self.crash_point("write:synced");
        // checked inside the transaction: a shrink commits its new size
        // before it cuts the file, and no grow can follow until it has
        let intact = |vol: u32| {
            self.truncations.none_since(epoch)
                && placed
                    .iter()
                    .find(|p| p.volume.id == vol)
                    .is_some_and(|p| p.volume.holds(&p.file) && p.volume.writable())
        };
        let slots: Vec<(u32, u64)> = placed.iter().map(|p| (p.volume.id, p.slot)).collect();
        let inserted = self
            .meta
            .insert_sector(root, &slots, now_secs(), reference, &intact);
        let give_back = |keep: &dyn Fn(&Placed) -> bool| {
            for p in placed.iter().filter(|p| !keep(p)) {
                self.discard_slot(p.volume.id, p.slot);
            }
        };
        match inserted {
            Ok(Inserted::New { id, gone }) => {
                self.crash_point("write:committed");
                let kept = |p: &Placed| !gone.contains(&(p.volume.id, p.slot));
                for p in placed.iter().filter(|p| kept(p)) {
                    bump(&p.volume.stats.writes, 1);
                    self.note_success(&p.volume);
                }
                give_back(&kept);
                let copies = placed.len() - gone.len();
                if copies < self.copies_setting().min as usize {
                    self.note_under_replicated(root, copies);
                }
                // the last free slot just went: alert now, not at the next
                // write refused
                self.space_changed();
                Ok(Some(Stored {
                    sector_id: id,
                    new: true,
                }))
            }
            Ok(Inserted::AlreadyStored(id)) => {
                give_back(&|_| false);
                self.refs_changed(&[id]);
                Ok(Some(Stored {
                    sector_id: id,
                    new: false,
                }))
            }
            Ok(Inserted::SlotGone) => {
                give_back(&|_| false);
                Ok(None)
            }
            // the commit may yet be found committed (a failed WAL sync is
            // recovered at the next open): the slots stay reserved,
            // unpunched, and the next open sees from the rows whose they are
            Err(e) if e.commit_uncertain() => Err(e),
            Err(e) => {
                give_back(&|_| false);
                Err(e)
            }
        }
    }

    pub(super) fn reserve(&self, failed: &[u32]) -> Result<(u32, u64)> {
        let reserved = self.alloc.lock().reserve(failed);
        match reserved {
            Some(r) => Ok(r),
            None => {
                self.space_changed();
                Err(Error::NoSpace(if failed.is_empty() {
                    "no writable volume has a free slot".into()
                } else {
                    format!(
                        "no writable volume has a free slot (writes to volume(s) {failed:?} failed)"
                    )
                }))
            }
        }
    }

    /// Writes and syncs `data` into `slot`, calling `copied` once it is all
    /// in the write buffers (or the copy failed); the file written.
    pub(super) fn write_slot(
        &self,
        volume: &super::Volume,
        slot: u64,
        data: &[u8],
        copied: impl FnOnce(),
    ) -> Result<Arc<VolumeFile>> {
        let file = volume.file()?;
        // copied into page-aligned buffers, the slot is written in one call
        // past the page cache (where the file system allows): no per-block
        // work for cached writes, and the hash has the cores while the
        // device writes (measured 10-30% faster than cached pieces with
        // their writeback started one by one)
        let taken: Result<Vec<buffers::Buf>> = data
            .chunks(buffers::LEN)
            .map(|piece| {
                let mut buf = self
                    .uploads
                    .pool
                    .take(&format_args!("writing slot {slot} of volume {}", volume.id))?;
                buf.copy_from_slice(piece);
                Ok(buf)
            })
            .collect();
        copied();
        let bufs = match taken {
            Ok(bufs) => bufs,
            // the uploads hold the memory budget: the caller's bytes go
            // through the page cache instead, rather than fail the write
            Err(Error::OutOfBuffers(why)) => {
                tracing::debug!("writing slot {slot} through the page cache: {why}");
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        // a whole sector (checked by `store`): every buffer is full
        let parts: Vec<&[u8]> = match bufs.is_empty() {
            true => vec![data],
            false => bufs.iter().map(|buf| &buf[..]).collect(),
        };
        let mark = file.error_mark();
        let written = file.write_parts(slot, 0, &parts).and_then(|()| {
            self.crash_point("write:slot-written");
            file.sync_since(mark)
        });
        drop(parts);
        drop(bufs);
        written.map(|()| file).map_err(|e| {
            Error::io(
                format!("writing slot {slot} of volume {} failed", volume.id),
                e,
            )
        })
    }

    pub fn lookup(&self, root: &Root) -> Result<Option<SectorRow>> {
        self.meta.lookup(root)
    }

    /// The sector stored under `root` (or with id `id`), without where its
    /// copies are: all a name or a file's attributes need.
    pub fn sector_info(&self, key: super::SectorKey) -> Result<Option<super::SectorInfo>> {
        self.meta.sector_info(key)
    }

    pub fn sector_by_id(&self, id: i64) -> Result<Option<SectorRow>> {
        self.meta.sector_by_id(id)
    }

    /// Sets sector `id`'s modification time (`touch`, `cp -p`, `rsync -a`);
    /// the time it was first stored stays as it was.
    pub fn set_mtime(&self, id: i64, mtime: std::time::SystemTime) -> Result<()> {
        let ns = match mtime.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_nanos()).unwrap_or(i64::MAX),
        };
        if !self.meta.set_mtime(id, ns)? {
            return Err(Error::NotFound(format!("sector #{id} is no longer stored")));
        }
        // its cached attributes go, as with a reference change
        self.refs_changed(&[id]);
        Ok(())
    }

    /// One page of stored sectors after `after_id`, in id order.
    pub fn list_sectors(&self, after_id: i64, limit: usize) -> Result<Vec<SectorRow>> {
        self.meta.list_sectors(after_id, limit)
    }

    pub fn ref_counts(&self, sector_id: i64) -> Result<super::RefCounts> {
        self.meta.ref_counts(sector_id)
    }

    /// Reads `buf.len()` bytes of the sector `root` from `offset`, from any
    /// readable copy: the first added first, copies on volumes out of
    /// service and copies found corrupt last or never.
    ///
    /// A copy that fails to read, or (with verified reads) fails its root
    /// check, is not served: the next copy answers, and the bad one is
    /// rewritten from a good one in the background. The read fails only
    /// when no copy can be read.
    ///
    /// Each copy is looked up again after its read: if it moved or was
    /// dropped (the sector freed, and perhaps stored again) meanwhile, the
    /// bytes read may belong to another sector, so they are never returned,
    /// and a failed or wrong read is not held against the copy or its
    /// volume.
    pub fn read_sector(&self, root: &Root, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_sector_by(root, offset, buf, None)
    }

    /// [`read_sector`](Self::read_sector) for `reader` (the thread that
    /// asked, as the kernel names it): a reader going through the listing
    /// in order gets the next cold sectors read ahead.
    pub fn read_sector_by(
        &self,
        root: &Root,
        offset: u64,
        buf: &mut [u8],
        reader: Option<u32>,
    ) -> Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > SECTOR_BYTES)
        {
            return Err(Error::Invalid(format!(
                "a read of {} at {offset} runs past the end of a sector",
                crate::plural::count(buf.len() as u64, "byte")
            )));
        }
        let not_stored = || Error::NotFound(format!("sector {root} is not stored"));
        'again: for _ in 0..8 {
            let copies = self.read_order(self.meta.lookup_copies(root)?);
            // stored (the content of a root never changes): the cache first
            if !copies.is_empty() && self.read_cached(root, offset, buf) {
                self.note_read(copies[0].id);
                return Ok(());
            }
            let mut failure = None;
            for at in &copies {
                if self.is_corrupt_copy(at) {
                    failure.get_or_insert_with(|| corrupt_error(at));
                    continue;
                }
                if at.volume_id == crate::meta::COLD_VOLUME {
                    // tried last: every local copy failed or there is none
                    let read = self.read_cold(at, offset, buf, reader);
                    if !self.still_at(at)? {
                        continue 'again;
                    }
                    match read {
                        Ok(()) => {
                            self.note_read(at.id);
                            return Ok(());
                        }
                        Err(e) => {
                            failure = Some(e);
                            continue;
                        }
                    }
                }
                let volume = self.volume(at.volume_id);
                let read = match &volume {
                    Ok(v) => self.read_slot(v, at, offset, buf),
                    Err(_) => SlotRead::Failed(None),
                };
                if !self.still_at(at)? {
                    continue 'again;
                }
                let volume = match volume {
                    Ok(v) => v,
                    Err(e) => {
                        failure = Some(e);
                        continue;
                    }
                };
                match read {
                    SlotRead::Read => {
                        self.note_read(at.id);
                        self.note_success(&volume);
                        bump(&volume.stats.reads, 1);
                        volume
                            .stats
                            .bytes_read
                            .fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        return Ok(());
                    }
                    SlotRead::Failed(None) => {
                        failure = Some(volume.file().err().unwrap_or_else(|| {
                            Error::Unavailable(format!("volume {} is unavailable", volume.id))
                        }));
                    }
                    SlotRead::Failed(Some(e)) => {
                        self.note_read_error(&volume, at, &e.to_string());
                        self.heal_later(at);
                        failure = Some(Error::io(
                            format!("reading sector {root} from volume {} failed", volume.id),
                            e,
                        ));
                    }
                    SlotRead::Corrupt => {
                        self.note_corrupt(&volume, at);
                        failure = Some(corrupt_error(at));
                    }
                }
            }
            return Err(failure.unwrap_or_else(not_stored));
        }
        Err(Error::Busy(format!(
            "sector {root} kept moving while it was read"
        )))
    }

    /// Reads from the slot `at` names, with no verdict on the sector yet
    /// (it may have left the slot meanwhile).
    fn read_slot(
        &self,
        volume: &super::Volume,
        at: &SectorRow,
        offset: u64,
        buf: &mut [u8],
    ) -> SlotRead {
        let Ok(file) = volume.file() else {
            return SlotRead::Failed(None);
        };
        if !self.options.verify_reads {
            return match file.read(at.slot, offset, buf) {
                Ok(()) => SlotRead::Read,
                Err(e) => SlotRead::Failed(Some(e)),
            };
        }
        let mut whole = vec![0u8; SECTOR_SIZE];
        if let Err(e) = file.read(at.slot, 0, &mut whole) {
            return SlotRead::Failed(Some(e));
        }
        if merkle::sector_root(&whole) != at.root {
            return SlotRead::Corrupt;
        }
        let start = offset as usize;
        buf.copy_from_slice(&whole[start..start + buf.len()]);
        SlotRead::Read
    }

    /// Copy `s` is still where it was read from: the same sector (not
    /// freed and stored again) in the same slot. A failed or wrong read of
    /// a slot the copy has left since says nothing about the sector.
    pub(crate) fn still_at(&self, s: &SectorRow) -> Result<bool> {
        // by id: ids are never given twice, so the same id is the same sector
        self.meta.copy_exists(s.id, s.volume_id, s.slot)
    }
}

/// A whole sector's root with its two halves hashed on two threads: a lone
/// writer's latency is mostly hashing, and this halves it. Falls back to one
/// thread if no thread can be started.
fn parallel_root(data: &[u8]) -> Root {
    let (left, right) = data.split_at(SECTOR_SIZE / 2);
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("sector-hash".into())
            .spawn_scoped(scope, || merkle::subtree_root(right));
        let l = merkle::subtree_root(left);
        let r = match spawned {
            Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            Err(e) => {
                no_thread("sector-hash", &e);
                merkle::subtree_root(right)
            }
        };
        merkle::node_hash(&l, &r)
    })
}

pub(super) fn corrupt_error(at: &SectorRow) -> Error {
    Error::Corrupt(format!(
        "sector {} in volume {} slot {} is corrupt: its data no longer hashes to its root",
        at.root, at.volume_id, at.slot
    ))
}

fn check_length(len: usize) -> Result<()> {
    if len != SECTOR_SIZE {
        return Err(Error::Invalid(format!(
            "a sector is exactly {SECTOR_SIZE} bytes, not {len}"
        )));
    }
    Ok(())
}
