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
    /// Sharded: this rank's share of a file split across ranks.
    part: Option<Part>,
}

/// A rank's share of one split file.
struct Part {
    /// Block ranges `[first, end)` this rank stages.
    mine: Vec<(u64, u64)>,
    /// This rank commits the block list once every rank has staged.
    owner: bool,
}

struct Ctx {
    store: Arc<BlobStore>,
    settings: Settings,
    stats: Arc<Stats>,
    budget: Budget,
    /// Sharded runs: the coordination directory.
    coord: Option<crate::shard::Coord>,
    /// Split files this rank commits after the barrier: path, metadata, blob.
    owned: std::sync::Mutex<Vec<(PathBuf, std::fs::Metadata, String)>>,
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
    // Sharded: the coordination directory lives beside the source (on the
    // shared file system every rank reads from).
    let coord = match (&settings.shard, settings.dry_run) {
        (Some(sh), false) => {
            let root = if top.is_dir() {
                local.to_path_buf()
            } else {
                local.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            let key = format!("push\n{}\n{path}\n{}", store.describe(), local.display());
            Some(
                crate::shard::Coord::new(&root, &key, sh.clone()).map_err(|e| {
                    crate::error::Error::Io {
                        path: format!("{} (pass a writable source for --shard)", root.display()),
                        source: e,
                    }
                })?,
            )
        }
        _ => None,
    };
    if coord.as_ref().is_some_and(|c| c.shard.rank != 0) {
        stats.silent.store(true, Ordering::Relaxed);
    }
    let _beat = coord.as_ref().map(crate::shard::Coord::heartbeat);
    let ctx = Arc::new(Ctx {
        store: Arc::clone(&store),
        budget: Budget::new(settings.max_memory, settings.block_size),
        settings: settings.clone(),
        stats: Arc::clone(&stats),
        coord,
        owned: std::sync::Mutex::new(Vec::new()),
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
        let mut assigner = settings.shard.as_ref().map(|s| {
            (
                s.rank,
                crate::shard::assign::Assigner::new(s.ranks, s.split_min),
            )
        });
        let mine = share_of(&mut assigner, top.len(), settings.block_size);
        let skip = matches!(mine, Mine::No);
        let part = match mine {
            Mine::Part(p) => Some(p),
            Mine::No | Mine::Whole => None,
        };
        if !skip {
            if part.as_ref().is_none_or(|p| p.owner) {
                stats.files_seen.fetch_add(1, Ordering::Relaxed);
                stats.bytes_seen.fetch_add(top.len(), Ordering::Relaxed);
            }
            let job = Job {
                entry: LocalEntry {
                    rel: name,
                    path: local.to_path_buf(),
                    kind: Kind::File,
                    meta: top,
                },
                blob,
                existing,
                part,
            };
            match push_one(&ctx, job).await {
                Err(Failure::Fatal(m)) => {
                    stats.fail(&local.display().to_string(), &m);
                    return Err(crate::error::Error::Usage(m));
                }
                Err(Failure::Item(m)) => stats.fail(&local.display().to_string(), &m),
                Ok(()) => {}
            }
        }
        finish_sharded(&ctx, 0).await?;
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
    let (walk_result, seen) = walker.await.unwrap_or((None, 0));
    if let Some(e) = fatal {
        return Err(crate::error::Error::Usage(e));
    }
    if let Some(e) = walk_result {
        return Err(e.into());
    }
    finish_sharded(&ctx, seen).await?;
    if stats.files_seen.load(Ordering::Relaxed) == 0
        && !settings.allow_empty
        && settings.shard.as_ref().is_none_or(|s| s.rank == 0)
    {
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
) -> (Option<store::Error>, u64) {
    // Sharded ranks compare this digest of the files they saw: the same
    // plan, or the source changed under them.
    let mut seen = xxhash_rust::xxh3::Xxh3::new();
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
                    part: None,
                })
                .is_ok()
            }
            Kind::File => {
                if assigner.is_some() {
                    seen.update(entry.rel.as_bytes());
                    seen.update(&entry.meta.len().to_le_bytes());
                }
                let part = match share_of(&mut assigner, entry.meta.len(), settings.block_size) {
                    Mine::No => return true,
                    Mine::Whole => None,
                    Mine::Part(p) => Some(p),
                };
                if part.as_ref().is_none_or(|p| p.owner) {
                    stats.files_seen.fetch_add(1, Ordering::Relaxed);
                    stats
                        .bytes_seen
                        .fetch_add(entry.meta.len(), Ordering::Relaxed);
                }
                let existing = advance(&blob, &mut fatal, &mut stubs).map(|e| existing_of(&e));
                jobs.blocking_send(Job {
                    entry,
                    blob,
                    existing,
                    part,
                })
                .is_ok()
            }
        }
    });
    (fatal, seen.digest())
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
        part: job_part,
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
    if up_to_date(ctx, &entry, existing).await {
        if job_part.as_ref().is_none_or(|p| p.owner) {
            ctx.stats.skip(&blob, None);
        }
        return Ok(());
    }
    if let Some(p) = job_part {
        return push_part(ctx, &entry, &blob, p).await;
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
        super::reap(&mut parts, &mut failure);
        if failure.is_some() {
            break;
        }
    }
    super::drain(&mut parts, &mut failure).await;
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

