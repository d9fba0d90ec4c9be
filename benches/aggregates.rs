//! Aggregates and health (issue 18): what reading the store-wide totals
//! and the aggregates costs through a mount, what keeping them costs a
//! revision, and the background pass's rate.
//!
//! - `df` and `cat /status` on a synthetic store of `BENCH_AGG_SECTORS`
//!   sectors (default 5,000,000): target 10 ms each, beside the same on a
//!   plain directory;
//! - `getfattr -d` of one contract and of `/contracts` with
//!   `BENCH_AGG_CONTRACTS` contracts (default 10,000) holding
//!   `BENCH_AGG_ENTRIES` entries (default 1,000,000): 10 ms each;
//! - `sectorfs contracts --unhealthy` (some contracts hold a corrupt
//!   sector): 1 s;
//! - a revision replacing 1,000 entries with and without its aggregates
//!   (in-process): at most 1.2x;
//! - the background pass after a volume holding `BENCH_AGG_PASS_ENTRIES`
//!   entries (default 250,000) goes unavailable, in entries per second,
//!   beside reading that volume's copies (the floor of any pass).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::daemon::{BIN, Daemon};
use common::*;
use sectorfs::engine::{ContractEdit, Engine, Options, Placement};
use sectorfs::merkle::Root;
use sectorfs::meta::{Meta, VolumeHealth, WITHOUT_CONTRACT_AGGREGATES};

fn options() -> Options {
    Options {
        placement: Placement::FillFirst,
        default_volume_slots: 0,
        ..Options::default()
    }
}

/// A store of `sectors` pinned synthetic sectors on one volume, and
/// `contracts` contracts of `entries` entries in all; `corrupt` sectors
/// spread over them recorded corrupt. The roots of the first 2,000.
fn make_store(data: &Path, sectors: u64, contracts: u64, entries: u64, corrupt: u64) -> Vec<Root> {
    let engine = Engine::open(data, options()).unwrap();
    std::fs::create_dir_all(data.join("volumes")).unwrap();
    let mut rng = Rng::new(0xA66_2E6A);
    let mut first = Vec::new();
    let mut vols = Vec::new();
    let mut done = 0;
    while done < sectors {
        // a volume file of at most 4 TiB (file systems cap a file's size)
        let slots = (sectors - done).min(VOLUME_SLOTS);
        let vol = engine
            .add_volume(
                &data.join("volumes").join(format!("big-{}.vol", vols.len())),
                slots,
            )
            .unwrap();
        // its (empty) pass done: none is due when the daemon starts
        engine.settle_aggregates().unwrap();
        vols.push(vol);
        let mut slot = 0;
        while slot < slots {
            let n = (slots - slot).min(500_000);
            let roots = rng.roots(n);
            if first.len() < 2000 {
                first.extend(roots.iter().take(2000 - first.len()).copied());
            }
            engine
                .meta()
                .insert_synthetic(vol, slot, &roots, 1_700_000_000)
                .unwrap();
            slot += n;
        }
        done += slots;
    }
    if contracts > 0 {
        engine
            .meta()
            .insert_synthetic_contracts(contracts, entries / contracts, 1, sectors)
            .unwrap();
    }
    for k in 0..corrupt {
        let id = 1 + (k * 7919) % sectors;
        let vol = vols[((id - 1) / VOLUME_SLOTS) as usize];
        engine
            .meta()
            .set_copy_corrupt(id as i64, vol, true)
            .unwrap();
    }
    engine.meta().checkpoint().unwrap();
    first
}

/// Slots of each synthetic volume: 4 TiB.
const VOLUME_SLOTS: u64 = 1 << 20;

