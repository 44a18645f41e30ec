//! The HTTP endpoint under stress and at its edges: many concurrent sessions, idle sessions that
//! expire (and rmcp's client recovering from that), oversized bodies, SIGTERM during a deploy,
//! and a session kept alive by a long deploy. Every test runs the real binary on 127.0.0.1.
// Tests drive the binary under test directly; the product itself starts programs only through
// deploy_core::process (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oc_deploy_e2e::{Project, bin, free_port};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceError};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The protocol version the raw-HTTP requests speak.
const PROTOCOL_VERSION: &str = "2025-06-18";

/// The server's default body cap (`http::DEFAULT_MAX_BODY_BYTES`).
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// `oc-deploy serve --http` on a free loopback port; killed (and reaped) when dropped. Its stderr
/// goes to a temporary file so that a failing assertion can show the server's side.
struct Server {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Server {
    async fn start(p: &Project, extra: &[&str]) -> Self {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(bin())
            .args(["serve", "--http", &format!("127.0.0.1:{port}"), "--project-dir"])
            .arg(&p.root)
            .args(extra)
            .env("OC_DEPLOY_LOG", "warn,oc_deploy=info,deploy_core=info,rmcp=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log.reopen().unwrap()))
            .spawn()
            .unwrap();
        let mut server = Self { child, port, log };
        // Bounded: 10 s for the listener, and an early exit (an unknown flag, say) fails at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("oc-deploy serve {extra:?} exited before listening ({status}); its stderr:\n{}", server.log());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("oc-deploy serve --http did not listen on {port} within 10 s; its stderr:\n{}", server.log());
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to stderr so far.
    fn log(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(self.log.path()).and_then(|mut f| f.read_to_string(&mut text));
        text
    }

    /// An rmcp client in a session of its own.
    async fn client(&self) -> RunningService<RoleClient, ()> {
        let transport = StreamableHttpClientTransport::from_uri(self.url());
        ().serve(transport).await.unwrap_or_else(|e| panic!("rmcp initialize: {e}\nserver stderr:\n{}", self.log()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(client: &RunningService<RoleClient, ()>, tool: &str, args: Value) -> Result<CallToolResult, ServiceError> {
    let args = args.as_object().cloned().unwrap_or_default();
    client.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args)).await
}

/// A raw MCP POST with the headers a streamable-HTTP client sends.
async fn post(http: &reqwest::Client, url: &str, session: Option<&str>, body: &Value) -> reqwest::Response {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", PROTOCOL_VERSION)
        .body(body.to_string());
    if let Some(id) = session {
        req = req.header("mcp-session-id", id);
    }
    req.send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// Initializes a session over raw HTTP, sends `notifications/initialized`, and returns its id.
async fn raw_session(http: &reqwest::Client, url: &str) -> String {
    let init = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": { "name": "hardening", "version": "0" } }
    });
    let r = post(http, url, None, &init).await;
    assert_eq!(r.status().as_u16(), 200);
    let session = r.headers().get("mcp-session-id").expect("initialize answers with mcp-session-id").to_str().unwrap().to_owned();
    let body = r.text().await.unwrap();
    assert!(body.contains("\"serverInfo\""), "{body}");
    let r = post(http, url, Some(&session), &json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).await;
    assert_eq!(r.status().as_u16(), 202);
    session
}

fn tools_list(id: u64) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list" })
}

/// Pids of live `sleep <arg>` processes whose working directory is inside `root` (zombies have an
/// empty cmdline and do not count: they are already dead).
fn sleepers(root: &Path, arg: &str) -> Vec<u32> {
    let want = format!("sleep\0{arg}\0").into_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(root)))
        .collect()
}

/// The last line of the runs log about `run_id`.
fn last_run_record(root: &Path, run_id: &str) -> Option<Value> {
    let text = std::fs::read_to_string(root.join(".checkpoints/oc-deploy-ops.runs.jsonl")).ok()?;
    text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).rfind(|l| l["run"]["run_id"] == run_id)
}

