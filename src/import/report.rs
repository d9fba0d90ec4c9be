//! What an import did: `import-report.json` in the data dir and the summary
//! printed at the end. The first mount raises alerts from it for what is
//! still wrong (lost roots of contracts that still exist, corrupt sectors
//! still stored).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::merkle::Root;
use crate::meta::Holders;

pub const REPORT_NAME: &str = "import-report.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// `hostd` or `siad`.
    pub source: String,
    /// hostd's schema version, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostd_db_version: Option<i64>,
    /// Unix seconds when the import finished.
    pub finished_at: i64,
    pub seconds: f64,
    pub volumes: Vec<VolumeReport>,
    /// Sectors stored in the new store (referenced, or pinned).
    pub sectors: u64,
    pub contracts: u64,
    pub contract_entries: u64,
    /// Contracts left out because they were resolved (or rejected).
    pub contracts_resolved: u64,
    pub temp_entries: u64,
    /// Sectors no contract or temp entry held: freed (their slots punched
    /// at the first mount), or pinned with `--pin-unreferenced`.
    pub freed: u64,
    pub pinned: u64,
    /// Sectors hashed by `--verify` (absent: not verified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<u64>,
    /// Roots that contracts or temp storage hold and no volume serves.
    pub lost: Vec<Lost>,
    /// Sectors whose bytes do not hash to their root (`--verify`).
    pub corrupt: Vec<Corrupt>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VolumeReport {
    pub id: u32,
    pub path: PathBuf,
    pub slots: u64,
    pub readonly: bool,
    /// `ready`, or `unavailable` (its file is missing or short).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Sectors stored in it after the import.
    pub sectors: u64,
    /// Slots read by a rescan (siad): allocated ones only, holes skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slots_read: Option<u64>,
}

/// A contract entry: the contract (its file name in `/contracts`) and the
/// entry's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub contract: String,
    pub index: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lost {
    pub root: Root,
    pub reason: String,
    pub contracts: Vec<Entry>,
    /// Heights of temp entries that held it.
    pub temp: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Corrupt {
    pub root: Root,
    pub sector_id: i64,
    pub volume: u32,
    pub slot: u64,
    pub reason: String,
    pub contracts: Vec<Entry>,
    pub temp: Vec<u64>,
}

impl Lost {
    /// What holds a lost root, as recorded in the new store.
    pub fn held(root: Root, reason: String, holders: Holders) -> Lost {
        Lost {
            root,
            reason,
            contracts: entries(holders.contracts),
            temp: holders.temp,
        }
    }
}

pub(super) fn entries(contracts: Vec<(String, u64)>) -> Vec<Entry> {
    contracts
        .into_iter()
        .map(|(contract, index)| Entry { contract, index })
        .collect()
}

impl Report {
    /// Writes the report to `dir/import-report.json`, atomically and
    /// durably (a temporary file renamed into place).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(REPORT_NAME);
        let text = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Invalid(format!("cannot write the import report: {e}")))?;
        crate::volume::sidecar::replace_file(&path, |f| {
            f.write_all(&text)?;
            f.write_all(b"\n")
        })
        .io_ctx(|| format!("cannot write the import report {}", path.display()))
    }

    /// The report in `dir`, if an import left one.
    pub fn load(dir: &Path) -> Result<Option<Report>> {
        let path = dir.join(REPORT_NAME);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("cannot read {}", path.display()), e)),
        };
        serde_json::from_slice(&text).map(Some).map_err(|e| {
            Error::Invalid(format!(
                "the import report {} is damaged: {e}",
                path.display()
            ))
        })
    }

    /// The summary printed at the end, with the warning about the old
    /// host.
    pub fn summary(&self, data_dir: &Path) -> String {
        let mut s = String::new();
        let unavailable = self.volumes.iter().filter(|v| v.state != "ready").count();
        s.push_str(&format!(
            "imported from {} in {:.1}s into {}\n",
            self.source,
            self.seconds,
            data_dir.display()
        ));
        s.push_str(&format!(
            "  volumes       {} ({unavailable} unavailable)\n",
            self.volumes.len()
        ));
        for v in &self.volumes {
            let why = v
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            s.push_str(&format!(
                "    {:>3}  {}  {} slots, {} sectors{}  {}{why}\n",
                v.id,
                v.path.display(),
                v.slots,
                v.sectors,
                if v.readonly { ", read-only" } else { "" },
                v.state
            ));
        }
        s.push_str(&format!("  sectors       {}\n", self.sectors));
        s.push_str(&format!(
            "  contracts     {} ({} entries; {} resolved ones left out)\n",
            self.contracts, self.contract_entries, self.contracts_resolved
        ));
        s.push_str(&format!("  temp entries  {}\n", self.temp_entries));
        s.push_str(&format!(
            "  freed         {} (unreferenced; pinned instead: {})\n",
            self.freed, self.pinned
        ));
        s.push_str(&format!("  lost          {}\n", self.lost.len()));
        let verified = match self.verified {
            Some(n) => format!("{n} sectors verified"),
            None => "not verified (run with --verify, or let the scrub verify)".into(),
        };
        s.push_str(&format!(
            "  corrupt       {} ({verified})\n",
            self.corrupt.len()
        ));
        for l in self.lost.iter().take(20) {
            s.push_str(&format!(
                "  LOST     {} ({}): {}\n",
                l.root,
                l.reason,
                holders_text(&l.contracts, &l.temp)
            ));
        }
        for c in self.corrupt.iter().take(20) {
            s.push_str(&format!(
                "  CORRUPT  {} in volume {} slot {}: {}\n",
                c.root,
                c.volume,
                c.slot,
                holders_text(&c.contracts, &c.temp)
            ));
        }
        if self.lost.len() > 20 || self.corrupt.len() > 20 {
            s.push_str("  (the rest are in the report)\n");
        }
        s.push_str(&format!(
            "report: {}\n\nWARNING: do not start {} on these volume files again. sectorfs now \
             owns them: it frees, punches and reuses slots that {} still thinks it holds.\n",
            data_dir.join(REPORT_NAME).display(),
            self.source,
            self.source
        ));
        s
    }
}

/// "contract X entry 3, temp height 120" for a lost or corrupt root.
pub fn holders_text(contracts: &[Entry], temp: &[u64]) -> String {
    let mut parts: Vec<String> = contracts
        .iter()
        .map(|e| format!("contract {} entry {}", e.contract, e.index))
        .collect();
    parts.extend(temp.iter().map(|h| format!("temp height {h}")));
    if parts.is_empty() {
        return "held by nothing".into();
    }
    parts.join(", ")
}
