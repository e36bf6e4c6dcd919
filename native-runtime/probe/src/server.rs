//! The probe's HTTP/1.1 side: one request per connection, strictly read (a request line,
//! headers, a `Content-Length` or chunked body of at most [`MAX_BODY`]), and the routes: the
//! check itself (`Probe.Check`) and, for a run dockerd manages (which reaches a plugin only through
//! its Engine API), the same check as a volume: `VolumeDriver.Create` with the plan in
//! `Opts.plan` runs it, `VolumeDriver.Get` returns the report in the volume's `Status`.

use crate::check;
use plugd_core::check::probe::{CHECK_METHOD, Plan, Report};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::sync::Mutex;

/// Largest request body read (a plan is far smaller).
pub const MAX_BODY: usize = 1 << 20;
/// Largest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";

/// A request as read.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// `POST`, ...
    pub method: String,
    /// `/Plugin.Activate`, ...
    pub path: String,
    /// The body.
    pub body: Vec<u8>,
}

/// Reads one request; errors name what was wrong.
pub fn read_request(r: &mut impl BufRead) -> Result<Request, String> {
    let mut head_len = 0;
    let mut line = read_line(r, &mut head_len)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("bad request line {line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unsupported version {version:?}"));
    }
    let (method, path) = (method.to_owned(), path.to_owned());
    let (mut length, mut chunked) = (None, false);
    loop {
        line = read_line(r, &mut head_len)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            let n: usize = v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length headers".into());
            }
            length = Some(n);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            if !v.eq_ignore_ascii_case("chunked") {
                return Err(format!("unsupported Transfer-Encoding {v:?}"));
            }
            chunked = true;
        }
    }
    let body = match (chunked, length) {
        (true, Some(_)) => return Err("both Content-Length and chunked".into()),
        (true, None) => read_chunked(r)?,
        (false, n) => {
            let n = n.unwrap_or(0);
            if n > MAX_BODY {
                return Err(format!("body of {n} bytes is over {MAX_BODY}"));
            }
            let mut body = vec![0; n];
            r.read_exact(&mut body).map_err(|e| format!("body: {e}"))?;
            body
        }
    };
    Ok(Request { method, path, body })
}

fn read_line(r: &mut impl BufRead, head_len: &mut usize) -> Result<String, String> {
    let mut buf = Vec::new();
    let limit = (MAX_HEAD - *head_len) as u64 + 1;
    r.take(limit)
        .read_until(b'\n', &mut buf)
        .map_err(|e| format!("head: {e}"))?;
    *head_len += buf.len();
    if *head_len > MAX_HEAD {
        return Err(format!("request head over {MAX_HEAD} bytes"));
    }
    if buf.pop() != Some(b'\n') {
        return Err("request ended in its head".into());
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| "request head is not UTF-8".into())
}

fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut head_len = 0;
    loop {
        let line = read_line(r, &mut head_len)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size, 16).map_err(|_| format!("bad chunk size {size:?}"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(r, &mut head_len)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(format!("body over {MAX_BODY} bytes"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])
            .map_err(|e| format!("chunk: {e}"))?;
        if !read_line(r, &mut head_len)?.is_empty() {
            return Err("chunk not followed by CRLF".into());
        }
    }
}

/// Writes a reply with `Connection: close`.
pub fn write_reply(w: &mut impl Write, status: u16, body: &Value) -> std::io::Result<()> {
    let body = serde_json::to_vec(body).unwrap_or_default();
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    write!(
        w,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    w.write_all(&body)?;
    w.flush()
}

/// The reports of checks run as volumes, by volume name.
#[derive(Default)]
pub struct Volumes(Mutex<BTreeMap<String, Report>>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameOnly {
    #[serde(rename = "Name")]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Opts", default)]
    opts: Option<BTreeMap<String, String>>,
}

/// `Mount`/`Unmount` also carry the caller's `ID`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameAndId {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "ID", default)]
    _id: String,
}

fn err(msg: impl Into<String>) -> (u16, Value) {
    (200, json!({ "Err": msg.into() }))
}

/// Parses a plan strictly.
pub fn parse_plan(body: &[u8]) -> Result<Plan, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad plan: {e}"))
}

