//! Long tools as MCP tasks (rmcp's SEP-2663 `io.modelcontextprotocol/tasks` extension). When
//! the client declares the extension, `deploy_staging`, `deploy_prod` and `deploy_rollback`
//! answer with a task at once; the client polls `tasks/get` (status message = the current
//! step) and may `tasks/cancel`, which stops the run at a safe point. A confirmation inside a
//! task is asked through the task's own input requests on 2026-07-28.

use std::future::Future;
use std::pin::pin;

use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, CreateTaskResult};
use rmcp::service::RequestContext;
use rmcp::task_manager::{TaskContext, TaskExit, TaskOptions};
use rmcp::{ErrorData, RoleServer};
use tokio_util::sync::CancellationToken;

use crate::server::OcDeploy;

/// The tools that run as tasks when the client asks for them.
pub const TASK_TOOLS: &[&str] = &["deploy_staging", "deploy_prod", "deploy_rollback"];

tokio::task_local! {
    /// The task a tool call runs in, when it runs in one.
    pub static CURRENT: TaskContext;
}

/// Reports progress as the task's status message.
pub fn status(message: &str) {
    let _ = CURRENT.try_with(|t| t.set_status_message(message.to_owned()));
}

/// The task this call runs in, if any.
pub fn current() -> Option<TaskContext> {
    CURRENT.try_with(Clone::clone).ok()
}

impl OcDeploy {
    /// Whether this call should become a task.
    pub(crate) fn wants_task(&self, request: &CallToolRequestParams, rc: &RequestContext<RoleServer>) -> bool {
        TASK_TOOLS.contains(&request.name.as_ref())
            && self.tool_router.has_route(&request.name)
            && rc.client_capabilities().is_some_and(|c| c.supports_tasks())
    }

    /// Starts the call as a task and answers with it.
    pub(crate) fn start_task(&self, request: CallToolRequestParams, mut rc: RequestContext<RoleServer>) -> CallToolResponse {
        let server = self.clone();
        // The run follows the task's cancellation, not the (already answered) request's.
        let cancel = CancellationToken::new();
        rc.ct = cancel.clone();
        let opts = TaskOptions::new().with_poll_interval_ms(1000).with_status_message(format!("{}: starting", request.name));
        let task = self.shared.tasks.spawn(opts, move |tctx| {
            Box::pin(async move {
                let run =
                    CURRENT.scope(tctx.clone(), async move { server.tool_router.call(ToolCallContext::new(&server, request, rc)).await });
                settle(run, &tctx, &cancel).await
            })
        });
        CallToolResponse::Task(CreateTaskResult::new(task))
    }
}

/// Waits for the run; a `tasks/cancel` cancels it and waits until it has recorded that.
async fn settle(
    run: impl Future<Output = Result<CallToolResponse, ErrorData>>,
    tctx: &TaskContext,
    cancel: &CancellationToken,
) -> Result<CallToolResult, TaskExit> {
    let mut run = pin!(run);
    let response = tokio::select! {
        r = &mut run => r,
        _ = tctx.cancelled() => {
            cancel.cancel();
            let _ = run.await;
            return Err(TaskExit::Cancelled);
        }
    };
    match response.map_err(TaskExit::Error)? {
        CallToolResponse::Complete(r) => Ok(r),
        other => Ok(CallToolResult::error(vec![ContentBlock::text(format!("unexpected response inside a task: {other:?}"))])),
    }
}
