//! Smoke tests and health checks over real HTTP: every configured URL is fetched concurrently,
//! each response is checked against its expectations, and a health verdict (with a comparison
//! to an earlier baseline) is derived from the results.
//!
//! The detail text of a check is part of what users read (tool results, reports), so it is
//! written in a fixed vocabulary: `status 200 (expected 2xx)`, `expected 200, got 503`,
//! `latency 12 ms (max 500 ms)`, `body does not contain `<html``, `timed out after 5s`,
//! `connection refused`, `cancelled`. `report` reads the expectations back out of it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{HealthConfig, SmokeTest};
use crate::domain::now_rfc3339;
use crate::run::CheckResult;

/// The most body bytes a check reads: enough for any health page, bounded so that a huge or
/// endless response cannot exhaust memory.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A check is degraded against its baseline only when it is more than this much slower…
const BASELINE_MIN_DELTA_MS: u64 = 100;
/// …and more than this many times as slow.
const BASELINE_FACTOR: u64 = 2;

/// The timeout used when the configured one is not a usable number of seconds.
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs smoke tests and health checks.
///
/// It keeps no idle connections, so every check opens a new one and sees where a proxy routes
/// traffic right now (after a blue-green switch, a pooled connection could still reach the old
/// release). Redirects are not followed: a smoke test should see the 301 itself.
#[derive(Debug, Clone)]
pub struct Checker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The HTTP clients, or why they could not be built (then every check fails with that
    /// reason: a health check must report, not panic or abort the pipeline).
    clients: std::result::Result<Clients, String>,
    timeout: Duration,
    /// The timeout as the user configured it (`5s`, `0.5s`), for failure details.
    timeout_label: String,
    /// Latency above this is `slow` (a warning).
    warn_ms: u64,
}

#[derive(Debug)]
struct Clients {
    /// Honours the usual proxy variables, for remote hosts behind a corporate proxy.
    proxied: reqwest::Client,
    /// Never uses a proxy: a loopback URL must reach this machine, not a proxy's.
    direct: reqwest::Client,
}

/// Overall health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// One check's latency now against its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BaselineDelta {
    pub name: String,
    pub baseline_ms: u64,
    pub now_ms: u64,
    /// `now_ms - baseline_ms` (negative when faster).
    pub delta_ms: i64,
}

/// The result of a health check of one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthReport {
    pub verdict: Verdict,
    pub checks: Vec<CheckResult>,
    /// Latency against the baseline, for every passing check the baseline knows.
    pub comparison: Vec<BaselineDelta>,
    /// One line a human can read.
    pub summary: String,
    pub checked_at: String,
}

/// Latencies of a healthy moment, to compare later checks with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthBaseline {
    pub at: String,
    /// Latency by check name, in milliseconds.
    pub latencies_ms: BTreeMap<String, u64>,
}

impl HealthReport {
    /// This report's latencies as a baseline. Failed checks are left out: the latency of a
    /// refused connection or a timeout says nothing about how fast the service normally is.
    pub fn baseline(&self) -> HealthBaseline {
        let latencies_ms = self.checks.iter().filter(|c| c.passed).map(|c| (c.name.clone(), c.latency_ms)).collect();
        HealthBaseline { at: self.checked_at.clone(), latencies_ms }
    }
}

