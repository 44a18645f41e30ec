//! The whole pipeline through MCP on every cloud platform, with the platform at the edge faked:
//! fake CLIs on PATH (wrangler, heroku + a git remote, fly, shuttle) and a fake Render API, each
//! keeping `state/live/<target>.json` right. An "edge" HTTP server per environment answers the
//! environment's URL from that file, so `/health` reports the commit that is really live, and a
//! commit listed in `state/unhealthy-<env>` answers 500 — a release that fails in production.
//! Per platform: staging → smoke → production (human confirmation by token) → a failing
//! release → automatic rollback to the recorded previous version; secrets through deploy_env
//! (stdin, never argv, never in a result); only the documented variables reach the CLI.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use oc_deploy_e2e::{Client, bin};
use serde_json::{Value, json};

const SECRET: &str = "sk-e2e-platform-SECRET-4b8c1d";
const CANARY_VAR: &str = "OC_E2E_PRIVATE_CANARY";

fn fakes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fakes")
}

#[derive(Clone)]
struct Edge {
    state: PathBuf,
    target: String,
    env: &'static str,
}

async fn edge(State(e): State<Edge>, uri: Uri) -> Response {
    let live: Option<Value> =
        std::fs::read_to_string(e.state.join("live").join(format!("{}.json", e.target))).ok().and_then(|t| serde_json::from_str(&t).ok());
    let Some(live) = live else {
        return (StatusCode::SERVICE_UNAVAILABLE, "nothing deployed").into_response();
    };
    let commit: String = live["commit"].as_str().unwrap_or_default().chars().take(7).collect();
    let unhealthy = std::fs::read_to_string(e.state.join(format!("unhealthy-{}", e.env))).unwrap_or_default();
    if !commit.is_empty() && unhealthy.lines().any(|l| l.trim() == commit) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    match uri.path() {
        "/health" => axum::Json(json!({ "status": "ok", "version": commit, "platform_version": live["version"] })).into_response(),
        _ => "<html><body>shop</body></html>".into_response(),
    }
}

