//! Every counter of input memtap gives up, and of work it did, in one place.
//!
//! Each stage owns a section. A counter is a plain `u64` bumped inline by
//! the thread that owns the state (no atomics on the packet path); blocks
//! from several threads are merged with `Counters::add`.

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident ),* $(,)?) => {
        /// Counters of one pipeline (or the sum of several).
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct Counters {
            $( $(#[doc = $doc])* pub $name: u64, )*
        }

        impl Counters {
            /// Every counter with its name, in declaration order.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                [$( (stringify!($name), self.$name) ),*].into_iter()
            }

            /// Adds another block into this one.
            pub fn add(&mut self, o: &Counters) {
                $( self.$name += o.$name; )*
            }

            /// What this block counted beyond `o` (an earlier reading of
            /// the same running totals), field by field, never below 0.
            pub fn since(&self, o: &Counters) -> Counters {
                Counters { $( $name: self.$name.saturating_sub(o.$name), )* }
            }
        }
    };
}

counters! {
    // ---- capture ----
    /// Frames read from the input.
    packets,
    /// Bytes of frames read (captured length).
    bytes,
    /// Input files opened.
    files,
    /// Frames whose captured length is below their wire length (snap length).
    snaplen_truncated,
    /// Files that ended in the middle of a record (truncated capture).
    truncated_files,
    /// Unreadable or corrupt capture blocks skipped.
    capture_errors,
    /// Bytes of legacy pcap files passed over after a corrupt record
    /// header, up to the next plausible record or the end of the file.
    capture_skipped_bytes,
    /// Frames on interfaces with a link type memtap does not decode.
    unsupported_linktype,
    /// Live capture: packets the kernel dropped because a ring or buffer
    /// was full (AF_PACKET `tp_drops`, libpcap `ps_drop`).
    kernel_drops,
    /// Live capture: packets the interface or driver dropped (libpcap
    /// `ps_ifdrop`).
    if_drops,
    /// Live capture: times an AF_PACKET ring was found full and frozen
    /// (`tp_freeze_q_cnt`).
    ring_freezes,
    /// Live capture on a loopback interface: outgoing copies skipped (each
    /// packet is seen leaving and arriving; it is counted once).
    loopback_duplicates,
    /// Live capture: packet batches a worker dropped because its channel
    /// was full (software fanout only; capture never waits).
    packet_batches_dropped,
    /// Live capture: packets in those batches.
    packets_dropped,

    // ---- decode ----
    /// Frames that are not IPv4/IPv6 (ARP, LLDP, ...).
    non_ip,
    /// Frames whose link/IP/transport headers are malformed or cut short.
    decode_errors,
    /// IP packets that are neither TCP nor UDP.
    non_tcp_udp,
    /// TCP/UDP packets not to or from a watched target.
    not_target,
    /// Live capture without `--target`: flows not examined for memcached
    /// because each capture thread's table of flows being examined was full.
    discovery_untracked_flows,
    /// Live capture without `--target`: packets that would have added a
    /// server once 1024 were known (on port 11211 each such server's
    /// packets, still watched; elsewhere each flow that showed one, not
    /// watched).
    discovery_over_cap,
    /// IPv4 fragments seen.
    ip_fragments,
    /// Datagrams rebuilt from IPv4 fragments.
    ip_reassembled,
    /// Fragments given up: reassembly timed out or lost pieces.
    ip_frag_timeout,
    /// Fragments given up: the fragment pool's byte or entry budget was full.
    ip_frag_overflow,
    /// Fragments given up: overlapping or inconsistent pieces.
    ip_frag_bad,
    /// IPv6 fragments (not reassembled; counted and skipped).
    ipv6_fragments,

    // ---- TCP reassembly ----
    /// TCP segments of watched connections.
    tcp_segments,
    /// TCP connections tracked.
    tcp_flows,
    /// Connections first seen without their SYN (capture started mid-stream).
    tcp_midstream,
    /// Connections closed by FIN or RST.
    tcp_closed,
    /// Connections evicted after the idle timeout.
    tcp_evicted_idle,
    /// New connections refused because the flow table was full.
    tcp_flow_table_full,
    /// Segments that arrived ahead of a hole and were buffered.
    tcp_ooo_segments,
    /// Bytes already seen again (retransmissions, overlaps).
    tcp_retransmit_bytes,
    /// Out-of-order bytes dropped because a per-flow or global budget was full.
    tcp_ooo_dropped_bytes,
    /// Holes declared in a byte stream (lost segments).
    tcp_gaps,
    /// Bytes missing in those holes.
    tcp_gap_bytes,
    /// Bytes skipped before the first message boundary (mid-stream start, resync).
    tcp_resync_skipped_bytes,
    /// Segments ignored as outside any plausible window (bogus sequence).
    tcp_bad_seq,
    /// Data segments that arrived just after their connection closed (a
    /// reply overtaken by the peer's RST); ignored rather than taken for a
    /// new connection.
    tcp_after_close,
    /// Holes given up early because an out-of-order budget (per flow or global) was full.
    tcp_ooo_budget_gaps,
    /// Segments held back because they acknowledge bytes of the other
    /// direction not seen yet (a mirror showed a reply before its request).
    tcp_causal_held,
    /// Causal waits that ran out (packet time, or the connection ended):
    /// the held bytes were delivered in capture order.
    tcp_causal_wait_expired,
    /// Causal waits cut short because an out-of-order budget was full.
    tcp_causal_budget_released,

    // ---- UDP ----
    /// UDP datagrams to or from a target.
    udp_datagrams,
    /// UDP datagrams shorter than memcached's 8-byte frame header.
    udp_bad_frame,
    /// UDP requests that span several datagrams (memcached rejects them).
    udp_multi_datagram_requests,
    /// UDP response datagrams that met no request: not claimed within the
    /// hold time (`udp.hold_ms`), still held at end of input, or not held
    /// at all (hold full or disabled).
    udp_orphan_responses,
    /// UDP request datagrams seen again, byte for byte, within 2 ms of the
    /// first, while its exchange was open and no later than its first
    /// response datagram (a duplicate copy, not a new request): ignored.
    udp_duplicate_requests,
    /// UDP response datagrams seen again, byte for byte, in their open or
    /// lingering exchange (a mirror's or the network's copy): ignored.
    udp_duplicate_responses,
    /// UDP requests whose answer did not complete before the timeout.
    udp_timeouts,
    /// UDP requests dropped because the pending table was full.
    udp_pending_overflow,
    /// UDP response datagrams whose sequence number is not below their
    /// total (malformed frame header; ignored).
    udp_bad_seq,
    /// UDP response datagrams that arrived before their request, were held
    /// and then paired with it.
    udp_held_responses,
    /// UDP response datagrams not held for their request because the hold
    /// was full (`udp.max_held`, `udp.max_buffered_bytes`); also counted in
    /// `udp_orphan_responses`.
    udp_hold_full,
    /// UDP response bytes given up before they could be put in order: parts
    /// of a multi-datagram message whose missing piece never came (the
    /// exchange timed out or ended), or beyond the per-exchange
    /// (`tcp.max_carry_bytes`) or table (`udp.max_buffered_bytes`) bound.
    udp_unassembled_bytes,

    // ---- protocol and pairing ----
    /// Records emitted (one per key-request).
    records,
    /// Requests recorded as lost (the answer fell into a gap or never came).
    lost_requests,
    /// Responses that matched no request and were discarded. A response
    /// counts once however many lines it has: the `VALUE` blocks of a
    /// retrieval or the `STAT` lines of a listing, up to their `END`.
    orphan_responses,
    /// Requests given up (recorded as lost) because a connection's pending
    /// queue was full (`tcp.max_pending_per_conn` key-requests open at
    /// once); their answers are still recognised as theirs.
    pending_overflow,
    /// Connections given up for the rest of their life by a limit: more
    /// answers were owed than memtap could keep track of, so later
    /// answers could not be told from those of requests it dropped; their
    /// later requests are recorded lost and their responses counted as
    /// orphans, never paired by guesswork.
    conns_given_up,
    /// `get`/`gets` lines too long to hold whole (over 2048 bytes without
    /// their newline, or over `protocol.max_line_bytes`), read key by key
    /// as memcached reads them.
    long_multigets,
    /// Unknown commands (counted, not fatal).
    unknown_commands,
    /// Request lines or packets that could not be parsed.
    bad_requests,
    /// Response lines or packets that could not be parsed.
    bad_responses,
    /// Text/meta lines over the length limit.
    line_too_long,
    /// Declared lengths over the sanity limit.
    length_too_large,
    /// Meta keys with invalid base64.
    bad_base64,
    /// Bytes of value blocks lost inside holes but skipped by length.
    value_gap_bytes,
    /// Keys longer than memcached's 250-byte limit, kept truncated.
    keys_truncated,

    // ---- memory budget ([limits] memory) ----
    /// Bytes of partial messages (a line or header split across segments
    /// or datagrams) given up because the worker's share for carried
    /// bytes was spent; the stream resynchronises after them.
    budget_shed_carry_bytes,
    /// Requests given up (recorded as lost) because the worker's share for
    /// pending requests was spent; also counted in `lost_requests`.
    budget_shed_requests,

    // ---- collect ----
    /// Live capture: record batches dropped because a collector's channel
    /// was full while the worker's ring or packet channel was past half
    /// full (then it does not wait for a collector).
    record_batches_dropped,
    /// Live capture: records in those batches.
    records_dropped,
    /// Live capture: record batches that waited for room in a collector's
    /// channel while the buffer in front of their worker (its ring or
    /// packet channel) was under half full, and got it: a burst the
    /// collectors could not take at once, absorbed, nothing lost.
    record_batches_waited,
}

