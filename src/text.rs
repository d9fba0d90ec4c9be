//! Words for counts, shared by every message that prints one.

/// `n` with the singular or plural words after it: "1 sector", "2 sectors".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_and_many() {
        assert_eq!(super::plural(1, "copy", "copies"), "1 copy");
        assert_eq!(super::plural(0, "copy", "copies"), "0 copies");
        assert_eq!(
            super::plural(2, "sector has", "sectors have"),
            "2 sectors have"
        );
    }
}
