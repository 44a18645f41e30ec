//! Platforms behind one interface: a provider turns a pipeline step into the platform's own
//! actions and reports the live version. Operations never know which platform they drive.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cloud;
use crate::config::{Config, Platform};
use crate::detect::ChecklistItem;
use crate::domain::{CommitSha, Environment, Strategy};
use crate::error::{CoreError, Result};
use crate::local::{LocalPlatform, StartRelease};
use crate::process::{Cmd, Runner};
use crate::run::StepStatus;
use crate::secret::Secret;

/// What to ship.
#[derive(Debug, Clone)]
pub struct DeployTarget {
    pub env: Environment,
    pub commit: CommitSha,
    pub version: String,
    pub strategy: Strategy,
}

/// The outcome of one provider step.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub status: StepStatus,
    pub detail: String,
}

impl StepOutcome {
    pub fn passed(detail: impl Into<String>) -> Self {
        Self { status: StepStatus::Passed, detail: detail.into() }
    }
    pub fn skipped(detail: impl Into<String>) -> Self {
        Self { status: StepStatus::Skipped, detail: detail.into() }
    }
}

/// What a platform supports, declared by its provider (shown by `deploy_init` and in docs).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Capabilities {
    /// Strategies the platform performs natively; others fall back to its default rollout.
    pub strategies: Vec<Strategy>,
    /// How rollback works, in one line (`None`: no rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
    /// How environment variables and secrets are managed (`None`: not through oc-deploy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<String>,
    /// How migrations run (`None`: the platform has none; the app migrates itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrations: Option<String>,
    /// Whether `dry_run` asks the platform (true) or only prints the plan (false).
    pub dry_run: bool,
    /// Whether a separate frontend deploy exists (Cloudflare Pages).
    pub frontend: bool,
    /// Whether the platform uploads the app directory as it is on disk (wrangler, fly, shuttle)
    /// rather than a commit: then only a clean checkout of the commit may be deployed.
    pub uploads_working_tree: bool,
}

/// One deployed version as the platform lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct VersionInfo {
    /// The platform's id (wrangler version id, `v42`, `dep-…`, `depl_…`, a short SHA).
    pub id: String,
    /// Whether it serves the environment now.
    pub current: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// The commit, when the platform records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// An environment variable or secret, by name only: values are never read back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct EnvVarName {
    pub name: String,
    /// Whether the platform stores it as a secret (write-only).
    pub secret: bool,
}

/// The answer of `deploy_env list`.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct EnvListing {
    pub vars: Vec<EnvVarName>,
    /// How this platform handles variables, when it differs from set/unset (Shuttle's Secrets.toml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A deploy platform.
