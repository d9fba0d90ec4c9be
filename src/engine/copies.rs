//! Copies of a sector on several volumes: how many the store keeps, placing
//! and writing them (in parallel, on distinct volumes of distinct devices
//! where there is room), the order reads try them in, copies found bad, and
//! the census of copies per sector that `/status` and `/metrics` show.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::workers::no_thread;
use super::{Engine, SectorRow, Severity, Volume};
use crate::error::{Error, Result};
use crate::merkle::Root;
use crate::meta::CopiesSetting;
use crate::volume::VolumeFile;

/// A copy written and synced into a reserved slot, not yet recorded.
pub(crate) struct Placed {
    pub volume: Arc<Volume>,
    /// The file written (the volume's file when the write began).
    pub file: Arc<VolumeFile>,
    pub slot: u64,
}

/// Sectors by how many readable copies they have.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CopyCensus {
    /// Sectors stored.
    pub sectors: u64,
    /// Number of readable copies → sectors with that many.
    pub by_copies: BTreeMap<u64, u64>,
    /// Sectors with at least one readable copy but fewer than `min`.
    pub under_replicated: u64,
    /// Sectors with no readable copy.
    pub lost: u64,
    /// Sectors with two readable copies on one device.
    pub sharing_a_device: u64,
    /// The setting the figures are measured against.
    pub min: u32,
    pub max: u32,
}

impl Engine {
    /// How many copies of each sector the store keeps.
    pub fn copies_setting(&self) -> CopiesSetting {
        *self.copies.read()
    }

    /// Sets how many copies of each sector the store keeps (`max >= min >=
    /// 1`) and starts the repair that adds or drops copies to match.
    pub fn set_copies(&self, min: u32, max: u32) -> Result<()> {
        if min < 1 || max < min {
            return Err(Error::Invalid(format!(
                "copies must be at least 1, with max not below min: not min {min}, max {max}"
            )));
        }
        let setting = CopiesSetting { min, max };
        self.meta.set_copies_setting(setting)?;
        *self.copies.write() = setting;
        tracing::info!("copies set to min {min}, max {max}; a repair pass follows");
        self.repair_wake();
        Ok(())
    }

    /// Reserves and writes `n` copies of `data` in parallel, each synced,
    /// on volumes outside `holders` (those with a copy already) and
    /// `failed` (volumes whose write failed: grows as writes fail, and
    /// another volume is tried). With `verify`, it runs beside the writes
    /// and must pass, else every slot is given back. Fewer than `n` when
    /// fewer volumes have room; an error when none has.
    pub(crate) fn write_copies(
        &self,
        data: &[u8],
        n: usize,
        holders: &[u32],
        failed: &mut Vec<u32>,
        mut verify: Option<&(dyn Fn() -> Result<()> + Sync)>,
    ) -> Result<Vec<Placed>> {
        let mut placed: Vec<Placed> = Vec::with_capacity(n);
        let give_back = |placed: &[Placed]| {
            for p in placed {
                self.discard_slot(p.volume.id, p.slot);
            }
        };
        while placed.len() < n {
            let mut exclude: Vec<u32> = holders.to_vec();
            exclude.extend(failed.iter().copied());
            exclude.extend(placed.iter().map(|p| p.volume.id));
            let devices: Vec<u64> = holders
                .iter()
                .filter_map(|v| self.volume(*v).ok())
                .map(|v| v.device())
                .chain(placed.iter().map(|p| p.volume.device()))
                .collect();
            let (slots, shared) =
                self.alloc
                    .lock()
                    .reserve_copies(n - placed.len(), &exclude, &devices);
            if shared {
                tracing::debug!("copies of a sector share a device: no other device has room");
            }
            if slots.is_empty() {
                // a new sector needs one copy at least; a repair takes
                // what it can get
                if placed.is_empty() && holders.is_empty() {
                    return Err(self.no_space(failed));
                }
                break;
            }
            let (written, verified) = self.write_slots(&slots, data, verify.take());
            let mut refused = None;
            for ((vol, slot), result) in slots.into_iter().zip(written) {
                match result {
                    Ok(p) => placed.push(p),
                    Err((volume, e)) => {
                        self.discard_slot(vol, slot);
                        // no memory for the buffers: no fault of the volume's
                        if matches!(e.errno(), libc::ENOBUFS | libc::ENOMEM) {
                            refused = Some(e);
                            continue;
                        }
                        failed.push(vol);
                        tracing::error!(volume = vol, slot, "write failed: {e}");
                        if let Some(volume) = volume {
                            self.note_write_error(&volume, &e);
                        }
                    }
                }
            }
            if let Err(e) = verified {
                // the slots may hold the bad data: punched before reuse
                give_back(&placed);
                return Err(e);
            }
            if let Some(e) = refused {
                give_back(&placed);
                return Err(e);
            }
        }
        Ok(placed)
    }

