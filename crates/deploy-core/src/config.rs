//! `.oc-deploy-ops.json`: the skill's config, accepted exactly as the skill writes it, plus the
//! extensions oc-deploy needs (local platform, health, auto-rollback, pre-flight, audit).
//! Unknown or mistyped fields are errors that name their JSON path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{Environment, Strategy};
use crate::error::{CoreError, Result};

/// The config file's name, at the project root.
pub const CONFIG_FILE: &str = ".oc-deploy-ops.json";

/// The whole deploy config of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Optional pointer to this file's JSON Schema, for editors.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The project's name, used in reports, tickets and notifications.
    pub project_name: String,
    /// Where it deploys.
    pub platform: Platform,
    /// Whether the app lives in a monorepo (the skill's aidops-core layout).
    #[serde(default)]
    pub monorepo: bool,
    /// The monorepo's root, when `monorepo` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monorepo_root: Option<String>,
    /// The app's directory relative to the project root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_path: Option<String>,
    pub environments: Environments,
    /// The deploy steps, in order.
    #[serde(default = "default_deploy_order")]
    pub deploy_order: Vec<DeployStep>,
    #[serde(default)]
    pub smoke_tests: Vec<SmokeTest>,
    #[serde(default)]
    pub rollback: RollbackConfig,
    /// Health thresholds for `deploy_health` and post-deploy checks.
    #[serde(default)]
    pub health: HealthConfig,
    /// What happens when production is unhealthy after a deploy.
    #[serde(default)]
    pub auto_rollback: AutoRollbackConfig,
    /// The production strategy used when a call names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_strategy: Option<Strategy>,
    /// Pre-flight commands run before a deploy (install, typecheck, test), each an argument list.
    #[serde(default)]
    pub preflight: PreflightConfig,
    /// The project's own audit command for the gate (default: `bin/audit` when present).
    #[serde(default)]
    pub audit: AuditConfig,
    /// Settings of the built-in local platform (`platform: "local"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalConfig>,
    /// How to invoke the platform's CLI, as an argument-list prefix (default: `wrangler`,
    /// `heroku`, `fly`, `shuttle`), e.g. `["npx", "wrangler"]` or an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_cli: Option<Vec<String>>,
    /// Seconds one platform command (deploy, rollback, migrations) may take (default 900).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_timeout_seconds: Option<u64>,
    /// Cloudflare Workers settings: the monorepo deploy API and the Pages frontend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudflare: Option<CloudflareConfig>,
    /// Heroku settings (pipeline promotion to production).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heroku: Option<HerokuConfig>,
    /// The `command` platform: your own argument lists for deploy, versions and rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandConfig>,
    /// Chat notifications: narrow the channels and events (a channel is on when its variables are set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationsConfig>,
}

/// Cloudflare Workers extras.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudflareConfig {
    /// The monorepo deploy API, tried before wrangler; wrangler is the fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_api: Option<DeployApiConfig>,
    /// The Pages frontend deployed by the `deploy-frontend` step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<PagesConfig>,
    /// Share of traffic a canary version gets before it is checked and promoted (1–99, default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_percent: Option<u8>,
}

/// `POST <url>/deploy` with `{"app", "env"}` and a bearer token read from `token_env`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployApiConfig {
    /// Base URL of the deploy API (e.g. `https://oc-deploy.aidops.workers.dev`).
    pub url: String,
    /// The app name the API deploys (default: `project_name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The environment variable holding the bearer token (default `DEPLOY_API_TOKEN`).
    #[serde(default = "default_deploy_api_token_env")]
    pub token_env: String,
}

fn default_deploy_api_token_env() -> String {
    "DEPLOY_API_TOKEN".into()
}

/// A Cloudflare Pages project deployed with `wrangler pages deploy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PagesConfig {
    /// The Pages project (staging gets `<project>-staging` unless `staging_project` is set).
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging_project: Option<String>,
    /// The built site's directory, relative to the project root (default `frontend/dist`).
    #[serde(default = "default_pages_dir")]
    pub dir: String,
    /// Install command run first (argument list, in the directory above `dir`), e.g. `["npm", "ci"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<Vec<String>>,
    /// Build command run before the upload (argument list, run in the directory above `dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Vec<String>>,
}

