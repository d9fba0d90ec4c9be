//! Aggregates: per contract, temp height, volume, and store-wide, kept in
//! the `aggregates` table (migration 10) by the transaction that changes
//! what they count, never by a queue a crash could lose.
//!
//! Each sector carries its condition (`sectors.ready`, `sectors.health`),
//! computed from its copies, the volumes out of service (`volume_health`)
//! and the copies known corrupt (`corrupt_copies`). An aggregate is the
//! sum over its entries of their sectors' stored condition; a change of
//! condition (a copy added or dropped in a transaction here, or the
//! background pass after a volume changed state) adds its difference to
//! every aggregate that holds the sector. A leaf: imports no meta module.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{DbContext, Result};

/// Benchmarks only: revisions skip their aggregates, to measure what
/// keeping them costs (the aggregates are then wrong).
#[cfg(feature = "bench")]
pub static WITHOUT_CONTRACT_AGGREGATES: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Bits of `sectors.health`.
pub(super) const UNDER: i64 = 1;
pub(super) const UNAVAILABLE: i64 = 2;
pub(super) const CORRUPT: i64 = 4;
pub(super) const LOST: i64 = 8;
pub(super) const COLD: i64 = 16;
pub(super) const SHARED: i64 = 32;

/// What an aggregate row is of (`aggregates.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Contract(i64),
    Temp(u64),
    Volume(u32),
    /// Pinned sectors.
    Pins,
    /// Every contract entry (`/contracts`).
    Contracts,
    /// Every temp entry (`/temp`).
    Temps,
    /// Every stored sector.
    Store,
    /// Sectors with this many ready copies.
    Ready(u32),
}

impl Scope {
    fn key(self) -> (i64, i64) {
        match self {
            Scope::Contract(id) => (1, id),
            Scope::Temp(h) => (2, h as i64),
            Scope::Volume(v) => (3, v as i64),
            Scope::Pins => (4, 0),
            Scope::Contracts => (5, 0),
            Scope::Temps => (6, 0),
            Scope::Store => (7, 0),
            Scope::Ready(n) => (8, n as i64),
        }
    }

    fn of(kind: i64, key: i64) -> Option<Scope> {
        Some(match kind {
            1 => Scope::Contract(key),
            2 => Scope::Temp(key as u64),
            3 => Scope::Volume(key as u32),
            4 => Scope::Pins,
            5 => Scope::Contracts,
            6 => Scope::Temps,
            7 => Scope::Store,
            8 => Scope::Ready(key as u32),
            _ => return None,
        })
    }
}

/// Counts over a set of entries (contract or temp entries, pins, copies on
/// a volume, or sectors). Entry counts: each entry whose sector is so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Agg {
    pub entries: i64,
    /// Distinct sectors.
    pub sectors: i64,
    /// Entries whose sector has fewer than `min` ready copies.
    pub unhealthy: i64,
    /// ... a copy on a volume out of service.
    pub unavailable: i64,
    /// ... a copy known corrupt.
    pub corrupt: i64,
    /// ... no ready copy at all.
    pub lost: i64,
    /// ... a cold copy (a copy on `COLD_VOLUME`).
    pub cold: i64,
    /// ... two ready copies on one device.
    pub shared: i64,
}

impl Agg {
    /// `entries` entries of one sector in condition `health`.
    pub(super) fn of_sector(health: i64, entries: i64, sectors: i64) -> Agg {
        let n = |bit: i64| if health & bit != 0 { entries } else { 0 };
        Agg {
            entries,
            sectors,
            unhealthy: n(UNDER),
            unavailable: n(UNAVAILABLE),
            corrupt: n(CORRUPT),
            lost: n(LOST),
            cold: n(COLD),
            shared: n(SHARED),
        }
    }

    fn minus(self, o: Agg) -> Agg {
        Agg {
            entries: self.entries - o.entries,
            sectors: self.sectors - o.sectors,
            unhealthy: self.unhealthy - o.unhealthy,
            unavailable: self.unavailable - o.unavailable,
            corrupt: self.corrupt - o.corrupt,
            lost: self.lost - o.lost,
            cold: self.cold - o.cold,
            shared: self.shared - o.shared,
        }
    }

