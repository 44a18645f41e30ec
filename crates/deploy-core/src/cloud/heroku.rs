//! Heroku: a deploy is `git push <remote> <sha>:refs/heads/main` from the project root (or a
//! pipeline promotion to production), confirmed by reading the new release, whose Procfile
//! `release:` phase may still fail it. Versions are releases (`v42`), rollback is
//! `heroku rollback vN`, config vars are listed by name only and set through the Platform API
//! (the CLI's `config:set` would put the value in an argument list).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{PlatformCli, parse_json, required};
use crate::config::{Config, Platform};
use crate::detect::{CheckStatus, ChecklistItem};
use crate::domain::{Environment, Strategy};
use crate::error::{CoreError, Result};
use crate::process::{Cmd, Runner};
use crate::provider::{Capabilities, DeployTarget, EnvListing, EnvVarName, Provider, StepOutcome, VersionInfo};
use crate::secret::Secret;

/// What the heroku CLI gets from the server's environment: its credentials and API host, extra
/// headers, proxy and CA settings, where it keeps its own data, and its telemetry switches (the
/// CLI reports to heroku.com in the background unless `DISABLE_TELEMETRY=true`).
const PASS_ENV: &[&str] = &[
    "HEROKU_API_KEY",
    "HEROKU_HOST",
    "DISABLE_TELEMETRY",
    "HEROKU_PARTICLEBOARD_URL",
    "HEROKU_HEADERS",
    "HTTPS_PROXY",
    "NODE_EXTRA_CA_CERTS",
    "XDG_DATA_HOME",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
];

/// What `git push` gets besides the base environment: SSH agent and command for `git@` remotes,
/// and the proxy for https ones.
const GIT_PASS_ENV: &[&str] = &["SSH_AUTH_SOCK", "GIT_SSH_COMMAND", "GIT_SSH", "HTTPS_PROXY"];

/// The Platform API key variable (the CLI's and ours).
const API_KEY_VAR: &str = "HEROKU_API_KEY";

/// The Platform API media type.
const API_ACCEPT: &str = "application/vnd.heroku+json; version=3";

/// How often and how long a pending release (its release phase still running) is polled.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(3);

/// The Heroku provider.
#[derive(Debug)]
pub struct Heroku {
    cfg: Config,
    root: PathBuf,
    cli: PlatformCli,
    git_program: String,
    api: Option<(String, Secret)>,
    poll_interval: Duration,
    /// How long a pending release may take (default: the platform timeout).
    release_wait: Option<Duration>,
}

/// One release as `heroku releases --json` prints it (only what oc-deploy reads).
#[derive(Debug, Clone, Deserialize)]
struct Release {
    version: u64,
    #[serde(default)]
    status: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    current: bool,
    #[serde(default)]
    created_at: Option<String>,
    /// `null` until the app has code (its first releases only enable add-ons and logging).
    #[serde(default)]
    slug: Option<serde_json::Value>,
}

impl Release {
    fn id(&self) -> String {
        format!("v{}", self.version)
    }
}

impl Heroku {
    pub fn new(cfg: &Config, root: &Path, runner: &Runner) -> Result<Self> {
        Ok(Self {
            cfg: cfg.clone(),
            root: root.to_path_buf(),
            cli: PlatformCli::new(cfg, root, runner, "heroku", PASS_ENV)?,
            git_program: "git".into(),
            api: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
            release_wait: None,
        })
    }

    /// Uses this Platform API base URL and key instead of `HEROKU_HOST` / `HEROKU_API_KEY`
    /// (for `env_set`, and the key for https pushes).
    pub fn with_api(mut self, base_url: impl Into<String>, key: Secret) -> Self {
        self.api = Some((base_url.into().trim_end_matches('/').to_owned(), key));
        self
    }

    /// How long to wait between two looks at a pending release (default 3 s).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long to wait for a pending release before giving up (default `platform_timeout_seconds`).
    pub fn with_release_wait(mut self, max: Duration) -> Self {
        self.release_wait = Some(max);
        self
    }

