//! Errors. A [`StepError`] names the step that failed — that name becomes
//! `Report::Failed.step`, which is what the daemon logs and what an operator greps for — and
//! carries a [`Failure`]: the call that failed with its errno, or why a check refused.

use nix::errno::Errno;

/// What went wrong inside a step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// A call failed.
    #[error("{call}: {errno}")]
    Sys {
        /// The call and its salient argument, e.g. `mount tmpfs`.
        call: String,
        /// What the kernel said.
        errno: Errno,
    },
    /// A check refused to go on (a symlink where a directory must be, a wrong device number).
    #[error("{0}")]
    Refused(String),
}

impl Failure {
    /// The errno of a failed call, for fallbacks keyed on it.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Failure::Sys { errno, .. } => Some(*errno),
            Failure::Refused(_) => None,
        }
    }
}

/// `.map_err(sys("mount tmpfs"))`: wraps an errno with the call that returned it.
pub fn sys(call: impl Into<String>) -> impl FnOnce(Errno) -> Failure {
    let call = call.into();
    move |errno| Failure::Sys { call, errno }
}

/// A failed step (or, for the parent-side variants, a failed launch before the sandbox exists).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The spec on fd 3 could not be read or parsed.
    #[error("read spec: {0}")]
    ReadSpec(String),
    /// The spec asks for something the init cannot do.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// `prctl(PR_SET_DUMPABLE, 0)` failed.
    #[error("non-dumpable: {0}")]
    NonDumpable(#[source] Failure),
    /// Writing our pid into a cgroup failed.
    #[error("join cgroup {path}: {source}")]
    JoinCgroup {
        /// The cgroup directory.
        path: String,
        /// Why.
        source: Failure,
    },
    /// Creating the sandbox process failed.
    #[error("clone: {0}")]
    Clone(#[source] Failure),
    /// The sandbox process died before exec without saying why.
    #[error("sandbox process: {0}")]
    Died(String),
    /// `setsid`.
    #[error("setsid: {0}")]
    Setsid(#[source] Failure),
    /// Pointing fds 0-2 at /dev/null and the FIFOs.
    #[error("stdio: {0}")]
    Stdio(#[source] Failure),
    /// `sethostname`.
    #[error("hostname: {0}")]
    Hostname(#[source] Failure),
    /// Propagation of `/` (before or after pivot_root).
    #[error("root propagation: {0}")]
    RootPropagation(#[source] Failure),
    /// Making the rootfs a private mount point of its own.
    #[error("rootfs: {0}")]
    Rootfs(#[source] Failure),
    /// One of the files and directories dockerd's `initlayer.Setup` puts in the rootfs.
    #[error("initlayer {path}: {source}")]
    InitLayer {
        /// Path inside the rootfs.
        path: String,
        /// Why.
        source: Failure,
    },
    /// One spec mount.
    #[error("mount {dest}: {source}")]
    Mount {
        /// The mount's destination.
        dest: String,
        /// Why.
        source: Failure,
    },
    /// One device node or /dev symlink.
    #[error("device {path}: {source}")]
    Device {
        /// Path inside the sandbox.
        path: String,
        /// Why.
        source: Failure,
    },
    /// Bringing `lo` up.
    #[error("network: {0}")]
    Network(#[source] Failure),
    /// pivot_root (or its MS_MOVE fallback).
    #[error("pivot_root: {0}")]
    PivotRoot(#[source] Failure),
    /// A sandbox mount other than the propagated mount is a peer of a host mount.
    #[error("host peer groups: {0}")]
    HostPeers(#[source] Failure),
    /// Re-pointing fds 0-2 from the host's /dev/null to the sandbox's.
    #[error("reopen /dev/null: {0}")]
    DevNull(#[source] Failure),
    /// A readonly path or a deferred read-only tmpfs.
    #[error("readonly path {path}: {source}")]
    ReadonlyPath {
        /// Path inside the sandbox.
        path: String,
        /// Why.
        source: Failure,
    },
    /// A masked path.
    #[error("masked path {path}: {source}")]
    MaskedPath {
        /// Path inside the sandbox.
        path: String,
        /// Why.
        source: Failure,
    },
    /// `chdir(cwd)`.
    #[error("cwd: {0}")]
    Cwd(#[source] Failure),
    /// Bounding, uid/gid and capability sets.
    #[error("capabilities: {0}")]
    Capabilities(#[source] Failure),
    /// Marking inherited fds close-on-exec.
    #[error("close fds: {0}")]
    CloseFds(#[source] Failure),
    /// The cwd turned out to be outside the root.
    #[error("verify cwd: {0}")]
    VerifyCwd(#[source] Failure),
    /// Resolving and exec'ing the entrypoint.
    #[error("exec: {0}")]
    Exec(#[source] Failure),
}

impl StepError {
    /// The step's name as reported in `Report::Failed.step`: `mount /proc`, `pivot_root`, ...
    pub fn step(&self) -> String {
        let s = self.to_string();
        let Some(source) = self.source_text() else {
            return s;
        };
        s.strip_suffix(&source)
            .map(|p| p.trim_end_matches([' ', ':']).to_owned())
            .unwrap_or(s)
    }

    /// What happened, without the step name.
    pub fn message(&self) -> String {
        self.source_text().unwrap_or_else(|| self.to_string())
    }

    fn source_text(&self) -> Option<String> {
        use StepError::*;
        match self {
            ReadSpec(m) | InvalidSpec(m) | Died(m) => Some(m.clone()),
            JoinCgroup { source, .. }
            | Mount { source, .. }
            | Device { source, .. }
            | InitLayer { source, .. }
            | ReadonlyPath { source, .. }
            | MaskedPath { source, .. } => Some(source.to_string()),
            NonDumpable(f) | Clone(f) | Setsid(f) | Stdio(f) | Hostname(f) | RootPropagation(f)
            | Rootfs(f) | Network(f) | PivotRoot(f) | HostPeers(f) | DevNull(f) | Cwd(f)
            | Capabilities(f) | CloseFds(f) | VerifyCwd(f) | Exec(f) => Some(f.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_and_message_split_the_display() {
        let e = StepError::Mount {
            dest: "/proc".into(),
            source: Failure::Sys {
                call: "mount proc".into(),
                errno: Errno::EPERM,
            },
        };
        assert_eq!(e.step(), "mount /proc");
        assert_eq!(e.message(), "mount proc: EPERM: Operation not permitted");
        let e = StepError::PivotRoot(Failure::Refused("no".into()));
        assert_eq!(e.step(), "pivot_root");
        assert_eq!(e.message(), "no");
    }
}
