//! Every figure the store reports, computed once and defined once.
//!
//! [`Totals::of`] computes the store-wide figures and [`STORE`] defines each
//! one (its key in `/status.json`'s `totals`, its Prometheus metric, what it
//! means); [`VOLUME`] does the same per volume. `/status`, `/status.json`,
//! `/metrics` and `df` all read them from here, and README.md's table of
//! figures repeats the definitions (a mount test checks it names every
//! metric). A new figure: a field in [`Totals`] (or [`VolumeInfo`]), a row in
//! the table here, a row in the README.

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::engine::{
    AggregateView, Capacity, ColdStats, CopyCensus, Engine, VolumeInfo, VolumeState,
};
use crate::error::Result;
use crate::volume::SECTOR_BYTES;

/// The store-wide figures at one moment.
#[derive(Debug, Clone)]
pub struct Totals {
    pub sectors: u64,
    pub height: u64,
    /// The placement policy (a setting, shown with the figures).
    pub placement: String,
    pub capacity: Capacity,
    pub lost_sectors: u64,
    pub jobs_running: u64,
    /// Sectors by readable copies, against the copies setting.
    pub copies: CopyCensus,
    /// When the last metadata backup was written (unix seconds; 0: never).
    pub last_backup: i64,
    /// The root's aggregates: every reference.
    pub aggregates: AggregateView,
    /// Contracts with an entry whose sector has fewer than min ready copies.
    pub unhealthy_contracts: u64,
    /// The cold tier's figures, when there is one.
    pub cold: Option<ColdStats>,
}

impl Totals {
    /// Counted now. The census of copies raises or clears the alerts about
    /// copies, so it comes before the alerts are listed.
    pub fn of(engine: &Engine) -> Result<Totals> {
        let copies = engine.copy_census()?;
        let unhealthy_contracts = engine.contract_health_alert()?;
        Ok(Totals {
            aggregates: engine.root_aggregate(true)?,
            unhealthy_contracts,
            sectors: copies.sectors,
            copies,
            height: engine.height()?,
            placement: engine.options().placement.to_string(),
            capacity: engine.capacity(),
            lost_sectors: engine.lost_sectors(),
            jobs_running: engine.jobs_running() as u64,
            last_backup: engine.last_backup(),
            cold: engine.cold_stats()?,
        })
    }
}

/// `statfs`'s numbers. `df` shows Used = `blocks - free`: the slots that
/// sectors occupy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Df {
    /// `f_blocks`: [`Capacity::total_slots`].
    pub blocks: u64,
    /// `f_bfree`: free slots of every kind.
    pub free: u64,
    /// `f_bavail`: [`Capacity::free_writable`].
    pub available: u64,
    /// `f_files`: stored sectors plus free writable slots.
    pub files: u64,
    /// `f_ffree`: free writable slots.
    pub files_free: u64,
}

impl Df {
    /// From the capacity and the number of stored sectors.
    pub fn of(c: &Capacity, sectors: u64) -> Df {
        Df {
            blocks: c.total_slots,
            free: c.free_writable + c.free_readonly + c.free_unavailable,
            available: c.free_writable,
            // a sector is a file; a free writable slot is room for one more
            files: sectors + c.free_writable,
            files_free: c.free_writable,
        }
    }
}

/// Gauge or counter, as Prometheus types them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// One store-wide figure.
pub struct Figure {
    /// Its key in `/status.json`'s `totals`.
    pub key: &'static str,
    /// Its metric in `/metrics`, without the `sectorfs_` prefix.
    pub metric: &'static str,
    pub kind: Kind,
    /// What it means, in one sentence: the metric's HELP, the README's row.
    pub means: &'static str,
    pub value: fn(&Totals) -> u64,
}