    /// The program run for `git push` (default `git` on PATH).
    pub fn with_git_program(mut self, program: impl Into<String>) -> Self {
        self.git_program = program.into();
        self
    }

    fn app(&self, env: Environment) -> Result<&str> {
        required(self.cfg.env(env)?.app.as_ref(), env, "app", &format!("{}-{env}", self.cfg.project_name))
    }

    fn remote(&self, env: Environment) -> Result<String> {
        let app = self.app(env)?;
        Ok(self
            .cfg
            .env(env)?
            .git_remote
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map_or_else(|| format!("https://git.heroku.com/{app}.git"), str::to_owned))
    }

    /// Production is reached by promoting the staging app's slug.
    fn promotes(&self, env: Environment) -> bool {
        env == Environment::Production && self.cfg.heroku.as_ref().is_some_and(|h| h.promote)
    }

    /// The API key: the seam's, else `HEROKU_API_KEY` of the server's environment.
    fn api_key(&self) -> Option<Secret> {
        if let Some((_, key)) = &self.api {
            return Some(key.clone());
        }
        std::env::var(API_KEY_VAR).ok().filter(|k| !k.trim().is_empty()).map(Secret::new)
    }

    /// The Platform API base URL: the seam's, else derived from `HEROKU_HOST` as the CLI does.
    fn api_base(&self) -> String {
        if let Some((base, _)) = &self.api {
            return base.clone();
        }
        api_base_from_host(std::env::var("HEROKU_HOST").ok().as_deref())
    }

    async fn run(&self, args: &[&str], cancel: &CancellationToken) -> Result<crate::process::Output> {
        let cmd = self.cli.cmd(args.iter().copied());
        self.cli.run(&cmd, cancel).await
    }

    /// `heroku releases -a APP --json [-n N]`, newest first.
    async fn releases(&self, app: &str, limit: Option<u32>, cancel: &CancellationToken) -> Result<Vec<Release>> {
        let mut args = vec!["releases".to_owned(), "-a".into(), app.into(), "--json".into()];
        if let Some(n) = limit {
            args.extend(["-n".into(), n.to_string()]);
        }
        let cmd = self.cli.cmd(args);
        let out = self.cli.run(&cmd, cancel).await?;
        let mut releases: Vec<Release> = parse_json(Platform::Heroku, &cmd, &out.stdout)?;
        releases.sort_by_key(|r| std::cmp::Reverse(r.version));
        Ok(releases)
    }

    /// The release serving the app: the one marked current, else the newest that succeeded.
    fn current_of(releases: &[Release]) -> Option<&Release> {
        releases.iter().find(|r| r.current).or_else(|| releases.iter().find(|r| r.status == "succeeded"))
    }

    /// Waits for the newest release above `after` whose description `matches` to leave
    /// `pending`; `Ok(None)` when no such release exists. A failed release is an error carrying
    /// the tail of its release-phase output.
    async fn settle(&self, app: &str, after: u64, matches: impl Fn(&str) -> bool, cancel: &CancellationToken) -> Result<Option<Release>> {
        let wait = self.release_wait.unwrap_or(self.cli.timeout);
        let deadline = Instant::now() + wait;
        loop {
            let releases = self.releases(app, Some(10), cancel).await?;
            let Some(new) = releases.iter().find(|r| r.version > after && matches(&r.description)).cloned() else {
                return Ok(None);
            };
            match new.status.as_str() {
                "succeeded" => return Ok(Some(new)),
                "failed" => return Err(self.release_failed(app, &new, Self::current_of(&releases), cancel).await),
                "pending" if Instant::now() + self.poll_interval < deadline => {
                    tracing::debug!(app, release = %new.id(), "release phase running; waiting");
                    tokio::select! {
                        _ = tokio::time::sleep(self.poll_interval) => {}
                        _ = cancel.cancelled() => return Err(CoreError::Cancelled),
                    }
                }
                "pending" => {
                    return Err(CoreError::Platform {
                        platform: Platform::Heroku.as_str().into(),
                        message: format!(
                            "release {} of {app} is still pending after {} s (its release phase is running)",
                            new.id(),
                            wait.as_secs_f32().round()
                        ),
                        hint: format!(
                            "follow it with `heroku releases:output {} -a {app}`; raise platform_timeout_seconds to wait longer",
                            new.id()
                        ),
                        retryable: true,
                    });
                }
                other => {
                    return Err(CoreError::Platform {
                        platform: Platform::Heroku.as_str().into(),
                        message: format!("release {} of {app} ended with status `{other}`", new.id()),
                        hint: format!("`heroku releases -a {app}` shows what happened"),
                        retryable: false,
                    });
                }
            }
        }
    }