pub trait Provider {
    fn platform(&self) -> Platform;
    fn capabilities(&self) -> Capabilities;
    /// The version serving the environment now, if any (the platform's own id).
    fn current_version(&self, env: Environment) -> impl Future<Output = Result<Option<String>>> + Send;
    /// Known versions, newest first, with the current one marked.
    fn versions(&self, env: Environment, cancel: &CancellationToken) -> impl Future<Output = Result<Vec<VersionInfo>>> + Send;
    fn migrate(&self, target: &DeployTarget, cancel: &CancellationToken) -> impl Future<Output = Result<StepOutcome>> + Send;
    fn deploy(&self, target: &DeployTarget, cancel: &CancellationToken) -> impl Future<Output = Result<StepOutcome>> + Send;
    fn deploy_frontend(&self, target: &DeployTarget, cancel: &CancellationToken) -> impl Future<Output = Result<StepOutcome>> + Send;
    /// Asks the platform whether the deploy would work, changing nothing (`wrangler deploy --dry-run`).
    fn dry_run(&self, target: &DeployTarget, cancel: &CancellationToken) -> impl Future<Output = Result<StepOutcome>> + Send;
    /// Points the environment back at `to_version`.
    fn rollback(&self, env: Environment, to_version: &str, cancel: &CancellationToken) -> impl Future<Output = Result<StepOutcome>> + Send;
    /// Names of the environment's variables and secrets (never values).
    fn env_list(&self, env: Environment, cancel: &CancellationToken) -> impl Future<Output = Result<EnvListing>> + Send;
    /// Sets a variable; the value is a secret: never in an argument list, a log or a result.
    fn env_set(
        &self,
        env: Environment,
        name: &str,
        value: &Secret,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<StepOutcome>> + Send;
    fn env_unset(&self, env: Environment, name: &str, cancel: &CancellationToken) -> impl Future<Output = Result<StepOutcome>> + Send;
    /// Setup checks only the platform can answer (auth, apps, databases), for `deploy_init`.
    fn checklist(&self, cancel: &CancellationToken) -> impl Future<Output = Vec<ChecklistItem>> + Send;
}

/// The provider for a project's configured platform.
pub fn for_config(cfg: &Config, root: &std::path::Path, runner: &Runner, supervisor_exe: PathBuf) -> Result<AnyProvider> {
    let root = root.to_path_buf();
    Ok(match cfg.platform {
        Platform::Local => AnyProvider::Local(LocalProvider {
            cfg: cfg.clone(),
            root: root.clone(),
            runner: runner.clone(),
            local: LocalPlatform::new(&root, supervisor_exe, runner.clone()),
        }),
        Platform::CloudflareWorkers => AnyProvider::Cloudflare(cloud::cloudflare::Cloudflare::new(cfg, &root, runner)?),
        Platform::Heroku => AnyProvider::Heroku(cloud::heroku::Heroku::new(cfg, &root, runner)?),
        Platform::FlyIo => AnyProvider::Fly(cloud::fly::Fly::new(cfg, &root, runner)?),
        Platform::Render => AnyProvider::Render(cloud::render::Render::new(cfg, &root, runner)?),
        Platform::Shuttle => AnyProvider::Shuttle(cloud::shuttle::Shuttle::new(cfg, &root, runner)?),
        Platform::Command => AnyProvider::Command(cloud::command::CommandPlatform::new(cfg, &root, runner)?),
    })
}

/// Every provider behind one type (static dispatch; the trait has async methods).
#[derive(Debug)]
pub enum AnyProvider {
    Local(LocalProvider),
    Cloudflare(cloud::cloudflare::Cloudflare),
    Heroku(cloud::heroku::Heroku),
    Fly(cloud::fly::Fly),
    Render(cloud::render::Render),
    Shuttle(cloud::shuttle::Shuttle),
    Command(cloud::command::CommandPlatform),
}

macro_rules! each {
    ($self:ident, $p:ident => $body:expr) => {
        match $self {
            AnyProvider::Local($p) => $body,
            AnyProvider::Cloudflare($p) => $body,
            AnyProvider::Heroku($p) => $body,
            AnyProvider::Fly($p) => $body,
            AnyProvider::Render($p) => $body,
            AnyProvider::Shuttle($p) => $body,
            AnyProvider::Command($p) => $body,
        }
    };
}

impl AnyProvider {
    /// The local platform's handle, for `oc-deploy local …` and the demo.
    pub fn local(&self) -> Option<&LocalProvider> {
        match self {
            Self::Local(p) => Some(p),
            _ => None,
        }
    }
}

impl Provider for AnyProvider {
    fn platform(&self) -> Platform {
        each!(self, p => p.platform())
    }
    fn capabilities(&self) -> Capabilities {
        each!(self, p => p.capabilities())
    }
    async fn current_version(&self, env: Environment) -> Result<Option<String>> {
        each!(self, p => p.current_version(env).await)
    }
    async fn versions(&self, env: Environment, cancel: &CancellationToken) -> Result<Vec<VersionInfo>> {
        each!(self, p => p.versions(env, cancel).await)
    }
    async fn migrate(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        each!(self, p => p.migrate(target, cancel).await)
    }
    async fn deploy(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        each!(self, p => p.deploy(target, cancel).await)
    }
    async fn deploy_frontend(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        each!(self, p => p.deploy_frontend(target, cancel).await)
    }
    async fn dry_run(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        each!(self, p => p.dry_run(target, cancel).await)
    }
    async fn rollback(&self, env: Environment, to_version: &str, cancel: &CancellationToken) -> Result<StepOutcome> {
        each!(self, p => p.rollback(env, to_version, cancel).await)
    }
    async fn env_list(&self, env: Environment, cancel: &CancellationToken) -> Result<EnvListing> {
        each!(self, p => p.env_list(env, cancel).await)
    }
    async fn env_set(&self, env: Environment, name: &str, value: &Secret, cancel: &CancellationToken) -> Result<StepOutcome> {
        each!(self, p => p.env_set(env, name, value, cancel).await)
    }
    async fn env_unset(&self, env: Environment, name: &str, cancel: &CancellationToken) -> Result<StepOutcome> {
        each!(self, p => p.env_unset(env, name, cancel).await)
    }
    async fn checklist(&self, cancel: &CancellationToken) -> Vec<ChecklistItem> {
        each!(self, p => p.checklist(cancel).await)
    }
}

/// The built-in local platform: releases behind a per-environment proxy.
#[derive(Debug)]
pub struct LocalProvider {
    cfg: Config,
    root: PathBuf,
    runner: Runner,
    local: LocalPlatform,
}

impl LocalProvider {
    fn local_cfg(&self) -> Result<&crate::config::LocalConfig> {
        self.cfg.local.as_ref().ok_or_else(|| {
            CoreError::invalid(
                "local",
                "the local platform needs a `local` section",
                "add \"local\": {\"start\": [...]} to .oc-deploy-ops.json",
            )
        })
    }

