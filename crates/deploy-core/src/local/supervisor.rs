//! The supervisor: the long-lived process (`oc-deploy local supervise`) that owns a project's
//! release processes and environment proxies, serves the token-protected control API on
//! 127.0.0.1, and records what runs in `state.json` so a restarted supervisor re-adopts it.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{self, ApiError, ControlClient, SupervisorFile};
use super::proxy::{self, ProxyHandle, Routing, SharedRouting, Target, Upstream};
use super::{
    COMPLETE_MARKER, CanaryStatus, ClosedProxy, DownReport, EnvStatus, LOG_TAIL_LINES, LocalStatus, Paths, ReleaseInfo, ReleaseStatus,
    STOP_GRACE, StoppedRelease, SupervisorStatus, SwitchInfo, check_version, log_tail, read_env_file, stop_foreign_process,
};
use crate::domain::Environment;
use crate::error::{CoreError, Result};
use crate::process::{Cmd, Runner, Service, pid_alive};
use crate::secret::Redactor;

/// How often a starting release's readiness path is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A prepared release directory without its `.complete` marker younger than this may still be
/// being written by a deploy, so prune leaves it alone.
const INCOMPLETE_GRACE: Duration = Duration::from_secs(3600);

/// A supervisor lock younger than this belongs to a supervisor that is still starting.
const LOCK_STARTUP_GRACE: Duration = Duration::from_secs(15);

/// Runs the supervisor of the project at `root` until `down` (or SIGTERM, which does the same).
/// Returns at once when another live supervisor already serves the project.
pub async fn run_supervisor(root: &Path) -> Result<()> {
    let paths = Paths::new(root);
    paths.ensure_dirs()?;
    let probe = ControlClient::new();
    let Some(lock) = SupervisorLock::acquire(&paths, &probe).await? else {
        tracing::info!(root = %paths.root.display(), "another supervisor already serves this project");
        return Ok(());
    };
    let result = serve(paths.clone()).await;
    lock.release();
    result
}

async fn serve(paths: Paths) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| CoreError::io("binding the supervisor's control port on 127.0.0.1", e))?;
    let port = listener.local_addr().map_err(|e| CoreError::io("reading the control port", e))?.port();
    let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let sup = Arc::new(Supervisor {
        runner: Runner::new(Redactor::from_process_env()),
        http: client::loopback_http_client(),
        upstream: proxy::upstream_client(),
        state: Mutex::new(SupState::default()),
        shutdown: CancellationToken::new(),
        pid: std::process::id(),
        started_at: crate::domain::now_rfc3339(),
        token: token.clone(),
        paths,
    });
    sup.readopt().await;

    let file = SupervisorFile { pid: sup.pid, port, token, started_at: sup.started_at.clone() };
    write_private_json(&sup.paths.supervisor_file(), &file)?;
    tracing::info!(pid = sup.pid, port, root = %sup.paths.root.display(), "local supervisor ready");

    let on_sigterm = sup.clone();
    let signals = tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping every release");
                on_sigterm.shut_down(true).await;
            }
            () = on_sigterm.shutdown.cancelled() => {}
        }
    });

    let app = axum::Router::new()
        .route("/v1/ping", get(ping))
        .route("/v1/status", get(status))
        .route("/v1/releases/start", post(start))
        .route("/v1/releases/stop", post(stop))
        .route("/v1/switch", post(switch))
        .route("/v1/prune", post(prune))
        .route("/v1/shutdown", post(shutdown))
        .layer(axum::middleware::from_fn_with_state(sup.clone(), require_token))
        .with_state(sup.clone());
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(sup.shutdown.clone().cancelled_owned())
        .await;
    signals.abort();
    if let Err(e) = &served {
        tracing::error!(error = %e, "control API stopped");
    }
    // Ended without a shutdown request (an IO error): keep releases for the next supervisor.
    if !sup.state.lock().await.shutting_down {
        sup.shut_down(false).await;
    }
    // A newer supervisor may have replaced the file; only remove our own.
    if SupervisorFile::load(&sup.paths).is_some_and(|f| f.token == sup.token) {
        let _ = std::fs::remove_file(sup.paths.supervisor_file());
    }
    tracing::info!("local supervisor exited");
    served.map_err(|e| CoreError::io("serving the control API", e))
}

