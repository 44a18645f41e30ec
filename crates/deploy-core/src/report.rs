//! The deployment and incident reports of soc-deploy (§5 "Deployment Report Template"), rendered
//! as Markdown from a run record alone, so a report can be written for any run in the log, at
//! any later time, and always says the same thing.
//!
//! Everything that comes from outside (step details, check details, notes, error messages) is
//! escaped for where it lands: a table cell cannot gain a column, a bullet cannot end early, and
//! the Mermaid block cannot be broken by a colon, a comment marker or a code fence.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::gate::{Decision, GateResult, Severity};
use crate::run::{CheckResult, RunKind, RunRecord, RunStatus, StepRecord, StepStatus};

/// Which report to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    /// The soc-deploy deployment report: summary, checklist, steps, health, rollback, notes.
    #[default]
    Deployment,
    /// What went wrong, when, for how long, and what to do next.
    Incident,
}

impl ReportKind {
    /// The report a run calls for: an incident report for rollbacks and failed runs.
    pub fn for_run(run: &RunRecord) -> Self {
        let incident = run.kind == RunKind::Rollback
            || run.rollback.is_some()
            || matches!(run.status, RunStatus::Failed | RunStatus::RolledBack | RunStatus::Interrupted);
        if incident { Self::Incident } else { Self::Deployment }
    }
}

/// Renders the report of `run` as Markdown.
pub fn render(run: &RunRecord, kind: ReportKind) -> String {
    match kind {
        ReportKind::Deployment => render_deployment(run),
        ReportKind::Incident => render_incident(run),
    }
}

fn render_deployment(run: &RunRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Deployment Report: {} → {}\n", inline(&version_label(run)), run.env);

    out.push_str("## Summary\n");
    let completed = match &run.finished_at {
        Some(at) => human_time(at),
        None => "— (still running)".into(),
    };
    let summary = [
        ("Action", action_label(run)),
        ("Version", run.version.clone().unwrap_or_else(|| "—".into())),
        ("Commit", run.commit.clone().unwrap_or_else(|| "—".into())),
        ("Strategy", run.strategy.map_or_else(|| "—".into(), |s| s.as_str().to_owned())),
        ("Status", status_badge(run.status).into()),
        ("Duration", human_duration(run.duration_ms)),
        ("Started", human_time(&run.started_at)),
        ("Completed", completed),
        ("Project", format!("{} ({})", run.project, run.platform)),
        ("Run", run.run_id.to_string()),
    ];
    push_fields(&mut out, &summary);

    out.push_str("\n## Pre-Deployment Checklist\n");
    for (done, text) in checklist(run) {
        let _ = writeln!(out, "- [{}] {}", if done { "x" } else { " " }, inline(&text));
    }

    out.push_str("\n## Deployment Steps\n\n");
    out.push_str(&steps_table(&run.steps));

    let (checks, source) = health_source(run);
    let _ = writeln!(out, "\n## Health Checks\n");
    if checks.is_empty() {
        out.push_str("_No health checks were recorded for this run._\n");
    } else {
        let _ = writeln!(out, "_From the {source}._\n");
        let rows = checks.iter().map(|c| vec![c.name.clone(), check_target(c), check_actual(c), check_badge(c).into()]).collect();
        out.push_str(&table(&["Check", "Target", "Actual", "Status"], &[Align::Left, Align::Left, Align::Left, Align::Center], rows));
    }

    out.push_str("\n## Rollback Information\n");
    let mut fields = vec![
        ("Previous Version", run.previous_version.clone().unwrap_or_else(|| "none recorded".into())),
        ("Rollback Command", rollback_command(run)),
    ];
    match &run.rollback {
        None => fields.push(("Rollback Triggered", "No".into())),
        Some(rb) => {
            fields.push(("Rollback Triggered", format!("Yes — {}", rb.reason)));
            let how = if rb.automatic { "automatic (oc-deploy, after failed health checks)" } else { "manual" };
            fields.push((
                "Rolled Back",
                format!(
                    "{} → {}, {how}, took {}",
                    rb.from_version.as_deref().unwrap_or("unknown"),
                    rb.to_version,
                    human_duration(rb.duration_ms)
                ),
            ));
            fields.push(("Rollback Finished", human_time(&rb.at)));
        }
    }
    push_fields(&mut out, &fields);

    out.push_str("\n## Issues & Notes\n");
    let issues = issues(run);
    if issues.is_empty() {
        out.push_str("- None\n");
    }
    for issue in issues {
        out.push_str(&bullet(&issue));
    }

    out.push_str("\n## Timeline\n\n");
    let title = format!("Deploy {} to {} ({})", version_label(run), run.env, run.status.as_str());
    out.push_str(&timeline(&title, run));
    out
}

