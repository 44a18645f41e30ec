//! `pm.yaml` at the project root: which tracker holds the deploy tickets, the deploy issue type,
//! and the project's names for the skill's extended states. State names come only from here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file name, at the project root.
pub const FILE_NAME: &str = "pm.yaml";

/// The issue type used when `issue_types.deploy` is not set.
pub const DEFAULT_DEPLOY_ISSUE_TYPE: &str = "Deploy";

/// `pm.yaml`. Unknown fields are errors, so a typo never silently turns a feature off.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PmConfig {
    pub tracker: TrackerKind,
    /// Required when `tracker: github`. The token is `GITHUB_TOKEN`, the endpoint `GITHUB_API_URL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GitHubConfig>,
    /// Required when `tracker: linear`. The token is `LINEAR_API_KEY`, the endpoint `LINEAR_API_URL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear: Option<LinearConfig>,
    #[serde(default)]
    pub issue_types: IssueTypes,
    #[serde(default)]
    pub states: States,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrackerKind {
    Github,
    Linear,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitHubConfig {
    /// `owner/name`.
    pub repo: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinearConfig {
    /// The team key, as in `ENG-12`.
    pub team: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueTypes {
    /// The deploy ticket's issue type: a label on GitHub and on Linear. Default `Deploy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct States {
    /// The skill's state keys (`staging-verified`, `shipped`, `rolled-back`, `blocked`) mapped to
    /// the project's workflow state names (Linear) or label names (GitHub). A missing key means
    /// the bridge makes no transition for that event.
    #[serde(default)]
    pub extended: BTreeMap<String, String>,
}

/// The skill's extended state vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StateKey {
    StagingVerified,
    Shipped,
    RolledBack,
    Blocked,
}

impl StateKey {
    pub const ALL: [StateKey; 4] = [Self::StagingVerified, Self::Shipped, Self::RolledBack, Self::Blocked];

    /// The key as written under `states.extended`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StagingVerified => "staging-verified",
            Self::Shipped => "shipped",
            Self::RolledBack => "rolled-back",
            Self::Blocked => "blocked",
        }
    }
}

/// Why `pm.yaml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Malformed YAML, a wrong type, or an unknown field (serde's message names it and its line).
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// Well-formed, but not usable.
    #[error("{path}: {message}\nhint: {hint}")]
    Invalid { path: PathBuf, message: String, hint: String },
}

impl PmConfig {
    /// Reads `pm.yaml` from the project root; `Ok(None)` when there is none (the bridge is off).
    pub fn load(root: &Path) -> Result<Option<PmConfig>, ConfigError> {
        let path = root.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::parse(&text, &path).map(Some)
    }

    /// Parses and checks `pm.yaml` text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<PmConfig, ConfigError> {
        let config: PmConfig =
            serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        config.check().map_err(|(message, hint)| ConfigError::Invalid { path: path.to_owned(), message, hint })?;
        Ok(config)
    }

    /// Checks what serde cannot: the chosen tracker's section, the repository's form, and the
    /// state keys.
    fn check(&self) -> Result<(), (String, String)> {
        match self.tracker {
            TrackerKind::Github => {
                let Some(github) = &self.github else {
                    return Err(("`tracker: github` needs a `github:` section".into(), "add `github: { repo: owner/name }`".into()));
                };
                let valid = github.repo.split_once('/').is_some_and(|(owner, name)| is_repo_part(owner) && is_repo_part(name));
                if !valid {
                    return Err((
                        format!("`github.repo` must be `owner/name`, not {:?}", github.repo),
                        "for example `repo: acme/shop`".into(),
                    ));
                }
            }
            TrackerKind::Linear => {
                let Some(linear) = &self.linear else {
                    return Err((
                        "`tracker: linear` needs a `linear:` section".into(),
                        "add `linear: { team: ENG }` (the team key)".into(),
                    ));
                };
                if linear.team.trim().is_empty() {
                    return Err(("`linear.team` is empty".into(), "set it to the team key, as in `ENG-12`".into()));
                }
            }
        }
        if self.issue_types.deploy.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err((
                "`issue_types.deploy` is empty".into(),
                format!("remove it to use {DEFAULT_DEPLOY_ISSUE_TYPE:?}, or name the issue type"),
            ));
        }
        let known: Vec<&str> = StateKey::ALL.iter().map(|k| k.as_str()).collect();
        for (key, name) in &self.states.extended {
            if !known.contains(&key.as_str()) {
                return Err((format!("unknown state key `{key}` under `states.extended`"), format!("the keys are {}", known.join(", "))));
            }
            if name.trim().is_empty() {
                return Err((
                    format!("`states.extended.{key}` is empty"),
                    "remove the key to make no transition, or name the state".into(),
                ));
            }
        }
        Ok(())
    }

    /// The project's name for a state, or `None` when `pm.yaml` does not map it: then the bridge
    /// makes no transition and says so, rather than inventing a name.
    pub fn state(&self, key: StateKey) -> Option<&str> {
        self.states.extended.get(key.as_str()).map(String::as_str)
    }

    /// The deploy ticket's issue type: `issue_types.deploy`, or `Deploy`.
    pub fn deploy_issue_type(&self) -> &str {
        self.issue_types.deploy.as_deref().unwrap_or(DEFAULT_DEPLOY_ISSUE_TYPE)
    }
}

