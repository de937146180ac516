//! `hopstage verify SRC DST`: compares a local tree and a blob prefix by
//! size and content, and reports every difference.
//!
//! Content is compared by xxh3-128: the blob's `hopstage_xxh3` metadata when
//! present, else its Content-MD5 against the local file's MD5, else the blob
//! is read (in ranges, under the memory budget) and hashed. The local tree is
//! walked in blob-name order and merged with the streamed listing, so memory
//! does not grow with the number of files.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use md5::{Digest, Md5};
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::engine::{chunk, local, Budget, Settings};
use crate::error::ExitCode;
use crate::meta::PosixMeta;
use crate::pathmap::join_blob;
use crate::store::{self, BlobEntry, BlobStore};
use crate::walk::{self, Kind};

/// One difference.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// Path relative to both roots.
    pub path: String,
    /// What differs.
    pub problem: String,
}

/// The verify report.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Files compared (present on both sides).
    pub files_checked: u64,
    /// Files identical in size and content.
    pub files_matched: u64,
    /// Every difference found.
    pub differences: Vec<Difference>,
    /// Bytes hashed locally.
    pub bytes_hashed: u64,
    /// Blob bytes downloaded to compare (blobs without a usable hash).
    pub bytes_downloaded: u64,
}

enum Pair {
    Both(PathBuf, u64, BlobEntry),
    LocalOnly(String),
    RemoteOnly(String),
}

