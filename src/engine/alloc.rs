//! The allocator: every volume's free slots plus the placement policy,
//! behind one short-held mutex. Reserving a slot is a memory operation; the
//! database learns of the slot only when the sector is committed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::placement::{Candidate, Placement, choose};
use super::slots::SlotMap;
use crate::meta::Limits;
use crate::volume::SECTOR_BYTES;

/// Counts truncations of volume files, so a write into a reserved slot can
/// tell at its commit whether a shrink cut the slot off (and its bytes with
/// it) since the slot was reserved. Odd while a truncation is under way.
#[derive(Debug, Default)]
pub struct Truncations(AtomicU64);

impl Truncations {
    /// The snapshot to take when a slot is reserved, before writing to it.
    pub fn snapshot(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    /// No volume file was cut since `snapshot`, nor was one being cut then.
    pub fn none_since(&self, snapshot: u64) -> bool {
        snapshot.is_multiple_of(2) && self.0.load(Ordering::SeqCst) == snapshot
    }

    /// Runs `cut`, a truncation of a volume file.
    pub fn during<T>(&self, cut: impl FnOnce() -> T) -> T {
        self.0.fetch_add(1, Ordering::SeqCst);
        let out = cut();
        self.0.fetch_add(1, Ordering::SeqCst);
        out
    }
}

#[derive(Debug)]
pub struct Allocator {
    policy: Placement,
    volumes: BTreeMap<u32, VolumeSlots>,
    last: Option<u32>,
}

#[derive(Debug)]
struct VolumeSlots {
    map: SlotMap,
    /// Takes new sectors: not read-only, not unavailable, not being removed.
    writable: bool,
    /// New sectors only below this slot (a shrink in progress).
    limit: Option<u64>,
    /// The device of its file: copies of a sector go to different ones.
    device: u64,
    /// Its weight, cap and free-space floor.
    limits: Limits,
    /// Its file, whose file system `min_free` looks at.
    path: std::path::PathBuf,
}

impl VolumeSlots {
    /// Free slots new sectors may take: below a shrink's new size, none at
    /// weight 0, up to `max_sectors`, and as many as its file system holds
    /// above `min_free`.
    fn placeable(&self) -> u64 {
        let mut n = self.within_limits();
        if self.limits.min_free > 0 && n > 0 {
            // a file system that cannot be asked takes nothing new
            let free = crate::volume::fs_free_bytes(&self.path).unwrap_or(0);
            n = n.min(free.saturating_sub(self.limits.min_free) / SECTOR_BYTES);
        }
        n
    }

    /// `placeable` before its file system is asked.
    fn within_limits(&self) -> u64 {
        let n = match self.limit {
            Some(l) => self.map.free_below(l),
            None => self.map.free(),
        };
        match self.limits {
            Limits { weight: 0, .. } => 0,
            Limits { max_sectors: 0, .. } => n,
            Limits { max_sectors, .. } => n.min(max_sectors.saturating_sub(self.map.used())),
        }
    }
}

impl Allocator {
    pub fn new(policy: Placement) -> Allocator {
        Allocator {
            policy,
            volumes: BTreeMap::new(),
            last: None,
        }
    }

    pub fn add_volume(&mut self, id: u32, map: SlotMap, writable: bool) {
        self.volumes.insert(
            id,
            VolumeSlots {
                map,
                writable,
                limit: None,
                device: u64::MAX - id as u64,
                limits: Limits::default(),
                path: Default::default(),
            },
        );
    }

    /// Sets a volume's limits; `path` is its file.
    pub fn set_limits(&mut self, id: u32, limits: Limits, path: &std::path::Path) {
        if let Some(v) = self.volumes.get_mut(&id) {
            v.limits = limits;
            v.path = path.to_path_buf();
        }
    }

    pub fn limits(&self, id: u32) -> Option<Limits> {
        self.volumes.get(&id).map(|v| v.limits)
    }

    /// Free slots new sectors could take if its file system had room.
    pub fn within_limits(&self, id: u32) -> Option<u64> {
        self.volumes.get(&id).map(VolumeSlots::within_limits)
    }

    pub fn remove_volume(&mut self, id: u32) {
        self.volumes.remove(&id);
    }

