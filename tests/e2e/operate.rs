//! Operating plugd (issue 13): each plugin's own log (`plugd logs`, `-f`, rotation), the event
//! stream read by the real docker CLI (`docker events --filter type=plugin` against plugd's API
//! socket), the Prometheus metrics (parsed by a real text-format parser, counters compared with
//! the calls the test made) and `plugd ps`. One native plugin (the static fixture) and one wasm
//! plugin (the fault guest, which writes to stdout/stderr, traps or times out on demand).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::harness::{
    self, Cli, Cmd, Env, PLUGIN_SOCKET_DIR, Plugd, ProcId, fault_guest_wasm, plugd_binary, wait_for,
};

/// The wasm plugin: the fault guest.
const WASM: &str = "faulty";
/// The native plugin: the static fixture.
const NATIVE: &str = "nat";

fn socket_of(name: &str) -> PathBuf {
    Path::new(PLUGIN_SOCKET_DIR).join(format!("{name}.sock"))
}

/// Creates and enables the fault guest as `name`, one instance.
fn create_wasm(env: &Env, p: &Plugd, name: &str) {
    let mut config: Value =
        serde_json::from_str(include_str!("../../guest-examples/volume/config.json")).unwrap();
    config["description"] = json!("fault guest (test fixture)");
    for e in config["env"].as_array_mut().unwrap() {
        if e["name"] == "PLUGD_INSTANCES" {
            e["value"] = json!("1");
        }
    }
    let bundle = env
        .bundle(name)
        .config(&config)
        .copy("plugin.wasm", &fault_guest_wasm(), 0o644);
    env.plugd_cli_cmd(p, ["create", name])
        .arg(bundle.path())
        .run()
        .assert_ok();
    env.plugd_cli(p, ["enable", name]).assert_ok();
}

/// Creates and enables the static fixture as `name`.
fn create_native(env: &Env, p: &Plugd, name: &str) {
    let bundle = env.static_plugin_bundle(name);
    env.plugd_cli_cmd(p, ["create", name])
        .arg(bundle.path())
        .run()
        .assert_ok();
    env.plugd_cli(p, ["enable", name]).assert_ok();
}

