//! Reading whole slots and hashing them on every core: a rescan of a
//! volume file (which slots hold data, and what roots) and the verification
//! of known sectors. Offline work on plain files: an import's `--verify`
//! and siad rescan, and the redeclare of a volume.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::mpsc;

use super::SECTOR_BYTES;
use crate::error::Result;
use crate::merkle::{Root, SECTOR_SIZE, sector_root};

/// One slot to read and hash: slot `slot` of `files[file]`, and what the
/// caller wants back with its root.
pub struct SlotJob<T> {
    pub file: usize,
    pub slot: u64,
    pub tag: T,
}

/// Threads that hash: one per core.
pub fn hashing_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Reads and hashes every slot `work` names on `threads` threads. `done`
/// gets each job's tag with the slot's root (or the read's error) on the
/// calling thread, in no particular order; `work` runs on the calling
/// thread too, so both may use what cannot cross threads. An error from
/// `done` stops the work and is returned.
pub fn hash_slots<T: Send>(
    files: &[File],
    threads: usize,
    work: impl Iterator<Item = Result<SlotJob<T>>>,
    mut done: impl FnMut(T, io::Result<Root>) -> Result<()>,
) -> Result<()> {
    let threads = threads.max(1);
    let (job_tx, job_rx) = mpsc::sync_channel::<SlotJob<T>>(threads * 2);
    let job_rx = Mutex::new(job_rx);
    std::thread::scope(|scope| {
        let (out_tx, out_rx) = mpsc::channel::<(T, io::Result<Root>)>();
        for _ in 0..threads {
            let out_tx = out_tx.clone();
            let job_rx = &job_rx;
            scope.spawn(move || {
                let mut buf = vec![0u8; SECTOR_SIZE];
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let result = files[job.file]
                        .read_exact_at(&mut buf, job.slot * SECTOR_BYTES)
                        .map(|()| sector_root(&buf));
                    if out_tx.send((job.tag, result)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(out_tx);
        let run = || -> Result<()> {
            for job in work {
                let mut job = job?;
                // hand the job over, taking results while the queue is full
                loop {
                    match job_tx.try_send(job) {
                        Ok(()) => break,
                        Err(mpsc::TrySendError::Full(back)) => {
                            job = back;
                            let (tag, root) = out_rx.recv().expect("a hashing thread answers");
                            done(tag, root)?;
                        }
                        Err(mpsc::TrySendError::Disconnected(_)) => {
                            unreachable!("hashing threads stop only when the jobs end")
                        }
                    }
                }
                while let Ok((tag, root)) = out_rx.try_recv() {
                    done(tag, root)?;
                }
            }
            Ok(())
        };
        let result = run();
        // no more jobs: the threads finish what they hold and stop
        drop(job_tx);
        for (tag, root) in out_rx {
            if result.is_ok() {
                done(tag, root)?;
            }
        }
        result
    })
}

/// The slots of a volume file of `slots` slots that hold any data, as
/// ranges in order: holes (never written, or punched) are skipped without
/// reading them, by `SEEK_DATA`/`SEEK_HOLE`. A file system that cannot
/// tell reports everything as data.
pub fn allocated_slots(file: &File, slots: u64) -> io::Result<Vec<std::ops::Range<u64>>> {
    let end = slots * SECTOR_BYTES;
    let mut ranges: Vec<std::ops::Range<u64>> = Vec::new();
    let mut offset = 0u64;
    while offset < end {
        let Some(data) = seek(file, offset, libc::SEEK_DATA)? else {
            break;
        };
        if data >= end {
            break;
        }
        let hole = seek(file, data, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
        let first = data / SECTOR_BYTES;
        let last = hole.div_ceil(SECTOR_BYTES);
        match ranges.last_mut() {
            Some(r) if r.end >= first => r.end = r.end.max(last),
            _ => ranges.push(first..last),
        }
        offset = last * SECTOR_BYTES;
    }
    Ok(ranges)
}

/// `lseek`; `None` when there is no data (or hole) from `offset` on.
fn seek(file: &File, offset: u64, whence: i32) -> io::Result<Option<u64>> {
    // SAFETY: lseek on an fd we own; it moves only this descriptor's offset,
    // which positioned reads (pread) never use.
    let at = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
    if at < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(at as u64))
}

/// Rescans a volume file: reads and hashes every allocated slot (holes
/// cost no reads) on all cores, calling `found(slot, root)` for each on the
/// calling thread, in no particular order. Returns the slots read.
pub fn scan_volume(
    file: &File,
    slots: u64,
    mut found: impl FnMut(u64, io::Result<Root>) -> Result<()>,
) -> Result<u64> {
    let ranges = allocated_slots(file, slots).map_err(|e| {
        crate::error::Error::io("cannot find the allocated slots of a volume file", e)
    })?;
    let files = [file.try_clone().map_err(|e| {
        crate::error::Error::io("cannot open a volume file again for its rescan", e)
    })?];
    let mut read = 0;
    let work = ranges.into_iter().flatten().map(|slot| {
        Ok(SlotJob {
            file: 0,
            slot,
            tag: slot,
        })
    });
    hash_slots(&files, hashing_threads(), work, |slot, root| {
        read += 1;
        found(slot, root)
    })?;
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Data at scattered slots of a sparse file is found, holes are not,
    /// and a slot only partly written counts as allocated.
    #[test]
    fn allocated_slots_skip_holes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.dat");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        f.set_len(20 * SECTOR_BYTES).unwrap();
        let sector = vec![7u8; SECTOR_SIZE];
        for slot in [1u64, 2, 7, 19] {
            f.write_all_at(&sector, slot * SECTOR_BYTES).unwrap();
        }
        f.write_all_at(&[1u8; 4096], 11 * SECTOR_BYTES + 8192)
            .unwrap();
        f.sync_all().unwrap();
        let got: Vec<u64> = allocated_slots(&f, 20)
            .unwrap()
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(got, vec![1, 2, 7, 11, 19]);
        let mut roots = Vec::new();
        let read = scan_volume(&f, 20, |slot, root| {
            roots.push((slot, root.unwrap()));
            Ok(())
        })
        .unwrap();
        assert_eq!(read, 5);
        roots.sort();
        assert_eq!(roots[0], (1, sector_root(&sector)));
        assert_eq!(roots[3].0, 11);
        assert_ne!(roots[3].1, sector_root(&vec![0u8; SECTOR_SIZE]));
    }
}
