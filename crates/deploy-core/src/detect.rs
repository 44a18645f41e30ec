//! Project detection for `deploy_init`: which platform and language a project uses (from the
//! files it has), a proposed `.oc-deploy-ops.json`, and the setup checklist (config, git, CLI,
//! credentials, ports, databases), each item with a hint when something needs doing.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::{
    AuditConfig, AutoRollbackConfig, CONFIG_FILE, Config, DeployStep, EnvConfig, Environments, HealthConfig, LocalConfig, Platform,
    PreflightConfig, RollbackConfig, SmokeTest,
};
use crate::domain::Environment;
use crate::error::{CoreError, Result};
use crate::pack::{self, DispatchRule, Resolution};
use crate::process::{Cmd, Runner, install_hint};

/// Cloudflare API token wrangler uses when it is not logged in (`wrangler login`).
pub const CLOUDFLARE_API_TOKEN: &str = "CLOUDFLARE_API_TOKEN";
/// Heroku API key the heroku CLI uses when it is not logged in (`heroku login`).
pub const HEROKU_API_KEY: &str = "HEROKU_API_KEY";
/// Fly.io token flyctl uses when it is not logged in (`fly auth login`).
pub const FLY_API_TOKEN: &str = "FLY_API_TOKEN";
/// Render API key for the Render CLI and API.
pub const RENDER_API_KEY: &str = "RENDER_API_KEY";
/// Shuttle API key cargo-shuttle uses when it is not logged in (`cargo shuttle login`).
pub const SHUTTLE_API_KEY: &str = "SHUTTLE_API_KEY";

/// Every credential variable the checklist looks for (presence only, never the value).
const AUTH_VARS: &[&str] = &[CLOUDFLARE_API_TOKEN, HEROKU_API_KEY, FLY_API_TOKEN, RENDER_API_KEY, SHUTTLE_API_KEY];

/// The local platform's default environment ports.
pub const LOCAL_STAGING_PORT: u16 = 8801;
pub const LOCAL_PRODUCTION_PORT: u16 = 8802;

/// Render service ids `propose_config` writes until the user fills in the real ones.
const RENDER_PLACEHOLDERS: [&str; 2] = ["srv-staging", "srv-production"];

/// The languages detection recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    TypeScript,
    JavaScript,
    Python,
    Ruby,
    Go,
    Rust,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TypeScript => "typescript",
            Self::JavaScript => "javascript",
            Self::Python => "python",
            Self::Ruby => "ruby",
            Self::Go => "go",
            Self::Rust => "rust",
        }
    }
}

/// What the project's files say about how it deploys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Detection {
    pub platform: Platform,
    pub language: Option<Language>,
    /// Each file that decided something, as `wrangler.toml → cloudflare-workers`.
    pub evidence: Vec<String>,
    /// The project has a frontend to deploy (a `frontend/` directory, or Pages in wrangler).
    pub frontend: bool,
    /// Pack-aware dispatch: which rule chose the platform (a pack's choice is `platform`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<Resolution>,
}

/// Platform files in the order they decide: the first one present wins.
const PLATFORM_FILES: &[(&str, Platform)] = &[
    ("wrangler.toml", Platform::CloudflareWorkers),
    ("wrangler.json", Platform::CloudflareWorkers),
    ("wrangler.jsonc", Platform::CloudflareWorkers),
    ("fly.toml", Platform::FlyIo),
    ("render.yaml", Platform::Render),
    ("Procfile", Platform::Heroku),
    ("app.json", Platform::Heroku),
    ("Shuttle.toml", Platform::Shuttle),
];

/// Detects the platform, language and frontend of the project at `root`, with pack-aware
/// dispatch from the project's `activePack` applied leniently: a pack that cannot be used is
/// reported in the evidence and the files decide. [`detect_for_init`] is the strict form.
pub fn detect(root: &Path) -> Detection {
    let mut d = detect_files(root);
    match pack::resolve_platform(root, None, None, d.language) {
        Ok(r) => apply_dispatch(&mut d, r),
        Err(e) => d.evidence.push(format!("pack dispatch skipped: {e} (hint: {})", e.hint())),
    }
    d
}

/// Detection for `deploy_init`, with the skill's pack-aware dispatch applied strictly: `pack`
/// (else the project's `activePack`) and the requested `--platform` go through
/// [`pack::resolve_platform`]. A pack miss is the error `unknown pack: <id>`; a requested
/// platform outside the pack's `supportedPlatforms` is refused naming the allowed ones.
pub fn detect_for_init(root: &Path, pack: Option<&str>, requested: Option<Platform>) -> Result<Detection> {
    let mut d = detect_files(root);
    let r = pack::resolve_platform(root, pack, requested, d.language)?;
    apply_dispatch(&mut d, r);
    Ok(d)
}

/// Records a resolution: a pack's choice becomes the detected platform; a plain request is
/// left to `propose_config` (the files' answer stays what the files say).
fn apply_dispatch(d: &mut Detection, r: Resolution) {
    let by_pack = matches!(r.rule, DispatchRule::PackDefault | DispatchRule::PackOverride | DispatchRule::LanguageFallback);
    if let (true, Some(chosen)) = (by_pack, r.platform) {
        if chosen != d.platform && d.platform != Platform::Local {
            d.evidence.push(format!(
                "the project's files say {}, but the pack decides {} (request a platform to choose another)",
                d.platform.as_str(),
                chosen.as_str()
            ));
        }
        d.platform = chosen;
    }
    if r.pack.is_some() || r.rule != DispatchRule::ProjectFiles {
        d.evidence.push(r.detail.clone());
    }
    d.dispatch = Some(r);
}

/// Detection from the project's files alone.
fn detect_files(root: &Path) -> Detection {
    let mut evidence = Vec::new();
    let mut platform: Option<Platform> = None;
    for &(file, candidate) in PLATFORM_FILES {
        if !root.join(file).is_file() {
            continue;
        }
        // Expo apps have an app.json too; only Heroku's has no `expo` key.
        if file == "app.json" && read_json(root, file).is_some_and(|v| v.get("expo").is_some()) {
            evidence.push("app.json has an `expo` key: an Expo app manifest, not Heroku's".into());
            continue;
        }
        match platform {
            None => {
                platform = Some(candidate);
                evidence.push(format!("{file} → {}", candidate.as_str()));
            }
            Some(chosen) if chosen != candidate => {
                evidence.push(format!("{file} → {} (not used: {} was found first)", candidate.as_str(), chosen.as_str()));
            }
            Some(_) => {}
        }
    }
    let platform = platform.unwrap_or_else(|| {
        evidence.push("no platform file (wrangler.toml, fly.toml, render.yaml, Procfile, app.json, Shuttle.toml) → local".into());
        Platform::Local
    });

    let language = detect_language(root, &mut evidence);

    let mut frontend = false;
    if root.join("frontend").is_dir() {
        frontend = true;
        evidence.push("frontend/ → frontend".into());
    }
    if let Some(w) = read_wrangler(root)
        && w.mentions_pages
    {
        frontend = true;
        evidence.push(format!("{} mentions pages → frontend", w.file));
    }
    Detection { platform, language, evidence, frontend, dispatch: None }
}

