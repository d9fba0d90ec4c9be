//! Reliability counts (model operations, kills, hostile inputs, ...) of a
//! test run, collected where `scripts/test.sh` prints them at the end, so a
//! reader of CI sees them without `--nocapture`.

use std::io::Write;

/// Where the counts of this run go: `target/tmp/reliability-counts.txt`.
pub const FILE: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/reliability-counts.txt");

/// Prints `line` on stderr (shown with `--nocapture`) and appends it to
/// [`FILE`].
pub fn record(line: &str) {
    // not through eprintln!, which the test harness captures
    let _ = writeln!(std::io::stderr(), "{line}");
    let appended = std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR")).and_then(|()| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(FILE)?;
        // one write per line: lines of tests running at once do not mix
        f.write_all(format!("{line}\n").as_bytes())
    });
    if let Err(e) = appended {
        let _ = writeln!(std::io::stderr(), "cannot append to {FILE}: {e}");
    }
}
