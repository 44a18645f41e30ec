//! Small async git helpers (head, rev resolution, dirtiness, tree export), all run through the
//! process [`Runner`] as argument lists, with git's failures turned into errors a user can act on.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::CommitSha;
use crate::error::{CoreError, Result};
use crate::process::{Cmd, Output, Runner};

/// Reading refs and status is quick; a hung git (a lock, a network filesystem) should not hang a deploy.
const QUICK: Duration = Duration::from_secs(60);

/// What to do when the project is not a git repository yet.
const INIT_HINT: &str = "git init && git add -A && git commit -m init";

fn git(root: &Path) -> Cmd {
    Cmd::new("git", root).timeout(QUICK)
}

/// Turns a failed git command into the error that explains it best.
fn failure(root: &Path, out: &Output, what: &str) -> CoreError {
    let stderr = out.tail(5);
    if stderr.contains("not a git repository") {
        return CoreError::Git { message: format!("{} is not a git repository", root.display()), hint: INIT_HINT.into() };
    }
    if stderr.contains("dubious ownership") {
        return CoreError::Git {
            message: format!("git refuses to work in {}: {stderr}", root.display()),
            hint: format!("git config --global --add safe.directory {}", root.display()),
        };
    }
    CoreError::Git { message: format!("{what} failed: {stderr}"), hint: "run the same git command in the project to see why".into() }
}

/// The commit `HEAD` points at.
pub async fn head_commit(runner: &Runner, root: &Path, cancel: &CancellationToken) -> Result<CommitSha> {
    let cmd = git(root).args(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]);
    let out = runner.run(&cmd, cancel).await?;
    if out.success() {
        return CommitSha::parse(&out.stdout);
    }
    if out.stderr.trim().is_empty() {
        // `--quiet` keeps an unborn HEAD silent: the repository exists but has no commit.
        return Err(CoreError::Git {
            message: format!("the repository at {} has no commits yet", root.display()),
            hint: "make a first commit: git add -A && git commit -m init".into(),
        });
    }
    Err(failure(root, &out, "git rev-parse HEAD"))
}

/// Resolves a short SHA, tag or branch to the commit it names.
pub async fn resolve_commit(runner: &Runner, root: &Path, rev: &str, cancel: &CancellationToken) -> Result<CommitSha> {
    let rev = rev.trim();
    let hint = "use a commit SHA (short is fine), a tag or a branch name; `git log --oneline` lists commits";
    // A leading dash would make git read the revision as an option.
    if rev.is_empty() || rev.starts_with('-') || rev.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CoreError::invalid("version", format!("`{rev}` is not a revision"), hint));
    }
    let cmd = git(root).args(["rev-parse", "--verify", "--quiet"]).arg(format!("{rev}^{{commit}}"));
    let out = runner.run(&cmd, cancel).await?;
    if out.success() {
        return CommitSha::parse(&out.stdout);
    }
    let stderr = out.stderr.trim();
    if stderr.contains("not a git repository") || stderr.contains("dubious ownership") {
        return Err(failure(root, &out, "git rev-parse"));
    }
    let detail = if stderr.is_empty() { String::new() } else { format!(" ({})", out.tail(1)) };
    Err(CoreError::invalid("version", format!("`{rev}` is not a commit, tag or branch of this repository{detail}"), hint))
}

/// Whether tracked files have changes that are not committed (untracked files do not count:
/// they are not part of any release).
pub async fn is_dirty(runner: &Runner, root: &Path, cancel: &CancellationToken) -> Result<bool> {
    let cmd = git(root).args(["status", "--porcelain", "--untracked-files=no"]);
    let out = runner.run(&cmd, cancel).await?;
    if !out.success() {
        return Err(failure(root, &out, "git status"));
    }
    Ok(!out.stdout.trim().is_empty())
}

/// Writes the committed tree of `commit` into `dest` (created if missing): exactly what was
/// committed, without uncommitted edits, untracked files or the `.git` directory.
pub async fn export_tree(runner: &Runner, root: &Path, commit: &CommitSha, dest: &Path, cancel: &CancellationToken) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(|e| CoreError::io(format!("creating {}", dest.display()), e))?;
    // The archive sits beside `dest` (same filesystem, outside the tree being written).
    let tmp_dir = dest.parent().map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    let tmp = TempFile(tmp_dir.join(format!(".export-{}.tar", uuid::Uuid::new_v4().simple())));
    let archive = Cmd::new("git", root).args(["archive", "--format=tar", "-o"]).arg(tmp.0.to_string_lossy()).arg(commit.as_str());
    let out = runner.run(&archive, cancel).await?;
    if !out.success() {
        return Err(failure(root, &out, &format!("git archive {}", commit.short())));
    }
    let extract = Cmd::new("tar", dest).arg("-xf").arg(tmp.0.to_string_lossy()).arg("-C").arg(dest.to_string_lossy());
    runner.run_checked(&extract, cancel).await?;
    Ok(())
}

