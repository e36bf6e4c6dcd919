//! What users see of their plugins besides the Engine API: each plugin's own log
//! ([`plugin_log`]), the event stream ([`events`]) and the metrics ([`metrics`]).
//!
//! [`Telemetry`] is the daemon's one hub: the manager asks it for a [`PluginTelemetry`] per
//! plugin and hands that to the runtimes (as the [`plugd_core::Observer`] of every start) and to
//! the plugin's socket (to count calls). A plugin's log and counters are keyed by its id and
//! survive its restarts and plugd's; they go at `plugin rm`.

pub mod events;
pub mod metrics;
pub mod plugin_log;

use events::{Action, Events};
use metrics::PluginStats;
use plugd_core::observe::{Fault, FaultKind, OutputStream, PluginObserver};
use plugin_log::{Limits, PluginLog};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The daemon's hub.
pub struct Telemetry {
    events: Events,
    logs_dir: PathBuf,
    limits: Limits,
    plugins: Mutex<HashMap<String, Arc<PluginTelemetry>>>,
}

/// One plugin's log, counters and last error.
pub struct PluginTelemetry {
    id: String,
    name: String,
    /// Its own log.
    pub log: PluginLog,
    /// Its counters.
    pub stats: PluginStats,
    events: Events,
    last_error: Mutex<Option<(SystemTime, String)>>,
}

impl Telemetry {
    /// Logs go under `logs_dir/<id>/`, bounded by `limits`.
    pub fn new(logs_dir: PathBuf, limits: Limits) -> Telemetry {
        Telemetry {
            events: Events::default(),
            logs_dir,
            limits,
            plugins: Mutex::new(HashMap::new()),
        }
    }

    /// The event bus.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Plugin `id`'s telemetry, made on first use.
    pub fn plugin(&self, id: &str, name: &str) -> Arc<PluginTelemetry> {
        let mut map = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(id) {
            Some(p) if p.name == name => p.clone(),
            _ => {
                let p = Arc::new(PluginTelemetry {
                    id: id.to_string(),
                    name: name.to_string(),
                    log: PluginLog::new(self.logs_dir.join(id), self.limits),
                    stats: PluginStats::default(),
                    events: self.events.clone(),
                    last_error: Mutex::new(None),
                });
                map.insert(id.to_string(), p.clone());
                p
            }
        }
    }

    /// Drops plugin `id`'s counters and deletes its log (at `plugin rm`).
    pub fn forget(&self, id: &str) {
        let gone = self
            .plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        match gone {
            Some(p) => p.log.remove_all(),
            None => {
                let _ = std::fs::remove_dir_all(self.logs_dir.join(id));
            }
        }
    }

    /// Publishes a lifecycle event.
    pub fn event(&self, action: Action, id: &str, name: &str, attributes: &[(&str, &str)]) {
        self.events.publish(action, id, name, attributes);
    }
}

/// `0s`, `1s`, `30s`, `1.5s`: how a backoff is said in events and notes.
pub fn human(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

impl PluginTelemetry {
    /// The observer the runtimes get.
    pub fn observer(self: &Arc<Self>) -> plugd_core::Observer {
        plugd_core::Observer::new(self.clone())
    }

    /// Writes one of plugd's notes about the plugin into its log.
    pub fn note(&self, text: &str) {
        self.log.append("plugd", text);
    }

    /// Records `why` as the plugin's last error (for `plugd ps`), notes it in its log and
    /// publishes `action` with `attributes`.
    pub fn failed(&self, action: Action, why: &str, attributes: &[(&str, &str)]) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((SystemTime::now(), why.to_string()));
        self.note(&format!("{}: {why}", action.as_str()));
        self.events
            .publish(action, &self.id, &self.name, attributes);
    }

    /// Publishes a supervision event that is not a failure (a restart).
    pub fn event(&self, action: Action, attributes: &[(&str, &str)]) {
        self.events
            .publish(action, &self.id, &self.name, attributes);
    }

    /// The last failure and when it happened.
    pub fn last_error(&self) -> Option<(SystemTime, String)> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl PluginObserver for PluginTelemetry {
    fn output(&self, stream: OutputStream, line: &str) {
        self.log.append(stream.as_str(), line);
    }

    fn note(&self, text: &str) {
        PluginTelemetry::note(self, text);
    }

    fn fault(&self, fault: &Fault) {
        self.stats.fault(fault.kind);
        let action = match fault.kind {
            FaultKind::Trap => Action::Trap,
            FaultKind::Timeout => Action::Timeout,
            FaultKind::MemoryCap => Action::MemoryCap,
            FaultKind::Exited => Action::Crash,
        };
        let method = fault.method.as_deref().unwrap_or("");
        let mut attrs = vec![("reason", fault.detail.as_str())];
        if !method.is_empty() {
            attrs.push(("method", method));
        }
        let why = if method.is_empty() {
            fault.detail.clone()
        } else {
            format!("{method}: {}", fault.detail)
        };
        self.failed(action, &why, &attrs);
    }
}
