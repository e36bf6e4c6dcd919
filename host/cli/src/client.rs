//! The HTTP client side: talks to the daemon's unix socket the way the docker CLI's API client does.
//!
//! Requests go to `/v1.41/…` directly (no `HEAD /_ping` version negotiation: plugd speaks exactly
//! API 1.41). Errors are mapped to the docker client's texts: a status ≥ 400 becomes
//! `Error response from daemon: <message>` (from `{"message": …}` when the response is
//! `application/json`, the trimmed body otherwise), and a socket that cannot be reached becomes
//! `Cannot connect to the plugd daemon at unix:///… Is the plugd daemon running?`.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt as _, UnixConnector};
use tokio::sync::mpsc;

use super::value::go_json_string;

/// The API version prefixed to every path.
pub(crate) const API_PREFIX: &str = "/v1.41";

/// Response header carrying a warning to show the user (config keys Docker ignores, …).
pub(crate) const WARNING_HEADER: &str = "plugd-warning";

/// What the docker client puts in `Host:` for unix sockets.
const HOST_HEADER: &str = "api.moby.localhost";

/// A failed API call, with the text the docker CLI prints for it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The daemon answered with an error status.
    #[error("Error response from daemon: {0}")]
    Daemon(String),
    /// The daemon answered with an error status and an unusable body.
    #[error("{0}")]
    BadResponse(String),
    /// Nothing listens on the socket (or it does not exist).
    #[error("Cannot connect to the plugd daemon at {0}. Is the plugd daemon running?")]
    Connect(String),
    /// The socket exists but may not be opened.
    #[error(
        "permission denied while trying to connect to the plugd daemon socket at {host}: {detail}"
    )]
    PermissionDenied { host: String, detail: String },
    /// The connection broke during the exchange.
    #[error("error during connect: {0}")]
    Transport(String),
}

/// A request body: empty, in memory, or streamed from a producer thread (sent chunked).
#[derive(Debug)]
pub(crate) enum ReqBody {
    /// No body.
    Empty,
    /// A body held in memory.
    Full(Option<Bytes>),
    /// A body of unknown length produced elsewhere; an `Err` aborts the request.
    Stream(mpsc::Receiver<io::Result<Bytes>>),
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(b) => b.is_none(),
            ReqBody::Stream(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty | ReqBody::Full(None) => SizeHint::with_exact(0),
            ReqBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ReqBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// A successful response.
#[derive(Debug)]
pub(crate) struct Response {
    /// The body, read whole (plugin API responses are small).
    pub body: Bytes,
    /// `Plugd-Warning` header values, in order.
    pub warnings: Vec<String>,
}

/// A response whose body is read as it arrives ([`io::Read`]), on the client's runtime.
pub(crate) struct StreamResponse<'a> {
    runtime: &'a tokio::runtime::Runtime,
    /// `Plugd-Warning` header values, in order.
    pub warnings: Vec<String>,
    /// All response headers (`Docker-Plugin-Name` after a pull).
    pub headers: HeaderMap,
    body: hyper::body::Incoming,
    pending: Bytes,
    done: bool,
}

impl io::Read for StreamResponse<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.runtime.block_on(self.body.frame()) {
                None => self.done = true,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending = data;
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Err(io::Error::other(e));
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending.split_to(n));
        Ok(n)
    }
}

/// A client bound to one daemon socket, with its own single-threaded runtime.
pub(crate) struct ApiClient {
    host: String,
    socket: PathBuf,
    client: Client<UnixConnector, ReqBody>,
    runtime: tokio::runtime::Runtime,
}

/// Extracts the socket path from a `-H` value; only `unix://` is supported.
pub(crate) fn socket_path(host: &str) -> Result<PathBuf, String> {
    match host.strip_prefix("unix://") {
        Some("") => Ok(PathBuf::from(super::DEFAULT_SOCKET)),
        Some(path) => Ok(PathBuf::from(path)),
        None => Err(format!(
            "unsupported host {host:?}: plugd listens on unix sockets only (unix:///path)"
        )),
    }
}

impl ApiClient {
    /// A client for the daemon at `host` (`unix:///path`).
    pub fn new(host: &str) -> Result<ApiClient, String> {
        let socket = socket_path(host)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the client runtime: {e}"))?;
        let host = if host == "unix://" {
            format!("unix://{}", socket.display())
        } else {
            host.to_string()
        };
        Ok(ApiClient {
            host,
            socket,
            client: Client::unix(),
            runtime,
        })
    }