/// Removes the temporary archive however `export_tree` ends.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Helpers shared with the local platform's tests: a throwaway repository built with real git.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Runs git in `root` with a fixed identity and no signing, whatever the user's config says.
    pub(crate) async fn git_ok(root: &Path, args: &[&str]) -> String {
        let cmd = Cmd::new("git", root)
            .args(["-c", "user.name=oc-deploy-test", "-c", "user.email=test@oc-deploy.invalid", "-c", "commit.gpgsign=false"])
            .args(args.iter().copied());
        let out = Runner::default().run_checked(&cmd, &CancellationToken::new()).await.expect("git");
        out.stdout
    }

    /// Writes the files, stages everything and commits; returns the new HEAD.
    pub(crate) async fn commit_files(root: &Path, files: &[(&str, &str)], message: &str) -> CommitSha {
        for (name, text) in files {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        git_ok(root, &["add", "-A"]).await;
        git_ok(root, &["commit", "-q", "--allow-empty", "-m", message]).await;
        head_commit(&Runner::default(), root, &CancellationToken::new()).await.unwrap()
    }

    pub(crate) async fn init_repo(root: &Path) {
        git_ok(root, &["init", "-q", "-b", "main"]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn c() -> CancellationToken {
        CancellationToken::new()
    }

    #[tokio::test]
    async fn not_a_repository_says_how_to_start_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = head_commit(&Runner::default(), dir.path(), &c()).await.unwrap_err();
        assert_eq!(err.code(), "git_error");
        assert!(err.to_string().contains("is not a git repository"), "{err}");
        assert_eq!(err.hint(), INIT_HINT);
        let err = is_dirty(&Runner::default(), dir.path(), &c()).await.unwrap_err();
        assert_eq!(err.hint(), INIT_HINT);
    }

    #[tokio::test]
    async fn empty_repository_asks_for_a_first_commit() {
        let dir = tempfile::tempdir().unwrap();
        init_repo(dir.path()).await;
        let err = head_commit(&Runner::default(), dir.path(), &c()).await.unwrap_err();
        assert!(err.to_string().contains("no commits yet"), "{err}");
        assert!(err.hint().contains("make a first commit"), "{}", err.hint());
    }

    #[tokio::test]
    async fn revisions_resolve_by_short_sha_tag_and_branch() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        init_repo(root).await;
        let first = commit_files(root, &[("a.txt", "one")], "one").await;
        git_ok(root, &["tag", "v1"]).await;
        git_ok(root, &["branch", "old"]).await;
        let second = commit_files(root, &[("a.txt", "two")], "two").await;
        assert_ne!(first, second);
        let r = Runner::default();
        assert_eq!(head_commit(&r, root, &c()).await.unwrap(), second);
        assert_eq!(resolve_commit(&r, root, &first.short(), &c()).await.unwrap(), first);
        assert_eq!(resolve_commit(&r, root, "v1", &c()).await.unwrap(), first);
        assert_eq!(resolve_commit(&r, root, "old", &c()).await.unwrap(), first);
        assert_eq!(resolve_commit(&r, root, "main", &c()).await.unwrap(), second);
        for bad in ["nope", "-rf", "", "a b"] {
            match resolve_commit(&r, root, bad, &c()).await.unwrap_err() {
                CoreError::InvalidInput { field, .. } => assert_eq!(field, "version"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn dirty_means_tracked_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        init_repo(root).await;
        commit_files(root, &[("a.txt", "one")], "one").await;
        let r = Runner::default();
        assert!(!is_dirty(&r, root, &c()).await.unwrap());
        std::fs::write(root.join("untracked.txt"), "x").unwrap();
        assert!(!is_dirty(&r, root, &c()).await.unwrap());
        std::fs::write(root.join("a.txt"), "edited").unwrap();
        assert!(is_dirty(&r, root, &c()).await.unwrap());
    }

    #[tokio::test]
    async fn export_holds_the_committed_tree_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        std::fs::create_dir(&root).unwrap();
        init_repo(&root).await;
        let sha = commit_files(&root, &[("a.txt", "committed"), ("sub/b.txt", "nested")], "one").await;
        std::fs::write(root.join("a.txt"), "edited").unwrap();
        std::fs::write(root.join("untracked.txt"), "x").unwrap();
        let dest = dir.path().join("out/release");
        export_tree(&Runner::default(), &root, &sha, &dest, &c()).await.unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("a.txt")).unwrap(), "committed");
        assert_eq!(std::fs::read_to_string(dest.join("sub/b.txt")).unwrap(), "nested");
        assert!(!dest.join("untracked.txt").exists());
        assert!(!dest.join(".git").exists());
        // The temporary archive is gone.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("release")]);
    }
}

/// The full messages of the commits in `from..to` (newest first), at most `limit`; with no
/// `from` (a first deploy), the newest `limit` commits reachable from `to`. A `from` that is no
/// longer an ancestor (history rewritten) falls back to `to` alone.
pub async fn commit_messages(
    runner: &Runner,
    root: &Path,
    from: Option<&str>,
    to: &CommitSha,
    limit: usize,
    cancel: &CancellationToken,
) -> Result<Vec<String>> {
    let range = match from {
        Some(f) if f != to.as_str() => format!("{f}..{}", to.as_str()),
        Some(_) => return Ok(Vec::new()),
        None => to.as_str().to_owned(),
    };
    let max = format!("--max-count={limit}");
    let cmd = git(root).args(["log", "-z", "--format=%B", max.as_str(), range.as_str(), "--"]);
    let out = runner.run(&cmd, cancel).await?;
    if !out.success() {
        if from.is_some() {
            let one = git(root).args(["log", "-z", "--format=%B", "--max-count=1", to.as_str(), "--"]);
            let out = runner.run(&one, cancel).await?;
            if out.success() {
                return Ok(split_messages(&out.stdout));
            }
        }
        return Err(failure(root, &out, "git log"));
    }
    Ok(split_messages(&out.stdout))
}

fn split_messages(stdout: &str) -> Vec<String> {
    stdout.split('\0').map(|m| m.trim_matches('\n').to_owned()).filter(|m| !m.is_empty()).collect()
}
