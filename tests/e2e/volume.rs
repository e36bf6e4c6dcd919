//! The wasm example volume plugin used by a real dockerd: volumes created, listed, inspected and
//! mounted into a container, data on the host under the propagated mount, "in use" refusals.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::harness::{
    self, BUSYBOX_IMAGE, Cli, Env, PLUGIN_SOCKET_DIR, Plugd, example_volume_wasm,
};

/// The example's own config.json, as shipped in guest-examples/volume.
pub fn example_config() -> serde_json::Value {
    let text = include_str!("../../guest-examples/volume/config.json");
    serde_json::from_str(text).expect("guest-examples/volume/config.json is JSON")
}

/// Creates and enables the wasm example volume plugin as `name` in plugd; returns its id.
pub fn create_example(env: &Env, p: &Plugd, name: &str) -> String {
    let bundle = env
        .bundle(&name.replace(['/', ':'], "_"))
        .config(&example_config())
        .copy("plugin.wasm", &example_volume_wasm(), 0o644);
    env.plugd_cli_cmd(p, ["create", name])
        .arg(bundle.path())
        .run()
        .assert_ok();
    env.plugd_cli(p, ["inspect", "--format", "{{.Id}}", name])
        .assert_ok()
        .trimmed()
        .to_owned()
}

/// A mountpoint dockerd got in a Get/List/Path reply of an unmounted volume is plugd's view of
/// the volume's directory: a `nosuid,nodev` bind of that very inode under plugd's state dir, which
/// no later symlink in the plugin's filesystem can redirect.
#[track_caller]
pub(crate) fn assert_reported_through_a_view(
    p: &Plugd,
    id: &str,
    mountpoint: &serde_json::Value,
    volume_dir: &Path,
) {
    use std::os::unix::fs::MetadataExt;
    let reported = PathBuf::from(mountpoint.as_str().expect("a Mountpoint string"));
    let views = p.exec_root().join("state").join(id).join("mounts");
    assert!(
        reported.starts_with(&views)
            && reported
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("view-")),
        "{} is not a view under {}",
        reported.display(),
        views.display()
    );
    let (a, b) = (
        std::fs::metadata(&reported).unwrap(),
        std::fs::metadata(volume_dir).unwrap(),
    );
    assert_eq!(
        (a.dev(), a.ino()),
        (b.dev(), b.ino()),
        "the view is the volume's directory"
    );
    assert_nosuid_nodev(&reported);
}

/// `path` is a mount point with `nosuid,nodev` (what plugd gives every pin and view).
#[track_caller]
pub(crate) fn assert_nosuid_nodev(path: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} is not a mount point", path.display()));
    let opts = line.split(' ').nth(5).unwrap_or_default();
    assert!(
        opts.split(',').any(|o| o == "nosuid") && opts.split(',').any(|o| o == "nodev"),
        "mounted without nosuid,nodev: {line}"
    );
}

