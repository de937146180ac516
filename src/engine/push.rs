//! Push: a local file or tree → blobs under a prefix.
//!
//! A walker thread visits the tree in blob-name order and merges it with a
//! streamed listing of the destination (bounded channels on both sides), so
//! the skip decision needs no per-file request and no in-memory index. Jobs
//! cross the one sync→async bridge (a bounded `mpsc` fed with
//! `blocking_send`). A file at or below the block size is one Put Blob with a
//! transactional Content-MD5; a larger one is read sequentially in blocks
//! (feeding the whole-file xxh3), each staged in parallel with its own
//! Content-MD5 and a deterministic id, then committed with one Put Block List
//! carrying the POSIX metadata and the xxh3. A file that changes while it is
//! read is reported, not committed.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use md5::{Digest, Md5};
use time::OffsetDateTime;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::{chunk, Budget, Settings};
use crate::filter::{should_transfer, Overwrite, Side};
use crate::meta::PosixMeta;
use crate::pathmap::join_blob;
use crate::report::Stats;
use crate::store::{self, BlobEntry, BlobStore};
use crate::walk::{self, Kind, LocalEntry};

/// Jobs buffered between the walker thread and the dispatcher.
const JOBS_IN_FLIGHT: usize = 256;
/// Remote entries buffered between the destination lister and the walker.
const REMOTE_IN_FLIGHT: usize = 5000;

/// What the destination holds for a name, as far as the skip rule cares.
#[derive(Debug, Clone, Copy)]
struct Existing {
    size: u64,
    mtime: Option<i64>,
    hash: Option<u128>,
}

/// One unit of work.
struct Job {
    entry: LocalEntry,
    blob: String,
    existing: Option<Existing>,
}

struct Ctx {
    store: Arc<BlobStore>,
    settings: Settings,
    stats: Arc<Stats>,
    budget: Budget,
}

fn posix_of(m: &std::fs::Metadata, is_dir: bool) -> PosixMeta {
    PosixMeta {
        uid: Some(m.uid()),
        gid: Some(m.gid()),
        mode: Some(m.mode() & 0o7777),
        mtime: OffsetDateTime::from_unix_timestamp(m.mtime()).ok(),
        is_dir,
        xxh3: None,
        tree: None,
    }
}

