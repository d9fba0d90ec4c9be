//! The cache tier (`mount --cache PATH SIZE`): one sparse file on a fast
//! disk, slots of 4 MiB as in a volume, the least recently used sectors
//! evicted when it is full. Sectors read from volumes are copied in (whole,
//! verified against their root, on a thread of their own); reads try it
//! first. Disposable: its index lives in memory only, so a restart starts
//! it empty, and a lost or corrupt cache costs speed, never data. Not a
//! copy for `/copies`. With `--verify-reads` its entries are checked as
//! volume copies are, and a bad one is dropped and read from a volume.

use std::collections::{HashSet, VecDeque};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, RwLock};
use serde::Serialize;

use super::{Engine, bump};
use crate::error::{IoContext, Result};
use crate::merkle::{self, Root, SECTOR_SIZE};
use crate::volume::SECTOR_BYTES;

/// Sectors waiting to be copied in, at most (more are not queued: the
/// cache fills from the reads after them).
const QUEUE: usize = 64;

/// How the cache tier is set up.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    pub path: PathBuf,
    /// Sectors it holds.
    pub slots: u64,
}

/// What `/tiers/cache/stats` shows.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CacheStats {
    pub slots: u64,
    pub entries: u64,
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub evictions: u64,
    /// Entries found not to match their root (dropped).
    pub corrupt: u64,
}

struct Index {
    lru: lru::LruCache<Root, u64>,
    free: Vec<u64>,
}

pub(super) struct Cache {
    file: std::fs::File,
    slots: u64,
    index: Mutex<Index>,
    /// Readers of the file hold it shared; a slot evicted is reused only
    /// after an exclusive moment, once no read of its old entry is left.
    io: RwLock<()>,
    /// First in, first out: entries take free slots in the order their
    /// sectors were read, so sectors read in a row again are read in a row
    /// from the file (the kernel's readahead then runs ahead of them, as it
    /// does on a volume).
    queue: Mutex<(VecDeque<Root>, HashSet<Root>)>,
    wake: Condvar,
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    evictions: AtomicU64,
    corrupt: AtomicU64,
}

impl Cache {
    pub(super) fn open(o: &CacheOptions) -> Result<Cache> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&o.path)
            .io_ctx(|| format!("cannot open the cache file {}", o.path.display()))?;
        file.set_len(o.slots * SECTOR_BYTES)
            .io_ctx(|| format!("cannot size the cache file {}", o.path.display()))?;
        tracing::info!("cache tier: {} ({} sectors)", o.path.display(), o.slots);
        Ok(Cache {
            file,
            slots: o.slots,
            index: Mutex::new(Index {
                lru: lru::LruCache::unbounded(),
                free: (0..o.slots).rev().collect(),
            }),
            io: RwLock::new(()),
            queue: Mutex::default(),
            wake: Condvar::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
        })
    }

    fn drop_entry(&self, root: &Root) {
        let mut index = self.index.lock();
        if let Some(slot) = index.lru.pop(root) {
            // readers of it may still be in flight: the slot waits for the
            // next insert's exclusive moment like an evicted one
            index.free.insert(0, slot);
        }
    }
}

impl Engine {
    /// Reads from the cache entry of `root`, if there is a good one; true
    /// when `buf` was filled from it.
    pub(crate) fn read_cached(&self, root: &Root, offset: u64, buf: &mut [u8]) -> bool {
        let Some(cache) = &self.cache else {
            return false;
        };
        // held before the look-up: a slot found is not reused until the
        // read is done
        let _reading = cache.io.read();
        let Some(slot) = cache.index.lock().lru.get(root).copied() else {
            drop(_reading);
            bump(&cache.misses, 1);
            self.cache_later(*root);
            return false;
        };
        let at = slot * SECTOR_BYTES;
        let read = if self.options.verify_reads {
            let mut whole = vec![0u8; SECTOR_SIZE];
            cache.file.read_exact_at(&mut whole, at).map(|()| {
                let good = merkle::sector_root(&whole) == *root;
                if good {
                    let start = offset as usize;
                    buf.copy_from_slice(&whole[start..start + buf.len()]);
                }
                good
            })
        } else {
            cache.file.read_exact_at(buf, at + offset).map(|()| true)
        };
        match read {
            Ok(true) => {
                bump(&cache.hits, 1);
                true
            }
            Ok(false) => {
                tracing::warn!(
                    "the cache entry of sector {root} is corrupt: dropped, read from a volume"
                );
                bump(&cache.corrupt, 1);
                drop(_reading);
                cache.drop_entry(root);
                false
            }
            Err(e) => {
                tracing::warn!("reading the cache entry of sector {root} failed: {e}");
                drop(_reading);
                cache.drop_entry(root);
                false
            }
        }
    }

