//! A control file open for writing: each complete line applies as it
//! arrives, and a write that carries a refused line changes nothing after
//! the lines before it (a short write).

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;

use super::control;
use super::handle::Writers;
use super::inode::Node;
use crate::engine::{Engine, Severity};
use crate::error::{Error, Result};

/// Longest input a control file buffers before a newline.
const MAX_INPUT: usize = 64 << 10;

/// What came through the handle so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing written.
    Fresh,
    /// Only empty lines (or the start of a line) so far.
    Blank,
    /// A line that was not blank came (applied or refused), or a write was
    /// refused: the close has nothing more to say.
    Acted,
}

struct Input {
    /// The start of a line still to come.
    partial: Vec<u8>,
    state: State,
    writers: Writers,
}

pub struct ControlFile {
    node: Node,
    /// The content at open, for reads through this handle.
    pub snapshot: Vec<u8>,
    input: Mutex<Input>,
}

impl ControlFile {
    pub fn new(node: Node, snapshot: Vec<u8>) -> ControlFile {
        ControlFile {
            node,
            snapshot,
            input: Mutex::new(Input {
                partial: Vec::new(),
                state: State::Fresh,
                writers: Writers::default(),
            }),
        }
    }

    /// A write: buffers `data` and applies every line it completes.
    /// Returns how many bytes took effect (fewer than `data` when a later
    /// line was refused).
    pub fn write(
        &self,
        engine: &Arc<Engine>,
        mountpoint: &Path,
        data: &[u8],
        owner: Option<u64>,
    ) -> Result<usize> {
        let earlier = {
            let mut input = self.input.lock();
            input.writers.note(owner);
            let earlier = input.partial.len();
            if earlier + data.len() > MAX_INPUT {
                input.partial.clear();
                input.state = State::Acted;
                drop(input);
                return Err(self.refused(
                    engine,
                    Error::Invalid(format!("control input longer than {} KiB", MAX_INPUT >> 10)),
                ));
            }
            // empty lines before any command: refused here, where a shell
            // sees it (`echo $UNSET > slots` must not pass for a resize); a
            // shell does not look at the close
            if earlier == 0
                && input.state != State::Acted
                && data.contains(&b'\n')
                && data.iter().all(u8::is_ascii_whitespace)
            {
                input.state = State::Acted;
                drop(input);
                return Err(self.refused(
                    engine,
                    Error::Invalid("an empty line: nothing was done".into()),
                ));
            }
            if input.state == State::Fresh {
                input.state = State::Blank;
            }
            input.partial.extend_from_slice(data);
            earlier
        };
        match self.apply_lines(engine, mountpoint, false) {
            Ok(_) => Ok(data.len()),
            // lines of this write took effect before the refused one: a
            // short write says so (a call that fails changes nothing), and
            // the rest, written again, is refused (capped: another write on
            // the handle may have come between)
            Err((_, applied)) if applied > earlier => Ok((applied - earlier).min(data.len())),
            Err((e, _)) => Err(e),
        }
    }

    /// A close by lock owner `owner`: applies what is left, even without a
    /// newline, when the closing process wrote (a child that inherited the
    /// descriptor and closes it at exec must not apply half a line).
    /// The file it is.
    pub fn node(&self) -> Node {
        self.node
    }

    pub fn flush(&self, engine: &Arc<Engine>, mountpoint: &Path, owner: u64) -> Result<()> {
        if !self.input.lock().writers.may_decide(Some(owner)) {
            return Ok(());
        }
        self.apply_lines(engine, mountpoint, true)
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    /// Applies each complete line buffered; `all` applies the rest too.
    /// Returns the bytes applied, also with a refused line (the rest is
    /// dropped).
    fn apply_lines(
        &self,
        engine: &Arc<Engine>,
        mountpoint: &Path,
        all: bool,
    ) -> std::result::Result<usize, (Error, usize)> {
        let mut input = self.input.lock();
        let mut applied = 0;
        loop {
            let buf = &mut input.partial;
            let line: Vec<u8> = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => buf.drain(..=i).collect(),
                None if all && !buf.is_empty() => std::mem::take(buf),
                // at close, a handle written with only empty lines did
                // nothing: say so
                None if all && input.state == State::Blank => {
                    input.state = State::Acted;
                    let e =
                        Error::Invalid("only empty lines were written: nothing was done".into());
                    return Err((self.refused(engine, e), applied));
                }
                None => return Ok(applied),
            };
            let result = std::str::from_utf8(&line)
                .map_err(|_| Error::Invalid("control input must be text".into()))
                .and_then(|text| {
                    if text.trim().is_empty() {
                        return Ok(());
                    }
                    input.state = State::Acted;
                    control::apply(engine, self.node, text, mountpoint)
                });
            if let Err(e) = result {
                input.state = State::Acted;
                input.partial.clear();
                return Err((self.refused(engine, e), applied));
            }
            applied += line.len();
        }
    }

    /// A refused write raises an alert, so an operator sees it in /status
    /// as well as in the log.
    fn refused(&self, engine: &Engine, e: Error) -> Error {
        let path = self.node.path();
        engine.alerts().raise(
            &format!("refused-{}", self.node.ino()),
            Severity::Warning,
            format!("refused a write to {path}: {e}"),
            serde_json::json!({"path": path, "errno": e.errno()}),
        );
        e
    }
}
