//! Never lose data: block-level resume after kill -9, verification, and
//! honest reporting.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::util::faults::{Action, FaultProxy};
use crate::util::{assert_same_tree, bytes, text, write, TestEnv};

fn conn_via(port: u16) -> String {
    format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
        hopstage::config::AZURITE_KEY
    )
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill9(mut child: Child) {
    child.kill().expect("kill -9");
    let _ = child.wait();
}

fn ranges_logged(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".ranges"))
                .map(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .count()
                        .saturating_sub(1)
                })
                .sum()
        })
        .unwrap_or(0)
}

const MIB: usize = 1 << 20;

#[test]
fn pull_resumes_ranges_after_kill_9() {
    let env = TestEnv::new();
    let src = env.path("src");
    write(&src, "big.bin", &bytes(24 * MIB + 5, 21));
    env.run_json(
        &[
            "push",
            src.to_str().unwrap(),
            &env.remote("p"),
            "--block-size",
            "1MiB",
        ],
        0,
    );
    let proxy = FaultProxy::start(env.azurite.port, |_, line| {
        if line.starts_with("GET") && !line.contains("comp=") {
            Action::Delay(150)
        } else {
            Action::Forward
        }
    });
    let dst = env.path("dst");
    let child = env
        .cmd()
        .env("AZURE_STORAGE_CONNECTION_STRING", conn_via(proxy.port))
        .args([
            "pull",
            &env.remote("p"),
            dst.to_str().unwrap(),
            "-q",
            "--concurrency",
            "1",
            "--max-memory",
            "2MiB",
        ])
        .spawn()
        .unwrap();
    wait_until("six ranges on disk", || ranges_logged(&dst) >= 6);
    kill9(child);
    assert!(
        !dst.join("big.bin").exists(),
        "a partial file has its final name"
    );
    let s = env.run_json(&["pull", &env.remote("p"), dst.to_str().unwrap()], 0);
    let moved = s["bytes_transferred"].as_u64().unwrap();
    assert!(
        moved < 20 * MIB as u64,
        "rerun moved {moved} bytes of 24 MiB: {s}"
    );
    assert!(moved > 0, "{s}");
    assert_same_tree(&src, &dst);
    assert_eq!(
        ranges_logged(&dst),
        0,
        "the range log is removed on success"
    );
}

#[test]
fn changed_source_restarts_the_file() {
    let env = TestEnv::new();
    let src = env.path("src");
    write(&src, "big.bin", &bytes(12 * MIB, 1));
    env.run_json(
        &[
            "push",
            src.to_str().unwrap(),
            &env.remote("p"),
            "--block-size",
            "1MiB",
        ],
        0,
    );
    let proxy = FaultProxy::start(env.azurite.port, |_, line| {
        if line.starts_with("GET") && !line.contains("comp=") {
            Action::Delay(150)
        } else {
            Action::Forward
        }
    });
    let dst = env.path("dst");
    let child = env
        .cmd()
        .env("AZURE_STORAGE_CONNECTION_STRING", conn_via(proxy.port))
        .args([
            "pull",
            &env.remote("p"),
            dst.to_str().unwrap(),
            "-q",
            "--concurrency",
            "1",
            "--max-memory",
            "2MiB",
        ])
        .spawn()
        .unwrap();
    wait_until("three ranges on disk", || ranges_logged(&dst) >= 3);
    kill9(child);
    // The source changes (new content, new ETag) before the rerun.
    write(&src, "big.bin", &bytes(12 * MIB, 2));
    env.run_json(
        &[
            "push",
            src.to_str().unwrap(),
            &env.remote("p"),
            "--block-size",
            "1MiB",
            "--overwrite",
            "always",
        ],
        0,
    );
    let s = env.run_json(&["pull", &env.remote("p"), dst.to_str().unwrap()], 0);
    assert_eq!(s["bytes_transferred"], 12 * MIB, "{s}");
    assert_same_tree(&src, &dst);
}

