//! The threaded replay pipeline:
//!
//! ```text
//! reader (this thread): file → decode → target? → flow hash ──PacketBatch──▶ worker i
//! worker i: Engine (reassembly, parsing, pairing) → Batcher ──RecordBatch──▶ collector hash(key)
//! collector j: Tables (run totals, windows) ──WindowPart──▶ reader (merges windows)
//! ```
//!
//! Both directions of a connection hash to the same worker, so each worker
//! owns its flows outright; each key lives in exactly one collector. Every
//! channel is bounded and, for files, blocking: replay never drops. Batches
//! flow back to their producer over recycle channels, so the steady state
//! allocates nothing. With one worker, the reader runs the engine itself
//! and no packet is copied.
//!
//! Copy note: with several workers, the reader copies each watched packet's
//! payload into a batch (the reader's buffer is reused for the next
//! frame). Live capture avoids this with one ring per worker.

use super::ReplayProgress;
use crate::capture::file::FileSource;
use crate::collect::batch::{Backpressure, Batcher, RecordBatch, WorkerTotals};
use crate::collect::collector::{self, CollectorConfig, CollectorResult, WindowMsg};
use crate::collect::tables::{TableLimits, Tables};
use crate::config::Config;
use crate::cpu::thread_cpu_ns;
use crate::decode::targets::Targets;
use crate::decode::{flow_hash, Decoder, Packet, TcpInfo, Transport, Ts};
use crate::session::{Engine, EngineConfig};
use crate::stats::{Counters, Warnings};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use super::shape::Shape;
use crate::collect::seconds::{SecondMsg, SECOND_NS};

/// Shape of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub workers: usize,
    pub collectors: usize,
    pub window_ns: u64,
    /// Keep per-window tables (for `--per-window` and exporters).
    pub windows: bool,
    pub limits: TableLimits,
    pub families: Option<std::sync::Arc<crate::collect::families::FamilyRules>>,
    /// The memory budget (`[limits] memory`, `--memory`) shared by the
    /// workers; `None` for none.
    pub memory: Option<u64>,
    /// Collectors hand on per-second figures (for triggers).
    pub seconds: bool,
    /// Cache insight (`[insight]`); `None` turns it off.
    pub insight: Option<crate::collect::insight::InsightConfig>,
}

/// What a replay hands, besides the pipeline, to the triggers: the frames
/// of the watched traffic (for the flight recorder), the collectors'
/// per-second figures, and packet time.
pub trait Tap {
    fn frame(&mut self, f: &crate::capture::Frame<'_>);
    fn seconds(&mut self, m: SecondMsg);
    /// Packet time the reader has reached.
    fn tick(&mut self, now: Ts);
    /// End of input (every second is in).
    fn finish(&mut self);
}

impl PipelineConfig {
    /// What each worker gets of the memory budget.
    pub fn split(&self) -> crate::session::budget::Split {
        Config::split(self.memory, self.workers)
    }

    /// Whether collectors merge several workers' records in packet-time
    /// order (for insight), and so wait on the slowest worker's word.
    pub fn merging(&self) -> bool {
        self.insight.is_some() && self.workers > 1
    }

    /// How often, in packet time, every worker sends its batches full or
    /// not (0: never; windows are apart): each second for the triggers,
    /// and every [`HEARTBEAT_NS`] when collectors merge several workers'
    /// records for insight: they apply a record only once every worker
    /// is past it, and a worker with nothing to send would hold the
    /// others' records back (and their memory) until it had.
    pub fn flush_every(&self) -> u64 {
        match (self.seconds, self.merging()) {
            (_, true) => HEARTBEAT_NS,
            (true, false) => SECOND_NS,
            (false, false) => 0,
        }
    }