fn detect_language(root: &Path, evidence: &mut Vec<String>) -> Option<Language> {
    let has = |f: &str| root.join(f).is_file();
    if has("tsconfig.json") {
        evidence.push("tsconfig.json → typescript".into());
        return Some(Language::TypeScript);
    }
    if has("package.json") {
        let pkg = read_json(root, "package.json");
        if pkg.as_ref().is_some_and(|p| has_dependency(p, "typescript")) {
            evidence.push("package.json (typescript dependency) → typescript".into());
            return Some(Language::TypeScript);
        }
        evidence.push("package.json → javascript".into());
        return Some(Language::JavaScript);
    }
    let rules: &[(&[&str], Language)] = &[
        (&["Cargo.toml"], Language::Rust),
        (&["go.mod"], Language::Go),
        (&["requirements.txt", "pyproject.toml", "manage.py", "Pipfile", "setup.py"], Language::Python),
        (&["Gemfile"], Language::Ruby),
    ];
    for (files, language) in rules {
        if let Some(file) = files.iter().find(|f| has(f)) {
            evidence.push(format!("{file} → {}", language.as_str()));
            return Some(*language);
        }
    }
    None
}

fn read_text(root: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(root.join(file)).ok()
}

fn read_json(root: &Path, file: &str) -> Option<Value> {
    serde_json::from_str(&read_text(root, file)?).ok()
}

fn has_dependency(pkg: &Value, name: &str) -> bool {
    ["dependencies", "devDependencies", "peerDependencies", "optionalDependencies"]
        .iter()
        .any(|section| pkg.get(section).and_then(|d| d.get(name)).is_some())
}

fn npm_script<'a>(pkg: &'a Value, name: &str) -> Option<&'a str> {
    pkg.get("scripts")?.get(name)?.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// The value of a `key = "value"` line (TOML's simple form), when the line is one.
fn toml_string(line: &str, key: &str) -> Option<String> {
    let rest = line.trim().strip_prefix(key)?.trim_start().strip_prefix('=')?.trim();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &rest[1..];
    Some(body[..body.find(quote)?].to_owned())
}

/// A TOML section header's name (`[package]` → `package`, `[[d1_databases]]` → `d1_databases`).
fn toml_header(line: &str) -> Option<&str> {
    let t = line.trim();
    if !t.starts_with('[') {
        return None;
    }
    let end = t.find(']')?;
    Some(t[..end].trim_start_matches('[').trim())
}

/// Removes `//` and `/* */` comments outside strings, so a `wrangler.jsonc` parses as JSON.
fn strip_json_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        out.push(n);
                    }
                }
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// What the project's wrangler file says: the Worker's name and the D1 databases of the
/// top-level (production) and `staging` environments.
#[derive(Debug, Clone, Default, PartialEq)]
struct WranglerInfo {
    file: &'static str,
    text: String,
    name: Option<String>,
    d1_production: Option<String>,
    d1_staging: Option<String>,
    mentions_pages: bool,
}

fn read_wrangler(root: &Path) -> Option<WranglerInfo> {
    let (file, text) = ["wrangler.toml", "wrangler.json", "wrangler.jsonc"].iter().find_map(|f| Some((*f, read_text(root, f)?)))?;
    let mut info = WranglerInfo { file, mentions_pages: text.to_ascii_lowercase().contains("pages"), ..WranglerInfo::default() };
    if file == "wrangler.toml" {
        // D1 bindings are not inherited by wrangler environments, so a top-level database
        // belongs to production only; staging's is the one under `env.staging`.
        let mut section: Option<&str> = None;
        for line in text.lines() {
            if let Some(h) = toml_header(line) {
                section = Some(h);
                continue;
            }
            if section.is_none() && info.name.is_none() {
                info.name = toml_string(line, "name");
            }
            let Some(pos) = line.find("database_name") else { continue };
            let Some(db) = toml_string(&line[pos..], "database_name") else { continue };
            let slot = match section {
                None | Some("d1_databases") => &mut info.d1_production,
                Some(h) if h == "env.staging" || h.starts_with("env.staging.") => &mut info.d1_staging,
                Some(_) => continue,
            };
            slot.get_or_insert(db);
        }
    } else if let Ok(v) = serde_json::from_str::<Value>(&strip_json_comments(&text)) {
        let first_db = |v: Option<&Value>| v?.get("d1_databases")?.get(0)?.get("database_name")?.as_str().map(str::to_owned);
        info.name = v.get("name").and_then(Value::as_str).map(str::to_owned);
        info.d1_production = first_db(Some(&v));
        info.d1_staging = first_db(v.get("env").and_then(|e| e.get("staging")));
    }
    info.text = text;
    Some(info)
}

/// The project's name: package.json `name` (without an npm scope), else Cargo.toml's
/// `[package] name`, else the directory's name.
fn project_name(root: &Path) -> String {
    if let Some(name) = read_json(root, "package.json").and_then(|p| p.get("name").and_then(Value::as_str).map(str::to_owned)) {
        let bare = name.rsplit('/').next().unwrap_or(&name).trim().to_owned();
        if !bare.is_empty() {
            return bare;
        }
    }
    if let Some(text) = read_text(root, "Cargo.toml") {
        let mut in_package = false;
        for line in text.lines() {
            if let Some(h) = toml_header(line) {
                in_package = h == "package";
                continue;
            }
            if in_package && let Some(name) = toml_string(line, "name").filter(|n| !n.trim().is_empty()) {
                return name;
            }
        }
    }
    let dir = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    dir.file_name().and_then(|n| n.to_str()).map(str::to_owned).filter(|n| !n.is_empty()).unwrap_or_else(|| "app".into())
}

/// A name usable in host names and app names: lowercase letters, digits and single dashes.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-').to_owned();
    if out.is_empty() { "app".into() } else { out }
}

/// The local start command, guessed from the project's files.
fn guess_local_start(root: &Path) -> Vec<String> {
    if let Some(procfile) = read_text(root, "Procfile") {
        let web = procfile
            .lines()
            .find_map(|l| l.trim().strip_prefix("web:"))
            .map(|cmd| cmd.split_whitespace().map(str::to_owned).collect::<Vec<_>>());
        if let Some(argv) = web.filter(|a| !a.is_empty()) {
            return argv;
        }
    }
    if read_json(root, "package.json").is_some_and(|p| npm_script(&p, "start").is_some()) {
        return vec!["npm".into(), "start".into()];
    }
    for file in ["app.py", "main.py"] {
        if root.join(file).is_file() {
            return vec!["python3".into(), file.into()];
        }
    }
    if root.join("Cargo.toml").is_file() {
        return vec!["cargo".into(), "run".into(), "--release".into()];
    }
    if root.join("go.mod").is_file() {
        return vec!["go".into(), "run".into(), ".".into()];
    }
    vec!["./start".into()]
}

