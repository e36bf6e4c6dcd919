//! Native log drivers through plugd, used by a real dockerd: the SDK-built native example
//! (`guest-examples/log/native`) as `--log-driver`, `docker logs` (ReadLogs) and `docker logs -f`,
//! a line over 16 KiB, a plugin killed mid-stream and restarted (every line accounted for, the
//! Dropped counter exact), and `StartLogging` calls naming anything but a FIFO of the engine's.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{
    self, BUSYBOX_IMAGE, Cli, Dockerd, ENGINE_LOGGING_DIR, Env, PLUGIN_SOCKET_DIR, Plugd,
    target_dir, wait_for,
};

/// The native packaging of the example log driver.
fn native_log_example() -> PathBuf {
    let p = target_dir().join("wasm-guests/x86_64-unknown-linux-musl/release/plugd-example-log");
    assert!(
        p.is_file(),
        "{} is missing: build it with .ci/test (or cargo build --release --target \
         x86_64-unknown-linux-musl -p plugd-example-log-native in guest-examples)",
        p.display()
    );
    p
}

/// Creates and enables the native example as `name`; returns its id.
fn enable_native_log(env: &Env, p: &Plugd, name: &str) -> String {
    let cfg: serde_json::Value =
        serde_json::from_str(include_str!("../../guest-examples/log/config-native.json")).unwrap();
    let bundle = env
        .bundle(name)
        .config(&cfg)
        .copy("plugd-example-log", &native_log_example(), 0o755)
        .dir("data")
        .dir("run/docker/plugins");
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

/// The plugin's pid as plugd recorded it (never looked up by name).
fn plugin_pid(p: &Plugd, id: &str) -> Option<i32> {
    let text =
        std::fs::read_to_string(p.exec_root().join("state").join(id).join("state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

/// `GET /plugins/{name}/logstreams` on plugd's API socket.
fn log_streams(p: &Plugd, name: &str) -> Vec<serde_json::Value> {
    let r = harness::http(
        p.socket(),
        "GET",
        &format!("/plugins/{name}/logstreams"),
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_str::<Vec<serde_json::Value>>(&r.text()).unwrap()
}

fn docker(env: &Env, d: &Dockerd, args: &[&str]) -> harness::Output {
    env.docker(Cli::Docker28, d, args)
}

/// Runs `script` in a busybox container logging to `driver`, detached; returns its id.
fn run_detached(env: &Env, d: &Dockerd, driver: &str, script: &str) -> String {
    docker(
        env,
        d,
        &[
            "run",
            "-d",
            "--log-driver",
            driver,
            BUSYBOX_IMAGE,
            "sh",
            "-c",
            script,
        ],
    )
    .assert_ok()
    .trimmed()
    .to_owned()
}

fn logs(env: &Env, d: &Dockerd, id: &str) -> Vec<String> {
    docker(env, d, &["logs", id])
        .assert_ok()
        .lines()
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[test]
fn docker_logs_reads_back_through_a_native_log_driver() {
    harness::isolated(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&[]);
        let id = enable_native_log(env, &p, "lognat");

        let c = run_detached(env, &d, "lognat", "for i in 1 2 3; do echo line$i; done");
        docker(env, &d, &["wait", &c]).assert_ok();
        assert_eq!(logs(env, &d, &c), ["line1", "line2", "line3"]);

        // A line of 40000 bytes: dockerd splits it into 16 KiB frames, it comes back whole.
        let c = run_detached(
            env,
            &d,
            "lognat",
            "head -c 40000 /dev/zero | tr '\\0' x; echo; echo after",
        );
        docker(env, &d, &["wait", &c]).assert_ok();
        let got = logs(env, &d, &c);
        assert_eq!(
            got.len(),
            2,
            "{:?}",
            got.iter().map(String::len).collect::<Vec<_>>()
        );
        assert_eq!(got[0], "x".repeat(40000));
        assert_eq!(got[1], "after");

        // Every stream was relayed whole, and none is left open (`docker logs` of a stopped
        // container adds a stream of its own, never written, around its ReadLogs).
        // dockerd ends that stream some time after `docker logs` returns.
        wait_for("every log stream closed", Duration::from_secs(20), || {
            log_streams(&p, "lognat").iter().all(|s| s["Open"] == false)
        });
        let streams = log_streams(&p, "lognat");
        for s in &streams {
            assert_eq!(s["Open"], false, "{s}");
            assert_eq!(s["Dropped"], 0, "{s}");
            assert_eq!(s["Received"], s["Delivered"], "{s}");
        }
        let written: Vec<u64> = streams
            .iter()
            .filter_map(|s| s["Received"].as_u64())
            .filter(|&n| n > 0)
            .collect();
        // Three lines; then the 40000-byte line as three fragments, and "after".
        assert_eq!(written, [3, 4], "{streams:?}");

        // The plugin's /run/docker/logging is plugd's directory, read-only, and holds no FIFO of
        // another plugin's: a FIFO the engine has for someone else is not there.
        let pid = plugin_pid(&p, &id).expect("running");
        let other = Path::new(ENGINE_LOGGING_DIR).join("someone-elses");
        nix::unistd::mkfifo(&other, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let inside = PathBuf::from(format!("/proc/{pid}/root{ENGINE_LOGGING_DIR}"));
        let names: Vec<_> = std::fs::read_dir(&inside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.is_empty(), "{names:?}");
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        let line = mountinfo
            .lines()
            .find(|l| l.split(' ').nth(4) == Some(ENGINE_LOGGING_DIR))
            .unwrap_or_else(|| {
                panic!("no {ENGINE_LOGGING_DIR} mount in the sandbox:\n{mountinfo}")
            });
        let opts = line.split(' ').nth(5).unwrap();
        assert!(opts.split(',').any(|o| o == "ro"), "{line}");
    })
}

#[test]
fn docker_logs_follow_grows_while_the_container_runs_and_ends_with_it() {
    harness::isolated(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&[]);
        enable_native_log(env, &p, "lognat");
        let c = run_detached(
            env,
            &d,
            "lognat",
            "for i in $(seq 1 10); do echo f$i; sleep 0.2; done",
        );
        let mut follow = env
            .docker_cmd(Cli::Docker28, &d, ["logs", "-f", &c])
            .to_command()
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let seen: Arc<Mutex<Vec<(Duration, String)>>> = Arc::default();
        let reader = {
            let seen = seen.clone();
            let out = follow.stdout.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    seen.lock()
                        .unwrap()
                        .push((started.elapsed(), line.unwrap()));
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = follow.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "docker logs -f never ended");
            std::thread::sleep(Duration::from_millis(20));
        };
        reader.join().unwrap();
        assert!(status.success());
        let seen = seen.lock().unwrap().clone();
        let lines: Vec<&str> = seen.iter().map(|(_, l)| l.as_str()).collect();
        let want: Vec<String> = (1..=10).map(|i| format!("f{i}")).collect();
        assert_eq!(lines, want);
        // It followed: the lines arrived over the container's ~2 s, not all at the end.
        let spread = seen.last().unwrap().0 - seen.first().unwrap().0;
        assert!(spread >= Duration::from_millis(1000), "{seen:?}");
    })
}

#[test]
fn a_log_plugin_killed_mid_stream_loses_no_line() {
    harness::isolated(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&["--health-interval", "100ms"]);
        let id = enable_native_log(env, &p, "lognat");
        const N: usize = 400;
        let c = run_detached(
            env,
            &d,
            "lognat",
            &format!("for i in $(seq 1 {N}); do echo n$i; sleep 0.01; done"),
        );
        std::thread::sleep(Duration::from_millis(1500));
        let first = plugin_pid(&p, &id).expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(first),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_for("a new plugin process", Duration::from_secs(15), || {
            plugin_pid(&p, &id).is_some_and(|pid| pid != first)
        });
        let running = docker(env, &d, &["inspect", "-f", "{{.State.Running}}", &c]);
        assert_eq!(
            running.assert_ok().trimmed(),
            "true",
            "the plugin came back while the container was still writing"
        );
        docker(env, &d, &["wait", &c]).assert_ok();

        let got = logs(env, &d, &c);
        let streams = log_streams(&p, "lognat");
        let s = streams
            .iter()
            .filter(|s| s["ContainerID"] == c.as_str())
            .max_by_key(|s| s["Received"].as_u64())
            .unwrap_or_else(|| panic!("no stream of {c}: {streams:?}"));
        assert_eq!(s["Received"], N, "{s}");
        let dropped = s["Dropped"].as_u64().unwrap() as usize;
        let want: Vec<String> = (1..=N).map(|i| format!("n{i}")).collect();
        // In order, no line lost that the counter does not own up to. A batch the plugin stored
        // but had not taken from its FIFO when it died is stored again: repeated lines are
        // allowed, missing ones are not.
        let mut unique: Vec<&String> = Vec::new();
        for l in &got {
            if unique.last().is_none_or(|last| {
                let n = |s: &str| s[1..].parse::<usize>().unwrap();
                n(l) > n(last)
            }) {
                unique.push(l);
            }
        }
        let missing: Vec<&String> = want.iter().filter(|w| !unique.contains(w)).collect();
        assert_eq!(missing.len(), dropped, "missing {missing:?}, counters {s}");
        assert!(
            p.log().contains("log stream resumed after a restart"),
            "the restarted plugin was handed the stream again"
        );
        eprintln!(
            "crash test: {} lines back of {N}, {} repeated, dropped {dropped}",
            got.len(),
            got.len() - unique.len()
        );
    })
}

