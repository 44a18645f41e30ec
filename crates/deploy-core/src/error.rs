//! The one error type of deploy-core. Every variant maps to a stable `code`, a `hint` an agent or
//! operator can act on, and whether retrying the same call can help.

use std::path::PathBuf;

/// Everything that can go wrong in a deploy-core operation.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("no deploy config at {path}")]
    ConfigMissing { path: PathBuf },
    #[error("invalid config {file}: at `{field}`: {message}")]
    ConfigInvalid { file: PathBuf, field: String, message: String },
    #[error("invalid input `{field}`: {message}")]
    InvalidInput { field: String, message: String, hint: String },
    #[error("path `{path}` is outside the project {root}")]
    PathOutsideProject { path: String, root: PathBuf },
    #[error("environment `{env}` is locked by run {run_id} (pid {pid}, since {since})")]
    Locked { env: String, run_id: String, pid: u32, since: String },
    #[error("{program} was not found on PATH")]
    ProgramMissing { program: String, hint: String },
    #[error("{program} exited with {status}: {stderr_tail}")]
    ProgramFailed { program: String, status: String, stderr_tail: String },
    #[error("{program} timed out after {seconds}s")]
    Timeout { program: String, seconds: u64 },
    #[error("cancelled")]
    Cancelled,
    #[error("git: {message}")]
    Git { message: String, hint: String },
    #[error("confirmation refused: {message}")]
    Confirmation { message: String },
    #[error("local platform: {message}")]
    Local { message: String, hint: String },
    #[error("{path} is not valid: {message}")]
    StateInvalid { path: PathBuf, message: String },
    #[error("refused: {message}")]
    Refused { message: String, hint: String },
    /// A deploy platform (its CLI or API) refused or failed; `message` is its own words, redacted.
    #[error("{platform}: {message}")]
    Platform { platform: String, message: String, hint: String, retryable: bool },
    #[error("{what}: {message}")]
    NotFound { what: String, message: String, hint: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

impl CoreError {
    /// Wraps an IO error with what was being done and on which path.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::InvalidInput { field: field.into(), message: message.into(), hint: hint.into() }
    }

    /// A stable, machine-readable code (part of the tool result contract).
    pub fn code(&self) -> &'static str {
        match self {
            Self::ConfigMissing { .. } => "config_missing",
            Self::ConfigInvalid { .. } => "config_invalid",
            Self::InvalidInput { .. } => "invalid_input",
            Self::PathOutsideProject { .. } => "path_outside_project",
            Self::Locked { .. } => "environment_locked",
            Self::ProgramMissing { .. } => "program_missing",
            Self::ProgramFailed { .. } => "program_failed",
            Self::Timeout { .. } => "timeout",
            Self::Cancelled => "cancelled",
            Self::Git { .. } => "git_error",
            Self::Confirmation { .. } => "confirmation_refused",
            Self::Local { .. } => "local_platform_error",
            Self::Refused { .. } => "refused",
            Self::StateInvalid { .. } => "state_invalid",
            Self::NotFound { .. } => "not_found",
            Self::Platform { .. } => "platform_error",
            Self::Io { .. } => "io_error",
        }
    }

    /// What the caller can do about it.
    pub fn hint(&self) -> String {
        match self {
            Self::ConfigMissing { .. } => {
                "run deploy_init with write: true (CLI: oc-deploy init --write) to create .oc-deploy-ops.json".into()
            }
            Self::ConfigInvalid { field, .. } => {
                format!("fix `{field}` in .oc-deploy-ops.json (schema: schemas/oc-deploy-ops.config.schema.json)")
            }
            Self::InvalidInput { hint, .. }
            | Self::ProgramMissing { hint, .. }
            | Self::Git { hint, .. }
            | Self::Local { hint, .. }
            | Self::Refused { hint, .. }
            | Self::NotFound { hint, .. }
            | Self::Platform { hint, .. } => hint.clone(),
            Self::StateInvalid { .. } => {
                "fix the file by hand or restore it from version control (oc-deploy writes it atomically, so a broken one was edited)"
                    .into()
            }
            Self::PathOutsideProject { .. } => "use a path inside the project directory the server was started with (--project-dir)".into(),
            Self::Locked { .. } => "wait for the running deploy to finish (deploy_status shows it), then retry".into(),
            Self::ProgramFailed { program, .. } => format!("read the output of {program} above, fix the cause and retry"),
            Self::Timeout { .. } => "retry; if it keeps timing out, raise the timeout in the config".into(),
            Self::Cancelled => "the run was cancelled; start it again when ready".into(),
            Self::Confirmation { .. } => "call the tool again without `confirmation` to get a fresh plan and token".into(),
            Self::Io { .. } => "check the permissions and free space of the project directory".into(),
        }
    }

    /// Whether the same call may succeed if retried unchanged.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Locked { .. } | Self::Timeout { .. } | Self::Io { .. } | Self::Local { .. })
            || matches!(self, Self::Platform { retryable: true, .. })
    }
}
