//! The wire contract between plugd and its probes: what plugd asks a probe to try ([`Plan`]) and
//! what the probe saw ([`Report`]).
//!
//! A probe runs in place of a plugin's entrypoint, in that plugin's sandbox (native: the static
//! `plugd-probe` binary, exec'd by `plugd-init` where the entrypoint would be; wasm: the
//! `plugd-probe` component, instantiated with the plugin's WASI grants and host imports; dockerd:
//! the same static binary in a bundle dockerd enables). It is asked once, with
//! `POST /Probe.Check` and a [`Plan`] as the body, and answers a [`Report`]: one [`Attempt`] per
//! thing it tried, named by the ids below. The probe judges nothing: it tries and reports, and
//! plugd (`check::rows`) compares what it saw with what the declaration implies. A probe runs in
//! a sandbox the plugin's rootfs and settings shape, so plugd reads its report as it reads any
//! plugin reply: capped, strictly decoded, every id it does not expect ignored.
//!
//! Attempt ids (`<class>:<what>`; `ok` is always "the access or operation succeeded"):
//! - `status:<Field>` for `CapInh CapPrm CapEff CapBnd CapAmb NoNewPrivs Seccomp`: `detail` is the
//!   value in `/proc/self/status` (native only).
//! - `op:<CAP_*>`: the operation that capability gates (see [`CAP_OPERATIONS`]), tried once;
//!   `detail` names the operation and the errno.
//! - `ns:<net|pid|ipc|uts|mnt|cgroup|user>`: `detail` is the inode of `/proc/self/ns/<name>`
//!   (native only).
//! - `net:interfaces`: `detail` is the sorted, comma-separated names in `/sys/class/net` (native).
//! - `net:host-loopback`: connect to `127.0.0.1:<Host::loopback_port>` and read [`Plan::nonce`].
//! - `net:bind`: bind and listen on `127.0.0.1:0`.
//! - `net:lookup`: native: a UDP socket connected to the first `nameserver` of `/etc/resolv.conf`
//!   (a query could be sent); wasm: `ip-name-lookup` of `localhost`.
//! - `mount:<destination>:read`, `mount:<destination>:write` (create and remove
//!   `<destination>/.plugd-check-<nonce>`; a file mount is opened for writing instead),
//!   `mount:<destination>:identity` (`detail`: [`listing`] of the directory, or `file <size>`).
//! - `escape:absolute`, `escape:dotdot`, `escape:symlink`: read [`Host::canary`] by its absolute host
//!   path, by `/../../..` + that path, and through a symlink to it made in a writable place;
//!   `escape:mount:<destination>` by `<destination>/` + enough `../` + that path. `ok` means the
//!   probe read the nonce: the sandbox leaked.
//! - `propagated:write`: create `<propagated>/plugd-check-<nonce>` holding the nonce;
//!   `propagated:mount` (native, with `CAP_SYS_ADMIN` effective): mount a tmpfs at
//!   `<propagated>/plugd-check-<nonce>.mnt` and create `nonce` in it. plugd then looks for both on
//!   the host side.
//! - `device:<path>`: open the device read-only, non-blocking (`detail`: errno).
//! - `device:mknod:<c|b>:<major>:<minor>` for each of [`UNDECLARED_DEVICES`]: `mknod` a node in a
//!   writable place and open it read-only (the device cgroup's verdict; `detail` says which step
//!   failed). ENXIO/ENODEV on open count as `ok`: the cgroup let it through, the driver is absent.
//! - `proc:host-pid`: read `/proc/<Host::pid>/stat` and find the comm [`Host::comm`] (native).
//! - `env`, `args`, `cwd`: `detail` is the JSON array of the environment / of argv, the working
//!   directory.
//! - `mount:<destination>:inode` (native): `detail` is `<major>:<minor>:<inode>` of the destination
//!   as `stat` sees it (the same numbers as the host source's for a bind).
//! - `device:<path>` on success has `detail` `<c|b> <major>:<minor>` of the opened node (`fstat`).
//! - `sandbox:proc-sys-write`, `sandbox:sys-write` (native): `faccessat(W_OK)` on
//!   `/proc/sys/kernel/hostname` (a root-writable tunable: procfs refuses write access to its
//!   directories whatever the mount) and `/sys/kernel` (`EROFS` is the denial dockerd's read-only
//!   mounts give).
//! - `leak:<destination>` (native, with `CAP_SYS_ADMIN` effective): a tmpfs mounted, and **left
//!   mounted**, at `<destination>/.plugd-check-<nonce>.leak` for `/` and every declared mount the
//!   plan marks `writable`; plugd then looks for mounts bearing the nonce on the host (none may be
//!   there but those in the propagated mount) and removes the directories from the sources.
//! - Any attempt that could not be made as designed (a time limit hit, no scratch directory, a
//!   setup step failing, `/proc` not being procfs) is `ok: false` with `detail` starting
//!   `untried: `: plugd counts it as a mismatch, never as a denial.
//! - `import:host-links` (wasm: `delete-link` of a name plugd never made: `not-found` means it
//!   works, `unsupported` that it is refused), `import:engine-metrics` (wasm: a read; native: connect
//!   to `/run/docker/metrics.sock`).

