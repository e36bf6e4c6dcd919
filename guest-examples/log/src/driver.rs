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
use std::io::{BufReader, Read, Seek, SeekFrom, Write as _};
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

    /// The container's log file, `None` if it has none yet.
    fn open_log(&self, container_id: &str) -> Result<Option<fs::File>, Error> {
        match fs::File::open(self.log_file(container_id)?) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::internal(format!("reading logs: {e}"))),
        }
    }

    /// Up to `max` frames of a container's file from byte `from`, each with the offset after
    /// it; a frame still being appended ends the page. Reads only what the page needs.
    fn frames(
        &self,
        container_id: &str,
        from: u64,
        max: usize,
    ) -> Result<Vec<(Entry, u64)>, Error> {
        let Some(file) = self.open_log(container_id)? else {
            return Ok(Vec::new());
        };
        let io = |e: std::io::Error| Error::internal(format!("reading logs: {e}"));
        let mut r = BufReader::with_capacity(256 << 10, file);
        r.seek(SeekFrom::Start(from)).map_err(io)?;
        let mut out = Vec::new();
        let mut at = from;
        let mut decoder = frame::Decoder::new();
        let mut buf = Vec::new();
        while out.len() < max {
            let mut prefix = [0u8; frame::PREFIX];
            if read_whole(&mut r, &mut prefix).map_err(io)? {
                break;
            }
            let len = u32::from_be_bytes(prefix) as usize;
            if len > frame::MAX_FRAME {
                return Err(Error::internal("log file damaged: frame too long"));
            }
            buf.resize(len, 0);
            if read_whole(&mut r, &mut buf).map_err(io)? {
                break; // a batch being appended right now
            }
            decoder.push(&prefix);
            decoder.push(&buf);
            let entry = decoder
                .next_entry()
                .map_err(|e| Error::internal(format!("log file damaged: {e}")))?
                .ok_or_else(|| Error::internal("log file damaged"))?;
            at += (frame::PREFIX + len) as u64;
            out.push((Entry::from(entry), at));
        }
        Ok(out)
    }

    /// Where the last `tail` whole frames start (the end of the whole frames for a tail of 0):
    /// one pass over the lengths only.
    fn tail_start(&self, container_id: &str, tail: usize) -> Result<u64, Error> {
        let Some(file) = self.open_log(container_id)? else {
            return Ok(0);
        };
        let io = |e: std::io::Error| Error::internal(format!("reading logs: {e}"));
        let size = file.metadata().map_err(io)?.len();
        let mut r = BufReader::with_capacity(256 << 10, file);
        let mut starts = std::collections::VecDeque::with_capacity(tail.min(4096) + 1);
        let mut at = 0u64;
        loop {
            let mut prefix = [0u8; frame::PREFIX];
            if read_whole(&mut r, &mut prefix).map_err(io)? {
                break;
            }
            let end = at + (frame::PREFIX + u32::from_be_bytes(prefix) as usize) as u64;
            if end > size {
                break;
            }
            starts.push_back(at);
            if starts.len() > tail {
                starts.pop_front();
            }
            r.seek(SeekFrom::Start(end)).map_err(io)?;
            at = end;
        }
        Ok(starts.front().copied().unwrap_or(at))
    }
}

/// Fills `buf`; `Ok(true)` if the file ended first (nothing or part of it read).
fn read_whole(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(true),
        Err(e) => Err(e),
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
        let logging = self.logging(&info.container_id);
        let from = if cursor == 0 && config.tail >= 0 {
            let tail = usize::try_from(config.tail).unwrap_or(usize::MAX);
            self.tail_start(&info.container_id, tail)?
        } else {
            cursor
        };
        let mut frames = self.frames(&info.container_id, from, max as usize + 1)?;
        let drained = frames.len() <= max as usize;
        frames.truncate(max as usize);
        let next = frames.last().map_or(from, |(_, at)| *at);
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
