//! Lustre layouts end to end: the real binary under the seccomp fake
//! (`util::lustre_sim`) pulls into a "Lustre" directory.

use hopstage::lustre::layout::{decode, Component, Layout, Striping, LUSTRE_EOF};

use crate::util::lustre_sim::{Event, FakeLustre};
use crate::util::{assert_same_tree, bytes, text, write, TestEnv};

const MIB: usize = 1 << 20;

fn seed(env: &TestEnv) -> std::path::PathBuf {
    let src = env.path("src");
    write(&src, "small.txt", b"tiny");
    write(&src, "d/mid.bin", &bytes(3 * MIB + 1, 1));
    env.run_json(
        &[
            "push",
            src.to_str().unwrap(),
            &env.remote("p"),
            "--block-size",
            "1MiB",
            "--no-dir-stubs",
        ],
        0,
    );
    src
}

fn fake(root: &std::path::Path) -> FakeLustre {
    std::fs::create_dir_all(root).unwrap();
    FakeLustre {
        root: root.to_path_buf(),
        osts: 8,
        bad_pools: vec!["badpool".into()],
        layouts: Default::default(),
    }
}

fn set_stripes(events: &[Event]) -> Vec<(String, Vec<u8>, u64, i32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SetStripe {
                path,
                bytes,
                size,
                result,
            } => Some((path.display().to_string(), bytes.clone(), *size, *result)),
            _ => None,
        })
        .collect()
}

#[test]
fn explicit_layout_is_set_on_every_file_before_its_first_byte() {
    let env = TestEnv::new();
    let src = seed(&env);
    let root = env.path("amlfs");
    let dst = root.join("proj");
    let mut cmd = env.cmd();
    cmd.args([
        "pull",
        &env.remote("p"),
        dst.to_str().unwrap(),
        "--json",
        "--stripe",
        "count=2,size=1M",
        "--block-size",
        "1MiB",
    ]);
    let (out, events) = fake(&root).run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        events.iter().any(|e| matches!(e, Event::Statfs(_))),
        "Lustre detected through statfs"
    );
    let sets = set_stripes(&events);
    assert_eq!(sets.len(), 2, "one layout per file: {sets:?}");
    for (path, b, size, result) in &sets {
        assert_eq!(*result, 0);
        assert_eq!(*size, 0, "{path}: layout set after data was written");
        assert!(
            path.contains(".hopstage-"),
            "set on the temporary file: {path}"
        );
        let d = decode(b).unwrap();
        assert_eq!(
            d.layout,
            Layout::Plain(Striping {
                stripe_size: MIB as u64,
                stripe_count: 2,
                pool: None
            })
        );
        assert_eq!(
            u16::from_le_bytes([b[30], b[31]]),
            0xFFFF,
            "offset -1: the MDS chooses"
        );
    }
    assert_same_tree(&src, &dst);
}

#[test]
fn pfl_layout_goes_through_the_xattr_and_reads_back() {
    let env = TestEnv::new();
    seed(&env);
    let root = env.path("amlfs");
    let dst = root.join("proj");
    let mut cmd = env.cmd();
    cmd.args([
        "pull",
        &env.remote("p"),
        dst.to_str().unwrap(),
        "-q",
        "--stripe",
        "pfl:64M/count=1,1G/count=4,eof/count=-1",
    ]);
    let lustre = fake(&root);
    let (out, events) = lustre.run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let expected = Layout::Composite(vec![
        Component {
            end: 64 << 20,
            striping: Striping {
                stripe_size: 0,
                stripe_count: 1,
                pool: None,
            },
        },
        Component {
            end: 1 << 30,
            striping: Striping {
                stripe_size: 0,
                stripe_count: 4,
                pool: None,
            },
        },
        Component {
            end: LUSTRE_EOF,
            striping: Striping {
                stripe_size: 0,
                stripe_count: -1,
                pool: None,
            },
        },
    ]);
    let xattrs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::SetXattr { bytes, size, .. } => Some((bytes.clone(), *size)),
            _ => None,
        })
        .collect();
    assert_eq!(xattrs.len(), 2, "{events:?}");
    for (b, size) in &xattrs {
        assert_eq!(*size, 0);
        assert_eq!(b.len(), 272);
        assert_eq!(b, &expected.encode(), "the golden PFL bytes");
    }
    assert!(
        set_stripes(&events).is_empty(),
        "PFL never goes through the ioctl"
    );
    // `hopstage layout` reads it back from the final file.
    let mut cmd = env.cmd();
    cmd.args(["layout", dst.join("d/mid.bin").to_str().unwrap(), "--json"]);
    let (out, _) = lustre.run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["components"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["components"][1]["stripe_count"], 4, "{v}");
    assert_eq!(v["components"][2]["end"], "eof", "{v}");
}

