//! The Linear backend against a fake Linear GraphQL server on loopback: the fake keeps teams,
//! issues, comments, workflow states, labels and relations in memory, evaluates the filters the
//! client sends, answers with Linear's payload and error shapes, and records every request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use pm_bridge::linear::Linear;
use pm_bridge::tracker::{NewIssue, RetryPolicy, Ticket, Tracker, TrackerError};
use serde_json::{Value, json};

const KEY: &str = "lin_api_fake0123456789abcdef";
const ENG: &str = "team-eng-0001";
const OPS: &str = "team-ops-0002";

#[derive(Clone)]
struct FakeIssue {
    id: String,
    identifier: String,
    title: String,
    description: String,
    team_id: String,
    state_id: String,
    label_ids: Vec<String>,
}

#[derive(Clone)]
struct FakeState {
    id: String,
    name: String,
    kind: String,
    position: f64,
    team_id: String,
}

#[derive(Clone)]
struct FakeLabel {
    id: String,
    name: String,
    team_id: Option<String>,
}

struct FakeComment {
    issue_id: String,
    body: String,
}

struct FakeRelation {
    issue_id: String,
    related_id: String,
    kind: String,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
}

impl Recorded {
    fn query(&self) -> &str {
        self.body["query"].as_str().unwrap_or_default()
    }

    fn root_field(&self) -> String {
        root_field(self.query())
    }

    fn variables(&self) -> &Value {
        &self.body["variables"]
    }
}

#[derive(Default)]
struct Store {
    teams: Vec<(String, String, String)>,
    issues: Vec<FakeIssue>,
    comments: Vec<FakeComment>,
    states: Vec<FakeState>,
    labels: Vec<FakeLabel>,
    relations: Vec<FakeRelation>,
    requests: Vec<Recorded>,
    /// The most nodes one page holds, whatever `first` asks for (Linear caps it too).
    page_cap: usize,
    /// Headers of a `RATELIMITED` answer given to the next request, once.
    rate_limit_next: Option<Vec<(String, String)>>,
    /// Issues the key may read but not comment on.
    forbidden_issues: Vec<String>,
    /// Mutations answer `success: false`.
    refuse_mutations: bool,
    /// Requests that are carried out but then answered with a 500 `INTERNAL_ERROR`, as when
    /// Linear fails after committing.
    fail_after_processing: usize,
    next_number: u32,
    next_id: u32,
}

type Fake = Arc<Mutex<Store>>;

impl Store {
    fn seeded() -> Self {
        let team = |id: &str, key: &str, name: &str| (id.to_owned(), key.to_owned(), name.to_owned());
        let state = |id: &str, name: &str, kind: &str, position: f64, team_id: &str| FakeState {
            id: id.to_owned(),
            name: name.to_owned(),
            kind: kind.to_owned(),
            position,
            team_id: team_id.to_owned(),
        };
        let label = |id: &str, name: &str, team_id: Option<&str>| FakeLabel {
            id: id.to_owned(),
            name: name.to_owned(),
            team_id: team_id.map(str::to_owned),
        };
        Self {
            teams: vec![team(ENG, "ENG", "Engineering"), team(OPS, "OPS", "Operations")],
            states: vec![
                state("st-eng-backlog", "Backlog", "backlog", 0.0, ENG),
                state("st-eng-todo", "Todo", "unstarted", 1.0, ENG),
                state("st-eng-verified", "Staging verified", "started", 2.0, ENG),
                state("st-eng-released", "Released", "completed", 4.0, ENG),
                state("st-eng-done", "Done", "completed", 3.0, ENG),
                state("st-eng-canceled", "Canceled", "canceled", 5.0, ENG),
                state("st-ops-todo", "Todo", "unstarted", 1.0, OPS),
                state("st-ops-verified", "Staging verified", "started", 2.0, OPS),
                state("st-ops-done", "Done", "completed", 3.0, OPS),
            ],
            labels: vec![
                label("lb-eng-deploy", "Deploy", Some(ENG)),
                label("lb-ws-release", "release", None),
                label("lb-ops-hotfix", "Hotfix", Some(OPS)),
            ],
            page_cap: 50,
            next_number: 1,
            next_id: 1,
            ..Self::default()
        }
    }

    fn with_issue(mut self, identifier: &str, title: &str, description: &str) -> Self {
        let team_id = if identifier.starts_with("OPS-") { OPS } else { ENG };
        let id = format!("uuid-{}", identifier.to_ascii_lowercase());
        let state_id = self.states.iter().find(|s| s.team_id == team_id && s.kind == "unstarted").map(|s| s.id.clone()).unwrap_or_default();
        self.issues.push(FakeIssue {
            id,
            identifier: identifier.to_owned(),
            title: title.to_owned(),
            description: description.to_owned(),
            team_id: team_id.to_owned(),
            state_id,
            label_ids: Vec::new(),
        });
        self
    }

