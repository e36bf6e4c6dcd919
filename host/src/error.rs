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

/// The daemon's result type.
pub type Result<T> = std::result::Result<T, Error>;
