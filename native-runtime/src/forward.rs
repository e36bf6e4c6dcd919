//! Protocol calls → the plugin's own socket, the way dockerd's plugin client makes them.
//!
//! `POST /<method>` over HTTP/1.1 with dockerd's headers (an empty `Host`, `Content-Length`,
//! `Accept: application/vnd.docker.plugins.v1.2+json`, no `Content-Type`), on keep-alive
//! connections from a pool (up to [`MAX_IDLE`] idle ones). The status and body are relayed
//! as they are; whether a status means success is the engine's business.
//!
//! A connection has no task of its own: the call using it drives it (hyper's connection future is
//! polled beside the request's), so a reply wakes the calling task directly, on the thread of the
//! runtime the connection was opened on (the data path's, for the calls dockerd makes). An idle
//! connection is looked at once before it is reused, which is when a close by the plugin is
//! noticed.
//!
//! A pooled connection the plugin closed (it restarted, or dropped idle connections) is skipped when
//! that is already known; when it turns out closed before any byte of a request was written, the
//! request goes once more on a fresh connection. A request that was written is **never** sent
//! again, whatever happened next: the plugin may have acted on it, and Mount or Create are not
//! idempotent. Connection failures and the per-call deadline become a 500 `{"Err"}` naming the
//! plugin.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use plugd_core::Reply;
use plugd_core::protocol::status;
use plugd_net::QuietStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::net::UnixStream;

/// What dockerd sends as `Accept` (`transport.VersionMimetype`).
pub(crate) const ACCEPT: &str = "application/vnd.docker.plugins.v1.2+json";
/// Default per-call deadline: under dockerd's longest (`VolumeDriver.Create`/`Mount`: 2 min), so
/// a reply plugd acts on (pins, counts as mounted) is never one dockerd has already given up on.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(110);
/// Idle connections kept per plugin: dockerd keeps 6 (`MaxIdleConns`), but plugd is the single
/// client of every caller of the plugin, so it keeps as many as calls it has seen at once, up to this.
const MAX_IDLE: usize = 32;
/// Largest reply body relayed.
const MAX_REPLY: usize = 64 << 20;

/// One keep-alive connection to the plugin: the request half and the connection itself, which
/// whoever uses the request half drives ([`Conn::drive`]).
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// `None` once the connection ended.
    driver: Option<Driver>,
}

/// hyper's connection future: what moves bytes on one connection.
type Driver = http1::Connection<TokioIo<QuietStream>, Full<Bytes>>;

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn")
    }
}

impl Conn {
    /// Runs `fut` (a request or a body read on this connection) while driving the connection;
    /// `None` if the connection ended and `fut` could not finish. An ended connection is dropped
    /// at once: hyper gives a request it queued but never wrote back only then (as the error of
    /// `fut`), which is what lets the caller send it again on a fresh connection.
    async fn drive<F: Future>(driver: &mut Option<Driver>, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            let Some(d) = driver.as_mut() else {
                return Poll::Ready(None);
            };
            if let Poll::Ready(result) = std::pin::Pin::new(d).poll(cx) {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "plugin connection ended");
                }
                *driver = None;
                // The connection's end settles `fut` (with an error, the request inside if it
                // was never written): look once more.
                return match fut.as_mut().poll(cx) {
                    Poll::Ready(out) => Poll::Ready(Some(out)),
                    Poll::Pending => Poll::Ready(None),
                };
            }
            Poll::Pending
        })
        .await
    }

    /// Whether an idle connection can take a request now: the connection is polled once, which
    /// reads a close (or anything else) the plugin sent while it was idle.
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let Some(d) = self.driver.as_mut() else {
            return false;
        };
        if std::pin::Pin::new(d).poll(&mut cx).is_ready() {
            self.driver = None;
            return false;
        }
        !self.sender.is_closed() && matches!(self.sender.poll_ready(&mut cx), Poll::Ready(Ok(())))
    }
}

/// A keep-alive HTTP/1.1 client for one plugin's unix socket.
#[derive(Debug)]
pub(crate) struct Forwarder {
    plugin: String,
    socket: PathBuf,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
}

/// Why a call produced no reply.
enum CallError {
    /// Connecting or talking to the socket failed.
    Unreachable(String),
    /// The reply was malformed or too large.
    Reply(String),
}

