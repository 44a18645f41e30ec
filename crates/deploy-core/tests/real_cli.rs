//! The Cloudflare and Heroku providers driving the REAL `wrangler` (4.x) and `heroku` (11.x)
//! CLIs, installed by `npm ci --prefix tests/realcli`, against fake platform APIs on 127.0.0.1
//! (tests/fakes/cloudflare_api.py, tests/fakes/heroku_api.py). The assertions read what the fake
//! API received (requests.jsonl), what it serves (live/), the argument lists the CLIs were run
//! with, and the providers' results. docs/platforms/real-cli-testing.md explains the setup.
//!
//! When tests/realcli/node_modules is absent every test prints why and passes without running.
#![allow(clippy::disallowed_methods)] // starts the fake APIs and git directly

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use deploy_core::CoreError;
use deploy_core::config::Config;
use deploy_core::detect::CheckStatus;
use deploy_core::domain::{CommitSha, Environment, Strategy};
use deploy_core::process::Runner;
use deploy_core::provider::{AnyProvider, DeployTarget, Provider, for_config};
use deploy_core::secret::Secret;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

const CF_TOKEN: &str = "cf-test-token-4c1d9e";
const CF_ACCOUNT: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const HK_KEY: &str = "hk-test-key-8b2f6a";
/// The version of heroku pinned in tests/realcli/package.json (its update check reads it).
const HEROKU_VERSION: &str = "11.10.0";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn realcli_bin(name: &str) -> PathBuf {
    repo().join("tests/realcli/node_modules/.bin").join(name)
}

/// One fake API process. Its stdin is held open for the life of the test binary: when the
/// binary exits (or crashes) the pipe closes and the fake exits too.
struct FakeApi {
    port: u16,
    state: PathBuf,
    _child: Mutex<Child>,
}

impl FakeApi {
    fn start(script: &str, state: PathBuf, log: &Path) -> Self {
        std::fs::create_dir_all(&state).unwrap();
        let mut child = Command::new("python3")
            .arg(repo().join("tests/fakes").join(script))
            .arg("--state")
            .arg(&state)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 {script}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("{script} printed no PORT line in 20 s"));
        let port = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{script} said {line:?}"));
        Self { port, state, _child: Mutex::new(child) }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request the fake received, oldest first.
    fn requests(&self) -> Vec<Value> {
        read_lines(&self.state.join("requests.jsonl"))
    }

    /// Requests whose path contains `part` (tests use distinct worker and app names).
    fn requests_for(&self, part: &str) -> Vec<Value> {
        self.requests().into_iter().filter(|r| r["path"].as_str().unwrap_or("").contains(part)).collect()
    }

    fn live(&self, target: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.state.join("live").join(format!("{target}.json"))).ok()?;
        Some(serde_json::from_str(&text).unwrap())
    }

    /// The fake's whole state (written atomically after every change).
    fn state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.state.join("state.json")).unwrap()).unwrap()
    }
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Both fake APIs, the CLI wrappers and the environment the CLIs run in, set up once.
struct World {
    dir: PathBuf,
    cf: FakeApi,
    hk: FakeApi,
}

static WORLD: OnceLock<Option<World>> = OnceLock::new();

/// The shared setup, or `None` (after saying why) when the real CLIs are not installed.
fn world() -> Option<&'static World> {
    WORLD
        .get_or_init(|| {
            let missing: Vec<&str> = ["wrangler", "heroku"].into_iter().filter(|n| !realcli_bin(n).exists()).collect();
            if !missing.is_empty() {
                // Written to the real stderr, not through the test harness's capture, so the
                // reason shows in a plain `cargo test` run.
                let _ = writeln!(
                    std::io::stderr(),
                    "real_cli tests SKIPPED: tests/realcli/node_modules/.bin/{{{}}} missing; run `npm ci --prefix tests/realcli` to test against the real wrangler and heroku CLIs",
                    missing.join(",")
                );
                return None;
            }
            Some(World::start())
        })
        .as_ref()
}

