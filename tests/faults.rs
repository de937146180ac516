//! Faults between hopstage and the service: throttling with Retry-After,
//! 500s, and connections cut mid-body. Every file ends correct, retries show
//! in the summary.

use crate::util::faults::{Action, FaultProxy};
use crate::util::{assert_same_tree, bytes, text, write, TestEnv};

fn through(proxy: &FaultProxy) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={};BlobEndpoint=http://127.0.0.1:{}/devstoreaccount1;",
        hopstage::config::AZURITE_KEY,
        proxy.port
    )
}

#[test]
fn push_and_pull_survive_throttling_errors_and_cut_bodies() {
    let env = TestEnv::new();
    let src = env.path("src");
    for i in 0..12 {
        write(
            &src,
            &format!("f{i:02}"),
            &bytes(20_000 + i * 100, i as u64),
        );
    }
    write(&src, "big/large.bin", &bytes(3 * 1024 * 1024 + 11, 77));
    let proxy = FaultProxy::start(env.azurite.port, |n, line| {
        if n % 4 == 1 {
            Action::Busy
        } else if n % 7 == 3 {
            Action::Error500
        } else if line.starts_with("GET") && !line.contains("comp=list") && n % 5 == 2 {
            Action::CutMidBody
        } else {
            Action::Forward
        }
    });
    let conn = through(&proxy);
    let out = env
        .cmd()
        .env("AZURE_STORAGE_CONNECTION_STRING", &conn)
        .args([
            "push",
            src.to_str().unwrap(),
            &env.remote("p"),
            "--json",
            "--block-size",
            "1MiB",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["retries"].as_u64().unwrap() > 0, "{s}");
    let dst = env.path("dst");
    let out = env
        .cmd()
        .env("AZURE_STORAGE_CONNECTION_STRING", &conn)
        .args([
            "pull",
            &env.remote("p"),
            dst.to_str().unwrap(),
            "--json",
            "--block-size",
            "1MiB",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["retries"].as_u64().unwrap() > 0, "{s}");
    assert!(proxy.faults.load(std::sync::atomic::Ordering::Relaxed) > 3);
    assert_same_tree(&src, &dst);
}

#[test]
fn stalled_responses_time_out_and_are_retried() {
    let env = TestEnv::new();
    let src = env.path("src");
    for i in 0..8 {
        write(&src, &format!("f{i}"), &bytes(3000 + i, i as u64));
    }
    write(&src, "big.bin", &bytes(2 * 1024 * 1024 + 1, 8));
    let proxy = FaultProxy::start(env.azurite.port, |n, _| {
        if n % 6 == 2 {
            Action::Stall(20_000)
        } else {
            Action::Forward
        }
    });
    let conn = through(&proxy);
    let started = std::time::Instant::now();
    let out = env
        .cmd()
        .env("AZURE_STORAGE_CONNECTION_STRING", &conn)
        .args([
            "push",
            src.to_str().unwrap(),
            &env.remote("p"),
            "--json",
            "--block-size",
            "1MiB",
            "--read-timeout",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["retries"].as_u64().unwrap() > 0, "{s}");
    let dst = env.path("dst");
    let out = env
        .cmd()
        .env("AZURE_STORAGE_CONNECTION_STRING", &conn)
        .args([
            "pull",
            &env.remote("p"),
            dst.to_str().unwrap(),
            "--json",
            "--read-timeout",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20 * 4),
        "stalls must not hang the run"
    );
    assert_same_tree(&src, &dst);
}