impl Forwarder {
    /// A client for `socket`; `plugin` names it in error replies.
    pub(crate) fn new(plugin: &str, socket: &Path, timeout: Duration) -> Self {
        Forwarder {
            plugin: plugin.to_string(),
            socket: socket.to_path_buf(),
            timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Makes one call; never fails at this level (errors are 500 replies).
    pub(crate) async fn call(&self, method: &str, body: Bytes) -> Reply {
        match tokio::time::timeout(self.timeout, self.call_inner(method, body)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(CallError::Unreachable(e))) => Reply::err(
                status::PLUGIN_ERROR,
                &format!("plugin {} is not reachable: {e}", self.plugin),
            ),
            Ok(Err(CallError::Reply(e))) => Reply::err(
                status::PLUGIN_ERROR,
                &format!("plugin {}: bad reply to {method}: {e}", self.plugin),
            ),
            Err(_) => Reply::err(
                status::PLUGIN_ERROR,
                &format!(
                    "plugin {}: {method} timed out after {}s",
                    self.plugin,
                    self.timeout.as_secs_f64()
                ),
            ),
        }
    }

    /// Makes a call whose reply is streamed (`LogDriver.ReadLogs`), on a connection of its own
    /// that is never pooled: the deadline covers the reply's headers; a 200's body then flows for
    /// as long as the plugin sends it and the consumer reads it (dropping the stream closes the
    /// connection). Any other status is read whole and returned as the error reply.
    pub(crate) async fn stream(
        &self,
        method: &str,
        body: Bytes,
    ) -> Result<plugd_core::runtime::ByteStream, Reply> {
        let unreachable = |e: String| {
            Reply::err(
                status::PLUGIN_ERROR,
                &format!("plugin {} is not reachable: {e}", self.plugin),
            )
        };
        let timed_out = || {
            Reply::err(
                status::PLUGIN_ERROR,
                &format!(
                    "plugin {}: {method} timed out after {}s",
                    self.plugin,
                    self.timeout.as_secs_f64()
                ),
            )
        };
        let send = async {
            let Conn { mut sender, driver } = self.connect().await.map_err(|e| match e {
                CallError::Unreachable(e) | CallError::Reply(e) => e,
            })?;
            // A stream outlives this call: its connection gets a task of its own.
            let plugin = self.plugin.clone();
            tokio::spawn(async move {
                let Some(driver) = driver else { return };
                if let Err(e) = driver.await {
                    tracing::debug!(plugin, error = %e, "plugin stream connection ended");
                }
            });
            sender
                .send_request(request(method, body))
                .await
                .map_err(|e| e.to_string())
        };
        let resp = match tokio::time::timeout(self.timeout, send).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Err(unreachable(e)),
            Err(_) => return Err(timed_out()),
        };
        let code = resp.status().as_u16();
        if code != status::OK {
            let collect = Limited::new(resp.into_body(), MAX_REPLY).collect();
            return Err(match tokio::time::timeout(self.timeout, collect).await {
                Ok(Ok(body)) => Reply {
                    status: code,
                    body: body.to_bytes(),
                },
                Ok(Err(e)) => Reply::err(
                    status::PLUGIN_ERROR,
                    &format!("plugin {}: bad reply to {method}: {e}", self.plugin),
                ),
                Err(_) => timed_out(),
            });
        }
        Ok(Box::pin(BodyChunks(resp.into_body())))
    }

