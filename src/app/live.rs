//! The live pipeline: the replay pipeline with a network interface in place
//! of files, running until stopped.
//!
//! ```text
//! afpacket: ring i ─▶ capture thread i: decode → Engine → Batcher ──▶ collector hash(key)
//! pcap:     pcap ─▶ reader: decode → flow hash ─PacketBatch─▶ worker i: Engine → Batcher ──▶ …
//! main thread: merges closed windows, answers HTTP views, reloads config
//! ```
//!
//! With the AF_PACKET engine the kernel's fanout (PACKET_FANOUT_HASH, a
//! direction-symmetric flow hash) does the sharding, so each capture thread
//! runs the whole per-flow pipeline on packets straight from its ring,
//! without a copy. With libpcap one reader fans out in software, as replay
//! does.
//!
//! Nothing on the capture path waits: a full collector channel drops the
//! record batch, a full worker channel drops the packet batch, and both are
//! counted. Time comes from the wall clock between packets, so windows close
//! on a quiet network too. Each thread publishes its counters into its own
//! slot every tick (a lock per tick, never per packet); HTTP views sum the
//! slots and ask the collectors for a copy of their tables.

use super::discover::{live_finders, Hub, LiveFinder};
use super::pipeline::{
    collector_limits, join_collectors, spawn_collectors, Collectors, PacketBatch, PipelineConfig,
    PipelineOutput, StageCpu, WindowMerger, Worker,
};
use super::shape::Shape;
use crate::capture::recorder::{Kept, Ring};
use crate::capture::Frame;
use crate::collect::batch::{Backpressure, Batcher, Patience, RecordBatch};
use crate::collect::collector::Ctl;
use crate::collect::seconds::SecondMsg;
use crate::collect::tables::{TableLimits, Tables};
use crate::decode::targets::Targets;
use crate::decode::{flow_hash, DecodeConfig, Decoder, Ts};
use crate::protocol::sniff::Found;
use crate::report::{FoundOut, LimitsOut, ReportOptions, RunInfo};
use crate::session::{Engine, EngineConfig};
use crate::stats::{Counters, Warnings};
use crate::web::server::{Health, View, ViewSource};
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A live packet source: an AF_PACKET ring or a libpcap handle.
pub trait LiveSource: Send {
    /// Waits up to `timeout` for packets and hands each to `f`; counts
    /// what it reads into `c`.
    fn poll(
        &mut self,
        timeout: Duration,
        c: &mut Counters,
        f: &mut dyn FnMut(&Frame<'_>),
    ) -> std::io::Result<usize>;
    /// Folds the kernel's drop counters into `c`.
    fn update_stats(&mut self, c: &mut Counters);
    /// Replaces the kernel filter (config reload).
    fn set_filter(&mut self, expr: &str) -> anyhow::Result<()>;
    /// When the worker reading this source may wait for a collector
    /// (see [`Patience`]); `None`: never, it drops.
    fn patience(&self) -> Option<Patience> {
        None
    }
}

/// How the packets reach the workers.
pub enum Sources {
    /// One source per worker (kernel fanout): workers = sources.
    PerWorker(Vec<Box<dyn LiveSource>>),
    /// One source, fanned out to `workers` threads in software.
    Shared(Box<dyn LiveSource>),
}

pub struct LiveConfig {
    pub pipeline: PipelineConfig,
    pub engine: EngineConfig,
    pub decode: DecodeConfig,
    pub targets: Targets,
    pub keep_windows: usize,
    pub pin_cores: bool,
    /// Shown as the report's `files` (e.g. `interface eth1`).
    pub input_name: String,
    pub options: ReportOptions,
    pub metrics_top: usize,
    /// Flight recorder: ring bytes for all capture threads together, and
    /// the age of the oldest frame kept; `None`: no recorder.
    pub recorder: Option<(u64, Ts)>,
    /// The triggers' figures, for the HTTP views.
    pub triggers: Option<Arc<Mutex<super::triggers::Shared>>>,
    /// No target was named: look for servers (`super::discover`), with
    /// `targets` as the base.
    pub discover: bool,
}

/// A request for the frames a capture thread's ring holds in a span.
pub struct SnipReq {
    pub from: Ts,
    pub to: Ts,
    pub reply: Sender<Vec<Kept>>,
}

/// What a config reload changes while running.
#[derive(Clone)]
pub struct Reload {
    pub targets: Targets,
    /// The kernel filter expression for the new targets.
    pub filter: String,
    pub limits: TableLimits,
    pub options: ReportOptions,
    pub metrics_top: usize,
    /// Servers are still looked for (the run started without targets and
    /// the reloaded config names none either); `targets` is then the base.
    pub discover: bool,
}

/// How often threads advance their clock, publish counters and look for
/// a reload when no packet comes.
const TICK: Duration = Duration::from_millis(100);
/// Wall-clock time runs this far ahead of the packets a thread may still
/// be handed (ring blocks are retired every few ms), so windows close a
/// little after their end, never before their packets are in.
const LAG_NS: u64 = 500_000_000;

fn wall_ns() -> Ts {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as Ts)
        .unwrap_or(0)
}