impl World {
    #[allow(clippy::print_stderr)] // where the fakes keep their state, for a failing test's reader
    fn start() -> Self {
        // One directory per test process (`cargo test -p deploy-core` elsewhere may run this
        // binary at the same time); those of earlier runs are removed after an hour, and the
        // newest stays for reading after a failure.
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if old && entry.file_name().to_string_lossy().starts_with("real_cli-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = base.join(format!("real_cli-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["bin", "home", "tmp", "projects"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let cf = FakeApi::start("cloudflare_api.py", dir.join("cloudflare"), &dir.join("cloudflare.stderr"));
        let hk = FakeApi::start("heroku_api.py", dir.join("heroku"), &dir.join("heroku.stderr"));
        eprintln!("real_cli: fake Cloudflare API {} and Heroku API {}; state under {}", cf.url(), hk.url(), dir.display());

        // Keep both CLIs on loopback. Wrangler's update check asks the npm registry of
        // HOME/.npmrc, so it asks the fake; the heroku CLI's update check and its terms banner
        // are satisfied by fresh cache files, its analytics by the user config. Two things only
        // an environment variable the provider does not pass through can redirect, so the
        // wrapper below sets them: its OTel telemetry (DISABLE_TELEMETRY) and the delinquency
        // check it sends to particleboard.heroku.com beside every GET /account
        // (HEROKU_PARTICLEBOARD_URL, pointed at the fake). See docs/platforms/real-cli-testing.md.
        let home = dir.join("home");
        std::fs::write(home.join(".npmrc"), format!("registry={}/npm/\n", cf.url())).unwrap();
        let cache = home.join(".cache/heroku");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::write(cache.join("version"), json!({ "latest": HEROKU_VERSION, "current": HEROKU_VERSION }).to_string()).unwrap();
        std::fs::write(cache.join("autoupdate"), "").unwrap();
        std::fs::write(cache.join("terms-of-service"), "").unwrap();
        let data = home.join(".local/share/heroku");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("config.json"), json!({ "skipAnalytics": true }).to_string()).unwrap();

        // The CLIs run through wrappers that record each argument list (NUL-separated, one
        // call per record), so tests can show a secret never reached an argv.
        let argv_log = dir.join("argv.log");
        let heroku_env = format!("export DISABLE_TELEMETRY=true HEROKU_PARTICLEBOARD_URL={}\n", hk.url());
        for (name, extra) in [("wrangler", String::new()), ("heroku", heroku_env)] {
            let wrapper = dir.join("bin").join(name);
            let script = format!(
                "#!/bin/sh\n# Records the argument list, then runs the real CLI.\nprintf '%s\\0' {name} \"$@\" >> '{log}'\nprintf '\\n' >> '{log}'\n{extra}exec '{real}' \"$@\"\n",
                log = argv_log.display(),
                real = realcli_bin(name).display(),
            );
            write_exec(&wrapper, &script);
        }

        let vars: [(&str, String); 12] = [
            ("HOME", home.display().to_string()),
            ("XDG_CONFIG_HOME", home.join(".config").display().to_string()),
            ("XDG_CACHE_HOME", home.join(".cache").display().to_string()),
            ("XDG_DATA_HOME", home.join(".local/share").display().to_string()),
            ("TMPDIR", dir.join("tmp").display().to_string()),
            ("CI", "1".into()),
            ("CLOUDFLARE_API_BASE_URL", format!("{}/client/v4", cf.url())),
            ("CLOUDFLARE_API_TOKEN", CF_TOKEN.into()),
            ("CLOUDFLARE_ACCOUNT_ID", CF_ACCOUNT.into()),
            ("WRANGLER_SEND_METRICS", "false".into()),
            ("HEROKU_HOST", hk.url()),
            ("HEROKU_API_KEY", HK_KEY.into()),
        ];
        set_cli_environment(&vars);
        Self { dir, cf, hk }
    }

    fn wrapper(&self, cli: &str) -> PathBuf {
        self.dir.join("bin").join(cli)
    }

    /// Every CLI call so far, as `[program, args...]`.
    fn argvs(&self) -> Vec<Vec<String>> {
        let text = std::fs::read(self.dir.join("argv.log")).unwrap_or_default();
        text.split(|b| *b == b'\n')
            .filter(|rec| !rec.is_empty())
            .map(|rec| {
                rec.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>()
            })
            .collect()
    }

    /// The calls that mention `name` in an argument.
    fn argvs_with(&self, name: &str) -> Vec<Vec<String>> {
        self.argvs().into_iter().filter(|a| a.iter().any(|x| x.contains(name))).collect()
    }

    fn project(&self, name: &str) -> PathBuf {
        let root = self.dir.join("projects").join(name);
        std::fs::create_dir_all(&root).unwrap();
        root
    }
}

/// Points the CLIs (and the Heroku provider's own API call) at the fakes: the providers pass
/// these names through from the test process's environment.
#[allow(unsafe_code)]
fn set_cli_environment(vars: &[(&str, String)]) {
    // SAFETY: called once, from the OnceLock initialiser that every test calls before it does
    // anything else: no test has started a child or read the environment yet, and the other
    // test threads are blocked on the OnceLock meanwhile. The values are the same for every test.
    unsafe {
        for (name, value) in vars {
            std::env::set_var(name, value);
        }
        // Nothing from the developer's machine may redirect the CLIs away from the fakes.
        for name in [
            "CF_API_BASE_URL",
            "CLOUDFLARE_API_KEY",
            "CLOUDFLARE_EMAIL",
            "WRANGLER_LOG",
            "HEROKU_HEADERS",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            std::env::remove_var(name);
        }
    }
}

fn write_exec(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn cancel() -> CancellationToken {
    CancellationToken::new()
}

/// A deterministic, distinct full SHA per (test, n).
fn sha(seed: &str, n: u32) -> String {
    let digest = Sha256::digest(format!("{seed}/{n}").as_bytes());
    digest.iter().take(20).map(|b| format!("{b:02x}")).collect()
}

fn target(env: Environment, commit: &str) -> DeployTarget {
    let commit = CommitSha::parse(commit).unwrap();
    DeployTarget { env, version: commit.short(), commit, strategy: Strategy::Rolling }
}

fn provider(cfg: &Value, root: &Path) -> AnyProvider {
    let cfg = Config::parse(&cfg.to_string(), &root.join(".oc-deploy-ops.json")).unwrap();
    for_config(&cfg, root, &Runner::default(), PathBuf::from("oc-deploy")).unwrap()
}

// ---- Cloudflare --------------------------------------------------------------------------------

/// A Worker project named `name` (staging is the Worker `<name>-staging`), optionally with a
/// D1 database bound in staging and migration files.
fn cf_project(w: &World, name: &str, d1: Option<(&str, &[(&str, &str)])>) -> (PathBuf, Value) {
    let root = w.project(name);
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("src/index.js"), "export default { async fetch() { return new Response(\"ok\"); } };\n").unwrap();
    let mut toml = format!(
        "name = \"{name}\"\nmain = \"src/index.js\"\ncompatibility_date = \"2024-09-01\"\n\n[env.staging]\nname = \"{name}-staging\"\n"
    );
    let mut staging = json!({ "wrangler_env": "staging" });
    if let Some((db, migrations)) = d1 {
        let id = uuid_of(db);
        toml.push_str(&format!("\n[[env.staging.d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"{db}\"\ndatabase_id = \"{id}\"\n"));
        std::fs::create_dir_all(root.join("migrations")).unwrap();
        for (file, sql) in migrations {
            std::fs::write(root.join("migrations").join(file), sql).unwrap();
        }
        staging["d1_database"] = json!(db);
    }
    std::fs::write(root.join("wrangler.toml"), toml).unwrap();
    let cfg = json!({
        "project_name": name,
        "platform": "cloudflare-workers",
        "platform_cli": [w.wrapper("wrangler")],
        "platform_timeout_seconds": 180,
        "environments": { "staging": staging, "production": {} }
    });
    (root, cfg)
}

/// A UUID-shaped id derived from a name.
fn uuid_of(name: &str) -> String {
    let h = sha(name, 0);
    format!("{}-{}-4{}-8{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

/// The multipart metadata part of an upload request.
fn upload_metadata(req: &Value) -> Value {
    req["body"].as_array().unwrap().iter().find(|p| p["name"] == "metadata").unwrap()["body"].clone()
}

fn is_upload(req: &Value, worker: &str) -> bool {
    let path = req["path"].as_str().unwrap_or("");
    (req["method"] == "PUT" && path.ends_with(&format!("/workers/scripts/{worker}")))
        || (req["method"] == "POST" && path.ends_with(&format!("/workers/scripts/{worker}/versions")))
}

#[tokio::test]
async fn cloudflare_deploys_staging_and_production_with_the_commit_as_tag_and_message() {
    let Some(w) = world() else { return };
    let name = "cf-deploy";
    let (root, cfg) = cf_project(w, name, None);
    let p = provider(&cfg, &root);
    let (a, b) = (sha(name, 1), sha(name, 2));

    let first = p.deploy(&target(Environment::Staging, &a), &cancel()).await.unwrap();
    let v_a = w.cf.live(&format!("{name}-staging")).expect("staging is live")["version"].as_str().unwrap().to_owned();
    assert!(first.detail.contains(&format!("version {v_a}")), "{}", first.detail);
    assert!(first.detail.contains(&format!("https://{name}-staging.example.workers.dev")), "{}", first.detail);

    let second = p.deploy(&target(Environment::Staging, &b), &cancel()).await.unwrap();
    let live = w.cf.live(&format!("{name}-staging")).unwrap();
    let v_b = live["version"].as_str().unwrap().to_owned();
    assert_ne!(v_a, v_b);
    assert_eq!(live["commit"], json!(&b[..7]), "the fake serves the version tagged with B");
    assert!(second.detail.contains(&format!("version {v_b} (tag {})", &b[..7])), "{}", second.detail);

    // What the API received: a first upload (PUT, the Worker is new) and then a version upload
    // with its deployment; each carries the short SHA as tag and the full SHA in the message.
    let staging = w.cf.requests_for(&format!("/workers/scripts/{name}-staging"));
    let uploads: Vec<&Value> = staging.iter().filter(|r| is_upload(r, &format!("{name}-staging"))).collect();
    assert_eq!(uploads.len(), 2, "{uploads:#?}");
    assert_eq!(uploads[0]["method"], "PUT");
    assert_eq!(uploads[1]["method"], "POST");
    for (upload, commit) in uploads.iter().zip([&a, &b]) {
        let meta = upload_metadata(upload);
        assert_eq!(meta["annotations"]["workers/tag"], json!(&commit[..7]));
        assert_eq!(meta["annotations"]["workers/message"], json!(format!("oc-deploy staging {commit}")));
        assert_eq!(upload["headers"]["authorization"], json!(format!("Bearer {CF_TOKEN}")));
    }
    let deployment = staging
        .iter()
        .find(|r| r["method"] == "POST" && r["path"].as_str().unwrap().ends_with("/deployments"))
        .expect("a deployments POST");
    assert_eq!(deployment["body"]["versions"], json!([{ "version_id": v_b, "percentage": 100 }]));
    assert_eq!(deployment["body"]["strategy"], "percentage");

    // Versions: newest first, the live one marked, the commit read back from the message.
    let versions = p.versions(Environment::Staging, &cancel()).await.unwrap();
    let ids: Vec<&str> = versions.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, [v_b.as_str(), v_a.as_str()]);
    assert!(versions[0].current && !versions[1].current);
    assert_eq!(versions[0].commit.as_deref(), Some(b.as_str()));
    assert_eq!(versions[1].commit.as_deref(), Some(a.as_str()));
    assert_eq!(versions[0].status.as_deref(), Some("serving 100% of traffic"));
    assert_eq!(p.current_version(Environment::Staging).await.unwrap().as_deref(), Some(v_b.as_str()));

    // Production is the top-level Worker: no --env, its own versions.
    assert_eq!(p.current_version(Environment::Production).await.unwrap(), None, "nothing deployed to production yet");
    p.deploy(&target(Environment::Production, &a), &cancel()).await.unwrap();
    let prod = w.cf.live(name).expect("production is live");
    assert_eq!(prod["commit"], json!(&a[..7]));
    assert_eq!(p.current_version(Environment::Production).await.unwrap().as_deref(), prod["version"].as_str());
    let prod_deploy = w.argvs_with(&format!("oc-deploy production {a}"));
    assert_eq!(prod_deploy.len(), 1);
    assert!(!prod_deploy[0].iter().any(|x| x == "--env"), "production deploys the top-level Worker: {:?}", prod_deploy[0]);
    // The staging Worker did not change.
    assert_eq!(w.cf.live(&format!("{name}-staging")).unwrap()["version"], json!(v_b));
}

#[tokio::test]
async fn cloudflare_rollback_puts_the_previous_version_back_at_100_percent() {
    let Some(w) = world() else { return };
    let name = "cf-rollback";
    let (root, cfg) = cf_project(w, name, None);
    let p = provider(&cfg, &root);
    let worker = format!("{name}-staging");
    let (a, b) = (sha(name, 1), sha(name, 2));

    p.deploy(&target(Environment::Staging, &a), &cancel()).await.unwrap();
    let before = p.current_version(Environment::Staging).await.unwrap().expect("A is live");
    p.deploy(&target(Environment::Staging, &b), &cancel()).await.unwrap();
    let after = p.current_version(Environment::Staging).await.unwrap().unwrap();
    assert_ne!(before, after);

    // What the pipeline does when health fails: roll back to the id it recorded.
    let out = p.rollback(Environment::Staging, &before, &cancel()).await.unwrap();
    assert!(out.detail.contains(&before), "{}", out.detail);
    assert_eq!(w.cf.live(&worker).unwrap(), json!({ "version": before, "commit": &a[..7] }));
    assert_eq!(p.current_version(Environment::Staging).await.unwrap().as_deref(), Some(before.as_str()));

    let posts: Vec<Value> =
        w.cf.requests_for(&format!("/workers/scripts/{worker}/deployments")).into_iter().filter(|r| r["method"] == "POST").collect();
    let last = posts.last().unwrap();
    assert_eq!(last["body"]["versions"], json!([{ "version_id": before, "percentage": 100 }]));
    assert_eq!(last["body"]["annotations"]["workers/message"], "oc-deploy rollback of staging");
    let deployments = w.cf.state()["scripts"][&worker]["deployments"].as_array().unwrap().clone();
    assert_eq!(deployments.len(), 3);
    assert_eq!(deployments[2]["annotations"]["workers/triggered_by"], "rollback");
    assert_eq!(
        w.argvs_with("oc-deploy rollback of staging").last().unwrap()[1..],
        ["rollback", before.as_str(), "-y", "-m", "oc-deploy rollback of staging", "--env", "staging"]
    );

    // Forward again by commit: the provider finds B's version among wrangler's versions.
    p.rollback(Environment::Staging, &b[..7], &cancel()).await.unwrap();
    assert_eq!(w.cf.live(&worker).unwrap(), json!({ "version": after, "commit": &b[..7] }));

    // An id the platform does not know: wrangler's own words come back.
    let err = p.rollback(Environment::Staging, "00000000-0000-4000-8000-000000000000", &cancel()).await.unwrap_err();
    match &err {
        CoreError::Platform { message, .. } => assert!(message.contains("10007"), "{message}"),
        other => panic!("expected a platform error, got {other:?}"),
    }
    assert_eq!(w.cf.live(&worker).unwrap()["version"], json!(after), "a failed rollback changes nothing");
}

#[tokio::test]
async fn cloudflare_canary_uploads_a_version_and_splits_traffic() {
    let Some(w) = world() else { return };
    let name = "cf-canary";
    let (root, cfg) = cf_project(w, name, None);
    let p = provider(&cfg, &root);
    let worker = format!("{name}-staging");
    p.deploy(&target(Environment::Staging, &sha(name, 1)), &cancel()).await.unwrap();
    let old = p.current_version(Environment::Staging).await.unwrap().unwrap();

    let mut canary = target(Environment::Staging, &sha(name, 2));
    canary.strategy = Strategy::Canary;
    let out = p.deploy(&canary, &cancel()).await.unwrap();
    // No environments.staging.url to check: the split stays and the detail says how to promote.
    assert!(out.detail.contains("traffic split: 10% to"), "{}", out.detail);
    let posts: Vec<Value> =
        w.cf.requests_for(&format!("/workers/scripts/{worker}/deployments")).into_iter().filter(|r| r["method"] == "POST").collect();
    let split = &posts.last().unwrap()["body"]["versions"];
    let new = split[0]["version_id"].as_str().unwrap().to_owned();
    assert_eq!(split, &json!([{ "version_id": new, "percentage": 10 }, { "version_id": old, "percentage": 90 }]));
    let upload = w.cf.requests_for(&format!("/workers/scripts/{worker}/versions")).into_iter().find(|r| r["method"] == "POST").unwrap();
    assert_eq!(upload_metadata(&upload)["annotations"]["workers/tag"], json!(&sha(name, 2)[..7]));
    // Most traffic still goes to the old version, which stays the current one.
    assert_eq!(w.cf.live(&worker).unwrap()["version"], json!(old));
    let versions = p.versions(Environment::Staging, &cancel()).await.unwrap();
    assert_eq!(versions[0].id, new);
    assert_eq!(versions[0].status.as_deref(), Some("serving 10% of traffic"));
    assert_eq!(versions[1].status.as_deref(), Some("serving 90% of traffic"));
    assert!(versions[1].current);
}

#[tokio::test]
async fn cloudflare_secret_values_travel_in_the_put_body_only() {
    let Some(w) = world() else { return };
    let name = "cf-secrets";
    let (root, cfg) = cf_project(w, name, None);
    let p = provider(&cfg, &root);
    let worker = format!("{name}-staging");
    let value = "sk-live-7Hq2-very-secret";
    p.deploy(&target(Environment::Staging, &sha(name, 1)), &cancel()).await.unwrap();
    let deployed = p.current_version(Environment::Staging).await.unwrap().unwrap();

    let out = p.env_set(Environment::Staging, "STRIPE_KEY", &Secret::new(value), &cancel()).await.unwrap();
    assert!(!out.detail.contains(value), "{}", out.detail);
    let puts: Vec<Value> =
        w.cf.requests_for(&format!("/workers/scripts/{worker}/secrets")).into_iter().filter(|r| r["method"] == "PUT").collect();
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0]["body"], json!({ "name": "STRIPE_KEY", "text": value, "type": "secret_text" }));
    let calls = w.argvs_with("STRIPE_KEY");
    assert_eq!(calls[0][1..], ["secret", "put", "STRIPE_KEY", "--env", "staging"]);
    assert!(w.argvs().iter().flatten().all(|a| !a.contains(value)), "the value reached an argument list");

