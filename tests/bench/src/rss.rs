//! `rss`: memory per enabled plugin, beyond the plugin itself. plugd's growth per plugin against
//! dockerd's: its containerd shim per plugin plus the growth of dockerd and its containerd.

use crate::engine::{Api, Bundle, dockerd_plugin_socket, volume_create_and_get};
use crate::procfs;
use crate::report::{Summary, Table, Target, heading, target_row};
use anyhow::Context;
use std::path::PathBuf;

pub struct Args {
    pub systems: crate::Systems,
    pub plugd_pid: u32,
    pub plugd_exec_root: PathBuf,
    pub dockerd_pid: u32,
    pub count: usize,
}

fn mb(kb: f64) -> f64 {
    kb / 1024.0
}

/// dockerd's managed containerd: the child of dockerd it started.
fn containerd_of(dockerd: u32) -> Option<u32> {
    procfs::children(dockerd)
        .into_iter()
        .find(|&p| procfs::comm(p) == "containerd")
}

fn dockerd_side_kb(dockerd: u32) -> anyhow::Result<u64> {
    let mut kb = procfs::rss_kb(dockerd)?;
    if let Some(c) = containerd_of(dockerd) {
        kb += procfs::rss_kb(c)?;
    }
    Ok(kb)
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let plugd = Api::new(&a.systems.plugd_api);
    let dockerd = Api::new(&a.systems.dockerd_api);
    let native = Bundle::read(&a.systems.native_bundle)?;
    let wasm = Bundle::read(&a.systems.wasm_bundle)?;
    let n = a.count.max(1);

    // Every plugin answers a Create and a Get before RSS is read: memory a plugin only touches
    // when called counts.
    let base = procfs::rss_kb(a.plugd_pid)?;
    let mut native_own = Vec::new();
    for i in 1..=n {
        let name = format!("rss-n{i}");
        plugd.create(&name, &native.tar(&name)?)?;
        plugd.enable(&name)?;
        volume_create_and_get(&a.systems.socket_dir.join(format!("{name}.sock")), "rss")?;
        let pid = procfs::native_plugin_pid(&a.plugd_exec_root, &plugd.plugin_id(&name)?)?;
        native_own.push(procfs::rss_kb(pid)? as f64);
    }
    let after_native = procfs::rss_kb(a.plugd_pid)?;
    for i in 1..=n {
        let name = format!("rss-w{i}");
        plugd.create(&name, &wasm.tar(&name)?)?;
        plugd.enable(&name)?;
        volume_create_and_get(&a.systems.socket_dir.join(format!("{name}.sock")), "rss")?;
    }
    let after_wasm = procfs::rss_kb(a.plugd_pid)?;

    let d_base = dockerd_side_kb(a.dockerd_pid)?;
    let (mut shims, mut d_own) = (Vec::new(), Vec::new());
    for i in 1..=n {
        let name = format!("rss-dn{i}");
        dockerd.create(&name, &native.tar(&name)?)?;
        dockerd.enable(&name)?;
        let id = dockerd.plugin_id(&name)?;
        volume_create_and_get(&dockerd_plugin_socket(&id, &native.socket), "rss")?;
        let shim = procfs::find_by_arg(&id)
            .filter(|&p| procfs::comm(p).starts_with("containerd-shim"))
            .with_context(|| format!("no containerd shim for plugin {name}"))?;
        shims.push(procfs::rss_kb(shim)? as f64);
        for child in procfs::children(shim) {
            d_own.push(procfs::rss_kb(child)? as f64);
        }
    }
    let d_after = dockerd_side_kb(a.dockerd_pid)?;

    let per = |after: u64, before: u64| (after as f64 - before as f64) / n as f64;
    let plugd_native = per(after_native, base);
    let plugd_wasm = per(after_wasm, after_native);
    let dockerd_growth = per(d_after, d_base);
    let shim = Summary::of(&shims);
    heading(&format!(
        "memory per enabled plugin ({n} of each, every one answered a Create and a Get); MB = MiB \
         of RSS"
    ));
    let mut t = Table::new(&["", "beyond the plugin", "the plugin's own process"]);
    t.row(vec![
        "plugd native (plugd's RSS growth per plugin)".into(),
        format!("{:.2}", mb(plugd_native)),
        Summary::of(&native_own.iter().map(|&k| mb(k)).collect::<Vec<_>>()).show(2),
    ]);
    t.row(vec![
        "plugd wasm (plugd's RSS growth per plugin)".into(),
        format!("{:.2}", mb(plugd_wasm)),
        "(inside plugd)".into(),
    ]);
    t.row(vec![
        "dockerd managed native: its containerd shim".into(),
        Summary::of(&shims.iter().map(|&k| mb(k)).collect::<Vec<_>>()).show(2),
        if d_own.is_empty() {
            "?".into()
        } else {
            Summary::of(&d_own.iter().map(|&k| mb(k)).collect::<Vec<_>>()).show(2)
        },
    ]);
    t.row(vec![
        "dockerd managed native: shim + dockerd/containerd growth".into(),
        format!("{:.2}", mb(shim.median + dockerd_growth)),
        String::new(),
    ]);
    t.print();
    println!(
        "plugd RSS: {:.1} MB before, {:.1} MB after {n} native, {:.1} MB after {n} wasm",
        mb(base as f64),
        mb(after_native as f64),
        mb(after_wasm as f64)
    );
    heading("issue 12 targets");
    let mut t = Table::new(&["figure", "measured", "target", ""]);
    t.row(target_row(
        "plugd memory beyond the plugin, native, per plugin",
        Summary::of(&[mb(plugd_native)]),
        2,
        " MB",
        Target::AtMost(1.0),
        "≤ 1 MB",
    ));
    t.row(target_row(
        "plugd memory per plugin, wasm",
        Summary::of(&[mb(plugd_wasm)]),
        2,
        " MB",
        Target::AtMost(2.0),
        "≤ 2 MB",
    ));
    t.print();

    for i in 1..=n {
        plugd.remove(&format!("rss-n{i}"))?;
        plugd.remove(&format!("rss-w{i}"))?;
        dockerd.remove(&format!("rss-dn{i}"))?;
    }
    Ok(())
}
