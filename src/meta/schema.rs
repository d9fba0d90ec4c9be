//! Versioned migrations. `PRAGMA user_version` records how many have run;
//! each runs once, in its own transaction, in order.

use rusqlite::Connection;

use crate::error::{DbContext, Result};

/// Never edit a migration that has shipped: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema. Free slots have no rows: they are derived at open
    // from the occupied ones, so adding or growing a volume is O(1) here.
    r#"
    CREATE TABLE volumes (
        id        INTEGER PRIMARY KEY,
        uuid      TEXT NOT NULL UNIQUE,
        path      TEXT NOT NULL UNIQUE,
        slots     INTEGER NOT NULL CHECK (slots >= 0),
        readonly  INTEGER NOT NULL DEFAULT 0
    );
    -- AUTOINCREMENT: a sector id is never reused, because the mount
    -- derives inode numbers (and the kernel caches data) from it.
    CREATE TABLE sectors (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        root       BLOB NOT NULL UNIQUE CHECK (length(root) = 32),
        volume_id  INTEGER NOT NULL REFERENCES volumes(id),
        slot       INTEGER NOT NULL,
        stored_at  INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX sectors_location ON sectors(volume_id, slot);
    CREATE TABLE pins (
        sector_id  INTEGER PRIMARY KEY REFERENCES sectors(id)
    );
    CREATE TABLE contracts (
        id    INTEGER PRIMARY KEY,
        name  TEXT NOT NULL UNIQUE
    );
    CREATE TABLE contract_entries (
        contract_id  INTEGER NOT NULL REFERENCES contracts(id),
        idx          INTEGER NOT NULL,
        sector_id    INTEGER NOT NULL REFERENCES sectors(id),
        PRIMARY KEY (contract_id, idx)
    ) WITHOUT ROWID;
    CREATE INDEX contract_entries_sector ON contract_entries(sector_id);
    CREATE TABLE temp_entries (
        expiration  INTEGER NOT NULL,
        sector_id   INTEGER NOT NULL REFERENCES sectors(id),
        PRIMARY KEY (expiration, sector_id)
    ) WITHOUT ROWID;
    CREATE INDEX temp_entries_sector ON temp_entries(sector_id);
    -- Slots freed in a committed transaction whose bytes are not yet
    -- punched out; punched at the next open if the daemon died first.
    CREATE TABLE pending_punches (
        volume_id  INTEGER NOT NULL,
        slot       INTEGER NOT NULL,
        PRIMARY KEY (volume_id, slot)
    ) WITHOUT ROWID;
    CREATE TABLE settings (
        key    TEXT PRIMARY KEY,
        value  INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO settings (key, value) VALUES ('height', 0);
    "#,
    // 2: background jobs in flight, so a crash resumes them at next open.
    r#"
    CREATE TABLE jobs (
        volume_id  INTEGER PRIMARY KEY REFERENCES volumes(id),
        kind       TEXT NOT NULL CHECK (kind IN ('resize', 'remove')),
        target     INTEGER NOT NULL,
        force      INTEGER NOT NULL DEFAULT 0,
        started_at INTEGER NOT NULL
    );
    "#,
    // 3: when each sector was last verified (NULL: not since it was stored
    // and verified on the way in), and where the scrub goes on from.
    r#"
    ALTER TABLE sectors ADD COLUMN checked_at INTEGER;
    INSERT INTO settings (key, value) VALUES ('scrub_cursor', 0);
    "#,
    // 4: `/temp/<height>` directories made with mkdir (or emptied by rm),
    // so an empty one survives a restart like any directory. A height with
    // temp entries is a directory whether or not it has a row here.
    r#"
    CREATE TABLE temp_dirs (
        height  INTEGER PRIMARY KEY
    );
    "#,
    // 5: a contract's revision: a number from one counter, set anew when
    // the contract is made or its list replaced or emptied (appends only
    // add entries after those it had), so a late close can tell whether
    // the entries it saw at open are still there (the same content written
    // again included).
    r#"
    ALTER TABLE contracts ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
    INSERT INTO settings (key, value) VALUES ('contract_revision', 0);
    "#,
    // 6: volume and contract ids are never given twice (SQLite gives the
    // highest id plus one, so removing the newest freed its id): an upload
    // still holding a slot of a removed volume must never find a new volume
    // under its id, an open file of a removed contract never revises a new
    // one, and alerts, metrics and inode numbers never name another.
    r#"
    INSERT INTO settings (key, value)
        SELECT 'next_volume_id', coalesce(max(id), 0) + 1 FROM volumes;
    INSERT INTO settings (key, value)
        SELECT 'next_contract_id', coalesce(max(id), 0) + 1 FROM contracts;
    "#,
    // 7: the contract counter again, for a store made by a build whose
    // migration 6 numbered volumes only
    r#"
    INSERT OR IGNORE INTO settings (key, value)
        SELECT 'next_contract_id', coalesce(max(id), 0) + 1 FROM contracts;
    "#,
    // 8: a sector's modification time, when one was set (touch, cp -p,
    // rsync -a); NULL: the time it was first stored
    r#"
    ALTER TABLE sectors ADD COLUMN mtime_ns INTEGER;
    "#,
    // 9: copies. A sector's locations move to their own table, one row per
    // copy (no sector data is rewritten); the check time is per copy. The
    // sectors table is rebuilt without its location columns, keeping its
    // ids and its AUTOINCREMENT high mark (ids are never given twice).
    r#"
    CREATE TABLE copies (
        id          INTEGER PRIMARY KEY,
        sector_id   INTEGER NOT NULL REFERENCES sectors(id),
        volume_id   INTEGER NOT NULL,
        slot        INTEGER NOT NULL,
        added_at    INTEGER NOT NULL,
        checked_at  INTEGER
    );
    INSERT INTO copies (sector_id, volume_id, slot, added_at, checked_at)
        SELECT id, volume_id, slot, stored_at, checked_at FROM sectors ORDER BY id;
    CREATE UNIQUE INDEX copies_location ON copies(volume_id, slot);
    -- no two copies of a sector on one volume
    CREATE UNIQUE INDEX copies_sector ON copies(sector_id, volume_id);
    CREATE TABLE sectors_new (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        root       BLOB NOT NULL UNIQUE CHECK (length(root) = 32),
        stored_at  INTEGER NOT NULL,
        mtime_ns   INTEGER
    );
    INSERT INTO sectors_new (id, root, stored_at, mtime_ns)
        SELECT id, root, stored_at, mtime_ns FROM sectors;
    DELETE FROM sqlite_sequence WHERE name = 'sectors_new';
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'sectors_new', seq FROM sqlite_sequence WHERE name = 'sectors';
    DROP TABLE sectors;
    ALTER TABLE sectors_new RENAME TO sectors;
    INSERT INTO settings (key, value) VALUES ('copies_min', 1), ('copies_max', 1),
        ('repair_cursor', -1);
    "#,
    // 10: self-describing volumes. The store's uuid (named in every
    // volume's sidecar); per volume whether its sidecar was written (an
    // older store's volumes get theirs at their first open), its limits,
    // whether it is detached; the redeclare job; when the last metadata
    // backup was written.
    r#"
    CREATE TABLE store (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        uuid  TEXT NOT NULL
    );
    ALTER TABLE volumes ADD COLUMN sidecar INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE volumes ADD COLUMN weight INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 0);
    ALTER TABLE volumes ADD COLUMN max_sectors INTEGER NOT NULL DEFAULT 0
        CHECK (max_sectors >= 0);
    ALTER TABLE volumes ADD COLUMN min_free INTEGER NOT NULL DEFAULT 0 CHECK (min_free >= 0);
    ALTER TABLE volumes ADD COLUMN detached INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE jobs_new (
        volume_id  INTEGER PRIMARY KEY REFERENCES volumes(id),
        kind       TEXT NOT NULL CHECK (kind IN ('resize', 'remove', 'redeclare')),
        target     INTEGER NOT NULL,
        force      INTEGER NOT NULL DEFAULT 0,
        started_at INTEGER NOT NULL
    );
    INSERT INTO jobs_new SELECT volume_id, kind, target, force, started_at FROM jobs;
    DROP TABLE jobs;
    ALTER TABLE jobs_new RENAME TO jobs;
    INSERT INTO settings (key, value) VALUES ('last_backup', 0);
    "#,
    // 11: aggregates (issue 18). Each sector's condition (ready copies,
    // health bits: see meta/aggregates.rs), what it is computed from (the
    // volumes out of service and their devices, copies known corrupt),
    // the aggregates themselves (kind, key: a contract, temp height,
    // volume, or store-wide), the background passes that bring them up to
    // date after a volume changes state, and an index of copies by the
    // time they were last verified. `aggregates_rebuild` has the opening
    // code fill them from the tables (it is Rust, shared with the check).
    r#"
    ALTER TABLE sectors ADD COLUMN ready INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sectors ADD COLUMN health INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE volume_health (
        volume_id  INTEGER PRIMARY KEY,
        out        INTEGER NOT NULL,
        device     INTEGER
    );
    CREATE TABLE corrupt_copies (
        sector_id  INTEGER NOT NULL,
        volume_id  INTEGER NOT NULL,
        PRIMARY KEY (sector_id, volume_id)
    ) WITHOUT ROWID;
    CREATE TABLE aggregates (
        kind         INTEGER NOT NULL,
        key          INTEGER NOT NULL,
        entries      INTEGER NOT NULL,
        sectors      INTEGER NOT NULL,
        unhealthy    INTEGER NOT NULL,
        unavailable  INTEGER NOT NULL,
        corrupt      INTEGER NOT NULL,
        lost         INTEGER NOT NULL,
        cold         INTEGER NOT NULL,
        shared       INTEGER NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID;
    -- volume_id 0: every sector (cursor: a sector id); else the copies of
    -- that volume (cursor: a slot)
    CREATE TABLE health_passes (
        volume_id     INTEGER PRIMARY KEY,
        cursor        INTEGER NOT NULL,
        requested_at  INTEGER NOT NULL
    );
    CREATE INDEX copies_checked ON copies(coalesce(checked_at, added_at), volume_id);
    INSERT INTO settings (key, value) VALUES ('aggregates_rebuild', 1);
    "#,
    // 12: tiers. When a sector was last read (NULL: not since it was
    // stored), saved in batches: what goes to the cold tier. A sector's
    // object in the cold store is a `copies` row on volume 0 (no volume
    // has that id), slot = the sector's id.
    r#"
    ALTER TABLE sectors ADD COLUMN read_at INTEGER;
    "#,
    // 13: the cold tier's counts kept as copies change: counting them at
    // each read of /status took 0.45 s per million objects. One row.
    r#"
    CREATE TABLE cold_totals (
        id         INTEGER PRIMARY KEY CHECK (id = 0),
        objects    INTEGER NOT NULL,
        cold_only  INTEGER NOT NULL
    );
    INSERT INTO cold_totals (id, objects, cold_only)
        SELECT 0, count(*), coalesce(sum(NOT EXISTS (SELECT 1 FROM copies l
            WHERE l.sector_id = c.sector_id AND l.volume_id != 0)), 0)
        FROM copies c WHERE c.volume_id = 0;
    CREATE TRIGGER cold_copy_added AFTER INSERT ON copies
    WHEN NEW.volume_id = 0
    BEGIN
        UPDATE cold_totals SET objects = objects + 1,
            cold_only = cold_only + (NOT EXISTS (SELECT 1 FROM copies l
                WHERE l.sector_id = NEW.sector_id AND l.volume_id != 0));
    END;
    CREATE TRIGGER cold_copy_removed AFTER DELETE ON copies
    WHEN OLD.volume_id = 0
    BEGIN
        UPDATE cold_totals SET objects = objects - 1,
            cold_only = cold_only - (NOT EXISTS (SELECT 1 FROM copies l
                WHERE l.sector_id = OLD.sector_id AND l.volume_id != 0));
    END;
    -- the first local copy of a sector with an object
    CREATE TRIGGER local_copy_added AFTER INSERT ON copies
    WHEN NEW.volume_id != 0 AND EXISTS (SELECT 1 FROM copies c
        WHERE c.sector_id = NEW.sector_id AND c.volume_id = 0)
    BEGIN
        UPDATE cold_totals SET cold_only = cold_only - (NOT EXISTS (SELECT 1
            FROM copies l WHERE l.sector_id = NEW.sector_id AND l.volume_id != 0
            AND l.id != NEW.id));
    END;
    -- the last local copy of a sector with an object
    CREATE TRIGGER local_copy_removed AFTER DELETE ON copies
    WHEN OLD.volume_id != 0 AND EXISTS (SELECT 1 FROM copies c
        WHERE c.sector_id = OLD.sector_id AND c.volume_id = 0)
    BEGIN
        UPDATE cold_totals SET cold_only = cold_only + (NOT EXISTS (SELECT 1
            FROM copies l WHERE l.sector_id = OLD.sector_id AND l.volume_id != 0));
    END;
    -- nothing moves a copy to or from volume 0, nor to another sector; if
    -- something did, everything is counted again
    CREATE TRIGGER cold_copy_changed AFTER UPDATE OF sector_id, volume_id ON copies
    WHEN OLD.volume_id = 0 OR NEW.volume_id = 0 OR OLD.sector_id != NEW.sector_id
    BEGIN
        UPDATE cold_totals SET
            objects = (SELECT count(*) FROM copies WHERE volume_id = 0),
            cold_only = (SELECT coalesce(sum(NOT EXISTS (SELECT 1 FROM copies l
                WHERE l.sector_id = c.sector_id AND l.volume_id != 0)), 0)
                FROM copies c WHERE c.volume_id = 0);
    END;
    "#,
];

/// Runs the migrations not run yet. Foreign keys are off meanwhile (a
/// table rebuilt under its name would fail them half way), and checked
/// before each migration commits.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    conn.pragma_update(None, "foreign_keys", "OFF")
        .ctx("pausing foreign keys for the migrations")?;
    let migrated = run_migrations(conn);
    conn.pragma_update(None, "foreign_keys", "ON")
        .ctx("enabling foreign keys")?;
    migrated
}

