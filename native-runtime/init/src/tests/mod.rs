//! The whole in-sandbox sequence against the recording double, for representative specs: each
//! run's call log is compared with a reviewed golden file in `src/tests/golden/` (rewrite them
//! with `PLUGD_INIT_BLESS=1 cargo test -p plugd-init`, then review the diff), and failures are
//! checked to surface as `Failed { step }` with the step named.

mod fixtures;

use std::path::PathBuf;

use nix::errno::Errno;

use crate::child::{self, ChildMsg};
use crate::ctx::Ctx;
use crate::error::StepError;
use crate::launch::Report;
use crate::spec::SandboxSpec;
use crate::sys::recording::Recording;
use crate::sys::{FileStat, FsStat, Syscall};
use fixtures::*;

/// Runs what plugd-init does before the clone, the clone and every step for `spec` against `r`.
fn run(spec: SandboxSpec, r: &Recording) -> Result<(), StepError> {
    let (mut ctx, warnings) = Ctx::new(spec, 40)?;
    assert!(warnings.is_empty(), "{warnings:?}");
    crate::launcher::prepare(r, &ctx)?;
    r.clone_parent(ctx.ns.clone_flags())
        .map_err(|e| StepError::Clone(crate::error::sys("clone")(e)))?;
    child::run(&mut ctx, r)
}

/// The report plugd-init would send for this run.
fn report(result: Result<(), StepError>) -> Report {
    let mut text = String::from_utf8(ChildMsg::Exec.line()).unwrap();
    if let Err(e) = &result {
        text = String::from_utf8(ChildMsg::failed(e).line()).unwrap();
    }
    child::outcome(&text)
}

fn golden(name: &str, r: &Recording) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/tests/golden")
        .join(format!("{name}.calls"));
    let got = r.calls().join("\n") + "\n";
    if std::env::var_os("PLUGD_INIT_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if got != want {
        let diff: Vec<String> = want
            .lines()
            .zip(got.lines())
            .enumerate()
            .filter(|(_, (w, g))| w != g)
            .take(5)
            .map(|(i, (w, g))| format!("line {}:\n  want {w}\n  got  {g}", i + 1))
            .collect();
        panic!(
            "{name}: call sequence changed ({} vs {} lines); first differences:\n{}\nfull log:\n{got}",
            want.lines().count(),
            got.lines().count(),
            diff.join("\n")
        );
    }
}

fn ok_run(name: &str, spec: SandboxSpec, r: &Recording) {
    let result = run(spec, r);
    assert!(result.is_ok(), "{name}: {result:?}\n{:#?}", r.calls());
    assert_eq!(report(result), Report::Running);
    golden(name, r);
}

#[test]
fn default_spec_with_propagated_mount() {
    let r = host();
    ok_run("default", dockerd_spec(), &r);
    // The properties the golden file encodes, spelled out.
    let calls = r.calls();
    let pos = |needle: &str| {
        calls
            .iter()
            .position(|c| c.contains(needle))
            .unwrap_or_else(|| panic!("{needle}"))
    };
    assert!(pos("mount - -> / MS_REC|MS_SHARED") < pos("mount - -> /rootfs MS_PRIVATE"));
    // runc 1.1: the new root is not made shared again after pivot_root.
    let pivot = pos("pivot_root . .");
    assert!(
        calls[pivot..]
            .iter()
            .all(|c| !c.contains("-> / MS_REC|MS_SHARED")),
        "{calls:#?}"
    );
    // dockerd's initlayer files, before the mounts.
    assert!(pos("symlinkat /rootfs/etc/mtab -> /proc/mounts") < pos("type=proc"));
    assert!(pos("openat /rootfs/.dockerenv O_CREAT") < pos("type=proc"));
    assert!(pos("mount /rootfs -> /rootfs MS_BIND|MS_REC") < pos("type=proc"));
    assert!(pos("type=proc") < pos("pivot_root . ."));
    assert!(pos("mknodat /rootfs/dev/null") < pos("pivot_root . ."));
    assert!(pos("pivot_root . .") < pos("drop_bounding"));
    assert!(pos("close_range") < pos("execve"));
    // Non-dumpable from before the clone until the exec resets it.
    assert!(pos("set_dumpable false") < pos("clone "));
    assert!(!calls.iter().any(|c| c == "set_dumpable true"));
    // Every mount into the rootfs goes through an fd, never a path under /rootfs/.
    for c in calls.iter().filter(|c| c.starts_with("mount ")) {
        assert!(
            !c.contains("-> /rootfs/"),
            "path-based mount into the rootfs: {c}"
        );
    }
    let propagated = calls
        .iter()
        .position(|c| c.starts_with("mount /plugins/p1/propagated-mount"))
        .unwrap();
    assert!(
        calls[propagated + 1..]
            .iter()
            .take(4)
            .any(|c| c.contains("fd:/rootfs/data MS_REC|MS_SHARED"))
    );
}

