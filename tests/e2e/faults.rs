//! Fault isolation, end to end: one plugd serves two wasm plugins to a real dockerd, A = the fault
//! guest (`guest-examples/faulty`: it spins, traps, eats memory or blocks in a host call when a
//! volume has that name) and B = the example volume guest. While A misbehaves, B keeps serving
//! dockerd; A's call fails with an `Err` in bounded time and A's next call runs on a fresh instance
//! (the guest's per-instance `calls` counter starts again at 1); dockerd's keep-alive connection to
//! A survives every fault; and, on a raw connection without dockerd, an error reply never closes
//! the keep-alive connection.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{
    self, Cli, Dockerd, Env, PLUGIN_SOCKET_DIR, Plugd, example_volume_wasm, fault_guest_wasm,
};

/// plugd's per-call budget in these tests (`--call-timeout`).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// The daemon flags every test here uses.
const PLUGD_ARGS: &[&str] = &["--call-timeout", "2s", "--memory-limit", "32MiB"];
/// Plugin A: the fault guest.
const FAULTY: &str = "faulty";
/// How plugd names A in its error replies.
const FAULTY_REF: &str = "faulty:latest";
/// Plugin B: the example volume guest.
const GOOD: &str = "good";
/// Calls B must serve while A is stuck.
const B_CALLS: usize = 20;
/// Slack on top of the call timeouts for anything bounded here (CLI start, dockerd, a loaded box).
const SLACK: Duration = Duration::from_secs(10);

/// One way the fault guest misbehaves, chosen by the volume name.
struct Fault {
    /// The volume name that triggers it (`get` and `create`).
    name: &'static str,
    /// What plugd's error reply must say.
    says: &'static str,
    /// True if the call hangs until plugd's call timeout (the others fail at once).
    hangs: bool,
}

const FAULTS: [Fault; 4] = [
    Fault {
        name: "spin",
        says: "timed out after 2s",
        hangs: true,
    },
    Fault {
        name: "trap",
        says: "trapped",
        hangs: false,
    },
    Fault {
        name: "bomb",
        says: "exceeded its memory limit of 32 MiB",
        hangs: false,
    },
    Fault {
        name: "sleep",
        says: "timed out after 2s",
        hangs: true,
    },
];

// ---------------------------------------------------------------------------------------------
// Setup

/// A bundle config for a wasm guest, adapted from the example's own config.json with `instances`
/// as its `PLUGD_INSTANCES` (the tests of faults are about one instance: `"1"`).
fn wasm_config(description: &str, instances: &str) -> Value {
    let text = include_str!("../../guest-examples/volume/config.json");
    let mut config: Value =
        serde_json::from_str(text).expect("guest-examples/volume/config.json is JSON");
    config["description"] = json!(description);
    let env = config["env"]
        .as_array_mut()
        .expect("the example declares env");
    let entry = env
        .iter_mut()
        .find(|e| e["name"] == "PLUGD_INSTANCES")
        .expect("the example declares PLUGD_INSTANCES");
    entry["value"] = json!(instances);
    config
}

/// Creates (with the plugd CLI) and enables the wasm plugin `name` from `wasm`, unpooled.
fn create_and_enable(env: &Env, p: &Plugd, name: &str, wasm: &Path, description: &str) {
    create_and_enable_with(env, p, name, wasm, &wasm_config(description, "1"));
}

/// Creates (with the plugd CLI) and enables the wasm plugin `name` from `wasm` and `config`.
fn create_and_enable_with(env: &Env, p: &Plugd, name: &str, wasm: &Path, config: &Value) {
    let bundle = env
        .bundle(name)
        .config(config)
        .copy("plugin.wasm", wasm, 0o644);
    env.plugd_cli_cmd(p, ["create", name])
        .arg(bundle.path())
        .run()
        .assert_ok();
    env.plugd_cli(p, ["enable", name]).assert_ok();
    let sock = plugin_socket(name);
    assert!(
        sock.exists(),
        "{} missing after `plugd enable {name}`",
        sock.display()
    );
}

