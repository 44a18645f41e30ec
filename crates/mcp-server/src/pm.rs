//! Where deploy-core's run events meet pm-bridge: the deploy ticket in GitHub or Linear (chosen by
//! `pm.yaml`, tokens from the environment), its per-event updates, and the team's chat. Nothing
//! here can fail a deploy: a tracker that is missing, unreachable or refusing turns each intended
//! write into a deferred action in the checkpoint, which `deploy_retry_pm` flushes later.

use std::path::Path;

use chrono::{DateTime, Utc};
use deploy_core::config::Config;
use deploy_core::events::{Announce, DeployFacts, RunEvent, RunEvents};
use deploy_core::secret::Redactor;
use deploy_core::store::Store;
use pm_bridge::bridge::{Bridge, DeferredAction, FlushReport, Outcome, TicketEvent};
use pm_bridge::config::{PmConfig, TrackerKind};
use pm_bridge::github::GitHub;
use pm_bridge::linear::Linear;
use pm_bridge::notify::{self, Notifier, NotifySettings};
use pm_bridge::tracker::{NewIssue, Ticket, Tracker, TrackerError};
use serde::{Deserialize, Serialize};

/// How many announced events the checkpoint remembers (to tell each one once).
const NOTIFIED_KEPT: usize = 200;

/// GitHub or Linear, whichever `pm.yaml` names.
pub enum AnyTracker {
    GitHub(Box<GitHub>),
    Linear(Box<Linear>),
}

macro_rules! each {
    ($self:ident, $t:ident => $body:expr) => {
        match $self {
            AnyTracker::GitHub($t) => $body,
            AnyTracker::Linear($t) => $body,
        }
    };
}

impl Tracker for AnyTracker {
    fn name(&self) -> &'static str {
        each!(self, t => t.name())
    }
    async fn find_by_marker(&self, marker: &str) -> Result<Option<Ticket>, TrackerError> {
        each!(self, t => t.find_by_marker(marker).await)
    }
    async fn create_issue(&self, issue: &NewIssue) -> Result<Ticket, TrackerError> {
        each!(self, t => t.create_issue(issue).await)
    }
    async fn get_issue(&self, id: &str) -> Result<Ticket, TrackerError> {
        each!(self, t => t.get_issue(id).await)
    }
    async fn has_comment(&self, ticket: &Ticket, marker: &str) -> Result<bool, TrackerError> {
        each!(self, t => t.has_comment(ticket, marker).await)
    }
    async fn add_comment(&self, ticket: &Ticket, body: &str) -> Result<(), TrackerError> {
        each!(self, t => t.add_comment(ticket, body).await)
    }
    async fn set_state(&self, ticket: &Ticket, state: &str) -> Result<(), TrackerError> {
        each!(self, t => t.set_state(ticket, state).await)
    }
    async fn close(&self, ticket: &Ticket) -> Result<(), TrackerError> {
        each!(self, t => t.close(ticket).await)
    }
    async fn link(&self, deploy: &Ticket, linked: &Ticket) -> Result<bool, TrackerError> {
        each!(self, t => t.link(deploy, linked).await)
    }
}

/// A bridge, and why it has no tracker (a missing token), if it has none.
pub type ProjectBridge = (Bridge<AnyTracker>, Option<String>);