fn run_migrations(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx("reading the schema version")?;
    if version as usize > MIGRATIONS.len() {
        return Err(crate::error::Error::Invalid(format!(
            "the database has schema version {version}, newer than this sectorfs knows ({}); \
             upgrade sectorfs",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().ctx("starting a migration")?;
        tx.execute_batch(sql).ctx("migrating the schema")?;
        let broken: i64 = tx
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .ctx("checking the migrated schema")?;
        if broken > 0 {
            return Err(crate::error::Error::Invalid(format!(
                "migration {} would leave {broken} rows pointing at nothing; the database \
                 was not changed",
                i + 1
            )));
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .ctx("recording the schema version")?;
        tx.commit().ctx("committing a migration")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(c: &Connection) -> (i64, i64, i64, i64) {
        c.query_row(
            "SELECT t.objects, t.cold_only, \
             (SELECT count(*) FROM copies WHERE volume_id = 0), \
             (SELECT count(*) FROM copies c WHERE c.volume_id = 0 AND NOT EXISTS \
              (SELECT 1 FROM copies l WHERE l.sector_id = c.sector_id AND l.volume_id != 0)) \
             FROM cold_totals t",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
    }

    /// The cold tier's kept counts follow every kind of change to copies:
    /// objects and local copies added and removed in any order, copies
    /// moved between volumes, even to and from volume 0.
    #[test]
    fn cold_totals_follow_every_change_of_copies() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c).unwrap();
        // copies alone: the sectors they belong to do not matter here
        c.pragma_update(None, "foreign_keys", "OFF").unwrap();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut slot = 0;
        let mut seen = (0, 0);
        for step in 0..3000 {
            let sector = next(12) as i64;
            let volume = next(4) as i64; // 0 is the cold store
            match next(4) {
                0 | 1 => {
                    slot += 1;
                    let at = if volume == 0 { sector } else { slot };
                    c.execute(
                        "INSERT OR IGNORE INTO copies (sector_id, volume_id, slot, added_at) \
                         VALUES (?1, ?2, ?3, 0)",
                        [sector, volume, at],
                    )
                    .unwrap();
                }
                2 => {
                    c.execute(
                        "DELETE FROM copies WHERE sector_id = ?1 AND volume_id = ?2",
                        [sector, volume],
                    )
                    .unwrap();
                }
                _ => {
                    slot += 1;
                    c.execute(
                        "UPDATE OR IGNORE copies SET volume_id = ?3, slot = ?4 \
                         WHERE sector_id = ?1 AND volume_id = ?2",
                        [sector, volume, next(4) as i64, slot],
                    )
                    .unwrap();
                }
            }
            let (objects, cold_only, objects_counted, cold_only_counted) = counted(&c);
            assert_eq!(
                (objects, cold_only),
                (objects_counted, cold_only_counted),
                "after step {step}"
            );
            seen = (seen.0.max(objects), seen.1.max(cold_only));
        }
        assert!(
            seen.0 > 3 && seen.1 > 1,
            "the test made cold copies: {seen:?}"
        );
    }
}
