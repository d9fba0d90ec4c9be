//! Cold objects streamed from the store: the whole object for a read from
//! its start, one 1 MiB block for a read elsewhere. A read is answered as
//! soon as its bytes have come, not the whole download, so the kernel's
//! reads of a cold sector overlap the rest of its transfer; each block is
//! kept once full. One download of the same range is in flight at a time:
//! readers of it wait for it. The bytes stay in the pieces they came in
//! (`pieces.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use super::pieces::Pieces;
use super::store::{ColdStore, Sink, StoreError};
use super::{BLOCK, Counters, bump};
use crate::merkle::{Root, SECTOR_SIZE};

/// A download in flight: blocks `first..` of one object.
#[derive(Default)]
pub(super) struct Download {
    /// Its first block.
    first: u64,
    got: Mutex<Got>,
    came: Condvar,
    /// A reader has reported its failure already (one alert per failure).
    pub(super) reported: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Got {
    /// The full blocks, in order from the first.
    blocks: Vec<Arc<Pieces>>,
    /// The block being filled.
    filling: Pieces,
    /// The download ended, well or not.
    end: Option<Result<(), StoreError>>,
}

impl Got {
    /// Bytes come so far (from the first block).
    fn came(&self) -> u64 {
        self.blocks.len() as u64 * BLOCK + self.filling.len()
    }

    /// The block holding byte `pos` (from the first block), when any of it
    /// has come.
    fn block(&self, pos: u64) -> Option<&Pieces> {
        let b = (pos / BLOCK) as usize;
        match self.blocks.get(b) {
            Some(block) => Some(block),
            None if b == self.blocks.len() => Some(&self.filling),
            None => None,
        }
    }
}

impl Download {
    /// Fills `out` with the bytes at `pos` of the object (within one block
    /// of this download), waiting for them; the count of bytes the object
    /// had there.
    pub(super) fn read(&self, pos: u64, out: &mut [u8]) -> Result<usize, StoreError> {
        let pos = pos - self.first * BLOCK;
        let mut got = self.got.lock();
        let want = pos + out.len() as u64;
        while got.came() < want && got.end.is_none() {
            self.came.wait(&mut got);
        }
        // bytes that came before a failure are good
        if got.came() < want
            && let Some(Err(e)) = &got.end
        {
            return Err(e.clone());
        }
        // past the end of a short object: what there is; copied without
        // the lock, which the download needs for each piece
        let block = got.block(pos).cloned();
        drop(got);
        Ok(block.map_or(0, |block| block.copy_to(pos % BLOCK, out)))
    }

    /// Bytes `pos..pos + len` of the object (within one block of this
    /// download) when they have come already.
    pub(super) fn came(&self, pos: u64, len: usize) -> Option<Bytes> {
        let pos = pos - self.first * BLOCK;
        self.got.lock().block(pos)?.get(pos % BLOCK, len)
    }

    fn end(&self, end: Result<(), StoreError>) {
        self.got.lock().end.get_or_insert(end);
        self.came.notify_all();
    }
}

/// What a download needs of the cold tier, shared with the runtime's task.
pub(super) struct Shelf {
    /// The blocks of cold objects fetched last, by (sector root, block).
    pub(super) kept: Mutex<lru::LruCache<(Root, u64), Arc<Pieces>>>,
    /// The downloads in flight, by (sector root, first block).
    pub(super) downloads: Mutex<HashMap<(Root, u64), Arc<Download>>>,
    pub(super) counters: Counters,
}

impl Shelf {
    /// Keeping `blocks` blocks at most.
    pub(super) fn new(blocks: usize) -> Shelf {
        Shelf {
            kept: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(blocks).expect("not zero"),
            )),
            downloads: Mutex::default(),
            counters: Counters::default(),
        }
    }

    /// Block `block` of `root`'s object, when kept (a use: kept longer).
    pub(super) fn kept_block(&self, root: &Root, block: u64) -> Option<Arc<Pieces>> {
        self.kept.lock().get(&(*root, block)).cloned()
    }

    /// The whole object of `root` is being downloaded, or its first block
    /// is kept (what a read-ahead would fetch again).
    pub(super) fn holds_whole(&self, root: &Root) -> bool {
        self.downloads.lock().contains_key(&(*root, 0)) || self.kept.lock().contains(&(*root, 0))
    }

    /// The download in flight that holds block `block` of `root`'s object:
    /// the whole object's, or that block's.
    pub(super) fn downloading(&self, root: &Root, block: u64) -> Option<Arc<Download>> {
        let downloads = self.downloads.lock();
        downloads
            .get(&(*root, 0))
            .or_else(|| downloads.get(&(*root, block)))
            .cloned()
    }
}

