//! Which driver interfaces a component exports, located once per component from the plugin's
//! declared `Interface.Types`, and which of them a call is for.
//!
//! A call whose method belongs to no declared type is a 404 (dockerd reads it as "absent");
//! `Plugin.Activate` is answered from the declared types, as plugd's gateway answers it.

use crate::authz as authz_glue;
use crate::bindings::{
    ErrorCode as GuestCode, GuestError, authz, ipam_driver, log_driver, metrics_collector,
    network_driver, probe, volume_driver,
};
use crate::instance::HostState;
use crate::ipam;
use crate::logdriver;
use crate::metrics;
use crate::network;
use crate::volume;
use plugd_core::Reply;
use plugd_core::protocol::request::{self, method_of};
use plugd_core::protocol::{
    DriverError, ErrorCode, Manifest, authz as authz_proto, implements_for_type,
    ipam as ipam_proto, logdriver as log_proto, metrics as metrics_proto, network as net_proto,
    volume as proto,
};
use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

/// A component ready to instantiate: imports resolved against plugd's linker and the declared
/// exports located, once per enable.
pub(crate) struct Prepared {
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) exports: Exports,
}

/// The interfaces a plugin declared, located in its component.
pub(crate) struct Exports {
    volume: Option<volume_driver::GuestIndices>,
    authz: Option<authz::GuestIndices>,
    ipam: Option<ipam_driver::GuestIndices>,
    network: Option<network_driver::GuestIndices>,
    log: Option<log_driver::GuestIndices>,
    metrics: Option<metrics_collector::GuestIndices>,
    /// plugd's probe (`plugd check`): set only for the probe component, which exports nothing else
    /// plugd calls.
    probe: Option<probe::GuestIndices>,
    /// The `Implements` list, for `Plugin.Activate` and for messages.
    implements: Vec<&'static str>,
}

/// The declared interfaces of one live instance.
pub(crate) struct Guests {
    volume: Option<volume_driver::Guest>,
    authz: Option<authz::Guest>,
    ipam: Option<ipam_driver::Guest>,
    network: Option<network_driver::Guest>,
    log: Option<log_driver::Guest>,
    metrics: Option<metrics_collector::Guest>,
    probe: Option<probe::Guest>,
}

/// Most bytes of a plan plugd passes to its probe (plugd writes it, but one cap for every body).
pub(crate) const MAX_PLAN: usize = plugd_core::check::probe::MAX_REPORT;

/// One decoded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    Activate,
    Volume(proto::Request),
    Authz(authz_proto::Request),
    Ipam(ipam_proto::Request),
    Network(net_proto::Request),
    Log(log_proto::Request),
    /// Entries read from a log FIFO, for the guest's `log` (not an HTTP call: see `logstreams`).
    LogBatch {
        file: String,
        entries: Vec<log_proto::Entry>,
    },
    /// One page of `read-logs` (the gateway's `ReadLogs` stream is made of these).
    ReadPage {
        info: log_proto::Info,
        config: log_proto::ReadConfig,
        cursor: u64,
    },
    /// A `MetricsCollector.*` call, or a tick (which only plugd makes; never decoded).
    Metrics(metrics::Call),
    /// `Probe.Check` with its plan (JSON text, not decoded here: the probe decodes it).
    Probe(String),
}

/// What a call gives back: an HTTP reply, or a page of entries for a `ReadLogs` stream.
#[derive(Debug)]
pub(crate) enum Answer {
    Reply(Reply),
    Page(log_proto::Page),
}

impl Answer {
    /// The HTTP reply (a page where none was expected is plugd's bug, reported as a 500).
    pub(crate) fn into_reply(self) -> Reply {
        match self {
            Answer::Reply(r) => r,
            Answer::Page(_) => Reply::err(
                plugd_core::protocol::status::PLUGIN_ERROR,
                "a ReadLogs page where a reply was expected",
            ),
        }
    }
}

/// The plugin types a component can implement (an interface in `wit/` each), by `Implements`
/// name: the one list the policy's refusal and [`Exports::find`] agree on.
pub(crate) const WASM_TYPES: &[&str] = &[
    proto::IMPLEMENTS,
    authz_proto::IMPLEMENTS,
    ipam_proto::IMPLEMENTS,
    net_proto::IMPLEMENTS,
    log_proto::IMPLEMENTS,
    metrics_proto::IMPLEMENTS,
];

