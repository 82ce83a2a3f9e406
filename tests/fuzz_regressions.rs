//! Inputs the coverage-guided fuzz targets (fuzz/, `scripts/fuzz.sh`)
//! found to break an invariant, reduced to the packets or records that
//! matter, each with the exact outcome the fix gives.

use memtap::config::Config;
use memtap::decode::targets::{Target, Targets};
use memtap::decode::{Packet, TcpInfo, Transport};
use memtap::protocol::Outcome;
use memtap::session::{Engine, EngineConfig, Record};
use std::net::{IpAddr, Ipv4Addr};

const T0: u64 = 1_700_000_000_000_000_000;
const MS: u64 = 1_000_000;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

struct Pkt {
    ts: u64,
    client: u16,
    to_server: bool,
    udp: bool,
    tcp: TcpInfo,
    payload: Vec<u8>,
}

fn udp_request(ts: u64, client: u16, req_id: u16, body: &[u8]) -> Pkt {
    let mut payload = req_id.to_be_bytes().to_vec();
    payload.extend_from_slice(&[0, 0, 0, 1, 0, 0]);
    payload.extend_from_slice(body);
    Pkt {
        ts,
        client,
        to_server: true,
        udp: true,
        tcp: TcpInfo::default(),
        payload,
    }
}

/// (time, client port, key, outcome) of a record.
type Rec = (u64, u16, Option<Vec<u8>>, Outcome);

/// (record, key) of every record, from one engine, ticked at the packet
/// time reached after every packet when `tick` (as the replay pipeline does
/// at the end of each batch).
fn replay(pkts: &[Pkt], tick: bool) -> (Vec<Rec>, Engine) {
    let targets = Targets::new(vec!["*:11211".parse::<Target>().unwrap()]);
    let mut e = Engine::new(EngineConfig::from_config(&Config::default()), targets);
    let mut out = Vec::new();
    let mut sink = |r: &Record<'_>| {
        out.push((r.ts, r.client.port(), r.key.map(|k| k.to_vec()), r.result));
    };
    for (i, p) in pkts.iter().enumerate() {
        let (src, sport, dst, dport) = if p.to_server {
            (ip(2), p.client, ip(1), 11211)
        } else {
            (ip(1), 11211, ip(2), p.client)
        };
        let pk = Packet {
            ts: p.ts,
            frame_no: i as u64 + 1,
            src,
            dst,
            sport,
            dport,
            transport: if p.udp {
                Transport::Udp
            } else {
                Transport::Tcp
            },
            tcp: p.tcp,
            payload: &p.payload,
            truncated: false,
            wire_payload_len: p.payload.len(),
        };
        e.packet(&pk, &mut sink);
        if tick {
            let now = e.now();
            e.advance(now, &mut sink);
        }
    }
    e.finish(&mut sink);
    out.sort_by_key(|r| (r.0, r.1, r.2.clone(), r.3 as u8));
    (out, e)
}

/// Found by the `engine` target: a UDP exchange timed out on the time a
/// TCP packet had moved the engine to only when a tick came between them.
/// Without one, a later datagram stamped earlier (a capture whose time
/// steps back) still found the exchange open and was taken for a
/// duplicate of its request: the records depended on batch boundaries.
/// The UDP exchanges now run on the engine's packet time.
#[test]
fn udp_exchanges_time_out_on_tcp_packet_time_without_a_tick() {
    let pkts = [
        udp_request(T0 + 2 * MS, 40001, 1, b"get a bb\r\n"),
        // A TCP segment 12 s later (past the 5 s UDP timeout).
        Pkt {
            ts: T0 + 12_000 * MS,
            client: 40002,
            to_server: true,
            udp: false,
            tcp: TcpInfo {
                seq: 1000,
                ack: 1,
                ack_flag: true,
                ..TcpInfo::default()
            },
            payload: b"get c\r\n".to_vec(),
        },
        // The same request again, stamped before the TCP segment.
        udp_request(T0 + 3 * MS, 40001, 1, b"get a bb\r\n"),
    ];
    let want: Vec<Rec> = vec![
        (T0 + 2 * MS, 40001, Some(b"a".to_vec()), Outcome::Lost),
        (T0 + 2 * MS, 40001, Some(b"bb".to_vec()), Outcome::Lost),
        (T0 + 3 * MS, 40001, Some(b"a".to_vec()), Outcome::Lost),
        (T0 + 3 * MS, 40001, Some(b"bb".to_vec()), Outcome::Lost),
        (T0 + 12_000 * MS, 40002, Some(b"c".to_vec()), Outcome::Lost),
    ];
    for tick in [false, true] {
        let (got, e) = replay(&pkts, tick);
        assert_eq!(got, want, "ticked: {tick}");
        let c = e.counters();
        assert_eq!(c.udp_timeouts, 2, "ticked: {tick}");
        assert_eq!(c.udp_duplicate_requests, 0, "ticked: {tick}");
        assert_eq!(c.records, 5, "ticked: {tick}");
    }
}

fn tcp(ts: u64, client: u16, to_server: bool, seq: u32, ack: u32, syn: bool, body: &[u8]) -> Pkt {
    Pkt {
        ts,
        client,
        to_server,
        udp: false,
        tcp: TcpInfo {
            seq,
            ack,
            syn,
            ack_flag: true,
            ..TcpInfo::default()
        },
        payload: body.to_vec(),
    }
}

/// Found by the `engine` target: a connection idle past the idle timeout
/// was evicted (its request, held for server bytes it had acknowledged but
/// that never came, delivered then, stamped with that time) at the next
/// TCP packet or tick; UDP datagrams did not run the connections' timer.
/// So the record's time depended on whether a tick came between the
/// datagrams. Every packet now runs every timer on the engine's time.
#[test]
fn idle_connections_are_evicted_on_udp_packet_time_without_a_tick() {
    let s = 5_100_000 * MS;
    let pkts = [
        // The server's SYN-ACK with data, then bytes far past a hole...
        tcp(T0, 40000, false, 2_162_687, 1000, true, b"EN\r\n"),
        tcp(
            T0 + 178 * MS,
            40000,
            false,
            5_000_000,
            1007,
            false,
            b"MN\r\n",
        ),
        // ...that the client's request acknowledges: it waits for them.
        tcp(
            T0 + 178 * MS,
            40000,
            true,
            1000,
            5_000_000,
            false,
            b"get a\r\n",
        ),
        // UDP only, long past the idle timeout (300 s).
        udp_request(T0 + s, 40001, 1, b"get b\r\n"),
        udp_request(T0 + s + MS, 40001, 2, b"get c\r\n"),
    ];
    let (plain, _) = replay(&pkts, false);
    let (ticked, e) = replay(&pkts, true);
    assert_eq!(plain, ticked);
    let want: Vec<Rec> = vec![
        (T0 + s, 40000, Some(b"a".to_vec()), Outcome::Lost),
        (T0 + s, 40001, Some(b"b".to_vec()), Outcome::Lost),
        (T0 + s + MS, 40001, Some(b"c".to_vec()), Outcome::Lost),
    ];
    assert_eq!(plain, want);
    assert_eq!(e.counters().tcp_evicted_idle, 1);
}