/// What a thread last published.
#[derive(Clone, Default)]
struct Slot {
    name: String,
    counters: Counters,
    first_ts: Option<Ts>,
    last_ts: Ts,
    problem: Option<String>,
    flows_active: u64,
    /// Time spent unable to capture (interface down or gone), ns.
    blind_ns: u64,
}

struct Shared {
    windows: Vec<(Ts, Ts, Arc<Tables>)>,
    windows_closed: u64,
    limits: TableLimits,
    options: ReportOptions,
    metrics_top: usize,
    store: Option<crate::export::prometheus::StoreFigures>,
    /// Problems outside the capture threads (the store, snippets), by
    /// source; each source logs its own changes.
    problems: std::collections::BTreeMap<&'static str, String>,
    /// Servers found (no target named), in the report's order.
    servers_found: Vec<crate::report::FoundOut>,
}

struct LiveView {
    triggers: Option<Arc<Mutex<super::triggers::Shared>>>,
    ctls: Vec<Sender<Ctl>>,
    slots: Arc<Vec<Mutex<Slot>>>,
    shared: Arc<Mutex<Shared>>,
    full_limits: TableLimits,
    input_name: String,
    cache: Mutex<Option<(Instant, Arc<View>)>>,
}

/// Views are cached this long: a burst of scrapes costs one snapshot.
const VIEW_CACHE: Duration = Duration::from_millis(500);

impl ViewSource for LiveView {
    fn view(&self) -> anyhow::Result<Arc<View>> {
        let mut cache = self.cache.lock().expect("view cache");
        if let Some((at, v)) = cache.as_ref() {
            if at.elapsed() < VIEW_CACHE {
                return Ok(v.clone());
            }
        }
        let mut run = Tables::new(&self.full_limits);
        let (tx, rx) = bounded::<Tables>(self.ctls.len());
        for c in &self.ctls {
            c.send(Ctl::Snapshot(tx.clone()))
                .map_err(|_| anyhow::anyhow!("the collectors have stopped"))?;
        }
        for _ in &self.ctls {
            let t = rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| anyhow::anyhow!("a collector did not answer within 10 s"))?;
            run.merge(&t);
        }
        let (counters, first_ts, last_ts) = sum_slots(&self.slots);
        let sh = self.shared.lock().expect("live state");
        let l = &sh.limits;
        let limits = LimitsOut {
            max_keys: l.max_keys,
            max_clients: l.max_clients,
            max_families: l.max_families,
            key_clients: l.key_clients,
            tracked_keys: run.keys.len(),
            tracked_clients: run.clients.len(),
            tracked_families: run.families.len(),
            key_evictions: run.keys.evictions(),
            client_evictions: run.clients.evictions(),
            family_evictions: run.families.evictions(),
        };
        let threads = self
            .slots
            .iter()
            .map(|s| {
                let s = s.lock().expect("slot");
                (s.name.clone(), s.counters.clone())
            })
            .collect();
        let v = Arc::new(View {
            run,
            windows: sh.windows.clone(),
            info: RunInfo {
                files: vec![self.input_name.clone()],
                counters,
                first_ts,
                last_ts,
                servers_found: sh.servers_found.clone(),
            },
            limits,
            options: sh.options.clone(),
            metrics_top: sh.metrics_top,
            windows_closed: sh.windows_closed,
            threads,
            flows_active: self
                .slots
                .iter()
                .map(|s| s.lock().expect("slot").flows_active)
                .sum(),
            store: sh.store,
            triggers: self.triggers.as_ref().map(|t| {
                let t = t.lock().unwrap_or_else(|p| p.into_inner());
                crate::trigger::Summary {
                    stats: t.stats.clone(),
                    events: t.events.iter().cloned().collect(),
                }
            }),
            taken_ns: wall_ns(),
        });
        *cache = Some((Instant::now(), v.clone()));
        Ok(v)
    }

    fn health(&self) -> Health {
        let problems: Vec<String> = self
            .slots
            .iter()
            .filter_map(|s| {
                let s = s.lock().expect("slot");
                s.problem.as_ref().map(|p| format!("{}: {p}", s.name))
            })
            .collect();
        let mut problems = problems;
        problems.extend(
            self.shared
                .lock()
                .expect("live state")
                .problems
                .values()
                .cloned(),
        );
        Health {
            ok: problems.is_empty(),
            problems,
        }
    }
}

