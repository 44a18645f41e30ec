//! The MCP server: one struct whose tools come from three toolset routers (pipeline, setup,
//! records), plus the conversions every tool shares — project resolution, progress, and turning
//! deploy-core results into tool results. Only this crate knows MCP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use deploy_core::CoreError;
use deploy_core::ops::{Ctx, Progress};
use deploy_core::secret::Redactor;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock, GetTaskParams, GetTaskResult, Implementation,
    ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams, ProgressNotificationParam, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, UpdateTaskParams,
};
#[allow(deprecated)]
use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam, SetLevelRequestParams, SubscribeRequestParams, UnsubscribeRequestParams};
use rmcp::service::NotificationContext;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, prompt_handler};
use rmcp::{RoleServer, ServerHandler, tool_handler};
use serde::Serialize;

/// How the server was started.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The project (or the directory projects live under) tools may touch.
    pub root: PathBuf,
    /// The oc-deploy executable, run detached as the local platform's supervisor.
    pub exe: PathBuf,
    /// Operator-level auto-approve: production ships without asking.
    pub auto_approve: bool,
    /// Only tools that change no environment, secret or ticket.
    pub read_only: bool,
    /// Toolsets to expose (pipeline, setup, records); empty means all.
    pub toolsets: Vec<String>,
    /// `--project-dir` was given: MCP roots do not override it.
    pub root_from_flag: bool,
    /// While a run is in flight, ping the client this often so an idle-session timer (HTTP)
    /// never closes a session that still owes an answer.
    pub heartbeat: Option<Duration>,
}

/// The toolsets and their tools.
pub const TOOLSETS: &[(&str, &[&str])] = &[
    ("pipeline", &["deploy_staging", "deploy_smoke", "deploy_prod", "deploy_health", "deploy_rollback"]),
    ("setup", &["deploy_init", "deploy_audit", "deploy_env"]),
    ("records", &["deploy_status", "deploy_checkpoint", "deploy_report", "deploy_retry_pm"]),
];

/// Tools that change an environment, a secret, a ticket or a project file.
pub const MUTATING_TOOLS: &[&str] = &["deploy_staging", "deploy_prod", "deploy_rollback", "deploy_init", "deploy_env", "deploy_retry_pm"];

/// What every session of one server process shares: options, the redactor, the shutdown
/// signal, the runs in flight, and the key that seals request state.
pub struct Shared {
    pub opts: ServerOptions,
    pub redactor: Redactor,
    /// Cancelled on shutdown: every run stops at its next safe point.
    pub shutdown: CancellationToken,
    pub inflight: Arc<InFlight>,
    pub codec: Arc<rmcp::model::RequestStateCodec>,
    /// Long tools running as MCP tasks, shared by every session of the process.
    pub tasks: rmcp::task_manager::TaskManager,
    /// The tool and prompt routers, built once: every session clones them (cheap, shared
    /// schemas) instead of generating and compacting every schema again.
    routers: std::sync::OnceLock<(ToolRouter<OcDeploy>, rmcp::handler::server::router::prompt::PromptRouter<OcDeploy>)>,
}

impl Shared {
    pub fn new(opts: ServerOptions) -> Arc<Self> {
        Arc::new(Self {
            opts,
            redactor: Redactor::from_process_env(),
            shutdown: CancellationToken::new(),
            inflight: Arc::default(),
            codec: crate::confirm::state_codec(),
            tasks: Default::default(),
            routers: std::sync::OnceLock::new(),
        })
    }

    /// Stops every run at a safe point and waits (bounded) until they have recorded it.
    pub async fn drain(&self, limit: Duration) {
        self.shutdown.cancel();
        let n = self.inflight.count();
        if n > 0 {
            tracing::info!(runs = n, "waiting for in-flight runs to reach a safe point");
        }
        if tokio::time::timeout(limit, self.inflight.idle()).await.is_err() {
            tracing::warn!(runs = self.inflight.count(), "runs still in flight at exit; the next run takes their locks over");
        }
    }
}

/// Counts the operations running in this process.
#[derive(Debug, Default)]
pub struct InFlight {
    n: AtomicUsize,
    idle: tokio::sync::Notify,
}

impl InFlight {
    pub fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.n.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        self.n.load(Ordering::SeqCst)
    }

    async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// What one MCP session remembers: its log level, its resource subscriptions, and the
/// project root its client offered (MCP roots).
#[derive(Debug, Default)]
pub struct Session {
    log_level: std::sync::Mutex<Option<u8>>,
    subscriptions: std::sync::Mutex<std::collections::HashSet<String>>,
    root: std::sync::RwLock<Option<PathBuf>>,
    peer: std::sync::OnceLock<rmcp::Peer<RoleServer>>,
}

