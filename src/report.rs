//! The generated status files: `/status` for people, `/status.json` for
//! programs, `/metrics` for Prometheus. Built fresh from the engine on
//! every open, so a read always shows the current state.

use std::fmt::Write;

use serde::Serialize;

use crate::engine::{Alert, Capacity, CopyCensus, Engine, Severity, VolumeInfo};
use crate::error::Result;

#[derive(Debug, Serialize)]
pub struct Status {
    pub health: &'static str,
    pub totals: Totals,
    pub volumes: Vec<VolumeInfo>,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Serialize)]
pub struct Totals {
    pub sectors: u64,
    pub height: u64,
    pub placement: String,
    #[serde(flatten)]
    pub capacity: Capacity,
    /// Sectors by readable copies, against the copies setting.
    pub copies: CopyCensus,
}

pub fn status(engine: &Engine) -> Result<Status> {
    // first: it raises or clears the alerts about copies
    let copies = engine.copy_census()?;
    let alerts = engine.alerts().list();
    let worst = alerts.iter().map(|a| a.severity).max();
    let health = match worst {
        Some(Severity::Error | Severity::Critical) => "error",
        Some(Severity::Warning) => "warning",
        _ => "ok",
    };
    Ok(Status {
        health,
        totals: Totals {
            sectors: copies.sectors,
            height: engine.height()?,
            placement: engine.options().placement.to_string(),
            capacity: engine.capacity(),
            copies,
        },
        volumes: engine.volume_infos(),
        alerts,
    })
}

