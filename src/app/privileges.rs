//! Dropping root once the capture sockets are open: open file descriptors
//! (rings, the HTTP socket) keep working, and nothing later can regain the
//! privilege.
#![allow(unsafe_code)]

use std::ffi::CString;

/// The uid and gid of `user`, from the password database.
pub fn lookup(user: &str) -> anyhow::Result<(libc::uid_t, libc::gid_t)> {
    let name = CString::new(user).map_err(|_| anyhow::anyhow!("--user {user:?}: bad name"))?;
    // SAFETY: getpwnam returns null or a pointer to static storage; it is
    // read at once, before any other password-database call. memtap calls
    // it from one thread, before the pipeline starts.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        anyhow::bail!("--user {user}: no such user");
    }
    // SAFETY: non-null, valid until the next getpw* call.
    Ok(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// Switches the whole process (every thread: glibc broadcasts set*id) to
/// `user`, drops supplementary groups, and forbids regaining privileges
/// through exec. Fails loudly rather than running with more than asked.
pub fn drop_to(user: &str) -> anyhow::Result<()> {
    let (uid, gid) = lookup(user)?;
    let fail = |what: &str| {
        anyhow::anyhow!(
            "--user {user}: {what} failed: {} (memtap must start as root to switch users)",
            std::io::Error::last_os_error()
        )
    };
    // SAFETY: plain syscalls on values we own.
    unsafe {
        if libc::setgroups(1, &gid) != 0 {
            return Err(fail("setgroups"));
        }
        if libc::setresgid(gid, gid, gid) != 0 {
            return Err(fail("setresgid"));
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            return Err(fail("setresuid"));
        }
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if libc::getuid() != uid || libc::geteuid() != uid || libc::getegid() != gid {
            anyhow::bail!("--user {user}: the switch did not take");
        }
    }
    Ok(())
}
