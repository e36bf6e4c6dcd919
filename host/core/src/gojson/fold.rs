//! How Go's `encoding/json` matches an object key to a struct field.
//!
//! Go prefers the field whose name equals the key byte for byte, and otherwise takes a field whose
//! name equals it under case folding. The folding is Unicode's, not ASCII's, and it changed between
//! Go versions: up to Go 1.20 it is `bytes.EqualFold` (simple case-folding orbits, so `ſ` ~ `s` and
//! the Kelvin sign `K` ~ `k`); from Go 1.21 it is `ToUpper(ToLower(r))` per rune, which also folds
//! the Turkish `İ` and `ı` onto `I`. Field names in the plugin protocol are ASCII, so the only
//! non-ASCII runes that can ever match one are the four below. A key that matches a field only
//! through one of them is read differently by different Go versions and by every non-Go checker:
//! plugd refuses it rather than guess which dockerd it talks to.

/// How a JSON key relates to a (ASCII) Go field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMatch {
    /// Byte-for-byte equal.
    Exact,
    /// Equal ignoring ASCII case: every Go version matches it, and so does plugd.
    AsciiFold,
    /// Equal only when a non-ASCII rune is folded onto an ASCII letter (`ſ`, `K`, `İ`, `ı`).
    UnicodeFold,
    /// Not the same name under any Go version's folding.
    None,
}

/// The non-ASCII runes some Go version folds onto an ASCII letter, with that letter (upper case).
pub const FOLDS_TO_ASCII: [(char, char); 4] = [
    ('\u{017F}', 'S'), // LATIN SMALL LETTER LONG S: orbit s → ſ → S
    ('\u{212A}', 'K'), // KELVIN SIGN: orbit k → K → K
    ('\u{0130}', 'I'), // LATIN CAPITAL LETTER I WITH DOT ABOVE: ToLower = i (Go ≥ 1.21)
    ('\u{0131}', 'I'), // LATIN SMALL LETTER DOTLESS I: ToUpper = I (Go ≥ 1.21)
];

/// Compares `key` with the ASCII field name `field` as Go would.
pub fn key_match(key: &str, field: &str) -> KeyMatch {
    debug_assert!(field.is_ascii(), "protocol field names are ASCII");
    if key == field {
        return KeyMatch::Exact;
    }
    if key.eq_ignore_ascii_case(field) {
        return KeyMatch::AsciiFold;
    }
    if key.is_ascii() {
        return KeyMatch::None;
    }
    let mut folded = key.chars().map(fold_rune);
    let mut expected = field.chars().map(|c| c.to_ascii_uppercase());
    loop {
        match (folded.next(), expected.next()) {
            (None, None) => return KeyMatch::UnicodeFold,
            (Some(a), Some(b)) if a == b => {}
            _ => return KeyMatch::None,
        }
    }
}

/// One rune's fold as far as an ASCII comparison can tell: ASCII upper case, the four runes above
/// onto their letter, any other rune onto itself (it can never equal an ASCII letter).
fn fold_rune(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    FOLDS_TO_ASCII
        .iter()
        .find(|(r, _)| *r == c)
        .map_or(c, |(_, ascii)| *ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_ascii_and_unicode_matches() {
        assert_eq!(key_match("Mountpoint", "Mountpoint"), KeyMatch::Exact);
        assert_eq!(key_match("mountpoint", "Mountpoint"), KeyMatch::AsciiFold);
        assert_eq!(key_match("MOUNTPOINT", "Mountpoint"), KeyMatch::AsciiFold);
        assert_eq!(key_match("\u{17F}cope", "Scope"), KeyMatch::UnicodeFold);
        assert_eq!(key_match("\u{212A}ey", "Key"), KeyMatch::UnicodeFold);
        assert_eq!(key_match("Po\u{131}ntID", "PoolID"), KeyMatch::None);
        assert_eq!(key_match("Pool\u{130}D", "PoolID"), KeyMatch::UnicodeFold);
        assert_eq!(key_match("Mountpoin", "Mountpoint"), KeyMatch::None);
        assert_eq!(key_match("Mountpoint ", "Mountpoint"), KeyMatch::None);
        assert_eq!(key_match("Mountpoınt", "Mountpoint"), KeyMatch::UnicodeFold);
        assert_eq!(key_match("Mountpöint", "Mountpoint"), KeyMatch::None);
    }

    /// The table is complete: no other rune has a simple case mapping onto an ASCII letter. Rust
    /// exposes Unicode's full mappings; where one is a single rune it is the simple one, and the
    /// only rune whose simple mapping differs from a multi-rune full one and is ASCII is `İ`
    /// (full lower case `i̇`, simple `i`), listed by hand.
    #[test]
    fn no_other_rune_folds_to_ascii() {
        fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
            let c = it.next()?;
            it.next().is_none().then_some(c)
        }
        for c in (0x80u32..=0x10FFFF).filter_map(char::from_u32) {
            let reaches_ascii = single(c.to_lowercase()).is_some_and(|l| l.is_ascii_alphabetic())
                || single(c.to_uppercase()).is_some_and(|u| u.is_ascii_alphabetic())
                || c == '\u{130}';
            let listed = FOLDS_TO_ASCII.iter().any(|(r, _)| *r == c);
            assert_eq!(reaches_ascii, listed, "U+{:04X}", c as u32);
        }
    }
}
