//! Contract lists: never panics; an accepted list prints back to the same
//! bytes (modulo a missing final newline).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sectorfs::parse;

fuzz_target!(|data: &[u8]| {
    if let Ok(roots) = parse::parse_root_list(data) {
        let mut text = String::new();
        for r in &roots {
            text.push_str(&r.to_string());
            text.push('\n');
        }
        let given = std::str::from_utf8(data).unwrap();
        let given = if given.is_empty() || given.ends_with('\n') {
            given.to_string()
        } else {
            format!("{given}\n")
        };
        assert_eq!(text, given);
    }
});
