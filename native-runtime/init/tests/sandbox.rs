//! Root-only: the real plugd-init (static musl build) starting a busybox "plugin" that prints
//! what it sees, checked against what dockerd+runc give a managed plugin (reference §5 and the
//! dockerd probes). Each test runs in a private mount namespace (see `common`).

mod common;

use std::fs;
use std::path::Path;

use common::*;
use nix::sys::wait::WaitStatus;
use plugd_init::launch::Report;

/// Prints what the reference §5 checks, then sleeps as PID 1.
const PROBE: &str = r#"
echo "== status"; grep -E '^(Pid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status
echo "== pid"; echo $$
echo "== ns"; for n in mnt pid uts ipc net cgroup user; do echo "$n $(readlink /proc/self/ns/$n)"; done
echo "== mountinfo"; cat /proc/self/mountinfo
echo "== dev"; ls -l /dev
echo "== fd"; ls /proc/$$/fd
echo "== procsys"; (echo 1 > /proc/sys/kernel/ns_last_pid) 2>&1; echo "rc=$?"
echo "== net"; ls /sys/class/net; cat /sys/class/net/lo/flags
echo "== cwd"; pwd
echo "== env"; env | sort
echo "== hosts"; cat /etc/hosts
echo "== cgroup"; cat /proc/self/cgroup
echo "== END"
exec sleep 1000
"#;

fn assert_running(l: &Launch) {
    assert!(
        matches!(l.reports.first(), Some(Report::Started { .. })),
        "{l:?}"
    );
    assert_eq!(l.last(), &Report::Running, "{l:?}");
}

#[test]
fn default_spec_gives_the_dockerd_environment() {
    isolated(|| {
        let before = mount_points();
        let mut sb = Sandbox::new(PROBE);
        sb.with_plugin_mounts();
        let host_side = sb.with_propagated_mount("/data");
        let launch = sb.launch();
        assert_running(&launch);
        println!(
            "plugd-init: exec -> Running in {:.2} ms (default spec)",
            launch.elapsed.as_secs_f64() * 1e3
        );
        let out = sb.output();
        println!("{out}");

        for key in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(status_field(&out, key), "00000000a80425fb", "{key}");
        }
        assert_eq!(status_field(&out, "CapInh"), "0000000000000000");
        assert_eq!(status_field(&out, "CapAmb"), "0000000000000000");
        assert_eq!(status_field(&out, "NoNewPrivs"), "0");
        assert_eq!(status_field(&out, "Seccomp"), "0");
        assert_eq!(section(&out, "pid"), ["1"]);

        for line in section(&out, "ns") {
            let (kind, id) = line.split_once(' ').unwrap();
            let same = id == own_ns(kind);
            let want_same = matches!(kind, "cgroup" | "user");
            assert_eq!(
                same,
                want_same,
                "{kind} namespace: {id} vs ours {}",
                own_ns(kind)
            );
        }

        assert_eq!(section(&out, "fd"), ["0", "1", "2"]);
        assert!(
            section(&out, "procsys")
                .iter()
                .any(|l| l.contains("Read-only file system")),
            "{out}"
        );
        let net = section(&out, "net");
        assert_eq!(net[0], "lo", "{net:?}");
        let flags = u32::from_str_radix(net[1].trim_start_matches("0x"), 16).unwrap();
        assert_eq!(flags & 1, 1, "lo is up");
        assert_eq!(section(&out, "cwd"), ["/"]);
        let env = section(&out, "env");
        assert!(
            env.contains(&"HOME=/") && env.contains(&"PROBE=1"),
            "{env:?}"
        );
        assert!(
            section(&out, "hosts")
                .iter()
                .any(|l| l.contains("HOSTS-MARKER"))
        );

        // No signal stays ignored or blocked across the exec (the Rust runtime ignores SIGPIPE).
        let status = fs::read_to_string(format!("/proc/{}/status", sb.pid().unwrap())).unwrap();
        for key in ["SigIgn:", "SigBlk:"] {
            let line = status.lines().find(|l| l.starts_with(key)).unwrap();
            assert!(line.ends_with("0000000000000000"), "{line}");
        }
        check_mounts(&out, &host_side);
        check_dev(&out);
        drop(sb);
        assert_eq!(
            mount_points(),
            before,
            "no mount of the test may stay behind"
        );
    });
}

