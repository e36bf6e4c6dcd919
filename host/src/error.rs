//! The daemon's error: a message (dockerd's text where dockerd has one) and the kind that decides the
//! HTTP status, the way moby's errdefs do.

use std::fmt;

/// What kind of failure, mapped onto dockerd's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 400: the request is malformed.
    InvalidParameter,
    /// 404: no such plugin.
    NotFound,
    /// 409: state forbids it (enabled, in use, exists).
    Conflict,
    /// 500: everything else, including dockerd's 500-for-precondition cases (`set` while enabled).
    System,
    /// 501: a route plugd does not implement yet.
    NotImplemented,
}

impl Kind {
    /// The HTTP status dockerd uses for this kind.
    pub fn status(self) -> u16 {
        match self {
            Kind::InvalidParameter => 400,
            Kind::NotFound => 404,
            Kind::Conflict => 409,
            Kind::System => 500,
            Kind::NotImplemented => 501,
        }
    }
}

/// A daemon error: kind plus user-facing message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Decides the status code.
    pub kind: Kind,
    /// What the user sees after `Error response from daemon: `.
    pub message: String,
}

impl Error {
    /// Builds an error of `kind`.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
    /// 400.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Kind::InvalidParameter, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, message)
    }
    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Kind::Conflict, message)
    }
    /// 500.
    pub fn system(message: impl Into<String>) -> Self {
        Self::new(Kind::System, message)
    }
    /// Prefixes the message, keeping the kind (like Go's `errors.Wrap`).
    pub fn wrap(self, prefix: &str) -> Self {
        Error {
            kind: self.kind,
            message: format!("{prefix}: {}", self.message),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Names the path an I/O error happened on: `map_err(at(&path))`.
pub fn at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::system(format!("{}: {e}", path.display()))
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::system(e.to_string())
    }
}

// The libraries' errors, each given its kind here, so every caller writes `?` and the status of a
// failure is decided in this file alone.

/// A runtime's refusal of what the bundle declares is the request's fault (400); a start that
/// failed is the daemon's (500).
impl From<plugd_core::RuntimeError> for Error {
    fn from(e: plugd_core::RuntimeError) -> Self {
        use plugd_core::RuntimeError as R;
        match e {
            R::Unsupported { .. } | R::Bundle(_) => Error::invalid(e.to_string()),
            R::Start(_) => Error::system(e.to_string()),
        }
    }
}

/// An invalid `config.json` (at create, or after a `set`) is the request's fault.
impl From<plugd_core::ConfigError> for Error {
    fn from(e: plugd_core::ConfigError) -> Self {
        Error::invalid(e.to_string())
    }
}

/// A refused `set`: 500, as dockerd answers every `Plugin.Set` failure.
impl From<plugd_core::settable::SetError> for Error {
    fn from(e: plugd_core::settable::SetError) -> Self {
        Error::system(e.to_string())
    }
}

/// A refused create archive is the request's fault.
impl From<crate::bundle::BundleError> for Error {
    fn from(e: crate::bundle::BundleError) -> Self {
        Error::invalid(e.to_string())
    }
}

/// A plugin name the user gave that is not a reference.
impl From<crate::reference::ReferenceError> for Error {
    fn from(e: crate::reference::ReferenceError) -> Self {
        Error::invalid(e.to_string())
    }
}

/// An unmount or removal under the data root that failed: the daemon's.
impl From<crate::unmount::UnmountError> for Error {
    fn from(e: crate::unmount::UnmountError) -> Self {
        Error::system(e.to_string())
    }
}

/// Plugd's own state failed to encode: the daemon's.
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::system(e.to_string())
    }
}

/// The daemon's result type.
pub type Result<T> = std::result::Result<T, Error>;
