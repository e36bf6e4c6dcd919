//! The wasm packaging: WIT bindings, generated once here, and the conversions
//! [`export_volume_driver!`](crate::export_volume_driver) calls, kept out of the macro so the
//! expansion in the author's crate stays small.

use crate::{Error, ErrorCode, Scope, Volume, VolumeDriver};

/// The guest side of `wit/` (world `volume-plugin`). The export macro is public and renamed so
/// `export_volume_driver!` can invoke it from the author's crate, whose own `export!` (if any)
/// it must not clash with.
pub mod bindings {
    wit_bindgen::generate!({
        world: "volume-plugin",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_volume_plugin",
    });
}

use bindings::docker::plugin::types as wit_types;
use bindings::exports::docker::plugin::volume_driver as wit;

pub use wit::Guest;
/// WIT `error`.
pub type WitError = wit_types::Error;
/// WIT `volume`.
pub type WitVolume = wit::Volume;
/// WIT `scope`.
pub type WitScope = wit::Scope;

/// A driver's error as WIT's: the one conversion, for every world (they share `types`).
pub(crate) fn error(e: Error) -> WitError {
    let code = match e.code {
        ErrorCode::NotFound => wit_types::ErrorCode::NotFound,
        ErrorCode::InvalidArgument => wit_types::ErrorCode::InvalidArgument,
        ErrorCode::Conflict => wit_types::ErrorCode::Conflict,
        ErrorCode::Unsupported => wit_types::ErrorCode::Unsupported,
        ErrorCode::Internal => wit_types::ErrorCode::Internal,
    };
    WitError {
        code,
        message: e.message,
    }
}

fn volume(v: Volume) -> WitVolume {
    WitVolume {
        name: v.name,
        mountpoint: v.mountpoint,
        created_at: v.created_at,
        status: v.status,
    }
}

pub fn create<D: VolumeDriver>(
    d: &D,
    name: &str,
    opts: &[(String, String)],
) -> Result<(), WitError> {
    d.create(name, opts).map_err(error)
}

pub fn remove<D: VolumeDriver>(d: &D, name: &str) -> Result<(), WitError> {
    d.remove(name).map_err(error)
}

pub fn mount<D: VolumeDriver>(d: &D, name: &str, id: &str) -> Result<String, WitError> {
    d.mount(name, id).map_err(error)
}

pub fn unmount<D: VolumeDriver>(d: &D, name: &str, id: &str) -> Result<(), WitError> {
    d.unmount(name, id).map_err(error)
}

pub fn path<D: VolumeDriver>(d: &D, name: &str) -> Result<String, WitError> {
    d.path(name).map_err(error)
}

pub fn get<D: VolumeDriver>(d: &D, name: &str) -> Result<WitVolume, WitError> {
    d.get(name).map(volume).map_err(error)
}

pub fn list<D: VolumeDriver>(d: &D) -> Result<Vec<WitVolume>, WitError> {
    d.list()
        .map(|vs| vs.into_iter().map(volume).collect())
        .map_err(error)
}

pub fn capabilities<D: VolumeDriver>(d: &D) -> WitScope {
    match d.capabilities() {
        Scope::Local => WitScope::Local,
        Scope::Global => WitScope::Global,
    }
}
