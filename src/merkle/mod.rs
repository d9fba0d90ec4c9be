//! Sia sector Merkle roots.
//!
//! A sector's root is what renters and hosts agree on, so it must be
//! bit-for-bit Sia's definition: 64-byte leaves hashed as
//! `BLAKE2b-256(0x00 ‖ leaf)`, interior nodes as `BLAKE2b-256(0x01 ‖ left ‖ right)`,
//! over a perfect binary tree of 65,536 leaves.
//!
//! Every leaf and every node input is 65 bytes, i.e. one BLAKE2b block, so a
//! tree costs about four times the compressions of hashing the sector as one
//! stream. Two paths share that work out, chosen at run time:
//!
//! - [`avx512`] on x86-64 CPUs with AVX-512, else [`avx2`] on those with
//!   AVX2: kernels specialised for these one-block inputs ([`simd`]) hash
//!   eight or four at a time straight from the sector bytes (a leaf and a
//!   node's two children are both 64 contiguous bytes) and reduce each
//!   level in place;
//! - [`many`], anywhere else: 65-byte records fed a level at a time to
//!   `blake2b_simd`'s `hash_many`.
//!
//! Both work in chunks of [`CHUNK_LEAVES`] leaves so their buffers stay in
//! cache, and both are tested against the same vectors.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use blake2b_simd::Params;

#[cfg(target_arch = "x86_64")]
#[macro_use]
mod simd;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod many;

#[cfg(target_arch = "x86_64")]
use simd::Lanes;

/// Bytes in a sector; Sia fixes this at 4 MiB.
pub const SECTOR_SIZE: usize = 4 << 20;

/// Bytes in a Merkle leaf; Sia fixes this at 64.
pub const LEAF_SIZE: usize = 64;

/// Domain-separation prefix of a leaf hash input.
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of a node hash input.
const NODE_PREFIX: u8 = 0x01;
/// Length of a hash input record: a prefix byte plus 64 bytes (a leaf, or
/// two child hashes). Both kinds fit in a single BLAKE2b block.
const RECORD: usize = 1 + LEAF_SIZE;
/// Leaves hashed per chunk before reducing it to one root. 1,024 leaves are
/// 64 KiB of data and 32 KiB of hashes (AVX2) or ~100 KiB of record buffers
/// (portable), which stay cache-resident while the chunk's node levels are
/// hashed. Also the most roots [`combine`] reduces at once.
const CHUNK_LEAVES: usize = 1024;

/// A 32-byte Merkle root (or any node hash of the tree).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Root(pub [u8; 32]);

impl Root {
    /// The raw 32 bytes, for storage and wire formats.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads a root from raw bytes (e.g. a database blob); `None` unless the
    /// slice is exactly 32 bytes, so a truncated blob cannot pass as a root.
    pub fn from_slice(b: &[u8]) -> Option<Root> {
        b.try_into().ok().map(Root)
    }

    fn to_hex(self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        out
    }
}

impl fmt::Display for Root {
    /// 64 lowercase hex characters, the form Sia tools print and parse.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        // The buffer holds only ASCII hex digits.
        f.pad(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Root {
    /// Same hex as `Display`, so logs and assertion failures are comparable
    /// with roots printed elsewhere.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not exactly 64 lowercase hex characters.
///
/// Holds the offending input (truncated if long) so the message names it.
#[derive(Debug, thiserror::Error)]
#[error("invalid Merkle root {0}: expected exactly 64 lowercase hexadecimal characters (0-9, a-f)")]
pub struct ParseRootError(String);

impl ParseRootError {
    /// Longest prefix of the bad input quoted in the message.
    const SHOWN_CHARS: usize = 80;

    fn new(input: &str) -> Self {
        let count = input.chars().count();
        let shown = if count > Self::SHOWN_CHARS {
            let head: String = input.chars().take(Self::SHOWN_CHARS).collect();
            format!("{head:?}… ({count} characters)")
        } else {
            format!("{input:?} ({count} characters)")
        };
        ParseRootError(shown)
    }
}

impl FromStr for Root {
    type Err = ParseRootError;

    /// Strict on purpose: roots are compared and stored as text, so only the
    /// canonical form (what `Display` prints) is accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        fn nibble(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            }
        }
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(ParseRootError::new(s));
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(hi), Some(lo)) => *o = (hi << 4) | lo,
                _ => return Err(ParseRootError::new(s)),
            }
        }
        Ok(Root(out))
    }
}

