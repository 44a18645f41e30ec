//! The operations behind every MCP tool and CLI command. Each one loads the project, drives a
//! run through the pipeline state machine, calls the provider, and records the result in the
//! checkpoint and the run log. Tool handlers and CLI commands only convert inputs and outputs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::audit;
use crate::config::{Config, Platform};
use crate::confirm::{ConfirmOutcome, Confirmer, Plan, TokenPurpose, Tokens};
use crate::detect::{self, ChecklistItem, Detection};
use crate::domain::{CommitSha, Environment, RunId, Strategy, now_rfc3339};
use crate::error::{CoreError, Result};
use crate::events::{DeployFacts, RunEvent, RunEvents};
use crate::gate::{Decision, GateResult};
use crate::git;
use crate::pipeline::{Event, Machine, State};
use crate::process::{Cmd, Runner};
use crate::provider::{self, Capabilities, DeployTarget, EnvListing, EnvVarName, Provider};
use crate::report::{self, ReportKind};
use crate::run::{CheckResult, RollbackInfo, RunError, RunKind, RunRecord, RunStatus, StepRecord, StepStatus};
use crate::secret::Redactor;
use crate::smoke::{Checker, HealthReport, Verdict};
use crate::store::{Checkpoint, GateSummary, HealthSummary, LockHolder, MonitoringHandoff, Store};

/// Receives progress: step `k` of `n` with a message. Implementations must not block.
pub trait Progress: Send + Sync {
    fn step(&self, k: u32, n: u32, message: &str);
}

/// Progress that goes nowhere.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn step(&self, _k: u32, _n: u32, _message: &str) {}
}

/// Everything an operation needs about where and how it runs.
#[derive(Clone)]
pub struct Ctx {
    pub root: PathBuf,
    pub runner: Runner,
    pub store: Store,
    pub tokens: Tokens,
    pub cancel: CancellationToken,
    pub progress: Arc<dyn Progress>,
    /// The oc-deploy executable, started detached as the local platform's supervisor.
    pub supervisor_exe: PathBuf,
    /// The operator started oc-deploy with auto-approve (`--yes`): no confirmation is asked.
    pub auto_approve: bool,
    /// Auto-approve also covers `skip_security` (HIGH RISK). Only an operator's `--yes` on that
    /// very command sets it; a server started with `--auto-approve` still asks a human.
    pub auto_approve_high_risk: bool,
    /// The id the next run gets (so a caller can name it before it starts).
    pub run_id: Option<RunId>,
    /// Fired once a run is past its human checkpoints and holds its lock: a background caller
    /// returns the run then and lets it go on.
    pub detach: Option<Detach>,
    /// Who hears about gate passes, verifications, ships and rollbacks (PM tickets, chat).
    pub events: Option<Arc<dyn RunEvents>>,
}

/// A one-shot signal carrying the run as it stood when it could go on alone.
#[derive(Clone, Debug)]
pub struct Detach(Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<RunRecord>>>>);

impl Detach {
    pub fn new() -> (Self, tokio::sync::oneshot::Receiver<RunRecord>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Self(Arc::new(std::sync::Mutex::new(Some(tx)))), rx)
    }

    fn fire(&self, run: &RunRecord) {
        if let Some(tx) = self.0.lock().ok().and_then(|mut g| g.take()) {
            let _ = tx.send(run.clone());
        }
    }
}

impl Ctx {
    pub fn new(root: &Path, supervisor_exe: PathBuf, redactor: Redactor) -> Self {
        Self {
            root: root.to_path_buf(),
            runner: Runner::new(redactor),
            store: Store::new(root),
            tokens: Tokens::new(root),
            cancel: CancellationToken::new(),
            progress: Arc::new(NoProgress),
            supervisor_exe,
            auto_approve: false,
            auto_approve_high_risk: false,
            run_id: None,
            detach: None,
            events: None,
        }
    }

    pub fn with_events(mut self, e: Arc<dyn RunEvents>) -> Self {
        self.events = Some(e);
        self
    }

    pub fn with_progress(mut self, p: Arc<dyn Progress>) -> Self {
        self.progress = p;
        self
    }

    pub fn with_cancel(mut self, c: CancellationToken) -> Self {
        self.cancel = c;
        self
    }

    fn config(&self) -> Result<Config> {
        Config::load(&self.root)
    }
}

/// Resolves a caller-given project directory against the server's root, refusing anything
/// outside it (after resolving `..` and symlinks).
pub fn resolve_project_dir(server_root: &Path, requested: Option<&str>) -> Result<PathBuf> {
    let root = server_root.canonicalize().map_err(|e| CoreError::io(format!("resolving {}", server_root.display()), e))?;
    let Some(req) = requested.map(str::trim).filter(|r| !r.is_empty()) else { return Ok(root) };
    let candidate = if Path::new(req).is_absolute() { PathBuf::from(req) } else { root.join(req) };
    let resolved = candidate.canonicalize().map_err(|_| {
        CoreError::invalid("project_dir", format!("`{req}` does not exist"), "give an existing directory inside the project")
    })?;
    if !resolved.starts_with(&root) {
        return Err(CoreError::PathOutsideProject { path: req.to_owned(), root });
    }
    if !resolved.is_dir() {
        return Err(CoreError::invalid("project_dir", format!("`{req}` is not a directory"), "give a directory"));
    }
    Ok(resolved)
}

// ---------------------------------------------------------------------------------------------
// Results

/// The result of a run tool: the run record plus, when a human must confirm, the plan and a
/// one-time token.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunOutcome {
    #[serde(flatten)]
    pub run: RunRecord,
    /// The plan awaiting confirmation (status `confirmation_required`), or the plan approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Call the same tool again with `confirmation: <token>` to proceed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation_expires_at: Option<String>,
    /// What to do next.
    pub next: String,
}

// ---------------------------------------------------------------------------------------------
// The run driver

/// Drives one run: state machine, steps, progress, run log.
struct RunCtl<'a> {
    ctx: &'a Ctx,
    run: RunRecord,
    machine: Machine,
    started: Instant,
    total: u32,
    k: u32,
    step_started: Option<Instant>,
}

impl<'a> RunCtl<'a> {
    fn new(ctx: &'a Ctx, cfg: &Config, kind: RunKind, env: Environment, direct: bool, total: u32) -> Self {
        let run = RunRecord {
            run_id: ctx.run_id.clone().unwrap_or_else(RunId::generate),
            kind,
            env,
            project: cfg.project_name.clone(),
            platform: cfg.platform.as_str().into(),
            commit: None,
            version: None,
            strategy: None,
            status: RunStatus::Running,
            state: State::Planned,
            started_at: now_rfc3339(),
            finished_at: None,
            duration_ms: 0,
            pid: std::process::id(),
            steps: Vec::new(),
            gate: None,
            previous_version: None,
            direct,
            dry_run: false,
            confirmed_by: None,
            smoke: Vec::new(),
            health: Vec::new(),
            rollback: None,
            error: None,
            notes: Vec::new(),
        };
        Self { ctx, run, machine: Machine::new(kind, env, direct), started: Instant::now(), total, k: 0, step_started: None }
    }

    /// Applies an event; a refusal stops the run (it is a safety rule, not a glitch).
    fn apply(&mut self, e: Event) -> Result<()> {
        self.machine = self.machine.next(e).map_err(|r| CoreError::Refused {
            message: r.to_string(),
            hint: "this is a safety rule of the pipeline; see deploy_status".into(),
        })?;
        self.run.state = self.machine.state;
        Ok(())
    }

    fn log(&self, event: &str) {
        if let Err(e) = self.ctx.store.append_run(&self.run, event) {
            tracing::error!(error = %e, "could not append to the run log");
        }
    }

    fn begin(&mut self, name: &str, message: &str) {
        self.k += 1;
        self.total = self.total.max(self.k);
        self.ctx.progress.step(self.k, self.total, &format!("{name}: {message}"));
        self.step_started = Some(Instant::now());
        self.run.steps.push(StepRecord {
            name: name.into(),
            status: StepStatus::Running,
            started_at: now_rfc3339(),
            duration_ms: 0,
            detail: message.into(),
        });
        self.run.duration_ms = self.started.elapsed().as_millis() as u64;
        self.log("step_started");
    }

    fn end(&mut self, status: StepStatus, detail: impl Into<String>) {
        let detail = self.ctx.runner.redactor().redact(&detail.into());
        let ms = self.step_started.take().map(|s| s.elapsed().as_millis() as u64).unwrap_or(0);
        if let Some(s) = self.run.steps.last_mut() {
            s.status = status;
            s.duration_ms = ms;
            s.detail = detail;
        }
        self.log("step_finished");
    }

    /// A step that happened without work (recorded, with progress).
    fn record(&mut self, name: &str, status: StepStatus, detail: impl Into<String>) {
        let detail = detail.into();
        self.begin(name, &detail);
        self.end(status, detail);
    }

    fn fail_with(&mut self, status: RunStatus, err: &CoreError) {
        let message = self.ctx.runner.redactor().redact(&err.to_string());
        if let Some(s) = self.run.steps.last_mut().filter(|s| s.status == StepStatus::Running) {
            s.status = StepStatus::Failed;
            s.detail = message.clone();
            s.duration_ms = self.step_started.take().map(|t| t.elapsed().as_millis() as u64).unwrap_or(0);
        }
        self.run.error = Some(RunError { code: err.code().into(), message, hint: err.hint() });
        self.finish(status);
    }

