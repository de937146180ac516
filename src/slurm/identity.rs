//! Becoming the job's user: supplementary groups, group and user ids set for
//! good (real, effective and saved), and the process made non-dumpable.
//!
//! Owns the one privilege transition of a hook. Invariants: after
//! [`become_user`] returns `Ok`, the process can never regain root (checked);
//! it is not dumpable, so the job's user cannot ptrace it or read its memory
//! for the storage credential it loaded while it was root. Uses `nix`'s safe
//! wrappers; no `unsafe` here.

use std::ffi::CString;

use nix::unistd::{getgrouplist, setgroups, setresgid, setresuid, Gid, Uid};

/// Drops from root to `uid`/`gid` with `user`'s supplementary groups. When the
/// process already runs as `uid` (not root), there is nothing to drop.
pub fn become_user(user: &str, uid: u32, gid: u32) -> Result<(), String> {
    let (uid, gid) = (Uid::from_raw(uid), Gid::from_raw(gid));
    let me = Uid::effective();
    if me == uid && !me.is_root() {
        return Ok(());
    }
    if !me.is_root() {
        return Err(format!(
            "running as uid {me}, not root: the Slurm hooks must start as root to act as the job's user (uid {uid})"
        ));
    }
    let groups = match CString::new(user) {
        Ok(name) if !user.is_empty() => getgrouplist(&name, gid).unwrap_or_else(|_| vec![gid]),
        _ => vec![gid],
    };
    setgroups(&groups).map_err(|e| format!("setgroups for '{user}': {e}"))?;
    setresgid(gid, gid, gid).map_err(|e| format!("setresgid({gid}): {e}"))?;
    setresuid(uid, uid, uid).map_err(|e| format!("setresuid({uid}): {e}"))?;
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE): {e}"))?;
    if !uid.is_root()
        && (Uid::current().is_root()
            || setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).is_ok())
    {
        return Err("privileges were not dropped (root is still reachable)".into());
    }
    Ok(())
}
