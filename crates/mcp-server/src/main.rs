//! `oc-deploy`: the MCP server (`serve`, over stdio or streamable HTTP) and its CLI twins, the
//! demo, and the local platform's supervisor. stdout carries only protocol or results; logs go
//! to stderr.

mod cli;
mod confirm;
mod contract;
mod demo;
mod http;
mod pm;
mod prompts;
mod render;
mod resources;
mod sample_app;
mod schema;
mod server;
mod tasks;
mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use deploy_core::config::Platform;
use deploy_core::domain::{Environment, Strategy};
use deploy_core::ops;
use deploy_core::report::ReportKind;
use deploy_core::secret::Redactor;
use tracing_subscriber::EnvFilter;

use crate::cli::{EXIT_USAGE, emit, emit_error, run_exit};
use crate::server::{OcDeploy, ServerOptions, Shared, default_root};

#[derive(Parser)]
#[command(
    name = "oc-deploy",
    version,
    about = "Gated deploys for coding agents: audit gate → staging → smoke → production (human confirms) → health → automatic rollback."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// The project directory (default: the current directory).
    #[arg(long, global = true, env = "OC_DEPLOY_PROJECT_DIR")]
    project_dir: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Serve MCP on stdio (default) or streamable HTTP (--http ADDR).
    Serve {
        #[command(flatten)]
        common: Common,
        /// Listen for streamable HTTP at ADDR (e.g. 127.0.0.1:8080); the endpoint is /mcp.
        #[arg(long)]
        http: Option<SocketAddr>,
        /// Bearer token required on /mcp (mandatory on a non-loopback address).
        #[arg(long, env = "OC_DEPLOY_HTTP_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Extra allowed Host names (behind a proxy).
        #[arg(long, value_delimiter = ',')]
        allowed_hosts: Vec<String>,
        /// Allowed browser Origins.
        #[arg(long, value_delimiter = ',')]
        allowed_origins: Vec<String>,
        /// Only tools that change no environment, secret or ticket.
        #[arg(long)]
        read_only: bool,
        /// Toolsets to expose: pipeline, setup, records (default all).
        #[arg(long, value_delimiter = ',')]
        toolsets: Vec<String>,
        /// Ship to production without asking a human (operator decision; recorded).
        #[arg(long)]
        auto_approve: bool,
        /// Seconds an idle HTTP session lives (longer than the longest deploy).
        #[arg(long, default_value_t = 7200, hide = true)]
        session_idle_seconds: u64,
    },
    /// Detect the platform, propose .oc-deploy-ops.json and run the setup checklist.
    Init {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_parser = parse_platform)]
        platform: Option<Platform>,
        /// oc-stack-forge pack id (default: the activePack of its checkpoint).
        #[arg(long)]
        pack: Option<String>,
        /// Write the proposed config (never overwrites).
        #[arg(long)]
        write: bool,
    },
    /// Run the pre-deploy audit gate.
    Audit {
        #[command(flatten)]
        common: Common,
    },
    /// Deploy HEAD to staging and run the smoke tests.
    Staging {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        skip_tests: bool,
        #[arg(long)]
        skip_security: bool,
        /// Approve a confirmation the gate asks for.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        confirmation: Option<String>,
    },
    /// Run the smoke tests against an environment.
    Smoke {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "staging", value_parser = parse_env)]
        env: Environment,
    },
    /// Promote to production (asks for confirmation unless --yes).
    Prod {
        #[command(flatten)]
        common: Common,
        /// Commit, tag or branch (default HEAD).
        #[arg(long)]
        version: Option<String>,
        #[arg(long, value_parser = parse_strategy)]
        strategy: Option<Strategy>,
        /// Do not roll back automatically when health fails.
        #[arg(long)]
        no_auto_rollback: bool,
        /// Ship without a verified staging run (flagged).
        #[arg(long)]
        direct: bool,
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        skip_security: bool,
        /// Approve without asking (the operator's yes).
        #[arg(long)]
        yes: bool,
        /// A token from an earlier confirmation_required answer.
        #[arg(long)]
        confirmation: Option<String>,
    },
    /// Check health (status + latency of every smoke URL).
    Health {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "production", value_parser = parse_env)]
        env: Environment,
    },
    /// Roll back to the previous (or a named) version.
    Rollback {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "production", value_parser = parse_env)]
        env: Environment,
        #[arg(long)]
        to_version: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// Show what runs where, in-flight runs and recent runs.
    Status {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_parser = parse_env)]
        env: Option<Environment>,
        #[arg(long)]
        run_id: Option<String>,
    },
    /// Read a skill's checkpoint and say how fresh it is.
    Checkpoint {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        skill: Option<String>,
    },
    /// Print the Markdown report of a run.
    Report {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        run_id: Option<String>,
        #[arg(long, value_parser = parse_kind)]
        kind: Option<ReportKind>,
    },
    /// List, set or unset an environment's variables and secrets on the platform.
    Env {
        #[command(flatten)]
        common: Common,
        /// list, set or unset.
        #[arg(value_parser = parse_env_action)]
        action: ops::EnvAction,
        #[arg(long, default_value = "staging", value_parser = parse_env)]
        env: Environment,
        /// The variable's name (set, unset).
        #[arg(long)]
        name: Option<String>,
        /// Where the value comes from: env:NAME or file:PATH (never the value itself).
        #[arg(long)]
        value_from: Option<String>,
        /// Approve a production change without asking (the operator's yes).
        #[arg(long)]
        yes: bool,
        /// A token from an earlier confirmation_required answer.
        #[arg(long)]
        confirmation: Option<String>,
    },
    /// Retry the deferred tracker writes in the checkpoint: "flushed N / failed M".
    RetryPm {
        #[command(flatten)]
        common: Common,
    },
    /// Run the whole pipeline on a built-in sample app, including an automatic rollback.
    Demo {
        /// Keep the sample project and its releases running afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// The local platform's releases and proxies.
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
    /// The built-in sample app (started by the local platform in the demo).
    #[command(hide = true)]
    SampleApp,
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Releases, proxies and the supervisor of this project.
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Stop every release, proxy and the supervisor of this project.
    Down {
        #[command(flatten)]
        common: Common,
    },
    #[command(hide = true)]
    Supervise {
        #[command(flatten)]
        common: Common,
    },
}

