//! Round trips of one request on keep-alive connections: the `rtt` subcommand (one socket, the
//! scripts' building block) and `compare-rtt` (the four packagings of issue 12, interleaved).

use crate::client::Conn;
use crate::engine::volume_create_and_get;
use crate::report::{Summary, Table, Target, diffs, heading, percentile, ratios, target_row, us};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// One round's figures.
#[derive(Clone, Copy)]
pub struct Round {
    pub p50: Duration,
    pub p99: Duration,
    pub req_s: f64,
}

pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub body: &'a [u8],
}

/// `requests` requests split over `clients` connections, all clients released at once. Each
/// connection first makes one untimed request, so connecting and the server's first-call work
/// are not in the figures, and a wrong answer fails before anything is timed.
pub fn round(
    socket: &Path,
    req: &Request,
    clients: usize,
    requests: usize,
) -> anyhow::Result<Round> {
    let per_client = requests.div_ceil(clients).max(1);
    let mut conns = Vec::new();
    for _ in 0..clients {
        let mut c = Conn::connect(socket)?;
        let r = c.request(req.method, req.path, content_type(req.body), req.body)?;
        if r.status != 200 {
            bail!("warm-up request answered {}: {}", r.status, r.text().trim());
        }
        if let Ok(v) = r.json()
            && let Some(e) = v.get("Err").and_then(|e| e.as_str())
            && !e.is_empty()
        {
            bail!("warm-up request: plugin answered Err {e:?}");
        }
        conns.push(c);
    }
    let barrier = Arc::new(Barrier::new(clients + 1));
    let (method, path, body) = (
        req.method.to_string(),
        req.path.to_string(),
        req.body.to_vec(),
    );
    let threads: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            let barrier = barrier.clone();
            let (method, path, body) = (method.clone(), path.clone(), body.clone());
            thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let ct = content_type(&body);
                let mut lat = Vec::with_capacity(per_client);
                barrier.wait();
                for _ in 0..per_client {
                    let t = Instant::now();
                    let r = c.request(&method, &path, ct, &body)?;
                    lat.push(t.elapsed());
                    if r.status != 200 {
                        bail!("request answered {}: {}", r.status, r.text().trim());
                    }
                }
                Ok(lat)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut all = Vec::with_capacity(per_client * clients);
    for t in threads {
        all.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))??,
        );
    }
    let wall = start.elapsed();
    all.sort_unstable();
    Ok(Round {
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        req_s: all.len() as f64 / wall.as_secs_f64(),
    })
}

fn content_type(body: &[u8]) -> Option<&'static str> {
    (!body.is_empty()).then_some("application/json")
}

/// `rtt`: the median round (by p50) of `rounds`, one tab-separated line (authz.sh and python.sh
/// parse it).
pub fn rtt(
    socket: &Path,
    req: &Request,
    clients: usize,
    requests: usize,
    rounds: usize,
    label: &str,
) -> anyhow::Result<()> {
    let mut results = Vec::new();
    for _ in 0..rounds.max(1) {
        results.push(round(socket, req, clients, requests).context("round")?);
    }
    results.sort_by_key(|r| r.p50);
    let m = results[results.len() / 2];
    let best = results.iter().map(|r| r.req_s).fold(0.0, f64::max);
    println!(
        "rtt\t{label}\tclients={clients}\tp50_us={:.0}\tp99_us={:.0}\treq_s={:.0}\tbest_req_s={best:.0}",
        us(m.p50),
        us(m.p99),
        m.req_s
    );
    Ok(())
}

pub struct CompareArgs {
    pub dockerd: PathBuf,
    pub plugd_native: PathBuf,
    pub own: PathBuf,
    pub plugd_wasm: PathBuf,
    pub reps: usize,
    pub requests: usize,
    pub clients: Vec<usize>,
}

const DOCKERD: usize = 0;
const PLUGD_NATIVE: usize = 1;
const OWN: usize = 2;
const WASM: usize = 3;

