//! Notifications against fake Telegram, Slack and generic-webhook servers on loopback: what each
//! event looks like on the wire, how settings narrow channels and events, how failures come
//! back as deliveries, and that no credential ever leaves the notifier in text.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use pm_bridge::notify::{Channel, Delivery, Event, Message, Notifier, NotifySettings};
use serde_json::{Value, json};

/// How a fake answers the next requests.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// As the real service does on success (or on a request it would reject).
    Accept,
    /// The service's own error for this status.
    Fail(u16),
    /// A hostile or misconfigured endpoint that fails and echoes the request's URL (and so the
    /// credential in it) back: the notifier must not repeat it.
    EchoUrl,
    /// Never answers within any test's timeout.
    Hang,
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    /// Path and query, as sent.
    target: String,
    content_type: Option<String>,
    body: String,
    /// Telegram only: the text as a chat would show it, after Markdown parsing.
    rendered: Option<String>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("the notifier sends JSON")
    }
}

struct FakeState {
    mode: Mutex<Mode>,
    received: Mutex<Vec<Received>>,
    /// The credential the fake accepts: the bot token, or the webhook's secret path segment.
    secret: String,
    /// Telegram only: the chat the bot may write to.
    chat_id: i64,
}

#[derive(Clone)]
struct Fake {
    base: String,
    state: Arc<FakeState>,
}

impl Fake {
    fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    fn mode(&self) -> Mode {
        *self.state.mode.lock().unwrap()
    }