/// BLAKE2b-256 parameters, built once and shared: every job is seeded from
/// them, and `Params` (a ~250-byte struct plus CPU feature detection) is not
/// worth rebuilding per hash.
fn params() -> &'static Params {
    static PARAMS: OnceLock<Params> = OnceLock::new();
    PARAMS.get_or_init(|| {
        let mut p = Params::new();
        p.hash_length(32);
        p
    })
}

fn root_of(hash: &blake2b_simd::Hash) -> Root {
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.as_bytes());
    Root(out)
}

/// Root of a full 4 MiB sector. Panics if `data.len() != SECTOR_SIZE`.
pub fn sector_root(data: &[u8]) -> Root {
    assert_eq!(
        data.len(),
        SECTOR_SIZE,
        "sector_root needs exactly one 4 MiB sector, got {} bytes",
        data.len()
    );
    subtree_root(data)
}

/// Root of a subtree over `data`, whose length must be a power-of-two
/// multiple of 64 (64, 128, ... 4 MiB). Lets the FUSE layer hash 1 MiB chunks
/// as they arrive and combine them later.
///
/// Panics if the length is not of that form: any other length has no place
/// in the sector tree, so it is a caller bug.
pub fn subtree_root(data: &[u8]) -> Root {
    let leaves = data.len() / LEAF_SIZE;
    assert!(
        data.len().is_multiple_of(LEAF_SIZE) && leaves.is_power_of_two(),
        "subtree_root needs a power-of-two number of 64-byte leaves, got {} bytes",
        data.len()
    );
    // A kernel hashes eight or four leaves per step: smaller subtrees go to
    // a narrower path.
    #[cfg(target_arch = "x86_64")]
    {
        if leaves >= avx512::Kernel::LANES
            && let Some(kernel) = avx512::Kernel::detect()
        {
            return kernel.subtree_root(data);
        }
        if leaves >= avx2::Kernel::LANES
            && let Some(kernel) = avx2::Kernel::detect()
        {
            return kernel.subtree_root(data);
        }
    }
    many::subtree_root(data)
}

/// node hash = BLAKE2b-256(0x01 ‖ left ‖ right)
pub fn node_hash(left: &Root, right: &Root) -> Root {
    let mut rec = [0u8; RECORD];
    rec[0] = NODE_PREFIX;
    rec[1..33].copy_from_slice(&left.0);
    rec[33..].copy_from_slice(&right.0);
    root_of(&params().hash(&rec))
}

/// Combine `n` equal-size adjacent subtree roots (n a power of two) into
/// their parent root.
///
/// Panics unless `roots.len()` is a power of two (which excludes 0): other
/// counts do not form a perfect tree; use [`meta_root`] for those.
pub fn combine(roots: &[Root]) -> Root {
    assert!(
        roots.len().is_power_of_two(),
        "combine needs a power-of-two number of roots, got {}",
        roots.len()
    );
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(kernel) = avx512::Kernel::detect() {
            return combine_with(roots, |r| kernel.combine(r));
        }
        if let Some(kernel) = avx2::Kernel::detect() {
            return combine_with(roots, |r| kernel.combine(r));
        }
    }
    combine_with(roots, many::combine)
}

/// [`combine`] given `base`, which combines a power-of-two count of 2 to
/// [`CHUNK_LEAVES`] roots.
fn combine_with(roots: &[Root], base: impl Fn(&[Root]) -> Root + Copy) -> Root {
    debug_assert!(roots.len().is_power_of_two());
    if let [only] = roots {
        return *only;
    }
    if roots.len() > CHUNK_LEAVES {
        // Bound the scratch memory (a 1 TB host has 262,144 sector roots):
        // reduce chunk by chunk, then combine the chunk roots.
        let parents: Vec<Root> = roots.chunks_exact(CHUNK_LEAVES).map(base).collect();
        return combine_with(&parents, base);
    }
    base(roots)
}

