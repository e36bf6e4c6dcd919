//! `LogDriver.*` (`docker.logdriver/1.0`): the calls dockerd makes, the replies it decodes, and the
//! framed log entries that travel outside them (the FIFO dockerd writes, the `ReadLogs` stream it
//! reads), used by the wasm host, the native runtime, the gateway and the SDK alike.
//!
//! Read from moby 20.10 `daemon/logger/{plugin.go,proxy.go,adapter.go}` and
//! `api/types/plugins/logdriver/{entry.proto,io.go}`:
//!
//! | endpoint | request | success (200) |
//! |---|---|---|
//! | `StartLogging` | `{"File": "/run/docker/logging/<id>", "Info": Info}` | `{"Err": ""}` |
//! | `StopLogging` | `{"File"}` | `{"Err": ""}`; dockerd then closes and unlinks the FIFO |
//! | `Capabilities` | — (empty body) | `{"Cap": {"ReadLogs": bool}}` (docs wrongly say `{"ReadLogs"}`) |
//! | `ReadLogs` | `{"Info": Info, "Config": {"Since", "Until", "Tail", "Follow"}}` | a raw stream of frames |
//!
//! **Frames** ([`frame`]): a big-endian `u32` length, then a protobuf `LogEntry` of that many
//! bytes. dockerd writes one per line (no trailing `\n`), splitting lines at 16 KiB: every
//! fragment of a split line carries `partial_log_metadata` (ordinal from 1, `last` on the final
//! one) and the first fragment's time. dockerd's own decoder allocates whatever length a frame
//! announces; plugd refuses frames over [`frame::MAX_FRAME`].
//!
//! **The FIFO path.** dockerd creates the FIFO itself, opens it read-write (so a plugin that dies
//! never gives it EPIPE) and names it by the path the plugin sees: `/run/docker/logging/<id>`
//! ([`LOGGING_DIR`]). For a legacy plugin — which is what plugd's sockets are to dockerd — that is
//! also the host path. [`fifo_name`] is the one check of that path both runtimes use.

