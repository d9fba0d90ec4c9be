//! hostd-shaped databases for the import's tests and benchmark, made from
//! the table facts in `reference.md` ("hostd's database"): hostd's table and
//! column names in our own schema statements, with a few of the other
//! NOT NULL columns hostd has, in each shape a running host may be on.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};
use sectorfs::merkle::Root;

/// The schema shapes that matter to an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Before schema 44: v2 resolution is `resolution_index`, v2 roots per
    /// contract.
    V43,
    /// Schema 44..48: `resolution_height`, v2 roots per contract.
    V48,
    /// Schema 49 on: v2 roots in copy-on-write roots maps.
    V49,
}

impl Shape {
    pub fn version(self) -> i64 {
        match self {
            Shape::V43 => 43,
            Shape::V48 => 48,
            Shape::V49 => 51,
        }
    }
}

/// A v2 contract's place in a roots map (schema 49 on).
#[derive(Debug, Clone, Copy)]
pub struct MapRef {
    pub map: i64,
    pub revision: i64,
    pub sector_count: i64,
}

pub struct Hostd {
    pub conn: Connection,
    pub path: PathBuf,
    pub shape: Shape,
}

impl Hostd {
    /// A new hostd database at `path` in WAL mode, as hostd opens it.
    pub fn create(path: &Path, shape: Shape) -> Hostd {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = OFF;",
        )
        .unwrap();
        let v2_resolution = match shape {
            Shape::V43 => "resolution_index BLOB,",
            _ => "resolution_height INTEGER,",
        };
        let v2_maps = match shape {
            Shape::V49 => {
                "sector_count INTEGER NOT NULL DEFAULT 0, \
                 contract_v2_roots_map_id INTEGER, \
                 contract_v2_roots_map_revision_number INTEGER,"
            }
            _ => "",
        };
        let v2_roots = match shape {
            Shape::V49 => {
                "CREATE TABLE contract_v2_roots_map (
                    id INTEGER NOT NULL,
                    revision_number INTEGER NOT NULL,
                    PRIMARY KEY (id, revision_number)
                );
                CREATE TABLE contract_v2_sector_roots (
                    id INTEGER PRIMARY KEY,
                    contract_v2_roots_map_id INTEGER NOT NULL,
                    contract_v2_roots_map_revision_number INTEGER NOT NULL,
                    sector_id INTEGER NOT NULL REFERENCES stored_sectors(id),
                    root_index INTEGER NOT NULL,
                    FOREIGN KEY (contract_v2_roots_map_id, contract_v2_roots_map_revision_number)
                        REFERENCES contract_v2_roots_map(id, revision_number),
                    UNIQUE (contract_v2_roots_map_id, contract_v2_roots_map_revision_number,
                            root_index)
                );
                CREATE INDEX contract_v2_sector_roots_sector_id
                    ON contract_v2_sector_roots(sector_id);"
            }
            _ => {
                "CREATE TABLE contract_v2_sector_roots (
                    id INTEGER PRIMARY KEY,
                    contract_id INTEGER NOT NULL REFERENCES contracts_v2(id),
                    sector_id INTEGER NOT NULL REFERENCES stored_sectors(id),
                    root_index INTEGER NOT NULL,
                    UNIQUE (contract_id, root_index)
                );
                CREATE INDEX contract_v2_sector_roots_sector_id
                    ON contract_v2_sector_roots(sector_id);"
            }
        };
        conn.execute_batch(&format!(
            "CREATE TABLE global_settings (
                id INTEGER PRIMARY KEY NOT NULL DEFAULT 0 CHECK (id = 0),
                db_version INTEGER NOT NULL,
                host_key BLOB
            );
            INSERT INTO global_settings (id, db_version) VALUES (0, {version});
            CREATE TABLE stored_sectors (
                id INTEGER PRIMARY KEY,
                sector_root BLOB UNIQUE NOT NULL,
                last_access_timestamp INTEGER NOT NULL
            );
            CREATE TABLE storage_volumes (
                id INTEGER PRIMARY KEY,
                disk_path TEXT UNIQUE NOT NULL,
                used_sectors INTEGER NOT NULL,
                total_sectors INTEGER NOT NULL,
                read_only BOOLEAN NOT NULL,
                available BOOLEAN NOT NULL DEFAULT false
            );
            CREATE TABLE volume_sectors (
                id INTEGER PRIMARY KEY,
                volume_id INTEGER NOT NULL REFERENCES storage_volumes(id),
                volume_index INTEGER NOT NULL,
                sector_id INTEGER UNIQUE REFERENCES stored_sectors(id),
                sector_writes INTEGER NOT NULL DEFAULT 0,
                UNIQUE (volume_id, volume_index)
            );
            CREATE TABLE contract_renters (id INTEGER PRIMARY KEY, public_key BLOB UNIQUE NOT NULL);
            INSERT INTO contract_renters (id, public_key) VALUES (1, x'01');
            CREATE TABLE contracts (
                id INTEGER PRIMARY KEY,
                renter_id INTEGER NOT NULL REFERENCES contract_renters(id) DEFAULT 1,
                contract_id BLOB UNIQUE NOT NULL,
                raw_revision BLOB NOT NULL DEFAULT x'00',
                resolution_height INTEGER,
                window_start INTEGER NOT NULL,
                window_end INTEGER NOT NULL,
                contract_status INTEGER NOT NULL
            );
            CREATE TABLE contract_sector_roots (
                id INTEGER PRIMARY KEY,
                contract_id INTEGER NOT NULL REFERENCES contracts(id),
                sector_id INTEGER NOT NULL REFERENCES stored_sectors(id),
                root_index INTEGER NOT NULL,
                UNIQUE (contract_id, root_index)
            );
            CREATE INDEX contract_sector_roots_sector_id ON contract_sector_roots(sector_id);
            CREATE TABLE contracts_v2 (
                id INTEGER PRIMARY KEY,
                renter_id INTEGER NOT NULL REFERENCES contract_renters(id) DEFAULT 1,
                renewed_to INTEGER REFERENCES contracts_v2(id),
                renewed_from INTEGER REFERENCES contracts_v2(id),
                contract_id BLOB UNIQUE NOT NULL,
                raw_revision BLOB NOT NULL DEFAULT x'00',
                {v2_resolution}
                {v2_maps}
                proof_height INTEGER NOT NULL DEFAULT 0,
                expiration_height INTEGER NOT NULL DEFAULT 0,
                contract_status TEXT NOT NULL
            );
            {v2_roots}
            CREATE TABLE temp_storage_sector_roots (
                id INTEGER PRIMARY KEY,
                sector_id INTEGER NOT NULL REFERENCES stored_sectors(id),
                expiration_height INTEGER NOT NULL
            );",
            version = shape.version()
        ))
        .unwrap();
        Hostd {
            conn,
            path: path.to_path_buf(),
            shape,
        }
    }

    /// A volume of `slots` slots, each with its row (hostd has one per
    /// slot, `sector_id` NULL when free).
    pub fn volume(&self, id: i64, path: &Path, slots: i64, readonly: bool) {
        self.volume_row(id, path, slots, readonly);
        for i in 0..slots {
            self.slot(id, i, None);
        }
    }

    /// A volume's row alone: its slots' rows are added with [`slot`].
    pub fn volume_row(&self, id: i64, path: &Path, slots: i64, readonly: bool) {
        self.conn
            .execute(
                "INSERT INTO storage_volumes (id, disk_path, used_sectors, total_sectors, \
                 read_only, available) VALUES (?1, ?2, 0, ?3, ?4, true)",
                params![id, path.to_str().unwrap(), slots, readonly],
            )
            .unwrap();
    }

    /// Slot `index` of `volume`, holding sector `sector` if given.
    pub fn slot(&self, volume: i64, index: i64, sector: Option<i64>) {
        self.conn
            .prepare_cached(
                "INSERT INTO volume_sectors (volume_id, volume_index, sector_id) \
                 VALUES (?1, ?2, ?3)",
            )
            .unwrap()
            .execute(params![volume, index, sector])
            .unwrap();
    }

    /// A stored sector, in (`volume`, `slot`) when given.
    pub fn sector(&self, id: i64, root: &Root, at: Option<(i64, i64)>) {
        self.conn
            .prepare_cached(
                "INSERT INTO stored_sectors (id, sector_root, last_access_timestamp) \
                 VALUES (?1, ?2, 0)",
            )
            .unwrap()
            .execute(params![id, &root.0[..]])
            .unwrap();
        if let Some((volume, slot)) = at {
            let n = self
                .conn
                .prepare_cached(
                    "UPDATE volume_sectors SET sector_id = ?1 \
                     WHERE volume_id = ?2 AND volume_index = ?3",
                )
                .unwrap()
                .execute(params![id, volume, slot])
                .unwrap();
            assert_eq!(n, 1, "volume {volume} has a slot {slot}");
        }
    }

    pub fn v1_contract(&self, id: i64, contract_id: &[u8; 32], resolved: bool) {
        self.conn
            .execute(
                "INSERT INTO contracts (id, contract_id, resolution_height, window_start, \
                 window_end, contract_status) VALUES (?1, ?2, ?3, 100, 200, ?4)",
                params![
                    id,
                    &contract_id[..],
                    resolved.then_some(150),
                    if resolved { 3 } else { 1 }
                ],
            )
            .unwrap();
    }

    pub fn v1_root(&self, contract: i64, index: i64, sector: i64) {
        self.conn
            .prepare_cached(
                "INSERT INTO contract_sector_roots (contract_id, sector_id, root_index) \
                 VALUES (?1, ?2, ?3)",
            )
            .unwrap()
            .execute(params![contract, sector, index])
            .unwrap();
    }

    /// A v2 contract in `status`; `resolved` sets its resolution column.
    pub fn v2_contract(
        &self,
        id: i64,
        contract_id: &[u8; 32],
        status: &str,
        resolved: bool,
        map: Option<MapRef>,
    ) {
        let resolution: Option<rusqlite::types::Value> = resolved.then(|| match self.shape {
            Shape::V43 => rusqlite::types::Value::Blob(vec![9; 40]),
            _ => rusqlite::types::Value::Integer(150),
        });
        let column = match self.shape {
            Shape::V43 => "resolution_index",
            _ => "resolution_height",
        };
        match (self.shape, map) {
            (Shape::V49, Some(m)) => {
                self.conn
                    .execute(
                        "INSERT OR IGNORE INTO contract_v2_roots_map (id, revision_number) \
                         VALUES (?1, ?2)",
                        params![m.map, m.revision],
                    )
                    .unwrap();
                self.conn
                    .execute(
                        &format!(
                            "INSERT INTO contracts_v2 (id, contract_id, {column}, sector_count, \
                             contract_v2_roots_map_id, contract_v2_roots_map_revision_number, \
                             contract_status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                        ),
                        params![
                            id,
                            &contract_id[..],
                            resolution,
                            m.sector_count,
                            m.map,
                            m.revision,
                            status
                        ],
                    )
                    .unwrap();
            }
            (Shape::V49, None) => panic!("a v2 contract of schema 49 on needs a roots map"),
            _ => {
                self.conn
                    .execute(
                        &format!(
                            "INSERT INTO contracts_v2 (id, contract_id, {column}, contract_status) \
                             VALUES (?1, ?2, ?3, ?4)"
                        ),
                        params![id, &contract_id[..], resolution, status],
                    )
                    .unwrap();
            }
        }
    }

    /// A v2 root before schema 49: `owner` is the contract.
    pub fn v2_root(&self, contract: i64, index: i64, sector: i64) {
        assert_ne!(self.shape, Shape::V49);
        self.conn
            .prepare_cached(
                "INSERT INTO contract_v2_sector_roots (contract_id, sector_id, root_index) \
                 VALUES (?1, ?2, ?3)",
            )
            .unwrap()
            .execute(params![contract, sector, index])
            .unwrap();
    }

    /// A v2 root from schema 49 on: written at `revision` of roots map `map`.
    pub fn map_root(&self, map: i64, revision: i64, index: i64, sector: i64) {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO contract_v2_roots_map (id, revision_number) VALUES (?1, ?2)",
            )
            .unwrap()
            .execute(params![map, revision])
            .unwrap();
        self.conn
            .prepare_cached(
                "INSERT INTO contract_v2_sector_roots (contract_v2_roots_map_id, \
                 contract_v2_roots_map_revision_number, sector_id, root_index) \
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .unwrap()
            .execute(params![map, revision, sector, index])
            .unwrap();
    }

    pub fn temp_root(&self, sector: i64, height: i64) {
        self.conn
            .execute(
                "INSERT INTO temp_storage_sector_roots (sector_id, expiration_height) \
                 VALUES (?1, ?2)",
                params![sector, height],
            )
            .unwrap();
    }

    /// What a crash of hostd leaves: its database file and the `-wal`
    /// holding what was committed since the last checkpoint, copied into
    /// `dir` while this connection is still open. Returns the copy's path.
    pub fn crash_copy(&self, dir: &Path) -> PathBuf {
        let to = dir.join(self.path.file_name().unwrap());
        std::fs::copy(&self.path, &to).unwrap();
        let wal = format!("{}-wal", self.path.display());
        std::fs::copy(&wal, format!("{}-wal", to.display())).unwrap();
        to
    }
}

