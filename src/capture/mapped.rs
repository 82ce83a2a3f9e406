//! A read-only memory map of a whole capture file, so that frames of an
//! uncompressed legacy pcap file are handed out in place: no `read()`
//! copying file pages into a buffer, no buffer to compact (measured: the
//! kernel copy was about 7 % of a one-worker replay).
//!
//! The map covers the file's length when opened. A file that grows later
//! is read up to that length; one that is cut short while mapped would
//! fault (SIGBUS) on the pages gone, which is why only regular files are
//! mapped, and `MEMTAP_NO_MMAP=1` reads every file with `read()` instead.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

pub struct Mapped {
    ptr: NonNull<u8>,
    len: usize,
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
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap: null"))?;
        // SAFETY: advice on the mapping just made; failure is harmless.
        unsafe {
            libc::madvise(p, len, libc::MADV_SEQUENTIAL);
        }
        Ok(Mapped { ptr, len })
    }

    /// Drops this mapping's pages below `off` (rounded down to a page) from
    /// the process: read once, they would otherwise count in its resident
    /// size up to the whole file. They stay in the page cache, and reading
    /// them again would fault them back in, so this is only about memory.
    pub fn release_before(&self, off: usize) {
        const PAGE: usize = 4096;
        let end = off.min(self.len) & !(PAGE - 1);
        if end > 0 {
            // SAFETY: advice on a range inside this private read-only
            // mapping; MADV_DONTNEED there only drops page references.
            unsafe {
                libc::madvise(self.ptr.as_ptr().cast(), end, libc::MADV_DONTNEED);
            }
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
        // SAFETY: unmaps exactly what `new` mapped; no borrow outlives self.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