    // A secret change deploys a new version (as Cloudflare does); it still serves the same commit.
    let now = p.current_version(Environment::Staging).await.unwrap().unwrap();
    assert_ne!(now, deployed);
    assert_eq!(w.cf.live(&worker).unwrap()["commit"], json!(&sha(name, 1)[..7]));

    p.env_set(Environment::Staging, "OTHER", &Secret::new("x"), &cancel()).await.unwrap();
    let listing = p.env_list(Environment::Staging, &cancel()).await.unwrap();
    let names: Vec<&str> = listing.vars.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["OTHER", "STRIPE_KEY"]);
    assert!(listing.vars.iter().all(|v| v.secret));
    assert!(!serde_json::to_string(&listing).unwrap().contains(value));

    let out = p.env_unset(Environment::Staging, "STRIPE_KEY", &cancel()).await.unwrap();
    assert!(out.detail.contains("STRIPE_KEY"), "{}", out.detail);
    let deletes: Vec<Value> =
        w.cf.requests_for(&format!("/workers/scripts/{worker}/secrets/STRIPE_KEY"))
            .into_iter()
            .filter(|r| r["method"] == "DELETE")
            .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0]["query"], json!({ "url_encoded": "true" }));
    let names: Vec<String> = p.env_list(Environment::Staging, &cancel()).await.unwrap().vars.into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["OTHER"]);
}

