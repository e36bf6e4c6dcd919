//! The native log driver packaging end to end, without root: `serve_log_driver` on a temp socket,
//! a FIFO written the way dockerd writes it (opened read-write, frames), raw HTTP/1.1 calls.

#![cfg(all(unix, not(target_arch = "wasm32")))]

mod common;

use common::{Client, TempDir, wait_for_socket};
use plugd_plugin_sdk::logdriver::{Entry, Info, Page, ReadConfig, frame};
use plugd_plugin_sdk::{Error, LogDriver};
use serde_json::json;
use std::cell::RefCell;
use std::io::{BufRead as _, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Keeps lines in memory; `read_logs` pages them, following while the stream is open.
#[derive(Default)]
struct Memory {
    lines: RefCell<Vec<Entry>>,
    open: RefCell<bool>,
}

impl LogDriver for Memory {
    fn read_logs_supported(&self) -> bool {
        true
    }
    fn start_logging(&self, _file: &str, _info: &Info) -> Result<(), Error> {
        *self.open.borrow_mut() = true;
        Ok(())
    }
    fn log(&self, _file: &str, entries: &[Entry]) -> Result<(), Error> {
        self.lines.borrow_mut().extend_from_slice(entries);
        Ok(())
    }
    fn stop_logging(&self, _file: &str) -> Result<(), Error> {
        *self.open.borrow_mut() = false;
        Ok(())
    }
    fn read_logs(
        &self,
        _: &Info,
        config: &ReadConfig,
        cursor: u64,
        max: u32,
    ) -> Result<Page, Error> {
        let lines = self.lines.borrow();
        let from = cursor as usize;
        let to = (from + max as usize).min(lines.len());
        Ok(Page {
            entries: lines[from..to].to_vec(),
            cursor: to as u64,
            end: to == lines.len() && (!config.follow || !*self.open.borrow()),
        })
    }
}

fn start(dir: &Path) -> PathBuf {
    let socket = dir.join("log.sock");
    let path = socket.clone();
    std::thread::spawn(move || {
        plugd_plugin_sdk::serve_log_driver(Memory::default(), &path).unwrap()
    });
    wait_for_socket(&socket);
    socket
}

/// The FIFO as dockerd makes it: created, then held open read-write.
fn fifo(dir: &Path) -> (String, std::fs::File) {
    let path = dir.join("fifo");
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .unwrap();
    (path.to_string_lossy().into_owned(), f)
}

fn write_lines(f: &mut std::fs::File, lines: &[&str]) {
    let mut out = Vec::new();
    for l in lines {
        frame::encode(
            &frame::LogEntry {
                source: "stdout".into(),
                time_nano: 7,
                line: l.as_bytes().to_vec(),
                ..Default::default()
            },
            &mut out,
        );
    }
    f.write_all(&out).unwrap();
}

/// Reads a chunked 200 to its end and decodes the frames in it.
fn read_stream(socket: &Path, body: &str, deadline: Duration) -> Vec<String> {
    let stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(deadline)).unwrap();
    let mut w = stream.try_clone().unwrap();
    w.write_all(&Client::request_bytes("POST", "/LogDriver.ReadLogs", body))
        .unwrap();
    let mut r = std::io::BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    let mut chunked = false;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        chunked |= line
            .to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked");
    }
    assert!(chunked);
    let mut decoder = frame::Decoder::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let n = usize::from_str_radix(line.trim(), 16).unwrap();
        let mut chunk = vec![0u8; n + 2];
        r.read_exact(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        decoder.push(&chunk[..n]);
    }
    let mut out = Vec::new();
    while let Some(e) = decoder.next_entry().unwrap() {
        // Whole lines come back with their newline, as dockerd shows them verbatim.
        let line = String::from_utf8(e.line).unwrap();
        out.push(line.strip_suffix('\n').expect("a whole line").to_string());
    }
    decoder.finish().unwrap();
    out
}

fn read_body(follow: bool) -> String {
    json!({"Info": {"ContainerID": "c1"}, "Config": {"Tail": -1, "Follow": follow}}).to_string()
}

#[test]
fn lines_written_to_the_fifo_come_back_through_read_logs() {
    let dir = TempDir::new("log");
    let socket = start(&dir.0);
    let (file, mut writer) = fifo(&dir.0);
    let mut c = Client::connect(&socket);
    let r = c.call("/Plugin.Activate", "");
    assert_eq!(r.json(), json!({"Implements": ["LogDriver"]}));
    let r = c.call("/LogDriver.Capabilities", "");
    assert_eq!(r.json(), json!({"Cap": {"ReadLogs": true}}));

    write_lines(&mut writer, &["before-start"]);
    let start = json!({"File": file, "Info": {"ContainerID": "c1"}}).to_string();
    assert_eq!(c.call("/LogDriver.StartLogging", &start).status, 200);
    let again = c.call("/LogDriver.StartLogging", &start);
    assert_eq!(again.status, 500, "{:?}", again.json());
    write_lines(&mut writer, &["line1", "line2"]);

    // Following: the stream is open, so ReadLogs waits for more until StopLogging.
    let follower = {
        let socket = socket.clone();
        std::thread::spawn(move || read_stream(&socket, &read_body(true), Duration::from_secs(10)))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while read_stream(&socket, &read_body(false), Duration::from_secs(5)).len() < 3 {
        assert!(Instant::now() < deadline, "the lines never arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    write_lines(&mut writer, &["line3"]);
    // Written just before StopLogging: still delivered (StopLogging drains the FIFO).
    write_lines(&mut writer, &["last"]);
    let stop = json!({"File": file}).to_string();
    assert_eq!(c.call("/LogDriver.StopLogging", &stop).status, 200);

    let all = ["before-start", "line1", "line2", "line3", "last"];
    assert_eq!(
        read_stream(&socket, &read_body(false), Duration::from_secs(5)),
        all
    );
    assert_eq!(
        follower.join().unwrap(),
        all,
        "follow ends when logging stops"
    );
}

#[test]
fn a_file_that_is_not_a_fifo_is_refused() {
    let dir = TempDir::new("log-nofifo");
    let socket = start(&dir.0);
    let plain = dir.0.join("plain");
    std::fs::write(&plain, b"").unwrap();
    let mut c = Client::connect(&socket);
    let body = json!({"File": plain, "Info": {"ContainerID": "c1"}}).to_string();
    let r = c.call("/LogDriver.StartLogging", &body);
    assert_eq!(r.status, 500);
    assert!(
        r.json()["Err"].as_str().unwrap().contains("not a FIFO"),
        "{:?}",
        r.json()
    );
}
