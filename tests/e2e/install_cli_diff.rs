//! Differential test of the registry verbs' client side: `docker plugin install|upgrade|push`
//! (docker CLI 28) and `plugd install|upgrade|push` talk to the same scripted Engine API daemon,
//! with the same arguments and the same stdin, and must print the same stdout and stderr, exit the
//! same, and send the same requests (method, path and query, body, `X-Registry-Auth`).
//!
//! The daemon is a fake on a unix socket, so this pins the CLI's prompts, messages and requests
//! independently of plugd's daemon side: privileges, a pull stream with layer progress, a stream
//! that fails midway, an enable that fails. Not compared: `/_ping` (docker negotiates the version,
//! plugd speaks 1.41 only), and where plugd differs on purpose — it removes the plugin when the
//! enable after a pull fails (docker's client means to and never does), and it sends nothing more
//! after a stream that reported a failure (docker's client may go on to enable); see
//! `host/cli/src/distribution.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{Cli, Cmd, Output, plugd_binary};

const REMOTE: &str = "127.0.0.1:5000/x:latest";

/// What the scripted daemon does differently.
#[derive(Clone, Copy, PartialEq)]
enum Script {
    /// Everything succeeds.
    Happy,
    /// The pull stream ends with an `errorDetail`.
    StreamFails,
    /// `enable` answers 500.
    EnableFails,
}

/// One request as the fake daemon saw it (no `/_ping`).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    body: String,
    auth: Option<String>,
}

