//! The skill's PM protocol over any tracker: find-or-create the deploy ticket (searching for its
//! marker first), then one marker-guarded comment or state change per event, linked tickets
//! updated one by one (or one rollup comment past 50), and every write that fails turned into a
//! deferred action instead of an error — the deploy never waits on the tracker.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{PmConfig, StateKey};
use crate::markers::Marker;
use crate::tracker::{NewIssue, Ticket, Tracker, TrackerError};

/// More linked tickets than this get one rollup comment instead of one comment each.
pub const ROLLUP_THRESHOLD: usize = 50;

/// A staging deploy ticket open longer than this gets the stale comment (once).
pub const STALE_AFTER_DAYS: i64 = 7;

/// The skill that owns deferred actions in the checkpoint.
pub const SKILL: &str = "oc-deploy-ops";

/// What a deploy is, as the deploy ticket tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeployFacts {
    pub project: String,
    pub env: String,
    pub head_sha: String,
    /// The environment's last deployed commit, when known.
    pub prev_sha: Option<String>,
    pub version: String,
    pub commits: usize,
    /// Ticket ids from `Refs:` / `Closes:` trailers in the range.
    pub linked: Vec<String>,
    /// The gate's verdict in words, e.g. `PASS (proceed)`.
    pub gate: String,
    pub url: Option<String>,
}

impl DeployFacts {
    pub fn created_marker(&self) -> Marker {
        Marker::DeployCreated { env: self.env.clone(), sha: self.head_sha.clone() }
    }
}

/// One write to do later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeferredAction {
    pub skill: String,
    /// The idempotency marker of the write (the deploy-created marker for ticket creation and
    /// state changes, which carry none of their own).
    pub marker: String,
    pub action: ActionKind,
    /// The ticket written to; `None` when it is the deploy ticket and that is found by
    /// `deploy_marker` at flush time.
    pub ticket: Option<String>,
    pub deploy_marker: String,
    /// Comment body, state key or issue fields.
    pub payload: serde_json::Value,
    pub retriable: bool,
    pub error: String,
    pub deferred_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    CreateDeployTicket,
    Comment,
    SetState,
    Close,
    Link,
    /// A whole event whose deploy ticket could not be found or created at the time:
    /// replayed by finding (or creating) the ticket, then applying the event.
    Event,
}

/// An event applied to a deploy ticket (serialisable, so it can wait in the checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum TicketEvent {
    StagingVerified,
    Shipped,
    RolledBack { reason: String, previous: String },
    SmokeFailed { summary: String },
}

/// What one event did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Outcome {
    pub deploy_ticket: Option<Ticket>,
    /// Markers written now.
    pub written: Vec<String>,
    /// Markers already present (a re-run): nothing written.
    pub already: Vec<String>,
    pub deferred: Vec<DeferredAction>,
}

/// The result of `deploy_retry_pm`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FlushReport {
    pub flushed: usize,
    pub failed: usize,
    /// Not retried: they need a human (401, 403, 404).
    pub skipped_not_retriable: usize,
    /// What stays deferred (failed now, or not retriable).
    pub remaining: Vec<DeferredAction>,
    pub summary: String,
}

/// The PM protocol bound to a tracker (or to none: then every write is deferred).
pub struct Bridge<T: Tracker> {
    tracker: Option<T>,
    config: PmConfig,
}

/// Serialises find-or-create per marker inside this process (across processes the deploy's
/// environment lock does), so two racing runs for one commit make one ticket.
fn creation_lock(marker: &str) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: OnceLock<std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let map = LOCKS.get_or_init(Default::default);
    let mut g = map.lock().unwrap_or_else(|p| p.into_inner());
    g.entry(marker.to_owned()).or_default().clone()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn unconfigured() -> TrackerError {
    TrackerError::NotConfigured { tracker: "pm".into(), message: "no tracker is configured or reachable (pm.yaml and its token)".into() }
}

/// Where a deferred write goes: its marker, kind, target and the deploy ticket's marker.
struct Target<'a> {
    marker: &'a Marker,
    action: ActionKind,
    ticket: Option<&'a Ticket>,
    deploy: &'a Marker,
}

