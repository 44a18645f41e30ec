//! The MCP tools, one file and one router per toolset. Handlers stay thin: check the input,
//! call one deploy-core operation, convert the result.

pub mod args;
pub mod pipeline;
pub mod records;
pub mod setup;

use deploy_core::CoreError;
use deploy_core::ops::RunOutcome;
use deploy_core::run::{RunKind, RunStatus};
use deploy_core::secret::Redactor;
use rmcp::model::CallToolResult;
use serde::Serialize;

use crate::render;
use crate::server::{structured, tool_error};

/// Whether a run outcome is a failure the agent must notice (`isError`).
pub fn run_is_error(o: &RunOutcome) -> bool {
    match o.run.status {
        RunStatus::Failed | RunStatus::Blocked | RunStatus::Declined | RunStatus::Cancelled | RunStatus::Interrupted => true,
        // A production deploy that had to roll back did not ship.
        RunStatus::RolledBack => o.run.kind != RunKind::Rollback,
        RunStatus::Running | RunStatus::Succeeded | RunStatus::ConfirmationRequired => false,
    }
}

/// A run tool's result; a failed run carries its `code` and `hint` at the top level too.
pub(crate) fn run_result(r: Result<RunOutcome, CoreError>, redactor: &Redactor) -> CallToolResult {
    match r {
        Ok(o) => {
            let is_error = run_is_error(&o);
            let text = render::run(&o);
            if is_error {
                let mut v = serde_json::to_value(&o).unwrap_or_default();
                if let (Some(obj), Some(err)) = (v.as_object_mut(), o.run.error.as_ref()) {
                    obj.insert("code".into(), err.code.clone().into());
                    obj.insert("hint".into(), err.hint.clone().into());
                    obj.insert("retryable".into(), (err.code == "environment_locked").into());
                }
                structured(&v, text, true, redactor)
            } else {
                structured(&o, text, false, redactor)
            }
        }
        Err(e) => tool_error(&e, redactor),
    }
}

/// Any other tool's result.
pub(crate) fn result<T: Serialize>(r: Result<T, CoreError>, text: impl FnOnce(&T) -> String, redactor: &Redactor) -> CallToolResult {
    match r {
        Ok(v) => {
            let t = text(&v);
            structured(&v, t, false, redactor)
        }
        Err(e) => tool_error(&e, redactor),
    }
}
