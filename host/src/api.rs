//! The Docker Engine API's plugin routes, served on plugd's own socket (`-H`), with dockerd's JSON,
//! status codes and error bodies, so the docker CLI itself can drive plugd.
//!
//! API 1.41 is advertised (dockerd 20.10's); versioned (`/v1.N/...`) and unversioned paths are
//! accepted; versions above 1.41 or below 1.12 are refused as dockerd does. Errors are
//! `{"message": ...}` with `Content-Type: application/json`. Warnings about a plugin's config (keys
//! Docker ignores) travel in `Plugd-Warning` response headers of create and inspect, so the JSON
//! stays byte-compatible with dockerd's.
//!
//! This socket is root-equivalent (it can run plugins with any privilege): it is created 0660, owned
//! by root, like dockerd's.

use crate::distribution::auth::Credentials;
use crate::distribution::progress::{Message, Progress};
use crate::error::{Error, Result};
use crate::manager::{ListFilter, Manager};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use plugd_core::privileges::Privilege;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// The API version plugd speaks.
pub const API_VERSION: &str = "1.41";
const MIN_API_VERSION: (u32, u32) = (1, 12);
const MAX_API_VERSION: (u32, u32) = (1, 41);
/// How much of a refused upload is still read so the client sees the reply (Go's server: 256 KiB).
const DRAIN_AFTER_ERROR: usize = 1 << 20;
/// `set` bodies are a handful of strings.
const MAX_JSON_BODY: usize = 1 << 20;

/// A reply body: whole, or streamed JSON progress (pull, push, upgrade).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;
type Resp = Response<Body>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A whole body of text (the metrics listener's 404).
pub fn text_body(text: &'static str) -> Body {
    full(text)
}

/// Serves one Engine API request.
pub async fn handle(
    manager: Arc<Manager>,
    req: Request<Incoming>,
) -> std::result::Result<Resp, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = match route(&manager, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "api");
    Ok(resp)
}

