//! Counts in words: `1 sector`, `2 sectors`, `1 entry`, `3 entries`.

/// `n` followed by `noun` (given in the singular), plural unless `n` is 1.
/// The last word of `noun` takes the plural: `1 sector file`, `2 sector
/// files`.
pub fn count(n: u64, noun: &str) -> String {
    format!("{n} {}", noun_for(n, noun))
}

/// `noun` (given in the singular) as it goes with a count of `n`.
pub fn noun_for(n: u64, noun: &str) -> String {
    if n == 1 {
        return noun.to_string();
    }
    match noun.strip_suffix('y') {
        // entry → entries, but day → days
        Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{stem}ies"),
        _ if noun.ends_with('s') => format!("{noun}es"),
        _ => format!("{noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn plurals() {
        assert_eq!(count(1, "sector"), "1 sector");
        assert_eq!(count(0, "sector"), "0 sectors");
        assert_eq!(count(2, "volume"), "2 volumes");
        assert_eq!(count(1, "entry"), "1 entry");
        assert_eq!(count(3, "entry"), "3 entries");
        assert_eq!(count(2, "day"), "2 days");
        assert_eq!(count(2, "sector file"), "2 sector files");
        assert_eq!(count(2, "process"), "2 processes");
    }
}
