//! An MCP client (rmcp's) over stdio against the built binary.
// Tests drive the binary under test directly; the product itself starts programs only through
// deploy_core::process (clippy.toml).
#![allow(clippy::disallowed_methods)]

use oc_deploy_e2e::Project;
use serde_json::json;

const TOOLS: &[&str] = &[
    "deploy_init",
    "deploy_audit",
    "deploy_staging",
    "deploy_smoke",
    "deploy_prod",
    "deploy_health",
    "deploy_rollback",
    "deploy_status",
    "deploy_checkpoint",
    "deploy_report",
];

#[tokio::test(flavor = "multi_thread")]
async fn server_identifies_itself_and_lists_complete_tools() {
    let p = Project::sample();
    let c = p.mcp(&[]).await;
    let info = c.service.peer_info().unwrap();
    assert_eq!(info.server_info.as_ref().unwrap().name, "oc-deploy");
    assert_eq!(info.server_info.as_ref().unwrap().version, env!("CARGO_PKG_VERSION"));
    let tools = c.service.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for t in TOOLS {
        assert!(names.contains(t), "missing {t} in {names:?}");
    }
    for t in &tools {
        let a = t.annotations.as_ref().unwrap_or_else(|| panic!("{} has no annotations", t.name));
        assert!(
            a.read_only_hint.is_some() && a.destructive_hint.is_some() && a.idempotent_hint.is_some() && a.open_world_hint.is_some(),
            "{}",
            t.name
        );
        assert!(t.title.is_some(), "{} has no title", t.name);
        assert!(t.output_schema.is_some(), "{} has no outputSchema", t.name);
        assert_eq!(t.input_schema.get("type"), Some(&json!("object")), "{}", t.name);
        assert!(t.description.as_ref().is_some_and(|d| d.len() < 400), "{}: keep descriptions short", t.name);
    }
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn staging_then_prod_with_a_plan_bound_token() {
    let p = Project::sample();
    let c = p.mcp(&[]).await;
    let v1 = p.head_short();
    let (err, st) = c.call_json("deploy_staging", json!({})).await;
    assert!(!err, "{st:#}");
    assert_eq!(st["status"], "succeeded");
    assert_eq!(st["env"], "staging");
    assert!(st["steps"].as_array().unwrap().iter().all(|s| s["duration_ms"].is_u64()));
    let msgs = c.progress_messages();
    assert!(msgs.iter().any(|m| m.contains("gate")) && msgs.iter().any(|m| m.contains("smoke")), "progress: {msgs:?}");

    let (err, ask) = c.call_json("deploy_prod", json!({ "strategy": "blue-green" })).await;
    assert!(!err, "{ask:#}");
    assert_eq!(ask["status"], "confirmation_required");
    let token = ask["confirmation_token"].as_str().unwrap();
    // A token for one plan cannot ship another: a different strategy is refused, and burns it.
    let (err, other) = c.call_json("deploy_prod", json!({ "strategy": "recreate", "confirmation": token })).await;
    assert!(err, "{other:#}");
    assert_eq!(other["code"], "confirmation_refused");
    assert!(other["message"].as_str().unwrap().contains("strategy"), "{other:#}");
    let (_, ask) = c.call_json("deploy_prod", json!({ "strategy": "blue-green" })).await;
    let token = ask["confirmation_token"].as_str().unwrap();
    let (err, shipped) = c.call_json("deploy_prod", json!({ "strategy": "blue-green", "confirmation": token })).await;
    assert!(!err, "{shipped:#}");
    assert_eq!(shipped["status"], "succeeded");
    assert_eq!(shipped["version"], v1.as_str());

    let (err, status) = c.call_json("deploy_status", json!({})).await;
    assert!(!err);
    let prod = status["environments"].as_array().unwrap().iter().find(|e| e["env"] == "production").unwrap().clone();
    assert_eq!(prod["live_version"], v1.as_str(), "{status:#}");

    let (err, health) = c.call_json("deploy_health", json!({})).await;
    assert!(!err, "{health:#}");
    assert_eq!(health["verdict"], "healthy");

    let (err, rep) = c.call_json("deploy_report", json!({ "run_id": shipped["run_id"] })).await;
    assert!(!err);
    assert!(rep["markdown"].as_str().unwrap().contains("Deployment Report"), "{rep:#}");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_an_in_band_error_naming_the_field() {
    let p = Project::sample();
    let c = p.mcp(&[]).await;
    // A misspelt argument.
    let r = c.call("deploy_status", json!({ "enviroment": "staging" })).await;
    assert!(r.is_error.unwrap_or(false));
    assert!(format!("{:?}", r.content).contains("enviroment"), "{r:?}");
    // A wrong value.
    let r = c.call("deploy_smoke", json!({ "env": "qa" })).await;
    assert!(r.is_error.unwrap_or(false));
    assert!(format!("{:?}", r.content).contains("qa"), "{r:?}");
    // A missing required field.
    let r = c.call("deploy_rollback", json!({})).await;
    assert!(r.is_error.unwrap_or(false));
    assert!(format!("{:?}", r.content).contains("reason"), "{r:?}");
    // A path outside the project.
    let (err, v) = c.call_json("deploy_init", json!({ "project_dir": "../" })).await;
    assert!(err);
    assert_eq!(v["code"], "path_outside_project", "{v:#}");
    let (err, v) = c.call_json("deploy_checkpoint", json!({ "skill": "../../etc/passwd" })).await;
    assert!(err);
    assert_eq!(v["code"], "invalid_input", "{v:#}");
    let (err, v) = c.call_json("deploy_status", json!({ "run_id": "../x" })).await;
    assert!(err);
    assert!(v["message"].as_str().unwrap().contains("run_id"), "{v:#}");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_config_field_is_named_over_mcp() {
    let p = Project::with_config(|c| {
        c["environments"]["staging"]["prot"] = 1.into();
    });
    let c = p.mcp(&[]).await;
    let (err, v) = c.call_json("deploy_staging", json!({})).await;
    assert!(err);
    assert_eq!(v["code"], "config_invalid");
    assert!(v["message"].as_str().unwrap().contains("environments.staging.prot"), "{v:#}");
    // Status still answers, and says what is wrong.
    let (err, s) = c.call_json("deploy_status", json!({})).await;
    assert!(!err);
    assert!(s["config_error"].as_str().unwrap().contains("prot"));
    c.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn init_proposes_and_writes_only_when_asked() {
    let p = Project::sample();
    std::fs::remove_file(p.root.join(".oc-deploy-ops.json")).unwrap();
    let c = p.mcp(&[]).await;
    let (err, v) = c.call_json("deploy_init", json!({})).await;
    assert!(!err, "{v:#}");
    assert_eq!(v["existing"], false);
    assert_eq!(v["config"]["platform"], "local");
    assert!(!p.root.join(".oc-deploy-ops.json").exists(), "init wrote without write: true");
    let (err, v) = c.call_json("deploy_init", json!({ "write": true })).await;
    assert!(!err, "{v:#}");
    assert!(p.root.join(".oc-deploy-ops.json").exists());
    c.close().await;
}