    fn finish(&mut self, status: RunStatus) {
        self.run.status = status;
        let event = match status {
            RunStatus::Cancelled => Some(Event::Cancel),
            RunStatus::Interrupted => Some(Event::Interrupt),
            _ => None,
        };
        if let Some(e) = event
            && let Ok(m) = self.machine.next(e)
        {
            self.machine = m;
            self.run.state = m.state;
        }
        self.run.finished_at = Some(now_rfc3339());
        self.run.duration_ms = self.started.elapsed().as_millis() as u64;
        self.ctx.progress.step(self.total, self.total, &format!("run {}: {}", self.run.run_id, status.as_str()));
        self.log("finished");
    }

    /// Lets a background caller go: the run continues without it.
    fn detach(&self) {
        if let Some(d) = &self.ctx.detach {
            d.fire(&self.run);
        }
    }

    fn outcome(self, next: impl Into<String>) -> RunOutcome {
        RunOutcome { run: self.run, plan: None, confirmation_token: None, confirmation_expires_at: None, next: next.into() }
    }
}

/// Runs `f`, turning a cancellation into a cancelled run and other errors into a failed one.
async fn guarded<T>(ctl: &mut RunCtl<'_>, fut: impl Future<Output = Result<T>>) -> std::result::Result<T, CoreError> {
    tokio::select! {
        r = fut => r,
        _ = ctl.ctx.cancel.cancelled() => Err(CoreError::Cancelled),
    }
}

fn status_for(err: &CoreError) -> RunStatus {
    if matches!(err, CoreError::Cancelled) { RunStatus::Cancelled } else { RunStatus::Failed }
}

// ---------------------------------------------------------------------------------------------
// Gate and confirmation shared by staging and production

/// Runs the gate as a step; applies `skip_security` (confirmed, high risk) to a blocking gate.
async fn gate_step(ctl: &mut RunCtl<'_>, cfg: &Config, skip_security: bool) -> Result<GateResult> {
    ctl.begin("gate", "reading audit checkpoints and running the project's audit");
    let mut gate =
        match guarded(ctl, audit::evaluate_gate(&ctl.ctx.root, &cfg.audit, &ctl.ctx.runner, chrono::Utc::now(), &ctl.ctx.cancel)).await {
            Ok(g) => g,
            Err(e) => {
                ctl.fail_with(status_for(&e), &e);
                return Err(e);
            }
        };
    if skip_security {
        gate.skipped = true;
        gate.reasons.push("skip_security: the gate was bypassed (HIGH RISK, needs confirmation)".into());
        if gate.decision == Decision::Block {
            gate.decision = Decision::Warn;
        }
        gate.needs_confirmation = true;
    }
    record_gate(&ctl.ctx.store, &gate);
    let status = match gate.decision {
        Decision::Proceed => StepStatus::Passed,
        Decision::Warn => StepStatus::Warned,
        Decision::Block => StepStatus::Failed,
    };
    ctl.run.gate = Some(gate.clone());
    ctl.apply(Event::GateDecided { decision: gate.decision, needs_confirmation: gate.needs_confirmation })?;
    ctl.end(status, format!("{}: {}", gate.decision.as_str(), gate.reasons.join("; ")));
    Ok(gate)
}

fn record_gate(store: &Store, gate: &GateResult) {
    let summary = GateSummary { decision: gate.decision, counts: gate.counts, at: gate.checked_at.clone(), extra: Default::default() };
    if let Err(e) = store.update(|s| s.last_gate = Some(summary)) {
        tracing::error!(error = %e, "could not record the gate result");
    }
}

/// What the confirmation step decided.
enum Approval {
    Approved,
    /// The run ended (declined, cancelled, or a token was issued): return this.
    Stop(Box<RunOutcome>),
}

/// Asks for (or checks) the human's yes for this plan.
async fn confirm_step<'a, C: Confirmer>(
    mut ctl: RunCtl<'a>,
    plan: &Plan,
    answer: &Answer,
    confirmer: &C,
    tool: &str,
) -> Result<(RunCtl<'a>, Approval)> {
    ctl.begin("confirm", "waiting for a human to approve the plan");
    if let Some(t) = answer.input_token.as_deref() {
        // The second round of a multi-round-trip request: the sealed token proves the human
        // was shown this very plan; the confirmer carries their answer.
        if let Err(e) = ctl.ctx.tokens.redeem_for(t, plan, TokenPurpose::InputRequest) {
            ctl.fail_with(RunStatus::Declined, &e);
            return Err(e);
        }
    }
    let by = if let Some(t) = answer.confirmation.as_deref() {
        if let Err(e) = ctl.ctx.tokens.redeem(t, plan) {
            ctl.fail_with(RunStatus::Declined, &e);
            return Err(e);
        }
        "confirmation token".to_string()
    } else if ctl.ctx.auto_approve && answer.input_token.is_none() && (!plan.skip_security || ctl.ctx.auto_approve_high_risk) {
        "auto-approve (operator flag)".to_string()
    } else {
        ctl.apply(Event::ConfirmationRequested)?;
        match confirmer.confirm(plan).await {
            ConfirmOutcome::Approved { by } => by,
            ConfirmOutcome::Declined => {
                ctl.apply(Event::Declined)?;
                ctl.end(StepStatus::Failed, "declined by the human; nothing shipped");
                ctl.finish(RunStatus::Declined);
                let out = ctl.snapshot("nothing shipped; call again when ready");
                return Ok((ctl, Approval::Stop(Box::new(out))));
            }
            ConfirmOutcome::Cancelled => {
                ctl.end(StepStatus::Failed, "the confirmation was cancelled; nothing shipped");
                ctl.finish(RunStatus::Cancelled);
                let out = ctl.snapshot("nothing shipped; call again when ready");
                return Ok((ctl, Approval::Stop(Box::new(out))));
            }
            ConfirmOutcome::Deferred => {
                let issued = ctl.ctx.tokens.issue_for(plan, TokenPurpose::InputRequest)?;
                ctl.end(StepStatus::Skipped, "the client asks the human in a second round");
                ctl.finish(RunStatus::ConfirmationRequired);
                let mut out = ctl.snapshot("answer the confirmation request");
                out.plan = Some(plan.clone());
                out.confirmation_token = Some(issued.token);
                out.confirmation_expires_at = Some(issued.expires_at);
                return Ok((ctl, Approval::Stop(Box::new(out))));
            }
            ConfirmOutcome::Unavailable => {
                let issued = ctl.ctx.tokens.issue(plan)?;
                ctl.end(StepStatus::Skipped, "this client cannot ask the human: a one-time token bound to the plan was issued");
                ctl.finish(RunStatus::ConfirmationRequired);
                let mut out = ctl.snapshot(format!("show the plan to the human; if they approve, call {tool} again with the same arguments and confirmation: \"{}\" (expires {})", issued.token, issued.expires_at));
                out.plan = Some(plan.clone());
                out.confirmation_token = Some(issued.token);
                out.confirmation_expires_at = Some(issued.expires_at);
                return Ok((ctl, Approval::Stop(Box::new(out))));
            }
        }
    };
    ctl.apply(Event::Confirmed)?;
    ctl.run.confirmed_by = Some(by.clone());
    ctl.end(StepStatus::Passed, format!("approved by {by}"));
    Ok((ctl, Approval::Approved))
}

impl RunCtl<'_> {
    /// The outcome as the run stands, keeping the controller.
    fn snapshot(&self, next: impl Into<String>) -> RunOutcome {
        RunOutcome { run: self.run.clone(), plan: None, confirmation_token: None, confirmation_expires_at: None, next: next.into() }
    }
}

// ---------------------------------------------------------------------------------------------
// Staging

/// How the caller answers a confirmation, if it already has an answer.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    /// A token from a `confirmation_required` answer (the agent passes it back).
    pub confirmation: Option<String>,
    /// A token from a multi-round-trip request state (the client asked the human).
    pub input_token: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct StagingRequest {
    pub dry_run: bool,
    pub skip_tests: bool,
    pub skip_security: bool,
    pub answer: Answer,
}

