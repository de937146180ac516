//! The staging worker (`hopstage slurm stage`, started by a hook): loads the
//! storage credential while still root, becomes the job's user for good, then
//! runs the job's pulls (phase `in`) or pushes and log uploads (phase `out`)
//! through the ordinary engine, and answers with one JSON [`Outcome`].
//!
//! Owns the classification of failures into user-data errors (the job fails,
//! the node stays up) and node faults (the hook exits non-zero). Invariants:
//! no file is touched before [`super::identity::become_user`] succeeded; every
//! local path is resolved as the job's user and re-checked against the allowed
//! roots, so a symlink the user planted cannot lead outside them; the outcome
//! and the summary uploaded to `log:` carry no secret.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::directives::Directive;
use super::job::Job;
use super::policy::HookConfig;
use crate::config::{AccountFlags, Sources};
use crate::engine::Settings;
use crate::error::Error;
use crate::report::Stats;
use crate::store::BlobStore;

/// Stage in (before the job) or out (after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Pulls.
    In,
    /// Pushes, then the job's output files and the summary.
    Out,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::In => "stage-in",
            Phase::Out => "stage-out",
        }
    }
}

/// What the hook asks the worker to do (sent on its stdin).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Which phase.
    pub phase: Phase,
    /// The job.
    pub job: Job,
    /// Checked directives.
    pub directives: Vec<Directive>,
    /// The config file holding the credential.
    pub config: Option<PathBuf>,
    /// The admin's rules.
    pub hooks: HookConfig,
    /// `ALIAS:/path/JOBID` for logs and summaries.
    pub log_prefix: String,
    /// Phase `out` only: stage-in failed for this reason, so push nothing
    /// (the job never ran) but still file the logs.
    pub skip_pushes: Option<String>,
    /// The directives were refused before any transfer (bad syntax, denied
    /// path): report this as the job's user-data error, transfer nothing.
    pub error: Option<String>,
    /// This node's share when the job's nodes split the stage-in.
    #[serde(default)]
    pub shard: Option<crate::shard::Shard>,
}

/// How a phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Everything staged.
    Ok,
    /// The job's data or directives are wrong: fail the job, keep the node.
    UserError,
    /// This node cannot stage (mount missing, disk full, no credential).
    NodeFault,
}

/// The worker's answer (its stdout) and the summary filed in `log:`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// Job id.
    pub job: String,
    /// `stage-in` or `stage-out`.
    pub phase: String,
    /// How it ended.
    pub status: Status,
    /// One line for the user or admin when not `ok`.
    pub message: Option<String>,
    /// One entry per directive: the directive and its transfer summary.
    pub transfers: Vec<serde_json::Value>,
    /// Where the summary was filed, if it was.
    pub log: Option<String>,
    /// When the phase ended (Unix seconds).
    #[serde(default)]
    pub finished_unix: u64,
}

/// Entry point of `hopstage slurm stage`: reads the request on stdin, writes
/// the outcome on stdout, exits 0 unless the request itself is unreadable.
pub fn main() -> i32 {
    let mut text = String::new();
    let req: Request = match std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hopstage slurm stage: cannot read the request on stdin: {e}");
            return 2;
        }
    };
    let outcome = run(req);
    let text = serde_json::to_string(&outcome).unwrap_or_default();
    // The hook may have stopped listening (epilog hand-off): that is fine.
    let _ = writeln!(std::io::stdout(), "{text}");
    0
}

