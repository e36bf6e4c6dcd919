//! A minimal HTTP/1.1 client over a unix socket, blocking, one keep-alive connection per value.
//!
//! Every measurement goes through this client so that the load generator's own cost is the same,
//! and small, for every system compared: no async runtime between the clock and the socket, one
//! `write` per request, buffered reads. It speaks just what plugin sockets and the Engine API
//! answer with: `Content-Length` or chunked bodies, or a body up to the connection's close.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The plugin protocol's media type; dockerd sends it with every plugin call.
const PLUGIN_ACCEPT: &str = "application/vnd.docker.plugins.v1.2+json";

/// Long enough for a cold compile of a large component in a debug plugd, short enough that a hung
/// daemon fails the run instead of stalling CI.
const IO_TIMEOUT: Duration = Duration::from_secs(180);

/// An answered request.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("reply is not JSON: {}", self.text()))
    }

    /// The response, if its status is 2xx; else an error carrying `what` and the body.
    pub fn ok(self, what: &str) -> anyhow::Result<Response> {
        if (200..300).contains(&self.status) {
            Ok(self)
        } else {
            bail!("{what}: answered {}: {}", self.status, self.text().trim())
        }
    }

    /// A plugin reply: status 200 and no non-empty `Err` (the protocol reports failures both ways).
    pub fn plugin_ok(self, what: &str) -> anyhow::Result<serde_json::Value> {
        let resp = self.ok(what)?;
        let v = resp.json()?;
        match v.get("Err").and_then(|e| e.as_str()) {
            Some(e) if !e.is_empty() => bail!("{what}: plugin answered Err {e:?}"),
            _ => Ok(v),
        }
    }
}

/// One keep-alive connection.
pub struct Conn {
    socket: PathBuf,
    reader: BufReader<UnixStream>,
    request: Vec<u8>,
    closed: bool,
}

impl Conn {
    pub fn connect(socket: &Path) -> anyhow::Result<Conn> {
        let stream =
            UnixStream::connect(socket).with_context(|| format!("connect {}", socket.display()))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Conn {
            socket: socket.to_path_buf(),
            reader: BufReader::with_capacity(64 * 1024, stream),
            request: Vec::with_capacity(1024),
            closed: false,
        })
    }

    /// Sends one request and reads its whole response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> anyhow::Result<Response> {
        if self.closed {
            bail!(
                "{}: the server closed the connection",
                self.socket.display()
            );
        }
        self.request.clear();
        write!(
            self.request,
            "{method} {path} HTTP/1.1\r\nHost: plugd-bench\r\nAccept: {PLUGIN_ACCEPT}\r\n"
        )?;
        if let Some(ct) = content_type {
            write!(self.request, "Content-Type: {ct}\r\n")?;
        }
        if !body.is_empty() || method != "GET" {
            write!(self.request, "Content-Length: {}\r\n", body.len())?;
        }
        self.request.extend_from_slice(b"\r\n");
        // One write for small requests: a split header/body costs the server a second wakeup.
        if body.len() <= 16 * 1024 {
            self.request.extend_from_slice(body);
            self.reader.get_mut().write_all(&self.request)?;
        } else {
            self.reader.get_mut().write_all(&self.request)?;
            self.reader.get_mut().write_all(body)?;
        }
        self.read_response(method)
            .with_context(|| format!("{method} {path} on {}", self.socket.display()))
    }

    pub fn post_json(&mut self, path: &str, body: &[u8]) -> anyhow::Result<Response> {
        self.request("POST", path, Some("application/json"), body)
    }

    fn read_response(&mut self, method: &str) -> anyhow::Result<Response> {
        loop {
            let status_line = self.line()?;
            let status: u16 = status_line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("bad status line {status_line:?}"))?;
            let mut length = None;
            let mut chunked = false;
            loop {
                let line = self.line()?;
                if line.is_empty() {
                    break;
                }
                let Some((name, value)) = line.split_once(':') else {
                    bail!("bad header line {line:?}");
                };
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.parse::<usize>().context("content-length")?);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                } else if name.eq_ignore_ascii_case("connection") {
                    self.closed |= value.eq_ignore_ascii_case("close");
                }
            }
            if (100..200).contains(&status) {
                continue;
            }
            let mut body = Vec::new();
            if method == "HEAD" || status == 204 || status == 304 {
            } else if chunked {
                self.read_chunked(&mut body)?;
            } else if let Some(n) = length {
                body.resize(n, 0);
                self.reader.read_exact(&mut body)?;
            } else {
                self.reader.read_to_end(&mut body)?;
                self.closed = true;
            }
            return Ok(Response { status, body });
        }
    }

    fn read_chunked(&mut self, body: &mut Vec<u8>) -> anyhow::Result<()> {
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .with_context(|| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line()?.is_empty() {}
                return Ok(());
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.reader.read_exact(&mut body[start..])?;
            if !self.line()?.is_empty() {
                bail!("chunk not followed by CRLF");
            }
        }
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            self.closed = true;
            bail!("connection closed before the response was complete");
        }
        while line.ends_with('\n') || line.ends_with('\r') {
            line.pop();
        }
        Ok(line)
    }
}

/// One request on a fresh connection (API calls made once, not measured per request).
pub fn once(
    socket: &Path,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> anyhow::Result<Response> {
    Conn::connect(socket)?.request(method, path, content_type, body)
}
