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
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;

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
    /// Pages below this offset were handed back (by the reader, or by the
    /// helper when there is one).
    released: usize,
    ahead: Option<(Arc<Ahead>, JoinHandle<u64>)>,
}

/// What the reader tells the helper that maps pages ahead of it.
struct Ahead {
    /// Offset the reader has reached: every byte before it is done with.
    reader: AtomicUsize,
    /// Offset up to which the helper has mapped the pages.
    mapped: AtomicUsize,
    stop: AtomicBool,
}

/// How far ahead of the reader the helper maps pages, and how much one
/// call maps.
const AHEAD: usize = 8 << 20;
const CHUNK: usize = 1 << 20;
/// Bytes read between two hand-backs of the pages behind: bounds the
/// file's share of the resident size.
const RELEASE_EVERY: usize = 8 << 20;
/// A map shorter than this gets no helper: its faults cost less than a
/// thread.
const AHEAD_FROM: usize = 16 << 20;

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
        Ok(Mapped {
            ptr,
            len,
            slot,
            released: 0,
            ahead: None,
        })
    }

    /// Starts a thread that maps the pages a little ahead of the reader
    /// (`MADV_POPULATE_READ`, Linux 5.14 on) and hands back those behind
    /// it, so that the reading thread takes no page faults: on a 1.1 GB
    /// capture they were a tenth of its time. Nothing happens for a short
    /// map, or when the thread cannot be made.
    pub fn start_ahead(&mut self) {
        if self.len < AHEAD_FROM || self.ahead.is_some() {
            return;
        }
        let st = Arc::new(Ahead {
            reader: AtomicUsize::new(0),
            mapped: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let (base, len, shared) = (self.ptr.as_ptr() as usize, self.len, Arc::clone(&st));
        let h = std::thread::Builder::new()
            .name("memtap-map".into())
            .spawn(move || map_ahead(base, len, &shared));
        if let Ok(h) = h {
            self.ahead = Some((st, h));
        }
    }

    /// Stops the helper, if any, and says how much CPU it used (ns).
    pub fn stop_ahead(&mut self) -> u64 {
        let Some((st, h)) = self.ahead.take() else {
            return 0;
        };
        st.stop.store(true, Ordering::Release);
        h.thread().unpark();
        h.join().unwrap_or(0)
    }

    /// The reader has reached `off`: every byte before it is done with.
    /// Called every megabyte or so.
    pub fn reached(&mut self, off: usize) {
        match &self.ahead {
            Some((st, h)) => {
                st.reader.store(off, Ordering::Release);
                // Waking a parked thread is a system call (and, in a VM, an
                // interrupt to another core): only when the window ahead
                // is half used. It also wakes every 20 ms on its own.
                if st.mapped.load(Ordering::Relaxed) < off + AHEAD / 2 {
                    h.thread().unpark();
                }
            }
            None => {
                if off - self.released.min(off) >= RELEASE_EVERY {
                    self.release_before(off);
                    self.released = off;
                }
            }
        }
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

/// The helper's loop: keeps `[reader, reader + AHEAD)` mapped and hands
/// back what lies behind the reader. `base..base + len` is a mapping that
/// outlives this thread (`Mapped`'s drop joins it before unmapping).
fn map_ahead(base: usize, len: usize, st: &Ahead) -> u64 {
    let (mut mapped, mut released) = (0usize, 0usize);
    let mut populate = true;
    while !st.stop.load(Ordering::Acquire) {
        let r = st.reader.load(Ordering::Acquire).min(len);
        let behind = r & !(PAGE - 1);
        if behind >= released + RELEASE_EVERY {
            // SAFETY: a range of this thread's read-only private mapping
            // the reader is done with; DONTNEED only drops page references.
            unsafe {
                libc::madvise(
                    (base + released) as *mut libc::c_void,
                    behind - released,
                    libc::MADV_DONTNEED,
                );
            }
            released = behind;
        }
        // Page-aligned: the map's last page is whole too.
        let want = (len.min(r.saturating_add(AHEAD)) + PAGE - 1) & !(PAGE - 1);
        let from = mapped.max(behind);
        if populate && from < want {
            let n = CHUNK.min(want - from);
            // SAFETY: advice on a page-aligned range inside the mapping.
            // It fails on a kernel before 5.14 (EINVAL) and past a point
            // where the file was cut short (EFAULT, no signal): stop then,
            // and the reader's faults map the pages as before.
            let rc = unsafe {
                libc::madvise(
                    (base + from) as *mut libc::c_void,
                    n,
                    libc::MADV_POPULATE_READ,
                )
            };
            populate = rc == 0;
            mapped = from + n;
            st.mapped.store(mapped, Ordering::Relaxed);
            continue;
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
    crate::cpu::thread_cpu_ns()
}

impl Drop for Mapped {
    fn drop(&mut self) {
        self.stop_ahead();
        let m = &MAPS[self.slot];
        m.len.store(0, Ordering::Release);
        // SAFETY: unmaps exactly what `new` mapped; no borrow outlives self.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
        m.start.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::time::Instant;

    const MIB: usize = 1 << 20;

    /// For each MiB of the map, how many of its pages are mapped into the
    /// process (/proc/self/pagemap's present bit).
    fn mapped_pages(m: &Mapped) -> Vec<u32> {
        let mut pm = std::fs::File::open("/proc/self/pagemap").unwrap();
        let first = m.ptr.as_ptr() as usize / PAGE;
        let per = MIB / PAGE;
        let mut words = vec![0u8; m.len / PAGE * 8];
        pm.seek(SeekFrom::Start((first * 8) as u64)).unwrap();
        pm.read_exact(&mut words).unwrap();
        words
            .chunks(per * 8)
            .map(|mib| {
                mib.chunks(8)
                    .filter(|w| u64::from_le_bytes((*w).try_into().unwrap()) >> 63 == 1)
                    .count() as u32
            })
            .collect()
    }

    /// Waits up to 5 s for exactly the MiBs in `want` to be mapped, whole,
    /// and no others; returns what was mapped last.
    fn settles_at(m: &Mapped, want: std::ops::Range<usize>) -> Vec<u32> {
        let per = (MIB / PAGE) as u32;
        let expect: Vec<u32> = (0..m.len / MIB)
            .map(|i| if want.contains(&i) { per } else { 0 })
            .collect();
        let t = Instant::now();
        loop {
            let now = mapped_pages(m);
            if now == expect || t.elapsed() > Duration::from_secs(5) {
                return now;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn whole(m: &Mapped, want: std::ops::Range<usize>) -> Vec<u32> {
        (0..m.len / MIB)
            .map(|i| {
                if want.contains(&i) {
                    (MIB / PAGE) as u32
                } else {
                    0
                }
            })
            .collect()
    }

    /// The helper maps exactly the 8 MiB ahead of where the reader says it
    /// is and hands back everything behind it, so the file's share of the
    /// resident size stays that window; the reader's own reads then find
    /// their pages mapped.
    #[test]
    fn the_helper_maps_the_window_ahead_of_the_reader_and_nothing_else() {
        let mut f = tempfile::tempfile().unwrap();
        let chunk = vec![0x5a_u8; MIB];
        for _ in 0..48 {
            f.write_all(&chunk).unwrap();
        }
        f.sync_all().unwrap();
        let mut m = Mapped::new(&f, 48 * MIB).unwrap();
        assert_eq!(mapped_pages(&m), whole(&m, 0..0));
        // SAFETY: advice on the map just made, to learn whether this kernel
        // has MADV_POPULATE_READ (5.14 on); the helper stops without it.
        let rc = unsafe { libc::madvise(m.ptr.as_ptr().cast(), PAGE, libc::MADV_POPULATE_READ) };
        if rc != 0 {
            eprintln!("skipped: no MADV_POPULATE_READ on this kernel");
            return;
        }
        m.release_before(PAGE);
        m.start_ahead();
        m.reached(0);
        assert_eq!(settles_at(&m, 0..8), whole(&m, 0..8));
        // Less than 8 MiB on: nothing is handed back yet.
        m.reached(5 * MIB);
        assert_eq!(settles_at(&m, 0..13), whole(&m, 0..13));
        m.reached(20 * MIB);
        assert_eq!(settles_at(&m, 20..28), whole(&m, 20..28));
        // Near the end: only what is left of the file.
        m.reached(44 * MIB);
        assert_eq!(settles_at(&m, 44..48), whole(&m, 44..48));
        m.stop_ahead();
        assert_eq!(m.bytes()[48 * MIB - 1], 0x5a);
    }

    /// A map shorter than 16 MiB gets no helper: the reader hands pages
    /// back itself, every 8 MiB.
    #[test]
    fn a_short_map_gets_no_helper() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![1u8; 4 << 20]).unwrap();
        let mut m = Mapped::new(&f, 4 << 20).unwrap();
        m.start_ahead();
        assert!(m.ahead.is_none());
        assert_eq!(m.stop_ahead(), 0);
    }
}
