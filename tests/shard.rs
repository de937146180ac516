//! One pull split across N processes (`--shard I/N`) on one machine against
//! Azurite, and under the real single-node Slurm with `srun -n 4`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::faults::{Action, FaultProxy};
use crate::util::slurm::{Mode, Slurm};
use crate::util::{assert_same_tree, bytes, write, Azurite, TestEnv};

const MIB: usize = 1 << 20;

/// 30 small files, two files split across ranks (and one just below the cut).
fn seed(env: &TestEnv) -> u64 {
    let src = env.path("src");
    let mut total = 0;
    for i in 0..30 {
        let data = bytes(1000 + i * 3000, i as u64);
        total += data.len() as u64;
        write(&src, &format!("small/f{i:02}"), &data);
    }
    for (name, len, seed) in [
        ("big/a.bin", 41 * MIB + 17, 100),
        ("big/b.bin", 33 * MIB, 101),
        ("c.bin", 15 * MIB, 102),
    ] {
        let data = bytes(len, seed);
        total += data.len() as u64;
        write(&src, name, &data);
    }
    env.run_json(&["push", src.to_str().unwrap(), &env.remote("tree")], 0);
    total
}

fn rank(
    env: &TestEnv,
    dest: &str,
    i: usize,
    n: usize,
    token: &str,
    endpoint: Option<String>,
) -> Child {
    rank_of(env, "tree", dest, i, n, token, endpoint)
}

fn rank_of(
    env: &TestEnv,
    what: &str,
    dest: &str,
    i: usize,
    n: usize,
    token: &str,
    endpoint: Option<String>,
) -> Child {
    let mut c = env.cmd();
    if let Some(ep) = endpoint {
        c.env(
            "AZURE_STORAGE_CONNECTION_STRING",
            format!(
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={};BlobEndpoint={ep};",
                hopstage::config::AZURITE_KEY
            ),
        );
    }
    c.env("HOPSTAGE_SHARD_DEAD_SECS", "3")
        .args([
            "pull",
            &env.remote(what),
            dest,
            "--json",
            "--shard-split",
            "16MiB",
        ])
        .args(["--shard", &format!("{i}/{n}"), "--shard-run", token])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rank")
}

fn outputs(children: Vec<Child>) -> Vec<(Option<i32>, String, String)> {
    children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .collect()
}

#[test]
fn shards_cover_the_plan_exactly_once_and_assemble_split_files() {
    let env = TestEnv::new();
    let total = seed(&env);
    let dest = env.path("dest");
    let d = dest.to_str().unwrap();
    let outs = outputs((0..3).map(|i| rank(&env, d, i, 3, "run1", None)).collect());
    for (i, (code, _, err)) in outs.iter().enumerate() {
        assert_eq!(*code, Some(0), "rank {i}: {err}");
    }
    // Rank 0 prints the combined summary; the others print none.
    assert!(outs[1].1.trim().is_empty() && outs[2].1.trim().is_empty());
    let sum: serde_json::Value = serde_json::from_str(outs[0].1.trim()).unwrap();
    // Every file once, every byte once: nothing fetched twice, nothing missing.
    assert_eq!(sum["files_transferred"], 33, "{sum}");
    assert_eq!(sum["bytes_transferred"], total, "{sum}");
    assert_eq!(sum["files_failed"], 0);
    assert_same_tree(&env.path("src"), &dest);
    // No shared state left behind after a clean run.
    let leftovers: Vec<_> = walkdir::WalkDir::new(&dest)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".hopstage-"))
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The same command again moves nothing.
    let again = outputs((0..3).map(|i| rank(&env, d, i, 3, "run2", None)).collect());
    let sum: serde_json::Value = serde_json::from_str(again[0].1.trim()).unwrap();
    assert_eq!(sum["files_transferred"], 0, "{sum}");
    assert_eq!(sum["files_skipped"], 33, "{sum}");

    // One named blob is split across the ranks too.
    let one = env.path("one");
    std::fs::create_dir_all(&one).unwrap();
    let o = format!("{}/", one.display());
    let outs = outputs(
        (0..3)
            .map(|i| rank_of(&env, "tree/big/a.bin", &o, i, 3, "one", None))
            .collect(),
    );
    for (i, (code, _, err)) in outs.iter().enumerate() {
        assert_eq!(*code, Some(0), "rank {i}: {err}");
    }
    let sum: serde_json::Value = serde_json::from_str(outs[0].1.trim()).unwrap();
    assert_eq!(sum["files_transferred"], 1, "{sum}");
    assert_eq!(sum["bytes_transferred"], (41 * MIB + 17) as u64, "{sum}");
    assert_eq!(
        std::fs::read(one.join("a.bin")).unwrap(),
        bytes(41 * MIB + 17, 100)
    );
    assert_eq!(
        std::fs::read_dir(&one).unwrap().count(),
        1,
        "leftovers beside a.bin"
    );
}

