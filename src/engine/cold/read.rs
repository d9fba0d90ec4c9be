//! Reads of cold copies: by blocks of 1 MiB (the whole object streamed
//! when read from the start, see `download.rs`), the last blocks kept;
//! and promotion of a sector read often back to a local slot.

use bytes::Bytes;

use super::download::{self, Download};
use super::store::StoreError;
use super::{BLOCK, Cold, bump};
use crate::engine::{Engine, SectorRow, now_secs};
use crate::error::{Error, Result};
use crate::merkle::{self, Root, SECTOR_SIZE};
use crate::meta::COLD_VOLUME;

impl Engine {
    /// The sector stored under `root` has no copy but its object.
    pub fn is_cold_only(&self, root: &Root) -> Result<bool> {
        let copies = self.meta.lookup_copies(root)?;
        Ok(!copies.is_empty() && copies.iter().all(|c| c.volume_id == COLD_VOLUME))
    }

    /// Bytes `offset..offset + len` of `root`'s object when one block kept
    /// from an earlier fetch, or come already in a download in flight,
    /// holds them all: answered without the database or the store (the
    /// content of a root never changes). Reads from the start are left to
    /// [`read_sector`](Self::read_sector), which counts them toward
    /// promotion.
    pub fn cold_kept(&self, root: &Root, offset: u64, len: u64) -> Option<Bytes> {
        let cold = self.cold.as_ref()?;
        if offset == 0 || len == 0 || offset / BLOCK != (offset + len - 1) / BLOCK {
            return None;
        }
        let block = offset / BLOCK;
        let Some(kept) = cold.shelf.kept_block(root, block) else {
            return cold
                .shelf
                .downloading(root, block)?
                .came(offset, len as usize);
        };
        kept.get(offset - block * BLOCK, len as usize)
    }

    /// Notes a read of sector `id`: when it was last read decides when it
    /// goes cold. Nothing without a cold tier.
    pub(crate) fn note_read(&self, id: i64) {
        if let Some(cold) = &self.cold {
            cold.read_at.lock().insert(id, now_secs());
        }
    }

    /// Reads `buf.len()` bytes at `offset` of the cold copy `at` for
    /// `reader`. A read from the start of the sector counts toward its
    /// promotion, and may start downloads ahead of the reader.
    pub(crate) fn read_cold(
        &self,
        at: &SectorRow,
        offset: u64,
        buf: &mut [u8],
        reader: Option<u32>,
    ) -> Result<()> {
        let Some(cold) = &self.cold else {
            return Err(Error::Unavailable(format!(
                "sector {} is stored in a cold store only, and this mount has no --cold",
                at.root
            )));
        };
        if let (0, Some(reader)) = (offset, reader) {
            self.read_ahead(cold, at, reader);
        }
        self.cold_bytes(cold, &at.root, offset, buf)?;
        if offset == 0 && cold.options.promote_after > 0 {
            let mut counts = cold.cold_reads.lock();
            let n = counts.entry(at.id).or_default();
            *n += 1;
            if *n >= cold.options.promote_after {
                counts.remove(&at.id);
                drop(counts);
                cold.promotions.lock().push(at.id);
                cold.wake();
            }
        }
        Ok(())
    }

    /// Fills `buf` with the bytes at `offset` of `root`'s object, by
    /// aligned blocks (the kernel asks in pieces of 128 KiB to 1 MiB, and
    /// one request per piece would be bound by the store's round trip).
    fn cold_bytes(&self, cold: &Cold, root: &Root, offset: u64, buf: &mut [u8]) -> Result<()> {
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        while pos < end {
            let take = ((pos / BLOCK + 1) * BLOCK).min(end) - pos;
            let at_buf = (pos - offset) as usize;
            let n = self.cold_piece(cold, root, pos, &mut buf[at_buf..at_buf + take as usize])?;
            if n < take as usize {
                return Err(self.cold_read_error(
                    root,
                    &format!("the object ends at byte {}", pos + n as u64),
                ));
            }
            pos += take;
        }
        Ok(())
    }

    /// Fills `out` with the bytes at `pos` (within one block) of `root`'s
    /// object: from a block kept, the download in flight, or fetched. The
    /// count of bytes the object has there.
    fn cold_piece(&self, cold: &Cold, root: &Root, pos: u64, out: &mut [u8]) -> Result<usize> {
        let block = pos / BLOCK;
        let from = pos % BLOCK;
        let kept = || cold.shelf.kept_block(root, block);
        if let Some(kept) = kept() {
            return Ok(kept.copy_to(from, out));
        }
        // a read from the start reads on, as a rule: the whole object in one
        // request (as fast as a plain GET of it; four ranges side by side
        // were half as fast), each read answered as its bytes come. A read
        // elsewhere waits for a download in flight that holds its block, or
        // downloads that block.
        let download = match cold.shelf.downloading(root, block) {
            Some(d) => d,
            // a download ends after its blocks were kept
            None => match kept() {
                Some(kept) => return Ok(kept.copy_to(from, out)),
                None => download::download(&cold.store, &cold.shelf, root, block, false),
            },
        };
        self.downloaded(&download, root, pos, out)
    }

