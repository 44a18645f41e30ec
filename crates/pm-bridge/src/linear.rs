//! Linear as a deploy-ticket tracker, over its GraphQL API: one POST per operation, the
//! personal API key sent as-is in `Authorization` (Linear wants no `Bearer` for those keys),
//! the team given by its key and resolved to its id once, workflow states resolved by name.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::tracker::{NewIssue, RetryPolicy, Ticket, Tracker, TrackerError, retrying};

/// The public Linear GraphQL endpoint.
pub const DEFAULT_API_URL: &str = "https://api.linear.app/graphql";
/// Overrides the GraphQL endpoint (a proxy, or a fake server in tests).
pub const API_URL_ENV: &str = "LINEAR_API_URL";
/// The Linear personal API key (`lin_api_…`), sent verbatim as the `Authorization` header.
pub const API_KEY_ENV: &str = "LINEAR_API_KEY";

const TRACKER: &str = "linear";
/// Page size for comment and relation scans; Linear caps `first` at 250.
const PAGE_SIZE: u32 = 100;
/// Pages scanned before giving up: 20 pages of 100 comments is far beyond any deploy ticket.
const MAX_PAGES: u32 = 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an unexpected response body an error message quotes.
const BODY_SNIPPET_CHARS: usize = 300;

/// The API key: kept out of every `Debug` output and redacted from error messages, because
/// tracker errors end up in checkpoints and logs.
struct ApiKey {
    raw: String,
    header: HeaderValue,
}

impl ApiKey {
    fn new(raw: String) -> Result<Self, TrackerError> {
        if raw.trim().is_empty() {
            return Err(not_configured(format!("{API_KEY_ENV} is empty")));
        }
        let mut header = HeaderValue::from_str(&raw)
            .map_err(|_| not_configured(format!("{API_KEY_ENV} contains characters that cannot be sent in an HTTP header")))?;
        // Marking the header sensitive keeps it out of reqwest's and hyper's own debug output.
        header.set_sensitive(true);
        Ok(Self { raw, header })
    }

    /// Replaces the key wherever a server or transport message echoes it back.
    fn redact(&self, message: String) -> String {
        if message.contains(&self.raw) { message.replace(&self.raw, "****") } else { message }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(****)")
    }
}

/// A workflow state as the bridge needs it.
#[derive(Debug, Clone, Deserialize)]
struct WorkflowState {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    position: f64,
}

/// The Linear backend of [`Tracker`].
pub struct Linear {
    http: reqwest::Client,
    api_url: reqwest::Url,
    key: ApiKey,
    team_key: String,
    retry: RetryPolicy,
    team_id: OnceCell<String>,
    /// Workflow state ids by the name asked for; states rarely change during a deploy.
    states: Mutex<HashMap<String, WorkflowState>>,
    completed_state: OnceCell<WorkflowState>,
}

impl fmt::Debug for Linear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Linear")
            .field("api_url", &self.api_url.as_str())
            .field("key", &self.key)
            .field("team_key", &self.team_key)
            .field("retry", &self.retry)
            .field("team_id", &self.team_id.get())
            .finish_non_exhaustive()
    }
}

