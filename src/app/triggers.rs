//! What happens when a trigger fires: the event line on standard error,
//! the counts behind `/metrics` and `/api/events`, the pcapng snippet of
//! the packets around the firing (from the flight recorder), and the
//! webhook and command, run off the packet path.
//!
//! Replay runs it on the reader thread as a pipeline `Tap` (one ring, fed
//! every watched frame, packet time throughout). Live capture runs the
//! evaluator on the main thread and takes the snippet's frames from the
//! capture threads' rings.

use super::actions::{Action, Limits, Pool};
use super::pipeline::Tap;
use crate::capture::recorder::{Kept, Ring};
use crate::capture::Frame;
use crate::collect::seconds::SecondMsg;
use crate::decode::{DecodeConfig, Decoder, Transport, Ts};
use crate::stats::Counters;
use crate::trigger::{Evaluator, Event, EventKind, Rule, Stats as TriggerStats, Subject};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HOUR_NS: Ts = 3_600_000_000_000;
/// Recent events kept for `/api/events` and the report.
pub const KEEP_EVENTS: usize = 1000;

/// How triggers run: from the config and the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub rules: Vec<Rule>,
    /// Snippets go here; `None`: none are written.
    pub dir: Option<PathBuf>,
    pub ring_bytes: u64,
    pub keep_ns: Ts,
    pub quota: u64,
    pub per_rule_per_hour: u32,
    pub webhook_timeout: Duration,
    pub command_timeout: Duration,
    /// Action threads and queue (`[actions]`).
    pub action_workers: usize,
    pub action_queue: usize,
    /// How long actions may run on at exit (`actions.drain_timeout`).
    pub drain_timeout: Duration,
    /// Event lines as JSON objects (`--log-format json`).
    pub json: bool,
    /// No event lines (`--quiet`).
    pub quiet: bool,
    /// Key privacy (`--redact-keys`): events show keys as reports do.
    pub redact: crate::collect::redact::Redact,
}

impl Settings {
    pub fn from_config(
        cfg: &crate::config::Config,
        dir: Option<PathBuf>,
        json: bool,
        quiet: bool,
    ) -> anyhow::Result<Settings> {
        let rules = cfg.triggers()?;
        let (ring_bytes, keep_ns, quota, wt, ct) = cfg.recorder_bounds()?;
        let dir = dir
            .or_else(|| (!cfg.recorder.dir.is_empty()).then(|| PathBuf::from(&cfg.recorder.dir)));
        if let Some(d) = dir.as_ref().filter(|_| !rules.is_empty()) {
            if d.exists() && !d.is_dir() {
                anyhow::bail!(
                    "trigger directory {}: is a file, not a directory",
                    d.display()
                );
            }
            std::fs::create_dir_all(d)
                .map_err(|e| anyhow::anyhow!("trigger directory {}: {e}", d.display()))?;
            crate::store::writer::check_writable_dir(&d.join("x"), "trigger")?;
        }
        // The ring must reach back from the latest firing's end to its start.
        let span = rules
            .iter()
            .map(|r| r.before_ns + r.after_ns)
            .max()
            .unwrap_or(0);
        Ok(Settings {
            rules,
            dir,
            ring_bytes,
            keep_ns: keep_ns.max(span + 2_000_000_000),
            quota,
            per_rule_per_hour: cfg.recorder.per_rule_per_hour,
            webhook_timeout: Duration::from_nanos(wt),
            command_timeout: Duration::from_nanos(ct),
            action_workers: cfg.actions.workers,
            action_queue: cfg.actions.queue_len,
            drain_timeout: cfg.grace()?.1,
            json,
            quiet,
            redact: crate::collect::redact::Redact::None,
        })
    }

    /// Some rule keeps packets, and there is somewhere to put them.
    pub fn records(&self) -> bool {
        self.dir.is_some() && self.rules.iter().any(|r| r.record)
    }
}

/// The actions left at exit and their grace (`actions.drain_timeout`).
pub struct Drain {
    pool: Pool,
    grace: Duration,
}

