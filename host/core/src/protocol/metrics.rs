//! `MetricsCollector.*` (`docker.metricscollector/1.0`): the two calls that start and stop a
//! metrics collector, and the engine's metrics endpoint it reads, for the wasm host, plugd's
//! manager and the SDK's native server alike.
//!
//! | endpoint | success (200) |
//! |---|---|
//! | `Plugin.Activate` | `{"Implements": ["MetricsCollector"]}` |
//! | `MetricsCollector.StartMetrics`, `MetricsCollector.StopMetrics` | `{}` |
//!
//! Both calls carry an empty body; dockerd looks only at the status of the reply (errors are
//! logged, never shown), so the body is `{}` and a failure is `{"Err": message}` with a 500 (404
//! for [`ErrorCode::Unsupported`](super::ErrorCode::Unsupported)). dockerd never starts a legacy
//! collector, so for plugd's plugins it is plugd's manager that sends both calls
//! (docs/protocol.md, "Metrics collectors").
//!
//! The data itself does not travel in these calls: dockerd serves `GET /metrics` (Prometheus
//! text) on the unix socket `<exec-root>/metrics.sock`, which a collector reads itself;
//! [`scrape`] is that one request, for plugd's wasm host (on a guest's behalf) and for the SDK's
//! native packaging.

use super::request::{self, method_of};
use super::{DriverError, Manifest};
use crate::Reply;

/// Sent once the collector may start reading the engine's metrics.
pub const START: &str = "MetricsCollector.StartMetrics";
/// Sent before the collector is stopped (disable, removal, plugd's shutdown).
pub const STOP: &str = "MetricsCollector.StopMetrics";
/// The `Implements` entry of a metrics collector.
pub const IMPLEMENTS: &str = "MetricsCollector";
/// The one `Interface.Types` entry dockerd gives its metrics socket to (`RegisterRuntimeOpt`,
/// matched exactly): the native bind and the wasm `engine-metrics` grant both require it, so the
/// wasm runtime grants the engine's metrics exactly where the native sandbox would.
pub const TYPE: &str = "docker.metricscollector/1.0";
const ACTIVATE: &str = "Plugin.Activate";

/// Where dockerd binds its metrics socket in a managed collector's sandbox (`RegisterRuntimeOpt`),
/// and where plugd binds it for a native one.
pub const SANDBOX_SOCKET: &str = "/run/docker/metrics.sock";
/// dockerd's metrics socket under its default exec-root (`<exec-root>/metrics.sock`).
pub const DOCKERD_SOCKET: &str = "/var/run/docker/metrics.sock";
/// The only path dockerd's metrics socket serves.
pub const PATH: &str = "/metrics";
/// Largest metrics body [`scrape`] accepts (dockerd's is tens of KiB).
pub const MAX_SCRAPE: usize = 4 << 20;

/// One decoded call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `Plugin.Activate` (plugd's gateway answers it itself; a native server must).
    Activate,
    /// Start collecting.
    Start,
    /// Stop collecting.
    Stop,
}

impl Request {
    /// Decodes a call (`endpoint` with or without its leading `/`), or gives the error reply:
    /// 404 for an unknown endpoint, 400 for a body that is not empty, `null` or an object.
    pub fn decode(endpoint: &str, body: &[u8]) -> Result<Request, Reply> {
        let method = method_of(endpoint);
        let req = match method {
            ACTIVATE => return Ok(Request::Activate),
            START => Request::Start,
            STOP => Request::Stop,
            _ => return Err(request::unknown(method, "metrics collector")),
        };
        request::no_arguments(method, body)?;
        Ok(req)
    }
}

/// A collector's successful answer to one [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// `Plugin.Activate`.
    Activate,
    /// StartMetrics, StopMetrics.
    Done,
}

/// The reply dockerd (or plugd's manager) gets for a collector's answer.
pub fn encode(answer: Result<Response, DriverError>) -> Reply {
    match answer {
        Ok(Response::Activate) => super::json(&Manifest {
            implements: vec![IMPLEMENTS.to_string()],
        }),
        Ok(Response::Done) => Reply::ok(&b"{}"[..]),
        Err(e) => e.reply(),
    }
}

