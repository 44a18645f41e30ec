//! The inputs of the pre-deploy gate: the auditor skills' checkpoints (read tolerantly, with
//! their freshness) and the project's own audit command. `gate::decide` turns what is gathered
//! here into a verdict; the accepted checkpoint shapes are documented in `docs/checkpoints.md`.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::config::AuditConfig;
use crate::error::{CoreError, Result};
use crate::gate::{self, Counts, Decision, Finding, GateInput, GateResult, Severity, SourceStatus};
use crate::process::{Cmd, Runner};

/// The code-level auditor skill (SQL injection, hard-coded secrets, …).
pub const CODE_AUDITOR: &str = "oc-code-auditor";
/// The posture auditor skill (threat model, hardening).
pub const SECURITY_AUDITOR: &str = "oc-security-auditor";
/// The skill reuses an oc-code-auditor checkpoint younger than one hour.
pub const CODE_AUDIT_FRESH_SECONDS: i64 = 60 * 60;
/// The skill reuses an oc-security-auditor checkpoint younger than one day.
pub const SECURITY_AUDIT_FRESH_SECONDS: i64 = 24 * 60 * 60;
/// How long the project's audit command may run when `audit.timeout_seconds` is not set.
pub const DEFAULT_AUDIT_TIMEOUT_SECONDS: u64 = 600;
/// The project's own audit script, used when `audit.command` is not set.
pub const BIN_AUDIT: &str = "bin/audit";

/// A checkpoint larger than this is not a checkpoint; refusing it keeps a stray file from
/// eating memory.
const MAX_CHECKPOINT_BYTES: u64 = 8 * 1024 * 1024;
/// Findings listed per source; counts still include every finding.
const MAX_LISTED_FINDINGS: usize = 100;
/// Lines of the audit command's output kept as the fix of its finding.
const FAILURE_TAIL_LINES: usize = 15;

/// Where the objects holding counts by severity may live, in the order they are tried.
const COUNT_FIELDS: &[&[&str]] =
    &[&["skill_state", "findings_by_severity"], &["skill_state", "counts"], &["findings_by_severity"], &["counts"], &["summary"]];

/// What an auditor's checkpoint says, once read.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditorCheckpoint {
    /// When the audit ran; `None` when the checkpoint does not say (then it counts as stale).
    pub updated_at: Option<DateTime<Utc>>,
    pub counts: Counts,
    /// The findings listed in a `findings` array, most severe first.
    pub findings: Vec<Finding>,
    /// Which field the counts came from (`skill_state.counts`, `findings[]`, …).
    pub counts_from: String,
}

/// Parses the text of another skill's checkpoint. The error says, in a sentence, why the file
/// cannot be used.
pub fn parse_auditor_checkpoint(skill: &str, text: &str) -> std::result::Result<AuditorCheckpoint, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(top) = value else {
        return Err("not a JSON object".into());
    };
    let updated_at = read_updated_at(&top)?;

    // The counts object, when the checkpoint has one.
    let mut from_object: Option<(String, Counts)> = None;
    for path in COUNT_FIELDS {
        if let Some(Value::Object(obj)) = lookup(&top, path)
            && let Some(counts) = counts_from_object(obj, &path.join("."))?
        {
            from_object = Some((path.join("."), counts));
            break;
        }
    }

    // The findings array, top level first, then inside skill_state.
    let array = match (top.get("findings"), lookup(&top, &["skill_state", "findings"])) {
        (Some(Value::Array(a)), _) => Some(("findings[]", a)),
        (_, Some(Value::Array(a))) => Some(("skill_state.findings[]", a)),
        _ => None,
    };
    let (mut findings, array_counts) = match array {
        Some((_, entries)) => findings_from_array(skill, entries),
        None => (Vec::new(), Counts::default()),
    };
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));

    let (counts_from, counts) = match (from_object, array) {
        // Both present: the summary object is the skill's own count, but a finding it lists
        // must never be dropped from the total, so each severity takes the larger number.
        (Some((field, c)), Some((array_field, _))) => (
            format!("{field} (and {array_field})"),
            Counts {
                critical: c.critical.max(array_counts.critical),
                high: c.high.max(array_counts.high),
                medium: c.medium.max(array_counts.medium),
                low: c.low.max(array_counts.low),
            },
        ),
        (Some((field, c)), None) => (field, c),
        (None, Some((array_field, _))) => (array_field.to_owned(), array_counts),
        (None, None) => {
            return Err("no finding counts: expected skill_state.findings_by_severity, skill_state.counts, \
                        findings_by_severity, counts or summary (an object of critical/high/medium/low), \
                        or a findings array"
                .into());
        }
    };
    Ok(AuditorCheckpoint { updated_at, counts, findings, counts_from })
}

fn lookup<'a>(top: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(top.get(*first)?, |v, key| v.get(*key))
}

/// `updated_at` at the top level, else in `skill_state`.
fn read_updated_at(top: &Map<String, Value>) -> std::result::Result<Option<DateTime<Utc>>, String> {
    let (field, value) = match (top.get("updated_at"), lookup(top, &["skill_state", "updated_at"])) {
        (Some(v), _) if !v.is_null() => ("updated_at", v),
        (_, Some(v)) if !v.is_null() => ("skill_state.updated_at", v),
        _ => return Ok(None),
    };
    parse_time(value).map(Some).ok_or_else(|| format!("`{field}` is not an RFC 3339 time: {value}"))
}

/// RFC 3339 is the contract; a time without offset is read as UTC, and a number as Unix
/// seconds (or milliseconds when it is too large to be seconds), because some writers do that.
fn parse_time(value: &Value) -> Option<DateTime<Utc>> {
    match value {
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Some(t.with_timezone(&Utc));
            }
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
                .map(|t| t.and_utc())
        }
        Value::Number(n) => {
            let n = n.as_i64()?;
            if n > 100_000_000_000 { DateTime::from_timestamp_millis(n) } else { DateTime::from_timestamp(n, 0) }
        }
        _ => None,
    }
}

fn severity_of(name: &str) -> Option<Severity> {
    match name.trim().to_ascii_lowercase().as_str() {
        "critical" => Some(Severity::Critical),
        "high" => Some(Severity::High),
        // npm audit says "moderate" for medium.
        "medium" | "moderate" => Some(Severity::Medium),
        "low" => Some(Severity::Low),
        _ => None,
    }
}

fn bump(counts: &mut Counts, severity: Severity, by: u32) {
    let slot = match severity {
        Severity::Critical => &mut counts.critical,
        Severity::High => &mut counts.high,
        Severity::Medium => &mut counts.medium,
        Severity::Low => &mut counts.low,
    };
    *slot = slot.saturating_add(by);
}

/// Reads an object of counts by severity. An empty object is zero findings (what a writer
/// that counts an empty list produces); `None` when it has keys but no severity among them
/// (then it is something else that shares the name, like `summary: {"grade": "A"}`).
fn counts_from_object(obj: &Map<String, Value>, field: &str) -> std::result::Result<Option<Counts>, String> {
    let mut counts = Counts::default();
    let mut any = false;
    for (key, value) in obj {
        let Some(severity) = severity_of(key) else { continue };
        any = true;
        // A value that is not a count is an error, not a zero: a misread CRITICAL must not pass.
        let n = count_value(value).ok_or_else(|| format!("`{field}.{key}` is not a count: {value}"))?;
        bump(&mut counts, severity, n);
    }
    Ok((any || obj.is_empty()).then_some(counts))
}

fn count_value(value: &Value) -> Option<u32> {
    let n = match value {
        Value::Number(n) => match n.as_u64() {
            Some(n) => n,
            None => {
                let f = n.as_f64()?;
                if f < 0.0 || f.fract() != 0.0 {
                    return None;
                }
                f as u64
            }
        },
        Value::String(s) => s.trim().parse::<u64>().ok()?,
        Value::Null => 0,
        _ => return None,
    };
    Some(u32::try_from(n).unwrap_or(u32::MAX))
}

