//! The Heroku provider against the fake `heroku` CLI (tests/fakes/heroku), real `git` pushing to
//! local bare repositories whose post-receive hook turns a push into a release, and a fake
//! Platform API on 127.0.0.1 for config vars.
#![allow(clippy::disallowed_methods)] // the fixture runs git and writes hooks directly

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deploy_core::CoreError;
use deploy_core::cloud::heroku::Heroku;
use deploy_core::config::Config;
use deploy_core::detect::CheckStatus;
use deploy_core::domain::{CommitSha, Environment, Strategy};
use deploy_core::process::Runner;
use deploy_core::provider::{DeployTarget, Provider};
use deploy_core::secret::Secret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const KEY: &str = "hk-test-key-0123456789";
const STAGING: &str = "shop-staging";
const PROD: &str = "shop-prod";
const DB_URL: &str = "postgres://shop:db-pass-7f3a9c@db.internal/shop";

fn fakes() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fakes")
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A temp dir with the fake CLI, a project with two commits, and one bare remote per app.
struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    /// Commits A (older) and B (newer).
    commits: Vec<String>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let bin = base.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(fakes().join("heroku"), bin.join("heroku")).unwrap();
        // The operator's shell has the key: the wrapper stands for it.
        write_exec(&bin.join("heroku-with-key"), &format!("#!/bin/sh\nHEROKU_API_KEY={KEY} exec \"$(dirname \"$0\")/heroku\" \"$@\"\n"));

        let root = base.join("project");
        std::fs::create_dir_all(&root).unwrap();
        git(&root, &["init", "-q"]);
        std::fs::write(root.join("Procfile"), "web: ./bin/server\nrelease: ./bin/migrate\n").unwrap();
        std::fs::write(root.join("app.txt"), "one\n").unwrap();
        git(&root, &["add", "-A"]);
        git(&root, &["commit", "-q", "-m", "first"]);
        let a = git(&root, &["rev-parse", "HEAD"]);
        std::fs::write(root.join("app.txt"), "two\n").unwrap();
        git(&root, &["commit", "-q", "-am", "second"]);
        let b = git(&root, &["rev-parse", "HEAD"]);

        for app in [STAGING, PROD] {
            let remote = base.join("remotes").join(format!("{app}.git"));
            std::fs::create_dir_all(&remote).unwrap();
            git(&remote, &["init", "-q", "--bare"]);
            write_exec(
                &remote.join("hooks/post-receive"),
                &format!(
                    "#!/bin/sh\nwhile read old new ref; do\n  if [ \"$ref\" = refs/heads/main ]; then \"{}\" _receive {app} \"$new\"; fi\ndone\n",
                    bin.join("heroku").display()
                ),
            );
        }
        let fx = Self { _dir: dir, base, root, commits: vec![a, b] };
        fx.seed(json!({
            "email": "dev@example.com",
            "api_key": KEY,
            "apps": {
                STAGING: { "config": { "DATABASE_URL": DB_URL, "RAILS_ENV": "staging" }, "pipeline": "shop" },
                PROD: { "config": { "DATABASE_URL": DB_URL }, "pipeline": "shop" }
            }
        }));
        fx
    }

    fn seed(&self, state: Value) {
        std::fs::create_dir_all(self.base.join("state")).unwrap();
        std::fs::write(self.base.join("state/heroku.json"), serde_json::to_string_pretty(&state).unwrap()).unwrap();
    }

    /// Changes the fake's state of one app (e.g. its release phase).
    fn set_app(&self, app: &str, key: &str, value: Value) {
        let path = self.base.join("state/heroku.json");
        let mut state: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        state["apps"][app][key] = value;
        std::fs::write(&path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
    }

    fn fail(&self, spec: Value) {
        std::fs::write(self.base.join("state/fail.json"), spec.to_string()).unwrap();
    }

    fn config(&self, cli: &str, extra: Value) -> Config {
        let mut cfg = json!({
            "project_name": "shop",
            "platform": "heroku",
            "platform_cli": [self.base.join("bin").join(cli)],
            "platform_timeout_seconds": 30,
            "environments": {
                "staging": { "app": STAGING, "git_remote": self.remote(STAGING), "url": "https://shop-staging.herokuapp.com" },
                "production": { "app": PROD, "git_remote": self.remote(PROD), "url": "https://shop-prod.herokuapp.com" }
            }
        });
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        Config::parse(&cfg.to_string(), &self.root.join(".oc-deploy-ops.json")).unwrap()
    }

    fn remote(&self, app: &str) -> String {
        self.base.join("remotes").join(format!("{app}.git")).display().to_string()
    }

    fn provider_with(&self, cfg: &Config) -> Heroku {
        Heroku::new(cfg, &self.root, &Runner::default()).unwrap().with_poll_interval(Duration::from_millis(20))
    }

    fn provider(&self) -> Heroku {
        self.provider_with(&self.config("heroku-with-key", json!({})))
    }

    fn target(&self, env: Environment, i: usize) -> DeployTarget {
        let sha = &self.commits[i];
        DeployTarget { env, commit: CommitSha::parse(sha).unwrap(), version: sha[..7].to_owned(), strategy: Strategy::Rolling }
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

    fn remote_main(&self, app: &str) -> String {
        git(Path::new(&self.remote(app)), &["rev-parse", "refs/heads/main"])
    }
}

fn cancel() -> CancellationToken {
    CancellationToken::new()
}

#[tokio::test]
async fn staging_and_production_deploys_push_the_commit_and_confirm_the_release() {
    let fx = Fixture::new();
    let p = fx.provider();
    let a = &fx.commits[0];
    // A new app's releases carry no code yet: nothing is live, nothing to roll back to.
    assert_eq!(p.current_version(Environment::Staging).await.unwrap(), None);

    let out = p.deploy(&fx.target(Environment::Staging, 0), &cancel()).await.unwrap();
    assert!(out.detail.starts_with("v2 live on shop-staging: Deploy "), "{}", out.detail);
    assert_eq!(&fx.remote_main(STAGING), a);
    assert_eq!(fx.live(STAGING).unwrap(), json!({ "version": "v2", "commit": a }));
    assert_eq!(p.current_version(Environment::Staging).await.unwrap().as_deref(), Some("v2"));

    let mut blue_green = fx.target(Environment::Production, 0);
    blue_green.strategy = Strategy::BlueGreen;
    let out = p.deploy(&blue_green, &cancel()).await.unwrap();
    assert!(out.detail.contains("live on shop-prod"), "{}", out.detail);
    assert!(
        out.detail
            .ends_with("`blue-green` is not a Heroku strategy: Heroku restarted the dynos its own way (preboot if the app has it on)"),
        "{}",
        out.detail
    );
    assert_eq!(fx.live(PROD).unwrap()["commit"], json!(a));
    assert_eq!(p.current_version(Environment::Production).await.unwrap().as_deref(), Some("v2"));
    // Confirmation reads the newest release as JSON.
    assert!(fx.argvs().contains(&vec!["releases".into(), "-a".into(), PROD.into(), "--json".into(), "-n".into(), "10".into()]));
    // Only allow-listed variables reach the CLI (the key comes from the operator's shell).
    for call in fx.calls().iter().filter(|c| c["argv"][0] != "_receive") {
        let names: Vec<&str> = call["env_names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(names.contains(&"HEROKU_API_KEY"));
        assert!(!names.iter().any(|n| n.starts_with("CARGO")), "{names:?}");
    }
}

#[tokio::test]
async fn versions_are_newest_first_with_the_commit_of_each_release() {
    let fx = Fixture::new();
    let p = fx.provider();
    p.deploy(&fx.target(Environment::Staging, 0), &cancel()).await.unwrap();
    p.deploy(&fx.target(Environment::Staging, 1), &cancel()).await.unwrap();
    let versions = p.versions(Environment::Staging, &cancel()).await.unwrap();
    let ids: Vec<&str> = versions.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["v3", "v2", "v1"]);
    assert!(versions[0].current && !versions[1].current);
    assert!(fx.commits[1].starts_with(versions[0].commit.as_deref().unwrap()));
    assert!(fx.commits[0].starts_with(versions[1].commit.as_deref().unwrap()));
    assert_eq!(versions[2].commit, None);
    assert_eq!(versions[0].status.as_deref(), Some("succeeded"));
}

#[tokio::test]
async fn rollback_restores_the_previous_release_and_the_live_commit() {
    let fx = Fixture::new();
    let p = fx.provider();
    p.deploy(&fx.target(Environment::Staging, 0), &cancel()).await.unwrap();
    let before = p.current_version(Environment::Staging).await.unwrap().unwrap();
    p.deploy(&fx.target(Environment::Staging, 1), &cancel()).await.unwrap();
    assert_eq!(fx.live(STAGING).unwrap()["commit"], json!(fx.commits[1]));

    let out = p.rollback(Environment::Staging, &before, &cancel()).await.unwrap();
    assert!(out.detail.contains("rolled back to v2: new release v4 (Rollback to v2)"), "{}", out.detail);
    assert_eq!(fx.live(STAGING).unwrap(), json!({ "version": "v4", "commit": fx.commits[0] }));
    assert_eq!(p.current_version(Environment::Staging).await.unwrap().as_deref(), Some("v4"));
    assert!(fx.argvs().contains(&vec!["rollback".into(), "v2".into(), "-a".into(), STAGING.into()]));
    // The rollback release carries the code of v2.
    let versions = p.versions(Environment::Staging, &cancel()).await.unwrap();
    assert!(fx.commits[0].starts_with(versions[0].commit.as_deref().unwrap()));

    let err = p.rollback(Environment::Staging, "dep-123", &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_input");
    let err = p.rollback(Environment::Staging, "v99", &cancel()).await.unwrap_err();
    assert!(err.to_string().contains("Couldn't find that release."), "{err}");
}

#[tokio::test]
async fn release_phase_failure_fails_the_deploy_and_keeps_the_live_release() {
    let fx = Fixture::new();
    let p = fx.provider();
    p.deploy(&fx.target(Environment::Staging, 0), &cancel()).await.unwrap();
    fx.set_app(STAGING, "release_phase", json!({ "fail": true }));

    let err = p.deploy(&fx.target(Environment::Staging, 1), &cancel()).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.code(), "platform_error");
    assert!(text.contains("release phase failed: v3"), "{text}");
    assert!(text.contains("still serves v2"), "{text}");
    assert!(text.contains("rake aborted!"), "the release output's tail: {text}");
    assert!(err.hint().contains("releases:output v3"), "{}", err.hint());
    assert_eq!(fx.live(STAGING).unwrap(), json!({ "version": "v2", "commit": fx.commits[0] }));
    assert_eq!(p.current_version(Environment::Staging).await.unwrap().as_deref(), Some("v2"));
    assert!(fx.argvs().contains(&vec!["releases:output".into(), "v3".into(), "-a".into(), STAGING.into()]));
}

#[tokio::test]
async fn a_pending_release_is_polled_until_its_release_phase_ends() {
    let fx = Fixture::new();
    fx.set_app(STAGING, "release_phase", json!({ "pending_polls": 3 }));
    let p = fx.provider();
    let out = p.deploy(&fx.target(Environment::Staging, 0), &cancel()).await.unwrap();
    assert!(out.detail.starts_with("v2 live"), "{}", out.detail);
    let polls = fx.argvs().iter().filter(|a| a[0] == "releases" && a.contains(&"10".to_owned())).count();
    assert!(polls >= 3, "polled {polls} times");
    assert_eq!(fx.live(STAGING).unwrap()["commit"], json!(fx.commits[0]));

    // A release phase that keeps running past the timeout is an error, not a success.
    fx.set_app(STAGING, "release_phase", json!({ "pending_polls": 1000 }));
    let p = fx.provider().with_poll_interval(Duration::from_millis(100)).with_release_wait(Duration::from_millis(600));
    let err = p.deploy(&fx.target(Environment::Staging, 1), &cancel()).await.unwrap_err();
    assert!(err.to_string().contains("still pending"), "{err}");
    assert!(err.retryable());
    assert_eq!(fx.live(STAGING).unwrap()["commit"], json!(fx.commits[0]));
}

#[tokio::test]
async fn pushing_a_commit_already_on_main_says_what_serves() {
    let fx = Fixture::new();
    let p = fx.provider();
    p.deploy(&fx.target(Environment::Staging, 0), &cancel()).await.unwrap();
    let out = p.deploy(&fx.target(Environment::Staging, 0), &cancel()).await.unwrap();
    assert!(out.detail.contains("already live on shop-staging as v2"), "{}", out.detail);

    // After a rollback the remote's main is still the newer commit: no silent success.
    p.deploy(&fx.target(Environment::Staging, 1), &cancel()).await.unwrap();
    p.rollback(Environment::Staging, "v2", &cancel()).await.unwrap();
    let err = p.deploy(&fx.target(Environment::Staging, 1), &cancel()).await.unwrap_err();
    assert!(err.to_string().contains("made no new release"), "{err}");
    assert!(err.hint().contains("to_version v3"), "{}", err.hint());
}

#[tokio::test]
async fn production_is_promoted_from_staging_when_configured() {
    let fx = Fixture::new();
    let p = fx.provider_with(&fx.config("heroku-with-key", json!({ "heroku": { "promote": true } })));

    // Staging does not run this commit yet: promotion would ship something else.
    let err = p.deploy(&fx.target(Environment::Production, 0), &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "refused");

    p.deploy(&fx.target(Environment::Staging, 0), &cancel()).await.unwrap();
    let dry = p.dry_run(&fx.target(Environment::Production, 0), &cancel()).await.unwrap();
    assert!(dry.detail.contains("pipelines:promote -a shop-staging -t shop-prod"), "{}", dry.detail);
    let out = p.deploy(&fx.target(Environment::Production, 0), &cancel()).await.unwrap();
    assert!(out.detail.contains("v2 live on shop-prod: Promote shop-staging v2"), "{}", out.detail);
    assert!(fx.argvs().contains(&vec!["pipelines:promote".into(), "-a".into(), STAGING.into(), "-t".into(), PROD.into()]));
    assert_eq!(fx.live(PROD).unwrap()["commit"], json!(fx.commits[0]));
    // Nothing was pushed to production's remote.
    assert!(!Path::new(&fx.remote(PROD)).join("refs/heads/main").exists());
    // Production's versions name the commit through staging's release.
    let versions = p.versions(Environment::Production, &cancel()).await.unwrap();
    assert!(fx.commits[0].starts_with(versions[0].commit.as_deref().unwrap()), "{versions:?}");

    // A failed promotion is an error with Heroku's words.
    p.deploy(&fx.target(Environment::Staging, 1), &cancel()).await.unwrap();
    fx.set_app(PROD, "release_phase", json!({ "fail": true }));
    let err = p.deploy(&fx.target(Environment::Production, 1), &cancel()).await.unwrap_err();
    assert!(err.to_string().contains("Promotion to some apps failed"), "{err}");
    assert_eq!(fx.live(PROD).unwrap()["commit"], json!(fx.commits[0]));
}

#[tokio::test]
async fn migrate_is_the_release_phase() {
    let fx = Fixture::new();
    let out = fx.provider().migrate(&fx.target(Environment::Staging, 0), &cancel()).await.unwrap();
    assert_eq!(out.status, deploy_core::run::StepStatus::Skipped);
    assert!(out.detail.contains("`./bin/migrate`"), "{}", out.detail);
    std::fs::write(fx.root.join("Procfile"), "web: ./bin/server\n").unwrap();
    let out = fx.provider().migrate(&fx.target(Environment::Staging, 0), &cancel()).await.unwrap();
    assert!(out.detail.contains("has none"), "{}", out.detail);
    assert!(fx.calls().is_empty(), "migrate contacted the platform");
}

#[tokio::test]
async fn dry_run_plans_without_contacting_the_platform() {
    let fx = Fixture::new();
    let out = fx.provider().dry_run(&fx.target(Environment::Staging, 1), &cancel()).await.unwrap();
    assert_eq!(
        out.detail,
        format!(
            "heroku has no dry run: would push {} to {} (app shop-staging) and wait for its release",
            fx.commits[1],
            fx.remote(STAGING)
        )
    );
    assert!(fx.calls().is_empty());
    assert!(!fx.provider().capabilities().dry_run);
}

#[tokio::test]
async fn missing_credentials_are_an_error_with_the_login_hint() {
    let fx = Fixture::new();
    let p = fx.provider_with(&fx.config("heroku", json!({})));
    let err = p.current_version(Environment::Staging).await.unwrap_err();
    assert_eq!(err.code(), "platform_error");
    assert!(err.to_string().contains("Invalid credentials provided."), "{err}");
    assert!(err.hint().contains("HEROKU_API_KEY"), "{}", err.hint());

    let items = p.checklist(&cancel()).await;
    let login = items.iter().find(|i| i.name == "heroku login").unwrap();
    assert_eq!(login.status, CheckStatus::Fail);
    assert!(login.detail.contains("not logged in"), "{}", login.detail);
    assert!(login.hint.as_deref().unwrap().contains("heroku login"));
}

#[tokio::test]
async fn checklist_proves_login_and_apps() {
    let fx = Fixture::new();
    let mut cfg = fx.config("heroku-with-key", json!({}));
    cfg.environments.production.as_mut().unwrap().app = Some("shop-missing".into());
    let items = fx.provider_with(&cfg).checklist(&cancel()).await;
    let names: Vec<(&str, CheckStatus)> = items.iter().map(|i| (i.name.as_str(), i.status)).collect();
    assert_eq!(
        names,
        [("heroku login", CheckStatus::Ok), ("heroku app (staging)", CheckStatus::Ok), ("heroku app (production)", CheckStatus::Fail)]
    );
    assert_eq!(items[0].detail, "logged in as dev@example.com");
    assert!(items[2].detail.contains("Couldn't find that app."), "{}", items[2].detail);
}

#[tokio::test]
async fn unknown_app_reports_herokus_own_error() {
    let fx = Fixture::new();
    let mut cfg = fx.config("heroku-with-key", json!({}));
    cfg.environments.staging.as_mut().unwrap().app = Some("shop-nope".into());
    let err = fx.provider_with(&cfg).versions(Environment::Staging, &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "platform_error");
    assert!(err.to_string().contains("Couldn't find that app."), "{err}");
    assert!(err.to_string().contains("(exit 2)"), "{err}");
}

#[tokio::test]
async fn a_missing_app_field_is_named() {
    let fx = Fixture::new();
    let mut cfg = fx.config("heroku-with-key", json!({}));
    cfg.environments.staging.as_mut().unwrap().app = None;
    let err = fx.provider_with(&cfg).deploy(&fx.target(Environment::Staging, 0), &cancel()).await.unwrap_err();
    match err {
        CoreError::InvalidInput { field, .. } => assert_eq!(field, "environments.staging.app"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_missing_cli_is_program_missing() {
    let fx = Fixture::new();
    let p = fx.provider_with(&fx.config("../not-installed/heroku", json!({})));
    let err = p.versions(Environment::Staging, &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "program_missing");
    assert!(err.hint().contains("npm i -g heroku"), "{}", err.hint());
}

#[tokio::test]
async fn a_hanging_cli_times_out() {
    let fx = Fixture::new();
    fx.fail(json!({ "releases": { "sleep": 10, "exit": 0 } }));
    let p = fx.provider_with(&fx.config("heroku-with-key", json!({ "platform_timeout_seconds": 1 })));
    let started = std::time::Instant::now();
    let err = p.current_version(Environment::Staging).await.unwrap_err();
    assert_eq!(err.code(), "timeout");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn env_list_returns_names_only() {
    let fx = Fixture::new();
    let listing = fx.provider().env_list(Environment::Staging, &cancel()).await.unwrap();
    let names: Vec<&str> = listing.vars.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["DATABASE_URL", "RAILS_ENV"]);
    let shown = format!("{} {listing:?}", serde_json::to_string(&listing).unwrap());
    assert!(!shown.contains("db-pass-7f3a9c") && !shown.contains("postgres://") && !shown.contains("\"staging\""), "{shown}");
    assert!(fx.argvs().contains(&vec!["config".into(), "-a".into(), STAGING.into(), "--json".into()]));
}

#[tokio::test]
async fn env_unset_uses_the_cli_without_values() {
    let fx = Fixture::new();
    let p = fx.provider();
    let out = p.env_unset(Environment::Staging, "RAILS_ENV", &cancel()).await.unwrap();
    assert!(
        out.detail.contains("removed RAILS_ENV from shop-staging (Unsetting RAILS_ENV and restarting shop-staging... done, v2)"),
        "{}",
        out.detail
    );
    assert!(fx.argvs().contains(&vec!["config:unset".into(), "RAILS_ENV".into(), "-a".into(), STAGING.into()]));
    let names: Vec<String> = p.env_list(Environment::Staging, &cancel()).await.unwrap().vars.into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["DATABASE_URL"]);
    let err = p.env_unset(Environment::Staging, "BAD NAME", &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_input");
}

/// What the fake Platform API saw: path, headers of interest, body.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: String,
    accept: String,
    body: String,
}

/// A fake Platform API on 127.0.0.1 answering `PATCH /apps/{app}/config-vars` like Heroku's:
/// the whole config with values on success, `{"id","message"}` on errors.
async fn fake_platform_api() -> (String, Arc<Mutex<Vec<Seen>>>) {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode};

    type Shared = Arc<Mutex<Vec<Seen>>>;
    async fn patch_config(
        State(seen): State<Shared>,
        UrlPath(app): UrlPath<String>,
        headers: HeaderMap,
        body: String,
    ) -> (StatusCode, String) {
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        seen.lock().unwrap().push(Seen {
            path: format!("/apps/{app}/config-vars"),
            authorization: header("authorization"),
            accept: header("accept"),
            body: body.clone(),
        });
        if header("authorization") != format!("Bearer {KEY}") {
            return (StatusCode::UNAUTHORIZED, json!({ "id": "unauthorized", "message": "Invalid credentials provided." }).to_string());
        }
        if app != STAGING {
            return (StatusCode::NOT_FOUND, json!({ "id": "not_found", "message": "Couldn't find that app." }).to_string());
        }
        let mut config: serde_json::Map<String, Value> = serde_json::from_str(&body).unwrap();
        config.insert("DATABASE_URL".into(), json!(DB_URL));
        (StatusCode::OK, Value::Object(config).to_string())
    }

    let seen: Shared = Arc::default();
    let app = axum::Router::new().route("/apps/{app}/config-vars", axum::routing::patch(patch_config)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn env_set_goes_through_the_platform_api_and_never_shows_the_value() {
    let fx = Fixture::new();
    let (base, seen) = fake_platform_api().await;
    let p = fx.provider().with_api(&base, Secret::new(KEY));
    let value = Secret::new("s3cr3t-value-9q8w7e");

    let out = p.env_set(Environment::Staging, "SECRET_KEY_BASE", &value, &cancel()).await.unwrap();
    assert!(out.detail.contains("set SECRET_KEY_BASE on shop-staging"), "{}", out.detail);
    assert!(!out.detail.contains("s3cr3t") && !out.detail.contains("postgres://"), "{}", out.detail);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/apps/shop-staging/config-vars");
    assert_eq!(seen[0].authorization, format!("Bearer {KEY}"));
    assert_eq!(seen[0].accept, "application/vnd.heroku+json; version=3");
    assert_eq!(serde_json::from_str::<Value>(&seen[0].body).unwrap(), json!({ "SECRET_KEY_BASE": "s3cr3t-value-9q8w7e" }));
    // The CLI was not involved: no argument list ever held the value.
    assert!(fx.calls().iter().all(|c| !c.to_string().contains("s3cr3t")));

    // An API error is Heroku's own message, without the value.
    let mut cfg = fx.config("heroku-with-key", json!({}));
    cfg.environments.production.as_mut().unwrap().app = Some("shop-gone".into());
    let p = fx.provider_with(&cfg).with_api(&base, Secret::new(KEY));
    let err = p.env_set(Environment::Production, "SECRET_KEY_BASE", &value, &cancel()).await.unwrap_err();
    let text = format!("{err} {}", err.hint());
    assert!(text.contains("HTTP 404: Couldn't find that app. (not_found)"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");

    let err = p.env_set(Environment::Staging, "BAD=NAME", &value, &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "invalid_input");
}

#[tokio::test]
async fn env_set_without_a_key_names_the_variable() {
    if std::env::var_os("HEROKU_API_KEY").is_some() {
        return; // the test process itself has a key; nothing to prove here
    }
    let fx = Fixture::new();
    let err = fx.provider().env_set(Environment::Staging, "FOO", &Secret::new("value-123456"), &cancel()).await.unwrap_err();
    assert!(err.to_string().contains("HEROKU_API_KEY is not set"), "{err}");
    assert!(err.hint().contains("export HEROKU_API_KEY"), "{}", err.hint());
}

#[tokio::test]
async fn an_https_push_carries_the_key_in_gits_environment_not_its_arguments() {
    let fx = Fixture::new();
    // A stand-in for git: records what it was given, then does what Heroku's git server does.
    let record = fx.base.join("git-call.json");
    let fake_git = fx.base.join("bin/git");
    write_exec(
        &fake_git,
        &format!(
            r#"#!/usr/bin/env python3
import json, os, subprocess, sys
names = ["GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0", "GIT_TERMINAL_PROMPT", "HEROKU_API_KEY"]
json.dump({{"argv": sys.argv[1:], "env": {{n: os.environ.get(n) for n in names}}, "cwd": os.getcwd()}}, open({record:?}, "w"))
sha = sys.argv[3].split(":")[0]
subprocess.run([{heroku:?}, "_receive", "shop-staging", sha], stdout=sys.stderr, check=True)
"#,
            record = record.display().to_string(),
            heroku = fx.base.join("bin/heroku").display().to_string()
        ),
    );
    let mut cfg = fx.config("heroku-with-key", json!({}));
    cfg.environments.staging.as_mut().unwrap().git_remote = None; // the default https remote
    let p = fx.provider_with(&cfg).with_api("http://127.0.0.1:9", Secret::new(KEY)).with_git_program(fake_git.display().to_string());
    let out = p.deploy(&fx.target(Environment::Staging, 0), &cancel()).await.unwrap();
    assert!(out.detail.contains("to https://git.heroku.com/shop-staging.git"), "{}", out.detail);

    let call: Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(call["argv"], json!(["push", "https://git.heroku.com/shop-staging.git", format!("{}:refs/heads/main", fx.commits[0])]));
    assert_eq!(call["cwd"], json!(fx.root.canonicalize().unwrap().display().to_string()));
    assert_eq!(call["env"]["GIT_CONFIG_COUNT"], "1");
    assert_eq!(call["env"]["GIT_CONFIG_KEY_0"], "http.extraHeader");
    // "Authorization: Basic " + base64(":" + KEY)
    assert_eq!(call["env"]["GIT_CONFIG_VALUE_0"], "Authorization: Basic OmhrLXRlc3Qta2V5LTAxMjM0NTY3ODk=");
    assert_eq!(call["env"]["GIT_TERMINAL_PROMPT"], "0");
    assert_eq!(call["env"]["HEROKU_API_KEY"], Value::Null, "git gets the header, not the key variable");
    assert!(!call["argv"].to_string().contains(KEY));
}

#[test]
fn capabilities_describe_heroku() {
    let fx = Fixture::new();
    let caps = fx.provider().capabilities();
    assert_eq!(caps.strategies, [Strategy::Rolling]);
    assert!(caps.rollback.unwrap().contains("heroku rollback vN"));
    assert!(caps.migrations.unwrap().contains("release:"));
    assert!(!caps.frontend);
}