impl Linear {
    /// A client for `team_key` (such as `ENG`) at `api_url`. The key is sent verbatim, so an
    /// OAuth token works too when given as `Bearer <token>`.
    pub fn new(api_url: &str, api_key: impl Into<String>, team_key: &str) -> Result<Self, TrackerError> {
        let api_url =
            reqwest::Url::parse(api_url).map_err(|e| not_configured(format!("{API_URL_ENV} is not a valid URL ({api_url}): {e}")))?;
        let key = ApiKey::new(api_key.into())?;
        let team_key = team_key.trim();
        if team_key.is_empty() {
            return Err(not_configured("the Linear team key (pm.yaml linear.team) is empty".to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| not_configured(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            api_url,
            key,
            team_key: team_key.to_owned(),
            retry: RetryPolicy::default(),
            team_id: OnceCell::new(),
            states: Mutex::new(HashMap::new()),
            completed_state: OnceCell::new(),
        })
    }

    /// A client configured from `LINEAR_API_KEY` and `LINEAR_API_URL` (default
    /// [`DEFAULT_API_URL`]).
    pub fn from_env(team_key: &str) -> Result<Self, TrackerError> {
        Self::from_lookup(team_key, |name| std::env::var(name).ok())
    }

    /// Like [`Linear::from_env`], reading the variables through `lookup`, so callers holding
    /// their own environment (and tests) need not touch the process environment.
    pub fn from_lookup(team_key: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, TrackerError> {
        let key =
            lookup(API_KEY_ENV).filter(|k| !k.trim().is_empty()).ok_or_else(|| not_configured(format!("{API_KEY_ENV} is not set")))?;
        let url = lookup(API_URL_ENV).filter(|u| !u.trim().is_empty()).unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        Self::new(url.trim(), key, team_key)
    }

    /// Replaces the retry policy every call runs under.
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The team key this client files issues under.
    pub fn team_key(&self) -> &str {
        &self.team_key
    }

    /// The team's id, looked up by its key on first use.
    async fn team_id(&self) -> Result<&str, TrackerError> {
        let id = self
            .team_id
            .get_or_try_init(|| async {
                #[derive(Deserialize)]
                struct Data {
                    teams: Nodes<Team>,
                }
                #[derive(Deserialize)]
                struct Team {
                    id: String,
                    key: String,
                }
                let data: Data = self.graphql(&TEAM, json!({ "filter": { "key": { "eqIgnoreCase": self.team_key } } })).await?;
                let mut teams = data.teams.nodes;
                if teams.is_empty() {
                    return Err(not_found(format!("team {} does not exist or the API key cannot see it", self.team_key)));
                }
                // Prefer the exact spelling should two keys differ only in case.
                let index = teams.iter().position(|t| t.key == self.team_key).unwrap_or(0);
                Ok(teams.swap_remove(index).id)
            })
            .await?;
        Ok(id)
    }

    /// The team's workflow state called `name` (case-insensitively, exact spelling preferred).
    async fn state_named(&self, name: &str) -> Result<WorkflowState, TrackerError> {
        if let Some(state) = self.cached_state(name) {
            return Ok(state);
        }
        let team_id = self.team_id().await?;
        let filter = json!({ "team": { "id": { "eq": team_id } }, "name": { "eqIgnoreCase": name } });
        let data: StatesData = self.graphql(&STATES, json!({ "filter": filter })).await?;
        let mut states = data.workflow_states.nodes;
        let index = states.iter().position(|s| s.name == name).or_else(|| states.iter().position(|s| s.name.eq_ignore_ascii_case(name)));
        let Some(index) = index else {
            return Err(not_found(format!("workflow state \"{name}\" does not exist in team {}", self.team_key)));
        };
        let state = states.swap_remove(index);
        if let Ok(mut cache) = self.states.lock() {
            cache.insert(name.to_owned(), state.clone());
        }
        Ok(state)
    }

    fn cached_state(&self, name: &str) -> Option<WorkflowState> {
        self.states.lock().ok().and_then(|cache| cache.get(name).cloned())
    }

    /// The team's first state of type `completed` (lowest position), which closing moves to.
    async fn completed_state(&self) -> Result<&WorkflowState, TrackerError> {
        self.completed_state
            .get_or_try_init(|| async {
                let team_id = self.team_id().await?;
                let filter = json!({ "team": { "id": { "eq": team_id } }, "type": { "eq": "completed" } });
                let data: StatesData = self.graphql(&STATES, json!({ "filter": filter })).await?;
                data.workflow_states
                    .nodes
                    .into_iter()
                    .filter(|s| s.kind == "completed")
                    .min_by(|a, b| a.position.total_cmp(&b.position))
                    .ok_or_else(|| not_found(format!("team {} has no workflow state of type completed", self.team_key)))
            })
            .await
    }

    /// Ids of the labels named in `names` that issues of the team can carry: the team's own
    /// labels first, then workspace labels. Names without such a label are logged and skipped,
    /// because a missing label must not stop the deploy ticket from being filed.
    async fn label_ids(&self, names: &[&str]) -> Result<Vec<String>, TrackerError> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "issueLabels")]
            issue_labels: Nodes<Label>,
        }
        #[derive(Deserialize)]
        struct Label {
            id: String,
            name: String,
            team: Option<IdOnly>,
        }
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let team_id = self.team_id().await?;
        let wanted: Vec<Value> = names.iter().map(|n| json!({ "name": { "eqIgnoreCase": n } })).collect();
        let data: Data = self.graphql(&LABELS, json!({ "filter": { "or": wanted } })).await?;
        let labels = data.issue_labels.nodes;
        let mut ids = Vec::new();
        for name in names {
            let usable = |l: &&Label| l.name.eq_ignore_ascii_case(name);
            let own_team = labels.iter().filter(usable).find(|l| l.team.as_ref().is_some_and(|t| t.id == team_id));
            let workspace = labels.iter().filter(usable).find(|l| l.team.is_none());
            match own_team.or(workspace) {
                Some(label) if !ids.contains(&label.id) => ids.push(label.id.clone()),
                Some(_) => {}
                None => tracing::warn!(
                    tracker = TRACKER,
                    label = %name,
                    team = %self.team_key,
                    "no Linear label of this name in the team or workspace; creating the issue without it"
                ),
            }
        }
        Ok(ids)
    }

    /// Walks a connection of the issue (`comments`, `relations`) page by page until `hit`
    /// matches a node. Gives up (logging it) after [`MAX_PAGES`] pages.
    async fn scan_issue<N: DeserializeOwned>(
        &self,
        operation: &Operation,
        field: &str,
        issue: &Ticket,
        mut hit: impl FnMut(&N) -> bool,
    ) -> Result<bool, TrackerError> {
        #[derive(Deserialize)]
        #[serde(bound = "N: DeserializeOwned")]
        struct Data<N> {
            issue: Option<HashMap<String, Page<N>>>,
        }
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let data: Data<N> = self.graphql(operation, json!({ "id": api_id(issue), "first": PAGE_SIZE, "after": after })).await?;
            let page = data
                .issue
                .ok_or_else(|| not_found(format!("issue {} does not exist", issue.id)))?
                .remove(field)
                .ok_or_else(|| api_error(200, format!("{}: the response has no {field}", operation.name)))?;
            if page.nodes.iter().any(&mut hit) {
                return Ok(true);
            }
            match (page.page_info.has_next_page, page.page_info.end_cursor) {
                (true, Some(cursor)) => after = Some(cursor),
                _ => return Ok(false),
            }
        }
        tracing::warn!(
            tracker = TRACKER,
            issue = %issue.id,
            field,
            pages = MAX_PAGES,
            "stopped scanning the issue after the page limit; treating the item as absent"
        );
        Ok(false)
    }

    async fn update_state(&self, ticket: &Ticket, state: &WorkflowState) -> Result<(), TrackerError> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "issueUpdate")]
            issue_update: Payload,
        }
        let data: Data = self.graphql(&ISSUE_UPDATE, json!({ "id": api_id(ticket), "input": { "stateId": state.id } })).await?;
        data.issue_update.check(ISSUE_UPDATE.name)
    }

    /// Sends one operation, retrying rate limits and transient failures under the policy. A
    /// mutation that is not idempotent is not retried once the server may have applied it (a
    /// timeout, a 5xx): the error goes back to the bridge, whose marker search on the next
    /// attempt decides whether the write is still needed, so it never lands twice.
    async fn graphql<T: DeserializeOwned>(&self, operation: &Operation, variables: Value) -> Result<T, TrackerError> {
        let outcome = retrying(&self.retry, || async {
            match self.post_once(operation, &variables).await {
                Ok(data) => Ok(Ok(data)),
                Err(Failure { error, maybe_applied: true }) if !operation.idempotent => {
                    tracing::warn!(
                        tracker = TRACKER,
                        operation = operation.name,
                        error = %error,
                        "the mutation may have been applied; not retrying it here"
                    );
                    Ok(Err(error))
                }
                Err(failure) => Err(failure.error),
            }
        })
        .await;
        outcome.and_then(|result| result)
    }

    async fn post_once<T: DeserializeOwned>(&self, operation: &Operation, variables: &Value) -> Result<T, Failure> {
        let body = json!({ "operationName": operation.name, "query": operation.query, "variables": variables });
        tracing::debug!(tracker = TRACKER, operation = operation.name, "Linear GraphQL request");
        let response = self
            .http
            .post(self.api_url.clone())
            .header(AUTHORIZATION, self.key.header.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| Failure { maybe_applied: !e.is_connect() && !e.is_builder(), error: self.transport_error(operation, &e) })?;
        let status = response.status().as_u16();
        let wait = rate_limit_wait(response.headers());
        let bytes = response.bytes().await.map_err(|e| Failure { maybe_applied: true, error: self.transport_error(operation, &e) })?;
        let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
        let errors: Vec<GraphqlError> =
            parsed.as_ref().and_then(|v| v.get("errors")).and_then(|e| serde_json::from_value(e.clone()).ok()).unwrap_or_default();
        if !errors.is_empty() || !(200..300).contains(&status) {
            let error = self.failure(operation, status, wait, &errors, &bytes);
            let maybe_applied = matches!(error, TrackerError::Api { status, .. } if status >= 500);
            return Err(Failure { error, maybe_applied });
        }
        let data = parsed
            .and_then(|mut v| v.get_mut("data").map(Value::take))
            .filter(|d| !d.is_null())
            .ok_or_else(|| api_error(status, format!("{}: the response has no data: {}", operation.name, snippet(&bytes))))
            .map_err(Failure::settled)?;
        serde_json::from_value(data)
            .map_err(|e| api_error(status, format!("{}: unexpected response shape: {e}", operation.name)))
            .map_err(Failure::settled)
    }

    fn transport_error(&self, operation: &Operation, error: &reqwest::Error) -> TrackerError {
        let mut message = format!("{}: {error}", operation.name);
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        let message = self.key.redact(message);
        if error.is_builder() {
            // The request could not even be built (an unsupported scheme, say): a setup problem.
            TrackerError::NotConfigured { tracker: TRACKER.to_owned(), message }
        } else {
            TrackerError::Unreachable { tracker: TRACKER.to_owned(), message }
        }
    }

    /// Classifies a failed response. `RATELIMITED` wins whatever the HTTP status, since Linear
    /// reports rate limits as HTTP 400.
    fn failure(&self, operation: &Operation, status: u16, wait: Option<Duration>, errors: &[GraphqlError], body: &[u8]) -> TrackerError {
        let tracker = TRACKER.to_owned();
        let described =
            if errors.is_empty() { snippet(body) } else { errors.iter().map(GraphqlError::describe).collect::<Vec<_>>().join("; ") };
        let message = self.key.redact(format!("{}: {described}", operation.name));
        let kinds: Vec<ErrorKind> = errors.iter().map(GraphqlError::kind).collect();
        if kinds.contains(&ErrorKind::RateLimited) || status == 429 {
            return TrackerError::RateLimited { tracker, message, retry_after: wait };
        }
        if status == 401 || kinds.contains(&ErrorKind::Authentication) {
            return TrackerError::Unauthorized { tracker, message };
        }
        if status == 403 || kinds.contains(&ErrorKind::Forbidden) {
            return TrackerError::Forbidden { tracker, message };
        }
        if kinds.contains(&ErrorKind::NotFound) {
            return TrackerError::NotFound { tracker, message };
        }
        let reported = errors.iter().find_map(|e| e.extensions.as_ref().and_then(|x| x.status_code)).unwrap_or(status);
        // Linear's internal errors and lock timeouts are transient; make them retriable even
        // when they arrive with a 200 or 400.
        let status = if kinds.contains(&ErrorKind::Transient) { reported.max(500) } else { reported };
        TrackerError::Api { tracker, status, message }
    }
}