/// `compare-rtt`: every run times each system once per client count, in an order rotated by the
/// run, so that a machine getting busier or idler during the benchmark hits every system alike.
pub fn compare(a: &CompareArgs) -> anyhow::Result<()> {
    let systems: [(&str, &Path); 4] = [
        ("dockerd-managed native (its socket)", &a.dockerd),
        ("plugd native (plugd's socket)", &a.plugd_native),
        ("native's own socket (no plugd)", &a.own),
        ("plugd wasm (plugd's socket)", &a.plugd_wasm),
    ];
    // The native plugin behind plugd is the one behind its own socket: one Create serves both.
    for (_, s) in [systems[DOCKERD], systems[PLUGD_NATIVE], systems[WASM]] {
        volume_create_and_get(s, "bench")?;
    }
    let req = Request {
        method: "POST",
        path: "/VolumeDriver.Get",
        body: b"{\"Name\":\"bench\"}",
    };
    // results[clients index][system] = one Round per run.
    let mut results = vec![vec![Vec::new(); systems.len()]; a.clients.len()];
    for run in 0..a.reps {
        for (ci, &clients) in a.clients.iter().enumerate() {
            for k in 0..systems.len() {
                let s = (k + run) % systems.len();
                let (label, socket) = systems[s];
                let r = round(socket, &req, clients, a.requests)
                    .with_context(|| format!("{label}, {clients} clients, run {}", run + 1))?;
                results[ci][s].push(r);
            }
        }
        eprintln!("# compare-rtt: run {}/{} done", run + 1, a.reps);
    }

    heading(&format!(
        "POST /VolumeDriver.Get round trips: {} run(s) x {} requests per system and client count, \
         systems interleaved (order rotated per run); median [min–max] over runs",
        a.reps, a.requests
    ));
    let p50 =
        |ci: usize, s: usize| -> Vec<f64> { results[ci][s].iter().map(|r| us(r.p50)).collect() };
    let rps =
        |ci: usize, s: usize| -> Vec<f64> { results[ci][s].iter().map(|r| r.req_s).collect() };
    let mut t = Table::new(&[
        "clients",
        "system",
        "p50 µs",
        "p99 µs",
        "req/s",
        "p50 / dockerd",
        "req/s / dockerd",
    ]);
    for (ci, &clients) in a.clients.iter().enumerate() {
        for (s, (label, _)) in systems.iter().enumerate() {
            let p99: Vec<f64> = results[ci][s].iter().map(|r| us(r.p99)).collect();
            t.row(vec![
                clients.to_string(),
                label.to_string(),
                Summary::of(&p50(ci, s)).show(0),
                Summary::of(&p99).show(0),
                Summary::of(&rps(ci, s)).show(0),
                Summary::of(&ratios(&p50(ci, s), &p50(ci, DOCKERD))).show(2),
                Summary::of(&ratios(&rps(ci, s), &rps(ci, DOCKERD))).show(2),
            ]);
        }
    }
    t.print();

    heading("issue 12 targets (per-run differences and ratios, median [min–max])");
    let mut t = Table::new(&["figure", "measured", "target", ""]);
    if let Some(one) = a.clients.iter().position(|&c| c == 1) {
        t.row(target_row(
            "forwarding overhead, p50 at 1 client (plugd native − own socket)",
            Summary::of(&diffs(&p50(one, PLUGD_NATIVE), &p50(one, OWN))),
            0,
            " µs",
            Target::AtMost(10.0),
            "≤ 10 µs",
        ));
        t.row(target_row(
            "wasm p50 / native own socket p50, 1 client",
            Summary::of(&ratios(&p50(one, WASM), &p50(one, OWN))),
            2,
            "×",
            Target::AtMost(1.5),
            "≤ 1.5×",
        ));
    }
    if let Some(eight) = a.clients.iter().position(|&c| c == 8) {
        t.row(target_row(
            "plugd native req/s / own socket req/s, 8 clients",
            Summary::of(&ratios(&rps(eight, PLUGD_NATIVE), &rps(eight, OWN))),
            2,
            "×",
            Target::AtLeast(0.9),
            "≥ 0.90×",
        ));
        t.row(target_row(
            "wasm req/s / dockerd-managed native req/s, 8 clients",
            Summary::of(&ratios(&rps(eight, WASM), &rps(eight, DOCKERD))),
            2,
            "×",
            Target::AtLeast(1.0),
            "≥ 1.00×",
        ));
    }
    t.print();
    Ok(())
}
