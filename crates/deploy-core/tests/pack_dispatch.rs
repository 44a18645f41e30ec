//! Pack-aware dispatch as the skill's v1.4 section states it, from files on disk: a project, its
//! oc-stack-forge checkpoint (`activePack`) and `packs/<id>/pack.yml`, through the resolver and
//! the init path (`detect_for_init` → `propose_config`).

use std::path::{Path, PathBuf};

use deploy_core::CoreError;
use deploy_core::config::Platform;
use deploy_core::detect::{self, Language};
use deploy_core::pack::{self, DispatchRule, Resolution};

/// A project directory `shop` with these files.
fn project(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shop");
    std::fs::create_dir_all(&root).unwrap();
    for (name, body) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
    }
    (dir, root)
}

const PYTHON_DEPLOY_PACK: &str = "\
id: python
# PR 7: the deploy-target packs have landed.
defaultPlatform: render
supportedPlatforms: [render, fly-io]
";

const PENDING_PACK: &str = "defaultPlatform: null\nsupportedPlatforms: []\n";

fn active(pack: &str) -> (&'static str, String) {
    (".checkpoints/oc-stack-forge.checkpoint.json", format!(r#"{{"updated_at": "2026-04-01T10:00:00Z", "activePack": "{pack}"}}"#))
}

#[track_caller]
fn resolve(root: &Path, pack: Option<&str>, requested: Option<Platform>, language: Option<Language>) -> Resolution {
    pack::resolve_platform(root, pack, requested, language).unwrap_or_else(|e| panic!("{e} (hint: {})", e.hint()))
}

#[test]
fn pack_hit_with_platforms_dispatches_to_the_default() {
    let (_dir, root) = project(&[("packs/python/pack.yml", PYTHON_DEPLOY_PACK), ("manage.py", "")]);
    let r = resolve(&root, Some("python"), None, Some(Language::Python));
    assert_eq!((r.platform, r.rule), (Some(Platform::Render), DispatchRule::PackDefault));
    assert_eq!(r.supported_platforms, ["render", "fly-io"]);
    assert_eq!(r.pack.as_deref(), Some("python"));
    assert_eq!(r.pack_from.as_deref(), Some("argument"));
    assert!(r.pack_file.as_deref().unwrap().ends_with("packs/python/pack.yml"), "{r:?}");
    assert!(r.detail.contains("render (its defaultPlatform; supported: render, fly-io)"), "{}", r.detail);

    // The pack wins over the Platform Matrix: a Go project on a pack defaulting to render.
    let r = resolve(&root, Some("python"), None, Some(Language::Go));
    assert_eq!(r.platform, Some(Platform::Render));

    // An override inside supportedPlatforms is honoured.
    let r = resolve(&root, Some("python"), Some(Platform::FlyIo), None);
    assert_eq!((r.platform, r.rule), (Some(Platform::FlyIo), DispatchRule::PackOverride));
}

#[test]
fn platform_outside_supported_platforms_is_refused_naming_the_allowed_ones() {
    let (_dir, root) = project(&[("packs/python/pack.yml", PYTHON_DEPLOY_PACK)]);
    let err = pack::resolve_platform(&root, Some("python"), Some(Platform::Heroku), None).unwrap_err();
    assert!(matches!(err, CoreError::InvalidInput { .. }), "{err:?}");
    assert_eq!(err.to_string(), "invalid input `platform`: `heroku` is not in the supportedPlatforms of pack `python`: render, fly-io");
    assert_eq!(err.hint(), "choose one of render, fly-io, or leave the platform out for the pack's default (render)");

    // The init path refuses it too, before anything is proposed.
    let err = detect::detect_for_init(&root, Some("python"), Some(Platform::Shuttle)).unwrap_err();
    assert!(err.to_string().contains("`shuttle` is not in the supportedPlatforms of pack `python`: render, fly-io"), "{err}");
}

#[test]
fn pack_with_empty_platforms_falls_back_by_language() {
    let cases: &[(&str, &str, Language, Platform)] = &[
        ("python", "manage.py", Language::Python, Platform::Render),
        ("ruby", "Gemfile", Language::Ruby, Platform::Heroku),
        ("go", "go.mod", Language::Go, Platform::FlyIo),
        ("rust", "Cargo.toml", Language::Rust, Platform::Shuttle),
        ("typescript", "tsconfig.json", Language::TypeScript, Platform::CloudflareWorkers),
        ("javascript", "package.json", Language::JavaScript, Platform::CloudflareWorkers),
    ];
    for &(id, marker, language, want) in cases {
        let pack_file = format!("packs/{id}/pack.yml");
        let cp = active(id);
        let (_dir, root) = project(&[(&pack_file, PENDING_PACK), (marker, "{}"), (cp.0, &cp.1)]);

        // The resolver, with the language the files give.
        let r = resolve(&root, None, None, Some(language));
        assert_eq!((r.platform, r.rule), (Some(want), DispatchRule::LanguageFallback), "{id}: {r:?}");
        assert!(r.detail.contains(&format!("{} (the project's language) → {}", language.as_str(), want.as_str())), "{}", r.detail);

        // The init path: detection and the proposed config follow the pack.
        let d = detect::detect_for_init(&root, None, None).unwrap();
        assert_eq!((d.platform, d.language), (want, Some(language)), "{id}: {:?}", d.evidence);
        assert_eq!(d.dispatch.as_ref().unwrap().rule, DispatchRule::LanguageFallback);
        assert!(d.evidence.iter().any(|e| e.starts_with(&format!("pack `{id}` (activePack in .checkpoints/"))), "{:?}", d.evidence);
        let cfg = detect::propose_config(&root, &d, None);
        assert_eq!(cfg.platform, want, "{id}");
    }

    // The skill's worked example: a Python project with nothing but the pack's hint.
    let (_dir, root) = project(&[("packs/python/pack.yml", PENDING_PACK)]);
    let r = resolve(&root, Some("python"), None, None);
    assert_eq!((r.platform, r.rule), (Some(Platform::Render), DispatchRule::LanguageFallback));
    assert!(r.detail.contains("python (the pack's id) → render"), "{}", r.detail);

    // With no platforms to constrain it, a request is taken as it is.
    let r = resolve(&root, Some("python"), Some(Platform::Heroku), Some(Language::Python));
    assert_eq!((r.platform, r.rule), (Some(Platform::Heroku), DispatchRule::Requested));

    // A pack with no platforms on a project of no known language leaves it to the files.
    let (_dir, root) = project(&[("packs/misc/pack.yml", PENDING_PACK), ("fly.toml", "")]);
    let r = resolve(&root, Some("misc"), None, None);
    assert_eq!((r.platform, r.rule), (None, DispatchRule::ProjectFiles));
    assert_eq!(detect::detect_for_init(&root, Some("misc"), None).unwrap().platform, Platform::FlyIo);
}

#[test]
fn pack_miss_is_exactly_unknown_pack() {
    let (_dir, root) = project(&[("packs/python/pack.yml", PYTHON_DEPLOY_PACK)]);
    let err = pack::resolve_platform(&root, Some("nope"), None, None).unwrap_err();
    assert_eq!(err.to_string(), "unknown pack: nope");
    assert_eq!(err.code(), "not_found");
    assert!(err.hint().contains("activePack"), "{}", err.hint());
    assert_eq!(pack::dispatch_target(&root, "nope").unwrap(), None);
    // No fuzzy matching: a near miss is a miss.
    assert_eq!(pack::resolve_platform(&root, Some("pythn"), None, None).unwrap_err().to_string(), "unknown pack: pythn");
    assert_eq!(pack::resolve_platform(&root, Some("Python"), None, None).unwrap_err().to_string(), "unknown pack: Python");

    // From the checkpoint as well; the strict init path fails, plain detection notes it.
    let cp = active("nope");
    let (_dir, root) = project(&[(cp.0, &cp.1), ("fly.toml", "")]);
    assert_eq!(detect::detect_for_init(&root, None, None).unwrap_err().to_string(), "unknown pack: nope");
    let d = detect::detect(&root);
    assert_eq!(d.platform, Platform::FlyIo);
    assert!(d.evidence.iter().any(|e| e.starts_with("pack dispatch skipped: unknown pack: nope")), "{:?}", d.evidence);
}

#[test]
fn active_pack_comes_from_the_stack_forge_checkpoint() {
    // Under skill_state, in the skill directory checked into the project.
    let (_dir, root) = project(&[
        (".checkpoints/oc-stack-forge.checkpoint.json", r#"{"skill_state": {"activePack": "python"}}"#),
        ("skills/oc-stack-forge/packs/python/pack.yml", PYTHON_DEPLOY_PACK),
        ("fly.toml", "app = \"shop\""),
    ]);
    let r = resolve(&root, None, None, None);
    assert_eq!((r.platform, r.rule), (Some(Platform::Render), DispatchRule::PackDefault));
    assert_eq!(r.pack_from.as_deref(), Some(".checkpoints/oc-stack-forge.checkpoint.json"));

    // Plain detection applies it too, and says the files wanted something else.
    let d = detect::detect(&root);
    assert_eq!(d.platform, Platform::Render);
    assert!(d.evidence.iter().any(|e| e.contains("the project's files say fly-io, but the pack decides render")), "{:?}", d.evidence);
    assert_eq!(detect::propose_config(&root, &d, None).platform, Platform::Render);

    // An explicit pack argument wins over the checkpoint.
    let r = resolve(&root, Some("python"), Some(Platform::FlyIo), None);
    assert_eq!(r.pack_from.as_deref(), Some("argument"));

    // No checkpoint: nothing to dispatch on; the files decide and a request is taken as is.
    let (_dir, root) = project(&[("fly.toml", "")]);
    let r = resolve(&root, None, None, Some(Language::Go));
    assert_eq!((r.platform, r.rule, r.pack), (None, DispatchRule::ProjectFiles, None));
    let r = resolve(&root, None, Some(Platform::Heroku), None);
    assert_eq!((r.platform, r.rule), (Some(Platform::Heroku), DispatchRule::Requested));
    let d = detect::detect_for_init(&root, None, Some(Platform::Heroku)).unwrap();
    assert_eq!(detect::propose_config(&root, &d, Some(Platform::Heroku)).platform, Platform::Heroku);

    // A broken checkpoint is another skill's file: noted, not fatal.
    let (_dir, root) = project(&[(".checkpoints/oc-stack-forge.checkpoint.json", "{ broken")]);
    let r = resolve(&root, None, None, None);
    assert_eq!(r.rule, DispatchRule::ProjectFiles);
    assert!(r.detail.contains("is not valid JSON") && r.detail.contains("pack dispatch skipped"), "{}", r.detail);
}

#[test]
fn a_pack_default_oc_deploy_does_not_know_is_an_error_naming_it() {
    let (_dir, root) = project(&[("packs/edge/pack.yml", "defaultPlatform: vercel\nsupportedPlatforms:\n  - vercel\n  - render\n")]);
    let err = pack::resolve_platform(&root, Some("edge"), None, None).unwrap_err();
    assert!(err.to_string().contains("`vercel` is not a platform oc-deploy deploys to"), "{err}");
    // The supported platform it does know can still be requested.
    let r = resolve(&root, Some("edge"), Some(Platform::Render), None);
    assert_eq!((r.platform, r.rule), (Some(Platform::Render), DispatchRule::PackOverride));

    // No defaultPlatform, a list: its first entry.
    let (_dir, root) = project(&[("packs/go/pack.yml", "supportedPlatforms: [fly-io, shuttle]\n")]);
    let r = resolve(&root, Some("go"), None, None);
    assert_eq!((r.platform, r.rule), (Some(Platform::FlyIo), DispatchRule::PackDefault));
}
