//! Render through its REST API (the Render CLI has no rollback and no env-var commands): a deploy
//! is `POST /services/{id}/deploys` with the commit, polled until it is live; rollback is
//! `POST /services/{id}/rollback` followed by turning auto-deploy off, so the next push does not
//! undo it; env vars are set one by one and listed by name only (the API returns values: they
//! are dropped while parsing). The key comes from `RENDER_API_KEY`, the base URL from
//! `RENDER_HOST` (the Render CLI's override), both read once at construction.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::cloud::{DEFAULT_PLATFORM_TIMEOUT, failure_hint, required};
use crate::config::{Config, Platform};
use crate::detect::{CheckStatus, ChecklistItem};
use crate::domain::{Environment, Strategy};
use crate::error::{CoreError, Result};
use crate::process::Runner;
use crate::provider::{Capabilities, DeployTarget, EnvListing, EnvVarName, Provider, StepOutcome, VersionInfo};
use crate::secret::{Redactor, Secret};

/// The API base when `RENDER_HOST` is not set.
pub const DEFAULT_API_BASE: &str = "https://api.render.com/v1";
/// The API key variable (a Render API key, `rnd_…`).
pub const API_KEY_VAR: &str = "RENDER_API_KEY";
/// Overrides the API base (the Render CLI reads the same variable).
pub const HOST_VAR: &str = "RENDER_HOST";

const DEFAULT_POLL: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a 429 is retried before the rate limit becomes the step's error.
const RATE_LIMIT_RETRIES: u32 = 4;
/// The longest single wait for a rate limit to reset.
const RATE_LIMIT_MAX_WAIT: Duration = Duration::from_secs(60);
/// Pages of env vars read at most (100 each).
const MAX_ENV_PAGES: usize = 50;
const KEY_HINT: &str = "export RENDER_API_KEY for the server (Render dashboard → Account settings → API keys)";
const DEPLOY_STATUSES_DONE: &[&str] = &["live", "deactivated", "build_failed", "update_failed", "pre_deploy_failed", "canceled"];

/// The Render provider.
#[derive(Debug)]
pub struct Render {
    cfg: Config,
    root: PathBuf,
    base: String,
    key: Option<Secret>,
    http: reqwest::Client,
    redactor: Redactor,
    poll: Duration,
    timeout: Duration,
}

