//! `plugd check` (plugd's own verb): asks the daemon to probe a plugin's sandbox and prints the
//! matrix — privilege, declared, one column per runtime, verdict — as a table, or the daemon's
//! JSON with `--format json`. Exit status: 0 when every column that ran agrees with the
//! declaration (a runtime that refuses the declaration is an answer too), 1 on any mismatch, 2
//! when a column asked for could not run (failed, unavailable) or none ran.

use crate::client::{ApiClient, ReqBody, escape_path, escape_query};
use crate::jsonmessage::visible;
use crate::{CheckArgs, Failure};
use hyper::Method;
use plugd_core::check::rows::{CellStatus, Column, Matrix, State, Verdict};
use std::io::Write;

pub(crate) fn check(host: &str, a: &CheckArgs, out: &mut dyn Write) -> Result<(), Failure> {
    if a.format != "table" && a.format != "json" {
        return Err(Failure {
            msg: format!("invalid --format {:?}: 'table' or 'json'", a.format),
            code: 64,
        });
    }
    let mut query = Vec::new();
    if let Some(r) = &a.runtime {
        if !matches!(r.as_str(), "native" | "wasm" | "both") {
            return Err(Failure {
                msg: format!("invalid --runtime {r:?}: native, wasm or both"),
                code: 64,
            });
        }
        query.push(format!("runtime={r}"));
    }
    if let Some(h) = &a.docker_host {
        query.push(format!("dockerHost={}", escape_query(h)));
    }
    let client = ApiClient::new(host)?;
    let mut path = format!("/plugins/{}/check", escape_path(&a.names[0]));
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let resp = client.request(Method::POST, &path, ReqBody::Empty, None)?;
    let matrix: Matrix = serde_json::from_slice(&resp.body)
        .map_err(|e| format!("reading the daemon's check reply: {e}"))?;
    if a.format == "json" {
        let _ = out.write_all(&resp.body);
        let _ = writeln!(out);
    } else {
        let _ = out.write_all(table(&matrix).as_bytes());
    }
    if matrix.mismatches > 0 {
        return Err(Failure {
            msg: format!(
                "plugin {}: {} privilege(s) enforced differently than declared",
                visible(&matrix.plugin, false),
                matrix.mismatches
            ),
            code: 1,
        });
    }
    // A column asked for that could not run proves nothing; only a refusal (the runtime would not
    // run the plugin at all) is an answer.
    let unchecked: Vec<String> = matrix
        .columns
        .iter()
        .filter(|c| matches!(c.state, State::Failed | State::Unavailable))
        .map(|c| format!("{}: {}", c.column.name(), visible(&c.detail, false)))
        .collect();
    if !unchecked.is_empty() || !matrix.columns.iter().any(|c| c.state == State::Ran) {
        return Err(Failure {
            msg: if unchecked.is_empty() {
                "no runtime could be checked".to_string()
            } else {
                format!("not checked: {}", unchecked.join("; "))
            },
            code: 2,
        });
    }
    Ok(())
}

/// A table cell: the text with control characters and tabs escaped (a plugin's file names reach
/// the report), never more than one line.
fn cell(s: &str) -> String {
    visible(s, false).replace('\t', "\\t")
}

fn table(m: &Matrix) -> String {
    let columns: Vec<Column> = m.columns.iter().map(|c| c.column).collect();
    let mut text = String::new();
    for c in &m.columns {
        text.push_str(&format!(
            "{}: {} ({})\n",
            c.column.name(),
            c.state.name(),
            cell(&c.detail)
        ));
    }
    text.push('\n');
    text.push_str("CLASS\tPRIVILEGE\tDECLARED");
    for c in &columns {
        text.push('\t');
        text.push_str(&c.name().to_ascii_uppercase());
    }
    text.push_str("\tVERDICT\n");
    for r in &m.rows {
        text.push_str(&format!(
            "{}\t{}\t{}",
            cell(&r.class),
            cell(&r.privilege),
            cell(&r.declared)
        ));
        for c in &columns {
            let shown = match r.cells.get(c) {
                None => "-".to_string(),
                Some(x) => match x.status {
                    CellStatus::Mismatch => {
                        format!("{} (expected {})", cell(&x.observed), cell(&x.expected))
                    }
                    CellStatus::NotRun => "-".to_string(),
                    _ => cell(&x.observed),
                },
            };
            text.push('\t');
            text.push_str(&shown);
        }
        text.push('\t');
        text.push_str(match r.verdict {
            Verdict::Ok => "ok",
            Verdict::Mismatch => "MISMATCH",
        });
        text.push('\n');
    }
    crate::tabwriter::layout(&text)
}
