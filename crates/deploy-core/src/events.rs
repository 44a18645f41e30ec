//! What a run announces to the world outside the pipeline (tickets, chat). deploy-core only
//! says what happened; mcp-server connects it to pm-bridge. Announcing never fails a run and
//! never blocks it for long: an implementation defers what it cannot do and returns notes.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// The facts of one deploy, as a ticket or a message tells them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployFacts {
    pub project: String,
    /// `staging` or `production`.
    pub env: String,
    /// The short SHA (oc-deploy's version of a release).
    pub version: String,
    /// The full commit SHA.
    pub commit: String,
    /// The environment's commit before this deploy, when known.
    pub prev_commit: Option<String>,
    /// Messages of the commits in `prev_commit..commit`, newest first.
    pub commit_messages: Vec<String>,
    /// The gate's verdict in words, e.g. `PASS (proceed)`.
    pub gate: String,
    pub url: Option<String>,
    pub run_id: String,
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum RunEvent {
    /// The gate passed and the deploy goes ahead: the deploy ticket is found or created.
    GatePassed,
    /// Staging smoke tests passed.
    StagingVerified { summary: String },
    /// Staging smoke tests failed: production refuses this commit.
    SmokeFailed { summary: String },
    /// Production is live and healthy.
    Shipped { previous_version: Option<String> },
    /// An environment went back to an earlier version.
    RolledBack { reason: String, to_version: String },
}

impl RunEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::GatePassed => "gate-passed",
            Self::StagingVerified { .. } => "staging-verified",
            Self::SmokeFailed { .. } => "smoke-failed",
            Self::Shipped { .. } => "shipped",
            Self::RolledBack { .. } => "rolled-back",
        }
    }
}

/// A boxed future, so the trait can live behind `Arc<dyn RunEvents>`.
pub type Announce<'a> = Pin<Box<dyn Future<Output = Vec<String>> + Send + 'a>>;

/// Receives run events. Returns notes for the run record (what was written, what was
/// deferred); must not fail and must bound its own waiting.
pub trait RunEvents: Send + Sync {
    fn announce<'a>(&'a self, root: &'a Path, facts: &'a DeployFacts, event: &'a RunEvent) -> Announce<'a>;
}
