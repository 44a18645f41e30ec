//! The cloud platforms: each provider turns pipeline steps into the platform's own CLI
//! argument lists (or API calls) and parses its machine-readable output. What they share lives
//! here: how a platform CLI is invoked (program prefix, environment allow-list, timeout) and how
//! its failures become errors that carry the platform's own words, redacted, with a hint.

pub mod cloudflare;
pub mod command;
pub mod fly;
pub mod heroku;
pub mod render;
pub mod shuttle;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, Platform};
use crate::domain::Environment;
use crate::error::{CoreError, Result};
use crate::process::{Cmd, Output, Runner};

/// Default seconds one platform command may take (deploys build images; migrations run).
pub const DEFAULT_PLATFORM_TIMEOUT: u64 = 900;

/// How one platform's CLI is run: the program prefix, the directory, the variables it
/// documents (passed through from the server's environment, nothing else), and the timeout.
#[derive(Debug, Clone)]
pub struct PlatformCli {
    pub platform: Platform,
    /// `["wrangler"]`, or the config's `platform_cli` (`["npx", "wrangler"]`).
    pub prefix: Vec<String>,
    pub cwd: PathBuf,
    pub pass_env: &'static [&'static str],
    pub timeout: Duration,
    pub runner: Runner,
}

impl PlatformCli {
    /// The CLI of `cfg.platform`, run in the app directory.
    pub fn new(cfg: &Config, root: &Path, runner: &Runner, default_program: &str, pass_env: &'static [&'static str]) -> Result<Self> {
        let prefix = match &cfg.platform_cli {
            Some(p) if p.is_empty() => {
                return Err(CoreError::invalid(
                    "platform_cli",
                    "the command is empty",
                    format!(
                        "remove platform_cli to use `{default_program}`, or give the program as a list, e.g. [\"npx\", \"{default_program}\"]"
                    ),
                ));
            }
            Some(p) => p.clone(),
            None => vec![default_program.to_owned()],
        };
        Ok(Self {
            platform: cfg.platform,
            prefix,
            cwd: cfg.app_dir(root),
            pass_env,
            timeout: Duration::from_secs(cfg.platform_timeout_seconds.unwrap_or(DEFAULT_PLATFORM_TIMEOUT)),
            runner: runner.clone(),
        })
    }

    /// The CLI with these arguments (prefix, allow-listed environment, timeout, app directory).
    pub fn cmd<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut cmd = Cmd::new(&self.prefix[0], &self.cwd).args(self.prefix[1..].iter().cloned()).args(args).timeout(self.timeout);
        for name in self.pass_env {
            cmd = cmd.pass_env(*name);
        }
        cmd
    }

    /// Runs the command; a non-zero exit becomes [`CoreError::Platform`] with the CLI's own
    /// message (the tail of stderr, or of stdout when stderr is empty; already redacted).
    pub async fn run(&self, cmd: &Cmd, cancel: &CancellationToken) -> Result<Output> {
        let out = self.runner.run(cmd, cancel).await?;
        if out.success() {
            return Ok(out);
        }
        Err(self.failure(cmd, &out))
    }

    /// The error for a failed command, with a hint that fits the platform's message.
    pub fn failure(&self, cmd: &Cmd, out: &Output) -> CoreError {
        let message = platform_message(out);
        let hint = failure_hint(self.platform, &message);
        let status = out.code.map_or_else(|| "a signal".to_owned(), |c| format!("exit {c}"));
        CoreError::Platform {
            platform: self.platform.as_str().into(),
            message: format!("`{}` failed ({status}): {message}", cmd.display()),
            hint,
            retryable: looks_transient(&message),
        }
    }
}

