//! Hostile input through the mount: every writable control file and a
//! contract file fed random bytes, huge input, partial lines, non-UTF-8,
//! negative and overflowing numbers and bad paths; names of every bad shape
//! in `/sectors`, `/contracts`, `/temp` and `/volumes`; operations each
//! directory does not allow. Each input must get its specific errno (and,
//! when the daemon refused it, a line in the log), the daemon must stay up,
//! and the store's state and data must be unchanged: compared with a
//! snapshot after every group, again after a remount, and finally by the
//! offline check.
//!
//! The random inputs come from a seeded generator, so a failure replays
//! exactly; `SECTORFS_HOSTILE_RANDOM` sets how many random inputs each
//! target gets (default 64).

use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::harness::{Mount, Rng, close, errno, sector, unstored_root, write_file};
use sectorfs::engine::MAX_SLOTS;
use sectorfs::merkle::{Root, SECTOR_SIZE, sector_root};

const MIB: usize = 1 << 20;

/// One operation of a table of hostile calls.
type Op<'a> = Box<dyn Fn() -> std::io::Result<()> + 'a>;
/// Larger than any temp height (2^62 - 1).
const TEMP_HEIGHT_TOO_BIG: &str = "4611686018427387904";

fn random_count() -> usize {
    std::env::var("SECTORFS_HOSTILE_RANDOM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Short printable form of hostile bytes for messages.
fn shown(b: &[u8]) -> String {
    let cut = &b[..b.len().min(48)];
    let mut s = format!("{:?}", String::from_utf8_lossy(cut));
    if b.len() > cut.len() {
        s.push_str(&format!("… ({} bytes)", b.len()));
    }
    s
}

fn errname(n: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(n))
}

fn os_path(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn last_err(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Writes `data` to a control file as `printf ... > file` does and returns
/// the first error, close's included (a partial line is applied there).
fn write_ctl(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(data)?;
    close(f)
}

#[derive(Clone, Copy, Debug)]
enum Edit {
    Replace,
    Append,
    /// Neither O_TRUNC nor O_APPEND: no revision is meant.
    Plain,
}

fn write_contract(path: &Path, edit: Edit, data: &[u8]) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    match edit {
        Edit::Replace => o.write(true).truncate(true),
        Edit::Append => o.append(true),
        Edit::Plain => o.write(true),
    };
    let mut f = o.open(path)?;
    f.write_all(data)?;
    close(f)
}

fn create(path: &Path) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    close(f)
}

fn symlink(target: &str, path: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, path)
}

fn mkfifo(path: &Path) -> std::io::Result<()> {
    // SAFETY: a valid C string.
    last_err(unsafe { libc::mknod(c_path(path).as_ptr(), libc::S_IFIFO | 0o644, 0) })
}

