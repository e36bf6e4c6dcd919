//! Root-only: hostile plugin rootfs content. Symlinks at mount destinations, device paths and
//! `/proc` must never make plugd-init touch a host path: a destination is either refused or
//! resolved inside the rootfs, and a symlink at one of dockerd's initlayer paths (`/etc/hosts`,
//! `/etc/resolv.conf`, `/dev`, ...; not `/proc` or `/sys`) is replaced by a real file or
//! directory, as dockerd does. Each test checks host files and host paths stay untouched (a
//! symlink target that does not exist on the host must still not exist afterwards: creating it
//! would be the escape) and that no mount appears in the test's namespace.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::*;
use nix::sys::wait::WaitStatus;
use plugd_init::launch::Report;

/// `host` as seen inside the rootfs (`<rootfs>/<host path>`).
fn inside(sb: &Sandbox, host: &Path) -> PathBuf {
    sb.rootfs.join(host.strip_prefix("/").unwrap())
}

fn link(target: &Path, at: &Path) {
    fs::create_dir_all(at.parent().unwrap()).unwrap();
    symlink(target, at).unwrap();
}

fn expect_failed(l: &Launch, want_step: &str, want_in_message: &str) {
    match l.last() {
        Report::Failed { step, message } => {
            assert_eq!(step, want_step, "{message}");
            assert!(message.contains(want_in_message), "{step}: {message}");
        }
        other => panic!(
            "expected a failure of {want_step}, got {other:?}\n{}",
            l.stderr
        ),
    }
}

/// A plugin bind of a test file onto `dest` (a file destination that is not an initlayer path).
fn with_file_bind(sb: &mut Sandbox, dest: &str) {
    let src = sb.dir.join("plugin.conf");
    fs::write(&src, "PLUGIN-CONF-MARKER\n").unwrap();
    let src = src.display().to_string();
    sb.spec
        .mounts
        .push(mount(dest, "bind", &src, &["rbind", "ro"]));
}

#[test]
fn symlinked_bind_destinations_stay_inside_the_rootfs() {
    isolated(|| {
        let shadow = fs::read("/etc/shadow").ok();
        let gshadow = fs::read("/etc/gshadow").ok();
        let before = mount_points();
        let mut sb = Sandbox::new(
            "echo '== hosts'; cat /etc/hosts; echo '== conf'; cat /etc/gshadow; echo '== mountinfo'; cat /proc/self/mountinfo; echo '== END'; exec sleep 1000",
        );
        sb.with_plugin_mounts();
        with_file_bind(&mut sb, "/etc/plugin.conf");
        let escape = sb.dir.join("escape");
        let escape_data = sb.dir.join("escape-data");
        link(Path::new("/etc/shadow"), &sb.rootfs.join("etc/hosts"));
        link(
            &escape.join("resolv.conf"),
            &sb.rootfs.join("etc/resolv.conf"),
        );
        link(
            Path::new("/etc/gshadow"),
            &sb.rootfs.join("etc/plugin.conf"),
        );
        link(&escape_data, &sb.rootfs.join("data"));
        sb.with_propagated_mount("/data");
        let launch = sb.launch();
        assert_eq!(launch.last(), &Report::Running, "{launch:?}");
        let out = sb.output();

        // /etc/hosts -> /etc/shadow and /etc/resolv.conf -> <escape>: dockerd's initlayer paths,
        // replaced by real files (the links themselves, never their targets) and bound there.
        assert!(
            section(&out, "hosts")
                .iter()
                .any(|l| l.contains("HOSTS-MARKER")),
            "{out}"
        );
        assert!(mount_line(&out, "/etc/hosts").starts_with(|c: char| c.is_ascii_digit()));
        assert!(mount_line(&out, "/etc/resolv.conf").starts_with(|c: char| c.is_ascii_digit()));
        for f in ["etc/hosts", "etc/resolv.conf"] {
            let m = fs::symlink_metadata(sb.rootfs.join(f)).unwrap();
            assert!(m.is_file(), "{f} is now a file in the rootfs");
        }
        assert!(!inside(&sb, Path::new("/etc/shadow")).exists());
        // /etc/plugin.conf -> /etc/gshadow: not an initlayer path, so the link is followed
        // inside the root: bound over the rootfs's own /etc/gshadow.
        assert!(
            section(&out, "conf")
                .iter()
                .any(|l| l.contains("PLUGIN-CONF-MARKER")),
            "{out}"
        );
        assert!(mount_line(&out, "/etc/gshadow").starts_with(|c: char| c.is_ascii_digit()));
        assert_eq!(
            fs::read("/etc/shadow").ok(),
            shadow,
            "the host's /etc/shadow is untouched"
        );
        assert_eq!(
            fs::read("/etc/gshadow").ok(),
            gshadow,
            "the host's /etc/gshadow is untouched"
        );
        // Absolute links to host paths that do not exist: never created on the host.
        assert!(
            !escape.exists(),
            "{} was created on the host",
            escape.display()
        );
        assert!(!inside(&sb, &escape).exists());
        assert!(
            !escape_data.exists(),
            "{} was created on the host",
            escape_data.display()
        );
        assert!(inside(&sb, &escape_data).is_dir());
        let data_mount = escape_data.display().to_string();
        mount_line(&out, &data_mount);
        drop(sb);
        assert_eq!(mount_points(), before);
    });
}

