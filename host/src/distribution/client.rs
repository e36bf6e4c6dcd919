//! One registry operation's connection: an `oci-client` client for the reference's registry,
//! authenticated with the request's credentials, over HTTPS — or plain HTTP for a loopback
//! registry or one listed with `--insecure-registry`, after HTTPS failed to connect, as dockerd
//! falls back. Everything read from the registry is checked here before the caller sees it:
//! manifests parsed strictly with digests checked, blobs streamed to disk with their size capped
//! at the descriptor's and their sha256 verified.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use plugd_core::reference::Named;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::auth::Credentials;
use super::media::{self, Descriptor, Document, MAX_MANIFEST, Manifest};
use super::progress::{Progress, short};

/// How registries are reached: which may be spoken to over plain HTTP, and which CAs are
/// trusted for which registry besides the system's.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    /// `--insecure-registry` entries: `host[:port]`.
    pub insecure: Vec<String>,
    /// `--registry-certs-dir`: dockerd's `certs.d` layout, `<dir>/<host[:port]>/*.crt` (PEM) are
    /// extra roots for that registry only.
    pub certs_dir: Option<std::path::PathBuf>,
}

/// The extra CA roots configured for `registry` (`<certs_dir>/<registry>/*.crt`, PEM), each
/// checked to parse; none when the directory does not exist.
fn extra_roots(
    certs_dir: Option<&std::path::Path>,
    registry: &str,
) -> Result<Vec<Vec<u8>>, String> {
    let Some(dir) = certs_dir else {
        return Ok(Vec::new());
    };
    // The registry name is a parsed reference domain (no `/`), but never a path of its own.
    if registry.is_empty() || registry.contains('/') || registry.starts_with('.') {
        return Ok(Vec::new());
    }
    let dir = dir.join(registry);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("reading {}: {e}", dir.display())),
    };
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    names.sort();
    let mut roots = Vec::new();
    for path in names {
        let pem = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) if !certs.is_empty() => {}
            Ok(_) => {
                return Err(format!(
                    "{}: not a PEM certificate: no certificate in it",
                    path.display()
                ));
            }
            Err(e) => return Err(format!("{}: not a PEM certificate: {e}", path.display())),
        }
        roots.push(pem);
    }
    Ok(roots)
}

/// Connect and read deadlines of registry requests: a registry that stops answering fails the
/// pull instead of holding it (and its staging space) for ever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

impl Registries {
    /// Whether plain HTTP is allowed for `registry` (`host[:port]`): loopback always (dockerd's
    /// default `127.0.0.0/8` insecure range, and `localhost`), else only when listed.
    pub fn allows_http(&self, registry: &str) -> bool {
        if self.insecure.iter().any(|r| r == registry) {
            return true;
        }
        let host = match registry.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => registry,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// A session for `named` (from `parse_normalized_named`) with these credentials.
    pub async fn connect(
        &self,
        named: &Named,
        creds: &Credentials,
        op: RegistryOperation,
    ) -> Result<Session, String> {
        let reference = match (&named.digest, &named.tag) {
            (Some(d), _) => oci_client::Reference::with_digest(
                named.domain.clone(),
                named.path.clone(),
                d.clone(),
            ),
            (None, t) => oci_client::Reference::with_tag(
                named.domain.clone(),
                named.path.clone(),
                t.clone().unwrap_or_else(|| "latest".into()),
            ),
        };
        let auth = creds.registry_auth();
        // Which scheme answers: any HTTP answer to `/v2/` over HTTPS settles it; plain HTTP only
        // when HTTPS cannot even be spoken and the registry may be reached that way.
        let host = reference.resolve_registry().to_string();
        let roots = extra_roots(self.certs_dir.as_deref(), &named.domain)?;
        let web = web_client(&roots)?;
        let scheme = match probe(&web, "https", &host).await {
            Ok(()) => "https",
            Err(e) if self.allows_http(&named.domain) => {
                tracing::debug!(registry = %named.domain, error = %e, "HTTPS failed; trying plain HTTP");
                probe(&web, "http", &host).await.map_err(|plain| {
                    format!(
                        "registry {}: HTTPS failed ({e}), and plain HTTP too ({plain})",
                        named.domain
                    )
                })?;
                "http"
            }
            Err(e) => return Err(format!("registry {}: {e}", named.domain)),
        };
        let client = client(
            if scheme == "http" {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            &roots,
        );
        deadline(CALL_DEADLINE, client.auth(&reference, &auth, op))
            .await?
            .map_err(|e| describe(&named.domain, e))?;
        Ok(Session {
            client,
            web,
            scheme,
            host,
            reference,
            auth,
            registry: named.domain.clone(),
        })
    }
}

/// Deadline of one registry request that is not a blob (the auth handshake, a manifest, a
/// probe): a registry that trickles its answer fails the operation instead of holding it.
const CALL_DEADLINE: Duration = Duration::from_secs(120);

/// Runs `f` within `limit`, or fails saying the registry did not answer in time.
async fn deadline<T>(
    limit: Duration,
    f: impl std::future::Future<Output = T>,
) -> Result<T, String> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| format!("the registry did not answer within {}s", limit.as_secs()))
}

