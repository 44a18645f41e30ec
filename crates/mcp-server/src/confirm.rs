//! Asking the human through the MCP client. Clients on 2025-06-18 / 2025-11-25 get a live
//! elicitation form during the call; 2026-07-28 clients get a multi-round-trip input request
//! whose sealed state carries a plan-bound, one-time token; clients with neither get the plan
//! and a token in a `confirmation_required` result (deploy-core's fallback).

use std::sync::Arc;
use std::time::Duration;

use deploy_core::CoreError;
use deploy_core::confirm::{ConfirmOutcome, Confirmer, Plan};
use deploy_core::ops::{Answer, RunOutcome};
use deploy_core::run::RunStatus;
use rmcp::model::{
    ElicitRequest, ElicitRequestParams, InputRequest, InputRequests, InputRequiredResult, ProtocolVersion, RequestStateCodec, SealOptions,
};
use rmcp::service::{ElicitationError, ElicitationMode, RequestContext};
use rmcp::{Peer, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;

/// The confirmation form: flat, as elicitation requires.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ConfirmForm {
    /// Ship this plan? true ships it; false declines.
    pub approve: bool,
    /// A note for the run record (optional).
    pub note: Option<String>,
}

rmcp::elicit_safe!(ConfirmForm);

/// How long a human may take to answer a live elicitation.
const ELICIT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The key of the input request in a multi-round-trip answer.
pub const INPUT_KEY: &str = "confirm";

/// The confirmer for one tool call.
pub enum McpConfirmer {
    /// Ask now, through elicitation on the live session.
    Elicit(Peer<RoleServer>),
    /// 2026-07-28: ask in a second round (deploy-core issues an input-request token).
    Defer,
    /// The human already answered (the second round).
    Answered(ConfirmOutcome),
    /// Inside an MCP task on 2026-07-28: ask through the task's input requests.
    Task(rmcp::task_manager::TaskContext),
    /// The client can ask no one: deploy-core falls back to a token for the agent.
    Unavailable,
}

impl Confirmer for McpConfirmer {
    async fn confirm(&self, plan: &Plan) -> ConfirmOutcome {
        match self {
            Self::Elicit(peer) => match peer.elicit_with_timeout::<ConfirmForm>(plan_message(plan), Some(ELICIT_TIMEOUT)).await {
                Ok(Some(form)) if form.approve => ConfirmOutcome::Approved { by: approved_by("elicitation", form.note.as_deref()) },
                Ok(_) | Err(ElicitationError::UserDeclined) => ConfirmOutcome::Declined,
                Err(ElicitationError::CapabilityNotSupported) => ConfirmOutcome::Unavailable,
                Err(ElicitationError::UserCancelled) => ConfirmOutcome::Cancelled,
                Err(e) => {
                    tracing::warn!(error = %e, "elicitation failed; nothing ships");
                    ConfirmOutcome::Cancelled
                }
            },
            Self::Defer => ConfirmOutcome::Deferred,
            Self::Task(t) => {
                let Ok(schema) = rmcp::model::ElicitationSchema::from_type::<ConfirmForm>() else { return ConfirmOutcome::Unavailable };
                let ask = InputRequest::Elicitation(ElicitRequest::new(ElicitRequestParams::FormElicitationParams {
                    meta: None,
                    message: plan_message(plan),
                    requested_schema: schema,
                }));
                match t.request_input(INPUT_KEY, ask).await {
                    Ok(answer) => outcome_of(&answer, "elicitation (task input)"),
                    Err(_) => ConfirmOutcome::Cancelled,
                }
            }
            Self::Answered(o) => o.clone(),
            Self::Unavailable => ConfirmOutcome::Unavailable,
        }
    }
}

/// The human's answer, from an elicitation result (`{action, content: {approve, note}}`).
fn outcome_of(response: &serde_json::Value, how: &str) -> ConfirmOutcome {
    match response.get("action").and_then(|a| a.as_str()) {
        Some("accept") if response.pointer("/content/approve").and_then(|v| v.as_bool()) == Some(true) => {
            ConfirmOutcome::Approved { by: approved_by(how, response.pointer("/content/note").and_then(|v| v.as_str())) }
        }
        Some("accept") | Some("decline") => ConfirmOutcome::Declined,
        _ => ConfirmOutcome::Cancelled,
    }
}

fn approved_by(how: &str, note: Option<&str>) -> String {
    match note.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => format!("{how} (note: {})", n.chars().take(200).collect::<String>()),
        None => how.to_owned(),
    }
}