    /// Batch sizes and channel depths: `base` cut to the workers' pipeline
    /// part of the budget.
    pub fn shape(&self, base: Shape) -> Shape {
        Shape::within(base, self.split().pipeline_bytes, self.collectors)
    }
}

/// The workers' heartbeat when collectors merge their records (see
/// [`PipelineConfig::flush_every`]): what a collector holds is about this
/// much packet time of records. Divides a second.
pub const HEARTBEAT_NS: u64 = 250_000_000;

/// A worker the reader sent nothing while it sent this many batches to
/// the others gets an empty one that tells it to send its record batches
/// (when collectors merge workers' records): otherwise, while one worker
/// takes a burst (a multi-get of thousands of keys), its records would
/// wait at the collectors for a heartbeat of packet time.
const QUIET_BATCHES: usize = 2;

/// Bytes of one packet's place in a batch (besides its payload).
pub(crate) const PMETA_BYTES: usize = std::mem::size_of::<PMeta>();

#[derive(Debug, Clone, Copy)]
struct PMeta {
    ts: Ts,
    frame_no: u64,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    transport: Transport,
    tcp: TcpInfo,
    off: u32,
    len: u32,
    truncated: bool,
    wire_payload_len: usize,
    /// The reader's packet time once it read this packet: the latest
    /// time of any packet so far, which a capture out of time order can
    /// hold above this one's.
    clock: Ts,
}

#[derive(Default)]
pub(crate) struct PacketBatch {
    arena: Vec<u8>,
    pkts: Vec<PMeta>,
    /// Reader's packet time when the batch was sent.
    pub tick: Ts,
    /// The worker sends its record batches after this one, full or not:
    /// the reader's heartbeat for a worker it has had nothing for (see
    /// `QUIET_BATCHES`).
    pub flush: bool,
}

impl PacketBatch {
    /// Adds `p`, read when the reader's packet time was `clock`.
    pub fn push(&mut self, p: &Packet<'_>, clock: Ts) {
        let off = self.arena.len() as u32;
        self.arena.extend_from_slice(p.payload);
        self.pkts.push(PMeta {
            ts: p.ts,
            frame_no: p.frame_no,
            src: p.src,
            dst: p.dst,
            sport: p.sport,
            dport: p.dport,
            transport: p.transport,
            tcp: p.tcp,
            off,
            len: p.payload.len() as u32,
            truncated: p.truncated,
            wire_payload_len: p.wire_payload_len,
            clock,
        });
    }

    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    pub fn arena_len(&self) -> usize {
        self.arena.len()
    }

    /// Runs every packet of the batch through `w`, then its tick.
    pub fn feed(&self, w: &mut Worker) {
        for m in &self.pkts {
            // Records resolved now are stamped with the time one worker
            // reading every packet would have reached (its own packets'
            // latest time, out of time order, could be behind): windows,
            // and the merge of workers' records, then cut alike.
            w.batcher.now = w.batcher.now.max(m.clock);
            w.packet(&self.packet(m));
        }
        w.tick(self.tick);
        if self.flush {
            w.batcher.flush();
        }
    }

    fn packet(&self, m: &PMeta) -> Packet<'_> {
        Packet {
            ts: m.ts,
            frame_no: m.frame_no,
            src: m.src,
            dst: m.dst,
            sport: m.sport,
            dport: m.dport,
            transport: m.transport,
            tcp: m.tcp,
            payload: &self.arena[m.off as usize..(m.off + m.len) as usize],
            truncated: m.truncated,
            wire_payload_len: m.wire_payload_len,
        }
    }

    pub fn clear(&mut self) {
        self.arena.clear();
        self.pkts.clear();
        self.tick = 0;
        self.flush = false;
    }
}

/// What a run produced.
pub struct PipelineOutput {
    pub run: Tables,
    /// Closed windows in time order: (start, end, merged tables).
    pub windows: Vec<(Ts, Ts, Tables)>,
    pub counters: Counters,
    pub warnings: Vec<String>,
    pub first_ts: Ts,
    pub last_ts: Ts,
    /// CPU time of each stage's threads.
    pub cpu: StageCpu,
}

