//! A [`Syscall`] double that changes nothing: it logs each call with its arguments (one line
//! per call, fds shown as the path they were opened at), simulates just enough state for the
//! steps' checks (which paths exist, which are symlinks, what `stat` says, file contents before
//! and after pivot_root, the cwd), and fails the Nth call of a kind (or the first call matching a
//! string) with a chosen errno.
//!
//! Returned fds are real (`/dev/null`, opened read-only) so `OwnedFd` stays honest; the double
//! remembers a label per fd number and prints `fd:<label>` wherever the step passes one.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd as _, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};

use super::{At, CapSets, FileStat, Forked, FsStat, SysResult, Syscall};

/// One injected failure.
#[derive(Debug, Clone)]
enum Fault {
    /// The `nth` (1-based) call of `kind`.
    Nth {
        kind: &'static str,
        nth: usize,
        errno: Errno,
    },
    /// The first call of `kind` whose log line contains `needle`.
    Matching {
        kind: &'static str,
        needle: String,
        errno: Errno,
    },
}

/// The recording double. See the module docs.
#[derive(Debug)]
pub struct Recording {
    log: RefCell<Vec<String>>,
    counts: RefCell<HashMap<&'static str, usize>>,
    faults: RefCell<Vec<Fault>>,
    labels: RefCell<HashMap<RawFd, String>>,
    absent: RefCell<HashSet<String>>,
    stats: RefCell<HashMap<String, FileStat>>,
    statfs: RefCell<HashMap<String, FsStat>>,
    files: RefCell<HashMap<String, String>>,
    files_after_pivot: RefCell<HashMap<String, String>>,
    pivoted: Cell<bool>,
    links: RefCell<HashMap<String, String>>,
    cwd: RefCell<String>,
    umask: Cell<u32>,
    reader_gone: Cell<bool>,
}

/// The mode of a plain directory, what the double reports for any path it knows nothing of.
const DIR: FileStat = FileStat {
    mode: libc::S_IFDIR | 0o755,
    rdev: 0,
};
/// ext4, where the double's unknown paths live.
const EXT4: FsStat = FsStat {
    fs_type: 0xEF53,
    flags: 0,
};

/// `makedev(major, minor)`, for tests describing device nodes.
pub fn dev(major: u64, minor: u64) -> u64 {
    nix::sys::stat::makedev(major, minor)
}

/// A character device stat with mode 0666.
pub fn char_dev(major: u64, minor: u64) -> FileStat {
    FileStat {
        mode: libc::S_IFCHR | 0o666,
        rdev: dev(major, minor),
    }
}

/// A regular file stat with the given permission bits.
pub fn regular(perm: u32) -> FileStat {
    FileStat {
        mode: libc::S_IFREG | perm,
        rdev: 0,
    }
}

impl Default for Recording {
    fn default() -> Self {
        Self::new()
    }
}

