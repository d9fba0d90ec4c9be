//! A sector file open for writing: the file rules (one whole sector,
//! nothing past 4 MiB, stored at the close of a process that wrote) over
//! the engine's [`Upload`], which writes and hashes each chunk as it
//! arrives.

use std::sync::Arc;

use super::handle::Writers;
use crate::engine::{Engine, Reference, Upload};
use crate::error::{Error, Result};
use crate::merkle::{Root, SECTOR_SIZE};

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
    pub root: Root,
    /// The reference the sector gets when stored.
    reference: Reference,
    /// Boxed: an upload is a few hundred bytes, and handles of every kind
    /// share one enum.
    upload: Box<Upload>,
    /// Bytes in the file: the highest end written (or set by truncate).
    len: usize,
    writers: Writers,
    state: State,
}

impl SectorFile {
    pub fn new(engine: Arc<Engine>, root: Root, reference: Reference) -> Result<SectorFile> {
        Ok(SectorFile {
            root,
            reference,
            upload: Box::new(Upload::new(engine, root)?),
            len: 0,
            writers: Writers::default(),
            state: State::Untouched,
        })
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
                "sector {}: a sector is {SECTOR_SIZE} bytes; a write of {} bytes at offset \
                 {offset} runs past it",
                self.root,
                data.len()
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
                "sector {}: a sector is {SECTOR_SIZE} bytes, it cannot be {len}",
                self.root
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
    /// any data refuses without deciding anything.
    pub fn commit(&mut self, owner: Option<u64>) -> Result<()> {
        if let State::Decided(done) = &self.state {
            return done.as_ref().map_err(Error::reported).copied();
        }
        let root = self.root;
        if !self.writers.may_decide(owner) {
            tracing::debug!(%root, "flush by a process that did not write: left to the writer");
            return Ok(());
        }
        if self.is_untouched() {
            // a shell's redirection closes its first fd before the command
            // writes: routine, so logged only if it stays so (at release)
            tracing::debug!(%root, "flush before any data: nothing stored yet");
            return Err(Error::Invalid(format!(
                "sector {root}: nothing was written yet"
            )));
        }
        if owner.is_none() && self.len < SECTOR_SIZE {
            // nothing can be made durable yet, and a close may still come
            // with the rest
            return Err(Error::Invalid(format!(
                "sector {root} is {} bytes so far, and is stored (and durable) only once it \
                 is all {SECTOR_SIZE}",
                self.len
            )));
        }
        let stored = self
            .upload
            .refused()
            .and_then(|()| self.check())
            .and_then(|()| self.upload.finish(self.reference));
        // a failed close keeps no slot it does not need: the file may never
        // be closed again
        self.upload.drop_target();
        let outcome = stored
            .map(|s| tracing::debug!(%root, new = s.new, "sector stored"))
            .map_err(|e| Error::Reported {
                errno: e.errno(),
                message: format!("store sector {root}: {e}"),
            });
        let reported = outcome.as_ref().map_err(Error::reported).copied();
        if !matches!(self.state, State::TooBig) {
            self.state = State::Decided(reported);
        }
        outcome
    }

    /// At release: a file closed with nothing written stored nothing, and
    /// the writer should hear of it in the log.
    pub fn release(&self) {
        if self.is_untouched() {
            tracing::warn!(
                "refused store sector {}: it was closed with nothing written (a sector is \
                 exactly {SECTOR_SIZE} bytes); nothing new was stored",
                self.root
            );
        }
    }

    fn check(&self) -> Result<()> {
        if matches!(self.state, State::TooBig) {
            return Err(Error::TooBig(format!(
                "sector {} was written past 4 MiB; nothing was stored",
                self.root
            )));
        }
        if self.len != SECTOR_SIZE {
            return Err(Error::Invalid(format!(
                "sector {} is {} bytes at close; a sector is exactly {SECTOR_SIZE} bytes, \
                 nothing was stored",
                self.root, self.len
            )));
        }
        Ok(())
    }
}