/// Writes a file only its owner can read (it holds the control token).
fn write_private_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    crate::fsutil::write_json_atomic(path, value)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| CoreError::io(format!("restricting {}", path.display()), e))
}

/// Whether something accepts connections on a loopback port.
pub(crate) async fn port_answers(port: u16) -> bool {
    matches!(tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(("127.0.0.1", port))).await, Ok(Ok(_)))
}

/// A free loopback port for a release, found by letting the kernel pick one.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| CoreError::io("finding a free port on 127.0.0.1", e))?;
    Ok(l.local_addr().map_err(|e| CoreError::io("finding a free port on 127.0.0.1", e))?.port())
}

/// A sortable timestamp with milliseconds: releases started within one second still order.
fn now_millis() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

// ---------------------------------------------------------------------------------------------
// State

/// `state.json`: what the supervisor runs, enough for its successor to take over.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PersistedState {
    pub environments: BTreeMap<Environment, PersistedEnv>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PersistedEnv {
    pub port: Option<u16>,
    pub active: Option<String>,
    pub previous: Option<String>,
    pub canary: Option<CanaryStatus>,
    pub releases: Vec<PersistedRelease>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PersistedRelease {
    pub version: String,
    pub port: u16,
    pub pid: u32,
    pub started_at: String,
    pub log: PathBuf,
    pub app_dir: PathBuf,
}

impl PersistedState {
    pub(crate) fn load(paths: &Paths) -> Result<Option<Self>> {
        let path = paths.state_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CoreError::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| CoreError::Local {
            message: format!("{} is not readable: {e}", path.display()),
            hint: "run `oc-deploy local down` to reset the local platform".into(),
        })
    }
}

/// A release process: started by this supervisor, or adopted from an earlier one.
enum Process {
    Child(Service),
    Adopted,
}

struct Release {
    version: String,
    port: u16,
    pid: u32,
    started_at: String,
    log: PathBuf,
    app_dir: PathBuf,
    process: Process,
}

impl Release {
    fn is_running(&mut self) -> bool {
        match &mut self.process {
            Process::Child(s) => s.try_exit().is_none(),
            Process::Adopted => pid_alive(self.pid),
        }
    }

    async fn stop(self, runner: &Runner) {
        tracing::info!(version = %self.version, pid = self.pid, "stopping release");
        match self.process {
            Process::Child(mut s) => s.stop(STOP_GRACE).await,
            Process::Adopted => stop_foreign_process(runner, self.pid, STOP_GRACE).await,
        }
    }

    fn info(&self, env: Environment, reused: bool) -> ReleaseInfo {
        ReleaseInfo {
            env,
            version: self.version.clone(),
            port: self.port,
            pid: self.pid,
            started_at: self.started_at.clone(),
            log: self.log.display().to_string(),
            reused,
        }
    }
}

#[derive(Default)]
struct EnvState {
    port: Option<u16>,
    proxy: Option<ProxyHandle>,
    routing: SharedRouting,
    active: Option<String>,
    previous: Option<String>,
    canary: Option<CanaryStatus>,
    releases: BTreeMap<String, Release>,
}

impl EnvState {
    /// Publishes active and canary to the proxy in one write.
    fn sync_routing(&self) {
        let target = |v: &str| self.releases.get(v).map(|r| Target { version: r.version.clone(), port: r.port });
        let routing = Routing {
            active: self.active.as_deref().and_then(target),
            canary: self.canary.as_ref().and_then(|c| target(&c.version).map(|t| (t, c.percent))),
        };
        match self.routing.write() {
            Ok(mut r) => *r = routing,
            Err(poisoned) => *poisoned.into_inner() = routing,
        }
    }

