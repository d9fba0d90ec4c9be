//! Volumes that describe themselves: the sidecar beside each volume file,
//! checked at every open and by the health probe.

use std::path::{Path, PathBuf};

use super::harness::{Mount, errno, read_uncached, sector, wait_for, write_file};

/// A store whose only volume is `<scratch>/disk/v.vol` (the directory a
/// disk would be mounted on), holding `n` sectors in a contract.
fn store_on_a_disk(n: u64) -> (Mount, PathBuf, Vec<sectorfs::merkle::Root>) {
    let m = Mount::start(&["--default-volume", "0"]);
    let disk = m.scratch().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let vol = disk.join("v.vol");
    m.write("volumes/add", &format!("{} 16\n", vol.display()))
        .unwrap();
    let roots: Vec<_> = (0..n).map(|i| m.put(&sector(i))).collect();
    let list: String = roots.iter().map(|r| format!("{r}\n")).collect();
    write_file(&m.path("contracts/c1"), list.as_bytes()).unwrap();
    (m, vol, roots)
}

fn sidecar(vol: &Path) -> serde_json::Value {
    let mut name = vol.as_os_str().to_os_string();
    name.push(".sectorfs");
    serde_json::from_slice(&std::fs::read(name).unwrap()).unwrap()
}

#[test]
fn a_new_volume_has_a_sidecar_naming_it_and_its_store() {
    let (m, vol, _) = store_on_a_disk(1);
    let s = sidecar(&vol);
    assert_eq!(
        s["volume_uuid"].as_str().unwrap(),
        m.read("volumes/1/uuid").trim()
    );
    assert_eq!(s["slots"], 16);
    assert_eq!(s["store_uuid"].as_str().unwrap().len(), 36);
}

/// An empty mount point where the disk was: unavailable with an alert
/// naming the expected uuid, nothing dropped; the disk back: served again
/// without a remount.
#[test]
fn an_empty_mount_point_is_unavailable_and_the_disk_back_returns() {
    let (mut m, vol, roots) = store_on_a_disk(3);
    let uuid = m.read("volumes/1/uuid").trim().to_string();
    m.unmount();
    let disk = vol.parent().unwrap();
    let away = m.scratch().join("disk.away");
    std::fs::rename(disk, &away).unwrap();
    std::fs::create_dir(disk).unwrap();
    m.mount();
    assert_eq!(m.read("volumes/1/state"), "unavailable\n");
    let status = m.read("status");
    assert!(
        status.contains(&uuid) && status.contains("found none"),
        "the alert names the expected uuid: {status}"
    );
    for r in &roots {
        assert_eq!(m.nlink(r), 2, "pin and contract entry are kept");
        let e = read_uncached(&m.sector_path(r)).unwrap_err();
        assert_eq!(errno(&e), libc::EIO);
    }
    assert_eq!(m.read("contracts/c1").lines().count(), 3);
    assert!(
        std::fs::read_dir(disk).unwrap().next().is_none(),
        "nothing is written to the empty mount point"
    );
    std::fs::remove_dir(disk).unwrap();
    std::fs::rename(&away, disk).unwrap();
    wait_for("the volume back", 30, || {
        m.read("volumes/1/state") == "ready\n"
    });
    for (i, r) in roots.iter().enumerate() {
        assert_eq!(read_uncached(&m.sector_path(r)).unwrap(), sector(i as u64));
    }
}

/// Another volume's sidecar at the path while mounted (another disk): the
/// health probe takes it out of service, the alert names both uuids; its
/// own sidecar back: in service again.
#[test]
fn a_foreign_sidecar_takes_the_volume_out_until_its_own_is_back() {
    let (m, vol, roots) = store_on_a_disk(2);
    let mut name = vol.as_os_str().to_os_string();
    name.push(".sectorfs");
    let own = std::fs::read(&name).unwrap();
    let mut other = sidecar(&vol);
    let stranger = "00000000-1111-4222-8333-444444444444";
    other["volume_uuid"] = stranger.into();
    std::fs::write(&name, serde_json::to_vec(&other).unwrap()).unwrap();
    wait_for("the volume out of service", 30, || {
        m.read("volumes/1/state") == "unavailable\n"
    });
    let uuid = m.read("volumes/1/uuid").trim().to_string();
    let status = m.read("status");
    assert!(
        status.contains(&uuid) && status.contains(stranger),
        "the alert names both uuids: {status}"
    );
    assert_eq!(m.nlink(&roots[0]), 2);
    std::fs::write(&name, own).unwrap();
    wait_for("the volume back", 30, || {
        m.read("volumes/1/state") == "ready\n"
    });
    assert_eq!(read_uncached(&m.sector_path(&roots[1])).unwrap(), sector(1));
}

/// A store made before sidecars (its volume rows say none was written)
/// gets them at its first open.
#[test]
fn an_older_store_gets_its_sidecars_at_first_open() {
    let (mut m, vol, roots) = store_on_a_disk(1);
    m.unmount();
    let mut name = vol.as_os_str().to_os_string();
    name.push(".sectorfs");
    std::fs::remove_file(&name).unwrap();
    let db = rusqlite::Connection::open(m.data.join("sectorfs.db")).unwrap();
    db.execute("UPDATE volumes SET sidecar = 0", []).unwrap();
    drop(db);
    m.mount();
    assert_eq!(m.read("volumes/1/state"), "ready\n");
    assert_eq!(
        sidecar(&vol)["volume_uuid"].as_str().unwrap(),
        m.read("volumes/1/uuid").trim()
    );
    assert_eq!(read_uncached(&m.sector_path(&roots[0])).unwrap(), sector(0));
}