    pub fn set_device(&mut self, id: u32, device: u64) {
        if let Some(v) = self.volumes.get_mut(&id) {
            v.device = device;
        }
    }

    pub fn set_writable(&mut self, id: u32, writable: bool) {
        if let Some(v) = self.volumes.get_mut(&id) {
            v.writable = writable;
        }
    }

    /// Reserves a free slot in the volume the policy picks, skipping
    /// `exclude` (volumes that just failed a write).
    pub fn reserve(&mut self, exclude: &[u32]) -> Option<(u32, u64)> {
        self.reserve_avoiding(exclude, &[]).map(|(slot, _)| slot)
    }

    /// Reserves slots for `n` copies of one sector, each on its own volume
    /// outside `exclude`, on devices other than `devices` (those of its
    /// other copies) and each other's wherever volumes with room allow.
    /// May return fewer (no more volumes with room); true when some copy
    /// had to share a device.
    pub fn reserve_copies(
        &mut self,
        n: usize,
        exclude: &[u32],
        devices: &[u64],
    ) -> (Vec<(u32, u64)>, bool) {
        let mut exclude = exclude.to_vec();
        let mut devices = devices.to_vec();
        let mut out = Vec::with_capacity(n);
        let mut shared = false;
        while out.len() < n {
            let Some(((vol, slot), distinct)) = self.reserve_avoiding(&exclude, &devices) else {
                break;
            };
            shared |= !distinct;
            exclude.push(vol);
            devices.push(self.volumes[&vol].device);
            out.push((vol, slot));
        }
        (out, shared)
    }

    /// Reserves a slot outside `exclude`, on a device outside `devices`
    /// when any volume there has room (then true), else on any.
    fn reserve_avoiding(&mut self, exclude: &[u32], devices: &[u64]) -> Option<((u32, u64), bool)> {
        let candidates: Vec<(Candidate, u64)> = self
            .volumes
            .iter()
            .filter(|(id, v)| v.writable && !exclude.contains(id))
            .map(|(id, v)| {
                let c = Candidate {
                    id: *id,
                    total: v.limit.unwrap_or(v.map.total()),
                    free: v.placeable(),
                    weight: v.limits.weight,
                };
                (c, v.device)
            })
            .filter(|(c, _)| c.free > 0)
            .collect();
        let apart: Vec<Candidate> = candidates
            .iter()
            .filter(|(_, d)| !devices.contains(d))
            .map(|(c, _)| *c)
            .collect();
        let distinct = !apart.is_empty();
        let pool: Vec<Candidate> = if distinct {
            apart
        } else {
            candidates.iter().map(|(c, _)| *c).collect()
        };
        let id = choose(self.policy, &pool, self.last, |n| {
            rand::random_range(0..n.max(1))
        })?;
        self.last = Some(id);
        let v = self.volumes.get_mut(&id)?;
        let slot = v.map.take_below(v.limit.unwrap_or(u64::MAX))?;
        Some(((id, slot), distinct))
    }

    /// Reserves the lowest free slot below `below` in one volume, writable
    /// or not (a shrink moving sectors down inside its own volume).
    pub fn reserve_in(&mut self, volume: u32, below: u64) -> Option<u64> {
        self.volumes.get_mut(&volume)?.map.take_below(below)
    }

    /// Reserves a free slot in one volume where new sectors may go (below
    /// a running shrink's new size).
    pub fn reserve_placeable(&mut self, volume: u32) -> Option<u64> {
        let v = self.volumes.get_mut(&volume)?;
        if v.placeable() == 0 {
            return None;
        }
        v.map.take_below(v.limit.unwrap_or(u64::MAX))
    }

    /// Free slots below `below` in one volume.
    pub fn free_below(&self, volume: u32, below: u64) -> u64 {
        self.volumes
            .get(&volume)
            .map_or(0, |v| v.map.free_below(below))
    }

    /// Free slots new sectors may take, outside `exclude`.
    pub fn placeable_free(&self, exclude: u32) -> u64 {
        self.volumes
            .iter()
            .filter(|(id, v)| v.writable && **id != exclude)
            .map(|(_, v)| v.placeable())
            .sum()
    }