/// A contract id for tests: `n` in its first bytes.
pub fn contract_id(n: u64) -> [u8; 32] {
    let mut id = [0xc0u8; 32];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id
}

/// Lowercase hex of a contract id, its name in `/contracts`.
pub fn contract_name(id: &[u8; 32]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// A synthetic hostd database of schema 49 on at `path`: one volume file
/// (sparse, no data) at `volume` holding `sectors` sectors in consecutive
/// slots, `contracts` unresolved v2 contracts of `roots_per_contract` roots
/// each (sectors picked in turn, so every sector is held), each with its
/// own roots map. Roots are noise from `seed`: for timing the metadata
/// work, not for reading back.
pub fn synthetic(
    path: &Path,
    volume: &Path,
    sectors: u64,
    contracts: u64,
    roots_per_contract: u64,
    seed: u64,
) -> Hostd {
    let h = Hostd::create(path, Shape::V49);
    h.conn.execute_batch("BEGIN").unwrap();
    let f = std::fs::File::create(volume).unwrap();
    f.set_len(sectors * sectorfs::merkle::SECTOR_SIZE as u64)
        .unwrap();
    h.volume_row(1, volume, sectors as i64, false);
    let mut rng = super::rng::Rng::new(seed);
    for (i, root) in rng.roots(sectors).iter().enumerate() {
        let id = i as i64 + 1;
        h.sector(id, root, None);
        h.slot(1, i as i64, Some(id));
    }
    let mut next = 0u64;
    for c in 0..contracts {
        let map = MapRef {
            map: c as i64 + 1,
            revision: 0,
            sector_count: roots_per_contract as i64,
        };
        h.v2_contract(c as i64 + 1, &contract_id(c), "active", false, Some(map));
        for i in 0..roots_per_contract {
            h.map_root(map.map, 0, i as i64, (next % sectors) as i64 + 1);
            next += 1;
        }
    }
    h.conn.execute_batch("COMMIT").unwrap();
    h
}
