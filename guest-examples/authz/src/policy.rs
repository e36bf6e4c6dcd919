//! The example's policy: deny every Engine API call whose request URI contains one of the
//! substrings in `$DENY` (comma-separated; `plugd set <plugin> DENY=/volumes,/secrets`), allow
//! everything else. An empty `DENY` allows all.
//!
//! A substring match on the raw URI is a demonstration, not a security boundary: `/volumes` also
//! matches `/containers/json?filters=...volumes...`, and a real policy would parse the path.

use plugd_plugin_sdk::{ApiRequest, Authorizer, Decision, Error};

/// The substrings whose calls are denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenyPaths {
    deny: Vec<String>,
}

impl DenyPaths {
    /// The policy `$DENY` describes (read once per instance: plugd starts a fresh one when a
    /// setting changes).
    pub fn from_env() -> DenyPaths {
        DenyPaths::new(&std::env::var("DENY").unwrap_or_default())
    }

    /// The policy for a comma-separated list; blank entries are dropped.
    pub fn new(list: &str) -> DenyPaths {
        DenyPaths {
            deny: list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

impl Authorizer for DenyPaths {
    fn authorize_request(&self, req: &ApiRequest) -> Result<Decision, Error> {
        Ok(
            match self.deny.iter().find(|s| req.uri.contains(s.as_str())) {
                Some(s) => Decision::deny(format!(
                    "{} {} is denied: it matches {s:?} (DENY)",
                    req.method, req.uri
                )),
                None => Decision::allow(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(p: &DenyPaths, uri: &str) -> Decision {
        let req = ApiRequest {
            method: "GET".into(),
            uri: uri.into(),
            ..Default::default()
        };
        p.authorize_request(&req).unwrap()
    }

    #[test]
    fn denies_only_matching_uris() {
        let p = DenyPaths::new(" /volumes, ,/secrets");
        assert_eq!(
            decide(&p, "/v1.41/volumes"),
            Decision::deny("GET /v1.41/volumes is denied: it matches \"/volumes\" (DENY)")
        );
        assert!(!decide(&p, "/v1.41/secrets/x").allow);
        assert!(decide(&p, "/v1.41/containers/json").allow);
        assert!(decide(&DenyPaths::new(""), "/v1.41/volumes").allow);
    }
}