fn check_mounts(out: &str, host_side: &Path) {
    let opts = |mp: &str| mount_line(out, mp).split(' ').nth(5).unwrap().to_owned();
    let fstype = |mp: &str| {
        mount_line(out, mp)
            .split(" - ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    assert!(opts("/proc").contains("nosuid,nodev,noexec"));
    assert_eq!(fstype("/proc"), "proc");
    assert_eq!(fstype("/dev"), "tmpfs");
    assert!(
        mount_line(out, "/dev").ends_with("size=65536k,mode=755"),
        "{}",
        mount_line(out, "/dev")
    );
    assert!(mount_line(out, "/dev/pts").ends_with("gid=5,mode=620,ptmxmode=666"));
    assert!(opts("/sys").starts_with("ro,"));
    assert_eq!(fstype("/sys/fs/cgroup"), "tmpfs");
    assert!(opts("/sys/fs/cgroup/memory").starts_with("ro,nosuid,nodev,noexec"));
    assert_eq!(fstype("/sys/fs/cgroup/memory"), "cgroup");
    assert_eq!(fstype("/dev/mqueue"), "mqueue");
    assert!(mount_line(out, "/dev/shm").contains(" - tmpfs shm "));
    assert!(opts("/etc/hosts").starts_with("ro"));
    assert!(opts("/etc/resolv.conf").starts_with("ro"));
    assert!(opts("/proc/sys").starts_with("ro,nosuid,nodev,noexec"));
    assert!(opts("/sys/firmware").starts_with("ro"));
    assert!(
        mount_line(out, "/proc/keys").split(' ').nth(3) == Some("/null"),
        "masked with /dev/null"
    );
    assert!(mount_line(out, "/run/docker/plugins").contains("shared:"));
    // The propagated mount is in the host-side dir's peer group.
    let peer = |line: &str| {
        line.split(' ')
            .find(|f| f.starts_with("shared:"))
            .map(str::to_owned)
    };
    let host_line = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let host_line = host_line
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(&*host_side.display().to_string()))
        .unwrap()
        .to_owned();
    assert_eq!(
        peer(mount_line(out, "/data")),
        peer(&host_line),
        "peer group of the propagated mount"
    );
    assert!(peer(&host_line).is_some());
}

fn check_dev(out: &str) {
    let dev = section(out, "dev");
    let has = |name: &str, want: &str| {
        let line = dev
            .iter()
            .find(|l| l.ends_with(&format!(" {name}")) || l.contains(&format!(" {name} -> ")));
        let line = line.unwrap_or_else(|| panic!("no /dev/{name} in {dev:#?}"));
        assert!(line.starts_with(want), "/dev/{name}: {line}");
        *line
    };
    for (name, maj, min) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("tty", 5, 0),
        ("random", 1, 8),
        ("urandom", 1, 9),
    ] {
        let line = has(name, "crw-rw-rw-");
        assert!(line.contains(&format!("{maj}, {:>3}", min)), "{line}");
    }
    assert!(has("ptmx", "l").ends_with("ptmx -> pts/ptmx"));
    assert!(has("fd", "l").ends_with("fd -> /proc/self/fd"));
    assert!(has("stdin", "l").ends_with("-> /proc/self/fd/0"));
    assert!(has("stderr", "l").ends_with("-> /proc/self/fd/2"));
    assert!(
        !dev.iter().any(|l| l.ends_with(" console")),
        "no /dev/console without a terminal"
    );
}

#[test]
fn propagated_mount_reaches_the_host() {
    isolated(|| {
        let mut sb = Sandbox::new(
            "mkdir -p /data/vol1 && mount -t tmpfs tmpfs /data/vol1 && echo mounted; echo '== END'; exec sleep 1000",
        );
        let host_side = sb.with_propagated_mount("/data");
        sb.spec
            .process
            .capabilities
            .bounding
            .push("CAP_SYS_ADMIN".into());
        sb.spec
            .process
            .capabilities
            .inheritable
            .push("CAP_SYS_ADMIN".into());
        assert_running(&sb.launch());
        let out = sb.output();
        assert!(out.contains("mounted"), "{out}");
        let vol = host_side.join("vol1");
        assert!(
            mounts_under(&host_side).contains(&vol),
            "the plugin's mount is visible on the host side"
        );
    });
}

/// The peer-group fields (`shared:N`, `master:N`) of a mountinfo line.
fn peers(line: &str) -> Vec<&str> {
    line.split(" - ")
        .next()
        .unwrap()
        .split(' ')
        .skip(6)
        .collect()
}