/// The store-wide figures, in the order they are shown.
pub const STORE: &[Figure] = &[
    Figure {
        key: "sectors",
        metric: "sectors",
        kind: Kind::Gauge,
        means: "Stored sectors (distinct roots).",
        value: |t| t.sectors,
    },
    Figure {
        key: "height",
        metric: "height",
        kind: Kind::Gauge,
        means: "Current chain height, as last written to /height.",
        value: |t| t.height,
    },
    Figure {
        key: "total_slots",
        metric: "slots",
        kind: Kind::Gauge,
        means: "Slots in all volumes, whatever their state.",
        value: |t| t.capacity.total_slots,
    },
    Figure {
        key: "used_slots",
        metric: "slots_used",
        kind: Kind::Gauge,
        means: "Occupied slots in all volumes.",
        value: |t| t.capacity.used_slots,
    },
    Figure {
        key: "free_writable",
        metric: "slots_free_writable",
        kind: Kind::Gauge,
        means: "Free slots that new sectors can take (in a volume being shrunk, those below \
                its new size).",
        value: |t| t.capacity.free_writable,
    },
    Figure {
        key: "free_readonly",
        metric: "slots_free_readonly",
        kind: Kind::Gauge,
        means: "Free slots that take no new sectors: in read-only volumes, volumes being \
                removed, and the part a shrink cuts off.",
        value: |t| t.capacity.free_readonly,
    },
    Figure {
        key: "free_unavailable",
        metric: "slots_free_unavailable",
        kind: Kind::Gauge,
        means: "Free slots in volumes whose file cannot be used.",
        value: |t| t.capacity.free_unavailable,
    },
    Figure {
        key: "capacity_bytes",
        metric: "capacity_bytes",
        kind: Kind::Gauge,
        means: "Bytes of all volumes: total_slots x 4 MiB.",
        value: |t| t.capacity.total_slots * SECTOR_BYTES,
    },
    Figure {
        key: "lost_sectors",
        metric: "lost_sectors_total",
        kind: Kind::Counter,
        means: "Sectors dropped as unreadable by forced volume removals since the daemon \
                started.",
        value: |t| t.lost_sectors,
    },
    Figure {
        key: "copies_min",
        metric: "copies_min",
        kind: Kind::Gauge,
        means: "Copies of each sector the store keeps at least (/copies).",
        value: |t| t.copies.min as u64,
    },
    Figure {
        key: "copies_max",
        metric: "copies_max",
        kind: Kind::Gauge,
        means: "Copies of each sector the store keeps at most (/copies).",
        value: |t| t.copies.max as u64,
    },
    Figure {
        key: "under_replicated",
        metric: "sectors_under_replicated",
        kind: Kind::Gauge,
        means: "Sectors with at least one readable copy but fewer than copies_min.",
        value: |t| t.copies.under_replicated,
    },
    Figure {
        key: "without_copy",
        metric: "sectors_without_copy",
        kind: Kind::Gauge,
        means: "Sectors with no readable copy (their volumes unavailable or their copies \
                corrupt): their reads fail.",
        value: |t| t.copies.lost,
    },
    Figure {
        key: "sharing_a_device",
        metric: "sectors_sharing_device",
        kind: Kind::Gauge,
        means: "Sectors with two readable copies on one device (st_dev).",
        value: |t| t.copies.sharing_a_device,
    },
    Figure {
        key: "references",
        metric: "references",
        kind: Kind::Gauge,
        means: "References of every kind: pins, contract entries and temp entries.",
        value: |t| t.aggregates.agg.entries.max(0) as u64,
    },
    Figure {
        key: "unhealthy_references",
        metric: "references_unhealthy",
        kind: Kind::Gauge,
        means: "References whose sector has fewer than copies_min ready copies (health = 1 - \
                this / references).",
        value: |t| t.aggregates.agg.unhealthy.max(0) as u64,
    },
    Figure {
        key: "unavailable_references",
        metric: "references_unavailable",
        kind: Kind::Gauge,
        means: "References whose sector has a copy on a volume out of service.",
        value: |t| t.aggregates.agg.unavailable.max(0) as u64,
    },
    Figure {
        key: "corrupt_references",
        metric: "references_corrupt",
        kind: Kind::Gauge,
        means: "References whose sector has a copy found corrupt.",
        value: |t| t.aggregates.agg.corrupt.max(0) as u64,
    },
    Figure {
        key: "lost_references",
        metric: "references_lost",
        kind: Kind::Gauge,
        means: "References whose sector has no ready copy.",
        value: |t| t.aggregates.agg.lost.max(0) as u64,
    },
    Figure {
        key: "cold_references",
        metric: "references_cold",
        kind: Kind::Gauge,
        means: "References whose sector has a copy in the cold tier.",
        value: |t| t.aggregates.agg.cold.max(0) as u64,
    },
    Figure {
        key: "unhealthy_contracts",
        metric: "contracts_unhealthy",
        kind: Kind::Gauge,
        means: "Contracts whose health is below 1 (/status names the worst).",
        value: |t| t.unhealthy_contracts,
    },
    Figure {
        key: "aggregates_as_of",
        metric: "aggregates_as_of_seconds",
        kind: Kind::Gauge,
        means: "When (Unix seconds) the aggregates were last exact.",
        value: |t| t.aggregates.as_of.max(0) as u64,
    },
    Figure {
        key: "jobs_running",
        metric: "jobs_running",
        kind: Kind::Gauge,
        means: "Volumes with a job (resize, remove, check) running.",
        value: |t| t.jobs_running,
    },
    Figure {
        key: "last_backup",
        metric: "last_backup_timestamp_seconds",
        kind: Kind::Gauge,
        means: "When the last metadata backup was written beside the volumes (unix seconds; \
                0: never).",
        value: |t| t.last_backup.max(0) as u64,
    },
];

