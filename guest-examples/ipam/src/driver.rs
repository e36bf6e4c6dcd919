//! The IPAM driver itself, shared by both packagings: the wasm component (`src/lib.rs`) and the
//! native binary (`native/src/main.rs`, which includes this file).
//!
//! IPv4 only. A pool is the request's `Pool` (`docker network create --subnet`) or, when none is
//! given, the first free `/24` carved from `$POOLS` (comma-separated CIDRs, default
//! `10.77.0.0/16`). Addresses are handed out lowest first: dockerd asks for the gateway first, so
//! it gets the first host address unless `--gateway` names another. The pool's id is its CIDR.
//!
//! **State on disk.** Every allocation lives in `$STATE_DIR/ipam-state.json` (default `/data`, the
//! plugin's `PropagatedMount`), read at every call and written atomically (a temporary file,
//! synced, then renamed over the old one): dockerd remembers networks and container addresses
//! across a restart of the plugin, and so must the driver. Nothing is kept in memory.

use plugd_plugin_sdk::Error;
use plugd_plugin_sdk::IpamDriver;
use plugd_plugin_sdk::ipam::{Address, AddressRequest, Pool, PoolRequest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// The state file's name under the state directory.
pub const STATE_FILE: &str = "ipam-state.json";
const DEFAULT_POOLS: &str = "10.77.0.0/16";

/// An IPv4 network: address and prefix length, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    base: u32,
    len: u8,
}

impl Net {
    fn parse(s: &str) -> Result<Net, Error> {
        let bad = || Error::invalid_argument(format!("{s:?} is not an IPv4 CIDR"));
        let (addr, len) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        if len > 32 {
            return Err(bad());
        }
        let net = Net {
            base: u32::from(addr) & mask(len),
            len,
        };
        if net.base != u32::from(addr) {
            return Err(Error::invalid_argument(format!(
                "{s:?} has host bits set (the network is {net})"
            )));
        }
        Ok(net)
    }

    fn last(self) -> u32 {
        self.base | !mask(self.len)
    }

    fn contains(self, ip: u32) -> bool {
        ip & mask(self.len) == self.base
    }

    fn overlaps(self, other: Net) -> bool {
        self.contains(other.base) || other.contains(self.base)
    }

    /// Addresses a host may have: all but the network and broadcast addresses (for /31 and /32,
    /// every address).
    fn hosts(self) -> std::ops::RangeInclusive<u32> {
        if self.len >= 31 {
            self.base..=self.last()
        } else {
            self.base + 1..=self.last() - 1
        }
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.len)
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

/// What is on disk: every pool by id, with its allocated addresses (plain IPs).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Pool id → pool.
    pub pools: BTreeMap<String, PoolState>,
}

/// One allocated pool.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PoolState {
    /// The pool, a CIDR.
    pub pool: String,
    /// The gateway's address (plain IP), once dockerd asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Every allocated address (plain IPs), the gateway's included.
    pub addresses: Vec<String>,
}

/// Pools and addresses from `$POOLS`, kept in a file under a state directory.
pub struct FilePools {
    dir: PathBuf,
    defaults: Vec<Net>,
}

impl FilePools {
    /// State under `dir`, default pools from `pools` (comma-separated CIDRs).
    pub fn new(dir: impl Into<PathBuf>, pools: &str) -> Result<FilePools, Error> {
        let defaults = pools
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Net::parse)
            .collect::<Result<_, _>>()?;
        Ok(FilePools {
            dir: dir.into(),
            defaults,
        })
    }

    /// `$STATE_DIR` (default `/data`) and `$POOLS` (default `10.77.0.0/16`). A bad `$POOLS`
    /// leaves no default pools: requests without `--subnet` then fail and say why.
    pub fn from_env() -> FilePools {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let dir = var("STATE_DIR").unwrap_or_else(|| "/data".into());
        let pools = var("POOLS").unwrap_or_else(|| DEFAULT_POOLS.into());
        FilePools::new(&dir, &pools).unwrap_or_else(|e| {
            eprintln!("POOLS={pools:?}: {e}; only --subnet pools can be allocated");
            FilePools {
                dir: dir.into(),
                defaults: Vec::new(),
            }
        })
    }

    fn load(&self) -> Result<State, Error> {
        match std::fs::read(self.dir.join(STATE_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::internal(format!("{STATE_FILE} is corrupt: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(Error::internal(format!("reading {STATE_FILE}: {e}"))),
        }
    }

    /// Writes `state` atomically: a crash leaves the old file or the new one, never a torn one.
    fn save(&self, state: &State) -> Result<(), Error> {
        let io = |e: std::io::Error| Error::internal(format!("writing {STATE_FILE}: {e}"));
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| Error::internal(e.to_string()))?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, self.dir.join(STATE_FILE)).map_err(io)
    }

    fn update<T>(&self, f: impl FnOnce(&mut State) -> Result<T, Error>) -> Result<T, Error> {
        let mut state = self.load()?;
        let out = f(&mut state)?;
        self.save(&state)?;
        Ok(out)
    }

    /// The first `/24` (or the whole default pool, if smaller) of the defaults that overlaps no
    /// allocated pool.
    fn carve(&self, taken: &[Net]) -> Result<Net, Error> {
        for d in &self.defaults {
            let len = d.len.max(24);
            let step = 1u64 << (32 - len);
            let mut base = u64::from(d.base);
            while base <= u64::from(d.last()) {
                let candidate = Net {
                    base: base as u32,
                    len,
                };
                if !taken.iter().any(|t| t.overlaps(candidate)) {
                    return Ok(candidate);
                }
                base += step;
            }
        }
        Err(Error::conflict("no free pool left in POOLS"))
    }
}

