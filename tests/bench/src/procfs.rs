//! Process figures from /proc: what a daemon and its plugins cost, read the same way for both.

use anyhow::Context;
use std::fs;
use std::path::Path;

fn status_field(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

pub fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    status_field(pid, "VmRSS")
}

pub fn threads(pid: u32) -> anyhow::Result<u64> {
    status_field(pid, "Threads")
}

pub fn fds(pid: u32) -> anyhow::Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Direct children of every thread of `pid` (a plugin under plugd is the child of whichever thread
/// launched it).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in tasks.flatten() {
        if let Ok(s) = fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

pub fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The process whose argument list contains `arg`, among all processes: how a containerd shim is
/// found from the plugin id dockerd gave it (`-id <id>`); shims are reparented away from dockerd.
pub fn find_by_arg(arg: &str) -> Option<u32> {
    let mut found = None;
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes()) {
            found = Some(pid);
        }
    }
    found
}

/// The pid plugd's native runtime records for a running plugin.
pub fn native_plugin_pid(exec_root: &Path, id: &str) -> anyhow::Result<u32> {
    let path = exec_root.join("state").join(id).join("state.json");
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(&path).with_context(|| path.display().to_string())?)?;
    let pid = v["pid"]
        .as_u64()
        .with_context(|| format!("no pid in {}", path.display()))?;
    Ok(u32::try_from(pid)?)
}
