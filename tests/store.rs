//! The interval history: replays written to a real SQLite file and a real
//! PostgreSQL cluster (Debian's package, started by `tests/pg/mod.rs`),
//! then read back. The history report over the whole range must equal the
//! replay's own report field for field; ingesting twice changes nothing;
//! two sniffers add up; an unavailable database loses nothing.

mod common;
mod pg;
use common::*;
use memtap::app::cli::AnalysisArgs;
use memtap::app::pipeline::{self, PipelineOutput};
use memtap::app::replay::{make_report, setup, ReplaySetup};
use memtap::app::NoProgress;
use memtap::config::Config;
use memtap::decode::targets::Targets;
use memtap::report::{Report, ReportOptions};
use memtap::store::history::{self, Query};
use memtap::store::{StoreOptions, Writer};
use std::path::PathBuf;
use std::time::Duration;

const CASES: &[&str] = &["text_tcp", "binary_tcp", "meta_tcp", "mixed_noreply", "udp"];
/// Short windows, so the fixtures (each well under a second) span many.
const WINDOW: &str = "10ms";
const WINDOW_NS: u64 = 10_000_000;
const ROLLUP_NS: u64 = 1_000_000_000;

fn capture(case: &str) -> PathBuf {
    fixture_dir(case).join("capture.pcap")
}

fn replay_setup() -> ReplaySetup {
    let a = AnalysisArgs {
        workers: Some(2),
        collectors: Some(2),
        window: Some(WINDOW.into()),
        memory: None,
        trigger_dir: None,
        log_format: None,
        max_keys: None,
        max_clients: None,
        key_clients: None,
        client_granularity: None,
        redact_keys: None,
        metrics_top: None,
    };
    let mut s = setup(&Config::default(), &a, Some(0), None, false).unwrap();
    s.pipeline.windows = true;
    s
}

/// The replay's report and its pipeline output (windows kept).
fn replay(case: &str) -> (Report, PipelineOutput) {
    let s = replay_setup();
    let targets = Targets::new(vec![server_target(case)]);
    let files = [capture(case)];
    let out = pipeline::run(
        &Config::default(),
        &targets,
        &files,
        &s.pipeline,
        &mut NoProgress,
    )
    .unwrap();
    (make_report(&out, &files, &s), out)
}

fn options(sniffer: &str, spool: &std::path::Path, store_top: usize) -> StoreOptions {
    StoreOptions {
        sniffer: sniffer.into(),
        store_top,
        fine_ns: WINDOW_NS,
        rollup_ns: ROLLUP_NS,
        spool_dir: spool.to_path_buf(),
        queue_len: 4,
        retry_for: Duration::from_secs(5),
        keep_fine_ns: 0,
        ..StoreOptions::default()
    }
}

/// Replays `case` into the store as `sniffer`; returns the replay report.
fn ingest(url: &str, case: &str, sniffer: &str, spool: &std::path::Path) -> Report {
    let (rep, out) = replay(case);
    let w = Writer::spawn(url, options(sniffer, spool, 0)).unwrap();
    memtap::app::store::store_replay(w, out, &[capture(case)], WINDOW_NS, &[]).unwrap();
    rep
}

fn report_opts() -> ReportOptions {
    ReportOptions {
        top: 0,
        sort: Default::default(),
        redact: Default::default(),
    }
}

fn history(url: &str, q: &Query) -> Report {
    let mut db = memtap::store::open_read(url).unwrap();
    history::report(db.as_mut(), q, &report_opts()).unwrap()
}

fn json(r: &Report) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap();
    common::without_per_key_insight(&mut v);
    v
}

/// Row counts of every table (to show a second ingest adds nothing).
fn row_counts(url: &str) -> Vec<u64> {
    let mut db = memtap::store::open_read(url).unwrap();
    [
        "intervals",
        "server_stats",
        "command_stats",
        "result_stats",
        "hist_stats",
        "health_stats",
        "key_stats",
        "client_stats",
        "family_stats",
        "captures",
    ]
    .iter()
    .map(|t| db.query(&format!("SELECT COUNT(*) FROM {t}"), &[]).unwrap()[0][0].u64())
    .collect()
}

