//! `echo-baseline`: the smallest useful rmcp server, one `echo` tool, used by `bench/run.py` as the
//! yardstick for oc-deploy. It serves stdio by default and streamable HTTP at `/mcp` with
//! `--http ADDR`, using the same transport setup as oc-deploy (stateful sessions, axum 0.8,
//! `TCP_NODELAY` on accepted sockets), so that the difference the bench measures is oc-deploy's
//! own work and not a transport setting.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use axum::serve::ListenerExt;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};

/// The server: a stored router, so a call does not rebuild it (the macro default would).
#[derive(Clone)]
struct Echo {
    tool_router: ToolRouter<Self>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// The text to send back.
    text: String,
}

#[tool_router]
impl Echo {
    fn new() -> Self {
        Self { tool_router: Self::tool_router() }
    }

    /// Sends the text back unchanged.
    #[tool(description = "Send the text back")]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        args.text
    }
}

// `name` and `version` are set so that serverInfo says "echo-baseline" rather than rmcp's own.
#[tool_handler(router = self.tool_router, name = "echo-baseline", version = "0.1.0")]
impl ServerHandler for Echo {}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let http = match args.as_slice() {
        [] => None,
        [flag, addr] if flag == "--http" => match addr.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                eprintln!("echo-baseline: --http {addr}: {e}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: echo-baseline [--http ADDR]");
            return ExitCode::from(2);
        }
    };
    // The same runtime oc-deploy builds: multi-threaded, IO and timers enabled.
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("echo-baseline: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match http {
            None => serve_stdio().await,
            Some(addr) => serve_http(addr).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo-baseline: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves one session on stdin/stdout until stdin closes.
async fn serve_stdio() -> Result<(), Box<dyn std::error::Error>> {
    let service = Echo::new().serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}

/// Serves streamable HTTP at `/mcp` until SIGINT or SIGTERM (the bench sends SIGTERM).
async fn serve_http(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let config = StreamableHttpServerConfig::default().with_legacy_session_mode(true);
    let service = StreamableHttpService::new(|| Ok(Echo::new()), Arc::new(LocalSessionManager::default()), config);
    let app = axum::Router::new().nest_service("/mcp", service);
    // Without TCP_NODELAY, small SSE writes meet delayed ACKs and every call costs ~40 ms.
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("echo-baseline MCP endpoint: http://{}/mcp", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("echo-baseline: cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM, so a polite stop closes sessions cleanly.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        // Without a SIGTERM handler, SIGTERM keeps its default action (exit) and Ctrl-C still
        // stops the server gracefully.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
