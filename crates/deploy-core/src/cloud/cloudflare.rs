//! Cloudflare Workers: `wrangler` for deploys (whole or gradual), versions, rollback, secrets,
//! D1 migrations and the Pages frontend, plus the monorepo deploy API tried before wrangler.
//!
//! Wrangler's machine-readable output is used wherever it exists: the ndjson event file
//! (`WRANGLER_OUTPUT_FILE_PATH`) for new version ids and Pages URLs, `--json` for lists. Its
//! lists come oldest first; the newest deployment is the last element. A commit is made
//! traceable with `--tag <short sha>` and `--message "oc-deploy <env> <full sha>"`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{PlatformCli, parse_json, platform_message};
use crate::config::{Config, DeployApiConfig, Platform};
use crate::detect::{CheckStatus, ChecklistItem};
use crate::domain::{Environment, Strategy};
use crate::error::{CoreError, Result};
use crate::process::{Cmd, Output, Runner};
use crate::provider::{Capabilities, DeployTarget, EnvListing, EnvVarName, Provider, StepOutcome, VersionInfo};
use crate::secret::{Secret, is_secret_name};

/// The variables wrangler documents, passed through from the server's environment (nothing
/// else reaches it): credentials, the API base (fake servers use it), logging, CI detection,
/// the CA bundle, where `wrangler login` keeps its token (XDG config) and npm's cache for `npx`.
pub const PASS_ENV: &[&str] = &[
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_ACCOUNT_ID",
    "CLOUDFLARE_API_BASE_URL",
    "CF_API_BASE_URL",
    "CLOUDFLARE_API_KEY",
    "CLOUDFLARE_EMAIL",
    "WRANGLER_LOG",
    "CI",
    "NODE_EXTRA_CA_CERTS",
    "XDG_CONFIG_HOME",
    "npm_config_cache",
];

/// Share of traffic a canary version gets before it is checked and promoted.
pub const CANARY_PERCENT: u8 = 10;

/// Cloudflare's API error code for a Worker (or version) that does not exist.
const NOT_FOUND_CODE: &str = "[code: 10007]";

#[derive(Debug)]
pub struct Cloudflare {
    cfg: Config,
    root: PathBuf,
    cli: PlatformCli,
    /// Variables read as if they were in the server's environment (`None`: as if unset).
    /// Only names in [`PASS_ENV`] and the deploy API's `token_env` are consulted.
    env_overrides: BTreeMap<String, Option<Secret>>,
}

/// One entry of `wrangler deployments list --json`.
#[derive(Debug, Deserialize)]
struct Deployment {
    #[serde(default)]
    versions: Vec<DeploymentVersion>,
}

#[derive(Debug, Deserialize)]
struct DeploymentVersion {
    version_id: String,
    percentage: f64,
}

impl Deployment {
    /// The version serving the largest share (100% outside a gradual rollout).
    fn live_version(&self) -> Option<&DeploymentVersion> {
        self.versions.iter().fold(None, |best: Option<&DeploymentVersion>, v| match best {
            Some(b) if b.percentage >= v.percentage => Some(b),
            _ => Some(v),
        })
    }
}

/// One entry of `wrangler versions list --json`.
#[derive(Debug, Deserialize)]
struct WorkerVersion {
    id: String,
    #[serde(default)]
    metadata: VersionMetadata,
    #[serde(default)]
    annotations: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct VersionMetadata {
    #[serde(default)]
    created_on: Option<String>,
}

impl WorkerVersion {
    fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).and_then(serde_json::Value::as_str)
    }

    /// The commit: the full SHA in our message when present, else the tag (our short SHA).
    fn commit(&self) -> Option<String> {
        let from_message = self
            .annotation("workers/message")
            .and_then(|m| m.split(|c: char| !c.is_ascii_hexdigit()).find(|w| w.len() == 40).map(str::to_owned));
        from_message.or_else(|| self.annotation("workers/tag").map(str::to_owned))
    }
}

