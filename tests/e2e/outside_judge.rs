//! Outside judges: programs oc-deploy's authors did not write decide whether it speaks MCP.
//! The official MCP conformance suite (npm `@modelcontextprotocol/conformance`) runs against
//! `oc-deploy serve --http`; the official TypeScript SDK client (npm `@modelcontextprotocol/sdk`)
//! and Python SDK client (PyPI `mcp`) connect over stdio and over streamable HTTP, list tools,
//! deploy to staging with progress and promote to production by answering the server's
//! confirmation. The judges live in tests/judge and are installed by `.ci/run`; a judge that is
//! missing fails its test with the install step to run.
// Tests drive the binary under test and the judges directly; the product itself starts programs
// only through deploy_core::process (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use oc_deploy_e2e::{Project, bin, free_port, get};
use serde_json::Value;

const NPM_INSTALL: &str = "npm ci --prefix tests/judge";
const PY_INSTALL: &str = "python3 -m venv tests/judge/.venv && tests/judge/.venv/bin/pip install -r tests/judge/requirements.txt";

/// The scenarios of the conformance suite that apply to oc-deploy (docs/conformance.md).
const APPLICABLE: [&str; 12] = [
    "server-initialize",
    "ping",
    "logging-set-level",
    "completion-complete",
    "tools-list",
    "resources-list",
    "resources-subscribe",
    "resources-unsubscribe",
    "prompts-list",
    "server-sse-polling",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
];

fn judge_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("judge")
}

/// The version an npm dependency is pinned to in tests/judge/package.json.
fn pinned_npm(package: &str) -> String {
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(judge_dir().join("package.json")).unwrap()).unwrap();
    manifest["dependencies"][package].as_str().unwrap_or_else(|| panic!("{package} is not in tests/judge/package.json")).to_owned()
}

/// Fails unless the npm package is installed at its pinned version, naming the install step.
fn require_npm(package: &str) {
    let installed = judge_dir().join("node_modules").join(package).join("package.json");
    let version = std::fs::read_to_string(&installed)
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    let pinned = pinned_npm(package);
    assert_eq!(
        version.as_deref(),
        Some(pinned.as_str()),
        "the outside judge {package} {pinned} is not installed in tests/judge: run `{NPM_INSTALL}` (.ci/run does)"
    );
}

