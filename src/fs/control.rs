//! What a line written to a control file does.

use std::collections::VecDeque;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::inode::{Node, VolFile};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::parse::{self, StatusCommand};

/// Refuses a volume path inside the mount itself, through symlinks too
/// (its directory as the kernel resolves it). Resolved one component at a
/// time, and each checked before it is looked at: a look at a path inside
/// the mount, from one of the mount's own threads, would wait on the mount.
fn check_outside(path: &Path, mountpoint: &Path) -> Result<()> {
    let inside = || {
        Error::Invalid(format!(
            "{} is inside the sectorfs mount itself; put volumes on real disks",
            path.display()
        ))
    };
    // `/` (or `/..`): in no directory, and there already (add says so)
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let mut todo: VecDeque<PathBuf> = dir.components().map(|c| c.as_os_str().into()).collect();
    let mut at = PathBuf::from("/");
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        match Path::new(&part).components().next() {
            Some(Component::RootDir) => at = PathBuf::from("/"),
            Some(Component::ParentDir) => {
                at.pop();
            }
            Some(Component::Normal(n)) => {
                let next = at.join(n);
                if next.starts_with(mountpoint) {
                    return Err(inside());
                }
                match std::fs::symlink_metadata(&next) {
                    Ok(m) if m.file_type().is_symlink() => {
                        links += 1;
                        if links > 40 {
                            return Err(Error::Invalid(format!(
                                "the directory of {} has too many levels of symbolic links",
                                path.display()
                            )));
                        }
                        let target = std::fs::read_link(&next)
                            .map_err(|e| Error::io(format!("cannot read {}", next.display()), e))?;
                        for c in target.components().rev() {
                            todo.push_front(c.as_os_str().into());
                        }
                    }
                    // a directory, or what does not exist (add says so)
                    _ => at = next,
                }
            }
            _ => {}
        }
    }
    if at.join(name).starts_with(mountpoint) {
        return Err(inside());
    }
    Ok(())
}

/// Applies one line written to a control file. `mountpoint` guards against
/// a volume inside the mount itself.
pub fn apply(engine: &Arc<Engine>, node: Node, line: &str, mountpoint: &Path) -> Result<()> {
    match node {
        Node::VolumesAdd => {
            let (path, slots) = parse::parse_volume_add(line)?;
            check_outside(&path, mountpoint)?;
            engine.add_volume(&path, slots).map(|_| ())
        }
        Node::VolumesAttach => {
            let path = parse::parse_volume_path(line)?;
            check_outside(&path, mountpoint)?;
            engine.attach_volume(&path).map(|_| ())
        }
        Node::Height => engine.set_height(parse::parse_height(line)?),
        Node::Copies if line.trim() == "cancel" => engine.cancel_repair(),
        Node::Copies => {
            let (min, max) = parse::parse_copies(line)?;
            engine.set_copies(min, max)
        }
        Node::Status => match parse::parse_status_command(line)? {
            StatusCommand::DismissAll => {
                engine.alerts().dismiss_all();
                Ok(())
            }
            StatusCommand::Dismiss(id) => {
                if engine.alerts().dismiss(id) {
                    Ok(())
                } else {
                    Err(Error::NotFound(format!("there is no alert {id}")))
                }
            }
        },
        Node::Volume(id, VolFile::Readonly) => engine.set_readonly(id, parse::parse_flag(line)?),
        Node::Volume(
            id,
            VolFile::Slots | VolFile::Remove | VolFile::Check | VolFile::Redeclare,
        ) if line.trim() == "cancel" => engine.cancel_job(id),
        Node::Volume(id, VolFile::Slots) => engine.resize_volume(id, parse::parse_size(line)?),
        Node::Volume(id, VolFile::Weight) => {
            let weight = parse::parse_weight(line)?;
            engine.set_limits(id, |l| l.weight = weight)
        }
        Node::Volume(id, VolFile::MaxSectors) => {
            let cap = parse::parse_max_sectors(line)?;
            engine.set_limits(id, |l| l.max_sectors = cap)
        }
        Node::Volume(id, VolFile::MinFree) => {
            let bytes = parse::parse_byte_size(line)?;
            engine.set_limits(id, |l| l.min_free = bytes)
        }
        Node::Volume(id, VolFile::Remove) => match line.trim() {
            "1" => engine.remove_volume(id, false),
            "force" => engine.remove_volume(id, true),
            other => Err(Error::Invalid(format!(
                "write 1 to remove volume {id}, force to drop unreadable sectors, or cancel; \
                 not {:?}",
                other.chars().take(40).collect::<String>()
            ))),
        },
        Node::Volume(id, VolFile::Detach) => match line.trim() {
            "1" => engine.detach_volume(id),
            other => Err(Error::Invalid(format!(
                "write 1 to detach volume {id}; not {:?}",
                other.chars().take(40).collect::<String>()
            ))),
        },
        Node::Volume(id, VolFile::Redeclare) => match line.trim() {
            "1" => engine.redeclare_volume(id),
            other => Err(Error::Invalid(format!(
                "write 1 to redeclare volume {id}, or cancel; not {:?}",
                other.chars().take(40).collect::<String>()
            ))),
        },
        Node::Volume(id, VolFile::Check) => match line.trim() {
            "1" => engine.check_volume(id),
            other => Err(Error::Invalid(format!(
                "write 1 to check volume {id}, or cancel; not {:?}",
                other.chars().take(40).collect::<String>()
            ))),
        },
        _ => Err(Error::NotPermitted(format!("{node:?} cannot be written"))),
    }
}