/// The skip rule against what the destination holds.
async fn up_to_date(ctx: &Arc<Ctx>, entry: &LocalEntry, existing: Option<Existing>) -> bool {
    let Some(ex) = existing else {
        return false;
    };
    let size = entry.meta.len();
    let local_hash = if ctx.settings.checksum && ex.size == size && ex.hash.is_some() {
        super::local::hash_file_async(entry.path.clone()).await
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
    !should_transfer(ctx.settings.overwrite, ctx.settings.checksum, &src, &dst)
}

/// What this rank does with one file of a sharded push.
enum Mine {
    /// Another rank's whole file.
    No,
    /// This rank's whole file (or not sharded).
    Whole,
    /// A share of a file split across ranks.
    Part(Part),
}

fn share_of(
    assigner: &mut Option<(usize, crate::shard::assign::Assigner)>,
    size: u64,
    block_size: u64,
) -> Mine {
    use crate::shard::assign::Share;
    let Some((rank, a)) = assigner.as_mut() else {
        return Mine::Whole;
    };
    let block = chunk::block_size_for(size, block_size);
    match a.assign(size, block, block) {
        Share::Whole(r) if r == *rank => Mine::Whole,
        Share::Whole(_) => Mine::No,
        share @ Share::Split(_) => {
            let owner = share.owner() == *rank;
            let Share::Split(groups) = share else {
                return Mine::No;
            };
            let mine: Vec<(u64, u64)> = groups
                .iter()
                .filter(|g| g.rank == *rank)
                .map(|g| (g.first, g.end))
                .collect();
            if mine.is_empty() && !owner {
                Mine::No
            } else {
                Mine::Part(Part { mine, owner })
            }
        }
    }
}

/// Block ids of a file pushed by several ranks: no device number (it
/// differs between the nodes that mount one shared file system).
fn shared_fingerprint(m: &std::fs::Metadata) -> u64 {
    chunk::fingerprint(0, m.ino(), m.len(), m.mtime(), m.mtime_nsec())
}

/// This rank's log of the blocks it staged for `blob` (index and xxh3).
fn block_log(coord: &crate::shard::Coord, blob: &str, rank: usize) -> PathBuf {
    let h = xxhash_rust::xxh3::xxh3_64(blob.as_bytes());
    coord.dir().join(format!("blocks-{h:016x}.{rank}"))
}

fn block_log_header(fp: u64, size: u64, block: u64) -> String {
    super::resume::header(Some(&format!("{fp:016x}")), size, block)
}

/// Stages this rank's blocks of a file split across ranks and logs them.
async fn push_part(
    ctx: &Arc<Ctx>,
    entry: &LocalEntry,
    blob: &str,
    part: Part,
) -> Result<(), Failure> {
    let Some(coord) = ctx.coord.clone() else {
        return Err(Failure::Item("sharded part without coordination".into()));
    };
    if ctx.settings.dry_run {
        return Ok(());
    }
    let size = entry.meta.len();
    let block = chunk::block_size_for(size, ctx.settings.block_size);
    let fp = shared_fingerprint(&entry.meta);
    let file = Arc::new(File::open(&entry.path).map_err(|e| format!("cannot open: {e}"))?);
    let staged = ctx.store.uncommitted_blocks(blob).await.map_err(fatal_or)?;
    let log_path = block_log(&coord, blob, coord.shard.rank);
    let header = block_log_header(fp, size, block);
    let logged = super::resume::RangeLog::existing(&log_path, &header);
    let log = Arc::new(
        match logged {
            Some(_) => super::resume::RangeLog::append(&log_path),
            None => super::resume::RangeLog::create(&log_path, &header),
        }
        .map_err(|e| format!("{}: {e}", log_path.display()))?,
    );
    let logged = logged.unwrap_or_default();
    let mut parts = JoinSet::new();
    let mut failure: Option<Failure> = None;
    for i in part.mine.iter().flat_map(|&(a, b)| a..b) {
        let off = i * block;
        let len = block.min(size - off);
        let id = chunk::block_id(fp, i, block);
        if staged.get(&id) == Some(&len) && logged.get(&i).is_some_and(Option::is_some) {
            continue;
        }
        let mut buf = ctx.budget.buffer(len as usize).await;
        let f = Arc::clone(&file);
        let (data, md5, bh) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            f.read_exact_at(&mut buf, off)?;
            let bh = xxhash_rust::xxh3::xxh3_128(&buf);
            let md5 = md5_of(&buf);
            Ok((Bytes::from_owner(buf), md5, bh))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("read failed at offset {off}: {e}"))?;
        let (ctx2, name, log) = (Arc::clone(ctx), blob.to_string(), Arc::clone(&log));
        parts.spawn(async move {
            ctx2.store
                .stage_block(&name, &id, data, md5)
                .await
                .map_err(fatal_or)?;
            log.record(i, Some(bh))
                .map_err(|e| Failure::Item(e.to_string()))?;
            ctx2.stats
                .bytes_transferred
                .fetch_add(len, Ordering::Relaxed);
            Ok(())
        });
        super::reap(&mut parts, &mut failure);
        if failure.is_some() {
            break;
        }
    }
    super::drain(&mut parts, &mut failure).await;
    if let Some(e) = failure {
        return Err(e);
    }
    if part.owner {
        if let Ok(mut owned) = ctx.owned.lock() {
            owned.push((entry.path.clone(), entry.meta.clone(), blob.to_string()));
        }
    }
    Ok(())
}

