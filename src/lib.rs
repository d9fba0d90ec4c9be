//! sectorfs: a storage host's sector store, mounted as a FUSE file system.
//!
//! Layers, one way: `fs` (FUSE adapter) → `engine` (placement, references,
//! jobs, alerts) → `meta` (SQLite) and `volume` (positioned file I/O).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod engine;
pub mod error;
pub mod figures;
pub mod fs;
pub mod import;
pub mod merkle;
pub mod meta;
pub mod parse;
pub mod plural;
pub mod report;
pub mod volume;
