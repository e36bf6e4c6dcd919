//! A running native plugin: its process (by pidfd), a client for its socket, and its host-side
//! resources.
//!
//! - **ready**: its socket `<runtime_dir>/<Interface.Socket>` accepts a connection. plugd tries
//!   every [`READY_POLL`] (dockerd sleeps 500 ms, then retries every 3 s) and gives up as soon as the
//!   process exits, with its status and the end of its stderr; the manager bounds the wait.
//! - **healthy**: the process runs. Once its pidfd says it exited, [`Health::Failed`] with how it
//!   ended, and the manager stops and restarts it with backoff.
//! - **stop**: dockerd's sequence: SIGTERM, up to `grace`, SIGKILL, up to [`KILL_TIMEOUT`]; then
//!   everything left in its cgroup is killed and the host side is released. A second stop, or a
//!   stop after the process died by itself, only does what is left.

use crate::forward::Forwarder;
use crate::host::HostSide;
use crate::logrelay::Relays;
use crate::process::{Exit, PluginProcess};
use bytes::Bytes;
use plugd_core::protocol::logdriver;
use plugd_core::runtime::{BoxFuture, ByteStream};
use plugd_core::{Health, Instance, LogStream, Reply};
use rustix::process::Signal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Interval of readiness probes.
pub(crate) const READY_POLL: Duration = Duration::from_millis(5);
/// How long a SIGKILLed plugin may take to go (dockerd: 10 s, then it gives up with a warning).
pub(crate) const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a plugin whose output is being read may take to write its last words.
const EXIT_LOG_GRACE: Duration = Duration::from_millis(50);

/// One running native plugin.
#[derive(Debug)]
pub(crate) struct NativeInstance {
    name: String,
    socket: PathBuf,
    process: PluginProcess,
    forwarder: Forwarder,
    /// `None` once stopped.
    host: Mutex<Option<HostSide>>,
    /// Serialises this plugin's starts and stops within the runtime.
    lock: Arc<Mutex<()>>,
    /// A log driver's relayed FIFOs (the runtime's, kept across restarts).
    relays: Option<Arc<Relays>>,
}

impl NativeInstance {
    /// Wraps a launched or adopted plugin.
    pub(crate) fn new(
        name: &str,
        socket: &Path,
        process: PluginProcess,
        host: HostSide,
        call_timeout: Duration,
        lock: Arc<Mutex<()>>,
        relays: Option<Arc<Relays>>,
    ) -> Self {
        NativeInstance {
            name: name.to_string(),
            socket: socket.to_path_buf(),
            forwarder: Forwarder::new(name, socket, call_timeout),
            process,
            host: Mutex::new(Some(host)),
            lock,
            relays,
        }
    }

    /// A new process of a log driver: its open streams resume (see [`Relays::replay`]), and so
    /// do those a previous plugd recorded.
    pub(crate) async fn resume_logging(&self) {
        if let Some(relays) = &self.relays {
            relays.replay(&self.forwarder).await;
            relays.restore(&self.forwarder, true).await;
        }
    }

    /// An adopted log driver (plugd restarted, the plugin did not): the streams the previous
    /// plugd recorded are relayed again into the FIFOs the plugin still reads.
    pub(crate) async fn reattach_logging(&self) {
        if let Some(relays) = &self.relays {
            relays.restore(&self.forwarder, false).await;
        }
    }

    /// The plugin's pid.
    pub(crate) fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Waits until the socket accepts a connection; fails when the process exits first.
    pub(crate) async fn wait_ready(&self) -> Result<(), String> {
        let probe = async {
            loop {
                if crate::forward::connect_no_follow(&self.socket)
                    .await
                    .is_ok()
                {
                    return;
                }
                tokio::time::sleep(READY_POLL).await;
            }
        };
        tokio::select! {
            () = probe => Ok(()),
            exit = self.process.exited() => Err(self.exit_message(exit).await),
        }
    }

    async fn exit_message(&self, exit: Exit) -> String {
        tokio::time::sleep(EXIT_LOG_GRACE).await;
        let tail = match self.host.lock().await.as_ref() {
            Some(h) => h.stderr_tail(),
            None => String::new(),
        };
        let mut msg = format!(
            "plugin {} {exit} before its socket {} accepted a connection",
            self.name,
            self.socket.display()
        );
        if !tail.is_empty() {
            msg.push_str("; its stderr ended with:\n");
            msg.push_str(&tail);
        }
        msg
    }

    /// Stops the process and releases everything; see the module docs. The caller may already
    /// hold the plugin's lock (`held`).
    pub(crate) async fn shut_down(&self, grace: Duration, held: Option<OwnedMutexGuard<()>>) {
        let _guard = match held {
            Some(g) => g,
            None => self.lock.clone().lock_owned().await,
        };
        let mut host = self.host.lock().await;
        let Some(mut side) = host.take() else {
            return;
        };
        self.forwarder.close();
        if self.process.try_exit().is_none() {
            self.terminate(grace).await;
        }
        side.teardown().await;
    }