fn flags<T>(names: impl Iterator<Item = (&'static str, T)>) -> String {
    let v: Vec<&str> = names.map(|(n, _)| n).collect();
    if v.is_empty() {
        "0".into()
    } else {
        v.join("|")
    }
}

/// Lexically appends `p` (absolute or not) to `base`.
fn join(base: &str, p: &Path) -> String {
    let rel = p.to_string_lossy();
    let rel = rel.trim_start_matches('/');
    match (base.trim_end_matches('/'), rel) {
        ("", "") => "/".into(),
        (b, "") => b.into(),
        (b, r) => format!("{b}/{r}"),
    }
}

impl Recording {
    /// An empty log; `/dev/null` is char 1:3, the kernel's `cap_last_cap` is 40, the cwd `/`.
    pub fn new() -> Self {
        let r = Recording {
            log: RefCell::default(),
            counts: RefCell::default(),
            faults: RefCell::default(),
            labels: RefCell::default(),
            absent: RefCell::default(),
            stats: RefCell::default(),
            statfs: RefCell::default(),
            files: RefCell::default(),
            files_after_pivot: RefCell::default(),
            pivoted: Cell::new(false),
            links: RefCell::default(),
            cwd: RefCell::new("/".into()),
            umask: Cell::new(0o022),
            reader_gone: Cell::new(false),
        };
        r.set_stat("/dev/null", char_dev(1, 3));
        r.set_file("/proc/sys/kernel/cap_last_cap", "40\n");
        r
    }

    /// Fails the `nth` (1-based) call of `kind` (the first word of its log line).
    pub fn fail_nth(&self, kind: &'static str, nth: usize, errno: Errno) -> &Self {
        self.faults
            .borrow_mut()
            .push(Fault::Nth { kind, nth, errno });
        self
    }

    /// Fails the first call of `kind` whose log line contains `needle`.
    pub fn fail_matching(&self, kind: &'static str, needle: &str, errno: Errno) -> &Self {
        let needle = needle.to_owned();
        self.faults.borrow_mut().push(Fault::Matching {
            kind,
            needle,
            errno,
        });
        self
    }

    /// Makes `path` (as the steps will see it, e.g. `/rootfs/etc/hosts`) not exist until a call
    /// creates it.
    pub fn set_absent(&self, path: &str) -> &Self {
        self.absent.borrow_mut().insert(path.into());
        self
    }

    /// What `stat`/`fstat` report for `path`.
    pub fn set_stat(&self, path: &str, st: FileStat) -> &Self {
        self.stats.borrow_mut().insert(path.into(), st);
        self
    }

    /// What `statfs` reports for `path`.
    pub fn set_statfs(&self, path: &str, st: FsStat) -> &Self {
        self.statfs.borrow_mut().insert(path.into(), st);
        self
    }

    /// The contents `read_file(path)` returns.
    pub fn set_file(&self, path: &str, contents: &str) -> &Self {
        self.files.borrow_mut().insert(path.into(), contents.into());
        self
    }

    /// The contents `read_file(path)` returns once `pivot_root` (or `chroot`) succeeded: the
    /// sandbox's own mount table, say.
    pub fn set_file_after_pivot(&self, path: &str, contents: &str) -> &Self {
        self.files_after_pivot
            .borrow_mut()
            .insert(path.into(), contents.into());
        self
    }

    /// Makes `path` a dangling symlink to `target` (it stays absent to path lookups;
    /// `readlinkat` reports it, an `O_NOFOLLOW` open without `O_DIRECTORY` opens the link itself
    /// (`fstat`: `S_IFLNK`), creating it fails with EEXIST until its target exists, and
    /// `unlinkat` removes it).
    pub fn set_symlink(&self, path: &str, target: &str) -> &Self {
        self.links.borrow_mut().insert(path.into(), target.into());
        self.set_absent(path)
    }

    /// Makes `reader_gone` report that plugd-init died.
    pub fn set_reader_gone(&self, gone: bool) -> &Self {
        self.reader_gone.set(gone);
        self
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.log.borrow().clone()
    }

    /// The calls of one kind, in order.
    pub fn calls_of(&self, kind: &str) -> Vec<String> {
        let prefix = format!("{kind} ");
        self.log
            .borrow()
            .iter()
            .filter(|l| l.starts_with(&prefix) || l.as_str() == kind)
            .cloned()
            .collect()
    }

    fn fault_for(&self, kind: &'static str, n: usize, line: &str) -> Option<Errno> {
        let mut faults = self.faults.borrow_mut();
        let i = faults.iter().position(|f| match f {
            Fault::Nth { kind: k, nth, .. } => *k == kind && *nth == n,
            Fault::Matching {
                kind: k, needle, ..
            } => *k == kind && line.contains(needle.as_str()),
        })?;
        Some(match faults.remove(i) {
            Fault::Nth { errno, .. } | Fault::Matching { errno, .. } => errno,
        })
    }

    /// Some(ENOENT) when `path` does not exist (yet).
    fn missing(&self, path: &str) -> Option<Errno> {
        self.absent.borrow().contains(path).then_some(Errno::ENOENT)
    }

    /// Some(EEXIST) when creating `path` would hit an existing dangling symlink.
    fn link_exists(&self, path: &str) -> Option<Errno> {
        self.links
            .borrow()
            .contains_key(path)
            .then_some(Errno::EEXIST)
    }

    /// Logs one call and decides its outcome: an injected fault, else the simulated one.
    fn call(&self, kind: &'static str, args: String, simulated: Option<Errno>) -> SysResult<()> {
        let n = {
            let mut counts = self.counts.borrow_mut();
            let c = counts.entry(kind).or_default();
            *c += 1;
            *c
        };
        let line = if args.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind} {args}")
        };
        let result = match self.fault_for(kind, n, &line) {
            Some(e) => Err(e),
            None => simulated.map_or(Ok(()), Err),
        };
        let line = match result {
            Err(e) => format!("{line} -> {e:?}"),
            Ok(()) => line,
        };
        self.log.borrow_mut().push(line);
        result
    }

    fn label(&self, fd: BorrowedFd<'_>) -> String {
        let raw = fd.as_raw_fd();
        self.labels
            .borrow()
            .get(&raw)
            .cloned()
            .unwrap_or_else(|| format!("fd{raw}"))
    }

    fn at(&self, at: At<'_>) -> String {
        match at {
            At::Path(p) => p.display().to_string(),
            At::Fd(fd) => format!("fd:{}", self.label(fd)),
        }
    }

    fn at_key(&self, at: At<'_>) -> String {
        match at {
            At::Path(p) => p.display().to_string(),
            At::Fd(fd) => self.label(fd),
        }
    }

    fn new_fd(&self, label: String) -> SysResult<OwnedFd> {
        let f = std::fs::File::open("/dev/null").map_err(|_| Errno::EMFILE)?;
        let fd = OwnedFd::from(f);
        self.labels.borrow_mut().insert(fd.as_raw_fd(), label);
        Ok(fd)
    }

    fn created(&self, path: &str) {
        self.absent.borrow_mut().remove(path);
    }

    fn stat_of(&self, path: &str) -> FileStat {
        if self.links.borrow().contains_key(path) {
            return FileStat {
                mode: libc::S_IFLNK | 0o777,
                rdev: 0,
            };
        }
        self.stats.borrow().get(path).copied().unwrap_or(DIR)
    }

    /// The outcome of opening `path` without creating it: a symlink opened with `O_NOFOLLOW`
    /// is the link itself (or ENOTDIR with `O_DIRECTORY`, ELOOP without `O_PATH`).
    fn open_existing(&self, path: &str, fl: OFlag) -> Option<Errno> {
        if fl.contains(OFlag::O_NOFOLLOW) && self.links.borrow().contains_key(path) {
            return if fl.contains(OFlag::O_DIRECTORY) {
                Some(Errno::ENOTDIR)
            } else if fl.contains(OFlag::O_PATH) {
                None
            } else {
                Some(Errno::ELOOP)
            };
        }
        self.missing(path)
    }
}