/// CPU time each stage's threads spent (their thread CPU clocks): what a
/// packet and a record cost on this machine, for sizing (`replay -v`,
/// `benches/stage-costs.sh`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StageCpu {
    /// The thread that reads and decodes the input; with one worker it
    /// runs the worker too. It includes the helper that maps a file's
    /// pages ahead of the reader.
    pub reader_ns: u64,
    /// The worker threads (none with one worker).
    pub workers_ns: u64,
    pub collectors_ns: u64,
    /// Wall time the workers spent waiting for room in a collector's
    /// channel, and the collectors waiting for records: which stage held
    /// the other back (replay).
    pub workers_blocked_ns: u64,
    pub collectors_idle_ns: u64,
}

/// Keeps a worker's packet time, its engine and its record batcher together.
pub(crate) struct Worker {
    pub engine: Engine,
    pub batcher: Batcher,
    pub window_ns: u64,
    pub last_flush_window: Ts,
    /// Also flush at every multiple of this much packet time
    /// ([`PipelineConfig::flush_every`]; 0: never).
    pub flush_every: u64,
    pub last_flush_beat: Ts,
    /// Packet time before which no window or second boundary is crossed:
    /// `maybe_flush` then costs a compare, where finding the boundaries
    /// is two 64-bit divisions a packet (about 4 % of a worker's time).
    pub next_check: Ts,
}

impl Worker {
    pub fn packet(&mut self, p: &Packet<'_>) {
        if p.ts > self.batcher.now {
            self.batcher.now = p.ts;
        }
        self.batcher.frame = p.frame_no;
        self.engine.packet(p, &mut self.batcher);
        self.maybe_flush();
    }

    pub fn tick(&mut self, now: Ts) {
        self.engine.advance(now, &mut self.batcher);
        if now > self.batcher.now {
            self.batcher.now = now;
        }
        self.maybe_flush();
    }

    /// Crossing into a new window sends the batches (possibly empty): their
    /// watermark lets collectors close the window just left.
    fn maybe_flush(&mut self) {
        if self.batcher.now < self.next_check {
            return;
        }
        self.next_check = Ts::MAX;
        if self.flush_every > 0 {
            let s = collector::window_start(self.batcher.now, self.flush_every);
            if s > self.last_flush_beat {
                self.last_flush_beat = s;
                self.batcher.flush();
            }
            self.next_check = s.saturating_add(self.flush_every);
        }
        if self.window_ns == 0 {
            return;
        }
        let w = collector::window_start(self.batcher.now, self.window_ns);
        if w > self.last_flush_window {
            self.last_flush_window = w;
            self.batcher.flush();
        }
        self.next_check = self.next_check.min(w.saturating_add(self.window_ns));
    }

    /// [`finish_with`](Self::finish_with), nothing extra; the time the
    /// worker was blocked on full channels.
    fn finish(self) -> u64 {
        self.finish_with(&Counters::default())
    }

    /// Counters a worker's engine and batcher hold now, plus `extra`.
    pub fn counters(&self, extra: &Counters) -> Counters {
        let mut c = self.engine.counters();
        c.add(extra);
        c.record_batches_dropped += self.batcher.dropped_batches;
        c.records_dropped += self.batcher.dropped_records;
        c.record_batches_waited += self.batcher.waited_batches;
        c
    }

    /// Ends the worker: open requests are resolved, and the last batches
    /// (always delivered, even on a live pipeline) carry its counters,
    /// `extra` (a live worker's capture and decode counters) included.
    /// Returns the time it was blocked on full collector channels.
    pub fn finish_with(mut self, extra: &Counters) -> u64 {
        self.engine.finish(&mut self.batcher);
        self.batcher.set_mode(Backpressure::Block);
        let totals = WorkerTotals {
            counters: self.counters(extra),
            warnings: self.engine.warnings().clone(),
        };
        self.batcher.finish(totals)
    }
}