fn render_incident(run: &RunRecord) -> String {
    let mut out = String::new();
    match &run.rollback {
        Some(rb) => {
            let _ = writeln!(out, "# Incident Report: {} rolled back to {}\n", run.env, inline(&rb.to_version));
        }
        None => {
            let _ = writeln!(out, "# Incident Report: {} deploy failed\n", run.env);
        }
    }

    out.push_str("## What happened\n");
    let fields = [
        ("Run", format!("{} ({})", run.run_id, kind_label(run.kind))),
        ("Project", format!("{} ({})", run.project, run.platform)),
        ("Version", run.version.clone().unwrap_or_else(|| "—".into())),
        ("Commit", run.commit.clone().unwrap_or_else(|| "—".into())),
        ("Status", status_badge(run.status).into()),
        ("Started", human_time(&run.started_at)),
        ("Ended", run.finished_at.as_deref().map_or_else(|| "— (still running)".into(), human_time)),
    ];
    push_fields(&mut out, &fields);
    out.push('\n');
    for sentence in narrative(run) {
        out.push_str(&bullet(&sentence));
    }

    out.push_str("\n## Impact window\n");
    push_fields(&mut out, &impact_window(run));

    out.push_str("\n## Failing checks\n\n");
    let failing: Vec<(&str, &CheckResult)> = run
        .smoke
        .iter()
        .filter(|c| !c.passed)
        .map(|c| ("smoke", c))
        .chain(run.health.iter().filter(|c| !c.passed).map(|c| ("health", c)))
        .collect();
    if failing.is_empty() {
        match first_failed_step(run) {
            Some(step) => {
                let _ = writeln!(out, "_No HTTP check failed; the run failed at step `{}`: {}_", inline(&step.name), inline(&step.detail));
            }
            None => out.push_str("_No failing checks were recorded._\n"),
        }
    } else {
        let rows = failing
            .iter()
            .map(|(phase, c)| {
                vec![
                    c.name.clone(),
                    (*phase).into(),
                    c.url.clone(),
                    c.status.map_or_else(|| "no response".into(), |s| s.to_string()),
                    format!("{} ms", c.latency_ms),
                    c.detail.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["Check", "Phase", "URL", "Status", "Latency", "Detail"],
            &[Align::Left, Align::Left, Align::Left, Align::Center, Align::Right, Align::Left],
            rows,
        ));
    }

    out.push_str("\n## Rollback details\n");
    match &run.rollback {
        Some(rb) => {
            let fields = [
                ("From", rb.from_version.clone().unwrap_or_else(|| "unknown".into())),
                ("To", rb.to_version.clone()),
                ("Trigger", if rb.automatic { "automatic (oc-deploy, after failed health checks)".into() } else { "manual".to_owned() }),
                ("Reason", rb.reason.clone()),
                ("Duration", human_duration(rb.duration_ms)),
                ("Finished", human_time(&rb.at)),
            ];
            push_fields(&mut out, &fields);
        }
        None => {
            let fields = [("Rollback Triggered", "No".to_owned()), ("Rollback Command", rollback_command(run))];
            push_fields(&mut out, &fields);
        }
    }

    out.push_str("\n## Timeline\n\n");
    let title = match &run.rollback {
        Some(rb) => format!("{} rolled back to {}", run.env, rb.to_version),
        None => format!("{} deploy of {} failed", run.env, version_label(run)),
    };
    out.push_str(&timeline(&title, run));

    out.push_str("\n## Follow-ups\n");
    for (done, text) in follow_ups(run) {
        let _ = writeln!(out, "- [{}] {}", if done { "x" } else { " " }, inline(&text));
    }
    out
}

// ----- What the record says, in words -----

/// The version for titles: the version, else the short commit, else `unknown version`.
fn version_label(run: &RunRecord) -> String {
    run.version.clone().or_else(|| run.commit.as_ref().map(|c| c.chars().take(7).collect())).unwrap_or_else(|| "unknown version".into())
}

fn kind_label(kind: RunKind) -> &'static str {
    match kind {
        RunKind::Staging => "Staging Deploy",
        RunKind::Production => "Production Deploy",
        RunKind::Rollback => "Rollback",
    }
}

fn action_label(run: &RunRecord) -> String {
    let label = kind_label(run.kind);
    if run.dry_run { format!("{label} (dry run: nothing was changed)") } else { label.to_owned() }
}

/// The status line of the summary, as the template spells it.
pub fn status_badge(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Succeeded => "✅ SUCCESS",
        RunStatus::Failed => "❌ FAILED",
        RunStatus::RolledBack => "⚠️ ROLLBACK",
        RunStatus::Blocked => "🚫 BLOCKED",
        RunStatus::ConfirmationRequired => "⏸ CONFIRMATION REQUIRED",
        RunStatus::Declined => "✋ DECLINED",
        RunStatus::Cancelled => "⛔ CANCELLED",
        RunStatus::Running => "⏳ RUNNING",
        RunStatus::Interrupted => "💥 INTERRUPTED",
    }
}

fn step_badge(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Passed => "✅ passed",
        StepStatus::Warned => "⚠️ warned",
        StepStatus::Failed => "❌ failed",
        StepStatus::Skipped => "⏭ skipped",
        StepStatus::Running => "⏳ running",
    }
}

fn counts_label(gate: &GateResult) -> String {
    let c = gate.counts;
    format!("{} critical, {} high, {} medium, {} low", c.critical, c.high, c.medium, c.low)
}

/// The pre-deployment checklist: each item is checked only when the record proves it.
fn checklist(run: &RunRecord) -> Vec<(bool, String)> {
    let mut items = Vec::new();
    items.push(match (&run.gate, run.kind) {
        (None, RunKind::Rollback) => (true, "Security gate: not needed for a rollback to a known version".into()),
        (None, _) => (false, "Security gate: not run".into()),
        (Some(g), _) => {
            let reasons = g.reasons.join("; ");
            match g.decision {
                Decision::Proceed => (true, format!("Security gate passed: proceed ({})", counts_label(g))),
                Decision::Warn => (true, format!("Security gate: warn ({}) — {reasons}", counts_label(g))),
                Decision::Block if g.skipped => {
                    (false, format!("Security gate: BLOCK bypassed with skip_security ({}) — high risk: {reasons}", counts_label(g)))
                }
                Decision::Block => (false, format!("Security gate: blocked ({}) — {reasons}", counts_label(g))),
            }
        }
    });
    match run.kind {
        RunKind::Production if run.direct => {
            items.push((false, "Staging verified for this commit: no — direct deploy (staging skipped) — flagged".into()));
        }
        RunKind::Production if run.status == RunStatus::Blocked => {
            items.push((false, "Staging verified for this commit: not checked (the run stopped at the gate)".into()));
        }
        RunKind::Production => {
            let commit = run.commit.as_deref().map_or_else(|| version_label(run), |c| c.chars().take(7).collect());
            items.push((true, format!("Staging verified for this commit ({commit})")));
        }
        RunKind::Staging => items.push((true, "Staging deploy: this run is the staging verification".into())),
        RunKind::Rollback => {}
    }
    items.push(match (&run.previous_version, run.kind) {
        (Some(v), _) => (true, format!("Previous version recorded: {v} (the rollback target)")),
        (None, RunKind::Production) => (false, "Previous version recorded: none (first deploy: nothing to roll back to)".into()),
        (None, _) => (false, "Previous version recorded: none".into()),
    });
    items.push(match (run.confirmed_by.as_deref(), run.status, run.kind) {
        (Some("auto-approve"), _, _) => (false, "Human confirmation: none — auto-approved by configuration".into()),
        (Some(how), _, _) => (true, format!("Human confirmation: given ({how})")),
        (None, RunStatus::ConfirmationRequired, _) => (false, "Human confirmation: awaiting (the deploy waits for a yes)".into()),
        (None, RunStatus::Declined, _) => (false, "Human confirmation: declined".into()),
        (None, _, RunKind::Staging) => (true, "Human confirmation: not required for staging".into()),
        (None, _, _) if run.dry_run => (true, "Human confirmation: not needed for a dry run".into()),
        (None, _, _) => (false, "Human confirmation: not given".into()),
    });
    items
}

