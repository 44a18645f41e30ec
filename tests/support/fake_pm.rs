//! Fake GitHub (issues REST API) and fake chat endpoints (Telegram Bot API, Slack incoming
//! webhook, a generic JSON webhook) on loopback, stateful and faithful where oc-deploy looks:
//! search needs `is:issue` and pull requests come back among issues; tokens are checked; a
//! switch turns the tracker "down" (503), rate limits answer 429 with `retry-after`, and chosen
//! issues refuse comments with 403. Everything received is recorded for assertions.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The token the fake GitHub accepts.
pub const GITHUB_TOKEN: &str = "ghp_e2eFAKEtoken0123456789abcdefABCDEF";
pub const TELEGRAM_TOKEN: &str = "123456:AAE2eTelegramSECRETtoken";
pub const SLACK_PATH: &str = "/services/T000/B000/e2eSlackSECRETpath";

#[derive(Default)]
pub struct GitHubState {
    pub issues: Vec<Value>,
    /// (issue number, comment body)
    pub comments: Vec<(u64, String)>,
    /// Issue numbers whose comment endpoint answers 403.
    pub forbidden: Vec<u64>,
    /// The next N requests answer 429 with `retry-after: 1`.
    pub rate_limit_next: u32,
    /// Every request answers 503.
    pub down: bool,
    /// Every request, `METHOD path` (+ a detail).
    pub log: Vec<String>,
    /// Requests seen with a wrong or missing token.
    pub bad_auth: u32,
}

#[derive(Clone, Default)]
pub struct FakeGitHub {
    pub state: Arc<Mutex<GitHubState>>,
    pub url: String,
}

impl FakeGitHub {
    pub async fn start() -> Self {
        let state: Arc<Mutex<GitHubState>> = Arc::default();
        let app = Router::new()
            .route("/search/issues", get(search))
            .route("/repos/{o}/{r}/issues", post(create))
            .route("/repos/{o}/{r}/issues/{n}", get(one).patch(patch))
            .route("/repos/{o}/{r}/issues/{n}/comments", get(comments).post(comment))
            .route("/repos/{o}/{r}/issues/{n}/labels", post(labels))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { state, url: format!("http://{addr}") }
    }

    /// Adds plain issues (and one pull request, which search must skip); returns their ids (`#n`).
    pub fn seed(&self, n: usize) -> Vec<String> {
        let mut f = self.state.lock().unwrap();
        let pr = f.issues.len() as u64 + 1;
        f.issues.push(json!({ "number": pr, "title": "a pull request", "body": "", "state": "open", "labels": [], "pull_request": { "url": "x" }, "html_url": "x" }));
        (0..n)
            .map(|_| {
                let number = f.issues.len() as u64 + 1;
                f.issues.push(json!({ "number": number, "title": format!("feature {number}"), "body": "a feature", "state": "open", "labels": [], "html_url": format!("https://github.example/acme/shop/issues/{number}") }));
                format!("#{number}")
            })
            .collect()
    }

    /// Issues whose body carries `text` (deploy tickets by their marker).
    pub fn issues_with(&self, text: &str) -> Vec<Value> {
        self.state.lock().unwrap().issues.iter().filter(|i| i["body"].as_str().unwrap_or_default().contains(text)).cloned().collect()
    }

    pub fn comments_on(&self, number: u64) -> Vec<String> {
        self.state.lock().unwrap().comments.iter().filter(|(n, _)| *n == number).map(|(_, b)| b.clone()).collect()
    }

    pub fn all_text(&self) -> String {
        let f = self.state.lock().unwrap();
        let mut s = serde_json::to_string(&f.issues).unwrap();
        for (_, b) in &f.comments {
            s.push_str(b);
        }
        s
    }
}

type Gh = Arc<Mutex<GitHubState>>;

fn gate(f: &mut GitHubState, headers: &HeaderMap, what: String) -> Option<Response> {
    f.log.push(what);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {GITHUB_TOKEN}")) {
        f.bad_auth += 1;
        return Some((StatusCode::UNAUTHORIZED, axum::Json(json!({ "message": "Bad credentials" }))).into_response());
    }
    if f.down {
        return Some((StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "message": "Service Unavailable" }))).into_response());
    }
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

fn q_param(uri: &Uri) -> String {
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

async fn search(State(s): State<Gh>, headers: HeaderMap, uri: Uri) -> Response {
    let mut f = s.lock().unwrap();
    let query = q_param(&uri);
    if let Some(r) = gate(&mut f, &headers, format!("GET search {query}")) {
        return r;
    }
    if !query.contains("is:issue") {
        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({ "message": "search needs is:issue or is:pr" }))).into_response();
    }
    let phrase = query.split('"').nth(1).unwrap_or_default().to_owned();
    // Like GitHub with is:issue: pull requests are not returned.
    let items: Vec<Value> = f
        .issues
        .iter()
        .filter(|i| i.get("pull_request").is_none() && i["body"].as_str().unwrap_or_default().contains(&phrase))
        .cloned()
        .collect();
    axum::Json(json!({ "total_count": items.len(), "incomplete_results": false, "items": items })).into_response()
}

