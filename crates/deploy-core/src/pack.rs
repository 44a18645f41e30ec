//! Pack-aware dispatch (skill v1.4+): which platform a project deploys to, read from the
//! oc-stack-forge pack registry (`packs/<id>/pack.yml`: `defaultPlatform`, `supportedPlatforms`)
//! and the project's active pack (`.checkpoints/oc-stack-forge.checkpoint.json`, `activePack`).
//!
//! The resolution order is the skill's: a pack with platforms dispatches to its
//! `defaultPlatform` (a requested platform only when it is in `supportedPlatforms`); a pack with
//! no platforms falls back to the Platform Matrix by language; an unknown pack is the caller's
//! error, `unknown pack: <id>`, with no fuzzy matching. Where packs are looked for is
//! [`pack_dirs`]; `docs/packs-and-audit.md` documents it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Platform;
use crate::detect::Language;
use crate::error::{CoreError, Result};

/// The user's home directory; packs of an oc-stack-forge skill installed for the user
/// (`~/.claude/skills/oc-stack-forge`, `~/.codex/skills/oc-stack-forge`) are found through it.
pub const HOME: &str = "HOME";
/// The skill that owns the pack registry and the project's active pack.
pub const STACK_FORGE: &str = "oc-stack-forge";
/// The pack file inside `packs/<id>/`.
pub const PACK_FILE: &str = "pack.yml";

/// A checkpoint or pack file larger than this is not one; refusing it keeps a stray file from
/// eating memory.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// What a pack says about deploying: the skill's `getDispatchTarget(packId)` answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DispatchTarget {
    pub pack: String,
    /// The `pack.yml` that was read.
    pub file: PathBuf,
    /// `defaultPlatform`, as written (`null` in the file is `None`).
    pub default_platform: Option<String>,
    /// `supportedPlatforms`, as written, in order.
    pub supported_platforms: Vec<String>,
    /// `language`, when the pack names one.
    pub language: Option<String>,
}

impl DispatchTarget {
    /// Whether the pack names any platform (the skill's "populated platforms").
    pub fn has_platforms(&self) -> bool {
        self.default_platform.is_some() || !self.supported_platforms.is_empty()
    }

    /// The platforms a request may choose: `supportedPlatforms`, plus the default when the
    /// list leaves it out.
    pub fn allowed(&self) -> Vec<String> {
        let mut allowed = self.supported_platforms.clone();
        if let Some(d) = &self.default_platform
            && !allowed.contains(d)
        {
            allowed.insert(0, d.clone());
        }
        allowed
    }
}

/// The directories that may hold `packs/<id>/pack.yml`, in the order they are searched; the
/// first `pack.yml` found wins.
///
/// 1. `<project>/packs` — a project that carries its own packs (or is the registry itself);
/// 2. `<project>/skills/oc-stack-forge/packs` — the skill checked into the project (the
///    skill's own layout, `skills/oc-stack-forge/packs/<id>/pack.yml`);
/// 3. `<project>/.claude/skills/oc-stack-forge/packs` and `<project>/.codex/skills/…` — the
///    skill installed for the project;
/// 4. `<project>/../oc-stack-forge/packs` — an oc-stack-forge skill directory next to the project;
/// 5. `~/.claude/skills/oc-stack-forge/packs` and `~/.codex/skills/oc-stack-forge/packs` — the
///    skill installed for the user.
pub fn pack_dirs(root: &Path) -> Vec<PathBuf> {
    let home = std::env::var_os(HOME).filter(|h| !h.is_empty()).map(PathBuf::from);
    pack_dirs_with(root, home.as_deref())
}

fn pack_dirs_with(root: &Path, home: Option<&Path>) -> Vec<PathBuf> {
    let skill = |base: &Path| base.join("skills").join(STACK_FORGE).join("packs");
    let mut dirs = vec![root.join("packs"), skill(root), skill(&root.join(".claude")), skill(&root.join(".codex"))];
    if let Some(parent) = root.parent() {
        dirs.push(parent.join(STACK_FORGE).join("packs"));
    }
    if let Some(home) = home {
        dirs.push(skill(&home.join(".claude")));
        dirs.push(skill(&home.join(".codex")));
    }
    dirs
}

