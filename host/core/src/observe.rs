//! What a runtime tells plugd about one plugin besides its replies: the lines the plugin wrote and
//! the faults that ended a call or an instance.
//!
//! Both runtimes report through the one narrow [`PluginObserver`] trait, so the daemon keeps each
//! plugin's output in that plugin's own log (never in its own), counts faults as metrics and
//! publishes them as events, without either runtime knowing where they go. The manager hands every
//! start an [`Observer`] in [`crate::PluginSpec::observer`].
//!
//! Everything passed in here came from the plugin: a line is whatever it wrote, already bounded
//! by the runtime (a line cap, an output budget) and lossily decoded, and the receiver must treat
//! it as text to store, never as something to act on.

use std::fmt;
use std::sync::{Arc, Mutex};

/// Which of the plugin's output streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    /// The plugin's stdout (a WASI guest's `stdout`, a native process's fd 1).
    Stdout,
    /// The plugin's stderr.
    Stderr,
}

impl OutputStream {
    /// The name docker's `json-file` logs use for the stream.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// What went wrong, in the classes users count and filter by (they become metric labels and
/// event actions, so the set is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// A wasm guest trapped (a panic, an unreachable, an out-of-bounds access…).
    Trap,
    /// A call ran past its deadline: the wasm epoch interrupt fired, or a native call timed out.
    Timeout,
    /// A wasm instance grew its memory past the cap.
    MemoryCap,
    /// The plugin's process (or instance) ended by itself.
    Exited,
}

impl FaultKind {
    /// The event action and metric label value for this fault.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Trap => "trap",
            FaultKind::Timeout => "timeout",
            FaultKind::MemoryCap => "memory_cap",
            FaultKind::Exited => "exited",
        }
    }
}

/// One fault: its class and the runtime's words for it (what the error reply says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The class.
    pub kind: FaultKind,
    /// The protocol method the fault ended, when it ended a call.
    pub method: Option<String>,
    /// What happened, for the plugin's log and the event.
    pub detail: String,
}

/// Receives what one plugin produced. Implementations must not block for long: they are called
/// on the path that serves the plugin's calls.
pub trait PluginObserver: Send + Sync {
    /// One line the plugin wrote (without its newline).
    fn output(&self, stream: OutputStream, line: &str);
    /// A fault the runtime detected and handled (the call failed, the instance was replaced).
    fn fault(&self, fault: &Fault);
    /// plugd's own words about the plugin, for its log (output dropped past a budget…).
    fn note(&self, text: &str);
}

/// A shared handle on a plugin's observer; cheap to clone into every instance and task.
#[derive(Clone)]
pub struct Observer(Arc<dyn PluginObserver>);

impl Observer {
    /// Wraps an observer.
    pub fn new(inner: Arc<dyn PluginObserver>) -> Observer {
        Observer(inner)
    }

    /// An observer that keeps nothing: for a probe run or a test that does not look.
    pub fn discard() -> Observer {
        struct Discard;
        impl PluginObserver for Discard {
            fn output(&self, _: OutputStream, _: &str) {}
            fn fault(&self, _: &Fault) {}
            fn note(&self, _: &str) {}
        }
        Observer(Arc::new(Discard))
    }

    /// An observer that remembers everything, and the handle to read it back: the recording
    /// double runtime tests assert on.
    pub fn recording() -> (Observer, Recording) {
        let rec = Recording::default();
        (Observer(Arc::new(rec.clone())), rec)
    }

    /// Passes on one line.
    pub fn output(&self, stream: OutputStream, line: &str) {
        self.0.output(stream, line)
    }

    /// Passes on one fault.
    pub fn fault(&self, fault: &Fault) {
        self.0.fault(fault)
    }

    /// Passes on one note.
    pub fn note(&self, text: &str) {
        self.0.note(text)
    }
}

impl Default for Observer {
    fn default() -> Self {
        Observer::discard()
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observer")
    }
}

/// What a [`Observer::recording`] observer saw, in order.
#[derive(Debug, Clone, Default)]
pub struct Recording(Arc<Mutex<Recorded>>);

#[derive(Debug, Default)]
struct Recorded {
    lines: Vec<(OutputStream, String)>,
    faults: Vec<Fault>,
    notes: Vec<String>,
}

impl Recording {
    /// The lines so far.
    pub fn lines(&self) -> Vec<(OutputStream, String)> {
        self.lock().lines.clone()
    }

    /// The faults so far.
    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }

    /// The notes so far.
    pub fn notes(&self) -> Vec<String> {
        self.lock().notes.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PluginObserver for Recording {
    fn output(&self, stream: OutputStream, line: &str) {
        self.lock().lines.push((stream, line.to_string()));
    }

    fn fault(&self, fault: &Fault) {
        self.lock().faults.push(fault.clone());
    }

    fn note(&self, text: &str) {
        self.lock().notes.push(text.to_string());
    }
}
