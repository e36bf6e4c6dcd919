//! Progress of a pull, push or upgrade, as docker's JSON messages (`pkg/jsonmessage`): what the
//! docker CLI and `plugd` render as progress bars or plain lines.

use serde::Serialize;
use tokio::sync::mpsc;

/// One progress message.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Message {
    /// What happens.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Bytes done and total, for a bar.
    #[serde(rename = "progressDetail", skip_serializing_if = "Option::is_none")]
    pub progress_detail: Option<Detail>,
    /// The line it belongs to (a short layer digest, or the tag).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The push result (`{"Tag","Digest","Size"}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aux: Option<serde_json::Value>,
}

/// `progressDetail`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Detail {
    /// Bytes so far.
    pub current: u64,
    /// Bytes in all.
    pub total: u64,
}

/// Where an operation reports progress; a dropped receiver (the client went away) is ignored,
/// the operation itself goes on to a consistent end.
#[derive(Clone)]
pub struct Progress {
    tx: Option<mpsc::UnboundedSender<Message>>,
}

impl Progress {
    /// Progress nobody reads.
    pub fn none() -> Progress {
        Progress { tx: None }
    }

    /// A progress sink and its stream.
    pub fn channel() -> (Progress, mpsc::UnboundedReceiver<Message>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Progress { tx: Some(tx) }, rx)
    }

    /// Sends one message.
    pub fn send(&self, m: Message) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(m);
        }
    }

    /// A status line, optionally for an id.
    pub fn status(&self, id: &str, status: impl Into<String>) {
        self.send(Message {
            status: status.into(),
            id: id.to_string(),
            ..Message::default()
        });
    }

    /// A progress update for an id.
    pub fn bytes(&self, id: &str, status: &str, current: u64, total: u64) {
        self.send(Message {
            status: status.to_string(),
            id: id.to_string(),
            progress_detail: Some(Detail { current, total }),
            ..Message::default()
        });
    }

    /// The push result.
    pub fn aux(&self, value: serde_json::Value) {
        self.send(Message {
            aux: Some(value),
            ..Message::default()
        });
    }
}

/// The short id docker shows for a blob: the first 12 hex digits of its digest.
pub fn short(digest: &str) -> String {
    digest
        .strip_prefix("sha256:")
        .unwrap_or(digest)
        .chars()
        .take(12)
        .collect()
}
