//! The glue between the parsed command line and the engine: builds the
//! settings and the runtime, resolves targets, runs the command, handles
//! Ctrl-C, and chooses the exit code.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cli::{Command, Opts, TransferArgs};
use crate::config::{AccountFlags, Sources};
use crate::engine::{self, Settings};
use crate::error::{Error, ExitCode};
use crate::filter::Filter;
use crate::meta::PosixMeta;
use crate::progress::Progress;
use crate::remote;
use crate::report::Stats;
use crate::store::BlobStore;

/// Runs one command line to completion and returns the exit code.
pub fn run(opts: Opts) -> Result<ExitCode, Error> {
    init_logging(opts.verbose, opts.log_file.as_deref())?;
    match &opts.command {
        Command::Completions { shell } => {
            let mut cmd = <Opts as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "hopstage", &mut buf);
            return write_stdout(&buf);
        }
        Command::Man => {
            let cmd = <Opts as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map_err(|e| Error::Io {
                    path: "man page".into(),
                    source: e,
                })?;
            return write_stdout(&buf);
        }
        _ => {}
    }
    if let Command::Bootstrap(b) = opts.command {
        return Ok(match crate::bootstrap::run(b, opts.auth.as_deref()) {
            0 => ExitCode::Success,
            1 => ExitCode::Partial,
            _ => ExitCode::Fatal,
        });
    }
    if let Command::Slurm(s) = opts.command {
        // Hooks manage their own processes and privileges: no runtime here.
        return Ok(match crate::slurm::run(s) {
            0 => ExitCode::Success,
            1 => ExitCode::Partial,
            _ => ExitCode::Fatal,
        });
    }
    raise_fd_limit();
    let flags = AccountFlags {
        account: opts.account.clone(),
        blob_endpoint: opts.blob_endpoint.clone(),
        auth: opts.auth.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(2, 8),
        )
        .max_blocking_threads(64)
        .build()
        .map_err(|e| Error::Io {
            path: "tokio runtime".into(),
            source: e,
        })?;
    let read_timeout = std::time::Duration::from_secs(opts.read_timeout);
    runtime.block_on(async move {
        if let Command::Doctor { remote, dest, json } = &opts.command {
            let checks = crate::doctor::run(flags, remote.as_deref(), dest.as_deref()).await;
            return Ok(crate::doctor::finish(&checks, *json));
        }
        let sources = Sources::load(flags)?;
        match opts.command {
            Command::Pull {
                remote: r,
                local,
                common,
                stripe,
            } => {
                let spec = remote::parse(&r).map_err(Error::Usage)?;
                let target = sources.resolve(&spec)?;
                let mut settings = settings(&common, false, true)?;
                settings.stripe = stripe;
                let stats = Stats::new(common.quiet || common.json);
                let store = Arc::new(BlobStore::with_timeout(
                    &target,
                    Arc::clone(&stats.retries),
                    read_timeout,
                )?);
                let _bar = Progress::start(&stats, !(common.quiet || common.json));
                let work =
                    engine::pull::pull(store, &target.path, &local, settings, Arc::clone(&stats));
                finish(work, &stats, "pull", &common).await
            }
            Command::Push {
                local,
                remote: r,
                common,
                follow_symlinks,
                no_dir_stubs,
                create_container,
            } => {
                let spec = remote::parse(&r).map_err(Error::Usage)?;
                let target = sources.resolve(&spec)?;
                let settings = settings(&common, follow_symlinks, !no_dir_stubs)?;
                let stats = Stats::new(common.quiet || common.json);
                let store = Arc::new(BlobStore::with_timeout(
                    &target,
                    Arc::clone(&stats.retries),
                    read_timeout,
                )?);
                if create_container && !common.dry_run {
                    store.create_container().await?;
                }
                let _bar = Progress::start(&stats, !(common.quiet || common.json));
                let work =
                    engine::push::push(store, &local, &target.path, settings, Arc::clone(&stats));
                finish(work, &stats, "push", &common).await
            }
            Command::Layout { path, json, set } => match set {
                None => layout_cmd(&path, json),
                Some(crate::lustre::StripePolicy::Explicit(l)) => {
                    match crate::lustre::set_dir_default(&path, &l) {
                        Ok(()) => layout_cmd(&path, json),
                        Err(crate::lustre::Error::NotLustre) => Err(Error::Usage(format!(
                            "'{}' is not on a Lustre file system: it has no layout",
                            path.display()
                        ))),
                        Err(e) => Err(Error::Usage(e.to_string())),
                    }
                }
                Some(_) => Err(Error::Usage(
                    "--set takes an explicit layout (count=N,size=S[,pool=P] or pfl:...), not a policy".into(),
                )),
            },
            Command::Copy {
                src,
                dst,
                common,
                stripe,
                hsm,
                follow_symlinks,
            } => {
                let mut settings = settings(&common, follow_symlinks, false)?;
                settings.stripe = stripe;
                let stats = Stats::new(common.quiet || common.json);
                let _bar = Progress::start(&stats, !(common.quiet || common.json));
                let work = engine::copy::copy(&src, &dst, settings, Arc::clone(&stats), hsm);
                finish(work, &stats, "copy", &common).await
            }
            Command::Doctor { .. }
            | Command::Completions { .. }
            | Command::Man
            | Command::Bootstrap(_)
            | Command::Slurm(_) => {
                Ok(ExitCode::Success)
            }
            Command::Verify { src, dst, common } => {
                let (local, r) = match (remote::looks_remote(&src), remote::looks_remote(&dst)) {
                    (false, true) => (src, dst),
                    (true, false) => (dst, src),
                    _ => return Err(Error::Usage(
                        "verify compares one local directory with one REMOTE (ALIAS:/path or URL)"
                            .into(),
                    )),
                };
                let spec = remote::parse(&r).map_err(Error::Usage)?;
                let target = sources.resolve(&spec)?;
                let settings = settings(&common, false, true)?;
                let stats = Stats::new(true);
                let store = Arc::new(BlobStore::with_timeout(
                    &target,
                    Arc::clone(&stats.retries),
                    read_timeout,
                )?);
                let report = crate::verify::verify(
                    store,
                    std::path::Path::new(&local),
                    &target.path,
                    settings,
                )
                .await?;
                Ok(crate::verify::finish(&report, common.json))
            }
            Command::Ls {
                remote: r,
                long,
                recursive,
                json,
            } => {
                let spec = remote::parse(&r).map_err(Error::Usage)?;
                let target = sources.resolve(&spec)?;
                let stats = Stats::new(true);
                let store =
                    BlobStore::with_timeout(&target, Arc::clone(&stats.retries), read_timeout)?;
                ls(&store, &target.path, long, recursive, json).await
            }
        }
    })
}

