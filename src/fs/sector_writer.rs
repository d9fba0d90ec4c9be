//! A sector being written through the mount. Writes land in a 4 MiB buffer
//! in any order; at close the whole sector is handed to the engine, which
//! hashes it on two threads while it writes and syncs it into its slot, so
//! a writer waits for the longer of the two rather than their sum (hashing
//! each chunk as it arrived made it wait for the sum).

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::merkle::{Root, SECTOR_SIZE};

/// Sector buffers kept for reuse. A new 4 MiB buffer takes a page fault per
/// 4 KiB on its first writes (about 2 ms a sector, measured); a reused one
/// none. Returned zeroed, so holes still read as zero.
static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// Buffers kept at most: enough for a few writers at once.
const SPARE_MAX: usize = 8;

pub struct SectorWriter {
    pub root: Root,
    buf: Vec<u8>,
    /// Bytes in the file: the highest end written (or set by truncate).
    len: usize,
    /// A write past 4 MiB poisons the file: nothing may be stored from it.
    too_big: bool,
    /// Nothing was written or truncated yet.
    untouched: bool,
}

impl SectorWriter {
    pub fn new(root: Root) -> SectorWriter {
        SectorWriter {
            root,
            buf: SPARE.lock().pop().unwrap_or_else(|| vec![0; SECTOR_SIZE]),
            len: 0,
            too_big: false,
            untouched: true,
        }
    }

    pub fn len(&self) -> u64 {
        self.len as u64
    }

    pub fn is_untouched(&self) -> bool {
        self.untouched
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.untouched = false;
        let end = offset.checked_add(data.len() as u64);
        let Some(end) = end.filter(|e| *e <= SECTOR_SIZE as u64) else {
            self.too_big = true;
            return Err(Error::TooBig(format!(
                "a sector is {SECTOR_SIZE} bytes; a write of {} bytes at offset {offset} runs \
                 past it",
                data.len()
            )));
        };
        let (start, end) = (offset as usize, end as usize);
        self.buf[start..end].copy_from_slice(data);
        self.len = self.len.max(end);
        Ok(())
    }

    /// `ftruncate` while writing: shorter drops bytes, longer adds zeros.
    pub fn set_len(&mut self, len: u64) -> Result<()> {
        self.untouched = false;
        if len > SECTOR_SIZE as u64 {
            return Err(Error::TooBig(format!(
                "a sector is {SECTOR_SIZE} bytes, it cannot be {len}"
            )));
        }
        let len = len as usize;
        if len < self.len {
            self.buf[len..self.len].fill(0);
        }
        self.len = len;
        Ok(())
    }

    /// Checks the file is one whole sector and returns its data, to be
    /// stored with `Engine::write_sector` (which checks it hashes to the
    /// name before anything is recorded).
    pub fn finish(&mut self) -> Result<&[u8]> {
        if self.too_big {
            return Err(Error::TooBig(format!(
                "sector {} was written past 4 MiB; nothing was stored",
                self.root
            )));
        }
        if self.len != SECTOR_SIZE {
            return Err(Error::Invalid(format!(
                "sector {} is {} bytes at close; a sector is exactly {SECTOR_SIZE} bytes, \
                 nothing was stored",
                self.root, self.len
            )));
        }
        Ok(&self.buf)
    }
}

impl Drop for SectorWriter {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        // only bytes below `len` can be non-zero: writes end there, and a
        // shorter `set_len` zeroes what it cuts off
        buf[..self.len].fill(0);
        let mut spare = SPARE.lock();
        if spare.len() < SPARE_MAX {
            spare.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle;

    fn sample() -> Vec<u8> {
        (0..SECTOR_SIZE).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn any_write_order_gives_the_same_data() {
        let data = sample();
        let root = merkle::sector_root(&data);
        // in order, reversed, and with overlaps
        let orders: Vec<Vec<(usize, usize)>> = vec![
            (0..32).map(|i| (i * 131072, 131072)).collect(),
            (0..32).rev().map(|i| (i * 131072, 131072)).collect(),
            vec![(0, 3 << 20), (1 << 20, 3 << 20), (5, 100)],
        ];
        for order in orders {
            let mut w = SectorWriter::new(root);
            for (off, len) in order {
                w.write(off as u64, &data[off..off + len]).unwrap();
            }
            assert_eq!(w.finish().unwrap(), &data[..]);
        }
    }

    #[test]
    fn refuses_short_and_long() {
        let data = sample();
        let root = merkle::sector_root(&data);
        let mut w = SectorWriter::new(root);
        w.write(0, &data[..1000]).unwrap();
        assert_eq!(w.finish().unwrap_err().errno(), libc::EINVAL);

        let mut w = SectorWriter::new(root);
        w.write(0, &data).unwrap();
        assert_eq!(
            w.write(SECTOR_SIZE as u64, b"x").unwrap_err().errno(),
            libc::EFBIG
        );
        assert_eq!(w.finish().unwrap_err().errno(), libc::EFBIG);
    }

    #[test]
    fn truncate_extends_with_zeros() {
        let mut w = SectorWriter::new(Root([0; 32]));
        w.write(0, &[7; 10]).unwrap();
        w.set_len(5).unwrap();
        w.set_len(SECTOR_SIZE as u64).unwrap();
        let data = w.finish().unwrap();
        assert_eq!(&data[..5], &[7; 5]);
        assert!(data[5..].iter().all(|b| *b == 0));
    }
}
