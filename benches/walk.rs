//! Walker benchmark: a walkdir walk (one thread, sorted, one stat per entry:
//! what hopstage used first) against hopstage's `walk::walk` (jwalk on rayon:
//! parallel readdir and stat, blob-ordered output) on a tree of 200,000 files (created once under $WALK_BENCH_DIR, default
//! /tmp/hopstage-walk-bench). Run with `cargo bench --bench walk`; prints
//! seconds per walk, warm cache and (as root) cold cache.

use std::path::Path;
use std::time::Instant;

const FILES: usize = 200_000;

fn make_tree(root: &Path) {
    if root.join(".complete").exists() {
        return;
    }
    eprintln!("creating {FILES} files under {}", root.display());
    for i in 0..FILES {
        let dir = root.join(format!("d{:03}/e{:02}", i % 400, (i / 400) % 50));
        if i < 20_000 {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        std::fs::write(dir.join(format!("f{i:06}")), b"x").expect("write");
    }
    std::fs::write(root.join(".complete"), b"").expect("marker");
}

fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn time(label: &str, cold: bool, f: impl Fn() -> usize) {
    let mut best = f64::MAX;
    let mut n = 0;
    for _ in 0..3 {
        if cold && !drop_caches() {
            println!("{label:<40} (cold cache needs root; skipped)");
            return;
        }
        let t = Instant::now();
        n = f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{label:<40} {best:>7.3} s  ({n} entries, best of 3)");
}

fn main() {
    let root =
        std::env::var("WALK_BENCH_DIR").unwrap_or_else(|_| "/tmp/hopstage-walk-bench".into());
    let root = Path::new(&root);
    std::fs::create_dir_all(root).expect("bench dir");
    make_tree(root);
    for cold in [false, true] {
        let tag = if cold { "cold" } else { "warm" };
        time(
            &format!("walkdir (sequential, sorted, stat) {tag}"),
            cold,
            || {
                walkdir::WalkDir::new(root)
                    .sort_by_file_name()
                    .into_iter()
                    .filter_map(Result::ok)
                    .filter(|e| std::fs::symlink_metadata(e.path()).is_ok())
                    .count()
            },
        );
        time(
            &format!("walk::walk (jwalk, blob order) {tag}"),
            cold,
            || {
                let mut n = 0;
                hopstage::walk::walk(root, false, |_| {
                    n += 1;
                    true
                });
                n
            },
        );
    }
}
