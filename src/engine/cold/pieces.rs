//! Bytes kept in the pieces they came from the store in, none copied: a
//! read within one piece is a slice of it. Copying every piece into whole
//! blocks took as much of the daemon's time as receiving them.

use bytes::{Bytes, BytesMut};

/// A run of bytes in pieces, in order.
#[derive(Debug, Default, Clone)]
pub(super) struct Pieces {
    /// Each piece with the offset of its first byte.
    parts: Vec<(u64, Bytes)>,
    len: u64,
}

impl Pieces {
    pub(super) fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            let len = bytes.len() as u64;
            self.parts.push((self.len, bytes));
            self.len += len;
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.len
    }

    /// Bytes `pos..pos + len` when all there: a slice of one piece, or
    /// copied from the pieces it spans.
    pub(super) fn get(&self, pos: u64, len: usize) -> Option<Bytes> {
        if pos + len as u64 > self.len {
            return None;
        }
        if len == 0 {
            return Some(Bytes::new());
        }
        let i = self.part_at(pos);
        let (start, piece) = &self.parts[i];
        let from = (pos - start) as usize;
        if from + len <= piece.len() {
            return Some(piece.slice(from..from + len));
        }
        let mut out = BytesMut::with_capacity(len);
        for slice in self.slices(pos, len) {
            out.extend_from_slice(slice);
        }
        Some(out.freeze())
    }

    /// Copies the bytes at `pos` into `out`, as many as there are; their
    /// count.
    pub(super) fn copy_to(&self, pos: u64, out: &mut [u8]) -> usize {
        let n = (self.len.saturating_sub(pos) as usize).min(out.len());
        let mut done = 0;
        for slice in self.slices(pos, n) {
            out[done..done + slice.len()].copy_from_slice(slice);
            done += slice.len();
        }
        n
    }

    /// The pieces' bytes `pos..pos + n` (all there), in order.
    fn slices(&self, pos: u64, n: usize) -> impl Iterator<Item = &[u8]> {
        let first = if n == 0 {
            self.parts.len()
        } else {
            self.part_at(pos)
        };
        let end = pos + n as u64;
        self.parts[first..]
            .iter()
            .take_while(move |(start, _)| *start < end)
            .map(move |(start, piece)| {
                let from = pos.saturating_sub(*start) as usize;
                let to = ((end - start) as usize).min(piece.len());
                &piece[from..to]
            })
    }

    /// The index of the piece holding byte `pos` (< len).
    fn part_at(&self, pos: u64) -> usize {
        self.parts.partition_point(|(start, _)| *start <= pos) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_within_and_across_pieces() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut p = Pieces::default();
        for chunk in [&data[..1], &data[1..4000], &data[4000..4000], &data[4000..]] {
            p.push(Bytes::copy_from_slice(chunk));
        }
        assert_eq!(p.len(), 10_000);
        for (pos, len) in [
            (0, 1),
            (0, 10_000),
            (1, 3999),
            (3990, 20),
            (9_999, 1),
            (500, 0),
            (10_000, 0),
        ] {
            let got = p.get(pos, len).unwrap();
            assert!(got == data[pos as usize..][..len], "{pos}+{len}");
            let mut out = vec![0u8; len];
            assert_eq!(p.copy_to(pos, &mut out), len);
            assert!(out == data[pos as usize..][..len]);
        }
        assert!(p.get(9_999, 2).is_none(), "not all there");
        let mut out = [0u8; 10];
        assert_eq!(p.copy_to(9_995, &mut out), 5, "what there is");
        assert_eq!(p.copy_to(10_000, &mut out), 0);
        assert_eq!(Pieces::default().copy_to(0, &mut out), 0);
        assert_eq!(Pieces::default().get(0, 0).unwrap().len(), 0);
    }
}