async fn create(State(s): State<Gh>, headers: HeaderMap, axum::Json(body): axum::Json<Value>) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = gate(&mut f, &headers, format!("POST issue {}", body["title"])) {
        return r;
    }
    let number = f.issues.len() as u64 + 1;
    let labels: Vec<Value> = body["labels"].as_array().cloned().unwrap_or_default().iter().map(|l| json!({ "name": l })).collect();
    let issue = json!({ "number": number, "title": body["title"], "body": body["body"], "state": "open", "labels": labels, "html_url": format!("https://github.example/acme/shop/issues/{number}") });
    f.issues.push(issue.clone());
    (StatusCode::CREATED, axum::Json(issue)).into_response()
}

async fn one(State(s): State<Gh>, headers: HeaderMap, Path((_o, _r, n)): Path<(String, String, u64)>) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = gate(&mut f, &headers, format!("GET issue {n}")) {
        return r;
    }
    match f.issues.iter().find(|i| i["number"] == n) {
        Some(i) => axum::Json(i.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, axum::Json(json!({ "message": "Not Found" }))).into_response(),
    }
}

async fn patch(
    State(s): State<Gh>,
    headers: HeaderMap,
    Path((_o, _r, n)): Path<(String, String, u64)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = gate(&mut f, &headers, format!("PATCH {n} {body}")) {
        return r;
    }
    let Some(i) = f.issues.iter_mut().find(|i| i["number"] == n) else { return StatusCode::NOT_FOUND.into_response() };
    if let Some(st) = body.get("state") {
        i["state"] = st.clone();
    }
    axum::Json(i.clone()).into_response()
}

async fn comments(State(s): State<Gh>, headers: HeaderMap, Path((_o, _r, n)): Path<(String, String, u64)>) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = gate(&mut f, &headers, format!("GET comments {n}")) {
        return r;
    }
    let list: Vec<Value> =
        f.comments.iter().filter(|(i, _)| *i == n).enumerate().map(|(k, (_, b))| json!({ "id": k, "body": b })).collect();
    axum::Json(list).into_response()
}

async fn comment(
    State(s): State<Gh>,
    headers: HeaderMap,
    Path((_o, _r, n)): Path<(String, String, u64)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = gate(&mut f, &headers, format!("POST comment {n}")) {
        return r;
    }
    if f.forbidden.contains(&n) {
        return (StatusCode::FORBIDDEN, axum::Json(json!({ "message": "Resource not accessible by integration" }))).into_response();
    }
    f.comments.push((n, body["body"].as_str().unwrap_or_default().to_owned()));
    (StatusCode::CREATED, axum::Json(json!({ "id": 1, "body": body["body"] }))).into_response()
}

async fn labels(
    State(s): State<Gh>,
    headers: HeaderMap,
    Path((_o, _r, n)): Path<(String, String, u64)>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut f = s.lock().unwrap();
    if let Some(r) = gate(&mut f, &headers, format!("POST labels {n} {body}")) {
        return r;
    }
    if let Some(i) = f.issues.iter_mut().find(|i| i["number"] == n) {
        for l in body["labels"].as_array().cloned().unwrap_or_default() {
            i["labels"].as_array_mut().unwrap().push(json!({ "name": l }));
        }
    }
    axum::Json(json!([])).into_response()
}

/// Telegram, Slack and a generic webhook on one server; records (channel, body).
#[derive(Clone, Default)]
pub struct FakeChat {
    pub messages: Arc<Mutex<Vec<(String, Value)>>>,
    pub url: String,
}

type Chat = Arc<Mutex<Vec<(String, Value)>>>;

impl FakeChat {
    pub async fn start() -> Self {
        let messages: Chat = Arc::default();
        let app = Router::new()
            .route("/bot{token}/sendMessage", post(telegram))
            .route("/services/{a}/{b}/{c}", post(slack))
            .route("/hook", post(webhook))
            .with_state(messages.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { messages, url: format!("http://{addr}") }
    }

    /// The variables that turn on all three channels.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("TELEGRAM_BOT_TOKEN".into(), TELEGRAM_TOKEN.into()),
            ("TELEGRAM_CHAT_ID".into(), "-100123".into()),
            ("TELEGRAM_API_URL".into(), self.url.clone()),
            ("SLACK_WEBHOOK_URL".into(), format!("{}{SLACK_PATH}", self.url)),
            ("OC_DEPLOY_WEBHOOK_URL".into(), format!("{}/hook", self.url)),
        ]
    }

    pub fn by(&self, channel: &str) -> Vec<Value> {
        self.messages.lock().unwrap().iter().filter(|(c, _)| c == channel).map(|(_, v)| v.clone()).collect()
    }

    pub fn all_text(&self) -> String {
        serde_json::to_string(&*self.messages.lock().unwrap()).unwrap()
    }
}

