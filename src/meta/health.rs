//! What the aggregates are computed from and read as: the volumes out of
//! service, copies known corrupt, the background pass that brings the
//! sectors' condition up to date after those change, and the readings
//! (one scope, contracts worst first, the check's recount).

use rusqlite::{Connection, OptionalExtension, params};

use super::aggregates::{
    Agg, Deltas, Scope, get_in, oldest_check_in, rebuild_in, recounted_all, reset_conditions_in,
    restate_in, restate_into, stored_all,
};
use super::db::Meta;
use crate::error::{DbContext, Result};

/// One scope's aggregates as the mount shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateView {
    pub agg: Agg,
    /// Unix seconds; `None` when the scope holds no sector.
    pub oldest_check: Option<i64>,
    /// Unix seconds when they were last exact (now, unless a background
    /// pass is due).
    pub as_of: i64,
}

/// A volume as the sectors' condition sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeHealth {
    pub id: u32,
    /// Out of service: its copies are not ready (unavailable, or being
    /// removed).
    pub out: bool,
    /// The device (`st_dev`) its file is on, when known.
    pub device: Option<u64>,
}

/// A background pass under way: what is left of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassStep {
    /// Sectors whose condition changed.
    pub changed: u64,
    /// Whether a pass is still due after this step.
    pub more: bool,
}

impl Meta {
    /// Fills the aggregates from the tables when a migration asked for it
    /// (at open, before anything reads them).
    pub(super) fn rebuild_aggregates_if_asked(&self) -> Result<()> {
        self.write(|tx| {
            let asked = tx
                .query_row(
                    "SELECT 1 FROM settings WHERE key = 'aggregates_rebuild'",
                    [],
                    |_| Ok(()),
                )
                .optional()
                .ctx("looking for a rebuild of the aggregates")?
                .is_some();
            if asked {
                reset_conditions_in(tx)?;
                rebuild_in(tx)?;
                tx.execute("DELETE FROM settings WHERE key = 'aggregates_rebuild'", [])
                    .ctx("rebuilding the aggregates")?;
            }
            Ok(())
        })
    }

    /// Recomputes every aggregate from the tables (synthetic stores).
    pub fn rebuild_aggregates(&self) -> Result<()> {
        self.write(|tx| {
            reset_conditions_in(tx)?;
            rebuild_in(tx)?;
            request_pass_in(tx, 0)
        })
    }

    /// One scope's aggregates; `oldest_check` only `with_oldest_check`,
    /// looked up now (its cost is the scope's entries for a contract or
    /// temp height, an index walk per volume for the others).
    pub fn aggregate(&self, scope: Scope, with_oldest_check: bool) -> Result<AggregateView> {
        self.read(|c| {
            let tx = c.unchecked_transaction().ctx("reading aggregates")?;
            Ok(AggregateView {
                agg: get_in(&tx, scope)?,
                oldest_check: oldest_check_if(&tx, scope, with_oldest_check)?,
                as_of: as_of_in(&tx)?,
            })
        })
    }

    /// The root's aggregates: every reference (pins, contract and temp
    /// entries) over the store's sectors (`oldest_check` as for
    /// [`aggregate`](Self::aggregate)).
    pub fn root_aggregate(&self, with_oldest_check: bool) -> Result<AggregateView> {
        self.read(|c| {
            let tx = c.unchecked_transaction().ctx("reading aggregates")?;
            let mut agg = get_in(&tx, Scope::Pins)?
                .plus(get_in(&tx, Scope::Contracts)?)
                .plus(get_in(&tx, Scope::Temps)?);
            agg.sectors = get_in(&tx, Scope::Store)?.sectors;
            Ok(AggregateView {
                agg,
                oldest_check: oldest_check_if(&tx, Scope::Store, with_oldest_check)?,
                as_of: as_of_in(&tx)?,
            })
        })
    }

