//! The write path and the read path of sectors.
//!
//! Write: if the root is stored, verify the root (no lock held) and add the
//! reference → else reserve a slot in memory, write and sync the data while
//! verifying the root, then one short transaction inserts the sector and its
//! reference. A crash before the commit leaves the slot free (it never had a
//! row); after it, the sector.

use std::sync::Arc;

use super::buffers;
use super::volumes::bump;
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
            let (vol_id, slot) = self.reserve(&failed)?;
            let epoch = self.truncations.snapshot();
            let volume = self.volume(vol_id)?;
            let (written, verified) = match verify.take() {
                Some(v) => std::thread::scope(|scope| {
                    // The hash starts once the data is copied into the
                    // write buffers: the copy has a core to itself, the
                    // device starts sooner, and the hash fits inside the
                    // wait for the write and the sync.
                    let (copied, wait_copied) = std::sync::mpsc::sync_channel::<()>(1);
                    let writer = std::thread::Builder::new()
                        .name("sector-write".into())
                        .spawn_scoped(scope, || {
                            self.write_slot(&volume, slot, data, move || drop(copied))
                        });
                    if writer.is_ok() {
                        // an error when the writer drops it: copied or failed
                        let _ = wait_copied.recv();
                    }
                    let verified = v();
                    let written = match writer {
                        Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                        Err(e) => {
                            no_thread("sector-write", &e);
                            self.write_slot(&volume, slot, data, || {})
                        }
                    };
                    (written, verified)
                }),
                None => (self.write_slot(&volume, slot, data, || {}), Ok(())),
            };
            if let Err(e) = verified {
                // the slot may hold the bad data: punch it before it is reused
                self.discard_slot(vol_id, slot);
                return Err(e);
            }
            let file = match written {
                Ok(file) => file,
                // no memory for the buffers: no fault of the volume's
                Err(e) if matches!(e.errno(), libc::ENOBUFS | libc::ENOMEM) => {
                    self.discard_slot(vol_id, slot);
                    return Err(e);
                }
                Err(e) => {
                    // the slot never had a row: return it and try elsewhere
                    self.discard_slot(vol_id, slot);
                    failed.push(vol_id);
                    tracing::error!(volume = vol_id, slot, "write failed: {e}");
                    self.note_write_error(&volume, &e);
                    continue;
                }
            };
            match self.commit_new(root, &volume, &file, slot, epoch, reference)? {
                Some(stored) => return Ok(stored),
                // the volume shrank or went meanwhile: write it elsewhere
                None => continue,
            }
        }
    }

    /// Records a new sector whose data is already synced in `slot` of
    /// `file`, reserved when the truncation count was `epoch`. `None` when
    /// the slot left its volume meanwhile, a shrink may have cut its bytes
    /// off, the volume's file is another one now (it went missing and came
    /// back), or the volume takes no new sectors any more (read-only,
    /// unavailable, being removed): the caller writes the data elsewhere.
    /// The slot is given back on every outcome but a new row.
    pub(super) fn commit_new(
        &self,
        root: &Root,
        volume: &Arc<super::Volume>,
        file: &Arc<VolumeFile>,
        slot: u64,
        epoch: u64,
        reference: Reference,
    ) -> Result<Option<Stored>> {
        self.crash_point("write:synced");
        // checked inside the transaction: a shrink commits its new size
        // before it cuts the file, and no grow can follow until it has
        let intact =
            || self.truncations.none_since(epoch) && volume.holds(file) && volume.writable();
        let inserted =
            self.meta
                .insert_sector(root, volume.id, slot, now_secs(), reference, &intact);
        let stored = match inserted {
            Ok(Inserted::New(id)) => {
                self.crash_point("write:committed");
                bump(&volume.stats.writes);
                self.note_success(volume);
                // the last free slot just went: alert now, not at the next
                // write refused
                self.space_changed();
                return Ok(Some(Stored {
                    sector_id: id,
                    new: true,
                }));
            }
            Ok(Inserted::AlreadyStored(id)) => {
                self.refs_changed(&[id]);
                Ok(Some(Stored {
                    sector_id: id,
                    new: false,
                }))
            }
            Ok(Inserted::SlotGone) => Ok(None),
            // the commit may yet be found committed (a failed WAL sync is
            // recovered at the next open): the slot stays reserved, unpunched,
            // and the next open sees from the rows whose it is
            Err(e) if e.commit_uncertain() => return Err(e),
            Err(e) => Err(e),
        };
        self.discard_slot(volume.id, slot);
        stored
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
    fn write_slot(
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

    /// Reads `buf.len()` bytes of the sector `root` from `offset`.
    ///
    /// The location is looked up again after the read: if the sector moved
    /// or was freed (and perhaps stored again) meanwhile, the bytes read may
    /// belong to another sector, so they are never returned, and a failed or
    /// wrong read is not held against the sector or its volume.
    pub fn read_sector(&self, root: &Root, offset: u64, buf: &mut [u8]) -> Result<()> {
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
        let mut at = self.meta.lookup(root)?.ok_or_else(not_stored)?;
        for _ in 0..8 {
            if self.corrupt.lock().contains(&at.id) {
                return Err(corrupt_error(&at));
            }
            let volume = self.volume(at.volume_id);
            let read = match &volume {
                Ok(v) => self.read_slot(v, &at, offset, buf),
                Err(_) => SlotRead::Failed(None),
            };
            let now = self.meta.lookup(root)?.ok_or_else(not_stored)?;
            if (now.id, now.volume_id, now.slot) != (at.id, at.volume_id, at.slot) {
                at = now;
                continue;
            }
            let volume = volume?;
            return match read {
                SlotRead::Read => {
                    self.note_success(&volume);
                    bump(&volume.stats.reads);
                    volume
                        .stats
                        .bytes_read
                        .fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    Ok(())
                }
                SlotRead::Failed(None) => Err(volume.file().err().unwrap_or_else(|| {
                    Error::Unavailable(format!("volume {} is unavailable", volume.id))
                })),
                SlotRead::Failed(Some(e)) => {
                    self.note_read_error(&volume, &at, &e.to_string());
                    Err(Error::io(
                        format!("reading sector {root} from volume {} failed", volume.id),
                        e,
                    ))
                }
                SlotRead::Corrupt => {
                    self.note_corrupt(&volume, &at);
                    Err(corrupt_error(&at))
                }
            };
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

    /// `s` is still where it was read from: the same sector (not freed and
    /// stored again) in the same slot. A failed or wrong read of a slot the
    /// sector has left since says nothing about the sector.
    pub(crate) fn still_at(&self, s: &SectorRow) -> Result<bool> {
        // by id: ids are never given twice, so the same id is the same sector
        Ok(self
            .meta
            .sector_by_id(s.id)?
            .is_some_and(|now| (now.volume_id, now.slot) == (s.volume_id, s.slot)))
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

fn corrupt_error(at: &SectorRow) -> Error {
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
