//! Test support: a real Azurite per test binary, a fresh container and temp
//! directory per test, and a `Command` for the built `hopstage` binary.

pub mod azurite;
pub mod fake_arm;
pub mod faults;
pub mod lustre_sim;
pub mod slurm;
pub mod swagger;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use azurite::Azurite;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One test's world: a temp directory and a container of its own.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub container: String,
    pub azurite: &'static Azurite,
}

impl TestEnv {
    /// A fresh environment with an empty container created.
    pub fn new() -> Self {
        let azurite = Azurite::shared();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let container = format!("t{}-{n}", std::process::id());
        azurite.create_container(&container);
        TestEnv {
            dir: tempfile::tempdir().expect("tempdir"),
            container,
            azurite,
        }
    }

    /// A path inside the temp directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `CONTAINER:/rel`.
    pub fn remote(&self, rel: &str) -> String {
        format!("{}:/{rel}", self.container)
    }

    /// The hopstage binary with the environment pointing at Azurite.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hopstage"));
        for (k, _) in std::env::vars() {
            if k.starts_with("AZURE_") || k.starts_with("HOPSTAGE_") {
                c.env_remove(k);
            }
        }
        c.env("HOME", self.dir.path())
            .env(
                "AZURE_STORAGE_CONNECTION_STRING",
                self.azurite.connection_string(),
            )
            .stdin(std::process::Stdio::null());
        c
    }

    /// Runs hopstage with `args`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run hopstage")
    }

    /// Runs hopstage with `args` and `--json`, asserting exit code `code`; returns the summary.
    pub fn run_json(&self, args: &[&str], code: i32) -> serde_json::Value {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        assert_eq!(
            out.status.code(),
            Some(code),
            "hopstage {all:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    }
}

/// Writes `data` to `root/rel`, creating parents.
pub fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, data).expect("write");
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Asserts that two trees hold the same files with the same bytes.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let list = |root: &Path| {
        let mut v: Vec<(String, bool)> = walkdir::WalkDir::new(root)
            .min_depth(1)
            .into_iter()
            .map(|e| e.expect("walk"))
            .filter(|e| !e.file_type().is_symlink())
            .map(|e| {
                (
                    e.path()
                        .strip_prefix(root)
                        .expect("prefix")
                        .to_string_lossy()
                        .into_owned(),
                    e.file_type().is_dir(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let la = list(a);
    let lb = list(b);
    assert_eq!(la, lb, "trees differ: {} vs {}", a.display(), b.display());
    for (rel, is_dir) in la {
        if !is_dir {
            let x = std::fs::read(a.join(&rel)).expect("read a");
            let y = std::fs::read(b.join(&rel)).expect("read b");
            assert!(x == y, "content differs: {rel}");
        }
    }
}

/// Combined stdout and stderr as text.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