impl Drain {
    /// Lets them finish within the grace, then abandons what is left
    /// (counted, logged). Runs on a thread of its own so that the store's
    /// flush, which has its own grace, goes on beside it: the exit is
    /// bounded by the longer of the two, not their sum.
    pub fn start(self) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("memtap-drain".into())
            .spawn(move || self.pool.drain(self.grace))
            .expect("spawn the actions' drain thread")
    }
}

/// What the HTTP views read while a live capture runs.
#[derive(Default)]
pub struct Shared {
    pub stats: TriggerStats,
    pub events: VecDeque<Event>,
    /// The last snippet could not be written (why); cleared by the next
    /// one written. `/healthz` reports it.
    pub snippet_problem: Option<String>,
}

/// A firing whose snippet waits for its `after` seconds.
struct Due {
    event: Event,
    rule: Rule,
    at: Ts,
}

/// Where a snippet's frames come from.
pub trait FrameSource {
    /// Frames of the watched traffic stamped in `[from, to]`, oldest first.
    fn frames(&mut self, from: Ts, to: Ts) -> Vec<Kept>;
}

impl FrameSource for Ring {
    fn frames(&mut self, from: Ts, to: Ts) -> Vec<Kept> {
        self.take(from, to)
    }
}

pub struct Triggers {
    s: Settings,
    eval: Evaluator,
    due: Vec<Due>,
    written: HashMap<String, VecDeque<Ts>>,
    used_bytes: u64,
    pub shared: Arc<Mutex<Shared>>,
    actions: Option<Pool>,
    /// Packet time reached.
    now: Ts,
    /// Events not yet taken by `take_fresh` (for the history store).
    fresh: Vec<Event>,
}

impl Triggers {
    pub fn new(s: Settings, collectors: usize) -> Triggers {
        let shared = Arc::new(Mutex::new(Shared::default()));
        if let Some(d) = &s.dir {
            remove_partials(d);
        }
        let used_bytes = s.dir.as_ref().map_or(0, |d| snippet_bytes_in(d));
        let needs_actions = s
            .rules
            .iter()
            .any(|r| r.webhook.is_some() || r.command.is_some());
        let actions = needs_actions.then(|| {
            Pool::new(
                Limits {
                    workers: s.action_workers,
                    queue_len: s.action_queue,
                    webhook_timeout: s.webhook_timeout,
                    command_timeout: s.command_timeout,
                },
                shared.clone(),
            )
        });
        let eval = Evaluator::new(s.rules.clone(), collectors);
        let t = Triggers {
            s,
            eval,
            due: Vec::new(),
            written: HashMap::new(),
            used_bytes,
            shared,
            actions,
            now: 0,
            fresh: Vec::new(),
        };
        t.publish();
        t
    }

    pub fn settings(&self) -> &Settings {
        &self.s
    }

    /// New rules (config reload).
    pub fn set_rules(&mut self, rules: Vec<Rule>) {
        self.eval.set_rules(rules.clone());
        self.s.rules = rules;
        self.publish();
    }

    /// The threads' running counters (live capture, each tick).
    pub fn observe(&mut self, c: &Counters) {
        self.eval.observe(c);
    }

    /// A collector's message: judges completed seconds and acts.
    pub fn take(&mut self, m: SecondMsg, frames: &mut dyn FrameSource) {
        let events = self.eval.take(m);
        self.handle(events, frames);
    }

    /// Packet time moved on: snippets whose `after` has passed are written.
    pub fn tick(&mut self, now: Ts, frames: &mut dyn FrameSource) {
        self.now = self.now.max(now);
        let now = self.now;
        let mut i = 0;
        while i < self.due.len() {
            if self.due[i].at + self.due[i].rule.after_ns <= now {
                let d = self.due.remove(i);
                self.snippet(&d, frames);
            } else {
                i += 1;
            }
        }
    }

    /// End of input: the last seconds are judged and every waiting snippet
    /// is written with what there is. The actions go on: the report never
    /// waits for them (`drain_actions` gives them their grace after it).
    pub fn finish(&mut self, frames: &mut dyn FrameSource) {
        let events = self.eval.finish();
        self.handle(events, frames);
        for d in std::mem::take(&mut self.due) {
            self.snippet(&d, frames);
        }
        self.publish();
    }

    /// The action pool, for `drain_actions` once the report is out; none
    /// when no rule has an action (or it was taken already).
    pub fn take_actions(&mut self) -> Option<Drain> {
        self.actions.take().map(|pool| Drain {
            pool,
            grace: self.s.drain_timeout,
        })
    }

