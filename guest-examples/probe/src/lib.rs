//! plugd's wasm probe (`plugd check`): a component plugd instantiates **in place of** a wasm
//! plugin's entrypoint, with exactly that plugin's WASI grants and host imports. Asked once with a
//! `Plan` (plugd-core's `check::probe`), it tries each thing the plan names and reports one
//! `Attempt` per id. It judges nothing: plugd compares what it saw with the declaration.
//!
//! It uses only what any guest has: std (files, sockets and name lookup are WASI 0.2 underneath)
//! and the `docker:plugin` imports a plugin may call. Whatever fails, fails with the error the
//! guest saw, named as an errno (`EACCES`, `ENOTCAPABLE`...) where there is one.
//!
//! What WASI cannot even express is reported as failed with a detail saying so (`mknod`), never
//! left out: a missing attempt would read as "the probe did not look".

wit_bindgen::generate!({ world: "probe-plugin", path: "../../wit" });

mod errno;

use docker::plugin::types::ErrorCode;
use docker::plugin::{engine_metrics, host_links};
use exports::docker::plugin::probe::Guest;
use plugd_core::check::probe::{
    self as contract, Attempt, Plan, PlanMount, Report, UNDECLARED_DEVICES,
};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most bytes read from the canary, the loopback listener or a device.
const READ_CAP: u64 = 4096;

struct Probe;

export!(Probe);

impl Guest for Probe {
    fn check(plan: String) -> String {
        let attempts = match serde_json::from_str::<Plan>(&plan) {
            Ok(plan) => run(&plan),
            // An id plugd does not expect: it is ignored, and every expected one reads as missing.
            Err(e) => vec![Attempt::failed(
                "plan",
                format!("cannot decode the plan: {e}"),
            )],
        };
        let report = Report {
            probe: format!("wasm {}", env!("CARGO_PKG_VERSION")),
            attempts,
        };
        serde_json::to_string(&report).unwrap_or_else(|_| "{}".to_string())
    }
}

/// Every attempt, in the order made.
fn run(plan: &Plan) -> Vec<Attempt> {
    let mut out = vec![
        env_attempt(),
        args_attempt(),
        cwd_attempt(),
        loopback(plan),
        bind(),
        lookup(),
    ];
    let mut writable: Option<PathBuf> = None;
    for m in &plan.mounts {
        out.push(mount_read(m));
        let write = mount_write(m, &plan.nonce);
        if write.ok && m.directory && writable.is_none() {
            writable = Some(PathBuf::from(&m.destination));
        }
        out.push(write);
        out.push(mount_identity(m));
    }
    let canary = plan.host.canary.as_str();
    out.push(escape("escape:absolute", Path::new(canary), &plan.nonce));
    out.push(escape(
        "escape:dotdot",
        Path::new(&format!("/../../..{canary}")),
        &plan.nonce,
    ));
    if writable.is_none()
        && let Some(pm) = &plan.propagated_mount
    {
        let probe = Path::new(pm).join(format!(".plugd-check-{}.w", plan.nonce));
        if std::fs::File::create_new(&probe).is_ok() {
            let _ = std::fs::remove_file(&probe);
            writable = Some(PathBuf::from(pm));
        }
    }
    out.push(escape_symlink(writable.as_deref(), canary, &plan.nonce));
    for m in &plan.mounts {
        out.push(escape(
            &contract::escape_mount_id(&m.destination),
            &through(&m.destination, canary),
            &plan.nonce,
        ));
    }
    if let Some(pm) = &plan.propagated_mount {
        out.push(propagated_write(pm, &plan.nonce));
    }
    for d in &plan.devices {
        out.push(device(d));
    }
    for (kind, major, minor, what) in UNDECLARED_DEVICES {
        out.push(Attempt::failed(
            contract::mknod_id(kind, major, minor),
            format!("WASI has no mknod: no {what} node can be made"),
        ));
    }
    out.push(links_import(&plan.nonce));
    out.push(metrics_import());
    out
}

/// An I/O error as the errno the guest saw (wasi-libc's numbering), else its kind and text.
fn io_detail(e: &std::io::Error) -> String {
    match e.raw_os_error().and_then(errno::name) {
        Some(name) => name.to_string(),
        None => format!("{:?}: {e}", e.kind()),
    }
}

fn json_strings(v: Vec<String>) -> String {
    serde_json::to_string(&v).unwrap_or_default()
}

