//! Interop: what Microsoft's Python SDK and rclone write, hopstage reads, and
//! what hopstage writes, they read back with the same bytes and metadata.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use serde_json::Value;

use crate::util::{assert_same_tree, bytes, text, write, TestEnv};

fn sdk(env: &TestEnv, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/sdk.py"))
        .args(args)
        .env(
            "AZURE_STORAGE_CONNECTION_STRING",
            env.azurite.connection_string(),
        )
        .output()
        .expect("python3 (install it, and `pip install azure-storage-blob`)");
    assert!(out.status.success(), "sdk.py {args:?}: {}", text(&out));
    String::from_utf8(out.stdout).expect("utf8")
}

fn sha256_file(p: &std::path::Path) -> String {
    let out = Command::new("sha256sum")
        .arg(p)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn python_sdk_writes_hopstage_pulls() {
    let env = TestEnv::new();
    let written: BTreeMap<String, String> =
        serde_json::from_str(&sdk(&env, &["write", &env.container])).unwrap();
    let dst = env.path("dst");
    let s = env.run_json(&["pull", &env.remote("py"), dst.to_str().unwrap()], 0);
    assert_eq!(s["files_transferred"], 3, "{s}");
    for (name, sha) in &written {
        let rel = name.strip_prefix("py/").unwrap();
        let p = dst.join(rel);
        if rel == "emptydir" {
            assert!(p.is_dir(), "stub became a directory");
            assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o700);
            continue;
        }
        assert_eq!(&sha256_file(&p), sha, "{name}");
    }
    let small = std::fs::metadata(dst.join("small.txt")).unwrap();
    assert_eq!(small.mode() & 0o7777, 0o600);
    assert_eq!(small.mtime(), 1_622_548_800);
    let large = std::fs::metadata(dst.join("sub/large.bin")).unwrap();
    assert_eq!(large.mode() & 0o7777, 0o750);
    assert_eq!(large.mtime(), 1_643_767_322);
}

#[test]
fn hopstage_pushes_python_sdk_reads() {
    let env = TestEnv::new();
    let src = env.path("src");
    write(&src, "one.txt", b"pushed by hopstage");
    write(&src, "deep/big.bin", &bytes(5 * 1024 * 1024 + 3, 9));
    std::fs::set_permissions(src.join("one.txt"), std::fs::Permissions::from_mode(0o604)).unwrap();
    env.run_json(
        &[
            "push",
            src.to_str().unwrap(),
            &env.remote("out"),
            "--block-size",
            "1MiB",
        ],
        0,
    );
    let read: BTreeMap<String, Value> =
        serde_json::from_str(&sdk(&env, &["read", &env.container, "out/"])).unwrap();
    let one = &read["out/one.txt"];
    assert_eq!(one["sha256"], sha256_file(&src.join("one.txt")));
    assert_eq!(one["metadata"]["permissions"], "0604");
    let m = std::fs::metadata(src.join("one.txt")).unwrap();
    assert_eq!(one["metadata"]["owner"], m.uid().to_string());
    assert_eq!(one["metadata"]["group"], m.gid().to_string());
    assert!(
        one["metadata"]["modtime"]
            .as_str()
            .unwrap()
            .ends_with(" +0000"),
        "{one}"
    );
    assert_eq!(one["metadata"]["hopstage_xxh3"].as_str().unwrap().len(), 32);
    // Put Blob stores the MD5 the service verified.
    assert_eq!(one["md5"], one["md5_of_body"]);
    let big = &read["out/deep/big.bin"];
    assert_eq!(big["sha256"], sha256_file(&src.join("deep/big.bin")));
    assert_eq!(big["size"], 5 * 1024 * 1024 + 3);
    let stub = &read["out/deep"];
    assert_eq!(stub["metadata"]["hdi_isfolder"], "true");
    assert_eq!(stub["size"], 0);
}

#[test]
fn hopstage_uses_a_real_sas_url() {
    let env = TestEnv::new();
    let sas = sdk(&env, &["sas", &env.container]).trim().to_string();
    let url = format!("{}/{}/viasas?{sas}", env.azurite.endpoint(), env.container);
    let src = env.path("src");
    write(&src, "f", b"sas upload");
    let out = env
        .cmd()
        .env_remove("AZURE_STORAGE_CONNECTION_STRING")
        .args(["push", src.to_str().unwrap(), &url, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let sig = sas.split("sig=").nth(1).unwrap().split('&').next().unwrap();
    assert!(!text(&out).contains(sig), "signature leaked");
    let dst = env.path("dst");
    let out = env
        .cmd()
        .env_remove("AZURE_STORAGE_CONNECTION_STRING")
        .args(["pull", &url, dst.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_same_tree(&src, &dst);
}

fn rclone(env: &TestEnv, args: &[&str]) {
    let sas = sdk(env, &["sas", &env.container]).trim().to_string();
    let sas_url = format!("{}/{}?{sas}", env.azurite.endpoint(), env.container);
    let out = Command::new("rclone")
        .env("RCLONE_AZUREBLOB_SAS_URL", sas_url)
        .env("RCLONE_CONFIG", "/dev/null")
        .args(args)
        .output()
        .expect("rclone (apt-get install rclone)");
    assert!(out.status.success(), "rclone {args:?}: {}", text(&out));
}

#[test]
fn rclone_round_trips_with_hopstage() {
    let env = TestEnv::new();
    let src = env.path("src");
    write(&src, "r/a.txt", b"from rclone");
    write(&src, "r/b/c.bin", &bytes(9 * 1024 * 1024 + 1, 4));
    let there = format!(":azureblob:{}/byrclone", env.container);
    rclone(&env, &["copy", src.to_str().unwrap(), &there]);
    let dst = env.path("dst");
    env.run_json(&["pull", &env.remote("byrclone"), dst.to_str().unwrap()], 0);
    assert_same_tree(&src, &dst);
    // And the other way.
    env.run_json(
        &[
            "push",
            src.to_str().unwrap(),
            &env.remote("byhop"),
            "--block-size",
            "2MiB",
        ],
        0,
    );
    let back = env.path("back");
    let from = format!(":azureblob:{}/byhop", env.container);
    rclone(&env, &["copy", &from, back.to_str().unwrap()]);
    assert_same_tree(&src, &back);
}