    /// The error for a release whose release phase failed, with the tail of its output.
    async fn release_failed(&self, app: &str, release: &Release, serving: Option<&Release>, cancel: &CancellationToken) -> CoreError {
        let id = release.id();
        let output = match self.run(&["releases:output", &id, "-a", app], cancel).await {
            Ok(out) => {
                let tail = out.tail(10);
                if tail.trim().is_empty() { "no release-phase output".to_owned() } else { super::strip_ansi(&tail) }
            }
            Err(e) => format!("its output could not be read: {e}"),
        };
        let still = serving.map_or_else(|| "the previous release".to_owned(), Release::id);
        CoreError::Platform {
            platform: Platform::Heroku.as_str().into(),
            message: format!(
                "release phase failed: {id} ({}) of {app} did not go live; {app} still serves {still}. Release output: {output}",
                release.description
            ),
            hint: format!(
                "fix the Procfile `release:` command (usually the migration), commit and deploy again; `heroku releases:output {id} -a {app}` shows the whole log"
            ),
            retryable: false,
        }
    }

    async fn push(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        let env = target.env;
        let app = self.app(env)?;
        let remote = self.remote(env)?;
        let before = self.releases(app, Some(1), cancel).await?.first().map_or(0, |r| r.version);

        let cmd = self.push_cmd(&remote, target);
        let out = self.cli.runner.run(&cmd, cancel).await?;
        if !out.success() {
            return Err(self.cli.failure(&cmd, &out));
        }
        let sha = target.commit.as_str();
        let settled = self.settle(app, before, |d| description_commit(d).is_some_and(|c| sha.starts_with(c)), cancel).await?;
        let shown = display_remote(&remote);
        if let Some(release) = settled {
            return Ok(StepOutcome::passed(format!(
                "{} live on {app}: {} (pushed {} to {shown}; release phase passed)",
                release.id(),
                release.description,
                target.version
            )));
        }
        // No new release: git had nothing to push (the commit already is the remote's main).
        let releases = self.releases(app, None, cancel).await?;
        let serving = Self::current_of(&releases);
        match serving.and_then(|c| commit_of(&releases, c.version, None)) {
            Some(c) if sha.starts_with(&c) => Ok(StepOutcome::passed(format!(
                "{} is already live on {app} as {} (git push had nothing new)",
                target.version,
                serving.map_or_else(String::new, Release::id)
            ))),
            _ => {
                let earlier = releases
                    .iter()
                    .find(|r| r.status == "succeeded" && description_commit(&r.description).is_some_and(|c| sha.starts_with(c)));
                Err(CoreError::Platform {
                    platform: Platform::Heroku.as_str().into(),
                    message: format!(
                        "{shown} already has {} on main, so the push made no new release, but {app} serves {}",
                        target.version,
                        serving.map_or_else(|| "nothing".to_owned(), |r| format!("{} ({})", r.id(), r.description))
                    ),
                    hint: match earlier {
                        Some(r) => format!(
                            "Heroku builds only when main changes: roll forward with deploy_rollback to_version {} (the release of this commit), or deploy a new commit",
                            r.id()
                        ),
                        None => "Heroku builds only when main changes: deploy a new commit".into(),
                    },
                    retryable: false,
                })
            }
        }
    }

