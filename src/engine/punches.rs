//! Punching out slots whose data must never be read again (a freed
//! sector's, a moved sector's old one, a write never committed), and only
//! then handing them back. One rule everywhere: a slot that cannot be
//! punched now (its volume unavailable, or the punch failed) is logged,
//! recorded as a pending punch, and kept out of the free slots; the
//! volume's reopen or the next start punches it and hands it back.

use std::sync::Arc;

use super::Engine;
use crate::error::Result;
use crate::volume::VolumeFile;

/// Whether the slots to punch have their pending rows already (written by
/// the transaction that freed or moved their sectors).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Recorded {
    Yes,
    No,
}

impl Engine {
    /// Gives back a reserved slot whose data was written but never
    /// committed.
    pub(crate) fn discard_slot(&self, volume: u32, slot: u64) {
        self.punch_then_release(&[(volume, slot)], Recorded::No, &|vol| {
            self.volume(vol).and_then(|v| v.file())
        });
    }

    /// Punches out slots whose sector left them (recorded as pending in the
    /// transaction that freed or moved it), clears the pending rows, and
    /// only then hands the slots back, so a new sector never shares a slot
    /// with a pending punch.
    pub(crate) fn punch_and_release(&self, slots: &[(u32, u64)]) {
        self.punch_then_release(slots, Recorded::Yes, &|vol| {
            self.volume(vol).and_then(|v| v.file())
        });
    }

    /// Punches out, in `file` (the volume's file, reopened and not yet in
    /// use), the slots of volume `vol` left pending while it was
    /// unavailable, and gives them back.
    pub(crate) fn retry_punches(&self, vol: u32, file: &Arc<VolumeFile>) {
        // never a slot a sector owns again (as at open)
        let pending = match self.meta.pending_free_punches(vol) {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!(
                    volume = vol,
                    "cannot list the slots of volume {vol} waiting to be punched out, so they \
                     stay out of use until the next start: {e}"
                );
                return;
            }
        };
        let slots: Vec<(u32, u64)> = pending.into_iter().map(|slot| (vol, slot)).collect();
        self.punch_then_release(&slots, Recorded::Yes, &|_| Ok(file.clone()));
    }

    /// At open: punches slots freed by transactions that committed before
    /// the last process could punch them. Until punched they are out of
    /// the free slots.
    pub(super) fn finish_punches(&self) -> Result<()> {
        let mut stale = Vec::new();
        let mut todo = Vec::new();
        {
            let mut alloc = self.alloc.lock();
            for (vol, slot) in self.meta.pending_punches()? {
                // a sector owns it again (a row a failed clear left), or its
                // volume is gone: nothing to punch
                if alloc.is_used(vol, slot) || self.volume(vol).is_err() {
                    stale.push((vol, slot));
                } else {
                    alloc.hold(vol, slot);
                    todo.push((vol, slot));
                }
            }
        }
        self.meta.clear_punches(&stale)?;
        self.punch_and_release(&todo);
        Ok(())
    }

    /// The one way a slot goes back into use: punched out first. A slot
    /// that cannot be punched now is logged and held back, recorded as
    /// pending (if it is not yet) for its volume's reopen or the next start.
    fn punch_then_release(
        &self,
        slots: &[(u32, u64)],
        recorded: Recorded,
        file_of: &dyn Fn(u32) -> Result<Arc<VolumeFile>>,
    ) {
        let mut punched = Vec::with_capacity(slots.len());
        let mut held = Vec::new();
        for &(vol, slot) in slots {
            match file_of(vol) {
                Ok(file) => match file.punch(slot) {
                    Ok(()) => punched.push((vol, slot)),
                    Err(e) => {
                        tracing::warn!(
                            volume = vol,
                            slot,
                            "cannot punch out slot {slot} of volume {vol}, so it stays out of use \
                             until the punch is retried when the volume is reopened or at the \
                             next start: {e}"
                        );
                        held.push((vol, slot));
                    }
                },
                Err(e) => {
                    tracing::info!(
                        volume = vol,
                        slot,
                        "slot {slot} of volume {vol} is punched out (and reused) once the volume \
                         is back: {e}"
                    );
                    held.push((vol, slot));
                }
            }
        }
        if recorded == Recorded::No
            && let Err(e) = self.meta.record_punches(&held)
        {
            tracing::error!(
                "cannot record {} waiting to be punched out; they stay out of use until the \
                 next start: {e}",
                crate::plural::count(held.len() as u64, "slot")
            );
        }
        // a row left by a failed clear is harmless: the next open skips
        // pending slots that a sector owns again, and punches the others
        // once more
        if recorded == Recorded::Yes {
            self.crash_point("free:punched");
            if let Err(e) = self.meta.clear_punches(&punched) {
                tracing::warn!("cannot record punched slots (retried at the next start): {e}");
            }
            self.crash_point("free:cleared");
        }
        let mut alloc = self.alloc.lock();
        for (vol, slot) in punched {
            alloc.release(vol, slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::path::Path;
    use std::sync::Arc;

    use nix::fcntl::{FcntlArg, SealFlag, fcntl};
    use nix::sys::memfd::{MFdFlags, memfd_create};

    use crate::engine::test_engine;
    use crate::merkle::SECTOR_SIZE;
    use crate::volume::{SECTOR_BYTES, VolumeFile};

    #[test]
    fn a_slot_whose_punch_fails_stays_out_of_use_until_its_volume_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let engine = test_engine(dir.path());
        let vol = engine.add_volume(&dir.path().join("v.vol"), 4).unwrap();
        let v = engine.volume(vol).unwrap();
        // the volume's file swapped for one whose punches fail: a memory
        // file, sealed against writes once the slot is written
        let memfd = std::fs::File::from(
            memfd_create("sealed-volume", MFdFlags::MFD_ALLOW_SEALING).unwrap(),
        );
        memfd.set_len(4 * SECTOR_BYTES).unwrap();
        let path = format!("/proc/self/fd/{}", memfd.as_raw_fd());
        let sealed = Arc::new(VolumeFile::open(&crate::volume::Disk, Path::new(&path), 4).unwrap());
        v.set_file(sealed.clone());
        let (_, slot) = engine.reserve(&[]).unwrap();
        sealed.write_sector(slot, &vec![0x5A; SECTOR_SIZE]).unwrap();
        fcntl(&memfd, FcntlArg::F_ADD_SEALS(SealFlag::F_SEAL_WRITE)).unwrap();
        assert!(sealed.punch(slot).is_err(), "the seal makes punches fail");

        engine.discard_slot(vol, slot);
        // held back: not free, and recorded for the reopen or next start
        assert!(engine.alloc.lock().is_used(vol, slot));
        assert_eq!(engine.meta.pending_punches().unwrap(), vec![(vol, slot)]);
        let (_, next) = engine.reserve(&[]).unwrap();
        assert_ne!(
            next, slot,
            "a slot still holding old data is never handed out"
        );
        engine.alloc.lock().release(vol, next);

        // its own file back through a reopen: punched, pending row gone,
        // free again
        engine.mark_unavailable(&v, "the test puts its own file back");
        engine.reopen_volume(vol).unwrap();
        assert!(!engine.alloc.lock().is_used(vol, slot));
        assert!(engine.meta.pending_punches().unwrap().is_empty());
    }
}
