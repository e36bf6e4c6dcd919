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
use super::media::{self, Descriptor, Document, Manifest};
use super::progress::{Progress, short};

/// Which registries may be spoken to over plain HTTP.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    /// `--insecure-registry` entries: `host[:port]`.
    pub insecure: Vec<String>,
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
        let https = client(ClientProtocol::Https);
        let first = https.auth(&reference, &auth, op).await;
        let client = match first {
            Ok(_) => https,
            Err(e) if self.allows_http(&named.domain) && is_transport(&e) => {
                tracing::debug!(registry = %named.domain, error = %e, "HTTPS failed; trying plain HTTP");
                let http = client(ClientProtocol::Http);
                http.auth(&reference, &auth, op)
                    .await
                    .map_err(|e| describe(&named.domain, e))?;
                http
            }
            Err(e) => return Err(describe(&named.domain, e)),
        };
        Ok(Session {
            client,
            reference,
            auth,
            registry: named.domain.clone(),
        })
    }
}

fn client(protocol: ClientProtocol) -> Client {
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
        ..ClientConfig::default()
    })
}

/// A failure to reach the registry at all (as opposed to an answer from it).
fn is_transport(e: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::OciDistributionError as E;
    matches!(e, E::RequestError(_))
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
        E::RequestError(e) => {
            let mut msg = format!("registry {registry}: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            msg
        }
        e => format!("registry {registry}: {e}"),
    }
}

/// An authenticated connection to one repository.
pub struct Session {
    client: Client,
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

    async fn manifest(
        &self,
        reference: &oci_client::Reference,
    ) -> Result<(Vec<u8>, String), String> {
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(reference, &self.auth, &media::ACCEPTED_MANIFESTS)
            .await
            .map_err(|e| describe(&self.registry, e))?;
        if let Some(want) = reference.digest()
            && want != digest
        {
            return Err(format!(
                "registry {}: manifest {want} arrived with digest {digest}",
                self.registry
            ));
        }
        Ok((bytes.to_vec(), digest))
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

    /// Uploads a blob.
    pub async fn push_blob(&self, desc: &Descriptor, bytes: Vec<u8>) -> Result<(), String> {
        self.client
            .push_blob(&self.reference, bytes, &desc.digest)
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
    fn plain_http_only_for_loopback_or_listed() {
        let r = Registries {
            insecure: vec!["reg.internal:5000".into()],
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