    /// Forgets a version in active, previous and canary.
    fn unlink(&mut self, version: &str) {
        if self.active.as_deref() == Some(version) {
            self.active = None;
        }
        if self.previous.as_deref() == Some(version) {
            self.previous = None;
        }
        if self.canary.as_ref().is_some_and(|c| c.version == version) {
            self.canary = None;
        }
    }

    fn protected(&self) -> HashSet<String> {
        self.active.iter().chain(self.previous.iter()).cloned().chain(self.canary.iter().map(|c| c.version.clone())).collect()
    }
}

#[derive(Default)]
struct SupState {
    envs: BTreeMap<Environment, EnvState>,
    /// Releases being started now, so a second start of the same one is refused.
    starting: HashSet<(Environment, String)>,
    shutting_down: bool,
}

impl SupState {
    fn persisted(&self) -> PersistedState {
        let environments = self
            .envs
            .iter()
            .map(|(env, e)| {
                let releases = e
                    .releases
                    .values()
                    .map(|r| PersistedRelease {
                        version: r.version.clone(),
                        port: r.port,
                        pid: r.pid,
                        started_at: r.started_at.clone(),
                        log: r.log.clone(),
                        app_dir: r.app_dir.clone(),
                    })
                    .collect();
                let pe = PersistedEnv {
                    port: e.port,
                    active: e.active.clone(),
                    previous: e.previous.clone(),
                    canary: e.canary.clone(),
                    releases,
                };
                (*env, pe)
            })
            .collect();
        PersistedState { environments }
    }
}

struct Supervisor {
    paths: Paths,
    runner: Runner,
    http: reqwest::Client,
    upstream: Upstream,
    state: Mutex<SupState>,
    shutdown: CancellationToken,
    pid: u32,
    started_at: String,
    token: String,
}

impl Supervisor {
    fn persist(&self, st: &SupState) {
        if let Err(e) = crate::fsutil::write_json_atomic(&self.paths.state_file(), &st.persisted()) {
            tracing::error!(error = %e, "could not record the supervisor state");
        }
    }