impl Volumes {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Report>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer to a `POST` of `path` with `body`; `run` runs a check.
    pub fn route(&self, path: &str, body: &[u8], run: &dyn Fn(&Plan) -> Report) -> (u16, Value) {
        let method = path.strip_prefix('/').unwrap_or(path);
        match method {
            "Plugin.Activate" => (200, json!({"Implements": ["VolumeDriver"]})),
            m if m == CHECK_METHOD => match parse_plan(body) {
                Ok(plan) => (200, serde_json::to_value(run(&plan)).unwrap_or(Value::Null)),
                Err(e) => (400, json!({ "Err": e })),
            },
            "VolumeDriver.Create" => {
                let c: Create = match serde_json::from_slice(body) {
                    Ok(c) => c,
                    Err(e) => return err(format!("bad Create request: {e}")),
                };
                let Some(plan) = c.opts.as_ref().and_then(|o| o.get("plan")) else {
                    return err("Create needs the plan in Opts.plan");
                };
                match parse_plan(plan.as_bytes()) {
                    Ok(plan) => {
                        let report = run(&plan);
                        self.lock().insert(c.name, report);
                        err("")
                    }
                    Err(e) => err(e),
                }
            }
            "VolumeDriver.Get" => match serde_json::from_slice::<NameOnly>(body) {
                Ok(n) => match self.lock().get(&n.name) {
                    Some(r) => (
                        200,
                        json!({"Volume": {"Name": n.name, "Mountpoint": "", "Status": {"plugd-check": r}}, "Err": ""}),
                    ),
                    None => err(format!("no such volume {:?}", n.name)),
                },
                Err(e) => err(format!("bad Get request: {e}")),
            },
            "VolumeDriver.List" => {
                let vols: Vec<Value> = self
                    .lock()
                    .keys()
                    .map(|n| json!({"Name": n, "Mountpoint": ""}))
                    .collect();
                (200, json!({"Volumes": vols, "Err": ""}))
            }
            "VolumeDriver.Remove" => match serde_json::from_slice::<NameOnly>(body) {
                Ok(n) => {
                    self.lock().remove(&n.name);
                    err("")
                }
                Err(e) => err(format!("bad Remove request: {e}")),
            },
            "VolumeDriver.Path" => match serde_json::from_slice::<NameOnly>(body) {
                Ok(n) if self.lock().contains_key(&n.name) => {
                    (200, json!({"Mountpoint": "", "Err": ""}))
                }
                Ok(n) => err(format!("no such volume {:?}", n.name)),
                Err(e) => err(format!("bad Path request: {e}")),
            },
            "VolumeDriver.Mount" => match serde_json::from_slice::<NameAndId>(body) {
                Ok(n) => err(format!("{:?} is a check report, not mountable", n.name)),
                Err(e) => err(format!("bad Mount request: {e}")),
            },
            "VolumeDriver.Unmount" => err(""),
            "VolumeDriver.Capabilities" => (200, json!({"Capabilities": {"Scope": "local"}})),
            _ => (200, json!({})),
        }
    }
}