struct FakeDaemon {
    socket: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl FakeDaemon {
    fn start(dir: &Path, script: Script) -> FakeDaemon {
        let socket = dir.join("d.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || serve(conn, &s, script));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeDaemon { socket, seen, stop }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn stream(script: Script) -> String {
    let mut lines = vec![
        r#"{"status":"Pulling from x","id":"latest"}"#.to_string(),
        r#"{"status":"Pulling fs layer","progressDetail":{},"id":"aaa"}"#.to_string(),
    ];
    for i in 0..=4 {
        lines.push(format!(
            r#"{{"status":"Downloading","progressDetail":{{"current":{},"total":400}},"progress":"[==>   ]","id":"aaa"}}"#,
            i * 100
        ));
    }
    lines.push(r#"{"status":"Download complete","progressDetail":{},"id":"aaa"}"#.into());
    lines.push(r#"{"status":"Digest: sha256:0123"}"#.into());
    if script == Script::StreamFails {
        lines.push(
            r#"{"errorDetail":{"message":"unauthorized: authentication required"},"error":"unauthorized: authentication required"}"#
                .into(),
        );
    }
    lines.push(r#"{"status":"Status: Downloaded newer image for 127.0.0.1:5000/x:latest"}"#.into());
    lines.join("\n") + "\n"
}

fn serve(conn: UnixStream, seen: &Mutex<Vec<Seen>>, script: Script) {
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if let Some(n) = header("content-length") {
            body = vec![0; n.parse().unwrap()];
            r.read_exact(&mut body).unwrap();
        } else if header("transfer-encoding").as_deref() == Some("chunked") {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        let (status, extra, reply): (u16, Vec<(&str, String)>, String) = if path == "/_ping" {
            (200, vec![("Api-Version", "1.41".into())], "OK".into())
        } else {
            // The version prefix differs by CLI only in its absence; compare without it.
            let p = path.strip_prefix("/v1.41").unwrap_or(&path).to_string();
            seen.lock().unwrap().push(Seen {
                method: method.clone(),
                path: p.clone(),
                // docker's json.Encoder ends bodies in a newline; plugd's `set` does not.
                body: String::from_utf8_lossy(&body).trim_end().to_string(),
                auth: header("x-registry-auth"),
            });
            let json = |s: &str| s.to_string();
            if p.starts_with("/plugins/privileges?") {
                (
                    200,
                    vec![],
                    json(
                        r#"[{"Name":"network","Description":"permissions to access a network","Value":["host"]},{"Name":"capabilities","Description":"list of additional capabilities required","Value":["CAP_SYS_ADMIN","CAP_NET_ADMIN"]}]"#,
                    ),
                )
            } else if p.starts_with("/plugins/pull?") || p.contains("/upgrade?") {
                let name = if p.contains("name=mine") {
                    "mine:latest"
                } else {
                    REMOTE
                };
                (
                    200,
                    vec![("Docker-Plugin-Name", name.into())],
                    stream(script),
                )
            } else if p.contains("/push") {
                (
                    200,
                    vec![],
                    concat!(
                        r#"{"status":"The push refers to repository [127.0.0.1:5000/x]"}"#,
                        r#"{"status":"Preparing","progressDetail":{},"id":"aaa"}"#,
                        r#"{"status":"Pushing","progressDetail":{"current":200,"total":400},"id":"aaa"}"#,
                        r#"{"status":"Pushed","progressDetail":{},"id":"aaa"}"#,
                        r#"{"status":"latest: digest: sha256:0123 size: 528"}"#,
                        r#"{"progressDetail":{},"aux":{"Tag":"latest","Digest":"sha256:0123","Size":528}}"#,
                    )
                    .into(),
                )
            } else if p.contains("/enable") && script == Script::EnableFails {
                (
                    500,
                    vec![],
                    json(r#"{"message":"dry run: the plugin would not start"}"#),
                )
            } else if p.ends_with("/json") {
                (
                    200,
                    vec![],
                    json(
                        r#"{"Id":"aaaa","Name":"127.0.0.1:5000/x:latest","PluginReference":"127.0.0.1:5000/x:latest","Enabled":false,"Config":{}}"#,
                    ),
                )
            } else {
                (200, vec![], String::new())
            }
        };
        let mut resp = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            reply.len()
        );
        for (k, v) in extra {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        if method != "HEAD" {
            resp.push_str(&reply);
        }
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// Runs one CLI against a fresh fake daemon; returns its output and the requests it sent.
fn run(docker: bool, script: Script, args: &[&str], stdin: &str) -> (Output, Vec<Seen>) {
    run_with_config(docker, script, args, stdin, None)
}

/// [`run`] with a docker `config.json` and a fake credential helper `docker-credential-fake`
/// first on `PATH` (bob/pw for 127.0.0.1:5000, an identity token for tok:1, nothing else).
fn run_with_config(
    docker: bool,
    script: Script,
    args: &[&str],
    stdin: &str,
    config_json: Option<&str>,
) -> (Output, Vec<Seen>) {
    let dir = tempfile::Builder::new()
        .prefix("pd-icd-")
        .tempdir()
        .unwrap();
    let d = FakeDaemon::start(dir.path(), script);
    let config = dir.path().join("docker-config");
    std::fs::create_dir(&config).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    if let Some(text) = config_json {
        std::fs::write(config.join("config.json"), text).unwrap();
        let helper = bin.join("docker-credential-fake");
        std::fs::write(
            &helper,
            r#"#!/bin/sh
[ "$1" = get ] || exit 2
read -r server || true
case "$server" in
  127.0.0.1:5000) echo '{"ServerURL":"127.0.0.1:5000","Username":"bob","Secret":"pw"}' ;;
  tok:1) echo '{"ServerURL":"tok:1","Username":"<token>","Secret":"T0K"}' ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"#,
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cmd = if docker {
        Cmd::new(Cli::Docker28.path())
            .arg("-H")
            .arg(d.host())
            .arg("plugin")
    } else {
        Cmd::new(plugd_binary()).arg("-H").arg(d.host())
    };
    let out = cmd
        .args(args)
        .env("DOCKER_CONFIG", &config)
        .env("PATH", &path)
        .env("DOCKER_CLI_HINTS", "false")
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTENT_TRUST")
        .env_remove("DOCKER_API_VERSION")
        .stdin(stdin)
        .timeout(Duration::from_secs(60))
        .run();
    (out, d.seen())
}

#[test]
fn registry_verbs_match_docker_28() {
    let digest = format!("x@sha256:{}", "a".repeat(64));
    let cases: Vec<(Script, Vec<&str>, &str)> = vec![
        (Script::Happy, vec!["install", REMOTE], "n\n"),
        (Script::Happy, vec!["install", REMOTE], ""),
        (Script::Happy, vec!["install", REMOTE], "yes\n"),
        (Script::Happy, vec!["install", REMOTE, "DEBUG=1"], " Y \n"),
        (
            Script::Happy,
            vec![
                "install",
                "--grant-all-permissions",
                "--disable",
                "--alias",
                "mine",
                "127.0.0.1:5000/x",
            ],
            "",
        ),
        (
            Script::Happy,
            vec!["install", "--alias", "Mine", REMOTE],
            "",
        ),
        (Script::Happy, vec!["install", "bad@@ref"], ""),
        (
            Script::Happy,
            vec!["upgrade", "x", "127.0.0.1:5000/y"],
            "n\n",
        ),
        (
            Script::Happy,
            vec![
                "upgrade",
                "--grant-all-permissions",
                "x",
                "127.0.0.1:5000/y",
            ],
            "y\n",
        ),
        (
            Script::Happy,
            vec!["upgrade", "--skip-remote-check", "x", "127.0.0.1:5000/y:2"],
            "n\n",
        ),
        (
            Script::Happy,
            vec!["upgrade", "--grant-all-permissions", "x"],
            "",
        ),
        (Script::Happy, vec!["push", "127.0.0.1:5000/x"], ""),
        (Script::Happy, vec!["push", &digest], ""),
    ];
    let mut failures = Vec::new();
    for (script, args, stdin) in &cases {
        let (docker, docker_seen) = run(true, *script, args, stdin);
        let (plugd, plugd_seen) = run(false, *script, args, stdin);
        let same = docker.stdout == plugd.stdout
            && docker.stderr == plugd.stderr
            && docker.code == plugd.code
            && docker_seen == plugd_seen;
        if !same {
            failures.push(format!(
                "{args:?} with stdin {stdin:?}:\n  docker: {:?} {:?} {:?}\n   plugd: {:?} {:?} {:?}\n  docker sent {docker_seen:#?}\n  plugd sent {plugd_seen:#?}",
                docker.code, docker.stdout, docker.stderr, plugd.code, plugd.stdout, plugd.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Credentials from the docker config: `auths` (with an email), a per-registry helper, the
/// default store; the same `X-Registry-Auth` from both CLIs.
#[test]
fn credentials_match_docker_28() {
    let configs = [
        r#"{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6czNjcmV0","email":"a@b"},"https://index.docker.io/v1/":{"auth":"aHViOmh1Yg=="}}}"#,
        r#"{"credsStore":"fake","auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6czNjcmV0","email":"e@f"},"tok:1":{"registrytoken":"RT"}}}"#,
        r#"{"credHelpers":{"tok:1":"fake"},"auths":{"https://127.0.0.1:5000/v2/":{"username":"u2","password":"p2"}}}"#,
    ];
    let mut failures = Vec::new();
    for config in configs {
        for remote in ["127.0.0.1:5000/x", "tok:1/x", "vieux/sshfs"] {
            let args = ["install", "--grant-all-permissions", "--disable", remote];
            let (docker, docker_seen) =
                run_with_config(true, Script::Happy, &args, "", Some(config));
            let (plugd, plugd_seen) =
                run_with_config(false, Script::Happy, &args, "", Some(config));
            let auths = |seen: &[Seen]| seen.iter().map(|s| s.auth.clone()).collect::<Vec<_>>();
            if auths(&docker_seen) != auths(&plugd_seen) || docker.code != plugd.code {
                failures.push(format!(
                    "{remote} with {config}:\n  docker {:?} {:?} {:?}\n   plugd {:?} {:?} {:?}",
                    docker.code,
                    docker.stderr,
                    auths(&docker_seen),
                    plugd.code,
                    plugd.stderr,
                    auths(&plugd_seen)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A pull stream that reports a failure: the same output, but docker's client may still enable the
/// plugin the daemon just failed to pull (its goroutine races the exit), and plugd stops.
#[test]
fn failed_stream_same_message_and_plugd_stops() {
    let args = ["install", "--grant-all-permissions", REMOTE];
    let (docker, docker_seen) = run(true, Script::StreamFails, &args, "");
    let (plugd, plugd_seen) = run(false, Script::StreamFails, &args, "");
    assert_eq!(
        (&plugd.stdout, &plugd.stderr, plugd.code),
        (&docker.stdout, &docker.stderr, docker.code)
    );
    assert_eq!(plugd.stderr, "unauthorized: authentication required\n");
    assert_eq!(plugd.code, Some(1));
    let after_pull = |seen: &[Seen]| {
        seen.iter()
            .skip_while(|s| !s.path.starts_with("/plugins/pull?"))
            .skip(1)
            .map(|s| format!("{} {}", s.method, s.path))
            .collect::<Vec<_>>()
    };
    // docker's enable runs in a goroutine racing the CLI's exit: sometimes sent, sometimes not.
    assert!(
        after_pull(&docker_seen)
            .iter()
            .all(|r| r == "POST /plugins/127.0.0.1:5000/x:latest/enable?timeout=0"),
        "{docker_seen:#?}"
    );
    assert!(after_pull(&plugd_seen).is_empty(), "{plugd_seen:#?}");
}

/// An enable that fails after the pull: the same output, but plugd removes what it pulled.
#[test]
fn failed_enable_same_message_and_plugd_removes_the_plugin() {
    let args = ["install", "--grant-all-permissions", REMOTE];
    let (docker, docker_seen) = run(true, Script::EnableFails, &args, "");
    let (plugd, plugd_seen) = run(false, Script::EnableFails, &args, "");
    assert_eq!(
        (&plugd.stdout, &plugd.stderr, plugd.code),
        (&docker.stdout, &docker.stderr, docker.code)
    );
    assert_eq!(
        plugd.stderr,
        "Error response from daemon: dry run: the plugin would not start\n"
    );
    let deletes = |seen: &[Seen]| {
        seen.iter()
            .filter(|s| s.method == "DELETE")
            .map(|s| s.path.clone())
            .collect::<Vec<_>>()
    };
    assert!(deletes(&docker_seen).is_empty(), "{docker_seen:#?}");
    assert_eq!(
        deletes(&plugd_seen),
        ["/plugins/127.0.0.1:5000/x:latest"],
        "{plugd_seen:#?}"
    );
}
