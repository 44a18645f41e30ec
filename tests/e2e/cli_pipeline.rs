//! The whole pipeline through the CLI, on the local platform, as an operator would run it.
// Tests drive the binary under test directly; the product itself starts programs only through
// deploy_core::process (clippy.toml).
#![allow(clippy::disallowed_methods)]

use oc_deploy_e2e::{Project, get};

#[tokio::test(flavor = "multi_thread")]
async fn full_pipeline_then_a_failing_release_is_rolled_back_automatically() {
    let p = Project::sample();
    let v1 = p.head_short();

    let (code, st) = p.cli_json(&["staging"]);
    assert_eq!(code, 0, "{st:#}");
    assert_eq!(st["status"], "succeeded");
    assert_eq!(st["version"], v1.as_str());
    let (status, body, served) = get(&format!("{}/health", p.staging_url())).await;
    assert_eq!((status, served.as_deref()), (200, Some(v1.as_str())), "{body}");

    // Without a terminal and without --yes, production asks for confirmation and ships nothing.
    let (code, ask) = p.cli_json(&["prod"]);
    assert_eq!(code, 3, "{ask:#}");
    assert_eq!(ask["status"], "confirmation_required");
    let token = ask["confirmation_token"].as_str().unwrap().to_owned();
    assert_eq!(ask["plan"]["version"], v1.as_str());
    assert!(reqwest::get(p.prod_url()).await.is_err(), "nothing may listen on production yet");

    // The token ships exactly the plan it was issued for, once.
    let (code, p1) = p.cli_json(&["prod", "--confirmation", &token]);
    assert_eq!(code, 0, "{p1:#}");
    assert_eq!(p1["status"], "succeeded");
    assert_eq!(p1["confirmed_by"], "confirmation token");
    let (status, _, served) = get(&format!("{}/health", p.prod_url())).await;
    assert_eq!((status, served.as_deref()), (200, Some(v1.as_str())));
    let (code, again) = p.cli_json(&["prod", "--confirmation", &token]);
    assert_ne!(code, 0);
    assert_eq!(again["code"], "confirmation_refused", "{again:#}");

    // A release that passes staging but fails in production.
    let v2 = p.commit_failing_in_production();
    let (code, st2) = p.cli_json(&["staging"]);
    assert_eq!(code, 0, "{st2:#}");
    let (code, p2) = p.cli_json(&["prod", "--yes"]);
    assert_eq!(code, 1, "{p2:#}");
    assert_eq!(p2["status"], "rolled_back");
    assert_eq!(p2["previous_version"], v1.as_str());
    assert_eq!(p2["rollback"]["automatic"], true);
    assert_eq!(p2["rollback"]["from_version"], v2.as_str());
    let steps: Vec<&str> = p2["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    for want in ["gate", "staging-verified", "confirm", "record-previous", "deploy-api", "health", "wait", "health-recheck", "rollback"] {
        assert!(steps.contains(&want), "missing step {want} in {steps:?}");
    }
    // The stable port serves the old release again.
    let (status, body, served) = get(&format!("{}/health", p.prod_url())).await;
    assert_eq!((status, served.as_deref()), (200, Some(v1.as_str())), "{body}");

    // The checkpoint tells other skills what runs where.
    let cp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.root.join(".checkpoints/oc-deploy-ops.checkpoint.json")).unwrap()).unwrap();
    assert_eq!(cp["skill_state"]["prod_version"], v1.as_str());
    assert_eq!(cp["skill_state"]["staging_version"], v2.as_str());
    assert_eq!(cp["skill_state"]["rollback_available"], true);

    // The incident report of the rolled-back run.
    let out = p.cli(&["report", "--run-id", p2["run_id"].as_str().unwrap()]);
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("```mermaid"), "{md}");
    assert!(md.contains(&v1) && md.contains(&v2), "{md}");

    // A manual rollback needs a reason.
    let out = p.cli(&["rollback", "--reason", ""]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn production_refuses_a_commit_staging_has_not_verified() {
    let p = Project::sample();
    let (code, st) = p.cli_json(&["staging"]);
    assert_eq!(code, 0, "{st:#}");
    p.commit_change("not yet on staging");
    let (code, r) = p.cli_json(&["prod", "--yes"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["status"], "blocked");
    assert!(r["error"]["hint"].as_str().unwrap().contains("deploy_staging"), "{r:#}");
    // `direct` ships it and says so.
    let (code, r) = p.cli_json(&["prod", "--yes", "--direct"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["direct"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_with_a_wrong_field_names_it() {
    let p = Project::with_config(|c| {
        c["smoke_tests"][0]["expect_stauts"] = 200.into();
    });
    let (code, r) = p.cli_json(&["staging"]);
    assert_eq!(code, 2, "{r:#}");
    assert_eq!(r["code"], "config_invalid");
    assert!(r["message"].as_str().unwrap().contains("smoke_tests[0].expect_stauts"), "{r:#}");
    assert!(r["hint"].as_str().unwrap().contains(".oc-deploy-ops.json"));
    // Nothing was started, nothing half-written.
    assert!(!p.root.join(".checkpoints/oc-deploy-ops.checkpoint.json").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_deploys_to_one_environment_one_is_refused() {
    // A slow build keeps the first deploy holding the staging lock.
    let p = Project::with_config(|c| {
        c["local"]["build"] = serde_json::json!(["sleep", "3"]);
    });
    let a = tokio::task::spawn_blocking({
        let root = p.root.clone();
        move || {
            std::process::Command::new(oc_deploy_e2e::bin())
                .args(["staging", "--json", "--project-dir"])
                .arg(root)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (code_b, b) = p.cli_json(&["staging"]);
    let a = a.await.unwrap();
    let a: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(a["status"], "succeeded", "{a:#}");
    assert_eq!(code_b, 1, "{b:#}");
    assert_eq!(b["code"], "environment_locked", "{b:#}");
    assert!(b["message"].as_str().unwrap().contains(a["run_id"].as_str().unwrap()), "the refusal names the holder: {b:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn local_status_and_down() {
    let p = Project::sample();
    let (code, _) = p.cli_json(&["staging"]);
    assert_eq!(code, 0);
    let (code, s) = p.cli_json(&["local", "status"]);
    assert_eq!(code, 0, "{s:#}");
    assert!(s.to_string().contains(&p.head_short()), "{s:#}");
    let (code, _) = p.cli_json(&["local", "down"]);
    assert_eq!(code, 0);
    assert!(reqwest::get(p.staging_url()).await.is_err(), "staging still answers after down");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_a_cli_deploy_at_a_safe_point() {
    let p = Project::with_config(|c| {
        c["local"]["build"] = serde_json::json!(["sleep", "30"]);
    });
    let child = std::process::Command::new(oc_deploy_e2e::bin())
        .args(["staging", "--json", "--project-dir"])
        .arg(&p.root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let building = |root: &std::path::Path| {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline")).unwrap_or_default() == b"sleep\x0030\x00"
                && std::fs::read_link(e.path().join("cwd")).unwrap_or_default().starts_with(root)
        })
    };
    for _ in 0..100 {
        if building(&p.root) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(building(&p.root), "the build never started");
    // Ctrl-C is SIGINT to the CLI.
    std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let r: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(r["status"], "cancelled", "{r:#}");
    assert_eq!(out.status.code(), Some(1));
    assert!(!building(&p.root), "the build survived Ctrl-C");
    let (_, s) = p.cli_json(&["status", "--env", "staging"]);
    assert!(s["environments"][0]["locked_by"].is_null(), "{s:#}");
}

/// The README's first command: the demo runs the whole pipeline, including the rollback, and
/// cleans up after itself.
#[test]
fn the_demo_runs_the_pipeline_and_rolls_back() {
    let out = std::process::Command::new(oc_deploy_e2e::bin()).arg("demo").stdin(std::process::Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for want in ["rolled_back", "back on", "Incident Report", "stopped every release"] {
        assert!(text.contains(want), "missing {want:?} in the demo's output:\n{text}");
    }
}

/// `oc-deploy env` on the local platform: the value comes from the environment, lands in the
/// environment's secrets file (mode 600) and never in any output; bad input names the field.
#[test]
fn env_sets_lists_and_unsets_a_secret_without_showing_it() {
    use std::os::unix::fs::PermissionsExt;
    const VALUE: &str = "local-e2e-secret-9d2f";
    let p = oc_deploy_e2e::Project::sample();
    let env = [("E2E_PLAIN_VALUE", VALUE)];
    let (code, set) =
        p.cli_json_env(&["env", "set", "--env", "staging", "--name", "API_TOKEN", "--value-from", "env:E2E_PLAIN_VALUE"], &env);
    assert_eq!(code, 0, "{set:#}");
    assert_eq!(set["name"], "API_TOKEN");
    let file = p.root.join(".oc-deploy/local/staging.env");
    assert!(std::fs::read_to_string(&file).unwrap().contains(VALUE));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let (code, list) = p.cli_json_env(&["env", "list", "--env", "staging"], &env);
    assert_eq!(code, 0, "{list:#}");
    assert!(list["vars"].as_array().unwrap().iter().any(|v| v["name"] == "API_TOKEN" && v["secret"] == true), "{list:#}");
    for out in [&set, &list] {
        assert!(!out.to_string().contains(VALUE), "{out:#}");
    }
    // A value in place of value_from is refused, naming the field and the fix.
    let (code, bad) = p.cli_json_env(&["env", "set", "--env", "staging", "--name", "X", "--value-from", VALUE], &env);
    assert_ne!(code, 0);
    assert_eq!(bad["code"], "invalid_input", "{bad:#}");
    assert!(bad.to_string().contains("value_from") && !bad.to_string().contains(VALUE), "{bad:#}");
    // Production needs a human: without a terminal or --yes, a plan and a token, nothing written.
    let prod_args = ["env", "set", "--env", "production", "--name", "API_TOKEN", "--value-from", "env:E2E_PLAIN_VALUE"];
    let (code, ask) = p.cli_json_env(&prod_args, &env);
    assert_eq!(code, 3, "{ask:#}");
    assert_eq!(ask["status"], "confirmation_required", "{ask:#}");
    assert!(!p.root.join(".oc-deploy/local/production.env").exists());
    let mut yes = prod_args.to_vec();
    yes.push("--yes");
    let (code, done) = p.cli_json_env(&yes, &env);
    assert_eq!(code, 0, "{done:#}");
    assert_eq!(done["confirmed_by"], "auto-approve (operator flag)");
    assert!(std::fs::read_to_string(p.root.join(".oc-deploy/local/production.env")).unwrap().contains(VALUE));
    let (code, unset) = p.cli_json_env(&["env", "unset", "--env", "staging", "--name", "API_TOKEN"], &env);
    assert_eq!(code, 0, "{unset:#}");
    assert!(!std::fs::read_to_string(&file).unwrap().contains(VALUE));
}