/// The HTTP client plugd itself uses for what it reads with a cap (manifests) and the probe.
fn web_client(roots: &[Vec<u8>]) -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder();
    for pem in roots {
        for cert in reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("plugd/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

/// `GET <scheme>://<host>/v2/`: over HTTPS any HTTP answer settles that HTTPS is spoken; over
/// plain HTTP only a registry's answer (200, or 401 asking for credentials) does — a TLS server
/// answers a plain request with a 400.
async fn probe(web: &reqwest::Client, scheme: &str, host: &str) -> Result<(), String> {
    let url = format!("{scheme}://{host}/v2/");
    match deadline(CONNECT_TIMEOUT * 2, web.get(&url).send()).await? {
        Ok(_) if scheme == "https" => Ok(()),
        Ok(r) if matches!(r.status().as_u16(), 200 | 401) => Ok(()),
        Ok(r) => Err(format!(
            "GET {url} answered {}, not as a registry",
            r.status()
        )),
        Err(e) => Err(chain(&e)),
    }
}

/// An error with its sources, for messages.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

fn client(protocol: ClientProtocol, roots: &[Vec<u8>]) -> Client {
    // rustls with ring (see host/Cargo.toml): installed once as the process's provider; an
    // error means one is already installed, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol,
        // Indexes are resolved here (media::pick_platform), with an error naming the platforms.
        platform_resolver: None,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        user_agent: concat!("plugd/", env!("CARGO_PKG_VERSION")),
        extra_root_certificates: roots
            .iter()
            .map(|pem| oci_client::client::Certificate {
                encoding: oci_client::client::CertificateEncoding::Pem,
                data: pem.clone(),
            })
            .collect(),
        ..ClientConfig::default()
    })
}

/// The error text of a registry failure, naming the registry.
fn describe(registry: &str, e: oci_client::errors::OciDistributionError) -> String {
    use oci_client::errors::OciDistributionError as E;
    match e {
        E::UnauthorizedError { url } => format!(
            "unauthorized: authentication required by registry {registry} ({url}); check the credentials"
        ),
        E::AuthenticationFailure(m) => {
            format!("registry {registry}: authentication failed: {m}")
        }
        E::RequestError(e) if e.status().map(|s| s.as_u16()) == Some(401) => format!(
            "unauthorized: authentication required by registry {registry}; check the credentials"
        ),
        E::RequestError(e) => format!("registry {registry}: {}", chain(&e)),
        e => format!("registry {registry}: {e}"),
    }
}

/// An authenticated connection to one repository.
pub struct Session {
    client: Client,
    /// plugd's own client, for what it reads with a cap.
    web: reqwest::Client,
    /// `https`, or `http` where allowed and HTTPS is not spoken.
    scheme: &'static str,
    /// The registry's host as requests name it (`docker.io` is `index.docker.io`).
    host: String,
    reference: oci_client::Reference,
    auth: RegistryAuth,
    registry: String,
}

/// A resolved plugin image.
#[derive(Debug)]
pub struct Resolved {
    /// The manifest (for an index: the one picked for this platform).
    pub manifest: Manifest,
    /// Its bytes as served, stored and pushed as they are.
    pub bytes: Vec<u8>,
    /// Its digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
}

