//! `sectorfs contracts`: every contract with its aggregates, worst health
//! first, read through the mount (one `user.sectorfs.aggregates` attribute
//! per contract).

use std::collections::BTreeMap;
use std::path::Path;

use sectorfs::figures::AGGREGATE;

/// One contract's figures, by name (`entries`, `health`, ...).
struct Row {
    name: String,
    figures: BTreeMap<String, String>,
    health: f64,
}

fn aggregates_of(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let value = xattr::get(path, "user.sectorfs.aggregates")
        .map_err(|e| format!("cannot read the aggregates of {}: {e}", path.display()))?
        .ok_or_else(|| {
            format!(
                "{} has no aggregates (not a sectorfs mount?)",
                path.display()
            )
        })?;
    Ok(String::from_utf8_lossy(&value)
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The contracts to look at: with `unhealthy`, those the mount names as
/// below 1 when it names them all; else every one listed.
fn names(dir: &Path, unhealthy: bool) -> Result<Vec<String>, String> {
    if unhealthy && let Ok(Some(list)) = xattr::get(dir, "user.sectorfs.unhealthy") {
        let list: Vec<String> = String::from_utf8_lossy(&list)
            .lines()
            .map(str::to_string)
            .collect();
        if list.len() < sectorfs::fs::UNHEALTHY_NAMES {
            return Ok(list);
        }
    }
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    entries
        .map(|e| {
            e.map(|e| e.file_name().to_string_lossy().into_owned())
                .map_err(|e| format!("cannot list {}: {e}", dir.display()))
        })
        .collect()
}

pub fn contracts(mount: &Path, unhealthy: bool, json: bool) -> Result<(), String> {
    let dir = mount.join("contracts");
    // every contract healthy: nothing to list, without a look at each
    let all = aggregates_of(&dir)?;
    let mut rows = Vec::new();
    if !(unhealthy && all.get("health").map(String::as_str) == Some("1.0000")) {
        for name in names(&dir, unhealthy)? {
            let path = dir.join(&name);
            let figures = match aggregates_of(&path) {
                Ok(f) => f,
                // removed since the listing
                Err(_) if !path.exists() => continue,
                Err(e) => return Err(e),
            };
            let health: f64 = figures
                .get("health")
                .and_then(|h| h.parse().ok())
                .unwrap_or(1.0);
            if unhealthy && health >= 1.0 {
                continue;
            }
            rows.push(Row {
                name,
                figures,
                health,
            });
        }
    }
    rows.sort_by(|a, b| a.health.total_cmp(&b.health).then(a.name.cmp(&b.name)));
    if json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut o = serde_json::Map::new();
                o.insert("name".into(), r.name.clone().into());
                for (k, v) in &r.figures {
                    let value = v
                        .parse::<i64>()
                        .map(Into::into)
                        .or_else(|_| v.parse::<f64>().map(Into::into))
                        .unwrap_or_else(|_| v.clone().into());
                    o.insert(k.clone(), value);
                }
                serde_json::Value::Object(o)
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    let columns: Vec<&str> = AGGREGATE
        .iter()
        .map(|f| f.name)
        .filter(|n| *n != "as_of")
        .collect();
    let mut table = vec![
        std::iter::once("contract".to_string())
            .chain(columns.iter().map(|c| c.to_string()))
            .collect::<Vec<_>>(),
    ];
    for r in &rows {
        table.push(
            std::iter::once(r.name.clone())
                .chain(
                    columns
                        .iter()
                        .map(|c| r.figures.get(*c).cloned().unwrap_or_default()),
                )
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..table[0].len())
        .map(|i| table.iter().map(|row| row[i].len()).max().unwrap_or(0))
        .collect();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| match i {
                0 => format!("{cell:<w$}"),
                _ => format!("{cell:>w$}"),
            })
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    if unhealthy && rows.is_empty() {
        eprintln!("every contract has at least the copies kept of each of its sectors");
    }
    Ok(())
}