use super::request::{self, method_of};
use super::{DriverError, Manifest};
use crate::Reply;
use crate::gojson::{Field, Form, Kind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod frame;

/// Endpoints of the log driver subsystem, in dockerd's spelling.
pub const START_LOGGING: &str = "LogDriver.StartLogging";
/// See [`START_LOGGING`].
pub const STOP_LOGGING: &str = "LogDriver.StopLogging";
/// See [`START_LOGGING`].
pub const CAPABILITIES: &str = "LogDriver.Capabilities";
/// See [`START_LOGGING`].
pub const READ_LOGS: &str = "LogDriver.ReadLogs";

/// The `Implements` entry of a log driver.
pub const IMPLEMENTS: &str = "LogDriver";
/// Where dockerd puts a legacy log plugin's FIFOs, and the path it names them by.
pub const LOGGING_DIR: &str = "/run/docker/logging";

const ACTIVATE: &str = "Plugin.Activate";
const TEXT: Kind = Kind::Str(Form::Text);
const STRING_MAP: Kind = Kind::Map(&TEXT);
const STRINGS: Kind = Kind::Slice(&TEXT);

/// Go's `logger.Info` as dockerd marshals it.
const INFO: Kind = Kind::Struct(&[
    Field::new("Config", STRING_MAP),
    Field::new("ContainerID", TEXT),
    Field::new("ContainerName", TEXT),
    Field::new("ContainerEntrypoint", TEXT),
    Field::new("ContainerArgs", STRINGS),
    Field::new("ContainerImageID", TEXT),
    Field::new("ContainerImageName", TEXT),
    Field::new("ContainerCreated", Kind::Time),
    Field::new("ContainerEnv", STRINGS),
    Field::new("ContainerLabels", STRING_MAP),
    Field::new("LogPath", TEXT),
    Field::new("DaemonName", TEXT),
]);
/// `logPluginProxyStartLoggingRequest`.
const START_REQUEST: Kind = Kind::Struct(&[Field::new("File", TEXT), Field::new("Info", INFO)]);
/// `logPluginProxyStopLoggingRequest`.
const STOP_REQUEST: Kind = Kind::Struct(&[Field::new("File", TEXT)]);
/// `logger.ReadConfig`.
const READ_CONFIG: Kind = Kind::Struct(&[
    Field::new("Since", Kind::Time),
    Field::new("Until", Kind::Time),
    Field::new("Tail", Kind::Int),
    Field::new("Follow", Kind::Bool),
]);
/// `logPluginProxyReadLogsRequest`.
const READ_REQUEST: Kind =
    Kind::Struct(&[Field::new("Info", INFO), Field::new("Config", READ_CONFIG)]);

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InfoWire {
    #[serde(rename = "Config")]
    config: Option<BTreeMap<String, String>>,
    #[serde(rename = "ContainerID")]
    container_id: String,
    #[serde(rename = "ContainerName")]
    container_name: String,
    #[serde(rename = "ContainerEntrypoint")]
    container_entrypoint: String,
    #[serde(rename = "ContainerArgs")]
    container_args: Option<Vec<String>>,
    #[serde(rename = "ContainerImageID")]
    container_image_id: String,
    #[serde(rename = "ContainerImageName")]
    container_image_name: String,
    #[serde(rename = "ContainerCreated")]
    container_created: Option<String>,
    #[serde(rename = "ContainerEnv")]
    container_env: Option<Vec<String>>,
    #[serde(rename = "ContainerLabels")]
    container_labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "LogPath")]
    log_path: String,
    #[serde(rename = "DaemonName")]
    daemon_name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StartWire {
    #[serde(rename = "File")]
    file: String,
    #[serde(rename = "Info")]
    info: InfoWire,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigWire {
    #[serde(rename = "Since")]
    since: Option<String>,
    #[serde(rename = "Until")]
    until: Option<String>,
    #[serde(rename = "Tail")]
    tail: i64,
    #[serde(rename = "Follow")]
    follow: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ReadWire {
    #[serde(rename = "Info")]
    info: InfoWire,
    #[serde(rename = "Config")]
    config: ConfigWire,
}

/// The container a logger is for; mirrors WIT `log-driver.info`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    /// `--log-opt key=value`, sorted by key (dockerd passes unknown keys through unchecked).
    pub config: Vec<(String, String)>,
    /// The 64-hex container id: the key a driver keeps a container's logs under.
    pub container_id: String,
    /// With its leading `/`.
    pub container_name: String,
    /// The entrypoint's path.
    pub container_entrypoint: String,
    /// The entrypoint's arguments.
    pub container_args: Vec<String>,
    /// `sha256:…`.
    pub container_image_id: String,
    /// As the user named it.
    pub container_image_name: String,
    /// Creation time in nanoseconds since the Unix epoch; `None` for Go's zero time.
    pub container_created: Option<i64>,
    /// `KEY=value`.
    pub container_env: Vec<String>,
    /// Sorted by key.
    pub container_labels: Vec<(String, String)>,
    /// dockerd's own log file path (empty for plugins).
    pub log_path: String,
    /// `docker`.
    pub daemon_name: String,
}

impl Info {
    fn from_wire(w: InfoWire) -> Info {
        Info {
            config: request::pairs(w.config),
            container_id: w.container_id,
            container_name: w.container_name,
            container_entrypoint: w.container_entrypoint,
            container_args: w.container_args.unwrap_or_default(),
            container_image_id: w.container_image_id,
            container_image_name: w.container_image_name,
            container_created: w.container_created.as_deref().and_then(unix_nanos),
            container_env: w.container_env.unwrap_or_default(),
            container_labels: request::pairs(w.container_labels),
            log_path: w.log_path,
            daemon_name: w.daemon_name,
        }
    }
}

/// What `docker logs` asks for; mirrors WIT `log-driver.read-config`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadConfig {
    /// Only entries at or after this time (ns since the epoch); `None`: from the start.
    pub since: Option<i64>,
    /// Only entries at or before this time; `None`: no end.
    pub until: Option<i64>,
    /// The last `tail` entries only; negative: all (dockerd sends -1).
    pub tail: i64,
    /// Keep the stream open and send entries as they come, until logging stops.
    pub follow: bool,
}