/// A sample project whose build step sleeps `seconds`.
fn project_with_slow_build(seconds: u32) -> Project {
    Project::with_config(|c| c["local"]["build"] = json!(["sleep", seconds.to_string()]))
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_sessions_each_get_their_status() {
    const SESSIONS: usize = 50;
    let p = Project::sample();
    let server = Server::start(&p, &[]).await;
    // All 50 sessions are open at once (as 50 agents would hold them), then all call at once.
    let all_open = Arc::new(tokio::sync::Barrier::new(SESSIONS));
    let all_called = Arc::new(tokio::sync::Barrier::new(SESSIONS));
    let work = async {
        let tasks: Vec<_> = (0..SESSIONS)
            .map(|i| {
                let url = server.url();
                let (all_open, all_called) = (all_open.clone(), all_called.clone());
                tokio::spawn(async move {
                    let client = ().serve(StreamableHttpClientTransport::from_uri(url)).await;
                    all_open.wait().await;
                    let r = match &client {
                        Ok(c) => call(c, "deploy_status", json!({})).await.map_err(|e| format!("#{i} deploy_status: {e}")),
                        Err(e) => Err(format!("#{i} initialize: {e}")),
                    };
                    all_called.wait().await;
                    if let Ok(c) = client {
                        let _ = c.cancel().await;
                    }
                    r
                })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    };
    let results = tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .unwrap_or_else(|_| panic!("{SESSIONS} sessions did not all finish within 60 s; server stderr:\n{}", server.log()));
    let mut failures = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(r) if r.is_error == Some(false) && r.structured_content.as_ref().is_some_and(|s| s["project"] == "e2e-shop") => {}
            Ok(r) => failures.push(format!("#{i}: unexpected result {r:?}")),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {SESSIONS} sessions failed:\n{}\nserver stderr:\n{}",
        failures.len(),
        failures.join("\n"),
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_expires_with_404() {
    let p = Project::sample();
    let server = Server::start(&p, &["--session-idle-seconds", "1"]).await;
    let url = server.url();
    let http = reqwest::Client::new();
    let session = raw_session(&http, &url).await;
    // While fresh, the session answers: the 404 below is the expiry, not a malformed request.
    let r = post(&http, &url, Some(&session), &tools_list(2)).await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("deploy_status"));

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = post(&http, &url, Some(&session), &tools_list(3)).await;
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, 404, "an expired session must answer 404 (so clients re-initialize); body: {body}");

    // The server itself is fine: a new session works.
    let fresh = raw_session(&http, &url).await;
    assert_ne!(fresh, session);
    assert_eq!(post(&http, &url, Some(&fresh), &tools_list(4)).await.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn rmcp_client_recovers_from_an_expired_session() {
    let p = Project::sample();
    let server = Server::start(&p, &["--session-idle-seconds", "1"]).await;
    let client = server.client().await;
    let first = call(&client, "deploy_status", json!({})).await.unwrap();
    assert_eq!(first.is_error, Some(false));

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let second = tokio::time::timeout(Duration::from_secs(20), call(&client, "deploy_status", json!({})))
        .await
        .unwrap_or_else(|_| panic!("the call after expiry hung for 20 s; server stderr:\n{}", server.log()))
        .unwrap_or_else(|e| panic!("the call after expiry failed: {e}; server stderr:\n{}", server.log()));
    assert_eq!(second.is_error, Some(false), "{second:?}");
    assert_eq!(second.structured_content.unwrap()["project"], "e2e-shop");
    // The second call really went through a new session (rmcp logs each one it creates).
    let log = server.log();
    assert!(log.matches("create new session").count() >= 2, "the first session did not expire, so nothing was recovered:\n{log}");
    let _ = client.cancel().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_gets_413_and_the_server_keeps_serving() {
    let p = Project::sample();
    let server = Server::start(&p, &[]).await;
    let url = server.url();
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();

    // A real client sending a whole body one byte over the cap: a JSON string padded out.
    let padding = "x".repeat(MAX_BODY_BYTES);
    let big = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": { "pad": padding } }).to_string();
    assert!(big.len() > MAX_BODY_BYTES);
    let r = http
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(big)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST of an oversized body: {e}"));
    assert_eq!(r.status().as_u16(), 413, "{}", r.text().await.unwrap_or_default());

    // A body just under the cap is not refused as too large: the cap is 1 MiB, not less.
    let near = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": { "pad": "x".repeat(MAX_BODY_BYTES - 4096) } });
    let r = post(&http, &url, None, &near).await;
    assert_ne!(r.status().as_u16(), 413, "a body of {} bytes was refused as too large", near.to_string().len());

    // A chunked upload declares no length, so the cap must hold while streaming too.
    let status = chunked_post(server.port, MAX_BODY_BYTES + 64 * 1024).await;
    assert_eq!(status.as_deref(), Some("413"), "a chunked body over the cap; server stderr:\n{}", server.log());

    // The next requests are served as usual.
    let session = raw_session(&http, &url).await;
    let r = post(&http, &url, Some(&session), &tools_list(2)).await;
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().await.unwrap().contains("deploy_staging"));
    let health = http.get(format!("http://127.0.0.1:{}/healthz", server.port)).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

/// POSTs `len` bytes to `/mcp` with `Transfer-Encoding: chunked` over a raw socket and returns the
/// status code of the answer. The body is written by a separate task while the answer is read:
/// a server that refuses early stops reading, and our writes may then fail — that is fine.
async fn chunked_post(port: u16, len: usize) -> Option<String> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < len {
            let n = chunk.len().min(len - sent);
            wr.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            wr.write_all(&chunk[..n]).await?;
            wr.write_all(b"\r\n").await?;
            sent += n;
        }
        wr.write_all(b"0\r\n\r\n").await?;
        wr.flush().await?;
        // Keep the write half open so the server's answer is not cut short by our FIN.
        tokio::time::sleep(Duration::from_secs(5)).await;
        std::io::Result::Ok(())
    });
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !got.windows(2).any(|w| w == b"\r\n") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    writer.abort();
    read.ok()?;
    let line = String::from_utf8_lossy(&got).lines().next()?.to_owned();
    line.split_whitespace().nth(1).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_deploy_cancels_the_run_and_frees_the_environment() {
    let p = project_with_slow_build(20);
    let mut server = Server::start(&p, &[]).await;

    let deployer = server.client().await;
    let deploy = tokio::spawn(async move {
        let r = call(&deployer, "deploy_staging", json!({})).await;
        let _ = deployer.cancel().await;
        r
    });

    // A second session watches until the run is in flight and its build is running.
    let watcher = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let run_id = loop {
        assert!(Instant::now() < deadline, "no run in flight with a running `sleep 20` after 30 s; server stderr:\n{}", server.log());
        let st = call(&watcher, "deploy_status", json!({})).await.unwrap();
        let st = st.structured_content.unwrap_or_default();
        if let Some(id) = st["in_flight"].as_array().and_then(|a| a.first()).and_then(|r| r["run_id"].as_str())
            && !sleepers(&p.root, "20").is_empty()
        {
            break id.to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = watcher.cancel().await;

    let signalled = Instant::now();
    let kill = Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().unwrap();
    assert!(kill.success());
    let exit = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(15), "the server did not exit within 15 s of SIGTERM; stderr:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = signalled.elapsed();
    let log = server.log();

    // What the deploying client saw goes into the failure messages below, but is not asserted:
    // the server closes its sessions before the cancelled run answers, and rmcp's client then
    // keeps retrying its event stream instead of failing the call.
    let seen = tokio::time::timeout(Duration::from_secs(5), deploy).await;
    let seen = match seen {
        Ok(Ok(Ok(r))) => format!("a result: {:?}", r.structured_content.map(|s| s["status"].clone())),
        Ok(Ok(Err(e))) => format!("an error: {e}"),
        Ok(Err(e)) => format!("a panicked task: {e}"),
        Err(_) => "nothing within 5 s".to_owned(),
    };
    // Shown with any failure below: how the shutdown went from the outside.
    let shutdown = format!("after SIGTERM the server exited ({exit}) in {took:?}; the deploying client saw {seen}");

    let last = last_run_record(&p.root, &run_id).unwrap_or_else(|| panic!("no record of run {run_id}; server stderr:\n{log}"));
    let status = last["run"]["status"].as_str().unwrap_or_default().to_owned();
    assert!(
        status == "cancelled" || status == "interrupted",
        "run {run_id} ended as `{status}`: {last:#}\n{shutdown}\nserver stderr:\n{log}"
    );

    // The build's child dies with the run (allow a moment for the signal to land).
    let gone = Instant::now() + Duration::from_secs(2);
    while !sleepers(&p.root, "20").is_empty() && Instant::now() < gone {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sleepers(&p.root, "20"), Vec::<u32>::new(), "a `sleep 20` from the build outlived the server; {shutdown}");

    let cp_path = p.root.join(".checkpoints/oc-deploy-ops.checkpoint.json");
    if let Ok(text) = std::fs::read_to_string(&cp_path) {
        serde_json::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{} is not JSON after shutdown: {e}\n{text}", cp_path.display()));
    }

    // The environment is free and nothing is in flight, as `oc-deploy status` reports it.
    let (code, st) = p.cli_json(&["status"]);
    assert_eq!(code, 0, "{st:#}");
    let staging = st["environments"].as_array().unwrap().iter().find(|e| e["env"] == "staging").unwrap();
    assert_eq!(staging["locked_by"], Value::Null, "{st:#}");
    assert_eq!(st["in_flight"], json!([]), "{st:#}");

    // The environment is free: a new staging run (with a quick build) is not refused as locked.
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(p.root.join(".oc-deploy-ops.json")).unwrap()).unwrap();
    cfg["local"]["build"] = json!(["true"]);
    std::fs::write(p.root.join(".oc-deploy-ops.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    p.git(&["commit", "-q", "-am", "quick build"]);
    let (code, out) = p.cli_json(&["staging"]);
    assert_ne!(out["error"]["code"], "environment_locked", "the cancelled run still holds staging: {out:#}");
    assert_eq!((code, &out["status"]), (0, &json!("succeeded")), "{out:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_stays_alive_while_a_deploy_runs_past_the_idle_limit() {
    let p = project_with_slow_build(4);
    let server = Server::start(&p, &["--session-idle-seconds", "2"]).await;
    let client = server.client().await;
    // The deploy takes ~5 s; 30 s is ample, and a lost answer must not hang the suite.
    let r = tokio::time::timeout(Duration::from_secs(30), call(&client, "deploy_staging", json!({})))
        .await
        .unwrap_or_else(|_| {
            let runs = std::fs::read_to_string(p.root.join(".checkpoints/oc-deploy-ops.runs.jsonl")).unwrap_or_default();
            let ends: Vec<String> = runs
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .map(|l| format!("{} {} {}", l["at"], l["event"], l["run"]["status"]))
                .collect();
            panic!("deploy_staging did not answer within 30 s; runs log: {ends:#?}\nserver stderr:\n{}", server.log())
        })
        .unwrap_or_else(|e| panic!("deploy_staging failed at the protocol level: {e}; server stderr:\n{}", server.log()));
    let out = r.structured_content.clone().unwrap_or_default();
    assert_eq!(r.is_error, Some(false), "{out:#}");
    assert_eq!(out["status"], "succeeded", "{out:#}");
    // The session is still the same one afterwards, and still answers.
    let st = call(&client, "deploy_status", json!({})).await.unwrap();
    assert_eq!(st.is_error, Some(false));
    let _ = client.cancel().await;
}