/// Meta root over sector roots, as above (split at the largest power of two
/// for odd counts). Empty input -> `Root([0; 32])`.
///
/// The sector roots are already-hashed leaves: they are paired with
/// [`node_hash`] only, never re-hashed as leaves. For a count `n` that is not
/// a power of two the left subtree is the first `2^k < n` roots (largest such
/// `k`) and the right subtree the rest.
pub fn meta_root(roots: &[Root]) -> Root {
    match roots.len() {
        0 => Root([0; 32]),
        n if n.is_power_of_two() => combine(roots),
        n => {
            // Not a power of two, so its top bit is the largest power below it.
            let split = 1 << n.ilog2();
            node_hash(&combine(&roots[..split]), &meta_root(&roots[split..]))
        }
    }
}

/// Plain one-hash-at-a-time reference version, used by tests and the
/// benchmark as a yardstick.
///
/// Deliberately shares nothing with the fast path but the parameters, so
/// agreement between the two is meaningful.
pub fn sector_root_naive(data: &[u8]) -> Root {
    assert_eq!(
        data.len(),
        SECTOR_SIZE,
        "sector_root_naive needs exactly one 4 MiB sector, got {} bytes",
        data.len()
    );
    let mut level: Vec<Root> = data
        .chunks_exact(LEAF_SIZE)
        .map(|leaf| {
            root_of(
                &params()
                    .to_state()
                    .update(&[LEAF_PREFIX])
                    .update(leaf)
                    .finalize(),
            )
        })
        .collect();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|pair| {
                root_of(
                    &params()
                        .to_state()
                        .update(&[NODE_PREFIX])
                        .update(&pair[0].0)
                        .update(&pair[1].0)
                        .finalize(),
                )
            })
            .collect();
    }
    level[0]
}

/// Roots appear in JSON (status, check reports) as their hex text.
impl serde::Serialize for Root {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// ... and are read back from it (an import's report).
impl<'de> serde::Deserialize<'de> for Root {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Root, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ZERO_ROOT: &str = "50ed59cecd5ed3ca9e65cec0797202091dbba45272dafa3faa4e27064eedd52c";

    fn root(hex: &str) -> Root {
        hex.parse().unwrap()
    }

    /// A named way to compute [`subtree_root`].
    type SubtreePath = (&'static str, fn(&[u8]) -> Root);
    /// A named way to compute [`combine`].
    type CombinePath = (&'static str, fn(&[Root]) -> Root);

    /// Every path this CPU can take to a subtree root, by name, with the
    /// fewest leaves it takes: the portable one always, the AVX2 and AVX-512
    /// ones where the CPU has them (`subtree_root` picks the widest, so the
    /// others are only reached from here).
    // Off x86-64 nothing is pushed, so `mut` would be unused there.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    fn subtree_paths() -> Vec<(SubtreePath, usize)> {
        let mut paths: Vec<(SubtreePath, usize)> = vec![(("portable", many::subtree_root), 1)];
        #[cfg(target_arch = "x86_64")]
        {
            if avx2::Kernel::detect().is_some() {
                let path: SubtreePath =
                    ("avx2", |d| avx2::Kernel::detect().unwrap().subtree_root(d));
                paths.push((path, avx2::Kernel::LANES));
            }
            if avx512::Kernel::detect().is_some() {
                let path: SubtreePath = ("avx512", |d| {
                    avx512::Kernel::detect().unwrap().subtree_root(d)
                });
                paths.push((path, avx512::Kernel::LANES));
            }
        }
        let names: Vec<&str> = paths.iter().map(|((name, _), _)| *name).collect();
        eprintln!("subtree paths this CPU can take: {}", names.join(", "));
        paths
    }

    /// As [`subtree_paths`], for [`combine`].
    // Off x86-64 nothing is pushed, so `mut` would be unused there.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    fn combine_paths() -> Vec<CombinePath> {
        let mut paths: Vec<CombinePath> = vec![("portable", |r| combine_with(r, many::combine))];
        #[cfg(target_arch = "x86_64")]
        {
            if avx2::Kernel::detect().is_some() {
                paths.push(("avx2", |r| {
                    let kernel = avx2::Kernel::detect().unwrap();
                    combine_with(r, |r| kernel.combine(r))
                }));
            }
            if avx512::Kernel::detect().is_some() {
                paths.push(("avx512", |r| {
                    let kernel = avx512::Kernel::detect().unwrap();
                    combine_with(r, |r| kernel.combine(r))
                }));
            }
        }
        paths
    }

