//! The one door to other programs. Every child process oc-deploy starts is built here as an
//! argument list (never a shell string), with a required working directory, an environment
//! allow-list, a timeout, kill-on-cancel (the whole process group), captured and size-limited
//! output, and every known secret redacted from what comes back.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::error::{CoreError, Result};
use crate::secret::{Redactor, Secret};

/// Variables every child gets from the server's environment; nothing else leaks unless a
/// command names it with [`Cmd::pass_env`].
const BASE_ENV: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "SHELL"];

/// Default cap on captured output per stream.
pub const DEFAULT_MAX_OUTPUT: usize = 256 * 1024;

/// A command to run: program, arguments, directory, environment and limits.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    cwd: PathBuf,
    env: Vec<(String, EnvValue)>,
    pass_env: Vec<String>,
    stdin: Option<Secret>,
    timeout: Duration,
    max_output: usize,
}

#[derive(Debug, Clone)]
enum EnvValue {
    Plain(String),
    Secret(Secret),
}

impl Cmd {
    /// A command with a 10-minute default timeout.
    pub fn new(program: impl Into<String>, cwd: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            cwd: cwd.into(),
            env: Vec::new(),
            pass_env: Vec::new(),
            stdin: None,
            timeout: Duration::from_secs(600),
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }

    /// Builds a command from an argv list as written in the config (`["python3", "app.py"]`).
    pub fn from_argv(argv: &[String], cwd: impl Into<PathBuf>, field: &str) -> Result<Self> {
        let (program, rest) = argv.split_first().ok_or_else(|| {
            CoreError::invalid(field, "the command is empty", "give the program and its arguments as a list, e.g. [\"make\", \"build\"]")
        })?;
        Ok(Self::new(program, cwd).args(rest))
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), EnvValue::Plain(value.into())));
        self
    }

    /// A variable whose value is a secret: given to the child, never shown.
    pub fn env_secret(mut self, name: impl Into<String>, value: Secret) -> Self {
        self.env.push((name.into(), EnvValue::Secret(value)));
        self
    }

    /// Passes a variable from the server's environment through, when set.
    pub fn pass_env(mut self, name: impl Into<String>) -> Self {
        self.pass_env.push(name.into());
        self
    }

    /// Writes this secret to the child's stdin (so it never shows in the argument list).
    pub fn stdin_secret(mut self, value: Secret) -> Self {
        self.stdin = Some(value);
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// The command line for logs and reports (secrets are never in arguments).
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str()).chain(self.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
    }

    /// The one place a `Command` is made (clippy.toml bans it everywhere else).
    #[allow(clippy::disallowed_methods)]
    fn build(&self, redactor: &Redactor, own_group: bool) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.program);
        c.args(&self.args).current_dir(&self.cwd).env_clear();
        for name in BASE_ENV.iter().copied().chain(self.pass_env.iter().map(String::as_str)) {
            if let Ok(v) = std::env::var(name) {
                if crate::secret::is_secret_name(name) {
                    redactor.add(&v);
                }
                c.env(name, v);
            }
        }
        for (k, v) in &self.env {
            match v {
                EnvValue::Plain(v) => c.env(k, v),
                EnvValue::Secret(s) => {
                    redactor.add_secret(s);
                    c.env(k, s.expose())
                }
            };
        }
        // Its own process group, so a timeout or cancel kills the whole tree (npm → node …).
        // A detached child gets a whole new session instead (setsid refuses group leaders).
        if own_group {
            c.process_group(0);
        }
        c
    }
}

/// What a finished program left behind (already redacted).
#[derive(Debug, Clone)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last lines of stderr (or stdout when stderr is empty), for error messages.
    pub fn tail(&self, lines: usize) -> String {
        let text = if self.stderr.trim().is_empty() { &self.stdout } else { &self.stderr };
        let all: Vec<&str> = text.trim_end().lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn status_text(&self) -> String {
        match self.code {
            Some(c) => format!("exit code {c}"),
            None => "a signal".into(),
        }
    }
}

/// Starts programs. Holds the redactor so every captured byte is cleaned.
#[derive(Debug, Clone, Default)]
pub struct Runner {
    redactor: Redactor,
}