    fn no_space(&self, failed: &[u32]) -> Error {
        self.space_changed();
        Error::NoSpace(if failed.is_empty() {
            "no writable volume has a free slot".into()
        } else {
            format!("no writable volume has a free slot (writes to volume(s) {failed:?} failed)")
        })
    }

    /// Writes `data` into each of `slots` on a thread of its own, with
    /// `verify` run here once the first copy has its bytes in its buffers.
    #[allow(clippy::type_complexity)]
    fn write_slots(
        &self,
        slots: &[(u32, u64)],
        data: &[u8],
        verify: Option<&(dyn Fn() -> Result<()> + Sync)>,
    ) -> (
        Vec<std::result::Result<Placed, (Option<Arc<Volume>>, Error)>>,
        Result<()>,
    ) {
        let write = |vol: u32, slot: u64, copied: &dyn Fn()| match self.volume(vol) {
            Ok(volume) => match self.write_slot(&volume, slot, data, copied) {
                Ok(file) => Ok(Placed { volume, file, slot }),
                Err(e) => Err((Some(volume), e)),
            },
            Err(e) => {
                copied();
                Err((None, e))
            }
        };
        std::thread::scope(|scope| {
            // The hash starts once the data is copied into the first
            // copy's write buffers: the copy has a core to itself, the
            // device starts sooner, and the hash fits inside the wait for
            // the writes and the syncs.
            let (copied, wait_copied) = std::sync::mpsc::sync_channel::<()>(slots.len());
            let handles: Vec<_> = slots
                .iter()
                .map(|&(vol, slot)| {
                    let copied = copied.clone();
                    let spawned = std::thread::Builder::new()
                        .name("sector-write".into())
                        .spawn_scoped(scope, move || {
                            write(vol, slot, &|| {
                                let _ = copied.try_send(());
                            })
                        });
                    (vol, slot, spawned)
                })
                .collect();
            drop(copied);
            if handles.iter().any(|(_, _, h)| h.is_ok()) {
                // an error once every writer let go: copied or failed
                let _ = wait_copied.recv();
            }
            let verified = verify.map_or(Ok(()), |v| v());
            let written = handles
                .into_iter()
                .map(|(vol, slot, h)| match h {
                    Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                    Err(e) => {
                        no_thread("sector-write", &e);
                        write(vol, slot, &|| {})
                    }
                })
                .collect();
            (written, verified)
        })
    }

    /// Every copy of sector `id`, in the order a read tries them (none: it
    /// is not stored).
    pub fn sector_copies(&self, id: i64) -> Result<Vec<SectorRow>> {
        Ok(self.read_order(self.meta.copies_of(id)?))
    }

    /// `copies` in the order a read tries them: on readable volumes and
    /// not found corrupt first (the first added first), then the others.
    pub(crate) fn read_order(&self, mut copies: Vec<SectorRow>) -> Vec<SectorRow> {
        let unreadable: HashSet<u32> = copies
            .iter()
            .map(|c| c.volume_id)
            .filter(|v| !self.volume(*v).is_ok_and(|v| v.readable()))
            .collect();
        // stable: the first added stays first among equals
        copies.sort_by_key(|c| unreadable.contains(&c.volume_id) || self.is_corrupt_copy(c));
        copies
    }

    /// The copy was found corrupt since start and not rewritten since.
    pub(crate) fn is_corrupt_copy(&self, at: &SectorRow) -> bool {
        self.corrupt.lock().contains(&(at.id, at.volume_id))
    }

    /// A sector stored with fewer copies than the store keeps (fewer
    /// volumes with room): counted as under-replicated, and a repair pass
    /// is asked for, to add them when room appears.
    pub(crate) fn note_under_replicated(&self, root: &Root, copies: usize) {
        let min = self.copies_setting().min;
        tracing::warn!(
            "sector {root} was stored with {copies} of {min} copies: too few volumes have room"
        );
        self.alerts.raise(
            "under-replicated-writes",
            Severity::Warning,
            format!(
                "sectors are being stored with fewer than {min} copies (last: {root}, {}): too \
                 few writable volumes on distinct devices have room; add or free a volume and \
                 a repair adds the missing copies",
                crate::plural::count(copies as u64, "copy")
            ),
            serde_json::json!({"root": root.to_string(), "copies": copies, "min": min}),
        );
        // once, not at every such write: a pass under way or due already
        // covers it, and room appearing asks for one anyway
        match self.meta.request_repair_if_idle() {
            Ok(()) => self.repair_wake(),
            Err(e) => tracing::error!("cannot ask for a repair pass: {e}"),
        }
    }

