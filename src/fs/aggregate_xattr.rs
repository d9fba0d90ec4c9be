//! The aggregates as extended attributes (`user.sectorfs.<figure>`, the
//! figures of `figures::AGGREGATE`) of the nodes that carry them.

use super::filesystem::SectorFs;
use super::inode::Node;
use crate::engine::{AggregateView, Scope};
use crate::error::{Error, Result};
use crate::figures::AGGREGATE;

const PREFIX: &str = "user.sectorfs.";

/// Names `user.sectorfs.unhealthy` gives at most: 500 of the longest
/// names (128 bytes and a newline) fit an attribute's 64 KiB.
pub const UNHEALTHY_NAMES: usize = 500;

/// The aggregates of `node`, if it carries any.
fn scope_of(node: Node) -> Option<Option<Scope>> {
    Some(match node {
        Node::Root => None,
        Node::Contract(id) => Some(Scope::Contract(id)),
        Node::ContractsDir => Some(Scope::Contracts),
        Node::TempHeight(h) => Some(Scope::Temp(h)),
        Node::TempDir => Some(Scope::Temps),
        Node::VolumeDir(v) => Some(Scope::Volume(v)),
        _ => return None,
    })
}

impl SectorFs {
    /// `Some` value of aggregate attribute `name` of `node`; `None` when
    /// the node carries no aggregates or the name is not one of them.
    pub(super) fn aggregate_xattr(&self, node: Node, name: &str) -> Result<Option<String>> {
        let Some(scope) = scope_of(node) else {
            return Ok(None);
        };
        let Some(wanted) = name.strip_prefix(PREFIX) else {
            return Ok(None);
        };
        // `unhealthy` of /contracts, not listed: the names of the contracts
        // whose health is below 1, worst first, one a line, at most
        // UNHEALTHY_NAMES (`sectorfs contracts --unhealthy` reads all of
        // them when there are that many)
        if node == Node::ContractsDir && wanted == "unhealthy" {
            let worst = self.engine.contracts_by_health(true, UNHEALTHY_NAMES)?;
            return Ok(Some(worst.into_iter().map(|(n, _)| n + "\n").collect()));
        }
        // `aggregates`, not listed: every figure at once, `name=value`
        // separated by spaces (one call per contract for `sectorfs
        // contracts`)
        let figures: Vec<_> = AGGREGATE
            .iter()
            .filter(|f| wanted == "aggregates" || f.name == wanted)
            .collect();
        if figures.is_empty() {
            return Ok(None);
        }
        if let Some(Scope::Contract(id)) = scope
            && self.engine.contract_name(id)?.is_none()
        {
            return Err(Error::NotFound(format!("contract #{id} was removed")));
        }
        let oldest = figures.iter().any(|f| f.name == "oldest_check");
        let view: AggregateView = match scope {
            Some(scope) => self.engine.aggregate(scope, oldest)?,
            None => self.engine.root_aggregate(oldest)?,
        };
        Ok(Some(match figures[..] {
            [one] if wanted != "aggregates" => (one.value)(&view),
            _ => figures
                .iter()
                .map(|f| format!("{}={}", f.name, (f.value)(&view)))
                .collect::<Vec<_>>()
                .join(" "),
        }))
    }

    /// The aggregate attribute names of `node`, each followed by a NUL.
    pub(super) fn aggregate_xattr_names(&self, node: Node) -> Vec<u8> {
        if scope_of(node).is_none() {
            return Vec::new();
        }
        AGGREGATE
            .iter()
            .flat_map(|f| PREFIX.bytes().chain(f.name.bytes()).chain([0]))
            .collect()
    }
}
