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

pub mod authz;
pub mod datapath;
mod logstream;
pub mod mounts;
pub mod paths;
pub mod registry;
mod reply;

use crate::observe::PluginTelemetry;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use plugd_core::protocol::{
    MEDIA_TYPE, Manifest, implements_for_type, ipam, logdriver, network, status, volume,
};
use plugd_core::{Instance, Reply};
use serde_json::{Map, Value};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use mounts::Mounts;
pub use paths::PathMap;
pub use registry::SocketRegistry;

/// A reply body: whole, or streamed (`LogDriver.ReadLogs`, see [`logstream`]).
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Largest request body accepted from the engine (volume calls are a few hundred bytes).
const MAX_REQUEST: usize = 16 << 20;
/// How long an idle keep-alive connection may wait for its next request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest reply decoded and re-encoded on the data-path thread ([`datapath`]); a larger one (a
/// plugin chooses its size, up to 8 MiB: ~150 ms to decode) goes to the blocking pool, so it
/// holds up no other plugin served by the same thread. A `Get` reply is ~200 bytes.
const INLINE_REPLY: usize = 16 << 10;

/// What every connection of one plugin shares.
pub struct Gateway {
    name: String,
    instance: Arc<dyn Instance>,
    manifest: Bytes,
    paths: PathMap,
    mounts: Arc<Mounts>,
    /// `Some(deadline)` for an authorization plugin: its AuthZ calls fail closed ([`authz`]).
    authz: Option<Duration>,
    /// Whether a Join reply may name an interface (see [`Gateway::may_hand_over_links`]).
    links: bool,
    /// Whether looking up the plugin's paths may block ([`Gateway::paths_may_block`]).
    paths_may_block: bool,
    /// Where each call is counted ([`Gateway::counted_in`]).
    telemetry: Option<Arc<PluginTelemetry>>,
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
            authz: authz::declared(types).then_some(authz::DEFAULT_DEADLINE),
            links: false,
            paths_may_block: true,
            telemetry: None,
        }
    }

    /// Counts every call (method, outcome, time to the reply's headers) in the plugin's metrics.
    pub fn counted_in(mut self, telemetry: Arc<PluginTelemetry>) -> Gateway {
        self.telemetry = Some(telemetry);
        self
    }

    /// Says whether the plugin can mount a filesystem where plugd looks up the paths it reports
    /// ([`plugd_core::Runtime::plugin_can_mount`]). If it can, every path-bearing reply is handled
    /// on the blocking pool, since a FUSE filesystem may never answer. If it cannot, a small `Get`
    /// or `Path` reply is handled on the data-path thread: one path resolved in the plugin's
    /// filesystem (`openat2`, bounded by the kernel's symlink limit), an `fstat`, and on the first
    /// report of a volume the view's bind mount. `List` (as many paths as the plugin names),
    /// `Mount`, `Unmount` and `Remove` (mounts changed, the mount table written) and any reply over
    /// [`INLINE_REPLY`] always go to the blocking pool.
    pub fn paths_may_block(mut self, may_block: bool) -> Gateway {
        self.paths_may_block = may_block;
        self
    }

    /// Lets Join replies name an interface (`InterfaceName.SrcName`), for a plugin that can make
    /// links where dockerd looks for them. Without it such a reply is refused: dockerd would move
    /// that interface, a host one the plugin did not make, into a container.
    pub fn may_hand_over_links(mut self, allowed: bool) -> Gateway {
        self.links = allowed;
        self
    }

    /// Whether this gateway answers AuthZ calls itself when the plugin fails ([`authz`]).
    pub fn fails_closed(&self) -> bool {
        self.authz.is_some()
    }

    /// The same gateway with no plugin behind it: every call fails with `why` (an AuthZ call is
    /// then a deny naming the plugin). Served while the plugin is restarted after a failure.
    fn down(&self, why: &str) -> Gateway {
        self.with_instance(Arc::new(Down {
            message: format!(
                "plugin {} is being restarted after a failure: {why}",
                self.name
            ),
        }))
    }

    /// The same gateway with another instance behind it (an upgrade's [`Pending`]).
    pub fn with_instance(&self, instance: Arc<dyn Instance>) -> Gateway {
        Gateway {
            name: self.name.clone(),
            instance,
            manifest: self.manifest.clone(),
            paths: self.paths.clone(),
            mounts: self.mounts.clone(),
            authz: self.authz,
            links: self.links,
            paths_may_block: self.paths_may_block,
            telemetry: self.telemetry.clone(),
        }
    }

    /// The AuthZ deadline of an authorization plugin (no effect on other plugins).
    pub fn authz_deadline(mut self, deadline: Duration) -> Gateway {
        if self.authz.is_some() {
            self.authz = Some(deadline);
        }
        self
    }

    /// Serves one request; never fails at the HTTP level. Counted in the plugin's metrics under
    /// its method (the path without its `/`), an error unless the reply is a 200.
    pub async fn serve(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let Some(telemetry) = self.telemetry.clone() else {
            return self.answer_request(req).await;
        };
        let started = std::time::Instant::now();
        let method = req.uri().path().trim_start_matches('/').to_string();
        let resp = self.answer_request(req).await;
        telemetry.stats.record(
            &method,
            resp.status() == hyper::StatusCode::OK,
            started.elapsed(),
        );
        resp
    }

    async fn answer_request(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if req.method() != Method::POST {
            return respond(Reply::err(
                status::METHOD_NOT_ALLOWED,
                &format!(
                    "method {} not allowed; the plugin protocol is POST only",
                    req.method()
                ),
            ));
        }
        let method = req.uri().path().trim_start_matches('/').to_string();
        if method == "Plugin.Activate" {
            // Read the request to its end first: a reply sent before the body is read lets hyper
            // close the connection under a client still writing it (EPIPE for the client) and
            // ends a keep-alive connection. The body itself says nothing.
            let _ = Limited::new(req.into_body(), MAX_REQUEST).collect().await;
            return respond(Reply::ok(self.manifest.clone()));
        }
        if let Some(deadline) = self.authz
            && authz::is_call(&method)
        {
            return respond(self.authorize(&method, req.into_body(), deadline).await);
        }
        if method == logdriver::READ_LOGS {
            return self.read_logs(&method, req.into_body()).await;
        }
        let body = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return respond(Reply::err(
                    status::BAD_REQUEST,
                    &format!("reading request body: {e}"),
                ));
            }
        };
        let reply = self.instance.call(&method, body.clone()).await;
        if !self.answers_off_thread(&method, &reply) {
            return respond(self.answer(&method, &body, reply));
        }
        // Resolving and pinning paths may touch a filesystem that never answers, and changing
        // the mount table writes a file: never on a tokio worker.
        let gw = self.clone();
        let name = self.name.clone();
        match tokio::task::spawn_blocking(move || gw.answer(&method, &body, reply)).await {
            Ok(reply) => respond(reply),
            Err(e) => respond(Reply::err(
                status::PLUGIN_ERROR,
                &format!("plugin {name}: handling its reply failed: {e}"),
            )),
        }
    }

    /// Whether the reply to `method` is handled on the blocking pool ([`Gateway::paths_may_block`]).
    fn answers_off_thread(&self, method: &str, reply: &Reply) -> bool {
        if reply.body.len() > INLINE_REPLY {
            return true;
        }
        match method {
            // List resolves as many paths as the plugin names.
            volume::MOUNT | volume::UNMOUNT | volume::REMOVE | volume::LIST => true,
            volume::GET | volume::PATH => self.paths_may_block,
            _ => false,
        }
    }

    /// An AuthZ call: always a 200 within `deadline` (reading dockerd's request included), the
    /// plugin's decision or a deny naming the plugin ([`authz`]). Nothing here touches the
    /// plugin's filesystem, so it stays on the tokio worker.
    async fn authorize(&self, method: &str, body: Incoming, deadline: Duration) -> Reply {
        let call = async {
            let body = match Limited::new(body, MAX_REQUEST).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return authz::deny(
                        &self.name,
                        &format!("reading dockerd's {method} request: {e}; denied"),
                    );
                }
            };
            let reply = self.instance.call(method, body).await;
            if reply.body.len() <= INLINE_REPLY {
                return authz::answer(&self.name, method, reply);
            }
            let (name, method_owned) = (self.name.clone(), method.to_string());
            tokio::task::spawn_blocking(move || authz::answer(&name, &method_owned, reply))
                .await
                .unwrap_or_else(|e| {
                    authz::deny(
                        &self.name,
                        &format!("handling the {method} reply failed: {e}"),
                    )
                })
        };
        match tokio::time::timeout(deadline, call).await {
            Ok(reply) => reply,
            Err(_) => {
                tracing::warn!(plugin = %self.name, method, ?deadline, "AuthZ call timed out; denied");
                authz::timed_out(&self.name, method, deadline)
            }
        }
    }

    /// `LogDriver.ReadLogs`: the plugin's stream re-framed ([`logstream`]); a failure before
    /// streaming is an ordinary error reply, checked like any other.
    async fn read_logs(&self, method: &str, body: Incoming) -> Response<Body> {
        let body = match Limited::new(body, MAX_REQUEST).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return respond(Reply::err(
                    status::BAD_REQUEST,
                    &format!("reading request body: {e}"),
                ));
            }
        };
        match self.instance.stream(method, body).await {
            Ok(stream) => {
                let framed = StreamBody::new(logstream::Reframe::new(&self.name, stream));
                let mut resp = Response::new(UnsyncBoxBody::new(framed));
                resp.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/x-json-stream"),
                );
                resp
            }
            Err(reply) => match reply::check(&self.name, method, reply) {
                reply::Checked::Failure(r) => respond(r),
                _ => respond(Reply::err(
                    status::PLUGIN_ERROR,
                    &format!("plugin {}: ReadLogs failed before streaming", self.name),
                )),
            },
        }
    }

    /// The reply dockerd gets: rebuilt from the decoded value, with every path in it pinned, and
    /// the mount table kept in step (see [`reply`] and [`mounts`]).
    fn answer(&self, method: &str, request: &[u8], reply: Reply) -> Reply {
        // Read as the plugin read it (Go's rules, plugd-core's one request reader): the names
        // plugd pins and counts are the ones the plugin acted on.
        let asked = if method.starts_with("VolumeDriver.") {
            volume::Request::decode(method, request).ok()
        } else {
            None
        };
        if let Some(volume::Request::Unmount { name, id }) = &asked {
            // Whatever the plugin answers: dockerd never retries an Unmount and gives the next
            // mount a new id, so a mount it unmounted must not count as in use forever.
            self.mounts.unmount(name, id);
        }
        let mut value = match reply::check(&self.name, method, reply) {
            reply::Checked::Success(v) => v,
            reply::Checked::Failure(r) | reply::Checked::Relay(r) => return r,
        };
        let acted = match &asked {
            Some(volume::Request::Mount { name, id }) => self.pin_mount(&mut value, name, id),
            Some(volume::Request::Remove { name }) => {
                self.mounts.forget(name);
                Ok(())
            }
            Some(volume::Request::Path { name }) => {
                self.report(name, &mut value["Mountpoint"], true)
            }
            Some(volume::Request::Get { name }) => match &mut value["Volume"] {
                Value::Object(v) => self.report_volume(v, Some(name)),
                _ => Ok(()),
            },
            Some(volume::Request::List) => match &mut value["Volumes"] {
                Value::Array(vols) => vols.iter_mut().try_for_each(|v| match v {
                    Value::Object(v) => self.report_volume(v, None),
                    _ => Ok(()),
                }),
                _ => Ok(()),
            },
            None if method == network::JOIN => self.check_join(&value),
            None if method == ipam::REQUEST_POOL => check_pool(method, request, &value),
            _ => Ok(()),
        };
        match acted {
            Ok(()) => reply::encode(&value),
            Err(msg) => {
                tracing::warn!(plugin = %self.name, method, "{msg}");
                Reply::err(
                    status::PLUGIN_ERROR,
                    &format!("plugin {}: {msg}", self.name),
                )
            }
        }
    }

    /// Refuses a Join naming an interface when the plugin cannot have made one dockerd sees.
    fn check_join(&self, value: &Value) -> std::result::Result<(), String> {
        let src = value["InterfaceName"]["SrcName"]
            .as_str()
            .unwrap_or_default();
        if src.is_empty() || self.links {
            return Ok(());
        }
        Err(format!(
            "Join names host interface {src:?}, but the plugin does not declare network type \"host\" \
             and CAP_NET_ADMIN, so it cannot have created it; refused"
        ))
    }

    /// A successful Mount: pins the directory the plugin named and answers with the pin.
    fn pin_mount(&self, value: &mut Value, name: &str, id: &str) -> Result<(), String> {
        let inside = value["Mountpoint"].as_str().unwrap_or_default();
        if inside.is_empty() {
            return Err("replied to Mount without a Mountpoint".to_string());
        }
        let dir = self
            .paths
            .open_dir(inside)
            .map_err(|e| format!("mountpoint {e}"))?;
        let pinned = self.mounts.mount(name, id, &dir)?;
        value["Mountpoint"] = Value::String(pinned.to_string_lossy().into_owned());
        Ok(())
    }

    /// A volume of a Get reply (`asked`: the name dockerd asked for, which keys its view) or of a
    /// List reply (`None`: named by the plugin, so no new view is made for it).
    fn report_volume(&self, v: &mut Map<String, Value>, asked: Option<&str>) -> Result<(), String> {
        let name = match asked {
            Some(n) => n.to_string(),
            None => v
                .get("Name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        };
        match v.get_mut("Mountpoint") {
            Some(slot) => self.report(&name, slot, asked.is_some()),
            None => Ok(()),
        }
    }

    /// Replaces a mountpoint the plugin reported with the path of its pin or view, or with `""`
    /// where no directory is there inside the plugin's filesystem (a driver that creates the
    /// directory only at Mount reports such a path; dockerd shows `""`, and never binds these).
    fn report(&self, name: &str, slot: &mut Value, may_create: bool) -> Result<(), String> {
        let inside = slot.as_str().unwrap_or_default();
        if inside.is_empty() {
            return Ok(());
        }
        let dir = match self.paths.open_dir(inside) {
            Ok(dir) => dir,
            Err(paths::OpenError::Missing(m)) => {
                tracing::debug!(plugin = %self.name, volume = name, "reported as \"\": {m}");
                *slot = Value::String(String::new());
                return Ok(());
            }
            Err(e) => return Err(format!("volume {name:?}: mountpoint {e}")),
        };
        let host = self.mounts.report(name, &dir, may_create)?;
        *slot = Value::String(host.map_or_else(String::new, |h| h.to_string_lossy().into_owned()));
        Ok(())
    }
}

/// The instance behind a [`Gateway::down`]: no plugin runs.
struct Down {
    message: String,
}

impl Instance for Down {
    fn call<'a>(
        &'a self,
        _method: &'a str,
        _body: Bytes,
    ) -> plugd_core::runtime::BoxFuture<'a, Reply> {
        Box::pin(async { Reply::err(status::PLUGIN_ERROR, &self.message) })
    }

    fn health(&self) -> plugd_core::Health {
        plugd_core::Health::Failed(self.message.clone())
    }

    fn stop(&self, _grace: Duration) -> plugd_core::runtime::BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Hands a [`Pending`] the instance its calls go to (`Some(Some(_))`), or gives up (`Some(None)`).