/// plugd's engine-facing socket of plugin `name`.
fn plugin_socket(name: &str) -> PathBuf {
    Path::new(PLUGIN_SOCKET_DIR).join(format!("{name}.sock"))
}

/// plugd with A (`faulty`) and B (`good`) enabled.
fn plugd_with_a_and_b(env: &Env) -> Plugd {
    let p = env.plugd(PLUGD_ARGS);
    create_and_enable(
        env,
        &p,
        FAULTY,
        &fault_guest_wasm(),
        "fault guest (test fixture)",
    );
    create_and_enable(
        env,
        &p,
        GOOD,
        &example_volume_wasm(),
        "example volume guest",
    );
    p
}

// ---------------------------------------------------------------------------------------------
// Talking to dockerd

/// `docker volume inspect NAME` → `(Driver, Status.calls)`; panics if it fails or has no counter.
fn inspect_calls(env: &Env, d: &Dockerd, name: &str) -> (String, u64) {
    let out = env.docker(Cli::Docker28, d, ["volume", "inspect", name]);
    let v = out.assert_ok().json();
    let driver = v[0]["Driver"].as_str().unwrap_or_default().to_owned();
    let calls = v[0]["Status"]["calls"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no Status.calls in the inspect of {name}:\n{out}"));
    (driver, calls)
}

/// A's first call after a fault must reach a fresh instance, which then keeps serving.
/// `name` must be new to dockerd: inspecting an unknown volume makes dockerd probe every driver
/// with one `Get`, so A's counter says how many calls its instance has served, this one included.
#[track_caller]
fn assert_fresh_instance(env: &Env, d: &Dockerd, name: &str, after: &str) {
    assert_eq!(
        inspect_calls(env, d, name),
        (FAULTY.to_owned(), 1),
        "after {after}: A's next call must succeed on a fresh instance (calls = 1)"
    );
    // The instance is kept after a successful call: this is what makes `1` above mean "fresh".
    env.docker(Cli::Docker28, d, ["volume", "create", "-d", FAULTY, name])
        .assert_ok();
    let (_, c1) = inspect_calls(env, d, name);
    let (_, c2) = inspect_calls(env, d, name);
    assert!(
        c1 >= 2 && c2 == c1 + 1,
        "after {after}: A's instance must be kept across successful calls (got calls {c1}, then {c2})"
    );
}

/// One Engine API call to dockerd that ends in a call to plugin B.
struct BCall {
    what: String,
    started: Instant,
    ended: Instant,
    result: Result<(), String>,
}

/// Makes dockerd call B: every 5th call creates a volume `<prefix>-<k>` (Get + Create on B), the
/// others inspect one created before (one Get on B). Raw Engine API requests, so the CLI's start-up
/// does not limit how many calls fit into A's stuck window.
fn b_call(d: &Dockerd, prefix: &str, k: usize, created: &mut Vec<String>) -> BCall {
    let started = Instant::now();
    let (what, result) = if k.is_multiple_of(5) || created.is_empty() {
        let name = format!("{prefix}-{k}");
        let body = json!({"Name": name, "Driver": GOOD}).to_string();
        let r = harness::http(
            d.socket(),
            "POST",
            "/v1.41/volumes/create",
            Some(body.as_bytes()),
        );
        let result = match r {
            Ok(r) if r.status == 201 && r.json()["Driver"] == GOOD => {
                created.push(name.clone());
                Ok(())
            }
            Ok(r) => Err(format!("HTTP {}: {}", r.status, r.text())),
            Err(e) => Err(e.to_string()),
        };
        (format!("create {name}"), result)
    } else {
        let name = &created[k % created.len()];
        let r = harness::http(d.socket(), "GET", &format!("/v1.41/volumes/{name}"), None);
        let result = match r {
            Ok(r)
                if r.status == 200 && r.json()["Driver"] == GOOD && r.json()["Name"] == **name =>
            {
                Ok(())
            }
            Ok(r) => Err(format!("HTTP {}: {}", r.status, r.text())),
            Err(e) => Err(e.to_string()),
        };
        (format!("inspect {name}"), result)
    };
    BCall {
        what,
        started,
        ended: Instant::now(),
        result,
    }
}

/// Checks the output of `docker volume create -d faulty <fault>`: it fails with plugd's message,
/// within bounds. dockerd sends `Get` and, since that fails, `Create`: both hit the fault.
#[track_caller]
fn assert_fault_reply(out: &harness::Output, fault: &Fault) {
    eprintln!(
        "faults: `{}` -> {:?} after {:?}: {}",
        out.cmdline,
        out.code,
        out.elapsed,
        out.stderr.trim()
    );
    out.assert_failed()
        .assert_stderr_contains(&format!(
            "plugin \"{FAULTY_REF}\": call VolumeDriver.Create"
        ))
        .assert_stderr_contains(fault.says);
    // Get and Create each run into the fault, each bounded by the call timeout (+ plugd's grace).
    let bound = 2 * CALL_TIMEOUT + SLACK;
    assert!(
        out.elapsed < bound,
        "`{}` took {:?}; bound {bound:?}\n{out}",
        fault.name,
        out.elapsed
    );
    if fault.hangs {
        // Both calls really hung until plugd's timeout (a lower bound: never flaky).
        assert!(
            out.elapsed >= 2 * CALL_TIMEOUT,
            "`{}` failed after {:?}, before two call timeouts: not stopped by the timeout?\n{out}",
            fault.name,
            out.elapsed
        );
    }
}

// ---------------------------------------------------------------------------------------------
// dockerd's connections to A, seen from both ends

/// Inodes of the sockets process `pid` holds.
fn socket_inodes(pid: i32) -> BTreeSet<u64> {
    let dir = format!("/proc/{pid}/fd");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Established connections to the unix socket `path`, as `(server inode, client inode)`, whose
/// server end plugd holds and whose client end dockerd holds. `ss` lists the accepted (server)
/// end of a connection under the listener's path and its peer's inode; other tests may have a
/// socket at the same path in their own mount namespace, hence the ownership filter.
fn dockerd_connections(path: &Path, p: &Plugd, d: &Dockerd) -> BTreeSet<(u64, u64)> {
    let plugd_pid = p.pid().expect("plugd is running").pid;
    let dockerd_pid = d.pid().expect("dockerd is running").pid;
    let out = harness::Cmd::new("ss")
        .args(["-x", "-n", "-H"])
        .timeout(Duration::from_secs(30))
        .run();
    out.assert_ok();
    let server_socks = socket_inodes(plugd_pid);
    let client_socks = socket_inodes(dockerd_pid);
    let want = path.to_str().expect("utf-8 socket path");
    out.stdout
        .lines()
        .filter_map(|l| {
            // u_str ESTAB 0 0 /run/docker/plugins/faulty.sock 123 * 124
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 || f[0] != "u_str" || f[1] != "ESTAB" || f[4] != want {
                return None;
            }
            Some((f[5].parse::<u64>().ok()?, f[7].parse::<u64>().ok()?))
        })
        .filter(|(server, client)| server_socks.contains(server) && client_socks.contains(client))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. B serves while A faults; A recovers on a fresh instance

#[test]
fn b_serves_dockerd_while_a_faults_and_a_recovers_on_a_fresh_instance() {
    harness::isolated(|env| {
        let d = env.dockerd();
        let _p = plugd_with_a_and_b(env);

        // Warm up both drivers in dockerd (activation, Capabilities) and show A's counter counts.
        env.docker(
            Cli::Docker28,
            &d,
            ["volume", "create", "-d", GOOD, "warm-b"],
        )
        .assert_ok();
        env.docker(
            Cli::Docker28,
            &d,
            ["volume", "create", "-d", FAULTY, "warm-a"],
        )
        .assert_ok();
        let (_, c1) = inspect_calls(env, &d, "warm-a");
        let (_, c2) = inspect_calls(env, &d, "warm-a");
        assert!(
            c1 >= 2 && c2 == c1 + 1,
            "A's instance counts its calls before any fault (got {c1}, then {c2})"
        );

        let mut report = Vec::new();
        let mut b_volumes = vec!["warm-b".to_owned()];
        for fault in &FAULTS {
            let mut created = Vec::new();
            let mut b = Vec::new();
            let (a_out, a_started, a_ended) = std::thread::scope(|s| {
                let a_started = Instant::now();
                let a = s.spawn(|| {
                    let out = env
                        .docker_cmd(
                            Cli::Docker28,
                            &d,
                            ["volume", "create", "-d", FAULTY, fault.name],
                        )
                        .timeout(Duration::from_secs(120))
                        .run();
                    (out, Instant::now())
                });
                // B's calls run throughout A's call: at least B_CALLS, and until A's call ended.
                let mut k = 0;
                while b.len() < B_CALLS || !a.is_finished() {
                    b.push(b_call(&d, &format!("b-{}", fault.name), k, &mut created));
                    k += 1;
                    assert!(
                        a_started.elapsed() < Duration::from_secs(150),
                        "A's `{}` call never ended",
                        fault.name
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
                let (out, ended) = a.join().expect("A's thread");
                (out, a_started, ended)
            });

            b_volumes.extend(created.iter().cloned());
            let failed: Vec<String> = b
                .iter()
                .filter_map(|c| c.result.as_ref().err().map(|e| format!("{}: {e}", c.what)))
                .collect();
            assert!(
                failed.is_empty(),
                "B's calls failed while A ran into `{}`:\n{}",
                fault.name,
                failed.join("\n")
            );
            let during: Vec<&BCall> = b
                .iter()
                .filter(|c| c.started >= a_started && c.ended <= a_ended)
                .collect();
            let max_latency = b
                .iter()
                .map(|c| c.ended - c.started)
                .max()
                .unwrap_or_default();
            let line = format!(
                "fault {:5}: A's call failed after {:?}; B served {} calls ({} during A's call), slowest {:?}",
                fault.name,
                a_out.elapsed,
                b.len(),
                during.len(),
                max_latency
            );
            eprintln!("faults: {line}");
            report.push(line.clone());
            assert_fault_reply(&a_out, fault);
            if fault.hangs {
                assert!(
                    during.len() >= B_CALLS,
                    "B must serve {B_CALLS} calls while A hangs in `{}`: {line}",
                    fault.name
                );
            }

            assert_fresh_instance(env, &d, &format!("ok-{}", fault.name), fault.name);
        }

        // Everything is still in order: B lists every volume created through it, A still lists.
        let ls = env.docker(
            Cli::Docker28,
            &d,
            ["volume", "ls", "--format", "{{.Driver}} {{.Name}}"],
        );
        let mut listed: BTreeSet<String> = ls
            .assert_ok()
            .lines()
            .into_iter()
            .map(str::to_owned)
            .collect();
        // A's List is the fixture's: one volume `fixture`, whatever was created.
        assert!(
            listed.remove("faulty fixture"),
            "A's List in volume ls\n{ls}"
        );
        let expected: BTreeSet<String> = b_volumes.iter().map(|v| format!("{GOOD} {v}")).collect();
        assert_eq!(
            listed, expected,
            "B lists exactly the volumes created through it, during the faults too"
        );
        eprintln!("faults: summary\n  {}", report.join("\n  "));
    })
}

// ---------------------------------------------------------------------------------------------
// 2. dockerd's keep-alive connection to A survives every fault

#[test]
fn dockerd_keep_alive_connection_to_a_survives_every_fault() {
    harness::isolated(|env| {
        let mut d = env.dockerd();
        let p = plugd_with_a_and_b(env);
        let sock = plugin_socket(FAULTY);
        let dockerd_pid = d.pid().expect("dockerd runs");

        assert!(
            dockerd_connections(&sock, &p, &d).is_empty(),
            "no connection to A before dockerd used it"
        );
        env.docker(
            Cli::Docker28,
            &d,
            ["volume", "create", "-d", FAULTY, "warm"],
        )
        .assert_ok();
        inspect_calls(env, &d, "warm");
        let conns = dockerd_connections(&sock, &p, &d);
        eprintln!("faults: dockerd's connections to A (plugd end, dockerd end): {conns:?}");
        assert!(
            !conns.is_empty(),
            "dockerd holds a keep-alive connection to A after using it"
        );

        for fault in &FAULTS {
            let out = env.docker(
                Cli::Docker28,
                &d,
                ["volume", "create", "-d", FAULTY, fault.name],
            );
            assert_fault_reply(&out, fault);
            assert_eq!(
                dockerd_connections(&sock, &p, &d),
                conns,
                "dockerd's keep-alive connection to A must survive `{}`",
                fault.name
            );
            // The next calls travel over that same connection.
            assert_fresh_instance(env, &d, &format!("ok-{}", fault.name), fault.name);
            assert_eq!(
                dockerd_connections(&sock, &p, &d),
                conns,
                "dockerd must reuse its keep-alive connection to A after `{}`",
                fault.name
            );
        }

        // dockerd keeps working with A, never restarted: the full volume life cycle.
        d.assert_running();
        assert_eq!(d.pid(), Some(dockerd_pid), "dockerd was not restarted");
        env.docker(
            Cli::Docker28,
            &d,
            ["volume", "create", "-d", FAULTY, "after"],
        )
        .assert_ok();
        let (driver, _) = inspect_calls(env, &d, "after");
        assert_eq!(driver, FAULTY);
        let ls = env.docker(
            Cli::Docker28,
            &d,
            ["volume", "ls", "--format", "{{.Driver}} {{.Name}}"],
        );
        let lines = ls.assert_ok().lines();
        // A's List is the fixture's: one volume `fixture`.
        assert_eq!(lines, ["faulty fixture"], "{ls}");
        env.docker(Cli::Docker28, &d, ["volume", "rm", "after"])
            .assert_ok();
        assert_eq!(
            dockerd_connections(&sock, &p, &d),
            conns,
            "one keep-alive connection to A served the whole test"
        );

        // Control: the probe does see a dropped connection. Disabling A closes its live
        // connections; after re-enabling, dockerd has to dial a new one.
        env.plugd_cli(&p, ["disable", FAULTY]).assert_ok();
        env.plugd_cli(&p, ["enable", FAULTY]).assert_ok();
        env.docker(
            Cli::Docker28,
            &d,
            ["volume", "create", "-d", FAULTY, "again"],
        )
        .assert_ok();
        let fresh = dockerd_connections(&sock, &p, &d);
        eprintln!("faults: dockerd's connections to A after disable + enable: {fresh:?}");
        assert!(
            !fresh.is_empty() && fresh.is_disjoint(&conns),
            "after disable + enable, dockerd must be on a new connection: before {conns:?}, now {fresh:?}"
        );
    })
}

// ---------------------------------------------------------------------------------------------
// 3. The plugin protocol on one raw keep-alive connection (no dockerd)

/// A keep-alive HTTP/1.1 client on one unix stream connection.
struct KeepAlive {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

/// A response on a [`KeepAlive`] connection.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
    elapsed: Duration,
}

impl KeepAlive {
    fn connect(path: &Path) -> KeepAlive {
        let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        s.set_read_timeout(Some(CALL_TIMEOUT + SLACK + SLACK))
            .expect("read timeout");
        s.set_write_timeout(Some(SLACK)).expect("write timeout");
        KeepAlive {
            reader: BufReader::new(s.try_clone().expect("dup stream")),
            writer: s,
        }
    }

    /// `POST /<method>` with a JSON body, as dockerd sends it; reads exactly one response.
    #[track_caller]
    fn post(&mut self, method: &str, body: &Value) -> Reply {
        let body = format!("{body}\n");
        let req = format!(
            "POST /{method} HTTP/1.1\r\nHost: \r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: {}\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n\r\n{body}",
            body.len()
        );
        let started = Instant::now();
        self.writer
            .write_all(req.as_bytes())
            .unwrap_or_else(|e| panic!("writing {method} on the kept-alive connection: {e}"));
        let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
            panic!(
                "{method} {body:?}: {what} on the kept-alive connection after {:?}: {e}",
                started.elapsed()
            )
        };
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => fail("EOF (the server closed it)", &"no status line"),
            Ok(_) => {}
            Err(e) => fail("reading the status line", &e),
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| fail("bad status line", &line.trim_end()));
        let mut headers = Vec::new();
        loop {
            line.clear();
            if let Err(e) = self.reader.read_line(&mut line) {
                fail("reading headers", &e);
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut bytes = Vec::new();
        if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                line.clear();
                if let Err(e) = self.reader.read_line(&mut line) {
                    fail("reading a chunk size", &e);
                }
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .unwrap_or_else(|_| fail("bad chunk size", &line.trim_end()));
                let start = bytes.len();
                bytes.resize(start + size, 0);
                if let Err(e) = self.reader.read_exact(&mut bytes[start..]) {
                    fail("reading a chunk", &e);
                }
                line.clear();
                if let Err(e) = self.reader.read_line(&mut line) {
                    fail("reading a chunk end", &e);
                }
                if size == 0 {
                    break;
                }
            }
        } else {
            let len: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| {
                    fail(
                        "neither Content-Length nor chunked (cannot keep alive)",
                        &format!("{headers:?}"),
                    )
                });
            bytes.resize(len, 0);
            if let Err(e) = self.reader.read_exact(&mut bytes) {
                fail("reading the body", &e);
            }
        }
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            fail(
                "the body is not JSON",
                &format!("{e}: {}", String::from_utf8_lossy(&bytes)),
            )
        });
        Reply {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        }
    }

    /// `VolumeDriver.Get` of a normal name: 200, and the instance's `calls` counter.
    #[track_caller]
    fn get_ok(&mut self, name: &str) -> u64 {
        let r = self.post("VolumeDriver.Get", &json!({"Name": name}));
        r.assert_kept_alive();
        assert_eq!(r.status, 200, "Get {name}: {}", r.body);
        assert_eq!(r.body["Volume"]["Name"], name, "{}", r.body);
        r.body["Volume"]["Status"]["calls"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("Get {name}: no Status.calls in {}", r.body))
    }
}

