//! The rest of the MCP surface over stdio: prompts, resources with change notifications,
//! logging levels, MCP roots, and --read-only / --toolsets as a client sees them.
// Tests drive the binary under test directly; the product itself starts programs only through
// deploy_core::process (clippy.toml).
#![allow(clippy::disallowed_methods)]
#![allow(deprecated)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use oc_deploy_e2e::{Project, bin};
use rmcp::model::{
    ClientCapabilities, ClientConfig, GetPromptRequestParams, Implementation, ListRootsResult, LoggingLevel,
    LoggingMessageNotificationParam, ReadResourceRequestParams, ResourceContents, ResourceUpdatedNotificationParam, Root,
    SetLevelRequestParams, SubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::json;

/// A client that records notifications and offers one root.
#[derive(Clone, Default)]
struct Watcher {
    root: Option<String>,
    updated: Arc<Mutex<Vec<String>>>,
    logs: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Watcher {
    fn get_info(&self) -> ClientConfig {
        let caps: ClientCapabilities =
            if self.root.is_some() { serde_json::from_value(json!({ "roots": {} })).unwrap() } else { ClientCapabilities::default() };
        ClientConfig::new(caps, Implementation::new("watcher", "0"))
    }

    async fn list_roots(&self, _cx: RequestContext<RoleClient>) -> Result<ListRootsResult, ErrorData> {
        Ok(ListRootsResult::new(self.root.iter().map(|r| Root::new(format!("file://{r}"))).collect()))
    }

    async fn on_resource_updated(&self, p: ResourceUpdatedNotificationParam, _cx: NotificationContext<RoleClient>) {
        self.updated.lock().unwrap().push(p.uri);
    }

    async fn on_logging_message(&self, p: LoggingMessageNotificationParam, _cx: NotificationContext<RoleClient>) {
        self.logs.lock().unwrap().push(format!("{:?} {}", p.level, p.data));
    }
}

async fn connect(args: &[&str], w: Watcher) -> RunningService<RoleClient, Watcher> {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("serve").args(args);
    w.serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap()
}

fn text(c: &ResourceContents) -> String {
    match c {
        ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("expected text, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prompts_list_the_menu_and_each_command() {
    let p = Project::sample();
    let root = p.root.display().to_string();
    let c = connect(&["--project-dir", &root], Watcher::default()).await;
    let prompts = c.list_all_prompts().await.unwrap();
    let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    for n in ["oc-deploy", "staging", "prod", "rollback", "status", "audit", "smoke", "health", "init", "env"] {
        assert!(names.contains(&n), "missing prompt {n}: {names:?}");
    }
    let menu = c.get_prompt(GetPromptRequestParams::new("oc-deploy")).await.unwrap();
    let body = serde_json::to_string(&menu).unwrap();
    assert!(body.contains("DEPLOY OPS COMMANDS") && body.contains("/oc-deploy staging"), "{body}");
    let mut args = serde_json::Map::new();
    args.insert("reason".into(), json!("error rate up"));
    let rb = c.get_prompt(GetPromptRequestParams::new("rollback").with_arguments(args)).await.unwrap();
    assert!(serde_json::to_string(&rb).unwrap().contains("error rate up"));
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn resources_read_the_project_and_notify_subscribers() {
    let p = Project::sample();
    let root = p.root.display().to_string();
    let w = Watcher::default();
    let c = connect(&["--project-dir", &root], w.clone()).await;
    let uris: Vec<String> = c.list_all_resources().await.unwrap().into_iter().map(|r| r.uri.clone()).collect();
    assert_eq!(uris, ["oc-deploy://config", "oc-deploy://checkpoint", "oc-deploy://runs"]);
    let templates = c.list_all_resource_templates().await.unwrap();
    assert_eq!(templates[0].uri_template, "oc-deploy://runs/{run_id}/report");

    let cfg = c.read_resource(ReadResourceRequestParams::new("oc-deploy://config")).await.unwrap();
    assert!(text(&cfg.contents[0]).contains("e2e-shop"));
    // No checkpoint yet: a clean resource-not-found error.
    assert!(c.read_resource(ReadResourceRequestParams::new("oc-deploy://checkpoint")).await.is_err());

    c.subscribe(SubscribeRequestParams::new("oc-deploy://runs")).await.unwrap();
    c.subscribe(SubscribeRequestParams::new("oc-deploy://checkpoint")).await.unwrap();
    let r = c.call_tool(rmcp::model::CallToolRequestParams::new("deploy_staging")).await.unwrap();
    let run_id = r.structured_content.unwrap()["run_id"].as_str().unwrap().to_owned();
    for _ in 0..50 {
        if w.updated.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let updated = w.updated.lock().unwrap().clone();
    assert!(updated.contains(&"oc-deploy://runs".to_owned()) && updated.contains(&"oc-deploy://checkpoint".to_owned()), "{updated:?}");

    let runs = c.read_resource(ReadResourceRequestParams::new("oc-deploy://runs")).await.unwrap();
    assert!(text(&runs.contents[0]).contains(&run_id));
    let report = c.read_resource(ReadResourceRequestParams::new(format!("oc-deploy://runs/{run_id}/report"))).await.unwrap();
    assert!(text(&report.contents[0]).contains("Deployment Report"));
    assert!(c.read_resource(ReadResourceRequestParams::new("oc-deploy://runs/../../etc/report")).await.is_err());
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn logging_follows_the_level_the_client_sets() {
    let p = Project::sample();
    let root = p.root.display().to_string();
    let w = Watcher::default();
    let c = connect(&["--project-dir", &root], w.clone()).await;
    // Default: warnings only, so a successful run logs nothing.
    c.call_tool(rmcp::model::CallToolRequestParams::new("deploy_smoke")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(w.logs.lock().unwrap().is_empty(), "{:?}", w.logs.lock().unwrap());
    c.set_level(SetLevelRequestParams::new(LoggingLevel::Info)).await.unwrap();
    c.call_tool(rmcp::model::CallToolRequestParams::new("deploy_staging")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = w.logs.lock().unwrap().clone();
    assert!(logs.iter().any(|l| l.contains("Info") && l.contains("smoke")), "{logs:?}");
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn roots_tell_the_server_where_the_project_is() {
    let p = Project::sample();
    // No --project-dir: the server starts elsewhere and learns the project from the client.
    let w = Watcher { root: Some(p.root.display().to_string()), ..Default::default() };
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("serve").current_dir(std::env::temp_dir());
    let c = w.serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let mut project = serde_json::Value::Null;
    for _ in 0..20 {
        let r = c.call_tool(rmcp::model::CallToolRequestParams::new("deploy_status")).await.unwrap();
        project = r.structured_content.unwrap()["project"].clone();
        if project == "e2e-shop" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(project, "e2e-shop");
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_refuses_what_changes_things() {
    let p = Project::sample();
    let root = p.root.display().to_string();
    let c = connect(&["--project-dir", &root, "--read-only"], Watcher::default()).await;
    let names: Vec<String> = c.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    for t in ["deploy_staging", "deploy_prod", "deploy_rollback", "deploy_init"] {
        assert!(!names.contains(&t.to_owned()), "{t} listed in --read-only");
    }
    assert!(names.contains(&"deploy_status".to_owned()));
    let r = c.call_tool(rmcp::model::CallToolRequestParams::new("deploy_prod")).await;
    assert!(r.is_err() || r.unwrap().is_error == Some(true), "deploy_prod callable in --read-only");
    assert!(reqwest::get(p.prod_url()).await.is_err());
    c.cancel().await.unwrap();
}