impl Runner {
    pub fn new(redactor: Redactor) -> Self {
        Self { redactor }
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Runs to completion. A non-zero exit is an `Ok` here; see [`Runner::run_checked`].
    pub async fn run(&self, cmd: &Cmd, cancel: &CancellationToken) -> Result<Output> {
        let started = Instant::now();
        tracing::debug!(cmd = %cmd.display(), cwd = %cmd.cwd.display(), "run");
        let mut command = cmd.build(&self.redactor, true);
        command
            .stdin(if cmd.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| spawn_error(cmd, e))?;
        let pgid = child.id();
        if let (Some(secret), Some(mut stdin)) = (&cmd.stdin, child.stdin.take()) {
            self.redactor.add_secret(secret);
            let bytes = secret.expose().as_bytes().to_vec();
            tokio::spawn(async move {
                let _ = stdin.write_all(&bytes).await;
                let _ = stdin.shutdown().await;
            });
        }
        let out = tokio::spawn(read_capped(child.stdout.take(), cmd.max_output));
        let err = tokio::spawn(read_capped(child.stderr.take(), cmd.max_output));

        let status = tokio::select! {
            s = child.wait() => s.map_err(|e| CoreError::io(format!("waiting for {}", cmd.program), e))?,
            _ = tokio::time::sleep(cmd.timeout) => {
                kill_group(pgid);
                let _ = child.wait().await;
                return Err(CoreError::Timeout { program: cmd.program.clone(), seconds: cmd.timeout.as_secs() });
            }
            _ = cancel.cancelled() => {
                kill_group(pgid);
                let _ = child.wait().await;
                return Err(CoreError::Cancelled);
            }
        };
        // Grandchildren may still hold the pipes open; the group dies with its leader's job.
        kill_group(pgid);
        let stdout = out.await.unwrap_or_default();
        let stderr = err.await.unwrap_or_default();
        Ok(Output {
            code: status.code(),
            stdout: self.redactor.redact(&stdout),
            stderr: self.redactor.redact(&stderr),
            duration: started.elapsed(),
        })
    }

    /// Runs to completion and turns a non-zero exit into [`CoreError::ProgramFailed`].
    pub async fn run_checked(&self, cmd: &Cmd, cancel: &CancellationToken) -> Result<Output> {
        let out = self.run(cmd, cancel).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(CoreError::ProgramFailed { program: cmd.display(), status: out.status_text(), stderr_tail: out.tail(20) })
        }
    }

    /// Starts a long-running service in its own process group with stdin closed and its
    /// output appended to `log`. The caller owns the child.
    pub fn spawn_service(&self, cmd: &Cmd, log: &Path) -> Result<Service> {
        let (out, err) = log_files(log)?;
        let mut command = cmd.build(&self.redactor, true);
        command.stdin(Stdio::null()).stdout(out).stderr(err).kill_on_drop(false);
        let child = command.spawn().map_err(|e| spawn_error(cmd, e))?;
        Ok(Service { pid: child.id().unwrap_or(0), child })
    }

    /// Starts a program fully detached from this one (a new session, no inherited stdio), so
    /// it outlives the caller. Returns its pid.
    pub fn spawn_detached(&self, cmd: &Cmd, log: &Path) -> Result<u32> {
        let (out, err) = log_files(log)?;
        let mut command = cmd.build(&self.redactor, false);
        command.stdin(Stdio::null()).stdout(out).stderr(err).kill_on_drop(false);
        new_session(&mut command);
        let child = command.spawn().map_err(|e| spawn_error(cmd, e))?;
        let pid = child.id().unwrap_or(0);
        // Reap it in the background if it exits while we still run.
        tokio::spawn(async move {
            let mut child = child;
            let _ = child.wait().await;
        });
        Ok(pid)
    }
}

/// A running service started with [`Runner::spawn_service`].
#[derive(Debug)]
pub struct Service {
    pub pid: u32,
    child: tokio::process::Child,
}

impl Service {
    /// Whether it has exited, and with which code.
    pub fn try_exit(&mut self) -> Option<Option<i32>> {
        self.child.try_wait().ok().flatten().map(|s| s.code())
    }

    /// Asks the whole group to stop (SIGTERM), then kills it after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        signal_group(self.pid, Signal::Term);
        if tokio::time::timeout(grace, self.child.wait()).await.is_err() {
            signal_group(self.pid, Signal::Kill);
            let _ = self.child.wait().await;
        }
        signal_group(self.pid, Signal::Kill);
    }
}

fn log_files(log: &Path) -> Result<(std::fs::File, std::fs::File)> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::io(format!("creating {}", dir.display()), e))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| CoreError::io(format!("opening {}", log.display()), e))?;
    let f2 = f.try_clone().map_err(|e| CoreError::io(format!("opening {}", log.display()), e))?;
    Ok((f, f2))
}

fn spawn_error(cmd: &Cmd, e: std::io::Error) -> CoreError {
    if e.kind() == std::io::ErrorKind::NotFound {
        if !cmd.cwd.is_dir() {
            return CoreError::NotFound {
                what: "working directory".into(),
                message: format!("{} does not exist", cmd.cwd.display()),
                hint: "check the project directory".into(),
            };
        }
        return CoreError::ProgramMissing { program: cmd.program.clone(), hint: install_hint(&cmd.program) };
    }
    CoreError::io(format!("starting {}", cmd.program), e)
}

