//! Sector files open for writing by the thousand under a small memory
//! budget: opens past the cap are refused with EMFILE, a write that can get
//! no memory fails with ENOBUFS and its close stores nothing, every other
//! file stores, and the daemon's memory stays within the budget.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sectorfs::merkle::{self, Root, SECTOR_SIZE};

use crate::harness::{Mount, Rng, close, errno};

const CHUNK: usize = 256 << 10;
const CHUNKS: usize = SECTOR_SIZE / CHUNK;
const FILES: usize = 2000;
const MAX_UPLOADS: usize = 1200;
const BUDGET_MIB: u64 = 64;
/// What the daemon holds besides the budget: its own code, SQLite's cache,
/// the FUSE threads' buffers, a writing thread per upload with a slot
/// (each a few pages of stack) and the per-upload state.
const MARGIN_MIB: u64 = 64;

/// Sector contents that cost the test little to name: file `f` is its own
/// first chunk followed by fifteen chunks shared by every file, so one
/// 256 KiB hash per file gives its root.
struct Contents {
    shared: Vec<Vec<u8>>,
    shared_roots: Vec<Root>,
}

impl Contents {
    fn new() -> Contents {
        let mut rng = Rng::new(0x0b0f);
        let shared: Vec<Vec<u8>> = (1..CHUNKS).map(|_| rng.bytes(CHUNK)).collect();
        let shared_roots = shared.iter().map(|c| merkle::subtree_root(c)).collect();
        Contents {
            shared,
            shared_roots,
        }
    }

    fn first(f: usize) -> Vec<u8> {
        Rng::new(0x5eed_0000 + f as u64).bytes(CHUNK)
    }

    fn root(&self, f: usize) -> Root {
        let mut roots = vec![merkle::subtree_root(&Self::first(f))];
        roots.extend_from_slice(&self.shared_roots);
        merkle::combine(&roots)
    }

    fn chunk(&self, f: usize, c: usize) -> Vec<u8> {
        match c {
            0 => Self::first(f),
            c => self.shared[c - 1].clone(),
        }
    }
}

/// How a file is written: each round writes one chunk of every file.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Pattern {
    /// Chunk r in round r, whole: what cp does.
    InOrder,
    /// Chunk 15 - r in round r: out of order, but each chunk whole.
    Reversed,
    /// Chunk r in round r, its second half first: every chunk stays in
    /// memory until the close.
    HalvesSwapped,
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Lets this process hold every file open at once.
fn raise_open_files(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
    assert!(
        lim.rlim_cur >= want,
        "RLIMIT_NOFILE is at most {}",
        lim.rlim_max
    );
}

