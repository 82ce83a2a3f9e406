//! The per-packet path of one thread: decoded packet → flow → reassembly →
//! session → records. Sans-IO: time is the packet's timestamp, and the
//! engine owns all its state, so several engines (one per worker) never
//! share anything.

use super::conn::{Emitting, Session};
use super::record::RecordSink;
use super::udp::{UdpConfig, UdpTable};
use crate::decode::targets::{Side, Targets};
use crate::decode::{Packet, Transport, Ts};
use crate::protocol::Limits;
use crate::reassembly::flows::{FlowKey, FlowTable};
use crate::reassembly::tcp::{Budget, TcpConfig, TcpConn};
use crate::reassembly::{Dir, SegInfo};
use crate::stats::{Counters, Warnings};
use std::net::SocketAddr;

/// Counters whose offenders are worth naming (frame and flow) in warnings:
/// their names, and the sum of each over the engine's and a session's
/// counters (fields read directly: this runs twice a segment). A TCP
/// segment moves only the first list: the `udp_*` counters belong to the
/// UDP table, which TCP never reaches, so TCP reads 7 fields fewer.
macro_rules! watched_counters {
    (tcp: $($t:ident),+; udp: $($u:ident),+ $(,)?) => {
        const TCP_WATCHED: &[&str] = &[$(stringify!($t)),+];
        const UDP_WATCHED: &[&str] = &[$(stringify!($t)),+, $(stringify!($u)),+];
        #[inline]
        fn watched_tcp(a: &Counters, b: &Counters) -> [u64; TCP_WATCHED.len()] {
            [$(a.$t.wrapping_add(b.$t)),+]
        }
        #[inline]
        fn watched_udp(a: &Counters, b: &Counters) -> [u64; UDP_WATCHED.len()] {
            [$(a.$t.wrapping_add(b.$t)),+, $(a.$u.wrapping_add(b.$u)),+]
        }
    };
}
watched_counters!(
    tcp:
    tcp_gaps,
    tcp_ooo_budget_gaps,
    tcp_resync_skipped_bytes,
    tcp_bad_seq,
    tcp_flow_table_full,
    orphan_responses,
    bad_requests,
    bad_responses,
    unknown_commands,
    pending_overflow;
    udp:
    udp_orphan_responses,
    udp_bad_frame,
    udp_multi_datagram_requests,
    udp_pending_overflow,
    udp_bad_seq,
    udp_hold_full,
    udp_unassembled_bytes,
);

/// Names the packet in a warning for each watched counter (`names`) that
/// grew.
fn note_changes<const N: usize>(
    warnings: &mut Warnings,
    names: &[&'static str],
    before: &[u64; N],
    after: &[u64; N],
    p: &Packet<'_>,
) {
    for (i, name) in names.iter().enumerate() {
        if after[i] > before[i] {
            let d = after[i] - before[i];
            warnings.note(name, p.frame_no, || {
                format!(
                    "{}:{} > {}:{} ({}): +{d}",
                    p.src,
                    p.sport,
                    p.dst,
                    p.dport,
                    p.transport.as_str()
                )
            });
        }
    }
}

/// Whether any watched counter moved. Counters only grow, so equal sums
/// mean equal counters: one pass of adds, where comparing the arrays was
/// a memcmp (then a loop) per segment, 2-4 % of a worker's time.
#[inline]
fn moved<const N: usize>(before: &[u64; N], after: &[u64; N]) -> bool {
    let sum = |v: &[u64; N]| v.iter().fold(0u64, |s, &x| s.wrapping_add(x));
    sum(before) != sum(after)
}

/// One segment through a known connection; true when it closed it.
fn feed(
    conn: &mut Conn,
    p: &Packet<'_>,
    dir: Dir,
    budget: &mut Budget,
    counters: &mut Counters,
    warnings: &mut Warnings,
    sink: &mut dyn RecordSink,
) -> bool {
    let before = watched_tcp(counters, &conn.session.counters);
    conn.tcp.segment_wire(
        dir,
        &p.tcp,
        p.payload,
        p.wire_payload_len,
        p.ts,
        p.frame_no,
        &mut Emitting {
            session: &mut conn.session,
            sink: &mut *sink,
        },
        budget,
        counters,
    );
    conn.session.emit(sink);
    let after = watched_tcp(counters, &conn.session.counters);
    if moved(&before, &after) {
        note_changes(warnings, TCP_WATCHED, &before, &after, p);
    }
    conn.tcp.is_closed()
}

/// Bounds and timers of one engine. Built from the config file by
/// `EngineConfig::from_config` (in `config.rs`, so that this stage does not
/// depend on the application's config model).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub limits: Limits,
    pub max_pending_per_conn: usize,
    pub tcp: TcpConfig,
    pub max_flows: usize,
    pub idle_timeout_ns: u64,
    pub max_ooo_total: u64,
    pub udp_timeout_ns: u64,
    pub udp_max_pending: usize,
    pub udp_hold_ns: u64,
    pub udp_max_held: usize,
    pub udp_max_buffered: usize,
    /// Capacity of all TCP carries together (`budget_shed_carry_bytes`).
    pub max_carry_total: u64,
    /// Pending-request entries of all sessions together
    /// (`budget_shed_requests`).
    pub max_requests: usize,
    /// Capacity of all UDP exchanges' carries together.
    pub udp_max_carry_total: usize,
}

