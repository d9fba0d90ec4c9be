//! Admin commands that work through a running mount's files: they add
//! convenience (units, tables, progress bars, sentences for errnos), never
//! powers the files lack.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::VolumeAction;
use sectorfs::merkle;

/// What an errno from the mount at `mount` means, in words, with the next
/// step where there is one.
fn errno_sentence(mount: &Path, e: &std::io::Error) -> String {
    let m = mount.display();
    let meaning = match e.raw_os_error() {
        Some(libc::ENOTCONN) => {
            return format!(
                "the daemon of the store mounted at {m} is no longer running ({e}); unmount \
                 it with `umount {m}` (or `fusermount3 -u {m}`), then start it again with \
                 `sectorfs mount {m}`"
            );
        }
        Some(libc::ENOSPC) => {
            return format!(
                "there is not enough free space in writable volumes ({e}); add a volume \
                 with `sectorfs volume add PATH SIZE --mount {m}`, or grow one"
            );
        }
        Some(libc::EINVAL) => "the input is not valid",
        Some(libc::ENOENT) => "it does not exist",
        Some(libc::EEXIST) => "it already exists",
        Some(libc::EBUSY) => "it is busy (still referenced, or a job is running on it)",
        Some(libc::EBADMSG) => "the data does not hash to its name",
        Some(libc::EFBIG) => "the data is larger than a sector",
        Some(libc::EPERM) | Some(libc::EACCES) => "the operation is not permitted",
        Some(libc::EIO) => "an I/O error occurred in the store",
        _ => return e.to_string(),
    };
    format!("{meaning} ({e})")
}

/// The daemon's own reason for refusing a write to `file`, from /status.json.
fn refusal_reason(mount: &Path, file: &str) -> Option<String> {
    let text = std::fs::read_to_string(mount.join("status.json")).ok()?;
    let status: serde_json::Value = serde_json::from_str(&text).ok()?;
    status["alerts"]
        .as_array()?
        .iter()
        .rev()
        .find(|a| a["data"]["path"].as_str() == Some(file))
        .and_then(|a| a["message"].as_str().map(str::to_string))
}

/// Writes one line to a control file, explaining a refusal in words.
fn control_write(mount: &Path, file: &str, line: &str) -> Result<(), String> {
    let path = mount.join(file.trim_start_matches('/'));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    written.map_err(|e| match refusal_reason(mount, file) {
        Some(reason) => reason,
        None => format!(
            "writing {line:?} to {}: {}",
            path.display(),
            errno_sentence(mount, &e)
        ),
    })
}

fn read(mount: &Path, file: &str) -> Result<String, String> {
    let path = mount.join(file);
    std::fs::read_to_string(&path)
        .map_err(|e| format!("reading {}: {}", path.display(), errno_sentence(mount, &e)))
}

fn status_json(mount: &Path) -> Result<serde_json::Value, String> {
    let text = read(mount, "status.json")?;
    serde_json::from_str(&text)
        .map_err(|e| format!("{}/status.json is not JSON: {e}", mount.display()))
}

pub fn put(mount: &Path, files: &[PathBuf], temp: Option<u64>) -> Result<(), String> {
    let dir = match temp {
        Some(h) => {
            let d = mount.join("temp").join(h.to_string());
            if !d.exists() {
                std::fs::create_dir(&d).map_err(|e| temp_refused(mount, h, &e))?;
            }
            d
        }
        None => mount.join("sectors"),
    };
    for f in files {
        let data = super::offline::read_sector_file(f)?;
        let root = merkle::sector_root(&data);
        let target = dir.join(root.to_string());
        let stored = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&target)
            .and_then(|mut out| {
                out.write_all(&data)?;
                // close reports whether the sector was stored
                nix::unistd::fsync(&out).map_err(std::io::Error::from)?;
                let fd = std::os::fd::IntoRawFd::into_raw_fd(out);
                nix::unistd::close(fd).map_err(std::io::Error::from)
            });
        stored.map_err(|e| format!("storing {}: {}", f.display(), errno_sentence(mount, &e)))?;
        println!("{root}  {}", f.display());
    }
    Ok(())
}

/// Why `/temp/<height>` could not be made, with the height to use.
fn temp_refused(mount: &Path, height: u64, e: &std::io::Error) -> String {
    let current = read(mount, "height").ok();
    match current.as_deref().map(str::trim) {
        Some(cur) if e.raw_os_error() == Some(libc::EINVAL) => format!(
            "--temp {height} is not above the current height {cur}: temp entries expire at a \
             later height; give one above {cur}"
        ),
        _ => format!(
            "cannot make {}: {}",
            mount.join("temp").join(height.to_string()).display(),
            errno_sentence(mount, e)
        ),
    }
}

/// Refuses an id that is not a volume of the store, naming those that are.
fn known_volume(mount: &Path, id: u32) -> Result<(), String> {
    let ids = volume_ids(mount)?;
    if ids.contains(&(id as u64)) {
        return Ok(());
    }
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    Err(match list.as_slice() {
        [] => format!(
            "no volume {id}: the store has no volumes; add one with `sectorfs volume add PATH \
             SIZE --mount {}`",
            mount.display()
        ),
        _ => format!("no volume {id} (volumes: {})", list.join(", ")),
    })
}