fn parse_env(s: &str) -> Result<Environment, String> {
    s.parse::<Environment>().map_err(|e| e.to_string())
}

fn parse_env_action(s: &str) -> Result<ops::EnvAction, String> {
    serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| format!("unknown action `{s}` (list, set, unset)"))
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("unknown platform `{s}` (local, cloudflare-workers, render, heroku, fly-io, shuttle, command)"))
}

fn parse_strategy(s: &str) -> Result<Strategy, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("unknown strategy `{s}` (rolling, blue-green, canary, recreate)"))
}

fn parse_kind(s: &str) -> Result<ReportKind, String> {
    serde_json::from_value(serde_json::Value::String(s.into())).map_err(|_| format!("unknown report kind `{s}` (deployment, incident)"))
}

fn main() {
    // Logs go to stderr: in stdio mode stdout belongs to the protocol.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_env("OC_DEPLOY_LOG").unwrap_or_else(|_| EnvFilter::new("warn,oc_deploy=info,deploy_core=info")),
        )
        .with_ansi(false)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(run(cli));
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    std::process::exit(code);
}

fn root_of(common: &Common) -> Result<PathBuf, i32> {
    default_root(common.project_dir.as_deref()).map_err(|e| {
        tracing::error!("project directory: {e}");
        EXIT_USAGE
    })
}

