//! Aggregates and health through the mount: a volume going away lowers the
//! health of exactly the contracts whose sectors it held and coming back
//! restores it (with one copy and with two), a corrupt sector found by a
//! check lowers exactly its contracts', `/status` names them, `sectorfs
//! contracts --unhealthy` lists them worst first, and the offline check's
//! recount agrees.

use std::os::unix::fs::FileExt;

use super::harness::{BIN, Mount, offline_check, sector, wait_for, xattr};
use sectorfs::merkle::Root;

const SECTOR: u64 = 4 << 20;

fn add_volume(m: &Mount, name: &str, slots: u64) -> u32 {
    let before = volume_ids(m);
    let path = m.scratch().join(name);
    m.write("volumes/add", &format!("{} {slots}\n", path.display()))
        .unwrap();
    *volume_ids(m)
        .iter()
        .find(|id| !before.contains(id))
        .unwrap()
}

fn volume_ids(m: &Mount) -> Vec<u32> {
    std::fs::read_dir(m.path("volumes"))
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .collect()
}

/// `user.sectorfs.<name>` of `rel` under the mount.
fn figure(m: &Mount, rel: &str, name: &str) -> String {
    xattr(&m.path(rel), &format!("user.sectorfs.{name}"))
        .unwrap_or_else(|e| panic!("getxattr {name} of /{rel}: {e}"))
}

/// (health, lost, unavailable, corrupt) of a contract.
fn health(m: &Mount, contract: &str) -> (String, String, String, String) {
    let rel = format!("contracts/{contract}");
    (
        figure(m, &rel, "health"),
        figure(m, &rel, "lost"),
        figure(m, &rel, "unavailable"),
        figure(m, &rel, "corrupt"),
    )
}

fn write_contract(m: &Mount, name: &str, roots: &[Root]) {
    let text: String = roots.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(m.path(&format!("contracts/{name}")), text).unwrap();
}

/// `sectorfs contracts --unhealthy`: the names it lists, in order; its
/// `--json` form lists the same, each with its health (below 1) and figures.
fn unhealthy_listed(m: &Mount) -> Vec<String> {
    let run = |json: bool| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["contracts", "--unhealthy", "--mount"])
            .arg(&m.mnt);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let names: Vec<String> = run(false)
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let json: serde_json::Value = serde_json::from_str(&run(true)).unwrap();
    let listed = json.as_array().expect("a list");
    let json_names: Vec<&str> = listed.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(json_names, names, "--json lists what the table lists");
    for c in listed {
        assert!(c["health"].as_f64().unwrap() < 1.0, "{c}");
        assert!(c["entries"].as_i64().unwrap() > 0, "{c}");
    }
    names
}