    /// Drops every idle connection.
    pub(crate) fn close(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    async fn call_inner(&self, method: &str, body: Bytes) -> Result<Reply, CallError> {
        let (mut conn, mut reused) = match self.pooled() {
            Some(c) => (c, true),
            None => (self.connect().await?, false),
        };
        let mut req = request(method, body);
        loop {
            let Some(result) =
                Conn::drive(&mut conn.driver, conn.sender.try_send_request(req)).await
            else {
                // The connection ended with the request unsettled: it may have been written.
                self.close();
                return Err(CallError::Unreachable(
                    "the connection closed; the request may have been sent and is not sent again"
                        .to_string(),
                ));
            };
            match result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let collect = Limited::new(resp.into_body(), MAX_REPLY).collect();
                    let body = Conn::drive(&mut conn.driver, collect)
                        .await
                        .ok_or_else(|| CallError::Reply("the connection closed mid-reply".into()))?
                        .map_err(|e| CallError::Reply(e.to_string()))?
                        .to_bytes();
                    self.put_back(conn);
                    return Ok(Reply { status, body });
                }
                Err(mut e) => match e.take_message() {
                    // hyper hands the request back only if none of it was written: the plugin
                    // cannot have seen it, so it may go once more on a fresh connection. The
                    // other idle ones are as stale.
                    Some(unsent) if reused => {
                        tracing::debug!(plugin = %self.plugin, method, error = %e.error(), "pooled connection closed before the request was sent; sending it on a new one");
                        self.close();
                        conn = self.connect().await?;
                        reused = false;
                        req = unsent;
                    }
                    Some(_) => return Err(CallError::Unreachable(e.into_error().to_string())),
                    // Written (perhaps in part) and no reply: the plugin may have acted on it.
                    // Mount and Create are not idempotent, so it is never sent again.
                    None => {
                        self.close();
                        return Err(CallError::Unreachable(format!(
                            "{}; the request was sent and is not sent again",
                            e.into_error()
                        )));
                    }
                },
            }
        }
    }

    /// An idle connection that can take a request now.
    fn pooled(&self) -> Option<Conn> {
        loop {
            let mut conn = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
            if conn.usable() {
                return Some(conn);
            }
        }
    }

    fn put_back(&self, conn: Conn) {
        if conn.driver.is_none() || conn.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, CallError> {
        let stream = connect_no_follow(&self.socket).await.map_err(|e| {
            CallError::Unreachable(format!("dial unix {}: {e}", self.socket.display()))
        })?;
        let stream = QuietStream::from_tokio(stream)
            .map_err(|e| CallError::Unreachable(format!("registering the connection: {e}")))?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        Ok(Conn {
            sender,
            driver: Some(driver),
        })
    }
}

/// Connects to the plugin's socket without following a symlink: the socket lives in the runtime
/// dir, which the plugin can write, so a symlink there could otherwise point plugd (root) at any
/// other unix socket on the host. The path is opened `O_PATH|O_NOFOLLOW`, checked to be a socket,
/// and connected through its `/proc/self/fd` entry, which names that very inode.
pub(crate) async fn connect_no_follow(path: &std::path::Path) -> std::io::Result<UnixStream> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    if !file.metadata()?.file_type().is_socket() {
        return Err(std::io::Error::other(
            "not a socket (a symlink or another file in its place)",
        ));
    }
    UnixStream::connect(format!("/proc/self/fd/{}", file.as_raw_fd())).await
}

/// A streamed reply body as [`plugd_core::runtime::ByteStream`] items (trailers skipped).
struct BodyChunks(hyper::body::Incoming);

impl futures_core::Stream for BodyChunks {
    type Item = Result<Bytes, String>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use hyper::body::Body as _;
        use std::task::Poll;
        loop {
            return match std::pin::Pin::new(&mut self.0).poll_frame(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.to_string()))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    Err(_) => continue,
                },
            };
        }
    }
}

