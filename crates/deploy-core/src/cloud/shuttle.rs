//! Shuttle through its CLI (`shuttle`, or `cargo shuttle` via `platform_cli`): `shuttle deploy`
//! uploads the app directory as it is and follows the deployment, printing one raw JSON document
//! per poll; the last one decides. Rollback redeploys an earlier deployment. Shuttle has no
//! set/unset for variables: secrets live in `Secrets.toml` and ship with every deploy, so
//! `env_list` reads their names from that file and `env_set`/`env_unset` say how it works.
//! Shuttle has no migration step either: the app migrates when it starts.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cloud::{PlatformCli, required};
use crate::config::{Config, Platform};
use crate::detect::{CheckStatus, ChecklistItem};
use crate::domain::{Environment, Strategy};
use crate::error::{CoreError, Result};
use crate::process::{Cmd, Output, Runner};
use crate::provider::{Capabilities, DeployTarget, EnvListing, EnvVarName, Provider, StepOutcome, VersionInfo};
use crate::secret::Secret;

/// The variables the Shuttle CLI documents (key, API overrides) and the Rust toolchain it builds with.
const PASS_ENV: &[&str] = &["SHUTTLE_API_KEY", "SHUTTLE_API", "SHUTTLE_API_ENV", "CARGO_HOME", "RUSTUP_HOME"];
const SECRETS_FILE: &str = "Secrets.toml";
/// Log lines of a failed deployment quoted in the error.
const LOG_LINES: usize = 20;

/// The Shuttle provider.
#[derive(Debug)]
pub struct Shuttle {
    cfg: Config,
    root: PathBuf,
    cli: PlatformCli,
}

