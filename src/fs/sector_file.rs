//! A sector file open for writing: the file rules (one whole sector,
//! nothing past 4 MiB, stored at the close of a process that wrote, or at
//! the rename of a staging file onto its root) over the engine's
//! [`Upload`], which writes and hashes each chunk as it arrives.

use std::sync::Arc;
use std::time::SystemTime;

use super::handle::Writers;
use crate::engine::{Engine, Reference, UNNAMED_UPLOAD, Upload};
use crate::error::{Error, Result};
use crate::merkle::{Root, SECTOR_SIZE};
use crate::plural::count;

/// Where a sector file is between its open and its close.
enum State {
    /// Nothing written or truncated yet: a flush now is a shell closing a
    /// duplicate of the fd before the command writes.
    Untouched,
    /// Data came; the next deciding flush stores it.
    Writing,
    /// Written past 4 MiB: nothing may ever be stored from this file.
    TooBig,
    /// A flush stored it (or refused it for good); later flushes report the
    /// same until the next write.
    Decided(std::result::Result<(), Error>),
}

pub struct SectorFile {
    /// The root the data must hash to; `None` for a staging file until it
    /// is renamed onto one.
    root: Option<Root>,
    /// The reference the sector gets when stored.
    reference: Reference,
    /// Boxed: an upload is a few hundred bytes, and handles of every kind
    /// share one enum.
    upload: Box<Upload>,
    /// Bytes in the file: the highest end written (or set by truncate).
    len: usize,
    writers: Writers,
    state: State,
    /// A modification time set while it was written (`touch`, `cp -p`,
    /// rsync on its temporary file): the stored sector keeps it.
    pub mtime: Option<SystemTime>,
    /// The sector it stored, while no write came since.
    pub stored: Option<i64>,
    /// `reference` is a guess (a stored sector opened again for writing,
    /// maybe through a cached name): the first write confirms it.
    pub reference_unconfirmed: bool,
}

impl SectorFile {
    /// A sector file named by `root`, or a staging file (`None`).
    pub fn new(
        engine: Arc<Engine>,
        root: Option<Root>,
        reference: Reference,
    ) -> Result<SectorFile> {
        let upload = match root {
            Some(root) => Upload::new(engine, root)?,
            None => Upload::unnamed(engine)?,
        };
        Ok(SectorFile {
            root,
            reference,
            upload: Box::new(upload),
            len: 0,
            writers: Writers::default(),
            state: State::Untouched,
            mtime: None,
            stored: None,
            reference_unconfirmed: false,
        })
    }

    /// Confirms the guessed reference with `opened_as` (what the writer
    /// opened, told from its root), once, if it can tell.
    pub fn confirm_reference(&mut self, opened_as: impl FnOnce(Root) -> Option<Reference>) {
        if !std::mem::take(&mut self.reference_unconfirmed) {
            return;
        }
        if let Some(reference) = self.root.and_then(opened_as) {
            self.reference = reference;
        }
    }

    /// What messages call it.
    fn label(&self) -> String {
        match self.root {
            Some(root) => format!("sector {root}"),
            None => "staging file".into(),
        }
    }

    pub fn len(&self) -> u64 {
        self.len as u64
    }

    pub fn is_untouched(&self) -> bool {
        matches!(self.state, State::Untouched)
    }

    /// The data changed: the next deciding flush decides anew (a file
    /// written past 4 MiB stays refused).
    fn touched(&mut self) {
        self.stored = None;
        if !matches!(self.state, State::TooBig) {
            self.state = State::Writing;
        }
    }

    pub fn write(&mut self, offset: u64, data: &[u8], owner: Option<u64>) -> Result<()> {
        self.touched();
        self.writers.note(owner);
        let end = offset.checked_add(data.len() as u64);
        let Some(end) = end.filter(|e| *e <= SECTOR_SIZE as u64) else {
            self.state = State::TooBig;
            return Err(Error::TooBig(format!(
                "{}: a sector is {SECTOR_SIZE} bytes; a write of {} at offset {offset} runs \
                 past it",
                self.label(),
                count(data.len() as u64, "byte")
            )));
        };
        self.upload.write(offset as usize, data)?;
        self.len = self.len.max(end as usize);
        Ok(())
    }