/// The project's bridge: `Ok(None)` without `pm.yaml` (PM is off); a bridge without a tracker
/// when the token is missing (every write is deferred, with the reason).
pub fn bridge_for(root: &Path) -> Result<Option<ProjectBridge>, String> {
    let cfg = match PmConfig::load(root) {
        Ok(Some(c)) => c,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let tracker = match cfg.tracker {
        TrackerKind::Github => {
            let repo = cfg.github.as_ref().map(|g| g.repo.clone()).unwrap_or_default();
            GitHub::from_env(&repo).map(|g| AnyTracker::GitHub(Box::new(g)))
        }
        TrackerKind::Linear => {
            let team = cfg.linear.as_ref().map(|l| l.team.clone()).unwrap_or_default();
            Linear::from_env(&team).map(|l| AnyTracker::Linear(Box::new(l)))
        }
    };
    let (tracker, why) = match tracker {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(Some((Bridge::new(tracker, cfg), why)))
}

/// One deploy ticket as the checkpoint records it (`skill_state.pm.deploy_tickets[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketRecord {
    pub id: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub title: String,
    pub env: String,
    pub commit: String,
    pub version: String,
    pub marker: String,
    #[serde(default)]
    pub linked: Vec<String>,
    /// When oc-deploy first saw the ticket (created or found).
    pub created_at: String,
    /// The last event applied: `created`, `staging-verified`, `smoke-failed`, `shipped`, `rolled-back`.
    pub last_event: String,
    /// Whether the stale-staging comment was written.
    #[serde(default)]
    pub stale_noted: bool,
}

impl TicketRecord {
    fn ticket(&self) -> Ticket {
        Ticket { id: self.id.clone(), key: self.key.clone(), url: self.url.clone(), title: self.title.clone(), state: None }
    }
}

/// Run events → tickets and chat messages.
pub struct PmEvents {
    redactor: Redactor,
}

impl PmEvents {
    pub fn new(redactor: Redactor) -> Self {
        Self { redactor }
    }

    /// The bridge's view of the facts, with every text redacted.
    fn bridge_facts(&self, facts: &DeployFacts, linked: Option<Vec<String>>) -> pm_bridge::bridge::DeployFacts {
        let r = |s: &str| self.redactor.redact(s);
        let linked = linked.unwrap_or_else(|| pm_bridge::trailers::ids_in_range(&facts.commit_messages));
        pm_bridge::bridge::DeployFacts {
            project: r(&facts.project),
            env: facts.env.clone(),
            head_sha: facts.commit.clone(),
            prev_sha: facts.prev_commit.clone(),
            version: facts.version.clone(),
            commits: facts.commit_messages.len(),
            linked,
            gate: r(&facts.gate),
            url: facts.url.as_deref().map(r),
        }
    }

    async fn tickets(&self, root: &Path, facts: &DeployFacts, event: &RunEvent) -> Vec<String> {
        let (bridge, why) = match bridge_for(root) {
            Ok(Some(b)) => b,
            Ok(None) => return Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "pm.yaml is invalid: no ticket updates");
                return vec![format!("PM: {e}; no ticket was written (fix pm.yaml)")];
            }
        };
        let store = Store::new(root);
        let recorded = recorded_ticket(&store, &facts.env, &facts.commit);
        // A rollback keeps the deploy's own linked tickets, not those of a re-walked range.
        let linked = match event {
            RunEvent::RolledBack { .. } => recorded.as_ref().map(|t| t.linked.clone()),
            _ => None,
        };
        let bf = self.bridge_facts(facts, linked);
        let redact = |s: &str| self.redactor.redact(s);
        let (out, name) = match event {
            RunEvent::GatePassed => (bridge.deploy_ticket(&bf).await, "created"),
            RunEvent::StagingVerified { .. } => (bridge.event(&bf, &TicketEvent::StagingVerified).await, "staging-verified"),
            RunEvent::SmokeFailed { summary } => {
                (bridge.event(&bf, &TicketEvent::SmokeFailed { summary: redact(summary) }).await, "smoke-failed")
            }
            RunEvent::Shipped { .. } => (bridge.event(&bf, &TicketEvent::Shipped).await, "shipped"),
            RunEvent::RolledBack { reason, to_version } => {
                (bridge.event(&bf, &TicketEvent::RolledBack { reason: redact(reason), previous: to_version.clone() }).await, "rolled-back")
            }
        };
        let mut notes = Vec::new();
        if let Some(t) = &out.deploy_ticket {
            let created_now = out.written.iter().any(|m| m == &bf.created_marker().text());
            notes.push(format!("deploy ticket {} {}", t.id, if created_now { "created" } else { "found (already there)" }));
            record_ticket(&store, t, facts, &bf, name);
        }
        if facts.env == "staging" {
            notes.extend(stale_staging(&bridge, &store).await);
        }
        notes.extend(defer(&store, &out, why.as_deref()));
        notes
    }

    async fn notify(&self, root: &Path, facts: &DeployFacts, event: &RunEvent) -> Vec<String> {
        let (kind, detail) = match event {
            RunEvent::GatePassed => return Vec::new(),
            RunEvent::StagingVerified { summary } => (notify::Event::StagingVerified, Some(summary.clone())),
            RunEvent::SmokeFailed { summary } => (notify::Event::SmokeFailure, Some(summary.clone())),
            RunEvent::Shipped { .. } => (notify::Event::ProductionShipped, None),
            RunEvent::RolledBack { reason, to_version } => (notify::Event::Rollback, Some(format!("{reason} (now on {to_version})"))),
        };
        let settings = Config::load(root)
            .ok()
            .and_then(|c| c.notifications)
            .and_then(|n| serde_json::to_value(n).ok())
            .and_then(|v| serde_json::from_value::<NotifySettings>(v).ok())
            .unwrap_or_default();
        let notifier = Notifier::from_env(&settings);
        if notifier.channels().is_empty() || !notifier.wants(kind) {
            return Vec::new();
        }
        // Each event of a deploy is told once: a re-run of the same step stays quiet.
        let key = match event {
            RunEvent::RolledBack { to_version, .. } => format!("{kind}:{}:{}:{to_version}", facts.env, facts.commit),
            _ => format!("{kind}:{}:{}", facts.env, facts.commit),
        };
        let store = Store::new(root);
        let mut first = false;
        let _ = store.update(|s| {
            let list = s.pm.extra.entry("notified".into()).or_insert_with(|| serde_json::json!([]));
            if let Some(a) = list.as_array_mut()
                && !a.iter().any(|v| v.as_str() == Some(key.as_str()))
            {
                a.push(serde_json::Value::String(key.clone()));
                let excess = a.len().saturating_sub(NOTIFIED_KEPT);
                a.drain(..excess);
                first = true;
            }
        });
        if !first {
            return vec![format!("{kind} was already announced for {}; no new message", facts.version)];
        }
        let r = |s: &str| self.redactor.redact(s);
        let msg = notify::Message {
            project: r(&facts.project),
            env: facts.env.clone(),
            version: facts.version.clone(),
            commit: facts.version.clone(),
            url: facts.url.as_deref().map(r),
            event: kind,
            detail: detail.as_deref().map(r),
        };
        let mut notes = Vec::new();
        for d in notifier.send(&msg).await {
            match (d.ok, d.error) {
                (true, _) => notes.push(format!("notified {}", d.channel)),
                (false, e) => {
                    let e = r(&e.unwrap_or_default());
                    tracing::warn!(error = %e, "notification failed");
                    notes.push(format!("notification failed: {e}"));
                }
            }
        }
        notes
    }
}

