//! Root integration tests of the native runtime: real `plugd-init`, real sandboxes, the static
//! fixture plugin. Each test runs in its own private mount namespace (see `harness`).
//!
//! Needs: root, `unshare`, `/usr/bin/busybox` (static), `plugd-init` (`cargo build -p plugd-init`)
//! and the static fixture (`cargo build -p plugd-static-plugin --target x86_64-unknown-linux-musl`).

mod harness;

use bytes::Bytes;
use harness::{Env, alive, block_on, init_binary, mounts_under, state, wait_until};
use plugd_core::{Health, Instance, PluginSpec, Runtime};
use plugd_native::NativeRuntime;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn runtime() -> NativeRuntime {
    NativeRuntime::builder()
        .init_binary(init_binary())
        .build()
        .expect("native runtime builds")
}

/// Starts `spec`, printing how long until its socket answered.
async fn start(rt: &NativeRuntime, spec: &PluginSpec) -> Arc<dyn Instance> {
    rt.prepare(spec).await.expect("prepare");
    let t = Instant::now();
    let instance = rt.start(spec).await.expect("start");
    println!("{}: start → socket answers: {:?}", spec.name, t.elapsed());
    instance
}

fn recorded_pid(spec: &PluginSpec) -> i32 {
    state(spec).expect("state.json after start")["pid"]
        .as_i64()
        .unwrap() as i32
}