#[test]
fn push_resumes_staged_blocks_after_kill_9() {
    let env = TestEnv::new();
    let src = env.path("src");
    write(&src, "big.bin", &bytes(24 * MIB + 3, 22));
    let proxy = FaultProxy::start(env.azurite.port, |_, line| {
        if line.starts_with("PUT") && line.contains("comp=block&")
            || line.ends_with("comp=block HTTP/1.1")
        {
            Action::Delay(150)
        } else {
            Action::Forward
        }
    });
    let child = env
        .cmd()
        .env("AZURE_STORAGE_CONNECTION_STRING", conn_via(proxy.port))
        .args([
            "push",
            src.to_str().unwrap(),
            &env.remote("p"),
            "-q",
            "--block-size",
            "1MiB",
            "--max-memory",
            "2MiB",
        ])
        .spawn()
        .unwrap();
    let store = env.azurite.store(&env.container);
    let rt = crate::util::azurite::rt();
    wait_until("six staged blocks", || {
        rt.block_on(store.uncommitted_blocks("p/big.bin"))
            .map(|b| b.len())
            .unwrap_or(0)
            >= 6
    });
    kill9(child);
    let ls = env.run(&["ls", &env.remote("p/big.bin")]);
    assert_ne!(
        ls.status.code(),
        Some(0),
        "nothing committed yet: {}",
        text(&ls)
    );
    let s = env.run_json(
        &[
            "push",
            src.to_str().unwrap(),
            &env.remote("p"),
            "--block-size",
            "1MiB",
        ],
        0,
    );
    let sent = s["bytes_transferred"].as_u64().unwrap();
    assert!(
        sent < 20 * MIB as u64,
        "rerun sent {sent} bytes of 24 MiB: {s}"
    );
    let dst = env.path("dst");
    env.run_json(&["pull", &env.remote("p"), dst.to_str().unwrap()], 0);
    assert_same_tree(&src, &dst);
}