async fn finish(
    work: impl std::future::Future<Output = Result<(), Error>>,
    stats: &Arc<Stats>,
    op: &str,
    common: &TransferArgs,
) -> Result<ExitCode, Error> {
    tokio::select! {
        r = work => {
            if let Err(e) = r {
                // A fatal error after some work (credentials expired mid-run):
                // report what was done before the error itself.
                if stats.files_transferred.load(Ordering::Relaxed) + stats.files_failed.load(Ordering::Relaxed) > 0 {
                    stats.finish(op, common.dry_run, common.json);
                }
                return Err(e);
            }
            Ok(stats.finish(op, common.dry_run, common.json))
        }
        _ = shutdown_signal() => {
            stats.interrupted.store(true, Ordering::Relaxed);
            eprintln!("hopstage: interrupted; finished files are in place, partial ones are not");
            Ok(stats.finish(op, common.dry_run, common.json))
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

fn settings(
    common: &TransferArgs,
    follow_symlinks: bool,
    dir_stubs: bool,
) -> Result<Settings, Error> {
    Ok(Settings {
        concurrency: common
            .concurrency
            .map_or(engine::DEFAULT_CONCURRENCY, |c| c as usize),
        max_memory: common.max_memory.unwrap_or(engine::DEFAULT_MAX_MEMORY),
        block_size: common
            .block_size
            .unwrap_or(engine::DEFAULT_BLOCK_SIZE)
            .min(engine::chunk::MAX_BLOCK_SIZE),
        overwrite: common.overwrite,
        checksum: common.checksum,
        dry_run: common.dry_run,
        filter: Filter::new(&common.include, &common.exclude).map_err(Error::Usage)?,
        allow_empty: common.allow_empty,
        dir_stubs,
        follow_symlinks,
        quiet: common.quiet || common.json,
        stripe: crate::lustre::StripePolicy::Inherit,
        shard: crate::shard::resolve(
            &common.shard,
            common.shard_run.as_deref(),
            &std::env::vars().collect(),
        )
        .map_err(Error::Usage)?
        .map(|mut s| {
            s.split_min = common.shard_split.unwrap_or(s.split_min);
            s
        }),
    })
}

/// `hopstage layout PATH`.
fn layout_cmd(path: &std::path::Path, json: bool) -> Result<ExitCode, Error> {
    use crate::lustre;
    let d = match lustre::read_layout(path) {
        Ok(d) => d,
        Err(lustre::Error::NotLustre) => {
            return Err(Error::Usage(format!(
                "'{}' is not on a Lustre file system: it has no layout",
                path.display()
            )))
        }
        Err(e) => return Err(Error::Usage(e.to_string())),
    };
    if json {
        let comps: Vec<serde_json::Value> = match &d.layout {
            lustre::Layout::Plain(s) => vec![serde_json::json!({
                "start": 0, "end": "eof", "stripe_count": s.stripe_count,
                "stripe_size": s.stripe_size, "pool": s.pool,
            })],
            lustre::Layout::Composite(c) => {
                let mut start = 0u64;
                c.iter()
                    .map(|x| {
                        let v = serde_json::json!({
                            "start": start,
                            "end": if x.end == lustre::layout::LUSTRE_EOF { serde_json::json!("eof") } else { serde_json::json!(x.end) },
                            "stripe_count": x.striping.stripe_count,
                            "stripe_size": x.striping.stripe_size,
                            "pool": x.striping.pool,
                        });
                        start = x.end;
                        v
                    })
                    .collect()
            }
        };
        println!(
            "{}",
            serde_json::json!({"path": path.display().to_string(), "released": d.released, "components": comps})
        );
    } else {
        println!("{}", path.display());
        println!("{}", lustre::describe(&d.layout));
        if d.released {
            println!("released: data is in the HSM backend (reading it triggers a restore)");
        }
    }
    Ok(ExitCode::Success)
}

/// `hopstage ls`: streams pages; without -R, collapses names to the first level
/// (names sharing a `dir/` prefix are contiguous in a listing, so this needs
/// no memory beyond the current directory name).
async fn ls(
    store: &BlobStore,
    path: &str,
    long: bool,
    recursive: bool,
    json: bool,
) -> Result<ExitCode, Error> {
    use std::io::Write;
    let prefix = if path.is_empty() || path.ends_with('/') {
        path.to_string()
    } else {
        match store.head(path).await? {
            Some(e) if !PosixMeta::decode(&e.metadata).is_dir => {
                let mut out = std::io::stdout().lock();
                print_entry(&mut out, &e, &e.name, long, json);
                return Ok(ExitCode::Success);
            }
            _ => format!("{path}/"),
        }
    };
    let mut marker = None;
    let mut last_dir: Option<String> = None;
    let mut count = 0u64;
    loop {
        let (entries, next) = store.list_page(&prefix, marker.take(), None).await?;
        let mut out = std::io::stdout().lock();
        for e in entries {
            let rel = &e.name[prefix.len().min(e.name.len())..];
            if rel.is_empty() {
                continue;
            }
            count += 1;
            if !recursive {
                if let Some((dir, _)) = rel.split_once('/') {
                    if last_dir.as_deref() != Some(dir) {
                        if json {
                            let _ = writeln!(
                                out,
                                "{}",
                                serde_json::json!({"name": format!("{dir}/"), "type": "dir"})
                            );
                        } else {
                            let _ = writeln!(out, "{:>14}  {:19}  {dir}/", "-", "");
                        }
                        last_dir = Some(dir.to_string());
                    }
                    continue;
                }
            }
            if !recursive && PosixMeta::decode(&e.metadata).is_dir {
                if last_dir.as_deref() == Some(rel) {
                    continue;
                }
                last_dir = Some(rel.to_string());
            }
            print_entry(&mut out, &e, rel, long, json);
        }
        match next {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    if count == 0 {
        return Err(Error::Usage(format!(
            "nothing found under '{path}' in {}",
            store.describe()
        )));
    }
    Ok(ExitCode::Success)
}

fn print_entry(
    out: &mut impl std::io::Write,
    e: &crate::store::BlobEntry,
    rel: &str,
    long: bool,
    json: bool,
) {
    let m = PosixMeta::decode(&e.metadata);
    let mtime = m.mtime.or(e.last_modified);
    let when = mtime
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_default();
    let kind = if m.is_dir { "dir" } else { "file" };
    if json {
        let v = serde_json::json!({
            "name": rel, "type": kind, "size": e.size, "modified": when,
            "owner": m.uid, "group": m.gid, "permissions": m.mode.map(|x| format!("{x:04o}")),
        });
        let _ = writeln!(out, "{v}");
    } else if long {
        let opt = |v: Option<u32>| v.map_or("-".to_string(), |x| x.to_string());
        let _ = writeln!(
            out,
            "{} {:>6} {:>6} {:>14}  {when:19}  {rel}{}",
            m.mode.map_or("----".to_string(), |x| format!("{x:04o}")),
            opt(m.uid),
            opt(m.gid),
            e.size,
            if m.is_dir { "/" } else { "" }
        );
    } else {
        let _ = writeln!(
            out,
            "{:>14}  {when:19}  {rel}{}",
            e.size,
            if m.is_dir { "/" } else { "" }
        );
    }
}

/// Logging: human lines on stderr at `-v` levels (or `HOPSTAGE_LOG`), and,
/// with `--log-file`, JSON lines at info level (every file moved, every retry,
/// every failure) for the Slurm epilog to file in `log:`. Messages carry no
/// secrets: every error text is redacted where it is made.
fn init_logging(verbose: u8, log_file: Option<&std::path::Path>) -> Result<(), Error> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOPSTAGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("hopstage={default}")));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter);
    let file = match log_file {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| Error::Io {
                    path: p.display().to_string(),
                    source: e,
                })?;
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::sync::Mutex::new(f))
                    .with_target(false)
                    .with_filter(tracing_subscriber::EnvFilter::new("hopstage=info")),
            )
        }
        None => None,
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
    Ok(())
}

/// Writes `buf` to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(buf: &[u8]) -> Result<ExitCode, Error> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(buf) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            path: "stdout".into(),
            source: e,
        }),
        _ => Ok(ExitCode::Success),
    }
}

/// Raises the soft open-file limit to the hard limit (see `lustre::sys`).
fn raise_fd_limit() {
    if let Err(e) = crate::lustre::sys::raise_nofile_limit() {
        tracing::debug!("cannot raise the open-file limit: {e}");
    }
}
