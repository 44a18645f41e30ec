//! What every tracker backend offers the bridge, and how tracker failures are classified:
//! a 403 is not worth retrying, a rate limit is (after the tracker's own wait), an unreachable
//! tracker is deferred.

use std::future::Future;
use std::time::Duration;

/// A ticket as the bridge needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Ticket {
    /// The id people use: `#12` on GitHub, `ENG-12` on Linear.
    pub id: String,
    /// The id the API needs: the issue number on GitHub, the issue UUID on Linear.
    pub key: String,
    pub url: Option<String>,
    pub title: String,
    /// The workflow state (Linear) or `open` / `closed` (GitHub).
    pub state: Option<String>,
}

/// An issue to create.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewIssue {
    pub title: String,
    /// Markdown; starts with the idempotency marker.
    pub body: String,
    /// `pm.yaml` `issue_types.deploy` (a Linear label, a GitHub label).
    pub issue_type: Option<String>,
    pub labels: Vec<String>,
}

/// Why a tracker call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrackerError {
    #[error("{tracker}: not configured: {message}")]
    NotConfigured { tracker: String, message: String },
    #[error("{tracker}: unauthorized (401): {message}")]
    Unauthorized { tracker: String, message: String },
    #[error("{tracker}: forbidden (403): {message}")]
    Forbidden { tracker: String, message: String },
    #[error("{tracker}: not found: {message}")]
    NotFound { tracker: String, message: String },
    #[error("{tracker}: rate limited: {message}")]
    RateLimited { tracker: String, message: String, retry_after: Option<Duration> },
    #[error("{tracker}: unreachable: {message}")]
    Unreachable { tracker: String, message: String },
    #[error("{tracker}: API error {status}: {message}")]
    Api { tracker: String, status: u16, message: String },
}

impl TrackerError {
    /// Whether a later `deploy_retry_pm` may succeed. 401/403/404 need a human first.
    pub fn retriable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unreachable { .. } | Self::NotConfigured { .. })
            || matches!(self, Self::Api { status, .. } if *status >= 500)
    }
}

/// Bounded retries for rate limits and transient errors.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    /// Waits longer than this are not waited out: the action is deferred instead.
    pub max_wait: Duration,
    pub base_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 3, max_wait: Duration::from_secs(10), base_backoff: Duration::from_millis(250) }
    }
}

/// Runs `f`, retrying rate limits (after the tracker's `retry-after`, capped) and 5xx /
/// unreachable errors (exponential backoff), at most `policy.attempts` times.
pub async fn retrying<T, F, Fut>(policy: &RetryPolicy, mut f: F) -> Result<T, TrackerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TrackerError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < policy.attempts.max(1) && e.retriable() && !matches!(e, TrackerError::NotConfigured { .. }) => {
                let wait = match &e {
                    TrackerError::RateLimited { retry_after: Some(w), .. } => *w,
                    _ => policy.base_backoff * 2u32.saturating_pow(attempt - 1),
                };
                if wait > policy.max_wait {
                    return Err(e);
                }
                tracing::info!(error = %e, wait_ms = wait.as_millis() as u64, attempt, "tracker call failed; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A tracker backend (GitHub REST, Linear GraphQL). Every write is preceded by a search for
/// its marker in the bridge, so implementations only need to be faithful to the API.
#[allow(async_fn_in_trait)]
pub trait Tracker: Send + Sync {
    fn name(&self) -> &'static str;
    /// The deploy ticket whose body contains `marker` (issues only; GitHub pull requests are
    /// skipped), if any.
    async fn find_by_marker(&self, marker: &str) -> Result<Option<Ticket>, TrackerError>;
    async fn create_issue(&self, issue: &NewIssue) -> Result<Ticket, TrackerError>;
    /// A ticket by the id people use (`#12`, `12`, `ENG-12`).
    async fn get_issue(&self, id: &str) -> Result<Ticket, TrackerError>;
    /// Whether a comment containing `marker` exists on the ticket.
    async fn has_comment(&self, ticket: &Ticket, marker: &str) -> Result<bool, TrackerError>;
    async fn add_comment(&self, ticket: &Ticket, body: &str) -> Result<(), TrackerError>;
    /// Moves the ticket to the state named in `pm.yaml` (`states.extended`). GitHub has no
    /// workflow states: the state is a label of that name.
    async fn set_state(&self, ticket: &Ticket, state: &str) -> Result<(), TrackerError>;
    async fn close(&self, ticket: &Ticket) -> Result<(), TrackerError>;
    /// Relates the deploy ticket to a linked ticket where the tracker supports relations
    /// (Linear); `Ok(false)` where it does not (GitHub: the body links them instead).
    async fn link(&self, deploy: &Ticket, linked: &Ticket) -> Result<bool, TrackerError>;
}
