//! AVX-512 kernel: BLAKE2b-256 of eight Merkle hash inputs at once (see
//! [`super::simd`] for what makes these inputs special).
//!
//! Twice the lanes of the AVX2 kernel, and every rotation is one native
//! instruction (`vprorq`) where AVX2 needs byte shuffles or, for the 63-bit
//! one, three instructions. The last levels of each tree, too small for
//! eight lanes, go to the AVX2 kernel, which every AVX-512 CPU can run.

use core::arch::x86_64::*;

use super::avx2;
use super::simd::{INPUT_LEN, IV, Lanes, PARAM0, SIGMA};

/// Proof that this CPU has AVX-512 F (and so AVX2): the only way to reach
/// the kernel, so the safe tree functions of [`Lanes`] can call it.
#[derive(Clone, Copy)]
pub(super) struct Kernel(avx2::Kernel);

impl Kernel {
    /// The kernel, if this CPU can run it. Cheap enough to call per root:
    /// std runs CPUID once and caches the answer in a static.
    pub(super) fn detect() -> Option<Kernel> {
        if !is_x86_feature_detected!("avx512f") {
            return None;
        }
        avx2::Kernel::detect().map(Kernel)
    }
}

impl Lanes for Kernel {
    const LANES: usize = 8;

    unsafe fn hash_chunks(self, prefix: u8, src: *const u8, dst: *mut u8, groups: usize) {
        // SAFETY: `self` exists only if AVX-512 F was detected; the caller
        // keeps the pointer contract, which is `hash_chunks`'s own.
        unsafe { hash_chunks(prefix, src, dst, groups) }
    }

    fn narrow_tail(self, level: &mut [u8], mut count: usize) -> usize {
        while count >= 2 * avx2::Kernel::LANES {
            self.0
                .hash_in_place(super::NODE_PREFIX, &mut level[..count * 32]);
            count /= 2;
        }
        count
    }
}

macro_rules! add {
    ($a:expr, $b:expr) => {
        _mm512_add_epi64($a, $b)
    };
}

macro_rules! xor {
    ($a:expr, $b:expr) => {
        _mm512_xor_si512($a, $b)
    };
}

macro_rules! splat {
    ($x:expr) => {
        _mm512_set1_epi64($x as i64)
    };
}

// Rotations right of each 64-bit word; native, so they need no masks.
macro_rules! rot32 {
    ($x:expr, $masks:ident) => {
        _mm512_ror_epi64::<32>($x)
    };
}

macro_rules! rot24 {
    ($x:expr, $masks:ident) => {
        _mm512_ror_epi64::<24>($x)
    };
}

macro_rules! rot16 {
    ($x:expr, $masks:ident) => {
        _mm512_ror_epi64::<16>($x)
    };
}

macro_rules! rot63 {
    ($x:expr, $masks:ident) => {
        _mm512_ror_epi64::<63>($x)
    };
}

/// Transposes an 8x8 matrix of 64-bit words held as eight row vectors.
#[target_feature(enable = "avx512f")]
#[inline]
fn transpose(r: [__m512i; 8]) -> [__m512i; 8] {
    // pairs of rows interleaved: 128-bit lane k of t[2i] holds word 2k of
    // rows 2i and 2i + 1, and of t[2i + 1] word 2k + 1
    let t: [__m512i; 8] = core::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_epi64(a, b)
        } else {
            _mm512_unpackhi_epi64(a, b)
        }
    });
    // even lanes, then odd lanes, of two such vectors side by side
    const EVEN: i32 = 0b10_00_10_00;
    const ODD: i32 = 0b11_01_11_01;
    let mut out = [_mm512_setzero_si512(); 8];
    for w in 0..2 {
        // w = 0: words 0, 2, 4, 6; w = 1: words 1, 3, 5, 7
        let u0 = _mm512_shuffle_i64x2::<EVEN>(t[w], t[2 + w]);
        let u1 = _mm512_shuffle_i64x2::<ODD>(t[w], t[2 + w]);
        let v0 = _mm512_shuffle_i64x2::<EVEN>(t[4 + w], t[6 + w]);
        let v1 = _mm512_shuffle_i64x2::<ODD>(t[4 + w], t[6 + w]);
        out[w] = _mm512_shuffle_i64x2::<EVEN>(u0, v0);
        out[4 + w] = _mm512_shuffle_i64x2::<ODD>(u0, v0);
        out[2 + w] = _mm512_shuffle_i64x2::<EVEN>(u1, v1);
        out[6 + w] = _mm512_shuffle_i64x2::<ODD>(u1, v1);
    }
    out
}

