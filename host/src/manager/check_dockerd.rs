//! The `dockerd` column of `plugd check`: the same bundle, enforced by a live dockerd.
//!
//! plugd creates a plugin there from the plugin's config (its effective settings written into the
//! config, `Entrypoint[0]` the native probe, [`probe::PROBE_SOCKET`] its socket, and
//! `docker.volumedriver/1.0` among its types) and rootfs (plus the probe at `/plugd-probe`),
//! enables it, and asks it through dockerd's own Engine API only: a volume created with the plan
//! in its options makes dockerd call the probe's `VolumeDriver.Create`, which runs the check, and
//! the volume's `Status` (dockerd's `VolumeDriver.Get`) carries the report back. plugd then looks
//! for what the probe left in dockerd's propagated-mount directory and removes everything it made
//! there: the volume, the plugin.
//!
//! Nothing but the user's `--docker-host` is dialled, and only a unix socket: dockerd is on this
//! host (the probe reaches plugd's canary and loopback listener, and plugd reads dockerd's
//! propagated-mount directory).

use super::Manager;
use super::check::{Loopback, Scratch, host_attempts, plan, read_report};
use http_body_util::{BodyExt as _, Full, Limited, StreamBody};
use hyper::Request;
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use plugd_core::check::probe;
use plugd_core::check::rows::Outcome;
use plugd_core::runtime::PluginSpec;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Deadline of one Engine API request to dockerd (enable and the check itself included).
const CALL_TIMEOUT: Duration = Duration::from_secs(90);
/// Cap on a dockerd reply plugd reads.
const MAX_REPLY: usize = 4 << 20;
/// Where the probe is in the bundle's rootfs.
const PROBE_PATH: &str = "plugd-probe";

/// Runs the dockerd column; every failure is the column's outcome, never the check's error.
pub(super) async fn probe(manager: &Manager, spec: &PluginSpec, docker_host: &str) -> Outcome {
    let Some(socket) = docker_host.strip_prefix("unix://").map(PathBuf::from) else {
        return Outcome::Unavailable(format!(
            "--docker-host {docker_host:?}: only unix:// sockets (a dockerd on this host)"
        ));
    };
    let Some(binary) = manager.probes.probe_binary.clone() else {
        return Outcome::Unavailable("plugd has no native probe binary".to_string());
    };
    let scratch = match Scratch::new(&manager.cfg.exec_root.join("check")) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let docker = Docker { socket };
    let name = format!("plugd-check-{}", scratch.nonce);
    let outcome = match run(
        &docker,
        spec,
        &scratch,
        &binary,
        &name,
        manager.cfg.max_bundle_size,
    )
    .await
    {
        Ok(o) => o,
        Err(e) => Outcome::Failed(format!("dockerd: {e}")),
    };
    // Best effort, each step on its own: what failed to be made fails to be removed, quietly.
    let _ = docker
        .call("DELETE", &format!("/volumes/{name}?force=1"), None)
        .await;
    let _ = docker
        .call("DELETE", &format!("/plugins/{name}:latest?force=1"), None)
        .await;
    super::check::remove_leak_dirs(spec, &scratch.nonce);
    scratch.remove();
    outcome
}

async fn run(
    docker: &Docker,
    spec: &PluginSpec,
    scratch: &Scratch,
    binary: &Path,
    name: &str,
    max_bundle: u64,
) -> Result<Outcome, String> {
    let config = bundle_config(spec)?;
    let tar = scratch.dir.join("bundle.tar");
    {
        // Off the async workers, into a file in the scratch dir (a rootfs may be gigabytes),
        // capped as a `create` upload is.
        let (rootfs, binary, tar, cap) = (
            spec.rootfs.clone(),
            binary.to_path_buf(),
            tar.clone(),
            max_bundle,
        );
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            let probe =
                std::fs::read(&binary).map_err(|e| format!("reading {}: {e}", binary.display()))?;
            let file = std::fs::File::create(&tar).map_err(|e| e.to_string())?;
            crate::bundle::write_bundle(
                &config,
                &rootfs,
                &[(PROBE_PATH, &probe, 0o755)],
                Capped {
                    inner: file,
                    left: cap,
                },
            )
            .map_err(|e| format!("packing the probe bundle: {e}"))
        })
        .await
        .map_err(|e| e.to_string())??;
    }
    docker
        .expect(
            "POST",
            &format!("/plugins/create?name={name}"),
            Some((Upload::File(tar), "application/x-tar")),
            &[204, 200],
        )
        .await
        .map_err(|e| format!("creating the probe plugin: {e}"))?;
    docker
        .expect(
            "POST",
            &format!("/plugins/{name}/enable?timeout=30"),
            None,
            &[200],
        )
        .await
        .map_err(|e| format!("enabling the probe plugin: {e}"))?;
    let info = docker
        .expect("GET", &format!("/plugins/{name}/json"), None, &[200])
        .await?;
    let id = serde_json::from_slice::<Value>(&info)
        .ok()
        .and_then(|v| v.get("Id").and_then(Value::as_str).map(str::to_string))
        .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("dockerd's inspect of the probe plugin has no Id")?;
    let root = docker.expect("GET", "/info", None, &[200]).await?;
    let root = serde_json::from_slice::<Value>(&root)
        .ok()
        .and_then(|v| {
            v.get("DockerRootDir")
                .and_then(Value::as_str)
                .map(PathBuf::from)
        })
        .ok_or("dockerd's /info has no DockerRootDir")?;
    let propagated = (!spec.config.propagated_mount.is_empty())
        .then(|| root.join("plugins").join(&id).join("propagated-mount"));
    let listener = Loopback::start(&scratch.nonce)
        .await
        .map_err(|e| format!("the host's loopback listener: {e}"))?;
    let mut probe_spec = spec.clone();
    probe_spec.propagated_mount = propagated.clone();
    let plan = plan(&probe_spec, &scratch.nonce, &scratch.canary, listener.port);
    let plan = serde_json::to_string(&plan).expect("a plan serializes");
    let create =
        json!({"Name": name, "Driver": format!("{name}:latest"), "DriverOpts": {"plan": plan}});
    docker
        .expect(
            "POST",
            "/volumes/create",
            Some((
                Upload::Bytes(create.to_string().into_bytes()),
                "application/json",
            )),
            &[201, 200],
        )
        .await
        .map_err(|e| format!("running the check (volume create): {e}"))?;
    let volume = docker
        .expect("GET", &format!("/volumes/{name}"), None, &[200])
        .await?;
    let report = serde_json::from_slice::<Value>(&volume)
        .ok()
        .and_then(|v| v.get("Status")?.get("plugd-check").cloned())
        .ok_or("the probe volume's Status has no plugd-check report")?;
    let mut report = read_report(&serde_json::to_vec(&report).unwrap_or_default())?;
    report
        .attempts
        .extend(host_attempts(&scratch.nonce, propagated.as_deref()));
    Ok(Outcome::Ran(report))
}