    fn with_comment(mut self, identifier: &str, body: &str) -> Self {
        let issue_id = format!("uuid-{}", identifier.to_ascii_lowercase());
        self.comments.push(FakeComment { issue_id, body: body.to_owned() });
        self
    }

    fn fresh_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:04}", self.next_id)
    }

    fn team_json(&self, id: &str) -> Value {
        self.teams.iter().find(|t| t.0 == id).map_or(Value::Null, |t| json!({ "id": t.0, "key": t.1, "name": t.2 }))
    }

    fn state_json(&self, state: &FakeState) -> Value {
        json!({ "id": state.id, "name": state.name, "type": state.kind, "position": state.position, "team": self.team_json(&state.team_id) })
    }

    fn issue_json(&self, issue: &FakeIssue) -> Value {
        let state = self.states.iter().find(|s| s.id == issue.state_id).map_or(Value::Null, |s| self.state_json(s));
        let slug = issue.title.to_ascii_lowercase().replace(' ', "-");
        json!({
            "id": issue.id,
            "identifier": issue.identifier,
            "title": issue.title,
            "description": issue.description,
            "url": format!("https://linear.app/acme/issue/{}/{slug}", issue.identifier),
            "team": self.team_json(&issue.team_id),
            "state": state,
        })
    }

    fn label_json(&self, label: &FakeLabel) -> Value {
        json!({ "id": label.id, "name": label.name, "team": label.team_id.as_deref().map_or(Value::Null, |t| self.team_json(t)) })
    }

    /// Linear's `issue(id:)` takes the UUID or the identifier.
    fn issue_index(&self, id: &str) -> Option<usize> {
        self.issues.iter().position(|i| i.id == id || i.identifier.eq_ignore_ascii_case(id))
    }

    fn count(&self, root: &str) -> usize {
        self.requests.iter().filter(|r| r.root_field() == root).count()
    }

    fn requests_to(&self, root: &str) -> Vec<Recorded> {
        self.requests.iter().filter(|r| r.root_field() == root).cloned().collect()
    }
}

