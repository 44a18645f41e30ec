//! The built-in `local` platform: every release is the project's committed tree at a commit,
//! started on a free port, and one reverse proxy per environment on its stable port sends
//! traffic to the live release. A detached supervisor process owns releases and proxies, so
//! they keep serving after the CLI or MCP server that started them exits, until `down`.
//!
//! Layout: [`LocalPlatform`] (here) is what operations call; `client` finds or starts the
//! supervisor and speaks its control API; `supervisor` owns processes, state and proxies;
//! `proxy` is the per-environment HTTP reverse proxy.
//!
//! Files, all under `<root>/.oc-deploy/` (ignored by git through its own `.gitignore`):
//! `local/releases/<env>/<version>/` (extracted trees), `local/logs/<env>-<version>.log`,
//! `local/supervisor.json` (pid, port, token; mode 0600), `local/supervisor.lock`,
//! `local/state.json` (what runs where, for a restarted supervisor), `local/supervisor.log`,
//! and the optional secrets file `local/<env>.env`.

mod client;
mod proxy;
mod supervisor;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::domain::{CommitSha, Environment};
use crate::error::{CoreError, Result};
use crate::process::{Cmd, Runner};
use crate::secret::Secret;

pub use supervisor::run_supervisor;

/// How long a stopping release gets between SIGTERM and the kill.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Lines of an app's log quoted in a start failure.
const LOG_TAIL_LINES: usize = 20;

/// What [`LocalPlatform::start_release`] starts.
#[derive(Debug, Clone)]
pub struct StartRelease {
    pub env: Environment,
    /// The version name (the commit's short SHA); also the release directory's name.
    pub version: String,
    /// The directory the start command runs in (from [`LocalPlatform::prepare_release`]).
    pub app_dir: PathBuf,
    /// The app's start command as an argument list.
    pub start: Vec<String>,
    /// Plain variables for the app (`local.env`); secrets come from `.oc-deploy/local/<env>.env`.
    pub env_vars: BTreeMap<String, String>,
    /// The readiness path, polled until it answers 2xx.
    pub health_path: String,
    pub ready_timeout: Duration,
    /// The environment's stable port, where its proxy listens.
    pub port: u16,
}

/// A release that is running and answered its readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReleaseInfo {
    pub env: Environment,
    pub version: String,
    /// The release's own port (the proxy forwards to it).
    pub port: u16,
    pub pid: u32,
    pub started_at: String,
    /// The app's log file.
    pub log: String,
    /// True when this version was already running and healthy, so nothing was started.
    pub reused: bool,
}

/// A share of traffic sent to a release that is not the active one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CanaryStatus {
    pub version: String,
    pub percent: u8,
}

/// The result of a traffic switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SwitchInfo {
    pub env: Environment,
    /// The release that served before (the rollback target), if any.
    pub previous: Option<String>,
    /// The release that gets the traffic (all of it, unless `canary` is set).
    pub active: String,
    pub canary: Option<CanaryStatus>,
    /// How long the switch took inside the supervisor.
    pub took_ms: u64,
}

/// The local platform at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalStatus {
    pub supervisor: SupervisorStatus,
    pub environments: Vec<EnvStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SupervisorStatus {
    pub running: bool,
    pub pid: Option<u32>,
    pub started_at: Option<String>,
}

/// One environment: its proxy and its releases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EnvStatus {
    pub env: Environment,
    /// The stable port of the environment's proxy.
    pub port: Option<u16>,
    /// Whether the proxy is listening on that port now.
    pub listening: bool,
    pub active: Option<String>,
    pub previous: Option<String>,
    pub canary: Option<CanaryStatus>,
    /// Oldest first.
    pub releases: Vec<ReleaseStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReleaseStatus {
    pub version: String,
    pub port: u16,
    pub pid: u32,
    pub running: bool,
    pub started_at: String,
    pub log: String,
}

