//! The driver: a deterministic PRNG, a bounded run per target, and a
//! watchdog that turns a hang into a failure naming its seed.
//!
//! Iteration `i` of a target draws its input from `Rng::new(i)` alone, so a
//! failure is reproduced by its seed (`MEMTAP_FUZZ_SEED=i`) and its input is
//! also written under `target/fuzz-failures/`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// splitmix64: tiny, fast and good enough to steer mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0xdead_beef_cafe_f00d)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `pct`%.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// How long each target runs: `MEMTAP_FUZZ_ITERS` fixes the number of
/// executions; otherwise `MEMTAP_FUZZ_SECS` (default 6) bounds the time.
enum Bound {
    Iters(u64),
    Time(Duration),
}

fn bound() -> Bound {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
    if let Some(n) = env("MEMTAP_FUZZ_ITERS") {
        return Bound::Iters(n as u64);
    }
    Bound::Time(Duration::from_secs_f64(
        env("MEMTAP_FUZZ_SECS").unwrap_or(6.0),
    ))
}

/// CPU time of the calling thread: the per-execution bound must not
/// depend on how busy the shared machine is.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A file to keep: (name suffix, bytes).
pub type Named = (String, Vec<u8>);
/// Turns an input into files to keep.
pub type Save<T> = dyn Fn(&T) -> Vec<Named> + Send + Sync;

pub struct Target<T> {
    pub name: &'static str,
    /// CPU time one execution may take.
    pub cpu_limit: Duration,
    /// What `exec`'s return value counts.
    pub signal: &'static str,
    pub gen: Box<dyn Fn(&mut Rng) -> T + Send + Sync>,
    /// Runs one input; returns how much of it got through (records,
    /// packets, messages parsed), summed and printed to show the inputs
    /// reach past the first check.
    pub exec: Box<dyn Fn(&T) -> u64 + Send + Sync>,
    /// The input as files, to keep a failing one.
    pub save: Box<Save<T>>,
}

fn failure_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures")
}

fn keep<T>(t: &Target<T>, seed: u64, input: &T) -> String {
    let dir = failure_dir();
    let _ = std::fs::create_dir_all(&dir);
    let mut names = Vec::new();
    for (suffix, bytes) in (t.save)(input) {
        let p = dir.join(format!("{}-{seed}{suffix}", t.name));
        let _ = std::fs::write(&p, bytes);
        names.push(p.display().to_string());
    }
    names.join(", ")
}

/// Runs a target to its bound and panics when any execution panicked,
/// exceeded its CPU limit, or hung (no return within 30 s of wall time
/// plus 10 times the CPU limit).
pub fn run<T: 'static>(t: Target<T>) {
    let t = Arc::new(t);
    let only: Option<u64> = std::env::var("MEMTAP_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let bound = bound();
    let seed_now = Arc::new(AtomicU64::new(0));
    let started_ms = Arc::new(AtomicU64::new(u64::MAX));
    let done = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let worker = {
        let (t, seed_now, started_ms, done) = (
            t.clone(),
            seed_now.clone(),
            started_ms.clone(),
            done.clone(),
        );
        std::thread::spawn(move || {
            let mut execs = 0u64;
            let mut failures: Vec<String> = Vec::new();
            let mut slowest = Duration::ZERO;
            let mut signal = 0u64;
            let begin = Instant::now();
            let mut seed = only.unwrap_or(0);
            loop {
                let more = match (&bound, only) {
                    (_, Some(s)) => seed == s,
                    (Bound::Iters(n), None) => execs < *n,
                    (Bound::Time(d), None) => begin.elapsed() < *d,
                };
                if !more || failures.len() >= 5 {
                    break;
                }
                let input = (t.gen)(&mut Rng::new(seed));
                seed_now.store(seed, Ordering::SeqCst);
                started_ms.store(epoch.elapsed().as_millis() as u64, Ordering::SeqCst);
                let cpu0 = thread_cpu();
                let res = catch_unwind(AssertUnwindSafe(|| (t.exec)(&input)));
                let cpu = thread_cpu() - cpu0;
                started_ms.store(u64::MAX, Ordering::SeqCst);
                execs += 1;
                slowest = slowest.max(cpu);
                signal += *res.as_ref().unwrap_or(&0);
                let why = match res {
                    Err(e) => Some(
                        e.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panic".into()),
                    ),
                    Ok(_) if cpu > t.cpu_limit => {
                        Some(format!("took {cpu:?} of CPU (limit {:?})", t.cpu_limit))
                    }
                    Ok(_) => None,
                };
                if let Some(why) = why {
                    let files = keep(&t, seed, &input);
                    failures.push(format!("seed {seed}: {why} (input: {files})"));
                }
                seed += 1;
            }
            done.store(true, Ordering::SeqCst);
            (execs, failures, slowest, begin.elapsed(), signal)
        })
    };
    let hang = Duration::from_secs(30) + t.cpu_limit * 10;
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        let s = started_ms.load(Ordering::SeqCst);
        if s != u64::MAX && epoch.elapsed().as_millis() as u64 > s + hang.as_millis() as u64 {
            let seed = seed_now.load(Ordering::SeqCst);
            let input = (t.gen)(&mut Rng::new(seed));
            let files = keep(&t, seed, &input);
            panic!(
                "fuzz {}: seed {seed} still running after {hang:?}: a hang (input: {files})",
                t.name
            );
        }
    }
    let (execs, failures, slowest, took, signal) = worker.join().expect("fuzz driver");
    eprintln!(
        "fuzz {}: {execs} executions, {} failures, {:.1} s, slowest {:.1} ms CPU, {signal} {}",
        t.name,
        failures.len(),
        took.as_secs_f64(),
        slowest.as_secs_f64() * 1e3,
        t.signal
    );
    assert!(
        failures.is_empty(),
        "fuzz {}: {} failures:\n{}",
        t.name,
        failures.len(),
        failures.join("\n")
    );
    assert!(execs > 0, "fuzz {}: nothing ran", t.name);
}
