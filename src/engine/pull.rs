//! Pull: blobs under a prefix → files under a local directory.
//!
//! The lister fetches pages into a bounded channel; the dispatcher maps each
//! name to a safe local path, applies the filters and starts a file task
//! under the files-in-flight semaphore. A file at or below the block size is
//! one GET; a larger one is cut into block-size ranges fetched in parallel
//! with `If-Match` on the ETag and written with `pwrite` at their offsets into
//! a temporary file, then verified (size; xxh3-128 from metadata, or the
//! blob's Content-MD5 for single-GET files), given its mode, mtime and owner,
//! and renamed into place.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use md5::{Digest, Md5};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::local::{self, DirMaker};
use super::{chunk, plan, resume, Budget, Settings, LIST_PAGES_IN_FLIGHT};
use crate::filter::{should_transfer, Side};
use crate::lustre::{policy, Layout, LustreDir, StripePolicy};
use crate::meta::PosixMeta;
use crate::pathmap;
use crate::report::Stats;
use crate::store::{self, BlobEntry, BlobStore};

mod shard;

/// Shared state of one pull.
struct Ctx {
    store: Arc<BlobStore>,
    settings: Settings,
    stats: Arc<Stats>,
    budget: Budget,
    dirs: DirMaker,
    root: PathBuf,
    /// Set when the destination is on Lustre.
    lustre: Option<LustreDir>,
}

impl Ctx {
    /// Classifies a storage error for one file.
    fn err(&self, e: store::Error) -> Failure {
        match e {
            store::Error::Changed { .. } => Failure::Changed(e.to_string()),
            e if e.is_fatal() => Failure::Fatal(e.to_string()),
            e => Failure::Item(e.to_string()),
        }
    }

    /// The layout a new file of `size` bytes gets (None: inherit / not Lustre).
    fn layout_for(&self, size: u64) -> Option<Layout> {
        let l = self.lustre.as_ref()?;
        match &self.settings.stripe {
            StripePolicy::Inherit | StripePolicy::Mirror => None,
            StripePolicy::Auto => policy::auto(size, l.osts),
            StripePolicy::Explicit(x) => Some(x.clone()),
        }
    }

    /// Range size for a ranged download: stripe-aligned on Lustre.
    fn range_size(&self, size: u64, layout: Option<&Layout>) -> u64 {
        let block = chunk::block_size_for(size, self.settings.block_size);
        match (&self.lustre, layout) {
            (Some(_), Some(l)) => policy::aligned_block(block, l.stripe_size_at(0).max(1 << 20)),
            (Some(_), None) => policy::aligned_block(block, 1 << 20),
            _ => block,
        }
    }

    /// Block size of a ranged download of `entry`, and the tree hash to check
    /// ranges against when the blob has one that fits. Every rank of a
    /// sharded pull computes the same answer.
    fn block_plan(&self, size: u64, meta: &PosixMeta) -> (u64, Option<(u64, u128)>) {
        let tree = meta
            .tree
            .filter(|(bs, _)| (1 << 20..=256 << 20).contains(bs) && *bs % 4096 == 0);
        let layout = self.layout_for(size);
        let aligned = self.range_size(size, layout.as_ref());
        // The pushed block size verifies each range as it lands when it is also
        // stripe-aligned; otherwise ranges follow the stripes and the whole file
        // is hashed at the end.
        let tree = tree.filter(|(bs, _)| self.lustre.is_none() || *bs % aligned == 0);
        (tree.map_or(aligned, |t| t.0), tree)
    }

    /// Creates `dest`'s directory below the root (never through a symlink).
    fn ensure_parent(&self, dest: &Path) -> Result<(), Failure> {
        let parent_rel = dest
            .parent()
            .and_then(|p| p.strip_prefix(&self.root).ok())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        self.dirs
            .ensure(&self.root, &parent_rel)
            .map_err(|e| Failure::Item(format!("cannot create its directory: {e}")))
    }

    /// Creates the temporary file, with its layout first when on Lustre.
    fn create_temp(&self, tmp: &Path, size: u64) -> Result<std::fs::File, String> {
        match self.layout_for(size) {
            None => local::create_temp(tmp).map_err(|e| io_message(&e, tmp)),
            Some(layout) => {
                let _ = fs::remove_file(tmp);
                crate::lustre::create_with_layout(tmp, &layout, 0o600).map_err(|e| e.to_string())
            }
        }
    }
}