    fn record(&self, method: Method, uri: &Uri, headers: &HeaderMap, body: &Bytes, rendered: Option<String>) {
        let target = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = String::from_utf8_lossy(body).into_owned();
        self.state.received.lock().unwrap().push(Received { method, target, content_type, body, rendered });
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

fn new_state(secret: &str, chat_id: i64) -> Arc<FakeState> {
    Arc::new(FakeState { mode: Mutex::new(Mode::Accept), received: Mutex::new(Vec::new()), secret: secret.to_owned(), chat_id })
}

// ---------------------------------------------------------------------------------------------
// Telegram Bot API: POST {base}/bot<token>/sendMessage, JSON in, `{"ok": …}` out, the HTTP
// status equal to `error_code` (provider-cli-facts §9).

async fn telegram_fake(token: &str, chat_id: i64) -> Fake {
    let fake = Fake { base: String::new(), state: new_state(token, chat_id) };
    let router = Router::new()
        .route("/{bot}/sendMessage", post(telegram_send_message))
        .fallback(|| async { telegram_error(404, "Not Found") })
        .with_state(fake.clone());
    let addr = serve(router).await;
    Fake { base: format!("http://{addr}"), ..fake }
}

fn telegram_error(code: u16, description: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap();
    (status, axum::Json(json!({ "ok": false, "error_code": code, "description": description }))).into_response()
}

async fn telegram_send_message(State(fake): State<Fake>, Path(bot): Path<String>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    let text = request.as_ref().and_then(|r| r["text"].as_str()).unwrap_or_default().to_owned();
    let parsed = match request.as_ref().map(|r| r["parse_mode"].clone()) {
        Some(Value::String(mode)) if mode == "Markdown" => parse_legacy_markdown(&text),
        _ => Ok(text.clone()),
    };
    fake.record(Method::POST, &uri, &headers, &body, parsed.as_ref().ok().cloned());

    match fake.mode() {
        Mode::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
        Mode::Fail(429) => {
            let body = json!({ "ok": false, "error_code": 429, "description": "Too Many Requests: retry after 35", "parameters": { "retry_after": 35 } });
            return (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        }
        Mode::Fail(code) => return telegram_error(code, StatusCode::from_u16(code).unwrap().canonical_reason().unwrap_or("Error")),
        Mode::EchoUrl => return telegram_error(401, &format!("Unauthorized: no bot at {}", uri)),
        Mode::Accept => {}
    }
    if bot.strip_prefix("bot") != Some(fake.state.secret.as_str()) {
        return telegram_error(401, "Unauthorized");
    }
    let Some(request) = request else { return telegram_error(400, "Bad Request: message text is empty") };
    let chat_matches = request["chat_id"].as_i64() == Some(fake.state.chat_id)
        || request["chat_id"].as_str().is_some_and(|s| s.starts_with('@') || s.parse() == Ok(fake.state.chat_id));
    if !chat_matches {
        return telegram_error(400, "Bad Request: chat not found");
    }
    let shown = match parsed {
        Ok(shown) => shown,
        Err(reason) => return telegram_error(400, &format!("Bad Request: can't parse entities: {reason}")),
    };
    if shown.trim().is_empty() {
        return telegram_error(400, "Bad Request: message text is empty");
    }
    if shown.chars().count() > 4096 {
        return telegram_error(400, "Bad Request: message is too long");
    }
    let result = json!({
        "message_id": 123,
        "from": { "id": 111, "is_bot": true, "first_name": "DeployBot", "username": "deploy_bot" },
        "chat": { "id": fake.state.chat_id, "title": "Deploys", "type": "supergroup" },
        "date": 1_736_000_000,
        "text": shown,
    });
    axum::Json(json!({ "ok": true, "result": result })).into_response()
}

/// Telegram's legacy Markdown, strictly enough to catch unescaped input: `\` escapes `_ * `` [`
/// outside entities, an entity runs to the next identical delimiter with no escaping inside,
/// and `[` must open an inline link. Returns the text a chat would show.
fn parse_legacy_markdown(text: &str) -> Result<String, String> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut shown = String::new();
    let mut i = 0;
    while i < chars.len() {
        let (offset, c) = chars[i];
        match c {
            '\\' if chars.get(i + 1).is_some_and(|&(_, n)| matches!(n, '_' | '*' | '`' | '[')) => {
                shown.push(chars[i + 1].1);
                i += 2;
            }
            '*' | '_' | '`' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&(_, d)| d == c)
                    .ok_or_else(|| format!("Can't find end of the entity starting at byte offset {offset}"))?;
                shown.extend(chars[i + 1..i + 1 + end].iter().map(|&(_, ch)| ch));
                i += end + 2;
            }
            '[' => {
                let rest: String = chars[i + 1..].iter().map(|&(_, ch)| ch).collect();
                let close = rest.find("](").ok_or_else(|| format!("Can't find end of the entity starting at byte offset {offset}"))?;
                let url_end =
                    rest[close..].find(')').ok_or_else(|| format!("Can't find end of the entity starting at byte offset {offset}"))?;
                shown.push_str(&rest[..close]);
                i += 1 + rest[..close + url_end + 1].chars().count();
            }
            _ => {
                shown.push(c);
                i += 1;
            }
        }
    }
    Ok(shown)
}

// ---------------------------------------------------------------------------------------------
// Slack incoming webhook: POST /services/T…/B…/<secret>, JSON in, 200 `ok` (text/plain) out,
// plain-text error codes otherwise (provider-cli-facts §9).

async fn slack_fake(secret: &str) -> Fake {
    let fake = Fake { base: String::new(), state: new_state(secret, 0) };
    let router = Router::new()
        .route("/services/{team}/{bot}/{secret}", post(slack_webhook))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no_service") })
        .with_state(fake.clone());
    let addr = serve(router).await;
    Fake { base: format!("http://{addr}"), ..fake }
}