/// `wrangler secret list` (JSON by default): names and types, never values.
#[derive(Debug, Deserialize)]
struct SecretEntry {
    name: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// `wrangler whoami --json` when logged in.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WhoAmI {
    #[serde(default)]
    logged_in: bool,
    #[serde(default)]
    auth_type: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    accounts: Vec<Account>,
}

#[derive(Debug, Deserialize)]
struct Account {
    #[serde(default)]
    name: String,
}

/// A fresh path for wrangler's ndjson event log, removed when dropped.
struct EventLog {
    path: PathBuf,
}

impl EventLog {
    fn new() -> Self {
        Self { path: std::env::temp_dir().join(format!("oc-deploy-wrangler-{}.ndjson", uuid::Uuid::new_v4())) }
    }

    /// Every event wrangler wrote, in order (unreadable lines are skipped).
    fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect()
    }

    /// A string field of the last event of this type.
    fn field(&self, event_type: &str, field: &str) -> Option<String> {
        self.events()
            .iter()
            .rev()
            .find(|e| e.get("type").and_then(|t| t.as_str()) == Some(event_type))
            .and_then(|e| e.get(field))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The value after `label` on the last line that has it (`Current Version ID: <id>`).
fn line_value(stdout: &str, label: &str) -> Option<String> {
    stdout.lines().rev().find_map(|l| l.split_once(label).map(|(_, v)| v.trim().to_owned())).filter(|v| !v.is_empty())
}

/// Refuses values that wrangler would read as a flag.
fn check_arg(value: &str, field: &str) -> Result<()> {
    if value.trim().is_empty() || value.starts_with('-') {
        return Err(CoreError::invalid(field, format!("`{value}` is not a usable name"), "use a name that does not start with -"));
    }
    Ok(())
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36 && s.bytes().enumerate().all(|(i, b)| if [8, 13, 18, 23].contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() })
}

fn pct(p: f64) -> String {
    if p.fract() == 0.0 { format!("{p:.0}%") } else { format!("{p}%") }
}

impl Cloudflare {
    pub fn new(cfg: &Config, root: &Path, runner: &Runner) -> Result<Self> {
        Ok(Self {
            cfg: cfg.clone(),
            root: root.to_path_buf(),
            cli: PlatformCli::new(cfg, root, runner, "wrangler", PASS_ENV)?,
            env_overrides: BTreeMap::new(),
        })
    }

    /// Reads `name` as if the server's environment held `value` (`None`: as if unset), for
    /// the variables passed to wrangler and the deploy API token. Tests use it instead of
    /// changing the test process's environment; an embedding can use it to inject credentials.
    pub fn with_env(mut self, name: &str, value: Option<&str>) -> Self {
        self.env_overrides.insert(name.to_owned(), value.map(Secret::new));
        self
    }

    /// A variable of the server's environment, or its override.
    fn var(&self, name: &str) -> Option<Secret> {
        match self.env_overrides.get(name) {
            Some(v) => v.clone(),
            None => std::env::var(name).ok().map(Secret::new),
        }
        .filter(|v| !v.expose().is_empty())
    }

