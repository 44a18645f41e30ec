//! GitHub as a tracker, over the REST issues API: deploy tickets are issues, states are labels
//! (GitHub has no workflow states), and failures are classified from the status and the
//! rate-limit headers as GitHub documents them.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, LINK, RETRY_AFTER};
use reqwest::{Method, Url};
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::tracker::{NewIssue, RetryPolicy, Ticket, Tracker, TrackerError, retrying};

/// Environment variable: the token for the REST API (a PAT or an Actions `GITHUB_TOKEN`) with
/// read/write access to the repository's issues.
pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
/// Environment variable: the REST API endpoint, for GitHub Enterprise Server
/// (`https://host/api/v3`) or a test server. Default [`DEFAULT_API_URL`].
pub const GITHUB_API_URL: &str = "GITHUB_API_URL";
pub const DEFAULT_API_URL: &str = "https://api.github.com";
/// The REST API version this client is written against (`X-GitHub-Api-Version`).
pub const API_VERSION: &str = "2022-11-28";

const TRACKER: &str = "github";
const MEDIA_TYPE: &str = "application/vnd.github+json";
/// GitHub refuses requests without a `User-Agent`.
const USER_AGENT: &str = concat!("oc-deploy/", env!("CARGO_PKG_VERSION"));
/// The largest page GitHub serves.
const PER_PAGE: u32 = 100;
/// Comment pages read before giving up on finding a marker (5,000 comments).
const MAX_COMMENT_PAGES: u32 = 50;
/// GitHub's advice for a secondary rate limit that names no wait.
const DEFAULT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// Error messages quote at most this much of a response body.
const MAX_MESSAGE_CHARS: usize = 300;

/// The `Authorization` header value. It is only ever handed to reqwest (marked sensitive); its
/// `Debug` prints a mask.
struct Token(HeaderValue);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// The GitHub REST issues API for one repository.
pub struct GitHub {
    http: reqwest::Client,
    api_url: Url,
    owner: String,
    name: String,
    token: Token,
    retry: RetryPolicy,
}

impl fmt::Debug for GitHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHub")
            .field("api_url", &self.api_url.as_str())
            .field("repo", &format_args!("{}/{}", self.owner, self.name))
            .field("token", &self.token)
            .field("retry", &self.retry)
            .finish()
    }
}

fn not_configured(message: impl Into<String>) -> TrackerError {
    TrackerError::NotConfigured { tracker: TRACKER.into(), message: message.into() }
}

fn not_found(message: impl Into<String>) -> TrackerError {
    TrackerError::NotFound { tracker: TRACKER.into(), message: message.into() }
}