impl Checker {
    /// Builds a checker with the configured timeout and latency warning threshold.
    pub fn new(cfg: &HealthConfig) -> Self {
        let timeout = Duration::try_from_secs_f64(cfg.timeout_seconds).ok().filter(|d| !d.is_zero()).unwrap_or(FALLBACK_TIMEOUT);
        let warn_ms = if cfg.latency_warn_seconds.is_finite() && cfg.latency_warn_seconds > 0.0 {
            // Saturating float-to-int conversion: an absurdly large threshold just never warns.
            (cfg.latency_warn_seconds * 1000.0).round() as u64
        } else {
            2000
        };
        let build = |direct: bool| {
            let builder = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(timeout)
                .user_agent(concat!("oc-deploy/", env!("CARGO_PKG_VERSION"), " smoke"));
            let builder = if direct { builder.no_proxy() } else { builder };
            builder.build()
        };
        let clients = match (build(false), build(true)) {
            (Ok(proxied), Ok(direct)) => Ok(Clients { proxied, direct }),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "could not build the HTTP client for health checks");
                Err(format!("could not build the HTTP client: {e} (check the HTTP_PROXY / HTTPS_PROXY variables)"))
            }
        };
        let inner = Inner { clients, timeout, timeout_label: format!("{}s", timeout.as_secs_f64()), warn_ms };
        Self { inner: Arc::new(inner) }
    }

    /// Runs every smoke test at once; results come back in the order of `tests`.
    ///
    /// `expected_version` is the version that should be live (for `expect_version`); when it is
    /// unknown those checks are skipped with a note instead of failing.
    pub async fn run_smoke(
        &self,
        tests: &[SmokeTest],
        base_url: &str,
        expected_version: Option<&str>,
        cancel: &CancellationToken,
    ) -> Vec<CheckResult> {
        self.run_all(tests.to_vec(), base_url, expected_version, cancel).await
    }

    /// Checks status and latency of every smoke URL (or of `base_url + fallback_path` when there
    /// are no smoke tests) and judges the environment's health, against `baseline` if given.
    pub async fn run_health(
        &self,
        tests: &[SmokeTest],
        base_url: &str,
        fallback_path: &str,
        baseline: Option<&HealthBaseline>,
        cancel: &CancellationToken,
    ) -> HealthReport {
        let checked_at = now_rfc3339();
        let probes: Vec<SmokeTest> = if tests.is_empty() {
            vec![SmokeTest {
                name: "health".into(),
                url: fallback_path.into(),
                expect_status: None,
                expect_contains: None,
                expect_json: None,
                expect_version: false,
                max_latency_ms: None,
            }]
        } else {
            // Health is about status and latency; body expectations belong to the smoke tests.
            tests.iter().map(|t| SmokeTest { expect_contains: None, expect_json: None, expect_version: false, ..t.clone() }).collect()
        };
        let checks = self.run_all(probes, base_url, None, cancel).await;
        judge(checks, baseline, self.inner.warn_ms, checked_at)
    }

    async fn run_all(
        &self,
        tests: Vec<SmokeTest>,
        base_url: &str,
        expected_version: Option<&str>,
        cancel: &CancellationToken,
    ) -> Vec<CheckResult> {
        let expected_version: Option<Arc<str>> = expected_version.map(Arc::from);
        let mut set = JoinSet::new();
        let mut index_of = HashMap::new();
        let mut results: Vec<Option<CheckResult>> = vec![None; tests.len()];
        let urls: Vec<String> = tests.iter().map(|t| resolve_url(base_url, &t.url)).collect();
        for (i, test) in tests.iter().enumerate() {
            let inner = Arc::clone(&self.inner);
            let test = test.clone();
            let url = urls[i].clone();
            let version = expected_version.clone();
            let cancel = cancel.clone();
            let handle = set.spawn(async move { check_one(&inner, &test, url, version.as_deref(), &cancel).await });
            index_of.insert(handle.id(), i);
        }
        while let Some(joined) = set.join_next_with_id().await {
            match joined {
                Ok((id, result)) => {
                    if let Some(&i) = index_of.get(&id) {
                        results[i] = Some(result);
                    }
                }
                Err(e) => tracing::error!(error = %e, "a smoke check task did not finish"),
            }
        }
        // A check whose task panicked still gets a row, so the caller never loses a test.
        results
            .into_iter()
            .zip(tests.iter().zip(urls))
            .map(|(r, (t, url))| {
                r.unwrap_or_else(|| CheckResult {
                    name: t.name.clone(),
                    url,
                    status: None,
                    latency_ms: 0,
                    passed: false,
                    slow: false,
                    detail: "the check did not finish (internal error, see the log)".into(),
                })
            })
            .collect()
    }
}

/// Joins a smoke test's `url` to the environment's base URL, unless it is a full URL already.
/// This is plain concatenation, so a base URL with a path prefix (`http://host/app`) keeps it.
fn resolve_url(base_url: &str, url: &str) -> String {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        url.to_owned()
    } else {
        format!("{}/{}", base_url.trim_end_matches('/'), url.trim_start_matches('/'))
    }
}

/// What came back from one request.
enum Fetched {
    Response { status: u16, body: String, latency: Duration },
    Failed { detail: String, latency: Duration },
}