fn fail(req: &Request, status: Status, message: String) -> Outcome {
    Outcome {
        job: req.job.id.clone(),
        phase: req.phase.name().into(),
        status,
        message: Some(message),
        transfers: Vec::new(),
        log: None,
        finished_unix: now_unix(),
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn run(req: Request) -> Outcome {
    // 1. As root: the credential.
    let sources = match load_sources(req.config.as_deref()) {
        Ok(s) => s,
        Err(e) => return fail(&req, Status::NodeFault, e),
    };
    // 2. Become the job's user, for good.
    if let Err(e) = super::identity::become_user(&req.job.user, req.job.uid, req.job.gid) {
        return fail(&req, Status::NodeFault, e);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&req, Status::NodeFault, format!("tokio runtime: {e}")),
    };
    runtime.block_on(stage(req, sources))
}

/// The hooks read the admin's config file only: no credential from the
/// environment (slurmd's, not the user's, but still not the admin's intent).
pub fn load_sources(config: Option<&Path>) -> Result<Sources, String> {
    let path = config
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/etc/hopstage/config.toml"));
    let file = crate::config::load_file(&path).map_err(|e| e.to_string())?;
    Ok(Sources {
        flags: AccountFlags::default(),
        env: Default::default(),
        file: Some(file),
    })
}

async fn stage(req: Request, sources: Sources) -> Outcome {
    let mut out = Outcome {
        job: req.job.id.clone(),
        phase: req.phase.name().into(),
        status: Status::Ok,
        message: None,
        transfers: Vec::new(),
        log: None,
        finished_unix: 0,
    };
    let note = |out: &mut Outcome, status: Status, msg: String| {
        // The first failure is the one reported; a node fault outranks.
        if out.status == Status::Ok || (status == Status::NodeFault && out.status != status) {
            out.status = status;
            out.message = Some(msg);
        }
    };
    if let Some(why) = &req.skip_pushes {
        out.message = Some(format!("no stage-out: {why}"));
    }
    if let Some(e) = &req.error {
        note(&mut out, Status::UserError, e.clone());
    }
    for d in &req.directives {
        let (local, remote, pull) = match (req.phase, d) {
            (Phase::In, Directive::Pull { remote, local }) => (local, remote, true),
            (Phase::Out, Directive::Push { local, remote }) if req.skip_pushes.is_none() => {
                (local, remote, false)
            }
            _ => continue,
        };
        let record = serde_json::to_value(d).unwrap_or_default();
        let local = match checked_local(local, &req.hooks, pull) {
            Ok(p) => p,
            Err((status, m)) => {
                note(&mut out, status, m.clone());
                out.transfers
                    .push(serde_json::json!({"directive": record, "error": m}));
                if status == Status::NodeFault {
                    break;
                }
                continue;
            }
        };
        let shard = if pull { req.shard.clone() } else { None };
        let (summary, result) = transfer(&sources, &req.hooks, &local, remote, pull, shard).await;
        let failed = match &result {
            Err((status, m)) => Some((*status, m.clone())),
            Ok(()) if summary.as_ref().is_some_and(|s| s.files_failed > 0) => {
                let s = summary
                    .as_ref()
                    .map(|s| s.errors.clone())
                    .unwrap_or_default();
                let disk = s
                    .iter()
                    .any(|e| e.message.starts_with(crate::engine::local::NO_SPACE));
                let first = s
                    .first()
                    .map(|e| format!("{}: {}", e.path, e.message))
                    .unwrap_or_default();
                let what = if pull { "pull" } else { "push" };
                Some((
                    if disk {
                        Status::NodeFault
                    } else {
                        Status::UserError
                    },
                    format!("{what} {remote}: {} files failed; first: {first}", s.len()),
                ))
            }
            Ok(()) => None,
        };
        out.transfers.push(serde_json::json!({
            "directive": record,
            "summary": summary,
            "error": failed.as_ref().map(|f| f.1.clone()),
        }));
        if let Some((status, m)) = failed {
            note(&mut out, status, m);
            if status == Status::NodeFault {
                break;
            }
        }
    }
    if req.phase == Phase::Out {
        upload_outputs(&sources, &req, &mut out).await;
    }
    out.finished_unix = now_unix();
    let name = format!("{}/{}.json", req.log_prefix, req.phase.name());
    // With nodes sharing a stage-in, the first files the (combined) summary.
    if req.shard.as_ref().is_none_or(|s| s.rank == 0) {
        match put_json(&sources, &name, &out).await {
            Ok(()) => out.log = Some(name),
            Err(e) => eprintln!("hopstage: cannot file the summary in {name}: {e}"),
        }
    }
    if req.phase == Phase::In && out.status == Status::UserError {
        tell_the_job(
            &req.job,
            out.message.as_deref().unwrap_or_default(),
            out.log.as_deref(),
        );
    }
    out
}

/// Resolves `local` as the job's user and re-checks it against the roots.
fn checked_local(p: &Path, hooks: &HookConfig, pull: bool) -> Result<PathBuf, (Status, String)> {
    let user = |m: String| (Status::UserError, m);
    // The mount must be there: a missing root is the node's fault.
    let root = hooks
        .allowed_roots
        .iter()
        .find(|r| p.starts_with(r))
        .ok_or_else(|| {
            user(format!(
                "'{}' is outside {}",
                p.display(),
                hooks.roots_text()
            ))
        })?;
    if !root.is_dir() {
        return Err((
            Status::NodeFault,
            format!(
                "'{}' is not there on this node: is the file system mounted?",
                root.display()
            ),
        ));
    }
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(&existing).is_err() {
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(parent)) => {
                rest.push(n.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    if !pull && !rest.is_empty() {
        return Err(user(format!(
            "'{}' does not exist: the job did not write it (check the push directive)",
            p.display()
        )));
    }
    let mut real = existing.canonicalize().map_err(|e| {
        user(format!(
            "cannot resolve '{}' as the job's user: {e}",
            existing.display()
        ))
    })?;
    for n in rest.iter().rev() {
        real.push(n);
    }
    let roots: Vec<PathBuf> = hooks
        .allowed_roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .collect();
    if roots.iter().any(|r| real.starts_with(r)) {
        Ok(real)
    } else {
        Err(user(format!(
            "'{}' resolves to '{}', outside {} (a symbolic link?): use a real path under it",
            p.display(),
            real.display(),
            hooks.roots_text()
        )))
    }
}

fn classify(e: &Error) -> Status {
    use crate::store::Error as S;
    match e {
        Error::Usage(_) | Error::Interrupted => Status::UserError,
        Error::Config(crate::config::Error::Invalid(_)) => Status::UserError,
        Error::Config(_) => Status::NodeFault,
        Error::Store(s) => match s {
            S::Auth { status: 403, .. } => Status::UserError,
            S::Auth { .. } | S::Unreachable { .. } | S::Transient { .. } => Status::NodeFault,
            _ => Status::UserError,
        },
        Error::Io { source, .. } => match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EROFS) | Some(libc::EIO) => Status::NodeFault,
            _ => Status::UserError,
        },
    }
}

fn settings(hooks: &HookConfig) -> Settings {
    Settings {
        concurrency: hooks.concurrency.max(1),
        ..Settings::default()
    }
}

async fn transfer(
    sources: &Sources,
    hooks: &HookConfig,
    local: &Path,
    remote: &str,
    pull: bool,
    shard: Option<crate::shard::Shard>,
) -> (Option<crate::report::Summary>, Result<(), (Status, String)>) {
    let what = if pull { "pull" } else { "push" };
    let started = async {
        let spec = crate::remote::parse(remote).map_err(Error::Usage)?;
        let target = sources.resolve(&spec)?;
        let stats = Stats::new(true);
        let store = Arc::new(BlobStore::new(&target, Arc::clone(&stats.retries))?);
        Ok::<_, Error>((target, stats, store))
    }
    .await;
    let (target, stats, store) = match started {
        Ok(t) => t,
        Err(e) => return (None, Err((classify(&e), format!("{what} {remote}: {e}")))),
    };
    let mut settings = settings(hooks);
    settings.shard = shard;
    let r = if pull {
        crate::engine::pull::pull(store, &target.path, local, settings, Arc::clone(&stats)).await
    } else {
        crate::engine::push::push(store, local, &target.path, settings, Arc::clone(&stats)).await
    };
    let summary = stats.summary(what, false);
    (
        Some(summary),
        r.map_err(|e| {
            // A directive cannot take --allow-empty: do not suggest it.
            let m = e.to_string().replace(", or pass --allow-empty", "");
            (classify(&e), format!("{what} {remote}: {m}"))
        }),
    )
}

/// Phase `out`: the job's stdout and stderr files into the log prefix.
async fn upload_outputs(sources: &Sources, req: &Request, out: &mut Outcome) {
    let mut seen = Vec::new();
    for pattern in [&req.job.stdout, &req.job.stderr].into_iter().flatten() {
        let Some(path) = req.job.output_path(pattern) else {
            continue;
        };
        if seen.contains(&path) || !path.is_file() {
            continue;
        }
        seen.push(path.clone());
        let remote = format!("{}/", req.log_prefix);
        let hooks = HookConfig {
            concurrency: 1,
            ..req.hooks.clone()
        };
        let (summary, r) = transfer(sources, &hooks, &path, &remote, false, None).await;
        out.transfers.push(serde_json::json!({
            "output": path.display().to_string(),
            "summary": summary,
            "error": r.err().map(|e| e.1),
        }));
    }
}

async fn put_json(sources: &Sources, name: &str, value: &Outcome) -> Result<(), String> {
    let body = serde_json::to_vec_pretty(value).map_err(|e| e.to_string())?;
    let spec = crate::remote::parse(name)?;
    let target = sources.resolve(&spec).map_err(|e| e.to_string())?;
    let store = BlobStore::new(&target, Default::default()).map_err(|e| e.to_string())?;
    let md5 = crate::engine::push::md5_of(&body);
    store
        .put_blob(&target.path, body.into(), md5, &Default::default())
        .await
        .map_err(|e| e.to_string())
}

/// Appends the reason to the job's output file (as the job's user), where
/// the user looks first.
fn tell_the_job(job: &Job, message: &str, log: Option<&str>) {
    let Some(path) = job.stdout.as_deref().and_then(|p| job.output_path(p)) else {
        return;
    };
    let text = format!(
        "hopstage: job {} stage-in failed: {message}{}\n",
        job.id,
        log.map(|l| format!(" (summary: {l})")).unwrap_or_default()
    );
    let r = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = r {
        eprintln!("hopstage: cannot write to {}: {e}", path.display());
    }
}