impl GitHub {
    /// A client for `repo` (`owner/name`) at `api_url` (for example [`DEFAULT_API_URL`]).
    pub fn new(api_url: &str, token: impl Into<String>, repo: &str) -> Result<Self, TrackerError> {
        let api_url = Url::parse(api_url.trim()).map_err(|e| not_configured(format!("the GitHub API URL is not a URL: {e}")))?;
        if !matches!(api_url.scheme(), "http" | "https") || api_url.cannot_be_a_base() {
            return Err(not_configured(format!("the GitHub API URL must be http(s), not {}:", api_url.scheme())));
        }
        let (owner, name) = repo
            .split_once('/')
            .filter(|(owner, name)| is_repo_part(owner) && is_repo_part(name))
            .ok_or_else(|| not_configured(format!("the repository must be `owner/name`, not {repo:?}")))?;
        let token = token.into();
        if token.trim().is_empty() {
            return Err(not_configured(format!("{GITHUB_TOKEN} is empty")));
        }
        // The value is never formatted into a message: a bad token is reported by name only.
        let mut auth = HeaderValue::try_from(format!("Bearer {}", token.trim()))
            .map_err(|_| not_configured(format!("{GITHUB_TOKEN} contains characters not allowed in an HTTP header")))?;
        auth.set_sensitive(true);

        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MEDIA_TYPE));
        headers.insert("x-github-api-version", HeaderValue::from_static(API_VERSION));
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| not_configured(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http, api_url, owner: owner.to_owned(), name: name.to_owned(), token: Token(auth), retry: RetryPolicy::default() })
    }

    /// A client from [`GITHUB_TOKEN`] and [`GITHUB_API_URL`].
    pub fn from_env(repo: &str) -> Result<Self, TrackerError> {
        Self::from_vars(repo, |name| std::env::var(name).ok())
    }

    /// A client from variables looked up by `var` (the environment, or a test's map).
    pub fn from_vars(repo: &str, var: impl Fn(&str) -> Option<String>) -> Result<Self, TrackerError> {
        let set = |name| var(name).filter(|v| !v.trim().is_empty());
        let token = set(GITHUB_TOKEN).ok_or_else(|| not_configured(format!("{GITHUB_TOKEN} is not set")))?;
        let api_url = set(GITHUB_API_URL).unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        Self::new(&api_url, token, repo)
    }

    /// Replaces the default retry policy (tests use short waits).
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// `owner/name`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    pub fn api_url(&self) -> &Url {
        &self.api_url
    }

    /// `{api_url}/{segments…}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.api_url.clone();
        // `new` only accepts base URLs, for which `path_segments_mut` always succeeds.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn issue_url(&self, number: u64, rest: &[&str]) -> Url {
        let number = number.to_string();
        let mut segments = vec!["repos", &self.owner, &self.name, "issues", &number];
        segments.extend_from_slice(rest);
        self.url(&segments)
    }

    /// One request, without retries: a 2xx response, or the failure classified.
    async fn send(&self, method: Method, url: Url, body: Option<&serde_json::Value>) -> Result<reqwest::Response, TrackerError> {
        tracing::debug!(%method, path = url.path(), "github request");
        let mut request = self.http.request(method, url).header(AUTHORIZATION, self.token.0.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| TrackerError::Unreachable { tracker: TRACKER.into(), message: error_chain(&e) })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        // A body that cannot be read still leaves the status and headers to classify.
        let body = response.text().await.unwrap_or_default();
        Err(classify(status.as_u16(), &headers, &body, unix_now()))
    }

    /// One call with the retry policy, decoding the JSON answer.
    async fn call<T: DeserializeOwned>(&self, method: Method, url: &Url, body: Option<&serde_json::Value>) -> Result<T, TrackerError> {
        let method = &method;
        retrying(&self.retry, move || async move { decode(self.send(method.clone(), url.clone(), body).await?).await }).await
    }

    /// The issue number a ticket id names: `#12`, `12`, or `owner/repo#12` for this repository.
    fn issue_number(&self, id: &str) -> Result<u64, TrackerError> {
        let id = id.trim();
        let (repo, number) = id.split_once('#').unwrap_or(("", id));
        if !repo.is_empty() && !repo.eq_ignore_ascii_case(&self.repo()) {
            return Err(not_found(format!("{id} is in another repository than {}; only its own issues are supported", self.repo())));
        }
        parse_number(number).ok_or_else(|| not_found(format!("{id:?} is not a GitHub issue id (`#12`, `12` or `{}#12`)", self.repo())))
    }

    /// One page of an issue's comments, and whether the `Link` header names a next page.
    async fn comments_page(&self, number: u64, page: u32) -> Result<(Vec<Comment>, bool), TrackerError> {
        let mut url = self.issue_url(number, &["comments"]);
        url.query_pairs_mut().append_pair("per_page", &PER_PAGE.to_string()).append_pair("page", &page.to_string());
        let url = &url;
        retrying(&self.retry, move || async move {
            let response = self.send(Method::GET, url.clone(), None).await?;
            let next = has_next_link(response.headers());
            Ok((decode(response).await?, next))
        })
        .await
    }
}