impl Tracker for Linear {
    fn name(&self) -> &'static str {
        TRACKER
    }

    async fn find_by_marker(&self, marker: &str) -> Result<Option<Ticket>, TrackerError> {
        #[derive(Deserialize)]
        struct Data {
            issues: Nodes<IssueNode>,
        }
        let team_id = self.team_id().await?;
        let filter = json!({ "team": { "id": { "eq": team_id } }, "description": { "contains": marker } });
        let data: Data = self.graphql(&FIND_BY_MARKER, json!({ "filter": filter })).await?;
        // The filter already matched; checking again guards against a looser server-side match.
        let mut matches = data.issues.nodes.into_iter().filter(|i| i.description.as_deref().is_some_and(|d| d.contains(marker)));
        let first = matches.next();
        if let Some(other) = matches.next() {
            tracing::warn!(tracker = TRACKER, marker, other = %other.identifier, "several Linear issues carry the same marker; using the first");
        }
        Ok(first.map(IssueNode::into_ticket))
    }

    async fn create_issue(&self, issue: &NewIssue) -> Result<Ticket, TrackerError> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "issueCreate")]
            issue_create: Payload,
        }
        let team_id = self.team_id().await?.to_owned();
        let names: Vec<&str> = issue.issue_type.iter().chain(&issue.labels).map(String::as_str).filter(|n| !n.trim().is_empty()).collect();
        let label_ids = self.label_ids(&names).await?;
        let mut input = json!({ "teamId": team_id, "title": issue.title, "description": issue.body });
        if !label_ids.is_empty() {
            input["labelIds"] = json!(label_ids);
        }
        let data: Data = self.graphql(&ISSUE_CREATE, json!({ "input": input })).await?;
        data.issue_create.check(ISSUE_CREATE.name)?;
        data.issue_create
            .issue
            .map(IssueNode::into_ticket)
            .ok_or_else(|| api_error(200, format!("{}: success without an issue", ISSUE_CREATE.name)))
    }

    async fn get_issue(&self, id: &str) -> Result<Ticket, TrackerError> {
        #[derive(Deserialize)]
        struct Data {
            issue: Option<IssueNode>,
        }
        let id = id.trim();
        let data: Data = self.graphql(&ISSUE, json!({ "id": id })).await?;
        data.issue.map(IssueNode::into_ticket).ok_or_else(|| not_found(format!("issue {id} does not exist")))
    }

    async fn has_comment(&self, ticket: &Ticket, marker: &str) -> Result<bool, TrackerError> {
        #[derive(Deserialize)]
        struct Comment {
            body: String,
        }
        self.scan_issue(&COMMENTS, "comments", ticket, |c: &Comment| c.body.contains(marker)).await
    }

    async fn add_comment(&self, ticket: &Ticket, body: &str) -> Result<(), TrackerError> {
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "commentCreate")]
            comment_create: Payload,
        }
        let data: Data = self.graphql(&COMMENT_CREATE, json!({ "input": { "issueId": api_id(ticket), "body": body } })).await?;
        data.comment_create.check(COMMENT_CREATE.name)
    }

    async fn set_state(&self, ticket: &Ticket, state: &str) -> Result<(), TrackerError> {
        let state = self.state_named(state).await?;
        self.update_state(ticket, &state).await
    }

    async fn close(&self, ticket: &Ticket) -> Result<(), TrackerError> {
        let state = self.completed_state().await?.clone();
        self.update_state(ticket, &state).await
    }

    async fn link(&self, deploy: &Ticket, linked: &Ticket) -> Result<bool, TrackerError> {
        #[derive(Deserialize)]
        struct Relation {
            #[serde(rename = "type")]
            kind: String,
            #[serde(rename = "relatedIssue")]
            related_issue: RelatedIssue,
        }
        #[derive(Deserialize)]
        struct RelatedIssue {
            id: String,
            identifier: String,
        }
        #[derive(Deserialize)]
        struct Data {
            #[serde(rename = "issueRelationCreate")]
            issue_relation_create: Payload,
        }
        // Relations carry no marker, so look for an existing one to keep retries idempotent.
        let exists = self
            .scan_issue(&RELATIONS, "relations", deploy, |r: &Relation| {
                r.kind == "related" && (r.related_issue.id == api_id(linked) || r.related_issue.identifier == linked.id)
            })
            .await?;
        if exists {
            return Ok(true);
        }
        let input = json!({ "issueId": api_id(deploy), "relatedIssueId": api_id(linked), "type": "related" });
        let data: Data = self.graphql(&RELATION_CREATE, json!({ "input": input })).await?;
        data.issue_relation_create.check(RELATION_CREATE.name)?;
        Ok(true)
    }
}

