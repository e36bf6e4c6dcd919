//! Plugin names, normalised the way dockerd does (`reference.FamiliarString(TagNameOnly(ref))`):
//! `foo` → `foo:latest`, `docker.io/library/foo` → `foo:latest`, `localhost:5000/x` → `localhost:5000/x:latest`.

use std::fmt;

/// A parsed plugin reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Registry host (with port), `None` for Docker Hub.
    pub domain: Option<String>,
    /// Repository path (`vieux/sshfs`), without `library/` for Hub images.
    pub path: String,
    /// Tag, `latest` when absent.
    pub tag: String,
}

/// Why a name was refused; the text is dockerd's.
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

fn is_component(s: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    let b = s.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        let sep_len = match c {
            b'.' => 1,
            b'_' if b.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => b[i..].iter().take_while(|&&x| x == b'-').count(),
            _ => return false,
        };
        i += sep_len;
        match b.get(i) {
            Some(n) if n.is_ascii_lowercase() || n.is_ascii_digit() => {}
            _ => return false,
        }
    }
    true
}

fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn is_domain(s: &str) -> bool {
    (s.contains('.') && !s.split('.').any(str::is_empty))
        || s.contains(':')
        || s == "localhost"
        || s.chars().any(|c| c.is_ascii_uppercase())
}

impl Reference {
    /// Parses a name as a plugin reference, refusing digests.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.contains('@') {
            return Err(ReferenceError::Digest);
        }
        let (first, rest) = match input.split_once('/') {
            Some((f, r)) if is_domain(f) => (Some(f.to_string()), r),
            _ => (None, input),
        };
        // The tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (path, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase);
        }
        if path.is_empty() || !path.split('/').all(is_component) {
            return Err(ReferenceError::Format);
        }
        if let Some(d) = &first {
            let host = d.rsplit_once(':').map(|(h, _)| h).unwrap_or(d);
            if host.is_empty() || d.len() > 255 {
                return Err(ReferenceError::Format);
            }
        }
        let tag = match tag {
            Some(t) if is_tag(t) => t.to_string(),
            Some(_) => return Err(ReferenceError::Format),
            None => "latest".to_string(),
        };
        let (domain, path) = match first.as_deref() {
            Some("docker.io") | Some("index.docker.io") => (
                None,
                path.strip_prefix("library/").unwrap_or(path).to_string(),
            ),
            _ => (first, path.to_string()),
        };
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
}