#[test]
fn start_logging_outside_the_engines_fifos_is_refused() {
    harness::isolated(|env| {
        let p = env.plugd(&[]);
        let id = enable_native_log(env, &p, "lognat");
        let engine = Path::new(ENGINE_LOGGING_DIR);
        std::fs::write(engine.join("plain"), b"secret").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", engine.join("link")).unwrap();
        std::fs::create_dir(engine.join("dir")).unwrap();
        let socket = Path::new(PLUGIN_SOCKET_DIR).join("lognat.sock");
        let relay_dir = p.exec_root().join("state").join(&id).join("logging");
        for file in [
            "/etc/passwd",
            "/run/docker/logging/../../../etc/passwd",
            "/run/docker/logging/dir/x",
            "/run/docker/logging/plain",
            "/run/docker/logging/link",
            "/run/docker/logging/dir",
            "/run/docker/logging/missing",
        ] {
            let body = serde_json::json!({"File": file, "Info": {"ContainerID": "abc"}});
            let r = harness::http(
                &socket,
                "POST",
                "/LogDriver.StartLogging",
                Some(body.to_string().as_bytes()),
            )
            .unwrap();
            assert_ne!(r.status, 200, "{file}: {}", r.text());
            let names: Vec<_> = std::fs::read_dir(&relay_dir)
                .map(|d| d.map(|e| e.unwrap().file_name()).collect())
                .unwrap_or_default();
            assert!(names.is_empty(), "{file}: {names:?}");
        }
        // Nothing reached the plugin: it records each stream it starts in its data dir.
        let data = p
            .data_root()
            .join("plugins")
            .join(&id)
            .join("propagated-mount");
        let kept: Vec<_> = std::fs::read_dir(&data)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(kept.is_empty(), "{kept:?}");
        assert!(log_streams(&p, "lognat").is_empty());
    })
}