/// A pack id names one directory: letters, digits, `-`, `_` and `.`, not starting with a dot.
/// Anything else cannot name a pack, so it is a miss like any other.
fn is_pack_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The error of a pack miss: exactly `unknown pack: <id>`, as the skill says it.
pub fn unknown_pack(id: &str, root: &Path) -> CoreError {
    CoreError::NotFound {
        what: "unknown pack".into(),
        message: id.to_owned(),
        hint: format!(
            "no {PACK_FILE} for `{id}` in packs/, skills/{STACK_FORGE}/packs/ or .claude|.codex/skills/{STACK_FORGE}/packs/ of {}, \
             ../{STACK_FORGE}/packs/ next to it, or ~/.claude|.codex/skills/{STACK_FORGE}/packs/: check the pack id \
             (activePack in .checkpoints/{STACK_FORGE}.checkpoint.json, or the pack argument)",
            root.display()
        ),
    }
}

/// The skill's `getDispatchTarget(packId)`: the pack's platforms, or `None` when no pack has
/// that id. A `pack.yml` that cannot be read as one is an error naming the file and line.
pub fn dispatch_target(root: &Path, pack_id: &str) -> Result<Option<DispatchTarget>> {
    dispatch_target_in(&pack_dirs(root), pack_id)
}

fn dispatch_target_in(dirs: &[PathBuf], pack_id: &str) -> Result<Option<DispatchTarget>> {
    if !is_pack_id(pack_id) {
        return Ok(None);
    }
    let Some(file) = dirs.iter().map(|d| d.join(pack_id).join(PACK_FILE)).find(|f| f.is_file()) else {
        return Ok(None);
    };
    let text = read_small(&file)?;
    let yml = parse_pack_yml(&text).map_err(|why| {
        CoreError::invalid(
            file.display().to_string(),
            why,
            format!(
                "fix {PACK_FILE}: `defaultPlatform: render` and `supportedPlatforms: [render, fly-io]` (or a block list of `- render`)"
            ),
        )
    })?;
    Ok(Some(DispatchTarget {
        pack: pack_id.to_owned(),
        file,
        default_platform: yml.default_platform,
        supported_platforms: yml.supported_platforms,
        language: yml.language,
    }))
}

fn read_small(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| CoreError::io(format!("reading {}", path.display()), e))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(CoreError::invalid(
            path.display().to_string(),
            format!("{} bytes, more than such a file can be", meta.len()),
            "point oc-deploy at the real file",
        ));
    }
    std::fs::read_to_string(path).map_err(|e| CoreError::io(format!("reading {}", path.display()), e))
}

// ---------------------------------------------------------------------------------------------
// The active pack

/// The oc-stack-forge checkpoint of a project.
pub fn stack_forge_checkpoint(root: &Path) -> PathBuf {
    root.join(".checkpoints").join(format!("{STACK_FORGE}.checkpoint.json"))
}

/// What the project's oc-stack-forge checkpoint says about the active pack.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivePack {
    /// `activePack` names a pack.
    Set(String),
    /// No checkpoint, or no (or a null or empty) `activePack` in it.
    Unset,
    /// The checkpoint exists but cannot be used; the sentence says why. Another skill's
    /// checkpoint is read tolerantly, so this is a note, not an error.
    Unreadable(String),
}