async fn run(cli: Cli) -> i32 {
    let redactor = Redactor::from_process_env();
    match cli.command {
        Command::Serve { common, http, token, allowed_hosts, allowed_origins, read_only, toolsets, auto_approve, session_idle_seconds } => {
            let root = match root_of(&common) {
                Ok(r) => r,
                Err(c) => return c,
            };
            let exe = std::env::current_exe().unwrap_or_else(|_| "oc-deploy".into());
            let root_from_flag = common.project_dir.is_some();
            if let Some(bad) = toolsets.iter().find(|t| !server::TOOLSETS.iter().any(|(name, _)| name == t)) {
                tracing::error!("unknown toolset `{bad}`: use pipeline, setup, records");
                return EXIT_USAGE;
            }
            // Over HTTP, sessions expire when idle: ping the client well within that while a run
            // is in flight. stdio sessions never expire.
            let heartbeat = http.map(|_| std::time::Duration::from_millis((session_idle_seconds.max(1) * 1000 / 3).max(300)));
            let shared = Shared::new(ServerOptions { root, exe, auto_approve, read_only, toolsets, root_from_flag, heartbeat });
            match http {
                None => serve_stdio(shared).await,
                Some(addr) => {
                    let hopts = http::HttpOptions {
                        addr,
                        token,
                        allowed_hosts,
                        allowed_origins,
                        session_keep_alive: std::time::Duration::from_secs(session_idle_seconds.max(1)),
                        ..http::HttpOptions::new(addr)
                    };
                    if let Err(msg) = http::check_bind(&hopts) {
                        tracing::error!("{msg}");
                        return EXIT_USAGE;
                    }
                    // On a signal, runs stop at a safe point and answer first; then the HTTP
                    // server closes its sessions and connections.
                    let http_stop = tokio_util::sync::CancellationToken::new();
                    let (s2, stop2) = (shared.clone(), http_stop.clone());
                    tokio::spawn(async move {
                        shutdown_signal().await;
                        s2.drain(std::time::Duration::from_secs(10)).await;
                        // Let the answers of cancelled runs reach their clients.
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        stop2.cancel();
                    });
                    let factory_shared = shared.clone();
                    let served = http::serve(hopts, move || Ok(OcDeploy::new(factory_shared.clone())), http_stop).await;
                    shared.drain(std::time::Duration::from_secs(10)).await;
                    match served {
                        Ok(()) => 0,
                        Err(e) => {
                            tracing::error!("http server: {e}");
                            1
                        }
                    }
                }
            }
        }
        Command::Init { common, platform, pack, write } => {
            with_root(&common, |root| async move {
                let ctx = cli::ctx(&root, false);
                emit(ops::init(&ctx, platform, pack.as_deref(), write).await, common.json, render::init, |_| 0, &redactor)
            })
            .await
        }
        Command::Audit { common } => {
            with_root(&common, |root| async move {
                let ctx = cli::ctx(&root, false);
                emit(
                    ops::audit(&ctx).await,
                    common.json,
                    render::gate,
                    |g| i32::from(g.decision == deploy_core::gate::Decision::Block),
                    &redactor,
                )
            })
            .await
        }
        Command::Staging { common, dry_run, skip_tests, skip_security, yes, confirmation } => {
            with_root(&common, |root| async move {
                let ctx = cli::ctx(&root, yes);
                let req =
                    ops::StagingRequest { dry_run, skip_tests, skip_security, answer: ops::Answer { confirmation, input_token: None } };
                emit(ops::deploy_staging(&ctx, req, &cli::TerminalConfirmer).await, common.json, render::run, run_exit, &redactor)
            })
            .await
        }
        Command::Smoke { common, env } => {
            with_root(&common, |root| async move {
                let ctx = cli::ctx(&root, false);
                emit(ops::smoke(&ctx, env).await, common.json, render::smoke, |o| i32::from(!o.passed), &redactor)
            })
            .await
        }
        Command::Prod { common, version, strategy, no_auto_rollback, direct, dry_run, skip_security, yes, confirmation } => {
            with_root(&common, |root| async move {
                let ctx = cli::ctx(&root, yes);
                let answer = ops::Answer { confirmation, input_token: None };
                let req = ops::ProdRequest { version, strategy, auto_rollback: !no_auto_rollback, direct, dry_run, skip_security, answer };
                emit(ops::deploy_prod(&ctx, req, &cli::TerminalConfirmer).await, common.json, render::run, run_exit, &redactor)
            })
            .await
        }
        Command::Health { common, env } => {
            with_root(&common, |root| async move {
                let ctx = cli::ctx(&root, false);
                emit(
                    ops::health(&ctx, env).await,
                    common.json,
                    render::health,
                    |h| i32::from(h.report.verdict == deploy_core::smoke::Verdict::Unhealthy),
                    &redactor,
                )
            })
            .await
        }
        Command::Rollback { common, env, to_version, reason } => {
            with_root(&common, |root| async move {
                let ctx = cli::ctx(&root, false);
                emit(
                    ops::rollback(&ctx, ops::RollbackRequest { env, to_version, reason }).await,
                    common.json,
                    render::run,
                    run_exit,
                    &redactor,
                )
            })
            .await
        }
        Command::Status { common, env, run_id } => {
            with_root(&common, |root| async move {
                let ctx = cli::ctx(&root, false);
                let id = match tools::args::run_id(run_id.as_deref()) {
                    Ok(id) => id,
                    Err(e) => return emit_error(&e, common.json, &redactor),
                };
                emit(ops::status(&ctx, env, id.as_ref()).await, common.json, render::status, |_| 0, &redactor)
            })
            .await
        }
        Command::Checkpoint { common, skill } => {
            with_root(&common, |root| async move {
                let ctx = cli::ctx(&root, false);
                emit(
                    ops::checkpoint(&ctx, skill.as_deref()),
                    common.json,
                    |o| {
                        format!(
                            "{}\n{}",
                            o.summary,
                            o.content.as_ref().map(|c| serde_json::to_string_pretty(c).unwrap_or_default()).unwrap_or_default()
                        )
                    },
                    |_| 0,
                    &redactor,
                )
            })
            .await
        }
        Command::Report { common, run_id, kind } => {
            with_root(&common, |root| async move {
                let ctx = cli::ctx(&root, false);
                let id = match tools::args::run_id(run_id.as_deref()) {
                    Ok(id) => id,
                    Err(e) => return emit_error(&e, common.json, &redactor),
                };
                emit(ops::report(&ctx, id.as_ref(), kind), common.json, |o| o.markdown.clone(), |_| 0, &redactor)
            })
            .await
        }
        Command::Env { common, action, env, name, value_from, yes, confirmation } => {
            with_root(&common, |root| async move {
                let ctx = cli::ctx(&root, yes);
                let req = ops::EnvRequest { env, action, name, value_from, answer: ops::Answer { confirmation, input_token: None } };
                let exit = |o: &ops::EnvOutcome| match o.status {
                    ops::EnvChangeStatus::Done => 0,
                    ops::EnvChangeStatus::ConfirmationRequired => 3,
                    ops::EnvChangeStatus::Declined | ops::EnvChangeStatus::Cancelled => 1,
                };
                emit(ops::env_vars(&ctx, req, &cli::TerminalConfirmer).await, common.json, render::env, exit, &redactor)
            })
            .await
        }
        Command::RetryPm { common } => {
            with_root(&common, |root| async move {
                emit(pm::retry_pm(&root).await, common.json, render::retry_pm, |r| i32::from(r.failed > 0), &redactor)
            })
            .await
        }
        Command::Demo { keep } => demo::run(keep).await,
        Command::Local { command } => local(command, &redactor).await,
        Command::SampleApp => match std::env::current_dir() {
            Ok(dir) => match sample_app::run(&dir).await {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("sample app: {e}");
                    1
                }
            },
            Err(e) => {
                tracing::error!("sample app: {e}");
                1
            }
        },
    }
}