    /// Takes over the releases an earlier supervisor left running, and re-binds the proxies.
    async fn readopt(&self) {
        let persisted = match PersistedState::load(&self.paths) {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the previous supervisor state");
                return;
            }
        };
        let mut st = self.state.lock().await;
        for (env, pe) in persisted.environments {
            let mut es = EnvState { port: pe.port, ..EnvState::default() };
            for r in pe.releases {
                // A live pid alone is not proof: pids are reused. The release must also answer.
                if pid_alive(r.pid) && port_answers(r.port).await {
                    tracing::info!(%env, version = %r.version, pid = r.pid, port = r.port, "re-adopted a running release");
                    let release = Release {
                        version: r.version.clone(),
                        port: r.port,
                        pid: r.pid,
                        started_at: r.started_at,
                        log: r.log,
                        app_dir: r.app_dir,
                        process: Process::Adopted,
                    };
                    es.releases.insert(r.version, release);
                } else {
                    tracing::info!(%env, version = %r.version, pid = r.pid, "release from the previous supervisor is gone");
                }
            }
            let known = |v: Option<String>| v.filter(|v| es.releases.contains_key(v));
            es.active = known(pe.active);
            es.previous = known(pe.previous);
            es.canary = pe.canary.filter(|c| es.releases.contains_key(&c.version));
            es.sync_routing();
            if let Some(port) = es.port {
                match proxy::bind(env, port, es.routing.clone(), self.upstream.clone()).await {
                    Ok(p) => es.proxy = Some(p),
                    Err(e) => tracing::error!(%env, error = %e, "could not re-bind the proxy"),
                }
            }
            st.envs.insert(env, es);
        }
        self.persist(&st);
    }

    fn status(&self, st: &mut SupState) -> LocalStatus {
        let environments = st
            .envs
            .iter_mut()
            .map(|(env, es)| {
                let mut releases: Vec<ReleaseStatus> = es
                    .releases
                    .values_mut()
                    .map(|r| ReleaseStatus {
                        running: r.is_running(),
                        version: r.version.clone(),
                        port: r.port,
                        pid: r.pid,
                        started_at: r.started_at.clone(),
                        log: r.log.display().to_string(),
                    })
                    .collect();
                releases.sort_by(|a, b| (&a.started_at, &a.version).cmp(&(&b.started_at, &b.version)));
                EnvStatus {
                    env: *env,
                    port: es.port,
                    listening: es.proxy.is_some(),
                    active: es.active.clone(),
                    previous: es.previous.clone(),
                    canary: es.canary.clone(),
                    releases,
                }
            })
            .collect();
        LocalStatus {
            supervisor: SupervisorStatus { running: true, pid: Some(self.pid), started_at: Some(self.started_at.clone()) },
            environments,
        }
    }

    /// Makes sure the environment's proxy listens on `port` (moving it when the port changed).
    async fn ensure_proxy(&self, env: Environment, es: &mut EnvState, port: u16) -> Result<()> {
        if es.proxy.as_ref().is_some_and(|p| p.port == port) {
            return Ok(());
        }
        let fresh = proxy::bind(env, port, es.routing.clone(), self.upstream.clone()).await?;
        if let Some(old) = es.proxy.replace(fresh) {
            tracing::info!(%env, old = old.port, new = port, "the environment's port changed; moving its proxy");
            old.close().await;
        }
        es.port = Some(port);
        Ok(())
    }

    async fn health_ok(&self, port: u16, health_path: &str) -> bool {
        let url = format!("http://127.0.0.1:{port}{health_path}");
        self.http.get(url).timeout(Duration::from_secs(2)).send().await.is_ok_and(|r| r.status().is_success())
    }

    async fn start_release(&self, req: client::StartRequest) -> Result<ReleaseInfo> {
        check_version(&req.version)?;
        let env = req.env;
        let key = (env, req.version.clone());
        let stale = {
            let mut st = self.state.lock().await;
            if st.shutting_down {
                return Err(shutting_down());
            }
            if st.starting.contains(&key) {
                return Err(CoreError::Local {
                    message: format!("release {} of {env} is already being started", req.version),
                    hint: "wait for that start to finish (oc-deploy local status)".into(),
                });
            }
            let es = st.envs.entry(env).or_default();
            let mut stale = None;
            if let Some(existing) = es.releases.get_mut(&req.version) {
                if existing.is_running() && self.health_ok(existing.port, &req.health_path).await {
                    return Ok(existing.info(env, true));
                }
                tracing::info!(%env, version = %req.version, "replacing a release that stopped answering");
                stale = es.releases.remove(&req.version);
                es.unlink(&req.version);
                es.sync_routing();
            }
            // Bind first: a taken stable port should fail before anything starts.
            self.ensure_proxy(env, es, req.port).await?;
            st.starting.insert(key.clone());
            self.persist(&st);
            stale
        };
        if let Some(old) = stale {
            old.stop(&self.runner).await;
        }
        let launched = self.launch(&req).await;
        let mut st = self.state.lock().await;
        st.starting.remove(&key);
        let release = launched?;
        if st.shutting_down {
            drop(st);
            release.stop(&self.runner).await;
            return Err(shutting_down());
        }
        let info = release.info(env, false);
        st.envs.entry(env).or_default().releases.insert(release.version.clone(), release);
        self.persist(&st);
        tracing::info!(%env, version = %info.version, port = info.port, pid = info.pid, "release ready");
        Ok(info)
    }

    /// Starts the release process and waits for its readiness path.
    async fn launch(&self, req: &client::StartRequest) -> Result<Release> {
        let env = req.env;
        if !req.app_dir.is_dir() {
            return Err(CoreError::NotFound {
                what: "release directory".into(),
                message: format!("{} does not exist", req.app_dir.display()),
                hint: "prepare the release first (LocalPlatform::prepare_release)".into(),
            });
        }
        let port = free_port()?;
        let log = self.paths.release_log(env, &req.version);
        let log_start =
            append_log_header(&log, &format!("--- oc-deploy: starting {} ({env}) on port {port} at {} ---", req.version, now_millis()))?;
        let mut cmd = Cmd::from_argv(&req.start, &req.app_dir, "local.start")?;
        for (k, v) in &req.env_vars {
            cmd = cmd.env(k, v);
        }
        for (k, secret) in read_env_file(&self.paths.env_file(env))? {
            cmd = cmd.env_secret(k, secret);
        }
        // Last, so neither `local.env` nor the secrets file can change what the app is told.
        cmd = cmd.env("PORT", port.to_string()).env("OC_DEPLOY_ENV", env.as_str()).env("OC_DEPLOY_VERSION", &req.version);
        tracing::info!(%env, version = %req.version, port, cmd = %cmd.display(), "starting release");
        let mut service = self.runner.spawn_service(&cmd, &log)?;

        let url = format!("http://127.0.0.1:{port}{}", req.health_path);
        let timeout = Duration::from_millis(req.ready_timeout_ms);
        let deadline = Instant::now() + timeout;
        let failure = loop {
            if let Some(code) = service.try_exit() {
                let how = code.map_or_else(|| "killed by a signal".to_owned(), |c| format!("exit code {c}"));
                break format!("the process exited ({how}) before {} answered", req.health_path);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let per_try = remaining.clamp(Duration::from_millis(50), Duration::from_secs(2));
            let last = match self.http.get(&url).timeout(per_try).send().await {
                Ok(r) if r.status().is_success() => {
                    return Ok(Release {
                        version: req.version.clone(),
                        port,
                        pid: service.pid,
                        started_at: now_millis(),
                        log,
                        app_dir: req.app_dir.clone(),
                        process: Process::Child(service),
                    });
                }
                Ok(r) => format!("{} answered {}", req.health_path, r.status()),
                Err(e) if e.is_connect() => format!("nothing listened on port {port} yet"),
                Err(e) if e.is_timeout() => format!("{} did not answer in time", req.health_path),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                break format!("{} did not answer 2xx within {:.1} s (last: {last})", req.health_path, timeout.as_secs_f64());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        service.stop(STOP_GRACE).await;
        let tail = self.runner.redactor().redact(&log_tail(&log, log_start, LOG_TAIL_LINES));
        let tail = if tail.trim().is_empty() { "(the app wrote nothing)".to_owned() } else { tail };
        tracing::warn!(%env, version = %req.version, %failure, "release refused");
        Err(CoreError::Local {
            message: format!(
                "release {} of {env} did not become ready: {failure}; it was stopped and takes no traffic.\nlast lines of {}:\n{tail}",
                req.version,
                log.display()
            ),
            hint: format!(
                "fix the app so `{}` answers 2xx on $PORT within local.ready_timeout_seconds ({} s), commit, and deploy again; the full log is {}",
                req.health_path,
                timeout.as_secs(),
                log.display()
            ),
        })
    }

    async fn switch(&self, req: client::SwitchRequest) -> Result<SwitchInfo> {
        let started = Instant::now();
        let env = req.env;
        if let Some(p) = req.canary_percent.filter(|p| !(1..=100).contains(p)) {
            return Err(CoreError::invalid("canary_percent", format!("{p} is not between 1 and 100"), "use a share such as 10"));
        }
        let mut st = self.state.lock().await;
        if st.shutting_down {
            return Err(shutting_down());
        }
        let not_running = || CoreError::NotFound {
            what: "release".into(),
            message: format!("release {} is not running in {env}", req.version),
            hint: "start it first (deploy that version again); `oc-deploy local status` lists running releases".into(),
        };
        let es = st.envs.get_mut(&env).ok_or_else(not_running)?;
        let release = es.releases.get_mut(&req.version).ok_or_else(not_running)?;
        if !release.is_running() {
            return Err(CoreError::Local {
                message: format!("release {} of {env} has exited", req.version),
                hint: format!("read its log ({}) and deploy it again", release.log.display()),
            });
        }
        let is_active = es.active.as_deref() == Some(req.version.as_str());
        match req.canary_percent {
            Some(p) if p < 100 && es.active.is_some() && !is_active => {
                es.canary = Some(CanaryStatus { version: req.version.clone(), percent: p });
            }
            _ => {
                if !is_active {
                    es.previous = es.active.replace(req.version.clone());
                }
                es.canary = None;
            }
        }
        if es.proxy.is_none() {
            let port = es.port.ok_or_else(|| CoreError::Local {
                message: format!("{env} has no port for its proxy"),
                hint: format!("set environments.{env}.port in .oc-deploy-ops.json"),
            })?;
            es.proxy = Some(proxy::bind(env, port, es.routing.clone(), self.upstream.clone()).await?);
        }
        es.sync_routing();
        let info = SwitchInfo {
            env,
            previous: es.previous.clone(),
            active: es.active.clone().unwrap_or_default(),
            canary: es.canary.clone(),
            took_ms: 0,
        };
        self.persist(&st);
        let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(%env, active = %info.active, canary = ?info.canary, took_ms, "traffic switched");
        Ok(SwitchInfo { took_ms, ..info })
    }

    async fn stop_release(&self, req: client::StopRequest) -> Result<()> {
        let release = {
            let mut st = self.state.lock().await;
            let es = st.envs.get_mut(&req.env);
            let release = es.and_then(|es| {
                let r = es.releases.remove(&req.version)?;
                es.unlink(&req.version);
                es.sync_routing();
                Some(r)
            });
            let Some(release) = release else {
                return Err(CoreError::NotFound {
                    what: "release".into(),
                    message: format!("release {} is not running in {}", req.version, req.env),
                    hint: "`oc-deploy local status` lists running releases".into(),
                });
            };
            self.persist(&st);
            release
        };
        release.stop(&self.runner).await;
        Ok(())
    }

    async fn prune(&self, req: client::PruneRequest) -> Result<Vec<String>> {
        let env = req.env;
        let releases_dir = self.paths.releases_dir(env);
        let (to_stop, to_delete) = {
            let mut st = self.state.lock().await;
            let es = st.envs.entry(env).or_default();
            let protected = es.protected();
            // Every release of the environment, running or only on disk, newest first.
            let mut all: Vec<(String, String)> = es.releases.values().map(|r| (r.started_at.clone(), r.version.clone())).collect();
            for (version, stamp) in disk_releases(&releases_dir) {
                if !es.releases.contains_key(&version) {
                    all.push((stamp, version));
                }
            }
            all.sort_by(|a, b| b.cmp(a));
            let kept_protected = all.iter().filter(|(_, v)| protected.contains(v)).count();
            let mut slots = usize::try_from(req.keep).unwrap_or(usize::MAX).saturating_sub(kept_protected);
            let mut to_delete = Vec::new();
            for (_, version) in all {
                if protected.contains(&version) {
                    continue;
                }
                if slots > 0 {
                    slots -= 1;
                } else {
                    to_delete.push(version);
                }
            }
            to_delete.reverse();
            let to_stop: Vec<Release> = to_delete.iter().filter_map(|v| es.releases.remove(v)).collect();
            self.persist(&st);
            (to_stop, to_delete)
        };
        for r in to_stop {
            r.stop(&self.runner).await;
        }
        for version in &to_delete {
            let dir = releases_dir.join(version);
            match tokio::fs::remove_dir_all(&dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(CoreError::io(format!("removing {}", dir.display()), e)),
            }
        }
        if !to_delete.is_empty() {
            tracing::info!(%env, removed = ?to_delete, "pruned releases");
        }
        Ok(to_delete)
    }

    /// Closes the proxies and, with `stop_releases`, stops every release; then ends the
    /// control API. Without `stop_releases` the releases keep running for the next supervisor.
    async fn shut_down(&self, stop_releases: bool) -> DownReport {
        let mut report = DownReport { supervisor_was_running: true, ..DownReport::default() };
        let mut proxies = Vec::new();
        let mut releases = Vec::new();
        {
            let mut st = self.state.lock().await;
            st.shutting_down = true;
            for (env, es) in &mut st.envs {
                if let Some(p) = es.proxy.take() {
                    report.proxies_closed.push(ClosedProxy { env: *env, port: p.port });
                    proxies.push(p);
                }
                if stop_releases {
                    es.active = None;
                    es.previous = None;
                    es.canary = None;
                    es.sync_routing();
                    releases.extend(std::mem::take(&mut es.releases).into_values().map(|r| (*env, r)));
                }
            }
            if stop_releases {
                if let Err(e) = std::fs::remove_file(self.paths.state_file())
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(error = %e, "could not remove state.json");
                }
            } else {
                self.persist(&st);
            }
        }
        for p in proxies {
            p.close().await;
        }
        let mut stopping = tokio::task::JoinSet::new();
        for (env, r) in releases {
            report.stopped.push(StoppedRelease { env, version: r.version.clone(), pid: r.pid });
            let runner = self.runner.clone();
            stopping.spawn(async move { r.stop(&runner).await });
        }
        while stopping.join_next().await.is_some() {}
        self.shutdown.cancel();
        report
    }
}

fn shutting_down() -> CoreError {
    CoreError::Local {
        message: "the local supervisor is shutting down".into(),
        hint: "retry in a moment; a new supervisor starts on demand".into(),
    }
}

/// Appends a line to a release log and returns where the new attempt's output starts.
fn append_log_header(log: &Path, line: &str) -> Result<u64> {
    use std::io::Write;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::io(format!("creating {}", dir.display()), e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| CoreError::io(format!("opening {}", log.display()), e))?;
    let start = f.metadata().map(|m| m.len()).unwrap_or(0);
    writeln!(f, "{line}").map_err(|e| CoreError::io(format!("writing {}", log.display()), e))?;
    Ok(start)
}

/// Release directories on disk with a sortable time stamp; directories still being written are
/// skipped.
fn disk_releases(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        if check_version(&name).is_err() || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        let fresh = modified.elapsed().map_or(true, |age| age < INCOMPLETE_GRACE);
        if !entry.path().join(COMPLETE_MARKER).exists() && fresh {
            continue;
        }
        let stamp = chrono::DateTime::<chrono::Utc>::from(modified).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        out.push((name, stamp));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The control API

/// A [`CoreError`] as an HTTP answer.
struct Failure(CoreError);

impl From<CoreError> for Failure {
    fn from(e: CoreError) -> Self {
        Self(e)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            CoreError::InvalidInput { .. } => StatusCode::BAD_REQUEST,
            CoreError::NotFound { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(ApiError::from_core(&self.0))).into_response()
    }
}

type Api<T> = std::result::Result<Json<T>, Failure>;

async fn require_token(State(sup): State<Arc<Supervisor>>, req: Request, next: Next) -> Response {
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|t| same_secret(t.as_bytes(), sup.token.as_bytes())) {
        return next.run(req).await;
    }
    let err = ApiError {
        code: "unauthorized".into(),
        message: "missing or wrong bearer token".into(),
        hint: "the token is in .oc-deploy/local/supervisor.json".into(),
        subject: String::new(),
    };
    (StatusCode::UNAUTHORIZED, Json(err)).into_response()
}

/// Compares without stopping at the first difference, so timing does not reveal the token.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn ping() -> Json<&'static str> {
    Json("ok")
}

