//! The engine-facing socket of each enabled plugin, always plugd's own.
//!
//! dockerd finds it as a legacy plugin (`/run/docker/plugins/<name>.sock`, a real listening socket:
//! its directory scan skips symlinks) and speaks the plugin protocol to it. plugd answers
//! `Plugin.Activate` itself from `Interface.Types` (managed plugins never implement it), forwards every
//! other call to the runtime's [`Instance`], rewrites the paths in replies into host paths
//! ([`paths`]) and tracks which volumes are mounted, so disable and rm can refuse with "in use".
//!
//! Transport details that dockerd relies on: POST only; bodies may be empty or `{}`; only 200 is
//! success and errors are `{"Err"}`; keep-alive survives error replies; the `Host` header is never
//! looked at (dockerd 20.10 sends it empty); idle keep-alive connections are kept well past dockerd's
//! 30 s idle timeout. A task per connection (hyperlocal's server helper is one-at-a-time, no keep-alive).

pub mod paths;
pub mod registry;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use plugd_core::protocol::{MEDIA_TYPE, Manifest, implements_for_type, volume};
use plugd_core::{Instance, Reply};
use serde_json::Value;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use paths::PathMap;
pub use registry::SocketRegistry;

/// Largest request body accepted from the engine (volume calls are a few hundred bytes).
const MAX_REQUEST: usize = 16 << 20;
/// How long an idle keep-alive connection may wait for its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Volumes currently mounted through this plugin: `(volume name, mount id)` pairs from successful
/// `Mount` calls not yet matched by an `Unmount`, kept in a file in plugd's private state dir too,
/// so a restarted plugd still refuses to disable a plugin whose volumes containers hold.
///
/// Each mounted volume is also **pinned**: the directory the plugin named is opened once, inside
/// the plugin's filesystem, and bind-mounted onto `<state-dir>/mounts/<mount id>`, a directory only
/// plugd controls; that is the path dockerd gets. dockerd follows the path when it binds the volume
/// into a container, so returning the plugin's own path would let a plugin swap a component for a
/// symlink after plugd checked it and have dockerd bind any host directory.
#[derive(Debug, Default)]
pub struct Mounts {
    set: Mutex<BTreeSet<(String, String)>>,
    file: Option<PathBuf>,
    pins: Option<PathBuf>,
}

impl Mounts {
    /// A table persisted in `state_dir`, starting from what an earlier plugd left there.
    pub fn persisted(state_dir: &Path) -> Mounts {
        let file = state_dir.join("mounts.json");
        let set = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<BTreeSet<(String, String)>>(&b).ok())
            .unwrap_or_default();
        Mounts {
            set: Mutex::new(set),
            file: Some(file),
            pins: Some(state_dir.join("mounts")),
        }
    }

    fn change(&self, f: impl FnOnce(&mut BTreeSet<(String, String)>)) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut set);
        if let Some(file) = &self.file {
            let bytes = serde_json::to_vec(&*set).unwrap_or_default();
            if let Err(e) = crate::fsutil::write_atomic(file, &bytes, 0o600) {
                tracing::warn!(path = %file.display(), error = %e, "cannot record mounted volumes");
            }
        }
    }

    /// Where the pin of mount `id` lives; `None` for an id that is not a plain name.
    fn pin_path(&self, id: &str) -> Option<PathBuf> {
        let ok = !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        self.pins.as_ref().filter(|_| ok).map(|d| d.join(id))
    }

    /// Binds `dir` (an `O_PATH` fd of the volume's directory) onto the pin for `id`.
    fn pin(&self, id: &str, dir: &std::os::fd::OwnedFd) -> Result<PathBuf, String> {
        use std::os::fd::AsRawFd;
        let target = self
            .pin_path(id)
            .ok_or_else(|| format!("mount id {id:?} is not a plain name"))?;
        if let Some(parent) = target.parent() {
            crate::fsutil::create_dir_all(parent, 0o700).map_err(|e| e.to_string())?;
        }
        unpin(&target);
        std::fs::create_dir(&target).map_err(|e| format!("{}: {e}", target.display()))?;
        let source = format!("/proc/self/fd/{}", dir.as_raw_fd());
        nix::mount::mount(
            Some(source.as_str()),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| {
            let _ = std::fs::remove_dir(&target);
            format!("pinning the volume at {}: {e}", target.display())
        })?;
        Ok(target)
    }

    fn add(&self, name: String, id: String) {
        self.change(|s| {
            s.insert((name, id));
        });
    }

    fn remove(&self, name: &str, id: &str) {
        if let Some(target) = self.pin_path(id) {
            unpin(&target);
        }
        self.change(|s| {
            s.remove(&(name.to_string(), id.to_string()));
        });
    }

    /// Names of mounted volumes, deduplicated and sorted.
    pub fn in_use(&self) -> Vec<String> {
        let set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        let names: BTreeSet<_> = set.iter().map(|(n, _)| n.clone()).collect();
        names.into_iter().collect()
    }

    /// Forgets everything and removes every pin (the plugin was disabled or removed).
    pub fn clear(&self) {
        if let Some(dir) = &self.pins
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for e in entries.flatten() {
                unpin(&e.path());
            }
        }
        self.change(BTreeSet::clear);
    }
}

