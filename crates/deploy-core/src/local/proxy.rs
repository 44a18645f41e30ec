//! One environment's reverse proxy: it listens on the environment's stable port and sends each
//! request to the release the routing table names (with a canary share, if set), streaming
//! bodies both ways and tagging every answer with `x-oc-deploy-version`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::domain::Environment;
use crate::error::{CoreError, Result};

/// The response header naming the release that answered.
pub(crate) const VERSION_HEADER: &str = "x-oc-deploy-version";

/// How long a closing proxy waits for in-flight requests before it drops them.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Headers that describe one connection, not the message: never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The HTTP client the proxies use to reach releases (pooled keep-alive connections).
pub(crate) type Upstream = Client<HttpConnector, Body>;

pub(crate) fn upstream_client() -> Upstream {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// A release the proxy can send traffic to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub version: String,
    pub port: u16,
}

/// Where an environment's traffic goes. Swapped whole under a write lock, so a switch is
/// atomic: every request sees either the old table or the new one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routing {
    pub active: Option<Target>,
    /// A second release and the percentage of requests it gets.
    pub canary: Option<(Target, u8)>,
}

pub(crate) type SharedRouting = Arc<RwLock<Routing>>;

struct ProxyState {
    env: Environment,
    routing: SharedRouting,
    upstream: Upstream,
    /// Counts requests, to spread the canary share evenly.
    requests: AtomicU64,
}

/// A listening proxy; [`ProxyHandle::close`] frees its port.
#[derive(Debug)]
pub(crate) struct ProxyHandle {
    pub port: u16,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ProxyHandle {
    pub(crate) async fn close(self) {
        self.cancel.cancel();
        let mut task = self.task;
        if tokio::time::timeout(CLOSE_GRACE, &mut task).await.is_err() {
            // A client holding a long request open must not keep the port bound.
            task.abort();
            let _ = task.await;
        }
    }
}

/// Binds `127.0.0.1:<port>` and serves the environment's traffic from `routing`.
pub(crate) async fn bind(env: Environment, port: u16, routing: SharedRouting, upstream: Upstream) -> Result<ProxyHandle> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            CoreError::Local {
                message: format!("port {port} (environments.{env}.port) is already taken by another program, so the {env} proxy cannot listen on it"),
                hint: format!("stop the program listening on 127.0.0.1:{port} (`ss -ltnp 'sport = :{port}'` names it), or choose a free port in environments.{env}.port of .oc-deploy-ops.json"),
            }
        } else {
            CoreError::io(format!("binding the {env} proxy to 127.0.0.1:{port}"), e)
        }
    })?;
    let state = Arc::new(ProxyState { env, routing, upstream, requests: AtomicU64::new(0) });
    let app = axum::Router::new().fallback(forward).with_state(state);
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        let serve =
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!(%env, port, error = %e, "proxy stopped");
        }
    });
    tracing::info!(%env, port, "proxy listening");
    Ok(ProxyHandle { port, cancel, task })
}

/// Picks the release for request number `n`: a canary of `w` percent gets request `n` exactly
/// when `⌊(n+1)·w/100⌋` steps up, which spreads its share evenly instead of in bursts.
fn choose(routing: &Routing, n: u64) -> Option<Target> {
    if let Some((canary, weight)) = &routing.canary {
        let w = u64::from(*weight);
        if (n + 1) * w / 100 > n * w / 100 {
            return Some(canary.clone());
        }
    }
    routing.active.clone()
}

async fn forward(State(state): State<Arc<ProxyState>>, ConnectInfo(client): ConnectInfo<SocketAddr>, req: Request) -> Response {
    let n = state.requests.fetch_add(1, Ordering::Relaxed);
    let target = match state.routing.read() {
        Ok(r) => choose(&r, n),
        Err(poisoned) => choose(&poisoned.into_inner(), n),
    };
    let Some(target) = target else {
        let command = match state.env {
            Environment::Staging => "oc-deploy staging",
            Environment::Production => "oc-deploy prod",
        };
        return (StatusCode::SERVICE_UNAVAILABLE, format!("no release is live in {}; run {command}\n", state.env)).into_response();
    };

    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match format!("http://127.0.0.1:{}{path}", target.port).parse::<Uri>() {
        Ok(u) => u,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("bad request target: {e}\n")).into_response(),
    };
    parts.version = Version::HTTP_11;
    let host = parts.headers.get(header::HOST).cloned();
    strip_hop_by_hop(&mut parts.headers);
    add_forwarded(&mut parts.headers, client, host);

    let mut response = match state.upstream.request(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            tracing::warn!(env = %state.env, version = %target.version, port = target.port, error = %e, "release did not answer");
            let text = format!("release {} of {} did not answer on port {}: {e}\n", target.version, state.env, target.port);
            (StatusCode::BAD_GATEWAY, text).into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&target.version) {
        response.headers_mut().insert(HeaderName::from_static(VERSION_HEADER), v);
    }
    response
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // `Connection` may name more per-connection headers.
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for name in HOP_BY_HOP.iter().copied().chain(named.iter().map(String::as_str)) {
        headers.remove(name);
    }
}

fn add_forwarded(headers: &mut HeaderMap, client: SocketAddr, host: Option<HeaderValue>) {
    let ip = client.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip}"),
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("http"));
    }
    if let Some(h) = host
        && !headers.contains_key("x-forwarded-host")
    {
        headers.insert(HeaderName::from_static("x-forwarded-host"), h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &str) -> Target {
        Target { version: v.into(), port: 1 }
    }

    #[test]
    fn canary_share_is_exact_and_spread() {
        let routing = Routing { active: Some(t("old")), canary: Some((t("new"), 25)) };
        let picks: Vec<String> = (0..100).map(|n| choose(&routing, n).unwrap().version).collect();
        assert_eq!(picks.iter().filter(|v| *v == "new").count(), 25);
        // Never two canary requests in a row at 25 %.
        assert!(picks.windows(2).all(|w| !(w[0] == "new" && w[1] == "new")));
        let none = Routing::default();
        assert_eq!(choose(&none, 0), None);
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }
}
