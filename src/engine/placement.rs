//! Placement policies: which volume gets a new sector. Only writable, ready
//! volumes with a free slot are ever candidates.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    /// The lowest-numbered volume with room.
    #[default]
    FillFirst,
    /// Each volume in turn.
    RoundRobin,
    /// Any volume with room, uniformly.
    Random,
    /// The volume with the most free slots.
    MostFree,
    /// The volume with the lowest fill fraction.
    LeastUsed,
    /// Random, weighted by free slots times the volume's `weight`.
    WeightedRandom,
}

pub const POLICIES: &[(&str, Placement)] = &[
    ("fill-first", Placement::FillFirst),
    ("round-robin", Placement::RoundRobin),
    ("random", Placement::Random),
    ("most-free", Placement::MostFree),
    ("least-used", Placement::LeastUsed),
    ("weighted-random", Placement::WeightedRandom),
];

impl FromStr for Placement {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        POLICIES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, p)| *p)
            .ok_or_else(|| {
                let names: Vec<_> = POLICIES.iter().map(|(n, _)| *n).collect();
                Error::Invalid(format!(
                    "unknown placement policy {s:?}; choose one of {}",
                    names.join(", ")
                ))
            })
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = POLICIES.iter().find(|(_, p)| p == self).map(|(n, _)| *n);
        f.write_str(name.unwrap_or("?"))
    }
}

/// A volume that could take a sector: writable, ready, with a free slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub id: u32,
    pub total: u64,
    pub free: u64,
    /// Its share of new sectors under `weighted-random` (never 0 here).
    pub weight: u32,
}

/// Chooses among `candidates` (sorted by id, each with `free > 0`).
/// `last` is the volume chosen last time, for round-robin; `pick(n)`
/// returns a uniform random number below `n`.
pub fn choose(
    policy: Placement,
    candidates: &[Candidate],
    last: Option<u32>,
    mut pick: impl FnMut(u64) -> u64,
) -> Option<u32> {
    debug_assert!(candidates.iter().all(|c| c.free > 0));
    let first = candidates.first()?;
    let chosen = match policy {
        Placement::FillFirst => first,
        Placement::RoundRobin => candidates
            .iter()
            .find(|c| last.is_some_and(|l| c.id > l))
            .unwrap_or(first),
        Placement::Random => &candidates[pick(candidates.len() as u64) as usize],
        Placement::MostFree => candidates
            .iter()
            .max_by(|a, b| a.free.cmp(&b.free).then(b.id.cmp(&a.id)))?,
        // used/total compared without division: a.used * b.total < b.used * a.total
        Placement::LeastUsed => candidates.iter().min_by(|a, b| {
            let (au, bu) = ((a.total - a.free) as u128, (b.total - b.free) as u128);
            (au * b.total as u128)
                .cmp(&(bu * a.total as u128))
                .then(a.id.cmp(&b.id))
        })?,
        Placement::WeightedRandom => {
            let share = |c: &Candidate| c.free.saturating_mul(c.weight.max(1) as u64);
            let total: u64 = candidates.iter().map(share).fold(0, u64::saturating_add);
            let mut n = pick(total);
            candidates.iter().find(|c| {
                if n < share(c) {
                    true
                } else {
                    n -= share(c);
                    false
                }
            })?
        }
    };
    Some(chosen.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u32, total: u64, free: u64) -> Candidate {
        Candidate {
            id,
            total,
            free,
            weight: 1,
        }
    }

    #[test]
    fn names_round_trip() {
        for (name, p) in POLICIES {
            assert_eq!(name.parse::<Placement>().unwrap(), *p);
            assert_eq!(p.to_string(), *name);
        }
        assert!("fastest".parse::<Placement>().is_err());
    }

    #[test]
    fn deterministic_policies() {
        // volume 1: 10 slots, 2 free (80% used); 2: 100 slots, 30 free (70%);
        // 3: 20 slots, 10 free (50%).
        let vols = [c(1, 10, 2), c(2, 100, 30), c(3, 20, 10)];
        let none = |_| unreachable!();
        assert_eq!(choose(Placement::FillFirst, &vols, None, none), Some(1));
        assert_eq!(choose(Placement::MostFree, &vols, None, none), Some(2));
        assert_eq!(choose(Placement::LeastUsed, &vols, None, none), Some(3));
        assert_eq!(choose(Placement::RoundRobin, &vols, None, none), Some(1));
        assert_eq!(choose(Placement::RoundRobin, &vols, Some(1), none), Some(2));
        assert_eq!(choose(Placement::RoundRobin, &vols, Some(3), none), Some(1));
        // the last one chosen may have dropped out (full or read-only)
        let two = [c(1, 10, 2), c(3, 20, 10)];
        assert_eq!(choose(Placement::RoundRobin, &two, Some(2), none), Some(3));
    }

    #[test]
    fn random_policies_use_the_draw() {
        let vols = [c(1, 10, 2), c(2, 100, 30), c(3, 20, 10)];
        assert_eq!(choose(Placement::Random, &vols, None, |_| 2), Some(3));
        // weights 2, 30, 10: draws 0-1 → 1, 2-31 → 2, 32-41 → 3
        let w = |n| choose(Placement::WeightedRandom, &vols, None, move |_| n);
        assert_eq!(w(1), Some(1));
        assert_eq!(w(2), Some(2));
        assert_eq!(w(31), Some(2));
        assert_eq!(w(32), Some(3));
        assert_eq!(w(41), Some(3));
    }

    #[test]
    fn weights_scale_the_weighted_draw() {
        // shares 2*3 = 6 and 30*1 = 30: draws 0-5 → 1, 6-35 → 2
        let vols = [
            Candidate {
                weight: 3,
                ..c(1, 10, 2)
            },
            c(2, 100, 30),
        ];
        let w = |n| choose(Placement::WeightedRandom, &vols, None, move |_| n);
        assert_eq!(w(5), Some(1));
        assert_eq!(w(6), Some(2));
        assert_eq!(w(35), Some(2));
    }

    #[test]
    fn nothing_to_choose() {
        for (_, p) in POLICIES {
            assert_eq!(choose(*p, &[], None, |_| 0), None);
        }
    }
}
