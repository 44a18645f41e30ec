//! Platforms behind one interface: a provider turns a pipeline step into the platform's own
//! actions and reports the live version. Operations never know which platform they drive.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, Platform};
use crate::domain::{CommitSha, Environment, Strategy};
use crate::error::{CoreError, Result};
use crate::local::{LocalPlatform, StartRelease};
use crate::process::{Cmd, Runner};
use crate::run::StepStatus;

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
    fn passed(detail: impl Into<String>) -> Self {
        Self { status: StepStatus::Passed, detail: detail.into() }
    }
    fn skipped(detail: impl Into<String>) -> Self {
        Self { status: StepStatus::Skipped, detail: detail.into() }
    }
}

/// A deploy platform.
pub trait Provider {
    fn platform(&self) -> Platform;
    /// The version serving the environment now, if any.
    fn current_version(&self, env: Environment) -> impl Future<Output = Result<Option<String>>> + Send;
    fn migrate(&self, target: &DeployTarget, cancel: &CancellationToken) -> impl Future<Output = Result<StepOutcome>> + Send;
    fn deploy(&self, target: &DeployTarget, cancel: &CancellationToken) -> impl Future<Output = Result<StepOutcome>> + Send;
    fn deploy_frontend(&self, target: &DeployTarget, cancel: &CancellationToken) -> impl Future<Output = Result<StepOutcome>> + Send;
    /// Points the environment back at `to_version`.
    fn rollback(&self, env: Environment, to_version: &str, cancel: &CancellationToken) -> impl Future<Output = Result<StepOutcome>> + Send;
}

/// The provider for a project's configured platform.
pub fn for_config(cfg: &Config, root: &std::path::Path, runner: &Runner, supervisor_exe: PathBuf) -> Result<LocalProvider> {
    match cfg.platform {
        Platform::Local => Ok(LocalProvider {
            cfg: cfg.clone(),
            root: root.to_path_buf(),
            runner: runner.clone(),
            local: LocalPlatform::new(root, supervisor_exe, runner.clone()),
        }),
        other => Err(CoreError::invalid(
            "platform",
            format!("this build of oc-deploy deploys to the `local` platform; `{}` needs the cloud providers", other.as_str()),
            "set \"platform\": \"local\" in .oc-deploy-ops.json to run the pipeline on this machine",
        )),
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
