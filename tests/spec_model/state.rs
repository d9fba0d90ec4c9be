//! What the spec (`interface.md`) says the store holds after each step.

use std::collections::{BTreeMap, BTreeSet};

use super::ops::{How, POOL, Pick};
use super::want::Want;

/// Slots of the default volume: small, so the store fills up.
pub const DEFAULT_SLOTS: u64 = 3;

#[derive(Clone, Copy, Debug)]
pub struct Sector {
    pub pin: bool,
    pub volume: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct Volume {
    pub slots: u64,
    pub readonly: bool,
}

/// Where a new reference goes.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    Pin,
    Temp(u64),
}

#[derive(Clone, Debug)]
pub struct Model {
    pub height: u64,
    /// Stored sectors by pool index.
    pub sectors: BTreeMap<usize, Sector>,
    pub contracts: BTreeMap<String, Vec<usize>>,
    /// Temp entries: (expiry height, pool index).
    pub temp: BTreeSet<(u64, usize)>,
    /// `/temp/<h>` directories made with mkdir (or emptied by `rm`);
    /// heights with entries are directories too.
    pub temp_dirs: BTreeSet<u64>,
    pub volumes: BTreeMap<u32, Volume>,
    /// `/copies` (min, max).
    pub copies: (u32, u32),
}

impl Model {
    pub fn new() -> Model {
        Model {
            height: 0,
            sectors: BTreeMap::new(),
            contracts: BTreeMap::new(),
            temp: BTreeSet::new(),
            temp_dirs: BTreeSet::new(),
            copies: (1, 1),
            volumes: BTreeMap::from([(
                1,
                Volume {
                    slots: DEFAULT_SLOTS,
                    readonly: false,
                },
            )]),
        }
    }

    /// The pool sector a pick names now.
    pub fn resolve(&self, pick: Pick) -> usize {
        match pick {
            Pick::Stored(i) if !self.sectors.is_empty() => *self
                .sectors
                .keys()
                .nth(i.index(self.sectors.len()))
                .unwrap(),
            Pick::Stored(i) => i.index(POOL),
            Pick::Any(s) => s,
        }
    }

    pub fn stored(&self, seed: usize) -> bool {
        self.sectors.contains_key(&seed)
    }

    /// (pin, contract entries, temp entries)
    pub fn refs(&self, seed: usize) -> (u64, u64, u64) {
        let pin = self.sectors.get(&seed).is_some_and(|s| s.pin) as u64;
        let contracts = self
            .contracts
            .values()
            .flatten()
            .filter(|s| **s == seed)
            .count() as u64;
        let temp = self.temp.iter().filter(|(_, s)| *s == seed).count() as u64;
        (pin, contracts, temp)
    }

    pub fn used(&self, volume: u32) -> u64 {
        self.sectors.values().filter(|s| s.volume == volume).count() as u64
    }

    /// Fill-first: the lowest-numbered writable volume with a free slot.
    pub fn place(&self) -> Option<u32> {
        self.volumes
            .iter()
            .find(|(id, v)| !v.readonly && self.used(**id) < v.slots)
            .map(|(id, _)| *id)
    }

    /// Frees every sector left without references.
    pub fn gc(&mut self) {
        let dead: Vec<usize> = self
            .sectors
            .keys()
            .copied()
            .filter(|s| self.refs(*s) == (0, 0, 0))
            .collect();
        for s in dead {
            self.sectors.remove(&s);
        }
    }

    pub fn temp_dir_exists(&self, h: u64) -> bool {
        h > self.height && (self.temp_dirs.contains(&h) || self.temp.iter().any(|(t, _)| *t == h))
    }

    pub fn dirs(&self) -> BTreeSet<u64> {
        let mut all = self.temp_dirs.clone();
        all.extend(self.temp.iter().map(|(h, _)| *h));
        all
    }

    /// The errnos writing a pool sector's bytes as `how` under the name of
    /// `name_seed` may end with (0: stored).
    pub fn write_errno(&self, name_seed: usize, how: How) -> Want {
        match how {
            How::Short(_) => Want::One(libc::EINVAL),
            How::Oversized => Want::One(libc::EFBIG),
            How::WrongRoot(_) if self.stored(name_seed) => Want::One(libc::EBADMSG),
            // bad data under a new name with no room for it: both are
            // true, and the spec does not rank them (the engine may hash
            // before or while it writes into a reserved slot)
            How::WrongRoot(_) if self.place().is_none() => {
                Want::Either(libc::EBADMSG, libc::ENOSPC)
            }
            How::WrongRoot(_) => Want::One(libc::EBADMSG),
            How::Good if self.stored(name_seed) => Want::One(0),
            How::Good if self.place().is_none() => Want::One(libc::ENOSPC),
            How::Good => Want::One(0),
        }
    }

    /// Adds a reference, storing the sector first if it is new.
    pub fn reference(&mut self, seed: usize, target: Target) {
        if !self.stored(seed) {
            let volume = self.place().expect("a slot, as write_errno said");
            self.sectors.insert(seed, Sector { pin: false, volume });
        }
        match target {
            Target::Pin => self.sectors.get_mut(&seed).unwrap().pin = true,
            Target::Temp(h) => {
                self.temp.insert((h, seed));
            }
        }
    }

    pub fn set_height(&mut self, h: u64) {
        self.height = h;
        self.temp.retain(|(t, _)| *t > h);
        self.temp_dirs.retain(|t| *t > h);
        self.gc();
    }
}