fn error_response(e: &Error) -> Resp {
    let body = serde_json::json!({ "message": e.message });
    let mut r = json_response(
        StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &body,
    );
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn json_response<T: serde::Serialize>(status: StatusCode, value: &T) -> Resp {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn with_warnings(mut r: Resp, warnings: &[String]) -> Resp {
    for w in warnings {
        let printable: String = w
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&printable) {
            r.headers_mut().append("Plugd-Warning", v);
        }
    }
    r
}

/// Splits `/v1.41/x` into the version and `/x`, refusing versions dockerd 20.10 would refuse.
fn strip_version(path: &str) -> Result<&str> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(path);
    };
    let (ver, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some((maj, min)) = ver.split_once('.') else {
        return Ok(path);
    };
    let (Ok(maj), Ok(min)) = (maj.parse::<u32>(), min.parse::<u32>()) else {
        return Ok(path);
    };
    if (maj, min) > MAX_API_VERSION {
        return Err(Error::invalid(format!(
            "client version {ver} is too new. Maximum supported API version is {API_VERSION}"
        )));
    }
    if (maj, min) < MIN_API_VERSION {
        return Err(Error::invalid(format!(
            "client version {ver} is too old. Minimum supported API version is {}.{}, please upgrade your client to a newer version",
            MIN_API_VERSION.0, MIN_API_VERSION.1
        )));
    }
    Ok(tail)
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// dockerd's `httputils.BoolValue`.
fn bool_value(q: &HashMap<String, String>, key: &str) -> bool {
    let v = q
        .get(key)
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default();
    !matches!(v.as_str(), "" | "0" | "no" | "false" | "none")
}

async fn route(manager: &Arc<Manager>, req: Request<Incoming>) -> Result<Resp> {
    let full = req.uri().path().to_string();
    let path = strip_version(&full)?;
    let method = req.method().clone();
    match (&method, path) {
        (&Method::GET | &Method::HEAD, "/_ping") => Ok(ping(&method)),
        (&Method::GET, "/version") => Ok(json_response(StatusCode::OK, &version())),
        (&Method::GET, "/events") => events(manager, &query(&req)),
        (&Method::GET, "/metrics") => Ok(metrics_response(manager)),
        (&Method::GET, "/plugd/status") => Ok(json_response(StatusCode::OK, &manager.status())),
        (&Method::GET, "/plugins") => {
            let filter =
                parse_filters(query(&req).get("filters").map(String::as_str).unwrap_or(""))?;
            Ok(json_response(StatusCode::OK, &manager.list(&filter)))
        }
        (&Method::GET, "/plugins/privileges") => {
            let q = query(&req);
            let creds = credentials(&req)?;
            let remote = q.get("remote").cloned().unwrap_or_default();
            let privileges = manager.privileges(&remote, &creds).await?;
            Ok(json_response(StatusCode::OK, &privileges))
        }
        (&Method::POST, "/plugins/pull") => {
            let q = query(&req);
            let creds = credentials(&req)?;
            let remote = q.get("remote").cloned().unwrap_or_default();
            let name = q.get("name").cloned().unwrap_or_default();
            let local = crate::manager::pulled_name(&remote, &name)?;
            let granted: Vec<Privilege> = read_json(req).await?.unwrap_or_default();
            let m = manager.clone();
            let mut resp = progress_stream(move |progress| async move {
                m.pull(&remote, &name, &granted, &creds, &progress).await
            })
            .await?;
            if let Ok(v) = HeaderValue::from_str(&local) {
                resp.headers_mut().insert("Docker-Plugin-Name", v);
            }
            Ok(resp)
        }
        (&Method::POST, "/plugins/create") => {
            let name = query(&req).get("name").cloned().unwrap_or_default();
            let reader = BodyReader::spawn(req.into_body());
            let warnings = manager.create(&name, reader).await?;
            Ok(with_warnings(empty(StatusCode::NO_CONTENT), &warnings))
        }
        (_, p) if p.starts_with("/plugins/") => {
            plugin_route(manager, method, &p["/plugins/".len()..], req).await
        }
        _ => Err(Error::not_found("page not found")),
    }
}

async fn plugin_route(
    manager: &Arc<Manager>,
    method: Method,
    rest: &str,
    req: Request<Incoming>,
) -> Result<Resp> {
    let q = query(&req);
    if method == Method::DELETE {
        manager.remove(rest, bool_value(&q, "force")).await?;
        return Ok(empty(StatusCode::OK));
    }
    let Some((name, action)) = rest.rsplit_once('/') else {
        return Err(Error::not_found("page not found"));
    };
    match (method, action) {
        (Method::GET, "json") => {
            let (plugin, warnings) = manager.inspect(name)?;
            Ok(with_warnings(
                json_response(StatusCode::OK, &plugin),
                &warnings,
            ))
        }
        (Method::GET, "logs") => plugin_logs(manager, name, &q),
        (Method::GET, "logstreams") => {
            let streams = manager.log_streams(name)?;
            Ok(json_response(StatusCode::OK, &streams))
        }
        (Method::POST, "enable") => {
            let raw = q.get("timeout").map(String::as_str).unwrap_or("");
            let secs: i64 = raw.parse().map_err(|_| {
                Error::invalid(format!("strconv.Atoi: parsing {raw:?}: invalid syntax"))
            })?;
            let timeout = Duration::from_secs(secs.max(0) as u64);
            if bool_value(&q, "check") {
                // On a task of its own: a client that goes away does not cut the check's cleanup
                // short.
                let (m, name) = (manager.clone(), name.to_string());
                tokio::spawn(async move { m.enable_checked(&name, timeout).await })
                    .await
                    .map_err(|e| Error::system(format!("the check task failed: {e}")))??;
            } else {
                manager.enable(name, timeout).await?;
            }
            Ok(empty(StatusCode::OK))
        }
        (Method::POST, "check") => {
            let opts = check_options(&q)?;
            let (m, name) = (manager.clone(), name.to_string());
            let matrix = tokio::spawn(async move { m.check(&name, &opts).await })
                .await
                .map_err(|e| Error::system(format!("the check task failed: {e}")))??;
            Ok(json_response(StatusCode::OK, &matrix))
        }
        (Method::POST, "disable") => {
            manager.disable(name, bool_value(&q, "force")).await?;
            Ok(empty(StatusCode::OK))
        }
        (Method::POST, "set") => {
            let args: Vec<String> = read_json(req).await?.unwrap_or_default();
            manager.set(name, &args).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (Method::POST, "push") => {
            let creds = credentials(&req)?;
            let (m, name) = (manager.clone(), name.to_string());
            // Resolved now, so an unknown plugin is a 404 rather than a streamed error.
            manager.inspect(&name)?;
            progress_stream(move |progress| async move { m.push(&name, &creds, &progress).await })
                .await
        }
        (Method::POST, "upgrade") => {
            let creds = credentials(&req)?;
            let remote = q.get("remote").cloned().unwrap_or_default();
            manager.inspect(name)?;
            let granted: Vec<Privilege> = read_json(req).await?.unwrap_or_default();
            let (m, name) = (manager.clone(), name.to_string());
            progress_stream(move |progress| async move {
                m.upgrade(&name, &remote, &granted, &creds, &progress).await
            })
            .await
        }
        _ => Err(Error::not_found("page not found")),
    }
}

/// `runtime=native|wasm|both` (default: the plugin's own) and `dockerHost=unix://…` of
/// `POST /plugins/{name}/check`.
fn check_options(q: &HashMap<String, String>) -> Result<crate::manager::CheckOptions> {
    use plugd_core::check::rows::Column;
    let runtimes = match q.get("runtime").map(String::as_str).unwrap_or("") {
        "" => Vec::new(),
        "native" => vec![Column::Native],
        "wasm" => vec![Column::Wasm],
        "both" => vec![Column::Native, Column::Wasm],
        other => {
            return Err(Error::invalid(format!(
                "invalid runtime {other:?}: native, wasm or both"
            )));
        }
    };
    let docker_host = q.get("dockerHost").filter(|h| !h.is_empty()).cloned();
    if let Some(h) = docker_host.as_ref().filter(|h| !h.starts_with("unix:///")) {
        return Err(Error::invalid(format!(
            "invalid dockerHost {h:?}: a unix:// socket of a dockerd on this host"
        )));
    }
    Ok(crate::manager::CheckOptions {
        runtimes,
        docker_host,
    })
}

/// The request's `X-Registry-Auth` credentials (anonymous without the header).
fn credentials(req: &Request<Incoming>) -> Result<Credentials> {
    Credentials::from_header(req.headers().get("X-Registry-Auth").map(|v| v.as_bytes()))
        .map_err(Error::invalid)
}

/// Runs a registry operation with a JSON progress stream, as dockerd does: a failure before the
/// first progress message is an ordinary error reply (status and `{"message"}`); after it, the
/// reply is already 200 and the failure ends the stream as `{"errorDetail":…,"error":…}`. The
/// operation runs on its own task: a client that goes away does not cut it short.
async fn progress_stream<F, Fut, T>(op: F) -> Result<Resp>
where
    F: FnOnce(Progress) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (progress, mut rx) = Progress::channel();
    let mut task = tokio::spawn(op(progress));
    let first = tokio::select! {
        biased;
        m = rx.recv() => m,
        done = &mut task => return finished(done, rx),
    };
    match first {
        Some(m) => Ok(stream_response(vec![m], rx, Some(task))),
        // Every sender is gone: the operation ended without a word.
        None => finished(task.await, rx),
    }
}

/// The reply of an operation that ended before it reported progress.
fn finished<T: Send + 'static>(
    done: std::result::Result<Result<T>, tokio::task::JoinError>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Message>,
) -> Result<Resp> {
    match done {
        Ok(Ok(_)) => Ok(stream_response::<T>(Vec::new(), rx, None)),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(Error::system(format!("registry operation failed: {e}"))),
    }
}

