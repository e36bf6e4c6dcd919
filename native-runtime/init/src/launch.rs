//! The launch protocol between the daemon (one dedicated launcher thread) and `plugd-init`.
//!
//! 1. The daemon creates the plugin's cgroups (and device rules), the stdout/stderr FIFOs and the
//!    host side of the propagated mount, then execs `plugd-init` with:
//!    - fd 0: `/dev/null`; fd 1, 2: a pipe the daemon logs (init's own diagnostics);
//!    - fd [`SPEC_FD`]: read end of a pipe carrying one JSON [`SandboxSpec`](crate::SandboxSpec), then EOF;
//!    - fd [`REPORT_FD`]: write end of a pipe for [`Report`] lines (JSON, one per line).
//!    - fd [`PROBE_FD`], in a probe launch only: the probe binary to exec instead of `args[0]`.
//!    - `PR_SET_PDEATHSIG(SIGKILL)` tied to the long-lived launcher thread, so a daemon that dies
//!      mid-launch takes the half-built sandbox with it.
//! 2. `plugd-init` reads the spec, joins every cgroup in `spec.cgroups` (its own pid into
//!    `cgroup.procs`, so the plugin inherits them), then `clone(CLONE_PARENT | <namespaces>)`: the
//!    plugin process is the **daemon's** child (the daemon reaps it through a pidfd; nobody ever calls
//!    `waitpid(-1)`) and PID 1 of its pid namespace.
//! 3. `plugd-init` writes `Report::Started { pid }` (pid in the daemon's pid namespace), then waits on
//!    an error pipe shared with the child: the child runs the in-sandbox steps, says "exec" on the
//!    pipe and execs the entrypoint; the pipe is close-on-exec, so "exec" then EOF means the exec
//!    succeeded (EOF with no message: the child died before it, e.g. killed).
//!    `plugd-init` writes `Report::Running` or `Report::Failed { step, message }` and exits 0.
//!    A child that fails exits 127 after writing its message; the daemon reaps it. A child that
//!    finds plugd-init gone right before the exec gives up (exit 127) instead of running unowned.
//! 4. After the exec the plugin has no parent-death signal: it keeps running if the daemon is killed,
//!    and a restarted daemon re-adopts it (recorded pid + start time).

use serde::{Deserialize, Serialize};

/// fd on which `plugd-init` reads the spec.
pub const SPEC_FD: i32 = 3;
/// fd on which `plugd-init` writes reports.
pub const REPORT_FD: i32 = 4;
/// fd of `plugd check`'s probe binary (a sealed memfd) in a probe launch
/// ([`PlugdExt::probe`](crate::spec::PlugdExt::probe)); the sandbox process execs it with
/// `execveat(PROBE_FD, "", AT_EMPTY_PATH)` in place of the entrypoint.
pub const PROBE_FD: i32 = 5;

/// One line `plugd-init` writes on [`REPORT_FD`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    /// The plugin process exists (not yet exec'd).
    Started {
        /// Its pid in the daemon's pid namespace.
        pid: i32,
    },
    /// The entrypoint was exec'd.
    Running,
    /// A step failed; the child (if any) exited.
    Failed {
        /// The step that failed, e.g. `pivot_root`, `mount /proc`.
        step: String,
        /// What happened, with the errno text.
        message: String,
    },
}
