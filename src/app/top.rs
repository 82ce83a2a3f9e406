//! `memtap top`: the three ways into the live view. Each runs a feeder
//! thread that sends the view one cumulative snapshot a second (of packet
//! time for a replay, of wall-clock time otherwise); the view takes rates
//! from their differences.
//!
//! * files: a single-threaded replay (decode → engine → the collectors'
//!   own `Tables::add`), paced by packet time (--speed);
//! * `-i`: `memtap capture` with the view watching it; snapshots are the
//!   copies of the collectors' tables that HTTP views already take;
//! * `--connect`: `/api/top` of a running capture, once a second.

use super::cli::TopArgs;
use super::load_config;
use super::replay::{self, ReplaySetup};
use crate::capture::file::FileSource;
use crate::collect::batch::RecordBatch;
use crate::collect::families::FamilyRules;
use crate::collect::redact::Redact;
use crate::collect::tables::Tables;
use crate::config::parse_duration;
use crate::decode::Decoder;
use crate::report::top::{snapshot, Snapshot};
use crate::report::{LimitsOut, RunInfo};
use crate::session::{Engine, EngineConfig, Record, RecordSink};
use crate::stats::Counters;
use crate::time::Ts;
use crate::ui::top::{self as view, model::Sort, Feed, Options};
use crossbeam_channel::{bounded, Sender};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEC: u64 = 1_000_000_000;
const DEFAULT_WINDOW: &str = "10s";
const DEFAULT_CONNECT_KEYS: usize = 2000;
/// `--connect`: how long connecting, and a whole fetch, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// `--connect`: the largest `/api/top` answer read (2000 keys with long
/// names and their clients are a few MiB); an endless body stops here.
const MAX_ANSWER: u64 = 64 << 20;

/// How fast a replay goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// Packet-time seconds per wall-clock second.
    Times(f64),
    Max,
}

pub fn parse_speed(s: &str) -> anyhow::Result<Speed> {
    if s == "max" {
        return Ok(Speed::Max);
    }
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(Speed::Times(v)),
        _ => anyhow::bail!("--speed {s}: expected a positive number (1, 10, 0.5) or max"),
    }
}

pub fn run(mut a: TopArgs) -> anyhow::Result<ExitCode> {
    view::check_terminal()?;
    let window_ns = parse_duration(a.interval.as_deref().unwrap_or(DEFAULT_WINDOW))
        .map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
    anyhow::ensure!(window_ns >= SEC, "--interval must be at least 1s");
    let speed = parse_speed(a.speed.as_deref().unwrap_or("1"))?;
    let opts = |sort: Option<crate::report::SortBy>| Options {
        window_ns,
        sort: sort.map(Sort::from).unwrap_or(Sort::Requests),
        color: view::color_wanted(),
    };
    if let Some(url) = a.connect.clone() {
        let redact = redaction(a.capture.analysis.redact_keys.as_deref())?;
        let keys = a.keys.unwrap_or(DEFAULT_CONNECT_KEYS);
        return connect(&url, keys, redact, opts(a.capture.report.sort));
    }
    if !a.files.is_empty() {
        return files(&a, speed, opts(a.capture.report.sort));
    }
    // Live: capture's own run, quiet (the screen is the output) and
    // without a listener unless one is asked for.
    a.capture.quiet = true;
    if a.capture.listen.is_none() {
        a.capture.no_listen = true;
    }
    let o = opts(a.capture.report.sort);
    let quit = Arc::new(AtomicBool::new(false));
    let q = quit.clone();
    super::capture::run_watched(
        a.capture,
        Some(super::capture::Watch {
            quit: quit.clone(),
            start: Box::new(move |src| {
                let (tx, rx) = bounded::<Feed>(4);
                let fq = q.clone();
                std::thread::Builder::new()
                    .name("memtap-top-feed".into())
                    .spawn(move || live_feed(src, tx, &fq))?;
                let vq = q.clone();
                Ok(std::thread::Builder::new()
                    .name("memtap-top".into())
                    .spawn(move || view::run(rx, o, &vq).map(|_| ()))?)
            }),
        }),
    )
}

