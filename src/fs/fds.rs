//! Whether a process still has a file open, from `/proc/<pid>/fd`.
//!
//! A shell redirection (`cmd > /contracts/c`) opens the file, duplicates
//! the descriptor onto stdout and closes the original: a flush with nothing
//! written, while the command has yet to write the new list. Emptying the
//! contract there would free sectors the new list still names, so such a
//! flush waits while the process, or a child of it, holds another
//! descriptor of the file.

use std::path::Path;

use crate::engine::Reference;
use crate::merkle::Root;

/// Whether process `pid`, or a process it started, may have a descriptor
/// open on the file whose path ends with `tail` (such as `contracts/c`).
/// Children count: they inherit descriptors, and a child may write after
/// its parent closed. Only the tail is compared: the kernel names the file
/// as the process sees it (through a bind mount, in a chroot), and a false
/// match only makes the caller wait. `true` when it cannot be told: the
/// caller then takes the cautious way.
pub fn holds_open(pid: u32, tail: &Path) -> bool {
    let mut todo = vec![pid];
    let mut seen = 0;
    while let Some(pid) = todo.pop() {
        seen += 1;
        if seen > MAX_PROCESSES {
            return true;
        }
        match fds_of(pid, tail).and_then(|held| Some((held, children_of(pid)?))) {
            Some((false, children)) => todo.extend(children),
            Some((true, _)) | None => return true,
        }
    }
    false
}

/// The process (thread group) of thread `tid`, which is what FUSE reports
/// as a request's pid; `tid` itself if that cannot be read.
pub fn process_of(tid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(tid)
}

/// What thread `tid`'s process opened sector `root` as, under
/// `mountpoint`: `/sectors/<root>` (a pin) or `/temp/<h>/<root>`; `None`
/// when it holds neither, both, or it cannot be read.
pub fn opened_as(tid: u32, mountpoint: &Path, root: Root) -> Option<Reference> {
    let fds = std::fs::read_dir(format!("/proc/{tid}/fd")).ok()?;
    let name = root.to_string();
    let mut found: Option<Reference> = None;
    // readlink only: stat would call back into this file system
    for target in fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
    {
        let Ok(rel) = target.strip_prefix(mountpoint) else {
            continue;
        };
        let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
        let reference = match parts.as_slice() {
            ["sectors", r] if *r == name => Reference::Pin,
            ["temp", h, r] if *r == name => Reference::Temp(h.parse().ok()?),
            _ => continue,
        };
        match found {
            Some(f) if f != reference => return None,
            _ => found = Some(reference),
        }
    }
    found
}

/// Processes looked at before giving up (and waiting).
const MAX_PROCESSES: usize = 256;

fn fds_of(pid: u32, tail: &Path) -> Option<bool> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    // readlink only: stat would call back into this file system
    Some(
        fds.flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .any(|target| target.ends_with(tail)),
    )
}

fn children_of(pid: u32) -> Option<Vec<u32>> {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).ok()?;
        children.extend(
            list.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    Some(children)
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
        // a child holding it counts
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("exec sleep 30 3>\"$1\"")
            .arg("sh")
            .arg(sub.join("holds-open-test"))
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !holds_open(std::process::id(), tail) {
            assert!(
                std::time::Instant::now() < deadline,
                "child's descriptor not seen"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!holds_open(std::process::id(), tail));
        // no such process: cannot tell
        assert!(holds_open(u32::MAX, tail));
    }
}
