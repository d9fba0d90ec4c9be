//! Contracts: named lists of sector roots, revised whole or appended to.
//! Every change that can drop a last reference frees the sector in the
//! same transaction, by asking what references remain.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::aggregates::{Scope, contract_range_in, contract_replaced_in, take_in};
use super::db::Meta;
use super::query::{RefChange, changed, free_unreferenced_counted, next_id, root_of};
use crate::error::{DbContext, Error, Result};
use crate::merkle::Root;

/// A contract and the length of its root list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractRow {
    pub id: i64,
    pub name: String,
    pub entries: u64,
    /// Set anew whenever the list is replaced (migration 5).
    pub revision: i64,
    /// One past the index of its last entry: appends go from here.
    pub end: i64,
}

/// How a contract revision changes the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractEdit {
    Replace,
    Append,
}

impl Meta {
    /// Applies a contract revision atomically: every root must be stored,
    /// otherwise nothing changes. Creates the contract if it is new.
    pub fn revise_contract(
        &self,
        name: &str,
        roots: &[Root],
        edit: ContractEdit,
    ) -> Result<RefChange> {
        self.write(|tx| {
            let ids = stored_ids(tx, name, roots)?;
            let (contract, created) = ensure_contract(tx, name)?;
            apply_revision(tx, contract, created, &ids, edit)
        })
    }

    /// Applies a revision, as `revise_contract` does, to the contract with
    /// id `id` under whatever name it has now: an open file follows its
    /// contract through renames. Refused when that contract is gone
    /// (removed, or replaced by another renamed onto its name).
    pub fn revise_contract_by_id(
        &self,
        id: i64,
        roots: &[Root],
        edit: ContractEdit,
    ) -> Result<RefChange> {
        self.write(|tx| {
            let name = contract_name(tx, id)?.ok_or_else(|| {
                Error::NotFound(
                    "the contract was removed (or replaced by another renamed onto its name) \
                     while its file was open"
                        .into(),
                )
            })?;
            let ids = stored_ids(tx, &name, roots)?;
            apply_revision(tx, id, false, &ids, edit)
        })
    }

    /// Moves `from`'s list onto `to`, and `from` is gone. An existing `to`
    /// is replaced (its list dropped) only if `replace`; otherwise `EEXIST`,
    /// decided in the same transaction as the rename, so a contract made
    /// meanwhile is never replaced by a rename that must not replace.
    pub fn rename_contract(&self, from: &str, to: &str, replace: bool) -> Result<RefChange> {
        self.write(|tx| {
            let src = contract_id(tx, from)?
                .ok_or_else(|| Error::NotFound(format!("contract {from} does not exist")))?;
            let dst = contract_id(tx, to)?;
            if dst.is_some() && !replace {
                return Err(Error::Exists(format!("contract {to} exists")));
            }
            if from == to {
                return Ok(RefChange::default());
            }
            let change = match dst {
                Some(dst) => drop_contract(tx, dst)?,
                None => RefChange::default(),
            };
            tx.execute(
                "UPDATE contracts SET name = ?1 WHERE id = ?2",
                params![to, src],
            )
            .ctx("renaming a contract")?;
            // its list is unchanged: an open file of it (which follows it by
            // id) still empties it late, as a truncation at open would have
            Ok(change)
        })
    }

    /// Drops a contract and all its entries.
    pub fn delete_contract(&self, name: &str) -> Result<RefChange> {
        self.write(|tx| {
            let id = contract_id(tx, name)?
                .ok_or_else(|| Error::NotFound(format!("contract {name} does not exist")))?;
            drop_contract(tx, id)
        })
    }

