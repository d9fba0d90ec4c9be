//! AVX2 kernel: BLAKE2b-256 of four Merkle hash inputs at once (see
//! [`super::simd`] for what makes these inputs special).

use core::arch::x86_64::*;

use super::simd::{INPUT_LEN, IV, Lanes, PARAM0, SIGMA};

/// Proof that this CPU has AVX2: the only way to reach the kernel, so the
/// safe tree functions of [`Lanes`] can call it.
#[derive(Clone, Copy)]
pub(super) struct Kernel(());

impl Kernel {
    /// The kernel, if this CPU can run it. Cheap enough to call per root:
    /// std runs CPUID once and caches the answer in a static.
    pub(super) fn detect() -> Option<Kernel> {
        is_x86_feature_detected!("avx2").then_some(Kernel(()))
    }
}

impl Lanes for Kernel {
    const LANES: usize = 4;

    unsafe fn hash_chunks(self, prefix: u8, src: *const u8, dst: *mut u8, groups: usize) {
        // SAFETY: `self` exists only if AVX2 was detected; the caller keeps
        // the pointer contract, which is `hash_chunks`'s own.
        unsafe { hash_chunks(prefix, src, dst, groups) }
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
    let mut v = initial_state!(splat);
    rounds!(add, xor, [rot32, rot24, rot16, rot63], v, m, masks);

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
