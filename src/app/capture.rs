//! `memtap capture`: the appliance. Opens the capture sockets, binds the
//! HTTP listener, drops privileges, runs the live pipeline until a signal
//! (or --duration), then prints the report of the whole run.

use super::cli::{CaptureArgs, ReportFormat};
use super::live::{Live, LiveConfig, LiveSource, Reload, Sources};
use super::load_config;
use super::pipeline::PipelineOutput;
use super::replay::{self, ReplaySetup};
use super::serve::LateView;
use crate::capture::afpacket::{AfPacketSource, Fanout, RingConfig, RingGauge};
use crate::capture::bpf::{compile_filter, BpfInsn};
use crate::capture::live_pcap::{PcapConfig, PcapSource};
use crate::capture::{Frame, LINKTYPE_ETHERNET};
use crate::collect::batch::Patience;
use crate::collect::tables::{TableLimits, Tables};
use crate::config::{parse_duration, CaptureEngine, Config};
use crate::decode::targets::Targets;
use crate::protocol::sniff::describe_one;
use crate::report::FoundOut;
use crate::stats::Counters;
use crate::store::{CaptureRow, Interval, Writer};
use crate::time::Ts;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Capture options resolved from config and flags (flags win).
#[derive(Debug, Clone)]
struct Settings {
    iface: String,
    engine: CaptureEngine,
    extra_filter: String,
    promisc: bool,
    block_size: usize,
    block_count: usize,
    snaplen: u32,
    pcap_buffer: usize,
    fanout_group: u16,
    user: String,
    listen: Option<String>,
}

fn settings(cfg: &Config, a: &CaptureArgs) -> anyhow::Result<Settings> {
    let c = &cfg.capture;
    {
        use crate::config::{check, range};
        let n = |v: Option<usize>| v.map(|v| v as u64);
        for (name, v, r) in [
            ("--block-size", n(a.block_size), range::BLOCK_BYTES),
            ("--block-count", n(a.block_count), range::BLOCKS),
            ("--snaplen", a.snaplen.map(u64::from), range::SNAPLEN),
        ] {
            if let Some(v) = v {
                check(name, v, r)?;
            }
        }
    }
    let iface = a.interface.clone().unwrap_or_else(|| c.interface.clone());
    anyhow::ensure!(
        !iface.is_empty(),
        "no interface: give -i IFACE (or capture.interface in the config); `ip link` lists them"
    );
    let listen = if a.no_listen {
        None
    } else {
        Some(a.listen.clone().unwrap_or_else(|| cfg.http.listen.clone())).filter(|l| !l.is_empty())
    };
    Ok(Settings {
        iface,
        engine: a.engine.unwrap_or(c.engine),
        extra_filter: a.filter.clone().unwrap_or_else(|| c.filter.clone()),
        promisc: a.promisc || c.promisc,
        block_size: a.block_size.unwrap_or(c.block_size),
        block_count: a.block_count.unwrap_or(c.block_count),
        snaplen: a.snaplen.unwrap_or(c.snaplen),
        pcap_buffer: c.pcap_buffer,
        fanout_group: match c.fanout_group {
            // Distinct per process, so two memtaps on one interface do
            // not share (and split) each other's packets.
            0 => (std::process::id() & 0xffff) as u16,
            g => g,
        },
        user: a.user.clone().unwrap_or_else(|| c.user.clone()),
        listen,
    })
}

/// The kernel filter: the targets' traffic (all of it while servers are
/// looked for), narrowed by --filter.
fn filter_expr(targets: &Targets, discover: bool, extra: &str) -> String {
    let base = if discover {
        super::discover::BPF_ALL.to_string()
    } else {
        targets.bpf_terms()
    };
    crate::decode::targets::bpf_narrowed(&base, extra)
}

/// One AF_PACKET ring that survives its interface: when the interface is
/// deleted the socket is closed, and it is opened again (same settings)
/// once an interface of that name is back. Meanwhile `poll` reports the
/// problem, which `/healthz` shows and the capture thread times.
struct Ring {
    src: Option<AfPacketSource>,
    cfg: RingConfig,
    snaplen: u32,
    checked: Instant,
    /// The open ring's gauge, for its worker's patience; replaced when the
    /// ring is opened again. Locked only when a collector's channel is full.
    gauge: Arc<Mutex<Option<RingGauge>>>,
}

