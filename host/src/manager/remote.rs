//! The manager's registry verbs: `privileges`, `pull` (install), `push` and `upgrade`
//! (reference §3.3, §3.4, §3.10, §3.11), with dockerd's semantics where they are sound and these
//! deliberate differences (docs/distribution.md):
//! - registry errors in `privileges` are returned, not swallowed into `[]`;
//! - `upgrade` works on an **enabled** plugin: a wasm plugin's new instance is started beside the
//!   old one and takes over the socket (calls in flight finish on the old one, which is stopped
//!   once they have); any other plugin is restarted behind its socket, which stays bound, so the
//!   engine's calls wait for the new process instead of failing. A failed upgrade puts the old
//!   rootfs, config and process back.

use super::*;
use crate::distribution::auth::Credentials;
use crate::distribution::client::{Resolved, Session};
use crate::distribution::progress::{Progress, short};
use crate::distribution::{self, Fetched, Image};
use oci_client::RegistryOperation;
use plugd_core::privileges::{self, Privilege};
use plugd_core::reference::{Named, parse_normalized_named};

/// How long calls that arrive while a plugin is restarted for an upgrade wait for it.
const UPGRADE_HOLD: Duration = Duration::from_secs(120);
/// How long an upgrade waits for the calls in flight on the old instance before stopping it.
const DRAIN_WAIT: Duration = Duration::from_secs(60);

/// A remote reference as the client sent it, by docker's grammar.
fn parse_remote(remote: &str) -> Result<Named> {
    parse_normalized_named(remote).map_err(|e| Error::invalid(format!("{e}: {remote:?}")))
}

/// The fully qualified reference dockerd stores as `PluginReference` (`ref.String()` of the
/// reference with `:latest` added where it has neither tag nor digest).
fn canonical(named: &Named) -> String {
    named.clone().tag_name_only().to_string()
}

/// The tag (or digest) docker shows as the id of the "Pulling from" line.
fn tag_of(named: &Named) -> String {
    named
        .digest
        .clone()
        .or_else(|| named.tag.clone())
        .unwrap_or_else(|| "latest".into())
}

/// The local name of a pulled plugin: `name`, or the remote without a digest; always tagged.
fn local_name(name: &str, named: &Named) -> Result<String> {
    let name = if name.trim().is_empty() {
        format!(
            "{}/{}:{}",
            named.domain,
            named.path,
            named.tag.as_deref().unwrap_or("latest")
        )
    } else {
        if name.contains('@') {
            return Err(Error::invalid("cannot use digest in plugin tag"));
        }
        name.to_string()
    };
    Ok(Reference::parse(&name)?.to_string())
}

/// The local name a pull of `remote` as `name` gives (checked before anything is fetched, so the
/// API can name it in `Docker-Plugin-Name`).
pub fn pulled_name(remote: &str, name: &str) -> Result<String> {
    local_name(name, &parse_remote(remote)?)
}

type Started2 = (Arc<dyn Instance>, Arc<crate::socket::Gateway>);

impl Manager {
    fn distribution_limits(&self) -> bundle::Limits {
        bundle::Limits {
            max_body_bytes: self.cfg.max_bundle_size,
            ..bundle::Limits::default()
        }
    }

    async fn connect(
        &self,
        named: &Named,
        creds: &Credentials,
        op: RegistryOperation,
    ) -> Result<Session> {
        self.cfg
            .registries
            .connect(named, creds, op)
            .await
            .map_err(Error::system)
    }

    /// A fresh directory under the data root's `tmp/` (removed at the next start if left).
    fn work_dir(&self) -> Result<PathBuf> {
        let work = lock(&self.store).staging_path();
        fsutil::create_dir_all(&work, 0o700).map_err(at(&work))?;
        Ok(work)
    }