/// The round trip every backend must pass.
fn round_trip(url: &dyn Fn(&str) -> String) {
    let spool = tempfile::tempdir().unwrap();
    for case in CASES {
        let u = url(case);
        let rep = ingest(&u, case, "s1", spool.path());
        let hist = history(&u, &Query::default());
        assert_eq!(
            json(&hist),
            json(&rep),
            "{case}: history report = replay report"
        );
        assert!(rep.totals.requests > 0, "{case}");
        // Twice: nothing changes.
        let rows = row_counts(&u);
        assert!(
            rows[0] >= 2,
            "{case}: fine intervals and a rollup ({rows:?})"
        );
        ingest(&u, case, "s1", spool.path());
        assert_eq!(row_counts(&u), rows, "{case}: second ingest adds no rows");
        assert_eq!(json(&history(&u, &Query::default())), json(&rep), "{case}");
        // A second sniffer saw the same traffic: everything doubles, and
        // each sniffer alone is the replay.
        ingest(&u, case, "s2", spool.path());
        let both = history(&u, &Query::default());
        assert_eq!(both.totals.requests, 2 * rep.totals.requests, "{case}");
        assert_eq!(both.totals.bytes_out, 2 * rep.totals.bytes_out, "{case}");
        assert_eq!(both.capture.packets, 2 * rep.capture.packets, "{case}");
        for (k, b) in both.keys.iter().zip(&rep.keys) {
            assert_eq!((&k.key, k.requests), (&b.key, 2 * b.requests), "{case}");
        }
        for s in ["s1", "s2"] {
            let q = Query {
                sniffers: vec![s.into()],
                ..Default::default()
            };
            assert_eq!(json(&history(&u, &q)), json(&rep), "{case} {s}");
        }
    }
}

#[test]
fn sqlite_round_trip_equals_the_replay_report() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(&|case| format!("sqlite:{}", dir.path().join(format!("{case}.db")).display()));
}

#[test]
fn postgres_round_trip_equals_the_replay_report() {
    let Some(cluster) = pg::Cluster::start() else {
        return;
    };
    round_trip(&|case| cluster.database(case));
}

/// Ranges: the intervals of a sub-range sum to that range's share, and a
/// server filter keeps its server.
#[test]
fn ranges_servers_peaks_and_key_history() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("h.db").display());
    let case = "text_tcp";
    let (rep, out) = replay(case);
    let windows: Vec<(u64, u64)> = out
        .windows
        .iter()
        .map(|(s, _, t)| (*s, t.totals.requests))
        .collect();
    let w = Writer::spawn(&url, options("s1", dir.path(), 0)).unwrap();
    memtap::app::store::store_replay(w, out, &[capture(case)], WINDOW_NS, &[]).unwrap();
    // Split at the middle window: the halves add up to the whole.
    let mid = windows[windows.len() / 2].0;
    let a = history(
        &url,
        &Query {
            until: Some(mid),
            ..Default::default()
        },
    );
    let b = history(
        &url,
        &Query {
            since: mid,
            ..Default::default()
        },
    );
    let want_a: u64 = windows.iter().filter(|w| w.0 < mid).map(|w| w.1).sum();
    assert_eq!(a.totals.requests, want_a);
    assert_eq!(a.totals.requests + b.totals.requests, rep.totals.requests);
    // One server.
    let server = rep.servers[0].server.clone();
    let one = history(
        &url,
        &Query {
            servers: vec![server.clone()],
            ..Default::default()
        },
    );
    assert_eq!(one.servers, vec![rep.servers[0].clone()]);
    assert_eq!(one.totals.requests, rep.servers[0].requests);
    let nobody = history(
        &url,
        &Query {
            servers: vec!["192.0.2.1:1".into()],
            ..Default::default()
        },
    );
    assert_eq!(nobody.totals.requests, 0);
    assert!(nobody.keys.is_empty());
    // Peaks: the busiest window of the server, as the windows say.
    let mut db = memtap::store::open_read(&url).unwrap();
    let peaks = history::peaks(db.as_mut(), &Query::default(), 3, false).unwrap();
    let best = windows.iter().map(|w| w.1).max().unwrap();
    assert_eq!(peaks[0].server, server);
    assert_eq!(peaks[0].requests, best);
    assert!(peaks.len() <= 3 && peaks.windows(2).all(|p| p[0].requests >= p[1].requests));
    // The hottest key's history sums to its report row.
    let k = &rep.keys[0];
    let kh = history::key_history(
        db.as_mut(),
        &Query::default(),
        &memtap::escape::unescape_key(&k.key),
        1,
    )
    .unwrap();
    assert_eq!(
        kh.points.iter().map(|p| p.requests).sum::<u64>(),
        k.requests
    );
    assert_eq!(kh.points.iter().map(|p| p.hits).sum::<u64>(), k.hits);
    assert_eq!(
        kh.points.iter().map(|p| p.bytes_out).sum::<u64>(),
        k.bytes_out
    );
    let peak = kh.peak.clone().unwrap();
    assert_eq!(
        peak.requests,
        kh.points.iter().map(|p| p.requests).max().unwrap()
    );
    assert_eq!(
        kh.first_top,
        kh.points.iter().find(|p| p.rank == 1).map(|p| p.start)
    );
    assert!(kh.points.iter().all(|p| p.servers == k.servers));
    // Rollups: one per second bucket, and they add up to the fine rows.
    let roll = memtap::store::snapshot::read(
        db.as_mut(),
        &memtap::store::snapshot::Filter {
            level: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!roll.is_empty());
    assert_eq!(
        roll.iter().map(|r| r.totals[1]).sum::<u64>(),
        rep.totals.requests
    );
    let fine = memtap::store::snapshot::read(db.as_mut(), &Default::default()).unwrap();
    assert_eq!(
        roll.iter().map(|r| r.fine_count).sum::<u64>(),
        fine.len() as u64
    );
}

