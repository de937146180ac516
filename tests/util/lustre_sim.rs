//! A fake Lustre for the real binary: runs `hopstage` under a seccomp
//! user-notification filter and answers its Lustre syscalls for one
//! directory tree, recording what it saw.
//!
//! Trapped: `statfs`, `fstatfs`, `ioctl`, `fsetxattr`, `fgetxattr`. For
//! paths under the fake root the supervisor answers as a Lustre 2.15 client
//! would (statfs magic 0x0BD00BD0; `LL_IOC_LOV_SETSTRIPE` decodes the buffer,
//! writes the resolved layout back, and gives EEXIST on a second set;
//! `GETOBDCOUNT`; the `lustre.lov` xattr, which silently accepts a second
//! set; ENODATA for a file without a layout). Everything else continues to
//! the real kernel. Layouts are keyed by inode, so they follow renames.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

const SETSTRIPE: u64 = 0x4008_669A;
const GETOBDCOUNT: u64 = 0x8008_66A8;
const LL_SUPER_MAGIC: i64 = 0x0BD0_0BD0;
const NOTIF_RECV: u64 = 0xC050_2100;
const NOTIF_SEND: u64 = 0xC018_2101;
const RET_USER_NOTIF: u32 = 0x7fc0_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
const FLAG_NEW_LISTENER: libc::c_ulong = 1 << 3;
const FLAG_CONTINUE: u32 = 1;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct SeccompData {
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Resp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

/// One Lustre call the binary made under the fake root.
#[derive(Debug, Clone)]
#[allow(dead_code)] // paths are read through Debug in assertion messages
pub enum Event {
    /// `statfs`/`fstatfs` answered with the Lustre magic.
    Statfs(PathBuf),
    /// `LL_IOC_LOV_SETSTRIPE` with these bytes; `size` is the file's size then.
    SetStripe {
        path: PathBuf,
        bytes: Vec<u8>,
        size: u64,
        result: i32,
    },
    /// `fsetxattr("lustre.lov")`.
    SetXattr {
        path: PathBuf,
        bytes: Vec<u8>,
        size: u64,
    },
    /// `fgetxattr("lustre.lov")`.
    GetXattr(PathBuf),
    /// `LL_IOC_GETOBDCOUNT`.
    ObdCount(PathBuf),
}

/// Configuration of the fake; clones share the layouts set so far, so a
/// later run (e.g. `hopstage layout`) sees what an earlier one set.
#[derive(Clone)]
pub struct FakeLustre {
    pub root: PathBuf,
    pub osts: u32,
    /// Pools the fake MDS rejects with EINVAL.
    pub bad_pools: Vec<String>,
    /// Layouts by (dev, inode).
    pub layouts: Layouts,
}

/// Layout bytes by (dev, inode), shared by clones of a [`FakeLustre`].
pub type Layouts = Arc<Mutex<HashMap<(u64, u64), Vec<u8>>>>;

struct State {
    events: Vec<Event>,
}

fn filter() -> Vec<libc::sock_filter> {
    let ld = |k| libc::sock_filter {
        code: 0x20,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k, jt, jf| libc::sock_filter {
        code: 0x15,
        jt,
        jf,
        k,
    };
    let ret = |k| libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k,
    };
    let nrs = [
        libc::SYS_statfs,
        libc::SYS_fstatfs,
        libc::SYS_ioctl,
        libc::SYS_fsetxattr,
        libc::SYS_fgetxattr,
    ];
    let mut f = vec![ld(4), jeq(AUDIT_ARCH_X86_64, 1, 0), ret(RET_ALLOW), ld(0)];
    let n = nrs.len() as u8;
    for (i, nr) in nrs.iter().enumerate() {
        // Jump to the USER_NOTIF return (after the ALLOW) on a match.
        f.push(jeq(*nr as u32, n - i as u8, 0));
    }
    f.push(ret(RET_ALLOW));
    f.push(ret(RET_USER_NOTIF));
    f
}

fn read_mem(pid: u32, addr: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: both iovecs describe valid ranges (ours owned, theirs checked by the kernel).
    let n = unsafe { libc::process_vm_readv(pid as i32, &local, 1, &remote, 1, 0) };
    (n == len as isize).then_some(buf)
}

fn write_mem(pid: u32, addr: u64, data: &[u8]) -> bool {
    let local = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: as in read_mem.
    let n = unsafe { libc::process_vm_writev(pid as i32, &local, 1, &remote, 1, 0) };
    n == data.len() as isize
}

fn read_cstr(pid: u32, addr: u64) -> Option<String> {
    let mut out = Vec::new();
    for chunk in 0..16u64 {
        // Read page-sized pieces until a NUL (a short read near a page end is retried smaller).
        let piece = read_mem(pid, addr + chunk * 256, 256)
            .or_else(|| read_mem(pid, addr + chunk * 256, 1))?;
        if let Some(z) = piece.iter().position(|&c| c == 0) {
            out.extend_from_slice(&piece[..z]);
            return String::from_utf8(out).ok();
        }
        out.extend_from_slice(&piece);
    }
    None
}

fn fd_path(pid: u32, fd: u64) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/fd/{}", fd as i32)).ok()
}

