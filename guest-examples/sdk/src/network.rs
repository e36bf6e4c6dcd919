//! Network drivers (`docker.networkdriver/1.0`): the [`NetworkDriver`] trait, its native
//! dispatch ([`handle`](protocol::handle), [`run_network_driver`](crate::run_network_driver)) and
//! its wasm export ([`export_network_driver!`](crate::export_network_driver)).
//!
//! A driver that hands containers an interface makes it with [`links`](crate::links), which works
//! the same in both packagings: natively through rtnetlink (the plugin needs `Network.Type`
//! `host` and `CAP_NET_ADMIN`, as under dockerd), in wasm through plugd's `host-links` import
//! (granted for the same declaration).

use crate::Error;

pub use plugd_core::protocol::network::{
    EndpointInterface, InterfaceName, IpamData, JoinInfo, Scope, StaticRoute,
};

#[cfg(all(unix, not(target_arch = "wasm32")))]
pub mod protocol;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wasm;

/// `CreateNetwork`'s request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateNetwork {
    /// 64-hex network id.
    pub network_id: String,
    /// dockerd's options as `(key, JSON text)`, sorted; the user's `-o` are the object under
    /// `com.docker.network.generic`.
    pub options: Vec<(String, String)>,
    /// IPv4 pools; `gateway` is a CIDR, which Join returns without its `/nn`.
    pub ipv4_data: Vec<IpamData>,
    /// IPv6 pools.
    pub ipv6_data: Vec<IpamData>,
}

/// `CreateEndpoint`'s request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateEndpoint {
    /// Network id.
    pub network_id: String,
    /// 64-hex endpoint id.
    pub endpoint_id: String,
    /// The addresses dockerd's IPAM already set.
    pub interface: Option<EndpointInterface>,
    /// Options as `(key, JSON text)`.
    pub options: Vec<(String, String)>,
}

/// `Join`'s request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Join {
    /// Network id.
    pub network_id: String,
    /// Endpoint id.
    pub endpoint_id: String,
    /// The container's network namespace path (not there yet during Join).
    pub sandbox_key: String,
    /// Options as `(key, JSON text)`.
    pub options: Vec<(String, String)>,
}

/// A Docker network driver, written once for both packagings. Calls never overlap.
///
/// The optional endpoints default to what dockerd treats as success or absence.
pub trait NetworkDriver {
    /// `GetCapabilities`: `(Scope, ConnectivityScope)`; `global` needs swarm.
    fn capabilities(&self) -> (Scope, Scope) {
        (Scope::Local, Scope::Local)
    }

    /// `CreateNetwork`.
    fn create_network(&self, req: &CreateNetwork) -> Result<(), Error>;

    /// `DeleteNetwork` (after dockerd released the network's addresses).
    fn delete_network(&self, network_id: &str) -> Result<(), Error>;

    /// `CreateEndpoint`: `None` keeps dockerd's addresses; returning one dockerd already set makes
    /// it roll the endpoint back.
    fn create_endpoint(&self, req: &CreateEndpoint) -> Result<Option<EndpointInterface>, Error>;

    /// `EndpointOperInfo`: free-form pairs. Mandatory for dockerd (an error fails the start);
    /// the default has none.
    fn endpoint_oper_info(
        &self,
        _network_id: &str,
        _endpoint_id: &str,
    ) -> Result<Vec<(String, String)>, Error> {
        Ok(Vec::new())
    }

    /// `DeleteEndpoint`: the interface is back in the host under its Join name by now.
    fn delete_endpoint(&self, network_id: &str, endpoint_id: &str) -> Result<(), Error>;

    /// `Join`: the interface to move into the container (from [`links`](crate::links)) and a
    /// gateway inside its subnet, or `disable_gateway_service`.
    fn join(&self, req: &Join) -> Result<JoinInfo, Error>;

    /// `Leave` (before dockerd moves the interface back). Default: nothing to do.
    fn leave(&self, _network_id: &str, _endpoint_id: &str) -> Result<(), Error> {
        Ok(())
    }

    /// `ProgramExternalConnectivity`. Default: unsupported (404), a success to dockerd.
    fn program_external_connectivity(
        &self,
        _network_id: &str,
        _endpoint_id: &str,
        _options: &[(String, String)],
    ) -> Result<(), Error> {
        Err(Error::unsupported("no external connectivity"))
    }

    /// `RevokeExternalConnectivity`. Default: unsupported (404), a success to dockerd.
    fn revoke_external_connectivity(
        &self,
        _network_id: &str,
        _endpoint_id: &str,
    ) -> Result<(), Error> {
        Err(Error::unsupported("no external connectivity"))
    }
}