impl Syscall for Recording {
    fn clone_parent(&self, flags: CloneFlags) -> SysResult<Forked> {
        let f = flags | CloneFlags::CLONE_PARENT;
        self.call("clone", flags_of_clone(f), None)
            .map(|()| Forked::Child)
    }

    fn unshare(&self, flags: CloneFlags) -> SysResult<()> {
        self.call("unshare", flags_of_clone(flags), None)
    }

    fn setsid(&self) -> SysResult<()> {
        self.call("setsid", String::new(), None)
    }

    fn sethostname(&self, name: &str) -> SysResult<()> {
        self.call("sethostname", name.into(), None)
    }

    fn open(&self, path: &Path, fl: OFlag) -> SysResult<OwnedFd> {
        let p = path.display().to_string();
        self.call(
            "open",
            format!("{p} {}", flags(fl.iter_names())),
            self.missing(&p),
        )?;
        self.new_fd(p)
    }

    fn open_in_root(&self, root: BorrowedFd<'_>, path: &Path, fl: OFlag) -> SysResult<OwnedFd> {
        let base = self.label(root);
        let p = join(&base, path);
        let args = format!("root={base} {} {}", path.display(), flags(fl.iter_names()));
        self.call("openat2", args, self.missing(&p))?;
        self.new_fd(p)
    }

    fn openat(
        &self,
        dir: BorrowedFd<'_>,
        name: &Path,
        fl: OFlag,
        mode: Mode,
    ) -> SysResult<OwnedFd> {
        let p = join(&self.label(dir), name);
        let args = format!("{p} {} {:o}", flags(fl.iter_names()), mode.bits());
        let creating = fl.contains(OFlag::O_CREAT);
        let sim = if creating {
            self.link_exists(&p)
        } else {
            self.open_existing(&p, fl)
        };
        self.call("openat", args, sim)?;
        if creating {
            self.created(&p);
            self.stats
                .borrow_mut()
                .entry(p.clone())
                .or_insert(regular(mode.bits()));
        }
        self.new_fd(p)
    }

    fn mkdirat(&self, dir: BorrowedFd<'_>, name: &Path, mode: Mode) -> SysResult<()> {
        let p = join(&self.label(dir), name);
        self.call(
            "mkdirat",
            format!("{p} {:o}", mode.bits()),
            self.link_exists(&p),
        )?;
        self.created(&p);
        Ok(())
    }