pub type Handover = watch::Sender<Option<Option<Arc<dyn Instance>>>>;

/// The instance behind a socket while its plugin is restarted for an upgrade: calls wait (at most
/// the hold time) for the instance that comes back, then go to it; if none does, they fail
/// naming the plugin. dockerd sees a slow call instead of a missing socket.
pub struct Pending {
    name: String,
    hold: Duration,
    next: watch::Receiver<Option<Option<Arc<dyn Instance>>>>,
}

impl Pending {
    /// A pending instance and the sender that hands it the instance (`Some`) or gives up (`None`).
    pub fn pair(name: &str, hold: Duration) -> (Arc<dyn Instance>, Handover) {
        let (tx, rx) = watch::channel(None);
        let pending = Pending {
            name: name.to_string(),
            hold,
            next: rx,
        };
        (Arc::new(pending), tx)
    }

    async fn next(&self) -> Result<Arc<dyn Instance>, Reply> {
        let mut rx = self.next.clone();
        let failed = || {
            Reply::err(
                status::PLUGIN_ERROR,
                &format!(
                    "plugin {} is being upgraded and did not come back within {}s",
                    self.name,
                    self.hold.as_secs()
                ),
            )
        };
        match tokio::time::timeout(self.hold, rx.wait_for(Option::is_some)).await {
            Ok(Ok(v)) => v.clone().flatten().ok_or_else(failed),
            _ => Err(failed()),
        }
    }
}