fn line(m: &impl serde::Serialize) -> Bytes {
    let mut v = serde_json::to_vec(m).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

fn stream_response<T: Send + 'static>(
    first: Vec<Message>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Message>,
    task: Option<tokio::task::JoinHandle<Result<T>>>,
) -> Resp {
    let (tx, body) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut open = true;
        for m in first {
            open = open && tx.send(line(&m)).await.is_ok();
        }
        while let Some(m) = rx.recv().await {
            open = open && tx.send(line(&m)).await.is_ok();
        }
        let failure = match task {
            Some(t) => match t.await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.message),
                Err(e) => Some(format!("registry operation failed: {e}")),
            },
            None => None,
        };
        if let Some(message) = failure
            && open
        {
            let _ = tx
                .send(line(&serde_json::json!({
                    "errorDetail": { "message": message },
                    "error": message,
                })))
                .await;
        }
    });
    let stream = ChannelStream(body);
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The Prometheus text exposition of every plugin's metrics (`GET /metrics`, also served on
/// `--metrics-addr`).
pub fn metrics_response(manager: &Manager) -> Resp {
    let mut r = Response::new(full(manager.metrics_text()));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// A `since`/`until` query value, if given.
fn timestamp(q: &HashMap<String, String>, key: &str) -> Result<Option<i64>> {
    match q.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(raw) => crate::observe::events::parse_timestamp(raw)
            .map(Some)
            .map_err(|e| Error::invalid(format!("{key}: {e}"))),
    }
}

