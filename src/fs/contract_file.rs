//! A contract file open for writing: what an open means (replace with
//! `O_TRUNC`, append with `O_APPEND`), the list buffered until a close, and
//! the rules of a truncation done late.

use std::path::{Path, PathBuf};

use super::fds;
use super::handle::Writers;
use crate::engine::{ContractEdit, ContractRow, Engine, Severity};
use crate::error::{Error, Result};
use crate::merkle::Root;

/// The longest contract list a write may build (about a million roots).
const MAX_CONTRACT_BYTES: usize = 64 << 20;

/// Where a contract file is between its open and its close.
#[derive(Debug)]
enum State {
    /// Opened with `O_TRUNC` and nothing written: the truncation is done
    /// late, at a deciding close or at release (see `empty_if_unrevised`).
    TruncationPending,
    /// Nothing to apply; `Some` is what the last deciding flush reported.
    Clean(Option<std::result::Result<(), Error>>),
    /// Written since the last flush that applied it.
    Dirty,
    /// A write failed: the data is incomplete, so nothing is ever applied
    /// from this handle and the list keeps what it had.
    Failed(Error),
}

pub struct ContractFile {
    /// The contract's id: the handle follows it through renames.
    pub id: i64,
    /// Its name, as last seen (for messages and for finding who holds it).
    pub name: String,
    /// `None`: opened without O_TRUNC or O_APPEND, so a write is refused
    /// at close.
    edit: Option<ContractEdit>,
    /// The list at open, for reads through this handle.
    pub snapshot: Vec<u8>,
    /// The contract's revision and end (one past its last entry index) at
    /// open: a late truncation drops the entries below that end, and only
    /// while the list was not replaced since.
    opened_at: (i64, i64),
    /// Replace: the whole new list; append: what to append at next flush.
    data: Vec<u8>,
    /// `data` up to here arrived without a gap (a hole reads as zeros
    /// until it is written).
    contiguous: usize,
    /// `data` up to here is whole lines, each a root: checked as it came.
    checked: usize,
    writers: Writers,
    /// This handle made the contract (a create), and no list of it was
    /// applied yet: a refused first list takes the contract away again.
    made: bool,
    /// The process that opened it (its thread group: any of its threads
    /// may close the file).
    opener: u32,
    state: State,
}

impl ContractFile {
    /// A handle on contract `c` as read at open (its id and mark before
    /// its list); `made`: this handle's create made it, empty, so its
    /// truncation is done.
    pub fn new(
        c: ContractRow,
        edit: Option<ContractEdit>,
        snapshot: Vec<u8>,
        opener: u32,
        made: bool,
    ) -> ContractFile {
        let state = match edit {
            Some(ContractEdit::Replace) if !made => State::TruncationPending,
            _ => State::Clean(None),
        };
        ContractFile {
            id: c.id,
            name: c.name,
            edit,
            snapshot,
            opened_at: (c.revision, c.end),
            data: Vec::new(),
            contiguous: 0,
            checked: 0,
            writers: Writers::default(),
            made,
            opener,
            state,
        }
    }

    /// The edit a writable open with these flags makes: append, replace,
    /// or none (a write is then refused at close). A contract just made is
    /// replaced.
    pub fn edit_of(flags: i32, made: bool) -> Option<ContractEdit> {
        if flags & libc::O_APPEND != 0 {
            Some(ContractEdit::Append)
        } else if made || flags & libc::O_TRUNC != 0 {
            Some(ContractEdit::Replace)
        } else {
            None
        }
    }

