//! The connection flags every verb takes (`--addr`, `--token`, `--token-file`, `-o`) and the
//! one HTTP client they share: it sends the key, and turns every answer that is not a success
//! into a [`Failure`] whose exit code says what happened (3 not found, 4 conflict or
//! precondition failed, 1 anything else). It never retries a write.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;

/// Exit codes: scripts branch on these, so they are part of the CLI's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Error = 1,
    Usage = 2,
    NotFound = 3,
    Conflict = 4,
}

/// A verb that did not succeed: its exit code and what to say on stderr.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn error(message: impl Into<String>) -> Failure {
        Failure {
            exit: Exit::Error,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            exit: Exit::Usage,
            message: message.into(),
        }
    }
}

/// How to print answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// For a person: values, tables, one line per event.
    Human,
    /// The API's JSON (one document; `watch`: one event per line).
    Json,
}

#[derive(Debug, Args)]
pub struct Conn {
    /// The writer's (or `setpoint dev`'s) URL.
    #[arg(long, env = "SETPOINT_ADDR", default_value = "http://localhost:8000")]
    pub addr: String,
    /// API key, sent as `Authorization: Bearer`. `setpoint dev` needs none from loopback.
    #[arg(long, env = "SETPOINT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the API key (e.g. `.setpoint/admin.key`); the same variable loadtest reads.
    #[arg(
        long,
        env = "SETPOINT_API_KEY_FILE",
        alias = "api-key-file",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,
    /// Output: `human` or `json`.
    #[arg(short = 'o', long, default_value = "human")]
    pub output: Output,
}

impl Conn {
    pub fn json(&self) -> bool {
        self.output == Output::Json
    }
}

/// The HTTP client of one invocation.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    pub fn new(conn: &Conn) -> Result<Api, Failure> {
        let base = conn.addr.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(Failure::usage(format!(
                "--addr {base:?} must be an http:// URL (this build speaks plain HTTP; put TLS in front with a local proxy)"
            )));
        }
        let token = match (&conn.token, &conn.token_file) {
            (Some(token), _) => Some(token.trim().to_owned()),
            (None, Some(file)) => {
                let text = std::fs::read_to_string(file).map_err(|err| {
                    Failure::usage(format!(
                        "cannot read --token-file {}: {err}",
                        file.display()
                    ))
                })?;
                Some(text.trim().to_owned())
            }
            (None, None) => None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| Failure::error(format!("cannot build the HTTP client: {err}")))?;
        Ok(Api { http, base, token })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` (e.g. `/api/edges`) with `query` (percent-encoded here), with the
    /// key. Requests time out after 30 s; streams use [`Api::stream_request`].
    pub fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<RequestBuilder, Failure> {
        Ok(self
            .stream_request(method, path, query)?
            .timeout(Duration::from_secs(30)))
    }

    /// A request without an overall deadline (a watch lasts as long as it is wanted).
    pub fn stream_request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<RequestBuilder, Failure> {
        let mut url = Url::parse(&format!("{}{path}", self.base))
            .map_err(|err| Failure::usage(format!("{}{path} is not a URL: {err}", self.base)))?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let request = self.http.request(method, url);
        Ok(match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    }

    /// Sends `request`; a status that is not a success becomes a [`Failure`].
    ///
    /// A standby writer answers a write with `307` to the leader's `--advertise` URL. It is
    /// followed once, with the key (as curl's `--location-trusted` does): reqwest's own policy
    /// would drop `Authorization` on the way to another host:port, and the leader would answer
    /// 401.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, Failure> {
        let again = request.try_clone();
        let mut response = request.send().await.map_err(|err| self.unreachable(err))?;
        if matches!(
            response.status(),
            StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
        ) && let Some(again) = again
            && let Some(leader) = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| Url::parse(v).ok())
                .filter(|url| url.scheme() == "http")
        {
            let mut next = again
                .build()
                .map_err(|err| Failure::error(format!("cannot repeat the request: {err}")))?;
            *next.url_mut() = leader;
            response = self
                .http
                .execute(next)
                .await
                .map_err(|err| self.unreachable(err))?;
        }
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(refusal(response).await)
        }
    }

    /// Sends `request` and reads the answer as JSON (with its status, for 201/202).
    pub async fn json(&self, request: RequestBuilder) -> Result<(StatusCode, Value), Failure> {
        let response = self.send(request).await?;
        let status = response.status();
        let value = response
            .json::<Value>()
            .await
            .map_err(|err| Failure::error(format!("the answer is not JSON: {err}")))?;
        Ok((status, value))
    }

    /// GET `path` as JSON.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, Failure> {
        let (_, value) = self.json(self.request(Method::GET, path, query)?).await?;
        Ok(value)
    }

    pub fn unreachable(&self, err: reqwest::Error) -> Failure {
        let what = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        Failure::error(format!("{} ({what}): {err}", self.base))
    }
}

/// `/api/config` + the path, with a leading `/` whether or not the user typed one.
pub fn config_url(path: &str) -> String {
    format!("/api/config/{}", path.trim_start_matches('/'))
}

/// The API's error answer (`{"error": {"code", "message", "details"}}`) as a failure.
pub async fn refusal(response: Response) -> Failure {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let exit = match status {
        StatusCode::NOT_FOUND => Exit::NotFound,
        StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => Exit::Conflict,
        _ => Exit::Error,
    };
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let error = &body["error"];
    let mut message = match (error["code"].as_str(), error["message"].as_str()) {
        (Some(code), Some(text)) => format!("{} {code}: {text}", status.as_u16()),
        _ if text.trim().is_empty() => format!("{status}"),
        _ => format!("{status}: {}", text.trim()),
    };
    // A validation failure lists every violation: show each, as the web form would.
    if let Some(violations) = error["details"]["violations"].as_array() {
        for violation in violations {
            let pointer = violation["pointer"]
                .as_str()
                .or_else(|| violation["path"].as_str())
                .unwrap_or("");
            let text = violation["message"]
                .as_str()
                .map_or_else(|| violation.to_string(), std::borrow::ToOwned::to_owned);
            message.push_str(&format!("\n  {pointer}: {text}"));
        }
    }
    Failure { exit, message }
}