fn default_pages_dir() -> String {
    "frontend/dist".into()
}

/// Heroku extras.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HerokuConfig {
    /// Production is reached by `heroku pipelines:promote` from the staging app instead of a push.
    #[serde(default)]
    pub promote: bool,
}

/// The `command` platform's argument lists. Each runs in the project root with `OC_DEPLOY_ENV`,
/// `OC_DEPLOY_VERSION`, `OC_DEPLOY_COMMIT` (and `OC_DEPLOY_TO_VERSION` for rollback) set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// Deploys the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Vec<String>>,
    /// Prints the live version id on its first output line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<Vec<String>>,
    /// Prints known versions, one id per line, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_versions: Option<Vec<String>>,
    /// Rolls back to `OC_DEPLOY_TO_VERSION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Vec<String>>,
    /// Runs migrations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrate: Option<Vec<String>>,
    /// Extra variables from the server's environment passed to these commands (names only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_env: Vec<String>,
}

/// Narrows notifications (the same shape as pm-bridge's `NotifySettings`). An absent list narrows
/// nothing; an empty list turns everything off.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Only these channels (default: every channel whose variables are set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<NotifyChannel>>,
    /// Only these events (default: all four).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<NotifyEvent>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyChannel {
    Telegram,
    Slack,
    Webhook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyEvent {
    StagingVerified,
    ProductionShipped,
    Rollback,
    SmokeFailure,
}

/// The deploy platforms oc-deploy knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    Local,
    CloudflareWorkers,
    Render,
    Heroku,
    FlyIo,
    Shuttle,
    Command,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::CloudflareWorkers => "cloudflare-workers",
            Self::Render => "render",
            Self::Heroku => "heroku",
            Self::FlyIo => "fly-io",
            Self::Shuttle => "shuttle",
            Self::Command => "command",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environments {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging: Option<EnvConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production: Option<EnvConfig>,
}

impl Environments {
    pub fn get(&self, env: Environment) -> Option<&EnvConfig> {
        match env {
            Environment::Staging => self.staging.as_ref(),
            Environment::Production => self.production.as_ref(),
        }
    }
}

/// One environment. Each platform names its target its own way: `wrangler_env` (Cloudflare),
/// `app` (Heroku, Fly.io, Shuttle), `service_id` (Render), `port` (local).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// The environment's public base URL; smoke-test paths are joined to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Cloudflare: the `--env` of wrangler (null for the top-level environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrangler_env: Option<String>,
    /// Cloudflare: the D1 database migrated before the Worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d1_database: Option<String>,
    /// The branch that deploys here automatically in CI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_deploy_branch: Option<String>,
    /// Heroku / Fly.io app or Shuttle project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Render service id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    /// Heroku: the git remote pushed to (default `https://git.heroku.com/<app>.git`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_remote: Option<String>,
    /// Local platform: the stable port the environment's proxy listens on (127.0.0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// A step of `deploy_order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeployStep {
    Migrate,
    DeployApi,
    DeployFrontend,
}

impl DeployStep {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Migrate => "migrate",
            Self::DeployApi => "deploy-api",
            Self::DeployFrontend => "deploy-frontend",
        }
    }
}

fn default_deploy_order() -> Vec<DeployStep> {
    vec![DeployStep::Migrate, DeployStep::DeployApi, DeployStep::DeployFrontend]
}

/// A smoke test: a GET of `url` (a path joined to the environment's URL, or a full URL).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmokeTest {
    pub name: String,
    pub url: String,
    /// The expected HTTP status (default: any 2xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    /// Text the body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_contains: Option<String>,
    /// A JSON field of the body that must equal a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_json: Option<JsonExpectation>,
    /// The body must contain the deployed version (short SHA): proves the right commit shipped.
    #[serde(default)]
    pub expect_version: bool,
    /// Fails above this latency, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<u64>,
}

