//! Servers found without `--target`.
//!
//! Files: a first pass over the capture files that only decodes and looks
//! at the first packets of each flow (`protocol::sniff`), so the analysis
//! pass then watches exactly those servers from each flow's first packet,
//! as if they had been named.
//!
//! Live capture cannot read its input twice: each capture thread looks at
//! every packet as it passes ([`LiveFinder`]), and a server found on a
//! port other than 11211 becomes a target of every thread from then on.
//! The thread that found it watches it from the next packet; the others
//! take it up at their next batch, from channels (nothing is locked on the
//! packet path). Flows already running then are taken up in the middle,
//! as a capture started mid-connection is.

use super::cli::CommonArgs;
use crate::capture::file::FileSource;
use crate::config::Config;
use crate::decode::targets::{Target, Targets, DEFAULT_PORT};
use crate::decode::Decoder;
use crate::decode::{Packet, Transport, Ts};
use crate::protocol::sniff::{describe, Finder, Found, How};
use crate::stats::Counters;
use crossbeam_channel::{unbounded, Receiver, Sender};
use ipnet::IpNet;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Exit status of `--strict` when no packet was memcached traffic of a
/// target (1 is an error, 2 a usage error).
pub const NOTHING_MATCHED: u8 = 3;

/// Whether the servers were named (`--target`, or `[[target]]` in the
/// config): then memtap looks for nothing by itself.
pub fn targets_given(common: &CommonArgs, cfg: &Config) -> bool {
    !common.target.is_empty() || !cfg.target.is_empty()
}

/// What the first pass found; `None` when the input cannot be read twice
/// (standard input), where port 11211 alone decides, as before.
pub fn scan(cfg: &Config, files: &[PathBuf]) -> anyhow::Result<Option<Vec<Found>>> {
    if files.iter().any(|f| f.as_os_str() == "-") {
        return Ok(None);
    }
    let mut src = FileSource::open(files)?;
    let mut counters = Counters::default();
    let mut decoder = Decoder::new(cfg.decode_config());
    let mut finder = Finder::new();
    while let Some(frame) = src.next_frame(&mut counters)? {
        if let Some(p) = decoder.decode(&frame, &mut counters) {
            finder.packet(&p);
        }
    }
    let mut found = finder.found().to_vec();
    found.sort_by_key(|f| (f.addr, f.transport == crate::decode::Transport::Udp));
    Ok(Some(found))
}

/// The targets that watch what `found` holds: port 11211 as by default,
/// plus each server found by protocol.
pub fn targets_for(found: &[Found]) -> Targets {
    let mut list = vec![Target {
        net: None,
        port: DEFAULT_PORT,
    }];
    for f in found {
        if let Some(t) = target_of(f) {
            if !list.contains(&t) {
                list.push(t);
            }
        }
    }
    Targets::new(list)
}

/// The target a server found on another port than 11211 adds.
fn target_of(f: &Found) -> Option<Target> {
    match f.how {
        How::Protocol(_) => Some(Target {
            net: Some(IpNet::from(f.addr.ip())),
            port: f.addr.port(),
        }),
        How::Port => None,
    }
}

/// The kernel filter's terms (for untagged frames; `bpf_narrowed` adds
/// the tagged ones) while a live capture looks for servers: every TCP and
/// UDP packet, and the IPv4 fragments, which carry no port.
pub const BPF_ALL: &str = "(tcp or udp or ip[6:2] & 0x1fff != 0)";

/// Flows one capture thread examines at once. The table is allocated
/// whole at the start: about 3 MiB a thread (`Finder::bytes_for`),
/// besides the memory budget.
pub const LIVE_FLOWS: usize = 1 << 13;
/// A flow not seen for this long is forgotten by its finder.
const LIVE_IDLE_NS: u64 = 60_000_000_000;
/// How often a thread sweeps its finder's table (it walks it whole).
const SWEEP_EVERY_NS: u64 = 1_000_000_000;

/// One capture thread's part in finding servers live: its finder (none on
/// a thread that gets its packets from a reader that looks at them), and
/// the targets it watches, kept up to date with what every thread finds.
pub struct LiveFinder {
    finder: Option<Finder>,
    base: Targets,
    /// Targets added by servers found, in the order they were found.
    added: Vec<Target>,
    targets: Targets,
    inbox: Receiver<Found>,
    /// The other threads' inboxes.
    peers: Vec<Sender<Found>>,
    /// To the main thread, which says and lists what was found.
    outbox: Sender<Found>,
    last_sweep: Ts,
}