/// Lazily unmounts a pin (and what was mounted below it) and removes its directory.
fn unpin(target: &Path) {
    while nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
    let _ = std::fs::remove_dir(target);
}

/// What every connection of one plugin shares.
pub struct Gateway {
    name: String,
    instance: Arc<dyn Instance>,
    manifest: Bytes,
    paths: PathMap,
    mounts: Arc<Mounts>,
}

impl Gateway {
    /// `types` are the config's `Interface.Types`; the manifest is computed once here.
    pub fn new(
        name: &str,
        types: &[String],
        instance: Arc<dyn Instance>,
        paths: PathMap,
        mounts: Arc<Mounts>,
    ) -> Gateway {
        let mut implements: Vec<String> = Vec::new();
        for t in types {
            if let Some(i) = implements_for_type(t)
                && !implements.iter().any(|x| x == i)
            {
                implements.push(i.to_string());
            }
        }
        let manifest = serde_json::to_vec(&Manifest { implements }).unwrap_or_default();
        Gateway {
            name: name.to_string(),
            instance,
            manifest: manifest.into(),
            paths,
            mounts,
        }
    }

    /// Serves one request; never fails at the HTTP level.
    pub async fn serve(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::POST {
            return respond(Reply::err(
                405,
                &format!(
                    "method {} not allowed; the plugin protocol is POST only",
                    req.method()
                ),
            ));
        }
        let method = req.uri().path().trim_start_matches('/').to_string();
        if method == "Plugin.Activate" {
            return respond(Reply::ok(self.manifest.clone()));
        }
        let body = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return respond(Reply::err(400, &format!("reading request body: {e}"))),
        };
        let reply = self.instance.call(&method, body.clone()).await;
        respond(self.after_call(&method, &body, reply))
    }

    /// Rewrites paths in successful replies and keeps the mount table in step.
    fn after_call(&self, method: &str, request: &[u8], reply: Reply) -> Reply {
        if reply.status != 200 {
            return reply;
        }
        let Ok(mut value) = serde_json::from_slice::<Value>(&reply.body) else {
            return reply;
        };
        if value
            .as_object()
            .and_then(|o| get_ci(o, "Err"))
            .and_then(Value::as_str)
            .is_some_and(|e| !e.is_empty())
        {
            return reply;
        }
        let translated = match method {
            volume::MOUNT => self.pin(value.as_object_mut(), request),
            volume::PATH => self.translate(value.as_object_mut(), "Mountpoint"),
            volume::GET => match value.as_object_mut().and_then(|o| get_ci_mut(o, "Volume")) {
                Some(v) => self.translate(v.as_object_mut(), "Mountpoint"),
                None => Ok(false),
            },
            volume::LIST => {
                let mut changed = Ok(false);
                if let Some(Value::Array(vols)) =
                    value.as_object_mut().and_then(|o| get_ci_mut(o, "Volumes"))
                {
                    for v in vols {
                        match self.translate(v.as_object_mut(), "Mountpoint") {
                            Ok(c) => changed = changed.map(|x| x | c),
                            Err(e) => {
                                changed = Err(e);
                                break;
                            }
                        }
                    }
                }
                changed
            }
            _ => Ok(false),
        };
        match translated {
            Err(msg) => {
                tracing::warn!(plugin = %self.name, method, "{msg}");
                return Reply::err(500, &msg);
            }
            Ok(true) => {}
            Ok(false) if method != volume::MOUNT && method != volume::UNMOUNT => return reply,
            Ok(false) => {}
        }
        if method == volume::MOUNT || method == volume::UNMOUNT {
            let req: volume::MountRequest = serde_json::from_slice(request).unwrap_or_default();
            if method == volume::MOUNT {
                self.mounts.add(req.name, req.id);
            } else {
                self.mounts.remove(&req.name, &req.id);
            }
        }
        match serde_json::to_vec(&value) {
            Ok(body) => Reply {
                status: 200,
                body: body.into(),
            },
            Err(_) => reply,
        }
    }

    /// For a successful Mount: pins the directory the plugin named and answers with the pin.
    fn pin(
        &self,
        obj: Option<&mut serde_json::Map<String, Value>>,
        request: &[u8],
    ) -> Result<bool, String> {
        let Some(slot) = obj.and_then(|o| get_ci_mut(o, "Mountpoint")) else {
            return Ok(false);
        };
        let Some(inside) = slot.as_str().filter(|s| !s.is_empty()) else {
            return Ok(false);
        };
        let req: volume::MountRequest = serde_json::from_slice(request).unwrap_or_default();
        let dir = self.paths.open_dir(inside)?;
        let pinned = self.mounts.pin(&req.id, &dir)?;
        *slot = Value::String(pinned.to_string_lossy().into_owned());
        Ok(true)
    }

    fn translate(
        &self,
        obj: Option<&mut serde_json::Map<String, Value>>,
        key: &str,
    ) -> Result<bool, String> {
        let Some(slot) = obj.and_then(|o| get_ci_mut(o, key)) else {
            return Ok(false);
        };
        let Some(inside) = slot.as_str().filter(|s| !s.is_empty()) else {
            return Ok(false);
        };
        let host = self.paths.to_host(inside)?;
        *slot = Value::String(host.to_string_lossy().into_owned());
        Ok(true)
    }
}

