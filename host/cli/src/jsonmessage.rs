//! The JSON progress stream of pull, upgrade and push, shown as the docker CLI shows it.
//!
//! The daemon streams docker's `jsonmessage`s (`{"status","id","progressDetail","progress"}`,
//! `{"errorDetail":{"message"},"error"}`, `{"aux"}`). Not on a terminal, the output is
//! `DisplayJSONMessagesStream`'s byte for byte: one line per message, messages whose progress
//! detail has a non-zero count skipped (no progress-bar spam in logs). On a terminal, each layer id
//! gets an indicatif bar where docker redraws a line in place; a message without an id (or without
//! progress) settles the bars into plain lines first, as docker forgets its line history there.
//!
//! Every text from the stream is shown with its control characters escaped (`\x1b`), line feeds
//! and tabs aside: the layer ids, statuses and errors come from the registry and the plugin, and an
//! escape sequence in them could rewrite what the terminal shows (docker prints them raw).
//!
//! A message with `errorDetail` ends the display with that message, printed bare as docker prints
//! it (no `Error response from daemon:`), exit status 1. Deliberate difference: a message with only
//! the deprecated `error` field also ends it (docker prints an empty line and carries on, then
//! reports success for a pull that failed). `aux` messages are not shown (the CLI has no signing
//! to feed them to); deprecated `time`/`timeNano` are not printed.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;

/// `s` with control characters escaped (`\x1b`, `\u0085`), tabs kept, and line
/// feeds kept when `newlines`: text from a hostile plugin or registry cannot drive the terminal.
pub(crate) fn visible(s: &str, newlines: bool) -> std::borrow::Cow<'_, str> {
    let keep = |c: char| c == '\t' || (newlines && c == '\n');
    if !s.chars().any(|c| c.is_control() && !keep(c)) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && !keep(c) {
            if (c as u32) < 0x80 {
                out.push_str(&format!("\\x{:02x}", c as u32));
            } else {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `jsonmessage.JSONProgress`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct JsonProgress {
    #[serde(default)]
    pub current: i64,
    #[serde(default)]
    pub total: i64,
}

impl JsonProgress {
    /// `JSONProgress.String() == ""`: nothing counted yet.
    fn is_empty(&self) -> bool {
        self.current <= 0 && self.total <= 0
    }
}

/// `jsonmessage.JSONError`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct JsonError {
    #[serde(default)]
    pub message: String,
}

/// `jsonmessage.JSONMessage`, the fields the display uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct JsonMessage {
    #[serde(default)]
    pub stream: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, rename = "progressDetail")]
    pub progress: Option<JsonProgress>,
    #[serde(default, rename = "progress")]
    pub progress_message: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub from: String,
    #[serde(default, rename = "errorDetail")]
    pub error: Option<JsonError>,
    #[serde(default, rename = "error")]
    pub error_message: String,
    #[serde(default)]
    pub aux: Option<serde_json::Value>,
}

impl JsonMessage {
    /// The failure this message reports, if it reports one.
    fn failure(&self) -> Option<String> {
        match &self.error {
            Some(e) => Some(visible(&e.message, true).into_owned()),
            None if !self.error_message.is_empty() => {
                Some(visible(&self.error_message, true).into_owned())
            }
            None => None,
        }
    }

    /// Whether docker keeps a redrawn line for this message.
    fn is_progress(&self) -> bool {
        !self.id.is_empty() && (self.progress.is_some() || !self.progress_message.is_empty())
    }

    /// `JSONMessage.Display` not on a terminal; `None` for a message it skips.
    pub fn plain(&self) -> Option<String> {
        if self.progress.as_ref().is_some_and(|p| !p.is_empty()) {
            return None;
        }
        let mut s = String::new();
        if !self.id.is_empty() {
            s.push_str(&visible(&self.id, false));
            s.push_str(": ");
        }
        if !self.from.is_empty() {
            s.push_str(&format!("(from {}) ", visible(&self.from, false)));
        }
        if !self.progress_message.is_empty() {
            // Docker writes no newline here either.
            s.push_str(&format!(
                "{} {}",
                visible(&self.status, false),
                visible(&self.progress_message, false)
            ));
        } else if !self.stream.is_empty() {
            s.push_str(&visible(&self.stream, true));
        } else {
            s.push_str(&visible(&self.status, false));
            s.push('\n');
        }
        Some(s)
    }
}