impl Instance for Pending {
    fn call<'a>(
        &'a self,
        method: &'a str,
        body: Bytes,
    ) -> plugd_core::runtime::BoxFuture<'a, Reply> {
        Box::pin(async move {
            match self.next().await {
                Ok(instance) => instance.call(method, body).await,
                Err(reply) => reply,
            }
        })
    }

    fn stream<'a>(
        &'a self,
        method: &'a str,
        body: Bytes,
    ) -> plugd_core::runtime::BoxFuture<'a, Result<plugd_core::runtime::ByteStream, Reply>> {
        Box::pin(async move { self.next().await?.stream(method, body).await })
    }

    fn health(&self) -> plugd_core::Health {
        plugd_core::Health::Ready
    }

    fn stop(&self, _grace: Duration) -> plugd_core::runtime::BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A successful `IpamDriver.RequestPool`, checked against what the user asked for before dockerd
/// puts its gateway on a host bridge ([`ipam::check_pool_reply`]).
fn check_pool(method: &str, request: &[u8], value: &Value) -> std::result::Result<(), String> {
    let requested = match ipam::Request::decode(method, request) {
        Ok(ipam::Request::RequestPool(r)) => r.pool,
        _ => String::new(),
    };
    let pool = value["Pool"].as_str().unwrap_or_default();
    let gateway = value["Data"][ipam::GATEWAY].as_str();
    ipam::check_pool_reply(&requested, pool, gateway)
        .map_err(|e| format!("RequestPool: {e}; refused"))
}

