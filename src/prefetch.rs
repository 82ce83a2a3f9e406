//! Memory hints: a cache prefetch, and memory mapped when it is made
//! rather than on first use.
//!
//! The collectors know the key hashes of the next records ahead of time;
//! asking for their tables' lines early overlaps cache misses that
//! otherwise come one after the other. The reader and the sessions know
//! where the next payload bytes they will read lie (a record's ends, a
//! value block's end) before they read them.

#![allow(unsafe_code)]

/// Asks for the cache line holding `p` (any address: a prefetch never
/// faults).
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 has no architectural effect and cannot fault; `p`
    // is a valid reference anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (p as *const T).cast(),
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch`] of a raw address, which need not be valid.
#[inline(always)]
pub fn prefetch_addr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as above; a prefetch of any address is harmless.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks for the lines of a segment a fixed distance ahead of its parser.
///
/// Why: a client that pipelines writes sends tens of kilobytes in one
/// segment, and the parser reads two places of each value block: its
/// command line, then the `\r\n` closing the block a kilobyte on. Where
/// the next read lies depends on the line before, so nothing can be asked
/// for by position, and the hardware does not follow one line in
/// sixteen: each block's end was a wait on memory. Streaming the whole
/// segment in costs a prefetch per line and no wait.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stream {
    /// Address of the next line not yet asked for.
    next: usize,
}

impl Stream {
    /// How far ahead of the parser lines are asked for.
    pub const AHEAD: usize = 2048;

    /// Starts on a segment (`data`), whose first lines the reader already
    /// asked for.
    #[inline(always)]
    pub fn new(data: &[u8]) -> Stream {
        Stream {
            next: (data.as_ptr() as usize & !63) + 128,
        }
    }

    /// The parser is at `pos` of `data`: asks for every line up to
    /// [`Stream::AHEAD`] bytes past it.
    #[inline(always)]
    pub fn run(&mut self, data: &[u8], pos: usize) {
        let base = data.as_ptr() as usize;
        let until = base + data.len().min(pos + Self::AHEAD);
        while self.next < until {
            prefetch_addr(self.next as *const u8);
            self.next += 64;
        }
    }
}

/// `n` zeroed words whose memory is mapped now: in one call where the
/// kernel can (5.14 on), else by a write to each page.
///
/// Why: a large `vec![0; n]` is fresh zero memory the kernel maps lazily.
/// The tables built on it (a key index, a filter) are read before they are
/// written, so each page was first mapped to the shared zero page and then
/// copied on its first write; replacing a mapping costs a TLB flush on
/// every core running one of the process's threads (an interrupt each),
/// about 7 % of a collector's time on big.pcap. A page first written is
/// mapped once, with nothing to flush; mapping them all in one call also
/// spares a page fault each (cache insight's 11 MiB are mapped before a
/// collector takes its first record, while its worker is already busy).
pub fn mapped_zeros(n: usize) -> Vec<u64> {
    const WORDS_PER_PAGE: usize = 4096 / 8;
    let mut v = vec![0u64; n];
    let p = v.as_mut_ptr();
    let bytes = n * std::mem::size_of::<u64>();
    if !populate_range(p as usize, p as usize + bytes) {
        for i in (0..n).step_by(WORDS_PER_PAGE) {
            // SAFETY: `i < n`, inside the vector; it writes the value
            // already there. Volatile, so that the store is not folded
            // away as dead.
            unsafe { p.add(i).write_volatile(0) };
        }
    }
    v
}

/// MADV_POPULATE_WRITE over the whole pages in `[start, end)`: whether the
/// kernel did it (none to do counts as done).
fn populate_range(start: usize, end: usize) -> bool {
    const PAGE: usize = 4096;
    let first = start.next_multiple_of(PAGE);
    let last = end & !(PAGE - 1);
    if last <= first {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: callers pass memory their vector owns; populating maps
        // its pages (anonymous memory: zeroed when new, kept when mapped)
        // and changes no byte.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_POPULATE_WRITE,
            ) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    false
}

/// Maps the whole pages of `spare` (a vector's unused capacity) now, in one
/// call, where the writes that will fill it would each have trapped into
/// the kernel once a page.
///
/// Why: a collector's key table grows by doubling while the first keys
/// arrive, and each of its new pages (tens of MB in all) was mapped by a
/// page fault in the middle of the records: the collector fell behind the
/// worker there, and the worker waited (10 of its 40 ms of waiting on
/// `big.pcap`). The pages are only as many as the capacity the table
/// already reserved. A kernel before 5.14 refuses the request, and the
/// pages are then mapped as before, on first write.
pub fn populate<T>(spare: &mut [std::mem::MaybeUninit<T>]) {
    let start = spare.as_mut_ptr() as usize;
    populate_range(start, start + std::mem::size_of_val(spare));
}

#[cfg(test)]
mod tests {
    #[test]
    fn mapped_zeros_are_zeros() {
        for n in [0, 1, 511, 512, 513, 100_000] {
            let v = super::mapped_zeros(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&w| w == 0));
        }
    }

    #[test]
    fn populating_spare_capacity_keeps_what_is_there() {
        let mut v: Vec<u64> = (0..1000).collect();
        v.reserve_exact(1 << 20);
        super::populate(v.spare_capacity_mut());
        assert_eq!(v.len(), 1000);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
        v.extend(0..(1u64 << 20));
        assert_eq!(v[1000 + 12345], 12345);
        // Less than a page, and nothing at all: no call, no harm.
        let mut w: Vec<u8> = Vec::with_capacity(10);
        super::populate(w.spare_capacity_mut());
        super::populate::<u8>(&mut []);
    }
}

#[cfg(test)]
mod stream_tests {
    use super::Stream;

    /// The stream keeps `AHEAD` bytes asked for in front of the parser, a
    /// line at a time from the third line on, and never runs past the
    /// segment's last line however far the parser jumps.
    #[test]
    fn a_stream_stays_ahead_of_the_parser_within_its_segment() {
        let buf = vec![0u8; 64 * 200];
        let base = buf.as_ptr() as usize;
        let first = (base & !63) + 128;
        let seg = &buf[..10_000];
        let mut s = Stream::new(seg);
        assert_eq!(s.next, first);
        s.run(seg, 0);
        let line_after = |end: usize| first + end.saturating_sub(first).div_ceil(64) * 64;
        assert_eq!(s.next, line_after(base + Stream::AHEAD));
        s.run(seg, 100);
        assert_eq!(s.next, line_after(base + 100 + Stream::AHEAD));
        // A jump over a value block: everything up to its end is asked for.
        s.run(seg, 9_000);
        assert_eq!(s.next, line_after(base + 10_000));
        s.run(seg, 9_999);
        assert_eq!(s.next, line_after(base + 10_000));
        // A short segment: at most its last line, whose first two lines
        // the reader asked for already.
        let tiny = &buf[..100];
        let mut t = Stream::new(tiny);
        t.run(tiny, 0);
        assert_eq!(t.next, line_after(base + 100));
        assert!(t.next <= (base & !63) + 192);
    }
}