impl Tracker for GitHub {
    fn name(&self) -> &'static str {
        TRACKER
    }

    /// Searches issue bodies with `repo:… is:issue in:body "marker"`. Search matches words, not
    /// punctuation, so every hit is checked for the exact marker; pull requests are skipped.
    async fn find_by_marker(&self, marker: &str) -> Result<Option<Ticket>, TrackerError> {
        // A search phrase cannot contain a quote; the exact check below still uses the full marker.
        let query = format!("repo:{} is:issue in:body \"{}\"", self.repo(), marker.replace('"', " "));
        let mut url = self.url(&["search", "issues"]);
        // Oldest first: if duplicates ever exist, the first one created is the deploy ticket.
        url.query_pairs_mut()
            .append_pair("q", &query)
            .append_pair("sort", "created")
            .append_pair("order", "asc")
            .append_pair("per_page", &PER_PAGE.to_string());
        let result: SearchResult = self.call(Method::GET, &url, None).await?;
        if result.incomplete_results {
            tracing::warn!(marker, "GitHub search returned incomplete results");
        }
        let found =
            result.items.into_iter().find(|item| item.pull_request.is_none() && item.body.as_deref().is_some_and(|b| b.contains(marker)));
        Ok(found.map(Issue::into_ticket))
    }

    /// Creates the issue with the issue type and the labels as labels (GitHub creates missing ones).
    async fn create_issue(&self, issue: &NewIssue) -> Result<Ticket, TrackerError> {
        let mut labels: Vec<&str> = Vec::new();
        for label in issue.issue_type.iter().chain(&issue.labels).map(|l| l.trim()) {
            if !label.is_empty() && !labels.contains(&label) {
                labels.push(label);
            }
        }
        let body = serde_json::json!({ "title": issue.title, "body": issue.body, "labels": labels });
        let url = self.url(&["repos", &self.owner, &self.name, "issues"]);
        let created: Issue = self.call(Method::POST, &url, Some(&body)).await?;
        Ok(created.into_ticket())
    }

    async fn get_issue(&self, id: &str) -> Result<Ticket, TrackerError> {
        let number = self.issue_number(id)?;
        let issue: Issue = self.call(Method::GET, &self.issue_url(number, &[]), None).await?;
        Ok(issue.into_ticket())
    }

    /// Reads the comments 100 at a time, following the `Link` header, and stops at the first match.
    async fn has_comment(&self, ticket: &Ticket, marker: &str) -> Result<bool, TrackerError> {
        let number = ticket_number(ticket)?;
        for page in 1..=MAX_COMMENT_PAGES {
            let (comments, next) = self.comments_page(number, page).await?;
            if comments.iter().any(|c| c.body.as_deref().is_some_and(|b| b.contains(marker))) {
                return Ok(true);
            }
            if !next {
                return Ok(false);
            }
        }
        // Saying "absent" could duplicate a comment and "present" could drop one: a human decides.
        Err(TrackerError::Api {
            tracker: TRACKER.into(),
            status: 200,
            message: format!("issue #{number} has more than {} comments; stopped looking for the marker", MAX_COMMENT_PAGES * PER_PAGE),
        })
    }

    async fn add_comment(&self, ticket: &Ticket, body: &str) -> Result<(), TrackerError> {
        let number = ticket_number(ticket)?;
        let body = serde_json::json!({ "body": body });
        let _: IgnoredAny = self.call(Method::POST, &self.issue_url(number, &["comments"]), Some(&body)).await?;
        Ok(())
    }

    /// Adds a label named `state`; other labels stay, and no repository label is created
    /// explicitly (GitHub creates a missing label when it is added to an issue).
    async fn set_state(&self, ticket: &Ticket, state: &str) -> Result<(), TrackerError> {
        let number = ticket_number(ticket)?;
        let body = serde_json::json!({ "labels": [state] });
        let _: IgnoredAny = self.call(Method::POST, &self.issue_url(number, &["labels"]), Some(&body)).await?;
        Ok(())
    }

    async fn close(&self, ticket: &Ticket) -> Result<(), TrackerError> {
        let number = ticket_number(ticket)?;
        let body = serde_json::json!({ "state": "closed" });
        let _: IgnoredAny = self.call(Method::PATCH, &self.issue_url(number, &[]), Some(&body)).await?;
        Ok(())
    }

    /// GitHub issues have no relations the REST API can set; the deploy ticket's body links them.
    async fn link(&self, _deploy: &Ticket, _linked: &Ticket) -> Result<bool, TrackerError> {
        Ok(false)
    }
}

/// The fields of GitHub's issue object the bridge reads.
#[derive(serde::Deserialize)]
struct Issue {
    number: u64,
    title: String,
    html_url: Option<String>,
    state: Option<String>,
    body: Option<String>,
    /// Present only on pull requests, which the issues endpoints also return.
    pull_request: Option<serde_json::Value>,
}

impl Issue {
    fn into_ticket(self) -> Ticket {
        Ticket { id: format!("#{}", self.number), key: self.number.to_string(), url: self.html_url, title: self.title, state: self.state }
    }
}

#[derive(serde::Deserialize)]
struct SearchResult {
    #[serde(default)]
    incomplete_results: bool,
    items: Vec<Issue>,
}