/// npm's placeholder test script, which always fails.
const NPM_DEFAULT_TEST: &str = "no test specified";

fn propose_preflight(root: &Path, language: Option<Language>) -> PreflightConfig {
    let mut pre = PreflightConfig::default();
    if !matches!(language, Some(Language::TypeScript | Language::JavaScript)) {
        return pre;
    }
    let argv = |a: &[&str]| Some(a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    // `npm ci` refuses to run without a lockfile; `npm install` creates one.
    pre.install = if root.join("package-lock.json").is_file() { argv(&["npm", "ci"]) } else { argv(&["npm", "install"]) };
    if language == Some(Language::TypeScript) {
        pre.typecheck = argv(&["npx", "tsc", "--noEmit"]);
    }
    if let Some(pkg) = read_json(root, "package.json") {
        if has_dependency(&pkg, "vitest") {
            pre.test = argv(&["npx", "vitest", "run"]);
        } else if npm_script(&pkg, "test").is_some_and(|t| !t.contains(NPM_DEFAULT_TEST)) {
            pre.test = argv(&["npm", "test"]);
        }
    }
    pre
}

/// A complete config for the project, from what was detected; `platform` overrides the
/// detected one. Placeholders (URLs, Render service ids) are named by [`placeholder_notes`].
pub fn propose_config(root: &Path, d: &Detection, platform: Option<Platform>) -> Config {
    let platform = platform.unwrap_or(d.platform);
    let project_name = project_name(root);
    let name = slug(&project_name);
    let env = |url: String| EnvConfig { url: Some(url), ..EnvConfig::default() };
    let apps = |suffix: &str| {
        let app = |n: String| EnvConfig { url: Some(format!("https://{n}{suffix}")), app: Some(n), ..EnvConfig::default() };
        (app(format!("{name}-staging")), app(name.clone()))
    };

    let mut deploy_order = vec![DeployStep::DeployApi];
    let mut local = None;
    let (staging, production, rollback_strategy) = match platform {
        Platform::Local => {
            let start = guess_local_start(root);
            local = Some(LocalConfig {
                start,
                build: None,
                migrate: None,
                health_path: "/health".into(),
                ready_timeout_seconds: 30,
                canary_percent: 10,
                env: Default::default(),
            });
            let port_env =
                |port: u16| EnvConfig { url: Some(format!("http://127.0.0.1:{port}")), port: Some(port), ..EnvConfig::default() };
            (port_env(LOCAL_STAGING_PORT), port_env(LOCAL_PRODUCTION_PORT), "previous-release")
        }
        Platform::CloudflareWorkers => {
            let w = read_wrangler(root).unwrap_or_default();
            let worker = w.name.as_deref().map(slug).unwrap_or_else(|| name.clone());
            if w.d1_staging.is_some() || w.d1_production.is_some() {
                deploy_order.insert(0, DeployStep::Migrate);
            }
            if d.frontend {
                deploy_order.push(DeployStep::DeployFrontend);
            }
            let staging = EnvConfig {
                wrangler_env: Some("staging".into()),
                d1_database: w.d1_staging,
                ..env(format!("https://{worker}-staging.workers.dev"))
            };
            let production = EnvConfig { d1_database: w.d1_production, ..env(format!("https://{worker}.workers.dev")) };
            (staging, production, "wrangler-rollback")
        }
        Platform::Heroku => {
            let (s, p) = apps(".herokuapp.com");
            (s, p, "heroku-rollback")
        }
        Platform::FlyIo => {
            let (s, p) = apps(".fly.dev");
            (s, p, "fly-previous-image")
        }
        Platform::Shuttle => {
            let (s, p) = apps(".shuttleapp.rs");
            (s, p, "shuttle-redeploy")
        }
        Platform::Render => {
            let svc = |id: &str, host: String| EnvConfig { service_id: Some(id.into()), ..env(format!("https://{host}.onrender.com")) };
            (svc(RENDER_PLACEHOLDERS[0], format!("{name}-staging")), svc(RENDER_PLACEHOLDERS[1], name.clone()), "render-rollback")
        }
        Platform::Command => (EnvConfig::default(), EnvConfig::default(), "previous-release"),
    };

    Config {
        schema: None,
        project_name,
        platform,
        monorepo: false,
        monorepo_root: None,
        app_path: None,
        environments: Environments { staging: Some(staging), production: Some(production) },
        deploy_order,
        smoke_tests: vec![SmokeTest {
            name: "health".into(),
            url: "/health".into(),
            expect_status: Some(200),
            expect_contains: None,
            expect_json: None,
            expect_version: false,
            max_latency_ms: None,
        }],
        rollback: RollbackConfig { strategy: rollback_strategy.into(), keep_versions: 3 },
        health: HealthConfig::default(),
        auto_rollback: AutoRollbackConfig::default(),
        default_strategy: None,
        preflight: propose_preflight(root, d.language),
        audit: AuditConfig::default(),
        local,
        platform_cli: None,
        platform_timeout_seconds: None,
        cloudflare: propose_pages(root, d, platform, &name),
        heroku: None,
        command: None,
        notifications: None,
    }
}

/// The skill's Pages frontend (`frontend/` built with `npm run build`, `dist` uploaded, the
/// staging project `<project>-staging`) when a Workers project has one.
fn propose_pages(root: &Path, d: &Detection, platform: Platform, name: &str) -> Option<crate::config::CloudflareConfig> {
    if platform != Platform::CloudflareWorkers || !d.frontend {
        return None;
    }
    let worker = read_wrangler(root).and_then(|w| w.name).map(|n| slug(&n)).unwrap_or_else(|| name.to_owned());
    let has_dir = root.join("frontend").is_dir();
    Some(crate::config::CloudflareConfig {
        deploy_api: None,
        canary_percent: None,
        pages: Some(crate::config::PagesConfig {
            project: worker,
            staging_project: None,
            dir: if has_dir { "frontend/dist".into() } else { "dist".into() },
            install: Some(vec!["npm".into(), "ci".into()]),
            build: Some(vec!["npm".into(), "run".into(), "build".into()]),
        }),
    })
}

/// Values in a config that are guesses the user must check before the first deploy.
pub fn placeholder_notes(cfg: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    for env in Environment::ALL {
        let Some(e) = cfg.environments.get(env) else { continue };
        if let Some(id) = e.service_id.as_deref().filter(|id| RENDER_PLACEHOLDERS.contains(id)) {
            let what = format!("environments.{env}.service_id `{id}` is a placeholder");
            notes.push(format!("{what}: copy the real id (srv-…) from the Render dashboard"));
        }
        if let Some(url) = &e.url {
            let host = url.trim_start_matches("https://").trim_start_matches("http://").split(['/', ':']).next().unwrap_or("");
            // Real workers.dev hosts carry the account's subdomain: <worker>.<subdomain>.workers.dev.
            if host.ends_with(".workers.dev") && host.matches('.').count() == 2 {
                notes.push(format!(
                    "environments.{env}.url `{url}` is a placeholder: workers.dev URLs read <worker>.<your-subdomain>.workers.dev; \
                     use the URL `wrangler deploy` prints"
                ));
            }
        }
    }
    notes
}

/// How a checklist item came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Ok,
    Warn,
    Fail,
}

