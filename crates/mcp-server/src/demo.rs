//! `oc-deploy demo`: the whole pipeline, for real, on a sample app built into this binary. It
//! creates a git project in a temporary directory, deploys it to staging and production on the
//! local platform, then ships a release that passes staging but fails in production and shows
//! the automatic rollback. Everything it starts is stopped at the end.

use std::path::Path;
use std::time::Instant;

use deploy_core::config::{AutoRollbackConfig, Config, EnvConfig, Environments, LocalConfig, Platform, SmokeTest};
use deploy_core::confirm::NoConfirmer;
use deploy_core::domain::Environment;
use deploy_core::ops::{self, Ctx, ProdRequest, StagingRequest};
use deploy_core::process::Cmd;
use deploy_core::run::RunStatus;

use crate::{cli, render};

use crate::cli::say;

fn section(n: u32, title: &str) {
    say(format!("\n== {n}. {title}"));
}

/// Runs the demo; returns the exit code.
pub async fn run(keep: bool) -> i32 {
    let started = Instant::now();
    let dir = match tempfile::Builder::new().prefix("oc-deploy-demo-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("cannot create a temporary directory: {e}");
            return 1;
        }
    };
    let root = dir.path().canonicalize().unwrap_or_else(|_| dir.path().to_path_buf());
    let ctx = cli::ctx(&root, true);
    let outcome = steps(&ctx, &root).await;
    section(9, "clean up");
    let exe = std::env::current_exe().unwrap_or_else(|_| "oc-deploy".into());
    let platform = deploy_core::local::LocalPlatform::new(&root, exe, ctx.runner.clone());
    if keep {
        let kept = dir.keep();
        say(format!("kept {} — releases still run; stop them with: oc-deploy local down --project-dir {}", kept.display(), kept.display()));
    } else {
        match platform.down().await {
            Ok(_) => say("stopped every release, proxy and the supervisor"),
            Err(e) => say(format!("could not stop everything: {e}")),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    match outcome {
        Ok(()) => {
            say(format!("\ndemo finished in {secs:.1} s"));
            0
        }
        Err(msg) => {
            say(format!("\ndemo FAILED after {secs:.1} s: {msg}"));
            1
        }
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| format!("no free port: {e}"))
}

/// The demo's config: the sample app is this binary's hidden `sample-app` command.
fn demo_config(exe: &Path, staging: u16, production: u16) -> Config {
    let env = |port: u16| EnvConfig { url: Some(format!("http://127.0.0.1:{port}")), port: Some(port), ..Default::default() };
    let smoke = |name: &str, url: &str| SmokeTest {
        name: name.into(),
        url: url.into(),
        expect_status: Some(200),
        expect_contains: None,
        expect_json: None,
        expect_version: false,
        max_latency_ms: None,
    };
    let mut health = smoke("health", "/health");
    health.expect_version = true;
    let mut home = smoke("home page", "/");
    home.expect_contains = Some("<html".into());
    Config {
        schema: None,
        project_name: "sample-shop".into(),
        platform: Platform::Local,
        monorepo: false,
        monorepo_root: None,
        app_path: None,
        environments: Environments { staging: Some(env(staging)), production: Some(env(production)) },
        deploy_order: vec![
            deploy_core::config::DeployStep::Migrate,
            deploy_core::config::DeployStep::DeployApi,
            deploy_core::config::DeployStep::DeployFrontend,
        ],
        smoke_tests: vec![health, home, smoke("items API", "/api/items")],
        rollback: Default::default(),
        health: Default::default(),
        // The skill waits 30 s for propagation; the demo's app has none, so 2 s shows the idea.
        auto_rollback: AutoRollbackConfig { enabled: true, wait_seconds: 2 },
        default_strategy: None,
        preflight: Default::default(),
        audit: Default::default(),
        local: Some(LocalConfig {
            start: vec![exe.display().to_string(), "sample-app".into()],
            build: None,
            migrate: None,
            health_path: "/health".into(),
            ready_timeout_seconds: 15,
            canary_percent: 10,
            env: Default::default(),
        }),
        platform_cli: None,
        platform_timeout_seconds: None,
        cloudflare: None,
        heroku: None,
        command: None,
        notifications: None,
    }
}

async fn git(ctx: &Ctx, root: &Path, args: &[&str]) -> Result<(), String> {
    let cmd = Cmd::new("git", root)
        .args(["-c", "user.name=oc-deploy demo", "-c", "user.email=demo@oc-deploy.invalid", "-c", "commit.gpgsign=false"])
        .args(args.iter().copied());
    ctx.runner.run_checked(&cmd, &ctx.cancel).await.map(|_| ()).map_err(|e| e.to_string())
}

fn write(root: &Path, name: &str, body: &str) -> Result<(), String> {
    let p = root.join(name);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(&p, body).map_err(|e| format!("writing {}: {e}", p.display()))
}

async fn steps(ctx: &Ctx, root: &Path) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (sp, pp) = (free_port()?, free_port()?);
    section(1, "a sample project");
    for (name, body) in crate::sample_app::SAMPLE_FILES {
        write(root, name, body)?;
    }
    demo_config(&exe, sp, pp).write(root).map_err(|e| e.to_string())?;
    // The sample comes audited: fresh auditor checkpoints with no findings.
    let now = deploy_core::domain::now_rfc3339();
    for skill in ["oc-code-auditor", "oc-security-auditor"] {
        let cp = serde_json::json!({ "skill": skill, "updated_at": now, "skill_state": { "findings_by_severity": { "critical": 0, "high": 0, "medium": 1, "low": 2 } } });
        write(root, &format!(".checkpoints/{skill}.checkpoint.json"), &serde_json::to_string_pretty(&cp).unwrap_or_default())?;
    }
    git(ctx, root, &["init", "-q", "-b", "main"]).await?;
    git(ctx, root, &["add", "-A"]).await?;
    git(ctx, root, &["commit", "-q", "-m", "sample shop v1"]).await?;
    say(format!("project: {}\nstaging:    http://127.0.0.1:{sp}\nproduction: http://127.0.0.1:{pp}", root.display()));
    say("(the demo runs as an operator with --yes: production is approved without a prompt)");

    section(2, "init: detect and check");
    let init = ops::init(ctx, None, None, false).await.map_err(|e| e.to_string())?;
    say(render::init(&init));

    section(3, "audit gate");
    let gate = ops::audit(ctx).await.map_err(|e| e.to_string())?;
    say(render::gate(&gate));

    section(4, "staging: gate → deploy → smoke");
    let st = ops::deploy_staging(ctx, StagingRequest::default(), &NoConfirmer).await.map_err(|e| e.to_string())?;
    say(render::run(&st));
    expect(st.run.status, RunStatus::Succeeded, "staging v1")?;

    section(5, "production: confirm → record previous → deploy → health");
    let p1 = ops::deploy_prod(ctx, ProdRequest::default(), &NoConfirmer).await.map_err(|e| e.to_string())?;
    say(render::run(&p1));
    expect(p1.run.status, RunStatus::Succeeded, "production v1")?;
    let good = p1.run.version.clone().unwrap_or_default();
    let h = ops::health(ctx, Environment::Production).await.map_err(|e| e.to_string())?;
    say(render::health(&h));

    section(6, "a release that passes staging but fails in production");
    write(root, "sample.json", "{ \"fail_in\": [\"production\"] }\n")?;
    git(ctx, root, &["commit", "-q", "-am", "feature that needs a production secret nobody set"]).await?;
    let st2 = ops::deploy_staging(ctx, StagingRequest::default(), &NoConfirmer).await.map_err(|e| e.to_string())?;
    say(render::run(&st2));
    expect(st2.run.status, RunStatus::Succeeded, "staging v2")?;

    section(7, "production: unhealthy → wait → re-check → automatic rollback");
    let p2 = ops::deploy_prod(ctx, ProdRequest::default(), &NoConfirmer).await.map_err(|e| e.to_string())?;
    say(render::run(&p2));
    expect(p2.run.status, RunStatus::RolledBack, "production v2 (should roll back)")?;
    let h2 = ops::health(ctx, Environment::Production).await.map_err(|e| e.to_string())?;
    say(render::health(&h2));
    if h2.version.as_deref() != Some(good.as_str()) {
        return Err(format!("production should serve {good} again, serves {:?}", h2.version));
    }

    section(8, "what happened");
    let status = ops::status(ctx, None, None).await.map_err(|e| e.to_string())?;
    say(render::status(&status));
    say(format!(
        "\nURLs served:\n  staging    http://127.0.0.1:{sp}  (now {})\n  production http://127.0.0.1:{pp}  (back on {good})",
        st2.run.version.as_deref().unwrap_or("?")
    ));
    let rep = ops::report(ctx, Some(&p2.run.run_id), None).map_err(|e| e.to_string())?;
    say(format!("\nincident report of {} (first lines; full: oc-deploy report --run-id {}):", rep.run_id, rep.run_id));
    for line in rep.markdown.lines().take(14) {
        say(format!("  {line}"));
    }
    Ok(())
}

fn expect(got: RunStatus, want: RunStatus, what: &str) -> Result<(), String> {
    if got == want { Ok(()) } else { Err(format!("{what}: expected {}, got {}", want.as_str(), got.as_str())) }
}