/// A deployment as the Shuttle API returns it (`DeploymentResponse`).
#[derive(Debug, Clone, Deserialize)]
struct Deployment {
    id: String,
    state: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    uris: Vec<String>,
    #[serde(default)]
    build_meta: Option<BuildMeta>,
    #[serde(default)]
    redeployment_of: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct BuildMeta {
    #[serde(default)]
    git_commit_id: Option<String>,
    #[serde(default)]
    git_commit_msg: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeploymentList {
    #[serde(default)]
    deployments: Vec<Deployment>,
}

#[derive(Debug, Deserialize)]
struct Account {
    id: String,
    #[serde(default)]
    account_tier: Option<String>,
}

impl Deployment {
    fn commit(&self) -> Option<&str> {
        self.build_meta.as_ref().and_then(|m| m.git_commit_id.as_deref())
    }
}

impl Shuttle {
    pub fn new(cfg: &Config, root: &Path, runner: &Runner) -> Result<Self> {
        Ok(Self { cfg: cfg.clone(), root: root.to_path_buf(), cli: PlatformCli::new(cfg, root, runner, "shuttle", PASS_ENV)? })
    }

    fn project(&self, env: Environment) -> Result<String> {
        Ok(required(self.cfg.env(env)?.app.as_ref(), env, "app", "shop-staging")?.trim().to_owned())
    }

    fn platform_error(&self, message: String, hint: impl Into<String>) -> CoreError {
        CoreError::Platform { platform: Platform::Shuttle.as_str().into(), message, hint: hint.into(), retryable: false }
    }

    /// `shuttle deployment list --name <p> --output json`, newest first; `None` when the project
    /// does not exist yet (the first `shuttle deploy` creates it).
    async fn list(&self, project: &str, cancel: &CancellationToken) -> Result<Option<Vec<Deployment>>> {
        let cmd = self.cli.cmd(["deployment", "list", "--name", project, "--output", "json"]);
        let out = self.cli.runner.run(&cmd, cancel).await?;
        if !out.success() {
            if out.stderr.contains("not found in your project list") {
                return Ok(None);
            }
            return Err(self.cli.failure(&cmd, &out));
        }
        let docs = json_docs(&out.stdout);
        let list = docs.into_iter().rev().find(|d| d.get("deployments").is_some()).ok_or_else(|| self.unreadable(&cmd, &out))?;
        let list: DeploymentList = serde_json::from_value(list).map_err(|_| self.unreadable(&cmd, &out))?;
        Ok(Some(list.deployments))
    }

    fn unreadable(&self, cmd: &Cmd, out: &Output) -> CoreError {
        self.platform_error(
            format!("`{}` printed output oc-deploy cannot read: {}", cmd.display(), out.stdout.chars().take(300).collect::<String>()),
            "check the CLI's version (oc-deploy targets cargo-shuttle 0.57)",
        )
    }

    /// Runs a command that follows a deployment (deploy, redeploy) and returns the deployment
    /// it ended with, which must be running.
    async fn follow(&self, cmd: &Cmd, cancel: &CancellationToken) -> Result<Deployment> {
        let out = self.cli.runner.run(cmd, cancel).await?;
        let docs = json_docs(&out.stdout);
        let last = docs.iter().rev().find_map(|d| serde_json::from_value::<Deployment>(d.clone()).ok());
        if !out.success() {
            let mut err = self.cli.failure(cmd, &out);
            let logs = log_lines(&docs);
            if let CoreError::Platform { message, .. } = &mut err {
                if let Some(d) = &last {
                    message.push_str(&format!("; deployment {} is {}", d.id, d.state));
                }
                if !logs.is_empty() {
                    message.push_str(&format!("; its last log lines:\n{}", logs.join("\n")));
                }
            }
            return Err(err);
        }
        let d = last.ok_or_else(|| self.unreadable(cmd, &out))?;
        if d.state != "running" {
            return Err(self.platform_error(
                format!("`{}` ended with deployment {} {}, not running", cmd.display(), d.id, d.state),
                "`shuttle logs` and `shuttle deployment status` show what happened",
            ));
        }
        Ok(d)
    }

    /// `Secrets.toml` of the app directory, else of the project root.
    fn secrets_file(&self) -> PathBuf {
        let app = self.cfg.app_dir(&self.root).join(SECRETS_FILE);
        if app.is_file() { app } else { self.root.join(SECRETS_FILE) }
    }

    fn shown(&self, p: &Path) -> String {
        p.strip_prefix(&self.root).unwrap_or(p).display().to_string()
    }

    fn refuse_env_change(&self, env: Environment, action: &str) -> Result<StepOutcome> {
        let project = self.project(env).unwrap_or_else(|_| "<project>".into());
        Err(CoreError::Refused {
            message: format!(
                "Shuttle has no command to {action} one variable: secrets live in {SECRETS_FILE}, which is uploaded with every deploy"
            ),
            hint: format!(
                "edit {} (it stays out of git: keep it in .gitignore) and deploy again; \
                 `shuttle resource list --show-secrets --name {project}` shows what is deployed",
                self.shown(&self.secrets_file())
            ),
        })
    }

    fn item(name: String, result: Result<String>) -> ChecklistItem {
        match result {
            Ok(detail) => ChecklistItem { name, status: CheckStatus::Ok, detail, hint: None },
            Err(e) => ChecklistItem { name, status: CheckStatus::Fail, detail: e.to_string(), hint: Some(e.hint()) },
        }
    }

    async fn whoami(&self, cancel: &CancellationToken) -> Result<String> {
        let cmd = self.cli.cmd(["account", "--output", "json"]);
        let out = self.cli.run(&cmd, cancel).await?;
        let doc = json_docs(&out.stdout).pop().ok_or_else(|| self.unreadable(&cmd, &out))?;
        let acc: Account = serde_json::from_value(doc).map_err(|_| self.unreadable(&cmd, &out))?;
        Ok(format!("logged in as {} ({} tier)", acc.id, acc.account_tier.as_deref().unwrap_or("unknown")))
    }

    async fn check_project(&self, env: Environment, cancel: &CancellationToken) -> ChecklistItem {
        let name = format!("Shuttle project ({env})");
        let project = match self.project(env) {
            Ok(p) => p,
            Err(e) => return Self::item(name, Err(e)),
        };
        let list = match self.list(&project, cancel).await {
            Ok(Some(list)) => list,
            Ok(None) => {
                return ChecklistItem {
                    name,
                    status: CheckStatus::Warn,
                    detail: format!("project {project} does not exist yet"),
                    hint: Some(format!("the first deploy creates it (or run `shuttle project create --name {project}`)")),
                };
            }
            Err(e) => return Self::item(name, Err(e)),
        };
        let detail = match list.iter().find(|d| d.state == "running") {
            Some(d) => format!(
                "project {project}: {} deployment(s), {} running{}",
                list.len(),
                d.id,
                d.commit().map(|c| format!(" ({})", short(c))).unwrap_or_default()
            ),
            None => format!("project {project}: {} deployment(s), none running", list.len()),
        };
        Self::item(name, Ok(detail))
    }
}

impl Provider for Shuttle {
    fn platform(&self) -> Platform {
        Platform::Shuttle
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            uploads_working_tree: true,
            strategies: vec![Strategy::Rolling],
            rollback: Some("`shuttle deployment redeploy <id>` of an earlier deployment".into()),
            secrets: Some(format!("{SECRETS_FILE} (gitignored), uploaded with every deploy; no set/unset")),
            migrations: None,
            dry_run: false,
            frontend: false,
        }
    }

    async fn current_version(&self, env: Environment) -> Result<Option<String>> {
        let project = self.project(env)?;
        let list = self.list(&project, &CancellationToken::new()).await?.unwrap_or_default();
        Ok(list.into_iter().find(|d| d.state == "running").map(|d| d.id))
    }

    async fn versions(&self, env: Environment, cancel: &CancellationToken) -> Result<Vec<VersionInfo>> {
        let project = self.project(env)?;
        let list = self.list(&project, cancel).await?.unwrap_or_default();
        let running = list.iter().find(|d| d.state == "running").map(|d| d.id.clone());
        Ok(list
            .into_iter()
            .map(|d| {
                let message = d.build_meta.as_ref().and_then(|m| m.git_commit_msg.clone());
                let description = match (&d.redeployment_of, message) {
                    (Some(of), Some(m)) => Some(format!("redeploy of {of}: {m}")),
                    (Some(of), None) => Some(format!("redeploy of {of}")),
                    (None, m) => m.or(d.description.clone()),
                };
                VersionInfo {
                    current: running.as_deref() == Some(d.id.as_str()),
                    commit: d.commit().map(str::to_owned),
                    created_at: d.created_at,
                    status: Some(d.state),
                    description,
                    id: d.id,
                }
            })
            .collect())
    }

    async fn migrate(&self, _target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Ok(StepOutcome::skipped("Shuttle has no migration step; the app migrates on start (e.g. sqlx::migrate!)"))
    }

    async fn deploy(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        let project = self.project(target.env)?;
        // Shuttle uploads the directory as it is: it must hold the commit being deployed.
        if let Ok(head) = crate::git::head_commit(&self.cli.runner, &self.cli.cwd, cancel).await
            && head != target.commit
        {
            return Err(CoreError::Refused {
                message: format!(
                    "shuttle deploys the directory as it is, and {} is at {}, not {}",
                    self.cli.cwd.display(),
                    head.short(),
                    target.version
                ),
                hint: format!("check out {} (git checkout {}) or deploy the commit that is checked out", target.version, target.commit),
            });
        }
        let cmd = self.cli.cmd(["deploy", "--name", project.as_str(), "--output", "json"]);
        let d = self.follow(&cmd, cancel).await?;
        let shipped = match d.commit() {
            Some(c) if c == target.commit.as_str() => String::new(),
            Some(c) => format!("; WARNING: Shuttle recorded commit {}", short(c)),
            None => String::new(),
        };
        let uri = d.uris.first().map(|u| format!(" at {u}")).unwrap_or_default();
        let note = match target.strategy {
            Strategy::Rolling => String::new(),
            other => format!("; Shuttle swaps deployments itself, so {other} ran as its default rollout"),
        };
        Ok(StepOutcome::passed(format!("deployment {} of {} is running on {project}{uri}{shipped}{note}", d.id, target.version)))
    }

    async fn deploy_frontend(&self, _target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Ok(StepOutcome::skipped("Shuttle serves the frontend from the app (e.g. static files in the deployment): no separate step"))
    }

    async fn dry_run(&self, target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        let project = self.project(target.env)?;
        let cmd = self.cli.cmd(["deploy", "--name", project.as_str(), "--output", "json"]);
        Ok(StepOutcome::passed(format!(
            "would run `{}` in {} for {} (Shuttle has no dry run)",
            cmd.display(),
            self.cli.cwd.display(),
            target.version
        )))
    }

    async fn rollback(&self, env: Environment, to_version: &str, cancel: &CancellationToken) -> Result<StepOutcome> {
        let project = self.project(env)?;
        let to = to_version.trim();
        let ok = !to.is_empty() && !to.starts_with('-') && to.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(CoreError::invalid(
                "version",
                format!("`{to}` is not a Shuttle deployment id"),
                "use an id from deploy_versions, e.g. depl_01J…",
            ));
        }
        let cmd = self.cli.cmd(["deployment", "redeploy", to, "--name", project.as_str(), "--output", "json"]);
        let d = self.follow(&cmd, cancel).await?;
        let commit = d.commit().map(|c| format!(" ({})", short(c))).unwrap_or_default();
        Ok(StepOutcome::passed(format!("redeployed {to}{commit} on {project} as {}, running", d.id)))
    }

