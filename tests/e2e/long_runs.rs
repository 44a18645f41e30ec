//! Long runs: progress from the start, background runs followed through deploy_status, and
//! cancellation that kills the child process, records the run as cancelled and frees the lock.
// Tests drive the binary under test directly; the product itself starts programs only through
// deploy_core::process (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use oc_deploy_e2e::Project;
use rmcp::model::{CallToolRequestParams, ClientRequest, Request};
use rmcp::service::PeerRequestOptions;
use serde_json::{Value, json};

/// A project whose build takes `secs` seconds (a real child process).
fn slow_project(secs: u32) -> Project {
    Project::with_config(move |c| {
        c["local"]["build"] = json!(["sleep", secs.to_string()]);
    })
}

/// Whether a `sleep <secs>` process runs with its working directory inside `root`.
fn sleep_alive(root: &std::path::Path, secs: u32) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else { return false };
    procs.flatten().any(|p| {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cwd = std::fs::read_link(p.path().join("cwd")).unwrap_or_default();
        cmd == format!("sleep\0{secs}\0").as_bytes() && cwd.starts_with(root)
    })
}

async fn wait_for(mut f: impl AsyncFnMut() -> bool, limit: Duration, what: &str) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn background_returns_the_run_id_and_status_follows_it() {
    let p = slow_project(3);
    let c = p.mcp(&[]).await;
    let (err, started) = c.call_json("deploy_staging", json!({ "background": true })).await;
    assert!(!err, "{started:#}");
    assert_eq!(started["status"], "running", "{started:#}");
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    assert!(started["next"].as_str().unwrap().contains(&run_id));

    // While it runs: the step, the elapsed time and the last message.
    let (_, s) = c.call_json("deploy_status", json!({})).await;
    let inflight = s["in_flight"].as_array().unwrap();
    assert_eq!(inflight.len(), 1, "{s:#}");
    assert_eq!(inflight[0]["run_id"], run_id.as_str());
    assert!(inflight[0]["step"].is_string() && inflight[0]["elapsed_ms"].is_u64() && inflight[0]["last_message"].is_string(), "{s:#}");
    let (_, s) = c.call_json("deploy_status", json!({ "env": "staging" })).await;
    assert_eq!(s["environments"][0]["locked_by"]["run_id"], run_id.as_str(), "{s:#}");

    // Then the final result.
    let mut last = Value::Null;
    wait_for(
        async || {
            let (_, s) = c.call_json("deploy_status", json!({ "run_id": run_id })).await;
            last = s["run"].clone();
            last["status"] != "running"
        },
        Duration::from_secs(60),
        "the background run to finish",
    )
    .await;
    assert_eq!(last["status"], "succeeded", "{last:#}");
    assert!(last["steps"].as_array().unwrap().iter().any(|s| s["name"] == "smoke"));
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_starts_at_once_and_counts_steps() {
    let p = Project::sample();
    let c = p.mcp(&[]).await;
    let (err, r) = c.call_json("deploy_staging", json!({})).await;
    assert!(!err, "{r:#}");
    // The client handles notifications concurrently, so order them by value as sent.
    let mut progress = c.recorder.progress.lock().unwrap().clone();
    progress.sort_by(|a, b| a.progress.total_cmp(&b.progress));
    assert!(progress.len() >= 5, "{progress:?}");
    assert!(progress[0].message.as_deref().unwrap().contains("starting"), "the first notification comes before any work: {progress:?}");
    assert!(progress.windows(2).all(|w| w[1].progress > w[0].progress), "progress values are distinct and increasing: {progress:?}");
    assert!(progress.iter().all(|p| p.total.unwrap() >= p.progress), "{progress:?}");
    assert!(progress.iter().all(|p| p.total.is_some()));
    assert!(progress.iter().any(|p| p.message.as_deref().unwrap().contains("step 2/")), "{progress:?}");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_the_run_kills_the_child_and_frees_the_lock() {
    let p = slow_project(30);
    let c = p.mcp(&[]).await;
    let params = CallToolRequestParams::new("deploy_staging").with_arguments(json!({}).as_object().unwrap().clone());
    let handle = c
        .service
        .send_cancellable_request(ClientRequest::CallToolRequest(Request::new(params)), PeerRequestOptions::no_options())
        .await
        .unwrap();
    wait_for(async || sleep_alive(&p.root, 30), Duration::from_secs(20), "the build to start").await;
    handle.cancel(Some("operator changed their mind".into())).await.unwrap();

    wait_for(async || !sleep_alive(&p.root, 30), Duration::from_secs(10), "the build to be killed").await;
    let mut run = Value::Null;
    wait_for(
        async || {
            let (_, s) = c.call_json("deploy_status", json!({})).await;
            run = s["recent"][0].clone();
            run["status"] == "cancelled"
        },
        Duration::from_secs(10),
        "the run to be recorded as cancelled",
    )
    .await;
    let (_, s) = c.call_json("deploy_status", json!({ "env": "staging" })).await;
    assert!(s["environments"][0]["locked_by"].is_null(), "the lock is free: {s:#}");
    assert!(s["in_flight"].as_array().unwrap().is_empty());
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_mid_run_leaves_consistent_state() {
    let p = slow_project(30);
    let c = p.mcp(&[]).await;
    let params = CallToolRequestParams::new("deploy_staging").with_arguments(json!({}).as_object().unwrap().clone());
    let _handle = c
        .service
        .send_cancellable_request(ClientRequest::CallToolRequest(Request::new(params)), PeerRequestOptions::no_options())
        .await
        .unwrap();
    wait_for(async || sleep_alive(&p.root, 30), Duration::from_secs(20), "the build to start").await;
    // The client goes away: stdin closes, the server drains and exits.
    c.close().await;
    wait_for(async || !sleep_alive(&p.root, 30), Duration::from_secs(15), "the build to be killed").await;
    let cp = p.root.join(".checkpoints/oc-deploy-ops.checkpoint.json");
    if cp.exists() {
        serde_json::from_str::<Value>(&std::fs::read_to_string(&cp).unwrap()).expect("the checkpoint is whole");
    }
    let leftovers: Vec<_> = std::fs::read_dir(p.root.join(".checkpoints"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    // The next deploy is not refused, and the run is on record as cancelled or interrupted.
    let (code, r) = p.cli_json(&["status"]);
    assert_eq!(code, 0);
    let status = r["recent"][0]["status"].as_str().unwrap().to_owned();
    assert!(status == "cancelled" || status == "interrupted", "{r:#}");
    assert!(r["environments"][0]["locked_by"].is_null(), "{r:#}");
}

mod tasks {
    use super::*;
    use rmcp::model::{CancelTaskParams, ClientCapabilities, ClientConfig, GetTaskParams, Implementation, TaskPayload};
    use rmcp::transport::TokioChildProcess;
    use rmcp::{ClientHandler, ServiceExt};

    /// A client that declares the tasks extension.
    #[derive(Clone, Default)]
    struct TaskClient;

    impl ClientHandler for TaskClient {
        fn get_info(&self) -> ClientConfig {
            let caps: ClientCapabilities =
                serde_json::from_value(json!({ "extensions": { "io.modelcontextprotocol/tasks": {} } })).unwrap();
            ClientConfig::new(caps, Implementation::new("task-client", "0"))
        }
    }

    async fn connect(p: &Project) -> rmcp::service::RunningService<rmcp::RoleClient, TaskClient> {
        let mut cmd = tokio::process::Command::new(oc_deploy_e2e::bin());
        cmd.arg("serve").arg("--project-dir").arg(&p.root);
        TaskClient.serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap()
    }

    fn staging() -> CallToolRequestParams {
        CallToolRequestParams::new("deploy_staging").with_arguments(json!({}).as_object().unwrap().clone())
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn staging_runs_as_a_task_with_status_messages() {
        let p = slow_project(2);
        let c = connect(&p).await;
        let task = match c.call_tool_once(staging()).await.unwrap() {
            rmcp::model::CallToolResponse::Task(t) => t.task,
            other => panic!("expected a task, got {other:?}"),
        };
        let mut messages = Vec::new();
        let mut result = None;
        wait_for(
            async || {
                let info = c.peer().get_task(GetTaskParams::new(task.task_id.clone())).await.unwrap().task;
                if let Some(m) = &info.task.status_message {
                    messages.push(m.clone());
                }
                if info.status().is_terminal() {
                    result = Some(info.payload);
                    return true;
                }
                false
            },
            Duration::from_secs(60),
            "the task to finish",
        )
        .await;
        match result.unwrap() {
            TaskPayload::Completed { result } => {
                assert_eq!(result["structuredContent"]["status"], "succeeded", "{result:#?}");
            }
            other => panic!("expected a completed task, got {other:?}"),
        }
        assert!(messages.iter().any(|m| m.contains("step")), "status messages follow the steps: {messages:?}");
        c.cancel().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn cancelling_the_task_stops_the_run() {
        let p = slow_project(30);
        let c = connect(&p).await;
        let task = match c.call_tool_once(staging()).await.unwrap() {
            rmcp::model::CallToolResponse::Task(t) => t.task,
            other => panic!("expected a task, got {other:?}"),
        };
        wait_for(async || sleep_alive(&p.root, 30), Duration::from_secs(20), "the build to start").await;
        c.peer().cancel_task(CancelTaskParams::new(task.task_id.clone())).await.unwrap();
        let mut status = None;
        wait_for(
            async || {
                let info = c.peer().get_task(GetTaskParams::new(task.task_id.clone())).await.unwrap().task;
                status = Some(info.status());
                info.status().is_terminal()
            },
            Duration::from_secs(20),
            "the task to settle",
        )
        .await;
        assert_eq!(status, Some(rmcp::model::TaskStatus::Cancelled));
        assert!(!sleep_alive(&p.root, 30), "the build still runs");
        let (code, s) = p.cli_json(&["status"]);
        assert_eq!(code, 0);
        assert_eq!(s["recent"][0]["status"], "cancelled", "{s:#}");
        assert!(s["environments"][0]["locked_by"].is_null(), "{s:#}");
        c.cancel().await.unwrap();
    }
}
