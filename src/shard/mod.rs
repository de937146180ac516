//! One transfer split across several processes (ranks), typically the tasks
//! of `srun -N 8 --ntasks-per-node=1 hopstage pull ...`: Slurm starts and
//! places them, hopstage only agrees on who moves what.
//!
//! Owns the rank identity ([`Shard`], from `--shard I/N` or
//! `SLURM_PROCID`/`SLURM_STEP_NUM_TASKS`) and the coordination directory on
//! the shared destination ([`Coord`]): the plan written once by rank 0, a
//! heartbeat per rank, and two barriers (data written; files finished) whose
//! markers carry each rank's summary. Invariants: ranks never talk to each
//! other except through files renamed into place whole; markers are named by
//! a run token so a rerun never mistakes an earlier run's markers for its own;
//! a rank is declared dead when its heartbeat stops changing (no clock
//! comparison across nodes).

pub mod assign;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// This process's place in a sharded transfer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    /// 0-based rank.
    pub rank: usize,
    /// Number of ranks.
    pub ranks: usize,
    /// Names this run's markers (`JOBID.STEPID` under srun).
    pub token: String,
    /// Files of at least this many bytes are split across ranks.
    pub split_min: u64,
}

/// Parses `I/N` (0 ≤ I < N).
pub fn parse(spec: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--shard '{spec}': expected I/N with 0 <= I < N, e.g. 0/4 (or auto, off)");
    let (i, n) = spec.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n || n > 65_536 {
        return Err(bad());
    }
    Ok((i, n))
}

/// Resolves `--shard` (`auto`, `off`, `I/N`) against the environment. `auto`
/// shards only inside a multi-task `srun` step (`SLURM_STEP_NUM_TASKS` > 1),
/// never in a batch script, where `SLURM_NTASKS` describes the allocation.
pub fn resolve(
    spec: &str,
    token: Option<&str>,
    env: &BTreeMap<String, String>,
) -> Result<Option<Shard>, String> {
    let slurm_token = || {
        let job = env.get("SLURM_JOB_ID")?;
        let step = env
            .get("SLURM_STEP_ID")
            .or_else(|| env.get("SLURM_STEPID"))?;
        Some(format!("{job}.{step}"))
    };
    let token = token
        .map(str::to_string)
        .or_else(slurm_token)
        .unwrap_or_else(|| "manual".into());
    if token.is_empty()
        || !token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(format!(
            "--shard-run '{token}': use letters, digits, '.', '_' or '-'"
        ));
    }
    match spec {
        "off" => Ok(None),
        "auto" => {
            let n: usize = match env.get("SLURM_STEP_NUM_TASKS").and_then(|v| v.parse().ok()) {
                Some(n) if n > 1 => n,
                _ => return Ok(None),
            };
            let i: usize = env
                .get("SLURM_PROCID")
                .and_then(|v| v.parse().ok())
                .ok_or("SLURM_STEP_NUM_TASKS is set but SLURM_PROCID is not: pass --shard I/N")?;
            if i >= n {
                return Err(format!(
                    "SLURM_PROCID {i} is not below SLURM_STEP_NUM_TASKS {n}"
                ));
            }
            Ok(Some(Shard {
                rank: i,
                ranks: n,
                token,
                split_min: assign::SPLIT_MIN,
            }))
        }
        s => {
            let (rank, ranks) = parse(s)?;
            Ok((ranks > 1).then_some(Shard {
                rank,
                ranks,
                token,
                split_min: assign::SPLIT_MIN,
            }))
        }
    }
}

/// How long a rank may go without a heartbeat before it is declared dead
/// (`HOPSTAGE_SHARD_DEAD_SECS` overrides, e.g. for a test or a slow file system).
pub const DEAD_AFTER: Duration = Duration::from_secs(60);