/// `/oc-deploy staging`: gate → pre-flight → deploy_order → smoke tests.
pub async fn deploy_staging<C: Confirmer>(ctx: &Ctx, req: StagingRequest, confirmer: &C) -> Result<RunOutcome> {
    let cfg = ctx.config()?;
    let env = Environment::Staging;
    let base_url = cfg.base_url(env)?;
    let provider = provider::for_config(&cfg, &ctx.root, &ctx.runner, ctx.supervisor_exe.clone())?;
    let commit = git::head_commit(&ctx.runner, &ctx.root, &ctx.cancel).await?;
    let total = 3 + cfg.deploy_order.len() as u32;
    let mut ctl = RunCtl::new(ctx, &cfg, RunKind::Staging, env, false, total);
    ctl.run.commit = Some(commit.to_string());
    ctl.run.version = Some(commit.short());
    ctl.run.dry_run = req.dry_run;
    let _lock = ctx.store.lock_env(env, &ctl.run.run_id)?;
    ctl.log("started");
    if let Err(e) = check_tree(&mut ctl, &provider, &commit, req.dry_run).await {
        ctl.fail_with(RunStatus::Blocked, &e);
        return Ok(ctl.outcome("ship a clean checkout of the commit"));
    }

    let gate = gate_step(&mut ctl, &cfg, req.skip_security).await?;
    if gate.decision == Decision::Block {
        return Ok(blocked_by_gate(ctl, &gate));
    }
    if ctl.machine.needs_confirmation() && !req.dry_run {
        let plan = plan_for(&ctl, &cfg, &gate, None, None, "n/a (this is staging)".into(), req.skip_security);
        let (c, approval) = confirm_step(ctl, &plan, &req.answer, confirmer, "deploy_staging").await?;
        ctl = c;
        if let Approval::Stop(out) = approval {
            return Ok(*out);
        }
    }
    if !req.dry_run {
        ctl.detach();
    }
    let prev_commit = ctx.store.load().ok().and_then(|cp| cp.skill_state.env(env).and_then(|e| e.commit.clone()));
    let facts = if req.dry_run { None } else { Some(facts_for(&ctl, &cfg, &commit, prev_commit, gate_words(&gate)).await) };
    if let Some(f) = &facts {
        announce(&mut ctl, f, RunEvent::GatePassed).await;
    }
    if let Err(e) = preflight(&mut ctl, &cfg, req.skip_tests).await {
        ctl.fail_with(status_for(&e), &e);
        return Ok(ctl.outcome("fix the pre-flight failure and deploy again"));
    }
    let target = DeployTarget { env, commit: commit.clone(), version: commit.short(), strategy: Strategy::BlueGreen };
    if req.dry_run {
        if let Err(e) = dry_run_steps(&mut ctl, &cfg, &provider, &target).await {
            ctl.fail_with(status_for(&e), &e);
            return Ok(ctl.outcome("the platform's dry run failed: fix it before deploying"));
        }
        ctl.finish(RunStatus::Succeeded);
        return Ok(ctl.outcome("dry run only: nothing was deployed"));
    }
    if let Err(e) = deploy_steps(&mut ctl, &cfg, &provider, &target).await {
        ctl.fail_with(status_for(&e), &e);
        return Ok(ctl.outcome("fix the deploy failure and run deploy_staging again"));
    }
    // Smoke tests, immediately.
    ctl.apply(Event::VerifyStarted)?;
    ctl.begin("smoke", &format!("{} smoke test(s) against {base_url}", cfg.smoke_tests.len()));
    let checks = Checker::new(&cfg.health).run_smoke(&cfg.smoke_tests, &base_url, Some(&target.version), &ctx.cancel).await;
    let passed = checks.iter().all(|c| c.passed);
    ctl.run.smoke = checks.clone();
    record_smoke(&ctx.store, env, &checks, Some(&commit), Some(&target.version), &base_url, Some(&ctl.run.run_id));
    if ctx.cancel.is_cancelled() {
        ctl.fail_with(RunStatus::Cancelled, &CoreError::Cancelled);
        return Ok(ctl.outcome("cancelled"));
    }
    let summary = smoke_summary(&checks);
    if passed {
        ctl.apply(Event::VerifyPassed)?;
        ctl.end(StepStatus::Passed, summary.clone());
        if let Some(f) = &facts {
            announce(&mut ctl, f, RunEvent::StagingVerified { summary }).await;
        }
        ctl.finish(RunStatus::Succeeded);
        Ok(ctl.outcome(format!("staging verified for {}: ready for production (deploy_prod)", target.version)))
    } else {
        ctl.apply(Event::VerifyFailed)?;
        ctl.end(StepStatus::Failed, summary.clone());
        if let Some(f) = &facts {
            announce(&mut ctl, f, RunEvent::SmokeFailed { summary: summary.clone() }).await;
        }
        let e = CoreError::Refused {
            message: format!("smoke tests failed: {summary}"),
            hint: "fix the failures and redeploy to staging; production refuses this commit until staging passes".into(),
        };
        ctl.fail_with(RunStatus::Failed, &e);
        Ok(ctl.outcome("fix the smoke failures before promoting"))
    }
}

/// The facts of this run's deploy for tickets and messages: the commits since the
/// environment's previous commit, and the gate's verdict.
async fn facts_for(ctl: &RunCtl<'_>, cfg: &Config, commit: &CommitSha, prev_commit: Option<String>, gate: String) -> DeployFacts {
    let ctx = ctl.ctx;
    let messages = git::commit_messages(&ctx.runner, &ctx.root, prev_commit.as_deref(), commit, 500, &ctx.cancel).await.unwrap_or_default();
    DeployFacts {
        project: cfg.project_name.clone(),
        env: ctl.run.env.as_str().to_owned(),
        version: commit.short(),
        commit: commit.to_string(),
        prev_commit,
        commit_messages: messages,
        gate,
        url: cfg.base_url(ctl.run.env).ok(),
        run_id: ctl.run.run_id.to_string(),
    }
}

/// The gate's verdict as the deploy ticket says it (`Audit gate: PASS …`).
fn gate_words(gate: &GateResult) -> String {
    let c = gate.counts;
    let counts = format!("{} critical, {} high", c.critical, c.high);
    match gate.decision {
        Decision::Proceed => format!("PASS ({counts})"),
        Decision::Warn => format!("WARN, confirmed ({counts}; {})", gate.reasons.join("; ")),
        Decision::Block => format!("BLOCK ({counts})"),
    }
}

/// Tells the run's listeners (tickets, chat); what they did becomes notes of the run.
async fn announce(ctl: &mut RunCtl<'_>, facts: &DeployFacts, event: RunEvent) {
    let Some(listeners) = ctl.ctx.events.clone() else { return };
    let notes = listeners.announce(&ctl.ctx.root, facts, &event).await;
    ctl.run.notes.extend(notes);
}

/// Ends a run the gate blocked, naming the findings' counts and what to do.
fn blocked_by_gate(mut ctl: RunCtl<'_>, gate: &GateResult) -> RunOutcome {
    let e = CoreError::Refused {
        message: format!("the gate blocked the deploy: {}", gate.reasons.join("; ")),
        hint: "fix the findings listed in gate.findings, re-run the audits, then deploy again".into(),
    };
    ctl.fail_with(RunStatus::Blocked, &e);
    ctl.outcome("fix the blocking findings first")
}

/// Makes sure what ships is the commit the run names. Where the platform deploys a commit,
/// uncommitted changes are only noted; where it uploads the directory, the directory must be
/// that commit, unchanged, or the run is refused (a dry run is only warned).
async fn check_tree(ctl: &mut RunCtl<'_>, provider: &impl Provider, commit: &CommitSha, dry_run: bool) -> Result<()> {
    let (runner, root, cancel) = (&ctl.ctx.runner, &ctl.ctx.root, &ctl.ctx.cancel);
    let dirty = git::is_dirty(runner, root, cancel).await.unwrap_or(false);
    if !provider.capabilities().uploads_working_tree {
        if dirty {
            ctl.run.notes.push("the working tree has uncommitted changes: only committed code is deployed".into());
        }
        return Ok(());
    }
    let platform = provider.platform().as_str();
    let head = git::head_commit(runner, root, cancel).await?;
    let problem = if head.as_str() != commit.as_str() {
        Some((
            format!("{platform} deploys the directory as it is on disk, which is at {}, not {}", head.short(), commit.short()),
            format!("check out {} first (git checkout {}), or deploy HEAD", commit.short(), commit.short()),
        ))
    } else if dirty {
        Some((
            format!(
                "the working tree has uncommitted changes to tracked files and {platform} uploads the directory as it is: the release would not be {}",
                commit.short()
            ),
            "commit or stash the changes (git stash), then deploy again".to_owned(),
        ))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some((message, _)) if dry_run => {
            ctl.run.notes.push(format!("{message} (a real deploy would be refused)"));
            Ok(())
        }
        Some((message, hint)) => Err(CoreError::Refused { message, hint }),
    }
}

async fn preflight(ctl: &mut RunCtl<'_>, cfg: &Config, skip_tests: bool) -> Result<()> {
    let p = &cfg.preflight;
    let steps: Vec<(&str, Option<&Vec<String>>)> =
        vec![("install", p.install.as_ref()), ("typecheck", p.typecheck.as_ref()), ("test", p.test.as_ref())];
    let configured: Vec<_> = steps.iter().filter(|(_, c)| c.is_some()).map(|(n, _)| *n).collect();
    if configured.is_empty() {
        ctl.record("preflight", StepStatus::Skipped, "no pre-flight commands configured (preflight.install / typecheck / test)");
        return Ok(());
    }
    ctl.begin("preflight", &format!("running {}", configured.join(", ")));
    let dir = cfg.app_dir(&ctl.ctx.root);
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(900));
    let mut done = Vec::new();
    for (name, argv) in steps {
        let Some(argv) = argv else { continue };
        if name == "test" && skip_tests {
            ctl.run.notes.push("tests skipped (skip_tests: emergency use only)".into());
            done.push("test skipped".to_string());
            continue;
        }
        let cmd = Cmd::from_argv(argv, &dir, &format!("preflight.{name}"))?.timeout(timeout).pass_env("NODE_ENV").pass_env("CI");
        let out = guarded(ctl, ctl.ctx.runner.run_checked(&cmd, &ctl.ctx.cancel)).await?;
        done.push(format!("{name} ok ({} ms)", out.duration.as_millis()));
    }
    ctl.end(StepStatus::Passed, done.join(", "));
    Ok(())
}

/// A dry run: the platform's own check of the deploy (`wrangler deploy --dry-run`) where it
/// has one, and the plan of every other step. Nothing changes anywhere.
async fn dry_run_steps(ctl: &mut RunCtl<'_>, cfg: &Config, provider: &impl Provider, target: &DeployTarget) -> Result<()> {
    for step in &cfg.deploy_order {
        if *step == crate::config::DeployStep::DeployApi {
            ctl.begin(step.as_str(), &format!("dry run of {} for {}", target.version, target.env));
            let cancel = ctl.ctx.cancel.clone();
            match guarded(ctl, provider.dry_run(target, &cancel)).await {
                Ok(o) => ctl.end(o.status, format!("dry run: {}", o.detail)),
                Err(e) => {
                    ctl.end(StepStatus::Failed, format!("dry run failed: {e}"));
                    return Err(e);
                }
            }
            continue;
        }
        ctl.record(
            step.as_str(),
            StepStatus::Skipped,
            format!("dry run: would run {} for {} in {}", step.as_str(), target.version, target.env),
        );
    }
    Ok(())
}