/// A write that failed, as an action to retry later.
fn deferred(to: Target<'_>, payload: serde_json::Value, e: &TrackerError) -> DeferredAction {
    tracing::warn!(error = %e, marker = %to.marker.text(), "tracker write deferred");
    DeferredAction {
        skill: SKILL.into(),
        marker: to.marker.text(),
        action: to.action,
        ticket: to.ticket.map(|t| t.id.clone()),
        deploy_marker: to.deploy.text(),
        payload,
        retriable: e.retriable(),
        error: e.to_string(),
        deferred_at: now(),
    }
}

impl<T: Tracker> Bridge<T> {
    pub fn new(tracker: Option<T>, config: PmConfig) -> Self {
        Self { tracker, config }
    }

    /// The deploy ticket of this environment and commit: found by its marker, else created
    /// (with the linked tickets related where the tracker can).
    pub async fn deploy_ticket(&self, facts: &DeployFacts) -> Outcome {
        let mut out = Outcome::default();
        let marker = facts.created_marker();
        let payload = serde_json::to_value(facts).unwrap_or_default();
        let create = Target { marker: &marker, action: ActionKind::CreateDeployTicket, ticket: None, deploy: &marker };
        let Some(t) = &self.tracker else {
            out.deferred.push(deferred(create, payload, &unconfigured()));
            return out;
        };
        let lock = creation_lock(&marker.text());
        let _held = lock.lock().await;
        match t.find_by_marker(&marker.text()).await {
            Ok(Some(found)) => {
                out.already.push(marker.text());
                out.deploy_ticket = Some(found);
                return out;
            }
            Ok(None) => {}
            Err(e) => {
                out.deferred.push(deferred(create, payload, &e));
                return out;
            }
        }
        let issue = NewIssue {
            title: format!("Deploy {} {} to {}", facts.project, facts.version, facts.env),
            body: deploy_body(facts, &marker),
            issue_type: Some(self.config.deploy_issue_type().to_owned()),
            labels: Vec::new(),
        };
        match t.create_issue(&issue).await {
            Ok(ticket) => {
                out.written.push(marker.text());
                for id in facts.linked.iter().take(ROLLUP_THRESHOLD) {
                    let r = match t.get_issue(id).await {
                        Ok(linked) => t.link(&ticket, &linked).await.map(|_| ()),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = r {
                        let to = Target { marker: &marker, action: ActionKind::Link, ticket: Some(&ticket), deploy: &marker };
                        out.deferred.push(deferred(to, serde_json::json!({ "linked": id }), &e));
                    }
                }
                out.deploy_ticket = Some(ticket);
            }
            Err(e) => out.deferred.push(deferred(create, payload, &e)),
        }
        out
    }

    /// Finds (or creates) the deploy ticket of `facts`, then applies `event` to it. When the
    /// ticket cannot be had, the whole event is deferred behind the ticket's creation.
    pub async fn event(&self, facts: &DeployFacts, event: &TicketEvent) -> Outcome {
        let mut out = self.deploy_ticket(facts).await;
        let Some(ticket) = out.deploy_ticket.clone() else {
            let marker = facts.created_marker();
            let why = out.deferred.first().map(|d| d.error.clone()).unwrap_or_else(|| unconfigured().to_string());
            let retriable = out.deferred.first().is_none_or(|d| d.retriable);
            let e = if retriable {
                TrackerError::Unreachable { tracker: "pm".into(), message: why }
            } else {
                TrackerError::Forbidden { tracker: "pm".into(), message: why }
            };
            let to = Target { marker: &marker, action: ActionKind::Event, ticket: None, deploy: &marker };
            out.deferred.push(deferred(to, serde_json::json!({ "facts": facts, "event": event }), &e));
            return out;
        };
        let more = match event {
            TicketEvent::StagingVerified => self.staging_verified(&ticket, facts).await,
            TicketEvent::Shipped => self.shipped(&ticket, facts).await,
            TicketEvent::RolledBack { reason, previous } => self.rolled_back(&ticket, facts, reason, previous).await,
            TicketEvent::SmokeFailed { summary } => self.smoke_failed(&ticket, facts, summary).await,
        };
        out.written.extend(more.written);
        out.already.extend(more.already);
        out.deferred.extend(more.deferred);
        out
    }

    /// Writes one marker-guarded comment, unless it is already there.
    async fn comment(&self, out: &mut Outcome, ticket: &Ticket, marker: Marker, text: &str, deploy: &Marker) {
        let body = format!("{}\n{text}", marker.text());
        let to = Target { marker: &marker, action: ActionKind::Comment, ticket: Some(ticket), deploy };
        let Some(t) = &self.tracker else {
            out.deferred.push(deferred(to, serde_json::json!({ "body": body }), &unconfigured()));
            return;
        };
        match t.has_comment(ticket, &marker.text()).await {
            Ok(true) => out.already.push(marker.text()),
            Ok(false) => match t.add_comment(ticket, &body).await {
                Ok(()) => out.written.push(marker.text()),
                Err(e) => out.deferred.push(deferred(to, serde_json::json!({ "body": body }), &e)),
            },
            Err(e) => out.deferred.push(deferred(to, serde_json::json!({ "body": body }), &e)),
        }
    }

    /// Moves the deploy ticket to a state named in pm.yaml; no name configured, no move.
    async fn transition(&self, out: &mut Outcome, ticket: &Ticket, key: StateKey, deploy: &Marker) {
        let Some(state) = self.config.state(key) else {
            tracing::info!(?key, "pm.yaml names no state for this event; the ticket keeps its state");
            return;
        };
        let to = Target { marker: deploy, action: ActionKind::SetState, ticket: Some(ticket), deploy };
        let Some(t) = &self.tracker else {
            out.deferred.push(deferred(to, serde_json::json!({ "state": state }), &unconfigured()));
            return;
        };
        if let Err(e) = t.set_state(ticket, state).await {
            out.deferred.push(deferred(to, serde_json::json!({ "state": state }), &e));
        }
    }

    /// Comments on each linked ticket (one marker each), or past the threshold one rollup
    /// comment on the deploy ticket listing them all.
    async fn linked(&self, out: &mut Outcome, deploy_ticket: &Ticket, facts: &DeployFacts, deploy: &Marker, shipped: bool) {
        let did = deploy_ticket.id.clone();
        if facts.linked.len() > ROLLUP_THRESHOLD {
            let list = facts.linked.join(", ");
            let verb = if shipped { "Shipped to prod" } else { "Rolled back" };
            let text = format!("{verb}: {} tickets in this deploy: {list}", facts.linked.len());
            self.comment(out, deploy_ticket, Marker::Rollup { deploy_id: did.clone() }, &text, deploy).await;
            return;
        }
        for id in &facts.linked {
            let marker = if shipped {
                Marker::LinkedShipped { deploy_id: did.clone(), ticket_id: id.clone() }
            } else {
                Marker::LinkedRollback { deploy_id: did.clone(), ticket_id: id.clone() }
            };
            let text = if shipped { format!("Shipped to prod via deploy {did}") } else { "Rolled back — re-investigate".to_owned() };
            let to = Target { marker: &marker, action: ActionKind::Comment, ticket: None, deploy };
            let payload = serde_json::json!({ "ticket": id, "body": format!("{}\n{text}", marker.text()) });
            let Some(t) = &self.tracker else {
                out.deferred.push(deferred(to, payload, &unconfigured()));
                continue;
            };
            match t.get_issue(id).await {
                Ok(linked) => self.comment(out, &linked, marker.clone(), &text, deploy).await,
                Err(e) => out.deferred.push(deferred(to, payload, &e)),
            }
        }
    }

    pub async fn staging_verified(&self, ticket: &Ticket, facts: &DeployFacts) -> Outcome {
        let mut out = Outcome { deploy_ticket: Some(ticket.clone()), ..Default::default() };
        let deploy = facts.created_marker();
        let url = facts.url.as_deref().unwrap_or("(no URL)");
        let text = format!("Smoke tests: PASS — {url} ({})", facts.version);
        self.comment(&mut out, ticket, Marker::StagingVerified { deploy_id: ticket.id.clone() }, &text, &deploy).await;
        self.transition(&mut out, ticket, StateKey::StagingVerified, &deploy).await;
        out
    }

    pub async fn shipped(&self, ticket: &Ticket, facts: &DeployFacts) -> Outcome {
        let mut out = Outcome { deploy_ticket: Some(ticket.clone()), ..Default::default() };
        let deploy = facts.created_marker();
        let url = facts.url.as_deref().unwrap_or("(no URL)");
        let text = format!("Shipped to production: {url} — version {} ({})", facts.version, facts.head_sha);
        self.comment(&mut out, ticket, Marker::ProdShipped { deploy_id: ticket.id.clone() }, &text, &deploy).await;
        self.transition(&mut out, ticket, StateKey::Shipped, &deploy).await;
        if let Some(t) = self.tracker.as_ref().filter(|t| t.name() == "github") {
            // GitHub has no workflow states: shipping also closes the deploy issue.
            if let Err(e) = t.close(ticket).await {
                let to = Target { marker: &deploy, action: ActionKind::Close, ticket: Some(ticket), deploy: &deploy };
                out.deferred.push(deferred(to, serde_json::json!({}), &e));
            }
        }
        self.linked(&mut out, ticket, facts, &deploy, true).await;
        out
    }

    pub async fn rolled_back(&self, ticket: &Ticket, facts: &DeployFacts, reason: &str, previous: &str) -> Outcome {
        let mut out = Outcome { deploy_ticket: Some(ticket.clone()), ..Default::default() };
        let deploy = facts.created_marker();
        let text = format!("Rolled back: {reason}. Previous version: {previous}");
        self.comment(&mut out, ticket, Marker::Rollback { deploy_id: ticket.id.clone() }, &text, &deploy).await;
        self.transition(&mut out, ticket, StateKey::RolledBack, &deploy).await;
        self.linked(&mut out, ticket, facts, &deploy, false).await;
        out
    }

    pub async fn smoke_failed(&self, ticket: &Ticket, facts: &DeployFacts, summary: &str) -> Outcome {
        let mut out = Outcome { deploy_ticket: Some(ticket.clone()), ..Default::default() };
        let deploy = facts.created_marker();
        let text = format!("Smoke tests failed: {summary}");
        self.comment(&mut out, ticket, Marker::SmokeFail { deploy_id: ticket.id.clone() }, &text, &deploy).await;
        self.transition(&mut out, ticket, StateKey::Blocked, &deploy).await;
        out
    }

    /// The stale comment on a staging deploy ticket open more than seven days (once).
    pub async fn stale_check(&self, ticket: &Ticket, facts: &DeployFacts, opened_at: chrono::DateTime<chrono::Utc>) -> Outcome {
        let mut out = Outcome { deploy_ticket: Some(ticket.clone()), ..Default::default() };
        if facts.env == "staging" && chrono::Utc::now() - opened_at > chrono::Duration::days(STALE_AFTER_DAYS) {
            let deploy = facts.created_marker();
            let marker = Marker::StaleStaging { deploy_id: ticket.id.clone() };
            self.comment(&mut out, ticket, marker, "Stale deploy — close manually if abandoned", &deploy).await;
        }
        out
    }

    /// `deploy_retry_pm`: retries every retriable deferred action once (marker-guarded, so a
    /// write that did land meanwhile is not repeated).
    pub async fn flush(&self, actions: Vec<DeferredAction>) -> FlushReport {
        let mut report = FlushReport::default();
        for a in actions {
            if a.skill != SKILL || !a.retriable {
                report.skipped_not_retriable += usize::from(!a.retriable);
                report.remaining.push(a);
                continue;
            }
            match self.replay(&a).await {
                Ok(()) => report.flushed += 1,
                Err(e) => {
                    report.failed += 1;
                    report.remaining.push(DeferredAction { retriable: e.retriable(), error: e.to_string(), deferred_at: now(), ..a });
                }
            }
        }
        report.summary = format!("flushed {} / failed {}", report.flushed, report.failed);
        report
    }

    /// The ticket an action writes to: a named one, or the deploy ticket found by its marker.
    async fn target(&self, t: &T, a: &DeferredAction, named: Option<&str>) -> Result<Ticket, TrackerError> {
        match named {
            Some(id) => t.get_issue(id).await,
            None => t.find_by_marker(&a.deploy_marker).await?.ok_or_else(|| TrackerError::NotFound {
                tracker: t.name().into(),
                message: format!("no deploy ticket with {}", a.deploy_marker),
            }),
        }
    }

    async fn replay(&self, a: &DeferredAction) -> Result<(), TrackerError> {
        let t = self.tracker.as_ref().ok_or_else(unconfigured)?;
        match a.action {
            ActionKind::CreateDeployTicket => {
                let facts: DeployFacts = serde_json::from_value(a.payload.clone()).map_err(|e| TrackerError::Api {
                    tracker: t.name().into(),
                    status: 0,
                    message: format!("unreadable deferred action: {e}"),
                })?;
                let out = self.deploy_ticket(&facts).await;
                match out.deferred.first() {
                    Some(d) if out.deploy_ticket.is_none() => {
                        Err(TrackerError::Unreachable { tracker: t.name().into(), message: d.error.clone() })
                    }
                    _ => Ok(()),
                }
            }
            ActionKind::Comment => {
                let named = a.payload.get("ticket").and_then(|v| v.as_str()).or(a.ticket.as_deref());
                let ticket = self.target(t, a, named).await?;
                if t.has_comment(&ticket, &a.marker).await? {
                    return Ok(());
                }
                let body = a.payload.get("body").and_then(|v| v.as_str()).unwrap_or(&a.marker);
                t.add_comment(&ticket, body).await
            }
            ActionKind::SetState => {
                let ticket = self.target(t, a, a.ticket.as_deref()).await?;
                t.set_state(&ticket, a.payload.get("state").and_then(|v| v.as_str()).unwrap_or_default()).await
            }
            ActionKind::Close => t.close(&self.target(t, a, a.ticket.as_deref()).await?).await,
            ActionKind::Event => {
                let bad = |e: serde_json::Error| TrackerError::Api {
                    tracker: t.name().into(),
                    status: 0,
                    message: format!("unreadable deferred event: {e}"),
                };
                let facts: DeployFacts = serde_json::from_value(a.payload.get("facts").cloned().unwrap_or_default()).map_err(bad)?;
                let event: TicketEvent = serde_json::from_value(a.payload.get("event").cloned().unwrap_or_default()).map_err(bad)?;
                let out = self.event(&facts, &event).await;
                match out.deferred.into_iter().next() {
                    None => Ok(()),
                    Some(d) if d.retriable => Err(TrackerError::Unreachable { tracker: t.name().into(), message: d.error }),
                    Some(d) => Err(TrackerError::Forbidden { tracker: t.name().into(), message: d.error }),
                }
            }
            ActionKind::Link => {
                let ticket = self.target(t, a, a.ticket.as_deref()).await?;
                let linked = t.get_issue(a.payload.get("linked").and_then(|v| v.as_str()).unwrap_or_default()).await?;
                t.link(&ticket, &linked).await.map(|_| ())
            }
        }
    }
}

/// The deploy ticket's description, as the skill writes it.
pub fn deploy_body(facts: &DeployFacts, marker: &Marker) -> String {
    let linked = if facts.linked.is_empty() { "none".to_owned() } else { facts.linked.join(", ") };
    format!(
        "{}\nEnvironment: {}\nRange: {}..{}\nCommits: {}\nLinked tickets: {linked}\nAudit gate: {}\nBug-check: PASS\nSmoke tests: pending\n",
        marker.text(),
        facts.env,
        facts.prev_sha.as_deref().unwrap_or("(first deploy)"),
        facts.head_sha,
        facts.commits,
        facts.gate,
    )
}