/// A TCP connection: its two byte streams and the conversation on them.
pub struct Conn {
    tcp: TcpConn,
    session: Session,
}

pub struct Engine {
    cfg: EngineConfig,
    targets: Targets,
    /// Boxed: a table slot is then a key and a pointer, and the slack of
    /// the hash table costs little per flow.
    flows: FlowTable<Box<Conn>>,
    udp: UdpTable,
    budget: Budget,
    /// The pending-request budget every session draws on.
    requests: super::pending::Pool,
    counters: Counters,
    warnings: Warnings,
    last_ts: Ts,
    /// Connections closed in the last `LINGER_NS`: stragglers of theirs
    /// must not open phantom mid-stream connections.
    recently_closed: hashbrown::HashMap<FlowKey, Ts>,
}

/// How long a closed connection's stragglers are recognised.
const LINGER_NS: u64 = 2_000_000_000;
/// Bound on remembered closed connections.
const LINGER_CAP: usize = 65_536;

impl Engine {
    /// Bytes one TCP connection costs (see `budget::Costs::flow`).
    pub fn bytes_per_flow() -> usize {
        // The allocator rounds a block up by up to 16 bytes.
        FlowTable::<Box<Conn>>::bytes_per_flow()
            + std::mem::size_of::<Conn>()
            + 16
            + (std::mem::size_of::<(FlowKey, Ts)>() + 1) * 16 / 7
            + super::pending::FREE_ENTRIES * std::mem::size_of::<super::pending::Pending>()
    }

    pub fn new(cfg: EngineConfig, targets: Targets) -> Engine {
        // The budget's request part is stated in entries; the pool draws
        // bytes (entries, key slots and key bytes).
        let requests = super::pending::Pool::new(
            cfg.max_requests
                .saturating_mul(std::mem::size_of::<super::pending::Pending>()),
        );
        Engine {
            flows: FlowTable::new(cfg.max_flows, cfg.idle_timeout_ns),
            udp: UdpTable::new(
                cfg.limits,
                UdpConfig {
                    max_pending: cfg.udp_max_pending,
                    timeout_ns: cfg.udp_timeout_ns,
                    max_carry: cfg.tcp.max_carry,
                    hold_ns: cfg.udp_hold_ns,
                    max_held: cfg.udp_max_held,
                    max_buffered: cfg.udp_max_buffered,
                    // `udp.hold_ms = 0` turns the mirror-order handling off.
                    linger_datagrams: if cfg.udp_hold_ns > 0 {
                        super::udp::LINGER_DATAGRAMS
                    } else {
                        0
                    },
                    max_carry_total: cfg.udp_max_carry_total,
                },
            )
            .with_request_pool(requests.clone()),
            budget: Budget::with_carry(cfg.max_ooo_total, cfg.max_carry_total),
            requests,
            counters: Counters::default(),
            warnings: Warnings::default(),
            last_ts: 0,
            recently_closed: hashbrown::HashMap::new(),
            targets,
            cfg,
        }
    }

    /// Counters of this engine, including those of live sessions.
    /// New targets (config reload). Connections already tracked keep
    /// their roles; new ones are classified by the new list.
    pub fn set_targets(&mut self, targets: Targets) {
        self.targets = targets;
    }

    /// TCP connections tracked plus UDP exchanges awaiting an answer now.
    pub fn active_flows(&self) -> u64 {
        (self.flows.len() + self.udp.len()) as u64
    }

    pub fn counters(&self) -> Counters {
        let mut c = self.counters.clone();
        c.add(&self.udp.counters);
        self.flows.for_each(|_, conn| c.add(&conn.session.counters));
        c
    }

