//! Human confirmation: the plan a human says yes to, and one-time tokens bound to that plan for
//! clients that cannot ask the human themselves. A token is stored only as a hash, expires, is
//! used once, and is refused for any other plan (changed commit, strategy or gate result).

use std::future::Future;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{Environment, Strategy, now_rfc3339};
use crate::error::{CoreError, Result};
use crate::gate::{Counts, Decision};

/// What a human is asked to approve. Every field shown; the binding ones are hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    pub env: Environment,
    pub commit: String,
    pub version: String,
    /// The commits this deploy adds over what runs now (`old..new`), when known.
    pub commit_range: Option<String>,
    pub strategy: Option<Strategy>,
    pub gate_decision: Decision,
    pub gate_counts: Counts,
    /// The staging smoke result for this commit (`pass`, `fail`, `none`).
    pub staging_smoke: String,
    pub previous_version: Option<String>,
    pub direct: bool,
    pub skip_security: bool,
    /// Why a confirmation is needed, in one line each.
    pub reasons: Vec<String>,
    /// A change that is not a deploy (e.g. `set API_KEY from env:API_KEY`): what is approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
}

impl Plan {
    /// The fingerprint a token is bound to: environment, commit, strategy, gate result and the
    /// risk flags. Display-only fields are left out.
    pub fn digest(&self) -> String {
        let binding = serde_json::json!({
            "env": self.env, "commit": self.commit, "strategy": self.strategy,
            "gate": self.gate_decision, "counts": self.gate_counts,
            "direct": self.direct, "skip_security": self.skip_security, "change": self.change,
        });
        hex(&Sha256::digest(binding.to_string().as_bytes()))
    }

    /// A short human summary, for prompts and the confirmation form.
    pub fn summary(&self) -> String {
        if let Some(change) = &self.change {
            return format!("Change {}: {change}. {}", self.env, self.reasons.join(" "));
        }
        let mut s = format!(
            "Deploy {} ({}) to {}{}. Gate: {} ({} critical, {} high). Staging smoke: {}. Previous version: {}.",
            self.version,
            self.commit_range.as_deref().unwrap_or(&self.commit),
            self.env,
            self.strategy.map(|s| format!(" with {s}")).unwrap_or_default(),
            self.gate_decision.as_str(),
            self.gate_counts.critical,
            self.gate_counts.high,
            self.staging_smoke,
            self.previous_version.as_deref().unwrap_or("none"),
        );
        if self.direct {
            s.push_str(" DIRECT: staging is skipped.");
        }
        if self.skip_security {
            s.push_str(" HIGH RISK: the security gate is skipped.");
        }
        s
    }
}

/// The answer of a human, or why there was none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    Approved {
        by: String,
    },
    Declined,
    Cancelled,
    /// This client cannot ask a human: fall back to a one-time token the agent passes back.
    Unavailable,
    /// The client will ask the human in a later round (multi-round-trip input): issue an
    /// input-request token that only that round can redeem.
    Deferred,
}

/// Asks a human to approve a plan (MCP elicitation, a terminal prompt, …).
pub trait Confirmer: Send + Sync {
    fn confirm(&self, plan: &Plan) -> impl Future<Output = ConfirmOutcome> + Send;
}

/// A confirmer that can never ask (the token path).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoConfirmer;

impl Confirmer for NoConfirmer {
    async fn confirm(&self, _plan: &Plan) -> ConfirmOutcome {
        ConfirmOutcome::Unavailable
    }
}

/// A token handed to the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TokenFile {
    tokens: Vec<StoredToken>,
}

/// What a token may be redeemed for. A token handed to the agent (`confirmation`) and a token
/// sealed into a multi-round-trip request state are not interchangeable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPurpose {
    #[default]
    Confirmation,
    InputRequest,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredToken {
    #[serde(default)]
    purpose: TokenPurpose,
    token_sha256: String,
    plan_digest: String,
    plan: Plan,
    expires_at: i64,
}

/// One-time tokens, kept under `.oc-deploy/` so the CLI twin and every MCP session share them.
#[derive(Debug, Clone)]
pub struct Tokens {
    path: PathBuf,
    ttl_seconds: i64,
}

/// How long a confirmation token lives.
pub const TOKEN_TTL_SECONDS: i64 = 15 * 60;

impl Tokens {
    pub fn new(root: &Path) -> Self {
        Self { path: root.join(".oc-deploy").join("confirmations.json"), ttl_seconds: TOKEN_TTL_SECONDS }
    }

    pub fn with_ttl(mut self, seconds: i64) -> Self {
        self.ttl_seconds = seconds;
        self
    }

    /// Issues a confirmation token for this plan.
    pub fn issue(&self, plan: &Plan) -> Result<IssuedToken> {
        self.issue_for(plan, TokenPurpose::Confirmation)
    }

    /// Uses a confirmation token for this plan.
    pub fn redeem(&self, token: &str, plan: &Plan) -> Result<()> {
        self.redeem_for(token, plan, TokenPurpose::Confirmation)
    }