    /// What the report says the triggers did: the counts now, with the
    /// actions still queued or running at this moment.
    pub fn summary(&self) -> crate::trigger::Summary {
        let mut stats = self.stats();
        stats.actions_pending = self.actions.as_ref().map_or(0, |p| p.pending());
        crate::trigger::Summary {
            stats,
            events: self.events(),
        }
    }

    fn handle(&mut self, events: Vec<Event>, frames: &mut dyn FrameSource) {
        for mut e in events {
            if let Subject::Key(k) = &e.subject {
                e.subject_str = crate::report::key_string(k, &self.s.redact);
            }
            if !self.s.quiet {
                if self.s.json {
                    eprintln!("{}", e.json());
                } else {
                    eprintln!("memtap: {}", e.text());
                }
            }
            let Some(rule) = self.s.rules.iter().find(|r| r.name == e.trigger).cloned() else {
                continue;
            };
            if let Some(pool) = &self.actions {
                let send = |a: Action| pool.submit(a);
                if let Some(url) = &rule.webhook {
                    send(Action::Webhook {
                        url: url.clone(),
                        body: e.json(),
                    });
                }
                if let Some(cmd) = &rule.command {
                    send(Action::Command {
                        cmd: cmd.clone(),
                        event: e.clone(),
                    });
                }
            }
            if e.event == EventKind::Fired && rule.record && self.s.dir.is_some() {
                self.due.push(Due {
                    at: e.ts,
                    event: e.clone(),
                    rule,
                });
            }
            if self.fresh.len() < KEEP_EVENTS {
                self.fresh.push(e.clone());
            }
            {
                let mut sh = self.shared.lock().unwrap_or_else(|p| p.into_inner());
                if e.event == EventKind::Cleared {
                    sh.stats.cleared += 1;
                }
                if sh.events.len() >= KEEP_EVENTS {
                    sh.events.pop_front();
                }
                sh.events.push_back(e);
            }
        }
        self.publish();
        let now = self.now;
        self.tick(now, frames);
    }

    /// Copies the evaluator's counts where the HTTP views read them.
    fn publish(&self) {
        let active = self.eval.active();
        let mut sh = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        sh.stats.firings = self
            .s
            .rules
            .iter()
            .zip(&self.eval.firings)
            .map(|(r, n)| (r.name.clone(), *n))
            .collect();
        sh.stats.active = self
            .s
            .rules
            .iter()
            .zip(&active)
            .map(|(r, n)| (r.name.clone(), *n as u64))
            .collect();
        sh.stats.suppressed = self.eval.suppressed;
    }

    /// Ring figures (the caller owns the rings).
    pub fn ring_stats(&self, kept: u64, evicted: u64) {
        let mut sh = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        sh.stats.ring_frames = kept;
        sh.stats.ring_evicted = evicted;
    }