fn recorded_cgroups(spec: &PluginSpec) -> Vec<PathBuf> {
    state(spec).expect("state.json after start")["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| PathBuf::from(c.as_str().unwrap()))
        .collect()
}

fn kill9(pid: i32) {
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
}

async fn call_ok(i: &dyn Instance, method: &str, body: serde_json::Value) -> serde_json::Value {
    let reply = i.call(method, Bytes::from(body.to_string())).await;
    assert_eq!(
        reply.status,
        200,
        "{method}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    serde_json::from_slice(&reply.body).unwrap()
}

/// Nothing of the plugin is left on the host: process, mounts under the propagated dir, cgroups,
/// FIFOs, state.json; the runtime and state dirs themselves stay (they are the manager's).
fn assert_clean(spec: &PluginSpec, pid: i32, cgroups: &[PathBuf]) {
    assert!(!alive(pid), "plugin process {pid} still alive");
    let pm = spec.propagated_mount.as_deref().unwrap();
    assert_eq!(
        mounts_under(pm),
        Vec::<PathBuf>::new(),
        "mounts left under the propagated dir"
    );
    for cg in cgroups {
        assert!(!cg.exists(), "cgroup {} left", cg.display());
    }
    for f in ["init-stdout", "init-stderr", "state.json"] {
        assert!(
            !spec.state_dir.join(f).exists(),
            "{f} left in the state dir"
        );
        assert!(
            !spec.runtime_dir.join(f).exists(),
            "{f} in the runtime dir (the plugin's, never plugd's)"
        );
    }
    assert!(
        spec.runtime_dir.is_dir() && spec.state_dir.is_dir(),
        "the runtime and state dirs are the manager's to remove"
    );
}

/// Mounts a tmpfs at `inside` in the plugin's mount namespace, as a volume plugin would.
fn mount_inside(pid: i32, inside: &str) {
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-m",
            "--",
            "/bin/busybox",
            "mount",
            "-t",
            "tmpfs",
            "vol",
            inside,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nsenter mount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn start_call_kill9_health_stop_cleans_everything() {
    harness::isolated(|env: &Env| {
        harness::init_logging();
        let spec = env.static_plugin("life", |_| {});
        block_on(async {
            let rt = runtime();
            let instance = start(&rt, &spec).await;
            assert_eq!(instance.health(), Health::Ready);
            let pid = recorded_pid(&spec);
            let cgroups = recorded_cgroups(&spec);
            assert!(
                !cgroups.is_empty(),
                "state.json records the plugin's cgroups"
            );

            // Forwarded calls; the volume dir appears on the host through the propagated mount.
            let caps = call_ok(&*instance, "VolumeDriver.Capabilities", json!({})).await;
            assert_eq!(caps["Capabilities"]["Scope"], "local");
            call_ok(&*instance, "VolumeDriver.Create", json!({"Name": "v1"})).await;
            let m = call_ok(
                &*instance,
                "VolumeDriver.Mount",
                json!({"Name": "v1", "ID": "x"}),
            )
            .await;
            assert_eq!(m["Mountpoint"], "/data/volumes/v1");
            let pm = spec.propagated_mount.clone().unwrap();
            assert!(
                pm.join("volumes/v1").is_dir(),
                "volume dir visible on the host"
            );
            let t = Instant::now();
            for _ in 0..100 {
                call_ok(&*instance, "VolumeDriver.Get", json!({"Name": "v1"})).await;
            }
            println!("100 forwarded Get calls: {:?}", t.elapsed());

            // A mount the plugin makes propagates to the host (pitfall 1)...
            mount_inside(pid, "/data/volumes/v1");
            assert!(
                mounts_under(&pm).contains(&pm.join("volumes/v1")),
                "the plugin's mount reached the host: {:?}",
                mounts_under(&pm)
            );

            // kill -9 → Failed, with how it ended.
            kill9(pid);
            assert!(wait_until(Duration::from_secs(5), || instance.health()
                != Health::Ready));
            assert_eq!(
                instance.health(),
                Health::Failed("was killed by signal 9 (SIGKILL)".into())
            );
            let reply = instance.call("VolumeDriver.List", Bytes::new()).await;
            assert_eq!(reply.status, 500);

            // ...and stop cleans up even the plugin's mounts, quickly since it is already dead.
            let t = Instant::now();
            instance.stop(Duration::from_secs(10)).await;
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "stop of a dead plugin took {:?}",
                t.elapsed()
            );
            assert_clean(&spec, pid, &cgroups);
            // A second stop is harmless.
            instance.stop(Duration::from_secs(10)).await;
        });
    });
}

#[test]
fn graceful_stop_then_restart() {
    harness::isolated(|env: &Env| {
        harness::init_logging();
        let spec = env.static_plugin("restart", |_| {});
        block_on(async {
            let rt = runtime();
            let first = start(&rt, &spec).await;
            let pid = recorded_pid(&spec);
            let cgroups = recorded_cgroups(&spec);
            // The fixture exits 0 on SIGTERM.
            let t = Instant::now();
            first.stop(Duration::from_secs(10)).await;
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "graceful stop took {:?}",
                t.elapsed()
            );
            assert_clean(&spec, pid, &cgroups);
            assert_eq!(
                first.health(),
                Health::Failed("exited with status 0".into())
            );

            // The manager's restart: a new start of the same plugin.
            let second = start(&rt, &spec).await;
            assert_ne!(recorded_pid(&spec), pid);
            call_ok(&*second, "VolumeDriver.List", json!({})).await;
            second.stop(Duration::from_secs(10)).await;
        });
    });
}

#[test]
fn a_plugin_ignoring_sigterm_is_killed_after_the_grace_period() {
    harness::isolated(|env: &Env| {
        harness::init_logging();
        // PID 1 is a shell that ignores SIGTERM; the fixture serves the socket in the background.
        let spec = env.static_plugin("stubborn", |c| {
            c["entrypoint"] = json!(["/bin/sh", "-c", "trap '' TERM; /static-plugin & wait"]);
        });
        block_on(async {
            let rt = runtime();
            let instance = start(&rt, &spec).await;
            let pid = recorded_pid(&spec);
            let cgroups = recorded_cgroups(&spec);
            call_ok(&*instance, "VolumeDriver.List", json!({})).await;
            let t = Instant::now();
            instance.stop(Duration::from_secs(1)).await;
            let took = t.elapsed();
            assert!(
                took >= Duration::from_secs(1),
                "killed before the grace period: {took:?}"
            );
            assert!(took < Duration::from_secs(4), "stop took {took:?}");
            assert_clean(&spec, pid, &cgroups);
            assert_eq!(
                instance.health(),
                Health::Failed("was killed by signal 9 (SIGKILL)".into())
            );
        });
    });
}

#[test]
fn a_restarted_plugd_adopts_the_running_plugin() {
    harness::isolated(|env: &Env| {
        harness::init_logging();
        let spec = env.static_plugin("adopt", |_| {});
        block_on(async {
            let (pid, cgroups) = {
                let rt = runtime();
                let instance = start(&rt, &spec).await;
                call_ok(&*instance, "VolumeDriver.Create", json!({"Name": "kept"})).await;
                (recorded_pid(&spec), recorded_cgroups(&spec))
                // The instance and the runtime are dropped without a stop: a killed plugd.
            };
            assert!(alive(pid), "the plugin outlives its plugd");

            let rt = runtime();
            let instance = start(&rt, &spec).await;
            assert_eq!(recorded_pid(&spec), pid, "adopted, not relaunched");
            let list = call_ok(&*instance, "VolumeDriver.List", json!({})).await;
            assert_eq!(list["Volumes"][0]["Name"], "kept");
            let plugins = processes_running(&spec.rootfs.join("static-plugin"));
            assert_eq!(plugins, vec![pid], "exactly one plugin process");
            assert_eq!(instance.health(), Health::Ready);

            // An adopted plugin is watched too, and stops the same way.
            instance.stop(Duration::from_secs(10)).await;
            assert_clean(&spec, pid, &cgroups);
        });
    });
}

#[test]
fn a_dead_recorded_plugin_is_cleaned_up_and_relaunched() {
    harness::isolated(|env: &Env| {
        harness::init_logging();
        let spec = env.static_plugin("stale", |_| {});
        block_on(async {
            let (pid, cgroups) = {
                let rt = runtime();
                let _instance = start(&rt, &spec).await;
                let pid = recorded_pid(&spec);
                mount_inside(pid, "/data");
                (pid, recorded_cgroups(&spec))
            };
            // The plugin dies while no plugd runs; its mount stays on the host.
            kill9(pid);
            assert!(wait_until(Duration::from_secs(5), || !alive(pid)));
            let pm = spec.propagated_mount.clone().unwrap();
            assert!(
                mounts_under(&pm).len() >= 2,
                "self-bind and the plugin's mount: {:?}",
                mounts_under(&pm)
            );

            let rt = runtime();
            let instance = start(&rt, &spec).await;
            let new_pid = recorded_pid(&spec);
            assert_ne!(new_pid, pid);
            assert_eq!(
                mounts_under(&pm),
                vec![pm.clone()],
                "only the new self-bind; the stale plugin mount is gone"
            );
            call_ok(&*instance, "VolumeDriver.List", json!({})).await;
            instance.stop(Duration::from_secs(10)).await;
            assert_clean(&spec, new_pid, &cgroups);
        });
    });
}

#[test]
fn a_plugin_that_exits_before_its_socket_is_reported_with_its_stderr() {
    harness::isolated(|env: &Env| {
        harness::init_logging();
        let spec = env.static_plugin("early", |c| {
            c["entrypoint"] = json!([
                "/bin/sh",
                "-c",
                "echo 'cannot start: no config' >&2; exit 7"
            ]);
        });
        block_on(async {
            let rt = runtime();
            rt.prepare(&spec).await.unwrap();
            let err = rt
                .start(&spec)
                .await
                .err()
                .expect("start fails")
                .to_string();
            assert!(
                err.contains("exited with status 7 before its socket"),
                "{err}"
            );
            assert!(err.contains("cannot start: no config"), "{err}");
            let pm = spec.propagated_mount.as_deref().unwrap();
            assert_eq!(mounts_under(pm), Vec::<PathBuf>::new());
            for f in ["init-stdout", "init-stderr", "state.json"] {
                assert!(!spec.state_dir.join(f).exists(), "{f} left");
            }
        });
    });
}

#[test]
fn a_missing_entrypoint_is_refused_by_prepare() {
    harness::isolated(|env: &Env| {
        let spec = env.static_plugin("missing", |c| c["entrypoint"] = json!(["/nope"]));
        block_on(async {
            let rt = runtime();
            let err = rt.prepare(&spec).await.unwrap_err().to_string();
            assert_eq!(err, "entrypoint \"/nope\" does not exist in the rootfs");
        });
    });
}

#[test]
fn a_failed_sandbox_step_is_reported_and_cleaned_up() {
    harness::isolated(|env: &Env| {
        harness::init_logging();
        // The mount source exists nowhere: the spec is fine, the init fails binding it.
        let spec = env.static_plugin("badmount", |c| {
            c["mounts"] = json!([{
                "name": "m", "description": "", "type": "bind", "source": "/nonexistent/plugd-src",
                "destination": "/mnt", "options": ["rbind"], "settable": []
            }]);
        });
        block_on(async {
            let rt = runtime();
            let err = rt
                .start(&spec)
                .await
                .err()
                .expect("start fails")
                .to_string();
            assert!(err.contains("sandbox setup failed at "), "{err}");
            assert!(err.contains("/mnt"), "the failing mount is named: {err}");
            let pm = spec.propagated_mount.as_deref().unwrap();
            assert_eq!(mounts_under(pm), Vec::<PathBuf>::new());
            for f in ["init-stdout", "init-stderr", "state.json"] {
                assert!(!spec.state_dir.join(f).exists(), "{f} left");
            }
            assert!(!cgroup_named(&spec.id), "the plugin's cgroup is removed");
        });
    });
}

#[test]
fn a_cancelled_start_is_cleaned_up_before_the_next_one() {
    harness::isolated(|env: &Env| {
        harness::init_logging();
        let spec = env.static_plugin("cancel", |_| {});
        block_on(async {
            let rt = runtime();
            // The manager's enable timeout drops the start future part-way.
            for delay_ms in [1, 5, 15] {
                let cancelled =
                    tokio::time::timeout(Duration::from_millis(delay_ms), rt.start(&spec)).await;
                if let Ok(started) = cancelled {
                    // Fast enough to finish: stop it and try a shorter delay next.
                    started.expect("start").stop(Duration::from_secs(10)).await;
                }
            }
            // The next start waits for the background cleanup and then launches normally.
            let instance = start(&rt, &spec).await;
            let pid = recorded_pid(&spec);
            call_ok(&*instance, "VolumeDriver.List", json!({})).await;
            let plugins = processes_running(&spec.rootfs.join("static-plugin"));
            assert_eq!(plugins, vec![pid], "only the last start's plugin runs");
            let cgroups = recorded_cgroups(&spec);
            instance.stop(Duration::from_secs(10)).await;
            assert_clean(&spec, pid, &cgroups);

            // Cancelled while waiting for the socket: the running plugin is killed.
            let slow = env.static_plugin("cancel-slow", |c| {
                c["entrypoint"] = json!(["/bin/sh", "-c", "sleep 0.3; exec /static-plugin"]);
            });
            let cancelled = tokio::time::timeout(Duration::from_millis(150), rt.start(&slow)).await;
            assert!(cancelled.is_err(), "the start was cancelled while waiting");
            let instance = start(&rt, &slow).await;
            let pid = recorded_pid(&slow);
            call_ok(&*instance, "VolumeDriver.List", json!({})).await;
            let exe = slow.rootfs.join("bin/busybox");
            assert_eq!(
                processes_running(&exe),
                Vec::<i32>::new(),
                "the cancelled shell is gone"
            );
            let cgroups = recorded_cgroups(&slow);
            instance.stop(Duration::from_secs(10)).await;
            assert_clean(&slow, pid, &cgroups);
        });
    });
}

#[test]
fn startup_time_of_the_static_fixture() {
    harness::isolated(|env: &Env| {
        let spec = env.static_plugin("timing", |_| {});
        block_on(async {
            let rt = runtime();
            rt.prepare(&spec).await.unwrap();
            let mut samples = vec![];
            for _ in 0..10 {
                let t = Instant::now();
                let instance = rt.start(&spec).await.expect("start");
                samples.push(t.elapsed());
                let t = Instant::now();
                call_ok(&*instance, "VolumeDriver.Capabilities", json!({})).await;
                let first_call = t.elapsed();
                instance.stop(Duration::from_secs(10)).await;
                println!(
                    "start → socket answers {:?}, first call {first_call:?}",
                    samples.last().unwrap()
                );
            }
            samples.sort();
            println!(
                "start → socket answers, n=10: min {:?}, median {:?}, max {:?}",
                samples[0], samples[5], samples[9]
            );
            assert!(
                samples[5] < Duration::from_secs(2),
                "median {:?}",
                samples[5]
            );
        });
    });
}

/// True while a cgroup named after the plugin exists in some hierarchy.
fn cgroup_named(id: &str) -> bool {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return false;
    };
    let name = format!("plugd-{id}");
    let mut dirs: Vec<PathBuf> = vec![PathBuf::from("/sys/fs/cgroup")];
    dirs.extend(hierarchies.filter_map(|e| Some(e.ok()?.path())));
    dirs.iter().any(|d| {
        walk(d, 6)
            .iter()
            .any(|p| p.file_name().is_some_and(|n| n == name.as_str()))
    })
}

