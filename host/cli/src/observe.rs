//! `plugd logs` and `plugd ps`: what a plugin wrote and how supervision sees it (plugd's own
//! verbs; docker has neither for plugins).
//!
//! `plugd logs` prints as `docker logs` does: the plugin's stdout on stdout, its stderr on
//! stderr, and plugd's notes about it (a trap, a timeout, an exit, a restart) on stderr behind
//! `[plugd]`. Times (`--since`) are sent to the daemon as `seconds.nanoseconds`, as the docker CLI
//! sends them.

use crate::client::{ApiClient, ReqBody, escape_path, escape_query};
use crate::{Failure, LogsArgs, PsArgs};
use hyper::Method;
use std::io::{BufRead as _, BufReader, Write};

/// One entry of the daemon's reply (docker's json-file shape).
#[derive(serde::Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

/// `--since`: RFC 3339 (`2026-12-04T10:00:00Z`), Unix seconds (`1764842400[.5]`), or a duration
/// before now (`90s`, `10m`, `1h30m`), as `docker logs --since` takes it.
pub(crate) fn since_value(raw: &str, now: chrono::DateTime<chrono::Utc>) -> Result<String, String> {
    let raw = raw.trim();
    let bad = || {
        format!(
            "invalid --since {raw:?}: want a date (RFC 3339), Unix seconds or a duration (10m, 1h30m)"
        )
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        let nanos = t.timestamp_nanos_opt().ok_or_else(bad)?;
        return Ok(format!(
            "{}.{:09}",
            nanos.div_euclid(1_000_000_000),
            nanos.rem_euclid(1_000_000_000)
        ));
    }
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Ok(raw.to_string());
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut rest = raw;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        num.clear();
        num.push_str(&rest[..digits]);
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let n: f64 = num.parse().map_err(|_| bad())?;
        total += n * match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
    }
    if raw.is_empty() {
        return Err(bad());
    }
    let at = now - chrono::Duration::milliseconds((total * 1000.0) as i64);
    let nanos = at.timestamp_nanos_opt().ok_or_else(bad)?;
    Ok(format!(
        "{}.{:09}",
        nanos.div_euclid(1_000_000_000),
        nanos.rem_euclid(1_000_000_000)
    ))
}

/// `plugd logs [-f] [--tail N] [--since T] [-t] PLUGIN`.
pub(crate) fn logs(
    host: &str,
    a: &LogsArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let mut query = vec![format!("follow={}", u8::from(a.follow))];
    if let Some(tail) = &a.tail {
        query.push(format!("tail={}", escape_query(tail)));
    }
    if let Some(since) = &a.since {
        let since = since_value(since, chrono::Utc::now())?;
        query.push(format!("since={}", escape_query(&since)));
    }
    let path = format!(
        "/plugins/{}/logs?{}",
        escape_path(&a.names[0]),
        query.join("&")
    );
    let client = ApiClient::new(host)?;
    let stream = client.request_stream(Method::GET, &path, ReqBody::Empty, None, &[])?;
    for line in BufReader::new(stream).split(b'\n') {
        let line = line.map_err(|e| format!("reading the log: {e}"))?;
        if line.is_empty() {
            continue;
        }
        let e: Entry =
            serde_json::from_slice(&line).map_err(|e| format!("reading the log: {e}"))?;
        let stamp = if a.timestamps {
            format!("{} ", e.time)
        } else {
            String::new()
        };
        let written = match e.stream.as_str() {
            "stdout" => write!(out, "{stamp}{}", e.log).and_then(|()| out.flush()),
            "stderr" => write!(err, "{stamp}{}", e.log).and_then(|()| err.flush()),
            _ => write!(err, "{stamp}[plugd] {}", e.log).and_then(|()| err.flush()),
        };
        // A closed pipe (`plugd logs -f p | head`) ends the command, as for docker logs.
        if written.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// One row of `GET /plugd/status` (the daemon's `PluginStatus`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Status {
    name: String,
    state: String,
    runtime: Option<String>,
    pid: Option<u32>,
    instances: Option<u32>,
    memory_bytes: Option<u64>,
    uptime_seconds: Option<u64>,
    restarts: u64,
    last_error: Option<String>,
}

fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b < 1 << 20 => format!("{:.1}KiB", b as f64 / 1024.0),
        b if b < 1 << 30 => format!("{:.1}MiB", b as f64 / f64::from(1u32 << 20)),
        b => format!("{:.2}GiB", b as f64 / f64::from(1u32 << 30)),
    }
}

/// `plugd ps [--format json] [--no-trunc]`.
pub(crate) fn ps(host: &str, a: &PsArgs, out: &mut dyn Write) -> Result<(), Failure> {
    if a.format != "table" && a.format != "json" {
        return Err(Failure {
            msg: format!("invalid --format {:?}: 'table' or 'json'", a.format),
            code: 64,
        });
    }
    let client = ApiClient::new(host)?;
    let resp = client.request(Method::GET, "/plugd/status", ReqBody::Empty, None)?;
    if a.format == "json" {
        let _ = out.write_all(&resp.body);
        let _ = writeln!(out);
        return Ok(());
    }
    let rows: Vec<Status> =
        serde_json::from_slice(&resp.body).map_err(|e| format!("reading the reply: {e}"))?;
    let mut text = String::new();
    let mut row = |cells: [String; 8]| {
        for c in cells {
            // Cells may hold a plugin's words (its last error): no tab or newline of theirs may
            // shift the table.
            text.push_str(&c.replace(['\t', '\n', '\r'], " "));
            text.push('\t');
        }
        text.push('\n');
    };
    row([
        "NAME",
        "RUNTIME",
        "STATE",
        "PID/INSTANCES",
        "UPTIME",
        "RESTARTS",
        "MEMORY",
        "LAST ERROR",
    ]
    .map(str::to_string));
    for r in rows {
        let pid = match (r.pid, r.instances) {
            (Some(p), _) => p.to_string(),
            (None, Some(n)) => format!("{n} instance{}", if n == 1 { "" } else { "s" }),
            _ => "-".into(),
        };
        let mut last = r.last_error.unwrap_or_default();
        if !a.no_trunc && last.chars().count() > 60 {
            last = last.chars().take(59).collect::<String>() + "…";
        }
        row([
            r.name,
            r.runtime.unwrap_or_else(|| "-".into()),
            r.state,
            pid,
            r.uptime_seconds.map_or("-".into(), human_duration),
            r.restarts.to_string(),
            r.memory_bytes.map_or("-".into(), human_bytes),
            last,
        ]);
    }
    let _ = out.write_all(crate::tabwriter::layout(&text).as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_dates_seconds_and_durations() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let at = |s: &str| since_value(s, now).unwrap();
        assert_eq!(at("2026-12-04T10:00:00.5Z"), "1796378400.500000000");
        assert_eq!(at("1796378400"), "1796378400");
        assert_eq!(at("1796378400.25"), "1796378400.25");
        assert_eq!(at("10m"), "1796377800.000000000");
        assert_eq!(at("1h30m"), "1796373000.000000000");
        assert_eq!(at("1.5s"), "1796378398.500000000");
        for bad in ["", "yesterday", "10x", "1h30", "-5m"] {
            assert!(since_value(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_and_uptimes_read_as_people_say_them() {
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(61), "1m1s");
        assert_eq!(human_duration(7260), "2h1m");
        assert_eq!(human_duration(90000), "1d1h");
        assert_eq!(human_bytes(2048), "2.0KiB");
        assert_eq!(human_bytes(3 << 20), "3.0MiB");
    }
}
