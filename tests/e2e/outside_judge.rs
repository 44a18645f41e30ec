//! An outside judge: the official MCP TypeScript SDK client (npm `@modelcontextprotocol/sdk`,
//! installed into tests/judge by `.ci/run`) lists the tools of the built binary and calls
//! `deploy_status` and a dry-run `deploy_prod`, validating structured content against each
//! tool's outputSchema.

use std::path::PathBuf;
use std::process::Command;

use oc_deploy_e2e::{Project, bin};

#[test]
fn official_typescript_sdk_client_lists_tools_and_calls_status() {
    let judge = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("judge");
    assert!(
        judge.join("node_modules/@modelcontextprotocol/sdk").exists(),
        "the TypeScript SDK is not installed: run `npm ci --prefix tests/judge` (.ci/run does)"
    );
    let p = Project::sample();
    let out = Command::new("node")
        .arg(judge.join("ts_client.mjs"))
        .arg(bin())
        .arg(&p.root)
        .output()
        .expect("node is needed for the outside judge");
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
