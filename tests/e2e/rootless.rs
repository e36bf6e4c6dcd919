//! Rootless (issue 13, part 6): `plugd daemon` run by an unprivileged user the test creates, with
//! no path flags (its defaults under `$XDG_RUNTIME_DIR` and `$XDG_DATA_HOME`), serves the wasm
//! example volume plugin, and that user's rootless podman (Debian's podman, `volume_plugins` in
//! its `containers.conf`) creates, mounts, reads back and removes a volume of it. Native plugins
//! are refused with the reason, and nothing the daemon made is root's.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{
    self, Cmd, Env, Output, ProcId, all_pids, busybox_rootfs_tar, example_volume_wasm,
    kill_and_wait, plugd_binary, random_suffix, reap_zombie_children,
};
use crate::volume::example_config;

/// An unprivileged user of this test alone (unique name, subordinate ids for podman). Dropping it
/// — also when the test panics — kills every process running as it (by pid: podman leaves a
/// pause process behind) and deletes the user.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    #[track_caller]
    fn create(home: &Path) -> TestUser {
        let name = format!("pdrl{}", random_suffix(8));
        // useradd takes a lock on /etc/passwd; another test's useradd may hold it a moment.
        let mut last = None;
        for _ in 0..50 {
            let out = Cmd::new("useradd")
                .args(["--no-create-home", "--user-group", "--shell", "/bin/sh"])
                .arg("--home-dir")
                .arg(home)
                .arg(&name)
                .run();
            if out.success() {
                last = None;
                break;
            }
            last = Some(out);
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Some(out) = last {
            panic!("useradd {name} failed: {out}");
        }
        let id = |flag: &str| -> u32 {
            Cmd::new("id")
                .args([flag, &name])
                .run()
                .assert_ok()
                .trimmed()
                .parse()
                .expect("a numeric id")
        };
        let user = TestUser {
            uid: id("-u"),
            gid: id("-g"),
            name,
        };
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{}:", user.name))),
                "useradd gave {} no range in {file} (SUB_UID_COUNT in /etc/login.defs); rootless \
                 podman needs one",
                user.name
            );
        }
        user
    }

    /// Every process whose real or effective uid is this user's.
    fn processes(&self) -> Vec<ProcId> {
        all_pids()
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines().find(|l| l.starts_with("Uid:")).map(|l| {
                            l.split_whitespace()
                                .skip(1)
                                .take(2)
                                .any(|u| u == self.uid.to_string())
                        })
                    })
                    .unwrap_or(false)
            })
            .filter_map(ProcId::of)
            .collect()
    }

    /// `program args` as this user, through `setpriv`, in a clean environment: only `vars`, a
    /// `PATH`, and the user's `HOME`.
    fn cmd(&self, vars: &[(&str, &Path)], program: impl AsRef<Path>) -> Cmd {
        let mut c = Cmd::new("setpriv")
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--init-groups", "--", "env", "-i"])
            .arg("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
        for (k, v) in vars {
            c = c.arg(format!("{k}={}", v.display()));
        }
        c.arg(program.as_ref())
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        for _ in 0..5 {
            let left = self.processes();
            if left.is_empty() {
                break;
            }
            for p in &left {
                eprintln!("rootless: killing {p} (runs as {})", self.name);
            }
            kill_and_wait(&left, Duration::from_secs(10));
        }
        reap_zombie_children();
        for _ in 0..50 {
            let out = Cmd::new("userdel").arg(&self.name).run();
            if out.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("rootless: could not delete user {}", self.name);
    }
}

/// The paths of one rootless setup, all in the test dir and the user's.
struct Layout {
    home: PathBuf,
    runtime: PathBuf,
    data: PathBuf,
}

impl Layout {
    fn vars(&self) -> Vec<(&'static str, &Path)> {
        vec![
            ("HOME", &self.home),
            ("XDG_RUNTIME_DIR", &self.runtime),
            ("XDG_DATA_HOME", &self.data),
        ]
    }

    /// `plugd <args>` as the user, **without** `-H`: the CLI finds the rootless socket itself.
    fn plugd(&self, user: &TestUser, args: &[&str]) -> Cmd {
        user.cmd(&self.vars(), plugd_binary())
            .args(args)
            .current_dir(&self.home)
    }

    /// `podman <args>` as the user, with the test's containers.conf and storage.conf.
    fn podman(&self, user: &TestUser, args: &[&str]) -> Output {
        let conf = self.home.join("containers.conf");
        let storage = self.home.join("storage.conf");
        let mut vars = self.vars();
        vars.push(("CONTAINERS_CONF", &conf));
        vars.push(("CONTAINERS_STORAGE_CONF", &storage));
        user.cmd(&vars, "/usr/bin/podman")
            .args(args)
            .current_dir(&self.home)
            .timeout(Duration::from_secs(120))
            .run()
    }
}

fn chown(path: &Path, user: &TestUser) {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// Every entry under `dir` (itself included) whose owner is not `uid`.
fn not_owned_by(dir: &Path, uid: u32) -> Vec<String> {
    let mut bad = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.uid() != uid || meta.gid() == 0 {
            bad.push(format!("{} ({}:{})", p.display(), meta.uid(), meta.gid()));
        }
        if meta.is_dir()
            && let Ok(rd) = std::fs::read_dir(&p)
        {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    bad
}

#[test]
fn rootless_plugd_serves_the_wasm_volume_plugin_to_rootless_podman() {
    harness::isolated(rootless_podman);
}

fn rootless_podman(env: &Env) {
    // The test dir is root's; the user gets a directory of its own in it, and every path it uses
    // (sockets included) stays short: /tmp/pd-XXXXXX/u/run/plugd/plugins/<name>.sock.
    let top = env.path("u");
    let layout = Layout {
        home: top.join("home"),
        runtime: top.join("run"),
        data: top.join("data"),
    };
    let user = TestUser::create(&layout.home);
    for d in [&top, &layout.home, &layout.runtime, &layout.data] {
        std::fs::create_dir(d).unwrap();
        chown(d, &user);
    }
    std::fs::set_permissions(
        &layout.runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let pm = std::fs::metadata(env.dir()).unwrap().mode();
    assert!(
        pm & 0o005 == 0o005,
        "the test dir must be traversable by the user"
    );

    // 1. The daemon, as the user, with its rootless defaults only; without $XDG_RUNTIME_DIR it
    //    says what is missing instead of trying root's paths.
    user.cmd(&[("HOME", &layout.home)], plugd_binary())
        .arg("daemon")
        .current_dir(&layout.home)
        .run()
        .assert_failed()
        .assert_stderr_contains("$XDG_RUNTIME_DIR is not set: plugd runs rootless");
    let mut daemon = env.spawn(
        "plugd-rootless",
        layout.plugd(&user, &["daemon", "--log-level", "info"]),
    );
    let api = layout.runtime.join("plugd/plugd.sock");
    daemon.wait_ready(&format!("a listener on {}", api.display()), || {
        std::os::unix::net::UnixStream::connect(&api).is_ok()
    });
    assert!(
        daemon.log().contains("rootless: serving wasm plugins only"),
        "{}",
        daemon.log()
    );

    // 2. The example wasm volume plugin, created and enabled by the user's CLI (no -H).
    let bundle = env.bundle("rlvol").config(&example_config()).copy(
        "plugin.wasm",
        &example_volume_wasm(),
        0o644,
    );
    layout
        .plugd(&user, &["create", "rlvol"])
        .arg(bundle.path())
        .run()
        .assert_ok();
    // `plugd check` proves the rootless wasm sandbox is the declared one, as under root.
    layout
        .plugd(&user, &["check", "--runtime", "wasm", "rlvol"])
        .run()
        .assert_ok();
    layout.plugd(&user, &["enable", "rlvol"]).run().assert_ok();
    let id = layout
        .plugd(&user, &["inspect", "--format", "{{.Id}}", "rlvol"])
        .run()
        .assert_ok()
        .trimmed()
        .to_owned();
    let socket = layout.runtime.join("plugd/plugins/rlvol.sock");
    assert!(socket.exists(), "{} is missing", socket.display());
    let volumes = layout
        .data
        .join("plugd/plugins")
        .join(&id)
        .join("propagated-mount");

    // 3. A native plugin is refused, saying why.
    let native = env.static_plugin_bundle("rlnative");
    layout
        .plugd(&user, &["create", "rlnative"])
        .arg(native.path())
        .run()
        .assert_failed()
        .assert_stderr_contains("plugd runs rootless: native plugins need root for their sandbox");

    // 4. Rootless podman: vfs storage in the user's dirs, the plugin by its socket, no network.
    std::fs::write(
        layout.home.join("containers.conf"),
        format!(
            "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
             [engine.volume_plugins]\nrlvol = \"{}\"\n",
            socket.display()
        ),
    )
    .unwrap();
    std::fs::write(
        layout.home.join("storage.conf"),
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            layout.home.join("storage").display(),
            layout.runtime.join("containers").display()
        ),
    )
    .unwrap();
    let tar = layout.home.join("busybox.tar");
    std::fs::copy(busybox_rootfs_tar(), &tar).unwrap();
    for f in ["containers.conf", "storage.conf", "busybox.tar"] {
        chown(&layout.home.join(f), &user);
    }
    let image = "localhost/busybox:rootless";
    layout
        .podman(&user, &["import", &tar.to_string_lossy(), image])
        .assert_ok();
    layout
        .podman(&user, &["volume", "create", "--driver", "rlvol", "v1"])
        .assert_ok();
    let run = |script: &str| {
        layout.podman(
            &user,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "-v",
                "v1:/data",
                image,
                "sh",
                "-c",
                script,
            ],
        )
    };
    run("echo hi > /data/f").assert_ok();
    assert_eq!(run("cat /data/f").assert_ok().trimmed(), "hi");
    // The file is in the plugin's own volume directory (the engine was given that directory,
    // not an empty mountpoint of plugd's), readable through the plugin's data.
    assert_eq!(
        std::fs::read_to_string(volumes.join("v1/f")).unwrap(),
        "hi\n"
    );
    let listed = layout.podman(
        &user,
        &["volume", "ls", "--format", "{{.Name}} {{.Driver}}"],
    );
    assert!(listed.assert_ok().lines().contains(&"v1 rlvol"), "{listed}");
    layout.podman(&user, &["volume", "rm", "v1"]).assert_ok();
    assert!(
        !volumes.join("v1").exists(),
        "the plugin removed the volume"
    );

    // 5. The plugin's volume root reached through a symlink (the user owns the plugin's data; a
    //    guest can make a relative link itself): plugd resolves the path the plugin reports
    //    inside the plugin's data and hands the engine the directory it reaches by its real path,
    //    never a path with the plugin's link in it, which the engine would follow later.
    let plugd = |args: &[&str]| {
        layout
            .plugd(&user, args)
            .run()
            .assert_ok()
            .trimmed()
            .to_owned()
    };
    plugd(&["disable", "rlvol"]);
    std::fs::create_dir(volumes.join("real")).unwrap();
    chown(&volumes.join("real"), &user);
    std::os::unix::fs::symlink("real", volumes.join("vols")).unwrap();
    chown(&volumes.join("vols"), &user);
    plugd(&["set", "rlvol", "VOLUME_ROOT=/data/vols"]);
    plugd(&["enable", "rlvol"]);
    layout
        .podman(&user, &["volume", "create", "--driver", "rlvol", "v2"])
        .assert_ok();
    let name = "rl-linked";
    let run_args = [
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "-v",
        "v2:/data",
        image,
        "sh",
        "-c",
        "echo linked > /data/g; exec sleep 60",
    ];
    layout.podman(&user, &run_args).assert_ok();
    // While the volume is mounted, podman reports the Mountpoint of plugd's Mount reply.
    let mounts = layout
        .podman(&user, &["inspect", "--format", "{{json .Mounts}}", name])
        .assert_ok()
        .json();
    assert_eq!(
        mounts[0]["Source"].as_str().map(PathBuf::from),
        Some(volumes.join("real/v2").canonicalize().unwrap()),
        "the engine got the real directory: {mounts}"
    );
    harness::wait_for("the container's write", Duration::from_secs(30), || {
        std::fs::read_to_string(volumes.join("real/v2/g")).is_ok_and(|t| t == "linked\n")
    });
    layout
        .podman(&user, &["rm", "--force", "--time", "0", name])
        .assert_ok();
    layout.podman(&user, &["volume", "rm", "v2"]).assert_ok();

    // 6. Restarted, the daemon enters a fresh namespace of its own, enables the plugin again
    //    (its views made anew there) and serves it as before.
    daemon.stop();
    let mut daemon = env.spawn(
        "plugd-rootless-2",
        layout.plugd(&user, &["daemon", "--log-level", "info"]),
    );
    daemon.wait_ready(&format!("a listener on {}", socket.display()), || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    assert_eq!(
        plugd(&["inspect", "--format", "{{.Enabled}}", "rlvol"]),
        "true"
    );
    layout
        .podman(&user, &["volume", "create", "--driver", "rlvol", "v3"])
        .assert_ok();
    let out = layout.podman(
        &user,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "v3:/data",
            image,
            "sh",
            "-c",
            "echo again > /data/h && cat /data/h",
        ],
    );
    assert_eq!(out.assert_ok().trimmed(), "again");
    assert_eq!(
        std::fs::read_to_string(volumes.join("real/v3/h")).unwrap(),
        "again\n"
    );
    layout.podman(&user, &["volume", "rm", "v3"]).assert_ok();

    // 7. Nothing the daemon made is root's: its exec root and data root are the user's, all of
    //    them, sockets included.
    daemon.stop();
    let mut bad = not_owned_by(&layout.runtime.join("plugd"), user.uid);
    bad.extend(not_owned_by(&layout.data.join("plugd"), user.uid));
    assert!(bad.is_empty(), "not the user's: {bad:#?}");
    drop(user);
}
