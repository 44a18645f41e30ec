//! The Shuttle provider against tests/fakes/shuttle, a fake `shuttle` CLI: results and errors as a
//! user sees them, the argument lists and environment the CLI received, and the live file.
#![allow(clippy::disallowed_methods)] // the tests set up git repositories directly

use std::path::{Path, PathBuf};
use std::process::Command;

use deploy_core::cloud::shuttle::Shuttle;
use deploy_core::config::Config;
use deploy_core::detect::CheckStatus;
use deploy_core::domain::{CommitSha, Environment, Strategy};
use deploy_core::process::Runner;
use deploy_core::provider::{DeployTarget, Provider};
use deploy_core::run::StepStatus;
use deploy_core::secret::Secret;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct World {
    dir: tempfile::TempDir,
}

impl World {
    /// A project with one commit, a gitignored Secrets.toml, the fake CLI and a login.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fakes/shuttle");
        std::os::unix::fs::symlink(fake, bin.join("shuttle")).unwrap();
        let w = Self { dir };
        std::fs::create_dir_all(w.project()).unwrap();
        w.git(&["init", "-q", "-b", "main"]);
        std::fs::write(w.project().join(".gitignore"), "Secrets.toml\ntarget/\n").unwrap();
        std::fs::write(
            w.project().join("Secrets.toml"),
            "DATABASE_URL = \"postgres://u:hunter2pw@db/shop\"\nSTRIPE_KEY = 'sk_live_abcdef'\n",
        )
        .unwrap();
        w.commit("first");
        w.login();
        w
    }

    fn project(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(self.project())
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Commits a change and returns the commit.
    fn commit(&self, msg: &str) -> String {
        std::fs::write(self.project().join("main.rs"), format!("// {msg}\n")).unwrap();
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", msg]);
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }

    fn login(&self) {
        std::fs::create_dir_all(self.state()).unwrap();
        std::fs::write(self.state().join("config.json"), json!({"api_key": "shuttle-key-123456"}).to_string()).unwrap();
    }

    fn write_state(&self, name: &str, v: Value) {
        std::fs::create_dir_all(self.state()).unwrap();
        std::fs::write(self.state().join(name), v.to_string()).unwrap();
    }

    fn provider(&self) -> Shuttle {
        let text = json!({
            "project_name": "shop",
            "platform": "shuttle",
            "platform_cli": [self.dir.path().join("bin/shuttle")],
            "platform_timeout_seconds": 60,
            "environments": {
                "staging": {"url": "https://shop-staging.shuttle.app", "app": "shop-staging"},
                "production": {"url": "https://shop.shuttle.app", "app": "shop"}
            }
        });
        let cfg = Config::parse(&text.to_string(), Path::new(".oc-deploy-ops.json")).unwrap();
        Shuttle::new(&cfg, &self.project(), &Runner::default()).unwrap()
    }

    fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state().join("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn live(&self, project: &str) -> Option<Value> {
        std::fs::read_to_string(self.state().join("live").join(format!("{project}.json"))).ok().map(|t| serde_json::from_str(&t).unwrap())
    }
}

fn target(sha: &str) -> DeployTarget {
    let commit = CommitSha::parse(sha).unwrap();
    DeployTarget { env: Environment::Staging, version: commit.short(), commit, strategy: Strategy::Rolling }
}

fn cancel() -> CancellationToken {
    CancellationToken::new()
}

