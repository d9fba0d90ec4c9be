//! Writes of an upload's chunks into its reserved slot, on a thread of their
//! own: the writer's next piece is taken in while the device writes the
//! last one, instead of waiting for it. A chunk written goes to its pool's
//! kept buffers (see [`Pool::keep`]); one that failed comes back with its
//! report, for the close to write elsewhere.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use super::buffers::{Buf, Flight, Pool};
use crate::volume::VolumeFile;

/// One chunk to write: its index, where in the slot, and its bytes (shared
/// with the upload, whose root they go into).
type Job = (usize, u64, Arc<Buf>, Flight);

/// How a chunk's write went; a failed one hands its bytes back.
pub(super) type Outcome = Result<(), (io::Error, Arc<Buf>)>;

/// Where the writing thread puts what it wrote.
struct Landing {
    pool: Arc<Pool>,
    /// The upload, for the pool's kept buffers.
    owner: u64,
}

/// The writing thread of one reserved slot. Dropping it waits for every
/// write under way, so nothing lands in a slot after it is given back.
pub(super) struct SlotWriter {
    pool: Arc<Pool>,
    jobs: Option<Sender<Job>>,
    done: Receiver<(usize, Outcome)>,
    thread: Option<JoinHandle<()>>,
    /// Jobs sent and not yet reported.
    pending: usize,
}

impl SlotWriter {
    /// Starts the thread writing into `slot` of `file`; `None` if no thread
    /// can be had (the caller then writes each chunk as it sends it).
    pub(super) fn start(
        file: Arc<VolumeFile>,
        slot: u64,
        pool: Arc<Pool>,
        owner: u64,
    ) -> Option<Self> {
        let landing = Landing {
            pool: pool.clone(),
            owner,
        };
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (report, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("slot-write".into())
            .spawn(move || {
                while let Ok(first) = inbox.recv() {
                    // what queued up while the device was busy goes in one
                    // write, as far as it runs on without a gap
                    let mut run = vec![first];
                    while run.len() < MAX_RUN {
                        let (_, offset, buf, _) = run.last().expect("never empty");
                        let end = offset + buf.len() as u64;
                        match inbox.try_recv() {
                            Ok(next) if next.1 == end => run.push(next),
                            Ok(next) => {
                                if !write_run(
                                    &file,
                                    slot,
                                    std::mem::replace(&mut run, vec![next]),
                                    &landing,
                                    &report,
                                ) {
                                    return;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                    if !write_run(&file, slot, run, &landing, &report) {
                        return;
                    }
                }
            })
            .map_err(|e| super::workers::no_thread("slot-write", &e))
            .ok()?;
        Some(SlotWriter {
            pool,
            jobs: Some(jobs),
            done,
            thread: Some(thread),
            pending: 0,
        })
    }

    /// Queues chunk `i`'s bytes for `offset` in the slot; hands them back
    /// if the thread is gone.
    pub(super) fn send(&mut self, i: usize, offset: u64, buf: Arc<Buf>) -> Result<(), Arc<Buf>> {
        let jobs = self
            .jobs
            .as_ref()
            .expect("only a finished writer has no queue");
        match jobs.send((i, offset, buf, self.pool.flight())) {
            Ok(()) => {
                self.pending += 1;
                Ok(())
            }
            Err(mpsc::SendError((_, _, buf, _))) => Err(buf),
        }
    }

    /// Waits for every write sent so far; returns each chunk's outcome.
    pub(super) fn settle(&mut self) -> Vec<(usize, Outcome)> {
        let mut out = Vec::with_capacity(self.pending);
        while self.pending > 0 {
            match self.done.recv() {
                Ok(r) => out.push(r),
                // the thread died (it panicked): nothing more will come
                Err(_) => break,
            }
            self.pending -= 1;
        }
        self.pending = 0;
        out
    }
}

/// Most chunks written in one system call: 1 MiB of 256 KiB chunks, where
/// the device's speed levels off.
const MAX_RUN: usize = 4;

/// Writes chunks that follow each other in the slot and reports each one;
/// false once the upload is no longer listening.
fn write_run(
    file: &VolumeFile,
    slot: u64,
    run: Vec<Job>,
    landing: &Landing,
    report: &Sender<(usize, Outcome)>,
) -> bool {
    let offset = run[0].1;
    let parts: Vec<&[u8]> = run.iter().map(|(_, _, buf, _)| &buf[..]).collect();
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let written = file
        .write_parts(slot, offset, &parts)
        .and_then(|()| file.start_writeback_part(slot, offset, len as u64));
    drop(parts);
    for (i, _, buf, flight) in run {
        let outcome = match &written {
            Ok(()) => {
                landing.pool.keep(landing.owner, buf);
                Ok(())
            }
            Err(e) => Err((copy_error(e), buf)),
        };
        drop(flight);
        if report.send((i, outcome)).is_err() {
            return false;
        }
    }
    true
}

/// The same error again, for each chunk of a run that failed together.
pub(super) fn copy_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

impl Drop for SlotWriter {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!(
                "a slot's writing thread panicked; its chunks are written again at close"
            );
        }
    }
}
