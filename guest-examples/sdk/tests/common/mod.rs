//! A raw HTTP/1.1 client over a unix socket, written by hand so the tests see exactly what goes
//! over the wire (status, headers, body, connection reuse), and an in-memory driver.

#![allow(dead_code)] // each test binary uses its own part of this module

use plugd_plugin_sdk::{Error, Scope, Volume, VolumeDriver};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A directory removed on drop; short, because a socket path must fit in 108 bytes.
/// `.0` is its path; `.1` is `tempfile`'s guard, which removes it.
pub struct TempDir(pub PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let t = tempfile::Builder::new()
            .prefix(&format!("sdk-{tag}-"))
            .tempdir()
            .unwrap();
        TempDir(t.path().to_path_buf(), t)
    }
}

/// Waits until something accepts connections on `socket`.
pub fn wait_for_socket(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// One client connection, reused for every request (as dockerd's keep-alive pool does).
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(socket: &Path) -> Client {
        let stream = UnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// Writes raw bytes (one or more requests).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    /// A request as dockerd sends it: POST, `Content-Length`, no `Content-Type`.
    pub fn request_bytes(method: &str, path: &str, body: &str) -> Vec<u8> {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: plugin.moby.localhost\r\n\
             User-Agent: Go-http-client/1.1\r\n\
             Accept: application/vnd.docker.plugins.v1.2+json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    pub fn call(&mut self, endpoint: &str, body: &str) -> Response {
        self.send_raw(&Client::request_bytes("POST", endpoint, body));
        self.read_response()
    }

    pub fn read_response(&mut self) -> Response {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = BTreeMap::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').expect("header line");
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        let len: usize = headers
            .get("content-length")
            .expect("replies carry Content-Length")
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).unwrap();
        Response {
            status,
            headers,
            body,
        }
    }

    /// True once the server has closed the connection (EOF on read).
    pub fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0))
    }
}

/// Volumes in memory. A volume named `panic` makes `create` panic; `mount` records ids so
/// `remove` can refuse a mounted volume with `conflict`.
#[derive(Default)]
pub struct MemoryDriver {
    volumes: RefCell<BTreeMap<String, BTreeSet<String>>>,
}

impl MemoryDriver {
    fn check(name: &str) -> Result<(), Error> {
        if name.is_empty() || name.contains('/') {
            return Err(Error::invalid_argument(format!(
                "invalid volume name {name:?}"
            )));
        }
        Ok(())
    }

    fn with<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut BTreeSet<String>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        Self::check(name)?;
        let mut volumes = self.volumes.borrow_mut();
        let mounts = volumes
            .get_mut(name)
            .ok_or_else(|| Error::not_found(format!("no such volume {name:?}")))?;
        f(mounts)
    }
}

impl VolumeDriver for MemoryDriver {
    fn create(&self, name: &str, opts: &[(String, String)]) -> Result<(), Error> {
        Self::check(name)?;
        if name == "panic" {
            let _held = self.volumes.borrow_mut();
            panic!("create asked to panic");
        }
        if let Some((k, _)) = opts.iter().find(|(k, _)| k != "size") {
            return Err(Error::invalid_argument(format!("unknown option {k:?}")));
        }
        self.volumes
            .borrow_mut()
            .entry(name.to_string())
            .or_default();
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<(), Error> {
        self.with(name, |mounts| {
            if mounts.is_empty() {
                Ok(())
            } else {
                Err(Error::conflict(format!("volume {name:?} is in use")))
            }
        })?;
        self.volumes.borrow_mut().remove(name);
        Ok(())
    }

    fn mount(&self, name: &str, id: &str) -> Result<String, Error> {
        self.with(name, |mounts| {
            mounts.insert(id.to_string());
            Ok(format!("/data/{name}"))
        })
    }

    fn unmount(&self, name: &str, id: &str) -> Result<(), Error> {
        self.with(name, |mounts| {
            mounts.remove(id);
            Ok(())
        })
    }

    fn path(&self, name: &str) -> Result<String, Error> {
        self.with(name, |_| Ok(format!("/data/{name}")))
    }

    fn get(&self, name: &str) -> Result<Volume, Error> {
        self.with(name, |mounts| {
            Ok(Volume {
                status: vec![("mounts".into(), mounts.len().to_string())],
                ..Volume::new(name, format!("/data/{name}"))
            })
        })
    }

    fn list(&self) -> Result<Vec<Volume>, Error> {
        Ok(self
            .volumes
            .borrow()
            .keys()
            .map(|n| Volume::new(n.clone(), format!("/data/{n}")))
            .collect())
    }

    fn capabilities(&self) -> Scope {
        Scope::Local
    }
}