async fn slack_webhook(
    State(fake): State<Fake>,
    Path((_team, _bot, secret)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.record(Method::POST, &uri, &headers, &body, None);
    match fake.mode() {
        Mode::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
        Mode::Fail(code) => {
            let reason = match code {
                403 => "action_prohibited",
                404 => "channel_not_found",
                410 => "channel_is_archived",
                _ => "rollup_error",
            };
            return (StatusCode::from_u16(code).unwrap(), reason).into_response();
        }
        Mode::EchoUrl => return (StatusCode::NOT_FOUND, format!("no_service for {}", uri)).into_response(),
        Mode::Accept => {}
    }
    if secret != fake.state.secret {
        return (StatusCode::NOT_FOUND, "no_service").into_response();
    }
    let is_json = headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let Some(payload) = serde_json::from_slice::<Value>(&body).ok().filter(|_| is_json) else {
        return (StatusCode::BAD_REQUEST, "invalid_payload").into_response();
    };
    if payload["text"].as_str().is_none_or(str::is_empty) && payload.get("blocks").is_none() {
        return (StatusCode::BAD_REQUEST, "no_text").into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain")], "ok").into_response()
}

// ---------------------------------------------------------------------------------------------
// A generic JSON webhook: POST /hooks/<secret>?key=…, any 2xx is success.

async fn webhook_fake(secret: &str) -> Fake {
    let fake = Fake { base: String::new(), state: new_state(secret, 0) };
    let router =
        Router::new().route("/hooks/{secret}", post(generic_webhook)).fallback(|| async { StatusCode::NOT_FOUND }).with_state(fake.clone());
    let addr = serve(router).await;
    Fake { base: format!("http://{addr}"), ..fake }
}

async fn generic_webhook(State(fake): State<Fake>, Path(secret): Path<String>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    fake.record(Method::POST, &uri, &headers, &body, None);
    match fake.mode() {
        Mode::Hang => tokio::time::sleep(Duration::from_secs(30)).await,
        Mode::Fail(code) => return StatusCode::from_u16(code).unwrap().into_response(),
        Mode::EchoUrl => return (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot deliver {}", uri)).into_response(),
        Mode::Accept => {}
    }
    if secret != fake.state.secret {
        return StatusCode::NOT_FOUND.into_response();
    }
    (StatusCode::ACCEPTED, axum::Json(json!({ "received": true }))).into_response()
}

// ---------------------------------------------------------------------------------------------
// The world of one test: the three fakes and the variables that point the notifier at them.

const TOKEN: &str = "4242424242:AAH-SECRET-bot-token_x";
const CHAT_ID: i64 = -1_001_234_567_890;
const SLACK_SECRET: &str = "SLACKSECRETxyz123";
const HOOK_SECRET: &str = "hooksecret987";
const HOOK_QUERY_SECRET: &str = "qsecret654";

struct World {
    telegram: Fake,
    slack: Fake,
    webhook: Fake,
    vars: Vec<(&'static str, String)>,
}

impl World {
    async fn new() -> Self {
        let telegram = telegram_fake(TOKEN, CHAT_ID).await;
        let slack = slack_fake(SLACK_SECRET).await;
        let webhook = webhook_fake(HOOK_SECRET).await;
        let vars = vec![
            ("TELEGRAM_BOT_TOKEN", TOKEN.to_owned()),
            ("TELEGRAM_CHAT_ID", CHAT_ID.to_string()),
            ("TELEGRAM_API_URL", telegram.base.clone()),
            ("SLACK_WEBHOOK_URL", format!("{}/services/T0001/B0001/{SLACK_SECRET}", slack.base)),
            ("OC_DEPLOY_WEBHOOK_URL", format!("{}/hooks/{HOOK_SECRET}?key={HOOK_QUERY_SECRET}", webhook.base)),
        ];
        Self { telegram, slack, webhook, vars }
    }

    fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.vars.retain(|(n, _)| *n != name);
        self.vars.push((name, value.into()));
    }

    fn unset(&mut self, name: &str) {
        self.vars.retain(|(n, _)| *n != name);
    }

    fn notifier(&self, settings: &NotifySettings) -> Notifier {
        let vars = self.vars.clone();
        Notifier::from_vars(move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()), settings)
    }

    fn all_received(&self) -> Vec<Received> {
        [self.telegram.received(), self.slack.received(), self.webhook.received()].concat()
    }
}

fn message(event: Event) -> Message {
    Message {
        project: "gtrack".into(),
        env: "production".into(),
        version: "abc1234".into(),
        commit: "abc1234".into(),
        url: None,
        event,
        detail: None,
    }
}

fn settings(json: Value) -> NotifySettings {
    serde_json::from_value(json).expect("valid notification settings")
}

fn ok(channel: Channel) -> Delivery {
    Delivery { channel, ok: true, error: None }
}

fn failed(channel: Channel, error: &str) -> Delivery {
    Delivery { channel, ok: false, error: Some(error.to_owned()) }
}

/// A port nobody listens on: bound, then released.
fn refused_base() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------------------------
// What each event looks like on each channel.

struct Case {
    msg: Message,
    /// The Telegram `text` as sent (legacy Markdown).
    telegram: &'static str,
    /// What the Telegram chat shows after parsing.
    telegram_shown: &'static str,
    slack: &'static str,
    plain: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            msg: Message { url: Some("https://gtrack.example.com".into()), ..message(Event::ProductionShipped) },
            telegram: "✅ *gtrack* deployed to production — abc1234\nhttps://gtrack.example.com",
            telegram_shown: "✅ gtrack deployed to production — abc1234\nhttps://gtrack.example.com",
            slack: "✅ *gtrack* deployed to production — abc1234\nhttps://gtrack.example.com",
            plain: "✅ gtrack deployed to production — abc1234\nhttps://gtrack.example.com",
        },
        Case {
            msg: Message {
                env: "staging".into(),
                version: "v41".into(),
                url: Some("https://staging.gtrack.example.com".into()),
                ..message(Event::StagingVerified)
            },
            telegram: "🧪 *gtrack* verified on staging — abc1234 (v41)\nhttps://staging.gtrack.example.com",
            telegram_shown: "🧪 gtrack verified on staging — abc1234 (v41)\nhttps://staging.gtrack.example.com",
            slack: "🧪 *gtrack* verified on staging — abc1234 (v41)\nhttps://staging.gtrack.example.com",
            plain: "🧪 gtrack verified on staging — abc1234 (v41)\nhttps://staging.gtrack.example.com",
        },
        Case {
            msg: Message {
                commit: "0ff1ce0".into(),
                version: "0ff1ce0".into(),
                detail: Some("error rate 12% > 5% after deploy".into()),
                ..message(Event::Rollback)
            },
            telegram: "⏪ *gtrack* rolled back on production — 0ff1ce0\nerror rate 12% > 5% after deploy",
            telegram_shown: "⏪ gtrack rolled back on production — 0ff1ce0\nerror rate 12% > 5% after deploy",
            slack: "⏪ *gtrack* rolled back on production — 0ff1ce0\nerror rate 12% &gt; 5% after deploy",
            plain: "⏪ gtrack rolled back on production — 0ff1ce0\nerror rate 12% > 5% after deploy",
        },
        Case {
            msg: Message {
                project: "my_app".into(),
                env: "staging".into(),
                detail: Some("GET /health_check returned 502; `db` [primary] *down*".into()),
                ..message(Event::SmokeFailure)
            },
            telegram: "❌ *my_app* smoke tests failed on staging — abc1234\nGET /health\\_check returned 502; \\`db\\` \\[primary] \\*down\\*",
            telegram_shown: "❌ my_app smoke tests failed on staging — abc1234\nGET /health_check returned 502; `db` [primary] *down*",
            slack: "❌ *my_app* smoke tests failed on staging — abc1234\nGET /health_check returned 502; `db` [primary] *down*",
            plain: "❌ my_app smoke tests failed on staging — abc1234\nGET /health_check returned 502; `db` [primary] *down*",
        },
    ]
}

