//! Finding the memcached servers in traffic when no `--target` names them.
//!
//! A server is found *by port* when a flow goes to memcached's default port
//! 11211, and *by protocol* when, within the first payload packets of a
//! flow on any other port, one side sends what parses as a memcached
//! request and the other answers with what parses as a memcached response.
//! Both are needed: many line protocols send words that look like a
//! request, very few also answer in memcached's words. Once an address is
//! found it stays found; later flows to it are not examined.

use super::{binary, detect, Limits, Parse, Proto, RespForm};
use crate::decode::targets::DEFAULT_PORT;
use crate::decode::{Packet, Transport, Ts};
use std::net::SocketAddr;

/// How a server was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Traffic to port 11211.
    Port,
    /// Requests and responses on another port, in this dialect.
    Protocol(Proto),
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Port => "port",
            How::Protocol(_) => "protocol",
        }
    }
}

/// One server found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub addr: SocketAddr,
    pub transport: Transport,
    pub how: How,
}

/// Payload packets examined in each direction of a flow before it is
/// judged not memcached: enough to get past a capture that starts in the
/// middle of a message, few enough to cost nothing on other traffic.
const TRIES: u8 = 4;

/// Flows examined at once; more are counted in `untracked_flows` (a scan
/// of a very busy link must not grow without bound).
pub const MAX_FLOWS: usize = 1 << 16;

/// Servers found and listed at most; more are counted in `over_cap` (each
/// found server becomes a target, and a capture of a hostile network must
/// not grow either list without bound).
pub const MAX_FOUND: usize = 1024;

#[derive(Default)]
struct FlowState {
    /// Per direction (0: low→high address, 1: high→low).
    tries: [u8; 2],
    request: [Option<Proto>; 2],
    response: [bool; 2],
    done: bool,
    /// Time of its last packet, for `Finder::sweep`.
    last: Ts,
}

type FlowId = (SocketAddr, SocketAddr, Transport);

pub struct Finder {
    flows: hashbrown::HashMap<FlowId, FlowState>,
    found: Vec<Found>,
    known: hashbrown::HashSet<(SocketAddr, Transport)>,
    lim: Limits,
    max_flows: usize,
    /// Flows not examined because `max_flows` were already open.
    pub untracked_flows: u64,
    /// Packets that would have added a server after `MAX_FOUND` were
    /// known: on port 11211 (watched anyway) each packet of such a server,
    /// on another port (not watched then) each flow that showed one.
    pub over_cap: u64,
}

impl Default for Finder {
    fn default() -> Self {
        Finder::new()
    }
}

impl Finder {
    /// A finder for a first pass over files: its table grows as needed,
    /// up to `MAX_FLOWS`.
    pub fn new() -> Finder {
        Finder::build(hashbrown::HashMap::new(), MAX_FLOWS)
    }

    /// A finder that examines at most `max_flows` flows at once. The
    /// table is sized up front for twice as many: flows come and go, and
    /// hashbrown reclaims the slots of removed ones in place (without
    /// allocating) only while it is at most half full; so a live
    /// capture's packet path never allocates for it, however long it runs.
    pub fn with_max_flows(max_flows: usize) -> Finder {
        Finder::build(hashbrown::HashMap::with_capacity(2 * max_flows), max_flows)
    }

    fn build(flows: hashbrown::HashMap<FlowId, FlowState>, max_flows: usize) -> Finder {
        Finder {
            flows,
            found: Vec::new(),
            known: hashbrown::HashSet::new(),
            lim: Limits::default(),
            max_flows,
            untracked_flows: 0,
            over_cap: 0,
        }
    }

    /// Bytes the flow table of `with_max_flows(max_flows)` takes.
    pub fn bytes_for(max_flows: usize) -> usize {
        // hashbrown keeps its load at most 7/8, in a power of two of
        // buckets, each a key, a value and a control byte.
        let buckets = (2 * max_flows * 8 / 7).next_power_of_two();
        buckets * (std::mem::size_of::<(FlowId, FlowState)>() + 1)
    }

    /// The servers found so far, in the order they were found.
    pub fn found(&self) -> &[Found] {
        &self.found
    }

