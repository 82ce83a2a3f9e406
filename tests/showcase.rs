//! The demo's capture (testdata/showcase.pcap.zst, made by
//! scripts/make-showcase.sh from three real memcached servers and 40 real
//! clients) and servers found without `--target`, on real captures.
//!
//! The showcase's figures are asserted exactly so that the demo cannot
//! silently rot: a change in what memtap reports of it shows here first.
//! After regenerating the capture, update them.

mod common;
use common::fixture_dir;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_memtap");

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn memtap(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run memtap")
}

fn json(args: &[&str]) -> Value {
    let o = memtap(args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn found(r: &Value) -> Vec<String> {
    r["capture"]["servers_found"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    let mut s = format!(
                        "{} {} {}",
                        f["server"].as_str().unwrap(),
                        f["transport"].as_str().unwrap(),
                        f["how"].as_str().unwrap()
                    );
                    if let Some(d) = f["dialect"].as_str() {
                        s += &format!(" {d}");
                    }
                    s
                })
                .collect()
        })
        .unwrap_or_default()
}

fn key<'a>(keys: &'a Value, name: &str) -> Option<&'a Value> {
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"].as_str() == Some(name))
}

#[test]
fn showcase_report_without_target() {
    let file = testdata("showcase.pcap.zst");
    let r = json(&[
        "replay",
        "-q",
        "-f",
        "json",
        "--window",
        "5s",
        "--per-window",
        file.to_str().unwrap(),
    ]);
    // Two servers on 11211 (one also on UDP), one on 22122 found by what
    // its clients and it said.
    assert_eq!(
        found(&r),
        [
            "127.0.10.1:11211 tcp port",
            "127.0.10.1:11211 udp port",
            "127.0.10.2:22122 tcp protocol text",
            "127.0.10.3:11211 tcp port",
        ]
    );
    assert_eq!(r["capture"]["packets"], 80765);
    assert_eq!(r["health"]["not_target"], 0);
    let t = &r["totals"];
    assert_eq!(
        (&t["commands"], &t["requests"], &t["hits"], &t["misses"]),
        (&33557.into(), &34420.into(), &16076.into(), &5839.into())
    );
    let servers: Vec<(&str, u64)> = r["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["server"].as_str().unwrap(),
                s["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        servers,
        [
            ("127.0.10.2:22122", 14142),
            ("127.0.10.1:11211", 11278),
            ("127.0.10.3:11211", 9000)
        ]
    );
    // The key that turns hot mid-way is the hottest of the run...
    let top = &r["keys"][0];
    assert_eq!(
        (&top["key"], &top["requests"], &top["hits"], &top["misses"]),
        (
            &"feed:trending".into(),
            &1228.into(),
            &999.into(),
            &42.into()
        )
    );
    // ... the batch job is the hottest client ...
    assert_eq!(r["clients"][0]["client"], "127.1.0.1");
    assert_eq!(r["clients"][0]["requests"], 3414);
    // ... and, window by window: absent in the first half, first after.
    let w = r["windows"].as_array().unwrap();
    assert_eq!(w.len(), 5);
    let trending: Vec<Option<u64>> = w
        .iter()
        .map(|w| key(&w["keys"], "feed:trending").map(|k| k["requests"].as_u64().unwrap()))
        .collect();
    assert_eq!(trending, [None, None, Some(481), Some(655), Some(92)]);
    let firsts: Vec<&str> = w
        .iter()
        .map(|w| w["keys"][0]["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        firsts,
        [
            "user:1",
            "user:1",
            "feed:trending",
            "feed:trending",
            "feed:trending"
        ]
    );
    // The dogpile: 30 clients miss config:homepage at once in the fourth
    // window (32 misses there; 3 in each of the two before).
    let homepage_misses: Vec<u64> = w
        .iter()
        .map(|w| {
            key(&w["keys"], "config:homepage").unwrap()["misses"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(homepage_misses, [3, 3, 32, 6, 1]);
}

#[test]
fn servers_found_by_protocol_on_a_port_of_their_own() {
    // The fixtures' servers listen on 2121x, not 11211: found by what was
    // said, and then every record is there, as with --target.
    for (case, port, transport, dialect) in [
        ("text_tcp", 21211, "tcp", "text"),
        ("meta_tcp", 21212, "tcp", "meta"),
        ("binary_tcp", 21213, "tcp", "binary"),
        ("udp", 21212, "udp", "text"),
    ] {
        let file = fixture_dir(case).join("capture.pcap");
        let f = file.to_str().unwrap();
        let auto = json(&["replay", "-q", "-f", "json", f]);
        assert_eq!(
            found(&auto),
            [format!("127.0.0.1:{port} {transport} protocol {dialect}")],
            "{case}"
        );
        let named = json(&[
            "replay",
            "-q",
            "-f",
            "json",
            "--target",
            &format!("*:{port}"),
            f,
        ]);
        assert_eq!(auto["totals"], named["totals"], "{case}");
        assert_eq!(auto["health"], named["health"], "{case}");
        // An explicit --target reports no servers found.
        assert_eq!(named["capture"].get("servers_found"), None, "{case}");
    }
}

#[test]
fn nothing_found_says_so_in_one_line_and_strict_fails() {
    let http = testdata("http-not-memcached.pcap");
    let f = http.to_str().unwrap();
    let o = memtap(&["replay", f]);
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            "memtap: no memcached traffic in 36 packets: nothing to port 11211, and no flow whose \
          first packets are memcached requests answered by memcached responses; if the servers \
          are there, name them with --target HOST:PORT"
        ],
        "{err}"
    );
    assert_eq!(memtap(&["replay", "--strict", f]).status.code(), Some(3));
    assert_eq!(memtap(&["dump", "--strict", f]).status.code(), Some(3));

    // A wrong --target: the line names what the capture does hold.
    let text = fixture_dir("text_tcp").join("capture.pcap");
    let o = memtap(&[
        "replay",
        "--strict",
        "--target",
        "*:11211",
        text.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines().any(|l| l
            == "memtap: no packet of 122 matched --target *:11211; memcached servers in it: \
                127.0.0.1:21211 (tcp, by protocol: text) (leave out --target to watch them)"),
        "{err}"
    );
    // Without --strict the same run succeeds.
    let o = memtap(&[
        "replay",
        "-q",
        "--target",
        "*:11211",
        text.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
}

/// Cache insight follows each key's life in packet-time order, so with
/// several workers the collectors merge the workers' records before
/// applying them (tables with insight). The report is then the same
/// whatever the number of workers, down to the keys a small key table
/// kept (Space-Saving's order-dependent error bounds included) and every
/// window; and no record came late. One worker too, when no key has more
/// clients than its client table holds: a UDP reply whose client sends
/// nothing more is settled after 8 datagrams of the worker's own flows,
/// which moves its record among other clients' records of the key, and
/// a full client table keeps a different set (docs/insight.md).
#[test]
fn the_report_is_the_same_with_any_number_of_workers() {
    let file = testdata("showcase.pcap.zst");
    let run = |workers: &str, collectors: &str, key_clients: &str| {
        json(&[
            "replay",
            "--key-clients",
            key_clients,
            "-q",
            "-f",
            "json",
            "--window",
            "5s",
            "--per-window",
            "--max-keys",
            "300",
            "--target",
            "127.0.10.1:11211",
            "--target",
            "127.0.10.2:22122",
            "--target",
            "127.0.10.3:11211",
            "--workers",
            workers,
            "--collectors",
            collectors,
            file.to_str().unwrap(),
        ])
    };
    for collectors in ["1", "2"] {
        let two = run("2", collectors, "32");
        assert_eq!(two["insight"]["bounds"]["late"], 0);
        assert_eq!(two["totals"]["requests"], 34420);
        assert_eq!(two["windows"].as_array().unwrap().len(), 5);
        for workers in ["3", "4"] {
            let r = run(workers, collectors, "32");
            assert!(
                r == two,
                "{workers} workers, {collectors} collectors: not the report of 2"
            );
        }
    }
    let (one, two) = (run("1", "1", "256"), run("2", "1", "256"));
    assert_eq!(two["insight"]["bounds"]["late"], 0);
    assert!(one == two, "1 worker: not the report of 2");
}

/// Only the `-m 8` server (127.0.10.2) evicts in the showcase; the two
/// 64 MiB ones never fill (scripts/make-showcase.sh). A UDP reply's `END`
/// held back for stragglers once let the client's refill overtake its own
/// miss, and so classed 332 misses (and 328 unread writes) of 127.0.10.1
/// `evicted`; the client's next request now ends the wait. With one
/// worker as with two.
#[test]
fn only_the_small_server_evicts() {
    let file = testdata("showcase.pcap.zst");
    for workers in ["1", "2"] {
        let r = json(&[
            "replay",
            "-q",
            "-f",
            "json",
            "--workers",
            workers,
            file.to_str().unwrap(),
        ]);
        let by_server: Vec<(String, u64, u64, u64)> = r["insight"]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["server"].as_str().unwrap().to_string(),
                    s["misses"]["evicted"].as_u64().unwrap(),
                    s["misses"]["first"].as_u64().unwrap(),
                    s["unread"]["evicted"].as_u64().unwrap(),
                )
            })
            .collect();
        let want = [
            ("127.0.10.1:11211", 0, 1264, 0),
            ("127.0.10.2:22122", 509, 1758, 427),
            ("127.0.10.3:11211", 0, 1004, 0),
        ]
        .map(|(s, e, f, u)| (s.to_string(), e, f, u));
        assert_eq!(by_server, want, "{workers} worker(s)");
    }
}
