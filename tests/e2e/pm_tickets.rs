//! Deploy tickets and chat messages through the real binary: a fake GitHub and fake Telegram,
//! Slack and webhook endpoints on loopback record what oc-deploy writes. One ticket per
//! environment and commit, marker-guarded updates, linked tickets (or one rollup past 50), a 403
//! that affects nothing else, a tracker that is down or unconfigured (deferred, then flushed by
//! `retry-pm` / `deploy_retry_pm`), rate limits waited out, and no secret in any text.
#![allow(clippy::disallowed_methods)]

use oc_deploy_e2e::Project;
use oc_deploy_e2e::fake_pm::{FakeChat, FakeGitHub, GITHUB_TOKEN, SLACK_PATH, TELEGRAM_TOKEN};
use serde_json::Value;

const DB_PASSWORD: &str = "pw-e2e-7f3a9c1d5b";

const PM_YAML: &str = "tracker: github\ngithub: { repo: acme/shop }\nissue_types: { deploy: Deploy }\nstates:\n  extended:\n    staging-verified: Staging verified\n    shipped: Done\n    rolled-back: Rolled back\n    blocked: Blocked\n";

fn project_with_pm() -> Project {
    let p = Project::sample();
    std::fs::write(p.root.join("pm.yaml"), PM_YAML).unwrap();
    p.git(&["add", "pm.yaml"]);
    p.git(&["commit", "-q", "-m", "track deploys in GitHub"]);
    p
}

fn env(gh: Option<&FakeGitHub>, chat: Option<&FakeChat>) -> Vec<(String, String)> {
    let mut e = vec![("DATABASE_PASSWORD".to_owned(), DB_PASSWORD.to_owned())];
    if let Some(gh) = gh {
        e.push(("GITHUB_TOKEN".into(), GITHUB_TOKEN.into()));
        e.push(("GITHUB_API_URL".into(), gh.url.clone()));
    }
    if let Some(c) = chat {
        e.extend(c.env());
    }
    e
}

