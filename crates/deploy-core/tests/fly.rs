//! The Fly.io provider against the fake `fly` CLI (tests/fakes/fly): deploys, releases,
//! rollback by image, release_command failures, secrets on stdin, auth and timeouts.

use std::path::PathBuf;
use std::time::Duration;

use deploy_core::CoreError;
use deploy_core::cloud::fly::Fly;
use deploy_core::config::Config;
use deploy_core::detect::CheckStatus;
use deploy_core::domain::{CommitSha, Environment, Strategy};
use deploy_core::process::Runner;
use deploy_core::provider::{DeployTarget, Provider};
use deploy_core::secret::Secret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "fly-test-token-0123456789";
const STAGING: &str = "shop-staging";
const PROD: &str = "shop-prod";
const A: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f80912345678";
const B: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432";
const DB_URL: &str = "postgres://shop:fly-db-pass-55e1@db.internal/shop";
const FLY_TOML: &str = "app = \"shop\"\n\n[deploy]\n  strategy = \"rolling\"\n  release_command = \"bin/migrate up\"\n";

fn write_exec(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let bin = base.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let fake = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fakes/fly");
        std::os::unix::fs::symlink(&fake, bin.join("fly")).unwrap();
        std::os::unix::fs::symlink(&fake, bin.join("flyctl")).unwrap();
        // The operator's shell has the token: the wrapper stands for it.
        write_exec(&bin.join("fly-with-token"), &format!("#!/bin/sh\nFLY_API_TOKEN={TOKEN} exec \"$(dirname \"$0\")/flyctl\" \"$@\"\n"));
        let root = base.join("project");
        std::fs::create_dir_all(root.join("web")).unwrap();
        std::fs::write(root.join("web/fly.toml"), FLY_TOML).unwrap();
        std::fs::create_dir_all(base.join("state")).unwrap();
        let state = json!({
            "email": "dev@example.com",
            "apps": {
                STAGING: { "secrets": { "DATABASE_URL": DB_URL, "SECRET_KEY_BASE": "skb-value-31337abc" } },
                PROD: { "secrets": { "DATABASE_URL": DB_URL }, "secrets_shape": "graphql" }
            }
        });
        std::fs::write(base.join("state/fly.json"), state.to_string()).unwrap();
        Self { _dir: dir, base, root }
    }

    fn config(&self, cli: &str, extra: Value) -> Config {
        let mut cfg = json!({
            "project_name": "shop",
            "platform": "fly-io",
            "app_path": "web",
            "platform_cli": [self.base.join("bin").join(cli)],
            "platform_timeout_seconds": 30,
            "environments": {
                "staging": { "app": STAGING, "url": "https://shop-staging.fly.dev" },
                "production": { "app": PROD, "url": "https://shop-prod.fly.dev" }
            }
        });
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        Config::parse(&cfg.to_string(), &self.root.join(".oc-deploy-ops.json")).unwrap()
    }

    fn provider_with(&self, cfg: &Config) -> Fly {
        Fly::new(cfg, &self.root, &Runner::default()).unwrap().with_poll_interval(Duration::from_millis(20))
    }

    fn provider(&self) -> Fly {
        self.provider_with(&self.config("fly-with-token", json!({})))
    }

    fn fail(&self, spec: Value) {
        std::fs::write(self.base.join("state/fail.json"), spec.to_string()).unwrap();
    }

    fn live(&self, app: &str) -> Option<Value> {
        std::fs::read_to_string(self.base.join(format!("state/live/{app}.json"))).ok().map(|t| serde_json::from_str(&t).unwrap())
    }

    fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(self.base.join("state/calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn argvs(&self) -> Vec<Vec<String>> {
        self.calls().iter().map(|c| c["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect()).collect()
    }

    fn call_with(&self, first: &[&str]) -> Value {
        self.calls()
            .into_iter()
            .rev()
            .find(|c| c["argv"].as_array().unwrap().iter().zip(first).all(|(a, f)| a == f))
            .unwrap_or_else(|| panic!("no call starting with {first:?}"))
    }
}

fn target(env: Environment, sha: &str, strategy: Strategy) -> DeployTarget {
    DeployTarget { env, commit: CommitSha::parse(sha).unwrap(), version: sha[..7].to_owned(), strategy }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn cancel() -> CancellationToken {
    CancellationToken::new()
}

#[tokio::test]
async fn staging_and_production_deploys_label_the_image_with_the_commit() {
    let fx = Fixture::new();
    let p = fx.provider();

    let out = p.deploy(&target(Environment::Staging, A, Strategy::Rolling), &cancel()).await.unwrap();
    assert_eq!(out.detail, "v1 live on shop-staging: registry.fly.io/shop-staging:1a2b3c4 (rolling strategy)");
    let call = fx.call_with(&["deploy"]);
    assert_eq!(
        call["argv"],
        json!(args(&[
            "deploy",
            "-a",
            STAGING,
            "--strategy",
            "rolling",
            "--image-label",
            "1a2b3c4",
            "-e",
            &format!("OC_DEPLOY_COMMIT={A}"),
            "-y"
        ]))
    );
    assert_eq!(call["cwd"], json!(fx.root.join("web").canonicalize().unwrap().display().to_string()), "fly deploy runs in the app dir");
    let names: Vec<&str> = call["env_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(names.contains(&"FLY_API_TOKEN"));
    assert!(!names.iter().any(|n| n.starts_with("CARGO")), "only allow-listed variables reach flyctl: {names:?}");
    assert_eq!(fx.live(STAGING).unwrap(), json!({ "version": "v1", "commit": A }));
    assert_eq!(p.current_version(Environment::Staging).await.unwrap().as_deref(), Some("v1"));

    let out = p.deploy(&target(Environment::Production, A, Strategy::BlueGreen), &cancel()).await.unwrap();
    assert!(out.detail.contains("(bluegreen strategy)"), "{}", out.detail);
    assert_eq!(fx.live(PROD).unwrap(), json!({ "version": "v1", "commit": A }));
    p.deploy(&target(Environment::Production, B, Strategy::Recreate), &cancel()).await.unwrap();
    assert!(fx.call_with(&["deploy"])["argv"].as_array().unwrap().contains(&json!("immediate")));
    assert_eq!(fx.live(PROD).unwrap(), json!({ "version": "v2", "commit": B }));
}

#[tokio::test]
async fn versions_are_newest_first_with_the_commit_from_the_image_label() {
    let fx = Fixture::new();
    let p = fx.provider();
    p.deploy(&target(Environment::Staging, A, Strategy::Rolling), &cancel()).await.unwrap();
    p.deploy(&target(Environment::Staging, B, Strategy::Canary), &cancel()).await.unwrap();
    let versions = p.versions(Environment::Staging, &cancel()).await.unwrap();
    let summary: Vec<(&str, bool, Option<&str>)> = versions.iter().map(|v| (v.id.as_str(), v.current, v.commit.as_deref())).collect();
    assert_eq!(summary, [("v2", true, Some("9f8e7d6")), ("v1", false, Some("1a2b3c4"))]);
    assert_eq!(versions[0].status.as_deref(), Some("complete"));
    assert_eq!(p.current_version(Environment::Staging).await.unwrap().as_deref(), Some("v2"));
}

#[tokio::test]
async fn rollback_redeploys_the_prior_image_and_restores_live() {
    let fx = Fixture::new();
    let p = fx.provider();
    p.deploy(&target(Environment::Production, A, Strategy::Rolling), &cancel()).await.unwrap();
    let before = p.current_version(Environment::Production).await.unwrap().unwrap();
    p.deploy(&target(Environment::Production, B, Strategy::Rolling), &cancel()).await.unwrap();

    let out = p.rollback(Environment::Production, &before, &cancel()).await.unwrap();
    assert_eq!(out.detail, "shop-prod rolled back to v1: new release v3 runs its image registry.fly.io/shop-prod:1a2b3c4");
    assert_eq!(
        fx.call_with(&["deploy"])["argv"],
        json!(args(&[
            "deploy",
            "-a",
            PROD,
            "--image",
            "registry.fly.io/shop-prod:1a2b3c4",
            "--strategy",
            "immediate",
            "--skip-release-command",
            "-e",
            "OC_DEPLOY_COMMIT=1a2b3c4",
            "-y"
        ]))
    );
    assert_eq!(fx.live(PROD).unwrap(), json!({ "version": "v3", "commit": "1a2b3c4" }));
    assert_eq!(p.current_version(Environment::Production).await.unwrap().as_deref(), Some("v3"));

    let err = p.rollback(Environment::Production, "v9", &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "not_found");
    assert!(err.to_string().contains("flyctl lists v3, v2, v1"), "{err}");
    let err = p.rollback(Environment::Production, "dep-1", &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_input");
}

#[tokio::test]
async fn release_command_failure_fails_the_deploy_and_keeps_the_live_release() {
    let fx = Fixture::new();
    let p = fx.provider();
    p.deploy(&target(Environment::Staging, A, Strategy::Rolling), &cancel()).await.unwrap();
    fx.fail(json!({ "release_command": { "exit_code": 3 } }));

    let err = p.deploy(&target(Environment::Staging, B, Strategy::Rolling), &cancel()).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.code(), "platform_error");
    assert!(text.contains("release_command `bin/migrate up` failed"), "{text}");
    assert!(text.contains("exited with non-zero status of 3"), "{text}");
    assert!(err.hint().contains("fly logs -a shop-staging"), "{}", err.hint());
    assert_eq!(fx.live(STAGING).unwrap(), json!({ "version": "v1", "commit": A }));
    // The failed release is listed but does not count as current.
    assert_eq!(p.current_version(Environment::Staging).await.unwrap().as_deref(), Some("v1"));
    let versions = p.versions(Environment::Staging, &cancel()).await.unwrap();
    assert_eq!((versions[0].id.as_str(), versions[0].status.as_deref(), versions[0].current), ("v2", Some("failed"), false));
}

#[tokio::test]
async fn migrate_names_the_release_command_without_running_anything() {
    let fx = Fixture::new();
    let t = target(Environment::Staging, A, Strategy::Rolling);
    let out = fx.provider().migrate(&t, &cancel()).await.unwrap();
    assert_eq!(out.status, deploy_core::run::StepStatus::Skipped);
    assert_eq!(out.detail, "fly.toml release_command `bin/migrate up` runs during deploy, before any machine is updated");
    std::fs::write(fx.root.join("web/fly.toml"), "app = \"shop\"\n").unwrap();
    let out = fx.provider().migrate(&t, &cancel()).await.unwrap();
    assert!(out.detail.starts_with("no release_command in "), "{}", out.detail);
    assert!(fx.calls().is_empty());
}

#[tokio::test]
async fn dry_run_plans_without_contacting_the_platform() {
    let fx = Fixture::new();
    let out = fx.provider().dry_run(&target(Environment::Production, B, Strategy::Canary), &cancel()).await.unwrap();
    assert!(
        out.detail.starts_with("flyctl has no dry run: would run `fly deploy -a shop-prod --strategy canary --image-label 9f8e7d6"),
        "{}",
        out.detail
    );
    assert!(out.detail.contains("release_command `bin/migrate up` would run first"), "{}", out.detail);
    assert!(fx.calls().is_empty());
}

#[tokio::test]
async fn missing_credentials_are_an_error_with_the_login_hint() {
    let fx = Fixture::new();
    let p = fx.provider_with(&fx.config("fly", json!({})));
    let err = p.deploy(&target(Environment::Staging, A, Strategy::Rolling), &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "platform_error");
    assert!(err.to_string().contains("Error: no access token available. Please login with 'flyctl auth login'"), "{err}");
    assert!(err.hint().contains("FLY_API_TOKEN"), "{}", err.hint());
    assert!(fx.live(STAGING).is_none());

    let items = p.checklist(&cancel()).await;
    assert_eq!(items[0].name, "fly login");
    assert_eq!(items[0].status, CheckStatus::Fail);
    assert!(items[0].hint.as_deref().unwrap().contains("fly auth login"));
}

#[tokio::test]
async fn checklist_proves_login_and_apps() {
    let fx = Fixture::new();
    let p = fx.provider();
    p.deploy(&target(Environment::Staging, A, Strategy::Rolling), &cancel()).await.unwrap();
    let mut cfg = fx.config("fly-with-token", json!({}));
    cfg.environments.production.as_mut().unwrap().app = Some("shop-missing".into());
    let items = fx.provider_with(&cfg).checklist(&cancel()).await;
    let summary: Vec<(&str, CheckStatus)> = items.iter().map(|i| (i.name.as_str(), i.status)).collect();
    assert_eq!(
        summary,
        [("fly login", CheckStatus::Ok), ("fly app (staging)", CheckStatus::Ok), ("fly app (production)", CheckStatus::Fail)]
    );
    assert_eq!(items[0].detail, "logged in as dev@example.com");
    assert_eq!(items[1].detail, "shop-staging exists (status deployed, v1)");
    assert!(items[2].detail.contains("Could not find App \"shop-missing\""), "{}", items[2].detail);
    assert!(fx.argvs().contains(&args(&["auth", "whoami", "--json"])));
}

#[tokio::test]
async fn unknown_app_reports_flys_own_error() {
    let fx = Fixture::new();
    let mut cfg = fx.config("fly-with-token", json!({}));
    cfg.environments.staging.as_mut().unwrap().app = Some("shop-nope".into());
    let err = fx.provider_with(&cfg).versions(Environment::Staging, &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "platform_error");
    assert!(err.to_string().contains("Error: Could not find App \"shop-nope\""), "{err}");
}

#[tokio::test]
async fn a_missing_app_field_is_named() {
    let fx = Fixture::new();
    let mut cfg = fx.config("fly-with-token", json!({}));
    cfg.environments.production.as_mut().unwrap().app = None;
    let err = fx.provider_with(&cfg).current_version(Environment::Production).await.unwrap_err();
    match err {
        CoreError::InvalidInput { field, .. } => assert_eq!(field, "environments.production.app"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_missing_cli_is_program_missing() {
    let fx = Fixture::new();
    let err = fx.provider_with(&fx.config("../nowhere/fly", json!({}))).versions(Environment::Staging, &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "program_missing");
    assert!(err.hint().contains("fly.io/docs/flyctl/install"), "{}", err.hint());
}

#[tokio::test]
async fn a_hanging_deploy_times_out() {
    let fx = Fixture::new();
    fx.fail(json!({ "deploy": { "sleep": 10, "exit": 0 } }));
    let p = fx.provider_with(&fx.config("fly-with-token", json!({ "platform_timeout_seconds": 1 })));
    let started = std::time::Instant::now();
    let err = p.deploy(&target(Environment::Staging, A, Strategy::Rolling), &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "timeout");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(fx.live(STAGING).is_none());
}

#[tokio::test]
async fn secrets_are_set_on_stdin_never_in_arguments() {
    let fx = Fixture::new();
    let p = fx.provider();
    let value = Secret::new("s3cr3t-fly-value-42xq");
    let out = p.env_set(Environment::Staging, "STRIPE_KEY", &value, &cancel()).await.unwrap();
    assert_eq!(out.detail, "set STRIPE_KEY on shop-staging; Fly restarts the app's machines to apply it (unless it was staged)");
    let call = fx.call_with(&["secrets", "set"]);
    assert_eq!(call["argv"], json!(args(&["secrets", "set", "STRIPE_KEY=-", "-a", STAGING])));
    assert_eq!(call["stdin"], json!("s3cr3t-fly-value-42xq"));
    for c in fx.calls() {
        assert!(!c["argv"].to_string().contains("s3cr3t"), "{c}");
    }
    let names: Vec<String> = p.env_list(Environment::Staging, &cancel()).await.unwrap().vars.into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["DATABASE_URL", "SECRET_KEY_BASE", "STRIPE_KEY"]);

    let out = p.env_unset(Environment::Staging, "STRIPE_KEY", &cancel()).await.unwrap();
    assert!(out.detail.starts_with("removed STRIPE_KEY from shop-staging"), "{}", out.detail);
    assert!(fx.argvs().contains(&args(&["secrets", "unset", "STRIPE_KEY", "-a", STAGING])));
    let err = p.env_set(Environment::Staging, "A=B", &value, &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_input");
}

#[tokio::test]
async fn env_list_returns_names_only_in_every_cli_shape() {
    let fx = Fixture::new();
    let p = fx.provider();
    for (env, want) in [(Environment::Staging, vec!["DATABASE_URL", "SECRET_KEY_BASE"]), (Environment::Production, vec!["DATABASE_URL"])] {
        let listing = p.env_list(env, &cancel()).await.unwrap();
        let names: Vec<&str> = listing.vars.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, want);
        assert!(listing.vars.iter().all(|v| v.secret));
        let shown = format!("{} {listing:?}", serde_json::to_string(&listing).unwrap());
        assert!(!shown.contains("fly-db-pass") && !shown.contains("skb-value") && !shown.contains("postgres://"), "{shown}");
    }
    assert!(fx.argvs().contains(&args(&["secrets", "list", "-a", PROD, "--json"])));
}

#[test]
fn capabilities_describe_fly() {
    let fx = Fixture::new();
    let caps = fx.provider().capabilities();
    assert_eq!(caps.strategies, [Strategy::Rolling, Strategy::BlueGreen, Strategy::Canary, Strategy::Recreate]);
    assert!(caps.rollback.unwrap().contains("fly deploy --image"));
    assert!(caps.migrations.unwrap().contains("release_command"));
    assert!(!caps.dry_run && !caps.frontend);
}
