//! The in-sandbox steps, one module per kernel concept, and their order — written down once,
//! as data, in [`STEPS`], following the reference's §1.2 (runc 1.1's order): session and stdio;
//! root propagation, the rootfs as a mount point, rootfs parent private, rootfs self-bind;
//! dockerd's initlayer files; spec mounts; devices; loopback; pivot_root; the host peer group
//! check; /dev/null reopen; read-only tmpfs and root, readonly paths, masked paths; cwd;
//! capabilities and ids; close-on-exec; verify cwd; exec. (runc 1.1 does not make the new root
//! shared again after pivot_root; see [`propagation`].)
//!
//! Each step is `fn(&mut Ctx, &dyn Syscall) -> Result<(), StepError>`, so it runs the same against
//! the kernel and against the recording double.

pub mod capabilities;
pub mod cgroup_mount;
pub mod devices;
pub mod devnull;
pub mod hostname;
pub mod initlayer;
pub mod masks;
pub mod mounts;
pub mod network;
pub mod pivot;
pub mod process;
pub mod propagation;
pub mod rootfs;
pub mod session;
pub mod stdio;

use crate::ctx::Ctx;
use crate::error::StepError;
use crate::sys::Syscall;

/// One step: its name (for logs and the order table) and what it does.
pub struct Step {
    /// Short name, as in the reference's step list.
    pub name: &'static str,
    /// The step.
    pub run: fn(&mut Ctx, &dyn Syscall) -> Result<(), StepError>,
}

/// The order of the in-sandbox steps. Changing it changes the sandbox; the unit tests pin the
/// resulting call sequence.
pub static STEPS: &[Step] = &[
    Step {
        name: "setsid",
        run: session::setsid,
    },
    Step {
        name: "stdio",
        run: stdio::redirect,
    },
    Step {
        name: "hostname",
        run: hostname::set,
    },
    Step {
        name: "root propagation",
        run: propagation::before_pivot,
    },
    Step {
        name: "rootfs mount point",
        run: rootfs::mount_point,
    },
    Step {
        name: "rootfs parent private",
        run: rootfs::make_parent_private,
    },
    Step {
        name: "rootfs bind",
        run: rootfs::bind_self,
    },
    Step {
        name: "initlayer",
        run: initlayer::setup,
    },
    Step {
        name: "mounts",
        run: mounts::mount_all,
    },
    Step {
        name: "devices",
        run: devices::create_nodes,
    },
    Step {
        name: "dev symlinks",
        run: devices::symlinks,
    },
    Step {
        name: "network",
        run: network::loopback_up,
    },
    Step {
        name: "pivot_root",
        run: pivot::pivot,
    },
    Step {
        name: "host peer groups",
        run: propagation::check_host_peers,
    },
    Step {
        name: "reopen /dev/null",
        run: devnull::reopen,
    },
    Step {
        name: "read-only tmpfs",
        run: masks::deferred_readonly,
    },
    Step {
        name: "read-only root",
        run: masks::readonly_root,
    },
    Step {
        name: "readonly paths",
        run: masks::readonly_paths,
    },
    Step {
        name: "masked paths",
        run: masks::masked_paths,
    },
    Step {
        name: "cwd",
        run: process::chdir_cwd,
    },
    Step {
        name: "capabilities",
        run: capabilities::apply,
    },
    Step {
        name: "close fds",
        run: process::close_fds,
    },
    Step {
        name: "verify cwd",
        run: process::verify_cwd,
    },
    Step {
        name: "exec",
        run: process::exec,
    },
];

/// Runs every step in order; the first failure stops the sandbox.
pub fn run_all(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    STEPS.iter().try_for_each(|step| (step.run)(ctx, s))
}
