//! Chat notifications for deploy events (Telegram, Slack, a generic JSON webhook): best effort,
//! concurrent, bounded by a timeout, and never able to fail or block the deploy that sent them.
//!
//! A channel is on when its environment variables are set (design §7), and `notifications` in
//! `.oc-deploy-ops.json` may narrow the channels and the events. The bot token and the webhook
//! URLs are credentials: they live in [`Secret`] and are never formatted into an error, a log
//! line, `Debug` output or a message.

use std::fmt;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The Telegram bot token (`123456:ABC…`); sending is on when it and the chat id are set.
pub const TELEGRAM_BOT_TOKEN: &str = "TELEGRAM_BOT_TOKEN";
/// The chat that receives the messages: a numeric id or `@channelname`.
pub const TELEGRAM_CHAT_ID: &str = "TELEGRAM_CHAT_ID";
/// The Bot API base URL; overrides [`DEFAULT_TELEGRAM_API_URL`] (a proxy, or a fake in tests).
pub const TELEGRAM_API_URL: &str = "TELEGRAM_API_URL";
/// A Slack incoming-webhook URL (`https://hooks.slack.com/services/T…/B…/…`).
pub const SLACK_WEBHOOK_URL: &str = "SLACK_WEBHOOK_URL";
/// Any URL that accepts a JSON `POST` with every field of the [`Message`].
pub const OC_DEPLOY_WEBHOOK_URL: &str = "OC_DEPLOY_WEBHOOK_URL";

/// Where the Bot API lives when `TELEGRAM_API_URL` is not set.
pub const DEFAULT_TELEGRAM_API_URL: &str = "https://api.telegram.org";

/// How long one channel may take, from connecting to reading the answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A long detail (a smoke-failure summary, say) is cut here so a message stays far below
/// Telegram's 4096-character limit.
const MAX_DETAIL_CHARS: usize = 1000;

/// What a server says about a failure is cut here: an error names a reason, not a page.
const MAX_REASON_CHARS: usize = 200;

/// A deploy event worth telling people about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// Smoke tests passed on staging.
    StagingVerified,
    /// A version was promoted to production.
    ProductionShipped,
    /// An environment was rolled back; the message's commit and version are what is live now.
    Rollback,
    /// Smoke tests failed; the detail carries the summary.
    SmokeFailure,
}

impl Event {
    fn emoji(self) -> &'static str {
        match self {
            Self::StagingVerified => "🧪",
            Self::ProductionShipped => "✅",
            Self::Rollback => "⏪",
            Self::SmokeFailure => "❌",
        }
    }

    /// The words between the project and the environment: `✅ *shop* deployed to production`.
    fn phrase(self) -> &'static str {
        match self {
            Self::StagingVerified => "verified on",
            Self::ProductionShipped => "deployed to",
            Self::Rollback => "rolled back on",
            Self::SmokeFailure => "smoke tests failed on",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::StagingVerified => "staging-verified",
            Self::ProductionShipped => "production-shipped",
            Self::Rollback => "rollback",
            Self::SmokeFailure => "smoke-failure",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// Telegram Bot API `sendMessage` (`TELEGRAM_BOT_TOKEN` + `TELEGRAM_CHAT_ID`).
    Telegram,
    /// A Slack incoming webhook (`SLACK_WEBHOOK_URL`).
    Slack,
    /// A generic JSON webhook (`OC_DEPLOY_WEBHOOK_URL`).
    Webhook,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Self::Telegram => "telegram",
            Self::Slack => "slack",
            Self::Webhook => "webhook",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `notifications` in `.oc-deploy-ops.json`: both lists narrow what the environment turns on;
/// an absent list narrows nothing, an empty list turns everything off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// The channels allowed to send, for example `["slack"]`. A channel listed here still
    /// needs its environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<Channel>>,
    /// The events worth a message, for example `["rollback", "production-shipped"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<Event>>,
}

