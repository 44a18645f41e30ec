//! The public file formats are contracts: their JSON Schemas, generated from the Rust types,
//! live in `schemas/` and this test fails when they drift. `UPDATE_SCHEMAS=1` rewrites them.

use std::path::PathBuf;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

#[track_caller]
fn check(name: &str, schema: serde_json::Value) {
    let path = schemas_dir().join(name);
    let mut want = serde_json::to_string_pretty(&schema).unwrap();
    want.push('\n');
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(schemas_dir()).unwrap();
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} drifted from the Rust types; run `UPDATE_SCHEMAS=1 cargo test -p deploy-core --test schemas` and review the diff",
        path.display()
    );
}

#[test]
fn config_schema_is_current() {
    check("oc-deploy-ops.config.schema.json", deploy_core::config::config_schema());
}

#[test]
fn checkpoint_schema_is_current() {
    check("oc-deploy-ops.checkpoint.schema.json", deploy_core::store::checkpoint_schema());
}

#[test]
fn config_schema_refuses_unknown_fields() {
    let s = deploy_core::config::config_schema();
    assert_eq!(s["additionalProperties"], false, "editors should flag typos too");
}