    fn neg(self) -> Agg {
        Agg::default().minus(self)
    }

    pub fn plus(self, o: Agg) -> Agg {
        self.minus(o.neg())
    }

    fn is_zero(&self) -> bool {
        *self == Agg::default()
    }

    /// The fraction of entries whose sector has at least `min` ready
    /// copies (1 when there is none).
    pub fn health(&self) -> f64 {
        if self.entries <= 0 {
            1.0
        } else {
            (self.entries - self.unhealthy) as f64 / self.entries as f64
        }
    }

    /// [`health`](Self::health) with 4 decimals, rounded down: `1.0000`
    /// only when every entry is healthy.
    pub fn health_text(&self) -> String {
        format!("{:.4}", (self.health() * 10_000.0).floor() / 10_000.0)
    }

    pub(super) fn row_at(r: &rusqlite::Row, from: usize) -> rusqlite::Result<Agg> {
        Ok(Agg {
            entries: r.get(from)?,
            sectors: r.get(from + 1)?,
            unhealthy: r.get(from + 2)?,
            unavailable: r.get(from + 3)?,
            corrupt: r.get(from + 4)?,
            lost: r.get(from + 5)?,
            cold: r.get(from + 6)?,
            shared: r.get(from + 7)?,
        })
    }
}

/// The per-entry sums of `SELECT ... FROM <entries> JOIN sectors s`, after
/// the entry count and the distinct sector count.
const SUMS: &str = "coalesce(sum(s.health & 1 > 0), 0), coalesce(sum(s.health & 2 > 0), 0), \
     coalesce(sum(s.health & 4 > 0), 0), coalesce(sum(s.health & 8 > 0), 0), \
     coalesce(sum(s.health & 16 > 0), 0), coalesce(sum(s.health & 32 > 0), 0)";

/// Every aggregate recounted from the base tables (the sectors' stored
/// condition): what `aggregates` must hold, row for row (all-zero rows
/// aside). The rebuild and the check both use it.
pub(super) fn recount_sql() -> String {
    format!(
        "SELECT 1, e.contract_id, count(*), count(DISTINCT e.sector_id), {SUMS} \
           FROM contract_entries e JOIN sectors s ON s.id = e.sector_id GROUP BY e.contract_id \
         UNION ALL SELECT 2, t.expiration, count(*), count(DISTINCT t.sector_id), {SUMS} \
           FROM temp_entries t JOIN sectors s ON s.id = t.sector_id GROUP BY t.expiration \
         UNION ALL SELECT 3, c.volume_id, count(*), count(DISTINCT c.sector_id), {SUMS} \
           FROM copies c JOIN sectors s ON s.id = c.sector_id GROUP BY c.volume_id \
         UNION ALL SELECT 4, 0, count(*), count(*), {SUMS} \
           FROM pins p JOIN sectors s ON s.id = p.sector_id \
         UNION ALL SELECT 5, 0, count(*), count(DISTINCT e.sector_id), {SUMS} \
           FROM contract_entries e JOIN sectors s ON s.id = e.sector_id \
         UNION ALL SELECT 6, 0, count(*), count(DISTINCT t.sector_id), {SUMS} \
           FROM temp_entries t JOIN sectors s ON s.id = t.sector_id \
         UNION ALL SELECT 7, 0, count(*), count(*), {SUMS} FROM sectors s \
         UNION ALL SELECT 8, s.ready, count(*), count(*), {SUMS} FROM sectors s GROUP BY s.ready"
    )
}

/// Rebuilds every aggregate from the base tables (a migration, an import,
/// synthetic benchmark stores). O(store): never on a request's path.
pub(super) fn rebuild_in(c: &Connection) -> Result<()> {
    c.execute("DELETE FROM aggregates", [])
        .ctx("rebuilding the aggregates")?;
    c.execute(&format!("INSERT INTO aggregates {}", recount_sql()), [])
        .ctx("rebuilding the aggregates")?;
    Ok(())
}

