//! The Render provider against tests/fakes/render_api.py, a fake Render REST API on loopback:
//! what the user sees (results, errors, hints) and what reached the API (requests.jsonl).
#![allow(clippy::disallowed_methods)] // the fake API is started directly

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deploy_core::cloud::render::Render;
use deploy_core::config::Config;
use deploy_core::detect::CheckStatus;
use deploy_core::domain::{CommitSha, Environment, Strategy};
use deploy_core::process::Runner;
use deploy_core::provider::{DeployTarget, Provider};
use deploy_core::run::StepStatus;
use deploy_core::secret::Secret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const KEY: &str = "rnd_fakeKey0123456789";
const SHA_A: &str = "aaaaaaa1111111111111111111111111111111aa";
const SHA_B: &str = "bbbbbbb2222222222222222222222222222222bb";

/// The fake API, killed when dropped.
struct FakeApi {
    child: Child,
    port: u16,
    state: PathBuf,
    root: tempfile::TempDir,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FakeApi {
    fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(
            state.join("services.json"),
            json!({
                "srv-staging1": {"name": "shop-staging", "autoDeploy": "yes", "envVars": {"DATABASE_URL": "postgres://u:hunter2pw@db/shop"}},
                "srv-prod1": {"name": "shop", "autoDeploy": "yes"}
            })
            .to_string(),
        )
        .unwrap();
        std::fs::write(state.join("control.json"), json!({"api_key": KEY}).to_string()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fakes/render_api.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg("--state")
            .arg(&state)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the fake Render API");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("PORT ").expect("PORT <n> first").parse().unwrap();
        Self { child, port, state, root }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/v1/", self.port)
    }

    fn project(&self) -> &Path {
        self.root.path()
    }

    fn control(&self, extra: Value) {
        let mut c = json!({"api_key": KEY});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        std::fs::write(self.state.join("control.json"), c.to_string()).unwrap();
    }

    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state.join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn live(&self, sid: &str) -> Option<Value> {
        std::fs::read_to_string(self.state.join("live").join(format!("{sid}.json"))).ok().map(|t| serde_json::from_str(&t).unwrap())
    }

    fn services(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.state.join("services.json")).unwrap()).unwrap()
    }

    fn provider_with(&self, cfg: &Config, key: Option<&str>) -> Render {
        Render::with_api(cfg, self.project(), &Runner::default(), &self.base(), key.map(Secret::new))
            .unwrap()
            .with_poll_interval(Duration::from_millis(10))
    }

    fn provider(&self) -> Render {
        self.provider_with(&config("srv-staging1", 30), Some(KEY))
    }
}

fn config(staging_sid: &str, timeout: u64) -> Config {
    let text = json!({
        "project_name": "shop",
        "platform": "render",
        "platform_timeout_seconds": timeout,
        "environments": {
            "staging": {"url": "https://shop-staging.onrender.com", "service_id": staging_sid},
            "production": {"url": "https://shop.onrender.com", "service_id": "srv-prod1"}
        }
    });
    Config::parse(&text.to_string(), Path::new(".oc-deploy-ops.json")).unwrap()
}

fn target(sha: &str) -> DeployTarget {
    let commit = CommitSha::parse(sha).unwrap();
    DeployTarget { env: Environment::Staging, version: commit.short(), commit, strategy: Strategy::Rolling }
}

fn cancel() -> CancellationToken {
    CancellationToken::new()
}

#[tokio::test]
async fn deploy_goes_live_with_the_commit_and_becomes_current() {
    let api = FakeApi::start();
    let render = api.provider();
    let out = render.deploy(&target(SHA_A), &cancel()).await.unwrap();
    assert_eq!(out.status, StepStatus::Passed);

    let live = api.live("srv-staging1").expect("the deploy went live");
    assert_eq!(live["commit"], SHA_A);
    let dep = live["version"].as_str().unwrap();
    assert!(dep.starts_with("dep-"));
    assert!(out.detail.contains(dep), "{}", out.detail);

    let posts: Vec<Value> = api.requests().into_iter().filter(|r| r["method"] == "POST").collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["path"], "/services/srv-staging1/deploys");
    assert_eq!(posts[0]["body"], json!({"clearCache": "do_not_clear", "commitId": SHA_A}));
    assert!(api.requests().iter().all(|r| r["authorized"] == true));

    assert_eq!(render.current_version(Environment::Staging).await.unwrap().as_deref(), Some(dep));
    let versions = render.versions(Environment::Staging, &cancel()).await.unwrap();
    assert_eq!(versions[0].id, dep);
    assert!(versions[0].current);
    assert_eq!(versions[0].commit.as_deref(), Some(SHA_A));
    assert_eq!(versions[0].status.as_deref(), Some("live"));
}