pub fn volume(mount: &Path, action: VolumeAction) -> Result<(), String> {
    if let VolumeAction::Resize { id, .. }
    | VolumeAction::Readonly { id, .. }
    | VolumeAction::Remove { id, .. } = action
    {
        known_volume(mount, id)?;
    }
    match action {
        VolumeAction::List => {
            let status = status_json(mount)?;
            println!(
                "{:>4}  {:<11}  {:>2}  {:>10}  {:>10}  PATH",
                "ID", "STATE", "RO", "SLOTS", "USED"
            );
            for v in status["volumes"].as_array().into_iter().flatten() {
                println!(
                    "{:>4}  {:<11}  {:>2}  {:>10}  {:>10}  {}",
                    v["id"].to_string(),
                    v["state"].as_str().unwrap_or("?"),
                    if v["readonly"].as_bool() == Some(true) {
                        "ro"
                    } else {
                        "rw"
                    },
                    v["slots"].to_string(),
                    v["used"].to_string(),
                    v["path"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        VolumeAction::Add { path, size } => {
            let abs = std::path::absolute(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let before = volume_ids(mount)?;
            // the line's last word is the size: `4 TiB` is sent as `4TiB`
            let size: String = size.split_whitespace().collect();
            control_write(mount, "/volumes/add", &format!("{} {size}", abs.display()))?;
            let added: Vec<_> = volume_ids(mount)?
                .into_iter()
                .filter(|i| !before.contains(i))
                .collect();
            match added.first() {
                Some(id) => println!("added volume {id} at {}", abs.display()),
                None => println!("added volume at {}", abs.display()),
            }
            Ok(())
        }
        VolumeAction::Resize { id, size } => {
            control_write(mount, &format!("/volumes/{id}/slots"), &size)?;
            println!(
                "volume {id}: resize to {size} accepted; follow it with `sectorfs status --watch \
                 --mount {}`",
                mount.display()
            );
            Ok(())
        }
        VolumeAction::Readonly { id, value } => {
            let flag = match value.as_str() {
                "1" | "on" | "true" | "yes" => "1",
                "0" | "off" | "false" | "no" => "0",
                other => return Err(format!("read-only is on or off, not {other:?}")),
            };
            control_write(mount, &format!("/volumes/{id}/readonly"), flag)
        }
        VolumeAction::Remove { id, force } => {
            control_write(
                mount,
                &format!("/volumes/{id}/remove"),
                if force { "force" } else { "1" },
            )?;
            println!(
                "volume {id}: removal started; follow it with `sectorfs status --watch --mount {}`",
                mount.display()
            );
            Ok(())
        }
    }
}

fn volume_ids(mount: &Path) -> Result<Vec<u64>, String> {
    let status = status_json(mount)?;
    Ok(status["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["id"].as_u64())
        .collect())
}

pub fn status(mount: &Path, json: bool, watch: bool) -> Result<(), String> {
    if !watch {
        print!(
            "{}",
            read(mount, if json { "status.json" } else { "status" })?
        );
        return Ok(());
    }
    if json {
        return Err(format!(
            "--watch redraws the text status; for JSON, read status.json repeatedly: watch \
             cat {}",
            mount.join("status.json").display()
        ));
    }
    // redrawn in place on a terminal (home, draw, clear what is left);
    // plain screens one after another into a pipe
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    if tty {
        print!("\x1b[2J");
    }
    loop {
        let text = read(mount, "status")?;
        let status = status_json(mount)?;
        let mut screen = text;
        for a in status["alerts"].as_array().into_iter().flatten() {
            let Some(p) = a.get("progress").filter(|p| !p.is_null()) else {
                continue;
            };
            let pct = p["percent"].as_f64().unwrap_or(0.0);
            let filled = ((pct / 100.0) * 40.0).round().clamp(0.0, 40.0) as usize;
            screen.push_str(&format!(
                "\n[{}{}] {pct:5.1}%  {}",
                "#".repeat(filled),
                "-".repeat(40 - filled),
                a["message"].as_str().unwrap_or("")
            ));
        }
        if tty {
            // home, each line cleared to its end, and the rest below
            screen = format!("\x1b[H{}\n\x1b[J", screen.replace('\n', "\x1b[K\n"));
        } else {
            screen.push_str("\n\n");
        }
        print!("{screen}");
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// `check --mount`: starts a check of each volume (or one) through its
/// `check` file, shows progress, and reports what each found.
pub fn check(mount: &Path, only: Option<u32>) -> Result<(), String> {
    let ids = match only {
        Some(id) => {
            known_volume(mount, id)?;
            vec![id as u64]
        }
        None => volume_ids(mount)?,
    };
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    for id in &ids {
        control_write(mount, &format!("/volumes/{id}/check"), "1")?;
    }
    let mut clean = true;
    for id in ids {
        loop {
            // the state first: a check raises its result before its volume
            // stops `checking`, so a result read after is this check's
            let state = read(mount, &format!("volumes/{id}/state")).unwrap_or_default();
            let ended = state.trim() != "checking";
            let status = status_json(mount)?;
            let alert = status["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| {
                    a["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(&format!("check of volume {id}:")))
                        || a["message"]
                            .as_str()
                            .is_some_and(|m| m.starts_with(&format!("checking volume {id}:")))
                })
                .cloned();
            match alert {
                Some(a) if ended && a["progress"].is_null() => {
                    if tty {
                        eprint!("\r\x1b[K");
                    }
                    println!("{}", a["message"].as_str().unwrap_or(""));
                    clean &= a["severity"].as_str() == Some("info");
                    break;
                }
                // redrawn in place on a terminal only; a log gets the result
                Some(a) if !a["progress"].is_null() && tty => {
                    eprint!("\r{}   ", a["message"].as_str().unwrap_or(""));
                }
                None if ended => {
                    println!(
                        "check of volume {id}: ended, but its result was dismissed before it \
                         could be read"
                    );
                    clean = false;
                    break;
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    if clean {
        Ok(())
    } else {
        Err("some sectors are corrupt or unreadable (listed above)".into())
    }
}
