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
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
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
}

/// The toolsets and their tools.
pub const TOOLSETS: &[(&str, &[&str])] = &[
    ("pipeline", &["deploy_staging", "deploy_smoke", "deploy_prod", "deploy_health", "deploy_rollback"]),
    ("setup", &["deploy_init", "deploy_audit"]),
    ("records", &["deploy_status", "deploy_checkpoint", "deploy_report"]),
];

/// Tools that change an environment, a secret, a ticket or a project file.
pub const MUTATING_TOOLS: &[&str] = &["deploy_staging", "deploy_prod", "deploy_rollback", "deploy_init"];

/// What every session of one server process shares: options, the redactor, the shutdown
/// signal, the runs in flight, and the key that seals request state.
pub struct Shared {
    pub opts: ServerOptions,
    pub redactor: Redactor,
    /// Cancelled on shutdown: every run stops at its next safe point.
    pub shutdown: CancellationToken,
    pub inflight: Arc<InFlight>,
    pub codec: Arc<rmcp::model::RequestStateCodec>,
}

impl Shared {
    pub fn new(opts: ServerOptions) -> Arc<Self> {
        Arc::new(Self {
            opts,
            redactor: Redactor::from_process_env(),
            shutdown: CancellationToken::new(),
            inflight: Arc::default(),
            codec: crate::confirm::state_codec(),
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

#[derive(Clone)]
pub struct OcDeploy {
    pub(crate) shared: Arc<Shared>,
    pub(crate) redactor: Redactor,
    pub(crate) tool_router: ToolRouter<Self>,
}

impl OcDeploy {
    pub fn new(shared: Arc<Shared>) -> Self {
        let opts = &shared.opts;
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
        let redactor = shared.redactor.clone();
        Self { shared, redactor, tool_router: router }
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
        let root = deploy_core::ops::resolve_project_dir(&opts.root, project_dir)?;
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
        let mut ctx = Ctx::new(&root, opts.exe.clone(), self.redactor.clone()).with_cancel(cancel);
        ctx.auto_approve = opts.auto_approve;
        let mut switch = None;
        if let Some(token) = rc.meta.get_progress_token() {
            let p = McpProgress::new(rc.peer.clone(), token, self.redactor.clone());
            switch = Some(p.active.clone());
            ctx = ctx.with_progress(Arc::new(p));
        }
        Ok((ctx, switch))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for OcDeploy {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("oc-deploy", env!("CARGO_PKG_VERSION")).with_title("oc-deploy: gated deploys for coding agents"),
            )
            .with_instructions(INSTRUCTIONS)
    }
}

const INSTRUCTIONS: &str = "oc-deploy runs a gated pipeline: deploy_audit (gate) → deploy_staging (deploy + smoke tests) → deploy_prod (needs a human's confirmation; health check; automatic rollback) → deploy_health. deploy_status shows what runs where. Never pass a confirmation token the human did not approve.";

/// Sends deploy-core progress as MCP progress notifications, in order, never blocking the run.
/// Silenced once its request has been answered (a background run goes on without it).
pub(crate) struct McpProgress {
    tx: tokio::sync::mpsc::UnboundedSender<(u32, u32, String)>,
    pub(crate) active: Arc<std::sync::atomic::AtomicBool>,
}

impl McpProgress {
    fn new(peer: rmcp::Peer<RoleServer>, token: rmcp::model::ProgressToken, redactor: Redactor) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u32, u32, String)>();
        tokio::spawn(async move {
            // Progress must strictly increase; repeated step numbers get a small increment.
            let last = AtomicU64::new(0);
            while let Some((k, n, msg)) = rx.recv().await {
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