    /// Wrangler with these arguments: the allow-listed environment, metrics off, the timeout.
    fn cmd<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut cmd = Cmd::new(&self.cli.prefix[0], &self.cli.cwd)
            .args(self.cli.prefix[1..].iter().cloned())
            .args(args)
            .timeout(self.cli.timeout)
            .env("WRANGLER_SEND_METRICS", "false");
        for name in PASS_ENV {
            cmd = match self.env_overrides.get(*name) {
                None => cmd.pass_env(*name),
                Some(None) => cmd,
                Some(Some(v)) if is_secret_name(name) => cmd.env_secret(*name, v.clone()),
                Some(Some(v)) => cmd.env(*name, v.expose()),
            };
        }
        cmd
    }

    /// `--env <wrangler_env>`, or nothing for the top-level environment.
    fn env_args(&self, env: Environment) -> Result<Vec<String>> {
        Ok(match &self.cfg.env(env)?.wrangler_env {
            Some(e) => vec!["--env".into(), e.clone()],
            None => Vec::new(),
        })
    }

    /// Runs a command and returns its output only when it exited 0.
    async fn run(&self, cmd: &Cmd, cancel: &CancellationToken) -> Result<Output> {
        self.cli.run(cmd, cancel).await
    }

    /// Runs a list command; `None` when the Worker does not exist yet (code 10007).
    async fn run_list(&self, cmd: &Cmd, cancel: &CancellationToken) -> Result<Option<Output>> {
        let out = self.cli.runner.run(cmd, cancel).await?;
        if out.success() {
            return Ok(Some(out));
        }
        if platform_message(&out).contains(NOT_FOUND_CODE) {
            return Ok(None);
        }
        Err(self.cli.failure(cmd, &out))
    }

    /// The environment's deployments, oldest first (empty before the first deploy).
    async fn deployments(&self, env: Environment, cancel: &CancellationToken) -> Result<Vec<Deployment>> {
        let cmd = self.cmd(["deployments", "list", "--json"]).args(self.env_args(env)?);
        match self.run_list(&cmd, cancel).await? {
            Some(out) => parse_json(self.cli.platform, &cmd, &out.stdout),
            None => Ok(Vec::new()),
        }
    }

    /// The version serving most of the environment's traffic, with its share.
    async fn live(&self, env: Environment, cancel: &CancellationToken) -> Result<Option<(String, f64)>> {
        let deployments = self.deployments(env, cancel).await?;
        Ok(deployments.last().and_then(Deployment::live_version).map(|v| (v.version_id.clone(), v.percentage)))
    }

    fn short_failure(&self, message: String, hint: &str) -> CoreError {
        CoreError::Platform { platform: self.cli.platform.as_str().into(), message, hint: hint.into(), retryable: false }
    }

    /// `--tag <short> --message "oc-deploy <env> <sha>"`: what makes a version traceable.
    fn trace_args(target: &DeployTarget) -> Vec<String> {
        vec!["--tag".into(), target.commit.short(), "--message".into(), format!("oc-deploy {} {}", target.env, target.commit.as_str())]
    }

    /// `wrangler deploy`: the commit goes live at 100%. Returns (version id, detail).
    async fn deploy_whole(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<(String, String)> {
        let log = EventLog::new();
        let cmd = self
            .cmd(["deploy"])
            .args(self.env_args(target.env)?)
            .args(Self::trace_args(target))
            .env("WRANGLER_OUTPUT_FILE_PATH", log.path.to_string_lossy());
        let out = self.run(&cmd, cancel).await?;
        let id = log.field("deploy", "version_id").or_else(|| line_value(&out.stdout, "Current Version ID:")).ok_or_else(|| {
            self.short_failure(
                format!("`{}` succeeded but reported no version id", cmd.display()),
                "check the wrangler version (oc-deploy targets wrangler 4.x; see docs/platforms/cloudflare-workers.md)",
            )
        })?;
        let worker = log.field("deploy", "worker_name").unwrap_or_else(|| "the Worker".into());
        let url = log
            .events()
            .iter()
            .rev()
            .find(|e| e.get("type").and_then(|t| t.as_str()) == Some("deploy"))
            .and_then(|e| e.get("targets")?.as_array()?.first()?.as_str().map(str::to_owned));
        let at = url.map(|u| format!(" at {u}")).unwrap_or_default();
        Ok((id.clone(), format!("wrangler deployed {worker} version {id} (tag {}){at}", target.commit.short())))
    }

    /// `wrangler versions deploy <a>@<pa> [<b>@<pb>] -y`.
    async fn versions_deploy(&self, env: Environment, split: &[(&str, u8)], message: &str, cancel: &CancellationToken) -> Result<()> {
        let cmd = self
            .cmd(["versions", "deploy"])
            .args(split.iter().map(|(id, p)| format!("{id}@{p}")))
            .args(["-y", "--message", message])
            .args(self.env_args(env)?);
        self.run(&cmd, cancel).await.map(drop)
    }

    /// Gradual deploy: upload a version, give it `cloudflare.canary_percent` (default
    /// [`CANARY_PERCENT`]) of traffic, check the
    /// environment, then promote it to 100% (or put all traffic back on the old version).
    async fn deploy_canary(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<String> {
        let env = target.env;
        let Some((old, _)) = self.live(env, cancel).await? else {
            let (_, detail) = self.deploy_whole(target, cancel).await?;
            return Ok(format!("{detail}; first deploy, so no canary (nothing to split traffic with)"));
        };
        let log = EventLog::new();
        let cmd = self
            .cmd(["versions", "upload"])
            .args(self.env_args(env)?)
            .args(Self::trace_args(target))
            .env("WRANGLER_OUTPUT_FILE_PATH", log.path.to_string_lossy());
        let out = self.run(&cmd, cancel).await?;
        let new = log.field("version-upload", "version_id").or_else(|| line_value(&out.stdout, "Worker Version ID:")).ok_or_else(|| {
            self.short_failure(format!("`{}` succeeded but reported no version id", cmd.display()), "check the wrangler version")
        })?;
        let message = format!("oc-deploy canary {env} {}", target.commit.as_str());
        let pct = self.cfg.cloudflare.as_ref().and_then(|c| c.canary_percent).unwrap_or(CANARY_PERCENT);
        self.versions_deploy(env, &[(&new, pct), (&old, 100 - pct)], &message, cancel).await?;
        let split = format!("traffic split: {pct}% to {new}, {}% stays on {old}", 100 - pct);
        let Some(url) = self.cfg.env(env)?.url.clone() else {
            return Ok(format!(
                "canary: {split}; no environments.{env}.url to check, so it stays split — promote with `wrangler versions deploy {new}@100 -y`"
            ));
        };
        let checker = crate::smoke::Checker::new(&self.cfg.health);
        let report = checker.run_health(&self.cfg.smoke_tests, url.trim_end_matches('/'), "/health", None, cancel).await;
        if report.verdict == crate::smoke::Verdict::Unhealthy {
            self.versions_deploy(env, &[(&old, 100)], &format!("oc-deploy canary aborted {env}"), cancel).await?;
            return Err(CoreError::Refused {
                message: format!("canary {new} made {env} unhealthy ({}); all traffic is back on {old}", report.summary),
                hint: "fix the release and deploy again through staging".into(),
            });
        }
        self.versions_deploy(env, &[(&new, 100)], &message, cancel).await?;
        Ok(format!("canary: {split}; {env} {} ({}), promoted {new} to 100%", report.verdict.as_str(), report.summary))
    }

    /// `POST <url>/deploy`; `Ok(detail)` on 2xx, `Err(reason)` when wrangler must take over.
    async fn call_deploy_api(&self, api: &DeployApiConfig, env: Environment) -> std::result::Result<String, String> {
        let token = self.var(&api.token_env).ok_or_else(|| format!("{} is not set", api.token_env))?;
        self.cli.runner.redactor().add_secret(&token);
        let endpoint = format!("{}/deploy", api.url.trim_end_matches('/'));
        let url = reqwest::Url::parse(&endpoint).map_err(|e| format!("cloudflare.deploy_api.url `{}` is not a URL: {e}", api.url))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]" | "::1"));
        let builder = reqwest::Client::builder().timeout(self.cli.timeout.min(Duration::from_secs(300)));
        let client = if loopback { builder.no_proxy() } else { builder }.build().map_err(|e| format!("no HTTP client: {e}"))?;
        let app = api.app.clone().unwrap_or_else(|| self.cfg.project_name.clone());
        let response = client
            .post(url)
            .bearer_auth(token.expose())
            .json(&serde_json::json!({ "app": app, "env": env.as_str() }))
            .send()
            .await
            .map_err(|e| format!("{endpoint} unreachable: {}", self.cli.runner.redactor().redact(&e.without_url().to_string())))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let body = self.cli.runner.redactor().redact(body.trim());
        let snippet: String = body.chars().take(200).collect();
        if !status.is_success() {
            return Err(format!(
                "{endpoint} answered HTTP {}{}",
                status.as_u16(),
                if snippet.is_empty() { String::new() } else { format!(": {snippet}") }
            ));
        }
        let version = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| ["version_id", "version", "id"].iter().find_map(|k| v.get(*k).and_then(|x| x.as_str()).map(str::to_owned)));
        Ok(format!(
            "deploy API {endpoint} accepted app {app} for {env} (HTTP {}){}",
            status.as_u16(),
            version.map(|v| format!(", version {v}")).unwrap_or_default()
        ))
    }

    /// A rollback target: a version id as is, or a commit (short or full SHA) or tag looked up
    /// among the environment's versions.
    async fn resolve_version(&self, env: Environment, to: &str, cancel: &CancellationToken) -> Result<String> {
        check_arg(to, "to_version")?;
        if looks_like_uuid(to) {
            return Ok(to.to_ascii_lowercase());
        }
        let versions = self.versions(env, cancel).await?;
        versions
            .iter()
            .find(|v| v.commit.as_deref().is_some_and(|c| c.starts_with(to) || to.starts_with(c)))
            .map(|v| v.id.clone())
            .ok_or_else(|| CoreError::NotFound {
                what: format!("version {to}"),
                message: format!("no Worker version of {env} was deployed from `{to}`"),
                hint: "deploy_rollback without a version lists the versions; pass a version id or a commit shown there".into(),
            })
    }

    async fn whoami_item(&self, cancel: &CancellationToken) -> std::result::Result<ChecklistItem, ChecklistItem> {
        const NAME: &str = "cloudflare login";
        let cmd = self.cmd(["whoami", "--json"]);
        let fail = |detail: String, hint: String| ChecklistItem { name: NAME.into(), status: CheckStatus::Fail, detail, hint: Some(hint) };
        let out = match self.cli.runner.run(&cmd, cancel).await {
            Ok(out) => out,
            Err(e) => return Err(fail(e.to_string(), e.hint())),
        };
        let login_hint = super::failure_hint(Platform::CloudflareWorkers, "not authenticated");
        if !out.success() {
            if out.stdout.contains("\"loggedIn\":false") || out.stdout.contains("\"loggedIn\": false") {
                return Ok(fail("wrangler is not logged in".into(), login_hint));
            }
            let message = platform_message(&out);
            let hint = super::failure_hint(Platform::CloudflareWorkers, &message);
            return Ok(fail(format!("`wrangler whoami` failed: {message}"), hint));
        }
        let who: WhoAmI = match parse_json(self.cli.platform, &cmd, &out.stdout) {
            Ok(w) => w,
            Err(e) => return Ok(fail(e.to_string(), e.hint())),
        };
        if !who.logged_in {
            return Ok(fail("wrangler is not logged in".into(), login_hint));
        }
        let accounts: Vec<&str> = who.accounts.iter().map(|a| a.name.as_str()).collect();
        Ok(ChecklistItem {
            name: NAME.into(),
            status: CheckStatus::Ok,
            detail: format!(
                "logged in as {} ({}); accounts: {}",
                who.email.as_deref().unwrap_or("?"),
                who.auth_type.as_deref().unwrap_or("unknown credential"),
                if accounts.is_empty() { "none".into() } else { accounts.join(", ") }
            ),
            hint: None,
        })
    }
}

