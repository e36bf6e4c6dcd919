//! Bad input, end to end: every refusal of `POST /plugins/create`, through the Engine API (raw
//! HTTP), the `plugd` CLI and the docker CLI, and the crash safety of create.
//!
//! Every bad bundle is a *valid* bundle of the example wasm volume guest with exactly one thing
//! wrong, so a missing refusal shows up as a create that succeeds (and changes the store). After
//! each refusal the test checks the message (it names the field or the entry and quotes the value),
//! the status (400), and that nothing is left: `plugd ls -q --no-trunc` unchanged,
//! `<data-root>/plugins` unchanged, `<data-root>/tmp` (the staging area) empty.
//!
//! Crash safety: a create interrupted by the client hanging up, by SIGTERM or by SIGKILL of plugd
//! leaves nothing once plugd is back, and a stalled upload must not hold up the other verbs.
//!
//! Hostile tar entries (absolute names, `..`, device nodes, links) cannot be written with
//! `tar::Builder`'s path setters, so [`TarBuf`] puts names straight into the header bytes.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tar::{EntryType, Header};

use crate::harness::{self, Cli, Env, HttpResponse, Plugd, wait_for};

// ---------------------------------------------------------------------------------------------
// Bundles

/// The example volume guest's config.json (a valid wasm plugin); cases change one thing in it.
fn valid_config() -> Value {
    json!({
        "description": "bad_input: the example wasm volume driver",
        "entrypoint": ["/plugin.wasm"],
        "interface": {"socket": "volume.sock", "types": ["docker.volumedriver/1.0"]},
        "network": {"type": "none"},
        "propagatedMount": "/data",
        "env": [{"name": "VOLUME_ROOT", "settable": ["value"], "value": "/data"}]
    })
}

/// [`valid_config`] changed by `f`, as config.json text.
fn config_with(f: impl FnOnce(&mut Value)) -> String {
    let mut c = valid_config();
    f(&mut c);
    serde_json::to_string_pretty(&c).expect("serialise config")
}