/// The checks the health table shows: post-deploy health, else the smoke tests.
fn health_source(run: &RunRecord) -> (&[CheckResult], &'static str) {
    if run.health.is_empty() { (&run.smoke, "smoke tests") } else { (&run.health, "post-deploy health checks") }
}

/// The expectation of a check, read back from the fixed vocabulary of `smoke` details:
/// `status 200 (expected 2xx)` / `expected 200, got 503` and `(max 500 ms)` /
/// `exceeds max 500 ms` / `warn above 2000 ms` / `above the 2000 ms warning threshold`.
fn check_target(c: &CheckResult) -> String {
    let mut parts = Vec::new();
    for piece in c.detail.split("; ") {
        let status = piece.strip_prefix("expected ").and_then(|rest| rest.split_once(", got ")).map(|(want, _)| want).or_else(|| {
            piece.strip_prefix("status ").and_then(|rest| rest.split_once("(expected ")).and_then(|(_, w)| w.strip_suffix(')'))
        });
        if let Some(want) = status {
            parts.push(format!("status {want}"));
            break;
        }
    }
    let latency = |marker: &str| {
        c.detail.split_once(marker).and_then(|(_, rest)| rest.split_once(" ms")).and_then(|(n, _)| n.trim().parse::<u64>().ok())
    };
    if let Some(max) = latency("max ") {
        parts.push(format!("≤ {max} ms"));
    } else if let Some(warn) = latency("warn above ").or_else(|| latency("above the ")) {
        parts.push(format!("< {warn} ms (warning)"));
    }
    if parts.is_empty() { "—".into() } else { parts.join(", ") }
}

fn check_actual(c: &CheckResult) -> String {
    match c.status {
        None => format!("no response: {}", c.detail),
        Some(s) if c.passed => format!("{s} in {} ms", c.latency_ms),
        // Failures come first in a detail, so its first piece says why this response failed.
        Some(s) => format!("{s} in {} ms — {}", c.latency_ms, c.detail.split("; ").next().unwrap_or_default()),
    }
}

fn check_badge(c: &CheckResult) -> &'static str {
    match (c.passed, c.slow) {
        (false, _) => "❌",
        (true, true) => "⚠️ slow",
        (true, false) => "✅",
    }
}

fn rollback_command(run: &RunRecord) -> String {
    match &run.previous_version {
        Some(prev) => format!("`oc-deploy rollback --env {} --to-version {} --reason \"…\"`", run.env, inline(prev).replace('`', "'")),
        None => "none — no previous version was recorded to roll back to".into(),
    }
}

fn issues(run: &RunRecord) -> Vec<String> {
    let mut out: Vec<String> = run.notes.clone();
    if run.direct {
        out.push("⚠️ Direct deploy: production shipped without a verified staging run for this commit.".into());
    }
    if let Some(g) = &run.gate {
        if g.skipped {
            out.push("⚠️ The blocking security gate was bypassed with skip_security.".into());
        }
        if g.decision != Decision::Proceed {
            for f in g.findings.iter().filter(|f| f.severity >= Severity::High) {
                let sev = if f.severity == Severity::Critical { "CRITICAL" } else { "HIGH" };
                let fix = f.fix.as_deref().map(|fix| format!(" — fix: {fix}")).unwrap_or_default();
                out.push(format!("{sev} ({}): {}{fix}", f.source, f.title));
            }
        }
    }
    let (checks, _) = health_source(run);
    for c in checks {
        if !c.passed {
            out.push(format!("❌ Check {} failed ({}): {}", c.name, c.url, c.detail));
        } else if c.slow {
            out.push(format!("⚠️ Check {} is slow: {} ms", c.name, c.latency_ms));
        }
    }
    if let Some(e) = &run.error {
        out.push(format!("❌ Error {}: {}\nhint: {}", e.code, e.message, e.hint));
    }
    out
}

fn first_failed_step(run: &RunRecord) -> Option<&StepRecord> {
    run.steps.iter().find(|s| s.status == StepStatus::Failed)
}

/// The incident's story in a few sentences.
fn narrative(run: &RunRecord) -> Vec<String> {
    let mut out = Vec::new();
    let version = version_label(run);
    match run.kind {
        RunKind::Rollback => out.push(format!("A rollback of {} was run.", run.env)),
        _ => {
            let strategy = run.strategy.map(|s| format!(" with the {s} strategy")).unwrap_or_default();
            out.push(format!("{version} was deployed to {}{strategy}.", run.env));
        }
    }
    let failing: Vec<&str> = run.smoke.iter().chain(&run.health).filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
    if !failing.is_empty() {
        out.push(format!("{} check(s) failed after the deploy: {}.", failing.len(), failing.join(", ")));
    } else if let Some(step) = first_failed_step(run) {
        out.push(format!("Step {} failed: {}", step.name, step.detail));
    }
    if let Some(e) = &run.error {
        out.push(format!("Error {}: {}", e.code, e.message));
    }
    match &run.rollback {
        Some(rb) if rb.automatic => out.push(format!("oc-deploy rolled back automatically to {}: {}", rb.to_version, rb.reason)),
        Some(rb) => out.push(format!("{} was rolled back manually to {}: {}", run.env, rb.to_version, rb.reason)),
        None => match &run.previous_version {
            Some(prev) => out.push(format!(
                "No rollback happened: {version} may still be serving. Roll back to {prev} with oc-deploy rollback --env {} --to-version {prev}.",
                run.env
            )),
            None => out.push("No rollback happened, and no previous version was recorded to roll back to.".into()),
        },
    }
    out
}

