//! The native packaging: Docker's plugin protocol served on a unix socket.
//!
//! hyper on a current-thread tokio runtime: hyper gives a complete HTTP/1.1 server (keep-alive,
//! pipelining, chunked bodies) for the cost of a few small crates, and one thread is all a plugin
//! needs. Every driver call runs synchronously on that thread, which is also what keeps calls from
//! overlapping, the guarantee plugd gives a wasm driver. A connection task is spawned per
//! connection, so an idle keep-alive connection (dockerd keeps up to 6) never blocks another.

use crate::VolumeDriver;
use crate::protocol::{self, MEDIA_TYPE, Reply};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::ffi::OsString;
use std::io::{self, Write as _};
use std::os::unix::fs::FileTypeExt as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::{JoinSet, LocalSet};

/// Where the engine looks for a plugin's socket: dockerd bind-mounts a per-plugin directory here
/// and connects to `<it>/<Interface.Socket>`.
const DEFAULT_SOCKET_DIR: &str = "/run/docker/plugins";
/// Largest request body read (volume calls are a few hundred bytes); plugd's own limit.
const MAX_REQUEST: usize = 16 << 20;
/// How long requests already being read may finish after SIGTERM; dockerd and plugd send SIGKILL
/// 10 s after SIGTERM, so this stays well below.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The socket a plugin should listen on: the first argument, else `$PLUGIN_SOCKET`, else
/// `default_name` (which should be `Interface.Socket` of the plugin's `config.json`).
///
/// A bare name goes into `$SOCKET_DIR`, default `/run/docker/plugins` (where dockerd and plugd
/// expect a managed plugin's socket); a value containing `/` is used as a path. The overrides let
/// the same binary run outside a plugin sandbox, e.g. as a legacy plugin or in tests.
pub fn socket_path(default_name: &str) -> PathBuf {
    let set = |v: &OsString| !v.is_empty();
    let name = std::env::args_os()
        .nth(1)
        .filter(set)
        .or_else(|| std::env::var_os("PLUGIN_SOCKET").filter(set))
        .unwrap_or_else(|| default_name.into());
    if name.as_encoded_bytes().contains(&b'/') {
        PathBuf::from(name)
    } else {
        let dir = std::env::var_os("SOCKET_DIR")
            .filter(set)
            .unwrap_or_else(|| DEFAULT_SOCKET_DIR.into());
        Path::new(&dir).join(name)
    }
}

/// Answers one protocol call. Each plugin type's module implements it for the drivers of its
/// trait (the volume driver's is [`protocol::handle`]); the server below is the same for all.
pub trait Handler {
    /// `endpoint` is the request path (`/VolumeDriver.Create`), `body` the request body as sent.
    fn handle(&self, endpoint: &str, body: &[u8]) -> Reply;

    /// Like [`handle`](Self::handle), for a handler some of whose replies are streamed (a log
    /// driver's `ReadLogs`). The default answers every call with [`handle`](Self::handle).
    fn answer(&self, endpoint: &str, body: &[u8]) -> Answer {
        Answer::Reply(self.handle(endpoint, body))
    }
}

/// What a [`Handler`] answers.
pub enum Answer {
    /// A whole reply.
    Reply(Reply),
    /// A 200 whose body is sent chunked, as the chunks arrive, and ends when the sender is
    /// dropped; an `Err` ends it as broken (the client sees an error, not a short body). If the
    /// client goes away the receiver is dropped, so sends fail.
    Stream(tokio::sync::mpsc::Receiver<Result<Bytes, String>>),
}

/// The body of [`Answer::Stream`].
struct Chunks(tokio::sync::mpsc::Receiver<Result<Bytes, String>>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|chunk| {
            chunk.map(|c| {
                c.map(hyper::body::Frame::data)
                    .map_err(std::io::Error::other)
            })
        })
    }
}

type Body = http_body_util::Either<Full<Bytes>, Chunks>;

/// A [`VolumeDriver`] as a [`Handler`].
struct Volumes<D>(D);

impl<D: VolumeDriver> Handler for Volumes<D> {
    fn handle(&self, endpoint: &str, body: &[u8]) -> Reply {
        protocol::handle(&self.0, endpoint, body)
    }
}

/// A volume plugin's `main`: [`run`] for a [`VolumeDriver`].
pub fn run_volume_driver<D: VolumeDriver + 'static>(driver: D, default_socket: &str) -> ExitCode {
    run(Volumes(driver), default_socket)
}

/// [`serve`] for a [`VolumeDriver`].
pub fn serve_volume_driver<D: VolumeDriver + 'static>(driver: D, socket: &Path) -> io::Result<()> {
    serve(Volumes(driver), socket)
}

/// A [`NetworkDriver`](crate::NetworkDriver) as a [`Handler`].
struct Networks<D>(D);

impl<D: crate::NetworkDriver> Handler for Networks<D> {
    fn handle(&self, endpoint: &str, body: &[u8]) -> Reply {
        crate::network::protocol::handle(&self.0, endpoint, body)
    }
}

