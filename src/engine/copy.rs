//! Copy: a local file or tree → a local directory (between `/AMLFS` and
//! node-local scratch), with the same skip rules, summaries, temp-and-rename
//! and Lustre layouts as pull.
//!
//! Data moves with `copy_file_range` (no copy through user space; on Lustre
//! and on file systems with reflinks the kernel may do better still), falling
//! back to `pread`/`pwrite` through a budgeted buffer when the kernel refuses
//! (across file systems on recent kernels). Large files are copied as
//! stripe-aligned ranges in parallel. Symbolic links are recreated as links
//! (like `cp -a`) unless `--follow-symlinks`; special files are skipped and
//! reported. On a Lustre source, HSM-released files are restored by reading
//! (`--hsm restore`), skipped, or failed, as asked.

use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use time::OffsetDateTime;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::local::{self, DirMaker};
use super::{chunk, Budget, Settings};
use crate::filter::{should_transfer, Side};
use crate::lustre::{self, policy, Layout, LustreDir, StripePolicy};
use crate::meta::PosixMeta;
use crate::report::Stats;
use crate::walk::{self, Kind, LocalEntry};

/// What to do with an HSM-released source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Hsm {
    /// Read it anyway (Lustre restores it from the archive first).
    Restore,
    /// Skip it and say so.
    Skip,
    /// Report it as failed.
    Fail,
}

struct Ctx {
    settings: Settings,
    stats: Arc<Stats>,
    budget: Budget,
    dirs: DirMaker,
    root: PathBuf,
    src_lustre: bool,
    dst_lustre: Option<LustreDir>,
    hsm: Hsm,
}

fn posix_of(m: &fs::Metadata) -> PosixMeta {
    PosixMeta {
        uid: Some(m.uid()),
        gid: Some(m.gid()),
        mode: Some(m.mode() & 0o7777),
        mtime: OffsetDateTime::from_unix_timestamp_nanos(
            m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        )
        .ok(),
        is_dir: m.is_dir(),
        xxh3: None,
        tree: None,
    }
}

