//! Lustre support without liblustreapi: detection, layout policy, creating
//! files with a layout before their first byte, and reading layouts.
//!
//! Owns: everything Lustre. Invariants: on a file system that is not Lustre
//! nothing here makes a Lustre call (detection is one `fstatfs` per
//! destination); a file that gets a layout is created `O_EXCL` with
//! `O_LOV_DELAY_CREATE` and is never written before the layout is set; if
//! setting fails, the file is unlinked and the error names the file and the
//! cause. All `unsafe` lives in [`sys`].

pub mod layout;
pub mod policy;
pub mod sys;

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;

pub use layout::{Decoded, Layout, Striping};
pub use policy::StripePolicy;

/// A Lustre destination, detected once per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LustreDir {
    /// The file-system name from the mount table, when found (for messages).
    pub fsname: Option<String>,
    /// OST count (0 when the ioctl is unavailable).
    pub osts: u32,
}

/// Detects Lustre at `dir` (an existing directory).
pub fn detect(dir: &Path) -> Option<LustreDir> {
    let f = File::open(dir).ok()?;
    let magic = sys::fs_type(f.as_fd()).ok()?;
    if magic != layout::LL_SUPER_MAGIC {
        return None;
    }
    Some(LustreDir {
        fsname: fsname_of(dir),
        osts: sys::ost_count(f.as_fd()).unwrap_or(0),
    })
}

/// The fsname (`lustrefs` in `10.0.0.4@tcp:/lustrefs`) of the longest Lustre
/// mount that contains `dir`, from `/proc/self/mountinfo`.
fn fsname_of(dir: &Path) -> Option<String> {
    let canon = dir.canonicalize().ok()?;
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut r = right.split(' ');
            let fstype = r.next()?;
            let source = r.next()?;
            if fstype != "lustre" || !canon.starts_with(mount_point) {
                return None;
            }
            let name = source.split(":/").nth(1)?.split('/').next()?;
            Some((mount_point.len(), name.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, name)| name)
}

/// Why a layout could not be set or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not a Lustre file system.
    #[error("not on Lustre")]
    NotLustre,
    /// A syscall failed.
    #[error("{op} on '{path}': {source}{}", hint(.source))]
    Sys {
        /// Which call.
        op: &'static str,
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The layout bytes could not be decoded.
    #[error("layout of '{path}': {message}")]
    Decode {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EEXIST) | Some(libc::EALREADY) => " (the file already has a layout)",
        Some(libc::EINVAL) => " (the MDS refused the layout: check the stripe count against the OST count, and the pool)",
        Some(libc::EPERM) | Some(libc::EACCES) => " (no write permission on the file)",
        Some(libc::ENOTTY) | Some(libc::EOPNOTSUPP) => " (not a Lustre file system)",
        Some(524) => " (the directory ioctl rejects PFL layouts)",
        _ => "",
    }
}

/// Creates `path` exclusively with `layout` set before any write. On failure
/// the new file is removed. The returned file is open for writing.
pub fn create_with_layout(path: &Path, layout: &Layout, mode: u32) -> Result<File, Error> {
    let sys_err = |op, source| Error::Sys {
        op,
        path: path.display().to_string(),
        source,
    };
    let fd =
        sys::open_delay_create(path, mode).map_err(|e| sys_err("open(O_LOV_DELAY_CREATE)", e))?;
    let set = match layout {
        Layout::Plain(_) => {
            let mut buf = layout.encode();
            sys::set_stripe(fd.as_fd(), &mut buf).map_err(|e| sys_err("LL_IOC_LOV_SETSTRIPE", e))
        }
        Layout::Composite(_) => {
            // PFL goes through the xattr; it silently succeeds on an existing
            // layout, which O_EXCL rules out here.
            sys::set_lov_xattr(fd.as_fd(), &layout.encode())
                .map_err(|e| sys_err("fsetxattr(lustre.lov)", e))
        }
    };
    if let Err(e) = set.and_then(|()| sys::clear_async(fd.as_fd()).map_err(|e| sys_err("fcntl", e)))
    {
        drop(fd);
        let _ = sys::unlink(path);
        return Err(e);
    }
    Ok(File::from(fd))
}

/// Sets the default layout of directory `dir` (new files created in it
/// inherit it): plain layouts through `LL_IOC_LOV_SETSTRIPE` on the directory,
/// PFL through the `lustre.lov` xattr (the directory ioctl rejects PFL with
/// errno 524).
pub fn set_dir_default(dir: &Path, layout: &Layout) -> Result<(), Error> {
    let sys_err = |op, source| Error::Sys {
        op,
        path: dir.display().to_string(),
        source,
    };
    let f = File::open(dir).map_err(|e| sys_err("open", e))?;
    if sys::fs_type(f.as_fd()).ok() != Some(layout::LL_SUPER_MAGIC) {
        return Err(Error::NotLustre);
    }
    match layout {
        Layout::Plain(_) => {
            let mut buf = layout.encode();
            sys::set_stripe(f.as_fd(), &mut buf).map_err(|e| sys_err("LL_IOC_LOV_SETSTRIPE", e))
        }
        Layout::Composite(_) => sys::set_lov_xattr(f.as_fd(), &layout.encode())
            .map_err(|e| sys_err("fsetxattr(lustre.lov)", e)),
    }
}

/// Reads the layout of a file or directory.
pub fn read_layout(path: &Path) -> Result<Decoded, Error> {
    let f = File::open(path).map_err(|e| Error::Sys {
        op: "open",
        path: path.display().to_string(),
        source: e,
    })?;
    if sys::fs_type(f.as_fd()).ok() != Some(layout::LL_SUPER_MAGIC) {
        return Err(Error::NotLustre);
    }
    let mut buf = vec![0u8; 65536];
    let n = sys::get_lov_xattr(f.as_fd(), &mut buf).map_err(|e| Error::Sys {
        op: "fgetxattr(lustre.lov)",
        path: path.display().to_string(),
        source: e,
    })?;
    buf.truncate(n);
    layout::decode(&buf).map_err(|message| Error::Decode {
        path: path.display().to_string(),
        message,
    })
}

/// Describes a layout like `lfs getstripe` does, one line per component.
pub fn describe(l: &Layout) -> String {
    let one = |s: &Striping| {
        let count = if s.stripe_count == -1 {
            "-1 (all OSTs)".to_string()
        } else if s.stripe_count == 0 {
            "default".to_string()
        } else {
            s.stripe_count.to_string()
        };
        let size = if s.stripe_size == 0 {
            "default".to_string()
        } else {
            crate::units::human_bytes(s.stripe_size)
        };
        let pool = s
            .pool
            .as_deref()
            .map(|p| format!(" pool={p}"))
            .unwrap_or_default();
        format!("stripe_count={count} stripe_size={size}{pool}")
    };
    match l {
        Layout::Plain(s) => one(s),
        Layout::Composite(c) => {
            let mut start = 0;
            let mut out = Vec::new();
            for comp in c {
                let end = if comp.end == layout::LUSTRE_EOF {
                    "eof".to_string()
                } else {
                    crate::units::human_bytes(comp.end)
                };
                out.push(format!(
                    "[{} - {end}) {}",
                    crate::units::human_bytes(start),
                    one(&comp.striping)
                ));
                start = comp.end;
            }
            out.join("\n")
        }
    }
}