    /// Confines new sectors of a volume below `limit` (`None`: anywhere).
    pub fn set_limit(&mut self, volume: u32, limit: Option<u64>) {
        if let Some(v) = self.volumes.get_mut(&volume) {
            v.limit = limit;
        }
    }

    pub fn release(&mut self, volume: u32, slot: u64) {
        if let Some(v) = self.volumes.get_mut(&volume) {
            v.map.release(slot);
        }
    }

    /// Takes a slot out of the free ones (a pending punch holds it).
    pub fn hold(&mut self, volume: u32, slot: u64) {
        if let Some(v) = self.volumes.get_mut(&volume) {
            v.map.mark(slot);
        }
    }

    pub fn is_used(&self, volume: u32, slot: u64) -> bool {
        self.volumes
            .get(&volume)
            .is_some_and(|v| v.map.is_used(slot))
    }

    /// (total, used) slots of one volume.
    /// Free slots of `volume` that new sectors may take (below a shrink's
    /// new size while it runs).
    pub fn placeable(&self, volume: u32) -> Option<u64> {
        self.volumes.get(&volume).map(VolumeSlots::placeable)
    }

    pub fn usage(&self, volume: u32) -> Option<(u64, u64)> {
        self.volumes
            .get(&volume)
            .map(|v| (v.map.total(), v.map.used()))
    }

    pub fn resize(&mut self, volume: u32, total: u64) {
        if let Some(v) = self.volumes.get_mut(&volume) {
            v.map.resize(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(policy: Placement, vols: &[(u32, u64, u64, bool)]) -> Allocator {
        let mut a = Allocator::new(policy);
        for &(id, total, used, writable) in vols {
            let mut m = SlotMap::new(total);
            for s in 0..used {
                m.mark(s);
            }
            a.add_volume(id, m, writable);
        }
        a
    }

    /// While a shrink runs, only the slots below its new size take new
    /// sectors, and only they count as placeable.
    #[test]
    fn a_shrink_limit_bounds_what_is_placeable() {
        let mut a = alloc(Placement::FillFirst, &[(1, 10, 2, true)]);
        assert_eq!(a.placeable(1), Some(8));
        a.set_limit(1, Some(4));
        assert_eq!(a.placeable(1), Some(2));
        assert_eq!(a.reserve(&[]), Some((1, 2)));
        assert_eq!(a.reserve(&[]), Some((1, 3)));
        assert_eq!(a.reserve(&[]), None);
        assert_eq!(a.placeable(9), None);
    }

    #[test]
    fn skips_full_and_read_only_volumes() {
        // 1 is full, 2 is read-only, 3 has room
        let vols = [(1, 4, 4, true), (2, 8, 0, false), (3, 8, 6, true)];
        for (_, policy) in super::super::placement::POLICIES {
            let mut a = alloc(*policy, &vols);
            assert_eq!(a.reserve(&[]), Some((3, 6)), "{policy}");
            assert_eq!(a.reserve(&[]), Some((3, 7)), "{policy}");
            assert_eq!(a.reserve(&[]), None, "{policy}: no space left");
        }
    }

    #[test]
    fn round_robin_and_most_free_spread_sectors() {
        let vols = [(1, 8, 0, true), (2, 8, 0, true), (3, 8, 0, true)];
        let mut a = alloc(Placement::RoundRobin, &vols);
        let picks: Vec<u32> = (0..6).map(|_| a.reserve(&[]).unwrap().0).collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);

        let mut a = alloc(Placement::MostFree, &[(1, 8, 0, true), (2, 4, 0, true)]);
        let picks: Vec<u32> = (0..6).map(|_| a.reserve(&[]).unwrap().0).collect();
        assert_eq!(picks, [1, 1, 1, 1, 1, 2]);

        let mut a = alloc(Placement::FillFirst, &vols);
        assert_eq!(
            a.reserve(&[1]).unwrap().0,
            2,
            "an excluded volume is skipped"
        );
    }

    #[test]
    fn weighted_random_never_picks_a_full_volume() {
        let mut a = alloc(
            Placement::WeightedRandom,
            &[(1, 100, 100, true), (2, 100, 0, true), (3, 10, 0, true)],
        );
        for _ in 0..100 {
            assert_ne!(a.reserve(&[]).unwrap().0, 1);
        }
    }
}
