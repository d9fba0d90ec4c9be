//! Whether a process still has a file open, from `/proc/<pid>/fd`.
//!
//! A shell redirection (`cmd > /contracts/c`) opens the file, duplicates
//! the descriptor onto stdout and closes the original: a flush with nothing
//! written, while the command has yet to write the new list. Emptying the
//! contract there would free sectors the new list still names, so such a
//! flush waits while the process holds another descriptor of the file.

use std::path::Path;

/// Whether process `pid` has a descriptor open on `path` (the path the
/// kernel reports for it, so `path` must be canonical). `true` when it
/// cannot be told: the caller then takes the cautious way.
pub fn holds_open(pid: u32, path: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return true;
    };
    // readlink only: stat would call back into this file system
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| target == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_its_own_open_file_and_not_a_closed_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = std::fs::canonicalize(dir.path()).unwrap().join("f");
        let file = std::fs::File::create(&path).unwrap();
        assert!(holds_open(std::process::id(), &path));
        drop(file);
        assert!(!holds_open(std::process::id(), &path));
        // no such process: cannot tell
        assert!(holds_open(u32::MAX, &path));
    }
}