    fn mknodat(
        &self,
        dir: BorrowedFd<'_>,
        name: &Path,
        kind: SFlag,
        perm: Mode,
        dev: u64,
    ) -> SysResult<()> {
        let p = join(&self.label(dir), name);
        let (ma, mi) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
        let args = format!(
            "{p} {} {:o} {ma}:{mi}",
            flags(kind.iter_names()),
            perm.bits()
        );
        self.call("mknodat", args, None)?;
        self.created(&p);
        let st = FileStat {
            mode: kind.bits() | perm.bits(),
            rdev: dev,
        };
        self.stats.borrow_mut().insert(p, st);
        Ok(())
    }

    fn symlinkat(&self, target: &Path, dir: BorrowedFd<'_>, name: &Path) -> SysResult<()> {
        let p = join(&self.label(dir), name);
        self.call("symlinkat", format!("{p} -> {}", target.display()), None)?;
        self.created(&p);
        Ok(())
    }

    fn unlinkat(&self, dir: BorrowedFd<'_>, name: &Path) -> SysResult<()> {
        let p = join(&self.label(dir), name);
        let sim = match self.links.borrow().contains_key(&p) {
            true => None,
            false => self.missing(&p),
        };
        self.call("unlinkat", p.clone(), sim)?;
        self.links.borrow_mut().remove(&p);
        self.stats.borrow_mut().remove(&p);
        self.absent.borrow_mut().insert(p);
        Ok(())
    }

    fn readlinkat(&self, dir: BorrowedFd<'_>, name: &Path) -> SysResult<PathBuf> {
        let p = join(&self.label(dir), name);
        self.call("readlinkat", p.clone(), None)?;
        self.links
            .borrow()
            .get(&p)
            .cloned()
            .map(PathBuf::from)
            .ok_or(Errno::EINVAL)
    }

    fn fchown(&self, fd: BorrowedFd<'_>, uid: u32, gid: u32) -> SysResult<()> {
        self.call("fchown", format!("fd:{} {uid}:{gid}", self.label(fd)), None)
    }

    fn fstat(&self, fd: BorrowedFd<'_>) -> SysResult<FileStat> {
        let p = self.label(fd);
        self.call("fstat", format!("fd:{p}"), None)?;
        Ok(self.stat_of(&p))
    }

    fn stat(&self, path: &Path) -> SysResult<FileStat> {
        let p = path.display().to_string();
        self.call("stat", p.clone(), self.missing(&p))?;
        Ok(self.stat_of(&p))
    }

    fn statfs(&self, at: At<'_>) -> SysResult<FsStat> {
        self.call("statfs", self.at(at), None)?;
        Ok(self
            .statfs
            .borrow()
            .get(&self.at_key(at))
            .copied()
            .unwrap_or(EXT4))
    }

    fn fd_path(&self, fd: BorrowedFd<'_>) -> SysResult<PathBuf> {
        let p = self.label(fd);
        self.call("fd_path", format!("fd:{p}"), None)?;
        Ok(PathBuf::from(p))
    }

    fn read_file(&self, path: &Path) -> SysResult<String> {
        let p = path.display().to_string();
        self.call("read_file", p.clone(), None)?;
        if self.pivoted.get()
            && let Some(text) = self.files_after_pivot.borrow().get(&p)
        {
            return Ok(text.clone());
        }
        self.files.borrow().get(&p).cloned().ok_or(Errno::ENOENT)
    }

    fn write_file(&self, path: &Path, data: &str) -> SysResult<()> {
        self.call("write_file", format!("{} {data:?}", path.display()), None)
    }

    fn write_fd(&self, fd: BorrowedFd<'_>, data: &[u8]) -> SysResult<()> {
        let text = String::from_utf8_lossy(data);
        self.call(
            "write_fd",
            format!("fd:{} {:?}", self.label(fd), text.trim_end()),
            None,
        )
    }

    fn dup3(&self, fd: BorrowedFd<'_>, target: RawFd) -> SysResult<()> {
        self.call("dup3", format!("fd:{} -> {target}", self.label(fd)), None)
    }

    fn umask(&self, mode: Mode) -> Mode {
        let _ = self.call("umask", format!("{:o}", mode.bits()), None);
        Mode::from_bits_truncate(self.umask.replace(mode.bits()))
    }

    fn close_range_cloexec(&self, first: u32) -> SysResult<()> {
        self.call("close_range", format!("{first}.. CLOEXEC"), None)
    }

    fn reader_gone(&self, fd: BorrowedFd<'_>) -> bool {
        let gone = self.reader_gone.get();
        let _ = self.call(
            "reader_gone",
            format!("fd:{} = {gone}", self.label(fd)),
            None,
        );
        gone
    }