    /// Checks `sector_root` and every path against a known root.
    fn assert_sector_root(data: &[u8], hex: &str) {
        assert_eq!(sector_root(data), root(hex));
        for ((name, path), _) in subtree_paths() {
            assert_eq!(path(data), root(hex), "{name} path");
        }
    }

    /// Deterministic noise, so failures reproduce.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn zero_sector() {
        let data = vec![0u8; SECTOR_SIZE];
        assert_sector_root(&data, ZERO_ROOT);
        // The yardstick must agree with Sia too, not just with the fast path.
        assert_eq!(sector_root_naive(&data), root(ZERO_ROOT));
    }

    #[test]
    fn first_byte_set() {
        let mut data = vec![0u8; SECTOR_SIZE];
        data[0] = 1;
        assert_sector_root(
            &data,
            "8c20a2c90a733a5139cc57e45755322e304451c3434b0c0a0aad87f2f89a44ab",
        );
    }

    #[test]
    fn last_byte_set() {
        let mut data = vec![0u8; SECTOR_SIZE];
        data[SECTOR_SIZE - 1] = 1;
        assert_sector_root(
            &data,
            "d0ab6691d76750618452e920386e5f6f98fdd1219a70a06f06ef622ac6c6373c",
        );
    }

    #[test]
    fn counting_bytes() {
        let data: Vec<u8> = (0..SECTOR_SIZE).map(|i| i as u8).collect();
        assert_sector_root(
            &data,
            "84d0672b204f38469dbb818bcb3caa7391f7781cbf84bce0482b2fd2c2d50938",
        );
    }

    /// Every subtree size, 1 leaf to a sector, so that each path's chunking
    /// and its switch to one-at-a-time hashing near the top are crossed.
    #[test]
    fn paths_agree_on_every_subtree_size() {
        let data = noise(SECTOR_SIZE, 0x5EC7_0A5F);
        for k in 0..=16 {
            let sub = &data[..LEAF_SIZE << k];
            let want = many::subtree_root(sub);
            assert_eq!(subtree_root(sub), want, "{} leaves", 1 << k);
            for ((name, path), fewest) in subtree_paths() {
                if 1 << k >= fewest {
                    assert_eq!(path(sub), want, "{name} path, {} leaves", 1 << k);
                }
            }
        }
    }

    #[test]
    fn combine_paths_agree() {
        let bytes = noise(32 * 4 * CHUNK_LEAVES, 7);
        let roots: Vec<Root> = bytes
            .chunks_exact(32)
            .map(|b| Root::from_slice(b).unwrap())
            .collect();
        for k in 0..=12 {
            let r = &roots[..1 << k];
            let want = rec_node_root(r);
            assert_eq!(combine(r), want, "{} roots", 1 << k);
            for (name, path) in combine_paths() {
                assert_eq!(path(r), want, "{name} path, {} roots", 1 << k);
            }
        }
    }