/// `--store-top`: fewer rows, and each table's rows (with the remainder
/// row) still add up to the interval's totals.
#[test]
fn store_top_keeps_remainder_rows() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("top.db").display());
    let case = "text_tcp";
    let (rep, out) = replay(case);
    let w = Writer::spawn(&url, options("s1", dir.path(), 1)).unwrap();
    memtap::app::store::store_replay(w, out, &[capture(case)], WINDOW_NS, &[]).unwrap();
    let mut db = memtap::store::open_read(&url).unwrap();
    let snaps = memtap::store::snapshot::read(db.as_mut(), &Default::default()).unwrap();
    let mut rest_rows = 0;
    for s in &snaps {
        let keyless = s.totals[6];
        let key_sum: u64 = s.keys.iter().map(|k| k.traffic.requests).sum();
        assert_eq!(key_sum + keyless, s.totals[1], "keys add up at {}", s.start);
        let client_sum: u64 = s.clients.iter().map(|k| k.traffic.requests).sum();
        assert_eq!(client_sum, s.totals[1], "clients add up at {}", s.start);
        // At most 3 keys (top 1 by requests, bytes, misses) + remainder.
        assert!(s.keys.iter().filter(|k| !k.rest).count() <= 3);
        assert!(s.clients.iter().filter(|k| !k.rest).count() <= 2);
        rest_rows += s.keys.iter().filter(|k| k.rest).count();
    }
    assert!(rest_rows > 0, "some window had more keys than kept");
    // Totals stay exact.
    let h = history(&url, &Query::default());
    assert_eq!(h.totals, rep.totals);
    assert_eq!(h.servers, rep.servers);
    assert_eq!(h.commands, rep.commands);
}