/// A streamed reply of JSON lines, fed by `feed` until it returns or the client goes away.
fn json_lines<F, Fut>(feed: F) -> Resp
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, body) = tokio::sync::mpsc::channel::<Bytes>(64);
    let closed = tx.clone();
    let fed = feed(tx);
    tokio::spawn(async move {
        // A client that goes away ends the feed even while nothing is being sent.
        tokio::select! {
            () = fed => {}
            () = closed.closed() => {}
        }
    });
    let mut r = Response::new(StreamBody::new(ChannelStream(body)).boxed_unsync());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `GET /events?since=&until=&filters=`: dockerd's plugin events (`observe::events`): the kept
/// ones from `since`, then every new one, until `until` (or the client goes away).
fn events(manager: &Arc<Manager>, q: &HashMap<String, String>) -> Result<Resp> {
    use crate::observe::events::{Filter, now};
    use tokio::sync::broadcast::error::RecvError;
    let filter =
        Filter::parse(q.get("filters").map_or("", String::as_str)).map_err(Error::invalid)?;
    let since = timestamp(q, "since")?;
    let until = timestamp(q, "until")?;
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        return Err(Error::invalid("`since` time cannot be after `until` time"));
    }
    let (backlog, mut rx) = manager.telemetry().events().subscribe(since);
    Ok(json_lines(move |tx| async move {
        let past = |m: &crate::observe::events::Message| until.is_some_and(|u| m.time_nano > u);
        for m in backlog {
            if past(&m) {
                return;
            }
            if filter.includes(&m) && tx.send(line(&*m)).await.is_err() {
                return;
            }
        }
        let deadline = until.map(|u| {
            let wait = u.saturating_sub(now()).max(0) as u64;
            tokio::time::Instant::now() + Duration::from_nanos(wait)
        });
        loop {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                    Ok(next) => next,
                    Err(_) => return,
                },
                None => rx.recv().await,
            };
            match next {
                Ok(m) if past(&m) => return,
                Ok(m) => {
                    if filter.includes(&m) && tx.send(line(&*m)).await.is_err() {
                        return;
                    }
                }
                // A reader that fell behind loses the oldest, as with dockerd.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            }
        }
    }))
}