/// Copies `src` (file or directory) to `dst`.
pub async fn copy(
    src: &Path,
    dst: &Path,
    settings: Settings,
    stats: Arc<Stats>,
    hsm: Hsm,
) -> Result<(), crate::error::Error> {
    let io_err = |p: &Path, e| crate::error::Error::Io {
        path: p.display().to_string(),
        source: e,
    };
    let top = fs::metadata(src).map_err(|e| io_err(src, e))?;
    let (root, single) = if top.is_dir() {
        (dst.to_path_buf(), None)
    } else {
        let name = src.file_name().map(PathBuf::from).unwrap_or_default();
        if dst.is_dir() || dst.as_os_str().to_string_lossy().ends_with('/') {
            (dst.to_path_buf(), Some(name))
        } else {
            let parent = dst.parent().map(Path::to_path_buf).unwrap_or_default();
            (parent, dst.file_name().map(PathBuf::from))
        }
    };
    if !settings.dry_run {
        fs::create_dir_all(&root).map_err(|e| io_err(&root, e))?;
    }
    let ctx = Arc::new(Ctx {
        budget: Budget::new(settings.max_memory, settings.block_size),
        src_lustre: lustre::detect(src.ancestors().find(|a| a.is_dir()).unwrap_or(src)).is_some(),
        dst_lustre: root
            .ancestors()
            .find(|a| a.is_dir())
            .and_then(lustre::detect),
        settings,
        stats: Arc::clone(&stats),
        dirs: DirMaker::default(),
        root: root.clone(),
        hsm,
    });
    if let Some(name) = single {
        stats.files_seen.fetch_add(1, Ordering::Relaxed);
        stats.bytes_seen.fetch_add(top.len(), Ordering::Relaxed);
        let entry = LocalEntry {
            rel: name.to_string_lossy().into_owned(),
            path: src.to_path_buf(),
            kind: Kind::File,
            meta: top,
        };
        if let Err(e) = copy_one(&ctx, &entry).await {
            stats.fail(&src.display().to_string(), &e);
        }
        return Ok(());
    }

    let (tx, mut rx) = mpsc::channel::<LocalEntry>(256);
    let walker = {
        let src = src.to_path_buf();
        let stats = Arc::clone(&stats);
        let follow = ctx.settings.follow_symlinks;
        let filter = ctx.settings.filter.clone();
        tokio::task::spawn_blocking(move || {
            walk::walk(&src, follow, |item| match item {
                Err(w) => {
                    stats.files_seen.fetch_add(1, Ordering::Relaxed);
                    stats.fail(&w.path, &w.message);
                    true
                }
                Ok(e) if !filter.accepts(&e.rel) => true,
                Ok(e) => tx.blocking_send(e).is_ok(),
            })
        })
    };
    let files = Arc::new(Semaphore::new(ctx.settings.concurrency));
    let mut tasks = JoinSet::new();
    let mut dirs: Vec<(PathBuf, PosixMeta)> = Vec::new();
    while let Some(entry) = rx.recv().await {
        match entry.kind {
            Kind::Dir => {
                let rel = PathBuf::from(&entry.rel);
                if !ctx.settings.dry_run {
                    if let Err(e) = ctx.dirs.ensure(&ctx.root, &rel) {
                        stats.fail(&entry.path.display().to_string(), &e.to_string());
                        continue;
                    }
                }
                dirs.push((rel, posix_of(&entry.meta)));
            }
            Kind::Special => {
                stats.files_seen.fetch_add(1, Ordering::Relaxed);
                stats.skip(
                    &entry.path.display().to_string(),
                    Some("not a regular file (FIFO, socket or device)"),
                );
            }
            Kind::Symlink => {
                stats.files_seen.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = copy_link(&ctx, &entry) {
                    stats.fail(&entry.path.display().to_string(), &e);
                }
            }
            Kind::File => {
                stats.files_seen.fetch_add(1, Ordering::Relaxed);
                stats
                    .bytes_seen
                    .fetch_add(entry.meta.len(), Ordering::Relaxed);
                let Ok(permit) = Arc::clone(&files).acquire_owned().await else {
                    break;
                };
                let ctx = Arc::clone(&ctx);
                tasks.spawn(async move {
                    if let Err(e) = copy_one(&ctx, &entry).await {
                        ctx.stats.fail(&entry.path.display().to_string(), &e);
                    }
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let _ = walker.await;
    // Directory attributes last, deepest first, once their contents are in place.
    if !ctx.settings.dry_run {
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, meta) in &dirs {
            let full = ctx.root.join(rel);
            if let Err(e) = local::apply_meta(&full, meta, 0o755, None) {
                stats.fail(&full.display().to_string(), &e.to_string());
            }
        }
    }
    if stats.files_seen.load(Ordering::Relaxed) == 0 && dirs.is_empty() && !ctx.settings.allow_empty
    {
        return Err(crate::error::Error::Usage(format!(
            "'{}' holds nothing to copy: check the path, or pass --allow-empty",
            src.display()
        )));
    }
    Ok(())
}

fn copy_link(ctx: &Ctx, entry: &LocalEntry) -> Result<(), String> {
    let target = fs::read_link(&entry.path).map_err(|e| format!("cannot read link: {e}"))?;
    if ctx.settings.dry_run {
        return Ok(());
    }
    let dest = ctx.root.join(&entry.rel);
    if let Some(parent) = Path::new(&entry.rel).parent() {
        ctx.dirs
            .ensure(&ctx.root, parent)
            .map_err(|e| format!("cannot create its directory: {e}"))?;
    }
    match fs::symlink_metadata(&dest) {
        Ok(m)
            if m.file_type().is_symlink() && fs::read_link(&dest).ok() == Some(target.clone()) =>
        {
            ctx.stats.skip(&entry.rel, None);
            return Ok(());
        }
        Ok(m) if m.is_dir() => return Err(format!("'{}' is a directory", dest.display())),
        Ok(_) => fs::remove_file(&dest).map_err(|e| e.to_string())?,
        Err(_) => {}
    }
    std::os::unix::fs::symlink(&target, &dest).map_err(|e| e.to_string())?;
    ctx.stats.done(0);
    Ok(())
}

/// The layout for a new file on a Lustre destination.
fn layout_for(ctx: &Ctx, src: &Path, size: u64) -> Option<Layout> {
    let l = ctx.dst_lustre.as_ref()?;
    match &ctx.settings.stripe {
        StripePolicy::Inherit => None,
        StripePolicy::Auto => policy::auto(size, l.osts),
        StripePolicy::Explicit(x) => Some(x.clone()),
        StripePolicy::Mirror => {
            if !ctx.src_lustre {
                return policy::auto(size, l.osts);
            }
            lustre::read_layout(src).ok().map(|d| d.layout)
        }
    }
}

async fn copy_one(ctx: &Arc<Ctx>, entry: &LocalEntry) -> Result<(), String> {
    let size = entry.meta.len();
    let dest = ctx.root.join(&entry.rel);
    if ctx.src_lustre {
        if let Ok(d) = lustre::read_layout(&entry.path) {
            if d.released {
                match ctx.hsm {
                    Hsm::Restore => {}
                    Hsm::Skip => {
                        ctx.stats.skip(
                            &entry.path.display().to_string(),
                            Some("released to the HSM archive (use --hsm restore to copy it)"),
                        );
                        return Ok(());
                    }
                    Hsm::Fail => {
                        return Err(
                            "released to the HSM archive; its data is not on Lustre (use --hsm restore)".into(),
                        )
                    }
                }
            }
        }
    }
    match fs::symlink_metadata(&dest) {
        Ok(m) if m.is_dir() => return Err(format!("'{}' is a directory", dest.display())),
        Ok(m) if m.file_type().is_symlink() => {
            return Err(format!(
                "'{}' is a symbolic link; refusing to replace it",
                dest.display()
            ))
        }
        Ok(m) => {
            let (a, b) = if ctx.settings.checksum && m.len() == size {
                let (p, q) = (entry.path.clone(), dest.clone());
                tokio::task::spawn_blocking(move || {
                    (local::hash_file(&p).ok(), local::hash_file(&q).ok())
                })
                .await
                .unwrap_or((None, None))
            } else {
                (None, None)
            };
            let src = Side {
                size,
                mtime: Some(entry.meta.mtime()),
                hash: a,
            };
            let dst = Side {
                size: m.len(),
                mtime: Some(m.mtime()),
                hash: b,
            };
            if !should_transfer(ctx.settings.overwrite, ctx.settings.checksum, &src, &dst) {
                ctx.stats.skip(&entry.rel, None);
                return Ok(());
            }
        }
        Err(_) => {}
    }
    let layout = layout_for(ctx, &entry.path, size);
    let block = match (&ctx.dst_lustre, &layout) {
        (Some(_), Some(l)) => policy::aligned_block(
            chunk::block_size_for(size, ctx.settings.block_size),
            l.stripe_size_at(0).max(1 << 20),
        ),
        _ => chunk::block_size_for(size, ctx.settings.block_size),
    };
    if ctx.settings.dry_run {
        if !ctx.settings.quiet {
            let lay = layout
                .as_ref()
                .map(|l| format!(", layout: {}", lustre::describe(l).replace('\n', "; ")))
                .unwrap_or_default();
            println!(
                "copy {} -> {} ({size} bytes{lay}, {} ranges)",
                entry.path.display(),
                dest.display(),
                size.div_ceil(block).max(1)
            );
        }
        ctx.stats.done(size);
        return Ok(());
    }
    if let Some(parent) = Path::new(&entry.rel).parent() {
        ctx.dirs
            .ensure(&ctx.root, parent)
            .map_err(|e| format!("cannot create its directory: {e}"))?;
    }
    let tmp = local::temp_path(&dest, &entry.rel);
    let out = match &layout {
        Some(l) => {
            let _ = fs::remove_file(&tmp);
            lustre::create_with_layout(&tmp, l, 0o600).map_err(|e| e.to_string())?
        }
        None => local::create_temp(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?,
    };
    let input = File::open(&entry.path).map_err(|e| format!("cannot open: {e}"))?;
    let r = copy_data(ctx, input, out, size, block).await;
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let meta = posix_of(&entry.meta);
    let (t, d) = (tmp.clone(), dest.clone());
    let finish = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        local::apply_meta(&t, &meta, 0o644, None)?;
        fs::rename(&t, &d)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| format!("{}: {e}", dest.display())));
    if let Err(e) = finish {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    ctx.stats.done(size);
    Ok(())
}

/// Copies `size` bytes in `block`-sized ranges, several at once.
async fn copy_data(
    ctx: &Arc<Ctx>,
    input: File,
    out: File,
    size: u64,
    block: u64,
) -> Result<(), String> {
    out.set_len(size).map_err(|e| e.to_string())?;
    let (input, out) = (Arc::new(input), Arc::new(out));
    let mut parts = JoinSet::new();
    // Parallel ranges pay off where writers to one file do not contend: on
    // Lustre (extent locks per stripe object). On a local file system one
    // inode lock serialises them and, on few cores, waiters spin: measured on
    // ext4, 4 parallel ranges of a 2 GiB copy took 6.3 s and 10 CPU-s against
    // 1.3 s for one sequential copy_file_range (cp -a).
    let per_file = Arc::new(Semaphore::new(if ctx.dst_lustre.is_some() { 4 } else { 1 }));
    for (off, len) in chunk::ranges(size, block) {
        let permit = Arc::clone(&per_file)
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (i, o, budget) = (Arc::clone(&input), Arc::clone(&out), ctx.budget.clone());
        parts.spawn(async move {
            let fallback = match tokio::task::spawn_blocking({
                let (i, o) = (Arc::clone(&i), Arc::clone(&o));
                move || lustre::sys::copy_range(i.as_fd(), o.as_fd(), off, len)
            })
            .await
            {
                Ok(Ok(())) => false,
                Ok(Err(e))
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                    ) =>
                {
                    true
                }
                Ok(Err(e)) => return Err(e.to_string()),
                Err(e) => return Err(e.to_string()),
            };
            if fallback {
                let mut buf = budget.buffer(len as usize).await;
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    i.read_exact_at(&mut buf, off)?;
                    o.write_all_at(&buf, off)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            }
            drop(permit);
            Ok(())
        });
    }
    let mut first_err = None;
    while let Some(r) = parts.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(e.to_string());
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let got = out.metadata().map_err(|e| e.to_string())?.len();
    if got != size {
        return Err(format!("size mismatch after copy: {got} of {size} bytes"));
    }
    Ok(())
}
