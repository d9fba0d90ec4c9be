//! Metadata in SQLite: the only module that writes SQL.
//!
//! One module per table family, each adding its methods to [`Meta`]
//! (`db.rs`: the connections and transactions). What several families
//! share (a sector's row, its reference counts, freeing what no reference
//! holds, id numbering) is in `query.rs`, which imports no other module
//! here, so the imports between these files never go round in a circle.

mod aggregates;
#[cfg(feature = "bench")]
mod bench;
mod check;
mod cold;
mod contracts;
mod copies;
mod db;
mod found;
mod health;
mod height;
mod import;
mod jobs;
mod pins;
mod punches;
mod query;
mod schema;
mod sectors;
mod temp;
mod volumes;

#[cfg(feature = "bench")]
pub use aggregates::WITHOUT_CONTRACT_AGGREGATES;
pub use aggregates::{Agg, Scope};
pub use cold::{COLD_VOLUME, ColdCounts};
pub use contracts::{ContractEdit, ContractRow};
pub use copies::{CopiesSetting, LostCopy};
pub use db::Meta;
pub use found::{ReferenceTotals, Registered};
pub use health::{AggregateView, PassStep, VolumeHealth};
pub use import::{Holders, ImportDb, ImportedSector};
pub use jobs::{JobKind, JobRow, Move};
pub use query::{Freed, RefChange, RefCounts, SectorInfo, SectorKey, SectorRow};
pub use sectors::{Inserted, Reference};
pub use temp::{MAX_TEMP_HEIGHT, check_temp_height};
pub use volumes::{Limits, VolumeRow};
