//! The Cloudflare Workers provider against the fake `wrangler` (tests/fakes/wrangler): each
//! test has its own git project with a wrangler.toml, its own fake bin dir and fake state, and
//! asserts what a user would see — results, errors, the argv the fake received, live files.
//!
//! Credentials reach the fake through `Cloudflare::with_env` rather than the test process's
//! environment, so tests running in parallel never change each other's variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use deploy_core::CoreError;
use deploy_core::cloud::cloudflare::Cloudflare;
use deploy_core::config::Config;
use deploy_core::detect::CheckStatus;
use deploy_core::domain::{CommitSha, Environment, Strategy};
use deploy_core::process::{Cmd, Runner};
use deploy_core::provider::{DeployTarget, Provider};
use deploy_core::run::StepStatus;
use deploy_core::secret::{Redactor, Secret};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "cf-test-token-3f9a2b7c";
const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
const STAGING_WORKER: &str = "shop-staging";
const PROD_WORKER: &str = "shop";

struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    runner: Runner,
    cancel: CancellationToken,
}

fn fake(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fakes").join(name)
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        std::fs::create_dir_all(base.join("bin")).unwrap();
        std::os::unix::fs::symlink(fake("wrangler"), base.join("bin/wrangler")).unwrap();
        let root = base.join("project");
        std::fs::create_dir_all(root.join("migrations")).unwrap();
        std::fs::write(
            root.join("wrangler.toml"),
            "name = \"shop\"\nmain = \"src/index.ts\"\ncompatibility_date = \"2024-09-01\"\n\n[env.staging]\nname = \"shop-staging\"\n",
        )
        .unwrap();
        std::fs::write(root.join("migrations/0001_init.sql"), "CREATE TABLE items (id INTEGER PRIMARY KEY);\n").unwrap();
        let fx = Self { _dir: dir, base, root, runner: Runner::new(Redactor::default()), cancel: CancellationToken::new() };
        fx.git(&["init", "-q", "-b", "main"]).await;
        fx.commit("initial").await;
        fx
    }

    async fn git(&self, args: &[&str]) -> String {
        let cmd = Cmd::new("git", &self.root)
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"])
            .args(args.iter().copied());
        let out = self.runner.run_checked(&cmd, &self.cancel).await.unwrap();
        out.stdout.trim().to_owned()
    }

    /// Makes a new commit (so every deploy ships a different SHA) and returns it.
    async fn commit(&self, msg: &str) -> CommitSha {
        std::fs::write(self.root.join("src.txt"), msg).unwrap();
        self.git(&["add", "-A"]).await;
        self.git(&["commit", "-q", "-m", msg]).await;
        CommitSha::parse(&self.git(&["rev-parse", "HEAD"]).await).unwrap()
    }

    fn config(&self, extra: Value) -> Config {
        let mut cfg = json!({
            "project_name": "shop",
            "platform": "cloudflare-workers",
            "platform_cli": [self.base.join("bin/wrangler")],
            "environments": {
                "staging": { "wrangler_env": "staging", "d1_database": "shop-staging-db" },
                "production": { "wrangler_env": null, "d1_database": "shop-db" }
            }
        });
        merge(&mut cfg, extra);
        Config::parse(&cfg.to_string(), Path::new(".oc-deploy-ops.json")).unwrap()
    }

    /// The provider with credentials visible to wrangler.
    fn provider(&self, extra: Value) -> Cloudflare {
        self.bare_provider(extra).with_env("CLOUDFLARE_API_TOKEN", Some(TOKEN)).with_env("CLOUDFLARE_ACCOUNT_ID", Some(ACCOUNT))
    }

    /// The provider with no Cloudflare credentials at all.
    fn bare_provider(&self, extra: Value) -> Cloudflare {
        Cloudflare::new(&self.config(extra), &self.root, &self.runner)
            .unwrap()
            .with_env("CLOUDFLARE_API_TOKEN", None)
            .with_env("CLOUDFLARE_API_KEY", None)
            .with_env("CLOUDFLARE_ACCOUNT_ID", None)
    }

    fn state(&self) -> PathBuf {
        self.base.join("state")
    }

    fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state().join("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn argvs(&self) -> Vec<Vec<String>> {
        self.calls().iter().map(|c| serde_json::from_value(c["argv"].clone()).unwrap()).collect()
    }

    fn live(&self, worker: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.state().join("live").join(format!("{worker}.json"))).ok()?;
        Some(serde_json::from_str(&text).unwrap())
    }

    fn fail(&self, spec: Value) {
        std::fs::create_dir_all(self.state()).unwrap();
        std::fs::write(self.state().join("fail.json"), spec.to_string()).unwrap();
    }

    fn target(&self, env: Environment, commit: &CommitSha, strategy: Strategy) -> DeployTarget {
        DeployTarget { env, commit: commit.clone(), version: commit.short(), strategy }
    }

    /// Deploys a fresh commit and returns it with the new version id.
    async fn ship(&self, p: &Cloudflare, env: Environment, msg: &str) -> (CommitSha, String) {
        let c = self.commit(msg).await;
        let out = p.deploy(&self.target(env, &c, Strategy::Rolling), &self.cancel).await.unwrap();
        assert_eq!(out.status, StepStatus::Passed, "{}", out.detail);
        let id = p.current_version(env).await.unwrap().unwrap();
        (c, id)
    }
}

