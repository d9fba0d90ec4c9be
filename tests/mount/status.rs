//! `/status`, `/status.json`, `/metrics`: current state, alerts for refused
//! control writes, and dismissing them.

use super::harness::{Mount, errno, sector};

fn alerts(m: &Mount) -> Vec<serde_json::Value> {
    m.status_json()["alerts"].as_array().unwrap().clone()
}

#[test]
fn status_shows_the_current_state() {
    let m = Mount::start(&[]);
    let text = m.read("status");
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("ok"), "{text}");
    assert_eq!(text.lines().count(), 1, "no alerts yet:\n{text}");
    let s = m.status_json();
    let volumes = s["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 1);
    assert_eq!(volumes[0]["id"], 1);
    assert_eq!(volumes[0]["slots"], 256);
    assert_eq!(volumes[0]["used"], 0);
    assert!(s["alerts"].as_array().unwrap().is_empty());
    assert!(s["totals"].is_object(), "{s}");
    assert_eq!(s["totals"]["sectors"], 0);
    // never served stale: each read shows the state of that moment
    m.put(&sector(400));
    m.put(&sector(401));
    let s = m.status_json();
    assert_eq!(s["totals"]["sectors"], 2, "{s}");
    assert_eq!(s["volumes"][0]["used"], 2);
    assert!(m.read("status").contains("2/256"), "{}", m.read("status"));
    // the same file open twice, read between changes
    m.sh_ok("echo 3 > height");
    assert_eq!(m.status_json()["totals"]["height"], 3);
    // the status files are read-only except /status
    assert!(m.write("status.json", "x").is_err());
    assert!(m.write("metrics", "x").is_err());
    // cat, as a person would
    let out = m.sh_ok("cat status");
    assert!(out.starts_with("ok"), "{out}");
}

#[test]
fn refused_control_writes_raise_alerts_that_can_be_dismissed() {
    let m = Mount::start(&[]);
    let e = m.write("height", "garbage\n").unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    // visible in both files, with the reason in words
    let text = m.read("status");
    assert!(text.starts_with("warning"), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[1].contains("/height") && lines[1].contains("garbage"),
        "{text}"
    );
    let list = alerts(&m);
    assert_eq!(list.len(), 1);
    let first = &list[0];
    let id = first["id"].as_u64().unwrap();
    assert_eq!(first["severity"], "warning");
    assert!(
        first["message"].as_str().unwrap().contains("/height"),
        "{first}"
    );
    assert!(first.get("data").is_some(), "{first}");
    assert!(lines[1].contains(&id.to_string()), "{text}");
    // another refusal: a second alert
    let e = m.write("volumes/add", "nonsense\n").unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    let e = m.write("volumes/1/readonly", "maybe\n").unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    assert_eq!(alerts(&m).len(), 3);
    assert_eq!(m.read("status").lines().count(), 4);
    // dismiss one by id
    m.write("status", &format!("dismiss {id}\n")).unwrap();
    let list = alerts(&m);
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|a| a["id"].as_u64() != Some(id)));
    // a bad command, or an alert that is not there, is refused
    assert_eq!(
        errno(&m.write("status", "dismiss 999999\n").unwrap_err()),
        libc::ENOENT
    );
    assert_eq!(
        errno(&m.write("status", "hello\n").unwrap_err()),
        libc::EINVAL
    );
    assert_eq!(
        errno(&m.write("status", "dismiss x\n").unwrap_err()),
        libc::EINVAL
    );
    // dismiss all, from the shell
    m.sh_ok("echo 'dismiss all' > status");
    assert!(alerts(&m).is_empty());
    let text = m.read("status");
    assert!(text.starts_with("ok"), "{text}");
    assert_eq!(text.lines().count(), 1);
}

#[test]
fn metrics_are_prometheus_text() {
    let m = Mount::start(&[]);
    m.put(&sector(410));
    let text = m.read("metrics");
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(value("sectorfs_slots"), 256.0);
    assert_eq!(value("sectorfs_slots_used"), 1.0);
    assert_eq!(value("sectorfs_sectors"), 1.0);
    // every sample line is `name{labels} value`, every metric has a TYPE
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut w = rest.split_whitespace();
            let name = w.next().unwrap();
            let kind = w.next().unwrap();
            assert!(["gauge", "counter", "histogram", "summary", "untyped"].contains(&kind));
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && name.starts_with("sectorfs_"),
            "{line}"
        );
        let labels = &series[name.len()..];
        assert!(
            labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
            "{line}"
        );
        assert!(typed.contains(name), "{name} has no TYPE line before it");
    }
    // bytes and operations read and written
    std::fs::read(m.sector_path(&sectorfs::merkle::sector_root(&sector(410)))).unwrap();
    let text = m.read("metrics");
    for name in [
        "reads_total",
        "writes_total",
        "read_bytes_total",
        "written_bytes_total",
    ] {
        assert!(
            text.contains(&format!("sectorfs_{name}{{volume=\"1\"}}")),
            "{name}:\n{text}"
        );
    }
    assert!(
        text.contains("sectorfs_writes_total{volume=\"1\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("sectorfs_written_bytes_total{volume=\"1\"} 4194304\n"),
        "{text}"
    );
}