/// Whether an `Interface.Types` entry is one of [`WASM_TYPES`].
pub(crate) fn has_interface(t: &str) -> bool {
    implements_for_type(t).is_some_and(|i| WASM_TYPES.contains(&i))
}

/// Whether `types` declare the plugin type whose `Implements` name is `implements`.
pub(crate) fn declares(types: &[String], implements: &str) -> bool {
    types
        .iter()
        .any(|t| implements_for_type(t) == Some(implements))
}

impl Exports {
    /// Locates the export of each declared type, or says which one the component lacks.
    pub(crate) fn find(pre: &InstancePre<HostState>, types: &[String]) -> Result<Exports, String> {
        let mut exports = Exports {
            volume: None,
            authz: None,
            ipam: None,
            network: None,
            log: None,
            metrics: None,
            probe: None,
            implements: Vec::new(),
        };
        for t in types {
            let missing = |iface: &str, e: wasmtime::Error| {
                format!(
                    "Interface.Types has {t:?}, but the component does not export {iface}: {e:#}"
                )
            };
            match implements_for_type(t) {
                Some(proto::IMPLEMENTS) => {
                    let found = volume_driver::GuestIndices::new(pre)
                        .map_err(|e| missing("docker:plugin/volume-driver@0.1.0", e))?;
                    exports.volume = Some(found);
                    exports.implements.push(proto::IMPLEMENTS);
                }
                Some(authz_proto::IMPLEMENTS) => {
                    let found = authz::GuestIndices::new(pre)
                        .map_err(|e| missing("docker:plugin/authz@0.1.0", e))?;
                    exports.authz = Some(found);
                    exports.implements.push(authz_proto::IMPLEMENTS);
                }
                Some(ipam_proto::IMPLEMENTS) => {
                    let found = ipam_driver::GuestIndices::new(pre)
                        .map_err(|e| missing("docker:plugin/ipam-driver@0.1.0", e))?;
                    exports.ipam = Some(found);
                    exports.implements.push(ipam_proto::IMPLEMENTS);
                }
                Some(net_proto::IMPLEMENTS) => {
                    let found = network_driver::GuestIndices::new(pre)
                        .map_err(|e| missing("docker:plugin/network-driver@0.1.0", e))?;
                    exports.network = Some(found);
                    exports.implements.push(net_proto::IMPLEMENTS);
                }
                Some(log_proto::IMPLEMENTS) => {
                    let found = log_driver::GuestIndices::new(pre)
                        .map_err(|e| missing("docker:plugin/log-driver@0.1.0", e))?;
                    exports.log = Some(found);
                    exports.implements.push(log_proto::IMPLEMENTS);
                }
                Some(metrics_proto::IMPLEMENTS) => {
                    let found = metrics_collector::GuestIndices::new(pre)
                        .map_err(|e| missing("docker:plugin/metrics-collector@0.1.0", e))?;
                    exports.metrics = Some(found);
                    exports.implements.push(metrics_proto::IMPLEMENTS);
                }
                _ => return Err(format!("interface type {t:?} has no wasm interface")),
            }
        }
        if exports.implements.is_empty() {
            return Err("config declares no Interface.Types".to_string());
        }
        exports.implements.dedup();
        Ok(exports)
    }

    /// Locates the probe's one export: a probe instance answers `Probe.Check` and nothing else,
    /// whatever the plugin it stands in for declares.
    pub(crate) fn probe(pre: &InstancePre<HostState>) -> Result<Exports, String> {
        let found = probe::GuestIndices::new(pre).map_err(|e| {
            format!("the probe component does not export docker:plugin/probe@0.1.0: {e:#}")
        })?;
        Ok(Exports {
            volume: None,
            authz: None,
            ipam: None,
            network: None,
            log: None,
            metrics: None,
            probe: Some(found),
            implements: Vec::new(),
        })
    }

    /// The declared interfaces of a new instance (type-checked against the bindings).
    pub(crate) fn load(
        &self,
        store: &mut Store<HostState>,
        instance: &Instance,
    ) -> wasmtime::Result<Guests> {
        Ok(Guests {
            volume: match &self.volume {
                Some(i) => Some(i.load(&mut *store, instance)?),
                None => None,
            },
            authz: match &self.authz {
                Some(i) => Some(i.load(&mut *store, instance)?),
                None => None,
            },
            ipam: match &self.ipam {
                Some(i) => Some(i.load(&mut *store, instance)?),
                None => None,
            },
            network: match &self.network {
                Some(i) => Some(i.load(&mut *store, instance)?),
                None => None,
            },
            log: match &self.log {
                Some(i) => Some(i.load(&mut *store, instance)?),
                None => None,
            },
            metrics: match &self.metrics {
                Some(i) => Some(i.load(&mut *store, instance)?),
                None => None,
            },
            probe: match &self.probe {
                Some(i) => Some(i.load(&mut *store, instance)?),
                None => None,
            },
        })
    }