/// The database is locked by another writer while replays are stored:
/// intervals queue, then spool; once it is released, all are written.
#[test]
fn sqlite_locked_during_a_replay_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let url = format!("sqlite:{}", path.display());
    let mut o = options("s1", dir.path(), 0);
    o.queue_len = 1;
    o.retry_for = Duration::from_secs(60);
    let w = Writer::spawn(&url, o).unwrap();
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    // Every fixture's windows, each fixture an hour after the previous
    // one, so their intervals never meet.
    let mut n = 0;
    let mut want = memtap::report::TotalsOut::default();
    for (i, case) in CASES.iter().enumerate() {
        let (rep, out) = replay(case);
        want.commands += rep.totals.commands;
        want.requests += rep.totals.requests;
        want.hits += rep.totals.hits;
        want.misses += rep.totals.misses;
        want.bytes_in += rep.totals.bytes_in;
        want.bytes_out += rep.totals.bytes_out;
        let shift = i as u64 * 3_600_000_000_000;
        for (start, end, tables) in out.windows {
            n += 1;
            w.submit(memtap::store::Interval {
                start: start + shift,
                end: end + shift,
                tables,
                counters: Default::default(),
            });
            // As windows close over time: the writer is waiting on the
            // lock meanwhile.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(n > 4, "enough windows to overflow the queue");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(w.backlog(), n, "nothing written while locked");
    assert!(w.spool_path().exists(), "the queue overflowed to the spool");
    assert!(w.last_error().is_some());
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    let t0 = std::time::Instant::now();
    while w.backlog() > 0 && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(w.backlog(), 0);
    w.finish().unwrap();
    assert!(!w_spool_left(dir.path()), "the spool is empty again");
    let h = history(&url, &Query::default());
    assert_eq!(h.totals, want);
}

fn w_spool_left(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("memtap-spool"))
}

/// A database that is still down when the writer finishes: the intervals
/// stay in the spool file, and the next writer writes them.
#[test]
fn spool_survives_to_the_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("later.db");
    let url = format!("sqlite:{}", path.display());
    let (rep, out) = replay("text_tcp");
    let mut o = options("s1", dir.path(), 0);
    o.queue_len = 1;
    o.retry_for = Duration::from_millis(300);
    let w = Writer::spawn(&url, o.clone()).unwrap();
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let e = memtap::app::store::store_replay(w, out, &[capture("text_tcp")], WINDOW_NS, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("wait in"), "{e}");
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    let w = Writer::spawn(&url, o).unwrap();
    assert!(w.backlog() > 0, "the spool is backlog");
    w.finish().unwrap();
    assert_eq!(json(&history(&url, &Query::default())), json(&rep));
}

