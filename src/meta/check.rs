//! Integrity bookkeeping: when sectors were last verified, where the scrub
//! goes on from, and the metadata's own consistency.

use rusqlite::params;

use super::db::Meta;
use crate::error::{DbContext, Result};

impl Meta {
    /// Records that these sectors verified at `when` (unix seconds).
    pub fn mark_checked(&self, sector_ids: &[i64], when: i64) -> Result<()> {
        if sector_ids.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx
                .prepare_cached("UPDATE sectors SET checked_at = ?1 WHERE id = ?2")
                .ctx("recording checked sectors")?;
            for id in sector_ids {
                stmt.execute(params![when, id])
                    .ctx("recording checked sectors")?;
            }
            Ok(())
        })
    }

    /// When a sector was last verified (`None`: only when it was stored).
    pub fn checked_at(&self, sector_id: i64) -> Result<Option<i64>> {
        self.read(|c| {
            c.query_row(
                "SELECT checked_at FROM sectors WHERE id = ?1",
                [sector_id],
                |r| r.get(0),
            )
            .ctx("reading a check time")
        })
    }

    pub fn scrub_cursor(&self) -> Result<i64> {
        self.read(|c| {
            c.query_row(
                "SELECT value FROM settings WHERE key = 'scrub_cursor'",
                [],
                |r| r.get(0),
            )
            .ctx("reading the scrub cursor")
        })
    }

    pub fn set_scrub_cursor(&self, after_id: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE settings SET value = ?1 WHERE key = 'scrub_cursor'",
                [after_id],
            )
            .ctx("saving the scrub cursor")?;
            Ok(())
        })
    }

    /// Every way the metadata contradicts itself, in words (empty: none).
    pub fn consistency_problems(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let mut problems = Vec::new();
            let integrity: String = c
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .ctx("checking the database's integrity")?;
            if integrity != "ok" {
                problems.push(format!("the database file is damaged: {integrity}"));
            }
            let checks: [(&str, &str); 6] = [
                (
                    "SELECT count(*) FROM sectors s LEFT JOIN volumes v ON v.id = s.volume_id \
                     WHERE v.id IS NULL",
                    "sectors point at a volume that does not exist",
                ),
                (
                    "SELECT count(*) FROM sectors s JOIN volumes v ON v.id = s.volume_id \
                     WHERE s.slot < 0 OR s.slot >= v.slots",
                    "sectors lie outside their volume",
                ),
                (
                    "SELECT count(*) FROM (SELECT volume_id, slot FROM sectors \
                     GROUP BY volume_id, slot HAVING count(*) > 1)",
                    "slots are owned by more than one sector",
                ),
                (
                    "SELECT count(*) FROM contract_entries e LEFT JOIN sectors s \
                     ON s.id = e.sector_id WHERE s.id IS NULL",
                    "contract entries point at a sector that is not stored",
                ),
                (
                    "SELECT count(*) FROM temp_entries t LEFT JOIN sectors s \
                     ON s.id = t.sector_id WHERE s.id IS NULL",
                    "temp entries point at a sector that is not stored",
                ),
                (
                    "SELECT count(*) FROM sectors s WHERE \
                     NOT EXISTS (SELECT 1 FROM pins p WHERE p.sector_id = s.id) AND \
                     NOT EXISTS (SELECT 1 FROM contract_entries e WHERE e.sector_id = s.id) AND \
                     NOT EXISTS (SELECT 1 FROM temp_entries t WHERE t.sector_id = s.id)",
                    "stored sectors have no reference left (their slots leak)",
                ),
            ];
            for (sql, what) in checks {
                let n: i64 = c
                    .query_row(sql, [], |r| r.get(0))
                    .ctx("checking consistency")?;
                if n > 0 {
                    problems.push(format!("{n} {what}"));
                }
            }
            let pins_orphan: i64 = c
                .query_row(
                    "SELECT count(*) FROM pins p LEFT JOIN sectors s ON s.id = p.sector_id \
                     WHERE s.id IS NULL",
                    [],
                    |r| r.get(0),
                )
                .ctx("checking consistency")?;
            if pins_orphan > 0 {
                problems.push(format!(
                    "{pins_orphan} pins point at a sector that is not stored"
                ));
            }
            Ok(problems)
        })
    }
}
