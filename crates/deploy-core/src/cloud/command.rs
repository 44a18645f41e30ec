//! The `command` platform: the user's own argument lists (`command.deploy`, `current_version`,
//! `list_versions`, `rollback`, `migrate`) run in the project root, told what to do through
//! `OC_DEPLOY_*` variables. oc-deploy runs them, reads their output, and manages nothing else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cloud::{DEFAULT_PLATFORM_TIMEOUT, failure_hint, platform_message};
use crate::config::{CONFIG_FILE, CommandConfig, Config, Platform};
use crate::detect::{CheckStatus, ChecklistItem};
use crate::domain::Environment;
use crate::error::{CoreError, Result};
use crate::process::{Cmd, Output, Runner};
use crate::provider::{Capabilities, DeployTarget, EnvListing, Provider, StepOutcome, VersionInfo};
use crate::secret::Secret;

/// The environment the commands run in: `staging` or `production`.
pub const ENV_VAR: &str = "OC_DEPLOY_ENV";
/// The version being shipped: the commit's short SHA.
pub const VERSION_VAR: &str = "OC_DEPLOY_VERSION";
/// The full commit SHA being shipped.
pub const COMMIT_VAR: &str = "OC_DEPLOY_COMMIT";
/// The production strategy asked for (rolling, blue-green, canary, recreate).
pub const STRATEGY_VAR: &str = "OC_DEPLOY_STRATEGY";
/// The version a rollback returns to (as `current_version` printed it).
pub const TO_VERSION_VAR: &str = "OC_DEPLOY_TO_VERSION";

const NO_VARIABLES: &str = "the command platform manages no variables; use your platform's tooling";

/// The command platform.
#[derive(Debug)]
pub struct CommandPlatform {
    commands: CommandConfig,
    root: PathBuf,
    runner: Runner,
    timeout: Duration,
}

impl CommandPlatform {
    pub fn new(cfg: &Config, root: &Path, runner: &Runner) -> Result<Self> {
        Ok(Self {
            commands: cfg.command.clone().unwrap_or_default(),
            root: root.to_path_buf(),
            runner: runner.clone(),
            timeout: Duration::from_secs(cfg.platform_timeout_seconds.unwrap_or(DEFAULT_PLATFORM_TIMEOUT)),
        })
    }

    fn deploy_argv(&self) -> Result<&[String]> {
        self.commands.deploy.as_deref().filter(|a| !a.is_empty()).ok_or_else(|| CoreError::ConfigInvalid {
            file: self.root.join(CONFIG_FILE),
            field: "command.deploy".into(),
            message: "the command platform needs a deploy command, e.g. \"command\": {\"deploy\": [\"./bin/deploy\"]}".into(),
        })
    }

    /// A configured command in the project root with the config's `pass_env` names.
    fn cmd(&self, argv: &[String], field: &str, env: Environment) -> Result<Cmd> {
        let mut cmd = Cmd::from_argv(argv, &self.root, field)?.timeout(self.timeout).env(ENV_VAR, env.as_str());
        for name in &self.commands.pass_env {
            cmd = cmd.pass_env(name.as_str());
        }
        Ok(cmd)
    }

    fn shipping(&self, argv: &[String], field: &str, target: &DeployTarget) -> Result<Cmd> {
        Ok(self
            .cmd(argv, field, target.env)?
            .env(VERSION_VAR, &target.version)
            .env(COMMIT_VAR, target.commit.as_str())
            .env(STRATEGY_VAR, target.strategy.as_str()))
    }

    /// Runs a command; a non-zero exit is a platform error with the command's own last words.
    async fn run(&self, cmd: &Cmd, cancel: &CancellationToken) -> Result<Output> {
        let out = self.runner.run(cmd, cancel).await?;
        if out.success() {
            return Ok(out);
        }
        let message = platform_message(&out);
        let status = out.code.map_or_else(|| "a signal".to_owned(), |c| format!("exit {c}"));
        Err(CoreError::Platform {
            platform: Platform::Command.as_str().into(),
            message: format!("`{}` failed ({status}): {message}", cmd.display()),
            hint: failure_hint(Platform::Command, &message),
            retryable: false,
        })
    }

    /// `ran `cmd` (N ms): <its last output line>`.
    fn ran(cmd: &Cmd, out: &Output) -> String {
        let last = out.stdout.lines().rev().map(str::trim).find(|l| !l.is_empty());
        let said = last.map(|l| format!(": {}", l.chars().take(200).collect::<String>())).unwrap_or_default();
        format!("ran `{}` ({} ms){said}", cmd.display(), out.duration.as_millis())
    }

    fn configured(&self) -> Vec<(&'static str, &[String])> {
        let c = &self.commands;
        [
            ("command.deploy", &c.deploy),
            ("command.current_version", &c.current_version),
            ("command.list_versions", &c.list_versions),
            ("command.rollback", &c.rollback),
            ("command.migrate", &c.migrate),
        ]
        .into_iter()
        .filter_map(|(field, argv)| argv.as_deref().map(|a| (field, a)))
        .collect()
    }