fn request(method: &str, body: Bytes) -> Request<Full<Bytes>> {
    let path = format!("/{}", method.trim_start_matches('/'));
    let len = body.len();
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = Method::POST;
    // A method name that is not a valid path is sent as `/` rather than panicking; the plugin
    // answers it as an unknown endpoint.
    *req.uri_mut() = path
        .parse()
        .unwrap_or_else(|_| hyper::Uri::from_static("/"));
    let h = req.headers_mut();
    h.insert(header::HOST, header::HeaderValue::from_static(""));
    h.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    h.insert(header::ACCEPT, header::HeaderValue::from_static(ACCEPT));
    req
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
    use tokio::net::UnixListener;

    /// What the fake plugin saw: one entry per request, with its connection number.
    #[derive(Debug, Clone)]
    struct Seen {
        conn: usize,
        head: String,
        body: Vec<u8>,
    }

    /// A minimal HTTP/1.1 keep-alive server: answers `POST /Echo` with 200 and the request body,
    /// anything else with 404 `{"Err":"not found"}`.
    struct FakePlugin {
        task: tokio::task::JoinHandle<()>,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl FakePlugin {
        fn start(path: &Path, seen: Arc<Mutex<Vec<Seen>>>) -> FakePlugin {
            let _ = std::fs::remove_file(path);
            let listener = UnixListener::bind(path).unwrap();
            let conns = Arc::new(AtomicUsize::new(0));
            let seen2 = seen.clone();
            let task = tokio::spawn(async move {
                let mut set = tokio::task::JoinSet::new();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let n = conns.fetch_add(1, Ordering::SeqCst);
                    set.spawn(serve(stream, n, seen2.clone()));
                }
            });
            FakePlugin { task, seen }
        }

        fn stop(self) {
            // Aborting drops the JoinSet, which aborts (and closes) every connection.
            self.task.abort();
        }
    }

    async fn serve(stream: UnixStream, conn: usize, seen: Arc<Mutex<Vec<Seen>>>) {
        let mut r = BufReader::new(stream);
        loop {
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let mut body = vec![0; len];
            r.read_exact(&mut body).await.unwrap();
            let echo = head.starts_with("POST /Echo ");
            let drop = head.starts_with("POST /Drop ");
            seen.lock().unwrap().push(Seen {
                conn,
                head,
                body: body.clone(),
            });
            if drop {
                // Read the request, then close without a reply.
                return;
            }
            let (status, out) = if echo {
                ("200 OK", body)
            } else {
                ("404 Not Found", br#"{"Err":"not found"}"#.to_vec())
            };
            let resp = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n", out.len());
            let s = r.get_mut();
            s.write_all(resp.as_bytes()).await.unwrap();
            s.write_all(&out).await.unwrap();
        }
    }

    #[tokio::test]
    async fn relays_status_and_body_with_dockerds_headers() {
        let dir = TempDir::new("fwd");
        let sock = dir.path().join("p.sock");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fake = FakePlugin::start(&sock, seen.clone());
        let f = Forwarder::new("p:latest", &sock, Duration::from_secs(5));

        let reply = f
            .call("Echo", Bytes::from_static(b"{\"Name\":\"v1\"}\n"))
            .await;
        assert_eq!(reply, Reply::ok(&b"{\"Name\":\"v1\"}\n"[..]));
        let reply = f.call("VolumeDriver.Nope", Bytes::new()).await;
        assert_eq!(reply.status, 404);
        assert_eq!(&reply.body[..], br#"{"Err":"not found"}"#);

        let seen = fake.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        let head = seen[0].head.to_ascii_lowercase();
        assert!(head.starts_with("post /echo http/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nhost: \r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\naccept: {ACCEPT}\r\n")),
            "{head}"
        );
        assert!(head.contains("\r\ncontent-length: 14\r\n"), "{head}");
        assert!(!head.contains("content-type"), "{head}");
        assert!(
            seen[1]
                .head
                .to_ascii_lowercase()
                .contains("content-length: 0\r\n")
        );
        assert!(seen[1].body.is_empty());
        fake.stop();
    }

    /// A streamed call: a 200's body comes as a stream (whole here), a non-200 is the error
    /// reply, a dead socket a 500 naming the plugin; the connection is never pooled.
    #[tokio::test]
    async fn stream_gives_a_200_body_as_a_stream_and_anything_else_as_the_reply() {
        let dir = TempDir::new("fwd-stream");
        let sock = dir.path().join("p.sock");
        let f = Forwarder::new("p:latest", &sock, Duration::from_secs(5));
        let Err(dead) = f.stream("LogDriver.ReadLogs", Bytes::new()).await else {
            panic!("nothing listens yet")
        };
        assert_eq!(dead.status, 500);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fake = FakePlugin::start(&sock, seen.clone());
        let mut stream = f
            .stream("Echo", Bytes::from_static(b"frames"))
            .await
            .unwrap_or_else(|r| panic!("{r:?}"));
        let mut got = Vec::new();
        while let Some(chunk) =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(stream.as_mut(), cx)).await
        {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, b"frames");
        let Err(reply) = f.stream("LogDriver.Nope", Bytes::new()).await else {
            panic!("a 404 is not streamed")
        };
        assert_eq!(
            (reply.status, &reply.body[..]),
            (404, &br#"{"Err":"not found"}"#[..])
        );
        assert!(
            f.idle.lock().unwrap().is_empty(),
            "streamed calls are not pooled"
        );
        fake.stop();
    }

    #[tokio::test]
    async fn keep_alive_reuses_one_connection() {
        let dir = TempDir::new("fwd-ka");
        let sock = dir.path().join("p.sock");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fake = FakePlugin::start(&sock, seen.clone());
        let f = Forwarder::new("p:latest", &sock, Duration::from_secs(5));
        for i in 0..20 {
            let reply = f.call("Echo", Bytes::from(format!("{i}"))).await;
            assert_eq!(reply, Reply::ok(format!("{i}")));
        }
        let conns: Vec<usize> = fake.seen.lock().unwrap().iter().map(|s| s.conn).collect();
        assert_eq!(conns, vec![0; 20]);

        // Concurrent calls open more connections, and at most MAX_IDLE stay pooled.
        let f = Arc::new(f);
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let f = f.clone();
                tokio::spawn(async move { (i, f.call("Echo", Bytes::from(format!("c{i}"))).await) })
            })
            .collect();
        for t in tasks {
            let (i, reply) = t.await.unwrap();
            assert_eq!(reply, Reply::ok(format!("c{i}")));
        }
        assert!(f.idle.lock().unwrap().len() <= MAX_IDLE);
        fake.stop();
    }

    #[tokio::test]
    async fn reconnects_after_the_plugin_restarts() {
        let dir = TempDir::new("fwd-restart");
        let sock = dir.path().join("p.sock");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let f = Forwarder::new("p:latest", &sock, Duration::from_secs(5));
        let fake = FakePlugin::start(&sock, seen.clone());
        assert_eq!(f.call("Echo", Bytes::from("a")).await.status, 200);
        assert_eq!(f.idle.lock().unwrap().len(), 1);
        fake.stop();
        // Once the pooled connection has noticed the close, it is skipped.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let fake = FakePlugin::start(&sock, seen.clone());
        let reply = f.call("Echo", Bytes::from("b")).await;
        assert_eq!(reply, Reply::ok("b"));
        // And again.
        tokio::time::sleep(Duration::from_millis(20)).await;
        fake.stop();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _fake = FakePlugin::start(&sock, seen.clone());
        assert_eq!(f.call("Echo", Bytes::from("c")).await, Reply::ok("c"));
        let bodies: Vec<Vec<u8>> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.body.clone())
            .collect();
        assert_eq!(bodies, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    }

    #[tokio::test]
    async fn dead_socket_is_a_500_naming_the_plugin() {
        let dir = TempDir::new("fwd-dead");
        let sock = dir.path().join("p.sock");
        let f = Forwarder::new("p:latest", &sock, Duration::from_secs(5));
        let reply = f.call("VolumeDriver.List", Bytes::new()).await;
        assert_eq!(reply.status, 500);
        let err: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        let msg = err["Err"].as_str().unwrap();
        assert!(
            msg.starts_with("plugin p:latest is not reachable: dial unix "),
            "{msg}"
        );

        // A socket nobody accepts on (bound, not listening) is refused the same way.
        let _std = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
        let reply = f.call("VolumeDriver.List", Bytes::new()).await;
        assert_eq!(reply.status, 500);
    }

    #[tokio::test]
    async fn a_hung_plugin_times_out() {
        let dir = TempDir::new("fwd-hang");
        let sock = dir.path().join("p.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let hold = tokio::spawn(async move {
            let (_s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let f = Forwarder::new("p:latest", &sock, Duration::from_millis(100));
        let reply = f.call("VolumeDriver.Get", Bytes::new()).await;
        assert_eq!(reply.status, 500);
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        assert!(
            text.contains("VolumeDriver.Get timed out after 0.1s"),
            "{text}"
        );
        hold.abort();
    }

    /// A request the plugin received on a pooled connection that then broke is not sent again
    /// (it used to be resent on a fresh connection, so the plugin saw it twice).
    #[tokio::test]
    async fn a_sent_request_is_never_resent() {
        let dir = TempDir::new("fwd-once");
        let sock = dir.path().join("p.sock");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fake = FakePlugin::start(&sock, seen.clone());
        let f = Forwarder::new("p:latest", &sock, Duration::from_secs(5));
        assert_eq!(f.call("Echo", Bytes::from("a")).await.status, 200);
        assert_eq!(f.idle.lock().unwrap().len(), 1, "a pooled connection");
        let reply = f.call("Drop", Bytes::from("mount-me")).await;
        assert_eq!(reply.status, 500);
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        assert!(text.contains("is not sent again"), "{text}");
        let drops = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.head.starts_with("POST /Drop "))
            .count();
        assert_eq!(drops, 1, "the plugin saw the request once");
        // The forwarder still works afterwards.
        assert_eq!(f.call("Echo", Bytes::from("b")).await, Reply::ok("b"));
        fake.stop();
    }
}