fn sum_slots(slots: &[Mutex<Slot>]) -> (Counters, Ts, Ts) {
    let mut c = Counters::default();
    let mut first: Option<Ts> = None;
    let mut last = 0;
    for s in slots {
        let s = s.lock().expect("slot");
        c.add(&s.counters);
        if let Some(f) = s.first_ts {
            first = Some(first.map_or(f, |x: Ts| x.min(f)));
        }
        last = last.max(s.last_ts);
    }
    (c, first.unwrap_or(0), last)
}

/// A running live pipeline.
pub struct Live {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
    /// The pcap engine's reader returns its capture and decode counters.
    reader: Option<thread::JoinHandle<Counters>>,
    cols: Collectors,
    merger: WindowMerger,
    view: Arc<LiveView>,
    reload_txs: Vec<Sender<Arc<Reload>>>,
    pipeline: PipelineConfig,
    keep_windows: usize,
    /// One per thread with a flight recorder ring.
    snip_txs: Vec<Sender<SnipReq>>,
    /// What the threads found, when servers are looked for.
    hub: Option<Hub>,
}

impl Live {
    /// Spawns collectors, workers and capture threads over `sources`.
    pub fn start(cfg: LiveConfig, sources: Sources) -> anyhow::Result<Live> {
        let pc = PipelineConfig {
            windows: true,
            ..cfg.pipeline.clone()
        };
        let workers = match &sources {
            Sources::PerWorker(v) => v.len(),
            Sources::Shared(_) => pc.workers,
        };
        anyhow::ensure!(workers >= 1, "at least one worker is needed");
        let pc = PipelineConfig { workers, ..pc };
        let shape = pc.shape(Shape::LIVE);
        // The recorder's bytes, split between the threads that see frames.
        let ring_threads = match &sources {
            Sources::PerWorker(v) => v.len(),
            Sources::Shared(_) => 1,
        };
        let mut snip_txs = Vec::new();
        let mut new_ring = || {
            cfg.recorder.map(|(bytes, keep)| {
                let (tx, rx) = bounded::<SnipReq>(4);
                snip_txs.push(tx);
                let each = usize::try_from(bytes / ring_threads as u64).unwrap_or(usize::MAX);
                (Ring::new(each, keep), rx)
            })
        };
        let mut spare_tx = Vec::new();
        let mut spare_rx = Vec::new();
        for _ in 0..workers {
            let (t, r) = bounded::<RecordBatch>(shape.record_depth * pc.collectors * 2);
            spare_tx.push(t);
            spare_rx.push(r);
        }
        let cols = spawn_collectors(&pc, &spare_tx, true, &shape);
        drop(spare_tx);
        let stop = Arc::new(AtomicBool::new(false));
        let cores = if cfg.pin_cores {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };

        let make_worker = |i: usize, spare: Receiver<RecordBatch>, targets: &Targets| Worker {
            engine: Engine::new(cfg.engine.clone(), targets.clone()),
            batcher: Batcher::new(
                i,
                cols.senders.clone(),
                spare,
                shape.batch_records,
                Backpressure::Drop,
            )
            .syncing(pc.merging()),
            window_ns: pc.window_ns,
            last_flush_window: 0,
            flush_every: pc.flush_every(),
            last_flush_beat: 0,
            next_check: 0,
        };

        let mut names: Vec<String> = Vec::new();
        let mut threads = Vec::new();
        let mut reload_txs = Vec::new();
        let mut reader = None;
        let slots: Arc<Vec<Mutex<Slot>>>;
        let mut hub = None;
        // Each capture thread looks at its own packets; behind a reader,
        // the reader looks and the workers follow.
        let mut finders = |finding: usize, following: usize| -> Vec<Option<LiveFinder>> {
            if !cfg.discover {
                return (0..finding + following).map(|_| None).collect();
            }
            let (f, h) = live_finders(finding, following, &cfg.targets);
            hub = Some(h);
            f.into_iter().map(Some).collect()
        };
        match sources {
            Sources::PerWorker(srcs) => {
                let mut disc = finders(workers, 0).into_iter();
                for i in 0..workers {
                    names.push(format!("capture-{i}"));
                }
                slots = Arc::new(names.iter().map(|n| Mutex::new(slot(n))).collect());
                for (i, (src, spare)) in srcs.into_iter().zip(spare_rx).enumerate() {
                    let (rtx, rrx) = bounded::<Arc<Reload>>(4);
                    reload_txs.push(rtx);
                    let mut w = make_worker(i, spare, &cfg.targets);
                    w.batcher.set_patience(src.patience());
                    let decoder = Decoder::new(cfg.decode);
                    let stop = stop.clone();
                    let slots = slots.clone();
                    let core = cores.get(i % cores.len().max(1)).copied();
                    let ring = new_ring();
                    let d = disc.next().flatten();
                    threads.push(
                        thread::Builder::new()
                            .name(format!("memtap-capture-{i}"))
                            .spawn(move || {
                                if let Some(c) = core {
                                    core_affinity::set_for_current(c);
                                }
                                capture_loop(i, src, decoder, w, &stop, &rrx, &slots[i], ring, d);
                            })?,
                    );
                }
            }
            Sources::Shared(src) => {
                names.push("reader".into());
                for i in 0..workers {
                    names.push(format!("worker-{i}"));
                }
                slots = Arc::new(names.iter().map(|n| Mutex::new(slot(n))).collect());
                let mut disc = finders(1, workers).into_iter();
                let reader_disc = disc.next().flatten();
                let mut to_workers = Vec::new();
                let mut back = Vec::new();
                for (i, spare) in spare_rx.into_iter().enumerate() {
                    let (tx, rx) = bounded::<PacketBatch>(shape.packet_depth);
                    let (btx, brx) = bounded::<PacketBatch>(shape.packet_depth + 2);
                    let (rtx, rrx) = bounded::<Arc<Reload>>(4);
                    reload_txs.push(rtx);
                    to_workers.push(tx);
                    back.push(brx);
                    let mut w = make_worker(i, spare, &cfg.targets);
                    // Behind a reader the worker's buffer is its packet
                    // channel.
                    let inbox = rx.clone();
                    w.batcher.set_patience(Some(Box::new(move || {
                        inbox.len() * 2 < inbox.capacity().unwrap_or(0)
                    })));
                    let mut d = disc.next().flatten();
                    let slots = slots.clone();
                    let core = cores.get((i + 1) % cores.len().max(1)).copied();
                    threads.push(
                        thread::Builder::new()
                            .name(format!("memtap-worker-{i}"))
                            .spawn(move || {
                                if let Some(c) = core {
                                    core_affinity::set_for_current(c);
                                }
                                let mut last_pub = Instant::now();
                                let mut flushed = 0;
                                while let Ok(mut b) = rx.recv() {
                                    if let Ok(r) = rrx.try_recv() {
                                        w.engine.set_targets(reload_targets(&r, &mut d));
                                    }
                                    // Servers the reader found are in its
                                    // inbox before their packets are here.
                                    if let Some(d) = d.as_mut() {
                                        if d.poll() {
                                            w.engine.set_targets(d.targets().clone());
                                        }
                                    }
                                    b.feed(&mut w);
                                    b.clear();
                                    let _ = btx.try_send(b);
                                    if last_pub.elapsed() >= TICK {
                                        last_pub = Instant::now();
                                        let c = w.counters(&Counters::default());
                                        flush_fresh(&mut w, &c, &mut flushed);
                                        let mut s = slots[i + 1].lock().expect("slot");
                                        s.counters = c;
                                        s.flows_active = w.engine.active_flows();
                                    }
                                }
                                let c = w.counters(&Counters::default());
                                slots[i + 1].lock().expect("slot").counters = c;
                                w.finish_with(&Counters::default());
                            })?,
                    );
                }
                let (rtx, rrx) = bounded::<Arc<Reload>>(4);
                reload_txs.push(rtx);
                let stop = stop.clone();
                let slots = slots.clone();
                let decoder = Decoder::new(cfg.decode);
                let targets = cfg.targets.clone();
                let core = cores.first().copied();
                let ring = new_ring();
                reader = Some(thread::Builder::new().name("memtap-reader".into()).spawn(
                    move || {
                        if let Some(c) = core {
                            core_affinity::set_for_current(c);
                        }
                        reader_loop(
                            src,
                            decoder,
                            targets,
                            to_workers,
                            back,
                            &stop,
                            &rrx,
                            &slots[0],
                            shape,
                            ring,
                            reader_disc,
                        )
                    },
                )?);
            }
        }
        let view = Arc::new(LiveView {
            triggers: cfg.triggers.clone(),
            ctls: cols.ctls.clone(),
            slots,
            shared: Arc::new(Mutex::new(Shared {
                windows: Vec::new(),
                windows_closed: 0,
                limits: pc.limits,
                options: cfg.options.clone(),
                metrics_top: cfg.metrics_top,
                store: None,
                problems: Default::default(),
                servers_found: Vec::new(),
            })),
            full_limits: pc.limits,
            input_name: cfg.input_name.clone(),
            cache: Mutex::new(None),
        });
        Ok(Live {
            stop,
            threads,
            reader,
            merger: WindowMerger::new(pc.collectors, pc.limits),
            cols,
            view,
            reload_txs,
            keep_windows: cfg.keep_windows.max(1),
            pipeline: pc,
            snip_txs,
            hub,
        })
    }