    async fn terminate(&self, grace: Duration) {
        let (name, pid) = (self.name.as_str(), self.process.pid());
        if !grace.is_zero() {
            if let Err(e) = self.process.signal(Signal::TERM) {
                tracing::warn!(plugin = %name, pid, error = %e, "SIGTERM");
            }
            if let Some(exit) = self.process.exited_within(grace).await {
                tracing::info!(plugin = %name, pid, "plugin {exit} after SIGTERM");
                return;
            }
            tracing::warn!(plugin = %name, pid, grace = ?grace, "plugin did not exit after SIGTERM: SIGKILL");
        }
        if let Err(e) = self.process.signal(Signal::KILL) {
            tracing::warn!(plugin = %name, pid, error = %e, "SIGKILL");
        }
        if self.process.exited_within(KILL_TIMEOUT).await.is_none() {
            tracing::error!(
                plugin = %name,
                pid,
                "plugin did not exit within {KILL_TIMEOUT:?} of SIGKILL"
            );
        }
    }
}

impl Instance for NativeInstance {
    fn call<'a>(&'a self, method: &'a str, body: Bytes) -> BoxFuture<'a, Reply> {
        let endpoint = method.trim_start_matches('/');
        match &self.relays {
            Some(relays) if endpoint == logdriver::START_LOGGING => {
                Box::pin(relays.start(&self.forwarder, body))
            }
            Some(relays) if endpoint == logdriver::STOP_LOGGING => {
                Box::pin(relays.stop(&self.forwarder, body))
            }
            _ => Box::pin(self.forwarder.call(method, body)),
        }
    }

    fn stream<'a>(
        &'a self,
        method: &'a str,
        body: Bytes,
    ) -> BoxFuture<'a, Result<ByteStream, Reply>> {
        Box::pin(self.forwarder.stream(method, body))
    }

    fn log_streams(&self) -> Vec<LogStream> {
        self.relays
            .as_ref()
            .map(|r| r.streams())
            .unwrap_or_default()
    }

    fn usage(&self) -> plugd_core::Usage {
        let pid = self.process.pid();
        plugd_core::Usage {
            pid: u32::try_from(pid).ok(),
            instances: None,
            memory_bytes: tree_rss(pid),
        }
    }

    fn health(&self) -> Health {
        match self.process.try_exit() {
            None => Health::Ready,
            Some(exit) => Health::Failed(exit.to_string()),
        }
    }

    fn stop(&self, grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(self.shut_down(grace, None))
    }
}

/// Stops an instance that never became ready (start failed or was cancelled) when dropped armed.
/// An explicit failure calls [`StartGuard::fail`] and waits for the cleanup; a cancelled start
/// (the manager's timeout dropped it) cleans up on a task, still holding the plugin's lock so the
/// next start waits for it.
pub(crate) struct StartGuard {
    armed: Option<(Arc<NativeInstance>, OwnedMutexGuard<()>)>,
}

impl StartGuard {
    /// Arms the guard for `instance`, whose plugin lock the caller holds.
    pub(crate) fn new(instance: Arc<NativeInstance>, lock: OwnedMutexGuard<()>) -> Self {
        StartGuard {
            armed: Some((instance, lock)),
        }
    }

    /// The start succeeded.
    pub(crate) fn disarm(mut self) {
        self.armed = None;
    }

    /// The start failed: kill the plugin and release everything now.
    pub(crate) async fn fail(mut self) {
        if let Some((instance, lock)) = self.armed.take() {
            instance.shut_down(Duration::ZERO, Some(lock)).await;
        }
    }
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        let Some((instance, lock)) = self.armed.take() else {
            return;
        };
        tracing::warn!(plugin = %instance.name, pid = instance.pid(), "start cancelled: killing the plugin and releasing its host side");
        let _ = instance.process.signal(Signal::KILL);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move { instance.shut_down(Duration::ZERO, Some(lock)).await });
            }
            Err(_) => tracing::error!(
                plugin = %instance.name,
                "start cancelled outside a tokio runtime: the plugin was killed but its host side is left for the next start"
            ),
        }
    }
}

/// Resident bytes of `pid` and every process below it (a plugin's helpers count as the plugin):
/// `/proc/<pid>/statm`'s resident pages, children from `/proc/<pid>/task/*/children`. `None` once
/// the process is gone. A process that forks while this walks may be missed or counted late: it
/// is a gauge, read again at every scrape.
fn tree_rss(pid: i32) -> Option<u64> {
    let page = rustix::param::page_size() as u64;
    let mut total = 0u64;
    let mut todo = vec![pid];
    let mut seen = 0usize;
    while let Some(p) = todo.pop() {
        // Bounded, so a fork bomb in a plugin cannot hold the scrape.
        seen += 1;
        if seen > 4096 {
            break;
        }
        let Ok(statm) = std::fs::read_to_string(format!("/proc/{p}/statm")) else {
            if p == pid {
                return None;
            }
            continue;
        };
        let resident: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        total += resident * page;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                todo.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<i32>().ok()),
                );
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod usage_tests {
    #[test]
    fn rss_counts_this_process_and_a_child() {
        let me = i32::try_from(std::process::id()).unwrap();
        let alone = super::tree_rss(me).unwrap();
        assert!(alone > 0);
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let with_child = super::tree_rss(me).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(with_child > alone, "{with_child} <= {alone}");
        assert_eq!(super::tree_rss(i32::MAX), None);
    }
}
