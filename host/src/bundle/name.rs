//! Entry names, reduced to components before anything touches the filesystem.
//!
//! A tar name is only a claim about where an entry belongs; the bundle root is a trust boundary, so
//! every name (kept or ignored) is checked here once, and the rest of the module only ever sees
//! components that cannot climb out of the directory they are joined to.

/// A path relative to the bundle root: no empty, `.` or `..` components.
pub(super) type Components = Vec<Vec<u8>>;

/// Linux's `PATH_MAX`: a longer name could not be opened by anything that later uses the rootfs, and
/// without a bound a single PAX record could make us create millions of nested directories.
pub(super) const MAX_NAME_BYTES: usize = 4096;

/// Why a name was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NameError {
    Absolute,
    ParentDir,
    TooLong(usize),
}

/// Splits `name` into components, dropping the `./` prefixes, repeated and trailing slashes that tar
/// writers emit, and refusing anything that could resolve outside the directory it is joined to.
pub(super) fn components(name: &[u8]) -> Result<Components, NameError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    if name.starts_with(b"/") {
        return Err(NameError::Absolute);
    }
    let mut out = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(NameError::ParentDir),
            _ => out.push(part.to_vec()),
        }
    }
    Ok(out)
}

/// Shows a bundle-relative path in messages.
pub(super) fn join(parts: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(&parts.join(&b'/')).into_owned()
}

/// Shows an entry name as it appeared in the archive, cut short so a hostile 4 KiB name cannot flood
/// logs and HTTP error bodies.
pub(super) fn show(raw: &[u8]) -> String {
    const MAX_SHOWN: usize = 256;
    let text = String::from_utf8_lossy(raw);
    match text.char_indices().nth(MAX_SHOWN) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(name: &str) -> Vec<String> {
        components(name.as_bytes())
            .unwrap()
            .iter()
            .map(|c| String::from_utf8(c.clone()).unwrap())
            .collect()
    }

    #[test]
    fn normalises_dot_prefixes_and_slashes() {
        assert_eq!(ok("./rootfs/bin/sh"), ["rootfs", "bin", "sh"]);
        assert_eq!(ok("rootfs//bin/./sh/"), ["rootfs", "bin", "sh"]);
        assert_eq!(ok("./"), Vec::<String>::new());
        assert_eq!(ok("config.json"), ["config.json"]);
    }

    #[test]
    fn refuses_escapes() {
        assert_eq!(components(b"/etc/passwd"), Err(NameError::Absolute));
        assert_eq!(components(b"../x"), Err(NameError::ParentDir));
        assert_eq!(components(b"rootfs/../x"), Err(NameError::ParentDir));
        assert_eq!(components(b"rootfs/a/.."), Err(NameError::ParentDir));
        let long = vec![b'a'; MAX_NAME_BYTES + 1];
        assert_eq!(
            components(&long),
            Err(NameError::TooLong(MAX_NAME_BYTES + 1))
        );
    }

    #[test]
    fn show_truncates() {
        assert_eq!(show(b"rootfs/x"), "rootfs/x");
        assert_eq!(show(&[b'a'; 300]).chars().count(), 257);
    }
}
