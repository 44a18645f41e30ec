//! Fly.io: a deploy is `fly deploy` in the app directory with the image labelled by the short
//! SHA (so every release names its commit), `fly.toml`'s `release_command` runs inside it, and
//! versions are `fly releases` (`v42`). flyctl has no rollback command: rolling back redeploys
//! the prior release's image. Secrets go through `fly secrets`, values on stdin.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{PlatformCli, parse_json, required};
use crate::config::{Config, Platform};
use crate::detect::{CheckStatus, ChecklistItem};
use crate::domain::{Environment, Strategy};
use crate::error::{CoreError, Result};
use crate::process::{Output, Runner};
use crate::provider::{Capabilities, DeployTarget, EnvListing, EnvVarName, Provider, StepOutcome, VersionInfo};
use crate::secret::Secret;

/// What flyctl gets from the server's environment: its tokens, API host and config directory,
/// and the Docker daemon for local builds. Not `FLY_APP`: the app comes from the config.
const PASS_ENV: &[&str] = &["FLY_API_TOKEN", "FLY_ACCESS_TOKEN", "FLY_API_HOSTNAME", "FLY_CONFIG_DIR", "DOCKER_HOST"];

/// How long to wait between two looks at a release flyctl still reports as running.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(3);

/// The Fly.io provider.
#[derive(Debug)]
pub struct Fly {
    cfg: Config,
    root: PathBuf,
    cli: PlatformCli,
    poll_interval: Duration,
}

/// One release of `fly releases --json` (Go field names: PascalCase, no json tags).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Release {
    version: u64,
    #[serde(default)]
    status: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    image_ref: String,
}

impl Release {
    fn id(&self) -> String {
        format!("v{}", self.version)
    }

    /// The image tag (`registry.fly.io/app:<tag>`).
    fn tag(&self) -> Option<&str> {
        let last = self.image_ref.rsplit('/').next()?;
        let tag = last.split('@').next()?.split_once(':')?.1;
        (!tag.is_empty()).then_some(tag)
    }

    /// The commit, when the image was labelled with a short SHA (oc-deploy's `--image-label`).
    fn commit(&self) -> Option<&str> {
        self.tag().filter(|t| (7..=40).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

impl Fly {
    pub fn new(cfg: &Config, root: &Path, runner: &Runner) -> Result<Self> {
        Ok(Self {
            cfg: cfg.clone(),
            root: root.to_path_buf(),
            cli: PlatformCli::new(cfg, root, runner, "fly", PASS_ENV)?,
            poll_interval: DEFAULT_POLL_INTERVAL,
        })
    }

    /// How long to wait between two looks at a running release (default 3 s).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    fn app(&self, env: Environment) -> Result<&str> {
        required(self.cfg.env(env)?.app.as_ref(), env, "app", &format!("{}-{env}", self.cfg.project_name))
    }

    fn fly_toml(&self) -> PathBuf {
        self.cfg.app_dir(&self.root).join("fly.toml")
    }

    /// `[deploy] release_command` of fly.toml, if any.
    fn release_command(&self) -> Option<String> {
        std::fs::read_to_string(self.fly_toml()).ok().and_then(|t| release_command(&t))
    }

    async fn run(&self, args: &[&str], cancel: &CancellationToken) -> Result<Output> {
        let cmd = self.cli.cmd(args.iter().copied());
        self.cli.run(&cmd, cancel).await
    }

    /// `fly releases -a APP --json`, newest first.
    async fn releases(&self, app: &str, cancel: &CancellationToken) -> Result<Vec<Release>> {
        let cmd = self.cli.cmd(["releases", "-a", app, "--json"]);
        let out = self.cli.run(&cmd, cancel).await?;
        let mut releases: Vec<Release> = parse_json(Platform::FlyIo, &cmd, &out.stdout)?;
        releases.sort_by_key(|r| std::cmp::Reverse(r.version));
        Ok(releases)
    }

    /// The release serving the app: the newest complete one.
    fn current_of(releases: &[Release]) -> Option<&Release> {
        releases.iter().find(|r| r.status == "complete")
    }

    /// Waits for the newest release above `after` that `is_ours` to be complete. `Ok(None)`:
    /// there is none. A failed or interrupted release is an error.
    async fn settle(
        &self,
        app: &str,
        after: u64,
        is_ours: impl Fn(&Release) -> bool,
        cancel: &CancellationToken,
    ) -> Result<Option<Release>> {
        let deadline = Instant::now() + self.cli.timeout;
        loop {
            let releases = self.releases(app, cancel).await?;
            let Some(new) = releases.iter().find(|r| r.version > after && is_ours(r)).cloned() else {
                return Ok(None);
            };
            match new.status.as_str() {
                "complete" => return Ok(Some(new)),
                "running" | "pending" if Instant::now() + self.poll_interval < deadline => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.poll_interval) => {}
                        _ = cancel.cancelled() => return Err(CoreError::Cancelled),
                    }
                }
                status => {
                    let serving = Self::current_of(&releases).map_or_else(|| "nothing".to_owned(), Release::id);
                    return Err(CoreError::Platform {
                        platform: Platform::FlyIo.as_str().into(),
                        message: format!("release {} of {app} ({}) is `{status}`; {app} serves {serving}", new.id(), new.image_ref),
                        hint: format!("`fly status -a {app}` and `fly logs -a {app}` show what happened"),
                        retryable: status == "running" || status == "pending",
                    });
                }
            }
        }
    }

    /// The error for a failed `fly deploy`: a release_command failure says so and names it.
    fn deploy_failure(&self, app: &str, cmd: &crate::process::Cmd, out: &Output) -> CoreError {
        let text = format!("{}\n{}", out.stderr, out.stdout);
        if !text.contains("release_command failed") {
            return self.cli.failure(cmd, out);
        }
        let release_cmd = text
            .lines()
            .find_map(|l| l.split_once("release_command: ").map(|(_, c)| c.trim().to_owned()))
            .or_else(|| self.release_command())
            .unwrap_or_else(|| "(see fly.toml)".into());
        let message = super::platform_message(out);
        CoreError::Platform {
            platform: Platform::FlyIo.as_str().into(),
            message: format!(
                "release_command `{release_cmd}` failed, so fly deploy stopped before updating any machine of {app}: {message}"
            ),
            hint: format!("fix the release command (usually the migration), commit and deploy again; `fly logs -a {app}` shows its output"),
            retryable: false,
        }
    }

    fn check(name: String, status: CheckStatus, detail: String, hint: Option<String>) -> ChecklistItem {
        ChecklistItem { name, status, detail, hint }
    }
}