#[test]
fn thousands_of_uploads_stay_within_the_memory_budget() {
    raise_open_files(FILES as u64 + 256);
    let m = Mount::start(&[
        "--default-volume",
        "8GiB",
        "--upload-memory",
        &format!("{BUDGET_MIB}MiB"),
        "--max-uploads",
        &MAX_UPLOADS.to_string(),
    ]);
    let pid = m.pid().unwrap();
    let idle_kib = status_kib(pid, "VmRSS:");
    // sampled while the files are written: the peak (VmHWM) is checked too
    let (stop, peak) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(status_kib(pid, "VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };

    let contents = Contents::new();
    let order = |f: usize| match f % 250 {
        7 => Pattern::HalvesSwapped,
        11 | 13 => Pattern::Reversed,
        _ => Pattern::InOrder,
    };
    let mut files: Vec<(usize, File)> = Vec::new();
    let mut refused_open = 0;
    for f in 0..FILES {
        let path = m.sector_path(&contents.root(f));
        match OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
        {
            Ok(file) => files.push((f, file)),
            Err(e) => {
                assert_eq!(errno(&e), libc::EMFILE, "open {f}: {e}");
                refused_open += 1;
            }
        }
    }
    assert_eq!(files.len(), MAX_UPLOADS, "opens past the cap are refused");
    assert_eq!(refused_open, FILES - MAX_UPLOADS);

    // one piece of each file in turn
    let mut write_failed = vec![false; FILES];
    for round in 0..CHUNKS {
        for (f, file) in &files {
            if write_failed[*f] {
                continue;
            }
            let c = match order(*f) {
                Pattern::Reversed => CHUNKS - 1 - round,
                _ => round,
            };
            let data = contents.chunk(*f, c);
            let at = (c * CHUNK) as u64;
            let written = match order(*f) {
                Pattern::HalvesSwapped => {
                    let half = CHUNK / 2;
                    file.write_all_at(&data[half..], at + half as u64)
                        .and_then(|()| file.write_all_at(&data[..half], at))
                }
                _ => file.write_all_at(&data, at),
            };
            if let Err(e) = written {
                assert_eq!(errno(&e), libc::ENOBUFS, "write {f}: {e}");
                write_failed[*f] = true;
            }
        }
    }
    let mut stored = Vec::new();
    for (f, file) in files {
        match close(file) {
            Ok(()) => {
                assert!(!write_failed[f], "file {f}: a failed write, yet stored");
                stored.push(f);
            }
            Err(e) => {
                assert!(write_failed[f], "close {f} failed, no write did: {e}");
                assert_eq!(errno(&e), libc::ENOBUFS, "close {f}: {e}");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let hwm_kib = status_kib(pid, "VmHWM:");
    let failed = write_failed.iter().filter(|f| **f).count();
    println!(
        "{FILES} files: {} refused at open (EMFILE), {failed} refused a write (ENOBUFS), {} \
         stored; daemon RSS idle {} MiB, peak sampled {} MiB, VmHWM {} MiB (budget {BUDGET_MIB} \
         MiB + margin {MARGIN_MIB} MiB)",
        FILES - MAX_UPLOADS,
        stored.len(),
        idle_kib >> 10,
        peak.load(Ordering::Relaxed) >> 10,
        hwm_kib >> 10,
    );
    assert!(
        hwm_kib <= (BUDGET_MIB + MARGIN_MIB) << 10,
        "the daemon's memory peaked at {} MiB",
        hwm_kib >> 10
    );
    // every out-of-order and reversed file, and most others, stored
    assert!(stored.len() + failed == MAX_UPLOADS);
    assert!(
        stored.iter().any(|f| order(*f) == Pattern::HalvesSwapped)
            && stored.iter().any(|f| order(*f) == Pattern::Reversed),
        "files written out of order store too"
    );

    // what was stored reads back: each file's own chunk, and a few whole
    for (n, f) in stored.iter().enumerate() {
        let path = m.sector_path(&contents.root(*f));
        let file = File::open(&path).unwrap();
        assert_eq!(file.metadata().unwrap().len(), SECTOR_SIZE as u64);
        let checked = if n % 100 == 0 { CHUNKS } else { 1 };
        let mut buf = vec![0u8; CHUNK];
        for c in 0..checked {
            file.read_exact_at(&mut buf, (c * CHUNK) as u64).unwrap();
            assert!(buf == contents.chunk(*f, c), "file {f} chunk {c} differs");
        }
    }
    // the daemon still serves: a new sector stores and reads back
    let data = crate::harness::sector(0xaf7e);
    let root = m.put(&data);
    assert!(std::fs::read(m.sector_path(&root)).unwrap() == data);
    assert!(!m.read("status").is_empty(), "status answers");
}

/// Two uploads written out of order hold the whole budget: a third one's
/// write waits, finds nothing on its way back, fails with ENOBUFS, and its
/// close stores nothing; the two store, and the third stores once written
/// again.
#[test]
fn a_write_past_a_budget_held_by_others_fails_cleanly() {
    let m = Mount::start(&["--upload-memory", "8MiB"]);
    let contents = Contents::new();
    let open = |f: usize| File::create(m.sector_path(&contents.root(f))).unwrap();
    let (a, b, c) = (open(1), open(2), open(3));
    let half = CHUNK / 2;
    for (f, file) in [(1, &a), (2, &b)] {
        for i in 0..CHUNKS {
            let data = contents.chunk(f, i);
            let at = (i * CHUNK) as u64;
            file.write_all_at(&data[half..], at + half as u64).unwrap();
            file.write_all_at(&data[..half], at).unwrap();
        }
    }
    let e = c.write_all_at(&contents.chunk(3, 0), 0).unwrap_err();
    assert_eq!(errno(&e), libc::ENOBUFS, "{e}");
    let e = close(c).unwrap_err();
    assert_eq!(errno(&e), libc::ENOBUFS, "{e}\n{}", m.log());
    close(a).unwrap();
    close(b).unwrap();
    let again = open(3);
    for i in 0..CHUNKS {
        again
            .write_all_at(&contents.chunk(3, i), (i * CHUNK) as u64)
            .unwrap();
    }
    close(again).unwrap();
    for f in 1..=3 {
        let back = std::fs::read(m.sector_path(&contents.root(f))).unwrap();
        assert!(back[..CHUNK] == contents.chunk(f, 0)[..], "file {f}");
        assert!(
            back[CHUNK..2 * CHUNK] == contents.chunk(f, 1)[..],
            "file {f}"
        );
    }
    assert!(
        m.log().contains("memory budget (8 MiB) is all in use"),
        "the refusal is logged"
    );
}