/// GitHub owner and repository names: letters, digits, `-`, `_` and `.`.
fn is_repo_part(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from design §7, verbatim.
    const DESIGN_EXAMPLE: &str = "\
tracker: github                 # or: linear
github: { repo: acme/shop }     # GITHUB_TOKEN; endpoint GITHUB_API_URL
linear: { team: ENG }           # LINEAR_API_KEY; endpoint LINEAR_API_URL
issue_types: { deploy: Deploy }
states:
  extended:
    staging-verified: Staging verified
    shipped: Done
    rolled-back: Rolled back
    blocked: Blocked
";

    fn parse(text: &str) -> Result<PmConfig, ConfigError> {
        PmConfig::parse(text, Path::new("pm.yaml"))
    }

    #[test]
    fn the_design_example_parses() {
        let config = parse(DESIGN_EXAMPLE).expect("design example");
        assert_eq!(config.tracker, TrackerKind::Github);
        assert_eq!(config.github, Some(GitHubConfig { repo: "acme/shop".into() }));
        assert_eq!(config.linear, Some(LinearConfig { team: "ENG".into() }));
        assert_eq!(config.deploy_issue_type(), "Deploy");
        let states: Vec<_> = StateKey::ALL.iter().map(|k| config.state(*k)).collect();
        assert_eq!(states, [Some("Staging verified"), Some("Done"), Some("Rolled back"), Some("Blocked")]);
    }

    #[test]
    fn missing_states_mean_no_transition_and_the_issue_type_defaults() {
        let config = parse("tracker: linear\nlinear: { team: ENG }\nstates: { extended: { shipped: Released } }\n").expect("config");
        assert_eq!(config.tracker, TrackerKind::Linear);
        assert_eq!(config.state(StateKey::Shipped), Some("Released"));
        for key in [StateKey::StagingVerified, StateKey::RolledBack, StateKey::Blocked] {
            assert_eq!(config.state(key), None, "{key:?}");
        }
        assert_eq!(config.deploy_issue_type(), DEFAULT_DEPLOY_ISSUE_TYPE);

        let minimal = parse("tracker: github\ngithub:\n  repo: acme/shop\n").expect("minimal");
        assert!(StateKey::ALL.iter().all(|k| minimal.state(*k).is_none()));
        assert_eq!(
            parse("tracker: github\ngithub: { repo: a/b }\nissue_types: { deploy: Release }\n").expect("type").deploy_issue_type(),
            "Release"
        );
    }

    #[test]
    fn errors_name_the_offending_field() {
        let cases = [
            ("trackr: github\n", "trackr"),
            ("tracker: github\ngithub: { repo: a/b, token: x }\n", "token"),
            ("tracker: github\ngithub: { repo: a/b }\nissue_types: { deploy: D, bug: B }\n", "bug"),
            ("tracker: github\ngithub: { repo: a/b }\nstates: { extnded: {} }\n", "extnded"),
            ("tracker: github\ngithub: { repo: a/b }\nstates: { extended: { shiped: Done } }\n", "shiped"),
            ("tracker: github\ngithub: { repo: a/b }\nstates: { extended: { shipped: '' } }\n", "states.extended.shipped"),
            ("tracker: jira\n", "jira"),
            ("tracker: github\n", "github:"),
            ("tracker: github\ngithub: { repo: shop }\n", "github.repo"),
            ("tracker: github\ngithub: { repo: 'acme/shop/x' }\n", "github.repo"),
            ("tracker: linear\n", "linear:"),
            ("tracker: linear\nlinear: { team: ' ' }\n", "linear.team"),
            ("tracker: github\ngithub: { repo: a/b }\nissue_types: { deploy: '' }\n", "issue_types.deploy"),
            ("github: { repo: a/b }\n", "tracker"),
        ];
        for (text, needle) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(err.starts_with("pm.yaml: "), "{err}");
        }
    }

    #[test]
    fn load_reads_the_project_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(PmConfig::load(dir.path()).expect("no file").is_none());

        std::fs::write(dir.path().join(FILE_NAME), DESIGN_EXAMPLE).expect("write");
        let config = PmConfig::load(dir.path()).expect("load").expect("present");
        assert_eq!(config.github.map(|g| g.repo).as_deref(), Some("acme/shop"));

        std::fs::write(dir.path().join(FILE_NAME), "tracker: github\ngithub: { repo: a/b }\nnotify: true\n").expect("write");
        let err = PmConfig::load(dir.path()).expect_err("unknown field");
        assert!(matches!(&err, ConfigError::Parse { path, message } if path.ends_with(FILE_NAME) && message.contains("notify")), "{err}");
    }

    #[test]
    fn an_unreadable_pm_yaml_is_an_error_not_absence() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the file should be cannot be read as text.
        std::fs::create_dir(dir.path().join(FILE_NAME)).expect("mkdir");
        assert!(matches!(PmConfig::load(dir.path()), Err(ConfigError::Read { .. })));
    }

    #[test]
    fn state_keys_serialize_as_in_pm_yaml() {
        for key in StateKey::ALL {
            assert_eq!(serde_json::to_value(key).expect("json"), key.as_str());
        }
    }
}