fn refs(e: &[(String, String)]) -> Vec<(&str, &str)> {
    e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn commit_with_trailers(p: &Project, subject: &str, trailers: &str) -> String {
    std::fs::write(p.root.join("README.md"), format!("{subject}\n")).unwrap();
    p.git(&["commit", "-q", "-am", &format!("{subject}\n\nSome detail.\n\n{trailers}")]);
    p.git(&["rev-parse", "HEAD"])
}

fn number(issue: &Value) -> u64 {
    issue["number"].as_u64().unwrap()
}

fn labels(issue: &Value) -> Vec<String> {
    issue["labels"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap().to_owned()).collect()
}

fn notes(run: &Value) -> String {
    run["notes"].as_array().map(|n| n.iter().map(|x| x.as_str().unwrap_or_default()).collect::<Vec<_>>().join("\n")).unwrap_or_default()
}

#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    for s in [GITHUB_TOKEN, TELEGRAM_TOKEN, SLACK_PATH, DB_PASSWORD] {
        assert!(!text.contains(s), "{what} contains the secret {s}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_ticket_per_environment_and_commit_updates_once_and_messages_carry_no_secret() {
    let gh = FakeGitHub::start().await;
    let chat = FakeChat::start().await;
    let linked = gh.seed(2);
    let p = project_with_pm();
    let sha = commit_with_trailers(&p, "feature: carts", &format!("Refs: {}\nCloses: {}", linked[0], linked[1]));
    let e = env(Some(&gh), Some(&chat));

    let (code, st) = p.cli_json_env(&["staging"], &refs(&e));
    assert_eq!(code, 0, "{st:#}");
    assert_eq!(st["status"], "succeeded");
    let marker = format!("<!-- opchain:oc-deploy-ops:deploy-created:staging:{sha} -->");
    let tickets = gh.issues_with(&marker);
    assert_eq!(tickets.len(), 1, "one staging deploy ticket");
    let t = &tickets[0];
    let id = format!("#{}", number(t));
    assert!(notes(&st).contains(&format!("deploy ticket {id} created")), "{}", notes(&st));
    let body = t["body"].as_str().unwrap();
    assert!(body.starts_with(&marker), "{body}");
    for want in ["Environment: staging", &format!("..{sha}"), "Linked tickets: #2, #3", "Audit gate: "] {
        assert!(body.contains(want), "missing {want:?} in {body}");
    }
    assert!(labels(t).contains(&"Deploy".to_owned()), "issue type from pm.yaml: {t}");
    assert!(labels(t).contains(&"Staging verified".to_owned()), "state label from pm.yaml: {t}");
    let comments = gh.comments_on(number(t));
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].starts_with(&format!("<!-- opchain:oc-deploy-ops:staging-verified:{id} -->")), "{comments:?}");
    let cp = p.checkpoint();
    let recorded = &cp["skill_state"]["pm"]["deploy_tickets"];
    assert_eq!(recorded.as_array().unwrap().len(), 1, "{recorded:#}");
    assert_eq!(recorded[0]["id"], id.as_str());
    assert_eq!(recorded[0]["env"], "staging");
    assert_eq!(cp["skill_state"]["pm_deferred_actions"].as_array().unwrap().len(), 0);
    for channel in ["telegram", "slack", "webhook"] {
        assert_eq!(chat.by(channel).len(), 1, "{channel}: {:?}", chat.by(channel));
    }
    let slack = chat.by("slack")[0].to_string();
    assert!(slack.contains("e2e-shop") && slack.contains("staging") && slack.contains(&sha[..7]), "{slack}");

    // A re-run of the same commit writes nothing new.
    let (code, again) = p.cli_json_env(&["staging"], &refs(&e));
    assert_eq!(code, 0, "{again:#}");
    assert_eq!(gh.issues_with(&marker).len(), 1);
    assert_eq!(gh.comments_on(number(t)).len(), 1);
    assert!(notes(&again).contains("found (already there)"), "{}", notes(&again));

    // Production: its own ticket, shipped comment, closed, and one comment per linked ticket.
    let (code, prod) = p.cli_json_env(&["prod", "--yes"], &refs(&e));
    assert_eq!(code, 0, "{prod:#}");
    assert_eq!(prod["status"], "succeeded");
    let pmarker = format!("deploy-created:production:{sha}");
    let ptickets = gh.issues_with(&pmarker);
    assert_eq!(ptickets.len(), 1);
    let pt = &ptickets[0];
    let pid = format!("#{}", number(pt));
    assert_eq!(pt["state"], "closed", "GitHub: shipping closes the deploy issue");
    assert!(labels(pt).contains(&"Done".to_owned()), "{pt}");
    let pc = gh.comments_on(number(pt));
    assert!(pc.iter().any(|c| c.contains(&format!("prod-shipped:{pid}")) && c.contains(&sha)), "{pc:?}");
    for l in &linked {
        let n: u64 = l.trim_start_matches('#').parse().unwrap();
        let c = gh.comments_on(n);
        assert_eq!(c.len(), 1, "{l}: {c:?}");
        assert!(
            c[0].contains(&format!("linked-shipped:{pid}:{l}")) && c[0].contains(&format!("Shipped to prod via deploy {pid}")),
            "{c:?}"
        );
    }
    // The staging ticket was not touched by production.
    assert_eq!(gh.comments_on(number(t)).len(), 1);
    assert_eq!(chat.by("slack").len(), 2, "staging verified + production shipped");
    assert_eq!(gh.state.lock().unwrap().bad_auth, 0);

    assert_no_secret("tickets and comments", &gh.all_text());
    assert_no_secret("chat messages", &chat.all_text());
    assert_no_secret("run results", &format!("{st}{again}{prod}"));
    assert_no_secret("checkpoint", &p.checkpoint().to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn tracker_unconfigured_or_down_defers_and_retry_pm_flushes_everything_once() {
    let gh = FakeGitHub::start().await;
    let p = project_with_pm();
    let sha1 = p.git(&["rev-parse", "HEAD"]);

    // pm.yaml but no token: the deploy proceeds, every write is deferred with the reason.
    let no_token = env(None, None);
    let (code, st) = p.cli_json_env(&["staging"], &refs(&no_token));
    assert_eq!(code, 0, "{st:#}");
    assert_eq!(st["status"], "succeeded");
    assert!(notes(&st).contains("GITHUB_TOKEN is not set"), "{}", notes(&st));
    let deferred = p.checkpoint()["skill_state"]["pm_deferred_actions"].as_array().unwrap().len();
    assert!(deferred >= 2, "ticket creation and the verified event are deferred: {deferred}");

    // Token set but the tracker is down (503, retried, then deferred).
    gh.state.lock().unwrap().down = true;
    p.commit_change("second");
    let sha2 = p.git(&["rev-parse", "HEAD"]);
    let e = env(Some(&gh), None);
    let (code, st2) = p.cli_json_env(&["staging"], &refs(&e));
    assert_eq!(code, 0, "{st2:#}");
    assert!(notes(&st2).contains("deferred"), "{}", notes(&st2));
    assert!(gh.state.lock().unwrap().issues.is_empty());
    let cp = p.checkpoint();
    let actions = cp["skill_state"]["pm_deferred_actions"].as_array().unwrap().clone();
    assert!(actions.len() > deferred, "{actions:#?}");
    assert!(
        actions
            .iter()
            .all(|a| a["skill"] == "oc-deploy-ops" && a["retriable"] == true && a["marker"].as_str().unwrap().starts_with("<!-- opchain:"))
    );

    // deploy_status says writes are waiting.
    let (code, status) = p.cli_json_env(&["status"], &refs(&e));
    assert_eq!(code, 0, "{status:#}");
    assert_eq!(status["pm_deferred"].as_u64(), Some(actions.len() as u64), "{status:#}");

    // Still down: retry-pm fails them all and keeps them.
    let (code, r) = p.cli_json_env(&["retry-pm"], &refs(&e));
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["flushed"], 0);
    assert_eq!(p.checkpoint()["skill_state"]["pm_deferred_actions"].as_array().unwrap().len(), actions.len());

    // Back up: everything lands exactly once.
    gh.state.lock().unwrap().down = false;
    let (code, r) = p.cli_json_env(&["retry-pm"], &refs(&e));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["summary"], format!("flushed {} / failed 0", actions.len()));
    for sha in [&sha1, &sha2] {
        let t = gh.issues_with(&format!("deploy-created:staging:{sha}"));
        assert_eq!(t.len(), 1, "{sha}");
        let c = gh.comments_on(number(&t[0]));
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].contains("staging-verified:"), "{c:?}");
        assert!(labels(&t[0]).contains(&"Staging verified".to_owned()));
    }
    assert_eq!(p.checkpoint()["skill_state"]["pm_deferred_actions"].as_array().unwrap().len(), 0);

    // Nothing left: the MCP tool says so and writes nothing.
    let issues_before = gh.state.lock().unwrap().issues.len();
    let c = p.mcp_env(&refs(&e)).await;
    let (is_err, out) = c.call_json("deploy_retry_pm", serde_json::json!({})).await;
    assert!(!is_err, "{out:#}");
    assert_eq!(out["summary"], "flushed 0 / failed 0");
    c.close().await;
    assert_eq!(gh.state.lock().unwrap().issues.len(), issues_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_linked_tickets_get_one_rollup_and_a_403_affects_only_its_ticket() {
    let gh = FakeGitHub::start().await;
    let linked = gh.seed(60);
    let p = project_with_pm();
    let trailer = format!("Refs: {}", linked.join(", "));
    commit_with_trailers(&p, "big release", &trailer);
    let e = env(Some(&gh), None);
    assert_eq!(p.cli_json_env(&["staging"], &refs(&e)).0, 0);
    let (code, prod) = p.cli_json_env(&["prod", "--yes"], &refs(&e));
    assert_eq!(code, 0, "{prod:#}");
    let pt = gh.issues_with("deploy-created:production:").remove(0);
    let rollup: Vec<String> = gh.comments_on(number(&pt)).into_iter().filter(|c| c.contains(":rollup:")).collect();
    assert_eq!(rollup.len(), 1);
    assert!(rollup[0].contains("60 tickets") && rollup[0].contains(&linked[59]), "{}", rollup[0]);
    for l in &linked {
        let n: u64 = l.trim_start_matches('#').parse().unwrap();
        assert!(gh.comments_on(n).is_empty(), "{l} must get no comment of its own past 50");
    }

    // A smaller deploy where one linked ticket refuses comments (403).
    let few = gh.seed(3);
    let forbidden: u64 = few[1].trim_start_matches('#').parse().unwrap();
    gh.state.lock().unwrap().forbidden.push(forbidden);
    commit_with_trailers(&p, "small release", &format!("Refs: {}", few.join(", ")));
    assert_eq!(p.cli_json_env(&["staging"], &refs(&e)).0, 0);
    let (code, prod2) = p.cli_json_env(&["prod", "--yes"], &refs(&e));
    assert_eq!(code, 0, "a 403 never fails a deploy: {prod2:#}");
    assert!(notes(&prod2).contains("not retriable"), "{}", notes(&prod2));
    for l in [&few[0], &few[2]] {
        let n: u64 = l.trim_start_matches('#').parse().unwrap();
        assert_eq!(gh.comments_on(n).len(), 1, "{l} still gets its comment");
    }
    assert!(gh.comments_on(forbidden).is_empty());
    let actions = p.checkpoint()["skill_state"]["pm_deferred_actions"].as_array().unwrap().clone();
    assert_eq!(actions.len(), 1, "{actions:#?}");
    assert_eq!(actions[0]["retriable"], false);
    assert!(actions[0]["marker"].as_str().unwrap().contains("linked-shipped:"), "{actions:#?}");
    // retry-pm leaves a not-retriable action alone (a human must fix the permission).
    let (code, r) = p.cli_json_env(&["retry-pm"], &refs(&e));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!((r["flushed"].as_u64(), r["skipped_not_retriable"].as_u64()), (Some(0), Some(1)));
}

#[tokio::test(flavor = "multi_thread")]
async fn smoke_failure_blocks_the_ticket_and_production_and_rate_limits_are_waited_out() {
    let gh = FakeGitHub::start().await;
    let chat = FakeChat::start().await;
    let p = project_with_pm();
    std::fs::write(p.root.join("sample.json"), "{\"fail_in\": [\"staging\"]}\n").unwrap();
    p.git(&["commit", "-q", "-am", "breaks staging"]);
    let sha = p.git(&["rev-parse", "HEAD"]);
    // Two 429s with retry-after: 1 are waited out within the run.
    gh.state.lock().unwrap().rate_limit_next = 2;
    let e = env(Some(&gh), Some(&chat));
    let (code, st) = p.cli_json_env(&["staging"], &refs(&e));
    assert_eq!(code, 1, "{st:#}");
    assert_eq!(st["status"], "failed");
    let t = gh.issues_with(&format!("deploy-created:staging:{sha}"));
    assert_eq!(t.len(), 1, "rate limits are retried, not turned into duplicates or losses");
    let c = gh.comments_on(number(&t[0]));
    assert!(c.iter().any(|c| c.contains("smoke-fail:") && c.contains("Smoke tests failed")), "{c:?}");
    assert!(labels(&t[0]).contains(&"Blocked".to_owned()), "{}", t[0]);
    assert_eq!(p.checkpoint()["skill_state"]["pm_deferred_actions"].as_array().unwrap().len(), 0);
    assert_eq!(chat.by("telegram").len(), 1);
    assert!(chat.all_text().contains("smoke"), "{}", chat.all_text());
    let (code, prod) = p.cli_json_env(&["prod", "--yes"], &refs(&e));
    assert_ne!(code, 0);
    assert_eq!(prod["status"], "blocked", "{prod:#}");
    assert_no_secret("chat", &chat.all_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_racing_runs_for_one_commit_make_one_ticket() {
    let gh = FakeGitHub::start().await;
    let p = project_with_pm();
    let sha = p.git(&["rev-parse", "HEAD"]);
    let e = env(Some(&gh), None);
    let (a, b) = std::thread::scope(|s| {
        let h1 = s.spawn(|| p.cli_env(&["staging", "--json"], &refs(&e)));
        let h2 = s.spawn(|| p.cli_env(&["staging", "--json"], &refs(&e)));
        (h1.join().unwrap(), h2.join().unwrap())
    });
    let ok = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert!(ok >= 1, "{}\n{}", String::from_utf8_lossy(&a.stdout), String::from_utf8_lossy(&b.stdout));
    // The loser (if any) was refused by the environment lock, naming the holder.
    for o in [&a, &b].iter().filter(|o| !o.status.success()) {
        assert!(String::from_utf8_lossy(&o.stdout).contains("environment_locked"), "{}", String::from_utf8_lossy(&o.stdout));
    }
    // And the loser runs again once the winner is done: still one ticket, one comment.
    assert_eq!(p.cli_json_env(&["staging"], &refs(&e)).0, 0);
    let t = gh.issues_with(&format!("deploy-created:staging:{sha}"));
    assert_eq!(t.len(), 1);
    assert_eq!(gh.comments_on(number(&t[0])).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_staging_ticket_open_more_than_seven_days_gets_the_stale_comment_once() {
    let gh = FakeGitHub::start().await;
    let p = project_with_pm();
    let e = env(Some(&gh), None);
    assert_eq!(p.cli_json_env(&["staging"], &refs(&e)).0, 0);
    let old = gh.issues_with("deploy-created:staging:").remove(0);
    // Age the recorded ticket by eight days (as if it had been opened then).
    let path = p.root.join(".checkpoints/oc-deploy-ops.checkpoint.json");
    let mut cp = p.checkpoint();
    cp["skill_state"]["pm"]["deploy_tickets"][0]["created_at"] = Value::String("2000-01-01T00:00:00Z".into());
    std::fs::write(&path, serde_json::to_string_pretty(&cp).unwrap()).unwrap();

    for round in 0..2 {
        p.commit_change(&format!("next {round}"));
        let (code, st) = p.cli_json_env(&["staging"], &refs(&e));
        assert_eq!(code, 0, "{st:#}");
        let stale: Vec<String> = gh.comments_on(number(&old)).into_iter().filter(|c| c.contains(":stale-staging:")).collect();
        assert_eq!(stale.len(), 1, "round {round}: {stale:?}");
        assert!(stale[0].contains("Stale deploy — close manually if abandoned"), "{stale:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn linear_gets_one_ticket_states_from_pm_yaml_and_relations_to_linked_issues() {
    use oc_deploy_e2e::fake_pm::{FakeLinear, LINEAR_KEY};
    let lin = FakeLinear::start().await;
    let linked = lin.seed(2);
    let p = Project::sample();
    std::fs::write(
        p.root.join("pm.yaml"),
        PM_YAML.replace("tracker: github\ngithub: { repo: acme/shop }", "tracker: linear\nlinear: { team: ENG }"),
    )
    .unwrap();
    p.git(&["add", "pm.yaml"]);
    let sha = commit_with_trailers(&p, "feature: search", &format!("Refs: {}, {}", linked[0], linked[1].to_lowercase()));
    let e = [("LINEAR_API_KEY", LINEAR_KEY), ("LINEAR_API_URL", lin.url.as_str()), ("DATABASE_PASSWORD", DB_PASSWORD)];
    for _ in 0..2 {
        let (code, st) = p.cli_json_env(&["staging"], &e);
        assert_eq!(code, 0, "{st:#}");
    }
    let t = lin.issues_with(&format!("deploy-created:staging:{sha}"));
    assert_eq!(t.len(), 1, "one ticket across a re-run");
    let id = t[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(t[0]["state"], "st-verified", "the state named in pm.yaml, resolved to its id");
    let c = lin.comments_on(&id);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].contains(&format!("staging-verified:{}", t[0]["identifier"].as_str().unwrap())), "{c:?}");
    let f = lin.state.lock().unwrap();
    assert_eq!(f.bad_auth, 0, "the key goes raw, without Bearer");
    let related: Vec<&str> = f.relations.iter().filter(|(a, _, _)| *a == id).map(|(_, b, _)| b.as_str()).collect();
    assert_eq!(related.len(), 2, "linked issues (ENG-1 and eng-2 → ENG-2) related: {:?}", f.relations);
}
