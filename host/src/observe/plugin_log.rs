//! Each plugin's own log: what it wrote (stdout, stderr) and what plugd noted about it (a trap, a
//! timeout, an exit, a restart), kept on disk per plugin with a size bound and rotation, and
//! followed live by `plugd logs -f`.
//!
//! The files are `<data-root>/logs/<plugin-id>/plugin.log`, then `plugin.log.1` (older) up to
//! `plugin.log.<files-1>`, one JSON object per line in docker's `json-file` shape (`log` with its
//! newline, `stream`, `time` in RFC 3339 with nanoseconds), so tools that read json-file logs read
//! these. plugd's notes have the stream `plugd`. A file past its size is rotated before the next
//! entry goes in, so the logs of one plugin never take more than `size × files` plus one entry
//! (an entry is bounded: the runtimes cut a line at 16 KiB). The directory is 0700: a plugin's
//! output may hold secrets, and it is never visible to the plugin.
//!
//! Everything in a line came from the plugin; it is stored as a JSON string (escaped) and read
//! back as one, so no byte of it can forge an entry or a stream.

use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// The current file's name.
pub const FILE: &str = "plugin.log";
/// Entries a follower may fall behind by before it loses the oldest (it is told how many).
const FOLLOW_CHANNEL: usize = 4096;

/// The bound of one plugin's log (`--plugin-log-size`, `--plugin-log-files`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes one file may reach before it is rotated.
    pub size: u64,
    /// Files kept, the current one included (at least 1: then the file is truncated instead).
    pub files: u32,
}

/// One entry, as docker's `json-file` driver writes one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// The line, with its newline.
    pub log: String,
    /// `stdout`, `stderr` or `plugd`.
    pub stream: String,
    /// When plugd received it, RFC 3339 with nanoseconds, UTC.
    pub time: String,
}

impl Entry {
    fn now(stream: &str, line: &str) -> Entry {
        Entry {
            log: format!("{line}\n"),
            stream: stream.to_string(),
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        }
    }

    /// Nanoseconds since the epoch, if the time parses.
    pub fn nanos(&self) -> Option<i64> {
        chrono::DateTime::parse_from_rfc3339(&self.time)
            .ok()?
            .timestamp_nanos_opt()
    }
}

/// Which entries a read returns.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query {
    /// Only the last this many (after `since`).
    pub tail: Option<usize>,
    /// Only those at or after this time (nanoseconds since the epoch).
    pub since_nanos: Option<i64>,
}

struct Inner {
    file: Option<File>,
    size: u64,
}

/// One plugin's log.
pub struct PluginLog {
    dir: PathBuf,
    limits: Limits,
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Entry>>,
}

impl PluginLog {
    /// The log kept in `dir` (created on the first entry).
    pub fn new(dir: PathBuf, limits: Limits) -> PluginLog {
        PluginLog {
            dir,
            limits: Limits {
                size: limits.size.max(1),
                files: limits.files.max(1),
            },
            inner: Mutex::new(Inner {
                file: None,
                size: 0,
            }),
            tx: broadcast::channel(FOLLOW_CHANNEL).0,
        }
    }