#[test]
fn network_host() {
    let mut spec = dockerd_spec();
    spec.linux.namespaces.retain(|n| n.kind != "network");
    let r = host();
    ok_run("network-host", spec, &r);
    assert!(r.calls_of("loopback_up").is_empty());
    assert_eq!(
        r.calls_of("clone"),
        ["clone CLONE_PARENT|CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWPID"]
    );
}

#[test]
fn ipc_host_and_pid_host() {
    let mut spec = dockerd_spec();
    spec.linux
        .namespaces
        .retain(|n| n.kind != "ipc" && n.kind != "pid");
    let r = host();
    ok_run("ipc-pid-host", spec, &r);
    assert_eq!(
        r.calls_of("clone"),
        ["clone CLONE_PARENT|CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWNET"]
    );
}

#[test]
fn device_is_made_verified_and_chowned() {
    let mut spec = dockerd_spec();
    spec.linux.devices.push(fuse());
    let r = host();
    ok_run("device", spec, &r);
    let calls = r.calls();
    let i = calls
        .iter()
        .position(|c| c.starts_with("mknodat /rootfs/dev/fuse"))
        .unwrap();
    assert_eq!(calls[i], "mknodat /rootfs/dev/fuse S_IFCHR 600 10:229");
    assert_eq!(calls[i + 1], "openat /rootfs/dev/fuse O_NOFOLLOW|O_PATH 0");
    assert_eq!(calls[i + 2], "fstat fd:/rootfs/dev/fuse");
    assert_eq!(calls[i + 3], "fchown fd:/rootfs/dev/fuse 0:0");
    let umasks = r.calls_of("umask");
    assert_eq!(umasks[..2], ["umask 0".to_string(), "umask 22".to_string()]);
}

#[test]
fn ro_bind_mount_is_remounted_and_propagation_applied() {
    let mut spec = dockerd_spec();
    spec.mounts.push(ro_bind());
    let r = host();
    r.set_absent("/rootfs/hostdir");
    ok_run("ro-bind", spec, &r);
    let calls = r.calls();
    let i = calls
        .iter()
        .position(|c| c.starts_with("mount /srv/bindsrc"))
        .unwrap();
    assert_eq!(
        calls[i],
        "mount /srv/bindsrc -> fd:/rootfs/hostdir MS_BIND|MS_REC"
    );
    let after: Vec<&String> = calls[i + 1..]
        .iter()
        .filter(|c| c.starts_with("mount "))
        .take(2)
        .collect();
    assert_eq!(
        after[0],
        "mount - -> fd:/rootfs/hostdir MS_RDONLY|MS_REMOUNT|MS_BIND"
    );
    assert_eq!(after[1], "mount - -> fd:/rootfs/hostdir MS_REC|MS_PRIVATE");
}

#[test]
fn no_pivot_moves_the_root_and_chroots() {
    let mut spec = dockerd_spec();
    spec.plugd.as_mut().unwrap().no_pivot = true;
    let r = host();
    ok_run("no-pivot", spec, &r);
    assert!(r.calls_of("pivot_root").is_empty());
    assert_eq!(r.calls_of("chroot"), ["chroot ."]);
    // The host's full proc and sysfs are hidden first; the sandbox's own proc is left alone.
    assert_eq!(
        r.calls_of("umount2"),
        ["umount2 /proc MNT_DETACH", "umount2 /sys MNT_DETACH"]
    );
}