/// A JSON field check: `pointer` is an RFC 6901 JSON pointer (`/status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonExpectation {
    pub pointer: String,
    /// Any JSON value: string, number, boolean, null, array or object.
    #[schemars(schema_with = "crate::config::any_json")]
    pub equals: serde_json::Value,
}

/// The schema of "any JSON value", spelled out (some clients reject the boolean `true` schema).
pub fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": ["string", "number", "integer", "boolean", "null", "array", "object"] })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackConfig {
    /// How to roll back (e.g. `wrangler-rollback`, `previous-release`).
    #[serde(default = "default_rollback_strategy")]
    pub strategy: String,
    /// How many releases to keep (the local platform keeps them running).
    #[serde(default = "default_keep_versions")]
    pub keep_versions: u32,
}

impl Default for RollbackConfig {
    fn default() -> Self {
        Self { strategy: default_rollback_strategy(), keep_versions: default_keep_versions() }
    }
}

fn default_rollback_strategy() -> String {
    "previous-release".into()
}
fn default_keep_versions() -> u32 {
    3
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Latency above this warns (seconds; the skill's 2.0).
    #[serde(default = "default_latency_warn")]
    pub latency_warn_seconds: f64,
    /// Per-request timeout (seconds; the skill's curl uses 5).
    #[serde(default = "default_request_timeout")]
    pub timeout_seconds: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self { latency_warn_seconds: default_latency_warn(), timeout_seconds: default_request_timeout() }
    }
}

