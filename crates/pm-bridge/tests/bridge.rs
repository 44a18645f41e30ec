//! The PM protocol end to end through the real GitHub client against a stateful fake GitHub
//! on loopback: one ticket per environment and commit, marker-guarded comments and states,
//! linked tickets and the rollup, deferral when the tracker fails, and the flush.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pm_bridge::bridge::{ActionKind, Bridge, DeployFacts};
use pm_bridge::config::PmConfig;
use pm_bridge::github::GitHub;
use pm_bridge::tracker::RetryPolicy;
use serde_json::{Value, json};

const TOKEN: &str = "ghp_e2eSECRETtoken1234567890";

#[derive(Default)]
struct Fake {
    issues: Vec<Value>,
    comments: Vec<(u64, String)>,
    /// Issue numbers whose comment endpoint answers 403.
    forbidden: Vec<u64>,
    /// Requests answered 429 with retry-after: 1 before serving.
    rate_limit_next: u32,
    log: Vec<String>,
}

type Shared = Arc<Mutex<Fake>>;

fn issue_json(f: &Fake, n: u64) -> Option<Value> {
    f.issues.iter().find(|i| i["number"] == n).cloned()
}

fn limited(f: &mut Fake) -> Option<Response> {
    if f.rate_limit_next > 0 {
        f.rate_limit_next -= 1;
        let mut h = HeaderMap::new();
        h.insert("retry-after", "1".parse().unwrap());
        return Some(
            (StatusCode::TOO_MANY_REQUESTS, h, axum::Json(json!({ "message": "You have exceeded a secondary rate limit" })))
                .into_response(),
        );
    }
    None
}

