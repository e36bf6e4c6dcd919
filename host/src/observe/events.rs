//! `GET /events`: what happened to plugins, in dockerd's event shape, so `docker events --filter
//! type=plugin` works against plugd unchanged.
//!
//! A message is dockerd's `events.Message` for type `plugin`: `Type`, `Action`, `Actor` (`ID`,
//! `Attributes` with at least `name`), `scope` `local`, `time` and `timeNano`; dockerd fills the
//! deprecated `status`/`id`/`from` only for containers and images, and so does plugd (never).
//! dockerd's actions keep dockerd's meaning (`pull` with the remote reference as Actor.ID, `create`,
//! `enable`, `disable`, `remove`); plugd's own are listed in [`Action`] and docs/protocol.md.
//!
//! As dockerd's events service, the last [`KEEP`] messages are kept for `since`, and a subscriber
//! that falls behind by more than the channel holds loses the oldest (it is never allowed to
//! slow down the plugins whose events it reads).

use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Messages kept for `since` (dockerd's `eventsLimit`).
pub const KEEP: usize = 256;
/// Messages a subscriber may fall behind by before it loses the oldest.
const CHANNEL: usize = 1024;

/// Every action plugd reports. The first six are dockerd's (plus `push` and `upgrade`, which
/// dockerd does not report: same shape); the rest are plugd's supervision, which dockerd has no
/// words for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// dockerd's: an install fetched the plugin (Actor.ID is the remote reference).
    Pull,
    /// dockerd's: `plugin create`.
    Create,
    /// dockerd's.
    Enable,
    /// dockerd's.
    Disable,
    /// dockerd's.
    Remove,
    /// plugd's: a push finished.
    Push,
    /// plugd's: an upgrade finished (attribute `remote`).
    Upgrade,
    /// plugd's: a running plugin failed (its process exited, its socket stopped answering, its
    /// instance could not be made again); attribute `reason`.
    Crash,
    /// plugd's: a failed plugin runs again; attributes `delay` (the backoff waited before this
    /// attempt) and `restarts` (how many so far).
    Restart,
    /// plugd's: a restart attempt failed; attributes `error` and `retryIn`.
    RestartFailed,
    /// plugd's: a wasm guest trapped (attributes `method`, `reason`); the call failed and the
    /// instance was replaced.
    Trap,
    /// plugd's: a call ran past its deadline (attributes `method`, `reason`).
    Timeout,
    /// plugd's: a wasm instance grew past its memory cap.
    MemoryCap,
    /// plugd's: `enable --check` found the sandbox differs from the declaration.
    CheckFailed,
}

impl Action {
    /// The `Action` string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Create => "create",
            Action::Enable => "enable",
            Action::Disable => "disable",
            Action::Remove => "remove",
            Action::Push => "push",
            Action::Upgrade => "upgrade",
            Action::Crash => "crash",
            Action::Restart => "restart",
            Action::RestartFailed => "restart_failed",
            Action::Trap => "trap",
            Action::Timeout => "timeout",
            Action::MemoryCap => "memory_cap",
            Action::CheckFailed => "check_failed",
        }
    }
}

/// dockerd's `events.Actor`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Actor {
    /// The plugin id (the remote reference for `pull`).
    #[serde(rename = "ID")]
    pub id: String,
    /// `name` and the action's own attributes.
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// dockerd's `events.Message`, as it encodes one of type `plugin`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Message {
    /// Always `plugin`.
    #[serde(rename = "Type")]
    pub kind: &'static str,
    /// The action's wire name.
    #[serde(rename = "Action")]
    pub action: String,
    /// Who.
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// Always `local`.
    pub scope: &'static str,
    /// Seconds since the epoch.
    pub time: i64,
    /// Nanoseconds since the epoch.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

