//! A read-only memory map of a whole capture file, so that frames of an
//! uncompressed legacy pcap file are handed out in place: no `read()`
//! copying file pages into a buffer, no buffer to compact (measured: the
//! kernel copy was about 7 % of a one-worker replay).
//!
//! The map covers the file's length when opened. A file that grows later
//! is read up to that length. A file cut short while mapped (a rotation
//! truncating it in place) would make every read of the pages gone fault
//! with SIGBUS and kill the process; a SIGBUS handler installed with the
//! first map puts a page of zeros where the fault was, inside one of these
//! maps only, and marks that map `shrunk`, so the reader stops there and
//! says so. A fault anywhere else gets the default action, as before.
//! `MEMTAP_NO_MMAP=1` reads every file with `read()` instead.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

const PAGE: usize = 4096;

/// The maps a SIGBUS may belong to: a handler can only read statics, and
/// only lock-free ones. Replay maps one file at a time; a few slots leave
/// room, and a map that finds none is refused (the file is then read).
struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    shrunk: AtomicBool,
}

const SLOTS: usize = 8;
#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    shrunk: AtomicBool::new(false),
};
static MAPS: [Slot; SLOTS] = [FREE; SLOTS];
static HANDLER: Once = Once::new();
static HANDLER_OK: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let addr = unsafe { (*info).si_addr() } as usize;
    for s in &MAPS {
        let start = s.start.load(Ordering::Acquire);
        let len = s.len.load(Ordering::Acquire);
        if start != 0 && addr >= start && addr < start + len {
            let page = addr & !(PAGE - 1);
            // SAFETY: replaces one page inside a read-only map of ours with
            // anonymous zeros (mmap is a plain system call, safe in a
            // handler); the faulting read is then retried and succeeds.
            let p = unsafe {
                libc::mmap(
                    page as *mut libc::c_void,
                    PAGE,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                s.shrunk.store(true, Ordering::Release);
                return;
            }
        }
    }
    // Not ours: the default action on return, when the access faults again.
    // SAFETY: resetting a disposition is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
}

fn install_handler() -> bool {
    HANDLER.call_once(|| {
        // SAFETY: a zeroed sigaction with our handler and SA_SIGINFO is a
        // valid argument; the old disposition is not needed (memtap sets
        // none for SIGBUS).
        let ok = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) == 0
        };
        HANDLER_OK.store(ok, Ordering::Release);
    });
    HANDLER_OK.load(Ordering::Acquire)
}

pub struct Mapped {
    ptr: NonNull<u8>,
    len: usize,
    slot: usize,
}

// SAFETY: the mapping is read-only and private to this value; the bytes
// are only ever read through `bytes()`.
unsafe impl Send for Mapped {}
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps `file` (a regular file of `len` bytes, `len > 0`) read-only.
    pub fn new(file: &File, len: usize) -> io::Result<Mapped> {
        if len == 0 {
            return Err(io::Error::other("cannot map an empty file"));
        }
        if !install_handler() {
            return Err(io::Error::other("no SIGBUS handler: not mapping"));
        }
        // Claim a slot (start 0 = free; 1 marks it taken until the address
        // is known).
        let slot = MAPS
            .iter()
            .position(|s| {
                s.start
                    .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
            })
            .ok_or_else(|| io::Error::other("too many maps at once"))?;
        // SAFETY: a fresh private read-only mapping of an open file; the
        // kernel checks the descriptor and length. Unmapped in Drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            MAPS[slot].start.store(0, Ordering::Release);
            return Err(e);
        }
        let m = &MAPS[slot];
        m.shrunk.store(false, Ordering::Relaxed);
        m.len.store(len, Ordering::Release);
        m.start.store(p as usize, Ordering::Release);
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap: null"))?;
        // SAFETY: advice on the mapping just made; failure is harmless.
        unsafe {
            libc::madvise(p, len, libc::MADV_SEQUENTIAL);
        }
        Ok(Mapped { ptr, len, slot })
    }

    /// Whether a page of this map was gone (the file was cut short while
    /// mapped) and reads from it returned zeros.
    #[inline]
    pub fn shrunk(&self) -> bool {
        MAPS[self.slot].shrunk.load(Ordering::Acquire)
    }

    /// Drops this mapping's pages below `off` (rounded down to a page) from
    /// the process: read once, they would otherwise count in its resident
    /// size up to the whole file. They stay in the page cache, and reading
    /// them again would fault them back in, so this is only about memory.
    pub fn release_before(&self, off: usize) {
        let end = off.min(self.len) & !(PAGE - 1);
        if end > 0 {
            // SAFETY: advice on a range inside this private read-only
            // mapping; MADV_DONTNEED there only drops page references.
            unsafe {
                libc::madvise(self.ptr.as_ptr().cast(), end, libc::MADV_DONTNEED);
            }
        }
    }

    /// Asks for the cache line holding byte `at` of the map (nothing past
    /// its end).
    #[inline(always)]
    pub fn prefetch(&self, at: usize) {
        if at < self.len {
            crate::prefetch::prefetch_addr(self.ptr.as_ptr().wrapping_add(at));
        }
    }

    #[inline]
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is mapped readable for the life of self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        let m = &MAPS[self.slot];
        m.len.store(0, Ordering::Release);
        // SAFETY: unmaps exactly what `new` mapped; no borrow outlives self.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
        m.start.store(0, Ordering::Release);
    }
}
