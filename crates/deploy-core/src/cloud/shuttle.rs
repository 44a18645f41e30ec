//! (being written) the shuttle provider.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, Platform};
use crate::detect::ChecklistItem;
use crate::domain::Environment;
use crate::error::{CoreError, Result};
use crate::process::Runner;
use crate::provider::{Capabilities, DeployTarget, EnvListing, Provider, StepOutcome, VersionInfo};
use crate::secret::Secret;

#[derive(Debug)]
pub struct Shuttle {
    platform: Platform,
}

impl Shuttle {
    pub fn new(cfg: &Config, _root: &Path, _runner: &Runner) -> Result<Self> {
        Ok(Self { platform: cfg.platform })
    }

    fn todo(&self) -> CoreError {
        CoreError::Refused { message: format!("{} is being built", self.platform.as_str()), hint: String::new() }
    }
}

impl Provider for Shuttle {
    fn platform(&self) -> Platform {
        self.platform
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities { strategies: vec![], rollback: None, secrets: None, migrations: None, dry_run: false, frontend: false }
    }
    async fn current_version(&self, _env: Environment) -> Result<Option<String>> {
        Err(self.todo())
    }
    async fn versions(&self, _env: Environment, _cancel: &CancellationToken) -> Result<Vec<VersionInfo>> {
        Err(self.todo())
    }
    async fn migrate(&self, _target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Err(self.todo())
    }
    async fn deploy(&self, _target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Err(self.todo())
    }
    async fn deploy_frontend(&self, _target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Err(self.todo())
    }
    async fn dry_run(&self, _target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Err(self.todo())
    }
    async fn rollback(&self, _env: Environment, _to: &str, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Err(self.todo())
    }
    async fn env_list(&self, _env: Environment, _cancel: &CancellationToken) -> Result<EnvListing> {
        Err(self.todo())
    }
    async fn env_set(&self, _env: Environment, _name: &str, _value: &Secret, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Err(self.todo())
    }
    async fn env_unset(&self, _env: Environment, _name: &str, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Err(self.todo())
    }
    async fn checklist(&self, _cancel: &CancellationToken) -> Vec<ChecklistItem> {
        Vec::new()
    }
}
