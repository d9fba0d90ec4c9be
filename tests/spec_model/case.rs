//! One case: a fresh store behind a driver, and the model beside it. Each
//! operation is done as a user would do it and its outcome checked against
//! the model; then everything visible is.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use sectorfs::merkle::SECTOR_SIZE;

use super::driver::{Driver, Open};
use super::ops::{How, Op, POOL, contract_name, list_text, pool, root};
use super::state::{DEFAULT_SLOTS, Model, Target, Volume};
use super::want::{Want, errno, expect};

pub struct Case<D: Driver> {
    pub d: D,
    pub model: Model,
    volume_files: u32,
    /// Sectors whose bytes were read back since they were last stored.
    verified: BTreeSet<usize>,
    /// `/temp/<h>` directories seen, to check gone ones stay gone (the
    /// kernel caches their names).
    dirs_seen: BTreeSet<u64>,
}

fn sector_path(seed: usize) -> String {
    format!("sectors/{}", root(seed))
}

fn temp_path(h: u64, seed: usize) -> String {
    format!("temp/{h}/{}", root(seed))
}

impl<D: Driver> Case<D> {
    pub fn new() -> Case<D> {
        Case {
            d: D::start(DEFAULT_SLOTS),
            model: Model::new(),
            volume_files: 0,
            verified: BTreeSet::new(),
            dirs_seen: BTreeSet::new(),
        }
    }

    fn temp_height(&self, dh: i64) -> u64 {
        self.model.height.saturating_add_signed(dh)
    }

    /// `mkdir /temp/<h>` if the model has no such directory (and `h` is
    /// valid), as a user would before writing into it.
    fn ensure_temp_dir(&mut self, h: u64) -> Result<(), String> {
        if h > self.model.height && !self.model.temp_dir_exists(h) {
            let r = self.d.create_dir(&format!("temp/{h}"));
            expect(&format_args!("mkdir /temp/{h}"), r, 0)?;
            self.model.temp_dirs.insert(h);
        }
        Ok(())
    }