    /// The servers found since the last call (each once, whichever
    /// threads found it); the HTTP views list them from now on.
    pub fn take_found(&mut self) -> Vec<Found> {
        let Some(hub) = self.hub.as_mut() else {
            return Vec::new();
        };
        let fresh = hub.take();
        if !fresh.is_empty() {
            let all = hub.found().iter().map(FoundOut::from_found).collect();
            self.view.shared.lock().expect("live state").servers_found = all;
            *self.view.cache.lock().expect("view cache") = None;
        }
        fresh
    }

    /// Takes the hub out before `finish`: what the threads find until
    /// they stop is still in it afterwards.
    pub fn take_hub(&mut self) -> Option<Hub> {
        self.hub.take()
    }

    pub fn view_source(&self) -> Arc<dyn ViewSource> {
        self.view.clone()
    }

    /// What the collectors said about closed seconds (triggers).
    pub fn seconds(&self) -> Vec<SecondMsg> {
        self.cols
            .seconds_rx
            .as_ref()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default()
    }

    /// The frames the capture threads' rings hold in `[from, to]`, oldest
    /// first (each thread answers within a tick).
    pub fn frames(&self, from: Ts, to: Ts) -> Vec<Kept> {
        let (tx, rx) = bounded::<Vec<Kept>>(self.snip_txs.len().max(1));
        let mut asked = 0;
        for s in &self.snip_txs {
            if s.send_timeout(
                SnipReq {
                    from,
                    to,
                    reply: tx.clone(),
                },
                Duration::from_secs(1),
            )
            .is_ok()
            {
                asked += 1;
            }
        }
        let mut all = Vec::new();
        for _ in 0..asked {
            match rx.recv_timeout(Duration::from_secs(2)) {
                Ok(v) => all.extend(v),
                Err(_) => break,
            }
        }
        all.sort_by_key(|k| k.ts);
        all
    }

