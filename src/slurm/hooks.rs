//! The hooks themselves: `prolog`, `epilog` and the burst-buffer calls.
//! Each runs as root, reads the job's directives, decides who stages (one
//! process per job), starts the staging worker ([`super::stage`]) as a child
//! and turns its outcome into what Slurm understands.
//!
//! Owns the failure policy and the per-job state directory. Invariants: a
//! user-data error never makes a hook exit non-zero (that would drain the
//! node) — the job is cancelled or held with the reason in its AdminComment
//! and output file; only a node fault exits 1. Markers are written atomically
//! (temporary name, then rename) in a root-owned directory the user cannot
//! write. Rerunning any hook for the same job is safe: staging resumes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::directives::{self, Directive, Vars};
use super::job::Job;
use super::policy::{HookConfig, OnUserError};
use super::stage::{Outcome, Phase, Request, Status};

/// Everything a hook needs before it acts.
struct Ctx {
    job: Job,
    hooks: HookConfig,
    config: Option<PathBuf>,
}

fn load(config: Option<PathBuf>, job: Job) -> Result<Ctx, String> {
    let path = config
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/hopstage/config.toml"));
    let file = crate::config::load_file(&path).map_err(|e| e.to_string())?;
    let hooks = HookConfig::from_value(file.slurm.as_ref())?;
    Ok(Ctx {
        job,
        hooks,
        config: Some(path),
    })
}

fn env_job() -> Result<Job, String> {
    Job::from_env(&std::env::vars().collect())
}