/// Pushes `local` (file or directory) to `path` in the store.
pub async fn push(
    store: Arc<BlobStore>,
    local: &Path,
    path: &str,
    settings: Settings,
    stats: Arc<Stats>,
) -> Result<(), crate::error::Error> {
    let top = std::fs::metadata(local).map_err(|e| crate::error::Error::Io {
        path: local.display().to_string(),
        source: e,
    })?;
    store.check_container().await?;
    let ctx = Arc::new(Ctx {
        store: Arc::clone(&store),
        budget: Budget::new(settings.max_memory, settings.block_size),
        settings: settings.clone(),
        stats: Arc::clone(&stats),
    });
    let (jobs_tx, mut jobs_rx) = mpsc::channel::<Job>(JOBS_IN_FLIGHT);

    if !top.is_dir() {
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let blob = if path.is_empty() || path.ends_with('/') {
            join_blob(path, &name)
        } else {
            path.to_string()
        };
        let existing = if settings.overwrite == Overwrite::Always {
            None
        } else {
            store.head(&blob).await?.map(|e| existing_of(&e))
        };
        stats.files_seen.fetch_add(1, Ordering::Relaxed);
        stats.bytes_seen.fetch_add(top.len(), Ordering::Relaxed);
        let job = Job {
            entry: LocalEntry {
                rel: name,
                path: local.to_path_buf(),
                kind: Kind::File,
                meta: top,
            },
            blob,
            existing,
        };
        match push_one(&ctx, job).await {
            Err(Failure::Fatal(m)) => {
                stats.fail(&local.display().to_string(), &m);
                return Err(crate::error::Error::Usage(m));
            }
            Err(Failure::Item(m)) => stats.fail(&local.display().to_string(), &m),
            Ok(()) => {}
        }
        return Ok(());
    }

    let prefix = path.trim_end_matches('/').to_string();
    // Destination listing for the merge (not needed when everything is replaced).
    let (remote_rx, lister) = if settings.overwrite != Overwrite::Always {
        let list_prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let (rx, task) = store.stream_entries(list_prefix, REMOTE_IN_FLIGHT);
        (rx, Some(task))
    } else {
        (mpsc::channel(1).1, None)
    };

    let walker = {
        let root = local.to_path_buf();
        let settings = settings.clone();
        let stats = Arc::clone(&stats);
        let prefix = prefix.clone();
        tokio::task::spawn_blocking(move || {
            walk_and_merge(&root, &prefix, &settings, &stats, remote_rx, jobs_tx)
        })
    };

    let files = Arc::new(Semaphore::new(settings.concurrency));
    let mut tasks = JoinSet::new();
    let mut fatal: Option<String> = None;
    while let Some(job) = jobs_rx.recv().await {
        let Ok(permit) = Arc::clone(&files).acquire_owned().await else {
            break;
        };
        let ctx = Arc::clone(&ctx);
        tasks.spawn(async move {
            let shown = job.entry.path.display().to_string();
            let r = push_one(&ctx, job).await;
            drop(permit);
            match r {
                Err(Failure::Fatal(m)) => {
                    ctx.stats.fail(&shown, &m);
                    Some(m)
                }
                Err(Failure::Item(m)) => {
                    ctx.stats.fail(&shown, &m);
                    None
                }
                Ok(()) => None,
            }
        });
        while let Some(r) = tasks.try_join_next() {
            if let Ok(Some(e)) = r {
                fatal.get_or_insert(e);
            }
        }
        if fatal.is_some() {
            break;
        }
    }
    drop(jobs_rx);
    while let Some(r) = tasks.join_next().await {
        if let Ok(Some(e)) = r {
            fatal.get_or_insert(e);
        }
    }
    if let Some(l) = lister {
        l.abort();
    }
    let walk_result = walker.await.ok().flatten();
    if let Some(e) = fatal {
        return Err(crate::error::Error::Usage(e));
    }
    if let Some(e) = walk_result {
        return Err(e.into());
    }
    if stats.files_seen.load(Ordering::Relaxed) == 0 && !settings.allow_empty {
        return Err(crate::error::Error::Usage(format!(
            "'{}' holds nothing to push: check the path, or pass --allow-empty",
            local.display()
        )));
    }
    Ok(())
}

fn existing_of(e: &BlobEntry) -> Existing {
    let m = PosixMeta::decode(&e.metadata);
    Existing {
        size: e.size,
        mtime: m.mtime.or(e.last_modified).map(|t| t.unix_timestamp()),
        hash: m.xxh3,
    }
}