    /// Takes in the windows the collectors closed; returns them (oldest
    /// first) for anyone who keeps history.
    pub fn pump(&mut self) -> Vec<(Ts, Ts, Arc<Tables>)> {
        if let Some(rx) = &self.cols.windows_rx {
            self.merger.drain(rx);
        }
        let done: Vec<_> = self
            .merger
            .done
            .drain(..)
            .map(|(s, e, t)| (s, e, Arc::new(t)))
            .collect();
        if !done.is_empty() {
            let mut sh = self.view.shared.lock().expect("live state");
            sh.windows_closed += done.len() as u64;
            sh.windows.extend(done.iter().cloned());
            let extra = sh.windows.len().saturating_sub(self.keep_windows);
            sh.windows.drain(..extra);
            *self.view.cache.lock().expect("view cache") = None;
        }
        done
    }

    /// Applies a reloaded config: targets and kernel filters at once,
    /// table limits to windows opened from now on, report options to the
    /// next view.
    pub fn reload(&mut self, r: Reload) {
        let limits = collector_limits(&PipelineConfig {
            limits: r.limits,
            ..self.pipeline.clone()
        });
        for c in &self.view.ctls {
            let _ = c.send(Ctl::Limits(limits));
        }
        {
            let mut sh = self.view.shared.lock().expect("live state");
            sh.limits = r.limits;
            sh.options = r.options.clone();
            sh.metrics_top = r.metrics_top;
        }
        *self.view.cache.lock().expect("view cache") = None;
        let r = Arc::new(r);
        for tx in &self.reload_txs {
            // A thread with a reload still unread gets this one next.
            let _ = tx.try_send(r.clone());
        }
    }

    /// Each thread's name and counters as last published.
    pub fn thread_counters(&self) -> Vec<(String, Counters)> {
        self.view
            .slots
            .iter()
            .map(|s| {
                let s = s.lock().expect("slot");
                (s.name.clone(), s.counters.clone())
            })
            .collect()
    }

