//! The one seeded random generator of the tests and benchmarks: xorshift64,
//! cheap, deterministic and seedable, so a failing random test is rerun
//! with its seed. Included by path where a binary has no `common` module.
#![allow(dead_code)]

use sectorfs::merkle::{Root, SECTOR_SIZE};

#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeds are spread out (and made odd: xorshift never leaves zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `count` roots of noise, for sectors recorded without data.
    pub fn roots(&mut self, count: u64) -> Vec<Root> {
        (0..count)
            .map(|_| {
                let mut r = [0u8; 32];
                for w in r.chunks_exact_mut(8) {
                    w.copy_from_slice(&self.next().to_le_bytes());
                }
                Root(r)
            })
            .collect()
    }
}

/// A 4 MiB sector of noise, distinct per seed.
pub fn noise_sector(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut data = vec![0u8; SECTOR_SIZE];
    for word in data.chunks_exact_mut(8) {
        word.copy_from_slice(&rng.next().to_le_bytes());
    }
    data
}