    /// Decodes a call for one of the declared types, or gives the error reply.
    pub(crate) fn decode(&self, endpoint: &str, body: &[u8]) -> Result<Call, Reply> {
        let method = method_of(endpoint);
        if self.probe.is_some() {
            return decode_probe(method, body);
        }
        if method == "Plugin.Activate" {
            return Ok(Call::Activate);
        }
        if self.volume.is_some() && method.starts_with("VolumeDriver.") {
            return proto::Request::decode(method, body).map(Call::Volume);
        }
        if self.authz.is_some() && method.starts_with("AuthZPlugin.") {
            return authz_proto::Request::decode(method, body).map(Call::Authz);
        }
        if self.ipam.is_some() && method.starts_with("IpamDriver.") {
            return ipam_proto::Request::decode(method, body).map(Call::Ipam);
        }
        if self.network.is_some() && method.starts_with("NetworkDriver.") {
            return net_proto::Request::decode(method, body).map(Call::Network);
        }
        if self.log.is_some() && method.starts_with("LogDriver.") {
            return log_proto::Request::decode(method, body).map(Call::Log);
        }
        if self.metrics.is_some() && method.starts_with("MetricsCollector.") {
            return metrics_proto::Request::decode(method, body)
                .map(|r| Call::Metrics(metrics::Call::Protocol(r)));
        }
        Err(request::unknown(method, &self.implements.join("+")))
    }

    /// Whether the component is a log driver.
    pub(crate) fn is_log_driver(&self) -> bool {
        self.log.is_some()
    }
}

/// A call to the probe: `Probe.Check` with a UTF-8 plan of at most [`MAX_PLAN`] bytes; any other
/// method is not implemented (not even `Plugin.Activate`: plugd calls the probe directly).
fn decode_probe(method: &str, body: &[u8]) -> Result<Call, Reply> {
    use plugd_core::check::probe::CHECK_METHOD;
    use plugd_core::protocol::status;
    if method != CHECK_METHOD {
        return Err(Reply::err(
            status::NOT_IMPLEMENTED,
            &format!("{method} is not implemented (this is plugd's probe: {CHECK_METHOD} only)"),
        ));
    }
    if body.len() > MAX_PLAN {
        return Err(Reply::err(
            status::BAD_REQUEST,
            &format!(
                "{CHECK_METHOD}: plan of {} bytes is over the {MAX_PLAN}-byte cap",
                body.len()
            ),
        ));
    }
    let plan = std::str::from_utf8(body)
        .map_err(|e| Reply::err(status::BAD_REQUEST, &format!("{CHECK_METHOD}: plan: {e}")))?;
    Ok(Call::Probe(plan.to_string()))
}

/// Calls the guest for `call`. `Ok` carries the reply, guest-reported errors included; `Err` is a
/// fault of the instance itself (trap, interrupt), after which it must be discarded.
pub(crate) async fn invoke(
    call: &Call,
    exports: &Exports,
    guests: &Guests,
    store: &mut Store<HostState>,
) -> wasmtime::Result<Answer> {
    let undeclared = || {
        // decode() only gives calls of declared types, and load() loads every declared type.
        wasmtime::format_err!("call for an interface the instance did not load")
    };
    let log_guest = || guests.log.as_ref().ok_or_else(undeclared);
    Ok(Answer::Reply(match call {
        Call::Activate => plugd_core::protocol::json(&Manifest {
            implements: exports.implements.iter().map(|s| s.to_string()).collect(),
        }),
        Call::Volume(req) => {
            let guest = guests.volume.as_ref().ok_or_else(undeclared)?;
            volume::invoke(req, guest, store).await?
        }
        Call::Authz(req) => {
            let guest = guests.authz.as_ref().ok_or_else(undeclared)?;
            authz_glue::invoke(req, guest, store).await?
        }
        Call::Ipam(req) => {
            let guest = guests.ipam.as_ref().ok_or_else(undeclared)?;
            ipam::invoke(req, guest, store).await?
        }
        Call::Network(req) => {
            let guest = guests.network.as_ref().ok_or_else(undeclared)?;
            network::invoke(req, guest, store).await?
        }
        Call::Log(req) => logdriver::invoke(req, log_guest()?, store).await?,
        Call::LogBatch { file, entries } => {
            logdriver::log(file, entries, log_guest()?, store).await?
        }
        Call::ReadPage {
            info,
            config,
            cursor,
        } => return logdriver::read_page(info, config, *cursor, log_guest()?, store).await,
        Call::Metrics(call) => {
            let guest = guests.metrics.as_ref().ok_or_else(undeclared)?;
            metrics::invoke(*call, guest, store).await?
        }
        Call::Probe(plan) => {
            let guest = guests.probe.as_ref().ok_or_else(undeclared)?;
            let report = guest.call_check(&mut *store, plan).await?;
            probe_reply(report)
        }
    }))
}

