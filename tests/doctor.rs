//! `hopstage doctor`, completions and the man page.

use crate::util::{text, TestEnv};

#[test]
fn doctor_passes_on_a_good_configuration() {
    let env = TestEnv::new();
    let out = env.run(&[
        "doctor",
        &env.remote(""),
        "--dest",
        env.dir.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<_> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    for n in [
        "config",
        "credentials",
        "container",
        "clock",
        "lustre",
        "space",
        "open files",
        "slurm",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing: {v}");
    }
}

#[test]
fn doctor_names_the_problem_and_the_fix_without_secrets() {
    let env = TestEnv::new();
    let wrong = "d3JvbmdrZXl3cm9uZ2tleXdyb25na2V5d3Jvbmdr";
    let out = env
        .cmd()
        .env(
            "AZURE_STORAGE_CONNECTION_STRING",
            format!("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={wrong};BlobEndpoint={};", env.azurite.endpoint()),
        )
        .args(["doctor", &env.remote("")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("FAIL container") && t.contains("access denied") && t.contains("fix:"),
        "{t}"
    );
    assert!(!t.contains(wrong), "{t}");
    // A config file holding a key but readable by others is a failed check.
    let cfg = env.path("config.toml");
    std::fs::write(
        &cfg,
        format!("account = \"devstoreaccount1\"\nkey = \"{wrong}\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env
        .cmd()
        .env("HOPSTAGE_CONFIG", &cfg)
        .args(["doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("chmod 600"), "{}", text(&out));
    assert!(!text(&out).contains(wrong));
}

#[test]
fn completions_and_man_page_come_from_the_cli_definitions() {
    let env = TestEnv::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0));
        let t = String::from_utf8_lossy(&out.stdout);
        assert!(t.contains("pull") && t.contains("stripe"), "{shell}: {t}");
    }
    let out = env.run(&["man"]);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.contains(".TH hopstage") && t.contains("pull"), "{t}");
}
