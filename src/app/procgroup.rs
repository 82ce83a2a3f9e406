//! Commands run by triggers get a process group of their own, so a timeout
//! kills the shell and everything it started, not the shell alone.
#![allow(unsafe_code)]

/// Sends SIGKILL to every process in group `pgid` (a child started with
/// `process_group(0)` leads a group of its own pid).
pub fn kill_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes plain integers; a negative pid names a group.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}