/// One HTTP answer, kept raw until the caller knows what it means.
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug, Deserialize)]
struct Deploy {
    id: String,
    status: String,
    #[serde(default)]
    commit: Option<DeployCommit>,
    #[serde(default, rename = "createdAt")]
    created_at: Option<String>,
    #[serde(default)]
    trigger: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeployCommit {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeployItem {
    deploy: Deploy,
}

/// An env var as listed: only the key is read; the value in the same object is skipped by serde.
#[derive(Debug, Deserialize)]
struct EnvVarItem {
    #[serde(rename = "envVar")]
    env_var: EnvVarKey,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EnvVarKey {
    key: String,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Service {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "autoDeploy")]
    auto_deploy: Option<String>,
    #[serde(default, rename = "serviceDetails")]
    details: Option<ServiceDetails>,
}

#[derive(Debug, Deserialize)]
struct ServiceDetails {
    #[serde(default)]
    url: Option<String>,
}

impl Render {
    /// Reads `RENDER_HOST` and `RENDER_API_KEY` from the server's environment.
    pub fn new(cfg: &Config, root: &Path, runner: &Runner) -> Result<Self> {
        let base = std::env::var(HOST_VAR).ok().filter(|b| !b.trim().is_empty()).unwrap_or_else(|| DEFAULT_API_BASE.to_owned());
        let key = std::env::var(API_KEY_VAR).ok().filter(|k| !k.trim().is_empty()).map(|k| Secret::new(k.trim()));
        Self::with_api(cfg, root, runner, &base, key)
    }

    /// A provider talking to `base` with `key` (tests point it at a fake API this way, without
    /// touching the process environment).
    pub fn with_api(cfg: &Config, root: &Path, runner: &Runner, base: &str, key: Option<Secret>) -> Result<Self> {
        let base = base.trim().trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base).map_err(|e| {
            CoreError::invalid(
                HOST_VAR,
                format!("`{base}` is not a URL ({e})"),
                format!("unset {HOST_VAR} or set it to {DEFAULT_API_BASE}"),
            )
        })?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]" | "::1"));
        let redactor = runner.redactor().clone();
        if let Some(k) = &key {
            redactor.add_secret(k);
        }
        let builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("oc-deploy/", env!("CARGO_PKG_VERSION")));
        let builder = if loopback { builder.no_proxy() } else { builder };
        let http = builder.build().map_err(|e| CoreError::Platform {
            platform: Platform::Render.as_str().into(),
            message: format!("could not build the HTTP client: {e}"),
            hint: "check the HTTP_PROXY / HTTPS_PROXY variables".into(),
            retryable: false,
        })?;
        Ok(Self {
            cfg: cfg.clone(),
            root: root.to_path_buf(),
            base,
            key,
            http,
            redactor,
            poll: DEFAULT_POLL,
            timeout: Duration::from_secs(cfg.platform_timeout_seconds.unwrap_or(DEFAULT_PLATFORM_TIMEOUT)),
        })
    }

    /// How often a deploy's status is polled (default 5 s; tests use milliseconds).
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// The environment's service id, checked (it goes into URL paths).
    fn service_id(&self, env: Environment) -> Result<String> {
        let sid = required(self.cfg.env(env)?.service_id.as_ref(), env, "service_id", "srv-d0abc123def456ghi789")?.trim();
        check_id(sid, &format!("environments.{env}.service_id"), "the service id from the dashboard URL, e.g. srv-d0abc123def456ghi789")?;
        Ok(sid.to_owned())
    }

    fn platform_error(&self, message: impl Into<String>, hint: impl Into<String>, retryable: bool) -> CoreError {
        CoreError::Platform {
            platform: Platform::Render.as_str().into(),
            message: self.redactor.redact(&message.into()),
            hint: hint.into(),
            retryable,
        }
    }

    /// Sends one request; retries a 429 after the time Render asks for (bounded). Any other
    /// status comes back as it is.
    async fn send(&self, method: Method, path: &str, body: Option<&Value>, cancel: &CancellationToken) -> Result<Reply> {
        let Some(key) = &self.key else {
            return Err(self.platform_error(format!("{API_KEY_VAR} is not set: the Render API needs an API key"), KEY_HINT, false));
        };
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            let mut req = self.http.request(method.clone(), &url).bearer_auth(key.expose()).header("Accept", "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            tracing::debug!(%method, path, "render api");
            let res = tokio::select! {
                r = req.send() => r,
                () = cancel.cancelled() => return Err(CoreError::Cancelled),
            };
            let res = res.map_err(|e| {
                self.platform_error(
                    format!("cannot reach the Render API at {}: {e}", self.base),
                    format!("check the network (and {HOST_VAR} if it is set); retry in a minute"),
                    true,
                )
            })?;
            let status = res.status().as_u16();
            let wait = (status == 429).then(|| rate_limit_wait(res.headers()));
            let text = tokio::select! {
                t = res.text() => t.unwrap_or_default(),
                () = cancel.cancelled() => return Err(CoreError::Cancelled),
            };
            match wait {
                Some(wait) if attempt < RATE_LIMIT_RETRIES => {
                    attempt += 1;
                    tracing::info!(path, attempt, wait_ms = wait.as_millis() as u64, "render rate limit: waiting");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = cancel.cancelled() => return Err(CoreError::Cancelled),
                    }
                }
                _ => return Ok(Reply { status, body: text }),
            }
        }
    }

    /// Sends a request about the environment's service; any non-2xx is an error that says what
    /// it means for this service.
    async fn call(
        &self,
        env: Environment,
        sid: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        cancel: &CancellationToken,
    ) -> Result<Reply> {
        let reply = self.send(method.clone(), path, body, cancel).await?;
        if reply.ok() { Ok(reply) } else { Err(self.api_error(env, sid, &method, path, &reply)) }
    }

    /// What a failed answer means, in the words of the Render CLI where it has some.
    fn api_error(&self, env: Environment, sid: &str, method: &Method, path: &str, reply: &Reply) -> CoreError {
        let said = serde_json::from_str::<Value>(&reply.body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| reply.body.chars().take(300).collect());
        let said = said.trim();
        match reply.status {
            401 => self.platform_error(format!("unauthorized: Render refused the API key ({method} {path})"), KEY_HINT, false),
            403 => self.platform_error(
                format!("forbidden: the API key may not use service {sid} ({method} {path})"),
                format!("use an API key of the workspace that owns {sid} in {API_KEY_VAR}"),
                false,
            ),
            404 => CoreError::NotFound {
                what: format!("environments.{env}.service_id"),
                message: format!("Render has no service `{sid}` for this API key ({method} {path}: {})", self.redactor.redact(said)),
                hint: format!(
                    "copy the service id (srv-…) from the service's page in the Render dashboard into environments.{env}.service_id, \
                     and check that {API_KEY_VAR} belongs to the same workspace"
                ),
            },
            429 => self.platform_error(
                format!("too many requests: Render's rate limit held after {RATE_LIMIT_RETRIES} retries ({method} {path})"),
                "wait a minute and retry: Render limits API calls per key",
                true,
            ),
            code => self.platform_error(
                format!("received response code {code} ({method} {path}): {said}"),
                failure_hint(Platform::Render, said),
                code >= 500,
            ),
        }
    }

    /// Parses a JSON answer. The error never quotes the body: it may hold env-var values.
    fn parse<T: serde::de::DeserializeOwned>(&self, what: &str, reply: &Reply) -> Result<T> {
        serde_json::from_str(&reply.body).map_err(|e| {
            self.platform_error(
                format!(
                    "Render answered {what} with JSON oc-deploy cannot read ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
                format!("check that {HOST_VAR} points at the Render API v1 ({DEFAULT_API_BASE})"),
                false,
            )
        })
    }

    async fn deploys(&self, env: Environment, sid: &str, cancel: &CancellationToken) -> Result<Vec<Deploy>> {
        let reply = self.call(env, sid, Method::GET, &format!("/services/{sid}/deploys?limit=20"), None, cancel).await?;
        let items: Vec<DeployItem> = self.parse("the deploy list", &reply)?;
        Ok(items.into_iter().map(|i| i.deploy).collect())
    }

    async fn get_deploy(&self, env: Environment, sid: &str, id: &str, cancel: &CancellationToken) -> Result<Deploy> {
        let reply = self.call(env, sid, Method::GET, &format!("/services/{sid}/deploys/{id}"), None, cancel).await?;
        self.parse("a deploy", &reply)
    }

    /// Polls a deploy until it reaches a final status, within the platform timeout.
    async fn wait_until_done(
        &self,
        env: Environment,
        sid: &str,
        mut deploy: Deploy,
        started: Instant,
        cancel: &CancellationToken,
    ) -> Result<Deploy> {
        let deadline = started + self.timeout;
        // Quick first looks (a redeploy of a warm image is fast), then every `poll`.
        let mut wait = self.poll.min(Duration::from_millis(500));
        loop {
            if DEPLOY_STATUSES_DONE.contains(&deploy.status.as_str()) {
                return Ok(deploy);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CoreError::Timeout {
                    program: format!("Render deploy {} of {sid} (still {})", deploy.id, deploy.status),
                    seconds: self.timeout.as_secs(),
                });
            }
            tokio::select! {
                () = tokio::time::sleep(wait.min(deadline - now)) => {}
                () = cancel.cancelled() => return Err(CoreError::Cancelled),
            }
            wait = (wait * 3 / 2).min(self.poll);
            deploy = self.get_deploy(env, sid, &deploy.id, cancel).await?;
        }
    }

    /// `Ok` when the deploy is live; otherwise the error its final status stands for.
    fn require_live(&self, sid: &str, d: &Deploy) -> Result<()> {
        let id = &d.id;
        let (what, hint) = match d.status.as_str() {
            "live" => return Ok(()),
            "pre_deploy_failed" => {
                let cmds = self.pre_deploy_commands();
                let cmd = if cmds.is_empty() { String::new() } else { format!(" (`{}`)", cmds.join("`, `")) };
                (
                    format!(
                        "the pre-deploy command{cmd}, the migration step, failed; the new code never took traffic and the previous deploy keeps serving"
                    ),
                    "read the deploy's log on the service's Events page in the Render dashboard, fix the migration and deploy again",
                )
            }
            "build_failed" => (
                "the build failed; the previous deploy keeps serving".to_owned(),
                "read the build log on the service's Events page in the Render dashboard",
            ),
            "update_failed" => (
                "the new instance did not start or failed its health check; the previous deploy keeps serving".to_owned(),
                "read the deploy's log on the service's Events page; check the start command, PORT and healthCheckPath",
            ),
            "canceled" => ("the deploy was canceled (on the dashboard, or by a newer deploy)".to_owned(), "deploy again when ready"),
            "deactivated" => (
                "a newer deploy replaced it before oc-deploy saw it live".to_owned(),
                "someone else deployed at the same time; check the service's Events page, then deploy again",
            ),
            other => (format!("it ended in an unexpected status `{other}`"), "check the service's Events page in the Render dashboard"),
        };
        Err(self.platform_error(format!("deploy {id} of {sid} ended {}: {what}", d.status), hint, false))
    }

    /// The `preDeployCommand`s of render.yaml (app directory first, then the project root).
    fn pre_deploy_commands(&self) -> Vec<String> {
        self.render_yaml().map(|(_, text)| pre_deploy_commands(&text)).unwrap_or_default()
    }

    fn render_yaml(&self) -> Option<(PathBuf, String)> {
        let app = self.cfg.app_dir(&self.root);
        [app.join("render.yaml"), self.root.join("render.yaml")]
            .into_iter()
            .find_map(|p| std::fs::read_to_string(&p).ok().map(|text| (p, text)))
    }

    /// After a 202 without a body: the newest deploy of the commit that is still running (or
    /// the newest deploy of all, when it is that commit).
    async fn find_queued(&self, env: Environment, sid: &str, sha: &str, started: Instant, cancel: &CancellationToken) -> Result<Deploy> {
        loop {
            let list = self.deploys(env, sid, cancel).await?;
            // The newest deploy of the commit is ours when it is the newest of all or still running.
            let ours = list.iter().position(|d| commit_of(d) == Some(sha) && !DEPLOY_STATUSES_DONE.contains(&d.status.as_str()));
            let ours = ours.or_else(|| list.first().filter(|d| commit_of(d) == Some(sha)).map(|_| 0));
            if let Some(i) = ours {
                return Ok(list.into_iter().nth(i).expect("index from the same list"));
            }
            if started.elapsed() >= self.timeout {
                return Err(CoreError::Timeout {
                    program: format!("Render deploy of {sha} on {sid} (queued, not listed yet)"),
                    seconds: self.timeout.as_secs(),
                });
            }
            tokio::select! {
                () = tokio::time::sleep(self.poll) => {}
                () = cancel.cancelled() => return Err(CoreError::Cancelled),
            }
        }
    }

    fn item(name: String, result: std::result::Result<String, CoreError>) -> ChecklistItem {
        match result {
            Ok(detail) => ChecklistItem { name, status: CheckStatus::Ok, detail, hint: None },
            Err(e) => ChecklistItem { name, status: CheckStatus::Fail, detail: e.to_string(), hint: Some(e.hint()) },
        }
    }

    async fn check_service(&self, env: Environment, cancel: &CancellationToken) -> Result<String> {
        let sid = self.service_id(env)?;
        let reply = self.call(env, &sid, Method::GET, &format!("/services/{sid}"), None, cancel).await?;
        let svc: Service = self.parse("the service", &reply)?;
        let url = svc.details.and_then(|d| d.url).map(|u| format!(", {u}")).unwrap_or_default();
        Ok(format!("{sid} is `{}`, auto-deploy {}{url}", svc.name.as_deref().unwrap_or("?"), svc.auto_deploy.as_deref().unwrap_or("?")))
    }
}