    /// Queues `root` to be copied into the cache.
    fn cache_later(&self, root: Root) {
        let Some(cache) = &self.cache else { return };
        let mut q = cache.queue.lock();
        if q.0.len() < QUEUE && q.1.insert(root) {
            q.0.push_back(root);
            cache.wake.notify_one();
        }
    }

    /// A freed sector's entry goes (its root may be stored again later:
    /// the same bytes, but the slot is better used).
    pub(crate) fn cache_forget(&self, root: &Root) {
        if let Some(cache) = &self.cache {
            cache.drop_entry(root);
        }
    }

    /// The cache's figures (`None`: no cache tier).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        let cache = self.cache.as_ref()?;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Some(CacheStats {
            slots: cache.slots,
            entries: cache.index.lock().lru.len() as u64,
            hits: get(&cache.hits),
            misses: get(&cache.misses),
            inserts: get(&cache.inserts),
            evictions: get(&cache.evictions),
            corrupt: get(&cache.corrupt),
        })
    }

    /// Whether sector `root` has a cache entry now.
    pub fn is_cached(&self, root: &Root) -> bool {
        self.cache
            .as_ref()
            .is_some_and(|c| c.index.lock().lru.contains(root))
    }

    /// The cache's thread: copies queued sectors in, read whole from
    /// their copies and verified.
    pub(super) fn cache_loop(&self) {
        let Some(cache) = &self.cache else { return };
        let mut data = vec![0u8; SECTOR_SIZE];
        while !self.health.stopping() {
            let next = {
                let mut q = cache.queue.lock();
                if q.0.is_empty() {
                    cache
                        .wake
                        .wait_for(&mut q, std::time::Duration::from_millis(100));
                }
                q.0.pop_front()
            };
            let Some(root) = next else { continue };
            self.cache_in(cache, &root, &mut data);
            cache.queue.lock().1.remove(&root);
        }
    }

    fn cache_in(&self, cache: &Cache, root: &Root, data: &mut [u8]) {
        if cache.index.lock().lru.contains(root) {
            return;
        }
        let copies = match self.meta.lookup_copies(root) {
            Ok(c) => c,
            Err(e) => return tracing::debug!("not cached: {e}"),
        };
        // from a local copy only (verified): a cold one is not worth a fetch
        let local: Vec<_> = copies
            .into_iter()
            .filter(|c| c.volume_id != crate::meta::COLD_VOLUME)
            .collect();
        if self.read_good_copy(&local, None, data).is_none() {
            return;
        }
        let slot = {
            let mut index = cache.index.lock();
            match index.free.pop() {
                Some(s) => s,
                None => match index.lru.pop_lru() {
                    Some((_, s)) => {
                        bump(&cache.evictions, 1);
                        s
                    }
                    None => return,
                },
            }
        };
        // no read of the slot's old entry is still in flight
        drop(cache.io.write());
        if let Err(e) = cache.file.write_all_at(data, slot * SECTOR_BYTES) {
            tracing::warn!("writing sector {root} into the cache failed: {e}");
            cache.index.lock().free.push(slot);
            return;
        }
        cache.index.lock().lru.put(*root, slot);
        bump(&cache.inserts, 1);
    }
}
