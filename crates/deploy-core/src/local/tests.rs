//! Tests of the local platform with real processes and real HTTP on 127.0.0.1: a tiny Python
//! app in a throwaway git repository, a supervisor running as a task of the test, and requests
//! through the environment's stable port, as a user's browser or smoke test would send them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::supervisor::PersistedState;
use super::*;
use crate::git::testing::{commit_files, init_repo};
use crate::process::{pid_alive, terminate_pid};

/// The test app: answers `/health` with its version (500 when a `FAIL_HEALTH` file ships with
/// it), exits at once when a `CRASH` file does, and echoes what it received elsewhere.
const APP: &str = r#"
import http.server, json, os, sys
PORT = int(os.environ["PORT"])
VERSION = os.environ.get("OC_DEPLOY_VERSION", "unknown")
ENV = os.environ.get("OC_DEPLOY_ENV", "unknown")
HERE = os.path.dirname(os.path.abspath(__file__))
print(f"app {VERSION} starting in {ENV} on port {PORT}", flush=True)
if os.path.exists(os.path.join(HERE, "CRASH")):
    print("fatal: CRASH file present, exiting", flush=True)
    sys.exit(3)
FAIL = os.path.exists(os.path.join(HERE, "FAIL_HEALTH"))
if FAIL and os.environ.get("LEAK_SECRET"):
    print("debug: API_TOKEN=" + os.environ.get("API_TOKEN", ""), flush=True)

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per response: headers and body in separate small writes stall on Nagle.
    wbufsize = 65536

    def reply(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            if FAIL:
                print("health check failing: FAIL_HEALTH present", flush=True)
                self.reply(500, "unhealthy " + VERSION)
            else:
                self.reply(200, "ok " + VERSION)
        elif self.path == "/secret":
            self.reply(200, os.environ.get("API_TOKEN", "<unset>"))
        else:
            self.reply(200, json.dumps({
                "version": VERSION, "env": ENV, "method": "GET", "path": self.path,
                "xff": self.headers.get("x-forwarded-for"), "custom": self.headers.get("x-custom"),
                "greeting": os.environ.get("GREETING"),
            }))

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        self.reply(201, json.dumps({"version": VERSION, "method": "POST", "path": self.path, "body": body}))

    def log_message(self, fmt, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
"#;

const STAGING: Environment = Environment::Staging;
const PRODUCTION: Environment = Environment::Production;

/// A free port for an environment's proxy, below the kernel's ephemeral range: releases get
/// ephemeral ports, so one could otherwise take an environment's port before its proxy binds.
fn free_port() -> u16 {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let ephemeral_start: u16 = range.split_whitespace().next().and_then(|s| s.parse().ok()).unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_start.max(10_001));
    for _ in 0..200 {
        let n = u16::try_from(uuid::Uuid::new_v4().as_u128() % u128::from(high - low)).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", low + n)).is_ok() {
            return low + n;
        }
    }
    panic!("no free port below {high}");
}

/// A project with the app committed, a supervisor task, and a guard that stops every release
/// process when the test ends, passed or failed.
struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    platform: LocalPlatform,
    supervisor: Option<tokio::task::JoinHandle<Result<()>>>,
    ports: BTreeMap<Environment, u16>,
    pids: Arc<StdMutex<Vec<u32>>>,
}

impl Drop for Project {
    fn drop(&mut self) {
        let mut pids = self.pids.lock().map(|p| p.clone()).unwrap_or_default();
        if let Ok(Some(state)) = PersistedState::load(&self.platform.paths) {
            pids.extend(state.environments.values().flat_map(|e| e.releases.iter().map(|r| r.pid)));
        }
        for pid in pids {
            if pid_alive(pid) {
                terminate_pid(pid);
            }
        }
        if let Some(s) = self.supervisor.take() {
            s.abort();
        }
    }
}