/// The project's active pack: `activePack` at the top level of
/// `.checkpoints/oc-stack-forge.checkpoint.json`, else under `skill_state`.
pub fn active_pack(root: &Path) -> ActivePack {
    let path = stack_forge_checkpoint(root);
    let rel = format!(".checkpoints/{STACK_FORGE}.checkpoint.json");
    let text = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return ActivePack::Unset,
        Err(e) => return ActivePack::Unreadable(format!("{rel}: {e}")),
        Ok(m) if !m.is_file() => return ActivePack::Unreadable(format!("{rel} is not a file")),
        Ok(m) if m.len() > MAX_FILE_BYTES => return ActivePack::Unreadable(format!("{rel} is {} bytes, too large", m.len())),
        Ok(_) => match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => return ActivePack::Unreadable(format!("{rel}: {e}")),
        },
    };
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return ActivePack::Unreadable(format!("{rel} is not valid JSON: {e}")),
    };
    let found =
        [value.get("activePack"), value.get("skill_state").and_then(|s| s.get("activePack"))].into_iter().flatten().find(|v| !v.is_null());
    match found {
        None => ActivePack::Unset,
        Some(Value::String(s)) if s.trim().is_empty() => ActivePack::Unset,
        Some(Value::String(s)) => ActivePack::Set(s.trim().to_owned()),
        Some(other) => ActivePack::Unreadable(format!("{rel}: activePack is not a string: {other}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Resolution

/// Which rule of the skill's resolution order chose the platform: the pack's default, a request
/// inside its supportedPlatforms (override), the language fallback of a pack without
/// platforms, a request nothing constrains, or the project's files (no pack decided).
// The variants carry no doc comments on purpose: the schema stays a plain string enum, which
// keeps the deploy_init output schema (and so `tools/list`) small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DispatchRule {
    PackDefault,
    PackOverride,
    LanguageFallback,
    Requested,
    ProjectFiles,
}

/// How the platform was chosen (skill: pack-aware dispatch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Resolution {
    /// Null: the project's files decide.
    pub platform: Option<Platform>,
    pub rule: DispatchRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
    /// `argument`, or the oc-stack-forge checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack_file: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_platforms: Vec<String>,
    pub detail: String,
}

/// The Platform Matrix's row for a language (skill: Python → Render, Ruby → Heroku,
/// Go → Fly.io, Rust → Shuttle, TypeScript and JavaScript → Cloudflare Workers).
pub fn language_platform(language: Language) -> Platform {
    match language {
        Language::Python => Platform::Render,
        Language::Ruby => Platform::Heroku,
        Language::Go => Platform::FlyIo,
        Language::Rust => Platform::Shuttle,
        Language::TypeScript | Language::JavaScript => Platform::CloudflareWorkers,
    }
}

/// A platform by its id as oc-deploy writes it (`fly-io`, `cloudflare-workers`, …).
pub fn platform_from_id(id: &str) -> Option<Platform> {
    [
        Platform::Local,
        Platform::CloudflareWorkers,
        Platform::Render,
        Platform::Heroku,
        Platform::FlyIo,
        Platform::Shuttle,
        Platform::Command,
    ]
    .into_iter()
    .find(|p| p.as_str() == id)
}

fn language_from_id(id: &str) -> Option<Language> {
    [Language::TypeScript, Language::JavaScript, Language::Python, Language::Ruby, Language::Go, Language::Rust]
        .into_iter()
        .find(|l| l.as_str() == id)
}

/// Applies the skill's resolution order. `pack` is an explicit pack id; without one the
/// project's `activePack` is used. `requested` is the `--platform` the caller asked for.
/// `detected_language` is what the project's files say, for the language fallback (the pack's
/// own `language`, then its id, are used when the files say nothing).
///
/// Errors: a pack miss is exactly `unknown pack: <id>`; a requested platform outside the
/// pack's `supportedPlatforms` is refused naming the allowed ones.
pub fn resolve_platform(
    root: &Path,
    pack: Option<&str>,
    requested: Option<Platform>,
    detected_language: Option<Language>,
) -> Result<Resolution> {
    resolve_in(root, &pack_dirs(root), pack, requested, detected_language)
}

fn resolve_in(
    root: &Path,
    dirs: &[PathBuf],
    pack: Option<&str>,
    requested: Option<Platform>,
    detected_language: Option<Language>,
) -> Result<Resolution> {
    let checkpoint = format!(".checkpoints/{STACK_FORGE}.checkpoint.json");
    let no_pack = |why: String| match requested {
        Some(p) => Resolution {
            platform: Some(p),
            rule: DispatchRule::Requested,
            pack: None,
            pack_from: None,
            pack_file: None,
            supported_platforms: Vec::new(),
            detail: format!("{why}: platform {} as requested", p.as_str()),
        },
        None => Resolution {
            platform: None,
            rule: DispatchRule::ProjectFiles,
            pack: None,
            pack_from: None,
            pack_file: None,
            supported_platforms: Vec::new(),
            detail: format!("{why}: the project's files decide the platform"),
        },
    };
    let (id, from) = match pack.map(str::trim) {
        Some(id) => (id.to_owned(), "argument".to_owned()),
        None => match active_pack(root) {
            ActivePack::Set(id) => (id, checkpoint.clone()),
            ActivePack::Unset => return Ok(no_pack(format!("no pack (no activePack in {checkpoint})"))),
            ActivePack::Unreadable(why) => return Ok(no_pack(format!("no pack ({why}; pack dispatch skipped)"))),
        },
    };
    let Some(target) = dispatch_target_in(dirs, &id)? else {
        return Err(unknown_pack(&id, root));
    };
    let file = target.file.display().to_string();
    let origin = if from == "argument" { format!("pack `{id}`") } else { format!("pack `{id}` (activePack in {from})") };
    let resolution = |platform: Option<Platform>, rule: DispatchRule, supported: Vec<String>, detail: String| Resolution {
        platform,
        rule,
        pack: Some(id.clone()),
        pack_from: Some(from.clone()),
        pack_file: Some(file.clone()),
        supported_platforms: supported,
        detail,
    };

    if target.has_platforms() {
        let allowed = target.allowed();
        let list = allowed.join(", ");
        if let Some(req) = requested {
            if !allowed.iter().any(|a| a == req.as_str()) {
                let default = target.default_platform.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
                return Err(CoreError::invalid(
                    "platform",
                    format!("`{}` is not in the supportedPlatforms of pack `{id}`: {list}", req.as_str()),
                    format!("choose one of {list}, or leave the platform out for the pack's default{default}"),
                ));
            }
            let detail = format!("{origin}: platform {} as requested, inside its supportedPlatforms ({list})", req.as_str());
            return Ok(resolution(Some(req), DispatchRule::PackOverride, allowed, detail));
        }
        // No defaultPlatform but a list: the list's first entry is the pack's choice.
        let (chosen, how) = match &target.default_platform {
            Some(d) => (d.clone(), "its defaultPlatform"),
            None => (allowed[0].clone(), "the first of its supportedPlatforms (it has no defaultPlatform)"),
        };
        let platform = platform_from_id(&chosen).ok_or_else(|| {
            CoreError::invalid(
                format!("{file}: defaultPlatform"),
                format!("`{chosen}` is not a platform oc-deploy deploys to"),
                "use one of local, cloudflare-workers, render, heroku, fly-io, shuttle, command in pack.yml, or request a platform the pack supports"
                    .to_string(),
            )
        })?;
        let detail = format!("{origin} → {} ({how}; supported: {list})", platform.as_str());
        return Ok(resolution(Some(platform), DispatchRule::PackDefault, allowed, detail));
    }

    if let Some(req) = requested {
        let detail = format!("{origin} lists no platforms: platform {} as requested", req.as_str());
        return Ok(resolution(Some(req), DispatchRule::Requested, Vec::new(), detail));
    }
    let language = detected_language
        .map(|l| (l, "the project's language"))
        .or_else(|| target.language.as_deref().and_then(language_from_id).map(|l| (l, "the pack's language")))
        .or_else(|| language_from_id(&id).map(|l| (l, "the pack's id")));
    match language {
        Some((language, source)) => {
            let platform = language_platform(language);
            let detail =
                format!("{origin} lists no platforms: {} ({source}) → {} (the Platform Matrix)", language.as_str(), platform.as_str());
            Ok(resolution(Some(platform), DispatchRule::LanguageFallback, Vec::new(), detail))
        }
        None => Ok(resolution(
            None,
            DispatchRule::ProjectFiles,
            Vec::new(),
            format!("{origin} lists no platforms and the project's language is unknown: the project's files decide the platform"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// pack.yml, without a YAML dependency
//
// Only three top-level keys matter, so this reads just enough YAML for them: plain, single- and
// double-quoted scalars, `null`/`~`, flow lists (`[a, "b"]`, across lines too) and block lists
// (`- a`, indented or not). Other keys and nested blocks are skipped. Anything it cannot read
// for a key it needs (anchors, tags, block scalars, mappings) is an error naming the line,
// never a silent misread.

/// The keys of `pack.yml` that dispatch reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackYml {
    pub default_platform: Option<String>,
    pub supported_platforms: Vec<String>,
    pub language: Option<String>,
}

const DEFAULT_PLATFORM: &str = "defaultPlatform";
const SUPPORTED_PLATFORMS: &str = "supportedPlatforms";
const LANGUAGE: &str = "language";

/// Reads the dispatch keys of a `pack.yml`. The error says which line and why.
pub fn parse_pack_yml(text: &str) -> std::result::Result<PackYml, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = PackYml::default();
    let mut seen = BTreeSet::new();
    let mut started = false;
    let mut i = 0;
    while i < lines.len() {
        let n = i + 1;
        let line = strip_comment(lines[i]);
        i += 1;
        let trimmed = line.trim_end();
        if trimmed.trim().is_empty() || trimmed.starts_with('%') {
            continue;
        }
        if trimmed == "---" || trimmed.starts_with("--- ") {
            if started {
                break; // A second document: only the first one is the pack.
            }
            started = true;
            continue;
        }
        if trimmed == "..." {
            break;
        }
        started = true;
        // Only top-level keys matter; indented lines and list items belong to other keys.
        if trimmed.starts_with([' ', '\t', '-']) {
            continue;
        }
        let Some((key, value)) = split_key(trimmed) else { continue };
        if ![DEFAULT_PLATFORM, SUPPORTED_PLATFORMS, LANGUAGE].contains(&key.as_str()) {
            continue;
        }
        if !seen.insert(key.clone()) {
            return Err(format!("line {n}: `{key}` appears twice"));
        }
        let value = value.trim();
        let parsed = if value.starts_with('[') {
            // A flow list may run over several lines: gather until its bracket closes.
            let mut flow = value.to_owned();
            while !flow_closed(&flow) {
                let Some(next) = lines.get(i) else {
                    return Err(format!("line {n}: `{key}`: the list `[` is never closed"));
                };
                flow.push(' ');
                flow.push_str(strip_comment(next).trim());
                i += 1;
            }
            Parsed::List(parse_flow_list(&flow).map_err(|why| format!("line {n}: `{key}`: {why}"))?)
        } else if value.is_empty() {
            // A block list, a nested mapping, or nothing (null).
            let mut items = Vec::new();
            let mut nested = None;
            while let Some(next) = lines.get(i) {
                let next = strip_comment(next);
                let t = next.trim_end();
                if t.trim().is_empty() {
                    i += 1;
                    continue;
                }
                let body = t.trim_start();
                if body == "-" || body.starts_with("- ") {
                    let item = body[1..].trim();
                    items.push(parse_scalar(item).map_err(|why| format!("line {}: `{key}`: {why}", i + 1))?);
                    i += 1;
                    continue;
                }
                if t.starts_with([' ', '\t']) && items.is_empty() {
                    nested = Some(i + 1);
                }
                break;
            }
            if let Some(at) = nested {
                return Err(format!("line {at}: `{key}`: expected the value on the key's line, or a list of `- item` lines"));
            }
            if items.is_empty() { Parsed::Scalar(None) } else { Parsed::List(items.into_iter().flatten().collect()) }
        } else {
            Parsed::Scalar(parse_scalar(value).map_err(|why| format!("line {n}: `{key}`: {why}"))?)
        };
        match (key.as_str(), parsed) {
            (SUPPORTED_PLATFORMS, Parsed::List(items)) => out.supported_platforms = dedup(items),
            (SUPPORTED_PLATFORMS, Parsed::Scalar(None)) => {}
            (SUPPORTED_PLATFORMS, Parsed::Scalar(Some(s))) => {
                return Err(format!("line {n}: `{SUPPORTED_PLATFORMS}` is `{s}`, not a list: write [{s}]"));
            }
            (_, Parsed::Scalar(s)) if key == DEFAULT_PLATFORM => out.default_platform = s,
            (_, Parsed::Scalar(s)) => out.language = s,
            (_, Parsed::List(_)) => return Err(format!("line {n}: `{key}` is a list; expected one value")),
        }
    }
    Ok(out)
}

enum Parsed {
    Scalar(Option<String>),
    List(Vec<String>),
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Whether a quote at byte `at` opens a quoted scalar: only at the start of a token.
fn opens_quote(s: &str, at: usize) -> bool {
    s[..at].trim_end().chars().last().is_none_or(|c| matches!(c, ':' | '[' | ',' | '-' | '{'))
}

/// Cuts a `# comment` (at the line start or after whitespace, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut prev = ' ';
    let mut chars = line.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match quote {
            Some('"') if c == '\\' => {
                chars.next();
            }
            Some(q) if c == q => {
                // In single quotes, '' is an escaped quote.
                if q == '\'' && chars.peek().is_some_and(|(_, n)| *n == '\'') {
                    chars.next();
                } else {
                    quote = None;
                }
            }
            Some(_) => {}
            None if (c == '"' || c == '\'') && opens_quote(line, at) => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return &line[..at],
            None => {}
        }
        prev = c;
    }
    line
}

/// A top-level `key: value` line (the key may be quoted); `None` when the line is not one.
fn split_key(line: &str) -> Option<(String, &str)> {
    if line.starts_with(['"', '\'']) {
        let q = line.chars().next()?;
        let end = line[1..].find(q)? + 1;
        let key = line[1..end].to_owned();
        let rest = line[end + 1..].trim_start().strip_prefix(':')?;
        return (rest.is_empty() || rest.starts_with([' ', '\t'])).then_some((key, rest));
    }
    let colon =
        line.match_indices(':').map(|(at, _)| at).find(|&at| line[at + 1..].is_empty() || line[at + 1..].starts_with([' ', '\t']))?;
    Some((line[..colon].trim().to_owned(), &line[colon + 1..]))
}

/// One scalar: quoted, plain, or null (`null`, `~`, nothing).
fn parse_scalar(value: &str) -> std::result::Result<Option<String>, String> {
    let v = value.trim();
    if v.is_empty() || matches!(v, "~" | "null" | "Null" | "NULL") {
        return Ok(None);
    }
    match v.chars().next() {
        Some('"') => {
            let mut out = String::new();
            let mut chars = v[1..].chars();
            loop {
                match chars.next() {
                    None => return Err(format!("unclosed quote in {v}")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some(c @ ('"' | '\\' | '/')) => out.push(c),
                        Some(c) => return Err(format!("unsupported escape \\{c} in {v}")),
                        None => return Err(format!("unclosed quote in {v}")),
                    },
                    Some(c) => out.push(c),
                }
            }
            if !chars.as_str().trim().is_empty() {
                return Err(format!("text after the closing quote in {v}"));
            }
            Ok(Some(out))
        }
        Some('\'') => {
            let body = &v[1..];
            let mut out = String::new();
            let mut chars = body.chars().peekable();
            loop {
                match chars.next() {
                    None => return Err(format!("unclosed quote in {v}")),
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        out.push('\'');
                    }
                    Some('\'') => break,
                    Some(c) => out.push(c),
                }
            }
            if chars.any(|c| !c.is_whitespace()) {
                return Err(format!("text after the closing quote in {v}"));
            }
            Ok(Some(out))
        }
        Some('&' | '*' | '!') => Err(format!("anchors, aliases and tags are not supported here: {v}")),
        Some('|' | '>') => Err(format!("block scalars are not supported here: {v}")),
        Some('{') => Err(format!("a mapping is not a platform id: {v}")),
        Some('[') => Err(format!("a nested list is not a platform id: {v}")),
        _ if v.ends_with(':') || v.contains(": ") => Err(format!("a mapping is not a platform id: {v}")),
        _ => Ok(Some(v.to_owned())),
    }
}

/// Whether a flow list's brackets balance (outside quotes).
fn flow_closed(s: &str) -> bool {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            _ => {}
        }
    }
    depth <= 0 && quote.is_none()
}