#[tokio::test]
async fn cloudflare_secret_change_after_a_rollback_is_refused_with_wranglers_message() {
    // Cloudflare refuses a secret edit while the newest version is not the deployed one (code
    // 10215), which is the state right after a rollback: the provider must say so, not succeed.
    let Some(w) = world() else { return };
    let name = "cf-secret-after-rollback";
    let (root, cfg) = cf_project(w, name, None);
    let p = provider(&cfg, &root);
    p.deploy(&target(Environment::Staging, &sha(name, 1)), &cancel()).await.unwrap();
    let first = p.current_version(Environment::Staging).await.unwrap().unwrap();
    p.deploy(&target(Environment::Staging, &sha(name, 2)), &cancel()).await.unwrap();
    p.rollback(Environment::Staging, &first, &cancel()).await.unwrap();

    let err = p.env_set(Environment::Staging, "API_KEY", &Secret::new("v-123456"), &cancel()).await.unwrap_err();
    match &err {
        CoreError::Platform { message, .. } => {
            assert!(message.contains("latest version of your Worker isn't currently deployed"), "{message}");
            assert!(!message.contains("v-123456"), "{message}");
        }
        other => panic!("expected a platform error, got {other:?}"),
    }
    assert_eq!(w.cf.live(&format!("{name}-staging")).unwrap()["version"], json!(first), "nothing was deployed");
}