    pub fn platform_handle(&self) -> &LocalPlatform {
        &self.local
    }

    /// Prepares and starts a release and waits until it is ready; returns its port.
    async fn start(&self, env: Environment, commit: &CommitSha, version: &str, cancel: &CancellationToken) -> Result<u16> {
        let lc = self.local_cfg()?;
        let app_dir = self.local.prepare_release(env, commit, self.cfg.app_path.as_deref(), lc.build.as_deref(), cancel).await?;
        let port = self
            .cfg
            .env(env)?
            .port
            .ok_or_else(|| CoreError::invalid(format!("environments.{env}.port"), "missing", "set a port for the environment"))?;
        let info = self
            .local
            .start_release(StartRelease {
                env,
                version: version.to_owned(),
                app_dir,
                start: lc.start.clone(),
                env_vars: lc.env.clone(),
                health_path: lc.health_path.clone(),
                ready_timeout: Duration::from_secs(lc.ready_timeout_seconds),
                port,
            })
            .await?;
        Ok(info.port)
    }

    /// The release directory's app dir for a version (for migrations).
    async fn app_dir(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<PathBuf> {
        let lc = self.local_cfg()?;
        self.local.prepare_release(target.env, &target.commit, self.cfg.app_path.as_deref(), lc.build.as_deref(), cancel).await
    }
}

impl Provider for LocalProvider {
    fn platform(&self) -> Platform {
        Platform::Local
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            uploads_working_tree: false,
            strategies: vec![Strategy::Rolling, Strategy::BlueGreen, Strategy::Canary, Strategy::Recreate],
            rollback: Some("switches the proxy back to the previous release, still running".into()),
            secrets: Some("`.oc-deploy/local/<env>.env` (mode 600), read when a release starts".into()),
            migrations: Some("`local.migrate`, run in the release directory before traffic switches".into()),
            dry_run: false,
            frontend: false,
        }
    }

    async fn versions(&self, env: Environment, _cancel: &CancellationToken) -> Result<Vec<VersionInfo>> {
        let status = self.local.status().await?;
        let Some(e) = status.environments.into_iter().find(|e| e.env == env) else {
            return Ok(Vec::new());
        };
        Ok(e.releases
            .iter()
            .rev()
            .map(|r| VersionInfo {
                id: r.version.clone(),
                current: e.active.as_deref() == Some(r.version.as_str()),
                created_at: Some(r.started_at.clone()),
                commit: Some(r.version.clone()),
                status: Some(if r.running { "running" } else { "stopped" }.into()),
                description: None,
            })
            .collect())
    }