    /// Store-wide counts, read from their rows (no count of the tables):
    /// the store, and sectors by number of ready copies.
    pub fn store_totals(&self) -> Result<(Agg, Vec<(u32, u64)>)> {
        self.read(|c| {
            let tx = c.unchecked_transaction().ctx("reading the totals")?;
            let store = get_in(&tx, Scope::Store)?;
            let by_ready = tx
                .prepare_cached(
                    "SELECT key, entries FROM aggregates WHERE kind = 8 AND entries > 0 \
                     ORDER BY key",
                )
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                        .collect::<rusqlite::Result<_>>()
                })
                .ctx("reading the totals")?;
            Ok((store, by_ready))
        })
    }

    /// Contracts (name, aggregates), worst health first (then by name);
    /// only those below 1 if `unhealthy_only`; `limit` at most.
    pub fn contracts_by_health(
        &self,
        unhealthy_only: bool,
        limit: usize,
    ) -> Result<Vec<(String, Agg)>> {
        self.read(|c| {
            // the unhealthy ones from the aggregates' rows alone (no look
            // at each contract), so /status stays cheap at any size
            let from = if unhealthy_only {
                "FROM aggregates a JOIN contracts c ON c.id = a.key \
                 WHERE a.kind = 1 AND a.unhealthy > 0 AND ?1"
            } else {
                "FROM contracts c LEFT JOIN aggregates a ON a.kind = 1 AND a.key = c.id \
                 WHERE NOT ?1"
            };
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT c.name, coalesce(a.entries, 0), coalesce(a.sectors, 0), \
                        coalesce(a.unhealthy, 0), coalesce(a.unavailable, 0), \
                        coalesce(a.corrupt, 0), coalesce(a.lost, 0), coalesce(a.cold, 0), \
                        coalesce(a.shared, 0) {from} \
                     ORDER BY CASE WHEN a.entries > 0 \
                        THEN CAST(a.entries - a.unhealthy AS REAL) / a.entries ELSE 1 END, \
                        c.name LIMIT ?2"
                ))
                .ctx("listing contracts by health")?;
            stmt.query_map(params![unhealthy_only, limit as i64], |r| {
                Ok((r.get(0)?, Agg::row_at(r, 1)?))
            })
            .ctx("listing contracts by health")?
            .collect::<rusqlite::Result<_>>()
            .ctx("listing contracts by health")
        })
    }

    /// How many contracts have an entry whose sector has fewer than `min`
    /// ready copies.
    pub fn unhealthy_contracts(&self) -> Result<u64> {
        self.read(|c| {
            c.prepare_cached("SELECT count(*) FROM aggregates WHERE kind = 1 AND unhealthy > 0")
                .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                .map(|n| n as u64)
                .ctx("counting unhealthy contracts")
        })
    }

    /// Records which volumes are out of service and their devices; each
    /// that changed gets a background pass over its copies, asked for in
    /// the same transaction. True if any was asked for.
    pub fn sync_volume_health(&self, volumes: &[VolumeHealth]) -> Result<bool> {
        self.write(|tx| {
            let mut asked = false;
            for v in volumes {
                let stored: Option<(bool, Option<i64>)> = tx
                    .prepare_cached("SELECT out, device FROM volume_health WHERE volume_id = ?1")
                    .and_then(|mut s| {
                        s.query_row([v.id], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .ctx("reading a volume's health")?;
                let now = (v.out, v.device.map(|d| d as i64));
                if stored == Some(now) {
                    continue;
                }
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO volume_health (volume_id, out, device) \
                     VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![v.id, now.0, now.1]))
                .ctx("recording a volume's health")?;
                request_pass_in(tx, v.id)?;
                asked = true;
            }
            Ok(asked)
        })
    }

    /// Copy (`sector`, `volume`) was found corrupt (`true`) or rewritten
    /// good: the sector's condition, and every aggregate holding it,
    /// follow in the same transaction.
    pub fn set_copy_corrupt(&self, sector: i64, volume: u32, corrupt: bool) -> Result<()> {
        self.write(|tx| {
            let sql = if corrupt {
                "INSERT OR IGNORE INTO corrupt_copies (sector_id, volume_id) \
                 SELECT sector_id, volume_id FROM copies WHERE sector_id = ?1 AND volume_id = ?2"
            } else {
                "DELETE FROM corrupt_copies WHERE sector_id = ?1 AND volume_id = ?2"
            };
            tx.prepare_cached(sql)
                .and_then(|mut s| s.execute(params![sector, volume]))
                .ctx("recording a corrupt copy")?;
            restate_in(tx, sector).map(|_| ())
        })
    }

    /// Copies known corrupt (sector, volume), as recorded.
    pub fn corrupt_copies(&self) -> Result<Vec<(i64, u32)>> {
        self.read(|c| {
            c.prepare_cached("SELECT sector_id, volume_id FROM corrupt_copies")
                .and_then(|mut s| {
                    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<_>>()
                })
                .ctx("reading corrupt copies")
        })
    }

    /// Whether a background pass is due (a read: no write transaction
    /// when none is).
    pub fn health_pass_due(&self) -> Result<bool> {
        self.read(pass_due_in)
    }

    /// One step of the oldest background pass due: up to `batch` sectors
    /// brought up to date in one transaction, its cursor saved with them
    /// (a crash resumes it there). `None` when no pass is due.
    pub fn health_pass_step(&self, batch: usize) -> Result<Option<PassStep>> {
        self.write(|tx| {
            let due: Option<(u32, i64)> = tx
                .query_row(
                    "SELECT volume_id, cursor FROM health_passes \
                     ORDER BY requested_at, volume_id LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .ctx("finding a health pass")?;
            let Some((volume, cursor)) = due else {
                return Ok(None);
            };
            // (sector, where the pass goes on after it)
            let ids: Vec<(i64, i64)> = if volume == 0 {
                tx.prepare_cached("SELECT id, id FROM sectors WHERE id > ?1 ORDER BY id LIMIT ?2")
            } else {
                tx.prepare_cached(
                    "SELECT sector_id, slot FROM copies WHERE volume_id = ?3 AND slot > ?1 \
                     ORDER BY slot LIMIT ?2",
                )
            }
            .and_then(|mut s| {
                let p = params![cursor, batch as i64, volume];
                let p = &p[..if volume == 0 { 2 } else { 3 }];
                s.query_map(p, |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()
            })
            .ctx("walking a health pass")?;
            let mut changed = 0;
            let mut deltas = Deltas::default();
            for &(id, _) in &ids {
                changed += restate_into(tx, id, &mut deltas)? as u64;
            }
            deltas.apply(tx)?;
            match ids.last() {
                Some(&(_, next)) if ids.len() == batch => {
                    tx.execute(
                        "UPDATE health_passes SET cursor = ?2 WHERE volume_id = ?1",
                        params![volume, next],
                    )
                    .ctx("saving a health pass's cursor")?;
                }
                _ => {
                    tx.execute("DELETE FROM health_passes WHERE volume_id = ?1", [volume])
                        .ctx("ending a health pass")?;
                }
            }
            let more = tx
                .query_row("SELECT EXISTS (SELECT 1 FROM health_passes)", [], |r| {
                    r.get(0)
                })
                .ctx("finding a health pass")?;
            Ok(Some(PassStep { changed, more }))
        })
    }

    /// Every aggregate that differs from a recount of the tables, and,
    /// unless a background pass is due, every sector whose recorded
    /// condition differs from its copies', in words (empty: none).
    pub fn aggregate_differences(&self) -> Result<Vec<String>> {
        self.read(|c| {
            let tx = c.unchecked_transaction().ctx("recounting the aggregates")?;
            let stored = stored_all(&tx)?;
            let recounted = recounted_all(&tx)?;
            let mut out = Vec::new();
            let scopes: std::collections::BTreeSet<_> =
                stored.keys().chain(recounted.keys()).collect();
            for scope in scopes {
                let (s, r) = (
                    stored.get(scope).copied().unwrap_or_default(),
                    recounted.get(scope).copied().unwrap_or_default(),
                );
                if s != r {
                    out.push(format!(
                        "the aggregates of {scope:?} say {s:?}, a recount {r:?}"
                    ));
                }
            }
            if !pass_due_in(&tx)? {
                let ids: Vec<i64> = tx
                    .prepare("SELECT id FROM sectors")
                    .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                    .ctx("recounting the sectors' condition")?;
                let mut wrong = 0u64;
                for id in ids {
                    // in this read transaction, what a restate would change
                    wrong += super::aggregates::condition_stale_in(&tx, id)? as u64;
                }
                if wrong > 0 {
                    out.push(format!(
                        "{} a recorded condition (ready copies, corrupt, unavailable) that \
                         differs from its copies",
                        crate::plural::count(wrong, "sector")
                    ));
                }
            }
            Ok(out)
        })
    }
}

fn pass_due_in(c: &Connection) -> Result<bool> {
    c.query_row("SELECT EXISTS (SELECT 1 FROM health_passes)", [], |r| {
        r.get(0)
    })
    .ctx("finding a health pass")
}

/// When the aggregates were last exact: now, or when the oldest pass due
/// was asked for.
fn as_of_in(c: &Connection) -> Result<i64> {
    let oldest: Option<i64> = c
        .prepare_cached("SELECT min(requested_at) FROM health_passes")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .ctx("reading when the aggregates were exact")?;
    Ok(oldest.unwrap_or_else(unix_now))
}

/// Asks for a pass over volume `volume`'s copies (0: every sector), from
/// its start; one due already starts over.
pub(super) fn request_pass_in(c: &Connection, volume: u32) -> Result<()> {
    let now = unix_now();
    c.prepare_cached(
        "INSERT INTO health_passes (volume_id, cursor, requested_at) VALUES (?1, -1, ?2) \
         ON CONFLICT (volume_id) DO UPDATE SET cursor = -1",
    )
    .and_then(|mut s| s.execute(params![volume, now]))
    .ctx("asking for a health pass")?;
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The oldest check of `scope` when `wanted` (none otherwise: not asked).
fn oldest_check_if(c: &Connection, scope: Scope, wanted: bool) -> Result<Option<i64>> {
    if wanted {
        oldest_check_in(c, scope)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::Root;
    use crate::meta::{ContractEdit, CopiesSetting, Move, Reference};

    fn root(n: u8) -> Root {
        Root([n; 32])
    }

    fn exact(meta: &Meta, after: &str) {
        let diffs = meta.aggregate_differences().unwrap();
        assert!(diffs.is_empty(), "after {after}: {diffs:#?}");
    }

    fn drain(meta: &Meta) {
        while meta.health_pass_step(3).unwrap().is_some() {}
    }

    /// Every change path keeps the aggregates equal to a recount, and a
    /// volume out of service or a corrupt copy lowers the health of
    /// exactly the contracts holding its sectors once the pass ran.
    #[test]
    fn aggregates_match_a_recount_after_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("db")).unwrap();
        let a = meta.insert_volume("a", &dir.path().join("a"), 100).unwrap();
        let b = meta.insert_volume("b", &dir.path().join("b"), 100).unwrap();
        let yes = |_: u32| true;
        for n in 0..8u8 {
            let slots = if n % 2 == 0 {
                vec![(a, n as u64)]
            } else {
                vec![(a, n as u64), (b, n as u64)]
            };
            meta.insert_sector(&root(n), &slots, 1, Reference::Pin, &yes)
                .unwrap();
            exact(&meta, "a store");
        }
        meta.insert_sector(&root(20), &[(b, 20)], 1, Reference::Temp(5), &yes)
            .unwrap();
        meta.add_reference(&root(1), Reference::Temp(5)).unwrap();
        meta.add_reference(&root(1), Reference::Temp(7)).unwrap();
        exact(&meta, "temp entries");
        let r = |ns: &[u8]| ns.iter().map(|n| root(*n)).collect::<Vec<_>>();
        meta.revise_contract("c1", &r(&[0, 1, 1, 2]), ContractEdit::Replace)
            .unwrap();
        meta.revise_contract("c2", &r(&[1, 3]), ContractEdit::Replace)
            .unwrap();
        exact(&meta, "contracts");
        meta.revise_contract("c1", &r(&[3, 0]), ContractEdit::Append)
            .unwrap();
        exact(&meta, "an append");
        meta.revise_contract("c2", &r(&[4, 4]), ContractEdit::Replace)
            .unwrap();
        exact(&meta, "a replace");
        meta.rename_contract("c2", "c1", true).unwrap();
        exact(&meta, "a rename");
        meta.revise_contract("c3", &r(&[5, 20]), ContractEdit::Replace)
            .unwrap();
        let c3 = meta.contract_by_name("c3").unwrap().unwrap();
        meta.empty_contract_if_unrevised(c3.id, c3.revision, c3.end)
            .unwrap();
        exact(&meta, "a late truncation");
        meta.unpin(&root(6)).unwrap();
        meta.remove_temp(5, &root(1)).unwrap();
        exact(&meta, "removals");
        meta.set_height(5).unwrap();
        exact(&meta, "a height");
        let id = |n: u8| meta.lookup(&root(n)).unwrap().unwrap().id;
        meta.add_copies(&[(id(0), b, 50), (id(2), b, 52)], 1, &|| true)
            .unwrap();
        assert!(meta.drop_copy(id(1), a, 1).unwrap());
        exact(&meta, "copies added and dropped");
        let moves = [Move {
            sector_id: id(2),
            from_volume: a,
            from_slot: 2,
            to_volume: a,
            to_slot: 60,
        }];
        meta.relocate(&moves, &|| true).unwrap();
        exact(&meta, "a move");
        meta.set_copies_setting(CopiesSetting { min: 2, max: 2 })
            .unwrap();
        drain(&meta);
        exact(&meta, "min 2");
        let c1 = meta
            .aggregate(
                Scope::Contract(meta.contract_by_name("c1").unwrap().unwrap().id),
                false,
            )
            .unwrap();
        assert!(c1.agg.unhealthy > 0, "{c1:?}");
        meta.set_copies_setting(CopiesSetting { min: 1, max: 1 })
            .unwrap();
        drain(&meta);
        // volume b out of service: sectors whose only ready copies were
        // there are lost
        let vh = |out_b| {
            [
                VolumeHealth {
                    id: a,
                    out: false,
                    device: Some(1),
                },
                VolumeHealth {
                    id: b,
                    out: out_b,
                    device: Some(2),
                },
            ]
        };
        assert!(meta.sync_volume_health(&vh(true)).unwrap());
        drain(&meta);
        exact(&meta, "volume b out");
        assert!(
            !meta.sync_volume_health(&vh(true)).unwrap(),
            "nothing changed"
        );
        let store = meta.aggregate(Scope::Store, false).unwrap().agg;
        assert!(store.unavailable > 0 && store.lost > 0, "{store:?}");
        meta.sync_volume_health(&vh(false)).unwrap();
        drain(&meta);
        exact(&meta, "volume b back");
        assert_eq!(
            meta.aggregate(Scope::Store, false).unwrap().agg.unhealthy,
            0
        );
        // a corrupt copy: exactly the contracts holding sector 4 (c1)
        let s4 = meta.lookup(&root(4)).unwrap().unwrap();
        meta.set_copy_corrupt(s4.id, s4.volume_id, true).unwrap();
        exact(&meta, "a corrupt copy");
        let worst = meta.contracts_by_health(true, 10).unwrap();
        assert_eq!(
            worst.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["c1"]
        );
        assert_eq!(worst[0].1.corrupt, 2);
        meta.drop_lost_copy(s4.id, s4.volume_id, s4.slot).unwrap();
        exact(&meta, "a lost sector");
        meta.delete_contract("c1").unwrap();
        exact(&meta, "a contract removed");
        meta.rebuild_aggregates().unwrap();
        drain(&meta);
        exact(&meta, "a rebuild");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Revisions that replace, append to, rename and delete contracts
        /// sharing sectors (some pinned, some held by contracts alone and
        /// freed with their last entry) keep every aggregate equal to a
        /// recount: the replace path sums only the new list.
        #[test]
        fn revisions_keep_the_aggregates_exact(
            ops in proptest::collection::vec(
                (0u8..4, 0u8..3, 0u8..3, proptest::collection::vec(0u8..10, 0..7)),
                1..24,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            let meta = Meta::open(&dir.path().join("db")).unwrap();
            let a = meta.insert_volume("a", &dir.path().join("a"), 100).unwrap();
            let yes = |_: u32| true;
            let mut next_slot = 0;
            let mut height = 0;
            let name = |c: u8| format!("c{c}");
            for (op, c, other, list) in ops {
                // sectors 0..4 stay pinned; the others are stored with a
                // temp entry that expires after this step, then live by
                // contracts alone
                for &n in &list {
                    if meta.lookup(&root(n)).unwrap().is_none() {
                        next_slot += 1;
                        let reference = if n < 4 {
                            Reference::Pin
                        } else {
                            Reference::Temp(height + 1)
                        };
                        meta.insert_sector(&root(n), &[(a, next_slot)], 1, reference, &yes)
                            .unwrap();
                    }
                }
                let roots: Vec<Root> = list.iter().map(|&n| root(n)).collect();
                let _ = match op {
                    0 => meta.revise_contract(&name(c), &roots, ContractEdit::Replace),
                    1 => meta.revise_contract(&name(c), &roots, ContractEdit::Append),
                    2 => meta.rename_contract(&name(c), &name(other), true),
                    _ => meta.delete_contract(&name(c)),
                };
                exact(&meta, &format!("op {op} on c{c} with {list:?}"));
                height += 1;
                meta.set_height(height).unwrap();
                exact(&meta, &format!("height {height}"));
            }
        }
    }
}
