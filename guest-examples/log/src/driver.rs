//! The log driver itself, shared by both packagings: the wasm component (`src/lib.rs`) and the
//! native binary (`native/src/main.rs`, which includes this file).
//!
//! **What it keeps.** Each container's entries go to `$STATE_DIR/<container-id>.log` (default
//! `/data`, the plugin's `PropagatedMount`, so they are on the host and survive the plugin) in
//! dockerd's own frame format — a big-endian `u32` length and a protobuf `LogEntry` — appended
//! per batch. `$STATE_DIR/<fifo-name>.stream` maps an open stream to its container, and exists
//! exactly while the container logs: `docker logs -f` ends when it is gone.
//!
//! **Reading back.** A `read_logs` cursor is a byte offset into the container's file, always at a
//! frame boundary; the first page (cursor 0) skips to the last `tail` entries. Fragments of a
//! split line are kept as dockerd wrote them, so `docker logs` joins them into the whole line.

use plugd_plugin_sdk::logdriver::{Entry, Info, Page, ReadConfig, frame};
use plugd_plugin_sdk::{Error, LogDriver};
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;

/// Keeps every container's entries in a file of frames.
#[derive(Debug)]
pub struct FileLogs {
    dir: PathBuf,
}

impl Default for FileLogs {
    fn default() -> Self {
        FileLogs::from_env()
    }
}

impl FileLogs {
    /// Files under `$STATE_DIR` (default `/data`).
    pub fn from_env() -> FileLogs {
        FileLogs {
            dir: std::env::var_os("STATE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/data")),
        }
    }

    /// Files under `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> FileLogs {
        FileLogs { dir: dir.into() }
    }

    fn stream_file(&self, file: &str) -> Result<PathBuf, Error> {
        let name = plugd_plugin_sdk::logdriver::fifo_name(file).map_err(Error::invalid_argument)?;
        Ok(self.dir.join(format!("{name}.stream")))
    }

    fn log_file(&self, container_id: &str) -> Result<PathBuf, Error> {
        let plain =
            !container_id.is_empty() && container_id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !plain {
            return Err(Error::invalid_argument(format!(
                "container id {container_id:?} is not a plain id"
            )));
        }
        Ok(self.dir.join(format!("{container_id}.log")))
    }

    fn container_of(&self, file: &str) -> Result<String, Error> {
        let path = self.stream_file(file)?;
        fs::read_to_string(&path).map_err(|e| Error::not_found(format!("no stream {file}: {e}")))
    }

    fn logging(&self, container_id: &str) -> bool {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return false;
        };
        dir.flatten().any(|e| {
            e.file_name().to_string_lossy().ends_with(".stream")
                && fs::read_to_string(e.path()).is_ok_and(|c| c == container_id)
        })
    }

    /// The frames of a container's file from byte `from`: (entry, offset after it).
    fn frames(&self, container_id: &str, from: u64) -> Result<Vec<(Entry, u64)>, Error> {
        let bytes = match fs::read(self.log_file(container_id)?) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::internal(format!("reading logs: {e}"))),
        };
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
        let mut decoder = frame::Decoder::new();
        let mut out = Vec::new();
        let mut at = start as u64;
        let mut rest = &bytes[start..];
        while rest.len() >= frame::PREFIX {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if rest.len() < frame::PREFIX + len {
                break; // a batch being appended right now
            }
            decoder.push(&rest[..frame::PREFIX + len]);
            let entry = decoder
                .next_entry()
                .map_err(|e| Error::internal(format!("log file damaged: {e}")))?
                .ok_or_else(|| Error::internal("log file damaged"))?;
            at += (frame::PREFIX + len) as u64;
            out.push((Entry::from(entry), at));
            rest = &rest[frame::PREFIX + len..];
        }
        Ok(out)
    }
}

impl LogDriver for FileLogs {
    fn read_logs_supported(&self) -> bool {
        true
    }

    fn start_logging(&self, file: &str, info: &Info) -> Result<(), Error> {
        self.log_file(&info.container_id)?;
        fs::create_dir_all(&self.dir).map_err(|e| Error::internal(format!("state dir: {e}")))?;
        fs::write(self.stream_file(file)?, &info.container_id)
            .map_err(|e| Error::internal(format!("recording the stream: {e}")))
    }

    fn log(&self, file: &str, entries: &[Entry]) -> Result<(), Error> {
        let container = self.container_of(file)?;
        let mut buf = Vec::new();
        for e in entries {
            frame::encode(&e.to_frame(), &mut buf);
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file(&container)?)
            .and_then(|mut f| f.write_all(&buf))
            .map_err(|e| Error::internal(format!("writing logs: {e}")))
    }

    fn stop_logging(&self, file: &str) -> Result<(), Error> {
        match fs::remove_file(self.stream_file(file)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::internal(format!("ending the stream: {e}"))),
        }
    }

    fn read_logs(
        &self,
        info: &Info,
        config: &ReadConfig,
        cursor: u64,
        max: u32,
    ) -> Result<Page, Error> {
        let mut frames = self.frames(&info.container_id, cursor)?;
        let logging = self.logging(&info.container_id);
        let end_of_file = frames.last().map_or(cursor, |(_, at)| *at);
        if cursor == 0 && config.tail >= 0 {
            let keep = usize::try_from(config.tail).unwrap_or(usize::MAX);
            let skip = frames.len().saturating_sub(keep);
            frames.drain(..skip);
        }
        let drained = frames.len() <= max as usize;
        frames.truncate(max as usize);
        // Past the last entry sent; past everything when nothing is sent (a tail of 0).
        let next = frames.last().map_or(end_of_file, |(_, at)| *at);
        let entries: Vec<Entry> = frames
            .into_iter()
            .map(|(e, _)| e)
            .filter(|e| config.since.is_none_or(|s| e.time_nano >= s))
            .filter(|e| config.until.is_none_or(|u| e.time_nano <= u))
            .collect();
        Ok(Page {
            entries,
            cursor: next,
            end: drained && (!config.follow || !logging),
        })
    }
}