async fn telegram(State(s): State<Chat>, Path(token): Path<String>, body: String) -> Response {
    if token != TELEGRAM_TOKEN {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({ "ok": false, "error_code": 401, "description": "Unauthorized" })))
            .into_response();
    }
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|_| json!({ "form": body }));
    s.lock().unwrap().push(("telegram".into(), v));
    axum::Json(json!({ "ok": true, "result": { "message_id": 1 } })).into_response()
}

async fn slack(State(s): State<Chat>, uri: Uri, body: String) -> Response {
    if uri.path() != SLACK_PATH {
        return (StatusCode::NOT_FOUND, "no_service").into_response();
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    s.lock().unwrap().push(("slack".into(), v));
    "ok".into_response()
}

async fn webhook(State(s): State<Chat>, body: String) -> Response {
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    s.lock().unwrap().push(("webhook".into(), v));
    StatusCode::NO_CONTENT.into_response()
}

/// The key the fake Linear accepts: sent raw in `Authorization`, without `Bearer`.
pub const LINEAR_KEY: &str = "lin_api_e2eFAKEkey0123456789abcdef";

#[derive(Default)]
pub struct LinearState {
    /// {id, identifier, title, description, url, state}
    pub issues: Vec<Value>,
    /// (issue id, body)
    pub comments: Vec<(String, String)>,
    /// (issue id, related issue id, type)
    pub relations: Vec<(String, String, String)>,
    /// Requests with a wrong key or with `Bearer`.
    pub bad_auth: u32,
    pub operations: Vec<String>,
}

/// A stateful fake of the Linear GraphQL operations oc-deploy sends (team ENG, labels, workflow
/// states named as in the e2e pm.yaml).
#[derive(Clone, Default)]
pub struct FakeLinear {
    pub state: Arc<Mutex<LinearState>>,
    pub url: String,
}

type Lin = Arc<Mutex<LinearState>>;

const STATES: [(&str, &str); 5] = [
    ("st-todo", "Todo"),
    ("st-verified", "Staging verified"),
    ("st-done", "Done"),
    ("st-rolled", "Rolled back"),
    ("st-blocked", "Blocked"),
];

impl FakeLinear {
    pub async fn start() -> Self {
        let state: Lin = Arc::default();
        let app = Router::new().route("/graphql", post(linear)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { state, url: format!("http://{addr}/graphql") }
    }

    /// Adds plain issues ENG-n; returns their identifiers.
    pub fn seed(&self, n: usize) -> Vec<String> {
        let mut f = self.state.lock().unwrap();
        (0..n).map(|_| new_issue(&mut f, "a feature", "feature", "st-todo")).collect()
    }

    pub fn issues_with(&self, text: &str) -> Vec<Value> {
        self.state.lock().unwrap().issues.iter().filter(|i| i["description"].as_str().unwrap_or_default().contains(text)).cloned().collect()
    }

    pub fn comments_on(&self, id: &str) -> Vec<String> {
        self.state.lock().unwrap().comments.iter().filter(|(i, _)| i == id).map(|(_, b)| b.clone()).collect()
    }
}

fn new_issue(f: &mut LinearState, title: &str, description: &str, state: &str) -> String {
    let n = f.issues.len() + 1;
    let identifier = format!("ENG-{n}");
    f.issues.push(json!({ "id": format!("uuid-{n}"), "identifier": identifier, "title": title, "description": description, "url": format!("https://linear.example/acme/issue/{identifier}"), "state": state }));
    identifier
}

fn node(i: &Value) -> Value {
    let name = STATES.iter().find(|(id, _)| i["state"] == *id).map_or("Todo", |(_, n)| n);
    json!({ "id": i["id"], "identifier": i["identifier"], "title": i["title"], "description": i["description"], "url": i["url"], "state": { "name": name } })
}

async fn linear(State(s): State<Lin>, headers: HeaderMap, axum::Json(body): axum::Json<Value>) -> Response {
    let mut f = s.lock().unwrap();
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(LINEAR_KEY) {
        f.bad_auth += 1;
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "errors": [{ "message": "Authentication required", "extensions": { "code": "AUTHENTICATION_ERROR" } }] })),
        )
            .into_response();
    }
    let op = body["operationName"].as_str().unwrap_or_default().to_owned();
    f.operations.push(op.clone());
    let v = &body["variables"];
    let find = |f: &LinearState, id: &str| f.issues.iter().find(|i| i["id"] == id || i["identifier"] == id).cloned();
    let data = match op.as_str() {
        "OcDeployTeam" => json!({ "teams": { "nodes": [{ "id": "team-1", "key": "ENG", "name": "Engineering" }] } }),
        "OcDeployFindByMarker" => {
            let needle = v["filter"]["description"]["contains"].as_str().unwrap_or_default();
            let nodes: Vec<Value> =
                f.issues.iter().filter(|i| i["description"].as_str().unwrap_or_default().contains(needle)).map(node).collect();
            json!({ "issues": { "nodes": nodes } })
        }
        "OcDeployLabels" => json!({ "issueLabels": { "nodes": [{ "id": "lbl-deploy", "name": "Deploy", "team": { "id": "team-1" } }] } }),
        "OcDeployIssueCreate" => {
            let input = &v["input"];
            let id = new_issue(
                &mut f,
                input["title"].as_str().unwrap_or_default(),
                input["description"].as_str().unwrap_or_default(),
                "st-todo",
            );
            let issue = find(&f, &id).unwrap();
            json!({ "issueCreate": { "success": true, "issue": node(&issue) } })
        }
        "OcDeployIssue" => match find(&f, v["id"].as_str().unwrap_or_default()) {
            Some(i) => json!({ "issue": node(&i) }),
            None => {
                return axum::Json(
                    json!({ "data": null, "errors": [{ "message": "Entity not found", "extensions": { "code": "INVALID_INPUT" } }] }),
                )
                .into_response();
            }
        },
        "OcDeployComments" => {
            let id = find(&f, v["id"].as_str().unwrap_or_default()).map(|i| i["id"].as_str().unwrap().to_owned()).unwrap_or_default();
            let nodes: Vec<Value> = f.comments.iter().filter(|(i, _)| *i == id).map(|(_, b)| json!({ "body": b })).collect();
            json!({ "issue": { "comments": { "nodes": nodes, "pageInfo": { "hasNextPage": false, "endCursor": null } } } })
        }
        "OcDeployCommentCreate" => {
            let input = &v["input"];
            let id =
                find(&f, input["issueId"].as_str().unwrap_or_default()).map(|i| i["id"].as_str().unwrap().to_owned()).unwrap_or_default();
            f.comments.push((id, input["body"].as_str().unwrap_or_default().to_owned()));
            json!({ "commentCreate": { "success": true, "comment": { "id": "c" } } })
        }
        "OcDeployStates" => {
            let nodes: Vec<Value> =
                STATES.iter().enumerate().map(|(k, (id, n))| json!({ "id": id, "name": n, "type": "started", "position": k })).collect();
            json!({ "workflowStates": { "nodes": nodes } })
        }
        "OcDeployIssueUpdate" => {
            let id = v["id"].as_str().unwrap_or_default().to_owned();
            let st = v["input"]["stateId"].clone();
            if let Some(i) = f.issues.iter_mut().find(|i| i["id"] == id.as_str() || i["identifier"] == id.as_str()) {
                i["state"] = st;
            }
            json!({ "issueUpdate": { "success": true, "issue": { "id": id, "state": { "name": "x" } } } })
        }
        "OcDeployRelations" => {
            let id = find(&f, v["id"].as_str().unwrap_or_default()).map(|i| i["id"].as_str().unwrap().to_owned()).unwrap_or_default();
            let nodes: Vec<Value> = f
                .relations
                .iter()
                .filter(|(a, _, _)| *a == id)
                .map(|(_, b, t)| json!({ "type": t, "relatedIssue": { "id": b, "identifier": find(&f, b).map(|i| i["identifier"].clone()).unwrap_or_default() } }))
                .collect();
            json!({ "issue": { "relations": { "nodes": nodes, "pageInfo": { "hasNextPage": false, "endCursor": null } } } })
        }
        "OcDeployRelationCreate" => {
            let input = &v["input"];
            let rel = (
                input["issueId"].as_str().unwrap_or_default().to_owned(),
                input["relatedIssueId"].as_str().unwrap_or_default().to_owned(),
                input["type"].as_str().unwrap_or_default().to_owned(),
            );
            f.relations.push(rel);
            json!({ "issueRelationCreate": { "success": true, "issueRelation": { "id": "r", "type": input["type"] } } })
        }
        other => {
            return axum::Json(json!({ "errors": [{ "message": format!("unknown operation {other}") }] })).into_response();
        }
    };
    axum::Json(json!({ "data": data })).into_response()
}