fn socket_path(name: &str) -> PathBuf {
    Path::new(PLUGIN_SOCKET_DIR).join(format!("{name}.sock"))
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[test]
fn wasm_volume_plugin_serves_a_real_dockerd() {
    harness::isolated(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&[]);
        let id = create_example(env, &p, "example-volume");
        env.plugd_cli(&p, ["enable", "example-volume"]).assert_ok();
        let sock = socket_path("example-volume");
        assert!(
            is_socket(&sock),
            "{} is a real listening socket (dockerd's scan skips links)",
            sock.display()
        );

        let docker = |args: &[&str]| env.docker(Cli::Docker28, &d, args);
        assert_eq!(
            docker(&["volume", "create", "-d", "example-volume", "v1"])
                .assert_ok()
                .trimmed(),
            "v1"
        );
        let ls = docker(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]);
        assert!(
            ls.assert_ok().lines().contains(&"example-volume v1"),
            "{ls}"
        );

        let propagated = p
            .data_root()
            .join("plugins")
            .join(&id)
            .join("propagated-mount");
        let inspect = docker(&["volume", "inspect", "v1"]).assert_ok().json();
        assert_eq!(inspect[0]["Driver"], "example-volume");
        assert_reported_through_a_view(&p, &id, &inspect[0]["Mountpoint"], &propagated.join("v1"));

        docker(&[
            "run",
            "--rm",
            "-v",
            "v1:/data",
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            "echo hi > /data/f",
        ])
        .assert_ok();
        assert_eq!(
            std::fs::read_to_string(propagated.join("v1/f")).unwrap(),
            "hi\n"
        );
        // The Debian CLI (20.10) reads the same data through the same plugin.
        let cat = env.docker(
            Cli::Docker20,
            &d,
            [
                "run",
                "--rm",
                "-v",
                "v1:/data",
                BUSYBOX_IMAGE,
                "cat",
                "/data/f",
            ],
        );
        assert_eq!(cat.assert_ok().trimmed(), "hi");

        // A container keeps v1 mounted: disable and rm are refused as "in use", dockerd's message.
        docker(&[
            "run",
            "-d",
            "--name",
            "holder",
            "-v",
            "v1:/data",
            BUSYBOX_IMAGE,
            "sleep",
            "300",
        ])
        .assert_ok();
        for verb in [
            &["disable", "example-volume"][..],
            &["rm", "example-volume"][..],
        ] {
            let out = env.plugd_cli(&p, verb);
            out.assert_failed();
            assert_eq!(
                out.stderr.trim(),
                "Error response from daemon: plugin example-volume:latest is in use",
                "{out}"
            );
        }
        // The docker CLI against plugd's API sees the same refusal.
        env.docker(Cli::Docker28, &p, ["plugin", "disable", "example-volume"])
            .assert_failed()
            .assert_stderr_contains("plugin example-volume:latest is in use");
        assert!(
            is_socket(&sock),
            "a refused disable leaves the plugin serving"
        );

        // Once the container is gone (dockerd sends Unmount), the plugin is free again.
        docker(&["rm", "-f", "holder"]).assert_ok();
        docker(&["volume", "rm", "v1"]).assert_ok();
        assert!(
            !propagated.join("v1").exists(),
            "Remove deleted the volume's directory"
        );
        env.plugd_cli(&p, ["disable", "example-volume"]).assert_ok();
        assert!(!sock.exists(), "disable removes the engine-facing socket");
        let out = env.plugd_cli(&p, ["ls", "--format", "{{.Name}} {{.Enabled}}"]);
        assert_eq!(out.assert_ok().lines(), ["example-volume:latest false"]);
        env.plugd_cli(&p, ["rm", "example-volume"]).assert_ok();
        assert!(!p.data_root().join("plugins").join(&id).exists());
    })
}