    /// Drops the entries of contract `id` below index `end` if its list is
    /// still at `revision` (entries appended since stay), checked and done in
    /// one transaction. `None` when it is gone or its list was replaced.
    pub fn empty_contract_if_unrevised(
        &self,
        id: i64,
        revision: i64,
        end: i64,
    ) -> Result<Option<RefChange>> {
        self.write(|tx| {
            let current: Option<i64> = tx
                .prepare_cached("SELECT revision FROM contracts WHERE id = ?1")
                .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
                .ctx("looking up a contract")?;
            if current != Some(revision) {
                return Ok(None);
            }
            bump_revision(tx, id)?;
            contract_range_in(tx, id, (0, end), false, -1)?;
            let old: Vec<i64> = tx
                .prepare_cached(
                    "DELETE FROM contract_entries WHERE contract_id = ?1 AND idx < ?2 \
                     RETURNING sector_id",
                )
                .and_then(|mut s| {
                    s.query_map([id, end], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()
                })
                .ctx("emptying a contract")?;
            let mut old = old;
            old.sort_unstable();
            old.dedup();
            changed(tx, old).map(Some)
        })
    }

    /// Deletes contract `id` if it is still empty and at `revision` (no
    /// list was written to it since), in one transaction; true if done.
    pub fn delete_contract_if_unrevised(&self, id: i64, revision: i64) -> Result<bool> {
        self.write(|tx| {
            let n = tx
                .prepare_cached(
                    "DELETE FROM contracts WHERE id = ?1 AND revision = ?2 AND NOT EXISTS \
                     (SELECT 1 FROM contract_entries WHERE contract_id = ?1)",
                )
                .and_then(|mut s| s.execute([id, revision]))
                .ctx("removing a contract")?;
            if n == 1 {
                take_in(tx, Scope::Contract(id))?;
            }
            Ok(n == 1)
        })
    }

    /// The contract `name`, made (empty) if there is none, in one
    /// transaction; true if it was made here.
    pub fn create_contract_if_absent(&self, name: &str) -> Result<(ContractRow, bool)> {
        self.write(|tx| {
            let (_, created) = ensure_contract(tx, name)?;
            let row = tx
                .prepare_cached(&format!("{CONTRACT_SELECT} WHERE c.name = ?1"))
                .and_then(|mut s| s.query_row([name], contract_of))
                .ctx("looking up a contract")?;
            Ok((row, created))
        })
    }

    /// A contract's roots in order; `None` if there is no such contract.
    pub fn contract_roots(&self, name: &str) -> Result<Option<Vec<Root>>> {
        self.read(|c| {
            // one snapshot: a rename between finding the contract and
            // reading its list must not show an empty list
            let tx = c.unchecked_transaction().ctx("reading a contract")?;
            let Some(id) = contract_id(&tx, name)? else {
                return Ok(None);
            };
            roots_of(&tx, id).map(Some)
        })
    }

    /// The roots of contract `id` in order (none if it is gone).
    pub fn contract_roots_by_id(&self, id: i64) -> Result<Vec<Root>> {
        self.read(|c| roots_of(c, id))
    }

    /// Every contract as (id, name, entries), by name.
    pub fn list_contracts(&self) -> Result<Vec<ContractRow>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!("{CONTRACT_SELECT} ORDER BY c.name"))
                .ctx("listing contracts")?;
            stmt.query_map([], contract_of)
                .ctx("listing contracts")?
                .collect::<rusqlite::Result<_>>()
                .ctx("listing contracts")
        })
    }

    /// The name contract `id` has now, if it still exists.
    pub fn contract_name(&self, id: i64) -> Result<Option<String>> {
        self.read(|c| contract_name(c, id))
    }

    /// Up to `limit` contracts (id, name) with ids above `after`, in id
    /// order: a page of a listing.
    pub fn contract_names_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, String)>> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT id, name FROM contracts WHERE id > ?1 ORDER BY id LIMIT ?2")
                .ctx("listing contracts")?;
            stmt.query_map(params![after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                .ctx("listing contracts")?
                .collect::<rusqlite::Result<_>>()
                .ctx("listing contracts")
        })
    }

    pub fn contract_by_name(&self, name: &str) -> Result<Option<ContractRow>> {
        self.read(|c| {
            c.prepare_cached(&format!("{CONTRACT_SELECT} WHERE c.name = ?1"))
                .and_then(|mut s| s.query_row([name], contract_of).optional())
                .ctx("looking up a contract")
        })
    }

    pub fn contract_by_id(&self, id: i64) -> Result<Option<ContractRow>> {
        self.read(|c| {
            c.prepare_cached(&format!("{CONTRACT_SELECT} WHERE c.id = ?1"))
                .and_then(|mut s| s.query_row([id], contract_of).optional())
                .ctx("looking up a contract")
        })
    }

    /// Names of the contracts holding a sector (for alerts about lost data).
    pub fn contracts_of(&self, sector_id: i64) -> Result<Vec<String>> {
        self.read(|c| contracts_of_in(c, sector_id))
    }
}

