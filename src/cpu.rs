//! Thread CPU clocks: what each pipeline stage costs on this machine
//! (the stage threads, and the reader's helper that maps a file ahead).
//! std has no per-thread CPU clock, hence the one libc call. A CPU
//! clock is accounting only: no result ever depends on it.
#![allow(unsafe_code)]

/// CPU time the calling thread has used, in nanoseconds (0 if the clock
/// fails).
pub fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    if rc != 0 {
        return 0;
    }
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_this_threads_work_only() {
        let before = thread_cpu_ns();
        let mut x = 1u64;
        for _ in 0..20_000_000 {
            x = std::hint::black_box(x.wrapping_mul(3).wrapping_add(1));
        }
        let worked = thread_cpu_ns();
        assert!(worked > before, "work moved the clock");
        // Sleeping costs (almost) no CPU, whatever time passes.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let slept = thread_cpu_ns() - worked;
        assert!(slept < 20_000_000, "{slept} ns asleep");
        // Another thread's clock is its own, started at its birth.
        let other = std::thread::spawn(thread_cpu_ns).join().unwrap();
        assert!(
            other < worked - before,
            "{other} ns vs {} ns",
            worked - before
        );
    }
}