    async fn env_list(&self, env: Environment, _cancel: &CancellationToken) -> Result<EnvListing> {
        let file = self.secrets_file();
        let vars = match std::fs::read_to_string(&file) {
            Ok(text) => secret_names(&text).into_iter().map(|name| EnvVarName { name, secret: true }).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(CoreError::io(format!("reading {}", file.display()), e)),
        };
        let project = self.project(env).unwrap_or_else(|_| "<project>".into());
        Ok(EnvListing {
            vars,
            note: Some(format!(
                "Shuttle has no per-variable set/unset: secrets are the names in {} (gitignored), uploaded with every deploy of \
                 {project}; edit the file and deploy again to change them. `shuttle resource list --show-secrets --name {project}` \
                 shows what is deployed.",
                self.shown(&file)
            )),
        })
    }

    async fn env_set(&self, env: Environment, _name: &str, _value: &Secret, _cancel: &CancellationToken) -> Result<StepOutcome> {
        self.refuse_env_change(env, "set")
    }

    async fn env_unset(&self, env: Environment, _name: &str, _cancel: &CancellationToken) -> Result<StepOutcome> {
        self.refuse_env_change(env, "unset")
    }

    async fn checklist(&self, cancel: &CancellationToken) -> Vec<ChecklistItem> {
        let whoami = self.whoami(cancel).await;
        let logged_in = whoami.is_ok();
        let mut items = vec![Self::item("Shuttle login".into(), whoami)];
        if !logged_in {
            return items;
        }
        for env in Environment::ALL {
            if self.cfg.environments.get(env).is_some() {
                items.push(self.check_project(env, cancel).await);
            }
        }
        items
    }
}