/// flyctl's name for a strategy.
fn fly_strategy(s: Strategy) -> &'static str {
    match s {
        Strategy::Rolling => "rolling",
        Strategy::BlueGreen => "bluegreen",
        Strategy::Canary => "canary",
        Strategy::Recreate => "immediate",
    }
}

impl Provider for Fly {
    fn platform(&self) -> Platform {
        Platform::FlyIo
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            uploads_working_tree: true,
            strategies: vec![Strategy::Rolling, Strategy::BlueGreen, Strategy::Canary, Strategy::Recreate],
            rollback: Some(
                "redeploys the chosen release's image (`fly deploy --image <ImageRef> --strategy immediate --skip-release-command`): flyctl has no rollback command".into(),
            ),
            secrets: Some("`fly secrets set/unset/list`: values on stdin, write-only; a change restarts the machines".into()),
            migrations: Some("fly.toml `[deploy] release_command`, run by `fly deploy` in a temporary machine before any machine is updated".into()),
            dry_run: false,
            frontend: false,
        }
    }

    async fn current_version(&self, env: Environment) -> Result<Option<String>> {
        let app = self.app(env)?;
        let releases = self.releases(app, &CancellationToken::new()).await?;
        Ok(Self::current_of(&releases).map(Release::id))
    }

    async fn versions(&self, env: Environment, cancel: &CancellationToken) -> Result<Vec<VersionInfo>> {
        let app = self.app(env)?;
        let releases = self.releases(app, cancel).await?;
        let current = Self::current_of(&releases).map(|r| r.version);
        Ok(releases
            .iter()
            .map(|r| VersionInfo {
                id: r.id(),
                current: Some(r.version) == current,
                created_at: r.created_at.clone(),
                commit: r.commit().map(str::to_owned),
                status: Some(r.status.clone()),
                description: Some(if r.image_ref.is_empty() {
                    r.description.clone()
                } else {
                    format!("{} ({})", r.description, r.image_ref)
                }),
            })
            .collect())
    }

    async fn migrate(&self, _target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Ok(StepOutcome::skipped(match self.release_command() {
            Some(cmd) => format!("fly.toml release_command `{cmd}` runs during deploy, before any machine is updated"),
            None => format!("no release_command in {}: Fly runs no migration step", self.fly_toml().display()),
        }))
    }

    async fn deploy(&self, target: &DeployTarget, cancel: &CancellationToken) -> Result<StepOutcome> {
        let app = self.app(target.env)?;
        let short = target.commit.short();
        let before = self.releases(app, cancel).await?.first().map_or(0, |r| r.version);
        let commit_env = format!("OC_DEPLOY_COMMIT={}", target.commit.as_str());
        let cmd = self.cli.cmd([
            "deploy",
            "-a",
            app,
            "--strategy",
            fly_strategy(target.strategy),
            "--image-label",
            short.as_str(),
            "-e",
            commit_env.as_str(),
            "-y",
        ]);
        let out = self.cli.runner.run(&cmd, cancel).await?;
        if !out.success() {
            return Err(self.deploy_failure(app, &cmd, &out));
        }
        let settled = self.settle(app, before, |r| r.tag() == Some(short.as_str()), cancel).await?;
        if let Some(release) = settled {
            return Ok(StepOutcome::passed(format!(
                "{} live on {app}: {} ({} strategy)",
                release.id(),
                release.image_ref,
                fly_strategy(target.strategy)
            )));
        }
        // flyctl exits 0 on a no-op deploy (UNCHANGED): fine only if this commit already serves.
        let releases = self.releases(app, cancel).await?;
        match Self::current_of(&releases) {
            Some(r) if r.tag() == Some(short.as_str()) => {
                Ok(StepOutcome::passed(format!("{} already runs {short} ({}); fly deploy changed nothing", r.id(), r.image_ref)))
            }
            serving => Err(CoreError::Platform {
                platform: Platform::FlyIo.as_str().into(),
                message: format!(
                    "`{}` exited 0 but {app} shows no release of {short}; it serves {}",
                    cmd.display(),
                    serving.map_or_else(|| "nothing".to_owned(), |r| format!("{} ({})", r.id(), r.image_ref))
                ),
                hint: format!("`fly releases -a {app} --image` and `fly status -a {app}` show what happened"),
                retryable: false,
            }),
        }
    }

    async fn deploy_frontend(&self, _target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        Ok(StepOutcome::skipped("Fly.io serves the frontend from the app's own machines"))
    }

    async fn dry_run(&self, target: &DeployTarget, _cancel: &CancellationToken) -> Result<StepOutcome> {
        let app = self.app(target.env)?;
        let toml = self.fly_toml();
        let config = if toml.is_file() { format!("{} found", toml.display()) } else { format!("{} is missing", toml.display()) };
        let release =
            self.release_command().map_or_else(|| "no release_command".to_owned(), |c| format!("release_command `{c}` would run first"));
        Ok(StepOutcome::passed(format!(
            "flyctl has no dry run: would run `fly deploy -a {app} --strategy {} --image-label {} -e OC_DEPLOY_COMMIT={} -y` in {} ({config}; {release})",
            fly_strategy(target.strategy),
            target.commit.short(),
            target.commit.as_str(),
            self.cfg.app_dir(&self.root).display()
        )))
    }

    async fn rollback(&self, env: Environment, to_version: &str, cancel: &CancellationToken) -> Result<StepOutcome> {
        let app = self.app(env)?;
        let Some(n) = parse_version(to_version) else {
            return Err(CoreError::invalid(
                "to_version",
                format!("`{to_version}` is not a Fly release"),
                "name a release as vN, e.g. v41 (deploy_status lists them)",
            ));
        };
        let releases = self.releases(app, cancel).await?;
        let Some(target) = releases.iter().find(|r| r.version == n).cloned() else {
            let known: Vec<String> = releases.iter().map(Release::id).collect();
            return Err(CoreError::NotFound {
                what: format!("release v{n} of {app}"),
                message: format!("flyctl lists {}", if known.is_empty() { "no releases".into() } else { known.join(", ") }),
                hint: "roll back to one of the listed releases (fly keeps the 25 most recent)".into(),
            });
        };
        if target.image_ref.is_empty() {
            return Err(CoreError::Platform {
                platform: Platform::FlyIo.as_str().into(),
                message: format!("release {} of {app} has no image to redeploy", target.id()),
                hint: format!("pick another release from `fly releases -a {app} --image`"),
                retryable: false,
            });
        }
        let before = releases.first().map_or(0, |r| r.version);
        // Immediate: production is unhealthy and the image ran before, so every machine moves
        // to it at once instead of one by one. The release command is skipped: an old image's
        // migrations must not run against a newer schema (rolling back data is a separate act).
        let mut args = vec!["deploy", "-a", app, "--image", target.image_ref.as_str(), "--strategy", "immediate", "--skip-release-command"];
        let commit_env = target.commit().map(|c| format!("OC_DEPLOY_COMMIT={c}"));
        if let Some(e) = &commit_env {
            args.extend(["-e", e.as_str()]);
        }
        args.push("-y");
        let cmd = self.cli.cmd(args);
        let out = self.cli.runner.run(&cmd, cancel).await?;
        if !out.success() {
            return Err(self.deploy_failure(app, &cmd, &out));
        }
        match self.settle(app, before, |r| r.image_ref == target.image_ref, cancel).await? {
            Some(release) => Ok(StepOutcome::passed(format!(
                "{app} rolled back to {}: new release {} runs its image {}",
                target.id(),
                release.id(),
                target.image_ref
            ))),
            None => Err(CoreError::Platform {
                platform: Platform::FlyIo.as_str().into(),
                message: format!("`{}` exited 0 but {app} shows no new release of {}", cmd.display(), target.image_ref),
                hint: format!("`fly releases -a {app} --image` shows what happened"),
                retryable: false,
            }),
        }
    }

    async fn env_list(&self, env: Environment, cancel: &CancellationToken) -> Result<EnvListing> {
        let app = self.app(env)?;
        let cmd = self.cli.cmd(["secrets", "list", "-a", app, "--json"]);
        let out = self.cli.run(&cmd, cancel).await?;
        let entries: Vec<SecretEntry> = parse_json(Platform::FlyIo, &cmd, &out.stdout)?;
        let staged: Vec<&str> =
            entries.iter().filter(|e| e.status.as_deref().is_some_and(|s| s != "Deployed")).map(|e| e.name.as_str()).collect();
        let mut note =
            format!("Fly secrets of {app} are write-only (names and digests only); setting or unsetting one restarts the machines");
        if !staged.is_empty() {
            note.push_str(&format!("; not yet on every machine: {}", staged.join(", ")));
        }
        Ok(EnvListing { vars: entries.into_iter().map(|e| EnvVarName { name: e.name, secret: true }).collect(), note: Some(note) })
    }

    async fn env_set(&self, env: Environment, name: &str, value: &Secret, cancel: &CancellationToken) -> Result<StepOutcome> {
        let app = self.app(env)?;
        check_secret_name(name)?;
        // `NAME=-` makes flyctl read the value from stdin: it never appears in an argument list.
        let cmd = self.cli.cmd(["secrets", "set", &format!("{name}=-"), "-a", app]).stdin_secret(value.clone());
        self.cli.run(&cmd, cancel).await?;
        Ok(StepOutcome::passed(format!("set {name} on {app}; Fly restarts the app's machines to apply it (unless it was staged)")))
    }

    async fn env_unset(&self, env: Environment, name: &str, cancel: &CancellationToken) -> Result<StepOutcome> {
        let app = self.app(env)?;
        check_secret_name(name)?;
        self.run(&["secrets", "unset", name, "-a", app], cancel).await?;
        Ok(StepOutcome::passed(format!("removed {name} from {app}; Fly restarts the app's machines to apply it (unless it was staged)")))
    }

    async fn checklist(&self, cancel: &CancellationToken) -> Vec<ChecklistItem> {
        #[derive(Deserialize)]
        struct Whoami {
            email: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Status {
            #[serde(default)]
            status: String,
            #[serde(default)]
            version: u64,
        }
        let mut items = Vec::new();
        let whoami = self.cli.cmd(["auth", "whoami", "--json"]);
        let login = match self.cli.run(&whoami, cancel).await.and_then(|o| parse_json::<Whoami>(Platform::FlyIo, &whoami, &o.stdout)) {
            Ok(w) => Self::check("fly login".into(), CheckStatus::Ok, format!("logged in as {}", w.email), None),
            Err(e) => Self::check("fly login".into(), CheckStatus::Fail, e.to_string(), Some(e.hint())),
        };
        items.push(login);
        for env in Environment::ALL {
            if self.cfg.environments.get(env).is_none() {
                continue;
            }
            let name = format!("fly app ({env})");
            let app = match self.app(env) {
                Ok(a) => a,
                Err(e) => {
                    items.push(Self::check(name, CheckStatus::Fail, e.to_string(), Some(e.hint())));
                    continue;
                }
            };
            let cmd = self.cli.cmd(["status", "-a", app, "--json"]);
            match self.cli.run(&cmd, cancel).await.and_then(|o| parse_json::<Status>(Platform::FlyIo, &cmd, &o.stdout)) {
                Ok(s) => {
                    items.push(Self::check(name, CheckStatus::Ok, format!("{app} exists (status {}, v{})", s.status, s.version), None))
                }
                Err(e) => items.push(Self::check(name, CheckStatus::Fail, e.to_string(), Some(e.hint()))),
            }
        }
        items
    }
}

