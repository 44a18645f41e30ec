//! The streamable-HTTP transport: serves any rmcp server at `/mcp` behind the checks a network
//! endpoint needs (Host and Origin allow-lists, a bearer token, a body-size cap, a connection cap,
//! graceful shutdown) and answers `GET /healthz` for load balancers.
//!
//! Who checks what, in the order a request meets it:
//! - the listener caps open connections at `max_concurrent_requests` (HTTP/1.1 carries one request
//!   at a time per connection, so this bounds concurrent requests, streaming responses included)
//!   and sets `TCP_NODELAY` on each accepted socket;
//! - [`guard`] asks for the bearer token (when one is set) and refuses a declared body larger than
//!   `max_body_bytes` before reading it;
//! - rmcp's `StreamableHttpService` checks `Host` (DNS rebinding) and `Origin`, enforces the body
//!   cap again while streaming (for chunked uploads), and owns sessions.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// The environment variable that carries the bearer token (read by the CLI, named in errors).
pub const TOKEN_ENV: &str = "OC_DEPLOY_HTTP_TOKEN";

/// Default cap on a request body: MCP messages are small; 1 MiB leaves ample room.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Default idle lifetime of a session: longer than the longest deploy, so a client that waits on
/// a background run does not find its session gone.
pub const DEFAULT_SESSION_KEEP_ALIVE: Duration = Duration::from_secs(2 * 60 * 60);

/// Default cap on concurrent connections (and so on concurrent requests).
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 512;

/// How long shutdown waits for open responses after rmcp closed its sessions.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Browser origins served from this machine, always allowed: a local inspector or web client is
/// the user's own. Any other origin must be listed in [`HttpOptions::allowed_origins`].
const LOOPBACK_ORIGINS: &[&str] =
    &["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*", "https://localhost:*", "https://127.0.0.1:*", "https://[::1]:*"];

/// Host names that reach a loopback listener, always allowed.
const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// How the HTTP endpoint listens and whom it admits.
#[derive(Clone)]
pub struct HttpOptions {
    /// Where to listen; port 0 picks a free port (see [`bind`]).
    pub addr: SocketAddr,
    /// The bearer token required on `/mcp`; `None` or empty means no token (loopback only).
    pub token: Option<String>,
    /// Host names accepted in the `Host` header beyond the loopback names and the bind address
    /// (needed behind a proxy). `name` matches any port, `name:port` only that port.
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted beyond loopback ones, as `scheme://host[:port]`; `:*` matches any
    /// port. A request without an `Origin` header (a non-browser client) is always accepted.
    pub allowed_origins: Vec<String>,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long an idle session lives.
    pub session_keep_alive: Duration,
    /// Most connections served at once; further ones wait in the accept queue.
    pub max_concurrent_requests: usize,
}

impl HttpOptions {
    /// Options for `addr` with no token, no extra hosts or origins, and the default limits.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            token: None,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            session_keep_alive: DEFAULT_SESSION_KEEP_ALIVE,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
        }
    }

    /// The token, unless it is absent or blank (a blank token would admit anyone who sends
    /// `Bearer ` and so counts as none).
    fn effective_token(&self) -> Option<&str> {
        self.token.as_deref().filter(|t| !t.trim().is_empty())
    }
}

impl std::fmt::Debug for HttpOptions {
    // The token never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("addr", &self.addr)
            .field("token", &self.effective_token().map(|_| "****"))
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allowed_origins", &self.allowed_origins)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("session_keep_alive", &self.session_keep_alive)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .finish()
    }
}

/// Refuses a bind that would expose the server without a bearer token, and limits that cannot
/// serve anything. A loopback address needs no token: only this machine can connect.
pub fn check_bind(opts: &HttpOptions) -> Result<(), String> {
    if !opts.addr.ip().is_loopback() && opts.effective_token().is_none() {
        return Err(format!("refusing to listen on {} without a bearer token: pass --token or set {TOKEN_ENV}", opts.addr));
    }
    if opts.max_concurrent_requests == 0 {
        return Err("max_concurrent_requests must be at least 1".into());
    }
    if opts.max_body_bytes == 0 {
        return Err("max_body_bytes must be at least 1".into());
    }
    Ok(())
}

