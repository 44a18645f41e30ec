//! Prompts: the skill's command menu and one prompt per pipeline command, so clients that
//! surface MCP prompts get the slash commands (`/oc-deploy`, `/staging`, …).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{PromptMessage, Role};
use rmcp::{prompt, prompt_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::server::OcDeploy;

/// The skill's menu, verbatim in substance.
pub const MENU: &str = "DEPLOY OPS COMMANDS
━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━
PIPELINE
/oc-deploy staging   Deploy to staging environment            (tool deploy_staging)
/oc-deploy prod      Promote staging to production            (tool deploy_prod)
/oc-deploy rollback  Revert to previous production version    (tool deploy_rollback)
/oc-deploy status    Show current deployment state            (tool deploy_status)
GATES
/oc-deploy audit     Run pre-deploy audit                     (tool deploy_audit)
/oc-deploy smoke     Run post-deploy smoke tests              (tool deploy_smoke)
/oc-deploy health    Check production health                  (tool deploy_health)
SETUP
/oc-deploy init      Set up deployment config for a project   (tool deploy_init)
/oc-deploy env       Manage environment variables and secrets (tool deploy_env)
UTILITIES
/checkpoint          Show checkpoint status                   (tool deploy_checkpoint)
/report              Report of a run                          (tool deploy_report)
/oc-deploy --retry-pm  Retry deferred ticket updates          (tool deploy_retry_pm)
━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━
Type any command to begin. /oc-deploy to see this again.";

fn ask(text: String) -> Vec<PromptMessage> {
    vec![PromptMessage::new_text(Role::User, text)]
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct EnvPromptArgs {
    /// staging or production
    pub env: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ProdPromptArgs {
    /// Commit, tag or branch to ship (default HEAD)
    pub version: Option<String>,
    /// rolling, blue-green, canary or recreate
    pub strategy: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct RollbackPromptArgs {
    /// Why roll back (goes into the incident report)
    pub reason: Option<String>,
    /// Version to return to (default: the previous one)
    pub to_version: Option<String>,
}

#[prompt_router(router = "prompt_router", vis = "pub(crate)")]
impl OcDeploy {
    #[prompt(name = "oc-deploy", description = "The deploy command menu: audit gate → staging → production → health → rollback")]
    async fn menu(&self) -> Vec<PromptMessage> {
        ask(format!("Show me this menu and wait for my choice. Use the oc-deploy tools for each command.\n\n{MENU}"))
    }

    #[prompt(name = "staging", description = "Deploy HEAD to staging: gate, pre-flight, deploy, smoke tests")]
    async fn staging(&self) -> Vec<PromptMessage> {
        ask("Deploy this project to staging with the deploy_staging tool. Report the gate decision, each step and the smoke results. If the gate blocks, list the findings and their fixes; do not retry with skip_security unless I say so.".into())
    }

    #[prompt(name = "prod", description = "Promote the staging-verified commit to production (you will be asked to confirm)")]
    async fn prod(&self, Parameters(a): Parameters<ProdPromptArgs>) -> Vec<PromptMessage> {
        let mut args = Vec::new();
        if let Some(v) = a.version.filter(|v| !v.trim().is_empty()) {
            args.push(format!("version \"{v}\""));
        }
        if let Some(s) = a.strategy.filter(|s| !s.trim().is_empty()) {
            args.push(format!("strategy \"{s}\""));
        }
        let with = if args.is_empty() { String::new() } else { format!(" with {}", args.join(" and ")) };
        ask(format!(
            "Promote to production with the deploy_prod tool{with}. If it answers confirmation_required, show me the plan exactly and wait: pass the confirmation token back only after I approve it. Afterwards report the health check, and any automatic rollback."
        ))
    }

    #[prompt(name = "rollback", description = "Roll production back to the previous (or a named) version")]
    async fn rollback(&self, Parameters(a): Parameters<RollbackPromptArgs>) -> Vec<PromptMessage> {
        let reason = a
            .reason
            .filter(|r| !r.trim().is_empty())
            .map(|r| format!(" with reason \"{r}\""))
            .unwrap_or_else(|| ", asking me for the reason first".into());
        let to = a.to_version.filter(|v| !v.trim().is_empty()).map(|v| format!(" to version {v}")).unwrap_or_default();
        ask(format!(
            "Roll production back{to} with the deploy_rollback tool{reason}. Then show the health re-check and the incident report (deploy_report kind incident)."
        ))
    }

    #[prompt(name = "status", description = "What runs where, in-flight runs and recent runs")]
    async fn status(&self) -> Vec<PromptMessage> {
        ask("Show the deployment status with the deploy_status tool: each environment's live version, verification, locks, in-flight and recent runs.".into())
    }

    #[prompt(name = "audit", description = "Run the pre-deploy audit gate")]
    async fn audit(&self) -> Vec<PromptMessage> {
        ask("Run the pre-deploy gate with the deploy_audit tool. Show the decision, the findings with their fixes, and how fresh each audit is.".into())
    }

    #[prompt(name = "smoke", description = "Run the smoke tests against an environment")]
    async fn smoke(&self, Parameters(a): Parameters<EnvPromptArgs>) -> Vec<PromptMessage> {
        let env = a.env.filter(|e| !e.trim().is_empty()).unwrap_or_else(|| "staging".into());
        ask(format!("Run the smoke tests against {env} with the deploy_smoke tool and show each check."))
    }

    #[prompt(name = "health", description = "Check the health of an environment against its baseline")]
    async fn health(&self, Parameters(a): Parameters<EnvPromptArgs>) -> Vec<PromptMessage> {
        let env = a.env.filter(|e| !e.trim().is_empty()).unwrap_or_else(|| "production".into());
        ask(format!(
            "Check the health of {env} with the deploy_health tool: verdict, latency per URL and the comparison with the baseline. If it is unhealthy, propose a rollback but do not start one without me."
        ))
    }

    #[prompt(name = "env", description = "List an environment's variables and secrets (names only), or set / unset one")]
    async fn env(&self, Parameters(a): Parameters<EnvPromptArgs>) -> Vec<PromptMessage> {
        let env = a.env.filter(|e| !e.trim().is_empty()).unwrap_or_else(|| "staging".into());
        ask(format!(
            "List the variables and secrets of {env} with the deploy_env tool (action list; names only). To set one, use action set with value_from env:NAME or file:PATH — never put a secret value in the call or in the chat."
        ))
    }

    #[prompt(name = "init", description = "Set up deployment for this project")]
    async fn init(&self) -> Vec<PromptMessage> {
        ask("Set up deployment with the deploy_init tool (without write first). Show the detected platform, the proposed config and the checklist; write the config (write: true) only after I agree.".into())
    }
}