impl LiveFinder {
    /// What this thread watches now.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Looks at one packet; true when the targets changed (a server found
    /// on another port than 11211): the caller hands them to its engine.
    pub fn packet(&mut self, p: &Packet<'_>) -> bool {
        let Some(f) = self.finder.as_mut().and_then(|fd| fd.packet(p)) else {
            return false;
        };
        // Unbounded channels, bounded in effect: each finder sends each
        // server once, and lists at most `MAX_FOUND`.
        let _ = self.outbox.send(f);
        for peer in &self.peers {
            let _ = peer.send(f);
        }
        self.add(&f)
    }

    fn add(&mut self, f: &Found) -> bool {
        let Some(t) = target_of(f) else {
            return false;
        };
        if self.added.contains(&t) {
            return false;
        }
        self.added.push(t);
        self.rebuild();
        true
    }

    fn rebuild(&mut self) {
        let mut list = self.base.list().to_vec();
        list.extend(self.added.iter().cloned());
        self.targets = Targets::new(list);
    }

    /// Takes up the servers other threads found (once per batch, not per
    /// packet); true when the targets changed.
    pub fn poll(&mut self) -> bool {
        let mut changed = false;
        while let Ok(f) = self.inbox.try_recv() {
            if let Some(fd) = self.finder.as_mut() {
                fd.know(f.addr, f.transport);
            }
            changed |= self.add(&f);
        }
        changed
    }

    /// New base targets (a config reload that still names none).
    pub fn set_base(&mut self, base: Targets) {
        self.base = base;
        self.rebuild();
    }

    /// Once per tick: forgets idle flows now and then, and puts the
    /// finder's counts in `c` (this thread's running totals).
    pub fn tick(&mut self, now: Ts, c: &mut Counters) {
        let Some(fd) = self.finder.as_mut() else {
            return;
        };
        if now.saturating_sub(self.last_sweep) >= SWEEP_EVERY_NS {
            self.last_sweep = now;
            fd.sweep(now, LIVE_IDLE_NS);
        }
        c.discovery_untracked_flows = fd.untracked_flows;
        c.discovery_over_cap = fd.over_cap;
    }
}

/// The main thread's end: every server found, once.
pub struct Hub {
    rx: Receiver<Found>,
    seen: hashbrown::HashSet<(SocketAddr, Transport)>,
    list: Vec<Found>,
}

impl Hub {
    /// The servers found since the last call, each once, in the order
    /// they were found.
    pub fn take(&mut self) -> Vec<Found> {
        let mut fresh = Vec::new();
        while let Ok(f) = self.rx.try_recv() {
            // Each finder lists at most `MAX_FOUND`; so does the run.
            if self.list.len() < crate::protocol::sniff::MAX_FOUND
                && self.seen.insert((f.addr, f.transport))
            {
                self.list.push(f);
                fresh.push(f);
            }
        }
        fresh
    }

    /// Every server found so far, in the report's order (as replay's).
    pub fn found(&self) -> Vec<Found> {
        let mut v = self.list.clone();
        v.sort_by_key(|f| (f.addr, f.transport == Transport::Udp));
        v
    }
}

/// The live finders of `finding` threads that look at packets and of
/// `following` threads that only watch what those find (listed after
/// them), all starting from `base`; and the main thread's hub.
pub fn live_finders(finding: usize, following: usize, base: &Targets) -> (Vec<LiveFinder>, Hub) {
    let (outbox, rx) = unbounded();
    let n = finding + following;
    let inboxes: Vec<(Sender<Found>, Receiver<Found>)> = (0..n).map(|_| unbounded()).collect();
    let finders = inboxes
        .iter()
        .enumerate()
        .map(|(i, (_, inbox))| LiveFinder {
            finder: (i < finding).then(|| Finder::with_max_flows(LIVE_FLOWS)),
            base: base.clone(),
            added: Vec::new(),
            targets: base.clone(),
            inbox: inbox.clone(),
            peers: inboxes
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, (tx, _))| tx.clone())
                .collect(),
            outbox: outbox.clone(),
            last_sweep: 0,
        })
        .collect();
    (
        finders,
        Hub {
            rx,
            seen: hashbrown::HashSet::new(),
            list: Vec::new(),
        },
    )
}

/// The one line said when memtap looked for servers and found none.
fn nothing_found(packets: u64) -> String {
    format!(
        "no memcached traffic in {packets} packets: nothing to port 11211, and no flow whose \
         first packets are memcached requests answered by memcached responses; \
         if the servers are there, name them with --target HOST:PORT"
    )
}