/// One figure of each volume.
pub struct VolumeFigure {
    /// Where it is in each of `/status.json`'s `volumes`.
    pub key: &'static str,
    /// Its metric in `/metrics` (labelled `volume="<id>"`), without the
    /// `sectorfs_` prefix.
    pub metric: &'static str,
    pub kind: Kind,
    pub means: &'static str,
    pub value: fn(&VolumeInfo) -> u64,
}

/// One figure of the cold tier (`/tiers/cold/stats`, `totals.cold` in
/// `/status.json`, `/metrics`), shown only when the mount has `--cold`.
pub struct ColdFigure {
    pub key: &'static str,
    pub metric: &'static str,
    pub kind: Kind,
    pub means: &'static str,
    pub value: fn(&ColdStats) -> u64,
}

macro_rules! cold {
    ($key:ident, $metric:literal, $kind:ident, $means:literal) => {
        ColdFigure {
            key: stringify!($key),
            metric: $metric,
            kind: Kind::$kind,
            means: $means,
            value: |c| c.$key as u64,
        }
    };
}

/// The cold tier's figures, in the order they are shown.
pub const COLD: &[ColdFigure] = &[
    cold!(
        objects,
        "cold_objects",
        Gauge,
        "Sectors with an object in the cold store."
    ),
    cold!(
        bytes,
        "cold_bytes",
        Gauge,
        "Bytes of the cold store's objects: objects x 4 MiB."
    ),
    cold!(
        cold_only,
        "cold_only_sectors",
        Gauge,
        "Sectors whose only copy is in the cold store."
    ),
    cold!(
        uploads,
        "cold_uploads_total",
        Counter,
        "Objects uploaded since the daemon started."
    ),
    cold!(
        uploaded_bytes,
        "cold_uploaded_bytes_total",
        Counter,
        "Bytes uploaded since the daemon started."
    ),
    cold!(
        downloads,
        "cold_downloads_total",
        Counter,
        "Ranges fetched from the cold store since the daemon started."
    ),
    cold!(
        downloaded_bytes,
        "cold_downloaded_bytes_total",
        Counter,
        "Bytes fetched from the cold store since the daemon started."
    ),
    cold!(
        read_ahead,
        "cold_read_ahead_total",
        Counter,
        "Downloads started ahead of a reader going through /sectors in listing order (--cold-read-ahead)."
    ),
    cold!(
        deletes,
        "cold_deletes_total",
        Counter,
        "Objects of freed sectors deleted since the daemon started."
    ),
    cold!(
        errors,
        "cold_errors_total",
        Counter,
        "Requests to the cold store that failed since the daemon started."
    ),
    cold!(
        promotions,
        "cold_promotions_total",
        Counter,
        "Cold sectors given a local copy again (read --promote-after times)."
    ),
    cold!(
        freed_local,
        "cold_freed_local_total",
        Counter,
        "Local copies freed once their object was confirmed."
    ),
    cold!(
        mover_pending,
        "cold_mover_pending",
        Gauge,
        "Sectors found due for the cold tier at the start of the mover's current pass (0 once it is done)."
    ),
    cold!(
        mover_passes,
        "cold_mover_passes_total",
        Counter,
        "Passes of the mover completed since the daemon started."
    ),
    cold!(
        orphans_deleted,
        "cold_orphans_deleted_total",
        Counter,
        "Objects no sector holds (left by a crash) deleted by the reconcile pass."
    ),
    cold!(
        reachable,
        "cold_reachable",
        Gauge,
        "1 if the cold store answered the last request."
    ),
];

