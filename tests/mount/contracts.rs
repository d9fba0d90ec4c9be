//! `/contracts`: revisions at close (replace, append, rename), every errno,
//! and that a refused revision leaves the list exactly as it was.

use std::io::Write;
use std::os::unix::fs::MetadataExt;

use super::harness::{Mount, close, errno, sector, unstored_root, write_file, write_with};
use sectorfs::merkle::Root;

fn list(roots: &[&Root]) -> String {
    roots.iter().map(|r| format!("{r}\n")).collect()
}

fn append() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.append(true);
    o
}

fn replace() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).truncate(true);
    o
}

#[test]
fn replace_append_and_read() {
    let m = Mount::start(&[]);
    let (a, b, c) = (
        m.put(&sector(100)),
        m.put(&sector(101)),
        m.put(&sector(102)),
    );
    let c1 = m.path("contracts/c1");
    write_file(&c1, list(&[&a, &b]).as_bytes()).unwrap();
    assert_eq!(m.read("contracts/c1"), list(&[&a, &b]));
    assert_eq!(std::fs::metadata(&c1).unwrap().len(), 130);
    // O_APPEND appends, as `>>` does
    m.sh_ok(&format!("echo {c} >> contracts/c1"));
    assert_eq!(m.read("contracts/c1"), list(&[&a, &b, &c]));
    assert_eq!(std::fs::metadata(&c1).unwrap().len(), 195);
    write_with(&append(), &c1, list(&[&a]).as_bytes()).unwrap();
    assert_eq!(m.read("contracts/c1"), list(&[&a, &b, &c, &a]));
    // O_TRUNC replaces, as `>` does
    m.sh_ok(&format!("echo {b} > contracts/c1"));
    assert_eq!(m.read("contracts/c1"), list(&[&b]));
    // the same root twice in one list is two entries
    m.sh_ok(&format!("printf '%s\\n' {a} {a} > contracts/c2"));
    assert_eq!(m.read("contracts/c2"), list(&[&a, &a]));
    assert_eq!(
        std::fs::metadata(m.path("contracts/c2")).unwrap().len(),
        130
    );
    assert_eq!(m.nlink(&a), 3);
    assert_eq!(m.refs(&a), "pin=1 contracts=2 temp=0");
    assert_eq!(m.nlink(&b), 2);
    assert_eq!(m.nlink(&c), 1);
    // a last line without its newline is accepted
    m.sh_ok(&format!("printf '%s' {c} > contracts/c3"));
    assert_eq!(m.read("contracts/c3"), list(&[&c]));
    let out = m.sh_ok("ls contracts");
    assert_eq!(out, "c1\nc2\nc3\n");
    // truncating empties the list at once
    m.sh_ok("truncate -s 0 contracts/c2");
    assert_eq!(m.read("contracts/c2"), "");
    assert_eq!(std::fs::metadata(m.path("contracts/c2")).unwrap().len(), 0);
    assert_eq!(m.nlink(&a), 1);
    // so does an O_TRUNC open closed without data, by the time the close
    // returns
    m.sh_ok(&format!("echo {c} > contracts/c2"));
    assert_eq!(m.read("contracts/c2"), list(&[&c]));
    m.sh_ok(": > contracts/c2");
    assert_eq!(m.read("contracts/c2"), "");
    assert_eq!(m.refs(&c), "pin=1 contracts=1 temp=0");
    // writes in several pieces are one revision at close
    let mut f = replace().open(&c1).unwrap();
    for r in [&a, &b, &c] {
        f.write_all(r.to_string().as_bytes()).unwrap();
        f.write_all(b"\n").unwrap();
    }
    close(f).unwrap();
    assert_eq!(m.read("contracts/c1"), list(&[&a, &b, &c]));
    // cp and cat work on contracts like on any file
    m.sh_ok("cp contracts/c1 $S/c1 && cp $S/c1 contracts/c4 && cmp contracts/c1 contracts/c4");
    assert_eq!(m.nlink(&a), 3);
    assert_eq!(m.sh_ok("cat contracts/c4 | wc -l").trim(), "3");
}