    /// Sends one request to `path_and_query` (without the version prefix) and reads the response.
    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: ReqBody,
        content_type: Option<&str>,
    ) -> Result<Response, ApiError> {
        self.request_with(method, path_and_query, body, content_type, &[])
    }

    /// [`ApiClient::request`] with extra request headers (`X-Registry-Auth`).
    pub fn request_with(
        &self,
        method: Method,
        path_and_query: &str,
        body: ReqBody,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Response, ApiError> {
        let stream = self.request_stream(method, path_and_query, body, content_type, headers)?;
        let warnings = stream.warnings.clone();
        let body = self
            .runtime
            .block_on(stream.body.collect())
            .map_err(|e| ApiError::Transport(e.to_string()))?
            .to_bytes();
        Ok(Response { body, warnings })
    }

    /// Sends one request and returns as soon as the response head arrived, so a long body (the
    /// JSON progress stream of a pull or push) can be shown while it is produced. An error status
    /// still reads the (short) body for the daemon's message.
    pub fn request_stream(
        &self,
        method: Method,
        path_and_query: &str,
        body: ReqBody,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<StreamResponse<'_>, ApiError> {
        let full = format!("{API_PREFIX}{path_and_query}");
        let uri: hyper::Uri = hyperlocal::Uri::new(&self.socket, &full).into();
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, HOST_HEADER)
            .header(
                USER_AGENT,
                concat!("plugd/", env!("CARGO_PKG_VERSION"), " (linux)"),
            );
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(body)
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        self.runtime.block_on(async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| self.transport_error(e))?;
            let (parts, body) = resp.into_parts();
            if parts.status.as_u16() >= 400 {
                let body = body
                    .collect()
                    .await
                    .map_err(|e| ApiError::Transport(e.to_string()))?
                    .to_bytes();
                return Err(response_error(parts.status, &parts.headers, &body, &full));
            }
            Ok(StreamResponse {
                runtime: &self.runtime,
                warnings: warnings(&parts.headers),
                headers: parts.headers,
                body,
                pending: Bytes::new(),
                done: false,
            })
        })
    }

    fn transport_error(&self, e: hyper_util::client::legacy::Error) -> ApiError {
        let io_err = find_io_error(&e);
        if e.is_connect() {
            if let Some(ioe) = io_err
                && ioe.kind() == io::ErrorKind::PermissionDenied
            {
                return ApiError::PermissionDenied {
                    host: self.host.clone(),
                    detail: format!(
                        "dial unix {}: connect: permission denied",
                        self.socket.display()
                    ),
                };
            }
            return ApiError::Connect(self.host.clone());
        }
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        ApiError::Transport(msg)
    }
}

fn find_io_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(ioe) = err.downcast_ref::<io::Error>() {
            return Some(ioe);
        }
        cur = err.source();
    }
    None
}