/// The id to hand the API: the UUID when known, else the identifier (`ENG-12`), which Linear
/// accepts too.
fn api_id(ticket: &Ticket) -> &str {
    if ticket.key.is_empty() { &ticket.id } else { &ticket.key }
}

/// A failed request, and whether the server may nonetheless have applied it.
struct Failure {
    error: TrackerError,
    maybe_applied: bool,
}

impl Failure {
    /// A failure after the server answered in full: nothing half-done to worry about.
    fn settled(error: TrackerError) -> Self {
        Self { error, maybe_applied: false }
    }
}

/// A named GraphQL operation; the name shows up in Linear's logs and in our error messages.
struct Operation {
    name: &'static str,
    query: &'static str,
    /// Whether sending it twice does no harm (queries, setting a state); creations are not.
    idempotent: bool,
}

const TEAM: Operation = Operation {
    name: "OcDeployTeam",
    query: "query OcDeployTeam($filter: TeamFilter!) { teams(filter: $filter, first: 10) { nodes { id key name } } }",
    idempotent: true,
};

const FIND_BY_MARKER: Operation = Operation {
    name: "OcDeployFindByMarker",
    query: "query OcDeployFindByMarker($filter: IssueFilter!) { issues(filter: $filter, first: 10) { \
            nodes { id identifier title description url state { name } } } }",
    idempotent: true,
};