fn default_latency_warn() -> f64 {
    2.0
}
fn default_request_timeout() -> f64 {
    5.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoRollbackConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long to wait before re-checking a failed health check (the skill's 30 s).
    #[serde(default = "default_wait")]
    pub wait_seconds: u64,
}

impl Default for AutoRollbackConfig {
    fn default() -> Self {
        Self { enabled: true, wait_seconds: default_wait() }
    }
}

fn yes() -> bool {
    true
}
fn default_wait() -> u64 {
    30
}

/// Pre-flight commands, each an argument list run in the app directory. `test` is skipped by
/// `skip_tests`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreflightConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typecheck: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// Seconds each command may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The audit command (argument list); its failure is a HIGH finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Seconds the audit command may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// The local platform: the app's start command runs once per release behind a proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// The start command (argument list), run in the release directory with `PORT`,
    /// `OC_DEPLOY_ENV` and `OC_DEPLOY_VERSION` set.
    pub start: Vec<String>,
    /// Build command run in the release directory before it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Vec<String>>,
    /// Migration command run in the release directory before traffic switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrate: Option<Vec<String>>,
    /// Readiness path polled before a release takes traffic.
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// Seconds a release may take to become ready.
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout_seconds: u64,
    /// Share of requests a canary release gets, in percent.
    #[serde(default = "default_canary_percent")]
    pub canary_percent: u8,
    /// Extra environment variables for the app (not secrets; those go in the env file).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

fn default_health_path() -> String {
    "/health".into()
}
fn default_ready_timeout() -> u64 {
    30
}
fn default_canary_percent() -> u8 {
    10
}

impl Config {
    /// Reads and checks the config of the project at `root`.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CoreError::ConfigMissing { path });
            }
            Err(e) => return Err(CoreError::io(format!("reading {}", path.display()), e)),
        };
        Self::parse(&text, &path)
    }

    /// Parses config text; errors name the JSON path of the bad field.
    pub fn parse(text: &str, file: &Path) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            CoreError::ConfigInvalid {
                file: file.to_path_buf(),
                field: if field == "." { "(root)".into() } else { field },
                message: e.inner().to_string(),
            }
        })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// Checks what the types cannot say.
    fn validate(&self, file: &Path) -> Result<()> {
        let bad = |field: &str, message: String| CoreError::ConfigInvalid { file: file.to_path_buf(), field: field.into(), message };
        if self.project_name.trim().is_empty() {
            return Err(bad("project_name", "must not be empty".into()));
        }
        if let Some(app) = &self.app_path
            && (Path::new(app).is_absolute() || Path::new(app).components().any(|c| matches!(c, std::path::Component::ParentDir)))
        {
            return Err(bad("app_path", format!("`{app}` must be a relative path inside the project")));
        }
        for (i, t) in self.smoke_tests.iter().enumerate() {
            if !(t.url.starts_with('/') || t.url.starts_with("http://") || t.url.starts_with("https://")) {
                return Err(bad(
                    &format!("smoke_tests[{i}].url"),
                    format!("`{}` must be a path starting with / or a full http(s) URL", t.url),
                ));
            }
            if let Some(j) = &t.expect_json
                && !(j.pointer.is_empty() || j.pointer.starts_with('/'))
            {
                return Err(bad(&format!("smoke_tests[{i}].expect_json.pointer"), "a JSON pointer starts with /".into()));
            }
        }
        if !self.health.latency_warn_seconds.is_finite() || self.health.latency_warn_seconds <= 0.0 {
            return Err(bad("health.latency_warn_seconds", "must be greater than 0".into()));
        }
        if !self.health.timeout_seconds.is_finite() || self.health.timeout_seconds <= 0.0 {
            return Err(bad("health.timeout_seconds", "must be greater than 0".into()));
        }
        if let Some(p) = self.cloudflare.as_ref().and_then(|c| c.canary_percent)
            && !(1..=99).contains(&p)
        {
            return Err(bad("cloudflare.canary_percent", "must be between 1 and 99".into()));
        }
        if self.platform == Platform::Local {
            let Some(local) = &self.local else {
                return Err(bad("local", "platform `local` needs a `local` section with a `start` command".into()));
            };
            if local.start.is_empty() {
                return Err(bad("local.start", "must name the program that starts the app".into()));
            }
            if !local.health_path.starts_with('/') {
                return Err(bad("local.health_path", "must start with /".into()));
            }
            if local.canary_percent == 0 || local.canary_percent > 100 {
                return Err(bad("local.canary_percent", "must be between 1 and 100".into()));
            }
            for env in Environment::ALL {
                if let Some(e) = self.environments.get(env)
                    && e.port.is_none()
                {
                    return Err(bad(&format!("environments.{env}.port"), "the local platform needs a port per environment".into()));
                }
            }
            if let (Some(s), Some(p)) = (&self.environments.staging, &self.environments.production)
                && s.port.is_some()
                && s.port == p.port
            {
                return Err(bad("environments.production.port", "staging and production need different ports".into()));
            }
        }
        Ok(())
    }

    /// The environment's config, or an error naming what to add.
    pub fn env(&self, env: Environment) -> Result<&EnvConfig> {
        self.environments.get(env).ok_or_else(|| {
            CoreError::invalid("env", format!("environment `{env}` is not configured"), format!("add environments.{env} to {CONFIG_FILE}"))
        })
    }

    /// The environment's base URL: `url`, or for the local platform its proxy address.
    pub fn base_url(&self, env: Environment) -> Result<String> {
        let e = self.env(env)?;
        if let Some(u) = &e.url {
            return Ok(u.trim_end_matches('/').to_owned());
        }
        if let Some(p) = e.port {
            return Ok(format!("http://127.0.0.1:{p}"));
        }
        Err(CoreError::invalid("env", format!("environment `{env}` has no url"), format!("set environments.{env}.url in {CONFIG_FILE}")))
    }

    /// The directory the app lives in.
    pub fn app_dir(&self, root: &Path) -> PathBuf {
        match &self.app_path {
            Some(p) => root.join(p),
            None => root.to_path_buf(),
        }
    }

    /// Writes the config atomically, pretty-printed.
    pub fn write(&self, root: &Path) -> Result<PathBuf> {
        let path = root.join(CONFIG_FILE);
        let mut text = serde_json::to_string_pretty(self).map_err(|e| CoreError::io("serialising config", e.into()))?;
        text.push('\n');
        crate::fsutil::write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }
}