fn dead_after() -> Duration {
    std::env::var("HOPSTAGE_SHARD_DEAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(DEAD_AFTER, Duration::from_secs)
}
/// How often a rank beats.
pub const BEAT: Duration = Duration::from_secs(5);

/// The coordination directory of one sharded transfer.
#[derive(Debug, Clone)]
pub struct Coord {
    dir: PathBuf,
    /// This rank.
    pub shard: Shard,
}

/// What a barrier found.
#[derive(Debug)]
pub struct Barrier {
    /// The markers' contents, by rank (summaries).
    pub markers: BTreeMap<usize, String>,
    /// Ranks that stopped beating without reaching the barrier.
    pub dead: Vec<usize>,
}

impl Coord {
    /// The directory for transferring `key` (source and prefix) into `root`
    /// with this many ranks; created if needed.
    pub fn new(root: &Path, key: &str, shard: Shard) -> std::io::Result<Coord> {
        let h = xxhash_rust::xxh3::xxh3_64(format!("{key}\n{}", shard.ranks).as_bytes());
        let dir = root.join(format!(
            "{}shard-{h:016x}",
            crate::engine::local::TEMP_PREFIX
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Coord { dir, shard })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The plan journal (written by rank 0).
    pub fn plan_path(&self) -> PathBuf {
        self.dir.join("plan.jsonl")
    }

    fn marker(&self, kind: &str, rank: usize) -> PathBuf {
        self.dir.join(format!("{kind}.{}.{rank}", self.shard.token))
    }

    /// Writes `contents` to this rank's `kind` marker (atomically).
    pub fn mark(&self, kind: &str, contents: &str) -> std::io::Result<()> {
        let path = self.marker(kind, self.shard.rank);
        let tmp = self.dir.join(format!(
            ".{kind}.{}.{}.tmp",
            self.shard.token, self.shard.rank
        ));
        std::fs::write(&tmp, contents)?;
        std::fs::rename(&tmp, &path)
    }

    /// Beats once (a counter in this rank's `alive` marker).
    pub fn beat(&self, n: u64) {
        let _ = self.mark("alive", &n.to_string());
    }

    /// Spawns the heartbeat; it stops when the returned handle is dropped.
    pub fn heartbeat(&self) -> HeartBeat {
        let me = self.clone();
        me.beat(0);
        HeartBeat(tokio::spawn(async move {
            let mut n = 1u64;
            loop {
                tokio::time::sleep(BEAT).await;
                me.beat(n);
                n += 1;
            }
        }))
    }

    /// Waits until every rank has written its `kind` marker, or has stopped
    /// beating for [`DEAD_AFTER`].
    pub async fn barrier(&self, kind: &str) -> Barrier {
        let mut last: BTreeMap<usize, (String, Instant)> = BTreeMap::new();
        let start = Instant::now();
        loop {
            let mut markers = BTreeMap::new();
            let mut dead = Vec::new();
            for r in 0..self.shard.ranks {
                if let Ok(s) = std::fs::read_to_string(self.marker(kind, r)) {
                    markers.insert(r, s);
                    continue;
                }
                let beat = std::fs::read_to_string(self.marker("alive", r)).unwrap_or_default();
                let now = Instant::now();
                let seen = last.entry(r).or_insert((beat.clone(), now));
                if seen.0 != beat {
                    *seen = (beat, now);
                } else if now.duration_since(seen.1) >= dead_after()
                    && start.elapsed() >= dead_after()
                {
                    dead.push(r);
                }
            }
            if markers.len() + dead.len() == self.shard.ranks {
                return Barrier { markers, dead };
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until rank 0 has published a complete plan, or stopped beating.
    pub async fn wait_plan(&self, complete: impl Fn(&Path) -> bool) -> Result<(), String> {
        let mut last = (String::new(), Instant::now());
        let start = Instant::now();
        loop {
            if complete(&self.plan_path()) {
                return Ok(());
            }
            let beat = std::fs::read_to_string(self.marker("alive", 0)).unwrap_or_default();
            if beat != last.0 {
                last = (beat, Instant::now());
            } else if last.1.elapsed() >= dead_after() && start.elapsed() >= dead_after() {
                return Err(format!(
                    "rank 0 published no plan in {} and stopped beating: check rank 0's output, then rerun the same command",
                    self.dir.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Removes the directory (rank 0, once every rank has finished cleanly).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The end of a sharded run: every rank files its summary; rank 0 waits for
/// all, adds them to its own (it prints for everyone), reports ranks that
/// stopped, and removes the shared state when everything finished cleanly.
pub async fn gather(
    coord: &Coord,
    stats: &crate::report::Stats,
    operation: &str,
) -> Result<(), crate::error::Error> {
    let mine = serde_json::to_string(&stats.summary(operation, false)).unwrap_or_default();
    coord
        .mark("finished", &mine)
        .map_err(|e| crate::error::Error::Io {
            path: coord.dir().display().to_string(),
            source: e,
        })?;
    if coord.shard.rank != 0 {
        return Ok(());
    }
    let b = coord.barrier("finished").await;
    for (r, text) in &b.markers {
        if *r != 0 {
            if let Ok(sum) = serde_json::from_str::<crate::report::Summary>(text) {
                stats.absorb(&sum);
            }
        }
    }
    for r in &b.dead {
        stats.fail(
            &format!("rank {r}"),
            "stopped before finishing its share: rerun the same command (a new srun step, or a new --shard-run) to complete it",
        );
    }
    if stats
        .files_failed
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        coord.remove();
    }
    Ok(())
}

/// A running heartbeat; dropping it stops the beats.
#[derive(Debug)]
pub struct HeartBeat(tokio::task::JoinHandle<()>);

impl Drop for HeartBeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn specs() {
        assert_eq!(parse("2/4"), Ok((2, 4)));
        assert!(parse("4/4").is_err());
        assert!(parse("1/0").is_err());
        assert!(parse("x").is_err());
        let e = env(&[]);
        assert_eq!(resolve("auto", None, &e), Ok(None));
        assert_eq!(resolve("0/1", None, &e), Ok(None));
        let s = resolve("1/3", Some("r1"), &e).unwrap().unwrap();
        assert_eq!((s.rank, s.ranks, s.token.as_str()), (1, 3, "r1"));
        assert!(resolve("1/3", Some("a b"), &e).is_err());
    }

    #[test]
    fn auto_only_inside_an_srun_step() {
        // A batch script: SLURM_NTASKS and SLURM_PROCID but no step task count.
        let batch = env(&[
            ("SLURM_NTASKS", "8"),
            ("SLURM_PROCID", "0"),
            ("SLURM_JOB_ID", "5"),
        ]);
        assert_eq!(resolve("auto", None, &batch), Ok(None));
        let step = env(&[
            ("SLURM_STEP_NUM_TASKS", "4"),
            ("SLURM_PROCID", "3"),
            ("SLURM_JOB_ID", "5"),
            ("SLURM_STEP_ID", "2"),
        ]);
        let s = resolve("auto", None, &step).unwrap().unwrap();
        assert_eq!((s.rank, s.ranks, s.token.as_str()), (3, 4, "5.2"));
        assert_eq!(resolve("off", None, &step), Ok(None));
    }
}
