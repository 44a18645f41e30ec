//! The project's records in `.checkpoints/`: the skill's checkpoint (read-modify-write under a
//! file lock, written atomically), the append-only run log, and one lock per environment whose
//! holder is named to anyone refused and taken over when its process died.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::{Environment, RunId, now_rfc3339};
use crate::error::{CoreError, Result};
use crate::gate::{Counts, Decision};
use crate::pipeline::State;
use crate::run::{RunRecord, RunStatus};
use crate::smoke::HealthBaseline;

pub const CHECKPOINT_DIR: &str = ".checkpoints";
pub const SKILL: &str = "oc-deploy-ops";
pub const CHECKPOINT_FILE: &str = "oc-deploy-ops.checkpoint.json";
pub const RUNS_FILE: &str = "oc-deploy-ops.runs.jsonl";
const LOCK_DIR: &str = "oc-deploy-ops.locks";

/// `.checkpoints/oc-deploy-ops.checkpoint.json`. Unknown fields written by other tools are kept.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Checkpoint {
    #[serde(default = "skill_name")]
    pub skill: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub skill_state: SkillState,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn skill_name() -> String {
    SKILL.into()
}

/// The skill's `skill_state` template, plus what oc-deploy needs to keep its promises.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct SkillState {
    /// The environment of the last deploy.
    #[serde(default)]
    pub current_env: Option<Environment>,
    #[serde(default)]
    pub staging_version: Option<String>,
    #[serde(default)]
    pub prod_version: Option<String>,
    /// Production's version before the last production deploy (rollback target).
    #[serde(default)]
    pub prev_prod_version: Option<String>,
    #[serde(default)]
    pub last_deploy: Option<String>,
    /// Last smoke run: test name → "pass" | "fail".
    #[serde(default)]
    pub smoke_results: BTreeMap<String, String>,
    #[serde(default)]
    pub rollback_available: bool,
    /// Per environment: what runs there and whether it is verified. Keyed by name, so an
    /// environment another tool records (say `dev`) is kept, not refused.
    #[serde(default)]
    pub environments: BTreeMap<String, EnvState>,
    /// The last gate decision.
    #[serde(default)]
    pub last_gate: Option<GateSummary>,
    /// Latencies of the last healthy check, per environment.
    #[serde(default)]
    pub health_baselines: BTreeMap<String, HealthBaseline>,
    /// The last health verdict per environment.
    #[serde(default)]
    pub last_health: BTreeMap<String, HealthSummary>,
    /// What oc-monitoring-ops reads to learn what shipped.
    #[serde(default)]
    pub monitoring: Option<MonitoringHandoff>,
    #[serde(default)]
    pub pm: PmState,
    #[serde(default)]
    pub pm_deferred_actions: Vec<serde_json::Value>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl SkillState {
    pub fn env(&self, env: Environment) -> Option<&EnvState> {
        self.environments.get(env.as_str())
    }

    pub fn env_mut(&mut self, env: Environment) -> &mut EnvState {
        self.environments.entry(env.as_str().to_owned()).or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct EnvState {
    pub version: Option<String>,
    pub commit: Option<String>,
    pub deployed_at: Option<String>,
    pub run_id: Option<RunId>,
    pub url: Option<String>,
    /// The commit whose smoke tests last passed here (production's pre-promotion check).
    pub verified_commit: Option<String>,
    /// "pass" or "fail" of the last smoke run.
    pub last_smoke: Option<String>,
    pub previous_version: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GateSummary {
    pub decision: Decision,
    pub counts: Counts,
    pub at: String,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HealthSummary {
    pub verdict: String,
    pub at: String,
    pub max_latency_ms: u64,
    pub failed: u32,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MonitoringHandoff {
    pub version: String,
    pub commit_sha: String,
    pub prod_url: String,
    pub shipped_at: String,
    pub run_id: RunId,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct PmState {
    #[serde(default)]
    pub deploy_tickets: Vec<serde_json::Value>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One line of the run log: the run as it stood after `event`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LogLine {
    event: String,
    at: String,
    run: RunRecord,
}

/// The folded run log of one file, as far as it has been read.
#[derive(Debug, Default)]
struct FoldedLog {
    offset: u64,
    order: Vec<RunId>,
    latest: BTreeMap<RunId, RunRecord>,
}

impl FoldedLog {
    fn apply(&mut self, run: RunRecord) {
        if !self.latest.contains_key(&run.run_id) {
            self.order.push(run.run_id.clone());
        }
        self.latest.insert(run.run_id.clone(), run);
    }
}

static RUN_LOG_CACHE: std::sync::OnceLock<std::sync::Mutex<BTreeMap<PathBuf, FoldedLog>>> = std::sync::OnceLock::new();

/// Who holds an environment's lock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LockHolder {
    pub run_id: RunId,
    pub pid: u32,
    pub since: String,
    pub env: Environment,
}

/// An environment's lock; released on drop.
#[derive(Debug)]
pub struct EnvLock {
    file: File,
    /// The holder whose process died without releasing; its run was marked interrupted.
    pub taken_over: Option<LockHolder>,
}

impl Drop for EnvLock {
    fn drop(&mut self) {
        // Clear the holder record before unlocking, so a later taker sees a clean release.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// The records of one project.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(root: &Path) -> Self {
        Self { dir: root.join(CHECKPOINT_DIR) }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn checkpoint_path(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_FILE)
    }

    pub fn runs_path(&self) -> PathBuf {
        self.dir.join(RUNS_FILE)
    }

    fn mkdir(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| CoreError::io(format!("creating {}", self.dir.display()), e))
    }

    /// The checkpoint, or an empty one when none was written yet.
    pub fn load(&self) -> Result<Checkpoint> {
        let path = self.checkpoint_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| CoreError::StateInvalid { path: path.clone(), message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Checkpoint { skill: SKILL.into(), ..Default::default() }),
            Err(e) => Err(CoreError::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Changes the checkpoint under a lock, so concurrent runs on different environments never
    /// lose each other's updates, and writes it atomically.
    pub fn update(&self, f: impl FnOnce(&mut SkillState)) -> Result<Checkpoint> {
        crate::fsutil::with_lock(&self.dir.join(".oc-deploy-ops.checkpoint.lock"), || {
            let mut cp = self.load()?;
            f(&mut cp.skill_state);
            cp.skill = SKILL.into();
            cp.updated_at = now_rfc3339();
            crate::fsutil::write_json_atomic(&self.checkpoint_path(), &cp)?;
            Ok(cp)
        })
    }

    /// Appends the run as it stands to the run log (one JSON line, one write).
    pub fn append_run(&self, run: &RunRecord, event: &str) -> Result<()> {
        self.mkdir()?;
        let mut line = serde_json::to_vec(&LogLine { event: event.into(), at: now_rfc3339(), run: run.clone() })
            .map_err(|e| CoreError::io("serialising a run", e.into()))?;
        line.push(b'\n');
        let path = self.runs_path();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| CoreError::io(format!("opening {}", path.display()), e))?;
        f.write_all(&line).map_err(|e| CoreError::io(format!("appending to {}", path.display()), e))?;
        f.sync_data().map_err(|e| CoreError::io(format!("syncing {}", path.display()), e))
    }

    /// Every run as last recorded, oldest first. A torn last line (a crash mid-write) is skipped.
    ///
    /// The log is append-only, so a process-wide cache keeps what it has folded and parses only
    /// the bytes added since: `deploy_status` stays fast however many runs a project has.
    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        self.with_runs(|log| log.order.iter().filter_map(|id| log.latest.get(id).cloned()).collect())
    }

    /// Of the runs for which `matches` is true: the last `limit`, plus any earlier one for which
    /// `keep` is true; oldest first. Clones only those.
    pub fn recent_runs(
        &self,
        limit: usize,
        matches: impl Fn(&RunRecord) -> bool,
        keep: impl Fn(&RunRecord) -> bool,
    ) -> Result<Vec<RunRecord>> {
        self.with_runs(|log| {
            let mut picked = Vec::new();
            for r in log.order.iter().rev().filter_map(|id| log.latest.get(id)).filter(|r| matches(r)) {
                if picked.len() < limit || keep(r) {
                    picked.push(r.clone());
                }
            }
            picked.reverse();
            picked
        })
    }

    /// Reads the run log (incrementally) and hands the folded runs to `f`.
    fn with_runs<T>(&self, f: impl FnOnce(&FoldedLog) -> T) -> Result<T> {
        let path = self.runs_path();
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(f(&FoldedLog::default())),
            Err(e) => return Err(CoreError::io(format!("reading {}", path.display()), e)),
        };
        let len = file.metadata().map_err(|e| CoreError::io(format!("reading {}", path.display()), e))?.len();
        let cache = RUN_LOG_CACHE.get_or_init(Default::default);
        let mut caches = cache.lock().map_err(|_| CoreError::io("run-log cache", std::io::ErrorKind::Other.into()))?;
        let folded = caches.entry(path.clone()).or_default();
        if len < folded.offset {
            // Replaced or truncated by hand: start over.
            *folded = FoldedLog::default();
        }
        if len > folded.offset {
            file.seek(SeekFrom::Start(folded.offset)).map_err(|e| CoreError::io(format!("reading {}", path.display()), e))?;
            let mut bytes = Vec::with_capacity((len - folded.offset) as usize);
            file.take(len - folded.offset).read_to_end(&mut bytes).map_err(|e| CoreError::io(format!("reading {}", path.display()), e))?;
            // Only whole lines: a line still being written is read next time.
            let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            for line in bytes[..whole].split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
                match serde_json::from_slice::<LogLine>(line) {
                    Ok(l) => folded.apply(l.run),
                    Err(_) => tracing::warn!(file = %path.display(), "skipping an unreadable run-log line"),
                }
            }
            folded.offset += whole as u64;
        }
        Ok(f(folded))
    }

    pub fn run(&self, id: &RunId) -> Result<Option<RunRecord>> {
        self.with_runs(|log| log.latest.get(id).cloned())
    }

    fn lock_path(&self, env: Environment) -> PathBuf {
        self.dir.join(LOCK_DIR).join(format!("{env}.lock"))
    }

    /// Takes the environment's lock for a run, or refuses naming the holder. A holder whose
    /// process died left its record behind: the lock is taken over and its run marked
    /// interrupted.
    pub fn lock_env(&self, env: Environment, run_id: &RunId) -> Result<EnvLock> {
        let path = self.lock_path(env);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| CoreError::io(format!("creating {}", dir.display()), e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| CoreError::io(format!("opening {}", path.display()), e))?;
        if file.try_lock().is_err() {
            let holder = read_holder(&path);
            return Err(match holder {
                Some(h) => CoreError::Locked { env: env.to_string(), run_id: h.run_id.to_string(), pid: h.pid, since: h.since },
                None => CoreError::Locked { env: env.to_string(), run_id: "unknown".into(), pid: 0, since: "unknown".into() },
            });
        }
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        let taken_over = serde_json::from_str::<LockHolder>(&previous).ok();
        let me = LockHolder { run_id: run_id.clone(), pid: std::process::id(), since: now_rfc3339(), env };
        let body = serde_json::to_vec(&me).map_err(|e| CoreError::io("serialising lock holder", e.into()))?;
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(&body))
            .and_then(|()| file.sync_data())
            .map_err(|e| CoreError::io(format!("writing {}", path.display()), e))?;
        let lock = EnvLock { file, taken_over };
        if let Some(dead) = &lock.taken_over {
            tracing::warn!(run = %dead.run_id, pid = dead.pid, %env, "taking over the lock of a dead run");
            self.mark_interrupted(&dead.run_id)?;
        }
        Ok(lock)
    }

    /// Who holds the environment's lock right now, if anyone alive does.
    pub fn lock_holder(&self, env: Environment) -> Option<LockHolder> {
        let path = self.lock_path(env);
        let file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
        if file.try_lock().is_ok() {
            let _ = file.unlock();
            return None;
        }
        read_holder(&path)
    }

    fn mark_interrupted(&self, id: &RunId) -> Result<()> {
        if let Some(mut run) = self.run(id)?
            && run.status == RunStatus::Running
        {
            run.status = RunStatus::Interrupted;
            run.state = State::Interrupted;
            run.finished_at = Some(now_rfc3339());
            run.notes.push("the process running this deploy died; the next run took its lock over".into());
            self.append_run(&run, "interrupted")?;
        }
        Ok(())
    }
}

fn read_holder(path: &Path) -> Option<LockHolder> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// The JSON Schema of the checkpoint file.
pub fn checkpoint_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Checkpoint)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunKind;

    fn run(id: &RunId, status: RunStatus) -> RunRecord {
        RunRecord {
            run_id: id.clone(),
            kind: RunKind::Staging,
            env: Environment::Staging,
            project: "p".into(),
            platform: "local".into(),
            commit: None,
            version: None,
            strategy: None,
            status,
            state: State::Deploying,
            started_at: now_rfc3339(),
            finished_at: None,
            duration_ms: 0,
            pid: 1,
            steps: vec![],
            gate: None,
            previous_version: None,
            direct: false,
            dry_run: false,
            confirmed_by: None,
            smoke: vec![],
            health: vec![],
            rollback: None,
            error: None,
            notes: vec![],
        }
    }

    #[test]
    fn a_second_locker_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let a = RunId::generate();
        let held = store.lock_env(Environment::Staging, &a).unwrap();
        let err = store.lock_env(Environment::Staging, &RunId::generate()).unwrap_err();
        assert_eq!(err.code(), "environment_locked");
        assert!(err.to_string().contains(a.as_str()), "{err}");
        assert_eq!(store.lock_holder(Environment::Staging).unwrap().run_id, a);
        // Production is independent.
        let _p = store.lock_env(Environment::Production, &RunId::generate()).unwrap();
        drop(held);
        assert!(store.lock_holder(Environment::Staging).is_none());
        let again = store.lock_env(Environment::Staging, &RunId::generate()).unwrap();
        assert!(again.taken_over.is_none(), "a clean release leaves no holder behind");
    }

    #[test]
    fn a_dead_holders_lock_is_taken_over_and_its_run_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let dead = RunId::generate();
        store.append_run(&run(&dead, RunStatus::Running), "started").unwrap();
        // What a killed process leaves: the holder record, with no lock held.
        let path = store.lock_path(Environment::Staging);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let holder = LockHolder { run_id: dead.clone(), pid: 999_999, since: now_rfc3339(), env: Environment::Staging };
        std::fs::write(&path, serde_json::to_vec(&holder).unwrap()).unwrap();
        let lock = store.lock_env(Environment::Staging, &RunId::generate()).unwrap();
        assert_eq!(lock.taken_over.as_ref().unwrap().run_id, dead);
        assert_eq!(store.run(&dead).unwrap().unwrap().status, RunStatus::Interrupted);
    }

    #[test]
    fn run_log_folds_to_latest_and_survives_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let a = RunId::generate();
        store.append_run(&run(&a, RunStatus::Running), "started").unwrap();
        store.append_run(&run(&a, RunStatus::Succeeded), "finished").unwrap();
        let mut f = OpenOptions::new().append(true).open(store.runs_path()).unwrap();
        f.write_all(b"{\"event\":\"step\",\"run\":{\"run_id\":").unwrap();
        let runs = store.runs().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, RunStatus::Succeeded);
    }

    #[test]
    fn the_cached_fold_sees_appends_and_lines_finished_later() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let (a, b) = (RunId::generate(), RunId::generate());
        store.append_run(&run(&a, RunStatus::Running), "started").unwrap();
        assert_eq!(store.runs().unwrap().len(), 1);
        // Another process appends: the next read folds only the new bytes.
        Store::new(dir.path()).append_run(&run(&b, RunStatus::Running), "started").unwrap();
        assert_eq!(store.runs().unwrap().iter().map(|r| r.run_id.clone()).collect::<Vec<_>>(), [a.clone(), b.clone()]);
        // A line caught half-written is picked up once it is whole.
        let line =
            serde_json::to_string(&LogLine { event: "finished".into(), at: now_rfc3339(), run: run(&a, RunStatus::Succeeded) }).unwrap();
        let (first, rest) = line.split_at(line.len() / 2);
        let mut f = OpenOptions::new().append(true).open(store.runs_path()).unwrap();
        f.write_all(first.as_bytes()).unwrap();
        assert_eq!(store.run(&a).unwrap().unwrap().status, RunStatus::Running);
        f.write_all(rest.as_bytes()).unwrap();
        f.write_all(b"\n").unwrap();
        assert_eq!(store.run(&a).unwrap().unwrap().status, RunStatus::Succeeded);
        // A log replaced by hand is read afresh.
        std::fs::write(store.runs_path(), "").unwrap();
        assert!(store.runs().unwrap().is_empty());
    }

    #[test]
    fn recent_runs_keeps_the_last_matching_and_the_running() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let ids: Vec<RunId> = (0..6).map(|_| RunId::generate()).collect();
        for (i, id) in ids.iter().enumerate() {
            store.append_run(&run(id, if i == 0 { RunStatus::Running } else { RunStatus::Succeeded }), "x").unwrap();
        }
        let got: Vec<RunId> =
            store.recent_runs(2, |_| true, |r| r.status == RunStatus::Running).unwrap().into_iter().map(|r| r.run_id).collect();
        assert_eq!(got, [ids[0].clone(), ids[4].clone(), ids[5].clone()]);
        let none = store.recent_runs(3, |r| r.env == Environment::Production, |_| true).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn checkpoint_keeps_unknown_fields_and_the_skill_shape() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        std::fs::create_dir_all(store.dir()).unwrap();
        std::fs::write(store.checkpoint_path(), r#"{"skill":"oc-deploy-ops","updated_at":"2026-04-01T10:00:00Z","other_tool":1,"skill_state":{"current_env":"staging","staging_version":"abc123","smoke_results":{"health":"pass"},"rollback_available":true,"custom":"kept"}}"#).unwrap();
        store.update(|s| s.prod_version = Some("def456".into())).unwrap();
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(store.checkpoint_path()).unwrap()).unwrap();
        assert_eq!(v["other_tool"], 1);
        assert_eq!(v["skill_state"]["custom"], "kept");
        assert_eq!(v["skill_state"]["staging_version"], "abc123");
        assert_eq!(v["skill_state"]["prod_version"], "def456");
        assert_eq!(v["skill_state"]["rollback_available"], true);
        assert!(v["skill_state"]["pm"]["deploy_tickets"].is_array());
        assert!(v["skill_state"]["pm_deferred_actions"].is_array());
        assert_ne!(v["updated_at"], "2026-04-01T10:00:00Z");
    }
}
