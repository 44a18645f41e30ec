//! The `command` platform with tiny sh scripts written by each test: every script appends what it
//! was told (its `OC_DEPLOY_*` variables) to a log in the project, which the tests read back.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use deploy_core::cloud::command::CommandPlatform;
use deploy_core::config::Config;
use deploy_core::detect::CheckStatus;
use deploy_core::domain::{CommitSha, Environment, Strategy};
use deploy_core::process::Runner;
use deploy_core::provider::{DeployTarget, Provider};
use deploy_core::run::StepStatus;
use deploy_core::secret::Secret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SHA_A: &str = "aaaaaaa1111111111111111111111111111111aa";
const SHA_B: &str = "bbbbbbb2222222222222222222222222222222bb";

fn script(root: &Path, name: &str, body: &str) {
    let p = root.join(name);
    std::fs::write(&p, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A project whose "platform" keeps the live version in `live` and the history in `history`.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    script(
        root,
        "deploy.sh",
        "echo \"deploy env=$OC_DEPLOY_ENV version=$OC_DEPLOY_VERSION commit=$OC_DEPLOY_COMMIT \
         pkg=${CARGO_PKG_NAME:-unset} manifest=${CARGO_MANIFEST_DIR:-unset} pwd=$(pwd)\" >> log\n\
         echo \"$OC_DEPLOY_VERSION\" > live\necho \"$OC_DEPLOY_VERSION\" >> history\necho \"shipped $OC_DEPLOY_VERSION\"",
    );
    script(root, "current.sh", "echo \"current env=$OC_DEPLOY_ENV\" >> log\n[ -f live ] && echo && cat live || true");
    script(root, "list.sh", "echo \"list env=$OC_DEPLOY_ENV\" >> log\ntac history");
    script(
        root,
        "rollback.sh",
        "echo \"rollback env=$OC_DEPLOY_ENV to=$OC_DEPLOY_TO_VERSION version=${OC_DEPLOY_VERSION:-unset}\" >> log\necho \"$OC_DEPLOY_TO_VERSION\" > live",
    );
    script(root, "migrate.sh", "echo \"migrate env=$OC_DEPLOY_ENV version=$OC_DEPLOY_VERSION commit=$OC_DEPLOY_COMMIT\" >> log");
    dir
}

fn config(command: Value) -> Config {
    let text = json!({
        "project_name": "shop",
        "platform": "command",
        "command": command,
        "environments": {
            "staging": {"url": "https://staging.example.com"},
            "production": {"url": "https://example.com"}
        }
    });
    Config::parse(&text.to_string(), Path::new(".oc-deploy-ops.json")).unwrap()
}

fn full() -> Value {
    json!({
        "deploy": ["./deploy.sh"],
        "current_version": ["./current.sh"],
        "list_versions": ["sh", "list.sh"],
        "rollback": ["./rollback.sh"],
        "migrate": ["./migrate.sh"],
        "pass_env": ["CARGO_PKG_NAME"]
    })
}

fn target(sha: &str, env: Environment) -> DeployTarget {
    let commit = CommitSha::parse(sha).unwrap();
    DeployTarget { env, version: commit.short(), commit, strategy: Strategy::Rolling }
}

fn log(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("log")).unwrap_or_default().lines().map(str::to_owned).collect()
}

fn cancel() -> CancellationToken {
    CancellationToken::new()
}

