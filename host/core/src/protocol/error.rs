//! What a driver says went wrong, in both packagings (wasm component and native binary) and in
//! the wasm host: one type, so the same failure becomes the same reply wherever it is raised.

use super::status;
use crate::Reply;
use std::fmt;

/// What kind of failure a driver reports; mirrors WIT `docker:plugin/types.error-code`.
///
/// dockerd does not tell 500 bodies apart, so only [`Unsupported`](Self::Unsupported) changes the
/// reply; the other codes exist so logs and metrics can tell user errors from bugs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The named object does not exist. For `VolumeDriver.Get` this is how "no such volume" is
    /// said, which makes dockerd call `Create` next when a volume is being created.
    NotFound,
    /// The request is malformed (a bad name, an unknown option).
    InvalidArgument,
    /// The request clashes with existing state (in use, exists with other options).
    Conflict,
    /// The driver does not implement this call: HTTP 404, which dockerd treats as "absent" for
    /// optional endpoints.
    Unsupported,
    /// Anything else: an I/O error, a bug.
    Internal,
}

impl ErrorCode {
    /// The WIT spelling, used as the message when a driver gives none.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not-found",
            ErrorCode::InvalidArgument => "invalid-argument",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Internal => "internal",
        }
    }

    /// The reply status: [`status::NOT_IMPLEMENTED`] for `Unsupported` (an optional call dockerd
    /// then treats as absent), [`status::PLUGIN_ERROR`] for the rest.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Unsupported => status::NOT_IMPLEMENTED,
            ErrorCode::NotFound
            | ErrorCode::InvalidArgument
            | ErrorCode::Conflict
            | ErrorCode::Internal => status::PLUGIN_ERROR,
        }
    }
}

/// A driver error: a code for the host and a message for the user.
///
/// The message is what dockerd prints after `<Method>: `, so keep it short and free of host
/// details the user cannot act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverError {
    /// How the failure is reported (see [`ErrorCode`]).
    pub code: ErrorCode,
    /// Human-readable text, relayed as is.
    pub message: String,
}

impl DriverError {
    /// An error with any code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> DriverError {
        DriverError {
            code,
            message: message.into(),
        }
    }

    /// [`ErrorCode::NotFound`].
    pub fn not_found(message: impl Into<String>) -> DriverError {
        DriverError::new(ErrorCode::NotFound, message)
    }

    /// [`ErrorCode::InvalidArgument`].
    pub fn invalid_argument(message: impl Into<String>) -> DriverError {
        DriverError::new(ErrorCode::InvalidArgument, message)
    }

    /// [`ErrorCode::Conflict`].
    pub fn conflict(message: impl Into<String>) -> DriverError {
        DriverError::new(ErrorCode::Conflict, message)
    }

    /// [`ErrorCode::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> DriverError {
        DriverError::new(ErrorCode::Unsupported, message)
    }

    /// [`ErrorCode::Internal`].
    pub fn internal(message: impl Into<String>) -> DriverError {
        DriverError::new(ErrorCode::Internal, message)
    }

    /// The reply dockerd gets: `{"Err": message}` with the code's status (the code's name when
    /// the message is empty). IPAM carries errors in its own field; its module maps them itself.
    pub fn reply(&self) -> Reply {
        Reply::err(self.code.status(), &self.to_string())
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(self.code.as_str())
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for DriverError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Reply) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn unsupported_is_404_the_rest_500_and_an_empty_message_is_the_code() {
        let r = DriverError::unsupported("").reply();
        assert_eq!(
            (r.status, body(&r)),
            (404, serde_json::json!({"Err": "unsupported"}))
        );
        for e in [
            DriverError::not_found("boom"),
            DriverError::invalid_argument("boom"),
            DriverError::conflict("boom"),
            DriverError::internal("boom"),
        ] {
            let r = e.reply();
            assert_eq!(
                (r.status, body(&r)),
                (500, serde_json::json!({"Err": "boom"}))
            );
        }
    }
}
