//! Processes by pid: identity (pid + start time, so a reused pid is never signalled), the process
//! tree from `/proc`, mount-namespace membership, and bounded terminate/kill.
//! Nothing here ever looks a process up by name.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// A process identity that survives pid reuse: pid plus its start time (clock ticks since boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcId {
    /// The pid.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`.
    pub start: u64,
}

/// The parts of `/proc/<pid>/stat` the harness needs.
#[derive(Clone, Debug)]
pub struct Stat {
    /// Single-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Start time in clock ticks since boot.
    pub start: u64,
}

/// Reads `/proc/<pid>/stat`; `None` if the process does not exist (any more).
pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ..." — comm may contain spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

impl ProcId {
    /// The identity of the running process `pid`, if it exists.
    pub fn of(pid: i32) -> Option<ProcId> {
        stat(pid).map(|s| ProcId {
            pid,
            start: s.start,
        })
    }

    /// True while this very process exists and is not a zombie.
    pub fn is_alive(&self) -> bool {
        match stat(self.pid) {
            Some(s) => s.start == self.start && s.state != 'Z' && s.state != 'X',
            None => false,
        }
    }

    /// True while this process exists, zombie or not (a zombie still holds its pid).
    fn exists(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start)
    }

    /// Sends `sig` if the pid still belongs to this process. Returns whether it was sent.
    pub fn signal(&self, sig: Signal) -> bool {
        self.is_alive() && kill(Pid::from_raw(self.pid), sig).is_ok()
    }

    /// `cmdline` with NULs turned into spaces (empty for kernel threads and zombies).
    pub fn cmdline(&self) -> String {
        cmdline(self.pid)
    }
}

impl std::fmt::Display for ProcId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, cmdline(self.pid).trim())
    }
}

/// `/proc/<pid>/cmdline` with NULs turned into spaces.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_end_matches('\0')
                .replace('\0', " ")
        })
        .unwrap_or_default()
}

/// All pids currently in `/proc`.
pub fn all_pids() -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// The mount namespace of `pid` as the kernel names it, e.g. `mnt:[4026532291]`.
pub fn mnt_ns(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Live processes (not zombies) in the given mount namespace, excluding `exclude`.
pub fn in_mnt_ns(ns: &str, exclude: i32) -> Vec<ProcId> {
    all_pids()
        .into_iter()
        .filter(|&p| p != exclude && mnt_ns(p).as_deref() == Some(ns))
        .filter_map(ProcId::of)
        .filter(ProcId::is_alive)
        .collect()
}

/// Live processes whose root directory (`/proc/<pid>/root`, as seen from this mount namespace)
/// lies under `dir`: containers and managed plugins started by a dockerd whose data-root is in `dir`.
pub fn rooted_under(dir: &Path) -> Vec<ProcId> {
    all_pids()
        .into_iter()
        .filter(|&p| {
            std::fs::read_link(format!("/proc/{p}/root")).is_ok_and(|r| r.starts_with(dir))
        })
        .filter_map(ProcId::of)
        .filter(ProcId::is_alive)
        .collect()
}

/// All live descendants of the given roots (not the roots themselves), from one `/proc` snapshot.
pub fn descendants(roots: &[i32]) -> Vec<ProcId> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for pid in all_pids() {
        if let Some(s) = stat(pid) {
            children.entry(s.ppid).or_default().push(pid);
        }
    }
    let mut seen = BTreeSet::new();
    let mut todo: Vec<i32> = roots.to_vec();
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.insert(c) {
                todo.push(c);
            }
        }
    }
    seen.into_iter()
        .filter_map(ProcId::of)
        .filter(ProcId::is_alive)
        .collect()
}

/// Reaps every zombie child of this process. Only call this when no `std::process::Child` of ours
/// still needs its exit status (cleanup), since it would steal it.
pub fn reap_zombie_children() {
    let me = std::process::id() as i32;
    for pid in all_pids() {
        if let Some(s) = stat(pid)
            && s.ppid == me
            && s.state == 'Z'
        {
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
    }
}

/// Waits until none of `ids` is alive. Those that are (or become) zombie children of this
/// process are reaped on the way, and count as gone only once reaped: a killed multi-threaded
/// process shows state `Z` while its threads still exit, and an unreaped zombie keeps its pid
/// (dockerd refuses to start while the pid in its pid file, or its containerd's, exists).
/// Returns the ones still alive at the deadline.
pub fn wait_gone(ids: &[ProcId], timeout: Duration) -> Vec<ProcId> {
    let me = std::process::id() as i32;
    let deadline = Instant::now() + timeout;
    loop {
        let mut alive = Vec::new();
        for id in ids {
            let Some(s) = stat(id.pid).filter(|s| s.start == id.start) else {
                continue;
            };
            let dead = s.state == 'Z' || s.state == 'X';
            if s.ppid == me && dead {
                let reaped = waitpid(Pid::from_raw(id.pid), Some(WaitPidFlag::WNOHANG));
                if let Ok(WaitStatus::StillAlive) = reaped {
                    alive.push(*id);
                }
            } else if !dead {
                alive.push(*id);
            }
        }
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reaps, in the background, zombies that were re-parented to this process (a child subreaper):
/// a zombie child is reaped only if it was first seen with another parent, so children this
/// process spawned itself (whose `std::process::Child` will wait for them) are never touched.
/// Scans `/proc` every 100 ms until `stop` is set.
pub fn spawn_orphan_reaper(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let me = std::process::id() as i32;
        let mut first_parent: HashMap<ProcId, i32> = HashMap::new();
        while !stop.load(Ordering::SeqCst) {
            let mut seen = HashSet::new();
            for pid in all_pids() {
                let Some(s) = stat(pid) else { continue };
                let id = ProcId {
                    pid,
                    start: s.start,
                };
                seen.insert(id);
                let first = *first_parent.entry(id).or_insert(s.ppid);
                if s.ppid == me && s.state == 'Z' && first != me {
                    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
                }
            }
            first_parent.retain(|id, _| seen.contains(id));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

/// SIGTERM, wait up to `grace`, then SIGKILL and wait up to 10 s more.
/// Returns false if the process is still alive after all that.
pub fn terminate(id: ProcId, grace: Duration) -> bool {
    if !id.signal(Signal::SIGTERM) {
        return wait_gone(&[id], Duration::from_secs(1)).is_empty();
    }
    if wait_gone(&[id], grace).is_empty() {
        return true;
    }
    eprintln!("harness: {id} ignored SIGTERM for {grace:?}; sending SIGKILL");
    kill_and_wait(&[id], Duration::from_secs(10)).is_empty()
}

/// SIGKILL every process in `ids`, then wait for them; returns the survivors.
pub fn kill_and_wait(ids: &[ProcId], timeout: Duration) -> Vec<ProcId> {
    for id in ids {
        id.signal(Signal::SIGKILL);
    }
    wait_gone(ids, timeout)
}