impl RunEvents for PmEvents {
    fn announce<'a>(&'a self, root: &'a Path, facts: &'a DeployFacts, event: &'a RunEvent) -> Announce<'a> {
        Box::pin(async move {
            let mut notes = self.tickets(root, facts, event).await;
            notes.extend(self.notify(root, facts, event).await);
            notes.into_iter().map(|n| self.redactor.redact(&n)).collect()
        })
    }
}

fn records(store: &Store) -> Vec<TicketRecord> {
    store
        .load()
        .map(|cp| cp.skill_state.pm.deploy_tickets.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect())
        .unwrap_or_default()
}

fn recorded_ticket(store: &Store, env: &str, commit: &str) -> Option<TicketRecord> {
    records(store).into_iter().find(|t| t.env == env && t.commit == commit)
}

/// Adds or refreshes the ticket's record in `skill_state.pm.deploy_tickets`.
fn record_ticket(store: &Store, t: &Ticket, facts: &DeployFacts, bf: &pm_bridge::bridge::DeployFacts, event: &str) {
    let res = store.update(|s| {
        let list = &mut s.pm.deploy_tickets;
        let pos = list.iter().position(|v| v.get("marker").and_then(|m| m.as_str()) == Some(bf.created_marker().text().as_str()));
        let mut rec = pos.and_then(|i| serde_json::from_value::<TicketRecord>(list[i].clone()).ok()).unwrap_or_else(|| TicketRecord {
            id: t.id.clone(),
            key: t.key.clone(),
            url: t.url.clone(),
            title: t.title.clone(),
            env: facts.env.clone(),
            commit: facts.commit.clone(),
            version: facts.version.clone(),
            marker: bf.created_marker().text(),
            linked: bf.linked.clone(),
            created_at: deploy_core::domain::now_rfc3339(),
            last_event: "created".into(),
            stale_noted: false,
        });
        rec.id = t.id.clone();
        rec.key = t.key.clone();
        if event != "created" || pos.is_none() {
            rec.last_event = event.into();
        }
        let value = serde_json::to_value(&rec).unwrap_or_default();
        match pos {
            Some(i) => list[i] = value,
            None => list.push(value),
        }
    });
    if let Err(e) = res {
        tracing::error!(error = %e, "could not record the deploy ticket");
    }
}