#[derive(serde::Deserialize)]
struct Comment {
    body: Option<String>,
}

fn is_repo_part(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A positive issue number written in digits only (`u64::from_str` would also take `+12`).
fn parse_number(text: &str) -> Option<u64> {
    let digits_only = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    text.parse().ok().filter(|n| digits_only && *n > 0)
}

/// The issue number of a ticket this backend made (`Ticket::key`).
fn ticket_number(ticket: &Ticket) -> Result<u64, TrackerError> {
    parse_number(&ticket.key).ok_or_else(|| not_found(format!("ticket {} has key {:?}, not a GitHub issue number", ticket.id, ticket.key)))
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, TrackerError> {
    let status = response.status().as_u16();
    // A body cut off mid-way is a network failure, worth retrying.
    let bytes = response.bytes().await.map_err(|e| TrackerError::Unreachable { tracker: TRACKER.into(), message: error_chain(&e) })?;
    serde_json::from_slice(&bytes).map_err(|e| TrackerError::Api {
        tracker: TRACKER.into(),
        status,
        message: format!("unexpected response body: {e}"),
    })
}

/// An error and its sources on one line: reqwest's own message alone ("error sending request")
/// hides the cause ("Connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Maps a failed response to a [`TrackerError`] the way GitHub documents its errors: 403 and
/// 429 are rate limits when `retry-after`, `x-ratelimit-remaining: 0` or a "secondary rate limit"
/// message says so, and a plain 403 is a permission problem. `now` is in UNIX seconds.
fn classify(status: u16, headers: &HeaderMap, body: &str, now: u64) -> TrackerError {
    let tracker = TRACKER.to_owned();
    let message = error_message(status, body);
    match status {
        401 => TrackerError::Unauthorized { tracker, message },
        403 | 429 => match rate_limit_wait(status, headers, &message, now) {
            Some(wait) => TrackerError::RateLimited { tracker, message, retry_after: Some(wait) },
            None => TrackerError::Forbidden { tracker, message },
        },
        404 => TrackerError::NotFound { tracker, message },
        _ => TrackerError::Api { tracker, status, message },
    }
}

/// How long GitHub asks us to wait, if this 403/429 is a rate limit.
fn rate_limit_wait(status: u16, headers: &HeaderMap, message: &str, now: u64) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(seconds) = header(RETRY_AFTER.as_str()).and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_secs(seconds));
    }
    if header("x-ratelimit-remaining") == Some("0") {
        // Wait until the window resets; at least a second, since clocks differ.
        let wait = header("x-ratelimit-reset")
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(DEFAULT_RATE_LIMIT_WAIT.as_secs(), |reset| reset.saturating_sub(now));
        return Some(Duration::from_secs(wait.max(1)));
    }
    // Octokit's test for a secondary limit without `retry-after`: /\bsecondary rate\b/i.
    if message.to_ascii_lowercase().contains("secondary rate") || status == 429 {
        return Some(DEFAULT_RATE_LIMIT_WAIT);
    }
    None
}

/// GitHub's `message` (with a 422's field errors), or the start of a non-JSON body.
fn error_message(status: u16, body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: Option<String>,
        #[serde(default)]
        errors: Vec<serde_json::Value>,
    }
    let mut message = match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody { message: Some(message), errors }) => {
            let details: Vec<String> = errors.iter().map(describe_validation_error).collect();
            if details.is_empty() { message } else { format!("{message}: {}", details.join("; ")) }
        }
        _ if body.trim().is_empty() => format!("HTTP {status}"),
        _ => body.trim().to_owned(),
    };
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// One entry of a 422's `errors`: `{"resource":"Issue","field":"title","code":"missing_field"}`,
/// or a plain string.
fn describe_validation_error(error: &serde_json::Value) -> String {
    if let Some(text) = error.as_str() {
        return text.to_owned();
    }
    let part = |key| error.get(key).and_then(|v| v.as_str());
    match (part("resource"), part("field"), part("code"), part("message")) {
        (_, _, _, Some(message)) => message.to_owned(),
        (Some(resource), Some(field), Some(code), None) => format!("{resource}.{field} {code}"),
        _ => error.to_string(),
    }
}