#[tokio::test]
async fn every_event_reaches_every_channel_in_its_format() {
    let world = World::new().await;
    let notifier = world.notifier(&NotifySettings::default());
    assert_eq!(notifier.channels(), [Channel::Telegram, Channel::Slack, Channel::Webhook]);

    for (i, case) in cases().into_iter().enumerate() {
        let deliveries = notifier.send(&case.msg).await;
        assert_eq!(deliveries, [ok(Channel::Telegram), ok(Channel::Slack), ok(Channel::Webhook)], "{:?}", case.msg.event);

        let telegram = &world.telegram.received()[i];
        assert_eq!(telegram.method, Method::POST);
        assert_eq!(telegram.target, format!("/bot{TOKEN}/sendMessage"));
        assert_eq!(telegram.content_type.as_deref(), Some("application/json"));
        assert_eq!(telegram.json(), json!({ "chat_id": CHAT_ID, "text": case.telegram, "parse_mode": "Markdown" }));
        assert_eq!(telegram.rendered.as_deref(), Some(case.telegram_shown));

        let slack = &world.slack.received()[i];
        assert_eq!(slack.target, format!("/services/T0001/B0001/{SLACK_SECRET}"));
        assert_eq!(slack.content_type.as_deref(), Some("application/json"));
        assert_eq!(slack.json(), json!({ "text": case.slack }));

        let webhook = &world.webhook.received()[i];
        assert_eq!(webhook.target, format!("/hooks/{HOOK_SECRET}?key={HOOK_QUERY_SECRET}"));
        assert_eq!(webhook.content_type.as_deref(), Some("application/json"));
        let m = &case.msg;
        assert_eq!(
            webhook.json(),
            json!({
                "project": m.project, "env": m.env, "version": m.version, "commit": m.commit,
                "url": m.url, "event": m.event, "detail": m.detail, "text": case.plain,
            })
        );
    }
    let events: Vec<Value> = world.webhook.received().iter().map(|r| r.json()["event"].clone()).collect();
    assert_eq!(events, ["production-shipped", "staging-verified", "rollback", "smoke-failure"]);
}