#[tokio::test]
async fn cloudflare_d1_migrations_apply_through_the_query_endpoint() {
    let Some(w) = world() else { return };
    let name = "cf-d1";
    let db = "cf-d1-staging-db";
    let migrations: &[(&str, &str)] = &[
        ("0001_init.sql", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT);\n"),
        ("0002_price.sql", "-- prices\nALTER TABLE items ADD COLUMN price INTEGER;\nINSERT INTO items (name, price) VALUES ('a;b', 3);\n"),
    ];
    let (root, cfg) = cf_project(w, name, Some((db, migrations)));
    let p = provider(&cfg, &root);
    let t = target(Environment::Staging, &sha(name, 1));

    let first = p.migrate(&t, &cancel()).await.unwrap();
    let queries: Vec<String> =
        w.cf.requests_for(&format!("/d1/database/{}/query", uuid_of(db)))
            .iter()
            .map(|r| r["body"]["sql"].as_str().unwrap().to_owned())
            .collect();
    assert!(queries[0].starts_with("CREATE TABLE IF NOT EXISTS d1_migrations"), "{queries:#?}");
    assert!(
        queries.iter().any(|q| q.contains("ALTER TABLE items ADD COLUMN price") && q.contains("values ('0002_price.sql')")),
        "{queries:#?}"
    );

    let again = p.migrate(&t, &cancel()).await.unwrap();
    assert_eq!(again.detail, format!("D1 {db}: no migrations to apply"));

    std::fs::write(root.join("migrations/0003_bad.sql"), "ALTER TABLE missing ADD COLUMN x;\n").unwrap();
    let err = p.migrate(&t, &cancel()).await.unwrap_err();
    match &err {
        CoreError::Platform { message, .. } => assert!(message.contains("no such table: missing"), "{message}"),
        other => panic!("expected a platform error, got {other:?}"),
    }
    assert!(
        w.argvs_with(db).iter().all(|a| a[1..] == ["d1", "migrations", "apply", db, "--remote", "--env", "staging"]),
        "{:?}",
        w.argvs_with(db)
    );
    // Wrangler prints the status table after each migration (`0001 ✅, 0002 🕒️`, then both ✅):
    // each applied migration is named once.
    assert_eq!(first.detail, format!("D1 {db}: applied 0001_init.sql, 0002_price.sql"));
}

