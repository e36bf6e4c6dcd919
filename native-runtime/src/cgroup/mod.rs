//! Per-plugin cgroups: created by the daemon before launch, joined by `plugd-init` before it clones
//! the plugin, emptied and removed by the daemon after the plugin stops.
//!
//! # Cgroups of native plugins (for `docs/`)
//!
//! **Where.** Each plugin gets one cgroup named `plugd-<id>` inside the daemon's *own* cgroup, in
//! every cgroup hierarchy the daemon belongs to that is mounted here:
//! `<mountpoint>/<daemon's path in that hierarchy, relative to the mount's root>/plugd-<id>`, e.g.
//! on this hybrid test VM `/sys/fs/cgroup/devices/plugd-<id>` and
//! `/sys/fs/cgroup/memory/process_api/<…>/plugd-<id>`. That is where dockerd's plugins end up too
//! (runc, given no `cgroupsPath`, puts `<id>` under the caller's cgroup: the probes saw
//! `memory:/process_api/<…>/<id>`), so plugins stay inside whatever limits and accounting the
//! daemon runs under. The `plugd-` prefix keeps them apart from anything else living there
//! (dockerd's own plugins, containers); plugin ids are 64 hex digits, so two plugins never share a
//! name. Nothing is nested below, no controller is enabled in any `subtree_control`, and no
//! resource limit is set (dockerd sets none for plugins). Under systemd, run the daemon's unit with
//! `Delegate=yes` so systemd treats the subtree as the daemon's.
//!
//! **Lifecycle.** [`PluginCgroup::create`] before launch (a leftover cgroup of the same name is
//! removed first if it is empty, refused if it still has processes); the init writes its pid into
//! `cgroup.procs` of every [`PluginCgroup::join_paths`] entry before the clone, so the plugin and
//! everything it forks are in them; after stop [`PluginCgroup::kill_all`] (nothing may outlive the
//! plugin, which matters with `PidHost`, where killing PID 1 kills nothing else) and
//! [`PluginCgroup::remove`]. After a daemon restart [`PluginCgroup::open_existing`] finds the same
//! directories again (the daemon restarts into the same cgroup). Recorded directories (the
//! plugin's `state.json`) go through [`PluginCgroup::from_recorded`], which accepts only the
//! directories `create` would make for that plugin id on this host: a state file, wherever it
//! lives, never decides which processes get killed. `kill_all` and `remove` sleep between
//! attempts: call them from a blocking thread.
//!
//! **Layouts** (detected by `statfs("/sys/fs/cgroup")`, see [`layout`]):
//! - *legacy v1*: a directory in every mounted v1 hierarchy (`name=systemd` included, as runc does).
//!   A new v1 `cpuset` cgroup starts with empty `cpuset.cpus`/`cpuset.mems` and refuses tasks, so
//!   both are copied from the parent. Devices: `devices.deny` `a`, then one write per rule to
//!   `devices.allow` or `devices.deny` (`c 1:3 rwm`, `a *:* rwm`). Kill: freeze through the freezer
//!   hierarchy when mounted, SIGKILL every pid, thaw, until empty.
//! - *hybrid* (this VM): as legacy, plus the controller-less cgroup2 at `/sys/fs/cgroup/unified`
//!   (runc joins it as well: the probes show `0::/<id>`). Devices stay with the v1 controller, which
//!   is where the devices controller lives on such a host. Kill: `cgroup.kill` of the unified
//!   directory (kernel ≥ 5.14; it kills forks too, so no freezing) plus a SIGKILL to every pid
//!   listed anywhere, until none is left alive.
//! - *unified v2*: one directory. Devices: an eBPF `BPF_PROG_TYPE_CGROUP_DEVICE` program generated
//!   from the rules and attached with `BPF_F_ALLOW_MULTI` ([`bpf`]); it stays attached until the
//!   cgroup is removed, daemon restarts included. Kill: `cgroup.kill`, or on kernels before 5.14
//!   `cgroup.freeze` + SIGKILL + thaw.
//! - *test switch*: [`Layout::force_v2`], or `PLUGD_CGROUP_FORCE_V2=1` for [`Layout::current`],
//!   takes the v2 path on a hybrid host (only the `unified` directory, eBPF devices), so the v2
//!   code runs on the v1 test VMs too. The kernel runs cgroup device programs on the cgroup2
//!   hierarchy whatever the v1 controllers do, so enforcement is real there.
//!
//! Wherever a pid is signalled (every layout lists and SIGKILLs pids besides `cgroup.kill`), it
//! is read from `cgroup.procs`, opened as a pidfd, checked to be in the plugin's cgroup by its
//! `/proc/<pid>/cgroup`, and signalled through the pidfd: a pid that exited and was reused after
//! the read is never signalled.
//!
//! **Device rules.** The spec's rules (dockerd's) followed by runc's built-in list
//! ([`devices::runc_allowed`]: mknod of anything, null/zero/full/tty/random/urandom, ptys, ptmx,
//! tun), exactly what runc applies under dockerd. The v1 and the eBPF paths enforce the same
//! semantics: the eBPF program is generated from an exact emulation of the v1 controller
//! ([`devices::DeviceState`]). A missing devices controller (v1) or a refused eBPF load (v2) fails
//! `create`: the device rules are a security boundary and are never silently skipped.
//!
//! **Deliberate differences from dockerd + runc.**
//! 1. The name is `plugd-<id>`, not `<id>`.
//! 2. FIFO device rules (`p`, which dockerd emits for a FIFO given as a plugin device) are dropped:
//!    the device controller has no FIFO type and a FIFO needs no device permission.
//! 3. A leftover cgroup with processes makes `create` fail instead of being shared.