    /// Writes a sector file as `how` says with `seed`'s data; the outer
    /// error is the harness's (a step that did not behave like one call),
    /// the inner one the file system's answer.
    fn write_sector_file(
        &self,
        path: &str,
        seed: usize,
        how: How,
    ) -> Result<io::Result<()>, String> {
        let data = &pool()[seed].data;
        Ok(match how {
            How::Good | How::WrongRoot(_) => self.d.write_file(path, Open::Create, data),
            How::Short(n) => self.d.write_file(path, Open::Create, &data[..n]),
            How::Oversized => {
                let mut f = match self.d.open(path, Open::Create) {
                    Ok(f) => f,
                    Err(e) => return Ok(Err(e)),
                };
                let past = self.d.write_at(&mut f, SECTOR_SIZE as u64, b"x");
                if past.as_ref().map_err(errno).err() != Some(libc::EFBIG) {
                    let _ = self.d.close(f);
                    return Err(format!(
                        "a write past 4 MiB of {path}: got {past:?}, want EFBIG"
                    ));
                }
                if let Err(e) = self.d.write_at(&mut f, 0, data) {
                    let _ = self.d.close(f);
                    return Err(format!("writing {path} after EFBIG: {e}"));
                }
                self.d.close(f)
            }
        })
    }

    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        let what = format!("{op:?}");
        match op {
            Op::Put { seed, how } => {
                let name_seed = how.name_seed(*seed);
                let want = self.model.write_errno(name_seed, *how);
                let got = self.write_sector_file(&sector_path(name_seed), *seed, *how)?;
                expect(&what, got, want)?;
                if want.ok() {
                    self.model.reference(*seed, Target::Pin);
                }
            }
            Op::Unpin { seed } => {
                let seed = &self.model.resolve(*seed);
                let what = format!("{what} (#{seed})");
                let want = match self.model.sectors.get(seed) {
                    None => libc::ENOENT,
                    Some(s) if s.pin => 0,
                    Some(_) => libc::EBUSY,
                };
                let got = self.d.remove_file(&sector_path(*seed));
                expect(&what, got, want)?;
                if want == 0 {
                    self.model.sectors.get_mut(seed).unwrap().pin = false;
                    self.model.gc();
                }
            }
            Op::Replace { id, seeds } | Op::Append { id, seeds } => {
                let seeds: Vec<usize> = seeds.iter().map(|p| self.model.resolve(*p)).collect();
                let seeds = &seeds;
                let what = format!("{what} ({seeds:?})");
                let append = matches!(op, Op::Append { .. });
                let open = if append { Open::Append } else { Open::Create };
                let want = if seeds.iter().all(|s| self.model.stored(*s)) {
                    0
                } else {
                    libc::ENOENT
                };
                let name = contract_name(*id);
                let path = format!("contracts/{name}");
                let got = self.d.write_file(&path, open, list_text(seeds).as_bytes());
                expect(&what, got, want)?;
                // a contract made by this write goes again if its first
                // list is refused
                if want == 0 {
                    let list = self.model.contracts.entry(name).or_default();
                    if append {
                        list.extend(seeds);
                    } else {
                        *list = seeds.clone();
                        self.model.gc();
                    }
                }
            }
            Op::BadRevision { id, append, bad } => {
                let open = if *append { Open::Append } else { Open::Create };
                let path = format!("contracts/{}", contract_name(*id));
                let got = self.d.write_file(&path, open, bad.text().as_bytes());
                expect(&what, got, bad.errno())?;
            }
            Op::Rename { from, to } => {
                let (from, to) = (contract_name(*from), contract_name(*to));
                let want = if self.model.contracts.contains_key(&from) {
                    0
                } else {
                    libc::ENOENT
                };
                let got = self
                    .d
                    .rename(&format!("contracts/{from}"), &format!("contracts/{to}"));
                expect(&what, got, want)?;
                if want == 0 && from != to {
                    let list = self.model.contracts.remove(&from).unwrap();
                    self.model.contracts.insert(to, list);
                    self.model.gc();
                }
            }
            Op::Delete { id } => {
                let name = contract_name(*id);
                let want = if self.model.contracts.contains_key(&name) {
                    0
                } else {
                    libc::ENOENT
                };
                let got = self.d.remove_file(&format!("contracts/{name}"));
                expect(&what, got, want)?;
                if want == 0 {
                    self.model.contracts.remove(&name);
                    self.model.gc();
                }
            }
            Op::TempPut { seed, dh, how } => {
                let seed = &self.model.resolve(*seed);
                let h = self.temp_height(*dh);
                let what = format!("{what} (#{seed} at /temp/{h})");
                self.ensure_temp_dir(h)?;
                let name_seed = how.name_seed(*seed);
                // /temp/<h> not above the height: refused at create
                let want = if h <= self.model.height {
                    Want::One(libc::EINVAL)
                } else {
                    self.model.write_errno(name_seed, *how)
                };
                let got = self.write_sector_file(&temp_path(h, name_seed), *seed, *how)?;
                expect(&what, got, want)?;
                if want.ok() {
                    self.model.reference(*seed, Target::Temp(h));
                }
            }
            Op::Link { seed, dh } => {
                let seed = &self.model.resolve(*seed);
                let h = self.temp_height(*dh);
                let what = format!("{what} (#{seed} at /temp/{h})");
                self.ensure_temp_dir(h)?;
                let want = if !self.model.stored(*seed) {
                    libc::ENOENT
                } else if h <= self.model.height {
                    libc::EINVAL
                } else if self.model.temp.contains(&(h, *seed)) {
                    libc::EEXIST
                } else {
                    0
                };
                let got = self.d.hard_link(&sector_path(*seed), &temp_path(h, *seed));
                expect(&what, got, want)?;
                if want == 0 {
                    self.model.reference(*seed, Target::Temp(h));
                }
            }
            Op::TempUnlink { pick, seed, dh } => {
                let entries: Vec<(u64, usize)> = self.model.temp.iter().copied().collect();
                let (h, seed) = match pick {
                    Some(i) if !entries.is_empty() => entries[i.index(entries.len())],
                    _ => (self.temp_height(*dh), *seed),
                };
                let want = if h <= self.model.height {
                    libc::EINVAL
                } else if self.model.temp.contains(&(h, seed)) {
                    0
                } else {
                    libc::ENOENT
                };
                let got = self.d.remove_file(&temp_path(h, seed));
                expect(&format_args!("{what} (/temp/{h}/#{seed})"), got, want)?;
                if want == 0 {
                    self.model.temp.remove(&(h, seed));
                    // the directory stays, as on any file system
                    self.model.temp_dirs.insert(h);
                    self.model.gc();
                }
            }
            Op::Mkdir { dh } => {
                let h = self.temp_height(*dh);
                let want = if h <= self.model.height {
                    libc::EINVAL
                } else if self.model.temp_dir_exists(h) {
                    libc::EEXIST
                } else {
                    0
                };
                let got = self.d.create_dir(&format!("temp/{h}"));
                expect(&format_args!("{what} (/temp/{h})"), got, want)?;
                if want == 0 {
                    self.model.temp_dirs.insert(h);
                }
            }
            Op::Rmdir { dh } => {
                let h = self.temp_height(*dh);
                let want = if h <= self.model.height {
                    libc::EINVAL
                } else if !self.model.temp_dir_exists(h) {
                    libc::ENOENT
                } else if self.model.temp.iter().any(|(t, _)| *t == h) {
                    libc::ENOTEMPTY
                } else {
                    0
                };
                let got = self.d.remove_dir(&format!("temp/{h}"));
                expect(&format_args!("{what} (/temp/{h})"), got, want)?;
                if want == 0 {
                    self.model.temp_dirs.remove(&h);
                }
            }
            Op::SetHeight { dh } => {
                let h = self.model.height as i64 + dh;
                let want = if h < self.model.height as i64 {
                    libc::EINVAL
                } else {
                    0
                };
                let got = self
                    .d
                    .write_file("height", Open::Truncate, format!("{h}\n").as_bytes());
                expect(&format_args!("{what} (to {h})"), got, want)?;
                if want == 0 {
                    self.model.set_height(h as u64);
                }
            }
            Op::SetCopies { min, max } => {
                let want = if *max >= *min && *min >= 1 {
                    0
                } else {
                    libc::EINVAL
                };
                let got = self.d.write_file(
                    "copies",
                    Open::Truncate,
                    format!("{min} {max}\n").as_bytes(),
                );
                expect(&format_args!("{what} ({min} {max})"), got, want)?;
                if want == 0 {
                    self.model.copies = (*min, *max);
                }
            }
            Op::AddVolume { slots } => {
                self.volume_files += 1;
                let path = self
                    .d
                    .scratch()
                    .join(format!("model-{}.vol", self.volume_files));
                let line = format!("{} {slots}\n", path.display());
                let got = self
                    .d
                    .write_file("volumes/add", Open::Truncate, line.as_bytes());
                expect(&what, got, 0)?;
                let id = self.model.volumes.keys().max().unwrap() + 1;
                self.model.volumes.insert(
                    id,
                    Volume {
                        slots: *slots,
                        readonly: false,
                    },
                );
            }
            Op::ReadOnly { volume, on } => {
                let ids: Vec<u32> = self.model.volumes.keys().copied().collect();
                let id = ids[volume.index(ids.len())];
                let got = self.d.write_file(
                    &format!("volumes/{id}/readonly"),
                    Open::Truncate,
                    if *on { b"1\n" } else { b"0\n" },
                );
                expect(&format_args!("{what} (volume {id})"), got, 0)?;
                self.model.volumes.get_mut(&id).unwrap().readonly = *on;
            }
            // everything survives, empty /temp/<h> directories too: a
            // mkdir that returned success is durable like any call
            Op::Remount => self.d.remount()?,
            Op::KillRemount => self.d.kill_remount()?,
        }
        Ok(())
    }

    fn read_text(&self, path: &str) -> Result<String, String> {
        let bytes = self.d.read(path).map_err(|e| format!("read {path}: {e}"))?;
        String::from_utf8(bytes).map_err(|_| format!("{path} is not text"))
    }

    fn names(&self, dir: &str) -> Result<Vec<String>, String> {
        self.d.list(dir).map_err(|e| format!("ls /{dir}: {e}"))
    }

    /// Everything the model says must be visible; `all_bytes`: every
    /// stored sector is read back, not only those stored since the last
    /// check.
    pub fn check(&mut self, all_bytes: bool) -> Result<(), String> {
        self.check_sectors(all_bytes)?;
        self.check_contracts()?;
        self.check_temp()?;
        self.check_volumes()?;
        self.check_aggregates()
    }

    /// The aggregates (`user.sectorfs.*` of the root, `/contracts` and
    /// each contract, `/temp` and each height, each volume) against a
    /// recount of the model. Health figures while every sector keeps its
    /// one copy (`/copies` 1 1): every entry healthy; with more, the repair
    /// adds copies in the background and only the counts are exact.
    fn check_aggregates(&self) -> Result<(), String> {
        let model = &self.model;
        let one_copy = model.copies == (1, 1);
        let check = |path: &str, entries: usize, sectors: usize| -> Result<(), String> {
            let get = |name: &str| {
                self.d
                    .xattr(path, &format!("user.sectorfs.{name}"))
                    .map_err(|e| format!("getxattr {name} of /{path}: {e}"))
            };
            let mut got = vec![get("entries")?, get("sectors")?, get("bytes")?];
            let mut want = vec![
                entries.to_string(),
                sectors.to_string(),
                (sectors as u64 * SECTOR_SIZE as u64).to_string(),
            ];
            if one_copy {
                for name in ["health", "unavailable", "corrupt", "lost", "cold"] {
                    got.push(get(name)?);
                }
                want.extend(["1.0000", "0", "0", "0", "0"].map(String::from));
            }
            if got != want {
                return Err(format!(
                    "aggregates of /{path} (entries sectors bytes [health unavailable corrupt \
                     lost cold]): {got:?}, a recount of the model {want:?}"
                ));
            }
            Ok(())
        };
        let distinct =
            |seeds: &mut dyn Iterator<Item = usize>| seeds.collect::<BTreeSet<_>>().len();
        let contract_entries: usize = model.contracts.values().map(Vec::len).sum();
        let pins = model.sectors.values().filter(|s| s.pin).count();
        check(
            "",
            pins + contract_entries + model.temp.len(),
            model.sectors.len(),
        )?;
        check(
            "contracts",
            contract_entries,
            distinct(&mut model.contracts.values().flatten().copied()),
        )?;
        for (name, seeds) in &model.contracts {
            check(
                &format!("contracts/{name}"),
                seeds.len(),
                distinct(&mut seeds.iter().copied()),
            )?;
        }
        check(
            "temp",
            model.temp.len(),
            distinct(&mut model.temp.iter().map(|(_, s)| *s)),
        )?;
        for h in model.dirs() {
            let n = model.temp.iter().filter(|(t, _)| *t == h).count();
            check(&format!("temp/{h}"), n, n)?;
        }
        if one_copy {
            for id in model.volumes.keys() {
                let used = model.used(*id) as usize;
                check(&format!("volumes/{id}"), used, used)?;
            }
        }
        Ok(())
    }

    /// The listing; every pool sector's bytes, nlink, xattrs and slot, or
    /// ENOENT.
    fn check_sectors(&mut self, all_bytes: bool) -> Result<(), String> {
        let model = &self.model;
        let mut want: Vec<String> = model.sectors.keys().map(|s| root(*s).to_string()).collect();
        want.sort();
        let got = self.names("sectors")?;
        if got != want {
            return Err(format!("ls /sectors: {got:?}, the model has {want:?}"));
        }
        self.verified.retain(|s| model.stored(*s));
        let mut slots: BTreeMap<(u32, u64), usize> = BTreeMap::new();
        for seed in 0..POOL {
            let path = sector_path(seed);
            let Some(s) = model.sectors.get(&seed) else {
                // freed (maybe by the step just done, from another path)
                // while its name was cached: gone for stat and open alike
                match (self.d.stat(&path), self.d.read(&path)) {
                    (Err(e), Err(f)) if errno(&e) == libc::ENOENT && errno(&f) == libc::ENOENT => {
                        continue;
                    }
                    (stat, read) => {
                        return Err(format!(
                            "sector #{seed} is not stored, yet stat gives {stat:?} and open \
                             gives {:?}",
                            read.map(|d| d.len())
                        ));
                    }
                }
            };
            let (size, nlink) = self
                .d
                .stat(&path)
                .map_err(|e| format!("stat #{seed}: {e}"))?;
            let (pin, contracts, temp) = model.refs(seed);
            if size != SECTOR_SIZE as u64 || nlink != pin + contracts + temp {
                return Err(format!(
                    "sector #{seed}: size {size} nlink {nlink}, the model has {} references \
                     (pin={pin} contracts={contracts} temp={temp})",
                    pin + contracts + temp
                ));
            }
            let xattr = |name: &str| {
                self.d
                    .xattr(&path, name)
                    .map_err(|e| format!("sector #{seed}: getxattr {name}: {e}"))
            };
            let refs = xattr("user.sectorfs.refs")?;
            let want_refs = format!("pin={pin} contracts={contracts} temp={temp}");
            if refs != want_refs {
                return Err(format!("sector #{seed}: refs {refs:?}, want {want_refs:?}"));
            }
            let volume = xattr("user.sectorfs.volume")?;
            if volume != s.volume.to_string() {
                return Err(format!(
                    "sector #{seed} is on volume {volume}, fill-first puts it on {}",
                    s.volume
                ));
            }
            // one slot per sector, inside its volume
            let slot: u64 = xattr("user.sectorfs.slot")?
                .parse()
                .map_err(|_| format!("sector #{seed}: user.sectorfs.slot is not a number"))?;
            if slot >= model.volumes[&s.volume].slots {
                return Err(format!(
                    "sector #{seed} is in slot {slot} of volume {}, which has {} slots",
                    s.volume, model.volumes[&s.volume].slots
                ));
            }
            // its one copy (the model keeps min at 1)
            let copies = xattr("user.sectorfs.copies")?;
            if copies != format!("{}:{slot}", s.volume) {
                return Err(format!(
                    "sector #{seed}: copies {copies:?}, want its one copy {}:{slot}",
                    s.volume
                ));
            }
            if let Some(other) = slots.insert((s.volume, slot), seed) {
                return Err(format!(
                    "sectors #{other} and #{seed} share slot {slot} of volume {}",
                    s.volume
                ));
            }
            if all_bytes || !self.verified.contains(&seed) {
                let data = self
                    .d
                    .read(&path)
                    .map_err(|e| format!("read #{seed}: {e}"))?;
                if data != pool()[seed].data {
                    return Err(format!("sector #{seed} reads back different bytes"));
                }
                self.verified.insert(seed);
            }
        }
        Ok(())
    }

    fn check_contracts(&self) -> Result<(), String> {
        let want: Vec<String> = self.model.contracts.keys().cloned().collect();
        let got = self.names("contracts")?;
        if got != want {
            return Err(format!("ls /contracts: {got:?}, the model has {want:?}"));
        }
        for (name, seeds) in &self.model.contracts {
            let text = self.read_text(&format!("contracts/{name}"))?;
            if text != list_text(seeds) {
                return Err(format!(
                    "contract {name} reads {} lines, the model has {:?}",
                    text.lines().count(),
                    seeds
                ));
            }
        }
        Ok(())
    }

    /// The height and `/temp`: the listings, and each pool sector's name
    /// in each directory (there with its link count, or ENOENT), and
    /// directories gone stay gone.
    fn check_temp(&mut self) -> Result<(), String> {
        self.dirs_seen.extend(self.model.dirs());
        let model = &self.model;
        let height = self.read_text("height")?;
        if height != format!("{}\n", model.height) {
            return Err(format!(
                "/height is {height:?}, the model has {}",
                model.height
            ));
        }
        let copies = self.read_text("copies")?;
        if copies != format!("{} {}\n", model.copies.0, model.copies.1) {
            return Err(format!(
                "/copies is {copies:?}, the model has {:?}",
                model.copies
            ));
        }
        let mut want: Vec<String> = model.dirs().iter().map(|h| h.to_string()).collect();
        want.sort();
        let got = self.names("temp")?;
        if got != want {
            return Err(format!("ls /temp: {got:?}, the model has {want:?}"));
        }
        for h in model.dirs() {
            let mut want: Vec<String> = model
                .temp
                .iter()
                .filter(|(t, _)| *t == h)
                .map(|(_, s)| root(*s).to_string())
                .collect();
            want.sort();
            let got = self.names(&format!("temp/{h}"))?;
            if got != want {
                return Err(format!("ls /temp/{h}: {got:?}, the model has {want:?}"));
            }
            for seed in 0..POOL {
                let path = temp_path(h, seed);
                let got = self
                    .d
                    .stat(&path)
                    .map(|(_, nlink)| nlink)
                    .map_err(|e| errno(&e));
                let want = match model.temp.contains(&(h, seed)) {
                    true => {
                        let (pin, contracts, temp) = model.refs(seed);
                        Ok(pin + contracts + temp)
                    }
                    false => Err(libc::ENOENT),
                };
                if got != want {
                    return Err(format!("stat /{path}: {got:?}, the model has {want:?}"));
                }
            }
        }
        for h in &self.dirs_seen {
            if !model.temp_dir_exists(*h) && self.d.stat(&format!("temp/{h}")).is_ok() {
                return Err(format!("/temp/{h} is gone in the model, yet stat finds it"));
            }
        }
        Ok(())
    }

    /// Each volume's used, slots and readonly; and `df` (free: every free
    /// slot; available: those of writable volumes).
    fn check_volumes(&self) -> Result<(), String> {
        let model = &self.model;
        let mut want: Vec<String> = model.volumes.keys().map(|id| id.to_string()).collect();
        want.push("add".into());
        want.push("attach".into());
        want.sort();
        let got = self.names("volumes")?;
        if got != want {
            return Err(format!("ls /volumes: {got:?}, the model has {want:?}"));
        }
        let (mut total, mut free, mut all_free) = (0, 0, 0);
        for (id, v) in &model.volumes {
            let read = |f: &str| self.read_text(&format!("volumes/{id}/{f}"));
            let used = model.used(*id);
            let got = (read("used")?, read("slots")?, read("readonly")?);
            let want = (
                format!("{used}\n"),
                format!("{}\n", v.slots),
                format!("{}\n", v.readonly as u8),
            );
            if got != want {
                return Err(format!(
                    "volume {id}: used/slots/readonly {got:?}, the model has {want:?}"
                ));
            }
            total += v.slots;
            all_free += v.slots - used;
            if !v.readonly {
                free += v.slots - used;
            }
        }
        let got = self.d.statfs().map_err(|e| format!("statvfs: {e}"))?;
        if got != (total, all_free, free, SECTOR_SIZE as u64) {
            return Err(format!(
                "df: (blocks, bfree, bavail, frsize) {got:?}, the model has \
                 ({total}, {all_free}, {free}, {SECTOR_SIZE})"
            ));
        }
        Ok(())
    }
}
