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

// The libraries' errors, each given its kind here, so every caller writes `?` and the status of a
// failure is decided in this file alone.

/// `From` for library errors whose every case has one kind: `Type => constructor`.
macro_rules! kind_of {
    ($($(#[$doc:meta])* $ty:ty => $kind:ident;)*) => {$(
        $(#[$doc])*
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::$kind(e.to_string())
            }
        }
    )*};
}

kind_of! {
    /// An I/O failure without a path to name: the daemon's.
    std::io::Error => system;
    /// An invalid `config.json` (at create, or after a `set`) is the request's fault.
    plugd_core::ConfigError => invalid;
    /// A refused `set`: 500, as dockerd answers every `Plugin.Set` failure.
    plugd_core::settable::SetError => system;
    /// A refused create archive is the request's fault.
    crate::bundle::BundleError => invalid;
    /// A plugin name the user gave that is not a reference.
    crate::reference::ReferenceError => invalid;
    /// An unmount or removal under the data root that failed: the daemon's.
    crate::unmount::UnmountError => system;
    /// Plugd's own state failed to encode: the daemon's.
    serde_json::Error => system;
}

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

/// The daemon's result type.
pub type Result<T> = std::result::Result<T, Error>;