impl Ring {
    fn set_src(&mut self, s: Option<AfPacketSource>) {
        *self.gauge.lock().expect("ring gauge") = s.as_ref().map(AfPacketSource::gauge);
        self.src = s;
    }
}

/// What a ring on a deleted interface still holds is read before it is
/// closed: blocks the kernel retires after the deletion too.
fn drain_dead(s: &mut AfPacketSource, c: &mut Counters, f: &mut dyn FnMut(&Frame<'_>)) {
    for _ in 0..4 {
        match s.poll(Duration::from_millis(20), c, f) {
            Ok(0) | Err(_) => {}
            Ok(_) => continue,
        }
    }
    s.update_stats(c);
}

/// How often a ring asks whether its interface is still there (a cheap
/// ioctl, once per poll at most this often; never per packet).
const IFACE_CHECK: Duration = Duration::from_millis(500);

impl LiveSource for Ring {
    fn poll(
        &mut self,
        timeout: Duration,
        c: &mut Counters,
        f: &mut dyn FnMut(&Frame<'_>),
    ) -> std::io::Result<usize> {
        let due = self.checked.elapsed() >= IFACE_CHECK;
        if due {
            self.checked = Instant::now();
        }
        if let Some(s) = self.src.as_mut() {
            if due && s.interface_gone() {
                drain_dead(s, c, f);
                // Closed now: a fanout group on the new interface must not
                // meet the old, dead member.
                self.set_src(None);
            }
        }
        match self.src.as_mut() {
            Some(s) => {
                let r = s.poll(timeout, c, f);
                if r.is_err() && s.interface_gone() {
                    drain_dead(s, c, f);
                    self.set_src(None);
                    self.checked = Instant::now();
                    return Err(std::io::Error::other(format!(
                        "interface {} is gone",
                        self.cfg.iface
                    )));
                }
                r
            }
            None => {
                if due {
                    match AfPacketSource::open(&self.cfg) {
                        Ok(s) => {
                            self.set_src(Some(s));
                            return Ok(0);
                        }
                        Err(e) => {
                            std::thread::sleep(timeout);
                            return Err(std::io::Error::other(format!(
                                "interface {} is gone ({e})",
                                self.cfg.iface
                            )));
                        }
                    }
                }
                std::thread::sleep(timeout);
                Err(std::io::Error::other(format!(
                    "interface {} is gone",
                    self.cfg.iface
                )))
            }
        }
    }
    fn update_stats(&mut self, c: &mut Counters) {
        if let Some(s) = self.src.as_mut() {
            s.update_stats(c);
        }
    }
    fn patience(&self) -> Option<Patience> {
        let gauge = self.gauge.clone();
        Some(Box::new(move || {
            gauge
                .lock()
                .expect("ring gauge")
                .as_ref()
                .is_some_and(RingGauge::under_half)
        }))
    }
    fn set_filter(&mut self, expr: &str) -> anyhow::Result<()> {
        let prog = compile(expr, self.snaplen)?;
        self.cfg.filter = Some(prog.clone());
        match self.src.as_mut() {
            Some(s) => Ok(s.set_filter(&prog)?),
            None => Ok(()),
        }
    }
}

/// The libpcap handle, opened again when its interface comes back.
struct Pcap {
    src: Option<PcapSource>,
    cfg: PcapConfig,
    checked: Instant,
}

impl LiveSource for Pcap {
    fn poll(
        &mut self,
        timeout: Duration,
        c: &mut Counters,
        f: &mut dyn FnMut(&Frame<'_>),
    ) -> std::io::Result<usize> {
        let Some(s) = self.src.as_mut() else {
            if self.checked.elapsed() >= IFACE_CHECK {
                self.checked = Instant::now();
                if let Ok(s) = PcapSource::open(&self.cfg) {
                    self.src = Some(s);
                    return Ok(0);
                }
            }
            std::thread::sleep(timeout);
            return Err(std::io::Error::other(format!(
                "interface {} is gone",
                self.cfg.iface
            )));
        };
        let r = s.poll(timeout, c, f);
        if r.is_err() && crate::capture::afpacket::interface_missing(&self.cfg.iface) {
            s.update_stats(c);
            self.src = None;
            self.checked = Instant::now();
        }
        r
    }
    fn update_stats(&mut self, c: &mut Counters) {
        if let Some(s) = self.src.as_mut() {
            s.update_stats(c);
        }
    }
    fn set_filter(&mut self, expr: &str) -> anyhow::Result<()> {
        self.cfg.filter = Some(expr.to_string());
        match self.src.as_mut() {
            Some(s) => Ok(s.set_filter(expr)?),
            None => Ok(()),
        }
    }
}

fn compile(expr: &str, snaplen: u32) -> anyhow::Result<Vec<BpfInsn>> {
    Ok(compile_filter(expr, LINKTYPE_ETHERNET, snaplen)?)
}

/// Opens every socket (the only step that needs privileges).
fn open_sources(st: &Settings, workers: usize, expr: &str) -> anyhow::Result<Sources> {
    match st.engine {
        CaptureEngine::Afpacket => {
            let prog = compile(expr, st.snaplen)?;
            let mut v: Vec<Box<dyn LiveSource>> = Vec::with_capacity(workers);
            for _ in 0..workers {
                let mut rc = RingConfig::new(&st.iface);
                rc.block_size = st.block_size;
                rc.block_count = st.block_count;
                rc.snaplen = st.snaplen;
                rc.promisc = st.promisc;
                rc.fanout = Some(Fanout {
                    group: st.fanout_group,
                });
                rc.filter = Some(prog.clone());
                let mut ring = Ring {
                    src: None,
                    cfg: rc,
                    snaplen: st.snaplen,
                    checked: Instant::now(),
                    gauge: Arc::default(),
                };
                ring.set_src(Some(AfPacketSource::open(&ring.cfg)?));
                v.push(Box::new(ring));
            }
            Ok(Sources::PerWorker(v))
        }
        CaptureEngine::Pcap => {
            let mut pc = PcapConfig::new(&st.iface);
            pc.snaplen = st.snaplen;
            pc.buffer_size = st.pcap_buffer;
            pc.promisc = st.promisc;
            pc.filter = Some(expr.to_string());
            Ok(Sources::Shared(Box::new(Pcap {
                src: Some(PcapSource::open(&pc)?),
                cfg: pc,
                checked: Instant::now(),
            })))
        }
    }
}

/// Hands closed windows to the interval store. Each window goes with the
/// health counters counted since the previous one; the newest is held back
/// so that, at exit, what was counted after it (the drain) joins it and the
/// stored counters add up to the run's.
struct StoreFeed {
    w: Writer,
    held: Option<Interval>,
    stored: Counters,
    last_start: Option<Ts>,
    limits: TableLimits,
}

impl StoreFeed {
    fn window(&mut self, start: Ts, end: Ts, t: &Tables, now: &Counters) {
        if Some(start) <= self.last_start {
            return;
        }
        let counters = now.since(&self.stored);
        self.stored = now.clone();
        let mut tables = Tables::new(&self.limits);
        tables.merge(t);
        if let Some(h) = self.held.take() {
            self.w.submit(h);
        }
        self.held = Some(Interval {
            start,
            end,
            tables,
            counters,
        });
        self.last_start = Some(start);
    }

    fn finish(mut self, out: &PipelineOutput, input: &str) -> anyhow::Result<()> {
        let now = self.stored.clone();
        for (s, e, t) in &out.windows {
            self.window(*s, *e, t, &now);
        }
        let rest = out.counters.since(&self.stored);
        if let Some(mut h) = self.held.take() {
            h.counters.add(&rest);
            self.w.submit(h);
        }
        if out.counters.packets > 0 {
            self.w.submit_capture(CaptureRow {
                first_ns: out.first_ts,
                last_ns: out.last_ts,
                files: vec![input.to_string()],
            });
        }
        self.w.finish()
    }
}

enum Event {
    Stop,
    Reload,
}

/// SIGINT/SIGTERM ask for a clean stop; a second one exits at once.
/// SIGHUP asks for a reload.
fn watch_signals() -> anyhow::Result<crossbeam_channel::Receiver<Event>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("memtap-signals".into())
        .spawn(move || {
            let mut stops = 0;
            for sig in signals.forever() {
                if sig == SIGHUP {
                    let _ = tx.send(Event::Reload);
                    continue;
                }
                stops += 1;
                if stops > 1 {
                    eprintln!("memtap: interrupted again: exiting without a report");
                    std::process::exit(130);
                }
                let _ = tx.send(Event::Stop);
            }
        })?;
    Ok(rx)
}

pub fn run(a: CaptureArgs) -> anyhow::Result<ExitCode> {
    run_watched(a, None)
}

/// A viewer of the running capture (`memtap top -i`): started with the
/// live view once the pipeline runs; the capture stops when it sets
/// `quit`, and sets `quit` itself when it stops for another reason
/// (signal, --duration). The viewer's thread is joined before the report
/// is written, so it has the terminal back by then.
pub struct Watch {
    pub quit: Arc<std::sync::atomic::AtomicBool>,
    #[allow(clippy::type_complexity)]
    pub start: Box<
        dyn FnOnce(
            Arc<dyn crate::web::server::ViewSource>,
        ) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>>,
    >,
}

pub fn run_watched(a: CaptureArgs, watch: Option<Watch>) -> anyhow::Result<ExitCode> {
    let (cfg, targets) = load_config(&a.common)?;
    let st = settings(&cfg, &a)?;
    let s = replay::setup(
        &cfg,
        &a.analysis,
        a.report.top,
        a.report.sort,
        a.report.per_window,
    )?;
    if a.report.format == ReportFormat::Csv && a.report.output_dir.is_none() {
        anyhow::bail!("--format csv writes one file per table: give --output-dir DIR");
    }
    let duration = match &a.duration {
        Some(d) => Some(Duration::from_nanos(
            parse_duration(d).map_err(|e| anyhow::anyhow!("--duration: {e}"))?,
        )),
        None => None,
    };
    // Found out now, not when the report is due hours later.
    if let Some(p) = &a.report_file {
        crate::store::writer::check_writable_dir(p, "--report-file")?;
        anyhow::ensure!(!p.is_dir(), "--report-file {}: is a directory", p.display());
    }
    // Without targets, every packet is looked at for servers: the kernel
    // filter then keeps all TCP and UDP.
    let discover = !super::discover::targets_given(&a.common, &cfg);
    let expr = filter_expr(&targets, discover, &st.extra_filter);
    let sources = open_sources(&st, s.pipeline.workers, &expr)?;
    // Opened before privileges go: a bad URL or store fails at once; an
    // unreachable database is waited for (intervals spool meanwhile).
    let mut store = match &a.keep.store {
        Some(url) => {
            let mut o = super::store::store_options(
                &cfg,
                a.keep.sniffer.as_deref(),
                a.keep.store_top,
                s.pipeline.window_ns,
            )?;
            o.start_offline = true;
            Some(StoreFeed {
                w: Writer::spawn(url, o)?,
                held: None,
                stored: Counters::default(),
                last_start: None,
                limits: s.pipeline.limits,
            })
        }
        None => None,
    };
    let late = Arc::new(LateView::default());
    let server = match &st.listen {
        Some(l) => {
            let pages = a
                .keep
                .store
                .as_ref()
                .map(|u| crate::web::history::router(u.clone()));
            let srv =
                crate::web::server::start_limited(l, late.clone(), pages, cfg.http.limits()?)?;
            super::serve::announce(&srv);
            Some(srv)
        }
        None => None,
    };
    if !st.user.is_empty() {
        super::privileges::drop_to(&st.user)?;
    }
    let events = watch_signals()?;
    let input_name = format!("interface {}", st.iface);
    let mut triggers = s.triggers.clone().map(|mut t| {
        t.quiet = a.quiet;
        super::triggers::Triggers::new(t, s.pipeline.collectors)
    });
    let recorder = triggers
        .as_ref()
        .filter(|t| t.settings().records())
        .map(|t| (t.settings().ring_bytes, t.settings().keep_ns));
    let mut live = Live::start(
        LiveConfig {
            pipeline: s.pipeline.clone(),
            engine: crate::session::EngineConfig::from_config_split(&cfg, &s.pipeline.split()),
            decode: cfg.decode_config_split(&s.pipeline.split()),
            targets: targets.clone(),
            keep_windows: cfg.http.keep_windows,
            pin_cores: cfg.capture.pin_cores,
            input_name: input_name.clone(),
            options: s.options.clone(),
            metrics_top: s.metrics_top,
            recorder,
            triggers: triggers.as_ref().map(|t| t.shared.clone()),
            discover,
        },
        sources,
    )?;
    late.set(live.view_source());
    let (quit, viewer) = match watch {
        Some(w) => {
            let v = (w.start)(live.view_source())?;
            (Some(w.quit), Some(v))
        }
        None => (None, None),
    };
    if !a.quiet {
        if discover {
            eprintln!(
                "memtap: no --target: watching port 11211 and looking for memcached servers \
                 on every other port"
            );
        }
        eprintln!(
            "memtap: capturing on {} ({} engine, {} workers, filter `{expr}`){}",
            st.iface,
            match st.engine {
                CaptureEngine::Afpacket => "afpacket",
                CaptureEngine::Pcap => "pcap",
            },
            s.pipeline.workers,
            if st.user.is_empty() {
                String::new()
            } else {
                format!(", running as {}", st.user)
            }
        );
        eprintln!("memtap: {}", replay::budget_line(&s.pipeline, &cfg));
    }
    let started = Instant::now();
    let mut current = s.clone();
    let mut kernel_drops_seen = 0;
    loop {
        match events.recv_timeout(Duration::from_millis(200)) {
            Ok(Event::Stop) => break,
            Ok(Event::Reload) => match reload(&a, &current, &st, discover) {
                Ok((r, ns)) => {
                    eprintln!(
                        "memtap: config reloaded: targets {}; max keys {}, max clients {}",
                        r.targets
                            .list()
                            .iter()
                            .map(|t| t.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        r.limits.max_keys,
                        r.limits.max_clients
                    );
                    live.reload(r);
                    if let (Some(t), Some(nt)) = (triggers.as_mut(), ns.triggers.as_ref()) {
                        t.set_rules(nt.rules.clone());
                    }
                    current = ns;
                }
                Err(e) => eprintln!("memtap: reload failed, keeping the running config: {e:#}"),
            },
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(t) = triggers.as_mut() {
            t.observe(&live.counters_now());
            let mut frames = LiveFrames(&live);
            for m in live.seconds() {
                t.take(m, &mut frames);
            }
            // Frames of the last half second may still be on their way.
            t.tick(wall_ns().saturating_sub(500_000_000), &mut frames);
            let snip = t
                .shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .snippet_problem
                .clone();
            live.set_problem("snippets", snip);
            let fresh = t.take_fresh();
            if let Some(f) = store.as_ref() {
                for e in &fresh {
                    f.w.submit_event(e);
                }
            }
        }
        for f in live.take_found() {
            if !a.quiet {
                eprintln!("memtap: found memcached server {}", describe_one(&f));
            }
        }
        let closed = live.pump();
        if let Some(f) = store.as_mut() {
            let now = live.counters_now();
            for (start, end, t) in &closed {
                f.window(*start, *end, t, &now);
            }
            live.set_store(super::store::figures(&f.w.stats()));
            live.set_problem("store", f.w.stats().problem());
        }
        for (start, end, t) in closed {
            if !a.quiet {
                eprintln!(
                    "memtap: window {:.0}-{:.0} closed: {} requests, {} hits, {} misses",
                    crate::report::secs(start),
                    crate::report::secs(end),
                    t.totals.requests,
                    t.totals.hits,
                    t.totals.misses
                );
            }
        }
        let drops = live.kernel_drops();
        if drops > kernel_drops_seen && !a.quiet {
            eprintln!(
                "memtap: warning: the kernel dropped {} packets so far (rings full: more workers or bigger rings)",
                drops
            );
        }
        kernel_drops_seen = drops;
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if quit
            .as_ref()
            .is_some_and(|q| q.load(std::sync::atomic::Ordering::Relaxed))
        {
            break;
        }
    }
    if let Some(q) = &quit {
        q.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(v) = viewer {
        v.join()
            .map_err(|_| anyhow::anyhow!("the view's thread panicked"))??;
    }
    if !a.quiet {
        eprintln!("memtap: stopping: draining the pipeline");
    }
    let mut trigger_summary = None;
    let mut actions = None;
    if let Some(mut t) = triggers.take() {
        // The rings go with the capture threads: what is due is written
        // now, with the frames there are.
        let mut frames = LiveFrames(&live);
        for m in live.seconds() {
            t.take(m, &mut frames);
        }
        t.tick(Ts::MAX, &mut frames);
        t.finish(&mut frames);
        if let Some(f) = store.as_ref() {
            for e in &t.take_fresh() {
                f.w.submit_event(e);
            }
        }
        trigger_summary = Some(t.summary());
        actions = t.take_actions();
    }
    let mut hub = live.take_hub();
    let (out, threads) = live.finish()?;
    // Servers found in the last moments are said too.
    let found = match hub.as_mut() {
        Some(h) => {
            for f in h.take() {
                if !a.quiet {
                    eprintln!("memtap: found memcached server {}", describe_one(&f));
                }
            }
            h.found()
        }
        None => Vec::new(),
    };
    if !a.quiet {
        // Each thread's share and rate: the fanout's balance at a glance.
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        for (name, c) in threads {
            eprintln!(
                "memtap: {name}: {} packets ({:.0}/s), {} bytes ({:.0}/s), {} records, {} TCP flows",
                c.packets,
                c.packets as f64 / secs,
                c.bytes,
                c.bytes as f64 / secs,
                c.records,
                c.tcp_flows
            );
        }
    }
    let mut report = replay::make_report(&out, &[PathBuf::from(&input_name)], &current);
    report.triggers = trigger_summary;
    report.capture.servers_found = found.iter().map(FoundOut::from_found).collect();
    // Said whenever servers were looked for (as replay does); with named
    // targets only under --strict, which is newer than those runs.
    let nothing = super::discover::nothing_matched_live(&out.counters, !discover, &targets)
        .filter(|_| discover || a.strict);
    if !a.quiet {
        for w in &out.warnings {
            eprintln!("memtap: warning: {w}");
        }
        if let Some(line) = &nothing {
            eprintln!("memtap: {line}");
        }
    }
    // Under `top` the report goes to --report-file or nowhere: the screen
    // was the output. It is written before the store is flushed: a store
    // that is slow or gone never costs the report.
    let emitted = if quit.is_none() || a.report_file.is_some() {
        replay::emit(
            &report,
            a.report.format,
            a.report.output_dir.as_deref(),
            a.report_file.as_deref(),
            a.quiet,
        )
    } else {
        Ok(())
    };
    // Then the actions' grace, beside the store's.
    let drain = actions.map(|d| d.start());
    let mut code = ExitCode::SUCCESS;
    if let Some(f) = store {
        let stats = f.w.stats();
        code = super::store::finish_outcome(f.finish(&out, &input_name), &stats);
    }
    if let Some(d) = drain {
        let _ = d.join();
    }
    emitted?;
    if let Some(srv) = server {
        srv.stop();
    }
    if a.strict && nothing.is_some() && code == ExitCode::SUCCESS {
        return Ok(ExitCode::from(super::discover::NOTHING_MATCHED));
    }
    Ok(code)
}

/// Re-reads the config file; flags still win. Window length and engine
/// settings need a restart (said so); everything else applies live.
fn reload(
    a: &CaptureArgs,
    cur: &ReplaySetup,
    st: &Settings,
    discovering: bool,
) -> anyhow::Result<(Reload, ReplaySetup)> {
    let (cfg, targets) = load_config(&a.common)?;
    // Whether to look for servers is decided at the start: a config that
    // now names targets ends the search for good, and one that names none
    // in a run started with targets watches port 11211, as before.
    let discover = discovering && !super::discover::targets_given(&a.common, &cfg);
    let mut ns = replay::setup(
        &cfg,
        &a.analysis,
        a.report.top,
        a.report.sort,
        a.report.per_window,
    )?;
    if ns.pipeline.window_ns != cur.pipeline.window_ns {
        eprintln!("memtap: reload: the window length is fixed for a run; restart to change it");
        ns.pipeline.window_ns = cur.pipeline.window_ns;
    }
    ns.pipeline.workers = cur.pipeline.workers;
    ns.pipeline.collectors = cur.pipeline.collectors;
    let extra = a
        .filter
        .clone()
        .unwrap_or_else(|| cfg.capture.filter.clone());
    let filter = filter_expr(&targets, discover, &extra);
    // Refuse a filter the kernel would reject before touching anything.
    compile(&filter, st.snaplen)?;
    Ok((
        Reload {
            targets,
            filter,
            limits: ns.pipeline.limits,
            options: ns.options.clone(),
            metrics_top: ns.metrics_top,
            discover,
        },
        ns,
    ))
}

/// A live capture's flight recorder, as a trigger's frame source.
struct LiveFrames<'a>(&'a Live);

impl super::triggers::FrameSource for LiveFrames<'_> {
    fn frames(&mut self, from: Ts, to: Ts) -> Vec<crate::capture::recorder::Kept> {
        self.0.frames(from, to)
    }
}

fn wall_ns() -> Ts {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as Ts)
        .unwrap_or(0)
}