    /// The first offenders of each kind, by frame and flow.
    pub fn warnings(&self) -> &Warnings {
        &self.warnings
    }

    pub fn packet(&mut self, p: &Packet<'_>, sink: &mut dyn RecordSink) {
        let Some(mut side) = self.targets.classify(p.src, p.sport, p.dst, p.dport) else {
            self.counters.not_target += 1;
            return;
        };
        if side == Side::ToServer
            && p.transport == Transport::Udp
            && self
                .targets
                .classify(p.src, p.sport, p.src, p.sport)
                .is_some()
        {
            // Both ends look like targets (same port both ways): each
            // datagram stands alone, so its payload decides. (A TCP stream
            // cannot be judged packet by packet; its destination decides.)
            side = guess_side(p);
        }
        // Packet time only moves forward for the timers, even when a
        // capture's timestamps step back.
        if p.ts > self.last_ts {
            self.last_ts = p.ts;
        }
        // Every packet runs every timer on the engine's packet time, TCP's
        // and UDP's alike, as a tick does: otherwise a UDP exchange timed
        // out, or an idle connection evicted (its held bytes delivered
        // then), at a time that depended on whether a tick (every batch
        // boundary in replay) came between two packets. (The TCP path
        // sweeps the connections itself.)
        let now = self.last_ts;
        if p.transport == Transport::Udp {
            self.sweep(now, sink);
        }
        self.udp.sweep(now, sink);
        let (client, server) = match side {
            Side::ToServer => (
                SocketAddr::new(p.src, p.sport),
                SocketAddr::new(p.dst, p.dport),
            ),
            Side::FromServer => (
                SocketAddr::new(p.dst, p.dport),
                SocketAddr::new(p.src, p.sport),
            ),
        };
        let dir = match side {
            Side::ToServer => Dir::Request,
            Side::FromServer => Dir::Response,
        };
        match p.transport {
            Transport::Udp => {
                self.counters.udp_datagrams += 1;
                let info = SegInfo {
                    ts: p.ts,
                    frame_no: p.frame_no,
                    peer_acked: None,
                };
                let before = watched_udp(&self.counters, &self.udp.counters);
                match dir {
                    Dir::Request => self.udp.request(client, server, p.payload, &info, sink),
                    Dir::Response => self.udp.response(client, server, p.payload, &info, sink),
                }
                let after = watched_udp(&self.counters, &self.udp.counters);
                if moved(&before, &after) {
                    note_changes(&mut self.warnings, UDP_WATCHED, &before, &after, p);
                }
            }
            Transport::Tcp => self.tcp(p, dir, client, server, sink),
        }
    }

    fn tcp(
        &mut self,
        p: &Packet<'_>,
        dir: Dir,
        client: SocketAddr,
        server: SocketAddr,
        sink: &mut dyn RecordSink,
    ) {
        self.counters.tcp_segments += 1;
        let now = self.last_ts;
        self.sweep(now, sink);
        let key = FlowKey::new(client.ip(), client.port(), server.ip(), server.port());
        if let Some(conn) = self.flows.get_mut(&key, now) {
            // The common case, one lookup: a packet of a known connection.
            if !conn.tcp.is_new_syn(&p.tcp) {
                let closed = feed(
                    conn,
                    p,
                    dir,
                    &mut self.budget,
                    &mut self.counters,
                    &mut self.warnings,
                    sink,
                );
                if closed {
                    self.close_flow(key, now, sink);
                }
                return;
            }
            {
                // Port reuse before the old connection was seen to close.
                if let Some(mut old) = self.flows.remove(&key) {
                    let mut h = Emitting {
                        session: &mut old.session,
                        sink: &mut *sink,
                    };
                    old.tcp
                        .flush(now, &mut h, &mut self.budget, &mut self.counters);
                    old.session.finish(sink);
                    self.counters.add(&old.session.counters);
                    self.counters.tcp_closed += 1;
                }
            }
        } else if p.payload.is_empty() && !p.tcp.syn {
            // A bare ACK/FIN/RST of a connection already closed (or never
            // seen carrying data) starts nothing.
            return;
        } else if !p.tcp.syn {
            if let Some(&t) = self.recently_closed.get(&key) {
                if now.saturating_sub(t) <= LINGER_NS {
                    self.counters.tcp_after_close += 1;
                    return;
                }
            }
        }
        let cfg = &self.cfg;
        let requests = &self.requests;
        let counters = &mut self.counters;
        let mut created = false;
        let conn = self.flows.get_or_insert_with(key, now, counters, || {
            created = true;
            // A connection whose first packet is its SYN is seen whole;
            // anything else started before the capture.
            let whole = p.tcp.syn;
            Box::new(Conn {
                tcp: TcpConn::new(cfg.tcp),
                session: Session::new(
                    client,
                    server,
                    Transport::Tcp,
                    whole,
                    cfg.limits,
                    cfg.max_pending_per_conn,
                    requests.clone(),
                ),
            })
        });
        let Some(conn) = conn else {
            return;
        };
        if created {
            self.counters.tcp_flows += 1;
        }
        let closed = feed(
            conn,
            p,
            dir,
            &mut self.budget,
            &mut self.counters,
            &mut self.warnings,
            sink,
        );
        if closed {
            self.close_flow(key, now, sink);
        }
    }