    /// Every thread's counters as last published.
    pub fn counters_now(&self) -> Counters {
        sum_slots(&self.view.slots).0
    }

    /// Shown as `memtap_store_*` from now on.
    pub fn set_store(&self, f: crate::export::prometheus::StoreFigures) {
        let mut sh = self.view.shared.lock().expect("live state");
        if sh.store != Some(f) {
            sh.store = Some(f);
            *self.view.cache.lock().expect("view cache") = None;
        }
    }

    /// A problem `/healthz` reports (503) while it lasts; `None` clears it.
    pub fn set_problem(&self, source: &'static str, p: Option<String>) {
        let mut sh = self.view.shared.lock().expect("live state");
        match p {
            Some(p) => {
                sh.problems.insert(source, p);
            }
            None => {
                sh.problems.remove(source);
            }
        }
    }

    /// Kernel drops counted so far, all threads.
    pub fn kernel_drops(&self) -> u64 {
        sum_slots(&self.view.slots).0.kernel_drops
    }

    /// Stops capturing, drains every thread, closes the open windows and
    /// returns what the run produced, with each thread's final counters.
    #[allow(clippy::type_complexity)]
    pub fn finish(mut self) -> anyhow::Result<(PipelineOutput, Vec<(String, Counters)>)> {
        self.stop.store(true, Ordering::SeqCst);
        let mut counters = Counters::default();
        if let Some(r) = self.reader.take() {
            counters.add(
                &r.join()
                    .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?,
            );
        }
        for t in self.threads.drain(..) {
            t.join()
                .map_err(|_| anyhow::anyhow!("a capture thread panicked"))?;
        }
        let (_, first_ts, last_ts) = sum_slots(&self.view.slots);
        let windows_rx = self.cols.windows_rx.clone();
        let cols = std::mem::replace(
            &mut self.cols,
            Collectors {
                seconds_rx: None,
                senders: Vec::new(),
                handles: Vec::new(),
                windows_rx: None,
                ctls: Vec::new(),
            },
        );
        let mut warnings = Warnings::default();
        let mut cpu = StageCpu::default();
        let run = join_collectors(cols, &self.pipeline, &mut counters, &mut warnings, &mut cpu)?;
        if let Some(rx) = &windows_rx {
            self.merger.drain(rx);
        }
        self.cols.windows_rx = windows_rx;
        let _ = self.pump();
        let windows = {
            let mut sh = self.view.shared.lock().expect("live state");
            std::mem::take(&mut sh.windows)
        };
        let windows = windows
            .into_iter()
            .map(|(s, e, t)| {
                let t = Arc::try_unwrap(t).unwrap_or_else(|t| {
                    let mut c = Tables::new(&self.pipeline.limits);
                    c.merge(&t);
                    c
                });
                (s, e, t)
            })
            .collect();
        let threads = self.thread_counters();
        let mut warnings = warnings.lines();
        for s in self.view.slots.iter() {
            let s = s.lock().expect("slot");
            if s.blind_ns > 0 {
                warnings.push(format!(
                    "{}: blind for {:.1} s in all (interface down or gone): packets then were not seen",
                    s.name,
                    s.blind_ns as f64 / 1e9
                ));
            }
        }
        Ok((
            PipelineOutput {
                run,
                windows,
                counters,
                warnings,
                first_ts,
                last_ts,
                cpu,
            },
            threads,
        ))
    }
}

/// Records wait in a worker's batches until one fills or a window ends;
/// at a few records a second that is most of a window, and the live views
/// (`/api/report`, `/metrics`, `memtap top`) would lag by as much. So each
/// tick, once per thread and never per packet, a worker that made records
/// since the last tick sends its batches as they are.
fn flush_fresh(w: &mut Worker, now: &Counters, flushed: &mut u64) {
    if now.records != *flushed {
        *flushed = now.records;
        w.batcher.flush();
    }
}

fn slot(name: &str) -> Slot {
    Slot {
        name: name.to_string(),
        ..Slot::default()
    }
}

/// Hands the main thread the frames it asked for (a trigger's snippet).
fn answer_snippets(ring: &mut Option<(Ring, Receiver<SnipReq>)>) {
    if let Some((r, rx)) = ring.as_ref() {
        while let Ok(q) = rx.try_recv() {
            let _ = q.reply.send(r.take(q.from, q.to));
        }
    }
}

/// The targets a thread watches after a reload: while servers are still
/// looked for, the reload's targets are the base of what was found;
/// otherwise the finder goes, and they are all.
fn reload_targets(r: &Reload, disc: &mut Option<LiveFinder>) -> Targets {
    match disc {
        Some(d) if r.discover => {
            d.set_base(r.targets.clone());
            d.targets().clone()
        }
        _ => {
            *disc = None;
            r.targets.clone()
        }
    }
}