pub(crate) struct Collectors {
    pub senders: Vec<Sender<RecordBatch>>,
    /// Each collector's result and its thread's CPU time.
    pub handles: Vec<thread::JoinHandle<(CollectorResult, u64)>>,
    pub windows_rx: Option<Receiver<WindowMsg>>,
    pub seconds_rx: Option<Receiver<SecondMsg>>,
    /// Live pipelines only: one control channel per collector.
    pub ctls: Vec<Sender<collector::Ctl>>,
}

pub(crate) fn spawn_collectors(
    pc: &PipelineConfig,
    recycle: &[Sender<RecordBatch>],
    live: bool,
    shape: &Shape,
) -> Collectors {
    let mut ctls = Vec::new();
    let (wtx, wrx) = if pc.windows && pc.window_ns > 0 {
        let (t, r) = unbounded();
        (Some(t), Some(r))
    } else {
        (None, None)
    };
    let (stx, srx) = if pc.seconds {
        let (t, r) = unbounded();
        (Some(t), Some(r))
    } else {
        (None, None)
    };
    let mut senders = Vec::new();
    let mut handles = Vec::new();
    for id in 0..pc.collectors {
        // Live capture waits for a collector only while the ring in front
        // of the worker has room (`batch::Patience`), so its channel is
        // deeper (`Shape::LIVE`): it absorbs the bursts (a pipelined
        // multi-set start) that arrive while a collector is descheduled
        // without the worker stopping. Bounded all the same: `record_depth`
        // batches per worker. Collectors never wait on anything but this
        // channel (windows and seconds go out unbounded), so a waiting
        // worker cannot close a cycle.
        let (tx, rx) = bounded::<RecordBatch>(shape.record_depth * pc.workers.max(1));
        senders.push(tx);
        let cfg = CollectorConfig {
            limits: collector_limits(pc),
            window_ns: pc.window_ns,
            workers: pc.workers,
            // As many as its channel holds: the budget's share of batches.
            hold_batches: shape.record_depth * pc.workers.max(1),
            batch_records: shape.batch_records,
            // Each collector its own copy: the regex scratch pool inside is
            // then never contended (one thread per copy).
            families: pc.families.as_ref().map(|f| Arc::new((**f).clone())),
            // Keys are split over the collectors: each curve is scaled up
            // to the pool's.
            insight: pc.insight.clone().map(|mut i| {
                i.mrc.scale = pc.collectors.max(1) as u32;
                i
            }),
        };
        let recycle = recycle.to_vec();
        let wtx = wtx.clone();
        let stx = stx.clone();
        let ctl = if live {
            let (t, r) = unbounded();
            ctls.push(t);
            Some(r)
        } else {
            None
        };
        handles.push(
            thread::Builder::new()
                .name(format!("memtap-collect-{id}"))
                .spawn(move || {
                    let r = collector::run(id, cfg, rx, recycle, wtx, ctl, stx);
                    (r, thread_cpu_ns())
                })
                .expect("spawn collector thread"),
        );
    }
    Collectors {
        senders,
        handles,
        windows_rx: wrx,
        seconds_rx: srx,
        ctls,
    }
}

/// Keys are sharded, so each collector holds its share of `max_keys`;
/// clients and families are not (any collector may see any of them).
pub(crate) fn collector_limits(pc: &PipelineConfig) -> TableLimits {
    TableLimits {
        max_keys: pc.limits.max_keys.div_ceil(pc.collectors.max(1)),
        ..pc.limits
    }
}

/// Merges window parts as they arrive; a window is complete once every
/// collector has closed past its end.
pub(crate) struct WindowMerger {
    parts: BTreeMap<Ts, (Ts, Tables)>,
    upto: Vec<Ts>,
    limits: TableLimits,
    pub done: Vec<(Ts, Ts, Tables)>,
}