pub mod bpf;
pub mod devices;
pub mod layout;

pub use bpf::{Bpf, SysBpf};
pub use layout::{Layout, Mode};

use devices::Rule;
use plugd_init::spec::DeviceRule;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

#[cfg(test)]
mod tests;

/// Prefix of every plugin cgroup's name.
pub const DIR_PREFIX: &str = "plugd-";
/// How often `remove` tries an `rmdir` that fails with EBUSY (a cgroup can stay busy briefly
/// after its last task exited).
const REMOVE_ATTEMPTS: u32 = 50;
/// Between those tries (runc and youki use the same).
const REMOVE_INTERVAL: Duration = Duration::from_millis(100);
/// Rounds of kill-and-check in `kill_all`.
const KILL_ROUNDS: u32 = 100;
/// Between those rounds.
const KILL_INTERVAL: Duration = Duration::from_millis(20);
/// Polls of the freezer state before killing anyway.
const FREEZE_POLLS: u32 = 100;

/// Why a cgroup operation failed; each names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `statfs` of a cgroup mount point failed.
    #[error("cannot detect the cgroup layout: statfs {path}: {source}")]
    Statfs {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `/sys/fs/cgroup` is neither cgroup2 nor a tmpfs of v1 hierarchies.
    #[error("cannot detect the cgroup layout: /sys/fs/cgroup has filesystem magic {magic:#x}")]
    UnknownLayout {
        /// `f_type`.
        magic: i64,
    },
    /// A file could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A line of a kernel table did not have the expected shape.
    #[error("unexpected line in {what}: {line:?}")]
    Parse {
        /// Which table.
        what: &'static str,
        /// The line.
        line: String,
    },
    /// This process belongs to no mounted hierarchy.
    #[error("no cgroup hierarchy of this process is mounted")]
    NoHierarchy,
    /// Unified mode (detected or forced) without a mounted cgroup2 hierarchy.
    #[error("cgroup v2 requested but this process has no mounted cgroup2 hierarchy")]
    NoV2,
    /// v1 or hybrid without a mounted devices hierarchy: the rules could not be enforced.
    #[error("no devices cgroup hierarchy is mounted: device rules cannot be enforced")]
    NoDeviceController,
    /// The plugin id cannot name a directory.
    #[error("plugin id {0:?} cannot name a cgroup")]
    InvalidId(String),
    /// A device rule cannot be expressed.
    #[error("device rule {index}: {message}")]
    Rule {
        /// Index in the rules given.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// `mkdir` of a plugin cgroup failed.
    #[error("create cgroup {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A leftover cgroup of the same name still has processes.
    #[error("cgroup {path} is still in use by pids {pids:?}")]
    InUse {
        /// The directory.
        path: PathBuf,
        /// Its live processes.
        pids: Vec<i32>,
    },
    /// Writing a control file failed.
    #[error("write {value:?} to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `BPF_PROG_LOAD` of the device program failed.
    #[error("load the device eBPF program: {0}")]
    BpfLoad(#[source] io::Error),
    /// `BPF_PROG_ATTACH` of the device program failed.
    #[error("attach the device eBPF program to {path}: {source}")]
    BpfAttach {
        /// The cgroup directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Processes were still alive after every kill round.
    #[error("plugin cgroup plugd-{id}: pids {pids:?} survived SIGKILL")]
    KillTimeout {
        /// Plugin id.
        id: String,
        /// The survivors.
        pids: Vec<i32>,
    },
    /// `rmdir` failed (after the EBUSY retries).
    #[error("remove cgroup {path}: {source}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// One plugin's cgroup directories (one per hierarchy; see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginCgroup {
    id: String,
    dirs: Vec<PathBuf>,
}

impl PluginCgroup {
    /// Creates the plugin's cgroups on this host ([`Layout::current`]) and applies `rules` (the
    /// spec's `linux.resources.devices`) plus runc's built-in list.
    pub fn create(id: &str, rules: &[DeviceRule]) -> Result<Self, CgroupError> {
        Self::create_in(&Layout::current()?, id, rules, &SysBpf)
    }

    /// [`PluginCgroup::create`] for a given layout and `bpf(2)` implementation.
    pub fn create_in(
        layout: &Layout,
        id: &str,
        rules: &[DeviceRule],
        bpf: &dyn Bpf,
    ) -> Result<Self, CgroupError> {
        let name = dir_name(id)?;
        let mut rules = Rule::parse_all(rules)?;
        rules.extend(devices::runc_allowed());
        let devices_dir = match layout.mode {
            Mode::Unified => None,
            Mode::Hybrid | Mode::Legacy => Some(
                layout
                    .hierarchies
                    .iter()
                    .find(|h| h.controllers.iter().any(|c| c == "devices"))
                    .ok_or(CgroupError::NoDeviceController)?
                    .own_dir
                    .join(&name),
            ),
        };
        let cg = PluginCgroup {
            id: id.to_owned(),
            dirs: layout
                .hierarchies
                .iter()
                .map(|h| h.own_dir.join(&name))
                .collect(),
        };
        for path in &cg.dirs {
            let pids = live_pids(&pids_below(path)?);
            if !pids.is_empty() {
                return Err(CgroupError::InUse {
                    path: path.clone(),
                    pids,
                });
            }
        }
        // A stale, empty cgroup is replaced: reusing it would keep an old eBPF program attached
        // next to the new one.
        cg.remove()?;
        let populated = cg.populate(layout, &name, &rules, devices_dir.as_deref(), bpf);
        if let Err(e) = populated {
            if let Err(cleanup) = cg.remove() {
                tracing::warn!(id, error = %cleanup, "removing a half-created plugin cgroup failed");
            }
            return Err(e);
        }
        Ok(cg)
    }

    fn populate(
        &self,
        layout: &Layout,
        name: &str,
        rules: &[Rule],
        devices_dir: Option<&Path>,
        bpf: &dyn Bpf,
    ) -> Result<(), CgroupError> {
        for h in &layout.hierarchies {
            let dir = h.own_dir.join(name);
            fs::create_dir(&dir).map_err(|source| CgroupError::Create {
                path: dir.clone(),
                source,
            })?;
            if h.controllers.iter().any(|c| c == "cpuset") {
                copy_cpuset_from_parent(&dir)?;
            }
        }
        match devices_dir {
            Some(dir) => {
                for (file, line) in devices::v1_writes(rules) {
                    write(&dir.join(file), &line)?;
                }
                Ok(())
            }
            None => {
                let v2 = layout
                    .hierarchies
                    .iter()
                    .find(|h| h.is_v2())
                    .ok_or(CgroupError::NoV2)?;
                bpf::apply(bpf, &v2.own_dir.join(name), rules)
            }
        }
    }

    /// The plugin's cgroups on this host if any of them exists (re-adoption after a restart);
    /// errors only when the layout cannot be read.
    pub fn open_existing(id: &str) -> Result<Option<Self>, CgroupError> {
        Ok(Self::open_existing_in(&Layout::current()?, id))
    }

    /// [`PluginCgroup::open_existing`] for a given layout.
    pub fn open_existing_in(layout: &Layout, id: &str) -> Option<Self> {
        Self::existing(id, Self::expected_dirs(layout, id))
    }

    /// The plugin's cgroups at recorded directories (`state.json`) that still exist, keeping only
    /// the directories [`PluginCgroup::create`] would make for `id` on this host: `plugd-<id>`
    /// inside the daemon's own cgroup of a mounted hierarchy ([`Layout::detect`], so a record
    /// made under the v2 test switch is accepted too). Anything else is ignored with a warning —
    /// a record is never trusted to name a cgroup whose processes get killed.
    pub fn from_recorded(id: &str, dirs: Vec<PathBuf>) -> Result<Option<Self>, CgroupError> {
        Ok(Self::from_recorded_in(&Layout::detect()?, id, dirs))
    }

    /// [`PluginCgroup::from_recorded`] for a given layout.
    pub fn from_recorded_in(layout: &Layout, id: &str, dirs: Vec<PathBuf>) -> Option<Self> {
        let expected = Self::expected_dirs(layout, id);
        for dir in dirs.iter().filter(|d| !expected.contains(d)) {
            tracing::warn!(id, dir = %dir.display(), "ignoring a recorded cgroup that is not this plugin's");
        }
        // In the layout's order, each once.
        let kept = expected.into_iter().filter(|e| dirs.contains(e)).collect();
        Self::existing(id, kept)
    }

    /// `plugd-<id>` in the daemon's own cgroup of every hierarchy of `layout` (none for an id
    /// that cannot name a directory).
    fn expected_dirs(layout: &Layout, id: &str) -> Vec<PathBuf> {
        let Ok(name) = dir_name(id) else {
            return Vec::new();
        };
        layout
            .hierarchies
            .iter()
            .map(|h| h.own_dir.join(&name))
            .collect()
    }

    /// Those of `dirs` that are directories (not followed if symlinks), if any.
    fn existing(id: &str, dirs: Vec<PathBuf>) -> Option<Self> {
        let dirs: Vec<PathBuf> = dirs
            .into_iter()
            .filter(|d| fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()))
            .collect();
        (!dirs.is_empty()).then(|| PluginCgroup {
            id: id.to_owned(),
            dirs,
        })
    }

    /// The plugin id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The directories whose `cgroup.procs` the init writes its pid into (record them in the
    /// plugin's state for [`PluginCgroup::from_recorded`]).
    pub fn join_paths(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Every process in the plugin's cgroups (and any cgroup below them), sorted, zombies
    /// included. A directory that is gone counts as empty.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut all = BTreeSet::new();
        for d in &self.dirs {
            all.extend(pids_below(d)?);
        }
        Ok(all.into_iter().collect())
    }

    /// Kills every process in the plugin's cgroups and returns once none is left alive (zombies
    /// waiting for their parent do not count). Uses `cgroup.kill` where there is one; otherwise
    /// freezes (v1 freezer or v2 `cgroup.freeze`) so nothing forks while the pids are signalled,
    /// SIGKILLs each, thaws, and repeats. Each pid read from `cgroup.procs` is signalled only
    /// through a pidfd, and only once `/proc/<pid>/cgroup` shows that very process in this
    /// plugin's cgroup ([`Member`]): a listed pid that exited meanwhile and was reused by an
    /// unrelated process is never signalled (nor counted as a survivor).
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        let kill_file = self
            .dirs
            .iter()
            .map(|d| d.join("cgroup.kill"))
            .find(|f| f.exists());
        let freezer = match kill_file {
            Some(_) => None,
            None => self.freezer(),
        };
        for _ in 0..KILL_ROUNDS {
            let members = self.live_members()?;
            if members.is_empty() {
                return Ok(());
            }
            if let Some(f) = &kill_file {
                write(f, "1")?;
            }
            if let Some(f) = &freezer
                && let Err(e) = f.freeze()
            {
                tracing::warn!(id = %self.id, error = %e, "freezing the plugin cgroup failed; killing without");
            }
            for m in &members {
                m.sigkill();
            }
            if let Some(f) = &freezer {
                f.thaw()?;
            }
            sleep(KILL_INTERVAL);
        }
        let pids: Vec<i32> = self.live_members()?.iter().map(|m| m.pid).collect();
        if pids.is_empty() {
            return Ok(());
        }
        Err(CgroupError::KillTimeout {
            id: self.id.clone(),
            pids,
        })
    }

    /// The live processes listed in the plugin's cgroups that really are in them, each held by a
    /// pidfd.
    fn live_members(&self) -> Result<Vec<Member>, CgroupError> {
        let name = dir_name(&self.id)?;
        Ok(live_pids(&self.pids()?)
            .into_iter()
            .filter_map(|pid| Member::open(pid, &name))
            .collect())
    }

    /// Removes the plugin's cgroups (and any below them), retrying `rmdir` on EBUSY every 100 ms up
    /// to 5 s. Missing directories are fine. Fails while processes remain: call
    /// [`PluginCgroup::kill_all`] first.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut first = None;
        for d in &self.dirs {
            if let Err(e) = remove_tree(d) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn freezer(&self) -> Option<Freezer> {
        self.dirs.iter().find_map(|d| {
            let v1 = d.join("freezer.state");
            let v2 = d.join("cgroup.freeze");
            if v1.exists() {
                Some(Freezer::V1(v1))
            } else if v2.exists() {
                Some(Freezer::V2(v2, d.join("cgroup.events")))
            } else {
                None
            }
        })
    }
}

/// Whether `pid` is in plugin `id`'s cgroup (`plugd-<id>`) in some hierarchy, by its
/// `/proc/<pid>/cgroup`. False when that cannot be read.
pub fn process_is_in(id: &str, pid: i32) -> bool {
    let Ok(name) = dir_name(id) else {
        return false;
    };
    fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| {
        text.lines().any(|l| {
            l.splitn(3, ':')
                .nth(2)
                .is_some_and(|path| Path::new(path).file_name() == Some(name.as_ref()))
        })
    })
}

/// `plugd-<id>`, for an id that is a plain file name.
fn dir_name(id: &str) -> Result<String, CgroupError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        return Err(CgroupError::InvalidId(id.to_owned()));
    }
    Ok(format!("{DIR_PREFIX}{id}"))
}

