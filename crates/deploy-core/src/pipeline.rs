//! The pipeline state machine: closed `State` and `Event` enums and a pure transition function.
//! Operations drive every run through it, so a refusal here is a refusal to deploy: nothing
//! reaches `Deploying` in production without a non-blocking gate, a human's confirmation and a
//! verified staging run for the same commit (or an explicit, recorded `direct`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::Environment;
use crate::gate::Decision;
use crate::run::RunKind;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Planned,
    Gated,
    AwaitingConfirmation,
    Deploying,
    Deployed,
    Verifying,
    Verified,
    Failed,
    RollingBack,
    RolledBack,
    Blocked,
    Declined,
    Cancelled,
    Interrupted,
}

impl State {
    /// No event moves a run out of these.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Verified | Self::RolledBack | Self::Blocked | Self::Declined | Self::Cancelled | Self::Interrupted)
    }
}

/// What happens to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    GateDecided {
        decision: Decision,
        needs_confirmation: bool,
    },
    /// Whether a verified staging run exists for this run's commit.
    StagingEvidence {
        verified_for_commit: bool,
    },
    ConfirmationRequested,
    Confirmed,
    Declined,
    DeployStarted,
    DeployFinished,
    DeployFailed,
    VerifyStarted,
    VerifyPassed,
    VerifyFailed,
    RollbackStarted,
    RollbackFinished,
    RollbackFailed,
    Cancel,
    Interrupt,
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{event:?} is not allowed in state {state:?}: {why}")]
pub struct Refusal {
    pub state: State,
    pub event: Event,
    pub why: &'static str,
}

/// A run's machine: its state plus the facts the safety rules need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    pub kind: RunKind,
    pub env: Environment,
    /// Production without staging, by the operator's explicit choice (recorded).
    pub direct: bool,
    pub state: State,
    pub gate: Option<Decision>,
    pub gate_needs_confirmation: bool,
    pub staging_verified: bool,
    pub confirmed: bool,
    /// New code reached the environment in this run.
    pub shipped: bool,
}

impl Machine {
    pub fn new(kind: RunKind, env: Environment, direct: bool) -> Self {
        Self {
            kind,
            env,
            direct,
            state: State::Planned,
            gate: None,
            gate_needs_confirmation: false,
            staging_verified: false,
            confirmed: false,
            shipped: false,
        }
    }

    /// Whether a human's yes is needed before deploying.
    pub fn needs_confirmation(&self) -> bool {
        self.env == Environment::Production || self.gate_needs_confirmation
    }