fn text_field(entry: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| entry.get(*n).and_then(Value::as_str)).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// Counts a `findings` array by severity and turns its entries into gate findings. Entries
/// without a known severity (`info`, strings, …) are not counted.
fn findings_from_array(skill: &str, entries: &[Value]) -> (Vec<Finding>, Counts) {
    let mut counts = Counts::default();
    let mut findings = Vec::new();
    for entry in entries {
        let Value::Object(entry) = entry else { continue };
        let Some(severity) = entry.get("severity").and_then(Value::as_str).and_then(severity_of) else { continue };
        bump(&mut counts, severity, 1);
        let mut title = text_field(entry, &["title", "message", "rule", "id"]).unwrap_or_else(|| "(untitled finding)".into());
        if let Some(file) = text_field(entry, &["file", "path", "location"]) {
            match entry.get("line").and_then(Value::as_u64) {
                Some(line) => title.push_str(&format!(" ({file}:{line})")),
                None => title.push_str(&format!(" ({file})")),
            }
        }
        let fix = text_field(entry, &["fix", "remediation", "fix_command", "recommendation"]);
        findings.push(Finding { source: skill.to_owned(), severity, title, fix });
    }
    (findings, counts)
}

/// How to refresh each auditor's checkpoint, as the skill says it.
fn rerun_command(skill: &str) -> &'static str {
    if skill == SECURITY_AUDITOR { "/oc-security pre-deploy" } else { "/oc-audit pre-deploy" }
}

/// A short human age: `45 s`, `12 min`, `3 h`, `2 d`.
pub fn human_age(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// The path of a skill's checkpoint in the project.
pub fn checkpoint_path(root: &Path, skill: &str) -> PathBuf {
    root.join(".checkpoints").join(format!("{skill}.checkpoint.json"))
}

/// One auditor checkpoint as a gate source.
struct CheckpointSource {
    status: SourceStatus,
    findings: Vec<Finding>,
    fresh: bool,
}

fn read_checkpoint_source(root: &Path, skill: &str, fresh_for: i64, now: DateTime<Utc>) -> CheckpointSource {
    let path = checkpoint_path(root, skill);
    let rel = format!(".checkpoints/{skill}.checkpoint.json");
    let status = |status: &str, detail: String| SourceStatus {
        source: skill.to_owned(),
        status: status.to_owned(),
        counts: Counts::default(),
        age_seconds: None,
        detail,
    };
    let unusable = |s: SourceStatus| CheckpointSource { status: s, findings: Vec::new(), fresh: false };

    let text = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return unusable(status("missing", format!("no {rel}: run {} to create it", rerun_command(skill))));
        }
        Err(e) => return unusable(status("unreadable", format!("{rel}: {e}"))),
        Ok(m) if m.len() > MAX_CHECKPOINT_BYTES => {
            return unusable(status("unreadable", format!("{rel} is {} bytes, more than a checkpoint can be", m.len())));
        }
        Ok(_) => match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => return unusable(status("unreadable", format!("{rel}: {e}"))),
        },
    };
    let parsed = match parse_auditor_checkpoint(skill, &text) {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(skill, %why, "auditor checkpoint unreadable");
            return unusable(status("unreadable", format!("{rel}: {why}; re-run {}", rerun_command(skill))));
        }
    };

    let limit = human_age(fresh_for);
    let counts_text = format_counts(parsed.counts);
    let (state, age, fresh, detail) = match parsed.updated_at {
        None => (
            "stale",
            None,
            false,
            format!("{counts_text} (from {}); no updated_at, so its age is unknown: re-run {}", parsed.counts_from, rerun_command(skill)),
        ),
        Some(at) => {
            // A time in the future (clock skew) counts as just now.
            let age = (now - at).num_seconds().max(0);
            if age < fresh_for {
                (
                    "fresh",
                    Some(age),
                    true,
                    format!("{counts_text} (from {}); updated {} ago, fresh for {limit}", parsed.counts_from, human_age(age)),
                )
            } else {
                (
                    "stale",
                    Some(age),
                    false,
                    format!(
                        "{counts_text} (from {}); updated {} ago, older than {limit}: re-run {} (its findings still count)",
                        parsed.counts_from,
                        human_age(age),
                        rerun_command(skill)
                    ),
                )
            }
        }
    };
    let mut findings = parsed.findings;
    let mut detail = detail;
    if findings.len() > MAX_LISTED_FINDINGS {
        detail.push_str(&format!("; {} findings listed, the first {MAX_LISTED_FINDINGS} shown", findings.len()));
        findings.truncate(MAX_LISTED_FINDINGS);
    }
    CheckpointSource {
        status: SourceStatus { source: skill.to_owned(), status: state.to_owned(), counts: parsed.counts, age_seconds: age, detail },
        findings,
        fresh,
    }
}

fn format_counts(c: Counts) -> String {
    format!("{} CRITICAL, {} HIGH, {} MEDIUM, {} LOW", c.critical, c.high, c.medium, c.low)
}

/// Whether a file is a regular file someone may execute.
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What the gate shows for one audit command and its findings.
type CommandResult = (SourceStatus, Vec<Finding>);

fn command_status(source: &str, status: &str, counts: Counts, detail: String) -> SourceStatus {
    SourceStatus { source: source.to_owned(), status: status.to_owned(), counts, age_seconds: None, detail }
}

/// Runs one audit command. A failure (non-zero exit, timeout, missing program) is a HIGH
/// finding titled after `subject`, its fix the tail of the (redacted) output; only a
/// cancellation is an error. `shown` is the command as the user knows it; exit codes in
/// `also_ok` count as passing, with the reason given.
async fn run_check(
    cmd: Cmd,
    source: String,
    subject: &str,
    shown: &str,
    also_ok: &[(i32, &str)],
    runner: &Runner,
    cancel: &CancellationToken,
) -> Result<CommandResult> {
    let failed = |detail: String, title: String, fix: Option<String>| {
        let finding = Finding { source: source.clone(), severity: Severity::High, title, fix };
        (command_status(&source, "failed", Counts { high: 1, ..Counts::default() }, detail), vec![finding])
    };
    match runner.run(&cmd, cancel).await {
        Ok(out) if out.success() => {
            let detail = format!("`{shown}` exited 0 in {:.1} s", out.duration.as_secs_f64());
            Ok((command_status(&source, "passed", Counts::default(), detail), Vec::new()))
        }
        Ok(out) if let Some((code, why)) = also_ok.iter().find(|(c, _)| out.code == Some(*c)) => {
            let detail = format!("`{shown}` exited {code} ({why}) in {:.1} s", out.duration.as_secs_f64());
            Ok((command_status(&source, "passed", Counts::default(), detail), Vec::new()))
        }
        Ok(out) => {
            let exit = match out.code {
                Some(c) => format!("exit {c}"),
                None => "killed by a signal".into(),
            };
            let tail = out.tail(FAILURE_TAIL_LINES);
            let fix = (!tail.trim().is_empty()).then_some(tail);
            Ok(failed(format!("`{shown}` failed ({exit})"), format!("{subject} failed ({exit})"), fix))
        }
        Err(CoreError::Cancelled) => Err(CoreError::Cancelled),
        Err(CoreError::Timeout { seconds, .. }) => Ok(failed(
            format!("`{shown}` timed out after {seconds} s"),
            format!("{subject} timed out after {seconds} s"),
            Some("make the audit faster or raise audit.timeout_seconds in .oc-deploy-ops.json".into()),
        )),
        Err(CoreError::ProgramMissing { program, hint }) => Ok(failed(
            format!("`{shown}` could not start: {program} was not found; {hint}"),
            format!("{subject} could not start: {program} not found"),
            Some(hint),
        )),
        Err(e) => {
            let hint = e.hint();
            Ok(failed(format!("`{shown}` could not run: {e}"), format!("{subject} could not run: {e}"), Some(hint)))
        }
    }
}

/// The source name of `audit.command: []`.
pub const AUDIT_COMMAND_FIELD: &str = "audit.command";