/// Sharded runs: after every rank has staged, owners commit the split files
/// (tree hash from every rank's block log), then the summaries are gathered.
async fn finish_sharded(ctx: &Arc<Ctx>, seen: u64) -> Result<(), crate::error::Error> {
    let Some(coord) = ctx.coord.clone() else {
        return Ok(());
    };
    let io = |e: std::io::Error| crate::error::Error::Io {
        path: coord.dir().display().to_string(),
        source: e,
    };
    coord.mark("written", &format!("{seen:016x}")).map_err(io)?;
    let b = coord.barrier("written").await;
    let mut views: Vec<&String> = b.markers.values().collect();
    views.dedup();
    if views.len() > 1 && coord.shard.rank == 0 {
        ctx.stats.fail(
            "source tree",
            "changed while the ranks walked it (they saw different files), so some files may not have been pushed: rerun the same command",
        );
    }
    let owned = ctx.owned.lock().map(|o| o.clone()).unwrap_or_default();
    for (path, meta, blob) in owned {
        if let Err(f) = commit_split(ctx, &coord, &path, &meta, &blob).await {
            let note = if b.dead.is_empty() {
                String::new()
            } else {
                format!(" (rank(s) {:?} stopped)", b.dead)
            };
            let msg = match f {
                Failure::Fatal(m) | Failure::Item(m) => m,
            };
            ctx.stats
                .fail(&path.display().to_string(), &format!("{msg}{note}"));
        }
    }
    crate::shard::gather(&coord, &ctx.stats, "push").await
}

async fn commit_split(
    ctx: &Arc<Ctx>,
    coord: &crate::shard::Coord,
    path: &PathBuf,
    meta: &std::fs::Metadata,
    blob: &str,
) -> Result<(), Failure> {
    let size = meta.len();
    let block = chunk::block_size_for(size, ctx.settings.block_size);
    let fp = shared_fingerprint(meta);
    let header = block_log_header(fp, size, block);
    let mut done = super::resume::Done::new();
    for r in 0..coord.shard.ranks {
        if let Some(d) = super::resume::RangeLog::existing(&block_log(coord, blob, r), &header) {
            done.extend(d);
        }
    }
    let count = size.div_ceil(block);
    let hashes: Vec<Option<u128>> = (0..count)
        .map(|i| done.get(&i).copied().flatten())
        .collect();
    let missing = hashes.iter().filter(|h| h.is_none()).count();
    if missing > 0 {
        return Err(Failure::Item(format!(
            "{missing} of {count} blocks were not staged (a rank failed or stopped); rerun the same command to send only those"
        )));
    }
    check_unchanged(path, meta)?;
    let mut posix = posix_of(meta, false);
    posix.tree = chunk::tree_hash(&hashes).map(|h| (block, h));
    let ids: Vec<Vec<u8>> = (0..count).map(|i| chunk::block_id(fp, i, block)).collect();
    ctx.store
        .commit_blocks(blob, &ids, &posix.encode())
        .await
        .map_err(fatal_or)?;
    for r in 0..coord.shard.ranks {
        let _ = std::fs::remove_file(block_log(coord, blob, r));
    }
    tracing::info!(blob = %blob, path = %path.display(), bytes = size, "pushed (sharded)");
    ctx.stats.files_transferred.fetch_add(1, Ordering::Relaxed);
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