/// A freezer to stop forks while pids are signalled.
enum Freezer {
    /// v1 `freezer.state`.
    V1(PathBuf),
    /// v2 `cgroup.freeze` and `cgroup.events`.
    V2(PathBuf, PathBuf),
}

impl Freezer {
    fn freeze(&self) -> Result<(), CgroupError> {
        let (file, value) = match self {
            Freezer::V1(f) => (f, "FROZEN"),
            Freezer::V2(f, _) => (f, "1"),
        };
        write(file, value)?;
        for _ in 0..FREEZE_POLLS {
            let frozen = match self {
                Freezer::V1(f) => fs::read_to_string(f).is_ok_and(|s| s.trim() == "FROZEN"),
                Freezer::V2(_, events) => {
                    fs::read_to_string(events).is_ok_and(|s| s.lines().any(|l| l == "frozen 1"))
                }
            };
            if frozen {
                return Ok(());
            }
            sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        match self {
            Freezer::V1(f) => write(f, "THAWED"),
            Freezer::V2(f, _) => write(f, "0"),
        }
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

/// A new v1 cpuset cgroup has no CPUs and no memory nodes and refuses tasks until given some.
fn copy_cpuset_from_parent(dir: &Path) -> Result<(), CgroupError> {
    let parent = dir.parent().unwrap_or(dir);
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = fs::read_to_string(dir.join(file)).map_err(|source| CgroupError::Read {
            path: dir.join(file),
            source,
        })?;
        if own.trim().is_empty() {
            let from = parent.join(file);
            let value = fs::read_to_string(&from)
                .map_err(|source| CgroupError::Read { path: from, source })?;
            write(&dir.join(file), value.trim())?;
        }
    }
    Ok(())
}

/// The pids in `cgroup.procs` of `dir` and of every cgroup below it; empty when `dir` is gone.
/// (A pid of 0 is a process outside this pid namespace; it cannot be signalled from here.)
fn pids_below(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let procs = dir.join("cgroup.procs");
    let text = match fs::read_to_string(&procs) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: procs,
                source,
            });
        }
    };
    let mut pids: Vec<i32> = text
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|&p| p > 0)
        .collect();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(pids_below(&e.path())?);
            }
        }
    }
    Ok(pids)
}