impl Session {
    /// The reference's manifest; an index is resolved to this platform's entry, fetched by digest.
    pub async fn resolve(&self) -> Result<Resolved, String> {
        let (bytes, digest) = self.manifest(&self.reference).await?;
        let (bytes, digest, manifest) = match media::parse(&bytes)? {
            Document::Manifest(m) => (bytes, digest, m),
            Document::Index(entries) => {
                let entry = media::pick_platform(&entries)?;
                let by_digest = self.reference.clone_with_digest(entry.digest.clone());
                let (bytes, digest) = self.manifest(&by_digest).await?;
                if digest != entry.digest {
                    return Err(format!(
                        "registry {}: manifest {} has digest {digest}",
                        self.registry, entry.digest
                    ));
                }
                match media::parse(&bytes)? {
                    Document::Manifest(m) => (bytes, digest, m),
                    Document::Index(_) => {
                        return Err("a manifest list entry is itself a manifest list".into());
                    }
                }
            }
        };
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| media::OCI_MANIFEST.to_string());
        Ok(Resolved {
            manifest,
            bytes,
            digest,
            media_type,
        })
    }

    /// A manifest read by plugd itself, so its size is capped while it arrives ([`MAX_MANIFEST`],
    /// oci-client would read any length) and its digest is the sha256 of the bytes received.
    async fn manifest(
        &self,
        reference: &oci_client::Reference,
    ) -> Result<(Vec<u8>, String), String> {
        let registry = &self.registry;
        let token = deadline(
            CALL_DEADLINE,
            self.client
                .auth(reference, &self.auth, RegistryOperation::Pull),
        )
        .await?
        .map_err(|e| describe(registry, e))?;
        let target = reference
            .digest()
            .or(reference.tag())
            .unwrap_or("latest")
            .to_string();
        let url = format!(
            "{}://{}/v2/{}/manifests/{target}",
            self.scheme,
            self.host,
            reference.repository()
        );
        let mut req = self
            .web
            .get(&url)
            .header("Accept", media::ACCEPTED_MANIFESTS.join(", "));
        req = match (token.as_ref(), &self.auth) {
            (Some(t), _) | (None, RegistryAuth::Bearer(t)) => req.bearer_auth(t),
            (None, RegistryAuth::Basic(u, p)) => req.basic_auth(u, Some(p)),
            (None, _) => req,
        };
        let read = async {
            let mut resp = req.send().await.map_err(|e| chain(&e))?;
            let status = resp.status().as_u16();
            let header = resp
                .headers()
                .get("Docker-Content-Digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| chain(&e))? {
                let cap = if status == 200 { MAX_MANIFEST } else { 4096 };
                if body.len() + chunk.len() > cap {
                    if status != 200 {
                        break;
                    }
                    return Err(format!(
                        "manifest {target} is larger than the limit of {MAX_MANIFEST} bytes; refused"
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, String>((status, header, body))
        };
        let (status, header, body) = deadline(CALL_DEADLINE, read)
            .await?
            .map_err(|e| format!("registry {registry}: {e}"))?;
        match status {
            200 => {}
            401 | 403 => {
                return Err(format!(
                    "unauthorized: authentication required by registry {registry}; check the credentials"
                ));
            }
            404 => {
                return Err(format!(
                    "manifest unknown: {}/{}:{target} not found",
                    self.registry,
                    reference.repository()
                ));
            }
            s => {
                return Err(format!(
                    "registry {registry}: GET {url}: status {s}: {}",
                    String::from_utf8_lossy(&body)
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(300)
                        .collect::<String>()
                ));
            }
        }
        let digest = super::blobs::digest_of(&body);
        if let Some(want) = reference.digest()
            && want != digest
        {
            return Err(format!(
                "registry {registry}: manifest {want} arrived with digest {digest}; refused"
            ));
        }
        if let Some(h) = header
            && h.starts_with("sha256:")
            && h != digest
        {
            return Err(format!(
                "registry {registry}: manifest {target} is announced as {h} but has digest {digest}; refused"
            ));
        }
        Ok((body, digest))
    }

    /// Streams blob `desc` into `out`: refused the moment it exceeds `desc.size`, and unless its
    /// sha256 is `desc.digest` and its size exact. Reports `Downloading` progress under the
    /// blob's short id.
    pub async fn fetch(
        &self,
        desc: &Descriptor,
        out: &mut tokio::fs::File,
        progress: &Progress,
    ) -> Result<(), String> {
        // A blob must keep coming at 256 KiB/s on average (after a minute's grace): a registry
        // that trickles cannot hold a pull, its staging space and a task for ever.
        let limit = Duration::from_secs(60 + desc.size / (256 << 10));
        deadline(limit, self.fetch_within(desc, out, progress))
            .await
            .map_err(|e| format!("blob {}: {e}", desc.digest))?
    }

    async fn fetch_within(
        &self,
        desc: &Descriptor,
        out: &mut tokio::fs::File,
        progress: &Progress,
    ) -> Result<(), String> {
        let id = short(&desc.digest);
        let mut stream = self
            .client
            .pull_blob_stream(&self.reference, desc.digest.as_str())
            .await
            .map_err(|e| describe(&self.registry, e))?;
        let mut hasher = Sha256::new();
        let mut got = 0u64;
        let mut reported = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                format!(
                    "registry {}: reading blob {}: {e}",
                    self.registry, desc.digest
                )
            })?;
            got += chunk.len() as u64;
            if got > desc.size {
                return Err(format!(
                    "blob {} is larger than the {} bytes its manifest gives; refused",
                    desc.digest, desc.size
                ));
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(|e| format!("writing blob {}: {e}", desc.digest))?;
            if got - reported >= 256 << 10 || got == desc.size {
                progress.bytes(&id, "Downloading", got, desc.size);
                reported = got;
            }
        }
        out.flush()
            .await
            .map_err(|e| format!("writing blob {}: {e}", desc.digest))?;
        if got != desc.size {
            return Err(format!(
                "blob {} is {got} bytes, not the {} its manifest gives; refused",
                desc.digest, desc.size
            ));
        }
        let actual = format!("sha256:{:x}", hasher.finalize());
        if actual != desc.digest {
            return Err(format!(
                "blob {} does not match its digest (got {actual}); refused",
                desc.digest
            ));
        }
        Ok(())
    }

    /// Fails if the registry refuses these credentials for the repository: a request that needs
    /// them (the tag's manifest; "not found" is fine, it is a first push).
    pub async fn check_access(&self) -> Result<(), String> {
        use oci_client::errors::OciDistributionError as E;
        match self
            .client
            .fetch_manifest_digest(&self.reference, &self.auth)
            .await
        {
            Ok(_) => Ok(()),
            Err(E::ServerError { code: 404, .. } | E::ImageManifestNotFoundError(_)) => Ok(()),
            Err(E::RegistryError { envelope, .. })
                if envelope
                    .errors
                    .iter()
                    .all(|e| format!("{:?}", e.code).contains("Unknown")) =>
            {
                Ok(())
            }
            Err(e) => Err(describe(&self.registry, e)),
        }
    }

    /// Whether the repository has the blob (also how a push learns, before it reports any
    /// progress, that its credentials are refused).
    pub async fn has_blob(&self, desc: &Descriptor) -> Result<bool, String> {
        self.client
            .blob_exists(&self.reference, &desc.digest)
            .await
            .map_err(|e| describe(&self.registry, e))
    }

    /// Uploads a blob from the file at `path`, streamed (a layer may be gigabytes); the registry
    /// checks the digest.
    pub async fn push_blob(&self, desc: &Descriptor, path: &std::path::Path) -> Result<(), String> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("reading blob {}: {e}", path.display()))?;
        let chunks = futures_util::StreamExt::map(crate::fsutil::file_chunks(file), |c| {
            c.map_err(oci_client::errors::OciDistributionError::IoError)
        });
        self.client
            .push_blob_stream(&self.reference, chunks, &desc.digest, Some(desc.size))
            .await
            .map_err(|e| describe(&self.registry, e))?;
        Ok(())
    }

    /// Uploads the manifest under the reference's tag.
    pub async fn push_manifest(&self, bytes: Vec<u8>, media_type: &str) -> Result<(), String> {
        let ct = http::HeaderValue::from_str(media_type).map_err(|e| e.to_string())?;
        self.client
            .push_manifest_raw(&self.reference, bytes, ct)
            .await
            .map_err(|e| describe(&self.registry, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_roots_come_from_the_registrys_own_dir_and_must_parse() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            extra_roots(Some(dir.path()), "reg:5000")
                .unwrap()
                .is_empty()
        );
        assert!(extra_roots(None, "reg:5000").unwrap().is_empty());
        std::fs::create_dir(dir.path().join("reg:5000")).unwrap();
        std::fs::write(dir.path().join("reg:5000/ca.crt"), "not a certificate").unwrap();
        std::fs::write(dir.path().join("reg:5000/notes.txt"), "ignored").unwrap();
        let e = extra_roots(Some(dir.path()), "reg:5000").unwrap_err();
        assert!(
            e.contains("ca.crt") && e.contains("not a PEM certificate"),
            "{e}"
        );
        assert!(
            extra_roots(Some(dir.path()), "../reg:5000")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn plain_http_only_for_loopback_or_listed() {
        let r = Registries {
            insecure: vec!["reg.internal:5000".into()],
            certs_dir: None,
        };
        for ok in [
            "127.0.0.1:5000",
            "127.5.0.1",
            "localhost:5000",
            "[::1]:5000",
            "reg.internal:5000",
        ] {
            assert!(r.allows_http(ok), "{ok}");
        }
        for no in [
            "docker.io",
            "reg.internal",
            "10.0.0.1:5000",
            "localhost.evil.com:5000",
        ] {
            assert!(!r.allows_http(no), "{no}");
        }
    }
}