/// The judge venv's Python, after checking that it has the pinned `mcp`.
fn require_python_sdk() -> PathBuf {
    let python = judge_dir().join(".venv/bin/python");
    let reqs = std::fs::read_to_string(judge_dir().join("requirements.txt")).unwrap();
    let pinned = reqs.lines().find_map(|l| l.strip_prefix("mcp==")).expect("mcp is pinned in tests/judge/requirements.txt");
    let installed = Command::new(&python)
        .args(["-c", "import importlib.metadata as m; print(m.version('mcp'))"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    assert_eq!(
        installed.as_deref(),
        Some(pinned),
        "the outside judge PyPI mcp {pinned} is not installed in tests/judge/.venv: run `{PY_INSTALL}` (.ci/run does)"
    );
    python
}

/// Runs a judge to completion or kills it after `limit`, capturing its output.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e} (node and python3 are needed for the outside judges)"));
    // Drain both pipes on their own threads so that a chatty judge cannot block on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
            panic!("{cmd:?} ran longer than {limit:?} and was killed; stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// A judge's JSON summary (its last stdout line), with its stderr in any panic message.
fn summary(what: &str, out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("{what} printed no summary\nstderr:\n{stderr}"));
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: {e}\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    assert!(v.get("error").is_none(), "{what} failed: {}\nstderr:\n{stderr}", v["error"].as_str().unwrap_or_default());
    v
}

fn node(script: &str, args: &[&dyn AsRef<std::ffi::OsStr>], limit: Duration) -> Output {
    let mut cmd = Command::new("node");
    cmd.arg(judge_dir().join(script)).current_dir(judge_dir());
    for a in args {
        cmd.arg(a);
    }
    run_bounded(&mut cmd, limit)
}

/// What every client judge must have seen: a staging deploy that reported its steps as progress
/// and a production deploy that a human approved through the client, live behind the proxy.
fn assert_pipeline(v: &Value, p: &Project, note: &str) {
    let version = p.head_short();
    assert_eq!(v["server"]["name"], "oc-deploy", "{v:#}");
    let tools: Vec<&str> = v["tools"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(tools.contains(&"deploy_staging") && tools.contains(&"deploy_prod"), "{tools:?}");

    let staging = &v["staging"];
    assert_eq!(staging["isError"], false, "{staging:#}");
    assert_eq!(staging["status"], "succeeded", "{staging:#}");
    assert_eq!(staging["version"], version.as_str());
    let progress = staging["progress"].as_array().unwrap();
    assert!(!progress.is_empty(), "no progress notifications reached the client: {staging:#}");
    let messages: Vec<&str> = progress.iter().filter_map(|p| p["message"].as_str()).collect();
    assert!(messages.iter().any(|m| m.contains("gate")) && messages.iter().any(|m| m.contains("smoke")), "{messages:?}");
    let values: Vec<f64> = progress.iter().map(|p| p["progress"].as_f64().unwrap()).collect();
    assert!(values.windows(2).all(|w| w[1] > w[0]), "progress must increase: {values:?}");

    let prod = &v["prod"];
    assert_eq!(prod["isError"], false, "{prod:#}");
    assert_eq!(prod["status"], "succeeded", "{prod:#}");
    assert_eq!(prod["version"], version.as_str());
    let confirmed_by = prod["confirmed_by"].as_str().unwrap_or_default();
    assert!(confirmed_by.contains("elicitation") && confirmed_by.contains(note), "confirmed_by: {confirmed_by:?}");
    assert!(!prod["progress"].as_array().unwrap().is_empty(), "{prod:#}");

    // The human was asked exactly once, with the plan, and answered the server's form.
    let asked = v["elicitations"].as_array().unwrap();
    assert_eq!(asked.len(), 1, "{asked:#?}");
    let message = asked[0]["message"].as_str().unwrap();
    assert!(message.contains(&version) && message.contains("production"), "{message}");
    assert!(asked[0]["fields"].as_array().unwrap().iter().any(|f| f == "approve"), "{asked:#?}");

    // What a user sees: production serves the approved version.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, _, served) = rt.block_on(get(&format!("{}/health", p.prod_url())));
    assert_eq!((status, served.as_deref()), (200, Some(version.as_str())));
}

fn ts_pipeline(transport: &str) {
    require_npm("@modelcontextprotocol/sdk");
    let p = Project::sample();
    let out = node("ts_pipeline.mjs", &[&transport, &bin(), &p.root], Duration::from_secs(90));
    let v = summary(&format!("ts_pipeline.mjs {transport}"), &out);
    assert!(out.status.success(), "{v:#}");
    assert_eq!(v["transport"], transport);
    if transport == "http" {
        assert_eq!(v["protocolVersion"], "2025-11-25", "{v:#}");
    }
    assert_pipeline(&v, &p, "approved by the TS SDK judge");
}

fn py_client(transport: &str, mode: &str, protocol: &str) {
    let python = require_python_sdk();
    let p = Project::sample();
    let mut cmd = Command::new(python);
    cmd.arg(judge_dir().join("py_client.py")).args([transport, mode]).arg(bin()).arg(&p.root).current_dir(judge_dir());
    let out = run_bounded(&mut cmd, Duration::from_secs(90));
    let v = summary(&format!("py_client.py {transport} {mode}"), &out);
    assert!(out.status.success(), "{v:#}");
    assert_eq!(v["protocolVersion"], protocol, "{v:#}");
    assert_pipeline(&v, &p, "approved by the Python SDK judge");
}

#[test]
fn official_typescript_sdk_client_lists_tools_and_calls_status() {
    require_npm("@modelcontextprotocol/sdk");
    let p = Project::sample();
    let out = node("ts_client.mjs", &[&bin(), &p.root], Duration::from_secs(60));
    assert!(out.status.success(), "TS client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["server"]["name"], "oc-deploy");
    let tools = v["tools"].as_array().unwrap();
    assert!(tools.len() >= 10, "{v:#}");
    assert!(tools.iter().all(|t| t["hasOutputSchema"] == true && t["annotations"].is_object()), "{v:#}");
    assert_eq!(v["status"]["isError"], false);
    assert_eq!(v["status"]["structured"]["project"], "e2e-shop");
    assert_eq!(v["prodDryRun"]["status"], "succeeded", "{v:#}");
}

#[test]
fn official_typescript_sdk_client_ships_over_stdio_with_progress_and_elicitation() {
    ts_pipeline("stdio");
}

#[test]
fn official_typescript_sdk_client_ships_over_http_with_progress_and_elicitation() {
    ts_pipeline("http");
}

#[test]
fn official_python_sdk_session_ships_over_stdio_with_live_elicitation() {
    py_client("stdio", "session", "2025-11-25");
}

#[test]
fn official_python_sdk_session_ships_over_http_with_live_elicitation() {
    py_client("http", "session", "2025-11-25");
}

#[test]
fn official_python_sdk_client_ships_over_stdio_with_multi_round_trip_input() {
    py_client("stdio", "client", "2026-07-28");
}

#[test]
fn official_python_sdk_client_ships_over_http_with_multi_round_trip_input() {
    py_client("http", "client", "2026-07-28");
}

/// Runs tests/judge/conformance.mjs with `args` and returns its summary (it exits 1 on failures).
fn conformance(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Value {
    require_npm("@modelcontextprotocol/conformance");
    let out = node("conformance.mjs", args, Duration::from_secs(150));
    let v = summary("conformance.mjs", &out);
    assert_eq!(v["suite"]["version"], pinned_npm("@modelcontextprotocol/conformance").as_str());
    assert_eq!(out.status.success(), v["failed"].as_array().unwrap().is_empty() && v["problems"].as_array().unwrap().is_empty());
    v
}

fn table(v: &Value) -> String {
    v["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{:<16} {:<30} {}", s["verdict"].as_str().unwrap_or("?"), s["name"].as_str().unwrap_or("?"), s["problems"]))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn official_conformance_suite_passes_every_applicable_scenario() {
    let p = Project::sample();
    let v = conformance(&[&bin(), &p.root]);
    assert_eq!(v["problems"], serde_json::json!([]), "{v:#}");
    let passed: Vec<&str> = v["passed"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let failing: Vec<&str> = APPLICABLE.iter().copied().filter(|s| !passed.contains(s)).collect();
    assert!(failing.is_empty(), "applicable conformance scenarios fail: {failing:?}\n{}", table(&v));
    assert_eq!(v["failed"], serde_json::json!([]), "{}", table(&v));
    // Everything else needs the suite's fixtures, and fails only because they are missing.
    assert_eq!(passed.len(), APPLICABLE.len(), "a scenario passes that docs/conformance.md does not list:\n{}", table(&v));
    assert_eq!(v["notApplicable"].as_array().unwrap().len(), 20, "{}", table(&v));
    assert_eq!(v["scenarios"].as_array().unwrap().len(), 32, "{}", table(&v));
}

/// The suite has teeth: a server told to trust a foreign Host and Origin fails DNS-rebinding
/// protection, and the judge says so.
#[test]
fn conformance_judge_fails_a_server_that_trusts_a_rebinding_host() {
    let p = Project::sample();
    let port = free_port();
    let server = Command::new(bin())
        .args(["serve", "--http", &format!("127.0.0.1:{port}"), "--project-dir"])
        .arg(&p.root)
        .args(["--allowed-hosts", "evil.example.com", "--allowed-origins", "http://evil.example.com"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = KillOnDrop(server);
    wait_for_port(port);
    let v = conformance(&[&"--url", &format!("http://127.0.0.1:{port}/mcp")]);
    assert_eq!(v["failed"], serde_json::json!(["dns-rebinding-protection"]), "{}", table(&v));
    let dns = v["scenarios"].as_array().unwrap().iter().find(|s| s["name"] == "dns-rebinding-protection").unwrap();
    assert!(dns["problems"].to_string().contains("Expected HTTP 4xx"), "{dns:#}");
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "oc-deploy serve --http did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