/// Sets every sector's condition from its copies as if every volume were
/// in service and no copy corrupt (a migration, an import): the engine's
/// first look at the volumes corrects what is not so.
pub(super) fn reset_conditions_in(c: &Connection) -> Result<()> {
    c.execute_batch(
        "UPDATE sectors SET ready = (SELECT count(*) FROM copies WHERE sector_id = sectors.id); \
         UPDATE sectors SET health = \
            (CASE WHEN ready < (SELECT value FROM settings WHERE key = 'copies_min') \
             THEN 1 ELSE 0 END) | (CASE WHEN ready = 0 THEN 8 ELSE 0 END);",
    )
    .ctx("setting the sectors' condition")
}

/// Every aggregate as stored (all-zero rows left out).
pub(super) fn stored_all(c: &Connection) -> Result<BTreeMap<Scope, Agg>> {
    rows(c, "SELECT * FROM aggregates")
}

/// Every aggregate recounted now.
pub(super) fn recounted_all(c: &Connection) -> Result<BTreeMap<Scope, Agg>> {
    rows(c, &recount_sql())
}

fn rows(c: &Connection, sql: &str) -> Result<BTreeMap<Scope, Agg>> {
    let mut stmt = c.prepare(sql).ctx("reading aggregates")?;
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, Agg::row_at(r, 2)?))
        })
        .ctx("reading aggregates")?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (kind, key, agg) = row.ctx("reading aggregates")?;
        if let Some(scope) = Scope::of(kind, key)
            && !agg.is_zero()
        {
            out.insert(scope, agg);
        }
    }
    Ok(out)
}

/// One aggregate (zero when it has no row).
pub(super) fn get_in(c: &Connection, scope: Scope) -> Result<Agg> {
    let (kind, key) = scope.key();
    c.prepare_cached(
        "SELECT entries, sectors, unhealthy, unavailable, corrupt, lost, cold, shared \
         FROM aggregates WHERE kind = ?1 AND key = ?2",
    )
    .and_then(|mut s| s.query_row([kind, key], |r| Agg::row_at(r, 0)).optional())
    .map(Option::unwrap_or_default)
    .ctx("reading an aggregate")
}

/// Adds `d` to the aggregate of `scope`.
pub(super) fn add_in(c: &Connection, scope: Scope, d: Agg) -> Result<()> {
    if d.is_zero() {
        return Ok(());
    }
    let (kind, key) = scope.key();
    c.prepare_cached(
        "INSERT INTO aggregates (kind, key, entries, sectors, unhealthy, unavailable, corrupt, \
            lost, cold, shared) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (kind, key) DO UPDATE SET entries = entries + ?3, sectors = sectors + ?4, \
            unhealthy = unhealthy + ?5, unavailable = unavailable + ?6, corrupt = corrupt + ?7, \
            lost = lost + ?8, cold = cold + ?9, shared = shared + ?10",
    )
    .and_then(|mut s| {
        s.execute(params![
            kind,
            key,
            d.entries,
            d.sectors,
            d.unhealthy,
            d.unavailable,
            d.corrupt,
            d.lost,
            d.cold,
            d.shared
        ])
    })
    .ctx("updating an aggregate")?;
    Ok(())
}

/// Drops the aggregate of `scope`, returning what it held.
pub(super) fn take_in(c: &Connection, scope: Scope) -> Result<Agg> {
    let agg = get_in(c, scope)?;
    let (kind, key) = scope.key();
    c.prepare_cached("DELETE FROM aggregates WHERE kind = ?1 AND key = ?2")
        .and_then(|mut s| s.execute([kind, key]))
        .ctx("dropping an aggregate")?;
    Ok(agg)
}