#[test]
fn refused_revisions_change_nothing() {
    let m = Mount::start(&[]);
    let (a, b) = (m.put(&sector(110)), m.put(&sector(111)));
    let path = m.path("contracts/c");
    write_file(&path, list(&[&a, &b, &a]).as_bytes()).unwrap();
    let before = std::fs::read(&path).unwrap();
    let unknown = unstored_root(112);
    let unchanged = |what: &str| {
        assert_eq!(std::fs::read(&path).unwrap(), before, "{what}");
        assert_eq!(m.refs(&a), "pin=1 contracts=2 temp=0", "{what}");
        assert_eq!(m.refs(&b), "pin=1 contracts=1 temp=0", "{what}");
        assert_eq!(m.used(1), 2, "{what}");
    };
    let malformed = [
        "nothex\n".to_string(),
        format!("{}\n", a.to_string().to_uppercase()),
        format!("{a}\nnothex\n"),
        format!("{a} \n"),
        format!("{a}\n\n{b}\n"),
        format!("{}\n", &a.to_string()[..63]),
        format!("{a}{b}\n"),
    ];
    for (i, text) in malformed.iter().enumerate() {
        for (mode, opts) in [("replace", replace()), ("append", append())] {
            let e = write_with(&opts, &path, text.as_bytes()).unwrap_err();
            assert_eq!(errno(&e), libc::EINVAL, "{mode} malformed #{i}");
            unchanged(&format!("{mode} malformed #{i}"));
        }
    }
    // a root that is not stored: ENOENT, even after good lines
    for text in [format!("{unknown}\n"), format!("{a}\n{unknown}\n")] {
        for (mode, opts) in [("replace", replace()), ("append", append())] {
            let e = write_with(&opts, &path, text.as_bytes()).unwrap_err();
            assert_eq!(errno(&e), libc::ENOENT, "{mode} unknown root");
            unchanged(&format!("{mode} unknown root"));
        }
    }
    // and the refusal is in the log at warning level, in words
    assert!(
        m.log().lines().any(|l| l.contains("WARN")
            && l.contains("refused close: revise contract")
            && l.contains("is not stored")),
        "{}",
        m.log()
    );
    // written without O_TRUNC or O_APPEND: refused, unchanged
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let written = f.write_all(list(&[&b]).as_bytes()).and_then(|()| close(f));
    assert!(written.is_err());
    unchanged("plain write");
    // cp of a bad list fails (cp checks close) and changes nothing
    std::fs::write(m.scratch().join("bad"), "garbage\n").unwrap();
    let out = m.sh("cp $S/bad contracts/c");
    assert!(!out.status.success(), "cp of a malformed list succeeded");
    unchanged("cp");
    // a new contract whose first list is refused is not left behind empty
    let out = m.sh("cp $S/bad contracts/fresh");
    assert!(!out.status.success());
    assert!(
        !m.path("contracts/fresh").exists(),
        "cp left an empty contract"
    );
    let e = write_file(
        &m.path("contracts/fresh"),
        format!("{unknown}\n").as_bytes(),
    )
    .unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
    assert!(!m.path("contracts/fresh").exists());
    // a good revision still applies after all that
    write_with(&append(), &path, list(&[&b]).as_bytes()).unwrap();
    assert_eq!(m.read("contracts/c"), list(&[&a, &b, &a, &b]));
}