/// Runs the project's audits: `audit.command` when set (`[]` turns them all off), else an
/// executable `bin/audit`, else the commands derived from the project's files
/// ([`derived_audit_commands`]).
async fn project_audits(
    root: &Path,
    audit: &AuditConfig,
    runner: &Runner,
    cancel: &CancellationToken,
    tools: &ToolSearch,
) -> Result<(Vec<SourceStatus>, Vec<Finding>)> {
    let timeout = Duration::from_secs(audit.timeout_seconds.unwrap_or(DEFAULT_AUDIT_TIMEOUT_SECONDS));
    let one = |(status, findings): CommandResult| (vec![status], findings);
    match &audit.command {
        Some(argv) if argv.is_empty() => {
            let detail = format!(
                "{AUDIT_COMMAND_FIELD} is []: the project's audit commands are turned off ({BIN_AUDIT} and the commands derived \
                 from the project's files do not run)"
            );
            return Ok((vec![command_status(AUDIT_COMMAND_FIELD, "disabled", Counts::default(), detail)], Vec::new()));
        }
        Some(argv) => {
            let cmd = Cmd::from_argv(argv, root, AUDIT_COMMAND_FIELD)?.timeout(timeout);
            let (source, shown) = (cmd.program().to_owned(), cmd.display());
            return run_check(cmd, source, "audit command", &shown, &[], runner, cancel).await.map(one);
        }
        None => {}
    }

    let script = root.join(BIN_AUDIT);
    if is_executable(&script) {
        let cmd = Cmd::new(script.to_string_lossy(), root).timeout(timeout);
        let shown = cmd.display();
        return run_check(cmd, BIN_AUDIT.to_owned(), "audit command", &shown, &[], runner, cancel).await.map(one);
    }
    let mut sources = Vec::new();
    let mut findings = Vec::new();
    if script.exists() {
        let detail = format!("{BIN_AUDIT} exists but is not executable: run `chmod +x {BIN_AUDIT}` to use it");
        sources.push(command_status(BIN_AUDIT, "not_configured", Counts::default(), detail));
    }
    let plan = plan_derived(root, tools);
    if plan.is_empty() && sources.is_empty() {
        let detail = format!(
            "no audit command: set audit.command in .oc-deploy-ops.json or add an executable {BIN_AUDIT} (no go.mod, Cargo.toml, \
             Gemfile, Python project file or package.json to derive the audit commands from)"
        );
        sources.push(command_status(BIN_AUDIT, "not_configured", Counts::default(), detail));
    }
    let mut reported_missing: Vec<String> = Vec::new();
    for check in plan {
        if cancel.is_cancelled() {
            return Err(CoreError::Cancelled);
        }
        match check.state {
            DerivedState::Ready(program) => {
                let cmd = Cmd::new(program.to_string_lossy(), root).args(&check.args).timeout(timeout);
                let subject = format!("`{}`", check.shown);
                let (status, found) = run_check(cmd, check.shown.clone(), &subject, &check.shown, check.also_ok, runner, cancel).await?;
                sources.push(status);
                findings.extend(found);
            }
            DerivedState::NotInstalled { tool, hint } => {
                let detail = format!("`{}` not run: {tool} is not installed; {hint}", check.shown);
                // One finding per missing tool, however many commands need it.
                if reported_missing.contains(&tool) {
                    sources.push(command_status(&check.shown, "not_installed", Counts::default(), detail));
                    continue;
                }
                sources.push(command_status(&check.shown, "not_installed", Counts { low: 1, ..Counts::default() }, detail));
                findings.push(Finding {
                    source: check.shown.clone(),
                    severity: Severity::Low,
                    title: format!("not installed: {tool} ({hint})"),
                    fix: Some(hint),
                });
                reported_missing.push(tool);
            }
            DerivedState::Skipped(why) => {
                sources.push(command_status(&check.shown, "skipped", Counts::default(), format!("`{}` not run: {why}", check.shown)));
            }
        }
    }
    Ok((sources, findings))
}

// ---------------------------------------------------------------------------------------------
// Audit commands derived from the project's files (the skill's provider sections)

/// Where the derived audit commands look for their programs: the project's own tool
/// directories first (a virtualenv's `bin`), then `PATH`, then where `cargo install` and
/// `go install` put programs (`~/.cargo/bin`, `~/go/bin`), which are often not on `PATH`.
#[derive(Debug, Clone, Default)]
struct ToolSearch {
    path: Option<OsString>,
    home: Option<PathBuf>,
}

impl ToolSearch {
    fn from_process() -> Self {
        Self { path: std::env::var_os("PATH"), home: std::env::var_os(crate::pack::HOME).filter(|h| !h.is_empty()).map(PathBuf::from) }
    }

    fn find(&self, program: &str, local_dirs: &[PathBuf]) -> Option<PathBuf> {
        let on_path = self.path.iter().flat_map(std::env::split_paths).filter(|d| !d.as_os_str().is_empty());
        let installed = self.home.iter().flat_map(|h| [h.join(".cargo").join("bin"), h.join("go").join("bin")]);
        local_dirs.iter().cloned().chain(on_path).chain(installed).map(|d| d.join(program)).find(|p| is_executable(p))
    }
}

/// Whether a derived audit command can run.
#[derive(Debug, Clone, PartialEq)]
pub enum DerivedState {
    /// Ready, with its program found here.
    Ready(PathBuf),
    /// A tool it needs is not installed: a LOW finding with the install hint, not a failure.
    NotInstalled { tool: String, hint: String },
    /// It does not apply to this project, for this reason.
    Skipped(String),
}

/// One audit command derived from the project's files.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedAudit {
    /// The command as the skill writes it (`go vet ./...`); also its source in the gate.
    pub shown: String,
    /// The arguments after the program.
    pub args: Vec<String>,
    pub state: DerivedState,
    /// Exit codes that mean "nothing to check" rather than a failure.
    also_ok: &'static [(i32, &'static str)],
}

/// pytest's exit code when it collected no tests.
const PYTEST_NO_TESTS: &[(i32, &str)] = &[(5, "no tests collected")];

/// The audit commands the skill's provider sections give for this project, by the files at its
/// root: `go.mod` → `go vet ./...`, `go test ./...`, `govulncheck ./...`; `Cargo.toml` →
/// `cargo clippy -- -D warnings`, `cargo test`, `cargo audit`; `Gemfile` → `bundle exec
/// brakeman` (Rails) and `bundle exec rspec` (when the bundle has rspec); a Python project →
/// `pytest`, and `python manage.py check --deploy` for Django; `package.json` → `npm audit
/// --audit-level=high`. Every ecosystem present contributes (a Rails app with a package.json
/// gets both). Nothing here starts a program.
pub fn derived_audit_commands(root: &Path) -> Vec<DerivedAudit> {
    plan_derived(root, &ToolSearch::from_process())
}

/// Install hints for the tools the derived commands need.
const GO_HINT: &str = "install Go: https://go.dev/doc/install";
const GOVULNCHECK_HINT: &str = "go install golang.org/x/vuln/cmd/govulncheck@latest";
const CARGO_HINT: &str = "install Rust with rustup: https://rustup.rs";
const CLIPPY_HINT: &str = "rustup component add clippy";
const CARGO_AUDIT_HINT: &str = "cargo install cargo-audit --locked";
const BUNDLE_HINT: &str = "gem install bundler";
const BRAKEMAN_HINT: &str = "add `gem \"brakeman\", require: false, group: :development` to the Gemfile, then run `bundle install`";
const PYTEST_HINT: &str = "pip install pytest (in the project's virtualenv)";
const PYTHON_HINT: &str = "install Python 3: https://www.python.org/downloads/";
const NPM_HINT: &str = "install Node.js 20+ (npm comes with it): https://nodejs.org";

/// Files that make a directory a Python project.
const PYTHON_MARKERS: &[&str] = &["manage.py", "pyproject.toml", "requirements.txt", "setup.py", "Pipfile"];

/// A tool a derived command needs: its name, where it was found, how to install it.
type Need<'a> = (&'a str, Option<PathBuf>, &'a str);

