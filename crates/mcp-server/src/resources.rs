//! Resources: the project's config, checkpoint and run list, and each run's report, read from
//! the files as they are now (secrets redacted). Subscribers hear when a run changes them.

use std::path::Path;

use deploy_core::domain::RunId;
use rmcp::ErrorData;
use rmcp::model::{ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource, ResourceContents, ResourceTemplate};

pub const CONFIG: &str = "oc-deploy://config";
pub const CHECKPOINT: &str = "oc-deploy://checkpoint";
pub const RUNS: &str = "oc-deploy://runs";
pub const REPORT_TEMPLATE: &str = "oc-deploy://runs/{run_id}/report";

pub fn report_uri(id: &RunId) -> String {
    format!("oc-deploy://runs/{id}/report")
}

pub fn list() -> ListResourcesResult {
    ListResourcesResult::with_all_items(vec![
        Resource::new(CONFIG, "config").with_title("Deploy config (.oc-deploy-ops.json)").with_mime_type("application/json"),
        Resource::new(CHECKPOINT, "checkpoint").with_title("Deploy checkpoint (what runs where)").with_mime_type("application/json"),
        Resource::new(RUNS, "runs").with_title("Recent runs").with_mime_type("application/json"),
    ])
}

pub fn templates() -> ListResourceTemplatesResult {
    ListResourceTemplatesResult::with_all_items(vec![
        ResourceTemplate::new(REPORT_TEMPLATE, "run-report").with_title("Markdown report of a run").with_mime_type("text/markdown"),
    ])
}

/// Reads a resource of the project at `root`.
pub fn read(uri: &str, root: &Path, redactor: &deploy_core::secret::Redactor) -> Result<ReadResourceResult, ErrorData> {
    let not_found = |why: String| ErrorData::resource_not_found(why, Some(serde_json::json!({ "uri": uri })));
    let (text, mime) = match uri {
        CONFIG => (
            read_file(&root.join(deploy_core::config::CONFIG_FILE))
                .ok_or_else(|| not_found("no .oc-deploy-ops.json yet: run deploy_init".into()))?,
            "application/json",
        ),
        CHECKPOINT => {
            let store = deploy_core::store::Store::new(root);
            (
                read_file(&store.checkpoint_path()).ok_or_else(|| not_found("no checkpoint yet: deploy to staging first".into()))?,
                "application/json",
            )
        }
        RUNS => {
            let runs = deploy_core::store::Store::new(root)
                .recent_runs(50, |_| true, |_| false)
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            let list: Vec<serde_json::Value> = runs
                .iter()
                .rev()
                .map(|r| {
                    serde_json::json!({
                        "run_id": r.run_id, "kind": r.kind, "env": r.env, "version": r.version, "status": r.status,
                        "started_at": r.started_at, "finished_at": r.finished_at, "report": report_uri(&r.run_id),
                    })
                })
                .collect();
            (serde_json::to_string_pretty(&serde_json::json!({ "runs": list })).unwrap_or_default(), "application/json")
        }
        other => {
            let id = other
                .strip_prefix("oc-deploy://runs/")
                .and_then(|r| r.strip_suffix("/report"))
                .ok_or_else(|| not_found(format!("unknown resource {other}")))?;
            let id = RunId::parse(id, "run_id").map_err(|e| not_found(e.to_string()))?;
            let ctx = deploy_core::ops::Ctx::new(root, std::path::PathBuf::new(), redactor.clone());
            let rep = deploy_core::ops::report(&ctx, Some(&id), None).map_err(|e| not_found(e.to_string()))?;
            (rep.markdown, "text/markdown")
        }
    };
    Ok(ReadResourceResult::new(vec![ResourceContents::text(redactor.redact(&text), uri).with_mime_type(mime)]))
}

fn read_file(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}
