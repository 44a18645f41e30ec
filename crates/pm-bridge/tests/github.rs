//! The GitHub backend against a fake GitHub REST API on loopback: the fake answers with the
//! status codes, headers and JSON shapes GitHub documents (provider facts §8) and records every
//! request, so the tests check both what the client sent and what it made of the answers.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use pm_bridge::github::GitHub;
use pm_bridge::tracker::{NewIssue, RetryPolicy, Ticket, Tracker, TrackerError};
use serde_json::{Value, json};

const TOKEN: &str = "ghp_fakeTOKEN0123456789abcdef";
const REPO: &str = "acme/shop";
const MARKER: &str = "<!-- opchain:oc-deploy-ops:deploy-created:staging:4f2a9c1 -->";

/// One request as the fake received it.
#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Value,
}

impl Recorded {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A response the fake gives to the next request instead of serving it (errors, rate limits).
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
}

#[derive(Default)]
struct FakeState {
    base: String,
    /// Issues and pull requests share one numbering, as on GitHub.
    issues: Vec<Value>,
    comments: BTreeMap<u64, Vec<Value>>,
    requests: Vec<Recorded>,
    canned: VecDeque<Canned>,
}

type Shared = Arc<Mutex<FakeState>>;

struct FakeGitHub {
    base: String,
    state: Shared,
}

