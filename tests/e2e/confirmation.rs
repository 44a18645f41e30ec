//! Real human confirmation through the MCP client, on every protocol version: live elicitation
//! (2025-06-18, 2025-11-25), multi-round-trip input (2026-07-28), and the token fallback for
//! clients that can ask no one. Decline and cancel ship nothing and are recorded.
// Tests drive the binary under test directly; the product itself starts programs only through
// deploy_core::process (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::sync::{Arc, Mutex};

use oc_deploy_e2e::{Project, bin};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction, ErrorData,
    Implementation, ProtocolVersion,
};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RequestContext, RunningService};
use rmcp::transport::TokioChildProcess;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Says {
    Yes,
    No,
    Decline,
    Cancel,
}

/// A client whose human answers every confirmation the same way; `None` = cannot elicit.
#[derive(Clone)]
struct Human {
    says: Option<Says>,
    version: ProtocolVersion,
    seen: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Human {
    fn get_info(&self) -> ClientConfig {
        let caps = if self.says.is_some() {
            serde_json::from_value::<ClientCapabilities>(json!({ "elicitation": { "form": {} } })).unwrap()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(caps, Implementation::new("human", "0")).with_protocol_version(self.version.clone())
    }

    async fn create_elicitation(&self, req: ElicitRequestParams, _cx: RequestContext<RoleClient>) -> Result<ElicitResult, ErrorData> {
        let message = serde_json::to_value(&req).unwrap()["message"].as_str().unwrap_or_default().to_owned();
        self.seen.lock().unwrap().push(message);
        Ok(match self.says {
            Some(Says::Yes) => ElicitResult::new(ElicitationAction::Accept).with_content(json!({ "approve": true, "note": "looks good" })),
            Some(Says::No) => ElicitResult::new(ElicitationAction::Accept).with_content(json!({ "approve": false })),
            Some(Says::Decline) | None => ElicitResult::new(ElicitationAction::Decline),
            Some(Says::Cancel) => ElicitResult::new(ElicitationAction::Cancel),
        })
    }
}

async fn connect(p: &Project, human: Human) -> RunningService<RoleClient, Human> {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("serve").arg("--project-dir").arg(&p.root);
    let transport = TokioChildProcess::new(cmd).unwrap();
    if human.version >= ProtocolVersion::V_2026_07_28 {
        let v = human.version.clone();
        human.serve_with_lifecycle(transport, ClientLifecycleMode::Discover { preferred_versions: vec![v] }).await.unwrap()
    } else {
        human.serve(transport).await.unwrap()
    }
}

async fn prod(c: &RunningService<RoleClient, Human>) -> (bool, Value) {
    let r = c
        .call_tool(
            CallToolRequestParams::new("deploy_prod").with_arguments(json!({ "strategy": "blue-green" }).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    (r.is_error.unwrap_or(false), r.structured_content.unwrap_or_default())
}

async fn check_version(version: ProtocolVersion) {
    let p = Project::sample();
    let v1 = p.head_short();
    let (code, st) = p.cli_json(&["staging"]);
    assert_eq!(code, 0, "{st:#}");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let human = |says| Human { says, version: version.clone(), seen: seen.clone() };

    // A client that can ask no one gets the plan and a token (or, on 2026-07-28, a declined
    // input request from a client without a handler): nothing ships either way.
    let c = connect(&p, human(None)).await;
    let (err, r) = prod(&c).await;
    if version >= ProtocolVersion::V_2026_07_28 {
        assert!(err, "{version:?}: {r:#}");
        assert_eq!(r["status"], "declined", "{version:?}: {r:#}");
    } else {
        assert!(!err, "{r:#}");
        assert_eq!(r["status"], "confirmation_required", "{version:?}: {r:#}");
        assert!(r["confirmation_token"].is_string());
        assert_eq!(r["plan"]["version"], v1.as_str());
    }
    c.cancel().await.unwrap();

    for (says, status) in [(Says::Decline, "declined"), (Says::No, "declined"), (Says::Cancel, "cancelled")] {
        let c = connect(&p, human(Some(says))).await;
        let (err, r) = prod(&c).await;
        assert!(err, "{version:?} {says:?}: {r:#}");
        assert_eq!(r["status"], status, "{version:?} {says:?}: {r:#}");
        c.cancel().await.unwrap();
        assert!(reqwest::get(p.prod_url()).await.is_err(), "{version:?} {says:?}: something shipped");
    }

    let c = connect(&p, human(Some(Says::Yes))).await;
    let (err, r) = prod(&c).await;
    assert!(!err, "{version:?}: {r:#}");
    assert_eq!(r["status"], "succeeded", "{version:?}: {r:#}");
    assert!(r["confirmed_by"].as_str().unwrap().contains("elicitation"), "{r:#}");
    assert!(r["confirmed_by"].as_str().unwrap().contains("looks good"), "{r:#}");
    c.cancel().await.unwrap();

    // The human saw the plan.
    let messages = seen.lock().unwrap().clone();
    let last = messages.last().expect("the human was asked");
    for part in
        [v1.as_str(), "production", "Gate: warn (0 critical, 0 high", "Staging smoke: pass", "Strategy: blue-green", "Previous version"]
    {
        assert!(last.contains(part), "{version:?}: `{part}` missing from the form:\n{last}");
    }

    // Declines and cancels are in the run log.
    let log = std::fs::read_to_string(p.root.join(".checkpoints/oc-deploy-ops.runs.jsonl")).unwrap();
    for s in ["\"status\":\"declined\"", "\"status\":\"cancelled\"", "\"status\":\"succeeded\""] {
        assert!(log.contains(s), "{version:?}: {s} not recorded");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn elicitation_on_2025_06_18() {
    check_version(ProtocolVersion::V_2025_06_18).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn elicitation_on_2025_11_25() {
    check_version(ProtocolVersion::V_2025_11_25).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn multi_round_trip_input_on_2026_07_28() {
    check_version(ProtocolVersion::V_2026_07_28).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_request_state_is_refused() {
    let p = Project::sample();
    let (code, _) = p.cli_json(&["staging"]);
    assert_eq!(code, 0);
    let human = Human { says: Some(Says::Yes), version: ProtocolVersion::V_2026_07_28, seen: Arc::default() };
    let c = connect(&p, human).await;
    // Answer an input request we invent, with a forged state: refused, nothing ships.
    let mut params = CallToolRequestParams::new("deploy_prod").with_arguments(json!({}).as_object().unwrap().clone());
    params.request_state = Some("forged.state".into());
    params.input_responses =
        Some(serde_json::from_value(json!({ "confirm": { "action": "accept", "content": { "approve": true } } })).unwrap());
    let r = c.call_tool_once(params).await.unwrap();
    let text = format!("{r:?}");
    assert!(text.contains("confirmation_refused"), "{text}");
    assert!(reqwest::get(p.prod_url()).await.is_err());
    c.cancel().await.unwrap();
}

/// Writes a fresh oc-code-auditor checkpoint with these counts.
fn audited(p: &Project, critical: u32, high: u32) {
    let dir = p.root.join(".checkpoints");
    std::fs::create_dir_all(&dir).unwrap();
    let now = std::process::Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]).output().unwrap();
    let now = String::from_utf8_lossy(&now.stdout).trim().to_owned();
    let cp = json!({ "updated_at": now, "skill_state": { "findings_by_severity": { "critical": critical, "high": high, "medium": 0, "low": 0 } } });
    std::fs::write(dir.join("oc-code-auditor.checkpoint.json"), cp.to_string()).unwrap();
}

async fn staging(c: &RunningService<RoleClient, Human>, args: Value) -> (bool, Value) {
    let r = c.call_tool(CallToolRequestParams::new("deploy_staging").with_arguments(args.as_object().unwrap().clone())).await.unwrap();
    (r.is_error.unwrap_or(false), r.structured_content.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn high_findings_ask_the_human_even_for_staging() {
    let p = Project::sample();
    audited(&p, 0, 2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let c = connect(&p, Human { says: Some(Says::Decline), version: ProtocolVersion::V_2025_11_25, seen: seen.clone() }).await;
    let (err, r) = staging(&c, json!({})).await;
    assert!(err, "{r:#}");
    assert_eq!(r["status"], "declined", "{r:#}");
    assert!(reqwest::get(p.staging_url()).await.is_err(), "a declined staging deploy shipped");
    c.cancel().await.unwrap();
    let c = connect(&p, Human { says: Some(Says::Yes), version: ProtocolVersion::V_2025_11_25, seen: seen.clone() }).await;
    let (err, r) = staging(&c, json!({})).await;
    assert!(!err, "{r:#}");
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["gate"]["decision"], "warn");
    let asked = seen.lock().unwrap().clone();
    assert!(asked.iter().all(|m| m.contains("2 high")), "{asked:?}");
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn four_high_findings_block_and_skip_security_needs_a_human_even_with_auto_approve() {
    let p = Project::sample();
    audited(&p, 1, 4);
    // Blocked, without asking anyone.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let c = connect(&p, Human { says: Some(Says::Yes), version: ProtocolVersion::V_2025_11_25, seen: seen.clone() }).await;
    let (err, r) = staging(&c, json!({})).await;
    assert!(err);
    assert_eq!(r["status"], "blocked", "{r:#}");
    assert!(seen.lock().unwrap().is_empty());
    c.cancel().await.unwrap();

    // skip_security on a server started with --auto-approve still asks the human, says HIGH RISK.
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("serve").arg("--auto-approve").arg("--project-dir").arg(&p.root);
    let human = Human { says: Some(Says::Yes), version: ProtocolVersion::V_2025_11_25, seen: seen.clone() };
    let c = human.serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let (err, r) = staging(&c, json!({ "skip_security": true })).await;
    assert!(!err, "{r:#}");
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["gate"]["skipped"], true);
    assert!(r["confirmed_by"].as_str().unwrap().contains("elicitation"), "{r:#}");
    let asked = seen.lock().unwrap().clone();
    assert!(asked.last().unwrap().contains("HIGH RISK"), "{asked:?}");
    c.cancel().await.unwrap();
}

/// A production secret change asks the human through the client (elicitation, or an input
/// request on 2026-07-28) and shows what changes; a "no" changes nothing.
async fn production_env_change_asks_the_human(version: ProtocolVersion) {
    let p = Project::sample();
    std::fs::write(p.root.join("token.txt"), "prod-token-value-e2e\n").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let args = json!({ "env": "production", "action": "set", "name": "API_TOKEN", "value_from": "file:token.txt" });
    let file = p.root.join(".oc-deploy/local/production.env");
    for (says, status) in [(Says::No, "declined"), (Says::Yes, "done")] {
        let c = connect(&p, Human { says: Some(says), version: version.clone(), seen: seen.clone() }).await;
        let r = c.call_tool(CallToolRequestParams::new("deploy_env").with_arguments(args.as_object().unwrap().clone())).await.unwrap();
        let out = r.structured_content.unwrap_or_default();
        assert_eq!(out["status"], status, "{version:?} {says:?}: {out:#}");
        assert_eq!(r.is_error.unwrap_or(false), status == "declined", "{out:#}");
        assert_eq!(file.exists(), status == "done", "{version:?} {says:?}");
        assert!(!out.to_string().contains("prod-token-value-e2e"), "{out:#}");
        c.cancel().await.unwrap();
    }
    let messages = seen.lock().unwrap().clone();
    assert!(messages.iter().all(|m| m.contains("set API_TOKEN from file:token.txt") && m.contains("production")), "{messages:?}");
    assert!(std::fs::read_to_string(&file).unwrap().contains("prod-token-value-e2e"));
}

#[tokio::test(flavor = "multi_thread")]
async fn production_env_change_by_elicitation() {
    production_env_change_asks_the_human(ProtocolVersion::V_2025_06_18).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn production_env_change_by_multi_round_trip_input() {
    production_env_change_asks_the_human(ProtocolVersion::V_2026_07_28).await;
}