    /// A write: buffered, and every line it completes checked at once, so
    /// the write that carries a bad line fails (a shell reports a failed
    /// write, not a failed close); the list is applied at close.
    pub fn write(
        &mut self,
        engine: &Engine,
        offset: u64,
        data: &[u8],
        owner: Option<u64>,
    ) -> Result<()> {
        self.writers.note(owner);
        if let State::Failed(e) = &self.state {
            return Err(e.reported());
        }
        self.state = State::Dirty;
        let append = self.edit == Some(ContractEdit::Append);
        let (start, end) = if append {
            (self.data.len(), self.data.len().saturating_add(data.len()))
        } else {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            (start, start.saturating_add(data.len()))
        };
        if end > MAX_CONTRACT_BYTES {
            // sticky: a list with a hole must never be applied
            let e = Error::TooBig(format!(
                "contract {}: a list is at most {MAX_CONTRACT_BYTES} bytes; the revision will \
                 not apply",
                self.name
            ));
            self.state = State::Failed(e.reported());
            return Err(e);
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[start..end].copy_from_slice(data);
        if let Err(e) = self.check_lines(start, end) {
            // sticky, as any failed write: the close applies nothing
            self.state = State::Failed(e.reported());
            return Err(self.refused(engine, e));
        }
        Ok(())
    }

    /// Checks the lines that bytes `start..end` just written completed.
    /// Lines after a gap wait for it to be filled (or for the close).
    fn check_lines(&mut self, start: usize, end: usize) -> Result<()> {
        if start < self.checked {
            // rewritten: from the start of the line it falls in
            self.checked = self.data[..start]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1);
        }
        if start <= self.contiguous {
            self.contiguous = self.contiguous.max(end);
        }
        while let Some(nl) = self.data[self.checked..self.contiguous]
            .iter()
            .position(|b| *b == b'\n')
        {
            let line = &self.data[self.checked..self.checked + nl];
            let good = std::str::from_utf8(line).is_ok_and(|t| t.parse::<Root>().is_ok());
            if !good {
                let number = self.data[..self.checked]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count();
                return Err(Error::Invalid(format!(
                    "contract {}: line {} is {:?}, not a root of 64 lowercase hex characters; \
                     the list is unchanged",
                    self.name,
                    number + 1,
                    String::from_utf8_lossy(&line[..line.len().min(80)])
                )));
            }
            self.checked += nl + 1;
        }
        Ok(())
    }

    /// A refused revision raises a warning in /status naming the contract
    /// and the reason, beside the log line.
    fn refused(&self, engine: &Engine, e: Error) -> Error {
        engine.alerts().raise(
            &format!("refused-contract-{}", self.id),
            Severity::Warning,
            format!("refused a revision of contract {}: {e}", self.name),
            serde_json::json!({"contract": self.name, "errno": e.errno()}),
        );
        e
    }

    /// `ftruncate(0)` through this handle. Opened without `O_TRUNC`
    /// (`truncate -s 0`, editors), the handle replaces the list from here
    /// on, empty unless more is written, applied at close like any
    /// revision.
    pub fn truncate(&mut self) {
        self.data.clear();
        self.contiguous = 0;
        self.checked = 0;
        if self.edit != Some(ContractEdit::Replace) {
            self.edit = Some(ContractEdit::Replace);
            if !matches!(self.state, State::Failed(_)) {
                self.state = State::Dirty;
            }
        }
    }

    /// Applies what was written since the last flush, in one transaction.
    /// A replace that wrote nothing empties the list, unless the closing
    /// process still holds the file: a shell redirection closes its first
    /// descriptor before the command writes the new list, and emptying
    /// there would free sectors the new list names. Such a handle is
    /// emptied at its last flush or at release.
    ///
    /// `owner`: the lock owner of a flush (a close); `None` for an fsync,
    /// which applies what was written so far (a truncation included) and,
    /// when refused, leaves the handle as it was for more writes and the
    /// close. `opener_may_write`: what [`opener_probe`](Self::opener_probe)
    /// found, for a close with a truncation pending.
    pub fn commit(
        &mut self,
        engine: &Engine,
        owner: Option<u64>,
        opener_may_write: Option<bool>,
    ) -> Result<()> {
        self.refresh_name(engine);
        if let State::Failed(e) = &self.state {
            let e = e.reported();
            tracing::warn!(
                "contract {}: a write to it failed, so its list is unchanged",
                self.name
            );
            if owner.is_some() {
                self.unmake(engine);
            }
            return Err(e);
        }
        if matches!(self.state, State::TruncationPending) {
            // an fsync asks for the truncation now; at a close, another
            // process (a child that inherited the descriptor, even one
            // closing it at exec) never empties the list for its opener
            // not known (the state changed since the probe): the cautious
            // way, the truncation waits for the last close
            if owner.is_some() && opener_may_write.unwrap_or(true) {
                tracing::debug!(
                    "contract {} closed with nothing written while its opener may still \
                     write: emptied at its last close",
                    self.name
                );
                return Ok(());
            }
        } else if !matches!(self.state, State::Dirty) || !self.writers.may_decide(owner) {
            return match &self.state {
                State::Clean(Some(outcome)) => outcome.as_ref().map_err(Error::reported).copied(),
                _ => Ok(()),
            };
        }
        let result = match (self.edit, &self.state) {
            (None, _) => Err(Error::Invalid(format!(
                "contract {} was written without O_TRUNC (replace) or O_APPEND (append); its \
                 list is unchanged",
                self.name
            ))),
            // nothing written: the truncation of the open, applied now to
            // the entries it would have dropped
            (Some(_), State::TruncationPending) => self.empty_if_unrevised(engine),
            (Some(edit), _) => crate::parse::parse_root_list(&self.data)
                .and_then(|roots| engine.revise_contract_by_id(self.id, &roots, edit)),
        };
        let result = result.map_err(|e| {
            self.refused(
                engine,
                Error::Reported {
                    errno: e.errno(),
                    message: format!("revise contract {}: {e}", self.name),
                },
            )
        });
        if owner.is_none() && result.is_err() {
            // refused at an fsync: the writes go on, the close decides
            return result;
        }
        if self.edit == Some(ContractEdit::Append) {
            self.data.clear();
            self.contiguous = 0;
            self.checked = 0;
        }
        if result.is_err() {
            self.unmake(engine);
        }
        self.made = false;
        self.state = State::Clean(Some(result.as_ref().map_err(Error::reported).copied()));
        result
    }

