//! The native runtime used by a real dockerd through plugd: a plain dockerd-managed bundle and the
//! SDK-built native example, mounts made by a plugin propagating to the host, supervision (crash
//! restart, SIGTERM grace), disable and rm during a start that never becomes ready, and plugins
//! surviving a kill -9 of plugd and being re-adopted.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{
    self, BUSYBOX_IMAGE, Bundle, Cli, Env, PLUGIN_SOCKET_DIR, Plugd, mountinfo,
    static_plugin_binary, static_plugin_config, target_dir, wait_for,
};

/// The SDK-built native packaging of the example volume driver.
fn sdk_native_example() -> PathBuf {
    let p = target_dir().join("wasm-guests/x86_64-unknown-linux-musl/release/plugd-example-volume");
    assert!(
        p.is_file(),
        "{} is missing: build it with .ci/test",
        p.display()
    );
    p
}

/// A bundle of the static fixture plus busybox (`/bin/sh`), with `config` as its config.json.
fn busybox_bundle(env: &Env, name: &str, config: &serde_json::Value) -> Bundle {
    let b = env
        .bundle(name)
        .config(config)
        .copy("static-plugin", &static_plugin_binary(), 0o755)
        .copy("bin/busybox", Path::new("/bin/busybox"), 0o755)
        .dir("data")
        .dir("run/docker/plugins");
    symlink("busybox", b.rootfs().join("bin/sh")).unwrap();
    b
}

fn create_enable(env: &Env, p: &Plugd, name: &str, bundle: &Bundle) -> String {
    env.plugd_cli_cmd(p, ["create", name])
        .arg(bundle.path())
        .run()
        .assert_ok();
    env.plugd_cli(p, ["enable", name]).assert_ok();
    env.plugd_cli(p, ["inspect", "-f", "{{.Id}}", name])
        .assert_ok()
        .trimmed()
        .to_owned()
}

/// The native runtime's record of a running plugin (`<exec-root>/plugins/<id>/state.json`).
fn state(p: &Plugd, id: &str) -> Option<serde_json::Value> {
    let text =
        std::fs::read_to_string(p.exec_root().join("state").join(id).join("state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn plugin_pid(p: &Plugd, id: &str) -> i32 {
    let s = state(p, id).unwrap_or_else(|| panic!("no state.json for running plugin {id}"));
    s["pid"].as_i64().expect("pid") as i32
}

fn alive(pid: i32) -> bool {
    // Not a zombie: a dead-but-unreaped child still has /proc/<pid>.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            != Some("Z")
    })
}

fn mounts_below(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    mountinfo()
        .into_iter()
        .filter(|m| m.mount_point.starts_with(&dir))
        .map(|m| m.mount_point.display().to_string())
        .collect()
}

fn socket(name: &str) -> PathBuf {
    Path::new(PLUGIN_SOCKET_DIR).join(format!("{name}.sock"))
}

#[test]
fn dockerd_uses_a_plain_managed_bundle_and_the_sdk_native_example() {
    harness::isolated(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&[]);
        // A bundle written for dockerd, unchanged: no Activate needed, paths inside its own fs.
        let plain = env.static_plugin_bundle("plain");
        let mut native_cfg: serde_json::Value = serde_json::from_str(include_str!(
            "../../guest-examples/volume/config-native.json"
        ))
        .unwrap();
        native_cfg["description"] = "sdk native example".into();
        let sdk = env
            .bundle("sdk")
            .config(&native_cfg)
            .copy("plugd-example-volume", &sdk_native_example(), 0o755)
            .dir("data")
            .dir("run/docker/plugins");
        for (name, bundle, volume_dir) in [("plain", &plain, "volumes/"), ("sdk", &sdk, "")] {
            let id = create_enable(env, &p, name, bundle);
            let pid = plugin_pid(&p, &id);
            assert!(alive(pid));
            let vol = format!("v-{name}");
            let docker = |args: &[&str]| env.docker(Cli::Docker28, &d, args);
            docker(&["volume", "create", "-d", name, &vol]).assert_ok();
            let mount = format!("{vol}:/data");
            docker(&[
                "run",
                "--rm",
                "-v",
                &mount,
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                "echo hi > /data/f",
            ])
            .assert_ok();
            let pm = p
                .data_root()
                .join("plugins")
                .join(&id)
                .join("propagated-mount");
            let host_file = pm.join(format!("{volume_dir}{vol}/f"));
            assert_eq!(
                std::fs::read_to_string(&host_file).unwrap(),
                "hi\n",
                "{}",
                host_file.display()
            );
            let inspect = docker(&["volume", "inspect", &vol]).assert_ok().json();
            crate::volume::assert_reported_through_a_view(
                &p,
                &id,
                &inspect[0]["Mountpoint"],
                &pm.join(format!("{volume_dir}{vol}")),
            );
            docker(&["volume", "rm", &vol]).assert_ok();
            let cgroups: Vec<PathBuf> = state(&p, &id).unwrap()["cgroups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| PathBuf::from(c.as_str().unwrap()))
                .collect();
            assert!(
                !cgroups.is_empty() && cgroups.iter().all(|c| c.is_dir()),
                "{cgroups:?}"
            );
            env.plugd_cli(&p, ["disable", name]).assert_ok();
            env.plugd_cli(&p, ["rm", name]).assert_ok();
            // Checked from the host: nothing left behind.
            assert!(!alive(pid), "plugin process {pid} survived rm");
            assert!(
                cgroups.iter().all(|c| !c.exists()),
                "cgroups left: {cgroups:?}"
            );
            assert_eq!(
                mounts_below(p.data_root()),
                Vec::<String>::new(),
                "mounts left under the data root"
            );
            assert!(!socket(name).exists());
        }
    })
}