pub fn status_text(engine: &Engine) -> Result<String> {
    let s = status(engine)?;
    let c = &s.totals.capacity;
    let pct = if c.total_slots == 0 {
        0.0
    } else {
        c.used_slots as f64 * 100.0 / c.total_slots as f64
    };
    let mut out = format!(
        "{}: {} volumes, {}/{} slots used ({pct:.0}%), {} free for new sectors, {} sectors, \
         height {}\n",
        s.health,
        s.volumes.len(),
        c.used_slots,
        c.total_slots,
        c.free_writable,
        s.totals.sectors,
        s.totals.height
    );
    let k = &s.totals.copies;
    if (k.min, k.max) != (1, 1) || k.sectors != k.by_copies.get(&1).copied().unwrap_or(0) {
        let by: Vec<String> = k
            .by_copies
            .iter()
            .map(|(copies, n)| {
                format!(
                    "{} with {copies}",
                    crate::text::plural(*n, "sector", "sectors")
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "copies: min {} max {}; {}; {} under-replicated, {} lost, {} sharing a device",
            k.min,
            k.max,
            if by.is_empty() {
                "no sectors".to_string()
            } else {
                by.join(", ")
            },
            k.under_replicated,
            k.lost,
            k.sharing_a_device
        );
    }
    for a in &s.alerts {
        let _ = write!(out, "{} {} {}", a.severity, a.id, a.message);
        if let Some(p) = &a.progress {
            // the message already counts what is done (`1840/4096 sectors
            // moved`)
            let _ = write!(out, ", {:.0}%", p.percent);
            if let Some(eta) = p.eta_secs {
                let _ = write!(out, ", ~{} left", human_duration(eta));
            }
        }
        out.push('\n');
    }
    Ok(out)
}

pub fn status_json(engine: &Engine) -> Result<String> {
    let s = status(engine)?;
    let mut text = serde_json::to_string_pretty(&s).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    Ok(text)
}

pub fn metrics(engine: &Engine) -> Result<String> {
    let s = status(engine)?;
    let c = &s.totals.capacity;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP sectorfs_{name} {help}");
        let _ = writeln!(out, "# TYPE sectorfs_{name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "sectorfs_{name}{labels} {v}");
        }
    };
    let one = |v: u64| vec![(String::new(), v)];
    gauge(
        "slots",
        "Slots in all volumes.",
        "gauge",
        &one(c.total_slots),
    );
    gauge("slots_used", "Occupied slots.", "gauge", &one(c.used_slots));
    gauge(
        "slots_free_writable",
        "Free slots in volumes that take new sectors.",
        "gauge",
        &one(c.free_writable),
    );
    gauge(
        "capacity_bytes",
        "Bytes of all volumes.",
        "gauge",
        &one(c.total_slots * crate::volume::SECTOR_BYTES),
    );
    gauge(
        "sectors",
        "Stored sectors.",
        "gauge",
        &one(s.totals.sectors),
    );
    gauge(
        "height",
        "Current chain height.",
        "gauge",
        &one(s.totals.height),
    );
    let k = &s.totals.copies;
    gauge(
        "copies_min",
        "Copies of each sector the store keeps at least.",
        "gauge",
        &one(k.min as u64),
    );
    gauge(
        "copies_max",
        "Copies of each sector the store keeps at most.",
        "gauge",
        &one(k.max as u64),
    );
    let by_copies: Vec<(String, u64)> = k
        .by_copies
        .iter()
        .map(|(copies, n)| (format!("{{copies=\"{copies}\"}}"), *n))
        .collect();
    gauge(
        "sectors_by_copies",
        "Sectors by number of readable copies.",
        "gauge",
        &by_copies,
    );
    gauge(
        "sectors_under_replicated",
        "Sectors with at least one but fewer than min readable copies.",
        "gauge",
        &one(k.under_replicated),
    );
    gauge(
        "sectors_without_copy",
        "Sectors with no readable copy.",
        "gauge",
        &one(k.lost),
    );
    gauge(
        "sectors_sharing_device",
        "Sectors with two readable copies on one device.",
        "gauge",
        &one(k.sharing_a_device),
    );
    let per_volume = |f: &dyn Fn(&VolumeInfo) -> u64| -> Vec<(String, u64)> {
        s.volumes
            .iter()
            .map(|v| (format!("{{volume=\"{}\"}}", v.id), f(v)))
            .collect()
    };
    gauge(
        "volume_slots",
        "Slots per volume.",
        "gauge",
        &per_volume(&|v| v.slots),
    );
    gauge(
        "volume_used",
        "Occupied slots per volume.",
        "gauge",
        &per_volume(&|v| v.used),
    );
    gauge(
        "volume_available",
        "1 if the volume's file is open and usable.",
        "gauge",
        &per_volume(&|v| (v.state != crate::engine::VolumeState::Unavailable) as u64),
    );
    gauge(
        "reads_total",
        "Sector reads per volume.",
        "counter",
        &per_volume(&|v| v.stats.reads),
    );
    gauge(
        "writes_total",
        "Sectors written per volume.",
        "counter",
        &per_volume(&|v| v.stats.writes),
    );
    gauge(
        "read_bytes_total",
        "Bytes read per volume.",
        "counter",
        &per_volume(&|v| v.stats.bytes_read),
    );
    gauge(
        "written_bytes_total",
        "Bytes written per volume.",
        "counter",
        &per_volume(&|v| v.stats.writes * crate::volume::SECTOR_BYTES),
    );
    gauge(
        "read_errors_total",
        "Read errors per volume.",
        "counter",
        &per_volume(&|v| v.stats.read_errors),
    );
    gauge(
        "write_errors_total",
        "Write errors per volume.",
        "counter",
        &per_volume(&|v| v.stats.write_errors),
    );
    gauge(
        "corrupt_total",
        "Sectors found corrupt per volume.",
        "counter",
        &per_volume(&|v| v.stats.corrupt),
    );
    gauge(
        "healed_total",
        "Bad copies rewritten from a good copy, per volume.",
        "counter",
        &per_volume(&|v| v.stats.healed),
    );
    let by_severity: Vec<(String, u64)> = [
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ]
    .iter()
    .map(|sev| {
        let n = s.alerts.iter().filter(|a| a.severity == *sev).count() as u64;
        (format!("{{severity=\"{sev}\"}}"), n)
    })
    .collect();
    gauge(
        "alerts",
        "Active alerts by severity.",
        "gauge",
        &by_severity,
    );
    gauge(
        "lost_sectors_total",
        "Sectors dropped as unreadable by forced volume removals.",
        "counter",
        &one(engine.lost_sectors()),
    );
    gauge(
        "jobs_running",
        "Volume jobs running.",
        "gauge",
        &one(engine.jobs_running() as u64),
    );
    let jobs: Vec<(String, u64)> = s
        .alerts
        .iter()
        .filter_map(|a| a.progress.as_ref().map(|p| (a, p)))
        .flat_map(|(a, p)| {
            [
                (format!("{{alert=\"{}\",kind=\"done\"}}", a.id), p.done),
                (format!("{{alert=\"{}\",kind=\"total\"}}", a.id), p.total),
            ]
        })
        .collect();
    gauge(
        "job_progress",
        "Items done and total of running jobs.",
        "gauge",
        &jobs,
    );
    Ok(out)
}

/// `95s` → `~2m`; coarse on purpose, it is an estimate.
pub fn human_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s < 60 {
        return format!("{s}s");
    }
    // rounded to the minute first, so 59m30s reads as 1h00m
    let m = (s + 30) / 60;
    if m < 60 {
        format!("{m}m")
    } else {
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(0.4), "0s");
        assert_eq!(human_duration(59.0), "59s");
        assert_eq!(human_duration(90.0), "2m");
        assert_eq!(human_duration(3569.0), "59m");
        assert_eq!(human_duration(3570.0), "1h00m");
        assert_eq!(human_duration(3600.0), "1h00m");
        assert_eq!(human_duration(5400.0), "1h30m");
    }
}
