//! Short human text for every result, shared by the MCP tools (the text beside the structured
//! content) and the CLI (what a person reads). Plain text, no colour.

use std::fmt::Write;

use deploy_core::gate::GateResult;
use deploy_core::ops::{HealthOutcome, InitOutcome, RunOutcome, SmokeOutcome, StatusOutcome};
use deploy_core::run::{CheckResult, RunStatus, StepStatus};

fn step_mark(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Running => "…",
        StepStatus::Passed => "✓",
        StepStatus::Warned => "!",
        StepStatus::Failed => "✗",
        StepStatus::Skipped => "-",
    }
}

pub fn run(o: &RunOutcome) -> String {
    let r = &o.run;
    let mut s = format!(
        "{} run {} → {}: {}{}\n",
        match r.kind {
            deploy_core::run::RunKind::Staging => "staging",
            deploy_core::run::RunKind::Production => "production",
            deploy_core::run::RunKind::Rollback => "rollback",
        },
        r.run_id,
        r.env,
        r.status.as_str(),
        r.version.as_ref().map(|v| format!(" (version {v})")).unwrap_or_default()
    );
    for st in &r.steps {
        let _ = writeln!(s, "  {} {:<22} {:>7} ms  {}", step_mark(st.status), st.name, st.duration_ms, st.detail);
    }
    if let Some(rb) = &r.rollback {
        let _ = writeln!(
            s,
            "  rolled back {} → {} ({}): {}",
            rb.from_version.as_deref().unwrap_or("?"),
            rb.to_version,
            if rb.automatic { "automatic" } else { "manual" },
            rb.reason
        );
    }
    if r.status == RunStatus::ConfirmationRequired
        && let Some(p) = &o.plan
    {
        let _ = writeln!(s, "  plan: {}", p.summary());
    }
    for n in &r.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    if let Some(e) = &r.error {
        let _ = writeln!(s, "error [{}]: {}\nhint: {}", e.code, e.message, e.hint);
    }
    let _ = write!(s, "next: {}", o.next);
    s
}

fn checks(s: &mut String, checks: &[CheckResult]) {
    for c in checks {
        let status = c.status.map(|x| x.to_string()).unwrap_or_else(|| "---".into());
        let _ = writeln!(
            s,
            "  {} {:<20} {status} {:>6} ms{}  {}",
            if c.passed { "✓" } else { "✗" },
            c.name,
            c.latency_ms,
            if c.slow { " (slow)" } else { "" },
            c.detail
        );
    }
}

pub fn smoke(o: &SmokeOutcome) -> String {
    let mut s = format!("smoke tests on {} ({}): {}\n", o.env, o.base_url, o.summary);
    checks(&mut s, &o.checks);
    s.push_str(if o.passed { "ready for production." } else { "fix failures before promoting." });
    s
}

pub fn health(o: &HealthOutcome) -> String {
    let v = serde_json::to_value(o.report.verdict).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let mut s = format!("{} ({}, version {}): {v} — {}\n", o.env, o.base_url, o.version.as_deref().unwrap_or("unknown"), o.report.summary);
    checks(&mut s, &o.report.checks);
    for d in &o.report.comparison {
        let _ = writeln!(s, "  vs baseline {:<12} {} ms → {} ms ({:+} ms)", d.name, d.baseline_ms, d.now_ms, d.delta_ms);
    }
    s.trim_end().to_owned()
}

pub fn gate(g: &GateResult) -> String {
    let mut s = format!(
        "gate: {} (critical {}, high {}, medium {}, low {})\n",
        g.decision.as_str(),
        g.counts.critical,
        g.counts.high,
        g.counts.medium,
        g.counts.low
    );
    for r in &g.reasons {
        let _ = writeln!(s, "  - {r}");
    }
    for src in &g.sources {
        let _ = writeln!(s, "  {}: {} — {}", src.source, src.status, src.detail);
    }
    for f in g.findings.iter().take(20) {
        let sev = serde_json::to_value(f.severity).ok().and_then(|v| v.as_str().map(str::to_uppercase)).unwrap_or_default();
        let _ = writeln!(s, "  [{sev}] {} ({}){}", f.title, f.source, f.fix.as_ref().map(|x| format!(" — fix: {x}")).unwrap_or_default());
    }
    s.trim_end().to_owned()
}