/// What happened, in the words every channel renders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Message {
    pub project: String,
    /// The environment: `staging`, `production`.
    pub env: String,
    /// The provider's version or release id; shown when it says more than the commit.
    pub version: String,
    /// The short commit sha.
    pub commit: String,
    /// The deployed URL.
    pub url: Option<String>,
    pub event: Event,
    /// A reason or summary: the rollback reason, the failed smoke checks.
    pub detail: Option<String>,
}

impl Message {
    /// The text for Telegram (`parse_mode` `Markdown`, the legacy flavour the skill uses):
    /// `✅ *shop* deployed to production — abc1234`, then the URL and the detail on their own
    /// lines. Everything taken from the message is escaped, so a `my_app` cannot break parsing.
    pub fn telegram_text(&self) -> String {
        // Legacy Markdown cannot escape inside an entity, so a name containing `*` stays plain.
        let project = if self.project.contains('*') { escape_telegram(&self.project) } else { format!("*{}*", self.project) };
        self.render(&project, escape_telegram)
    }

    /// The text for Slack (`mrkdwn`): the same layout, with `&`, `<` and `>` escaped as Slack
    /// requires.
    pub fn slack_text(&self) -> String {
        let project = if self.project.contains('*') { escape_slack(&self.project) } else { format!("*{}*", escape_slack(&self.project)) };
        self.render(&project, escape_slack)
    }

    /// The text without markup, for the generic webhook.
    pub fn plain_text(&self) -> String {
        self.render(&self.project, |s| s.to_owned())
    }

    /// The generic webhook's body: every field of the message, plus `text`.
    pub fn webhook_payload(&self) -> serde_json::Value {
        json!({
            "project": self.project,
            "env": self.env,
            "version": self.version,
            "commit": self.commit,
            "url": self.url,
            "event": self.event,
            "detail": self.detail,
            "text": self.plain_text(),
        })
    }

    fn render(&self, project: &str, escape: impl Fn(&str) -> String) -> String {
        let mut text =
            format!("{} {} {} {} — {}", self.event.emoji(), project, self.event.phrase(), escape(&self.env), escape(&self.commit));
        if self.shows_version() {
            text.push_str(&format!(" ({})", escape(&self.version)));
        }
        if let Some(url) = self.url.as_deref().filter(|u| !u.trim().is_empty()) {
            text.push('\n');
            text.push_str(&escape(url.trim()));
        }
        if let Some(detail) = self.detail.as_deref().filter(|d| !d.trim().is_empty()) {
            text.push('\n');
            text.push_str(&escape(&truncate(detail.trim(), MAX_DETAIL_CHARS)));
        }
        text
    }

    /// A version that merely repeats the commit (`abc1234` and `abc1234def…`) adds nothing.
    fn shows_version(&self) -> bool {
        let (version, commit) = (self.version.trim(), self.commit.trim());
        let repeats_commit = commit.starts_with(version) || (!commit.is_empty() && version.starts_with(commit));
        !version.is_empty() && !repeats_commit
    }
}

/// The outcome of one channel for one message; the caller records the failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Delivery {
    pub channel: Channel,
    pub ok: bool,
    /// Why it failed: the channel and the HTTP status or transport reason, never a URL or token.
    pub error: Option<String>,
}

impl Delivery {
    fn sent(channel: Channel) -> Self {
        Self { channel, ok: true, error: None }
    }

    fn failed(channel: Channel, reason: impl fmt::Display) -> Self {
        Self { channel, ok: false, error: Some(format!("{channel}: {reason}")) }
    }
}

/// A credential. `Debug` prints a mask and there is no `Display`, so it cannot be formatted by
/// accident; only [`Secret::expose`] gives the value.
#[derive(Clone)]
struct Secret<T>(T);

impl<T> Secret<T> {
    fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(********)")
    }
}

