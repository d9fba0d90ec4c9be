//! The database handle: one writer connection behind a mutex does every
//! transaction; readers take their own connections from a pool, so in WAL
//! mode a reader never waits for a write transaction.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use super::schema;
use crate::error::{DbContext, Error, Result};

pub struct Meta {
    pub(super) path: PathBuf,
    pub(super) writer: Mutex<Connection>,
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
        let meta = Meta {
            path: path.to_path_buf(),
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
        };
        meta.rebuild_aggregates_if_asked()?;
        Ok(meta)
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
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(Duration::from_secs(30))
        .ctx("setting the busy timeout")?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .ctx("enabling foreign keys")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Owner only. A file system that keeps no modes (or a database owned by
/// another user) leaves it as it is: the store still works, so this is a
/// warning rather than a refusal to open.
fn restrict_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(
            "could not make the metadata database {} readable by its owner only: {e}",
            path.display()
        );
    }
}