/// From the first failing check (the start of the step that found it) to the rollback's end.
fn impact_window(run: &RunRecord) -> Vec<(&'static str, String)> {
    let start = first_failed_step(run).map(|s| (s.started_at.as_str(), format!("step {} found the first failure", s.name)));
    let end = run.rollback.as_ref().map(|rb| (rb.at.as_str(), format!("rollback to {} finished", rb.to_version)));
    let mut fields = Vec::new();
    match &start {
        Some((at, why)) => fields.push(("From", format!("{} ({why})", human_time(at)))),
        None => fields.push(("From", format!("{} (run start; no failing step was recorded)", human_time(&run.started_at)))),
    }
    match &end {
        Some((at, why)) => fields.push(("To", format!("{} ({why})", human_time(at)))),
        None => fields.push(("To", "open — no rollback was recorded".into())),
    }
    let from = start.map_or(run.started_at.as_str(), |(at, _)| at);
    let length = match (parse_time(from), end.as_ref().and_then(|(at, _)| parse_time(at))) {
        (Some(a), Some(b)) if b >= a => human_duration(u64::try_from((b - a).num_milliseconds()).unwrap_or(0)),
        _ => "unknown".into(),
    };
    fields.push(("Length", length));
    fields
}

fn follow_ups(run: &RunRecord) -> Vec<(bool, String)> {
    let cause = run
        .smoke
        .iter()
        .chain(&run.health)
        .find(|c| !c.passed)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .or_else(|| run.error.as_ref().map(|e| e.message.clone()))
        .or_else(|| first_failed_step(run).map(|s| format!("{}: {}", s.name, s.detail)));
    let mut out = vec![(false, format!("Find the root cause{}", cause.map(|c| format!(" of “{c}”")).unwrap_or_default()))];
    let migrated: Vec<&str> = run
        .steps
        .iter()
        .filter(|s| s.name.to_ascii_lowercase().contains("migrat") && matches!(s.status, StepStatus::Passed | StepStatus::Warned))
        .map(|s| s.name.as_str())
        .collect();
    if migrated.is_empty() {
        out.push((true, "No database migration ran in this run: nothing to revert".into()));
    } else {
        out.push((
            false,
            format!(
                "Revert the migration of step {} if the old version cannot run on the new schema: D1 migrations are forward-only, \
                 so write a new migration that undoes it (rolling back the code did not roll back the data)",
                migrated.join(", ")
            ),
        ));
    }
    if let Some(rb) = &run.rollback {
        out.push((false, format!("Confirm {} is healthy on {} (deploy_health)", run.env, rb.to_version)));
    }
    out.push((
        false,
        "Re-deploy the fix through staging: deploy and verify it on staging, then promote the same commit to production".into(),
    ));
    out.push((false, "Write the post-incident review and share it with the team".into()));
    out
}

// ----- Markdown building blocks -----

/// Bold `**Name**: value` lines ending in two spaces (a Markdown line break), as the template.
fn push_fields(out: &mut String, fields: &[(&str, String)]) {
    let last = fields.len().saturating_sub(1);
    for (i, (name, value)) in fields.iter().enumerate() {
        let _ = writeln!(out, "**{name}**: {}{}", inline(value), if i < last { "  " } else { "" });
    }
}

/// One line of free text: line breaks become spaces.
fn inline(s: &str) -> String {
    s.split(['\r', '\n']).filter(|l| !l.trim().is_empty()).map(str::trim).collect::<Vec<_>>().join(" ")
}

/// A bullet whose extra lines stay inside the bullet (indented), whatever the text holds.
fn bullet(text: &str) -> String {
    let mut lines = text.lines().map(str::trim_end).filter(|l| !l.trim().is_empty());
    let mut out = format!("- {}\n", lines.next().unwrap_or(""));
    for line in lines {
        let _ = writeln!(out, "  {}", line.trim_start());
    }
    out
}

/// A table cell: backslashes and pipes are escaped (GFM splits rows on unescaped pipes) and
/// line breaks become `<br>`, so the text can never add or remove a column.
fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let text = s.trim().replace("\r\n", "\n").replace('\r', "\n");
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
    if out.is_empty() { "—".into() } else { out }
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Center,
    Right,
}

fn table(headers: &[&str], align: &[Align], rows: Vec<Vec<String>>) -> String {
    let mut out = format!("| {} |\n|", headers.join(" | "));
    for a in align {
        out.push_str(match a {
            Align::Left => ":-----|",
            Align::Center => ":----:|",
            Align::Right => "-----:|",
        });
    }
    out.push('\n');
    for row in rows {
        let cells: Vec<String> = (0..headers.len()).map(|i| cell(row.get(i).map_or("", String::as_str))).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

fn steps_table(steps: &[StepRecord]) -> String {
    if steps.is_empty() {
        return "_No steps ran._\n".into();
    }
    let rows = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            vec![(i + 1).to_string(), s.name.clone(), step_badge(s.status).into(), human_duration(s.duration_ms), s.detail.clone()]
        })
        .collect();
    table(&["Step", "Action", "Status", "Duration", "Detail"], &[Align::Left, Align::Left, Align::Center, Align::Center, Align::Left], rows)
}

/// Text safe inside a Mermaid timeline line. Its lexer ends a period at `:` or `#`, starts an
/// event at `: `, treats `%%` as a comment and `;` as a statement end in older versions; and a
/// backtick run could close the Markdown fence. Colons become the look-alike `∶` (U+2236).
fn mermaid_text(s: &str) -> String {
    let text = inline(s).replace(':', "∶").replace('#', "＃").replace(';', ",").replace('`', "'");
    let mut text = text;
    while text.contains("%%") {
        text = text.replace("%%", "%");
    }
    let text = text.trim().to_owned();
    if text.is_empty() { "-".into() } else { text }
}