/// The items of `[a, "b", 'c']`; empty items (a trailing comma) are skipped.
fn parse_flow_list(s: &str) -> std::result::Result<Vec<String>, String> {
    let s = s.trim();
    let inner = s.strip_prefix('[').ok_or("expected `[`")?;
    let end = closing_bracket(inner).ok_or("the list `[` is never closed")?;
    if !inner[end + 1..].trim().is_empty() {
        return Err(format!("text after the list: {}", inner[end + 1..].trim()));
    }
    let body = &inner[..end];
    let mut items = Vec::new();
    let mut start = 0;
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match (quote, c) {
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            (None, ',') if depth == 0 => {
                items.push(&body[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.push(&body[start..]);
    let mut out = Vec::new();
    for item in items {
        if item.trim().is_empty() {
            continue;
        }
        if let Some(v) = parse_scalar(item)? {
            out.push(v);
        }
    }
    Ok(out)
}

/// The byte index of the `]` closing a list whose `[` was just before `s`.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    let mut chars = s.char_indices();
    while let Some((at, c)) = chars.next() {
        match (quote, c) {
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']') if depth == 0 => return Some(at),
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, default: Option<&str>, supported: &[&str]) {
        let p = parse_pack_yml(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(p.default_platform.as_deref(), default, "{text}");
        assert_eq!(p.supported_platforms, supported, "{text}");
    }

    #[track_caller]
    fn check_err(text: &str, want: &str) {
        let e = parse_pack_yml(text).unwrap_err();
        assert!(e.contains(want), "{e}\n{text}");
    }

    #[test]
    fn pack_yml_shapes() {
        check("defaultPlatform: render\nsupportedPlatforms: [render, fly-io]\n", Some("render"), &["render", "fly-io"]);
        check(
            "---\nid: python  # the language pack\nname: 'Python: Django & friends'\ndefaultPlatform: \"render\"\nsupportedPlatforms:\n  - render   # primary\n  - 'fly-io'\n",
            Some("render"),
            &["render", "fly-io"],
        );
        // Block list items at the key's own indentation are valid YAML.
        check("supportedPlatforms:\n- heroku\n- render\ndefaultPlatform: heroku", Some("heroku"), &["heroku", "render"]);
        // A flow list across lines, with a trailing comma and quotes holding a comma.
        check("supportedPlatforms: [\n  render,\n  \"fly-io\",\n]\ndefaultPlatform: ~\n", None, &["render", "fly-io"]);
        // The deploy-target packs are pending: null and empty lists.
        check("defaultPlatform: null\nsupportedPlatforms: []\n", None, &[]);
        check("defaultPlatform:\nsupportedPlatforms:\n\nlanguage: python\n", None, &[]);
        check("description: >\n  folded text with defaultPlatform: heroku inside\ndeps:\n  defaultPlatform: nested\n", None, &[]);
        // Keys elsewhere are skipped; a second document is not read.
        check(
            "\u{feff}\"defaultPlatform\": shuttle\nsupportedPlatforms: [shuttle, shuttle]\n---\ndefaultPlatform: x\n",
            Some("shuttle"),
            &["shuttle"],
        );
        check("defaultPlatform: fly-io # why: go\n", Some("fly-io"), &[]);
        let p = parse_pack_yml("language: go\n").unwrap();
        assert_eq!(p.language.as_deref(), Some("go"));
    }

    #[test]
    fn pack_yml_errors_name_the_line() {
        check_err("a: 1\ndefaultPlatform: render\ndefaultPlatform: fly-io\n", "line 3: `defaultPlatform` appears twice");
        check_err("supportedPlatforms: render\n", "line 1: `supportedPlatforms` is `render`, not a list: write [render]");
        check_err("defaultPlatform: [render]\n", "line 1: `defaultPlatform` is a list");
        check_err("supportedPlatforms: [render, fly-io\n", "never closed");
        check_err("supportedPlatforms:\n  render: yes\n", "line 2: `supportedPlatforms`: expected the value on the key's line");
        check_err("supportedPlatforms:\n  - name: render\n", "line 2: `supportedPlatforms`: a mapping is not a platform id");
        check_err("defaultPlatform: *base\n", "aliases");
        check_err("defaultPlatform: |\n  render\n", "block scalars");
        check_err("supportedPlatforms: [render, [a]]\n", "nested list");
        check_err("defaultPlatform: \"render\n", "unclosed quote");
    }

    fn write(path: &Path, body: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    #[test]
    fn packs_are_searched_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("shop");
        let home = dir.path().join("home");
        let dirs = pack_dirs_with(&root, Some(&home));
        assert_eq!(dirs[0], root.join("packs"));
        assert!(dirs.contains(&dir.path().join("oc-stack-forge/packs")), "{dirs:?}");

        write(&home.join(".claude/skills/oc-stack-forge/packs/go/pack.yml"), "defaultPlatform: fly-io\n");
        let t = dispatch_target_in(&dirs, "go").unwrap().unwrap();
        assert_eq!((t.default_platform.as_deref(), t.file.starts_with(&home)), (Some("fly-io"), true));
        // The project's own skill directory comes before the user's.
        write(&root.join("skills/oc-stack-forge/packs/go/pack.yml"), "defaultPlatform: shuttle\n");
        let t = dispatch_target_in(&dirs, "go").unwrap().unwrap();
        assert_eq!(t.default_platform.as_deref(), Some("shuttle"));
        // A skill directory next to the project.
        write(&dir.path().join("oc-stack-forge/packs/ruby/pack.yml"), "supportedPlatforms: [heroku]\n");
        assert_eq!(dispatch_target_in(&dirs, "ruby").unwrap().unwrap().supported_platforms, ["heroku"]);
        // Ids that cannot name a directory are misses, never paths.
        write(&root.join("secret/pack.yml"), "defaultPlatform: render\n");
        for id in ["../shop/secret", "", ".", "..", "a/b", "nope"] {
            assert_eq!(dispatch_target_in(&dirs, id).unwrap(), None, "{id}");
        }
        // A broken pack.yml is an error naming the file.
        write(&root.join("packs/bad/pack.yml"), "supportedPlatforms: render\n");
        let e = dispatch_target_in(&dirs, "bad").unwrap_err().to_string();
        assert!(e.contains("packs/bad/pack.yml") && e.contains("not a list"), "{e}");
    }

    #[test]
    fn active_pack_from_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(active_pack(root), ActivePack::Unset);
        let cp = stack_forge_checkpoint(root);
        write(&cp, r#"{"activePack": "python"}"#);
        assert_eq!(active_pack(root), ActivePack::Set("python".into()));
        write(&cp, r#"{"updated_at": "2026-04-01T10:00:00Z", "skill_state": {"activePack": " go "}}"#);
        assert_eq!(active_pack(root), ActivePack::Set("go".into()));
        write(&cp, r#"{"activePack": null, "skill_state": {"activePack": "rust"}}"#);
        assert_eq!(active_pack(root), ActivePack::Set("rust".into()));
        write(&cp, r#"{"activePack": ""}"#);
        assert_eq!(active_pack(root), ActivePack::Unset);
        write(&cp, r#"{"activePack": 3}"#);
        assert!(matches!(active_pack(root), ActivePack::Unreadable(w) if w.contains("not a string")));
        write(&cp, "{ nope");
        assert!(matches!(active_pack(root), ActivePack::Unreadable(w) if w.contains("not valid JSON")));
    }

    #[test]
    fn platform_and_language_ids() {
        for p in [Platform::Local, Platform::CloudflareWorkers, Platform::Render, Platform::Heroku, Platform::FlyIo, Platform::Shuttle] {
            assert_eq!(platform_from_id(p.as_str()), Some(p));
        }
        assert_eq!(platform_from_id("fly"), None, "no fuzzy matching");
        assert_eq!(language_from_id("python"), Some(Language::Python));
        assert_eq!(language_from_id("Python"), None);
    }
}