#[tokio::test]
async fn cloudflare_checklist_and_dry_run_ask_wrangler_and_change_nothing() {
    let Some(w) = world() else { return };
    let name = "cf-checklist";
    let (root, cfg) = cf_project(w, name, None);
    let p = provider(&cfg, &root);
    let before = w.cf.requests().len();

    let items = p.checklist(&cancel()).await;
    let login = items.iter().find(|i| i.name == "cloudflare login").expect("a login item");
    assert_eq!(login.status, CheckStatus::Ok, "{login:?}");
    assert_eq!(login.detail, "logged in as dev@example.com (User API Token); accounts: Example Account");
    let dry = items.iter().find(|i| i.name.starts_with("wrangler deploy --dry-run")).expect("a dry-run item");
    assert_eq!(dry.status, CheckStatus::Ok, "{dry:?}");

    let out = p.dry_run(&target(Environment::Staging, &sha(name, 1)), &cancel()).await.unwrap();
    assert!(out.detail.contains("No bindings found"), "{}", out.detail);

    // whoami asked the API who the token belongs to; the dry runs sent nothing about the Worker.
    let new: Vec<Value> = w.cf.requests()[before..].to_vec();
    let verify = new.iter().find(|r| r["path"] == "/user/tokens/verify").expect("whoami verified the token");
    assert_eq!(verify["headers"]["authorization"], json!(format!("Bearer {CF_TOKEN}")));
    assert!(new.iter().all(|r| !r["path"].as_str().unwrap().contains(name)), "a dry run reached the API: {new:#?}");
    assert!(w.cf.live(&format!("{name}-staging")).is_none());
}

#[tokio::test]
async fn cloudflare_rejected_token_fails_the_checklist_and_lists_with_the_login_hint() {
    let Some(w) = world() else { return };
    let name = "cf-bad-token";
    let (root, cfg) = cf_project(w, name, None);
    let AnyProvider::Cloudflare(p) = provider(&cfg, &root) else { panic!("not the Cloudflare provider") };
    let p = p.with_env("CLOUDFLARE_API_TOKEN", Some("bad-token-1"));

    let items = p.checklist(&cancel()).await;
    let login = items.iter().find(|i| i.name == "cloudflare login").unwrap();
    assert_eq!(login.status, CheckStatus::Fail, "{login:?}");
    assert!(login.hint.as_deref().unwrap_or("").contains("CLOUDFLARE_API_TOKEN"), "{login:?}");

    let err = p.versions(Environment::Staging, &cancel()).await.unwrap_err();
    match &err {
        CoreError::Platform { message, hint, .. } => {
            assert!(message.contains("Authentication error [code: 10000]"), "{message}");
            assert!(hint.contains("CLOUDFLARE_API_TOKEN"), "{hint}");
            assert!(!message.contains("bad-token-1"), "{message}");
        }
        other => panic!("expected a platform error, got {other:?}"),
    }
}

// ---- Heroku ------------------------------------------------------------------------------------

/// Creates the app on the fake through the Platform API, and deploys `commits` the way a git
/// push does server side (a build per commit, released as `Deploy <sha[:8]>`).
async fn hk_seed(w: &World, app: &str, commits: &[&str]) {
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap();
    let call = |method: reqwest::Method, path: String, body: Value| {
        client
            .request(method, format!("{}{path}", w.hk.url()))
            .bearer_auth(HK_KEY)
            .header("Accept", "application/vnd.heroku+json; version=3")
            .json(&body)
            .send()
    };
    let r = call(reqwest::Method::POST, "/apps".into(), json!({ "name": app })).await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    for c in commits {
        let r = call(reqwest::Method::POST, format!("/apps/{app}/builds"), json!({ "source_blob": { "url": null, "version": c } }))
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
}

fn hk_config(w: &World, staging: &str, extra: Value) -> Value {
    let mut env = json!({ "app": staging });
    if let (Some(e), Some(x)) = (env.as_object_mut(), extra.as_object()) {
        e.extend(x.clone());
    }
    json!({
        "project_name": staging,
        "platform": "heroku",
        "platform_cli": [w.wrapper("heroku")],
        "platform_timeout_seconds": 180,
        "environments": { "staging": env }
    })
}

/// The release object of `app` at version `n`, as the fake keeps it.
fn hk_release(w: &World, app: &str, n: u64) -> Value {
    w.hk.state()[app]["releases"].as_array().unwrap().iter().find(|r| r["version"] == json!(n)).unwrap().clone()
}

#[tokio::test]
async fn heroku_versions_and_current_version_come_from_releases_json() {
    let Some(w) = world() else { return };
    let app = "hk-versions";
    let (a, b) = (sha(app, 1), sha(app, 2));
    hk_seed(w, app, &[&a, &b]).await;
    let root = w.project(app);
    let p = provider(&hk_config(w, app, json!({})), &root);

    let versions = p.versions(Environment::Staging, &cancel()).await.unwrap();
    let ids: Vec<&str> = versions.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["v3", "v2", "v1"]);
    assert!(versions[0].current && !versions[1].current && !versions[2].current);
    assert_eq!(versions[0].commit.as_deref(), Some(&b[..8]));
    assert_eq!(versions[1].commit.as_deref(), Some(&a[..8]));
    assert_eq!(versions[2].commit, None, "the initial release has no code");
    assert_eq!(versions[0].description.as_deref(), Some(format!("Deploy {}", &b[..8]).as_str()));
    assert_eq!(p.current_version(Environment::Staging).await.unwrap().as_deref(), Some("v3"));

    let lists: Vec<Value> = w.hk.requests_for(&format!("/apps/{app}/releases")).into_iter().filter(|r| r["method"] == "GET").collect();
    assert!(!lists.is_empty());
    for r in &lists {
        assert_eq!(r["headers"]["authorization"], json!(format!("Bearer {HK_KEY}")));
        assert_eq!(r["headers"]["range"], "version ..; max=15, order=desc");
    }
    assert!(w.argvs_with(app).iter().all(|a| a[1..] == ["releases", "-a", app, "--json"]), "{:?}", w.argvs_with(app));
}