/// The `N` of `<tag>:N` in a mountinfo line.
fn group<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    peers(line)
        .into_iter()
        .find_map(|f| f.strip_prefix(tag)?.strip_prefix(':'))
}

#[test]
fn peer_groups_are_runc_1_1s_and_none_is_the_hosts_but_the_propagated_mount() {
    isolated(|| {
        let mut sb = Sandbox::new(
            "echo '== mountinfo'; cat /proc/self/mountinfo; echo '== END'; exec sleep 1000",
        );
        sb.with_plugin_mounts();
        let bindsrc = sb.dir.join("bindsrc");
        fs::create_dir_all(&bindsrc).unwrap();
        let src = bindsrc.display().to_string();
        sb.spec
            .mounts
            .push(mount("/hostdir", "bind", &src, &["rbind", "rw"]));
        // A bind whose source is a shared host mount (every mount is shared under systemd).
        let shared_src = sb.with_shared_host_bind("shared-src", "/shared", &["rbind", "rw"]);
        let host_side = sb.with_propagated_mount("/data");
        assert_running(&sb.launch());
        let out = sb.output();
        let host = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let host_line = |mp: &Path| {
            host.lines()
                .rfind(|l| l.split(' ').nth(4) == Some(&*mp.display().to_string()))
                .unwrap()
                .to_owned()
        };
        let host_groups: Vec<&str> = host.lines().filter_map(|l| group(l, "shared")).collect();

        // `/` and every filesystem mounted fresh (and the masks) are private, as under runc 1.1.
        for mp in [
            "/",
            "/proc",
            "/dev",
            "/dev/pts",
            "/sys",
            "/sys/fs/cgroup",
            "/dev/mqueue",
            "/dev/shm",
            "/proc/keys",
            "/proc/sys",
            "/sys/firmware",
        ] {
            assert_eq!(peers(mount_line(&out, mp)), Vec::<&str>::new(), "{mp}");
        }
        // Binds of paths on the test's `/` (private here): one group, the namespace's copy of
        // `/`, not a host group.
        let g = group(mount_line(&out, "/etc/hosts"), "shared").expect("/etc/hosts is shared");
        for mp in ["/etc/resolv.conf", "/hostdir", "/run/docker/plugins"] {
            assert_eq!(group(mount_line(&out, mp), "shared"), Some(g), "{mp}");
        }
        assert!(!host_groups.contains(&g), "group {g} is a host group");
        // The propagated mount is in the host dir's group.
        assert_eq!(
            group(mount_line(&out, "/data"), "shared"),
            group(&host_line(&host_side), "shared")
        );
        // A bind of a shared host mount: a slave of the host's group, in a group of its own.
        let shared_host_line = host_line(&shared_src);
        let host_group = group(&shared_host_line, "shared").unwrap();
        let line = mount_line(&out, "/shared");
        assert_eq!(group(line, "master"), Some(host_group), "{line}");
        assert_ne!(group(line, "shared"), Some(host_group), "{line}");
        // And nothing else in the sandbox is in a host group.
        for line in section(&out, "mountinfo") {
            let mp = line.split(' ').nth(4).unwrap();
            if let Some(g) = group(line, "shared")
                && mp != "/data"
            {
                assert!(!host_groups.contains(&g), "{line}");
            }
        }
    });
}

#[test]
fn host_network_and_host_pid() {
    isolated(|| {
        let mut sb = Sandbox::new(PROBE);
        sb.spec
            .linux
            .namespaces
            .retain(|n| n.kind != "network" && n.kind != "pid");
        assert_running(&sb.launch());
        let out = sb.output();
        for line in section(&out, "ns") {
            let (kind, id) = line.split_once(' ').unwrap();
            let want_same = matches!(kind, "cgroup" | "user" | "net" | "pid");
            assert_eq!(id == own_ns(kind), want_same, "{kind}");
        }
        assert_ne!(section(&out, "pid"), ["1"]);
        assert!(
            section(&out, "net").len() > 2 || own_net_is_lo_only(),
            "the host's interfaces"
        );
    });
}

fn own_net_is_lo_only() -> bool {
    fs::read_dir("/sys/class/net")
        .map(|d| d.count() <= 1)
        .unwrap_or(true)
}