/// The download of `root`'s object from block `first` (to its end from the
/// start, else that block): the one in flight, or one started now (`ahead`:
/// for a reader that has not asked yet; its failure is no reader's).
pub(super) fn download(
    store: &ColdStore,
    shelf: &Arc<Shelf>,
    root: &Root,
    first: u64,
    ahead: bool,
) -> Arc<Download> {
    let download = {
        let mut downloads = shelf.downloads.lock();
        if let Some(d) = downloads.get(&(*root, first)) {
            return d.clone();
        }
        let d = Arc::new(Download {
            first,
            ..Download::default()
        });
        downloads.insert((*root, first), d.clone());
        d
    };
    let filler = Filler {
        root: *root,
        download: download.clone(),
        shelf: shelf.clone(),
        url: store.url().to_string(),
        total: 0,
        ended: false,
        ahead,
    };
    let end = match first {
        0 => SECTOR_SIZE as u64,
        _ => ((first + 1) * BLOCK).min(SECTOR_SIZE as u64),
    };
    store.stream_range(root, first * BLOCK..end, filler);
    download
}

/// Cuts the stream of a download into blocks and publishes them.
pub(super) struct Filler {
    root: Root,
    download: Arc<Download>,
    shelf: Arc<Shelf>,
    url: String,
    total: u64,
    ended: bool,
    /// Started ahead of any read.
    ahead: bool,
}

impl Sink for Filler {
    fn take(&mut self, mut chunk: Bytes) {
        self.total += chunk.len() as u64;
        let mut got = self.download.got.lock();
        while !chunk.is_empty() {
            let n = (BLOCK - got.filling.len()).min(chunk.len() as u64);
            got.filling.push(chunk.split_to(n as usize));
            if got.filling.len() == BLOCK {
                let block = Arc::new(std::mem::take(&mut got.filling));
                let b = self.download.first + got.blocks.len() as u64;
                self.shelf.kept.lock().put((self.root, b), block.clone());
                got.blocks.push(block);
            }
        }
        drop(got);
        self.download.came.notify_all();
    }

    fn finish(&mut self, outcome: Result<(), StoreError>) {
        self.ended = true;
        match &outcome {
            Ok(()) => {
                bump(&self.shelf.counters.downloads, 1);
                bump(&self.shelf.counters.downloaded_bytes, self.total);
            }
            // counted, but said by the reader that asks for it, if any (a
            // sector freed since it was listed has no object any more)
            Err(e) if self.ahead => {
                tracing::debug!(
                    "cold store {}: reading sector {} ahead failed: {e}",
                    self.url,
                    self.root
                );
                bump(&self.shelf.counters.errors, 1);
            }
            Err(StoreError::NotFound) => {
                tracing::error!(
                    "the object of sector {} is missing from the cold store {}",
                    self.root,
                    self.url
                );
                bump(&self.shelf.counters.errors, 1);
            }
            Err(e) => {
                tracing::warn!(
                    "cold store {}: reading sector {} failed: {e}",
                    self.url,
                    self.root
                );
                bump(&self.shelf.counters.errors, 1);
            }
        }
        self.download.end(outcome);
        // after its blocks were kept: a reader that finds no download in
        // flight finds them kept
        let key = (self.root, self.download.first);
        let mut downloads = self.shelf.downloads.lock();
        if downloads
            .get(&key)
            .is_some_and(|d| Arc::ptr_eq(d, &self.download))
        {
            downloads.remove(&key);
        }
    }
}

