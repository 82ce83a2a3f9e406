//! Hostile and damaged input through the whole pipeline: corrupted
//! captures, connection floods and endless lines are counted and bounded,
//! never a panic.

mod common;
use common::*;
use memtap::config::Config;
use memtap::decode::targets::Targets;
use memtap::decode::{Packet, TcpInfo, Transport};
use memtap::session::{Engine, EngineConfig, Record};

/// Deterministic xorshift, so a failure names its seed.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

#[test]
fn corrupted_fixture_captures_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    for case in cases() {
        let bytes = std::fs::read(fixture_dir(case).join("capture.pcap")).unwrap();
        for seed in 1..=12u64 {
            let mut r = rng(seed * 7919 + case.len() as u64);
            let mut b = bytes.clone();
            // Flip bytes past the file header: inside record headers,
            // IP/TCP headers and memcached payloads alike.
            for _ in 0..(b.len() / 200).max(8) {
                let i = 24 + (r() as usize) % (b.len() - 24);
                b[i] ^= (r() as u8) | 1;
            }
            let path = dir.path().join(format!("{case}-{seed}.pcap"));
            std::fs::write(&path, &b).unwrap();
            let cfg = Config::default();
            let res = std::panic::catch_unwind(|| {
                let mut n = 0u64;
                memtap::app::process_files(
                    &cfg,
                    &Targets::new(vec![server_target(case)]),
                    std::slice::from_ref(&path),
                    &mut |_: &Record<'_>| n += 1,
                    &|| false,
                )
                .map(|t| (n, t.counters))
            });
            match res {
                Err(_) => panic!("{case} seed {seed}: panicked"),
                // A record header damaged beyond reading stops the file
                // with an error naming it; that is a clean outcome too.
                Ok(Err(e)) => assert!(e.to_string().contains(".pcap"), "{e:#}"),
                Ok(Ok((n, c))) => {
                    assert_eq!(n, c.records, "{case} seed {seed}");
                    assert!(c.packets <= 2 * bytes.len() as u64);
                }
            }
        }
    }
}

fn syn(client_port: u16) -> (TcpInfo, u16) {
    (
        TcpInfo {
            seq: 1000,
            ack: 0,
            syn: true,
            fin: false,
            rst: false,
            ack_flag: false,
        },
        client_port,
    )
}

fn packet(tcp: TcpInfo, sport: u16, payload: &[u8], ts: u64) -> Packet<'_> {
    Packet {
        ts,
        frame_no: 1,
        src: "10.9.0.1".parse().unwrap(),
        dst: "10.9.0.2".parse().unwrap(),
        sport,
        dport: 11211,
        transport: Transport::Tcp,
        tcp,
        payload,
        truncated: false,
        wire_payload_len: payload.len(),
    }
}

#[test]
fn a_connection_flood_is_refused_and_counted() {
    let mut cfg = Config::default();
    cfg.tcp.max_flows = 1000;
    let mut e = Engine::new(EngineConfig::from_config(&cfg), Targets::default());
    let mut n = 0u64;
    let mut sink = |_: &Record<'_>| n += 1;
    for port in 1..=5000u16 {
        let (t, p) = syn(port);
        e.packet(&packet(t, p, b"", 1_000_000_000), &mut sink);
    }
    let c = e.counters();
    assert_eq!(c.tcp_flows, 1000);
    assert_eq!(c.tcp_flow_table_full, 4000);
    e.finish(&mut sink);
    assert_eq!(n, 0);
}

#[test]
fn an_endless_line_is_cut_and_counted() {
    let mut e = Engine::new(EngineConfig::default(), Targets::default());
    let mut recs = Vec::new();
    let mut sink = |r: &Record<'_>| recs.push((r.command, r.result));
    let (t, p) = syn(40000);
    e.packet(&packet(t, p, b"", 1), &mut sink);
    // 8 MiB of "get aaaa..." without a newline, in 1448-byte segments,
    // then a real request.
    let mut seq = 1001u32;
    let chunk = [b'a'; 1448];
    let mut first = b"get ".to_vec();
    first.extend_from_slice(&chunk[4..]);
    for i in 0..(8 << 20) / 1448 {
        let data: &[u8] = if i == 0 { &first } else { &chunk };
        let tcp = TcpInfo {
            seq,
            ack: 1,
            syn: false,
            fin: false,
            rst: false,
            ack_flag: true,
        };
        e.packet(&packet(tcp, p, data, 2 + i as u64), &mut sink);
        seq = seq.wrapping_add(data.len() as u32);
    }
    let c = e.counters();
    // A get line is read key by key, as memcached reads it: its one key
    // of 8 MiB is over memcached's 250 bytes (the request would be
    // answered CLIENT_ERROR) and is skipped as it comes, never held.
    assert_eq!(
        (
            c.long_multigets,
            c.bad_requests,
            c.line_too_long,
            c.tcp_resync_skipped_bytes
        ),
        (1, 1, 0, 0),
        "{c:?}"
    );
    assert_eq!(c.budget_shed_carry_bytes, 0, "{c:?}");
    e.finish(&mut sink);
    // A line that never ended was no request: no record.
    assert_eq!(e.counters().records, 0);
    assert!(recs.is_empty());
}
