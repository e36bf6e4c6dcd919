//! The state the steps share: the validated spec, what was derived from it before the clone
//! (namespaces, capability masks), and what earlier steps hand to later ones (the root fd, the
//! tmpfs mounts to make read-only after pivot_root, the host's peer groups).

use std::collections::BTreeSet;
use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use crate::caps::CapPlan;
use crate::error::{Failure, StepError};
use crate::mountopt::MountOpts;
use crate::resolve::Root;
use crate::spec::{PlugdExt, SandboxSpec};

/// Which namespaces are new. Mount and UTS always are: the init must never mount in the
/// daemon's namespace, and dockerd always gives plugins their own UTS namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Namespaces {
    /// New pid namespace (the plugin is PID 1); dockerd's `PidHost` turns it off.
    pub pid: bool,
    /// New IPC namespace; `IpcHost` turns it off.
    pub ipc: bool,
    /// New network namespace (only `lo`); `Network.Type=host` turns it off.
    pub net: bool,
    /// New time namespace (docker ≥ 29.5 lists one); created by `unshare` before the clone
    /// because `clone(2)` cannot take `CLONE_NEWTIME`.
    pub time: bool,
}

impl Namespaces {
    /// Reads `linux.namespaces`; refuses kinds a plugin sandbox never has (user, cgroup).
    pub fn from_spec(spec: &SandboxSpec) -> Result<Namespaces, StepError> {
        let mut ns = Namespaces::default();
        for n in &spec.linux.namespaces {
            match n.kind.as_str() {
                "mount" | "uts" => {}
                "pid" => ns.pid = true,
                "ipc" => ns.ipc = true,
                "network" => ns.net = true,
                "time" => ns.time = true,
                other => {
                    return Err(StepError::InvalidSpec(format!(
                        "namespace {other:?} is not supported by the plugin sandbox"
                    )));
                }
            }
        }
        Ok(ns)
    }

    /// The flags for `clone(2)` (without `CLONE_PARENT`, which the syscall layer adds).
    pub fn clone_flags(&self) -> CloneFlags {
        let mut f = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS;
        f.set(CloneFlags::CLONE_NEWPID, self.pid);
        f.set(CloneFlags::CLONE_NEWIPC, self.ipc);
        f.set(CloneFlags::CLONE_NEWNET, self.net);
        f
    }
}

/// Everything the steps read and hand on. See the module docs.
#[derive(Debug)]
pub struct Ctx {
    /// The validated spec.
    pub spec: SandboxSpec,
    /// The plugd section (defaults when absent: inherited stdio, no cgroups, pivot_root).
    pub ext: PlugdExt,
    /// Host path of the rootfs.
    pub rootfs: PathBuf,
    /// Which namespaces are new.
    pub ns: Namespaces,
    /// Capability masks, already filtered by the kernel's `cap_last_cap`.
    pub caps: CapPlan,
    /// False when a bind mount covers all of `/dev` (then no nodes are made, as in runc).
    pub setup_dev: bool,
    /// Write end of the error pipe to plugd-init (close-on-exec); None in unit tests.
    pub sync: Option<OwnedFd>,
    /// The sandbox root, once the rootfs bind exists (then `/` after pivot_root).
    pub root: Option<Root>,
    /// tmpfs mounts asked to be `ro`: mounted rw (their contents may still be set up) and
    /// remounted read-only after pivot_root, as runc's `finalizeRootfs` does.
    pub deferred_ro: Vec<(String, MsFlags)>,
    /// The peer groups (`shared:N`) the host's mounts were in when the mount namespace was new,
    /// recorded before `/` is made shared: after pivot_root, no sandbox mount but the propagated
    /// mount may be in one of them.
    pub host_peer_groups: BTreeSet<u64>,
    /// Of those, the propagated-mount directory's: the one group the sandbox may join.
    pub propagated_group: Option<u64>,
}

impl Ctx {
    /// Validates the spec and derives the plan. Returns warnings to log (ignored capabilities).
    pub fn new(spec: SandboxSpec, last_cap: u8) -> Result<(Ctx, Vec<String>), StepError> {
        let ns = Namespaces::from_spec(&spec)?;
        let rootfs = spec.root.path.clone();
        if !rootfs.is_absolute() {
            return Err(StepError::InvalidSpec(format!(
                "root.path {:?} is not absolute",
                rootfs.display()
            )));
        }
        if spec.process.args.is_empty() {
            return Err(StepError::InvalidSpec("process.args is empty".into()));
        }
        for m in &spec.mounts {
            MountOpts::parse(&m.options).map_err(|e| StepError::Mount {
                dest: m.destination.clone(),
                source: Failure::Refused(e.to_string()),
            })?;
        }
        let (caps, warnings) = CapPlan::new(&spec.process.capabilities, last_cap);
        let setup_dev = !spec.mounts.iter().any(|m| {
            crate::resolve::clean(m.destination.as_ref()) == std::path::Path::new("/dev")
                && MountOpts::parse(&m.options).is_ok_and(|o| o.is_bind() || m.kind == "bind")
        });
        let ext = spec.plugd.clone().unwrap_or_default();
        let ctx = Ctx {
            spec,
            ext,
            rootfs,
            ns,
            caps,
            setup_dev,
            sync: None,
            root: None,
            deferred_ro: Vec::new(),
            host_peer_groups: BTreeSet::new(),
            propagated_group: None,
        };
        Ok((ctx, warnings))
    }

    /// The sandbox root; an error if a step runs before the rootfs step opened it.
    pub fn root(&self) -> Result<&Root, Failure> {
        self.root
            .as_ref()
            .ok_or_else(|| Failure::Refused("the sandbox root is not open yet".into()))
    }

    /// The error pipe, if any.
    pub fn sync_fd(&self) -> Option<BorrowedFd<'_>> {
        self.sync.as_ref().map(|f| f.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Namespace;

    fn spec_with(ns: &[&str]) -> SandboxSpec {
        let mut s = SandboxSpec::default();
        s.root.path = "/rootfs".into();
        s.process.args = vec!["/bin/true".into()];
        s.linux.namespaces = ns
            .iter()
            .map(|k| Namespace {
                kind: k.to_string(),
            })
            .collect();
        s
    }

    #[test]
    fn dockerd_namespaces_map_to_clone_flags() {
        let (c, _) = Ctx::new(spec_with(&["mount", "network", "uts", "pid", "ipc"]), 40).unwrap();
        let all = CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWNET;
        assert_eq!(c.ns.clone_flags(), all);
        let (c, _) = Ctx::new(spec_with(&["mount", "uts"]), 40).unwrap();
        assert_eq!(
            c.ns.clone_flags(),
            CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS
        );
    }

    #[test]
    fn user_and_cgroup_namespaces_are_refused() {
        for k in ["user", "cgroup", "bogus"] {
            let err = Ctx::new(spec_with(&["mount", k]), 40).unwrap_err();
            assert!(matches!(err, StepError::InvalidSpec(_)), "{k}: {err}");
        }
    }

    #[test]
    fn relative_root_and_empty_args_are_refused() {
        let mut s = spec_with(&[]);
        s.root.path = "rootfs".into();
        assert!(Ctx::new(s, 40).is_err());
        let mut s = spec_with(&[]);
        s.process.args.clear();
        assert!(Ctx::new(s, 40).is_err());
    }
}