    /// Sia's own vectors (go.sia.tech/core `TestMetaRoot`): 32 roots that are
    /// all-zero *hashes*. (32 copies of the zero-sector root give a different
    /// value, 5aae05eb…, which is simply the root of 128 MiB of zeros.)
    #[test]
    fn meta_root_vectors() {
        let mut roots = vec![Root([0; 32]); 32];
        assert_eq!(
            meta_root(&roots),
            root("1c23727030051d1bba1c887273addac2054afbd6926daddef6740f4f8bf1fb7f")
        );
        roots[0].0[0] = 1;
        assert_eq!(
            meta_root(&roots),
            root("c5da05749139505704ea18a5d92d46427f652ac79c5f5712e4aefb68e20dffb8")
        );
        // 32 zero sectors form one perfect tree, so their meta root is the
        // root of that tree built from node hashes alone.
        let zero_sectors = vec![root(ZERO_ROOT); 32];
        let mut level = zero_sectors.clone();
        while level.len() > 1 {
            level = level
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
        }
        assert_eq!(meta_root(&zero_sectors), level[0]);
    }

    /// Sia's recursive definition, one node hash at a time.
    fn rec_node_root(roots: &[Root]) -> Root {
        match roots.len() {
            0 => Root([0; 32]),
            1 => roots[0],
            n => {
                let mut split = 1;
                while split * 2 < n {
                    split *= 2;
                }
                node_hash(
                    &rec_node_root(&roots[..split]),
                    &rec_node_root(&roots[split..]),
                )
            }
        }
    }

    #[test]
    fn meta_root_matches_recursive_definition() {
        let roots: Vec<Root> = (0..300u32)
            .map(|i| Root(std::array::from_fn(|j| (i * 131 + j as u32 * 7) as u8)))
            .collect();
        for n in (0..=70).chain([127, 128, 129, 255, 256, 257, 300]) {
            assert_eq!(
                meta_root(&roots[..n]),
                rec_node_root(&roots[..n]),
                "n = {n}"
            );
        }
    }

    #[test]
    fn meta_root_small_counts() {
        let r: Vec<Root> = (0..7u8).map(|i| Root([i; 32])).collect();
        assert_eq!(meta_root(&[]), Root([0; 32]));
        assert_eq!(meta_root(&r[..1]), r[0]);
        assert_eq!(meta_root(&r[..2]), node_hash(&r[0], &r[1]));
        assert_eq!(
            meta_root(&r[..3]),
            node_hash(&node_hash(&r[0], &r[1]), &r[2])
        );
        // 7 = 4 + (2 + 1)
        let left = combine(&r[..4]);
        let right = node_hash(&node_hash(&r[4], &r[5]), &r[6]);
        assert_eq!(meta_root(&r), node_hash(&left, &right));
    }

    #[test]
    fn combine_matches_node_hash() {
        let r: Vec<Root> = (0..64u8).map(|i| Root([i; 32])).collect();
        let mut level = r.clone();
        while level.len() > 1 {
            level = level
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
        }
        assert_eq!(combine(&r), level[0]);
        assert_eq!(combine(&r[..1]), r[0]);
        // Above CHUNK_LEAVES roots `combine` works chunk by chunk.
        let many: Vec<Root> = (0..4 * CHUNK_LEAVES as u32)
            .map(|i| Root(std::array::from_fn(|j| (i >> (j % 4 * 8)) as u8)))
            .collect();
        assert_eq!(combine(&many), rec_node_root(&many));
    }

    #[test]
    fn subtrees_combine_to_sector_root() {
        let data: Vec<u8> = (0..SECTOR_SIZE).map(|i| (i * 7 + i / 4096) as u8).collect();
        let quarters: Vec<Root> = data.chunks_exact(1 << 20).map(subtree_root).collect();
        assert_eq!(combine(&quarters), sector_root(&data));
    }