#[tokio::test]
async fn a_channel_name_for_telegram_is_sent_as_a_string() {
    let mut world = World::new().await;
    world.set("TELEGRAM_CHAT_ID", "@deploys");
    let deliveries = world.notifier(&settings(json!({ "channels": ["telegram"] }))).send(&message(Event::Rollback)).await;
    assert_eq!(deliveries, [ok(Channel::Telegram)]);
    assert_eq!(world.telegram.received()[0].json()["chat_id"], "@deploys");
}

// ---------------------------------------------------------------------------------------------
// Which channels and events are on.

#[tokio::test]
async fn settings_narrow_the_channels() {
    let world = World::new().await;
    let notifier = world.notifier(&settings(json!({ "channels": ["slack"] })));
    assert_eq!(notifier.channels(), [Channel::Slack]);

    let deliveries = notifier.send(&message(Event::ProductionShipped)).await;
    assert_eq!(deliveries, [ok(Channel::Slack)]);
    assert_eq!(world.slack.received().len(), 1);
    assert!(world.telegram.received().is_empty() && world.webhook.received().is_empty());
}

#[tokio::test]
async fn settings_narrow_the_events() {
    let world = World::new().await;
    let notifier = world.notifier(&settings(json!({ "channels": ["slack", "webhook"], "events": ["rollback", "production-shipped"] })));

    for skipped in [Event::StagingVerified, Event::SmokeFailure] {
        assert!(!notifier.wants(skipped));
        assert_eq!(notifier.send(&message(skipped)).await, []);
    }
    assert!(world.all_received().is_empty(), "filtered events must not reach any server");

    assert_eq!(notifier.send(&message(Event::Rollback)).await, [ok(Channel::Slack), ok(Channel::Webhook)]);
    assert_eq!(world.webhook.received()[0].json()["event"], "rollback");
    assert!(world.telegram.received().is_empty());
}

