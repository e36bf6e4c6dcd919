//! A native authorization plugin served by plugd, used by a real dockerd 20.10 started with
//! `--authorization-plugin=authz`: every Engine API call asks it.
//!
//! The plugin is the static fixture with `Interface.Types: ["docker.authz/1.0"]`; it answers
//! `AuthZPlugin.AuthZReq`/`AuthZRes` with the raw bytes of `/hostile/<Method>` in its rootfs, and
//! never answers while `/hostile/<Method>.hang` exists. The real docker CLI is then allowed or
//! denied by what the plugin says; a malformed reply, a non-200, a hang and a crash each make plugd
//! deny (fail closed) with a message naming the plugin, within plugd's AuthZ deadline — dockerd,
//! which has no deadline of its own for a legacy plugin, never stalls — and dockerd serves again
//! once the plugin is fixed or restarted. Another plugin of the same plugd keeps serving throughout.
//!
//! Then the SDK-built example (guest-examples/authz), packaged as a wasm component and as a
//! static binary, denies by its `DENY` setting through both runtimes alike; and a wasm authz
//! guest that traps, loops or returns an error denies naming the plugin within the deadline, and
//! its response-phase deny quotes the API answer's status and body as the guest received them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{
    self, Bundle, Cli, Dockerd, Env, Output, PLUGIN_SOCKET_DIR, Plugd, target_dir, wasm_guest,
};

const ALLOW: &str = r#"{"Allow":true}"#;
const REQ: &str = "AuthZPlugin.AuthZReq";
const RES: &str = "AuthZPlugin.AuthZRes";

/// Creates and enables the authz plugin `name` in `p`, allowing everything; returns its id and
/// its `/hostile` directory (on the host).
fn authz_plugin(env: &Env, p: &Plugd, name: &str) -> (String, PathBuf) {
    let (id, hostile) = env.hostile_static_plugin(p, name, &["docker.authz/1.0"]);
    reply(&hostile, REQ, ALLOW);
    reply(&hostile, RES, ALLOW);
    env.plugd_cli(p, ["enable", name]).assert_ok();
    (id, hostile)
}

/// Plants the raw reply the plugin gives to `method` (atomically: the plugin reads it per call).
fn reply(hostile: &Path, method: &str, body: &str) {
    let tmp = hostile.join(format!(".{method}.tmp"));
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, hostile.join(method)).unwrap();
}

