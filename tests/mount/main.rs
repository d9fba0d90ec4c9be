//! Integration tests through a real mount: std::fs and standard tools.

mod harness;
mod sectors;