#[tokio::test]
async fn heroku_deploy_pushes_the_commit_and_confirms_its_release() {
    let Some(w) = world() else { return };
    let app = "hk-deploy";
    hk_seed(w, app, &[]).await;
    let root = w.project(app);
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .current_dir(dir)
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&root, &["init", "-q"]);
    std::fs::write(root.join("Procfile"), "web: ./bin/server\n").unwrap();
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "first"]);
    let commit = git(&root, &["rev-parse", "HEAD"]);

    // The remote stands for git.heroku.com: its post-receive hook starts the build on the fake API.
    let remote = w.dir.join("remotes").join(format!("{app}.git"));
    std::fs::create_dir_all(&remote).unwrap();
    git(&remote, &["init", "-q", "--bare"]);
    let hook = format!(
        r#"#!/bin/sh
while read old new ref; do
  [ "$ref" = refs/heads/main ] || continue
  python3 - "{url}/apps/{app}/builds" "$new" <<'EOF'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], method="POST", data=json.dumps({{"source_blob": {{"url": None, "version": sys.argv[2]}}}}).encode(),
    headers={{"Authorization": "Bearer {HK_KEY}", "Content-Type": "application/json", "Accept": "application/vnd.heroku+json; version=3"}})
urllib.request.build_opener(urllib.request.ProxyHandler({{}})).open(req, timeout=10).read()
EOF
done
"#,
        url = w.hk.url()
    );
    write_exec(&remote.join("hooks/post-receive"), &hook);

    let cfg = hk_config(w, app, json!({ "git_remote": remote.display().to_string() }));
    let p = provider(&cfg, &root);
    let out = p.deploy(&target(Environment::Staging, &commit), &cancel()).await.unwrap();
    assert!(out.detail.starts_with(&format!("v2 live on {app}: Deploy {}", &commit[..8])), "{}", out.detail);
    assert_eq!(w.hk.live(app).unwrap(), json!({ "version": "v2", "commit": commit }));
    assert_eq!(p.current_version(Environment::Staging).await.unwrap().as_deref(), Some("v2"));
    // The release was confirmed with the real CLI's newest-first listing.
    assert!(w.argvs_with(app).iter().any(|a| a[1..] == ["releases", "-a", app, "--json", "-n", "10"]), "{:?}", w.argvs_with(app));
    let ranges: Vec<Value> = w.hk.requests_for(&format!("/apps/{app}/releases")).iter().map(|r| r["headers"]["range"].clone()).collect();
    assert!(ranges.contains(&json!("version ..; max=10, order=desc")), "{ranges:?}");
}

#[tokio::test]
async fn heroku_rollback_posts_the_target_release_id() {
    let Some(w) = world() else { return };
    let app = "hk-rollback";
    let (a, b) = (sha(app, 1), sha(app, 2));
    hk_seed(w, app, &[&a, &b]).await;
    let root = w.project(app);
    let p = provider(&hk_config(w, app, json!({})), &root);
    let recorded = p.current_version(Environment::Staging).await.unwrap().unwrap();
    assert_eq!(recorded, "v3");

    let out = p.rollback(Environment::Staging, "v2", &cancel()).await.unwrap();
    assert!(out.detail.contains("rolled back to v2: new release v4 (Rollback to v2)"), "{}", out.detail);
    let posts: Vec<Value> = w.hk.requests_for(&format!("/apps/{app}/releases")).into_iter().filter(|r| r["method"] == "POST").collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["body"], json!({ "release": hk_release(w, app, 2)["id"] }));
    assert_eq!(w.hk.live(app).unwrap(), json!({ "version": "v4", "commit": a }));
    assert_eq!(p.current_version(Environment::Staging).await.unwrap().as_deref(), Some("v4"));
    assert!(w.argvs_with(app).iter().any(|x| x[1..] == ["rollback", "v2", "-a", app]));

    // The id recorded before "production" brings B back.
    p.rollback(Environment::Staging, &recorded, &cancel()).await.unwrap();
    assert_eq!(w.hk.live(app).unwrap(), json!({ "version": "v5", "commit": b }));
    let versions = p.versions(Environment::Staging, &cancel()).await.unwrap();
    assert_eq!(versions[0].commit.as_deref(), Some(&b[..8]), "the rollback release runs B's code");

    let err = p.rollback(Environment::Staging, "v99", &cancel()).await.unwrap_err();
    match &err {
        CoreError::Platform { message, .. } => assert!(message.contains("Couldn't find that release"), "{message}"),
        other => panic!("expected a platform error, got {other:?}"),
    }
}

