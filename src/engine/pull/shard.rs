//! The parts of a sharded pull that differ from a single-process one: a
//! large file written by several ranks, each its own contiguous groups of
//! blocks, and finished once by its owner after every rank has written.
//!
//! Invariants: the shared temporary file is created whole (layout set, full
//! size) under a rank-private name and published with `link(2)`, which fails
//! if another rank got there first, so no rank ever writes into a file whose
//! Lustre layout is not yet set; each rank records its blocks in its own
//! range log (`.ranges.<rank>`), so no two processes append to one file on a
//! shared file system; the owner renames only after every block of every
//! rank is recorded under the same source version (and, with a tree hash,
//! verified).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use super::{fetch_blocks, io_message, up_to_date, Ctx, Failure, MISMATCH};
use crate::engine::{chunk, local, resume};
use crate::meta::PosixMeta;
use crate::store::BlobEntry;

/// This rank's range log beside the shared temporary file.
fn rank_log(tmp: &Path, rank: usize) -> PathBuf {
    tmp.with_extension(format!("ranges.{rank}"))
}

/// Blocks recorded by any rank under `header`.
fn union_logs(tmp: &Path, header: &str, ranks: usize) -> resume::Done {
    let mut done = resume::Done::new();
    for r in 0..ranks {
        if let Some(d) = resume::RangeLog::existing(&rank_log(tmp, r), header) {
            for (i, h) in d {
                let slot = done.entry(i).or_insert(h);
                if slot.is_none() {
                    *slot = h;
                }
            }
        }
    }
    done
}

/// Opens the shared temporary file, creating it (layout first, full size)
/// if no rank has yet.
fn open_shared(ctx: &Ctx, tmp: &Path, size: u64, rank: usize) -> Result<fs::File, String> {
    let open = || {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(tmp)
            .map_err(|e| io_message(&e, tmp))
    };
    match fs::symlink_metadata(tmp) {
        Ok(m) if m.is_file() && m.len() == size => return open(),
        Ok(m) if m.is_file() => {
            // Left by an earlier version of the blob: move it aside.
            let stale = tmp.with_extension(format!("stale.{rank}"));
            if fs::rename(tmp, &stale).is_ok() {
                let _ = fs::remove_file(&stale);
            }
        }
        Ok(_) => return Err(format!("'{}' is not a regular file", tmp.display())),
        Err(_) => {}
    }
    let init = tmp.with_extension(format!("init.{rank}"));
    let f = ctx.create_temp(&init, size)?;
    f.set_len(size).map_err(|e| io_message(&e, &init))?;
    drop(f);
    let linked = fs::hard_link(&init, tmp);
    let _ = fs::remove_file(&init);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_message(&e, tmp)),
    }
    open()
}

/// Writes this rank's groups (`[first, end)` block ranges) of `entry`.
pub(super) async fn pull_part(
    ctx: &Arc<Ctx>,
    entry: &BlobEntry,
    dest: &Path,
    mine: &[(u64, u64)],
    rank: usize,
    ranks: usize,
) -> Result<(), Failure> {
    let meta = PosixMeta::decode(&entry.metadata);
    if up_to_date(ctx, entry, &meta, dest).await? {
        return Ok(()); // the owner counts the skip
    }
    ctx.ensure_parent(dest)?;
    let size = entry.size;
    let tmp = local::temp_path(dest, &entry.name);
    let (block, tree) = ctx.block_plan(size, &meta);
    let header = resume::header(entry.etag.as_deref(), size, block);
    let (ctx_c, t) = (Arc::clone(ctx), tmp.clone());
    let (file, log, done) = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let file = open_shared(&ctx_c, &t, size, rank)?;
        let done = union_logs(&t, &header, ranks);
        let own = rank_log(&t, rank);
        let log = if resume::RangeLog::existing(&own, &header).is_some() {
            resume::RangeLog::append(&own)
        } else {
            resume::RangeLog::create(&own, &header)
        }
        .map_err(|e| io_message(&e, &own))?;
        Ok((file, log, done))
    })
    .await
    .map_err(|e| Failure::Item(e.to_string()))?
    .map_err(Failure::Item)?;
    let blocks: Vec<(u64, u64, u64)> = mine
        .iter()
        .flat_map(|&(first, end)| first..end)
        .filter(|i| !done.contains_key(i))
        .map(|i| (i, i * block, block.min(size - i * block)))
        .collect();
    let moved = fetch_blocks(
        ctx,
        entry,
        &tmp,
        Arc::new(file),
        Arc::new(log),
        None,
        blocks,
        block,
        tree.is_some(),
    )
    .await?;
    ctx.stats
        .bytes_transferred
        .fetch_add(moved, Ordering::Relaxed);
    Ok(())
}

/// The owner's last step for a file split across ranks: every block present
/// (and verified), attributes, rename.
pub(super) async fn finish(
    ctx: &Arc<Ctx>,
    entry: &BlobEntry,
    dest: &Path,
    ranks: usize,
) -> Result<(), Failure> {
    let meta = PosixMeta::decode(&entry.metadata);
    if up_to_date(ctx, entry, &meta, dest).await? {
        ctx.stats.skip(&entry.name, None);
        return Ok(());
    }
    let size = entry.size;
    let tmp = local::temp_path(dest, &entry.name);
    let (block, tree) = ctx.block_plan(size, &meta);
    let header = resume::header(entry.etag.as_deref(), size, block);
    let fallback = meta.mtime.or(entry.last_modified).map(SystemTime::from);
    let d = dest.to_path_buf();
    let r = tokio::task::spawn_blocking(move || -> Result<(), Failure> {
        let done = union_logs(&tmp, &header, ranks);
        let count = size.div_ceil(block);
        let missing = (0..count).filter(|i| !done.contains_key(i)).count();
        if missing > 0 {
            return Err(Failure::Item(format!(
                "{missing} of {count} blocks were not written (a rank failed or stopped); rerun the same command to fetch only those"
            )));
        }
        let actual = fs::metadata(&tmp)
            .map_err(|e| Failure::Item(io_message(&e, &tmp)))?
            .len();
        let verdict = if actual != size {
            Some(format!("size mismatch: {actual} of {size} bytes"))
        } else if let Some((_, expect)) = tree {
            let hs: Vec<Option<u128>> = (0..count).map(|i| done.get(&i).copied().flatten()).collect();
            (chunk::tree_hash(&hs) != Some(expect)).then(|| MISMATCH.to_string())
        } else if let Some(h) = meta.xxh3 {
            let got = local::hash_file(&tmp).map_err(|e| Failure::Item(io_message(&e, &tmp)))?;
            (got != h).then(|| MISMATCH.to_string())
        } else {
            None
        };
        let clean = || {
            for r in 0..ranks {
                resume::remove(&rank_log(&tmp, r));
            }
        };
        if let Some(msg) = verdict {
            clean();
            let _ = fs::remove_file(&tmp);
            return Err(Failure::Corrupt(msg));
        }
        local::apply_meta(&tmp, &meta, 0o644, fallback)
            .and_then(|()| fs::rename(&tmp, &d))
            .map_err(|e| Failure::Item(io_message(&e, &d)))?;
        clean();
        Ok(())
    })
    .await
    .map_err(|e| Failure::Item(e.to_string()))?;
    r?;
    tracing::info!(blob = %entry.name, path = %dest.display(), bytes = size, "pulled (sharded)");
    ctx.stats.files_transferred.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
