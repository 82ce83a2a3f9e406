//! The collectors' tables: hot keys and hot clients (Space-Saving), each
//! key's clients and servers (exact while they fit, bounded beyond), the
//! totals. Input (through `arbitrary`): table sizes, and a stream of
//! records over a few dozen keys, clients and servers, sharded between
//! two collectors whose tables are then merged (as `memtap` does), and cut
//! into consecutive windows folded into a run a part at a time (as a
//! collector with windows does).
//!
//! Invariants, against an exact count of the same stream: totals and
//! results exact; every row of every table within its stated bound
//! (`count - error_bound <= true <= count`); every key, client or address
//! missing from a table at most its `unmonitored_bound`; exact rows
//! exactly right; no table past its size. Checked on each collector's
//! tables, on the merge and on the folded run.

use arbitrary::{Arbitrary, Unstructured};
use memtap::collect::batch::{shard_of, RecordBatch};
use memtap::collect::keytables::{AddrTable, KEY_SERVERS};
use memtap::collect::tables::{ClientGranularity, ClientId, TableLimits, Tables};
use memtap::collect::HeavyHitters;
use memtap::decode::Transport;
use memtap::protocol::{Outcome, Proto};
use memtap::session::Record;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

#[derive(Arbitrary, Debug)]
pub struct Rec {
    key: Option<u8>,
    client: u8,
    server: u8,
    first: bool,
    result: u8,
    req_bytes: u16,
    latency_us: Option<u16>,
    /// Heavy traffic: the record repeated this many times (skew).
    repeat: u8,
}

#[derive(Arbitrary, Debug)]
pub struct Input {
    max_keys: u8,
    max_clients: u8,
    key_clients: u8,
    by_host: bool,
    /// Records a window holds, and key items folded a part.
    window: u8,
    fold_step: u8,
    recs: Vec<Rec>,
}

/// Folds `w` into `run` `step` keys at a time.
fn fold_in_parts(run: &mut Tables, w: &Tables, step: usize) {
    let mut from = 0;
    loop {
        let next = run.fold_part(w, from, step);
        if next >= w.keys.len() {
            break;
        }
        assert!(next > from, "a fold part made no progress");
        from = next;
    }
}

const COMMANDS: [&str; 4] = ["get", "set", "mg", "getkq"];

/// Exact counts of a stream.
#[derive(Default)]
struct Exact {
    requests: u64,
    keyless: u64,
    hits: u64,
    misses: u64,
    keys: HashMap<Vec<u8>, u64>,
    clients: HashMap<Vec<u8>, u64>,
    key_clients: HashMap<(Vec<u8>, ClientId), u64>,
    key_servers: HashMap<(Vec<u8>, ClientId), u64>,
}

fn within(what: &str, key: &[u8], guaranteed: u64, truth: u64, count: u64) {
    assert!(
        guaranteed <= truth && truth <= count,
        "{what} {key:?}: guaranteed {guaranteed}, true {truth}, count {count}"
    );
}

fn check_heavy<T>(what: &str, t: &HeavyHitters<T>, exact: &HashMap<Vec<u8>, u64>, merged: bool) {
    assert!(
        t.len() <= t.capacity(),
        "{what}: {} rows of {}",
        t.len(),
        t.capacity()
    );
    let m = t.unmonitored_bound();
    for e in t.iter() {
        let truth = exact.get(e.key()).copied().unwrap_or(0);
        within(what, e.key(), e.guaranteed_count(), truth, e.count());
        if !merged {
            assert!(
                e.error_bound() <= m,
                "{what} {:?}: error bound {} over {m}",
                e.key(),
                e.error_bound()
            );
        }
        if e.is_exact() {
            assert_eq!(e.count(), truth, "{what} {:?}: exact row", e.key());
        }
    }
    for (k, &truth) in exact {
        if !t.contains(k) {
            assert!(
                truth <= m,
                "{what} {k:?}: {truth} requests, missing, bound {m}"
            );
        }
    }
    assert_eq!(
        t.total_weight(),
        exact.values().sum::<u64>(),
        "{what}: total"
    );
}

/// A key's address table: `tenure_exact` when the key's row covers the
/// whole stream (its stats then cover every record of the key).
fn check_addrs<const N: usize>(
    what: &str,
    key: &[u8],
    t: &AddrTable<N>,
    exact: &HashMap<(Vec<u8>, ClientId), u64>,
    tenure_exact: bool,
) {
    assert!(
        t.len() <= t.capacity().max(1),
        "{what}: {} rows of {}",
        t.len(),
        t.capacity()
    );
    let truth = |a: ClientId| exact.get(&(key.to_vec(), a)).copied().unwrap_or(0);
    for r in t.iter() {
        let tr = truth(r.addr);
        assert!(r.guaranteed() <= tr, "{what} {key:?} {r:?}: true {tr}");
        if tenure_exact {
            assert!(tr <= r.count, "{what} {key:?} {r:?}: true {tr}");
            if t.is_exact() {
                assert_eq!(r.count, tr, "{what} {key:?}: exact row");
            }
        }
    }
    if tenure_exact {
        let m = t.unmonitored_bound();
        for ((k, a), &tr) in exact {
            if k == key && !t.iter().any(|r| r.addr == *a) {
                assert!(
                    tr <= m,
                    "{what} {key:?} {a:?}: {tr} requests, missing, bound {m}"
                );
            }
        }
    }
}