fn merge(into: &mut Value, extra: Value) {
    match (into, extra) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn platform_error(e: CoreError) -> (String, String) {
    match e {
        CoreError::Platform { message, hint, .. } => (message, hint),
        other => panic!("expected a platform error, got {other:?}"),
    }
}

#[tokio::test]
async fn deploy_staging_and_production_record_tags_and_live_files() {
    let fx = Fixture::new().await;
    let p = fx.provider(json!({}));
    let c = fx.commit("feature").await;

    let staging = p.deploy(&fx.target(Environment::Staging, &c, Strategy::Rolling), &fx.cancel).await.unwrap();
    assert_eq!(staging.status, StepStatus::Passed);
    assert!(staging.detail.contains(STAGING_WORKER) && staging.detail.contains(&c.short()), "{}", staging.detail);
    let prod = p.deploy(&fx.target(Environment::Production, &c, Strategy::Rolling), &fx.cancel).await.unwrap();
    assert!(prod.detail.contains(PROD_WORKER), "{}", prod.detail);

    let argvs = fx.argvs();
    let message = format!("oc-deploy staging {}", c.as_str());
    assert_eq!(argvs[0], ["deploy", "--env", "staging", "--tag", &c.short(), "--message", &message]);
    let message = format!("oc-deploy production {}", c.as_str());
    assert_eq!(argvs[1], ["deploy", "--tag", &c.short(), "--message", &message], "wrangler_env null → no --env");
    for call in fx.calls() {
        assert_eq!(call["env"]["WRANGLER_SEND_METRICS"], "false");
        assert_eq!(call["env"]["CLOUDFLARE_ACCOUNT_ID"], ACCOUNT);
        let names: Vec<&str> = call["env_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(names.contains(&"CLOUDFLARE_API_TOKEN"));
        assert!(!names.contains(&"CARGO_MANIFEST_DIR"), "only allow-listed variables reach wrangler: {names:?}");
    }

    let staging_id = p.current_version(Environment::Staging).await.unwrap().unwrap();
    let prod_id = p.current_version(Environment::Production).await.unwrap().unwrap();
    assert_ne!(staging_id, prod_id);
    assert!(staging.detail.contains(&staging_id), "the detail names the new version: {}", staging.detail);
    assert_eq!(fx.live(STAGING_WORKER).unwrap(), json!({"version": staging_id, "commit": c.as_str()}));
    assert_eq!(fx.live(PROD_WORKER).unwrap(), json!({"version": prod_id, "commit": c.as_str()}));
}

#[tokio::test]
async fn versions_are_newest_first_although_wrangler_lists_oldest_first() {
    let fx = Fixture::new().await;
    let p = fx.provider(json!({}));
    assert_eq!(p.current_version(Environment::Production).await.unwrap(), None, "never deployed");
    assert!(p.versions(Environment::Production, &fx.cancel).await.unwrap().is_empty());

    let (c1, v1) = fx.ship(&p, Environment::Production, "one").await;
    let (c2, v2) = fx.ship(&p, Environment::Production, "two").await;
    let (c3, v3) = fx.ship(&p, Environment::Production, "three").await;
    assert_eq!(p.current_version(Environment::Production).await.unwrap().as_deref(), Some(v3.as_str()));

    let versions = p.versions(Environment::Production, &fx.cancel).await.unwrap();
    let ids: Vec<&str> = versions.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, [v3.as_str(), v2.as_str(), v1.as_str()]);
    let commits: Vec<Option<&str>> = versions.iter().map(|v| v.commit.as_deref()).collect();
    assert_eq!(commits, [Some(c3.as_str()), Some(c2.as_str()), Some(c1.as_str())]);
    let current: Vec<bool> = versions.iter().map(|v| v.current).collect();
    assert_eq!(current, [true, false, false]);
    assert!(versions[0].created_at.is_some());
}

#[tokio::test]
async fn rollback_to_a_named_version_restores_live() {
    let fx = Fixture::new().await;
    let p = fx.provider(json!({}));
    let (c1, v1) = fx.ship(&p, Environment::Production, "good").await;
    let (_c2, v2) = fx.ship(&p, Environment::Production, "bad").await;
    assert_eq!(fx.live(PROD_WORKER).unwrap()["version"], v2);

    let out = p.rollback(Environment::Production, &v1, &fx.cancel).await.unwrap();
    assert_eq!(out.status, StepStatus::Passed);
    assert!(out.detail.contains(&v1), "{}", out.detail);
    assert_eq!(fx.live(PROD_WORKER).unwrap(), json!({"version": v1, "commit": c1.as_str()}));
    assert_eq!(p.current_version(Environment::Production).await.unwrap().as_deref(), Some(v1.as_str()));
    let argv = fx.argvs().into_iter().find(|a| a[0] == "rollback").unwrap();
    assert_eq!(argv[..3], ["rollback", v1.as_str(), "-y"]);
    assert!(argv.contains(&"-m".to_owned()));

    // A commit works too: it is looked up among the versions.
    let (_c3, _v3) = fx.ship(&p, Environment::Production, "again").await;
    p.rollback(Environment::Production, &c1.short(), &fx.cancel).await.unwrap();
    assert_eq!(fx.live(PROD_WORKER).unwrap()["version"], v1);

    let err = p.rollback(Environment::Production, "no-such-commit", &fx.cancel).await.unwrap_err();
    assert!(matches!(err, CoreError::NotFound { .. }), "{err:?}");
    let err = p.rollback(Environment::Production, "--env", &fx.cancel).await.unwrap_err();
    assert!(matches!(err, CoreError::InvalidInput { .. }), "a flag is never passed as a version: {err:?}");
}

#[tokio::test]
async fn d1_migrations_apply_then_report_nothing_to_apply() {
    let fx = Fixture::new().await;
    let p = fx.provider(json!({}));
    let c = fx.commit("schema").await;
    let t = fx.target(Environment::Staging, &c, Strategy::Rolling);

    let first = p.migrate(&t, &fx.cancel).await.unwrap();
    assert_eq!(first.status, StepStatus::Passed);
    assert_eq!(first.detail, "D1 shop-staging-db: applied 0001_init.sql");
    let second = p.migrate(&t, &fx.cancel).await.unwrap();
    assert_eq!(second.detail, "D1 shop-staging-db: no migrations to apply");
    assert_eq!(fx.argvs()[0], ["d1", "migrations", "apply", "shop-staging-db", "--remote", "--env", "staging"]);

    let none = fx.provider(json!({"environments": {"staging": {"d1_database": null}}}));
    let skipped = none.migrate(&t, &fx.cancel).await.unwrap();
    assert_eq!(skipped.status, StepStatus::Skipped);
    assert!(skipped.detail.contains("d1_database"), "{}", skipped.detail);
}

#[tokio::test]
async fn failed_migration_is_a_platform_error_with_wranglers_words_and_live_is_unchanged() {
    let fx = Fixture::new().await;
    let p = fx.provider(json!({}));
    let (_c, v1) = fx.ship(&p, Environment::Staging, "v1").await;
    let before = fx.live(STAGING_WORKER).unwrap();
    fx.fail(json!({"d1 migrations apply": {
        "exit": 1,
        "stdout": "│ 0002_add_b.sql │ ❌     │\n",
        "stderr": "\n✘ [ERROR] Migration 0002_add_b.sql failed with the following errors:\n\n\n✘ [ERROR] no such table: b: SQLITE_ERROR [code: 7500]\n"
    }}));
    let c = fx.commit("v2").await;
    let err = p.migrate(&fx.target(Environment::Staging, &c, Strategy::Rolling), &fx.cancel).await.unwrap_err();
    let (message, _hint) = platform_error(err);
    assert!(message.contains("✘ [ERROR] Migration 0002_add_b.sql failed"), "{message}");
    assert!(message.contains("no such table: b"), "{message}");
    assert_eq!(fx.live(STAGING_WORKER).unwrap(), before);
    assert_eq!(p.current_version(Environment::Staging).await.unwrap().as_deref(), Some(v1.as_str()));
}

/// What the fake deploy API received.
#[derive(Debug, Clone)]
struct ApiCall {
    authorization: Option<String>,
    body: Value,
}

/// A deploy API on 127.0.0.1 answering every `POST /deploy` with `status`.
async fn deploy_api(status: u16) -> (String, Arc<Mutex<Vec<ApiCall>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let calls: Arc<Mutex<Vec<ApiCall>>> = Arc::default();
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/deploy",
        axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
                seen.lock().unwrap().push(ApiCall { authorization, body: body.0 });
                (StatusCode::from_u16(status).unwrap(), axum::Json(json!({"ok": status < 300, "version_id": "api-v-1"})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

#[tokio::test]
async fn deploy_api_success_deploys_without_wrangler() {
    let fx = Fixture::new().await;
    let (url, calls) = deploy_api(200).await;
    let api_token = "deploy-api-token-8d7e6f5a";
    let p = fx
        .provider(json!({"cloudflare": {"deploy_api": {"url": url, "app": "shop-api", "token_env": "SHOP_DEPLOY_TOKEN"}}}))
        .with_env("SHOP_DEPLOY_TOKEN", Some(api_token));
    let c = fx.commit("api").await;
    let out = p.deploy(&fx.target(Environment::Staging, &c, Strategy::Rolling), &fx.cancel).await.unwrap();
    assert_eq!(out.status, StepStatus::Passed);
    assert!(out.detail.contains("deploy API") && out.detail.contains("HTTP 200"), "{}", out.detail);
    assert!(!out.detail.contains(api_token));

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].authorization.as_deref(), Some(format!("Bearer {api_token}").as_str()));
    assert_eq!(calls[0].body, json!({"app": "shop-api", "env": "staging"}));
    assert!(fx.calls().is_empty(), "wrangler was not called: {:?}", fx.argvs());
    assert!(!fx.runner.redactor().redact(api_token).contains(api_token), "the token was added to the redactor");
}

#[tokio::test]
async fn deploy_api_failure_falls_back_to_wrangler_and_says_why() {
    let fx = Fixture::new().await;
    let (url, calls) = deploy_api(500).await;
    let p = fx.provider(json!({"cloudflare": {"deploy_api": {"url": url}}})).with_env("DEPLOY_API_TOKEN", Some("tok-500-abcdef"));
    let c = fx.commit("fallback").await;
    let out = p.deploy(&fx.target(Environment::Staging, &c, Strategy::Rolling), &fx.cancel).await.unwrap();
    assert_eq!(out.status, StepStatus::Passed);
    assert!(out.detail.contains("HTTP 500") && out.detail.contains("fell back to wrangler"), "{}", out.detail);
    assert!(!out.detail.contains("tok-500-abcdef"));
    assert_eq!(calls.lock().unwrap()[0].body, json!({"app": "shop", "env": "staging"}), "app defaults to project_name");
    assert_eq!(fx.argvs()[0][0], "deploy");
    assert_eq!(fx.live(STAGING_WORKER).unwrap()["commit"], c.as_str());

    // No token, or nothing listening: wrangler again, with the reason.
    let no_token = fx.provider(json!({"cloudflare": {"deploy_api": {"url": url}}})).with_env("DEPLOY_API_TOKEN", None);
    let out = no_token.deploy(&fx.target(Environment::Staging, &c, Strategy::Rolling), &fx.cancel).await.unwrap();
    assert!(out.detail.contains("DEPLOY_API_TOKEN is not set"), "{}", out.detail);
    let dead =
        fx.provider(json!({"cloudflare": {"deploy_api": {"url": "http://127.0.0.1:9"}}})).with_env("DEPLOY_API_TOKEN", Some("t-123456"));
    let out = dead.deploy(&fx.target(Environment::Staging, &c, Strategy::Rolling), &fx.cancel).await.unwrap();
    assert!(out.detail.contains("unreachable"), "{}", out.detail);
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn missing_token_is_a_platform_error_with_the_login_hint() {
    let fx = Fixture::new().await;
    let p = fx.bare_provider(json!({}));
    let c = fx.commit("x").await;
    let err = p.deploy(&fx.target(Environment::Staging, &c, Strategy::Rolling), &fx.cancel).await.unwrap_err();
    let (message, hint) = platform_error(err);
    assert!(message.contains("necessary to set a CLOUDFLARE_API_TOKEN"), "{message}");
    assert!(hint.contains("CLOUDFLARE_API_TOKEN") && hint.contains("wrangler login"), "{hint}");
    assert!(fx.live(STAGING_WORKER).is_none());
}

#[tokio::test]
async fn a_failed_json_command_with_text_on_stdout_is_not_parsed_as_json() {
    let fx = Fixture::new().await;
    let p = fx.provider(json!({}));
    fx.ship(&p, Environment::Staging, "v1").await;
    // A token the API rejects (403, code 10000): wrangler prints text on stdout and exits 1.
    let rejected = fx.provider(json!({})).with_env("CLOUDFLARE_API_TOKEN", Some("invalid-token-000000"));
    let err = rejected.versions(Environment::Staging, &fx.cancel).await.unwrap_err();
    let (message, hint) = platform_error(err);
    assert!(message.contains("Authentication error [code: 10000]"), "{message}");
    assert!(!message.contains("cannot read"), "stdout was not parsed: {message}");
    assert!(hint.contains("CLOUDFLARE_API_TOKEN"), "{hint}");
    assert!(!message.contains("invalid-token-000000"));

    fx.fail(json!({"deployments list": {"exit": 1, "stdout": "[{\"id\": \"half", "stderr": "✘ [ERROR] boom\n"}}));
    let (message, _) = platform_error(p.current_version(Environment::Staging).await.unwrap_err());
    assert!(message.contains("boom") && !message.contains("cannot read"), "{message}");
}

#[tokio::test]
async fn missing_cli_is_program_missing_with_the_install_hint() {
    let fx = Fixture::new().await;
    let missing = fx.base.join("bin/not-here/wrangler");
    let p = fx.provider(json!({"platform_cli": [missing]}));
    let c = fx.commit("x").await;
    match p.deploy(&fx.target(Environment::Staging, &c, Strategy::Rolling), &fx.cancel).await.unwrap_err() {
        CoreError::ProgramMissing { hint, .. } => assert!(hint.contains("npm i -g wrangler"), "{hint}"),
        other => panic!("expected ProgramMissing, got {other:?}"),
    }
    let items = p.checklist(&fx.cancel).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].status, CheckStatus::Fail);
    assert!(items[0].hint.as_deref().unwrap().contains("npm i -g wrangler"));
}

#[tokio::test]
async fn a_hanging_wrangler_times_out() {
    let fx = Fixture::new().await;
    let p = fx.provider(json!({"platform_timeout_seconds": 1}));
    fx.fail(json!({"deploy": {"exit": 0, "sleep": 10}}));
    let c = fx.commit("slow").await;
    let started = std::time::Instant::now();
    let err = p.deploy(&fx.target(Environment::Staging, &c, Strategy::Rolling), &fx.cancel).await.unwrap_err();
    assert!(matches!(err, CoreError::Timeout { seconds: 1, .. }), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn secret_values_go_on_stdin_only_and_list_returns_names() {
    let fx = Fixture::new().await;
    let p = fx.provider(json!({}));
    fx.ship(&p, Environment::Staging, "v1").await;
    let value = "s3cr3t-value-77aa99";
    let out = p.env_set(Environment::Staging, "API_KEY", &Secret::new(value), &fx.cancel).await.unwrap();
    assert_eq!(out.status, StepStatus::Passed);
    assert!(!out.detail.contains(value), "{}", out.detail);
    let put = fx.calls().into_iter().find(|c| c["argv"][0] == "secret").unwrap();
    assert_eq!(put["argv"], json!(["secret", "put", "API_KEY", "--env", "staging"]));
    assert_eq!(put["stdin"], value);
    for call in fx.calls() {
        assert!(!call["argv"].to_string().contains(value));
    }
    p.env_set(Environment::Staging, "DB_URL", &Secret::new("postgres://x"), &fx.cancel).await.unwrap();

    let listing = p.env_list(Environment::Staging, &fx.cancel).await.unwrap();
    let names: Vec<(&str, bool)> = listing.vars.iter().map(|v| (v.name.as_str(), v.secret)).collect();
    assert_eq!(names, [("API_KEY", true), ("DB_URL", true)]);
    assert!(!format!("{listing:?}").contains(value));

    p.env_unset(Environment::Staging, "DB_URL", &fx.cancel).await.unwrap();
    let names: Vec<String> = p.env_list(Environment::Staging, &fx.cancel).await.unwrap().vars.into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["API_KEY"]);
    let err = p.env_set(Environment::Staging, "--env", &Secret::new("x"), &fx.cancel).await.unwrap_err();
    assert!(matches!(err, CoreError::InvalidInput { .. }));
    let err = p.env_unset(Environment::Staging, "NOPE", &fx.cancel).await.unwrap_err();
    assert!(matches!(err, CoreError::Platform { .. }), "{err:?}");
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let fx = Fixture::new().await;
    let p = fx.provider(json!({}));
    let (_c, v1) = fx.ship(&p, Environment::Staging, "v1").await;
    let state_before = std::fs::read_to_string(fx.state().join("workers/shop-staging.json")).unwrap();
    let c = fx.commit("v2").await;
    let out = p.dry_run(&fx.target(Environment::Staging, &c, Strategy::Rolling), &fx.cancel).await.unwrap();
    assert_eq!(out.status, StepStatus::Passed);
    assert!(out.detail.contains("Total Upload"), "{}", out.detail);
    assert_eq!(fx.argvs().last().unwrap(), &["deploy", "--dry-run", "--env", "staging"]);
    assert_eq!(std::fs::read_to_string(fx.state().join("workers/shop-staging.json")).unwrap(), state_before);
    assert_eq!(fx.live(STAGING_WORKER).unwrap()["version"], v1);

    // No credentials needed: wrangler makes no API call.
    let bare = fx.bare_provider(json!({}));
    bare.dry_run(&fx.target(Environment::Staging, &c, Strategy::Rolling), &fx.cancel).await.unwrap();
}

#[tokio::test]
async fn pages_deploy_with_and_without_config() {
    let fx = Fixture::new().await;
    let c = fx.commit("site").await;
    let none = fx.provider(json!({}));
    let out = none.deploy_frontend(&fx.target(Environment::Staging, &c, Strategy::Rolling), &fx.cancel).await.unwrap();
    assert_eq!(out.status, StepStatus::Skipped);
    assert!(out.detail.contains("no Pages frontend configured"));
    assert!(fx.calls().is_empty());

    std::fs::create_dir_all(fx.root.join("frontend")).unwrap();
    let p = fx.provider(json!({
        "cloudflare": {"pages": {
            "project": "shop-web",
            "install": ["sh", "-c", "echo installed > installed.txt"],
            "build": ["sh", "-c", "test -f installed.txt && mkdir -p dist && echo '<html>' > dist/index.html"]
        }},
        "environments": {"production": {"auto_deploy_branch": "main"}}
    }));
    let staging = p.deploy_frontend(&fx.target(Environment::Staging, &c, Strategy::Rolling), &fx.cancel).await.unwrap();
    assert_eq!(staging.status, StepStatus::Passed);
    assert!(fx.root.join("frontend/installed.txt").is_file(), "the install ran in frontend/ first");
    assert!(fx.root.join("frontend/dist/index.html").is_file(), "the build ran in frontend/");
    assert!(staging.detail.contains("shop-web-staging") && staging.detail.contains(".shop-web-staging.pages.dev"), "{}", staging.detail);
    let prod = p.deploy_frontend(&fx.target(Environment::Production, &c, Strategy::Rolling), &fx.cancel).await.unwrap();
    assert!(prod.detail.contains("https://") && prod.detail.contains(".shop-web.pages.dev"), "{}", prod.detail);

    let argvs = fx.argvs();
    let dist = fx.root.join("frontend/dist").to_string_lossy().into_owned();
    assert_eq!(
        argvs[0],
        [
            "pages",
            "deploy",
            &dist,
            "--project-name",
            "shop-web-staging",
            "--branch",
            "staging",
            "--commit-hash",
            c.as_str(),
            "--commit-dirty=false"
        ]
    );
    assert_eq!(argvs[1][4..6], ["shop-web", "--branch"]);
    assert_eq!(argvs[1][6], "main");
}

#[tokio::test]
async fn canary_splits_traffic_and_leaves_it_split_without_a_url() {
    let fx = Fixture::new().await;
    let p = fx.provider(json!({}));
    let (_c1, v1) = fx.ship(&p, Environment::Production, "stable").await;
    let c2 = fx.commit("canary").await;
    let out = p.deploy(&fx.target(Environment::Production, &c2, Strategy::Canary), &fx.cancel).await.unwrap();
    assert_eq!(out.status, StepStatus::Passed);
    assert!(out.detail.contains("traffic split: 10%") && out.detail.contains("90% stays on"), "{}", out.detail);

    let argvs = fx.argvs();
    let upload = argvs.iter().find(|a| a[..2] == ["versions", "upload"]).unwrap();
    assert!(upload.contains(&c2.short()));
    let split = argvs.iter().find(|a| a[..2] == ["versions", "deploy"]).unwrap();
    let versions = p.versions(Environment::Production, &fx.cancel).await.unwrap();
    let v2 = versions.iter().find(|v| v.commit.as_deref() == Some(c2.as_str())).unwrap();
    assert_eq!(split[2..5], [format!("{}@10", v2.id), format!("{v1}@90"), "-y".to_owned()]);
    assert_eq!(v2.status.as_deref(), Some("serving 10% of traffic"));
    // The old version still serves most traffic, and the live file says so.
    assert_eq!(p.current_version(Environment::Production).await.unwrap().as_deref(), Some(v1.as_str()));
    assert_eq!(fx.live(PROD_WORKER).unwrap()["version"], v1);
}

#[tokio::test]
async fn the_canary_share_comes_from_the_config() {
    let fx = Fixture::new().await;
    let p = fx.provider(json!({ "cloudflare": { "canary_percent": 25 } }));
    let (_c1, v1) = fx.ship(&p, Environment::Production, "stable").await;
    let c2 = fx.commit("canary").await;
    let out = p.deploy(&fx.target(Environment::Production, &c2, Strategy::Canary), &fx.cancel).await.unwrap();
    assert!(out.detail.contains("traffic split: 25%") && out.detail.contains("75% stays on"), "{}", out.detail);
    let split = fx.argvs().into_iter().find(|a| a[..2] == ["versions", "deploy"]).unwrap();
    assert_eq!(split[3], format!("{v1}@75"));
    let bad =
        json!({ "project_name": "shop", "platform": "cloudflare-workers", "environments": {}, "cloudflare": { "canary_percent": 100 } });
    let err = Config::parse(&bad.to_string(), Path::new(".oc-deploy-ops.json")).unwrap_err().to_string();
    assert!(err.contains("cloudflare.canary_percent"), "{err}");
}

/// A health endpoint on 127.0.0.1 answering `status`.
async fn health_server(status: u16) -> String {
    let app =
        axum::Router::new().route("/health", axum::routing::get(move || async move { axum::http::StatusCode::from_u16(status).unwrap() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn canary_is_promoted_when_healthy_and_reverted_when_not() {
    let fx = Fixture::new().await;
    let healthy = health_server(200).await;
    let p = fx.provider(json!({"environments": {"production": {"url": healthy}}}));
    let (_c1, v1) = fx.ship(&p, Environment::Production, "stable").await;
    let c2 = fx.commit("good canary").await;
    let out = p.deploy(&fx.target(Environment::Production, &c2, Strategy::Canary), &fx.cancel).await.unwrap();
    assert!(out.detail.contains("promoted") && out.detail.contains("to 100%"), "{}", out.detail);
    let v2 = p.current_version(Environment::Production).await.unwrap().unwrap();
    assert_ne!(v2, v1);
    assert_eq!(fx.live(PROD_WORKER).unwrap(), json!({"version": v2, "commit": c2.as_str()}));

    let sick = health_server(503).await;
    let p = fx.provider(json!({"environments": {"production": {"url": sick}}}));
    let c3 = fx.commit("bad canary").await;
    let err = p.deploy(&fx.target(Environment::Production, &c3, Strategy::Canary), &fx.cancel).await.unwrap_err();
    assert!(matches!(&err, CoreError::Refused { message, .. } if message.contains("unhealthy")), "{err:?}");
    assert_eq!(p.current_version(Environment::Production).await.unwrap().as_deref(), Some(v2.as_str()));
    let last = fx.argvs().into_iter().rev().find(|a| a[..2] == ["versions", "deploy"]).unwrap();
    assert_eq!(last[..4], ["versions", "deploy", &format!("{v2}@100"), "-y"], "all traffic went back to the old version");
}

#[tokio::test]
async fn checklist_reports_the_login_and_the_dry_run() {
    let fx = Fixture::new().await;
    let items = fx
        .provider(json!({"cloudflare": {"deploy_api": {"url": "http://127.0.0.1:9"}}}))
        .with_env("DEPLOY_API_TOKEN", None)
        .checklist(&fx.cancel)
        .await;
    let by_name: BTreeMap<&str, _> = items.iter().map(|i| (i.name.as_str(), i)).collect();
    let login = by_name["cloudflare login"];
    assert_eq!(login.status, CheckStatus::Ok);
    assert!(login.detail.contains("dev@example.com") && login.detail.contains("Example Account"), "{}", login.detail);
    assert!(!login.detail.contains(TOKEN));
    assert_eq!(by_name["deploy API token"].status, CheckStatus::Warn);
    assert_eq!(by_name["wrangler deploy --dry-run (staging)"].status, CheckStatus::Ok);

    let items = fx.bare_provider(json!({})).checklist(&fx.cancel).await;
    assert_eq!(items[0].name, "cloudflare login");
    assert_eq!(items[0].status, CheckStatus::Fail);
    assert!(items[0].detail.contains("not logged in"), "{}", items[0].detail);
    assert!(items[0].hint.as_deref().unwrap().contains("CLOUDFLARE_API_TOKEN"));
}
