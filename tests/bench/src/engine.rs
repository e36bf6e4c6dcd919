//! The Engine API calls the benchmarks make untimed (create, inspect, disable, remove) and the
//! plugin bundles they upload, so that one binary can prepare fresh plugins between timed steps
//! on plugd and dockerd alike.

use crate::client::{Conn, Response, once};
use anyhow::{Context, bail};
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// A plugin bundle directory (`config.json` + `rootfs/`), read once.
pub struct Bundle {
    entries: Vec<Entry>,
    /// The socket name the plugin's config declares (`interface.socket`).
    pub socket: String,
}

struct Entry {
    path: String,
    mode: u32,
    /// `None` for a directory.
    data: Option<Vec<u8>>,
}

impl Bundle {
    pub fn read(dir: &Path) -> anyhow::Result<Bundle> {
        let config: serde_json::Value = serde_json::from_slice(
            &fs::read(dir.join("config.json")).with_context(|| format!("{}", dir.display()))?,
        )
        .context("config.json")?;
        let socket = config["interface"]["socket"]
            .as_str()
            .context("config.json has no interface.socket")?
            .to_string();
        let mut entries = Vec::new();
        walk(dir, "", &mut entries)?;
        Ok(Bundle { entries, socket })
    }

    /// The bundle as the tar stream `POST /plugins/create` reads, with `rootfs/etc/plugd-bundle`
    /// holding `tag`: dockerd 20.10 refuses a plugin whose layer is identical to another's.
    pub fn tar(&self, tag: &str) -> anyhow::Result<Vec<u8>> {
        self.tar_with(tag, false)
    }

    /// With `unique_wasm`, every WebAssembly file also gets a custom section holding `tag`: bytes
    /// no compile cache and no running plugin has, since plugd shares compiled code by digest.
    pub fn tar_with(&self, tag: &str, unique_wasm: bool) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut has_etc = false;
        for e in &self.entries {
            has_etc |= e.path == "rootfs/etc/";
            if e.path == "rootfs/etc/plugd-bundle" {
                continue;
            }
            match &e.data {
                Some(d) if unique_wasm && d.starts_with(b"\0asm") => {
                    let mut d = d.clone();
                    custom_section(&mut d, "plugd-bench", tag.as_bytes());
                    tar_entry(&mut out, &e.path, e.mode, Some(&d))?;
                }
                data => tar_entry(&mut out, &e.path, e.mode, data.as_deref())?,
            }
        }
        if !has_etc {
            tar_entry(&mut out, "rootfs/etc/", 0o755, None)?;
        }
        tar_entry(
            &mut out,
            "rootfs/etc/plugd-bundle",
            0o644,
            Some(format!("{tag}\n").as_bytes()),
        )?;
        out.resize(out.len() + 1024, 0);
        Ok(out)
    }
}

fn walk(root: &Path, rel: &str, out: &mut Vec<Entry>) -> anyhow::Result<()> {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let name = name.to_str().context("non-UTF-8 file name in bundle")?;
        let path = format!("{rel}{name}");
        let meta = fs::symlink_metadata(root.join(&path))?;
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            out.push(Entry {
                path: format!("{path}/"),
                mode,
                data: None,
            });
            walk(root, &format!("{path}/"), out)?;
        } else if meta.is_file() {
            let data = Some(fs::read(root.join(&path))?);
            out.push(Entry { path, mode, data });
        } else {
            bail!("{path}: only files and directories are bundled");
        }
    }
    Ok(())
}