/// The run's steps as a Mermaid timeline, one period per step start time (`HH∶MM∶SS`: a real
/// colon would end the period), plus the rollback when no step stands for it.
fn timeline(title: &str, run: &RunRecord) -> String {
    let mut events: Vec<(String, String)> = run
        .steps
        .iter()
        .map(|s| (clock(&s.started_at), format!("{} {} ({})", s.name, step_badge(s.status), human_duration(s.duration_ms))))
        .collect();
    let rollback_step = run.steps.iter().any(|s| s.name.to_ascii_lowercase().starts_with("rollback"));
    if let Some(rb) = run.rollback.as_ref().filter(|_| !rollback_step) {
        // `at` is when the rollback finished; it started `duration_ms` before.
        let started = parse_time(&rb.at)
            .map(|t| t - chrono::Duration::milliseconds(i64::try_from(rb.duration_ms).unwrap_or(0)))
            .map_or_else(|| clock(&rb.at), |t| t.format("%H∶%M∶%S").to_string());
        let from = rb.from_version.as_deref().unwrap_or("unknown");
        events.push((started, format!("rollback {from} → {} ({})", rb.to_version, human_duration(rb.duration_ms))));
    }
    if events.is_empty() {
        events.push((clock(&run.started_at), format!("run recorded, {}", run.status.as_str())));
    }
    let mut out = format!("```mermaid\ntimeline\n    title {}\n", mermaid_text(title));
    for (period, event) in events {
        let _ = writeln!(out, "    {} : {}", mermaid_text(&period), mermaid_text(&event));
    }
    out.push_str("```\n");
    out
}

