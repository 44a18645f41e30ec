//! The records toolset: status, checkpoints and reports (read-only), and the flush of deferred
//! tracker writes.

use deploy_core::domain::Environment;
use deploy_core::ops::{self, CheckpointOutcome, ReportOutcome, StatusOutcome};
use rmcp::handler::server::tool::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};

use super::args::{CheckpointArgs, ReportArgs, RetryPmArgs, StatusArgs, run_id};
use crate::render;
use crate::server::{OcDeploy, tool_error};

#[tool_router(router = records_router, vis = "pub(crate)")]
impl OcDeploy {
    #[tool(
        name = "deploy_status",
        title = "Deployment status",
        description = "What runs in each environment (live and recorded versions, verification, locks), in-flight runs with their step, recent runs; or one run in full with run_id.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<StatusOutcome>()
    )]
    async fn deploy_status(&self, Parameters(a): Parameters<StatusArgs>, rc: RequestContext<RoleServer>) -> CallToolResult {
        let id = match run_id(a.run_id.as_deref()) {
            Ok(id) => id,
            Err(e) => return tool_error(&e, &self.redactor),
        };
        let env: Option<Environment> = a.env.map(Into::into);
        self.answer(&rc, a.project_dir.as_deref(), |ctx| async move { ops::status(&ctx, env, id.as_ref()).await }, render::status).await
    }

    #[tool(
        name = "deploy_checkpoint",
        title = "Read a checkpoint",
        description = "Read a skill's checkpoint in .checkpoints/ (default oc-deploy-ops) and say how fresh it is.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<CheckpointOutcome>()
    )]
    async fn deploy_checkpoint(&self, Parameters(a): Parameters<CheckpointArgs>, rc: RequestContext<RoleServer>) -> CallToolResult {
        self.answer(&rc, a.project_dir.as_deref(), |ctx| async move { ops::checkpoint(&ctx, a.skill.as_deref()) }, |o| o.summary.clone())
            .await
    }

    #[tool(
        name = "deploy_report",
        title = "Deployment report",
        description = "The Markdown report of a run (default: the latest finished): steps with durations, health table, rollback information, Mermaid timeline.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<ReportOutcome>()
    )]
    async fn deploy_report(&self, Parameters(a): Parameters<ReportArgs>, rc: RequestContext<RoleServer>) -> CallToolResult {
        let id = match run_id(a.run_id.as_deref()) {
            Ok(id) => id,
            Err(e) => return tool_error(&e, &self.redactor),
        };
        self.answer(&rc, a.project_dir.as_deref(), |ctx| async move { ops::report(&ctx, id.as_ref(), a.kind) }, |o| o.markdown.clone())
            .await
    }

    #[tool(
        name = "deploy_retry_pm",
        title = "Retry deferred PM writes",
        description = "Retry the tracker writes deferred in the checkpoint (tracker down, rate limited): flushed N / failed M.",
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<pm_bridge::bridge::FlushReport>()
    )]
    async fn deploy_retry_pm(&self, Parameters(a): Parameters<RetryPmArgs>, rc: RequestContext<RoleServer>) -> CallToolResult {
        self.answer(&rc, a.project_dir.as_deref(), |ctx| async move { crate::pm::retry_pm(&ctx.root).await }, render::retry_pm).await
    }
}
