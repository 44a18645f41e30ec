//! The skill's idempotency markers (`<!-- opchain:oc-deploy-ops:… -->`): every ticket body and
//! comment the bridge writes starts with one, and the bridge searches for it before writing, so a
//! retry or a resumed run never writes twice.

use std::fmt;
use std::str::FromStr;

/// What every marker starts with; the skill's protocol fixes it.
pub const PREFIX: &str = "<!-- opchain:oc-deploy-ops:";
/// What every marker ends with.
pub const SUFFIX: &str = " -->";

/// One idempotency marker. Stored in deferred actions as `{"kind": "prod-shipped", "deploy_id": …}`.
///
/// Field values are ids (environments, SHAs, ticket ids such as `#12`, `ENG-12` or
/// `owner/repo#12`): no whitespace and no `<` or `>`, and the last field of a two-field marker
/// contains no `:` so the text parses back unambiguously. [`Marker::validate`] checks this for values from outside.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Marker {
    /// `deploy-created:<env>:<HEAD-sha>`: the deploy ticket of one environment and commit.
    DeployCreated { env: String, sha: String },
    /// `staging-verified:<deploy-id>`: staging smoke tests passed.
    StagingVerified { deploy_id: String },
    /// `prod-shipped:<deploy-id>`: production shipped.
    ProdShipped { deploy_id: String },
    /// `linked-shipped:<deploy-id>:<ticket-id>`: a linked ticket told that it shipped.
    LinkedShipped { deploy_id: String, ticket_id: String },
    /// `rollback:<deploy-id>`: the deploy was rolled back.
    Rollback { deploy_id: String },
    /// `linked-rollback:<deploy-id>:<ticket-id>`: a linked ticket told about the rollback.
    LinkedRollback { deploy_id: String, ticket_id: String },
    /// `smoke-fail:<deploy-id>`: smoke tests failed.
    SmokeFail { deploy_id: String },
    /// `rollup:<deploy-id>`: one comment listing 50+ linked tickets instead of one comment each.
    Rollup { deploy_id: String },
    /// `stale-staging:<deploy-id>`: a staging deploy ticket left open for more than 7 days.
    StaleStaging { deploy_id: String },
}

/// Why a text is not a marker, or a marker's values would not survive a round trip.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    #[error("not an oc-deploy-ops marker (expected `{PREFIX}<kind>:… -->`): {0:?}")]
    NotAMarker(String),
    #[error("unknown marker kind `{0}`")]
    UnknownKind(String),
    #[error("marker `{kind}` expects {expected} field(s) after the kind: {text:?}")]
    WrongFieldCount { kind: &'static str, expected: usize, text: String },
    #[error("marker field `{field}` has an invalid value {value:?}: {reason}")]
    InvalidValue { field: &'static str, value: String, reason: &'static str },
}

impl Marker {
    /// The kind as it appears in the text (`deploy-created`, `linked-shipped`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DeployCreated { .. } => "deploy-created",
            Self::StagingVerified { .. } => "staging-verified",
            Self::ProdShipped { .. } => "prod-shipped",
            Self::LinkedShipped { .. } => "linked-shipped",
            Self::Rollback { .. } => "rollback",
            Self::LinkedRollback { .. } => "linked-rollback",
            Self::SmokeFail { .. } => "smoke-fail",
            Self::Rollup { .. } => "rollup",
            Self::StaleStaging { .. } => "stale-staging",
        }
    }

    /// The marker as written into tickets: `<!-- opchain:oc-deploy-ops:<kind>:<fields> -->`.
    pub fn text(&self) -> String {
        self.to_string()
    }

    /// The field values in text order, named as in the skill.
    fn fields(&self) -> Vec<(&'static str, &str)> {
        match self {
            Self::DeployCreated { env, sha } => vec![("env", env), ("sha", sha)],
            Self::LinkedShipped { deploy_id, ticket_id } | Self::LinkedRollback { deploy_id, ticket_id } => {
                vec![("deploy_id", deploy_id), ("ticket_id", ticket_id)]
            }
            Self::StagingVerified { deploy_id }
            | Self::ProdShipped { deploy_id }
            | Self::Rollback { deploy_id }
            | Self::SmokeFail { deploy_id }
            | Self::Rollup { deploy_id }
            | Self::StaleStaging { deploy_id } => vec![("deploy_id", deploy_id)],
        }
    }

    /// Checks that the values can be embedded in an HTML comment and parsed back: call it on
    /// markers built from outside input (a deploy id from a request, a ticket id from a commit).
    pub fn validate(&self) -> Result<(), MarkerError> {
        for (i, (field, value)) in self.fields().into_iter().enumerate() {
            // Markers have one or two fields; only the second is split off at a `:`.
            check_value(field, value, i == 0)?;
        }
        Ok(())
    }
}