fn fd_meta(pid: u32, fd: u64) -> Option<std::fs::Metadata> {
    std::fs::metadata(format!("/proc/{pid}/fd/{}", fd as i32)).ok()
}

fn fake_statfs() -> Vec<u8> {
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    st.f_type = LL_SUPER_MAGIC;
    st.f_bsize = 4096;
    st.f_blocks = 1 << 30;
    st.f_bfree = 1 << 29;
    st.f_bavail = 1 << 29;
    st.f_namelen = 255;
    // SAFETY: reading the bytes of a POD struct.
    unsafe {
        std::slice::from_raw_parts(
            (&st as *const libc::statfs).cast::<u8>(),
            std::mem::size_of::<libc::statfs>(),
        )
    }
    .to_vec()
}

enum Answer {
    Continue,
    Value(i64),
    Errno(i32),
}

impl FakeLustre {
    fn under(&self, p: &Path) -> bool {
        p.starts_with(&self.root)
    }

    fn handle(&self, n: &Notif, st: &Mutex<State>) -> Answer {
        let a = n.data.args;
        let pid = n.pid;
        let nr = n.data.nr as i64;
        let push = |e: Event| {
            if let Ok(mut s) = st.lock() {
                s.events.push(e);
            }
        };
        if nr == libc::SYS_fstatfs || nr == libc::SYS_statfs {
            let path = if nr == libc::SYS_fstatfs {
                fd_path(pid, a[0])
            } else {
                read_cstr(pid, a[0]).map(|p| {
                    let p = PathBuf::from(p);
                    if p.is_relative() {
                        std::fs::read_link(format!("/proc/{pid}/cwd"))
                            .unwrap_or_default()
                            .join(p)
                    } else {
                        p
                    }
                })
            };
            return match path {
                Some(p) if self.under(&p) => {
                    if !write_mem(pid, a[1], &fake_statfs()) {
                        return Answer::Errno(libc::EFAULT);
                    }
                    push(Event::Statfs(p));
                    Answer::Value(0)
                }
                _ => Answer::Continue,
            };
        }
        let Some(path) = fd_path(pid, a[0]).filter(|p| self.under(p)) else {
            return Answer::Continue;
        };
        let key = fd_meta(pid, a[0])
            .map(|m| (m.dev(), m.ino()))
            .unwrap_or_default();
        let size = fd_meta(pid, a[0]).map(|m| m.len()).unwrap_or(0);
        if nr == libc::SYS_ioctl {
            if a[1] & 0xffff_ffff == GETOBDCOUNT {
                push(Event::ObdCount(path));
                return if write_mem(pid, a[2], &(self.osts as i32).to_le_bytes()) {
                    Answer::Value(0)
                } else {
                    Answer::Errno(libc::EFAULT)
                };
            }
            if a[1] & 0xffff_ffff != SETSTRIPE {
                return Answer::Continue;
            }
            let Some(head) = read_mem(pid, a[2], 32) else {
                return Answer::Errno(libc::EFAULT);
            };
            let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let len = match magic {
                0x0BD1_0BD0 => 32,
                0x0BD3_0BD0 => 48,
                _ => {
                    push(Event::SetStripe {
                        path,
                        bytes: head,
                        size,
                        result: libc::EINVAL,
                    });
                    return Answer::Errno(libc::EINVAL);
                }
            };
            let Some(mut bytes) = read_mem(pid, a[2], len) else {
                return Answer::Errno(libc::EFAULT);
            };
            let pool = (len == 48).then(|| {
                let raw = &bytes[32..48];
                String::from_utf8_lossy(&raw[..raw.iter().position(|&c| c == 0).unwrap_or(16)])
                    .into_owned()
            });
            let mut layouts = match self.layouts.lock() {
                Ok(s) => s,
                Err(_) => return Answer::Errno(libc::EIO),
            };
            let result = if layouts.contains_key(&key) {
                libc::EEXIST
            } else if pool.is_some_and(|p| self.bad_pools.contains(&p)) {
                libc::EINVAL
            } else {
                0
            };
            push(Event::SetStripe {
                path,
                bytes: bytes.clone(),
                size,
                result,
            });
            if result != 0 {
                return Answer::Errno(result);
            }
            // Resolve as the MDS does: -1 (0xFFFF) and over-large counts become the OST count,
            // 0 becomes 1; size 0 becomes 1 MiB. Then write the result back.
            let count = u16::from_le_bytes([bytes[28], bytes[29]]);
            let resolved = if count == 0xFFFF || count as u32 > self.osts {
                self.osts as u16
            } else if count == 0 {
                1
            } else {
                count
            };
            bytes[28..30].copy_from_slice(&resolved.to_le_bytes());
            if bytes[24..28] == [0, 0, 0, 0] {
                bytes[24..28].copy_from_slice(&(1u32 << 20).to_le_bytes());
            }
            layouts.insert(key, bytes.clone());
            drop(layouts);
            return if write_mem(pid, a[2], &bytes) {
                Answer::Value(0)
            } else {
                Answer::Errno(libc::EFAULT)
            };
        }
        let Some(name) = read_cstr(pid, a[1]) else {
            return Answer::Errno(libc::EFAULT);
        };
        if name != "lustre.lov" {
            return Answer::Continue;
        }
        if nr == libc::SYS_fsetxattr {
            let Some(bytes) = read_mem(pid, a[2], a[3] as usize) else {
                return Answer::Errno(libc::EFAULT);
            };
            push(Event::SetXattr {
                path,
                bytes: bytes.clone(),
                size,
            });
            if let Ok(mut l) = self.layouts.lock() {
                // An existing layout is silently kept (ll_setstripe_ea turns EEXIST into 0).
                l.entry(key).or_insert(bytes);
            }
            return Answer::Value(0);
        }
        if nr == libc::SYS_fgetxattr {
            push(Event::GetXattr(path));
            let layout = self.layouts.lock().ok().and_then(|l| l.get(&key).cloned());
            return match layout {
                None => Answer::Errno(libc::ENODATA),
                Some(l) if a[3] == 0 => Answer::Value(l.len() as i64),
                Some(l) if (a[3] as usize) < l.len() => Answer::Errno(libc::ERANGE),
                Some(l) => {
                    if write_mem(pid, a[2], &l) {
                        Answer::Value(l.len() as i64)
                    } else {
                        Answer::Errno(libc::EFAULT)
                    }
                }
            };
        }
        Answer::Continue
    }