/// One line a container wrote, or one fragment of a longer one; mirrors WIT
/// `log-driver.log-entry`. The typed form of a [`frame::LogEntry`]: `partial` is dockerd's
/// metadata, present exactly when dockerd treats the entry as a fragment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// `stdout` or `stderr`.
    pub source: String,
    /// Nanoseconds since the Unix epoch.
    pub time_nano: i64,
    /// Without the trailing `\n`.
    pub line: Vec<u8>,
    /// Which fragment of a split line this is.
    pub partial: Option<Partial>,
}

/// Mirrors WIT `log-driver.partial-metadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    /// The final fragment.
    pub last: bool,
    /// Shared by the fragments of one line.
    pub id: String,
    /// 1 for the first fragment.
    pub ordinal: i32,
}

impl From<frame::LogEntry> for Entry {
    fn from(e: frame::LogEntry) -> Entry {
        Entry {
            source: e.source,
            time_nano: e.time_nano,
            line: e.line,
            partial: e.partial_log_metadata.map(|m| Partial {
                last: m.last,
                id: m.id,
                ordinal: m.ordinal,
            }),
        }
    }
}

impl Entry {
    /// The frame dockerd writes and reads for this entry.
    pub fn to_frame(&self) -> frame::LogEntry {
        frame::LogEntry {
            source: self.source.clone(),
            time_nano: self.time_nano,
            line: self.line.clone(),
            partial: self.partial.is_some(),
            partial_log_metadata: self
                .partial
                .as_ref()
                .map(|p| frame::PartialLogEntryMetadata {
                    last: p.last,
                    id: p.id.clone(),
                    ordinal: p.ordinal,
                }),
            attrs: Vec::new(),
        }
    }
}

impl Entry {
    /// The frame a driver's `ReadLogs` stream carries for this entry. dockerd writes lines
    /// without their `\n` but shows what `ReadLogs` returns verbatim (its own drivers keep the
    /// newline: `docker logs` of `echo a; echo b` would print `ab`), so a whole line, or the last
    /// fragment of a split one, gets its newline back here; earlier fragments do not, and
    /// `docker logs` joins them. Typed drivers keep entries as dockerd wrote them; the host that
    /// frames their pages (plugd's wasm host, the SDK's native server) calls this.
    pub fn to_read_frame(&self) -> frame::LogEntry {
        let mut f = self.to_frame();
        if self.partial.as_ref().is_none_or(|p| p.last) {
            f.line.push(b'\n');
        }
        f
    }
}

/// One page of a `ReadLogs` answer; mirrors WIT `log-driver.log-page`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Oldest first.
    pub entries: Vec<Entry>,
    /// Where the next page starts.
    pub cursor: u64,
    /// Nothing will ever follow; an empty page that is not the end means "nothing yet".
    pub end: bool,
}

/// Entries asked for per `read-logs` page.
pub const PAGE_SIZE: u32 = 256;

/// One decoded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `Plugin.Activate` (plugd's gateway answers it itself; a native server must).
    Activate,
    /// A container starts logging to the FIFO `file` (see [`fifo_name`]).
    StartLogging {
        /// `/run/docker/logging/<id>`, as dockerd sent it.
        file: String,
        /// The container.
        info: Info,
    },
    /// Logging to `file` ends; dockerd unlinks it once this returns.
    StopLogging {
        /// As in [`Request::StartLogging`].
        file: String,
    },
    /// Whether the driver can read logs back.
    Capabilities,
    /// Stream a container's logs back.
    ReadLogs {
        /// The container.
        info: Info,
        /// What to send.
        config: ReadConfig,
    },
}