/// The skill's stale-staging comment, once, on staging tickets open more than seven days.
async fn stale_staging(bridge: &Bridge<AnyTracker>, store: &Store) -> Vec<String> {
    let mut notes = Vec::new();
    for rec in records(store) {
        let open = matches!(rec.last_event.as_str(), "created" | "staging-verified" | "smoke-failed");
        let Ok(opened) = DateTime::parse_from_rfc3339(&rec.created_at) else { continue };
        let opened = opened.with_timezone(&Utc);
        if rec.env != "staging" || !open || rec.stale_noted || Utc::now() - opened <= chrono::Duration::days(7) {
            continue;
        }
        let facts = pm_bridge::bridge::DeployFacts {
            project: String::new(),
            env: rec.env.clone(),
            head_sha: rec.commit.clone(),
            prev_sha: None,
            version: rec.version.clone(),
            commits: 0,
            linked: rec.linked.clone(),
            gate: String::new(),
            url: None,
        };
        let out = bridge.stale_check(&rec.ticket(), &facts, opened).await;
        if out.deferred.is_empty() {
            notes.push(format!("stale staging ticket {} noted", rec.id));
            let _ = store.update(|s| {
                for v in &mut s.pm.deploy_tickets {
                    if v.get("marker").and_then(|m| m.as_str()) == Some(rec.marker.as_str()) {
                        v["stale_noted"] = serde_json::Value::Bool(true);
                    }
                }
            });
        } else {
            notes.extend(defer(store, &out, None));
        }
    }
    notes
}

/// The identity of a deferred action: the same write deferred twice is kept once.
fn action_key(a: &DeferredAction) -> (String, String, Option<String>, Option<String>) {
    let action = serde_json::to_value(a.action).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let sub = a
        .payload
        .get("event")
        .and_then(|e| e.get("event"))
        .or_else(|| a.payload.get("state"))
        .or_else(|| a.payload.get("linked"))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let named = a.payload.get("ticket").and_then(|v| v.as_str()).map(str::to_owned);
    (a.marker.clone(), action, a.ticket.clone().or(named), sub)
}

/// Appends an outcome's deferred actions to `skill_state.pm_deferred_actions` (no duplicates).
fn defer(store: &Store, out: &Outcome, why: Option<&str>) -> Vec<String> {
    if out.deferred.is_empty() {
        return Vec::new();
    }
    let mut added = 0;
    let res = store.update(|s| {
        let mut known: Vec<_> = s
            .pm_deferred_actions
            .iter()
            .filter_map(|v| serde_json::from_value::<DeferredAction>(v.clone()).ok())
            .map(|a| action_key(&a))
            .collect();
        for a in &out.deferred {
            let key = action_key(a);
            if !known.contains(&key) {
                known.push(key);
                s.pm_deferred_actions.push(serde_json::to_value(a).unwrap_or_default());
                added += 1;
            }
        }
    });
    if let Err(e) = res {
        tracing::error!(error = %e, "could not record deferred PM actions");
    }
    let first = why.map(str::to_owned).or_else(|| out.deferred.first().map(|d| d.error.clone())).unwrap_or_default();
    let not_retriable = out.deferred.iter().filter(|d| !d.retriable).count();
    let mut note = format!("PM: {} write(s) deferred ({first})", out.deferred.len());
    if not_retriable > 0 {
        note.push_str(&format!(", {not_retriable} not retriable (need a human)"));
    }
    if added < out.deferred.len() {
        note.push_str(&format!(", {} already queued", out.deferred.len() - added));
    }
    note.push_str("; deploy_retry_pm retries them");
    vec![note]
}

/// `deploy_retry_pm`: flushes the checkpoint's retriable deferred actions and writes back what
/// remains. The checkpoint is re-read under its lock before writing, so actions deferred by a
/// run meanwhile are kept.
pub async fn retry_pm(root: &Path) -> Result<FlushReport, deploy_core::CoreError> {
    let store = Store::new(root);
    let (bridge, why) = match bridge_for(root) {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Err(deploy_core::CoreError::NotFound {
                what: "pm.yaml".into(),
                message: "PM is not configured for this project".into(),
                hint: "add pm.yaml at the project root (tracker: github with github.repo, or linear with linear.team)".into(),
            });
        }
        Err(e) => {
            return Err(deploy_core::CoreError::invalid("pm.yaml", e, "fix pm.yaml (see docs/pm-bridge.md)"));
        }
    };
    let cp = store.load()?;
    let actions: Vec<DeferredAction> =
        cp.skill_state.pm_deferred_actions.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect();
    let taken: Vec<_> = actions.iter().map(action_key).collect();
    let mut report = bridge.flush(actions).await;
    if let Some(why) = why.filter(|_| report.failed > 0) {
        report.summary.push_str(&format!(" ({why})"));
    }
    store.update(|s| {
        // Keep what arrived while flushing, plus what is still deferred.
        let arrived: Vec<serde_json::Value> = s
            .pm_deferred_actions
            .iter()
            .filter(|v| serde_json::from_value::<DeferredAction>((*v).clone()).map(|a| !taken.contains(&action_key(&a))).unwrap_or(true))
            .cloned()
            .collect();
        s.pm_deferred_actions = report.remaining.iter().map(|a| serde_json::to_value(a).unwrap_or_default()).chain(arrived).collect();
    })?;
    Ok(report)
}
