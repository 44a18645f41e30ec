//! What a run is on record: its steps, checks, gate, rollback and outcome. These records are
//! written to the run log and returned (as-is) in tool results.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{Environment, RunId, Strategy};
use crate::gate::GateResult;
use crate::pipeline::State;

/// What kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Staging,
    Production,
    Rollback,
}

/// The outcome vocabulary of the run tools (the public result contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Blocked,
    ConfirmationRequired,
    Declined,
    RolledBack,
    Cancelled,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Blocked => "blocked",
            Self::ConfirmationRequired => "confirmation_required",
            Self::Declined => "declined",
            Self::RolledBack => "rolled_back",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, Self::Running)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Running,
    Passed,
    Warned,
    Failed,
    Skipped,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepRecord {
    pub name: String,
    pub status: StepStatus,
    pub started_at: String,
    pub duration_ms: u64,
    pub detail: String,
}

/// One HTTP check (smoke test or health probe).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckResult {
    pub name: String,
    pub url: String,
    /// The HTTP status, when a response came back.
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub passed: bool,
    /// Above the latency warning threshold (a warning, not a failure).
    #[serde(default)]
    pub slow: bool,
    /// Why it failed, or what it verified.
    pub detail: String,
}

/// A rollback that happened in (or as) a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RollbackInfo {
    pub from_version: Option<String>,
    pub to_version: String,
    pub reason: String,
    /// True when oc-deploy rolled back on its own after a failed health check.
    pub automatic: bool,
    pub at: String,
    pub duration_ms: u64,
}

/// The error of a failed run, as the agent sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunError {
    pub code: String,
    pub message: String,
    pub hint: String,
}

/// A run, complete as far as it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunRecord {
    pub run_id: RunId,
    pub kind: RunKind,
    pub env: Environment,
    pub project: String,
    pub platform: String,
    /// Full commit id deployed (absent for a rollback to a named version).
    pub commit: Option<String>,
    /// The version shipped or rolled back to (short SHA on git-based platforms).
    pub version: Option<String>,
    pub strategy: Option<Strategy>,
    pub status: RunStatus,
    /// The pipeline state machine's state.
    pub state: State,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: u64,
    pub pid: u32,
    pub steps: Vec<StepRecord>,
    pub gate: Option<GateResult>,
    /// Production: the version live before this run (recorded before deploying).
    pub previous_version: Option<String>,
    /// Production shipped without a verified staging run for this commit.
    #[serde(default)]
    pub direct: bool,
    #[serde(default)]
    pub dry_run: bool,
    /// How the deploy was approved (`elicitation`, `token`, `cli --yes`, `auto-approve`).
    pub confirmed_by: Option<String>,
    #[serde(default)]
    pub smoke: Vec<CheckResult>,
    #[serde(default)]
    pub health: Vec<CheckResult>,
    pub rollback: Option<RollbackInfo>,
    pub error: Option<RunError>,
    /// Human notes (warnings that did not fail the run).
    #[serde(default)]
    pub notes: Vec<String>,
}