async fn check_one(
    inner: &Inner,
    test: &SmokeTest,
    url: String,
    expected_version: Option<&str>,
    cancel: &CancellationToken,
) -> CheckResult {
    let started = Instant::now();
    let fetched = tokio::select! {
        biased;
        () = cancel.cancelled() => Fetched::Failed { detail: "cancelled".into(), latency: started.elapsed() },
        f = fetch(inner, &url, started) => f,
    };
    match fetched {
        Fetched::Failed { detail, latency } => {
            CheckResult { name: test.name.clone(), url, status: None, latency_ms: millis(latency), passed: false, slow: false, detail }
        }
        Fetched::Response { status, body, latency } => {
            let latency_ms = millis(latency);
            let verdicts = evaluate(test, status, &body, latency_ms, inner.warn_ms, expected_version);
            CheckResult {
                name: test.name.clone(),
                url,
                status: Some(status),
                latency_ms,
                passed: verdicts.failed.is_empty(),
                slow: verdicts.slow,
                detail: verdicts.detail(),
            }
        }
    }
}

/// GETs `url` and reads (up to `MAX_BODY_BYTES` of) its body within the timeout.
async fn fetch(inner: &Inner, url: &str, started: Instant) -> Fetched {
    let failed = |detail: String| Fetched::Failed { detail, latency: started.elapsed() };
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return failed(format!("invalid URL `{url}`: {e}")),
    };
    match parsed.scheme() {
        "http" | "https" => {}
        other => return failed(format!("unsupported URL scheme `{other}` in {url}: use http:// or https://")),
    }
    let clients = match &inner.clients {
        Ok(c) => c,
        Err(why) => return failed(why.clone()),
    };
    let client = if is_loopback(&parsed) { &clients.direct } else { &clients.proxied };
    let request = async {
        let mut response = client.get(parsed).send().await?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while body.len() < MAX_BODY_BYTES {
            match response.chunk().await? {
                Some(chunk) => body.extend_from_slice(&chunk),
                None => break,
            }
        }
        body.truncate(MAX_BODY_BYTES);
        Ok::<_, reqwest::Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    // The client has the same timeout; this outer one also bounds reading a slow body and
    // guarantees the exact wording of the failure.
    match tokio::time::timeout(inner.timeout, request).await {
        Err(_) => failed(format!("timed out after {}", inner.timeout_label)),
        Ok(Err(e)) if e.is_timeout() => failed(format!("timed out after {}", inner.timeout_label)),
        Ok(Err(e)) => failed(describe_error(&e)),
        Ok(Ok((status, body))) => Fetched::Response { status, body, latency: started.elapsed() },
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Turns a transport error into the short phrase a user expects (`connection refused`).
fn describe_error(err: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    let mut innermost = None;
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                std::io::ErrorKind::ConnectionReset => return "connection reset by the server".into(),
                std::io::ErrorKind::TimedOut => return "connection timed out".into(),
                _ => {}
            }
        }
        innermost = Some(e.to_string());
        source = e.source();
    }
    let cause = innermost.unwrap_or_else(|| err.to_string());
    if err.is_connect() {
        format!("could not connect: {cause}")
    } else if err.is_body() || err.is_decode() {
        format!("reading the response failed: {cause}")
    } else {
        format!("request failed: {cause}")
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The outcome of every expectation of one check.
#[derive(Default)]
struct Verdicts {
    failed: Vec<String>,
    passed: Vec<String>,
    notes: Vec<String>,
    slow: bool,
}

impl Verdicts {
    /// Failures first, so the cause is the first thing read even when the text is cut short.
    fn detail(&self) -> String {
        self.failed.iter().chain(&self.passed).chain(&self.notes).cloned().collect::<Vec<_>>().join("; ")
    }

    fn check(&mut self, ok: bool, pass: String, fail: String) {
        if ok {
            self.passed.push(pass);
        } else {
            self.failed.push(fail);
        }
    }
}

fn evaluate(test: &SmokeTest, status: u16, body: &str, latency_ms: u64, warn_ms: u64, expected_version: Option<&str>) -> Verdicts {
    let mut v = Verdicts::default();
    match test.expect_status {
        Some(want) => v.check(status == want, format!("status {status} (expected {want})"), format!("expected {want}, got {status}")),
        None => v.check((200..300).contains(&status), format!("status {status} (expected 2xx)"), format!("expected 2xx, got {status}")),
    }
    match test.max_latency_ms {
        Some(max) => v.check(
            latency_ms <= max,
            format!("latency {latency_ms} ms (max {max} ms)"),
            format!("latency {latency_ms} ms exceeds max {max} ms"),
        ),
        None if latency_ms <= warn_ms => v.passed.push(format!("latency {latency_ms} ms (warn above {warn_ms} ms)")),
        None => {}
    }
    if latency_ms > warn_ms {
        v.slow = true;
        v.notes.push(format!("slow: latency {latency_ms} ms is above the {warn_ms} ms warning threshold"));
    }
    if let Some(needle) = &test.expect_contains {
        v.check(body.contains(needle.as_str()), format!("body contains `{needle}`"), format!("body does not contain `{needle}`"));
    }
    if let Some(expect) = &test.expect_json {
        let label = if expect.pointer.is_empty() { "body" } else { expect.pointer.as_str() };
        match serde_json::from_str::<serde_json::Value>(body) {
            Err(e) => v.failed.push(format!("body is not JSON ({e}), so {label} could not be checked")),
            Ok(doc) => match doc.pointer(&expect.pointer) {
                None => v.failed.push(format!("{label} is missing, expected {}", expect.equals)),
                Some(actual) => v.check(
                    *actual == expect.equals,
                    format!("{label} is {actual}"),
                    format!("{label} is {actual}, expected {}", expect.equals),
                ),
            },
        }
    }
    if test.expect_version {
        match expected_version {
            Some(version) => v.check(
                body.contains(version),
                format!("body contains version `{version}`"),
                format!("body does not contain version `{version}` (an older release may still be serving)"),
            ),
            None => v.notes.push("version check skipped: no expected version is known".into()),
        }
    }
    v
}

/// Health verdict: any failure is unhealthy; any slow check, or a check much slower than its
/// baseline, is degraded.
fn judge(checks: Vec<CheckResult>, baseline: Option<&HealthBaseline>, warn_ms: u64, checked_at: String) -> HealthReport {
    let mut comparison = Vec::new();
    let mut regressed = Vec::new();
    if let Some(baseline) = baseline {
        for check in checks.iter().filter(|c| c.passed) {
            let Some(&before) = baseline.latencies_ms.get(&check.name) else { continue };
            let now = check.latency_ms;
            let delta = i64::try_from(now).unwrap_or(i64::MAX).saturating_sub(i64::try_from(before).unwrap_or(i64::MAX));
            comparison.push(BaselineDelta { name: check.name.clone(), baseline_ms: before, now_ms: now, delta_ms: delta });
            if now > before.saturating_mul(BASELINE_FACTOR) && now - before > BASELINE_MIN_DELTA_MS {
                regressed.push(format!("{} took {now} ms vs {before} ms at the baseline", check.name));
            }
        }
    }
    let failed: Vec<String> = checks.iter().filter(|c| !c.passed).map(|c| format!("{} ({})", c.name, c.detail)).collect();
    let slow: Vec<String> =
        checks.iter().filter(|c| c.passed && c.slow).map(|c| format!("{} is slow ({} ms > {warn_ms} ms)", c.name, c.latency_ms)).collect();
    let total = checks.len();
    let (verdict, summary) = if !failed.is_empty() {
        (Verdict::Unhealthy, format!("unhealthy: {} of {total} checks failed: {}", failed.len(), failed.join(", ")))
    } else if !slow.is_empty() || !regressed.is_empty() {
        let reasons: Vec<String> = slow.into_iter().chain(regressed).collect();
        (Verdict::Degraded, format!("degraded: all {total} checks passed, but {}", reasons.join("; ")))
    } else {
        let slowest = checks.iter().max_by_key(|c| c.latency_ms).map(|c| format!(" (slowest: {} {} ms)", c.name, c.latency_ms));
        (Verdict::Healthy, format!("healthy: all {total} checks passed{}", slowest.unwrap_or_default()))
    };
    HealthReport { verdict, checks, comparison, summary, checked_at }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;

    use super::*;
    use crate::config::JsonExpectation;

    /// A real HTTP server on a free loopback port, stopped when the test's runtime ends.
    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    /// A loopback port with nothing listening on it.
    async fn dead_port_url() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}")
    }

    fn app() -> Router {
        Router::new()
            .route("/ok", get(|| async { "<html><body>shop abc1234</body></html>" }))
            .route("/down", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "maintenance") }))
            .route("/moved", get(|| async { (StatusCode::MOVED_PERMANENTLY, [("location", "/ok")], "") }))
            .route("/status", get(|| async { axum::Json(serde_json::json!({"status": "ok", "db": {"up": true}, "version": "abc1234"})) }))
            .route("/status-down", get(|| async { axum::Json(serde_json::json!({"status": "down"})) }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "slow but fine"
                }),
            )
            .route(
                "/very-slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    "too late"
                }),
            )
    }

    fn test(name: &str, url: &str) -> SmokeTest {
        SmokeTest {
            name: name.into(),
            url: url.into(),
            expect_status: None,
            expect_contains: None,
            expect_json: None,
            expect_version: false,
            max_latency_ms: None,
        }
    }

    fn checker(timeout_seconds: f64, latency_warn_seconds: f64) -> Checker {
        Checker::new(&HealthConfig { latency_warn_seconds, timeout_seconds })
    }

    #[track_caller]
    fn assert_check(r: &CheckResult, passed: bool, detail_contains: &str) {
        assert_eq!(r.passed, passed, "{}: {r:?}", r.name);
        assert!(r.detail.contains(detail_contains), "{}: detail `{}` lacks `{detail_contains}`", r.name, r.detail);
    }

    #[tokio::test]
    async fn every_check_kind_passes_and_fails_with_a_precise_detail() {
        let base = serve(app()).await;
        let tests = vec![
            test("default-2xx", "/ok"),
            SmokeTest { expect_status: Some(200), ..test("want-200-got-503", "/down") },
            test("any-2xx-got-503", "down"),
            SmokeTest { expect_status: Some(301), ..test("redirect-not-followed", "/moved") },
            SmokeTest { expect_contains: Some("<html".into()), ..test("contains", "/ok") },
            SmokeTest { expect_contains: Some("<html".into()), ..test("wrong-body", "/status") },
            SmokeTest {
                expect_json: Some(JsonExpectation { pointer: "/status".into(), equals: serde_json::json!("ok") }),
                ..test("json-ok", "/status")
            },
            SmokeTest {
                expect_json: Some(JsonExpectation { pointer: "/status".into(), equals: serde_json::json!("ok") }),
                ..test("json-down", "/status-down")
            },
            SmokeTest {
                expect_json: Some(JsonExpectation { pointer: "/db/up".into(), equals: serde_json::json!(true) }),
                ..test("json-nested", "/status")
            },
            SmokeTest {
                expect_json: Some(JsonExpectation { pointer: "/nope".into(), equals: serde_json::json!(1) }),
                ..test("json-missing", "/status")
            },
            SmokeTest {
                expect_json: Some(JsonExpectation { pointer: "/status".into(), equals: serde_json::json!("ok") }),
                ..test("json-not-json", "/ok")
            },
            SmokeTest { expect_version: true, ..test("version", "/status") },
            SmokeTest { expect_version: true, ..test("version-wrong", "/down") },
            SmokeTest { max_latency_ms: Some(50), ..test("too-slow", "/slow") },
            SmokeTest { max_latency_ms: Some(2000), ..test("fast-enough", "/ok") },
            test("full-url", &format!("{base}/ok")),
        ];
        let results = checker(5.0, 2.0).run_smoke(&tests, &format!("{base}/"), Some("abc1234"), &CancellationToken::new()).await;
        let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
        let want: Vec<&str> = tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, want, "results come back in config order");

        let by = |n: &str| results.iter().find(|r| r.name == n).unwrap();
        assert_check(by("default-2xx"), true, "status 200 (expected 2xx)");
        assert_eq!(by("default-2xx").status, Some(200));
        assert_eq!(by("default-2xx").url, format!("{base}/ok"), "a path joins the base URL with one slash");
        assert_check(by("want-200-got-503"), false, "expected 200, got 503");
        assert_check(by("any-2xx-got-503"), false, "expected 2xx, got 503");
        assert_check(by("redirect-not-followed"), true, "status 301 (expected 301)");
        assert_check(by("contains"), true, "body contains `<html`");
        assert_check(by("wrong-body"), false, "body does not contain `<html`");
        assert_check(by("json-ok"), true, "/status is \"ok\"");
        assert_check(by("json-down"), false, "/status is \"down\", expected \"ok\"");
        assert_check(by("json-nested"), true, "/db/up is true");
        assert_check(by("json-missing"), false, "/nope is missing");
        assert_check(by("json-not-json"), false, "body is not JSON");
        assert_check(by("version"), true, "body contains version `abc1234`");
        assert_check(by("version-wrong"), false, "body does not contain version `abc1234`");
        assert_check(by("too-slow"), false, "exceeds max 50 ms");
        assert!(by("too-slow").latency_ms >= 300, "{:?}", by("too-slow"));
        assert_check(by("fast-enough"), true, "(max 2000 ms)");
        assert_check(by("full-url"), true, "status 200");
        // The failure is what a reader sees first.
        assert!(by("version-wrong").detail.starts_with("expected 2xx, got 503"), "{}", by("version-wrong").detail);
    }

    #[tokio::test]
    async fn version_check_without_a_known_version_is_skipped_with_a_note() {
        let base = serve(app()).await;
        let tests =
            [SmokeTest { expect_version: true, ..test("version", "/down") }, SmokeTest { expect_version: true, ..test("v2", "/ok") }];
        let results = checker(5.0, 2.0).run_smoke(&tests, &base, None, &CancellationToken::new()).await;
        assert_check(&results[0], false, "expected 2xx, got 503");
        assert!(!results[0].detail.contains("does not contain version"));
        assert_check(&results[1], true, "version check skipped: no expected version is known");
    }

    #[tokio::test]
    async fn connection_refused_https_and_bad_urls_fail_clearly() {
        let dead = dead_port_url().await;
        let tests = [test("dead", "/health"), test("tls", "https://127.0.0.1:1/health"), test("garbage", "http://[::1")];
        let results = checker(2.0, 2.0).run_smoke(&tests, &dead, None, &CancellationToken::new()).await;
        assert_check(&results[0], false, "connection refused");
        assert_eq!(results[0].status, None);
        // https is checked for real (rustls): a dead port is refused like any other.
        assert_check(&results[1], false, "connection refused");
        assert_check(&results[2], false, "invalid URL");
        // A base URL of another scheme is refused by name, not sent anywhere.
        let ftp = checker(2.0, 2.0).run_smoke(&[test("ftp", "/x")], "ftp://127.0.0.1", None, &CancellationToken::new()).await;
        assert_check(&ftp[0], false, "unsupported URL scheme `ftp`");
    }

    #[tokio::test]
    async fn a_request_past_the_timeout_fails_promptly() {
        let base = serve(app()).await;
        let started = Instant::now();
        let results = checker(0.5, 2.0).run_smoke(&[test("hangs", "/very-slow")], &base, None, &CancellationToken::new()).await;
        assert_check(&results[0], false, "timed out after 0.5s");
        assert_eq!(results[0].detail, "timed out after 0.5s");
        assert!(started.elapsed() < Duration::from_millis(2500), "took {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn checks_run_concurrently() {
        let base = serve(app()).await;
        let n = 8;
        let tests: Vec<SmokeTest> = (0..n).map(|i| test(&format!("slow-{i}"), "/slow")).collect();
        let started = Instant::now();
        let results = checker(5.0, 2.0).run_smoke(&tests, &base, None, &CancellationToken::new()).await;
        let took = started.elapsed();
        assert!(results.iter().all(|r| r.passed), "{results:?}");
        assert!(results.iter().all(|r| r.latency_ms >= 300), "{results:?}");
        // Sequential would be 8 × 300 ms = 2.4 s; allow a noisy machine plenty of slack.
        assert!(took < Duration::from_millis(1500), "{n} checks of 300 ms took {took:?}");
    }

    #[tokio::test]
    async fn cancel_ends_running_checks_promptly() {
        let base = serve(app()).await;
        let cancel = CancellationToken::new();
        let tests = [test("hang-1", "/very-slow"), test("hang-2", "/very-slow")];
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            trigger.cancel();
        });
        let started = Instant::now();
        let results = checker(10.0, 2.0).run_smoke(&tests, &base, None, &cancel).await;
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        for r in &results {
            assert_eq!((r.passed, r.detail.as_str()), (false, "cancelled"), "{r:?}");
        }
        // Already cancelled: nothing is fetched at all.
        let again = checker(10.0, 2.0).run_smoke(&[test("ok", "/ok")], &base, None, &cancel).await;
        assert_eq!(again[0].detail, "cancelled");
    }

    #[tokio::test]
    async fn health_verdicts() {
        let base = serve(app()).await;
        let none = CancellationToken::new();
        let c = checker(5.0, 2.0);

        // No smoke tests: one check of the fallback path.
        let healthy = c.run_health(&[], &base, "/ok", None, &none).await;
        assert_eq!(healthy.verdict, Verdict::Healthy, "{healthy:?}");
        assert_eq!(healthy.checks.len(), 1);
        assert_eq!(healthy.checks[0].name, "health");
        assert!(healthy.summary.starts_with("healthy: all 1 checks passed"), "{}", healthy.summary);

        // Health ignores body expectations: only status and latency count.
        let tests = [SmokeTest { expect_contains: Some("never there".into()), ..test("home", "/ok") }];
        let report = c.run_health(&tests, &base, "/unused", None, &none).await;
        assert_eq!(report.verdict, Verdict::Healthy, "{report:?}");

        let tests = [test("home", "/ok"), SmokeTest { expect_status: Some(200), ..test("api", "/down") }];
        let report = c.run_health(&tests, &base, "/unused", None, &none).await;
        assert_eq!(report.verdict, Verdict::Unhealthy);
        assert!(report.summary.contains("1 of 2 checks failed: api (expected 200, got 503"), "{}", report.summary);

        // Slow (above the warning threshold) but within the timeout: degraded, not failed.
        let slow = checker(5.0, 0.1).run_health(&[test("slow", "/slow")], &base, "/unused", None, &none).await;
        assert_eq!(slow.verdict, Verdict::Degraded, "{slow:?}");
        assert!(slow.checks[0].passed && slow.checks[0].slow);
        assert!(slow.summary.contains("slow is slow"), "{}", slow.summary);

        let dead = c.run_health(&[], &dead_port_url().await, "/health", None, &none).await;
        assert_eq!(dead.verdict, Verdict::Unhealthy);
        assert!(dead.summary.contains("connection refused"), "{}", dead.summary);

        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["verdict"], "unhealthy");
        let back: HealthReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }

    #[tokio::test]
    async fn baseline_comparison_flags_big_regressions_only() {
        let base = serve(app()).await;
        let none = CancellationToken::new();
        let c = checker(5.0, 2.0);
        let tests = [test("slow", "/slow"), test("home", "/ok"), test("new", "/ok")];

        // `slow` used to take 20 ms and now takes 300+: more than 2× and more than 100 ms over.
        let mut latencies_ms = BTreeMap::new();
        latencies_ms.insert("slow".to_owned(), 20);
        latencies_ms.insert("home".to_owned(), 5);
        let before = HealthBaseline { at: "2026-01-01T00:00:00Z".into(), latencies_ms };
        let report = c.run_health(&tests, &base, "/unused", Some(&before), &none).await;
        assert_eq!(report.verdict, Verdict::Degraded, "{report:?}");
        assert!(report.summary.contains("slow took"), "{}", report.summary);
        assert!(report.summary.contains("vs 20 ms at the baseline"), "{}", report.summary);
        let names: Vec<&str> = report.comparison.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["slow", "home"], "only checks the baseline knows are compared");
        let d = &report.comparison[0];
        assert_eq!(d.delta_ms, d.now_ms as i64 - 20);

        // Relative to a baseline of 250 ms the same 300 ms is neither 2× nor 100 ms worse.
        let mut latencies_ms = BTreeMap::new();
        latencies_ms.insert("slow".to_owned(), 250);
        let ok_before = HealthBaseline { at: "2026-01-01T00:00:00Z".into(), latencies_ms };
        let report = c.run_health(&tests, &base, "/unused", Some(&ok_before), &none).await;
        assert_eq!(report.verdict, Verdict::Healthy, "{report:?}");

        // A report's own baseline holds every passing check, and not the failing ones.
        let mixed = c.run_health(&[test("home", "/ok"), test("api", "/down")], &base, "/unused", None, &none).await;
        let b = mixed.baseline();
        assert_eq!(b.at, mixed.checked_at);
        assert_eq!(b.latencies_ms.keys().collect::<Vec<_>>(), ["home"]);
    }

    #[test]
    fn urls_join_and_loopback_is_detected() {
        assert_eq!(resolve_url("http://h:1/", "/a"), "http://h:1/a");
        assert_eq!(resolve_url("http://h:1/app", "a"), "http://h:1/app/a");
        assert_eq!(resolve_url("http://h:1", "HTTP://other/x"), "HTTP://other/x");
        for (u, want) in
            [("http://127.0.0.1:1/", true), ("http://localhost/", true), ("http://[::1]:8/", true), ("http://example.com/", false)]
        {
            assert_eq!(is_loopback(&reqwest::Url::parse(u).unwrap()), want, "{u}");
        }
    }
}