impl Provider for Render {
    fn platform(&self) -> Platform {
        Platform::Render
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            uploads_working_tree: false,
            strategies: vec![Strategy::Rolling],
            rollback: Some("Render API rollback to an earlier deploy, then auto-deploy off so the next push does not undo it".into()),
            secrets: Some("Render API env vars (names only are read back; a change takes effect with the next deploy)".into()),
            migrations: Some("preDeployCommand in render.yaml, run by Render before the new deploy takes traffic".into()),
            dry_run: false,
            frontend: false,
        }
    }

    async fn current_version(&self, env: Environment) -> Result<Option<String>> {
        let sid = self.service_id(env)?;
        let list = self.deploys(env, &sid, &CancellationToken::new()).await?;
        Ok(list.into_iter().find(|d| d.status == "live").map(|d| d.id))
    }

    async fn versions(&self, env: Environment, cancel: &CancellationToken) -> Result<Vec<VersionInfo>> {
        let sid = self.service_id(env)?;
        let list = self.deploys(env, &sid, cancel).await?;
        let live = list.iter().find(|d| d.status == "live").map(|d| d.id.clone());
        Ok(list
            .into_iter()
            .map(|d| {
                let message = d.commit.as_ref().and_then(|c| c.message.clone());
                let description = match (message, d.trigger.as_deref()) {
                    (Some(m), Some(t)) => Some(format!("{m} ({t})")),
                    (Some(m), None) => Some(m),
                    (None, t) => t.map(str::to_owned),
                };
                VersionInfo {
                    current: live.as_deref() == Some(d.id.as_str()),
                    commit: d.commit.and_then(|c| c.id),
                    created_at: d.created_at,
                    status: Some(d.status),
                    description,
                    id: d.id,
                }
            })
            .collect())
    }

    async fn migrate(&self, _target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        const WHAT: &str = "Render runs preDeployCommand from render.yaml before the new deploy takes traffic";
        let detail = match self.render_yaml() {
            None => format!(
                "{WHAT} (there is no render.yaml here: set a Pre-Deploy Command in the service's settings if the app needs migrations)"
            ),
            Some((_, text)) => {
                let cmds = pre_deploy_commands(&text);
                if cmds.is_empty() {
                    format!("{WHAT} (render.yaml sets none: nothing to migrate)")
                } else {
                    format!("{WHAT}: `{}`", cmds.join("`, `"))
                }
            }
        };
        Ok(StepOutcome::skipped(detail))
    }

    async fn deploy(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        let env = target.env;
        let sid = self.service_id(env)?;
        let sha = target.commit.as_str();
        let started = Instant::now();
        let body = json!({ "clearCache": "do_not_clear", "commitId": sha });
        let path = format!("/services/{sid}/deploys");
        let reply = self.call(env, &sid, Method::POST, &path, Some(&body), cancel).await?;
        let created = if reply.status == 202 || reply.body.trim().is_empty() {
            self.find_queued(env, &sid, sha, started, cancel).await?
        } else {
            self.parse::<Deploy>("the new deploy", &reply)?
        };
        let id = created.id.clone();
        tracing::info!(%env, sid, deploy = %id, "render deploy started");
        let done = self.wait_until_done(env, &sid, created, started, cancel).await?;
        self.require_live(&sid, &done)?;
        let note = match target.strategy {
            Strategy::Rolling => String::new(),
            other => format!("; Render swaps instances without downtime, so {other} ran as its rolling swap"),
        };
        Ok(StepOutcome::passed(format!("deploy {id} of {} is live on {sid} ({} s){note}", target.version, started.elapsed().as_secs())))
    }

    async fn deploy_frontend(&self, _target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Ok(StepOutcome::skipped("Render deploys a frontend as its own service (a static site): no separate step here"))
    }

    async fn dry_run(&self, target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        let sid = self.service_id(target.env)?;
        Ok(StepOutcome::passed(format!("would deploy {} to {sid} (POST /services/{sid}/deploys with commitId)", target.commit)))
    }

    async fn rollback(&self, env: Environment, to_version: &str, cancel: &CancellationToken) -> Result<StepOutcome> {
        let sid = self.service_id(env)?;
        let to = to_version.trim();
        check_id(to, "version", "a deploy id from deploy_versions, e.g. dep-d0abc123def456ghi789")?;
        let started = Instant::now();
        // Look the deploy up first, so a wrong id is not reported as a wrong service.
        let reply = self.send(Method::GET, &format!("/services/{sid}/deploys/{to}"), None, cancel).await?;
        if reply.status == 404 {
            self.call(env, &sid, Method::GET, &format!("/services/{sid}"), None, cancel).await?;
            return Err(CoreError::NotFound {
                what: format!("deploy {to}"),
                message: format!("{sid} has no deploy `{to}`"),
                hint: "deploy_versions lists the deploys Render keeps for the service".into(),
            });
        }
        if !reply.ok() {
            return Err(self.api_error(env, &sid, &Method::GET, &format!("/services/{sid}/deploys/{to}"), &reply));
        }
        let old: Deploy = self.parse("the deploy", &reply)?;
        let body = json!({ "deployId": to });
        let reply = self.call(env, &sid, Method::POST, &format!("/services/{sid}/rollback"), Some(&body), cancel).await?;
        let created: Deploy = self.parse("the rollback deploy", &reply)?;
        let new_id = created.id.clone();
        let done = self.wait_until_done(env, &sid, created, started, cancel).await?;
        self.require_live(&sid, &done)?;
        let patch = json!({ "autoDeploy": "no" });
        let auto = match self.call(env, &sid, Method::PATCH, &format!("/services/{sid}"), Some(&patch), cancel).await {
            Ok(_) => "auto-deploy is now off, so the next push does not undo the rollback (turn it back on in the service's settings once the fix is in)".to_owned(),
            Err(e) => format!("WARNING: turning auto-deploy off failed ({e}): the next push to the branch will deploy again"),
        };
        let commit = commit_of(&old).map(|c| format!(" ({})", &c[..c.len().min(7)])).unwrap_or_default();
        Ok(StepOutcome::passed(format!("rolled {sid} back to {to}{commit}: new deploy {new_id} is live; {auto}")))
    }

    async fn env_list(&self, env: Environment, cancel: &CancellationToken) -> Result<EnvListing> {
        let sid = self.service_id(env)?;
        let mut vars = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_ENV_PAGES {
            let path = match &cursor {
                Some(c) => format!("/services/{sid}/env-vars?limit=100&cursor={}", encode_query(c)),
                None => format!("/services/{sid}/env-vars?limit=100"),
            };
            let reply = self.call(env, &sid, Method::GET, &path, None, cancel).await?;
            let page: Vec<EnvVarItem> = self.parse("the env-var list", &reply)?;
            drop(reply);
            let full = page.len() >= 100;
            cursor = page.last().and_then(|i| i.cursor.clone());
            vars.extend(page.into_iter().map(|i| EnvVarName { name: i.env_var.key, secret: false }));
            if !full || cursor.is_none() {
                break;
            }
        }
        Ok(EnvListing {
            vars,
            note: Some(format!(
                "Render env vars of {sid}; the API returns their values, oc-deploy keeps only the names. A change takes effect with the next deploy."
            )),
        })
    }

    async fn env_set(&self, env: Environment, name: &str, value: &Secret, cancel: &CancellationToken) -> Result<StepOutcome> {
        crate::local::check_env_name(name, "name")?;
        let sid = self.service_id(env)?;
        self.redactor.add_secret(value);
        let body = json!({ "value": value.expose() });
        // The answer echoes the value: it is not read.
        self.call(env, &sid, Method::PUT, &format!("/services/{sid}/env-vars/{name}"), Some(&body), cancel).await?;
        Ok(StepOutcome::passed(format!("set {name} on {sid} ({env}); takes effect with the next deploy")))
    }

    async fn env_unset(&self, env: Environment, name: &str, cancel: &CancellationToken) -> Result<StepOutcome> {
        crate::local::check_env_name(name, "name")?;
        let sid = self.service_id(env)?;
        let path = format!("/services/{sid}/env-vars/{name}");
        let reply = self.send(Method::DELETE, &path, None, cancel).await?;
        if reply.status == 404 {
            // A wrong service answers 404 too: tell them apart.
            self.call(env, &sid, Method::GET, &format!("/services/{sid}"), None, cancel).await?;
            return Err(CoreError::NotFound {
                what: format!("variable {name}"),
                message: format!("{name} is not set on {sid} ({env})"),
                hint: "deploy_env with action list shows the names that are set".into(),
            });
        }
        if !reply.ok() {
            return Err(self.api_error(env, &sid, &Method::DELETE, &path, &reply));
        }
        Ok(StepOutcome::passed(format!("removed {name} from {sid} ({env}); takes effect with the next deploy")))
    }

    async fn checklist(&self, cancel: &CancellationToken) -> Vec<ChecklistItem> {
        let mut items = Vec::new();
        let whoami = async {
            let reply = self.send(Method::GET, "/users", None, cancel).await?;
            if !reply.ok() {
                return Err(match reply.status {
                    401 | 403 => self.platform_error(format!("Render refused the API key (GET /users: {})", reply.status), KEY_HINT, false),
                    code => self.platform_error(format!("GET /users answered {code}"), failure_hint(Platform::Render, ""), code >= 500),
                });
            }
            let user: User = self.parse("the user", &reply)?;
            Ok(format!("{API_KEY_VAR} belongs to {} <{}>", user.name.as_deref().unwrap_or("?"), user.email.as_deref().unwrap_or("?")))
        }
        .await;
        let key_ok = whoami.is_ok();
        items.push(Self::item("Render API key".into(), whoami));
        if !key_ok {
            return items;
        }
        for env in Environment::ALL {
            if self.cfg.environments.get(env).is_none() {
                continue;
            }
            let result = self.check_service(env, cancel).await;
            items.push(Self::item(format!("Render service ({env})"), result));
        }
        items
    }
}

