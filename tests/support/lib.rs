//! Shared helpers for the end-to-end tests: the built binary, a sample git project on the local
//! platform with its own free ports, CLI runs, and rmcp clients over stdio and HTTP. Tests clean
//! up every release they start (`oc-deploy local down` on drop).
// Tests drive the binary under test directly; the product itself starts programs only through
// deploy_core::process (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use rmcp::model::{CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation, ProgressNotificationParam};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};

pub mod fake_pm;

/// The oc-deploy binary built by `cargo build --workspace` (override with OC_DEPLOY_BIN).
pub fn bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OC_DEPLOY_BIN") {
        return PathBuf::from(p);
    }
    // target/debug/deps/<test> → target/debug/oc-deploy
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("oc-deploy");
    assert!(bin.exists(), "{} is missing: run `cargo build --workspace` first (the README's test command does)", bin.display());
    bin
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A sample project: a git repo whose app is oc-deploy's built-in sample app.
pub struct Project {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub staging_port: u16,
    pub prod_port: u16,
}

impl Project {
    /// A committed project with a valid local-platform config.
    pub fn sample() -> Self {
        Self::with_config(|_| {})
    }

    /// Same, letting the test adjust the config JSON before the first commit.
    pub fn with_config(adjust: impl FnOnce(&mut serde_json::Value)) -> Self {
        let dir = tempfile::Builder::new().prefix("ocd-e2e-").tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let (staging_port, prod_port) = (free_port(), free_port());
        let mut cfg = serde_json::json!({
            "project_name": "e2e-shop",
            "platform": "local",
            "local": { "start": [bin().display().to_string(), "sample-app"], "health_path": "/health", "ready_timeout_seconds": 20 },
            "environments": {
                "staging": { "url": format!("http://127.0.0.1:{staging_port}"), "port": staging_port },
                "production": { "url": format!("http://127.0.0.1:{prod_port}"), "port": prod_port }
            },
            "smoke_tests": [
                { "name": "health", "url": "/health", "expect_status": 200, "expect_version": true },
                { "name": "home", "url": "/", "expect_contains": "<html" },
                { "name": "items", "url": "/api/items", "expect_status": 200 }
            ],
            "auto_rollback": { "enabled": true, "wait_seconds": 1 },
            "rollback": { "strategy": "previous-release", "keep_versions": 3 }
        });
        adjust(&mut cfg);
        std::fs::write(root.join(".oc-deploy-ops.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
        std::fs::write(root.join("sample.json"), "{\"fail_in\": []}\n").unwrap();
        std::fs::write(root.join("README.md"), "e2e sample\n").unwrap();
        let p = Self { _dir: dir, root, staging_port, prod_port };
        p.git(&["init", "-q", "-b", "main"]);
        p.git(&["add", "-A"]);
        p.git(&["commit", "-q", "-m", "v1"]);
        p
    }

    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(&self.root)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn head_short(&self) -> String {
        self.git(&["rev-parse", "--short=7", "HEAD"])
    }

    /// Commits a release that passes staging but fails its health check in production.
    pub fn commit_failing_in_production(&self) -> String {
        std::fs::write(self.root.join("sample.json"), "{\"fail_in\": [\"production\"]}\n").unwrap();
        self.git(&["commit", "-q", "-am", "fails in production"]);
        self.head_short()
    }

    /// Commits a harmless change.
    pub fn commit_change(&self, msg: &str) -> String {
        std::fs::write(self.root.join("README.md"), format!("{msg}\n")).unwrap();
        self.git(&["commit", "-q", "-am", msg]);
        self.head_short()
    }

    /// Runs the CLI in the project (no terminal on stdin).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin()).args(args).arg("--project-dir").arg(&self.root).stdin(std::process::Stdio::null()).output().unwrap()
    }

    /// Runs the CLI with extra environment variables (no terminal on stdin).
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(bin())
            .args(args)
            .arg("--project-dir")
            .arg(&self.root)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs the CLI with `--json` and extra environment variables, and parses stdout.
    pub fn cli_json_env(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, serde_json::Value) {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cli_env(&a, env);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{args:?}: {e}\nstdout: {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        });
        (out.status.code().unwrap_or(-1), v)
    }

    /// An MCP client over stdio with extra environment variables for the server.
    pub async fn mcp_env(&self, env: &[(&str, &str)]) -> Client {
        let mut cmd = tokio::process::Command::new(bin());
        cmd.arg("serve").arg("--project-dir").arg(&self.root).envs(env.iter().copied());
        let transport = TokioChildProcess::new(cmd).unwrap();
        let handler = Recorder::default();
        let service = handler.clone().serve(transport).await.unwrap();
        Client { service, recorder: handler }
    }

    /// The checkpoint as JSON.
    pub fn checkpoint(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.root.join(".checkpoints/oc-deploy-ops.checkpoint.json")).unwrap()).unwrap()
    }

    /// Runs the CLI with `--json` and parses stdout.
    pub fn cli_json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cli(&a);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{args:?}: {e}\nstdout: {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        });
        (out.status.code().unwrap_or(-1), v)
    }

    pub fn staging_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.staging_port)
    }

    pub fn prod_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.prod_port)
    }

    /// An MCP client over stdio to `oc-deploy serve` rooted at this project.
    pub async fn mcp(&self, extra: &[&str]) -> Client {
        let mut cmd = tokio::process::Command::new(bin());
        cmd.arg("serve").arg("--project-dir").arg(&self.root).args(extra);
        let transport = TokioChildProcess::new(cmd).unwrap();
        let handler = Recorder::default();
        let service = handler.clone().serve(transport).await.unwrap();
        Client { service, recorder: handler }
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new(bin()).args(["local", "down", "--project-dir"]).arg(&self.root).output();
    }
}

/// GETs a URL: (status, body, x-oc-deploy-version).
pub async fn get(url: &str) -> (u16, String, Option<String>) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let r = client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let version = r.headers().get("x-oc-deploy-version").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, r.text().await.unwrap_or_default(), version)
}

/// A client handler that records progress notifications.
#[derive(Clone, Default)]
pub struct Recorder {
    pub progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("oc-deploy-e2e", "0"))
    }

    async fn on_progress(&self, p: ProgressNotificationParam, _cx: NotificationContext<RoleClient>) {
        self.progress.lock().unwrap().push(p);
    }
}

pub struct Client {
    pub service: RunningService<RoleClient, Recorder>,
    pub recorder: Recorder,
}

impl Client {
    /// Calls a tool and returns the result (protocol errors panic: they are bugs).
    pub async fn call(&self, tool: &str, args: serde_json::Value) -> CallToolResult {
        let args = args.as_object().cloned().unwrap_or_default();
        self.service
            .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
            .await
            .unwrap_or_else(|e| panic!("{tool}: {e}"))
    }

    /// The structured content of a result.
    pub async fn call_json(&self, tool: &str, args: serde_json::Value) -> (bool, serde_json::Value) {
        let r = self.call(tool, args).await;
        (r.is_error.unwrap_or(false), r.structured_content.clone().unwrap_or_default())
    }

    pub fn progress_messages(&self) -> Vec<String> {
        self.recorder.progress.lock().unwrap().iter().filter_map(|p| p.message.clone()).collect()
    }

    pub async fn close(self) {
        let _ = self.service.cancel().await;
    }
}
