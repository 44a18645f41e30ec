//! The CLI twins of the MCP tools: the same deploy-core operations, with progress on stderr,
//! results on stdout (readable, or JSON with `--json`), and exit codes CI can use.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use deploy_core::CoreError;
use deploy_core::confirm::{ConfirmOutcome, Confirmer, Plan};
use deploy_core::ops::{Ctx, Progress, RunOutcome};
use deploy_core::run::RunStatus;
use deploy_core::secret::Redactor;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::server::error_json;

/// Exit codes: 0 done, 1 the run failed or was refused, 2 bad input or setup, 3 waiting for a
/// human's confirmation.
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_CONFIRM: i32 = 3;

/// Progress lines on stderr.
pub struct StderrProgress;

#[allow(clippy::print_stderr)]
impl Progress for StderrProgress {
    fn step(&self, k: u32, n: u32, message: &str) {
        eprintln!("[{k}/{n}] {message}");
    }
}

/// Asks on the terminal; without one, the caller gets a token (or uses --yes).
pub struct TerminalConfirmer;

#[allow(clippy::print_stderr)]
impl Confirmer for TerminalConfirmer {
    async fn confirm(&self, plan: &Plan) -> ConfirmOutcome {
        if !std::io::stdin().is_terminal() {
            return ConfirmOutcome::Unavailable;
        }
        let summary = plan.summary();
        let reasons = plan.reasons.join("; ");
        let answer = tokio::task::spawn_blocking(move || {
            eprintln!("\n{summary}\n  why confirmation is needed: {reasons}");
            eprint!("Ship it? Type 'yes' to confirm: ");
            let _ = std::io::stderr().flush();
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).map(|_| line)
        })
        .await;
        match answer {
            Ok(Ok(l)) if l.trim().eq_ignore_ascii_case("yes") || l.trim().eq_ignore_ascii_case("y") => {
                ConfirmOutcome::Approved { by: "terminal prompt".into() }
            }
            Ok(Ok(l)) if l.is_empty() => ConfirmOutcome::Cancelled,
            _ => ConfirmOutcome::Declined,
        }
    }
}

/// One line of human output on stdout.
#[allow(clippy::print_stdout)]
pub fn say(s: impl AsRef<str>) {
    println!("{}", s.as_ref());
}

/// A deploy-core context for the CLI: Ctrl-C cancels the run at a safe point.
pub fn ctx(root: &Path, yes: bool) -> Ctx {
    let exe = std::env::current_exe().unwrap_or_else(|_| "oc-deploy".into());
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("Ctrl-C: stopping at the next safe point");
            c2.cancel();
        }
    });
    let redactor = Redactor::from_process_env();
    let mut ctx = Ctx::new(root, exe, redactor.clone())
        .with_progress(Arc::new(StderrProgress))
        .with_cancel(cancel)
        .with_events(Arc::new(crate::pm::PmEvents::new(redactor)));
    ctx.auto_approve = yes;
    ctx.auto_approve_high_risk = yes;
    ctx
}

/// Prints a result and returns the exit code.
#[allow(clippy::print_stdout)]
pub fn emit<T: Serialize>(
    r: Result<T, CoreError>,
    json: bool,
    text: impl FnOnce(&T) -> String,
    failed: impl FnOnce(&T) -> i32,
    redactor: &Redactor,
) -> i32 {
    match r {
        Ok(v) => {
            if json {
                println!("{}", redactor.redact(&serde_json::to_string_pretty(&v).unwrap_or_default()));
            } else {
                println!("{}", redactor.redact(&text(&v)));
            }
            failed(&v)
        }
        Err(e) => emit_error(&e, json, redactor),
    }
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn emit_error(e: &CoreError, json: bool, redactor: &Redactor) -> i32 {
    if json {
        println!("{}", redactor.redact(&serde_json::to_string_pretty(&error_json(e)).unwrap_or_default()));
    } else {
        eprintln!("error [{}]: {}\nhint: {}", e.code(), redactor.redact(&e.to_string()), e.hint());
    }
    match e {
        CoreError::ConfigMissing { .. }
        | CoreError::ConfigInvalid { .. }
        | CoreError::InvalidInput { .. }
        | CoreError::PathOutsideProject { .. } => EXIT_USAGE,
        _ => EXIT_FAILED,
    }
}

/// The exit code of a run.
pub fn run_exit(o: &RunOutcome) -> i32 {
    match o.run.status {
        RunStatus::ConfirmationRequired => EXIT_CONFIRM,
        _ if crate::tools::run_is_error(o) => EXIT_FAILED,
        _ => 0,
    }
}