/// A URL read from a variable, or the fact that it did not parse: the channel stays on, so the
/// mistake shows up as a failed delivery instead of silence.
#[derive(Debug, Clone)]
enum Endpoint {
    Valid(Secret<Url>),
    Invalid { variable: &'static str },
}

impl Endpoint {
    fn parse(variable: &'static str, raw: &str) -> Self {
        match Url::parse(raw) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Self::Valid(Secret(url)),
            _ => Self::Invalid { variable },
        }
    }

    fn url(&self) -> Result<&Url, String> {
        match self {
            Self::Valid(url) => Ok(url.expose()),
            Self::Invalid { variable } => Err(format!("{variable} is not a valid http(s) URL")),
        }
    }
}

#[derive(Debug, Clone)]
struct TelegramTarget {
    /// `{base}/bot<token>/sendMessage`: the token is in the path, so the whole URL is secret.
    endpoint: Endpoint,
    token: Secret<String>,
    chat_id: String,
}

/// Sends deploy events to the channels the environment and the settings turn on.
#[derive(Clone)]
pub struct Notifier {
    telegram: Option<TelegramTarget>,
    slack: Option<Endpoint>,
    webhook: Option<Endpoint>,
    events: Option<Vec<Event>>,
    timeout: Duration,
    /// `None` when no client could be built (a broken system TLS setup): every delivery then
    /// fails instead of the constructor panicking.
    client: Option<reqwest::Client>,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The HTTP client says nothing useful; the targets print their credentials masked.
        f.debug_struct("Notifier")
            .field("telegram", &self.telegram)
            .field("slack", &self.slack)
            .field("webhook", &self.webhook)
            .field("events", &self.events)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Reads the channel variables through `var` (blank counts as unset) and applies the
    /// settings' narrowing. Never fails: a malformed URL is reported by [`Notifier::send`].
    pub fn from_vars(var: impl Fn(&str) -> Option<String>, settings: &NotifySettings) -> Self {
        let read = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let allowed = |channel: Channel| settings.channels.as_ref().is_none_or(|list| list.contains(&channel));

        let telegram = match (read(TELEGRAM_BOT_TOKEN), read(TELEGRAM_CHAT_ID)) {
            (Some(token), Some(chat_id)) if allowed(Channel::Telegram) => {
                let base = read(TELEGRAM_API_URL).unwrap_or_else(|| DEFAULT_TELEGRAM_API_URL.to_owned());
                let endpoint = telegram_endpoint(&base, &token);
                Some(TelegramTarget { endpoint, token: Secret(token), chat_id })
            }
            _ => None,
        };
        let slack = read(SLACK_WEBHOOK_URL).filter(|_| allowed(Channel::Slack)).map(|raw| Endpoint::parse(SLACK_WEBHOOK_URL, &raw));
        let webhook =
            read(OC_DEPLOY_WEBHOOK_URL).filter(|_| allowed(Channel::Webhook)).map(|raw| Endpoint::parse(OC_DEPLOY_WEBHOOK_URL, &raw));

        // Following a redirect would resend a credential-bearing request somewhere unplanned;
        // a webhook that redirects is misconfigured and reports its 3xx instead.
        let client = match reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build() {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "notification HTTP client could not be set up");
                None
            }
        };
        Self { telegram, slack, webhook, events: settings.events.clone(), timeout: DEFAULT_TIMEOUT, client }
    }

    /// Reads the channel variables from the process environment.
    pub fn from_env(settings: &NotifySettings) -> Self {
        Self::from_vars(|name| std::env::var(name).ok(), settings)
    }

    /// Replaces the per-channel timeout ([`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The channels that will send, in delivery order.
    pub fn channels(&self) -> Vec<Channel> {
        let mut channels = Vec::new();
        if self.telegram.is_some() {
            channels.push(Channel::Telegram);
        }
        if self.slack.is_some() {
            channels.push(Channel::Slack);
        }
        if self.webhook.is_some() {
            channels.push(Channel::Webhook);
        }
        channels
    }

    /// Whether `event` would be sent anywhere.
    pub fn wants(&self, event: Event) -> bool {
        !self.channels().is_empty() && self.events.as_ref().is_none_or(|list| list.contains(&event))
    }

    /// Sends `msg` to every enabled channel at once and reports each outcome (Telegram, Slack,
    /// webhook order). An event the settings filter out sends nothing and returns no
    /// deliveries. Failures are logged and returned, never raised.
    pub async fn send(&self, msg: &Message) -> Vec<Delivery> {
        if !self.wants(msg.event) {
            tracing::debug!(event = %msg.event, "no notification channel wants this event");
            return Vec::new();
        }
        let telegram = async {
            match &self.telegram {
                Some(target) => Some(self.bounded(Channel::Telegram, self.send_telegram(target, msg)).await),
                None => None,
            }
        };
        let slack = async {
            match &self.slack {
                Some(endpoint) => Some(self.bounded(Channel::Slack, self.send_slack(endpoint, msg)).await),
                None => None,
            }
        };
        let webhook = async {
            match &self.webhook {
                Some(endpoint) => Some(self.bounded(Channel::Webhook, self.send_webhook(endpoint, msg)).await),
                None => None,
            }
        };
        let (telegram, slack, webhook) = tokio::join!(telegram, slack, webhook);
        let deliveries: Vec<Delivery> = [telegram, slack, webhook].into_iter().flatten().collect();
        for delivery in &deliveries {
            match &delivery.error {
                Some(error) => tracing::warn!(channel = %delivery.channel, event = %msg.event, %error, "notification not delivered"),
                None => tracing::debug!(channel = %delivery.channel, event = %msg.event, "notification delivered"),
            }
        }
        deliveries
    }

    /// Runs one channel's delivery under the timeout.
    async fn bounded(&self, channel: Channel, delivery: impl Future<Output = Delivery>) -> Delivery {
        match tokio::time::timeout(self.timeout, delivery).await {
            Ok(delivery) => delivery,
            Err(_) => Delivery::failed(channel, format_args!("timed out after {}", describe_duration(self.timeout))),
        }
    }

    /// POSTs `body` as JSON; a failure is described without the URL.
    async fn post_json(&self, url: &Url, body: &serde_json::Value) -> Result<reqwest::Response, String> {
        let Some(client) = &self.client else { return Err("the HTTP client could not be set up".to_owned()) };
        client.post(url.clone()).json(body).send().await.map_err(|e| transport_reason(&e))
    }

    async fn send_telegram(&self, target: &TelegramTarget, msg: &Message) -> Delivery {
        let channel = Channel::Telegram;
        let url = match target.endpoint.url() {
            Ok(url) => url,
            Err(reason) => return Delivery::failed(channel, reason),
        };
        // The Bot API takes an integer id or an `@channelname`.
        let chat_id = match target.chat_id.parse::<i64>() {
            Ok(id) => json!(id),
            Err(_) => json!(target.chat_id),
        };
        let body = json!({ "chat_id": chat_id, "text": msg.telegram_text(), "parse_mode": "Markdown" });
        let response = match self.post_json(url, &body).await {
            Ok(response) => response,
            Err(reason) => return Delivery::failed(channel, reason),
        };
        let status = response.status();
        let text = match response.text().await {
            Ok(text) => text,
            Err(e) => return Delivery::failed(channel, format_args!("HTTP {}: {}", status.as_u16(), transport_reason(&e))),
        };
        // Every answer is `{"ok": …}`; a failure adds `description` (`Bad Request: chat not
        // found`) with the HTTP status equal to `error_code`.
        let answer: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        let ok = answer.as_ref().and_then(|a| a.get("ok")).and_then(serde_json::Value::as_bool) == Some(true);
        if status.is_success() && ok {
            return Delivery::sent(channel);
        }
        let description = answer.as_ref().and_then(|a| a.get("description")).and_then(serde_json::Value::as_str);
        let secrets = telegram_secrets(target.token.expose(), url);
        let reason = match description {
            Some(description) => scrub(description, &secrets),
            None if status.is_success() => "the answer is not {\"ok\": true}".to_owned(),
            None => canonical_reason(status),
        };
        Delivery::failed(channel, format_args!("HTTP {}: {reason}", status.as_u16()))
    }

    async fn send_slack(&self, endpoint: &Endpoint, msg: &Message) -> Delivery {
        let channel = Channel::Slack;
        let url = match endpoint.url() {
            Ok(url) => url,
            Err(reason) => return Delivery::failed(channel, reason),
        };
        let body = json!({ "text": msg.slack_text() });
        let response = match self.post_json(url, &body).await {
            Ok(response) => response,
            Err(reason) => return Delivery::failed(channel, reason),
        };
        // Slack answers 200 with the plain text `ok`, and a failure with a plain-text code
        // (`channel_not_found`); its own advice is to treat 200 as success and anything else
        // as failure.
        let status = response.status();
        if status == StatusCode::OK {
            return Delivery::sent(channel);
        }
        // Only a Slack error code is repeated; any other body (a proxy's page, an echo of the
        // request) could carry the webhook's secret path.
        let body = response.text().await.unwrap_or_default();
        let code = body.trim();
        let reason = if is_slack_error_code(code) { code.to_owned() } else { canonical_reason(status) };
        Delivery::failed(channel, format_args!("HTTP {}: {reason}", status.as_u16()))
    }

    async fn send_webhook(&self, endpoint: &Endpoint, msg: &Message) -> Delivery {
        let channel = Channel::Webhook;
        let url = match endpoint.url() {
            Ok(url) => url,
            Err(reason) => return Delivery::failed(channel, reason),
        };
        let response = match self.post_json(url, &msg.webhook_payload()).await {
            Ok(response) => response,
            Err(reason) => return Delivery::failed(channel, reason),
        };
        // The body of an arbitrary endpoint is not a reason worth repeating: the status is.
        let status = response.status();
        if status.is_success() {
            Delivery::sent(channel)
        } else {
            Delivery::failed(channel, format_args!("HTTP {}: {}", status.as_u16(), canonical_reason(status)))
        }
    }
}