    /// `ftruncate` while writing: shorter drops bytes, longer adds zeros.
    pub fn set_len(&mut self, len: u64) -> Result<()> {
        self.touched();
        if len > SECTOR_SIZE as u64 {
            return Err(Error::TooBig(format!(
                "{}: a sector is {SECTOR_SIZE} bytes, it cannot be {len}",
                self.label()
            )));
        }
        let len = len as usize;
        if len < self.len {
            self.upload.zero_from(len)?;
        }
        self.len = len;
        Ok(())
    }

    /// Stores the sector at a flush (`owner`: the closing lock owner) or an
    /// fsync (`None`). Only a process that wrote decides; a flush before
    /// any data refuses without deciding anything. A staging file is
    /// stored by its rename, not by a close. Returns the stored sector's id.
    pub fn commit(&mut self, owner: Option<u64>) -> Result<Option<i64>> {
        if self.root.is_none() {
            return Ok(None);
        }
        if let State::Decided(done) = &self.state {
            return done.as_ref().map_err(Error::reported).map(|_| None);
        }
        let label = self.label();
        if !self.writers.may_decide(owner) {
            tracing::debug!("flush by a process that did not write {label}: left to the writer");
            return Ok(None);
        }
        if self.is_untouched() {
            // a shell's redirection closes its first fd before the command
            // writes: routine, so logged only if it stays so (at release)
            tracing::debug!("flush of {label} before any data: nothing stored yet");
            return Err(Error::Invalid(format!("{label}: nothing was written yet")));
        }
        if owner.is_none() && self.len < SECTOR_SIZE {
            // nothing can be made durable yet, and a close may still come
            // with the rest
            return Err(Error::Invalid(format!(
                "{label} is {} so far, and is stored (and durable) only once it is all \
                 {SECTOR_SIZE}",
                count(self.len as u64, "byte")
            )));
        }
        self.store("at close").map(Some)
    }

    /// A staging file renamed onto `root`: stored now, as a close of a file
    /// named `root` would. Refused, it stays the staging file it was.
    pub fn store_as(&mut self, root: Root) -> Result<i64> {
        self.root = Some(root);
        self.upload.name(root);
        let stored = self.store("at its rename");
        if stored.is_err() {
            self.root = None;
            self.upload.name(UNNAMED_UPLOAD);
            self.touched();
        }
        stored
    }

    /// Checks the file is one whole sector that hashes to its name, then
    /// makes it durable and records it; the outcome is kept for later
    /// flushes.
    fn store(&mut self, when: &str) -> Result<i64> {
        let label = self.label();
        let stored = self
            .upload
            .refused()
            .and_then(|()| self.check(when))
            .and_then(|()| self.upload.finish(self.reference));
        // a failed close keeps no slot it does not need: the file may never
        // be closed again
        self.upload.drop_target();
        let outcome = stored
            .map(|s| {
                tracing::debug!(new = s.new, "{label} stored");
                self.stored = Some(s.sector_id);
                s.sector_id
            })
            .map_err(|e| Error::Reported {
                errno: e.errno(),
                message: format!("store {label}: {e}"),
            });
        let reported = outcome.as_ref().map_err(Error::reported).map(|_| ());
        if !matches!(self.state, State::TooBig) {
            self.state = State::Decided(reported);
        }
        outcome
    }

    /// At release: a file closed with nothing written stored nothing, and
    /// the writer should hear of it in the log.
    pub fn release(&self) {
        if self.is_untouched() && self.root.is_some() {
            tracing::warn!(
                "refused store {}: it was closed with nothing written (a sector is exactly \
                 {SECTOR_SIZE} bytes); nothing new was stored",
                self.label()
            );
        }
    }

    fn check(&self, when: &str) -> Result<()> {
        if matches!(self.state, State::TooBig) {
            return Err(Error::TooBig(format!(
                "{} was written past 4 MiB; nothing was stored",
                self.label()
            )));
        }
        if self.len != SECTOR_SIZE {
            return Err(Error::Invalid(format!(
                "{} is {} {when}; a sector is exactly {SECTOR_SIZE} bytes, nothing was \
                 stored",
                self.label(),
                count(self.len as u64, "byte")
            )));
        }
        Ok(())
    }
}