#[tokio::test]
async fn an_empty_channel_list_turns_notifications_off() {
    let world = World::new().await;
    let notifier = world.notifier(&settings(json!({ "channels": [] })));
    assert_eq!(notifier.channels(), []);
    assert_eq!(notifier.send(&message(Event::ProductionShipped)).await, []);
    assert!(world.all_received().is_empty());
}

#[tokio::test]
async fn a_channel_without_its_variables_is_off() {
    let mut world = World::new().await;
    // Telegram needs both the token and the chat; a blank value counts as unset.
    world.unset("TELEGRAM_CHAT_ID");
    world.set("SLACK_WEBHOOK_URL", "   ");
    let notifier = world.notifier(&NotifySettings::default());
    assert_eq!(notifier.channels(), [Channel::Webhook]);
    assert_eq!(notifier.send(&message(Event::ProductionShipped)).await, [ok(Channel::Webhook)]);
    assert!(world.telegram.received().is_empty() && world.slack.received().is_empty());

    // Listing a channel in the settings does not turn it on without its variables.
    let notifier = world.notifier(&settings(json!({ "channels": ["telegram", "slack"] })));
    assert_eq!(notifier.channels(), []);
    assert!(!notifier.wants(Event::Rollback));

    let nothing = Notifier::from_vars(|_| None, &NotifySettings::default());
    assert_eq!(nothing.send(&message(Event::Rollback)).await, []);
}

#[test]
fn settings_parse_from_the_config_and_reject_unknown_keys() {
    let parsed = settings(json!({ "channels": ["slack"], "events": ["rollback", "production-shipped"] }));
    assert_eq!(parsed.channels, Some(vec![Channel::Slack]));
    assert_eq!(parsed.events, Some(vec![Event::Rollback, Event::ProductionShipped]));
    assert_eq!(settings(json!({})), NotifySettings::default());

    let typo = serde_json::from_value::<NotifySettings>(json!({ "chanels": ["slack"] })).unwrap_err();
    assert!(typo.to_string().contains("unknown field `chanels`"), "{typo}");
    let unknown_event = serde_json::from_value::<NotifySettings>(json!({ "events": ["deployed"] })).unwrap_err();
    assert!(unknown_event.to_string().contains("unknown variant `deployed`"), "{unknown_event}");

    let schema = serde_json::to_value(schemars::schema_for!(NotifySettings)).unwrap();
    assert_eq!(schema["additionalProperties"], false, "{schema}");
}

// ---------------------------------------------------------------------------------------------
// Failures come back as deliveries naming the channel.

#[tokio::test]
async fn server_errors_fail_only_their_channel() {
    let world = World::new().await;
    let notifier = world.notifier(&NotifySettings::default());

    world.slack.set_mode(Mode::Fail(500));
    world.webhook.set_mode(Mode::Fail(500));
    let deliveries = notifier.send(&message(Event::ProductionShipped)).await;
    assert_eq!(
        deliveries,
        [
            ok(Channel::Telegram),
            failed(Channel::Slack, "slack: HTTP 500: rollup_error"),
            failed(Channel::Webhook, "webhook: HTTP 500: Internal Server Error"),
        ]
    );

    world.telegram.set_mode(Mode::Fail(500));
    world.slack.set_mode(Mode::Fail(410));
    world.webhook.set_mode(Mode::Fail(503));
    assert_eq!(
        notifier.send(&message(Event::Rollback)).await,
        [
            failed(Channel::Telegram, "telegram: HTTP 500: Internal Server Error"),
            failed(Channel::Slack, "slack: HTTP 410: channel_is_archived"),
            failed(Channel::Webhook, "webhook: HTTP 503: Service Unavailable"),
        ]
    );

    world.telegram.set_mode(Mode::Fail(429));
    let deliveries = world.notifier(&settings(json!({ "channels": ["telegram"] }))).send(&message(Event::Rollback)).await;
    assert_eq!(deliveries, [failed(Channel::Telegram, "telegram: HTTP 429: Too Many Requests: retry after 35")]);
}