/// `units.HumanSize`: decimal units, four significant digits (Go's `%.4g`).
pub(crate) fn human_size(n: i64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = n as f64;
    let mut i = 0;
    while size >= 1000.0 && i < UNITS.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    format!("{}{}", go_g4(size), UNITS[i])
}

/// Go's `%.4g` for 0 ≤ v < 1000 (what `human_size` produces): trailing zeros dropped.
fn go_g4(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let int_digits = if v < 1.0 {
        0
    } else {
        v.log10().floor() as i32 + 1
    };
    let decimals = (4 - int_digits).max(0) as usize;
    let s = format!("{v:.decimals$}");
    // Rounding up can add a digit (999.95 → "1000.0"): keep four significant ones.
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Where a message stream is shown.
pub(crate) enum Display<'a> {
    /// Plain lines on a writer (not a terminal).
    Plain(&'a mut dyn Write),
    /// Bars on the terminal; settled lines through the writer (the same stdout).
    Tty(TtyBars<'a>),
}

impl<'a> Display<'a> {
    /// Plain lines, or bars when `tty`.
    pub fn new(out: &'a mut dyn Write, tty: bool) -> Display<'a> {
        if tty {
            Display::Tty(TtyBars::new(out, ProgressDrawTarget::stdout()))
        } else {
            Display::Plain(out)
        }
    }

    /// Shows one message; `Err` with the message's text when it reports a failure.
    pub fn show(&mut self, m: &JsonMessage) -> Result<(), String> {
        if m.aux.is_some() {
            return Ok(());
        }
        match self {
            Display::Plain(out) => {
                if let Some(f) = m.failure() {
                    return Err(f);
                }
                if let Some(line) = m.plain() {
                    let _ = out.write_all(line.as_bytes());
                    let _ = out.flush();
                }
                Ok(())
            }
            Display::Tty(bars) => bars.show(m),
        }
    }

    /// Leaves the terminal with every bar as a plain line.
    pub fn finish(&mut self) {
        if let Display::Tty(bars) = self {
            bars.settle();
        }
    }
}

/// Reads the whole stream from `body` into `display`. A message reporting a failure ends it with
/// that text; so does a stream that is not JSON or breaks off inside a message.
pub(crate) fn display_stream(body: &mut dyn Read, display: &mut Display<'_>) -> Result<(), String> {
    let reader = io::BufReader::new(body);
    let messages = serde_json::Deserializer::from_reader(reader).into_iter::<JsonMessage>();
    let mut result = Ok(());
    for m in messages {
        match m {
            Ok(m) => {
                if let Err(e) = display.show(&m) {
                    result = Err(e);
                    break;
                }
            }
            Err(e) if e.is_io() => {
                result = Err(format!("reading the daemon's progress stream: {e}"));
                break;
            }
            Err(e) => {
                result = Err(format!("the daemon's progress stream is not valid: {e}"));
                break;
            }
        }
    }
    display.finish();
    result
}

/// One layer's bar and the line it settles into.
struct Bar {
    bar: ProgressBar,
    line: String,
}

/// indicatif bars keyed by layer id, in first-seen order.
pub(crate) struct TtyBars<'a> {
    out: &'a mut dyn Write,
    /// Docker draws the `[==>  ]` box only on terminals wider than 110 columns.
    wide: bool,
    multi: MultiProgress,
    bars: Vec<Bar>,
    index: HashMap<String, usize>,
}

impl<'a> TtyBars<'a> {
    fn new(out: &'a mut dyn Write, target: ProgressDrawTarget) -> TtyBars<'a> {
        TtyBars {
            out,
            wide: !target.is_hidden()
                && console::Term::stdout()
                    .size_checked()
                    .is_some_and(|(_, cols)| cols > 110),
            multi: MultiProgress::with_draw_target(target),
            bars: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// The line docker leaves for a progress message: `id: status 1.2MB/3.4MB`.
    fn line_of(m: &JsonMessage) -> String {
        let mut s = format!("{}: ", visible(&m.id, false));
        if !m.from.is_empty() {
            s.push_str(&format!("(from {}) ", visible(&m.from, false)));
        }
        s.push_str(&visible(&m.status, false));
        match &m.progress {
            Some(p) if p.total > 0 && p.current <= p.total => {
                s.push_str(&format!(
                    " {:>8}/{}",
                    human_size(p.current),
                    human_size(p.total)
                ));
            }
            Some(p) if !p.is_empty() => {
                s.push_str(&format!(" {:>8}", human_size(p.current)));
            }
            _ if !m.progress_message.is_empty() => {
                s.push(' ');
                s.push_str(&visible(&m.progress_message, false));
            }
            _ => {}
        }
        s
    }

    fn show(&mut self, m: &JsonMessage) -> Result<(), String> {
        if let Some(f) = m.failure() {
            self.settle();
            return Err(f);
        }
        if !m.is_progress() {
            self.settle();
            if let Some(line) = plain_tty(m) {
                let _ = self.out.write_all(line.as_bytes());
                let _ = self.out.flush();
            }
            return Ok(());
        }
        let i = match self.index.get(&m.id) {
            Some(&i) => i,
            None => {
                let bar = self.multi.add(ProgressBar::new(0));
                self.bars.push(Bar {
                    bar,
                    line: String::new(),
                });
                self.index.insert(m.id.clone(), self.bars.len() - 1);
                self.bars.len() - 1
            }
        };
        let b = &mut self.bars[i];
        b.line = Self::line_of(m);
        match &m.progress {
            Some(p) if p.total > 0 && p.current <= p.total => {
                b.bar.set_style(
                    ProgressStyle::with_template(if self.wide {
                        "{prefix}: {msg} [{bar:50}] {pos}/{len}"
                    } else {
                        "{prefix}: {msg} {pos}/{len}"
                    })
                    .map(|s| {
                        s.progress_chars("=> ").with_key(
                            "pos",
                            |st: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                                let _ = write!(w, "{:>8}", human_size(st.pos() as i64));
                            },
                        )
                    })
                    .map(|s| {
                        s.with_key(
                            "len",
                            |st: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                                let _ = write!(w, "{}", human_size(st.len().unwrap_or(0) as i64));
                            },
                        )
                    })
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b.bar.set_length(p.total as u64);
                b.bar.set_position(p.current.max(0) as u64);
                b.bar.set_prefix(visible(&m.id, false).into_owned());
                b.bar.set_message(visible(&m.status, false).into_owned());
            }
            _ => {
                b.bar.set_style(
                    ProgressStyle::with_template("{msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b.bar.set_message(b.line.clone());
            }
        }
        Ok(())
    }

    /// Replaces every bar by its last line, in order, so later output comes below them.
    fn settle(&mut self) {
        if self.bars.is_empty() {
            return;
        }
        for b in &self.bars {
            b.bar.finish_and_clear();
            self.multi.remove(&b.bar);
        }
        let _ = self.multi.clear();
        for b in self.bars.drain(..) {
            let _ = writeln!(self.out, "{}", b.line);
        }
        let _ = self.out.flush();
        self.index.clear();
    }
}

/// `JSONMessage.Display` on a terminal for a message that is not a redrawn line.
fn plain_tty(m: &JsonMessage) -> Option<String> {
    let mut s = String::new();
    if !m.id.is_empty() {
        s.push_str(&visible(&m.id, false));
        s.push_str(": ");
    }
    if !m.from.is_empty() {
        s.push_str(&format!("(from {}) ", visible(&m.from, false)));
    }
    if !m.stream.is_empty() {
        s.push_str(&visible(&m.stream, true));
    } else {
        s.push_str(&visible(&m.status, false));
        s.push('\n');
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(stream: &str) -> (String, Result<(), String>) {
        let mut out = Vec::new();
        let r = {
            let mut d = Display::Plain(&mut out);
            display_stream(&mut stream.as_bytes(), &mut d)
        };
        (String::from_utf8(out).unwrap(), r)
    }

    #[test]
    fn plain_output_is_dockers_without_the_bars() {
        let stream = concat!(
            r#"{"status":"Pulling from x","id":"latest"}"#,
            "\n",
            r#"{"status":"Pulling fs layer","progressDetail":{},"id":"abc"}"#,
            "\n",
            r#"{"status":"Downloading","progressDetail":{"current":10,"total":100},"progress":"[=>   ] 10B/100B","id":"abc"}"#,
            "\n",
            r#"{"status":"Downloading","progressDetail":{"current":100,"total":100},"id":"abc"}"#,
            r#"{"status":"Download complete","progressDetail":{},"id":"abc"}"#,
            "\n\n",
            r#"{"status":"Digest: sha256:0123"}"#,
            "\n",
            r#"{"aux":{"Tag":"latest","Digest":"sha256:0123","Size":528}}"#,
            "\n",
            r#"{"status":"Status: Downloaded newer image for x:latest"}"#,
            "\n",
            r#"{"stream":"raw text\n"}"#,
        );
        let (out, r) = plain(stream);
        r.unwrap();
        assert_eq!(
            out,
            "latest: Pulling from x\nabc: Pulling fs layer\nabc: Download complete\n\
             Digest: sha256:0123\nStatus: Downloaded newer image for x:latest\nraw text\n"
        );
    }

    #[test]
    fn error_detail_ends_the_stream_with_its_message() {
        let stream = concat!(
            r#"{"status":"Pulling"}"#,
            "\n",
            r#"{"errorDetail":{"message":"unauthorized: authentication required"},"error":"unauthorized: authentication required"}"#,
            "\n",
            r#"{"status":"never shown"}"#,
        );
        let (out, r) = plain(stream);
        assert_eq!(out, "Pulling\n");
        assert_eq!(r.unwrap_err(), "unauthorized: authentication required");
        let (_, r) = plain(r#"{"error":"old-style failure"}"#);
        assert_eq!(r.unwrap_err(), "old-style failure");
    }

    #[test]
    fn broken_streams_are_errors() {
        let (out, r) = plain("{\"status\":\"a\"}\n{\"status\":");
        assert_eq!(out, "a\n");
        assert!(r.unwrap_err().contains("not valid"));
        let (_, r) = plain("{\"status\":\"a\"} garbage");
        assert!(r.is_err());
        let (_, r) = plain(r#"{"progressDetail":{"current":"x"}}"#);
        assert!(r.is_err());
        let (out, r) = plain("");
        assert_eq!((out.as_str(), r), ("", Ok(())));
    }

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        let stream = concat!(
            r#"{"status":"ok\u001b[2K\rgone","id":"l\u001b]0;x\u0007"}"#,
            r#"{"stream":"line\n\tnext\r\n"}"#,
            r#"{"errorDetail":{"message":"bad\u001b[31m\u0085"}}"#,
        );
        let (out, r) = plain(stream);
        assert_eq!(
            out,
            "l\\x1b]0;x\\x07: ok\\x1b[2K\\x0dgone\nline\n\tnext\\x0d\n"
        );
        assert_eq!(r.unwrap_err(), "bad\\x1b[31m\\u0085");
        assert_eq!(visible("plain\ttext", false), "plain\ttext");
    }

    #[test]
    fn human_sizes_like_go_units() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1024), "1.024kB");
        assert_eq!(human_size(1_500_000), "1.5MB");
        assert_eq!(human_size(12_345_678), "12.35MB");
        assert_eq!(human_size(123_456_789), "123.5MB");
    }

    #[test]
    fn tty_bars_settle_into_lines_in_order() {
        let mut out = Vec::new();
        let r = {
            let mut d = Display::Tty(TtyBars::new(&mut out, ProgressDrawTarget::hidden()));
            let stream = concat!(
                r#"{"status":"The push refers to repository [r/x]"}"#,
                r#"{"status":"Preparing","progressDetail":{},"id":"l1"}"#,
                r#"{"status":"Preparing","progressDetail":{},"id":"l2"}"#,
                r#"{"status":"Pushing","progressDetail":{"current":500,"total":2000},"id":"l1"}"#,
                r#"{"status":"Pushed","progressDetail":{},"id":"l2"}"#,
                r#"{"status":"latest: digest: sha256:00 size: 528"}"#,
                r#"{"status":"Again","progressDetail":{"current":7},"id":"l1"}"#,
            );
            display_stream(&mut stream.as_bytes(), &mut d)
        };
        r.unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "The push refers to repository [r/x]\nl1: Pushing     500B/2kB\nl2: Pushed\n\
             latest: digest: sha256:00 size: 528\nl1: Again       7B\n"
        );
    }

    #[test]
    fn tty_error_settles_bars_first() {
        let mut out = Vec::new();
        let r = {
            let mut d = Display::Tty(TtyBars::new(&mut out, ProgressDrawTarget::hidden()));
            let stream = concat!(
                r#"{"status":"Downloading","progressDetail":{"current":1,"total":2},"id":"l1"}"#,
                r#"{"errorDetail":{"message":"digest mismatch"}}"#,
            );
            display_stream(&mut stream.as_bytes(), &mut d)
        };
        assert_eq!(r.unwrap_err(), "digest mismatch");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "l1: Downloading       1B/2B\n"
        );
    }
}
