//! What the vector kernels ([`super::avx2`], [`super::avx512`]) share: the
//! BLAKE2b constants, the round as a macro over each kernel's vector
//! operations, and the tree built on any kernel.
//!
//! Every hash input of the sector tree is a prefix byte and 64 bytes: one
//! BLAKE2b block with the same counter (65), the final flag, and the same
//! initial state (unkeyed, 32-byte digest). A general `hash_many` cannot
//! exploit that; these kernels do. The state starts from constants, seven of
//! the sixteen message words are known zeros whose additions fold away, and
//! only the half of the state that makes up a 32-byte digest is finalised.
//! Lanes are vertical (vector `i` holds word `i` of each input), so a round
//! is whole-vector arithmetic with no diagonalising shuffles.
//!
//! The message is taken straight from the caller's bytes: a leaf's 64 bytes
//! and a node's two child hashes are both 64 contiguous bytes (a level of
//! hashes stored back to back holds node `i`'s input at `[64i, 64i + 64)`),
//! so no per-hash records are built and levels are reduced in place.

use super::{CHUNK_LEAVES, LEAF_PREFIX, LEAF_SIZE, NODE_PREFIX, Root, node_hash};

pub(super) const IV: [u64; 8] = [
    0x6a09_e667_f3bc_c908,
    0xbb67_ae85_84ca_a73b,
    0x3c6e_f372_fe94_f82b,
    0xa54f_f53a_5f1d_36f1,
    0x510e_527f_ade6_82d1,
    0x9b05_688c_2b3e_6c1f,
    0x1f83_d9ab_fb41_bd6b,
    0x5be0_cd19_137e_2179,
];

/// Message word order of each of the twelve rounds (RFC 7693; rounds 10 and
/// 11 repeat 0 and 1).
pub(super) const SIGMA: [[usize; 16]; 12] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
];

/// Parameter block word 0: 32-byte digest, no key, fanout 1, depth 1.
pub(super) const PARAM0: u64 = 0x0101_0020;
/// Bytes in every hash input (the block counter after the only block).
pub(super) const INPUT_LEN: u64 = 1 + LEAF_SIZE as u64;

/// Half of G on four columns (or diagonals) `[a, b, c, d]` at once:
/// `a += b + m; d = (d ^ a) >>> rd; c += d; b = (b ^ c) >>> rb`, with the
/// message words of round `r` from position `k` of `SIGMA`. `add` and `xor`
/// name the kernel's vector operations; the rotations get `masks`, whatever
/// the kernel needs for them.
macro_rules! half_g {
    ($add:ident, $xor:ident, $v:ident, $m:ident, $masks:ident, $r:expr, $k:expr,
     $rot_d:ident, $rot_b:ident,
     [$a0:literal, $b0:literal, $c0:literal, $d0:literal],
     [$a1:literal, $b1:literal, $c1:literal, $d1:literal],
     [$a2:literal, $b2:literal, $c2:literal, $d2:literal],
     [$a3:literal, $b3:literal, $c3:literal, $d3:literal]) => {
        // Constant SIGMA indices let the additions of zero words fold away.
        $v[$a0] = $add!($add!($v[$a0], $v[$b0]), $m[SIGMA[$r][$k]]);
        $v[$a1] = $add!($add!($v[$a1], $v[$b1]), $m[SIGMA[$r][$k + 2]]);
        $v[$a2] = $add!($add!($v[$a2], $v[$b2]), $m[SIGMA[$r][$k + 4]]);
        $v[$a3] = $add!($add!($v[$a3], $v[$b3]), $m[SIGMA[$r][$k + 6]]);
        $v[$d0] = $rot_d!($xor!($v[$d0], $v[$a0]), $masks);
        $v[$d1] = $rot_d!($xor!($v[$d1], $v[$a1]), $masks);
        $v[$d2] = $rot_d!($xor!($v[$d2], $v[$a2]), $masks);
        $v[$d3] = $rot_d!($xor!($v[$d3], $v[$a3]), $masks);
        $v[$c0] = $add!($v[$c0], $v[$d0]);
        $v[$c1] = $add!($v[$c1], $v[$d1]);
        $v[$c2] = $add!($v[$c2], $v[$d2]);
        $v[$c3] = $add!($v[$c3], $v[$d3]);
        $v[$b0] = $rot_b!($xor!($v[$b0], $v[$c0]), $masks);
        $v[$b1] = $rot_b!($xor!($v[$b1], $v[$c1]), $masks);
        $v[$b2] = $rot_b!($xor!($v[$b2], $v[$c2]), $masks);
        $v[$b3] = $rot_b!($xor!($v[$b3], $v[$c3]), $masks);
    };
}

