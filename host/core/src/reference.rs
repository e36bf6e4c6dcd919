//! Plugin references, by the one grammar of docker's `reference` package.
//!
//! The CLI needs `reference.ParseNormalizedNamed`'s exact refusals (docker's texts, before any
//! request is sent); the daemon needs the normalised name dockerd stores
//! (`reference.FamiliarString(TagNameOnly(ref))`: `foo` → `foo:latest`, `docker.io/library/foo` →
//! `foo:latest`, `localhost:5000/x` → `localhost:5000/x:latest`). Both come from [`parse_normalized_named`],
//! so the two can never disagree on what a name is.

use std::fmt;

/// A name split the way `ParseNormalizedNamed` splits it, before the daemon's familiar form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// Registry host (with port); `docker.io` for Docker Hub.
    pub domain: String,
    /// Repository path, with `library/` for official Hub images.
    pub path: String,
    /// The tag, if one was given.
    pub tag: Option<String>,
    /// The digest (`algo:hex`), if one was given.
    pub digest: Option<String>,
}

/// Why `ParseNormalizedNamed` refuses a name; the texts are docker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamedError {
    /// Not a reference at all.
    #[error("invalid reference format")]
    Format,
    /// Upper case in the repository part (named as docker names it, with `library/`).
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    /// 64 hex digits would be taken for an id.
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexName(String),
    /// Nothing before the tag.
    #[error("repository name must have at least one component")]
    NoComponent,
    /// Domain and path longer than 255 bytes.
    #[error("repository name must not be more than 255 characters")]
    TooLong,
}

/// A parsed plugin reference, in the form dockerd stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (with port), `None` for Docker Hub.
    pub domain: Option<String>,
    /// Repository path (`vieux/sshfs`), without `library/` for Hub images.
    pub path: String,
    /// Tag, `latest` when absent.
    pub tag: String,
}

/// Why the daemon refused a name; the text is dockerd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Not a reference at all.
    #[error("invalid reference format")]
    Format,
    /// Upper case in the repository part.
    #[error("invalid reference format: repository name must be lowercase")]
    Uppercase,
    /// A digest where a tag is required.
    #[error("canonical references are not permitted")]
    Digest,
}

fn is_path_component(s: &str) -> bool {
    // [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let sep = match b[i] {
            b'.' => 1,
            b'_' if b.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => b[i..].iter().take_while(|&&c| c == b'-').count(),
            _ => return false,
        };
        i += sep;
        if !b.get(i).is_some_and(|&c| alnum(c)) {
            return false;
        }
    }
    true
}

fn is_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || d.starts_with('[') => (h, Some(p)),
        _ => (d, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit())) {
        return false;
    }
    if host.starts_with('[') && host.ends_with(']') {
        return host.len() > 2
            && host[1..host.len() - 1]
                .bytes()
                .all(|c| c.is_ascii_hexdigit() || c == b':');
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
}

fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `reference.ParseNormalizedNamed`: docker's grammar and docker's refusals, in docker's order.
pub fn parse_normalized_named(s: &str) -> Result<Named, NamedError> {
    if s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(NamedError::HexName(s.to_string()));
    }
    // splitDockerDomain
    let (domain, mut remainder) = match s.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => ("docker.io".to_string(), s.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io".to_string()
    } else {
        domain
    };
    if domain == "docker.io" && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    let remote = remainder
        .split_once(':')
        .map(|(r, _)| r)
        .unwrap_or(&remainder);
    if remote.to_lowercase() != remote {
        return Err(NamedError::Uppercase(remote.to_string()));
    }
    // Parse(domain + "/" + remainder): name[:tag][@digest]
    let (rest, digest) = match remainder.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (remainder.as_str(), None),
    };
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (path, tag) = match rest[last_slash..].find(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(NamedError::NoComponent);
    }
    if !is_domain(&domain) || !path.split('/').all(is_path_component) {
        return Err(NamedError::Format);
    }
    if tag.is_some_and(|t| !is_tag(t)) {
        return Err(NamedError::Format);
    }
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return Err(NamedError::Format);
        };
        let algo_ok = !algo.is_empty()
            && algo
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+._-".contains(&c));
        if !algo_ok || hex.len() < 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(NamedError::Format);
        }
    }
    if domain.len() + 1 + path.len() > 255 {
        return Err(NamedError::TooLong);
    }
    Ok(Named {
        path: path.to_string(),
        tag: tag.map(str::to_string),
        digest: digest.map(str::to_string),
        domain,
    })
}