/// The probe's report as the reply to `Probe.Check`, capped at
/// [`plugd_core::check::probe::MAX_REPORT`]: plugd decodes it strictly later, as any plugin reply.
fn probe_reply(report: String) -> Reply {
    use plugd_core::check::probe::MAX_REPORT;
    if report.len() > MAX_REPORT {
        return Reply::err(
            plugd_core::protocol::status::PLUGIN_ERROR,
            &format!(
                "the probe's report of {} bytes is over the {MAX_REPORT}-byte cap",
                report.len()
            ),
        );
    }
    Reply::ok(report)
}

/// A guest error as the protocol's (WIT `error-code` and [`ErrorCode`] are the same list).
pub(crate) fn driver_error(e: GuestError) -> DriverError {
    let code = match e.code {
        GuestCode::NotFound => ErrorCode::NotFound,
        GuestCode::InvalidArgument => ErrorCode::InvalidArgument,
        GuestCode::Conflict => ErrorCode::Conflict,
        GuestCode::Unsupported => ErrorCode::Unsupported,
        GuestCode::Internal => ErrorCode::Internal,
    };
    DriverError::new(code, e.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugd_core::check::probe::{CHECK_METHOD, MAX_REPORT};
    use plugd_core::protocol::status;

    #[test]
    fn the_probe_answers_its_check_alone_with_a_capped_utf8_plan() {
        assert_eq!(
            decode_probe(CHECK_METHOD, b"{\"nonce\":\"n\"}"),
            Ok(Call::Probe("{\"nonce\":\"n\"}".to_string()))
        );
        for other in ["Plugin.Activate", "VolumeDriver.List", "Probe.Checks"] {
            let reply = decode_probe(other, b"{}").unwrap_err();
            assert_eq!(reply.status, status::NOT_IMPLEMENTED, "{other}");
        }
        let reply = decode_probe(CHECK_METHOD, &vec![b' '; MAX_PLAN + 1]).unwrap_err();
        assert_eq!(reply.status, status::BAD_REQUEST);
        assert!(String::from_utf8_lossy(&reply.body).contains("cap"));
        assert!(decode_probe(CHECK_METHOD, &vec![b' '; MAX_PLAN]).is_ok());
        let reply = decode_probe(CHECK_METHOD, b"\xff").unwrap_err();
        assert_eq!(reply.status, status::BAD_REQUEST);
    }

    #[test]
    fn a_report_over_the_cap_is_an_error_reply() {
        assert_eq!(probe_reply("{}".into()), Reply::ok("{}"));
        assert_eq!(probe_reply(" ".repeat(MAX_REPORT)).status, status::OK);
        let reply = probe_reply(" ".repeat(MAX_REPORT + 1));
        assert_eq!(reply.status, status::PLUGIN_ERROR);
        assert!(String::from_utf8_lossy(&reply.body).contains("over the"));
    }

    #[test]
    fn every_guest_code_keeps_its_meaning() {
        for (guest, core) in [
            (GuestCode::NotFound, ErrorCode::NotFound),
            (GuestCode::InvalidArgument, ErrorCode::InvalidArgument),
            (GuestCode::Conflict, ErrorCode::Conflict),
            (GuestCode::Unsupported, ErrorCode::Unsupported),
            (GuestCode::Internal, ErrorCode::Internal),
        ] {
            let e = driver_error(GuestError {
                code: guest,
                message: "boom".into(),
            });
            assert_eq!(e, DriverError::new(core, "boom"));
        }
    }
}
