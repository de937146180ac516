//! Local file-system helpers for the engine: safe directory creation under a
//! root, temporary names, applying POSIX attributes, and hashing files.
//!
//! Invariants: nothing is created through a symlink inside the destination
//! root (a planted `dir -> /etc` is refused, not followed); temporary files
//! are created 0600 beside their target and only renamed into place whole.

/// How every "disk full" item error starts (the Slurm hooks treat it as a
/// node fault, not the user's).
pub const NO_SPACE: &str = "no space left on the device holding";

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::meta::PosixMeta;

/// Prefix of hopstage's temporary files; walkers skip these names.
pub const TEMP_PREFIX: &str = ".hopstage-";

/// The temporary file beside `dest` for a download of blob `name`.
pub fn temp_path(dest: &Path, name: &str) -> PathBuf {
    let h = xxhash_rust::xxh3::xxh3_64(name.as_bytes());
    let dir = dest.parent().unwrap_or_else(|| Path::new("."));
    dir.join(format!("{TEMP_PREFIX}{h:016x}.part"))
}

/// Creates directories below `root` without following symlinks.
#[derive(Debug, Default)]
pub struct DirMaker {
    known: Mutex<HashSet<PathBuf>>,
}

/// Directories remembered before the cache is cleared.
const DIR_CACHE_LIMIT: usize = 16_384;

impl DirMaker {
    /// Ensures `root/rel` exists as a real directory, every component checked.
    pub fn ensure(&self, root: &Path, rel: &Path) -> io::Result<()> {
        let full = root.join(rel);
        if let Ok(k) = self.known.lock() {
            if k.contains(&full) {
                return Ok(());
            }
        }
        let mut cur = root.to_path_buf();
        for c in rel.components() {
            let Component::Normal(part) = c else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "unexpected path component",
                ));
            };
            cur.push(part);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(io::Error::other(format!(
                        "'{}' is a symbolic link; refusing to write through it",
                        cur.display()
                    )))
                }
                Ok(_) => {
                    return Err(io::Error::other(format!(
                        "'{}' is a file where a directory is needed",
                        cur.display()
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::create_dir(&cur) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        if !fs::symlink_metadata(&cur)?.is_dir() {
                            return Err(io::Error::other(format!(
                                "'{}' appeared as a non-directory",
                                cur.display()
                            )));
                        }
                    }
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
        if let Ok(mut k) = self.known.lock() {
            if k.len() >= DIR_CACHE_LIMIT {
                k.clear();
            }
            k.insert(full);
        }
        Ok(())
    }
}

/// Creates (truncating) a private temporary file.
pub fn create_temp(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .read(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Applies mode, mtime and (where permitted) ownership from `meta`, falling
/// back to `default_mode` and `fallback_mtime`.
pub fn apply_meta(
    path: &Path,
    meta: &PosixMeta,
    default_mode: u32,
    fallback_mtime: Option<SystemTime>,
) -> io::Result<()> {
    if meta.uid.is_some() || meta.gid.is_some() {
        // Only root may give files away; for others EPERM is expected and ignored.
        match std::os::unix::fs::lchown(path, meta.uid, meta.gid) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) => return Err(e),
        }
    }
    let mode = meta.mode.unwrap_or(default_mode);
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))?;
    let mtime = meta.mtime.map(SystemTime::from).or(fallback_mtime);
    if let Some(t) = mtime {
        let f = File::open(path)?;
        f.set_modified(t)?;
    }
    Ok(())
}

/// Feeds a whole file, read sequentially in 1 MiB pieces, to `update`.
pub fn read_through(path: &Path, mut update: impl FnMut(&[u8])) -> io::Result<()> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        update(&buf[..n]);
    }
}

/// [`hash_file`] on the blocking pool; `None` when the file cannot be read.
pub async fn hash_file_async(path: PathBuf) -> Option<u128> {
    tokio::task::spawn_blocking(move || hash_file(&path).ok())
        .await
        .ok()
        .flatten()
}

/// xxh3-128 of a whole file, read sequentially.
pub fn hash_file(path: &Path) -> io::Result<u128> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    read_through(path, |b| h.update(b))?;
    Ok(h.digest128())
}

/// Unix seconds of a `SystemTime`.
pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_symlinked_parent() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("evil")).unwrap();
        let m = DirMaker::default();
        assert!(m.ensure(d.path(), Path::new("evil/x")).is_err());
        assert!(m.ensure(d.path(), Path::new("good/x")).is_ok());
        assert!(d.path().join("good/x").is_dir());
        fs::write(d.path().join("file"), b"").unwrap();
        assert!(m.ensure(d.path(), Path::new("file/x")).is_err());
    }

    #[test]
    fn temp_names_are_hidden_and_stable() {
        let a = temp_path(Path::new("/d/x"), "p/x");
        assert_eq!(a, temp_path(Path::new("/d/x"), "p/x"));
        assert!(a
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(TEMP_PREFIX));
        assert_eq!(a.parent(), Some(Path::new("/d")));
    }
}
