//! A **test fixture** for plugd's wasm runtime, not an example to copy: an authorization plugin
//! whose behaviour in the request phase is chosen by the API call's URI:
//!
//! | URI contains   | behaviour                                                       |
//! |----------------|-----------------------------------------------------------------|
//! | `fault-trap`   | a panic, i.e. a wasm trap (`unreachable`)                       |
//! | `fault-spin`   | an infinite loop (only epoch interruption can stop it)          |
//! | `fault-error`  | an `internal` error result                                      |
//! | anything else  | allow                                                           |
//!
//! So `docker volume inspect fault-trap` (`GET /v1.41/volumes/fault-trap`) makes it trap, and
//! `docker ps` is still allowed. In the response phase it denies a call whose URI contains
//! `res-deny`, quoting the answer's status and body (to prove both reach the guest decoded), and
//! allows the rest. `res-deny` may be in the request body instead (`docker volume create
//! res-deny` posts the name), which proves the request body reaches the guest decoded too.

use plugd_plugin_sdk::{ApiRequest, ApiResponse, Authorizer, Decision, Error};

#[derive(Default)]
struct Faulty;

impl Authorizer for Faulty {
    fn authorize_request(&self, req: &ApiRequest) -> Result<Decision, Error> {
        if req.uri.contains("fault-trap") {
            panic!("fault authz guest: trap requested");
        }
        if req.uri.contains("fault-spin") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if req.uri.contains("fault-error") {
            return Err(Error::internal("fault authz guest: error requested"));
        }
        Ok(Decision::allow())
    }

    fn authorize_response(&self, req: &ApiRequest, res: &ApiResponse) -> Result<Decision, Error> {
        let body = String::from_utf8_lossy(&req.body);
        if req.uri.contains("res-deny") || body.contains("res-deny") {
            return Ok(Decision::deny(format!(
                "response {} to {} {} withheld: {}",
                res.status,
                req.method,
                req.uri,
                String::from_utf8_lossy(&res.body).trim()
            )));
        }
        Ok(Decision::allow())
    }
}

plugd_plugin_sdk::export_authorizer!(Faulty);