/// One line of the setup checklist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChecklistItem {
    pub name: String,
    pub status: CheckStatus,
    pub detail: String,
    /// What to do about it, when the status is not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ChecklistItem {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), status: CheckStatus::Ok, detail: detail.into(), hint: None }
    }
    fn warn(name: impl Into<String>, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { name: name.into(), status: CheckStatus::Warn, detail: detail.into(), hint: Some(hint.into()) }
    }
    fn fail(name: impl Into<String>, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { name: name.into(), status: CheckStatus::Fail, detail: detail.into(), hint: Some(hint.into()) }
    }
}

/// What the checklist sees of this machine: the PATH it searches and which credential
/// variables are set (their names only; values are never read into it).
#[derive(Debug, Clone, Default)]
struct Host {
    path: Option<OsString>,
    set_vars: BTreeSet<&'static str>,
}

impl Host {
    fn from_process() -> Self {
        Self {
            path: std::env::var_os("PATH"),
            set_vars: AUTH_VARS.iter().copied().filter(|n| std::env::var_os(n).is_some_and(|v| !v.is_empty())).collect(),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn search_path(program: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?).filter(|d| !d.as_os_str().is_empty()).map(|d| d.join(program)).find(|p| is_executable(p))
}

/// Finds a program on the process's PATH, without starting anything.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    search_path(program, std::env::var_os("PATH").as_deref())
}

/// The setup checklist for a project and its (proposed or written) config.
pub async fn checklist(root: &Path, cfg: &Config, runner: &Runner, cancel: &CancellationToken) -> Vec<ChecklistItem> {
    checklist_on(root, cfg, runner, cancel, &Host::from_process()).await
}

async fn checklist_on(root: &Path, cfg: &Config, runner: &Runner, cancel: &CancellationToken, host: &Host) -> Vec<ChecklistItem> {
    let mut items = vec![check_config(root, cfg)];
    match check_git(root, runner, cancel).await {
        Some(git) => items.extend(git),
        None => return cancelled(items),
    }
    items.push(check_environments(cfg));
    match cfg.platform {
        Platform::Local => {
            items.extend(check_local_commands(root, cfg, host));
            items.extend(check_ports(cfg));
        }
        Platform::Command => {}
        cloud => {
            items.push(check_cli(root, cfg, cloud, host));
            items.push(check_credentials(cloud, host));
            if cloud == Platform::CloudflareWorkers {
                items.push(check_d1(root, cfg));
            }
        }
    }
    items
}

fn cancelled(mut items: Vec<ChecklistItem>) -> Vec<ChecklistItem> {
    items.push(ChecklistItem::warn("checklist", "cancelled: the remaining checks did not run", "run deploy_init again"));
    items
}

fn check_config(root: &Path, cfg: &Config) -> ChecklistItem {
    const NAME: &str = "config valid";
    let file = root.join(CONFIG_FILE);
    let text = match serde_json::to_string(cfg) {
        Ok(t) => t,
        Err(e) => return ChecklistItem::fail(NAME, format!("the config cannot be written as JSON: {e}"), "report this as a bug"),
    };
    match Config::parse(&text, &file) {
        Ok(_) => ChecklistItem::ok(NAME, format!("{CONFIG_FILE} is valid for platform {}", cfg.platform.as_str())),
        Err(e) => ChecklistItem::fail(NAME, e.to_string(), e.hint()),
    }
}

const GIT_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_COMMIT_HINT: &str = "git add -A && git commit -m \"initial commit\" (a release is a committed tree)";

/// The git items, or `None` when cancelled.
async fn check_git(root: &Path, runner: &Runner, cancel: &CancellationToken) -> Option<Vec<ChecklistItem>> {
    const REPO: &str = "git repository";
    if cancel.is_cancelled() {
        return None;
    }
    let head = Cmd::new("git", root).args(["rev-parse", "--verify", "HEAD"]).timeout(GIT_TIMEOUT);
    let out = match runner.run(&head, cancel).await {
        Ok(out) => out,
        Err(CoreError::Cancelled) => return None,
        Err(e) => return Some(vec![ChecklistItem::fail(REPO, format!("cannot run git: {e}"), e.hint())]),
    };
    if !out.success() {
        let item = if out.stderr.contains("not a git repository") {
            ChecklistItem::fail(REPO, format!("{} is not a git repository", root.display()), format!("git init && {FIRST_COMMIT_HINT}"))
        } else {
            ChecklistItem::fail(REPO, "the repository has no commit yet", FIRST_COMMIT_HINT)
        };
        return Some(vec![item]);
    }
    let sha = out.stdout.trim();
    let mut items = vec![ChecklistItem::ok(REPO, format!("HEAD is {}", &sha[..sha.len().min(7)]))];

    const TREE: &str = "working tree clean";
    let status = Cmd::new("git", root).args(["status", "--porcelain"]).timeout(GIT_TIMEOUT);
    match runner.run(&status, cancel).await {
        Err(CoreError::Cancelled) => return None,
        Err(e) => items.push(ChecklistItem::warn(TREE, format!("git status failed: {e}"), e.hint())),
        Ok(out) if !out.success() => {
            items.push(ChecklistItem::warn(TREE, format!("git status failed: {}", out.tail(3)), "run `git status` to see why"))
        }
        Ok(out) => {
            let changed = out.stdout.lines().filter(|l| !l.trim().is_empty()).count();
            if changed == 0 {
                items.push(ChecklistItem::ok(TREE, "no uncommitted changes"));
            } else {
                items.push(ChecklistItem::warn(
                    TREE,
                    format!("{changed} uncommitted change(s): they will not ship, a release is the committed tree"),
                    "commit the changes you want to deploy (git add -A && git commit)",
                ));
            }
        }
    }
    Some(items)
}

fn check_environments(cfg: &Config) -> ChecklistItem {
    const NAME: &str = "environments";
    let mut problems = Vec::new();
    for env in Environment::ALL {
        let Some(e) = cfg.environments.get(env) else {
            problems.push(format!("environments.{env} is missing"));
            continue;
        };
        if e.url.is_none() && !(cfg.platform == Platform::Local && e.port.is_some()) {
            problems.push(format!("environments.{env}.url is not set"));
        }
        let target = match cfg.platform {
            Platform::Heroku | Platform::FlyIo | Platform::Shuttle => Some(("app", e.app.is_some())),
            Platform::Render => Some(("service_id", e.service_id.is_some())),
            Platform::CloudflareWorkers if env == Environment::Staging => Some(("wrangler_env", e.wrangler_env.is_some())),
            _ => None,
        };
        if let Some((field, false)) = target {
            problems.push(format!("environments.{env}.{field} is not set"));
        }
    }
    if !problems.is_empty() {
        return ChecklistItem::fail(NAME, problems.join("; "), format!("set them in {CONFIG_FILE}"));
    }
    let urls: Vec<String> = Environment::ALL.iter().filter_map(|e| cfg.base_url(*e).ok().map(|u| format!("{e} {u}"))).collect::<Vec<_>>();
    let notes = placeholder_notes(cfg);
    if notes.is_empty() {
        ChecklistItem::ok(NAME, urls.join(", "))
    } else {
        ChecklistItem::warn(
            NAME,
            format!("{}; {}", urls.join(", "), notes.join("; ")),
            format!("replace the placeholders in {CONFIG_FILE}"),
        )
    }
}

/// Where a configured program is: a path (relative to the app directory) or a PATH lookup.
fn locate_program(program: &str, app_dir: &Path, host: &Host) -> std::result::Result<PathBuf, String> {
    if program.contains('/') {
        let p = app_dir.join(program);
        if is_executable(&p) {
            Ok(p)
        } else if p.exists() {
            Err(format!("{program} exists but is not executable: chmod +x {program}"))
        } else {
            Err(format!("{program} does not exist in {}: add it, or fix the command in {CONFIG_FILE}", app_dir.display()))
        }
    } else {
        search_path(program, host.path.as_deref()).ok_or_else(|| install_hint(program))
    }
}

fn check_local_commands(root: &Path, cfg: &Config, host: &Host) -> Vec<ChecklistItem> {
    let Some(local) = &cfg.local else { return Vec::new() };
    let app_dir = cfg.app_dir(root);
    let commands =
        [("start command", Some(&local.start)), ("build command", local.build.as_ref()), ("migrate command", local.migrate.as_ref())];
    let mut items = Vec::new();
    for (name, argv) in commands {
        let Some(argv) = argv else { continue };
        let Some(program) = argv.first() else {
            items.push(ChecklistItem::fail(name, "the command is empty", "give the program and its arguments as a list"));
            continue;
        };
        match locate_program(program, &app_dir, host) {
            Err(hint) => items.push(ChecklistItem::fail(name, format!("`{program}` was not found"), hint)),
            Ok(found) => {
                let shown = argv.join(" ");
                if argv.iter().skip(1).any(|a| a.contains('$')) {
                    items.push(ChecklistItem::warn(
                        name,
                        format!("`{shown}`: arguments are passed as-is, without a shell, so `$VARS` are not expanded"),
                        "read PORT from the environment in the app, or start it through a small script",
                    ));
                } else {
                    items.push(ChecklistItem::ok(name, format!("`{shown}` ({program} → {})", found.display())));
                }
            }
        }
    }
    items
}

fn check_ports(cfg: &Config) -> Vec<ChecklistItem> {
    let mut items = Vec::new();
    for env in Environment::ALL {
        let Some(port) = cfg.environments.get(env).and_then(|e| e.port) else { continue };
        let name = format!("port {env}");
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => {
                drop(listener);
                items.push(ChecklistItem::ok(name, format!("127.0.0.1:{port} is free")));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => items.push(ChecklistItem::warn(
                name,
                format!("127.0.0.1:{port} is in use — fine if it is oc-deploy's own proxy"),
                format!("if it is another program, stop it or choose another port in environments.{env}.port"),
            )),
            Err(e) => items.push(ChecklistItem::fail(
                name,
                format!("cannot listen on 127.0.0.1:{port}: {e}"),
                format!("choose another port (above 1024) in environments.{env}.port"),
            )),
        }
    }
    items
}

/// The CLI programs a platform deploys with; any one of them is enough.
fn platform_programs(platform: Platform) -> &'static [&'static str] {
    match platform {
        Platform::CloudflareWorkers => &["wrangler"],
        Platform::Heroku => &["heroku"],
        Platform::FlyIo => &["fly", "flyctl"],
        Platform::Render => &["render"],
        Platform::Shuttle => &["cargo-shuttle", "shuttle"],
        Platform::Local | Platform::Command => &[],
    }
}

