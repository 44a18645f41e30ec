//! The pipeline toolset: staging, smoke, production, health, rollback.

use deploy_core::domain::Environment;
use deploy_core::ops::{self, Answer, HealthOutcome, ProdRequest, RollbackRequest, RunOutcome, SmokeOutcome, StagingRequest};
use rmcp::handler::server::tool::{InputResponses, RequestState, schema_for_output};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResponse, CallToolResult};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};

use super::args::{HealthArgs, ProdArgs, RollbackArgs, SmokeArgs, StagingArgs};
use crate::confirm::{McpConfirmer, confirmer_for};
use crate::render;
use crate::server::{OcDeploy, tool_error};

impl OcDeploy {
    fn confirmation(
        &self,
        rc: &RequestContext<RoleServer>,
        tool: &str,
        state: Option<String>,
        responses: Option<rmcp::model::InputResponses>,
        token: Option<String>,
    ) -> Result<(McpConfirmer, Answer), Box<CallToolResponse>> {
        confirmer_for(rc, &self.shared.codec, tool, state, responses, token).map_err(|e| Box::new(tool_error(&e, &self.redactor).into()))
    }
}

#[tool_router(router = pipeline_router, vis = "pub(crate)")]
impl OcDeploy {
    #[tool(
        name = "deploy_staging",
        title = "Deploy to staging",
        description = "Gate → pre-flight → deploy_order steps → smoke tests on staging. A pass verifies this commit for production. background: true returns the run_id at once.",
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = true),
        output_schema = schema_for_output::<RunOutcome>()
    )]
    async fn deploy_staging(
        &self,
        Parameters(a): Parameters<StagingArgs>,
        RequestState(state): RequestState,
        InputResponses(responses): InputResponses,
        rc: RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let (confirmer, answer) = match self.confirmation(&rc, "deploy_staging", state, responses, a.confirmation) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let req = StagingRequest { dry_run: a.dry_run, skip_tests: a.skip_tests, skip_security: a.skip_security, answer };
        self.execute_run(&rc, a.project_dir.as_deref(), a.background, "deploy_staging", move |ctx| async move {
            ops::deploy_staging(&ctx, req, &confirmer).await
        })
        .await
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
        description = "Checklist (gate, staging verified for this commit) → the human confirms the plan → record previous version → deploy → health → automatic rollback if unhealthy.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true),
        output_schema = schema_for_output::<RunOutcome>()
    )]
    async fn deploy_prod(
        &self,
        Parameters(a): Parameters<ProdArgs>,
        RequestState(state): RequestState,
        InputResponses(responses): InputResponses,
        rc: RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let (confirmer, answer) = match self.confirmation(&rc, "deploy_prod", state, responses, a.confirmation) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        let req = ProdRequest {
            version: a.version,
            strategy: a.strategy,
            auto_rollback: a.auto_rollback,
            direct: a.direct,
            dry_run: a.dry_run,
            skip_security: a.skip_security,
            answer,
        };
        self.execute_run(&rc, a.project_dir.as_deref(), a.background, "deploy_prod", move |ctx| async move {
            ops::deploy_prod(&ctx, req, &confirmer).await
        })
        .await
    }

    #[tool(
        name = "deploy_health",
        title = "Check health",
        description = "Status and latency of every smoke URL of an environment (default production), compared with the last healthy baseline: healthy, degraded or unhealthy.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<HealthOutcome>()
    )]
    async fn deploy_health(&self, Parameters(a): Parameters<HealthArgs>, rc: RequestContext<RoleServer>) -> CallToolResult {
        let env = a.env.map_or(Environment::Production, Into::into);
        self.answer(&rc, a.project_dir.as_deref(), |ctx| async move { ops::health(&ctx, env).await }, render::health).await
    }

    #[tool(
        name = "deploy_rollback",
        title = "Roll back",
        description = "Switch an environment (default production) back to the previous or a named version, re-check health, and record an incident.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true),
        output_schema = schema_for_output::<RunOutcome>()
    )]
    async fn deploy_rollback(&self, Parameters(a): Parameters<RollbackArgs>, rc: RequestContext<RoleServer>) -> CallToolResponse {
        let req = RollbackRequest { env: a.env.map_or(Environment::Production, Into::into), to_version: a.to_version, reason: a.reason };
        self.execute_run(&rc, a.project_dir.as_deref(), a.background, "deploy_rollback", move |ctx| async move {
            ops::rollback(&ctx, req).await
        })
        .await
    }
}