use serde::{Deserialize, Serialize};

/// The RPC path of the one call a probe answers (after `Plugin.Activate`).
pub const CHECK_METHOD: &str = "Probe.Check";
/// The socket file a probe listens on inside its sandbox's `/run/docker/plugins`: plugd names it
/// in the probe's spec, whatever the plugin's `Interface.Socket` says.
pub const PROBE_SOCKET: &str = "plugd-probe.sock";
/// The `/proc/self/status` fields a native probe reports as `status:<Field>`, in order.
pub const STATUS_FIELDS: [&str; 7] = [
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
];
/// Cap on a report plugd reads.
pub const MAX_REPORT: usize = 1 << 20;
/// Most entries [`listing`] keeps.
pub const MAX_LISTING: usize = 256;

/// Device nodes a probe makes with `mknod` to see whether the device cgroup lets an undeclared
/// device open: `(type, major, minor, what)`. FUSE is the one dockerd denies explicitly; loop0 is
/// a block device no default rule allows.
pub const UNDECLARED_DEVICES: [(char, u32, u32, &str); 2] =
    [('c', 10, 229, "fuse"), ('b', 7, 0, "loop0")];

/// The operation the native probe tries for a capability, by name: each is harmless (it changes
/// nothing outside the probe's own sandbox, or sets a value to what it already is), and fails
/// with `EPERM` exactly when the capability is not effective. Capabilities without one are
/// judged by their bits alone.
pub const CAP_OPERATIONS: [(&str, &str); 12] = [
    ("CAP_CHOWN", "chown a file of its own to 1:1"),
    (
        "CAP_DAC_OVERRIDE",
        "open for writing a mode-000 file owned by uid 1",
    ),
    (
        "CAP_FOWNER",
        "chmod a file owned by uid 1 (after CAP_CHOWN gave it away)",
    ),
    (
        "CAP_MKNOD",
        "mknod a character device node (1:3, null) in its scratch directory",
    ),
    ("CAP_NET_RAW", "open a raw IPv4 socket"),
    (
        "CAP_NET_BIND_SERVICE",
        "bind 127.0.0.1 on a port below 1024",
    ),
    ("CAP_NET_ADMIN", "set lo's MTU to the value it has"),
    ("CAP_SETUID", "setresuid(1,1,1) in a forked child"),
    ("CAP_SETGID", "setgroups([1]) in a forked child"),
    ("CAP_SYS_CHROOT", "chroot(\"/\") in a forked child"),
    (
        "CAP_SYS_ADMIN",
        "mount a tmpfs on a fresh directory in its scratch directory, then unmount it",
    ),
    (
        "CAP_SETPCAP",
        "drop a capability from the bounding set in a forked child",
    ),
];

/// What plugd asks a probe to try. Built by plugd from the plugin's declaration and the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Random per check: files and mounts the probe makes are named with it, and the host's
    /// canary and loopback listener hold it, so nothing a plugin left can pass for it.
    pub nonce: String,
    /// Facts of plugd's own side (the host).
    pub host: Host,
    /// Every mount the plugin declares, by destination.
    pub mounts: Vec<PlanMount>,
    /// The `PropagatedMount` destination, when declared.
    pub propagated_mount: Option<String>,
    /// The device paths the sandbox should open (the effective `Linux.Devices` paths).
    pub devices: Vec<String>,
    /// Every capability name plugd knows ([`crate::config::CAPABILITIES`]): the probe reports the
    /// operation of each that has one.
    pub capabilities: Vec<String>,
}

/// plugd's side of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// A TCP listener plugd holds on the host's `127.0.0.1` for the check; it writes the nonce to
    /// whoever connects.
    pub loopback_port: u16,
    /// Absolute host path of a file holding the nonce, outside every mount of the plugin.
    pub canary: String,
    /// plugd's pid on the host.
    pub pid: u32,
    /// plugd's `comm` (`/proc/<pid>/stat`'s second field without the parentheses).
    pub comm: String,
}