/// One protocol call on a plugin's engine-facing socket; returns the status.
fn call(name: &str, method: &str, volume: &str) -> u16 {
    let body = json!({ "Name": volume }).to_string();
    harness::http(
        &socket_of(name),
        "POST",
        &format!("/{method}"),
        Some(body.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("{method} on {name}: {e}"))
    .status
}

fn id_of(env: &Env, p: &Plugd, name: &str) -> String {
    env.plugd_cli(p, ["inspect", "-f", "{{.Id}}", name])
        .assert_ok()
        .trimmed()
        .to_owned()
}

/// `plugd ps --format json`, the row of `name`.
fn status(env: &Env, p: &Plugd, name: &str) -> Value {
    let all = env
        .plugd_cli(p, ["ps", "--format", "json"])
        .assert_ok()
        .json();
    all.as_array()
        .unwrap()
        .iter()
        .find(|r| r["Name"] == format!("{name}:latest"))
        .unwrap_or_else(|| panic!("{name} not in plugd ps: {all}"))
        .clone()
}

/// Kills the native plugin's process and waits until supervision has it running again.
fn crash_native(env: &Env, p: &Plugd) -> u64 {
    let before = status(env, p, NATIVE);
    let pid = before["Pid"]
        .as_i64()
        .expect("a native plugin shows its pid") as i32;
    let id = ProcId::of(pid).expect("the plugin's process exists");
    assert!(id.signal(nix::sys::signal::Signal::SIGKILL));
    wait_for(
        "the native plugin restarted",
        Duration::from_secs(30),
        || {
            let s = status(env, p, NATIVE);
            s["State"] == "running" && s["Pid"].as_i64() != Some(i64::from(pid))
        },
    );
    status(env, p, NATIVE)["Restarts"].as_u64().unwrap()
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn plugd_logs_shows_native_and_wasm_output_follows_and_rotation_keeps_the_bound() {
    harness::isolated(|env| {
        let p = env.plugd(&[
            "--plugin-log-size",
            "4KiB",
            "--plugin-log-files",
            "2",
            "--call-timeout",
            "2s",
        ]);
        create_native(env, &p, NATIVE);
        create_wasm(env, &p, WASM);

        // The native plugin's stderr (the fixture says where it listens).
        let out = env.plugd_cli(&p, ["logs", NATIVE]).assert_ok().clone();
        assert!(
            out.stderr.contains("static-plugin: listening on"),
            "plugd logs {NATIVE}: {out}"
        );

        // A follower of the wasm plugin: stdout to its log file, stderr to a file of its own.
        let err_path = env.path("follow.err");
        let follower = Cmd::new("sh")
            .arg("-c")
            .arg(format!("exec \"$0\" \"$@\" 2>{}", err_path.display()))
            .arg(plugd_binary())
            .args(["-H", &p.host(), "logs", "-f", WASM]);
        let mut follow = env.spawn("plugd-logs-f", follower);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(call(WASM, "VolumeDriver.Get", "say"), 200);
        assert_eq!(call(WASM, "VolumeDriver.Get", "trap"), 500);
        let err_text = || std::fs::read_to_string(&err_path).unwrap_or_default();
        let out_path = follow.log_path().to_path_buf();
        let out_text = || std::fs::read_to_string(&out_path).unwrap_or_default();
        follow.wait_ready("the follower sees the guest's output and trap", || {
            out_text().contains("fault guest says hello on stdout")
                && err_text().contains("fault guest says hello on stderr")
                && err_text().contains("fault guest: trap requested")
                && err_text().contains("[plugd] trap: VolumeDriver.Get: trapped")
        });
        assert!(
            !follow.log().contains("on stderr") && !follow.log().contains("[plugd]"),
            "stdout of plugd logs holds only the plugin's stdout: {}",
            follow.log()
        );
        follow.stop();

        // The daemon's own log holds none of it.
        let daemon = p.log();
        for plugin_said in ["says hello", "static-plugin: listening", "trap requested"] {
            assert!(
                !daemon.contains(plugin_said),
                "plugd's own log holds the plugin's line {plugin_said:?}"
            );
        }

        // --tail and --since.
        let last = env
            .plugd_cli(&p, ["logs", "--tail", "1", WASM])
            .assert_ok()
            .clone();
        let lines = last.stdout.lines().count() + last.stderr.lines().count();
        assert_eq!(lines, 1, "--tail 1: {last}");
        let future = format!("{}", now_secs() as u64 + 3600);
        let none = env
            .plugd_cli(&p, ["logs", "--since", &future, WASM])
            .assert_ok()
            .clone();
        assert!(none.stdout.is_empty() && none.stderr.is_empty(), "{none}");
        env.plugd_cli(&p, ["logs", "--tail", "x", WASM])
            .assert_failed()
            .assert_stderr_contains("tail");
        env.plugd_cli(&p, ["logs", "nosuch"])
            .assert_failed()
            .assert_stderr_contains("nosuch");

        // Rotation: ~240 entries of ~120 bytes into 2 files of 4 KiB.
        for _ in 0..120 {
            assert_eq!(call(WASM, "VolumeDriver.Get", "say"), 200);
        }
        let dir = p.data_root().join("logs").join(id_of(env, &p, WASM));
        wait_for("the last entry on disk", Duration::from_secs(10), || {
            std::fs::read_to_string(dir.join("plugin.log"))
                .is_ok_and(|t| t.contains("says hello on stderr"))
        });
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(
            files,
            ["plugin.log", "plugin.log.1"],
            "in {}",
            dir.display()
        );
        let bytes: u64 = files
            .iter()
            .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
            .sum();
        assert!(bytes <= 2 * 4096, "{bytes} bytes on disk, bound 8 KiB");
        let kept = env.plugd_cli(&p, ["logs", WASM]).assert_ok().clone();
        let said = kept.stdout.matches("says hello on stdout").count();
        assert!(
            (10..120).contains(&said),
            "{said} of 121 stdout lines kept: the oldest rotated out, the newest kept"
        );
        // After plugin rm its log is gone.
        env.plugd_cli(&p, ["disable", WASM]).assert_ok();
        env.plugd_cli(&p, ["rm", WASM]).assert_ok();
        assert!(!dir.exists(), "{} outlived plugin rm", dir.display());
    })
}

#[test]
fn docker_events_against_plugd_shows_the_lifecycle_and_a_crash_and_restart() {
    harness::isolated(|env| {
        let p = env.plugd(&["--health-interval", "300ms"]);
        let since = format!("{:.3}", now_secs() - 1.0);
        // A live reader from the start, as a user would run it.
        let live = env.docker_cmd(
            Cli::Docker28,
            &p,
            [
                "events",
                "--filter",
                "type=plugin",
                "--format",
                "{{json .}}",
            ],
        );
        let mut live = env.spawn("docker-events", live);
        std::thread::sleep(Duration::from_millis(500));

        create_wasm(env, &p, "ev");
        env.plugd_cli(&p, ["disable", "ev"]).assert_ok();
        env.plugd_cli(&p, ["rm", "ev"]).assert_ok();
        create_native(env, &p, NATIVE);
        let restarts = crash_native(env, &p);
        assert_eq!(restarts, 1);

        let until = format!("{:.3}", now_secs() + 1.0);
        let out = env
            .docker(
                Cli::Docker28,
                &p,
                [
                    "events",
                    "--since",
                    &since,
                    "--until",
                    &until,
                    "--filter",
                    "type=plugin",
                    "--format",
                    "{{json .}}",
                ],
            )
            .assert_ok()
            .clone();
        let events: Vec<Value> = out
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let of = |name: &str| -> Vec<String> {
            events
                .iter()
                .filter(|e| e["Actor"]["Attributes"]["name"] == format!("{name}:latest"))
                .map(|e| e["Action"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(of("ev"), ["create", "enable", "disable", "remove"], "{out}");
        assert_eq!(
            of(NATIVE),
            ["create", "enable", "crash", "restart"],
            "{out}"
        );
        for e in &events {
            assert_eq!(e["Type"], "plugin");
            assert_eq!(e["scope"], "local");
            assert!(e["timeNano"].as_i64().unwrap() / 1_000_000_000 == e["time"].as_i64().unwrap());
        }
        let restart = events.iter().find(|e| e["Action"] == "restart").unwrap();
        assert_eq!(restart["Actor"]["Attributes"]["restarts"], "1");
        assert_eq!(restart["Actor"]["Attributes"]["delay"], "0s");
        let crash = events.iter().find(|e| e["Action"] == "crash").unwrap();
        assert!(
            crash["Actor"]["Attributes"]["reason"]
                .as_str()
                .unwrap()
                .contains("signal"),
            "{crash}"
        );
        assert_eq!(crash["Actor"]["ID"], id_of(env, &p, NATIVE));

        // The live reader saw the same actions, as they happened.
        let live_path = live.log_path().to_path_buf();
        live.wait_ready("the live reader sees the restart", || {
            std::fs::read_to_string(&live_path)
                .unwrap_or_default()
                .contains(r#""Action":"restart""#)
        });
        let live_actions: Vec<String> = live
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|e| e["Action"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            live_actions,
            events
                .iter()
                .map(|e| e["Action"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        );
        live.stop();

        // Filters as dockerd's: by event, by plugin; an unknown one refused.
        let only = env
            .docker(
                Cli::Docker28,
                &p,
                [
                    "events",
                    "--since",
                    &since,
                    "--until",
                    &until,
                    "--filter",
                    "event=crash",
                    "--format",
                    "{{.Action}} {{.Actor.Attributes.name}}",
                ],
            )
            .assert_ok()
            .clone();
        assert_eq!(only.trimmed(), "crash nat:latest");
        env.docker(
            Cli::Docker28,
            &p,
            [
                "events", "--since", &since, "--until", &until, "--filter", "bogus=1",
            ],
        )
        .assert_failed()
        .assert_stderr_contains("invalid filter 'bogus'");
        // The plugin's own log notes the crash and the restart.
        let log = env.plugd_cli(&p, ["logs", NATIVE]).assert_ok().clone();
        assert!(log.stderr.contains("[plugd] crash: "), "{log}");
        assert!(log.stderr.contains("[plugd] restarted"), "{log}");
    })
}

/// `/metrics` of plugd's API socket, parsed.
fn scrape(p: &Plugd) -> prometheus_parse::Scrape {
    let resp = harness::http(p.socket(), "GET", "/metrics", None).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = resp.text();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("plugd's /metrics parses as Prometheus text")
}

/// The value of `metric` with exactly these labels (0 if absent).
fn value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .find(|x| {
            x.metric == metric
                && x.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
        })
        .map_or(0.0, |x| match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(b) => b.iter().map(|c| c.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_exactly_the_calls_made() {
    harness::isolated_in_netns(|env| {
        let p = env.plugd(&[
            "--call-timeout",
            "1s",
            "--health-interval",
            "300ms",
            "--metrics-addr",
            "9323",
        ]);
        create_native(env, &p, NATIVE);
        create_wasm(env, &p, WASM);
        let (w, n) = ("faulty:latest", "nat:latest");
        let get = |plugin| [("plugin", plugin), ("method", "VolumeDriver.Get")];
        let before = scrape(&p);

        // The faults first: the good calls after them run on a fresh instance, whose memory
        // the gauge then shows.
        assert_eq!(call(WASM, "VolumeDriver.Get", "trap"), 500);
        assert_eq!(call(WASM, "VolumeDriver.Get", "spin"), 500);
        for i in 0..7 {
            assert_eq!(call(WASM, "VolumeDriver.Get", &format!("v{i}")), 200);
        }
        let native_failed = (0..5)
            .filter(|i| call(NATIVE, "VolumeDriver.Get", &format!("n{i}")) != 200)
            .count();
        let mid = scrape(&p);
        let delta = |m: &str, l: &[(&str, &str)]| value(&mid, m, l) - value(&before, m, l);
        assert_eq!(delta("plugd_plugin_calls_total", &get(w)), 9.0);
        assert_eq!(delta("plugd_plugin_call_errors_total", &get(w)), 2.0);
        assert_eq!(delta("plugd_plugin_calls_total", &get(n)), 5.0);
        assert_eq!(
            delta("plugd_plugin_call_errors_total", &get(n)),
            native_failed as f64
        );
        assert_eq!(
            delta("plugd_plugin_call_duration_seconds", &get(w)),
            9.0,
            "the histogram's +Inf bucket counts every call"
        );
        assert_eq!(
            delta("plugd_plugin_call_duration_seconds_count", &get(w)),
            9.0
        );
        let kind = |k| [("plugin", w), ("kind", k)];
        assert_eq!(delta("plugd_plugin_faults_total", &kind("trap")), 1.0);
        assert_eq!(delta("plugd_plugin_faults_total", &kind("timeout")), 1.0);
        assert_eq!(value(&mid, "plugd_plugin_up", &[("plugin", w)]), 1.0);
        assert_eq!(value(&mid, "plugd_plugin_instances", &[("plugin", w)]), 1.0);
        for plugin in [w, n] {
            let rss = value(
                &mid,
                "plugd_plugin_resident_memory_bytes",
                &[("plugin", plugin)],
            );
            assert!(rss > 0.0, "{plugin}: resident memory {rss}");
        }

        // A crash and restart of the native plugin: counted once each, under its name.
        assert_eq!(crash_native(env, &p), 1);
        let after = scrape(&p);
        assert_eq!(
            value(&after, "plugd_plugin_restarts_total", &[("plugin", n)]),
            1.0
        );
        assert_eq!(
            value(&after, "plugd_plugin_crashes_total", &[("plugin", n)]),
            1.0
        );
        assert_eq!(
            value(&after, "plugd_plugin_calls_total", &get(n)),
            value(&mid, "plugd_plugin_calls_total", &get(n)),
            "the series survives the restart (labelled by name, not by start)"
        );

        // The same exposition on --metrics-addr (loopback of this test's own netns).
        let tcp = std::net::TcpStream::connect("127.0.0.1:9323").unwrap();
        let mut tcp = std::io::BufReader::new(tcp);
        use std::io::{BufRead as _, Read as _, Write as _};
        tcp.get_mut()
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut status_line = String::new();
        tcp.read_line(&mut status_line).unwrap();
        assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");
        let mut rest = String::new();
        tcp.read_to_string(&mut rest).unwrap();
        assert!(rest.contains("plugd_plugin_restarts_total{plugin=\"nat:latest\"} 1"));

        // plugd ps: state, pid or instances, restarts, last error.
        let table = env.plugd_cli(&p, ["ps"]).assert_ok().clone();
        let row = |name: &str| {
            table
                .stdout
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} not in\n{table}"))
                .to_string()
        };
        let nat = row("nat:latest");
        assert!(nat.contains("native") && nat.contains("running"), "{nat}");
        assert!(nat.contains(&status(env, &p, NATIVE)["Pid"].to_string()));
        let wasm = row("faulty:latest");
        assert!(
            wasm.contains("1 instance") && wasm.contains("timed out"),
            "{wasm}"
        );
        let s = status(env, &p, NATIVE);
        assert_eq!(s["Restarts"], 1);
        assert!(s["LastError"].as_str().unwrap().contains("signal"), "{s}");
        env.plugd_cli(&p, ["disable", WASM]).assert_ok();
        assert_eq!(status(env, &p, WASM)["State"], "disabled");
        let gone = scrape(&p);
        assert_eq!(value(&gone, "plugd_plugin_up", &[("plugin", w)]), 0.0);
    })
}
