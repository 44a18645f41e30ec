//! The caller's side of the supervisor's control API: find the running supervisor through
//! `supervisor.json`, send authenticated JSON requests, and turn its error bodies back into
//! [`CoreError`]s. Also the wire types both sides share.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Paths, StartRelease};
use crate::domain::Environment;
use crate::error::{CoreError, Result};
use crate::secret::Secret;

/// Time allowed for control calls that do no waiting of their own.
pub(crate) const QUICK_CALL: Duration = Duration::from_secs(10);

/// How long a supervisor may take to answer the liveness ping.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// `supervisor.json`: how to reach the project's supervisor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SupervisorFile {
    pub pid: u32,
    pub port: u16,
    pub token: String,
    pub started_at: String,
}

impl SupervisorFile {
    pub(crate) fn load(paths: &Paths) -> Option<Self> {
        let text = std::fs::read_to_string(paths.supervisor_file()).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Makes control connections; holds one HTTP client (and its connection pool).
#[derive(Debug, Clone)]
pub(crate) struct ControlClient {
    http: reqwest::Client,
}

impl ControlClient {
    pub(crate) fn new() -> Self {
        Self { http: loopback_http_client() }
    }

    /// The project's supervisor, when its pid is alive and it answers with the right token.
    pub(crate) async fn find(&self, paths: &Paths) -> Option<Control> {
        let file = SupervisorFile::load(paths)?;
        if !crate::process::pid_alive(file.pid) {
            return None;
        }
        let ctl = Control {
            http: self.http.clone(),
            base: format!("http://127.0.0.1:{}", file.port),
            token: Secret::new(file.token),
            pid: file.pid,
        };
        let ok = ctl.http.get(format!("{}/v1/ping", ctl.base)).bearer_auth(ctl.token.expose()).timeout(PING_TIMEOUT).send().await;
        match ok {
            Ok(r) if r.status().is_success() => Some(ctl),
            Ok(r) => {
                tracing::warn!(status = %r.status(), "the supervisor in supervisor.json refused the ping");
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "the supervisor in supervisor.json does not answer");
                None
            }
        }
    }
}

/// An HTTP client for 127.0.0.1 that ignores proxy variables (a corporate HTTP proxy must
/// never see loopback traffic or the control token).
pub(crate) fn loopback_http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "falling back to the default HTTP client");
        reqwest::Client::new()
    })
}

/// A connection to one running supervisor.
#[derive(Debug, Clone)]
pub(crate) struct Control {
    http: reqwest::Client,
    base: String,
    token: Secret,
    pub pid: u32,
}

impl Control {
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let req = self.http.get(format!("{}{path}", self.base)).timeout(QUICK_CALL);
        self.send(path, req).await
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B, timeout: Duration) -> Result<T> {
        let req = self.http.post(format!("{}{path}", self.base)).json(body).timeout(timeout);
        self.send(path, req).await
    }

    async fn send<T: DeserializeOwned>(&self, path: &str, req: reqwest::RequestBuilder) -> Result<T> {
        let unreachable = |e: reqwest::Error| CoreError::Local {
            message: format!("the local supervisor (pid {}) did not answer {path}: {e}", self.pid),
            hint: "see .oc-deploy/local/supervisor.log; `oc-deploy local down` resets the local platform".into(),
        };
        let resp = req.bearer_auth(self.token.expose()).send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| CoreError::Local {
                message: format!("the local supervisor answered {path} with an unexpected body: {e}"),
                hint: "the supervisor may be an older oc-deploy: run `oc-deploy local down` and retry".into(),
            });
        }
        match serde_json::from_slice::<ApiError>(&bytes) {
            Ok(err) => Err(err.into_core()),
            Err(_) => Err(CoreError::Local {
                message: format!("the local supervisor refused {path} ({status}): {}", String::from_utf8_lossy(&bytes).trim()),
                hint: "the supervisor may be an older oc-deploy: run `oc-deploy local down` and retry".into(),
            }),
        }
    }
}

/// An error as it crosses the control API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ApiError {
    pub code: String,
    pub message: String,
    pub hint: String,
    /// The field (invalid input), the thing (not found) or the program (missing program).
    #[serde(default)]
    pub subject: String,
}

impl ApiError {
    pub(crate) fn from_core(err: &CoreError) -> Self {
        let (message, subject) = match err {
            CoreError::InvalidInput { field, message, .. } => (message.clone(), field.clone()),
            CoreError::NotFound { what, message, .. } => (message.clone(), what.clone()),
            CoreError::ProgramMissing { program, .. } => (err.to_string(), program.clone()),
            CoreError::Local { message, .. } => (message.clone(), String::new()),
            other => (other.to_string(), String::new()),
        };
        Self { code: err.code().to_owned(), message, hint: err.hint(), subject }
    }

    fn into_core(self) -> CoreError {
        match self.code.as_str() {
            "invalid_input" => CoreError::InvalidInput { field: self.subject, message: self.message, hint: self.hint },
            "not_found" => CoreError::NotFound { what: self.subject, message: self.message, hint: self.hint },
            "program_missing" => CoreError::ProgramMissing { program: self.subject, hint: self.hint },
            _ => CoreError::Local { message: self.message, hint: self.hint },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StartRequest {
    pub env: Environment,
    pub version: String,
    pub app_dir: PathBuf,
    pub start: Vec<String>,
    pub env_vars: BTreeMap<String, String>,
    pub health_path: String,
    pub ready_timeout_ms: u64,
    pub port: u16,
}

impl From<&StartRelease> for StartRequest {
    fn from(r: &StartRelease) -> Self {
        Self {
            env: r.env,
            version: r.version.clone(),
            app_dir: r.app_dir.clone(),
            start: r.start.clone(),
            env_vars: r.env_vars.clone(),
            health_path: r.health_path.clone(),
            ready_timeout_ms: u64::try_from(r.ready_timeout.as_millis()).unwrap_or(u64::MAX),
            port: r.port,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SwitchRequest {
    pub env: Environment,
    pub version: String,
    pub canary_percent: Option<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StopRequest {
    pub env: Environment,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PruneRequest {
    pub env: Environment,
    pub keep: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PruneResponse {
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShutdownRequest {
    /// False leaves the releases running for the next supervisor to adopt.
    pub stop_releases: bool,
}