impl Provider for Cloudflare {
    fn platform(&self) -> Platform {
        Platform::CloudflareWorkers
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            uploads_working_tree: true,
            strategies: vec![Strategy::Rolling, Strategy::Canary],
            rollback: Some("`wrangler rollback <version-id>`: the previous Worker version takes 100% of traffic at once".into()),
            secrets: Some("`wrangler secret put/list/delete` (values go on stdin; each change deploys a new version)".into()),
            migrations: Some("D1: `wrangler d1 migrations apply <d1_database> --remote` (forward-only)".into()),
            dry_run: true,
            frontend: true,
        }
    }

    async fn current_version(&self, env: Environment) -> Result<Option<String>> {
        Ok(self.live(env, &CancellationToken::new()).await?.map(|(id, _)| id))
    }

    async fn versions(&self, env: Environment, cancel: &CancellationToken) -> Result<Vec<VersionInfo>> {
        let deployments = self.deployments(env, cancel).await?;
        let latest = deployments.last();
        let live = latest.and_then(Deployment::live_version).map(|v| v.version_id.clone());
        let cmd = self.cmd(["versions", "list", "--json"]).args(self.env_args(env)?);
        let Some(out) = self.run_list(&cmd, cancel).await? else {
            return Ok(Vec::new());
        };
        let versions: Vec<WorkerVersion> = parse_json(self.cli.platform, &cmd, &out.stdout)?;
        // Wrangler sorts oldest first; newest first is the contract.
        Ok(versions
            .into_iter()
            .rev()
            .map(|v| {
                let share = latest.and_then(|d| d.versions.iter().find(|x| x.version_id == v.id)).map(|x| x.percentage);
                VersionInfo {
                    current: live.as_deref() == Some(v.id.as_str()),
                    created_at: v.metadata.created_on.clone(),
                    commit: v.commit(),
                    status: share.map(|p| format!("serving {} of traffic", pct(p))),
                    description: v.annotation("workers/message").map(str::to_owned),
                    id: v.id,
                }
            })
            .collect())
    }

    async fn migrate(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        let env = target.env;
        let Some(db) = self.cfg.env(env)?.d1_database.clone().filter(|d| !d.trim().is_empty()) else {
            return Ok(StepOutcome::skipped(format!("no D1 database configured (environments.{env}.d1_database)")));
        };
        check_arg(&db, &format!("environments.{env}.d1_database"))?;
        let cmd = self.cmd(["d1", "migrations", "apply", db.as_str(), "--remote"]).args(self.env_args(env)?);
        let out = self.run(&cmd, cancel).await?;
        if out.stdout.contains("No migrations to apply") {
            return Ok(StepOutcome::passed(format!("D1 {db}: no migrations to apply")));
        }
        // The result table's rows: `│ 0002_add_b.sql │ ✅ │`. wrangler reprints the table after
        // each migration, so a name is kept once, in order.
        let mut applied: Vec<String> = Vec::new();
        for name in out
            .stdout
            .lines()
            .filter(|l| l.contains('✅'))
            .filter_map(|l| l.split('│').map(str::trim).find(|c| !c.is_empty()).map(str::to_owned))
        {
            if !applied.contains(&name) {
                applied.push(name);
            }
        }
        Ok(StepOutcome::passed(if applied.is_empty() {
            format!("D1 {db}: migrations applied")
        } else {
            format!("D1 {db}: applied {}", applied.join(", "))
        }))
    }

    async fn deploy(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        let mut notes = Vec::new();
        if let Some(api) = self.cfg.cloudflare.as_ref().and_then(|c| c.deploy_api.as_ref()) {
            match self.call_deploy_api(api, target.env).await {
                Ok(detail) => return Ok(StepOutcome::passed(detail)),
                Err(reason) => notes.push(format!("deploy API not used ({reason}); fell back to wrangler")),
            }
        }
        let detail = match target.strategy {
            Strategy::Canary => self.deploy_canary(target, cancel).await?,
            Strategy::Rolling => self.deploy_whole(target, cancel).await?.1,
            other => {
                notes.push(format!("{other} is not a Workers strategy: the new version took 100% of traffic at once"));
                self.deploy_whole(target, cancel).await?.1
            }
        };
        notes.insert(0, detail);
        Ok(StepOutcome::passed(notes.join("; ")))
    }

    async fn deploy_frontend(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        let env = target.env;
        let Some(pages) = self.cfg.cloudflare.as_ref().and_then(|c| c.pages.as_ref()) else {
            return Ok(StepOutcome::skipped("no Pages frontend configured (cloudflare.pages)"));
        };
        let project = match env {
            Environment::Staging => pages.staging_project.clone().unwrap_or_else(|| format!("{}-staging", pages.project)),
            Environment::Production => pages.project.clone(),
        };
        check_arg(&project, "cloudflare.pages.project")?;
        let dir = self.root.join(&pages.dir);
        let build_dir = dir.parent().unwrap_or(&self.root).to_path_buf();
        // The skill's `cd frontend && npm ci && npm run build`: install, then build.
        for (argv, field) in [(&pages.install, "cloudflare.pages.install"), (&pages.build, "cloudflare.pages.build")] {
            let Some(argv) = argv else { continue };
            let mut cmd = Cmd::from_argv(argv, &build_dir, field)?.timeout(self.cli.timeout);
            for name in ["CI", "NODE_EXTRA_CA_CERTS", "npm_config_cache"] {
                cmd = cmd.pass_env(name);
            }
            self.cli.runner.run_checked(&cmd, cancel).await?;
        }
        if !dir.is_dir() {
            return Err(CoreError::invalid(
                "cloudflare.pages.dir",
                format!("{} does not exist", dir.display()),
                "set cloudflare.pages.build to the command that builds it, or point dir at the built site",
            ));
        }
        let env_cfg = self.cfg.env(env)?;
        let branch = env_cfg.auto_deploy_branch.clone().unwrap_or_else(|| env.as_str().to_owned());
        let log = EventLog::new();
        let cmd = self
            .cmd(["pages", "deploy"])
            .arg(dir.to_string_lossy())
            .args(["--project-name", project.as_str(), "--branch", branch.as_str(), "--commit-hash", target.commit.as_str()])
            .arg("--commit-dirty=false")
            .env("WRANGLER_OUTPUT_FILE_PATH", log.path.to_string_lossy());
        let out = self.run(&cmd, cancel).await?;
        let url = log.field("pages-deploy", "url").or_else(|| line_value(&out.stdout, "Take a peek over at"));
        let alias = line_value(&out.stdout, "Deployment alias URL:");
        Ok(StepOutcome::passed(format!(
            "Pages project {project} (branch {branch}) deployed{}{}",
            url.map(|u| format!(" at {u}")).unwrap_or_default(),
            alias.map(|a| format!(", alias {a}")).unwrap_or_default()
        )))
    }

    async fn dry_run(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        let cmd = self.cmd(["deploy", "--dry-run"]).args(self.env_args(target.env)?);
        let out = self.run(&cmd, cancel).await?;
        let summary: Vec<&str> = out
            .stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.contains("⛅️") && !l.chars().all(|c| c == '─') && !l.starts_with("--dry-run"))
            .collect();
        Ok(StepOutcome::passed(format!("`{}` passed: {}", cmd.display(), summary.join("; "))))
    }

    async fn rollback(&self, env: Environment, to_version: &str, cancel: &CancellationToken) -> Result<StepOutcome> {
        let id = self.resolve_version(env, to_version, cancel).await?;
        let message = format!("oc-deploy rollback of {env}");
        let cmd = self.cmd(["rollback", id.as_str(), "-y", "-m", message.as_str()]).args(self.env_args(env)?);
        let out = self.run(&cmd, cancel).await?;
        match line_value(&out.stdout, "Current Version ID:") {
            Some(now) if now == id => Ok(StepOutcome::passed(format!("rolled {env} back: version {id} serves 100% of traffic"))),
            other => Err(self.short_failure(
                format!(
                    "`{}` exited 0 but reports {} as the current version, not {id}",
                    cmd.display(),
                    other.as_deref().unwrap_or("nothing")
                ),
                "run `wrangler deployments status` to see what serves traffic now",
            )),
        }
    }

    async fn env_list(&self, env: Environment, cancel: &CancellationToken) -> Result<EnvListing> {
        let cmd = self.cmd(["secret", "list"]).args(self.env_args(env)?);
        let Some(out) = self.run_list(&cmd, cancel).await? else {
            return Ok(EnvListing { vars: Vec::new(), note: Some("the Worker is not deployed yet".into()) });
        };
        let entries: Vec<SecretEntry> = parse_json(self.cli.platform, &cmd, &out.stdout)?;
        Ok(EnvListing {
            vars: entries.into_iter().map(|s| EnvVarName { secret: s.kind.as_deref() != Some("plain_text"), name: s.name }).collect(),
            note: Some("plain `vars` live in wrangler.toml; only secrets are listed here".into()),
        })
    }

    async fn env_set(&self, env: Environment, name: &str, value: &Secret, cancel: &CancellationToken) -> Result<StepOutcome> {
        crate::local::check_env_name(name, "name")?;
        let cmd = self.cmd(["secret", "put", name]).args(self.env_args(env)?).stdin_secret(value.clone());
        self.run(&cmd, cancel).await?;
        Ok(StepOutcome::passed(format!("set secret {name} in {env} (Cloudflare deployed a new version with it)")))
    }

    async fn env_unset(&self, env: Environment, name: &str, cancel: &CancellationToken) -> Result<StepOutcome> {
        crate::local::check_env_name(name, "name")?;
        // `secret delete` asks for confirmation; a non-interactive run answers yes by itself.
        let cmd = self.cmd(["secret", "delete", name]).args(self.env_args(env)?);
        self.run(&cmd, cancel).await?;
        Ok(StepOutcome::passed(format!("deleted secret {name} from {env} (Cloudflare deployed a new version without it)")))
    }

    async fn checklist(&self, cancel: &CancellationToken) -> Vec<ChecklistItem> {
        let mut items = Vec::new();
        match self.whoami_item(cancel).await {
            Ok(item) => items.push(item),
            Err(missing) => return vec![missing],
        }
        if let Some(api) = self.cfg.cloudflare.as_ref().and_then(|c| c.deploy_api.as_ref()) {
            let set = self.var(&api.token_env).is_some();
            items.push(ChecklistItem {
                name: "deploy API token".into(),
                status: if set { CheckStatus::Ok } else { CheckStatus::Warn },
                detail: if set {
                    format!("{} is set (the deploy API is tried first)", api.token_env)
                } else {
                    format!("{} is not set: deploys will fall back to wrangler", api.token_env)
                },
                hint: (!set).then(|| format!("export {} for the server to use the deploy API at {}", api.token_env, api.url)),
            });
        }
        if self.cfg.environments.staging.is_some() {
            const NAME: &str = "wrangler deploy --dry-run (staging)";
            let item = match self.env_args(Environment::Staging) {
                Err(e) => ChecklistItem { name: NAME.into(), status: CheckStatus::Fail, detail: e.to_string(), hint: Some(e.hint()) },
                Ok(args) => {
                    let cmd = self.cmd(["deploy", "--dry-run"]).args(args);
                    match self.run(&cmd, cancel).await {
                        Ok(_) => {
                            ChecklistItem { name: NAME.into(), status: CheckStatus::Ok, detail: "the Worker builds".into(), hint: None }
                        }
                        Err(e) => {
                            ChecklistItem { name: NAME.into(), status: CheckStatus::Fail, detail: e.to_string(), hint: Some(e.hint()) }
                        }
                    }
                }
            };
            items.push(item);
        }
        items
    }
}
