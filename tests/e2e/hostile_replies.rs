//! A native plugin with no privileges replying with hostile bodies, used by a real dockerd.
//!
//! The static fixture plugin answers a method with the raw bytes of `/hostile/<Method>` in its own
//! rootfs when that file exists; the test plants one body at a time. Each body is one that Go's
//! decoder (dockerd) reads differently from a strict reader — trailing data, two values, a
//! lower-case or Unicode-folded duplicate key, deep nesting, invalid UTF-8, a lone surrogate — or a
//! path that leads outside the plugin's filesystem. Each names a host directory holding a secret.
//! Through plugd, no container ever sees that directory, dockerd gets an error naming the plugin,
//! and nothing is pinned or counted as in use (so `disable` is not refused afterwards).

use std::path::Path;

use crate::harness::{self, BUSYBOX_IMAGE, Cli, PLUGIN_SOCKET_DIR};

const SECRET: &str = "s3cret-on-the-host";

#[test]
fn hostile_replies_never_reach_dockerd() {
    harness::isolated(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&[]);
        let (id, hostile) = env.hostile_static_plugin(&p, "hostile", &["docker.volumedriver/1.0"]);
        env.plugd_cli(&p, ["enable", "hostile"]).assert_ok();
        let plugin_dir = p.data_root().join("plugins").join(&id);
        let volumes = plugin_dir.join("propagated-mount/volumes");

        let secret = env.path("secret");
        std::fs::create_dir(&secret).unwrap();
        std::fs::write(secret.join("key"), SECRET).unwrap();
        let s = secret.to_str().unwrap();

        let docker = |args: &[&str]| env.docker(Cli::Docker28, &d, args);
        // One protocol call straight to plugd's engine-facing socket of the plugin.
        let call = |method: &str, body: &[u8]| {
            let sock = Path::new(PLUGIN_SOCKET_DIR).join("hostile.sock");
            harness::http(&sock, "POST", &format!("/{method}"), Some(body)).unwrap()
        };
        docker(&["volume", "create", "-d", "hostile", "hv"]).assert_ok();
        std::fs::create_dir_all(&volumes).unwrap();
        std::os::unix::fs::symlink(&secret, volumes.join("link")).unwrap();

        let mut invalid_utf8 = format!(r#"{{"Mountpoint":"{s}","X":""#).into_bytes();
        invalid_utf8.extend_from_slice(b"\xff\xfe\"}");
        let mount_bodies: Vec<(&str, Vec<u8>)> = vec![
            (
                "trailing junk",
                format!(r#"{{"Mountpoint":"{s}"}} junk"#).into(),
            ),
            (
                "two values",
                format!(r#"{{"Mountpoint":"{s}"}}{{}}"#).into(),
            ),
            (
                "lower-case duplicate key",
                format!(r#"{{"Mountpoint":"/data/volumes/hv","mountpoint":"{s}"}}"#).into(),
            ),
            (
                "Unicode-folded duplicate key",
                format!("{{\"Mountpoint\":\"/data/volumes/hv\",\"Mountpo\u{131}nt\":\"{s}\"}}")
                    .into(),
            ),
            (
                "a duplicate Err (dockerd fails the mount, so nothing may be pinned or counted)",
                br#"{"Mountpoint":"/data/volumes/hv","Err":"","err":"boom"}"#.to_vec(),
            ),
            (
                "deep nesting",
                format!(
                    r#"{{"Mountpoint":"{s}","X":{}{}}}"#,
                    "[".repeat(500),
                    "]".repeat(500)
                )
                .into(),
            ),
            ("invalid UTF-8", invalid_utf8),
            (
                "lone surrogate",
                format!(r#"{{"Mountpoint":"{s}","X":"\ud800"}}"#).into(),
            ),
            (
                "a path outside via ..",
                format!(r#"{{"Mountpoint":"/data/../..{s}"}}"#).into(),
            ),
            (
                "a path outside via a symlink",
                br#"{"Mountpoint":"/data/volumes/link"}"#.to_vec(),
            ),
        ];
        let mut failures = Vec::new();
        for (what, body) in &mount_bodies {
            std::fs::write(hostile.join("VolumeDriver.Mount"), body).unwrap();
            let out = docker(&["run", "--rm", "-v", "hv:/v", BUSYBOX_IMAGE, "cat", "/v/key"]);
            let text = format!("{}{}", out.stdout, out.stderr);
            if out.success() || text.contains(SECRET) {
                failures.push(format!(
                    "{what}: the container ran or read the secret: {text}"
                ));
            } else if !text.contains("plugin hostile") {
                failures.push(format!(
                    "{what}: dockerd's error does not name the plugin: {text}"
                ));
            }
        }
        std::fs::remove_file(hostile.join("VolumeDriver.Mount")).unwrap();

        // Path, Get and List replies (dockerd shows their mountpoints, and a Path reply is asked
        // for directly here): a path outside is refused or reported as "" (nothing is there inside
        // the plugin's filesystem); whatever dockerd gets is "" or a view under plugd's state dir.
        let views = p.exec_root().join("state").join(&id).join("mounts");
        let reported_ok = |v: &serde_json::Value| -> bool {
            let mut paths = Vec::new();
            collect_mountpoints(v, &mut paths);
            paths
                .iter()
                .all(|m| m.is_empty() || Path::new(m).starts_with(&views))
        };
        for (method, body, refused) in [
            (
                "VolumeDriver.Get",
                format!(r#"{{"Volume":{{"Name":"hv","Mountpoint":"/data/../..{s}"}}}}"#),
                true,
            ),
            (
                "VolumeDriver.Get",
                r#"{"Volume":{"Name":"hv","Mountpoint":"/data/volumes/link"}}"#.to_string(),
                false,
            ),
            (
                "VolumeDriver.List",
                format!(r#"{{"Volumes":[{{"Name":"hv","Mountpoint":"{s}"}}]}} junk"#),
                true,
            ),
            (
                "VolumeDriver.List",
                format!(r#"{{"Volumes":[{{"Name":"hv","Mountpoint":"{s}"}}]}}"#),
                false,
            ),
            (
                "VolumeDriver.Path",
                r#"{"Mountpoint":"/data/volumes/link"}"#.to_string(),
                false,
            ),
            (
                "VolumeDriver.Path",
                r#"{"Mountpoint":"data/volumes/hv"}"#.to_string(),
                true,
            ),
        ] {
            std::fs::write(hostile.join(method), &body).unwrap();
            let r = call(method, br#"{"Name":"hv"}"#);
            let ok = if refused {
                // Refused with an error naming the plugin (which may quote what the plugin said).
                r.status != 200 && r.text().contains("plugin hostile")
            } else {
                r.status == 200 && reported_ok(&r.json()) && !r.text().contains(s)
            };
            if !ok {
                failures.push(format!("{method} {body}: {} {}", r.status, r.text()));
            }
            if method == "VolumeDriver.Get" {
                let out = docker(&["volume", "inspect", "hv"]);
                if out.success() && !reported_ok(&out.json()[0]) {
                    failures.push(format!("volume inspect with Get {body}: {out}"));
                }
            }
            std::fs::remove_file(hostile.join(method)).unwrap();
        }
        // A List reply names volumes of the plugin's choosing: none of them gets a new view (each
        // view is a mount in the host's table), whatever their number.
        let count_views = || {
            std::fs::read_dir(&views).map_or(0, |r| {
                r.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("view-"))
                    .count()
            })
        };
        let before = count_views();
        let many: Vec<String> = (0..200)
            .map(|i| format!(r#"{{"Name":"x{i}","Mountpoint":"/data/volumes/hv"}}"#))
            .collect();
        std::fs::write(
            hostile.join("VolumeDriver.List"),
            format!(r#"{{"Volumes":[{}]}}"#, many.join(",")),
        )
        .unwrap();
        let r = call("VolumeDriver.List", b"{}");
        std::fs::remove_file(hostile.join("VolumeDriver.List")).unwrap();
        if r.status != 200 || !reported_ok(&r.json()) || count_views() != before {
            failures.push(format!(
                "List of 200 plugin-named volumes: {} views before, {} after; {} {}",
                before,
                count_views(),
                r.status,
                r.text()
            ));
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));

        // A pin is private: a mount the plugin makes under the volume's directory afterwards (its
        // propagated mount is shared with the host) does not reach the pin, nor a container
        // through it, without `nosuid,nodev`.
        let r = call("VolumeDriver.Mount", br#"{"Name":"hv","ID":"later"}"#);
        assert_eq!(r.status, 200, "{}", r.text());
        let pinned = std::path::PathBuf::from(r.json()["Mountpoint"].as_str().unwrap());
        let later = volumes.join("hv/later");
        std::fs::create_dir_all(&later).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            &later,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let seen_on_host = harness::mounts_under(&[&later]).len();
        let in_pin = harness::mounts_under(&[&pinned.join("later")]);
        nix::mount::umount2(&later, nix::mount::MntFlags::MNT_DETACH).unwrap();
        assert!(
            seen_on_host > 0,
            "the tmpfs was not mounted at {}",
            later.display()
        );
        assert!(
            in_pin.is_empty(),
            "a later mount propagated into the pin: {in_pin:?}"
        );
        let r = call("VolumeDriver.Unmount", br#"{"Name":"hv","ID":"later"}"#);
        assert_eq!(r.status, 200, "{}", r.text());

        // An Unmount the plugin fails still ends the mount for plugd, as it does for dockerd (which
        // never retries it): the volume does not stay "in use" forever.
        std::fs::write(
            hostile.join("VolumeDriver.Unmount"),
            br#"{"Err":"refusing to unmount"}"#,
        )
        .unwrap();
        docker(&["run", "--rm", "-v", "hv:/v", BUSYBOX_IMAGE, "true"]).assert_ok();
        std::fs::remove_file(hostile.join("VolumeDriver.Unmount")).unwrap();

        // The plugin still works, nothing of the refused mounts is pinned or counted: once the
        // container is gone, disable is not refused as "in use".
        let out = docker(&[
            "run",
            "--rm",
            "-v",
            "hv:/v",
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            "echo ok > /v/f && cat /v/f",
        ]);
        assert_eq!(out.assert_ok().trimmed(), "ok");
        assert_eq!(
            std::fs::read_to_string(volumes.join("hv/f")).unwrap(),
            "ok\n"
        );
        let pins: Vec<_> = std::fs::read_dir(p.exec_root().join("state").join(&id).join("mounts"))
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with("view-"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(pins.is_empty(), "mount pins left behind: {pins:?}");
        env.plugd_cli(&p, ["disable", "hostile"]).assert_ok();
    })
}

/// Every `Mountpoint` string in a reply or an inspect document.
fn collect_mountpoints(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                if k == "Mountpoint" {
                    out.push(v.as_str().unwrap_or_default().to_string());
                } else {
                    collect_mountpoints(v, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_mountpoints(v, out)),
        _ => {}
    }
}
