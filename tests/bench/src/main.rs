//! `plugd-bench`: the measurements behind docs/benchmarks.md, as one small client binary that
//! tests/bench/run.sh drives after setting up the daemons and bundles.
//!
//! - `rtt`, `enable`: one socket, one plugin; tab-separated lines the other scripts parse.
//! - `compare-rtt`, `compare-enable`, `e2e`: issue 12's comparison of one volume driver packaged
//!   three ways (dockerd managed plugin, plugd native, plugd wasm), systems interleaved run by
//!   run, medians with their range and the ratios to dockerd.
//! - `rss`, `density`: memory per plugin, and many wasm plugins in one plugd.
//!
//! Targets are printed beside the figures; nothing here fails because a figure misses one (the
//! CI quick run must only prove that the harness works).
#![forbid(unsafe_code)]

mod client;
mod density;
mod e2e;
mod enable;
mod engine;
mod procfs;
mod report;
mod rss;
mod rtt;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where plugd (by default) and dockerd put plugin sockets.
const SOCKET_DIR: &str = "/run/docker/plugins";

/// The two daemons and the two bundles that the side-by-side measurements share.
#[derive(clap::Args)]
pub struct Systems {
    /// dockerd's API socket.
    #[arg(long)]
    pub dockerd_api: PathBuf,
    /// plugd's API socket.
    #[arg(long)]
    pub plugd_api: PathBuf,
    /// The native bundle directory (config.json + rootfs/), for both daemons.
    #[arg(long)]
    pub native_bundle: PathBuf,
    /// The wasm bundle directory.
    #[arg(long)]
    pub wasm_bundle: PathBuf,
    /// Where plugd puts plugin sockets.
    #[arg(long, default_value = SOCKET_DIR)]
    pub socket_dir: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Round trips of one request on keep-alive connections.
    Rtt {
        /// Plugin socket.
        #[arg(long)]
        socket: PathBuf,
        /// Request path.
        #[arg(long, default_value = "/VolumeDriver.Get")]
        path: String,
        /// HTTP method.
        #[arg(long, default_value = "POST")]
        method: String,
        /// Request body.
        #[arg(long, default_value = "{\"Name\":\"bench\"}\n")]
        body: String,
        /// Concurrent keep-alive clients.
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Requests per round (split across clients).
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Rounds; the median round is reported, like the dockerd reference.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Label printed in the first column.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Enable a (disabled) plugin and time readiness.
    Enable {
        /// Engine API socket (plugd or dockerd).
        #[arg(long)]
        api: PathBuf,
        /// Plugin name.
        #[arg(long)]
        name: String,
        /// Socket that answers once the plugin is ready.
        #[arg(long)]
        plugin_socket: PathBuf,
        /// Label printed in the first column.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// VolumeDriver.Get round trips on the four sockets of one volume driver, interleaved.
    CompareRtt {
        /// The dockerd-managed native plugin's socket.
        #[arg(long)]
        dockerd: PathBuf,
        /// plugd's socket for the native plugin.
        #[arg(long)]
        plugd_native: PathBuf,
        /// The native plugin's own socket, inside plugd's exec-root.
        #[arg(long)]
        own: PathBuf,
        /// plugd's socket for the wasm plugin.
        #[arg(long)]
        plugd_wasm: PathBuf,
        /// Runs; each run times every system once per client count.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Requests per system, client count and run.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Client counts.
        #[arg(long, value_delimiter = ',', default_value = "1,8")]
        clients: Vec<usize>,
    },
    /// Create and enable → usable for fresh plugins: dockerd native, plugd native, wasm warm and cold.
    CompareEnable {
        #[command(flatten)]
        systems: Systems,
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// Volume inspect through dockerd (API and CLI) for each packaging.
    E2e {
        /// dockerd's API socket.
        #[arg(long)]
        api: PathBuf,
        /// The dockerd-managed plugin's name.
        #[arg(long)]
        dockerd_plugin: String,
        /// plugd's native plugin (a legacy plugin to dockerd).
        #[arg(long)]
        plugd_native: String,
        /// plugd's wasm plugin.
        #[arg(long)]
        plugd_wasm: String,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// API inspects per driver and run.
        #[arg(long, default_value_t = 500)]
        requests: usize,
        /// `docker volume inspect` runs per driver and run.
        #[arg(long, default_value_t = 3)]
        cli_runs: usize,
    },
    /// RSS per enabled plugin: plugd native and wasm, dockerd's shim.
    Rss {
        #[command(flatten)]
        systems: Systems,
        #[arg(long)]
        plugd_pid: u32,
        /// plugd's `--exec-root` (its native runtime records plugin pids there).
        #[arg(long)]
        plugd_exec_root: PathBuf,
        #[arg(long)]
        dockerd_pid: u32,
        /// Plugins of each kind.
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
    /// Many wasm plugins in one plugd: create-all, enable-all, each answering, RSS/threads/fds.
    Density {
        /// plugd's API socket (best a plugd with nothing else enabled).
        #[arg(long)]
        api: PathBuf,
        #[arg(long)]
        pid: u32,
        /// The wasm bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long, default_value = SOCKET_DIR)]
        socket_dir: PathBuf,
        #[arg(long, env = "PLUGD_BENCH_DENSITY", default_value_t = 500)]
        count: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Rtt {
            socket,
            path,
            method,
            body,
            clients,
            requests,
            rounds,
            label,
        } => {
            let req = rtt::Request {
                method: &method,
                path: &path,
                body: body.as_bytes(),
            };
            rtt::rtt(&socket, &req, clients, requests, rounds, &label)?;
        }
        Cmd::Enable {
            api,
            name,
            plugin_socket,
            label,
        } => {
            let t = enable::enable(&api, &name, &plugin_socket)?;
            println!(
                "enable\t{label}\tsocket_answers_ms={:.1}\tapi_returns_ms={:.1}",
                report::ms(t.answered),
                report::ms(t.returned)
            );
        }
        Cmd::CompareRtt {
            dockerd,
            plugd_native,
            own,
            plugd_wasm,
            reps,
            requests,
            clients,
        } => rtt::compare(&rtt::CompareArgs {
            dockerd,
            plugd_native,
            own,
            plugd_wasm,
            reps: reps.max(1),
            requests,
            clients,
        })?,
        Cmd::CompareEnable { systems, reps } => enable::compare(&enable::CompareArgs {
            systems,
            reps: reps.max(1),
        })?,
        Cmd::E2e {
            api,
            dockerd_plugin,
            plugd_native,
            plugd_wasm,
            reps,
            requests,
            cli_runs,
        } => e2e::run(&e2e::Args {
            api,
            drivers: [
                ("dockerd-managed native".into(), dockerd_plugin),
                ("plugd native".into(), plugd_native),
                ("plugd wasm".into(), plugd_wasm),
            ],
            reps: reps.max(1),
            requests,
            cli_runs,
        })?,
        Cmd::Rss {
            systems,
            plugd_pid,
            plugd_exec_root,
            dockerd_pid,
            count,
        } => rss::run(&rss::Args {
            systems,
            plugd_pid,
            plugd_exec_root,
            dockerd_pid,
            count,
        })?,
        Cmd::Density {
            api,
            pid,
            bundle,
            socket_dir,
            count,
        } => density::run(&density::Args {
            api,
            pid,
            bundle,
            socket_dir,
            count,
        })?,
    }
    Ok(())
}
