//! plugd-init's own side of the launch protocol (see [`crate::launch`]): read the spec from
//! fd 3, join the plugin's cgroups, create the error pipe, clone the sandbox process, report
//! `Started`, wait for the pipe, report `Running` or `Failed`, exit.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;

use crate::caps;
use crate::child;
use crate::ctx::Ctx;
use crate::error::{StepError, sys};
use crate::launch::{REPORT_FD, Report, SPEC_FD};
use crate::spec::SandboxSpec;
use crate::sys::linux::Linux;
use crate::sys::{Forked, Syscall};

/// Writes report lines on fd 4.
struct Reporter(File);

impl Reporter {
    fn send(&mut self, r: &Report) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.0.write_all(&line)
    }
}

/// The binary's main. Returns the exit code: 0 once a final report was written.
pub fn main() -> i32 {
    let s = Linux;
    let Ok(fd) = s.take_inherited_fd(REPORT_FD) else {
        eprintln!("plugd-init: fd {REPORT_FD} is not open: plugd-init is started by plugd only");
        return 2;
    };
    let mut out = Reporter(File::from(fd));
    let report = match launch(&s, &mut out) {
        Ok(r) => r,
        Err(e) => Report::Failed {
            step: e.step(),
            message: e.message(),
        },
    };
    if let Report::Failed { step, message } = &report {
        eprintln!("plugd-init: {step}: {message}");
    }
    match out.send(&report) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

fn read_spec(s: &Linux) -> Result<SandboxSpec, StepError> {
    let fd = s
        .take_inherited_fd(SPEC_FD)
        .map_err(|e| StepError::ReadSpec(format!("fd {SPEC_FD}: {e}")))?;
    let mut text = Vec::new();
    File::from(fd)
        .read_to_end(&mut text)
        .map_err(|e| StepError::ReadSpec(e.to_string()))?;
    serde_json::from_slice(&text).map_err(|e| StepError::ReadSpec(e.to_string()))
}

/// Validates the spec and logs what it ignores.
fn plan(s: &dyn Syscall, spec: SandboxSpec) -> Result<Ctx, StepError> {
    let text = s
        .read_file(Path::new("/proc/sys/kernel/cap_last_cap"))
        .unwrap_or_default();
    let last_cap = caps::parse_last_cap(&text).unwrap_or(caps::NAMES.len() as u8 - 1);
    let (ctx, warnings) = Ctx::new(spec, last_cap)?;
    for w in warnings {
        eprintln!("plugd-init: plugin {}: {w}", ctx.ext.id);
    }
    Ok(ctx)
}

/// Before the clone: become non-dumpable (runc's stage 0 does the same first thing: the clone
/// inherits it, so neither plugd-init nor the sandbox process can be ptraced or have its
/// `/proc/<pid>` files opened by the plugin's processes until the entrypoint's `execve` resets
/// it), join every cgroup (so the sandbox is born in them and the cgroup mount shows them), and
/// create the time namespace, which only `unshare` can.
pub fn prepare(s: &dyn Syscall, ctx: &Ctx) -> Result<(), StepError> {
    s.set_dumpable(false)
        .map_err(sys("prctl PR_SET_DUMPABLE 0"))
        .map_err(StepError::NonDumpable)?;
    let pid = std::process::id().to_string();
    for dir in &ctx.ext.cgroups {
        s.write_file(&dir.join("cgroup.procs"), &pid)
            .map_err(|e| StepError::JoinCgroup {
                path: dir.display().to_string(),
                source: sys("write cgroup.procs")(e),
            })?;
    }
    if ctx.ns.time {
        let newtime = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
        match s.unshare(newtime) {
            // A kernel without time namespaces (< 5.6): dockerd drops the namespace there too.
            Err(nix::errno::Errno::EINVAL) => {
                eprintln!("plugd-init: no time namespace support in this kernel: not created");
            }
            other => other
                .map_err(sys("unshare time namespace"))
                .map_err(StepError::Clone)?,
        }
    }
    Ok(())
}

fn launch(s: &Linux, out: &mut Reporter) -> Result<Report, StepError> {
    let spec = read_spec(s)?;
    let mut ctx = plan(s, spec)?;
    prepare(s, &ctx)?;
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(sys("pipe2"))
        .map_err(StepError::Clone)?;
    match s
        .clone_parent(ctx.ns.clone_flags())
        .map_err(sys("clone"))
        .map_err(StepError::Clone)?
    {
        Forked::Child => {
            drop(r);
            ctx.sync = Some(w);
            child::main(ctx, s)
        }
        Forked::Parent(pid) => {
            drop(w);
            drop(ctx);
            let _ = out.send(&Report::Started { pid });
            let mut text = String::new();
            let read = File::from(r).read_to_string(&mut text);
            read.map_err(|e| StepError::Died(format!("reading the error pipe: {e}")))?;
            Ok(child::outcome(&text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PlugdExt;
    use crate::sys::recording::Recording;

    #[test]
    fn cgroups_are_joined_before_the_clone() {
        let mut spec = SandboxSpec::default();
        spec.root.path = "/rootfs".into();
        spec.process.args = vec!["/x".into()];
        spec.plugd = Some(PlugdExt {
            cgroups: vec![
                "/sys/fs/cgroup/pids/p1".into(),
                "/sys/fs/cgroup/memory/p1".into(),
            ],
            ..Default::default()
        });
        let r = Recording::new();
        let ctx = plan(&r, spec).unwrap();
        prepare(&r, &ctx).unwrap();
        let pid = std::process::id();
        let calls = r.calls();
        // Non-dumpable before the joins and the clone (which inherits it).
        let dumpable = calls.iter().position(|c| c == "set_dumpable false");
        let first_join = calls.iter().position(|c| c.starts_with("write_file"));
        assert!(dumpable.is_some_and(|d| Some(d) < first_join), "{calls:#?}");
        assert_eq!(
            r.calls_of("write_file"),
            [
                format!("write_file /sys/fs/cgroup/pids/p1/cgroup.procs \"{pid}\""),
                format!("write_file /sys/fs/cgroup/memory/p1/cgroup.procs \"{pid}\""),
            ]
        );
        r.fail_nth("write_file", 3, nix::errno::Errno::EACCES);
        let err = prepare(&r, &ctx).unwrap_err();
        assert_eq!(err.step(), "join cgroup /sys/fs/cgroup/pids/p1");
    }

    #[test]
    fn a_refused_non_dumpable_stops_the_launch() {
        let mut spec = SandboxSpec::default();
        spec.root.path = "/rootfs".into();
        spec.process.args = vec!["/x".into()];
        let r = Recording::new();
        let ctx = plan(&r, spec).unwrap();
        r.fail_nth("set_dumpable", 1, nix::errno::Errno::EINVAL);
        let err = prepare(&r, &ctx).unwrap_err();
        assert_eq!(err.step(), "non-dumpable");
        assert_eq!(
            err.message(),
            "prctl PR_SET_DUMPABLE 0: EINVAL: Invalid argument"
        );
    }
}
