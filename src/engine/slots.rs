//! Free slots, kept in memory only: one bit per slot of each volume, set
//! when the slot is occupied or reserved by a write in flight. Rebuilt at
//! open from the occupied slots in the database.

#[derive(Debug, Clone, Default)]
pub struct SlotMap {
    words: Vec<u64>,
    total: u64,
    used: u64,
    /// No free slot below this word: where the next search starts.
    hint: usize,
    /// Slots reserved by writes in flight that a shrink cut off. They stay
    /// the writers' until released, so a grow before that cannot hand them
    /// to a second writer.
    cut_off: Vec<u64>,
}

impl SlotMap {
    pub fn new(total: u64) -> SlotMap {
        SlotMap {
            words: vec![0; total.div_ceil(64) as usize],
            total,
            used: 0,
            hint: 0,
            cut_off: Vec::new(),
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn free(&self) -> u64 {
        self.total - self.used
    }

    pub fn is_used(&self, slot: u64) -> bool {
        slot < self.total && self.words[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    /// Marks a slot occupied; false if it already was or lies outside.
    pub fn mark(&mut self, slot: u64) -> bool {
        if slot >= self.total || self.is_used(slot) {
            return false;
        }
        self.words[(slot / 64) as usize] |= 1 << (slot % 64);
        self.used += 1;
        true
    }

    #[cfg(test)]
    /// Takes the lowest free slot (low slots first keeps a volume compact,
    /// so shrinking it later moves less).
    pub fn take(&mut self) -> Option<u64> {
        self.take_below(self.total)
    }

    /// Takes the lowest free slot below `limit`.
    pub fn take_below(&mut self, limit: u64) -> Option<u64> {
        let limit = limit.min(self.total);
        for w in self.hint..self.words.len() {
            let word = self.words[w];
            if word == u64::MAX {
                continue;
            }
            let slot = w as u64 * 64 + (!word).trailing_zeros() as u64;
            if slot >= limit {
                return None;
            }
            self.hint = w;
            self.mark(slot);
            return Some(slot);
        }
        None
    }

    /// Returns a slot to the free pool.
    pub fn release(&mut self, slot: u64) {
        if let Some(i) = self.cut_off.iter().position(|s| *s == slot) {
            self.cut_off.swap_remove(i);
            return;
        }
        if !self.is_used(slot) {
            return;
        }
        let w = (slot / 64) as usize;
        self.words[w] &= !(1 << (slot % 64));
        self.used -= 1;
        self.hint = self.hint.min(w);
    }

    /// Grows or shrinks the map. Stored sectors never lie past a new end;
    /// slots there still reserved by writes in flight are kept aside (their
    /// commit will find the slot gone) and come back as used on a grow.
    pub fn resize(&mut self, total: u64) {
        for slot in total..self.total {
            if self.is_used(slot) {
                self.cut_off.push(slot);
                self.used -= 1;
            }
        }
        self.words.resize(total.div_ceil(64) as usize, 0);
        if !total.is_multiple_of(64)
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << (total % 64)) - 1;
        }
        self.total = total;
        self.hint = self.hint.min(self.words.len().saturating_sub(1));
        let back: Vec<u64> = self
            .cut_off
            .iter()
            .copied()
            .filter(|s| *s < total)
            .collect();
        self.cut_off.retain(|s| *s >= total);
        for slot in back {
            self.mark(slot);
        }
    }

    /// Free slots below `limit`.
    pub fn free_below(&self, limit: u64) -> u64 {
        let limit = limit.min(self.total);
        let full_words = (limit / 64) as usize;
        let mut used: u64 = self.words[..full_words]
            .iter()
            .map(|w| w.count_ones() as u64)
            .sum();
        if !limit.is_multiple_of(64) {
            used += (self.words[full_words] & ((1u64 << (limit % 64)) - 1)).count_ones() as u64;
        }
        limit - used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_lowest_and_reuses_released() {
        let mut m = SlotMap::new(130);
        assert_eq!(m.take(), Some(0));
        assert_eq!(m.take(), Some(1));
        assert!(m.mark(64));
        m.release(0);
        assert_eq!(m.take(), Some(0));
        assert_eq!(m.used(), 3);
        assert_eq!(m.free(), 127);
        for _ in 0..127 {
            assert!(m.take().is_some());
        }
        assert_eq!(m.take(), None);
        assert_eq!(m.free(), 0);
    }

    #[test]
    fn resize_and_free_below() {
        let mut m = SlotMap::new(10);
        m.mark(3);
        m.mark(9);
        assert_eq!(m.free_below(5), 4);
        m.release(9);
        m.resize(5);
        assert_eq!(m.free(), 4);
        assert_eq!(m.take_below(3), Some(0));
        m.resize(200);
        assert_eq!(m.free(), 198);
        assert!(!m.mark(200));
        assert_eq!(m.free_below(200), 198);
    }

    #[test]
    fn a_reservation_cut_off_by_a_shrink_stays_taken() {
        let mut m = SlotMap::new(10);
        assert!(m.mark(8));
        m.resize(5);
        assert_eq!((m.used(), m.free()), (0, 5));
        // grown back before the writer let go: the slot is still its own
        m.resize(10);
        assert!(m.is_used(8));
        assert_eq!(m.free(), 9);
        m.resize(5);
        m.release(8);
        m.resize(10);
        assert!(!m.is_used(8));
        assert_eq!(m.free(), 10);
    }
}
