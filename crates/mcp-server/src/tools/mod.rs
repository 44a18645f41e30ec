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

use std::future::Future;

use deploy_core::domain::RunId;
use deploy_core::ops::{Ctx, Detach};
use rmcp::RoleServer;
use rmcp::model::CallToolResponse;
use rmcp::service::RequestContext;

use crate::render;
use crate::server::{OcDeploy, structured, tool_error};

impl OcDeploy {
    /// Answers a call that is not a run: the project's context, one operation, its result.
    pub(crate) async fn answer<T, F, Fut>(
        &self,
        rc: &RequestContext<RoleServer>,
        project_dir: Option<&str>,
        op: F,
        text: impl FnOnce(&T) -> String,
    ) -> CallToolResult
    where
        T: Serialize,
        F: FnOnce(Ctx) -> Fut,
        Fut: Future<Output = Result<T, CoreError>>,
    {
        match self.ctx(project_dir, rc) {
            Ok(ctx) => result(op(ctx).await, text, &self.redactor),
            Err(e) => tool_error(&e, &self.redactor),
        }
    }

    /// Pings the client until the returned guard drops (HTTP sessions on legacy protocols).
    fn heartbeat(&self, rc: &RequestContext<RoleServer>) -> Option<tokio_util::sync::DropGuard> {
        let every = self.shared.opts.heartbeat?;
        if crate::confirm::is_multi_round_trip(rc) {
            return None;
        }
        let stop = tokio_util::sync::CancellationToken::new();
        let (peer, s2) = (rc.peer.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = s2.cancelled() => break,
                    _ = tokio::time::sleep(every) => {
                        let ping = rmcp::model::ServerRequest::PingRequest(rmcp::model::PingRequest::default());
                        let _ = tokio::time::timeout(every, peer.send_request(ping)).await;
                    }
                }
            }
        });
        Some(stop.drop_guard())
    }

    /// Runs a deploy-core run operation in its own task, so it reaches a safe point and records
    /// its outcome even if the client goes away or the server shuts down. With `background`, the
    /// call returns as soon as the run is past its human checkpoints; the run goes on and
    /// `deploy_status` follows it.
    pub(crate) async fn execute_run<F, Fut>(
        &self,
        rc: &RequestContext<RoleServer>,
        project_dir: Option<&str>,
        background: bool,
        tool: &str,
        op: F,
    ) -> CallToolResponse
    where
        F: FnOnce(Ctx) -> Fut + Send + 'static,
        Fut: Future<Output = Result<RunOutcome, CoreError>> + Send + 'static,
    {
        let (mut ctx, progress) = match self.run_ctx(project_dir, rc, !background) {
            Ok(c) => c,
            Err(e) => return tool_error(&e, &self.redactor).into(),
        };
        ctx.progress.step(0, 1, &format!("{tool}: starting"));
        let mut detached = None;
        if background {
            let (d, rx) = Detach::new();
            ctx.run_id = Some(RunId::generate());
            ctx.detach = Some(d);
            detached = Some(rx);
        }
        let guard = self.shared.inflight.enter();
        let _heartbeat = self.heartbeat(rc);
        let session = self.session.clone();
        let mut task = tokio::spawn(async move {
            let _guard = guard;
            let r = op(ctx).await;
            // Subscribers hear that the run list, the checkpoint and this run's report changed.
            let mut changed = vec![crate::resources::RUNS.to_owned(), crate::resources::CHECKPOINT.to_owned()];
            if let Ok(o) = &r {
                changed.push(crate::resources::report_uri(&o.run.run_id));
            }
            session.changed(&changed);
            r
        });
        let joined = |r: Result<Result<RunOutcome, CoreError>, tokio::task::JoinError>| {
            r.unwrap_or_else(|e| {
                Err(CoreError::Refused {
                    message: format!("the run stopped unexpectedly: {e}"),
                    hint: "see deploy_status and the server log".into(),
                })
            })
        };
        let result = match detached {
            Some(rx) => tokio::select! {
                run = rx => match run {
                    Ok(run) => {
                        if let Some(p) = &progress {
                            p.store(false, std::sync::atomic::Ordering::Relaxed);
                        }
                        let id = run.run_id.clone();
                        Ok(RunOutcome { run, plan: None, confirmation_token: None, confirmation_expires_at: None, next: format!("running in the background: follow it with deploy_status {{\"run_id\": \"{id}\"}}") })
                    }
                    Err(_) => joined((&mut task).await),
                },
                r = &mut task => joined(r),
            },
            None => joined(task.await),
        };
        // Only a 2026-07-28 client gets an input request; older ones keep the token answer.
        if let (Ok(o), true) = (&result, crate::confirm::is_multi_round_trip(rc))
            && let Some(ir) = crate::confirm::input_required(o, &self.shared.codec, tool)
        {
            return CallToolResponse::InputRequired(ir);
        }
        run_result(result, &self.redactor).into()
    }
}

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