/// Hashes the eight 64-byte chunks at `src` as `BLAKE2b-256(prefix ‖ chunk)`
/// into eight 32-byte digests at `dst`, reading all of `src` before writing.
///
/// # Safety
///
/// `src` must be valid for reading 512 bytes and `dst` for writing 256; they
/// may overlap.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn hash8_raw(prefix: u8, src: *const u8, dst: *mut u8) {
    // SAFETY: the caller guarantees 512 readable bytes; these loads need no
    // alignment.
    let rows: [__m512i; 8] =
        core::array::from_fn(|i| unsafe { _mm512_loadu_si512(src.add(64 * i).cast()) });
    // row j is chunk j; transposed, d[i] holds word i of all eight chunks
    let d = transpose(rows);

    // The prefix byte moves the chunk one byte up: message word i is the
    // top byte of chunk word i - 1 below the low seven bytes of word i.
    let join = |lo: __m512i, hi: __m512i| {
        _mm512_or_si512(_mm512_srli_epi64::<56>(lo), _mm512_slli_epi64::<8>(hi))
    };
    let zero = _mm512_setzero_si512();
    let m: [__m512i; 16] = [
        _mm512_or_si512(_mm512_slli_epi64::<8>(d[0]), splat!(prefix)),
        join(d[0], d[1]),
        join(d[1], d[2]),
        join(d[2], d[3]),
        join(d[3], d[4]),
        join(d[4], d[5]),
        join(d[5], d[6]),
        join(d[6], d[7]),
        _mm512_srli_epi64::<56>(d[7]),
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
    let _masks = ();
    rounds!(add, xor, [rot32, rot24, rot16, rot63], v, m, _masks);

    // A 32-byte digest is h[0..4]; the other half is never computed. The
    // transpose's last four rows are padding: each output row holds one
    // digest in its low half.
    let out = transpose([
        xor!(splat!(h0), xor!(v[0], v[8])),
        xor!(splat!(IV[1]), xor!(v[1], v[9])),
        xor!(splat!(IV[2]), xor!(v[2], v[10])),
        xor!(splat!(IV[3]), xor!(v[3], v[11])),
        zero,
        zero,
        zero,
        zero,
    ]);
    for (i, digest) in out.into_iter().enumerate() {
        // SAFETY: the caller guarantees 256 writable bytes; no alignment
        // needed.
        unsafe { _mm256_storeu_si256(dst.add(32 * i).cast(), _mm512_castsi512_si256(digest)) };
    }
}

/// Hashes `8 * groups` consecutive 64-byte chunks at `src` into as many
/// consecutive 32-byte digests at `dst`.
///
/// # Safety
///
/// The CPU must support AVX-512 F. `src` must be valid for reading
/// `512 * groups` bytes and `dst` for writing `256 * groups`. They may
/// overlap only with `dst <= src`: then each group's digests land on input
/// already read.
#[target_feature(enable = "avx512f")]
unsafe fn hash_chunks(prefix: u8, src: *const u8, dst: *mut u8, groups: usize) {
    for g in 0..groups {
        // SAFETY: group g lies within the bounds the caller guarantees, and
        // with dst <= src its output ends at or before the input of group
        // g + 1 starts.
        unsafe { hash8_raw(prefix, src.add(512 * g), dst.add(256 * g)) }
    }
}
