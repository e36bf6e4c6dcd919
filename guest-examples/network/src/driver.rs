//! The example network driver: one veth pair per endpoint, one end moved into the container by
//! dockerd, the other left up in the host; the gateway is the one dockerd's IPAM chose.
//!
//! State (each network's gateway, each endpoint's veth) is kept in memory: plugd replaces a wasm
//! instance only after a fault, and the links themselves are plugd's to clean up then (wasm) or
//! the kernel's when the endpoint's container is gone and DeleteEndpoint runs (both).

use plugd_plugin_sdk::links;
use plugd_plugin_sdk::network::{
    CreateEndpoint, CreateNetwork, EndpointInterface, InterfaceName, Join, JoinInfo,
};
use plugd_plugin_sdk::{Error, NetworkDriver};
use std::cell::RefCell;
use std::collections::HashMap;

/// The `-o` option that makes CreateNetwork panic (a trap in wasm), for plugd's fault tests.
pub const TRAP_OPTION: &str = "plugd.example.trap";
/// The `-o` option whose value Join names as its interface instead of making one: a hostile
/// driver, for plugd's tests of what it lets through to dockerd.
pub const SRC_NAME_OPTION: &str = "plugd.example.src_name";

/// The string value of `-o key=value` in the `com.docker.network.generic` option's JSON text.
fn generic_option(options: &[(String, String)], key: &str) -> Option<String> {
    let (_, json) = options
        .iter()
        .find(|(k, _)| k == "com.docker.network.generic")?;
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let len = json[start..].find('"')?;
    Some(json[start..start + len].to_string())
}

/// Networks by id (their IPv4 gateway, without the prefix length) and endpoints by id (their
/// veth's container-side name).
#[derive(Default)]
pub struct VethDriver {
    gateways: RefCell<HashMap<String, String>>,
    /// Networks created with [`SRC_NAME_OPTION`], and its value.
    forced_names: RefCell<HashMap<String, String>>,
    veths: RefCell<HashMap<String, String>>,
}

impl NetworkDriver for VethDriver {
    fn create_network(&self, req: &CreateNetwork) -> Result<(), Error> {
        if generic_option(&req.options, TRAP_OPTION).is_some() {
            panic!("{TRAP_OPTION} was set");
        }
        if let Some(name) = generic_option(&req.options, SRC_NAME_OPTION) {
            self.forced_names
                .borrow_mut()
                .insert(req.network_id.clone(), name);
        }
        let gateway = req
            .ipv4_data
            .first()
            .map(|d| d.gateway.split('/').next().unwrap_or_default().to_string())
            .unwrap_or_default();
        self.gateways
            .borrow_mut()
            .insert(req.network_id.clone(), gateway);
        Ok(())
    }

    fn delete_network(&self, network_id: &str) -> Result<(), Error> {
        self.gateways.borrow_mut().remove(network_id);
        self.forced_names.borrow_mut().remove(network_id);
        Ok(())
    }

    fn create_endpoint(&self, _req: &CreateEndpoint) -> Result<Option<EndpointInterface>, Error> {
        // dockerd's IPAM set the address already; returning it again would roll the endpoint back.
        Ok(None)
    }

    fn delete_endpoint(&self, _network_id: &str, endpoint_id: &str) -> Result<(), Error> {
        match self.veths.borrow_mut().remove(endpoint_id) {
            Some(name) => links::delete_link(&name),
            None => Ok(()),
        }
    }

    fn join(&self, req: &Join) -> Result<JoinInfo, Error> {
        if let Some(name) = self.forced_names.borrow().get(&req.network_id) {
            return Ok(JoinInfo {
                interface_name: Some(InterfaceName {
                    src_name: name.clone(),
                    dst_prefix: "eth".into(),
                }),
                disable_gateway_service: true,
                ..Default::default()
            });
        }
        let id: String = req
            .endpoint_id
            .chars()
            .filter(|c| c.is_ascii_hexdigit())
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        let veth = links::create_veth(&id)?;
        self.veths
            .borrow_mut()
            .insert(req.endpoint_id.clone(), veth.name.clone());
        let gateway = self
            .gateways
            .borrow()
            .get(&req.network_id)
            .cloned()
            .unwrap_or_default();
        Ok(JoinInfo {
            interface_name: Some(InterfaceName {
                src_name: veth.name,
                dst_prefix: "eth".into(),
            }),
            disable_gateway_service: gateway.is_empty(),
            gateway,
            ..Default::default()
        })
    }
}