/// One AF_PACKET worker: its own ring, decoder, engine and batcher.
#[allow(clippy::too_many_arguments)]
fn capture_loop(
    i: usize,
    mut src: Box<dyn LiveSource>,
    mut decoder: Decoder,
    mut w: Worker,
    stop: &AtomicBool,
    reload: &Receiver<Arc<Reload>>,
    slot: &Mutex<Slot>,
    mut ring: Option<(Ring, Receiver<SnipReq>)>,
    mut disc: Option<LiveFinder>,
) {
    // Capture-side counters (source and decoder), kept apart from the
    // engine's: they are added once at the end.
    let mut cap = Counters::default();
    let mut first_ts: Option<Ts> = None;
    let mut last_ts: Ts = 0;
    let mut last_tick = Instant::now();
    let mut problem: Option<String> = None;
    let mut down_since: Option<Instant> = None;
    let mut blind_ns = 0u64;
    let mut flushed = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(r) = reload.try_recv() {
            w.engine.set_targets(reload_targets(&r, &mut disc));
            if let Err(e) = src.set_filter(&r.filter) {
                eprintln!("memtap: capture-{i}: reload: {e:#}");
            }
        }
        if let Some(d) = disc.as_mut() {
            if d.poll() {
                w.engine.set_targets(d.targets().clone());
            }
        }
        let mut dec = Counters::default();
        let res = src.poll(TICK, &mut cap, &mut |frame| {
            if let Some(p) = decoder.decode(frame, &mut dec) {
                first_ts.get_or_insert(p.ts);
                last_ts = last_ts.max(p.ts);
                if let Some(d) = disc.as_mut() {
                    if d.packet(&p) {
                        w.engine.set_targets(d.targets().clone());
                    }
                }
                // The kernel filter passes only the watched traffic, unless
                // servers are looked for: then the targets decide.
                if let Some((r, _)) = ring.as_mut() {
                    if disc.as_ref().is_none_or(|d| {
                        d.targets()
                            .classify(p.src, p.sport, p.dst, p.dport)
                            .is_some()
                    }) {
                        r.push(frame.ts, frame.linktype, frame.wire_len, frame.data);
                    }
                }
                w.packet(&p);
            }
        });
        cap.add(&dec);
        answer_snippets(&mut ring);
        match res {
            Ok(_) => {
                if let Some(t) = down_since.take() {
                    blind_ns += t.elapsed().as_nanos() as u64;
                    eprintln!(
                        "memtap: capture-{i}: capturing again after {:.1} s blind",
                        t.elapsed().as_secs_f64()
                    );
                }
                problem = None
            }
            Err(e) => {
                if problem.is_none() {
                    eprintln!("memtap: capture-{i}: {e}");
                    down_since = Some(Instant::now());
                }
                problem = Some(e.to_string());
                thread::sleep(TICK);
            }
        }
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            w.tick(wall_ns().saturating_sub(LAG_NS));
            src.update_stats(&mut cap);
            if let Some(d) = disc.as_mut() {
                d.tick(wall_ns(), &mut cap);
            }
            let c = w.counters(&cap);
            flush_fresh(&mut w, &c, &mut flushed);
            let mut s = slot.lock().expect("slot");
            s.counters = c;
            s.first_ts = first_ts;
            s.last_ts = last_ts;
            s.problem = problem.clone();
            s.flows_active = w.engine.active_flows();
            s.blind_ns = blind_ns + down_since.map_or(0, |t| t.elapsed().as_nanos() as u64);
        }
    }
    src.update_stats(&mut cap);
    decoder.finish(&mut cap);
    if let Some(d) = disc.as_mut() {
        d.tick(wall_ns(), &mut cap);
    }
    {
        let mut s = slot.lock().expect("slot");
        s.blind_ns = blind_ns + down_since.map_or(0, |t| t.elapsed().as_nanos() as u64);
        s.counters = w.counters(&cap);
        s.first_ts = first_ts;
        s.last_ts = last_ts;
    }
    w.finish_with(&cap);
}

