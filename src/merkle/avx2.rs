//! AVX2 path: BLAKE2b-256 of four Merkle hash inputs at once, and the tree
//! built on it.
//!
//! Every hash input of the sector tree is a prefix byte and 64 bytes: one
//! BLAKE2b block with the same counter (65), the final flag, and the same
//! initial state (unkeyed, 32-byte digest). A general `hash_many` cannot
//! exploit that; this kernel does. The state starts from constants, seven of
//! the sixteen message words are known zeros whose additions fold away, and
//! only the half of the state that makes up a 32-byte digest is finalised.
//! Lanes are vertical (vector `i` holds word `i` of each of four inputs), so a
//! round is whole-vector arithmetic with no diagonalising shuffles.
//!
//! The message is taken straight from the caller's bytes: a leaf's 64 bytes
//! and a node's two child hashes are both 64 contiguous bytes (a level of
//! hashes stored back to back holds node `i`'s input at `[64i, 64i + 64)`),
//! so no per-hash records are built and levels are reduced in place.

use core::arch::x86_64::*;

use super::{CHUNK_LEAVES, LEAF_PREFIX, LEAF_SIZE, NODE_PREFIX, Root, node_hash};

const IV: [u64; 8] = [
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
const SIGMA: [[usize; 16]; 12] = [
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
const PARAM0: u64 = 0x0101_0020;
/// Bytes in every hash input (the block counter after the only block).
const INPUT_LEN: u64 = 1 + LEAF_SIZE as u64;
/// Chunks hashed per kernel call.
const LANES: usize = 4;

/// Proof that this CPU has AVX2: the only way to reach the kernel, so the
/// safe methods below can call it.
#[derive(Clone, Copy)]
pub(super) struct Kernel(());

impl Kernel {
    /// The kernel, if this CPU can run it. Cheap enough to call per root:
    /// std runs CPUID once and caches the answer in a static.
    pub(super) fn detect() -> Option<Kernel> {
        is_x86_feature_detected!("avx2").then_some(Kernel(()))
    }

    /// `BLAKE2b-256(prefix ‖ chunk)` of the four 64-byte chunks of `input`,
    /// in order, into `out`.
    #[cfg(test)]
    pub(super) fn hash4(self, prefix: u8, input: &[u8; 256], out: &mut [u8; 128]) {
        // SAFETY: `self` exists only if AVX2 was detected; the arrays have
        // exactly the lengths read and written.
        unsafe { hash_chunks(prefix, input.as_ptr(), out.as_mut_ptr(), 1) }
    }

    /// Hashes each 64-byte chunk of `src` into the matching 32 bytes of
    /// `dst`. `src.len()` must be a multiple of 256 and twice `dst.len()`.
    fn hash_into(self, prefix: u8, src: &[u8], dst: &mut [u8]) {
        assert!(src.len().is_multiple_of(64 * LANES) && dst.len() * 2 == src.len());
        // SAFETY: AVX2 is present (see `detect`); the lengths were checked
        // and borrowing rules keep the two slices apart.
        unsafe { hash_chunks(prefix, src.as_ptr(), dst.as_mut_ptr(), src.len() / 256) }
    }

    /// Replaces the first half of `buf` with the hashes of its 64-byte
    /// chunks: one tree level up, in place. `buf.len()` must be a multiple
    /// of 256.
    fn hash_in_place(self, prefix: u8, buf: &mut [u8]) {
        assert!(buf.len().is_multiple_of(64 * LANES));
        let p = buf.as_mut_ptr();
        // SAFETY: AVX2 is present; output starts where input does, which
        // `hash_chunks` allows (each group's digests land on input it has
        // already read).
        unsafe { hash_chunks(prefix, p, p, buf.len() / 256) }
    }

    /// Root of the perfect tree over `level`, a power-of-two count of
    /// 32-byte hashes stored back to back; `level` is used as scratch.
    fn reduce(self, level: &mut [u8]) -> Root {
        let mut count = level.len() / 32;
        debug_assert!(count.is_power_of_two() && level.len() == count * 32);
        // One kernel call turns 8 children into 4 parents, so the last two
        // levels (4 → 2 → 1) would leave lanes idle: hash those one by one.
        while count >= 2 * LANES {
            self.hash_in_place(NODE_PREFIX, &mut level[..count * 32]);
            count /= 2;
        }
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

    /// [`super::subtree_root`] for at least 4 leaves (length checked by the
    /// caller). Works chunk by chunk so the level buffer stays in cache.
    pub(super) fn subtree_root(self, data: &[u8]) -> Root {
        let leaves = data.len() / LEAF_SIZE;
        debug_assert!(leaves.is_power_of_two() && leaves >= LANES);
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
    pub(super) fn combine(self, roots: &[Root]) -> Root {
        let mut level = Vec::with_capacity(roots.len() * 32);
        for r in roots {
            level.extend_from_slice(&r.0);
        }
        self.reduce(&mut level)
    }
}

macro_rules! add {
    ($a:expr, $b:expr) => {
        _mm256_add_epi64($a, $b)
    };
}

macro_rules! xor {
    ($a:expr, $b:expr) => {
        _mm256_xor_si256($a, $b)
    };
}

macro_rules! splat {
    ($x:expr) => {
        _mm256_set1_epi64x($x as i64)
    };
}

// Rotations right by 32, 24, 16 and 63 bits of each 64-bit word. Those by
// whole bytes are byte shuffles; `masks` is the pair from `rot_masks`.
macro_rules! rot32 {
    ($x:expr, $masks:ident) => {
        _mm256_shuffle_epi32($x, 0b10_11_00_01)
    };
}

macro_rules! rot24 {
    ($x:expr, $masks:ident) => {
        _mm256_shuffle_epi8($x, $masks.0)
    };
}

macro_rules! rot16 {
    ($x:expr, $masks:ident) => {
        _mm256_shuffle_epi8($x, $masks.1)
    };
}

macro_rules! rot63 {
    ($x:expr, $masks:ident) => {{
        let x = $x;
        // x + x rather than a left shift: additions have more ports.
        _mm256_or_si256(_mm256_srli_epi64(x, 63), _mm256_add_epi64(x, x))
    }};
}

/// Half of G on four columns (or diagonals) `[a, b, c, d]` at once:
/// `a += b + m; d = (d ^ a) >>> rd; c += d; b = (b ^ c) >>> rb`, with the
/// message words of round `r` from position `k` of `SIGMA`.
macro_rules! half_g {
    ($v:ident, $m:ident, $masks:ident, $r:expr, $k:expr, $rot_d:ident, $rot_b:ident,
     [$a0:literal, $b0:literal, $c0:literal, $d0:literal],
     [$a1:literal, $b1:literal, $c1:literal, $d1:literal],
     [$a2:literal, $b2:literal, $c2:literal, $d2:literal],
     [$a3:literal, $b3:literal, $c3:literal, $d3:literal]) => {
        // Constant SIGMA indices let the additions of zero words fold away.
        $v[$a0] = add!(add!($v[$a0], $v[$b0]), $m[SIGMA[$r][$k]]);
        $v[$a1] = add!(add!($v[$a1], $v[$b1]), $m[SIGMA[$r][$k + 2]]);
        $v[$a2] = add!(add!($v[$a2], $v[$b2]), $m[SIGMA[$r][$k + 4]]);
        $v[$a3] = add!(add!($v[$a3], $v[$b3]), $m[SIGMA[$r][$k + 6]]);
        $v[$d0] = $rot_d!(xor!($v[$d0], $v[$a0]), $masks);
        $v[$d1] = $rot_d!(xor!($v[$d1], $v[$a1]), $masks);
        $v[$d2] = $rot_d!(xor!($v[$d2], $v[$a2]), $masks);
        $v[$d3] = $rot_d!(xor!($v[$d3], $v[$a3]), $masks);
        $v[$c0] = add!($v[$c0], $v[$d0]);
        $v[$c1] = add!($v[$c1], $v[$d1]);
        $v[$c2] = add!($v[$c2], $v[$d2]);
        $v[$c3] = add!($v[$c3], $v[$d3]);
        $v[$b0] = $rot_b!(xor!($v[$b0], $v[$c0]), $masks);
        $v[$b1] = $rot_b!(xor!($v[$b1], $v[$c1]), $masks);
        $v[$b2] = $rot_b!(xor!($v[$b2], $v[$c2]), $masks);
        $v[$b3] = $rot_b!(xor!($v[$b3], $v[$c3]), $masks);
    };
}

/// Round `r`: columns, then diagonals. Macros rather than functions: an
/// `#[inline(always)]` helper cannot carry `target_feature`, so its
/// intrinsic calls would each need `unsafe`; expanded here they sit in the
/// AVX2 function and are safe.
macro_rules! round {
    ($v:ident, $m:ident, $masks:ident, $r:expr) => {
        half_g!(
            $v,
            $m,
            $masks,
            $r,
            0,
            rot32,
            rot24,
            [0, 4, 8, 12],
            [1, 5, 9, 13],
            [2, 6, 10, 14],
            [3, 7, 11, 15]
        );
        half_g!(
            $v,
            $m,
            $masks,
            $r,
            1,
            rot16,
            rot63,
            [0, 4, 8, 12],
            [1, 5, 9, 13],
            [2, 6, 10, 14],
            [3, 7, 11, 15]
        );
        half_g!(
            $v,
            $m,
            $masks,
            $r,
            8,
            rot32,
            rot24,
            [0, 5, 10, 15],
            [1, 6, 11, 12],
            [2, 7, 8, 13],
            [3, 4, 9, 14]
        );
        half_g!(
            $v,
            $m,
            $masks,
            $r,
            9,
            rot16,
            rot63,
            [0, 5, 10, 15],
            [1, 6, 11, 12],
            [2, 7, 8, 13],
            [3, 4, 9, 14]
        );
    };
}

/// Byte-shuffle masks for the 24- and 16-bit rotations.
///
/// Passed through `black_box` because, seeing a constant 16-bit rotation,
/// LLVM rewrites it as two word shuffles (`vpshuflw` + `vpshufhw`), which
/// measured about 9% slower overall than one `vpshufb`.
#[target_feature(enable = "avx2")]
#[inline]
fn rot_masks() -> (__m256i, __m256i) {
    core::hint::black_box((
        _mm256_setr_epi8(
            3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10, //
            3, 4, 5, 6, 7, 0, 1, 2, 11, 12, 13, 14, 15, 8, 9, 10,
        ),
        _mm256_setr_epi8(
            2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9, //
            2, 3, 4, 5, 6, 7, 0, 1, 10, 11, 12, 13, 14, 15, 8, 9,
        ),
    ))
}

/// Transposes a 4x4 matrix of 64-bit words held as four row vectors.
#[target_feature(enable = "avx2")]
#[inline]
fn transpose(r: [__m256i; 4]) -> [__m256i; 4] {
    let t0 = _mm256_unpacklo_epi64(r[0], r[1]);
    let t1 = _mm256_unpackhi_epi64(r[0], r[1]);
    let t2 = _mm256_unpacklo_epi64(r[2], r[3]);
    let t3 = _mm256_unpackhi_epi64(r[2], r[3]);
    [
        _mm256_permute2x128_si256(t0, t2, 0x20),
        _mm256_permute2x128_si256(t1, t3, 0x20),
        _mm256_permute2x128_si256(t0, t2, 0x31),
        _mm256_permute2x128_si256(t1, t3, 0x31),
    ]
}

/// Hashes the four 64-byte chunks at `src` as `BLAKE2b-256(prefix ‖ chunk)`
/// into four 32-byte digests at `dst`, reading all of `src` before writing.
///
/// # Safety
///
/// `src` must be valid for reading 256 bytes and `dst` for writing 128; they
/// may overlap.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn hash4_raw(prefix: u8, src: *const u8, dst: *mut u8, masks: (__m256i, __m256i)) {
    // SAFETY: the caller guarantees 256 readable bytes; these loads need no
    // alignment.
    let rows: [__m256i; 8] =
        core::array::from_fn(|i| unsafe { _mm256_loadu_si256(src.add(32 * i).cast()) });
    // rows[2j] and rows[2j + 1] are words 0-3 and 4-7 of chunk j; transposed,
    // d[i] holds word i of all four chunks.
    let [d0, d1, d2, d3] = transpose([rows[0], rows[2], rows[4], rows[6]]);
    let [d4, d5, d6, d7] = transpose([rows[1], rows[3], rows[5], rows[7]]);

    // The prefix byte moves the chunk one byte up: message word i is the
    // top byte of chunk word i - 1 below the low seven bytes of word i.
    let join = |lo: __m256i, hi: __m256i| {
        _mm256_or_si256(_mm256_srli_epi64(lo, 56), _mm256_slli_epi64(hi, 8))
    };
    let zero = _mm256_setzero_si256();
    let m: [__m256i; 16] = [
        _mm256_or_si256(_mm256_slli_epi64(d0, 8), splat!(prefix)),
        join(d0, d1),
        join(d1, d2),
        join(d2, d3),
        join(d3, d4),
        join(d4, d5),
        join(d5, d6),
        join(d6, d7),
        _mm256_srli_epi64(d7, 56),
        zero,
        zero,
        zero,
        zero,
        zero,
        zero,
        zero,
    ];

    let h0 = IV[0] ^ PARAM0;
    // v[12..16]: counter low word, high word, final-block flag, last-node flag.
    let mut v = [
        splat!(h0),
        splat!(IV[1]),
        splat!(IV[2]),
        splat!(IV[3]),
        splat!(IV[4]),
        splat!(IV[5]),
        splat!(IV[6]),
        splat!(IV[7]),
        splat!(IV[0]),
        splat!(IV[1]),
        splat!(IV[2]),
        splat!(IV[3]),
        splat!(IV[4] ^ INPUT_LEN),
        splat!(IV[5]),
        splat!(!IV[6]),
        splat!(IV[7]),
    ];
    round!(v, m, masks, 0);
    round!(v, m, masks, 1);
    round!(v, m, masks, 2);
    round!(v, m, masks, 3);
    round!(v, m, masks, 4);
    round!(v, m, masks, 5);
    round!(v, m, masks, 6);
    round!(v, m, masks, 7);
    round!(v, m, masks, 8);
    round!(v, m, masks, 9);
    round!(v, m, masks, 10);
    round!(v, m, masks, 11);

    // A 32-byte digest is h[0..4]; the other half is never computed.
    let out = transpose([
        xor!(splat!(h0), xor!(v[0], v[8])),
        xor!(splat!(IV[1]), xor!(v[1], v[9])),
        xor!(splat!(IV[2]), xor!(v[2], v[10])),
        xor!(splat!(IV[3]), xor!(v[3], v[11])),
    ]);
    for (i, digest) in out.into_iter().enumerate() {
        // SAFETY: the caller guarantees 128 writable bytes; no alignment
        // needed.
        unsafe { _mm256_storeu_si256(dst.add(32 * i).cast(), digest) };
    }
}

/// Hashes `4 * groups` consecutive 64-byte chunks at `src` into as many
/// consecutive 32-byte digests at `dst`.
///
/// # Safety
///
/// The CPU must support AVX2. `src` must be valid for reading `256 * groups`
/// bytes and `dst` for writing `128 * groups`. They may overlap only with
/// `dst <= src`: then each group's digests land on input already read, which
/// is what lets a tree level be reduced in place.
#[target_feature(enable = "avx2")]
unsafe fn hash_chunks(prefix: u8, src: *const u8, dst: *mut u8, groups: usize) {
    let masks = rot_masks();
    for g in 0..groups {
        // SAFETY: group g lies within the bounds the caller guarantees, and
        // with dst <= src its output ends at or before the input of group
        // g + 1 starts.
        unsafe { hash4_raw(prefix, src.add(256 * g), dst.add(128 * g), masks) }
    }
}
