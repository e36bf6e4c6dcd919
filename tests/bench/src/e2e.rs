//! `e2e`: what a user of dockerd sees. A volume of each packaging is inspected through dockerd's
//! Engine API (dockerd asks the driver on every inspect) and with the real `docker volume
//! inspect`, so plugd's forwarding is weighed against everything else dockerd does per call.

use crate::client::Conn;
use crate::engine::Api;
use crate::report::{Summary, Table, heading, ms, percentile, ratios, us};
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Args {
    pub api: PathBuf,
    /// Driver names as dockerd knows them: a managed plugin, then plugd's two (legacy plugins
    /// discovered by their socket in /run/docker/plugins).
    pub drivers: [(String, String); 3],
    pub reps: usize,
    pub requests: usize,
    pub cli_runs: usize,
}

#[derive(Default)]
struct Figures {
    p50: Vec<f64>,
    min: Vec<f64>,
    max: Vec<f64>,
    cli: Vec<f64>,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let api = Api::new(&a.api);
    let volumes: Vec<String> = (0..a.drivers.len()).map(|i| format!("e2e-{i}")).collect();
    for ((_, driver), vol) in a.drivers.iter().zip(&volumes) {
        api.volume_create(vol, driver)?;
    }
    let mut figs: Vec<Figures> = a.drivers.iter().map(|_| Figures::default()).collect();
    for run in 0..a.reps {
        for k in 0..a.drivers.len() {
            let s = (k + run) % a.drivers.len();
            let label = &a.drivers[s].0;
            let (p50, min, max) = inspect_api(&a.api, &volumes[s], a.requests)
                .with_context(|| format!("{label}, run {}", run + 1))?;
            figs[s].p50.push(us(p50));
            figs[s].min.push(us(min));
            figs[s].max.push(us(max));
            for _ in 0..a.cli_runs {
                figs[s].cli.push(ms(inspect_cli(&a.api, &volumes[s])
                    .with_context(|| format!("{label}: docker volume inspect"))?));
            }
        }
        eprintln!("# e2e: run {}/{} done", run + 1, a.reps);
    }

    heading(&format!(
        "end to end through dockerd: GET /v1.41/volumes/{{name}} on dockerd's API ({} run(s) x {} \
         requests, one keep-alive connection) and `docker volume inspect` ({} per run, process wall \
         time); interleaved, median [min–max]",
        a.reps, a.requests, a.cli_runs
    ));
    let mut t = Table::new(&[
        "driver",
        "API p50 µs",
        "fastest µs",
        "slowest µs",
        "p50 / dockerd",
        "CLI ms",
        "CLI / dockerd",
    ]);
    for (s, (label, driver)) in a.drivers.iter().enumerate() {
        let f = &figs[s];
        t.row(vec![
            format!("{label} ({driver})"),
            Summary::of(&f.p50).show(0),
            Summary::of(&f.min).show(0),
            Summary::of(&f.max).show(0),
            Summary::of(&ratios(&f.p50, &figs[0].p50)).show(2),
            Summary::of(&f.cli).show(1),
            // The CLI runs are paired run by run like the rest.
            Summary::of(&ratios(&f.cli, &figs[0].cli)).show(2),
        ]);
    }
    t.print();
    Ok(())
}

/// p50, fastest and slowest of `n` inspects on one keep-alive connection.
fn inspect_api(
    api: &std::path::Path,
    volume: &str,
    n: usize,
) -> anyhow::Result<(Duration, Duration, Duration)> {
    let path = format!("/v1.41/volumes/{volume}");
    let mut c = Conn::connect(api)?;
    c.request("GET", &path, None, b"")?.ok("warm-up inspect")?;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let t = Instant::now();
        let r = c.request("GET", &path, None, b"")?;
        lat.push(t.elapsed());
        if r.status != 200 {
            bail!("inspect answered {}: {}", r.status, r.text().trim());
        }
    }
    lat.sort_unstable();
    Ok((percentile(&lat, 0.5), lat[0], lat[lat.len() - 1]))
}

fn inspect_cli(api: &std::path::Path, volume: &str) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = Command::new("docker")
        .args(["volume", "inspect", volume])
        .env("DOCKER_HOST", format!("unix://{}", api.display()))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .output()
        .context("run docker")?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(took)
}
