//! Issue 18: memtap's miss classes against the servers' own counters.
//!
//! Two real memcached 1.6.18 servers on loopback (`-m 2`, LRU crawler and
//! maintainer off so that `get_expired` and `get_flushed` count every dead
//! item a get finds) are driven through every way a get can miss, from
//! clients on distinct loopback addresses, while tcpdump captures them.
//! Each phase knows why its misses happen; memtap's classes must equal
//! both that and the servers' `stats`:
//!
//! | class | generator | memcached counter |
//! |---|---|---|
//! | first | gets of keys never stored | — |
//! | deleted | gets after `delete` and after `flush_all` | `delete_hits` (each deleted key read once), `get_flushed` |
//! | expired | gets after a 1 s exptime passed | `get_expired` |
//! | evicted | gets of big values pushed out of a 2 MiB cache | `evictions`, `evicted_unfetched` (= unread writes ended by eviction) |
//!
//! plus a miss storm (4 clients miss one key, then one stores it), a write
//! overwritten unread, and a key stored on both servers.

mod common;
use common::server::{can_capture, capture, free_port, memcached_with, memtap_json, stats};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::FromRawFd;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_memtap");

/// A text-protocol client connected from `from` (a loopback address of
/// its own, so each client is a distinct host to memtap).
struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn new(from: &str, port: u16) -> Client {
        let s = connect_from(from, port);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l.trim_end().to_string()
    }

    fn set(&mut self, key: &str, exptime: i64, value: &[u8]) {
        write!(self.w, "set {key} 0 {exptime} {}\r\n", value.len()).unwrap();
        self.w.write_all(value).unwrap();
        self.w.write_all(b"\r\n").unwrap();
        assert_eq!(self.line(), "STORED", "set {key}");
    }

    /// True on a hit.
    fn get(&mut self, key: &str) -> bool {
        write!(self.w, "get {key}\r\n").unwrap();
        let l = self.line();
        if l == "END" {
            return false;
        }
        let len: usize = l.rsplit(' ').next().unwrap().parse().unwrap();
        let mut v = vec![0u8; len + 2];
        self.r.read_exact(&mut v).unwrap();
        assert_eq!(self.line(), "END");
        true
    }

    fn cmd(&mut self, c: &str) -> String {
        write!(self.w, "{c}\r\n").unwrap();
        self.line()
    }
}

/// A TCP connection bound to `from` first (std has no bind-then-connect).
fn connect_from(from: &str, port: u16) -> TcpStream {
    let from: std::net::Ipv4Addr = from.parse().unwrap();
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: a fresh socket, plain sockaddr_in structs of the stated
    // length; the descriptor is handed to a TcpStream that owns it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let a = sin(from, 0);
        assert_eq!(
            libc::bind(fd, &a as *const _ as *const libc::sockaddr, len),
            0,
            "bind {from}"
        );
        let b = sin(std::net::Ipv4Addr::LOCALHOST, port);
        assert_eq!(
            libc::connect(fd, &b as *const _ as *const libc::sockaddr, len),
            0,
            "connect"
        );
        TcpStream::from_raw_fd(fd)
    }
}

fn class(v: &Value, c: &str) -> i64 {
    v["misses"][c].as_i64().unwrap()
}