/// A network plugin's `main`: [`run`] for a [`NetworkDriver`](crate::NetworkDriver).
pub fn run_network_driver<D: crate::NetworkDriver + 'static>(
    driver: D,
    default_socket: &str,
) -> ExitCode {
    run(Networks(driver), default_socket)
}

/// [`serve`] for a [`NetworkDriver`](crate::NetworkDriver).
pub fn serve_network_driver<D: crate::NetworkDriver + 'static>(
    driver: D,
    socket: &Path,
) -> io::Result<()> {
    serve(Networks(driver), socket)
}

/// A plugin's `main`: serves `handler` on [`socket_path`]`(default_socket)` until SIGTERM or
/// SIGINT, and turns the outcome into the exit status (errors go to stderr, which the host logs).
pub fn run<H: Handler + 'static>(handler: H, default_socket: &str) -> ExitCode {
    let socket = socket_path(default_socket);
    match serve(handler, &socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log(format_args!("{}: {e}", socket.display()));
            ExitCode::FAILURE
        }
    }
}

/// Serves `handler` on the unix socket `socket` until SIGTERM or SIGINT, then removes the socket
/// and returns `Ok`.
///
/// As PID 1 of a plugin sandbox the process gets no default SIGTERM handling, so without this the
/// host would wait its whole grace period and then SIGKILL it. A stale socket file at `socket` is
/// replaced; a live one (something answers) or a file of another kind is an error, since taking
/// it over would cut off whoever owns it. A panic in the handler fails that call with a 500 and
/// the server keeps going.
pub fn serve<H: Handler + 'static>(handler: H, socket: &Path) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    LocalSet::new().block_on(&runtime, listen(Rc::new(handler), socket))
}

async fn listen<H: Handler + 'static>(driver: Rc<H>, socket: &Path) -> io::Result<()> {
    // Before the socket exists: once a client can see it, SIGTERM must already be handled.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let listener = bind(socket)?;
    log(format_args!("listening on {}", socket.display()));

    let (shutdown, shutting_down) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn_local(connection(driver.clone(), stream, shutting_down.clone()));
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning on a ready listener.
                    log(format_args!("accept: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    drop(listener);
    let removed = std::fs::remove_file(socket);
    let _ = shutdown.send(true);
    let drain = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, drain).await;
    log(format_args!("stopped"));
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Binds `socket`, replacing a stale socket file left by an earlier run that was killed.
fn bind(socket: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(socket) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ));
        }
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process is listening on it",
                ));
            }
            std::fs::remove_file(socket)?;
        }
    }
    UnixListener::bind(socket)
}

/// Serves one connection until the client closes it, or until shutdown once its current
/// request (if any) is answered.
async fn connection<H: Handler + 'static>(
    driver: Rc<H>,
    stream: UnixStream,
    mut shutting_down: watch::Receiver<bool>,
) {
    let service = service_fn(move |req| {
        let driver = driver.clone();
        async move { Ok::<_, Infallible>(respond(&*driver, req).await) }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutting_down.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    // Incomplete messages are clients hanging up mid-request: routine, not worth a log line.
    if let Err(e) = result
        && !e.is_incomplete_message()
    {
        log(format_args!("connection: {e}"));
    }
}

async fn respond<H: Handler + ?Sized>(driver: &H, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::POST {
        let message = format!(
            "method {} not allowed; the plugin protocol is POST only",
            req.method()
        );
        return response(Reply::err(405, &message));
    }
    let endpoint = req.uri().path().to_owned();
    let body = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return response(Reply::err(400, &format!("reading request body: {e}"))),
    };
    let answer =
        catch_unwind(AssertUnwindSafe(|| driver.answer(&endpoint, &body))).unwrap_or_else(|_| {
            let method = endpoint.trim_start_matches('/');
            Answer::Reply(Reply::err(500, &format!("{method}: the plugin panicked")))
        });
    match answer {
        Answer::Reply(reply) => response(reply),
        Answer::Stream(chunks) => {
            let mut response = Response::new(Body::Right(Chunks(chunks)));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(MEDIA_TYPE),
            );
            response
        }
    }
}

fn response(reply: Reply) -> Response<Body> {
    let mut response = Response::new(Body::Left(Full::new(reply.body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(MEDIA_TYPE),
    );
    response
}

/// [`log`], for the other native modules.
pub(crate) fn log_line(message: std::fmt::Arguments<'_>) {
    log(message)
}

/// One line on stderr, which the host keeps as the plugin's log, prefixed with the binary's name
/// because the host mixes several plugins' output. Unlike `eprintln!` it never panics: a host
/// that stopped reading must not take the server down.
fn log(message: std::fmt::Arguments<'_>) {
    let program = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "plugin".to_owned());
    let _ = writeln!(io::stderr(), "{program}: {message}");
}
