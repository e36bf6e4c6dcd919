//! Reading the engine's request bodies, for every plugin type: the one reader behind the wasm
//! host's calls and the SDK's native server.
//!
//! A request comes from dockerd, not from a plugin, and plugd answers it rather than passing it
//! on; so it is read the way a Go plugin (go-plugins-helpers) reads it — an empty body or `null`
//! is `{}`, field names match case-insensitively with the last match winning, unknown fields are
//! ignored — through the same [`gojson`](crate::gojson) reader that checks plugin replies, with
//! the request's Go type written as a [`Kind`].

use super::status;
use crate::Reply;
use crate::gojson::{Kind, decode_request};
use serde::de::DeserializeOwned;

/// Reads `body` (the request of `method`) as the Go type `kind`, then into `T`, whose serde names
/// are `kind`'s field names. A body Go would not decode is a 400 naming the method.
pub fn read<T: DeserializeOwned>(method: &str, body: &[u8], kind: &Kind) -> Result<T, Reply> {
    let value = decode_request(body, kind).map_err(|e| bad_body(method, &e.to_string()))?;
    serde_json::from_value(value).map_err(|e| bad_body(method, &e.to_string()))
}

/// Checks that `body` is an object, `null` or empty, for calls that take no arguments.
pub fn no_arguments(method: &str, body: &[u8]) -> Result<(), Reply> {
    decode_request(body, &Kind::Struct(&[]))
        .map(drop)
        .map_err(|e| bad_body(method, &e.to_string()))
}

/// The reply to a method this plugin type does not have: 404, which dockerd reads as "absent".
pub fn unknown(method: &str, plugin_type: &str) -> Reply {
    Reply::err(
        status::NOT_IMPLEMENTED,
        &format!("{method} is not implemented (this plugin is a {plugin_type})"),
    )
}

/// A Go `map[string]string` as the typed layer passes it on: pairs sorted by key, `null` or
/// absent as none.
pub fn pairs(m: Option<std::collections::BTreeMap<String, String>>) -> Vec<(String, String)> {
    m.unwrap_or_default().into_iter().collect()
}

/// `method` without the request path's leading `/`.
pub fn method_of(endpoint: &str) -> &str {
    endpoint.strip_prefix('/').unwrap_or(endpoint)
}

/// The 400 for a body Go would not decode into the request type of `method`.
pub fn bad_body(method: &str, why: &str) -> Reply {
    Reply::err(
        status::BAD_REQUEST,
        &format!("{method}: invalid request body: {why}"),
    )
}