/// The figures of each volume, in the order they are shown.
pub const VOLUME: &[VolumeFigure] = &[
    VolumeFigure {
        key: "slots",
        metric: "volume_slots",
        kind: Kind::Gauge,
        means: "Slots of the volume.",
        value: |v| v.slots,
    },
    VolumeFigure {
        key: "used",
        metric: "volume_used",
        kind: Kind::Gauge,
        means: "Occupied slots of the volume.",
        value: |v| v.used,
    },
    VolumeFigure {
        key: "state",
        metric: "volume_available",
        kind: Kind::Gauge,
        means: "1 if the volume's file is open and usable (state is not unavailable).",
        value: |v| !matches!(v.state, VolumeState::Unavailable | VolumeState::Detached) as u64,
    },
    VolumeFigure {
        key: "stats.reads",
        metric: "reads_total",
        kind: Kind::Counter,
        means: "Sector reads from the volume since the daemon started.",
        value: |v| v.stats.reads,
    },
    VolumeFigure {
        key: "stats.writes",
        metric: "writes_total",
        kind: Kind::Counter,
        means: "Sectors written to the volume since the daemon started.",
        value: |v| v.stats.writes,
    },
    VolumeFigure {
        key: "stats.bytes_read",
        metric: "read_bytes_total",
        kind: Kind::Counter,
        means: "Bytes read from the volume since the daemon started.",
        value: |v| v.stats.bytes_read,
    },
    VolumeFigure {
        key: "stats.writes",
        metric: "written_bytes_total",
        kind: Kind::Counter,
        means: "Bytes written to the volume since the daemon started: writes x 4 MiB.",
        value: |v| v.stats.writes * SECTOR_BYTES,
    },
    VolumeFigure {
        key: "stats.read_errors",
        metric: "read_errors_total",
        kind: Kind::Counter,
        means: "Reads of the volume that failed since the daemon started.",
        value: |v| v.stats.read_errors,
    },
    VolumeFigure {
        key: "stats.write_errors",
        metric: "write_errors_total",
        kind: Kind::Counter,
        means: "Writes to the volume that failed since the daemon started.",
        value: |v| v.stats.write_errors,
    },
    VolumeFigure {
        key: "stats.corrupt",
        metric: "corrupt_total",
        kind: Kind::Counter,
        means: "Sectors of the volume found not to match their root since the daemon \
                started.",
        value: |v| v.stats.corrupt,
    },
    VolumeFigure {
        key: "stats.healed",
        metric: "healed_total",
        kind: Kind::Counter,
        means: "Bad copies on the volume rewritten from a good copy since the daemon started.",
        value: |v| v.stats.healed,
    },
];

/// The one labelled store-wide figure: sectors by how many readable copies
/// they have (`by_copies` in `totals`, metric `sectors_by_copies` with a
/// `copies` label).
pub const BY_COPIES: (&str, &str, &str) = (
    "by_copies",
    "sectors_by_copies",
    "Sectors by number of readable copies (label copies).",
);

