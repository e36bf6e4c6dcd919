//! Metrics collectors, served by plugd, reading a real dockerd's metrics.
//!
//! dockerd never starts a legacy collector, so plugd does: it sends `StartMetrics` right after the
//! enable and `StopMetrics` before the disable stops the plugin, and gives the collector the
//! engine's metrics socket named by `plugd daemon --engine-metrics-socket` (here the test
//! dockerd's `<exec-root>/metrics.sock`): bound read-only at `/run/docker/metrics.sock` into a
//! native collector, read through the `engine-metrics` import for a wasm one.
//!
//! The collector is the SDK example (guest-examples/metrics) in both packagings: at every tick it
//! scrapes and keeps the latest scrape and a count in its propagated mount, so the test reads on
//! the host what the collector received. Then the wasm example with `FAULT=panic` and
//! `FAULT=loop`: every third tick traps or spins until plugd's call deadline, and only that tick
//! fails; the next ones scrape again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{self, Bundle, Env, Plugd, target_dir, wait_for, wasm_guest};

/// The example's config for a packaging, with `FAULT` set to `fault`.
fn example_config(text: &str, fault: &str) -> serde_json::Value {
    let mut c: serde_json::Value =
        serde_json::from_str(text).expect("guest-examples/metrics config is JSON");
    for e in c["env"].as_array_mut().expect("env") {
        if e["name"] == "FAULT" {
            e["value"] = fault.into();
        }
    }
    c
}

/// The wasm packaging of the example, as a bundle.
fn wasm_example(env: &Env, name: &str, fault: &str) -> Bundle {
    env.bundle(name)
        .config(&example_config(
            include_str!("../../guest-examples/metrics/config.json"),
            fault,
        ))
        .copy("plugin.wasm", &wasm_guest("plugd_example_metrics"), 0o644)
}

/// The native packaging: the SDK's musl binary in a rootfs of its own.
fn native_example(env: &Env, name: &str) -> Bundle {
    let bin =
        target_dir().join("wasm-guests/x86_64-unknown-linux-musl/release/plugd-example-metrics");
    assert!(
        bin.is_file(),
        "{} is missing: build it with .ci/test",
        bin.display()
    );
    env.bundle(name)
        .config(&example_config(
            include_str!("../../guest-examples/metrics/config-native.json"),
            "",
        ))
        .copy("plugd-example-metrics", &bin, 0o755)
        .dir("data")
        .dir("run/docker/plugins")
}

/// Creates and enables `name`; returns the host side of its propagated mount.
fn create_enable(env: &Env, p: &Plugd, name: &str, bundle: &Bundle) -> PathBuf {
    env.plugd_cli_cmd(p, ["create", name])
        .arg(bundle.path())
        .run()
        .assert_ok();
    env.plugd_cli(p, ["enable", name]).assert_ok();
    let id = env
        .plugd_cli(p, ["inspect", "-f", "{{.Id}}", name])
        .assert_ok()
        .trimmed()
        .to_owned();
    p.data_root()
        .join("plugins")
        .join(id)
        .join("propagated-mount")
}

/// A counter the example keeps (`scrapes`, `ticks`); 0 before the first.
fn count(dir: &Path, name: &str) -> u64 {
    std::fs::read_to_string(dir.join(name))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The plugin `name` (`wasm` or native) scrapes dockerd at every tick (1 s) from the enable on, and not
/// after the disable.
fn collects_until_disabled(env: &Env, p: &Plugd, name: &str, bundle: &Bundle, wasm: bool) {
    let enabled = Instant::now();
    let dir = create_enable(env, p, name, bundle);
    wait_for(
        &format!("{name}: a first scrape"),
        Duration::from_secs(20),
        || count(&dir, "scrapes") >= 1,
    );
    let first = enabled.elapsed();
    let metrics = std::fs::read_to_string(dir.join("metrics.prom")).unwrap();
    assert!(
        metrics.contains("engine_daemon_engine_info"),
        "{name}: not dockerd's metrics: {}",
        &metrics[..metrics.len().min(500)]
    );
    let n = count(&dir, "scrapes");
    wait_for(
        &format!("{name}: more scrapes"),
        Duration::from_secs(10),
        || count(&dir, "scrapes") >= n + 2,
    );
    env.plugd_cli(p, ["disable", name]).assert_ok();
    let stopped = count(&dir, "scrapes");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        count(&dir, "scrapes"),
        stopped,
        "{name}: still scraping after the disable"
    );
    let log = p.log();
    for method in ["StartMetrics", "StopMetrics"] {
        assert!(
            log.lines().any(|l| l.contains("metrics collector called")
                && l.contains(name)
                && l.contains(method)),
            "{name}: plugd's log has no successful {method}"
        );
    }
    // What plugd's scrapes took (wasm only: a native collector scrapes by itself).
    let took: Vec<&str> = log
        .lines()
        .filter(|_| wasm)
        .filter(|l| l.contains("engine metrics scraped"))
        .filter_map(|l| l.split("elapsed=").nth(1))
        .filter_map(|t| t.split_whitespace().next())
        .collect();
    eprintln!(
        "metrics: {name}: first scrape {first:?} after the enable began; {} bytes of metrics; {stopped} scrapes until the disable; plugd's scrapes took {took:?}",
        metrics.len()
    );
}

