//! Reading plugin replies exactly as dockerd's Go decoder would, or not at all.
//!
//! dockerd acts on what a plugin replies (it bind-mounts a `Mountpoint`, moves an interface named
//! `SrcName`, allows an API call on `Allow`). plugd checks and rewrites those values before dockerd
//! sees them, so the two must never read a reply differently. Go's `encoding/json` is lenient in
//! ways a strict reader is not: it ignores data after the first value, matches keys to fields
//! case-insensitively (the last of several matches winning, Unicode folding included), and
//! replaces invalid UTF-8 and lone surrogates. This module refuses every input on which those rules
//! would make a difference ([`parse`] for the syntax, [`schema`] for keys and types), and the
//! caller sends dockerd only the value re-encoded from what it decoded, never the plugin's bytes.
//!
//! The rules and the Go behaviour each one mirrors are tabulated in `docs/protocol.md`
//! ("Reading plugin replies"), with one test per row in `tests.rs`.

pub mod fold;
pub mod forms;
pub mod parse;
pub mod schema;

pub use parse::{Json, MAX_BYTES, MAX_DEPTH, MAX_VALUES};
pub use schema::{Field, Form, Kind, decode, decode_request};

/// Why a reply was refused; every variant names what Go would have done instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// An empty body: Go's decoder fails with EOF.
    #[error("empty body")]
    Empty,
    /// Bytes that are not UTF-8 (Go substitutes U+FFFD).
    #[error("invalid UTF-8 at byte {offset} (Go would read it as U+FFFD)")]
    InvalidUtf8 {
        /// Where the first invalid byte is.
        offset: usize,
    },
    /// Not JSON.
    #[error("invalid JSON at byte {offset}: {message}")]
    Syntax {
        /// Where the parser stopped.
        offset: usize,
        /// What it expected.
        message: String,
    },
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH} levels at byte {offset}")]
    TooDeep {
        /// Where the limit was crossed.
        offset: usize,
    },
    /// A body too large to decode safely (Go has no limit; plugd bounds its own memory).
    #[error("reply too large: {what}")]
    TooLarge {
        /// What was over the limit.
        what: String,
    },
    /// Something other than whitespace after the value (Go's decoder stops before it).
    #[error("data after the JSON value at byte {offset} (Go's decoder would ignore it)")]
    Trailing {
        /// Where the extra data starts.
        offset: usize,
    },
    /// A `\uD800`-style escape without its pair (Go substitutes U+FFFD).
    #[error("lone UTF-16 surrogate escape at byte {offset} (Go would read it as U+FFFD)")]
    LoneSurrogate {
        /// Where the escape starts.
        offset: usize,
    },
    /// Two keys that Go maps to one field or map entry (Go keeps the last, merging objects).
    #[error("keys {first:?} and {second:?} both set {at} (Go would keep the last)")]
    Duplicate {
        /// The field or map entry.
        at: String,
        /// The earlier key.
        first: String,
        /// The later key.
        second: String,
    },
    /// A key that reaches a field only through non-ASCII case folding.
    #[error(
        "key {key:?} would set {at} only through Unicode case folding, which Go versions read differently"
    )]
    UnicodeFold {
        /// The field it folds onto.
        at: String,
        /// The key as sent.
        key: String,
    },
    /// A value of the wrong JSON type (Go's `UnmarshalTypeError`, which fails the call).
    #[error("{at}: expected {expected}, got {found}")]
    Type {
        /// Where.
        at: String,
        /// What the Go type accepts.
        expected: &'static str,
        /// The JSON kind found.
        found: &'static str,
    },
    /// A value of the right type that dockerd would refuse or misread (an address, a name, a time).
    #[error("{at}: {message}")]
    Invalid {
        /// Where.
        at: String,
        /// Why.
        message: String,
    },
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