    /// The safety rule for starting a deploy.
    fn may_deploy(&self) -> Result<(), &'static str> {
        match self.gate {
            None => return Err("the gate has not run"),
            Some(Decision::Block) => return Err("the gate blocked this deploy"),
            Some(_) => {}
        }
        if self.needs_confirmation() && !self.confirmed {
            return Err("a human has not confirmed");
        }
        if self.env == Environment::Production && !self.staging_verified && !self.direct {
            return Err("no verified staging run for this commit");
        }
        Ok(())
    }

    /// Applies an event, returning the next machine or a refusal. Pure.
    pub fn next(&self, event: Event) -> Result<Machine, Refusal> {
        use State as S;
        let refuse = |why| Refusal { state: self.state, event, why };
        if self.state.is_terminal() {
            return Err(refuse("the run is over"));
        }
        let mut m = *self;
        match (self.state, event) {
            (_, Event::Cancel) => m.state = S::Cancelled,
            (_, Event::Interrupt) => m.state = S::Interrupted,
            (S::Planned, Event::GateDecided { decision, needs_confirmation }) if self.kind != RunKind::Rollback => {
                m.gate = Some(decision);
                m.gate_needs_confirmation = needs_confirmation && decision == Decision::Warn;
                m.state = if decision == Decision::Block { S::Blocked } else { S::Gated };
            }
            (S::Planned | S::Gated, Event::StagingEvidence { verified_for_commit }) => m.staging_verified = verified_for_commit,
            (S::Gated, Event::ConfirmationRequested) => m.state = S::AwaitingConfirmation,
            (S::Gated | S::AwaitingConfirmation, Event::Confirmed) => {
                m.confirmed = true;
                m.state = S::Gated;
            }
            (S::Gated | S::AwaitingConfirmation, Event::Declined) => m.state = S::Declined,
            (S::Gated, Event::DeployStarted) => {
                self.may_deploy().map_err(refuse)?;
                m.state = S::Deploying;
            }
            (S::Deploying, Event::DeployFinished) => {
                m.shipped = true;
                m.state = S::Deployed;
            }
            (S::Deploying, Event::DeployFailed) => {
                // A failed deploy may have half-shipped (a new release took some traffic).
                m.shipped = true;
                m.state = S::Failed;
            }
            (S::Deployed, Event::VerifyStarted) => m.state = S::Verifying,
            (S::Failed, Event::VerifyStarted) if self.shipped => m.state = S::Verifying,
            (S::Verifying, Event::VerifyPassed) => m.state = S::Verified,
            (S::Verifying, Event::VerifyFailed) => m.state = S::Failed,
            (S::Deployed | S::Verifying | S::Failed, Event::RollbackStarted) if self.shipped => m.state = S::RollingBack,
            (S::Planned, Event::RollbackStarted) if self.kind == RunKind::Rollback => m.state = S::RollingBack,
            (S::RollingBack, Event::RollbackFinished) => m.state = S::RolledBack,
            (S::RollingBack, Event::RollbackFailed) => m.state = S::Failed,
            _ => return Err(refuse("no such transition")),
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = Event> {
        let decision = prop_oneof![Just(Decision::Proceed), Just(Decision::Warn), Just(Decision::Block)];
        prop_oneof![
            (decision, any::<bool>()).prop_map(|(decision, needs_confirmation)| { Event::GateDecided { decision, needs_confirmation } }),
            any::<bool>().prop_map(|v| Event::StagingEvidence { verified_for_commit: v }),
            Just(Event::ConfirmationRequested),
            Just(Event::Confirmed),
            Just(Event::Declined),
            Just(Event::DeployStarted),
            Just(Event::DeployFinished),
            Just(Event::DeployFailed),
            Just(Event::VerifyStarted),
            Just(Event::VerifyPassed),
            Just(Event::VerifyFailed),
            Just(Event::RollbackStarted),
            Just(Event::RollbackFinished),
            Just(Event::RollbackFailed),
            Just(Event::Cancel),
            Just(Event::Interrupt),
        ]
    }

    fn kind() -> impl Strategy<Value = RunKind> {
        prop_oneof![Just(RunKind::Staging), Just(RunKind::Production), Just(RunKind::Rollback)]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

        /// No sequence of events ships production without a non-blocking gate, a confirmation,
        /// and staging verified for the commit (or `direct`, which the record flags).
        #[test]
        fn production_never_ships_without_gate_confirmation_and_staging(
            kind in kind(), direct in any::<bool>(), events in proptest::collection::vec(event(), 0..24)
        ) {
            let mut m = Machine::new(kind, Environment::Production, direct);
            for e in events {
                if let Ok(n) = m.next(e) {
                    if n.state == State::Deploying {
                        prop_assert!(matches!(n.gate, Some(Decision::Proceed | Decision::Warn)));
                        prop_assert!(n.confirmed);
                        prop_assert!(n.staging_verified || n.direct);
                    }
                    if n.shipped && n.kind != RunKind::Rollback {
                        prop_assert!(n.confirmed && n.gate != Some(Decision::Block));
                    }
                    m = n;
                }
            }
        }

        /// Staging ships with a non-blocking gate; a HIGH-findings warning needs a confirmation.
        #[test]
        fn staging_respects_the_gate(events in proptest::collection::vec(event(), 0..24)) {
            let mut m = Machine::new(RunKind::Staging, Environment::Staging, false);
            for e in events {
                if let Ok(n) = m.next(e) {
                    if n.state == State::Deploying {
                        prop_assert!(n.gate.is_some_and(|g| g != Decision::Block));
                        prop_assert!(!n.gate_needs_confirmation || n.confirmed);
                    }
                    m = n;
                }
            }
        }

        /// Terminal states stay terminal.
        #[test]
        fn terminal_states_are_final(events in proptest::collection::vec(event(), 0..24)) {
            let mut m = Machine::new(RunKind::Production, Environment::Production, false);
            for e in events {
                let was_terminal = m.state.is_terminal();
                if let Ok(n) = m.next(e) { prop_assert!(!was_terminal); m = n; }
            }
        }
    }

    #[test]
    fn the_happy_production_path() {
        let mut m = Machine::new(RunKind::Production, Environment::Production, false);
        for e in [
            Event::GateDecided { decision: Decision::Proceed, needs_confirmation: false },
            Event::StagingEvidence { verified_for_commit: true },
            Event::ConfirmationRequested,
            Event::Confirmed,
            Event::DeployStarted,
            Event::DeployFinished,
            Event::VerifyStarted,
            Event::VerifyFailed,
            Event::VerifyStarted,
            Event::VerifyFailed,
            Event::RollbackStarted,
            Event::RollbackFinished,
        ] {
            m = m.next(e).unwrap_or_else(|r| panic!("{r}"));
        }
        assert_eq!(m.state, State::RolledBack);
    }

    #[test]
    fn unconfirmed_production_is_refused() {
        let m = Machine::new(RunKind::Production, Environment::Production, false)
            .next(Event::GateDecided { decision: Decision::Proceed, needs_confirmation: false })
            .unwrap()
            .next(Event::StagingEvidence { verified_for_commit: true })
            .unwrap();
        let r = m.next(Event::DeployStarted).unwrap_err();
        assert_eq!(r.why, "a human has not confirmed");
        let m = m.next(Event::Confirmed).unwrap().next(Event::StagingEvidence { verified_for_commit: false }).unwrap();
        assert_eq!(m.next(Event::DeployStarted).unwrap_err().why, "no verified staging run for this commit");
    }
}
