//! A sector arriving in pieces (`engine::Upload`, what the mount uses):
//! every write order stores the same bytes, bad data stores nothing and
//! leaves no slot behind, and a slot cut off by a shrink while the data was
//! arriving never ends up owned twice.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{assert_slots_match, make_sector, open, read_whole, wait_job};
use sectorfs::engine::{Engine, Reference, Upload};
use sectorfs::merkle::SECTOR_SIZE;

const MIB: usize = 1 << 20;

fn store(dir: &Path, slots: &[u64]) -> (Arc<Engine>, Vec<u32>) {
    let engine = Arc::new(open(dir));
    let ids = slots
        .iter()
        .enumerate()
        .map(|(i, n)| {
            engine
                .add_volume(&dir.join(format!("v{i}.vol")), *n)
                .unwrap()
        })
        .collect();
    (engine, ids)
}

fn used(engine: &Engine) -> u64 {
    engine.volume_infos().iter().map(|v| v.used).sum()
}

/// Bytes of `slot` in a volume file, as the disk holds them.
fn slot_bytes(path: &Path, slot: u64) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; SECTOR_SIZE];
    let n = f.read_at(&mut buf, slot * SECTOR_SIZE as u64).unwrap();
    buf.truncate(n);
    buf.resize(SECTOR_SIZE, 0);
    buf
}

#[test]
fn every_write_order_stores_the_same_sector() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = store(dir.path(), &[16]);
    // (offset, len) sequences: in order in mount-sized and small pieces,
    // reversed, overlapping, a chunk rewritten after it was sent, and a
    // truncate that cuts sent chunks followed by rewriting them
    let orders: Vec<Vec<(usize, usize)>> = vec![
        (0..4).map(|i| (i * MIB, MIB)).collect(),
        (0..1024).map(|i| (i * 4096, 4096)).collect(),
        (0..32).rev().map(|i| (i * 131072, 131072)).collect(),
        vec![(0, 3 * MIB), (MIB, 3 * MIB), (5, 100), (MIB - 7, 3000)],
        vec![(0, 2 * MIB), (0, MIB), (2 * MIB, 2 * MIB)],
        vec![(1, SECTOR_SIZE - 1), (0, 1)],
    ];
    for (seed, order) in orders.into_iter().enumerate() {
        let (root, data) = make_sector(0x5000 + seed as u64);
        let mut up = Upload::new(engine.clone(), root).unwrap();
        for (off, len) in order {
            up.write(off, &data[off..off + len]).unwrap();
        }
        let stored = up.finish(Reference::Pin).unwrap();
        assert!(stored.new, "order {seed}");
        drop(up);
        assert!(read_whole(&engine, &root) == data, "order {seed}");
    }
    // a truncate while writing zeroes what it cuts, sent chunks included
    let (root, data) = make_sector(0x5100);
    let mut up = Upload::new(engine.clone(), root).unwrap();
    up.write(0, &vec![0xAB; SECTOR_SIZE]).unwrap();
    up.zero_from(MIB + 10).unwrap();
    up.write(MIB + 10, &data[MIB + 10..]).unwrap();
    up.write(0, &data[..MIB + 10]).unwrap();
    up.finish(Reference::Pin).unwrap();
    drop(up);
    assert!(read_whole(&engine, &root) == data, "read back differs");
    assert_slots_match(&engine);
    assert_eq!(used(&engine), 7);
}

#[test]
fn bytes_never_written_read_as_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = store(dir.path(), &[4]);
    let chunk = sectorfs::engine::UPLOAD_CHUNK;
    // an upload dropped after filling every buffer, so the next one is
    // likely to get them back with these bytes in them
    let (dirty_root, _) = make_sector(0x5300);
    let mut dirty = Upload::new(engine.clone(), dirty_root).unwrap();
    dirty.write(0, &vec![0xFF; SECTOR_SIZE]).unwrap();
    drop(dirty);
    // written: a short start of chunk 0, a piece after a gap in chunk 1, a
    // whole chunk 2, the sector's last bytes; everything else never
    let (_, noise) = make_sector(0x5301);
    let pieces = [
        (0, 100),
        (chunk + 5000, 4000),
        (2 * chunk, chunk),
        (SECTOR_SIZE - 10, 10),
    ];
    let mut data = vec![0u8; SECTOR_SIZE];
    for (off, len) in pieces {
        data[off..off + len].copy_from_slice(&noise[off..off + len]);
    }
    let root = sectorfs::merkle::sector_root(&data);
    let mut up = Upload::new(engine.clone(), root).unwrap();
    for (off, len) in pieces {
        up.write(off, &data[off..off + len]).unwrap();
    }
    assert!(up.finish(Reference::Pin).unwrap().new);
    drop(up);
    assert!(read_whole(&engine, &root) == data, "read back differs");
    assert_slots_match(&engine);
}