pub fn init(o: &InitOutcome) -> String {
    let mut s = format!(
        "project {}: platform {}{}\n",
        o.project_dir,
        o.config.platform.as_str(),
        if o.existing { " (existing config)" } else { " (proposed)" }
    );
    for e in &o.detection.evidence {
        let _ = writeln!(s, "  detected: {e}");
    }
    for c in &o.checklist {
        let st = serde_json::to_value(c.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let _ = writeln!(s, "  [{st}] {}: {}{}", c.name, c.detail, c.hint.as_ref().map(|h| format!(" (hint: {h})")).unwrap_or_default());
    }
    if let Some(w) = &o.written {
        let _ = writeln!(s, "  wrote {w}");
    }
    let _ = write!(s, "next: {}", o.next);
    s
}

pub fn status(o: &StatusOutcome) -> String {
    let mut s = format!("{} on {}\n", o.project.as_deref().unwrap_or("(no config)"), o.platform.as_deref().unwrap_or("-"));
    if let Some(e) = &o.config_error {
        let _ = writeln!(s, "  config: {e}");
    }
    for e in &o.environments {
        let _ = writeln!(
            s,
            "  {:<10} live {:<8} recorded {:<8} previous {:<8} smoke {:<4} {}{}",
            e.env.as_str(),
            e.live_version.as_deref().unwrap_or("-"),
            e.recorded_version.as_deref().unwrap_or("-"),
            e.previous_version.as_deref().unwrap_or("-"),
            e.last_smoke.as_deref().unwrap_or("-"),
            e.url.as_deref().unwrap_or(""),
            e.locked_by.as_ref().map(|h| format!(" [locked by {} pid {}]", h.run_id, h.pid)).unwrap_or_default()
        );
    }
    if o.pm_deferred > 0 {
        let _ = writeln!(s, "  pm: {} tracker write(s) deferred (deploy_retry_pm / oc-deploy retry-pm)", o.pm_deferred);
    }
    for r in &o.in_flight {
        let _ = writeln!(
            s,
            "  running: {} {} step {} ({} s) {}",
            r.run_id,
            r.env.as_str(),
            r.step.as_deref().unwrap_or("-"),
            r.elapsed_ms / 1000,
            r.last_message.as_deref().unwrap_or("")
        );
    }
    if !o.recent.is_empty() {
        s.push_str("  recent runs:\n");
        for r in &o.recent {
            let _ = writeln!(s, "    {} {:<10} {:<8} {}", r.run_id, r.env.as_str(), r.version.as_deref().unwrap_or("-"), r.status.as_str());
        }
    }
    if let Some(r) = &o.run {
        let _ = writeln!(s, "  run {}: {} ({} steps)", r.run_id, r.status.as_str(), r.steps.len());
    }
    s.trim_end().to_owned()
}

pub fn env(o: &deploy_core::ops::EnvOutcome) -> String {
    let mut s = format!("{} ({}): {}", o.env, o.platform.as_str(), o.detail);
    for v in &o.vars {
        s.push_str(&format!("\n  {}{}", v.name, if v.secret { " (secret)" } else { "" }));
    }
    if let Some(n) = &o.note {
        s.push_str(&format!("\nnote: {n}"));
    }
    if let Some(p) = &o.plan {
        s.push_str(&format!("\nplan: {}", p.summary()));
    }
    if let Some(by) = &o.confirmed_by {
        s.push_str(&format!("\napproved by {by}"));
    }
    s
}

pub fn retry_pm(r: &pm_bridge::bridge::FlushReport) -> String {
    let mut s = r.summary.clone();
    if r.skipped_not_retriable > 0 {
        s.push_str(&format!("\n{} not retriable (need a human: 401/403/404) stay in the checkpoint", r.skipped_not_retriable));
    }
    for a in r.remaining.iter().filter(|a| a.retriable) {
        s.push_str(&format!("\n  still deferred: {} ({})", a.marker, a.error));
    }
    s
}