    /// `GET /plugins/privileges?remote=`: what the remote's config asks for, in dockerd's order.
    pub async fn privileges(&self, remote: &str, creds: &Credentials) -> Result<Vec<Privilege>> {
        let named = parse_remote(remote)?;
        let session = self.connect(&named, creds, RegistryOperation::Pull).await?;
        let resolved = session.resolve().await.map_err(Error::system)?;
        let work = self.work_dir()?;
        let bytes = distribution::fetch_config(&session, &resolved.manifest, &work).await;
        let _ = std::fs::remove_dir_all(&work);
        let (config, _) = PluginConfig::parse(&bytes.map_err(Error::system)?)?;
        Ok(privileges::compute(&config))
    }

    /// Fetches `remote` into `work`, its privileges compared with `granted` (as multisets;
    /// dockerd's `incorrect privileges` otherwise) before any layer is downloaded. The caller
    /// removes `work` whatever happens.
    async fn fetch_remote(
        &self,
        named: &Named,
        granted: &[Privilege],
        creds: &Credentials,
        progress: &Progress,
        work: &Path,
    ) -> Result<(Fetched, PluginConfig, Vec<String>)> {
        let session = self.connect(named, creds, RegistryOperation::Pull).await?;
        let resolved: Resolved = session.resolve().await.map_err(Error::system)?;
        progress.status(&tag_of(named), format!("Pulling from {}", named.path));
        let digest = resolved.digest.clone();
        let fetched = distribution::fetch(
            &session,
            resolved,
            work,
            &self.blobs,
            &self.distribution_limits(),
            progress,
            |bytes| {
                let (config, _) = PluginConfig::parse(bytes)?;
                if privileges::same(&privileges::compute(&config), granted) {
                    Ok(())
                } else {
                    Err(Error::system("incorrect privileges"))
                }
            },
        )
        .await?;
        let (config, warnings) = PluginConfig::parse(&fetched.config_json)?;
        let warnings = warnings.iter().map(|w| w.to_string()).collect();
        progress.status("", format!("Digest: {digest}"));
        Ok((fetched, config, warnings))
    }

