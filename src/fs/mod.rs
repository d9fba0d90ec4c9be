//! The file system. `fuse.rs` is the adapter to the kernel (dispatch only);
//! `filesystem.rs` and the modules beside it are the semantics, without
//! FUSE: paths and inodes in, engine calls out, errors that know their
//! errno back. Holds no storage logic of its own.
//!
//! - `inode.rs`: stable inode numbers of every node;
//! - `attr.rs`: attributes and how long the kernel keeps them;
//! - `dir.rs`: names in directories, listings, `/temp/<height>` dirs;
//! - `handle.rs`: the open files, one kind per module below;
//! - `sector_file.rs`, `contract_file.rs`, `control_file.rs`: a sector, a
//!   contract, a control file open for writing;
//! - `staging.rs`: `.<name>` files written, then renamed onto their root;
//! - `generated.rs`: what the status and control files show;
//! - `control.rs`: what a control line does;
//! - `xattr.rs`: extended attributes;
//! - `known.rs`, `invalidate.rs`: what the kernel holds, and telling it
//!   what to drop when that changes;
//! - `fds.rs`: processes holding a file;
//! - `mount.rs`: the session, signals, a clean unmount.

mod aggregate_xattr;
mod attr;
mod contract_file;
mod control;
mod control_file;
mod dir;
mod fds;
mod filesystem;
mod fuse;
mod generated;
mod handle;
mod inode;
mod invalidate;
mod known;
mod mount;
mod sector_file;
mod staging;
mod xattr;

pub use aggregate_xattr::UNHEALTHY_NAMES;
pub use attr::{Attr, Entry, Kind};
pub use dir::DirEntry;
pub use filesystem::{Caching, Opened, RenameFlags, SectorFs, SetAttr, Statfs};
pub use mount::{MountOptions, block_signals, mount};