    /// Flows being examined now.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Takes a server found elsewhere (another capture thread) as known:
    /// its flows are not examined here, and it is not listed again.
    pub fn know(&mut self, addr: SocketAddr, transport: Transport) {
        if self.known.len() < MAX_FOUND {
            self.known.insert((addr, transport));
        }
    }

    /// The server, when it is new.
    fn add(&mut self, addr: SocketAddr, transport: Transport, how: How) -> Option<Found> {
        if self.known.contains(&(addr, transport)) {
            return None;
        }
        if self.known.len() >= MAX_FOUND {
            self.over_cap += 1;
            return None;
        }
        self.known.insert((addr, transport));
        let f = Found {
            addr,
            transport,
            how,
        };
        self.found.push(f);
        Some(f)
    }

    /// Forgets flows idle for `idle_ns` by `now` (a live capture runs for
    /// ever: flows judged long ago must not fill the table); when the
    /// table is still over three quarters full, also the flows already
    /// judged not memcached. Not per packet: it walks the whole table.
    pub fn sweep(&mut self, now: Ts, idle_ns: u64) {
        let cutoff = now.saturating_sub(idle_ns);
        self.flows.retain(|_, st| st.last >= cutoff);
        if self.flows.len() > self.max_flows / 4 * 3 {
            self.flows.retain(|_, st| !st.done);
        }
    }

    /// Looks at one packet; returns the server it showed, when that is new.
    pub fn packet(&mut self, p: &Packet<'_>) -> Option<Found> {
        let src = SocketAddr::new(p.src, p.sport);
        let dst = SocketAddr::new(p.dst, p.dport);
        // The destination decides when both ends use the port, as in
        // `Targets::classify`.
        if p.dport == DEFAULT_PORT {
            return self.add(dst, p.transport, How::Port);
        }
        if p.sport == DEFAULT_PORT {
            return self.add(src, p.transport, How::Port);
        }
        if p.payload.is_empty()
            || self.known.contains(&(dst, p.transport))
            || self.known.contains(&(src, p.transport))
        {
            return None;
        }
        let (id, dir) = if (p.src, p.sport) <= (p.dst, p.dport) {
            ((src, dst, p.transport), 0)
        } else {
            ((dst, src, p.transport), 1)
        };
        let full = self.flows.len() >= self.max_flows;
        let st = match self.flows.get_mut(&id) {
            Some(st) => st,
            None if full => {
                self.untracked_flows += 1;
                return None;
            }
            None => self.flows.entry(id).or_default(),
        };
        st.last = p.ts;
        if st.done || st.tries[dir] >= TRIES {
            return None;
        }
        st.tries[dir] += 1;
        let msg = match p.transport {
            Transport::Tcp => Some(p.payload),
            Transport::Udp => udp_message(p.payload),
        };
        if let Some(msg) = msg {
            if let Some(proto) = request(msg, &self.lim) {
                st.request[dir].get_or_insert(proto);
            } else if response(msg, &self.lim) {
                st.response[dir] = true;
            }
        }
        // The server is the side that answered.
        let server = match (st.request, st.response) {
            ([Some(proto), _], [_, true]) => Some((id.1, proto)),
            ([_, Some(proto)], [true, _]) => Some((id.0, proto)),
            _ => None,
        };
        if st.tries == [TRIES, TRIES] || server.is_some() {
            st.done = true;
        }
        let (addr, proto) = server?;
        self.flows.remove(&id);
        self.add(addr, p.transport, How::Protocol(proto))
    }
}

/// The message in a memcached UDP datagram: the 8-byte frame header
/// (request id, sequence number, datagram count, reserved zero), and then
/// the message when this is the first datagram of it.
fn udp_message(d: &[u8]) -> Option<&[u8]> {
    let h = d.get(..8)?;
    let seq = u16::from_be_bytes([h[2], h[3]]);
    let total = u16::from_be_bytes([h[4], h[5]]);
    (seq == 0 && total >= 1 && h[6] == 0 && h[7] == 0 && d.len() > 8).then(|| &d[8..])
}