#[test]
fn bad_data_stores_nothing_and_leaves_no_slot() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, ids) = store(dir.path(), &[4]);
    let (root, data) = make_sector(0x5200);
    let (_, other) = make_sector(0x5201);
    let mut up = Upload::new(engine.clone(), root).unwrap();
    up.write(0, &other).unwrap();
    let err = up.finish(Reference::Pin).unwrap_err();
    assert_eq!(err.errno(), libc::EBADMSG, "{err}");
    assert!(engine.lookup(&root).unwrap().is_none());
    assert_eq!(used(&engine), 0, "the reserved slot is free again");
    // nothing of the bad data can be read back from the volume file
    let path = engine.volume_info(ids[0]).unwrap().path;
    assert!(slot_bytes(&path, 0).iter().all(|b| *b == 0));

    // the same upload, written right, stores after all
    up.write(0, &data).unwrap();
    assert!(up.finish(Reference::Pin).unwrap().new);
    drop(up);
    assert!(read_whole(&engine, &root) == data, "read back differs");
    assert_slots_match(&engine);
}

#[test]
fn an_abandoned_upload_gives_its_slot_back() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, ids) = store(dir.path(), &[4]);
    let (root, data) = make_sector(0x5300);
    let mut up = Upload::new(engine.clone(), root).unwrap();
    up.write(0, &data[..2 * MIB]).unwrap();
    assert_eq!(
        used(&engine),
        1,
        "a slot is reserved once a chunk is complete"
    );
    drop(up);
    assert_eq!(used(&engine), 0);
    let path = engine.volume_info(ids[0]).unwrap().path;
    assert!(slot_bytes(&path, 0).iter().all(|b| *b == 0), "punched");
    assert!(engine.lookup(&root).unwrap().is_none());
}

#[test]
fn a_stored_root_only_gains_a_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = store(dir.path(), &[4]);
    let (root, data) = make_sector(0x5400);
    engine
        .write_sector(&root, &data, Reference::Temp(10))
        .unwrap();
    let mut up = Upload::new(engine.clone(), root).unwrap();
    up.write(0, &data).unwrap();
    let stored = up.finish(Reference::Pin).unwrap();
    assert!(!stored.new);
    drop(up);
    assert_eq!(used(&engine), 1);
    let id = engine.lookup(&root).unwrap().unwrap().id;
    let refs = engine.ref_counts(id).unwrap();
    assert_eq!((refs.pins, refs.temp), (1, 1), "{refs:?}");
}

