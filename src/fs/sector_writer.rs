//! A sector being written through the mount: the file-level rules (one
//! whole sector, nothing past 4 MiB) over the engine's [`Upload`], which
//! writes and hashes each chunk as it arrives.

use std::sync::Arc;

use crate::engine::{Engine, Reference, Stored, Upload};
use crate::error::{Error, Result};
use crate::merkle::{Root, SECTOR_SIZE};

pub struct SectorWriter {
    pub root: Root,
    /// Boxed: an upload is a few hundred bytes, and handles of every kind
    /// share one enum.
    upload: Box<Upload>,
    /// Bytes in the file: the highest end written (or set by truncate).
    len: usize,
    /// A write past 4 MiB poisons the file: nothing may be stored from it.
    too_big: bool,
    /// Nothing was written or truncated yet.
    untouched: bool,
}

impl SectorWriter {
    pub fn new(engine: Arc<Engine>, root: Root) -> Result<SectorWriter> {
        Ok(SectorWriter {
            root,
            upload: Box::new(Upload::new(engine, root)?),
            len: 0,
            too_big: false,
            untouched: true,
        })
    }

    pub fn len(&self) -> u64 {
        self.len as u64
    }

    pub fn is_untouched(&self) -> bool {
        self.untouched
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.untouched = false;
        let end = offset.checked_add(data.len() as u64);
        let Some(end) = end.filter(|e| *e <= SECTOR_SIZE as u64) else {
            self.too_big = true;
            return Err(Error::TooBig(format!(
                "a sector is {SECTOR_SIZE} bytes; a write of {} bytes at offset {offset} runs \
                 past it",
                data.len()
            )));
        };
        self.upload.write(offset as usize, data)?;
        self.len = self.len.max(end as usize);
        Ok(())
    }

    /// `ftruncate` while writing: shorter drops bytes, longer adds zeros.
    pub fn set_len(&mut self, len: u64) -> Result<()> {
        self.untouched = false;
        if len > SECTOR_SIZE as u64 {
            return Err(Error::TooBig(format!(
                "a sector is {SECTOR_SIZE} bytes, it cannot be {len}"
            )));
        }
        let len = len as usize;
        if len < self.len {
            self.upload.zero_from(len)?;
        }
        self.len = len;
        Ok(())
    }

    /// Checks the file is one whole sector, then stores it with `reference`
    /// (the engine checks it hashes to the name before anything is
    /// recorded).
    pub fn store(&mut self, reference: Reference) -> Result<Stored> {
        let stored = (self.upload.refused())
            .and_then(|()| self.check())
            .and_then(|()| self.upload.finish(reference));
        // a failed close keeps no slot: the file may never be closed again
        self.upload.drop_target();
        stored
    }

    fn check(&self) -> Result<()> {
        if self.too_big {
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