fn wasm_bytes() -> Vec<u8> {
    let path = harness::example_volume_wasm();
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A tar stream built entry by entry from raw header bytes (GNU headers, like the docker CLI's).
struct TarBuf(tar::Builder<Vec<u8>>);

impl TarBuf {
    fn new() -> TarBuf {
        TarBuf(tar::Builder::new(Vec::new()))
    }

    /// `config.json`, `rootfs/`, `rootfs/plugin.wasm`, `rootfs/data/`: a complete, valid bundle
    /// once finished.
    fn bundle(config: &str) -> TarBuf {
        let mut t = TarBuf::new();
        t.file("config.json", config.as_bytes(), 0o644).rootfs();
        t
    }

    /// `rootfs/`, `rootfs/plugin.wasm` and `rootfs/data/`.
    fn rootfs(&mut self) -> &mut TarBuf {
        self.dir("rootfs/")
            .file("rootfs/plugin.wasm", &wasm_bytes(), 0o644)
            .dir("rootfs/data/")
    }

    /// A header with `name` and `link` written verbatim (no normalisation, no checks).
    fn header(kind: EntryType, name: &str, link: &str, size: u64, mode: u32) -> Header {
        let mut h = Header::new_gnu();
        {
            let old = h.as_old_mut();
            assert!(
                name.len() <= old.name.len() && link.len() <= old.linkname.len(),
                "name {name:?} or link {link:?} is too long for a plain header"
            );
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h.set_cksum();
        h
    }

    fn raw(&mut self, h: &Header, data: &[u8]) -> &mut TarBuf {
        self.0.append(h, data).expect("append to an in-memory tar");
        self
    }

    fn entry(
        &mut self,
        kind: EntryType,
        name: &str,
        link: &str,
        data: &[u8],
        mode: u32,
    ) -> &mut TarBuf {
        let h = TarBuf::header(kind, name, link, data.len() as u64, mode);
        self.raw(&h, data)
    }

    fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut TarBuf {
        self.entry(EntryType::Regular, name, "", data, mode)
    }

    fn dir(&mut self, name: &str) -> &mut TarBuf {
        self.entry(EntryType::Directory, name, "", b"", 0o755)
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut TarBuf {
        self.entry(EntryType::Symlink, name, target, b"", 0o777)
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut TarBuf {
        self.entry(EntryType::Link, name, target, b"", 0o644)
    }

    fn device(&mut self, kind: EntryType, name: &str, major: u32, minor: u32) -> &mut TarBuf {
        let mut h = TarBuf::header(kind, name, "", 0, 0o666);
        h.set_device_major(major).expect("device major");
        h.set_device_minor(minor).expect("device minor");
        h.set_cksum();
        self.raw(&h, b"")
    }

    /// Bytes written so far, without the end-of-archive marker.
    fn unterminated(&self) -> Vec<u8> {
        self.0.get_ref().clone()
    }

    /// The archive with its end-of-archive marker.
    fn finish(self) -> Vec<u8> {
        self.0.into_inner().expect("finish an in-memory tar")
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

// ---------------------------------------------------------------------------------------------
// The Engine API, raw

/// `POST /v1.41/plugins/create?name=NAME` with a tar body, as the docker CLI sends it. The body is
/// written on its own thread while the response is read, because plugd answers a refusal without
/// reading the rest of the body (a client that writes everything first would see EPIPE, not the
/// answer).
#[track_caller]
fn post_create(socket: &Path, name: &str, body: &[u8]) -> HttpResponse {
    let s =
        UnixStream::connect(socket).unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("read timeout");
    s.set_write_timeout(Some(Duration::from_secs(120)))
        .expect("write timeout");
    let head = format!(
        "POST /v1.41/plugins/create?name={name} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut w = s.try_clone().expect("dup socket");
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        // A refused body is not read to its end: EPIPE here is expected.
        let _ = w
            .write_all(head.as_bytes())
            .and_then(|()| w.write_all(&body));
    });
    let resp = read_response(&s);
    // Unblocks the writer if plugd answered without reading everything and kept the socket open.
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    resp.unwrap_or_else(|e| panic!("POST /plugins/create?name={name}: no HTTP response: {e}"))
}

fn read_response(s: &UnixStream) -> std::io::Result<HttpResponse> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if status == 204 || status == 304 {
        // no body
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// `{"message": ...}` of an error response.
#[track_caller]
fn message(r: &HttpResponse) -> String {
    match r.json().get("message").and_then(Value::as_str) {
        Some(m) => m.to_owned(),
        None => panic!("HTTP {} error body has no message: {}", r.status, r.text()),
    }
}

#[track_caller]
fn api_get(p: &Plugd, path: &str) -> HttpResponse {
    harness::http(p.socket(), "GET", path, None).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A create expected to succeed.
#[track_caller]
fn assert_created(p: &Plugd, name: &str, body: &[u8]) -> HttpResponse {
    let r = post_create(p.socket(), name, body);
    assert_eq!(
        r.status,
        204,
        "create of {name} should succeed, got {}: {}\n--- plugd log (tail) ---\n{}",
        r.status,
        r.text(),
        harness::tail(p.log_path(), 30)
    );
    r
}

/// `Config.rootfs.diff_ids` of a plugin, via the API.
#[track_caller]
fn diff_ids(p: &Plugd, name: &str) -> Value {
    let r = api_get(p, &format!("/v1.41/plugins/{name}/json"));
    assert_eq!(r.status, 200, "inspect {name}: {}", r.text());
    r.json()["Config"]["rootfs"]["diff_ids"].clone()
}

// ---------------------------------------------------------------------------------------------
// The store

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// What a refused create must not change.
#[derive(Debug, PartialEq, Eq)]
struct StoreView {
    /// `plugd ls -q --no-trunc`.
    ls: String,
    /// `GET /plugins` names.
    names: Vec<String>,
    /// `<data-root>/plugins`.
    dirs: Vec<String>,
}

#[track_caller]
fn store_view(env: &Env, p: &Plugd) -> StoreView {
    let ls = env.plugd_cli(p, ["ls", "-q", "--no-trunc"]);
    ls.assert_ok();
    let list = api_get(p, "/v1.41/plugins");
    assert_eq!(list.status, 200, "GET /plugins: {}", list.text());
    let mut names: Vec<String> = list
        .json()
        .as_array()
        .expect("GET /plugins is an array")
        .iter()
        .map(|p| p["Name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    StoreView {
        ls: ls.stdout.clone(),
        names,
        dirs: dir_names(&p.data_root().join("plugins")),
    }
}

/// The store is as `before`, nothing is staged, and `name` does not exist.
#[track_caller]
fn assert_no_trace(env: &Env, p: &Plugd, before: &StoreView, name: &str, what: &str) {
    let after = store_view(env, p);
    assert_eq!(&after, before, "{what}: the store changed");
    let tmp = dir_names(&p.data_root().join("tmp"));
    assert!(
        tmp.is_empty(),
        "{what}: staging left in {}: {tmp:?}",
        p.data_root().join("tmp").display()
    );
    let r = api_get(p, &format!("/v1.41/plugins/{name}/json"));
    assert_eq!(r.status, 404, "{what}: plugin {name} exists: {}", r.text());
}

// ---------------------------------------------------------------------------------------------
// Refusals

/// The message a refusal must carry.
enum Want {
    /// Exactly this.
    Exact(String),
    /// Starts with this (the rest comes from a parser and is not ours to pin).
    Prefix(String),
    /// Contains each of these.
    All(Vec<String>),
}

impl Want {
    fn matches(&self, got: &str) -> bool {
        match self {
            Want::Exact(w) => got == w,
            Want::Prefix(w) => got.starts_with(w.as_str()),
            Want::All(parts) => parts.iter().all(|w| got.contains(w.as_str())),
        }
    }
}

impl std::fmt::Display for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Want::Exact(w) => write!(f, "exactly {w:?}"),
            Want::Prefix(w) => write!(f, "a message starting with {w:?}"),
            Want::All(parts) => write!(f, "a message containing each of {parts:?}"),
        }
    }
}

fn exact(s: impl Into<String>) -> Want {
    Want::Exact(s.into())
}

/// POSTs `body` as plugin `name`: 400, the expected message, and no trace in the store.
#[track_caller]
fn assert_refused_over_api(env: &Env, p: &Plugd, name: &str, body: &[u8], want: &Want) {
    let before = store_view(env, p);
    let r = post_create(p.socket(), name, body);
    let got = if r.status == 204 {
        String::from("(accepted)")
    } else {
        message(&r)
    };
    assert!(
        r.status == 400 && want.matches(&got),
        "{name}: expected 400 and {want}\ngot {}: {got:?}",
        r.status
    );
    assert_eq!(
        r.header("Content-Type"),
        Some("application/json"),
        "{name}: error content type"
    );
    assert_no_trace(env, p, &before, name, &format!("{name} (API)"));
    println!("bad_input: {name}: API 400 {got}");
}

/// `plugd create NAME DIR`: exit 1, `Error response from daemon: <message>`, no trace.
#[track_caller]
fn assert_refused_by_cli(env: &Env, p: &Plugd, name: &str, dir: &Path, want: &Want) {
    let before = store_view(env, p);
    let out = env.plugd_cli_cmd(p, ["create", name]).arg(dir).run();
    out.assert_code(1);
    let got = out
        .stderr
        .strip_prefix("Error response from daemon: ")
        .and_then(|s| s.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{name}: stderr is not one daemon error line:\n{out}"));
    assert!(
        want.matches(got),
        "{name}: expected {want} from plugd create:\n{out}"
    );
    assert_eq!(
        out.stdout, "",
        "{name}: plugd create printed on stdout:\n{out}"
    );
    assert_no_trace(env, p, &before, name, &format!("{name} (plugd create)"));
}

/// A bundle directory of the example guest with this config.json text.
fn bundle_dir(env: &Env, name: &str, config: &str) -> PathBuf {
    env.bundle(name)
        .config_text(config)
        .copy("plugin.wasm", &harness::example_volume_wasm(), 0o644)
        .dir("data")
        .into_path()
}

/// One config rule per case: each is refused through the API and `plugd create` (and one also
/// through `docker plugin create`) with a message naming the field and quoting the value; the
/// top-level `capabilities` mistake is accepted with a warning on create and inspect.
#[test]
fn config_rules_refuse_with_field_and_value() {
    harness::isolated(|env| {
        let mut p = env.plugd(&[]);
        // A plugin already in the store, so "unchanged" is not just "empty".
        assert_created(&p, "base", &TarBuf::bundle(&config_with(|_| {})).finish());
        let base = api_get(&p, "/v1.41/plugins/base/json");
        assert_eq!(
            base.header("Plugd-Warning"),
            None,
            "a clean config has no warnings"
        );

        let known = "docker.volumedriver, docker.networkdriver, docker.ipamdriver, docker.authz, \
                     docker.logdriver, docker.metricscollector, docker.secretprovider, \
                     docker.csicontroller, docker.csinode, docker.graphdriver";
        let cases: Vec<(&str, String, Want)> = vec![
            (
                "type-unknown",
                config_with(|c| {
                    c["interface"]["types"] =
                        json!(["docker.volumedriver/1.0", "docker.storagedriver/1.0"])
                }),
                exact(format!(
                    "invalid config: Interface.Types[1]: \"docker.storagedriver/1.0\": unknown capability \"storagedriver\"; known: {known}"
                )),
            ),
            (
                "type-miscased",
                config_with(|c| c["interface"]["types"] = json!(["docker.VolumeDriver/1.0"])),
                exact(
                    "invalid config: Interface.Types[0]: \"docker.VolumeDriver/1.0\": types are case-sensitive and consumers only match lower case; did you mean \"docker.volumedriver/1.0\"?",
                ),
            ),
            (
                "socket-empty",
                config_with(|c| c["interface"]["socket"] = json!("")),
                exact(
                    "invalid config: Interface.Socket: got \"\"; name the socket file the plugin listens on, e.g. \"plugin.sock\"",
                ),
            ),
            (
                "socket-slash",
                config_with(|c| c["interface"]["socket"] = json!("run/volume.sock")),
                exact(
                    "invalid config: Interface.Socket: \"run/volume.sock\": must be a file name directly inside /run/docker/plugins, without `/`",
                ),
            ),
            (
                "protocol-scheme",
                config_with(|c| c["interface"]["protocolscheme"] = json!("grpc")),
                exact(
                    "invalid config: Interface.ProtocolScheme: \"grpc\": only \"moby.plugins.http/v1\" (or empty) is supported; dockerd would create no HTTP client for this plugin",
                ),
            ),
            (
                "entrypoint-empty",
                config_with(|c| c["entrypoint"] = json!([])),
                exact(
                    "invalid config: Entrypoint: got []; the plugin needs a command to run (for a wasm plugin, the component's path)",
                ),
            ),
            (
                "entrypoint-null",
                config_with(|c| c["entrypoint"] = Value::Null),
                exact(
                    "invalid config: Entrypoint: got null; the plugin needs a command to run (for a wasm plugin, the component's path)",
                ),
            ),
            (
                "entrypoint-empty-arg",
                config_with(|c| c["entrypoint"] = json!(["/plugin.wasm", ""])),
                exact("invalid config: Entrypoint[1]: got \"\"; entries must not be empty"),
            ),
            (
                "mount-relative",
                config_with(|c| {
                    c["mounts"] = json!([{"name": "state", "source": "/var/lib/x",
                        "destination": "state", "type": "bind", "options": ["rbind"]}])
                }),
                exact("invalid config: Mounts[0].Destination: \"state\": must be an absolute path"),
            ),
            (
                "mount-dotdot",
                config_with(|c| {
                    c["mounts"] = json!([{"name": "state", "source": "/var/lib/x",
                        "destination": "/data/../etc", "type": "bind", "options": ["rbind"]}])
                }),
                exact(
                    "invalid config: Mounts[0].Destination: \"/data/../etc\": must not contain a `..` component",
                ),
            ),
            (
                "mount-no-source",
                config_with(|c| {
                    c["mounts"] = json!([
                        {"name": "ok", "source": "/var/lib/x", "destination": "/ok",
                         "type": "bind", "options": ["rbind"]},
                        {"name": "state", "destination": "/state", "type": "bind",
                         "options": ["rbind"]}
                    ])
                }),
                exact(
                    "invalid config: Mounts[1].Source: null: the mount at \"/state\" has no source and `source` is not settable",
                ),
            ),
            (
                "mount-null-settable",
                config_with(|c| {
                    c["mounts"] = json!([{"name": "state", "destination": "/state",
                        "type": "bind", "options": ["rbind"], "settable": ["source"]}])
                }),
                exact(
                    "invalid config: Mounts[0].Source: null: the mount at \"/state\" has no source, and `docker plugin set` cannot fill a null one (\"plugin config has no mount source\"); declare \"source\": \"\" to leave it to the user",
                ),
            ),
            (
                "device-no-path",
                config_with(|c| c["linux"] = json!({"devices": [{"name": "gpu"}]})),
                exact(
                    "invalid config: Linux.Devices[0].Path: null: device \"gpu\" has no path and `path` is not settable (dockerd would panic at enable)",
                ),
            ),
            (
                "device-empty-path",
                config_with(|c| c["linux"] = json!({"devices": [{"name": "gpu", "path": ""}]})),
                exact(
                    "invalid config: Linux.Devices[0].Path: got \"\": device \"gpu\" has no path and `path` is not settable",
                ),
            ),
            (
                "propagated-relative",
                config_with(|c| c["propagatedMount"] = json!("data")),
                exact("invalid config: PropagatedMount: \"data\": must be an absolute path"),
            ),
            (
                "propagated-dotdot",
                config_with(|c| c["propagatedMount"] = json!("/data/../..")),
                exact(
                    "invalid config: PropagatedMount: \"/data/../..\": must not contain a `..` component",
                ),
            ),
            (
                "network-unknown",
                config_with(|c| c["network"]["type"] = json!("overlay")),
                exact(
                    "invalid config: Network.Type: \"overlay\": must be one of \"host\", \"none\", \"bridge\", \"null\" or \"\"",
                ),
            ),
            (
                "network-miscased",
                config_with(|c| c["network"]["type"] = json!("Host")),
                exact(
                    "invalid config: Network.Type: \"Host\": must be one of \"host\", \"none\", \"bridge\", \"null\" or \"\"; did you mean \"host\"?",
                ),
            ),
            (
                "trailing-json",
                format!("{} {{}}", config_with(|_| {})),
                Want::Prefix(
                    "invalid config json: trailing data after the JSON value (trailing characters"
                        .into(),
                ),
            ),
            (
                "cap-lowercase",
                config_with(|c| c["linux"] = json!({"capabilities": ["CAP_CHOWN", "sys_admin"]})),
                exact(
                    "invalid config: Linux.Capabilities[1]: \"sys_admin\" is not the canonical spelling (runc would silently drop it); did you mean \"CAP_SYS_ADMIN\"?",
                ),
            ),
            (
                "cap-dashed",
                config_with(|c| c["linux"] = json!({"capabilities": ["cap-net-admin"]})),
                exact(
                    "invalid config: Linux.Capabilities[0]: \"cap-net-admin\" is not the canonical spelling (runc would silently drop it); did you mean \"CAP_NET_ADMIN\"?",
                ),
            ),
            (
                "cap-unknown",
                config_with(|c| c["linux"] = json!({"capabilities": ["CAP_TIME_TRAVEL"]})),
                exact(
                    "invalid config: Linux.Capabilities[0]: \"CAP_TIME_TRAVEL\" is not a Linux capability (CAP_CHOWN … CAP_CHECKPOINT_RESTORE)",
                ),
            ),
        ];

        for (name, config, want) in &cases {
            let body = TarBuf::bundle(config).finish();
            assert_refused_over_api(env, &p, name, &body, want);
            let dir = bundle_dir(env, name, config);
            assert_refused_by_cli(env, &p, name, &dir, want);
        }

        // Both docker CLIs show the same message to a `docker plugin create` user.
        let (name, _, want) = cases
            .iter()
            .find(|(n, _, _)| *n == "type-miscased")
            .expect("the type-miscased case");
        let Want::Exact(msg) = want else {
            unreachable!("type-miscased has an exact message")
        };
        let dir = env.path("bundles").join(name);
        for cli in Cli::ALL {
            let before = store_view(env, &p);
            let out = env
                .docker_cmd(cli, &p, ["plugin", "create", name])
                .arg(&dir)
                .run();
            out.assert_failed();
            out.assert_stderr_contains(&format!("Error response from daemon: {msg}"));
            assert_no_trace(
                env,
                &p,
                &before,
                name,
                &format!("{cli:?} plugin create {name}"),
            );
        }

        // Top-level `capabilities` (the docs' sshfs example): accepted, with a warning on create
        // and on every inspect, and the capability is not granted.
        let warning = "top-level `capabilities` is ignored; did you mean `linux.capabilities`?";
        let config = config_with(|c| c["capabilities"] = json!(["CAP_SYS_ADMIN"]));
        let dir = bundle_dir(env, "caps-top-level", &config);
        let out = env
            .plugd_cli_cmd(&p, ["create", "caps-top-level"])
            .arg(&dir)
            .run();
        out.assert_ok();
        assert_eq!(out.stdout, "caps-top-level\n", "{out}");
        assert_eq!(out.stderr, format!("WARNING: {warning}\n"), "{out}");
        let out = env.plugd_cli(&p, ["inspect", "caps-top-level"]);
        out.assert_ok();
        assert_eq!(out.stderr, format!("WARNING: {warning}\n"), "{out}");
        let inspected = out.json();
        assert_eq!(
            inspected[0]["Config"]["Linux"]["Capabilities"],
            Value::Null,
            "a top-level `capabilities` must not grant anything: {inspected}"
        );
        let r = api_get(&p, "/v1.41/plugins/caps-top-level/json");
        assert_eq!(r.header("Plugd-Warning"), Some(warning));
        // Over the API: the warning travels in a header of the create response.
        let r = assert_created(&p, "caps-api", &TarBuf::bundle(&config).finish());
        assert_eq!(r.header("Plugd-Warning"), Some(warning));
        // No warning for a clean plugin.
        let out = env.plugd_cli(&p, ["inspect", "base"]);
        out.assert_ok();
        assert_eq!(out.stderr, "", "{out}");
        assert_eq!(
            store_view(env, &p).names,
            ["base:latest", "caps-api:latest", "caps-top-level:latest"]
        );
        p.assert_running();
    })
}

/// Every tar-level refusal names the entry; nothing is written outside the staging dir (checked
/// at the places a naive unpacker would have written to); the store is unchanged after each. A
/// gzip body is accepted (dockerd refuses it) and the plugin works.
#[test]
fn tar_refusals_name_the_entry() {
    harness::isolated(|env| {
        let mut p = env.plugd(&[]);
        let config = config_with(|_| {});
        assert_created(&p, "base", &TarBuf::bundle(&config).finish());

        let dir = env.dir().display().to_string();
        // Targets a bundle would write to if it escaped: they must stay as they are.
        let outside = env.path("outside");
        std::fs::create_dir(&outside).expect("mkdir outside");
        let secret = env.path("secret");
        std::fs::write(&secret, "secret\n").expect("write secret");
        let ups = "../".repeat(12);

        let mut cases: Vec<(&str, Vec<u8>, Want)> = Vec::new();
        let mut add =
            |name: &'static str, body: Vec<u8>, want: Want| cases.push((name, body, want));

        add(
            "empty-body",
            Vec::new(),
            exact("empty body: expected a tar stream"),
        );
        {
            let mut t = TarBuf::new();
            t.file("config.json", config.as_bytes(), 0o644).file(
                "plugin.wasm",
                &wasm_bytes(),
                0o644,
            );
            add(
                "no-rootfs",
                t.finish(),
                exact("no rootfs found: the bundle has no rootfs/ entries"),
            );
        }
        {
            let mut t = TarBuf::new();
            t.rootfs();
            add(
                "no-config",
                t.finish(),
                exact("config not found: the bundle has no config.json at its root"),
            );
        }
        {
            // `config.json` under a subdirectory (tarring the bundle's parent) does not count.
            let mut t = TarBuf::new();
            t.file("bundle/config.json", config.as_bytes(), 0o644)
                .rootfs();
            add(
                "config-in-subdir",
                t.finish(),
                exact("config not found: the bundle has no config.json at its root"),
            );
        }
        {
            let mut t = TarBuf::bundle(&config);
            t.file("../dotdot-escape", b"x", 0o644);
            add(
                "dotdot-name",
                t.finish(),
                exact("entry `../dotdot-escape`: `..` components are not allowed in names"),
            );
        }
        let deep = format!("rootfs/{ups}{}/dotdot-deep", dir.trim_start_matches('/'));
        {
            let mut t = TarBuf::bundle(&config);
            t.file(&deep, b"x", 0o644);
            add(
                "dotdot-deep",
                t.finish(),
                exact(format!(
                    "entry `{deep}`: `..` components are not allowed in names"
                )),
            );
        }
        let abs = format!("{dir}/abs-escape");
        {
            let mut t = TarBuf::bundle(&config);
            t.file(&abs, b"x", 0o644);
            add(
                "absolute-name",
                t.finish(),
                exact(format!("entry `{abs}`: absolute names are not allowed")),
            );
        }
        {
            let mut t = TarBuf::bundle(&config);
            t.dir("/etc/");
            add(
                "absolute-dir",
                t.finish(),
                exact("entry `/etc/`: absolute names are not allowed"),
            );
        }
        let secret_s = secret.display().to_string();
        {
            let mut t = TarBuf::bundle(&config);
            t.hardlink("rootfs/secret", &secret_s);
            add(
                "hardlink-absolute",
                t.finish(),
                exact(format!(
                    "hardlink `rootfs/secret`: target `{secret_s}` is outside rootfs/"
                )),
            );
        }
        {
            let mut t = TarBuf::bundle(&config);
            t.hardlink("rootfs/config", "config.json");
            add(
                "hardlink-config",
                t.finish(),
                exact("hardlink `rootfs/config`: target `config.json` is outside rootfs/"),
            );
        }
        {
            let mut t = TarBuf::bundle(&config);
            t.hardlink("rootfs/up", "rootfs/../config.json");
            add(
                "hardlink-dotdot",
                t.finish(),
                exact("hardlink `rootfs/up`: target `rootfs/../config.json` is outside rootfs/"),
            );
        }
        let outside_s = outside.display().to_string();
        {
            let mut t = TarBuf::bundle(&config);
            t.symlink("rootfs/a", &outside_s).file(
                "rootfs/a/passwd",
                b"root::0:0::/:/bin/sh\n",
                0o644,
            );
            add(
                "through-symlink",
                t.finish(),
                exact(
                    "entry `rootfs/a/passwd`: `rootfs/a` is a symlink; refusing to write through it",
                ),
            );
        }
        {
            let rel = format!("{ups}{}", outside_s.trim_start_matches('/'));
            let mut t = TarBuf::bundle(&config);
            t.symlink("rootfs/b", &rel).dir("rootfs/b/sub/");
            add(
                "through-symlink-dir",
                t.finish(),
                exact(
                    "entry `rootfs/b/sub/`: `rootfs/b` is a symlink; refusing to write through it",
                ),
            );
        }
        {
            let mut t = TarBuf::bundle(&config);
            t.symlink("rootfs/etc", &outside_s)
                .hardlink("rootfs/x", "rootfs/etc/passwd");
            add(
                "hardlink-through-symlink",
                t.finish(),
                exact(
                    "hardlink `rootfs/x`: target `rootfs/etc/passwd` is not a regular file unpacked earlier in the archive",
                ),
            );
        }
        {
            let mut t = TarBuf::bundle(&config);
            t.dir("rootfs/dev/")
                .device(EntryType::Char, "rootfs/dev/null", 1, 3);
            add(
                "char-device",
                t.finish(),
                exact(
                    "entry `rootfs/dev/null`: character device entries are not allowed in a plugin rootfs",
                ),
            );
        }
        {
            let mut t = TarBuf::bundle(&config);
            t.dir("rootfs/dev/")
                .device(EntryType::Block, "rootfs/dev/sda", 8, 0);
            add(
                "block-device",
                t.finish(),
                exact(
                    "entry `rootfs/dev/sda`: block device entries are not allowed in a plugin rootfs",
                ),
            );
        }
        {
            let mut t = TarBuf::bundle(&config);
            t.device(EntryType::Fifo, "rootfs/data/fifo", 0, 0);
            add(
                "fifo",
                t.finish(),
                exact("entry `rootfs/data/fifo`: fifo entries are not allowed in a plugin rootfs"),
            );
        }
        {
            let other = config_with(|c| c["description"] = json!("the second one"));
            let mut t = TarBuf::bundle(&config);
            t.file("./config.json", other.as_bytes(), 0o644);
            add(
                "duplicate-config",
                t.finish(),
                exact(
                    "duplicate config.json: entry `./config.json` follows an earlier config.json",
                ),
            );
        }
        {
            // Cut inside the data of rootfs/plugin.wasm.
            let wasm_len = wasm_bytes().len();
            let mut t = TarBuf::new();
            t.file("config.json", config.as_bytes(), 0o644)
                .dir("rootfs/");
            let data_at = t.unterminated().len() + 512;
            t.file("rootfs/plugin.wasm", &wasm_bytes(), 0o644);
            let mut body = t.unterminated();
            body.truncate(data_at + 1000);
            add(
                "truncated-in-entry",
                body,
                exact(format!(
                    "truncated archive: entry `rootfs/plugin.wasm` ends after 1000 of its {wasm_len} bytes"
                )),
            );
        }
        {
            // Whole entries, but no end-of-archive marker.
            let t = TarBuf::bundle(&config);
            add(
                "truncated-no-eof-marker",
                t.unterminated(),
                exact(
                    "truncated archive: the stream ends after entry `rootfs/data/` without an end-of-archive marker",
                ),
            );
        }

        {
            let mut t = TarBuf::new();
            t.file("config.json", &vec![b' '; (1 << 20) + 1], 0o644)
                .rootfs();
            add(
                "config-too-large",
                t.finish(),
                exact(
                    "config.json entry `config.json` is 1048577 bytes, larger than the limit of 1048576",
                ),
            );
        }
        {
            let mut t = TarBuf::new();
            t.symlink("config.json", "rootfs/etc/config.json").rootfs();
            add(
                "config-symlink",
                t.finish(),
                exact("config.json entry `config.json` is a symlink, not a regular file"),
            );
        }
        {
            let mut t = TarBuf::new();
            t.file("config.json", config.as_bytes(), 0o644)
                .file("rootfs", b"not a dir", 0o644);
            add(
                "rootfs-file",
                t.finish(),
                exact("entry `rootfs`: rootfs must be a directory, not a regular file"),
            );
        }
        add(
            "not-a-tar",
            b"this is not a tar stream, just text that goes on for a while. ".repeat(20),
            Want::Prefix("cannot read the tar stream at the start of the stream: ".into()),
        );
        {
            let mut gz = gzip(&TarBuf::bundle(&config).finish());
            let half = gz.len() / 2;
            gz.truncate(half);
            add(
                "gzip-truncated",
                gz,
                Want::All(vec![
                    "cannot read the tar stream in entry `rootfs/".into(),
                    ": incomplete deflate stream".into(),
                ]),
            );
        }
        {
            let mut gz = gzip(&TarBuf::bundle(&config).finish());
            let n = gz.len();
            gz[n - 6] ^= 0xff; // the CRC32 in the gzip trailer
            add(
                "gzip-bad-crc",
                gz,
                exact(
                    "cannot read the tar stream after the end-of-archive marker: corrupt gzip stream does not have a matching checksum",
                ),
            );
        }

        for (name, body, want) in &cases {
            assert_refused_over_api(env, &p, name, body, want);
        }

        // Nothing escaped.
        assert_eq!(
            dir_names(&outside),
            Vec::<String>::new(),
            "something was written through a symlink into {}",
            outside.display()
        );
        assert_eq!(
            std::fs::metadata(&secret).expect("secret").nlink(),
            1,
            "{} gained a hard link",
            secret.display()
        );
        assert_eq!(
            std::fs::read_to_string(&secret).expect("secret"),
            "secret\n"
        );
        for escaped in [
            PathBuf::from(&abs),
            env.path("dotdot-deep"),
            p.data_root().join("tmp/dotdot-escape"),
            p.data_root().join("dotdot-escape"),
        ] {
            assert!(
                !escaped.exists(),
                "{} exists: a hostile name escaped",
                escaped.display()
            );
        }
        p.assert_running();

        // A gzip body is accepted: dockerd 20.10 refuses it (`docker plugin create --compress`
        // fails against dockerd), plugd reads it and stores the same layer digest as for the
        // uncompressed stream.
        let plain = TarBuf::bundle(&config).finish();
        assert_created(&p, "plain", &plain);
        assert_created(&p, "gz", &gzip(&plain));
        let (plain_ids, gz_ids) = (diff_ids(&p, "plain"), diff_ids(&p, "gz"));
        assert!(
            plain_ids[0]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:")),
            "diff_ids: {plain_ids}"
        );
        assert_eq!(
            gz_ids, plain_ids,
            "gzip and plain uploads of one tar differ"
        );
        // The docker CLI's `--compress` against plugd.
        let dir = bundle_dir(env, "gzcli", &config);
        env.docker_cmd(
            Cli::Docker28,
            &p,
            ["plugin", "create", "--compress", "gzcli"],
        )
        .arg(&dir)
        .run()
        .assert_ok();
        // And the gzip-created plugin works: enable, then talk to its socket.
        env.plugd_cli(&p, ["enable", "gz"]).assert_ok();
        let sock = Path::new(harness::PLUGIN_SOCKET_DIR).join("gz.sock");
        let r = harness::http(&sock, "POST", "/Plugin.Activate", Some(b"{}")).unwrap_or_else(|e| {
            panic!(
                "Plugin.Activate on {}: {e}\n--- plugd log (tail) ---\n{}",
                sock.display(),
                harness::tail(p.log_path(), 30)
            )
        });
        assert_eq!(r.status, 200, "Plugin.Activate: {}", r.text());
        assert_eq!(r.json(), json!({"Implements": ["VolumeDriver"]}));
        let r = harness::http(
            &sock,
            "POST",
            "/VolumeDriver.Create",
            Some(br#"{"Name":"v1","Opts":{}}"#),
        )
        .expect("VolumeDriver.Create");
        assert_eq!(r.status, 200, "VolumeDriver.Create: {}", r.text());
        let r = harness::http(&sock, "POST", "/VolumeDriver.List", Some(b"{}"))
            .expect("VolumeDriver.List");
        assert_eq!(r.status, 200, "VolumeDriver.List: {}", r.text());
        let list = r.json();
        let names: Vec<&str> = list["Volumes"]
            .as_array()
            .map(|v| v.iter().filter_map(|v| v["Name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(names, ["v1"], "VolumeDriver.List: {}", r.text());
        env.plugd_cli(&p, ["disable", "gz"]).assert_ok();
        assert_eq!(
            store_view(env, &p).names,
            ["base:latest", "gz:latest", "gzcli:latest", "plain:latest"]
        );
        p.assert_running();
    })
}

/// The body cap, before and after gunzip. plugd's default cap is 2 GiB; this needs a daemon flag
/// to lower it (`--max-bundle-size`), and fails at plugd's start until that flag exists.
#[test]
fn oversize_body_is_refused() {
    harness::isolated(|env| {
        let mut p = env.plugd(&["--max-bundle-size", "1MiB"]);
        let config = config_with(|_| {});
        assert_created(&p, "base", &TarBuf::bundle(&config).finish());

        let mut t = TarBuf::bundle(&config);
        t.file("rootfs/data/big", &vec![0u8; 2 << 20], 0o644);
        let big = t.finish();
        assert_refused_over_api(
            env,
            &p,
            "oversize",
            &big,
            &exact("oversize body: the request body exceeds the limit of 1048576 bytes"),
        );
        // A gzip bomb: a few KiB on the wire, over the cap once decompressed.
        let bomb = gzip(&big);
        assert!(
            bomb.len() < 1 << 20,
            "the gzip bomb is {} bytes",
            bomb.len()
        );
        assert_refused_over_api(
            env,
            &p,
            "gzip-bomb",
            &bomb,
            &exact("oversize body: the decompressed tar stream exceeds the limit of 1048576 bytes"),
        );
        // Under the cap is fine.
        let mut t = TarBuf::bundle(&config);
        t.file("rootfs/data/small", &vec![0u8; 512 << 10], 0o644);
        let small = t.finish();
        assert!(small.len() < 1 << 20);
        assert_created(&p, "undersize", &small);
        p.assert_running();
    })
}

/// Starts a create whose body never completes: the headers announce a tar with a 64 MiB file,
/// and only the first MiB of that file is sent. Returns the open connection.
fn start_stalled_create(p: &Plugd, name: &str, config: &str) -> UnixStream {
    const BIG: u64 = 64 << 20;
    let t = TarBuf::bundle(config);
    let mut prefix = t.unterminated();
    let h = TarBuf::header(EntryType::Regular, "rootfs/data/big", "", BIG, 0o644);
    prefix.extend_from_slice(h.as_bytes());
    let total = prefix.len() as u64 + BIG + 1024;
    let mut s = UnixStream::connect(p.socket())
        .unwrap_or_else(|e| panic!("connect {}: {e}", p.socket().display()));
    s.set_write_timeout(Some(Duration::from_secs(60)))
        .expect("write timeout");
    let head = format!(
        "POST /v1.41/plugins/create?name={name} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-tar\r\nContent-Length: {total}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).expect("send headers");
    s.write_all(&prefix).expect("send the start of the tar");
    s.write_all(&vec![0u8; 1 << 20])
        .expect("send the first MiB of rootfs/data/big");
    s
}

/// Waits until plugd is writing `rootfs/data/big` in its staging dir; returns that file.
#[track_caller]
fn wait_for_staged_file(p: &Plugd) -> PathBuf {
    let tmp = p.data_root().join("tmp");
    let mut found = None;
    wait_for(
        "plugd to write rootfs/data/big in <data-root>/tmp",
        Duration::from_secs(60),
        || {
            found = std::fs::read_dir(&tmp)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.path().join("rootfs/data/big"))
                .find(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0));
            found.is_some()
        },
    );
    found.expect("found")
}

/// A create interrupted by the client hanging up, by a SIGTERM and by a kill -9 of plugd leaves
/// nothing: the listing is unchanged, `<data-root>/tmp` is empty, no plugin dir appears, and a
/// normal create of the same names then succeeds.
#[test]
fn interrupted_create_leaves_no_trace() {
    harness::isolated(|env| {
        let mut p = env.plugd(&[]);
        let config = config_with(|_| {});
        let full = TarBuf::bundle(&config).finish();
        assert_created(&p, "keep", &full);
        let before = store_view(env, &p);

        // 1. The client hangs up in the middle of the body.
        let s = start_stalled_create(&p, "hangup", &config);
        let staged = wait_for_staged_file(&p);
        println!("bad_input: hangup: staged {}", staged.display());
        s.shutdown(std::net::Shutdown::Both).expect("shutdown");
        drop(s);
        let tmp = p.data_root().join("tmp");
        wait_for(
            "plugd to remove the staging dir of the abandoned create",
            Duration::from_secs(30),
            || dir_names(&tmp).is_empty(),
        );
        assert_no_trace(env, &p, &before, "hangup", "client hung up mid-create");
        p.assert_running();

        // 2. plugd is stopped (SIGTERM) in the middle of the body: it must not wait for the
        //    stalled client (the harness would SIGKILL it after 15 s), and leaves nothing.
        let s = start_stalled_create(&p, "sigterm", &config);
        let staged = wait_for_staged_file(&p);
        println!("bad_input: sigterm: staged {}", staged.display());
        let started = std::time::Instant::now();
        p.stop();
        let took = started.elapsed();
        drop(s);
        assert!(
            took < Duration::from_secs(10),
            "SIGTERM during a stalled create took {took:?} to stop plugd"
        );
        p.start();
        assert_no_trace(
            env,
            &p,
            &before,
            "sigterm",
            "after SIGTERM mid-create and restart",
        );

        // 3. plugd is killed (SIGKILL) in the middle of the body, then restarted.
        let s = start_stalled_create(&p, "crash", &config);
        let staged = wait_for_staged_file(&p);
        println!("bad_input: crash: staged {}", staged.display());
        p.kill();
        drop(s);
        assert!(
            staged.exists(),
            "the killed create left no debris; the kill did not hit it mid-create"
        );
        p.start();
        assert_no_trace(
            env,
            &p,
            &before,
            "crash",
            "after kill -9 mid-create and restart",
        );
        assert!(
            !staged.exists(),
            "{} survived the restart",
            staged.display()
        );
        let r = api_get(&p, "/v1.41/plugins/keep/json");
        assert_eq!(r.status, 200, "the earlier plugin is gone: {}", r.text());

        // The same names can be created normally now.
        assert_created(&p, "crash", &full);
        assert_created(&p, "hangup", &full);
        assert_eq!(
            store_view(env, &p).names,
            ["crash:latest", "hangup:latest", "keep:latest"]
        );
        assert!(dir_names(&tmp).is_empty(), "staging left after creates");
        p.assert_running();
    })
}

/// A stalled upload (a client that sends part of a body and then nothing) must not hold up the
/// other lifecycle verbs: a create of another plugin, enable, disable and rm each finish while it
/// hangs. (The daemon's supervision and shutdown take the same lock as the verbs.)
#[test]
fn stalled_create_does_not_block_other_verbs() {
    harness::isolated(|env| {
        let mut p = env.plugd(&[]);
        let config = config_with(|_| {});
        assert_created(&p, "keep", &TarBuf::bundle(&config).finish());
        let other = bundle_dir(env, "other", &config);

        let s = start_stalled_create(&p, "slow", &config);
        wait_for_staged_file(&p);
        let verbs: [(&str, Vec<&std::ffi::OsStr>); 4] = [
            (
                "create other",
                vec!["create".as_ref(), "other".as_ref(), other.as_os_str()],
            ),
            ("enable keep", vec!["enable".as_ref(), "keep".as_ref()]),
            ("disable keep", vec!["disable".as_ref(), "keep".as_ref()]),
            ("rm other", vec!["rm".as_ref(), "other".as_ref()]),
        ];
        for (what, args) in verbs {
            println!("bad_input: `plugd {what}` while a create is stalled");
            // On timeout `run` kills the CLI and fails the test naming the command.
            env.plugd_cli_cmd(&p, args)
                .timeout(Duration::from_secs(15))
                .run()
                .assert_ok();
        }
        s.shutdown(std::net::Shutdown::Both).expect("shutdown");
        drop(s);
        let tmp = p.data_root().join("tmp");
        wait_for(
            "plugd to remove the staging dir of the abandoned create",
            Duration::from_secs(30),
            || dir_names(&tmp).is_empty(),
        );
        assert_eq!(store_view(env, &p).names, ["keep:latest"]);
        p.assert_running();
    })
}