/// PostgreSQL stopped in the middle of replays, then started again.
#[test]
fn postgres_down_during_a_replay_loses_nothing() {
    let Some(cluster) = pg::Cluster::start() else {
        return;
    };
    let url = cluster.database("down");
    let dir = tempfile::tempdir().unwrap();
    let mut o = options("s1", dir.path(), 0);
    o.queue_len = 2;
    o.retry_for = Duration::from_secs(60);
    let w = Writer::spawn(&url, o).unwrap();
    cluster.stop();
    // Every fixture's windows, an hour apart, with the run's counters on
    // its last window as `replay --store` does.
    let mut n = 0;
    let mut want = memtap::report::TotalsOut::default();
    let mut packets = 0;
    for (i, case) in CASES.iter().enumerate() {
        let (rep, out) = replay(case);
        want.commands += rep.totals.commands;
        want.requests += rep.totals.requests;
        want.hits += rep.totals.hits;
        want.misses += rep.totals.misses;
        want.bytes_in += rep.totals.bytes_in;
        want.bytes_out += rep.totals.bytes_out;
        packets += rep.capture.packets;
        let shift = i as u64 * 3_600_000_000_000;
        let last = out.windows.last().unwrap().0;
        for (start, end, tables) in out.windows {
            n += 1;
            w.submit(memtap::store::Interval {
                start: start + shift,
                end: end + shift,
                tables,
                counters: if start == last {
                    out.counters.clone()
                } else {
                    Default::default()
                },
            });
            // Submissions over time, as windows close: the writer is
            // retrying the first batch meanwhile.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(n > 4);
    assert_eq!(w.backlog(), n, "all waiting while the database is down");
    assert!(w.spool_path().exists(), "the queue overflowed to the spool");
    cluster.restart();
    w.finish().unwrap();
    let h = history(&url, &Query::default());
    assert_eq!(h.totals, want);
    assert_eq!(h.capture.packets, packets);
}

#[test]
fn store_errors_are_one_line() {
    let e = Writer::spawn("mysql://x/y", StoreOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        "store URL \"mysql://x/y\": unknown scheme; use sqlite:PATH or postgres://USER@HOST:PORT/DB"
    );
    let e = memtap::store::open_read("sqlite:/nonexistent/dir/x.db")
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        "cannot open the store sqlite:/nonexistent/dir/x.db: no such file"
    );
    // A schema from a newer memtap is refused.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("new.db").display());
    drop(Writer::spawn(&url, options("s", dir.path(), 0)).unwrap());
    let c = rusqlite::Connection::open(dir.path().join("new.db")).unwrap();
    c.execute(
        "UPDATE memtap_meta SET value = '99' WHERE name = 'schema_version'",
        [],
    )
    .unwrap();
    let e = memtap::store::open_read(&url).err().unwrap().to_string();
    assert!(
        e.ends_with(
            "the store's schema version 99 is newer than this memtap's (4); upgrade memtap"
        ),
        "{e}"
    );
    // Interval lengths are fixed per store.
    let dir2 = tempfile::tempdir().unwrap();
    let url2 = format!("sqlite:{}", dir2.path().join("iv.db").display());
    drop(Writer::spawn(&url2, options("s", dir2.path(), 0)).unwrap());
    let mut o = options("s", dir2.path(), 0);
    o.fine_ns = 60_000_000_000;
    o.rollup_ns = 86_400_000_000_000;
    let e = Writer::spawn(&url2, o).err().unwrap().to_string();
    assert!(
        e.ends_with("the store keeps 10ms intervals rolled up per 1s; this run asks for 1m and 1d (interval lengths are fixed when a store is created)"),
        "{e}"
    );
}

/// Retention: fine intervals of closed buckets older than `keep_fine` are
/// deleted once their rollup exists, and reports read the rollup instead,
/// with the same sums.
#[test]
fn retention_reads_rollups_where_fine_rows_are_gone() {
    retention_with_queue(4096);
}

/// The same with a one-slot queue: nearly every interval spills to the
/// spool file and is written after intervals submitted later. A spilled
/// interval of an old bucket once came in after that bucket was rolled
/// up and its fine rows pruned, and was then missing from the rollup (42
/// of 47 requests read back, one run in two). Rollups and retention now
/// wait until nothing is queued or spooled, and an interval arriving for
/// a pruned bucket is added to its rollup.
#[test]
fn retention_counts_every_spilled_interval() {
    for _ in 0..5 {
        retention_with_queue(1);
    }
}

fn retention_with_queue(queue_len: usize) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("keep.db").display());
    let mut o = options("s1", dir.path(), 0);
    o.keep_fine_ns = 60_000_000_000;
    o.queue_len = queue_len;
    let w = Writer::spawn(&url, o).unwrap();
    // text_tcp at its own time, udp an hour later: text_tcp's buckets end
    // long before the newest interval.
    let (old, out_old) = replay("text_tcp");
    let (new, out_new) = replay("udp");
    let shift = 3_600_000_000_000u64;
    // Windows come in the order the collectors closed them, not by time.
    let old_first = out_old.windows.iter().map(|w| w.0).min().unwrap();
    let old_last = out_old.windows.iter().map(|w| w.0).max().unwrap();
    for (start, end, tables) in out_old.windows {
        w.submit(memtap::store::Interval {
            start,
            end,
            tables,
            counters: Default::default(),
        });
    }
    let new_first = out_new.windows.iter().map(|w| w.0).min().unwrap() + shift;
    for (start, end, tables) in out_new.windows {
        w.submit(memtap::store::Interval {
            start: start + shift,
            end: end + shift,
            tables,
            counters: Default::default(),
        });
    }
    w.finish().unwrap();
    let mut db = memtap::store::open_read(&url).unwrap();
    let fine = memtap::store::snapshot::read(db.as_mut(), &Default::default()).unwrap();
    assert!(
        fine.iter().all(|s| s.start >= new_first),
        "text_tcp's fine intervals are pruned"
    );
    assert!(!fine.is_empty(), "udp's are kept (its bucket is recent)");
    // The old range now comes from its rollup: the same tables.
    let old_range = Query {
        since: old_first - old_first % ROLLUP_NS,
        until: Some(old_last - old_last % ROLLUP_NS + ROLLUP_NS),
        ..Default::default()
    };
    let h = history(&url, &old_range);
    assert_eq!(h.totals, old.totals);
    assert_eq!(h.keys, old.keys);
    assert_eq!(h.clients, old.clients);
    assert_eq!(h.servers, old.servers);
    assert_eq!(h.commands, old.commands);
    assert_eq!(h.distributions, old.distributions);
    let all = history(&url, &Query::default());
    assert_eq!(
        all.totals.requests,
        old.totals.requests + new.totals.requests
    );
}

