//! Log drivers (`docker.logdriver/1.0`) used by a real dockerd through plugd, the wasm packaging:
//! the example driver (`guest-examples/log`) keeps what containers write and gives it back to
//! `docker logs` (whole lines over 16 KiB included) and `docker logs -f`; a guest that traps or
//! stalls loses exactly the batches plugd counts as dropped, and never blocks the container.
//! The native packaging is in `logdriver_native.rs`.

use std::time::Instant;

use crate::harness::{self, BUSYBOX_IMAGE, Cli, Dockerd, Env, Plugd, http, wasm_guest};

fn config() -> serde_json::Value {
    serde_json::from_str(include_str!("../../guest-examples/log/config.json"))
        .expect("guest-examples/log/config.json is JSON")
}

/// Creates and enables a wasm log driver `name` from the guest `guest`.
fn create(env: &Env, p: &Plugd, name: &str, guest: &str) {
    let bundle = env
        .bundle(name)
        .config(&config())
        .copy("plugin.wasm", &wasm_guest(guest), 0o644);
    env.plugd_cli_cmd(p, ["create", name])
        .arg(bundle.path())
        .run()
        .assert_ok();
    env.plugd_cli(p, ["enable", name]).assert_ok();
}

/// `GET /plugins/{name}/logstreams` on plugd's API.
fn streams(p: &Plugd, name: &str) -> Vec<serde_json::Value> {
    let r = http(
        p.socket(),
        "GET",
        &format!("/plugins/{name}/logstreams"),
        None,
    )
    .expect("plugd API");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().as_array().cloned().unwrap_or_default()
}

/// The stream container `id` logged to (a prefix of the id is enough). `docker logs` of a stopped
/// container opens a stream of its own to read through, never written and closed some time after
/// `docker logs` returns; the container's is the one that received entries.
fn stream_of(p: &Plugd, name: &str, id: &str) -> serde_json::Value {
    streams(p, name)
        .into_iter()
        .filter(|s| s["ContainerID"].as_str().is_some_and(|c| c.starts_with(id)))
        .max_by_key(|s| s["Received"].as_u64().unwrap_or(0))
        .unwrap_or_else(|| panic!("no log stream for {id}: {:?}", streams(p, name)))
}

fn count(s: &serde_json::Value, key: &str) -> u64 {
    s[key].as_u64().unwrap_or_else(|| panic!("{key} in {s}"))
}

/// `docker run -d --log-driver log ARGS`, then waits for the container to exit. Returns its id.
fn run(env: &Env, d: &Dockerd, args: &[&str]) -> String {
    let mut all = vec!["run", "-d", "--log-driver", "log"];
    all.extend_from_slice(args);
    let id = env
        .docker(Cli::Docker28, d, &all)
        .assert_ok()
        .trimmed()
        .to_owned();
    env.docker(Cli::Docker28, d, ["wait", id.as_str()])
        .assert_ok();
    id
}

/// `docker run -d --log-driver log ARGS`, not waited for.
fn start(env: &Env, d: &Dockerd, args: &[&str]) -> String {
    let mut all = vec!["run", "-d", "--log-driver", "log"];
    all.extend_from_slice(args);
    env.docker(Cli::Docker28, d, &all)
        .assert_ok()
        .trimmed()
        .to_owned()
}

#[test]
fn wasm_log_driver_keeps_lines_and_docker_logs_reads_them_back() {
    harness::isolated(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&[]);
        create(env, &p, "log", "plugd_example_log");
        let docker = |args: &[&str]| env.docker(Cli::Docker28, &d, args);

        // Three lines, written before `docker logs` runs: read back through ReadLogs.
        let id = run(
            env,
            &d,
            &[
                "--name",
                "three",
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                "for i in 1 2 3; do echo line$i; done",
            ],
        );
        let logs = docker(&["logs", "three"]).assert_ok().stdout.clone();
        assert_eq!(logs, "line1\nline2\nline3\n");
        let s = stream_of(&p, "log", &id);
        assert_eq!(
            s["Open"], false,
            "StopLogging came at the container's exit: {s}"
        );
        assert_eq!(
            (
                count(&s, "Received"),
                count(&s, "Delivered"),
                count(&s, "Dropped")
            ),
            (3, 3, 0),
            "{s}"
        );
        let table = env
            .plugd_cli(&p, ["logstreams", "log"])
            .assert_ok()
            .stdout
            .clone();
        assert!(table.starts_with("STREAM"), "{table}");
        let row = table
            .lines()
            .find(|l| l.contains(&id[..12]))
            .unwrap_or_else(|| panic!("{table}"));
        assert_eq!(
            row.split_whitespace().skip(2).collect::<Vec<_>>(),
            ["3", "3", "0", "false"],
            "{table}"
        );
        // --tail is the driver's.
        let tail = docker(&["logs", "--tail", "1", "three"])
            .assert_ok()
            .stdout
            .clone();
        assert_eq!(tail, "line3\n");

        // A line over dockerd's 16 KiB buffer: split by dockerd, kept in fragments, whole again.
        let long = "x".repeat(40_000);
        run(
            env,
            &d,
            &[
                "--name",
                "long",
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                "head -c 40000 /dev/zero | tr '\\0' x; echo; echo after",
            ],
        );
        let logs = docker(&["logs", "long"]).assert_ok().stdout.clone();
        assert_eq!(logs, format!("{long}\nafter\n"));

        // Follow: `docker logs -f` started while the container runs sees every line as it
        // comes and ends when the container stops logging.
        start(
            env,
            &d,
            &[
                "--name",
                "ticks",
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                "sleep 1; for i in $(seq 1 8); do echo tick$i; sleep 0.25; done",
            ],
        );
        let mut follow = env
            .docker_cmd(Cli::Docker28, &d, ["logs", "-f", "ticks"])
            .to_command();
        follow.stdout(std::process::Stdio::piped());
        let t = Instant::now();
        let child = follow.spawn().expect("docker logs -f");
        let running = docker(&["inspect", "-f", "{{.State.Running}}", "ticks"])
            .assert_ok()
            .trimmed()
            .to_owned();
        assert_eq!(
            running, "true",
            "follow must start before the container ends"
        );
        // A container logging to it keeps the plugin in use, as a mounted volume does.
        let refused = env.plugd_cli(&p, ["disable", "log"]);
        refused.assert_failed();
        assert!(refused.stderr.contains("is in use"), "{}", refused.stderr);
        let out = child.wait_with_output().expect("docker logs -f");
        let expected: String = (1..=8).map(|i| format!("tick{i}\n")).collect();
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
        assert!(out.status.success());
        eprintln!("docker logs -f followed for {:?}", t.elapsed());
        let state = docker(&["inspect", "-f", "{{.State.Running}}", "ticks"])
            .assert_ok()
            .trimmed()
            .to_owned();
        assert_eq!(
            state, "false",
            "follow ended only once the container stopped"
        );
    });
}