    /// Runs `cmd` under the fake, returning its output and the Lustre calls it made.
    pub fn run(&self, mut cmd: Command) -> (Output, Vec<Event>) {
        let this = self.clone();
        let mut sv = [0 as RawFd; 2];
        // SAFETY: sv is a valid two-int array.
        assert_eq!(
            unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                    0,
                    sv.as_mut_ptr(),
                )
            },
            0
        );
        // SAFETY: socketpair returned two fresh fds we now own.
        let (parent, child) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
        let prog_insns = filter();
        let child_fd = child.as_raw_fd();
        // SAFETY: the closure only makes async-signal-safe syscalls on memory prepared before fork.
        unsafe {
            cmd.pre_exec(move || {
                let prog = libc::sock_fprog {
                    len: prog_insns.len() as u16,
                    filter: prog_insns.as_ptr() as *mut _,
                };
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let lfd = libc::syscall(
                    libc::SYS_seccomp,
                    1 as libc::c_ulong,
                    FLAG_NEW_LISTENER,
                    &prog as *const libc::sock_fprog,
                );
                if lfd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let mut byte = [b'x'];
                let mut iov = libc::iovec {
                    iov_base: byte.as_mut_ptr().cast(),
                    iov_len: 1,
                };
                let mut cbuf = [0u64; 4];
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = cbuf.as_mut_ptr().cast();
                msg.msg_controllen = libc::CMSG_SPACE(4) as usize;
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<i32>(), lfd as i32);
                if libc::sendmsg(child_fd, &msg, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(lfd as i32);
                Ok(())
            });
        }
        let state = Arc::new(Mutex::new(State { events: Vec::new() }));
        let proc_child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn under seccomp");
        drop(child);
        let listener = recv_fd(parent.as_raw_fd()).expect("listener fd from the child");
        let st = Arc::clone(&state);
        let sup = std::thread::spawn(move || {
            loop {
                let mut pfd = libc::pollfd {
                    fd: listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let r = unsafe { libc::poll(&mut pfd, 1, 200) };
                if r < 0 || pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                    break;
                }
                if r == 0 {
                    continue;
                }
                let mut n = Notif::default();
                // SAFETY: n is a writable seccomp_notif of the size the ioctl number encodes.
                if unsafe {
                    libc::ioctl(listener.as_raw_fd(), NOTIF_RECV as _, &mut n as *mut Notif)
                } < 0
                {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() == Some(libc::EINTR)
                        || e.raw_os_error() == Some(libc::ENOENT)
                    {
                        continue;
                    }
                    break;
                }
                let mut resp = Resp {
                    id: n.id,
                    ..Default::default()
                };
                match this.handle(&n, &st) {
                    Answer::Continue => resp.flags = FLAG_CONTINUE,
                    Answer::Value(v) => resp.val = v,
                    Answer::Errno(e) => resp.error = -e,
                }
                // SAFETY: resp is a valid seccomp_notif_resp; a vanished target gives ENOENT, ignored.
                unsafe {
                    libc::ioctl(
                        listener.as_raw_fd(),
                        NOTIF_SEND as _,
                        &mut resp as *mut Resp,
                    )
                };
            }
        });
        let out = proc_child.wait_with_output().expect("wait");
        let _ = sup.join();
        let events = state.lock().map(|s| s.events.clone()).unwrap_or_default();
        (out, events)
    }
}

fn recv_fd(sock: RawFd) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is POD; every pointer set below points at live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as usize;
    // SAFETY: msg describes valid buffers.
    if unsafe { libc::recvmsg(sock, &mut msg, 0) } <= 0 {
        return None;
    }
    // SAFETY: the kernel filled the control buffer; CMSG_FIRSTHDR/CMSG_DATA walk it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() {
            return None;
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<i32>());
        Some(OwnedFd::from_raw_fd(fd))
    }
}