fn redaction(s: Option<&str>) -> anyhow::Result<Redact> {
    s.unwrap_or("none")
        .parse()
        .map_err(|e| anyhow::anyhow!("--redact-keys: {e}"))
}

/// Sleeps up to `d`, in steps, unless `quit` is set.
fn nap(d: Duration, quit: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while !quit.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    false
}

/// One snapshot a second from a running capture's views (a view another
/// reader had cached is not sent twice).
fn live_feed(src: Arc<dyn crate::web::server::ViewSource>, tx: Sender<Feed>, quit: &AtomicBool) {
    let t0 = Instant::now();
    let mut last = 0;
    for tick in 1u32.. {
        let msg = match src.view() {
            Ok(v) if v.taken_ns == last => None,
            Ok(v) => {
                last = v.taken_ns;
                Some(Feed::Snap(Box::new(snapshot(
                    &v.run,
                    &v.info.counters,
                    &v.info.files,
                    v.taken_ns,
                    &v.options.redact,
                    0,
                ))))
            }
            Err(e) => Some(Feed::Problem(format!("cannot read the capture: {e:#}"))),
        };
        if msg.is_some_and(|m| tx.send(m).is_err()) {
            return;
        }
        let due = Duration::from_secs(tick as u64);
        if !nap(due.saturating_sub(t0.elapsed()), quit) {
            return;
        }
    }
}

fn connect(url: &str, keys: usize, redact: Redact, o: Options) -> anyhow::Result<ExitCode> {
    let base = url.trim_end_matches('/').to_string();
    anyhow::ensure!(
        base.starts_with("http://"),
        "--connect {url}: expected http://HOST:PORT (memtap's listener speaks plain HTTP)"
    );
    let endpoint = format!("{base}/api/top?keys={keys}");
    // Short: a server that accepts and never answers must not hold the
    // start (before the screen is taken) for long, and once the screen is
    // up the feed thread waits alone (`q` is read by the view meanwhile).
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(FETCH_TIMEOUT))
        .build()
        .into();
    // Fail at once on a wrong address, before the screen is taken.
    let first =
        fetch(&agent, &endpoint, &redact).map_err(|e| anyhow::anyhow!("--connect {url}: {e:#}"))?;
    let quit = Arc::new(AtomicBool::new(false));
    let (tx, rx) = bounded::<Feed>(4);
    let fq = quit.clone();
    std::thread::Builder::new()
        .name("memtap-top-feed".into())
        .spawn(move || {
            let mut next = Some(first);
            while !fq.load(Ordering::Relaxed) {
                let msg = match next.take() {
                    Some(s) => Feed::Snap(Box::new(s)),
                    None => match fetch(&agent, &endpoint, &redact) {
                        Ok(s) => Feed::Snap(Box::new(s)),
                        Err(e) => Feed::Problem(format!("cannot reach {base}: {e:#}")),
                    },
                };
                if tx.send(msg).is_err() || !nap(Duration::from_secs(1), &fq) {
                    return;
                }
            }
        })?;
    view::run(rx, o, &quit)?;
    Ok(ExitCode::SUCCESS)
}

fn fetch(agent: &ureq::Agent, url: &str, redact: &Redact) -> anyhow::Result<Snapshot> {
    let body = agent
        .get(url)
        .call()?
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()?;
    let mut s: Snapshot = serde_json::from_str(&body)
        .map_err(|e| anyhow::anyhow!("not a memtap /api/top answer: {e}"))?;
    anyhow::ensure!(
        s.memtap_top == crate::report::top::VERSION,
        "the server speaks memtap_top {}, this memtap {}",
        s.memtap_top,
        crate::report::top::VERSION
    );
    if !matches!(redact, Redact::None) {
        // The server's own redaction came first; this one goes on top.
        for k in &mut s.keys {
            k.key = crate::report::key_string(k.key.as_bytes(), redact);
        }
        for f in &mut s.families {
            f.name = crate::report::key_string(f.name.as_bytes(), redact);
        }
    }
    Ok(s)
}