    /// Room for copies appeared: a repair pass adds those missing, when
    /// the store keeps more than one.
    pub(crate) fn room_for_copies(&self, why: &str) {
        if self.copies_setting().min > 1 {
            self.request_repair(why);
        }
    }

    /// Sectors by readable copies, counted now (a count of the sectors
    /// while each has its one copy, else one pass over the copies); raises
    /// or clears the alerts about sectors with too few copies or copies
    /// sharing a device.
    pub fn copy_census(&self) -> Result<CopyCensus> {
        let census = self.count_copies()?;
        self.census_alerts(&census);
        Ok(census)
    }

    fn count_copies(&self) -> Result<CopyCensus> {
        let setting = self.copies_setting();
        let volumes: BTreeMap<u32, Arc<Volume>> = self.volumes.read().clone();
        // one copy each, all readable, nothing to repair: every sector has
        // exactly its one copy, and a count of the sectors says it all
        if (setting.min, setting.max) == (1, 1)
            && !self.has_cold()
            && volumes.values().all(|v| v.readable())
            && self.corrupt.lock().is_empty()
            && self.meta.repair_cursor()?.is_none()
        {
            let sectors = self.meta.count_sectors()?;
            return Ok(CopyCensus {
                sectors,
                by_copies: [(1, sectors)].into_iter().filter(|(_, n)| *n > 0).collect(),
                min: 1,
                max: 1,
                ..CopyCensus::default()
            });
        }
        let readable: BTreeMap<u32, u64> = volumes
            .values()
            .filter(|v| v.readable())
            .map(|v| (v.id, v.device()))
            .collect();
        let mut census = CopyCensus {
            min: setting.min,
            max: setting.max,
            ..CopyCensus::default()
        };
        let mut current: Option<i64> = None;
        let mut devices: Vec<u64> = Vec::new();
        let corrupt = self.corrupt.lock().clone();
        let cold = self.has_cold();
        let tally = |devices: &mut Vec<u64>, census: &mut CopyCensus| {
            let n = devices.len() as u64;
            census.sectors += 1;
            *census.by_copies.entry(n).or_default() += 1;
            if n == 0 {
                census.lost += 1;
            } else if n < setting.min as u64 {
                census.under_replicated += 1;
            }
            devices.sort_unstable();
            if devices.windows(2).any(|w| w[0] == w[1]) {
                census.sharing_a_device += 1;
            }
            devices.clear();
        };
        self.meta.for_each_copy(|sector, volume| {
            if current != Some(sector) {
                if current.is_some() {
                    tally(&mut devices, &mut census);
                }
                current = Some(sector);
            }
            if let Some(dev) = readable.get(&volume)
                && !corrupt.contains(&(sector, volume))
            {
                devices.push(*dev);
            } else if volume == crate::meta::COLD_VOLUME && cold {
                devices.push(u64::MAX);
            }
        })?;
        if current.is_some() {
            tally(&mut devices, &mut census);
        }
        Ok(census)
    }

    fn census_alerts(&self, c: &CopyCensus) {
        // "1 sector has", "2 sectors have"
        let have = |n: u64| {
            let verb = if n == 1 { "has" } else { "have" };
            format!("{} {verb}", crate::plural::count(n, "sector"))
        };
        let alert = |key: &str, n: u64, severity, message: String| {
            if n == 0 {
                self.alerts.clear(key);
            } else {
                self.alerts
                    .raise(key, severity, message, serde_json::json!({"sectors": n}));
            }
        };
        alert(
            "copies-lost",
            c.lost,
            Severity::Error,
            format!(
                "{} no readable copy (their volumes are unavailable or their copies corrupt); \
                 reads of them fail until a volume comes back",
                have(c.lost)
            ),
        );
        if c.under_replicated == 0 {
            // the writes stored short of copies are repaired since
            self.alerts.clear("under-replicated-writes");
        }
        alert(
            "copies-under-replicated",
            c.under_replicated,
            Severity::Warning,
            format!(
                "{} fewer than {} readable copies; the repair adds copies where volumes have room",
                have(c.under_replicated),
                c.min
            ),
        );
        alert(
            "copies-sharing-a-device",
            c.sharing_a_device,
            Severity::Warning,
            format!(
                "{} two copies on one device (too few devices have room): a failing disk can \
                 take both; add a volume on another disk",
                have(c.sharing_a_device)
            ),
        );
    }
}