/// A live capture's `nothing_matched`: the input cannot be read again to
/// say which servers it has.
pub fn nothing_matched_live(counters: &Counters, given: bool, targets: &Targets) -> Option<String> {
    if counters.packets == 0 || counters.tcp_segments + counters.udp_datagrams > 0 {
        return None;
    }
    if !given {
        return Some(nothing_found(counters.packets));
    }
    let named: Vec<String> = targets.list().iter().map(|t| t.to_string()).collect();
    Some(format!(
        "no packet of {} matched --target {}; leave out --target to have memtap look for \
         memcached servers",
        counters.packets,
        named.join(" ")
    ))
}

/// The one line said when no packet was memcached traffic of a target,
/// or `None` when some was (or there were no packets at all: the file
/// warnings say that).
pub fn nothing_matched(
    counters: &Counters,
    cfg: &Config,
    files: &[PathBuf],
    given: bool,
    targets: &Targets,
) -> Option<String> {
    if counters.packets == 0 || counters.tcp_segments + counters.udp_datagrams > 0 {
        return None;
    }
    if !given {
        return Some(nothing_found(counters.packets));
    }
    let named: Vec<String> = targets.list().iter().map(|t| t.to_string()).collect();
    // Named servers that saw nothing: say which servers the traffic has.
    let seen = scan(cfg, files).ok().flatten().unwrap_or_default();
    let hint = if seen.is_empty() {
        "no memcached servers found in it either".to_string()
    } else {
        format!(
            "memcached servers in it: {} (leave out --target to watch them)",
            describe(&seen)
        )
    };
    Some(format!(
        "no packet of {} matched --target {}; {hint}",
        counters.packets,
        named.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sniff::describe_one;

    fn pkt<'a>(src: &str, dst: &str, t: Transport, payload: &'a [u8]) -> Packet<'a> {
        Packet {
            ts: 1,
            ..crate::decode::test_packet(src, dst, t, payload)
        }
    }

    #[test]
    fn what_one_thread_finds_every_thread_watches_and_the_hub_says_once() {
        let base = Targets::default();
        let (mut fs, mut hub) = live_finders(2, 1, &base);
        let (c, s) = ("10.0.0.9:40000", "10.0.0.1:22122");
        let watched = |f: &LiveFinder| {
            f.targets()
                .classify(
                    "10.0.0.9".parse().unwrap(),
                    40000,
                    "10.0.0.1".parse().unwrap(),
                    22122,
                )
                .is_some()
        };
        assert!(!fs[0].packet(&pkt(c, s, Transport::Tcp, b"get k\r\n")));
        assert!(fs[0].packet(&pkt(s, c, Transport::Tcp, b"END\r\n")));
        assert!(watched(&fs[0]));
        // The others at their next batch; the follower never looks itself.
        assert!(!watched(&fs[1]) && !watched(&fs[2]));
        assert!(fs[1].poll() && fs[2].poll());
        assert!(watched(&fs[1]) && watched(&fs[2]));
        assert!(!fs[1].poll());
        // Thread 1 knows it now: its own flows to it find nothing new.
        fs[1].packet(&pkt(c, s, Transport::Tcp, b"get k\r\n"));
        assert!(!fs[1].packet(&pkt(s, c, Transport::Tcp, b"END\r\n")));
        // Port 11211 changes no targets (watched already), but is listed;
        // two threads finding one server make one line.
        let d = "10.0.0.2:11211";
        assert!(!fs[0].packet(&pkt(c, d, Transport::Udp, b"")));
        assert!(!fs[1].packet(&pkt(c, d, Transport::Udp, b"")));
        let said: Vec<String> = hub.take().iter().map(describe_one).collect();
        assert_eq!(
            said,
            [
                "10.0.0.1:22122 (tcp, by protocol: text)",
                "10.0.0.2:11211 (udp, by port)"
            ]
        );
        assert!(hub.take().is_empty());
        // A reload keeps what was found on its new base.
        fs[2].set_base(Targets::new(vec!["*:11300".parse().unwrap()]));
        assert!(watched(&fs[2]));
        assert_eq!(fs[2].targets().list().len(), 2);
        let mut c = Counters::default();
        fs[0].tick(2_000_000_000, &mut c);
        assert_eq!(c.discovery_untracked_flows, 0);
    }

    #[test]
    fn a_live_finder_table_is_the_3_mib_the_docs_say() {
        // docs/commands.md: "about 3 MiB a thread".
        assert_eq!(Finder::bytes_for(LIVE_FLOWS), 32_768 * 89);
    }
}
