//! A **test fixture** for plugd's wasm runtime, not an example to copy: an IPAM driver that hands
//! out the requested `--subnet` and its first host address (no state at all), and traps (a panic,
//! i.e. wasm `unreachable`) in `request-pool` when the network is created with
//! `--ipam-opt fault=trap`.

use plugd_plugin_sdk::ipam::{Address, AddressRequest, Pool, PoolRequest};
use plugd_plugin_sdk::{Error, IpamDriver};

/// Stateless: pools are their CIDRs, every address the pool's `.1`.
#[derive(Default)]
pub struct Faulty;

impl IpamDriver for Faulty {
    fn request_pool(&self, r: &PoolRequest) -> Result<Pool, Error> {
        if r.options.iter().any(|(k, v)| k == "fault" && v == "trap") {
            panic!("asked to trap");
        }
        if r.pool.is_empty() {
            return Err(Error::invalid_argument("give --subnet"));
        }
        Ok(Pool {
            pool_id: r.pool.clone(),
            pool: r.pool.clone(),
            data: Vec::new(),
        })
    }

    fn release_pool(&self, _pool_id: &str) -> Result<(), Error> {
        Ok(())
    }

    fn request_address(&self, r: &AddressRequest) -> Result<Address, Error> {
        // `a.b.c.0/len` → `a.b.c.1/len`: enough for the /24s the tests use.
        let (net, len) = r
            .pool_id
            .split_once('/')
            .ok_or_else(|| Error::not_found("no such pool"))?;
        let base = net.rsplit_once('.').map_or(net, |(b, _)| b);
        Ok(Address {
            address: format!("{base}.1/{len}"),
            data: Vec::new(),
        })
    }

    fn release_address(&self, _pool_id: &str, _address: &str) -> Result<(), Error> {
        Ok(())
    }
}

plugd_plugin_sdk::export_ipam_driver!(Faulty);
