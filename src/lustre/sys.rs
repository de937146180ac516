//! The only `unsafe` in hopstage: the raw Lustre syscalls (`fstatfs`, `open`
//! with `O_LOV_DELAY_CREATE`, `ioctl`, `fsetxattr`, `fgetxattr`), plus the two
//! other file-system calls std lacks (`fstatvfs`, `setrlimit(RLIMIT_NOFILE)`),
//! kept here so that `unsafe` has exactly one home.
//!
//! Each wrapper checks its arguments' sizes, calls libc once, and turns -1
//! into `io::Error::last_os_error()`. Numbers are from
//! `shared/specs/lustre.md` §1, §4 and §5 (Lustre 2.15, x86_64 encoding).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `_IOW('f', 154, long)`.
pub const LL_IOC_LOV_SETSTRIPE: u64 = 0x4008_669A;
/// `_IOW('f', 155, long)` (returns data despite the W).
pub const LL_IOC_LOV_GETSTRIPE: u64 = 0x4008_669B;
/// `_IOR('f', 168, long)`: OST count of the file system, on a directory fd.
pub const LL_IOC_GETOBDCOUNT: u64 = 0x8008_66A8;
/// 2.15's `O_LOV_DELAY_CREATE`: the 1.8 bit plus `O_NOCTTY | FASYNC`.
pub const O_LOV_DELAY_CREATE: i32 = 0x0100_0000 | libc::O_NOCTTY | libc::O_ASYNC;
/// The layout xattr.
pub const XATTR_LUSTRE_LOV: &str = "lustre.lov";

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `fstatfs(fd).f_type`, as the 32-bit magic.
pub fn fs_type(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `st` is a valid, writable statfs buffer and `fd` is open for the call.
    check(unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstatfs succeeded, so the kernel filled the struct.
    let st = unsafe { st.assume_init() };
    Ok(st.f_type as u32)
}

/// Creates `path` exclusively with the Lustre delay-create flag, so that no
/// layout exists until one is set. The fd is write-only.
pub fn open_delay_create(path: &Path, mode: u32) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    let flags =
        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC | O_LOV_DELAY_CREATE;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let fd = check(unsafe { libc::open(c.as_ptr(), flags, mode as libc::c_uint) })?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(owned)
}

/// Clears `O_ASYNC`, which the delay-create flag leaves set on the fd.
pub fn clear_async(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on an open fd take no pointers.
    let fl = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_ASYNC) })?;
    Ok(())
}

/// `ioctl(fd, LL_IOC_LOV_SETSTRIPE, buf)`: the kernel reads the layout and
/// writes the resulting one back into `buf`.
pub fn set_stripe(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<()> {
    if buf.len() < 32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "layout buffer under 32 bytes",
        ));
    }
    // SAFETY: `buf` is a valid mutable buffer at least as large as the layout the
    // kernel reads (its size follows from the magic, which `layout` encoded).
    check(unsafe { libc::ioctl(fd.as_raw_fd(), LL_IOC_LOV_SETSTRIPE as _, buf.as_mut_ptr()) })?;
    Ok(())
}

/// `ioctl(dir_fd, LL_IOC_GETOBDCOUNT, &0)`: the number of OSTs.
pub fn ost_count(dir: BorrowedFd<'_>) -> io::Result<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: the kernel reads and writes one int through the pointer.
    check(unsafe {
        libc::ioctl(
            dir.as_raw_fd(),
            LL_IOC_GETOBDCOUNT as _,
            &mut n as *mut libc::c_int,
        )
    })?;
    Ok(n.max(0) as u32)
}

/// `fsetxattr(fd, "lustre.lov", value, 0)`.
pub fn set_lov_xattr(fd: BorrowedFd<'_>, value: &[u8]) -> io::Result<()> {
    let name = CString::new(XATTR_LUSTRE_LOV).map_err(|_| io::Error::other("xattr name"))?;
    // SAFETY: name is NUL-terminated; value pointer and length describe a live slice.
    check(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })?;
    Ok(())
}

/// `fgetxattr(fd, "lustre.lov", buf)`: returns the layout's length.
pub fn get_lov_xattr(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let name = CString::new(XATTR_LUSTRE_LOV).map_err(|_| io::Error::other("xattr name"))?;
    // SAFETY: name is NUL-terminated; buf pointer and length describe a live mutable slice.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Unlinks `path` (cleanup after a failed layout set).
pub fn unlink(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)
}

/// Free and total bytes of the file system holding `fd` (`fstatvfs`).
#[allow(clippy::unnecessary_cast)] // the field types differ between libcs and targets
pub fn space(fd: BorrowedFd<'_>) -> io::Result<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `st` is a valid, writable statvfs buffer and `fd` is open.
    check(unsafe { libc::fstatvfs(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstatvfs succeeded and filled the struct.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

/// Raises the soft open-file limit to the hard limit (as s5cmd does): many
/// files in flight each hold a descriptor. Returns the new soft limit.
#[allow(clippy::unnecessary_cast)] // rlim_t differs between libcs and targets
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to fill.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    if lim.rlim_cur < lim.rlim_max {
        let want = libc::rlimit {
            rlim_cur: lim.rlim_max.min(1 << 20),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `want` is a valid rlimit no larger than the hard limit.
        check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) })?;
        return Ok(want.rlim_cur as u64);
    }
    Ok(lim.rlim_cur as u64)
}

/// `copy_file_range` of up to `len` bytes from `src` at `off` to `dst` at
/// the same offset, looping until done. Returns `Err` with EXDEV/EINVAL/
/// ENOSYS/EOPNOTSUPP when the kernel cannot do it (callers then fall back to
/// read and write).
pub fn copy_range(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, off: u64, len: u64) -> io::Result<()> {
    let mut done = 0u64;
    while done < len {
        let mut off_in = (off + done) as libc::loff_t;
        let mut off_out = (off + done) as libc::loff_t;
        let want = (len - done).min(1 << 30) as usize;
        // SAFETY: both fds are open; the offset pointers point at live locals.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                want,
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "source shorter than expected",
            ));
        }
        done += n as u64;
    }
    Ok(())
}