fn env_attempt() -> Attempt {
    let vars = std::env::vars_os()
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
        .collect();
    Attempt::ok("env", json_strings(vars))
}

fn args_attempt() -> Attempt {
    let args = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    Attempt::ok("args", json_strings(args))
}

fn cwd_attempt() -> Attempt {
    match std::env::current_dir() {
        Ok(dir) => Attempt::ok("cwd", dir.to_string_lossy()),
        Err(e) => Attempt::failed("cwd", io_detail(&e)),
    }
}

/// `ok` is "connected": reaching the host's loopback at all is the leak; the detail says
/// whether the listener's nonce came back.
fn loopback(plan: &Plan) -> Attempt {
    const ID: &str = "net:host-loopback";
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], plan.host.loopback_port));
    let stream = match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(s) => s,
        Err(e) => return Attempt::failed(ID, io_detail(&e)),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut got = Vec::new();
    let read = stream.take(READ_CAP).read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    let detail = if !plan.nonce.is_empty() && text.contains(&plan.nonce) {
        "connected; read the nonce".to_string()
    } else {
        match read {
            Ok(n) => format!("connected; read {n} bytes without the nonce"),
            Err(e) => format!("connected; read failed: {}", io_detail(&e)),
        }
    };
    Attempt::ok(ID, detail)
}

fn bind() -> Attempt {
    match std::net::TcpListener::bind(("127.0.0.1", 0)) {
        Ok(l) => Attempt::ok(
            "net:bind",
            l.local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|e| io_detail(&e)),
        ),
        Err(e) => Attempt::failed("net:bind", io_detail(&e)),
    }
}

fn lookup() -> Attempt {
    use std::net::ToSocketAddrs;
    match ("localhost", 0).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<String> = addrs.map(|a| a.ip().to_string()).collect();
            Attempt::ok("net:lookup", addrs.join(","))
        }
        Err(e) => Attempt::failed("net:lookup", io_detail(&e)),
    }
}

fn mount_read(m: &PlanMount) -> Attempt {
    let id = contract::mount_id(&m.destination, "read");
    let result = if m.directory {
        std::fs::read_dir(&m.destination).map(|entries| format!("{} entries", entries.count()))
    } else {
        std::fs::File::open(&m.destination).and_then(|f| {
            let mut buf = Vec::new();
            f.take(READ_CAP).read_to_end(&mut buf)?;
            Ok(format!("read {} bytes", buf.len()))
        })
    };
    match result {
        Ok(detail) => Attempt::ok(id, detail),
        Err(e) => Attempt::failed(id, io_detail(&e)),
    }
}

fn mount_write(m: &PlanMount, nonce: &str) -> Attempt {
    let id = contract::mount_id(&m.destination, "write");
    if !m.directory {
        // A file mount: opening it for writing is the access; nothing is written.
        return match std::fs::OpenOptions::new().write(true).open(&m.destination) {
            Ok(_) => Attempt::ok(id, "opened for writing"),
            Err(e) => Attempt::failed(id, io_detail(&e)),
        };
    }
    let path = Path::new(&m.destination).join(format!(".plugd-check-{nonce}"));
    match std::fs::File::create_new(&path) {
        Ok(_) => match std::fs::remove_file(&path) {
            Ok(()) => Attempt::ok(id, "created and removed"),
            Err(e) => Attempt::ok(id, format!("created; remove failed: {}", io_detail(&e))),
        },
        Err(e) => Attempt::failed(id, io_detail(&e)),
    }
}

fn mount_identity(m: &PlanMount) -> Attempt {
    let id = contract::mount_id(&m.destination, "identity");
    let result = if m.directory {
        std::fs::read_dir(&m.destination).and_then(|entries| {
            let names = entries
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(contract::listing(names))
        })
    } else {
        std::fs::metadata(&m.destination).map(|md| format!("file {}", md.len()))
    };
    match result {
        Ok(detail) => Attempt::ok(id, detail),
        Err(e) => Attempt::failed(id, io_detail(&e)),
    }
}

/// `<destination>/` + enough `../` to climb out of it from any depth + the canary's path.
fn through(destination: &str, canary: &str) -> PathBuf {
    let depth = Path::new(destination).components().count();
    let mut p = String::from(destination.trim_end_matches('/'));
    for _ in 0..depth + 4 {
        p.push_str("/..");
    }
    p.push('/');
    p.push_str(canary.trim_start_matches('/'));
    PathBuf::from(p)
}