impl Project {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        init_repo(&root).await;
        commit_files(&root, &[("app.py", APP)], "app").await;
        // The oc-deploy binary does not exist in these tests: the supervisor runs as a task, and
        // a platform that tried to start one would fail loudly on this path.
        let platform = LocalPlatform::new(&root, PathBuf::from("/nonexistent/oc-deploy"), Runner::default());
        let ports = BTreeMap::from([(STAGING, free_port()), (PRODUCTION, free_port())]);
        let mut p = Self { _dir: dir, root, platform, supervisor: None, ports, pids: Arc::default() };
        p.start_supervisor().await;
        p
    }

    async fn start_supervisor(&mut self) {
        let root = self.root.clone();
        self.supervisor = Some(tokio::spawn(async move { run_supervisor(&root).await }));
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.platform.client.find(&self.platform.paths).await.is_none() {
            assert!(Instant::now() < deadline, "the supervisor did not come up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the supervisor task to end (after down or detach).
    async fn supervisor_exited(&mut self) {
        let task = self.supervisor.take().expect("a supervisor task");
        let result = tokio::time::timeout(Duration::from_secs(5), task).await.expect("the supervisor did not exit").unwrap();
        result.unwrap();
    }

    fn port(&self, env: Environment) -> u16 {
        self.ports[&env]
    }

    async fn commit(&self, files: &[(&str, &str)], message: &str) -> CommitSha {
        commit_files(&self.root, files, message).await
    }

    fn request(&self, env: Environment, commit: &CommitSha, app_dir: PathBuf) -> StartRelease {
        StartRelease {
            env,
            version: commit.short(),
            app_dir,
            start: vec!["python3".into(), "app.py".into()],
            env_vars: BTreeMap::from([("GREETING".to_owned(), "hello".to_owned())]),
            health_path: "/health".into(),
            ready_timeout: Duration::from_secs(4),
            port: self.port(env),
        }
    }

    /// Prepares and starts the release of `commit`, without switching traffic to it.
    async fn start(&self, env: Environment, commit: &CommitSha) -> Result<ReleaseInfo> {
        self.start_with(env, commit, |r| r).await
    }

    async fn start_with(
        &self,
        env: Environment,
        commit: &CommitSha,
        edit: impl FnOnce(StartRelease) -> StartRelease,
    ) -> Result<ReleaseInfo> {
        let app_dir = self.platform.prepare_release(env, commit, None, None, &CancellationToken::new()).await?;
        let info = self.platform.start_release(edit(self.request(env, commit, app_dir))).await?;
        self.pids.lock().unwrap().push(info.pid);
        Ok(info)
    }

    /// Starts `commit` and sends it all of the environment's traffic.
    async fn go_live(&self, env: Environment, commit: &CommitSha) -> ReleaseInfo {
        let info = self.start(env, commit).await.unwrap();
        self.platform.switch(env, &info.version, None).await.unwrap();
        info
    }

    /// GET through the environment's stable port: (status, x-oc-deploy-version, body).
    async fn get(&self, env: Environment, path: &str) -> (u16, Option<String>, String) {
        let resp = http().get(format!("http://127.0.0.1:{}{path}", self.port(env))).send().await.unwrap();
        let version = resp.headers().get(proxy::VERSION_HEADER).map(|v| v.to_str().unwrap().to_owned());
        (resp.status().as_u16(), version, resp.text().await.unwrap())
    }
}

fn http() -> reqwest::Client {
    client::loopback_http_client()
}

#[track_caller]
fn assert_serves(got: (u16, Option<String>, String), version: &str) {
    assert_eq!(got.0, 200, "{got:?}");
    assert_eq!(got.1.as_deref(), Some(version), "{got:?}");
    assert_eq!(got.2, format!("ok {version}"), "{got:?}");
}

async fn wait_dead(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while pid_alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switch_and_instant_rollback() {
    let p = Project::new().await;
    let v1 = p.commit(&[("README", "one")], "v1").await;
    let r1 = p.go_live(STAGING, &v1).await;
    assert_eq!(r1.version.len(), 7);
    assert_serves(p.get(STAGING, "/health").await, &r1.version);
    // The release directory is the committed tree, and git status stays clean.
    assert!(p.root.join(".oc-deploy/local/releases/staging").join(&r1.version).join("app.py").is_file());
    assert_eq!(std::fs::read_to_string(p.root.join(".oc-deploy/.gitignore")).unwrap().trim(), "*");
    assert!(!crate::git::is_dirty(&Runner::default(), &p.root, &CancellationToken::new()).await.unwrap());
    assert_eq!(crate::git::testing::git_ok(&p.root, &["status", "--porcelain"]).await, "");

    // The control API is the owner's alone: its file and directory are private, and a request
    // without the token is refused.
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &str| std::fs::metadata(p.root.join(path)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(".oc-deploy/local/supervisor.json"), 0o600);
    assert_eq!(mode(".oc-deploy/local"), 0o700);
    let file = client::SupervisorFile::load(&p.platform.paths).unwrap();
    let status_url = format!("http://127.0.0.1:{}/v1/status", file.port);
    assert_eq!(http().get(&status_url).send().await.unwrap().status().as_u16(), 401);
    assert_eq!(http().get(&status_url).bearer_auth("guess").send().await.unwrap().status().as_u16(), 401);
    assert_eq!(http().get(&status_url).bearer_auth(&file.token).send().await.unwrap().status().as_u16(), 200);

    // The proxy forwards method, path, query, headers and body, and says who the client was.
    let echo = http().get(format!("http://127.0.0.1:{}/echo?q=1&r=two", p.port(STAGING))).header("x-custom", "kept").send().await.unwrap();
    let echo: serde_json::Value = echo.json().await.unwrap();
    assert_eq!(echo["path"], "/echo?q=1&r=two");
    assert_eq!(echo["custom"], "kept");
    assert_eq!(echo["xff"], "127.0.0.1");
    assert_eq!(echo["env"], "staging");
    assert_eq!(echo["greeting"], "hello");
    let posted = http().post(format!("http://127.0.0.1:{}/orders", p.port(STAGING))).body("a=1&b=2").send().await.unwrap();
    assert_eq!(posted.status().as_u16(), 201);
    let posted: serde_json::Value = posted.json().await.unwrap();
    assert_eq!((posted["method"].as_str(), posted["body"].as_str()), (Some("POST"), Some("a=1&b=2")));

    let v2 = p.commit(&[("README", "two")], "v2").await;
    let r2 = p.start(STAGING, &v2).await.unwrap();
    // Started but not switched: traffic still goes to v1.
    assert_serves(p.get(STAGING, "/health").await, &r1.version);
    let sw = p.platform.switch(STAGING, &r2.version, None).await.unwrap();
    assert_eq!((sw.active.as_str(), sw.previous.as_deref()), (r2.version.as_str(), Some(r1.version.as_str())));
    assert_serves(p.get(STAGING, "/health").await, &r2.version);
    assert_eq!(p.platform.current_version(STAGING).await.unwrap(), Some(r2.version.clone()));
    assert_eq!(p.platform.previous_version(STAGING).await.unwrap(), Some(r1.version.clone()));

    // Rollback: v1 is still running, so the switch is a table swap.
    let started = Instant::now();
    let back = p.platform.rollback(STAGING).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "rollback took {took:?}");
    assert_eq!((back.active.as_str(), back.previous.as_deref()), (r1.version.as_str(), Some(r2.version.as_str())));
    assert_serves(p.get(STAGING, "/health").await, &r1.version);

    // Starting a running release again reuses it.
    let again = p.start(STAGING, &v1).await.unwrap();
    assert!(again.reused);
    assert_eq!(again.pid, r1.pid);

    // With the live release stopped, the stable port explains what to do.
    p.platform.stop_release(STAGING, &r1.version).await.unwrap();
    assert!(wait_dead(r1.pid).await);
    let (status, version, body) = p.get(STAGING, "/").await;
    assert_eq!((status, version), (503, None));
    assert_eq!(body.trim(), "no release is live in staging; run oc-deploy staging");
    let err = p.platform.switch(STAGING, &r1.version, None).await.unwrap_err();
    assert_eq!(err.code(), "not_found", "{err}");
    p.platform.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unready_release_is_refused_with_its_log_and_takes_no_traffic() {
    let p = Project::new().await;
    let v1 = p.commit(&[("README", "one")], "v1").await;
    let r1 = p.go_live(STAGING, &v1).await;

    let bad = p.commit(&[("FAIL_HEALTH", "yes")], "broken health").await;
    let started = Instant::now();
    let err = p.start_with(STAGING, &bad, |r| StartRelease { ready_timeout: Duration::from_millis(1500), ..r }).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4));
    let text = err.to_string();
    assert_eq!(err.code(), "local_platform_error");
    assert!(text.contains(&format!("release {} of staging did not become ready", bad.short())), "{text}");
    assert!(text.contains("/health answered 500"), "{text}");
    assert!(text.contains("health check failing: FAIL_HEALTH present"), "the log tail is missing: {text}");
    assert!(err.hint().contains("local.ready_timeout_seconds"), "{}", err.hint());
    assert_serves(p.get(STAGING, "/health").await, &r1.version);
    assert_eq!(p.platform.current_version(STAGING).await.unwrap(), Some(r1.version.clone()));
    let status = p.platform.status().await.unwrap();
    let versions: Vec<&str> = status.environments[0].releases.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(versions, vec![r1.version.as_str()]);

    // A release that dies at start is refused at once, with what it printed.
    let crash = p.commit(&[("CRASH", "yes")], "crash").await;
    let started = Instant::now();
    let err = p.start(STAGING, &crash).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(err.contains("the process exited (exit code 3)"), "{err}");
    assert!(err.contains("fatal: CRASH file present, exiting"), "{err}");
    assert!(!err.contains("health check failing"), "the tail holds only this attempt: {err}");
    assert_serves(p.get(STAGING, "/health").await, &r1.version);
    p.platform.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_sends_its_share_then_promotes() {
    let p = Project::new().await;
    let v1 = p.go_live(STAGING, &p.commit(&[("README", "one")], "v1").await).await;
    let v2 = p.start(STAGING, &p.commit(&[("README", "two")], "v2").await).await.unwrap();
    let sw = p.platform.switch(STAGING, &v2.version, Some(25)).await.unwrap();
    assert_eq!(sw.active, v1.version);
    assert_eq!(sw.canary, Some(CanaryStatus { version: v2.version.clone(), percent: 25 }));
    let mut to_canary = 0;
    for _ in 0..40 {
        let (status, version, _) = p.get(STAGING, "/health").await;
        assert_eq!(status, 200);
        match version.as_deref() {
            Some(v) if v == v2.version => to_canary += 1,
            Some(v) => assert_eq!(v, v1.version),
            None => panic!("no version header"),
        }
    }
    assert!((7..=13).contains(&to_canary), "{to_canary} of 40 went to the 25% canary");
    // The canary is not the live version until promoted.
    assert_eq!(p.platform.current_version(STAGING).await.unwrap(), Some(v1.version.clone()));
    let promoted = p.platform.switch(STAGING, &v2.version, None).await.unwrap();
    assert_eq!(
        (promoted.active.as_str(), promoted.previous.as_deref(), promoted.canary),
        (v2.version.as_str(), Some(v1.version.as_str()), None)
    );
    for _ in 0..5 {
        assert_serves(p.get(STAGING, "/health").await, &v2.version);
    }
    let err = p.platform.switch(STAGING, &v2.version, Some(0)).await.unwrap_err();
    assert_eq!(err.code(), "invalid_input");
    p.platform.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_keeps_the_newest_and_never_the_live_ones() {
    let p = Project::new().await;
    let mut releases = Vec::new();
    for i in 1..=4 {
        let c = p.commit(&[("README", &format!("v{i}"))], &format!("v{i}")).await;
        releases.push(p.start(STAGING, &c).await.unwrap());
    }
    let [r1, r2, r3, r4] = <[ReleaseInfo; 4]>::try_from(releases).unwrap();
    p.platform.switch(STAGING, &r4.version, None).await.unwrap();
    // Roll back to the oldest: active r1, previous r4.
    p.platform.switch(STAGING, &r1.version, None).await.unwrap();
    // A prepared release that never started is a release on disk too (and the newest).
    let v5 = p.commit(&[("README", "v5")], "v5").await;
    p.platform.prepare_release(STAGING, &v5, None, None, &CancellationToken::new()).await.unwrap();

    let removed = p.platform.prune(STAGING, 3).await.unwrap();
    assert_eq!(removed, vec![r2.version.clone(), r3.version.clone()]);
    for r in [&r2, &r3] {
        assert!(wait_dead(r.pid).await, "{} still runs", r.version);
        assert!(!p.platform.release_dir(STAGING, &r.version).exists());
    }
    for r in [&r1, &r4] {
        assert!(pid_alive(r.pid));
        assert!(p.platform.release_dir(STAGING, &r.version).exists());
    }
    assert!(p.platform.release_dir(STAGING, &v5.short()).exists());
    assert_serves(p.get(STAGING, "/health").await, &r1.version);
    // Active and previous survive even when fewer are asked for.
    let removed = p.platform.prune(STAGING, 1).await.unwrap();
    assert_eq!(removed, vec![v5.short()]);
    let status = p.platform.status().await.unwrap();
    let mut left: Vec<String> = status.environments[0].releases.iter().map(|r| r.version.clone()).collect();
    left.sort();
    let mut want = vec![r1.version.clone(), r4.version.clone()];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(p.platform.rollback(STAGING).await.unwrap().active, r4.version);
    p.platform.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_stable_port_is_named_with_its_config_field() {
    let p = Project::new().await;
    let squatter = std::net::TcpListener::bind(("127.0.0.1", p.port(STAGING))).unwrap();
    let c = p.commit(&[("README", "one")], "v1").await;
    let err = p.start(STAGING, &c).await.unwrap_err();
    let port = p.port(STAGING);
    assert_eq!(err.code(), "local_platform_error");
    let text = err.to_string();
    assert!(text.contains(&format!("port {port}")) && text.contains("environments.staging.port"), "{text}");
    assert!(text.contains("taken by another program"), "{text}");
    assert!(err.hint().contains("environments.staging.port"), "{}", err.hint());
    // Nothing was started.
    let status = p.platform.status().await.unwrap();
    assert!(status.environments.iter().all(|e| e.releases.is_empty()), "{status:?}");
    drop(squatter);
    // Once the port is free the same deploy works (the kernel may take a moment to let go).
    let mut started = None;
    for _ in 0..20 {
        match p.start(STAGING, &c).await {
            Ok(info) => {
                started = Some(info);
                break;
            }
            Err(e) if e.to_string().contains("taken by another program") => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            Err(e) => panic!("{e}"),
        }
    }
    let r = started.expect("the freed port was never usable");
    p.platform.switch(STAGING, &r.version, None).await.unwrap();
    assert_serves(p.get(STAGING, "/health").await, &r.version);
    p.platform.down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_stops_every_process_and_the_supervisor() {
    let mut p = Project::new().await;
    let v1 = p.commit(&[("README", "one")], "v1").await;
    let s1 = p.go_live(STAGING, &v1).await;
    let p1 = p.go_live(PRODUCTION, &v1).await;
    let v2 = p.commit(&[("README", "two")], "v2").await;
    let s2 = p.go_live(STAGING, &v2).await;
    assert_serves(p.get(PRODUCTION, "/health").await, &p1.version);
    let status = p.platform.status().await.unwrap();
    assert!(status.supervisor.running);
    assert_eq!(status.environments.len(), 2);
    assert!(status.environments.iter().all(|e| e.listening && e.releases.iter().all(|r| r.running)));

    let report = p.platform.down().await.unwrap();
    assert!(report.supervisor_was_running);
    let mut stopped: Vec<u32> = report.stopped.iter().map(|s| s.pid).collect();
    stopped.sort_unstable();
    let mut want = vec![s1.pid, s2.pid, p1.pid];
    want.sort_unstable();
    assert_eq!(stopped, want);
    assert_eq!(report.proxies_closed.len(), 2);
    for pid in want {
        assert!(!pid_alive(pid), "pid {pid} survived down");
    }
    p.supervisor_exited().await;
    assert!(!p.root.join(".oc-deploy/local/supervisor.json").exists());
    for env in [STAGING, PRODUCTION] {
        assert!(tokio::net::TcpStream::connect(("127.0.0.1", p.port(env))).await.is_err(), "{env} proxy still listens");
    }
    // Reads do not start a supervisor, and a second down is fine.
    assert_eq!(p.platform.current_version(STAGING).await.unwrap(), None);
    assert!(!p.platform.status().await.unwrap().supervisor.running);
    assert_eq!(p.platform.down().await.unwrap(), DownReport::default());
    assert!(!p.root.join(".oc-deploy/local/supervisor.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_supervisor_readopts_running_releases() {
    let mut p = Project::new().await;
    let r1 = p.go_live(STAGING, &p.commit(&[("README", "one")], "v1").await).await;
    let r2 = p.go_live(STAGING, &p.commit(&[("README", "two")], "v2").await).await;
    p.platform.detach_supervisor().await.unwrap();
    p.supervisor_exited().await;
    assert!(pid_alive(r1.pid) && pid_alive(r2.pid), "detaching must leave releases running");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", p.port(STAGING))).await.is_err());

    p.start_supervisor().await;
    assert_serves(p.get(STAGING, "/health").await, &r2.version);
    assert_eq!(p.platform.previous_version(STAGING).await.unwrap(), Some(r1.version.clone()));
    let back = p.platform.rollback(STAGING).await.unwrap();
    assert_eq!(back.active, r1.version);
    assert_serves(p.get(STAGING, "/health").await, &r1.version);

    // An adopted release stops like one the supervisor started.
    p.platform.stop_release(STAGING, &r2.version).await.unwrap();
    assert!(wait_dead(r2.pid).await, "the adopted release survived stop_release");

    // Down with no supervisor still stops what a vanished supervisor left running.
    p.platform.detach_supervisor().await.unwrap();
    p.supervisor_exited().await;
    assert!(pid_alive(r1.pid));
    let report = p.platform.down().await.unwrap();
    assert!(!report.supervisor_was_running);
    assert_eq!(report.stopped, vec![StoppedRelease { env: STAGING, version: r1.version.clone(), pid: r1.pid }]);
    assert!(wait_dead(r1.pid).await, "an orphaned release survived down");
    assert!(!p.root.join(".oc-deploy/local/state.json").exists());
}

#[tokio::test]
async fn without_a_supervisor_reads_answer_and_writes_name_the_missing_binary() {
    let dir = tempfile::tempdir().unwrap();
    let platform = LocalPlatform::new(dir.path(), PathBuf::from("/nonexistent/oc-deploy"), Runner::default());
    assert_eq!(platform.current_version(STAGING).await.unwrap(), None);
    assert_eq!(platform.previous_version(PRODUCTION).await.unwrap(), None);
    let status = platform.status().await.unwrap();
    assert!(!status.supervisor.running && status.environments.is_empty());
    assert!(!dir.path().join(".oc-deploy/local/supervisor.json").exists(), "a read started something");
    let err = platform.switch(STAGING, "abc1234", None).await.unwrap_err();
    assert_eq!(err.code(), "local_platform_error", "{err}");
    assert!(err.to_string().contains("cannot start the local supervisor: /nonexistent/oc-deploy does not exist"), "{err}");
}

/// Records everything the code logs, at every level, on the test's thread.
#[derive(Clone, Default)]
struct CapturedLog(Arc<StdMutex<String>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for CapturedLog {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        span.record(&mut Fields(&mut self.0.lock().unwrap()));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut Fields(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut log = self.0.lock().unwrap();
        event.record(&mut Fields(&mut log));
        log.push('\n');
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// One thread, so every task of the supervisor logs to the captured subscriber.
#[tokio::test(flavor = "current_thread")]
async fn env_file_secrets_reach_the_app_but_no_log_or_status() {
    let captured = CapturedLog::default();
    let _guard = tracing::subscriber::set_default(captured.clone());
    // With a single registered subscriber, tracing caches each callsite's interest from the
    // thread that hits it first, so another test's thread (no subscriber) could switch our
    // events off. A second live dispatcher makes tracing ask every registered one instead.
    let _second = tracing::Dispatch::new(CapturedLog::default());
    const SECRET: &str = "sk-live-5up3r-s3cr3t-v4lue";
    let p = Project::new().await;
    p.platform.paths.ensure_dirs().unwrap();
    std::fs::write(p.platform.env_file(STAGING), format!("# staging secrets\nexport API_TOKEN=\"{SECRET}\"\n\nOTHER=x\n")).unwrap();
    let r1 = p.go_live(STAGING, &p.commit(&[("README", "one")], "v1").await).await;
    let (status, _, body) = p.get(STAGING, "/secret").await;
    assert_eq!((status, body.as_str()), (200, SECRET));

    // A failing release that prints the secret: its log tail in the error is masked.
    let bad = p.commit(&[("FAIL_HEALTH", "yes")], "broken").await;
    let err = p
        .start_with(STAGING, &bad, |r| {
            let mut env_vars = r.env_vars.clone();
            env_vars.insert("LEAK_SECRET".into(), "1".into());
            StartRelease { ready_timeout: Duration::from_millis(800), env_vars, ..r }
        })
        .await
        .unwrap_err();
    let text = format!("{err} {}", err.hint());
    assert!(text.contains("debug: API_TOKEN=[REDACTED]"), "{text}");
    assert!(!text.contains(SECRET));

    let status = serde_json::to_string(&p.platform.status().await.unwrap()).unwrap();
    assert!(status.contains(&r1.version) && !status.contains(SECRET), "{status}");
    for file in ["state.json", "supervisor.json"] {
        let text = std::fs::read_to_string(p.root.join(".oc-deploy/local").join(file)).unwrap();
        assert!(!text.contains(SECRET), "{file} holds the secret");
    }
    p.platform.down().await.unwrap();
    let log = captured.0.lock().unwrap().clone();
    assert!(log.contains("starting release") && log.contains("release refused"), "nothing was captured: {log}");
    assert!(!log.contains(SECRET), "the supervisor logged the secret:\n{log}");
}

#[tokio::test]
async fn env_file_lines_are_checked_without_echoing_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("staging.env");
    std::fs::write(&path, "A=1\nexport B='two words'\n# c\n\nC=\"q\"\n").unwrap();
    let vars: Vec<(String, String)> = read_env_file(&path).unwrap().into_iter().map(|(k, v)| (k, v.expose().to_owned())).collect();
    assert_eq!(vars, vec![("A".into(), "1".into()), ("B".into(), "two words".into()), ("C".into(), "q".into())]);
    std::fs::write(&path, "GOOD=1\nthis-line-is-secret-material\n").unwrap();
    let err = read_env_file(&path).unwrap_err();
    assert!(err.to_string().contains("staging.env:2"), "{err}");
    assert!(!format!("{err} {}", err.hint()).contains("secret-material"));
    assert!(read_env_file(&dir.path().join("missing.env")).unwrap().is_empty());
}

#[tokio::test]
async fn prepare_release_reuses_a_complete_tree_and_runs_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    init_repo(&root).await;
    let c = commit_files(&root, &[("web/index.txt", "hi")], "app").await;
    let platform = LocalPlatform::new(&root, PathBuf::from("/nonexistent/oc-deploy"), Runner::default());
    let cancel = CancellationToken::new();
    let build = vec!["sh".to_owned(), "-c".to_owned(), "echo built >> BUILD_LOG".to_owned()];
    let app = platform.prepare_release(STAGING, &c, Some("web"), Some(&build), &cancel).await.unwrap();
    assert_eq!(app, platform.release_dir(STAGING, &c.short()).join("web"));
    assert_eq!(std::fs::read_to_string(app.join("BUILD_LOG")).unwrap(), "built\n");
    // Complete: the second call neither re-exports nor rebuilds.
    platform.prepare_release(STAGING, &c, Some("web"), Some(&build), &cancel).await.unwrap();
    assert_eq!(std::fs::read_to_string(app.join("BUILD_LOG")).unwrap(), "built\n");
    // A failed build leaves the release incomplete, and the next call starts over.
    let failing = vec!["sh".to_owned(), "-c".to_owned(), "echo compile error >&2; exit 2".to_owned()];
    let err = platform.prepare_release(PRODUCTION, &c, Some("web"), Some(&failing), &cancel).await.unwrap_err();
    assert!(err.to_string().contains("compile error"), "{err}");
    assert!(!platform.release_dir(PRODUCTION, &c.short()).join(".complete").exists());
    // A wrong app_path is an input error, and never costs the complete tree.
    let err = platform.prepare_release(STAGING, &c, Some("missing"), None, &cancel).await.unwrap_err();
    assert!(matches!(&err, CoreError::InvalidInput { field, .. } if field == "app_path"), "{err:?}");
    assert!(app.join("index.txt").is_file());
    let err = platform.prepare_release(STAGING, &c, Some("../etc"), None, &cancel).await.unwrap_err();
    assert_eq!(err.code(), "invalid_input");
}