#[tokio::test]
async fn telegram_rejections_carry_the_bot_api_description() {
    let mut world = World::new().await;
    world.set("TELEGRAM_CHAT_ID", "-42");
    let only_telegram = settings(json!({ "channels": ["telegram"] }));
    let deliveries = world.notifier(&only_telegram).send(&message(Event::ProductionShipped)).await;
    assert_eq!(deliveries, [failed(Channel::Telegram, "telegram: HTTP 400: Bad Request: chat not found")]);

    world.set("TELEGRAM_CHAT_ID", CHAT_ID.to_string());
    world.set("TELEGRAM_BOT_TOKEN", "1:revoked");
    let deliveries = world.notifier(&only_telegram).send(&message(Event::ProductionShipped)).await;
    assert_eq!(deliveries, [failed(Channel::Telegram, "telegram: HTTP 401: Unauthorized")]);
}

#[tokio::test]
async fn a_revoked_slack_webhook_reports_no_service() {
    let mut world = World::new().await;
    world.set("SLACK_WEBHOOK_URL", format!("{}/services/T0001/B0001/revoked", world.slack.base));
    let deliveries = world.notifier(&settings(json!({ "channels": ["slack"] }))).send(&message(Event::Rollback)).await;
    assert_eq!(deliveries, [failed(Channel::Slack, "slack: HTTP 404: no_service")]);
}

#[tokio::test]
async fn a_refused_connection_fails_with_the_channel_named() {
    let mut world = World::new().await;
    let dead = refused_base();
    world.set("TELEGRAM_API_URL", dead.clone());
    world.set("SLACK_WEBHOOK_URL", format!("{dead}/services/T0001/B0001/{SLACK_SECRET}"));
    world.set("OC_DEPLOY_WEBHOOK_URL", format!("{dead}/hooks/{HOOK_SECRET}"));
    let deliveries = world.notifier(&NotifySettings::default()).send(&message(Event::ProductionShipped)).await;
    assert_eq!(
        deliveries,
        [
            failed(Channel::Telegram, "telegram: connection failed (connection refused)"),
            failed(Channel::Slack, "slack: connection failed (connection refused)"),
            failed(Channel::Webhook, "webhook: connection failed (connection refused)"),
        ]
    );
}

#[tokio::test]
async fn a_hanging_channel_times_out_without_holding_up_the_others() {
    let world = World::new().await;
    world.webhook.set_mode(Mode::Hang);
    let notifier = world.notifier(&NotifySettings::default()).with_timeout(Duration::from_millis(300));

    let started = Instant::now();
    let deliveries = notifier.send(&message(Event::SmokeFailure)).await;
    let elapsed = started.elapsed();
    assert_eq!(deliveries, [ok(Channel::Telegram), ok(Channel::Slack), failed(Channel::Webhook, "webhook: timed out after 300 ms")]);
    assert!(elapsed < Duration::from_secs(2), "the channels run concurrently under one timeout each: {elapsed:?}");
}