/// The probe bundle's config: the plugin's, with what `set` changed written in as values (so
/// dockerd gives the probe the same env, args, mount sources and device paths) and the probe as
/// entrypoint and socket.
fn bundle_config(spec: &PluginSpec) -> Result<Vec<u8>, String> {
    let effective = spec.effective();
    let mut config = spec.config.clone();
    let mut entry = config.entrypoint.clone().unwrap_or_default();
    if entry.is_empty() {
        entry.push(String::new());
    }
    entry[0] = format!("/{PROBE_PATH}");
    config.entrypoint = Some(entry);
    config.interface.socket = probe::PROBE_SOCKET.to_string();
    let types = config.interface.types.get_or_insert_with(Vec::new);
    if !types.iter().any(|t| t.starts_with("docker.volumedriver/")) {
        types.push("docker.volumedriver/1.0".to_string());
    }
    config.args.value = Some(spec.settings.args.clone());
    config.env = Some(
        spec.settings
            .env
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                plugd_core::config::Env {
                    name: k.to_string(),
                    value: Some(v.to_string()),
                    ..Default::default()
                }
            })
            .collect(),
    );
    config.mounts = Some(effective.mounts.clone());
    if !effective.devices.is_empty() || config.linux.devices.is_some() {
        config.linux.devices = Some(effective.devices.clone());
    }
    let mut value = serde_json::to_value(&config).map_err(|e| e.to_string())?;
    if let Some(obj) = value.as_object_mut() {
        obj.remove("DockerVersion");
    }
    serde_json::to_vec(&value).map_err(|e| e.to_string())
}

/// A client of one dockerd's Engine API on a unix socket: one connection per request.
struct Docker {
    socket: PathBuf,
}

impl Docker {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(Upload, &str)>,
    ) -> Result<(u16, bytes::Bytes), String> {
        let request = async {
            let stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .map_err(|e| format!("connecting to {}: {e}", self.socket.display()))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let mut req = Request::builder()
                .method(method)
                .uri(format!("/v1.41{path}"))
                .header("Host", "docker");
            let body = match body {
                Some((b, ct)) => {
                    req = req.header("Content-Type", ct);
                    b.into_body().await?
                }
                None => Full::new(bytes::Bytes::new())
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            };
            let req = req.body(body).map_err(|e| e.to_string())?;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_REPLY)
                .collect()
                .await
                .map_err(|e| format!("reading the reply: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(CALL_TIMEOUT, request)
            .await
            .map_err(|_| format!("{method} {path}: no answer within {CALL_TIMEOUT:?}"))?
    }

    /// [`Self::call`], any status but `ok` an error quoting dockerd's message.
    async fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<(Upload, &str)>,
        ok: &[u16],
    ) -> Result<bytes::Bytes, String> {
        let (status, body) = self.call(method, path, body).await?;
        if ok.contains(&status) {
            return Ok(body);
        }
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
        Err(format!("{method} {path}: {status}: {message}"))
    }
}

/// A request body for dockerd: bytes, or a file streamed in 1 MiB chunks.
enum Upload {
    Bytes(Vec<u8>),
    File(PathBuf),
}

type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, std::io::Error>;

impl Upload {
    async fn into_body(self) -> Result<Body, String> {
        match self {
            Upload::Bytes(b) => Ok(Full::new(bytes::Bytes::from(b))
                .map_err(|never| match never {})
                .boxed_unsync()),
            Upload::File(path) => {
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                use futures_util::StreamExt as _;
                let chunks = crate::fsutil::file_chunks(file).map(|c| c.map(Frame::data));
                Ok(StreamBody::new(chunks).boxed_unsync())
            }
        }
    }
}

/// A writer that fails once `left` bytes were written: the probe bundle is held to
/// `--max-bundle-size`, as a `create` upload is.
struct Capped<W> {
    inner: W,
    left: u64,
}

impl<W: std::io::Write> std::io::Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::other(
                "the plugin's rootfs is larger than --max-bundle-size",
            ));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