#[tokio::test]
async fn heroku_config_lists_names_only_and_unset_goes_through_the_cli() {
    let Some(w) = world() else { return };
    let app = "hk-config";
    hk_seed(w, app, &[&sha(app, 1)]).await;
    let root = w.project(app);
    let p = provider(&hk_config(w, app, json!({})), &root);
    let db_url = "postgres://shop:pw-91f2c@db.internal/shop";
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let seeded = client
        .patch(format!("{}/apps/{app}/config-vars", w.hk.url()))
        .bearer_auth(HK_KEY)
        .json(&json!({ "DATABASE_URL": db_url, "RAILS_ENV": "staging" }))
        .send()
        .await
        .unwrap();
    assert!(seeded.status().is_success());

    let listing = p.env_list(Environment::Staging, &cancel()).await.unwrap();
    let names: Vec<&str> = listing.vars.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["DATABASE_URL", "RAILS_ENV"]);
    let shown = serde_json::to_string(&listing).unwrap();
    assert!(!shown.contains(db_url) && !shown.contains("pw-91f2c"), "{shown}");
    assert!(w.argvs_with(app).iter().any(|a| a[1..] == ["config", "-a", app, "--json"]));

    let out = p.env_unset(Environment::Staging, "RAILS_ENV", &cancel()).await.unwrap();
    assert!(out.detail.contains("Unsetting RAILS_ENV and restarting hk-config... done, v4"), "{}", out.detail);
    let patches: Vec<Value> =
        w.hk.requests_for(&format!("/apps/{app}/config-vars")).into_iter().filter(|r| r["method"] == "PATCH").collect();
    assert_eq!(patches.last().unwrap()["body"], json!({ "RAILS_ENV": null }));
    let names: Vec<String> = p.env_list(Environment::Staging, &cancel()).await.unwrap().vars.into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["DATABASE_URL"]);
}

#[tokio::test]
async fn heroku_env_set_patches_config_vars_through_the_platform_api() {
    let Some(w) = world() else { return };
    let app = "hk-env-set";
    hk_seed(w, app, &[&sha(app, 1)]).await;
    let root = w.project(app);
    let p = provider(&hk_config(w, app, json!({})), &root);
    let value = "whsec_5Jd8-very-secret";

    let out = p.env_set(Environment::Staging, "WEBHOOK_SECRET", &Secret::new(value), &cancel()).await.unwrap();
    assert!(!out.detail.contains(value), "{}", out.detail);
    let patches: Vec<Value> =
        w.hk.requests_for(&format!("/apps/{app}/config-vars")).into_iter().filter(|r| r["method"] == "PATCH").collect();
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0]["body"], json!({ "WEBHOOK_SECRET": value }));
    assert_eq!(patches[0]["headers"]["authorization"], json!(format!("Bearer {HK_KEY}")));
    assert_eq!(patches[0]["headers"]["accept"], "application/vnd.heroku+json; version=3");
    assert!(w.argvs().iter().flatten().all(|a| !a.contains(value)), "the value reached an argument list");
    // Heroku made a release for the change; the code (and so the live commit) is unchanged.
    assert_eq!(hk_release(w, app, 3)["description"], "Set WEBHOOK_SECRET config vars");
    assert_eq!(w.hk.live(app).unwrap(), json!({ "version": "v3", "commit": sha(app, 1) }));

    let names: Vec<String> = p.env_list(Environment::Staging, &cancel()).await.unwrap().vars.into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["WEBHOOK_SECRET"]);
}

#[tokio::test]
async fn heroku_checklist_runs_auth_whoami_and_apps_info() {
    let Some(w) = world() else { return };
    let app = "hk-checklist";
    hk_seed(w, app, &[]).await;
    let root = w.project(app);
    let p = provider(&hk_config(w, app, json!({})), &root);

    let items = p.checklist(&cancel()).await;
    let login = items.iter().find(|i| i.name == "heroku login").expect("a login item");
    assert_eq!(login.status, CheckStatus::Ok, "{login:?}");
    assert_eq!(login.detail, "logged in as dev@example.com");
    let app_item = items.iter().find(|i| i.name == "heroku app (staging)").expect("an app item");
    assert_eq!(app_item.status, CheckStatus::Ok, "{app_item:?}");
    assert!(w.hk.requests_for(&format!("/apps/{app}")).iter().any(|r| r["path"] == format!("/apps/{app}")));

    // An app that does not exist: the CLI's own words (exit 2), named in the checklist.
    let missing = provider(&hk_config(w, "hk-missing-app", json!({})), &root);
    let items = missing.checklist(&cancel()).await;
    let app_item = items.iter().find(|i| i.name == "heroku app (staging)").unwrap();
    assert_eq!(app_item.status, CheckStatus::Fail);
    assert!(app_item.detail.contains("Couldn't find that app"), "{app_item:?}");
}
