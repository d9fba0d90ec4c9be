//! `/sectors`: writing, reading, stat, xattrs, unlink and every errno.

use std::io::Write;

use super::harness::{Mount, close, errno, sector};
use sectorfs::merkle::{SECTOR_SIZE, sector_root};

#[test]
fn write_read_stat_and_remove() {
    let m = Mount::start(&[]);
    let data = sector(1);
    let root = m.put(&data);
    let path = m.sector_path(&root);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), SECTOR_SIZE as u64);
    assert_eq!(std::os::unix::fs::MetadataExt::nlink(&meta), 1);
    let listed: Vec<String> = std::fs::read_dir(m.path("sectors"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed, vec![root.to_string()]);
    std::fs::remove_file(&path).unwrap();
    assert!(!path.exists());
    assert_eq!(m.read("volumes/1/used"), "0\n");
}

#[test]
fn bad_writes_store_nothing() {
    let m = Mount::start(&[]);
    let data = sector(2);
    let root = sector_root(&data);
    // bad name: EINVAL at create
    let e = std::fs::write(m.path("sectors/nothex"), &data).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    // short file: EINVAL at close
    let mut f = std::fs::File::create(m.sector_path(&root)).unwrap();
    f.write_all(&data[..1000]).unwrap();
    assert_eq!(errno(&close(f).unwrap_err()), libc::EINVAL);
    // wrong data: EBADMSG at close
    let mut f = std::fs::File::create(m.sector_path(&root)).unwrap();
    f.write_all(&sector(3)).unwrap();
    assert_eq!(errno(&close(f).unwrap_err()), libc::EBADMSG);
    // past 4 MiB: EFBIG
    let mut f = std::fs::File::create(m.sector_path(&root)).unwrap();
    f.write_all(&data).unwrap();
    assert_eq!(errno(&f.write_all(b"x").unwrap_err()), libc::EFBIG);
    assert_eq!(errno(&close(f).unwrap_err()), libc::EFBIG);
    assert_eq!(std::fs::read_dir(m.path("sectors")).unwrap().count(), 0);
    assert_eq!(m.read("volumes/1/used"), "0\n");
}