/// What `down` stopped.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct DownReport {
    /// Whether a supervisor was running (it has exited now).
    pub supervisor_was_running: bool,
    pub stopped: Vec<StoppedRelease>,
    pub proxies_closed: Vec<ClosedProxy>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StoppedRelease {
    pub env: Environment,
    pub version: String,
    pub pid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClosedProxy {
    pub env: Environment,
    pub port: u16,
}

/// The local platform of one project, as seen by a CLI or MCP server process.
#[derive(Debug)]
pub struct LocalPlatform {
    paths: Paths,
    supervisor_exe: PathBuf,
    runner: Runner,
    client: client::ControlClient,
    /// Keeps two tasks of this process from starting two supervisors at once.
    starting: tokio::sync::Mutex<()>,
}

impl LocalPlatform {
    /// `supervisor_exe` is the oc-deploy binary, started as `<exe> local supervise --project-dir <root>`
    /// when no supervisor serves the project yet.
    pub fn new(root: &Path, supervisor_exe: PathBuf, runner: Runner) -> Self {
        Self {
            paths: Paths::new(root),
            supervisor_exe,
            runner,
            client: client::ControlClient::new(),
            starting: tokio::sync::Mutex::new(()),
        }
    }

    /// The project root this platform works in.
    pub fn root(&self) -> &Path {
        &self.paths.root
    }

    /// The release directory of a version (`.oc-deploy/local/releases/<env>/<version>`).
    pub fn release_dir(&self, env: Environment, version: &str) -> PathBuf {
        self.paths.release_dir(env, version)
    }

    /// The secrets file of an environment (`.oc-deploy/local/<env>.env`, `KEY=VALUE` lines).
    pub fn env_file(&self, env: Environment) -> PathBuf {
        self.paths.env_file(env)
    }

    /// Extracts the committed tree of `commit` as a release of `env` (reused when an earlier
    /// call completed it), runs the build command in its app directory, and returns that
    /// directory. A release directory never changes once complete, so a running process never
    /// sees its files change.
    pub async fn prepare_release(
        &self,
        env: Environment,
        commit: &CommitSha,
        app_path: Option<&str>,
        build: Option<&[String]>,
        cancel: &CancellationToken,
    ) -> Result<PathBuf> {
        self.paths.ensure_dirs()?;
        let dir = self.paths.release_dir(env, &commit.short());
        let app_dir = match app_path.filter(|p| !p.is_empty() && *p != ".") {
            Some(p) => {
                let rel = Path::new(p);
                if rel.is_absolute()
                    || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir))
                {
                    return Err(CoreError::invalid(
                        "app_path",
                        format!("`{p}` must be a relative path inside the project"),
                        "use a path like apps/web",
                    ));
                }
                dir.join(rel)
            }
            None => dir.clone(),
        };
        let missing_app = || {
            CoreError::invalid(
                "app_path",
                format!("`{}` is not a directory in commit {}", app_path.unwrap_or("."), commit.short()),
                "commit the app directory, or fix app_path in .oc-deploy-ops.json",
            )
        };
        let marker = dir.join(COMPLETE_MARKER);
        if marker.is_file() {
            // Complete trees are never rewritten: a release may be running from this one.
            tracing::debug!(%env, version = %commit.short(), "release directory already complete; reusing it");
            return if app_dir.is_dir() { Ok(app_dir) } else { Err(missing_app()) };
        }
        // An incomplete directory is what an interrupted export or a failed build left: start over.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| CoreError::io(format!("removing incomplete release {}", dir.display()), e))?;
        }
        crate::git::export_tree(&self.runner, &self.paths.root, commit, &dir, cancel).await?;
        if !app_dir.is_dir() {
            return Err(missing_app());
        }
        if let Some(argv) = build {
            let cmd =
                Cmd::from_argv(argv, &app_dir, "local.build")?.env("OC_DEPLOY_ENV", env.as_str()).env("OC_DEPLOY_VERSION", commit.short());
            tracing::info!(%env, version = %commit.short(), cmd = %cmd.display(), "building release");
            self.runner.run_checked(&cmd, cancel).await?;
        }
        std::fs::write(&marker, commit.as_str()).map_err(|e| CoreError::io(format!("writing {}", marker.display()), e))?;
        Ok(app_dir)
    }

    /// Starts a release (once; a running, healthy one is reused) and waits until its readiness
    /// path answers 2xx. It takes no traffic until [`LocalPlatform::switch`].
    pub async fn start_release(&self, req: StartRelease) -> Result<ReleaseInfo> {
        check_version(&req.version)?;
        if req.start.is_empty() {
            return Err(CoreError::invalid(
                "local.start",
                "the command is empty",
                "give the program and its arguments, e.g. [\"python3\", \"app.py\"]",
            ));
        }
        if !req.health_path.starts_with('/') {
            return Err(CoreError::invalid(
                "local.health_path",
                format!("`{}` must start with /", req.health_path),
                "use a path like /health",
            ));
        }
        for name in req.env_vars.keys() {
            check_env_name(name, "local.env")?;
        }
        if req.port == 0 {
            return Err(CoreError::invalid(format!("environments.{}.port", req.env), "must not be 0", "pick a fixed port such as 8801"));
        }
        let wire = client::StartRequest::from(&req);
        // The supervisor answers once the release is ready or has failed; allow for the wait.
        let timeout = req.ready_timeout + STOP_GRACE + Duration::from_secs(30);
        self.control().await?.post("/v1/releases/start", &wire, timeout).await
    }

    /// Points the environment's proxy at `version` (all traffic), or with `canary_percent` in
    /// 1..=99 sends that share to `version` and the rest to the active release. Switching back to
    /// the previous release is a rollback: it is still running, so this takes milliseconds.
    pub async fn switch(&self, env: Environment, version: &str, canary_percent: Option<u8>) -> Result<SwitchInfo> {
        check_version(version)?;
        if let Some(p) = canary_percent.filter(|p| !(1..=100).contains(p)) {
            return Err(CoreError::invalid("canary_percent", format!("{p} is not between 1 and 100"), "use a share such as 10"));
        }
        let req = client::SwitchRequest { env, version: version.to_owned(), canary_percent };
        self.control().await?.post("/v1/switch", &req, client::QUICK_CALL).await
    }

    /// Switches the environment back to its previous release.
    pub async fn rollback(&self, env: Environment) -> Result<SwitchInfo> {
        let previous = self.previous_version(env).await?.ok_or_else(|| CoreError::NotFound {
            what: "previous release".into(),
            message: format!("{env} has no previous release to switch back to"),
            hint: "name the version to deploy instead".into(),
        })?;
        self.switch(env, &previous, None).await
    }

    /// Stops a release and removes it from the environment's rotation. Stopping the active
    /// release leaves the environment without a live release (its proxy answers 503).
    pub async fn stop_release(&self, env: Environment, version: &str) -> Result<()> {
        check_version(version)?;
        let req = client::StopRequest { env, version: version.to_owned() };
        let _: serde_json::Value = self.control().await?.post("/v1/releases/stop", &req, STOP_GRACE + client::QUICK_CALL).await?;
        Ok(())
    }

    /// The release serving the environment, or `None` when none is (or no supervisor runs;
    /// a read never starts one).
    pub async fn current_version(&self, env: Environment) -> Result<Option<String>> {
        Ok(self.env_status(env).await?.and_then(|e| e.active))
    }

    /// The release that served before the active one (the rollback target).
    pub async fn previous_version(&self, env: Environment) -> Result<Option<String>> {
        Ok(self.env_status(env).await?.and_then(|e| e.previous))
    }

    /// Stops and deletes the environment's releases beyond the newest `keep` (never the active,
    /// previous or canary one), oldest first. Returns the versions removed.
    pub async fn prune(&self, env: Environment, keep: u32) -> Result<Vec<String>> {
        let req = client::PruneRequest { env, keep };
        let resp: client::PruneResponse = self.control().await?.post("/v1/prune", &req, STOP_GRACE * 4).await?;
        Ok(resp.removed)
    }

    /// Every environment's proxy and releases. Reads only: without a supervisor it reports the
    /// releases the last one left (a release whose supervisor was killed may still run).
    pub async fn status(&self) -> Result<LocalStatus> {
        if let Some(ctl) = self.client.find(&self.paths).await {
            return ctl.get("/v1/status").await;
        }
        let state = supervisor::PersistedState::load(&self.paths)?.unwrap_or_default();
        let environments = state
            .environments
            .into_iter()
            .map(|(env, e)| EnvStatus {
                env,
                port: e.port,
                listening: false,
                active: None,
                previous: None,
                canary: None,
                releases: e
                    .releases
                    .into_iter()
                    .map(|r| ReleaseStatus {
                        running: crate::process::pid_alive(r.pid),
                        version: r.version,
                        port: r.port,
                        pid: r.pid,
                        started_at: r.started_at,
                        log: r.log.display().to_string(),
                    })
                    .collect(),
            })
            .collect();
        Ok(LocalStatus { supervisor: SupervisorStatus { running: false, pid: None, started_at: None }, environments })
    }

    /// Stops every release, closes the proxies and ends the supervisor. Fine when nothing runs;
    /// without a supervisor it still stops releases a killed supervisor left behind.
    pub async fn down(&self) -> Result<DownReport> {
        if let Some(ctl) = self.client.find(&self.paths).await {
            let req = client::ShutdownRequest { stop_releases: true };
            let report: DownReport = ctl.post("/v1/shutdown", &req, STOP_GRACE * 4).await?;
            self.wait_for_exit(ctl.pid).await;
            return Ok(report);
        }
        let mut report = DownReport::default();
        if let Some(state) = supervisor::PersistedState::load(&self.paths)? {
            for (env, e) in state.environments {
                for r in e.releases {
                    // Only a live pid that still answers on its port is ours: pids get reused.
                    if crate::process::pid_alive(r.pid) && supervisor::port_answers(r.port).await {
                        stop_foreign_process(&self.runner, r.pid, STOP_GRACE).await;
                        report.stopped.push(StoppedRelease { env, version: r.version, pid: r.pid });
                    }
                }
            }
        }
        remove_if_exists(&self.paths.state_file())?;
        remove_if_exists(&self.paths.supervisor_file())?;
        Ok(report)
    }

    /// Ends the supervisor and its proxies but leaves the releases running; the next supervisor
    /// re-adopts them and re-binds the proxies (used to replace the oc-deploy binary).
    pub async fn detach_supervisor(&self) -> Result<()> {
        let Some(ctl) = self.client.find(&self.paths).await else {
            return Ok(());
        };
        let req = client::ShutdownRequest { stop_releases: false };
        let _: DownReport = ctl.post("/v1/shutdown", &req, client::QUICK_CALL).await?;
        self.wait_for_exit(ctl.pid).await;
        Ok(())
    }

    async fn env_status(&self, env: Environment) -> Result<Option<EnvStatus>> {
        let Some(ctl) = self.client.find(&self.paths).await else {
            return Ok(None);
        };
        let status: LocalStatus = ctl.get("/v1/status").await?;
        Ok(status.environments.into_iter().find(|e| e.env == env))
    }

    /// Waits (bounded) until the supervisor removed its file, so the caller sees it gone.
    async fn wait_for_exit(&self, pid: u32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.paths.supervisor_file().exists() && crate::process::pid_alive(pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The running supervisor, started first when there is none.
    async fn control(&self) -> Result<client::Control> {
        if let Some(ctl) = self.client.find(&self.paths).await {
            return Ok(ctl);
        }
        let _guard = self.starting.lock().await;
        if let Some(ctl) = self.client.find(&self.paths).await {
            return Ok(ctl);
        }
        self.paths.ensure_dirs()?;
        let root = self.paths.root.to_string_lossy().into_owned();
        let cmd = Cmd::new(self.supervisor_exe.to_string_lossy(), &self.paths.root)
            .args(["local", "supervise", "--project-dir", root.as_str()])
            .pass_env("OC_DEPLOY_LOG");
        let log = self.paths.supervisor_log();
        let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let pid = self.runner.spawn_detached(&cmd, &log).map_err(|e| match e {
            CoreError::ProgramMissing { .. } => CoreError::Local {
                message: format!("cannot start the local supervisor: {} does not exist", self.supervisor_exe.display()),
                hint:
                    "reinstall oc-deploy, or run the same oc-deploy binary that serves MCP (the supervisor is `oc-deploy local supervise`)"
                        .into(),
            },
            other => other,
        })?;
        tracing::info!(pid, "started the local supervisor");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(ctl) = self.client.find(&self.paths).await {
                return Ok(ctl);
            }
            // Another process may have won the race to start one; wait while anyone holds the lock.
            let someone_starting = crate::process::pid_alive(pid) || self.paths.lock_file().exists();
            if !someone_starting || tokio::time::Instant::now() >= deadline {
                let tail = self.runner.redactor().redact(&log_tail(&log, log_start, LOG_TAIL_LINES));
                let why = if someone_starting { "did not come up within 10 s" } else { "exited before it was ready" };
                return Err(CoreError::Local {
                    message: format!("the local supervisor ({}) {why}; last lines of {}:\n{tail}", cmd.display(), log.display()),
                    hint: "run `oc-deploy local down`, then retry; the supervisor log says more".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Written into a release directory last, once its export and build are complete.
const COMPLETE_MARKER: &str = ".complete";

/// Where the local platform keeps its files.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    root: PathBuf,
}

impl Paths {
    pub(crate) fn new(root: &Path) -> Self {
        // One project, one set of paths, whichever spelling of the root a caller used.
        let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        Self { root }
    }

    fn oc_dir(&self) -> PathBuf {
        self.root.join(".oc-deploy")
    }
    fn base(&self) -> PathBuf {
        self.oc_dir().join("local")
    }
    pub(crate) fn supervisor_file(&self) -> PathBuf {
        self.base().join("supervisor.json")
    }
    pub(crate) fn lock_file(&self) -> PathBuf {
        self.base().join("supervisor.lock")
    }
    pub(crate) fn state_file(&self) -> PathBuf {
        self.base().join("state.json")
    }
    pub(crate) fn supervisor_log(&self) -> PathBuf {
        self.base().join("supervisor.log")
    }
    pub(crate) fn release_log(&self, env: Environment, version: &str) -> PathBuf {
        self.base().join("logs").join(format!("{env}-{version}.log"))
    }
    pub(crate) fn releases_dir(&self, env: Environment) -> PathBuf {
        self.base().join("releases").join(env.as_str())
    }
    pub(crate) fn release_dir(&self, env: Environment, version: &str) -> PathBuf {
        self.releases_dir(env).join(version)
    }
    pub(crate) fn env_file(&self, env: Environment) -> PathBuf {
        self.base().join(format!("{env}.env"))
    }

    /// Creates `.oc-deploy/local` (owner-only: it holds the control token and secrets) and the
    /// `.gitignore` that keeps all of `.oc-deploy` out of git status.
    pub(crate) fn ensure_dirs(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let base = self.base();
        std::fs::create_dir_all(&base).map_err(|e| CoreError::io(format!("creating {}", base.display()), e))?;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| CoreError::io(format!("restricting {}", base.display()), e))?;
        let ignore = self.oc_dir().join(".gitignore");
        if !ignore.exists() {
            crate::fsutil::write_atomic(&ignore, b"*\n")?;
        }
        Ok(())
    }
}

/// Checks a version name: it becomes a directory and a file name.
pub(crate) fn check_version(version: &str) -> Result<()> {
    let ok = !version.is_empty()
        && version.len() <= 64
        && !version.starts_with('.')
        && version.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(CoreError::invalid("version", format!("`{version}` is not a release version"), "use the short SHA of a commit, e.g. 1a2b3c4"))
    }
}

/// An environment variable name: letters, digits and `_`, not starting with a digit. The one
/// check for every name oc-deploy passes on (local env files, `deploy_env`, platform config vars).
pub(crate) fn check_env_name(name: &str, field: &str) -> Result<()> {
    let mut bytes = name.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_') && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CoreError::invalid(field, format!("`{name}` is not a valid environment variable name"), "use letters, digits and _"))
    }
}

/// Reads an environment's secrets file: `KEY=VALUE` lines, `#` comments, an optional
/// `export ` prefix and optional surrounding quotes. A missing file is no secrets. Errors name
/// the line, never its value.
pub(crate) fn read_env_file(path: &Path) -> Result<Vec<(String, Secret)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CoreError::io(format!("reading {}", path.display()), e)),
    };
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let field = format!("{}:{}", path.display(), i + 1);
        let Some((name, value)) = line.split_once('=') else {
            return Err(CoreError::invalid(field, "expected NAME=VALUE", "write one NAME=VALUE per line"));
        };
        let name = name.trim();
        check_env_name(name, &field)?;
        let value = value.trim();
        let value = ['"', '\''].iter().find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q))).unwrap_or(value);
        out.push((name.to_owned(), Secret::new(value)));
    }
    Ok(out)
}