/// One aggregate figure (issue 18): the extended attribute
/// `user.sectorfs.<name>` of `/contracts/<id>`, `/contracts`,
/// `/temp/<height>`, `/temp`, `/volumes/<id>` and the root, and a column of
/// `sectorfs contracts`.
pub struct AggregateFigure {
    pub name: &'static str,
    pub means: &'static str,
    pub value: fn(&AggregateView) -> String,
}

/// The aggregate figures, in the order they are listed.
pub const AGGREGATE: &[AggregateFigure] = &[
    AggregateFigure {
        name: "entries",
        means: "Entries (contract or temp entries, pins, copies on a volume; the root: every \
                reference).",
        value: |v| v.agg.entries.to_string(),
    },
    AggregateFigure {
        name: "sectors",
        means: "Distinct sectors they name.",
        value: |v| v.agg.sectors.to_string(),
    },
    AggregateFigure {
        name: "bytes",
        means: "Bytes of those sectors: sectors x 4 MiB.",
        value: |v| (v.agg.sectors.max(0) as u64 * SECTOR_BYTES).to_string(),
    },
    AggregateFigure {
        name: "health",
        means: "Fraction of entries whose sector has at least copies_min ready copies (1 \
                when there is none).",
        value: |v| v.agg.health_text(),
    },
    AggregateFigure {
        name: "unavailable",
        means: "Entries whose sector has a copy on a volume out of service.",
        value: |v| v.agg.unavailable.to_string(),
    },
    AggregateFigure {
        name: "corrupt",
        means: "Entries whose sector has a copy found corrupt.",
        value: |v| v.agg.corrupt.to_string(),
    },
    AggregateFigure {
        name: "lost",
        means: "Entries whose sector has no ready copy: it cannot be read now.",
        value: |v| v.agg.lost.to_string(),
    },
    AggregateFigure {
        name: "cold",
        means: "Entries whose sector has a copy in the cold tier.",
        value: |v| v.agg.cold.to_string(),
    },
    AggregateFigure {
        name: "oldest_check",
        means: "Oldest time (Unix seconds) a copy of a sector in it was last verified \
                (stored counts as verified); none when it holds no sector.",
        value: |v| v.oldest_check.map_or("none".into(), |t| t.to_string()),
    },
    AggregateFigure {
        name: "as_of",
        means: "When (Unix seconds) the figures were last exact: now, unless a background \
                pass after a volume changed state is under way.",
        value: |v| v.as_of.to_string(),
    },
];

/// `totals` in `/status.json`: every figure of [`STORE`] under its key,
/// sectors by copies, and the placement policy.
impl Serialize for Totals {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(STORE.len() + 3))?;
        for f in STORE {
            map.serialize_entry(f.key, &(f.value)(self))?;
        }
        map.serialize_entry(BY_COPIES.0, &self.copies.by_copies)?;
        map.serialize_entry("placement", &self.placement)?;
        let health: f64 = self.aggregates.agg.health_text().parse().unwrap_or(1.0);
        map.serialize_entry("health", &health)?;
        if let Some(cold) = &self.cold {
            let figures: serde_json::Map<String, serde_json::Value> = COLD
                .iter()
                .map(|f| (f.key.to_string(), (f.value)(cold).into()))
                .collect();
            map.serialize_entry("cold", &figures)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_figure_is_defined_once() {
        let mut keys: Vec<_> = STORE.iter().map(|f| f.key).collect();
        let mut metrics: Vec<_> = STORE.iter().map(|f| f.metric).collect();
        metrics.extend(VOLUME.iter().map(|f| f.metric));
        let (k, m) = (keys.len(), metrics.len());
        keys.sort();
        keys.dedup();
        metrics.sort();
        metrics.dedup();
        assert_eq!((keys.len(), metrics.len()), (k, m), "a key or metric twice");
        for f in STORE.iter().filter(|f| f.kind == Kind::Counter) {
            assert!(f.metric.ends_with("_total"), "{}", f.metric);
        }
        for f in VOLUME.iter().filter(|f| f.kind == Kind::Counter) {
            assert!(f.metric.ends_with("_total"), "{}", f.metric);
        }
    }
}