/// One declared mount as a probe tries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanMount {
    /// Where it is in the sandbox.
    pub destination: String,
    /// Whether the source is a directory (else a file is expected).
    pub directory: bool,
    /// Whether the declaration makes it writable (not `ro`): where a `leak:` mount is tried.
    #[serde(default)]
    pub writable: bool,
}

/// What a probe saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// `native` or `wasm`, and the probe's version: `native 0.1.0`.
    pub probe: String,
    /// One entry per attempt, in the order made.
    pub attempts: Vec<Attempt>,
}

/// One thing a probe tried.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    /// See the module docs.
    pub id: String,
    /// The access or operation succeeded.
    pub ok: bool,
    /// A value read, or the error (an errno name such as `EPERM`, or a WASI error code).
    pub detail: String,
}

impl Attempt {
    /// An attempt that succeeded with `detail`.
    pub fn ok(id: impl Into<String>, detail: impl Into<String>) -> Self {
        Attempt {
            id: id.into(),
            ok: true,
            detail: detail.into(),
        }
    }

    /// An attempt that failed with `detail`.
    pub fn failed(id: impl Into<String>, detail: impl Into<String>) -> Self {
        Attempt {
            id: id.into(),
            ok: false,
            detail: detail.into(),
        }
    }
}

/// A directory's entry names as plugd and the probes write them for `mount:<d>:identity`: sorted
/// bytewise, `.plugd-check-*` left out (a concurrent check's), at most [`MAX_LISTING`], joined by
/// `/` (which no name contains).
pub fn listing<I, S>(names: I) -> String
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut names: Vec<String> = names
        .into_iter()
        .map(Into::into)
        .filter(|n| !n.starts_with(".plugd-check-") && n != "." && n != "..")
        .collect();
    names.sort();
    names.truncate(MAX_LISTING);
    names.join("/")
}

/// The id of a mount attempt: `mount:<destination>:<what>`.
pub fn mount_id(destination: &str, what: &str) -> String {
    format!("mount:{destination}:{what}")
}

/// The id of a device attempt: `device:<path>`.
pub fn device_id(path: &str) -> String {
    format!("device:{path}")
}

/// The id of an undeclared-device attempt: `device:mknod:<c|b>:<major>:<minor>`.
pub fn mknod_id(kind: char, major: u32, minor: u32) -> String {
    format!("device:mknod:{kind}:{major}:{minor}")
}

/// The id of an escape through a mount: `escape:mount:<destination>`.
pub fn escape_mount_id(destination: &str) -> String {
    format!("escape:mount:{destination}")
}

/// The id of a leak attempt: `leak:<destination>`.
pub fn leak_id(destination: &str) -> String {
    format!("leak:{destination}")
}

/// The directory a `leak:` attempt mounts on, in `<destination>`.
pub fn leak_name(nonce: &str) -> String {
    format!(".plugd-check-{nonce}.leak")
}

/// The prefix of an attempt's detail when it could not be made as designed.
pub const UNTRIED: &str = "untried: ";

/// The name of what a probe creates in the propagated mount (`propagated:write`), and
/// `<that>.mnt` for its mount.
pub fn propagated_name(nonce: &str) -> String {
    format!("plugd-check-{nonce}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_round_trips_and_refuses_unknown_fields() {
        let plan = Plan {
            nonce: "n1".into(),
            host: Host {
                loopback_port: 4000,
                canary: "/run/plugd/check/n1/canary".into(),
                pid: 7,
                comm: "plugd".into(),
            },
            mounts: vec![PlanMount {
                destination: "/data".into(),
                directory: true,
                writable: true,
            }],
            propagated_mount: Some("/pm".into()),
            devices: vec!["/dev/fuse".into()],
            capabilities: vec!["CAP_CHOWN".into()],
        };
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["extra"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Plan>(v).is_err());
    }

    #[test]
    fn listings_are_sorted_capped_and_ignore_check_files() {
        assert_eq!(listing(["b", "a", ".plugd-check-x", "c"]), "a/b/c");
        let many: Vec<String> = (0..1000).map(|i| format!("{i:04}")).collect();
        assert_eq!(listing(many).split('/').count(), MAX_LISTING);
    }

    #[test]
    fn every_operation_names_a_known_capability() {
        for (cap, _) in CAP_OPERATIONS {
            assert!(crate::config::CAPABILITIES.contains(&cap), "{cap}");
        }
    }
}