    /// `git push <remote> <sha>:refs/heads/main` in the project root. For an https remote the
    /// API key travels as an `http.extraHeader` in git's environment, never in argv or the URL.
    fn push_cmd(&self, remote: &str, target: &DeployTarget) -> Cmd {
        let mut cmd = Cmd::new(&self.git_program, &self.root)
            .args(["push", remote, &format!("{}:refs/heads/main", target.commit.as_str())])
            .env("GIT_TERMINAL_PROMPT", "0")
            .timeout(self.cli.timeout);
        for name in GIT_PASS_ENV {
            cmd = cmd.pass_env(*name);
        }
        if remote.starts_with("https://")
            && let Some(key) = self.api_key()
        {
            self.cli.runner.redactor().add_secret(&key);
            let header = format!("Authorization: Basic {}", base64(format!(":{}", key.expose()).as_bytes()));
            cmd = cmd
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env_secret("GIT_CONFIG_VALUE_0", Secret::new(header));
        }
        cmd
    }

    async fn promote(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        let staging = self.app(Environment::Staging)?;
        let prod = self.app(Environment::Production)?;
        // Promotion ships whatever staging runs: make sure that is this commit.
        let staging_releases = self.releases(staging, None, cancel).await?;
        let staging_commit = Self::current_of(&staging_releases).and_then(|c| commit_of(&staging_releases, c.version, None));
        if !staging_commit.as_deref().is_some_and(|c| target.commit.as_str().starts_with(c)) {
            return Err(CoreError::Refused {
                message: format!(
                    "{staging} runs {}, not {}: promoting would ship the wrong commit to {prod}",
                    staging_commit.as_deref().unwrap_or("an unknown commit"),
                    target.version
                ),
                hint: "deploy this commit to staging first (deploy_staging), then promote".into(),
            });
        }
        let before = self.releases(prod, Some(1), cancel).await?.first().map_or(0, |r| r.version);
        self.run(&["pipelines:promote", "-a", staging, "-t", prod], cancel).await?;
        let settled = self.settle(prod, before, |d| d.starts_with("Promote"), cancel).await?;
        let Some(release) = settled else {
            return Err(CoreError::Platform {
                platform: Platform::Heroku.as_str().into(),
                message: format!("`heroku pipelines:promote -a {staging} -t {prod}` succeeded but {prod} shows no new release"),
                hint: format!("`heroku releases -a {prod}` shows what happened"),
                retryable: false,
            });
        };
        Ok(StepOutcome::passed(format!(
            "{} live on {prod}: {} (promoted {staging}'s slug of {}; release phase passed)",
            release.id(),
            release.description,
            target.version
        )))
    }

    fn check(name: String, status: CheckStatus, detail: String, hint: Option<String>) -> ChecklistItem {
        ChecklistItem { name, status, detail, hint }
    }
}