const CONTRACT_SELECT: &str = "SELECT c.id, c.name, (SELECT count(*) FROM contract_entries e \
     WHERE e.contract_id = c.id), c.revision, (SELECT coalesce(max(idx) + 1, 0) \
     FROM contract_entries e WHERE e.contract_id = c.id) FROM contracts c";

fn contract_of(r: &rusqlite::Row) -> rusqlite::Result<ContractRow> {
    Ok(ContractRow {
        id: r.get(0)?,
        name: r.get(1)?,
        entries: r.get::<_, i64>(2)? as u64,
        revision: r.get(3)?,
        end: r.get(4)?,
    })
}

/// The sector ids of `roots` with their conditions, in order; refused,
/// naming the first root that is not stored.
fn stored_ids(tx: &Transaction, name: &str, roots: &[Root]) -> Result<Vec<(i64, i64)>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT s.id, s.health FROM sectors s WHERE s.root = ?1 \
             AND EXISTS (SELECT 1 FROM copies c WHERE c.sector_id = s.id)",
        )
        .ctx("looking up a sector")?;
    roots
        .iter()
        .map(|root| {
            stmt.query_row([&root.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .ctx("looking up a sector")?
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "contract {name} names sector {root}, which is not stored"
                    ))
                })
        })
        .collect()
}

/// Replaces or appends to `contract`'s list with the sectors `ids` (with
/// their conditions), and frees what the old list alone held.
fn apply_revision(
    tx: &Transaction,
    contract: i64,
    created: bool,
    ids: &[(i64, i64)],
    edit: ContractEdit,
) -> Result<RefChange> {
    match edit {
        ContractEdit::Replace => {
            if !created {
                bump_revision(tx, contract)?;
            }
            let old = contract_sector_ids(tx, contract)?;
            delete_entries(tx, contract)?;
            insert_entries(tx, contract, 0, ids)?;
            list_replaced(tx, contract, old, ids)
        }
        ContractEdit::Append => {
            let start: i64 = tx
                .prepare_cached(
                    "SELECT coalesce(max(idx) + 1, 0) FROM contract_entries \
                     WHERE contract_id = ?1",
                )
                .and_then(|mut s| s.query_row([contract], |r| r.get(0)))
                .ctx("finding a contract's end")?;
            insert_entries(tx, contract, start, ids)?;
            // appended to an empty list: the whole contract
            let end = start + ids.len() as i64;
            contract_range_in(tx, contract, (start, end), start == 0, 1)?;
            Ok(RefChange {
                touched: ids.iter().map(|(id, _)| *id).collect(),
                freed: Vec::new(),
            })
        }
    }
}

/// Writes the sectors `ids` as `contract`'s entries from index `start`.
fn insert_entries(tx: &Transaction, contract: i64, start: i64, ids: &[(i64, i64)]) -> Result<()> {
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO contract_entries (contract_id, idx, sector_id) VALUES (?1, ?2, ?3)",
        )
        .ctx("adding contract entries")?;
    for (i, (id, _)) in ids.iter().enumerate() {
        insert
            .execute(params![contract, start + i as i64, id])
            .ctx("adding contract entries")?;
    }
    Ok(())
}

/// `contract`'s entries were just replaced by `new` (sector ids with their
/// conditions; none: its list dropped), `old` the distinct sectors it held
/// before: frees what the old list alone held, and its aggregates and
/// `/contracts`' follow.
fn list_replaced(
    tx: &Transaction,
    contract: i64,
    old: Vec<i64>,
    new: &[(i64, i64)],
) -> Result<RefChange> {
    let (freed, old_held) = free_unreferenced_counted(tx, &old)?;
    contract_replaced_in(tx, contract, new, &old_held)?;
    let mut touched = old;
    touched.extend(new.iter().map(|(id, _)| id));
    Ok(RefChange { touched, freed })
}

