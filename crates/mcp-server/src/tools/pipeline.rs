//! The pipeline toolset: staging, smoke, production, health, rollback.

use deploy_core::confirm::NoConfirmer;
use deploy_core::domain::Environment;
use deploy_core::ops::{self, HealthOutcome, ProdRequest, RollbackRequest, RunOutcome, SmokeOutcome, StagingRequest};
use rmcp::handler::server::tool::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};

use super::args::{HealthArgs, ProdArgs, RollbackArgs, SmokeArgs, StagingArgs};
use super::{result, run_result};
use crate::render;
use crate::server::{OcDeploy, tool_error};

#[tool_router(router = pipeline_router, vis = "pub(crate)")]
impl OcDeploy {
    #[tool(
        name = "deploy_staging",
        title = "Deploy to staging",
        description = "Gate → pre-flight → deploy_order steps → smoke tests on staging. Records the run; a pass verifies this commit for production.",
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true),
        output_schema = schema_for_output::<RunOutcome>()
    )]
    async fn deploy_staging(&self, Parameters(a): Parameters<StagingArgs>, rc: RequestContext<RoleServer>) -> CallToolResult {
        let ctx = match self.ctx(a.project_dir.as_deref(), &rc) {
            Ok(c) => c,
            Err(e) => return tool_error(&e, &self.redactor),
        };
        let req =
            StagingRequest { dry_run: a.dry_run, skip_tests: a.skip_tests, skip_security: a.skip_security, confirmation: a.confirmation };
        run_result(ops::deploy_staging(&ctx, req, &NoConfirmer).await, &self.redactor)
    }

    #[tool(
        name = "deploy_smoke",
        title = "Run smoke tests",
        description = "Run the configured smoke tests concurrently against an environment (default staging): status, body, JSON field, deployed version, latency.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<SmokeOutcome>()
    )]
    async fn deploy_smoke(&self, Parameters(a): Parameters<SmokeArgs>, rc: RequestContext<RoleServer>) -> CallToolResult {
        let ctx = match self.ctx(a.project_dir.as_deref(), &rc) {
            Ok(c) => c,
            Err(e) => return tool_error(&e, &self.redactor),
        };
        let env = a.env.map_or(Environment::Staging, Into::into);
        match ops::smoke(&ctx, env).await {
            Ok(o) => crate::server::structured(&o, render::smoke(&o), !o.passed, &self.redactor),
            Err(e) => tool_error(&e, &self.redactor),
        }
    }

    #[tool(
        name = "deploy_prod",
        title = "Promote to production",
        description = "Checklist (gate, staging verified for this commit) → human confirmation → record previous version → migrate → deploy → health → automatic rollback if unhealthy. Without a way to ask the human it answers confirmation_required with the plan and a one-time token.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true),
        output_schema = schema_for_output::<RunOutcome>()
    )]
    async fn deploy_prod(&self, Parameters(a): Parameters<ProdArgs>, rc: RequestContext<RoleServer>) -> CallToolResult {
        let ctx = match self.ctx(a.project_dir.as_deref(), &rc) {
            Ok(c) => c,
            Err(e) => return tool_error(&e, &self.redactor),
        };
        let req = ProdRequest {
            version: a.version,
            strategy: a.strategy,
            auto_rollback: a.auto_rollback,
            direct: a.direct,
            dry_run: a.dry_run,
            skip_security: a.skip_security,
            confirmation: a.confirmation,
        };
        run_result(ops::deploy_prod(&ctx, req, &NoConfirmer).await, &self.redactor)
    }

    #[tool(
        name = "deploy_health",
        title = "Check health",
        description = "Status and latency of every smoke URL of an environment (default production), compared with the last healthy baseline: healthy, degraded or unhealthy.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<HealthOutcome>()
    )]
    async fn deploy_health(&self, Parameters(a): Parameters<HealthArgs>, rc: RequestContext<RoleServer>) -> CallToolResult {
        let ctx = match self.ctx(a.project_dir.as_deref(), &rc) {
            Ok(c) => c,
            Err(e) => return tool_error(&e, &self.redactor),
        };
        let env = a.env.map_or(Environment::Production, Into::into);
        result(ops::health(&ctx, env).await, render::health, &self.redactor)
    }

    #[tool(
        name = "deploy_rollback",
        title = "Roll back",
        description = "Switch an environment (default production) back to the previous or a named version, re-check health, and record an incident.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true),
        output_schema = schema_for_output::<RunOutcome>()
    )]
    async fn deploy_rollback(&self, Parameters(a): Parameters<RollbackArgs>, rc: RequestContext<RoleServer>) -> CallToolResult {
        let ctx = match self.ctx(a.project_dir.as_deref(), &rc) {
            Ok(c) => c,
            Err(e) => return tool_error(&e, &self.redactor),
        };
        let req = RollbackRequest { env: a.env.map_or(Environment::Production, Into::into), to_version: a.to_version, reason: a.reason };
        run_result(ops::rollback(&ctx, req).await, &self.redactor)
    }
}
