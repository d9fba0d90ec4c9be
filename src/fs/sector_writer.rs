//! A sector being written through the mount. Writes land in a 4 MiB buffer
//! in any order; each 1 MiB chunk is hashed as soon as it is written front
//! to back, so little hashing is left for close.

use crate::error::{Error, Result};
use crate::merkle::{self, Root, SECTOR_SIZE};

const CHUNK: usize = 1 << 20;
const CHUNKS: usize = SECTOR_SIZE / CHUNK;

pub struct SectorWriter {
    pub root: Root,
    buf: Vec<u8>,
    /// Bytes in the file: the highest end written (or set by truncate).
    len: usize,
    /// Per chunk, how far from its start it has been written without a gap.
    contiguous: [usize; CHUNKS],
    chunk_roots: [Option<Root>; CHUNKS],
    /// A write past 4 MiB poisons the file: nothing may be stored from it.
    too_big: bool,
    /// Nothing was written or truncated yet.
    untouched: bool,
}

impl SectorWriter {
    pub fn new(root: Root) -> SectorWriter {
        SectorWriter {
            root,
            // zeroed pages come from the kernel lazily: holes read as zero
            buf: vec![0; SECTOR_SIZE],
            len: 0,
            contiguous: [0; CHUNKS],
            chunk_roots: [None; CHUNKS],
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
        if start == end {
            return Ok(());
        }
        for c in start / CHUNK..=(end - 1) / CHUNK {
            let (cs, ce) = (c * CHUNK, (c + 1) * CHUNK);
            let (ws, we) = (start.max(cs) - cs, end.min(ce) - cs);
            if self.chunk_roots[c].is_some() {
                // an overwrite of a hashed chunk: hash it again at close
                self.chunk_roots[c] = None;
                self.contiguous[c] = 0;
            } else if ws <= self.contiguous[c] {
                self.contiguous[c] = self.contiguous[c].max(we);
                if self.contiguous[c] == CHUNK {
                    self.chunk_roots[c] = Some(merkle::subtree_root(&self.buf[cs..ce]));
                }
            }
        }
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
        self.chunk_roots = [None; CHUNKS];
        self.contiguous = [0; CHUNKS];
        Ok(())
    }

    /// Checks the file is one whole sector that hashes to its name, and
    /// returns the data to store.
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
        let mut roots = [Root([0; 32]); CHUNKS];
        for (c, r) in roots.iter_mut().enumerate() {
            *r = match self.chunk_roots[c] {
                Some(done) => done,
                None => merkle::subtree_root(&self.buf[c * CHUNK..(c + 1) * CHUNK]),
            };
        }
        let actual = merkle::combine(&roots);
        if actual != self.root {
            return Err(Error::BadDigest(format!(
                "the data written hashes to {actual}, not to its name {}; nothing was stored",
                self.root
            )));
        }
        Ok(&self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..SECTOR_SIZE).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn any_write_order_gives_the_same_root() {
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
    fn refuses_short_long_and_wrong_data() {
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

        let mut w = SectorWriter::new(root);
        w.write(0, &data).unwrap();
        w.write(77, b"!").unwrap();
        assert_eq!(w.finish().unwrap_err().errno(), libc::EBADMSG);
    }

    #[test]
    fn truncate_extends_with_zeros() {
        let zero_root = merkle::sector_root(&vec![0; SECTOR_SIZE]);
        let mut w = SectorWriter::new(zero_root);
        w.write(0, &[0; 10]).unwrap();
        w.set_len(SECTOR_SIZE as u64).unwrap();
        assert!(w.finish().is_ok());
    }
}