const LABELS: Operation = Operation {
    name: "OcDeployLabels",
    query: "query OcDeployLabels($filter: IssueLabelFilter!) { issueLabels(filter: $filter, first: 100) { \
            nodes { id name team { id } } } }",
    idempotent: true,
};

const ISSUE_CREATE: Operation = Operation {
    name: "OcDeployIssueCreate",
    query: "mutation OcDeployIssueCreate($input: IssueCreateInput!) { issueCreate(input: $input) { \
            success issue { id identifier title url state { name } } } }",
    idempotent: false,
};

const ISSUE: Operation = Operation {
    name: "OcDeployIssue",
    query: "query OcDeployIssue($id: String!) { issue(id: $id) { id identifier title url state { name } } }",
    idempotent: true,
};

const COMMENTS: Operation = Operation {
    name: "OcDeployComments",
    query: "query OcDeployComments($id: String!, $first: Int!, $after: String) { issue(id: $id) { \
            comments(first: $first, after: $after) { nodes { body } pageInfo { hasNextPage endCursor } } } }",
    idempotent: true,
};

const COMMENT_CREATE: Operation = Operation {
    name: "OcDeployCommentCreate",
    query: "mutation OcDeployCommentCreate($input: CommentCreateInput!) { commentCreate(input: $input) { success comment { id } } }",
    idempotent: false,
};