/// The dialect of a whole request at the start of `buf`, or of a binary
/// request whose header alone is plausible (its body may be in the next
/// packets).
fn request(buf: &[u8], lim: &Limits) -> Option<Proto> {
    match detect::parse_request(buf, lim) {
        Parse::Done { msg, .. } => Some(msg.proto),
        Parse::Need(_)
            if buf[0] == binary::MAGIC_REQUEST && binary::plausible_request(buf, lim) =>
        {
            Some(Proto::Binary)
        }
        _ => None,
    }
}

/// Whether `buf` starts with a whole memcached response. A bare number (an
/// incr answer) is too weak a sign on its own.
fn response(buf: &[u8], lim: &Limits) -> bool {
    match detect::parse_response(buf, lim) {
        Parse::Done { msg, .. } => msg.form != RespForm::Number,
        Parse::Need(_) => buf[0] == binary::MAGIC_RESPONSE && binary::plausible_response(buf, lim),
        _ => false,
    }
}

/// The servers of `found` by address, for messages.
pub fn describe(found: &[Found]) -> String {
    let mut s = String::new();
    for (i, f) in found.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&describe_one(f));
    }
    s
}

/// One server found, for messages: `10.0.0.1:22122 (tcp, by protocol: text)`.
pub fn describe_one(f: &Found) -> String {
    let t = match f.transport {
        Transport::Tcp => "tcp",
        Transport::Udp => "udp",
    };
    match f.how {
        How::Port => format!("{} ({t}, by port)", f.addr),
        How::Protocol(p) => format!("{} ({t}, by protocol: {})", f.addr, p.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt<'a>(src: &str, dst: &str, t: Transport, payload: &'a [u8]) -> Packet<'a> {
        crate::decode::test_packet(src, dst, t, payload)
    }

    const C: &str = "10.0.0.9:40000";
    const S: &str = "10.0.0.1:22122";

    #[test]
    fn request_then_response_finds_the_answering_side() {
        let mut f = Finder::new();
        f.packet(&pkt(C, S, Transport::Tcp, b"get user:1\r\n"));
        assert!(f.found().is_empty());
        f.packet(&pkt(S, C, Transport::Tcp, b"END\r\n"));
        assert_eq!(
            f.found(),
            &[Found {
                addr: S.parse().unwrap(),
                transport: Transport::Tcp,
                how: How::Protocol(Proto::Text)
            }]
        );
        assert_eq!(
            describe(f.found()),
            "10.0.0.1:22122 (tcp, by protocol: text)"
        );
    }

    #[test]
    fn default_port_is_found_by_port_either_way() {
        let mut f = Finder::new();
        f.packet(&pkt("10.0.0.1:11211", C, Transport::Udp, b""));
        f.packet(&pkt(C, "10.0.0.2:11211", Transport::Tcp, b""));
        assert_eq!(
            describe(f.found()),
            "10.0.0.1:11211 (udp, by port), 10.0.0.2:11211 (tcp, by port)"
        );
    }

    #[test]
    fn other_protocols_are_not_memcached() {
        let mut f = Finder::new();
        // HTTP: neither a memcached request nor a memcached response.
        for _ in 0..10 {
            f.packet(&pkt(
                C,
                S,
                Transport::Tcp,
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            ));
            f.packet(&pkt(S, C, Transport::Tcp, b"HTTP/1.1 200 OK\r\n\r\n"));
        }
        // A request-looking line answered by something else.
        let other = "10.0.0.1:2525";
        f.packet(&pkt(C, other, Transport::Tcp, b"version\r\n"));
        f.packet(&pkt(other, C, Transport::Tcp, b"220 smtp ready\r\n"));
        assert!(f.found().is_empty());
    }

    #[test]
    fn only_the_first_packets_of_a_flow_are_examined() {
        let mut f = Finder::new();
        for _ in 0..TRIES {
            f.packet(&pkt(C, S, Transport::Tcp, b"\x00\x01junk"));
            f.packet(&pkt(S, C, Transport::Tcp, b"\x00\x02junk"));
        }
        f.packet(&pkt(C, S, Transport::Tcp, b"get k\r\n"));
        f.packet(&pkt(S, C, Transport::Tcp, b"END\r\n"));
        assert!(f.found().is_empty());
    }

    #[test]
    fn udp_needs_the_frame_header_and_binary_its_header() {
        let mut f = Finder::new();
        let mut req = vec![0, 1, 0, 0, 0, 1, 0, 0];
        req.extend_from_slice(b"get k\r\n");
        let mut resp = vec![0, 1, 0, 0, 0, 1, 0, 0];
        resp.extend_from_slice(b"END\r\n");
        // Without the frame header the same bytes are not memcached UDP.
        f.packet(&pkt(C, S, Transport::Udp, b"get k\r\n"));
        f.packet(&pkt(S, C, Transport::Udp, b"END\r\n"));
        assert!(f.found().is_empty());
        f.packet(&pkt(C, S, Transport::Udp, &req));
        f.packet(&pkt(S, C, Transport::Udp, &resp));
        assert_eq!(
            describe(f.found()),
            "10.0.0.1:22122 (udp, by protocol: text)"
        );

        // A binary GET of "k" and its key-not-found answer.
        let mut g = Finder::new();
        let mut get = vec![0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        get.extend_from_slice(&[0; 12]);
        get.push(b'k');
        let mut nf = vec![0x81, 0x00, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9];
        nf.extend_from_slice(&[0; 12]);
        nf.extend_from_slice(b"Not found");
        g.packet(&pkt(C, S, Transport::Tcp, &get));
        g.packet(&pkt(S, C, Transport::Tcp, &nf));
        assert_eq!(
            describe(g.found()),
            "10.0.0.1:22122 (tcp, by protocol: binary)"
        );
    }

    #[test]
    fn a_live_finder_is_bounded_and_forgets_idle_flows() {
        let mut f = Finder::with_max_flows(4);
        let at = |ts, src: &str, dst: &str| {
            let mut p = pkt(src, dst, Transport::Tcp, b"\x16\x03\x01tls");
            p.ts = ts;
            p
        };
        for i in 0..6 {
            let c = format!("10.0.0.9:{}", 40000 + i);
            assert_eq!(f.packet(&at(1, &c, "10.0.0.1:443")), None);
        }
        assert_eq!(f.flows(), 4);
        assert_eq!(f.untracked_flows, 2);
        // Flows not seen for the idle time go; the others stay.
        f.packet(&at(50, "10.0.0.9:40000", "10.0.0.1:443"));
        f.sweep(100, 60);
        assert_eq!(f.flows(), 1);
        // Still over three quarters full: flows already judged go too.
        for _ in 0..TRIES {
            f.packet(&at(100, "10.0.0.9:40000", "10.0.0.1:443"));
            f.packet(&at(100, "10.0.0.1:443", "10.0.0.9:40000"));
        }
        for i in 1..4 {
            let c = format!("10.0.0.9:{}", 41000 + i);
            f.packet(&at(100, &c, "10.0.0.1:443"));
        }
        assert_eq!(f.flows(), 4);
        f.sweep(100, 60);
        assert_eq!(f.flows(), 3);

        // A server another thread found is not found (nor listed) again.
        f.know(S.parse().unwrap(), Transport::Tcp);
        f.packet(&pkt(C, S, Transport::Tcp, b"get k\r\n"));
        assert_eq!(f.packet(&pkt(S, C, Transport::Tcp, b"END\r\n")), None);
        assert!(f.found().is_empty());
        // A new one is returned once.
        let other = "10.0.0.2:22122";
        f.packet(&pkt(C, other, Transport::Tcp, b"get k\r\n"));
        let got = f.packet(&pkt(other, C, Transport::Tcp, b"END\r\n"));
        assert_eq!(got.map(|g| g.addr), Some(other.parse().unwrap()));
        assert_eq!(f.packet(&pkt(C, other, Transport::Tcp, b"get k\r\n")), None);
    }

    #[test]
    fn found_servers_are_capped_and_the_rest_counted() {
        let mut f = Finder::new();
        for i in 0..MAX_FOUND + 3 {
            let dst = format!("10.{}.{}.1:11211", i / 256, i % 256);
            f.packet(&pkt(C, &dst, Transport::Tcp, b""));
        }
        assert_eq!(f.found().len(), MAX_FOUND);
        assert_eq!(f.over_cap, 3);
    }
}
