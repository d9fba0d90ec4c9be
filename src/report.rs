//! The generated status files: `/status` for people, `/status.json` for
//! programs, `/metrics` for Prometheus. Built fresh from the engine on
//! every open, so a read always shows the current state.

use std::fmt::Write;

use serde::Serialize;

use crate::engine::{Alert, Engine, Severity, VolumeInfo};
use crate::error::Result;
use crate::figures::{self, Totals};
use crate::plural::count;

#[derive(Debug, Serialize)]
pub struct Status {
    pub health: &'static str,
    pub totals: Totals,
    pub volumes: Vec<VolumeInfo>,
    pub alerts: Vec<Alert>,
}

pub fn status(engine: &Engine) -> Result<Status> {
    // first: counting the copies raises or clears their alerts
    let totals = Totals::of(engine)?;
    let alerts = engine.alerts().list();
    let worst = alerts.iter().map(|a| a.severity).max();
    let health = match worst {
        Some(Severity::Error | Severity::Critical) => "error",
        Some(Severity::Warning) => "warning",
        _ => "ok",
    };
    Ok(Status {
        health,
        totals,
        volumes: engine.volume_infos(),
        alerts,
    })
}

pub fn status_text(engine: &Engine) -> Result<String> {
    let s = status(engine)?;
    let t = &s.totals;
    let c = &t.capacity;
    let pct = if c.total_slots == 0 {
        0.0
    } else {
        c.used_slots as f64 * 100.0 / c.total_slots as f64
    };
    let mut out = format!(
        "{}: {}, {}/{} used ({pct:.0}%), {} free for new sectors, {}, height {}",
        s.health,
        count(s.volumes.len() as u64, "volume"),
        c.used_slots,
        count(c.total_slots, "slot"),
        c.free_writable,
        count(t.sectors, "sector"),
        t.height
    );
    // once there is one: when the metadata was last backed up
    if t.last_backup > 0 {
        let ago = (crate::engine::now_secs() - t.last_backup).max(0) as f64;
        let _ = write!(out, ", metadata backed up {} ago", human_duration(ago));
    }
    out.push('\n');
    let k = &t.copies;
    // only when copies are kept, or some sector has not exactly one
    if (k.min, k.max) != (1, 1) || k.by_copies.keys().any(|n| *n != 1) {
        let by: Vec<String> = k
            .by_copies
            .iter()
            .map(|(copies, n)| format!("{} with {copies}", count(*n, "sector")))
            .collect();
        let _ = writeln!(
            out,
            "copies: min {} max {}; {}; {} under-replicated, {} without a readable copy, {} \
             sharing a device",
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
    if let Some(c) = &t.cold {
        let _ = writeln!(
            out,
            "cold: {} ({} MiB, {} cold only), {} up, {} down, {} deleted, {}, {} due for the \
             mover{}",
            count(c.objects, "object"),
            c.bytes >> 20,
            c.cold_only,
            c.uploads,
            c.downloads,
            c.deletes,
            count(c.errors, "error"),
            c.mover_pending,
            if c.reachable {
                ""
            } else {
                "; the store does not answer"
            }
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

/// `/metrics`: every figure of [`figures::STORE`] and [`figures::VOLUME`],
/// then the alerts and job progress.
pub fn metrics(engine: &Engine) -> Result<String> {
    let s = status(engine)?;
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP sectorfs_{name} {help}");
        let _ = writeln!(out, "# TYPE sectorfs_{name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "sectorfs_{name}{labels} {v}");
        }
    };
    for f in figures::STORE {
        let sample = [(String::new(), (f.value)(&s.totals))];
        gauge(f.metric, f.means, f.kind.as_str(), &sample);
    }
    for f in figures::VOLUME {
        let samples: Vec<(String, u64)> = s
            .volumes
            .iter()
            .map(|v| (format!("{{volume=\"{}\"}}", v.id), (f.value)(v)))
            .collect();
        gauge(f.metric, f.means, f.kind.as_str(), &samples);
    }
    let by_copies: Vec<(String, u64)> = s
        .totals
        .copies
        .by_copies
        .iter()
        .map(|(copies, n)| (format!("{{copies=\"{copies}\"}}"), *n))
        .collect();
    let (_, metric, means) = figures::BY_COPIES;
    gauge(metric, means, "gauge", &by_copies);
    if let Some(cold) = &s.totals.cold {
        for f in figures::COLD {
            gauge(
                f.metric,
                f.means,
                f.kind.as_str(),
                &[(String::new(), (f.value)(cold))],
            );
        }
    }
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

/// `/tiers/cold/stats`: `key value` lines, every figure of
/// [`figures::COLD`] (`enabled 0` alone without a cold tier).
pub fn cold_stats(engine: &Engine) -> Result<String> {
    let Some(cold) = engine.cold_stats()? else {
        return Ok("enabled 0\n".into());
    };
    let mut out = String::from("enabled 1\n");
    for f in figures::COLD {
        let _ = writeln!(out, "{} {}", f.key, (f.value)(&cold));
    }
    Ok(out)
}

/// `/tiers/cache/stats`: `key value` lines (`enabled 0` alone without a
/// cache tier).
pub fn cache_stats(engine: &Engine) -> String {
    let Some(c) = engine.cache_stats() else {
        return "enabled 0\n".into();
    };
    format!(
        "enabled 1\nslots {}\nentries {}\nhits {}\nmisses {}\ninserts {}\nevictions {}\n\
         corrupt {}\n",
        c.slots, c.entries, c.hits, c.misses, c.inserts, c.evictions, c.corrupt
    )
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