/// The pcap engine's reader: decode, pick the worker by flow hash, batch.
#[allow(clippy::too_many_arguments)]
fn reader_loop(
    mut src: Box<dyn LiveSource>,
    mut decoder: Decoder,
    mut targets: Targets,
    to_workers: Vec<Sender<PacketBatch>>,
    back: Vec<Receiver<PacketBatch>>,
    stop: &AtomicBool,
    reload: &Receiver<Arc<Reload>>,
    slot: &Mutex<Slot>,
    shape: Shape,
    mut ring: Option<(Ring, Receiver<SnipReq>)>,
    mut disc: Option<LiveFinder>,
) -> Counters {
    let n = to_workers.len();
    let mut cur: Vec<PacketBatch> = (0..n).map(|_| PacketBatch::default()).collect();
    let mut c = Counters::default();
    let mut first_ts: Option<Ts> = None;
    let mut last_ts: Ts = 0;
    let mut last_tick = Instant::now();
    let mut problem: Option<String> = None;
    let mut down_since: Option<Instant> = None;
    let mut blind_ns = 0u64;
    // Never waits: a worker that is behind loses the batch (counted).
    let send = |i: usize, cur: &mut Vec<PacketBatch>, tick: Ts, c: &mut Counters, block: bool| {
        let fresh = back[i].try_recv().unwrap_or_default();
        let mut b = std::mem::replace(&mut cur[i], fresh);
        b.tick = tick;
        if block {
            let _ = to_workers[i].send(b);
            return;
        }
        match to_workers[i].try_send(b) {
            Ok(()) => {}
            Err(TrySendError::Full(b)) | Err(TrySendError::Disconnected(b)) => {
                c.packet_batches_dropped += 1;
                c.packets_dropped += b.len() as u64;
            }
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if let Ok(r) = reload.try_recv() {
            targets = reload_targets(&r, &mut disc);
            if let Err(e) = src.set_filter(&r.filter) {
                eprintln!("memtap: reader: reload: {e:#}");
            }
        }
        let mut dec = Counters::default();
        let mut drops = Counters::default();
        let res = src.poll(TICK, &mut c, &mut |frame| {
            if let Some(p) = decoder.decode(frame, &mut dec) {
                first_ts.get_or_insert(p.ts);
                last_ts = last_ts.max(p.ts);
                // The workers learn of a server found here from their
                // inboxes before any of its packets reach them.
                if let Some(d) = disc.as_mut() {
                    if d.packet(&p) {
                        targets = d.targets().clone();
                    }
                }
                if targets.classify(p.src, p.sport, p.dst, p.dport).is_none() {
                    dec.not_target += 1;
                } else {
                    if let Some((r, _)) = ring.as_mut() {
                        r.push(frame.ts, frame.linktype, frame.wire_len, frame.data);
                    }
                    let i = crate::decode::shard(flow_hash(p.src, p.sport, p.dst, p.dport), n);
                    cur[i].push(&p, last_ts);
                    if cur[i].len() >= shape.batch_packets
                        || cur[i].arena_len() >= shape.batch_bytes
                    {
                        send(i, &mut cur, last_ts, &mut drops, false);
                    }
                }
            }
        });
        c.add(&dec);
        c.add(&drops);
        answer_snippets(&mut ring);
        match res {
            Ok(_) => {
                if let Some(t) = down_since.take() {
                    blind_ns += t.elapsed().as_nanos() as u64;
                    eprintln!(
                        "memtap: reader: capturing again after {:.1} s blind",
                        t.elapsed().as_secs_f64()
                    );
                }
                problem = None
            }
            Err(e) => {
                if problem.is_none() {
                    eprintln!("memtap: reader: {e}");
                    down_since = Some(Instant::now());
                }
                problem = Some(e.to_string());
                thread::sleep(TICK);
            }
        }
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            let now = wall_ns().saturating_sub(LAG_NS);
            for i in 0..n {
                send(i, &mut cur, now, &mut c, false);
            }
            src.update_stats(&mut c);
            if let Some(d) = disc.as_mut() {
                d.tick(wall_ns(), &mut c);
            }
            let mut s = slot.lock().expect("slot");
            s.counters = c.clone();
            s.first_ts = first_ts;
            s.last_ts = last_ts;
            s.problem = problem.clone();
            s.blind_ns = blind_ns + down_since.map_or(0, |t| t.elapsed().as_nanos() as u64);
        }
    }
    let now = wall_ns().saturating_sub(LAG_NS);
    for i in 0..n {
        send(i, &mut cur, now, &mut c, true);
    }
    drop(to_workers);
    src.update_stats(&mut c);
    decoder.finish(&mut c);
    if let Some(d) = disc.as_mut() {
        d.tick(wall_ns(), &mut c);
    }
    let mut s = slot.lock().expect("slot");
    s.counters = c.clone();
    s.blind_ns = blind_ns + down_since.map_or(0, |t| t.elapsed().as_nanos() as u64);
    c
}
