//! The pre-deploy gate, exactly as the skill's table says. A pure function from finding counts
//! to a decision; reading the auditors' checkpoints lives in `audit`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Proceed,
    Warn,
    Block,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proceed => "proceed",
            Self::Warn => "warn",
            Self::Block => "block",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// One finding that reached the gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    /// Where it came from: `oc-code-auditor`, `oc-security-auditor`, `bin/audit`, …
    pub source: String,
    pub severity: Severity,
    pub title: String,
    /// How to fix it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Finding counts by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Counts {
    pub critical: u32,
    pub high: u32,
    pub medium: u32,
    pub low: u32,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.critical += other.critical;
        self.high += other.high;
        self.medium += other.medium;
        self.low += other.low;
    }
}

/// What one audit source contributed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SourceStatus {
    pub source: String,
    /// `fresh`, `stale`, `missing`, `unreadable`, `passed`, `failed`, `not_configured`.
    pub status: String,
    pub counts: Counts,
    /// Age of the checkpoint in seconds, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<i64>,
    pub detail: String,
}

/// The inputs of the gate: what the audits said, and whether any audit counted at all.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GateInput {
    pub counts: Counts,
    /// True when no audit result could be used (none run, or all stale).
    pub no_audit: bool,
}

/// The gate's full answer: decision, why, and whether a human must confirm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GateResult {
    pub decision: Decision,
    pub counts: Counts,
    /// A HIGH-findings warning needs a human's explicit yes before deploying.
    pub needs_confirmation: bool,
    pub reasons: Vec<String>,
    pub findings: Vec<Finding>,
    pub sources: Vec<SourceStatus>,
    /// Set when `skip_security` bypassed a blocking gate (high risk, confirmed).
    #[serde(default)]
    pub skipped: bool,
    pub checked_at: String,
}

/// The most HIGH findings that still only warn.
pub const MAX_HIGH_TO_WARN: u32 = 3;

/// The skill's gate table: CRITICAL blocks; HIGH > 3 blocks; HIGH ≤ 3 warns and needs
/// confirmation; no audit warns; otherwise proceed.
pub fn decide(input: &GateInput) -> (Decision, bool, Vec<String>) {
    let c = input.counts;
    let mut reasons = Vec::new();
    if c.critical > 0 {
        reasons.push(format!("{} CRITICAL finding(s): must fix before deploy", c.critical));
    }
    if c.high > MAX_HIGH_TO_WARN {
        reasons.push(format!("{} HIGH findings (> {MAX_HIGH_TO_WARN}): too many unresolved issues", c.high));
    }
    if !reasons.is_empty() {
        return (Decision::Block, false, reasons);
    }
    let mut needs_confirmation = false;
    if c.high > 0 {
        reasons.push(format!("{} HIGH finding(s) (≤ {MAX_HIGH_TO_WARN}): proceed only with explicit confirmation", c.high));
        needs_confirmation = true;
    }
    if input.no_audit {
        reasons.push("no audit run: run oc-code-auditor (/oc-audit pre-deploy) and oc-security-auditor first".into());
    }
    if reasons.is_empty() {
        reasons.push("no CRITICAL findings, HIGH within limits".into());
        (Decision::Proceed, false, reasons)
    } else {
        (Decision::Warn, needs_confirmation, reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(critical: u32, high: u32, no_audit: bool, want: Decision, confirm: bool) {
        let input = GateInput { counts: Counts { critical, high, medium: 5, low: 9 }, no_audit };
        let (d, c, reasons) = decide(&input);
        assert_eq!((d, c), (want, confirm), "{reasons:?}");
        assert!(!reasons.is_empty());
    }

    #[test]
    fn the_skill_table() {
        check(0, 0, false, Decision::Proceed, false);
        check(1, 0, false, Decision::Block, false);
        check(0, 1, false, Decision::Warn, true);
        check(0, 3, false, Decision::Warn, true);
        check(0, 4, false, Decision::Block, false);
        check(0, 0, true, Decision::Warn, false);
        check(2, 9, true, Decision::Block, false);
        check(0, 2, true, Decision::Warn, true);
    }
}