/// The twelve rounds, each columns then diagonals, over the kernel's vector
/// operations `add`, `xor` and rotations right by 32, 24, 16 and 63 bits.
/// Macros rather than functions: an `#[inline(always)]` helper cannot carry
/// `target_feature`, so its intrinsic calls would each need `unsafe`;
/// expanded in the kernel they sit in its feature-enabled function and are
/// safe.
macro_rules! rounds {
    ($add:ident, $xor:ident, [$r32:ident, $r24:ident, $r16:ident, $r63:ident],
     $v:ident, $m:ident, $masks:ident) => {
        rounds!(@each $add, $xor, [$r32, $r24, $r16, $r63], $v, $m, $masks,
                0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);
    };
    (@each $add:ident, $xor:ident, [$r32:ident, $r24:ident, $r16:ident, $r63:ident],
     $v:ident, $m:ident, $masks:ident, $($r:literal),*) => {
        $(
            half_g!($add, $xor, $v, $m, $masks, $r, 0, $r32, $r24,
                    [0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]);
            half_g!($add, $xor, $v, $m, $masks, $r, 1, $r16, $r63,
                    [0, 4, 8, 12], [1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]);
            half_g!($add, $xor, $v, $m, $masks, $r, 8, $r32, $r24,
                    [0, 5, 10, 15], [1, 6, 11, 12], [2, 7, 8, 13], [3, 4, 9, 14]);
            half_g!($add, $xor, $v, $m, $masks, $r, 9, $r16, $r63,
                    [0, 5, 10, 15], [1, 6, 11, 12], [2, 7, 8, 13], [3, 4, 9, 14]);
        )*
    };
}

/// The working vector at the start of a one-block compression with the
/// tree's parameters, each word broadcast with the kernel's `splat`:
/// v[12..16] are the counter's low and high words, the final-block flag and
/// the last-node flag.
macro_rules! initial_state {
    ($splat:ident) => {
        [
            $splat!(IV[0] ^ PARAM0), // h[0]
            $splat!(IV[1]),
            $splat!(IV[2]),
            $splat!(IV[3]),
            $splat!(IV[4]),
            $splat!(IV[5]),
            $splat!(IV[6]),
            $splat!(IV[7]),
            $splat!(IV[0]),
            $splat!(IV[1]),
            $splat!(IV[2]),
            $splat!(IV[3]),
            $splat!(IV[4] ^ INPUT_LEN),
            $splat!(IV[5]),
            $splat!(!IV[6]),
            $splat!(IV[7]),
        ]
    };
}

/// A kernel hashing `LANES` tree inputs per step. A value exists only on a
/// CPU that can run it, which is what makes the safe tree functions below
/// sound.
pub(super) trait Lanes: Copy {
    /// Inputs hashed per step.
    const LANES: usize;

    /// Hashes `LANES * groups` consecutive 64-byte chunks at `src` as
    /// `BLAKE2b-256(prefix ‖ chunk)` into as many consecutive 32-byte
    /// digests at `dst`.
    ///
    /// # Safety
    ///
    /// `src` must be valid for reading `64 * LANES * groups` bytes and `dst`
    /// for writing half as many. They may overlap only with `dst <= src`:
    /// then each group's digests land on input already read, which is what
    /// lets a tree level be reduced in place.
    unsafe fn hash_chunks(self, prefix: u8, src: *const u8, dst: *mut u8, groups: usize);