    /// Fills `out` from the download of `root`, waiting for its bytes.
    fn downloaded(
        &self,
        download: &Download,
        root: &Root,
        pos: u64,
        out: &mut [u8],
    ) -> Result<usize> {
        match download.read(pos, out) {
            Ok(n) => {
                self.cold_answered();
                Ok(n)
            }
            Err(StoreError::NotFound) => {
                Err(self.cold_read_error(root, "the object is missing from the cold store"))
            }
            Err(e) => {
                // counted and logged by the download; one alert for it
                let why = e.to_string();
                if !download
                    .reported
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    self.cold_unreachable(&format!("reading sector {root}"), &why);
                }
                Err(self.cold_read_error(root, &why))
            }
        }
    }

    fn cold_read_error(&self, root: &Root, why: &str) -> Error {
        Error::io(
            format!("reading sector {root} from the cold store failed: {why}"),
            std::io::Error::from_raw_os_error(libc::EIO),
        )
    }

    /// Reads the whole cold copy `at` into `buf` and checks it against its
    /// root (a repair or a promotion copying from it).
    pub(crate) fn read_cold_whole(&self, at: &SectorRow, buf: &mut [u8]) -> bool {
        let Some(cold) = &self.cold else { return false };
        if let Err(e) = self.cold_bytes(cold, &at.root, 0, buf) {
            tracing::warn!("{e}");
            return false;
        }
        if merkle::sector_root(buf) == at.root {
            return true;
        }
        tracing::error!(
            "the object of sector {} in the cold store does not hash to its root",
            at.root
        );
        bump(&cold.shelf.counters.errors, 1);
        false
    }

    /// Gives the cold-only sectors read often a local copy again (on the
    /// cold worker); the object stays, so going cold again costs nothing.
    pub(super) fn run_promotions(&self, cold: &Cold) {
        let ids: Vec<i64> = std::mem::take(&mut *cold.promotions.lock());
        for id in ids {
            if !cold.promoting.lock().insert(id) {
                continue;
            }
            match self.promote(id) {
                Ok(true) => {
                    bump(&cold.shelf.counters.promotions, 1);
                    tracing::info!("sector #{id} was read often and has a local copy again");
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("cannot bring sector #{id} back from the cold store: {e}"),
            }
            cold.promoting.lock().remove(&id);
        }
    }

    /// One promotion: the object read whole and verified, written to a
    /// local slot, and recorded as a copy. False when there was nothing to
    /// do (freed, or a local copy there already).
    fn promote(&self, id: i64) -> Result<bool> {
        let copies = self.meta.copies_of(id)?;
        let Some(cold_copy) = copies.iter().find(|c| c.volume_id == COLD_VOLUME) else {
            return Ok(false);
        };
        if copies.iter().any(|c| c.volume_id != COLD_VOLUME) {
            return Ok(false);
        }
        let mut data = vec![0u8; SECTOR_SIZE];
        if !self.read_cold_whole(cold_copy, &mut data) {
            return Err(Error::Unavailable(format!(
                "the object of sector {} cannot be read whole",
                cold_copy.root
            )));
        }
        let epoch = self.truncations.snapshot();
        let placed = self.write_copies(&data, 1, &[COLD_VOLUME], &mut Vec::new(), None)?;
        let records: Vec<(i64, u32, u64)> =
            placed.iter().map(|p| (id, p.volume.id, p.slot)).collect();
        let intact = || {
            self.truncations.none_since(epoch)
                && placed
                    .iter()
                    .all(|p| p.volume.holds(&p.file) && p.volume.writable())
        };
        let added = match self.meta.add_copies(&records, now_secs(), &intact) {
            Ok(added) => added,
            Err(e) if e.commit_uncertain() => return Err(e),
            Err(e) => {
                for p in &placed {
                    self.discard_slot(p.volume.id, p.slot);
                }
                return Err(e);
            }
        };
        let mut any = false;
        for (p, ok) in placed.iter().zip(added) {
            if ok {
                any = true;
            } else {
                self.discard_slot(p.volume.id, p.slot);
            }
        }
        if any {
            // read just now: it stays local for --cold-after
            self.note_read(id);
        }
        Ok(any)
    }
}
