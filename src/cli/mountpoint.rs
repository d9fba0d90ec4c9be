//! Which store an online command talks to: `--mount`, else
//! `$SECTORFS_MOUNT`. Either way it must be a mounted sectorfs store, checked
//! in /proc/self/mountinfo before anything in it is touched, so a wrong path
//! is reported as what it is rather than as a missing file inside it.

use std::path::{Path, PathBuf};

/// The environment variable that stands in for `--mount`.
pub const ENV: &str = "SECTORFS_MOUNT";

/// `--mount`, the same on every subcommand that talks to a running store.
#[derive(clap::Args, Debug, Clone)]
pub struct MountArg {
    /// Mountpoint of the running store [default: $SECTORFS_MOUNT]
    #[arg(id = "mount", long = "mount", value_name = "MOUNTPOINT", global = true)]
    pub path: Option<PathBuf>,
}

impl MountArg {
    /// The mountpoint to use, checked to be a mounted sectorfs store.
    pub fn resolve(&self) -> Result<PathBuf, String> {
        let given = self.path.clone().or_else(|| {
            std::env::var_os(ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let mounted = mounted_stores();
        let Some(path) = given else {
            return Err(format!(
                "which store? pass --mount MOUNTPOINT or set {ENV}; {}",
                stores_hint(&mounted)
            ));
        };
        check_mounted(&path, &mounted)
    }
}

/// `path` as the mountpoint of one of `mounted`, or why it is not one.
fn check_mounted(path: &Path, mounted: &[PathBuf]) -> Result<PathBuf, String> {
    // a mount whose daemon died cannot be resolved (ENOTCONN): look it up
    // by its absolute path then
    let abs = std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf());
    if mounted.contains(&abs) {
        return Ok(abs);
    }
    if !abs.exists() && std::fs::symlink_metadata(&abs).is_err() {
        return Err(format!(
            "{} does not exist, so it is not a mounted sectorfs store; {}",
            path.display(),
            stores_hint(mounted)
        ));
    }
    if let Some(store) = mounted.iter().find(|m| abs.starts_with(m)) {
        return Err(format!(
            "{} is inside the sectorfs store mounted at {}; use --mount {}",
            path.display(),
            store.display(),
            store.display()
        ));
    }
    Err(format!(
        "{} is not a mounted sectorfs store; {}",
        path.display(),
        stores_hint(mounted)
    ))
}

/// What to do next, given the stores mounted now: the command that was
/// given, with `--mount` pointing at a mounted store.
fn stores_hint(mounted: &[PathBuf]) -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match mounted {
        [] => "no sectorfs store is mounted: start one with `sectorfs mount MOUNTPOINT`".into(),
        [one] => format!(
            "the mounted store is {}: `{}`",
            one.display(),
            retry_with(&args, one)
        ),
        many => {
            let list: Vec<String> = many.iter().map(|m| m.display().to_string()).collect();
            format!(
                "mounted stores: {}; e.g. `{}`",
                list.join(", "),
                retry_with(&args, &many[0])
            )
        }
    }
}

/// `sectorfs ARGS --mount MOUNT`, any `--mount` in `args` replaced, quoted
/// for a shell.
fn retry_with(args: &[String], mount: &Path) -> String {
    let mut words = vec!["sectorfs".to_string()];
    let mut skip = false;
    for a in args {
        if std::mem::take(&mut skip) {
            continue;
        }
        if a == "--mount" {
            skip = true;
        } else if !a.starts_with("--mount=") {
            words.push(shell_word(a));
        }
    }
    words.push("--mount".into());
    words.push(shell_word(&mount.display().to_string()));
    words.join(" ")
}

/// `word` as a shell reads it back: quoted when it has anything but
/// letters, digits and `-_./=:@%+,`.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Mountpoints of the sectorfs stores mounted in this mount namespace.
pub fn mounted_stores() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| text.lines().filter_map(store_of).collect())
        .unwrap_or_default()
}

/// The mountpoint of one mountinfo line, if it is a sectorfs mount: the
/// daemon mounts with source `sectorfs` and subtype `sectorfs`, which shows
/// as type `fuse.sectorfs` or (mounted by root without fusermount) `fuse`.
fn store_of(line: &str) -> Option<PathBuf> {
    let (before, after) = line.split_once(" - ")?;
    let mountpoint = before.split(' ').nth(4)?;
    let mut fields = after.split(' ');
    let (fstype, source) = (fields.next()?, fields.next()?);
    let ours = fstype == "fuse.sectorfs" || (fstype == "fuse" && source == "sectorfs");
    ours.then(|| PathBuf::from(unescape(mountpoint)))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, b| n.wrapping_mul(8) + (b - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let root = "45 27 0:40 / /tmp/t/mnt rw,nosuid,nodev,noatime - fuse sectorfs rw,user_id=0";
        assert_eq!(store_of(root), Some(PathBuf::from("/tmp/t/mnt")));
        let user = "45 27 0:40 / /a\\040b rw shared:1 - fuse.sectorfs sectorfs rw";
        assert_eq!(store_of(user), Some(PathBuf::from("/a b")));
        let other = "45 27 0:40 / /mnt/x rw - fuse sshfs rw";
        assert_eq!(store_of(other), None);
        assert_eq!(store_of("22 1 8:1 / / rw - ext4 /dev/sda1 rw"), None);
    }

    #[test]
    fn retried_commands_can_be_pasted() {
        let args: Vec<String> = ["status", "--mount", "/tmp", "--watch"]
            .map(String::from)
            .into();
        assert_eq!(
            retry_with(&args, Path::new("/mnt/a b")),
            "sectorfs status --watch --mount '/mnt/a b'"
        );
        let args: Vec<String> = ["put", "it's", "--mount=/x"].map(String::from).into();
        assert_eq!(
            retry_with(&args, Path::new("/m")),
            "sectorfs put 'it'\\''s' --mount /m"
        );
    }

    #[test]
    fn hints_name_the_next_step() {
        let none = check_mounted(Path::new("/"), &[]).unwrap_err();
        assert!(none.contains("/ is not a mounted sectorfs store"), "{none}");
        assert!(none.contains("sectorfs mount MOUNTPOINT"), "{none}");
        let one = [PathBuf::from("/")];
        assert_eq!(check_mounted(Path::new("/"), &one).unwrap(), one[0]);
        let inside = check_mounted(Path::new("/proc"), &one).unwrap_err();
        assert!(inside.contains("use --mount /"), "{inside}");
    }
}