/// Best wall time of `passes` runs of a command (its output discarded;
/// it must succeed).
fn time_cmd(passes: usize, prog: &str, args: &[&str], path: &Path) -> Duration {
    best(passes, || {
        let t = Instant::now();
        let out = Command::new(prog).args(args).arg(path).output().unwrap();
        let took = t.elapsed();
        assert!(
            out.status.success(),
            "{prog} {args:?} {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        took
    })
}

fn beside(what: &str, d: Duration, yard: &str, y: Duration, limit_ms: f64) -> Row {
    Row {
        what: what.into(),
        figure: ms(d),
        yardstick: format!("{yard} {}", ms(y)),
        ratio: format!("{:.2}x", d.as_secs_f64() / y.as_secs_f64().max(1e-9)),
        target: format!("<= {limit_ms} ms"),
        met: d.as_secs_f64() * 1e3 <= limit_ms,
    }
}

fn main() {
    let sectors = env_u64("BENCH_AGG_SECTORS", 5_000_000).max(2000);
    let contracts = env_u64("BENCH_AGG_CONTRACTS", 10_000).max(1);
    let entries = env_u64("BENCH_AGG_ENTRIES", 1_000_000).max(contracts);
    let pass_entries = env_u64("BENCH_AGG_PASS_ENTRIES", 250_000).max(1000);
    let dir = tempdir();
    let data = dir.path().join("data");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    eprintln!(
        "recording {} synthetic sectors, {} contracts, {} entries...",
        fmt_count(sectors),
        fmt_count(contracts),
        fmt_count(entries)
    );
    let roots = make_store(&data, sectors, contracts, entries, 50);
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "a plain file\n").unwrap();
    let mut rows = Vec::new();

    let mut daemon = Daemon::sectorfs(&data, &mnt, &dir.path().join("mount.log"));
    // the first look at the volumes records their health: nothing changed,
    // no pass
    std::thread::sleep(Duration::from_secs(2));
    let n = fmt_count(sectors);
    let df = time_cmd(7, "df", &[], &mnt);
    let df_plain = time_cmd(7, "df", &[], dir.path());
    rows.push(beside(
        &format!("df, {n} sectors"),
        df,
        "df of the plain fs",
        df_plain,
        10.0,
    ));
    let status = time_cmd(7, "cat", &[], &mnt.join("status"));
    let cat_plain = time_cmd(7, "cat", &[], &plain);
    rows.push(beside(
        &format!("cat /status, {n} sectors"),
        status,
        "cat of a plain file",
        cat_plain,
        10.0,
    ));
    let c = format!(
        "{} contracts, {} entries",
        fmt_count(contracts),
        fmt_count(entries)
    );
    let gf_plain = time_cmd(7, "getfattr", &["-d"], &plain);
    let one = time_cmd(
        7,
        "getfattr",
        &["-d"],
        &mnt.join("contracts").join("bench-1"),
    );
    rows.push(beside(
        &format!("getfattr -d of one contract ({c})"),
        one,
        "of a plain file",
        gf_plain,
        10.0,
    ));
    let all = time_cmd(7, "getfattr", &["-d"], &mnt.join("contracts"));
    rows.push(beside(
        &format!("getfattr -d of /contracts ({c})"),
        all,
        "of a plain file",
        gf_plain,
        10.0,
    ));
    let listed = time_cmd(3, BIN, &["contracts", "--unhealthy", "--mount"], &mnt);
    let unhealthy = String::from_utf8(
        Command::new(BIN)
            .args(["contracts", "--unhealthy", "--mount"])
            .arg(&mnt)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .lines()
    .count()
    .saturating_sub(1);
    rows.push(limit_row(
        &format!("sectorfs contracts --unhealthy ({c}; {unhealthy} listed)"),
        ms(listed),
        listed.as_secs_f64(),
        1.0,
        "<= 1 s".into(),
    ));
    daemon.stop();

    // a revision replacing 1,000 entries, with and without its aggregates
    let meta = Meta::open(&data.join("sectorfs.db")).unwrap();
    let lists = [&roots[..1000], &roots[1000..2000]];
    let mut k = 0;
    let mut revise = || {
        k += 1;
        let t = Instant::now();
        meta.revise_contract("bench-revision", lists[k % 2], ContractEdit::Replace)
            .unwrap();
        t.elapsed()
    };
    let mut with = Vec::new();
    let mut without = Vec::new();
    for _ in 0..9 {
        WITHOUT_CONTRACT_AGGREGATES.store(false, Ordering::Relaxed);
        with.push(revise());
        WITHOUT_CONTRACT_AGGREGATES.store(true, Ordering::Relaxed);
        without.push(revise());
    }
    WITHOUT_CONTRACT_AGGREGATES.store(false, Ordering::Relaxed);
    let (with, _) = median_p99(&mut with);
    let (without, _) = median_p99(&mut without);
    let r = with.as_secs_f64() / without.as_secs_f64();
    rows.push(Row {
        what: format!("revision replacing 1,000 entries (median, {n} sectors)"),
        figure: ms(with),
        yardstick: format!("without aggregates {}", ms(without)),
        ratio: format!("{r:.2}x"),
        target: "<= 1.2x".into(),
        met: r <= 1.2,
    });
    drop(meta);

    // the background pass after a volume of pass_entries entries goes
    // unavailable
    let pass_dir = dir.path().join("pass");
    eprintln!(
        "recording {} sectors for the pass...",
        fmt_count(pass_entries)
    );
    make_store(&pass_dir, pass_entries, pass_entries / 100, pass_entries, 0);
    let meta = Meta::open(&pass_dir.join("sectorfs.db")).unwrap();
    let t = Instant::now();
    let mut read = 0;
    let mut from = 0;
    loop {
        let batch = meta.sectors_in_volume(1, from, 1000).unwrap();
        let Some(last) = batch.last() else { break };
        from = last.slot + 1;
        read += batch.len();
    }
    let scan = t.elapsed();
    assert_eq!(read as u64, pass_entries);
    let health = |out| {
        [VolumeHealth {
            id: 1,
            out,
            device: Some(1),
        }]
    };
    meta.sync_volume_health(&health(false)).unwrap();
    while meta.health_pass_step(1000).unwrap().is_some() {}
    meta.sync_volume_health(&health(true)).unwrap();
    let t = Instant::now();
    let mut changed = 0;
    while let Some(step) = meta.health_pass_step(1000).unwrap() {
        changed += step.changed;
    }
    let pass = t.elapsed();
    assert_eq!(changed, pass_entries, "every sector lost its copy");
    let rate = pass_entries as f64 / pass.as_secs_f64();
    let floor = pass_entries as f64 / scan.as_secs_f64();
    rows.push(Row {
        what: format!(
            "background pass, a volume of {} entries unavailable",
            fmt_count(pass_entries)
        ),
        figure: format!("{rate:.0} entries/s ({})", ms(pass)),
        yardstick: format!("reading its copies {floor:.0} /s"),
        ratio: format!("{:.2}x", rate / floor),
        target: "proportional to the entries".into(),
        met: true,
    });
    print_table(&rows);
}
