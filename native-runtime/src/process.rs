//! One plugin process, held by a pidfd: signalled, watched and reaped without pid-reuse races and
//! without ever calling `waitpid(-1)` (which would steal other children's statuses).
//!
//! A freshly launched plugin is plugd's own child (`plugd-init` clones it with `CLONE_PARENT`), so
//! its pid cannot be reused before plugd reaps it, and `waitid(P_PIDFD)` collects its status. An
//! adopted plugin (launched by a previous plugd) is nobody's child here: `waitid` says `ECHILD`,
//! and the pidfd becoming readable is all there is to observe.

use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use rustix::process::{
    Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, pidfd_open, pidfd_send_signal, waitid,
};
use std::fmt;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// How a plugin process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// `exit(code)`.
    Status(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Gone, but not plugd's child, so its status went to someone else.
    Unknown,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Status(code) => write!(f, "exited with status {code}"),
            Exit::Signal(sig) => match signal_name(*sig) {
                Some(name) => write!(f, "was killed by signal {sig} ({name})"),
                None => write!(f, "was killed by signal {sig}"),
            },
            Exit::Unknown => write!(f, "exited (status unknown: adopted from a previous plugd)"),
        }
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

/// A process watched through its pidfd.
pub(crate) struct PluginProcess {
    pid: i32,
    pidfd: AsyncFd<OwnedFd>,
    exit: Mutex<Option<Exit>>,
}

impl fmt::Debug for PluginProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginProcess")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl PluginProcess {
    /// Opens a pidfd for `pid` (must run inside a tokio runtime).
    pub(crate) fn open(pid: i32) -> std::io::Result<Self> {
        let raw = Pid::from_raw(pid).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid pid {pid}"),
            )
        })?;
        let fd = pidfd_open(raw, PidfdFlags::empty())?;
        // SAFETY: an `OwnedFd` is a valid open descriptor that stays open, and always returns the
        // same number, for as long as the `AsyncFd` owns it.
        let pidfd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(PluginProcess {
            pid,
            pidfd,
            exit: Mutex::new(None),
        })
    }

    /// The pid in plugd's pid namespace.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `sig`; a process that already exited is not an error.
    pub(crate) fn signal(&self, sig: Signal) -> std::io::Result<()> {
        match pidfd_send_signal(self.pidfd.get_ref(), sig) {
            Ok(()) | Err(Errno::SRCH) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// How the process ended, or `None` while it runs. Reaps it when it is plugd's child.
    pub(crate) fn try_exit(&self) -> Option<Exit> {
        let mut exit = self.exit.lock().unwrap_or_else(|p| p.into_inner());
        if exit.is_none() && self.pidfd_readable() {
            *exit = Some(self.reap());
        }
        *exit
    }

    /// Waits until the process has exited (reaping it when it is plugd's child).
    pub(crate) async fn exited(&self) -> Exit {
        loop {
            if let Some(exit) = self.try_exit() {
                return exit;
            }
            match self.pidfd.readable().await {
                Ok(mut guard) => {
                    if let Some(exit) = self.try_exit() {
                        return exit;
                    }
                    guard.clear_ready();
                }
                // Cannot happen for a registered pidfd; do not spin if it does.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// [`Self::exited`] bounded by `timeout`.
    pub(crate) async fn exited_within(&self, timeout: Duration) -> Option<Exit> {
        tokio::time::timeout(timeout, self.exited()).await.ok()
    }

    fn pidfd_readable(&self) -> bool {
        let mut fds = [PollFd::new(self.pidfd.get_ref(), PollFlags::IN)];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }

    /// Collects the status of an exited process; `Unknown` when it is not plugd's child.
    fn reap(&self) -> Exit {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        match waitid(WaitId::PidFd(self.pidfd.get_ref().as_fd()), options) {
            Ok(Some(status)) => {
                if let Some(code) = status.exit_status() {
                    Exit::Status(code)
                } else if let Some(sig) = status.terminating_signal() {
                    Exit::Signal(sig)
                } else {
                    Exit::Unknown
                }
            }
            Ok(None) | Err(_) => Exit::Unknown,
        }
    }
}

/// The start time (field 22, clock ticks since boot) of `pid`, from `/proc/<pid>/stat`.
pub(crate) fn start_time(pid: i32) -> std::io::Result<u64> {
    let stat = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))?;
    parse_start_time(&stat).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("cannot parse /proc/{pid}/stat"),
        )
    })
}

/// Field 22 of a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so fields are counted from the **last** `)`.
pub(crate) fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (state); field 22 is the 20th after the comm.
    rest.split_ascii_whitespace().nth(22 - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_line(comm: &str, start: u64) -> String {
        let mut fields: Vec<String> = (3..=52).map(|i| i.to_string()).collect();
        fields[0] = "S".to_string();
        fields[22 - 3] = start.to_string();
        format!("4242 ({comm}) {}\n", fields.join(" "))
    }

    #[test]
    fn start_time_is_field_22() {
        assert_eq!(parse_start_time(&stat_line("sleep", 98765)), Some(98765));
    }

    #[test]
    fn comm_with_spaces_and_parens() {
        for comm in [
            "a b",
            "x) 1 2 3 (y",
            "))",
            "(",
            "evil) S 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 7 (",
        ] {
            assert_eq!(
                parse_start_time(&stat_line(comm, 555)),
                Some(555),
                "comm {comm:?}"
            );
        }
    }

    #[test]
    fn truncated_or_garbage() {
        assert_eq!(parse_start_time(""), None);
        assert_eq!(parse_start_time("1 (x) S 1 2"), None);
        assert_eq!(parse_start_time("no parens at all"), None);
        let not_a_number = stat_line("x", 1).replace(" 21 1 23 ", " 21 zz 23 ");
        assert_eq!(parse_start_time(&not_a_number), None);
    }

    #[test]
    fn own_start_time_is_stable() {
        let me = std::process::id() as i32;
        let a = start_time(me).unwrap();
        assert!(a > 0);
        assert_eq!(start_time(me).unwrap(), a);
    }

    #[tokio::test]
    #[allow(
        clippy::zombie_processes,
        reason = "reaped through the pidfd by PluginProcess"
    )]
    async fn child_exit_status_and_signal() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let p = PluginProcess::open(child.id() as i32).unwrap();
        assert_eq!(p.exited().await, Exit::Status(3));
        assert_eq!(p.try_exit(), Some(Exit::Status(3)));
        // Signalling a reaped process is not an error.
        p.signal(Signal::TERM).unwrap();

        let child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let p = PluginProcess::open(child.id() as i32).unwrap();
        assert_eq!(p.try_exit(), None);
        assert_eq!(p.exited_within(Duration::from_millis(50)).await, None);
        p.signal(Signal::KILL).unwrap();
        let exit = p.exited().await;
        assert_eq!(exit, Exit::Signal(libc::SIGKILL));
        assert_eq!(exit.to_string(), "was killed by signal 9 (SIGKILL)");
        // Dropping the std Child afterwards must not wait on anything.
        drop(child);
    }
}