/// Why a [`scrape`] failed, in words for the collector.
#[cfg(unix)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeError(pub String);

#[cfg(unix)]
impl std::fmt::Display for ScrapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(unix)]
impl std::error::Error for ScrapeError {}

/// One `GET /metrics` on the unix socket `socket`: the body, if the status is 200, it is at most
/// `max` bytes and it is UTF-8 (Prometheus text is). The whole exchange (connect, request,
/// response) ends within `timeout`.
///
/// HTTP/1.0 so that the server closes the connection after its answer and sends the body as is
/// (Go's server never chunks a 1.0 response): the client needs no parser beyond the status line
/// and the end of the headers.
#[cfg(unix)]
pub fn scrape(
    socket: &std::path::Path,
    timeout: std::time::Duration,
    max: usize,
) -> Result<String, ScrapeError> {
    use std::io::{Read as _, Write as _};
    use std::time::Instant;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        ScrapeError(format!("{what} {}: {e}", socket.display()))
    };
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| ScrapeError(format!("{} timed out", socket.display())))
    };
    let mut stream = connect(socket, left()?).map_err(|e| fail("cannot connect to", &e))?;
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| fail("cannot set a timeout on", &e))?;
    stream
        .write_all(format!("GET {PATH} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .map_err(|e| fail("cannot write to", &e))?;
    // The head (status line, headers) may take a few KiB on top of the body.
    let limit = max.saturating_add(16 << 10);
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| fail("cannot set a timeout on", &e))?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(ScrapeError(format!("{} timed out", socket.display())));
            }
            Err(e) => return Err(fail("cannot read from", &e)),
        };
        if n == 0 {
            break;
        }
        if raw.len() + n > limit {
            return Err(ScrapeError(format!(
                "{}: the metrics are larger than {max} bytes",
                socket.display()
            )));
        }
        raw.extend_from_slice(&buf[..n]);
    }
    parse_response(&raw, max).map_err(|e| ScrapeError(format!("{}: {e}", socket.display())))
}

/// The body of an HTTP/1.x response read to its end, if its status is 200.
#[cfg(unix)]
fn parse_response(raw: &[u8], max: usize) -> Result<String, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the response has no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "the response head is not text")?;
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    let (version, status) = (parts.next().unwrap_or_default(), parts.next());
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 response: {status_line:?}"));
    }
    if status != Some("200") {
        return Err(format!("GET {PATH} answered {status_line:?}"));
    }
    let chunked = head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && !v.trim().is_empty()
        })
    });
    if chunked {
        return Err("the response body is transfer-encoded (an HTTP/1.0 request got one)".into());
    }
    let body = &raw[end + 4..];
    if body.len() > max {
        return Err(format!("the metrics are larger than {max} bytes"));
    }
    String::from_utf8(body.to_vec()).map_err(|_| "the metrics are not UTF-8 text".to_string())
}

/// A unix stream connection made within `timeout`: a listener whose backlog is full (an engine
/// that stopped accepting) makes a blocking `connect` wait for the socket's send timeout, which
/// is set before connecting here (Linux honours it for unix sockets).
#[cfg(target_os = "linux")]
fn connect(
    socket: &std::path::Path,
    timeout: std::time::Duration,
) -> std::io::Result<std::os::unix::net::UnixStream> {
    use rustix::net::sockopt::{self, Timeout};
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
    let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None)?;
    sockopt::set_socket_timeout(&fd, Timeout::Send, Some(timeout))?;
    rustix::net::connect(&fd, &SocketAddrUnix::new(socket)?)?;
    Ok(std::os::unix::net::UnixStream::from(fd))
}

#[cfg(all(unix, not(target_os = "linux")))]
fn connect(
    socket: &std::path::Path,
    _timeout: std::time::Duration,
) -> std::io::Result<std::os::unix::net::UnixStream> {
    std::os::unix::net::UnixStream::connect(socket)
}

#[cfg(test)]
mod tests;
