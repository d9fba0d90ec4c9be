//! Reading hostd's database: a foreign schema, not sectorfs's metadata, so
//! its SQL lives here and nowhere else. hostd's files are never opened by
//! SQLite: the database (and its `-wal`, which holds transactions committed
//! before a crash) is copied into the data dir and the copy is read, so
//! nothing of hostd's (not even a `-shm` file) is written. The shapes of
//! the tables that changed between hostd versions are told apart by their
//! columns (`reference.md`, "hostd's database").

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::error::{DbContext, Error, IoContext, Result};
use crate::merkle::Root;

/// How hostd's tables are laid out in this database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shape {
    /// `global_settings.db_version`, when there is one.
    pub db_version: Option<i64>,
    /// v1 contracts (`contracts`, `contract_sector_roots`) exist.
    pub v1: bool,
    /// v2 contracts (`contracts_v2`) exist.
    pub v2: bool,
    /// v2 resolution is `resolution_height` (schema 44 on), else
    /// `resolution_index`.
    pub v2_resolution_height: bool,
    /// v2 roots are copy-on-write roots maps (schema 49 on), else stored
    /// per contract.
    pub v2_roots_maps: bool,
}

/// A hostd volume.
#[derive(Debug, Clone)]
pub struct HostdVolume {
    pub id: u32,
    pub path: PathBuf,
    pub slots: u64,
    pub readonly: bool,
}

/// v1 and v2 contracts are numbered apart in hostd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    V1,
    V2,
}

/// A contract not yet resolved.
#[derive(Debug, Clone)]
pub struct HostdContract {
    pub kind: Kind,
    pub id: i64,
    /// The contract's id on chain, 32 bytes.
    pub contract_id: Vec<u8>,
}

/// A root held by a contract (`index`: its position) or by temp storage
/// (`index`: the expiration height).
#[derive(Debug, Clone)]
pub struct RootRow {
    pub kind: Kind,
    pub owner: i64,
    pub index: u64,
    pub sector_id: i64,
    pub root: Root,
}

/// A slot holding a sector.
#[derive(Debug, Clone, Copy)]
pub struct SlotRow {
    pub sector_id: i64,
    pub root: Root,
    pub volume_id: u32,
    pub slot: u64,
}

pub struct HostdDb {
    conn: Connection,
    copy: PathBuf,
    pub shape: Shape,
}

/// SQLite's unix locks: in the `-shm` file the WAL locks and the
/// "dead man switch" byte every open connection holds (120..136), in the
/// database file the pending, reserved and shared bytes (at 1 GiB).
const SHM_LOCKS: (i64, i64) = (120, 16);
const DB_LOCKS: (i64, i64) = (0x4000_0000, 512 + 2);

impl HostdDb {
    /// Copies hostd's database (with its `-wal`) to `copy`, where nothing
    /// is, and opens the copy. Refused while another process holds hostd's database open.
    pub fn open(db: &Path, copy: &Path) -> Result<HostdDb> {
        if !db.is_file() {
            return Err(Error::NotFound(format!(
                "hostd's database {} does not exist or is not a file",
                db.display()
            )));
        }
        refuse_if_open(db)?;
        let wal = suffixed(db, "-wal");
        std::fs::copy(db, copy).io_ctx(|| {
            format!(
                "cannot copy hostd's database {} to {}",
                db.display(),
                copy.display()
            )
        })?;
        if wal.exists() {
            std::fs::copy(&wal, suffixed(copy, "-wal"))
                .io_ctx(|| format!("cannot copy hostd's WAL {}", wal.display()))?;
        }
        // hostd may have started while the files were copied
        refuse_if_open(db)?;
        // read-write: opening the copy replays the copied WAL into it
        let conn = Connection::open(copy).ctx("opening the copy of hostd's database")?;
        conn.execute_batch("PRAGMA cache_size = -65536; PRAGMA query_only = OFF;")
            .ctx("setting up the copy of hostd's database")?;
        let shape = shape_of(&conn)?;
        if shape.v2_roots_maps {
            // the copy is ours: an index that makes "the newest row of each
            // position at or below a revision" one lookup
            conn.execute_batch(
                "CREATE INDEX IF NOT EXISTS sectorfs_import_roots ON contract_v2_sector_roots \
                 (contract_v2_roots_map_id, root_index, contract_v2_roots_map_revision_number)",
            )
            .ctx("indexing the copy of hostd's v2 roots")?;
        }
        Ok(HostdDb {
            conn,
            copy: copy.to_path_buf(),
            shape,
        })
    }