/// A fine interval that reaches the store after retention replaced its
/// bucket by a rollup (here from a second writer, as after a restart) is
/// added to that rollup: the bucket's requests all count.
#[test]
fn a_late_interval_of_a_pruned_bucket_joins_its_rollup() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("late.db").display());
    let mut o = options("s1", dir.path(), 0);
    o.keep_fine_ns = 60_000_000_000;
    let (old, mut out_old) = replay("text_tcp");
    let (_, out_new) = replay("udp");
    let shift = 3_600_000_000_000u64;
    out_old.windows.sort_by_key(|w| w.0);
    let (late_start, late_end, late_tables) = out_old.windows.pop().unwrap();
    let late_requests = late_tables.totals.requests;
    assert!(late_requests > 0);
    let old_first = out_old.windows[0].0;
    let w = Writer::spawn(&url, o.clone()).unwrap();
    for (start, end, tables) in out_old.windows {
        w.submit(memtap::store::Interval {
            start,
            end,
            tables,
            counters: Default::default(),
        });
    }
    for (start, end, tables) in out_new.windows {
        w.submit(memtap::store::Interval {
            start: start + shift,
            end: end + shift,
            tables,
            counters: Default::default(),
        });
    }
    w.finish().unwrap();
    let range = Query {
        since: old_first - old_first % ROLLUP_NS,
        until: Some(late_start - late_start % ROLLUP_NS + ROLLUP_NS),
        ..Default::default()
    };
    let before = history(&url, &range).totals.requests;
    assert_eq!(before, old.totals.requests - late_requests);
    let w = Writer::spawn(&url, o).unwrap();
    w.submit(memtap::store::Interval {
        start: late_start,
        end: late_end,
        tables: late_tables,
        counters: Default::default(),
    });
    w.finish().unwrap();
    let h = history(&url, &range);
    assert_eq!(h.totals, old.totals);
    assert_eq!(h.keys, old.keys);
    let mut db = memtap::store::open_read(&url).unwrap();
    let fine = memtap::store::snapshot::read(db.as_mut(), &Default::default()).unwrap();
    assert!(
        fine.iter().all(|s| s.start >= shift),
        "no fine row of the old range"
    );
}

/// A store made by an earlier memtap (schema 1, before trigger events and
/// per-server commands) is brought up to date when opened: the events and
/// server_command_stats tables appear, the intervals stay.
#[test]
fn an_older_store_gains_the_events_table() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("old.db").display());
    let (_, out) = replay("text_tcp");
    memtap::app::store::store_replay(
        Writer::spawn(&url, options("s", dir.path(), 0)).unwrap(),
        out,
        &[capture("text_tcp")],
        WINDOW_NS,
        &[],
    )
    .unwrap();
    let c = rusqlite::Connection::open(dir.path().join("old.db")).unwrap();
    c.execute_batch(
        "DROP TABLE events; DROP TABLE server_command_stats; DROP TABLE insight_stats; \
         UPDATE memtap_meta SET value = '1' WHERE name = 'schema_version';",
    )
    .unwrap();
    let before: i64 = c
        .query_row("SELECT COUNT(*) FROM intervals", [], |r| r.get(0))
        .unwrap();
    assert!(before > 0);
    drop(Writer::spawn(&url, options("s", dir.path(), 0)).unwrap());
    let version: String = c
        .query_row(
            "SELECT value FROM memtap_meta WHERE name = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, "4");
    for table in ["events", "server_command_stats", "insight_stats"] {
        let n: i64 = c
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    let after: i64 = c
        .query_row("SELECT COUNT(*) FROM intervals", [], |r| r.get(0))
        .unwrap();
    assert_eq!(after, before);
}