/// Drops contract `id` with its list, freeing what the list alone held.
fn drop_contract(tx: &Transaction, id: i64) -> Result<RefChange> {
    let old = contract_sector_ids(tx, id)?;
    delete_entries(tx, id)?;
    let change = list_replaced(tx, id, old, &[])?;
    tx.execute("DELETE FROM contracts WHERE id = ?1", [id])
        .ctx("removing a contract")?;
    take_in(tx, Scope::Contract(id))?;
    Ok(change)
}

fn roots_of(c: &Connection, contract: i64) -> Result<Vec<Root>> {
    c.prepare_cached(
        "SELECT s.root FROM contract_entries e JOIN sectors s ON s.id = e.sector_id \
         WHERE e.contract_id = ?1 ORDER BY e.idx",
    )
    .and_then(|mut stmt| {
        stmt.query_map([contract], |r| root_of(r, 0))?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .ctx("reading a contract")
}

fn contract_name(c: &Connection, id: i64) -> Result<Option<String>> {
    c.prepare_cached("SELECT name FROM contracts WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .ctx("looking up a contract")
}

fn contract_id(c: &Connection, name: &str) -> Result<Option<i64>> {
    c.prepare_cached("SELECT id FROM contracts WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
        .ctx("looking up a contract")
}

/// The contract `name`, made if there is none (with its first revision);
/// true if it was made here.
fn ensure_contract(tx: &Transaction, name: &str) -> Result<(i64, bool)> {
    if let Some(id) = contract_id(tx, name)? {
        return Ok((id, false));
    }
    let id = next_id(tx, "contracts", "next_contract_id")?;
    tx.execute(
        "INSERT INTO contracts (id, name) VALUES (?1, ?2)",
        params![id, name],
    )
    .ctx("creating a contract")?;
    bump_revision(tx, id)?;
    Ok((id, true))
}

/// Gives `contract` the next revision number.
fn bump_revision(tx: &Transaction, contract: i64) -> Result<()> {
    tx.prepare_cached(
        "UPDATE settings SET value = value + 1 WHERE key = 'contract_revision' \
         RETURNING value",
    )
    .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
    .and_then(|rev| {
        tx.prepare_cached("UPDATE contracts SET revision = ?1 WHERE id = ?2")
            .and_then(|mut s| s.execute([rev, contract]))
    })
    .ctx("numbering a contract revision")?;
    Ok(())
}

fn contract_sector_ids(c: &Connection, contract: i64) -> Result<Vec<i64>> {
    let mut stmt = c
        .prepare_cached("SELECT DISTINCT sector_id FROM contract_entries WHERE contract_id = ?1")
        .ctx("reading a contract's sectors")?;
    stmt.query_map([contract], |r| r.get(0))
        .ctx("reading a contract's sectors")?
        .collect::<rusqlite::Result<_>>()
        .ctx("reading a contract's sectors")
}

/// Deletes every entry of `contract` (the caller brings its aggregates
/// along: [`list_replaced`]).
fn delete_entries(c: &Connection, contract: i64) -> Result<()> {
    c.prepare_cached("DELETE FROM contract_entries WHERE contract_id = ?1")
        .and_then(|mut s| s.execute([contract]))
        .ctx("deleting contract entries")?;
    Ok(())
}

/// Names of the contracts holding sector `sector_id`, by name.
pub(super) fn contracts_of_in(c: &Connection, sector_id: i64) -> Result<Vec<String>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT DISTINCT c.name FROM contract_entries e \
             JOIN contracts c ON c.id = e.contract_id WHERE e.sector_id = ?1 ORDER BY 1",
        )
        .ctx("finding a sector's contracts")?;
    stmt.query_map([sector_id], |r| r.get(0))
        .ctx("finding a sector's contracts")?
        .collect::<rusqlite::Result<_>>()
        .ctx("finding a sector's contracts")
}