    /// Closes and deletes the copy.
    pub fn remove_copy(self) -> Result<()> {
        let copy = self.copy.clone();
        self.conn
            .close()
            .map_err(|(_, e)| Error::db("closing the copy of hostd's database", e))?;
        for suffix in ["", "-wal", "-shm"] {
            let p = suffixed(&copy, suffix);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(format!("cannot remove {}", p.display()), e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn volumes(&self) -> Result<Vec<HostdVolume>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, disk_path, total_sectors, read_only FROM storage_volumes ORDER BY id",
            )
            .ctx("reading hostd's volumes")?;
        stmt.query_map([], |r| {
            Ok(HostdVolume {
                id: r.get(0)?,
                path: PathBuf::from(r.get::<_, String>(1)?),
                slots: r.get::<_, i64>(2)? as u64,
                readonly: r.get(3)?,
            })
        })
        .ctx("reading hostd's volumes")?
        .collect::<rusqlite::Result<_>>()
        .ctx("reading hostd's volumes")
    }

    /// Every occupied slot, in sector id order.
    pub fn for_each_slot(&self, mut f: impl FnMut(SlotRow) -> Result<()>) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT s.id, s.sector_root, v.volume_id, v.volume_index FROM stored_sectors s \
                 JOIN volume_sectors v ON v.sector_id = s.id ORDER BY s.id",
            )
            .ctx("reading hostd's stored sectors")?;
        let mut rows = stmt.query([]).ctx("reading hostd's stored sectors")?;
        while let Some(r) = rows.next().ctx("reading hostd's stored sectors")? {
            let row = (|| {
                Ok::<_, rusqlite::Error>(SlotRow {
                    sector_id: r.get(0)?,
                    root: root_at(r, 1)?,
                    volume_id: r.get(2)?,
                    slot: r.get::<_, i64>(3)? as u64,
                })
            })()
            .ctx("reading hostd's stored sectors")?;
            f(row)?;
        }
        Ok(())
    }

    /// Every contract not yet resolved (v1, then v2; a rejected v2
    /// contract counts as resolved), and how many were left out as
    /// resolved.
    pub fn contracts(&self) -> Result<(Vec<HostdContract>, u64)> {
        let mut out = Vec::new();
        let mut resolved = 0;
        for (kind, table, open) in self.contract_tables() {
            let mut stmt = self
                .conn
                .prepare(&format!(
                    "SELECT id, contract_id, {open} FROM {table} ORDER BY id"
                ))
                .ctx("reading hostd's contracts")?;
            let mut rows = stmt.query([]).ctx("reading hostd's contracts")?;
            while let Some(r) = rows.next().ctx("reading hostd's contracts")? {
                if !r.get::<_, bool>(2).ctx("reading hostd's contracts")? {
                    resolved += 1;
                    continue;
                }
                out.push(HostdContract {
                    kind,
                    id: r.get(0).ctx("reading hostd's contracts")?,
                    contract_id: r.get(1).ctx("reading hostd's contracts")?,
                });
            }
        }
        Ok((out, resolved))
    }

    /// (kind, table, SQL that is true for a contract not yet resolved).
    fn contract_tables(&self) -> Vec<(Kind, &'static str, &'static str)> {
        let mut t = Vec::new();
        if self.shape.v1 {
            t.push((Kind::V1, "contracts", "resolution_height IS NULL"));
        }
        if self.shape.v2 {
            let open = if self.shape.v2_resolution_height {
                "resolution_height IS NULL AND contract_status <> 'rejected'"
            } else {
                "resolution_index IS NULL AND contract_status <> 'rejected'"
            };
            t.push((Kind::V2, "contracts_v2", open));
        }
        t
    }

    /// Every root of every contract not yet resolved, contract by contract
    /// and in order within each.
    pub fn for_each_contract_root(&self, mut f: impl FnMut(RootRow) -> Result<()>) -> Result<()> {
        let tables = self.contract_tables();
        for (kind, table, open) in tables {
            let sql = match (kind, self.shape.v2_roots_maps) {
                (Kind::V1, _) => format!(
                    "SELECT c.id, r.root_index, r.sector_id, s.sector_root \
                     FROM {table} c JOIN contract_sector_roots r ON r.contract_id = c.id \
                     JOIN stored_sectors s ON s.id = r.sector_id \
                     WHERE {open} ORDER BY c.id, r.root_index"
                ),
                (Kind::V2, false) => format!(
                    "SELECT c.id, r.root_index, r.sector_id, s.sector_root \
                     FROM {table} c JOIN contract_v2_sector_roots r ON r.contract_id = c.id \
                     JOIN stored_sectors s ON s.id = r.sector_id \
                     WHERE {open} ORDER BY c.id, r.root_index"
                ),
                // copy-on-write along a renewal chain: for each position below
                // the contract's sector count, its map's row with the highest
                // revision not above the contract's
                (Kind::V2, true) => format!(
                    "SELECT c.id, r.root_index, r.sector_id, s.sector_root \
                     FROM {table} c JOIN contract_v2_sector_roots r \
                       ON r.contract_v2_roots_map_id = c.contract_v2_roots_map_id \
                      AND r.root_index < c.sector_count \
                      AND r.contract_v2_roots_map_revision_number = ( \
                          SELECT max(x.contract_v2_roots_map_revision_number) \
                          FROM contract_v2_sector_roots x \
                          WHERE x.contract_v2_roots_map_id = r.contract_v2_roots_map_id \
                            AND x.root_index = r.root_index \
                            AND x.contract_v2_roots_map_revision_number \
                                <= c.contract_v2_roots_map_revision_number) \
                     JOIN stored_sectors s ON s.id = r.sector_id \
                     WHERE {open} ORDER BY c.id, r.root_index"
                ),
            };
            let mut stmt = self
                .conn
                .prepare(&sql)
                .ctx("reading hostd's contract roots")?;
            let mut rows = stmt.query([]).ctx("reading hostd's contract roots")?;
            while let Some(r) = rows.next().ctx("reading hostd's contract roots")? {
                let row = root_row(kind, r).ctx("reading hostd's contract roots")?;
                f(row)?;
            }
        }
        Ok(())
    }

    /// Every temp storage root (`owner` 0, `index` its expiration height).
    pub fn for_each_temp_root(&self, mut f: impl FnMut(RootRow) -> Result<()>) -> Result<()> {
        if !table_exists(&self.conn, "temp_storage_sector_roots")? {
            return Ok(());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT 0, t.expiration_height, t.sector_id, s.sector_root \
                 FROM temp_storage_sector_roots t JOIN stored_sectors s ON s.id = t.sector_id \
                 ORDER BY t.expiration_height, t.sector_id",
            )
            .ctx("reading hostd's temp roots")?;
        let mut rows = stmt.query([]).ctx("reading hostd's temp roots")?;
        while let Some(r) = rows.next().ctx("reading hostd's temp roots")? {
            f(root_row(Kind::V1, r).ctx("reading hostd's temp roots")?)?;
        }
        Ok(())
    }
}

