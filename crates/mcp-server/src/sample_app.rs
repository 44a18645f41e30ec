//! The demo's sample app, built into this binary and started by the local platform as the hidden
//! `oc-deploy sample-app` inside a release directory: a small web app that reports the version and
//! environment it was started with, and fails its health check in the environments `sample.json`
//! names, which is how the demo ships a release that passes staging but fails in production.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;

/// The port to listen on, on 127.0.0.1 (set by the local platform).
pub const PORT_ENV: &str = "PORT";
/// The environment the release runs in (`staging`, `production`; set by the local platform).
pub const ENV_ENV: &str = "OC_DEPLOY_ENV";
/// The version (short commit SHA) of the release (set by the local platform).
pub const VERSION_ENV: &str = "OC_DEPLOY_VERSION";

/// The file in the release directory that says in which environments `/health` fails.
pub const BEHAVIOUR_FILE: &str = "sample.json";

/// The files the demo writes into its sample project (the demo adds `.oc-deploy-ops.json`).
pub const SAMPLE_FILES: &[(&str, &str)] = &[("README.md", README), (BEHAVIOUR_FILE, "{ \"fail_in\": [] }\n"), (".gitignore", GITIGNORE)];

const README: &str = "\
# sample-shop

The sample app of `oc-deploy demo`. The app itself is built into `oc-deploy` (its hidden
`sample-app` command); this project holds what a real project would: the deploy config
(`.oc-deploy-ops.json`) and the app's behaviour file.

The local platform starts one process per release, in the release's own directory, with
`PORT`, `OC_DEPLOY_ENV` and `OC_DEPLOY_VERSION` set. The app serves:

- `GET /` — an HTML page naming the version and the environment;
- `GET /health` — liveness: `{\"status\":\"ok\",\"version\":…,\"env\":…}`, or 503
  `{\"status\":\"failing\",…}` when `sample.json` lists the current environment under `unready_in`;
- `GET /api/items` — a JSON list of three items, or 500 when `sample.json` lists the current
  environment under `fail_in` (as a feature missing a production-only secret would).

`sample.json`: `{ \"fail_in\": [\"production\"] }` makes a release that starts, passes staging, and
breaks in production once it takes traffic, so the pipeline rolls it back automatically.
";

const GITIGNORE: &str = "\
# The local platform's releases, logs and state.
/.oc-deploy/
*.log
";

/// What the app was started as.
struct App {
    dir: PathBuf,
    env: String,
    version: String,
}

/// Reads `PORT`, `OC_DEPLOY_ENV` and `OC_DEPLOY_VERSION`, listens on 127.0.0.1:`PORT` and serves
/// until SIGTERM or SIGINT. `dir` is the release directory, where `sample.json` lives.
pub async fn run(dir: &Path) -> io::Result<()> {
    let port = port_from(std::env::var(PORT_ENV).ok().as_deref())?;
    let env = std::env::var(ENV_ENV).unwrap_or_else(|_| "development".into());
    let version = std::env::var(VERSION_ENV).unwrap_or_else(|_| "unknown".into());
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = TcpListener::bind(addr).await.map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    tracing::info!("sample app {version} ({env}) listening on http://{addr}");
    serve(listener, dir.to_path_buf(), env, version, termination()).await
}

/// Parses `PORT`; the error says what was wrong, since the operator sees it in the release log.
fn port_from(value: Option<&str>) -> io::Result<u16> {
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
    let raw = value.ok_or_else(|| invalid(format!("{PORT_ENV} is not set: the sample app needs the port to listen on")))?;
    match raw.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(invalid(format!("{PORT_ENV}={raw:?} is not a port number (1-65535)"))),
        Ok(port) => Ok(port),
    }
}

/// Serves the app on `listener` until `shutdown` completes. Tests call this directly.
pub async fn serve(
    listener: TcpListener,
    dir: PathBuf,
    env: String,
    version: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = Arc::new(App { dir, env, version });
    let router = Router::new().route("/", get(home)).route("/health", get(health)).route("/api/items", get(items)).with_state(app);
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}

async fn home(State(app): State<Arc<App>>) -> Html<String> {
    let (version, env) = (escape_html(&app.version), escape_html(&app.env));
    Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>oc-deploy sample app</title></head>\n\
         <body><h1>oc-deploy sample app</h1>\n<p>version {version}, environment {env}</p>\n</body></html>\n"
    ))
}