// ----- Times and durations -----

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// `2026-01-30 14:30:05 UTC`, or the text as recorded when it is not RFC 3339.
fn human_time(s: &str) -> String {
    parse_time(s).map_or_else(|| inline(s), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// A time of day for a timeline period, with ratio signs instead of colons (see `timeline`).
fn clock(s: &str) -> String {
    parse_time(s).map_or_else(|| "--∶--∶--".into(), |t| t.format("%H∶%M∶%S").to_string())
}

/// `850 ms`, `3.2s`, `2m 05s`, `1h 02m`.
pub fn human_duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => {
            let tenths = ms / 100;
            if tenths.is_multiple_of(10) { format!("{}s", tenths / 10) } else { format!("{}.{}s", tenths / 10, tenths % 10) }
        }
        60_000..=3_599_999 => format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60),
        _ => format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Environment, RunId, Strategy};
    use crate::gate::{Counts, Finding};
    use crate::pipeline::State;
    use crate::run::{RollbackInfo, RunError};

    fn step(name: &str, status: StepStatus, at: &str, ms: u64, detail: &str) -> StepRecord {
        StepRecord { name: name.into(), status, started_at: at.into(), duration_ms: ms, detail: detail.into() }
    }

    fn check(name: &str, status: Option<u16>, ms: u64, passed: bool, detail: &str) -> CheckResult {
        CheckResult {
            name: name.into(),
            url: format!("http://127.0.0.1:8802/{name}"),
            status,
            latency_ms: ms,
            passed,
            slow: false,
            detail: detail.into(),
        }
    }

    fn gate(decision: Decision, counts: Counts, findings: Vec<Finding>, reasons: &[&str]) -> GateResult {
        GateResult {
            decision,
            counts,
            needs_confirmation: false,
            reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
            findings,
            sources: Vec::new(),
            skipped: false,
            checked_at: "2026-01-30T14:29:50Z".into(),
        }
    }

    /// A production deploy that shipped and verified.
    fn succeeded() -> RunRecord {
        RunRecord {
            run_id: RunId::parse("r20260130t143000-a1b2c3", "run_id").unwrap(),
            kind: RunKind::Production,
            env: Environment::Production,
            project: "shop".into(),
            platform: "local".into(),
            commit: Some("abc1234def5678901234567890abcdef12345678".into()),
            version: Some("abc1234".into()),
            strategy: Some(Strategy::BlueGreen),
            status: RunStatus::Succeeded,
            state: State::Verified,
            started_at: "2026-01-30T14:30:00Z".into(),
            finished_at: Some("2026-01-30T14:31:05Z".into()),
            duration_ms: 65_000,
            pid: 4242,
            steps: vec![
                step("gate", StepStatus::Passed, "2026-01-30T14:30:00Z", 800, "proceed"),
                step("migrate", StepStatus::Passed, "2026-01-30T14:30:01Z", 3_000, "2 migrations applied"),
                step("deploy", StepStatus::Passed, "2026-01-30T14:30:04Z", 41_000, "abc1234 live on port 40001"),
                step("verify", StepStatus::Passed, "2026-01-30T14:30:45Z", 20_000, "healthy: all 2 checks passed"),
            ],
            gate: Some(gate(
                Decision::Proceed,
                Counts { critical: 0, high: 0, medium: 2, low: 0 },
                Vec::new(),
                &["no CRITICAL findings, HIGH within limits"],
            )),
            previous_version: Some("9f8e7d6".into()),
            direct: false,
            dry_run: false,
            confirmed_by: Some("elicitation".into()),
            smoke: vec![check("home", Some(200), 30, true, "status 200 (expected 2xx); body contains `<html`")],
            health: vec![
                check("home", Some(200), 45, true, "status 200 (expected 200); latency 45 ms (max 500 ms)"),
                check("api", Some(200), 120, true, "status 200 (expected 2xx); latency 120 ms (warn above 2000 ms)"),
            ],
            rollback: None,
            error: None,
            notes: Vec::new(),
        }
    }

    /// The same deploy, unhealthy after the switch and rolled back by oc-deploy.
    fn rolled_back() -> RunRecord {
        let mut run = succeeded();
        run.status = RunStatus::RolledBack;
        run.state = State::RolledBack;
        run.finished_at = Some("2026-01-30T14:31:45Z".into());
        run.duration_ms = 105_000;
        run.steps[3] = step("verify", StepStatus::Failed, "2026-01-30T14:30:45Z", 35_000, "unhealthy: 1 of 2 checks failed");
        run.steps.push(step("rollback", StepStatus::Passed, "2026-01-30T14:31:20Z", 2_000, "switched back to 9f8e7d6"));
        run.steps.push(step("health-after-rollback", StepStatus::Passed, "2026-01-30T14:31:22Z", 300, "healthy"));
        run.health = vec![
            check("home", Some(200), 45, true, "status 200 (expected 200); latency 45 ms (max 500 ms)"),
            check("api", Some(503), 12, false, "expected 200, got 503; latency 12 ms (warn above 2000 ms)"),
        ];
        run.rollback = Some(RollbackInfo {
            from_version: Some("abc1234".into()),
            to_version: "9f8e7d6".into(),
            reason: "health check failed twice: unhealthy: 1 of 2 checks failed".into(),
            automatic: true,
            at: "2026-01-30T14:31:22Z".into(),
            duration_ms: 2_000,
        });
        run.error = Some(RunError {
            code: "health_check_failed".into(),
            message: "production was unhealthy after the deploy".into(),
            hint: "fix the release and deploy again through staging".into(),
        });
        run
    }

    /// Stopped by the gate: a CRITICAL finding.
    fn blocked() -> RunRecord {
        let mut run = succeeded();
        run.status = RunStatus::Blocked;
        run.state = State::Blocked;
        run.finished_at = Some("2026-01-30T14:30:01Z".into());
        run.duration_ms = 1_200;
        run.steps = vec![step("gate", StepStatus::Failed, "2026-01-30T14:30:00Z", 1_200, "block: 1 CRITICAL finding(s)")];
        run.gate = Some(gate(
            Decision::Block,
            Counts { critical: 1, high: 2, medium: 0, low: 3 },
            vec![
                Finding {
                    source: "oc-security-auditor".into(),
                    severity: Severity::Critical,
                    title: "SQL injection in /search".into(),
                    fix: Some("use bound parameters".into()),
                },
                Finding { source: "bin/audit".into(), severity: Severity::Low, title: "outdated banner".into(), fix: None },
            ],
            &["1 CRITICAL finding(s): must fix before deploy"],
        ));
        run.confirmed_by = None;
        run.smoke.clear();
        run.health.clear();
        run
    }

    /// Shipped straight to production without staging, approved by a token.
    fn direct() -> RunRecord {
        let mut run = succeeded();
        run.direct = true;
        run.confirmed_by = Some("token".into());
        run.notes = vec!["deployed with direct: true (hotfix)".into()];
        run
    }

    /// Splits a Markdown table row into cells the way GFM does: on pipes not escaped by `\`.
    fn cell_count(line: &str) -> usize {
        let mut count = 0usize;
        let mut chars = line.trim().chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '|' => count += 1,
                _ => {}
            }
        }
        count.saturating_sub(1)
    }

    /// Every table in `md` has rows of the same width as its header.
    #[track_caller]
    fn assert_tables_well_formed(md: &str) {
        let mut width = None;
        for line in md.lines() {
            if line.starts_with('|') {
                let n = cell_count(line);
                match width {
                    None => width = Some(n),
                    Some(w) => assert_eq!(n, w, "row has {n} cells, header has {w}: {line}\n\n{md}"),
                }
                assert!(line.trim_end().ends_with('|'), "{line}");
            } else {
                width = None;
            }
        }
    }

    /// The Mermaid block is fenced, declares a timeline, and every line lexes as a title or a
    /// `period : event` (no colon or `#` in the period, no `: ` or `%%` in the event).
    #[track_caller]
    fn assert_mermaid_well_formed(md: &str) -> String {
        let start = md.find("```mermaid\n").expect("a mermaid block");
        let rest = &md[start..];
        let end = rest[3..].find("```").expect("a closing fence") + 3;
        let block = &rest[..end + 3];
        assert!(block.starts_with("```mermaid\ntimeline\n"), "{block}");
        assert!(block.ends_with("\n```"), "{block}");
        let body: Vec<&str> = block.lines().skip(2).take_while(|l| *l != "```").collect();
        assert!(body[0].trim_start().starts_with("title "), "{block}");
        assert!(body.len() >= 2, "at least one event: {block}");
        for line in &body[1..] {
            let (period, event) = line.trim().split_once(" : ").unwrap_or_else(|| panic!("not `period : event`: {line}"));
            assert!(!period.is_empty() && !period.contains([':', '#', '\n']), "bad period in {line}");
            assert!(!event.contains(": ") && !event.contains("%%") && !event.contains('`'), "bad event in {line}");
        }
        for line in &body {
            assert!(!line.contains("%%") && !line.contains('`'), "{line}");
        }
        block.to_owned()
    }

    #[track_caller]
    fn assert_has(md: &str, needle: &str) {
        assert!(md.contains(needle), "missing `{needle}` in:\n{md}");
    }

    #[test]
    fn a_successful_deploy_reads_like_the_template() {
        let md = render(&succeeded(), ReportKind::Deployment);
        assert!(md.starts_with("# Deployment Report: abc1234 → production\n"), "{md}");
        for needle in [
            "## Summary\n**Action**: Production Deploy  \n",
            "**Version**: abc1234  \n",
            "**Commit**: abc1234def5678901234567890abcdef12345678  \n",
            "**Strategy**: blue-green  \n",
            "**Status**: ✅ SUCCESS  \n",
            "**Duration**: 1m 05s  \n",
            "**Started**: 2026-01-30 14:30:00 UTC  \n",
            "**Completed**: 2026-01-30 14:31:05 UTC  \n",
            "- [x] Security gate passed: proceed (0 critical, 0 high, 2 medium, 0 low)",
            "- [x] Staging verified for this commit (abc1234)",
            "- [x] Previous version recorded: 9f8e7d6 (the rollback target)",
            "- [x] Human confirmation: given (elicitation)",
            "| Step | Action | Status | Duration | Detail |",
            "| 2 | migrate | ✅ passed | 3s | 2 migrations applied |",
            "| 3 | deploy | ✅ passed | 41s | abc1234 live on port 40001 |",
            "_From the post-deploy health checks._",
            "| home | status 200, ≤ 500 ms | 200 in 45 ms | ✅ |",
            "| api | status 2xx, < 2000 ms (warning) | 200 in 120 ms | ✅ |",
            "**Previous Version**: 9f8e7d6  \n",
            "**Rollback Command**: `oc-deploy rollback --env production --to-version 9f8e7d6 --reason \"…\"`",
            "**Rollback Triggered**: No\n",
            "## Issues & Notes\n- None\n",
            "    14∶30∶01 : migrate ✅ passed (3s)",
        ] {
            assert_has(&md, needle);
        }
        assert!(!md.contains("- [ ]"), "nothing is missing from this checklist:\n{md}");
        assert_tables_well_formed(&md);
        let block = assert_mermaid_well_formed(&md);
        assert_has(&block, "title Deploy abc1234 to production (succeeded)");
    }

    #[test]
    fn an_automatic_rollback_shows_in_both_reports() {
        let run = rolled_back();
        assert_eq!(ReportKind::for_run(&run), ReportKind::Incident);
        let md = render(&run, ReportKind::Deployment);
        for needle in [
            "**Status**: ⚠️ ROLLBACK",
            "**Rollback Triggered**: Yes — health check failed twice: unhealthy: 1 of 2 checks failed",
            "**Rolled Back**: abc1234 → 9f8e7d6, automatic (oc-deploy, after failed health checks), took 2s",
            "| 4 | verify | ❌ failed | 35s | unhealthy: 1 of 2 checks failed |",
            "| api | status 200, < 2000 ms (warning) | 503 in 12 ms — expected 200, got 503 | ❌ |",
            "- ❌ Check api failed (http://127.0.0.1:8802/api): expected 200, got 503",
            "- ❌ Error health_check_failed: production was unhealthy after the deploy\n  hint: fix the release and deploy again through staging\n",
        ] {
            assert_has(&md, needle);
        }
        assert_tables_well_formed(&md);
        assert_mermaid_well_formed(&md);

        let md = render(&run, ReportKind::Incident);
        assert!(md.starts_with("# Incident Report: production rolled back to 9f8e7d6\n"), "{md}");
        for needle in [
            "## What happened\n**Run**: r20260130t143000-a1b2c3 (Production Deploy)",
            "**Status**: ⚠️ ROLLBACK",
            "- abc1234 was deployed to production with the blue-green strategy.",
            "- 1 check(s) failed after the deploy: api.",
            "- oc-deploy rolled back automatically to 9f8e7d6: health check failed twice",
            "## Impact window\n**From**: 2026-01-30 14:30:45 UTC (step verify found the first failure)  \n",
            "**To**: 2026-01-30 14:31:22 UTC (rollback to 9f8e7d6 finished)  \n",
            "**Length**: 37s\n",
            "| Check | Phase | URL | Status | Latency | Detail |",
            "| api | health | http://127.0.0.1:8802/api | 503 | 12 ms | expected 200, got 503; latency 12 ms (warn above 2000 ms) |",
            "## Rollback details\n**From**: abc1234  \n**To**: 9f8e7d6  \n**Trigger**: automatic",
            "- [ ] Find the root cause of “api: expected 200, got 503",
            "- [ ] Revert the migration of step migrate if the old version cannot run on the new schema: D1 migrations are forward-only",
            "- [ ] Confirm production is healthy on 9f8e7d6",
            "- [ ] Re-deploy the fix through staging",
        ] {
            assert_has(&md, needle);
        }
        assert_tables_well_formed(&md);
        let block = assert_mermaid_well_formed(&md);
        assert_has(&block, "title production rolled back to 9f8e7d6");
        // The rollback is a step of its own here, so it is not added a second time.
        assert_has(&block, "    14∶31∶20 : rollback ✅ passed (2s)");
        assert!(!block.contains("rollback abc1234 → 9f8e7d6"), "{block}");
    }

    #[test]
    fn a_rollback_without_a_step_of_its_own_is_added_to_the_timeline() {
        let mut run = rolled_back();
        run.steps.retain(|s| s.name != "rollback");
        let block = assert_mermaid_well_formed(&render(&run, ReportKind::Incident));
        // It finished at 14:31:22 after 2 s, so it started at 14:31:20.
        assert_has(&block, "    14∶31∶20 : rollback abc1234 → 9f8e7d6 (2s)");
    }

    #[test]
    fn a_failed_deploy_without_rollback_is_an_open_incident() {
        let mut run = rolled_back();
        run.status = RunStatus::Failed;
        run.state = State::Failed;
        run.rollback = None;
        run.steps.truncate(4);
        run.steps[1].status = StepStatus::Skipped;
        let md = render(&run, ReportKind::Incident);
        for needle in [
            "# Incident Report: production deploy failed\n",
            "**Status**: ❌ FAILED",
            "- No rollback happened: abc1234 may still be serving. Roll back to 9f8e7d6 with oc-deploy rollback --env production --to-version 9f8e7d6.",
            "**To**: open — no rollback was recorded",
            "**Length**: unknown",
            "**Rollback Triggered**: No  \n**Rollback Command**: `oc-deploy rollback --env production --to-version 9f8e7d6",
            "- [x] No database migration ran in this run: nothing to revert",
        ] {
            assert_has(&md, needle);
        }
        assert!(!md.contains("Confirm production is healthy"), "{md}");
        assert_mermaid_well_formed(&md);
    }

    #[test]
    fn a_blocked_deploy_names_the_blocking_findings() {
        let run = blocked();
        assert_eq!(ReportKind::for_run(&run), ReportKind::Deployment);
        let md = render(&run, ReportKind::Deployment);
        for needle in [
            "**Status**: 🚫 BLOCKED",
            "- [ ] Security gate: blocked (1 critical, 2 high, 0 medium, 3 low) — 1 CRITICAL finding(s): must fix before deploy",
            "- [ ] Staging verified for this commit: not checked (the run stopped at the gate)",
            "- [ ] Human confirmation: not given",
            "| 1 | gate | ❌ failed | 1.2s | block: 1 CRITICAL finding(s) |",
            "_No health checks were recorded for this run._",
            "- CRITICAL (oc-security-auditor): SQL injection in /search — fix: use bound parameters",
        ] {
            assert_has(&md, needle);
        }
        assert!(!md.contains("outdated banner"), "LOW findings are not issues of the report");
        assert_tables_well_formed(&md);
        assert_mermaid_well_formed(&md);
    }

    #[test]
    fn a_direct_deploy_is_flagged() {
        let md = render(&direct(), ReportKind::Deployment);
        assert_has(&md, "- [ ] Staging verified for this commit: no — direct deploy (staging skipped) — flagged");
        assert_has(&md, "- [x] Human confirmation: given (token)");
        assert_has(&md, "- deployed with direct: true (hotfix)\n");
        assert_has(&md, "- ⚠️ Direct deploy: production shipped without a verified staging run for this commit.");
        assert!(!md.contains("- None"), "{md}");
    }

    #[test]
    fn every_status_has_its_badge_and_checklist_wording() {
        for (status, badge) in [
            (RunStatus::ConfirmationRequired, "⏸ CONFIRMATION REQUIRED"),
            (RunStatus::Declined, "✋ DECLINED"),
            (RunStatus::Cancelled, "⛔ CANCELLED"),
            (RunStatus::Failed, "❌ FAILED"),
        ] {
            let mut run = succeeded();
            run.status = status;
            run.confirmed_by = None;
            let md = render(&run, ReportKind::Deployment);
            assert_has(&md, &format!("**Status**: {badge}  \n"));
            match status {
                RunStatus::ConfirmationRequired => assert_has(&md, "- [ ] Human confirmation: awaiting"),
                RunStatus::Declined => assert_has(&md, "- [ ] Human confirmation: declined"),
                _ => assert_has(&md, "- [ ] Human confirmation: not given"),
            }
        }
        let mut run = succeeded();
        run.confirmed_by = Some("auto-approve".into());
        assert_has(&render(&run, ReportKind::Deployment), "- [ ] Human confirmation: none — auto-approved by configuration");

        let mut staging = succeeded();
        staging.kind = RunKind::Staging;
        staging.env = Environment::Staging;
        staging.confirmed_by = None;
        staging.previous_version = None;
        staging.dry_run = true;
        let md = render(&staging, ReportKind::Deployment);
        assert_has(&md, "# Deployment Report: abc1234 → staging");
        assert_has(&md, "**Action**: Staging Deploy (dry run: nothing was changed)");
        assert_has(&md, "- [x] Human confirmation: not required for staging");
        assert_has(&md, "**Rollback Command**: none — no previous version was recorded");
    }

    #[test]
    fn pipes_and_newlines_in_details_cannot_break_a_table_row() {
        let mut run = rolled_back();
        run.steps[2].detail = "wrangler said: a | b\nsecond line | c\r\nthird \\| escaped".into();
        run.steps[2].name = "deploy|api".into();
        run.health[1].detail = "expected 200, got 503; body | was\n<html>".into();
        run.health[1].name = "a|b".into();
        run.notes = vec!["multi\nline | note".into()];
        for kind in [ReportKind::Deployment, ReportKind::Incident] {
            let md = render(&run, kind);
            assert_tables_well_formed(&md);
            assert_mermaid_well_formed(&md);
        }
        let md = render(&run, ReportKind::Deployment);
        assert_has(&md, "| 3 | deploy\\|api | ✅ passed | 41s | wrangler said: a \\| b<br>second line \\| c<br>third \\\\\\| escaped |");
        assert_has(&md, "- multi\n  line | note\n");
    }

    #[test]
    fn mermaid_survives_hostile_step_names() {
        let mut run = succeeded();
        run.steps = vec![
            step("deploy: api", StepStatus::Passed, "2026-01-30T14:30:00Z", 10, ""),
            step("%%{init: x}%% # not a comment ; done", StepStatus::Warned, "2026-01-30T14:30:01Z", 10, ""),
            step("close ``` fence\nand newline", StepStatus::Failed, "not a time", 10, ""),
        ];
        run.version = Some("v1: `x`".into());
        let block = assert_mermaid_well_formed(&render(&run, ReportKind::Deployment));
        assert_has(&block, "14∶30∶00 : deploy∶ api ✅ passed (10 ms)");
        assert_has(&block, "--∶--∶-- : close ''' fence and newline ❌ failed (10 ms)");

        let mut empty = succeeded();
        empty.steps.clear();
        let md = render(&empty, ReportKind::Deployment);
        assert_has(&md, "_No steps ran._");
        assert_has(&assert_mermaid_well_formed(&md), "14∶30∶00 : run recorded, succeeded");
    }

    #[test]
    fn report_kind_and_durations() {
        assert_eq!(serde_json::to_value(ReportKind::Incident).unwrap(), "incident");
        assert_eq!(serde_json::from_str::<ReportKind>("\"deployment\"").unwrap(), ReportKind::Deployment);
        assert_eq!(ReportKind::for_run(&succeeded()), ReportKind::Deployment);
        let mut manual = succeeded();
        manual.kind = RunKind::Rollback;
        assert_eq!(ReportKind::for_run(&manual), ReportKind::Incident);
        for (ms, want) in [(0, "0 ms"), (850, "850 ms"), (1_000, "1s"), (3_250, "3.2s"), (65_000, "1m 05s"), (3_725_000, "1h 02m")] {
            assert_eq!(human_duration(ms), want);
        }
    }
}