impl FakeGitHub {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let state: Shared = Arc::new(Mutex::new(FakeState { base: base.clone(), ..FakeState::default() }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        Self { base, state }
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake state")
    }

    fn client(&self) -> GitHub {
        self.client_with(TOKEN)
    }

    fn client_with(&self, token: &str) -> GitHub {
        GitHub::new(&self.base, token, REPO).expect("client").with_retry_policy(fast_retries())
    }

    /// Adds an issue (or a pull request) and returns its number.
    fn seed(&self, title: &str, body: &str, pull_request: bool) -> u64 {
        let mut state = self.state();
        let number = state.issues.len() as u64 + 1;
        let issue = issue_json(&state.base, number, title, body, &[], pull_request);
        state.issues.push(issue);
        number
    }

    fn seed_comments(&self, number: u64, bodies: impl IntoIterator<Item = String>) {
        let mut state = self.state();
        let base = state.base.clone();
        let comments = state.comments.entry(number).or_default();
        for body in bodies {
            let id = comments.len() as u64 + 1000;
            comments.push(comment_json(&base, number, id, &body));
        }
    }

    fn push_canned(&self, status: u16, headers: &[(&'static str, &str)], body: Value) {
        let headers = headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.state().canned.push_back(Canned { status, headers, body });
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    fn issue(&self, number: u64) -> Value {
        self.state().issues[number as usize - 1].clone()
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy { attempts: 3, max_wait: Duration::from_secs(2), base_backoff: Duration::from_millis(10) }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// Every test runs under a deadline, so a hang fails instead of blocking the suite.
async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), f).await.expect("test took longer than 5 s")
}

fn issue_json(base: &str, number: u64, title: &str, body: &str, labels: &[String], pull_request: bool) -> Value {
    let labels: Vec<Value> = labels.iter().enumerate().map(|(i, name)| label_json(i as u64 + 1, name)).collect();
    let mut issue = json!({
        "id": 9000 + number, "node_id": format!("I_kw{number}"),
        "url": format!("{base}/repos/{REPO}/issues/{number}"),
        "html_url": format!("https://github.com/{REPO}/{}/{number}", if pull_request { "pull" } else { "issues" }),
        "number": number, "state": "open", "state_reason": null, "title": title, "body": body,
        "user": {"login": "bot", "id": 1}, "labels": labels, "assignees": [], "milestone": null, "locked": false,
        "comments": 0, "created_at": "2025-01-03T10:00:00Z", "updated_at": "2025-01-03T10:00:00Z", "closed_at": null,
        "author_association": "OWNER",
    });
    if pull_request {
        issue["pull_request"] = json!({"url": format!("{base}/repos/{REPO}/pulls/{number}"), "merged_at": null});
    }
    issue
}

fn label_json(id: u64, name: &str) -> Value {
    json!({"id": id, "name": name, "color": "ededed", "description": null, "default": false})
}

fn comment_json(base: &str, number: u64, id: u64, body: &str) -> Value {
    json!({
        "id": id, "node_id": format!("IC_kw{id}"), "url": format!("{base}/repos/{REPO}/issues/comments/{id}"),
        "html_url": format!("https://github.com/{REPO}/issues/{number}#issuecomment-{id}"), "body": body,
        "user": {"login": "bot", "id": 1}, "created_at": "2025-01-03T10:00:00Z", "updated_at": "2025-01-03T10:00:00Z",
        "issue_url": format!("{base}/repos/{REPO}/issues/{number}"), "author_association": "OWNER",
    })
}

fn error_json(message: &str, doc: &str) -> Value {
    json!({"message": message, "documentation_url": format!("https://docs.github.com/rest/{doc}")})
}

/// Search matches words and ignores punctuation, so `oc-deploy-ops` and `oc deploy ops` match.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

fn contains_phrase(body: &str, phrase: &str) -> bool {
    let (body, phrase) = (words(body), words(phrase));
    !phrase.is_empty() && body.windows(phrase.len()).any(|w| w == phrase.as_slice())
}

fn respond(status: u16, extra: Vec<(&'static str, String)>, body: &Value, resource: &str) -> Response {
    let reset = (unix_now() + 3600).to_string();
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header("x-ratelimit-limit", "5000")
        .header("x-ratelimit-used", "1")
        .header("x-ratelimit-resource", resource)
        .header("x-ratelimit-reset", reset);
    // Canned rate-limit answers bring their own `x-ratelimit-remaining`.
    if !extra.iter().any(|(k, _)| *k == "x-ratelimit-remaining") {
        builder = builder.header("x-ratelimit-remaining", "4999");
    }
    for (name, value) in extra {
        builder = builder.header(name, value);
    }
    builder.body(Body::from(body.to_string())).expect("response")
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let url = reqwest::Url::parse(&format!("http://fake{}", parts.uri)).expect("uri");
    let recorded = Recorded {
        method: parts.method.clone(),
        path: url.path().to_owned(),
        query: url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
        headers: parts.headers.clone(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    let mut state = shared.lock().expect("fake state");
    state.requests.push(recorded.clone());
    let resource = if recorded.path.starts_with("/search/") { "search" } else { "core" };

    if let Some(canned) = state.canned.pop_front() {
        return respond(canned.status, canned.headers, &canned.body, resource);
    }
    if recorded.header("user-agent").is_none_or(str::is_empty) {
        let message = "Request forbidden by administrative rules. Please make sure your request has a User-Agent header.";
        return respond(403, vec![], &error_json(message, "overview/resources-in-the-rest-api#user-agent-required"), resource);
    }
    let authorized = [format!("Bearer {TOKEN}"), format!("token {TOKEN}")];
    if !recorded.header("authorization").is_some_and(|a| authorized.iter().any(|ok| ok == a)) {
        return respond(401, vec![], &error_json("Bad credentials", "overview/troubleshooting-the-rest-api"), resource);
    }
    let (status, extra, body) = serve(&mut state, &recorded);
    respond(status, extra, &body, resource)
}

/// GitHub's endpoints, as far as the client uses them.
fn serve(state: &mut FakeState, request: &Recorded) -> (u16, Vec<(&'static str, String)>, Value) {
    let not_found = || (404, vec![], json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}));
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    let base = state.base.clone();
    match (&request.method, segments.as_slice()) {
        (&Method::GET, ["search", "issues"]) => {
            let q = request.param("q").unwrap_or_default();
            if !q.contains("is:issue") && !q.contains("is:pull-request") {
                let body = json!({"message": "Validation Failed", "errors": [{"message": "Query must include 'is:issue' or 'is:pull-request'", "resource": "Search", "field": "q", "code": "invalid"}]});
                return (422, vec![], body);
            }
            let in_repo = q.split_whitespace().any(|t| t.eq_ignore_ascii_case(&format!("repo:{REPO}")));
            let phrase = q.split_once('"').and_then(|(_, rest)| rest.rsplit_once('"')).map_or("", |(p, _)| p);
            // GitHub's search drops pull requests for `is:issue`; this fake keeps them, as the
            // issues list endpoint does, to prove that the client filters them itself.
            let items: Vec<Value> = state
                .issues
                .iter()
                .filter(|i| in_repo && contains_phrase(i["body"].as_str().unwrap_or_default(), phrase))
                .map(|i| {
                    let mut item = i.clone();
                    item["score"] = json!(1.0);
                    item
                })
                .collect();
            (200, vec![], json!({"total_count": items.len(), "incomplete_results": false, "items": items}))
        }
        (method, ["repos", owner, name, rest @ ..]) if format!("{owner}/{name}") == REPO => match (method, rest) {
            (&Method::POST, ["issues"]) => {
                let title = request.body["title"].as_str().unwrap_or_default();
                if title.is_empty() {
                    let body = json!({"message": "Validation Failed", "errors": [{"resource": "Issue", "field": "title", "code": "missing_field"}], "documentation_url": "https://docs.github.com/rest/issues/issues#create-an-issue"});
                    return (422, vec![], body);
                }
                let labels: Vec<String> =
                    request.body["labels"].as_array().into_iter().flatten().filter_map(|l| l.as_str().map(str::to_owned)).collect();
                let number = state.issues.len() as u64 + 1;
                let issue = issue_json(&base, number, title, request.body["body"].as_str().unwrap_or_default(), &labels, false);
                state.issues.push(issue.clone());
                (201, vec![("location", format!("{base}/repos/{REPO}/issues/{number}"))], issue)
            }
            (method, ["issues", number, tail @ ..]) => {
                let Some(index) = number.parse::<usize>().ok().filter(|n| (1..=state.issues.len()).contains(n)).map(|n| n - 1) else {
                    return not_found();
                };
                let number = index as u64 + 1;
                match (method, tail) {
                    (&Method::GET, []) => (200, vec![], state.issues[index].clone()),
                    (&Method::PATCH, []) => {
                        if request.body["state"] == "closed" {
                            let issue = &mut state.issues[index];
                            issue["state"] = json!("closed");
                            issue["state_reason"] = json!("completed");
                            issue["closed_at"] = json!("2025-01-04T10:00:00Z");
                        }
                        (200, vec![], state.issues[index].clone())
                    }
                    (&Method::GET, ["comments"]) => list_comments(state, request, number),
                    (&Method::POST, ["comments"]) => {
                        let comments = state.comments.entry(number).or_default();
                        let id = comments.len() as u64 + 1000;
                        let comment = comment_json(&base, number, id, request.body["body"].as_str().unwrap_or_default());
                        comments.push(comment.clone());
                        (201, vec![], comment)
                    }
                    (&Method::POST, ["labels"]) => {
                        let issue = &mut state.issues[index];
                        let mut labels = issue["labels"].as_array().cloned().unwrap_or_default();
                        for name in request.body["labels"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                            if !labels.iter().any(|l| l["name"] == name) {
                                labels.push(label_json(labels.len() as u64 + 1, name));
                            }
                        }
                        issue["labels"] = json!(labels);
                        (200, vec![], json!(labels))
                    }
                    _ => not_found(),
                }
            }
            _ => not_found(),
        },
        _ => not_found(),
    }
}

/// `per_page` (default 30, at most 100) and `page`, with a `Link` header like GitHub's.
fn list_comments(state: &FakeState, request: &Recorded, number: u64) -> (u16, Vec<(&'static str, String)>, Value) {
    let all = state.comments.get(&number).cloned().unwrap_or_default();
    let per_page = request.param("per_page").and_then(|v| v.parse::<usize>().ok()).unwrap_or(30).clamp(1, 100);
    let page = request.param("page").and_then(|v| v.parse::<usize>().ok()).unwrap_or(1).max(1);
    let last = all.len().div_ceil(per_page).max(1);
    let items: Vec<Value> = all.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let link_to = |p: usize, rel: &str| {
        format!("<{}/repositories/1300192/issues/{number}/comments?per_page={per_page}&page={p}>; rel=\"{rel}\"", state.base)
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link_to(page - 1, "prev"));
        links.push(link_to(1, "first"));
    }
    if page < last {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last, "last"));
    }
    let extra = if links.is_empty() { vec![] } else { vec![("link", links.join(", "))] };
    (200, extra, json!(items))
}

fn assert_github_headers(request: &Recorded) {
    assert_eq!(request.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()), "{request:?}");
    assert_eq!(request.header("accept"), Some("application/vnd.github+json"));
    assert_eq!(request.header("x-github-api-version"), Some("2022-11-28"));
    assert!(request.header("user-agent").is_some_and(|ua| ua.starts_with("oc-deploy/")), "{request:?}");
}

fn assert_no_token(error: &TrackerError) {
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
}

fn ticket(number: u64) -> Ticket {
    Ticket { id: format!("#{number}"), key: number.to_string(), url: None, title: String::new(), state: None }
}

#[tokio::test]
async fn find_by_marker_searches_issue_bodies_and_skips_pull_requests() {
    within(async {
        let fake = FakeGitHub::start().await;
        // Oldest first: a pull request and a word-for-word near miss come before the real ticket.
        fake.seed("Deploy PR", &format!("{MARKER}\nA pull request quoting the marker"), true);
        fake.seed("Notes", "opchain oc-deploy-ops deploy-created staging 4f2a9c1 (not a marker)", false);
        let number = fake.seed("Deploy staging 4f2a9c1", &format!("{MARKER}\nEnvironment: staging"), false);
        fake.seed("Deploy staging other", "<!-- opchain:oc-deploy-ops:deploy-created:staging:0000000 -->", false);

        let found = fake.client().find_by_marker(MARKER).await.expect("search");
        let found = found.expect("the deploy ticket");
        assert_eq!(found.id, format!("#{number}"));
        assert_eq!(found.key, number.to_string());
        assert_eq!(found.title, "Deploy staging 4f2a9c1");
        assert_eq!(found.url.as_deref(), Some(format!("https://github.com/{REPO}/issues/{number}").as_str()));
        assert_eq!(found.state.as_deref(), Some("open"));

        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        let search = &requests[0];
        assert_eq!((&search.method, search.path.as_str()), (&Method::GET, "/search/issues"));
        assert_github_headers(search);
        let q = search.param("q").expect("q");
        let terms: Vec<&str> = q.split_whitespace().collect();
        assert!(terms.contains(&"is:issue") && terms.contains(&"repo:acme/shop") && terms.contains(&"in:body"), "{q}");
        assert!(q.contains(&format!("\"{MARKER}\"")), "{q}");
        assert_eq!((search.param("sort"), search.param("order"), search.param("per_page")), (Some("created"), Some("asc"), Some("100")));

        let other = "<!-- opchain:oc-deploy-ops:deploy-created:production:4f2a9c1 -->";
        assert_eq!(fake.client().find_by_marker(other).await.expect("search"), None);
    })
    .await;
}

#[tokio::test]
async fn create_issue_posts_title_body_and_labels_then_search_finds_it() {
    within(async {
        let fake = FakeGitHub::start().await;
        fake.seed("Older issue", "unrelated", false);
        let github = fake.client();
        let issue = NewIssue {
            title: "Deploy staging 4f2a9c1".into(),
            body: format!("{MARKER}\nEnvironment: staging"),
            issue_type: Some("Deploy".into()),
            labels: vec!["staging".into(), "Deploy".into()],
        };
        let created = github.create_issue(&issue).await.expect("create");
        assert_eq!(
            created,
            Ticket {
                id: "#2".into(),
                key: "2".into(),
                url: Some(format!("https://github.com/{REPO}/issues/2")),
                title: issue.title.clone(),
                state: Some("open".into()),
            }
        );

        let requests = fake.requests();
        let post = &requests[0];
        assert_eq!((&post.method, post.path.as_str()), (&Method::POST, "/repos/acme/shop/issues"));
        assert_github_headers(post);
        assert_eq!(post.header("content-type"), Some("application/json"));
        assert_eq!(post.body, json!({"title": issue.title, "body": issue.body, "labels": ["Deploy", "staging"]}));
        let issue = fake.issue(2);
        let labels: Vec<&str> = issue["labels"].as_array().expect("labels").iter().filter_map(|l| l["name"].as_str()).collect();
        assert_eq!(labels, ["Deploy", "staging"]);

        assert_eq!(github.find_by_marker(MARKER).await.expect("search"), Some(created));
    })
    .await;
}

#[tokio::test]
async fn create_issue_validation_error_is_an_api_error_and_not_retried() {
    within(async {
        let fake = FakeGitHub::start().await;
        let error = fake.client().create_issue(&NewIssue::default()).await.expect_err("422");
        assert!(
            matches!(&error, TrackerError::Api { status: 422, message, .. } if message == "Validation Failed: Issue.title missing_field"),
            "{error:?}"
        );
        assert!(!error.retriable());
        assert_eq!(fake.requests().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn get_issue_accepts_the_three_id_forms_of_this_repository() {
    within(async {
        let fake = FakeGitHub::start().await;
        fake.seed("First", "", false);
        fake.seed("Second", "", false);
        let github = fake.client();
        for id in ["#2", "2", "acme/shop#2"] {
            let ticket = github.get_issue(id).await.expect(id);
            assert_eq!((ticket.id.as_str(), ticket.key.as_str(), ticket.title.as_str()), ("#2", "2", "Second"), "{id}");
        }
        let requests = fake.requests();
        assert_eq!(requests.len(), 3);
        for request in &requests {
            assert_eq!((&request.method, request.path.as_str()), (&Method::GET, "/repos/acme/shop/issues/2"));
            assert_github_headers(request);
        }

        // Another repository and Linear-style ids are refused before any request.
        for id in ["other/repo#2", "ENG-2"] {
            let error = github.get_issue(id).await.expect_err(id);
            assert!(matches!(error, TrackerError::NotFound { .. }), "{error:?}");
        }
        assert_eq!(fake.requests().len(), 3);

        // GitHub's 404 is NotFound, which needs a human: no retries.
        let error = github.get_issue("#999").await.expect_err("404");
        assert!(matches!(&error, TrackerError::NotFound { message, .. } if message == "Not Found"), "{error:?}");
        assert!(!error.retriable());
        assert_eq!(fake.requests().len(), 4);
        assert_eq!(fake.requests()[3].path, "/repos/acme/shop/issues/999");
    })
    .await;
}

#[tokio::test]
async fn has_comment_follows_the_link_header_across_pages() {
    within(async {
        let fake = FakeGitHub::start().await;
        let number = fake.seed("Deploy", MARKER, false);
        let marker = "<!-- opchain:oc-deploy-ops:staging-verified:#1 -->";
        let mut bodies: Vec<String> = (0..250).map(|i| format!("comment {i}")).collect();
        bodies[239] = format!("{marker}\nSmoke tests: PASS");
        fake.seed_comments(number, bodies);
        let github = fake.client();

        assert!(github.has_comment(&ticket(number), marker).await.expect("found on page 3"));
        let pages: Vec<(String, Option<String>, Option<String>)> = fake
            .requests()
            .iter()
            .map(|r| (r.path.clone(), r.param("page").map(str::to_owned), r.param("per_page").map(str::to_owned)))
            .collect();
        let path = format!("/repos/acme/shop/issues/{number}/comments");
        let expected: Vec<_> = ["1", "2", "3"].iter().map(|p| (path.clone(), Some((*p).to_owned()), Some("100".to_owned()))).collect();
        assert_eq!(pages, expected);
        fake.requests().iter().for_each(assert_github_headers);

        // Absent: every page is read, and the last one has no `rel="next"`.
        let absent = "<!-- opchain:oc-deploy-ops:prod-shipped:#1 -->";
        assert!(!github.has_comment(&ticket(number), absent).await.expect("absent"));
        assert_eq!(fake.requests().len(), 6);

        // An issue without comments: one empty page, no `Link` header.
        let empty = fake.seed("Empty", "", false);
        assert!(!github.has_comment(&ticket(empty), marker).await.expect("no comments"));
        assert_eq!(fake.requests().len(), 7);
    })
    .await;
}

#[tokio::test]
async fn add_comment_posts_the_body_and_has_comment_then_sees_it() {
    within(async {
        let fake = FakeGitHub::start().await;
        let number = fake.seed("Deploy", MARKER, false);
        let github = fake.client();
        let marker = "<!-- opchain:oc-deploy-ops:smoke-fail:#1 -->";
        assert!(!github.has_comment(&ticket(number), marker).await.expect("before"));

        let body = format!("{marker}\nSmoke tests failed: GET / returned 502");
        github.add_comment(&ticket(number), &body).await.expect("comment");
        let requests = fake.requests();
        let post = &requests[1];
        assert_eq!((&post.method, post.path.as_str()), (&Method::POST, "/repos/acme/shop/issues/1/comments"));
        assert_github_headers(post);
        assert_eq!(post.body, json!({"body": body}));

        assert!(github.has_comment(&ticket(number), marker).await.expect("after"));
    })
    .await;
}

#[tokio::test]
async fn set_state_adds_one_label_and_creates_nothing_else() {
    within(async {
        let fake = FakeGitHub::start().await;
        let number = fake.seed("Deploy", MARKER, false);
        fake.client().set_state(&ticket(number), "Staging verified").await.expect("label");

        let requests = fake.requests();
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_eq!((&requests[0].method, requests[0].path.as_str()), (&Method::POST, "/repos/acme/shop/issues/1/labels"));
        assert_github_headers(&requests[0]);
        assert_eq!(requests[0].body, json!({"labels": ["Staging verified"]}));
        assert_eq!(fake.issue(number)["labels"][0]["name"], "Staging verified");
    })
    .await;
}

#[tokio::test]
async fn close_patches_the_state_and_link_sends_nothing() {
    within(async {
        let fake = FakeGitHub::start().await;
        let number = fake.seed("Deploy", MARKER, false);
        let linked = fake.seed("Feature", "", false);
        let github = fake.client();

        assert!(!github.link(&ticket(number), &ticket(linked)).await.expect("link"));
        assert!(fake.requests().is_empty());

        github.close(&ticket(number)).await.expect("close");
        let requests = fake.requests();
        assert_eq!((&requests[0].method, requests[0].path.as_str()), (&Method::PATCH, "/repos/acme/shop/issues/1"));
        assert_github_headers(&requests[0]);
        assert_eq!(requests[0].body, json!({"state": "closed"}));
        assert_eq!(github.get_issue("#1").await.expect("get").state.as_deref(), Some("closed"));
    })
    .await;
}

#[tokio::test]
async fn a_bad_token_is_unauthorized_not_retried_and_not_shown() {
    within(async {
        let fake = FakeGitHub::start().await;
        let wrong = "ghp_wrongTOKENabcdef";
        let error = fake.client_with(wrong).find_by_marker(MARKER).await.expect_err("401");
        assert!(matches!(&error, TrackerError::Unauthorized { message, .. } if message == "Bad credentials"), "{error:?}");
        assert!(!error.retriable());
        assert!(!format!("{error} {error:?}").contains(wrong));
        let requests = fake.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].header("authorization"), Some(format!("Bearer {wrong}").as_str()));
    })
    .await;
}

#[tokio::test]
async fn a_plain_403_is_forbidden_and_not_retried() {
    within(async {
        let fake = FakeGitHub::start().await;
        let number = fake.seed("Deploy", MARKER, false);
        fake.push_canned(
            403,
            &[("x-ratelimit-remaining", "4999")],
            error_json("Resource not accessible by integration", "issues/comments#create-an-issue-comment"),
        );
        let error = fake.client().add_comment(&ticket(number), "text").await.expect_err("403");
        assert!(
            matches!(&error, TrackerError::Forbidden { message, .. } if message == "Resource not accessible by integration"),
            "{error:?}"
        );
        assert!(!error.retriable());
        assert_no_token(&error);
        assert_eq!(fake.requests().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_secondary_rate_limit_with_retry_after_is_waited_out() {
    within(async {
        let fake = FakeGitHub::start().await;
        let number = fake.seed("Deploy", MARKER, false);
        let message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";
        fake.push_canned(403, &[("retry-after", "1")], error_json(message, "overview/rate-limits-for-the-rest-api"));
        let started = Instant::now();
        let found = fake.client().find_by_marker(MARKER).await.expect("succeeds after the wait");
        assert_eq!(found.map(|t| t.key), Some(number.to_string()));
        assert!(started.elapsed() >= Duration::from_secs(1), "{:?}", started.elapsed());
        let requests = fake.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].query, requests[1].query);
    })
    .await;
}

#[tokio::test]
async fn a_rate_limit_beyond_max_wait_is_returned_not_waited_out() {
    within(async {
        let fake = FakeGitHub::start().await;
        let reset = (unix_now() + 3600).to_string();
        let primary = error_json("API rate limit exceeded for user ID 1.", "overview/rate-limits-for-the-rest-api");
        fake.push_canned(403, &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &reset)], primary);
        let started = Instant::now();
        let error = fake.client().get_issue("#1").await.expect_err("rate limited");
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        match &error {
            TrackerError::RateLimited { retry_after: Some(wait), message, .. } => {
                assert!((Duration::from_secs(3590)..=Duration::from_secs(3600)).contains(wait), "{wait:?}");
                assert!(message.starts_with("API rate limit exceeded"), "{message}");
            }
            other => panic!("expected RateLimited, got {other:?}"),
        }
        assert!(error.retriable(), "a later deploy_retry_pm may succeed");
        assert_no_token(&error);
        assert_eq!(fake.requests().len(), 1);

        // A 429 without any wait named: GitHub says wait at least 60 s, beyond max_wait too.
        fake.push_canned(429, &[], error_json("You have exceeded a secondary rate limit.", "overview/rate-limits-for-the-rest-api"));
        let error = fake.client().get_issue("#1").await.expect_err("429");
        assert!(matches!(error, TrackerError::RateLimited { retry_after: Some(w), .. } if w == Duration::from_secs(60)), "{error:?}");
        assert_eq!(fake.requests().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_then_returned() {
    within(async {
        let fake = FakeGitHub::start().await;
        let number = fake.seed("Deploy", MARKER, false);
        fake.push_canned(502, &[], json!({"message": "Server Error"}));
        let found = fake.client().get_issue("#1").await.expect("second attempt");
        assert_eq!(found.key, number.to_string());
        assert_eq!(fake.requests().len(), 2);

        for _ in 0..3 {
            fake.push_canned(503, &[], json!({"message": "Service Unavailable"}));
        }
        let error = fake.client().get_issue("#1").await.expect_err("three 503s");
        assert!(matches!(&error, TrackerError::Api { status: 503, message, .. } if message == "Service Unavailable"), "{error:?}");
        assert!(error.retriable());
        assert_eq!(fake.requests().len(), 5, "three attempts");
    })
    .await;
}

#[tokio::test]
async fn connection_refused_is_unreachable_and_retriable() {
    within(async {
        // A port that was just free and now has no listener.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("addr");
        drop(listener);
        let github = GitHub::new(&format!("http://{address}"), TOKEN, REPO).expect("client").with_retry_policy(fast_retries());
        let error = github.find_by_marker(MARKER).await.expect_err("refused");
        assert!(matches!(&error, TrackerError::Unreachable { message, .. } if message.to_lowercase().contains("refused")), "{error:?}");
        assert!(error.retriable());
        assert_no_token(&error);
        assert!(!format!("{github:?}").contains(TOKEN));
    })
    .await;
}
