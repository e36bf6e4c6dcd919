//! Where plugin sockets are served: a few threads, each running a single-threaded tokio runtime.
//!
//! A protocol call is a short chain — read dockerd's request, call the plugin, answer — and every
//! hand-off of it between threads costs a wake-up of a sleeping thread (an `eventfd` write or a
//! `futex`, then a context switch), which on a small VM costs more than the chain's own work.
//! On plugd's multi-threaded runtime a call took ~2.5 such wake-ups (measured with `strace -c`,
//! docs/benchmarks.md, issue 12); on a single-threaded one it takes none: a socket, its
//! connections and the connections plugd opens to a native plugin for them all live on one
//! thread, whose only sleep is `epoll_wait`. The API, the manager and the runtimes' own work stay
//! on the multi-threaded runtime, where a slow step cannot hold up plugin traffic; what a call
//! itself starts (a log driver's relay after `StartLogging`) runs where the call ran. What could
//! take long on a plugin's word goes to the blocking pool (`Gateway::paths_may_block`, large
//! replies, `List`), and a wasm guest runs on its own thread.
//!
//! [`install`] (by the daemon) starts the threads; sockets are spread over them round robin. A
//! process that installed none (unit tests, tools) serves its sockets on the runtime it is in.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::runtime::Handle;

/// The data-path threads of this process, if installed.
static THREADS: OnceLock<Vec<Handle>> = OnceLock::new();
/// How often an idle data-path thread wakes (see [`install`]).
const TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// The thread the next socket goes to.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// How many threads serve plugin sockets when not told: half the cores (the other half is for the
/// plugins themselves and the rest of plugd), at least one, at most four.
pub fn default_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).clamp(1, 4)
}

/// Starts `n` data-path threads (once per process; a second call changes nothing).
pub fn install(n: usize) -> std::io::Result<()> {
    if THREADS.get().is_some() {
        return Ok(());
    }
    let mut handles = Vec::new();
    for i in 0..n.max(1) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name(format!("plugd-data-{i}"))
            .build()?;
        handles.push(rt.handle().clone());
        // tokio interrupts its driver (an `eventfd` write and one more `epoll_wait`) whenever a
        // timer is armed that expires before the driver's next wake-up; every call arms its
        // deadline (≥ 10 s away), and on an idle thread the next wake-up was later than that. A
        // tick keeps the next wake-up at most a second away, so arming a deadline interrupts
        // nothing.
        rt.spawn(async {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
            }
        });
        std::thread::Builder::new()
            .name(format!("plugd-data-{i}"))
            .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    }
    let _ = THREADS.set(handles);
    Ok(())
}

/// The data-path thread the next socket goes to (round robin), or `None` if none were installed
/// (then the caller's own runtime serves it).
pub fn next() -> Option<Handle> {
    let handles = THREADS.get().filter(|h| !h.is_empty())?;
    let i = NEXT.fetch_add(1, Ordering::Relaxed) % handles.len();
    Some(handles[i].clone())
}

/// Runs `fut` on `on`, or on the current runtime.
pub fn spawn<F>(on: Option<&Handle>, fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match on {
        Some(handle) => handle.spawn(fut),
        None => tokio::spawn(fut),
    }
}
