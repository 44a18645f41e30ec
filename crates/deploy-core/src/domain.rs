//! Checked domain values. Raw tool or CLI input becomes these types once, at the edge, so inner
//! code never re-checks an environment name, a run id or a commit.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// A deploy environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Staging,
    Production,
}

impl Environment {
    pub const ALL: [Environment; 2] = [Environment::Staging, Environment::Production];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }

    /// Parses user input; accepts the common short forms `stage` and `prod`.
    pub fn parse_field(s: &str, field: &str) -> Result<Self, CoreError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "staging" | "stage" => Ok(Self::Staging),
            "production" | "prod" => Ok(Self::Production),
            other => Err(CoreError::invalid(field, format!("unknown environment `{other}`"), "use `staging` or `production`")),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_field(s, "env")
    }
}

/// A production rollout strategy (soc-deploy's `--strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Replace instances one at a time with health checks.
    #[default]
    Rolling,
    /// Start the new version beside the old, switch traffic once it is healthy.
    BlueGreen,
    /// Send a share of traffic to the new version, check it, then promote.
    Canary,
    /// Stop the old version, then start the new one (downtime accepted).
    Recreate,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rolling => "rolling",
            Self::BlueGreen => "blue-green",
            Self::Canary => "canary",
            Self::Recreate => "recreate",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A full 40-hex git commit id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct CommitSha(String);

impl CommitSha {
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        let s = s.trim();
        if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(CoreError::Git { message: format!("`{s}` is not a commit id"), hint: "make at least one commit".into() })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The version name of a release built from this commit: its 7-character short SHA.
    pub fn short(&self) -> String {
        self.0[..7].to_owned()
    }
}

impl fmt::Display for CommitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A run id: sortable by start time and unique (`r20261122t153012-1a2b3c`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    pub fn generate() -> Self {
        let now = chrono::Utc::now().format("%Y%m%dt%H%M%S");
        let rand = uuid::Uuid::new_v4().simple().to_string();
        Self(format!("r{now}-{}", &rand[..6]))
    }

    /// Checks a run id given by a caller (it ends up in file names and URIs).
    pub fn parse(s: &str, field: &str) -> Result<Self, CoreError> {
        let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(CoreError::invalid(field, format!("`{s}` is not a run id"), "use a run_id from deploy_status"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The current time as RFC 3339 UTC with seconds, the format of every timestamp oc-deploy writes.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_parse_short_forms() {
        assert_eq!("prod".parse::<Environment>().unwrap(), Environment::Production);
        let e = "qa".parse::<Environment>().unwrap_err();
        assert!(e.to_string().contains("`env`"));
    }

    #[test]
    fn run_ids_reject_paths() {
        assert!(RunId::parse("../../etc/passwd", "run_id").is_err());
        let id = RunId::generate();
        assert!(RunId::parse(id.as_str(), "run_id").is_ok());
    }

    #[test]
    fn commit_short_is_seven() {
        let c = CommitSha::parse("0123456789abcdef0123456789abcdef01234567").unwrap();
        assert_eq!(c.short(), "0123456");
    }
}
