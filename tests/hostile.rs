//! Hostile and odd blob names and destinations: nothing is ever written
//! outside the destination, and every refusal is reported.

use crate::util::{text, TestEnv};

#[test]
fn escaping_blob_names_are_refused_and_reported() {
    let env = TestEnv::new();
    let one = env.path("one");
    std::fs::write(&one, b"x").unwrap();
    let hostile = [
        "h/../escape",
        "h/a/../../../outside",
        "h/./dot",
        "h//double",
        "h/x\\..\\y",
    ];
    let fine = [
        "h/sp ace %25 #hash ?q",
        "h/Case",
        "h/case",
        "h/e\u{301}",
        "h/\u{e9}",
        "h/ok",
    ];
    for name in hostile.iter().chain(fine.iter()) {
        let s = env.run_json(&["push", one.to_str().unwrap(), &env.remote(name)], 0);
        assert_eq!(s["files_transferred"], 1, "{name}: {s}");
    }
    let long = format!("h/{}", "n".repeat(300));
    env.run_json(&["push", one.to_str().unwrap(), &env.remote(&long)], 0);

    let jail = env.path("jail");
    let dst = jail.join("dst");
    let out = env.run(&["pull", &env.remote("h"), dst.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["files_transferred"], fine.len(), "{s}");
    // "h/trail/" names a directory on push, so it holds "one".
    env.run_json(&["push", one.to_str().unwrap(), &env.remote("h/trail/")], 0);
    let out = env.run(&["pull", &env.remote("h"), dst.to_str().unwrap(), "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["files_transferred"], 1, "only trail/one is new: {s}");
    assert!(dst.join("trail/one").is_file());
    assert_eq!(s["files_skipped"], fine.len(), "{s}");
    // Azurite turns the backslashes into '/', so that name carries '..' too.
    assert_eq!(s["files_failed"], hostile.len() + 1, "{s}");
    for e in s["errors"].as_array().unwrap() {
        assert!(e["message"].as_str().unwrap().starts_with("refused"), "{e}");
    }
    // Nothing outside dst: jail holds only dst, and the test dir holds nothing new.
    let in_jail: Vec<_> = std::fs::read_dir(&jail)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(in_jail, vec![std::ffi::OsString::from("dst")]);
    assert!(!env.path("escape").exists() && !env.path("outside").exists());
    for name in fine {
        assert!(
            dst.join(name.strip_prefix("h/").unwrap()).is_file(),
            "{name}"
        );
    }
}

#[test]
fn planted_symlink_in_destination_is_not_followed() {
    let env = TestEnv::new();
    let one = env.path("one");
    std::fs::write(&one, b"payload").unwrap();
    env.run_json(&["push", one.to_str().unwrap(), &env.remote("p/evil/x")], 0);
    env.run_json(&["push", one.to_str().unwrap(), &env.remote("p/link")], 0);
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let dst = env.path("dst");
    std::fs::create_dir_all(&dst).unwrap();
    std::os::unix::fs::symlink(&outside, dst.join("evil")).unwrap();
    std::os::unix::fs::symlink(outside.join("target"), dst.join("link")).unwrap();
    let out = env.run(&["pull", &env.remote("p"), dst.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote through a symlink"
    );
    assert!(text(&out).contains("symbolic link"), "{}", text(&out));
}

#[test]
fn blob_and_directory_with_the_same_name() {
    let env = TestEnv::new();
    let one = env.path("one");
    std::fs::write(&one, b"x").unwrap();
    env.run_json(&["push", one.to_str().unwrap(), &env.remote("p/dup")], 0);
    env.run_json(
        &["push", one.to_str().unwrap(), &env.remote("p/dup/child")],
        0,
    );
    let dst = env.path("dst");
    let out = env.run(&["pull", &env.remote("p"), dst.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["files_transferred"], 1, "{s}");
    assert_eq!(s["files_failed"], 1, "{s}");
}

#[test]
fn hostile_local_trees_are_reported_not_fatal() {
    let env = TestEnv::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("loop/inner")).unwrap();
    std::fs::write(src.join("loop/inner/f"), b"in the loop").unwrap();
    std::os::unix::fs::symlink("..", src.join("loop/inner/back")).unwrap();
    std::fs::write(src.join("ok.txt"), b"fine").unwrap();
    let locked = src.join("unreadable.txt");
    std::fs::write(&locked, b"secret").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads anything; drop to nobody for the unreadable file to be unreadable.
    let as_nobody = running_as_root();
    let mut cmd = env.cmd();
    cmd.args([
        "push",
        src.to_str().unwrap(),
        &env.remote("p"),
        "--json",
        "--follow-symlinks",
    ]);
    if as_nobody {
        use std::os::unix::process::CommandExt;
        // The build tree may sit in a directory nobody cannot enter (a CI
        // clone under a 0700 temp dir): run a copy of the binary from here.
        let bin = env.path("hopstage-bin");
        std::fs::copy(env!("CARGO_BIN_EXE_hopstage"), &bin).unwrap();
        make_world_traversable(env.dir.path());
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
            .collect();
        let args: Vec<std::ffi::OsString> = cmd.get_args().map(|a| a.to_owned()).collect();
        cmd = std::process::Command::new(&bin);
        for (k, v) in envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.args(args)
            .current_dir(env.dir.path())
            .uid(65534)
            .gid(65534);
    }
    let out = cmd.output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let errors = s["errors"].to_string();
    assert!(errors.contains("loop"), "the symlink loop is reported: {s}");
    if as_nobody {
        assert!(
            errors.contains("unreadable.txt"),
            "the unreadable file is reported: {s}"
        );
    }
    let ls = env.run(&["ls", "-R", &env.remote("p")]);
    let listing = String::from_utf8_lossy(&ls.stdout);
    assert!(
        listing.contains("ok.txt") && listing.contains("loop/inner/f"),
        "{listing}"
    );
}

/// True when the tests run as root (CI does), so a child can be run as nobody.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn make_world_traversable(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    for e in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == "unreadable.txt") {
            continue;
        }
        let mode = if e.file_type().is_dir() { 0o777 } else { 0o644 };
        if !e.path_is_symlink() {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode));
        }
    }
}