/// Nearest existing ancestor of `p` (for detecting the file system of a
/// destination that does not exist yet).
fn existing_ancestor(p: &Path) -> Option<&Path> {
    p.ancestors().find(|a| a.is_dir())
}

/// A fatal pull failure (nothing more can be done).
pub type Fatal = store::Error;

/// Pulls `prefix` (a directory prefix or one blob name) into `local`.
pub async fn pull(
    store: Arc<BlobStore>,
    path: &str,
    local: &Path,
    settings: Settings,
    stats: Arc<Stats>,
) -> Result<(), crate::error::Error> {
    store.check_container().await?;
    let budget = Budget::new(settings.max_memory, settings.block_size);
    // One blob named exactly by the path: copy that one file.
    if !path.is_empty() && !path.ends_with('/') {
        if let Some(entry) = store.head(path).await? {
            if !PosixMeta::decode(&entry.metadata).is_dir {
                let base = path.rsplit('/').next().unwrap_or(path);
                let dest = if local.is_dir() || local.as_os_str().to_string_lossy().ends_with('/') {
                    local.join(base)
                } else {
                    local.to_path_buf()
                };
                let root = dest.parent().map(Path::to_path_buf).unwrap_or_default();
                let ctx = Arc::new(Ctx {
                    store,
                    settings,
                    stats: Arc::clone(&stats),
                    budget,
                    dirs: DirMaker::default(),
                    root: root.clone(),
                    lustre: existing_ancestor(&root).and_then(crate::lustre::detect),
                });
                stats.files_seen.fetch_add(1, Ordering::Relaxed);
                stats.bytes_seen.fetch_add(entry.size, Ordering::Relaxed);
                if !root.as_os_str().is_empty() {
                    // A relative destination is relative to the working directory.
                    let (base, rel) = match root.strip_prefix("/") {
                        Ok(rel) => (Path::new("/"), rel),
                        Err(_) => (Path::new("."), root.as_path()),
                    };
                    ctx.dirs
                        .ensure(base, rel)
                        .or_else(|_| fs::create_dir_all(&root))
                        .map_err(|e| crate::error::Error::Io {
                            path: root.display().to_string(),
                            source: e,
                        })?;
                }
                let r = match ctx.settings.shard.clone().filter(|_| !ctx.settings.dry_run) {
                    Some(sh) => pull_one_sharded(&ctx, &entry, &dest, sh).await?,
                    None => pull_fresh(&ctx, &entry, &dest).await,
                };
                match r {
                    Err(Failure::Fatal(m)) => return Err(crate::error::Error::Usage(m)),
                    Err(f) => stats.fail(&entry.name, f.message()),
                    Ok(()) => {}
                }
                return Ok(());
            }
        }
    }
    if !settings.dry_run {
        fs::create_dir_all(local).map_err(|e| crate::error::Error::Io {
            path: local.display().to_string(),
            source: e,
        })?;
    }
    let prefix = if path.is_empty() || path.ends_with('/') {
        path.to_string()
    } else {
        format!("{path}/")
    };
    let ctx = Arc::new(Ctx {
        store: Arc::clone(&store),
        settings: settings.clone(),
        stats: Arc::clone(&stats),
        budget,
        dirs: DirMaker::default(),
        root: local.to_path_buf(),
        lustre: existing_ancestor(local).and_then(crate::lustre::detect),
    });
    if let Some(l) = &ctx.lustre {
        tracing::info!(
            "destination is on Lustre{} ({} OSTs); layout policy {:?}",
            l.fsname
                .as_deref()
                .map(|n| format!(" '{n}'"))
                .unwrap_or_default(),
            l.osts,
            settings.stripe
        );
    }

    // Sharded: rank 0 lists into a plan on the shared destination; the other
    // ranks wait for it to be complete and replay it, so all see one plan.
    let shard = settings.shard.clone();
    let coord = match (&shard, settings.dry_run) {
        (Some(sh), false) => Some(
            crate::shard::Coord::new(
                local,
                &format!("{}\n{prefix}", store.describe()),
                sh.clone(),
            )
            .map_err(|e| crate::error::Error::Io {
                path: local.display().to_string(),
                source: e,
            })?,
        ),
        _ => None,
    };
    let _beat = coord.as_ref().map(crate::shard::Coord::heartbeat);
    let follower = coord.as_ref().is_some_and(|c| c.shard.rank != 0);
    if follower {
        stats.silent.store(true, Ordering::Relaxed);
        let (src, p) = (store.describe().to_string(), prefix.clone());
        if let Some(c) = &coord {
            c.wait_plan(|path| plan::is_complete(path, &src, &p))
                .await
                .map_err(crate::error::Error::Usage)?;
        }
    }

    let (tx, mut rx) = mpsc::channel::<Result<Vec<BlobEntry>, store::Error>>(LIST_PAGES_IN_FLIGHT);
    // The plan: replayed from the journal when an earlier run left one, else listed
    // (and journaled page by page). A dry run neither reads nor writes it.
    let journal_path = match &coord {
        Some(c) => Some(c.plan_path()),
        None => (!settings.dry_run).then(|| plan::path(local, store.describe(), &prefix)),
    };
    let lister = {
        let store = Arc::clone(&store);
        let prefix = prefix.clone();
        let journal_path = journal_path.clone();
        let source = store.describe().to_string();
        tokio::spawn(async move {
            if let (true, Some(jp)) = (follower, journal_path.clone()) {
                let replay_tx = tx.clone();
                let p = prefix.clone();
                let r = tokio::task::spawn_blocking(move || {
                    plan::replay(&jp, &source, &p, |page| {
                        replay_tx.blocking_send(Ok(page)).is_ok()
                    })
                })
                .await;
                if !matches!(r, Ok(Ok(plan::Replayed::Complete))) {
                    let _ = tx
                        .send(Err(store::Error::Other {
                            op: "shared plan".into(),
                            detail: "rank 0's plan could not be read back whole".into(),
                        }))
                        .await;
                }
                return;
            }
            let mut marker = None;
            let mut journal = None;
            let mut listed_any = false;
            if let Some(jp) = journal_path {
                let replay_tx = tx.clone();
                let p = prefix.clone();
                let opened = tokio::task::spawn_blocking(move || {
                    plan::open(&jp, &source, &p, |page| {
                        replay_tx.blocking_send(Ok(page)).is_ok()
                    })
                })
                .await;
                match opened {
                    Ok(Ok((plan::Replayed::Complete, _))) => return,
                    Ok(Ok((plan::Replayed::ContinueFrom(m), j))) => {
                        marker = Some(m);
                        journal = Some(j);
                    }
                    Ok(Ok((plan::Replayed::Nothing, j))) => journal = Some(j),
                    Ok(Err(e)) => {
                        tracing::warn!("plan journal unavailable ({e}); listing without one")
                    }
                    Err(_) => return,
                }
            }
            loop {
                // A small first page gets bytes moving sooner; later pages
                // are full size (the service's 5,000).
                let page_size = (!listed_any).then_some(FIRST_PAGE);
                listed_any = true;
                match store.list_page(&prefix, marker.take(), page_size).await {
                    Ok((entries, next)) => {
                        if let Some(mut j) = journal.take() {
                            let (e2, n2) = (entries.clone(), next.clone());
                            journal = tokio::task::spawn_blocking(move || {
                                j.append(&e2, n2.as_deref()).ok().map(|()| j)
                            })
                            .await
                            .ok()
                            .flatten();
                        }
                        if tx.send(Ok(entries)).await.is_err() {
                            return;
                        }
                        match next {
                            Some(m) => marker = Some(m),
                            None => return,
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        })
    };

    let files = Arc::new(Semaphore::new(settings.concurrency));
    let mut tasks = JoinSet::new();
    let mut stubs: Vec<(PathBuf, PosixMeta)> = Vec::new();
    let mut fatal = None;
    let mut listed: u64 = 0;
    let me = shard.as_ref().map(|s| (s.rank, s.ranks));
    let mut assigner = shard
        .as_ref()
        .map(|s| crate::shard::assign::Assigner::new(s.ranks, s.split_min));
    // Files split across ranks that this rank finishes after the barrier.
    let mut owned: Vec<(BlobEntry, PathBuf)> = Vec::new();
    while let Some(page) = rx.recv().await {
        let entries = match page {
            Ok(e) => e,
            Err(e) => {
                fatal = Some(e);
                break;
            }
        };
        for entry in entries {
            let rel_name = &entry.name[prefix.len().min(entry.name.len())..];
            if rel_name.is_empty() {
                continue;
            }
            listed += 1;
            // Sharded: rank 0 reports what concerns everyone (names, stubs).
            let lead = me.is_none_or(|(r, _)| r == 0);
            let rel = match pathmap::blob_to_relative(rel_name) {
                Ok(r) => r,
                Err(e) => {
                    if lead {
                        stats.files_seen.fetch_add(1, Ordering::Relaxed);
                        stats.fail(&entry.name, &format!("refused: the blob name {e}"));
                    }
                    continue;
                }
            };
            if !settings.filter.accepts(rel_name) {
                continue;
            }
            let meta = PosixMeta::decode(&entry.metadata);
            if meta.is_dir {
                if lead {
                    stats.files_seen.fetch_add(1, Ordering::Relaxed);
                    stubs.push((rel, meta));
                }
                continue;
            }
            let mut part: Option<Vec<(u64, u64)>> = None;
            if let (Some(a), Some((rank, _))) = (assigner.as_mut(), me) {
                let (block, _) = ctx.block_plan(entry.size, &meta);
                match a.assign(entry.size, block, super::PULL_REQUEST) {
                    crate::shard::assign::Share::Whole(r) if r != rank => continue,
                    crate::shard::assign::Share::Whole(_) => {}
                    share @ crate::shard::assign::Share::Split(_) => {
                        let crate::shard::assign::Share::Split(groups) = &share else {
                            continue;
                        };
                        let mine: Vec<(u64, u64)> = groups
                            .iter()
                            .filter(|g| g.rank == rank)
                            .map(|g| (g.first, g.end))
                            .collect();
                        if share.owner() == rank {
                            stats.files_seen.fetch_add(1, Ordering::Relaxed);
                            stats.bytes_seen.fetch_add(entry.size, Ordering::Relaxed);
                            owned.push((entry.clone(), rel.clone()));
                        }
                        if mine.is_empty() || settings.dry_run {
                            continue;
                        }
                        part = Some(mine);
                    }
                }
            }
            if part.is_none() {
                stats.files_seen.fetch_add(1, Ordering::Relaxed);
                stats.bytes_seen.fetch_add(entry.size, Ordering::Relaxed);
            }
            let Ok(permit) = Arc::clone(&files).acquire_owned().await else {
                break;
            };
            let ctx = Arc::clone(&ctx);
            tasks.spawn(async move {
                let dest = ctx.root.join(&rel);
                let r = match (part, me) {
                    (Some(mine), Some((rank, ranks))) => {
                        shard::pull_part(&ctx, &entry, &dest, &mine, rank, ranks).await
                    }
                    _ => pull_fresh(&ctx, &entry, &dest).await,
                };
                drop(permit);
                match r {
                    Ok(()) => Ok(()),
                    Err(Failure::Fatal(m)) => {
                        ctx.stats.fail(&entry.name, &m);
                        Err(m)
                    }
                    Err(f) => {
                        ctx.stats.fail(&entry.name, f.message());
                        Ok(())
                    }
                }
            });
            while let Some(r) = tasks.try_join_next() {
                if let Ok(Err(msg)) = r {
                    fatal.get_or_insert(store::Error::Other {
                        op: "pull".into(),
                        detail: msg,
                    });
                }
            }
            if fatal.is_some() {
                break;
            }
        }
        if fatal.is_some() {
            break;
        }
    }
    lister.abort();
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(msg)) = r {
            fatal.get_or_insert(store::Error::Other {
                op: "pull".into(),
                detail: msg,
            });
        }
    }
    if let Some(e) = fatal {
        return Err(e.into());
    }
    // Sharded: once every rank has written its blocks, owners finish the
    // files that were split.
    if let (Some(c), Some((_, ranks))) = (&coord, me) {
        c.mark("written", "").map_err(|e| crate::error::Error::Io {
            path: c.dir().display().to_string(),
            source: e,
        })?;
        let b = c.barrier("written").await;
        let note = if b.dead.is_empty() {
            String::new()
        } else {
            format!(" (rank(s) {:?} stopped)", b.dead)
        };
        for (entry, rel) in &owned {
            if let Err(f) = shard::finish(&ctx, entry, &ctx.root.join(rel), ranks).await {
                stats.fail(&entry.name, &format!("{}{note}", f.message()));
            }
        }
    } else if settings.dry_run && !owned.is_empty() && !settings.quiet {
        for (entry, rel) in &owned {
            println!(
                "pull {} -> {} ({} bytes, split across {} ranks)",
                entry.name,
                ctx.root.join(rel).display(),
                entry.size,
                me.map_or(1, |m| m.1)
            );
        }
    }
    // Directory stubs: create (empty ones included), then attributes deepest first,
    // after every file inside has been written.
    stubs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (rel, meta) in &stubs {
        stats.files_seen.fetch_add(0, Ordering::Relaxed);
        if settings.dry_run {
            continue;
        }
        let full = ctx.root.join(rel);
        let r = ctx
            .dirs
            .ensure(&ctx.root, rel)
            .and_then(|_| local::apply_meta(&full, meta, 0o755, None));
        if let Err(e) = r {
            stats.fail(&full.display().to_string(), &e.to_string());
        }
    }
    if let Some(c) = &coord {
        // Each rank files its summary; rank 0 adds them up (it prints for
        // all) and removes the shared state once every rank finished cleanly.
        crate::shard::gather(c, &stats, "pull").await?;
    } else if let Some(jp) = &journal_path {
        // The run got to the end of its plan: the next run lists afresh (and so
        // sees new blobs). Only an interrupted or fatally failed run leaves it.
        let _ = fs::remove_file(jp);
    }
    if listed == 0 && !settings.allow_empty {
        return Err(crate::error::Error::Usage(format!(
            "nothing found under '{path}' in {}: check the path, or pass --allow-empty",
            store.describe()
        )));
    }
    Ok(())
}

/// One named blob pulled by several ranks: split when large enough (each
/// rank its groups, the owner finishes after the barrier), else rank 0 alone.
async fn pull_one_sharded(
    ctx: &Arc<Ctx>,
    entry: &BlobEntry,
    dest: &Path,
    sh: crate::shard::Shard,
) -> Result<Result<(), Failure>, crate::error::Error> {
    let meta = PosixMeta::decode(&entry.metadata);
    let (block, _) = ctx.block_plan(entry.size, &meta);
    let share = crate::shard::assign::Assigner::new(sh.ranks, sh.split_min).assign(
        entry.size,
        block,
        super::PULL_REQUEST,
    );
    let crate::shard::assign::Share::Split(groups) = &share else {
        if sh.rank != 0 {
            ctx.stats.silent.store(true, Ordering::Relaxed);
            return Ok(Ok(()));
        }
        return Ok(pull_fresh(ctx, entry, dest).await);
    };
    let io = |e: std::io::Error| crate::error::Error::Io {
        path: ctx.root.display().to_string(),
        source: e,
    };
    let (rank, ranks) = (sh.rank, sh.ranks);
    let coord = crate::shard::Coord::new(
        &ctx.root,
        &format!("{}\n{}", ctx.store.describe(), entry.name),
        sh,
    )
    .map_err(io)?;
    let _beat = coord.heartbeat();
    let mine: Vec<(u64, u64)> = groups
        .iter()
        .filter(|g| g.rank == rank)
        .map(|g| (g.first, g.end))
        .collect();
    let mut result = Ok(());
    if !mine.is_empty() {
        result = shard::pull_part(ctx, entry, dest, &mine, rank, ranks).await;
    }
    coord.mark("written", "").map_err(io)?;
    let b = coord.barrier("written").await;
    if share.owner() == rank && result.is_ok() {
        result = shard::finish(ctx, entry, dest, ranks).await.map_err(|f| {
            if b.dead.is_empty() {
                f
            } else {
                Failure::Item(format!("{} (rank(s) {:?} stopped)", f.message(), b.dead))
            }
        });
    }
    if rank != 0 {
        ctx.stats.silent.store(true, Ordering::Relaxed);
    }
    if let Err(f) = &result {
        // Counted here so that rank 0's combined summary includes it.
        ctx.stats.fail(&entry.name, f.message());
        result = Ok(());
    }
    crate::shard::gather(&coord, &ctx.stats, "pull").await?;
    Ok(result)
}

/// Entries asked for in the first listing page: time to the first byte on a
/// large prefix is one small listing round trip, not a 5,000-entry one.
const FIRST_PAGE: i32 = 200;

/// How one file failed.
#[derive(Debug)]
enum Failure {
    /// The run cannot go on (credential refused, container gone).
    Fatal(String),
    /// The blob changed since it was listed (ETag mismatch).
    Changed(String),
    /// The bytes were wrong: the partial file was removed.
    Corrupt(String),
    /// Anything else about this file.
    Item(String),
}

impl Failure {
    fn message(&self) -> &str {
        match self {
            Failure::Fatal(m) | Failure::Changed(m) | Failure::Corrupt(m) | Failure::Item(m) => m,
        }
    }
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Item(s)
    }
}

/// Copies one blob; if it changed since it was listed (or planned by an
/// earlier run), fetches its current properties and copies that version.
async fn pull_fresh(ctx: &Arc<Ctx>, entry: &BlobEntry, dest: &Path) -> Result<(), Failure> {
    match pull_file(ctx, entry, dest).await {
        Err(Failure::Changed(_)) => match ctx.store.head(&entry.name).await {
            Ok(Some(fresh)) => pull_file(ctx, &fresh, dest).await,
            Ok(None) => Err(Failure::Item(format!(
                "blob '{}' was deleted during the run",
                entry.name
            ))),
            Err(e) => Err(ctx.err(e)),
        },
        other => other,
    }
}

/// The skip rule against what is already at `dest`: true when it is up to
/// date; an error when a directory or symlink is in the way.
async fn up_to_date(
    ctx: &Arc<Ctx>,
    entry: &BlobEntry,
    meta: &PosixMeta,
    dest: &Path,
) -> Result<bool, Failure> {
    let src_mtime = meta.mtime.or(entry.last_modified);
    match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => Err(Failure::Item(format!(
            "'{}' is a directory; the blob cannot replace it",
            dest.display()
        ))),
        Ok(m) if m.file_type().is_symlink() => Err(Failure::Item(format!(
            "'{}' is a symbolic link; refusing to replace it",
            dest.display()
        ))),
        Ok(m) => {
            let local_hash = if ctx.settings.checksum && m.len() == entry.size {
                local::hash_file_async(dest.to_path_buf()).await
            } else {
                None
            };
            let src = Side {
                size: entry.size,
                mtime: src_mtime.map(|t| t.unix_timestamp()),
                hash: meta.xxh3,
            };
            let dst = Side {
                size: m.len(),
                mtime: m.modified().ok().map(local::unix_secs),
                hash: local_hash,
            };
            Ok(!should_transfer(
                ctx.settings.overwrite,
                ctx.settings.checksum,
                &src,
                &dst,
            ))
        }
        Err(_) => Ok(false),
    }
}