impl Reply {
    #[track_caller]
    fn assert_kept_alive(&self) {
        let close = self
            .headers
            .iter()
            .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
        assert!(
            !close,
            "the reply announces `Connection: close`: {:?}",
            self.headers
        );
    }
}

/// On plugin `name`'s socket: one Get, then a half-second Get (`nap`) on a second connection and,
/// while it runs, a quick Get on the first. Returns (calls before, the quick Get's count): the
/// fault guest counts calls per instance, so the count says which instance served the quick Get.
fn quick_get_beside_a_nap(name: &str) -> (u64, u64) {
    let sock = plugin_socket(name);
    let mut conn = KeepAlive::connect(&sock);
    let before = conn.get_ok("x");
    let napper = std::thread::spawn(move || KeepAlive::connect(&sock).get_ok("nap"));
    // Well inside the nap: it has reached its instance by now.
    std::thread::sleep(Duration::from_millis(200));
    let quick = conn.get_ok("x");
    let nap = napper.join().expect("the nap call");
    assert_eq!(
        nap,
        before + 1,
        "the nap ran on the instance that served the first Get"
    );
    (before, quick)
}

/// A pool is the bundle's declaration and the user's setting: with `PLUGD_INSTANCES=2` a quick
/// call beside a slow one is served by a second, fresh instance; `plugd set PLUGD_INSTANCES=1`
/// turns the pool off (the quick call waits and is counted by the one instance); a value out of
/// range fails the enable naming the entry.
#[test]
fn a_pool_serves_beside_a_slow_call_and_set_turns_it_off() {
    harness::isolated(|env| {
        let p = env.plugd(PLUGD_ARGS);
        let config = wasm_config("fault guest (test fixture), pooled", "2");
        create_and_enable_with(env, &p, FAULTY, &fault_guest_wasm(), &config);
        let (before, quick) = quick_get_beside_a_nap(FAULTY);
        assert_eq!(
            (before, quick),
            (1, 1),
            "pooled: the quick Get went to a new instance"
        );

        env.plugd_cli(&p, ["disable", FAULTY]).assert_ok();
        env.plugd_cli(&p, ["set", FAULTY, "PLUGD_INSTANCES=1"])
            .assert_ok();
        env.plugd_cli(&p, ["enable", FAULTY]).assert_ok();
        let (before, quick) = quick_get_beside_a_nap(FAULTY);
        assert_eq!(
            (before, quick),
            (1, 3),
            "one instance: the quick Get waited for the nap and was counted after it"
        );

        env.plugd_cli(&p, ["disable", FAULTY]).assert_ok();
        let set = env.plugd_cli(&p, ["set", FAULTY, "PLUGD_INSTANCES=9"]);
        let refused = if set.success() {
            env.plugd_cli(&p, ["enable", FAULTY])
        } else {
            set
        };
        assert!(
            !refused.success(),
            "PLUGD_INSTANCES=9 was accepted:\n{refused}"
        );
        let said = refused.to_string();
        assert!(
            said.contains("PLUGD_INSTANCES=\"9\"") && said.contains("1 to 8"),
            "the refusal names the entry and its range:\n{said}"
        );
    });
}