async fn deploy_steps(ctl: &mut RunCtl<'_>, cfg: &Config, provider: &impl Provider, target: &DeployTarget) -> Result<()> {
    ctl.apply(Event::DeployStarted)?;
    for step in &cfg.deploy_order {
        ctl.begin(step.as_str(), &format!("{} {} to {}", step.as_str(), target.version, target.env));
        let cancel = ctl.ctx.cancel.clone();
        let r = match step {
            crate::config::DeployStep::Migrate => guarded(ctl, provider.migrate(target, &cancel)).await,
            crate::config::DeployStep::DeployApi => guarded(ctl, provider.deploy(target, &cancel)).await,
            crate::config::DeployStep::DeployFrontend => guarded(ctl, provider.deploy_frontend(target, &cancel)).await,
        };
        match r {
            Ok(o) => ctl.end(o.status, o.detail),
            Err(e) => {
                let _ = ctl.apply(Event::DeployFailed);
                return Err(e);
            }
        }
    }
    ctl.apply(Event::DeployFinished)?;
    let (env, version, commit) = (target.env, target.version.clone(), target.commit.to_string());
    let run_id = ctl.run.run_id.clone();
    let url = cfg.base_url(env).ok();
    let _ = ctl.ctx.store.update(|s| {
        let e = s.env_mut(env);
        if e.version.as_deref() != Some(version.as_str()) {
            e.previous_version = e.version.take();
        }
        e.version = Some(version.clone());
        e.commit = Some(commit.clone());
        e.deployed_at = Some(now_rfc3339());
        e.run_id = Some(run_id);
        e.url = url;
        if e.verified_commit.as_deref() != Some(commit.as_str()) {
            e.verified_commit = None;
            e.last_smoke = None;
        }
        s.current_env = Some(env);
        s.last_deploy = Some(now_rfc3339());
        match env {
            Environment::Staging => s.staging_version = Some(version),
            Environment::Production => s.prod_version = Some(version),
        }
    });
    Ok(())
}

fn plan_for(
    ctl: &RunCtl<'_>,
    cfg: &Config,
    gate: &GateResult,
    strategy: Option<Strategy>,
    previous: Option<String>,
    staging_smoke: String,
    skip_security: bool,
) -> Plan {
    let mut reasons = Vec::new();
    if ctl.run.env == Environment::Production {
        reasons.push("production deploys always need a human's yes".into());
    }
    if gate.needs_confirmation {
        reasons.extend(gate.reasons.iter().cloned());
    }
    if ctl.run.direct {
        reasons.push("direct: staging verification is skipped (flagged in the record)".into());
    }
    let _ = cfg;
    Plan {
        env: ctl.run.env,
        commit: ctl.run.commit.clone().unwrap_or_default(),
        version: ctl.run.version.clone().unwrap_or_default(),
        commit_range: previous.as_ref().map(|p| format!("{p}..{}", ctl.run.version.as_deref().unwrap_or(""))),
        strategy,
        gate_decision: gate.decision,
        gate_counts: gate.counts,
        staging_smoke,
        previous_version: previous,
        direct: ctl.run.direct,
        skip_security,
        reasons,
        change: None,
    }
}

fn smoke_summary(checks: &[CheckResult]) -> String {
    let passed = checks.iter().filter(|c| c.passed).count();
    let failed: Vec<String> = checks.iter().filter(|c| !c.passed).map(|c| format!("{}: {}", c.name, c.detail)).collect();
    let mut s = format!("{passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        s.push_str(&format!(" ({})", failed.join("; ")));
    }
    s
}

fn record_smoke(
    store: &Store,
    env: Environment,
    checks: &[CheckResult],
    commit: Option<&CommitSha>,
    version: Option<&str>,
    url: &str,
    run_id: Option<&RunId>,
) {
    let passed = checks.iter().all(|c| c.passed);
    let _ = (version, run_id);
    let res = store.update(|s| {
        if env == Environment::Staging {
            s.smoke_results =
                checks.iter().map(|c| (c.name.clone(), if c.passed { "pass".to_string() } else { "fail".to_string() })).collect();
        }
        let e = s.env_mut(env);
        e.last_smoke = Some(if passed { "pass" } else { "fail" }.into());
        e.url = Some(url.to_owned());
        let commit = commit.map(|c| c.to_string()).or_else(|| e.commit.clone());
        e.verified_commit = if passed { commit } else { None };
    });
    if let Err(e) = res {
        tracing::error!(error = %e, "could not record smoke results");
    }
}

// ---------------------------------------------------------------------------------------------
// Production

#[derive(Debug, Clone)]
pub struct ProdRequest {
    /// A commit-ish to ship (default: HEAD).
    pub version: Option<String>,
    pub strategy: Option<Strategy>,
    pub auto_rollback: bool,
    pub direct: bool,
    pub dry_run: bool,
    pub skip_security: bool,
    pub answer: Answer,
}

impl Default for ProdRequest {
    fn default() -> Self {
        Self {
            version: None,
            strategy: None,
            auto_rollback: true,
            direct: false,
            dry_run: false,
            skip_security: false,
            answer: Answer::default(),
        }
    }
}