/// How to install a program oc-deploy needs.
pub fn install_hint(program: &str) -> String {
    let name = Path::new(program).file_name().and_then(|n| n.to_str()).unwrap_or(program);
    match name {
        "git" => "install git (Debian/Ubuntu: apt-get install git; macOS: xcode-select --install)".into(),
        "wrangler" | "npx" | "npm" | "node" => "install Node.js 20+, then: npm i -g wrangler".into(),
        "heroku" => "install the Heroku CLI: npm i -g heroku".into(),
        "fly" | "flyctl" => "install flyctl: https://fly.io/docs/flyctl/install/".into(),
        "render" => "install the Render CLI: https://render.com/docs/cli".into(),
        "cargo-shuttle" | "shuttle" => "install the Shuttle CLI: cargo install cargo-shuttle".into(),
        "tar" => "install tar (Debian/Ubuntu: apt-get install tar)".into(),
        other => format!("install `{other}` or fix the command in .oc-deploy-ops.json"),
    }
}

async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>, cap: usize) -> String {
    let Some(mut reader) = reader else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut dropped = 0usize;
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                // Keep the tail: the end of a build log is where the error is.
                if kept.len() > cap {
                    let excess = kept.len() - cap;
                    kept.drain(..excess);
                    dropped += excess;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 { format!("[… {dropped} bytes of earlier output dropped]\n{text}") } else { text }
}

enum Signal {
    Term,
    Kill,
}

fn kill_group(pgid: Option<u32>) {
    if let Some(p) = pgid {
        signal_group(p, Signal::Kill);
    }
}

/// Sends a signal to a process group (the group id is the leader's pid).
#[allow(unsafe_code)]
fn signal_group(pgid: u32, sig: Signal) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    let sig = match sig {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    // SAFETY: kill(2) with a negative pid signals a process group; it has no memory effects.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Signals a single process (used for supervisors we did not start in this process).
#[allow(unsafe_code)]
pub fn terminate_pid(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) has no memory effects.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// Whether a process with this pid exists (Linux: /proc).
pub fn pid_alive(pid: u32) -> bool {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(_) => return false,
    };
    // A zombie is dead for our purposes.
    !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

#[allow(unsafe_code)]
fn new_session(command: &mut tokio::process::Command) {
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner() -> Runner {
        Runner::default()
    }

    #[tokio::test]
    async fn arguments_stay_literal() {
        let dir = std::env::temp_dir();
        let out = runner().run(&Cmd::new("echo", &dir).arg("$HOME; rm -rf /").arg("`id`"), &CancellationToken::new()).await.unwrap();
        assert_eq!(out.stdout.trim(), "$HOME; rm -rf / `id`");
    }

    #[tokio::test]
    async fn missing_program_has_a_hint() {
        let err = runner().run(&Cmd::new("wrangler-does-not-exist", "/"), &CancellationToken::new()).await.unwrap_err();
        assert_eq!(err.code(), "program_missing");
    }

    #[tokio::test]
    async fn timeout_kills_the_child_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // A grandchild that would write the marker after 2 s if the group survived.
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let cmd = Cmd::new("sh", dir.path()).args(["-c", script.as_str()]).timeout(Duration::from_millis(300));
        let err = runner().run(&cmd, &CancellationToken::new()).await.unwrap_err();
        assert_eq!(err.code(), "timeout");
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "a grandchild outlived the timeout");
    }

    #[tokio::test]
    async fn cancel_stops_the_child() {
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c2.cancel();
        });
        let started = Instant::now();
        let err = runner().run(&Cmd::new("sleep", "/").arg("30"), &cancel).await.unwrap_err();
        assert_eq!(err.code(), "cancelled");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn output_is_redacted_and_capped() {
        let r = Redactor::default();
        r.add("s3cr3t-value");
        let runner = Runner::new(r);
        let cmd = Cmd::new("printf", "/").arg("token=s3cr3t-value and more text here").max_output(16);
        let out = runner.run(&cmd, &CancellationToken::new()).await.unwrap();
        assert!(!out.stdout.contains("s3cr3t"));
        assert!(out.stdout.contains("dropped"));
    }

    #[tokio::test]
    async fn environment_is_an_allow_list() {
        // SAFETY-free: set_var is unsafe in edition 2024, so read an existing variable instead.
        let cmd = Cmd::new("env", "/").env("OC_X", "1");
        let out = runner().run(&cmd, &CancellationToken::new()).await.unwrap();
        assert!(out.stdout.contains("OC_X=1"));
        for line in out.stdout.lines() {
            let name = line.split('=').next().unwrap();
            assert!(BASE_ENV.contains(&name) || name == "OC_X", "leaked {name}");
        }
    }

    #[tokio::test]
    async fn secret_on_stdin_not_in_argv() {
        let runner = runner();
        let cmd = Cmd::new("cat", "/").stdin_secret(Secret::new("pa55word-xyz"));
        let out = runner.run(&cmd, &CancellationToken::new()).await.unwrap();
        // cat echoes it, and the runner masks it because it learnt the value.
        assert_eq!(out.stdout, crate::secret::MASK);
        assert!(!cmd.display().contains("pa55"));
    }
}