fn warnings(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(WARNING_HEADER)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// The docker client's `checkResponseErr`.
fn response_error(status: StatusCode, headers: &HeaderMap, body: &[u8], path: &str) -> ApiError {
    let status_text = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    if body.is_empty() {
        return ApiError::BadResponse(format!(
            "request returned {} for API route and version http://{HOST_HEADER}{path}, check if the server supports the requested API version",
            status_text.trim_end()
        ));
    }
    let is_json = headers
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes() == b"application/json");
    if !is_json {
        return ApiError::Daemon(String::from_utf8_lossy(body).trim().to_string());
    }
    #[derive(serde::Deserialize)]
    struct ErrorResponse {
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<ErrorResponse>(body) {
        Err(e) => ApiError::BadResponse(format!("Error reading JSON: {e}")),
        Ok(r) if r.message.is_empty() => ApiError::Daemon(format!(
            "API returned a {} ({}) but provided no error-message",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )),
        Ok(r) => ApiError::Daemon(r.message.trim().to_string()),
    }
}

/// Escapes a plugin name for use as a path segment, as Go's `url.URL.String` does (`/` and `:`
/// stay, so `vieux/sshfs:latest` reaches the server's `{name:.*}` route unchanged).
pub(crate) fn escape_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub(crate) fn escape_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The `filters` query value for `plugin ls` filters (`{"enabled":{"true":true}}`), as the docker
/// client encodes `filters.Args`: keys sorted, values a set. `None` when there are no filters.
pub(crate) fn filters_json(filters: &[(String, String)]) -> Option<String> {
    if filters.is_empty() {
        return None;
    }
    let mut map: BTreeMap<&str, BTreeMap<&str, bool>> = BTreeMap::new();
    for (k, v) in filters {
        map.entry(k).or_default().insert(v, true);
    }
    let fields: Vec<String> = map
        .iter()
        .map(|(k, vals)| {
            let inner: Vec<String> = vals
                .keys()
                .map(|v| format!("{}:true", go_json_string(v)))
                .collect();
            format!("{}:{{{}}}", go_json_string(k), inner.join(","))
        })
        .collect();
    Some(format!("{{{}}}", fields.join(",")))
}

/// The JSON body of `POST /plugins/{name}/set`, encoded as Go's `json.Marshal([]string)`.
pub(crate) fn set_body(args: &[String]) -> String {
    let items: Vec<String> = args.iter().map(|a| go_json_string(a)).collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_encode_like_the_docker_client() {
        let f = |pairs: &[(&str, &str)]| {
            let v: Vec<(String, String)> = pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            filters_json(&v)
        };
        assert_eq!(f(&[]), None);
        assert_eq!(
            f(&[("enabled", "true")]).unwrap(),
            r#"{"enabled":{"true":true}}"#
        );
        let all = f(&[
            ("enabled", "true"),
            ("capability", "volumedriver"),
            ("enabled", "false"),
            ("enabled", "true"),
        ]);
        let all = all.unwrap();
        assert_eq!(
            all,
            r#"{"capability":{"volumedriver":true},"enabled":{"false":true,"true":true}}"#
        );
        // Exactly the query docker 28.2.2 sent for the same three filters.
        assert_eq!(
            escape_query(&all),
            "%7B%22capability%22%3A%7B%22volumedriver%22%3Atrue%7D%2C%22enabled%22%3A%7B%22false%22%3Atrue%2C%22true%22%3Atrue%7D%7D"
        );
        assert_eq!(
            f(&[("capability", "a<b")]).unwrap(),
            r#"{"capability":{"a\u003cb":true}}"#
        );
    }

    #[test]
    fn set_args_are_passed_verbatim() {
        let args = vec![
            "DEBUG=2".to_string(),
            "A B=c\"d".to_string(),
            "m.source=/x<y".to_string(),
        ];
        assert_eq!(
            set_body(&args),
            r#"["DEBUG=2","A B=c\"d","m.source=/x\u003cy"]"#
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_path("abc/def:v1"), "abc/def:v1");
        assert_eq!(escape_path("a b?#%"), "a%20b%3F%23%25");
        assert_eq!(escape_query("a b/c:d"), "a+b%2Fc%3Ad");
    }

    #[test]
    fn error_bodies_like_the_docker_client() {
        let mut json = HeaderMap::new();
        json.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        let e = response_error(
            StatusCode::NOT_FOUND,
            &json,
            br#"{"message":"plugin \"x\" not found"}"#,
            "/v1.41/x",
        );
        assert_eq!(
            e.to_string(),
            "Error response from daemon: plugin \"x\" not found"
        );
        let e = response_error(StatusCode::NOT_FOUND, &json, b"{}", "/v1.41/x");
        assert_eq!(
            e.to_string(),
            "Error response from daemon: API returned a 404 (Not Found) but provided no error-message"
        );
        let e = response_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &HeaderMap::new(),
            b"boom\n",
            "/v1.41/x",
        );
        assert_eq!(e.to_string(), "Error response from daemon: boom");
        let e = response_error(
            StatusCode::NOT_FOUND,
            &HeaderMap::new(),
            b"",
            "/v1.41/plugins",
        );
        assert_eq!(
            e.to_string(),
            "request returned 404 Not Found for API route and version http://api.moby.localhost/v1.41/plugins, check if the server supports the requested API version"
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(
            socket_path("unix:///run/x.sock").unwrap(),
            PathBuf::from("/run/x.sock")
        );
        assert_eq!(
            socket_path("unix://").unwrap(),
            PathBuf::from(crate::DEFAULT_SOCKET)
        );
        assert!(socket_path("tcp://1.2.3.4:2375").is_err());
    }
}