#[test]
fn verify_finds_every_kind_of_difference() {
    let env = TestEnv::new();
    let src = env.path("src");
    write(&src, "same.txt", b"same");
    write(&src, "big.bin", &bytes(3 * MIB, 5));
    write(&src, "changed.txt", b"aaaa");
    write(&src, "gone-locally.txt", b"x");
    env.run_json(
        &[
            "push",
            src.to_str().unwrap(),
            &env.remote("v"),
            "--block-size",
            "1MiB",
        ],
        0,
    );
    let out = env.run(&["verify", src.to_str().unwrap(), &env.remote("v"), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    write(&src, "changed.txt", b"bbbb");
    std::fs::remove_file(src.join("gone-locally.txt")).unwrap();
    write(&src, "only-local.txt", b"new");
    let out = env.run(&["verify", &env.remote("v"), src.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = r["differences"].as_array().unwrap();
    let find = |p: &str| {
        d.iter()
            .find(|x| x["path"] == p)
            .map(|x| x["problem"].as_str().unwrap().to_string())
    };
    assert!(
        find("changed.txt").unwrap().contains("content differs"),
        "{r}"
    );
    assert!(
        find("gone-locally.txt")
            .unwrap()
            .contains("missing locally"),
        "{r}"
    );
    assert!(
        find("only-local.txt")
            .unwrap()
            .contains("missing in the container"),
        "{r}"
    );
    assert_eq!(d.len(), 3, "{r}");
    assert_eq!(r["files_matched"], 2, "{r}");
}

#[test]
fn verify_compares_bytes_when_the_blob_has_no_hash() {
    let env = TestEnv::new();
    // Written by the Python SDK in 1 MiB blocks: no Content-MD5, no xxh3.
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/sdk.py"))
        .args(["write", &env.container])
        .env(
            "AZURE_STORAGE_CONNECTION_STRING",
            env.azurite.connection_string(),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let dst = env.path("dst");
    env.run_json(&["pull", &env.remote("py"), dst.to_str().unwrap()], 0);
    let out = env.run(&["verify", dst.to_str().unwrap(), &env.remote("py"), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r["bytes_downloaded"].as_u64().unwrap() >= 3 * MIB as u64,
        "{r}"
    );
    let f = dst.join("sub/large.bin");
    let mut data = std::fs::read(&f).unwrap();
    data[2 * MIB + 7] ^= 1;
    std::fs::write(&f, data).unwrap();
    let out = env.run(&["verify", dst.to_str().unwrap(), &env.remote("py")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("sub/large.bin: content differs"),
        "{}",
        text(&out)
    );
}

/// A small tmpfs, unmounted on drop. Mounting needs root (CI runs as root).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: std::path::PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "the disk-full test mounts a tmpfs and needs root: {}",
            text(&out)
        );
        Tmpfs(at)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_is_reported_and_leaves_no_partial_file() {
    let env = TestEnv::new();
    let src = env.path("src");
    write(&src, "a-2m.bin", &bytes(2 * MIB, 1));
    write(&src, "b-3m.bin", &bytes(3 * MIB, 2));
    write(&src, "c-6m.bin", &bytes(6 * MIB, 3));
    write(&src, "d-big.bin", &bytes(12 * MIB, 4));
    env.run_json(
        &[
            "push",
            src.to_str().unwrap(),
            &env.remote("p"),
            "--block-size",
            "1MiB",
        ],
        0,
    );
    let fs = Tmpfs::mount(env.path("small-disk"), "8m");
    let dst = fs.0.join("dst");
    let out = env.run(&[
        "pull",
        &env.remote("p"),
        dst.to_str().unwrap(),
        "--json",
        "--concurrency",
        "1",
        "--block-size",
        "8MiB",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["files_failed"].as_u64().unwrap() >= 1, "{s}");
    assert!(text(&out).contains("no space left"), "{}", text(&out));
    // Whatever has a final name is complete; nothing else has one.
    for e in std::fs::read_dir(&dst).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with(".hopstage-") {
            continue;
        }
        assert_eq!(
            std::fs::read(e.path()).unwrap(),
            std::fs::read(src.join(&name)).unwrap(),
            "{name}"
        );
    }
    let done = s["files_transferred"].as_u64().unwrap();
    let failed = s["files_failed"].as_u64().unwrap();
    assert_eq!(done + failed, 4, "{s}");
}

#[test]
fn rerun_after_kill_works_from_the_plan_without_listing_again() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let env = TestEnv::new();
    let src = env.path("src");
    for i in 0..40 {
        write(
            &src,
            &format!("d{}/f{i:02}", i % 4),
            &bytes(2000 + i, i as u64),
        );
    }
    env.run_json(
        &[
            "push",
            src.to_str().unwrap(),
            &env.remote("p"),
            "--no-dir-stubs",
        ],
        0,
    );
    let slow = FaultProxy::start(env.azurite.port, |_, line| {
        if line.starts_with("GET") && !line.contains("comp=") {
            Action::Delay(100)
        } else {
            Action::Forward
        }
    });
    let dst = env.path("dst");
    let child = env
        .cmd()
        .env("AZURE_STORAGE_CONNECTION_STRING", conn_via(slow.port))
        .args([
            "pull",
            &env.remote("p"),
            dst.to_str().unwrap(),
            "-q",
            "--concurrency",
            "1",
        ])
        .spawn()
        .unwrap();
    let files_done = |d: &std::path::Path| {
        walkdir::WalkDir::new(d)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_type().is_file()
                    && !e.file_name().to_string_lossy().starts_with(".hopstage-")
            })
            .count()
    };
    wait_until("five files pulled", || files_done(&dst) >= 5);
    kill9(child);
    let journal: Vec<_> = std::fs::read_dir(&dst)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".hopstage-plan-")
        })
        .collect();
    assert_eq!(journal.len(), 1, "the plan journal is kept after a kill");
    let listings = Arc::new(AtomicUsize::new(0));
    let l2 = Arc::clone(&listings);
    let counting = FaultProxy::start(env.azurite.port, move |_, line| {
        if line.contains("comp=list") && !line.contains("maxresults=1") {
            l2.fetch_add(1, Ordering::Relaxed);
        }
        Action::Forward
    });
    let out = env
        .cmd()
        .env("AZURE_STORAGE_CONNECTION_STRING", conn_via(counting.port))
        .args(["pull", &env.remote("p"), dst.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(s["files_transferred"].as_u64().unwrap() < 40, "{s}");
    assert_eq!(
        listings.load(Ordering::Relaxed),
        0,
        "the rerun listed the container again"
    );
    assert_same_tree(&src, &dst);
    assert!(
        std::fs::read_dir(&dst)
            .unwrap()
            .filter_map(Result::ok)
            .all(|e| !e
                .file_name()
                .to_string_lossy()
                .starts_with(".hopstage-plan-")),
        "the journal is removed after a clean run"
    );
}

#[test]
fn sas_expiring_mid_run_stops_with_a_clear_message_and_no_secret() {
    let env = TestEnv::new();
    let src = env.path("src");
    for i in 0..40 {
        write(&src, &format!("f{i:02}"), &bytes(1000, i as u64));
    }
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/sdk.py"))
        .args(["sas", &env.container, "3"])
        .env(
            "AZURE_STORAGE_CONNECTION_STRING",
            env.azurite.connection_string(),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let sas = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let sig = sas
        .split("sig=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_string();
    let slow = FaultProxy::start(env.azurite.port, |_, line| {
        if line.starts_with("PUT") {
            Action::Delay(250)
        } else {
            Action::Forward
        }
    });
    let url = format!(
        "http://127.0.0.1:{}/devstoreaccount1/{}/p?{sas}",
        slow.port, env.container
    );
    let out = env
        .cmd()
        .env_remove("AZURE_STORAGE_CONNECTION_STRING")
        .args([
            "push",
            src.to_str().unwrap(),
            &url,
            "--concurrency",
            "1",
            "--json",
            "-v",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("access denied") && t.contains("SAS expiry"),
        "{t}"
    );
    assert!(!t.contains(&sig), "the SAS signature leaked: {t}");
    let summary: serde_json::Value =
        serde_json::from_str(t.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    let done = summary["files_transferred"].as_u64().unwrap();
    assert!(
        done > 0 && done < 40,
        "some files before the expiry, not all: {summary}"
    );
}
