//! The HTTP statuses of plugin-protocol replies, and what each means to dockerd: the one table both
//! runtimes and the socket gateway answer from, next to [`Reply::err`](crate::Reply::err).
//!
//! dockerd treats only [`OK`] as success; for any other status it shows the `{"Err"}` message. A
//! few calls are optional (`VolumeDriver.Capabilities`, `NetworkDriver.ProgramExternalConnectivity`,
//! …): dockerd reads [`NOT_IMPLEMENTED`] on those as "the plugin has no such call" and goes on with
//! defaults, so that status must mean exactly that and nothing else.

/// Success; the only status dockerd reads as one.
pub const OK: u16 = 200;

/// The request body could not be read or decoded: the caller's fault, not the plugin's.
pub const BAD_REQUEST: u16 = 400;

/// The plugin does not implement this method: dockerd treats an optional call answered so as
/// absent (go-plugins-helpers answers unknown routes the same way).
pub const NOT_IMPLEMENTED: u16 = 404;

/// Any HTTP method but `POST`: the plugin protocol has no other.
pub const METHOD_NOT_ALLOWED: u16 = 405;

/// The plugin (or plugd on its behalf) failed the call: a driver error, a crash, a timeout, a
/// reply plugd refuses to pass on.
pub const PLUGIN_ERROR: u16 = 500;

/// Whether dockerd reads `status` as an error status it keeps (4xx, 5xx); a plugin's other
/// non-200 statuses are passed on as [`PLUGIN_ERROR`].
pub fn is_error(status: u16) -> bool {
    (400..=599).contains(&status)
}