#[test]
fn a_trapping_or_stalled_wasm_log_guest_drops_only_what_it_counts() {
    harness::isolated(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let p = env.plugd(&["--call-timeout", "2s"]);
        create(env, &p, "log", "plugd_fault_log_guest");
        let docker = |args: &[&str]| env.docker(Cli::Docker28, &d, args);

        // One line a batch (the container sleeps between them): the TRAP batch is dropped, the
        // instance replaced, the stream started again on the new one, and the rest delivered.
        let id = run(
            env,
            &d,
            &[
                "--name",
                "trap",
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                "echo a1; sleep 0.5; echo TRAP; sleep 0.5; echo a2; sleep 0.5; echo a3",
            ],
        );
        let logs = docker(&["logs", "trap"]).assert_ok().stdout.clone();
        assert_eq!(logs, "a1\na2\na3\n", "exactly the TRAP line is lost");
        let s = stream_of(&p, "log", &id);
        assert_eq!(
            (
                count(&s, "Received"),
                count(&s, "Delivered"),
                count(&s, "Dropped")
            ),
            (4, 3, 1),
            "{s}"
        );

        // A guest stuck in `log` for the whole call deadline while the container writes 24 MB:
        // plugd keeps draining the FIFO into its bounded buffer and drops what does not fit, so
        // the container is never blocked; every entry is accounted for.
        let started = Instant::now();
        let id = run(
            env,
            &d,
            &[
                "--name",
                "flood",
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                "echo STALL; head -c 24000000 /dev/zero | tr '\\0' y | fold -w 1000; echo last",
            ],
        );
        eprintln!("the flood container ran for {:?}", started.elapsed());
        let s = stream_of(&p, "log", &id);
        let (received, delivered, dropped) = (
            count(&s, "Received"),
            count(&s, "Delivered"),
            count(&s, "Dropped"),
        );
        // STALL and 24 000 lines of 1000 bytes, the last of them ending in `last` (fold writes no
        // final newline).
        assert_eq!(received, 24_001, "plugd read every line dockerd wrote: {s}");
        assert_eq!(received, delivered + dropped, "{s}");
        assert!(dropped > 0, "the stalled guest cannot have taken all: {s}");
        let kept = docker(&["logs", "flood"])
            .assert_ok()
            .stdout
            .lines()
            .count() as u64;
        assert_eq!(
            kept, delivered,
            "docker logs shows exactly the delivered lines"
        );
        // The plugin keeps serving.
        run(env, &d, &["--name", "after", BUSYBOX_IMAGE, "echo", "ok"]);
        assert_eq!(docker(&["logs", "after"]).assert_ok().stdout, "ok\n");
    });
}

#[test]
fn wasm_log_streams_resume_after_a_plugd_restart() {
    harness::isolated(|env| {
        let d = env.dockerd();
        env.import_busybox(&d);
        let mut p = env.plugd(&[]);
        create(env, &p, "log", "plugd_example_log");
        let id = start(
            env,
            &d,
            &[
                "--name",
                "ticks",
                BUSYBOX_IMAGE,
                "sh",
                "-c",
                "for i in $(seq 1 8); do echo tick$i; sleep 0.4; done",
            ],
        );
        wait_for_delivered(&p, &id, 2);
        // plugd goes away mid-stream and comes back: what the container wrote meanwhile waits in
        // dockerd's pipe, and the stream is opened again from plugd's record of it.
        p.restart();
        env.docker(Cli::Docker28, &d, ["wait", "ticks"]).assert_ok();
        let logs = env
            .docker(Cli::Docker28, &d, ["logs", "ticks"])
            .assert_ok()
            .stdout
            .clone();
        let expected: String = (1..=8).map(|i| format!("tick{i}\n")).collect();
        assert_eq!(logs, expected);
        let s = stream_of(&p, "log", &id);
        assert_eq!(count(&s, "Dropped"), 0, "{s}");
    });
}

/// Waits until the stream of container `id` has delivered `n` entries.
fn wait_for_delivered(p: &Plugd, id: &str, n: u64) {
    harness::wait_for(
        &format!("{n} entries delivered"),
        std::time::Duration::from_secs(20),
        || {
            streams(p, "log").iter().any(|s| {
                s["ContainerID"].as_str().is_some_and(|c| c.starts_with(id))
                    && count(s, "Delivered") >= n
            })
        },
    );
}
