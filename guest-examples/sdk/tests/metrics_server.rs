//! The native packaging of a metrics collector: `serve_metrics_collector` on a temp socket,
//! started and stopped as plugd (or dockerd) does, ticking in between and never after the stop;
//! a panicking tick fails that tick only.

#![cfg(all(unix, not(target_arch = "wasm32")))]

mod common;

use common::{Client, TempDir, wait_for_socket};
use plugd_plugin_sdk::{Error, MetricsCollector};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts its ticks; panics on every third one.
struct Counting(Arc<AtomicU64>);

impl MetricsCollector for Counting {
    fn start(&self) -> Result<u32, Error> {
        Ok(100)
    }

    fn tick(&self) -> Result<(), Error> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        if n.is_multiple_of(3) {
            panic!("tick {n} panics");
        }
        Ok(())
    }
}

#[test]
fn ticks_run_from_start_to_stop_and_survive_a_panic() {
    let dir = TempDir::new("metrics");
    let socket = dir.0.join("m.sock");
    let ticks = Arc::new(AtomicU64::new(0));
    let (path, count) = (socket.clone(), ticks.clone());
    std::thread::spawn(move || {
        plugd_plugin_sdk::serve_metrics_collector(Counting(count), &path).unwrap()
    });
    wait_for_socket(&socket);
    let mut c = Client::connect(&socket);
    let r = c.call("/Plugin.Activate", "");
    assert_eq!(r.json()["Implements"][0], "MetricsCollector");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ticks.load(Ordering::SeqCst),
        0,
        "no tick before StartMetrics"
    );

    let r = c.call("/MetricsCollector.StartMetrics", "");
    assert_eq!((r.status, &r.body[..]), (200, &b"{}"[..]));
    std::thread::sleep(Duration::from_millis(1000));
    let ticked = ticks.load(Ordering::SeqCst);
    assert!(
        ticked >= 5,
        "{ticked} ticks in 1 s at 100 ms, past the panics at 3 and 6"
    );

    let r = c.call("/MetricsCollector.StopMetrics", "{}");
    assert_eq!(r.status, 200);
    let stopped = ticks.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        ticks.load(Ordering::SeqCst) <= stopped + 1,
        "ticks went on after StopMetrics"
    );
    // The server still answers after the panicking ticks.
    let r = c.call("/MetricsCollector.Other", "");
    assert_eq!(r.status, 404);
}