#[test]
fn a_killed_rank_is_reported_and_a_rerun_finishes_only_what_is_missing() {
    let env = TestEnv::new();
    let total = seed(&env);
    let dest = env.path("dest");
    let d = dest.to_str().unwrap();
    // Every blob read takes 2.5 s, so no rank can have finished its share
    // when rank 2 is killed 1.5 s after the start.
    let proxy = FaultProxy::start(env.azurite.port, |_, line| {
        if line.starts_with("GET") && !line.contains("comp=list") {
            Action::Delay(2500)
        } else {
            Action::Forward
        }
    });
    let ep = format!("http://127.0.0.1:{}/devstoreaccount1", proxy.port);
    let mut children: Vec<Child> = (0..3)
        .map(|i| rank(&env, d, i, 3, "k1", Some(ep.clone())))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let mut victim = children.remove(2);
    let _ = Command::new("kill")
        .args(["-9", &victim.id().to_string()])
        .status();
    let _ = victim.wait();
    let started = Instant::now();
    let outs = outputs(children);
    assert!(started.elapsed() < Duration::from_secs(120));
    assert_eq!(
        outs[0].0,
        Some(1),
        "rank 0 should report the dead rank: {}",
        outs[0].2
    );
    assert!(
        outs[0].2.contains("rank 2") && outs[0].2.contains("rerun"),
        "{}",
        outs[0].2
    );
    let first: serde_json::Value = serde_json::from_str(outs[0].1.trim()).unwrap();
    let moved_first = first["bytes_transferred"].as_u64().unwrap();
    assert!(moved_first < total, "{first}");

    // Rerun, same command, a new run token: completes, moving only the rest.
    let outs = outputs((0..3).map(|i| rank(&env, d, i, 3, "k2", None)).collect());
    for (i, (code, _, err)) in outs.iter().enumerate() {
        assert_eq!(*code, Some(0), "rank {i}: {err}");
    }
    let second: serde_json::Value = serde_json::from_str(outs[0].1.trim()).unwrap();
    let moved_second = second["bytes_transferred"].as_u64().unwrap();
    assert!(
        moved_second < total,
        "rerun moved everything again: {second}"
    );
    // Nothing that finished in the first run moved again (the killed rank's
    // finished blocks count in neither summary, so the sum can fall short).
    assert!(
        moved_first + moved_second <= total,
        "{moved_first} + {moved_second} > {total}"
    );
    assert_same_tree(&env.path("src"), &dest);
}