/// Checks the options, then binds `opts.addr`; returns the listener and the address it really
/// got, so that port 0 works and the caller learns the port before serving.
pub async fn bind(opts: &HttpOptions) -> io::Result<(TcpListener, SocketAddr)> {
    check_bind(opts).map_err(|msg| io::Error::new(io::ErrorKind::InvalidInput, msg))?;
    let listener =
        TcpListener::bind(opts.addr).await.map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", opts.addr)))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Binds `opts.addr` and serves until `shutdown` is cancelled. See [`serve_on`].
pub async fn serve<S, F>(opts: HttpOptions, factory: F, shutdown: CancellationToken) -> io::Result<()>
where
    F: Fn() -> Result<S, io::Error> + Send + Sync + 'static,
    S: rmcp::ServerHandler + Send + 'static,
{
    let (listener, _) = bind(&opts).await?;
    serve_on(listener, opts, factory, shutdown).await
}

/// Serves MCP at `/mcp` and `GET /healthz` on an already bound listener (from [`bind`]) until
/// `shutdown` is cancelled. `factory` builds one server per session.
///
/// On shutdown it stops accepting, closes every rmcp session (which ends their event streams),
/// lets answers in flight finish, and returns after at most [`DRAIN_TIMEOUT`] more.
pub async fn serve_on<S, F>(listener: TcpListener, opts: HttpOptions, factory: F, shutdown: CancellationToken) -> io::Result<()>
where
    F: Fn() -> Result<S, io::Error> + Send + Sync + 'static,
    S: rmcp::ServerHandler + Send + 'static,
{
    check_bind(&opts).map_err(|msg| io::Error::new(io::ErrorKind::InvalidInput, msg))?;
    let local = listener.local_addr()?;
    let app = router(&opts, local, factory, shutdown.child_token());
    tracing::info!("oc-deploy MCP endpoint: http://{local}/mcp");
    if opts.effective_token().is_some() {
        tracing::info!("a bearer token is required on /mcp");
    }
    if !local.ip().is_loopback() && opts.allowed_hosts.is_empty() {
        tracing::info!("clients that reach this server by a name other than {} need --allowed-hosts", local.ip());
    }

    let listener = CappedListener::new(listener, opts.max_concurrent_requests);
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()).into_future();
    tokio::select! {
        result = server => result,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } => {
            tracing::warn!("connections still open {} s after shutdown; closing them", DRAIN_TIMEOUT.as_secs());
            Ok(())
        }
    }
}

/// The routes: rmcp behind [`guard`] at `/mcp`, and an unguarded `/healthz`.
fn router<S, F>(opts: &HttpOptions, local: SocketAddr, factory: F, sessions_ct: CancellationToken) -> Router
where
    F: Fn() -> Result<S, io::Error> + Send + Sync + 'static,
    S: rmcp::ServerHandler + Send + 'static,
{
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_allowed_hosts(allowed_hosts(opts, local))
        .with_allowed_origins(allowed_origins(opts))
        .enforce_origin_validation()
        .with_max_request_body_bytes(opts.max_body_bytes)
        .with_cancellation_token(sessions_ct);
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(opts.session_keep_alive);
    let mcp = StreamableHttpService::new(factory, Arc::new(sessions), config);

    let guard_state = Arc::new(Guard {
        token_digest: opts.effective_token().map(|t| Sha256::digest(t.as_bytes()).to_vec()),
        max_body_bytes: opts.max_body_bytes,
    });
    Router::new()
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(guard_state, guard))
        .merge(Router::new().route("/healthz", get(|| async { "ok" })))
}