fn respond(reply: Reply) -> Response<Body> {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let whole = Full::new(reply.body).map_err(|never| match never {});
    let mut resp = Response::new(UnsyncBoxBody::new(whole));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(MEDIA_TYPE),
    );
    resp
}

/// The gateway a socket serves now: replaced, not rebound, while an authorization plugin is
/// restarted (every request reads it afresh).
type Current = Arc<RwLock<Arc<Gateway>>>;

/// A bound engine-facing socket and its accept loop.
pub struct PluginSocket {
    path: PathBuf,
    current: Current,
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
        let listener = crate::fsutil::bind_unix_std(path, 0o660)?;
        // The listener is registered with the runtime that serves it (here, so a failure is this
        // call's error), and its accept loop runs there.
        let thread = datapath::next();
        let listener = {
            let _in = thread.as_ref().map(|h| h.enter());
            UnixListener::from_std(listener)?
        };
        registry.record(path)?;
        let (shutdown, rx) = watch::channel(false);
        let current: Current = Arc::new(RwLock::new(gateway));
        let task = datapath::spawn(thread.as_ref(), accept_loop(listener, current.clone(), rx));
        Ok(PluginSocket {
            path: path.to_path_buf(),
            current,
            shutdown,
            task,
        })
    }

    /// The gateway served now.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Serves `gateway` from now on (calls under way finish with the old one).
    pub fn replace(&self, gateway: Arc<Gateway>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = gateway;
    }

    /// Keeps the socket but takes the plugin away: every call now fails with `why`, AuthZ calls
    /// as denies. For an authorization plugin being restarted: a missing socket would make
    /// dockerd retry each API call for ≈15 s before failing it.
    pub fn park(&self, why: &str) {
        let down = Arc::new(self.gateway().down(why));
        self.replace(down);
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
    current: Current,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let current = current.clone();
                    let stream = match plugd_net::QuietStream::from_tokio(stream) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "registering a plugin socket connection");
                            continue;
                        }
                    };
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let gw = current.read().unwrap_or_else(|p| p.into_inner()).clone();
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