/// Records straight into a collector's tables, exactly as a collector
/// adds them.
struct TableSink {
    tables: Tables,
    batch: RecordBatch,
    rules: Option<Arc<FamilyRules>>,
    family: Vec<u8>,
}

impl RecordSink for TableSink {
    fn record(&mut self, r: &Record<'_>) {
        self.batch.clear();
        self.batch.push(r, r.ts);
        let rec = self.batch.recs[0];
        self.tables
            .add(&self.batch, &rec, self.rules.as_deref(), &mut self.family);
    }
}

/// What a replay under the view read.
struct Replayed {
    tables: Tables,
    counters: Counters,
    warnings: Vec<String>,
    first_ts: Ts,
    last_ts: Ts,
}

fn files(a: &TopArgs, speed: Speed, o: Options) -> anyhow::Result<ExitCode> {
    let (cfg, targets) = load_config(&a.capture.common)?;
    // As replay: without --target, the servers found in the files.
    let targets = if super::discover::targets_given(&a.capture.common, &cfg) {
        targets
    } else {
        match super::discover::scan(&cfg, &a.files)? {
            Some(found) => super::discover::targets_for(&found),
            None => targets,
        }
    };
    let s = replay::setup(
        &cfg,
        &a.capture.analysis,
        a.capture.report.top,
        a.capture.report.sort,
        false,
    )?;
    // Open before the screen is taken: a missing file is a plain error.
    let src = FileSource::open(&a.files)?;
    let quit = Arc::new(AtomicBool::new(false));
    let (tx, rx) = bounded::<Feed>(4);
    let names: Vec<String> = a.files.iter().map(|f| f.display().to_string()).collect();
    let fq = quit.clone();
    let fs = s.clone();
    let window_ns = o.window_ns;
    let feeder = std::thread::Builder::new()
        .name("memtap-top-replay".into())
        .spawn(move || {
            // One engine holds the whole budget.
            let split = crate::config::Config::split(fs.pipeline.memory, 1);
            let engine = Engine::new(EngineConfig::from_config_split(&cfg, &split), targets);
            let decoder = Decoder::new(cfg.decode_config_split(&split));
            replay_feed(
                src, decoder, engine, &fs, &names, speed, window_ns, &tx, &fq,
            )
        })?;
    let shown = view::run(rx, o, &quit);
    let done = feeder
        .join()
        .map_err(|_| anyhow::anyhow!("the replay thread panicked"))?;
    shown?;
    let done = done?;
    if let Some(path) = &a.capture.report_file {
        let report = report_of(&done, &a.files, &s);
        replay::emit(
            &report,
            a.capture.report.format,
            a.capture.report.output_dir.as_deref(),
            Some(path),
            true,
        )?;
    }
    for w in &done.warnings {
        eprintln!("memtap: warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

fn report_of(r: &Replayed, files: &[PathBuf], s: &ReplaySetup) -> crate::report::Report {
    let l = &s.pipeline.limits;
    let limits = LimitsOut {
        max_keys: l.max_keys,
        max_clients: l.max_clients,
        max_families: l.max_families,
        key_clients: l.key_clients,
        tracked_keys: r.tables.keys.len(),
        tracked_clients: r.tables.clients.len(),
        tracked_families: r.tables.families.len(),
        key_evictions: r.tables.keys.evictions(),
        client_evictions: r.tables.clients.evictions(),
        family_evictions: r.tables.families.evictions(),
    };
    let info = RunInfo {
        files: files.iter().map(|f| f.display().to_string()).collect(),
        counters: r.counters.clone(),
        first_ts: r.first_ts,
        last_ts: r.last_ts,
        servers_found: Vec::new(),
    };
    crate::report::build(&r.tables, &[], &info, limits, &s.options)
}

/// Replays `src` paced by packet time, sending a snapshot at every whole
/// second of it (all packets before that second are in) and one at the
/// end. Stops early when `quit` is set.
#[allow(clippy::too_many_arguments)]
fn replay_feed(
    mut src: FileSource,
    mut decoder: Decoder,
    mut engine: Engine,
    s: &ReplaySetup,
    names: &[String],
    speed: Speed,
    window_ns: u64,
    tx: &Sender<Feed>,
    quit: &AtomicBool,
) -> anyhow::Result<Replayed> {
    let mut sink = TableSink {
        tables: Tables::new(&s.pipeline.limits),
        batch: RecordBatch::default(),
        rules: s.pipeline.families.clone(),
        family: Vec::with_capacity(256),
    };
    let redact = s.options.redact;
    let mut counters = Counters::default();
    let mut first: Option<Ts> = None;
    let mut last: Ts = 0;
    let mut next: Ts = 0;
    let started = Instant::now();
    let mut sent_at: Option<Ts> = None;
    let send =
        |sink: &TableSink, c: &Counters, e: &Engine, at: Ts, sent_at: &mut Option<Ts>| -> bool {
            let mut all = c.clone();
            all.add(&e.counters());
            *sent_at = Some(at);
            tx.send(Feed::Snap(Box::new(snapshot(
                &sink.tables,
                &all,
                names,
                at,
                &redact,
                0,
            ))))
            .is_ok()
        };
    // Waits until packet time `t` is due on the wall clock.
    let pace = |first: Ts, t: Ts| match speed {
        Speed::Max => !quit.load(Ordering::Relaxed),
        Speed::Times(x) => {
            let due = Duration::from_secs_f64(t.saturating_sub(first) as f64 / 1e9 / x);
            nap(due.saturating_sub(started.elapsed()), quit)
        }
    };
    'read: while let Some(frame) = src.next_frame(&mut counters)? {
        let ts = frame.ts;
        let f0 = match first {
            Some(f) => f,
            None => {
                // The empty start is the first baseline: a capture shorter
                // than a second still gets rates.
                first = Some(ts);
                next = ts - ts % SEC + SEC;
                if !send(&sink, &counters, &engine, ts, &mut sent_at) {
                    break 'read;
                }
                ts
            }
        };
        while ts >= next {
            if ts - next > window_ns + SEC {
                // A long quiet stretch: one snapshot at its start, then on
                // to the window before the next packet.
                if !send(&sink, &counters, &engine, next, &mut sent_at) {
                    break 'read;
                }
                let resume = ts - window_ns;
                next = resume - resume % SEC;
                continue;
            }
            if !pace(f0, next) || !send(&sink, &counters, &engine, next, &mut sent_at) {
                break 'read;
            }
            next += SEC;
        }
        last = last.max(ts);
        if let Some(p) = decoder.decode(&frame, &mut counters) {
            engine.packet(&p, &mut sink);
        }
        if quit.load(Ordering::Relaxed) {
            break;
        }
    }
    engine.finish(&mut sink);
    decoder.finish(&mut counters);
    let warnings: Vec<String> = src
        .take_warnings()
        .into_iter()
        .chain(engine.warnings().lines())
        .collect();
    counters.add(&engine.counters());
    if !quit.load(Ordering::Relaxed) {
        let at = last.max(sent_at.map_or(0, |t| t + 1));
        // Counters already hold the engine's: sent as they are.
        let _ = tx.send(Feed::Snap(Box::new(snapshot(
            &sink.tables,
            &counters,
            names,
            at,
            &redact,
            0,
        ))));
        let _ = tx.send(Feed::Done(format!(
            "replay done: {} packets, {} requests (q: quit)",
            counters.packets, sink.tables.totals.requests
        )));
    }
    Ok(Replayed {
        tables: sink.tables,
        counters,
        warnings,
        first_ts: first.unwrap_or(0),
        last_ts: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds() {
        assert_eq!(parse_speed("max").unwrap(), Speed::Max);
        assert_eq!(parse_speed("10").unwrap(), Speed::Times(10.0));
        assert_eq!(parse_speed("0.5").unwrap(), Speed::Times(0.5));
        for bad in ["0", "-1", "fast", "inf", "NaN"] {
            assert!(parse_speed(bad).is_err(), "{bad}");
        }
    }
}