    #[test]
    fn small_subtrees() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 31) as u8).collect();
        let leaf = |l: &[u8]| root_of(&params().to_state().update(&[0]).update(l).finalize());
        assert_eq!(subtree_root(&data[..64]), leaf(&data[..64]));
        assert_eq!(
            subtree_root(&data[..128]),
            node_hash(&leaf(&data[..64]), &leaf(&data[64..128]))
        );
        for size in [256, 512, 1024, 2048, 4096] {
            let halves = [
                subtree_root(&data[..size / 2]),
                subtree_root(&data[size / 2..size]),
            ];
            assert_eq!(subtree_root(&data[..size]), combine(&halves));
        }
    }

    #[test]
    #[should_panic(expected = "power-of-two number of 64-byte leaves")]
    fn subtree_rejects_non_power_of_two() {
        subtree_root(&[0u8; 192]);
    }

    #[test]
    #[should_panic(expected = "exactly one 4 MiB sector")]
    fn sector_root_rejects_short_input() {
        sector_root(&[0u8; 1 << 20]);
    }

    #[test]
    fn hex_round_trip() {
        let r = Root(std::array::from_fn(|i| (i * 37 + 5) as u8));
        let s = r.to_string();
        assert_eq!(s.len(), 64);
        assert!(s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        assert_eq!(s.parse::<Root>().unwrap(), r);
        assert_eq!(format!("{r:?}"), s);
        assert_eq!(root(ZERO_ROOT).to_string(), ZERO_ROOT);
        assert_eq!(Root::from_slice(r.as_bytes()), Some(r));
        assert_eq!(Root::from_slice(&[0u8; 31]), None);
        assert_eq!(Root::from_slice(&[0u8; 33]), None);
    }

    #[test]
    fn rejects_bad_strings() {
        let upper = ZERO_ROOT.to_uppercase();
        let mut one_upper = ZERO_ROOT.to_string();
        one_upper.replace_range(63..64, "C");
        let with_g = format!("g{}", &ZERO_ROOT[1..]);
        let bad = [
            upper.as_str(),
            one_upper.as_str(),
            &ZERO_ROOT[..63],
            &format!("{ZERO_ROOT}0"),
            with_g.as_str(),
            "",
            &format!(" {}", &ZERO_ROOT[1..]),
            &format!("é{}", &ZERO_ROOT[2..]),
        ];
        for s in bad {
            let err = s.parse::<Root>().unwrap_err();
            assert!(err.to_string().contains("64 lowercase"), "{err}");
        }
        let long = "x".repeat(10_000);
        let msg = long.parse::<Root>().unwrap_err().to_string();
        assert!(msg.len() < 300, "{msg}");
        assert!(msg.contains("10000 characters"), "{msg}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]
        #[test]
        fn fast_matches_naive(
            edits in prop::collection::vec((0..SECTOR_SIZE, any::<u8>()), 1..8)
        ) {
            let mut data = vec![0u8; SECTOR_SIZE];
            for (at, byte) in edits {
                data[at] = byte;
            }
            let want = sector_root_naive(&data);
            prop_assert_eq!(sector_root(&data), want);
            for ((name, path), _) in subtree_paths() {
                prop_assert_eq!(path(&data), want, "{} path", name);
            }
        }
    }

    /// `kernel`'s hashes of the `LANES` 64-byte chunks of `input`, each
    /// against blake2b_simd's.
    #[cfg(target_arch = "x86_64")]
    fn check_kernel<K: Lanes>(kernel: K, prefix: u8, input: &[u8]) -> Result<(), TestCaseError> {
        let input = &input[..64 * K::LANES];
        let mut out = vec![0u8; 32 * K::LANES];
        kernel.hash_group(prefix, input, &mut out);
        for (chunk, digest) in input.chunks_exact(64).zip(out.chunks_exact(32)) {
            let want = params()
                .to_state()
                .update(&[prefix])
                .update(chunk)
                .finalize();
            prop_assert_eq!(digest, want.as_bytes());
        }
        Ok(())
    }

    #[cfg(target_arch = "x86_64")]
    proptest! {
        /// Each kernel alone, against blake2b_simd, for the tree's two
        /// prefixes and any other byte.
        #[test]
        fn kernels_match_blake2b(
            input in prop::collection::vec(any::<u8>(), 512),
            prefix in prop_oneof![Just(LEAF_PREFIX), Just(NODE_PREFIX), any::<u8>()],
        ) {
            if let Some(kernel) = avx2::Kernel::detect() {
                check_kernel(kernel, prefix, &input)?;
            }
            if let Some(kernel) = avx512::Kernel::detect() {
                check_kernel(kernel, prefix, &input)?;
            }
        }
    }
}