    /// At release: a handle opened with `O_TRUNC` whose flushes all came
    /// while its process still held the file, released with nothing
    /// written: the truncation is done now.
    pub fn release(&self, engine: &Engine) -> Result<()> {
        match self.state {
            State::TruncationPending => self.empty_if_unrevised(engine),
            _ => Ok(()),
        }
    }

    /// Renamed since it was opened: messages and the holder check use the
    /// name it has now.
    fn refresh_name(&mut self, engine: &Engine) {
        match engine.contract_name(self.id) {
            Ok(Some(name)) => self.name = name,
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot read the name of contract {}: {e}", self.name),
        }
    }

    /// For a close while the truncation is pending: the opener, and the
    /// path whose descriptors tell whether it may still write. Looked at by
    /// the caller without this file's lock (see [`opener_may_write`]).
    pub fn opener_probe(&mut self, engine: &Engine) -> Option<(u32, PathBuf)> {
        if !matches!(self.state, State::TruncationPending) {
            return None;
        }
        self.refresh_name(engine);
        Some((self.opener, Path::new("contracts").join(&self.name)))
    }

    /// A contract this handle made, whose first list was refused, goes
    /// again (unless a list was written to it meanwhile): a failed `cp` of
    /// a new contract leaves nothing behind.
    fn unmake(&mut self, engine: &Engine) {
        if !std::mem::take(&mut self.made) {
            return;
        }
        match engine.delete_contract_if_unrevised(self.id, self.opened_at.0) {
            Ok(true) => tracing::info!(
                "contract {} was made by this file and its first list refused: it is gone again",
                self.name
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                "contract {} was made by this file and its first list refused, but it could \
                 not be taken away again: {e}",
                self.name
            ),
        }
    }

    /// The truncation of a handle opened with `O_TRUNC` that wrote nothing,
    /// done late: drops the entries the contract had at open, unless its
    /// list was replaced since. Checked and done in one transaction, so a
    /// replace by another handle meanwhile always wins, and entries
    /// appended meanwhile stay, as after a truncation at open.
    fn empty_if_unrevised(&self, engine: &Engine) -> Result<()> {
        let (revision, end) = self.opened_at;
        if !engine.empty_contract_if_unrevised(self.id, revision, end)? {
            tracing::info!(
                "contract {} was opened to be emptied but revised or removed since; it stays \
                 as it is",
                self.name
            );
        }
        Ok(())
    }
}

/// Whether the opener (or a child of it) may still write the list: the
/// close came from another process (thread `pid`'s), or the opener holds
/// the file. Never called under a file's lock: reading `/proc` of a process
/// in the middle of an exec waits for that exec, and the exec's close of
/// its inherited copy of the file waits for the lock.
pub fn opener_may_write(pid: u32, (opener, tail): (u32, PathBuf)) -> bool {
    let pid = fds::process_of(pid);
    pid != opener || fds::holds_open(pid, &tail)
}

/// A contract's list as its file shows it: one root per line.
pub fn contract_text(roots: &[Root]) -> Vec<u8> {
    let mut out = Vec::with_capacity(roots.len() * 65);
    for r in roots {
        out.extend_from_slice(r.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}
