//! Every control-file parser on arbitrary bytes: never panics, and what it
//! accepts is well-formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sectorfs::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((path, slots)) = parse::parse_volume_add(line) {
        assert!(path.is_absolute());
        assert!(!path.components().any(|c| c == std::path::Component::ParentDir));
        let _ = slots;
    }
    if let Ok(flag) = parse::parse_flag(line) {
        assert_eq!(line.trim(), if flag { "1" } else { "0" });
    }
    if let Ok(h) = parse::parse_height(line) {
        assert!(h <= i64::MAX as u64);
    }
    let _ = parse::parse_status_command(line);
    let _ = parse::parse_duration(line);
});
