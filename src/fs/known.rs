//! Sector inodes the kernel holds (looked up and not yet forgotten): only
//! theirs can have cached attributes to drop when references change.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use parking_lot::Mutex;

/// Sector id → lookups the kernel has not forgotten.
#[derive(Default, Clone)]
pub struct KnownSectors(Arc<Mutex<HashMap<i64, u64>>>);

impl KnownSectors {
    pub fn looked_up(&self, id: i64) {
        *self.0.lock().entry(id).or_default() += 1;
    }

    pub fn forgotten(&self, id: i64, lookups: u64) {
        if let Entry::Occupied(mut e) = self.0.lock().entry(id) {
            let left = e.get().saturating_sub(lookups);
            if left == 0 {
                e.remove();
            } else {
                *e.get_mut() = left;
            }
        }
    }

    /// The ones among `ids` the kernel holds.
    pub fn held(&self, ids: &[i64]) -> Vec<i64> {
        let known = self.0.lock();
        ids.iter()
            .copied()
            .filter(|id| known.contains_key(id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lookups_until_forgotten() {
        let k = KnownSectors::default();
        k.looked_up(1);
        k.looked_up(1);
        k.looked_up(2);
        k.forgotten(1, 1);
        assert_eq!(k.held(&[1, 2, 3]), vec![1, 2]);
        k.forgotten(1, 1);
        k.forgotten(2, 5);
        assert!(k.held(&[1, 2, 3]).is_empty());
    }
}
