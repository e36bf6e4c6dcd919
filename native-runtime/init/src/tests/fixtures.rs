//! Specs shaped like dockerd's plugin specs (`04-plugin-oci-spec.json` and the probes), and a
//! recording double describing a host like the reference VM (cgroup v1, no /proc/kcore).

use crate::spec::{
    Capabilities, Device, Linux, Mount, Namespace, PlugdExt, Process, Root, SandboxSpec, User,
};
use crate::sys::recording::{Recording, char_dev, regular};
use crate::sys::{FileStat, FsStat};

/// dockerd's default 14 capabilities.
pub use crate::spec::DEFAULT_CAPABILITIES as DEFAULT_CAPS;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn mount(dest: &str, kind: &str, source: &str, opts: &[&str]) -> Mount {
    Mount {
        destination: dest.into(),
        kind: kind.into(),
        source: source.into(),
        options: strings(opts),
    }
}

/// dockerd's default mounts, in its order (the contract both crates share).
pub use crate::spec::default_mounts;

/// The network binds dockerd adds when `Network.Type` is set.
pub fn network_mounts() -> Vec<Mount> {
    vec![
        mount("/etc/hosts", "bind", "/etc/hosts", &["rbind", "ro"]),
        mount(
            "/etc/resolv.conf",
            "bind",
            "/etc/resolv.conf",
            &["rbind", "ro"],
        ),
    ]
}

/// The spec of `04-plugin-oci-spec.json`: propagated mount at /data, runtime dir, network binds,
/// every namespace, rshared, dockerd's masks.
pub fn dockerd_spec() -> SandboxSpec {
    let mut mounts = default_mounts();
    mounts.push(mount(
        "/data",
        "bind",
        "/plugins/p1/propagated-mount",
        &["rbind", "rw", "rshared"],
    ));
    mounts.push(mount(
        "/run/docker/plugins",
        "bind",
        "/run/docker/plugins/p1",
        &["rbind", "rshared"],
    ));
    mounts.extend(network_mounts());
    let caps = strings(&DEFAULT_CAPS);
    SandboxSpec {
        process: Process {
            user: User { uid: 0, gid: 0 },
            args: strings(&["refvol", "--serve"]),
            env: strings(&[crate::spec::DEFAULT_PATH_ENV, "REFVOL_DATA=/data"]),
            cwd: "/".into(),
            capabilities: Capabilities {
                bounding: caps.clone(),
                effective: caps.clone(),
                permitted: caps,
                ..Default::default()
            },
            no_new_privileges: false,
        },
        root: Root {
            path: "/rootfs".into(),
            readonly: false,
        },
        hostname: None,
        mounts,
        linux: Linux {
            namespaces: ["mount", "network", "uts", "pid", "ipc"]
                .iter()
                .map(|k| Namespace {
                    kind: k.to_string(),
                })
                .collect(),
            rootfs_propagation: "rshared".into(),
            masked_paths: strings(&[
                "/proc/asound",
                "/proc/acpi",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/proc/scsi",
                "/sys/firmware",
            ]),
            readonly_paths: strings(&[
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ]),
            ..Default::default()
        },
        plugd: Some(PlugdExt {
            id: "p1".into(),
            stdout: "/run/plugd/p1.stdout".into(),
            stderr: "/run/plugd/p1.stderr".into(),
            cgroups: Vec::new(),
            no_pivot: false,
            propagated_mount: Some("/plugins/p1/propagated-mount".into()),
            probe: false,
        }),
    }
}

/// The fuse device of the `device-fuse` probe.
pub fn fuse() -> Device {
    Device {
        path: "/dev/fuse".into(),
        kind: "c".into(),
        major: 10,
        minor: 229,
        file_mode: Some(0o600),
        uid: Some(0),
        gid: Some(0),
    }
}

/// A plugin config bind mount, read-only, with a propagation option.
pub fn ro_bind() -> Mount {
    mount(
        "/hostdir",
        "bind",
        "/srv/bindsrc",
        &["rbind", "ro", "rprivate"],
    )
}

/// The host's mount table: `/` shared (as under systemd), the propagated-mount directory an
/// rshared mount of its own (plugd's `make_rshared`), the rest private.
const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
60 27 0:40 / /rootfs/proc rw - proc proc rw
70 27 254:0 /plugins/p1/propagated-mount /plugins/p1/propagated-mount rw shared:5 - ext4 /dev/vda rw
";

/// The sandbox's mount table after pivot_root (abridged): private `/` and proc, the propagated
/// mount in the host's group 5, the other binds in groups of their own (slaves of the host's).
pub const SANDBOX_MOUNTINFO: &str = "\
100 99 254:0 /rootfs / rw,relatime - ext4 /dev/vda rw
101 100 0:40 / /proc rw - proc proc rw
102 100 254:0 /plugins/p1/propagated-mount /data rw shared:5 - ext4 /dev/vda rw
103 102 0:60 / /data/vol rw shared:11 - tmpfs tmpfs rw
104 100 254:0 /run/docker/plugins/p1 /run/docker/plugins rw shared:9 master:1 - ext4 /dev/vda rw
105 100 254:0 /etc/hosts /etc/hosts ro shared:9 master:1 - ext4 /dev/vda rw
";

/// A double describing the reference VM: cgroup v1 (cpu,cpuacct co-mounted), no /proc/kcore,
/// FIFOs for stdio, files for /etc/hosts and /etc/resolv.conf, fd 0 on /dev/null.
pub fn host() -> Recording {
    let r = Recording::new();
    let fifo = FileStat {
        mode: libc::S_IFIFO | 0o600,
        rdev: 0,
    };
    r.set_stat("/run/plugd/p1.stdout", fifo)
        .set_stat("/run/plugd/p1.stderr", fifo);
    r.set_stat("/etc/hosts", regular(0o644))
        .set_stat("/etc/resolv.conf", regular(0o644));
    r.set_stat("fd0", char_dev(1, 3));
    r.set_stat("/usr/bin/refvol", regular(0o755));
    r.set_statfs(
        "/sys/fs/cgroup",
        FsStat {
            fs_type: 0x0102_1994,
            flags: 0,
        },
    );
    r.set_file("/proc/self/mountinfo", MOUNTINFO)
        .set_file_after_pivot("/proc/self/mountinfo", SANDBOX_MOUNTINFO);
    r.set_file(
        "/proc/self/cgroup",
        "3:memory:/p1\n2:cpu,cpuacct:/p1\n0::/p1\n",
    );
    r.set_absent("/proc/kcore")
        .set_absent("/proc/latency_stats")
        .set_absent("/proc/timer_stats");
    r.set_absent("/proc/sched_debug")
        .set_absent("/proc/scsi")
        .set_absent("/proc/asound");
    r.set_stat("/proc/keys", regular(0o444))
        .set_stat("/proc/timer_list", regular(0o444));
    r.set_stat("/proc/sysrq-trigger", regular(0o200));
    r.set_statfs(
        "/proc/sys",
        FsStat {
            fs_type: 0x9fa0,
            flags: 2 | 4 | 8,
        },
    );
    r.set_absent("/rootfs/etc/hosts")
        .set_absent("/rootfs/etc/resolv.conf")
        .set_absent("/rootfs/data");
    // What dockerd's initlayer adds and a plugin rootfs usually lacks.
    r.set_absent("/rootfs/.dockerenv")
        .set_absent("/rootfs/etc/hostname")
        .set_absent("/rootfs/etc/mtab")
        .set_absent("/rootfs/dev/console");
    r
}