#[test]
fn a_mount_made_by_the_plugin_reaches_the_host_until_disable() {
    harness::isolated(|env| {
        let p = env.plugd(&[]);
        let mut cfg = static_plugin_config();
        cfg["entrypoint"] = serde_json::json!([
            "/bin/sh",
            "-c",
            "mkdir -p /data/t && mount -t tmpfs -o size=1m tmpfs /data/t && echo inside > /data/t/marker && exec /static-plugin"
        ]);
        cfg["linux"] = serde_json::json!({"capabilities": ["CAP_SYS_ADMIN"]});
        let bundle = busybox_bundle(env, "mounter", &cfg);
        let id = create_enable(env, &p, "mounter", &bundle);
        let t = p
            .data_root()
            .join("plugins")
            .join(&id)
            .join("propagated-mount/t");
        wait_for(
            "the plugin's tmpfs on the host",
            Duration::from_secs(10),
            || t.join("marker").exists(),
        );
        assert_eq!(
            std::fs::read_to_string(t.join("marker")).unwrap(),
            "inside\n"
        );
        let t_canon = t.canonicalize().unwrap();
        assert!(
            mountinfo()
                .iter()
                .any(|m| m.mount_point == t_canon && m.fstype == "tmpfs"),
            "the tmpfs the plugin mounted is a mount on the host"
        );
        env.plugd_cli(&p, ["disable", "mounter"]).assert_ok();
        assert!(
            !mountinfo().iter().any(|m| m.mount_point == t_canon),
            "unmounted after disable"
        );
        assert!(!t.join("marker").exists());
    })
}

#[test]
fn a_killed_plugin_is_restarted_and_a_term_ignorer_is_killed_after_the_grace() {
    harness::isolated(|env| {
        let p = env.plugd(&["--health-interval", "200ms", "--stop-grace", "2s"]);
        let id = create_enable(env, &p, "sp", &env.static_plugin_bundle("sp"));
        let first = plugin_pid(&p, &id);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(first),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_for("a new plugin process", Duration::from_secs(15), || {
            state(&p, &id)
                .and_then(|s| s["pid"].as_i64())
                .is_some_and(|pid| pid as i32 != first && alive(pid as i32))
        });
        let list = harness::http(&socket("sp"), "POST", "/VolumeDriver.List", Some(b"{}")).unwrap();
        assert_eq!(
            list.status,
            200,
            "serving again after the restart: {}",
            list.text()
        );
        let out = env.plugd_cli(&p, ["ls", "--format", "{{.Name}} {{.Enabled}}"]);
        assert_eq!(
            out.assert_ok().lines(),
            ["sp:latest true"],
            "the plugin stayed enabled"
        );

        // PID 1 ignores SIGTERM (a shell with the signal ignored): disable waits the grace, then kills.
        let mut cfg = static_plugin_config();
        cfg["entrypoint"] = serde_json::json!([
            "/bin/sh",
            "-c",
            "trap '' TERM; /static-plugin & while true; do sleep 1; done"
        ]);
        let stubborn = busybox_bundle(env, "stubborn", &cfg);
        let sid = create_enable(env, &p, "stubborn", &stubborn);
        let spid = plugin_pid(&p, &sid);
        let t = Instant::now();
        env.plugd_cli(&p, ["disable", "stubborn"]).assert_ok();
        let took = t.elapsed();
        println!("disable of a SIGTERM-ignoring plugin took {took:?}");
        assert!(
            took >= Duration::from_millis(1800),
            "disable returned before the grace period: {took:?}"
        );
        assert!(
            took < Duration::from_secs(10),
            "disable took too long: {took:?}"
        );
        assert!(!alive(spid));
    })
}

