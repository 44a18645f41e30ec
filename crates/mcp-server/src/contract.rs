//! The tool contract, snapshotted: every tool's input and output schema lives in
//! `schemas/tools/` and a test fails when the code drifts from it (`UPDATE_SCHEMAS=1` rewrites).
//! The other tests hold every tool to what agents rely on: a title, all four annotations, an
//! input schema whose root is a plain object, and a `tools/list` small enough to keep in context.

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::server::{OcDeploy, ServerOptions, Shared};

    fn server(read_only: bool, toolsets: &[&str]) -> OcDeploy {
        OcDeploy::new(Shared::new(ServerOptions {
            root: std::env::temp_dir(),
            exe: PathBuf::from("oc-deploy"),
            auto_approve: false,
            read_only,
            toolsets: toolsets.iter().map(|s| s.to_string()).collect(),
            root_from_flag: true,
            heartbeat: None,
        }))
    }

    fn tools() -> Vec<rmcp::model::Tool> {
        let mut t = server(false, &[]).tool_router.list_all();
        t.sort_by(|a, b| a.name.cmp(&b.name));
        t
    }

    fn schemas_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/tools")
    }

    #[test]
    fn tool_schemas_match_the_snapshots() {
        let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
        let mut drifted = Vec::new();
        for t in tools() {
            let v = serde_json::json!({ "name": t.name, "inputSchema": t.input_schema, "outputSchema": t.output_schema });
            let text = serde_json::to_string_pretty(&v).unwrap() + "\n";
            let path = schemas_dir().join(format!("{}.json", t.name));
            if update {
                std::fs::create_dir_all(schemas_dir()).unwrap();
                std::fs::write(&path, &text).unwrap();
            } else if std::fs::read_to_string(&path).unwrap_or_default() != text {
                drifted.push(t.name.to_string());
            }
        }
        assert!(
            drifted.is_empty(),
            "tool schemas drifted: {drifted:?}; run `UPDATE_SCHEMAS=1 cargo test -p oc-deploy contract` and review the diff"
        );
    }

    #[test]
    fn every_tool_has_a_title_four_annotations_and_a_plain_object_input() {
        for t in tools() {
            let name = t.name.to_string();
            assert!(t.title.as_deref().is_some_and(|s| !s.is_empty()), "{name}: no title");
            let a = t.annotations.as_ref().unwrap_or_else(|| panic!("{name}: no annotations"));
            assert!(a.read_only_hint.is_some(), "{name}: readOnlyHint");
            assert!(a.destructive_hint.is_some(), "{name}: destructiveHint");
            assert!(a.idempotent_hint.is_some(), "{name}: idempotentHint");
            assert!(a.open_world_hint.is_some(), "{name}: openWorldHint");
            let input = &t.input_schema;
            assert_eq!(input.get("type"), Some(&serde_json::json!("object")), "{name}: input root must be an object");
            for k in ["anyOf", "oneOf", "allOf", "not"] {
                assert!(!input.contains_key(k), "{name}: top-level {k} in the input schema");
            }
            let out = t.output_schema.as_ref().unwrap_or_else(|| panic!("{name}: no outputSchema"));
            assert_eq!(out.get("type"), Some(&serde_json::json!("object")), "{name}: output root must be an object");
            assert!(t.description.as_ref().is_some_and(|d| d.len() <= 300), "{name}: keep the description short");
            // Boolean `true` schemas trip strict validators (the conformance suite among them).
            assert!(!serde_json::to_string(&t.output_schema).unwrap().contains(":true}"), "{name}: a boolean schema in outputSchema");
        }
    }

    #[test]
    #[allow(clippy::print_stderr)]
    fn tools_list_stays_small() {
        let v = serde_json::json!({ "tools": tools() });
        let size = serde_json::to_string(&v).unwrap().len();
        eprintln!("tools/list: {} tools, {size} bytes of JSON (~{} tokens)", tools().len(), size / 4);
        assert!(size < 24 * 1024, "tools/list is {size} bytes; keep it under 24 KB");
    }

    #[test]
    fn read_only_lists_only_tools_that_change_nothing() {
        let ro: Vec<rmcp::model::Tool> = server(true, &[]).tool_router.list_all();
        assert!(!ro.is_empty());
        for t in &ro {
            assert_eq!(t.annotations.as_ref().and_then(|a| a.read_only_hint), Some(true), "{} is listed in --read-only", t.name);
        }
        let all = tools();
        for t in all.iter().filter(|t| t.annotations.as_ref().and_then(|a| a.read_only_hint) == Some(true)) {
            assert!(ro.iter().any(|r| r.name == t.name), "{} is read-only but missing from --read-only", t.name);
        }
    }

    #[test]
    fn toolsets_narrow_the_list() {
        let names: Vec<String> = server(false, &["records"]).tool_router.list_all().into_iter().map(|t| t.name.to_string()).collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, ["deploy_checkpoint", "deploy_report", "deploy_retry_pm", "deploy_status"]);
    }
}