/// `GET /plugins/{name}/logs?follow=&tail=&since=`: the plugin's own log (`observe::plugin_log`)
/// as JSON lines in docker's json-file shape; with `follow`, then every new entry until the
/// client goes away or the plugin is removed.
fn plugin_logs(manager: &Arc<Manager>, name: &str, q: &HashMap<String, String>) -> Result<Resp> {
    use crate::observe::plugin_log::{Entry, Query};
    use tokio::sync::broadcast::error::RecvError;
    let telemetry = manager.plugin_log(name)?;
    let tail = match q.get("tail").map(|s| s.trim()) {
        None | Some("") | Some("all") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            Error::invalid(format!("tail: {n:?} is not a number of lines or \"all\""))
        })?),
    };
    let query = Query {
        tail,
        since_nanos: timestamp(q, "since")?,
    };
    let follow = bool_value(q, "follow");
    Ok(json_lines(move |tx| async move {
        // Moved into the read: a follower must not keep the plugin's log (and its channel)
        // alive after `rm`, or it would never see the end.
        let t = telemetry;
        let Ok((entries, rx)) =
            tokio::task::spawn_blocking(move || t.log.read(query, follow)).await
        else {
            return;
        };
        for e in entries {
            if tx.send(line(&e)).await.is_err() {
                return;
            }
        }
        let Some(mut rx) = rx else { return };
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if tx.send(line(&*e)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let note = Entry {
                        log: format!("[{n} entries skipped: this reader fell behind]\n"),
                        stream: "plugd".into(),
                        time: chrono::Utc::now()
                            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                    };
                    if tx.send(line(&note)).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }))
}

/// A body read from a channel of chunks.
struct ChannelStream(tokio::sync::mpsc::Receiver<Bytes>);

impl futures_core::Stream for ChannelStream {
    type Item = std::result::Result<hyper::body::Frame<Bytes>, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// dockerd's `httputils.ReadJSON`: JSON content type (or none), one value, nothing after it.
async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<Option<T>> {
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let media = ct.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case("application/json") {
            return Err(Error::invalid(format!(
                "unsupported Content-Type header ({ct}): must be 'application/json'"
            )));
        }
    }
    let body = Limited::new(req.into_body(), MAX_JSON_BODY)
        .collect()
        .await
        .map_err(|e| Error::invalid(format!("reading request body: {e}")))?
        .to_bytes();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let mut de = serde_json::Deserializer::from_slice(&body);
    let value =
        T::deserialize(&mut de).map_err(|e| Error::invalid(format!("invalid JSON: {e}")))?;
    de.end()
        .map_err(|_| Error::invalid("unexpected content after JSON"))?;
    Ok(Some(value))
}

/// The Engine API's `filters` query value as keys and their values: `{"k":{"v":true}}` (current
/// clients) or `{"k":["v"]}` (old ones); an empty string is no filter. One reader for `/plugins`
/// and `/events`.
pub(crate) fn filter_args(raw: &str) -> std::result::Result<Vec<(String, Vec<String>)>, String> {
    if raw.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| format!("invalid filter: {e}"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| "invalid filter".to_string())?;
    obj.iter()
        .map(|(key, vals)| {
            let vals: Vec<String> = match vals {
                serde_json::Value::Object(m) => m
                    .iter()
                    .filter(|(_, v)| v.as_bool() == Some(true))
                    .map(|(k, _)| k.clone())
                    .collect(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                _ => return Err(format!("invalid filter '{key}'")),
            };
            Ok((key.clone(), vals))
        })
        .collect()
}

/// `GET /plugins`' filters: `enabled` and `capability`.
fn parse_filters(raw: &str) -> Result<ListFilter> {
    let mut filter = ListFilter::default();
    for (key, vals) in filter_args(raw).map_err(Error::invalid)? {
        match key.as_str() {
            "enabled" => {
                filter.enabled = match vals.as_slice() {
                    [] => None,
                    [v] if v == "true" => Some(true),
                    [v] if v == "false" => Some(false),
                    [v, ..] => return Err(Error::invalid(format!("invalid filter 'enabled={v}'"))),
                }
            }
            "capability" => {
                for v in vals {
                    let re = regex_lite::Regex::new(&v).map_err(|e| {
                        Error::invalid(format!("invalid filter 'capability={v}': {e}"))
                    })?;
                    filter.capability.push(re);
                }
            }
            other => return Err(Error::invalid(format!("invalid filter '{other}'"))),
        }
    }
    Ok(filter)
}

fn ping(method: &Method) -> Resp {
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from_static(b"OK")
    };
    let mut r = Response::new(full(body));
    let h = r.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert(
        "Cache-Control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn version() -> serde_json::Value {
    let v = env!("CARGO_PKG_VERSION");
    serde_json::json!({
        "Platform": { "Name": "plugd" },
        "Components": [{ "Name": "plugd", "Version": v, "Details": { "ApiVersion": API_VERSION, "MinAPIVersion": "1.12" } }],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": "1.12",
        "Os": "linux",
        "Arch": std::env::consts::ARCH,
    })
}

/// Feeds a streaming request body to blocking code (the tar reader) through a bounded channel, so a
/// large rootfs is never held in memory.
pub struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<std::result::Result<Bytes, String>>,
    current: Bytes,
}