    async fn dry_run(&self, target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        self.local_cfg()?;
        let port = self.cfg.env(target.env)?.port.map_or_else(|| "?".into(), |p| p.to_string());
        Ok(StepOutcome::passed(format!("would start {} behind 127.0.0.1:{port} ({})", target.version, target.strategy.as_str())))
    }

    async fn env_list(&self, env: Environment, _cancel: &CancellationToken) -> Result<EnvListing> {
        let mut vars: Vec<EnvVarName> = self.local_cfg()?.env.keys().map(|k| EnvVarName { name: k.clone(), secret: false }).collect();
        for (name, _) in crate::local::read_env_file(&self.local.env_file(env))? {
            vars.retain(|v| v.name != name);
            vars.push(EnvVarName { name, secret: true });
        }
        Ok(EnvListing {
            vars,
            note: Some(format!(
                "secrets live in {} and reach a release when it starts: deploy again for a change to take effect",
                self.local.env_file(env).strip_prefix(&self.root).unwrap_or(&self.local.env_file(env)).display()
            )),
        })
    }

    async fn env_set(&self, env: Environment, name: &str, value: &Secret, _cancel: &CancellationToken) -> Result<StepOutcome> {
        if value.expose().contains(['\n', '\r']) {
            return Err(CoreError::invalid("value_from", "the value spans several lines", "the local env file holds one-line values"));
        }
        let path = self.local.env_file(env);
        let existed = edit_env_file(&path, name, Some(value))?;
        Ok(StepOutcome::passed(format!("{} {name} in {env} (takes effect with the next release)", if existed { "updated" } else { "set" })))
    }

    async fn env_unset(&self, env: Environment, name: &str, _cancel: &CancellationToken) -> Result<StepOutcome> {
        let existed = edit_env_file(&self.local.env_file(env), name, None)?;
        if !existed {
            return Err(CoreError::NotFound {
                what: format!("variable {name}"),
                message: format!("{name} is not set in {env}"),
                hint: "deploy_env with action list shows the names that are set".into(),
            });
        }
        Ok(StepOutcome::passed(format!("removed {name} from {env} (takes effect with the next release)")))
    }

    async fn checklist(&self, _cancel: &CancellationToken) -> Vec<ChecklistItem> {
        Vec::new()
    }

    async fn current_version(&self, env: Environment) -> Result<Option<String>> {
        self.local.current_version(env).await
    }

    async fn migrate(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        let Some(argv) = self.local_cfg()?.migrate.clone() else {
            return Ok(StepOutcome::skipped("no migration configured (local.migrate)"));
        };
        let dir = self.app_dir(target, cancel).await?;
        let cmd = Cmd::from_argv(&argv, &dir, "local.migrate")?
            .env("OC_DEPLOY_ENV", target.env.as_str())
            .env("OC_DEPLOY_VERSION", &target.version);
        let out = self.runner.run_checked(&cmd, cancel).await?;
        Ok(StepOutcome::passed(format!("{} ({} ms)", cmd.display(), out.duration.as_millis())))
    }