impl Drop for Filler {
    // a download dropped unfinished (the runtime shutting down) leaves
    // no reader waiting
    fn drop(&mut self) {
        if !self.ended {
            self.finish(Err(StoreError::Failed("the download was stopped".into())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filler(download: &Arc<Download>, shelf: &Arc<Shelf>) -> Filler {
        let root = Root([7; 32]);
        shelf
            .downloads
            .lock()
            .insert((root, download.first), download.clone());
        Filler {
            root,
            download: download.clone(),
            shelf: shelf.clone(),
            url: "s3://test/".into(),
            total: 0,
            ended: false,
            ahead: false,
        }
    }

    /// Readers waiting on ranges (across the block being filled, in a later
    /// block) are answered right as the bytes come in odd-sized chunks; the
    /// full blocks are kept; an object short of a sector reads short.
    #[test]
    fn readers_get_their_bytes_as_they_come() {
        let data: Vec<u8> = (0..SECTOR_SIZE + BLOCK as usize / 2)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let short = 2 * BLOCK as usize + 12_345;
        let download = Arc::new(Download::default());
        let shelf = Arc::new(Shelf::new(8));
        let mut f = filler(&download, &shelf);
        std::thread::scope(|s| {
            let readers: Vec<_> = [(0u64, 4096usize), (BLOCK - 100, 100), (BLOCK + 77, 70_000)]
                .into_iter()
                .map(|(pos, len)| {
                    let d = download.clone();
                    s.spawn(move || {
                        let mut out = vec![0u8; len];
                        (pos, d.read(pos, &mut out).unwrap(), out)
                    })
                })
                .collect();
            for chunk in data[..short].chunks(70_001) {
                f.take(Bytes::copy_from_slice(chunk));
            }
            f.finish(Ok(()));
            for r in readers {
                let (pos, n, out) = r.join().unwrap();
                assert_eq!(n, out.len());
                assert!(
                    out == data[pos as usize..pos as usize + n],
                    "bytes at {pos}"
                );
            }
        });
        let mut out = vec![0u8; 100_000];
        let pos = 2 * BLOCK;
        assert_eq!(download.read(pos, &mut out).unwrap(), 12_345, "short");
        assert!(out[..12_345] == data[pos as usize..short]);
        assert_eq!(download.read(3 * BLOCK, &mut out).unwrap(), 0);
        assert_eq!(shelf.kept.lock().len(), 2, "the full blocks are kept");
        assert!(download.came(BLOCK + 5, 10).unwrap() == data[BLOCK as usize + 5..][..10]);
    }

    /// A download of one block away from the start reads by the object's
    /// offsets, keeps its block under its number, is found by readers of
    /// that block (as a whole object's download is by readers of any), and
    /// leaves the downloads in flight when done.
    #[test]
    fn a_block_download_reads_and_keeps_by_the_objects_offsets() {
        let root = Root([7; 32]);
        let data: Vec<u8> = (0..BLOCK as usize).map(|i| (i % 253) as u8).collect();
        let shelf = Arc::new(Shelf::new(8));
        let download = Arc::new(Download {
            first: 2,
            ..Download::default()
        });
        let mut f = filler(&download, &shelf);
        assert!(shelf.downloading(&root, 2).is_some());
        assert!(shelf.downloading(&root, 1).is_none());
        for chunk in data.chunks(300_000) {
            f.take(Bytes::copy_from_slice(chunk));
        }
        let mut out = vec![0u8; 1000];
        assert_eq!(download.read(2 * BLOCK + 5, &mut out).unwrap(), 1000);
        assert!(out == data[5..1005]);
        assert!(download.came(3 * BLOCK - 10, 10).unwrap() == data[data.len() - 10..]);
        f.finish(Ok(()));
        assert!(shelf.downloading(&root, 2).is_none(), "done");
        let kept = shelf.kept_block(&root, 2).unwrap();
        assert_eq!(kept.len(), BLOCK);

        let whole = Arc::new(Download::default());
        let _f = filler(&whole, &shelf);
        let found = shelf.downloading(&root, 3).unwrap();
        assert!(
            Arc::ptr_eq(&found, &whole),
            "the whole object's holds every block"
        );
    }

    /// A failed or dropped download answers the readers of bytes that had
    /// not come with the failure.
    #[test]
    fn failures_reach_every_reader() {
        for dropped in [false, true] {
            let download = Arc::new(Download::default());
            let mut f = filler(&download, &Arc::new(Shelf::new(8)));
            f.take(Bytes::from(vec![1u8; 1000]));
            let waiting = {
                let d = download.clone();
                std::thread::spawn(move || d.read(500, &mut [0u8; 1000]))
            };
            if dropped {
                drop(f);
            } else {
                f.finish(Err(StoreError::Failed("gone".into())));
            }
            assert!(waiting.join().unwrap().is_err());
            assert_eq!(download.read(990, &mut [0u8; 20]).ok(), None);
            assert_eq!(
                download.read(0, &mut [0u8; 10]).ok(),
                Some(10),
                "came before"
            );
        }
    }
}