/// `{base}/bot<token>/sendMessage`, keeping any path prefix of the base.
fn telegram_endpoint(base: &str, token: &str) -> Endpoint {
    Endpoint::parse(TELEGRAM_API_URL, &format!("{}/bot{token}/sendMessage", base.trim_end_matches('/')))
}

/// A transport failure in words that cannot contain the URL: reqwest's own message carries it,
/// so the reason is built from the error's kind and the underlying IO error kind.
fn transport_reason(error: &reqwest::Error) -> String {
    let io_kind = io_error_kind(error);
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        match io_kind {
            Some(kind) => format!("connection failed ({kind})"),
            None => "connection failed".to_owned(),
        }
    } else if error.is_builder() {
        "the request could not be built".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the answer could not be read".to_owned()
    } else {
        match io_kind {
            Some(kind) => format!("request failed ({kind})"),
            None => "request failed".to_owned(),
        }
    }
}

/// The first `std::io::Error` in the chain, as its kind: a fixed phrase such as
/// `connection refused` that never includes an address.
fn io_error_kind(error: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = err.source();
    }
    None
}

fn canonical_reason(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("unexpected status").to_owned()
}

/// Slack's failures are short codes such as `channel_not_found` or `no_service`.
fn is_slack_error_code(text: &str) -> bool {
    (1..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// What an echoing Bot API answer could contain: the whole endpoint, its path, the token and
/// the token's secret half (after the bot id and `:`), longest first so a longer match wins.
fn telegram_secrets<'a>(token: &'a str, url: &'a Url) -> Vec<&'a str> {
    let mut secrets = vec![url.as_str(), url.path(), token];
    if let Some((_, secret_half)) = token.split_once(':') {
        secrets.push(secret_half);
    }
    secrets
}

/// Makes text a server sent back fit for an error: one line, bounded, and with any echoed
/// credential masked. This is a second line of defence: the request's URL is never formatted.
fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    // Very short strings would mask ordinary words without protecting anything.
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, "********");
    }
    truncate(&text, MAX_REASON_CHARS)
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Telegram's legacy Markdown escapes `_`, `*`, `` ` `` and `[` outside entities with a
/// backslash.
fn escape_telegram(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '_' | '*' | '`' | '[') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Slack's `mrkdwn` reserves `&`, `<` and `>`.
fn escape_slack(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn describe_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 { format!("{} s", duration.as_secs()) } else { format!("{} ms", duration.as_millis()) }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn production_shipped_reads_like_the_skill() {
        assert_eq!(message(Event::ProductionShipped).telegram_text(), "✅ *gtrack* deployed to production — abc1234");
    }

    #[test]
    fn telegram_markup_characters_are_escaped_outside_the_bold_name() {
        let msg = Message { project: "my_app".into(), detail: Some("check `api_health` [x] *".into()), ..message(Event::SmokeFailure) };
        assert_eq!(msg.telegram_text(), "❌ *my_app* smoke tests failed on production — abc1234\ncheck \\`api\\_health\\` \\[x] \\*");
    }

    #[test]
    fn a_project_with_a_star_is_not_bold() {
        let msg = Message { project: "a*b".into(), ..message(Event::Rollback) };
        assert_eq!(msg.telegram_text(), "⏪ a\\*b rolled back on production — abc1234");
    }

    #[test]
    fn slack_escapes_its_reserved_characters() {
        let msg = Message { url: Some("https://x.test/?a=1&b=<2>".into()), ..message(Event::StagingVerified) };
        assert_eq!(msg.slack_text(), "🧪 *gtrack* verified on production — abc1234\nhttps://x.test/?a=1&amp;b=&lt;2&gt;");
    }

    #[test]
    fn a_distinct_version_is_shown_and_a_repeated_one_is_not() {
        let msg = Message { version: "v42".into(), ..message(Event::ProductionShipped) };
        assert_eq!(msg.plain_text(), "✅ gtrack deployed to production — abc1234 (v42)");
        let msg = Message { version: "abc1234def567".into(), ..message(Event::ProductionShipped) };
        assert_eq!(msg.plain_text(), "✅ gtrack deployed to production — abc1234");
    }

    #[test]
    fn scrub_masks_echoed_secrets_and_bounds_the_text() {
        assert_eq!(scrub("bad  token 123:SECRET\nhere", &["123:SECRET"]), "bad token ******** here");
        assert_eq!(scrub(&"x".repeat(500), &[]).chars().count(), MAX_REASON_CHARS + 1);
    }

    #[test]
    fn long_details_are_cut() {
        let msg = Message { detail: Some("y".repeat(5000)), ..message(Event::SmokeFailure) };
        assert!(msg.telegram_text().chars().count() < 1100);
    }

    #[test]
    fn the_telegram_endpoint_keeps_a_base_path_and_drops_a_trailing_slash() {
        let Endpoint::Valid(url) = telegram_endpoint("http://127.0.0.1:9/tg/", "1:T") else { panic!("the endpoint must parse") };
        assert_eq!(url.expose().as_str(), "http://127.0.0.1:9/tg/bot1:T/sendMessage");
    }

    #[test]
    fn debug_output_masks_credentials() {
        let vars = |name: &str| match name {
            TELEGRAM_BOT_TOKEN => Some("999:TOPSECRET".to_owned()),
            TELEGRAM_CHAT_ID => Some("-100".to_owned()),
            SLACK_WEBHOOK_URL => Some("https://hooks.slack.com/services/T1/B1/HOOKSECRET".to_owned()),
            _ => None,
        };
        let debug = format!("{:?}", Notifier::from_vars(vars, &NotifySettings::default()));
        assert!(!debug.contains("TOPSECRET") && !debug.contains("HOOKSECRET"), "{debug}");
    }
}
