//! A real registry per test: Debian's `docker-registry` (distribution 2.8) on `127.0.0.1:<free
//! port>`, its storage in the test dir, optionally behind htpasswd basic auth, stopped with the
//! test. Plus a minimal HTTP client that pushes arbitrary blobs and manifests to it, so a test
//! can serve exactly the (hostile) image it needs without any engine in between.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::Env;
use super::cmd::Cmd;
use super::daemons::Proc;

/// A running registry.
pub struct Registry {
    proc: Proc,
    /// `127.0.0.1:PORT`: the host part of image references.
    pub addr: String,
    /// Storage root (`dir()/<label>/data`).
    pub data: PathBuf,
    /// Basic-auth credentials, when the registry requires them.
    pub auth: Option<(String, String)>,
    /// For a registry that speaks only TLS: the CA that signed its certificate (PEM). The raw
    /// client below speaks plain HTTP and cannot be used with it.
    pub ca: Option<PathBuf>,
}

/// A free loopback port (bound, then released, just before the registry binds it).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

impl Env {
    /// Starts an anonymous registry (`r1`, `r2`, ...).
    #[track_caller]
    pub fn registry(&self) -> Registry {
        Registry::launch(self, None)
    }

    /// Starts a registry that requires `user`/`password` (htpasswd, bcrypt; apache2-utils'
    /// `htpasswd`, installed by `.ci/setup`).
    #[track_caller]
    pub fn registry_with_auth(&self, user: &str, password: &str) -> Registry {
        Registry::launch(self, Some((user.to_string(), password.to_string())))
    }

    /// Starts a registry that speaks only TLS, with a certificate for `127.0.0.1` signed by a CA
    /// made for this test (`openssl`, installed by `.ci/setup`); the CA is `Registry::ca`.
    #[track_caller]
    pub fn registry_tls(&self) -> Registry {
        Registry::launch_with(self, None, true)
    }
}

impl Registry {
    #[track_caller]
    fn launch(env: &Env, auth: Option<(String, String)>) -> Registry {
        Registry::launch_with(env, auth, false)
    }

    #[track_caller]
    fn launch_with(env: &Env, auth: Option<(String, String)>, tls: bool) -> Registry {
        let label = env.next("r");
        let dir = env.path(&label);
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("registry dir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            data.display()
        );
        if let Some((user, password)) = &auth {
            let htpasswd = dir.join("htpasswd");
            let out = env.cmd("htpasswd").args(["-Bbn", user, password]).run();
            out.assert_ok();
            std::fs::write(&htpasswd, out.stdout.as_bytes()).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: plugd-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let ca = tls.then(|| {
            let sh = |script: &str| {
                env.cmd("sh")
                    .args(["-ec", script])
                    .current_dir(&dir)
                    .run()
                    .assert_ok();
            };
            sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                  -keyout ca.key -out ca.crt -days 2 -subj '/CN=plugd test CA' \
                  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
                openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                  -keyout server.key -out server.csr -subj '/CN=127.0.0.1' 2>/dev/null
                printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
                openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                  -out server.crt -days 2 -extfile ext.cnf 2>/dev/null");
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.join("server.crt").display(),
                dir.join("server.key").display()
            ));
            dir.join("ca.crt")
        });
        let config_path = dir.join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let mut proc = env.spawn(
            &label,
            Cmd::new("/usr/bin/docker-registry")
                .arg("serve")
                .arg(&config_path),
        );
        let probe = addr.clone();
        proc.wait_ready(&format!("registry {addr}"), move || {
            TcpStream::connect(&probe).is_ok()
        });
        Registry {
            proc,
            addr,
            data,
            auth,
            ca,
        }
    }

    /// The registry process (to stop it, or read its log).
    pub fn proc(&mut self) -> &mut Proc {
        &mut self.proc
    }

    /// `<addr>/<repo>:<tag>`.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.addr)
    }

    /// One HTTP/1.1 request (`Connection: close`), with basic auth when the registry has it.
    /// Returns status, headers (lower-cased names) and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let mut s = TcpStream::connect(&self.addr).expect("connect to registry");
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some((u, p)) = &self.auth {
            head.push_str(&format!(
                "Authorization: Basic {}\r\n",
                base64(format!("{u}:{p}").as_bytes())
            ));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).expect("write request");
        s.write_all(body).expect("write body");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read response");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("response head");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
        {
            body = dechunk(&body);
        }
        (status, headers, body)
    }

    /// Uploads `bytes` as a blob of `repo` (monolithic upload) under the digest given, which
    /// need not be the right one: the registry checks it, and refuses a wrong one.
    #[track_caller]
    pub fn put_blob_as(&self, repo: &str, bytes: &[u8], digest: &str) -> u16 {
        let (status, headers, body) =
            self.request("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        assert_eq!(
            status,
            202,
            "starting a blob upload: {}",
            String::from_utf8_lossy(&body)
        );
        let location = headers
            .iter()
            .find(|(k, _)| k == "location")
            .map(|(_, v)| v.clone())
            .expect("upload location");
        let location = location
            .strip_prefix(&format!("http://{}", self.addr))
            .unwrap_or(&location)
            .to_string();
        let sep = if location.contains('?') { '&' } else { '?' };
        let (status, _, _) = self.request(
            "PUT",
            &format!("{location}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            bytes,
        );
        status
    }

    /// Uploads a blob under its own digest; returns `(digest, size)`.
    #[track_caller]
    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> (String, u64) {
        let digest = sha256(bytes);
        let status = self.put_blob_as(repo, bytes, &digest);
        assert_eq!(status, 201, "blob upload of {digest}");
        (digest, bytes.len() as u64)
    }

    /// Uploads a manifest under `tag`; returns its digest.
    #[track_caller]
    pub fn put_manifest(&self, repo: &str, tag: &str, media_type: &str, bytes: &[u8]) -> String {
        let (status, _, body) = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", media_type)],
            bytes,
        );
        assert_eq!(
            status,
            201,
            "manifest upload: {}",
            String::from_utf8_lossy(&body)
        );
        sha256(bytes)
    }

    /// The manifest stored under `reference` (tag or digest), as the registry serves it to a
    /// client accepting docker v2 and OCI manifests.
    #[track_caller]
    pub fn get_manifest(&self, repo: &str, reference: &str) -> (String, Vec<u8>) {
        let accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json";
        let (status, headers, body) = self.request(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", accept)],
            b"",
        );
        assert_eq!(status, 200, "GET manifest {repo}:{reference}");
        let ct = headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        (ct, body)
    }

    /// A blob's bytes.
    #[track_caller]
    pub fn get_blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let (status, headers, body) =
            self.request("GET", &format!("/v2/{repo}/blobs/{digest}"), &[], b"");
        if status == 307 {
            panic!("registry redirected a blob GET: {headers:?}");
        }
        assert_eq!(status, 200, "GET blob {digest}");
        body
    }
}

/// `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&body[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&body[start..(start + size).min(body.len())]);
        body = &body[(start + size + 2).min(body.len())..];
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(input.as_bytes()), want);
        }
    }
}
