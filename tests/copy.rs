//! `hopstage copy`: local trees with the same engine, skip rules and layouts.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::util::lustre_sim::{Event, FakeLustre};
use crate::util::{assert_same_tree, bytes, text, write, TestEnv};

fn tree(env: &TestEnv) -> std::path::PathBuf {
    let src = env.path("src");
    write(&src, "a.txt", b"alpha");
    write(&src, "d/big.bin", &bytes(3 * 1024 * 1024 + 7, 1));
    write(&src, "d/e/small", &bytes(100, 2));
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::set_permissions(src.join("a.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    src
}

#[test]
fn copies_a_tree_like_cp_a_and_skips_on_rerun() {
    let env = TestEnv::new();
    let src = tree(&env);
    let dst = env.path("dst");
    let s = env.run_json(
        &[
            "copy",
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
            "--block-size",
            "1MiB",
        ],
        0,
    );
    assert_eq!(s["files_failed"], 0, "{s}");
    assert_same_tree(&src, &dst);
    assert_eq!(
        std::fs::read_link(dst.join("link")).unwrap(),
        std::path::PathBuf::from("a.txt")
    );
    assert!(dst.join("empty").is_dir());
    let (a, b) = (
        std::fs::metadata(src.join("a.txt")).unwrap(),
        std::fs::metadata(dst.join("a.txt")).unwrap(),
    );
    assert_eq!(b.mode() & 0o7777, 0o600);
    assert_eq!((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()));
    let s = env.run_json(&["copy", src.to_str().unwrap(), dst.to_str().unwrap()], 0);
    assert_eq!(s["files_transferred"], 0, "{s}");
    assert_eq!(s["files_skipped"], 4, "{s}");
}

fn fake(root: &std::path::Path) -> FakeLustre {
    std::fs::create_dir_all(root).unwrap();
    FakeLustre {
        root: root.to_path_buf(),
        osts: 8,
        bad_pools: vec![],
        layouts: Default::default(),
    }
}

fn set_stripes(events: &[Event]) -> Vec<(Vec<u8>, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SetStripe {
                bytes,
                size,
                result: 0,
                ..
            } => Some((bytes.clone(), *size)),
            _ => None,
        })
        .collect()
}

#[test]
fn mirror_reproduces_the_source_layout_and_released_files_follow_hsm() {
    let env = TestEnv::new();
    let src = tree(&env);
    let root = env.path("amlfs");
    let lustre = fake(&root);
    // Onto "Lustre" with an explicit layout...
    let a = root.join("a");
    let mut cmd = env.cmd();
    cmd.args([
        "copy",
        src.to_str().unwrap(),
        a.to_str().unwrap(),
        "-q",
        "--stripe",
        "count=3,size=2M",
    ]);
    let (out, events) = lustre.run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let sets = set_stripes(&events);
    assert_eq!(sets.len(), 3, "{events:?}");
    assert!(
        sets.iter().all(|(_, size)| *size == 0),
        "layout before the first byte"
    );
    // ...then Lustre to Lustre with --stripe mirror: the same layout again.
    let b = root.join("b");
    let mut cmd = env.cmd();
    cmd.args([
        "copy",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "-q",
        "--stripe",
        "mirror",
    ]);
    let (out, events) = lustre.run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let sets = set_stripes(&events);
    assert_eq!(sets.len(), 3, "{events:?}");
    for (bytes, _) in &sets {
        let d = hopstage::lustre::layout::decode(bytes).unwrap();
        match d.layout {
            hopstage::lustre::Layout::Plain(s) => {
                assert_eq!((s.stripe_count, s.stripe_size), (3, 2 << 20), "{s:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_same_tree(&a, &b);
    // An HSM-released source file: skip, fail, or restore (read) as asked.
    let released = a.join("d/big.bin");
    let m = std::fs::metadata(&released).unwrap();
    {
        let mut l = lustre.layouts.lock().unwrap();
        let bytes = l.get_mut(&(m.dev(), m.ino())).unwrap();
        bytes[4..8].copy_from_slice(&(1u32 | 0x8000_0000).to_le_bytes());
    }
    for (hsm, code, skipped, failed) in [("skip", 0, 1, 0), ("fail", 1, 0, 1), ("restore", 0, 0, 0)]
    {
        let c = root.join(format!("c-{hsm}"));
        let mut cmd = env.cmd();
        cmd.args([
            "copy",
            a.to_str().unwrap(),
            c.to_str().unwrap(),
            "--json",
            "--hsm",
            hsm,
        ]);
        let (out, _) = lustre.run(cmd);
        assert_eq!(out.status.code(), Some(code), "{hsm}: {}", text(&out));
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(s["files_skipped"], skipped, "{hsm}: {s}");
        assert_eq!(s["files_failed"], failed, "{hsm}: {s}");
        assert_eq!(c.join("d/big.bin").exists(), hsm == "restore", "{hsm}");
    }
}
