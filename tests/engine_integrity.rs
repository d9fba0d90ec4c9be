//! Integrity through the engine: the scrub, the check's verdicts and what
//! they do to reads, and volume health (a file removed and put back).

mod common;

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use common::{make_sector, open, read_whole};
use sectorfs::engine::{Reference, ScrubOptions, VolumeState};
use sectorfs::merkle::SECTOR_SIZE;

#[test]
fn scrub_verifies_every_sector_records_when_and_finds_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path()));
    let path = dir.path().join("a.vol");
    engine.add_volume(&path, 8).unwrap();
    let sectors: Vec<_> = (0..4).map(make_sector).collect();
    for (root, data) in &sectors {
        engine.write_sector(root, data, Reference::Pin).unwrap();
    }
    let bad = engine.lookup(&sectors[2].0).unwrap().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xAA], bad.slot * SECTOR_SIZE as u64 + 77)
        .unwrap();

    let opts = ScrubOptions {
        interval: Duration::from_secs(3600),
        bytes_per_sec: 10_000_000_000,
    };
    assert!(engine.scrub_pass(opts).unwrap(), "a whole pass");
    for (i, (root, _)) in sectors.iter().enumerate() {
        let s = engine.lookup(root).unwrap().unwrap();
        let checked = engine.meta().checked_at(s.id).unwrap();
        assert_eq!(checked.is_some(), i != 2, "sector {i}: {checked:?}");
    }
    assert_eq!(engine.volume_info(1).unwrap().stats.corrupt, 1);
    assert!(
        engine
            .alerts()
            .get(&format!("corrupt-{}", sectors[2].0))
            .is_some()
    );
    // a corrupt sector fails with EIO from now on; the others read fine
    let mut buf = vec![0u8; SECTOR_SIZE];
    let err = engine.read_sector(&sectors[2].0, 0, &mut buf).unwrap_err();
    assert_eq!(err.errno(), libc::EIO);
    assert!(read_whole(&engine, &sectors[1].0) == sectors[1].1);
    // the cursor went back to the start for the next pass
    assert_eq!(engine.meta().scrub_cursor().unwrap(), 0);

    // the rate is honoured: 4 sectors at 8 MB/s take about 2 s
    let slow = ScrubOptions {
        interval: Duration::from_secs(3600),
        bytes_per_sec: 8_000_000,
    };
    let started = std::time::Instant::now();
    engine.scrub_pass(slow).unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn offline_check_reports_each_volume() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    engine.add_volume(&dir.path().join("a.vol"), 4).unwrap();
    let (root, data) = make_sector(9);
    engine.write_sector(&root, &data, Reference::Pin).unwrap();
    let report = engine.check_offline(None).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.volumes[0].good, 1);
}

#[test]
fn a_removed_file_is_noticed_and_a_returned_one_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(open(dir.path()));
    let a = dir.path().join("a.vol");
    engine.add_volume(&a, 4).unwrap();
    engine.add_volume(&dir.path().join("b.vol"), 4).unwrap();
    let (root, data) = make_sector(10);
    engine.write_sector(&root, &data, Reference::Pin).unwrap();
    let aside = dir.path().join("a.aside");
    std::fs::hard_link(&a, &aside).unwrap();
    std::fs::remove_file(&a).unwrap();
    engine.health_pass();
    assert_eq!(
        engine.volume_info(1).unwrap().state,
        VolumeState::Unavailable
    );
    let mut buf = vec![0u8; SECTOR_SIZE];
    assert_eq!(
        engine.read_sector(&root, 0, &mut buf).unwrap_err().errno(),
        libc::EIO
    );
    // new sectors go to the other volume
    let (r2, d2) = make_sector(11);
    engine.write_sector(&r2, &d2, Reference::Pin).unwrap();
    assert_eq!(engine.lookup(&r2).unwrap().unwrap().volume_id, 2);
    // the file is back: the next pass re-opens it
    std::fs::rename(&aside, &a).unwrap();
    engine.health_pass();
    assert_eq!(engine.volume_info(1).unwrap().state, VolumeState::Ready);
    assert!(read_whole(&engine, &root) == data);

    // a sector freed while its volume is away: its slot is punched out and
    // given back once the volume is back, not at the next start
    let slot = engine.lookup(&root).unwrap().unwrap().slot;
    std::fs::hard_link(&a, &aside).unwrap();
    std::fs::remove_file(&a).unwrap();
    engine.health_pass();
    engine.unpin(&root).unwrap();
    assert_eq!(engine.volume_info(1).unwrap().used, 1, "held until punched");
    std::fs::rename(&aside, &a).unwrap();
    engine.health_pass();
    assert_eq!(engine.volume_info(1).unwrap().used, 0);
    let mut on_disk = vec![1u8; SECTOR_SIZE];
    let f = std::fs::File::open(&a).unwrap();
    f.read_exact_at(&mut on_disk, slot * SECTOR_SIZE as u64)
        .unwrap();
    assert!(on_disk.iter().all(|b| *b == 0), "the freed data is gone");
}