/// A native plugin whose entrypoint never creates its socket, enabled with a large timeout: a
/// disable, and then an rm -f, arriving meanwhile answer at once (the start is cancelled, not
/// waited for) and leave no process, cgroup or mount of the plugin behind.
#[test]
fn disable_and_rm_cancel_a_start_that_never_becomes_ready() {
    harness::isolated(|env| {
        let p = env.plugd(&[]);
        let mut cfg = static_plugin_config();
        cfg["entrypoint"] = serde_json::json!(["/bin/sh", "-c", "while true; do sleep 1; done"]);
        let bundle = busybox_bundle(env, "never", &cfg);
        env.plugd_cli_cmd(&p, ["create", "never"])
            .arg(bundle.path())
            .run()
            .assert_ok();
        let id = env
            .plugd_cli(&p, ["inspect", "-f", "{{.Id}}", "never"])
            .assert_ok()
            .trimmed()
            .to_owned();
        for verb in [&["disable", "never"][..], &["rm", "-f", "never"]] {
            let enable = env.plugd_cli_cmd(&p, ["enable", "--timeout", "1000", "never"]);
            let enable = std::thread::spawn(move || enable.run());
            wait_for(
                "the never-ready plugin's process",
                Duration::from_secs(15),
                || state(&p, &id).is_some(),
            );
            let record = state(&p, &id).expect("state.json");
            let pid = record["pid"].as_i64().expect("pid") as i32;
            let cgroups: Vec<PathBuf> =
                serde_json::from_value(record["cgroups"].clone()).expect("cgroups");
            assert!(alive(pid));
            let t = Instant::now();
            env.plugd_cli(&p, verb).assert_ok();
            let took = t.elapsed();
            println!("{verb:?} during the start took {took:?}");
            assert!(took < Duration::from_secs(3), "{verb:?} took {took:?}");
            let enabled = enable.join().expect("enable thread");
            enabled.assert_failed();
            assert!(!alive(pid), "{verb:?} left the plugin process {pid}");
            for cg in &cgroups {
                assert!(!cg.exists(), "{verb:?} left the cgroup {}", cg.display());
            }
            assert_eq!(mounts_below(p.data_root()), Vec::<String>::new());
        }
        let out = env.plugd_cli(&p, ["ls", "-q"]);
        assert_eq!(out.assert_ok().trimmed(), "", "rm -f removed the plugin");
    })
}

#[test]
fn plugins_outlive_a_killed_plugd_and_are_adopted_by_the_next() {
    harness::isolated(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let mut p = env.plugd(&[]);
        let id = create_enable(env, &p, "sp", &env.static_plugin_bundle("sp"));
        let pid = plugin_pid(&p, &id);
        env.docker(Cli::Docker28, &d, ["volume", "create", "-d", "sp", "va"])
            .assert_ok();
        env.docker(
            Cli::Docker28,
            &d,
            [
                "run",
                "--rm",
                "-v",
                "va:/data",
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                "echo kept > /data/f",
            ],
        )
        .assert_ok();

        p.kill();
        assert!(alive(pid), "a kill -9 of plugd leaves its plugins running");
        let pm = p
            .data_root()
            .join("plugins")
            .join(&id)
            .join("propagated-mount");
        assert!(
            !mounts_below(&pm).is_empty(),
            "the propagated mount stays while the plugin runs"
        );
        // A dockerd call made while plugd is down is served once plugd is back: dockerd retries
        // a plugin it cannot reach (≈15 s), and the restarted plugd adopts the running plugin.
        let outage = std::thread::scope(|scope| {
            let call = scope.spawn(|| {
                env.docker(
                    Cli::Docker28,
                    &d,
                    [
                        "run",
                        "--rm",
                        "-v",
                        "va:/data",
                        BUSYBOX_IMAGE,
                        "cat",
                        "/data/f",
                    ],
                )
            });
            std::thread::sleep(Duration::from_secs(1));
            p.start();
            call.join().expect("docker call thread")
        });
        assert_eq!(outage.assert_ok().trimmed(), "kept", "{outage}");
        assert_eq!(
            plugin_pid(&p, &id),
            pid,
            "the same process was adopted, not a new one launched"
        );
        assert!(alive(pid));
        let out = env.docker(
            Cli::Docker28,
            &d,
            [
                "run",
                "--rm",
                "-v",
                "va:/data",
                BUSYBOX_IMAGE,
                "cat",
                "/data/f",
            ],
        );
        assert_eq!(
            out.assert_ok().trimmed(),
            "kept",
            "dockerd reaches the volume through the new plugd"
        );
        env.docker(Cli::Docker28, &d, ["volume", "rm", "va"])
            .assert_ok();
        env.plugd_cli(&p, ["rm", "-f", "sp"]).assert_ok();
        assert!(!alive(pid));
        assert_eq!(mounts_below(p.data_root()), Vec::<String>::new());
    })
}
