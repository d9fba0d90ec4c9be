//! Whether a process still has a file open, from `/proc/<pid>/fd`.
//!
//! A shell redirection (`cmd > /contracts/c`) opens the file, duplicates
//! the descriptor onto stdout and closes the original: a flush with nothing
//! written, while the command has yet to write the new list. Emptying the
//! contract there would free sectors the new list still names, so such a
//! flush waits while the process holds another descriptor of the file.

use std::path::Path;

/// Whether process `pid` may have a descriptor open on the file whose path
/// ends with `tail` (such as `contracts/c`). Only the tail is compared: the
/// kernel names the file as the process sees it (through a bind mount, in
/// a chroot), and a false match only makes the caller wait. `true` when it
/// cannot be told: the caller then takes the cautious way.
pub fn holds_open(pid: u32, tail: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return true;
    };
    // readlink only: stat would call back into this file system
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| target.ends_with(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_its_own_open_file_and_not_a_closed_one() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("contracts");
        std::fs::create_dir(&sub).unwrap();
        let tail = Path::new("contracts/holds-open-test");
        let file = std::fs::File::create(sub.join("holds-open-test")).unwrap();
        assert!(holds_open(std::process::id(), tail));
        drop(file);
        assert!(!holds_open(std::process::id(), tail));
        // no such process: cannot tell
        assert!(holds_open(u32::MAX, tail));
    }
}