#[tokio::test]
async fn deploy_runs_shuttle_deploy_and_the_commit_goes_live() {
    let w = World::new();
    let head = w.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let out = w.provider().deploy(&target(&head), &cancel()).await.unwrap();
    assert_eq!(out.status, StepStatus::Passed);
    let live = w.live("shop-staging").expect("live file written");
    assert_eq!(live["commit"], head.as_str());
    let id = live["version"].as_str().unwrap();
    assert!(id.starts_with("depl_") && out.detail.contains(id), "{}", out.detail);

    let calls = w.calls();
    let deploy = calls.iter().find(|c| c["argv"][0] == "deploy").unwrap();
    assert_eq!(deploy["argv"], json!(["deploy", "--name", "shop-staging", "--output", "json"]));
    assert_eq!(Path::new(deploy["cwd"].as_str().unwrap()).canonicalize().unwrap(), w.project().canonicalize().unwrap());
    let allowed = [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TMPDIR",
        "TZ",
        "SHELL",
        "SHUTTLE_API_KEY",
        "SHUTTLE_API",
        "SHUTTLE_API_ENV",
        "CARGO_HOME",
        "RUSTUP_HOME",
    ];
    for name in deploy["env_names"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        // The python3 launcher (a pyenv shim, a shell) may add its own; the test process's
        // variables (CARGO_MANIFEST_DIR, CARGO_PKG_*, …) must not arrive.
        let launcher = name.starts_with("PYENV") || name.starts_with("_PYENV") || ["PWD", "OLDPWD", "SHLVL", "_"].contains(&name);
        assert!(allowed.contains(&name) || launcher, "leaked {name}");
    }
}

#[tokio::test]
async fn versions_list_newest_first_and_redeploy_rolls_back() {
    let w = World::new();
    let shuttle = w.provider();
    let first = w.git(&["rev-parse", "HEAD"]).trim().to_owned();
    shuttle.deploy(&target(&first), &cancel()).await.unwrap();
    let first_id = shuttle.current_version(Environment::Staging).await.unwrap().unwrap();
    let second = w.commit("second");
    shuttle.deploy(&target(&second), &cancel()).await.unwrap();

    let versions = shuttle.versions(Environment::Staging, &cancel()).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert!(versions[0].current && !versions[1].current);
    assert_eq!(versions[0].commit.as_deref(), Some(second.as_str()));
    assert_eq!(versions[1].commit.as_deref(), Some(first.as_str()));
    assert_eq!(versions[1].id, first_id);
    assert_eq!(versions[1].status.as_deref(), Some("stopped"));
    assert_eq!(shuttle.current_version(Environment::Staging).await.unwrap().as_deref(), Some(versions[0].id.as_str()));

    let out = shuttle.rollback(Environment::Staging, &first_id, &cancel()).await.unwrap();
    assert!(out.detail.contains(&first_id), "{}", out.detail);
    assert_eq!(w.live("shop-staging").unwrap()["commit"], first.as_str());
    let redeploy = w.calls().into_iter().find(|c| c["argv"][1] == "redeploy").unwrap();
    assert_eq!(redeploy["argv"], json!(["deployment", "redeploy", first_id, "--name", "shop-staging", "--output", "json"]));
    let versions = shuttle.versions(Environment::Staging, &cancel()).await.unwrap();
    assert!(versions[0].current && versions[0].commit.as_deref() == Some(first.as_str()));
    assert!(versions[0].description.as_deref().unwrap_or_default().contains(&first_id));

    let err = shuttle.rollback(Environment::Staging, "depl_unknown", &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "platform_error");
    assert!(err.to_string().contains("Not Found"), "{err}");
}

#[tokio::test]
async fn a_failed_deployment_is_an_error_with_its_logs() {
    let w = World::new();
    let head = w.git(&["rev-parse", "HEAD"]).trim().to_owned();
    w.write_state("control.json", json!({"outcome": {"shop-staging": "failed"}}));
    let err = w.provider().deploy(&target(&head), &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "platform_error");
    let msg = err.to_string();
    assert!(msg.contains("Deployment failed"), "{msg}");
    assert!(msg.contains("could not compile"), "the logs are quoted: {msg}");
    assert!(w.live("shop-staging").is_none());
}