    fn close_flow(&mut self, key: FlowKey, now: Ts, sink: &mut dyn RecordSink) {
        self.counters.tcp_closed += 1;
        self.remember_closed(key, now);
        if let Some(mut conn) = self.flows.remove(&key) {
            conn.session.finish(sink);
            self.counters.add(&conn.session.counters);
        }
    }

    fn remember_closed(&mut self, key: FlowKey, now: Ts) {
        // As many as the flow table holds: the budget counts one slot here
        // per flow.
        let cap = LINGER_CAP.min(self.cfg.max_flows);
        if self.recently_closed.len() >= cap {
            self.recently_closed
                .retain(|_, t| now.saturating_sub(*t) <= LINGER_NS);
            if self.recently_closed.len() >= cap {
                // A storm of short connections: forget rather than grow.
                self.recently_closed.clear();
            }
        }
        self.recently_closed.insert(key, now);
    }

    /// Idle connections and UDP exchanges time out on packet time.
    fn sweep(&mut self, now: Ts, sink: &mut dyn RecordSink) {
        let budget = &mut self.budget;
        let counters = &mut self.counters;
        let swept = self.flows.sweep(now, |_, mut conn: Box<Conn>| {
            let mut h = Emitting {
                session: &mut conn.session,
                sink: &mut *sink,
            };
            conn.tcp.flush(now, &mut h, budget, counters);
            conn.session.finish(sink);
            counters.add(&conn.session.counters);
        });
        if swept {
            // Once a second: holes and causal waits of connections that
            // went quiet run out on packet time too, not only at their
            // next packet.
            self.flows.for_each_mut(|_, conn| {
                if conn.tcp.is_waiting() {
                    let mut h = Emitting {
                        session: &mut conn.session,
                        sink: &mut *sink,
                    };
                    conn.tcp.check_timeouts(now, &mut h, budget, counters);
                    conn.session.emit(sink);
                }
            });
        }
    }

    /// Moves packet time forward without a packet (a reader's tick, or an
    /// idle interface), so idle connections and UDP exchanges still time
    /// out.
    pub fn advance(&mut self, now: Ts, sink: &mut dyn RecordSink) {
        if now > self.last_ts {
            self.last_ts = now;
        }
        let now = self.last_ts;
        self.sweep(now, sink);
        self.udp.sweep(now, sink);
    }

    /// Packet time this engine has reached.
    pub fn now(&self) -> Ts {
        self.last_ts
    }

    /// End of input: every hole is declared, every open request resolved.
    pub fn finish(&mut self, sink: &mut dyn RecordSink) {
        self.flows.report(&mut self.counters);
        let now = self.last_ts;
        let budget = &mut self.budget;
        let counters = &mut self.counters;
        self.flows.drain_all(|_, mut conn: Box<Conn>| {
            let mut h = Emitting {
                session: &mut conn.session,
                sink: &mut *sink,
            };
            conn.tcp.flush(now, &mut h, budget, counters);
            conn.session.finish(sink);
            counters.add(&conn.session.counters);
        });
        self.udp.finish(sink);
    }
}

/// Direction of a packet whose both ends match a target: a payload that
/// parses as a response (and not as a request) is a response.
fn guess_side(p: &Packet<'_>) -> Side {
    use crate::protocol::detect::{parse_request, parse_response};
    use crate::protocol::{Limits, Parse};
    let body = match p.transport {
        Transport::Udp => p.payload.get(8..).unwrap_or(&[]),
        Transport::Tcp => p.payload,
    };
    let lim = Limits::default();
    let is_resp = !matches!(parse_response(body, &lim), Parse::Bad(_));
    let is_req = !matches!(parse_request(body, &lim), Parse::Bad(_));
    if is_resp && !is_req {
        Side::FromServer
    } else {
        Side::ToServer
    }
}
