//! The setup toolset: project detection and config (init), and the audit gate.

use deploy_core::gate::GateResult;
use deploy_core::ops::{self, EnvChangeStatus, EnvOutcome, InitOutcome};
use rmcp::handler::server::tool::{InputResponses, RequestState, schema_for_output};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResponse, CallToolResult};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};

use super::args::{AuditArgs, EnvArgs, InitArgs};
use crate::confirm::confirmer_for;
use crate::render;
use crate::server::{OcDeploy, tool_error};

#[tool_router(router = setup_router, vis = "pub(crate)")]
impl OcDeploy {
    #[tool(
        name = "deploy_init",
        title = "Set up deployment",
        description = "Detect platform and language, propose .oc-deploy-ops.json and run the setup checklist (CLI, auth, environments, ports). Writes the config only with write: true and never overwrites one.",
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<InitOutcome>()
    )]
    async fn deploy_init(&self, Parameters(a): Parameters<InitArgs>, rc: RequestContext<RoleServer>) -> CallToolResult {
        self.answer(
            &rc,
            a.project_dir.as_deref(),
            |ctx| async move { ops::init(&ctx, a.platform, a.pack.as_deref(), a.write).await },
            render::init,
        )
        .await
    }

    #[tool(
        name = "deploy_audit",
        title = "Pre-deploy audit gate",
        description = "Read the oc-code-auditor (1 h) and oc-security-auditor (24 h) checkpoints, run the project's audit command, apply the gate: proceed, warn or block, with findings.",
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<GateResult>()
    )]
    async fn deploy_audit(&self, Parameters(a): Parameters<AuditArgs>, rc: RequestContext<RoleServer>) -> CallToolResult {
        // The gate is the same for every environment; `env` names the one about to be deployed.
        let _ = a.env;
        self.answer(&rc, a.project_dir.as_deref(), |ctx| async move { ops::audit(&ctx).await }, render::gate).await
    }

    #[tool(
        name = "deploy_env",
        title = "Environment variables and secrets",
        description = "List (names only), set or unset an environment's variables and secrets on the platform. A value comes from value_from (env:NAME of the server, or file:PATH), never shown. Production changes need a human's yes.",
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = true),
        output_schema = schema_for_output::<EnvOutcome>()
    )]
    async fn deploy_env(
        &self,
        Parameters(a): Parameters<EnvArgs>,
        RequestState(state): RequestState,
        InputResponses(responses): InputResponses,
        rc: RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let (confirmer, answer) = match confirmer_for(&rc, &self.shared.codec, "deploy_env", state, responses, a.confirmation) {
            Ok(c) => c,
            Err(e) => return tool_error(&e, &self.redactor).into(),
        };
        let req = ops::EnvRequest { env: a.env.into(), action: a.action, name: a.name, value_from: a.value_from, answer };
        let ctx = match self.ctx(a.project_dir.as_deref(), &rc) {
            Ok(c) => c,
            Err(e) => return tool_error(&e, &self.redactor).into(),
        };
        let r = ops::env_vars(&ctx, req, &confirmer).await;
        if let (Ok(o), true) = (&r, crate::confirm::is_multi_round_trip(&rc))
            && o.status == EnvChangeStatus::ConfirmationRequired
            && let (Some(plan), Some(token)) = (&o.plan, &o.confirmation_token)
            && let Some(ir) = crate::confirm::input_required_for(plan, token, &self.shared.codec, "deploy_env")
        {
            return CallToolResponse::InputRequired(ir);
        }
        match r {
            Ok(o) => {
                let is_error = matches!(o.status, EnvChangeStatus::Declined | EnvChangeStatus::Cancelled);
                crate::server::structured(&o, render::env(&o), is_error, &self.redactor).into()
            }
            Err(e) => tool_error(&e, &self.redactor).into(),
        }
    }
}