async fn with_root<F, Fut>(common: &Common, f: F) -> i32
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = i32>,
{
    match root_of(common) {
        Ok(root) => f(root).await,
        Err(c) => c,
    }
}

async fn local(command: LocalCommand, redactor: &Redactor) -> i32 {
    let (common, which) = match command {
        LocalCommand::Status { common } => (common, 0),
        LocalCommand::Down { common } => (common, 1),
        LocalCommand::Supervise { common } => (common, 2),
    };
    let root = match root_of(&common) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let exe = std::env::current_exe().unwrap_or_else(|_| "oc-deploy".into());
    let platform = deploy_core::local::LocalPlatform::new(&root, exe, deploy_core::process::Runner::new(redactor.clone()));
    match which {
        0 => emit(platform.status().await, common.json, |s| serde_json::to_string_pretty(s).unwrap_or_default(), |_| 0, redactor),
        1 => emit(platform.down().await, common.json, |d| serde_json::to_string_pretty(d).unwrap_or_default(), |_| 0, redactor),
        _ => match deploy_core::local::run_supervisor(&root).await {
            Ok(()) => 0,
            Err(e) => emit_error(&e, false, redactor),
        },
    }
}

async fn serve_stdio(shared: std::sync::Arc<Shared>) -> i32 {
    use rmcp::ServiceExt;
    let server = OcDeploy::new(shared.clone());
    let code = match server.serve(rmcp::transport::stdio()).await {
        Ok(running) => {
            // The client closing stdin, or SIGTERM/Ctrl-C, ends the session.
            let ct = running.cancellation_token();
            tokio::select! {
                r = running.waiting() => match r {
                    Ok(_) => 0,
                    Err(e) => {
                        tracing::error!("stdio server: {e}");
                        1
                    }
                },
                _ = shutdown_signal() => {
                    // Runs answer first, then the session closes.
                    shared.drain(std::time::Duration::from_secs(10)).await;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    ct.cancel();
                    0
                }
            }
        }
        Err(e) => {
            tracing::error!("stdio handshake: {e}");
            1
        }
    };
    // Runs still going stop at a safe point and record it before the process exits.
    shared.drain(std::time::Duration::from_secs(10)).await;
    code
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
