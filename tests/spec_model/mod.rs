//! Model-based test: random sequences of operations — sector writes (good,
//! wrong root, short, oversized, duplicate) in `/sectors` and `/temp/<h>`,
//! `rm` of sectors, contract replace / append / rename / delete (valid and
//! refused), `ln` and `rm` of temp entries, mkdir / rmdir in `/temp`,
//! height changes, volume add and read-only, clean remount and kill -9 +
//! remount — each step checked against a small in-memory model of what the
//! spec (`interface.md`) says must be true afterwards: the `/sectors`
//! listing, every sector's bytes, `st_nlink` and reference xattrs,
//! fill-first placement and one slot per sector, every contract's list,
//! `/temp`, the height, each volume's `used`, `slots` and `readonly`, and
//! `df`; and every refused call's errno against the model's.
//!
//! Shared by two drivers: through a real mount (`tests/mount/model.rs`)
//! and in-process against the file system's semantics layer
//! (`tests/model_inprocess.rs`). A failing case shrinks to a minimal
//! sequence of operations (printed with the seed that found it). Bounded by
//! default; longer runs with `SECTORFS_MODEL_CASES` and `SECTORFS_MODEL_OPS`,
//! and a run is repeated with `SECTORFS_MODEL_SEED=<seed>`.

// each test binary uses its part
#![allow(dead_code, unused_imports)]

mod case;
mod driver;
mod ops;
mod state;
mod want;

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

pub use case::Case;
pub use driver::{Driver, Open};
pub use ops::{How, Op, Pick, op_strategy, pool};
pub use want::{REFUSED, Refusal, errno};

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Runs `ops` on a fresh store, checking everything after each.
pub fn run_case<D: Driver>(ops: &[Op], ops_run: &AtomicU64) -> Result<(), String> {
    let mut case = Case::<D>::new();
    case.check(true).map_err(|e| format!("fresh store: {e}"))?;
    for (i, op) in ops.iter().enumerate() {
        ops_run.fetch_add(1, Ordering::Relaxed);
        let all_bytes = (i + 1) % D::ALL_BYTES_EVERY == 0 || i + 1 == ops.len();
        case.apply(op)
            .and_then(|()| {
                case.check(all_bytes)
                    .map_err(|e| format!("after {op:?}: {e}"))
            })
            .map_err(|e| {
                format!(
                    "step {} of {}: {e}\nmodel: {:?}\nlog tail:\n{}",
                    i + 1,
                    ops.len(),
                    case.model,
                    case.d.log_tail()
                )
            })?;
    }
    Ok(())
}

/// Random cases (`SECTORFS_MODEL_CASES` of up to `SECTORFS_MODEL_OPS`
/// operations), shrunk on failure; prints what ran.
pub fn operations_match_the_model<D: Driver>() {
    let cases: u32 = env_number("SECTORFS_MODEL_CASES", D::CASES);
    let max_ops: usize = env_number("SECTORFS_MODEL_OPS", D::OPS);
    let seed: u64 = env_number("SECTORFS_MODEL_SEED", rand::random());
    let config = Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        // a shrink step is a whole case: bound the time it may take
        max_shrink_time: env_number("SECTORFS_MODEL_SHRINK_SECS", 300u32) * 1000,
        ..Config::default()
    };
    pool();
    let started = Instant::now();
    let runs = AtomicU64::new(0);
    let ops_run = AtomicU64::new(0);
    let mut runner = TestRunner::new(config);
    let strategy = proptest::collection::vec(op_strategy(), 1..=max_ops);
    let result = runner.run(&strategy, |ops| {
        runs.fetch_add(1, Ordering::Relaxed);
        run_case::<D>(&ops, &ops_run).map_err(TestCaseError::fail)
    });
    let summary = format!(
        "model: {} cases, {} operations {} ({} calls refused with the expected errno), the \
         whole state checked against the model after each ({:.1}s, seed {seed})",
        runs.load(Ordering::Relaxed),
        ops_run.load(Ordering::Relaxed),
        D::THROUGH,
        REFUSED.get(),
        started.elapsed().as_secs_f64()
    );
    crate::common::reliability::record(&summary);
    if let Err(e) = result {
        panic!("{e}\n{summary}\nrerun with SECTORFS_MODEL_SEED={seed}");
    }
}

/// The model's two tests for a driver: `operations_match_the_model` and
/// `model_regressions`.
macro_rules! model_tests {
    ($driver:ty) => {
        #[test]
        fn operations_match_the_model() {
            $crate::spec_model::operations_match_the_model::<$driver>();
        }

        #[test]
        fn model_regressions() {
            $crate::spec_model::model_regressions::<$driver>();
        }
    };
}
pub(crate) use model_tests;

/// Minimal sequences the model once found, kept as they shrank.
pub fn model_regressions<D: Driver>() {
    let ops_run = AtomicU64::new(0);
    let cases: Vec<(&str, Vec<Op>)> = vec![
        (
            "an empty /temp/<h> made with mkdir survives a clean remount",
            vec![Op::Mkdir { dh: 1 }, Op::Remount],
        ),
        (
            "an empty /temp/<h> made with mkdir survives kill -9",
            vec![Op::Mkdir { dh: 2 }, Op::KillRemount, Op::Rmdir { dh: 2 }],
        ),
        (
            "an emptied /temp/<h> stays, across a remount, until the height passes it",
            vec![
                Op::TempPut {
                    seed: Pick::Any(0),
                    dh: 3,
                    how: How::Good,
                },
                Op::TempUnlink {
                    pick: None,
                    seed: 0,
                    dh: 3,
                },
                Op::Remount,
                Op::SetHeight { dh: 3 },
                Op::Remount,
            ],
        ),
        (
            "bad data under a new name in a full store: EBADMSG or ENOSPC, nothing stored",
            vec![
                Op::Put {
                    seed: 2,
                    how: How::Good,
                },
                Op::Put {
                    seed: 1,
                    how: How::Good,
                },
                Op::Put {
                    seed: 0,
                    how: How::Good,
                },
                Op::Put {
                    seed: 0,
                    how: How::WrongRoot(3),
                },
            ],
        ),
        (
            "a sector freed by a revision while its name is cached is gone at once, and \
             stored again is read anew",
            vec![
                Op::Put {
                    seed: 0,
                    how: How::Good,
                },
                Op::Replace {
                    id: 0,
                    seeds: vec![Pick::Any(0)],
                },
                Op::Unpin { seed: Pick::Any(0) },
                Op::Put {
                    seed: 1,
                    how: How::Good,
                },
                Op::Replace {
                    id: 0,
                    seeds: vec![Pick::Any(1)],
                },
                Op::Put {
                    seed: 0,
                    how: How::Good,
                },
            ],
        ),
        (
            "a temp entry's names go when the height passes it, and the sector stored \
             again is read anew",
            vec![
                Op::TempPut {
                    seed: Pick::Any(0),
                    dh: 1,
                    how: How::Good,
                },
                Op::SetHeight { dh: 1 },
                Op::Put {
                    seed: 0,
                    how: How::Good,
                },
            ],
        ),
    ];
    for (what, ops) in cases {
        if let Err(e) = run_case::<D>(&ops, &ops_run) {
            panic!("{what}: {ops:?}\n{e}");
        }
    }
}