/// Serves one connection with the real check.
pub fn serve(stream: &std::os::unix::net::UnixStream, volumes: &Volumes) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let mut reader = std::io::BufReader::new(stream);
    let (status, body) = match read_request(&mut reader) {
        Ok(r) if r.method != "POST" => (
            405,
            json!({"Err": format!("method {} not allowed", r.method)}),
        ),
        Ok(r) => volumes.route(&r.path, &r.body, &check::run),
        Err(e) => (400, json!({ "Err": e })),
    };
    let mut w = stream;
    write_reply(&mut w, status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugd_core::check::probe::Attempt;

    fn req(text: &str) -> Result<Request, String> {
        read_request(&mut std::io::BufReader::new(text.as_bytes()))
    }

    #[test]
    fn requests_are_read_with_either_framing() {
        let r = req("POST /Probe.Check HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/Probe.Check")
        );
        assert_eq!(r.body, b"{}");
        let r = req(
            "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n1\r\n \r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"{} ");
    }

    #[test]
    fn bad_requests_say_what_was_wrong() {
        let big = format!(
            "POST /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(req(&big).unwrap_err().contains("over"), "size");
        assert!(
            req("GARBAGE\r\n\r\n")
                .unwrap_err()
                .contains("bad request line")
        );
        assert!(
            req("POST /x HTTP/1.1\r\nContent-Length: x\r\n\r\n")
                .unwrap_err()
                .contains("Content-Length")
        );
        let long = format!("POST /x HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(req(&long).unwrap_err().contains("head over"));
        assert!(req("POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\n{}").is_err());
    }

    fn fake(plan: &Plan) -> Report {
        Report {
            probe: "native test".into(),
            attempts: vec![Attempt::ok("args", plan.nonce.clone())],
        }
    }

    #[test]
    fn check_answers_the_report_or_400() {
        let v = Volumes::default();
        let (s, body) = v.route("/Probe.Check", br#"{"nonce":"n","host":{"loopback_port":1,"canary":"/c","pid":1,"comm":"p"},"mounts":[],"propagated_mount":null,"devices":[],"capabilities":[]}"#, &fake);
        assert_eq!(s, 200);
        assert_eq!(body["attempts"][0]["detail"], "n");
        let (s, body) = v.route("/Probe.Check", br#"{"nonce":"n","bogus":1}"#, &fake);
        assert_eq!(s, 400);
        assert!(
            body["Err"].as_str().unwrap().starts_with("bad plan"),
            "{body}"
        );
        assert_eq!(
            v.route("/Plugin.Activate", b"", &fake).1,
            json!({"Implements": ["VolumeDriver"]})
        );
        assert_eq!(
            v.route("/MetricsCollector.StartMetrics", b"", &fake),
            (200, json!({}))
        );
    }

    #[test]
    fn a_check_runs_as_a_volume_for_dockerd() {
        let v = Volumes::default();
        let plan = serde_json::to_string(&Plan {
            nonce: "n9".into(),
            ..Plan::default()
        })
        .unwrap();
        let create = json!({"Name": "c1", "Opts": {"plan": plan}}).to_string();
        assert_eq!(
            v.route("/VolumeDriver.Create", create.as_bytes(), &fake).1["Err"],
            ""
        );
        let (_, got) = v.route("/VolumeDriver.Get", br#"{"Name":"c1"}"#, &fake);
        assert_eq!(got["Volume"]["Name"], "c1");
        assert_eq!(
            got["Volume"]["Status"]["plugd-check"]["attempts"][0]["detail"],
            "n9"
        );
        assert_eq!(
            v.route("/VolumeDriver.List", b"{}", &fake).1["Volumes"],
            json!([{"Name": "c1", "Mountpoint": ""}])
        );
        let bad = json!({"Name": "c2", "Opts": {"plan": "{"}}).to_string();
        assert!(
            v.route("/VolumeDriver.Create", bad.as_bytes(), &fake).1["Err"]
                .as_str()
                .unwrap()
                .starts_with("bad plan")
        );
        v.route("/VolumeDriver.Remove", br#"{"Name":"c1"}"#, &fake);
        assert_ne!(
            v.route("/VolumeDriver.Get", br#"{"Name":"c1"}"#, &fake).1["Err"],
            ""
        );
        assert_eq!(
            v.route("/VolumeDriver.Capabilities", b"", &fake).1,
            json!({"Capabilities": {"Scope": "local"}})
        );
    }
}