#[tokio::test]
async fn a_queued_deploy_without_a_body_is_found_in_the_list() {
    let api = FakeApi::start();
    api.control(json!({"queue_202": true}));
    let out = api.provider().deploy(&target(SHA_A), &cancel()).await.unwrap();
    let live = api.live("srv-staging1").unwrap();
    assert_eq!(live["commit"], SHA_A);
    assert!(out.detail.contains(live["version"].as_str().unwrap()));
}

#[tokio::test]
async fn a_failed_pre_deploy_command_is_reported_as_the_migration() {
    let api = FakeApi::start();
    std::fs::write(
        api.project().join("render.yaml"),
        "services:\n  - type: web\n    name: shop\n    preDeployCommand: python manage.py migrate\n",
    )
    .unwrap();
    api.control(json!({"outcome": {"srv-staging1": "pre_deploy_failed"}}));
    let err = api.provider().deploy(&target(SHA_A), &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "platform_error");
    let msg = err.to_string();
    assert!(msg.contains("pre_deploy_failed") && msg.contains("migration"), "{msg}");
    assert!(msg.contains("python manage.py migrate"), "{msg}");
    assert!(api.live("srv-staging1").is_none(), "a failed deploy must not go live");
}

#[tokio::test]
async fn a_build_failure_is_an_error_not_a_success() {
    let api = FakeApi::start();
    api.control(json!({"outcome": {"srv-staging1": "build_failed"}}));
    let err = api.provider().deploy(&target(SHA_A), &cancel()).await.unwrap_err();
    assert!(err.to_string().contains("build failed"), "{err}");
}

#[tokio::test]
async fn a_rejected_key_names_render_api_key() {
    let api = FakeApi::start();
    let render = api.provider_with(&config("srv-staging1", 30), Some("rnd_wrong_key_0000"));
    let err = render.deploy(&target(SHA_A), &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "platform_error");
    assert!(err.to_string().contains("unauthorized"), "{err}");
    assert!(err.hint().contains("RENDER_API_KEY"), "{}", err.hint());
    assert!(!err.to_string().contains("rnd_wrong_key_0000"));

    let render = api.provider_with(&config("srv-staging1", 30), None);
    let err = render.current_version(Environment::Staging).await.unwrap_err();
    assert!(err.to_string().contains("RENDER_API_KEY") && err.hint().contains("RENDER_API_KEY"), "{err}");
}

#[tokio::test]
async fn an_unknown_service_names_the_service_id_field() {
    let api = FakeApi::start();
    let render = api.provider_with(&config("srv-nope", 30), Some(KEY));
    let err = render.deploy(&target(SHA_A), &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "not_found");
    assert!(err.to_string().contains("environments.staging.service_id"), "{err}");
    assert!(err.hint().contains("environments.staging.service_id"), "{}", err.hint());
}

#[tokio::test]
async fn rate_limited_requests_are_retried_then_succeed() {
    let api = FakeApi::start();
    api.control(json!({"rate_limit": {"count": 2, "reset": 1}}));
    let started = Instant::now();
    api.provider().deploy(&target(SHA_A), &cancel()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2), "waited for Ratelimit-Reset");
    let posts = api.requests().into_iter().filter(|r| r["method"] == "POST").count();
    assert_eq!(posts, 3, "two 429s, then the deploy");
    assert_eq!(api.live("srv-staging1").unwrap()["commit"], SHA_A);
}