/// A control write that fails changed nothing: lines before a refused one
/// in the same write took effect, so the write reports only their bytes,
/// and the rest, written again, is refused alone. A write of empty lines
/// only does nothing, and the close says so.
#[test]
fn a_refused_control_write_changed_nothing() {
    use std::io::Write;
    let m = Mount::start(&[]);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.path("height"))
        .unwrap();
    assert_eq!(f.write(b"20\n5\n").unwrap(), 3);
    assert_eq!(m.read("height").trim(), "20");
    assert_eq!(errno(&f.write(b"5\n").unwrap_err()), libc::EINVAL);
    assert_eq!(m.read("height").trim(), "20");
    drop(f);
    // the shell sees the refusal, and the height stays
    let out = m.sh("printf '30\\n7\\n' > height");
    assert!(!out.status.success());
    assert_eq!(m.read("height").trim(), "30");
    // empty lines only: refused, and nothing is done
    let slots = m.read("volumes/1/slots");
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(m.path("volumes/1/slots"))
            .unwrap()
    };
    let mut f = open();
    assert_eq!(errno(&f.write(b"\n").unwrap_err()), libc::EINVAL);
    // blanks with no end of line: refused at the close
    let mut f = open();
    f.write_all(b"  ").unwrap();
    assert_eq!(errno(&super::harness::close(f).unwrap_err()), libc::EINVAL);
    let e = m.sh("echo $UNSET > volumes/1/slots");
    assert!(!e.status.success());
    assert_eq!(m.read("volumes/1/slots"), slots);
    // empty lines after a command are fine (a shell's printf writes line
    // by line)
    m.sh_ok("printf '31\\n\\n32\\n\\n' > height");
    assert_eq!(m.read("height").trim(), "32");
}

/// Every figure has one definition: each metric of `/metrics` and each key
/// of `/status.json`'s totals is a row of README.md's table of figures, and
/// `df` agrees with `/status.json`.
#[test]
fn every_figure_is_defined_once_in_the_readme() {
    let m = Mount::start(&[]);
    m.put(&sector(410));
    m.write(
        "volumes/add",
        &format!("{} 8", m.scratch().join("v2.vol").display()),
    )
    .unwrap();
    m.write("volumes/2/readonly", "1").unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = &readme[readme.find("## Figures").expect("a Figures section")..];
    let table = &table[..table[3..].find("\n## ").map_or(table.len(), |i| i + 3)];
    let metrics = m.read("metrics");
    for line in metrics.lines().filter(|l| l.starts_with("# HELP ")) {
        let name = line.split(' ').nth(2).unwrap();
        let short = name.strip_prefix("sectorfs_").unwrap();
        assert!(
            table.contains(&format!("`{short}")),
            "{name} is not in README's figures"
        );
    }
    let s = m.status_json();
    for key in s["totals"].as_object().unwrap().keys() {
        if key != "placement" {
            assert!(
                table.contains(&format!("| `{key}` |")),
                "totals.{key} is not in README's figures"
            );
        }
    }
    // df from the same figures: Size, free and Avail
    let t = &s["totals"];
    let df = m.sh_ok("stat -f -c '%b %f %a' \"$MNT\"");
    let got: Vec<u64> = df.split_whitespace().map(|w| w.parse().unwrap()).collect();
    let free = t["free_writable"].as_u64().unwrap()
        + t["free_readonly"].as_u64().unwrap()
        + t["free_unavailable"].as_u64().unwrap();
    assert_eq!(
        got,
        vec![
            t["total_slots"].as_u64().unwrap(),
            free,
            t["free_writable"].as_u64().unwrap()
        ]
    );
    assert_eq!(t["total_slots"], 264);
    assert_eq!(t["used_slots"], 1);
    assert_eq!(t["free_readonly"], 8);
    // and /metrics carries the same numbers
    for (metric, key) in [
        ("slots", "total_slots"),
        ("slots_used", "used_slots"),
        ("slots_free_readonly", "free_readonly"),
        ("sectors", "sectors"),
    ] {
        let line = format!("sectorfs_{metric} {}", t[key]);
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }
}
