//! Per-volume limits: `weight`, `max_sectors` and `min_free` stop new
//! sectors there, and `df` agrees.

use super::harness::{Mount, errno, sector};
use super::loopfs::LoopFs;

/// A store with two empty 16-slot volumes, sectors filling the first first.
fn two_volumes() -> Mount {
    let m = Mount::start(&["--default-volume", "0", "--placement", "fill-first"]);
    for name in ["a.vol", "b.vol"] {
        let path = m.scratch().join(name);
        m.write("volumes/add", &format!("{} 16\n", path.display()))
            .unwrap();
    }
    m
}

#[test]
fn max_sectors_caps_a_volume_and_df_agrees() {
    let m = two_volumes();
    assert_eq!(m.read("volumes/1/max_sectors"), "0\n");
    assert_eq!(m.df_free(), 32);
    m.write("volumes/1/max_sectors", "2\n").unwrap();
    assert_eq!(m.read("volumes/1/max_sectors"), "2\n");
    assert_eq!(m.df_free(), 18, "2 slots of volume 1, 16 of volume 2");
    for i in 0..4 {
        m.put(&sector(i));
    }
    assert_eq!((m.used(1), m.used(2)), (2, 2));
    assert_eq!(m.df_free(), 14);
    let totals = &m.status_json()["totals"];
    assert_eq!(totals["free_writable"], 14);
    m.write("volumes/1/max_sectors", "0\n").unwrap();
    assert_eq!(m.df_free(), 28, "no cap: every free slot again");
}

#[test]
fn weight_zero_takes_no_new_sectors_and_df_agrees() {
    let mut m = two_volumes();
    m.write("volumes/1/weight", "0\n").unwrap();
    assert_eq!(m.df_free(), 16);
    for i in 0..3 {
        m.put(&sector(i));
    }
    assert_eq!((m.used(1), m.used(2)), (0, 3));
    m.remount();
    assert_eq!(m.read("volumes/1/weight"), "0\n", "kept across a restart");
    assert_eq!(m.df_free(), 13);
    m.write("volumes/1/weight", "3\n").unwrap();
    assert_eq!(m.df_free(), 29);
    m.put(&sector(9));
    assert_eq!(m.used(1), 1);
}

/// A volume on a small file system: more slots than the disk holds warns
/// of the shortfall; a `min_free` at or above its free space stops new
/// sectors there (`ENOSPC` with no other volume), and `df` shows none.
#[test]
fn min_free_stops_new_sectors_on_a_full_file_system() {
    let Some(fs) = LoopFs::sized_or_skip(64 << 20) else {
        return;
    };
    let m = Mount::start(&["--default-volume", "0"]);
    let vol = fs.mnt.join("v.vol");
    m.write("volumes/add", &format!("{} 64\n", vol.display()))
        .unwrap();
    let status = m.read("status");
    assert!(
        status.contains("warning") && status.contains("MiB short"),
        "64 slots (256 MiB) on a 64 MiB file system warn: {status}"
    );
    assert_eq!(m.df_free(), 64);
    m.write("volumes/1/min_free", "1GiB\n").unwrap();
    assert_eq!(m.read("volumes/1/min_free"), "1GiB\n");
    assert_eq!(m.df_free(), 0);
    let e = m.try_put(&sector(1)).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC);
    m.write("volumes/1/min_free", "4MiB\n").unwrap();
    let free = m.df_free();
    assert!(
        free > 0 && free < 16,
        "as many slots as the file system holds above 4 MiB: {free}"
    );
    m.put(&sector(1));
    assert_eq!(m.used(1), 1);
    m.write("volumes/1/min_free", "0\n").unwrap();
    assert_eq!(m.df_free(), 63);
}

#[test]
fn hostile_limits_are_refused_and_change_nothing() {
    let m = two_volumes();
    for (file, bad) in [
        ("weight", "-1"),
        ("weight", "1.5"),
        ("weight", "99999999999"),
        ("weight", "heavy"),
        ("max_sectors", "-3"),
        ("max_sectors", "18446744073709551615"),
        ("max_sectors", "3 4"),
        ("min_free", "1B"),
        ("min_free", "99999999999999EiB"),
        ("min_free", "9999999999999"),
        ("min_free", "\u{0}"),
    ] {
        let before = m.read(&format!("volumes/1/{file}"));
        let e = m
            .write(&format!("volumes/1/{file}"), &format!("{bad}\n"))
            .unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "{file} {bad:?}");
        assert_eq!(
            m.read(&format!("volumes/1/{file}")),
            before,
            "{file} {bad:?}"
        );
    }
    assert_eq!(m.df_free(), 32);
}