fn short(c: &str) -> &str {
    &c[..c.len().min(7)]
}

/// Every JSON document in a CLI's stdout: one per line in JSON mode, but concatenated or
/// pretty-printed documents are read too; lines that are not JSON are skipped.
fn json_docs(stdout: &str) -> Vec<Value> {
    let stream: std::result::Result<Vec<Value>, _> = serde_json::Deserializer::from_str(stdout).into_iter::<Value>().collect();
    match stream {
        Ok(docs) => docs,
        Err(_) => stdout.lines().filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok()).collect(),
    }
}

/// The last lines of a failed deployment's logs (`{"logs": [{"line": …}]}`).
fn log_lines(docs: &[Value]) -> Vec<String> {
    let lines: Vec<String> = docs
        .iter()
        .filter_map(|d| d.get("logs")?.as_array())
        .flatten()
        .filter_map(|l| {
            let line = l.get("line")?.as_str()?;
            Some(match l.get("source").and_then(Value::as_str) {
                Some(src) => format!("[{src}] {line}"),
                None => line.to_owned(),
            })
        })
        .collect();
    lines[lines.len().saturating_sub(LOG_LINES)..].to_vec()
}

/// The keys of a flat `Secrets.toml` (`KEY = "value"`); values are never kept. Multi-line strings
/// are skipped over, and keys inside `[tables]` are ignored (Shuttle's secrets are flat).
fn secret_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut open_multiline: Option<&str> = None;
    let mut in_table = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(delim) = open_multiline {
            if t.contains(delim) {
                open_multiline = None;
            }
            continue;
        }
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.starts_with('[') {
            in_table = true;
            continue;
        }
        let Some((key, value)) = t.split_once('=') else {
            continue;
        };
        let value = value.trim();
        for delim in ["\"\"\"", "'''"] {
            if let Some(rest) = value.strip_prefix(delim)
                && !rest.contains(delim)
            {
                open_multiline = Some(delim);
            }
        }
        if in_table {
            continue;
        }
        let key = key.trim();
        let key = key.strip_prefix('"').and_then(|k| k.strip_suffix('"')).unwrap_or(key);
        let key = key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')).unwrap_or(key);
        if !key.is_empty() && !names.iter().any(|n| n == key) {
            names.push(key.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_never_keep_values() {
        let text = "# comment\nDATABASE_URL = \"postgres://u:pw@db/x\"\n\"QUOTED\" = 'v'\nMULTI = \"\"\"\nKEY_IN_VALUE = nope\n\"\"\"\n\
                    STRIPE_KEY=\"sk_live_123\"\n[table]\nNESTED = \"x\"\n";
        assert_eq!(secret_names(text), ["DATABASE_URL", "QUOTED", "MULTI", "STRIPE_KEY"]);
    }

    #[test]
    fn documents_are_read_per_poll() {
        let out = "{\"id\":\"depl_1\",\"state\":\"pending\"}\n{\"id\":\"depl_1\",\"state\":\"running\"}\n";
        let docs = json_docs(out);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["state"], "running");
        let mixed = "INFO: something\n{\"id\":\"depl_1\",\"state\":\"failed\"}\n{\"logs\":[{\"source\":\"build\",\"line\":\"boom\"}]}\n";
        let docs = json_docs(mixed);
        assert_eq!(log_lines(&docs), ["[build] boom"]);
    }
}
