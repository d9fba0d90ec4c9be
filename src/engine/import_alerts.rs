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
        let height = self.meta.height().unwrap_or(0);
        let lost: Vec<_> = report
            .lost
            .iter()
            .filter(|l| {
                l.temp.iter().any(|&h| h > height)
                    || l.contracts.iter().any(|e| {
                        self.meta
                            .contract_by_name(&e.contract)
                            .is_ok_and(|c| c.is_some())
                    })
            })
            .collect();
        if !lost.is_empty() {
            let named: Vec<String> = lost
                .iter()
                .take(NAMED)
                .map(|l| format!("{} ({})", l.root, holders_text(&l.contracts, &l.temp)))
                .collect();
            let more = lost.len().saturating_sub(NAMED);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            self.alerts.raise(
                "import-lost",
                Severity::Error,
                format!(
                    "{} sectors that contracts hold were lost before the import from {} (no \
                     volume serves them): {}{more}; all are listed in {}",
                    lost.len(),
                    report.source,
                    named.join("; "),
                    path.display()
                ),
                serde_json::json!({
                    "count": lost.len(),
                    "lost": super::alerts::data_of(&lost.iter().take(IN_DATA).collect::<Vec<_>>()),
                    "report": path,
                }),
            );
        }
        let corrupt: Vec<_> = report
            .corrupt
            .iter()
            .filter(|c| {
                self.meta
                    .sector_by_id(c.sector_id)
                    .is_ok_and(|s| s.is_some_and(|s| s.root == c.root))
            })
            .collect();
        if !corrupt.is_empty() {
            self.corrupt
                .lock()
                .extend(corrupt.iter().map(|c| c.sector_id));
            let named: Vec<String> = corrupt
                .iter()
                .take(NAMED)
                .map(|c| format!("{} ({})", c.root, holders_text(&c.contracts, &c.temp)))
                .collect();
            let more = corrupt.len().saturating_sub(NAMED);
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            self.alerts.raise(
                "import-corrupt",
                Severity::Error,
                format!(
                    "{} sectors found corrupt by the import's --verify are still stored (their \
                     reads fail): {}{more}; all are listed in {}",
                    corrupt.len(),
                    named.join("; "),
                    path.display()
                ),
                serde_json::json!({
                    "count": corrupt.len(),
                    "corrupt": super::alerts::data_of(&corrupt.iter().take(IN_DATA).collect::<Vec<_>>()),
                    "report": path,
                }),
            );
        }
    }
}
