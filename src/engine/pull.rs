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
use super::{chunk, Budget, Settings, LIST_PAGES_IN_FLIGHT};
use crate::filter::{should_transfer, Side};
use crate::meta::PosixMeta;
use crate::pathmap;
use crate::report::Stats;
use crate::store::{self, BlobEntry, BlobStore};

/// Shared state of one pull.
struct Ctx {
    store: Arc<BlobStore>,
    settings: Settings,
    stats: Arc<Stats>,
    budget: Budget,
    dirs: DirMaker,
    root: PathBuf,
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
                });
                stats.files_seen.fetch_add(1, Ordering::Relaxed);
                stats.bytes_seen.fetch_add(entry.size, Ordering::Relaxed);
                if !root.as_os_str().is_empty() {
                    ctx.dirs
                        .ensure(Path::new("/"), root.strip_prefix("/").unwrap_or(&root))
                        .or_else(|_| fs::create_dir_all(&root))
                        .map_err(|e| crate::error::Error::Io {
                            path: root.display().to_string(),
                            source: e,
                        })?;
                }
                if let Err(e) = pull_file(&ctx, &entry, &dest).await {
                    stats.fail(&entry.name, &e);
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
    });

    let (tx, mut rx) = mpsc::channel::<Result<Vec<BlobEntry>, store::Error>>(LIST_PAGES_IN_FLIGHT);
    let lister = {
        let store = Arc::clone(&store);
        let prefix = prefix.clone();
        tokio::spawn(async move {
            let mut marker = None;
            loop {
                match store.list_page(&prefix, marker.take(), None).await {
                    Ok((entries, next)) => {
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
            stats.files_seen.fetch_add(1, Ordering::Relaxed);
            let rel = match pathmap::blob_to_relative(rel_name) {
                Ok(r) => r,
                Err(e) => {
                    stats.fail(&entry.name, &format!("refused: the blob name {e}"));
                    continue;
                }
            };
            if !settings.filter.accepts(rel_name) {
                continue;
            }
            let meta = PosixMeta::decode(&entry.metadata);
            if meta.is_dir {
                stubs.push((rel, meta));
                continue;
            }
            stats.bytes_seen.fetch_add(entry.size, Ordering::Relaxed);
            let Ok(permit) = Arc::clone(&files).acquire_owned().await else {
                break;
            };
            let ctx = Arc::clone(&ctx);
            tasks.spawn(async move {
                let dest = ctx.root.join(&rel);
                if let Err(msg) = pull_file(&ctx, &entry, &dest).await {
                    ctx.stats.fail(&entry.name, &msg);
                    if msg.starts_with(FATAL_MARK) {
                        return Err(msg);
                    }
                }
                drop(permit);
                Ok(())
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
    if stats.files_seen.load(Ordering::Relaxed) == 0 && !settings.allow_empty {
        return Err(crate::error::Error::Usage(format!(
            "nothing found under '{path}' in {}: check the path, or pass --allow-empty",
            store.describe()
        )));
    }
    Ok(())
}

/// Messages starting with this stop the whole run (auth lost, container gone).
const FATAL_MARK: &str = "fatal: ";

fn fatal_or(e: store::Error) -> String {
    if e.is_fatal() {
        format!("{FATAL_MARK}{e}")
    } else {
        e.to_string()
    }
}

/// Copies one blob to `dest`. Returns a one-line message on failure.
async fn pull_file(ctx: &Arc<Ctx>, entry: &BlobEntry, dest: &Path) -> Result<(), String> {
    let meta = PosixMeta::decode(&entry.metadata);
    let src_mtime = meta.mtime.or(entry.last_modified);
    // Skip rule against what is already there.
    match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {
            return Err(format!(
                "'{}' is a directory; the blob cannot replace it",
                dest.display()
            ))
        }
        Ok(m) if m.file_type().is_symlink() => {
            return Err(format!(
                "'{}' is a symbolic link; refusing to replace it",
                dest.display()
            ))
        }
        Ok(m) => {
            let local_hash = if ctx.settings.checksum && m.len() == entry.size {
                let d = dest.to_path_buf();
                tokio::task::spawn_blocking(move || local::hash_file(&d).ok())
                    .await
                    .ok()
                    .flatten()
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
            if !should_transfer(ctx.settings.overwrite, ctx.settings.checksum, &src, &dst) {
                ctx.stats.skip(&entry.name, None);
                return Ok(());
            }
        }
        Err(_) => {}
    }
    if ctx.settings.dry_run {
        if !ctx.settings.quiet {
            println!(
                "pull {} -> {} ({} bytes)",
                entry.name,
                dest.display(),
                entry.size
            );
        }
        ctx.stats.done(entry.size);
        return Ok(());
    }
    let parent_rel = dest
        .parent()
        .and_then(|p| p.strip_prefix(&ctx.root).ok())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    ctx.dirs
        .ensure(&ctx.root, &parent_rel)
        .map_err(|e| format!("cannot create its directory: {e}"))?;
    let tmp = local::temp_path(dest, &entry.name);
    let r = download_to(ctx, entry, &meta, &tmp).await;
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
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
        return Err(e);
    }
    ctx.stats.done(entry.size);
    Ok(())
}

fn io_message(e: &std::io::Error, path: &Path) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => format!(
            "no space left on the device holding '{}': free space or choose another destination",
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

/// Downloads the blob into `tmp` and verifies it.
async fn download_to(
    ctx: &Arc<Ctx>,
    entry: &BlobEntry,
    meta: &PosixMeta,
    tmp: &Path,
) -> Result<(), String> {
    let size = entry.size;
    let file = local::create_temp(tmp).map_err(|e| io_message(&e, tmp))?;
    if size <= ctx.settings.block_size {
        let buf = ctx.budget.buffer(size as usize).await;
        let (data, r) = ctx
            .store
            .get_range(&entry.name, 0, buf, entry.etag.as_deref())
            .await;
        r.map_err(fatal_or)?;
        let expect_hash = meta.xxh3;
        let expect_md5 = entry.content_md5.clone();
        let t = tmp.to_path_buf();
        return tokio::task::spawn_blocking(move || -> Result<(), String> {
            if let Some(h) = expect_hash {
                if xxhash_rust::xxh3::xxh3_128(&data) != h {
                    return Err(
                        "content hash mismatch (xxh3 in metadata); the download was discarded"
                            .into(),
                    );
                }
            } else if let Some(md5) = expect_md5.filter(|m| m.len() == 16) {
                if Md5::digest(&data).as_slice() != md5.as_slice() {
                    return Err("content MD5 mismatch; the download was discarded".into());
                }
            }
            file.write_all_at(&data, 0).map_err(|e| io_message(&e, &t))
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    file.set_len(size).map_err(|e| io_message(&e, tmp))?;
    let file = Arc::new(file);
    let block = chunk::block_size_for(size, ctx.settings.block_size);
    let mut parts = JoinSet::new();
    let mut failure: Option<String> = None;
    for (off, len) in chunk::ranges(size, block) {
        let buf = ctx.budget.buffer(len as usize).await;
        let ctx2 = Arc::clone(ctx);
        let name = entry.name.clone();
        let etag = entry.etag.clone();
        let file = Arc::clone(&file);
        let t = tmp.to_path_buf();
        parts.spawn(async move {
            let (data, r) = ctx2.store.get_range(&name, off, buf, etag.as_deref()).await;
            r.map_err(fatal_or)?;
            // The buffer (and its share of the budget) is freed once written.
            let r = tokio::task::spawn_blocking(move || file.write_all_at(&data, off))
                .await
                .map_err(|e| e.to_string())?;
            r.map_err(|e| io_message(&e, &t))
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
    let actual = file.metadata().map_err(|e| io_message(&e, tmp))?.len();
    if actual != size {
        return Err(format!(
            "size mismatch after download: {actual} of {size} bytes"
        ));
    }
    if let Some(h) = meta.xxh3 {
        let t = tmp.to_path_buf();
        let got = tokio::task::spawn_blocking(move || local::hash_file(&t))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| io_message(&e, tmp))?;
        if got != h {
            return Err(
                "content hash mismatch (xxh3 in metadata); the download was discarded".into(),
            );
        }
    }
    Ok(())
}

fn join_error(r: Result<Result<(), String>, tokio::task::JoinError>) -> Option<String> {
    match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(e.to_string()),
    }
}