/// The first few offenders of each kind of input given up, by frame number
/// and flow, and a count of the rest — enough to go and look at them with
/// a packet tool, bounded however bad the input is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings {
    kinds: Vec<WarningKind>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct WarningKind {
    name: &'static str,
    /// (frame number, message), the earliest first.
    first: Vec<(u64, String)>,
    more: u64,
}

/// Offenders kept per kind.
pub const WARNINGS_PER_KIND: usize = 5;

impl Warnings {
    /// Notes an offender; `msg` is only built for the first few.
    pub fn note(&mut self, name: &'static str, frame: u64, msg: impl FnOnce() -> String) {
        let k = match self.kinds.iter_mut().position(|k| k.name == name) {
            Some(i) => &mut self.kinds[i],
            None => {
                self.kinds.push(WarningKind {
                    name,
                    first: Vec::new(),
                    more: 0,
                });
                self.kinds.last_mut().expect("just pushed")
            }
        };
        if k.first.len() < WARNINGS_PER_KIND {
            k.first.push((frame, msg()));
        } else {
            k.more += 1;
        }
    }

    /// Folds another thread's warnings in, keeping the earliest frames.
    pub fn merge(&mut self, o: &Warnings) {
        for ok in &o.kinds {
            let k = match self.kinds.iter_mut().position(|k| k.name == ok.name) {
                Some(i) => &mut self.kinds[i],
                None => {
                    self.kinds.push(WarningKind {
                        name: ok.name,
                        first: Vec::new(),
                        more: 0,
                    });
                    self.kinds.last_mut().expect("just pushed")
                }
            };
            k.first.extend(ok.first.iter().cloned());
            k.first.sort();
            let extra = k.first.len().saturating_sub(WARNINGS_PER_KIND);
            k.first.truncate(WARNINGS_PER_KIND);
            k.more += ok.more + extra as u64;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// One line per offender, then one per kind with more, sorted by kind.
    pub fn lines(&self) -> Vec<String> {
        let mut kinds: Vec<&WarningKind> = self.kinds.iter().collect();
        kinds.sort_by_key(|k| k.name);
        let mut out = Vec::new();
        for k in kinds {
            for (frame, m) in &k.first {
                out.push(format!("{}: frame {frame}: {m}", k.name));
            }
            if k.more > 0 {
                out.push(format!("{}: {} more not shown", k.name, k.more));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_keep_the_first_few_and_count_the_rest() {
        let mut a = Warnings::default();
        for f in 1..=7 {
            a.note("tcp_gaps", f * 10, || format!("gap {f}"));
        }
        a.note("bad_requests", 3, || "junk".into());
        let mut b = Warnings::default();
        b.note("tcp_gaps", 5, || "early gap".into());
        a.merge(&b);
        assert_eq!(
            a.lines(),
            vec![
                "bad_requests: frame 3: junk",
                "tcp_gaps: frame 5: early gap",
                "tcp_gaps: frame 10: gap 1",
                "tcp_gaps: frame 20: gap 2",
                "tcp_gaps: frame 30: gap 3",
                "tcp_gaps: frame 40: gap 4",
                "tcp_gaps: 3 more not shown",
            ]
        );
    }
}