#[test]
fn pivot_einval_on_a_tmpfs_root_falls_back_to_move_and_chroot() {
    let r = host();
    r.fail_nth("pivot_root", 1, Errno::EINVAL).set_statfs(
        "/",
        FsStat {
            fs_type: 0x0102_1994,
            flags: 0,
        },
    );
    let result = run(dockerd_spec(), &r);
    assert!(result.is_ok(), "{result:?}");
    let calls = r.calls();
    let p = calls
        .iter()
        .position(|c| c == "pivot_root . . -> EINVAL")
        .unwrap();
    let rest = &calls[p..];
    let mv = rest
        .iter()
        .position(|c| c == "mount /rootfs -> / MS_MOVE")
        .expect("MS_MOVE");
    assert_eq!(rest[mv + 1], "chroot .");
    assert_eq!(rest[mv + 2], "chdir /");
}

#[test]
fn pivot_einval_on_a_disk_root_is_a_failure() {
    let r = host();
    r.fail_nth("pivot_root", 1, Errno::EINVAL);
    let rep = report(run(dockerd_spec(), &r));
    assert_eq!(
        rep,
        Report::Failed {
            step: "pivot_root".into(),
            message: "pivot_root: EINVAL: Invalid argument".into()
        }
    );
    assert!(r.calls_of("chroot").is_empty());
}