    /// Where the files are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, n: u32) -> PathBuf {
        match n {
            0 => self.dir.join(FILE),
            n => self.dir.join(format!("{FILE}.{n}")),
        }
    }

    /// Appends one line of `stream`. A failure to write (a full disk) drops the entry and is
    /// reported once per failure to plugd's own log; followers still see it.
    pub fn append(&self, stream: &str, line: &str) {
        let entry = Arc::new(Entry::now(stream, line));
        let mut bytes = serde_json::to_vec(&*entry).unwrap_or_default();
        bytes.push(b'\n');
        let mut inner = self.lock();
        if let Err(e) = self.write(&mut inner, &bytes) {
            inner.file = None;
            tracing::warn!(dir = %self.dir.display(), error = %e, "writing a plugin's log entry");
        }
        let _ = self.tx.send(entry);
    }

    fn write(&self, inner: &mut Inner, bytes: &[u8]) -> std::io::Result<()> {
        if inner.file.is_some() && inner.size + bytes.len() as u64 > self.limits.size {
            inner.file = None;
            self.rotate()?;
            inner.size = 0;
        }
        if inner.file.is_none() {
            fsutil::create_dir_all(&self.dir, 0o700)?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path(0))?;
            inner.size = file.metadata()?.len();
            inner.file = Some(file);
            if inner.size > 0 && inner.size + bytes.len() as u64 > self.limits.size {
                inner.file = None;
                self.rotate()?;
                return self.write(inner, bytes);
            }
        }
        let file = inner.file.as_mut().expect("opened above");
        file.write_all(bytes)?;
        inner.size += bytes.len() as u64;
        Ok(())
    }

    /// `plugin.log.N-1` is dropped, every other file moves one up, `plugin.log` is gone.
    fn rotate(&self) -> std::io::Result<()> {
        let last = self.limits.files - 1;
        if last == 0 {
            return remove(&self.path(0));
        }
        remove(&self.path(last))?;
        for n in (0..last).rev() {
            match std::fs::rename(self.path(n), self.path(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The entries `query` selects, oldest first, and (with `follow`) a receiver of every later
    /// one: taken under the writer's lock, so nothing is missed or repeated between the two.
    pub fn read(
        &self,
        query: Query,
        follow: bool,
    ) -> (Vec<Entry>, Option<broadcast::Receiver<Arc<Entry>>>) {
        let _inner = self.lock();
        let rx = follow.then(|| self.tx.subscribe());
        let mut entries = Vec::new();
        for n in (0..self.limits.files).rev() {
            let Ok(file) = File::open(self.path(n)) else {
                continue;
            };
            for line in BufReader::new(file).split(b'\n') {
                let Ok(line) = line else { break };
                // A torn last line (plugd killed mid-write) is skipped, never guessed at.
                let Ok(entry) = serde_json::from_slice::<Entry>(&line) else {
                    continue;
                };
                if let Some(since) = query.since_nanos
                    && entry.nanos().is_none_or(|t| t < since)
                {
                    continue;
                }
                entries.push(entry);
            }
        }
        if let Some(tail) = query.tail {
            let skip = entries.len().saturating_sub(tail);
            entries.drain(..skip);
        }
        (entries, rx)
    }

    /// Bytes on disk now, over every file.
    pub fn disk_bytes(&self) -> u64 {
        (0..self.limits.files)
            .filter_map(|n| std::fs::metadata(self.path(n)).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Removes every file (at `plugin rm`).
    pub fn remove_all(&self) {
        let mut inner = self.lock();
        inner.file = None;
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "removing a plugin's logs");
        }
    }
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "plugd-log-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rand_suffix() -> u64 {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        u64::from_le_bytes(b)
    }

    fn texts(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e.log.trim_end().to_string())
            .collect()
    }

    #[test]
    fn entries_read_back_in_order_with_tail_and_since() {
        let dir = tmp();
        let log = PluginLog::new(
            dir.join("p"),
            Limits {
                size: 1 << 20,
                files: 2,
            },
        );
        log.append("stdout", "one");
        log.append("stderr", "two \"quoted\"\n{\"log\":\"forged\"}");
        let mid = crate::observe::events::now();
        log.append("plugd", "three");
        let (all, rx) = log.read(Query::default(), false);
        assert!(rx.is_none());
        assert_eq!(
            texts(&all),
            ["one", "two \"quoted\"\n{\"log\":\"forged\"}", "three"]
        );
        assert_eq!(all[1].stream, "stderr");
        let (tail, _) = log.read(
            Query {
                tail: Some(1),
                since_nanos: None,
            },
            false,
        );
        assert_eq!(texts(&tail), ["three"]);
        let (since, _) = log.read(
            Query {
                tail: None,
                since_nanos: Some(mid),
            },
            false,
        );
        assert_eq!(texts(&since), ["three"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotation_keeps_the_bound_and_the_newest_entries() {
        let dir = tmp();
        let limits = Limits {
            size: 1000,
            files: 3,
        };
        let log = PluginLog::new(dir.join("p"), limits);
        for i in 0..500 {
            log.append("stdout", &format!("line {i:04} {}", "x".repeat(40)));
        }
        assert!(log.disk_bytes() <= limits.size * u64::from(limits.files));
        assert!(!log.dir().join("plugin.log.3").exists());
        let (kept, _) = log.read(Query::default(), false);
        assert!(!kept.is_empty() && kept.len() < 500);
        let nums: Vec<usize> = kept.iter().map(|e| e.log[5..9].parse().unwrap()).collect();
        assert_eq!(*nums.last().unwrap(), 499, "the newest entry is kept");
        assert!(
            nums.windows(2).all(|w| w[1] == w[0] + 1),
            "in order, no gap"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_follower_gets_what_comes_after_its_read_and_a_restart_appends() {
        let dir = tmp();
        let limits = Limits {
            size: 1 << 20,
            files: 2,
        };
        let log = PluginLog::new(dir.join("p"), limits);
        log.append("stdout", "before");
        let (old, rx) = log.read(Query::default(), true);
        let mut rx = rx.unwrap();
        log.append("stdout", "after");
        assert_eq!(texts(&old), ["before"]);
        assert_eq!(rx.try_recv().unwrap().log, "after\n");
        // A new PluginLog on the same dir (plugd restarted) appends to what is there.
        drop(log);
        let log = PluginLog::new(dir.join("p"), limits);
        log.append("stdout", "again");
        assert_eq!(
            texts(&log.read(Query::default(), false).0),
            ["before", "after", "again"]
        );
        log.remove_all();
        assert!(!dir.join("p").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