/// A derived command: ready when every tool it needs is found (it runs the first), else not
/// installed, naming the first missing tool.
fn derived(shown: &str, args: &[&str], needs: &[Need<'_>], also_ok: &'static [(i32, &'static str)]) -> DerivedAudit {
    let state = match needs.iter().find(|(_, found, _)| found.is_none()) {
        Some((tool, _, hint)) => DerivedState::NotInstalled { tool: (*tool).to_owned(), hint: (*hint).to_owned() },
        None => DerivedState::Ready(needs[0].1.clone().unwrap_or_default()),
    };
    DerivedAudit { shown: shown.to_owned(), args: args.iter().map(|a| (*a).to_owned()).collect(), state, also_ok }
}

fn skipped(shown: &str, args: &[&str], why: String) -> DerivedAudit {
    DerivedAudit {
        shown: shown.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        state: DerivedState::Skipped(why),
        also_ok: &[],
    }
}

fn plan_derived(root: &Path, tools: &ToolSearch) -> Vec<DerivedAudit> {
    let has = |f: &str| root.join(f).is_file();
    let mut plan = Vec::new();
    if has("go.mod") {
        let go = tools.find("go", &[]);
        plan.push(derived("go vet ./...", &["vet", "./..."], &[("go", go.clone(), GO_HINT)], &[]));
        plan.push(derived("go test ./...", &["test", "./..."], &[("go", go, GO_HINT)], &[]));
        plan.push(derived("govulncheck ./...", &["./..."], &[("govulncheck", tools.find("govulncheck", &[]), GOVULNCHECK_HINT)], &[]));
    }

    if has("Cargo.toml") {
        let cargo = tools.find("cargo", &[]);
        // cargo finds its subcommands on PATH and beside itself.
        let beside: Vec<PathBuf> = cargo.iter().filter_map(|c| c.parent().map(Path::to_path_buf)).collect();
        let sub = |name: &str| tools.find(name, &beside);
        let cargo_need = ("cargo", cargo.clone(), CARGO_HINT);
        plan.push(derived(
            "cargo clippy -- -D warnings",
            &["clippy", "--", "-D", "warnings"],
            &[cargo_need.clone(), ("cargo-clippy", sub("cargo-clippy"), CLIPPY_HINT)],
            &[],
        ));
        plan.push(derived("cargo test", &["test"], std::slice::from_ref(&cargo_need), &[]));
        plan.push(derived("cargo audit", &["audit"], &[cargo_need, ("cargo-audit", sub("cargo-audit"), CARGO_AUDIT_HINT)], &[]));
    }

    if has("Gemfile") {
        let gems = [root.join("Gemfile"), root.join("Gemfile.lock")]
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect::<Vec<_>>()
            .join("\n");
        let bundle = tools.find("bundle", &[root.join("bin")]);
        if has_gem(&gems, "rails", false) {
            // brakeman runs through bundle, so "found" only means the bundle has it.
            let brakeman = has_gem(&gems, "brakeman", false).then(PathBuf::new);
            plan.push(derived(
                "bundle exec brakeman",
                &["exec", "brakeman"],
                &[("bundle", bundle.clone(), BUNDLE_HINT), ("brakeman", brakeman, BRAKEMAN_HINT)],
                &[],
            ));
        }
        if has_gem(&gems, "rspec", true) {
            plan.push(derived("bundle exec rspec", &["exec", "rspec"], &[("bundle", bundle, BUNDLE_HINT)], &[]));
        } else {
            plan.push(skipped("bundle exec rspec", &["exec", "rspec"], "the bundle has no rspec (the Gemfile names no rspec gem)".into()));
        }
    }

    if PYTHON_MARKERS.iter().any(|f| has(f)) {
        let venvs = [root.join(".venv").join("bin"), root.join("venv").join("bin")];
        plan.push(derived("pytest", &[], &[("pytest", tools.find("pytest", &venvs), PYTEST_HINT)], PYTEST_NO_TESTS));
        if has("manage.py") {
            let python = tools.find("python", &venvs).or_else(|| tools.find("python3", &venvs));
            plan.push(derived(
                "python manage.py check --deploy",
                &["manage.py", "check", "--deploy"],
                &[("python", python, PYTHON_HINT)],
                &[],
            ));
        }
    }

    if has("package.json") {
        let shown = "npm audit --audit-level=high";
        if has("package-lock.json") || has("npm-shrinkwrap.json") {
            plan.push(derived(shown, &["audit", "--audit-level=high"], &[("npm", tools.find("npm", &[]), NPM_HINT)], &[]));
        } else {
            let why = match ["yarn.lock", "pnpm-lock.yaml", "bun.lockb"].into_iter().find(|f| has(f)) {
                Some(lock) => {
                    format!("the project locks its packages with {lock}, not npm: set audit.command to its package manager's audit")
                }
                None => "npm audit needs a package-lock.json: run `npm install` and commit the lockfile".into(),
            };
            plan.push(skipped(shown, &["audit", "--audit-level=high"], why));
        }
    }
    plan
}

/// Whether a Gemfile or Gemfile.lock names a gem (`gem "brakeman"`, `    brakeman (6.1.0)`);
/// with `family`, also its relatives (`rspec-rails`, `rspec-core` for `rspec`).
fn has_gem(text: &str, name: &str, family: bool) -> bool {
    text.lines().filter(|l| !l.trim_start().starts_with('#')).any(|line| {
        line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .any(|word| word == name || (family && word.strip_prefix(name).is_some_and(|rest| rest.starts_with('-'))))
    })
}

/// Gathers every audit the project has and applies the gate table.
///
/// Staleness policy: a stale checkpoint's findings still count (a known CRITICAL blocks until
/// the audit is re-run), but when neither auditor checkpoint is fresh the gate treats the
/// project as having no audit run, so it warns and asks for both audits to be re-run.
pub async fn evaluate_gate(
    root: &Path,
    audit: &AuditConfig,
    runner: &Runner,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
) -> Result<GateResult> {
    evaluate_gate_with(root, audit, runner, now, cancel, &ToolSearch::from_process()).await
}

async fn evaluate_gate_with(
    root: &Path,
    audit: &AuditConfig,
    runner: &Runner,
    now: DateTime<Utc>,
    cancel: &CancellationToken,
    tools: &ToolSearch,
) -> Result<GateResult> {
    let code = read_checkpoint_source(root, CODE_AUDITOR, CODE_AUDIT_FRESH_SECONDS, now);
    let security = read_checkpoint_source(root, SECURITY_AUDITOR, SECURITY_AUDIT_FRESH_SECONDS, now);
    if cancel.is_cancelled() {
        return Err(CoreError::Cancelled);
    }
    let (command_sources, command_findings) = project_audits(root, audit, runner, cancel, tools).await?;

    let no_audit = !(code.fresh || security.fresh);
    let mut counts = Counts::default();
    for s in [&code.status, &security.status].into_iter().chain(&command_sources) {
        counts.add(s.counts);
    }
    let (decision, needs_confirmation, mut reasons) = gate::decide(&GateInput { counts, no_audit });

    let checkpoints = [&code, &security];
    if decision != Decision::Proceed {
        // Name where the blocking or warning findings are.
        for s in checkpoints.iter().map(|c| &c.status).chain(&command_sources) {
            if s.counts.critical + s.counts.high == 0 {
                continue;
            }
            let when = match (s.status.as_str(), s.age_seconds) {
                ("stale", Some(age)) => format!("stale checkpoint, {} old — its findings still count until it is re-run", human_age(age)),
                ("stale", None) => "stale checkpoint of unknown age — its findings still count until it is re-run".into(),
                (other, Some(age)) => format!("{other}, {} old", human_age(age)),
                (other, None) => other.to_owned(),
            };
            reasons.push(format!("{} ({when}): {}", s.source, format_counts(s.counts)));
        }
    }
    if no_audit {
        let states: Vec<String> = checkpoints.iter().map(|c| format!("{} {}", c.status.source, c.status.status)).collect();
        reasons
            .push(format!("no fresh auditor checkpoint ({}): re-run /oc-audit pre-deploy and /oc-security pre-deploy", states.join(", ")));
    } else {
        for c in checkpoints.iter().filter(|c| !c.fresh) {
            reasons.push(format!("note: {} is {}: {}", c.status.source, c.status.status, c.status.detail));
        }
    }
    for s in command_sources.iter().filter(|s| s.status == "failed") {
        reasons.push(format!("{}: {}", s.source, s.detail));
    }

    let mut findings: Vec<Finding> = code.findings.into_iter().chain(security.findings).chain(command_findings).collect();
    // Most severe first; the sort is stable, so each source keeps its own order.
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));

    let mut sources = vec![code.status, security.status];
    sources.extend(command_sources);
    Ok(GateResult {
        decision,
        counts,
        needs_confirmation,
        reasons,
        findings,
        sources,
        skipped: false,
        checked_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 4, 1, 12, 0, 0).single().unwrap()
    }

    fn ago(seconds: i64) -> String {
        (now() - chrono::Duration::seconds(seconds)).to_rfc3339()
    }

    fn write_checkpoint(root: &Path, skill: &str, value: &Value) {
        let path = checkpoint_path(root, skill);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
    }

    fn write_script(root: &Path, body: &str) {
        let path = root.join(BIN_AUDIT);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    async fn gate(root: &Path) -> GateResult {
        gate_with(root, &AuditConfig::default(), &Runner::default()).await
    }

    async fn gate_with(root: &Path, audit: &AuditConfig, runner: &Runner) -> GateResult {
        evaluate_gate(root, audit, runner, now(), &CancellationToken::new()).await.unwrap()
    }

    fn source<'a>(g: &'a GateResult, name: &str) -> &'a SourceStatus {
        g.sources.iter().find(|s| s.source == name).unwrap_or_else(|| panic!("no source {name} in {:?}", g.sources))
    }

    fn c(critical: u32, high: u32, medium: u32, low: u32) -> Counts {
        Counts { critical, high, medium, low }
    }

    #[track_caller]
    fn check_shape(value: Value, want: Counts, want_from: &str) {
        let parsed = parse_auditor_checkpoint(CODE_AUDITOR, &value.to_string()).unwrap_or_else(|e| panic!("{e}: {value}"));
        assert_eq!(parsed.counts, want, "{value}");
        assert_eq!(parsed.counts_from, want_from);
    }

    #[test]
    fn every_accepted_shape_is_counted() {
        let t = "2026-04-01T11:30:00Z";
        let sev = json!({"critical": 1, "high": 2, "medium": 3, "low": 4});
        check_shape(
            json!({"updated_at": t, "skill_state": {"findings_by_severity": sev}}),
            c(1, 2, 3, 4),
            "skill_state.findings_by_severity",
        );
        check_shape(json!({"updated_at": t, "skill_state": {"counts": sev}}), c(1, 2, 3, 4), "skill_state.counts");
        check_shape(json!({"updated_at": t, "findings_by_severity": sev}), c(1, 2, 3, 4), "findings_by_severity");
        check_shape(json!({"updated_at": t, "counts": sev}), c(1, 2, 3, 4), "counts");
        check_shape(json!({"skill_state": {"updated_at": t}, "summary": sev}), c(1, 2, 3, 4), "summary");
        // Keys in any case, counts as numeric strings or integral floats, missing keys as zero.
        check_shape(json!({"updated_at": t, "counts": {"CRITICAL": "2", "High": 1.0, "info": 7}}), c(2, 1, 0, 0), "counts");
        // A prose summary is not a counts object; the next candidate is used.
        check_shape(json!({"updated_at": t, "summary": "all clear", "counts": {"low": 1}}), c(0, 0, 0, 1), "counts");
        check_shape(json!({"updated_at": t, "summary": {"grade": "A"}, "findings": []}), c(0, 0, 0, 0), "findings[]");
        // An empty object is zero findings, as a writer counting an empty list produces it.
        check_shape(
            json!({"updated_at": t, "skill_state": {"findings_by_severity": {}}}),
            c(0, 0, 0, 0),
            "skill_state.findings_by_severity",
        );
        // The first listed field wins over later ones.
        check_shape(
            json!({"updated_at": t, "skill_state": {"counts": {"high": 1}}, "counts": {"high": 9}}),
            c(0, 1, 0, 0),
            "skill_state.counts",
        );
        check_shape(
            json!({"updated_at": t, "findings": [
                {"severity": "CRITICAL", "title": "SQL injection"},
                {"severity": "high", "message": "weak hash"},
                {"severity": "moderate", "rule": "x"},
                {"severity": "info", "title": "ignored"},
                "not an object"
            ]}),
            c(1, 1, 1, 0),
            "findings[]",
        );
        check_shape(
            json!({"updated_at": t, "skill_state": {"findings": [{"severity": "low", "title": "a"}]}}),
            c(0, 0, 0, 1),
            "skill_state.findings[]",
        );
        // Both: the larger number per severity, so a listed finding is never dropped.
        check_shape(
            json!({"updated_at": t, "counts": {"high": 0, "low": 5}, "findings": [{"severity": "high", "title": "a"}]}),
            c(0, 1, 0, 5),
            "counts (and findings[])",
        );
    }

    #[test]
    fn findings_array_becomes_findings_with_fixes() {
        let text = json!({"updated_at": "2026-04-01T11:30:00Z", "findings": [
            {"severity": "high", "title": "weak hash", "remediation": "use argon2"},
            {"severity": "critical", "rule": "sql-injection", "file": "src/db.ts", "line": 12, "fix": "use bound parameters"},
            {"severity": "low", "message": "long function"}
        ]})
        .to_string();
        let p = parse_auditor_checkpoint(SECURITY_AUDITOR, &text).unwrap();
        assert_eq!(p.findings.len(), 3);
        assert_eq!(p.findings[0].severity, Severity::Critical);
        assert_eq!(p.findings[0].title, "sql-injection (src/db.ts:12)");
        assert_eq!(p.findings[0].fix.as_deref(), Some("use bound parameters"));
        assert_eq!(p.findings[0].source, SECURITY_AUDITOR);
        assert_eq!(p.findings[1].fix.as_deref(), Some("use argon2"));
        assert_eq!(p.findings[2].fix, None);
    }

    #[test]
    fn unusable_checkpoints_say_why() {
        #[track_caller]
        fn check(text: &str, why: &str) {
            let err = parse_auditor_checkpoint(CODE_AUDITOR, text).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        check("{ not json", "not valid JSON");
        check("[1, 2]", "not a JSON object");
        check(r#"{"updated_at": "yesterday", "counts": {"high": 1}}"#, "`updated_at` is not an RFC 3339 time");
        check(r#"{"updated_at": "2026-04-01T11:00:00Z", "counts": {"high": "lots"}}"#, "`counts.high` is not a count");
        check(r#"{"updated_at": "2026-04-01T11:00:00Z", "counts": {"critical": -1}}"#, "`counts.critical` is not a count");
        check(r#"{"updated_at": "2026-04-01T11:00:00Z", "skill_state": {"grade": "A"}}"#, "no finding counts");
    }

    #[test]
    fn times_are_read_tolerantly() {
        let want = Utc.with_ymd_and_hms(2026, 4, 1, 10, 0, 0).single().unwrap();
        for v in [
            json!("2026-04-01T10:00:00Z"),
            json!("2026-04-01T12:00:00+02:00"),
            json!("2026-04-01T10:00:00"),
            json!(want.timestamp()),
            json!(want.timestamp_millis()),
        ] {
            assert_eq!(parse_time(&v), Some(want), "{v}");
        }
        assert_eq!(parse_time(&json!(true)), None);
    }

    #[tokio::test]
    async fn freshness_per_auditor() {
        let dir = tempfile::tempdir().unwrap();
        // 50 min: fresh for the code auditor (< 1 h). 2 h: stale for it, but fresh for the
        // security auditor (< 24 h).
        write_checkpoint(dir.path(), CODE_AUDITOR, &json!({"updated_at": ago(50 * 60), "counts": {}}));
        write_checkpoint(dir.path(), SECURITY_AUDITOR, &json!({"updated_at": ago(2 * 3600), "counts": {"low": 1}}));
        let g = gate(dir.path()).await;
        let code = source(&g, CODE_AUDITOR);
        assert_eq!((code.status.as_str(), code.age_seconds), ("fresh", Some(3000)));
        assert_eq!(source(&g, SECURITY_AUDITOR).status, "fresh");
        assert_eq!(g.decision, Decision::Proceed, "{:?}", g.reasons);

        write_checkpoint(dir.path(), CODE_AUDITOR, &json!({"updated_at": ago(2 * 3600), "counts": {"low": 0}}));
        write_checkpoint(dir.path(), SECURITY_AUDITOR, &json!({"updated_at": ago(25 * 3600), "counts": {"low": 1}}));
        let g = gate(dir.path()).await;
        let code = source(&g, CODE_AUDITOR);
        assert_eq!((code.status.as_str(), code.age_seconds), ("stale", Some(7200)));
        assert!(code.detail.contains("re-run /oc-audit pre-deploy"), "{}", code.detail);
        assert_eq!(source(&g, SECURITY_AUDITOR).status, "stale");
        assert_eq!(g.decision, Decision::Warn, "no fresh checkpoint means no audit");
        assert!(g.reasons.iter().any(|r| r.contains("no fresh auditor checkpoint")), "{:?}", g.reasons);
        assert_eq!(g.counts.low, 1, "stale findings still count");
    }

    #[tokio::test]
    async fn missing_and_garbage_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let g = gate(dir.path()).await;
        assert_eq!(source(&g, CODE_AUDITOR).status, "missing");
        assert!(source(&g, SECURITY_AUDITOR).detail.contains("/oc-security pre-deploy"));
        assert_eq!(source(&g, BIN_AUDIT).status, "not_configured");
        assert_eq!((g.decision, g.needs_confirmation), (Decision::Warn, false));
        assert!(g.reasons.iter().any(|r| r.starts_with("no audit run")), "{:?}", g.reasons);

        let path = checkpoint_path(dir.path(), CODE_AUDITOR);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"\xff\xfe garbage").unwrap();
        std::fs::create_dir_all(checkpoint_path(dir.path(), SECURITY_AUDITOR)).unwrap();
        let g = gate(dir.path()).await;
        let code = source(&g, CODE_AUDITOR);
        assert_eq!(code.status, "unreadable");
        assert!(code.detail.contains(".checkpoints/oc-code-auditor.checkpoint.json"), "{}", code.detail);
        assert_eq!(source(&g, SECURITY_AUDITOR).status, "unreadable", "a directory is not a checkpoint");
        assert_eq!(g.decision, Decision::Warn);
        assert_eq!(g.checked_at, "2026-04-01T12:00:00Z");
    }

    /// The skill's gate table, from checkpoint files to decision.
    #[tokio::test]
    async fn gate_table_end_to_end() {
        #[track_caller]
        fn fixture(code: Value, security: Value) -> tempfile::TempDir {
            let dir = tempfile::tempdir().unwrap();
            write_checkpoint(dir.path(), CODE_AUDITOR, &json!({"updated_at": ago(60), "skill_state": {"findings_by_severity": code}}));
            write_checkpoint(dir.path(), SECURITY_AUDITOR, &json!({"updated_at": ago(3600), "counts": security}));
            dir
        }

        // One CRITICAL in either audit blocks.
        let dir = fixture(json!({"critical": 0, "high": 0}), json!({"CRITICAL": 1}));
        let g = gate(dir.path()).await;
        assert_eq!((g.decision, g.needs_confirmation), (Decision::Block, false));
        assert!(g.reasons[0].contains("1 CRITICAL"), "{:?}", g.reasons);
        assert!(g.reasons.iter().any(|r| r.starts_with("oc-security-auditor (fresh, 60 min old): 1 CRITICAL")), "{:?}", g.reasons);

        // Four HIGH across both audits block (the limit is on the total).
        let dir = fixture(json!({"high": 2}), json!({"high": 2}));
        let g = gate(dir.path()).await;
        assert_eq!(g.decision, Decision::Block);
        assert_eq!(g.counts.high, 4);
        assert!(g.reasons[0].contains("4 HIGH findings (> 3)"), "{:?}", g.reasons);
        assert!(g.reasons.iter().any(|r| r.starts_with("oc-code-auditor (fresh, 60 s old): 0 CRITICAL, 2 HIGH")), "{:?}", g.reasons);

        // Two HIGH warn and need a human's yes.
        let dir = fixture(json!({"high": 1, "medium": 4}), json!({"high": 1}));
        let g = gate(dir.path()).await;
        assert_eq!((g.decision, g.needs_confirmation), (Decision::Warn, true));
        assert_eq!(g.counts, c(0, 2, 4, 0));

        // Nothing found, both fresh: proceed.
        let dir = fixture(json!({"high": 0}), json!({"low": 2}));
        let g = gate(dir.path()).await;
        assert_eq!((g.decision, g.needs_confirmation), (Decision::Proceed, false), "{:?}", g.reasons);
        assert!(!g.skipped);
    }

    #[tokio::test]
    async fn a_stale_critical_still_blocks() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(
            dir.path(),
            CODE_AUDITOR,
            &json!({"updated_at": ago(3 * 86_400), "findings": [{
                "severity": "critical",
                "title": "hard-coded AWS key",
                "fix": "rotate the key and read it from the environment"
            }]}),
        );
        let g = gate(dir.path()).await;
        assert_eq!(g.decision, Decision::Block, "{:?}", g.reasons);
        assert!(g.reasons.iter().any(|r| r.contains("stale checkpoint, 3 d old — its findings still count")), "{:?}", g.reasons);
        assert!(g.reasons.iter().any(|r| r.contains("no fresh auditor checkpoint")), "{:?}", g.reasons);
        assert_eq!(g.findings[0].title, "hard-coded AWS key");
        assert_eq!(g.findings[0].fix.as_deref(), Some("rotate the key and read it from the environment"));
    }

    #[tokio::test]
    async fn a_one_sided_fresh_audit_notes_the_other() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), CODE_AUDITOR, &json!({"updated_at": ago(10), "counts": {"high": 0}}));
        let g = gate(dir.path()).await;
        assert_eq!(g.decision, Decision::Proceed);
        assert!(g.reasons.iter().any(|r| r.starts_with("note: oc-security-auditor is missing")), "{:?}", g.reasons);
    }

    #[tokio::test]
    async fn failing_bin_audit_is_a_high_finding() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), CODE_AUDITOR, &json!({"updated_at": ago(10), "counts": {"high": 0}}));
        write_script(dir.path(), "echo 'checking…'\necho 'brakeman: 2 warnings' >&2\necho 'run: bundle exec brakeman -I' >&2\nexit 3");
        let g = gate(dir.path()).await;
        let s = source(&g, BIN_AUDIT);
        assert_eq!((s.status.as_str(), s.counts), ("failed", c(0, 1, 0, 0)));
        assert_eq!((g.decision, g.needs_confirmation), (Decision::Warn, true));
        let f = g.findings.iter().find(|f| f.source == BIN_AUDIT).unwrap();
        assert_eq!((f.severity, f.title.as_str()), (Severity::High, "audit command failed (exit 3)"));
        assert_eq!(f.fix.as_deref(), Some("brakeman: 2 warnings\nrun: bundle exec brakeman -I"));
        assert!(g.reasons.iter().any(|r| r.contains("failed (exit 3)")), "{:?}", g.reasons);
    }

    #[tokio::test]
    async fn passing_bin_audit_and_redacted_failures() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), CODE_AUDITOR, &json!({"updated_at": ago(10), "counts": {"high": 0}}));
        // It runs in the project root: bin/audit is there.
        write_script(dir.path(), "test -f bin/audit");
        let g = gate(dir.path()).await;
        let s = source(&g, BIN_AUDIT);
        assert_eq!(s.status, "passed", "{}", s.detail);
        assert_eq!(g.decision, Decision::Proceed, "{:?}", g.reasons);

        // Whatever the audit prints is redacted before it becomes a fix.
        let redactor = crate::secret::Redactor::default();
        redactor.add("tok-0123456789");
        write_script(dir.path(), "echo 'token tok-0123456789 rejected' >&2; exit 1");
        let g = gate_with(dir.path(), &AuditConfig::default(), &Runner::new(redactor)).await;
        let fix = g.findings[0].fix.clone().unwrap();
        assert!(!fix.contains("tok-0123456789") && fix.contains(crate::secret::MASK), "{fix}");
    }

    #[tokio::test]
    async fn bin_audit_that_is_not_executable_is_not_run() {
        let dir = tempfile::tempdir().unwrap();
        write_script(dir.path(), "exit 1");
        std::fs::set_permissions(dir.path().join(BIN_AUDIT), std::fs::Permissions::from_mode(0o644)).unwrap();
        let g = gate(dir.path()).await;
        let s = source(&g, BIN_AUDIT);
        assert_eq!(s.status, "not_configured");
        assert!(s.detail.contains("chmod +x bin/audit"), "{}", s.detail);
    }

    #[tokio::test]
    async fn configured_command_wins_and_a_missing_program_is_a_failure_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write_script(dir.path(), "exit 1");
        let audit = AuditConfig { command: Some(vec!["true".into()]), timeout_seconds: None };
        let g = gate_with(dir.path(), &audit, &Runner::default()).await;
        assert_eq!(source(&g, "true").status, "passed");

        let audit = AuditConfig { command: Some(vec!["brakeman-not-installed".into(), "-q".into()]), timeout_seconds: None };
        let g = gate_with(dir.path(), &audit, &Runner::default()).await;
        let s = source(&g, "brakeman-not-installed");
        assert_eq!(s.status, "failed");
        assert!(s.detail.contains("was not found") && s.detail.contains("install `brakeman-not-installed`"), "{}", s.detail);
        assert_eq!(g.findings[0].title, "audit command could not start: brakeman-not-installed not found");
    }

    #[tokio::test]
    async fn slow_audit_times_out_as_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditConfig { command: Some(vec!["sleep".into(), "30".into()]), timeout_seconds: Some(1) };
        let started = std::time::Instant::now();
        let g = gate_with(dir.path(), &audit, &Runner::default()).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(source(&g, "sleep").status, "failed");
        assert_eq!(g.findings[0].title, "audit command timed out after 1 s");
    }

    #[tokio::test]
    async fn cancel_stops_the_audit() {
        let dir = tempfile::tempdir().unwrap();
        write_script(dir.path(), "sleep 30");
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            c2.cancel();
        });
        let started = std::time::Instant::now();
        let err = evaluate_gate(dir.path(), &AuditConfig::default(), &Runner::default(), now(), &cancel).await.unwrap_err();
        assert!(matches!(err, CoreError::Cancelled), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        assert_eq!(human_age(45), "45 s");
        assert_eq!(human_age(12 * 60), "12 min");
        assert_eq!(human_age(3 * 3600), "3 h");
        assert_eq!(human_age(3 * 86_400), "3 d");
    }

    // -----------------------------------------------------------------------------------------
    // Audit commands derived from the project's files, run against fake tools. Each test has its
    // own tool directory given to the gate (no PATH is changed), and the fakes log what they got.

    struct Fakes {
        dir: tempfile::TempDir,
    }

    impl Fakes {
        fn new() -> Self {
            let f = Self { dir: tempfile::tempdir().unwrap() };
            std::fs::create_dir_all(f.bin()).unwrap();
            f
        }

        fn bin(&self) -> PathBuf {
            self.dir.path().join("bin")
        }

        fn log(&self) -> PathBuf {
            self.dir.path().join("calls.log")
        }

        /// A fake program at `path` that logs `name|cwd|args` and then runs `body`.
        fn script_at(&self, path: &Path, body: &str) {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let name = path.file_name().unwrap().to_str().unwrap();
            let log = self.log();
            std::fs::write(path, format!("#!/bin/sh\nprintf '%s|%s|%s\\n' '{name}' \"$(pwd)\" \"$*\" >> '{}'\n{body}\n", log.display()))
                .unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        fn tool(&self, name: &str, body: &str) {
            self.script_at(&self.bin().join(name), body);
        }

        fn search(&self) -> ToolSearch {
            ToolSearch { path: Some(self.bin().into_os_string()), home: None }
        }

        /// What the fakes were called with, as `name args` (the cwd checked to be `root`).
        fn calls(&self, root: &Path) -> Vec<String> {
            let text = std::fs::read_to_string(self.log()).unwrap_or_default();
            let root = root.canonicalize().unwrap();
            text.lines()
                .map(|l| {
                    let mut parts = l.splitn(3, '|');
                    let (name, cwd, args) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
                    assert_eq!(Path::new(cwd).canonicalize().unwrap(), root, "{l}");
                    format!("{name} {args}").trim_end().to_owned()
                })
                .collect()
        }
    }

    /// A project with these files and a fresh, clean code-auditor checkpoint, so the decision
    /// comes from the audit commands alone.
    fn audited_project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), CODE_AUDITOR, &json!({"updated_at": ago(10), "counts": {"high": 0}}));
        for (name, body) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        dir
    }

    async fn gate_on(root: &Path, audit: &AuditConfig, tools: &ToolSearch) -> GateResult {
        evaluate_gate_with(root, audit, &Runner::default(), now(), &CancellationToken::new(), tools).await.unwrap()
    }

    fn finding<'a>(g: &'a GateResult, source: &str) -> &'a Finding {
        g.findings.iter().find(|f| f.source == source).unwrap_or_else(|| panic!("no finding from {source} in {:#?}", g.findings))
    }

    const GO_VET_FAILS: &str = "if [ \"$1\" = vet ]; then\n  echo '# shop' >&2\n  echo './main.go:9:2: fmt.Printf format %d has arg name of wrong type string' >&2\n  exit 1\nfi\necho 'ok  \tshop\t0.01s'";

    #[tokio::test]
    async fn go_audit_a_failing_vet_is_a_high_finding_and_a_missing_govulncheck_a_low_one() {
        let project = audited_project(&[("go.mod", "module shop\n\ngo 1.22\n")]);
        let root = project.path();
        let fakes = Fakes::new();
        fakes.tool("go", GO_VET_FAILS);
        let g = gate_on(root, &AuditConfig::default(), &fakes.search()).await;

        assert_eq!(fakes.calls(root), ["go vet ./...", "go test ./..."]);
        let vet = source(&g, "go vet ./...");
        assert_eq!((vet.status.as_str(), vet.counts, vet.detail.as_str()), ("failed", c(0, 1, 0, 0), "`go vet ./...` failed (exit 1)"));
        let f = finding(&g, "go vet ./...");
        assert_eq!((f.severity, f.title.as_str()), (Severity::High, "`go vet ./...` failed (exit 1)"));
        assert_eq!(f.fix.as_deref(), Some("# shop\n./main.go:9:2: fmt.Printf format %d has arg name of wrong type string"));
        assert_eq!(source(&g, "go test ./...").status, "passed");

        let vuln = source(&g, "govulncheck ./...");
        assert_eq!((vuln.status.as_str(), vuln.counts), ("not_installed", c(0, 0, 0, 1)));
        let f = finding(&g, "govulncheck ./...");
        assert_eq!(f.severity, Severity::Low);
        assert_eq!(f.title, "not installed: govulncheck (go install golang.org/x/vuln/cmd/govulncheck@latest)");
        assert_eq!(f.fix.as_deref(), Some(GOVULNCHECK_HINT));

        // One HIGH: warn, and a human must confirm; the reasons name the command.
        assert_eq!((g.decision, g.needs_confirmation, g.counts), (Decision::Warn, true, c(0, 1, 0, 1)));
        assert!(g.reasons.iter().any(|r| r == "go vet ./...: `go vet ./...` failed (exit 1)"), "{:?}", g.reasons);
        assert!(!g.sources.iter().any(|s| s.source == BIN_AUDIT), "derived commands replace the bin/audit note");

        // Installed, govulncheck runs in the project too; with vet fixed, the gate proceeds.
        std::fs::remove_file(fakes.log()).unwrap();
        fakes.tool("go", "exit 0");
        fakes.tool("govulncheck", "echo 'No vulnerabilities found.'");
        let g = gate_on(root, &AuditConfig::default(), &fakes.search()).await;
        assert_eq!(fakes.calls(root), ["go vet ./...", "go test ./...", "govulncheck ./..."]);
        assert!(g.findings.is_empty(), "{:?}", g.findings);
        assert_eq!(g.decision, Decision::Proceed, "{:?}", g.reasons);
    }

    #[tokio::test]
    async fn bin_audit_wins_over_derived_commands_and_an_empty_command_turns_them_off() {
        let project = audited_project(&[("go.mod", "module shop\n")]);
        let root = project.path();
        let fakes = Fakes::new();
        fakes.tool("go", GO_VET_FAILS);
        fakes.script_at(&root.join(BIN_AUDIT), "exit 0");
        let g = gate_on(root, &AuditConfig::default(), &fakes.search()).await;
        assert_eq!(fakes.calls(root), ["audit"], "only bin/audit ran");
        assert_eq!(source(&g, BIN_AUDIT).status, "passed");
        assert_eq!(g.sources.len(), 3, "{:?}", g.sources);
        assert_eq!(g.decision, Decision::Proceed);

        // A configured command wins as well.
        std::fs::remove_file(fakes.log()).unwrap();
        let audit =
            AuditConfig { command: Some(vec![fakes.bin().join("go").display().to_string(), "version".into()]), timeout_seconds: None };
        gate_on(root, &audit, &fakes.search()).await;
        assert_eq!(fakes.calls(root), ["go version"]);

        // `audit.command: []` runs nothing at all.
        std::fs::remove_file(fakes.log()).unwrap();
        let audit = AuditConfig { command: Some(Vec::new()), timeout_seconds: None };
        let g = gate_on(root, &audit, &fakes.search()).await;
        assert!(fakes.calls(root).is_empty());
        let s = source(&g, AUDIT_COMMAND_FIELD);
        assert_eq!(s.status, "disabled");
        assert!(s.detail.starts_with("audit.command is []: the project's audit commands are turned off"), "{}", s.detail);
        assert_eq!(g.decision, Decision::Proceed);

        // A bin/audit that is not executable is reported, and the derived commands run.
        std::fs::set_permissions(root.join(BIN_AUDIT), std::fs::Permissions::from_mode(0o644)).unwrap();
        let g = gate_on(root, &AuditConfig::default(), &fakes.search()).await;
        assert!(source(&g, BIN_AUDIT).detail.contains("chmod +x bin/audit"));
        assert_eq!(source(&g, "go vet ./...").status, "failed");
    }

    #[tokio::test]
    async fn rust_audit_commands() {
        let project = audited_project(&[("Cargo.toml", "[package]\nname = \"shop\"\n")]);
        let root = project.path();
        let fakes = Fakes::new();
        fakes.tool("cargo", "[ \"$1\" = clippy ] && { echo 'error: unused variable: `x`' >&2; exit 101; }; exit 0");
        fakes.tool("cargo-clippy", "exit 0");
        let g = gate_on(root, &AuditConfig::default(), &fakes.search()).await;
        assert_eq!(fakes.calls(root), ["cargo clippy -- -D warnings", "cargo test"]);
        let f = finding(&g, "cargo clippy -- -D warnings");
        assert_eq!((f.severity, f.title.as_str()), (Severity::High, "`cargo clippy -- -D warnings` failed (exit 101)"));
        assert_eq!(f.fix.as_deref(), Some("error: unused variable: `x`"));
        assert_eq!(finding(&g, "cargo audit").title, "not installed: cargo-audit (cargo install cargo-audit --locked)");

        // `cargo install` puts programs in ~/.cargo/bin, often not on PATH: found there too.
        let home = tempfile::tempdir().unwrap();
        fakes.script_at(&home.path().join(".cargo/bin/cargo-audit"), "exit 0");
        std::fs::remove_file(fakes.log()).unwrap();
        let tools = ToolSearch { home: Some(home.path().to_path_buf()), ..fakes.search() };
        let g = gate_on(root, &AuditConfig::default(), &tools).await;
        assert_eq!(fakes.calls(root), ["cargo clippy -- -D warnings", "cargo test", "cargo audit"]);
        assert_eq!(source(&g, "cargo audit").status, "passed");

        // Without clippy, only that command is skipped with the rustup hint.
        std::fs::remove_file(fakes.bin().join("cargo-clippy")).unwrap();
        let g = gate_on(root, &AuditConfig::default(), &tools).await;
        assert_eq!(finding(&g, "cargo clippy -- -D warnings").fix.as_deref(), Some(CLIPPY_HINT));
        assert_eq!(source(&g, "cargo test").status, "passed");
    }

    #[tokio::test]
    async fn rails_django_and_node_audit_commands() {
        // Rails: brakeman and rspec through the project's bin/bundle.
        let gemfile = "source 'https://rubygems.org'\ngem \"rails\", \"~> 7.1\"\ngroup :development, :test do\n  gem 'rspec-rails'\nend\n";
        let project = audited_project(&[("Gemfile", gemfile), ("Gemfile.lock", "GEM\n  specs:\n    brakeman (6.1.2)\n")]);
        let root = project.path();
        let fakes = Fakes::new();
        fakes.script_at(&root.join("bin/bundle"), "exit 0");
        let g = gate_on(root, &AuditConfig::default(), &fakes.search()).await;
        assert_eq!(fakes.calls(root), ["bundle exec brakeman", "bundle exec rspec"]);
        assert_eq!(g.decision, Decision::Proceed, "{:?}", g.reasons);

        // Rails without brakeman or rspec: brakeman is missing (LOW), rspec does not apply.
        let project = audited_project(&[("Gemfile", "gem 'rails'\n# gem 'brakeman'\n")]);
        let g = gate_on(project.path(), &AuditConfig::default(), &fakes.search()).await;
        assert_eq!(finding(&g, "bundle exec brakeman").title, "not installed: bundle (gem install bundler)", "no bundle at all");
        fakes.script_at(&project.path().join("bin/bundle"), "exit 0");
        let g = gate_on(project.path(), &AuditConfig::default(), &fakes.search()).await;
        let f = finding(&g, "bundle exec brakeman");
        assert_eq!((f.severity, f.title.as_str()), (Severity::Low, format!("not installed: brakeman ({BRAKEMAN_HINT})").as_str()));
        assert_eq!(source(&g, "bundle exec rspec").status, "skipped");
        assert_eq!(g.decision, Decision::Proceed, "a missing tool is not a failure: {:?}", g.reasons);

        // Django: pytest (no tests collected is not a failure) and manage.py check --deploy, from
        // the project's virtualenv.
        let project = audited_project(&[("manage.py", ""), ("requirements.txt", "django\n")]);
        let root = project.path();
        let fakes = Fakes::new();
        fakes.script_at(&root.join(".venv/bin/pytest"), "echo 'no tests ran in 0.01s'; exit 5");
        fakes.script_at(&root.join(".venv/bin/python"), "echo 'SystemCheckError: ?: (security.W004) SECURE_HSTS_SECONDS' >&2; exit 1");
        let g = gate_on(root, &AuditConfig::default(), &fakes.search()).await;
        assert_eq!(fakes.calls(root), ["pytest", "python manage.py check --deploy"]);
        let pytest = source(&g, "pytest");
        assert_eq!(pytest.status, "passed");
        assert!(pytest.detail.contains("exited 5 (no tests collected)"), "{}", pytest.detail);
        let f = finding(&g, "python manage.py check --deploy");
        assert_eq!((f.severity, f.title.as_str()), (Severity::High, "`python manage.py check --deploy` failed (exit 1)"));
        assert!(f.fix.as_deref().unwrap().contains("SECURE_HSTS_SECONDS"));

        // Node: npm audit with a lockfile; without one it does not apply.
        let project = audited_project(&[("package.json", "{}"), ("package-lock.json", "{}")]);
        let fakes = Fakes::new();
        fakes.tool("npm", "exit 0");
        let g = gate_on(project.path(), &AuditConfig::default(), &fakes.search()).await;
        assert_eq!(fakes.calls(project.path()), ["npm audit --audit-level=high"]);
        assert_eq!(source(&g, "npm audit --audit-level=high").status, "passed");
        std::fs::remove_file(project.path().join("package-lock.json")).unwrap();
        let g = gate_on(project.path(), &AuditConfig::default(), &fakes.search()).await;
        let s = source(&g, "npm audit --audit-level=high");
        assert_eq!((s.status.as_str(), s.counts), ("skipped", c(0, 0, 0, 0)));
        assert!(s.detail.contains("npm audit needs a package-lock.json"), "{}", s.detail);
    }

    #[tokio::test]
    async fn derived_commands_share_the_audit_timeout_and_stop_on_cancel() {
        let project = audited_project(&[("go.mod", "module shop\n")]);
        let root = project.path();
        let fakes = Fakes::new();
        fakes.tool("go", "sleep 30");
        let audit = AuditConfig { command: None, timeout_seconds: Some(1) };
        let started = std::time::Instant::now();
        let g = gate_on(root, &audit, &fakes.search()).await;
        assert!(started.elapsed() < Duration::from_secs(8));
        assert_eq!(finding(&g, "go vet ./...").title, "`go vet ./...` timed out after 1 s");
        assert_eq!(finding(&g, "go test ./...").title, "`go test ./...` timed out after 1 s");

        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            c2.cancel();
        });
        let started = std::time::Instant::now();
        let err = evaluate_gate_with(root, &AuditConfig::default(), &Runner::default(), now(), &cancel, &fakes.search()).await.unwrap_err();
        assert!(matches!(err, CoreError::Cancelled), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn gems_are_read_from_the_gemfile_and_its_lock() {
        assert!(has_gem("gem \"rails\", \"~> 7.1\"", "rails", false));
        assert!(has_gem("    brakeman (6.1.2)", "brakeman", false));
        assert!(has_gem("  gem 'rspec-rails'", "rspec", true));
        assert!(!has_gem("  gem 'rspec-rails'", "rspec", false));
        assert!(!has_gem("gem 'railties'", "rails", false));
        assert!(!has_gem("# gem 'brakeman'", "brakeman", false));
    }
}