    fn mount(
        &self,
        source: Option<At<'_>>,
        target: At<'_>,
        fstype: Option<&str>,
        fl: MsFlags,
        data: Option<&str>,
    ) -> SysResult<()> {
        let src = source.map_or_else(|| "-".to_owned(), |s| self.at(s));
        let mut args = format!("{src} -> {} {}", self.at(target), flags(fl.iter_names()));
        if let Some(t) = fstype {
            args.push_str(&format!(" type={t}"));
        }
        if let Some(d) = data {
            args.push_str(&format!(" data={d}"));
        }
        self.call("mount", args, None)
    }

    fn umount2(&self, target: At<'_>, fl: MntFlags) -> SysResult<()> {
        self.call(
            "umount2",
            format!("{} {}", self.at(target), flags(fl.iter_names())),
            None,
        )
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> SysResult<()> {
        let args = format!("{} {}", new_root.display(), put_old.display());
        self.call("pivot_root", args, None)?;
        self.pivoted.set(true);
        Ok(())
    }

    fn chroot(&self, path: &Path) -> SysResult<()> {
        self.call("chroot", path.display().to_string(), None)?;
        self.pivoted.set(true);
        Ok(())
    }

    fn chdir(&self, path: &Path) -> SysResult<()> {
        let p = path.display().to_string();
        self.call("chdir", p.clone(), self.missing(&p))?;
        if path.is_absolute() {
            *self.cwd.borrow_mut() = p;
        }
        Ok(())
    }

    fn fchdir(&self, fd: BorrowedFd<'_>) -> SysResult<()> {
        let p = self.label(fd);
        self.call("fchdir", format!("fd:{p}"), None)?;
        *self.cwd.borrow_mut() = p;
        Ok(())
    }

    fn getcwd(&self) -> SysResult<PathBuf> {
        self.call("getcwd", String::new(), None)?;
        Ok(PathBuf::from(self.cwd.borrow().clone()))
    }

    fn loopback_up(&self) -> SysResult<()> {
        self.call("loopback_up", String::new(), None)
    }

    fn drop_bounding(&self, cap: u8) -> SysResult<()> {
        self.call("drop_bounding", cap.to_string(), None)
    }

    fn set_keepcaps(&self, on: bool) -> SysResult<()> {
        self.call("set_keepcaps", on.to_string(), None)
    }

    fn setgroups(&self, gids: &[u32]) -> SysResult<()> {
        self.call("setgroups", format!("{gids:?}"), None)
    }

    fn setresgid(&self, gid: u32) -> SysResult<()> {
        self.call("setresgid", gid.to_string(), None)
    }

    fn setresuid(&self, uid: u32) -> SysResult<()> {
        self.call("setresuid", uid.to_string(), None)
    }

    fn capset(&self, s: CapSets) -> SysResult<()> {
        let args = format!(
            "e={:#x} p={:#x} i={:#x}",
            s.effective, s.permitted, s.inheritable
        );
        self.call("capset", args, None)
    }

    fn ambient_clear(&self) -> SysResult<()> {
        self.call("ambient_clear", String::new(), None)
    }

    fn ambient_raise(&self, cap: u8) -> SysResult<()> {
        self.call("ambient_raise", cap.to_string(), None)
    }

    fn set_dumpable(&self, on: bool) -> SysResult<()> {
        self.call("set_dumpable", on.to_string(), None)
    }

    fn set_no_new_privs(&self) -> SysResult<()> {
        self.call("set_no_new_privs", String::new(), None)
    }

    fn reset_signals(&self) -> SysResult<()> {
        self.call("reset_signals", String::new(), None)
    }

    fn execve(&self, path: &CStr, argv: &[CString], envp: &[CString]) -> SysResult<()> {
        let args = format!("{} argv={argv:?} env={envp:?}", path.to_string_lossy());
        self.call("execve", args, None)
    }

    fn execveat_fd(&self, fd: RawFd, argv: &[CString], envp: &[CString]) -> SysResult<()> {
        let args = format!("fd={fd} AT_EMPTY_PATH argv={argv:?} env={envp:?}");
        self.call("execveat", args, None)
    }
}

/// Clone flags by name; `CLONE_NEWTIME`, which nix's `CloneFlags` does not name (it collides
/// with CSIGNAL for clone(2)), is named too.
fn flags_of_clone(f: CloneFlags) -> String {
    let mut s = flags(f.iter_names());
    if f.bits() & libc::CLONE_NEWTIME != 0 {
        s = match s.as_str() {
            "0" => "CLONE_NEWTIME".into(),
            _ => format!("{s}|CLONE_NEWTIME"),
        };
    }
    s
}