async fn start_edge(state: &Path, target: &str, env: &'static str) -> String {
    let app = Router::new().fallback(edge).with_state(Edge { state: state.to_path_buf(), target: target.to_owned(), env });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A fake API started as a child (`PORT <n>` on its first line), killed on drop.
struct FakeApi {
    child: std::process::Child,
    port: u16,
}

impl FakeApi {
    fn start(script: &str, state: &Path) -> Self {
        let mut child = Command::new("python3")
            .arg(fakes().join(script))
            .arg("--state")
            .arg(state)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
        let port = line.trim().strip_prefix("PORT ").unwrap_or_else(|| panic!("{script}: {line}")).parse().unwrap();
        Self { child, port }
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct World {
    _dir: tempfile::TempDir,
    t: PathBuf,
    root: PathBuf,
    env: Vec<(String, String)>,
    _api: Option<FakeApi>,
}

impl World {
    fn state(&self) -> PathBuf {
        self.t.join("state")
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(&self.root)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(self.state().join("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    async fn mcp(&self) -> Client {
        let mut cmd = tokio::process::Command::new(bin());
        cmd.arg("serve").arg("--project-dir").arg(&self.root).envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let transport = rmcp::transport::TokioChildProcess::new(cmd).unwrap();
        let handler = oc_deploy_e2e::Recorder::default();
        let service = rmcp::ServiceExt::serve(handler.clone(), transport).await.unwrap();
        Client { service, recorder: handler }
    }
}

/// Builds the project, the fakes and the edges for one platform.
async fn world(platform: &str) -> World {
    let dir = tempfile::Builder::new().prefix("ocd-plat-").tempdir().unwrap();
    let t = dir.path().canonicalize().unwrap();
    let root = t.join("project");
    let state = t.join("state");
    std::fs::create_dir_all(t.join("bin")).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(state.join("live")).unwrap();
    for cli in ["wrangler", "heroku", "fly", "shuttle"] {
        std::os::unix::fs::symlink(fakes().join(cli), t.join("bin").join(cli)).unwrap();
    }
    let path = format!("{}:{}", t.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let mut env: Vec<(String, String)> =
        vec![("PATH".into(), path), ("E2E_SECRET".into(), SECRET.into()), (CANARY_VAR.into(), "must-not-leak".into())];
    let mut api = None;
    let (staging_target, prod_target, mut cfg_envs, extra) = match platform {
        "cloudflare-workers" => {
            std::fs::write(
                root.join("wrangler.toml"),
                "name = \"shop\"\nmain = \"src/index.js\"\ncompatibility_date = \"2025-01-01\"\n\n[env.staging]\nname = \"shop-staging\"\n",
            )
            .unwrap();
            std::fs::create_dir_all(root.join("src")).unwrap();
            std::fs::write(root.join("src/index.js"), "export default { fetch() { return new Response('ok') } }\n").unwrap();
            env.push(("CLOUDFLARE_API_TOKEN".into(), "cf-e2e-token-value".into()));
            env.push(("CLOUDFLARE_ACCOUNT_ID".into(), "023e105f4ecef8ad9ca31a8372d0c353".into()));
            env.push(("CLOUDFLARE_API_BASE_URL".into(), "http://127.0.0.1:9/client/v4".into()));
            ("shop-staging", "shop", (json!({ "wrangler_env": "staging" }), json!({ "wrangler_env": null })), json!({}))
        }
        "heroku" => {
            for app in ["shop-staging", "shop"] {
                let remote = t.join(format!("{app}.git"));
                let out = Command::new("git").args(["init", "-q", "--bare"]).arg(&remote).output().unwrap();
                assert!(out.status.success());
                let hook = remote.join("hooks/post-receive");
                std::fs::write(
                    &hook,
                    format!(
                        "#!/bin/sh\nwhile read old new ref; do\n  if [ \"$ref\" = refs/heads/main ]; then {} _receive {app} \"$new\"; fi\ndone\n",
                        t.join("bin/heroku").display()
                    ),
                )
                .unwrap();
                std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            }
            env.push(("HEROKU_API_KEY".into(), "heroku-e2e-key-value".into()));
            std::fs::write(state.join("heroku.json"), json!({ "apps": { "shop-staging": {}, "shop": {} } }).to_string()).unwrap();
            std::fs::write(root.join("Procfile"), "web: bin/web\n").unwrap();
            // Config vars are set through the Platform API (the CLI would need the value in argv).
            let a = FakeApi::start("heroku_api.py", &t.join("api"));
            let http = reqwest::Client::new();
            for app in ["shop-staging", "shop"] {
                let r = http
                    .post(format!("http://127.0.0.1:{}/apps", a.port))
                    .bearer_auth("heroku-e2e-key-value")
                    .header("accept", "application/vnd.heroku+json; version=3")
                    .json(&json!({ "name": app }))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
            }
            env.push(("HEROKU_HOST".into(), format!("http://127.0.0.1:{}", a.port)));
            api = Some(a);
            let remote = |app: &str| t.join(format!("{app}.git")).display().to_string();
            (
                "shop-staging",
                "shop",
                (
                    json!({ "app": "shop-staging", "git_remote": remote("shop-staging") }),
                    json!({ "app": "shop", "git_remote": remote("shop") }),
                ),
                json!({}),
            )
        }
        "fly-io" => {
            std::fs::write(root.join("fly.toml"), "app = \"shop\"\n\n[http_service]\n  internal_port = 8080\n").unwrap();
            env.push(("FLY_API_TOKEN".into(), "fly-e2e-token-value".into()));
            std::fs::write(state.join("fly.json"), json!({ "apps": { "shop-staging": {}, "shop": {} } }).to_string()).unwrap();
            ("shop-staging", "shop", (json!({ "app": "shop-staging" }), json!({ "app": "shop" })), json!({}))
        }
        "shuttle" => {
            std::fs::write(root.join("Shuttle.toml"), "name = \"shop\"\n").unwrap();
            std::fs::write(root.join("Cargo.toml"), "[package]\nname = \"shop\"\nversion = \"0.1.0\"\nedition = \"2021\"\n").unwrap();
            std::fs::write(root.join("Secrets.toml"), format!("API_KEY = \"{SECRET}\"\n")).unwrap();
            std::fs::write(root.join(".gitignore"), "Secrets.toml\n").unwrap();
            env.push(("SHUTTLE_API_KEY".into(), "shuttle-e2e-key-value".into()));
            ("shop-staging", "shop", (json!({ "app": "shop-staging" }), json!({ "app": "shop" })), json!({}))
        }
        "render" => {
            std::fs::write(
                state.join("services.json"),
                json!({
                    "srv-staging": { "name": "shop-staging", "autoDeploy": "yes", "branch": "main", "envVars": {} },
                    "srv-prod": { "name": "shop", "autoDeploy": "yes", "branch": "main", "envVars": {} }
                })
                .to_string(),
            )
            .unwrap();
            let a = FakeApi::start("render_api.py", &state);
            env.push(("RENDER_API_KEY".into(), "rnd_e2eRenderKeyValue".into()));
            env.push(("RENDER_HOST".into(), format!("http://127.0.0.1:{}/v1", a.port)));
            api = Some(a);
            ("srv-staging", "srv-prod", (json!({ "service_id": "srv-staging" }), json!({ "service_id": "srv-prod" })), json!({}))
        }
        other => panic!("no setup for {other}"),
    };
    let staging_url = start_edge(&state, staging_target, "staging").await;
    let prod_url = start_edge(&state, prod_target, "production").await;
    cfg_envs.0["url"] = json!(staging_url);
    cfg_envs.1["url"] = json!(prod_url);
    let mut cfg = json!({
        "project_name": "shop",
        "platform": platform,
        "environments": { "staging": cfg_envs.0, "production": cfg_envs.1 },
        "deploy_order": ["migrate", "deploy-api"],
        "smoke_tests": [ { "name": "health", "url": "/health", "expect_status": 200, "expect_version": true } ],
        "auto_rollback": { "enabled": true, "wait_seconds": 1 },
        "platform_timeout_seconds": 60,
        "audit": { "command": [] }
    });
    if let (Some(c), Some(x)) = (cfg.as_object_mut(), extra.as_object()) {
        c.extend(x.clone());
    }
    std::fs::write(root.join(".oc-deploy-ops.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    std::fs::write(root.join("README.md"), "v1\n").unwrap();
    let w = World { _dir: dir, t, root, env, _api: api };
    w.git(&["init", "-q", "-b", "main"]);
    w.git(&["add", "-A"]);
    w.git(&["commit", "-q", "-m", "v1"]);
    w
}

async fn prod(c: &Client) -> Value {
    let (err, ask) = c.call_json("deploy_prod", json!({})).await;
    assert!(!err, "{ask:#}");
    assert_eq!(ask["status"], "confirmation_required", "{ask:#}");
    let token = ask["confirmation_token"].as_str().unwrap().to_owned();
    let (err, out) = c.call_json("deploy_prod", json!({ "confirmation": token })).await;
    // A run that ended rolled back is an error result for the agent; a success is not.
    assert_eq!(err, out["status"] != "succeeded", "{out:#}");
    out
}

async fn health_version(url: &str) -> (u16, String) {
    let r = reqwest::get(format!("{url}/health")).await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or_default();
    (status, body["version"].as_str().unwrap_or_default().to_owned())
}

fn url_of(w: &World, env: &str) -> String {
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(w.root.join(".oc-deploy-ops.json")).unwrap()).unwrap();
    cfg["environments"][env]["url"].as_str().unwrap().to_owned()
}

async fn full_pipeline(platform: &str) {
    let w = world(platform).await;
    let v1 = w.git(&["rev-parse", "--short=7", "HEAD"]);
    let c = w.mcp().await;

    let (err, st) = c.call_json("deploy_staging", json!({})).await;
    assert!(!err, "{st:#}");
    assert_eq!(st["status"], "succeeded", "{platform} staging: {st:#}");
    assert_eq!(health_version(&url_of(&w, "staging")).await, (200, v1.clone()));

    let p1 = prod(&c).await;
    assert_eq!(p1["status"], "succeeded", "{platform} prod: {p1:#}");
    assert_eq!(health_version(&url_of(&w, "production")).await, (200, v1.clone()));

    // A release that passes staging and fails in production is rolled back automatically.
    std::fs::write(w.root.join("README.md"), "v2\n").unwrap();
    w.git(&["commit", "-q", "-am", "v2"]);
    let v2 = w.git(&["rev-parse", "--short=7", "HEAD"]);
    std::fs::write(w.state().join("unhealthy-production"), format!("{v2}\n")).unwrap();
    let (err, st2) = c.call_json("deploy_staging", json!({})).await;
    assert!(!err && st2["status"] == "succeeded", "{platform}: {st2:#}");
    let p2 = prod(&c).await;
    assert_eq!(p2["status"], "rolled_back", "{platform}: {p2:#}");
    assert_eq!(p2["rollback"]["automatic"], true);
    let prev = p2["previous_version"].as_str().unwrap_or_default().to_owned();
    assert!(!prev.is_empty(), "{platform}: the previous version is recorded before production: {p2:#}");
    assert_eq!(p2["rollback"]["to_version"], prev.as_str());
    assert_eq!(health_version(&url_of(&w, "production")).await, (200, v1.clone()), "{platform}: production serves v1 again");
    assert_eq!(health_version(&url_of(&w, "staging")).await, (200, v2.clone()));

    // deploy_status asks the platform what is live: the version production was rolled back to.
    let (err, status) = c.call_json("deploy_status", json!({})).await;
    assert!(!err, "{status:#}");
    let prod_env = status["environments"].as_array().unwrap().iter().find(|e| e["env"] == "production").unwrap().clone();
    let live = prod_env["live_version"].as_str().unwrap_or_default();
    assert!(!live.is_empty(), "{platform}: {status:#}");
    if platform == "cloudflare-workers" {
        // wrangler rollback redeploys the old version id; elsewhere a rollback is a new release.
        assert_eq!(live, prev, "{status:#}");
    }

    // Secrets through deploy_env: the value comes from the server's environment.
    let (err, set) =
        c.call_json("deploy_env", json!({ "env": "staging", "action": "set", "name": "API_KEY", "value_from": "env:E2E_SECRET" })).await;
    if platform == "shuttle" {
        assert!(err, "{set:#}");
        let text = set.to_string();
        assert!(text.contains("Secrets.toml"), "{platform}: the Secrets.toml model is explained: {text}");
    } else {
        assert!(!err, "{platform} env set: {set:#}");
    }
    let (err, list) = c.call_json("deploy_env", json!({ "env": "staging", "action": "list" })).await;
    assert!(!err, "{platform} env list: {list:#}");
    let names: Vec<&str> =
        list["vars"].as_array().unwrap_or_else(|| panic!("{platform}: {list:#}")).iter().map(|v| v["name"].as_str().unwrap()).collect();
    if platform == "heroku" {
        // Set through the Platform API: the value is in the PATCH body and nowhere else.
        let reqs = std::fs::read_to_string(w.t.join("api/requests.jsonl")).unwrap_or_default();
        assert!(reqs.lines().any(|l| l.contains("PATCH") && l.contains("/apps/shop-staging/config-vars") && l.contains(SECRET)), "{reqs}");
    } else {
        assert!(names.contains(&"API_KEY"), "{platform}: {list:#}");
    }
    for r in [&st, &p1, &st2, &p2, &set, &list] {
        assert!(!r.to_string().contains(SECRET), "{platform}: a result carries the secret: {r:#}");
    }
    c.close().await;

    // What reached the fake CLIs: the secret only on stdin; no undocumented variable.
    let calls = w.calls();
    if platform != "render" {
        assert!(!calls.is_empty(), "{platform}: the fake CLI was called");
    }
    for call in &calls {
        let argv = call["argv"].to_string();
        assert!(!argv.contains(SECRET), "{platform}: the secret is in an argument list: {argv}");
        let names = call["env_names"].to_string();
        assert!(!names.contains(CANARY_VAR), "{platform}: {CANARY_VAR} leaked into {argv}");
        assert!(!names.contains("E2E_SECRET"), "{platform}: E2E_SECRET leaked into {argv}");
    }
    if !matches!(platform, "shuttle" | "render" | "heroku") {
        assert!(calls.iter().any(|c| c["stdin"].as_str().is_some_and(|s| s.contains(SECRET))), "{platform}: the secret went on stdin");
    }
    let cp = std::fs::read_to_string(w.root.join(".checkpoints/oc-deploy-ops.checkpoint.json")).unwrap();
    assert!(!cp.contains(SECRET));
    let log = std::fs::read_to_string(w.root.join(".checkpoints/oc-deploy-ops.runs.jsonl")).unwrap();
    assert!(!log.contains(SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn cloudflare_workers_full_pipeline_through_mcp() {
    full_pipeline("cloudflare-workers").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn heroku_full_pipeline_through_mcp() {
    full_pipeline("heroku").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fly_io_full_pipeline_through_mcp() {
    full_pipeline("fly-io").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shuttle_full_pipeline_through_mcp() {
    full_pipeline("shuttle").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn render_full_pipeline_through_mcp() {
    full_pipeline("render").await;
}

impl World {
    /// A server whose environment is this world's, changed by `f`.
    async fn mcp_with(&self, f: impl FnOnce(&mut Vec<(String, String)>)) -> Client {
        let mut env = self.env.clone();
        f(&mut env);
        let mut cmd = tokio::process::Command::new(bin());
        cmd.arg("serve").arg("--project-dir").arg(&self.root).env_clear().envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Ok(home) = std::env::var("HOME") {
            cmd.env("HOME", home);
        }
        let transport = rmcp::transport::TokioChildProcess::new(cmd).unwrap();
        let handler = oc_deploy_e2e::Recorder::default();
        let service = rmcp::ServiceExt::serve(handler.clone(), transport).await.unwrap();
        Client { service, recorder: handler }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_dry_run_and_failures_through_mcp_are_clear_and_leave_the_checkpoint_consistent() {
    let w = world("cloudflare-workers").await;
    let c = w.mcp().await;

    // Setup: the platform's capabilities and its own checks (login through `wrangler whoami`).
    let (err, init) = c.call_json("deploy_init", json!({})).await;
    assert!(!err, "{init:#}");
    assert_eq!(init["capabilities"]["frontend"], true, "{init:#}");
    assert_eq!(init["capabilities"]["dry_run"], true);
    assert!(init["checklist"].to_string().contains("dev@example.com"), "whoami in the checklist: {:#}", init["checklist"]);

    // A dry run asks wrangler (--dry-run) and deploys nothing.
    let (err, dry) = c.call_json("deploy_staging", json!({ "dry_run": true })).await;
    assert!(!err, "{dry:#}");
    assert_eq!(dry["status"], "succeeded");
    assert!(dry["steps"].to_string().contains("dry run"), "{dry:#}");
    assert!(!w.state().join("live/shop-staging.json").exists(), "a dry run deploys nothing");
    assert!(w.calls().iter().any(|c| c["argv"].to_string().contains("--dry-run")));

    // The platform fails mid-deploy: a failed run with wrangler's own words, nothing verified.
    let fail = json!({ "deploy": { "exit": 1, "stderr": "\n✘ [ERROR] A request to the Cloudflare API (/accounts/x/workers/scripts/shop-staging/versions) failed.\n\n  Internal error [code: 10013]\n\n" } });
    std::fs::write(w.state().join("fail.json"), fail.to_string()).unwrap();
    let (err, st) = c.call_json("deploy_staging", json!({})).await;
    assert!(err, "{st:#}");
    assert_eq!(st["status"], "failed", "{st:#}");
    let text = st.to_string();
    assert!(text.contains("platform_error") && text.contains("10013"), "{st:#}");
    let cp = std::fs::read_to_string(w.root.join(".checkpoints/oc-deploy-ops.checkpoint.json")).unwrap();
    let cp: Value = serde_json::from_str(&cp).unwrap();
    assert!(cp["skill_state"]["environments"]["staging"]["verified_commit"].is_null(), "{cp:#}");
    let (_, p) = c.call_json("deploy_prod", json!({})).await;
    assert_eq!(p["status"], "blocked", "production refuses an unverified commit: {p:#}");
    std::fs::remove_file(w.state().join("fail.json")).unwrap();

    // A production secret change needs a human's yes: the plan and a token first, nothing set.
    let set_prod = json!({ "env": "production", "action": "set", "name": "API_KEY", "value_from": "env:E2E_SECRET" });
    let (err, ask) = c.call_json("deploy_env", set_prod.clone()).await;
    assert!(!err, "{ask:#}");
    assert_eq!(ask["status"], "confirmation_required", "{ask:#}");
    assert_eq!(ask["plan"]["change"], "set API_KEY from env:E2E_SECRET", "{ask:#}");
    let puts = |w: &World| w.calls().iter().filter(|c| c["argv"].to_string().contains("\"put\"")).count();
    let before = puts(&w);
    let token = ask["confirmation_token"].as_str().unwrap().to_owned();
    // The token approves exactly that change, not another one.
    let mut other = set_prod.clone();
    other["name"] = json!("OTHER_KEY");
    other["confirmation"] = json!(token);
    let (err, refused) = c.call_json("deploy_env", other).await;
    assert!(err, "{refused:#}");
    assert_eq!(puts(&w), before);
    let ask2 = c.call_json("deploy_env", set_prod.clone()).await.1;
    let mut approved = set_prod.clone();
    approved["confirmation"] = ask2["confirmation_token"].clone();
    let (err, done) = c.call_json("deploy_env", approved).await;
    assert!(!err, "{done:#}");
    assert_eq!((done["status"].as_str(), done["confirmed_by"].as_str()), (Some("done"), Some("confirmation token")), "{done:#}");
    assert_eq!(puts(&w), before + 1);
    assert!(!done.to_string().contains(SECRET));

    // wrangler uploads the directory as it is: uncommitted changes would ship unrecorded.
    std::fs::write(w.root.join("README.md"), "edited, not committed\n").unwrap();
    let (err, st) = c.call_json("deploy_staging", json!({})).await;
    assert!(err, "{st:#}");
    assert_eq!(st["status"], "blocked", "{st:#}");
    assert!(st.to_string().contains("uncommitted changes"), "{st:#}");
    w.git(&["checkout", "--", "README.md"]);
    c.close().await;

    // No wrangler on PATH: the install hint.
    let c = w.mcp_with(|e| e.retain(|(k, _)| k != "PATH")).await;
    let (err, st) = c.call_json("deploy_staging", json!({})).await;
    assert!(err, "{st:#}");
    let text = st.to_string();
    assert!(text.contains("program_missing") && text.contains("npm i -g wrangler"), "{st:#}");
    c.close().await;

    // No token: wrangler's refusal and the login hint.
    let c = w.mcp_with(|e| e.retain(|(k, _)| k != "CLOUDFLARE_API_TOKEN")).await;
    let (err, st) = c.call_json("deploy_staging", json!({})).await;
    assert!(err, "{st:#}");
    let text = st.to_string();
    assert!(text.contains("platform_error") && text.contains("CLOUDFLARE_API_TOKEN"), "{st:#}");
    c.close().await;
}