/// Severity ranks of MCP logging levels (debug = 0 … emergency = 7).
#[allow(deprecated)]
fn level_rank(l: &LoggingLevel) -> u8 {
    match l {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

impl Session {
    /// Sends a log message to the client if its level allows (default: warning and above).
    #[allow(deprecated)]
    pub fn log(&self, level: LoggingLevel, message: &str) {
        let min = self.log_level.lock().ok().and_then(|g| *g).unwrap_or(3);
        let Some(peer) = self.peer.get().cloned() else { return };
        if level_rank(&level) < min {
            return;
        }
        let param = LoggingMessageNotificationParam::new(level, serde_json::Value::String(message.to_owned())).with_logger("oc-deploy");
        tokio::spawn(async move {
            let _ = peer.notify_logging_message(param).await;
        });
    }

    /// Tells subscribers that these resources changed.
    pub fn changed(&self, uris: &[String]) {
        let Some(peer) = self.peer.get().cloned() else { return };
        let subscribed: Vec<String> = match self.subscriptions.lock() {
            Ok(s) => uris.iter().filter(|u| s.contains(*u)).cloned().collect(),
            Err(_) => return,
        };
        if subscribed.is_empty() {
            return;
        }
        tokio::spawn(async move {
            for uri in subscribed {
                let _ = peer.notify_resource_updated(rmcp::model::ResourceUpdatedNotificationParam::new(uri)).await;
            }
        });
    }
}

#[derive(Clone)]
pub struct OcDeploy {
    pub(crate) shared: Arc<Shared>,
    pub(crate) session: Arc<Session>,
    pub(crate) redactor: Redactor,
    pub(crate) tool_router: ToolRouter<Self>,
    pub(crate) prompt_router: rmcp::handler::server::router::prompt::PromptRouter<Self>,
}

impl OcDeploy {
    pub fn new(shared: Arc<Shared>) -> Self {
        let (tool_router, prompt_router) =
            shared.routers.get_or_init(|| (Self::build_tool_router(&shared.opts), Self::prompt_router())).clone();
        let redactor = shared.redactor.clone();
        Self { shared, session: Arc::default(), redactor, tool_router, prompt_router }
    }

    /// The tools this server exposes, with compact schemas.
    fn build_tool_router(opts: &ServerOptions) -> ToolRouter<Self> {
        let mut router = Self::pipeline_router() + Self::setup_router() + Self::records_router();
        for (set, tools) in TOOLSETS {
            if !opts.toolsets.is_empty() && !opts.toolsets.iter().any(|t| t == set) {
                for t in *tools {
                    router.remove_route(t);
                }
            }
        }
        if opts.read_only {
            for t in MUTATING_TOOLS {
                router.remove_route(t);
            }
        }
        // Serve compact output schemas (see schema.rs): the whole tools/list stays small.
        let mut compacted = ToolRouter::new();
        for mut route in router {
            if let Some(out) = route.attr.output_schema.take() {
                route.attr.output_schema = Some(Arc::new(crate::schema::compact_output(&out)));
            }
            route.attr.input_schema = Arc::new(crate::schema::compact_input(&route.attr.input_schema));
            compacted.add_route(route);
        }
        compacted
    }

    /// The project root: `--project-dir`, else the first root the client offered, else the
    /// server's working directory.
    pub(crate) fn project_root(&self) -> PathBuf {
        if !self.shared.opts.root_from_flag
            && let Some(r) = self.session.root.read().ok().and_then(|g| g.clone())
        {
            return r;
        }
        self.shared.opts.root.clone()
    }

    /// The deploy-core context for one call: project directory checked against the root,
    /// progress sent to the client, cancellation from the request.
    pub(crate) fn ctx(&self, project_dir: Option<&str>, rc: &RequestContext<RoleServer>) -> Result<Ctx, CoreError> {
        self.run_ctx(project_dir, rc, true).map(|(c, _)| c)
    }

    /// Like [`OcDeploy::ctx`], also returning the switch that silences progress. A background
    /// run outlives its request, so it follows only server shutdown (`follow_request: false`).
    pub(crate) fn run_ctx(
        &self,
        project_dir: Option<&str>,
        rc: &RequestContext<RoleServer>,
        follow_request: bool,
    ) -> Result<(Ctx, Option<Arc<std::sync::atomic::AtomicBool>>), CoreError> {
        let opts = &self.shared.opts;
        let root = deploy_core::ops::resolve_project_dir(&self.project_root(), project_dir)?;
        // Cancelled by the client's notifications/cancelled or by server shutdown.
        let cancel = self.shared.shutdown.child_token();
        if follow_request {
            let (req_ct, c2) = (rc.ct.clone(), cancel.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = req_ct.cancelled() => c2.cancel(),
                    _ = c2.cancelled() => {}
                }
            });
        }
        let mut ctx = Ctx::new(&root, opts.exe.clone(), self.redactor.clone())
            .with_cancel(cancel)
            .with_events(Arc::new(crate::pm::PmEvents::new(self.redactor.clone())));
        ctx.auto_approve = opts.auto_approve;
        let p = McpProgress::new(rc.peer.clone(), rc.meta.get_progress_token(), self.redactor.clone(), self.session.clone());
        let switch = Some(p.active.clone());
        ctx = ctx.with_progress(Arc::new(p));
        Ok((ctx, switch))
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for OcDeploy {
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_tools()
            .enable_prompts()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_logging()
            .enable_completions()
            .enable_tasks()
            .build();
        ServerConfig::new(caps)
            .with_server_info(
                Implementation::new("oc-deploy", env!("CARGO_PKG_VERSION")).with_title("oc-deploy: gated deploys for coding agents"),
            )
            .with_instructions(INSTRUCTIONS)
    }

    async fn call_tool(&self, request: CallToolRequestParams, rc: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        if self.wants_task(&request, &rc) {
            return Ok(self.start_task(request, rc));
        }
        self.tool_router.call(rmcp::handler::server::tool::ToolCallContext::new(self, request, rc)).await
    }

    async fn get_task(&self, r: GetTaskParams, _cx: RequestContext<RoleServer>) -> Result<GetTaskResult, ErrorData> {
        Ok(GetTaskResult::new(self.shared.tasks.get_task(&r.task_id)?))
    }

    async fn update_task(&self, r: UpdateTaskParams, _cx: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        self.shared.tasks.update_task(&r.task_id, r.input_responses)
    }

    async fn cancel_task(&self, r: CancelTaskParams, _cx: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        self.shared.tasks.cancel_task(&r.task_id)
    }

    /// Completes prompt arguments with a closed set of values (env, strategy).
    async fn complete(
        &self,
        r: rmcp::model::CompleteRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CompleteResult, ErrorData> {
        let all: &[&str] = match r.argument.name.as_str() {
            "env" => &["staging", "production"],
            "strategy" => &["rolling", "blue-green", "canary", "recreate"],
            _ => &[],
        };
        let prefix = r.argument.value.to_ascii_lowercase();
        let values: Vec<String> = all.iter().filter(|v| v.starts_with(&prefix)).map(|v| (*v).to_owned()).collect();
        let info = rmcp::model::CompletionInfo::new(values).map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(rmcp::model::CompleteResult::new(info))
    }

    async fn on_initialized(&self, cx: NotificationContext<RoleServer>) {
        self.learn_roots(cx.peer).await;
    }

    async fn on_roots_list_changed(&self, cx: NotificationContext<RoleServer>) {
        self.learn_roots(cx.peer).await;
    }

    async fn list_resources(
        &self,
        _r: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(crate::resources::list())
    }

    async fn list_resource_templates(
        &self,
        _r: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(crate::resources::templates())
    }

    async fn read_resource(
        &self,
        r: ReadResourceRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        crate::resources::read(&r.uri, &self.project_root(), &self.redactor).map(Into::into)
    }

    #[allow(deprecated)]
    async fn subscribe(&self, r: SubscribeRequestParams, cx: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        let _ = self.session.peer.set(cx.peer);
        if let Ok(mut s) = self.session.subscriptions.lock() {
            s.insert(r.uri);
        }
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(&self, r: UnsubscribeRequestParams, _cx: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        if let Ok(mut s) = self.session.subscriptions.lock() {
            s.remove(&r.uri);
        }
        Ok(())
    }

    #[allow(deprecated)]
    async fn set_level(&self, r: SetLevelRequestParams, cx: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        let _ = self.session.peer.set(cx.peer);
        if let Ok(mut l) = self.session.log_level.lock() {
            *l = Some(level_rank(&r.level));
        }
        Ok(())
    }
}

impl OcDeploy {
    #[allow(deprecated)]
    async fn learn_roots(&self, peer: rmcp::Peer<RoleServer>) {
        let _ = self.session.peer.set(peer.clone());
        if self.shared.opts.root_from_flag || peer.peer_info().is_none_or(|i| i.capabilities.roots.is_none()) {
            return;
        }
        #[allow(deprecated)]
        let roots = peer.list_roots().await;
        if let Ok(r) = roots {
            let dir = r
                .roots
                .iter()
                .find_map(|root| root.uri.strip_prefix("file://").map(|p| PathBuf::from(percent_decode(p))))
                .filter(|p| p.is_dir());
            if let (Some(d), Ok(mut g)) = (dir, self.session.root.write()) {
                tracing::info!(root = %d.display(), "using the project root the client offered");
                *g = Some(d);
            }
        }
    }
}

/// Decodes `%XX` escapes of a file URI path (`/my%20project` → `/my project`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if let (b'%', Some(h), Some(l)) = (b[i], b.get(i + 1).and_then(|c| hex(*c)), b.get(i + 2).and_then(|c| hex(*c))) {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const INSTRUCTIONS: &str = "oc-deploy runs a gated pipeline: deploy_audit (gate) → deploy_staging (deploy + smoke tests) → deploy_prod (needs a human's confirmation; health check; automatic rollback) → deploy_health. deploy_status shows what runs where. Never pass a confirmation token the human did not approve.";

/// Sends deploy-core progress as MCP progress notifications, in order, never blocking the run.
/// Silenced once its request has been answered (a background run goes on without it).
pub(crate) struct McpProgress {
    tx: tokio::sync::mpsc::UnboundedSender<(u32, u32, String)>,
    pub(crate) active: Arc<std::sync::atomic::AtomicBool>,
}

impl McpProgress {
    /// Progress notifications when the request has a token, and info-level log messages when
    /// the session asked for them.
    fn new(peer: rmcp::Peer<RoleServer>, token: Option<rmcp::model::ProgressToken>, redactor: Redactor, session: Arc<Session>) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u32, u32, String)>();
        tokio::spawn(async move {
            // Progress must strictly increase; repeated step numbers get a small increment.
            let last = AtomicU64::new(0);
            while let Some((k, n, msg)) = rx.recv().await {
                #[allow(deprecated)]
                session.log(LoggingLevel::Info, &redactor.redact(&msg));
                let Some(token) = &token else { continue };
                let prev = f64::from_bits(last.load(Ordering::Relaxed));
                let p = if f64::from(k) > prev { f64::from(k) } else { prev + 0.01 };
                last.store(p.to_bits(), Ordering::Relaxed);
                let param = ProgressNotificationParam::new(token.clone(), p)
                    .with_total(f64::from(n.max(k)).max(p))
                    .with_message(redactor.redact(&format!("step {k}/{n}: {msg}")));
                if peer.notify_progress(param).await.is_err() {
                    break;
                }
            }
        });
        Self { tx, active: Arc::new(std::sync::atomic::AtomicBool::new(true)) }
    }
}

impl Progress for McpProgress {
    fn step(&self, k: u32, n: u32, message: &str) {
        crate::tasks::status(&format!("step {k}/{n}: {message}"));
        if self.active.load(Ordering::Relaxed) {
            let _ = self.tx.send((k, n, message.to_owned()));
        }
    }
}

/// A successful (or in-band failed) tool result: a short human text plus the structured value.
pub(crate) fn structured<T: Serialize>(value: &T, text: String, is_error: bool, redactor: &Redactor) -> CallToolResult {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    let json: serde_json::Value = serde_json::from_str(&redactor.redact(&json)).unwrap_or_default();
    let mut r = if is_error { CallToolResult::structured_error(json) } else { CallToolResult::structured(json) };
    r.content = vec![ContentBlock::text(redactor.redact(&text))];
    r
}

/// A failure before or outside a run: `isError` with a stable code and a hint.
pub(crate) fn tool_error(e: &CoreError, redactor: &Redactor) -> CallToolResult {
    let v = error_json(e);
    let text = format!("error [{}]: {}\nhint: {}", e.code(), e, e.hint());
    structured(&v, text, true, redactor)
}

pub(crate) fn error_json(e: &CoreError) -> serde_json::Value {
    serde_json::json!({ "code": e.code(), "message": e.to_string(), "hint": e.hint(), "retryable": e.retryable() })
}

/// The directory `oc-deploy` treats as the project by default.
pub fn default_root(project_dir: Option<&Path>) -> std::io::Result<PathBuf> {
    match project_dir {
        Some(p) => p.canonicalize(),
        None => std::env::current_dir(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_uris_are_percent_decoded() {
        assert_eq!(super::percent_decode("/tmp/my%20project"), "/tmp/my project");
        assert_eq!(super::percent_decode("/a%2"), "/a%2");
        assert_eq!(super::percent_decode("/plain"), "/plain");
    }
}