/// Copies one blob to `dest`. Returns a one-line message on failure.
async fn pull_file(ctx: &Arc<Ctx>, entry: &BlobEntry, dest: &Path) -> Result<(), Failure> {
    let meta = PosixMeta::decode(&entry.metadata);
    let src_mtime = meta.mtime.or(entry.last_modified);
    if up_to_date(ctx, entry, &meta, dest).await? {
        ctx.stats.skip(&entry.name, None);
        return Ok(());
    }
    if ctx.settings.dry_run {
        if !ctx.settings.quiet {
            let layout = ctx.layout_for(entry.size);
            let plan = if entry.size > ctx.settings.block_size {
                let r = ctx.range_size(entry.size, layout.as_ref());
                format!(
                    ", {} ranges of {}",
                    entry.size.div_ceil(r),
                    crate::units::human_bytes(r)
                )
            } else {
                String::new()
            };
            let lay = match (&ctx.lustre, &layout) {
                (None, _) => String::new(),
                (Some(_), None) => ", layout: inherit".into(),
                (Some(_), Some(l)) => format!(
                    ", layout: {}",
                    crate::lustre::describe(l).replace('\n', "; ")
                ),
            };
            println!(
                "pull {} -> {} ({} bytes{lay}{plan})",
                entry.name,
                dest.display(),
                entry.size
            );
        }
        ctx.stats.done(entry.size);
        return Ok(());
    }
    ctx.ensure_parent(dest)?;
    let tmp = local::temp_path(dest, &entry.name);
    let moved = match download_to(ctx, entry, &meta, &tmp).await {
        Ok(n) => n,
        Err(Failure::Corrupt(e)) => return Err(Failure::Corrupt(e)),
        Err(other) => {
            // A ranged download keeps its partial file and range log for a rerun.
            if entry.size <= ctx.settings.block_size {
                let _ = fs::remove_file(&tmp);
            }
            return Err(other);
        }
    };
    let fallback = src_mtime.map(SystemTime::from);
    let d = dest.to_path_buf();
    let t = tmp.clone();
    let finish = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        local::apply_meta(&t, &meta, 0o644, fallback)?;
        fs::rename(&t, &d)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| io_message(&e, dest)));
    if let Err(e) = finish {
        let _ = fs::remove_file(&tmp);
        return Err(Failure::Item(e));
    }
    resume::remove(&resume::log_path(&tmp));
    tracing::info!(blob = %entry.name, path = %dest.display(), bytes = moved, "pulled");
    ctx.stats.done(moved);
    Ok(())
}

