//! Integrity bookkeeping: when sectors were last verified, where the scrub
//! goes on from, and the metadata's own consistency.

use rusqlite::params;

use super::db::Meta;
use crate::error::{DbContext, Result};

impl Meta {
    /// Records that these copies (sector, volume) verified at `when` (unix
    /// seconds).
    pub fn mark_checked(&self, copies: &[(i64, u32)], when: i64) -> Result<()> {
        if copies.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE copies SET checked_at = ?1 WHERE sector_id = ?2 AND volume_id = ?3",
                )
                .ctx("recording checked sectors")?;
            for (id, volume) in copies {
                stmt.execute(params![when, id, volume])
                    .ctx("recording checked sectors")?;
            }
            Ok(())
        })
    }

    /// When every copy of a sector was last verified: the oldest of their
    /// check times (`None`: one was not checked since it was stored).
    pub fn checked_at(&self, sector_id: i64) -> Result<Option<i64>> {
        self.read(|c| {
            c.query_row(
                "SELECT CASE WHEN count(checked_at) = count(*) THEN min(checked_at) END \
                 FROM copies WHERE sector_id = ?1",
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
            let checks: [(&str, &str); 10] = [
                (
                    "SELECT count(*) FROM copies c LEFT JOIN volumes v ON v.id = c.volume_id \
                     WHERE v.id IS NULL AND c.volume_id != 0",
                    "sector copies point at a volume that does not exist",
                ),
                (
                    "SELECT count(*) FROM copies c JOIN volumes v ON v.id = c.volume_id \
                     WHERE c.slot < 0 OR c.slot >= v.slots",
                    "sector copies lie outside their volume",
                ),
                (
                    "SELECT count(*) FROM (SELECT volume_id, slot FROM copies \
                     GROUP BY volume_id, slot HAVING count(*) > 1)",
                    "slots are owned by more than one sector copy",
                ),
                (
                    "SELECT count(*) FROM (SELECT sector_id, volume_id FROM copies \
                     GROUP BY sector_id, volume_id HAVING count(*) > 1)",
                    "sectors have two copies on one volume",
                ),
                (
                    "SELECT count(*) FROM copies c LEFT JOIN sectors s ON s.id = c.sector_id \
                     WHERE s.id IS NULL",
                    "sector copies belong to no stored sector",
                ),
                (
                    "SELECT count(*) FROM sectors s WHERE \
                     NOT EXISTS (SELECT 1 FROM copies c WHERE c.sector_id = s.id)",
                    "stored sectors have no copy",
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
                (
                    "SELECT count(*) FROM cold_totals t WHERE \
                     t.objects != (SELECT count(*) FROM copies WHERE volume_id = 0) OR \
                     t.cold_only != (SELECT count(*) FROM copies c WHERE c.volume_id = 0 \
                     AND NOT EXISTS (SELECT 1 FROM copies l \
                     WHERE l.sector_id = c.sector_id AND l.volume_id != 0))",
                    "counts of the cold tier differ from its copies",
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