    async fn deploy(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        let env = target.env;
        let keep = self.cfg.rollback.keep_versions.max(2);
        let current = self.local.current_version(env).await?;
        if current.as_deref() == Some(target.version.as_str()) {
            return Ok(StepOutcome::passed(format!("{} is already live in {env}", target.version)));
        }
        let detail = match target.strategy {
            Strategy::Recreate => {
                if let Some(old) = &current {
                    self.local.stop_release(env, old).await?;
                }
                let port = self.start(env, &target.commit, &target.version, cancel).await?;
                let sw = self.local.switch(env, &target.version, None).await?;
                format!(
                    "recreate: stopped {}, started {} on port {port}, live in {} ms",
                    current.as_deref().unwrap_or("nothing"),
                    target.version,
                    sw.took_ms
                )
            }
            Strategy::Canary if current.is_some() => {
                let pct = self.local_cfg()?.canary_percent;
                let port = self.start(env, &target.commit, &target.version, cancel).await?;
                self.local.switch(env, &target.version, Some(pct)).await?;
                // The canary must itself be healthy before it gets all traffic.
                let lc = self.local_cfg()?;
                let checker = crate::smoke::Checker::new(&self.cfg.health);
                let report =
                    checker.run_health(&self.cfg.smoke_tests, &format!("http://127.0.0.1:{port}"), &lc.health_path, None, cancel).await;
                if report.verdict == crate::smoke::Verdict::Unhealthy {
                    if let Some(old) = &current {
                        self.local.switch(env, old, None).await?;
                    }
                    return Err(CoreError::Refused {
                        message: format!(
                            "canary {} is unhealthy ({}); traffic stays on {}",
                            target.version,
                            report.summary,
                            current.as_deref().unwrap_or("-")
                        ),
                        hint: "fix the release and deploy again through staging".into(),
                    });
                }
                let sw = self.local.switch(env, &target.version, None).await?;
                format!("canary: {pct}% to {} on port {port}, healthy, promoted to 100% in {} ms", target.version, sw.took_ms)
            }
            _ => {
                let port = self.start(env, &target.commit, &target.version, cancel).await?;
                let sw = self.local.switch(env, &target.version, None).await?;
                format!(
                    "{} started on port {port} and healthy; traffic switched in {} ms (previous: {})",
                    target.version,
                    sw.took_ms,
                    sw.previous.as_deref().unwrap_or("none")
                )
            }
        };
        let pruned = self.local.prune(env, keep).await.unwrap_or_default();
        let pruned = if pruned.is_empty() { String::new() } else { format!("; pruned {}", pruned.join(", ")) };
        Ok(StepOutcome::passed(format!("{detail}{pruned}")))
    }

    async fn deploy_frontend(&self, _target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Ok(StepOutcome::skipped("the local platform serves the frontend from the app release"))
    }

    async fn rollback(&self, env: Environment, to_version: &str, cancel: &CancellationToken) -> Result<StepOutcome> {
        match self.local.switch(env, to_version, None).await {
            Ok(sw) => Ok(StepOutcome::passed(format!("traffic switched back to {to_version} (still running) in {} ms", sw.took_ms))),
            Err(first) => {
                // The release was pruned or died: rebuild it from its commit, then switch.
                tracing::info!(%env, to_version, error = %first, "release not running; starting it again");
                let commit = crate::git::resolve_commit(&self.runner, &self.root, to_version, cancel).await?;
                self.start(env, &commit, to_version, cancel).await?;
                let sw = self.local.switch(env, to_version, None).await?;
                Ok(StepOutcome::passed(format!("{to_version} restarted from its commit and live in {} ms", sw.took_ms)))
            }
        }
    }
}

/// Sets (`Some`) or removes (`None`) one `NAME=value` line of a local secrets file, keeping the
/// other lines as they are; written atomically with mode 600. Returns whether the name was there.
fn edit_env_file(path: &std::path::Path, name: &str, value: Option<&Secret>) -> Result<bool> {
    crate::local::check_env_name(name, "name")?;
    let lock = path.with_extension("env.lock");
    crate::fsutil::with_lock(&lock, || {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(CoreError::io(format!("reading {}", path.display()), e)),
        };
        let is_line_for = |line: &str| {
            let l = line.trim();
            let l = l.strip_prefix("export ").unwrap_or(l);
            l.split_once('=').is_some_and(|(k, _)| k.trim() == name)
        };
        let existed = text.lines().any(is_line_for);
        let mut out: Vec<String> = text.lines().filter(|l| !is_line_for(l)).map(str::to_owned).collect();
        if let Some(v) = value {
            out.push(format!("{name}=\"{}\"", v.expose()));
        }
        let mut body = out.join("\n");
        body.push('\n');
        crate::fsutil::write_atomic_mode(path, body.as_bytes(), 0o600)?;
        Ok(existed)
    })
}