/// Volume one (two slots, filled first) holds s0 and s1; volume two s2
/// and s3 (and, with two copies, every sector is on both). Volume one's
/// file goes away: `c_one` (all on one), `c_mix` (half) and `c_two` (none)
/// lose health as they should; it comes back and every one is whole.
fn a_volume_away_and_back(copies: u32) {
    let mut m = Mount::start(&["--default-volume", "0", "--placement", "fill-first"]);
    let one = add_volume(&m, "one.vol", if copies == 1 { 2 } else { 8 });
    let two = add_volume(&m, "two.vol", 8);
    m.write("copies", &format!("{copies}\n")).unwrap();
    let s: Vec<Root> = (0..4).map(|i| m.put(&sector(9100 + i))).collect();
    write_contract(&m, "c_one", &[s[0], s[1], s[0]]);
    write_contract(&m, "c_mix", &[s[1], s[2]]);
    write_contract(&m, "c_two", &[s[2], s[3]]);
    for c in ["c_one", "c_mix", "c_two"] {
        assert_eq!(health(&m, c).0, "1.0000", "{c} at first");
    }
    assert_eq!(figure(&m, "contracts/c_one", "entries"), "3");
    assert_eq!(figure(&m, "contracts/c_one", "sectors"), "2");
    assert_eq!(
        figure(&m, &format!("volumes/{two}"), "entries"),
        if copies == 1 { "2" } else { "4" }
    );

    let path = m.scratch().join("one.vol");
    let away = m.scratch().join("one.vol.away");
    std::fs::rename(&path, &away).unwrap();
    // a read of a sector there finds the file gone at once
    let _ = std::fs::read(m.sector_path(&s[0]));
    wait_for("volume one to be unavailable", 30, || {
        m.read(&format!("volumes/{one}/state")).trim() == "unavailable"
    });
    let want = |h: &str, lost: u32, unavailable: u32| {
        (
            h.to_string(),
            lost.to_string(),
            unavailable.to_string(),
            "0".to_string(),
        )
    };
    let (c_one, c_mix, c_two) = if copies == 1 {
        (
            want("0.0000", 3, 3),
            want("0.5000", 1, 1),
            want("1.0000", 0, 0),
        )
    } else {
        // one ready copy of two: no entry lost, none healthy
        (
            want("0.0000", 0, 3),
            want("0.0000", 0, 2),
            want("0.0000", 0, 2),
        )
    };
    wait_for("the pass to lower the contracts' health", 30, || {
        (
            health(&m, "c_one"),
            health(&m, "c_mix"),
            health(&m, "c_two"),
        ) == (c_one.clone(), c_mix.clone(), c_two.clone())
    });
    let status = m.read("status");
    let named = if copies == 1 {
        "2 contracts have entries"
    } else {
        "3 contracts have entries"
    };
    assert!(status.contains(named), "{status}");
    assert!(status.contains("c_one (health 0.0000"), "{status}");
    let listed = unhealthy_listed(&m);
    let want_listed: &[&str] = if copies == 1 {
        &["c_one", "c_mix"]
    } else {
        &["c_mix", "c_one", "c_two"]
    };
    assert_eq!(listed, want_listed, "worst health first, then by name");
    assert_ne!(figure(&m, "", "health"), "1.0000", "the root's");

    std::fs::rename(&away, &path).unwrap();
    // a check brings it back at once (the health loop would, within 10 s)
    m.write(&format!("volumes/{one}/check"), "1\n").unwrap();
    wait_for("every contract to be whole again", 60, || {
        ["c_one", "c_mix", "c_two"]
            .iter()
            .all(|c| health(&m, c) == want("1.0000", 0, 0))
    });
    assert_eq!(figure(&m, "", "health"), "1.0000");
    assert!(unhealthy_listed(&m).is_empty());
    wait_for("the alert to clear", 30, || {
        !m.read("status").contains("contracts have entries")
    });
    m.unmount();
    offline_check(&m, "after the volume came back");
}

#[test]
fn a_volume_away_lowers_exactly_its_contracts_health_with_one_copy() {
    a_volume_away_and_back(1);
}

#[test]
fn a_volume_away_lowers_every_contracts_health_with_two_copies() {
    a_volume_away_and_back(2);
}

/// A flipped byte in one sector, found by `echo 1 > check`: the contracts
/// holding it (and only those) count it corrupt and lost, per entry.
#[test]
fn a_corrupt_sector_found_by_check_lowers_exactly_its_contracts() {
    let mut m = Mount::start(&["--default-volume", "0"]);
    let vol = add_volume(&m, "one.vol", 8);
    let s: Vec<Root> = (0..3).map(|i| m.put(&sector(9200 + i))).collect();
    write_contract(&m, "a", &[s[0], s[1], s[1]]);
    write_contract(&m, "b", &[s[1], s[2]]);
    write_contract(&m, "c", &[s[2], s[0]]);
    let slot: u64 = figure_of_sector(&m, &s[1], "slot").parse().unwrap();
    let path = m.read(&format!("volumes/{vol}/path"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path.trim())
        .unwrap();
    let at = slot * SECTOR + 77;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0xFF], at).unwrap();
    drop(file);
    m.write(&format!("volumes/{vol}/check"), "1\n").unwrap();
    wait_for("the check to end", 60, || {
        m.read("status")
            .contains(&format!("check of volume {vol}: done"))
    });
    let status = m.read("status");
    assert!(status.contains("1 corrupt"), "{status}");
    assert_eq!(
        health(&m, "a"),
        ("0.3333".into(), "2".into(), "0".into(), "2".into())
    );
    assert_eq!(
        health(&m, "b"),
        ("0.5000".into(), "1".into(), "0".into(), "1".into())
    );
    assert_eq!(
        health(&m, "c"),
        ("1.0000".into(), "0".into(), "0".into(), "0".into())
    );
    assert_eq!(figure(&m, "contracts", "corrupt"), "3");
    assert_eq!(unhealthy_listed(&m), ["a", "b"]);
    assert!(status.contains("2 contracts have entries"), "{status}");
    // known after a restart too: the copy is still corrupt
    m.remount();
    assert_eq!(health(&m, "a").3, "2");
    assert_eq!(health(&m, "c").0, "1.0000");
}

fn figure_of_sector(m: &Mount, root: &Root, name: &str) -> String {
    xattr(&m.sector_path(root), &format!("user.sectorfs.{name}")).unwrap()
}