/// `/oc-deploy prod`: checklist → human confirmation → record previous → migrate → deploy →
/// health → automatic rollback when unhealthy.
pub async fn deploy_prod<C: Confirmer>(ctx: &Ctx, req: ProdRequest, confirmer: &C) -> Result<RunOutcome> {
    let cfg = ctx.config()?;
    let env = Environment::Production;
    let base_url = cfg.base_url(env)?;
    let provider = provider::for_config(&cfg, &ctx.root, &ctx.runner, ctx.supervisor_exe.clone())?;
    let commit = match &req.version {
        Some(v) => git::resolve_commit(&ctx.runner, &ctx.root, v, &ctx.cancel).await?,
        None => git::head_commit(&ctx.runner, &ctx.root, &ctx.cancel).await?,
    };
    let strategy = req.strategy.or(cfg.default_strategy).unwrap_or(if cfg.platform == Platform::Local {
        Strategy::BlueGreen
    } else {
        Strategy::Rolling
    });
    let total = 5 + cfg.deploy_order.len() as u32;
    let mut ctl = RunCtl::new(ctx, &cfg, RunKind::Production, env, req.direct, total);
    ctl.run.commit = Some(commit.to_string());
    ctl.run.version = Some(commit.short());
    ctl.run.strategy = Some(strategy);
    ctl.run.dry_run = req.dry_run;
    if req.direct {
        ctl.run.notes.push("DIRECT deploy: staging verification skipped by request".into());
    }
    ctl.log("started");
    if let Err(e) = check_tree(&mut ctl, &provider, &commit, req.dry_run).await {
        ctl.fail_with(RunStatus::Blocked, &e);
        return Ok(ctl.outcome("ship a clean checkout of the commit"));
    }

    // Pre-promotion checklist: the gate, then staging verified for this commit.
    let gate = gate_step(&mut ctl, &cfg, req.skip_security).await?;
    if gate.decision == Decision::Block {
        return Ok(blocked_by_gate(ctl, &gate));
    }
    let cp = ctx.store.load()?;
    let staging = cp.skill_state.env(Environment::Staging).cloned().unwrap_or_default();
    let verified = staging.verified_commit.as_deref() == Some(commit.as_str()) && staging.last_smoke.as_deref() == Some("pass");
    ctl.apply(Event::StagingEvidence { verified_for_commit: verified })?;
    let staging_smoke = match (&staging.last_smoke, staging.commit.as_deref() == Some(commit.as_str())) {
        (Some(r), true) => r.clone(),
        (_, _) => "none for this commit".into(),
    };
    if !verified && !req.direct {
        ctl.record(
            "staging-verified",
            StepStatus::Failed,
            format!(
                "no passing staging smoke run for {} (staging has {})",
                commit.short(),
                staging.version.as_deref().unwrap_or("nothing")
            ),
        );
        let e = CoreError::Refused {
            message: format!("staging is not verified for {}", commit.short()),
            hint: "run deploy_staging for this commit first and let its smoke tests pass (or pass direct: true, which is flagged in the record)".into(),
        };
        ctl.fail_with(RunStatus::Blocked, &e);
        return Ok(ctl.outcome("deploy to staging first"));
    }
    ctl.record(
        "staging-verified",
        if verified { StepStatus::Passed } else { StepStatus::Warned },
        if verified { format!("staging smoke passed for {}", commit.short()) } else { "skipped: direct deploy".into() },
    );
    let previous = provider.current_version(env).await.ok().flatten().or_else(|| cp.skill_state.prod_version.clone());
    let plan = plan_for(&ctl, &cfg, &gate, Some(strategy), previous.clone(), staging_smoke, req.skip_security);
    if req.dry_run {
        ctl.record("confirm", StepStatus::Skipped, "dry run: no confirmation needed");
        let target = DeployTarget { env, commit: commit.clone(), version: commit.short(), strategy };
        if let Err(e) = dry_run_steps(&mut ctl, &cfg, &provider, &target).await {
            ctl.fail_with(status_for(&e), &e);
            return Ok(ctl.outcome("the platform's dry run failed: fix it before deploying"));
        }
        ctl.finish(RunStatus::Succeeded);
        let mut out = ctl.outcome("dry run only: nothing was deployed");
        out.plan = Some(plan);
        return Ok(out);
    }
    let (c, approval) = confirm_step(ctl, &plan, &req.answer, confirmer, "deploy_prod").await?;
    ctl = c;
    if let Approval::Stop(out) = approval {
        return Ok(*out);
    }
    // One deploy per environment: taken after the human said yes, held to the end.
    let _lock = match ctx.store.lock_env(env, &ctl.run.run_id) {
        Ok(l) => l,
        Err(e) => {
            ctl.fail_with(RunStatus::Failed, &e);
            return Err(e);
        }
    };

    ctl.detach();
    // Record the previous version first: rollback needs nothing else.
    ctl.begin("record-previous", "recording the live version for rollback");
    ctl.run.previous_version = previous.clone();
    let prev2 = previous.clone();
    ctx.store.update(|s| {
        s.prev_prod_version = prev2.clone();
        s.rollback_available = prev2.is_some();
        s.env_mut(env).previous_version = prev2;
    })?;
    ctl.end(StepStatus::Passed, format!("previous version: {}", previous.as_deref().unwrap_or("none (first production deploy)")));

    let prev_commit = cp.skill_state.env(env).and_then(|e| e.commit.clone());
    let facts = facts_for(&ctl, &cfg, &commit, prev_commit, gate_words(&gate)).await;
    announce(&mut ctl, &facts, RunEvent::GatePassed).await;
    let target = DeployTarget { env, commit: commit.clone(), version: commit.short(), strategy };
    if let Err(e) = deploy_steps(&mut ctl, &cfg, &provider, &target).await {
        let status = status_for(&e);
        ctl.fail_with(status, &e);
        // A failed deploy may have left the new release live: put the previous one back.
        if req.auto_rollback
            && cfg.auto_rollback.enabled
            && status == RunStatus::Failed
            && let (Some(prev), Ok(Some(live))) = (previous.as_deref(), provider.current_version(env).await)
            && live != prev
        {
            let _ = provider.rollback(env, prev, &CancellationToken::new()).await;
            ctl.run.notes.push(format!("the deploy failed after {live} went live; traffic was switched back to {prev}"));
            ctl.log("finished");
        }
        return Ok(ctl.outcome("fix the deploy failure; production still runs the previous version"));
    }

    // Health, with the skill's wait-and-recheck before rolling back.
    let checker = Checker::new(&cfg.health);
    let fallback = cfg.local.as_ref().map(|l| l.health_path.clone()).unwrap_or_else(|| "/".into());
    let baseline = cp.skill_state.health_baselines.get(env.as_str()).cloned();
    ctl.apply(Event::VerifyStarted)?;
    ctl.begin("health", &format!("checking {base_url}"));
    let mut report = checker.run_health(&cfg.smoke_tests, &base_url, &fallback, baseline.as_ref(), &ctx.cancel).await;
    ctl.run.health = report.checks.clone();
    if report.verdict != Verdict::Unhealthy {
        return Ok(shipped(ctl, &cfg, report, &target, previous, &base_url, &facts).await);
    }
    ctl.apply(Event::VerifyFailed)?;
    ctl.end(StepStatus::Failed, report.summary.clone());
    let auto = req.auto_rollback && cfg.auto_rollback.enabled;
    if !auto {
        let e = CoreError::Refused {
            message: format!("production is unhealthy after the deploy: {}", report.summary),
            hint: "roll back with deploy_rollback (auto_rollback was off)".into(),
        };
        ctl.fail_with(RunStatus::Failed, &e);
        return Ok(ctl.outcome("production is unhealthy: roll back now with deploy_rollback"));
    }
    let wait = cfg.auto_rollback.wait_seconds;
    ctl.begin("wait", &format!("unhealthy; waiting {wait} s for propagation before re-checking"));
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
        _ = ctx.cancel.cancelled() => {}
    }
    ctl.end(StepStatus::Passed, format!("waited {wait} s"));
    ctl.apply(Event::VerifyStarted)?;
    ctl.begin("health-recheck", "re-checking health");
    report = checker.run_health(&cfg.smoke_tests, &base_url, &fallback, baseline.as_ref(), &CancellationToken::new()).await;
    ctl.run.health = report.checks.clone();
    if report.verdict != Verdict::Unhealthy {
        ctl.run.notes.push("health recovered after the propagation wait".into());
        return Ok(shipped(ctl, &cfg, report, &target, previous, &base_url, &facts).await);
    }
    ctl.apply(Event::VerifyFailed)?;
    ctl.end(StepStatus::Failed, report.summary.clone());
    let Some(prev) = previous.clone() else {
        let e = CoreError::Refused {
            message: format!("production is unhealthy and there is no previous version to roll back to: {}", report.summary),
            hint: "fix forward through staging".into(),
        };
        ctl.fail_with(RunStatus::Failed, &e);
        return Ok(ctl.outcome("no previous version: fix forward"));
    };
    // Automatic rollback: not cancellable, production must not be left half-way.
    ctl.apply(Event::RollbackStarted)?;
    ctl.begin("rollback", &format!("rolling back to {prev}"));
    let started = Instant::now();
    match provider.rollback(env, &prev, &CancellationToken::new()).await {
        Ok(o) => ctl.end(o.status, o.detail),
        Err(e) => {
            let _ = ctl.apply(Event::RollbackFailed);
            ctl.fail_with(RunStatus::Failed, &e);
            return Ok(ctl.outcome("the automatic rollback failed: roll back by hand with deploy_rollback"));
        }
    }
    ctl.apply(Event::RollbackFinished)?;
    let info = RollbackInfo {
        from_version: Some(target.version.clone()),
        to_version: prev.clone(),
        reason: format!("health check failed twice: {}", report.summary),
        automatic: true,
        at: now_rfc3339(),
        duration_ms: started.elapsed().as_millis() as u64,
    };
    ctl.run.rollback = Some(info);
    ctl.begin("health-after-rollback", &format!("checking {prev}"));
    let after = checker.run_health(&cfg.smoke_tests, &base_url, &fallback, baseline.as_ref(), &CancellationToken::new()).await;
    ctl.end(if after.verdict == Verdict::Unhealthy { StepStatus::Failed } else { StepStatus::Passed }, after.summary.clone());
    record_health(&ctx.store, env, &after);
    let failed_version = target.version.clone();
    ctx.store.update(|s| {
        s.prod_version = Some(prev.clone());
        s.prev_prod_version = Some(failed_version.clone());
        let e = s.env_mut(env);
        e.version = Some(prev.clone());
        e.previous_version = Some(failed_version);
        e.commit = None;
    })?;
    let reason = format!("health check failed twice: {}", report.summary);
    announce(&mut ctl, &facts, RunEvent::RolledBack { reason, to_version: prev.clone() }).await;
    ctl.finish(RunStatus::RolledBack);
    let id = ctl.run.run_id.clone();
    Ok(ctl.outcome(format!("production is back on {prev}; see deploy_report kind incident for run {id}")))
}

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Healthy => "healthy",
        Verdict::Degraded => "degraded",
        Verdict::Unhealthy => "unhealthy",
    }
}

/// A healthy production deploy: record it, tell the tracker and the team, hand off to monitoring.
async fn shipped(
    mut ctl: RunCtl<'_>,
    cfg: &Config,
    report: HealthReport,
    target: &DeployTarget,
    previous: Option<String>,
    base_url: &str,
    facts: &DeployFacts,
) -> RunOutcome {
    let _ = ctl.apply(Event::VerifyPassed);
    let status = if report.verdict == Verdict::Degraded { StepStatus::Warned } else { StepStatus::Passed };
    ctl.end(status, report.summary.clone());
    record_health(&ctl.ctx.store, target.env, &report);
    let handoff = MonitoringHandoff {
        extra: Default::default(),
        version: target.version.clone(),
        commit_sha: target.commit.to_string(),
        prod_url: base_url.to_owned(),
        shipped_at: now_rfc3339(),
        run_id: ctl.run.run_id.clone(),
    };
    let _ = ctl.ctx.store.update(|s| {
        s.prod_version = Some(target.version.clone());
        s.prev_prod_version = previous.clone();
        s.rollback_available = previous.is_some();
        s.monitoring = Some(handoff);
    });
    let _ = cfg;
    announce(&mut ctl, facts, RunEvent::Shipped { previous_version: previous.clone() }).await;
    ctl.finish(RunStatus::Succeeded);
    ctl.outcome(format!("{} is live in production; oc-monitoring-ops can read the hand-off from the checkpoint", target.version))
}

