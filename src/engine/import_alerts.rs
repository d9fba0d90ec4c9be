//! What an import (`sectorfs import`) left wrong, raised as alerts at every
//! open for as long as it is still so: roots lost before the import whose
//! contracts (or temp entries) are still there, and sectors the import's
//! `--verify` found corrupt that are still stored (their reads fail). The
//! import's report in the data dir is the record; it is only read here.

use super::{Engine, Severity};
use crate::import::report::{Report, holders_text};

/// Roots named in an alert's message and data; the report has them all.
const NAMED: usize = 10;
const IN_DATA: usize = 100;

impl Engine {
    pub(super) fn raise_import_alerts(&self) {
        let report = match Report::load(&self.data_dir) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(
                    "the import report cannot be read, so its alerts are not raised: {e}"
                );
                return;
            }
        };
        let path = self.data_dir.join(crate::import::REPORT_NAME);
        // a lookup that fails keeps the alert: better said once too often
        let still = |found: crate::error::Result<bool>| {
            found.unwrap_or_else(|e| {
                tracing::warn!("cannot tell whether the import's findings still hold: {e}");
                true
            })
        };
        let height = self.meta.height().unwrap_or_else(|e| {
            tracing::warn!("cannot read the height: {e}");
            0
        });
        let lost: Vec<_> = report
            .lost
            .iter()
            .filter(|l| {
                l.temp.iter().any(|&h| h > height)
                    || l.contracts.iter().any(|e| {
                        still(self.meta.contract_by_name(&e.contract).map(|c| c.is_some()))
                    })
            })
            .collect();
        if !lost.is_empty() {
            let named = lost
                .iter()
                .map(|l| format!("{} ({})", l.root, holders_text(&l.contracts, &l.temp)));
            let what = format!(
                "sectors that contracts hold were lost before the import from {} (no volume \
                 serves them)",
                report.source
            );
            self.raise_import_alert("import-lost", &what, named, &lost, &path);
        }
        let corrupt: Vec<_> = report
            .corrupt
            .iter()
            .filter(|c| {
                still(
                    self.meta
                        .sector_by_id(c.sector_id)
                        .map(|s| s.is_some_and(|s| s.root == c.root)),
                )
            })
            .collect();
        if !corrupt.is_empty() {
            // an imported sector has its one copy: that copy is the bad one
            for c in &corrupt {
                if let Ok(Some(s)) = self.meta.sector_by_id(c.sector_id) {
                    self.corrupt.lock().insert((s.id, s.volume_id));
                    if let Err(e) = self.meta.set_copy_corrupt(s.id, s.volume_id, true) {
                        tracing::error!("cannot record that sector {} is corrupt: {e}", s.root);
                    }
                }
            }
            let named = corrupt
                .iter()
                .map(|c| format!("{} ({})", c.root, holders_text(&c.contracts, &c.temp)));
            let what = "sectors found corrupt by the import's --verify are still stored (their \
                        reads fail)";
            self.raise_import_alert("import-corrupt", what, named, &corrupt, &path);
        }
    }
}

impl Engine {
    /// One alert about `items` (named in its data, the first few also in
    /// its message, each as `named` gives it).
    fn raise_import_alert<T: serde::Serialize>(
        &self,
        key: &str,
        what: &str,
        named: impl Iterator<Item = String>,
        items: &[T],
        report: &std::path::Path,
    ) {
        let named: Vec<String> = named.take(NAMED).collect();
        let more = items.len().saturating_sub(NAMED);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        self.alerts.raise(
            key,
            Severity::Error,
            format!(
                "{} {what}: {}{more}; all are listed in {}",
                items.len(),
                named.join("; "),
                report.display()
            ),
            serde_json::json!({
                "count": items.len(),
                "items": super::alerts::data_of(&items.iter().take(IN_DATA).collect::<Vec<_>>()),
                "report": report,
            }),
        );
    }
}