/// Compares `local` with the blobs under `prefix`.
pub async fn verify(
    store: Arc<BlobStore>,
    local: &Path,
    prefix: &str,
    settings: Settings,
) -> Result<Report, crate::error::Error> {
    store.check_container().await?;
    let prefix = prefix.trim_end_matches('/').to_string();
    let list_prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let (mut remote_rx, lister) = store.stream_entries(list_prefix, 5000);
    let (pair_tx, mut pair_rx) = mpsc::channel::<Pair>(256);
    let root = local.to_path_buf();
    let follow = settings.follow_symlinks;
    let walker_prefix = prefix.clone();
    let walker = tokio::task::spawn_blocking(move || -> Option<store::Error> {
        let strip = |name: &str| -> String {
            name.strip_prefix(&walker_prefix)
                .map(|r| r.trim_start_matches('/'))
                .unwrap_or(name)
                .to_string()
        };
        let mut peeked: Option<BlobEntry> = None;
        let mut fatal = None;
        let mut next_remote = |peeked: &mut Option<BlobEntry>, fatal: &mut Option<store::Error>| {
            while peeked.is_none() {
                match remote_rx.blocking_recv() {
                    Some(Ok(e)) if PosixMeta::decode(&e.metadata).is_dir => continue,
                    Some(Ok(e)) => *peeked = Some(e),
                    Some(Err(e)) => {
                        *fatal = Some(e);
                        return;
                    }
                    None => return,
                }
            }
        };
        walk::walk(&root, follow, |item| {
            let Ok(entry) = item else {
                return true;
            };
            if entry.kind != Kind::File || !settings.filter.accepts(&entry.rel) {
                return true;
            }
            let blob = join_blob(&walker_prefix, &entry.rel);
            loop {
                next_remote(&mut peeked, &mut fatal);
                match peeked.as_ref().map(|p| p.name.as_str().cmp(blob.as_str())) {
                    Some(std::cmp::Ordering::Less) => {
                        if let Some(p) = peeked.take() {
                            let rel = strip(&p.name);
                            if settings.filter.accepts(&rel)
                                && pair_tx.blocking_send(Pair::RemoteOnly(rel)).is_err()
                            {
                                return false;
                            }
                        }
                    }
                    Some(std::cmp::Ordering::Equal) => {
                        let Some(p) = peeked.take() else { return false };
                        let size = entry.meta.len();
                        return pair_tx
                            .blocking_send(Pair::Both(entry.path, size, p))
                            .is_ok();
                    }
                    _ => {
                        return pair_tx.blocking_send(Pair::LocalOnly(entry.rel)).is_ok();
                    }
                }
            }
        });
        loop {
            next_remote(&mut peeked, &mut fatal);
            let Some(p) = peeked.take() else { break };
            let rel = strip(&p.name);
            if settings.filter.accepts(&rel)
                && pair_tx.blocking_send(Pair::RemoteOnly(rel)).is_err()
            {
                break;
            }
        }
        fatal
    });

    let report = Arc::new(Mutex::new(Report::default()));
    let hashed = Arc::new(AtomicU64::new(0));
    let downloaded = Arc::new(AtomicU64::new(0));
    let budget = Budget::new(settings.max_memory, settings.block_size);
    let files = Arc::new(Semaphore::new(settings.concurrency.min(8)));
    let mut tasks = JoinSet::new();
    let differ = |report: &Mutex<Report>, path: String, problem: String| {
        if let Ok(mut r) = report.lock() {
            r.differences.push(Difference { path, problem });
        }
    };
    while let Some(pair) = pair_rx.recv().await {
        match pair {
            Pair::LocalOnly(rel) => differ(&report, rel, "missing in the container".into()),
            Pair::RemoteOnly(rel) => differ(&report, rel, "missing locally".into()),
            Pair::Both(path, size, blob) => {
                let Ok(permit) = Arc::clone(&files).acquire_owned().await else {
                    break;
                };
                let (store, report, hashed, downloaded, budget) = (
                    Arc::clone(&store),
                    Arc::clone(&report),
                    Arc::clone(&hashed),
                    Arc::clone(&downloaded),
                    budget.clone(),
                );
                let rel = blob
                    .name
                    .strip_prefix(&prefix)
                    .unwrap_or(&blob.name)
                    .trim_start_matches('/')
                    .to_string();
                let block = settings.block_size;
                tasks.spawn(async move {
                    let r = compare(
                        &store,
                        &path,
                        size,
                        &blob,
                        &budget,
                        block,
                        &hashed,
                        &downloaded,
                    )
                    .await;
                    drop(permit);
                    if let Ok(mut rep) = report.lock() {
                        rep.files_checked += 1;
                        match r {
                            Ok(None) => rep.files_matched += 1,
                            Ok(Some(problem)) | Err(problem) => {
                                rep.differences.push(Difference { path: rel, problem })
                            }
                        }
                    }
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    lister.abort();
    if let Ok(Some(e)) = walker.await {
        return Err(e.into());
    }
    let mut r = Arc::try_unwrap(report)
        .ok()
        .and_then(|m| m.into_inner().ok())
        .unwrap_or_default();
    r.bytes_hashed = hashed.load(Ordering::Relaxed);
    r.bytes_downloaded = downloaded.load(Ordering::Relaxed);
    r.differences.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(r)
}

/// Compares one pair; `Ok(None)` when identical, `Ok(Some(why))` when not.
#[allow(clippy::too_many_arguments)]
async fn compare(
    store: &BlobStore,
    path: &Path,
    size: u64,
    blob: &BlobEntry,
    budget: &Budget,
    block: u64,
    hashed: &AtomicU64,
    downloaded: &AtomicU64,
) -> Result<Option<String>, String> {
    if size != blob.size {
        return Ok(Some(format!(
            "size differs: local {size}, blob {}",
            blob.size
        )));
    }
    let meta = PosixMeta::decode(&blob.metadata);
    let p = path.to_path_buf();
    if let Some(expect) = meta.xxh3 {
        let got = tokio::task::spawn_blocking(move || local::hash_file(&p))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read: {e}"))?;
        hashed.fetch_add(size, Ordering::Relaxed);
        return Ok((got != expect).then(|| "content differs (xxh3)".to_string()));
    }
    if let Some(md5) = blob.content_md5.clone().filter(|m| m.len() == 16) {
        let got = tokio::task::spawn_blocking(move || md5_file(&p))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read: {e}"))?;
        hashed.fetch_add(size, Ordering::Relaxed);
        return Ok((got[..] != md5[..]).then(|| "content differs (MD5)".to_string()));
    }
    // No hash on the blob: compare range by range.
    let file = Arc::new(std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?);
    for (off, len) in chunk::ranges(size, chunk::block_size_for(size, block)) {
        let buf = budget.buffer(len as usize).await;
        let (mut bufs, r) = store
            .get_range_into(&blob.name, off, vec![buf], blob.etag.as_deref())
            .await;
        r.map_err(|e| e.to_string())?;
        let remote = bufs.pop().ok_or("no buffer")?;
        downloaded.fetch_add(len, Ordering::Relaxed);
        let mut mine = budget.buffer(len as usize).await;
        let f = Arc::clone(&file);
        let (mine, remote, same) = tokio::task::spawn_blocking(move || {
            let ok = f.read_exact_at(&mut mine, off).is_ok();
            let same = ok && mine[..] == remote[..];
            (mine, remote, same)
        })
        .await
        .map_err(|e| e.to_string())?;
        drop((mine, remote));
        hashed.fetch_add(len, Ordering::Relaxed);
        if !same {
            return Ok(Some(format!("content differs (bytes at offset {off})")));
        }
    }
    Ok(None)
}

fn md5_file(path: &Path) -> std::io::Result<[u8; 16]> {
    let mut h = Md5::new();
    local::read_through(path, |b| h.update(b))?;
    Ok(h.finalize().into())
}

/// Prints the report and picks the exit code: 0 identical, 1 differences.
pub fn finish(report: &Report, json: bool) -> ExitCode {
    if json {
        match serde_json::to_string(report) {
            Ok(t) => println!("{t}"),
            Err(e) => eprintln!("hopstage: cannot encode report: {e}"),
        }
    } else {
        for d in &report.differences {
            println!("{}: {}", d.path, d.problem);
        }
        eprintln!(
            "hopstage: verify: {} files checked, {} identical, {} differences",
            report.files_checked,
            report.files_matched,
            report.differences.len()
        );
    }
    if report.differences.is_empty() {
        ExitCode::Success
    } else {
        ExitCode::Partial
    }
}
