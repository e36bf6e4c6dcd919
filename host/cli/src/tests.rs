//! End-to-end tests of the verbs against a fake daemon on a unix socket: the requests the CLI sends
//! and the bytes and exit statuses it produces.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::run;

/// One request as the fake daemon received it.
#[derive(Debug, Clone)]
struct Recorded {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A canned answer: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

struct FakeDaemon {
    path: PathBuf,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
}

impl FakeDaemon {
    fn start(
        tag: &str,
        answer: impl Fn(&Recorded) -> Answer + Send + Sync + 'static,
    ) -> FakeDaemon {
        let path = tempfile::Builder::new()
            .prefix(&format!("plugd-cli-{tag}-"))
            .tempdir()
            .unwrap()
            .keep()
            .join("d.sock");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let answer = Arc::new(answer);
        let (reqs, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (reqs, answer) = (reqs.clone(), answer.clone());
                        std::thread::spawn(move || serve(conn, &reqs, &*answer));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeDaemon {
            path,
            requests,
            stop,
        }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(conn: UnixStream, reqs: &Mutex<Vec<Recorded>>, answer: &dyn Fn(&Recorded) -> Answer) {
    conn.set_nonblocking(false).unwrap();
    let mut w = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut rec = Recorded {
            line: line.trim_end().to_string(),
            headers,
            body: Vec::new(),
        };
        if let Some(n) = rec.header("content-length") {
            let mut body = vec![0; n.parse().unwrap()];
            r.read_exact(&mut body).unwrap();
            rec.body = body;
        } else if rec.header("transfer-encoding") == Some("chunked") {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                rec.body.extend_from_slice(&chunk[..n]);
            }
        }
        let (status, extra, body) = answer(&rec);
        reqs.lock().unwrap().push(rec);
        let mut resp = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in extra {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        w.write_all(resp.as_bytes()).unwrap();
        w.write_all(&body).unwrap();
    }
}

fn not_found(name: &str) -> Answer {
    let body = format!("{{\"message\":\"plugin \\\"{name}\\\" not found\"}}\n");
    (
        404,
        vec![("Content-Type", "application/json".into())],
        body.into_bytes(),
    )
}

/// Runs the CLI; returns (status, stdout, stderr).
fn cli(args: &[&str]) -> (u8, String, String) {
    let args = std::iter::once("plugd")
        .chain(args.iter().copied())
        .map(Into::into)
        .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(args, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/testdata")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn ls_prints_the_docker_table_and_sends_filters() {
    let d = FakeDaemon::start("ls", |_| {
        (
            200,
            vec![("Content-Type", "application/json".into())],
            fixture("ls.api.json").into_bytes(),
        )
    });
    let host = d.host();
    assert_eq!(
        cli(&["-H", &host, "ls"]),
        (0, fixture("ls.table.out"), String::new())
    );
    assert_eq!(
        cli(&["ls", "-H", &host, "--format", "json"]).1,
        fixture("ls.json.out")
    );
    assert_eq!(
        cli(&[
            "-H",
            &host,
            "list",
            "-q",
            "-f",
            "Enabled = true",
            "-f",
            "capability=volumedriver"
        ])
        .1,
        fixture("ls.quiet.out")
    );
    let reqs = d.requests();
    assert_eq!(reqs[0].line, "GET /v1.41/plugins HTTP/1.1");
    assert_eq!(reqs[0].header("host"), Some("api.moby.localhost"));
    assert_eq!(
        reqs[2].line,
        "GET /v1.41/plugins?filters=%7B%22capability%22%3A%7B%22volumedriver%22%3Atrue%7D%2C%22enabled%22%3A%7B%22true%22%3Atrue%7D%7D HTTP/1.1"
    );
}

#[test]
fn inspect_prints_found_plugins_then_errors() {
    let d = FakeDaemon::start("inspect", |r| {
        if r.line.contains("/plugins/emoji/json") {
            let warn = vec![
                ("Content-Type", "application/json".to_string()),
                ("Plugd-Warning", "config key \"x\" is ignored".to_string()),
                ("Plugd-Warning", "second".to_string()),
            ];
            (200, warn, fixture("inspect-emoji.api.json").into_bytes())
        } else {
            not_found("nosuch")
        }
    });
    let host = d.host();
    let (code, out, err) = cli(&["-H", &host, "inspect", "emoji", "nosuch"]);
    assert_eq!(code, 1);
    let whole = fixture("inspect.out");
    // The fixture holds emoji then newline; emoji alone ends at its closing brace.
    let end = whole.find("\n    },\n").unwrap();
    assert_eq!(out, format!("{}\n    }}\n]\n", &whole[..end]));
    assert_eq!(
        err,
        "WARNING: config key \"x\" is ignored\nWARNING: second\nError response from daemon: plugin \"nosuch\" not found\n"
    );
    let (code, out, err) = cli(&[
        "-H",
        &host,
        "inspect",
        "-f",
        "{{.Name}}",
        "nosuch",
        "emoji",
        "nosuch",
    ]);
    assert_eq!((code, out.as_str()), (1, "emoji:latest\n"));
    assert!(err.ends_with("Error response from daemon: plugin \"nosuch\" not found\nError response from daemon: plugin \"nosuch\" not found\n"));
    assert_eq!(cli(&["-H", &host, "inspect", "nosuch"]).1, "[]\n");
    assert_eq!(
        cli(&["-H", &host, "inspect", "-f", "{{.Name", "emoji"]),
        (
            64,
            String::new(),
            "template parsing error: template: :1: unclosed action\n".into()
        )
    );
}

#[test]
fn create_streams_a_chunked_tar() {
    let d = FakeDaemon::start("create", |_| {
        (
            204,
            vec![("Plugd-Warning", "key \"user\" is ignored".into())],
            Vec::new(),
        )
    });
    let dir = tempfile::Builder::new()
        .prefix("plugd-cli-bundle-")
        .tempdir()
        .unwrap()
        .keep();
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    std::fs::write(dir.join("config.json"), br#"{"description":"d","interface":{"socket":"s.sock","types":["docker.volumedriver/1.0"]}}"#).unwrap();
    std::fs::write(dir.join("rootfs/big"), vec![7u8; 300 * 1024]).unwrap();
    let host = d.host();
    let (code, out, err) = cli(&["-H", &host, "create", "my/plug:v1", dir.to_str().unwrap()]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "my/plug:v1\n", "WARNING: key \"user\" is ignored\n")
    );
    let (code, out, _) = cli(&[
        "-H",
        &host,
        "create",
        "--compress",
        "gz",
        dir.to_str().unwrap(),
    ]);
    assert_eq!((code, out.as_str()), (0, "gz\n"));
    let reqs = d.requests();
    assert_eq!(
        reqs[0].line,
        "POST /v1.41/plugins/create?name=my%2Fplug%3Av1 HTTP/1.1"
    );
    assert_eq!(reqs[0].header("content-type"), Some("application/x-tar"));
    assert_eq!(reqs[0].header("transfer-encoding"), Some("chunked"));
    let mut ar = tar::Archive::new(&reqs[0].body[..]);
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["config.json", "rootfs/", "rootfs/big"]);
    assert_eq!(&reqs[1].body[..2], &[0x1f, 0x8b]);

    let (code, out, err) = cli(&[
        "-H",
        &host,
        "create",
        "x",
        &format!("{}/config.json", dir.display()),
    ]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (1, "", "context must be a directory\n")
    );
    assert_eq!(d.requests().len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn enable_disable_set_rm_requests() {
    let d = FakeDaemon::start("verbs", |r| {
        if r.line.contains("nosuch") {
            not_found("nosuch")
        } else {
            (200, Vec::new(), Vec::new())
        }
    });
    let host = d.host();
    assert_eq!(
        cli(&["-H", &host, "enable", "--timeout", "7", "p"]),
        (0, "p\n".into(), String::new())
    );
    assert_eq!(cli(&["-H", &host, "enable", "p"]).0, 0);
    assert_eq!(
        cli(&["-H", &host, "disable", "-f", "p"]),
        (0, "p\n".into(), String::new())
    );
    assert_eq!(cli(&["-H", &host, "disable", "p"]).0, 0);
    assert_eq!(
        cli(&["-H", &host, "set", "p", "DEBUG=1", "A B=c\"d"]),
        (0, String::new(), String::new())
    );
    assert_eq!(
        cli(&["-H", &host, "rm", "-f", "nosuch", "a/b:v1", "nosuch"]),
        (
            1,
            "a/b:v1\n".into(),
            "Error response from daemon: plugin \"nosuch\" not found\nError response from daemon: plugin \"nosuch\" not found\n"
                .into()
        )
    );
    assert_eq!(
        cli(&["-H", &host, "remove", "p"]),
        (0, "p\n".into(), String::new())
    );
    let lines: Vec<String> = d.requests().iter().map(|r| r.line.clone()).collect();
    assert_eq!(
        lines,
        [
            "POST /v1.41/plugins/p/enable?timeout=7 HTTP/1.1",
            "POST /v1.41/plugins/p/enable?timeout=30 HTTP/1.1",
            "POST /v1.41/plugins/p/disable?force=1 HTTP/1.1",
            "POST /v1.41/plugins/p/disable HTTP/1.1",
            "POST /v1.41/plugins/p/set HTTP/1.1",
            "DELETE /v1.41/plugins/nosuch?force=1 HTTP/1.1",
            "DELETE /v1.41/plugins/a/b:v1?force=1 HTTP/1.1",
            "DELETE /v1.41/plugins/nosuch?force=1 HTTP/1.1",
            "DELETE /v1.41/plugins/p HTTP/1.1",
        ]
    );
    let set = &d.requests()[4];
    assert_eq!(set.body, br#"["DEBUG=1","A B=c\"d"]"#);
    assert_eq!(set.header("content-type"), Some("application/json"));
}

#[test]
fn unreachable_daemon() {
    let host = "unix:///nonexistent/plugd.sock";
    let msg = "Cannot connect to the plugd daemon at unix:///nonexistent/plugd.sock. Is the plugd daemon running?\n";
    assert_eq!(cli(&["-H", host, "ls"]), (1, String::new(), msg.into()));
    assert_eq!(
        cli(&["-H", host, "inspect", "x"]),
        (1, "[]\n".into(), msg.into())
    );
    assert_eq!(
        cli(&["-H", host, "rm", "x", "y"]),
        (1, String::new(), format!("{msg}{msg}"))
    );
    assert_eq!(cli(&["-H", "tcp://127.0.0.1:1", "ls"]).0, 1);
}

#[test]
fn usage_errors_like_docker() {
    let h = ["-H", "unix:///nonexistent/plugd.sock"];
    let run = |extra: &[&str]| cli(&[&h[..], extra].concat());
    assert_eq!(
        run(&["ls", "extra"]),
        (
            1,
            String::new(),
            "plugd: 'plugd ls' accepts no arguments\n\nUsage:  plugd ls [OPTIONS]\n\nRun 'plugd ls --help' for more information\n"
                .into()
        )
    );
    assert_eq!(
        run(&["ls", "--bogus"]),
        (
            125,
            String::new(),
            "unknown flag: --bogus\n\nUsage:  plugd ls [OPTIONS]\n\nRun 'plugd ls --help' for more information\n".into()
        )
    );
    assert_eq!(
        run(&["ls", "-f", "enabled"]).2,
        "invalid argument \"enabled\" for \"-f, --filter\" flag: bad format of filter (expected name=value)\n\n\
         Usage:  plugd ls [OPTIONS]\n\nRun 'plugd ls --help' for more information\n"
    );
    assert_eq!(
        run(&["enable", "--timeout", "abc", "p"]),
        (
            125,
            String::new(),
            "invalid argument \"abc\" for \"--timeout\" flag: strconv.ParseInt: parsing \"abc\": invalid syntax\n\n\
             Usage:  plugd enable [OPTIONS] PLUGIN\n\nRun 'plugd enable --help' for more information\n"
                .into()
        )
    );
    assert_eq!(
        run(&["enable", "--timeout", "-1", "p"]),
        (1, String::new(), "negative timeout -1 is invalid\n".into())
    );
    assert_eq!(
        run(&["enable", "a", "b"]).2,
        "plugd: 'plugd enable' requires 1 argument\n\nUsage:  plugd enable [OPTIONS] PLUGIN\n\nRun 'plugd enable --help' for more information\n"
    );
    assert_eq!(
        run(&["inspect"]),
        (
            1,
            String::new(),
            "plugd: 'plugd inspect' requires at least 1 argument\n\nUsage:  plugd inspect [OPTIONS] PLUGIN [PLUGIN...]\n\n\
             See 'plugd inspect --help' for more information\n"
                .into()
        )
    );
    assert_eq!(run(&["create", "x"]).0, 1);
    assert_eq!(run(&["set", "x"]).0, 1);
    assert_eq!(run(&["rm"]).0, 1);
    assert_eq!(
        run(&["bogus"]),
        (
            1,
            String::new(),
            "plugd: unknown command: plugd bogus\n\nUsage:  plugd [OPTIONS] COMMAND\n\nRun 'plugd --help' for more information\n"
                .into()
        )
    );
    let (code, out, _) = run(&["ls", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--no-trunc"));
    let (code, out, err) = cli(&[]);
    assert_eq!((code, out.as_str()), (0, ""));
    assert!(err.contains("Usage:"));
}

// ---- install, upgrade, push ----

/// Runs the CLI with `stdin` and a docker config dir; returns (status, stdout, stderr).
fn cli_in(
    args: &[&str],
    stdin: &str,
    config_dir: Option<&std::path::Path>,
) -> (u8, String, String) {
    let args = std::iter::once("plugd")
        .chain(args.iter().copied())
        .map(Into::into)
        .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let lookup = super::auth::Lookup {
        config_dir: config_dir.map(|d| d.to_path_buf()),
        path: None,
    };
    let code = super::run_with(
        args,
        &mut stdin.as_bytes(),
        &mut out,
        &mut err,
        false,
        lookup,
    );
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn json_answer(status: u16, body: &str) -> Answer {
    (
        status,
        vec![("Content-Type", "application/json".into())],
        body.as_bytes().to_vec(),
    )
}

const PRIVILEGES: &str = r#"[{"Name":"network","Description":"permissions to access a network","Value":["host"]},{"Name":"capabilities","Description":"","Value":["CAP_SYS_ADMIN","CAP_NET_ADMIN"]}]"#;

const PULL_STREAM: &str = concat!(
    r#"{"status":"Pulling from x","id":"latest"}"#,
    "\n",
    r#"{"status":"Downloading","progressDetail":{"current":5,"total":10},"id":"abc"}"#,
    "\n",
    r#"{"status":"Download complete","progressDetail":{},"id":"abc"}"#,
    "\n",
    r#"{"status":"Digest: sha256:0123"}"#,
    "\n",
);

/// A registry-side daemon: privileges, pull and upgrade streams; set/enable/delete answered by
/// `after` (path → answer).
fn registry_daemon(
    tag: &str,
    stream: &'static str,
    after: impl Fn(&str) -> Option<Answer> + Send + Sync + 'static,
) -> FakeDaemon {
    FakeDaemon::start(tag, move |r| {
        let path = r.line.split(' ').nth(1).unwrap_or("").to_string();
        if path.starts_with("/v1.41/plugins/privileges?") {
            return json_answer(200, PRIVILEGES);
        }
        if path.starts_with("/v1.41/plugins/pull?") || path.contains("/upgrade?") {
            return (
                200,
                vec![
                    ("Content-Type", "application/json".into()),
                    ("Docker-Plugin-Name", "127.0.0.1:5000/x:latest".into()),
                ],
                stream.as_bytes().to_vec(),
            );
        }
        if let Some(a) = after(&path) {
            return a;
        }
        if path.ends_with("/json") {
            return json_answer(
                200,
                r#"{"Name":"127.0.0.1:5000/x:latest","PluginReference":"127.0.0.1:5000/x:latest","Enabled":true}"#,
            );
        }
        (204, vec![], vec![])
    })
}

fn lines_of(d: &FakeDaemon) -> Vec<String> {
    d.requests().iter().map(|r| r.line.clone()).collect()
}

const PROMPT: &str = "Plugin \"127.0.0.1:5000/x:latest\" is requesting the following privileges:\n - network: [host]\n - capabilities: [CAP_SYS_ADMIN CAP_NET_ADMIN]\nDo you grant the above permissions? [y/N] ";

#[test]
fn install_asks_pulls_sets_and_enables() {
    let d = registry_daemon("inst-y", PULL_STREAM, |_| None);
    let host = d.host();
    let (code, out, err) = cli_in(
        &["-H", &host, "install", "127.0.0.1:5000/x:latest", "DEBUG=1"],
        "y\n",
        None,
    );
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        format!(
            "{PROMPT}latest: Pulling from x\nabc: Download complete\nDigest: sha256:0123\nInstalled plugin 127.0.0.1:5000/x:latest\n"
        )
    );
    assert_eq!(
        lines_of(&d),
        [
            "GET /v1.41/plugins/privileges?remote=127.0.0.1%3A5000%2Fx%3Alatest HTTP/1.1",
            "POST /v1.41/plugins/pull?name=&remote=127.0.0.1%3A5000%2Fx%3Alatest HTTP/1.1",
            "POST /v1.41/plugins/127.0.0.1:5000/x:latest/set HTTP/1.1",
            "POST /v1.41/plugins/127.0.0.1:5000/x:latest/enable?timeout=0 HTTP/1.1",
        ]
    );
    let reqs = d.requests();
    assert_eq!(reqs[0].header("x-registry-auth"), Some("e30="));
    assert_eq!(reqs[1].header("x-registry-auth"), Some("e30="));
    assert_eq!(reqs[1].header("content-type"), Some("application/json"));
    let sent: serde_json::Value = serde_json::from_slice(&reqs[1].body).unwrap();
    assert_eq!(
        sent,
        serde_json::from_str::<serde_json::Value>(PRIVILEGES).unwrap()
    );
    assert_eq!(reqs[2].body, br#"["DEBUG=1"]"#);
}

#[test]
fn install_refused_or_eof_sends_nothing_more() {
    for answer in ["n\n", "yes\n", ""] {
        let d = registry_daemon("inst-n", PULL_STREAM, |_| None);
        let host = d.host();
        let (code, out, err) = cli_in(&["-H", &host, "install", "127.0.0.1:5000/x"], answer, None);
        assert_eq!(code, 1, "{answer:?}");
        assert_eq!(
            out.replace(":latest\"", "\""),
            PROMPT.replace(":latest\"", "\"")
        );
        assert_eq!(
            err,
            "permission denied while installing plugin 127.0.0.1:5000/x\n"
        );
        assert_eq!(lines_of(&d).len(), 1, "only the privileges were asked for");
    }
}

#[test]
fn install_granted_up_front_alias_and_disable() {
    let d = registry_daemon("inst-g", PULL_STREAM, |_| None);
    let host = d.host();
    let (code, out, _) = cli_in(
        &[
            "-H",
            &host,
            "install",
            "--grant-all-permissions",
            "--disable",
            "--alias",
            "Mine",
            "--disable-content-trust=false",
            "127.0.0.1:5000/x",
        ],
        "",
        None,
    );
    // An alias that is not a valid name is refused before any request.
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(lines_of(&d).is_empty());
    let (code, out, err) = cli_in(
        &[
            "-H",
            &host,
            "install",
            "--grant-all-permissions",
            "--disable",
            "--alias",
            "mine",
            "127.0.0.1:5000/x",
        ],
        "",
        None,
    );
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(!out.contains("requesting"), "{out}");
    assert!(out.ends_with("Installed plugin 127.0.0.1:5000/x\n"));
    let lines = lines_of(&d);
    assert_eq!(
        lines,
        [
            "GET /v1.41/plugins/privileges?remote=127.0.0.1%3A5000%2Fx HTTP/1.1",
            "POST /v1.41/plugins/pull?name=mine%3Alatest&remote=127.0.0.1%3A5000%2Fx HTTP/1.1",
        ],
        "no enable with --disable"
    );
}

#[test]
fn install_removes_the_plugin_when_enable_fails() {
    let d = registry_daemon("inst-rb", PULL_STREAM, |path| {
        path.contains("/enable")
            .then(|| json_answer(500, r#"{"message":"dry run: the plugin would not start"}"#))
    });
    let host = d.host();
    let (code, _, err) = cli_in(
        &[
            "-H",
            &host,
            "install",
            "--grant-all-permissions",
            "127.0.0.1:5000/x",
        ],
        "",
        None,
    );
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "Error response from daemon: dry run: the plugin would not start\n"
    );
    assert_eq!(
        lines_of(&d).last().unwrap(),
        "DELETE /v1.41/plugins/127.0.0.1:5000/x:latest HTTP/1.1"
    );
}

#[test]
fn install_stream_error_is_printed_bare_and_stops() {
    let stream = concat!(
        r#"{"status":"Pulling from x","id":"latest"}"#,
        "\n",
        r#"{"errorDetail":{"message":"unauthorized: authentication required"},"error":"unauthorized: authentication required"}"#,
        "\n"
    );
    let d = registry_daemon("inst-err", stream, |_| None);
    let host = d.host();
    let (code, out, err) = cli_in(
        &[
            "-H",
            &host,
            "install",
            "--grant-all-permissions",
            "127.0.0.1:5000/x",
        ],
        "",
        None,
    );
    assert_eq!(code, 1);
    assert_eq!(out, "latest: Pulling from x\n");
    assert_eq!(err, "unauthorized: authentication required\n");
    assert_eq!(lines_of(&d).len(), 2, "no set, enable or delete");
}

#[test]
fn install_error_before_the_stream() {
    let d = FakeDaemon::start("inst-exists", |r| {
        if r.line.contains("/privileges") {
            json_answer(200, "[]")
        } else {
            json_answer(
                409,
                r#"{"message":"plugin 127.0.0.1:5000/x:latest already exists"}"#,
            )
        }
    });
    let host = d.host();
    let (code, out, err) = cli_in(&["-H", &host, "install", "127.0.0.1:5000/x"], "", None);
    assert_eq!(code, 1);
    assert_eq!(out, "", "an empty list asks nothing");
    assert_eq!(
        err,
        "Error response from daemon: plugin 127.0.0.1:5000/x:latest already exists\n"
    );
    assert_eq!(d.requests()[1].body, b"[]\n");
}

#[test]
fn install_sends_config_and_flag_credentials() {
    use base64::Engine as _;
    let decode = |s: &str| -> serde_json::Value {
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE.decode(s).unwrap())
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6czNjcmV0"}}}"#,
    )
    .unwrap();
    let d = registry_daemon("inst-auth", PULL_STREAM, |_| None);
    let host = d.host();
    let args = [
        "-H",
        &host,
        "install",
        "--grant-all-permissions",
        "127.0.0.1:5000/x",
    ];
    assert_eq!(cli_in(&args, "", Some(dir.path())).0, 0);
    let reqs = d.requests();
    let expected = serde_json::json!({"username":"alice","password":"s3cret","serveraddress":"127.0.0.1:5000"});
    assert_eq!(decode(reqs[0].header("x-registry-auth").unwrap()), expected);
    assert_eq!(decode(reqs[1].header("x-registry-auth").unwrap()), expected);

    let d = registry_daemon("inst-auth2", PULL_STREAM, |_| None);
    let host = d.host();
    let args = [
        "-H",
        &host,
        "install",
        "--grant-all-permissions",
        "-u",
        "bob",
        "--password-stdin",
        "127.0.0.1:5000/x",
    ];
    assert_eq!(cli_in(&args, "pw2\n", Some(dir.path())).0, 0);
    assert_eq!(
        decode(d.requests()[1].header("x-registry-auth").unwrap()),
        serde_json::json!({"username":"bob","password":"pw2","serveraddress":"127.0.0.1:5000"})
    );

    // --password-stdin leaves no way to answer the prompt.
    let args = [
        "-H",
        &host,
        "install",
        "-u",
        "bob",
        "--password-stdin",
        "127.0.0.1:5000/x",
    ];
    let (code, _, err) = cli_in(&args, "pw2\n", None);
    assert_eq!(code, 1);
    assert!(err.contains("--grant-all-permissions"), "{err}");
    // A broken config file is an error naming it, before any request.
    std::fs::write(dir.path().join("config.json"), "{").unwrap();
    let d = registry_daemon("inst-auth3", PULL_STREAM, |_| None);
    let host = d.host();
    let args = [
        "-H",
        &host,
        "install",
        "--grant-all-permissions",
        "127.0.0.1:5000/x",
    ];
    let (code, _, err) = cli_in(&args, "", Some(dir.path()));
    assert_eq!(code, 1);
    assert!(err.contains("config.json"), "{err}");
    assert!(lines_of(&d).is_empty());
}

#[test]
fn upgrade_prompts_on_other_repository_and_allows_enabled_plugins() {
    let d = registry_daemon("upg", PULL_STREAM, |_| None);
    let host = d.host();
    let (code, out, err) = cli_in(
        &["-H", &host, "upgrade", "x", "127.0.0.1:5000/y"],
        "n\n",
        None,
    );
    assert_eq!(
        (code, err.as_str()),
        (0, ""),
        "a cancelled upgrade says nothing and exits 0, as docker's"
    );
    assert_eq!(
        out,
        "Upgrading plugin 127.0.0.1:5000/x:latest from 127.0.0.1:5000/x:latest to 127.0.0.1:5000/y:latest\nPlugin images do not match, are you sure? [y/N] "
    );
    assert_eq!(lines_of(&d), ["GET /v1.41/plugins/x/json HTTP/1.1"]);

    let d = registry_daemon("upg2", PULL_STREAM, |_| None);
    let host = d.host();
    let (code, out, err) = cli_in(
        &["-H", &host, "upgrade", "x", "127.0.0.1:5000/y"],
        "y\ny\n",
        None,
    );
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(
        out.contains("Plugin \"127.0.0.1:5000/y\" is requesting"),
        "{out}"
    );
    assert!(
        out.ends_with(
            "Digest: sha256:0123\nUpgraded plugin 127.0.0.1:5000/x:latest to 127.0.0.1:5000/y\n"
        ),
        "{out}"
    );
    assert_eq!(
        lines_of(&d)[2],
        "POST /v1.41/plugins/127.0.0.1:5000/x:latest/upgrade?remote=127.0.0.1%3A5000%2Fy HTTP/1.1"
    );

    // The same repository: no remote check; granted up front: no prompt at all.
    let d = registry_daemon("upg3", PULL_STREAM, |_| None);
    let host = d.host();
    let (code, out, _) = cli_in(
        &["-H", &host, "upgrade", "--grant-all-permissions", "x"],
        "",
        None,
    );
    assert_eq!(code, 0);
    assert!(!out.contains("[y/N]"), "{out}");
    assert!(out.ends_with("Upgraded plugin 127.0.0.1:5000/x:latest to 127.0.0.1:5000/x:latest\n"));

    let d = FakeDaemon::start("upg4", |_| not_found("x"));
    let host = d.host();
    assert_eq!(
        cli_in(&["-H", &host, "upgrade", "x"], "", None),
        (
            1,
            String::new(),
            "error reading plugin data: Error response from daemon: plugin \"x\" not found\n"
                .into()
        )
    );
}

#[test]
fn push_streams_and_hides_aux() {
    let stream = concat!(
        r#"{"status":"The push refers to repository [127.0.0.1:5000/x]"}"#,
        r#"{"status":"Preparing","progressDetail":{},"id":"abc"}"#,
        r#"{"status":"Pushing","progressDetail":{"current":1,"total":2},"id":"abc"}"#,
        r#"{"status":"Pushed","progressDetail":{},"id":"abc"}"#,
        r#"{"status":"latest: digest: sha256:0 size: 528"}"#,
        r#"{"progressDetail":{},"aux":{"Tag":"latest","Digest":"sha256:0","Size":528}}"#,
    );
    let d = FakeDaemon::start("push", move |_| json_answer(200, stream));
    let host = d.host();
    let (code, out, err) = cli_in(&["-H", &host, "push", "127.0.0.1:5000/x"], "", None);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "The push refers to repository [127.0.0.1:5000/x]\nabc: Preparing\nabc: Pushed\nlatest: digest: sha256:0 size: 528\n"
    );
    assert_eq!(
        lines_of(&d),
        ["POST /v1.41/plugins/127.0.0.1:5000/x:latest/push HTTP/1.1"]
    );
    let digest = format!("127.0.0.1:5000/x@sha256:{}", "0".repeat(64));
    assert_eq!(
        cli_in(&["-H", &host, "push", &digest], "", None),
        (1, String::new(), format!("invalid name: {digest}\n"))
    );
}

#[test]
fn registry_verbs_arity() {
    let (code, _, err) = cli_in(&["upgrade", "a", "b", "c"], "", None);
    assert_eq!(code, 1);
    assert!(err.starts_with("plugd: 'plugd upgrade' requires at least 1 and at most 2 arguments\n\nUsage:  plugd upgrade [OPTIONS] PLUGIN [REMOTE]"), "{err}");
    let (code, _, err) = cli_in(&["push"], "", None);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("plugd: 'plugd push' requires 1 argument\n"),
        "{err}"
    );
    let (code, _, err) = cli_in(&["install"], "", None);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("plugd: 'plugd install' requires at least 1 argument\n"),
        "{err}"
    );
    let (code, _, err) = cli_in(&["install", "--disable-content-trust=maybe", "x"], "", None);
    assert_eq!(code, 125);
    assert!(err.starts_with("invalid argument \"maybe\" for \"--disable-content-trust\" flag: strconv.ParseBool: parsing \"maybe\": invalid syntax"), "{err}");
}

#[test]
fn install_of_an_image_gets_dockers_hint() {
    let d = FakeDaemon::start("inst-image", |r| {
        if r.line.contains("/privileges") {
            json_answer(200, "[]")
        } else {
            json_answer(
                500,
                r#"{"message":"Encountered remote \"application/vnd.docker.container.image.v1+json\"(image) when fetching"}"#,
            )
        }
    });
    let host = d.host();
    let (code, _, err) = cli_in(&["-H", &host, "install", "busybox"], "", None);
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "Error response from daemon: Encountered remote \"application/vnd.docker.container.image.v1+json\"(image) when fetching - Use \"docker image pull\"\n"
    );
}

/// A check matrix as the daemon sends it: one native row, `status` its cell.
fn matrix(status: &str, state: &str, observed: &str) -> String {
    serde_json::json!({
        "plugin": "p:latest", "id": "x",
        "columns": [{"column": "native", "state": state, "detail": "native 0.1.0"}],
        "rows": [{"class": "mount", "privilege": "/ro: write", "declared": "bind /s -> /ro [ro]",
                  "cells": {"native": {"expected": "denied", "observed": observed, "status": status}},
                  "verdict": if status == "mismatch" { "mismatch" } else { "ok" }}],
        "mismatches": usize::from(status == "mismatch"),
    })
    .to_string()
}

#[test]
fn check_prints_the_matrix_and_exits_by_verdict() {
    let d = FakeDaemon::start("check", |r| {
        if r.line.contains("/bad/") {
            json_answer(200, &matrix("mismatch", "ran", "granted\x1b[2J\tx"))
        } else if r.line.contains("/none/") {
            json_answer(200, &matrix("not-run", "unavailable", "not run"))
        } else {
            json_answer(200, &matrix("ok", "ran", "denied (EROFS)"))
        }
    });
    let host = d.host();
    let (code, out, err) = cli(&["-H", &host, "check", "good"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(
        out.contains("PRIVILEGE") && out.contains("/ro: write") && out.contains("denied (EROFS)"),
        "{out}"
    );
    // A mismatch exits 1, shows what was expected, and a plugin's bytes cannot drive the terminal
    // or break the table.
    let (code, out, err) = cli(&["-H", &host, "check", "--runtime", "both", "bad"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        out.contains(r"granted\x1b[2J\tx (expected denied)") && out.contains("MISMATCH"),
        "{out}"
    );
    assert!(
        err.contains("1 privilege(s) enforced differently than declared"),
        "{err}"
    );
    // Nothing ran: exit 2.
    assert_eq!(cli(&["-H", &host, "check", "none"]).0, 2);
    // JSON is the daemon's answer as is.
    let (code, out, _) = cli(&[
        "-H",
        &host,
        "check",
        "--format",
        "json",
        "--docker-host",
        "unix:///d.sock",
        "good",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["plugin"],
        "p:latest"
    );
    assert_eq!(
        cli(&["-H", &host, "check", "--runtime", "nope", "good"]).0,
        64
    );
    let lines: Vec<String> = d.requests().iter().map(|r| r.line.clone()).collect();
    assert_eq!(
        lines,
        [
            "POST /v1.41/plugins/good/check HTTP/1.1",
            "POST /v1.41/plugins/bad/check?runtime=both HTTP/1.1",
            "POST /v1.41/plugins/none/check HTTP/1.1",
            "POST /v1.41/plugins/good/check?dockerHost=unix%3A%2F%2F%2Fd.sock HTTP/1.1",
        ]
    );
    assert_eq!(cli(&["-H", &host, "enable", "--check", "good"]).0, 0);
    assert_eq!(
        d.requests().last().unwrap().line,
        "POST /v1.41/plugins/good/enable?timeout=30&check=1 HTTP/1.1"
    );
}