/// Reads `path`; `ok` only when what it read holds the nonce (the sandbox leaked the canary).
fn escape(id: &str, path: &Path, nonce: &str) -> Attempt {
    let read = std::fs::File::open(path).and_then(|f| {
        let mut buf = Vec::new();
        f.take(READ_CAP).read_to_end(&mut buf)?;
        Ok(buf)
    });
    match read {
        Ok(buf) if !nonce.is_empty() && String::from_utf8_lossy(&buf).contains(nonce) => {
            Attempt::ok(id, "read the nonce")
        }
        Ok(buf) => Attempt::failed(id, format!("read {} bytes without the nonce", buf.len())),
        Err(e) => Attempt::failed(id, io_detail(&e)),
    }
}

fn escape_symlink(writable: Option<&Path>, canary: &str, nonce: &str) -> Attempt {
    const ID: &str = "escape:symlink";
    let Some(dir) = writable else {
        return Attempt::failed(ID, "no writable mount");
    };
    let link = dir.join(format!(".plugd-check-{nonce}.lnk"));
    // The absolute target first; where that is refused, a relative one climbing out of the
    // mount (what a guest would try next). `soft_link` is std's only stable symlink call on WASI.
    let relative = through(&dir.to_string_lossy(), canary);
    let relative = relative
        .strip_prefix(dir)
        .map(Path::to_path_buf)
        .unwrap_or(relative);
    let mut refused = Vec::new();
    for target in [PathBuf::from(canary), relative] {
        #[allow(deprecated)]
        match std::fs::soft_link(&target, &link) {
            Ok(()) => {
                let attempt = escape(ID, &link, nonce);
                let _ = std::fs::remove_file(&link);
                if attempt.ok {
                    return attempt;
                }
                refused.push(format!("{}: {}", target.display(), attempt.detail));
            }
            Err(e) => refused.push(format!(
                "symlink to {}: {}",
                target.display(),
                io_detail(&e)
            )),
        }
    }
    Attempt::failed(ID, refused.join("; "))
}

fn propagated_write(pm: &str, nonce: &str) -> Attempt {
    const ID: &str = "propagated:write";
    let path = Path::new(pm).join(contract::propagated_name(nonce));
    let written = std::fs::File::create_new(&path).and_then(|mut f| f.write_all(nonce.as_bytes()));
    match written {
        Ok(()) => Attempt::ok(ID, path.to_string_lossy()),
        Err(e) => Attempt::failed(ID, io_detail(&e)),
    }
}

fn device(path: &str) -> Attempt {
    let id = contract::device_id(path);
    match std::fs::File::open(path) {
        Ok(_) => Attempt::ok(id, "opened"),
        Err(e) => Attempt::failed(id, io_detail(&e)),
    }
}

fn links_import(nonce: &str) -> Attempt {
    const ID: &str = "import:host-links";
    // A name plugd never made: a granted import answers not-found and touches nothing.
    match host_links::delete_link(&format!("plugd-check-{nonce}")) {
        Err(e) if e.code == ErrorCode::NotFound => Attempt::ok(ID, "works"),
        Err(e) => Attempt::failed(ID, guest_error(&e)),
        Ok(()) => Attempt::ok(ID, "works (deleted a link plugd never made for the check)"),
    }
}

fn metrics_import() -> Attempt {
    const ID: &str = "import:engine-metrics";
    match engine_metrics::scrape() {
        Ok(text) => Attempt::ok(ID, format!("read {} bytes", text.len())),
        // Refused is the missing grant; any other error is the engine (down, slow), not plugd.
        Err(e) if matches!(e.code, ErrorCode::Unsupported) => Attempt::failed(ID, guest_error(&e)),
        Err(e) => Attempt::ok(ID, format!("granted, the read failed: {}", guest_error(&e))),
    }
}

/// An import's error as `<code>: <message>`, the code as WIT spells it.
fn guest_error(e: &docker::plugin::types::Error) -> String {
    let code = match e.code {
        ErrorCode::NotFound => "not-found",
        ErrorCode::InvalidArgument => "invalid-argument",
        ErrorCode::Conflict => "conflict",
        ErrorCode::Unsupported => "unsupported",
        ErrorCode::Internal => "internal",
    };
    format!("{code}: {}", e.message)
}