#[test]
fn force_disable_while_mounted_and_socket_conflicts() {
    harness::isolated(|env| {
        let p = env.plugd(&[]);
        create_example(env, &p, "vol:v1");
        create_example(env, &p, "other/vol:v2");
        env.plugd_cli(&p, ["enable", "vol:v1"]).assert_ok();
        let sock = socket_path("vol");
        // A mount made straight through the socket counts, whoever sends it.
        let mount = harness::http(
            &sock,
            "POST",
            "/VolumeDriver.Create",
            Some(br#"{"Name":"m","Opts":null}"#),
        )
        .unwrap();
        assert_eq!(mount.status, 200, "{}", mount.text());
        let mount = harness::http(
            &sock,
            "POST",
            "/VolumeDriver.Mount",
            Some(br#"{"Name":"m","ID":"abc"}"#),
        )
        .unwrap();
        assert_eq!(mount.status, 200, "{}", mount.text());
        env.plugd_cli(&p, ["disable", "vol:v1"])
            .assert_failed()
            .assert_stderr_contains("is in use");
        env.plugd_cli(&p, ["disable", "-f", "vol:v1"]).assert_ok();
        assert!(!sock.exists());

        // Socket names are the repository path without registry and tag: `other/vol` is its own,
        // nested name; a second `vol` (another tag) would collide with the first and is refused.
        create_example(env, &p, "vol:v2");
        env.plugd_cli(&p, ["enable", "vol:v1"]).assert_ok();
        let out = env.plugd_cli(&p, ["enable", "vol:v2"]);
        out.assert_failed()
            .assert_stderr_contains("already served by another enabled plugin");
        env.plugd_cli(&p, ["enable", "other/vol:v2"]).assert_ok();
        assert!(is_socket(&socket_path("other/vol")));
        let activate =
            harness::http(&socket_path("other/vol"), "POST", "/Plugin.Activate", None).unwrap();
        assert_eq!(
            activate.json(),
            serde_json::json!({"Implements": ["VolumeDriver"]})
        );

        // A file plugd did not create is never replaced or removed.
        env.plugd_cli(&p, ["disable", "vol:v1"]).assert_ok();
        std::fs::write(&sock, "not ours").unwrap();
        let out = env.plugd_cli(&p, ["enable", "vol:v1"]);
        out.assert_failed()
            .assert_stderr_contains("was not created by this plugd");
        assert_eq!(std::fs::read_to_string(&sock).unwrap(), "not ours");
        let out = env.plugd_cli(&p, ["ls", "--format", "{{.Name}} {{.Enabled}}"]);
        assert_eq!(
            out.assert_ok().lines(),
            ["other/vol:v2 true", "vol:v1 false", "vol:v2 false"],
            "a refused enable leaves the plugin disabled"
        );
    })
}

/// A Mount reply is pinned: plugd binds the directory the plugin named onto a path only plugd
/// controls and gives dockerd that one, so swapping the volume's directory for a symlink afterwards
/// (as a hostile plugin could) cannot redirect what dockerd binds into a container.
#[test]
fn mount_replies_are_pinned_against_later_symlink_swaps() {
    harness::isolated(|env| {
        let p = env.plugd(&[]);
        let id = create_example(env, &p, "pin");
        env.plugd_cli(&p, ["enable", "pin"]).assert_ok();
        let sock = socket_path("pin");
        let call = |method: &str, body: &[u8]| {
            let r = harness::http(&sock, "POST", method, Some(body)).unwrap();
            assert_eq!(r.status, 200, "{method}: {}", r.text());
            r.json()
        };
        call("/VolumeDriver.Create", br#"{"Name":"pv","Opts":null}"#);
        let reply = call("/VolumeDriver.Mount", br#"{"Name":"pv","ID":"m1"}"#);
        let pinned = PathBuf::from(reply["Mountpoint"].as_str().unwrap());
        assert_eq!(
            pinned,
            p.exec_root().join("state").join(&id).join("mounts/m1")
        );
        assert_nosuid_nodev(&pinned);
        let volume_dir = p
            .data_root()
            .join("plugins")
            .join(&id)
            .join("propagated-mount/pv");
        std::fs::write(volume_dir.join("f"), "data").unwrap();
        assert_eq!(std::fs::read_to_string(pinned.join("f")).unwrap(), "data");

        // The plugin (here: the test, on its behalf) swaps the volume dir for a symlink to a secret.
        let secret = env.path("secret");
        std::fs::create_dir(&secret).unwrap();
        std::fs::write(secret.join("key"), "s3cret").unwrap();
        std::fs::rename(&volume_dir, env.path("moved")).unwrap();
        std::os::unix::fs::symlink(&secret, &volume_dir).unwrap();
        assert!(
            !pinned.join("key").exists(),
            "the pin still shows the volume, not the symlink's target"
        );
        assert_eq!(std::fs::read_to_string(pinned.join("f")).unwrap(), "data");

        // A Mount of a path that is a symlink out of the plugin's filesystem is refused... by
        // resolving it inside: /data/pv now leads to <pm>/<secret's absolute path>, which does not exist.
        let r = harness::http(
            &sock,
            "POST",
            "/VolumeDriver.Mount",
            Some(br#"{"Name":"pv","ID":"m2"}"#),
        )
        .unwrap();
        assert_ne!(r.status, 200, "{}", r.text());

        // Put the volume back so the guest's own Unmount succeeds, then the pin goes with it.
        std::fs::remove_file(&volume_dir).unwrap();
        std::fs::rename(env.path("moved"), &volume_dir).unwrap();
        call("/VolumeDriver.Unmount", br#"{"Name":"pv","ID":"m1"}"#);
        assert!(!pinned.exists(), "Unmount removes the pin");
        env.plugd_cli(&p, ["disable", "pin"]).assert_ok();
    })
}