#[test]
fn raw_keep_alive_connection_survives_error_replies() {
    harness::isolated(|env| {
        let p = env.plugd(PLUGD_ARGS);
        create_and_enable(
            env,
            &p,
            FAULTY,
            &fault_guest_wasm(),
            "fault guest (test fixture)",
        );
        let mut conn = KeepAlive::connect(&plugin_socket(FAULTY));

        // Activation and a first Get on the same connection; the counter counts per instance.
        let r = conn.post("Plugin.Activate", &json!({}));
        assert_eq!(
            (r.status, r.body.clone()),
            (200, json!({"Implements": ["VolumeDriver"]}))
        );
        let first = conn.get_ok("x");
        assert_eq!(
            conn.get_ok("x"),
            first + 1,
            "the instance is kept between calls"
        );

        // An ordinary error reply (the guest's not-found) keeps the instance and the connection.
        let r = conn.post("VolumeDriver.Get", &json!({"Name": "missing"}));
        r.assert_kept_alive();
        assert_eq!(r.status, 500, "{}", r.body);
        assert!(
            r.body["Err"].as_str().is_some_and(|e| !e.is_empty()),
            "{}",
            r.body
        );
        assert_eq!(
            conn.get_ok("x"),
            first + 3,
            "a guest's own error does not discard its instance"
        );

        let mut report = Vec::new();
        for fault in &FAULTS {
            let r = conn.post("VolumeDriver.Get", &json!({"Name": fault.name}));
            let line = format!("Get {:5} -> {} after {:?}", fault.name, r.status, r.elapsed);
            eprintln!("faults: raw connection: {line}");
            report.push(line);
            r.assert_kept_alive();
            assert_eq!(r.status, 500, "Get {}: {}", fault.name, r.body);
            let err = r.body["Err"].as_str().unwrap_or_default();
            assert!(
                err.contains(&format!("plugin \"{FAULTY_REF}\": call VolumeDriver.Get"))
                    && err.contains(fault.says),
                "Get {}: expected an Err saying {:?}, got {}",
                fault.name,
                fault.says,
                r.body
            );
            assert!(
                r.elapsed < CALL_TIMEOUT + SLACK,
                "Get {} took {:?}",
                fault.name,
                r.elapsed
            );
            if fault.hangs {
                assert!(
                    r.elapsed >= CALL_TIMEOUT,
                    "Get {} failed after {:?}, before the call timeout",
                    fault.name,
                    r.elapsed
                );
            }
            // Same connection: the next call succeeds, on a fresh instance that is then kept.
            assert_eq!(
                conn.get_ok("x"),
                1,
                "after {}: a fresh instance serves the next call",
                fault.name
            );
            assert_eq!(conn.get_ok("x"), 2, "after {}", fault.name);
        }
        eprintln!("faults: raw connection summary\n  {}", report.join("\n  "));
    })
}