#[tokio::test]
async fn the_full_cycle_tells_each_script_what_to_do() {
    let dir = project();
    let root = dir.path();
    let p = CommandPlatform::new(&config(full()), root, &Runner::default()).unwrap();
    let prod = Environment::Production;

    assert_eq!(p.current_version(prod).await.unwrap(), None, "nothing deployed yet: no output");
    let out = p.migrate(&target(SHA_A, prod), &cancel()).await.unwrap();
    assert_eq!(out.status, StepStatus::Passed);
    let out = p.deploy(&target(SHA_A, prod), &cancel()).await.unwrap();
    assert_eq!(out.status, StepStatus::Passed);
    assert!(out.detail.contains("shipped aaaaaaa"), "{}", out.detail);
    p.deploy(&target(SHA_B, prod), &cancel()).await.unwrap();

    assert_eq!(p.current_version(prod).await.unwrap().as_deref(), Some("bbbbbbb"), "first non-empty line");
    let versions = p.versions(prod, &cancel()).await.unwrap();
    let ids: Vec<&str> = versions.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["bbbbbbb", "aaaaaaa"]);
    assert!(versions[0].current && !versions[1].current);

    let out = p.rollback(prod, "aaaaaaa", &cancel()).await.unwrap();
    assert!(out.detail.contains("aaaaaaa"));
    assert_eq!(p.current_version(prod).await.unwrap().as_deref(), Some("aaaaaaa"));

    let log = log(root);
    let pkg = std::env::var("CARGO_PKG_NAME").expect("cargo sets CARGO_PKG_NAME for tests");
    assert!(std::env::var("CARGO_MANIFEST_DIR").is_ok());
    assert_eq!(log[1], format!("migrate env=production version=aaaaaaa commit={SHA_A}"));
    let real_root = root.canonicalize().unwrap();
    assert_eq!(
        log[2],
        format!("deploy env=production version=aaaaaaa commit={SHA_A} pkg={pkg} manifest=unset pwd={}", real_root.display()),
        "pass_env names arrive, nothing else does, and the script runs in the project root"
    );
    assert!(log.iter().any(|l| l == "list env=production"));
    assert!(log.iter().any(|l| l == "rollback env=production to=aaaaaaa version=unset"), "{log:?}");
}

#[tokio::test]
async fn a_failing_deploy_script_is_a_platform_error_with_its_words() {
    let dir = project();
    script(dir.path(), "deploy.sh", "echo 'Error: quota exceeded' >&2\nexit 3");
    let p = CommandPlatform::new(&config(full()), dir.path(), &Runner::default()).unwrap();
    let err = p.deploy(&target(SHA_A, Environment::Staging), &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "platform_error");
    assert!(err.to_string().contains("quota exceeded") && err.to_string().contains("exit 3"), "{err}");
}

#[tokio::test]
async fn without_a_rollback_command_rollback_is_refused_with_a_hint() {
    let dir = project();
    let p = CommandPlatform::new(&config(json!({"deploy": ["./deploy.sh"]})), dir.path(), &Runner::default()).unwrap();
    let err = p.rollback(Environment::Production, "aaaaaaa", &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "refused");
    assert!(err.to_string().contains("command.rollback"));
    assert!(err.hint().contains("OC_DEPLOY_TO_VERSION"), "{}", err.hint());
    assert_eq!(p.current_version(Environment::Production).await.unwrap(), None, "no current_version command: unknown");
    assert!(p.capabilities().rollback.is_none());
    assert!(p.migrate(&target(SHA_A, Environment::Staging), &cancel()).await.unwrap().status == StepStatus::Skipped);
}

#[tokio::test]
async fn a_missing_deploy_command_names_the_field() {
    let dir = project();
    let p = CommandPlatform::new(&config(json!({"rollback": ["./rollback.sh"]})), dir.path(), &Runner::default()).unwrap();
    let err = p.deploy(&target(SHA_A, Environment::Staging), &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "config_invalid");
    assert!(err.to_string().contains("command.deploy"), "{err}");
    let items = p.checklist(&cancel()).await;
    assert!(items.iter().any(|i| i.name == "command.deploy" && i.status == CheckStatus::Fail), "{items:?}");
}

#[tokio::test]
async fn variables_are_refused_and_the_checklist_finds_the_programs() {
    let dir = project();
    let mut cmds = full();
    cmds["migrate"] = json!(["./missing.sh"]);
    cmds["list_versions"] = json!(["definitely-not-a-program-xyz"]);
    let p = CommandPlatform::new(&config(cmds), dir.path(), &Runner::default()).unwrap();
    let err = p.env_set(Environment::Staging, "K", &Secret::new("value-123456"), &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "refused");
    assert!(err.to_string().contains("manages no variables"));
    assert_eq!(p.env_list(Environment::Staging, &cancel()).await.unwrap_err().code(), "refused");
    assert_eq!(p.env_unset(Environment::Staging, "K", &cancel()).await.unwrap_err().code(), "refused");

    let items = p.checklist(&cancel()).await;
    let status = |name: &str| items.iter().find(|i| i.name == name).map(|i| i.status);
    assert_eq!(status("command.deploy"), Some(CheckStatus::Ok));
    assert_eq!(status("command.rollback"), Some(CheckStatus::Ok));
    assert_eq!(status("command.migrate"), Some(CheckStatus::Fail));
    assert_eq!(status("command.list_versions"), Some(CheckStatus::Fail));
}
