//! Go's ways of writing a string, kept in one place because dockerd's and the docker CLI's messages
//! (settings errors, `printf "%q"` in a `--format` template) must match byte for byte.

/// Go's `%q`: a double-quoted string with Go escapes, so messages match dockerd's byte for byte.
/// Non-printable characters are approximated by Rust's `char::is_control`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_strconv() {
        assert_eq!(go_quote("tab\there"), r#""tab\there""#);
        assert_eq!(go_quote("\u{7}\u{8}\u{c}\u{b}\r"), r#""\a\b\f\v\r""#);
        assert_eq!(go_quote("\u{85}"), r#""\u0085""#);
    }
}
