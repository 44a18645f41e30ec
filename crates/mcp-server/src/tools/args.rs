//! Tool inputs as the agent sends them. Unknown fields are refused (a typo must not silently
//! change a deploy); values become deploy-core domain types in `into_*` helpers, once.

use deploy_core::CoreError;
use deploy_core::domain::{Environment, RunId, Strategy};
use schemars::JsonSchema;
use serde::Deserialize;

/// The environment names accepted by the tools.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EnvArg {
    Staging,
    Production,
}

impl From<EnvArg> for Environment {
    fn from(e: EnvArg) -> Self {
        match e {
            EnvArg::Staging => Environment::Staging,
            EnvArg::Production => Environment::Production,
        }
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitArgs {
    /// Project directory, relative to the server's project root (default: the root).
    pub project_dir: Option<String>,
    /// Platform override (inside the pack's supportedPlatforms when a pack applies).
    pub platform: Option<deploy_core::config::Platform>,
    /// oc-stack-forge pack id (default: activePack of its checkpoint).
    pub pack: Option<String>,
    /// Write .oc-deploy-ops.json (never overwrites an existing one). Default false.
    #[serde(default)]
    pub write: bool,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditArgs {
    pub project_dir: Option<String>,
    /// The environment about to be deployed (informational).
    pub env: Option<EnvArg>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StagingArgs {
    pub project_dir: Option<String>,
    /// Plan and check only; deploy nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Skip the pre-flight tests (emergency use; recorded).
    #[serde(default)]
    pub skip_tests: bool,
    /// Bypass a blocking gate: HIGH RISK, needs a human's confirmation, recorded.
    #[serde(default)]
    pub skip_security: bool,
    /// A token from a `confirmation_required` answer, after the human approved its plan.
    pub confirmation: Option<String>,
    /// Return the run_id at once and deploy in the background (follow with deploy_status).
    #[serde(default)]
    pub background: bool,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmokeArgs {
    pub project_dir: Option<String>,
    /// Default staging.
    pub env: Option<EnvArg>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProdArgs {
    pub project_dir: Option<String>,
    /// Commit, tag or branch to ship (default HEAD); must have passed staging unless direct.
    pub version: Option<String>,
    pub strategy: Option<Strategy>,
    /// Roll back automatically when health fails after the deploy. Default true.
    #[serde(default = "yes")]
    pub auto_rollback: bool,
    /// Ship without a verified staging run for this commit (flagged in the record).
    #[serde(default)]
    pub direct: bool,
    #[serde(default)]
    pub dry_run: bool,
    /// Bypass a blocking gate: HIGH RISK, needs confirmation, recorded.
    #[serde(default)]
    pub skip_security: bool,
    /// A token from a `confirmation_required` answer, after the human approved its plan.
    pub confirmation: Option<String>,
    /// Return the run_id once the human has confirmed and deploy in the background.
    #[serde(default)]
    pub background: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthArgs {
    pub project_dir: Option<String>,
    /// Default production.
    pub env: Option<EnvArg>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackArgs {
    pub project_dir: Option<String>,
    /// Default production.
    pub env: Option<EnvArg>,
    /// Version to return to (default: the recorded previous version).
    pub to_version: Option<String>,
    /// Why: goes into the run record and the incident report.
    pub reason: String,
    /// Return the run_id at once and roll back in the background.
    #[serde(default)]
    pub background: bool,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {
    pub project_dir: Option<String>,
    pub env: Option<EnvArg>,
    /// One run in full.
    pub run_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointArgs {
    pub project_dir: Option<String>,
    /// Skill whose checkpoint to read (default oc-deploy-ops), e.g. oc-code-auditor.
    pub skill: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportArgs {
    pub project_dir: Option<String>,
    /// Default: the latest finished run.
    pub run_id: Option<String>,
    /// deployment or incident (default: incident for rollbacks).
    pub kind: Option<deploy_core::report::ReportKind>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvArgs {
    pub project_dir: Option<String>,
    pub env: EnvArg,
    pub action: deploy_core::ops::EnvAction,
    /// Variable name (set, unset).
    pub name: Option<String>,
    /// `env:NAME` or `file:PATH`; the value itself is never passed.
    pub value_from: Option<String>,
    /// Token from a `confirmation_required` answer (production changes).
    pub confirmation: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPmArgs {
    pub project_dir: Option<String>,
}

pub fn run_id(s: Option<&str>) -> Result<Option<RunId>, CoreError> {
    s.map(|s| RunId::parse(s, "run_id")).transpose()
}
