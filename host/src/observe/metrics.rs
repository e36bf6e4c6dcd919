//! Per-plugin counters and their Prometheus text exposition (`GET /metrics`).
//!
//! Series are labelled by plugin name (and method, or fault kind), never by an id that changes
//! with a start, so a plugin's series survive its restarts and a dashboard keeps one line per
//! plugin. The method label is what the engine asked for; to keep a client that sends made-up
//! method names from growing the series without bound, a plugin gets at most [`MAX_METHODS`]
//! method labels and every further name is counted as `other`.
//!
//! Counting is lock-free on the call path (atomics behind a per-method `Arc`), except the first
//! call of each method, which takes the plugin's map lock once.

use plugd_core::observe::FaultKind;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Method labels per plugin before the rest go to `other`.
pub const MAX_METHODS: usize = 64;
/// Upper bounds of the latency histogram, in seconds: 50 µs (a forwarded call on this machine)
/// to 60 s (dockerd's own deadline for most calls).
pub const BUCKETS: [f64; 16] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    10.0, 60.0,
];
const FAULTS: [FaultKind; 4] = [
    FaultKind::Trap,
    FaultKind::Timeout,
    FaultKind::MemoryCap,
    FaultKind::Exited,
];

/// One method's counters.
#[derive(Default)]
pub struct MethodStats {
    calls: AtomicU64,
    errors: AtomicU64,
    /// Per bucket (not cumulative); the last is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// One plugin's counters, kept (under its name) across its restarts, dropped at `rm`.
#[derive(Default)]
pub struct PluginStats {
    methods: Mutex<BTreeMap<String, Arc<MethodStats>>>,
    restarts: AtomicU64,
    crashes: AtomicU64,
    faults: [AtomicU64; FAULTS.len()],
}

impl PluginStats {
    /// The counters of `method` (or of `other`, past [`MAX_METHODS`]).
    pub fn method(&self, method: &str) -> Arc<MethodStats> {
        let mut m = self.methods.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = m.get(method) {
            return s.clone();
        }
        let key = if m.len() < MAX_METHODS {
            method
        } else {
            "other"
        };
        m.entry(key.to_string()).or_default().clone()
    }

    /// Counts one finished call of `method`.
    pub fn record(&self, method: &str, ok: bool, took: Duration) {
        self.method(method).record(ok, took)
    }

    /// Counts a restart (a failed plugin running again).
    pub fn restarted(&self) {
        self.restarts.fetch_add(1, Relaxed);
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Relaxed)
    }

    /// Counts a failure of a running plugin that the manager had to act on.
    pub fn crashed(&self) {
        self.crashes.fetch_add(1, Relaxed);
    }

    /// Counts a fault the runtime handled.
    pub fn fault(&self, kind: FaultKind) {
        if let Some(i) = FAULTS.iter().position(|k| *k == kind) {
            self.faults[i].fetch_add(1, Relaxed);
        }
    }
}

impl MethodStats {
    /// Counts one call.
    pub fn record(&self, ok: bool, took: Duration) {
        self.calls.fetch_add(1, Relaxed);
        if !ok {
            self.errors.fetch_add(1, Relaxed);
        }
        let secs = took.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }
}

/// What the exposition says of one plugin besides its counters.
pub struct PluginView<'a> {
    /// The label value.
    pub name: &'a str,
    /// Its counters.
    pub stats: &'a PluginStats,
    /// Stored as enabled.
    pub enabled: bool,
    /// Running now.
    pub running: bool,
    /// What its runtime measures.
    pub usage: plugd_core::Usage,
    /// Its log's bytes on disk.
    pub log_bytes: u64,
}