#[test]
fn contract_ids_are_checked() {
    let m = Mount::start(&[]);
    let a = m.put(&sector(120));
    let long_ok = "x".repeat(128);
    let too_long = "x".repeat(129);
    for name in ["ok", "A-Z_a.z-09", long_ok.as_str()] {
        write_file(
            &m.path(&format!("contracts/{name}")),
            list(&[&a]).as_bytes(),
        )
        .unwrap();
        assert_eq!(m.read(&format!("contracts/{name}")), list(&[&a]), "{name}");
    }
    for name in ["bad name", "a*b", "a:b", "ü", too_long.as_str()] {
        let e = write_file(
            &m.path(&format!("contracts/{name}")),
            list(&[&a]).as_bytes(),
        )
        .unwrap_err();
        assert_eq!(errno(&e), libc::EINVAL, "{name:?}");
    }
    let mut names: Vec<String> = std::fs::read_dir(m.path("contracts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["A-Z_a.z-09", "ok", long_ok.as_str()]);
    // nor can a contract be renamed to a bad id
    let e = std::fs::rename(m.path("contracts/ok"), m.path("contracts/bad name")).unwrap_err();
    assert_eq!(errno(&e), libc::EINVAL);
    assert_eq!(m.read("contracts/ok"), list(&[&a]));
    // and contracts hold only lists: no directories
    assert!(std::fs::create_dir(m.path("contracts/dir")).is_err());
}

#[test]
fn rename_replaces_and_rm_frees() {
    let m = Mount::start(&[]);
    let (a, b, c) = (
        m.put(&sector(130)),
        m.put(&sector(131)),
        m.put(&sector(132)),
    );
    write_file(&m.path("contracts/c1"), list(&[&a, &b]).as_bytes()).unwrap();
    write_file(&m.path("contracts/c2"), list(&[&c, &c]).as_bytes()).unwrap();
    let ino1 = std::fs::metadata(m.path("contracts/c1")).unwrap().ino();
    // b and c are held by contracts only
    m.sh_ok(&format!("rm sectors/{b} sectors/{c}"));
    assert_eq!(m.used(1), 3);
    // mv onto an existing contract: the target's list is replaced at once,
    // and c, which only the old list held, is freed
    m.sh_ok("mv contracts/c1 contracts/c2");
    assert_eq!(m.read("contracts/c2"), list(&[&a, &b]));
    assert!(!m.path("contracts/c1").exists());
    assert_eq!(m.sh_ok("ls contracts"), "c2\n");
    assert!(!m.sector_path(&c).exists());
    assert_eq!(m.used(1), 2);
    assert_eq!(m.refs(&a), "pin=1 contracts=1 temp=0");
    assert_eq!(m.refs(&b), "pin=0 contracts=1 temp=0");
    assert_eq!(
        std::fs::metadata(m.path("contracts/c2")).unwrap().ino(),
        ino1
    );
    // mv to a new name
    m.sh_ok("mv contracts/c2 contracts/c3");
    assert_eq!(m.read("contracts/c3"), list(&[&a, &b]));
    assert_eq!(m.used(1), 2);
    // renaming a missing contract: ENOENT
    let e = std::fs::rename(m.path("contracts/nope"), m.path("contracts/c3")).unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
    assert_eq!(m.read("contracts/c3"), list(&[&a, &b]));
    // rm drops every entry; sectors left without references go with it
    m.sh_ok("rm contracts/c3");
    assert_eq!(m.sh_ok("ls contracts"), "");
    assert!(!m.sector_path(&b).exists());
    assert_eq!(m.listed(), vec![a.to_string()]);
    assert_eq!(m.refs(&a), "pin=1 contracts=0 temp=0");
    assert_eq!(m.used(1), 1);
    let e = std::fs::remove_file(m.path("contracts/c3")).unwrap_err();
    assert_eq!(errno(&e), libc::ENOENT);
}

/// An open contract file follows its contract, as any open file follows
/// its inode: renamed while open, what is written lands under the new name;
/// removed while open, the close fails with ENOENT and nothing is made
/// under the old name.
#[test]
fn an_open_contract_follows_renames_and_removal() {
    let m = Mount::start(&[]);
    let (a, b) = (m.put(&sector(160)), m.put(&sector(161)));
    write_file(&m.path("contracts/r1"), list(&[&a]).as_bytes()).unwrap();
    let mut f = replace().open(m.path("contracts/r1")).unwrap();
    f.write_all(list(&[&b]).as_bytes()).unwrap();
    m.sh_ok("mv contracts/r1 contracts/r2");
    close(f).unwrap();
    assert_eq!(m.read("contracts/r2"), list(&[&b]));
    assert!(!m.path("contracts/r1").exists());
    // an append too
    let mut f = append().open(m.path("contracts/r2")).unwrap();
    m.sh_ok("mv contracts/r2 contracts/r3");
    f.write_all(list(&[&a]).as_bytes()).unwrap();
    close(f).unwrap();
    assert_eq!(m.read("contracts/r3"), list(&[&b, &a]));
    assert!(!m.path("contracts/r2").exists());
    // opened to be emptied, renamed, closed with nothing written: emptied
    // under its new name, as a truncation at open would have left it
    let f = replace().open(m.path("contracts/r3")).unwrap();
    m.sh_ok("mv contracts/r3 contracts/r4");
    close(f).unwrap();
    assert_eq!(m.read("contracts/r4"), "");
    assert_eq!(m.sh_ok("ls contracts"), "r4\n");
    // removed while open, and another contract made meanwhile (the newest,
    // so its id would be the one freed, were ids given twice): the close
    // fails, nothing is made, and the other contract is untouched
    write_file(&m.path("contracts/r5"), list(&[&a]).as_bytes()).unwrap();
    let mut f = replace().open(m.path("contracts/r5")).unwrap();
    f.write_all(list(&[&b]).as_bytes()).unwrap();
    m.sh_ok("rm contracts/r5");
    write_file(&m.path("contracts/r6"), list(&[&a]).as_bytes()).unwrap();
    assert_eq!(errno(&close(f).unwrap_err()), libc::ENOENT);
    assert!(!m.path("contracts/r5").exists());
    assert_eq!(m.read("contracts/r6"), list(&[&a]));
    assert_eq!(m.refs(&b), "pin=1 contracts=0 temp=0");
}

/// A process forked while a contract is being written closes its copy of
/// the fd at exec, which the file system sees as a flush. That flush must
/// not apply a half-written list: a root dropped from it for a moment would
/// be freed.
#[test]
fn a_forked_process_closing_its_copy_does_not_apply_half_a_list() {
    let m = Mount::start(&[]);
    let (a, c) = (m.put(&sector(140)), m.put(&sector(141)));
    let path = m.path("contracts/k");
    write_file(&path, list(&[&a, &c]).as_bytes()).unwrap();
    m.sh_ok(&format!("rm sectors/{c}"));
    assert_eq!(m.refs(&c), "pin=0 contracts=1 temp=0");
    let mut f = replace().open(&path).unwrap();
    f.write_all(list(&[&a]).as_bytes()).unwrap();
    // fork and exec while the fd is open: the child closes its copy
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(m.read("contracts/k"), list(&[&a, &c]));
    f.write_all(list(&[&c]).as_bytes()).unwrap();
    close(f).unwrap();
    assert_eq!(m.read("contracts/k"), list(&[&a, &c]));
    assert_eq!(m.refs(&c), "pin=0 contracts=1 temp=0");
    // the same for a sector: a flush from the child stores nothing early
    let data = sector(142);
    let root = sectorfs::merkle::sector_root(&data);
    let mut f = std::fs::File::create(m.sector_path(&root)).unwrap();
    f.write_all(&data).unwrap();
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success()
    );
    assert!(!m.listed().contains(&root.to_string()));
    let e = f.write_all(b"x").unwrap_err();
    assert_eq!(errno(&e), libc::EFBIG);
    assert_eq!(errno(&close(f).unwrap_err()), libc::EFBIG);
    assert!(!m.listed().contains(&root.to_string()));
}

/// An `O_TRUNC` open closed with nothing written empties the list at its
/// close, not at the release the kernel sends later (a revision made in
/// between would otherwise be emptied by a late release); but never while
/// the new list may still come: a shell redirection, a child closing an
/// inherited copy at exec, a child still holding the open file.
#[test]
fn an_empty_replace_applies_at_close_but_never_under_a_writer() {
    let m = Mount::start(&[]);
    let (a, a2) = (m.put(&sector(150)), m.put(&sector(151)));
    let path = m.path("contracts/empty-at-close");
    write_file(&path, list(&[&a]).as_bytes()).unwrap();
    m.sh_ok(&format!("rm sectors/{a}"));
    assert_eq!(m.refs(&a), "pin=0 contracts=1 temp=0");
    // a shell redirection closes its first descriptor before the command
    // writes: the list it names, held by this contract only, survives
    m.sh_ok(&format!("echo {a} > contracts/empty-at-close"));
    assert_eq!(m.read("contracts/empty-at-close"), list(&[&a]));
    m.sh_ok("cat contracts/empty-at-close > $S/list && cat $S/list > contracts/empty-at-close");
    assert_eq!(m.read("contracts/empty-at-close"), list(&[&a]));
    assert_eq!(m.refs(&a), "pin=0 contracts=1 temp=0");
    // a child closing its inherited copy at exec empties nothing
    let mut f = replace().open(&path).unwrap();
    assert!(
        std::process::Command::new("true")
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(m.read("contracts/empty-at-close"), list(&[&a]));
    f.write_all(list(&[&a]).as_bytes()).unwrap();
    close(f).unwrap();
    assert_eq!(m.refs(&a), "pin=0 contracts=1 temp=0");
    // a child still holding the open file may yet write the new list: the
    // opener's close leaves it, the last close empties it
    let f = replace().open(&path).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    // SAFETY: clears close-on-exec on a descriptor this test owns
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    close(f).unwrap();
    let kept = m.read("contracts/empty-at-close");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(kept, list(&[&a]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while m.listed().contains(&a.to_string()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the last close did not empty the contract"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(m.read("contracts/empty-at-close"), "");
    // with nothing else holding it, the close empties it before returning
    write_file(&path, list(&[&a2]).as_bytes()).unwrap();
    m.sh_ok(&format!("rm sectors/{a2}"));
    close(replace().open(&path).unwrap()).unwrap();
    settles(&m, "");
    assert!(!m.listed().contains(&a2.to_string()));
    // so too when another thread of the opener closes it: the opener is a
    // process, not the thread that opened
    let a3 = m.put(&sector(152));
    write_file(&path, list(&[&a3]).as_bytes()).unwrap();
    m.sh_ok(&format!("rm sectors/{a3}"));
    let f = replace().open(&path).unwrap();
    std::thread::spawn(move || close(f))
        .join()
        .unwrap()
        .unwrap();
    settles(&m, "");
    assert!(!m.listed().contains(&a3.to_string()));
    // nor does the opener's own close, once another handle revised it: the
    // truncation belongs to the open, and the revision came after
    let a5 = m.put(&sector(154));
    let f = replace().open(&path).unwrap();
    write_file(&path, list(&[&a5]).as_bytes()).unwrap();
    close(f).unwrap();
    settles(&m, &list(&[&a5]));
    // an append by another handle in between stays, as it would after a
    // truncation at open; what the list had at open goes
    let a6 = m.put(&sector(155));
    let f = replace().open(&path).unwrap();
    m.sh_ok(&format!("echo {a6} >> contracts/empty-at-close"));
    close(f).unwrap();
    settles(&m, &list(&[&a6]));
    // a late close never empties a list revised since it was opened, even
    // to the same roots
    let a4 = m.put(&sector(153));
    write_file(&path, list(&[&a4]).as_bytes()).unwrap();
    m.sh_ok(&format!("rm sectors/{a4}"));
    let f = replace().open(&path).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    // SAFETY: clears close-on-exec on a descriptor this test owns
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    close(f).unwrap();
    write_file(&path, list(&[&a4]).as_bytes()).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // the release comes after the child is gone; give it time to act
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(m.read("contracts/empty-at-close"), list(&[&a4]));
    assert!(m.listed().contains(&a4.to_string()));
}

/// `fstat` of an open sector shows its link count as it is now, after
/// references made elsewhere: the kernel's cached attributes are dropped
/// when references change, not kept for their time to live.
#[test]
fn an_open_sector_sees_its_link_count_change() {
    let m = Mount::start(&[]);
    let a = m.put(&sector(140));
    let file = std::fs::File::open(m.sector_path(&a)).unwrap();
    let fstat_nlink = || file.metadata().unwrap().nlink();
    assert_eq!(fstat_nlink(), 1);
    write_file(&m.path("contracts/k1"), list(&[&a, &a]).as_bytes()).unwrap();
    assert_eq!(fstat_nlink(), 3, "after a contract revision");
    m.sh_ok("mkdir temp/50");
    m.sh_ok(&format!("ln sectors/{a} temp/50/{a}"));
    assert_eq!(fstat_nlink(), 4, "after a temp entry");
    m.write("height", "50\n").unwrap();
    assert_eq!(fstat_nlink(), 3, "after the temp entry expired");
    m.sh_ok("rm contracts/k1");
    assert_eq!(fstat_nlink(), 1, "after the contract went");
    assert_eq!(m.nlink(&a), 1);
}

/// `/contracts` lists in pages from the database, as `/sectors` does: more
/// contracts than one page, each listed once.
#[test]
fn ls_lists_more_contracts_than_a_page() {
    let m = Mount::start(&[]);
    m.sh_ok("for i in $(seq 1 700); do : > contracts/c$i; done");
    let listed = m.sh_ok("ls contracts");
    let mut names: Vec<&str> = listed.lines().collect();
    assert_eq!(names.len(), 700);
    names.dedup();
    assert_eq!(names.len(), 700, "a name listed twice");
    assert!(names.contains(&"c1") && names.contains(&"c700"));
    m.sh_ok("rm contracts/c1 contracts/c350");
    assert_eq!(m.sh_ok("ls contracts | wc -l").trim(), "698");
}

/// An fsync of a contract applies what was written so far, a truncation
/// included; refused (a line cut short), it changes nothing, and the writes
/// and the close go on.
#[test]
fn fsync_of_a_contract_applies_or_changes_nothing() {
    let m = Mount::start(&[]);
    let (a, b) = (m.put(&sector(170)), m.put(&sector(171)));
    let text = list(&[&a, &b]);
    let mut f = replace().create(true).open(m.path("contracts/fs")).unwrap();
    f.write_all(&text.as_bytes()[..70]).unwrap();
    assert_eq!(errno(&f.sync_all().unwrap_err()), libc::EINVAL);
    assert!(m.path("contracts/fs").exists());
    f.write_all(&text.as_bytes()[70..]).unwrap();
    f.sync_all().unwrap();
    assert_eq!(m.read("contracts/fs"), text);
    close(f).unwrap();
    assert_eq!(m.read("contracts/fs"), text);
    // opened to replace, fsynced with nothing written: emptied then
    let f = replace().open(m.path("contracts/fs")).unwrap();
    f.sync_all().unwrap();
    assert_eq!(m.read("contracts/fs"), "");
    close(f).unwrap();
    assert_eq!(m.read("contracts/fs"), "");
}

/// `contracts/empty-at-close` reads `want`, at once or soon: a close whose
/// process may still hold the file (a child another test thread forked
/// inherited it until its exec) leaves the truncation to the release, which
/// the kernel sends after the close returns.
fn settles(m: &Mount, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let got = m.read("contracts/empty-at-close");
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{got:?}, expected {want:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