fn io_message(e: &std::io::Error, path: &Path) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => format!(
            "{} '{}': free space or choose another destination",
            super::local::NO_SPACE,
            path.display()
        ),
        Some(libc::EDQUOT) => format!(
            "disk quota exceeded for '{}': raise the quota or clean up",
            path.display()
        ),
        Some(libc::EISDIR) => format!(
            "'{}' is a directory (a blob and a 'directory' share this name); the blob was not copied",
            path.display()
        ),
        Some(libc::EMFILE) | Some(libc::ENFILE) => {
            "too many open files: raise `ulimit -n` or lower --concurrency".into()
        }
        _ => format!("{}: {e}", path.display()),
    }
}

/// Downloads the blob into `tmp` and verifies it. Returns the bytes moved in
/// this run (less than the size when earlier ranges were resumed).
async fn download_to(
    ctx: &Arc<Ctx>,
    entry: &BlobEntry,
    meta: &PosixMeta,
    tmp: &Path,
) -> Result<u64, Failure> {
    let size = entry.size;
    if size <= ctx.settings.block_size {
        let file = ctx.create_temp(tmp, size)?;
        let buf = ctx.budget.buffer(size as usize).await;
        let (mut bufs, r) = ctx
            .store
            .get_range_into(&entry.name, 0, vec![buf], entry.etag.as_deref())
            .await;
        r.map_err(|e| ctx.err(e))?;
        let data = bufs
            .pop()
            .ok_or_else(|| Failure::Item("no buffer".into()))?;
        let expect_hash = meta.xxh3;
        let expect_md5 = entry.content_md5.clone();
        let t = tmp.to_path_buf();
        let r = tokio::task::spawn_blocking(move || -> Result<(), Failure> {
            if let Some(h) = expect_hash {
                if xxhash_rust::xxh3::xxh3_128(&data) != h {
                    return Err(Failure::Corrupt(MISMATCH.into()));
                }
            } else if let Some(md5) = expect_md5.filter(|m| m.len() == 16) {
                if Md5::digest(&data).as_slice() != md5.as_slice() {
                    return Err(Failure::Corrupt(
                        "content MD5 mismatch; the download was discarded".into(),
                    ));
                }
            }
            file.write_all_at(&data, 0)
                .map_err(|e| Failure::Item(io_message(&e, &t)))
        })
        .await
        .map_err(|e| Failure::Item(e.to_string()))?;
        return r.map(|()| size);
    }

    // Ranged download, resumable. With a tree hash from hopstage's push, ranges
    // follow the pushed block size and each is verified as it arrives.
    let (block, tree) = ctx.block_plan(size, meta);
    let log_path = resume::log_path(tmp);
    let header = resume::header(entry.etag.as_deref(), size, block);
    let (t, lp) = (tmp.to_path_buf(), log_path.clone());
    let ctx_c = Arc::clone(ctx);
    let (log, file, mut done) = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let io = |e: std::io::Error| io_message(&e, &t);
        let existing = fs::symlink_metadata(&t)
            .ok()
            .filter(|m| m.is_file() && m.len() == size);
        if let (Some(done), Some(_)) = (resume::RangeLog::existing(&lp, &header), existing) {
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&t)
                .map_err(io)?;
            return Ok((resume::RangeLog::append(&lp).map_err(io)?, file, done));
        }
        let file = ctx_c.create_temp(&t, size)?;
        file.set_len(size).map_err(io)?;
        Ok((
            resume::RangeLog::create(&lp, &header).map_err(io)?,
            file,
            resume::Done::new(),
        ))
    })
    .await
    .map_err(|e| Failure::Item(e.to_string()))?
    .map_err(Failure::Item)?;
    if tree.is_some() && done.values().any(Option::is_none) {
        done.clear();
    }
    let log = Arc::new(log);
    let file = Arc::new(file);
    let count = size.div_ceil(block);
    let hashes = Arc::new(std::sync::Mutex::new(
        (0..count)
            .map(|i| done.get(&i).copied().flatten())
            .collect::<Vec<_>>(),
    ));
    let blocks: Vec<(u64, u64, u64)> = chunk::ranges(size, block)
        .enumerate()
        .filter(|(i, _)| !done.contains_key(&(*i as u64)))
        .map(|(i, (off, len))| (i as u64, off, len))
        .collect();
    let moved = fetch_blocks(
        ctx,
        entry,
        tmp,
        Arc::clone(&file),
        log,
        Some(Arc::clone(&hashes)),
        blocks,
        block,
        tree.is_some(),
    )
    .await?;
    let actual = file.metadata().map_err(|e| io_message(&e, tmp))?.len();
    let verdict = if actual != size {
        Some(format!(
            "size mismatch after download: {actual} of {size} bytes"
        ))
    } else if let Some((_, expect)) = tree {
        let hs = hashes.lock().map(|h| h.clone()).unwrap_or_default();
        match chunk::tree_hash(&hs) {
            Some(got) if got == expect => None,
            _ => Some(MISMATCH.to_string()),
        }
    } else if let Some(h) = meta.xxh3 {
        let t = tmp.to_path_buf();
        let got = tokio::task::spawn_blocking(move || local::hash_file(&t))
            .await
            .map_err(|e| Failure::Item(e.to_string()))?
            .map_err(|e| Failure::Item(io_message(&e, tmp)))?;
        (got != h).then(|| MISMATCH.to_string())
    } else {
        None
    };
    if let Some(msg) = verdict {
        resume::remove(&log_path);
        let _ = fs::remove_file(tmp);
        return Err(Failure::Corrupt(msg));
    }
    Ok(moved)
}

