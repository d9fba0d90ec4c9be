//! Integration tests through a real mount: std::fs and standard tools.

mod contracts;
mod harness;
mod sectors;
mod temp;