/// Fails one call and returns the report's step and message.
fn failed_step(configure: impl FnOnce(&Recording)) -> (String, String) {
    let r = host();
    configure(&r);
    match report(run(dockerd_spec(), &r)) {
        Report::Failed { step, message } => (step, message),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn failures_name_their_step() {
    let cases: [(&str, &str, Errno, &str); 8] = [
        ("setsid", "", Errno::EPERM, "setsid"),
        ("mount", "type=proc", Errno::EPERM, "mount /proc"),
        ("mount", "type=devpts", Errno::ENODEV, "mount /dev/pts"),
        ("mount", "propagated-mount", Errno::ENOENT, "mount /data"),
        ("mknodat", "/dev/tty", Errno::EPERM, "device /dev/tty"),
        ("loopback_up", "", Errno::EPERM, "network"),
        ("capset", "", Errno::EPERM, "capabilities"),
        ("execve", "", Errno::ENOEXEC, "exec"),
    ];
    for (kind, needle, errno, step) in cases {
        let (got, message) = failed_step(|r| {
            r.fail_matching(kind, needle, errno);
        });
        assert_eq!(got, step, "{kind} {needle}: {message}");
        assert!(message.contains(&format!("{errno:?}")), "{message}");
    }
}

#[test]
fn the_nth_call_of_a_kind_can_fail() {
    // The 2nd readonly path's remount.
    let (step, _) = failed_step(|r| {
        r.fail_matching("mount", "fd:/proc/fs MS_RDONLY", Errno::EROFS);
    });
    assert_eq!(step, "readonly path /proc/fs");
    let (step, _) = failed_step(|r| {
        r.fail_nth("dup3", 2, Errno::EBADF);
    });
    assert_eq!(step, "stdio");
}

#[test]
fn a_symlink_at_proc_is_refused() {
    let (step, message) = failed_step(|r| {
        r.set_stat(
            "/rootfs/proc",
            FileStat {
                mode: libc::S_IFLNK | 0o777,
                rdev: 0,
            },
        );
    });
    assert_eq!(step, "mount /proc");
    assert!(message.contains("symlink"), "{message}");
}

#[test]
fn a_destination_resolving_into_proc_is_refused() {
    let (step, message) = failed_step(|r| {
        r.set_symlink("/rootfs/data", "/proc/sys/kernel");
    });
    assert_eq!(step, "mount /data");
    assert!(message.contains("into /proc"), "{message}");
}

#[test]
fn an_initlayer_symlink_is_replaced_before_the_mount_lands_there() {
    // dockerd's initlayer rewrites /etc/hosts into a file; the bind then lands on it, not on
    // the link's target (even one inside the root).
    let r = host();
    r.set_symlink("/rootfs/etc/hosts", "/proc/sys/kernel/hostname");
    run(dockerd_spec(), &r).unwrap();
    let calls = r.calls();
    let pos = |line: &str| {
        calls
            .iter()
            .position(|c| c == line)
            .unwrap_or_else(|| panic!("{line}\n{calls:#?}"))
    };
    let unlinked = pos("unlinkat /rootfs/etc/hosts");
    let created = pos("openat /rootfs/etc/hosts O_CREAT|O_EXCL|O_NOFOLLOW|O_WRONLY 755");
    let bound = pos("mount /etc/hosts -> fd:/rootfs/etc/hosts MS_BIND|MS_REC");
    assert!(unlinked < created && created < bound);
    assert!(
        calls.iter().all(|c| !c.starts_with("readlinkat")),
        "{calls:#?}"
    );
}

#[test]
fn host_peers_are_made_slaves_except_the_propagated_mount_dir() {
    let r = host();
    run(dockerd_spec(), &r).unwrap();
    let mounts = r.calls_of("mount");
    // The host's `/` (shared:1) becomes a slave before `/` is made shared; the propagated-mount
    // dir (shared:5) stays the host's peer, and the sandbox's /data joins it.
    assert_eq!(
        mounts[..3],
        [
            "mount - -> / MS_SLAVE",
            "mount - -> / MS_REC|MS_SHARED",
            "mount /rootfs -> /rootfs MS_BIND|MS_REC",
        ]
    );
    assert!(
        mounts.iter().all(|m| !m.contains("-> /plugins/p1")),
        "{mounts:#?}"
    );
    let reads = r.calls_of("read_file");
    assert_eq!(
        reads.iter().filter(|c| c.ends_with("mountinfo")).count(),
        3,
        "before `/` is shared, for the cgroups, after pivot_root: {reads:#?}"
    );
}

#[test]
fn a_host_peer_that_is_no_longer_a_mount_point_is_left_to_the_check() {
    // EINVAL: covered by a later mount; guard 2 catches it if it reaches the sandbox.
    let r = host();
    r.fail_matching("mount", "-> / MS_SLAVE", Errno::EINVAL);
    assert!(run(dockerd_spec(), &r).is_ok(), "{:#?}", r.calls());
    // Anything else fails the step.
    let (step, message) = failed_step(|r| {
        r.fail_matching("mount", "-> / MS_SLAVE", Errno::EPERM);
    });
    assert_eq!(step, "root propagation");
    assert_eq!(message, "make / a slave: EPERM: Operation not permitted");
}

#[test]
fn a_sandbox_mount_in_a_host_peer_group_fails_the_start() {
    let r = host();
    r.set_file_after_pivot(
        "/proc/self/mountinfo",
        &format!(
            "{SANDBOX_MOUNTINFO}\
             106 100 254:0 /srv /hidden rw shared:1 - ext4 /dev/vda rw\n"
        ),
    );
    let rep = report(run(dockerd_spec(), &r));
    assert_eq!(
        rep,
        Report::Failed {
            step: "host peer groups".into(),
            message: "sandbox mounts in a host mount's peer group (a mount made on them would \
                      reach the host): /hidden (shared:1)"
                .into()
        }
    );
}

#[test]
fn without_a_shared_root_the_host_peers_are_left_to_rslave() {
    let mut spec = dockerd_spec();
    spec.linux.rootfs_propagation = String::new();
    let r = host();
    run(spec, &r).unwrap();
    let mounts = r.calls_of("mount");
    assert_eq!(mounts[0], "mount - -> / MS_REC|MS_SLAVE");
    assert_eq!(mounts[2], "mount - -> /rootfs MS_SLAVE");
    // No mountinfo read of guard 1 or 2: only the cgroup step's.
    let reads = r.calls_of("read_file");
    assert_eq!(reads.iter().filter(|c| c.ends_with("mountinfo")).count(), 1);
}

#[test]
fn a_destination_resolving_to_the_root_is_refused() {
    let (step, message) = failed_step(|r| {
        r.set_symlink("/rootfs/data", "/");
    });
    assert_eq!(step, "mount /data");
    assert!(message.contains("sandbox root"), "{message}");
}

#[test]
fn a_swapped_dev_null_is_refused_for_masking() {
    // After pivot_root: the sandbox's /dev/null is a regular file (or a symlink into procfs).
    let r = host();
    r.set_stat(
        "/dev/null",
        FileStat {
            mode: libc::S_IFREG | 0o644,
            rdev: 0,
        },
    );
    let (mut ctx, _) = Ctx::new(dockerd_spec(), 40).unwrap();
    ctx.root = Some(crate::resolve::Root::open(&r, "/".as_ref()).unwrap());
    let err = crate::steps::masks::masked_paths(&mut ctx, &r).unwrap_err();
    assert_eq!(err.step(), "masked path /dev/null");
    assert!(err.message().contains("1:3"), "{err}");
    assert!(r.calls_of("mount").is_empty());
    let err = crate::steps::devnull::reopen(&mut ctx, &r).unwrap_err();
    assert_eq!(err.step(), "reopen /dev/null");
    assert!(r.calls_of("dup3").is_empty());
}

#[test]
fn a_dead_plugd_init_stops_the_exec() {
    let r = host();
    r.set_reader_gone(true);
    let (mut ctx, _) = Ctx::new(dockerd_spec(), 40).unwrap();
    ctx.sync = Some(
        r.open("/sync".as_ref(), nix::fcntl::OFlag::O_WRONLY)
            .unwrap(),
    );
    let err = child::run(&mut ctx, &r).unwrap_err();
    assert_eq!(err.step(), "exec");
    assert!(err.message().contains("plugd-init died"));
    assert!(r.calls_of("execve").is_empty());
    assert!(r.calls_of("write_fd").is_empty());
}

#[test]
fn the_exec_marker_precedes_execve() {
    let r = host();
    let (mut ctx, _) = Ctx::new(dockerd_spec(), 40).unwrap();
    ctx.sync = Some(
        r.open("/sync".as_ref(), nix::fcntl::OFlag::O_WRONLY)
            .unwrap(),
    );
    child::run(&mut ctx, &r).unwrap();
    let calls = r.calls();
    let n = calls.len();
    assert_eq!(calls[n - 2], r#"write_fd fd:/sync "{\"msg\":\"exec\"}""#);
    assert!(
        calls[n - 1].starts_with("execve /usr/bin/refvol") || calls[n - 1].contains("refvol"),
        "{}",
        calls[n - 1]
    );
}

#[test]
fn ro_tmpfs_readonly_root_hostname_and_no_new_privs() {
    let mut spec = dockerd_spec();
    spec.mounts.push(crate::spec::Mount {
        destination: "/scratch".into(),
        kind: "tmpfs".into(),
        source: "tmpfs".into(),
        options: vec!["ro".into(), "nosuid".into(), "size=1m".into()],
    });
    spec.root.readonly = true;
    spec.hostname = Some("plug".into());
    spec.process.no_new_privileges = true;
    let r = host();
    run(spec, &r).unwrap();
    let calls = r.calls();
    let pos = |line: &str| {
        calls
            .iter()
            .position(|c| c == line)
            .unwrap_or_else(|| panic!("{line}\n{calls:#?}"))
    };
    let mounted =
        pos("mount tmpfs -> fd:/rootfs/scratch MS_NOSUID type=tmpfs data=mode=0755,size=1m");
    let ro = pos("mount - -> fd:/scratch MS_RDONLY|MS_NOSUID|MS_REMOUNT|MS_BIND");
    let root_ro = pos("mount - -> / MS_RDONLY|MS_REMOUNT|MS_BIND");
    assert!(mounted < pos("pivot_root . .") && pos("pivot_root . .") < ro && ro < root_ro);
    assert!(pos("sethostname plug") < pos("mount - -> / MS_REC|MS_SHARED"));
    assert!(pos("capset e=0xa80425fb p=0xa80425fb i=0x0") < pos("set_no_new_privs"));
    assert_eq!(
        calls[calls.len() - 2],
        "reset_signals",
        "right before execve without a sync pipe"
    );
}

#[test]
fn a_time_namespace_is_unshared_before_the_clone() {
    let mut spec = dockerd_spec();
    spec.linux.namespaces.push(crate::spec::Namespace {
        kind: "time".into(),
    });
    let r = host();
    let (ctx, _) = Ctx::new(spec, 40).unwrap();
    crate::launcher::prepare(&r, &ctx).unwrap();
    assert_eq!(r.calls(), ["set_dumpable false", "unshare CLONE_NEWTIME"]);
    r.fail_nth("unshare", 2, Errno::EINVAL);
    crate::launcher::prepare(&r, &ctx).expect("no time namespace support is not an error");
}

#[test]
fn cgroup2_hosts_get_a_cgroup2_mount_or_a_bind_of_the_host_tree() {
    let v2 = FsStat {
        fs_type: 0x6367_7270,
        flags: 0,
    };
    let r = host();
    r.set_statfs("/sys/fs/cgroup", v2);
    run(dockerd_spec(), &r).unwrap();
    let cg: Vec<String> = r
        .calls_of("mount")
        .into_iter()
        .filter(|c| c.contains("cgroup"))
        .collect();
    assert_eq!(
        cg,
        [
            "mount cgroup -> fd:/rootfs/sys/fs/cgroup MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC type=cgroup2"
        ]
    );

    let r = host();
    r.set_statfs("/sys/fs/cgroup", v2)
        .fail_matching("mount", "type=cgroup2", Errno::EPERM);
    run(dockerd_spec(), &r).unwrap();
    let cg: Vec<String> = r
        .calls_of("mount")
        .into_iter()
        .filter(|c| c.contains("cgroup"))
        .collect();
    assert_eq!(
        cg,
        [
            "mount cgroup -> fd:/rootfs/sys/fs/cgroup MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC type=cgroup2 -> EPERM",
            "mount /sys/fs/cgroup -> fd:/rootfs/sys/fs/cgroup MS_BIND|MS_REC",
            "mount - -> fd:/rootfs/sys/fs/cgroup MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|MS_REMOUNT|MS_BIND",
        ]
    );
}

#[test]
fn step_order_is_the_reference_order() {
    let names: Vec<&str> = crate::steps::STEPS.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "setsid",
            "stdio",
            "hostname",
            "root propagation",
            "rootfs mount point",
            "rootfs parent private",
            "rootfs bind",
            "initlayer",
            "mounts",
            "devices",
            "dev symlinks",
            "network",
            "pivot_root",
            "host peer groups",
            "reopen /dev/null",
            "read-only tmpfs",
            "read-only root",
            "readonly paths",
            "masked paths",
            "cwd",
            "capabilities",
            "close fds",
            "verify cwd",
            "exec",
        ]
    );
}

#[test]
fn a_probe_launch_execs_the_probe_fd_with_the_plugins_argv() {
    let r = host();
    let mut spec = dockerd_spec();
    spec.plugd.get_or_insert_with(Default::default).probe = true;
    // The entrypoint need not exist: it is not looked up.
    spec.process.args[0] = "/no/such/entrypoint".into();
    let (mut ctx, _) = Ctx::new(spec, 40).unwrap();
    child::run(&mut ctx, &r).unwrap();
    let calls = r.calls();
    assert!(r.calls_of("execve").is_empty(), "{calls:#?}");
    let last = calls.last().unwrap();
    assert!(
        last.starts_with(&format!(
            "execveat fd={} AT_EMPTY_PATH argv=[\"/no/such/entrypoint\", \"--serve\"]",
            crate::launch::PROBE_FD
        )),
        "{last}"
    );
    assert!(last.contains("\"HOME=/\""), "{last}");
    assert!(calls.iter().any(|c| c.starts_with("close_range")));
}