/// The event bus: one per daemon.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Arc<Message>>,
    recent: Arc<Mutex<VecDeque<Arc<Message>>>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(CHANNEL).0,
            recent: Arc::new(Mutex::new(VecDeque::with_capacity(KEEP))),
        }
    }
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Events {
    /// Publishes one event about plugin `id` called `name`, with extra `attributes`.
    pub fn publish(&self, action: Action, id: &str, name: &str, attributes: &[(&str, &str)]) {
        let mut attrs: BTreeMap<String, String> = attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        attrs.insert("name".into(), name.to_string());
        let nanos = now_nanos();
        let m = Arc::new(Message {
            kind: "plugin",
            action: action.as_str().to_string(),
            actor: Actor {
                id: id.to_string(),
                attributes: attrs,
            },
            scope: "local",
            time: nanos.div_euclid(1_000_000_000),
            time_nano: nanos,
        });
        // Under the lock, so a subscriber's backlog and its channel neither miss nor repeat one.
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == KEEP {
            recent.pop_front();
        }
        recent.push_back(m.clone());
        let _ = self.tx.send(m);
    }

    /// The kept messages at or after `since_nanos` (none without it), and a receiver of every
    /// later one.
    pub fn subscribe(
        &self,
        since_nanos: Option<i64>,
    ) -> (Vec<Arc<Message>>, broadcast::Receiver<Arc<Message>>) {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let backlog = match since_nanos {
            Some(since) => recent
                .iter()
                .filter(|m| m.time_nano >= since)
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        (backlog, self.tx.subscribe())
    }
}

/// Filter keys dockerd's `/events` accepts; any other is refused as dockerd refuses it.
const ACCEPTED: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// A parsed `filters` query: dockerd's semantics for the keys that can match a plugin event.
#[derive(Debug, Default, Clone)]
pub struct Filter(HashMap<String, Vec<String>>);

impl Filter {
    /// Parses the `filters` query value (`{"type":{"plugin":true}}`, or the older
    /// `{"type":["plugin"]}`); an empty string is no filter.
    pub fn parse(raw: &str) -> Result<Filter, String> {
        let mut map = HashMap::new();
        for (key, vals) in crate::api::filter_args(raw)? {
            if !ACCEPTED.contains(&key.as_str()) {
                return Err(format!("invalid filter '{key}'"));
            }
            map.insert(key, vals);
        }
        Ok(Filter(map))
    }

    /// dockerd's `events.Filter.Include` for an event of type `plugin`: every key given must
    /// match; a key that names another object type (container, volume, …) matches no plugin event.
    pub fn includes(&self, m: &Message) -> bool {
        let exact = |key: &str, candidates: &[&str]| match self.0.get(key) {
            None => true,
            Some(vals) => vals.iter().any(|v| candidates.contains(&v.as_str())),
        };
        let name = m.actor.attributes.get("name").map_or("", String::as_str);
        let labels_match = match self.0.get("label") {
            None => true,
            Some(vals) => vals.iter().all(|want| match want.split_once('=') {
                Some((k, v)) => m.actor.attributes.get(k).is_some_and(|x| x == v),
                None => m.actor.attributes.contains_key(want),
            }),
        };
        let other_types = [
            "config",
            "container",
            "daemon",
            "image",
            "network",
            "node",
            "secret",
            "service",
            "volume",
        ];
        exact("type", &[m.kind])
            && exact("event", &[&m.action])
            && exact("scope", &[m.scope])
            && exact("plugin", &[&m.actor.id, name])
            && labels_match
            && other_types.iter().all(|k| !self.0.contains_key(*k))
    }
}

/// Parses dockerd's `since`/`until` query value: `seconds[.nanoseconds]` since the epoch (the
/// docker CLI turns durations and dates into this form before sending them).
pub fn parse_timestamp(raw: &str) -> Result<i64, String> {
    let bad = || format!("invalid timestamp {raw:?}: want seconds[.nanoseconds] since the epoch");
    let (secs, frac) = raw.split_once('.').unwrap_or((raw, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    secs.checked_mul(1_000_000_000)
        .and_then(|s| s.checked_add(nanos))
        .ok_or_else(bad)
}

/// The current time in the form [`parse_timestamp`] reads.
pub fn now() -> i64 {
    now_nanos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_has_dockerds_shape() {
        let ev = Events::default();
        let (_, mut rx) = ev.subscribe(None);
        ev.publish(Action::Enable, "abc", "vol:latest", &[]);
        let m = rx.try_recv().unwrap();
        let v = serde_json::to_value(&*m).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["Action", "Actor", "Type", "scope", "time", "timeNano"]
        );
        assert_eq!(v["Type"], "plugin");
        assert_eq!(v["Action"], "enable");
        assert_eq!(v["Actor"]["ID"], "abc");
        assert_eq!(v["Actor"]["Attributes"]["name"], "vol:latest");
        assert_eq!(v["scope"], "local");
        assert_eq!(
            v["time"].as_i64().unwrap(),
            v["timeNano"].as_i64().unwrap() / 1_000_000_000
        );
    }

    #[test]
    fn since_replays_only_the_kept_tail() {
        let ev = Events::default();
        for i in 0..KEEP + 10 {
            ev.publish(Action::Create, &i.to_string(), "p", &[]);
        }
        let (backlog, _) = ev.subscribe(Some(0));
        assert_eq!(backlog.len(), KEEP);
        assert_eq!(backlog[0].actor.id, "10");
        let (none, _) = ev.subscribe(None);
        assert!(none.is_empty());
        let (future, _) = ev.subscribe(Some(now() + 1_000_000_000));
        assert!(future.is_empty());
    }

    fn msg(action: Action) -> Message {
        let ev = Events::default();
        let (_, mut rx) = ev.subscribe(None);
        ev.publish(action, "id1", "vol:latest", &[("reason", "x")]);
        (*rx.try_recv().unwrap()).clone()
    }

    #[test]
    fn filters_match_as_dockerds() {
        let m = msg(Action::Crash);
        let f = |raw: &str| Filter::parse(raw).unwrap().includes(&m);
        assert!(f(""));
        assert!(f(r#"{"type":{"plugin":true}}"#));
        assert!(!f(r#"{"type":{"container":true}}"#));
        assert!(f(r#"{"event":{"crash":true,"enable":true}}"#));
        assert!(!f(r#"{"event":{"enable":true}}"#));
        assert!(f(r#"{"plugin":{"vol:latest":true}}"#));
        assert!(f(r#"{"plugin":["id1"]}"#));
        assert!(!f(r#"{"plugin":["other"]}"#));
        assert!(!f(r#"{"container":{"c1":true}}"#));
        assert!(f(r#"{"label":{"reason=x":true}}"#));
        assert!(!f(r#"{"label":{"reason=y":true}}"#));
        assert!(f(r#"{"type":{"plugin":true},"scope":{"local":true}}"#));
        assert_eq!(
            Filter::parse(r#"{"nope":{"x":true}}"#).unwrap_err(),
            "invalid filter 'nope'"
        );
        assert!(Filter::parse("[").is_err());
    }

    #[test]
    fn timestamps_read_as_dockerds() {
        assert_eq!(parse_timestamp("12").unwrap(), 12_000_000_000);
        assert_eq!(parse_timestamp("12.5").unwrap(), 12_500_000_000);
        assert_eq!(parse_timestamp("12.000000001").unwrap(), 12_000_000_001);
        for bad in [
            "",
            "x",
            "1.2.3",
            "1.1234567890",
            "1.-1",
            "99999999999999999999",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }
}