impl Request {
    /// Decodes a call (`endpoint` with or without its leading `/`), or gives the error reply:
    /// 404 for an unknown endpoint, 400 for a body Go would not decode.
    pub fn decode(endpoint: &str, body: &[u8]) -> Result<Request, Reply> {
        let method = method_of(endpoint);
        Ok(match method {
            ACTIVATE => Request::Activate,
            START_LOGGING => {
                let r: StartWire = request::read(method, body, &START_REQUEST)?;
                Request::StartLogging {
                    file: r.file,
                    info: Info::from_wire(r.info),
                }
            }
            STOP_LOGGING => {
                let r: StartWire = request::read(method, body, &STOP_REQUEST)?;
                Request::StopLogging { file: r.file }
            }
            CAPABILITIES => {
                request::no_arguments(method, body)?;
                Request::Capabilities
            }
            READ_LOGS => {
                let r: ReadWire = request::read(method, body, &READ_REQUEST)?;
                Request::ReadLogs {
                    info: Info::from_wire(r.info),
                    config: ReadConfig {
                        since: r.config.since.as_deref().and_then(unix_nanos),
                        until: r.config.until.as_deref().and_then(unix_nanos),
                        tail: r.config.tail,
                        follow: r.config.follow,
                    },
                }
            }
            _ => return Err(request::unknown(method, "log driver")),
        })
    }
}

/// A driver's successful answer to one [`Request`] (`ReadLogs` answers with a stream, not this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `Plugin.Activate`.
    Activate,
    /// `Capabilities`.
    Capabilities {
        /// The driver answers `ReadLogs`; without it dockerd serves `docker logs` from its own
        /// cache (dual logging).
        read_logs: bool,
    },
    /// `StartLogging`, `StopLogging`.
    Done,
}

#[derive(Serialize)]
struct CapReply {
    #[serde(rename = "Cap")]
    cap: Cap,
}

#[derive(Serialize)]
struct Cap {
    #[serde(rename = "ReadLogs")]
    read_logs: bool,
}

/// The reply dockerd gets for a driver's answer.
pub fn encode(answer: Result<Response, DriverError>) -> Reply {
    match answer {
        Err(e) => e.reply(),
        Ok(Response::Activate) => super::json(&Manifest {
            implements: vec![IMPLEMENTS.to_string()],
        }),
        Ok(Response::Capabilities { read_logs }) => super::json(&CapReply {
            cap: Cap { read_logs },
        }),
        Ok(Response::Done) => super::json(&serde_json::json!({})),
    }
}

/// The FIFO's name in [`LOGGING_DIR`] for a `File` dockerd sent: one plain path component, so
/// that joining it to a host directory cannot leave that directory. Anything else is refused
/// with a message naming the path.
pub fn fifo_name(file: &str) -> Result<&str, String> {
    let name = file
        .strip_prefix(LOGGING_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(|| format!("File {file:?} is not in {LOGGING_DIR}"))?;
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        Ok(name)
    } else {
        Err(format!(
            "File {file:?}: the FIFO's name must be one plain file name"
        ))
    }
}

/// An RFC 3339 time (already checked by the reader) as nanoseconds since the Unix epoch; `None`
/// for Go's zero time and anything outside `i64` nanoseconds (years 1678–2262).
pub fn unix_nanos(s: &str) -> Option<i64> {
    crate::gojson::forms::rfc3339(s).ok()?;
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> i64 {
        b[from..from + len]
            .iter()
            .fold(0i64, |n, &c| n * 10 + i64::from(c - b'0'))
    };
    let (year, month, day) = (num(0, 4), num(5, 2), num(8, 2));
    let secs_of_day = num(11, 2) * 3600 + num(14, 2) * 60 + num(17, 2);
    let mut i = 19;
    let mut nanos = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = &s[start..i];
        nanos = num(start, digits.len()) * 10i64.pow(9 - digits.len() as u32);
    }
    let offset = match b[i] {
        b'Z' => 0,
        sign => {
            let o = num(i + 1, 2) * 3600 + num(i + 4, 2) * 60;
            if sign == b'-' { -o } else { o }
        }
    };
    // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + secs_of_day - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

#[cfg(test)]
mod tests;
