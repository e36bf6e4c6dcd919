//! `density`: many wasm plugins enabled in one plugd. The cost of a plugin that is enabled but
//! mostly idle is what decides how many a host can keep, so every plugin must answer at the end
//! and the whole daemon's RSS, threads and descriptors are read, not just a per-plugin estimate.

use crate::engine::{Api, Bundle, volume_create_and_get};
use crate::procfs;
use crate::report::{Summary, Table, Target, heading, ms, target_row};
use anyhow::Context;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Args {
    pub api: PathBuf,
    pub pid: u32,
    pub bundle: PathBuf,
    pub socket_dir: PathBuf,
    pub count: usize,
}

struct Snapshot {
    rss_kb: u64,
    threads: u64,
    fds: usize,
}

fn snapshot(pid: u32) -> anyhow::Result<Snapshot> {
    Ok(Snapshot {
        rss_kb: procfs::rss_kb(pid)?,
        threads: procfs::threads(pid)?,
        fds: procfs::fds(pid)?,
    })
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let api = Api::new(&a.api);
    let bundle = Bundle::read(&a.bundle)?;
    let n = a.count.max(1);
    let names: Vec<String> = (1..=n).map(|i| format!("dens{i:04}")).collect();
    let tar = bundle.tar("density")?;
    let before = snapshot(a.pid)?;

    let t0 = Instant::now();
    for name in &names {
        api.create(name, &tar)?;
    }
    let create_all = t0.elapsed();
    let created = snapshot(a.pid)?;

    let mut per_enable = Vec::with_capacity(n);
    let t0 = Instant::now();
    for name in &names {
        let t = Instant::now();
        api.enable(name)?;
        per_enable.push(ms(t.elapsed()));
    }
    let enable_all = t0.elapsed();
    let enabled = snapshot(a.pid)?;

    let t0 = Instant::now();
    for name in &names {
        volume_create_and_get(&a.socket_dir.join(format!("{name}.sock")), "density")
            .with_context(|| format!("plugin {name} does not answer"))?;
    }
    let answer_all = t0.elapsed();
    let answered = snapshot(a.pid)?;

    heading(&format!(
        "density: {n} wasm plugins (the example volume driver) created, enabled and each \
         answering a Create and a Get, in one plugd"
    ));
    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let mut t = Table::new(&["step", "time", "plugd RSS MB", "threads", "open fds"]);
    let row = |t: &mut Table, step: &str, time: String, s: &Snapshot| {
        t.row(vec![
            step.to_string(),
            time,
            format!("{:.1}", s.rss_kb as f64 / 1024.0),
            s.threads.to_string(),
            s.fds.to_string(),
        ]);
    };
    row(&mut t, "before", String::new(), &before);
    row(&mut t, "create all", secs(create_all), &created);
    row(&mut t, "enable all", secs(enable_all), &enabled);
    row(
        &mut t,
        "one Create + Get on each",
        secs(answer_all),
        &answered,
    );
    t.print();
    let per_plugin_mb = (answered.rss_kb as f64 - before.rss_kb as f64) / 1024.0 / n as f64;
    println!(
        "per plugin: enable {} ms (median [min–max]), RSS {per_plugin_mb:.2} MB, {:.2} threads, \
         {:.2} fds",
        Summary::of(&per_enable).show(1),
        (answered.threads as f64 - before.threads as f64) / n as f64,
        (answered.fds as f64 - before.fds as f64) / n as f64,
    );
    heading("issue 12 targets");
    let mut t = Table::new(&["figure", "measured", "target", ""]);
    t.row(target_row(
        &format!("plugd total RSS with {n} wasm plugins answering"),
        Summary::of(&[answered.rss_kb as f64 / 1024.0]),
        1,
        " MB",
        Target::AtMost(1024.0),
        if n == 500 {
            "< 1 GiB (1024 MB) at 500"
        } else {
            "< 1 GiB (1024 MB) at 500; fewer plugins here"
        },
    ));
    t.row(target_row(
        "plugd RSS growth per wasm plugin",
        Summary::of(&[per_plugin_mb]),
        2,
        " MB",
        Target::AtMost(2.0),
        "≤ 2 MB",
    ));
    t.print();
    Ok(())
}