/// The JSON Schema of the config file.
pub fn config_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The skill's gtrack example, verbatim.
    const SKILL_EXAMPLE: &str = r#"{
"project_name": "gtrack",
"platform": "cloudflare-workers",
"monorepo": true,
"monorepo_root": "/home/claude/aidops-core",
"app_path": "apps/gtrack",
"environments": {
"staging": {
"wrangler_env": "staging",
"d1_database": "gtrack-staging",
"url": "https://gtrack-staging.aidops.workers.dev",
"auto_deploy_branch": "staging"
},
"production": {
"wrangler_env": null,
"d1_database": "gtrack-prod",
"url": "https://gtrack.aidops.workers.dev",
"auto_deploy_branch": "main"
}
},
"deploy_order": [
"migrate",
"deploy-api",
"deploy-frontend"
],
"smoke_tests": [
{ "name": "API health", "url": "/api/health", "expect_status": 200 },
{ "name": "Auth endpoint", "url": "/api/auth/status", "expect_status": 401 },
{ "name": "Frontend loads", "url": "/", "expect_contains": "<html" }
],
"rollback": {
"strategy": "wrangler-rollback",
"keep_versions": 3
}
}"#;

    const DESIGN_LOCAL: &str = r#"{
  "project_name": "shop",
  "platform": "local",
  "local": { "start": ["python3", "app.py"], "build": ["make", "build"], "health_path": "/health" },
  "environments": {
    "staging":    { "url": "http://127.0.0.1:8801", "port": 8801 },
    "production": { "url": "http://127.0.0.1:8802", "port": 8802 }
  },
  "smoke_tests": [ { "name": "health", "url": "/health", "expect_status": 200 } ],
  "health": { "latency_warn_seconds": 2.0 },
  "auto_rollback": { "enabled": true, "wait_seconds": 30 },
  "rollback": { "strategy": "previous-release", "keep_versions": 3 }
}"#;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new(CONFIG_FILE))
    }

    #[test]
    fn skill_example_parses_unchanged() {
        let c = parse(SKILL_EXAMPLE).unwrap();
        assert_eq!(c.platform, Platform::CloudflareWorkers);
        assert_eq!(c.environments.production.as_ref().unwrap().wrangler_env, None);
        assert_eq!(c.smoke_tests.len(), 3);
        assert_eq!(c.rollback.strategy, "wrangler-rollback");
    }

    #[test]
    fn design_local_example_parses() {
        let c = parse(DESIGN_LOCAL).unwrap();
        assert_eq!(c.local.unwrap().start, vec!["python3", "app.py"]);
        assert_eq!(c.auto_rollback.wait_seconds, 30);
    }

    #[track_caller]
    fn check_error(text: &str, field: &str, message_part: &str) {
        let err = parse(text).unwrap_err();
        match &err {
            CoreError::ConfigInvalid { field: f, message, .. } => {
                assert_eq!(f, field, "{err}");
                assert!(message.contains(message_part), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field_path() {
        check_error(
            &DESIGN_LOCAL.replace("\"expect_status\"", "\"expect_stauts\""),
            "smoke_tests[0].expect_stauts",
            "unknown field `expect_stauts`",
        );
        check_error(&DESIGN_LOCAL.replace("\"port\": 8802", "\"port\": \"8802\""), "environments.production.port", "invalid type");
        check_error(&DESIGN_LOCAL.replace("\"local\": {", "\"locale\": {"), "locale", "unknown field");
        check_error(
            &DESIGN_LOCAL.replace("\"/health\", \"expect_status\"", "\"health\", \"expect_status\""),
            "smoke_tests[0].url",
            "must be a path",
        );
        check_error(&DESIGN_LOCAL.replace("8802", "8801"), "environments.production.port", "different ports");
        check_error(&SKILL_EXAMPLE.replace("apps/gtrack", "../../etc"), "app_path", "inside the project");
        check_error(&DESIGN_LOCAL.replace("\"platform\": \"local\"", "\"platform\": \"lokal\""), "platform", "unknown variant `lokal`");
    }
}