fn walk(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut out = vec![];
    if depth == 0 {
        return out;
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.path());
                out.extend(walk(&e.path(), depth - 1));
            }
        }
    }
    out
}

/// Live processes whose executable is `exe` (as seen from the host).
fn processes_running(exe: &Path) -> Vec<i32> {
    let want = std::fs::metadata(exe)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .ok();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| alive(*pid))
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/exe"))
                .map(|m| Some(std::os::unix::fs::MetadataExt::ino(&m)) == want)
                .unwrap_or(false)
        })
        .collect()
}

/// A cgroup that is not the plugin's, with a `sleep` in it: what a forged `state.json` names.
struct Decoy {
    dirs: Vec<PathBuf>,
    sleep: std::process::Child,
}

impl Decoy {
    /// `decoy-<n>` in plugd's own cgroup of every hierarchy but cpuset (a new v1 cpuset cgroup
    /// takes no task until configured), with a `sleep` joined to all of them.
    fn new() -> Decoy {
        let layout = plugd_native::cgroup::Layout::detect().expect("cgroup layout");
        let name = format!("decoy-{}", &harness::random_hex()[..8]);
        let dirs: Vec<PathBuf> = layout
            .hierarchies
            .iter()
            .filter(|h| !h.controllers.iter().any(|c| c == "cpuset"))
            .map(|h| h.own_dir.join(&name))
            .collect();
        let sleep = std::process::Command::new("/usr/bin/busybox")
            .args(["sleep", "1000"])
            .spawn()
            .unwrap();
        for d in &dirs {
            std::fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            std::fs::write(d.join("cgroup.procs"), sleep.id().to_string())
                .unwrap_or_else(|e| panic!("join {}: {e}", d.display()));
        }
        Decoy { dirs, sleep }
    }