#[tokio::test]
async fn a_missing_api_key_says_how_to_log_in() {
    let w = World::new();
    std::fs::remove_file(w.state().join("config.json")).unwrap();
    let head = w.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let err = w.provider().deploy(&target(&head), &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "platform_error");
    assert!(err.to_string().contains("401 Unauthorized"), "{err}");
    assert!(err.hint().contains("SHUTTLE_API_KEY"), "{}", err.hint());
    let items = w.provider().checklist(&cancel()).await;
    assert_eq!(items[0].status, CheckStatus::Fail);
}

#[tokio::test]
async fn a_dirty_tree_refused_by_shuttle_is_an_error_and_never_forced() {
    let w = World::new();
    std::fs::write(w.project().join("Shuttle.toml"), "[deploy]\ndeny_dirty = true\n").unwrap();
    let head = w.commit("with Shuttle.toml");
    std::fs::write(w.project().join("main.rs"), "// uncommitted\n").unwrap();
    let err = w.provider().deploy(&target(&head), &cancel()).await.unwrap_err();
    assert!(err.to_string().contains("not yet committed"), "{err}");
    assert!(w.calls().iter().all(|c| !c["argv"].as_array().unwrap().iter().any(|a| a == "--allow-dirty")));
}

#[tokio::test]
async fn a_checkout_at_another_commit_is_refused_before_shuttle_runs() {
    let w = World::new();
    let first = w.git(&["rev-parse", "HEAD"]).trim().to_owned();
    w.commit("second");
    let err = w.provider().deploy(&target(&first), &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "refused");
    assert!(w.calls().is_empty(), "shuttle must not run");
}

#[tokio::test]
async fn secrets_are_names_from_secrets_toml_and_set_is_refused_with_the_model() {
    let w = World::new();
    let shuttle = w.provider();
    let listing = shuttle.env_list(Environment::Staging, &cancel()).await.unwrap();
    let names: Vec<&str> = listing.vars.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["DATABASE_URL", "STRIPE_KEY"]);
    let shown = serde_json::to_string(&listing).unwrap();
    assert!(!shown.contains("hunter2pw") && !shown.contains("sk_live_abcdef"), "{shown}");
    assert!(listing.note.as_deref().unwrap().contains("Secrets.toml"));

    let err = shuttle.env_set(Environment::Staging, "NEW_KEY", &Secret::new("value-123456"), &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "refused");
    assert!(err.to_string().contains("Secrets.toml"), "{err}");
    assert!(err.hint().contains("deploy again") && err.hint().contains("shuttle resource list --show-secrets"), "{}", err.hint());
    assert!(!err.to_string().contains("value-123456"));
    let err = shuttle.env_unset(Environment::Staging, "STRIPE_KEY", &cancel()).await.unwrap_err();
    assert_eq!(err.code(), "refused");
    assert!(w.calls().is_empty(), "nothing was run");
}

#[tokio::test]
async fn migrate_is_skipped_and_the_checklist_reads_account_and_projects() {
    let w = World::new();
    let shuttle = w.provider();
    let head = w.git(&["rev-parse", "HEAD"]).trim().to_owned();
    let out = shuttle.migrate(&target(&head), &cancel()).await.unwrap();
    assert_eq!(out.status, StepStatus::Skipped);
    assert!(out.detail.contains("migrates on start"));

    shuttle.deploy(&target(&head), &cancel()).await.unwrap();
    let items = shuttle.checklist(&cancel()).await;
    assert_eq!(items[0].status, CheckStatus::Ok, "{items:?}");
    assert!(items[0].detail.contains("user_"));
    assert_eq!(items[1].status, CheckStatus::Ok, "{items:?}");
    assert!(items[1].detail.contains("running"));
    // Production's project does not exist yet: the first deploy creates it.
    assert_eq!(items[2].status, CheckStatus::Warn, "{items:?}");
    assert!(items[2].detail.contains("does not exist yet"));
    assert_eq!(shuttle.current_version(Environment::Production).await.unwrap(), None);
    assert!(shuttle.versions(Environment::Production, &cancel()).await.unwrap().is_empty());
}
