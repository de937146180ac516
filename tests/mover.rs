//! The mover's interface against a real Azurite: pull, push, ls, skip rules,
//! filters, dry runs, exit codes and error messages.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::util::{assert_same_tree, bytes, text, write, TestEnv};

fn tree(env: &TestEnv) -> std::path::PathBuf {
    let src = env.path("src");
    write(&src, "a.txt", b"hello");
    write(&src, "zero", b"");
    write(&src, "d1/big.bin", &bytes(3 * 1024 * 1024 + 17, 1));
    write(&src, "d1/d2/small", &bytes(1000, 2));
    write(&src, "a b/%#?.txt", b"odd name");
    write(&src, "unicode/名前.dat", b"u");
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::set_permissions(src.join("a.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    src
}

#[test]
fn push_then_pull_round_trips_bytes_modes_and_mtimes() {
    let env = TestEnv::new();
    let src = tree(&env);
    let s = env.run_json(
        &[
            "push",
            src.to_str().unwrap(),
            &env.remote("proj"),
            "--block-size",
            "1MiB",
        ],
        0,
    );
    assert_eq!(s["files_failed"], 0);
    // 6 files + 6 directory stubs (a b, d1, d1/d2, empty, unicode).
    assert_eq!(
        s["bytes_transferred"],
        5 + 3 * 1024 * 1024 + 17 + 1000 + 8 + 1
    );
    let dst = env.path("dst");
    let s = env.run_json(
        &[
            "pull",
            &env.remote("proj"),
            dst.to_str().unwrap(),
            "--block-size",
            "1MiB",
        ],
        0,
    );
    assert_eq!(s["files_transferred"], 6);
    assert_eq!(s["files_failed"], 0);
    assert_same_tree(&src, &dst);
    assert!(
        dst.join("empty").is_dir(),
        "empty directory restored from its stub"
    );
    let m = std::fs::metadata(dst.join("a.txt")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o640);
    let orig = std::fs::metadata(src.join("d1/big.bin")).unwrap();
    let back = std::fs::metadata(dst.join("d1/big.bin")).unwrap();
    assert_eq!(orig.mtime(), back.mtime());
    // No temporary file is left behind.
    let leftovers: Vec<_> = walkdir::WalkDir::new(&dst)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".hopstage-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn second_run_skips_and_changes_are_sent() {
    let env = TestEnv::new();
    let src = tree(&env);
    let r = env.remote("p");
    env.run_json(&["push", src.to_str().unwrap(), &r], 0);
    let s = env.run_json(&["push", src.to_str().unwrap(), &r], 0);
    assert_eq!(s["files_transferred"], 0, "{s}");
    assert_eq!(s["files_skipped"], 6, "{s}");
    write(&src, "d1/d2/small", b"changed");
    let s = env.run_json(&["push", src.to_str().unwrap(), &r], 0);
    assert_eq!(s["files_transferred"], 1, "{s}");
    // Pull side: same rules.
    let dst = env.path("dst");
    env.run_json(&["pull", &r, dst.to_str().unwrap()], 0);
    let s = env.run_json(&["pull", &r, dst.to_str().unwrap()], 0);
    assert_eq!(s["files_transferred"], 0, "{s}");
    // Same size, same mtime, different content: only --checksum notices.
    let f = dst.join("a.txt");
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    std::fs::write(&f, b"HELLO").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let s = env.run_json(&["pull", &r, dst.to_str().unwrap()], 0);
    assert_eq!(s["files_transferred"], 0, "{s}");
    let s = env.run_json(&["pull", &r, dst.to_str().unwrap(), "--checksum"], 0);
    assert_eq!(s["files_transferred"], 1, "{s}");
    assert_eq!(std::fs::read(&f).unwrap(), b"hello");
    let s = env.run_json(
        &["pull", &r, dst.to_str().unwrap(), "--overwrite", "always"],
        0,
    );
    assert_eq!(s["files_transferred"], 6, "{s}");
    std::fs::write(&f, b"local edit, longer").unwrap();
    let s = env.run_json(
        &["pull", &r, dst.to_str().unwrap(), "--overwrite", "never"],
        0,
    );
    assert_eq!(s["files_transferred"], 0, "{s}");
    assert_eq!(std::fs::read(&f).unwrap(), b"local edit, longer");
}

#[test]
fn single_blob_and_single_file() {
    let env = TestEnv::new();
    let f = env.path("one.dat");
    std::fs::write(&f, bytes(5000, 3)).unwrap();
    env.run_json(
        &["push", f.to_str().unwrap(), &env.remote("x/renamed.dat")],
        0,
    );
    env.run_json(&["push", f.to_str().unwrap(), &env.remote("dir/")], 0);
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    env.run_json(
        &["pull", &env.remote("x/renamed.dat"), out.to_str().unwrap()],
        0,
    );
    assert_eq!(
        std::fs::read(out.join("renamed.dat")).unwrap(),
        bytes(5000, 3)
    );
    let target = env.path("elsewhere/file.bin");
    env.run_json(
        &["pull", &env.remote("dir/one.dat"), target.to_str().unwrap()],
        0,
    );
    assert_eq!(std::fs::read(&target).unwrap(), bytes(5000, 3));
    // A relative destination that does not exist yet is made in the working
    // directory (not below the file system root).
    let rel = format!("rel-{}/out/", env.container);
    let o = env
        .cmd()
        .current_dir(env.dir.path())
        .args(["pull", "-q", &env.remote("x/renamed.dat"), &rel])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        std::fs::read(env.dir.path().join(&rel).join("renamed.dat")).unwrap(),
        bytes(5000, 3)
    );
    assert!(!Path::new("/").join(&rel).exists());
}

#[test]
fn include_exclude_and_dry_run() {
    let env = TestEnv::new();
    let src = tree(&env);
    let r = env.remote("p");
    let out = env.run(&["push", src.to_str().unwrap(), &r, "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("a.txt"),
        "{}",
        text(&out)
    );
    let ls = env.run(&["ls", &r]);
    assert_ne!(
        ls.status.code(),
        Some(0),
        "dry run must not upload: {}",
        text(&ls)
    );
    let s = env.run_json(
        &[
            "push",
            src.to_str().unwrap(),
            &r,
            "--include",
            "*.txt",
            "--no-dir-stubs",
        ],
        0,
    );
    assert_eq!(s["files_transferred"], 2, "{s}");
    env.run_json(&["push", src.to_str().unwrap(), &r], 0);
    let dst = env.path("dst");
    let s = env.run_json(
        &["pull", &r, dst.to_str().unwrap(), "--exclude", "d1/**"],
        0,
    );
    assert_eq!(s["files_transferred"], 4, "{s}");
    assert!(!dst.join("d1/big.bin").exists());
}

#[test]
fn ls_shows_sizes_metadata_and_levels() {
    let env = TestEnv::new();
    let src = tree(&env);
    env.run_json(&["push", src.to_str().unwrap(), &env.remote("p")], 0);
    let out = env.run(&["ls", &env.remote("p")]);
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        t.contains("a.txt") && t.contains("d1/") && !t.contains("big.bin"),
        "{t}"
    );
    let out = env.run(&["ls", "-l", "-R", &env.remote("p")]);
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(t.contains("d1/big.bin") && t.contains("0640"), "{t}");
    assert!(t.contains(&(3 * 1024 * 1024 + 17).to_string()), "{t}");
}

#[test]
fn empty_source_is_an_error_unless_allowed() {
    let env = TestEnv::new();
    let out = env.run(&[
        "pull",
        &env.remote("nothing"),
        env.path("d").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--allow-empty"), "{}", text(&out));
    env.run_json(
        &[
            "pull",
            &env.remote("nothing"),
            env.path("d").to_str().unwrap(),
            "--allow-empty",
        ],
        0,
    );
}

#[test]
fn missing_container_names_account_and_container() {
    let env = TestEnv::new();
    let out = env.run(&[
        "pull",
        "no-such-container:/x",
        env.path("d").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("no-such-container") && t.contains("devstoreaccount1"),
        "{t}"
    );
    assert_eq!(t.trim().lines().count(), 1, "one line: {t}");
}

#[test]
fn bad_key_is_one_line_and_never_printed() {
    let env = TestEnv::new();
    let wrong = "d3JvbmdrZXl3cm9uZ2tleXdyb25na2V5d3Jvbmdr";
    let out = env
        .cmd()
        .env(
            "AZURE_STORAGE_CONNECTION_STRING",
            format!("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={wrong};BlobEndpoint={};", env.azurite.endpoint()),
        )
        .args(["ls", &env.remote("")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("access denied"), "{t}");
    assert!(!t.contains(wrong), "key leaked: {t}");
}

#[test]
fn sas_signature_never_printed() {
    let env = TestEnv::new();
    let url = format!(
        "{}/{}/x?sv=2022-11-02&ss=b&srt=sco&sp=rl&se=2099-01-01T00:00:00Z&sig=TOPSECRETSIGNATURE",
        env.azurite.endpoint(),
        env.container
    );
    let out = env.run(&["pull", &url, env.path("d").to_str().unwrap(), "-v"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!text(&out).contains("TOPSECRETSIGNATURE"), "{}", text(&out));
}

#[test]
fn symlinks_specials_and_non_utf8_names_are_reported() {
    use std::os::unix::ffi::OsStrExt;
    let env = TestEnv::new();
    let src = env.path("src");
    write(&src, "ok.txt", b"fine");
    write(&src, "target.txt", b"pointed at");
    std::os::unix::fs::symlink("target.txt", src.join("link")).unwrap();
    std::fs::write(src.join(std::ffi::OsStr::from_bytes(b"bad\xffname")), b"x").unwrap();
    let fifo = src.join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let out = env.run(&["push", src.to_str().unwrap(), &env.remote("p"), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["files_transferred"], 2, "{s}");
    assert_eq!(s["files_failed"], 1, "{s}");
    assert_eq!(s["files_skipped"], 2, "{s}");
    assert!(
        s["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("UTF-8"),
        "{s}"
    );
    let s = env.run_json(
        &[
            "push",
            src.join("link").to_str().unwrap(),
            &env.remote("q/link"),
            "--follow-symlinks",
        ],
        0,
    );
    assert_eq!(s["files_transferred"], 1, "{s}");
}

#[test]
fn usage_errors_exit_2() {
    let env = TestEnv::new();
    let out = env.run(&["pull", "not a remote", "x"]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&["pull", &env.remote("x"), "d", "--include", "a["]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("invalid glob"), "{}", text(&out));
    let out = env
        .cmd()
        .env_remove("AZURE_STORAGE_CONNECTION_STRING")
        .args(["ls", "home:/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no storage account"), "{}", text(&out));
}

#[test]
fn azurite_is_the_one_we_started() {
    let env = TestEnv::new();
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", env.azurite.pid)).unwrap();
    assert!(cmdline.contains(&env.azurite.port.to_string()), "{cmdline}");
}