#[tokio::test]
async fn a_malformed_url_is_a_failed_delivery_not_silence() {
    let mut world = World::new().await;
    world.set("SLACK_WEBHOOK_URL", "hooks.slack.com/services/T0001/B0001/nope");
    world.set("OC_DEPLOY_WEBHOOK_URL", "ftp://example.com/hook");
    world.set("TELEGRAM_API_URL", "not a url");
    let notifier = world.notifier(&NotifySettings::default());
    assert_eq!(notifier.channels(), [Channel::Telegram, Channel::Slack, Channel::Webhook]);
    assert_eq!(
        notifier.send(&message(Event::Rollback)).await,
        [
            failed(Channel::Telegram, "telegram: TELEGRAM_API_URL is not a valid http(s) URL"),
            failed(Channel::Slack, "slack: SLACK_WEBHOOK_URL is not a valid http(s) URL"),
            failed(Channel::Webhook, "webhook: OC_DEPLOY_WEBHOOK_URL is not a valid http(s) URL"),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Credentials never leave the notifier in text.

/// Records every tracing event and span field as text, on this thread.
#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<Vec<String>>>);

struct FieldText<'a>(&'a mut String);

impl tracing::field::Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl tracing::Subscriber for LogCapture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attributes: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut line = format!("span {}", attributes.metadata().name());
        attributes.record(&mut FieldText(&mut line));
        self.0.lock().unwrap().push(line);
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut line = String::from("record");
        values.record(&mut FieldText(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = format!("{} {}", event.metadata().level(), event.metadata().target());
        event.record(&mut FieldText(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [TOKEN, "AAH-SECRET", SLACK_SECRET, HOOK_SECRET, HOOK_QUERY_SECRET] {
        assert!(!text.contains(secret), "{what} contains the credential {secret:?}: {text}");
    }
}

#[tokio::test]
async fn credentials_never_appear_in_messages_errors_logs_or_debug_output() {
    let logs = LogCapture::default();
    let _guard = tracing::dispatcher::set_default(&tracing::Dispatch::new(logs.clone()));

    let mut world = World::new().await;
    let mut deliveries = Vec::new();
    let mut debug = Vec::new();

    // Success, then servers that fail and echo the credential-bearing URL back.
    let notifier = world.notifier(&NotifySettings::default());
    debug.push(format!("{notifier:?}"));
    for event in [Event::StagingVerified, Event::ProductionShipped] {
        deliveries.extend(notifier.send(&Message { url: Some("https://gtrack.example.com".into()), ..message(event) }).await);
    }
    for fake in [&world.telegram, &world.slack, &world.webhook] {
        fake.set_mode(Mode::EchoUrl);
    }
    let echoed = notifier.send(&message(Event::Rollback)).await;
    assert!(echoed.iter().all(|d| !d.ok), "{echoed:?}");
    assert!(echoed[0].error.as_deref().unwrap().starts_with("telegram: HTTP 401: Unauthorized: no bot at "), "{echoed:?}");
    deliveries.extend(echoed);

    // Plain server errors and a timeout.
    for fake in [&world.telegram, &world.slack] {
        fake.set_mode(Mode::Fail(500));
    }
    world.webhook.set_mode(Mode::Hang);
    deliveries.extend(notifier.clone().with_timeout(Duration::from_millis(200)).send(&message(Event::SmokeFailure)).await);

    // A refused connection, with the credentials in the URLs it could not reach.
    let dead = refused_base();
    world.set("TELEGRAM_API_URL", dead.clone());
    world.set("SLACK_WEBHOOK_URL", format!("{dead}/services/T0001/B0001/{SLACK_SECRET}"));
    world.set("OC_DEPLOY_WEBHOOK_URL", format!("{dead}/hooks/{HOOK_SECRET}?key={HOOK_QUERY_SECRET}"));
    let unreachable = world.notifier(&NotifySettings::default());
    debug.push(format!("{unreachable:?}"));
    deliveries.extend(unreachable.send(&message(Event::Rollback)).await);

    assert_eq!(deliveries.len(), 15);
    assert_eq!(deliveries.iter().filter(|d| !d.ok).count(), 9);
    for delivery in &deliveries {
        assert_no_secret("a delivery", &format!("{delivery:?}"));
        assert_no_secret("a serialized delivery", &serde_json::to_string(delivery).unwrap());
    }
    for text in &debug {
        assert_no_secret("the notifier's Debug output", text);
    }
    for received in world.all_received() {
        assert_no_secret("a message body", &received.body);
    }
    let logs = logs.0.lock().unwrap().clone();
    assert!(logs.iter().any(|line| line.contains("notification not delivered")), "failures are logged: {logs:?}");
    for line in &logs {
        assert_no_secret("a log line", line);
    }
}