#[test]
fn no_pivot_moves_the_root() {
    isolated(|| {
        let mut sb = Sandbox::new(PROBE);
        sb.spec.plugd.as_mut().unwrap().no_pivot = true;
        assert_running(&sb.launch());
        let out = sb.output();
        assert_eq!(section(&out, "pid"), ["1"]);
        assert_eq!(status_field(&out, "CapEff"), "00000000a80425fb");
        assert!(
            section(&out, "procsys")
                .iter()
                .any(|l| l.contains("Read-only file system"))
        );
        assert_eq!(section(&out, "fd"), ["0", "1", "2"]);
    });
}

#[test]
fn device_node_and_ro_bind_mount() {
    isolated(|| {
        let mut sb = Sandbox::new(&format!(
            "{PROBE_DEV}; echo '== write'; (echo x > /hostdir/f) 2>&1; cat /hostdir/marker; echo '== END'; exec sleep 1000"
        ));
        let src = sb.dir.join("bindsrc");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("marker"), "BIND-MARKER\n").unwrap();
        sb.spec.mounts.push(mount(
            "/hostdir",
            "bind",
            &src.display().to_string(),
            &["rbind", "ro"],
        ));
        sb.spec.linux.devices.push(plugd_init::spec::Device {
            path: "/dev/fuse".into(),
            kind: "c".into(),
            major: 10,
            minor: 229,
            file_mode: Some(0o600),
            uid: Some(0),
            gid: Some(0),
        });
        assert_running(&sb.launch());
        let out = sb.output();
        let fuse = section(&out, "dev")
            .into_iter()
            .find(|l| l.ends_with(" fuse"))
            .expect("/dev/fuse");
        assert!(
            fuse.starts_with("crw-------") && fuse.contains("10, 229"),
            "{fuse}"
        );
        let write = section(&out, "write");
        assert!(
            write.iter().any(|l| l.contains("Read-only file system")),
            "{write:?}"
        );
        assert!(write.contains(&"BIND-MARKER"));
        assert!(!src.join("f").exists());
    });
}

const PROBE_DEV: &str = "echo '== dev'; ls -l /dev";

#[test]
fn failed_exec_is_reported_with_its_step() {
    isolated(|| {
        let mut sb = Sandbox::new("");
        sb.spec.process.args = vec!["/no/such/entrypoint".into()];
        let launch = sb.launch();
        match launch.last() {
            Report::Failed { step, message } => {
                assert_eq!(step, "exec");
                assert!(message.contains("ENOENT"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(sb.reap(), Some(WaitStatus::Exited(_, 127))));
    });
}

#[test]
fn cgroups_are_joined_before_the_plugin_starts() {
    isolated(|| {
        let cg = Path::new("/sys/fs/cgroup/pids")
            .join(format!("plugd-init-test-{}", std::process::id()));
        if fs::create_dir(&cg).is_err() {
            println!("SKIP: no writable cgroup v1 pids hierarchy");
            return;
        }
        let mut sb = Sandbox::new(PROBE);
        sb.spec.plugd.as_mut().unwrap().cgroups = vec![cg.clone()];
        assert_running(&sb.launch());
        let out = sb.output();
        let name = cg.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            section(&out, "cgroup")
                .iter()
                .any(|l| l.contains(":pids:/") && l.ends_with(&name)),
            "{out}"
        );
        assert_eq!(
            mount_line(&out, "/sys/fs/cgroup/pids").split(' ').nth(3),
            Some(&*format!("/{name}"))
        );
        sb.stop();
        drop(sb);
        for _ in 0..50 {
            if fs::remove_dir(&cg).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("could not remove {}", cg.display());
    });
}

#[test]
fn start_time_of_the_default_spec() {
    isolated(|| {
        let mut times = Vec::new();
        for _ in 0..20 {
            let mut sb = Sandbox::new("echo '== END'; exec sleep 1000");
            sb.with_plugin_mounts();
            sb.with_propagated_mount("/data");
            let launch = sb.launch();
            assert_running(&launch);
            times.push(launch.elapsed.as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        println!(
            "plugd-init exec -> Running, default spec, n={}: min {:.2} ms, median {:.2} ms, mean {:.2} ms, max {:.2} ms ({})",
            times.len(),
            times[0],
            times[times.len() / 2],
            mean,
            times[times.len() - 1],
            binary().display()
        );
        assert!(
            times[times.len() / 2] < 1000.0,
            "a start should take milliseconds"
        );
    });
}
