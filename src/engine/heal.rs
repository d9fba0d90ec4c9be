//! Healing: a copy found bad (a read error, or data no longer hashing to
//! its root) is rewritten from a good copy into a fresh slot of its volume
//! (else of another) and re-pointed in one transaction, exactly as a job
//! moves a sector, so a copy freed or moved meanwhile is never written over.

use super::{Engine, SectorRow, Severity, now_secs};
use crate::error::{Error, Result};
use crate::merkle::{self, SECTOR_SIZE};
use crate::meta::Move;

impl Engine {
    /// Reads a whole copy of the sector that hashes to its root into `buf`,
    /// trying `copies` in read order, but `skip`; the copy read. A copy
    /// that reads wrong is noted corrupt on the way.
    pub(crate) fn read_good_copy(
        &self,
        copies: &[SectorRow],
        skip: Option<(u32, u64)>,
        buf: &mut [u8],
    ) -> Option<SectorRow> {
        for c in self.read_order(copies.to_vec()) {
            if Some((c.volume_id, c.slot)) == skip || self.is_corrupt_copy(&c) {
                continue;
            }
            if c.volume_id == crate::meta::COLD_VOLUME {
                if self.read_cold_whole(&c, buf) {
                    return Some(c);
                }
                continue;
            }
            let Ok(volume) = self.volume(c.volume_id) else {
                continue;
            };
            let Ok(file) = volume.file() else { continue };
            if let Err(e) = file.read(c.slot, 0, buf) {
                tracing::warn!(
                    volume = c.volume_id,
                    slot = c.slot,
                    "reading a copy of sector {} failed: {e}",
                    c.root
                );
                continue;
            }
            if merkle::sector_root(buf) != c.root {
                if self.still_at(&c).unwrap_or(false) {
                    self.note_corrupt(&volume, &c);
                }
                continue;
            }
            return Some(c);
        }
        None
    }

    /// Rewrites bad copy `at` from a good one: into a fresh slot of its own
    /// volume (else a volume without a copy), re-pointed in one
    /// transaction; the bad slot is punched.
    pub(super) fn heal(&self, at: &SectorRow) -> Result<()> {
        if !self.still_at(at)? {
            // moved within its volume meanwhile (a shrink), still marked:
            // the copy where it is now is healed instead
            let moved = self
                .meta
                .copies_of(at.id)?
                .into_iter()
                .find(|c| c.volume_id == at.volume_id && self.is_corrupt_copy(c));
            return match moved {
                Some(now) if now.slot != at.slot => self.heal(&now),
                _ => {
                    self.corrupt.lock().remove(&(at.id, at.volume_id));
                    Ok(())
                }
            };
        }
        let copies = self.meta.copies_of(at.id)?;
        let mut buf = vec![0u8; SECTOR_SIZE];
        let Some(source) = self.read_good_copy(&copies, Some((at.volume_id, at.slot)), &mut buf)
        else {
            return Err(Error::Corrupt(format!(
                "sector {} has no other good copy to rewrite it from",
                at.root
            )));
        };
        let volume = self.volume(at.volume_id)?;
        let epoch = self.truncations.snapshot();
        // in its own volume while that takes new data (not read-only, not
        // out of service, not being removed), else on another
        let fresh = match volume.writable() {
            true => self.alloc.lock().reserve_placeable(at.volume_id),
            false => None,
        };
        let healed_in_place = match fresh {
            Some(slot) => {
                let written = self
                    .write_slot(&volume, slot, &buf, || {})
                    .map(|f| (f, slot));
                match written {
                    Ok((file, slot)) => {
                        let intact = || self.truncations.none_since(epoch) && volume.holds(&file);
                        let moved = self.meta.relocate(
                            &[Move {
                                sector_id: at.id,
                                from_volume: at.volume_id,
                                from_slot: at.slot,
                                to_volume: at.volume_id,
                                to_slot: slot,
                            }],
                            &intact,
                        );
                        match moved {
                            Ok(moved) if moved == [true] => {
                                self.punch_and_release(&[(at.volume_id, at.slot)]);
                                true
                            }
                            // the rows decide at the next open
                            Err(e) if e.commit_uncertain() => return Err(e),
                            other => {
                                self.discard_slot(at.volume_id, slot);
                                other?;
                                // moved or freed meanwhile: nothing to heal here
                                if !self.still_at(at)? {
                                    return Ok(());
                                }
                                false
                            }
                        }
                    }
                    Err(e) => {
                        self.discard_slot(at.volume_id, slot);
                        tracing::warn!(
                            volume = at.volume_id,
                            "cannot rewrite sector {} in its volume: {e}",
                            at.root
                        );
                        false
                    }
                }
            }
            None => false,
        };
        if !healed_in_place {
            // elsewhere: a new copy first, then the bad one dropped
            let holders: Vec<u32> = copies.iter().map(|c| c.volume_id).collect();
            let epoch = self.truncations.snapshot();
            let placed = self.write_copies(&buf, 1, &holders, &mut Vec::new(), None)?;
            let mut added = false;
            for p in &placed {
                let intact = || self.truncations.none_since(epoch) && p.volume.holds(&p.file);
                let recorded = match added {
                    true => Ok(false),
                    false => self
                        .meta
                        .add_copies(&[(at.id, p.volume.id, p.slot)], now_secs(), &intact)
                        .map(|r| r == [true]),
                };
                match recorded {
                    Ok(true) => added = true,
                    Err(e) if e.commit_uncertain() => return Err(e),
                    other => {
                        self.discard_slot(p.volume.id, p.slot);
                        other?;
                    }
                }
            }
            if !added {
                return Err(Error::NoSpace(format!(
                    "no slot to rewrite sector {} into",
                    at.root
                )));
            }
            if !self.meta.drop_copy(at.id, at.volume_id, at.slot)? {
                // the bad copy went meanwhile: the new one may be one too
                // many, which a repair pass trims
                self.request_repair(&format!("a copy of sector {} was healed twice", at.root));
                return Ok(());
            }
            self.punch_and_release(&[(at.volume_id, at.slot)]);
        }
        self.corrupt.lock().remove(&(at.id, at.volume_id));
        super::bump(&volume.stats.healed, 1);
        let message = format!(
            "the bad copy of sector {} in volume {} slot {} was rewritten from its copy in \
             volume {}",
            at.root, at.volume_id, at.slot, source.volume_id
        );
        tracing::warn!("{message}");
        self.alerts.raise(
            &format!("healed-{}", at.root),
            Severity::Warning,
            message,
            serde_json::json!({"root": at.root.to_string(), "volume": at.volume_id,
                "slot": at.slot, "from_volume": source.volume_id}),
        );
        Ok(())
    }
}