/// Fetches `blocks` (index, offset, length) of `entry` into `file`: runs of
/// consecutive blocks per request (up to [`super::PULL_REQUEST`] bytes), each
/// block its own pooled buffer, written at its offset and recorded in `log`
/// (with its xxh3 when `want_hash`). Returns the bytes moved.
#[allow(clippy::too_many_arguments)]
async fn fetch_blocks(
    ctx: &Arc<Ctx>,
    entry: &BlobEntry,
    tmp: &Path,
    file: Arc<fs::File>,
    log: Arc<resume::RangeLog>,
    hashes: Option<Arc<std::sync::Mutex<Vec<Option<u128>>>>>,
    blocks: Vec<(u64, u64, u64)>,
    block: u64,
    want_hash: bool,
) -> Result<u64, Failure> {
    let mut moved = 0u64;
    let mut parts = JoinSet::new();
    let mut failure: Option<Failure> = None;
    let per_request =
        ((super::PULL_REQUEST / block).max(1) as usize).min(ctx.budget.max_set(block));
    let writer = Arc::new(std::sync::Mutex::new(()));
    let mut runs: Vec<Vec<(u64, u64, u64)>> = Vec::new();
    for b in blocks {
        match runs.last_mut() {
            Some(run) if run.len() < per_request && run.last().is_some_and(|l| l.0 + 1 == b.0) => {
                run.push(b)
            }
            _ => runs.push(vec![b]),
        }
    }
    for run in runs {
        let off = run[0].1;
        let lens: Vec<usize> = run.iter().map(|&(_, _, len)| len as usize).collect();
        moved += lens.iter().sum::<usize>() as u64;
        let bufs = ctx.budget.buffers(&lens).await;
        let ctx2 = Arc::clone(ctx);
        let name = entry.name.clone();
        let etag = entry.etag.clone();
        let (file, log, hashes) = (Arc::clone(&file), Arc::clone(&log), hashes.clone());
        let writer = Arc::clone(&writer);
        let on_lustre = ctx.lustre.is_some();
        let t = tmp.to_path_buf();
        parts.spawn(async move {
            let (bufs, r) = ctx2
                .store
                .get_range_into(&name, off, bufs, etag.as_deref())
                .await;
            r.map_err(|e| ctx2.err(e))?;
            // Each buffer (and its share of the budget) is freed once written.
            tokio::task::spawn_blocking(move || -> Result<(), Failure> {
                // One writer per file at a time, except on Lustre (extent locks
                // per stripe object): concurrent buffered writes to one local
                // inode contend on its lock, and on few cores the kernel's
                // waiters spin instead of sleeping (see engine::copy).
                let _turn = (!on_lustre).then(|| writer.lock());
                for (data, (index, boff, _)) in bufs.into_iter().zip(run) {
                    let h = want_hash.then(|| xxhash_rust::xxh3::xxh3_128(&data));
                    file.write_all_at(&data, boff)
                        .map_err(|e| io_message(&e, &t))?;
                    drop(data);
                    log.record(index, h).map_err(|e| io_message(&e, &t))?;
                    if let Some(Ok(mut hs)) = hashes.as_ref().map(|h| h.lock()) {
                        hs[index as usize] = h;
                    }
                }
                Ok(())
            })
            .await
            .map_err(|e| e.to_string())?
        });
        super::reap(&mut parts, &mut failure);
        if failure.is_some() {
            break;
        }
    }
    super::drain(&mut parts, &mut failure).await;
    match failure {
        Some(e) => Err(e),
        None => Ok(moved),
    }
}

const MISMATCH: &str = "content hash mismatch (xxh3 in metadata); the download was discarded";