/// The first field selected by the operation: `issues`, `issueCreate`, …
fn root_field(query: &str) -> String {
    let Some(open) = query.find('{') else { return String::new() };
    query[open + 1..].trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

/// Evaluates a Linear filter (`IssueFilter`, `TeamFilter`, …) against an entity rendered as
/// JSON: nested objects are relation filters, leaves are comparators.
fn filter_matches(filter: &Value, entity: &Value) -> Result<bool, String> {
    let Some(fields) = filter.as_object() else { return Err(format!("a filter must be an object, got {filter}")) };
    for (field, condition) in fields {
        let ok = match field.as_str() {
            "and" => condition
                .as_array()
                .ok_or("and takes a list")?
                .iter()
                .map(|f| filter_matches(f, entity))
                .collect::<Result<Vec<_>, _>>()?
                .iter()
                .all(|b| *b),
            "or" => condition
                .as_array()
                .ok_or("or takes a list")?
                .iter()
                .map(|f| filter_matches(f, entity))
                .collect::<Result<Vec<_>, _>>()?
                .iter()
                .any(|b| *b),
            _ => {
                let value = entity.get(field).ok_or_else(|| format!("Field \"{field}\" is not defined by this filter type"))?;
                if is_comparator(condition) {
                    compare(condition, value)?
                } else if value.is_null() {
                    condition.get("null") == Some(&json!(true))
                } else {
                    filter_matches(condition, value)?
                }
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn is_comparator(condition: &Value) -> bool {
    condition
        .as_object()
        .is_some_and(|o| o.keys().all(|k| matches!(k.as_str(), "eq" | "neq" | "eqIgnoreCase" | "contains" | "in" | "null" | "nin")))
}

fn compare(condition: &Value, value: &Value) -> Result<bool, String> {
    let text = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
    for (op, operand) in condition.as_object().into_iter().flatten() {
        let arg = || operand.as_str().ok_or_else(|| format!("{op} takes a string"));
        let ok = match op.as_str() {
            "eq" => text == arg()?,
            "neq" => text != arg()?,
            "eqIgnoreCase" => text.eq_ignore_ascii_case(arg()?),
            "contains" => text.contains(arg()?),
            "null" => value.is_null() == (operand == &json!(true)),
            "in" => operand.as_array().is_some_and(|a| a.iter().any(|v| v.as_str() == Some(text.as_str()))),
            "nin" => operand.as_array().is_some_and(|a| a.iter().all(|v| v.as_str() != Some(text.as_str()))),
            other => return Err(format!("unknown comparator {other}")),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn graphql_error(status: StatusCode, message: &str, code: &str, kind: &str) -> Response {
    let body = json!({
        "errors": [{
            "message": message,
            "extensions": { "type": kind, "code": code, "userError": true, "userPresentableMessage": message }
        }],
        "data": null
    });
    (status, axum::Json(body)).into_response()
}

fn invalid_input(message: &str) -> Response {
    graphql_error(StatusCode::BAD_REQUEST, message, "INVALID_INPUT", "invalid input")
}

fn data(value: Value) -> Response {
    axum::Json(json!({ "data": value })).into_response()
}

/// A page of `items` after the opaque cursor `after`, `first` long but at most `cap`.
fn paginate(items: Vec<Value>, variables: &Value, cap: usize) -> Value {
    let first = variables["first"].as_u64().map_or(50, |f| f as usize).min(cap);
    let start = variables["after"].as_str().and_then(|c| c.strip_prefix("cursor:")).and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
    let end = (start + first).min(items.len());
    let nodes: Vec<Value> = items[start.min(end)..end].to_vec();
    json!({
        "nodes": nodes,
        "pageInfo": { "hasNextPage": end < items.len(), "hasPreviousPage": start > 0, "startCursor": format!("cursor:{start}"), "endCursor": format!("cursor:{end}") }
    })
}

async fn handle(State(fake): State<Fake>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut store = fake.lock().unwrap();
    store.requests.push(Recorded {
        method,
        path: uri.path().to_owned(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: body.clone(),
    });
    // A personal API key goes in raw; anything else (a wrong key, `Bearer <key>`) is rejected.
    if header("authorization").as_deref() != Some(KEY) {
        return graphql_error(
            StatusCode::UNAUTHORIZED,
            "Authentication required, not authenticated",
            "AUTHENTICATION_ERROR",
            "authentication error",
        );
    }
    if let Some(headers) = store.rate_limit_next.take() {
        let body = json!({
            "errors": [{
                "message": "Rate limit exceeded",
                "extensions": { "type": "ratelimited", "code": "RATELIMITED", "statusCode": 429, "userError": true }
            }],
            "data": null
        });
        let mut response = (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        for (name, value) in headers {
            response.headers_mut().insert(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        return response;
    }
    let response = execute(&mut store, &body);
    if store.fail_after_processing > 0 {
        store.fail_after_processing -= 1;
        return graphql_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error", "INTERNAL_ERROR", "internal error");
    }
    response
}

/// Runs one operation against the store, dispatching on the first field of its query text.
fn execute(store: &mut Store, body: &Value) -> Response {
    let query = body["query"].as_str().unwrap_or_default().to_owned();
    let vars = body["variables"].clone();
    let root = root_field(&query);
    let refuse = store.refuse_mutations;
    let filtered = |items: Vec<Value>| -> Result<Vec<Value>, String> {
        let filter = &vars["filter"];
        if filter.is_null() {
            return Ok(items);
        }
        let mut kept = Vec::new();
        for item in items {
            if filter_matches(filter, &item)? {
                kept.push(item);
            }
        }
        Ok(kept)
    };
    match root.as_str() {
        "teams" => {
            let teams: Vec<Value> = store.teams.iter().map(|t| store.team_json(&t.0)).collect();
            match filtered(teams) {
                Ok(nodes) => data(json!({ "teams": { "nodes": nodes } })),
                Err(e) => invalid_input(&e),
            }
        }
        "issues" => {
            let issues: Vec<Value> = store.issues.iter().map(|i| store.issue_json(i)).collect();
            match filtered(issues) {
                Ok(nodes) => data(json!({ "issues": paginate(nodes, &vars, store.page_cap) })),
                Err(e) => invalid_input(&e),
            }
        }
        "issueLabels" => {
            let labels: Vec<Value> = store.labels.iter().map(|l| store.label_json(l)).collect();
            match filtered(labels) {
                Ok(nodes) => data(json!({ "issueLabels": paginate(nodes, &vars, store.page_cap) })),
                Err(e) => invalid_input(&e),
            }
        }
        "workflowStates" => {
            let states: Vec<Value> = store.states.iter().map(|s| store.state_json(s)).collect();
            match filtered(states) {
                Ok(nodes) => data(json!({ "workflowStates": paginate(nodes, &vars, store.page_cap) })),
                Err(e) => invalid_input(&e),
            }
        }
        "issue" => {
            let Some(index) = store.issue_index(vars["id"].as_str().unwrap_or_default()) else {
                return invalid_input("Entity not found: Issue");
            };
            let issue = store.issues[index].clone();
            if query.contains("comments(") {
                let comments: Vec<Value> = store
                    .comments
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.issue_id == issue.id)
                    .map(|(n, c)| json!({ "id": format!("comment-{n}"), "body": c.body }))
                    .collect();
                data(json!({ "issue": { "comments": paginate(comments, &vars, store.page_cap) } }))
            } else if query.contains("relations(") {
                let relations: Vec<Value> = store
                    .relations
                    .iter()
                    .filter(|r| r.issue_id == issue.id)
                    .filter_map(|r| store.issues.iter().find(|i| i.id == r.related_id).map(|related| (r, related)))
                    .map(|(r, related)| json!({ "type": r.kind, "relatedIssue": { "id": related.id, "identifier": related.identifier } }))
                    .collect();
                data(json!({ "issue": { "relations": paginate(relations, &vars, store.page_cap) } }))
            } else {
                let json = store.issue_json(&issue);
                data(json!({ "issue": json }))
            }
        }
        "issueCreate" => {
            let input = &vars["input"];
            let Some(team_id) = input["teamId"].as_str().filter(|t| store.teams.iter().any(|team| team.0 == *t)).map(str::to_owned) else {
                return invalid_input("Entity not found: Team");
            };
            let label_ids: Vec<String> =
                input["labelIds"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect();
            if label_ids.iter().any(|l| !store.labels.iter().any(|label| label.id == *l)) {
                return invalid_input("Entity not found: IssueLabel");
            }
            if refuse {
                return data(json!({ "issueCreate": { "success": false, "issue": null, "lastSyncId": 1 } }));
            }
            let key = store.teams.iter().find(|t| t.0 == team_id).map(|t| t.1.clone()).unwrap_or_default();
            let number = store.next_number;
            store.next_number += 1;
            let id = store.fresh_id("uuid-new");
            let state_id =
                store.states.iter().find(|s| s.team_id == team_id && s.kind == "unstarted").map(|s| s.id.clone()).unwrap_or_default();
            let issue = FakeIssue {
                id,
                identifier: format!("{key}-{number}"),
                title: input["title"].as_str().unwrap_or_default().to_owned(),
                description: input["description"].as_str().unwrap_or_default().to_owned(),
                team_id,
                state_id,
                label_ids,
            };
            let json = store.issue_json(&issue);
            store.issues.push(issue);
            data(json!({ "issueCreate": { "success": true, "issue": json, "lastSyncId": 2 } }))
        }
        "commentCreate" => {
            let input = &vars["input"];
            let Some(index) = store.issue_index(input["issueId"].as_str().unwrap_or_default()) else {
                return invalid_input("Entity not found: Issue");
            };
            let issue_id = store.issues[index].id.clone();
            if store.forbidden_issues.contains(&issue_id) {
                return graphql_error(StatusCode::BAD_REQUEST, "You don't have access to this issue", "FORBIDDEN", "forbidden");
            }
            if refuse {
                return data(json!({ "commentCreate": { "success": false, "comment": { "id": "" }, "lastSyncId": 1 } }));
            }
            let id = store.fresh_id("comment-new");
            store.comments.push(FakeComment { issue_id, body: input["body"].as_str().unwrap_or_default().to_owned() });
            data(json!({ "commentCreate": { "success": true, "comment": { "id": id }, "lastSyncId": 3 } }))
        }
        "issueUpdate" => {
            let Some(index) = store.issue_index(vars["id"].as_str().unwrap_or_default()) else {
                return invalid_input("Entity not found: Issue");
            };
            let state_id = vars["input"]["stateId"].as_str().unwrap_or_default().to_owned();
            let team_id = store.issues[index].team_id.clone();
            if !store.states.iter().any(|s| s.id == state_id && s.team_id == team_id) {
                return invalid_input("Entity not found: WorkflowState");
            }
            if refuse {
                return data(json!({ "issueUpdate": { "success": false, "issue": null, "lastSyncId": 1 } }));
            }
            store.issues[index].state_id = state_id;
            let issue = store.issue_json(&store.issues[index]);
            data(json!({ "issueUpdate": { "success": true, "issue": issue, "lastSyncId": 4 } }))
        }
        "issueRelationCreate" => {
            let input = &vars["input"];
            let kind = input["type"].as_str().unwrap_or_default().to_owned();
            if !matches!(kind.as_str(), "blocks" | "duplicate" | "related" | "similar") {
                return graphql_error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "Variable \"$input\" got invalid value \"{kind}\" at \"input.type\"; Value \"{kind}\" does not exist in \"IssueRelationType\" enum."
                    ),
                    "GRAPHQL_VALIDATION_FAILED",
                    "graphql error",
                );
            }
            let (Some(a), Some(b)) = (
                store.issue_index(input["issueId"].as_str().unwrap_or_default()),
                store.issue_index(input["relatedIssueId"].as_str().unwrap_or_default()),
            ) else {
                return invalid_input("Entity not found: Issue");
            };
            let (issue_id, related_id) = (store.issues[a].id.clone(), store.issues[b].id.clone());
            let id = store.fresh_id("relation");
            store.relations.push(FakeRelation { issue_id, related_id, kind: kind.clone() });
            data(json!({ "issueRelationCreate": { "success": true, "issueRelation": { "id": id, "type": kind }, "lastSyncId": 5 } }))
        }
        other => graphql_error(
            StatusCode::BAD_REQUEST,
            &format!("Cannot query field \"{other}\" on type \"Query\"."),
            "GRAPHQL_VALIDATION_FAILED",
            "graphql error",
        ),
    }
}

async fn start(store: Store) -> (String, Fake) {
    let fake: Fake = Arc::new(Mutex::new(store));
    let app = Router::new().route("/graphql", post(handle)).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, fake)
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy { attempts: 3, max_wait: Duration::from_secs(2), base_backoff: Duration::from_millis(10) }
}

fn client(url: &str) -> Linear {
    Linear::new(url, KEY, "ENG").unwrap().with_retry_policy(fast_retries())
}

fn requests(fake: &Fake) -> Vec<Recorded> {
    fake.lock().unwrap().requests.clone()
}

fn ticket(identifier: &str) -> Ticket {
    Ticket {
        id: identifier.to_owned(),
        key: format!("uuid-{}", identifier.to_ascii_lowercase()),
        url: None,
        title: String::new(),
        state: None,
    }
}

#[tokio::test]
async fn created_issue_is_found_by_its_marker_afterwards() {
    let (url, fake) = start(Store::seeded().with_issue("ENG-7", "Unrelated", "no marker here")).await;
    let linear = client(&url);
    let marker = "<!-- opchain:oc-deploy-ops:deploy-created:staging:abc123 -->";

    assert_eq!(linear.find_by_marker(marker).await.unwrap(), None);
    let issue = NewIssue {
        title: "Deploy staging abc123".to_owned(),
        body: format!("{marker}\nEnvironment: staging"),
        issue_type: Some("Deploy".to_owned()),
        labels: vec!["Release".to_owned()],
    };
    let created = linear.create_issue(&issue).await.unwrap();
    assert_eq!(created.id, "ENG-1");
    assert!(created.key.starts_with("uuid-new"), "{created:?}");
    assert_eq!(created.state.as_deref(), Some("Todo"));
    assert_eq!(linear.find_by_marker(marker).await.unwrap(), Some(created.clone()));

    let store = fake.lock().unwrap();
    for request in &store.requests {
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path, "/graphql");
        assert_eq!(request.authorization.as_deref(), Some(KEY), "the personal key goes in raw, without Bearer");
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        assert!(request.body["operationName"].is_string());
    }
    // The team is resolved by its key once, then reused.
    let teams = store.requests_to("teams");
    assert_eq!(teams.len(), 1);
    assert_eq!(teams[0].variables()["filter"], json!({ "key": { "eqIgnoreCase": "ENG" } }));
    let finds = store.requests_to("issues");
    assert_eq!(finds.len(), 2);
    assert_eq!(finds[0].variables()["filter"], json!({ "team": { "id": { "eq": ENG } }, "description": { "contains": marker } }));
    let create = &store.requests_to("issueCreate")[0];
    assert!(create.query().contains("issueCreate(input: $input)"));
    assert_eq!(
        create.variables()["input"],
        json!({ "teamId": ENG, "title": "Deploy staging abc123", "description": issue.body, "labelIds": ["lb-eng-deploy", "lb-ws-release"] })
    );
    assert_eq!(store.issues.last().unwrap().label_ids, ["lb-eng-deploy", "lb-ws-release"]);
}

#[tokio::test]
async fn missing_issue_type_label_is_left_out_of_the_create() {
    // `Hotfix` exists only in another team, so it cannot go on an ENG issue.
    let (url, fake) = start(Store::seeded()).await;
    let linear = client(&url);
    let issue =
        NewIssue { title: "Deploy".to_owned(), body: "<!-- m -->".to_owned(), issue_type: Some("Hotfix".to_owned()), labels: vec![] };
    let created = linear.create_issue(&issue).await.unwrap();
    assert_eq!(created.id, "ENG-1");

    let store = fake.lock().unwrap();
    let labels = &store.requests_to("issueLabels")[0];
    assert_eq!(labels.variables()["filter"], json!({ "or": [{ "name": { "eqIgnoreCase": "Hotfix" } }] }));
    let create = &store.requests_to("issueCreate")[0];
    let input = &create.variables()["input"];
    assert_eq!(input.get("labelIds"), None, "{input}");
    assert!(store.issues[0].label_ids.is_empty());
}

#[tokio::test]
async fn get_issue_by_identifier_and_unknown_issue_is_not_found() {
    let (url, fake) = start(Store::seeded().with_issue("ENG-12", "Fix login", "body")).await;
    let linear = client(&url);
    let found = linear.get_issue("ENG-12").await.unwrap();
    assert_eq!(found.id, "ENG-12");
    assert_eq!(found.key, "uuid-eng-12");
    assert_eq!(found.title, "Fix login");
    assert_eq!(found.url.as_deref(), Some("https://linear.app/acme/issue/ENG-12/fix-login"));
    assert_eq!(found.state.as_deref(), Some("Todo"));

    let missing = linear.get_issue("ENG-404").await.unwrap_err();
    assert!(matches!(missing, TrackerError::NotFound { .. }), "{missing:?}");
    assert!(!missing.retriable());
    let store = fake.lock().unwrap();
    assert_eq!(store.requests_to("issue")[0].variables(), &json!({ "id": "ENG-12" }));
    // A not-found answer is final: no retry.
    assert_eq!(store.count("issue"), 2);
}

#[tokio::test]
async fn comment_marker_is_found_across_pages() {
    let marker = "<!-- opchain:oc-deploy-ops:staging-verified:d-42 -->";
    let mut store = Store::seeded().with_issue("ENG-5", "Deploy", "<!-- deploy -->");
    for n in 0..4 {
        store = store.with_comment("ENG-5", &format!("progress note {n}"));
    }
    store = store.with_comment("ENG-5", &format!("{marker}\nStaging verified"));
    store.page_cap = 2;
    let (url, fake) = start(store).await;
    let linear = client(&url);

    assert!(linear.has_comment(&ticket("ENG-5"), marker).await.unwrap());
    let pages = fake.lock().unwrap().requests_to("issue");
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0].variables(), &json!({ "id": "uuid-eng-5", "first": 100, "after": null }));
    assert_eq!(pages[1].variables()["after"], "cursor:2");
    assert_eq!(pages[2].variables()["after"], "cursor:4");

    assert!(!linear.has_comment(&ticket("ENG-5"), "<!-- opchain:oc-deploy-ops:rollback:d-42 -->").await.unwrap());
}

#[tokio::test]
async fn added_comment_is_found_by_its_marker() {
    let (url, fake) = start(Store::seeded().with_issue("ENG-5", "Deploy", "<!-- deploy -->")).await;
    let linear = client(&url);
    let marker = "<!-- opchain:oc-deploy-ops:prod-shipped:d-1 -->";
    assert!(!linear.has_comment(&ticket("ENG-5"), marker).await.unwrap());
    let body = format!("{marker}\nShipped v1.2.3");
    linear.add_comment(&ticket("ENG-5"), &body).await.unwrap();
    assert!(linear.has_comment(&ticket("ENG-5"), marker).await.unwrap());

    let store = fake.lock().unwrap();
    let create = &store.requests_to("commentCreate")[0];
    assert_eq!(create.variables(), &json!({ "input": { "issueId": "uuid-eng-5", "body": body } }));
    assert_eq!(store.comments.len(), 1);
}

#[tokio::test]
async fn state_name_resolves_to_the_team_state_id_once() {
    let (url, fake) = start(Store::seeded().with_issue("ENG-5", "Deploy", "x")).await;
    let linear = client(&url);
    linear.set_state(&ticket("ENG-5"), "Staging verified").await.unwrap();
    linear.set_state(&ticket("ENG-5"), "Staging verified").await.unwrap();

    let store = fake.lock().unwrap();
    let lookups = store.requests_to("workflowStates");
    assert_eq!(lookups.len(), 1, "the state id is cached");
    assert_eq!(
        lookups[0].variables()["filter"],
        json!({ "team": { "id": { "eq": ENG } }, "name": { "eqIgnoreCase": "Staging verified" } })
    );
    let updates = store.requests_to("issueUpdate");
    assert_eq!(updates.len(), 2);
    // The OPS team has a state of the same name; the ENG one must be chosen.
    assert_eq!(updates[0].variables(), &json!({ "id": "uuid-eng-5", "input": { "stateId": "st-eng-verified" } }));
    assert_eq!(store.issues[0].state_id, "st-eng-verified");
}

#[tokio::test]
async fn unknown_state_is_not_found_naming_state_and_team() {
    let (url, fake) = start(Store::seeded().with_issue("ENG-5", "Deploy", "x")).await;
    let linear = client(&url);
    let error = linear.set_state(&ticket("ENG-5"), "Rolled back").await.unwrap_err();
    match &error {
        TrackerError::NotFound { tracker, message } => {
            assert_eq!(tracker, "linear");
            assert!(message.contains("\"Rolled back\"") && message.contains("ENG"), "{message}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(!error.retriable());
    assert_eq!(fake.lock().unwrap().count("issueUpdate"), 0, "no state is invented");
}

#[tokio::test]
async fn close_moves_to_the_first_completed_state() {
    let (url, fake) = start(Store::seeded().with_issue("ENG-5", "Deploy", "x")).await;
    let linear = client(&url);
    linear.close(&ticket("ENG-5")).await.unwrap();

    let store = fake.lock().unwrap();
    assert_eq!(
        store.requests_to("workflowStates")[0].variables()["filter"],
        json!({ "team": { "id": { "eq": ENG } }, "type": { "eq": "completed" } })
    );
    // `Done` (position 3) comes before `Released` (position 4).
    assert_eq!(store.requests_to("issueUpdate")[0].variables()["input"], json!({ "stateId": "st-eng-done" }));
    assert_eq!(store.issues[0].state_id, "st-eng-done");
}

#[tokio::test]
async fn link_creates_one_related_relation() {
    let (url, fake) = start(Store::seeded().with_issue("ENG-5", "Deploy", "x").with_issue("OPS-3", "Linked", "y")).await;
    let linear = client(&url);
    assert!(linear.link(&ticket("ENG-5"), &ticket("OPS-3")).await.unwrap());
    assert!(linear.link(&ticket("ENG-5"), &ticket("OPS-3")).await.unwrap());

    let store = fake.lock().unwrap();
    let creates = store.requests_to("issueRelationCreate");
    assert_eq!(creates.len(), 1, "a second link finds the existing relation");
    assert_eq!(creates[0].variables(), &json!({ "input": { "issueId": "uuid-eng-5", "relatedIssueId": "uuid-ops-3", "type": "related" } }));
    assert_eq!(store.relations.len(), 1);
    assert_eq!((store.relations[0].issue_id.as_str(), store.relations[0].kind.as_str()), ("uuid-eng-5", "related"));
}

#[tokio::test]
async fn rate_limit_is_retried_after_the_reset_header() {
    let mut store = Store::seeded().with_issue("ENG-12", "Fix", "x");
    let reset = chrono::Utc::now().timestamp_millis() + 300;
    store.rate_limit_next = Some(vec![
        ("x-ratelimit-requests-limit".to_owned(), "5000".to_owned()),
        ("x-ratelimit-requests-remaining".to_owned(), "0".to_owned()),
        ("x-ratelimit-requests-reset".to_owned(), reset.to_string()),
    ]);
    let (url, fake) = start(store).await;
    let linear = client(&url);
    let started = Instant::now();
    assert_eq!(linear.get_issue("ENG-12").await.unwrap().id, "ENG-12");
    assert!(started.elapsed() >= Duration::from_millis(200), "waited {:?}", started.elapsed());
    assert_eq!(fake.lock().unwrap().count("issue"), 2);
}

#[tokio::test]
async fn long_rate_limit_is_deferred_not_waited_out() {
    let mut store = Store::seeded().with_issue("ENG-12", "Fix", "x");
    store.rate_limit_next = Some(vec![("retry-after".to_owned(), "3600".to_owned())]);
    let (url, fake) = start(store).await;
    let error = client(&url).get_issue("ENG-12").await.unwrap_err();
    match &error {
        TrackerError::RateLimited { retry_after, message, .. } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(3600)));
            assert!(message.contains("RATELIMITED"), "{message}");
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(error.retriable());
    assert_eq!(fake.lock().unwrap().count("issue"), 1);
}

#[tokio::test]
async fn wrong_key_is_unauthorized_and_never_shown() {
    let (url, fake) = start(Store::seeded()).await;
    let wrong_key = "lin_api_wrong_key_987654321";
    let linear = Linear::new(&url, wrong_key, "ENG").unwrap().with_retry_policy(fast_retries());
    let error = linear.get_issue("ENG-1").await.unwrap_err();
    assert!(matches!(error, TrackerError::Unauthorized { .. }), "{error:?}");
    assert!(!error.retriable());
    assert_eq!(requests(&fake).len(), 1, "a 401 is not retried");
    assert_eq!(requests(&fake)[0].authorization.as_deref(), Some(wrong_key));
    for text in [error.to_string(), format!("{error:?}"), format!("{linear:?}")] {
        assert!(!text.contains(wrong_key), "the key leaked: {text}");
    }
}

#[tokio::test]
async fn forbidden_comment_is_not_retriable() {
    let mut store = Store::seeded().with_issue("OPS-9", "Private", "x");
    store.forbidden_issues.push("uuid-ops-9".to_owned());
    let (url, fake) = start(store).await;
    let error = client(&url).add_comment(&ticket("OPS-9"), "<!-- m --> shipped").await.unwrap_err();
    assert!(matches!(error, TrackerError::Forbidden { .. }), "{error:?}");
    assert!(!error.retriable());
    assert_eq!(fake.lock().unwrap().count("commentCreate"), 1);
}

#[tokio::test]
async fn unsuccessful_payload_is_an_api_error() {
    let mut store = Store::seeded().with_issue("ENG-5", "Deploy", "x");
    store.refuse_mutations = true;
    let (url, _fake) = start(store).await;
    let error = client(&url).add_comment(&ticket("ENG-5"), "body").await.unwrap_err();
    match error {
        TrackerError::Api { message, .. } => assert!(message.contains("success: false"), "{message}"),
        other => panic!("expected Api, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_team_is_not_found() {
    let (url, _fake) = start(Store::seeded()).await;
    let linear = Linear::new(&url, KEY, "NOPE").unwrap().with_retry_policy(fast_retries());
    let error = linear.find_by_marker("<!-- m -->").await.unwrap_err();
    match error {
        TrackerError::NotFound { message, .. } => assert!(message.contains("NOPE"), "{message}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_tracker_is_retriable() {
    // Bind and release a port so that nothing listens on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/graphql", listener.local_addr().unwrap());
    drop(listener);
    let linear = Linear::new(&url, KEY, "ENG").unwrap().with_retry_policy(fast_retries());
    let error = linear.get_issue("ENG-1").await.unwrap_err();
    assert!(matches!(error, TrackerError::Unreachable { .. }), "{error:?}");
    assert!(error.retriable());
    assert!(!error.to_string().contains(KEY));
}

#[test]
fn configuration_comes_from_the_environment_variables() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
    };
    let missing = Linear::from_lookup("ENG", env(&[])).unwrap_err();
    assert!(matches!(&missing, TrackerError::NotConfigured { message, .. } if message.contains("LINEAR_API_KEY")), "{missing:?}");

    let linear = Linear::from_lookup("ENG", env(&[("LINEAR_API_KEY", KEY)])).unwrap();
    let debug = format!("{linear:?}");
    assert!(debug.contains("https://api.linear.app/graphql") && !debug.contains(KEY), "{debug}");
    assert_eq!(linear.team_key(), "ENG");

    let custom = Linear::from_lookup("ENG", env(&[("LINEAR_API_KEY", KEY), ("LINEAR_API_URL", "http://127.0.0.1:9/graphql")])).unwrap();
    assert!(format!("{custom:?}").contains("http://127.0.0.1:9/graphql"));

    let bad_url = Linear::new("not a url", KEY, "ENG").unwrap_err();
    assert!(matches!(bad_url, TrackerError::NotConfigured { .. }));
}

#[test]
fn tracker_futures_are_send() {
    // mcp-server runs tracker calls on a multi-threaded runtime, so they must be Send.
    fn assert_send<T: Send>(_: &T) {}
    let linear = Linear::new("http://127.0.0.1:9/graphql", KEY, "ENG").unwrap();
    let deploy = ticket("ENG-1");
    assert_send(&linear.find_by_marker("m"));
    assert_send(&linear.create_issue(&NewIssue::default()));
    assert_send(&linear.has_comment(&deploy, "m"));
    assert_send(&linear.set_state(&deploy, "Done"));
    assert_send(&linear.close(&deploy));
    assert_send(&linear.link(&deploy, &deploy));
}

#[test]
fn filter_evaluation_matches_linear_semantics() {
    // The fake's own filter evaluator, checked so the assertions above rest on it soundly.
    let issue = json!({ "description": "a <!-- m --> b", "team": { "id": ENG, "key": "ENG" } });
    assert!(filter_matches(&json!({ "description": { "contains": "<!-- m -->" }, "team": { "key": { "eq": "ENG" } } }), &issue).unwrap());
    assert!(!filter_matches(&json!({ "team": { "id": { "eq": OPS } } }), &issue).unwrap());
    assert!(filter_matches(&json!({ "or": [{ "team": { "key": { "eqIgnoreCase": "eng" } } }] }), &issue).unwrap());
    assert!(filter_matches(&json!({ "nonsense": { "eq": "x" } }), &issue).is_err());
}

#[tokio::test]
async fn create_that_may_have_landed_is_not_retried() {
    // Linear commits the issue, then answers 500: retrying would file it twice.
    let (url, fake) = start(Store::seeded()).await;
    let linear = client(&url);
    // Resolve the team first so that the failure hits the create itself.
    assert_eq!(linear.find_by_marker("<!-- nothing -->").await.unwrap(), None);
    fake.lock().unwrap().fail_after_processing = 1;
    let marker = "<!-- opchain:oc-deploy-ops:deploy-created:prod:def456 -->";
    let issue = NewIssue { title: "Deploy prod".to_owned(), body: marker.to_owned(), ..NewIssue::default() };
    let error = linear.create_issue(&issue).await.unwrap_err();
    assert!(matches!(error, TrackerError::Api { status: 500, .. }), "{error:?}");
    assert!(error.retriable(), "the bridge defers it and searches for the marker next time");
    assert_eq!(fake.lock().unwrap().count("issueCreate"), 1);
    assert_eq!(fake.lock().unwrap().issues.len(), 1);
    assert_eq!(linear.find_by_marker(marker).await.unwrap().map(|t| t.id), Some("ENG-1".to_owned()));
}

#[tokio::test]
async fn query_failing_with_500_is_retried() {
    let mut store = Store::seeded().with_issue("ENG-12", "Fix", "x");
    store.fail_after_processing = 1;
    let (url, fake) = start(store).await;
    assert_eq!(client(&url).get_issue("ENG-12").await.unwrap().id, "ENG-12");
    assert_eq!(fake.lock().unwrap().count("issue"), 2);
}

#[tokio::test]
async fn https_to_a_dead_port_is_unreachable_and_retriable() {
    // The build speaks TLS (rustls); port 9 (discard) has no listener.
    let linear = Linear::new("https://127.0.0.1:9/graphql", KEY, "ENG").unwrap().with_retry_policy(fast_retries());
    let err = linear.get_issue("ENG-1").await.unwrap_err();
    assert!(matches!(err, TrackerError::Unreachable { .. }) && err.retriable(), "{err:?}");
}