fn check_cli(root: &Path, cfg: &Config, platform: Platform, host: &Host) -> ChecklistItem {
    const NAME: &str = "platform CLI";
    let programs = platform_programs(platform);
    if let Some(found) = programs.iter().find_map(|p| search_path(p, host.path.as_deref())) {
        return ChecklistItem::ok(NAME, format!("{}", found.display()));
    }
    // A project-local wrangler (npm i -D wrangler) is how most Workers projects have it.
    if platform == Platform::CloudflareWorkers {
        for dir in [cfg.app_dir(root), root.to_path_buf()] {
            let local = dir.join("node_modules/.bin/wrangler");
            if is_executable(&local) {
                return ChecklistItem::ok(NAME, format!("{}", local.display()));
            }
        }
    }
    let first = programs.first().copied().unwrap_or("the platform CLI");
    ChecklistItem::fail(NAME, format!("{} not found on PATH", programs.join(" / ")), install_hint(first))
}

fn check_credentials(platform: Platform, host: &Host) -> ChecklistItem {
    const NAME: &str = "credentials";
    let (var, login) = match platform {
        Platform::CloudflareWorkers => (
            CLOUDFLARE_API_TOKEN,
            "create an API token (Workers Scripts: Edit, D1: Edit) and export CLOUDFLARE_API_TOKEN, or run `wrangler login`",
        ),
        Platform::Heroku => (HEROKU_API_KEY, "export HEROKU_API_KEY (heroku authorizations:create), or run `heroku login`"),
        Platform::FlyIo => (FLY_API_TOKEN, "export FLY_API_TOKEN (fly tokens create deploy), or run `fly auth login`"),
        Platform::Render => {
            (RENDER_API_KEY, "create an API key in the Render dashboard (Account settings → API keys) and export RENDER_API_KEY")
        }
        Platform::Shuttle => (SHUTTLE_API_KEY, "export SHUTTLE_API_KEY, or run `cargo shuttle login`"),
        Platform::Local | Platform::Command => return ChecklistItem::ok(NAME, "none needed"),
    };
    if host.set_vars.contains(var) {
        ChecklistItem::ok(NAME, format!("{var} is set"))
    } else {
        // A CLI login also works, so a missing variable is a warning, not a failure.
        ChecklistItem::warn(NAME, format!("{var} is not set (fine if the CLI is logged in on this machine)"), login)
    }
}