fn root_row(kind: Kind, r: &rusqlite::Row) -> rusqlite::Result<RootRow> {
    Ok(RootRow {
        kind,
        owner: r.get(0)?,
        index: r.get::<_, i64>(1)? as u64,
        sector_id: r.get(2)?,
        root: root_at(r, 3)?,
    })
}

fn root_at(r: &rusqlite::Row, idx: usize) -> rusqlite::Result<Root> {
    let blob = r.get_ref(idx)?.as_blob()?;
    Root::from_slice(blob).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Blob,
            format!("a sector root of {} bytes, not 32", blob.len()).into(),
        )
    })
}

fn columns(conn: &Connection, table: &str) -> Result<HashSet<String>> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info({table})"))
        .ctx("reading the shape of hostd's tables")?;
    stmt.query_map([], |r| r.get::<_, String>(1))
        .ctx("reading the shape of hostd's tables")?
        .collect::<rusqlite::Result<_>>()
        .ctx("reading the shape of hostd's tables")
}

fn table_exists(conn: &Connection, table: &str) -> Result<bool> {
    Ok(!columns(conn, table)?.is_empty())
}

fn shape_of(conn: &Connection) -> Result<Shape> {
    for (table, need) in [
        (
            "storage_volumes",
            &["id", "disk_path", "total_sectors", "read_only"][..],
        ),
        (
            "volume_sectors",
            &["volume_id", "volume_index", "sector_id"],
        ),
        ("stored_sectors", &["id", "sector_root"]),
    ] {
        let have = columns(conn, table)?;
        if let Some(missing) = need.iter().find(|c| !have.contains(**c)) {
            return Err(Error::Invalid(format!(
                "this is not a hostd database this sectorfs can read: table {table} has no \
                 column {missing}"
            )));
        }
    }
    let v2 = columns(conn, "contracts_v2")?;
    let v2_roots = columns(conn, "contract_v2_sector_roots")?;
    let v2_roots_maps = v2_roots.contains("contract_v2_roots_map_id");
    if v2_roots_maps && !v2.contains("sector_count") {
        return Err(Error::Invalid(
            "hostd's v2 roots are in roots maps but contracts_v2 has no sector_count column: \
             a hostd schema this sectorfs does not know"
                .into(),
        ));
    }
    let db_version = if table_exists(conn, "global_settings")? {
        conn.query_row("SELECT max(db_version) FROM global_settings", [], |r| {
            r.get(0)
        })
        .ctx("reading hostd's schema version")?
    } else {
        None
    };
    Ok(Shape {
        db_version,
        v1: table_exists(conn, "contracts")? && table_exists(conn, "contract_sector_roots")?,
        v2: !v2.is_empty() && !v2_roots.is_empty(),
        v2_resolution_height: v2.contains("resolution_height"),
        v2_roots_maps,
    })
}

