//! Integration tests through a real mount: std::fs and standard tools.

mod aggregates;
mod caching;
mod cli;
#[path = "../common/mod.rs"]
mod common;
mod concurrency;
mod contracts;
mod copies;
mod faults;
mod harness;
mod hostile;
mod identity;
mod import;
mod integrity;
mod jobs;
mod limits;
mod listing;
mod loopfs;
mod model;
mod movable;
mod persistence;
mod recovery;
mod s3;
mod safety;
mod sectors;
mod service;
mod soak;
#[path = "../spec_model/mod.rs"]
mod spec_model;
mod status;
mod temp;
mod tiers;
mod tools;
mod upload_memory;
mod volumes;