impl WindowMerger {
    pub fn new(collectors: usize, limits: TableLimits) -> WindowMerger {
        WindowMerger {
            parts: BTreeMap::new(),
            upto: vec![0; collectors],
            limits,
            done: Vec::new(),
        }
    }

    fn take(&mut self, m: WindowMsg) {
        match m {
            WindowMsg::Part { start, end, tables } => match self.parts.get_mut(&start) {
                Some((_, t)) => t.merge(&tables),
                None => {
                    let mut t = Tables::new(&self.limits);
                    t.merge(&tables);
                    self.parts.insert(start, (end, t));
                }
            },
            WindowMsg::Upto { collector, upto } => {
                if let Some(u) = self.upto.get_mut(collector) {
                    *u = (*u).max(upto);
                }
            }
        }
        let low = self.upto.iter().copied().min().unwrap_or(0);
        while let Some((&start, (end, _))) = self.parts.first_key_value() {
            if *end > low {
                break;
            }
            let (end, t) = self.parts.remove(&start).expect("present");
            self.done.push((start, end, t));
        }
    }

    pub fn drain(&mut self, rx: &Receiver<WindowMsg>) {
        while let Ok(m) = rx.try_recv() {
            self.take(m);
        }
    }
}

/// Runs the whole replay of `files`.
pub fn run(
    cfg: &Config,
    targets: &Targets,
    files: &[PathBuf],
    pc: &PipelineConfig,
    progress: &mut dyn ReplayProgress,
) -> anyhow::Result<PipelineOutput> {
    run_tapped(cfg, targets, files, pc, progress, None)
}