/// Those of `pids` that are neither gone nor zombies.
fn live_pids(pids: &[i32]) -> Vec<i32> {
    pids.iter().copied().filter(|&p| !is_dead(p)).collect()
}

/// Gone, or a zombie (state `Z`/`X` in `/proc/<pid>/stat`, after the command's closing paren).
fn is_dead(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next());
    matches!(state, None | Some('Z') | Some('X'))
}

/// A process of a plugin cgroup, pinned by a pidfd so that signalling it can never reach a
/// process that reused its pid.
struct Member {
    pid: i32,
    pidfd: OwnedFd,
}

impl Member {
    /// The process `pid` if it is alive and in `cgroup` (a `plugd-<id>` name) or below it. The
    /// pidfd is opened first and checked to be still alive after `/proc/<pid>/cgroup` was read:
    /// had the process exited in between (and its pid been reused), the read could have been
    /// another process's, but a pidfd never comes back to life.
    fn open(pid: i32, cgroup: &str) -> Option<Member> {
        let raw = rustix::process::Pid::from_raw(pid)?;
        let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()).ok()?;
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        if !cgroup_lines_name(&text, cgroup) {
            tracing::debug!(
                pid,
                cgroup,
                "listed pid is not in the plugin's cgroup: not signalled"
            );
            return None;
        }
        (!exited(&pidfd)).then_some(Member { pid, pidfd })
    }

    fn sigkill(&self) {
        // ESRCH (already gone) is the expected race; anything else is logged.
        if let Err(e) =
            rustix::process::pidfd_send_signal(&self.pidfd, rustix::process::Signal::KILL)
            && e != rustix::io::Errno::SRCH
        {
            tracing::warn!(pid = self.pid, error = %e, "SIGKILL failed");
        }
    }
}

/// Whether the process behind `pidfd` has exited (its pidfd polls readable).
fn exited(pidfd: &OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

/// Whether a `/proc/<pid>/cgroup` text puts the process in cgroup `name` or below it, in some
/// hierarchy.
fn cgroup_lines_name(text: &str, name: &str) -> bool {
    text.lines().any(|l| {
        l.splitn(3, ':')
            .nth(2)
            .is_some_and(|path| Path::new(path).components().any(|c| c.as_os_str() == name))
    })
}

/// `rmdir` of `dir` after every cgroup below it, depth first.
fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path())?;
        }
    }
    rmdir_retrying(dir)
}

fn rmdir_retrying(dir: &Path) -> Result<(), CgroupError> {
    let mut attempt = 1;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < REMOVE_ATTEMPTS => {
                attempt += 1;
                sleep(REMOVE_INTERVAL);
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_owned(),
                    source,
                });
            }
        }
    }
}