#[test]
fn a_destination_resolving_to_the_root_is_refused() {
    isolated(|| {
        let mut sb = Sandbox::new("echo '== END'");
        link(Path::new("/"), &sb.rootfs.join("data"));
        sb.with_propagated_mount("/data");
        let launch = sb.launch();
        expect_failed(&launch, "mount /data", "sandbox root");
        assert!(matches!(sb.reap(), Some(WaitStatus::Exited(_, 127))));
    });
}

#[test]
fn a_symlink_at_proc_is_refused() {
    isolated(|| {
        let before = mount_points();
        for target in [
            PathBuf::from("/etc"),
            PathBuf::from("/tmp/plugd-init-no-such-dir"),
        ] {
            let mut sb = Sandbox::new("echo '== END'");
            link(&target, &sb.rootfs.join("proc"));
            let launch = sb.launch();
            expect_failed(&launch, "mount /proc", "symlink");
            assert!(matches!(sb.reap(), Some(WaitStatus::Exited(_, 127))));
            assert!(target == Path::new("/etc") || !target.exists());
        }
        assert_eq!(
            mount_points(),
            before,
            "nothing was mounted on the host's /etc"
        );
    });
}

#[test]
fn a_symlinked_dev_and_device_paths_stay_inside_the_rootfs() {
    isolated(|| {
        let mut sb = Sandbox::new("echo '== dev'; ls -l /dev/; echo '== END'; exec sleep 1000");
        // `/dev` is an initlayer path: the link is replaced by a real directory.
        let escape_dev = sb.dir.join("escape-dev");
        let escape_node = sb.dir.join("escape-node");
        link(&escape_dev, &sb.rootfs.join("dev"));
        sb.spec.linux.devices.push(plugd_init::spec::Device {
            path: format!("/dev/../..{}", escape_node.display()),
            kind: "c".into(),
            major: 1,
            minor: 3,
            file_mode: Some(0o666),
            uid: None,
            gid: None,
        });
        let launch = sb.launch();
        assert_eq!(launch.last(), &Report::Running, "{launch:?}");
        let out = sb.output();
        assert!(
            section(&out, "dev").iter().any(|l| l.ends_with(" null")),
            "{out}"
        );
        assert!(
            !escape_dev.exists(),
            "{} was created on the host",
            escape_dev.display()
        );
        assert!(
            !escape_node.exists(),
            "{} was created on the host",
            escape_node.display()
        );
        assert!(!inside(&sb, &escape_dev).exists());
        assert!(
            fs::symlink_metadata(sb.rootfs.join("dev"))
                .unwrap()
                .is_dir(),
            "the rootfs's /dev is a real directory now"
        );
        assert!(
            fs::symlink_metadata(inside(&sb, &escape_node)).is_ok(),
            "the node is inside the rootfs"
        );
    });
}

#[test]
fn magic_links_and_proc_targets_are_refused() {
    isolated(|| {
        let cases = [
            ("/proc/self/root/etc/passwd", "ELOOP"),
            ("/proc/sys/kernel/core_pattern", "into /proc"),
        ];
        for (target, why) in cases {
            let mut sb = Sandbox::new("echo '== END'");
            with_file_bind(&mut sb, "/etc/plugin.conf");
            link(Path::new(target), &sb.rootfs.join("etc/plugin.conf"));
            let launch = sb.launch();
            expect_failed(&launch, "mount /etc/plugin.conf", why);
            assert!(matches!(sb.reap(), Some(WaitStatus::Exited(_, 127))));
        }
    });
}