/// Runs on a blocking thread: walks, merges with the remote listing, emits jobs.
/// Returns a fatal listing error, if any.
fn walk_and_merge(
    root: &Path,
    prefix: &str,
    settings: &Settings,
    stats: &Stats,
    mut remote: mpsc::Receiver<Result<BlobEntry, store::Error>>,
    jobs: mpsc::Sender<Job>,
) -> Option<store::Error> {
    let mut peeked: Option<BlobEntry> = None;
    let mut remote_done = false;
    let mut stubs: HashSet<String> = HashSet::new();
    let mut fatal = None;
    // Sharded: every rank walks the same tree in the same order and keeps the
    // files the assigner gives it (whole files; stubs and notes on rank 0).
    let mut assigner = settings.shard.as_ref().map(|s| {
        (
            s.rank,
            crate::shard::assign::Assigner::new(s.ranks, u64::MAX),
        )
    });
    let lead = settings.shard.as_ref().is_none_or(|s| s.rank == 0);
    // Advances the remote cursor up to `upto` (inclusive) and returns an exact match.
    let mut advance = |upto: &str,
                       fatal: &mut Option<store::Error>,
                       stubs: &mut HashSet<String>|
     -> Option<BlobEntry> {
        loop {
            if peeked.is_none() && !remote_done {
                match remote.blocking_recv() {
                    Some(Ok(e)) => peeked = Some(e),
                    Some(Err(e)) => {
                        *fatal = Some(e);
                        remote_done = true;
                    }
                    None => remote_done = true,
                }
            }
            let e = peeked.as_ref()?;
            match e.name.as_str().cmp(upto) {
                std::cmp::Ordering::Less => {
                    if let Some(e) = peeked.take() {
                        if PosixMeta::decode(&e.metadata).is_dir {
                            stubs.insert(e.name);
                        }
                    }
                }
                std::cmp::Ordering::Equal => return peeked.take(),
                std::cmp::Ordering::Greater => return None,
            }
        }
    };
    walk::walk(root, settings.follow_symlinks, |item| {
        if fatal.is_some() {
            return false;
        }
        let entry = match item {
            Ok(e) => e,
            Err(w) => {
                if lead {
                    stats.files_seen.fetch_add(1, Ordering::Relaxed);
                    stats.fail(&w.path, &w.message);
                }
                return true;
            }
        };
        if !settings.filter.accepts(&entry.rel) {
            return true;
        }
        let blob = join_blob(prefix, &entry.rel);
        match entry.kind {
            Kind::Symlink | Kind::Special | Kind::Dir if !lead => {
                if entry.kind == Kind::Dir {
                    let _ = advance(&format!("{blob}/"), &mut fatal, &mut stubs);
                }
                true
            }
            Kind::File
                if assigner.as_mut().is_some_and(|(rank, a)| {
                    a.assign(entry.meta.len(), settings.block_size, settings.block_size)
                        != crate::shard::assign::Share::Whole(*rank)
                }) =>
            {
                true
            }
            Kind::Symlink | Kind::Special => {
                stats.files_seen.fetch_add(1, Ordering::Relaxed);
                let what = if entry.kind == Kind::Symlink {
                    "symbolic link (use --follow-symlinks to follow)"
                } else {
                    "not a regular file (FIFO, socket or device)"
                };
                stats.skip(&entry.path.display().to_string(), Some(what));
                true
            }
            Kind::Dir => {
                let _ = advance(&format!("{blob}/"), &mut fatal, &mut stubs);
                if !settings.dir_stubs {
                    return true;
                }
                let exists = stubs.remove(&blob);
                if exists && settings.overwrite != Overwrite::Always {
                    return true;
                }
                jobs.blocking_send(Job {
                    entry,
                    blob,
                    existing: None,
                })
                .is_ok()
            }
            Kind::File => {
                stats.files_seen.fetch_add(1, Ordering::Relaxed);
                stats
                    .bytes_seen
                    .fetch_add(entry.meta.len(), Ordering::Relaxed);
                let existing = advance(&blob, &mut fatal, &mut stubs).map(|e| existing_of(&e));
                jobs.blocking_send(Job {
                    entry,
                    blob,
                    existing,
                })
                .is_ok()
            }
        }
    });
    fatal
}

/// How one item failed.
#[derive(Debug)]
enum Failure {
    /// The run cannot go on (credential refused or expired, container gone).
    Fatal(String),
    /// Anything else about this item.
    Item(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Item(s)
    }
}

fn fatal_or(e: store::Error) -> Failure {
    if e.is_fatal() {
        Failure::Fatal(e.to_string())
    } else {
        Failure::Item(e.to_string())
    }
}