/// What the human sees: the whole plan, one fact a line.
pub fn plan_message(plan: &Plan) -> String {
    if let Some(change) = &plan.change {
        return format!("Change {}: {change}?\n{}\nApprove only if you intend this change now.", plan.env, plan.reasons.join("\n"));
    }
    let mut lines = vec![
        format!("Deploy {} to {}?", plan.version, plan.env),
        format!("Commit: {}", plan.commit),
        format!("Commits: {}", plan.commit_range.as_deref().unwrap_or("first deploy of this environment")),
        format!(
            "Gate: {} ({} critical, {} high, {} medium, {} low)",
            plan.gate_decision.as_str(),
            plan.gate_counts.critical,
            plan.gate_counts.high,
            plan.gate_counts.medium,
            plan.gate_counts.low
        ),
        format!("Staging smoke: {}", plan.staging_smoke),
        format!("Strategy: {}", plan.strategy.map(|s| s.as_str()).unwrap_or("default")),
        format!("Previous version (rollback target): {}", plan.previous_version.as_deref().unwrap_or("none")),
    ];
    if plan.direct {
        lines.push("DIRECT: staging verification is skipped.".into());
    }
    if plan.skip_security {
        lines.push("HIGH RISK: the security gate is skipped.".into());
    }
    for r in &plan.reasons {
        lines.push(format!("Why you are asked: {r}"));
    }
    lines.join("\n")
}

/// Whether this request speaks 2026-07-28 or later (no server-to-client requests).
pub fn is_multi_round_trip(rc: &RequestContext<RoleServer>) -> bool {
    rc.protocol_version().is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
}

/// Chooses the confirmer and the prior answer for one call.
pub fn confirmer_for(
    rc: &RequestContext<RoleServer>,
    codec: &RequestStateCodec,
    tool: &str,
    state: Option<String>,
    responses: Option<rmcp::model::InputResponses>,
    confirmation: Option<String>,
) -> Result<(McpConfirmer, Answer), CoreError> {
    let mut answer = Answer { confirmation, input_token: None };
    if let Some(state) = state {
        let opened = codec
            .open_with(&state, tool.as_bytes())
            .map_err(|e| CoreError::Confirmation { message: format!("the request state was not issued by this server for {tool}: {e}") })?;
        let token = String::from_utf8(opened).map_err(|_| CoreError::Confirmation { message: "the request state is not valid".into() })?;
        let response = responses
            .as_ref()
            .and_then(|r| r.get(INPUT_KEY))
            .ok_or_else(|| CoreError::invalid("inputResponses", format!("no `{INPUT_KEY}` response"), "answer the confirmation request"))?;
        let outcome = outcome_of(response, "elicitation (multi-round-trip)");
        answer.input_token = Some(token);
        return Ok((McpConfirmer::Answered(outcome), answer));
    }
    if is_multi_round_trip(rc) {
        if let Some(task) = crate::tasks::current() {
            return Ok((McpConfirmer::Task(task), answer));
        }
        return Ok((McpConfirmer::Defer, answer));
    }
    if rc.peer.supported_elicitation_modes().contains(&ElicitationMode::Form) {
        return Ok((McpConfirmer::Elicit(rc.peer.clone()), answer));
    }
    Ok((McpConfirmer::Unavailable, answer))
}

/// Turns a deferred confirmation into a multi-round-trip input request; `None` otherwise.
pub fn input_required(o: &RunOutcome, codec: &RequestStateCodec, tool: &str) -> Option<InputRequiredResult> {
    if o.run.status != RunStatus::ConfirmationRequired {
        return None;
    }
    input_required_for(o.plan.as_ref()?, o.confirmation_token.as_ref()?, codec, tool)
}

/// The input request asking a human to approve `plan`, its token sealed in the request state.
pub fn input_required_for(plan: &Plan, token: &str, codec: &RequestStateCodec, tool: &str) -> Option<InputRequiredResult> {
    let schema = rmcp::model::ElicitationSchema::from_type::<ConfirmForm>().ok()?;
    let ask = InputRequest::Elicitation(ElicitRequest::new(ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: plan_message(plan),
        requested_schema: schema,
    }));
    let mut requests = InputRequests::new();
    requests.insert(INPUT_KEY.to_owned(), ask);
    let state = codec.seal_with(
        token.as_bytes(),
        &SealOptions::new().associated_data(tool.as_bytes()).ttl(Duration::from_secs(deploy_core::confirm::TOKEN_TTL_SECONDS as u64)),
    );
    Some(InputRequiredResult::new(Some(requests), Some(state)))
}

/// The codec that seals request state. A fixed key (`OC_DEPLOY_STATE_KEY`, ≥ 32 bytes) lets
/// several server processes share state; otherwise each process draws its own.
pub fn state_codec() -> Arc<RequestStateCodec> {
    let key = std::env::var("OC_DEPLOY_STATE_KEY").ok().filter(|k| k.len() >= 32).map(String::into_bytes).unwrap_or_else(|| {
        let mut k = uuid::Uuid::new_v4().as_bytes().to_vec();
        k.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        k
    });
    match RequestStateCodec::try_new(key) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            // Unreachable with the key lengths above; fall back to a fresh random key.
            tracing::warn!(error = %e, "request-state key refused; using a random one");
            let mut k = uuid::Uuid::new_v4().as_bytes().to_vec();
            k.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
            Arc::new(RequestStateCodec::try_new(k).unwrap_or_else(|_| unreachable!("32 random bytes are a valid key")))
        }
    }
}