#[test]
fn not_lustre_means_no_layout_calls() {
    let env = TestEnv::new();
    let src = seed(&env);
    let lustre_root = env.path("amlfs");
    let dst = env.path("plain/proj");
    let mut cmd = env.cmd();
    cmd.args([
        "pull",
        &env.remote("p"),
        dst.to_str().unwrap(),
        "-q",
        "--stripe",
        "count=2",
    ]);
    let (out, events) = fake(&lustre_root).run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(events.is_empty(), "{events:?}");
    assert_same_tree(&src, &dst);
    let out = env.run(&["layout", dst.join("small.txt").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("not on a Lustre file system"),
        "{}",
        text(&out)
    );
}

#[test]
fn refused_layout_fails_that_file_only_and_leaves_nothing() {
    let env = TestEnv::new();
    seed(&env);
    let root = env.path("amlfs");
    let dst = root.join("proj");
    let mut cmd = env.cmd();
    cmd.args([
        "pull",
        &env.remote("p"),
        dst.to_str().unwrap(),
        "--json",
        "--stripe",
        "count=2,pool=badpool",
    ]);
    let (out, events) = fake(&root).run(cmd);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["files_failed"], 2, "{s}");
    assert!(
        text(&out).contains("LL_IOC_LOV_SETSTRIPE"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("pool"), "{}", text(&out));
    assert!(set_stripes(&events).iter().all(|s| s.3 == libc::EINVAL));
    let left: Vec<_> = walkdir::WalkDir::new(&dst)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .collect();
    assert!(left.is_empty(), "the failed files were unlinked: {left:?}");
}

#[test]
fn invalid_stripe_values_are_refused_before_anything_is_created() {
    // sanity 27f: a bad stripe size is an error and creates nothing.
    let env = TestEnv::new();
    let dst = env.path("never");
    for bad in [
        "size=100000",
        "count=2001",
        "pool=sixteen-chars-xx",
        "pfl:64M/count=1",
    ] {
        let out = env.run(&[
            "pull",
            &env.remote("p"),
            dst.to_str().unwrap(),
            "--stripe",
            bad,
        ]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out));
        assert!(!dst.exists());
    }
}

#[test]
fn dry_run_shows_layout_and_stripe_aligned_ranges() {
    let env = TestEnv::new();
    let src = env.path("src");
    write(&src, "big.bin", &bytes(20 * MIB, 3));
    env.run_json(
        &[
            "push",
            src.to_str().unwrap(),
            &env.remote("p"),
            "--block-size",
            "4MiB",
        ],
        0,
    );
    let root = env.path("amlfs");
    let dst = root.join("proj");
    std::fs::create_dir_all(&dst).unwrap();
    let mut cmd = env.cmd();
    cmd.args([
        "pull",
        &env.remote("p"),
        dst.to_str().unwrap(),
        "--dry-run",
        "--stripe",
        "count=4,size=3M",
        "--block-size",
        "8MiB",
    ]);
    let (out, events) = fake(&root).run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.contains("stripe_count=4") && t.contains("stripe_size=3.00 MiB"),
        "{t}"
    );
    assert!(
        t.contains("3 ranges of 9.00 MiB"),
        "8 MiB rounded up to whole 3 MiB stripes: {t}"
    );
    assert!(set_stripes(&events).is_empty(), "a dry run creates nothing");
    // The real pull uses the same stripe-aligned ranges and verifies by whole-file hash.
    let mut cmd = env.cmd();
    cmd.args([
        "pull",
        &env.remote("p"),
        dst.to_str().unwrap(),
        "-q",
        "--stripe",
        "count=4,size=3M",
        "--block-size",
        "8MiB",
    ]);
    let (out, events) = fake(&root).run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(set_stripes(&events).len(), 1);
    assert_same_tree(&src, &dst);
}

#[test]
fn directory_default_layouts_plain_by_ioctl_and_pfl_by_xattr() {
    let env = TestEnv::new();
    let root = env.path("amlfs");
    let lustre = fake(&root);
    let dir = root.join("proj");
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = env.cmd();
    cmd.args([
        "layout",
        dir.to_str().unwrap(),
        "--set",
        "count=4,size=4M",
        "--json",
    ]);
    let (out, events) = lustre.run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let sets = set_stripes(&events);
    assert_eq!(sets.len(), 1, "{events:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["components"][0]["stripe_count"], 4, "{v}");
    let pfl_dir = root.join("pfl");
    std::fs::create_dir_all(&pfl_dir).unwrap();
    let mut cmd = env.cmd();
    cmd.args([
        "layout",
        pfl_dir.to_str().unwrap(),
        "--set",
        "pfl:64M/count=1,eof/count=-1",
    ]);
    let (out, events) = lustre.run(cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        events.iter().any(|e| matches!(e, Event::SetXattr { .. })),
        "{events:?}"
    );
    assert!(
        set_stripes(&events).is_empty(),
        "PFL never through the directory ioctl"
    );
    let out = env.run(&[
        "layout",
        env.dir.path().to_str().unwrap(),
        "--set",
        "count=2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&["layout", dir.to_str().unwrap(), "--set", "auto"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