/// The commit a deploy was built from.
fn commit_of(d: &Deploy) -> Option<&str> {
    d.commit.as_ref().and_then(|c| c.id.as_deref())
}

/// Ids that go into URL paths: letters, digits, `-` and `_` only.
fn check_id(id: &str, field: &str, example: &str) -> Result<()> {
    let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(CoreError::invalid(field, format!("`{id}` is not a Render id"), format!("use {example}"))) }
}

/// Percent-encodes a query value (cursors are opaque).
fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// How long Render asks us to wait after a 429: `Ratelimit-Reset` (seconds until the window
/// resets, or an epoch time), else `Retry-After` (seconds), else 2 s; at most a minute.
fn rate_limit_wait(headers: &reqwest::header::HeaderMap) -> Duration {
    let secs = ["ratelimit-reset", "retry-after"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok()?.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0);
    let secs = match secs {
        Some(s) if s > 1e9 => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
            (s - now).max(0.0)
        }
        Some(s) => s,
        None => 2.0,
    };
    Duration::from_secs_f64(secs.max(0.1)).min(RATE_LIMIT_MAX_WAIT)
}

/// The `preDeployCommand` values of a render.yaml, read line by line (block scalars `|` and `>`
/// are joined with `; `). No YAML library: the field is a plain string in the Blueprint spec.
fn pre_deploy_commands(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let Some(value) = trimmed.strip_prefix("preDeployCommand:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let value = value.trim();
        let cmd = if value.starts_with('|') || value.starts_with('>') {
            lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            let v = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
            v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).unwrap_or(v).to_owned()
        };
        if !cmd.is_empty() && !out.contains(&cmd) {
            out.push(cmd);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_deploy_commands_are_read_from_render_yaml() {
        let yaml = "services:\n  - type: web\n    name: shop\n    preDeployCommand: \"python manage.py migrate\"\n  - type: worker\n    \
                    preDeployCommand: |\n      bundle exec rake db:migrate\n      echo done\n    startCommand: x\n";
        assert_eq!(pre_deploy_commands(yaml), vec!["python manage.py migrate", "bundle exec rake db:migrate; echo done"]);
        assert!(pre_deploy_commands("services: []\n").is_empty());
    }

    #[test]
    fn rate_limit_waits_are_bounded() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(rate_limit_wait(&h), Duration::from_secs(2));
        h.insert("Ratelimit-Reset", "3".parse().unwrap());
        assert_eq!(rate_limit_wait(&h), Duration::from_secs(3));
        h.insert("Ratelimit-Reset", "100000".parse().unwrap());
        assert_eq!(rate_limit_wait(&h), RATE_LIMIT_MAX_WAIT);
    }

    #[test]
    fn ids_in_paths_are_checked() {
        assert!(check_id("srv-abc_123", "f", "x").is_ok());
        assert!(check_id("srv/../users", "f", "x").is_err());
        assert!(check_id("", "f", "x").is_err());
    }
}