/// dockerd decodes replies case-insensitively, so a native plugin may answer `mountpoint`.
fn get_ci<'a>(o: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    o.get(key).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn get_ci_mut<'a>(o: &'a mut serde_json::Map<String, Value>, key: &str) -> Option<&'a mut Value> {
    let actual = if o.contains_key(key) {
        key.to_string()
    } else {
        o.keys().find(|k| k.eq_ignore_ascii_case(key))?.clone()
    };
    o.get_mut(&actual)
}

fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Full::new(reply.body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(MEDIA_TYPE),
    );
    resp
}

/// A bound engine-facing socket and its accept loop.
pub struct PluginSocket {
    path: PathBuf,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PluginSocket {
    /// Binds `path` (refusing to replace anything already there) and starts serving `gateway`.
    pub fn bind(
        path: &Path,
        registry: &SocketRegistry,
        gateway: Arc<Gateway>,
    ) -> std::io::Result<PluginSocket> {
        if let Some(parent) = path.parent() {
            crate::fsutil::create_dir_all(parent, 0o755)?;
        }
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!(
                    "{} already exists and was not created by this plugd; refusing to replace it",
                    path.display()
                ),
            ));
        }
        let listener = UnixListener::bind(path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        registry.record(path)?;
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, gateway, rx));
        Ok(PluginSocket {
            path: path.to_path_buf(),
            shutdown,
            task,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket and closes every live connection (dockerd's keep-alive one included).
    pub async fn close(self, registry: &SocketRegistry) {
        if let Err(e) = registry.release(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "removing plugin socket");
        }
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: UnixListener,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let gw = gateway.clone();
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let gw = gw.clone();
                            async move { Ok::<_, Infallible>(gw.serve(req).await) }
                        });
                        let mut builder = hyper::server::conn::http1::Builder::new();
                        builder.timer(TokioTimer::new()).header_read_timeout(IDLE_TIMEOUT).keep_alive(true);
                        if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                            tracing::debug!(error = %e, "plugin socket connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept on plugin socket");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}
