//! The registry formats a plugin travels in: the media types dockerd pushes and accepts, and the
//! manifest and index documents, read strictly (a registry is as untrusted as a plugin: its
//! digests name files in plugd's blob store).

use serde::{Deserialize, Serialize};

/// Docker schema-2 manifest: what dockerd pushes.
pub const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const MANIFEST_LIST_V2: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The config blob of a plugin image (its `config.json`); any other config type is not a plugin.
pub const PLUGIN_CONFIG: &str = "application/vnd.docker.plugin.v1+json";
/// The layer type dockerd pushes.
pub const LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The layer types dockerd applies (reference §3.4); plugd applies exactly these. zstd and
/// foreign layers are refused by name.
pub const LAYER_TYPES: [&str; 4] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    LAYER_GZIP,
];

/// Every manifest type asked for when resolving a reference.
pub const ACCEPTED_MANIFESTS: [&str; 4] = [MANIFEST_V2, OCI_MANIFEST, MANIFEST_LIST_V2, OCI_INDEX];

/// Largest manifest or index plugd reads (docker/distribution's own limit is 4 MiB).
pub const MAX_MANIFEST: usize = 4 << 20;
/// Most layers one plugin image may have.
pub const MAX_LAYERS: usize = 128;

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// What the blob is.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:<64 hex>`, checked by [`check_digest`] before any use.
    pub digest: String,
    /// Exact size in bytes; a blob of any other size is refused.
    pub size: u64,
    /// Only in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `linux`, `windows`, ...
    pub os: String,
    /// `v8`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (docker v2 or OCI), in the key order dockerd's Go struct writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// [`MANIFEST_V2`] or [`OCI_MANIFEST`] (OCI allows it absent).
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The plugin's config.json.
    pub config: Descriptor,
    /// The rootfs, applied in order.
    pub layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    manifests: Vec<Descriptor>,
}

/// What a reference resolved to.
#[derive(Debug)]
pub enum Document {
    /// An image: the plugin.
    Manifest(Manifest),
    /// A multi-platform index: pick an entry, fetch it by digest.
    Index(Vec<Descriptor>),
}

/// `sha256:` and 64 lower-case hex digits, nothing else: a digest names a file of the blob store.
pub fn check_digest(digest: &str) -> Result<&str, String> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(hex)
        }
        _ => Err(format!(
            "invalid digest {:?}: plugd accepts only sha256 digests",
            shorten(digest)
        )),
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Reads a manifest or index. The kind comes from its `mediaType` when present, else from its
/// shape (OCI documents may omit it); anything else is refused by name.
pub fn parse(bytes: &[u8]) -> Result<Document, String> {
    if bytes.len() > MAX_MANIFEST {
        return Err(format!(
            "manifest is {} bytes, more than the limit of {MAX_MANIFEST}",
            bytes.len()
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
    let media = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .map(str::to_string);
    let is_index = match media.as_deref() {
        Some(MANIFEST_LIST_V2 | OCI_INDEX) => true,
        Some(MANIFEST_V2 | OCI_MANIFEST) => false,
        Some(other) => {
            return Err(format!(
                "unsupported manifest media type {:?}",
                shorten(other)
            ));
        }
        None => value.get("manifests").is_some(),
    };
    if is_index {
        let index: Index =
            serde_json::from_value(value).map_err(|e| format!("invalid manifest list: {e}"))?;
        if index.schema_version != 2 {
            return Err(format!(
                "unsupported manifest list schemaVersion {}",
                index.schema_version
            ));
        }
        for d in &index.manifests {
            check_digest(&d.digest)?;
        }
        return Ok(Document::Index(index.manifests));
    }
    let manifest: Manifest =
        serde_json::from_value(value).map_err(|e| format!("invalid manifest: {e}"))?;
    if manifest.schema_version != 2 {
        return Err(format!(
            "unsupported manifest schemaVersion {}",
            manifest.schema_version
        ));
    }
    check_digest(&manifest.config.digest)?;
    if manifest.layers.len() > MAX_LAYERS {
        return Err(format!(
            "the image has {} layers, more than the limit of {MAX_LAYERS}",
            manifest.layers.len()
        ));
    }
    for l in &manifest.layers {
        check_digest(&l.digest)?;
    }
    Ok(Document::Manifest(manifest))
}

/// The index entry for this host (`linux` and the architecture plugd was built for), or an error
/// naming the platforms the index has.
pub fn pick_platform(entries: &[Descriptor]) -> Result<&Descriptor, String> {
    let arch = go_arch();
    if let Some(d) = entries.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == arch)
    }) {
        return Ok(d);
    }
    let mut have: Vec<String> = entries
        .iter()
        .map(|d| match &d.platform {
            Some(p) => match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            },
            None => "unknown".to_string(),
        })
        .collect();
    have.dedup();
    Err(format!(
        "no matching manifest for linux/{arch} in the manifest list entries (it has: {})",
        if have.is_empty() {
            "none".to_string()
        } else {
            have.join(", ")
        }
    ))
}

/// The architecture as Go (and image indexes) name it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:981ec180466034e22dbc9593feece1e0643d9db3bcc0a888aa1934a2f1b96da1";

    #[test]
    fn digests_must_be_sha256_hex() {
        assert!(check_digest(D).is_ok());
        for bad in [
            "sha256:../../etc/passwd",
            "sha512:00",
            &D.to_uppercase(),
            &format!("{D}0"),
            "sha256:",
        ] {
            assert!(check_digest(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_dockerds_manifest_and_refuses_bad_digests() {
        // What a real dockerd 20.10 pushed (dockerd-observed/06-manifest.json).
        let observed = r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.docker.plugin.v1+json","digest":"sha256:de14e5442b34023d9b364de9658a16c2603080d4c7dbea320bc1cc9437ec39ba","size":1088},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:981ec180466034e22dbc9593feece1e0643d9db3bcc0a888aa1934a2f1b96da1","size":298761}],"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        let Document::Manifest(m) = parse(observed.as_bytes()).unwrap() else {
            panic!("not a manifest")
        };
        assert_eq!(m.config.media_type, PLUGIN_CONFIG);
        assert_eq!(m.layers[0].media_type, LAYER_GZIP);
        let evil = observed.replace(D, "sha256:../x");
        assert!(
            parse(evil.as_bytes())
                .unwrap_err()
                .contains("invalid digest")
        );
    }

    #[test]
    fn index_picks_this_platform_or_names_what_it_has() {
        let entry = |os: &str, arch: &str| Descriptor {
            media_type: MANIFEST_V2.into(),
            digest: D.into(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: None,
            }),
        };
        let both = [entry("linux", "s390x"), entry("linux", go_arch())];
        assert_eq!(
            pick_platform(&both)
                .unwrap()
                .platform
                .as_ref()
                .unwrap()
                .architecture,
            go_arch()
        );
        let e = pick_platform(&[entry("windows", "amd64"), entry("linux", "s390x")]).unwrap_err();
        assert!(e.contains("windows/amd64, linux/s390x"), "{e}");
    }
}