fn check_d1(root: &Path, cfg: &Config) -> ChecklistItem {
    const NAME: &str = "D1 databases";
    let migrates = cfg.deploy_order.contains(&DeployStep::Migrate);
    let wrangler = read_wrangler(&cfg.app_dir(root)).or_else(|| read_wrangler(root));
    let mut named = Vec::new();
    let mut problems = Vec::new();
    for env in Environment::ALL {
        let db = cfg.environments.get(env).and_then(|e| e.d1_database.as_deref());
        match db {
            Some(db) => {
                named.push(format!("{env} {db}"));
                if let Some(w) = &wrangler
                    && !w.text.contains(db)
                {
                    problems.push(format!("`{db}` ({env}) is not in {}", w.file));
                }
            }
            None if migrates => problems.push(format!("environments.{env}.d1_database is not set but deploy_order has migrate")),
            None => {}
        }
    }
    if problems.is_empty() {
        if named.is_empty() {
            ChecklistItem::ok(NAME, "no D1 database (deploy_order has no migrate step)")
        } else {
            ChecklistItem::ok(NAME, named.join(", "))
        }
    } else {
        ChecklistItem::fail(
            NAME,
            problems.join("; "),
            "create the databases (wrangler d1 create <name>), bind them in wrangler.toml ([[d1_databases]] for production, \
             [[env.staging.d1_databases]] for staging) and name them in environments.<env>.d1_database",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project directory named `shop` with these files (a name ending in `/` is a directory).
    fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("shop");
        std::fs::create_dir_all(&root).unwrap();
        for (name, body) in files {
            let path = root.join(name);
            if name.ends_with('/') {
                std::fs::create_dir_all(&path).unwrap();
            } else {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, body).unwrap();
            }
        }
        (dir, root)
    }

    #[test]
    fn a_workers_project_with_a_frontend_gets_the_skills_pages_deploy() {
        let (_dir, root) = project(&[("wrangler.toml", "name = \"gtrack\"\n"), ("frontend/", ""), ("tsconfig.json", "{}")]);
        let cfg = propose_config(&root, &detect(&root), None);
        assert!(cfg.deploy_order.contains(&DeployStep::DeployFrontend));
        let pages = cfg.cloudflare.and_then(|c| c.pages).expect("pages proposed");
        assert_eq!((pages.project.as_str(), pages.dir.as_str()), ("gtrack", "frontend/dist"));
        assert_eq!(pages.build, Some(vec!["npm".to_owned(), "run".to_owned(), "build".to_owned()]));
        assert_eq!(pages.install, Some(vec!["npm".to_owned(), "ci".to_owned()]));
        // Without a frontend, no Pages section.
        let (_dir, root) = project(&[("wrangler.toml", "name = \"api\"\n")]);
        assert!(propose_config(&root, &detect(&root), None).cloudflare.is_none());
    }

    #[track_caller]
    fn check_detect(files: &[(&str, &str)], platform: Platform, language: Option<Language>, frontend: bool, evidence: &[&str]) {
        let (_dir, root) = project(files);
        let d = detect(&root);
        assert_eq!((d.platform, d.language, d.frontend), (platform, language, frontend), "{:?}", d.evidence);
        for e in evidence {
            assert!(d.evidence.iter().any(|x| x == e), "missing evidence `{e}` in {:?}", d.evidence);
        }
    }

    const TS_PKG: &str = r#"{"name": "@acme/shop-api", "scripts": {"start": "node dist/index.js", "test": "vitest"}, "devDependencies": {"typescript": "^5", "vitest": "^2"}}"#;

    #[test]
    fn platforms_and_languages_from_files() {
        use Language::*;
        use Platform as P;
        check_detect(
            &[("wrangler.toml", "name = \"shop\"\n[site]\nbucket = \"./public\"\n# pages_build_output_dir\n"), ("tsconfig.json", "{}")],
            P::CloudflareWorkers,
            Some(TypeScript),
            true,
            &["wrangler.toml → cloudflare-workers", "tsconfig.json → typescript", "wrangler.toml mentions pages → frontend"],
        );
        check_detect(
            &[("wrangler.jsonc", "{ // c\n \"name\": \"w\" }"), ("package.json", "{}")],
            P::CloudflareWorkers,
            Some(JavaScript),
            false,
            &["package.json → javascript"],
        );
        check_detect(
            &[("wrangler.json", "{}"), ("package.json", TS_PKG)],
            P::CloudflareWorkers,
            Some(TypeScript),
            false,
            &["package.json (typescript dependency) → typescript"],
        );
        check_detect(
            &[("fly.toml", "app = \"shop\""), ("go.mod", "module shop")],
            P::FlyIo,
            Some(Go),
            false,
            &["fly.toml → fly-io", "go.mod → go"],
        );
        check_detect(
            &[("render.yaml", "services: []"), ("manage.py", ""), ("frontend/", "")],
            P::Render,
            Some(Python),
            true,
            &["render.yaml → render", "manage.py → python", "frontend/ → frontend"],
        );
        check_detect(
            &[("Procfile", "web: bundle exec puma"), ("Gemfile", "")],
            P::Heroku,
            Some(Ruby),
            false,
            &["Procfile → heroku", "Gemfile → ruby"],
        );
        check_detect(
            &[("app.json", "{\"name\": \"shop\", \"buildpacks\": []}"), ("requirements.txt", "")],
            P::Heroku,
            Some(Python),
            false,
            &["app.json → heroku"],
        );
        check_detect(
            &[("Shuttle.toml", "name = \"shop\""), ("Cargo.toml", "[package]\nname = \"shop\"")],
            P::Shuttle,
            Some(Rust),
            false,
            &["Shuttle.toml → shuttle", "Cargo.toml → rust"],
        );
        check_detect(&[("pyproject.toml", "")], P::Local, Some(Python), false, &["pyproject.toml → python"]);
        check_detect(&[], P::Local, None, false, &[]);
        // An Expo app.json is not a Heroku manifest.
        check_detect(&[("app.json", "{\"expo\": {\"name\": \"x\"}}"), ("package.json", "{}")], P::Local, Some(JavaScript), false, &[]);
        // Two platform files: the first in order decides, the other is reported.
        check_detect(
            &[("fly.toml", ""), ("Procfile", "web: ./server")],
            P::FlyIo,
            None,
            false,
            &["fly.toml → fly-io", "Procfile → heroku (not used: fly-io was found first)"],
        );
    }

    #[track_caller]
    fn proposed(files: &[(&str, &str)], platform: Option<Platform>) -> Config {
        let (_dir, root) = project(files);
        let cfg = propose_config(&root, &detect(&root), platform);
        // The proposal must be a config oc-deploy accepts as written.
        let text = serde_json::to_string_pretty(&cfg).unwrap();
        let parsed = Config::parse(&text, Path::new(CONFIG_FILE)).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed, cfg);
        assert_eq!(cfg.smoke_tests[0].url, "/health");
        assert_eq!(cfg.smoke_tests[0].expect_status, Some(200));
        assert_eq!(cfg.rollback.keep_versions, 3);
        cfg
    }

    fn staging(cfg: &Config) -> &EnvConfig {
        cfg.environments.staging.as_ref().unwrap()
    }
    fn production(cfg: &Config) -> &EnvConfig {
        cfg.environments.production.as_ref().unwrap()
    }

    #[track_caller]
    fn check_start(files: &[(&str, &str)], want: &[&str]) {
        let cfg = proposed(files, Some(Platform::Local));
        assert_eq!(cfg.local.unwrap().start, want);
    }

    #[test]
    fn local_start_is_guessed() {
        check_start(
            &[("Procfile", "release: rake db:migrate\nweb: gunicorn app:app --workers 2\n")],
            &["gunicorn", "app:app", "--workers", "2"],
        );
        check_start(&[("package.json", TS_PKG)], &["npm", "start"]);
        check_start(&[("package.json", "{\"scripts\": {}}"), ("main.py", "")], &["python3", "main.py"]);
        check_start(&[("app.py", ""), ("main.py", "")], &["python3", "app.py"]);
        check_start(&[("Cargo.toml", "[package]\nname = \"x\"")], &["cargo", "run", "--release"]);
        check_start(&[("go.mod", "module x")], &["go", "run", "."]);
        check_start(&[], &["./start"]);
    }

    #[test]
    fn local_proposal() {
        let cfg = proposed(&[("app.py", "")], None);
        assert_eq!((cfg.platform, cfg.project_name.as_str()), (Platform::Local, "shop"));
        assert_eq!((staging(&cfg).port, staging(&cfg).url.as_deref()), (Some(8801), Some("http://127.0.0.1:8801")));
        assert_eq!((production(&cfg).port, production(&cfg).url.as_deref()), (Some(8802), Some("http://127.0.0.1:8802")));
        assert_eq!(cfg.local.as_ref().unwrap().health_path, "/health");
        assert_eq!(cfg.preflight, PreflightConfig::default());
    }

    #[test]
    fn cloudflare_proposal_reads_wrangler() {
        let wrangler = r#"name = "gtrack-api"
main = "src/index.ts"

[[d1_databases]]
binding = "DB"
database_name = "gtrack-prod"
database_id = "1111"

[env.staging]
name = "gtrack-api-staging"
d1_databases = [ { binding = "DB", database_name = "gtrack-staging", database_id = "2222" } ]
"#;
        let cfg = proposed(&[("wrangler.toml", wrangler), ("package.json", TS_PKG), ("package-lock.json", "{}")], None);
        assert_eq!(cfg.platform, Platform::CloudflareWorkers);
        assert_eq!(cfg.project_name, "shop-api", "package.json name without its scope");
        let (s, p) = (staging(&cfg), production(&cfg));
        assert_eq!((s.wrangler_env.as_deref(), s.d1_database.as_deref()), (Some("staging"), Some("gtrack-staging")));
        assert_eq!((p.wrangler_env.as_deref(), p.d1_database.as_deref()), (None, Some("gtrack-prod")));
        assert_eq!(s.url.as_deref(), Some("https://gtrack-api-staging.workers.dev"));
        assert_eq!(p.url.as_deref(), Some("https://gtrack-api.workers.dev"));
        assert_eq!(cfg.deploy_order, [DeployStep::Migrate, DeployStep::DeployApi]);
        assert_eq!(cfg.rollback.strategy, "wrangler-rollback");
        let argv = |a: &[&str]| Some(a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(cfg.preflight.install, argv(&["npm", "ci"]));
        assert_eq!(cfg.preflight.typecheck, argv(&["npx", "tsc", "--noEmit"]));
        assert_eq!(cfg.preflight.test, argv(&["npx", "vitest", "run"]));
        assert_eq!(placeholder_notes(&cfg).len(), 2, "workers.dev URLs without the account subdomain are placeholders");

        // A top-level database is production's only: staging does not inherit D1 bindings.
        let cfg = proposed(&[("wrangler.toml", "name = \"w\"\n[[d1_databases]]\ndatabase_name = \"w-db\"\n"), ("frontend/", "")], None);
        assert_eq!((staging(&cfg).d1_database.as_deref(), production(&cfg).d1_database.as_deref()), (None, Some("w-db")));
        assert_eq!(cfg.deploy_order, [DeployStep::Migrate, DeployStep::DeployApi, DeployStep::DeployFrontend]);

        // wrangler.jsonc, comments and all.
        let jsonc = r#"{
  // the worker
  "name": "edge", /* prod db */ "d1_databases": [{"binding": "DB", "database_name": "edge-prod"}],
  "env": {"staging": {"d1_databases": [{"database_name": "edge-staging"}]}}
}"#;
        let cfg = proposed(&[("wrangler.jsonc", jsonc)], None);
        assert_eq!(staging(&cfg).d1_database.as_deref(), Some("edge-staging"));
        assert_eq!(production(&cfg).url.as_deref(), Some("https://edge.workers.dev"));
    }

    #[test]
    fn app_platform_proposals() {
        let cargo = "[workspace]\nmembers = []\n\n[package]\nname = \"Shop Service\"\nversion = \"0.1.0\"\n";
        for (platform, host) in [(Platform::Heroku, "herokuapp.com"), (Platform::FlyIo, "fly.dev"), (Platform::Shuttle, "shuttleapp.rs")] {
            let cfg = proposed(&[("Cargo.toml", cargo)], Some(platform));
            assert_eq!(cfg.platform, platform);
            assert_eq!(cfg.project_name, "Shop Service");
            assert_eq!(staging(&cfg).app.as_deref(), Some("shop-service-staging"));
            assert_eq!(production(&cfg).app.as_deref(), Some("shop-service"));
            assert_eq!(production(&cfg).url.as_deref(), Some(format!("https://shop-service.{host}").as_str()));
            assert!(cfg.local.is_none());
        }
        let cfg = proposed(&[("render.yaml", ""), ("requirements.txt", "")], None);
        assert_eq!(staging(&cfg).service_id.as_deref(), Some("srv-staging"));
        assert_eq!(production(&cfg).service_id.as_deref(), Some("srv-production"));
        let notes = placeholder_notes(&cfg);
        assert!(notes.iter().any(|n| n.contains("service_id `srv-staging` is a placeholder")), "{notes:?}");
    }

    #[test]
    fn javascript_preflight() {
        let cfg = proposed(&[("package.json", r#"{"scripts": {"test": "jest"}}"#)], None);
        let argv = |a: &[&str]| Some(a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(cfg.preflight.install, argv(&["npm", "install"]), "no lockfile: npm ci would refuse");
        assert_eq!(cfg.preflight.typecheck, None);
        assert_eq!(cfg.preflight.test, argv(&["npm", "test"]));
        let cfg = proposed(&[("package.json", r#"{"scripts": {"test": "echo \"Error: no test specified\" && exit 1"}}"#)], None);
        assert_eq!(cfg.preflight.test, None, "npm's placeholder test script always fails");
    }

    async fn git(root: &Path, args: &[&str]) {
        let cmd = Cmd::new("git", root).args(["-c", "user.name=t", "-c", "user.email=t@example.com"]).args(args.iter().copied());
        Runner::default().run_checked(&cmd, &CancellationToken::new()).await.unwrap();
    }

    fn host_with_path(dirs: &[&Path]) -> Host {
        Host { path: Some(std::env::join_paths(dirs).unwrap()), set_vars: BTreeSet::new() }
    }

    fn item<'a>(items: &'a [ChecklistItem], name: &str) -> &'a ChecklistItem {
        items.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("no item {name} in {items:#?}"))
    }

    #[tokio::test]
    async fn local_checklist_on_a_fresh_repository() {
        let (_dir, root) = project(&[("app.py", "print('hi')\n")]);
        git(&root, &["init", "-q"]).await;
        git(&root, &["add", "-A"]).await;
        git(&root, &["commit", "-q", "-m", "init"]).await;

        // One port free, one taken by a listener this test holds.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cfg = propose_config(&root, &detect(&root), None);
        cfg.environments.staging.as_mut().unwrap().port = Some(free);
        cfg.environments.production.as_mut().unwrap().port = Some(taken.local_addr().unwrap().port());

        let bin = tempfile::tempdir().unwrap();
        let python = bin.path().join("python3");
        std::fs::write(&python, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
        let host = host_with_path(&[bin.path()]);
        let items = checklist_on(&root, &cfg, &Runner::default(), &CancellationToken::new(), &host).await;

        assert_eq!(item(&items, "config valid").status, CheckStatus::Ok);
        assert_eq!(item(&items, "git repository").status, CheckStatus::Ok, "{items:#?}");
        assert_eq!(item(&items, "working tree clean").status, CheckStatus::Ok);
        assert_eq!(item(&items, "environments").status, CheckStatus::Ok);
        let start = item(&items, "start command");
        assert_eq!(start.status, CheckStatus::Ok);
        assert!(start.detail.contains(&python.display().to_string()), "{}", start.detail);
        assert_eq!(item(&items, "port staging").status, CheckStatus::Ok);
        let busy = item(&items, "port production");
        assert_eq!(busy.status, CheckStatus::Warn);
        assert!(busy.detail.contains("in use — fine if it is oc-deploy's own proxy"), "{}", busy.detail);
        assert!(busy.hint.as_deref().unwrap().contains("environments.production.port"));
        assert!(items.iter().all(|i| (i.status == CheckStatus::Ok) == i.hint.is_none()), "{items:#?}");

        // An uncommitted change warns; an empty PATH fails the start program with a hint.
        std::fs::write(root.join("new.py"), "").unwrap();
        let items = checklist_on(&root, &cfg, &Runner::default(), &CancellationToken::new(), &Host::default()).await;
        let tree = item(&items, "working tree clean");
        assert_eq!(tree.status, CheckStatus::Warn);
        assert!(tree.detail.starts_with("1 uncommitted change(s)"), "{}", tree.detail);
        let start = item(&items, "start command");
        assert_eq!(start.status, CheckStatus::Fail);
        assert_eq!(start.hint.as_deref(), Some(install_hint("python3").as_str()));
        drop(taken);
    }

    #[tokio::test]
    async fn checklist_without_git_history() {
        let (_dir, root) = project(&[("start", "#!/bin/sh\n")]);
        let cfg = propose_config(&root, &detect(&root), None);
        let items = checklist_on(&root, &cfg, &Runner::default(), &CancellationToken::new(), &Host::default()).await;
        let git_item = item(&items, "git repository");
        assert_eq!(git_item.status, CheckStatus::Fail);
        assert!(git_item.detail.contains("is not a git repository"), "{}", git_item.detail);
        assert!(git_item.hint.as_deref().unwrap().starts_with("git init && git add -A"));
        // ./start exists but is not executable.
        let start = item(&items, "start command");
        assert_eq!(start.status, CheckStatus::Fail);
        assert!(start.hint.as_deref().unwrap().contains("chmod +x ./start"), "{start:?}");

        git(&root, &["init", "-q"]).await;
        let items = checklist_on(&root, &cfg, &Runner::default(), &CancellationToken::new(), &Host::default()).await;
        let git_item = item(&items, "git repository");
        assert_eq!((git_item.status, git_item.detail.as_str()), (CheckStatus::Fail, "the repository has no commit yet"));
    }

    #[tokio::test]
    async fn cloud_checklists_find_the_cli_and_credentials() {
        let (_dir, root) = project(&[("fly.toml", "app = \"shop\"")]);
        let cfg = propose_config(&root, &detect(&root), None);
        let empty = tempfile::tempdir().unwrap();

        let items = checklist_on(&root, &cfg, &Runner::default(), &CancellationToken::new(), &host_with_path(&[empty.path()])).await;
        let cli = item(&items, "platform CLI");
        assert_eq!((cli.status, cli.detail.as_str()), (CheckStatus::Fail, "fly / flyctl not found on PATH"));
        assert_eq!(cli.hint.as_deref(), Some(install_hint("fly").as_str()));
        let creds = item(&items, "credentials");
        assert_eq!(creds.status, CheckStatus::Warn);
        assert!(creds.detail.starts_with("FLY_API_TOKEN is not set"));

        // flyctl under its long name counts, and a set token is reported by name only.
        let flyctl = empty.path().join("flyctl");
        std::fs::write(&flyctl, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&flyctl, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut host = host_with_path(&[empty.path()]);
        host.set_vars.insert(FLY_API_TOKEN);
        let items = checklist_on(&root, &cfg, &Runner::default(), &CancellationToken::new(), &host).await;
        assert_eq!(item(&items, "platform CLI").status, CheckStatus::Ok);
        assert_eq!(item(&items, "credentials").detail, "FLY_API_TOKEN is set");
    }

    #[tokio::test]
    async fn cloudflare_checklist_checks_d1_and_project_wrangler() {
        let (_dir, root) = project(&[
            ("wrangler.toml", "name = \"w\"\n[[d1_databases]]\ndatabase_name = \"w-db\"\n"),
            ("node_modules/.bin/wrangler", "#!/bin/sh\n"),
        ]);
        std::fs::set_permissions(root.join("node_modules/.bin/wrangler"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let cfg = propose_config(&root, &detect(&root), None);
        let items = checklist_on(&root, &cfg, &Runner::default(), &CancellationToken::new(), &Host::default()).await;
        assert_eq!(item(&items, "platform CLI").status, CheckStatus::Ok, "node_modules/.bin/wrangler counts");
        let d1 = item(&items, "D1 databases");
        assert_eq!(d1.status, CheckStatus::Fail);
        assert!(d1.detail.contains("environments.staging.d1_database is not set but deploy_order has migrate"), "{}", d1.detail);
        assert!(d1.hint.as_deref().unwrap().contains("[[env.staging.d1_databases]]"));
        let envs = item(&items, "environments");
        assert_eq!(envs.status, CheckStatus::Warn, "placeholder workers.dev URLs");
        assert!(item(&items, "credentials").hint.as_deref().unwrap().contains("wrangler login"));
    }

    #[tokio::test]
    async fn cancelled_checklist_says_so() {
        let (_dir, root) = project(&[]);
        let cfg = propose_config(&root, &detect(&root), None);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let items = checklist_on(&root, &cfg, &Runner::default(), &cancel, &Host::default()).await;
        assert_eq!(items.last().unwrap().detail, "cancelled: the remaining checks did not run");
    }

    #[test]
    fn names_become_slugs() {
        assert_eq!(slug("Shop Service"), "shop-service");
        assert_eq!(slug("@acme/__x__"), "acme-x");
        assert_eq!(slug("..."), "app");
    }
}