async fn status(State(sup): State<Arc<Supervisor>>) -> Json<LocalStatus> {
    let mut st = sup.state.lock().await;
    Json(sup.status(&mut st))
}

async fn start(State(sup): State<Arc<Supervisor>>, Json(req): Json<client::StartRequest>) -> Api<ReleaseInfo> {
    // Its own task: a caller that hangs up must not abandon a half-started process.
    let task = tokio::spawn(async move { sup.start_release(req).await });
    match task.await {
        Ok(r) => Ok(Json(r?)),
        Err(e) => Err(Failure(CoreError::Local {
            message: format!("starting the release failed inside the supervisor: {e}"),
            hint: "see supervisor.log".into(),
        })),
    }
}

async fn switch(State(sup): State<Arc<Supervisor>>, Json(req): Json<client::SwitchRequest>) -> Api<SwitchInfo> {
    Ok(Json(sup.switch(req).await?))
}

async fn stop(State(sup): State<Arc<Supervisor>>, Json(req): Json<client::StopRequest>) -> Api<serde_json::Value> {
    sup.stop_release(req).await?;
    Ok(Json(serde_json::json!({ "stopped": true })))
}

async fn prune(State(sup): State<Arc<Supervisor>>, Json(req): Json<client::PruneRequest>) -> Api<client::PruneResponse> {
    let removed = sup.prune(req).await?;
    Ok(Json(client::PruneResponse { removed }))
}

