//! Metadata in SQLite: the only module that writes SQL.
//!
//! One writer connection behind a mutex does every transaction; readers
//! take their own connections from a pool, so in WAL mode a reader never
//! waits for a write transaction.

mod check;
mod jobs;
mod refs;
mod schema;
mod sectors;
mod volumes;

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::{DbContext, Error, Result};
use crate::merkle::Root;

pub use jobs::{JobKind, JobRow, Move};
pub use refs::ContractEdit;

/// A volume as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    pub id: u32,
    pub uuid: String,
    pub path: PathBuf,
    pub slots: u64,
    pub readonly: bool,
}

/// A stored sector and where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectorRow {
    pub id: i64,
    pub root: Root,
    pub volume_id: u32,
    pub slot: u64,
    /// Unix seconds when the sector was first stored.
    pub stored_at: i64,
}

/// A contract and the length of its root list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractRow {
    pub id: i64,
    pub name: String,
    pub entries: u64,
    /// Set anew whenever the list is replaced (migration 5).
    pub revision: i64,
    /// One past the index of its last entry: appends go from here.
    pub end: i64,
}

/// A reason to keep a sector that a write can add. Contract entries are
/// added by revisions instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    Pin,
    /// A temp entry expiring at this height.
    Temp(u64),
}

/// A sector whose last reference went: its slot is free in the database and
/// its bytes must be punched out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freed {
    pub root: Root,
    pub sector_id: i64,
    pub volume_id: u32,
    pub slot: u64,
}

/// What a reference change did.
#[derive(Debug, Default)]
pub struct RefChange {
    /// Sectors whose reference counts changed (freed ones included).
    pub touched: Vec<i64>,
    pub freed: Vec<Freed>,
}

/// How many references of each kind a sector has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefCounts {
    pub pins: u64,
    pub contracts: u64,
    pub temp: u64,
}

impl RefCounts {
    pub fn total(&self) -> u64 {
        self.pins + self.contracts + self.temp
    }
}

/// What inserting a sector found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new sector row now owns the slot.
    New(i64),
    /// Another writer stored the root first; only the reference was added,
    /// and the slot given is still the caller's to release.
    AlreadyStored(i64),
    /// The slot is no longer inside its volume (it shrank or was removed
    /// while the data was being written): nothing was recorded.
    SlotGone,
}

pub struct Meta {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl Meta {
    /// Opens (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Meta> {
        let mut conn = Connection::open(path).ctx("opening the database")?;
        configure(&conn)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .ctx("enabling WAL mode")?;
        // FULL syncs the WAL at every commit: a call that returned success
        // survives power loss, not only kill -9.
        conn.pragma_update(None, "synchronous", "FULL")
            .ctx("setting synchronous mode")?;
        schema::migrate(&mut conn)?;
        // New database files hold the store's map: owner only.
        restrict_mode(path);
        Ok(Meta {
            path: path.to_path_buf(),
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` in one IMMEDIATE transaction on the writer connection and
    /// commits; any error rolls everything back.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.writer.lock();
        let out = (|| {
            let tx = Transaction::new(&mut conn, TransactionBehavior::Immediate)
                .ctx("starting a transaction")?;
            let out = f(&tx)?;
            tx.commit().ctx("committing a transaction")?;
            Ok(out)
        })();
        out.map_err(|e| self.explain(&conn, e))
    }

    /// A write that failed because the database's file system turned
    /// read-only says so, with `EROFS`, rather than SQLite's "disk I/O
    /// error".
    fn explain(&self, conn: &Connection, e: Error) -> Error {
        let Error::Db { context, source } = e else {
            return e;
        };
        let io = matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::SystemIoFailure | rusqlite::ErrorCode::ReadOnly)
        );
        // SAFETY: the handle of a connection this thread holds the lock of.
        let os = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
        if io && os == libc::EROFS {
            return Error::Io {
                context: format!(
                    "the metadata database {} cannot be written, its file system is read-only \
                     ({context}: {source}); reads go on",
                    self.path.display()
                ),
                source: std::io::Error::from_raw_os_error(libc::EROFS),
            };
        }
        Error::Db { context, source }
    }

    /// Runs `f` on a pooled read connection.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match self.readers.lock().pop() {
            Some(c) => c,
            None => self.open_reader()?,
        };
        let out = f(&conn);
        self.readers.lock().push(conn);
        out
    }

    fn open_reader(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ctx("opening a read connection")?;
        configure(&conn)?;
        Ok(conn)
    }

    /// Bytes the database occupies on disk, WAL included.
    pub fn size_bytes(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        [&self.path, &wal]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Folds the WAL back into the main file (used before measuring size).
    pub fn checkpoint(&self) -> Result<()> {
        self.writer
            .lock()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .ctx("checkpointing the WAL")
    }
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(Duration::from_secs(30))
        .ctx("setting the busy timeout")?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .ctx("enabling foreign keys")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn restrict_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

/// The next id for a row of `table` (whose counter in `settings` is
/// `counter`, migration 6): ids are never given twice, even after the
/// newest row is deleted. Taken in the caller's transaction, so an insert
/// that fails takes nothing.
fn next_id(tx: &Transaction, table: &str, counter: &str) -> Result<i64> {
    tx.query_row(
        &format!(
            "UPDATE settings SET value = max(value, (SELECT coalesce(max(id), 0) + 1 \
             FROM {table})) + 1 WHERE key = ?1 RETURNING value - 1"
        ),
        [counter],
        |r| r.get(0),
    )
    .ctx("numbering a new row")
}

fn root_of(row: &rusqlite::Row, idx: usize) -> rusqlite::Result<Root> {
    let blob = row.get_ref(idx)?.as_blob()?;
    Root::from_slice(blob).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Blob,
            "a stored root is not 32 bytes".into(),
        )
    })
}

fn sector_of(row: &rusqlite::Row) -> rusqlite::Result<SectorRow> {
    Ok(SectorRow {
        id: row.get(0)?,
        root: root_of(row, 1)?,
        volume_id: row.get(2)?,
        slot: row.get::<_, i64>(3)? as u64,
        stored_at: row.get(4)?,
    })
}

const SECTOR_COLUMNS: &str = "id, root, volume_id, slot, stored_at";