#[test]
fn the_metrics_example_scrapes_dockerd_from_enable_to_disable_as_wasm_and_native() {
    harness::isolated(|env| {
        let d = env.dockerd();
        let socket = d.exec_root().join("metrics.sock");
        harness::wait_for_socket(&socket, Duration::from_secs(10));
        let p = env.plugd(&["--engine-metrics-socket", socket.to_str().unwrap()]);
        collects_until_disabled(
            env,
            &p,
            "wmetrics",
            &wasm_example(env, "wmetrics", ""),
            true,
        );
        collects_until_disabled(env, &p, "nmetrics", &native_example(env, "nmetrics"), false);
    })
}

#[test]
fn a_trapping_or_looping_tick_fails_that_tick_only() {
    harness::isolated(|env| {
        let d = env.dockerd();
        let socket = d.exec_root().join("metrics.sock");
        harness::wait_for_socket(&socket, Duration::from_secs(10));
        // A short call deadline, so the looping tick is interrupted after 1 s.
        let p = env.plugd(&[
            "--engine-metrics-socket",
            socket.to_str().unwrap(),
            "--call-timeout",
            "1s",
        ]);
        for (fault, says) in [("panic", "trapped"), ("loop", "timed out after 1s")] {
            let name = format!("f{fault}");
            let dir = create_enable(env, &p, &name, &wasm_example(env, &name, fault));
            // Ticks 3 and 6 fail; 4, 5 and 7 scrape, each in a fresh instance after a fault.
            wait_for(
                &format!("{name}: scrapes after two failed ticks"),
                Duration::from_secs(30),
                || count(&dir, "ticks") >= 7 && count(&dir, "scrapes") >= 5,
            );
            let (ticks, scrapes) = (count(&dir, "ticks"), count(&dir, "scrapes"));
            assert!(
                scrapes < ticks,
                "{name}: {scrapes} scrapes of {ticks} ticks: no tick failed"
            );
            let log = p.log();
            assert!(
                log.lines()
                    .any(|l| l.contains("metrics collector tick failed") && l.contains(says)),
                "{name}: plugd's log does not say a tick {says}"
            );
            let enabled = env
                .plugd_cli(&p, ["inspect", "-f", "{{.Enabled}}", &name])
                .assert_ok()
                .trimmed()
                .to_owned();
            assert_eq!(enabled, "true", "{name}: a failed tick disabled it");
            env.plugd_cli(&p, ["disable", &name]).assert_ok();
            eprintln!(
                "metrics: {name}: {scrapes} scrapes of {ticks} ticks, each failed one {says}"
            );
        }
    })
}

#[test]
fn plugd_stops_a_collector_at_shutdown_and_starts_it_again_at_restart() {
    harness::isolated(|env| {
        let d = env.dockerd();
        let socket = d.exec_root().join("metrics.sock");
        harness::wait_for_socket(&socket, Duration::from_secs(10));
        let mut p = env.plugd(&["--engine-metrics-socket", socket.to_str().unwrap()]);
        let dir = create_enable(env, &p, "rmetrics", &wasm_example(env, "rmetrics", ""));
        wait_for("a first scrape", Duration::from_secs(20), || {
            count(&dir, "scrapes") >= 1
        });
        p.stop();
        let stops = |p: &Plugd| {
            p.log()
                .lines()
                .filter(|l| l.contains("metrics collector called") && l.contains("StopMetrics"))
                .count()
        };
        assert_eq!(stops(&p), 1, "no StopMetrics at plugd's shutdown");
        let stopped = count(&dir, "scrapes");
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(count(&dir, "scrapes"), stopped, "scraping after shutdown");
        // The restored plugin is started again: plugd sends StartMetrics, the ticks resume.
        p.start();
        wait_for("scrapes after the restart", Duration::from_secs(20), || {
            count(&dir, "scrapes") >= stopped + 2
        });
        let starts = p
            .log()
            .lines()
            .filter(|l| l.contains("metrics collector called") && l.contains("StartMetrics"))
            .count();
        assert_eq!(starts, 2, "StartMetrics at enable and at the restore");
    })
}
