//! The cost of one `memtap top` refresh at a high key count: the snapshot
//! of 100k tracked keys (what the view copies out of the tables once a
//! second), the model taking it in (index, sparkline history), the sorted
//! rows, and drawing a 120×40 screen. The capture threads pay none of it.
//!
//! `cargo bench --bench top`

use criterion::{criterion_group, criterion_main, Criterion};
use memtap::collect::batch::RecordBatch;
use memtap::collect::redact::Redact;
use memtap::collect::tables::{ClientGranularity, TableLimits, Tables};
use memtap::decode::Transport;
use memtap::protocol::{Outcome, Proto};
use memtap::report::top::snapshot;
use memtap::session::Record;
use memtap::stats::Counters;
use memtap::ui::top::model::{Model, Sort};
use memtap::ui::top::render::{draw, Look};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::hint::black_box;

const KEYS: usize = 100_000;

/// Tables holding `KEYS` keys, key i with about 1000/(i+1)+1 requests
/// from a few dozen clients, after `round` rounds.
fn tables(round: u64) -> Tables {
    let limits = TableLimits {
        max_keys: KEYS,
        max_clients: 10_000,
        max_families: 1000,
        client_granularity: ClientGranularity::Ip,
        key_clients: 32,
        insight_examples: 16,
    };
    let mut t = Tables::new(&limits);
    let mut b = RecordBatch::default();
    let mut fam = Vec::new();
    for i in 0..KEYS {
        let key = format!("user:{i}:profile");
        let n = 1 + 1000 / (i as u64 + 1) + round * (i as u64 % 3);
        for j in 0..n.min(40) {
            b.clear();
            let r = Record {
                ts: 0,
                client: format!("10.0.{}.{}:4000", j % 4, (i + j as usize) % 50)
                    .parse()
                    .unwrap(),
                server: "10.1.0.1:11211".parse().unwrap(),
                transport: Transport::Tcp,
                proto: Proto::Text,
                command: "get",
                first: true,
                key: Some(key.as_bytes()),
                result: if j % 5 == 0 {
                    Outcome::Miss
                } else {
                    Outcome::Hit
                },
                req_bytes: 0,
                exptime: None,
                resp_bytes: 100,
                latency_ns: Some(50_000 + 1000 * j),
            };
            b.push(&r, 0);
            let rec = b.recs[0];
            t.add(&b, &rec, None, &mut fam);
        }
    }
    t
}

fn refresh(c: &mut Criterion) {
    let t0 = tables(0);
    let t1 = tables(1);
    let c0 = Counters::default();
    let src = vec!["bench".to_string()];
    let s0 = snapshot(&t0, &c0, &src, 1_000_000_000, &Redact::None, 0);
    let s1 = snapshot(&t1, &c0, &src, 2_000_000_000, &Redact::None, 0);
    let mut g = c.benchmark_group("top_100k_keys");
    g.sample_size(10);
    g.bench_function("snapshot", |b| {
        b.iter(|| black_box(snapshot(&t1, &c0, &src, 2, &Redact::None, 0)))
    });
    g.bench_function("ingest", |b| {
        b.iter(|| {
            let mut m = Model::new(10_000_000_000, Sort::Requests);
            m.ingest(s0.clone());
            m.ingest(s1.clone());
            black_box(m.has_data())
        })
    });
    let mut m = Model::new(10_000_000_000, Sort::Requests);
    m.ingest(s0.clone());
    m.ingest(s1.clone());
    g.bench_function("rows_and_draw_120x40", |b| {
        let mut term = Terminal::new(TestBackend::new(120, 40)).unwrap();
        b.iter(|| {
            term.draw(|f| draw(f, &m, Look { color: true })).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, refresh);
criterion_main!(benches);