/// Refuses a database another process holds open (hostd still running):
/// SQLite holds these locks for as long as a connection is open (WAL mode)
/// or writes (rollback mode). A leftover `-wal` file alone is no sign.
fn refuse_if_open(db: &Path) -> Result<()> {
    let shm = suffixed(db, "-shm");
    for (path, range) in [(db.to_path_buf(), DB_LOCKS), (shm, SHM_LOCKS)] {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("cannot open {}", path.display()), e)),
        };
        if let Some(pid) = lock_holder(&file, range)
            .io_ctx(|| format!("cannot test the locks of {}", path.display()))?
        {
            return Err(Error::Busy(format!(
                "hostd's database {} is open in another process (pid {pid}): is hostd still \
                 running? Stop it (and anything else using the database) before importing",
                db.display()
            )));
        }
    }
    Ok(())
}

/// The process holding a lock on bytes `range` of `file`, if any.
fn lock_holder(file: &File, (start, len): (i64, i64)) -> std::io::Result<Option<i32>> {
    // SAFETY: a zeroed flock is a valid value of this plain C struct.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = start;
    lock.l_len = len;
    // SAFETY: F_GETLK on an fd we own, with a valid flock to fill in.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((lock.l_type != libc::F_UNLCK as libc::c_short).then_some(lock.l_pid))
}

pub(super) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