fn check(t: &Tables, x: &Exact, merged: bool) {
    assert_eq!(t.totals.requests, x.requests);
    assert_eq!(t.totals.keyless, x.keyless);
    assert_eq!(t.totals.hits, x.hits);
    assert_eq!(t.totals.misses, x.misses);
    assert_eq!(t.results.iter().sum::<u64>(), x.requests);
    check_heavy("keys", &t.keys, &x.keys, merged);
    check_heavy("clients", &t.clients, &x.clients, merged);
    for e in t.keys.iter() {
        let exact = e.is_exact();
        check_addrs(
            "key clients",
            e.key(),
            &e.stats.clients,
            &x.key_clients,
            exact,
        );
        check_addrs(
            "key servers",
            e.key(),
            &e.stats.servers,
            &x.key_servers,
            exact,
        );
        assert!(e.stats.servers.capacity() <= KEY_SERVERS);
        assert!(e.stats.traffic.requests <= e.count());
        if exact {
            assert_eq!(e.stats.traffic.requests, e.count());
        }
    }
}

pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let limits = TableLimits {
        max_keys: 1 + input.max_keys as usize % 16,
        max_clients: 1 + input.max_clients as usize % 16,
        max_families: 4,
        client_granularity: if input.by_host {
            ClientGranularity::Ip
        } else {
            ClientGranularity::IpPort
        },
        key_clients: 1 + input.key_clients as usize % 8,
        insight_examples: 16,
    };
    let mut whole = Tables::new(&limits);
    let mut shards = [Tables::new(&limits), Tables::new(&limits)];
    let (mut xw, mut xs) = (Exact::default(), [Exact::default(), Exact::default()]);
    let (per_window, step) = (
        1 + input.window as usize * 8,
        1 + input.fold_step as usize % 16,
    );
    let (mut folded, mut window, mut in_window) = (Tables::new(&limits), Tables::new(&limits), 0);
    // Whether a window evicted (then it is merged, with merged bounds).
    let mut dropped = false;
    let mut batch = RecordBatch::default();
    let mut family = Vec::new();
    let server_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let mut n = 0usize;
    for r in &input.recs {
        // A quarter of the keys are longer than a hot-key item holds
        // inline (heap buffers, reused and kept as spares).
        let key: Option<Vec<u8>> = r.key.map(|k| match k % 40 {
            k @ 30.. => format!("a-key-too-long-to-be-held-in-its-item:{k}").into_bytes(),
            k => format!("k{k}").into_bytes(),
        });
        let client = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 1, 0, r.client % 24)),
            40_000 + u16::from(r.client % 3),
        );
        let server = SocketAddr::new(server_ip, 11211 + u16::from(r.server % 10));
        let rec = Record {
            ts: 1,
            client,
            server,
            transport: Transport::Tcp,
            proto: Proto::Text,
            command: COMMANDS[r.first as usize + 2 * (r.result as usize % 2)],
            first: r.first,
            key: key.as_deref(),
            result: Outcome::ALL[r.result as usize % Outcome::ALL.len()],
            req_bytes: u64::from(r.req_bytes),
            exptime: None,
            resp_bytes: 0,
            latency_ns: r.latency_us.map(|l| u64::from(l) * 1000),
        };
        let shard = shard_of(key.as_deref(), 2);
        for _ in 0..1 + r.repeat % 8 {
            n += 1;
            if n > 20_000 {
                break;
            }
            batch.clear();
            batch.push(&rec, 1);
            let b = &batch.recs[0];
            whole.add(&batch, b, None, &mut family);
            shards[shard].add(&batch, b, None, &mut family);
            window.add(&batch, b, None, &mut family);
            in_window += 1;
            if in_window == per_window {
                dropped |= !window.keys.is_exact() || !window.clients.is_exact();
                fold_in_parts(&mut folded, &window, step);
                window = Tables::new(&limits);
                in_window = 0;
            }
            let cid = ClientId::new(client, limits.client_granularity);
            for x in [&mut xw, &mut xs[shard]] {
                x.requests += 1;
                match rec.result {
                    Outcome::Hit => x.hits += 1,
                    Outcome::Miss => x.misses += 1,
                    _ => {}
                }
                *x.clients.entry(cid.bytes().to_vec()).or_default() += 1;
                match &key {
                    None => x.keyless += 1,
                    Some(k) => {
                        *x.keys.entry(k.clone()).or_default() += 1;
                        *x.key_clients.entry((k.clone(), cid)).or_default() += 1;
                        *x.key_servers
                            .entry((k.clone(), ClientId::server(server)))
                            .or_default() += 1;
                    }
                }
            }
        }
    }
    dropped |= !window.keys.is_exact() || !window.clients.is_exact();
    fold_in_parts(&mut folded, &window, step);
    check(&folded, &xw, dropped);
    check(&whole, &xw, false);
    check(&shards[0], &xs[0], false);
    check(&shards[1], &xs[1], false);
    let [a, b] = &mut shards;
    a.merge(b);
    check(a, &xw, true);
}
