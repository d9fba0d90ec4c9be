//! Portable path: any CPU, through [`blake2b_simd::many::hash_many`].
//!
//! Used where the AVX2 kernel is unavailable (other CPUs and architectures);
//! `hash_many` still picks the best SIMD it finds. Inputs are laid out as
//! 65-byte records in reusable buffers and a whole tree level of a chunk is
//! fed to one `hash_many` call.

use blake2b_simd::many::{HashManyJob, hash_many};

use super::{CHUNK_LEAVES, LEAF_PREFIX, LEAF_SIZE, NODE_PREFIX, RECORD, Root, params, root_of};

/// Hashes every 65-byte record in `records` with `hash_many`, passing each
/// result with its index to `emit`, in order.
///
/// One `hash_many` call covers the whole level of a chunk: that measured
/// faster than stack batches of 16–128 jobs, and costs one short-lived
/// allocation per level rather than per hash.
fn hash_records(records: &[u8], mut emit: impl FnMut(usize, &[u8])) {
    debug_assert!(records.len().is_multiple_of(RECORD));
    let params = params();
    let mut jobs: Vec<HashManyJob<'_>> = records
        .chunks_exact(RECORD)
        .map(|r| HashManyJob::new(params, r))
        .collect();
    hash_many(jobs.iter_mut());
    for (i, job) in jobs.iter().enumerate() {
        emit(i, job.to_hash().as_bytes());
    }
}

/// Reduces `count` same-level records in `cur` to the root of their tree,
/// using `next` as scratch. Each pass hashes one whole level with one
/// `hash_many` call and writes the results straight into the next level's
/// node records, so no per-hash allocation or intermediate copy is needed.
fn reduce(cur: &mut Vec<u8>, next: &mut Vec<u8>, mut count: usize) -> Root {
    debug_assert!(count.is_power_of_two());
    while count > 1 {
        let half = count / 2;
        next.resize(half * RECORD, 0);
        hash_records(&cur[..count * RECORD], |i, h| {
            let rec = &mut next[(i / 2) * RECORD..(i / 2 + 1) * RECORD];
            rec[0] = NODE_PREFIX;
            let at = 1 + (i % 2) * 32;
            rec[at..at + 32].copy_from_slice(h);
        });
        std::mem::swap(cur, next);
        count = half;
    }
    root_of(&params().hash(&cur[..RECORD]))
}

/// [`super::subtree_root`], its length already checked.
pub(super) fn subtree_root(data: &[u8]) -> Root {
    let leaves = data.len() / LEAF_SIZE;
    let chunk_leaves = leaves.min(CHUNK_LEAVES);
    let mut cur = vec![0u8; chunk_leaves * RECORD];
    let mut next = Vec::with_capacity(chunk_leaves / 2 * RECORD);
    let mut chunk_roots = Vec::with_capacity(leaves / chunk_leaves);
    for chunk in data.chunks_exact(chunk_leaves * LEAF_SIZE) {
        // `reduce` swaps buffers, so restore the leaf buffer's length.
        cur.resize(chunk_leaves * RECORD, 0);
        for (rec, leaf) in cur
            .chunks_exact_mut(RECORD)
            .zip(chunk.chunks_exact(LEAF_SIZE))
        {
            rec[0] = LEAF_PREFIX;
            rec[1..].copy_from_slice(leaf);
        }
        chunk_roots.push(reduce(&mut cur, &mut next, chunk_leaves));
    }
    super::combine_with(&chunk_roots, combine)
}

/// [`super::combine`] for a power-of-two count of roots, at least 2.
pub(super) fn combine(roots: &[Root]) -> Root {
    let count = roots.len() / 2;
    let mut cur = Vec::with_capacity(count * RECORD);
    for pair in roots.chunks_exact(2) {
        cur.push(NODE_PREFIX);
        cur.extend_from_slice(&pair[0].0);
        cur.extend_from_slice(&pair[1].0);
    }
    let mut next = Vec::with_capacity(count / 2 * RECORD);
    reduce(&mut cur, &mut next, count)
}