    /// Takes the first levels of a tree's last `count` hashes, too few for
    /// this kernel's lanes, on a narrower one; returns how many are left.
    fn narrow_tail(self, _level: &mut [u8], count: usize) -> usize {
        count
    }

    /// Hashes each 64-byte chunk of `src` into the matching 32 bytes of
    /// `dst`. `src.len()` must be a multiple of `64 * LANES` and twice
    /// `dst.len()`.
    fn hash_into(self, prefix: u8, src: &[u8], dst: &mut [u8]) {
        let group = 64 * Self::LANES;
        assert!(src.len().is_multiple_of(group) && dst.len() * 2 == src.len());
        // SAFETY: the lengths were checked and borrowing rules keep the two
        // slices apart.
        unsafe { self.hash_chunks(prefix, src.as_ptr(), dst.as_mut_ptr(), src.len() / group) }
    }

    /// Replaces the first half of `buf` with the hashes of its 64-byte
    /// chunks: one tree level up, in place. `buf.len()` must be a multiple
    /// of `64 * LANES`.
    fn hash_in_place(self, prefix: u8, buf: &mut [u8]) {
        let group = 64 * Self::LANES;
        assert!(buf.len().is_multiple_of(group));
        let p = buf.as_mut_ptr();
        // SAFETY: output starts where input does, which `hash_chunks`
        // allows.
        unsafe { self.hash_chunks(prefix, p, p, buf.len() / group) }
    }

    /// Root of the perfect tree over `level`, a power-of-two count of
    /// 32-byte hashes stored back to back; `level` is used as scratch.
    fn reduce(self, level: &mut [u8]) -> Root {
        let mut count = level.len() / 32;
        debug_assert!(count.is_power_of_two() && level.len() == count * 32);
        // One step turns 2 * LANES children into LANES parents, so the
        // last levels would leave lanes idle: narrower kernels, then one by
        // one, take those.
        while count >= 2 * Self::LANES {
            self.hash_in_place(NODE_PREFIX, &mut level[..count * 32]);
            count /= 2;
        }
        count = self.narrow_tail(level, count);
        while count > 1 {
            for i in 0..count / 2 {
                let child = |j: usize| Root(level[32 * j..][..32].try_into().expect("32 bytes"));
                let parent = node_hash(&child(2 * i), &child(2 * i + 1));
                level[32 * i..][..32].copy_from_slice(&parent.0);
            }
            count /= 2;
        }
        Root(level[..32].try_into().expect("32 bytes"))
    }

    /// [`super::subtree_root`] for at least `LANES` leaves (length checked
    /// by the caller). Works chunk by chunk so the level buffer stays in
    /// cache.
    fn subtree_root(self, data: &[u8]) -> Root {
        let leaves = data.len() / LEAF_SIZE;
        debug_assert!(leaves.is_power_of_two() && leaves >= Self::LANES);
        let chunk_leaves = leaves.min(CHUNK_LEAVES);
        let mut level = vec![0u8; chunk_leaves * 32];
        let mut roots = Vec::with_capacity(leaves / chunk_leaves * 32);
        for chunk in data.chunks_exact(chunk_leaves * LEAF_SIZE) {
            self.hash_into(LEAF_PREFIX, chunk, &mut level);
            roots.extend_from_slice(&self.reduce(&mut level).0);
        }
        self.reduce(&mut roots)
    }

    /// [`super::combine`] for a power-of-two count of roots.
    fn combine(self, roots: &[Root]) -> Root {
        let mut level = Vec::with_capacity(roots.len() * 32);
        for r in roots {
            level.extend_from_slice(&r.0);
        }
        self.reduce(&mut level)
    }

    /// `BLAKE2b-256(prefix ‖ chunk)` of the `LANES` 64-byte chunks of
    /// `input`, in order, into `out`.
    #[cfg(test)]
    fn hash_group(self, prefix: u8, input: &[u8], out: &mut [u8]) {
        assert!(input.len() == 64 * Self::LANES && out.len() == 32 * Self::LANES);
        self.hash_into(prefix, input, out)
    }
}