    /// Writes the snippet of one firing, within the quota and rate.
    fn snippet(&mut self, d: &Due, frames: &mut dyn FrameSource) {
        let Some(dir) = self.s.dir.clone() else {
            return;
        };
        let stat = |f: &dyn Fn(&mut TriggerStats)| {
            f(&mut self.shared.lock().unwrap_or_else(|p| p.into_inner()).stats);
        };
        let times = self.written.entry(d.rule.name.clone()).or_default();
        while times.front().is_some_and(|&t| t + HOUR_NS <= d.at) {
            times.pop_front();
        }
        if times.len() >= self.s.per_rule_per_hour as usize {
            stat(&|s| s.snippets_over_rate += 1);
            return;
        }
        let from = d.at.saturating_sub(d.rule.before_ns);
        let to = d.at + d.rule.after_ns;
        let all = frames.frames(from, to);
        let kept: Vec<&Kept> = restrict(&all, &d.event.subject)
            .into_iter()
            .map(|i| &all[i])
            .collect();
        if kept.is_empty() {
            stat(&|s| s.snippets_empty += 1);
            return;
        }
        let comment = format!(
            "memtap {}; packets from {} to {} (UTC), {} of {} in that span",
            d.event.text(),
            crate::time::rfc3339(from),
            crate::time::rfc3339(to),
            kept.len(),
            all.len()
        );
        let size = crate::capture::pcapng_out::size(&comment, &kept);
        if self.used_bytes + size > self.s.quota {
            stat(&|s| s.snippets_over_quota += 1);
            if !self.s.quiet {
                eprintln!(
                    "memtap: warning: trigger {}: snippet not written: the quota of {} bytes in {} is used",
                    d.rule.name,
                    self.s.quota,
                    dir.display()
                );
            }
            return;
        }
        let path = unique_path(&dir, &d.event);
        // Written under a temporary name and renamed when complete: a
        // snippet file is whole or absent, never cut short by a full disk.
        let part = partial_path(&path);
        let written = std::fs::File::create(&part)
            .and_then(|f| {
                let mut w = std::io::BufWriter::new(f);
                crate::capture::pcapng_out::write(&mut w, &comment, &kept)?;
                w.into_inner().map_err(|e| e.into_error())?.sync_data()
            })
            .and_then(|_| std::fs::rename(&part, &path));
        match written {
            Ok(()) => {
                self.used_bytes += size;
                times.push_back(d.at);
                let name = path.display().to_string();
                if !self.s.quiet {
                    eprintln!(
                        "memtap: trigger {}: {} packets of {} {} written to {name}",
                        d.rule.name,
                        kept.len(),
                        d.event.subject_kind,
                        d.event.subject_str
                    );
                }
                let mut sh = self.shared.lock().unwrap_or_else(|p| p.into_inner());
                sh.stats.snippets_written += 1;
                sh.stats.snippet_bytes += size;
                if sh.stats.files.len() >= 100 {
                    sh.stats.files.remove(0);
                }
                sh.stats.files.push(name);
                if sh.snippet_problem.take().is_some() {
                    eprintln!("memtap: trigger snippets are written again");
                }
            }
            Err(e) => {
                let removed = std::fs::remove_file(&part).is_ok();
                eprintln!(
                    "memtap: warning: trigger {}: cannot write {}: {e}{}",
                    d.rule.name,
                    path.display(),
                    if removed {
                        " (partial file removed)"
                    } else {
                        ""
                    }
                );
                let mut sh = self.shared.lock().unwrap_or_else(|p| p.into_inner());
                sh.stats.snippet_errors += 1;
                sh.snippet_problem = Some(format!(
                    "trigger snippet {} not written: {e}",
                    path.display()
                ));
            }
        }
    }

    /// The events since the last call (a live capture stores them).
    pub fn take_fresh(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.fresh)
    }

    pub fn stats(&self) -> TriggerStats {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stats
            .clone()
    }

    pub fn events(&self) -> Vec<Event> {
        self.shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .iter()
            .cloned()
            .collect()
    }
}