impl Named {
    /// `reference.TagNameOnly`: `latest` for a name with neither tag nor digest.
    pub fn tag_name_only(mut self) -> Named {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some("latest".into());
        }
        self
    }

    /// `reference.FamiliarString`: Docker Hub's domain and `library/` dropped (what the docker
    /// CLI prints and names plugins by).
    pub fn familiar(&self) -> String {
        let mut s = if self.domain == "docker.io" {
            match self.path.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            format!("{}/{}", self.domain, self.path)
        };
        self.push_tag_and_digest(&mut s);
        s
    }

    fn push_tag_and_digest(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
    }
}

/// `reference.Named.String()`: the full name, `docker.io/library/x` included (dockerd's
/// `PluginReference`).
impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = format!("{}/{}", self.domain, self.path);
        self.push_tag_and_digest(&mut s);
        f.write_str(&s)
    }
}

impl Reference {
    /// Parses a name as a plugin reference, refusing digests (a plugin is named by a tag).
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.contains('@') {
            return Err(ReferenceError::Digest);
        }
        let named = parse_normalized_named(input).map_err(|e| match e {
            NamedError::Uppercase(_) => ReferenceError::Uppercase,
            _ => ReferenceError::Format,
        })?;
        let (domain, path) = if named.domain == "docker.io" {
            let path = named.path.strip_prefix("library/").unwrap_or(&named.path);
            (None, path.to_string())
        } else {
            (Some(named.domain), named.path)
        };
        let tag = named.tag.unwrap_or_else(|| "latest".to_string());
        Ok(Reference { domain, path, tag })
    }

    /// The name dockerd uses for the engine-facing socket: no registry, no tag.
    pub fn socket_name(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.domain {
            write!(f, "{d}/")?;
        }
        write!(f, "{}:{}", self.path, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_dockerd() {
        let n = |s: &str| Reference::parse(s).unwrap().to_string();
        assert_eq!(n("foo"), "foo:latest");
        assert_eq!(n("foo:v1"), "foo:v1");
        assert_eq!(n("docker.io/library/foo"), "foo:latest");
        assert_eq!(n("docker.io/vieux/sshfs"), "vieux/sshfs:latest");
        assert_eq!(n("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(n("127.0.0.1:5000/a/b:1.0"), "127.0.0.1:5000/a/b:1.0");
        assert_eq!(n("my-plugin_1.x"), "my-plugin_1.x:latest");
    }

    #[test]
    fn socket_name_drops_registry_and_tag() {
        let r = Reference::parse("localhost:5000/vieux/sshfs:next").unwrap();
        assert_eq!(r.socket_name(), "vieux/sshfs");
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(Reference::parse("Foo"), Err(ReferenceError::Uppercase));
        assert_eq!(
            Reference::parse("foo@sha256:abc"),
            Err(ReferenceError::Digest)
        );
        assert_eq!(Reference::parse(""), Err(ReferenceError::Format));
        assert_eq!(Reference::parse("a//b"), Err(ReferenceError::Format));
        assert_eq!(Reference::parse("a:b:c"), Err(ReferenceError::Format));
        assert_eq!(Reference::parse("../x"), Err(ReferenceError::Format));
        assert_eq!(Reference::parse("-x"), Err(ReferenceError::Format));
    }

    #[test]
    fn references_like_docker() {
        assert_eq!(parse_normalized_named("plug").map(|_| ()), Ok(()));
        assert_eq!(parse_normalized_named("abc/def:v1").map(|_| ()), Ok(()));
        assert_eq!(
            parse_normalized_named("localhost:5000/x/y:1.0").map(|_| ()),
            Ok(())
        );
        assert_eq!(
            parse_normalized_named("UPPER").unwrap_err().to_string(),
            "invalid reference format: repository name (library/UPPER) must be lowercase"
        );
        assert_eq!(
            parse_normalized_named("a b").unwrap_err().to_string(),
            "invalid reference format"
        );
        assert_eq!(
            parse_normalized_named("x:").unwrap_err().to_string(),
            "invalid reference format"
        );
        let hex = "a".repeat(64);
        assert_eq!(
            parse_normalized_named(&hex).unwrap_err().to_string(),
            format!("invalid repository name ({hex}), cannot specify 64-byte hexadecimal strings")
        );
        assert_eq!(
            parse_normalized_named(&format!("x@sha256:{hex}")).map(|_| ()),
            Ok(())
        );
    }
}