/// Uploads one file or directory stub.
async fn push_one(ctx: &Arc<Ctx>, job: Job) -> Result<(), Failure> {
    let Job {
        entry,
        blob,
        existing,
    } = job;
    if entry.kind == Kind::Dir {
        if ctx.settings.dry_run {
            if !ctx.settings.quiet {
                println!("push {}/ -> {blob} (directory stub)", entry.path.display());
            }
            return Ok(());
        }
        let meta = posix_of(&entry.meta, true).encode();
        ctx.store
            .put_blob(&blob, Bytes::new(), md5_of(&[]), &meta)
            .await
            .map_err(fatal_or)?;
        ctx.stats.done(0);
        return Ok(());
    }
    let size = entry.meta.len();
    let mut posix = posix_of(&entry.meta, false);
    if let Some(ex) = existing {
        let local_hash = if ctx.settings.checksum && ex.size == size && ex.hash.is_some() {
            let p = entry.path.clone();
            tokio::task::spawn_blocking(move || super::local::hash_file(&p).ok())
                .await
                .ok()
                .flatten()
        } else {
            None
        };
        let src = Side {
            size,
            mtime: Some(entry.meta.mtime()),
            hash: local_hash,
        };
        let dst = Side {
            size: ex.size,
            mtime: ex.mtime,
            hash: ex.hash,
        };
        if !should_transfer(ctx.settings.overwrite, ctx.settings.checksum, &src, &dst) {
            ctx.stats.skip(&blob, None);
            return Ok(());
        }
    }
    if ctx.settings.dry_run {
        if !ctx.settings.quiet {
            println!("push {} -> {blob} ({size} bytes)", entry.path.display());
        }
        ctx.stats.done(size);
        return Ok(());
    }
    let path = entry.path.clone();
    let file = File::open(&path).map_err(|e| format!("cannot open: {e}"))?;
    let file = Arc::new(file);
    if size <= ctx.settings.block_size {
        let mut buf = ctx.budget.buffer(size as usize).await;
        let f = Arc::clone(&file);
        let (data, md5, hash) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            f.read_exact_at(&mut buf, 0)?;
            let md5 = md5_of(&buf);
            let hash = xxhash_rust::xxh3::xxh3_128(&buf);
            Ok((Bytes::from_owner(buf), md5, hash))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("read failed: {e}"))?;
        check_unchanged(&path, &entry.meta)?;
        posix.xxh3 = Some(hash);
        ctx.store
            .put_blob(&blob, data, md5, &posix.encode())
            .await
            .map_err(fatal_or)?;
        tracing::info!(blob = %blob, path = %path.display(), bytes = size, "pushed");
        ctx.stats.done(size);
        return Ok(());
    }
    let block = chunk::block_size_for(size, ctx.settings.block_size);
    let m = &entry.meta;
    let fp = chunk::fingerprint(m.dev(), m.ino(), size, m.mtime(), m.mtime_nsec());
    // Blocks a killed earlier run already staged (same file version): not sent again.
    let staged = ctx
        .store
        .uncommitted_blocks(&blob)
        .await
        .map_err(fatal_or)?;
    let mut hasher = Box::new(xxhash_rust::xxh3::Xxh3::new());
    let mut block_hashes = Vec::new();
    let mut ids = Vec::new();
    let mut sent = 0u64;
    let mut parts = JoinSet::new();
    let mut failure: Option<Failure> = None;
    for (i, (off, len)) in chunk::ranges(size, block).enumerate() {
        let id = chunk::block_id(fp, i as u64, block);
        let have = staged.get(&id) == Some(&len);
        let mut buf = ctx.budget.buffer(len as usize).await;
        let f = Arc::clone(&file);
        let (data, md5, bh, h) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            f.read_exact_at(&mut buf, off)?;
            hasher.update(&buf);
            let bh = xxhash_rust::xxh3::xxh3_128(&buf);
            let md5 = if have { [0; 16] } else { md5_of(&buf) };
            Ok((Bytes::from_owner(buf), md5, bh, hasher))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("read failed at offset {off}: {e}"))?;
        hasher = h;
        block_hashes.push(Some(bh));
        ids.push(id.clone());
        if have {
            continue;
        }
        sent += len;
        let ctx2 = Arc::clone(ctx);
        let name = blob.clone();
        parts.spawn(async move {
            // The block's buffer returns to the budget when `data` is dropped.
            ctx2.store
                .stage_block(&name, &id, data, md5)
                .await
                .map_err(fatal_or)
        });
        while let Some(r) = parts.try_join_next() {
            if let Some(e) = join_error(r) {
                failure.get_or_insert(e);
            }
        }
        if failure.is_some() {
            break;
        }
    }
    while let Some(r) = parts.join_next().await {
        if let Some(e) = join_error(r) {
            failure.get_or_insert(e);
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    check_unchanged(&path, &entry.meta)?;
    posix.xxh3 = Some(hasher.digest128());
    posix.tree = chunk::tree_hash(&block_hashes).map(|h| (block, h));
    ctx.store
        .commit_blocks(&blob, &ids, &posix.encode())
        .await
        .map_err(fatal_or)?;
    tracing::info!(blob = %blob, path = %path.display(), bytes = sent, "pushed");
    ctx.stats.done(sent);
    Ok(())
}

/// The MD5 of `data` (the transactional Content-MD5 of Put Blob).
pub fn md5_of(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

fn check_unchanged(path: &PathBuf, before: &std::fs::Metadata) -> Result<(), String> {
    let now = std::fs::metadata(path).map_err(|e| format!("cannot stat: {e}"))?;
    if now.len() != before.len()
        || now.mtime() != before.mtime()
        || now.mtime_nsec() != before.mtime_nsec()
    {
        return Err(
            "the file changed while it was being uploaded; nothing was committed, run again".into(),
        );
    }
    Ok(())
}

fn join_error(r: Result<Result<(), Failure>, tokio::task::JoinError>) -> Option<Failure> {
    match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(Failure::Item(e.to_string())),
    }
}