    fn check_program(&self, field: &str, argv: &[String]) -> ChecklistItem {
        let name = field.to_owned();
        let Some(program) = argv.first() else {
            return ChecklistItem {
                name,
                status: CheckStatus::Fail,
                detail: "the command is empty".into(),
                hint: Some(format!("give the program and its arguments as a list in {CONFIG_FILE}")),
            };
        };
        let found = if program.contains('/') {
            let p = self.root.join(program);
            std::fs::metadata(&p)
                .is_ok_and(|m| {
                    use std::os::unix::fs::PermissionsExt;
                    m.is_file() && m.permissions().mode() & 0o111 != 0
                })
                .then_some(p)
        } else {
            crate::detect::find_on_path(program)
        };
        match found {
            Some(p) => ChecklistItem { name, status: CheckStatus::Ok, detail: format!("{program} is {}", p.display()), hint: None },
            None => ChecklistItem {
                name,
                status: CheckStatus::Fail,
                detail: if program.contains('/') {
                    format!("{program} is missing or not executable in {}", self.root.display())
                } else {
                    format!("{program} is not on PATH")
                },
                hint: Some(if program.contains('/') {
                    format!("add {program} to the project and chmod +x it, or fix {field} in {CONFIG_FILE}")
                } else {
                    crate::process::install_hint(program)
                }),
            },
        }
    }
}

impl Provider for CommandPlatform {
    fn platform(&self) -> Platform {
        Platform::Command
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            uploads_working_tree: true,
            strategies: Vec::new(),
            rollback: self.commands.rollback.as_ref().map(|_| format!("command.rollback with {TO_VERSION_VAR}")),
            secrets: None,
            migrations: self.commands.migrate.as_ref().map(|_| "command.migrate, before command.deploy".into()),
            dry_run: false,
            frontend: false,
        }
    }

    async fn current_version(&self, env: Environment) -> Result<Option<String>> {
        // Without the command, the last deployed version is unknown.
        let Some(argv) = &self.commands.current_version else {
            return Ok(None);
        };
        let cmd = self.cmd(argv, "command.current_version", env)?;
        let out = self.run(&cmd, &CancellationToken::new()).await?;
        Ok(out.stdout.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_owned))
    }

    async fn versions(&self, env: Environment, cancel: &CancellationToken) -> Result<Vec<VersionInfo>> {
        let current = self.current_version(env).await?;
        let ids: Vec<String> = match &self.commands.list_versions {
            Some(argv) => {
                let cmd = self.cmd(argv, "command.list_versions", env)?;
                let out = self.run(&cmd, cancel).await?;
                out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
            }
            None => current.iter().cloned().collect(),
        };
        Ok(ids
            .into_iter()
            .map(|id| VersionInfo {
                current: current.as_deref() == Some(id.as_str()),
                id,
                created_at: None,
                commit: None,
                status: None,
                description: None,
            })
            .collect())
    }

    async fn migrate(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        let Some(argv) = &self.commands.migrate else {
            return Ok(StepOutcome::skipped("no migration configured (command.migrate)"));
        };
        let cmd = self.shipping(argv, "command.migrate", target)?;
        let out = self.run(&cmd, cancel).await?;
        Ok(StepOutcome::passed(Self::ran(&cmd, &out)))
    }

    async fn deploy(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        let cmd = self.shipping(self.deploy_argv()?, "command.deploy", target)?;
        let out = self.run(&cmd, cancel).await?;
        Ok(StepOutcome::passed(format!("{} to {} {}", target.version, target.env, Self::ran(&cmd, &out))))
    }

    async fn deploy_frontend(&self, _target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Ok(StepOutcome::skipped("the command platform ships everything with command.deploy"))
    }

    async fn dry_run(&self, target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        let cmd = self.shipping(self.deploy_argv()?, "command.deploy", target)?;
        Ok(StepOutcome::passed(format!(
            "would run `{}` in {} with {ENV_VAR}={} {VERSION_VAR}={} {COMMIT_VAR}={}",
            cmd.display(),
            self.root.display(),
            target.env,
            target.version,
            target.commit
        )))
    }

    async fn rollback(&self, env: Environment, to_version: &str, cancel: &CancellationToken) -> Result<StepOutcome> {
        let Some(argv) = &self.commands.rollback else {
            return Err(CoreError::Refused {
                message: "the command platform has no rollback command (command.rollback)".into(),
                hint: format!(
                    "add \"rollback\": [\"./bin/rollback\"] to \"command\" in {CONFIG_FILE}: it runs with {ENV_VAR} and {TO_VERSION_VAR}; \
                     or roll back with your platform's own tooling"
                ),
            });
        };
        let to = to_version.trim();
        if to.is_empty() || to.chars().any(char::is_control) {
            return Err(CoreError::invalid("version", format!("`{to}` is not a version"), "use a version from deploy_versions"));
        }
        let cmd = self.cmd(argv, "command.rollback", env)?.env(TO_VERSION_VAR, to);
        let out = self.run(&cmd, cancel).await?;
        Ok(StepOutcome::passed(format!("{env} back to {to}: {}", Self::ran(&cmd, &out))))
    }

    async fn env_list(&self, _env: Environment, _cancel: &CancellationToken) -> Result<EnvListing> {
        Err(CoreError::Refused { message: NO_VARIABLES.into(), hint: "set variables where your platform keeps them".into() })
    }

    async fn env_set(&self, _env: Environment, _name: &str, _value: &Secret, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Err(CoreError::Refused { message: NO_VARIABLES.into(), hint: "set variables where your platform keeps them".into() })
    }

    async fn env_unset(&self, _env: Environment, _name: &str, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Err(CoreError::Refused { message: NO_VARIABLES.into(), hint: "remove variables where your platform keeps them".into() })
    }

    async fn checklist(&self, _cancel: &CancellationToken) -> Vec<ChecklistItem> {
        let mut items = Vec::new();
        if let Err(e) = self.deploy_argv() {
            items.push(ChecklistItem {
                name: "command.deploy".into(),
                status: CheckStatus::Fail,
                detail: e.to_string(),
                hint: Some(e.hint()),
            });
        }
        for (field, argv) in self.configured() {
            items.push(self.check_program(field, argv));
        }
        items
    }
}