/// Whether a `Link` header has a `rel="next"` entry. URLs are skipped as a whole, since they may
/// contain commas and semicolons themselves.
fn has_next_link(headers: &HeaderMap) -> bool {
    headers.get_all(LINK).iter().filter_map(|v| v.to_str().ok()).any(|value| {
        let mut rest = value;
        while let Some(start) = rest.find('<') {
            let Some(len) = rest[start..].find('>') else {
                return false;
            };
            let after = &rest[start + len + 1..];
            let params_end = after.find('<').unwrap_or(after.len());
            let is_next = after[..params_end].split([';', ',']).any(|param| {
                param.split_once('=').is_some_and(|(key, value)| {
                    key.trim().eq_ignore_ascii_case("rel")
                        && value.trim().trim_matches('"').split_whitespace().any(|rel| rel.eq_ignore_ascii_case("next"))
                })
            });
            if is_next {
                return true;
            }
            rest = &after[params_end..];
        }
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    const NOW: u64 = 1_736_000_000;

    #[test]
    fn classify_follows_githubs_documented_errors() {
        let primary = r#"{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}"#;
        let secondary = r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#;
        let reset = (NOW + 42).to_string();
        let past = (NOW - 5).to_string();
        type Check = fn(&TrackerError) -> bool;
        let cases: Vec<(u16, HeaderMap, &str, Check)> = vec![
            (
                401,
                headers(&[]),
                r#"{"message":"Bad credentials"}"#,
                |e| matches!(e, TrackerError::Unauthorized { message, .. } if message == "Bad credentials"),
            ),
            (
                403,
                headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &reset)]),
                primary,
                |e| matches!(e, TrackerError::RateLimited { retry_after: Some(w), .. } if *w == Duration::from_secs(42)),
            ),
            (
                429,
                headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &past)]),
                primary,
                |e| matches!(e, TrackerError::RateLimited { retry_after: Some(w), .. } if *w == Duration::from_secs(1)),
            ),
            (
                403,
                headers(&[("retry-after", "7"), ("x-ratelimit-remaining", "12")]),
                secondary,
                |e| matches!(e, TrackerError::RateLimited { retry_after: Some(w), .. } if *w == Duration::from_secs(7)),
            ),
            (
                403,
                headers(&[("x-ratelimit-remaining", "12")]),
                secondary,
                |e| matches!(e, TrackerError::RateLimited { retry_after: Some(w), .. } if *w == DEFAULT_RATE_LIMIT_WAIT),
            ),
            (
                429,
                headers(&[]),
                "",
                |e| matches!(e, TrackerError::RateLimited { retry_after: Some(w), .. } if *w == DEFAULT_RATE_LIMIT_WAIT),
            ),
            (
                403,
                headers(&[("x-ratelimit-remaining", "4999")]),
                r#"{"message":"Resource not accessible by integration"}"#,
                |e| matches!(e, TrackerError::Forbidden { message, .. } if message == "Resource not accessible by integration"),
            ),
            (404, headers(&[]), r#"{"message":"Not Found","status":"404"}"#, |e| matches!(e, TrackerError::NotFound { .. })),
            (410, headers(&[]), r#"{"message":"Issues are disabled for this repo"}"#, |e| {
                matches!(e, TrackerError::Api { status: 410, .. })
            }),
            (
                422,
                headers(&[]),
                r#"{"message":"Validation Failed","errors":[{"resource":"Issue","field":"title","code":"missing_field"}]}"#,
                |e| matches!(e, TrackerError::Api { status: 422, message, .. } if message == "Validation Failed: Issue.title missing_field"),
            ),
            (
                502,
                headers(&[]),
                "<html>Bad gateway</html>",
                |e| matches!(e, TrackerError::Api { status: 502, message, .. } if message == "<html>Bad gateway</html>"),
            ),
            (503, headers(&[]), "", |e| matches!(e, TrackerError::Api { status: 503, message, .. } if message == "HTTP 503")),
        ];
        for (status, headers, body, check) in cases {
            let error = classify(status, &headers, body, NOW);
            assert!(check(&error), "{status} {headers:?} {body}: {error:?}");
        }
    }

    #[test]
    fn retriability_follows_the_classification() {
        assert!(!classify(403, &headers(&[]), r#"{"message":"Forbidden"}"#, NOW).retriable());
        assert!(!classify(401, &headers(&[]), "", NOW).retriable());
        assert!(classify(403, &headers(&[("retry-after", "1")]), "", NOW).retriable());
        assert!(classify(500, &headers(&[]), "", NOW).retriable());
    }

    #[test]
    fn long_bodies_are_cut_in_messages() {
        let message = error_message(500, &"x".repeat(5000));
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn link_headers_with_and_without_next() {
        let cases = [
            (
                r#"<https://api.github.com/repositories/1300192/issues?page=2>; rel="next", <https://api.github.com/repositories/1300192/issues?page=5>; rel="last""#,
                true,
            ),
            (
                r#"<https://api.github.com/r/issues?page=1>; rel="prev", <https://api.github.com/r/issues?page=3>; rel="next", <https://x/?page=5>; rel="last", <https://x/?page=1>; rel="first""#,
                true,
            ),
            (r#"<https://api.github.com/r/issues?page=4>; rel="prev", <https://api.github.com/r/issues?page=1>; rel="first""#, false),
            (r#"<https://x/?labels=a,b;rel="next">; rel="last""#, false),
            ("<https://x/?page=2>; rel=next", true),
            ("", false),
        ];
        for (value, expected) in cases {
            assert_eq!(has_next_link(&headers(&[("link", value)])), expected, "{value}");
        }
        assert!(!has_next_link(&HeaderMap::new()));
    }

    #[test]
    fn issue_ids_for_this_repository_only() {
        let github = GitHub::new("http://127.0.0.1:9", "t", "acme/shop").expect("client");
        for id in ["#12", "12", "acme/shop#12", "ACME/Shop#12", " #12 "] {
            assert_eq!(github.issue_number(id), Ok(12), "{id}");
        }
        for id in ["other/repo#12", "ENG-12", "#", "#+12", "#0", "", "acme/shop#x"] {
            assert!(matches!(github.issue_number(id), Err(TrackerError::NotFound { .. })), "{id}");
        }
    }

    #[test]
    fn construction_checks_its_inputs_and_never_shows_the_token() {
        let token = "ghp_SECRETsecret123";
        let github = GitHub::new("http://127.0.0.1:9/api/v3/", token, "acme/shop").expect("client");
        let debug = format!("{github:?}");
        assert!(!debug.contains(token) && debug.contains("***"), "{debug}");
        assert_eq!(github.url(&["search", "issues"]).as_str(), "http://127.0.0.1:9/api/v3/search/issues");
        assert_eq!(github.issue_url(3, &["comments"]).as_str(), "http://127.0.0.1:9/api/v3/repos/acme/shop/issues/3/comments");

        let bad = [
            GitHub::new("not a url", token, "acme/shop"),
            GitHub::new("ftp://example.com", token, "acme/shop"),
            GitHub::new(DEFAULT_API_URL, token, "acme"),
            GitHub::new(DEFAULT_API_URL, token, "acme/shop/x"),
            GitHub::new(DEFAULT_API_URL, " ", "acme/shop"),
            GitHub::new(DEFAULT_API_URL, format!("{token}\u{7f}x"), "acme/shop"),
        ];
        for result in bad {
            let error = result.expect_err("invalid input");
            assert!(matches!(error, TrackerError::NotConfigured { .. }), "{error:?}");
            assert!(!format!("{error} {error:?}").contains(token), "{error:?}");
        }
    }

    #[test]
    fn from_vars_reads_the_token_and_endpoint() {
        let vars = |token: Option<&'static str>, url: Option<&'static str>| {
            move |name: &str| match name {
                GITHUB_TOKEN => token.map(str::to_owned),
                GITHUB_API_URL => url.map(str::to_owned),
                _ => None,
            }
        };
        let github = GitHub::from_vars("acme/shop", vars(Some("t"), None)).expect("default endpoint");
        assert_eq!(github.api_url().as_str(), "https://api.github.com/");
        let github = GitHub::from_vars("acme/shop", vars(Some("t"), Some("http://127.0.0.1:1/"))).expect("endpoint");
        assert_eq!(github.api_url().as_str(), "http://127.0.0.1:1/");
        assert_eq!(github.repo(), "acme/shop");
        let error = GitHub::from_vars("acme/shop", vars(None, None)).expect_err("no token");
        assert!(matches!(&error, TrackerError::NotConfigured { message, .. } if message.contains(GITHUB_TOKEN)), "{error:?}");
        assert!(GitHub::from_vars("acme/shop", vars(Some(""), None)).is_err());
    }
}