impl BodyReader {
    /// Starts pumping `body` on the current tokio runtime; read it from a blocking thread only.
    pub fn spawn(mut body: Incoming) -> BodyReader {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(frame) = body.frame().await {
                let item = match frame {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => Ok(data),
                        Err(_) => continue,
                    },
                    Err(e) => Err(e.to_string()),
                };
                if item.is_err() {
                    // Hand the reader the error, so it says "connection reset" rather than
                    // "truncated archive".
                    let _ = tx.send(item).await;
                    break;
                }
                if tx.send(item).await.is_err() {
                    // Refused early (the name exists, a bad entry): read on a little, as Go's
                    // server does, so the client gets the error reply instead of a broken pipe.
                    let mut drained = 0usize;
                    while drained < DRAIN_AFTER_ERROR {
                        match body.frame().await {
                            Some(Ok(f)) => drained += f.data_ref().map_or(0, |d| d.len()),
                            _ => break,
                        }
                    }
                    break;
                }
            }
        });
        BodyReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(std::io::Error::other(format!("request body: {e}"))),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_checked_like_dockerd() {
        assert_eq!(strip_version("/v1.41/plugins").unwrap(), "/plugins");
        assert_eq!(
            strip_version("/v1.24/plugins/x/json").unwrap(),
            "/plugins/x/json"
        );
        assert_eq!(strip_version("/plugins").unwrap(), "/plugins");
        assert_eq!(
            strip_version("/v1.42/plugins").unwrap_err().message,
            "client version 1.42 is too new. Maximum supported API version is 1.41"
        );
        assert!(
            strip_version("/v1.11/plugins")
                .unwrap_err()
                .message
                .starts_with("client version 1.11 is too old")
        );
    }

    #[test]
    fn filters_accept_both_encodings_and_refuse_unknown_keys() {
        assert_eq!(
            parse_filters(r#"{"enabled":{"true":true}}"#)
                .unwrap()
                .enabled,
            Some(true)
        );
        assert_eq!(
            parse_filters(r#"{"enabled":["false"]}"#).unwrap().enabled,
            Some(false)
        );
        assert_eq!(
            parse_filters(r#"{"enabled":{"maybe":true}}"#)
                .unwrap_err()
                .message,
            "invalid filter 'enabled=maybe'"
        );
        assert_eq!(
            parse_filters(r#"{"color":{"red":true}}"#)
                .unwrap_err()
                .message,
            "invalid filter 'color'"
        );
        assert_eq!(
            parse_filters(r#"{"capability":{"volume":true}}"#)
                .unwrap()
                .capability
                .len(),
            1
        );
    }

    #[test]
    fn force_values_follow_bool_value() {
        let q = |v: &str| HashMap::from([("force".to_string(), v.to_string())]);
        assert!(bool_value(&q("1"), "force"));
        assert!(bool_value(&q("True"), "force"));
        assert!(!bool_value(&q("0"), "force"));
        assert!(!bool_value(&q("false"), "force"));
        assert!(!bool_value(&HashMap::new(), "force"));
    }
}