    fn pid(&self) -> i32 {
        self.sleep.id() as i32
    }

    /// The decoy's process is alive and its cgroups exist.
    fn assert_intact(&self, when: &str) {
        assert!(alive(self.pid()), "{when}: the decoy's process was killed");
        for d in &self.dirs {
            assert!(
                d.is_dir(),
                "{when}: the decoy cgroup {} is gone",
                d.display()
            );
        }
    }
}

impl Drop for Decoy {
    fn drop(&mut self) {
        let _ = self.sleep.kill();
        let _ = self.sleep.wait();
        for d in &self.dirs {
            wait_until(Duration::from_secs(5), || {
                std::fs::remove_dir(d).is_ok() || !d.exists()
            });
        }
    }
}

/// A FIFO standing for a secret host file: a secret is buffered in it, and whoever opens and
/// reads it takes the secret out.
struct SecretFifo {
    path: PathBuf,
    held: std::fs::File,
    secret: String,
}

impl SecretFifo {
    fn new(path: PathBuf) -> SecretFifo {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let mut held = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let secret = format!("SECRET-{}\n", harness::random_hex());
        held.write_all(secret.as_bytes()).unwrap();
        SecretFifo { path, held, secret }
    }

    /// Nobody read it: the whole secret is still buffered.
    fn assert_unread(&mut self, when: &str) {
        use std::io::{Read as _, Write as _};
        // Give a reader that opened it a moment to drain it.
        std::thread::sleep(Duration::from_millis(100));
        let mut buf = vec![0u8; 4096];
        let n = self.held.read(&mut buf).unwrap_or(0);
        assert_eq!(
            String::from_utf8_lossy(&buf[..n]),
            self.secret,
            "{when}: someone read the secret FIFO"
        );
        self.held.write_all(self.secret.as_bytes()).unwrap();
    }
}