/// The native runtime's record of the plugin's pid.
fn plugin_pid(p: &Plugd, id: &str) -> Option<i32> {
    let text =
        std::fs::read_to_string(p.exec_root().join("state").join(id).join("state.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

/// The real docker CLI against `d`, at dockerd's API version: when the plugin denies, the CLI's
/// version negotiation (`/_ping`) is denied too, and the CLI would then send its own newer version,
/// which dockerd 20.10 refuses before the response phase is reached.
fn docker(env: &Env, d: &Dockerd, args: &[&str]) -> Output {
    env.docker_cmd(Cli::Docker28, d, args)
        .env("DOCKER_API_VERSION", "1.41")
        .timeout(Duration::from_secs(60))
        .run()
}

/// `docker ps` through the real CLI, timed.
fn ps(env: &Env, d: &Dockerd) -> (Output, Duration) {
    let started = Instant::now();
    let out = docker(env, d, &["ps", "-a"]);
    (out, started.elapsed())
}

/// A denied `docker ps`: dockerd's 403 message, naming dockerd's plugin name and, in the plugin's
/// message, plugd's; `within` bounds how long the CLI waited.
#[track_caller]
fn assert_denied(
    env: &Env,
    d: &Dockerd,
    what: &str,
    needles: &[&str],
    within: Duration,
) -> Duration {
    let (out, took) = ps(env, d);
    out.assert_failed();
    let err = &out.stderr;
    assert!(
        err.contains("authorization denied by plugin authz: plugin authz:latest"),
        "{what}: not a deny naming the plugin: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "{what}: {n:?} missing from: {err}");
    }
    assert!(
        took < within,
        "{what}: the deny took {took:?} (bound {within:?})"
    );
    eprintln!("authz: {what}: denied in {took:?}: {}", err.trim());
    took
}

#[test]
fn authz_plugin_allows_and_denies_real_docker_calls() {
    harness::isolated(|env| {
        let p = env.plugd(&[]);
        let (_, hostile) = authz_plugin(env, &p, "authz");
        let d = env.dockerd_with_authz("authz");
        let docker = |args: &[&str]| docker(env, &d, args);

        docker(&["ps"]).assert_ok();
        docker(&["volume", "ls"]).assert_ok();

        // The plugin's own deny in the request phase: a 403 with its message, nothing done.
        reply(&hostile, REQ, r#"{"Allow":false,"Msg":"no volumes today"}"#);
        docker(&["volume", "create", "v1"])
            .assert_failed()
            .assert_stderr_contains("authorization denied by plugin authz: no volumes today");
        // In the response phase: the request ran, its answer is withheld.
        reply(&hostile, REQ, ALLOW);
        reply(
            &hostile,
            RES,
            r#"{"Allow":false,"Msg":"you may not see this"}"#,
        );
        docker(&["volume", "create", "v2"])
            .assert_failed()
            .assert_stderr_contains("authorization denied by plugin authz: you may not see this");
        // An `Err` on a 200 is ignored by dockerd, and so by plugd: Allow decides.
        reply(&hostile, RES, r#"{"Allow":true,"Err":"ignored"}"#);
        let out = docker(&["volume", "ls", "-q"]);
        assert_eq!(
            out.assert_ok().lines(),
            ["v2"],
            "the response-phase deny came after v2 was created"
        );
        docker(&["volume", "rm", "v2"]).assert_ok();

        // Disabled while dockerd still points at it: the socket is gone and dockerd fails every
        // call closed by itself — after its ≈15 s connect retry, as a 500.
        env.plugd_cli(&p, ["disable", "authz"]).assert_ok();
        let (out, took) = ps(env, &d);
        out.assert_failed()
            .assert_stderr_contains("plugin authz failed with error: Post")
            .assert_stderr_contains("authz.sock/AuthZPlugin.AuthZReq");
        eprintln!("authz: disabled plugin: dockerd failed the call after {took:?}");
        assert!(
            took >= Duration::from_secs(10),
            "dockerd's retry is ≈15 s: {took:?}"
        );
        // Enabled again: the same socket path, and dockerd uses it at the next call.
        env.plugd_cli(&p, ["enable", "authz"]).assert_ok();
        docker(&["ps"]).assert_ok();
    })
}

#[test]
fn authz_failures_deny_naming_the_plugin_and_dockerd_stays_responsive() {
    harness::isolated(|env| {
        // A long health interval: a killed plugin is seen dead (and restarted) only at the next
        // pass, so the calls between the kill and that pass reach a dead plugin.
        let p = env.plugd(&["--authz-timeout", "2s", "--health-interval", "20s"]);
        let (id, hostile) = authz_plugin(env, &p, "authz");
        // Another plugin of the same plugd, called directly on its socket.
        env.plugd_cli_cmd(&p, ["create", "vol"])
            .arg(env.static_plugin_bundle("vol").path())
            .run()
            .assert_ok();
        env.plugd_cli(&p, ["enable", "vol"]).assert_ok();
        let vol_sock = Path::new(PLUGIN_SOCKET_DIR).join("vol.sock");
        let other_serves = || {
            let r = harness::http(&vol_sock, "POST", "/VolumeDriver.List", Some(b"{}")).unwrap();
            assert_eq!(r.status, 200, "the other plugin: {}", r.text());
        };
        let d = env.dockerd_with_authz("authz");
        ps(env, &d).0.assert_ok();
        let bound = Duration::from_secs(5);

        // Malformed replies dockerd's Go decoder would accept (and read as allow).
        for (what, body) in [
            ("trailing data", r#"{"Allow":true} junk"#),
            (
                "duplicate key, the last allows",
                r#"{"Allow":false,"allow":true}"#,
            ),
            ("wrong type", r#"{"Allow":"yes"}"#),
            ("empty body", ""),
        ] {
            reply(&hostile, REQ, body);
            assert_denied(env, &d, what, &["refuses"], bound);
        }
        // A non-200: no reply file, the fixture answers 404.
        std::fs::remove_file(hostile.join(REQ)).unwrap();
        assert_denied(env, &d, "a 404", &["status 404", "unknown endpoint"], bound);
        reply(&hostile, REQ, ALLOW);
        ps(env, &d).0.assert_ok();

        // A hang: denied at plugd's 2 s deadline, not waited for forever.
        std::fs::write(hostile.join(format!("{REQ}.hang")), "").unwrap();
        // One API call waits for the deadline once; the CLI makes two (`/_ping`, then `ps`).
        let started = Instant::now();
        let raw = harness::http(d.socket(), "GET", "/v1.41/version", None).unwrap();
        let took = started.elapsed();
        assert_eq!(raw.status, 403, "{}", raw.text());
        assert!(
            raw.text()
                .contains("plugin authz:latest: no reply to AuthZPlugin.AuthZReq"),
            "{}",
            raw.text()
        );
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(3),
            "one API call against a hung plugin took {took:?}"
        );
        eprintln!("authz: a hang: one API call denied in {took:?}");
        let hang_bound = Duration::from_secs(7);
        assert_denied(
            env,
            &d,
            "a hang",
            &["no reply to AuthZPlugin.AuthZReq within 2s"],
            hang_bound,
        );
        other_serves();
        // In the response phase too.
        std::fs::remove_file(hostile.join(format!("{REQ}.hang"))).unwrap();
        std::fs::write(hostile.join(format!("{RES}.hang")), "").unwrap();
        assert_denied(
            env,
            &d,
            "a hang in AuthZRes",
            &["no reply to AuthZPlugin.AuthZRes"],
            hang_bound,
        );
        std::fs::remove_file(hostile.join(format!("{RES}.hang"))).unwrap();
        ps(env, &d).0.assert_ok();

        // A crash (SIGKILL of the plugin process): denied at once while it is down; served
        // again once plugd's supervision restarted it. A supervision pass may land between the
        // kill and the call (the call then waits for the restart): try again.
        let mut denied = false;
        for _ in 0..3 {
            let pid = plugin_pid(&p, &id).expect("plugin pid");
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            harness::wait_for("the plugin to die", Duration::from_secs(5), || {
                !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rsplit(')')
                        .next()
                        .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
                })
            });
            let (out, took) = ps(env, &d);
            if out.code == Some(0) {
                eprintln!("authz: a supervision pass restarted the plugin first; again");
                harness::wait_for("the restart", Duration::from_secs(30), || {
                    plugin_pid(&p, &id).is_some_and(|n| n != pid)
                });
                continue;
            }
            assert!(
                out.stderr
                    .contains("authorization denied by plugin authz: plugin authz:latest"),
                "a crash: {}",
                out.stderr
            );
            assert!(took < bound, "a crash: the deny took {took:?}");
            eprintln!("authz: a crash: denied in {took:?}: {}", out.stderr.trim());
            denied = true;
            other_serves();
            harness::wait_for("the restart", Duration::from_secs(45), || {
                plugin_pid(&p, &id).is_some_and(|n| n != pid)
            });
            break;
        }
        assert!(denied, "never saw a call reach the killed plugin");
        harness::wait_for("dockerd to serve again", Duration::from_secs(30), || {
            ps(env, &d).0.code == Some(0)
        });
        other_serves();
        docker(env, &d, &["version"]).assert_ok();
    })
}

#[test]
fn a_crash_looping_authz_plugin_denies_at_once_and_recovers() {
    harness::isolated(|env| {
        let p = env.plugd(&["--authz-timeout", "2s", "--health-interval", "200ms"]);
        let (id, hostile) = authz_plugin(env, &p, "authz");
        let d = env.dockerd_with_authz("authz");
        ps(env, &d).0.assert_ok();

        // From now on every start of the plugin exits at once; kill the one running.
        std::fs::write(hostile.join("exit-at-start"), "").unwrap();
        let pid = plugin_pid(&p, &id).expect("plugin pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        // plugd keeps the plugin's socket while it restarts it (with backoff): every call is
        // denied at once, never left to dockerd's ≈15 s retry against a missing socket.
        let until = Instant::now() + Duration::from_secs(6);
        let (mut calls, mut parked, mut slowest) = (0, 0, Duration::ZERO);
        while Instant::now() < until {
            let (out, took) = ps(env, &d);
            out.assert_failed();
            assert!(
                out.stderr
                    .contains("authorization denied by plugin authz: plugin authz:latest"),
                "call {calls}: {}",
                out.stderr
            );
            if out.stderr.contains("is being restarted after a failure") {
                parked += 1;
            }
            slowest = slowest.max(took);
            calls += 1;
        }
        eprintln!(
            "authz: crash loop: {calls} calls in 6 s, all denied, {parked} while plugd restarted it; slowest {slowest:?}"
        );
        assert!(slowest < Duration::from_secs(2), "slowest deny {slowest:?}");
        assert!(parked > 0, "never saw the restart window");
        assert!(
            p.log().contains("restart failed"),
            "the plugin was restarted and failed again"
        );

        // Fixed: the next restart (backoff ≤ 8 s by now) serves again, on the same socket.
        std::fs::remove_file(hostile.join("exit-at-start")).unwrap();
        harness::wait_for("dockerd to serve again", Duration::from_secs(40), || {
            ps(env, &d).0.code == Some(0)
        });
        docker(env, &d, &["version"]).assert_ok();
    })
}

/// The example's config for a packaging (`config.json` or `config-native.json`).
fn example_config(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("guest-examples/authz config is JSON")
}

/// The wasm packaging of the authz example, as a bundle.
fn wasm_example(env: &Env, name: &str) -> Bundle {
    env.bundle(name)
        .config(&example_config(include_str!(
            "../../guest-examples/authz/config.json"
        )))
        .copy("plugin.wasm", &wasm_guest("plugd_example_authz"), 0o644)
}

/// The native packaging: the SDK's musl binary in a rootfs of its own.
fn native_example(env: &Env, name: &str) -> Bundle {
    let bin =
        target_dir().join("wasm-guests/x86_64-unknown-linux-musl/release/plugd-example-authz");
    assert!(
        bin.is_file(),
        "{} is missing: build it with .ci/test",
        bin.display()
    );
    env.bundle(name)
        .config(&example_config(include_str!(
            "../../guest-examples/authz/config-native.json"
        )))
        .copy("plugd-example-authz", &bin, 0o755)
        .dir("run/docker/plugins")
}

fn create_enable(env: &Env, p: &Plugd, name: &str, bundle: &Bundle) {
    env.plugd_cli_cmd(p, ["create", name])
        .arg(bundle.path())
        .run()
        .assert_ok();
    env.plugd_cli(p, ["enable", name]).assert_ok();
}

/// The example, served by plugd as `name`, behind a real dockerd: everything allowed with the
/// default (empty) `DENY`; after `plugd set name DENY=/volumes` (disable, set, enable: settings
/// change only a disabled plugin, as with Docker) `docker volume ls` is denied with the example's
/// message and `docker ps` still allowed. Returns the deny as the CLI printed it.
fn example_allows_then_denies(env: &Env, p: &Plugd, name: &str) -> String {
    let mut d = env.dockerd_with_authz(name);
    docker(env, &d, &["volume", "ls"]).assert_ok();
    docker(env, &d, &["ps"]).assert_ok();
    env.plugd_cli(p, ["disable", name]).assert_ok();
    env.plugd_cli(p, ["set", name, "DENY=/volumes"]).assert_ok();
    env.plugd_cli(p, ["enable", name]).assert_ok();
    let out = docker(env, &d, &["volume", "ls"]);
    out.assert_failed().assert_stderr_contains(&format!(
        "authorization denied by plugin {name}: GET /v1.41/volumes is denied: it matches \"/volumes\" (DENY)"
    ));
    docker(env, &d, &["ps"]).assert_ok();
    docker(env, &d, &["volume", "create", "v1"])
        .assert_failed()
        .assert_stderr_contains("it matches \"/volumes\"");
    eprintln!("authz: example as {name}: {}", out.stderr.trim());
    d.stop();
    out.stderr.replace(name, "<plugin>")
}

#[test]
fn the_authz_example_denies_alike_as_wasm_and_as_native() {
    harness::isolated(|env| {
        let p = env.plugd(&[]);
        create_enable(env, &p, "wauthz", &wasm_example(env, "wauthz"));
        create_enable(env, &p, "nauthz", &native_example(env, "nauthz"));
        let wasm = example_allows_then_denies(env, &p, "wauthz");
        let native = example_allows_then_denies(env, &p, "nauthz");
        assert_eq!(wasm, native, "both packagings answer alike");
    })
}

#[test]
fn a_faulty_wasm_authz_guest_denies_naming_the_plugin_within_the_deadline() {
    harness::isolated(|env| {
        // The wasm call deadline under the AuthZ one: a looping guest is interrupted by the wasm
        // runtime (and its instance replaced) before the gateway's deadline.
        let p = env.plugd(&["--call-timeout", "1s", "--authz-timeout", "3s"]);
        let bundle = env
            .bundle("fauthz")
            .config(&example_config(include_str!(
                "../../guest-examples/authz/config.json"
            )))
            .copy("plugin.wasm", &wasm_guest("plugd_fault_authz_guest"), 0o644);
        create_enable(env, &p, "fauthz", &bundle);
        let d = env.dockerd_with_authz("fauthz");
        ps(env, &d).0.assert_ok();
        for (fault, expect, bound) in [
            (
                "fault-trap",
                "plugin fauthz:latest: call AuthZPlugin.AuthZReq trapped (wasm trap",
                Duration::from_secs(1),
            ),
            (
                "fault-spin",
                "plugin fauthz:latest: call AuthZPlugin.AuthZReq timed out after 1s; denied",
                Duration::from_millis(2500),
            ),
            (
                "fault-error",
                "AuthZPlugin.AuthZReq failed (status 500): fault authz guest: error requested; denied",
                Duration::from_secs(1),
            ),
        ] {
            let started = Instant::now();
            let path = format!("/v1.41/volumes/{fault}");
            let raw = harness::http(d.socket(), "GET", &path, None).unwrap();
            let took = started.elapsed();
            let text = raw.text();
            assert_eq!(raw.status, 403, "{fault}: {text}");
            assert!(
                text.contains("authorization denied by plugin fauthz: plugin fauthz:latest: "),
                "{fault}: {text}"
            );
            assert!(text.contains(expect), "{fault}: {expect:?} missing: {text}");
            assert!(
                took < bound,
                "{fault}: denied after {took:?} (bound {bound:?})"
            );
            eprintln!("authz: wasm {fault}: denied in {took:?}: {}", text.trim());
            // dockerd stays responsive, and the plugin (a fresh instance after a fault) allows.
            let (out, took) = ps(env, &d);
            out.assert_ok();
            assert!(
                took < Duration::from_secs(2),
                "docker ps after {fault}: {took:?}"
            );
        }
        // The response phase: the volume is created, its answer (status and body, decoded from
        // dockerd's base64 for the guest) withheld by the guest's deny.
        docker(env, &d, &["volume", "create", "res-deny"])
            .assert_failed()
            .assert_stderr_contains(
                "authorization denied by plugin fauthz: response 201 to POST /v1.41/volumes/create withheld: {\"CreatedAt\"",
            )
            .assert_stderr_contains("\"Name\":\"res-deny\"");
        docker(env, &d, &["volume", "ls", "-q"]).assert_ok();
        // Through the CLI: the same deny, the real client's view of it.
        docker(env, &d, &["volume", "inspect", "fault-trap"])
            .assert_failed()
            .assert_stderr_contains("authorization denied by plugin fauthz: plugin fauthz:latest");
        docker(env, &d, &["version"]).assert_ok();
    })
}

/// A looping guest when the AuthZ deadline is the shorter one: the gateway denies at its deadline,
/// and the calls after it — queued behind the still-running guest call, as a wasm instance serves
/// one call at a time — are denied at the deadline too, until the wasm runtime interrupts the loop
/// and replaces the instance. Fail closed and bounded throughout; served again after.
#[test]
fn a_looping_wasm_authz_guest_past_the_authz_deadline_denies_until_interrupted() {
    harness::isolated(|env| {
        let p = env.plugd(&["--call-timeout", "4s", "--authz-timeout", "1s"]);
        let bundle = env
            .bundle("fauthz")
            .config(&example_config(include_str!(
                "../../guest-examples/authz/config.json"
            )))
            .copy("plugin.wasm", &wasm_guest("plugd_fault_authz_guest"), 0o644);
        create_enable(env, &p, "fauthz", &bundle);
        let d = env.dockerd_with_authz("fauthz");
        ps(env, &d).0.assert_ok();
        let started = Instant::now();
        let raw = harness::http(d.socket(), "GET", "/v1.41/volumes/fault-spin", None).unwrap();
        assert_eq!(raw.status, 403, "{}", raw.text());
        assert!(
            raw.text().contains(
                "plugin fauthz:latest: no reply to AuthZPlugin.AuthZReq within 1s (plugd's AuthZ deadline); denied"
            ),
            "{}",
            raw.text()
        );
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "{took:?}");
        let queued = Instant::now();
        let raw = harness::http(d.socket(), "GET", "/v1.41/containers/json", None).unwrap();
        let waited = queued.elapsed();
        assert_eq!(raw.status, 403, "queued behind the loop: {}", raw.text());
        assert!(waited < Duration::from_millis(1500), "{waited:?}");
        eprintln!(
            "authz: loop past the AuthZ deadline: denied in {took:?}, the next call in {waited:?}"
        );
        harness::wait_for(
            "the interrupted instance to be replaced",
            Duration::from_secs(10),
            || ps(env, &d).0.code == Some(0),
        );
        eprintln!(
            "authz: served again {:?} after the loop began",
            started.elapsed()
        );
    })
}
