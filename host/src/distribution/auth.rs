//! `X-Registry-Auth`: the credentials a client sends with pull, push and upgrade.
//!
//! The header is base64 (URL alphabet, as docker's `EncodeAuthConfig` writes it; the standard
//! alphabet and missing padding, which older clients send, are accepted too) of a JSON
//! `AuthConfig`. Keys are matched case-insensitively, as Go's decoder matches them. plugd never
//! stores credentials: they live for the one request.

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;

/// Credentials for one registry operation.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Basic-auth user.
    pub username: String,
    /// Basic-auth password.
    pub password: String,
    /// A bearer token for the registry itself (`registrytoken`).
    pub registry_token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &(!self.password.is_empty()).then_some("<set>"))
            .field(
                "registry_token",
                &(!self.registry_token.is_empty()).then_some("<set>"),
            )
            .finish()
    }
}

impl Credentials {
    /// Reads the header; `None` or an empty header is anonymous.
    pub fn from_header(header: Option<&[u8]>) -> Result<Credentials, String> {
        let Some(raw) = header.filter(|h| !h.iter().all(u8::is_ascii_whitespace)) else {
            return Ok(Credentials::default());
        };
        let raw: Vec<u8> = raw
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let trimmed: Vec<u8> = raw.iter().copied().filter(|&b| b != b'=').collect();
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&trimmed)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&trimmed))
            .map_err(|e| format!("X-Registry-Auth is not base64: {e}"))?;
        let value: serde_json::Value = serde_json::from_slice(&json)
            .map_err(|e| format!("X-Registry-Auth is not a JSON auth config: {e}"))?;
        let obj = value
            .as_object()
            .ok_or("X-Registry-Auth is not a JSON object")?;
        let field = |name: &str| -> Result<String, String> {
            // Go's decoder: an exact match wins, else a case-insensitive one.
            let v = obj.get(name).or_else(|| {
                obj.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            });
            match v {
                None | Some(serde_json::Value::Null) => Ok(String::new()),
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!("X-Registry-Auth: {name} is not a string")),
            }
        };
        let mut c = Credentials {
            username: field("username")?,
            password: field("password")?,
            registry_token: field("registrytoken")?,
        };
        let auth = field("auth")?;
        if c.username.is_empty() && !auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| format!("X-Registry-Auth: auth is not base64: {e}"))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| "X-Registry-Auth: auth is not UTF-8".to_string())?;
            let (u, p) = decoded
                .split_once(':')
                .ok_or("X-Registry-Auth: auth is not user:password")?;
            c.username = u.to_string();
            c.password = p.to_string();
        }
        if !field("identitytoken")?.is_empty()
            && c.registry_token.is_empty()
            && c.password.is_empty()
        {
            return Err("X-Registry-Auth: identity tokens (OAuth refresh tokens) are not supported by plugd; log in with a username and password".into());
        }
        Ok(c)
    }

    /// What the registry client sends.
    pub fn registry_auth(&self) -> RegistryAuth {
        if !self.registry_token.is_empty() {
            RegistryAuth::Bearer(self.registry_token.clone())
        } else if !self.username.is_empty() {
            RegistryAuth::Basic(self.username.clone(), self.password.clone())
        } else {
            RegistryAuth::Anonymous
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64url(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::URL_SAFE
            .encode(s)
            .into_bytes()
    }

    #[test]
    fn reads_what_the_docker_cli_sends() {
        let h = b64url(r#"{"username":"u","password":"p?>","serveraddress":"127.0.0.1:5000"}"#);
        let c = Credentials::from_header(Some(&h)).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p?>"));
        assert!(matches!(c.registry_auth(), RegistryAuth::Basic(u, p) if u == "u" && p == "p?>"));
    }

    #[test]
    fn auth_field_keys_any_case_and_standard_alphabet() {
        let json = r#"{"Auth":"dXNlcjpwYXNz"}"#;
        let h = base64::engine::general_purpose::STANDARD_NO_PAD.encode(json);
        let c = Credentials::from_header(Some(h.as_bytes())).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("user", "pass"));
    }

    #[test]
    fn empty_is_anonymous_and_junk_is_named() {
        assert_eq!(
            Credentials::from_header(None).unwrap(),
            Credentials::default()
        );
        assert_eq!(
            Credentials::from_header(Some(b"  ")).unwrap(),
            Credentials::default()
        );
        assert!(
            Credentials::from_header(Some(b"!!!"))
                .unwrap_err()
                .contains("not base64")
        );
        let h = b64url(r#"{"username":1}"#);
        assert!(
            Credentials::from_header(Some(&h))
                .unwrap_err()
                .contains("username is not a string")
        );
        let h = b64url(r#"{"identitytoken":"t"}"#);
        assert!(
            Credentials::from_header(Some(&h))
                .unwrap_err()
                .contains("identity tokens")
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
            registry_token: String::new(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
