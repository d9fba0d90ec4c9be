//! Reference changes. The transactional rules live in `meta`; here each
//! freed sector's bytes are punched out and its slot handed back (through
//! `punches.rs`).

use super::{ContractEdit, ContractRow, Engine, Reference, SectorRow};
use crate::error::{Error, Result};
use crate::merkle::Root;
use crate::meta::{Freed, RefChange};

impl Engine {
    /// Drops a sector's pin (`rm /sectors/<root>`).
    pub fn unpin(&self, root: &Root) -> Result<()> {
        let change = self.meta.unpin(root)?;
        self.release(change);
        Ok(())
    }

    /// Adds a reference to a sector already stored (`ln`).
    pub fn add_reference(&self, root: &Root, reference: Reference) -> Result<()> {
        let id = self.meta.add_reference(root, reference)?;
        self.refs_changed(&[id]);
        Ok(())
    }

    /// Applies a contract revision: all of it, or nothing.
    pub fn revise_contract(&self, name: &str, roots: &[Root], edit: ContractEdit) -> Result<()> {
        check_contract_name(name)?;
        let change = self.meta.revise_contract(name, roots, edit)?;
        self.release(change);
        Ok(())
    }

    /// A revision of the contract with id `id`, whatever its name is now
    /// (an open file follows its contract through renames).
    pub fn revise_contract_by_id(&self, id: i64, roots: &[Root], edit: ContractEdit) -> Result<()> {
        let change = self.meta.revise_contract_by_id(id, roots, edit)?;
        self.release(change);
        Ok(())
    }

    /// Renames contract `from` to `to`. An existing `to` is replaced only
    /// if `replace`; otherwise `EEXIST`, checked in the renaming
    /// transaction (`RENAME_NOREPLACE`).
    pub fn rename_contract(&self, from: &str, to: &str, replace: bool) -> Result<()> {
        check_contract_name(to)?;
        let change = self.meta.rename_contract(from, to, replace)?;
        self.release(change);
        Ok(())
    }

    /// Deletes contract `id` if it is still empty and at `revision`; true
    /// if done.
    pub fn delete_contract_if_unrevised(&self, id: i64, revision: i64) -> Result<bool> {
        self.meta.delete_contract_if_unrevised(id, revision)
    }

    pub fn delete_contract(&self, name: &str) -> Result<()> {
        let change = self.meta.delete_contract(name)?;
        self.release(change);
        Ok(())
    }

    pub fn contract_roots(&self, name: &str) -> Result<Option<Vec<Root>>> {
        self.meta.contract_roots(name)
    }

    /// The roots of contract `id` in order (none if it is gone).
    pub fn contract_roots_by_id(&self, id: i64) -> Result<Vec<Root>> {
        self.meta.contract_roots_by_id(id)
    }

    /// Drops the entries contract `id` had at `revision` (those below index
    /// `end`), unless its list was replaced since (or it is gone): what a
    /// truncation at open does, applied late. True if done.
    pub fn empty_contract_if_unrevised(&self, id: i64, revision: i64, end: i64) -> Result<bool> {
        match self.meta.empty_contract_if_unrevised(id, revision, end)? {
            Some(change) => {
                self.release(change);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn list_contracts(&self) -> Result<Vec<ContractRow>> {
        self.meta.list_contracts()
    }

    /// The name contract `id` has now, if it still exists.
    pub fn contract_name(&self, id: i64) -> Result<Option<String>> {
        self.meta.contract_name(id)
    }

    /// A page of the contracts: up to `limit` (id, name) with ids above
    /// `after`.
    pub fn contract_names_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, String)>> {
        self.meta.contract_names_after(after, limit)
    }

    pub fn contract_by_name(&self, name: &str) -> Result<Option<ContractRow>> {
        self.meta.contract_by_name(name)
    }

    pub fn contract_by_id(&self, id: i64) -> Result<Option<ContractRow>> {
        self.meta.contract_by_id(id)
    }

    /// The contract `name`, made empty if there is none (checked and made
    /// in one transaction); true if it was made here.
    pub fn create_contract_if_absent(&self, name: &str) -> Result<(ContractRow, bool)> {
        check_contract_name(name)?;
        self.meta.create_contract_if_absent(name)
    }

    pub fn temp_entry(&self, expiration: u64, root: &Root) -> Result<Option<SectorRow>> {
        self.meta.temp_entry(expiration, root)
    }

    pub fn contracts_of(&self, sector_id: i64) -> Result<Vec<String>> {
        self.meta.contracts_of(sector_id)
    }

    pub fn remove_temp(&self, expiration: u64, root: &Root) -> Result<()> {
        let change = self.meta.remove_temp(expiration, root)?;
        self.release(change);
        Ok(())
    }

    pub fn temp_heights(&self) -> Result<Vec<u64>> {
        self.meta.temp_heights()
    }

    /// Makes `/temp/<height>`, durably: an empty one survives a restart.
    pub fn make_temp_dir(&self, height: u64) -> Result<()> {
        self.meta.make_temp_dir(height)
    }

    pub fn remove_temp_dir(&self, height: u64) -> Result<()> {
        self.meta.remove_temp_dir(height)
    }

    pub fn temp_dir_exists(&self, height: u64) -> Result<bool> {
        self.meta.temp_dir_exists(height)
    }

    /// Every `/temp/<height>` directory above the current height.
    pub fn temp_dirs(&self) -> Result<Vec<u64>> {
        self.meta.temp_dirs()
    }

    pub fn temp_roots(&self, expiration: u64) -> Result<Vec<(i64, Root)>> {
        self.meta.temp_roots(expiration)
    }

    pub fn height(&self) -> Result<u64> {
        self.meta.height()
    }

    /// Sets the chain height; expired temp entries go in the same transaction.
    pub fn set_height(&self, height: u64) -> Result<()> {
        let change = self.meta.set_height(height)?;
        tracing::info!(height, freed = change.freed.len(), "height set");
        self.release(change);
        Ok(())
    }

    /// Tells of changed link counts; punches out the bytes of freed
    /// sectors, then hands their slots back.
    pub(crate) fn release(&self, change: RefChange) {
        self.refs_changed(&change.touched);
        let freed = change.freed;
        if freed.is_empty() {
            return;
        }
        if let Some(listener) = self.free_listener.read().as_ref() {
            freed.iter().for_each(listener);
        }
        let (cold, local): (Vec<&Freed>, Vec<&Freed>) = freed
            .iter()
            .partition(|f| f.volume_id == crate::meta::COLD_VOLUME);
        self.cold_freed(cold.iter().map(|f| f.root).collect());
        for f in &freed {
            self.cache_forget(&f.root);
        }
        let slots: Vec<(u32, u64)> = local.iter().map(|f| (f.volume_id, f.slot)).collect();
        self.crash_point("free:recorded");
        self.punch_and_release(&slots);
        self.space_changed();
    }
}

/// `[A-Za-z0-9_.-]`, 1 to 128 characters; not `.` or `..`.
pub fn check_contract_name(name: &str) -> Result<()> {
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "contract id {:?} must be 1-128 characters of A-Z a-z 0-9 _ . -",
            name.chars().take(140).collect::<String>()
        )))
    }
}