/// Bytes of memtap's snippets already in `dir` (they count against the
/// quota across runs).
fn snippet_bytes_in(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("memtap-") && n.ends_with(".pcapng")
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Where a snippet is written before it is complete: hidden, and not
/// counted against the quota by a later run.
fn partial_path(p: &std::path::Path) -> PathBuf {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    p.with_file_name(format!(".{name}.partial"))
}

/// Removes partial snippets a crash left behind.
fn remove_partials(dir: &std::path::Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.starts_with(".memtap-") && n.ends_with(".partial") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// `memtap-RULE-KIND-SUBJECT-TIME.pcapng`, the subject made safe for a
/// file name; `-2`, `-3`... if taken.
fn unique_path(dir: &std::path::Path, e: &Event) -> PathBuf {
    let mut subject: String = e
        .subject_str
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if subject.is_empty() {
        subject.push('_');
    }
    let time = e.time.replace([':', '-'], "");
    let base = format!("memtap-{}-{}-{subject}-{time}", e.trigger, e.subject_kind);
    let mut p = dir.join(format!("{base}.pcapng"));
    let mut n = 2;
    while p.exists() {
        p = dir.join(format!("{base}-{n}.pcapng"));
        n += 1;
    }
    p
}

/// Both ends of a packet's conversation, in a fixed order.
type FlowId = (bool, IpAddr, u16, IpAddr, u16);

fn flow_id(t: Transport, a: IpAddr, ap: u16, b: IpAddr, bp: u16) -> FlowId {
    let t = t == Transport::Tcp;
    if (a, ap) <= (b, bp) {
        (t, a, ap, b, bp)
    } else {
        (t, b, bp, a, ap)
    }
}

/// Which frames are about `subject` (their indexes): a key's conversations
/// (the TCP connections and UDP exchanges whose packets in the span carry
/// its bytes), a client's or a server's packets, or everything.
pub fn restrict(frames: &[Kept], subject: &Subject) -> Vec<usize> {
    let mut d = Decoder::new(DecodeConfig::default());
    let mut c = Counters::default();
    let mut ids: Vec<Option<FlowId>> = Vec::with_capacity(frames.len());
    let mut keep_flows: hashbrown::HashSet<FlowId> = hashbrown::HashSet::new();
    let finder = match subject {
        Subject::Key(k) => Some(memchr::memmem::Finder::new(k.as_slice()).into_owned()),
        _ => None,
    };
    let mut direct = Vec::with_capacity(frames.len());
    for (i, f) in frames.iter().enumerate() {
        let fr = Frame {
            ts: f.ts,
            frame_no: i as u64 + 1,
            linktype: f.linktype,
            wire_len: f.wire_len,
            data: &f.data,
        };
        let Some(p) = d.decode(&fr, &mut c) else {
            ids.push(None);
            direct.push(false);
            continue;
        };
        let id = flow_id(p.transport, p.src, p.sport, p.dst, p.dport);
        let hit = match subject {
            Subject::Key(_) => {
                let found = finder.as_ref().is_some_and(|f| f.find(p.payload).is_some());
                if found {
                    keep_flows.insert(id);
                }
                found
            }
            Subject::Client(ip) => p.src == *ip || p.dst == *ip,
            Subject::Server(s) => {
                (p.src == s.ip() && p.sport == s.port()) || (p.dst == s.ip() && p.dport == s.port())
            }
            Subject::Pipeline => true,
        };
        ids.push(Some(id));
        direct.push(hit);
    }
    ids.iter()
        .zip(&direct)
        .enumerate()
        .filter(|(_, (id, hit))| **hit || id.is_some_and(|id| keep_flows.contains(&id)))
        .map(|(i, _)| i)
        .collect()
}

/// Replay's triggers: one ring on the reader thread.
pub struct ReplayTap {
    pub triggers: Triggers,
    ring: Option<Ring>,
}

impl ReplayTap {
    pub fn new(s: Settings, collectors: usize) -> ReplayTap {
        // By bytes only: the reader may run ahead of the judged seconds by
        // all the batches in flight, whatever packet time they span (a
        // sparse capture can be read whole before its first second is
        // judged), so an age limit would drop what a snippet needs.
        let ring = s
            .records()
            .then(|| Ring::new(usize::try_from(s.ring_bytes).unwrap_or(usize::MAX), Ts::MAX));
        ReplayTap {
            triggers: Triggers::new(s, collectors),
            ring,
        }
    }
}

/// No frames (no recorder).
struct NoFrames;
impl FrameSource for NoFrames {
    fn frames(&mut self, _: Ts, _: Ts) -> Vec<Kept> {
        Vec::new()
    }
}

impl Tap for ReplayTap {
    fn frame(&mut self, f: &Frame<'_>) {
        if let Some(r) = self.ring.as_mut() {
            r.push(f.ts, f.linktype, f.wire_len, f.data);
        }
    }

    fn seconds(&mut self, m: SecondMsg) {
        match self.ring.as_mut() {
            Some(r) => self.triggers.take(m, r),
            None => self.triggers.take(m, &mut NoFrames),
        }
    }

    fn tick(&mut self, now: Ts) {
        match self.ring.as_mut() {
            Some(r) => {
                self.triggers.tick(now, r);
                self.triggers.ring_stats(r.kept, r.evicted_for_room);
            }
            None => self.triggers.tick(now, &mut NoFrames),
        }
    }

    fn finish(&mut self) {
        match self.ring.as_mut() {
            Some(r) => {
                self.triggers.finish(r);
                self.triggers.ring_stats(r.kept, r.evicted_for_room);
            }
            None => self.triggers.finish(&mut NoFrames),
        }
    }
}
