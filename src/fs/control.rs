//! The generated files: what reading each one shows, and what writing a
//! line to a control file does.

use std::path::Path;
use std::sync::Arc;

use super::inode::{Node, VolFile};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::parse::{self, StatusCommand};
use crate::report;

/// Current content of a generated (non-sector, non-contract) file.
pub fn content(engine: &Engine, node: Node) -> Result<Vec<u8>> {
    let text = match node {
        Node::Height => format!("{}\n", engine.height()?),
        Node::VolumesAdd => String::new(),
        Node::Status => report::status_text(engine)?,
        Node::StatusJson => report::status_json(engine)?,
        Node::Metrics => report::metrics(engine)?,
        Node::Volume(id, f) => volume_file(engine, id, f)?,
        _ => return Err(Error::Invalid(format!("{node:?} is not a generated file"))),
    };
    Ok(text.into_bytes())
}

fn volume_file(engine: &Engine, id: u32, f: VolFile) -> Result<String> {
    let v = engine.volume_info(id)?;
    Ok(match f {
        VolFile::Path => format!("{}\n", v.path.display()),
        VolFile::Uuid => format!("{}\n", v.uuid),
        VolFile::Slots => format!("{}\n", v.slots),
        VolFile::Used => format!("{}\n", v.used),
        VolFile::Readonly => format!("{}\n", v.readonly as u8),
        VolFile::State => format!("{}\n", v.state),
        VolFile::Stats => {
            let s = v.stats;
            format!(
                "reads {}\nwrites {}\nread_errors {}\nwrite_errors {}\ncorrupt {}\nbytes_read {}\n",
                s.reads, s.writes, s.read_errors, s.write_errors, s.corrupt, s.bytes_read
            )
        }
        VolFile::Remove | VolFile::Check => String::new(),
    })
}

/// Applies one line written to a control file. `mountpoint` guards against
/// a volume inside the mount itself.
pub fn apply(engine: &Arc<Engine>, node: Node, line: &str, mountpoint: &Path) -> Result<()> {
    match node {
        Node::VolumesAdd => {
            let (path, slots) = parse::parse_volume_add(line)?;
            // through symlinks too: the directory as the kernel resolves it
            let real_dir = path
                .parent()
                .and_then(|d| std::fs::canonicalize(d).ok())
                .unwrap_or_default();
            if path.starts_with(mountpoint) || real_dir.starts_with(mountpoint) {
                return Err(Error::Invalid(format!(
                    "{} is inside the sectorfs mount itself; put volumes on real disks",
                    path.display()
                )));
            }
            engine.add_volume(&path, slots).map(|_| ())
        }
        Node::Height => engine.set_height(parse::parse_height(line)?),
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
        Node::Volume(id, VolFile::Slots | VolFile::Remove | VolFile::Check)
            if line.trim() == "cancel" =>
        {
            engine.cancel_job(id)
        }
        Node::Volume(id, VolFile::Slots) => engine.resize_volume(id, parse::parse_size(line)?),
        Node::Volume(id, VolFile::Remove) => match line.trim() {
            "1" => engine.remove_volume(id, false),
            "force" => engine.remove_volume(id, true),
            other => Err(Error::Invalid(format!(
                "write 1 to remove volume {id}, force to drop unreadable sectors, or cancel; \
                 not {:?}",
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