/// The most useful part of a failed CLI's output: its error lines when it marks them
/// (`✘ [ERROR]` with the indented lines under it, where wrangler puts the API's reason and
/// code; `Error:`; ` ›   Error:`), else the last lines of stderr, else of stdout.
pub fn platform_message(out: &Output) -> String {
    let (stderr, stdout) = (strip_ansi(&out.stderr), strip_ansi(&out.stdout));
    let mut marked: Vec<&str> = Vec::new();
    for stream in [&stderr, &stdout] {
        let mut in_block = false;
        for line in stream.lines() {
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            if trimmed.contains("[ERROR]") {
                in_block = true;
                marked.push(trimmed);
            } else if in_block && line.starts_with(char::is_whitespace) && !trimmed.starts_with("If you think this is a bug") {
                marked.push(trimmed);
            } else {
                in_block = false;
                if trimmed.starts_with("Error") || trimmed.starts_with("› ") || trimmed.starts_with("›   Error") {
                    marked.push(trimmed);
                }
            }
        }
    }
    let text = if !marked.is_empty() {
        marked.join(" | ")
    } else if !out.stderr.trim().is_empty() {
        out.tail(6)
    } else {
        out.stdout.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    let text = strip_ansi(&text);
    let text = text.trim();
    if text.is_empty() { "no output".into() } else { text.chars().take(2000).collect() }
}

/// Removes ANSI colour sequences (wrangler and heroku colour their errors).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

fn looks_transient(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["timed out", "timeout", "temporarily", "rate limit", "too many requests", "503", "502", "econnreset", "connection reset"]
        .iter()
        .any(|k| m.contains(k))
}

/// A hint for a platform failure: login problems first, then the platform's usual fixes.
pub fn failure_hint(platform: Platform, message: &str) -> String {
    let m = message.to_ascii_lowercase();
    let auth = [
        "not authenticated",
        "unauthorized",
        "authentication",
        "api token",
        "access token",
        "invalid credentials",
        "not logged in",
        "forbidden",
        "10000",
    ]
    .iter()
    .any(|k| m.contains(k));
    match platform {
        Platform::CloudflareWorkers if auth => {
            "export CLOUDFLARE_API_TOKEN (Workers Scripts: Edit, D1: Edit) and CLOUDFLARE_ACCOUNT_ID for the server, or run `wrangler login`; `wrangler whoami` shows who you are".into()
        }
        Platform::Heroku if auth => "export HEROKU_API_KEY for the server (heroku authorizations:create) or run `heroku login`".into(),
        Platform::FlyIo if auth => "export FLY_API_TOKEN for the server (fly tokens create deploy) or run `fly auth login`".into(),
        Platform::Render if auth => "export RENDER_API_KEY for the server (Render dashboard → Account settings → API keys)".into(),
        Platform::Shuttle if auth => "export SHUTTLE_API_KEY for the server or run `shuttle login`".into(),
        _ if looks_transient(message) => "the platform looks busy or unreachable; retry in a minute".into(),
        Platform::CloudflareWorkers => "read wrangler's message above; `wrangler deploy --dry-run` checks the build without deploying".into(),
        Platform::Heroku => "read the Heroku message above; `heroku releases -a <app>` and `heroku logs -a <app>` show what happened".into(),
        Platform::FlyIo => "read flyctl's message above; `fly status -a <app>` and `fly logs -a <app>` show what happened".into(),
        Platform::Render => "read Render's message above; the service's Events page in the dashboard shows the deploy log".into(),
        Platform::Shuttle => "read Shuttle's message above; `shuttle logs` shows the deployment's output".into(),
        Platform::Command | Platform::Local => "read the command's output above, fix the cause and retry".into(),
    }
}

/// `environments.<env>.<field>` is required by this platform.
pub fn required<'a>(value: Option<&'a String>, env: Environment, field: &str, example: &str) -> Result<&'a str> {
    value.map(String::as_str).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        CoreError::invalid(
            format!("environments.{env}.{field}"),
            "is required by this platform",
            format!("set environments.{env}.{field} in .oc-deploy-ops.json, e.g. \"{field}\": \"{example}\""),
        )
    })
}

/// Parses a CLI's JSON stdout, naming the command when it is not what we expect.
pub fn parse_json<T: serde::de::DeserializeOwned>(platform: Platform, cmd: &Cmd, stdout: &str) -> Result<T> {
    serde_json::from_str(stdout.trim()).map_err(|e| CoreError::Platform {
        platform: platform.as_str().into(),
        message: format!(
            "`{}` printed output oc-deploy cannot read ({e}): {}",
            cmd.display(),
            stdout.chars().take(300).collect::<String>()
        ),
        hint: "check the CLI's version (oc-deploy targets the versions in docs/platforms.md)".into(),
        retryable: false,
    })
}