/// A sector's condition as stored: (ready copies, health bits).
fn stored_condition(c: &Connection, id: i64) -> Result<Option<(i64, i64)>> {
    c.prepare_cached("SELECT ready, health FROM sectors WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .ctx("reading a sector's condition")
}

/// The volume id of a sector's object in the cold store: a copy on it is
/// what makes a sector cold (no volume has id 0).
pub const COLD_VOLUME: u32 = 0;

/// A sector's condition computed from its copies now.
fn computed_condition(c: &Connection, id: i64) -> Result<(i64, i64)> {
    let min: i64 = c
        .prepare_cached("SELECT value FROM settings WHERE key = 'copies_min'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .ctx("reading the copies setting")?
        .unwrap_or(1);
    let copies: Vec<(bool, bool, Option<i64>, u32)> = c
        .prepare_cached(
            "SELECT coalesce(h.out, 0), EXISTS (SELECT 1 FROM corrupt_copies k \
                WHERE k.sector_id = c.sector_id AND k.volume_id = c.volume_id), h.device, \
                c.volume_id \
             FROM copies c LEFT JOIN volume_health h ON h.volume_id = c.volume_id \
             WHERE c.sector_id = ?1",
        )
        .and_then(|mut s| {
            s.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect()
        })
        .ctx("reading a sector's copies")?;
    let mut devices: Vec<i64> = Vec::new();
    let mut health = 0;
    for (out, corrupt, device, volume) in copies {
        if volume == COLD_VOLUME {
            health |= COLD;
        }
        if out {
            health |= UNAVAILABLE;
        }
        if corrupt {
            health |= CORRUPT;
        }
        if !out && !corrupt {
            if let Some(d) = device
                && devices.contains(&d)
            {
                health |= SHARED;
            }
            devices.push(device.unwrap_or(-1 - devices.len() as i64));
        }
    }
    let ready = devices.len() as i64;
    if ready < min {
        health |= UNDER;
    }
    if ready == 0 {
        health |= LOST;
    }
    Ok((ready, health))
}

/// The scopes whose entries name sector `id`, with how many entries each
/// (the store and the volumes aside).
fn reference_scopes(c: &Connection, id: i64) -> Result<Vec<(Scope, i64)>> {
    let mut out: Vec<(Scope, i64)> = c
        .prepare_cached(
            "SELECT contract_id, count(*) FROM contract_entries WHERE sector_id = ?1 \
             GROUP BY contract_id",
        )
        .and_then(|mut s| {
            s.query_map([id], |r| Ok((Scope::Contract(r.get(0)?), r.get(1)?)))?
                .collect()
        })
        .ctx("finding a sector's contracts")?;
    let contract_entries: i64 = out.iter().map(|(_, n)| n).sum();
    if contract_entries > 0 {
        out.push((Scope::Contracts, contract_entries));
    }
    let heights: Vec<i64> = c
        .prepare_cached("SELECT expiration FROM temp_entries WHERE sector_id = ?1")
        .and_then(|mut s| s.query_map([id], |r| r.get(0))?.collect())
        .ctx("finding a sector's temp entries")?;
    if !heights.is_empty() {
        out.push((Scope::Temps, heights.len() as i64));
    }
    out.extend(heights.into_iter().map(|h| (Scope::Temp(h as u64), 1)));
    let pinned = c
        .prepare_cached("SELECT 1 FROM pins WHERE sector_id = ?1")
        .and_then(|mut s| s.exists([id]))
        .ctx("finding a sector's pin")?;
    if pinned {
        out.push((Scope::Pins, 1));
    }
    Ok(out)
}

fn volumes_of(c: &Connection, id: i64) -> Result<Vec<u32>> {
    c.prepare_cached("SELECT volume_id FROM copies WHERE sector_id = ?1")
        .and_then(|mut s| s.query_map([id], |r| r.get(0))?.collect())
        .ctx("finding a sector's copies")
}

/// Whether sector `id`'s stored condition differs from its copies' (what
/// the check reports; writes nothing).
pub(super) fn condition_stale_in(c: &Connection, id: i64) -> Result<bool> {
    Ok(stored_condition(c, id)?.is_some_and(|s| s != computed_condition(c, id).unwrap_or(s)))
}

/// Brings sector `id`'s stored condition up to date with its copies, and
/// every aggregate holding it with it. True if it changed.
pub(super) fn restate_in(c: &Connection, id: i64) -> Result<bool> {
    let mut deltas = Deltas::default();
    let changed = restate_into(c, id, &mut deltas)?;
    deltas.apply(c)?;
    Ok(changed)
}

/// Differences to add to aggregates, summed in memory: a pass adds those
/// of a batch of sectors with one statement per aggregate touched.
#[derive(Default)]
pub(super) struct Deltas(BTreeMap<Scope, Agg>);

impl Deltas {
    fn add(&mut self, scope: Scope, d: Agg) {
        let sum = self.0.entry(scope).or_default();
        *sum = sum.plus(d);
    }

    pub(super) fn apply(self, c: &Connection) -> Result<()> {
        for (scope, d) in self.0 {
            add_in(c, scope, d)?;
        }
        Ok(())
    }
}

/// As [`restate_in`], the aggregates' differences added to `deltas`
/// (the caller applies them in the same transaction).
pub(super) fn restate_into(c: &Connection, id: i64, deltas: &mut Deltas) -> Result<bool> {
    let Some((ready, health)) = stored_condition(c, id)? else {
        return Ok(false);
    };
    let (new_ready, new_health) = computed_condition(c, id)?;
    if (ready, health) == (new_ready, new_health) {
        return Ok(false);
    }
    c.prepare_cached("UPDATE sectors SET ready = ?2, health = ?3 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id, new_ready, new_health]))
        .ctx("updating a sector's condition")?;
    let mut scopes = reference_scopes(c, id)?;
    scopes.extend(
        volumes_of(c, id)?
            .into_iter()
            .map(|v| (Scope::Volume(v), 1)),
    );
    scopes.push((Scope::Store, 1));
    for (scope, n) in scopes {
        deltas.add(
            scope,
            Agg::of_sector(new_health, n, 0).minus(Agg::of_sector(health, n, 0)),
        );
    }
    deltas.add(
        Scope::Ready(ready as u32),
        Agg::of_sector(health, 1, 1).neg(),
    );
    deltas.add(
        Scope::Ready(new_ready as u32),
        Agg::of_sector(new_health, 1, 1),
    );
    Ok(true)
}

/// A new sector row with its copies recorded: its condition set and
/// counted in the store and its volumes (its references count as they
/// are added).
pub(super) fn sector_added_in(c: &Connection, id: i64) -> Result<()> {
    let (ready, health) = computed_condition(c, id)?;
    c.prepare_cached("UPDATE sectors SET ready = ?2, health = ?3 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id, ready, health]))
        .ctx("setting a sector's condition")?;
    let one = Agg::of_sector(health, 1, 1);
    add_in(c, Scope::Store, one)?;
    add_in(c, Scope::Ready(ready as u32), one)?;
    for v in volumes_of(c, id)? {
        add_in(c, Scope::Volume(v), one)?;
    }
    Ok(())
}

/// Sector `id` is about to be deleted with its copies (no reference
/// left): it leaves the store and its volumes.
pub(super) fn sector_removed_in(c: &Connection, id: i64) -> Result<()> {
    let Some((ready, health)) = stored_condition(c, id)? else {
        return Ok(());
    };
    let one = Agg::of_sector(health, 1, 1).neg();
    add_in(c, Scope::Store, one)?;
    add_in(c, Scope::Ready(ready as u32), one)?;
    for v in volumes_of(c, id)? {
        add_in(c, Scope::Volume(v), one)?;
    }
    c.prepare_cached("DELETE FROM corrupt_copies WHERE sector_id = ?1")
        .and_then(|mut s| s.execute([id]))
        .ctx("forgetting a freed sector's corrupt copies")?;
    Ok(())
}

/// Every reference of sector `id` is about to be deleted at once (its
/// last copy was lost): it leaves each scope that held it.
pub(super) fn references_dropped_in(c: &Connection, id: i64) -> Result<()> {
    let Some((_, health)) = stored_condition(c, id)? else {
        return Ok(());
    };
    for (scope, n) in reference_scopes(c, id)? {
        add_in(c, scope, Agg::of_sector(health, n, 1).neg())?;
    }
    Ok(())
}

/// A copy of sector `id` on `volume` was just recorded (`added`) or is
/// about to be deleted: the volume counts it, then the sector's
/// condition follows (after the change: call `restate_in`).
pub(super) fn copy_counted_in(c: &Connection, id: i64, volume: u32, added: bool) -> Result<()> {
    let Some((_, health)) = stored_condition(c, id)? else {
        return Ok(());
    };
    let one = Agg::of_sector(health, 1, 1);
    add_in(
        c,
        Scope::Volume(volume),
        if added { one } else { one.neg() },
    )?;
    if !added {
        c.prepare_cached("DELETE FROM corrupt_copies WHERE sector_id = ?1 AND volume_id = ?2")
            .and_then(|mut s| s.execute(params![id, volume]))
            .ctx("forgetting a corrupt copy")?;
    }
    Ok(())
}

/// A copy of sector `id` was just re-pointed from `from` to `to` (moved,
/// or rewritten in place): the volumes count it where it is now, it is
/// no longer known corrupt, and the sector's condition follows.
pub(super) fn moved_in(c: &Connection, id: i64, from: u32, to: u32) -> Result<()> {
    if from != to {
        copy_counted_in(c, id, from, false)?;
        copy_counted_in(c, id, to, true)?;
    }
    c.prepare_cached("DELETE FROM corrupt_copies WHERE sector_id = ?1 AND volume_id IN (?2, ?3)")
        .and_then(|mut s| s.execute(params![id, from, to]))
        .ctx("forgetting a corrupt copy")?;
    restate_in(c, id).map(|_| ())
}

/// Pin of sector `id` added (`sign` 1) or dropped (-1).
pub(super) fn pin_counted_in(c: &Connection, id: i64, sign: i64) -> Result<()> {
    let Some((_, health)) = stored_condition(c, id)? else {
        return Ok(());
    };
    add_in(c, Scope::Pins, Agg::of_sector(health, sign, sign))
}

/// Temp entry of sector `id` at `height`, just added (`sign` 1) or just
/// dropped (-1).
pub(super) fn temp_counted_in(c: &Connection, id: i64, height: u64, sign: i64) -> Result<()> {
    let Some((_, health)) = stored_condition(c, id)? else {
        return Ok(());
    };
    add_in(c, Scope::Temp(height), Agg::of_sector(health, sign, sign))?;
    let entries: i64 = c
        .prepare_cached("SELECT count(*) FROM temp_entries WHERE sector_id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)))
        .ctx("counting a sector's temp entries")?;
    // its first temp entry (just added), or its last (just gone)
    let distinct = if (sign > 0 && entries == 1) || (sign < 0 && entries == 0) {
        sign
    } else {
        0
    };
    add_in(c, Scope::Temps, Agg::of_sector(health, sign, distinct))
}

/// The temp entries at or below `height` are about to expire: their
/// heights' aggregates go, and `/temp`'s loses them.
pub(super) fn temps_expiring_in(c: &Connection, height: u64) -> Result<()> {
    let heights: Vec<i64> = c
        .prepare_cached("SELECT key FROM aggregates WHERE kind = 2 AND key <= ?1")
        .and_then(|mut s| s.query_map([height as i64], |r| r.get(0))?.collect())
        .ctx("finding expiring temp heights")?;
    let mut gone = Agg::default();
    for h in heights {
        gone = gone.plus(take_in(c, Scope::Temp(h as u64))?);
    }
    // the distinct sectors that keep no temp entry
    gone.sectors = c
        .prepare_cached(
            "SELECT count(DISTINCT t.sector_id) FROM temp_entries t WHERE t.expiration <= ?1 \
             AND NOT EXISTS (SELECT 1 FROM temp_entries o WHERE o.sector_id = t.sector_id \
             AND o.expiration > ?1)",
        )
        .and_then(|mut s| s.query_row([height as i64], |r| r.get(0)))
        .ctx("counting expiring temp sectors")?;
    add_in(c, Scope::Temps, gone.neg())
}

/// The entries of `contract` with index in `lo..hi`, just added (`sign` is
/// one) or about to be deleted (minus one), `whole` when they are all the
/// contract has: one statement sums them for the contract and
/// `/contracts`, whatever their number (one look at each entry and its
/// sector, and per distinct sector whether other entries hold it).
pub(super) fn contract_range_in(
    c: &Connection,
    contract: i64,
    (lo, hi): (i64, i64),
    whole: bool,
    sign: i64,
) -> Result<()> {
    #[cfg(feature = "bench")]
    if WITHOUT_CONTRACT_AGGREGATES.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    let n_sums: String = (0..6)
        .map(|bit| format!("coalesce(sum(n * (h & {} > 0)), 0)", 1 << bit))
        .collect::<Vec<_>>()
        .join(", ");
    // per distinct sector of the range: its entries there, its condition,
    // and whether the contract holds it nowhere else (`here`); of those,
    // whether no other entry of any contract does
    let sql = format!(
        "SELECT coalesce(sum(n), 0), coalesce(sum(here), 0), coalesce(sum(CASE WHEN here \
            THEN NOT EXISTS (SELECT 1 FROM contract_entries o WHERE o.sector_id = sid \
            AND NOT (o.contract_id = ?1 AND o.idx >= ?2 AND o.idx < ?3)) ELSE 0 END), 0), \
            {n_sums} \
         FROM (SELECT e.sector_id AS sid, count(*) AS n, s.health AS h, \
            CASE WHEN ?4 THEN 1 ELSE NOT EXISTS (SELECT 1 FROM contract_entries o \
            WHERE o.sector_id = e.sector_id AND o.contract_id = ?1 \
            AND (o.idx < ?2 OR o.idx >= ?3)) END AS here \
            FROM contract_entries e JOIN sectors s ON s.id = e.sector_id \
            WHERE e.contract_id = ?1 AND e.idx >= ?2 AND e.idx < ?3 GROUP BY e.sector_id)"
    );
    let (mut sums, in_contract, in_all) = c
        .prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_row(params![contract, lo, hi, whole], |r| {
                let mut sums = Agg::row_at(r, 1)?;
                sums.entries = r.get(0)?;
                Ok((sums, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            })
        })
        .ctx("summing contract entries")?;
    if sums.entries == 0 {
        return Ok(());
    }
    let signed = |a: Agg| if sign < 0 { a.neg() } else { a };
    sums.sectors = in_contract;
    add_in(c, Scope::Contract(contract), signed(sums))?;
    sums.sectors = in_all;
    add_in(c, Scope::Contracts, signed(sums))
}

/// Contract `contract`'s list was just replaced (its new entries written,
/// the old deleted): `new` holds each new entry's sector and condition, in
/// order, and `old_held` each distinct sector of the old list with the
/// contract entries holding it now. The contract's aggregate becomes the
/// sum of `new` (its stored aggregate was the old list's, so the old list
/// is not summed again) and `/contracts` follows; only sectors of one list
/// and not the other can change `/contracts`' distinct count, and for the
/// old ones `old_held` already says whether another contract holds them.
pub(super) fn contract_replaced_in(
    c: &Connection,
    contract: i64,
    new: &[(i64, i64)],
    old_held: &[(i64, u64)],
) -> Result<()> {
    #[cfg(feature = "bench")]
    if WITHOUT_CONTRACT_AGGREGATES.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(());
    }
    // per distinct new sector: its condition and its entries in the list
    let mut per: HashMap<i64, (i64, i64)> = HashMap::with_capacity(new.len());
    for &(id, health) in new {
        per.entry(id).or_insert((health, 0)).1 += 1;
    }
    let sums = per.values().fold(Agg::default(), |a, &(health, n)| {
        a.plus(Agg::of_sector(health, n, 1))
    });
    let old = get_in(c, Scope::Contract(contract))?;
    add_in(c, Scope::Contract(contract), sums.minus(old))?;

    // an old sector counted by `/contracts` through this contract alone
    // leaves it unless the new list holds it too
    let mut delta = sums.minus(old);
    delta.sectors = 0;
    let mut in_old = HashSet::with_capacity(old_held.len());
    for &(id, held) in old_held {
        in_old.insert(id);
        if held == 0 {
            delta.sectors -= 1;
        }
    }
    // a new sector not in the old list joins it unless another contract
    // holds it: probed one by one when few, in one statement when many
    let added: Vec<i64> = per
        .keys()
        .copied()
        .filter(|id| !in_old.contains(id))
        .collect();
    if added.len() * 2 < per.len() {
        let mut probe = c
            .prepare_cached(
                "SELECT NOT EXISTS (SELECT 1 FROM contract_entries WHERE sector_id = ?1 \
                 AND contract_id != ?2)",
            )
            .ctx("counting a revision's new sectors")?;
        for id in added {
            let alone: bool = probe
                .query_row([id, contract], |r| r.get(0))
                .ctx("counting a revision's new sectors")?;
            delta.sectors += alone as i64;
        }
    } else {
        // every new sector held by no other contract, less the old ones
        // among them (already counted)
        let alone: i64 = c
            .prepare_cached(
                "SELECT count(*) FROM (SELECT DISTINCT sector_id AS sid FROM contract_entries \
                 WHERE contract_id = ?1) WHERE NOT EXISTS (SELECT 1 FROM contract_entries o \
                 WHERE o.sector_id = sid AND o.contract_id != ?1)",
            )
            .and_then(|mut s| s.query_row([contract], |r| r.get(0)))
            .ctx("counting a revision's new sectors")?;
        let kept_alone = old_held
            .iter()
            .filter(|(id, held)| per.get(id).is_some_and(|&(_, n)| *held == n as u64))
            .count() as i64;
        delta.sectors += alone - kept_alone;
    }
    add_in(c, Scope::Contracts, delta)
}

/// The oldest time (Unix seconds) a copy of a sector in `scope` was last
/// verified (stored counts as verified); `None` when it holds none.
pub(super) fn oldest_check_in(c: &Connection, scope: Scope) -> Result<Option<i64>> {
    const T: &str = "coalesce(c.checked_at, c.added_at)";
    let (sql, key): (String, i64) = match scope {
        Scope::Contract(id) => (
            format!(
                "SELECT min({T}) FROM contract_entries e JOIN copies c \
                 ON c.sector_id = e.sector_id WHERE e.contract_id = ?1"
            ),
            id,
        ),
        Scope::Temp(h) => (
            format!(
                "SELECT min({T}) FROM temp_entries t JOIN copies c \
                 ON c.sector_id = t.sector_id WHERE t.expiration = ?1"
            ),
            h as i64,
        ),
        // the index of copies by check time walked from the oldest to the
        // first copy the scope holds (where the scope holds the oldest
        // copies, at once)
        Scope::Volume(v) => (
            format!(
                "SELECT (SELECT {T} FROM copies c WHERE c.volume_id = ?1 ORDER BY {T} LIMIT 1)"
            ),
            v as i64,
        ),
        Scope::Store | Scope::Ready(_) => (
            format!("SELECT (SELECT {T} FROM copies c WHERE ?1 = ?1 ORDER BY {T} LIMIT 1)"),
            0,
        ),
        Scope::Pins | Scope::Contracts | Scope::Temps => {
            let table = match scope {
                Scope::Pins => "pins",
                Scope::Contracts => "contract_entries",
                _ => "temp_entries",
            };
            (
                format!(
                    "SELECT (SELECT {T} FROM copies c WHERE ?1 = ?1 AND EXISTS \
                     (SELECT 1 FROM {table} x WHERE x.sector_id = c.sector_id) \
                     ORDER BY {T} LIMIT 1)"
                ),
                0,
            )
        }
    };
    c.prepare_cached(&sql)
        .and_then(|mut s| s.query_row([key], |r| r.get(0)))
        .ctx("finding the oldest check")
}
