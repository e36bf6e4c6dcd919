//! Enable → usable: the `enable` subcommand (one plugin, the scripts' building block) and
//! `compare-enable` (fresh plugins of every packaging, interleaved run by run).

use crate::client::{Conn, Response, once};
use crate::engine::{Api, Bundle, dockerd_plugin_socket};
use crate::report::{Summary, Table, Target, heading, ms, ratios, target_row};
use anyhow::{Context, bail};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// Times from sending `POST /plugins/{name}/enable` to the plugin's socket answering a
/// `/Plugin.Activate`, and to the API call returning.
pub struct Timing {
    pub answered: Duration,
    pub returned: Duration,
}

impl Timing {
    /// When a client that called enable can use the plugin: both the call returned and the socket
    /// answers (dockerd's socket answers long before its API returns; plugd's the other way round).
    pub fn usable(&self) -> Duration {
        self.answered.max(self.returned)
    }
}

/// The socket is polled every millisecond from the moment the request is sent, while the call is
/// in flight on another thread, so neither time waits for the other.
pub fn enable(api: &Path, name: &str, plugin_socket: &Path) -> anyhow::Result<Timing> {
    let start = Instant::now();
    let mut call = Some({
        let api = api.to_path_buf();
        let path = format!("/v1.41/plugins/{name}/enable?timeout=60");
        thread::spawn(move || once(&api, "POST", &path, None, b"").map(|r| (r, start.elapsed())))
    });
    let finish = |h: thread::JoinHandle<anyhow::Result<(Response, Duration)>>| {
        let (resp, returned) = h
            .join()
            .map_err(|_| anyhow::anyhow!("enable thread panicked"))??;
        resp.ok(&format!("enable {name}"))?;
        anyhow::Ok(returned)
    };
    let deadline = start + Duration::from_secs(120);
    let mut returned = None;
    let answered = loop {
        if answers(plugin_socket) {
            break start.elapsed();
        }
        // A failed enable never makes the socket answer: report the API's reason at once.
        if let Some(h) = call.take_if(|h| h.is_finished()) {
            returned = Some(finish(h)?);
        }
        if Instant::now() > deadline {
            bail!("plugin socket {} never answered", plugin_socket.display());
        }
        thread::sleep(Duration::from_millis(1));
    };
    let returned = match (returned, call) {
        (Some(r), _) => r,
        (None, Some(h)) => finish(h)?,
        (None, None) => unreachable!("the call is either joined or pending"),
    };
    Ok(Timing { answered, returned })
}

fn answers(plugin_socket: &Path) -> bool {
    Conn::connect(plugin_socket)
        .and_then(|mut c| c.post_json("/Plugin.Activate", b""))
        .is_ok_and(|r| r.status == 200)
}

pub struct CompareArgs {
    pub systems: crate::Systems,
    pub reps: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Sys {
    Dockerd,
    Native,
    WasmWarm,
    WasmCold,
}

const SYSTEMS: [(Sys, &str); 4] = [
    (Sys::Dockerd, "dockerd-managed native"),
    (Sys::Native, "plugd native"),
    (Sys::WasmWarm, "plugd wasm, warm (compiled)"),
    (Sys::WasmCold, "plugd wasm, cold (new bytes)"),
];

/// `compare-enable`: per run, a fresh plugin of each packaging is created, enabled and removed
/// again (untimed), the packagings in an order rotated by the run.
///
/// plugd compiles a component at create and keeps it for the enable that follows, and shares
/// compiled code by digest with its compile cache and running plugins; so emptying the cache
/// between create and enable no longer makes an enable cold. The cold case is therefore a
/// component with bytes nothing has seen (a custom section naming the plugin): its compile is in
/// the create, and "create + usable" is what a first install costs.
pub fn compare(a: &CompareArgs) -> anyhow::Result<()> {
    let dockerd = Api::new(&a.systems.dockerd_api);
    let plugd = Api::new(&a.systems.plugd_api);
    let native = Bundle::read(&a.systems.native_bundle)?;
    let wasm = Bundle::read(&a.systems.wasm_bundle)?;
    // The warm case means the component is in the compile cache before its create.
    plugd.create("ce-warmup", &wasm.tar("ce-warmup")?)?;
    plugd.remove("ce-warmup")?;
    let mut creates: Vec<Vec<f64>> = SYSTEMS.iter().map(|_| Vec::new()).collect();
    let mut timings: Vec<Vec<Timing>> = SYSTEMS.iter().map(|_| Vec::new()).collect();
    for run in 0..a.reps {
        for k in 0..SYSTEMS.len() {
            let s = (k + run) % SYSTEMS.len();
            let (sys, label) = SYSTEMS[s];
            let name = format!("ce{}-{}", run + 1, s);
            let (api, bundle) = match sys {
                Sys::Dockerd => (&dockerd, &native),
                Sys::Native => (&plugd, &native),
                Sys::WasmWarm | Sys::WasmCold => (&plugd, &wasm),
            };
            let tar = bundle.tar_with(&name, sys == Sys::WasmCold)?;
            let t = Instant::now();
            api.create(&name, &tar)?;
            creates[s].push(ms(t.elapsed()));
            let socket = match sys {
                Sys::Dockerd => dockerd_plugin_socket(&api.plugin_id(&name)?, &bundle.socket),
                _ => a.systems.socket_dir.join(format!("{name}.sock")),
            };
            let t = enable(&api.socket, &name, &socket)
                .with_context(|| format!("{label}, run {}", run + 1))?;
            timings[s].push(t);
            api.remove(&name)?;
        }
        eprintln!("# compare-enable: run {}/{} done", run + 1, a.reps);
    }

    heading(&format!(
        "create, and enable → usable: {} run(s), a fresh plugin per packaging and run, \
         interleaved; ms, median [min–max]",
        a.reps
    ));
    let col = |s: usize, f: fn(&Timing) -> Duration| -> Vec<f64> {
        timings[s].iter().map(|t| ms(f(t))).collect()
    };
    let d_api = col(0, |t| t.returned);
    let mut t = Table::new(&[
        "system",
        "create",
        "enable: socket answers",
        "API returns",
        "usable (both)",
        "usable / dockerd API",
        "create + usable",
    ]);
    for (s, (_, label)) in SYSTEMS.iter().enumerate() {
        let first_use: Vec<f64> = creates[s]
            .iter()
            .zip(col(s, Timing::usable))
            .map(|(c, u)| c + u)
            .collect();
        t.row(vec![
            label.to_string(),
            Summary::of(&creates[s]).show(1),
            Summary::of(&col(s, |t| t.answered)).show(1),
            Summary::of(&col(s, |t| t.returned)).show(1),
            Summary::of(&col(s, Timing::usable)).show(1),
            Summary::of(&ratios(&col(s, Timing::usable), &d_api)).show(4),
            Summary::of(&first_use).show(1),
        ]);
    }
    t.print();
    heading("issue 12 targets (per-run ratios to dockerd's enable API time, median [min–max])");
    let mut t = Table::new(&["figure", "measured", "target", ""]);
    t.row(target_row(
        "plugd native enable → usable / dockerd enable API",
        Summary::of(&ratios(&col(1, Timing::usable), &d_api)),
        4,
        "",
        Target::AtMost(1.0 / 30.0),
        "≤ 1/30 (0.0333)",
    ));
    t.row(target_row(
        "plugd wasm warm enable → usable / dockerd enable API",
        Summary::of(&ratios(&col(2, Timing::usable), &d_api)),
        4,
        "",
        Target::AtMost(1.0 / 500.0),
        "≤ 1/500 (0.0020)",
    ));
    t.print();
    Ok(())
}