#[tokio::test]
async fn rollback_restores_the_old_deploy_and_turns_auto_deploy_off() {
    let api = FakeApi::start();
    let render = api.provider();
    render.deploy(&target(SHA_A), &cancel()).await.unwrap();
    let first = render.current_version(Environment::Staging).await.unwrap().unwrap();
    render.deploy(&target(SHA_B), &cancel()).await.unwrap();
    assert_eq!(api.live("srv-staging1").unwrap()["commit"], SHA_B);

    let out = render.rollback(Environment::Staging, &first, &cancel()).await.unwrap();
    assert_eq!(out.status, StepStatus::Passed);
    assert!(out.detail.contains("auto-deploy"), "{}", out.detail);
    let live = api.live("srv-staging1").unwrap();
    assert_eq!(live["commit"], SHA_A, "the old commit serves again");
    assert_ne!(live["version"], first.as_str(), "Render rolls back with a new deploy");
    assert_eq!(api.services()["srv-staging1"]["autoDeploy"], "no");

    let reqs = api.requests();
    assert!(reqs.iter().any(|r| r["method"] == "POST" && r["path"] == "/services/srv-staging1/rollback" && r["body"]["deployId"] == first));
    assert!(reqs.iter().any(|r| r["method"] == "PATCH" && r["body"] == json!({"autoDeploy": "no"})));
    let versions = render.versions(Environment::Staging, &cancel()).await.unwrap();
    assert!(versions[0].current && versions[0].commit.as_deref() == Some(SHA_A));
    assert!(versions[0].description.as_deref().unwrap_or_default().contains("rollback"));

    let err = render.rollback(Environment::Staging, "dep-doesnotexist", &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "not_found");
    assert!(err.to_string().contains("dep-doesnotexist"));
}

#[tokio::test]
async fn env_values_reach_the_api_but_never_the_results() {
    let api = FakeApi::start();
    let render = api.provider();
    let value = "s3cr3t-v4lue-for-render";
    let out = render.env_set(Environment::Staging, "STRIPE_KEY", &Secret::new(value), &cancel()).await.unwrap();
    assert!(!out.detail.contains(value));
    assert!(out.detail.contains("next deploy"), "{}", out.detail);
    let put = api.requests().into_iter().find(|r| r["method"] == "PUT").unwrap();
    assert_eq!(put["path"], "/services/srv-staging1/env-vars/STRIPE_KEY");
    assert_eq!(put["body"], json!({"value": value}));

    let listing = render.env_list(Environment::Staging, &cancel()).await.unwrap();
    let names: Vec<&str> = listing.vars.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["DATABASE_URL", "STRIPE_KEY"]);
    let shown = serde_json::to_string(&listing).unwrap();
    assert!(!shown.contains(value) && !shown.contains("hunter2pw") && !shown.contains("postgres://"), "{shown}");

    render.env_unset(Environment::Staging, "STRIPE_KEY", &cancel()).await.unwrap();
    assert!(api.services()["srv-staging1"]["envVars"].get("STRIPE_KEY").is_none());
    let err = render.env_unset(Environment::Staging, "STRIPE_KEY", &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "not_found");
    assert!(err.to_string().contains("STRIPE_KEY"));
}

#[tokio::test]
async fn a_deploy_that_never_finishes_times_out() {
    let api = FakeApi::start();
    api.control(json!({"outcome": {"srv-staging1": "stuck"}}));
    let render = api.provider_with(&config("srv-staging1", 1), Some(KEY));
    let started = Instant::now();
    let err = render.deploy(&target(SHA_A), &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "timeout");
    assert!(err.to_string().contains("build_in_progress"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn migrate_is_render_pre_deploy_command_and_checklist_asks_the_api() {
    let api = FakeApi::start();
    let render = api.provider();
    let out = render.migrate(&target(SHA_A), &cancel()).await.unwrap();
    assert_eq!(out.status, StepStatus::Skipped);
    assert!(out.detail.contains("preDeployCommand"));
    std::fs::write(api.project().join("render.yaml"), "services:\n  - type: web\n    preDeployCommand: \"npm run migrate\"\n").unwrap();
    let out = render.migrate(&target(SHA_A), &cancel()).await.unwrap();
    assert!(out.detail.contains("`npm run migrate`"), "{}", out.detail);

    let items = render.checklist(&cancel()).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items.iter().all(|i| i.status == CheckStatus::Ok), "{items:?}");
    assert!(items[0].detail.contains("dev@example.com"));
    assert!(items[1].detail.contains("shop-staging"));

    let bad = api.provider_with(&config("srv-staging1", 30), Some("rnd_wrong_key_0000")).checklist(&cancel()).await;
    assert_eq!(bad[0].status, CheckStatus::Fail);
    assert!(bad[0].hint.as_deref().unwrap_or_default().contains("RENDER_API_KEY"));
}