    /// Compiles a staged plugin through its runtime's `prepare`, as create does; a privilege the
    /// runtime cannot honour is only a warning until enable.
    pub(super) async fn compile(&self, record: &mut Record, rootfs: &Path) -> Result<()> {
        let mut spec = self.spec(record);
        spec.rootfs = rootfs.to_path_buf();
        // Under an id of its own: a runtime may keep what `prepare` resolved for the `start`
        // of that id, and a staged version must never be what a start of the live plugin (a
        // supervised restart, an enable) picks up.
        spec.id = format!("{}.staged", spec.id);
        let runtime = (self.select)(&spec)?;
        match runtime.prepare(&spec).await {
            Ok(()) => Ok(()),
            Err(e @ RuntimeError::Unsupported { .. }) => {
                record.warnings.push(format!("{e}; enable will refuse it"));
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /plugins/pull?remote=&name=`: installs the remote as `name`, disabled. Returns the
    /// plugin's name. Nothing of a failed pull stays (staging, blobs, store).
    pub async fn pull(
        &self,
        remote: &str,
        name: &str,
        granted: &[Privilege],
        creds: &Credentials,
        progress: &Progress,
    ) -> Result<String> {
        let named = parse_remote(remote)?;
        let name = local_name(name, &named)?;
        let exists = || -> Result<()> {
            match lock(&self.store).by_name(&name) {
                // dockerd's pull wraps the conflict as an invalid parameter: 400.
                Some(_) => Err(Error::invalid(format!("plugin {name} already exists"))),
                None => Ok(()),
            }
        };
        exists()?;
        let _blobs = self.blob_users.read().await;
        let work = self.work_dir()?;
        let result = async {
            let (fetched, config, warnings) = self
                .fetch_remote(&named, granted, creds, progress, &work)
                .await?;
            let settings = Settings::initial(&config);
            let mut record = Record {
                plugin: PluginObject {
                    config,
                    enabled: false,
                    id: new_id(),
                    name: name.clone(),
                    plugin_reference: canonical(&named),
                    settings,
                },
                warnings,
                image: Some(fetched.image.clone()),
            };
            self.compile(&mut record, &fetched.rootfs).await?;
            let _ops = self.ops.lock().await;
            exists()?;
            lock(&self.store).commit_new(&work.join("plugin"), record)?;
            self.commit_blobs(Some(&fetched.image), &work.join("blobs"));
            Ok::<(), Error>(())
        }
        .await;
        remove_work(&work);
        result?;
        progress.status(
            "",
            format!("Status: Downloaded newer image for {}", remote.trim()),
        );
        tracing::info!(plugin = %name, remote, "pulled");
        // dockerd's shape: the remote reference as Actor.ID, the local name as `name`.
        self.telemetry
            .event(Action::Pull, remote.trim(), &name, &[]);
        Ok(name)
    }

    /// Moves staged blobs into the store; a failure only costs a later push a repackaging.
    pub(super) fn commit_blobs(&self, image: Option<&Image>, staged: &Path) {
        if let Some(image) = image
            && let Err(e) = distribution::commit_staged(image, staged, &self.blobs)
        {
            tracing::warn!(error = %e, "storing image blobs");
        }
    }

    /// Deletes the blobs no stored plugin references.
    pub(super) fn collect_blobs(&self) {
        // Skipped while a verb uses blobs; the next remove or upgrade collects.
        let Ok(_exclusive) = self.blob_users.try_write() else {
            tracing::debug!("blob collection skipped: blobs in use");
            return;
        };
        let keep: std::collections::HashSet<String> = lock(&self.store)
            .list()
            .filter_map(|r| r.image.as_ref())
            .flat_map(|i| i.digests().map(str::to_string).collect::<Vec<_>>())
            .collect();
        match self.blobs.retain(&keep) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "unreferenced blobs deleted"),
            Err(e) => tracing::warn!(error = %e, "deleting unreferenced blobs"),
        }
    }

    /// The image of a stored plugin, packaged from its rootfs now if it has none (stored before
    /// plugd packaged plugins) or lost a blob.
    async fn image_of(&self, record: &Record) -> Result<Image> {
        if let Some(image) = &record.image
            && image.digests().all(|d| self.blobs.has(d))
        {
            return Ok(image.clone());
        }
        // Under the lifecycle lock (a rare path: plugins stored before plugd packaged them): the
        // rootfs must not be swapped by an upgrade while it is read, and only the image is
        // written back, into the record as it is now.
        let _ops = self.ops.lock().await;
        let current = lock(&self.store).resolve(&record.plugin.id)?.clone();
        if let Some(image) = &current.image
            && image.digests().all(|d| self.blobs.has(d))
        {
            return Ok(image.clone());
        }
        let rootfs = lock(&self.store)
            .plugin_dir(&current.plugin.id)
            .join("rootfs");
        let staged = lock(&self.store).staging_path();
        let mut config = current.plugin.config.clone();
        let dir = staged.clone();
        let packaged = tokio::task::spawn_blocking(move || {
            distribution::package(&rootfs, &mut config, &dir).map(|i| (i, config))
        })
        .await
        .map_err(|e| Error::system(format!("packaging: {e}")))?;
        let result = packaged.and_then(|(image, config)| {
            distribution::commit_staged(&image, &staged, &self.blobs).map_err(at(&staged))?;
            let mut updated = current.clone();
            updated.image = Some(image.clone());
            updated.plugin.config.rootfs = config.rootfs;
            lock(&self.store).save(updated)?;
            Ok(image)
        });
        remove_work(&staged);
        result
    }

    /// `POST /plugins/{name}/push`: the plugin's image under its own name (which must name a
    /// registry to be anywhere but Docker Hub). The manifest is pushed as stored, so a pulled
    /// plugin is pushed with the digest it was pulled with.
    pub async fn push(&self, name: &str, creds: &Credentials, progress: &Progress) -> Result<()> {
        let _blobs = self.blob_users.read().await;
        let record = lock(&self.store).resolve(name)?.clone();
        let named = parse_remote(&record.plugin.name)?;
        let image = self.image_of(&record).await?;
        let session = self.connect(&named, creds, RegistryOperation::Push).await?;
        // Asked before any progress: refused credentials are an error reply, not a stream.
        session.check_access().await.map_err(Error::system)?;
        let mut present = Vec::new();
        for layer in &image.layers {
            present.push(session.has_blob(layer).await.map_err(Error::system)?);
        }
        progress.status(
            "",
            format!(
                "The push refers to repository [{}/{}]",
                named.domain, named.path
            ),
        );
        for layer in &image.layers {
            progress.status(&short(&layer.digest), "Preparing");
        }
        let path = |d: &str| self.blobs.path(d).map_err(Error::system);
        for (layer, present) in image.layers.iter().zip(present) {
            let id = short(&layer.digest);
            if present {
                progress.status(&id, "Layer already exists");
                continue;
            }
            progress.status(&id, "Pushing");
            session
                .push_blob(layer, &path(&layer.digest)?)
                .await
                .map_err(Error::system)?;
            progress.status(&id, "Pushed");
        }
        if !session
            .has_blob(&image.config)
            .await
            .map_err(Error::system)?
        {
            session
                .push_blob(&image.config, &path(&image.config.digest)?)
                .await
                .map_err(Error::system)?;
        }
        session
            .push_manifest(
                self.blobs
                    .read(&image.manifest.digest)
                    .map_err(|e| Error::system(e.to_string()))?,
                &image.manifest.media_type,
            )
            .await
            .map_err(Error::system)?;
        let tag = tag_of(&named);
        progress.status(
            "",
            format!(
                "{tag}: digest: {} size: {}",
                image.manifest.digest, image.manifest.size
            ),
        );
        progress.aux(serde_json::json!({
            "Tag": tag,
            "Digest": image.manifest.digest,
            "Size": image.manifest.size,
        }));
        tracing::info!(plugin = %record.plugin.name, digest = %image.manifest.digest, "pushed");
        self.telemetry.event(
            Action::Push,
            &record.plugin.id,
            &record.plugin.name,
            &[("digest", &image.manifest.digest)],
        );
        Ok(())
    }

    /// `POST /plugins/{name}/upgrade?remote=`: the remote's rootfs and config under the same id,
    /// settings and propagated-mount data; enabled or not (module doc).
    pub async fn upgrade(
        &self,
        name: &str,
        remote: &str,
        granted: &[Privilege],
        creds: &Credentials,
        progress: &Progress,
    ) -> Result<()> {
        let record = lock(&self.store).resolve(name)?.clone();
        let named = parse_remote(remote)?;
        // Checked before anything is fetched (and again at the swap, under the lock).
        if lock(&self.running).contains_key(&record.plugin.id)
            && let Some(why) = self.not_upgradable_running(&record)
        {
            return Err(not_upgradable(&record, &why));
        }
        let blobs = self.blob_users.read().await;
        let work = self.work_dir()?;
        let result = async {
            let (fetched, config, warnings) = self
                .fetch_remote(&named, granted, creds, progress, &work)
                .await?;
            let mut upgraded = record.clone();
            upgraded.plugin.settings =
                Settings::carried(&record.plugin.settings, &record.plugin.config, &config);
            upgraded.plugin.config = config;
            upgraded.plugin.plugin_reference = canonical(&named);
            upgraded.warnings = warnings;
            upgraded.image = Some(fetched.image.clone());
            self.compile(&mut upgraded, &fetched.rootfs).await?;
            let _ops = self.ops.lock().await;
            let current = lock(&self.store).resolve(&record.plugin.id)?.clone();
            if current.plugin.id != record.plugin.id {
                return Err(Error::not_found(format!("plugin {name:?} not found")));
            }
            upgraded.plugin.settings = Settings::carried(
                &current.plugin.settings,
                &current.plugin.config,
                &upgraded.plugin.config,
            );
            upgraded.plugin.enabled =
                current.plugin.enabled || lock(&self.running).contains_key(&current.plugin.id);
            if lock(&self.starting).contains_key(&current.plugin.id) {
                return Err(Error::conflict(format!(
                    "plugin {} is being started; upgrade it once it runs",
                    current.plugin.name
                )));
            }
            self.swap(&current, &upgraded, &fetched.rootfs).await?;
            self.commit_blobs(Some(&fetched.image), &work.join("blobs"));
            Ok::<(), Error>(())
        }
        .await;
        remove_work(&work);
        drop(blobs);
        result?;
        self.collect_blobs();
        progress.status(
            "",
            format!("Status: Downloaded newer image for {}", remote.trim()),
        );
        tracing::info!(plugin = %record.plugin.name, remote, "upgraded");
        self.telemetry.event(
            Action::Upgrade,
            &record.plugin.id,
            &record.plugin.name,
            &[("remote", remote.trim())],
        );
        Ok(())
    }

    /// Puts `new_rootfs` and `upgraded` in place of `current`'s, under the `ops` lock; for a
    /// running plugin, its instance too. On failure everything is as it was.
    async fn swap(&self, current: &Record, upgraded: &Record, new_rootfs: &Path) -> Result<()> {
        let id = &current.plugin.id;
        let dir = lock(&self.store).plugin_dir(id);
        let live = dir.join("rootfs");
        let old = dir.join("rootfs-old");
        if old.exists() {
            unmount::remove_dir_all(&old).map_err(|e| Error::system(e.to_string()))?;
        }
        let digest = upgraded
            .image
            .as_ref()
            .map(|i| i.manifest.digest.clone())
            .unwrap_or_default();
        let forward = || -> Result<()> {
            lock(&self.store).begin_swap(id, &digest)?;
            let renamed = std::fs::rename(&live, &old)
                .map_err(at(&live))
                .and_then(|()| {
                    std::fs::rename(new_rootfs, &live).map_err(|e| {
                        let _ = std::fs::rename(&old, &live);
                        at(&live)(e)
                    })
                });
            if renamed.is_err() {
                lock(&self.store).end_swap(id);
            }
            renamed
        };
        let back = || {
            if let Err(e) =
                std::fs::rename(&live, new_rootfs).and_then(|()| std::fs::rename(&old, &live))
            {
                tracing::error!(plugin = %current.plugin.name, error = %e, "putting the old rootfs back");
            }
            lock(&self.store).end_swap(id);
        };
        let running = lock(&self.running).get(id).map(|r| {
            (
                r.instance.clone(),
                r.socket.gateway(),
                r.runtime,
                r.mounts.clone(),
                r.collector,
            )
        });
        let Some((old_instance, old_gateway, old_runtime, mounts, old_collector)) = running else {
            forward()?;
            if let Err(e) = lock(&self.store).save(upgraded.clone()) {
                back();
                return Err(e);
            }
            self.remove_old_rootfs(&old);
            return Ok(());
        };
        if let Some(why) = self.not_upgradable_running(current) {
            return Err(not_upgradable(current, &why));
        }
        let new_spec = self.spec(upgraded);
        let new_runtime = (self.select)(&new_spec)?;
        let new_collector = is_collector(&new_spec);
        let timeout = self.cfg.default_enable_timeout;
        let name = &current.plugin.name;
        // Starts the new version and saves its record; on failure the old rootfs is back.
        let bring_up = || async {
            let started = self
                .start_instance(new_runtime.as_ref(), &new_spec, timeout)
                .await
                .and_then(|i| {
                    let may_block = new_runtime.plugin_can_mount(&new_spec);
                    self.gateway(upgraded, &new_spec, i.clone(), mounts.clone(), may_block)
                        .map(|g| (i, g))
                });
            let (instance, gateway) = match started {
                Ok(x) => x,
                Err(e) => {
                    back();
                    return Err(e);
                }
            };
            let saved = lock(&self.store).save(upgraded.clone());
            if let Err(e) = saved {
                instance.stop(Duration::ZERO).await;
                back();
                return Err(e);
            }
            Ok::<Started2, Error>((instance, gateway))
        };
        if old_runtime == "wasm" && new_runtime.name() == "wasm" {
            // Side by side: the new instance takes the socket, the old finishes its calls.
            forward()?;
            let (instance, gateway) = bring_up().await?;
            self.take_over(
                id,
                (instance.clone(), gateway),
                new_runtime.name(),
                new_collector,
            );
            drain(name, old_gateway).await;
            if old_collector {
                metrics_call(name, old_instance.as_ref(), metrics::STOP).await;
            }
            old_instance.stop(self.cfg.stop_grace).await;
            if new_collector {
                metrics_call(name, instance.as_ref(), metrics::START).await;
            }
            self.remove_old_rootfs(&old);
            return Ok(());
        }
        // Restarted behind the socket: calls wait for whichever instance comes back.
        let (pending, release) = crate::socket::Pending::pair(name, UPGRADE_HOLD);
        if let Some(r) = lock(&self.running).get(id) {
            r.socket
                .replace(Arc::new(old_gateway.with_instance(pending)));
        }
        drain(name, old_gateway).await;
        if old_collector {
            metrics_call(name, old_instance.as_ref(), metrics::STOP).await;
        }
        old_instance.stop(self.cfg.stop_grace).await;
        let outcome = match forward() {
            Ok(()) => bring_up().await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok((instance, gateway)) => {
                let _ = release.send(Some(Some(instance.clone())));
                self.take_over(
                    id,
                    (instance.clone(), gateway),
                    new_runtime.name(),
                    new_collector,
                );
                if new_collector {
                    metrics_call(name, instance.as_ref(), metrics::START).await;
                }
                self.remove_old_rootfs(&old);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(plugin = %name, error = %e, "upgrade failed; restarting the old version");
                let old_spec = self.spec(current);
                let restarted = match (self.select)(&old_spec) {
                    Ok(rt) => self
                        .start_instance(rt.as_ref(), &old_spec, timeout)
                        .await
                        .map(|i| (i, rt.plugin_can_mount(&old_spec))),
                    Err(e) => Err(e.into()),
                }
                .and_then(|(i, may_block)| {
                    self.gateway(current, &old_spec, i.clone(), mounts.clone(), may_block)
                        .map(|g| (i, g))
                });
                match restarted {
                    Ok((instance, gateway)) => {
                        let _ = release.send(Some(Some(instance.clone())));
                        self.take_over(id, (instance.clone(), gateway), old_runtime, old_collector);
                        if old_collector {
                            metrics_call(name, instance.as_ref(), metrics::START).await;
                        }
                    }
                    Err(e2) => {
                        // Still stored as enabled: supervision starts it again.
                        tracing::error!(plugin = %name, error = %e2, "the old version did not start again");
                        let _ = release.send(Some(None));
                        let r = lock(&self.running).remove(id);
                        if let Some(r) = r {
                            r.socket.close(&self.registry).await;
                        }
                    }
                }
                Err(e)
            }
        }
    }

    /// A started instance of `spec` within `timeout`.
    async fn start_instance(
        &self,
        runtime: &dyn Runtime,
        spec: &PluginSpec,
        timeout: Duration,
    ) -> Result<Arc<dyn Instance>> {
        create_dirs(spec)?;
        let started = tokio::time::timeout(timeout, async {
            runtime.prepare(spec).await?;
            runtime.start(spec).await
        })
        .await;
        match started {
            Ok(r) => Ok(r?),
            Err(_) => {
                self.settle(runtime, spec).await;
                Err(Error::system(format!(
                    "plugin {} did not become ready within {}s",
                    spec.name,
                    timeout.as_secs_f64()
                )))
            }
        }
    }

    /// Makes `instance` (behind `gateway`) the running one of plugin `id`.
    fn take_over(
        &self,
        id: &str,
        (instance, gateway): Started2,
        runtime: &'static str,
        collector: bool,
    ) {
        if let Some(r) = lock(&self.running).get_mut(id) {
            r.socket.replace(gateway);
            r.instance = instance;
            r.collector = collector;
            r.runtime = runtime;
        }
    }

    /// Why a running plugin cannot be upgraded in place, if it cannot: what a container holds
    /// through it (volumes; log streams, `docker logs` reads) or what its instance alone owns
    /// (a network driver's links) would be lost with the old instance.
    fn not_upgradable_running(&self, record: &Record) -> Option<String> {
        let busy = self.in_use(&record.plugin.id);
        if !busy.is_empty() {
            return Some(format!("in use ({})", busy.join(", ")));
        }
        let types = record.plugin.config.interface.types.iter().flatten();
        for t in types {
            match plugd_core::protocol::implements_for_type(t) {
                Some(i) if i == plugd_core::protocol::network::IMPLEMENTS => {
                    return Some("a network driver's links belong to its running instance".into());
                }
                Some(i) if i == plugd_core::protocol::logdriver::IMPLEMENTS => {
                    return Some("a log driver's streams belong to its running instance".into());
                }
                _ => {}
            }
        }
        None
    }

    /// After a swap that is saved: the replaced rootfs goes, then the swap's marker.
    fn remove_old_rootfs(&self, old: &Path) {
        if let Err(e) = unmount::remove_dir_all(old) {
            tracing::warn!(path = %old.display(), error = %e, "removing the replaced rootfs");
        }
        if let Some(id) = old
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
        {
            lock(&self.store).end_swap(id);
        }
    }
}

fn not_upgradable(record: &Record, why: &str) -> Error {
    Error::conflict(format!(
        "plugin {} cannot be upgraded while enabled: {why}; disable it (or stop what uses it) first",
        record.plugin.name
    ))
}

/// Removes a work or staging directory, never through a mount.
fn remove_work(dir: &Path) {
    if let Err(e) = unmount::remove_dir_all(dir)
        && dir.exists()
    {
        tracing::warn!(path = %dir.display(), error = %e, "removing a staging directory");
    }
}

/// Waits until no call is in flight on `gateway` (only this reference to it is left), at most
/// [`DRAIN_WAIT`].
async fn drain(name: &str, gateway: Arc<crate::socket::Gateway>) {
    let start = std::time::Instant::now();
    while Arc::strong_count(&gateway) > 1 {
        if start.elapsed() > DRAIN_WAIT {
            tracing::warn!(plugin = %name, "calls still in flight on the replaced instance after {DRAIN_WAIT:?}; stopping it anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_references_as_dockerd_stores_them() {
        let n = parse_normalized_named("127.0.0.1:5000/x/y:v1").unwrap();
        assert_eq!(canonical(&n), "127.0.0.1:5000/x/y:v1");
        assert_eq!(local_name("", &n).unwrap(), "127.0.0.1:5000/x/y:v1");
        assert_eq!(local_name("alias", &n).unwrap(), "alias:latest");
        let hub = parse_normalized_named("vieux/sshfs").unwrap();
        assert_eq!(canonical(&hub), "docker.io/vieux/sshfs:latest");
        assert_eq!(local_name("", &hub).unwrap(), "vieux/sshfs:latest");
        let d = format!("127.0.0.1:5000/x@sha256:{}", "a".repeat(64));
        let n = parse_normalized_named(&d).unwrap();
        assert_eq!(canonical(&n), d);
        assert_eq!(local_name("", &n).unwrap(), "127.0.0.1:5000/x:latest");
        assert_eq!(
            local_name(&d, &n).unwrap_err().message,
            "cannot use digest in plugin tag"
        );
    }
}