impl Provider for Heroku {
    fn platform(&self) -> Platform {
        Platform::Heroku
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            uploads_working_tree: false,
            strategies: vec![Strategy::Rolling],
            rollback: Some(
                "`heroku rollback vN`: that release's code and config vars come back, add-ons do not change, and migrations are not undone"
                    .into(),
            ),
            secrets: Some("config vars: listed by name, set through the Platform API, removed with `heroku config:unset`".into()),
            migrations: Some("the Procfile `release:` phase, run by Heroku for every new release; a failure stops the release".into()),
            dry_run: false,
            frontend: false,
        }
    }

    async fn current_version(&self, env: Environment) -> Result<Option<String>> {
        let app = self.app(env)?;
        let releases = self.releases(app, None, &CancellationToken::new()).await?;
        // A release without a slug serves no code: there is nothing to roll back to.
        Ok(Self::current_of(&releases).filter(|r| r.slug.is_some()).map(Release::id))
    }

    async fn versions(&self, env: Environment, cancel: &CancellationToken) -> Result<Vec<VersionInfo>> {
        let app = self.app(env)?;
        let releases = self.releases(app, None, cancel).await?;
        // A production fed by promotion names staging's releases: read those once.
        let source = match releases.iter().find_map(|r| promote_source(&r.description)) {
            Some((src, _)) if src != app => self.releases(&src, None, cancel).await.ok().map(|rs| (src, rs)),
            _ => None,
        };
        let current = Self::current_of(&releases).map(|r| r.version);
        Ok(releases
            .iter()
            .map(|r| VersionInfo {
                id: r.id(),
                current: Some(r.version) == current,
                created_at: r.created_at.clone(),
                commit: commit_of(&releases, r.version, source.as_ref().map(|(s, rs)| (s.as_str(), rs.as_slice()))),
                status: Some(r.status.clone()),
                description: Some(r.description.clone()),
            })
            .collect())
    }

    async fn migrate(&self, target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        let procfile = self.cfg.app_dir(&self.root).join("Procfile");
        let release_line = std::fs::read_to_string(&procfile)
            .ok()
            .and_then(|text| text.lines().find_map(|l| l.trim().strip_prefix("release:").map(|cmd| cmd.trim().to_owned())));
        let app = self.app(target.env).unwrap_or("the app");
        Ok(StepOutcome::skipped(match release_line {
            Some(cmd) => format!(
                "Heroku runs the Procfile release phase (`{cmd}`) on {app} during the deploy; a failure there fails the deploy and keeps the previous release"
            ),
            None => format!("Heroku runs migrations only in a Procfile `release:` phase, and {} has none", procfile.display()),
        }))
    }

    async fn deploy(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        let mut out = if self.promotes(target.env) { self.promote(target, cancel).await? } else { self.push(target, cancel).await? };
        if target.strategy != Strategy::Rolling {
            out.detail.push_str(&format!(
                "; `{}` is not a Heroku strategy: Heroku restarted the dynos its own way (preboot if the app has it on)",
                target.strategy
            ));
        }
        Ok(out)
    }

    async fn deploy_frontend(&self, _target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Ok(StepOutcome::skipped("Heroku serves the frontend from the app's own dynos"))
    }

    async fn dry_run(&self, target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        let env = target.env;
        let app = self.app(env)?;
        if self.promotes(env) {
            let staging = self.app(Environment::Staging)?;
            return Ok(StepOutcome::passed(format!(
                "heroku has no dry run: would promote {staging} (which must run {}) to {app} with `heroku pipelines:promote -a {staging} -t {app}`",
                target.version
            )));
        }
        Ok(StepOutcome::passed(format!(
            "heroku has no dry run: would push {} to {} (app {app}) and wait for its release",
            target.commit.as_str(),
            display_remote(&self.remote(env)?)
        )))
    }

    async fn rollback(&self, env: Environment, to_version: &str, cancel: &CancellationToken) -> Result<StepOutcome> {
        let app = self.app(env)?;
        let Some(n) = parse_release(to_version) else {
            return Err(CoreError::invalid(
                "to_version",
                format!("`{to_version}` is not a Heroku release"),
                "name a release as vN, e.g. v41 (deploy_status lists them)",
            ));
        };
        let id = format!("v{n}");
        let before = self.releases(app, Some(1), cancel).await?.first().map_or(0, |r| r.version);
        self.run(&["rollback", &id, "-a", app], cancel).await?;
        let rollback_of = format!("Rollback to {id}");
        let settled = self.settle(app, before, |d| d.eq_ignore_ascii_case(&rollback_of), cancel).await?;
        match settled {
            Some(release) => Ok(StepOutcome::passed(format!(
                "{app} rolled back to {id}: new release {} ({}); add-ons and the database were not changed",
                release.id(),
                release.description
            ))),
            None => Err(CoreError::Platform {
                platform: Platform::Heroku.as_str().into(),
                message: format!("`heroku rollback {id} -a {app}` exited 0 but {app} shows no `{rollback_of}` release"),
                hint: format!("`heroku releases -a {app}` shows what happened"),
                retryable: false,
            }),
        }
    }

    async fn env_list(&self, env: Environment, cancel: &CancellationToken) -> Result<EnvListing> {
        let app = self.app(env)?;
        let out = self.run(&["config", "-a", app, "--json"], cancel).await?;
        // The CLI prints values too: only the keys survive parsing, and a parse error must not
        // quote the output.
        let keys: KeysOnly = serde_json::from_str(out.stdout.trim()).map_err(|e| CoreError::Platform {
            platform: Platform::Heroku.as_str().into(),
            message: format!(
                "`heroku config -a {app} --json` did not print a JSON object of config vars (line {}, column {})",
                e.line(),
                e.column()
            ),
            hint: "check the heroku CLI's version (npm i -g heroku)".into(),
            retryable: false,
        })?;
        drop(out);
        Ok(EnvListing {
            vars: keys.0.into_iter().map(|name| EnvVarName { name, secret: false }).collect(),
            note: Some(format!("config vars of {app}; a change makes a new release and restarts the dynos")),
        })
    }

    async fn env_set(&self, env: Environment, name: &str, value: &Secret, cancel: &CancellationToken) -> Result<StepOutcome> {
        let app = self.app(env)?;
        crate::local::check_env_name(name, "name")?;
        let Some(key) = self.api_key() else {
            return Err(CoreError::Platform {
                platform: Platform::Heroku.as_str().into(),
                message: format!(
                    "{API_KEY_VAR} is not set: oc-deploy sets config vars through the Platform API (the CLI's config:set would show the value to other users in the process list)"
                ),
                hint: format!("export {API_KEY_VAR} for the server (heroku authorizations:create --short)"),
                retryable: false,
            });
        };
        let redactor = self.cli.runner.redactor();
        redactor.add_secret(value);
        redactor.add_secret(&key);
        let url = format!("{}/apps/{app}/config-vars", self.api_base());
        let mut body = serde_json::Map::new();
        body.insert(name.to_owned(), serde_json::Value::String(value.expose().to_owned()));
        let client = reqwest::Client::builder()
            .timeout(self.cli.timeout.min(Duration::from_secs(120)))
            .user_agent(concat!("oc-deploy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| api_error(format!("cannot build an HTTP client: {e}"), true))?;
        let request = client
            .patch(&url)
            .header(reqwest::header::AUTHORIZATION, format!("Bearer {}", key.expose()))
            .header(reqwest::header::ACCEPT, API_ACCEPT)
            .json(&body)
            .send();
        let response = tokio::select! {
            r = request => r.map_err(|e| api_error(redactor.redact(&format!("PATCH {url} failed: {}", describe(&e))), true))?,
            _ = cancel.cancelled() => return Err(CoreError::Cancelled),
        };
        drop(body);
        let status = response.status();
        if status.is_success() {
            // The answer lists every config var with its value: it is not read.
            return Ok(StepOutcome::passed(format!(
                "set {name} on {app} through the Platform API; Heroku made a new release and restarts the dynos"
            )));
        }
        #[derive(Deserialize)]
        struct ApiError {
            #[serde(default)]
            id: String,
            #[serde(default)]
            message: String,
        }
        let text = response.text().await.unwrap_or_default();
        let (message, id) = match serde_json::from_str::<ApiError>(&text) {
            Ok(e) if !e.message.is_empty() => (e.message, e.id),
            _ => (text.chars().take(300).collect(), String::new()),
        };
        let message = redactor.redact(&format!(
            "setting {name} on {app}: HTTP {}: {message}{}",
            status.as_u16(),
            if id.is_empty() { String::new() } else { format!(" ({id})") }
        ));
        Err(CoreError::Platform {
            platform: Platform::Heroku.as_str().into(),
            hint: super::failure_hint(Platform::Heroku, &message),
            retryable: status.as_u16() == 429 || status.is_server_error(),
            message,
        })
    }

    async fn env_unset(&self, env: Environment, name: &str, cancel: &CancellationToken) -> Result<StepOutcome> {
        let app = self.app(env)?;
        crate::local::check_env_name(name, "name")?;
        let out = self.run(&["config:unset", name, "-a", app], cancel).await?;
        let progress = super::strip_ansi(out.stderr.lines().find(|l| l.contains("Unsetting")).unwrap_or("").trim());
        Ok(StepOutcome::passed(if progress.is_empty() {
            format!("removed {name} from {app}")
        } else {
            format!("removed {name} from {app} ({progress})")
        }))
    }

    async fn checklist(&self, cancel: &CancellationToken) -> Vec<ChecklistItem> {
        let mut items = Vec::new();
        match self.run(&["auth:whoami"], cancel).await {
            Ok(out) => items.push(Self::check("heroku login".into(), CheckStatus::Ok, format!("logged in as {}", out.stdout.trim()), None)),
            Err(e) => items.push(Self::check("heroku login".into(), CheckStatus::Fail, e.to_string(), Some(e.hint()))),
        }
        for env in Environment::ALL {
            if self.cfg.environments.get(env).is_none() {
                continue;
            }
            let name = format!("heroku app ({env})");
            let app = match self.app(env) {
                Ok(a) => a,
                Err(e) => {
                    items.push(Self::check(name, CheckStatus::Fail, e.to_string(), Some(e.hint())));
                    continue;
                }
            };
            match self.run(&["apps:info", "-a", app, "--json"], cancel).await {
                Ok(_) => items.push(Self::check(name, CheckStatus::Ok, format!("{app} exists and you can read it"), None)),
                Err(e) => items.push(Self::check(name, CheckStatus::Fail, e.to_string(), Some(e.hint()))),
            }
        }
        items
    }
}

/// The Platform API base the heroku CLI derives from `HEROKU_HOST`: a full URL is used as is,
/// a host gets `https://api.` in front; unset means `https://api.heroku.com`.
pub fn api_base_from_host(host: Option<&str>) -> String {
    match host.map(str::trim).filter(|h| !h.is_empty()) {
        None => "https://api.heroku.com".into(),
        Some(h) if h.starts_with("http") => h.trim_end_matches('/').to_owned(),
        Some(h) => format!("https://api.{}", h.trim_end_matches('/')),
    }
}

/// `v42`, `V42` or `42` → 42.
fn parse_release(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.strip_prefix(['v', 'V']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The commit of a `Deploy <sha>` description.
fn description_commit(description: &str) -> Option<&str> {
    let rest = description.trim().strip_prefix("Deploy ")?;
    let sha = rest.split_whitespace().next()?;
    (sha.len() >= 7 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sha)
}

/// `Promote <app> vN` → (app, N).
fn promote_source(description: &str) -> Option<(String, u64)> {
    let mut words = description.trim().strip_prefix("Promote ")?.split_whitespace();
    let app = words.next()?;
    let n = parse_release(words.next()?)?;
    Some((app.to_owned(), n))
}

/// The commit whose code release `version` runs: its own `Deploy <sha>`, the target of a
/// `Rollback to vN`, the source release of a promotion, or, for config and add-on releases,
/// the code of the last succeeded release before it.
fn commit_of(releases: &[Release], version: u64, source: Option<(&str, &[Release])>) -> Option<String> {
    let mut version = version;
    // Bounded: every step moves to an older release.
    for _ in 0..=releases.len() {
        let r = releases.iter().find(|r| r.version == version)?;
        if let Some(sha) = description_commit(&r.description) {
            return Some(sha.to_owned());
        }
        if let Some(rest) = r.description.trim().strip_prefix("Rollback to ") {
            version = parse_release(rest).filter(|v| *v < r.version)?;
            continue;
        }
        if let Some((app, n)) = promote_source(&r.description) {
            let (src, src_releases) = source?;
            return if src == app { commit_of(src_releases, n, None) } else { None };
        }
        version = releases.iter().filter(|o| o.version < r.version && o.status == "succeeded").map(|o| o.version).max()?;
    }
    None
}

/// A JSON object read for its keys only: the values are skipped unread.
struct KeysOnly(Vec<String>);

impl<'de> Deserialize<'de> for KeysOnly {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = KeysOnly;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object of config vars")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<KeysOnly, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(k);
                }
                keys.sort();
                Ok(KeysOnly(keys))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// The remote as shown in results: any user:password in the URL is masked.
fn display_remote(remote: &str) -> String {
    match (remote.find("://"), remote.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &remote[..scheme], &remote[at + 1..]),
        _ => remote.to_owned(),
    }
}

fn api_error(message: String, retryable: bool) -> CoreError {
    CoreError::Platform {
        platform: Platform::Heroku.as_str().into(),
        message,
        hint: "check the network and HEROKU_HOST; `heroku config -a <app>` shows whether the API answers".into(),
        retryable,
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        e.to_string()
    }
}

/// Standard base64 with padding (RFC 4648), for the Basic authorization header.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(version: u64, status: &str, description: &str) -> Release {
        Release { version, status: status.into(), description: description.into(), current: false, created_at: None, slug: None }
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(input.as_bytes()), want, "{input}");
        }
        assert_eq!(base64(b":abc-123"), "OmFiYy0xMjM=");
    }

    #[test]
    fn api_base_follows_the_heroku_cli() {
        assert_eq!(api_base_from_host(None), "https://api.heroku.com");
        assert_eq!(api_base_from_host(Some("")), "https://api.heroku.com");
        assert_eq!(api_base_from_host(Some("heroku.example.com")), "https://api.heroku.example.com");
        assert_eq!(api_base_from_host(Some("http://127.0.0.1:5000/")), "http://127.0.0.1:5000");
    }

    #[test]
    fn release_ids_parse() {
        assert_eq!(parse_release("v42"), Some(42));
        assert_eq!(parse_release("42"), Some(42));
        assert_eq!(parse_release("v"), None);
        assert_eq!(parse_release("v4x"), None);
        assert_eq!(parse_release("dep-1"), None);
    }

    #[test]
    fn commit_follows_rollbacks_and_config_releases() {
        let releases = vec![
            rel(6, "succeeded", "Set FOO config vars"),
            rel(5, "succeeded", "Rollback to v3"),
            rel(4, "failed", "Deploy bbbbbbb"),
            rel(3, "succeeded", "Deploy aaaaaaa"),
            rel(2, "succeeded", "Set BAR config vars"),
            rel(1, "succeeded", "Initial release"),
        ];
        assert_eq!(commit_of(&releases, 6, None).as_deref(), Some("aaaaaaa"));
        assert_eq!(commit_of(&releases, 4, None).as_deref(), Some("bbbbbbb"));
        assert_eq!(commit_of(&releases, 2, None), None);
        let staging = vec![rel(9, "succeeded", "Deploy ccccccc")];
        let prod = vec![rel(2, "succeeded", "Promote shop-staging v9")];
        assert_eq!(commit_of(&prod, 2, Some(("shop-staging", &staging))).as_deref(), Some("ccccccc"));
    }

    #[test]
    fn config_is_read_for_keys_only() {
        let k: KeysOnly = serde_json::from_str(r#"{"B":"postgres://u:p@h/db","A":{"nested":[1]}}"#).unwrap();
        assert_eq!(k.0, vec!["A", "B"]);
    }

    #[test]
    fn remote_credentials_are_masked() {
        assert_eq!(display_remote("https://user:pw@git.heroku.com/a.git"), "https://***@git.heroku.com/a.git");
        assert_eq!(display_remote("git@heroku.com:a.git"), "git@heroku.com:a.git");
    }
}