#[test]
fn a_slot_cut_off_by_a_shrink_is_never_owned_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, ids) = store(dir.path(), &[4, 4]);
    let (a, b) = (ids[0], ids[1]);
    for seed in 0..2 {
        let (root, data) = make_sector(0x5500 + seed);
        engine.write_sector(&root, &data, Reference::Pin).unwrap();
    }
    // reserved in slot 2 of volume a, then a shrinks to 2 slots under it
    let (root, data) = make_sector(0x5510);
    let mut up = Upload::new(engine.clone(), root).unwrap();
    up.write(0, &data[..3 * MIB]).unwrap();
    engine.resize_volume(a, 2).unwrap();
    wait_job(&engine, a, 30);
    assert_eq!(engine.volume_info(a).unwrap().slots, 2);
    up.write(3 * MIB, &data[3 * MIB..]).unwrap();
    assert!(up.finish(Reference::Pin).unwrap().new);
    drop(up);
    let at = engine.lookup(&root).unwrap().unwrap();
    assert_eq!(at.volume_id, b, "stored elsewhere: {at:?}");
    assert!(read_whole(&engine, &root) == data, "read back differs");
    assert_slots_match(&engine);

    // cut off and grown back before the close: still this upload's slot,
    // and no other writer was given it meanwhile
    let (root, data) = make_sector(0x5511);
    let mut up = Upload::new(engine.clone(), root).unwrap();
    engine.resize_volume(a, 3).unwrap();
    up.write(0, &data[..MIB]).unwrap();
    let reserved_in_a = engine.volume_info(a).unwrap().used == 3;
    engine.resize_volume(a, 2).unwrap();
    wait_job(&engine, a, 30);
    engine.resize_volume(a, 4).unwrap();
    wait_job(&engine, a, 30);
    let (r2, d2) = make_sector(0x5512);
    engine.write_sector(&r2, &d2, Reference::Pin).unwrap();
    up.write(MIB, &data[MIB..]).unwrap();
    up.finish(Reference::Pin).unwrap();
    drop(up);
    assert!(reserved_in_a, "the upload reserved slot 2 of volume a");
    assert!(read_whole(&engine, &root) == data, "read back differs");
    assert!(read_whole(&engine, &r2) == d2, "read back differs");
    assert_slots_match(&engine);
}

/// A volume removed while an upload holds a slot of it, and another added
/// meanwhile, or a volume set read-only meanwhile: the close stores the
/// sector elsewhere, and no other sector is touched. A new volume never
/// gets a removed one's id (the upload's slot would be read as its own).
#[test]
fn a_volume_removed_or_made_read_only_under_an_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, ids) = store(dir.path(), &[4, 4]);
    let (a, b) = (ids[0], ids[1]);

    // removed, and a new volume added, while the upload holds slot 0 of b
    engine.set_readonly(a, true).unwrap();
    let (root, data) = make_sector(0x5600);
    let mut up = Upload::new(engine.clone(), root).unwrap();
    up.write(0, &data[..MIB]).unwrap();
    assert_eq!(engine.volume_info(b).unwrap().used, 1, "reserved in b");
    engine.remove_volume(b, false).unwrap();
    wait_job(&engine, b, 30);
    assert!(engine.volume_info(b).is_err(), "b is gone");
    let c = engine.add_volume(&dir.path().join("c.vol"), 4).unwrap();
    assert!(c > b, "a new volume gets a new id, not {c}");
    let (w, wd) = make_sector(0x5601);
    engine.write_sector(&w, &wd, Reference::Pin).unwrap();
    assert_eq!(engine.lookup(&w).unwrap().unwrap().volume_id, c);
    up.write(MIB, &data[MIB..]).unwrap();
    assert!(up.finish(Reference::Pin).unwrap().new);
    drop(up);
    let at = engine.lookup(&root).unwrap().unwrap();
    assert_eq!(at.volume_id, c, "stored elsewhere: {at:?}");
    assert!(read_whole(&engine, &root) == data, "read back differs");
    assert!(
        read_whole(&engine, &w) == wd,
        "the other sector was touched"
    );
    assert_slots_match(&engine);

    // set read-only while the upload holds a slot of it
    engine.set_readonly(a, false).unwrap();
    let (root, data) = make_sector(0x5602);
    let mut up = Upload::new(engine.clone(), root).unwrap();
    up.write(0, &data[..MIB]).unwrap();
    assert_eq!(engine.volume_info(a).unwrap().used, 1, "reserved in a");
    engine.set_readonly(a, true).unwrap();
    up.write(MIB, &data[MIB..]).unwrap();
    assert!(up.finish(Reference::Pin).unwrap().new);
    drop(up);
    let at = engine.lookup(&root).unwrap().unwrap();
    assert_eq!(at.volume_id, c, "stored elsewhere: {at:?}");
    assert_eq!(engine.volume_info(a).unwrap().used, 0);
    assert!(slot_bytes(&dir.path().join("v0.vol"), 0) == vec![0; SECTOR_SIZE]);
    assert!(read_whole(&engine, &root) == data, "read back differs");
    assert_slots_match(&engine);

    // ids stay unique across a restart
    drop(engine);
    let engine = Arc::new(open(dir.path()));
    let d = engine.add_volume(&dir.path().join("d.vol"), 4).unwrap();
    assert!(d > c, "a new volume gets a new id, not {d}");
}