/// `hopstage slurm prolog`: stage in before the job starts.
pub fn prolog(config: Option<PathBuf>) -> i32 {
    let job = match env_job() {
        Ok(j) => j,
        Err(e) => return node_fault("prolog", &e),
    };
    // Most jobs carry no directives: decide that before anything can fail.
    let script = batch_script(&job.id);
    let parsed = all_directives(&job, script.as_deref());
    if matches!(&parsed, Ok(d) if d.is_empty()) {
        return 0;
    }
    let ctx = match load(config, job) {
        Ok(c) => c,
        Err(e) => return node_fault("prolog", &e),
    };
    let dir = ctx.hooks.state_dir.join(&ctx.job.id);
    if dir.join("bb").exists() {
        // The burst buffer staged this job while it was pending.
        return 0;
    }
    let marker = dir.join(format!("stage-in.{}.json", ctx.job.restarts));
    // Either every node takes a share of the stage-in, or the first node
    // stages alone while the others wait for its marker.
    let shard = node_shard(&ctx);
    if shard.is_none() && !ctx.job.is_leader() {
        return wait_for(&marker, Duration::from_secs(ctx.hooks.node_wait_secs));
    }
    if let Err(e) = ensure_state_dir(&dir) {
        return node_fault("prolog", &e);
    }
    let (directives, error) = match parsed.and_then(|d| check(&ctx, d)) {
        Ok(d) => (d, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let _ = write_atomic(
        &dir.join("directives.json"),
        &serde_json::to_vec(&directives).unwrap_or_default(),
    );
    let budget = Some(ctx.hooks.stage_in_secs)
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    let mut req = request(&ctx, Phase::In, directives, error, None);
    req.shard = shard;
    let outcome = match run_worker(&req, budget, false) {
        Worker::Done(o) => o,
        Worker::TimedOut => {
            let msg = format!(
                "stage-in did not finish within {} s; the job is requeued and staging resumes where it stopped",
                ctx.hooks.stage_in_secs
            );
            admin_comment(&ctx.job.id, &msg);
            slurm_cmd("scontrol", &["requeue", &ctx.job.id]);
            eprintln!("hopstage prolog: job {}: {msg}", ctx.job.id);
            return 0;
        }
        Worker::Handed(_) => return 0,
        Worker::Failed(e) => return node_fault("prolog", &e),
    };
    if !ctx.job.is_leader() {
        // A sharing node: its own faults drain it; the first node reports
        // the job's errors and writes the marker.
        return match outcome.status {
            Status::NodeFault => {
                node_fault("stage-in", outcome.message.as_deref().unwrap_or_default())
            }
            _ => 0,
        };
    }
    let _ = write_atomic(&marker, &serde_json::to_vec(&outcome).unwrap_or_default());
    finish_stage_in(&ctx, &outcome, false)
}

/// This node's share of the stage-in when `[slurm] shard_nodes` is on and
/// the job spans several nodes (node prologs only).
fn node_shard(ctx: &Ctx) -> Option<crate::shard::Shard> {
    if !ctx.hooks.shard_nodes || ctx.job.nodes.len() < 2 || ctx.job.this_node.is_empty() {
        return None;
    }
    let rank = ctx.job.nodes.iter().position(|n| *n == ctx.job.this_node)?;
    Some(crate::shard::Shard {
        rank,
        ranks: ctx.job.nodes.len(),
        token: format!("{}.{}", ctx.job.id, ctx.job.restarts),
        split_min: ctx.hooks.shard_split.max(1),
    })
}

/// Acts on a stage-in outcome: 0, or fail the job, or 1 for a node fault.
fn finish_stage_in(ctx: &Ctx, outcome: &Outcome, bb: bool) -> i32 {
    let msg = outcome.message.clone().unwrap_or_default();
    match outcome.status {
        Status::Ok => 0,
        Status::UserError if bb => {
            // The burst buffer plugin holds the job and shows our message.
            eprintln!("{msg}");
            1
        }
        Status::UserError => {
            admin_comment(&ctx.job.id, &msg);
            match ctx.hooks.on_user_error {
                OnUserError::Cancel => slurm_cmd("scancel", &[&ctx.job.id]),
                OnUserError::Hold => slurm_cmd("scontrol", &["requeuehold", &ctx.job.id]),
            }
            eprintln!("hopstage prolog: job {}: {msg}", ctx.job.id);
            0
        }
        Status::NodeFault => node_fault("stage-in", &msg),
    }
}

/// `hopstage slurm epilog`: stage out after the job ends, file its logs.
pub fn epilog(config: Option<PathBuf>) -> i32 {
    let ctx = match env_job().and_then(|job| load(config, job)) {
        Ok(c) => c,
        Err(e) => return node_fault("epilog", &e),
    };
    if !ctx.job.is_leader() {
        return 0;
    }
    let dir = ctx.hooks.state_dir.join(&ctx.job.id);
    if dir.join("bb").exists() {
        return 0;
    }
    let saved = std::fs::read(dir.join("directives.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<Directive>>(&b).ok());
    let directives = match saved {
        Some(d) => d,
        None => match all_directives(&ctx.job, batch_script(&ctx.job.id).as_deref())
            .and_then(|d| check(&ctx, d))
        {
            Ok(d) if d.is_empty() => return 0,
            Ok(d) => d,
            Err(_) => Vec::new(),
        },
    };
    let skip = stage_in_failure(&dir, ctx.job.restarts);
    let req = request(&ctx, Phase::Out, directives, None, skip);
    let wait = Duration::from_secs(ctx.hooks.epilog_wait_secs);
    let code = match run_worker(&req, Some(wait), true) {
        Worker::Done(o) if o.status == Status::NodeFault => {
            node_fault("stage-out", o.message.as_deref().unwrap_or_default())
        }
        Worker::Done(_) => 0,
        Worker::Handed(pid) => {
            eprintln!(
                "hopstage epilog: job {}: stage-out continues in the background (pid {pid}); its summary goes to {}",
                ctx.job.id, req.log_prefix
            );
            return 0;
        }
        Worker::TimedOut => 0,
        Worker::Failed(e) => node_fault("epilog", &e),
    };
    let _ = std::fs::remove_dir_all(&dir);
    code
}

/// `hopstage slurm bb data-in|data-out JOBID SCRIPT`: the burst-buffer path,
/// run by slurmctld while the job is pending (data-in) or after it (data-out).
pub fn burst_buffer(config: Option<PathBuf>, phase: Phase, job_id: &str, script: &Path) -> i32 {
    let job = match scontrol_job(job_id) {
        Ok(j) => j,
        Err(e) => return node_fault("burst buffer", &e),
    };
    let ctx = match load(config, job) {
        Ok(c) => c,
        Err(e) => return node_fault("burst buffer", &e),
    };
    let text = std::fs::read_to_string(script).ok();
    let dir = ctx.hooks.state_dir.join(&ctx.job.id);
    if let Err(e) = ensure_state_dir(&dir) {
        return node_fault("burst buffer", &e);
    }
    let checked = all_directives(&ctx.job, text.as_deref()).and_then(|d| check(&ctx, d));
    let (directives, error) = match checked {
        Ok(d) => (d, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let _ = write_atomic(&dir.join("bb"), phase_name(phase).as_bytes());
    let skip = match phase {
        Phase::Out => stage_in_failure(&dir, ctx.job.restarts),
        Phase::In => None,
    };
    let req = request(&ctx, phase, directives, error, skip);
    match run_worker(&req, None, false) {
        Worker::Done(o) => {
            if phase == Phase::In {
                let marker = dir.join(format!("stage-in.{}.json", ctx.job.restarts));
                let _ = write_atomic(&marker, &serde_json::to_vec(&o).unwrap_or_default());
                finish_stage_in(&ctx, &o, true)
            } else {
                let _ = std::fs::remove_dir_all(&dir);
                i32::from(o.status == Status::NodeFault)
            }
        }
        Worker::Failed(e) => node_fault("burst buffer", &e),
        Worker::TimedOut | Worker::Handed(_) => 0,
    }
}

fn phase_name(p: Phase) -> String {
    format!("{p:?}").to_lowercase()
}

/// `hopstage slurm bb validate SCRIPT UID`: submit-time check (fast, no I/O
/// beyond the script and the config). Prints the reason and returns 1 when
/// the job should be rejected.
pub fn validate(config: Option<PathBuf>, script: &Path, uid: Option<&str>) -> i32 {
    let uid: Option<u32> = uid.and_then(|u| u.parse().ok());
    let user = uid
        .and_then(|u| {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u))
                .ok()
                .flatten()
        })
        .map(|u| u.name)
        .unwrap_or_else(|| "JOB_USER".into());
    let uid = uid.unwrap_or(u32::MAX);
    let job = Job {
        id: "0".into(),
        user,
        uid,
        ..Job::default()
    };
    let ctx = match load(config, job) {
        Ok(c) => c,
        Err(e) => {
            println!("hopstage: {e}");
            return 1;
        }
    };
    let text = std::fs::read_to_string(script).ok();
    match all_directives(&ctx.job, text.as_deref()).and_then(|d| check(&ctx, d)) {
        Ok(_) => 0,
        Err(e) => {
            println!("hopstage: {e}");
            1
        }
    }
}

fn request(
    ctx: &Ctx,
    phase: Phase,
    directives: Vec<Directive>,
    error: Option<String>,
    skip_pushes: Option<String>,
) -> Request {
    let log_prefix = ctx
        .hooks
        .log_prefix(&directives, &ctx.job.user, &ctx.job.id);
    Request {
        phase,
        job: ctx.job.clone(),
        directives,
        config: ctx.config.clone(),
        hooks: ctx.hooks.clone(),
        log_prefix,
        skip_pushes,
        error,
        shard: None,
    }
}

/// The stage-in failure recorded for this run of the job, if any.
fn stage_in_failure(dir: &Path, restarts: u32) -> Option<String> {
    let bytes = std::fs::read(dir.join(format!("stage-in.{restarts}.json"))).ok()?;
    let o: Outcome = serde_json::from_slice(&bytes).ok()?;
    (o.status != Status::Ok).then(|| {
        format!(
            "stage-in failed: {}",
            o.message.unwrap_or_else(|| "no reason recorded".into())
        )
    })
}

/// Directives from the script, else from the job comment.
fn all_directives(job: &Job, script: Option<&str>) -> Result<Vec<Directive>, String> {
    let vars = Vars {
        job_id: &job.id,
        user: &job.user,
    };
    let mut d = match script {
        Some(s) => directives::parse_script(s, &vars).map_err(|e| format!("batch script {e}"))?,
        None => Vec::new(),
    };
    d.extend(directives::parse_comment(&job.comment, &vars).map_err(|e| e.to_string())?);
    Ok(d)
}

fn check(ctx: &Ctx, d: Vec<Directive>) -> Result<Vec<Directive>, String> {
    for x in &d {
        ctx.hooks.check(x, &ctx.job.user)?;
    }
    Ok(d)
}

/// How a worker run ended.
enum Worker {
    /// It answered.
    Done(Outcome),
    /// It ran past the budget and was stopped.
    TimedOut,
    /// It ran past the wait and was left running in the background.
    Handed(u32),
    /// It could not be started or gave no answer.
    Failed(String),
}

/// Starts `hopstage slurm stage` as a child, sends the request and waits.
/// With `detach`, the child gets its own process group (so it outlives the
/// epilog) and is left running after `limit`; without, it is killed.
fn run_worker(req: &Request, limit: Option<Duration>, detach: bool) -> Worker {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return Worker::Failed(format!("cannot find the hopstage binary: {e}")),
    };
    let mut cmd = Command::new(exe);
    cmd.args(["slurm", "stage"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if detach {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Worker::Failed(format!("cannot start the staging worker: {e}")),
    };
    let body = serde_json::to_vec(req).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        if let Err(e) = stdin.write_all(&body) {
            let _ = child.kill();
            let _ = child.wait();
            return Worker::Failed(format!("cannot send the request to the worker: {e}"));
        }
    }
    let Some(mut stdout) = child.stdout.take() else {
        return Worker::Failed("worker has no stdout".into());
    };
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(e) => return Worker::Failed(format!("waiting for the worker: {e}")),
        }
        if limit.is_some_and(|l| start.elapsed() >= l) {
            if detach {
                return Worker::Handed(child.id());
            }
            // SIGTERM first: the worker's runs stop cleanly and resume later.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let grace = Instant::now();
            while grace.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            return Worker::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = reader.join().unwrap_or_default();
    match serde_json::from_str::<Outcome>(text.trim()) {
        Ok(o) => Worker::Done(o),
        Err(_) => Worker::Failed("the staging worker gave no answer (see the slurmd log)".into()),
    }
}

fn node_fault(hook: &str, message: &str) -> i32 {
    eprintln!("hopstage {hook}: node fault: {message}");
    1
}

/// Waits for the leader's marker; a timeout lets the job start (the data is
/// on the shared file system or the leader failed the job).
fn wait_for(marker: &Path, timeout: Duration) -> i32 {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if marker.exists() {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "hopstage prolog: no stage-in marker {} after {} s; letting the job start",
        marker.display(),
        timeout.as_secs()
    );
    0
}

fn ensure_state_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let parent = dir.parent().unwrap_or(dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(parent)
        .map_err(|e| {
            format!(
                "cannot create the state directory {}: {e}",
                parent.display()
            )
        })?;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    // Never trust a directory (or link) someone else made there.
    let m = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !m.is_dir() || m.uid() != nix::unistd::Uid::effective().as_raw() {
        return Err(format!(
            "{} is not a directory owned by this hook's user: remove it",
            dir.display()
        ));
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The job's batch script, through `scontrol write batch_script` (root only;
/// `None` for jobs without one: salloc, srun).
fn batch_script(job_id: &str) -> Option<String> {
    let out = output_within(
        Command::new("scontrol").args(["write", "batch_script", job_id, "-"]),
        SLURM_CMD_LIMIT,
    )
    .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()
}

fn scontrol_job(job_id: &str) -> Result<Job, String> {
    if job_id.is_empty() || !job_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{job_id}' is not a job id"));
    }
    let out = output_within(
        Command::new("scontrol").args(["show", "job", "-o", job_id]),
        SLURM_CMD_LIMIT,
    )
    .map_err(|e| format!("scontrol: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scontrol show job {job_id}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Job::from_scontrol(String::from_utf8_lossy(&out.stdout).trim())
}

fn admin_comment(job_id: &str, message: &str) {
    // AdminComment is shown by `scontrol show job` and kept in accounting.
    let text: String = format!("hopstage: {message}")
        .chars()
        .map(|c| if c == '"' || c.is_control() { '\'' } else { c })
        .take(1000)
        .collect();
    slurm_cmd(
        "scontrol",
        &[
            "update",
            &format!("JobId={job_id}"),
            &format!("AdminComment={text}"),
        ],
    );
}

fn slurm_cmd(cmd: &str, args: &[&str]) {
    match output_within(Command::new(cmd).args(args), SLURM_CMD_LIMIT) {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "hopstage: {cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => eprintln!("hopstage: cannot run {cmd}: {e}"),
    }
}

/// How long a Slurm client command may take (an unreachable controller must
/// not hold a prolog for long).
const SLURM_CMD_LIMIT: Duration = Duration::from_secs(30);

/// `Command::output` with a time limit; the command is killed past it.
fn output_within(cmd: &mut Command, limit: Duration) -> Result<std::process::Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run: {e}"))?;
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let reader = std::thread::spawn(move || {
        let mut o = Vec::new();
        if let Some(s) = out.as_mut() {
            let _ = s.read_to_end(&mut o);
        }
        o
    });
    let ereader = std::thread::spawn(move || {
        let mut o = Vec::new();
        if let Some(s) = err.as_mut() {
            let _ = s.read_to_end(&mut o);
        }
        o
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", limit.as_secs()));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    Ok(std::process::Output {
        status,
        stdout: reader.join().unwrap_or_default(),
        stderr: ereader.join().unwrap_or_default(),
    })
}
