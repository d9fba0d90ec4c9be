//! The generated files: what reading each one shows. Generated at open,
//! so a read always shows the present.

use super::inode::{Node, VolFile};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::report;

/// Current content of a generated (non-sector, non-contract) file.
pub fn content(engine: &Engine, node: Node) -> Result<Vec<u8>> {
    let text = match node {
        Node::Height => format!("{}\n", engine.height()?),
        Node::Copies => {
            let c = engine.copies_setting();
            format!("{} {}\n", c.min, c.max)
        }
        Node::VolumesAdd | Node::VolumesAttach => String::new(),
        Node::Status => report::status_text(engine)?,
        Node::StatusJson => report::status_json(engine)?,
        Node::Metrics => report::metrics(engine)?,
        Node::ColdStats => report::cold_stats(engine)?,
        Node::CacheStats => report::cache_stats(engine),
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
                "reads {}\nwrites {}\nread_errors {}\nwrite_errors {}\ncorrupt {}\nhealed {}\n\
                 bytes_read {}\n",
                s.reads, s.writes, s.read_errors, s.write_errors, s.corrupt, s.healed, s.bytes_read
            )
        }
        VolFile::Weight => format!("{}\n", v.limits.weight),
        VolFile::MaxSectors => format!("{}\n", v.limits.max_sectors),
        VolFile::MinFree => format!("{}\n", size_text(v.limits.min_free)),
        VolFile::Remove | VolFile::Check | VolFile::Detach | VolFile::Redeclare => String::new(),
    })
}

/// A byte size as written back it means the same: in the largest binary
/// unit it is a whole number of (`512MiB`); `0` for none.
fn size_text(bytes: u64) -> String {
    let units = [
        ("PiB", 50),
        ("TiB", 40),
        ("GiB", 30),
        ("MiB", 20),
        ("KiB", 10),
    ];
    match units
        .iter()
        .find(|(_, shift)| bytes.trailing_zeros() >= *shift)
    {
        _ if bytes == 0 => "0".into(),
        Some((unit, shift)) => format!("{}{unit}", bytes >> shift),
        None => format!("{bytes}B"),
    }
}