/// One entry of `fly secrets list --json`, in any of its three historical shapes:
/// `{"name","digest","status"}` (2026-01 on), `{"name","digest","updated_at"}` (2025-09 on),
/// `{"Name","Digest","CreatedAt"}` (GraphQL era). Only the name and status are kept.
#[derive(Debug, Deserialize)]
struct SecretEntry {
    #[serde(alias = "Name")]
    name: String,
    #[serde(default)]
    status: Option<String>,
}

/// `v42`, `V42` or `42` → 42.
fn parse_version(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.strip_prefix(['v', 'V']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Secret names oc-deploy accepts: letters, digits and underscores, not starting with a digit.
fn check_secret_name(name: &str) -> Result<()> {
    let ok =
        !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(CoreError::invalid("name", format!("`{name}` is not a secret name"), "use letters, digits and underscores, e.g. DATABASE_URL"))
    }
}

/// `release_command` of fly.toml's `[deploy]` table (or a dotted `deploy.release_command` at
/// the top level). Only the shapes fly.toml uses: a basic or literal string on one line.
fn release_command(toml: &str) -> Option<String> {
    let mut table = String::new();
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            table = line.trim_start_matches('[').trim_end_matches(']').trim().to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let key = key.trim();
        let ours = (table == "deploy" && key == "release_command") || (table.is_empty() && key == "deploy.release_command");
        if ours {
            return toml_string(value.trim()).filter(|c| !c.trim().is_empty());
        }
    }
    None
}