fn record_health(store: &Store, env: Environment, report: &HealthReport) {
    let summary = HealthSummary {
        extra: Default::default(),
        verdict: verdict_str(report.verdict).into(),
        at: report.checked_at.clone(),
        max_latency_ms: report.checks.iter().map(|c| c.latency_ms).max().unwrap_or(0),
        failed: report.checks.iter().filter(|c| !c.passed).count() as u32,
    };
    let baseline = (report.verdict == Verdict::Healthy).then(|| report.baseline());
    let _ = store.update(|s| {
        s.last_health.insert(env.as_str().to_owned(), summary);
        if let Some(b) = baseline {
            s.health_baselines.insert(env.as_str().to_owned(), b);
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Rollback

#[derive(Debug, Clone)]
pub struct RollbackRequest {
    pub env: Environment,
    pub to_version: Option<String>,
    pub reason: String,
}

/// `/oc-deploy rollback`: back to the previous (or a named) version, then a health re-check.
pub async fn rollback(ctx: &Ctx, req: RollbackRequest) -> Result<RunOutcome> {
    if req.reason.trim().is_empty() {
        return Err(CoreError::invalid(
            "reason",
            "a rollback needs a reason",
            "say why, e.g. \"error rate up after deploy\"; it goes in the incident report",
        ));
    }
    let cfg = ctx.config()?;
    let env = req.env;
    let base_url = cfg.base_url(env)?;
    let provider = provider::for_config(&cfg, &ctx.root, &ctx.runner, ctx.supervisor_exe.clone())?;
    let cp = ctx.store.load()?;
    // The platform's word first; the record when the platform cannot say (supervisor down).
    let current = provider.current_version(env).await?.or_else(|| cp.skill_state.env(env).and_then(|e| e.version.clone()));
    let target = match &req.to_version {
        Some(v) => v.trim().to_owned(),
        None => {
            let recorded = cp.skill_state.env(env).and_then(|e| e.previous_version.clone());
            let recorded = if env == Environment::Production { cp.skill_state.prev_prod_version.clone().or(recorded) } else { recorded };
            recorded.ok_or_else(|| CoreError::NotFound {
                what: "rollback target".into(),
                message: format!("no previous version of {env} is recorded"),
                hint: "name one with to_version (deploy_status lists versions)".into(),
            })?
        }
    };
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(CoreError::invalid(
            "to_version",
            format!("`{target}` is not a version"),
            "use a version from deploy_status (a short commit id)",
        ));
    }
    let mut ctl = RunCtl::new(ctx, &cfg, RunKind::Rollback, env, false, 2);
    ctl.run.version = Some(target.clone());
    ctl.run.previous_version = current.clone();
    let _lock = ctx.store.lock_env(env, &ctl.run.run_id)?;
    ctl.log("started");
    ctl.detach();
    ctl.apply(Event::RollbackStarted)?;
    ctl.begin("rollback", &format!("{} → {target}", current.as_deref().unwrap_or("unknown")));
    let started = Instant::now();
    match guarded(&mut ctl, provider.rollback(env, &target, &ctx.cancel)).await {
        Ok(o) => ctl.end(o.status, o.detail),
        Err(e) => {
            let _ = ctl.apply(Event::RollbackFailed);
            ctl.fail_with(status_for(&e), &e);
            return Ok(ctl.outcome("the rollback failed; production is unchanged"));
        }
    }
    ctl.apply(Event::RollbackFinished)?;
    ctl.run.rollback = Some(RollbackInfo {
        from_version: current.clone(),
        to_version: target.clone(),
        reason: req.reason.clone(),
        automatic: false,
        at: now_rfc3339(),
        duration_ms: started.elapsed().as_millis() as u64,
    });
    ctl.begin("health", &format!("re-checking {base_url}"));
    let fallback = cfg.local.as_ref().map(|l| l.health_path.clone()).unwrap_or_else(|| "/".into());
    let report = Checker::new(&cfg.health).run_health(&cfg.smoke_tests, &base_url, &fallback, None, &CancellationToken::new()).await;
    ctl.run.health = report.checks.clone();
    ctl.end(if report.verdict == Verdict::Unhealthy { StepStatus::Failed } else { StepStatus::Passed }, report.summary.clone());
    record_health(&ctx.store, env, &report);
    let from = current.clone();
    let prod_url = base_url.clone();
    let run_id = ctl.run.run_id.clone();
    let target_commit =
        git::resolve_commit(&ctx.runner, &ctx.root, &target, &CancellationToken::new()).await.map(|c| c.to_string()).unwrap_or_default();
    ctx.store.update(|s| {
        let e = s.env_mut(env);
        e.version = Some(target.clone());
        e.previous_version = from.clone();
        e.commit = None;
        if env == Environment::Staging {
            e.verified_commit = None;
            s.staging_version = Some(target.clone());
        } else {
            s.prod_version = Some(target.clone());
            s.prev_prod_version = from.clone();
            s.rollback_available = from.is_some();
            // oc-monitoring-ops must watch what runs now, not what was rolled back.
            s.monitoring = Some(MonitoringHandoff {
                version: target.clone(),
                commit_sha: target_commit.clone(),
                prod_url: prod_url.clone(),
                shipped_at: now_rfc3339(),
                run_id: run_id.clone(),
                extra: Default::default(),
            });
        }
    })?;
    if report.verdict == Verdict::Unhealthy {
        ctl.run.notes.push(format!("{target} is live but unhealthy too: {}", report.summary));
    }
    // The deploy ticket of the commit that was live hears about it.
    if let Some(live) = cp.skill_state.env(env).and_then(|e| e.commit.clone()).and_then(|c| CommitSha::parse(&c).ok()) {
        let mut facts = facts_for(&ctl, &cfg, &live, None, "n/a (rollback)".into()).await;
        facts.commit_messages.truncate(1);
        announce(&mut ctl, &facts, RunEvent::RolledBack { reason: req.reason.clone(), to_version: target.clone() }).await;
    }
    ctl.finish(RunStatus::RolledBack);
    Ok(ctl.outcome(format!("{env} runs {target}; the incident report is deploy_report with kind incident")))
}

// ---------------------------------------------------------------------------------------------
// Smoke and health on demand

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SmokeOutcome {
    pub env: Environment,
    pub base_url: String,
    pub version: Option<String>,
    pub passed: bool,
    pub summary: String,
    pub checks: Vec<CheckResult>,
}

/// `/oc-deploy smoke`: the configured smoke tests against an environment.
pub async fn smoke(ctx: &Ctx, env: Environment) -> Result<SmokeOutcome> {
    let cfg = ctx.config()?;
    let base_url = cfg.base_url(env)?;
    let cp = ctx.store.load()?;
    let state = cp.skill_state.env(env).cloned().unwrap_or_default();
    ctx.progress.step(1, 2, &format!("smoke: {} test(s) against {base_url}", cfg.smoke_tests.len()));
    let checks = Checker::new(&cfg.health).run_smoke(&cfg.smoke_tests, &base_url, state.version.as_deref(), &ctx.cancel).await;
    if ctx.cancel.is_cancelled() {
        return Err(CoreError::Cancelled);
    }
    let commit = state.commit.as_deref().and_then(|c| CommitSha::parse(c).ok());
    record_smoke(&ctx.store, env, &checks, commit.as_ref(), state.version.as_deref(), &base_url, None);
    let passed = checks.iter().all(|c| c.passed);
    ctx.progress.step(2, 2, &format!("smoke: {}", if passed { "passed" } else { "failed" }));
    Ok(SmokeOutcome { env, base_url, version: state.version, passed, summary: smoke_summary(&checks), checks })
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HealthOutcome {
    pub env: Environment,
    pub base_url: String,
    /// The version the platform says is live.
    pub version: Option<String>,
    #[serde(flatten)]
    pub report: HealthReport,
}

/// `/oc-deploy health`: status and latency of every smoke URL, against the last baseline.
pub async fn health(ctx: &Ctx, env: Environment) -> Result<HealthOutcome> {
    let cfg = ctx.config()?;
    let base_url = cfg.base_url(env)?;
    let cp = ctx.store.load()?;
    let version = match provider::for_config(&cfg, &ctx.root, &ctx.runner, ctx.supervisor_exe.clone()) {
        Ok(p) => p.current_version(env).await.ok().flatten(),
        Err(_) => None,
    }
    .or_else(|| cp.skill_state.env(env).and_then(|e| e.version.clone()));
    ctx.progress.step(1, 2, &format!("health: checking {base_url}"));
    let fallback = cfg.local.as_ref().map(|l| l.health_path.clone()).unwrap_or_else(|| "/".into());
    let report = Checker::new(&cfg.health)
        .run_health(&cfg.smoke_tests, &base_url, &fallback, cp.skill_state.health_baselines.get(env.as_str()), &ctx.cancel)
        .await;
    if ctx.cancel.is_cancelled() {
        return Err(CoreError::Cancelled);
    }
    record_health(&ctx.store, env, &report);
    ctx.progress.step(2, 2, &format!("health: {}", verdict_str(report.verdict)));
    Ok(HealthOutcome { env, base_url, version, report })
}

// ---------------------------------------------------------------------------------------------
// Audit and init

/// `/oc-deploy audit`: the gate on its own.
pub async fn audit(ctx: &Ctx) -> Result<GateResult> {
    let cfg = match ctx.config() {
        Ok(c) => Some(c),
        Err(CoreError::ConfigMissing { .. }) => None,
        Err(e) => return Err(e),
    };
    let audit_cfg = cfg.map(|c| c.audit).unwrap_or_default();
    ctx.progress.step(1, 1, "audit: reading audit checkpoints and running the project's audit");
    let gate = audit::evaluate_gate(&ctx.root, &audit_cfg, &ctx.runner, chrono::Utc::now(), &ctx.cancel).await?;
    record_gate(&ctx.store, &gate);
    Ok(gate)
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct InitOutcome {
    pub project_dir: String,
    pub detection: Detection,
    /// The config in force (existing) or proposed.
    pub config: Config,
    /// True when `.oc-deploy-ops.json` already existed (it is never overwritten).
    pub existing: bool,
    /// Where the config was written, when `write` was true.
    pub written: Option<String>,
    pub checklist: Vec<ChecklistItem>,
    /// What the platform supports (strategies, rollback, secrets, migrations).
    pub capabilities: Option<Capabilities>,
    pub next: String,
}

/// `/oc-deploy init`: detect, propose, check; writes only when asked.
pub async fn init(ctx: &Ctx, platform: Option<Platform>, pack: Option<&str>, write: bool) -> Result<InitOutcome> {
    // Pack-aware dispatch (the skill's v1.4 rules): a pack miss is `unknown pack: <id>`.
    let detection = detect::detect_for_init(&ctx.root, pack, platform)?;
    let (config, existing) = match Config::load(&ctx.root) {
        Ok(c) => (c, true),
        Err(CoreError::ConfigMissing { .. }) => (detect::propose_config(&ctx.root, &detection, platform), false),
        Err(e) => return Err(e),
    };
    ctx.progress.step(1, 2, "init: running the setup checklist");
    let mut checklist = detect::checklist(&ctx.root, &config, &ctx.runner, &ctx.cancel).await;
    let provider = provider::for_config(&config, &ctx.root, &ctx.runner, ctx.supervisor_exe.clone());
    let capabilities = match &provider {
        Ok(p) => {
            checklist.extend(p.checklist(&ctx.cancel).await);
            Some(p.capabilities())
        }
        Err(e) => {
            checklist.push(ChecklistItem {
                name: "platform".into(),
                status: detect::CheckStatus::Fail,
                detail: e.to_string(),
                hint: Some(e.hint()),
            });
            None
        }
    };
    let written = if write && !existing { Some(config.write(&ctx.root)?.display().to_string()) } else { None };
    ctx.progress.step(2, 2, "init: done");
    let next = match (existing, write) {
        (true, _) => "the config exists and was left unchanged; run deploy_audit, then deploy_staging".to_string(),
        (false, true) => "config written; review it, commit it, then run deploy_staging".to_string(),
        (false, false) => "review the proposed config, then call deploy_init with write: true".to_string(),
    };
    Ok(InitOutcome { project_dir: ctx.root.display().to_string(), detection, config, existing, written, checklist, capabilities, next })
}

// ---------------------------------------------------------------------------------------------
// Status, checkpoint, report

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunSummary {
    pub run_id: RunId,
    pub kind: RunKind,
    pub env: Environment,
    pub version: Option<String>,
    pub status: RunStatus,
    pub state: State,
    /// The step running now (or the last one).
    pub step: Option<String>,
    pub last_message: Option<String>,
    pub started_at: String,
    pub elapsed_ms: u64,
}

impl RunSummary {
    fn of(r: &RunRecord) -> Self {
        let elapsed = if r.status.is_final() {
            r.duration_ms
        } else {
            chrono::DateTime::parse_from_rfc3339(&r.started_at)
                .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_milliseconds().max(0) as u64)
                .unwrap_or(r.duration_ms)
        };
        Self {
            run_id: r.run_id.clone(),
            kind: r.kind,
            env: r.env,
            version: r.version.clone(),
            status: r.status,
            state: r.state,
            step: r.steps.last().map(|s| s.name.clone()),
            last_message: r.steps.last().map(|s| s.detail.clone()),
            started_at: r.started_at.clone(),
            elapsed_ms: elapsed,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EnvStatus {
    pub env: Environment,
    pub configured: bool,
    pub url: Option<String>,
    /// What the platform serves now (local: the proxy's live release).
    pub live_version: Option<String>,
    pub recorded_version: Option<String>,
    pub previous_version: Option<String>,
    pub deployed_at: Option<String>,
    pub verified_commit: Option<String>,
    pub last_smoke: Option<String>,
    pub last_health: Option<HealthSummary>,
    /// The run holding the environment's lock, if any.
    pub locked_by: Option<LockHolder>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StatusOutcome {
    pub project: Option<String>,
    pub platform: Option<String>,
    pub config_error: Option<String>,
    pub environments: Vec<EnvStatus>,
    pub in_flight: Vec<RunSummary>,
    pub recent: Vec<RunSummary>,
    /// The run asked for with `run_id`, in full.
    pub run: Option<RunRecord>,
    /// Tracker writes waiting in the checkpoint (`deploy_retry_pm` retries the retriable ones).
    pub pm_deferred: usize,
}

/// `/oc-deploy status`: per environment, in-flight runs, recent runs, or one run.
pub async fn status(ctx: &Ctx, env: Option<Environment>, run_id: Option<&RunId>) -> Result<StatusOutcome> {
    let (cfg, config_error) = match ctx.config() {
        Ok(c) => (Some(c), None),
        Err(e) => (None, Some(format!("{e} (hint: {})", e.hint()))),
    };
    let cp: Checkpoint = ctx.store.load()?;
    let provider = cfg.as_ref().and_then(|c| provider::for_config(c, &ctx.root, &ctx.runner, ctx.supervisor_exe.clone()).ok());
    let mut environments = Vec::new();
    for e in Environment::ALL.into_iter().filter(|e| env.is_none_or(|x| x == *e)) {
        let st = cp.skill_state.env(e).cloned().unwrap_or_default();
        let live = match &provider {
            Some(p) => p.current_version(e).await.ok().flatten(),
            None => None,
        };
        environments.push(EnvStatus {
            env: e,
            configured: cfg.as_ref().is_some_and(|c| c.environments.get(e).is_some()),
            url: cfg.as_ref().and_then(|c| c.base_url(e).ok()).or(st.url.clone()),
            live_version: live,
            recorded_version: st.version.clone(),
            previous_version: st.previous_version.clone(),
            deployed_at: st.deployed_at.clone(),
            verified_commit: st.verified_commit.clone(),
            last_smoke: st.last_smoke.clone(),
            last_health: cp.skill_state.last_health.get(e.as_str()).cloned(),
            locked_by: ctx.store.lock_holder(e),
        });
    }
    // Only what is shown: the last ten runs and any still running, not the whole log.
    let runs = ctx.store.recent_runs(10, |r| env.is_none_or(|x| x == r.env), |r| r.status == RunStatus::Running)?;
    let holders: Vec<RunId> = Environment::ALL.iter().filter_map(|e| ctx.store.lock_holder(*e)).map(|h| h.run_id).collect();
    let mut summaries: Vec<RunSummary> = runs
        .iter()
        .map(|r| {
            let mut s = RunSummary::of(r);
            // A running run whose process is gone (and holds no lock) was interrupted.
            if s.status == RunStatus::Running && !holders.contains(&r.run_id) && !crate::process::pid_alive(r.pid) {
                s.status = RunStatus::Interrupted;
                s.state = State::Interrupted;
            }
            s
        })
        .collect();
    let in_flight: Vec<RunSummary> = summaries.iter().filter(|s| s.status == RunStatus::Running).cloned().collect();
    summaries.reverse();
    summaries.truncate(10);
    let run = match run_id {
        Some(id) => Some(ctx.store.run(id)?.ok_or_else(|| CoreError::NotFound {
            what: "run".into(),
            message: format!("no run {id}"),
            hint: "deploy_status without run_id lists recent runs".into(),
        })?),
        None => None,
    };
    Ok(StatusOutcome {
        pm_deferred: cp.skill_state.pm_deferred_actions.len(),
        project: cfg.as_ref().map(|c| c.project_name.clone()),
        platform: cfg.map(|c| c.platform.as_str().to_owned()),
        config_error,
        environments,
        in_flight,
        recent: summaries,
        run,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointOutcome {
    pub skill: String,
    pub path: String,
    pub exists: bool,
    pub updated_at: Option<String>,
    pub age_seconds: Option<i64>,
    /// Fresh per the skill's rules (oc-code-auditor 1 h, oc-security-auditor 24 h); null when
    /// the skill has no freshness rule.
    pub fresh: Option<bool>,
    pub summary: String,
    /// The checkpoint itself (secrets redacted), when it is valid JSON.
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub content: Option<serde_json::Value>,
}

/// `/checkpoint`: any skill's checkpoint and how fresh it is.
pub fn checkpoint(ctx: &Ctx, skill: Option<&str>) -> Result<CheckpointOutcome> {
    let skill = skill.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(crate::store::SKILL);
    if !skill.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') || skill.starts_with('-') || skill.len() > 64 {
        return Err(CoreError::invalid(
            "skill",
            format!("`{skill}` is not a skill name"),
            "use a name like oc-code-auditor (lowercase letters, digits and dashes)",
        ));
    }
    let path = ctx.store.dir().join(format!("{skill}.checkpoint.json"));
    let rel = format!("{}/{skill}.checkpoint.json", crate::store::CHECKPOINT_DIR);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(CheckpointOutcome {
                skill: skill.into(),
                path: rel,
                exists: false,
                updated_at: None,
                age_seconds: None,
                fresh: None,
                summary: format!("{skill} has no checkpoint yet"),
                content: None,
            });
        }
        Err(e) => return Err(CoreError::io(format!("reading {}", path.display()), e)),
    };
    let redacted = ctx.runner.redactor().redact(&text);
    let content: Option<serde_json::Value> = serde_json::from_str(&redacted).ok();
    let updated_at = content
        .as_ref()
        .and_then(|v| v.get("updated_at").or_else(|| v.pointer("/skill_state/updated_at")))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let age = updated_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds());
    let limit = match skill {
        "oc-code-auditor" => Some(3600),
        "oc-security-auditor" => Some(24 * 3600),
        _ => None,
    };
    let fresh = limit.zip(age).map(|(l, a)| a < l);
    let summary = match (&content, age) {
        (None, _) => format!("{rel} is not valid JSON"),
        (Some(_), Some(a)) => format!(
            "{skill}: updated {} ago{}",
            human_age(a),
            fresh.map(|f| if f { " (fresh)" } else { " (stale: re-run it)" }).unwrap_or("")
        ),
        (Some(_), None) => format!("{skill}: no updated_at"),
    };
    Ok(CheckpointOutcome { skill: skill.into(), path: rel, exists: true, updated_at, age_seconds: age, fresh, summary, content })
}

fn human_age(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ReportOutcome {
    pub run_id: RunId,
    pub kind: ReportKind,
    pub markdown: String,
}

/// The Markdown report of a run (default: the latest finished one).
pub fn report(ctx: &Ctx, run_id: Option<&RunId>, kind: Option<ReportKind>) -> Result<ReportOutcome> {
    let run = match run_id {
        Some(id) => ctx.store.run(id)?.ok_or_else(|| CoreError::NotFound {
            what: "run".into(),
            message: format!("no run {id}"),
            hint: "deploy_status lists recent runs".into(),
        })?,
        None => ctx.store.recent_runs(1, |r| r.status.is_final(), |_| false)?.pop().ok_or_else(|| CoreError::NotFound {
            what: "run".into(),
            message: "no finished run yet".into(),
            hint: "deploy to staging first".into(),
        })?,
    };
    let kind = kind.unwrap_or_else(|| ReportKind::for_run(&run));
    let markdown = ctx.runner.redactor().redact(&report::render(&run, kind));
    Ok(ReportOutcome { run_id: run.run_id, kind, markdown })
}

// ---------------------------------------------------------------------------------------------
// Environment variables and secrets

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnvAction {
    List,
    Set,
    Unset,
}

#[derive(Debug, Clone)]
pub struct EnvRequest {
    pub env: Environment,
    pub action: EnvAction,
    pub name: Option<String>,
    /// `env:NAME` (the server's own environment) or `file:PATH`; never the value itself.
    pub value_from: Option<String>,
    /// How a human already answered (a production change needs one).
    pub answer: Answer,
}

/// How a `deploy_env` call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnvChangeStatus {
    /// Listed, set or unset.
    Done,
    /// A production change waits for a human: `plan` and `confirmation_token` say what to approve.
    ConfirmationRequired,
    Declined,
    Cancelled,
}

/// The answer of `deploy_env`: names only, never a value.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EnvOutcome {
    pub env: Environment,
    pub platform: Platform,
    pub action: EnvAction,
    /// For `list`: the names set in the environment (empty for set and unset).
    #[serde(default)]
    pub vars: Vec<EnvVarName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub detail: String,
    /// How the platform handles variables, when it matters (e.g. Shuttle's Secrets.toml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub status: EnvChangeStatus,
    /// Who approved a production change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_by: Option<String>,
    /// The change a human is asked to approve (with `confirmation_required`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation_expires_at: Option<String>,
}

fn check_var_name(name: Option<&str>) -> Result<String> {
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| CoreError::invalid("name", "set and unset need the variable's name", "pass name, e.g. \"DATABASE_URL\""))?;
    crate::local::check_env_name(name, "name")?;
    Ok(name.to_owned())
}

/// Reads a secret's value from where `value_from` points, never from the call itself.
fn read_value(root: &Path, value_from: Option<&str>) -> Result<crate::secret::Secret> {
    let hint = "pass value_from as \"env:NAME\" (a variable of the server's environment) or \"file:PATH\" (a file the server can read)";
    let spec = value_from.map(str::trim).filter(|v| !v.is_empty()).ok_or_else(|| {
        CoreError::invalid("value_from", "set needs where the value comes from (the value itself is never passed in a call)", hint)
    })?;
    let value = if let Some(var) = spec.strip_prefix("env:") {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => v,
            _ => {
                return Err(CoreError::invalid(
                    "value_from",
                    format!("the server's environment has no `{var}`"),
                    format!("export {var} in the environment oc-deploy runs in (and restart it), or use file:PATH"),
                ));
            }
        }
    } else if let Some(path) = spec.strip_prefix("file:") {
        let p = if Path::new(path).is_absolute() { PathBuf::from(path) } else { root.join(path) };
        let text = std::fs::read_to_string(&p).map_err(|e| {
            CoreError::invalid(
                "value_from",
                format!("cannot read {}: {e}", p.display()),
                "give a readable file (relative paths start at the project root)",
            )
        })?;
        let v = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text).to_owned();
        if v.is_empty() {
            return Err(CoreError::invalid("value_from", format!("{} is empty", p.display()), "write the value into the file"));
        }
        v
    } else {
        // Not echoed: a caller who put the value itself here must not see it printed back.
        return Err(CoreError::invalid("value_from", "must start with env: or file: (the value itself is never passed)", hint));
    };
    Ok(crate::secret::Secret::new(value))
}

/// What a change to production's variables does on each platform, for the human who approves it.
fn env_change_effect(p: Platform) -> &'static str {
    match p {
        Platform::CloudflareWorkers => "wrangler deploys a new version of the production Worker with it, at once",
        Platform::Heroku => "Heroku makes a new release and restarts the production dynos",
        Platform::FlyIo => "Fly restarts the production machines with it",
        Platform::Render => "it takes effect with the next production deploy",
        Platform::Local => "it takes effect with the next production release",
        Platform::Shuttle | Platform::Command => "the platform manages its own variables",
    }
}

/// The end of a confirmation for a change outside a run.
enum ChangeApproval {
    Approved(String),
    Stop { status: EnvChangeStatus, token: Option<crate::confirm::IssuedToken>, next: String },
}

/// Asks a human to approve `plan` (a change that is not a deploy), with the same rules as a
/// production deploy: a one-time token bound to the plan, an input request of a later round,
/// the client's own form, or the operator's auto-approve.
async fn confirm_change<C: Confirmer>(ctx: &Ctx, plan: &Plan, answer: &Answer, confirmer: &C, tool: &str) -> Result<ChangeApproval> {
    if let Some(t) = answer.input_token.as_deref() {
        ctx.tokens.redeem_for(t, plan, TokenPurpose::InputRequest)?;
    }
    if let Some(t) = answer.confirmation.as_deref() {
        ctx.tokens.redeem(t, plan)?;
        return Ok(ChangeApproval::Approved("confirmation token".into()));
    }
    if ctx.auto_approve && answer.input_token.is_none() {
        return Ok(ChangeApproval::Approved("auto-approve (operator flag)".into()));
    }
    Ok(match confirmer.confirm(plan).await {
        ConfirmOutcome::Approved { by } => ChangeApproval::Approved(by),
        ConfirmOutcome::Declined => {
            ChangeApproval::Stop { status: EnvChangeStatus::Declined, token: None, next: "declined by the human; nothing changed".into() }
        }
        ConfirmOutcome::Cancelled => ChangeApproval::Stop {
            status: EnvChangeStatus::Cancelled,
            token: None,
            next: "the confirmation was cancelled; nothing changed".into(),
        },
        ConfirmOutcome::Deferred => ChangeApproval::Stop {
            status: EnvChangeStatus::ConfirmationRequired,
            token: Some(ctx.tokens.issue_for(plan, TokenPurpose::InputRequest)?),
            next: "answer the confirmation request".into(),
        },
        ConfirmOutcome::Unavailable => {
            let issued = ctx.tokens.issue(plan)?;
            let next = format!(
                "show the change to the human; if they approve, call {tool} again with the same arguments and confirmation: \"{}\" (expires {})",
                issued.token, issued.expires_at
            );
            ChangeApproval::Stop { status: EnvChangeStatus::ConfirmationRequired, token: Some(issued), next }
        }
    })
}

/// `/oc-deploy env`: list, set or unset an environment's variables and secrets through the
/// platform. A value comes from `value_from` and is redacted everywhere from then on. A change
/// to production needs a human's yes, like a production deploy.
pub async fn env_vars<C: Confirmer>(ctx: &Ctx, req: EnvRequest, confirmer: &C) -> Result<EnvOutcome> {
    let cfg = ctx.config()?;
    cfg.env(req.env)?;
    let provider = provider::for_config(&cfg, &ctx.root, &ctx.runner, ctx.supervisor_exe.clone())?;
    let mut out = EnvOutcome {
        env: req.env,
        platform: cfg.platform,
        action: req.action,
        vars: Vec::new(),
        name: None,
        detail: String::new(),
        note: None,
        status: EnvChangeStatus::Done,
        confirmed_by: None,
        plan: None,
        confirmation_token: None,
        confirmation_expires_at: None,
    };
    if req.action != EnvAction::List && req.env == Environment::Production && !matches!(cfg.platform, Platform::Shuttle | Platform::Command)
    {
        let name = check_var_name(req.name.as_deref())?;
        let change = match req.action {
            EnvAction::Set => {
                // Check where the value comes from before asking anyone.
                read_value(&ctx.root, req.value_from.as_deref())?;
                format!("set {name} from {}", req.value_from.as_deref().unwrap_or_default().trim())
            }
            _ => format!("unset {name}"),
        };
        let plan = Plan {
            env: req.env,
            commit: String::new(),
            version: String::new(),
            commit_range: None,
            strategy: None,
            gate_decision: Decision::Proceed,
            gate_counts: Default::default(),
            staging_smoke: "n/a".into(),
            previous_version: None,
            direct: false,
            skip_security: false,
            reasons: vec![format!("{}: {}.", cfg.platform.as_str(), env_change_effect(cfg.platform))],
            change: Some(change),
        };
        match confirm_change(ctx, &plan, &req.answer, confirmer, "deploy_env").await? {
            ChangeApproval::Approved(by) => out.confirmed_by = Some(by),
            ChangeApproval::Stop { status, token, next } => {
                out.status = status;
                out.name = Some(name);
                out.detail = next;
                out.plan = Some(plan);
                if let Some(t) = token {
                    out.confirmation_token = Some(t.token);
                    out.confirmation_expires_at = Some(t.expires_at);
                }
                return Ok(out);
            }
        }
    }
    match req.action {
        EnvAction::List => {
            let EnvListing { vars, note } = provider.env_list(req.env, &ctx.cancel).await?;
            out.detail = format!("{} variable(s) in {}", vars.len(), req.env);
            out.vars = vars;
            out.note = note;
        }
        EnvAction::Set => {
            let name = check_var_name(req.name.as_deref())?;
            let value = read_value(&ctx.root, req.value_from.as_deref())?;
            ctx.runner.redactor().add_secret(&value);
            let o = provider.env_set(req.env, &name, &value, &ctx.cancel).await?;
            out.detail = o.detail;
            out.name = Some(name);
        }
        EnvAction::Unset => {
            let name = check_var_name(req.name.as_deref())?;
            let o = provider.env_unset(req.env, &name, &ctx.cancel).await?;
            out.detail = o.detail;
            out.name = Some(name);
        }
    }
    out.detail = ctx.runner.redactor().redact(&out.detail);
    Ok(out)
}