/// Appends a custom section (id 0: name, payload), valid at the end of a module or component.
fn custom_section(wasm: &mut Vec<u8>, name: &str, payload: &[u8]) {
    let mut body = Vec::new();
    leb128(&mut body, name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    wasm.push(0);
    leb128(wasm, body.len());
    wasm.extend_from_slice(&body);
}

fn leb128(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// One ustar entry: a 512-byte header, then the data padded to 512.
fn tar_entry(out: &mut Vec<u8>, path: &str, mode: u32, data: Option<&[u8]>) -> anyhow::Result<()> {
    if path.len() > 99 {
        bail!("{path}: longer than a ustar name");
    }
    let mut h = [0u8; 512];
    let size = data.map_or(0, <[u8]>::len);
    h[..path.len()].copy_from_slice(path.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
        let s = format!("{v:0w$o}", w = len - 1);
        h[at..at + len - 1].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, mode.into());
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size as u64);
    octal(&mut h, 136, 12, 0);
    h[156] = if data.is_some() { b'0' } else { b'5' };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    out.extend_from_slice(&h);
    if let Some(d) = data {
        out.extend_from_slice(d);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    Ok(())
}

/// An Engine API endpoint (plugd's or dockerd's socket; the plugin routes are the same).
pub struct Api {
    pub socket: PathBuf,
}

impl Api {
    pub fn new(socket: &Path) -> Api {
        Api {
            socket: socket.to_path_buf(),
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        ct: Option<&str>,
        body: &[u8],
    ) -> anyhow::Result<Response> {
        once(&self.socket, method, &format!("/v1.41{path}"), ct, body)
    }

    pub fn create(&self, name: &str, tar: &[u8]) -> anyhow::Result<()> {
        self.call(
            "POST",
            &format!("/plugins/create?name={name}"),
            Some("application/x-tar"),
            tar,
        )?
        .ok(&format!("create plugin {name}"))?;
        Ok(())
    }

    pub fn enable(&self, name: &str) -> anyhow::Result<()> {
        self.call(
            "POST",
            &format!("/plugins/{name}/enable?timeout=60"),
            None,
            b"",
        )?
        .ok(&format!("enable plugin {name}"))?;
        Ok(())
    }

    /// Disables (forced) and removes a plugin: untimed cleanup between runs.
    pub fn remove(&self, name: &str) -> anyhow::Result<()> {
        // A plugin that was never enabled refuses the disable; the forced delete takes it anyway.
        self.call(
            "POST",
            &format!("/plugins/{name}/disable?force=1"),
            None,
            b"",
        )?;
        self.call("DELETE", &format!("/plugins/{name}?force=1"), None, b"")?
            .ok(&format!("remove plugin {name}"))?;
        Ok(())
    }

    pub fn plugin_id(&self, name: &str) -> anyhow::Result<String> {
        let v = self
            .call("GET", &format!("/plugins/{name}/json"), None, b"")?
            .ok(&format!("inspect plugin {name}"))?
            .json()?;
        Ok(v["Id"].as_str().context("plugin without Id")?.to_string())
    }

    pub fn volume_create(&self, name: &str, driver: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({ "Name": name, "Driver": driver }).to_string();
        self.call(
            "POST",
            "/volumes/create",
            Some("application/json"),
            body.as_bytes(),
        )?
        .ok(&format!("create volume {name} with driver {driver}"))?;
        Ok(())
    }
}

/// Where a dockerd 20.10 managed plugin's socket is: a fixed path outside its exec-root.
pub fn dockerd_plugin_socket(id: &str, socket: &str) -> PathBuf {
    PathBuf::from(format!("/run/docker/plugins/{id}/{socket}"))
}

/// Creates volume `name` on a volume plugin's socket and checks that a Get finds it: the proof
/// that a plugin answers, and the volume every Get benchmark asks for.
pub fn volume_create_and_get(socket: &Path, name: &str) -> anyhow::Result<()> {
    let mut c = Conn::connect(socket)?;
    let body = serde_json::json!({ "Name": name, "Opts": null }).to_string();
    c.post_json("/VolumeDriver.Create", body.as_bytes())?
        .plugin_ok(&format!("VolumeDriver.Create on {}", socket.display()))?;
    let body = serde_json::json!({ "Name": name }).to_string();
    let v = c
        .post_json("/VolumeDriver.Get", body.as_bytes())?
        .plugin_ok(&format!("VolumeDriver.Get on {}", socket.display()))?;
    if v["Volume"]["Name"].as_str() != Some(name) {
        bail!("VolumeDriver.Get on {}: unexpected {v}", socket.display());
    }
    Ok(())
}