/// Escapes a label value as the text format wants it.
fn label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A gauge family: name, help, the value of one plugin (none: the series is left out).
type Gauge = (
    &'static str,
    &'static str,
    fn(&PluginView<'_>) -> Option<f64>,
);
/// A per-plugin counter family: name, help, the value.
type Counter = (&'static str, &'static str, fn(&PluginStats) -> u64);
/// One plugin's methods and their counters, copied out of its lock.
type MethodRows = Vec<(String, Arc<MethodStats>)>;

/// Renders every plugin's series in the Prometheus text format (version 0.0.4).
pub fn render(plugins: &[PluginView<'_>]) -> String {
    let mut out = String::new();
    let gauges: [Gauge; 5] = [
        (
            "plugd_plugin_enabled",
            "Whether the plugin is enabled (1) or not (0).",
            |p| Some(f64::from(u8::from(p.enabled))),
        ),
        (
            "plugd_plugin_up",
            "Whether the plugin is running and serving (1) or not (0).",
            |p| Some(f64::from(u8::from(p.running))),
        ),
        (
            "plugd_plugin_resident_memory_bytes",
            "Memory the plugin holds: its processes' RSS (native), its instances' linear memories and tables (wasm).",
            |p| p.usage.memory_bytes.map(|b| b as f64),
        ),
        (
            "plugd_plugin_instances",
            "Live wasm instances of the plugin.",
            |p| p.usage.instances.map(f64::from),
        ),
        (
            "plugd_plugin_log_bytes",
            "Bytes of the plugin's own log on disk (all rotated files).",
            |p| Some(p.log_bytes as f64),
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        for p in plugins {
            if let Some(v) = value(p) {
                let _ = writeln!(out, "{name}{{plugin=\"{}\"}} {v}", label(p.name));
            }
        }
    }
    let counters: [Counter; 2] = [
        (
            "plugd_plugin_restarts_total",
            "Times plugd started the plugin again after a failure.",
            |s| s.restarts.load(Relaxed),
        ),
        (
            "plugd_plugin_crashes_total",
            "Times the running plugin failed (exited, stopped answering, could not be re-instantiated).",
            |s| s.crashes.load(Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        family(&mut out, name, "counter", help);
        for p in plugins {
            let _ = writeln!(
                out,
                "{name}{{plugin=\"{}\"}} {}",
                label(p.name),
                value(p.stats)
            );
        }
    }
    family(
        &mut out,
        "plugd_plugin_faults_total",
        "counter",
        "Faults the runtime handled, by kind: trap, timeout (wasm epoch interrupt or native call deadline), memory_cap, exited.",
    );
    for p in plugins {
        for (i, kind) in FAULTS.iter().enumerate() {
            let _ = writeln!(
                out,
                "plugd_plugin_faults_total{{plugin=\"{}\",kind=\"{}\"}} {}",
                label(p.name),
                kind.as_str(),
                p.stats.faults[i].load(Relaxed)
            );
        }
    }
    let per_method: Vec<(&str, MethodRows)> = plugins
        .iter()
        .map(|p| {
            let m = p.stats.methods.lock().unwrap_or_else(|e| e.into_inner());
            (
                p.name,
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            )
        })
        .collect();
    family(
        &mut out,
        "plugd_plugin_calls_total",
        "counter",
        "Protocol calls the engine made to the plugin, by method.",
    );
    for (name, methods) in &per_method {
        for (method, s) in methods {
            let _ = writeln!(
                out,
                "plugd_plugin_calls_total{{plugin=\"{}\",method=\"{}\"}} {}",
                label(name),
                label(method),
                s.calls.load(Relaxed)
            );
        }
    }
    family(
        &mut out,
        "plugd_plugin_call_errors_total",
        "counter",
        "Protocol calls answered with an error (any status but 200), by method.",
    );
    for (name, methods) in &per_method {
        for (method, s) in methods {
            let _ = writeln!(
                out,
                "plugd_plugin_call_errors_total{{plugin=\"{}\",method=\"{}\"}} {}",
                label(name),
                label(method),
                s.errors.load(Relaxed)
            );
        }
    }
    family(
        &mut out,
        "plugd_plugin_call_duration_seconds",
        "histogram",
        "Time from the engine's request to plugd's reply headers, by method.",
    );
    for (name, methods) in &per_method {
        for (method, s) in methods {
            let labels = format!("plugin=\"{}\",method=\"{}\"", label(name), label(method));
            let mut cumulative = 0;
            for (i, le) in BUCKETS.iter().enumerate() {
                cumulative += s.buckets[i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "plugd_plugin_call_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            cumulative += s.buckets[BUCKETS.len()].load(Relaxed);
            let _ = writeln!(
                out,
                "plugd_plugin_call_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cumulative}"
            );
            let sum = s.sum_nanos.load(Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "plugd_plugin_call_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "plugd_plugin_call_duration_seconds_count{{{labels}}} {cumulative}"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_their_buckets_and_the_count_matches() {
        let s = PluginStats::default();
        s.record("VolumeDriver.Get", true, Duration::from_micros(30));
        s.record("VolumeDriver.Get", false, Duration::from_millis(3));
        s.record("VolumeDriver.Get", true, Duration::from_secs(100));
        s.fault(FaultKind::Trap);
        s.restarted();
        let text = render(&[PluginView {
            name: "v\"1",
            stats: &s,
            enabled: true,
            running: true,
            usage: plugd_core::Usage::default(),
            log_bytes: 7,
        }]);
        let has = |l: &str| text.lines().any(|x| x == l);
        let labels = r#"plugin="v\"1",method="VolumeDriver.Get""#;
        assert!(
            has(&format!("plugd_plugin_calls_total{{{labels}}} 3")),
            "{text}"
        );
        assert!(has(&format!(
            "plugd_plugin_call_errors_total{{{labels}}} 1"
        )));
        assert!(has(&format!(
            "plugd_plugin_call_duration_seconds_bucket{{{labels},le=\"0.00005\"}} 1"
        )));
        assert!(has(&format!(
            "plugd_plugin_call_duration_seconds_bucket{{{labels},le=\"0.005\"}} 2"
        )));
        assert!(has(&format!(
            "plugd_plugin_call_duration_seconds_bucket{{{labels},le=\"60\"}} 2"
        )));
        assert!(has(&format!(
            "plugd_plugin_call_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 3"
        )));
        assert!(has(
            r#"plugd_plugin_faults_total{plugin="v\"1",kind="trap"} 1"#
        ));
        assert!(has(r#"plugd_plugin_restarts_total{plugin="v\"1"} 1"#));
        assert!(has(r#"plugd_plugin_log_bytes{plugin="v\"1"} 7"#));
        assert!(
            !text.contains("resident_memory_bytes{"),
            "unknown is left out"
        );
    }

    #[test]
    fn made_up_method_names_do_not_grow_the_series_without_bound() {
        let s = PluginStats::default();
        for i in 0..1000 {
            s.record(&format!("Made.Up{i}"), true, Duration::ZERO);
        }
        let m = s.methods.lock().unwrap();
        assert_eq!(m.len(), MAX_METHODS + 1);
        assert_eq!(m["other"].calls.load(Relaxed), 1000 - MAX_METHODS as u64);
    }
}