async fn shutdown(State(sup): State<Arc<Supervisor>>, Json(req): Json<client::ShutdownRequest>) -> Json<DownReport> {
    Json(sup.shut_down(req.stop_releases).await)
}

// ---------------------------------------------------------------------------------------------
// One supervisor per project

/// `supervisor.lock`: taken with create-new, so of two supervisors starting at once one wins.
struct SupervisorLock {
    path: PathBuf,
    nonce: String,
}

#[derive(Serialize, Deserialize)]
struct LockFile {
    pid: u32,
    nonce: String,
}

impl SupervisorLock {
    /// The lock, or `None` when another live supervisor serves (or is starting for) the project.
    async fn acquire(paths: &Paths, probe: &ControlClient) -> Result<Option<Self>> {
        if probe.find(paths).await.is_some() {
            return Ok(None);
        }
        let path = paths.lock_file();
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        for _ in 0..3 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    use std::io::Write;
                    let body = serde_json::to_vec(&LockFile { pid: std::process::id(), nonce: nonce.clone() }).unwrap_or_default();
                    f.write_all(&body).map_err(|e| CoreError::io(format!("writing {}", path.display()), e))?;
                    return Ok(Some(Self { path, nonce }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<LockFile>(&t).ok());
                    let age = std::fs::metadata(&path).and_then(|m| m.modified()).ok().and_then(|m| m.elapsed().ok()).unwrap_or_default();
                    let holder_alive = holder.as_ref().is_some_and(|h| pid_alive(h.pid));
                    // A live holder still starting up, or one that serves: it is the supervisor.
                    if (holder_alive || holder.is_none()) && age < LOCK_STARTUP_GRACE || probe.find(paths).await.is_some() {
                        return Ok(None);
                    }
                    tracing::info!(path = %path.display(), "taking over a stale supervisor lock");
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(CoreError::io(format!("creating {}", path.display()), e)),
            }
        }
        Err(CoreError::Local {
            message: format!("could not take {}", path.display()),
            hint: "remove the file if no `oc-deploy local supervise` process runs, then retry".into(),
        })
    }

    fn release(self) {
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| serde_json::from_str::<LockFile>(&t).ok())
            .is_some_and(|l| l.nonce == self.nonce);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