/// `/proc/<pid>/stat` field 22.
fn start_time_of(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// A `state.json` naming `pid` (with its real start time) and `cgroups`, for plugin `id`.
fn forged_state(id: &str, pid: i32, cgroups: &[PathBuf]) -> String {
    json!({
        "version": 1,
        "id": id,
        "name": "forged",
        "pid": pid,
        "start_time": start_time_of(pid),
        "cgroups": cgroups,
    })
    .to_string()
}

#[test]
fn a_hostile_plugin_cannot_make_a_restarted_plugd_kill_or_read_host_things() {
    harness::isolated(|env: &Env| {
        harness::init_logging();
        let decoy = Decoy::new();
        let mut secret = SecretFifo::new(env.dir().join("secret-fifo"));
        let mut spec = env.static_plugin("hostile", |_| {});
        // The plugin rewrites whatever it sees in /run/docker/plugins: every FIFO (and the names
        // plugd's FIFOs had) becomes a symlink to the secret, and a state.json names the decoy's
        // pid (with its real start time) and cgroups. Then it serves as usual.
        let forged = forged_state(&spec.id, decoy.pid(), &decoy.dirs);
        let script = format!(
            "cd /run/docker/plugins && \
             for f in *; do [ -p \"$f\" ] && /bin/busybox rm -f \"$f\" && /bin/busybox ln -s '{s}' \"$f\"; done; \
             /bin/busybox ln -sf '{s}' init-stdout; /bin/busybox ln -sf '{s}' init-stderr; \
             echo '{forged}' > state.json; exec /static-plugin",
            s = secret.path.display()
        );
        spec.config.entrypoint = Some(vec!["/bin/sh".into(), "-c".into(), script]);
        block_on(async {
            // 1. Launch; plugd is then killed (the runtime dropped without a stop).
            let pid = {
                let rt = runtime();
                let instance = start(&rt, &spec).await;
                call_ok(&*instance, "VolumeDriver.List", json!({})).await;
                recorded_pid(&spec)
            };
            let runtime_dir: Vec<String> = std::fs::read_dir(&spec.runtime_dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert!(
                runtime_dir.iter().any(|f| f == "state.json"),
                "the plugin wrote its forged state: {runtime_dir:?}"
            );

            // 2. A restarted plugd adopts the real plugin, from its own state dir.
            let rt = runtime();
            let instance = start(&rt, &spec).await;
            assert_eq!(
                recorded_pid(&spec),
                pid,
                "adopted the plugin, not the decoy"
            );
            call_ok(&*instance, "VolumeDriver.List", json!({})).await;
            decoy.assert_intact("after adoption");
            secret.assert_unread("after adoption");
            let cgroups = recorded_cgroups(&spec);
            instance.stop(Duration::from_secs(10)).await;
            assert!(!alive(pid));
            for cg in &cgroups {
                assert!(!cg.exists(), "cgroup {} left", cg.display());
            }
            decoy.assert_intact("after stop");
            secret.assert_unread("after stop");

            // 3. Defence in depth: even a tampered state dir (which the plugin cannot reach)
            // does not get the decoy killed or the secret read. Launch, kill plugd, then make
            // the state name the decoy's cgroups and the stdout FIFO a symlink to the secret.
            let pid = {
                let rt = runtime();
                let _instance = start(&rt, &spec).await;
                recorded_pid(&spec)
            };
            let state_file = spec.state_dir.join("state.json");
            let mut state = harness::state(&spec).unwrap();
            state["cgroups"] = json!(decoy.dirs);
            std::fs::write(&state_file, state.to_string()).unwrap();
            let stdout_fifo = spec.state_dir.join("init-stdout");
            std::fs::remove_file(&stdout_fifo).unwrap();
            std::os::unix::fs::symlink(&secret.path, &stdout_fifo).unwrap();
            let rt = runtime();
            let instance = start(&rt, &spec).await;
            assert_eq!(recorded_pid(&spec), pid, "adopted");
            secret.assert_unread("after adopting with a tampered state dir");
            decoy.assert_intact("after adopting with a tampered state dir");
            instance.stop(Duration::from_secs(10)).await;
            assert!(!alive(pid));
            decoy.assert_intact("after the stop of an adopted plugin");

            // 4. A state naming the decoy's *pid* (its real start time, the plugin's id) and
            // cgroups, with no plugin running: the decoy is neither adopted nor killed.
            std::fs::write(
                &state_file,
                forged_state(&spec.id, decoy.pid(), &decoy.dirs),
            )
            .unwrap();
            let rt = runtime();
            let instance = start(&rt, &spec).await;
            let pid = recorded_pid(&spec);
            assert_ne!(pid, decoy.pid(), "a fresh launch, not the decoy");
            decoy.assert_intact("after cleaning up a forged state");
            call_ok(&*instance, "VolumeDriver.List", json!({})).await;
            instance.stop(Duration::from_secs(10)).await;
            decoy.assert_intact("at the end");
            secret.assert_unread("at the end");
        });
        drop(decoy);
    });
}