const STATES: Operation = Operation {
    name: "OcDeployStates",
    query: "query OcDeployStates($filter: WorkflowStateFilter!) { workflowStates(filter: $filter, first: 50) { \
            nodes { id name type position } } }",
    idempotent: true,
};

const ISSUE_UPDATE: Operation = Operation {
    name: "OcDeployIssueUpdate",
    query: "mutation OcDeployIssueUpdate($id: String!, $input: IssueUpdateInput!) { issueUpdate(id: $id, input: $input) { \
            success issue { id state { name } } } }",
    idempotent: true,
};

const RELATIONS: Operation = Operation {
    name: "OcDeployRelations",
    query: "query OcDeployRelations($id: String!, $first: Int!, $after: String) { issue(id: $id) { \
            relations(first: $first, after: $after) { nodes { type relatedIssue { id identifier } } pageInfo { hasNextPage endCursor } } } }",
    idempotent: true,
};

const RELATION_CREATE: Operation = Operation {
    name: "OcDeployRelationCreate",
    query: "mutation OcDeployRelationCreate($input: IssueRelationCreateInput!) { issueRelationCreate(input: $input) { \
            success issueRelation { id type } } }",
    idempotent: false,
};

#[derive(Deserialize)]
struct Nodes<N> {
    nodes: Vec<N>,
}

#[derive(Deserialize)]
struct Page<N> {
    nodes: Vec<N>,
    #[serde(rename = "pageInfo")]
    page_info: PageInfo,
}

#[derive(Deserialize)]
struct PageInfo {
    #[serde(rename = "hasNextPage")]
    has_next_page: bool,
    #[serde(rename = "endCursor")]
    end_cursor: Option<String>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize)]
struct StatesData {
    #[serde(rename = "workflowStates")]
    workflow_states: Nodes<WorkflowState>,
}

#[derive(Deserialize)]
struct IssueNode {
    id: String,
    identifier: String,
    title: String,
    url: Option<String>,
    #[serde(default)]
    description: Option<String>,
    state: Option<StateName>,
}