/// The last `lines` lines written to `path` from byte `from` on (lossy UTF-8).
pub(crate) fn log_tail(path: &Path, from: u64, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = usize::try_from(from).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CoreError::io(format!("removing {}", path.display()), e)),
    }
}

/// Stops a release process this process did not start (adopted from an earlier supervisor):
/// SIGTERM to its process group, then SIGKILL after `grace`. The `kill` program signals the
/// group; [`crate::process::terminate_pid`] is the fallback where it is missing.
pub(crate) async fn stop_foreign_process(runner: &Runner, pid: u32, grace: Duration) {
    let cancel = CancellationToken::new();
    let group = format!("-{pid}");
    let term = Cmd::new("kill", "/").args(["-s", "TERM", "--", group.as_str()]).timeout(Duration::from_secs(5));
    if !runner.run(&term, &cancel).await.is_ok_and(|o| o.success()) {
        crate::process::terminate_pid(pid);
    }
    let deadline = tokio::time::Instant::now() + grace;
    while crate::process::pid_alive(pid) {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(pid, "release ignored SIGTERM; killing it");
            let kill = Cmd::new("kill", "/").args(["-s", "KILL", "--", group.as_str()]).timeout(Duration::from_secs(5));
            let _ = runner.run(&kill, &cancel).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