/// Loopback names, the bound address, and the operator's extra names. rmcp matches an entry
/// without a port against any port, so the bare names cover every port.
fn allowed_hosts(opts: &HttpOptions, local: SocketAddr) -> Vec<String> {
    let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| (*h).to_string()).collect();
    let extra = std::iter::once(local.ip().to_string()).chain(opts.allowed_hosts.iter().map(|h| h.trim().to_string()));
    for host in extra {
        if !host.is_empty() && !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts
}

/// Loopback origins plus the operator's extra ones.
fn allowed_origins(opts: &HttpOptions) -> Vec<String> {
    let mut origins: Vec<String> = LOOPBACK_ORIGINS.iter().map(|o| (*o).to_string()).collect();
    origins.extend(opts.allowed_origins.iter().map(|o| o.trim().to_string()).filter(|o| !o.is_empty()));
    origins
}

/// What [`guard`] checks: the SHA-256 of the token (hashing first makes the comparison take the
/// same time whatever the length of the guess) and the body cap.
struct Guard {
    token_digest: Option<Vec<u8>>,
    max_body_bytes: usize,
}

/// Asks for the bearer token, then refuses a body whose declared length is over the cap without
/// reading it.
async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    if let Some(expected) = &g.token_digest {
        let presented = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
        match presented {
            None => return unauthorized("Bearer realm=\"oc-deploy\"", "Unauthorized: send Authorization: Bearer <token>"),
            Some(token) if !same_digest(&Sha256::digest(token.as_bytes()), expected) => {
                return unauthorized("Bearer realm=\"oc-deploy\", error=\"invalid_token\"", "Unauthorized: wrong bearer token");
            }
            Some(_) => {}
        }
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > g.max_body_bytes as u64) {
        return (StatusCode::PAYLOAD_TOO_LARGE, format!("Payload Too Large: request body exceeds {} bytes", g.max_body_bytes))
            .into_response();
    }
    next.run(req).await
}

/// The credentials of `Bearer <token>`; the scheme name is case-insensitive (RFC 9110 §11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares two digests without an early exit, so timing reveals nothing about the token.
fn same_digest(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(challenge: &'static str, message: &'static str) -> Response {
    let mut resp = (StatusCode::UNAUTHORIZED, message).into_response();
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    resp
}

/// A TCP listener that holds one semaphore permit per open connection, so at most `limit`
/// connections are served at once; the rest wait in the kernel's accept queue. It also sets
/// `TCP_NODELAY`: without it, small SSE writes meet delayed ACKs and every call costs ~40 ms.
struct CappedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    limit: usize,
}

impl CappedListener {
    fn new(inner: TcpListener, limit: usize) -> Self {
        Self { inner, permits: Arc::new(Semaphore::new(limit)), limit }
    }
}