#[test]
fn a_container_logging_through_a_plugd_restart_loses_no_line() {
    harness::isolated(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let mut p = env.plugd(&[]);
        let id = enable_native_log(env, &p, "lognat");
        const N: usize = 300;
        let c = run_detached(
            env,
            &d,
            "lognat",
            &format!("for i in $(seq 1 {N}); do echo n$i; sleep 0.01; done"),
        );
        std::thread::sleep(Duration::from_millis(1000));
        let pid = plugin_pid(&p, &id).expect("running");
        p.kill();
        std::thread::sleep(Duration::from_millis(500));
        p.start();
        assert_eq!(
            plugin_pid(&p, &id),
            Some(pid),
            "the plugin was adopted, not restarted"
        );
        let running = docker(env, &d, &["inspect", "-f", "{{.State.Running}}", &c]);
        assert_eq!(
            running.assert_ok().trimmed(),
            "true",
            "plugd came back in time"
        );
        docker(env, &d, &["wait", &c]).assert_ok();
        let want: Vec<String> = (1..=N).map(|i| format!("n{i}")).collect();
        assert_eq!(logs(env, &d, &c), want);
        assert!(
            p.log().contains("log stream resumed after a plugd restart"),
            "the new plugd relayed the recorded stream"
        );
    })
}