    /// Issues a token for this plan and purpose.
    pub fn issue_for(&self, plan: &Plan, purpose: TokenPurpose) -> Result<IssuedToken> {
        let token = format!("ocd-{}", uuid::Uuid::new_v4().simple());
        let expires = chrono::Utc::now().timestamp() + self.ttl_seconds;
        self.with_file(|f| {
            f.tokens.push(StoredToken {
                purpose,
                token_sha256: hex(&Sha256::digest(token.as_bytes())),
                plan_digest: plan.digest(),
                plan: plan.clone(),
                expires_at: expires,
            });
            Ok(())
        })?;
        let expires_at = chrono::DateTime::from_timestamp(expires, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(now_rfc3339);
        Ok(IssuedToken { token, expires_at })
    }

    /// Uses a token for this plan and purpose. It is gone afterwards, whether it matched or not,
    /// so a leaked or guessed token cannot be retried against other plans.
    pub fn redeem_for(&self, token: &str, plan: &Plan, purpose: TokenPurpose) -> Result<()> {
        let hash = hex(&Sha256::digest(token.trim().as_bytes()));
        let now = chrono::Utc::now().timestamp();
        self.with_file(|f| {
            let Some(pos) = f.tokens.iter().position(|t| t.token_sha256 == hash) else {
                return Err(CoreError::Confirmation { message: "unknown or already used confirmation token".into() });
            };
            let stored = f.tokens.remove(pos);
            if stored.purpose != purpose {
                return Err(CoreError::Confirmation { message: "this token cannot be used here".into() });
            }
            if stored.expires_at < now {
                return Err(CoreError::Confirmation { message: "the confirmation token expired".into() });
            }
            if stored.plan_digest != plan.digest() {
                return Err(CoreError::Confirmation {
                    message: format!("the token was issued for another plan ({})", differences(&stored.plan, plan)),
                });
            }
            Ok(())
        })
    }

    fn with_file<T>(&self, f: impl FnOnce(&mut TokenFile) -> Result<T>) -> Result<T> {
        let lock = self.path.with_file_name(".confirmations.lock");
        crate::fsutil::with_lock(&lock, || {
            let mut file: TokenFile =
                std::fs::read_to_string(&self.path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
            let now = chrono::Utc::now().timestamp();
            file.tokens.retain(|t| t.expires_at >= now);
            let out = f(&mut file);
            // Written even when `f` failed: a redeemed (burnt) or expired token must stay gone.
            crate::fsutil::write_json_atomic(&self.path, &file)?;
            out
        })
    }
}

/// Names what changed between two plans.
fn differences(a: &Plan, b: &Plan) -> String {
    let mut d = Vec::new();
    if a.env != b.env {
        d.push(format!("environment {} → {}", a.env, b.env));
    }
    if a.commit != b.commit {
        d.push(format!("commit {} → {}", &a.version, &b.version));
    }
    if a.strategy != b.strategy {
        d.push(format!("strategy {:?} → {:?}", a.strategy, b.strategy));
    }
    if a.gate_decision != b.gate_decision || a.gate_counts != b.gate_counts {
        d.push(format!("gate {} → {}", a.gate_decision.as_str(), b.gate_decision.as_str()));
    }
    if a.direct != b.direct {
        d.push("direct changed".into());
    }
    if a.skip_security != b.skip_security {
        d.push("skip_security changed".into());
    }
    if d.is_empty() { "plan changed".into() } else { d.join(", ") }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            env: Environment::Production,
            commit: "a".repeat(40),
            version: "aaaaaaa".into(),
            commit_range: None,
            strategy: Some(Strategy::BlueGreen),
            gate_decision: Decision::Proceed,
            gate_counts: Counts::default(),
            staging_smoke: "pass".into(),
            previous_version: None,
            direct: false,
            skip_security: false,
            reasons: vec![],
            change: None,
        }
    }

    #[test]
    fn a_token_works_once_for_its_plan() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::new(dir.path());
        let tok = t.issue(&plan()).unwrap();
        t.redeem(&tok.token, &plan()).unwrap();
        let again = t.redeem(&tok.token, &plan()).unwrap_err();
        assert!(again.to_string().contains("already used"));
        assert!(
            !std::fs::read_to_string(dir.path().join(".oc-deploy/confirmations.json")).unwrap().contains(&tok.token),
            "tokens are stored hashed"
        );
    }

    #[test]
    fn a_token_for_another_plan_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::new(dir.path());
        for change in [
            (|p: &mut Plan| p.commit = "b".repeat(40)) as fn(&mut Plan),
            |p| p.strategy = Some(Strategy::Canary),
            |p| p.gate_decision = Decision::Warn,
            |p| p.direct = true,
        ] {
            let tok = t.issue(&plan()).unwrap();
            let mut other = plan();
            change(&mut other);
            let e = t.redeem(&tok.token, &other).unwrap_err();
            assert!(e.to_string().contains("another plan"), "{e}");
        }
    }

    #[test]
    fn an_input_request_token_is_not_a_confirmation_token() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::new(dir.path());
        let tok = t.issue_for(&plan(), TokenPurpose::InputRequest).unwrap();
        assert!(t.redeem(&tok.token, &plan()).is_err());
        let tok = t.issue_for(&plan(), TokenPurpose::InputRequest).unwrap();
        t.redeem_for(&tok.token, &plan(), TokenPurpose::InputRequest).unwrap();
    }

    #[test]
    fn an_expired_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::new(dir.path()).with_ttl(-1);
        let tok = t.issue(&plan()).unwrap();
        // Expired tokens are pruned on the next access, so it reads as unknown.
        assert_eq!(t.redeem(&tok.token, &plan()).unwrap_err().code(), "confirmation_refused");
    }
}