/// [`run`], with `tap` shown the watched frames, the per-second figures
/// (`pc.seconds`) and packet time.
pub fn run_tapped(
    cfg: &Config,
    targets: &Targets,
    files: &[PathBuf],
    pc: &PipelineConfig,
    progress: &mut dyn ReplayProgress,
    mut tap: Option<&mut dyn Tap>,
) -> anyhow::Result<PipelineOutput> {
    anyhow::ensure!(pc.workers >= 1, "--workers must be at least 1");
    anyhow::ensure!(pc.collectors >= 1, "--collectors must be at least 1");
    let cpu0 = thread_cpu_ns();
    let mut cpu = StageCpu::default();
    let mut src = FileSource::open(files)?;
    let mut counters = Counters::default();
    let mut decoder = Decoder::new(cfg.decode_config_split(&pc.split()));
    let ecfg = EngineConfig::from_config_split(cfg, &pc.split());
    let shape = pc.shape(Shape::REPLAY);

    // Record-batch recycling, one channel per worker.
    let mut rec_spare_tx = Vec::new();
    let mut rec_spare_rx = Vec::new();
    for _ in 0..pc.workers {
        let (t, r) = bounded::<RecordBatch>(shape.record_depth * pc.collectors * 2);
        rec_spare_tx.push(t);
        rec_spare_rx.push(r);
    }
    let cols = spawn_collectors(pc, &rec_spare_tx, false, &shape);
    drop(rec_spare_tx);
    let mut merger = WindowMerger::new(pc.collectors, pc.limits);

    let make_worker = |i: usize, spare: Receiver<RecordBatch>| Worker {
        engine: Engine::new(ecfg.clone(), targets.clone()),
        batcher: Batcher::new(
            i,
            cols.senders.clone(),
            spare,
            shape.batch_records,
            Backpressure::Block,
        )
        .syncing(pc.merging()),
        window_ns: pc.window_ns,
        last_flush_window: 0,
        flush_every: pc.flush_every(),
        last_flush_beat: 0,
        next_check: 0,
    };
    let seconds_rx = cols.seconds_rx.clone();
    // Hands the tap what the collectors said, and packet time.
    let pump = |tap: &mut Option<&mut dyn Tap>, now: Ts| {
        if let Some(t) = tap.as_deref_mut() {
            if let Some(rx) = &seconds_rx {
                while let Ok(m) = rx.try_recv() {
                    t.seconds(m);
                }
            }
            t.tick(now);
        }
    };

    let mut first_ts = None;
    let mut last_ts: Ts = 0;
    let mut frames_since_progress = 0u32;
    let result: anyhow::Result<()> = if pc.workers == 1 {
        let mut w = make_worker(0, rec_spare_rx.pop().expect("one worker"));
        let r = (|| {
            while let Some(frame) = src.next_frame(&mut counters)? {
                if let Some(p) = decoder.decode(&frame, &mut counters) {
                    first_ts.get_or_insert(p.ts);
                    last_ts = last_ts.max(p.ts);
                    if let Some(t) = tap.as_deref_mut() {
                        if targets.classify(p.src, p.sport, p.dst, p.dport).is_some() {
                            t.frame(&frame);
                        }
                    }
                    w.packet(&p);
                }
                frames_since_progress += 1;
                if frames_since_progress >= 4096 {
                    frames_since_progress = 0;
                    progress.update(src.bytes_read(), src.total_bytes(), counters.packets);
                    if let Some(rx) = &cols.windows_rx {
                        merger.drain(rx);
                    }
                    pump(&mut tap, last_ts);
                }
            }
            Ok(())
        })();
        cpu.workers_blocked_ns += w.finish();
        r
    } else {
        // Packet batches to workers and back.
        let mut to_workers = Vec::new();
        let mut back_rx = Vec::new();
        let mut handles = Vec::new();
        for (i, spare) in rec_spare_rx.drain(..).enumerate() {
            let (tx, rx) = bounded::<PacketBatch>(shape.packet_depth);
            let (btx, brx) = bounded::<PacketBatch>(shape.packet_depth + 2);
            to_workers.push(tx);
            back_rx.push(brx);
            let mut w = make_worker(i, spare);
            handles.push(
                thread::Builder::new()
                    .name(format!("memtap-worker-{i}"))
                    .spawn(move || {
                        while let Ok(mut b) = rx.recv() {
                            b.feed(&mut w);
                            b.clear();
                            let _ = btx.try_send(b);
                        }
                        let blocked = w.finish();
                        (thread_cpu_ns(), blocked)
                    })
                    .expect("spawn worker thread"),
            );
        }
        let n = pc.workers;
        let mut cur: Vec<PacketBatch> = (0..n).map(|_| PacketBatch::default()).collect();
        let mut last_window = 0;
        let mut last_beat = 0;
        let beat = pc.flush_every();
        // Per worker: batches sent to the others since it last got one.
        let mut quiet = vec![0usize; n];
        let sync = pc.merging();
        let send =
            |i: usize, cur: &mut Vec<PacketBatch>, quiet: &mut [usize], tick: Ts, flush: bool| {
                let fresh = back_rx[i].try_recv().unwrap_or_default();
                let mut b = std::mem::replace(&mut cur[i], fresh);
                b.tick = tick;
                b.flush = flush;
                let _ = to_workers[i].send(b);
                if !sync {
                    return;
                }
                quiet[i] = 0;
                for j in (0..n).filter(|&j| j != i) {
                    quiet[j] += 1;
                }
            };
        let r = (|| {
            while let Some(frame) = src.next_frame(&mut counters)? {
                if let Some(p) = decoder.decode(&frame, &mut counters) {
                    first_ts.get_or_insert(p.ts);
                    last_ts = last_ts.max(p.ts);
                    if targets.classify(p.src, p.sport, p.dst, p.dport).is_none() {
                        counters.not_target += 1;
                    } else {
                        if let Some(t) = tap.as_deref_mut() {
                            t.frame(&frame);
                        }
                        let i = crate::decode::shard(flow_hash(p.src, p.sport, p.dst, p.dport), n);
                        cur[i].push(&p, last_ts);
                        if cur[i].pkts.len() >= shape.batch_packets
                            || cur[i].arena.len() >= shape.batch_bytes
                        {
                            send(i, &mut cur, &mut quiet, last_ts, false);
                            // The collectors merging the workers' records
                            // wait on a worker the reader has had nothing
                            // for: it hears the time and says so.
                            for j in 0..n {
                                if quiet[j] >= QUIET_BATCHES {
                                    send(j, &mut cur, &mut quiet, last_ts, true);
                                }
                            }
                        }
                    }
                }
                // Every worker hears of a new window (and of each beat of
                // `flush_every`), even one with no packets for it: windows,
                // seconds and insight's merge move on time alone.
                let mut crossed = false;
                if pc.window_ns > 0 {
                    let w = collector::window_start(last_ts, pc.window_ns);
                    crossed |= w > last_window;
                    last_window = last_window.max(w);
                }
                if beat > 0 {
                    let s = collector::window_start(last_ts, beat);
                    crossed |= s > last_beat;
                    last_beat = last_beat.max(s);
                }
                if crossed {
                    for i in 0..n {
                        send(i, &mut cur, &mut quiet, last_ts, false);
                    }
                }
                frames_since_progress += 1;
                if frames_since_progress >= 4096 {
                    frames_since_progress = 0;
                    progress.update(src.bytes_read(), src.total_bytes(), counters.packets);
                    if let Some(rx) = &cols.windows_rx {
                        merger.drain(rx);
                    }
                    pump(&mut tap, last_ts);
                }
            }
            Ok(())
        })();
        for i in 0..n {
            send(i, &mut cur, &mut quiet, last_ts, false);
        }
        drop(to_workers);
        for h in handles {
            let (ns, blocked) = h
                .join()
                .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
            cpu.workers_ns += ns;
            cpu.workers_blocked_ns += blocked;
        }
        r
    };
    cpu.reader_ns = thread_cpu_ns().saturating_sub(cpu0) + src.helper_cpu_ns();
    decoder.finish(&mut counters);
    progress.update(src.bytes_read(), src.total_bytes(), counters.packets);
    let windows_rx = cols.windows_rx.clone();
    let mut warnings = Warnings::default();
    let run = join_collectors(cols, pc, &mut counters, &mut warnings, &mut cpu)?;
    if let Some(rx) = &windows_rx {
        merger.drain(rx);
    }
    pump(&mut tap, last_ts);
    if let Some(t) = tap {
        t.finish();
    }
    result?;
    let mut windows = merger.done;
    windows.sort_by_key(|(s, _, _)| *s);
    Ok(PipelineOutput {
        run,
        windows,
        counters,
        warnings: {
            let mut w = src.take_warnings();
            w.extend(warnings.lines());
            w
        },
        first_ts: first_ts.unwrap_or(0),
        last_ts,
        cpu,
    })
}

/// Waits for every collector to finish (their workers must be done) and
/// merges their whole-run tables; their counters and warnings are added to
/// the caller's.
pub(crate) fn join_collectors(
    cols: Collectors,
    pc: &PipelineConfig,
    counters: &mut Counters,
    warnings: &mut Warnings,
    cpu: &mut StageCpu,
) -> anyhow::Result<Tables> {
    drop(cols.senders);
    drop(cols.ctls);
    let mut run: Option<Tables> = None;
    for h in cols.handles {
        let (res, ns) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a collector thread panicked"))?;
        cpu.collectors_ns += ns;
        cpu.collectors_idle_ns += res.idle_ns;
        counters.add(&res.counters);
        warnings.merge(&res.warnings);
        match run.as_mut() {
            // One collector already holds the whole table: no copy.
            None if pc.collectors == 1 => run = Some(res.run),
            None => {
                let mut t = Tables::new(&pc.limits);
                t.merge(&res.run);
                run = Some(t);
            }
            Some(t) => t.merge(&res.run),
        }
    }
    Ok(run.expect("at least one collector"))
}