/// The `q` parameter, form-decoded (axum here is built without its query extractor).
fn q_param(uri: &axum::http::Uri) -> String {
    let raw = uri.query().unwrap_or_default().split('&').find_map(|kv| kv.strip_prefix("q=")).unwrap_or_default().replace('+', " ");
    let b = raw.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        if let Some(v) = raw.get(i + 1..i + 3).filter(|_| b[i] == b'%').and_then(|h| u8::from_str_radix(h, 16).ok()) {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn search(State(s): State<Shared>, uri: axum::http::Uri) -> Response {
    let mut f = s.lock().unwrap();
    let query = q_param(&uri);
    f.log.push(format!("GET search {query}"));
    if let Some(r) = limited(&mut f) {
        return r;
    }
    assert!(query.contains("is:issue"), "search without is:issue: {query}");
    let phrase = query.split('"').nth(1).unwrap_or_default().to_owned();
    let items: Vec<Value> = f.issues.iter().filter(|i| i["body"].as_str().unwrap_or_default().contains(&phrase)).cloned().collect();
    axum::Json(json!({ "total_count": items.len(), "incomplete_results": false, "items": items })).into_response()
}

async fn create(State(s): State<Shared>, headers: HeaderMap, axum::Json(body): axum::Json<Value>) -> Response {
    let mut f = s.lock().unwrap();
    assert_eq!(headers.get("authorization").unwrap(), &format!("Bearer {TOKEN}"));
    f.log.push(format!("POST issue {}", body["title"]));
    if let Some(r) = limited(&mut f) {
        return r;
    }
    let number = f.issues.len() as u64 + 1;
    let issue = json!({ "number": number, "title": body["title"], "body": body["body"], "state": "open", "labels": body["labels"].as_array().cloned().unwrap_or_default().iter().map(|l| json!({"name": l})).collect::<Vec<_>>(), "html_url": format!("https://github.example/acme/shop/issues/{number}") });
    f.issues.push(issue.clone());
    (StatusCode::CREATED, axum::Json(issue)).into_response()
}

async fn one(State(s): State<Shared>, Path((_o, _r, n)): Path<(String, String, u64)>) -> Response {
    let f = s.lock().unwrap();
    match issue_json(&f, n) {
        Some(i) => axum::Json(i).into_response(),
        None => (StatusCode::NOT_FOUND, axum::Json(json!({ "message": "Not Found" }))).into_response(),
    }
}

async fn patch(State(s): State<Shared>, Path((_o, _r, n)): Path<(String, String, u64)>, axum::Json(body): axum::Json<Value>) -> Response {
    let mut f = s.lock().unwrap();
    f.log.push(format!("PATCH {n} {body}"));
    let Some(i) = f.issues.iter_mut().find(|i| i["number"] == n) else { return StatusCode::NOT_FOUND.into_response() };
    if let Some(st) = body.get("state") {
        i["state"] = st.clone();
    }
    axum::Json(i.clone()).into_response()
}

async fn comments(State(s): State<Shared>, Path((_o, _r, n)): Path<(String, String, u64)>) -> Response {
    let f = s.lock().unwrap();
    let list: Vec<Value> =
        f.comments.iter().filter(|(i, _)| *i == n).enumerate().map(|(k, (_, b))| json!({ "id": k, "body": b })).collect();
    axum::Json(list).into_response()
}

async fn comment(State(s): State<Shared>, Path((_o, _r, n)): Path<(String, String, u64)>, axum::Json(body): axum::Json<Value>) -> Response {
    let mut f = s.lock().unwrap();
    f.log.push(format!("POST comment {n}"));
    if f.forbidden.contains(&n) {
        return (StatusCode::FORBIDDEN, axum::Json(json!({ "message": "Resource not accessible by integration" }))).into_response();
    }
    if let Some(r) = limited(&mut f) {
        return r;
    }
    f.comments.push((n, body["body"].as_str().unwrap_or_default().to_owned()));
    (StatusCode::CREATED, axum::Json(json!({ "id": 1, "body": body["body"] }))).into_response()
}

async fn labels(State(s): State<Shared>, Path((_o, _r, n)): Path<(String, String, u64)>, axum::Json(body): axum::Json<Value>) -> Response {
    let mut f = s.lock().unwrap();
    f.log.push(format!("POST labels {n} {body}"));
    if let Some(i) = f.issues.iter_mut().find(|i| i["number"] == n) {
        for l in body["labels"].as_array().cloned().unwrap_or_default() {
            i["labels"].as_array_mut().unwrap().push(json!({ "name": l }));
        }
    }
    axum::Json(json!([])).into_response()
}

async fn serve(state: Shared) -> String {
    let app = Router::new()
        .route("/search/issues", get(search))
        .route("/repos/{o}/{r}/issues", post(create))
        .route("/repos/{o}/{r}/issues/{n}", get(one).patch(patch))
        .route("/repos/{o}/{r}/issues/{n}/comments", get(comments).post(comment))
        .route("/repos/{o}/{r}/issues/{n}/labels", post(labels))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn config() -> PmConfig {
    let yaml = "tracker: github\ngithub: { repo: acme/shop }\nissue_types: { deploy: Deploy }\nstates:\n  extended:\n    staging-verified: Staging verified\n    shipped: Done\n    rolled-back: Rolled back\n    blocked: Blocked\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pm.yaml"), yaml).unwrap();
    PmConfig::load(dir.path()).unwrap().unwrap()
}

fn bridge(url: &str) -> Bridge<GitHub> {
    let gh = GitHub::new(url, TOKEN, "acme/shop").unwrap().with_retry_policy(RetryPolicy {
        attempts: 3,
        max_wait: Duration::from_secs(2),
        base_backoff: Duration::from_millis(20),
    });
    Bridge::new(Some(gh), config())
}

fn facts(linked: Vec<String>) -> DeployFacts {
    DeployFacts {
        project: "shop".into(),
        env: "production".into(),
        head_sha: "0123456789abcdef0123456789abcdef01234567".into(),
        prev_sha: Some("fedcba9876543210fedcba9876543210fedcba98".into()),
        version: "0123456".into(),
        commits: 3,
        linked,
        gate: "PASS (proceed)".into(),
        url: Some("https://shop.example".into()),
    }
}

fn seed_linked(state: &Shared, n: usize) -> Vec<String> {
    let mut f = state.lock().unwrap();
    (0..n)
        .map(|_| {
            let number = f.issues.len() as u64 + 1;
            f.issues.push(json!({ "number": number, "title": format!("feature {number}"), "body": "a feature", "state": "open", "labels": [], "html_url": "x" }));
            format!("#{number}")
        })
        .collect()
}

#[tokio::test]
async fn first_deploy_creates_one_ticket_and_a_rerun_creates_nothing() {
    let state: Shared = Arc::default();
    let url = serve(state.clone()).await;
    let linked = seed_linked(&state, 2);
    let b = bridge(&url);
    let f = facts(linked.clone());
    let first = b.deploy_ticket(&f).await;
    let ticket = first.deploy_ticket.clone().expect("created");
    assert!(first.deferred.is_empty(), "{first:?}");
    let body = state.lock().unwrap().issues.last().unwrap()["body"].as_str().unwrap().to_owned();
    assert!(
        body.starts_with("<!-- opchain:oc-deploy-ops:deploy-created:production:0123456789abcdef0123456789abcdef01234567 -->"),
        "{body}"
    );
    assert!(
        body.contains("Range: fedcba9876543210fedcba9876543210fedcba98..0123456789abcdef0123456789abcdef01234567")
            && body.contains("Linked tickets: #1, #2"),
        "{body}"
    );
    let again = b.deploy_ticket(&f).await;
    assert_eq!(again.deploy_ticket.as_ref().unwrap().id, ticket.id);
    assert!(again.written.is_empty() && !again.already.is_empty());
    assert_eq!(state.lock().unwrap().issues.len(), 3, "one deploy ticket beside the two linked");

    // Shipping: comment + state label + close, and one comment per linked ticket — once.
    let shipped = b.shipped(&ticket, &f).await;
    assert!(shipped.deferred.is_empty(), "{shipped:?}");
    let again = b.shipped(&ticket, &f).await;
    assert!(again.written.is_empty(), "a re-run wrote again: {again:?}");
    let fake = state.lock().unwrap();
    let n: u64 = ticket.key.parse().unwrap();
    let on_deploy: Vec<&String> = fake.comments.iter().filter(|(i, _)| *i == n).map(|(_, b)| b).collect();
    assert_eq!(on_deploy.len(), 1);
    assert!(on_deploy[0].contains("opchain:oc-deploy-ops:prod-shipped:"));
    assert_eq!(fake.comments.iter().filter(|(_, b)| b.contains("linked-shipped")).count(), 2);
    let deploy = issue_json(&fake, n).unwrap();
    assert_eq!(deploy["state"], "closed");
    assert!(deploy["labels"].as_array().unwrap().iter().any(|l| l["name"] == "Done"), "{deploy}");
    assert!(!fake.issues.iter().any(|i| i.to_string().contains(TOKEN)) && !fake.comments.iter().any(|(_, b)| b.contains(TOKEN)));
}

#[tokio::test]
async fn two_racing_runs_for_one_commit_make_one_ticket() {
    let state: Shared = Arc::default();
    let url = serve(state.clone()).await;
    let (a, b) = (bridge(&url), bridge(&url));
    let f = facts(vec![]);
    let (x, y) = tokio::join!(a.deploy_ticket(&f), b.deploy_ticket(&f));
    assert_eq!(x.deploy_ticket.unwrap().id, y.deploy_ticket.unwrap().id);
    assert_eq!(state.lock().unwrap().issues.len(), 1);
}

#[tokio::test]
async fn sixty_linked_tickets_get_one_rollup_comment() {
    let state: Shared = Arc::default();
    let url = serve(state.clone()).await;
    let linked = seed_linked(&state, 60);
    let b = bridge(&url);
    let f = facts(linked);
    let ticket = b.deploy_ticket(&f).await.deploy_ticket.unwrap();
    let out = b.shipped(&ticket, &f).await;
    assert!(out.deferred.is_empty(), "{out:?}");
    let fake = state.lock().unwrap();
    assert_eq!(fake.comments.iter().filter(|(_, b)| b.contains("linked-shipped")).count(), 0);
    let rollups: Vec<&String> = fake.comments.iter().filter(|(_, b)| b.contains("opchain:oc-deploy-ops:rollup:")).map(|(_, b)| b).collect();
    assert_eq!(rollups.len(), 1);
    assert!(rollups[0].contains("#60") && rollups[0].contains("60 tickets"), "{}", rollups[0]);
}

#[tokio::test]
async fn a_403_on_one_linked_ticket_is_deferred_and_nothing_else_suffers() {
    let state: Shared = Arc::default();
    let url = serve(state.clone()).await;
    let linked = seed_linked(&state, 3);
    state.lock().unwrap().forbidden.push(2);
    let b = bridge(&url);
    let f = facts(linked);
    let ticket = b.deploy_ticket(&f).await.deploy_ticket.unwrap();
    let out = b.shipped(&ticket, &f).await;
    assert_eq!(out.deferred.len(), 1, "{out:?}");
    let d = &out.deferred[0];
    assert!(!d.retriable && d.marker.contains("linked-shipped") && d.marker.ends_with(":#2 -->"), "{d:?}");
    let fake = state.lock().unwrap();
    assert_eq!(fake.comments.iter().filter(|(_, b)| b.contains("linked-shipped")).count(), 2);
    assert!(fake.comments.iter().any(|(_, b)| b.contains("prod-shipped")));
}

#[tokio::test]
async fn tracker_down_then_back_flushes_everything_once() {
    // Down: nothing listens on this port.
    let dead = { std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap() };
    let down = bridge(&format!("http://{dead}"));
    let f = facts(vec![]);
    let created = down.deploy_ticket(&f).await;
    assert!(created.deploy_ticket.is_none());
    assert_eq!(created.deferred.len(), 1);
    assert!(created.deferred[0].retriable && created.deferred[0].action == ActionKind::CreateDeployTicket);
    let mut deferred = created.deferred;

    // Back.
    let state: Shared = Arc::default();
    let url = serve(state.clone()).await;
    let up = bridge(&url);
    let report = up.flush(deferred.clone()).await;
    assert_eq!((report.flushed, report.failed), (1, 0), "{report:?}");
    assert_eq!(report.summary, "flushed 1 / failed 0");
    assert_eq!(state.lock().unwrap().issues.len(), 1);
    // Flushing the same actions again duplicates nothing.
    deferred.extend(report.remaining);
    let again = up.flush(deferred).await;
    assert_eq!(again.failed, 0);
    assert_eq!(state.lock().unwrap().issues.len(), 1);
}

#[tokio::test]
async fn rate_limits_are_waited_out_within_bounds() {
    let state: Shared = Arc::default();
    let url = serve(state.clone()).await;
    state.lock().unwrap().rate_limit_next = 1;
    let b = bridge(&url);
    let out = b.deploy_ticket(&facts(vec![])).await;
    assert!(out.deploy_ticket.is_some() && out.deferred.is_empty(), "{out:?}");
    assert!(state.lock().unwrap().log.len() >= 3, "the limited call was retried");
}

#[tokio::test]
async fn without_a_tracker_every_write_is_deferred() {
    let b: Bridge<GitHub> = Bridge::new(None, config());
    let f = facts(vec!["#1".into()]);
    let out = b.deploy_ticket(&f).await;
    assert_eq!(out.deferred.len(), 1);
    assert!(out.deferred[0].retriable);
}