fn check_value(field: &'static str, value: &str, colon_allowed: bool) -> Result<(), MarkerError> {
    let invalid = |reason| Err(MarkerError::InvalidValue { field, value: value.to_owned(), reason });
    if value.is_empty() {
        return invalid("empty");
    }
    if value.chars().any(char::is_whitespace) {
        return invalid("contains whitespace");
    }
    // `<` and `>` could end the HTML comment early or open a new one.
    if value.contains(['<', '>']) {
        return invalid("contains `<` or `>`");
    }
    // The second field is split off at the last `:`, so it cannot contain one.
    if !colon_allowed && value.contains(':') {
        return invalid("the last of two fields cannot contain `:`");
    }
    Ok(())
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        f.write_str(self.kind())?;
        for (_, value) in self.fields() {
            write!(f, ":{value}")?;
        }
        f.write_str(SUFFIX)
    }
}

impl FromStr for Marker {
    type Err = MarkerError;

    /// Parses exactly one marker; surrounding whitespace is allowed, other text is not.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let not_a_marker = || MarkerError::NotAMarker(text.to_owned());
        let inner = text.trim().strip_prefix(PREFIX).and_then(|s| s.strip_suffix(SUFFIX)).ok_or_else(not_a_marker)?;
        let (kind, rest) = inner.split_once(':').ok_or_else(not_a_marker)?;
        let one = || -> Result<String, MarkerError> {
            check_value("deploy_id", rest, true)?;
            Ok(rest.to_owned())
        };
        let two = |kind: &'static str, first: &'static str, second: &'static str| -> Result<(String, String), MarkerError> {
            let (a, b) = rest.rsplit_once(':').ok_or_else(|| MarkerError::WrongFieldCount { kind, expected: 2, text: text.to_owned() })?;
            check_value(first, a, true)?;
            check_value(second, b, false)?;
            Ok((a.to_owned(), b.to_owned()))
        };
        let marker = match kind {
            "deploy-created" => {
                let (env, sha) = two("deploy-created", "env", "sha")?;
                Self::DeployCreated { env, sha }
            }
            "staging-verified" => Self::StagingVerified { deploy_id: one()? },
            "prod-shipped" => Self::ProdShipped { deploy_id: one()? },
            "linked-shipped" => {
                let (deploy_id, ticket_id) = two("linked-shipped", "deploy_id", "ticket_id")?;
                Self::LinkedShipped { deploy_id, ticket_id }
            }
            "rollback" => Self::Rollback { deploy_id: one()? },
            "linked-rollback" => {
                let (deploy_id, ticket_id) = two("linked-rollback", "deploy_id", "ticket_id")?;
                Self::LinkedRollback { deploy_id, ticket_id }
            }
            "smoke-fail" => Self::SmokeFail { deploy_id: one()? },
            "rollup" => Self::Rollup { deploy_id: one()? },
            "stale-staging" => Self::StaleStaging { deploy_id: one()? },
            other => return Err(MarkerError::UnknownKind(other.to_owned())),
        };
        Ok(marker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_owned()
    }

    /// Every marker the skill defines, with its exact text.
    fn all() -> Vec<(Marker, &'static str)> {
        vec![
            (
                Marker::DeployCreated { env: s("staging"), sha: s("4f2a9c1") },
                "<!-- opchain:oc-deploy-ops:deploy-created:staging:4f2a9c1 -->",
            ),
            (Marker::StagingVerified { deploy_id: s("#12") }, "<!-- opchain:oc-deploy-ops:staging-verified:#12 -->"),
            (Marker::ProdShipped { deploy_id: s("ENG-7") }, "<!-- opchain:oc-deploy-ops:prod-shipped:ENG-7 -->"),
            (
                Marker::LinkedShipped { deploy_id: s("#12"), ticket_id: s("acme/api#3") },
                "<!-- opchain:oc-deploy-ops:linked-shipped:#12:acme/api#3 -->",
            ),
            (Marker::Rollback { deploy_id: s("#12") }, "<!-- opchain:oc-deploy-ops:rollback:#12 -->"),
            (
                Marker::LinkedRollback { deploy_id: s("ENG-7"), ticket_id: s("ENG-123") },
                "<!-- opchain:oc-deploy-ops:linked-rollback:ENG-7:ENG-123 -->",
            ),
            (Marker::SmokeFail { deploy_id: s("#12") }, "<!-- opchain:oc-deploy-ops:smoke-fail:#12 -->"),
            (Marker::Rollup { deploy_id: s("#12") }, "<!-- opchain:oc-deploy-ops:rollup:#12 -->"),
            (Marker::StaleStaging { deploy_id: s("#12") }, "<!-- opchain:oc-deploy-ops:stale-staging:#12 -->"),
        ]
    }

    #[test]
    fn every_marker_text_is_pinned_and_parses_back() {
        for (marker, text) in all() {
            assert_eq!(marker.text(), text);
            assert_eq!(text.parse::<Marker>(), Ok(marker.clone()), "{text}");
            assert_eq!(marker.validate(), Ok(()), "{text}");
            assert!(text.contains(&format!(":{}:", marker.kind())), "{text}");
        }
    }

    #[test]
    fn markers_round_trip_through_json_as_tagged_objects() {
        for (marker, _) in all() {
            let json = serde_json::to_value(&marker).expect("serialize");
            assert_eq!(json["kind"], marker.kind());
            assert_eq!(serde_json::from_value::<Marker>(json).expect("deserialize"), marker);
        }
        let json = serde_json::to_value(Marker::LinkedShipped { deploy_id: s("#1"), ticket_id: s("ENG-2") }).expect("serialize");
        assert_eq!(json, serde_json::json!({"kind": "linked-shipped", "deploy_id": "#1", "ticket_id": "ENG-2"}));
    }

    #[test]
    fn the_schema_names_every_kind() {
        let schema = serde_json::to_string(&schemars::schema_for!(Marker)).expect("schema");
        for (marker, _) in all() {
            assert!(schema.contains(&format!("\"{}\"", marker.kind())), "{}", marker.kind());
        }
    }

    #[test]
    fn an_earlier_field_may_contain_a_colon() {
        let marker = Marker::LinkedShipped { deploy_id: s("run:42"), ticket_id: s("#9") };
        assert_eq!(marker.text().parse::<Marker>(), Ok(marker));
        let marker = Marker::DeployCreated { env: s("eu:prod"), sha: s("abc") };
        assert_eq!(marker.text().parse::<Marker>(), Ok(marker));
        let marker = Marker::Rollup { deploy_id: s("run:42") };
        assert_eq!(marker.validate(), Ok(()));
        assert_eq!(marker.text().parse::<Marker>(), Ok(marker));
    }

    #[test]
    fn surrounding_whitespace_is_accepted_but_not_other_text() {
        assert_eq!("  <!-- opchain:oc-deploy-ops:rollup:#1 -->\n".parse::<Marker>(), Ok(Marker::Rollup { deploy_id: s("#1") }));
        assert!(matches!("x <!-- opchain:oc-deploy-ops:rollup:#1 -->".parse::<Marker>(), Err(MarkerError::NotAMarker(_))));
    }

    #[test]
    fn malformed_markers_are_rejected() {
        type Check = fn(&MarkerError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("<!-- opchain:other-skill:rollup:#1 -->", |e| matches!(e, MarkerError::NotAMarker(_))),
            ("<!-- opchain:oc-deploy-ops:rollup -->", |e| matches!(e, MarkerError::NotAMarker(_))),
            ("<!-- opchain:oc-deploy-ops:rollup:#1-->", |e| matches!(e, MarkerError::NotAMarker(_))),
            ("<!-- opchain:oc-deploy-ops:shipped:#1 -->", |e| matches!(e, MarkerError::UnknownKind(k) if k == "shipped")),
            ("<!-- opchain:oc-deploy-ops:deploy-created:staging -->", |e| matches!(e, MarkerError::WrongFieldCount { expected: 2, .. })),
            ("<!-- opchain:oc-deploy-ops:rollup: -->", |e| matches!(e, MarkerError::InvalidValue { reason: "empty", .. })),
            ("<!-- opchain:oc-deploy-ops:rollup:#1<#2 -->", |e| matches!(e, MarkerError::InvalidValue { .. })),
            ("<!-- opchain:oc-deploy-ops:linked-shipped::ENG-1 -->", |e| matches!(e, MarkerError::InvalidValue { field: "deploy_id", .. })),
            ("<!-- opchain:oc-deploy-ops:smoke-fail:a b -->", |e| matches!(e, MarkerError::InvalidValue { .. })),
        ];
        for (text, expected) in cases {
            let err = text.parse::<Marker>().expect_err(text);
            assert!(expected(&err), "{text}: {err:?}");
        }
    }

    #[test]
    fn validate_rejects_values_that_would_break_the_comment_or_the_parse() {
        let bad = [
            Marker::LinkedShipped { deploy_id: s("#1"), ticket_id: s("x-->y") },
            Marker::LinkedShipped { deploy_id: s("#1"), ticket_id: s("a:b") },
            Marker::Rollup { deploy_id: s("") },
            Marker::DeployCreated { env: s("staging env"), sha: s("abc") },
        ];
        for marker in bad {
            assert!(marker.validate().is_err(), "{marker:?}");
        }
    }
}