/// A one-line TOML string value: `"basic \"escaped\""` or `'literal'`.
fn toml_string(v: &str) -> Option<String> {
    if let Some(rest) = v.strip_prefix('\'') {
        return rest.split_once('\'').map(|(s, _)| s.to_owned());
    }
    let rest = v.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_command_is_read_from_the_deploy_table() {
        let toml = "app = \"shop\"\n\n[build]\n  release_command = \"nope\"\n\n[deploy]\n  strategy = \"rolling\"\n  release_command = \"bin/migrate \\\"up\\\"\" # run migrations\n\n[[services]]\n";
        assert_eq!(release_command(toml).as_deref(), Some("bin/migrate \"up\""));
        assert_eq!(release_command("[deploy]\nrelease_command = '/app/migrate up'\n").as_deref(), Some("/app/migrate up"));
        assert_eq!(release_command("deploy.release_command = \"x\"\n").as_deref(), Some("x"));
        assert_eq!(release_command("[deploy]\nstrategy = \"canary\"\n"), None);
    }

    #[test]
    fn the_commit_comes_from_a_short_sha_image_tag() {
        let r = |image: &str| Release {
            version: 1,
            status: "complete".into(),
            description: String::new(),
            created_at: None,
            image_ref: image.into(),
        };
        assert_eq!(r("registry.fly.io/shop:1a2b3c4").commit(), Some("1a2b3c4"));
        assert_eq!(r("registry.fly.io/shop:deployment-01JABCDEF").commit(), None);
        assert_eq!(r("registry.fly.io/shop:1a2b3c4@sha256:abc").tag(), Some("1a2b3c4"));
        assert_eq!(r("localhost:5000/shop").tag(), None);
    }

    #[test]
    fn every_secrets_list_shape_gives_names() {
        for text in [
            r#"[{"name":"DATABASE_URL","digest":"abc","status":"Deployed"}]"#,
            r#"[{"name":"DATABASE_URL","digest":"abc","updated_at":"2025-10-01T00:00:00Z"}]"#,
            r#"[{"Name":"DATABASE_URL","Digest":"abc","CreatedAt":"2025-01-01T00:00:00Z"}]"#,
        ] {
            let entries: Vec<SecretEntry> = serde_json::from_str(text).unwrap();
            assert_eq!(entries[0].name, "DATABASE_URL", "{text}");
        }
    }

    #[test]
    fn strategies_map_to_flyctl_names() {
        assert_eq!(fly_strategy(Strategy::Recreate), "immediate");
        assert_eq!(fly_strategy(Strategy::BlueGreen), "bluegreen");
    }
}