async fn health(State(app): State<Arc<App>>) -> Response {
    match failure_reason(&app.dir, &app.env, Fault::Unready) {
        None => axum::Json(json!({ "status": "ok", "version": app.version, "env": app.env })).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "failing", "reason": reason, "version": app.version, "env": app.env })),
        )
            .into_response(),
    }
}

async fn items(State(app): State<Arc<App>>) -> Response {
    if let Some(reason) = failure_reason(&app.dir, &app.env, Fault::Feature) {
        return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({ "error": reason, "version": app.version }))).into_response();
    }
    axum::Json(json!([
        { "id": 1, "name": "teapot", "price_cents": 1800 },
        { "id": 2, "name": "kettle", "price_cents": 3200 },
        { "id": 3, "name": "mug", "price_cents": 900 },
    ]))
    .into_response()
}

/// Which part of the app `sample.json` breaks.
#[derive(Clone, Copy)]
enum Fault {
    /// `/health` answers 503: the release never becomes ready.
    Unready,
    /// `/api/items` answers 500: the release is live but broken.
    Feature,
}

/// `sample.json`'s shape: `fail_in` lists environment names, or names one as a plain string.
#[derive(Deserialize)]
struct Behaviour {
    #[serde(default)]
    fail_in: FailIn,
    #[serde(default)]
    unready_in: FailIn,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum FailIn {
    #[default]
    Nowhere,
    One(String),
    Many(Vec<String>),
}

impl FailIn {
    fn contains(&self, env: &str) -> bool {
        match self {
            FailIn::Nowhere => false,
            FailIn::One(name) => name.trim() == env,
            FailIn::Many(names) => names.iter().any(|n| n.trim() == env),
        }
    }
}

/// Why this part of the app fails in `env`, or `None` when it works. Read on every request, so
/// the answer follows the file. A missing file means healthy; an unreadable or malformed one
/// fails everything, as a broken config would in a real app.
fn failure_reason(dir: &Path, env: &str, fault: Fault) -> Option<String> {
    let path = dir.join(BEHAVIOUR_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(format!("cannot read {BEHAVIOUR_FILE}: {e}")),
    };
    match serde_json::from_str::<Behaviour>(&text) {
        Ok(b) => {
            let listed = match fault {
                Fault::Unready => b.unready_in.contains(env),
                Fault::Feature => b.fail_in.contains(env),
            };
            listed.then(|| format!("{BEHAVIOUR_FILE} makes this release fail in {env}"))
        }
        Err(e) => Some(format!("{BEHAVIOUR_FILE} is not valid: {e}")),
    }
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Completes on SIGTERM (how the local platform stops a release) or SIGINT.
async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot watch for SIGTERM ({e}); stopping on Ctrl-C only");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    /// The app on a free port, stopped when dropped.
    struct Running {
        addr: SocketAddr,
        _stop: oneshot::Sender<()>,
    }

    async fn start(dir: &Path, env: &str, version: &str) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, dir.to_path_buf(), env.into(), version.into(), async {
            let _ = stopped.await;
        }));
        Running { addr, _stop: stop }
    }

    /// One `GET` with `Connection: close`; returns the status, the `Content-Type` and the body.
    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut raw)).await.unwrap().unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let content_type = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        (status, content_type, body.to_string())
    }

    fn json(body: &str) -> Value {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    #[tokio::test]
    async fn the_home_page_names_version_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let app = start(dir.path(), "staging", "abc1234").await;
        let (status, content_type, body) = get(app.addr, "/").await;
        assert_eq!(status, 200);
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(body.contains("<html") && body.contains("<h1>oc-deploy sample app</h1>"), "{body}");
        assert!(body.contains("version abc1234, environment staging"), "{body}");
    }

    #[tokio::test]
    async fn health_is_ok_without_a_behaviour_file_or_when_the_env_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let app = start(dir.path(), "staging", "abc1234").await;
        let (status, content_type, body) = get(app.addr, "/health").await;
        assert_eq!((status, content_type.as_str()), (200, "application/json"));
        assert_eq!(json(&body), serde_json::json!({ "status": "ok", "version": "abc1234", "env": "staging" }));

        std::fs::write(dir.path().join(BEHAVIOUR_FILE), r#"{ "fail_in": ["production"] }"#).unwrap();
        let (status, _, body) = get(app.addr, "/health").await;
        assert_eq!(status, 200, "staging is not in fail_in: {body}");
    }

    #[tokio::test]
    async fn health_fails_with_503_in_an_unready_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(BEHAVIOUR_FILE), r#"{ "unready_in": ["production"] }"#).unwrap();
        let app = start(dir.path(), "production", "def5678").await;
        let (status, _, body) = get(app.addr, "/health").await;
        assert_eq!(status, 503, "{body}");
        let v = json(&body);
        assert_eq!(v["status"], "failing");
        assert!(v["reason"].as_str().unwrap().contains("production"), "{v}");

        // A single string works too, and the file is read on every request.
        std::fs::write(dir.path().join(BEHAVIOUR_FILE), r#"{ "unready_in": "production" }"#).unwrap();
        assert_eq!(get(app.addr, "/health").await.0, 503);
        std::fs::write(dir.path().join(BEHAVIOUR_FILE), r#"{ "unready_in": [] }"#).unwrap();
        assert_eq!(get(app.addr, "/health").await.0, 200);
    }

    #[tokio::test]
    async fn fail_in_breaks_the_feature_but_not_liveness() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(BEHAVIOUR_FILE), r#"{ "fail_in": ["production"] }"#).unwrap();
        let prod = start(dir.path(), "production", "def5678").await;
        assert_eq!(get(prod.addr, "/health").await.0, 200, "liveness stays up");
        let (status, _, body) = get(prod.addr, "/api/items").await;
        assert_eq!(status, 500, "{body}");
        assert!(json(&body)["error"].as_str().unwrap().contains("production"));
        let staging = start(dir.path(), "staging", "def5678").await;
        assert_eq!(get(staging.addr, "/api/items").await.0, 200);
    }

    #[tokio::test]
    async fn a_malformed_behaviour_file_makes_health_fail_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(BEHAVIOUR_FILE), "{ not json").unwrap();
        let app = start(dir.path(), "staging", "abc1234").await;
        let (status, _, body) = get(app.addr, "/health").await;
        assert_eq!(status, 503, "{body}");
        assert!(json(&body)["reason"].as_str().unwrap().contains("sample.json is not valid"), "{body}");
    }

    #[tokio::test]
    async fn items_lists_three_and_unknown_paths_are_404() {
        let dir = tempfile::tempdir().unwrap();
        let app = start(dir.path(), "staging", "abc1234").await;
        let (status, _, body) = get(app.addr, "/api/items").await;
        assert_eq!(status, 200);
        let items = json(&body);
        assert_eq!(items.as_array().map(Vec::len), Some(3), "{items}");
        assert_eq!(items[0]["name"], "teapot");
        assert_eq!(get(app.addr, "/nope").await.0, 404);
        assert_eq!(get(app.addr, "/health/extra").await.0, 404);
    }

    #[tokio::test]
    async fn the_shutdown_future_stops_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, dir.path().to_path_buf(), "staging".into(), "v".into(), async {
            let _ = stopped.await;
        }));
        stop.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), task).await.unwrap().unwrap().unwrap();
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(escape_html("<b>\"x\" & 'y'</b>"), "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;");
    }

    #[test]
    fn port_must_be_set_and_valid() {
        assert_eq!(port_from(Some("8801")).unwrap(), 8801);
        assert_eq!(port_from(Some(" 8801 ")).unwrap(), 8801);
        assert!(port_from(None).unwrap_err().to_string().contains("PORT is not set"));
        for bad in ["", "0", "65536", "http", "-1"] {
            let err = port_from(Some(bad)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("is not a port number"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_sample_files_are_what_the_demo_expects() {
        let names: Vec<&str> = SAMPLE_FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["README.md", "sample.json", ".gitignore"]);
        let behaviour = SAMPLE_FILES.iter().find(|(n, _)| *n == BEHAVIOUR_FILE).unwrap().1;
        let parsed: Behaviour = serde_json::from_str(behaviour).unwrap();
        assert!(!parsed.fail_in.contains("staging") && !parsed.fail_in.contains("production"), "the sample starts healthy");
        assert!(SAMPLE_FILES.iter().find(|(n, _)| *n == ".gitignore").unwrap().1.contains("/.oc-deploy/"));
    }
}