impl axum::serve::Listener for CappedListener {
    type Io = CappedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tracing::warn!("{} connections open (the limit): new connections wait", self.limit);
                match self.permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    // The semaphore is never closed; if it were, accepting nothing is the safe answer.
                    Err(_) => return std::future::pending().await,
                }
            }
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!("cannot set TCP_NODELAY on a connection from {addr}: {e}");
                    }
                    return (CappedStream { stream, _permit: permit }, addr);
                }
                // A peer that gave up before we accepted: nothing to do.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
                    ) => {}
                // Out of file descriptors and the like: back off instead of spinning.
                Err(e) => {
                    tracing::error!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection; dropping it returns its permit.
struct CappedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for CappedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rmcp::handler::server::router::tool::ToolRouter;
    use rmcp::handler::server::wrapper::Parameters;
    use rmcp::{ServerHandler, tool, tool_handler, tool_router};
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::task::JoinHandle;

    /// The smallest useful MCP server: one tool.
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

        #[tool(description = "Send the text back")]
        async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
            args.text
        }
    }

    #[tool_handler(router = self.tool_router, name = "t", version = "0.0.1")]
    impl ServerHandler for Echo {}

    /// A server on a free loopback port, shut down when dropped.
    struct TestServer {
        addr: SocketAddr,
        shutdown: CancellationToken,
        task: Option<JoinHandle<io::Result<()>>>,
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.shutdown.cancel();
        }
    }

    async fn start(tweak: impl FnOnce(&mut HttpOptions)) -> TestServer {
        let mut opts = HttpOptions::new("127.0.0.1:0".parse().unwrap());
        tweak(&mut opts);
        let (listener, addr) = bind(&opts).await.unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_on(listener, opts, || Ok(Echo::new()), shutdown.clone()));
        TestServer { addr, shutdown, task: Some(task) }
    }

    /// An HTTP/1.1 response as the client saw it.
    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }

        /// The JSON-RPC message in the body: the whole body for JSON, the first `data:` line that
        /// holds one for an event stream.
        fn message(&self) -> Value {
            if let Ok(v) = serde_json::from_str::<Value>(&self.body) {
                return v;
            }
            sse_message(&self.body).unwrap_or_else(|| panic!("no JSON-RPC message in {self:?}"))
        }
    }

    fn sse_message(body: &str) -> Option<Value> {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("jsonrpc").is_some())
    }

    const ACCEPT_BOTH: (&str, &str) = ("Accept", "application/json, text/event-stream");

    fn initialize_body() -> String {
        json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "raw-test", "version": "0" } }
        })
        .to_string()
    }

    /// Writes one request on a new connection (`Connection: close`) and reads the response.
    /// `Host` defaults to the server's address unless `headers` names one.
    async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\n");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            req.push_str(&format!("Host: {addr}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()));
        stream.write_all(req.as_bytes()).await.unwrap();
        read_reply(&mut stream).await
    }

    /// Reads one response: by `Content-Length`, by chunks, or to EOF; an event stream is read
    /// until it carries a JSON-RPC message, since a session stream may stay open.
    async fn read_reply(stream: &mut TcpStream) -> Reply {
        tokio::time::timeout(Duration::from_secs(5), read_reply_inner(stream)).await.expect("no complete response within 5 s")
    }

    async fn read_reply_inner(stream: &mut TcpStream) -> Reply {
        let mut raw = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the response head: {:?}", String::from_utf8_lossy(&raw));
            raw.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> =
            lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
        let get = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let chunked = get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let length: Option<usize> = get("content-length").map(|v| v.parse().unwrap());
        let is_sse = get("content-type").is_some_and(|v| v.starts_with("text/event-stream"));
        let mut body_raw = raw[head_end + 4..].to_vec();
        loop {
            let (body, complete) =
                if chunked { decode_chunked(&body_raw) } else { (body_raw.clone(), length.is_some_and(|n| body_raw.len() >= n)) };
            let text = String::from_utf8_lossy(&body).to_string();
            if complete || (is_sse && sse_message(&text).is_some()) {
                return Reply { status, headers, body: text };
            }
            let n = stream.read(&mut chunk).await.unwrap();
            if n == 0 {
                return Reply { status, headers, body: text };
            }
            body_raw.extend_from_slice(&chunk[..n]);
        }
    }

    /// Decodes as much of a chunked body as has arrived; `true` once the last chunk is in.
    fn decode_chunked(mut raw: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        loop {
            let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else { return (out, false) };
            let size_text = String::from_utf8_lossy(&raw[..eol]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                return (out, true);
            }
            let start = eol + 2;
            if raw.len() < start + size + 2 {
                out.extend_from_slice(&raw[start..raw.len().min(start + size)]);
                return (out, false);
            }
            out.extend_from_slice(&raw[start..start + size]);
            raw = &raw[start + size + 2..];
        }
    }

    async fn initialize(addr: SocketAddr, extra: &[(&str, &str)]) -> Reply {
        let mut headers = vec![ACCEPT_BOTH];
        headers.extend_from_slice(extra);
        send(addr, "POST", "/mcp", &headers, &initialize_body()).await
    }

    #[tokio::test]
    async fn a_client_initializes_lists_and_calls_a_tool_over_http() {
        let server = start(|_| {}).await;
        let init = initialize(server.addr, &[]).await;
        assert_eq!(init.status, 200, "{init:?}");
        let session = init.header("mcp-session-id").expect("a session id").to_string();
        let msg = init.message();
        assert_eq!(msg["result"]["serverInfo"]["name"], "t", "{msg}");
        assert_eq!(msg["result"]["protocolVersion"], "2025-06-18");

        let sid = ("Mcp-Session-Id", session.as_str());
        let pv = ("MCP-Protocol-Version", "2025-06-18");
        let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }).to_string();
        let ack = send(server.addr, "POST", "/mcp", &[ACCEPT_BOTH, sid, pv], &initialized).await;
        assert_eq!(ack.status, 202, "{ack:?}");

        let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }).to_string();
        let tools = send(server.addr, "POST", "/mcp", &[ACCEPT_BOTH, sid, pv], &list).await;
        assert_eq!(tools.status, 200, "{tools:?}");
        assert_eq!(tools.message()["result"]["tools"][0]["name"], "echo", "{tools:?}");

        let call = json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": { "name": "echo", "arguments": { "text": "hello over http" } } });
        let called = send(server.addr, "POST", "/mcp", &[ACCEPT_BOTH, sid, pv], &call.to_string()).await;
        assert_eq!(called.status, 200, "{called:?}");
        assert_eq!(called.message()["result"]["content"][0]["text"], "hello over http", "{called:?}");
    }

    #[tokio::test]
    async fn an_unknown_session_id_is_404() {
        let server = start(|_| {}).await;
        let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }).to_string();
        let reply = send(server.addr, "POST", "/mcp", &[ACCEPT_BOTH, ("Mcp-Session-Id", "no-such-session")], &list).await;
        assert_eq!(reply.status, 404, "{reply:?}");
    }

    #[tokio::test]
    async fn a_foreign_host_is_refused_and_an_allowed_one_admitted() {
        let server = start(|o| o.allowed_hosts = vec!["mcp.example.com".into()]).await;
        let evil = initialize(server.addr, &[("Host", "evil.example.com")]).await;
        assert_eq!(evil.status, 403, "DNS rebinding must be refused: {evil:?}");
        assert!(evil.body.contains("Host"), "{evil:?}");
        let port = server.addr.port().to_string();
        for host in ["mcp.example.com", "mcp.example.com:443", &format!("localhost:{port}"), &format!("127.0.0.1:{port}")] {
            let ok = initialize(server.addr, &[("Host", host)]).await;
            assert_eq!(ok.status, 200, "Host {host}: {ok:?}");
        }
    }

    #[tokio::test]
    async fn a_foreign_origin_is_403_and_loopback_or_listed_origins_pass() {
        let server = start(|o| o.allowed_origins = vec!["https://app.example.com:443".into()]).await;
        let evil = initialize(server.addr, &[("Origin", "https://evil.example.com")]).await;
        assert_eq!(evil.status, 403, "{evil:?}");
        let null = initialize(server.addr, &[("Origin", "null")]).await;
        assert_eq!(null.status, 403, "a sandboxed page's Origin: null is not loopback: {null:?}");
        for origin in ["http://localhost:5173", "http://127.0.0.1:6274", "http://[::1]:3000", "https://app.example.com"] {
            let ok = initialize(server.addr, &[("Origin", origin)]).await;
            assert_eq!(ok.status, 200, "Origin {origin}: {ok:?}");
        }
    }

    #[tokio::test]
    async fn with_a_token_set_only_the_right_bearer_token_gets_in() {
        let server = start(|o| o.token = Some("s3cret-token".into())).await;
        let missing = initialize(server.addr, &[]).await;
        assert_eq!(missing.status, 401, "{missing:?}");
        assert!(missing.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{missing:?}");
        let wrong = initialize(server.addr, &[("Authorization", "Bearer s3cret-tokem")]).await;
        assert_eq!(wrong.status, 401, "{wrong:?}");
        assert!(wrong.header("www-authenticate").is_some_and(|v| v.contains("invalid_token")), "{wrong:?}");
        let prefix = initialize(server.addr, &[("Authorization", "Bearer s3cret")]).await;
        assert_eq!(prefix.status, 401, "a prefix of the token is not the token: {prefix:?}");
        let basic = initialize(server.addr, &[("Authorization", "Basic czNjcmV0LXRva2Vu")]).await;
        assert_eq!(basic.status, 401, "{basic:?}");
        let right = initialize(server.addr, &[("Authorization", "Bearer s3cret-token")]).await;
        assert_eq!(right.status, 200, "{right:?}");
        assert_eq!(right.message()["result"]["serverInfo"]["name"], "t");
        let lower = initialize(server.addr, &[("Authorization", "bearer s3cret-token")]).await;
        assert_eq!(lower.status, 200, "the scheme name is case-insensitive: {lower:?}");
        let health = send(server.addr, "GET", "/healthz", &[], "").await;
        assert_eq!(health.status, 200, "load balancers probe /healthz without a token: {health:?}");
    }

    #[tokio::test]
    async fn an_empty_token_means_no_token() {
        let server = start(|o| o.token = Some("  ".into())).await;
        let reply = initialize(server.addr, &[]).await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }

    #[tokio::test]
    async fn an_oversized_body_is_413_whether_declared_or_streamed() {
        let server = start(|o| o.max_body_bytes = 1024).await;
        let big = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping", "params": { "pad": "x".repeat(4096) } }).to_string();
        let declared = send(server.addr, "POST", "/mcp", &[ACCEPT_BOTH], &big).await;
        assert_eq!(declared.status, 413, "{declared:?}");

        // A chunked upload declares no length; rmcp counts while reading.
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST /mcp HTTP/1.1\r\nHost: {}\r\nAccept: application/json, text/event-stream\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            server.addr
        );
        let body = format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len());
        stream.write_all(format!("{head}{body}").as_bytes()).await.unwrap();
        let streamed = read_reply(&mut stream).await;
        assert_eq!(streamed.status, 413, "{streamed:?}");

        let small = initialize(server.addr, &[]).await;
        assert_eq!(small.status, 200, "a body under the limit passes: {small:?}");
    }

    #[tokio::test]
    async fn healthz_answers_ok_and_other_paths_404() {
        let server = start(|_| {}).await;
        let health = send(server.addr, "GET", "/healthz", &[], "").await;
        assert_eq!((health.status, health.body.as_str()), (200, "ok"));
        let other = send(server.addr, "GET", "/nope", &[], "").await;
        assert_eq!(other.status, 404, "{other:?}");
    }

    #[test]
    fn check_bind_refuses_a_public_address_without_a_token() {
        let mut opts = HttpOptions::new("0.0.0.0:8080".parse().unwrap());
        assert_eq!(
            check_bind(&opts).unwrap_err(),
            "refusing to listen on 0.0.0.0:8080 without a bearer token: pass --token or set OC_DEPLOY_HTTP_TOKEN"
        );
        opts.token = Some(String::new());
        assert!(check_bind(&opts).is_err(), "an empty token counts as none");
        opts.token = Some("   ".into());
        assert!(check_bind(&opts).is_err(), "a blank token counts as none");
        opts.token = Some("t0ken".into());
        assert_eq!(check_bind(&opts), Ok(()));

        for loopback in ["127.0.0.1:8080", "[::1]:8080", "127.0.0.2:0"] {
            assert_eq!(check_bind(&HttpOptions::new(loopback.parse().unwrap())), Ok(()), "{loopback}");
        }
        let public_v6 = HttpOptions::new("[::]:8080".parse().unwrap());
        assert!(check_bind(&public_v6).unwrap_err().contains("[::]:8080"));

        let mut zero = HttpOptions::new("127.0.0.1:0".parse().unwrap());
        zero.max_concurrent_requests = 0;
        assert!(check_bind(&zero).unwrap_err().contains("max_concurrent_requests"));
    }

    #[tokio::test]
    async fn bind_refuses_before_listening_and_reports_the_real_port() {
        let err = bind(&HttpOptions::new("0.0.0.0:0".parse().unwrap())).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("without a bearer token"), "{err}");
        let (_listener, addr) = bind(&HttpOptions::new("127.0.0.1:0".parse().unwrap())).await.unwrap();
        assert_ne!(addr.port(), 0);
    }

    #[test]
    fn allowed_hosts_are_loopback_the_bind_address_and_the_extras_once_each() {
        let mut opts = HttpOptions::new("0.0.0.0:8080".parse().unwrap());
        opts.allowed_hosts = vec![" mcp.example.com ".into(), String::new(), "localhost".into(), "mcp.example.com:8443".into()];
        let hosts = allowed_hosts(&opts, "10.1.2.3:8080".parse().unwrap());
        assert_eq!(hosts, ["localhost", "127.0.0.1", "::1", "10.1.2.3", "mcp.example.com", "mcp.example.com:8443"]);
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let mut opts = HttpOptions::new("127.0.0.1:1".parse().unwrap());
        opts.token = Some("super-secret-value".into());
        let shown = format!("{opts:?}");
        assert!(!shown.contains("super-secret-value") && shown.contains("****"), "{shown}");
    }

    #[test]
    fn bearer_parsing_and_digest_comparison() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER   abc  "), Some("abc"));
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("Basic abc"), None);
        assert!(same_digest(b"abc", b"abc"));
        assert!(!same_digest(b"abc", b"abd"));
        assert!(!same_digest(b"abc", b"ab"));
    }

    #[tokio::test]
    async fn accepted_sockets_get_tcp_nodelay() {
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = inner.local_addr().unwrap();
        let mut listener = CappedListener::new(inner, 2);
        let _client = TcpStream::connect(addr).await.unwrap();
        let (io, _) = axum::serve::Listener::accept(&mut listener).await;
        assert!(io.stream.nodelay().unwrap());
    }

    #[tokio::test]
    async fn connections_over_the_limit_wait_for_a_free_slot() {
        let server = start(|o| o.max_concurrent_requests = 1).await;
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
        // The first connection is served and then kept open (keep-alive), holding the only slot.
        let mut first = TcpStream::connect(server.addr).await.unwrap();
        first.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(read_reply(&mut first).await.status, 200);

        let mut second = TcpStream::connect(server.addr).await.unwrap();
        second.write_all(request.as_bytes()).await.unwrap();
        let mut byte = [0u8; 1];
        let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut byte)).await;
        assert!(early.is_err(), "the second connection must wait while the first holds the slot");

        drop(first);
        let reply = read_reply(&mut second).await;
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
    }

    #[tokio::test]
    async fn shutdown_closes_open_session_streams_and_returns() {
        let mut server = start(|_| {}).await;
        let init = initialize(server.addr, &[]).await;
        let session = init.header("mcp-session-id").unwrap().to_string();
        let pv = ("MCP-Protocol-Version", "2025-06-18");
        let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }).to_string();
        let sid = ("Mcp-Session-Id", session.as_str());
        assert_eq!(send(server.addr, "POST", "/mcp", &[ACCEPT_BOTH, sid, pv], &initialized).await.status, 202);

        // The standing GET event stream a client keeps open for server-initiated messages.
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let get = format!(
            "GET /mcp HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nMcp-Session-Id: {session}\r\nMCP-Protocol-Version: 2025-06-18\r\n\r\n",
            server.addr
        );
        stream.write_all(get.as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));

        let started = std::time::Instant::now();
        server.shutdown.cancel();
        let task = server.task.take().unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), task).await.expect("serve returns promptly after shutdown");
        result.unwrap().unwrap();
        assert!(started.elapsed() < DRAIN_TIMEOUT, "sessions closed, so no waiting for the drain timeout");
        assert!(TcpStream::connect(server.addr).await.is_err(), "no longer listening");
    }
}