#[test]
fn srun_splits_a_pull_across_tasks_and_a_batch_step_does_not() {
    let env = TestEnv::new();
    let total = seed(&env);
    let logs = format!("{}-log", env.container);
    env.azurite.create_container(&logs);
    let s = Slurm::start(Azurite::shared(), &env.container, &logs, Mode::Hooks, "");
    let (root, work) = (
        s.root.display().to_string(),
        s.work("").display().to_string(),
    );
    let bin = s.dir.path().join("hopstage");
    // The job user cannot reach the build directory: run a copy.
    std::fs::copy(env!("CARGO_BIN_EXE_hopstage"), &bin).unwrap();
    let script = format!(
        "#!/bin/sh\n#SBATCH -n 4 -O -o {work}/srun-%j.out\n\
         export AZURE_STORAGE_CONNECTION_STRING='{conn}'\n\
         {bin} pull -q {c}:/tree {root}/nobody/batch --json --shard-split 16MiB > {work}/batch.json\n\
         srun -n 4 -O {bin} pull -q {c}:/tree {root}/nobody/srun --json --shard-split 16MiB > {work}/srun.json\n",
        conn = Azurite::shared().connection_string(),
        bin = bin.display(),
        c = env.container,
    );
    let id = s.sbatch("srun.sh", &script).unwrap();
    assert_eq!(
        s.wait(&id, &["COMPLETED", "FAILED", "CANCELLED"], 240),
        "COMPLETED",
        "{}",
        std::fs::read_to_string(s.work(&format!("srun-{id}.out"))).unwrap_or_default()
    );
    // In the batch step (no srun) nothing is sharded: one process, everything.
    let batch: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(s.work("batch.json"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    assert_eq!(batch["bytes_transferred"], total, "{batch}");
    // Under srun -n 4: one combined summary, every byte once.
    let text = std::fs::read_to_string(s.work("srun.json")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one summary (rank 0's): {text}");
    let sum: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(sum["files_transferred"], 33, "{sum}");
    assert_eq!(sum["bytes_transferred"], total, "{sum}");
    assert_same_tree(&env.path("src"), &s.home.join("srun"));
    assert_same_tree(&env.path("src"), &s.home.join("batch"));
}

#[test]
fn a_sharded_push_stages_blocks_of_one_blob_from_several_ranks() {
    let env = TestEnv::new();
    let total = seed(&env);
    let src = env.path("src");
    let push = |i: usize, token: &str| {
        env.cmd()
            .env("HOPSTAGE_SHARD_DEAD_SECS", "3")
            .args([
                "push",
                src.to_str().unwrap(),
                &env.remote("pushed"),
                "--json",
            ])
            .args([
                "--shard-split",
                "16MiB",
                "--shard",
                &format!("{i}/3"),
                "--shard-run",
                token,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let outs = outputs((0..3).map(|i| push(i, "p1")).collect());
    for (i, (code, _, err)) in outs.iter().enumerate() {
        assert_eq!(*code, Some(0), "rank {i}: {err}");
    }
    assert!(outs[1].1.trim().is_empty() && outs[2].1.trim().is_empty());
    let sum: serde_json::Value = serde_json::from_str(outs[0].1.trim()).unwrap();
    // 33 files and 2 directory stubs, every byte staged exactly once.
    assert_eq!(sum["files_transferred"], 35, "{sum}");
    assert_eq!(sum["bytes_transferred"], total, "{sum}");
    // The blob assembled from three ranks carries a tree hash, and a pull
    // verifies it range by range.
    let head = crate::util::azurite::rt()
        .block_on(env.azurite.store(&env.container).head("pushed/big/a.bin"))
        .unwrap()
        .expect("blob");
    assert!(
        head.metadata.contains_key(hopstage::meta::TREE_KEY),
        "{:?}",
        head.metadata
    );
    let back = env.path("back");
    let pulled = env.run_json(&["pull", &env.remote("pushed"), back.to_str().unwrap()], 0);
    assert_eq!(pulled["files_failed"], 0);
    assert_same_tree(&src, &back);
    // Nothing of the coordination is left in the source tree.
    assert!(std::fs::read_dir(&src).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".hopstage-")));
    // Again: everything is up to date.
    let again = outputs((0..3).map(|i| push(i, "p2")).collect());
    let sum: serde_json::Value = serde_json::from_str(again[0].1.trim()).unwrap();
    assert_eq!(sum["files_transferred"], 0, "{sum}");
    assert_eq!(sum["bytes_transferred"], 0, "{sum}");
}

#[test]
fn a_source_that_changes_between_ranks_is_reported() {
    let env = TestEnv::new();
    seed(&env);
    let src = env.path("src");
    let push = |i: usize| {
        env.cmd()
            .env("HOPSTAGE_SHARD_DEAD_SECS", "5")
            .args([
                "push",
                src.to_str().unwrap(),
                &env.remote("moving"),
                "--json",
            ])
            .args(["--shard", &format!("{i}/2"), "--shard-run", "m1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = push(0);
    // Wait until rank 0 has walked and pushed its share (its `written`
    // marker), then give rank 1 a tree with one more file than rank 0 saw.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_dir(&src).unwrap().any(|e| {
        let e = e.unwrap();
        e.file_name()
            .to_string_lossy()
            .starts_with(".hopstage-shard-")
            && e.path().join("written.m1.0").exists()
    }) {
        assert!(
            Instant::now() < deadline,
            "rank 0 never reached its barrier"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    write(&src, "small/late-arrival", b"late");
    let outs = outputs(vec![first, push(1)]);
    assert_eq!(outs[0].0, Some(1), "{}", outs[0].2);
    assert!(
        outs[0].2.contains("changed while the ranks walked it"),
        "{}",
        outs[0].2
    );
}