#[test]
fn miss_classes_equal_the_servers_counters() {
    if !can_capture(
        "miss_classes_equal_the_servers_counters",
        &["memcached", "tcpdump"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (free_port(), free_port());
    let opts = ["-m", "2", "-o", "no_lru_crawler,no_lru_maintainer"];
    let _m1 = memcached_with(p1, &opts);
    let _m2 = memcached_with(p2, &opts);
    let before = stats(p1);
    let cap = capture(dir.path(), "insight", &[p1, p2]);

    let mut a = Client::new("127.0.0.2", p1);
    // first: 10 keys never stored.
    for i in 0..10 {
        assert!(!a.get(&format!("cold:{i}")));
    }
    // deleted: 10 stored, 5 deleted, all read once.
    for i in 0..10 {
        a.set(&format!("del:{i}"), 0, b"0123456789");
    }
    for i in 0..5 {
        assert_eq!(a.cmd(&format!("delete del:{i}")), "DELETED");
    }
    for i in 0..10 {
        assert_eq!(a.get(&format!("del:{i}")), i >= 5);
    }
    // expired: 10 with a 1 s exptime, 5 with 100 s.
    for i in 0..15 {
        a.set(&format!("exp:{i}"), if i < 10 { 1 } else { 100 }, b"v");
    }
    std::thread::sleep(Duration::from_millis(2300));
    for i in 0..15 {
        assert_eq!(a.get(&format!("exp:{i}")), i >= 10);
    }
    // written twice, never read: one write overwritten unread.
    a.set("twice", 0, b"one");
    a.set("twice", 0, b"two");
    // flushed: 10 stored, flush_all, 5 read.
    for i in 0..10 {
        a.set(&format!("fl:{i}"), 0, b"x");
    }
    assert_eq!(a.cmd("flush_all"), "OK");
    // memcached's flush takes the items stored before the current second:
    // the next second is safe to store in.
    std::thread::sleep(Duration::from_millis(1100));
    for i in 0..5 {
        assert!(!a.get(&format!("fl:{i}")));
    }
    // evicted: 60 values of 100 KB into a 2 MiB cache, then each read once.
    let big = vec![b'b'; 100_000];
    for i in 0..60 {
        a.set(&format!("big:{i}"), 0, &big);
    }
    let mut big_hits = 0;
    for i in 0..60 {
        big_hits += a.get(&format!("big:{i}")) as i64;
    }
    // A miss storm: four hosts miss `hot`, then one stores it.
    let mut storm: Vec<Client> = (3..7)
        .map(|h| Client::new(&format!("127.0.0.{h}"), p1))
        .collect();
    for c in storm.iter_mut() {
        assert!(!c.get("hot"));
    }
    storm[0].set("hot", 0, b"refilled");
    assert!(storm[1].get("hot"));
    // One key on both servers.
    let mut b = Client::new("127.0.0.7", p2);
    a.set("both", 0, b"1");
    b.set("both", 0, b"2");
    assert!(b.get("both"));
    drop((a, b, storm));
    let file = cap.finish();
    let after = stats(p1);
    let d = |k: &str| after[k] - before.get(k).copied().unwrap_or(0);

    let store = format!("sqlite:{}", dir.path().join("h.db").display());
    let (t1, t2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}"));
    let r = memtap_json(
        BIN,
        &[
            "replay",
            "-f",
            "json",
            "--workers",
            "2",
            "--collectors",
            "2",
            "--target",
            &t1,
            "--target",
            &t2,
            "--store",
            &store,
            "--window",
            "1s",
            file.to_str().unwrap(),
        ],
    );
    let ins = &r["insight"];
    let s1 = ins["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["server"] == format!("127.0.0.1:{p1}"))
        .unwrap();
    eprintln!("{}", serde_json::to_string_pretty(s1).unwrap());
    let evicted = 60 - big_hits;
    assert!(evicted > 30, "only {evicted} of 60 big values were evicted");

    // What the generator knows.
    // The storm's four misses: its key was never stored.
    assert_eq!(class(s1, "first"), 10 + 4, "cold keys and the storm's key");
    assert_eq!(class(s1, "deleted"), 5 + 5);
    assert_eq!(class(s1, "expired"), 10);
    assert_eq!(class(s1, "evicted"), evicted);
    assert_eq!(class(s1, "forgotten"), 0);
    assert_eq!(class(s1, "unknown_ttl"), 0);
    // What the server counted.
    assert_eq!(d("get_expired"), class(s1, "expired"));
    assert_eq!(d("get_flushed"), 5);
    assert_eq!(d("delete_hits") + d("get_flushed"), class(s1, "deleted"));
    assert_eq!(d("evictions"), class(s1, "evicted"));
    assert_eq!(
        d("evicted_unfetched"),
        s1["unread"]["evicted"].as_i64().unwrap()
    );
    assert_eq!(
        d("get_misses"),
        s1["classified_misses"].as_i64().unwrap(),
        "every miss is classed"
    );
    // Writes nobody read.
    assert_eq!(s1["unread"]["overwritten"], 1);
    // 5 deleted; 10 flushed, and `twice`'s second write, flushed too.
    assert_eq!(s1["unread"]["deleted"], 5 + 10 + 1);
    assert_eq!(s1["unread"]["expired"], 10);
    // The storm: 4 misses from 4 hosts, refilled by a store.
    assert_eq!(s1["storms"], 1);
    assert_eq!(s1["storm_misses"], 4);
    assert_eq!(s1["storm_clients_max"], 4);
    let sk = &ins["storm_keys"][0];
    assert_eq!(sk["key"], "hot");
    assert_eq!(sk["storms"], 1);
    // The key on both servers.
    assert_eq!(ins["multi_server"]["keys"], 1);
    let ex = &ins["multi_server"]["examples"][0];
    assert_eq!(ex["key"], "both");
    assert_eq!(ex["servers"].as_array().unwrap().len(), 2);
    // TTLs: 10 at 1 s, 5 at 100 s (class of 64 s), the rest never.
    let ttl: Vec<(String, i64)> = ins["ttl"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["ttl"].as_str().unwrap().into(),
                t["stores"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ttl,
        vec![
            ("never".into(), 10 + 2 + 10 + 60 + 1 + 2),
            ("1s".into(), 10),
            ("64s".into(), 5)
        ]
    );
    // The CSV tables say the same.
    let csv = dir.path().join("csv");
    let out = std::process::Command::new(BIN)
        .args(["replay", "-f", "csv", "--output-dir", csv.to_str().unwrap()])
        .args(["--target", &t1, "--target", &t2])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows = std::fs::read_to_string(csv.join("insight_servers.csv")).unwrap();
    let row: Vec<&str> = rows
        .lines()
        .find(|l| l.starts_with(&t1))
        .unwrap()
        .split(',')
        .collect();
    // server, first, expired, deleted, evicted, ...
    assert_eq!(row[1..5], ["14", "10", "10", &evicted.to_string()]);
    // The history store keeps the same per interval: summed back, the
    // classes, storms and TTLs are the run's.
    let h = memtap_json(BIN, &["report", "--store", &store, "-f", "json"]);
    let hs = h["insight"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["server"] == format!("127.0.0.1:{p1}"))
        .unwrap();
    for k in [
        "misses",
        "storms",
        "storm_misses",
        "stores",
        "multi_server_keys",
    ] {
        assert_eq!(hs[k], s1[k], "stored {k}");
    }
    assert_eq!(h["insight"]["ttl"], ins["ttl"]);
    assert_eq!(h["insight"]["slab"], ins["slab"]);
    // The 100 KB values sit in memcached's 103496-byte class (the 32nd).
    let slab = ins["slab"]["classes"].as_array().unwrap();
    let big_class = slab.iter().find(|c| c["chunk_size"] == 103_496).unwrap();
    assert_eq!(big_class["class"], 32);
    assert_eq!(big_class["items"], 60);
}