#[derive(Deserialize)]
struct StateName {
    name: String,
}

impl IssueNode {
    fn into_ticket(self) -> Ticket {
        Ticket { id: self.identifier, key: self.id, url: self.url, title: self.title, state: self.state.map(|s| s.name) }
    }
}

/// A mutation payload: `{ success, issue? }`. Only `issueCreate` needs the issue back.
#[derive(Deserialize)]
struct Payload {
    success: bool,
    #[serde(default)]
    issue: Option<IssueNode>,
}

impl Payload {
    fn check(&self, operation: &str) -> Result<(), TrackerError> {
        if self.success { Ok(()) } else { Err(api_error(200, format!("{operation}: Linear answered success: false"))) }
    }
}

#[derive(Debug, Deserialize)]
struct GraphqlError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    extensions: Option<Extensions>,
}

#[derive(Debug, Deserialize)]
struct Extensions {
    code: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(rename = "statusCode")]
    status_code: Option<u16>,
    #[serde(rename = "userPresentableMessage")]
    user_presentable_message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    RateLimited,
    Authentication,
    Forbidden,
    NotFound,
    Transient,
    Other,
}

impl GraphqlError {
    /// What the error means, from `extensions.code`, falling back to the `extensions.type` the
    /// SDK reads, then to the message for Linear's "Entity not found".
    fn kind(&self) -> ErrorKind {
        let ext = self.extensions.as_ref();
        let code = ext.and_then(|x| x.code.as_deref()).unwrap_or_default();
        let kind = ext.and_then(|x| x.kind.as_deref()).unwrap_or_default();
        match (code, kind) {
            ("RATELIMITED", _) | (_, "ratelimited") => ErrorKind::RateLimited,
            ("AUTHENTICATION_ERROR", _) | (_, "authentication error") => ErrorKind::Authentication,
            ("FORBIDDEN", _) | (_, "forbidden") => ErrorKind::Forbidden,
            ("INTERNAL_ERROR" | "LOCK_TIMEOUT" | "NETWORK_ERROR", _) | (_, "internal error" | "lock timeout" | "network error") => {
                ErrorKind::Transient
            }
            _ if self.message.to_ascii_lowercase().contains("not found") => ErrorKind::NotFound,
            _ => ErrorKind::Other,
        }
    }

    fn describe(&self) -> String {
        let ext = self.extensions.as_ref();
        let mut text = self.message.clone();
        if let Some(code) = ext.and_then(|x| x.code.as_deref()) {
            text.push_str(&format!(" ({code})"));
        }
        if let Some(detail) = ext.and_then(|x| x.user_presentable_message.as_deref()).filter(|d| *d != self.message) {
            text.push_str(&format!(": {detail}"));
        }
        text
    }
}

/// The wait Linear asks for: `retry-after` (seconds), else the reset time (epoch ms) of an
/// exhausted request or complexity budget.
fn rate_limit_wait(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(seconds) = header("retry-after").and_then(|v| v.parse::<f64>().ok())
        && seconds.is_finite()
        && seconds >= 0.0
    {
        return Some(Duration::from_secs_f64(seconds));
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    let until_reset = |remaining: &str, reset: &str| {
        let exhausted = header(remaining).and_then(|v| v.parse::<f64>().ok()).is_some_and(|r| r <= 0.0);
        let reset_ms = header(reset).and_then(|v| v.parse::<i64>().ok())?;
        exhausted.then(|| Duration::from_millis(u64::try_from(reset_ms.saturating_sub(now_ms)).unwrap_or(0)))
    };
    let requests = until_reset("x-ratelimit-requests-remaining", "x-ratelimit-requests-reset");
    let complexity = until_reset("x-ratelimit-complexity-remaining", "x-ratelimit-complexity-reset");
    requests.max(complexity)
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(BODY_SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn not_configured(message: String) -> TrackerError {
    TrackerError::NotConfigured { tracker: TRACKER.to_owned(), message }
}

fn not_found(message: String) -> TrackerError {
    TrackerError::NotFound { tracker: TRACKER.to_owned(), message }
}

fn api_error(status: u16, message: String) -> TrackerError {
    TrackerError::Api { tracker: TRACKER.to_owned(), status, message }
}