fn pool_net(p: &PoolState) -> Result<Net, Error> {
    Net::parse(&p.pool)
}

impl IpamDriver for FilePools {
    fn request_pool(&self, r: &PoolRequest) -> Result<Pool, Error> {
        if r.v6 {
            return Err(Error::invalid_argument(
                "this driver allocates IPv4 pools only",
            ));
        }
        if !r.sub_pool.is_empty() {
            return Err(Error::invalid_argument("--ip-range is not supported"));
        }
        self.update(|state| {
            let taken = state
                .pools
                .values()
                .map(pool_net)
                .collect::<Result<Vec<_>, _>>()?;
            let net = if r.pool.is_empty() {
                self.carve(&taken)?
            } else {
                let net = Net::parse(&r.pool)?;
                if let Some(t) = taken.iter().find(|t| t.overlaps(net)) {
                    return Err(Error::conflict(format!("{net} overlaps pool {t}")));
                }
                net
            };
            let id = net.to_string();
            state.pools.insert(
                id.clone(),
                PoolState {
                    pool: id.clone(),
                    ..PoolState::default()
                },
            );
            Ok(Pool {
                pool_id: id.clone(),
                pool: id,
                data: Vec::new(),
            })
        })
    }

    fn release_pool(&self, pool_id: &str) -> Result<(), Error> {
        self.update(|state| {
            state
                .pools
                .remove(pool_id)
                .map(drop)
                .ok_or_else(|| Error::not_found(format!("no pool {pool_id:?}")))
        })
    }

    fn request_address(&self, r: &AddressRequest) -> Result<Address, Error> {
        self.update(|state| {
            let pool = state
                .pools
                .get_mut(&r.pool_id)
                .ok_or_else(|| Error::not_found(format!("no pool {:?}", r.pool_id)))?;
            let net = pool_net(pool)?;
            let used = |ip: u32| pool.addresses.contains(&Ipv4Addr::from(ip).to_string());
            let ip = if r.address.is_empty() {
                net.hosts()
                    .find(|ip| !used(*ip))
                    .ok_or_else(|| Error::conflict(format!("pool {net} is full")))?
            } else {
                let ip: Ipv4Addr = r.address.parse().map_err(|_| {
                    Error::invalid_argument(format!("{:?} is not an IPv4 address", r.address))
                })?;
                let ip = u32::from(ip);
                if !net.hosts().contains(&ip) {
                    return Err(Error::invalid_argument(format!(
                        "{} is not a host address of {net}",
                        r.address
                    )));
                }
                if used(ip) {
                    return Err(Error::conflict(format!("{} is in use", r.address)));
                }
                ip
            };
            let plain = Ipv4Addr::from(ip).to_string();
            pool.addresses.push(plain.clone());
            if r.is_gateway() {
                pool.gateway = Some(plain.clone());
            }
            Ok(Address {
                address: format!("{plain}/{}", net.len),
                data: Vec::new(),
            })
        })
    }

    fn release_address(&self, pool_id: &str, address: &str) -> Result<(), Error> {
        self.update(|state| {
            let pool = state
                .pools
                .get_mut(pool_id)
                .ok_or_else(|| Error::not_found(format!("no pool {pool_id:?}")))?;
            // Releasing an address twice is not an error: dockerd may retry after a failure.
            pool.addresses.retain(|a| a != address);
            if pool.gateway.as_deref() == Some(address) {
                pool.gateway = None;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(pool_id: &str) -> AddressRequest {
        AddressRequest {
            pool_id: pool_id.into(),
            address: String::new(),
            options: vec![(
                plugd_plugin_sdk::ipam::REQUEST_ADDRESS_TYPE.into(),
                plugd_plugin_sdk::ipam::GATEWAY.into(),
            )],
        }
    }

    #[test]
    fn pools_and_addresses_survive_a_new_driver() {
        let dir = std::env::temp_dir().join(format!("ipam-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let d = FilePools::new(&dir, "10.77.0.0/16").unwrap();
        let p = d
            .request_pool(&PoolRequest {
                pool: "10.66.0.0/24".into(),
                ..PoolRequest::default()
            })
            .unwrap();
        assert_eq!(p.pool, "10.66.0.0/24");
        assert_eq!(
            d.request_address(&gw(&p.pool_id)).unwrap().address,
            "10.66.0.1/24"
        );
        let carved = d.request_pool(&PoolRequest::default()).unwrap();
        assert_eq!(carved.pool, "10.77.0.0/24");
        assert!(
            d.request_pool(&PoolRequest {
                pool: "10.66.0.0/16".into(),
                ..PoolRequest::default()
            })
            .is_err(),
            "overlap"
        );
        // A new driver (a restarted plugin) sees the same state.
        let d = FilePools::new(&dir, "10.77.0.0/16").unwrap();
        let a = AddressRequest {
            pool_id: p.pool_id.clone(),
            ..AddressRequest::default()
        };
        assert_eq!(d.request_address(&a).unwrap().address, "10.66.0.2/24");
        d.release_address(&p.pool_id, "10.66.0.2").unwrap();
        assert_eq!(d.request_address(&a).unwrap().address, "10.66.0.2/24");
        assert_eq!(
            d.request_pool(&PoolRequest::default()).unwrap().pool,
            "10.77.1.0/24"
        );
        d.release_pool(&p.pool_id).unwrap();
        assert!(d.release_pool(&p.pool_id).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