fn setxattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let n = CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of the length given.
    last_err(unsafe {
        libc::setxattr(
            c_path(path).as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::io::Result<()> {
    // SAFETY: valid C strings.
    last_err(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c_path(from).as_ptr(),
            libc::AT_FDCWD,
            c_path(to).as_ptr(),
            flags,
        )
    })
}

/// Detaches a mount when dropped, even when the test fails.
struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Everything a hostile input must leave as it was.
fn state(m: &Mount, extra_dirs: &[&Path]) -> Vec<String> {
    let mut out = vec![
        format!("height {}", m.read("height")),
        format!("copies {}", m.read("copies")),
    ];
    for name in m.listed() {
        let p = m.path(&format!("sectors/{name}"));
        let x = |a: &str| super::harness::xattr(&p, a).unwrap();
        out.push(format!(
            "sector {name} nlink {} refs {} at {}:{} copies {} ino {} mtime {}",
            std::fs::metadata(&p).unwrap().nlink(),
            x("user.sectorfs.refs"),
            x("user.sectorfs.volume"),
            x("user.sectorfs.slot"),
            x("user.sectorfs.copies"),
            std::fs::metadata(&p).unwrap().ino(),
            std::fs::metadata(&p).unwrap().mtime(),
        ));
    }
    for c in sorted_names(&m.path("contracts")) {
        out.push(format!(
            "contract {c}: {:?}",
            m.read(&format!("contracts/{c}"))
        ));
    }
    for t in sorted_names(&m.path("temp")) {
        out.push(format!(
            "temp {t}: {:?}",
            sorted_names(&m.path(&format!("temp/{t}")))
        ));
    }
    for v in sorted_names(&m.path("volumes")) {
        if v == "add" || v == "attach" {
            continue;
        }
        let f = |n: &str| m.read(&format!("volumes/{v}/{n}"));
        out.push(format!(
            "volume {v}: path {:?} uuid {:?} slots {:?} used {:?} readonly {:?} state {:?}",
            f("path"),
            f("uuid"),
            f("slots"),
            f("used"),
            f("readonly"),
            f("state")
        ));
    }
    let st = nix::sys::statvfs::statvfs(&m.mnt).unwrap();
    out.push(format!(
        "df blocks {} free {} avail {}",
        st.blocks(),
        st.blocks_free(),
        st.blocks_available()
    ));
    // no stray files where a refused volume could have been created
    for dir in extra_dirs {
        // the metadata backups written beside the volumes at each unmount
        let names: Vec<String> = sorted_names(dir)
            .into_iter()
            .filter(|n| !n.ends_with(".sectorfs.db"))
            .collect();
        out.push(format!("{} holds {names:?}", dir.display()));
    }
    out
}

/// Fails with the lines that differ, if any.
fn assert_same(before: &[String], now: &[String], after: &str) {
    let gone: Vec<&String> = before.iter().filter(|l| !now.contains(l)).collect();
    let new: Vec<&String> = now.iter().filter(|l| !before.contains(l)).collect();
    assert!(
        gone.is_empty() && new.is_empty(),
        "the store changed after the {after} inputs:\nbefore: {gone:#?}\nafter: {new:#?}"
    );
}

fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

struct Hostile<'a> {
    m: &'a Mount,
    tried: usize,
    /// Inputs not refused as expected in the current group.
    problems: Vec<String>,
    groups: Vec<(&'static str, usize)>,
    before: Vec<String>,
    extra_dirs: Vec<PathBuf>,
    known: Vec<(Root, u64)>,
}

impl Hostile<'_> {
    fn log_len(&self) -> u64 {
        std::fs::metadata(self.m.scratch().join("daemon.log"))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// One hostile input: `op` must fail with `want`; `logged` when the
    /// daemon (not the kernel) refuses it, which must say why in the log.
    fn expect(
        &mut self,
        what: &str,
        want: i32,
        logged: bool,
        op: impl FnOnce() -> std::io::Result<()>,
    ) {
        let before = self.log_len();
        let got = op();
        self.tried += 1;
        let problem = match got {
            Ok(()) => Some(format!("{what}: accepted, expected {}", errname(want))),
            Err(e) if errno(&e) != want => Some(format!(
                "{what}: got {e} ({}), expected {}",
                errname(errno(&e)),
                errname(want)
            )),
            Err(_) if logged && self.log_len() <= before => Some(format!(
                "{what}: refused with {} but no line in the log says why",
                errname(want)
            )),
            Err(_) => None,
        };
        self.problems.extend(problem);
    }

    fn ctl(&mut self, rel: &str, data: &[u8], want: i32) {
        let path = self.m.path(rel);
        self.expect(
            &format!("write {} to /{rel}", shown(data)),
            want,
            true,
            || write_ctl(&path, data),
        );
    }

    fn contract(&mut self, name: &str, edit: Edit, data: &[u8], want: i32) {
        let path = self.m.path(&format!("contracts/{name}"));
        self.expect(
            &format!("{edit:?} /contracts/{name} with {}", shown(data)),
            want,
            true,
            || write_contract(&path, edit, data),
        );
    }

    /// Ends a group: every input got its errno, the daemon answers and
    /// nothing changed.
    fn group(&mut self, name: &'static str) {
        assert!(
            self.problems.is_empty(),
            "{} of the {name} inputs were not refused as expected:\n{}",
            self.problems.len(),
            self.problems.join("\n")
        );
        let done: usize = self.groups.iter().map(|(_, n)| n).sum();
        self.groups.push((name, self.tried - done));
        let extra: Vec<&Path> = self.extra_dirs.iter().map(PathBuf::as_path).collect();
        assert_same(&self.before, &state(self.m, &extra), name);
        self.verify_data(name);
    }

    fn verify_data(&self, when: &str) {
        for (root, seed) in &self.known {
            let got = std::fs::read(self.m.sector_path(root))
                .unwrap_or_else(|e| panic!("{when}: read {root}: {e}"));
            assert!(got == sector(*seed), "{when}: sector {root} differs");
        }
    }
}

/// Random control input whose first line no control file accepts (its
/// first byte is never valid there), so every one must be refused whole.
fn random_control(rng: &mut Rng) -> Vec<u8> {
    const BAD_FIRST: &[u8] = b"#x-+.?\x00\x7f\xff\x80\xc3";
    let len = *rng.pick(&[1usize, 2, 3, 8, 20, 64, 65, 200, 1000, 4096, 30000]);
    let mut data = rng.bytes(len);
    // printable-heavy input reaches the parsers; raw bytes reach UTF-8 checks
    if rng.below(2) == 0 {
        const ALPHABET: &[u8] = b"0123456789 \t\n-+./abcdefxyzKMGTPiB";
        for b in data.iter_mut() {
            *b = ALPHABET[(*b as usize) % ALPHABET.len()];
        }
    }
    data[0] = *rng.pick(BAD_FIRST);
    data
}

/// A random file name (1-255 bytes, no '/' or NUL, not "." or "..") with
/// at least one byte outside `allowed`.
fn random_name(rng: &mut Rng, allowed: impl Fn(u8) -> bool) -> Vec<u8> {
    let len = 1 + rng.below(255) as usize;
    let mut name: Vec<u8> = (0..len)
        .map(|_| match rng.below(255) as u8 + 1 {
            b'/' => b'x',
            b => b,
        })
        .collect();
    if name.iter().all(|b| allowed(*b)) {
        let i = rng.below(len as u64) as usize;
        name[i] = *rng.pick(b" \t\n:*?\\\"'<>|%\x01\xff\xe9");
    }
    if name == b"." || name == b".." {
        name.push(b' ');
    }
    name
}

#[test]
fn hostile_input_is_refused_and_changes_nothing() {
    let mut m = Mount::start(&[]);
    let scratch = m.scratch().to_path_buf();
    // a second volume, read-only, so refused jobs have nowhere to move to
    let v2 = scratch.join("v2.vol");
    m.write("volumes/add", &format!("{} 8\n", v2.display()))
        .unwrap();
    let (a, b, c) = (m.put(&sector(1)), m.put(&sector(2)), m.put(&sector(3)));
    write_file(
        &m.path("contracts/c1"),
        format!("{a}\n{b}\n{a}\n").as_bytes(),
    )
    .unwrap();
    write_file(&m.path("contracts/c-2"), format!("{c}\n").as_bytes()).unwrap();
    std::fs::remove_file(m.sector_path(&c)).unwrap(); // c: contract only
    std::fs::create_dir(m.path("temp/50")).unwrap();
    std::fs::create_dir(m.path("temp/60")).unwrap();
    let d_data = sector(4);
    let d = sector_root(&d_data);
    write_file(&m.path(&format!("temp/50/{d}")), &d_data).unwrap(); // d: temp only
    std::fs::hard_link(m.sector_path(&a), m.path(&format!("temp/60/{a}"))).unwrap();
    m.write("height", "10\n").unwrap();
    m.write("volumes/2/readonly", "1\n").unwrap();
    // where a refused volume could appear: a directory of our own
    let vols = scratch.join("vols");
    std::fs::create_dir(&vols).unwrap();
    // symlinks: into the mount, to a volume, and to nothing
    let into_mount = scratch.join("into-mount");
    std::os::unix::fs::symlink(&m.mnt, &into_mount).unwrap();
    let link_to_vol = vols.join("link-to-v2");
    std::os::unix::fs::symlink(&v2, &link_to_vol).unwrap();
    let dangling = vols.join("dangling");
    std::os::unix::fs::symlink(vols.join("nowhere.vol"), &dangling).unwrap();
    // a file system that takes sparse files of any size (tmpfs, like XFS,
    // goes to 8 EiB): a volume size the daemon cannot track must be refused
    // before the file is made
    let huge_fs = scratch.join("tmpfs");
    std::fs::create_dir(&huge_fs).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&huge_fs)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "mount a small tmpfs (the tests run as root)"
    );
    let _unmount_tmpfs = Unmount(&huge_fs);
    let extra_dirs = vec![
        scratch.clone(),
        vols.clone(),
        m.data.clone(),
        huge_fs.clone(),
    ];
    let extra: Vec<&Path> = extra_dirs.iter().map(PathBuf::as_path).collect();
    let before = state(&m, &extra);

    let mut h = Hostile {
        m: &m,
        tried: 0,
        problems: Vec::new(),
        groups: Vec::new(),
        before,
        extra_dirs,
        known: vec![(a, 1), (b, 2), (c, 3), (d, 4)],
    };
    let mut rng = Rng::new(0x05ec_70f5);
    let n_random = random_count();
    let control_files = [
        "volumes/add",
        "volumes/1/slots",
        "volumes/1/readonly",
        "volumes/1/remove",
        "volumes/1/check",
        "volumes/2/slots",
        "volumes/2/readonly",
        "volumes/2/remove",
        "volumes/2/check",
        "height",
        "status",
    ];

    // ---- every control file: garbage of every kind is EINVAL
    let generic: Vec<Vec<u8>> = vec![
        b"x".to_vec(), // a partial line: applied, and refused, at close
        b"-1".to_vec(),
        b"-1\n".to_vec(),
        b"-0\n".to_vec(),
        b"-9223372036854775808\n".to_vec(),
        "\u{2212}1\n".into(), // a Unicode minus
        b"18446744073709551616\n".to_vec(),
        b"340282366920938463463374607431768211456\n".to_vec(),
        b"99999999999999999999999999999999999999999999999999\n".to_vec(),
        b"1 1\n".to_vec(),
        b"1e3\n".to_vec(),
        b"0x1\n".to_vec(),
        b"\xff\n".to_vec(),
        b"1\xff\n".to_vec(),
        b"\xc3\x28\n".to_vec(),
        b"\xed\xa0\x80\n".to_vec(),
        b"\xf0\x9f\x92\n".to_vec(), // a truncated UTF-8 sequence
        b"1\x00\n".to_vec(),
        b"\x001\n".to_vec(),
        "\u{ff11}\n".into(), // a fullwidth digit one
        b"yes\n".to_vec(),
        b"dismiss\n".to_vec(),
        b"../../etc/passwd 8\n".to_vec(),
    ];
    for rel in control_files.iter().copied().chain(["copies"]) {
        for data in &generic {
            // the one line of these that /copies takes
            if rel == "copies" && data == b"1 1\n" {
                continue;
            }
            h.ctl(rel, data, libc::EINVAL);
        }
        // huge input: refused at the write, nothing applied
        h.ctl(rel, &vec![b'9'; MIB], libc::EINVAL);
        h.ctl(rel, &b"x\n".repeat(MIB / 2), libc::EINVAL);
        let big = rng.bytes(MIB);
        h.ctl(rel, &big, libc::EINVAL);
        for _ in 0..n_random {
            let data = random_control(&mut rng);
            h.ctl(rel, &data, libc::EINVAL);
        }
    }
    h.group("control files, garbage");

    // ---- /volumes/add: paths and sizes
    let s = scratch.display().to_string();
    let mnt = m.mnt.display().to_string();
    let v = vols.display().to_string();
    let data_dir = m.data.display().to_string();
    let adds: Vec<(String, i32)> = vec![
        // relative paths and ".."
        ("x.vol 8".into(), libc::EINVAL),
        ("./x.vol 8".into(), libc::EINVAL),
        ("../x.vol 8".into(), libc::EINVAL),
        ("~/x.vol 8".into(), libc::EINVAL),
        (format!("{v}/../vols/x.vol 8"), libc::EINVAL),
        (format!("{v}/sub/../x.vol 8"), libc::EINVAL),
        (format!("{v}/.. 8"), libc::EINVAL),
        // inside the mount, directly or through a symlink
        (format!("{mnt}/x.vol 8"), libc::EINVAL),
        (format!("{mnt}/sectors/x.vol 8"), libc::EINVAL),
        (format!("{}/x.vol 8", into_mount.display()), libc::EINVAL),
        // over something that exists: never clobbered
        (format!("{} 8", v2.display()), libc::EEXIST),
        (format!("{data_dir}/sectorfs.db 8"), libc::EEXIST),
        (format!("{data_dir}/volumes/default.vol 8"), libc::EEXIST),
        (format!("{s}/daemon.log 8"), libc::EEXIST),
        (format!("{v} 8"), libc::EEXIST),
        ("/ 8".into(), libc::EEXIST),
        ("/dev/null 8".into(), libc::EEXIST),
        (format!("{} 8", link_to_vol.display()), libc::EEXIST),
        (format!("{} 8", dangling.display()), libc::EEXIST),
        // a directory that does not exist
        (format!("{v}/no/such/dir/x.vol 8"), libc::ENOENT),
        ("/sectorfs-no-such-dir/x.vol 8".into(), libc::ENOENT),
        // no path, no size, bad sizes
        ("8".into(), libc::EINVAL),
        (format!("{v}/x.vol"), libc::EINVAL),
        (format!("{v}/x.vol 0"), libc::EINVAL),
        (format!("{v}/x.vol 0MiB"), libc::EINVAL),
        (format!("{v}/x.vol -8"), libc::EINVAL),
        (format!("{v}/x.vol 3MiB"), libc::EINVAL),
        (format!("{v}/x.vol 4194303B"), libc::EINVAL),
        (format!("{v}/x.vol 1.5GiB"), libc::EINVAL),
        (format!("{v}/x.vol 8XB"), libc::EINVAL),
        (format!("{v}/x.vol 1EiB"), libc::EINVAL),
        (format!("{v}/x.vol 8 MiB extra"), libc::EINVAL),
        (format!("{v}/x.vol 18446744073709551615"), libc::EINVAL),
        (format!("{v}/x.vol {}", MAX_SLOTS + 1), libc::EINVAL),
        (
            format!("{v}/x.vol 99999999999999999999999999999"),
            libc::EINVAL,
        ),
        (format!("{v}/x.vol 99999999999PiB"), libc::EINVAL),
        // sizes the daemon cannot track, on a file system that would take them
        (
            format!("{}/huge.vol {}", huge_fs.display(), MAX_SLOTS + 1),
            libc::EINVAL,
        ),
        (
            format!("{}/huge.vol 2199023255551", huge_fs.display()),
            libc::EINVAL,
        ),
        (format!("{}/huge.vol 8PiB", huge_fs.display()), libc::EINVAL),
        (
            format!("{}/huge.vol 8000PB", huge_fs.display()),
            libc::EINVAL,
        ),
        // a path split by a newline: its first line alone is refused
        (format!("{v}/x\n.vol 8"), libc::EINVAL),
        // control characters in the path
        (format!("{v}/x\0.vol 8"), libc::EINVAL),
    ];
    for (line, want) in &adds {
        for ending in ["\n", ""] {
            h.ctl("volumes/add", format!("{line}{ending}").as_bytes(), *want);
        }
    }
    // a non-UTF-8 path
    let mut raw = vols.as_os_str().as_bytes().to_vec();
    raw.extend_from_slice(b"/\xff\xfe.vol 8\n");
    h.ctl("volumes/add", &raw, libc::EINVAL);
    h.group("/volumes/add paths and sizes");

    // ---- per-volume files: values that are refused
    for id in [1, 2] {
        let f = |n: &str| format!("volumes/{id}/{n}");
        for bad in [
            "abc",
            "8.0",
            "1.5GiB",
            "3MiB",
            "0",
            "0MiB",
            "8 8",
            "18446744073709551615",
            "cancel now",
            "CANCEL",
        ] {
            h.ctl(&f("slots"), format!("{bad}\n").as_bytes(), libc::EINVAL);
        }
        for too_many in [MAX_SLOTS + 1, 2199023255551, 1 << 40] {
            let line = format!("{too_many}\n");
            h.ctl(&f("slots"), line.as_bytes(), libc::EINVAL);
        }
        for bad in ["2", "yes", "true", "01", "on", "1.0", "cancel"] {
            h.ctl(&f("readonly"), format!("{bad}\n").as_bytes(), libc::EINVAL);
        }
        for bad in ["0", "2", "yes", "forced", "FORCE", "1x", "true", "force 1"] {
            h.ctl(&f("remove"), format!("{bad}\n").as_bytes(), libc::EINVAL);
        }
        for bad in ["0", "2", "yes", "force", "true", "1 1"] {
            h.ctl(&f("check"), format!("{bad}\n").as_bytes(), libc::EINVAL);
        }
        // cancel with no job running: nothing to cancel
        for file in ["slots", "remove", "check"] {
            h.ctl(&f(file), b"cancel\n", libc::ENOENT);
        }
    }
    // jobs that cannot succeed from the start are refused at once: volume 1's
    // sectors have nowhere to go (volume 2 is read-only)
    h.ctl("volumes/1/slots", b"1\n", libc::ENOSPC);
    h.ctl("volumes/1/remove", b"1\n", libc::ENOSPC);
    // a volume that does not exist
    for rel in [
        "volumes/9/slots",
        "volumes/01/slots",
        "volumes/-1/readonly",
        "volumes/4294967297/remove",
        "volumes/1/nofile",
        "volumes/add/x",
    ] {
        let p = m.path(rel);
        let want = if rel.starts_with("volumes/add/") {
            libc::ENOTDIR
        } else {
            libc::ENOENT
        };
        h.expect(&format!("write /{rel}"), want, false, || {
            write_ctl(&p, b"1\n")
        });
    }
    h.group("per-volume files");

    // ---- /height (now 10) and /status
    for bad in [
        "5",
        "0",
        "9",
        "+11",
        "11.0",
        "11 12",
        "0x10",
        "9223372036854775808",
        "18446744073709551615",
    ] {
        h.ctl("height", format!("{bad}\n").as_bytes(), libc::EINVAL);
    }
    for bad in [
        "dismiss -1",
        "dismiss abc",
        "dismiss 99999999999999999999999",
        "dismiss all now",
        "dismiss 1 2",
        "undismiss all",
        "DISMISS ALL",
        "dismiss\tall\tnow",
    ] {
        h.ctl("status", format!("{bad}\n").as_bytes(), libc::EINVAL);
    }
    h.ctl("status", b"dismiss 987654321\n", libc::ENOENT);
    // ---- /copies (1 1): <min> or <min> <max>, max >= min >= 1
    for bad in [
        "0",
        "0 0",
        "0 1",
        "3 2",
        "1 2 3",
        "+2",
        "2.0",
        "2,3",
        "1 -1",
        "cancel now",
        "4294967296",
        "1 4294967296",
    ] {
        h.ctl("copies", format!("{bad}\n").as_bytes(), libc::EINVAL);
    }
    // no repair runs to cancel
    h.ctl("copies", b"cancel\n", libc::ENOENT);
    // generated files cannot be written at all
    for rel in [
        "status.json",
        "metrics",
        "volumes/1/path",
        "volumes/1/uuid",
        "volumes/1/used",
        "volumes/1/state",
        "volumes/1/stats",
    ] {
        h.ctl(rel, b"1\n", libc::EACCES);
    }
    h.group("/height and /status");

    // ---- a contract's content
    let unknown = unstored_root(99);
    let (ra, rb) = (a.to_string(), b.to_string());
    let contents: Vec<(Vec<u8>, i32)> = vec![
        (ra[..40].into(), libc::EINVAL),
        (format!("{ra}\n{}", &rb[..63]).into(), libc::EINVAL),
        (ra.to_uppercase().into(), libc::EINVAL),
        (format!("{ra}\r\n").into(), libc::EINVAL),
        (format!(" {ra}\n").into(), libc::EINVAL),
        (format!("{ra} \n").into(), libc::EINVAL),
        (format!("{ra}\n\n").into(), libc::EINVAL),
        (format!("{ra}\n\n{rb}\n").into(), libc::EINVAL),
        (b"\n".to_vec(), libc::EINVAL),
        (b"\n\n".to_vec(), libc::EINVAL),
        (format!("0x{}\n", &ra[2..]).into(), libc::EINVAL),
        (format!("{ra}0\n").into(), libc::EINVAL),
        (format!("{ra},{rb}\n").into(), libc::EINVAL),
        (format!("{ra} {rb}\n").into(), libc::EINVAL),
        (format!("{}g\n", &ra[..63]).into(), libc::EINVAL),
        (
            [&ra.as_bytes()[..10], b"\xff", &ra.as_bytes()[11..], b"\n"].concat(),
            libc::EINVAL,
        ),
        (b"\xff\xfe\n".to_vec(), libc::EINVAL),
        (format!("{ra}\n\0").into(), libc::EINVAL),
        (format!("-{ra}\n").into(), libc::EINVAL),
        // well-formed roots that are not stored
        (format!("{unknown}\n").into(), libc::ENOENT),
        (format!("{ra}\n{unknown}\n{rb}\n").into(), libc::ENOENT),
        // huge
        (vec![b'a'; MIB], libc::EINVAL),
        (
            format!("{unknown}\n").repeat(MIB / 65 + 1).into(),
            libc::ENOENT,
        ),
        (rng.bytes(MIB), libc::EINVAL),
    ];
    for name in ["c1", "c-2"] {
        for (data, want) in &contents {
            h.contract(name, Edit::Replace, data, *want);
            h.contract(name, Edit::Append, data, *want);
        }
        for _ in 0..n_random {
            let len = 1 + rng.below(8192) as usize;
            let mut data = rng.bytes(len);
            data[0] = b'#';
            h.contract(name, Edit::Replace, &data, libc::EINVAL);
            h.contract(name, Edit::Append, &data, libc::EINVAL);
        }
        // neither replace nor append: no revision is meant
        h.contract(
            name,
            Edit::Plain,
            format!("{ra}\n").as_bytes(),
            libc::EINVAL,
        );
        // written past what any list could be
        let p = m.path(&format!("contracts/{name}"));
        for off in [64 << 20, 1 << 40] {
            let p = p.clone();
            let line = format!("{ra}\n");
            h.expect(
                &format!("pwrite /contracts/{name} at {off}"),
                libc::EFBIG,
                false,
                move || {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .truncate(true)
                        .open(&p)?;
                    let r = f.write_all_at(line.as_bytes(), off);
                    drop(f);
                    r
                },
            );
        }
        // truncated to anything but empty
        for len in [1u64, 65, 130, 1 << 30] {
            let p = p.clone();
            h.expect(
                &format!("truncate /contracts/{name} to {len}"),
                libc::EPERM,
                true,
                move || nix::unistd::truncate(&p, len as i64).map_err(std::io::Error::from),
            );
        }
    }
    h.group("contract content");

    // ---- names: /sectors
    let sectors = m.path("sectors");
    let rs = a.to_string();
    let mut bad_roots: Vec<Vec<u8>> = vec![
        b"nothex".to_vec(),
        rs.to_uppercase().into(),
        rs[..63].into(),
        format!("{rs}0").into(),
        format!(" {rs}").into(),
        format!("{rs} ").into(),
        format!("{rs}\n").into(),
        "g".repeat(64).into(),
        format!("{}G", &rs[..63]).into(),
        format!("{rs}.tmp").into(),
        "a".repeat(255).into(),
        "0".repeat(128).into(),
        [&rs.as_bytes()[..32], b"\xff\xfe", &rs.as_bytes()[34..]].concat(),
        "\u{0430}".repeat(32).into(), // Cyrillic a: 64 bytes, not hex
        b"-".to_vec(),
        b"*".to_vec(),
    ];
    for _ in 0..n_random * 4 {
        let mut name = random_name(&mut rng, |_| false);
        // a name starting with a dot is a staging file's (tools::)
        if name[0] == b'.' {
            name[0] = b'x';
        }
        bad_roots.push(name);
    }
    for name in &bad_roots {
        let p = os_path(&sectors, name);
        let what = format!("/sectors/{}", shown(name));
        h.expect(&format!("create {what}"), libc::EINVAL, true, || create(&p));
        h.expect(&format!("stat {what}"), libc::ENOENT, false, || {
            std::fs::metadata(&p).map(|_| ())
        });
        h.expect(&format!("rm {what}"), libc::ENOENT, false, || {
            std::fs::remove_file(&p)
        });
    }
    // FUSE passes long names on (past NAME_MAX): they are the daemon's
    // EINVAL; a path past PATH_MAX is the kernel's ENAMETOOLONG
    for (name, want, logged) in [
        (".".to_string(), libc::EISDIR, false),
        ("..".to_string(), libc::EISDIR, false),
        ("a".repeat(256), libc::EINVAL, true),
        ("a".repeat(1024), libc::EINVAL, true),
        ("a".repeat(4096), libc::ENAMETOOLONG, false),
    ] {
        let p = sectors.join(&name);
        h.expect(&format!("create /sectors/{name}"), want, logged, || {
            create(&p)
        });
    }
    // a root that is not stored, and sectors held by other references
    let p = m.sector_path(&unknown);
    h.expect("rm an unstored root", libc::ENOENT, false, || {
        std::fs::remove_file(&p)
    });
    for r in [&c, &d] {
        let p = m.sector_path(r);
        h.expect(&format!("rm {r}, not pinned"), libc::EBUSY, true, || {
            std::fs::remove_file(&p)
        });
    }
    // stored data is not modified in place
    let pa = m.sector_path(&a);
    for (what, opts) in [
        ("write", std::fs::OpenOptions::new().write(true).clone()),
        (
            "read-write",
            std::fs::OpenOptions::new().read(true).write(true).clone(),
        ),
        ("append", std::fs::OpenOptions::new().append(true).clone()),
    ] {
        h.expect(
            &format!("open a sector for {what}"),
            libc::EPERM,
            true,
            || opts.open(&pa).map(|_| ()),
        );
    }
    for len in [0i64, 1, SECTOR_SIZE as i64 + 1] {
        h.expect(
            &format!("truncate a sector to {len}"),
            libc::EPERM,
            true,
            || nix::unistd::truncate(&pa, len).map_err(std::io::Error::from),
        );
    }
    // rewrites with bad data store nothing
    for (what, data, want) in [
        ("wrong data", sector(5), libc::EBADMSG),
        (
            "short data",
            sector(1)[..SECTOR_SIZE - 1].to_vec(),
            libc::EINVAL,
        ),
        ("no data", Vec::new(), libc::EINVAL),
    ] {
        h.expect(&format!("rewrite a sector with {what}"), want, true, || {
            write_file(&pa, &data)
        });
    }
    h.expect("a write past 4 MiB", libc::EFBIG, true, || {
        let f = std::fs::File::create(m.sector_path(&unknown))?;
        let r = f.write_all_at(b"x", SECTOR_SIZE as u64);
        drop(f);
        r
    });
    h.expect("a write at 2^62", libc::EFBIG, false, || {
        let f = std::fs::File::create(m.sector_path(&unknown))?;
        let r = f.write_all_at(b"x", 1 << 62);
        drop(f);
        r
    });
    for (what, want, op) in [
        (
            "mkdir in /sectors",
            libc::EPERM,
            Box::new(|| std::fs::create_dir(sectors.join("d"))) as Op,
        ),
        (
            "rmdir /sectors",
            libc::EPERM,
            Box::new(|| std::fs::remove_dir(&sectors)),
        ),
        (
            "symlink in /sectors",
            libc::EPERM,
            Box::new(|| symlink(&rs, &sectors.join(unknown.to_string()))),
        ),
        (
            "mkfifo in /sectors",
            libc::EPERM,
            Box::new(|| mkfifo(&sectors.join(unknown.to_string()))),
        ),
        (
            "rename a sector",
            libc::EPERM,
            Box::new(|| std::fs::rename(&pa, sectors.join(unknown.to_string()))),
        ),
        (
            "rename a sector into /contracts",
            libc::EXDEV,
            Box::new(|| std::fs::rename(&pa, m.path("contracts/x"))),
        ),
        (
            "link /height into /sectors",
            libc::EPERM,
            Box::new(|| std::fs::hard_link(m.path("height"), sectors.join(unknown.to_string()))),
        ),
        (
            "link a sector under another root",
            libc::EINVAL,
            Box::new(|| std::fs::hard_link(&pa, sectors.join(unknown.to_string()))),
        ),
        (
            "link a sector under a bad name",
            libc::EINVAL,
            Box::new(|| std::fs::hard_link(&pa, sectors.join("x"))),
        ),
        (
            "set an attribute",
            libc::ENOTSUP,
            Box::new(|| setxattr(&pa, "user.sectorfs.refs", b"pin=9")),
        ),
        (
            "set another attribute",
            libc::ENOTSUP,
            Box::new(|| setxattr(&pa, "user.x", b"1")),
        ),
    ] {
        h.expect(what, want, true, op);
    }
    h.group("/sectors names and operations");

    // ---- names: /contracts
    let contracts = m.path("contracts");
    let contract_char = |b: u8| b.is_ascii_alphanumeric() || b"_.-".contains(&b);
    let mut bad_ids: Vec<Vec<u8>> = vec![
        b"a b".to_vec(),
        b"a:b".to_vec(),
        b"a*".to_vec(),
        b"a\\b".to_vec(),
        b"a\tb".to_vec(),
        b"a\nb".to_vec(),
        b"a%20b".to_vec(),
        b"a+b".to_vec(),
        b"a~".to_vec(),
        b" ".to_vec(),
        "\u{e9}t\u{e9}".into(),
        b"\xff\xfe".to_vec(),
        b"c1\xff".to_vec(),
        "k".repeat(129).into(),
        "k".repeat(200).into(),
        "k".repeat(255).into(),
    ];
    for _ in 0..n_random * 4 {
        bad_ids.push(random_name(&mut rng, contract_char));
    }
    for name in &bad_ids {
        let p = os_path(&contracts, name);
        let what = format!("/contracts/{}", shown(name));
        h.expect(&format!("create {what}"), libc::EINVAL, true, || create(&p));
        h.expect(&format!("rm {what}"), libc::ENOENT, false, || {
            std::fs::remove_file(&p)
        });
        let from = contracts.join("c1");
        h.expect(&format!("rename c1 to {what}"), libc::EINVAL, true, || {
            std::fs::rename(&from, &p)
        });
    }
    for (name, want, logged) in [
        (".".to_string(), libc::EISDIR, false),
        ("..".to_string(), libc::EISDIR, false),
        ("k".repeat(256), libc::EINVAL, true),
        ("k".repeat(1024), libc::EINVAL, true),
        ("k".repeat(4096), libc::ENAMETOOLONG, false),
    ] {
        let p = contracts.join(&name);
        h.expect(&format!("create /contracts/{name}"), want, logged, || {
            create(&p)
        });
    }
    let c1 = contracts.join("c1");
    for (what, want, op) in [
        (
            "rename a contract that does not exist",
            libc::ENOENT,
            Box::new(|| std::fs::rename(contracts.join("nope"), contracts.join("x"))) as Op,
        ),
        (
            "rename a contract out of /contracts",
            libc::EXDEV,
            Box::new(|| std::fs::rename(&c1, m.path("temp/50/x"))),
        ),
        (
            "exchange two contracts",
            libc::EINVAL,
            Box::new(|| renameat2(&c1, &contracts.join("c-2"), libc::RENAME_EXCHANGE)),
        ),
        (
            "mkdir in /contracts",
            libc::EPERM,
            Box::new(|| std::fs::create_dir(contracts.join("d"))),
        ),
        (
            "symlink in /contracts",
            libc::EPERM,
            Box::new(|| symlink("c1", &contracts.join("k"))),
        ),
        (
            "mkfifo in /contracts",
            libc::EPERM,
            Box::new(|| mkfifo(&contracts.join("k"))),
        ),
        (
            "link a sector into /contracts",
            libc::EPERM,
            Box::new(|| std::fs::hard_link(&pa, contracts.join(a.to_string()))),
        ),
        (
            "link a contract",
            libc::EPERM,
            Box::new(|| std::fs::hard_link(&c1, contracts.join("k"))),
        ),
    ] {
        h.expect(what, want, true, op);
    }
    // the kernel sees the target exists
    let p = contracts.join("c-2");
    h.expect(
        "rename onto an existing contract without replacing",
        libc::EEXIST,
        false,
        || renameat2(&c1, &p, libc::RENAME_NOREPLACE),
    );
    h.group("/contracts names and operations");

    // ---- names: /temp (height 10; /temp/50 and /temp/60 exist)
    let temp = m.path("temp");
    let mut bad_heights: Vec<(Vec<u8>, i32)> = [
        "-1",
        "abc",
        "1e3",
        "0x10",
        "+11",
        "011",
        "0011",
        " 11",
        "11 ",
        "11.0",
        "18446744073709551616",
        "9223372036854775808",
        TEMP_HEIGHT_TOO_BIG,
        "99999999999999999999999999999999",
        "0",
        "5",
        "10",
        "\u{ff11}\u{ff11}",
    ]
    .iter()
    .map(|n| (n.as_bytes().to_vec(), libc::EINVAL))
    .collect();
    bad_heights.push((b"1\xff".to_vec(), libc::EINVAL));
    bad_heights.push((b"50".to_vec(), libc::EEXIST));
    for _ in 0..n_random * 2 {
        let name = random_name(&mut rng, |b| b.is_ascii_digit());
        bad_heights.push((name, libc::EINVAL));
    }
    for (name, want) in &bad_heights {
        let p = os_path(&temp, name);
        // an existing directory is the kernel's EEXIST
        let logged = *want != libc::EEXIST;
        h.expect(
            &format!("mkdir /temp/{}", shown(name)),
            *want,
            logged,
            || std::fs::create_dir(&p),
        );
    }
    // sectors under heights that are not valid directories
    let da = a.to_string();
    for (dir, want) in [
        ("abc", libc::ENOENT),
        ("99", libc::ENOENT),
        ("5", libc::EINVAL),
        ("10", libc::EINVAL),
        (TEMP_HEIGHT_TOO_BIG, libc::ENOENT),
    ] {
        let p = temp.join(dir).join(&da);
        h.expect(&format!("create /temp/{dir}/<root>"), want, false, || {
            write_file(&p, &sector(1))
        });
        let p = temp.join(dir).join(&da);
        h.expect(&format!("link into /temp/{dir}"), want, false, || {
            std::fs::hard_link(&pa, &p)
        });
    }
    // bad roots under a valid height
    let t50 = temp.join("50");
    for name in bad_roots.iter().take(24) {
        let p = os_path(&t50, name);
        h.expect(
            &format!("create /temp/50/{}", shown(name)),
            libc::EINVAL,
            true,
            || create(&p),
        );
    }
    for (what, want, logged, op) in [
        (
            "link a sector into /temp/50 under another root",
            libc::EINVAL,
            true,
            Box::new(|| std::fs::hard_link(&pa, t50.join(unknown.to_string()))) as Op,
        ),
        (
            "link a sector into /temp/60 again",
            libc::EEXIST,
            false,
            Box::new(|| std::fs::hard_link(&pa, temp.join("60").join(&da))),
        ),
        (
            "rm a temp entry that does not exist",
            libc::ENOENT,
            false,
            Box::new(|| std::fs::remove_file(t50.join(&da))),
        ),
        (
            "rmdir a temp dir with entries",
            libc::ENOTEMPTY,
            true,
            Box::new(|| std::fs::remove_dir(&t50)),
        ),
        (
            "rmdir a temp dir that does not exist",
            libc::ENOENT,
            false,
            Box::new(|| std::fs::remove_dir(temp.join("77"))),
        ),
        (
            "create a file in /temp",
            libc::EPERM,
            true,
            Box::new(|| create(&temp.join("x"))),
        ),
        (
            "mkdir inside a temp dir",
            libc::EPERM,
            true,
            Box::new(|| std::fs::create_dir(t50.join("d"))),
        ),
        (
            "symlink in /temp",
            libc::EPERM,
            true,
            Box::new(|| symlink("50", &temp.join("70"))),
        ),
        (
            "symlink in a temp dir",
            libc::EPERM,
            true,
            Box::new(|| symlink(&da, &t50.join(&da))),
        ),
        (
            "rename a temp dir",
            libc::EPERM,
            true,
            Box::new(|| std::fs::rename(&t50, temp.join("70"))),
        ),
    ] {
        h.expect(what, want, logged, op);
    }
    h.group("/temp names and operations");

    // ---- the rest of the tree
    let vdir = m.path("volumes");
    for (what, want, logged, op) in [
        (
            "create a file in /volumes",
            libc::EPERM,
            true,
            Box::new(|| create(&vdir.join("3"))) as Op,
        ),
        (
            "mkdir in /volumes",
            libc::EPERM,
            true,
            Box::new(|| std::fs::create_dir(vdir.join("3"))),
        ),
        (
            "create a file in a volume dir",
            libc::EPERM,
            true,
            Box::new(|| create(&vdir.join("1/extra"))),
        ),
        (
            "rm a volume file",
            libc::EPERM,
            true,
            Box::new(|| std::fs::remove_file(vdir.join("1/slots"))),
        ),
        (
            "rmdir a volume",
            libc::EPERM,
            true,
            Box::new(|| std::fs::remove_dir(vdir.join("2"))),
        ),
        (
            "rm /height",
            libc::EPERM,
            true,
            Box::new(|| std::fs::remove_file(m.path("height"))),
        ),
        (
            "create a file at the root",
            libc::EPERM,
            true,
            Box::new(|| create(&m.path("extra"))),
        ),
        (
            "mkdir at the root",
            libc::EPERM,
            true,
            Box::new(|| std::fs::create_dir(m.path("extra"))),
        ),
        (
            "rename /height",
            libc::EPERM,
            true,
            Box::new(|| std::fs::rename(m.path("height"), m.path("h2"))),
        ),
        (
            "symlink at the root",
            libc::EPERM,
            true,
            Box::new(|| symlink("height", &m.path("h2"))),
        ),
        (
            "chmod /height",
            libc::EPERM,
            true,
            Box::new(|| {
                std::fs::set_permissions(
                    m.path("height"),
                    std::os::unix::fs::PermissionsExt::from_mode(0o666),
                )
            }),
        ),
        (
            "open /volumes/add as a directory",
            libc::ENOTDIR,
            false,
            Box::new(|| std::fs::read_dir(vdir.join("add")).map(|_| ())),
        ),
        (
            "write to a directory",
            libc::EISDIR,
            false,
            Box::new(|| write_ctl(&vdir.join("1"), b"1\n")),
        ),
    ] {
        h.expect(what, want, logged, op);
    }
    for name in [
        "01",
        "-1",
        "+1",
        "1.0",
        "4294967296",
        "4294967297",
        "99",
        " 1",
    ] {
        let p = vdir.join(name);
        h.expect(
            &format!("stat /volumes/{name}"),
            libc::ENOENT,
            false,
            || std::fs::metadata(&p).map(|_| ()),
        );
    }
    h.group("other directories");

    // still the same after a remount (no kernel cache) and to the offline check
    let total = h.tried;
    let groups = std::mem::take(&mut h.groups);
    let before = h.before.clone();
    let known = h.known.clone();
    drop(h);
    m.remount();
    let extra: Vec<&Path> = [&scratch, &vols, &m.data, &huge_fs]
        .into_iter()
        .map(PathBuf::as_path)
        .collect();
    assert_same(&before, &state(&m, &extra), "remount");
    for (root, seed) in &known {
        assert!(
            std::fs::read(m.sector_path(root)).unwrap() == sector(*seed),
            "sector {root} differs after the remount"
        );
    }
    m.unmount();
    super::harness::offline_check(&m, "after hostile input");
    let summary: Vec<String> = groups.iter().map(|(g, n)| format!("{g}: {n}")).collect();
    super::common::reliability::record(&format!(
        "hostile: {total} hostile inputs tried, all refused with the expected errno, nothing \
         changed ({})",
        summary.join("; ")
    ));
}
