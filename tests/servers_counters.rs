//! Issue 17: the servers' own counters as the test.
//!
//! Real memcached servers (Debian's 1.6.18, three on loopback, `-m 64`)
//! are driven by real client code — libmemcached (C,
//! `tests/clients/libmemcached_load.c`), pymemcache
//! (`tests/clients/pymemcache_load.py`) and twemproxy (`nutcracker`, with
//! both clients behind it) — while tcpdump captures the servers' ports on
//! `lo`. Each server's `stats` are taken before the capture starts and
//! after it stops (so memtap never sees that connection), and `memtap
//! replay` of the capture must show, per server, the very figures the
//! server counted itself: with one worker and collector, with `--workers 4
//! --collectors 3`, and on the capture rewritten as a mirror port shows it
//! (`scripts/mirror-rewrite.py --mode all`). For every client run the
//! test prints `counter | server | memcached | memtap | ok?` and memtap's
//! health counters, and fails with the rows that disagree.
//!
//! # How memcached 1.6.18 counts, as sums of memtap's cells
//!
//! memtap's per-server cells are `servers[].commands[].results` of the
//! JSON report: key-requests by (proto, command, result). Read from
//! memcached's source (`proto_text.c` process_get_command /
//! process_touch_command / process_arithmetic_command /
//! process_delete_command, `proto_bin.c` process_bin_get_or_touch,
//! `memcached.c` do_store_item / do_add_delta, `items.c` do_item_get) and
//! confirmed command by command against the real server: deltas of
//! `stats` around each command, kept as a test of its own
//! (`memcached_counts_as_the_mapping_says`, below), so that a memcached
//! that counts differently is named as such:
//!
//! | memcached counter | = sum of memtap cells |
//! |---|---|
//! | `get_hits` | `hit` of text `get gets`, binary `get getq getk getkq`, meta `mg` |
//! | `get_misses` | `miss` of the same (includes every `get_expired` and `get_flushed` read) |
//! | `cmd_get` | `get_hits + get_misses`: one per key, a 5,000-key `get` counts 5,000 |
//! | `touch_hits` | `hit` of text `gat gats`, binary `gat gatq gatk gatkq`; `touched` of text and binary `touch` |
//! | `touch_misses` | `miss` of text `gat gats`, binary `gat*`; `not_found` of `touch` |
//! | `cmd_touch` | `touch_hits + touch_misses` (+ `noreply` of text `touch`) |
//! | `cmd_set` | every storage command the server read the data of: `stored not_stored exists not_found noreply` of text `set add replace append prepend cas`, binary `set add replace append prepend` and their quiet forms, meta `ms` |
//! | `delete_hits` / `delete_misses` | `deleted` / `not_found` of text `delete`, binary `delete deleteq`, meta `md` |
//! | `incr_hits` / `incr_misses` | `value` / `not_found` of text `incr`, binary `increment incrementq` |
//! | `decr_hits` / `decr_misses` | `value` / `not_found` of text `decr`, binary `decrement decrementq` |
//! | `cas_hits` / `cas_badval` / `cas_misses` | `stored` / `exists` / `not_found` of text `cas` |
//! | `get_expired`, `get_flushed` | not on the wire (a miss is a miss); counted inside `get_misses` |
//!
//! What the server does that the wire does not show, and how the test
//! deals with it:
//!
//! * `gat`/`gats` count in `touch_*`, never in `get_*` or `cmd_get`.
//! * `noreply` (text): the server counts the hit or miss, the wire shows
//!   nothing. memtap records `noreply`; the test then requires the pair
//!   (hits + misses) exact and each side within the `noreply` count.
//!   Binary quiet commands are exact (memtap resolves them at the next
//!   reply or noop).
//! * `get_expired` / `get_flushed` count every lookup that finds a dead
//!   item — a `get`, but also a `delete`, `incr`, `touch` or a `set` over
//!   it — and only if the LRU maintainer or crawler has not reclaimed the
//!   item first. The servers run with `-o no_lru_crawler,no_lru_maintainer`
//!   so that the libmemcached run's 40 expired and 30 flushed reads are
//!   counted, deterministically; the test checks those totals and that
//!   they are in `get_misses`.
//! * Errors count in nothing: `incr` of a non-numeric value
//!   (`CLIENT_ERROR`), a storage command refused before its data was read
//!   (`SERVER_ERROR object too large`), a `get` after a key over 250 bytes
//!   (keys before it do count).
//! * Binary `set`/`add`/`replace` carrying a nonzero CAS count in `cas_*`
//!   (memcached turns them into a cas), yet on the wire are a `set`;
//!   libmemcached's binary `memcached_cas` is that, so the clients here
//!   use cas in text only. A binary `increment` that creates its item
//!   (initial value, expiration not 0xffffffff) counts in no counter.
//! * Meta `mg` with `T` counts a hit in `touch_hits` but a miss in
//!   `get_misses`; meta `ma` says incr or decr in a flag. Neither client
//!   speaks meta, and memtap's cells do not carry flags.
//!
//! `MEMTAP_COUNTERS_ARGS` adds options to every memtap run (e.g. a small
//! `--memory` to watch what the budget sheds).

mod common;
use common::repo;
use common::server::{capture, free_port, is_root, memcached_with, stats, stop, which, Proc};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_memtap");
const SERVERS: usize = 3;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Skips (printing why) when something is missing; under CI that fails.
fn skip(test: &str, why: &str) -> bool {
    assert!(
        !ci(),
        "{test}: {why} (CI must run it: root, and scripts/setup.sh installs memcached, \
         tcpdump, nutcracker, libmemcached-dev, python3-pymemcache)"
    );
    eprintln!("{test}: skipped: {why}");
    true
}

#[derive(Clone, Copy, PartialEq)]
enum Need {
    LibMemcached,
    PyMemcache,
    Twemproxy,
}

/// Whether the test can run; prints the reason when not.
fn ready(test: &str, needs: &[Need]) -> bool {
    if !is_root() {
        return !skip(test, "needs root (tcpdump on lo)");
    }
    let mut tools = vec!["memcached", "tcpdump"];
    if needs.contains(&Need::LibMemcached) {
        tools.push("cc");
    }
    if needs.contains(&Need::Twemproxy) {
        tools.push("nutcracker");
    }
    for t in tools {
        if which(t).is_none() {
            return !skip(test, &format!("{t} is not installed"));
        }
    }
    if needs.contains(&Need::LibMemcached)
        && !Path::new("/usr/include/libmemcached/memcached.h").is_file()
    {
        return !skip(test, "libmemcached-dev is not installed");
    }
    if needs.contains(&Need::PyMemcache) {
        let ok = Command::new("/usr/bin/python3")
            .args(["-c", "import pymemcache"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return !skip(test, "python3-pymemcache is not installed");
        }
    }
    true
}

// ------------------------------------------------------------ processes

/// Runs a command to completion within `secs`, output to files under
/// `dir` (`name.out`, `name.err`); returns (success, stdout, stderr).
fn run(dir: &Path, name: &str, cmd: &mut Command, secs: u64) -> (bool, String, String) {
    let out = dir.join(format!("{name}.out"));
    let err = dir.join(format!("{name}.err"));
    let mut child = Proc(
        cmd.stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}")),
    );
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let (o, e) = (read(&out), read(&err));
    match status {
        Some(s) => (s.success(), o, e),
        None => panic!("{name}: still running after {secs} s; stderr:\n{e}"),
    }
}

struct Servers {
    ports: Vec<u16>,
    procs: Vec<Proc>,
}

/// Three memcached servers. 64 MiB each, far more than the tests store:
/// nothing is evicted. No LRU maintainer or crawler: dead items stay
/// until a command looks them up, so get_expired and get_flushed count
/// what the clients read (see the module comment).
fn servers() -> Servers {
    let mut ports = Vec::new();
    while ports.len() < SERVERS {
        let p = free_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    let procs = ports
        .iter()
        .map(|&p| {
            memcached_with(
                p,
                &[
                    "-m",
                    "64",
                    "-t",
                    "2",
                    "-o",
                    "no_lru_crawler,no_lru_maintainer",
                ],
            )
        })
        .collect();
    Servers { ports, procs }
}

impl Servers {
    fn list(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn pids(&self) -> String {
        self.procs
            .iter()
            .map(|p| p.0.id().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn stats(&self) -> Vec<BTreeMap<String, i64>> {
        self.ports.iter().map(|&p| stats(p)).collect()
    }
}

/// The C client, compiled once per test.
fn build_c_client(dir: &Path) -> PathBuf {
    let exe = dir.join("libmemcached_load");
    let (ok, _, err) = run(
        dir,
        "cc",
        Command::new("cc")
            .args(["-O1", "-Wall", "-o"])
            .arg(&exe)
            .arg(repo().join("tests/clients/libmemcached_load.c"))
            .arg("-lmemcached"),
        120,
    );
    assert!(ok, "cc libmemcached_load.c: {err}");
    exe
}

/// Runs a client; its stdout is its own tally (JSON).
fn client(dir: &Path, name: &str, cmd: &mut Command) -> Value {
    let t0 = Instant::now();
    let (ok, out, err) = run(dir, name, cmd, 60);
    assert!(ok, "{name} failed: {err}");
    eprintln!("{name}: {:.1} s", t0.elapsed().as_secs_f64());
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{name}: {e}: {out}"))
}

fn py_client(dir: &Path, name: &str, args: &[&str]) -> Value {
    client(
        dir,
        name,
        Command::new("/usr/bin/python3")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg(repo().join("tests/clients/pymemcache_load.py"))
            .args(args),
    )
}

/// twemproxy with one pool over the servers, listening on loopback.
fn nutcracker(dir: &Path, servers: &Servers) -> (Proc, u16) {
    let listen = free_port();
    let stats_port = free_port();
    let conf = dir.join("nutcracker.yml");
    let mut yml = format!(
        "pool:\n  listen: 127.0.0.1:{listen}\n  hash: fnv1a_64\n  distribution: ketama\n  \
         timeout: 10000\n  server_connections: 1\n  servers:\n"
    );
    for p in &servers.ports {
        let _ = writeln!(yml, "   - 127.0.0.1:{p}:1");
    }
    std::fs::write(&conf, yml).unwrap();
    let child = Command::new(which("nutcracker").unwrap())
        .arg("-c")
        .arg(&conf)
        .arg("-o")
        .arg(dir.join("nutcracker.log"))
        .arg("-p")
        .arg(dir.join("nutcracker.pid"))
        .args(["-a", "127.0.0.1", "-s", &stats_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nutcracker");
    let p = Proc(child);
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", listen)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "nutcracker did not start: {}",
            std::fs::read_to_string(dir.join("nutcracker.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (p, listen)
}

// ------------------------------------------------------------ memtap

/// One way of running memtap on a capture. `MEMTAP_COUNTERS_ARGS` adds
/// options to every run (diagnosis);
/// `MEMTAP_KEEP_CAPTURES=1` keeps each capture under
/// `target/test-artifacts/servers_counters/`.
struct Variant {
    label: &'static str,
    mirror: bool,
    workers: u32,
    collectors: u32,
}

const VARIANTS: &[Variant] = &[
    Variant {
        label: "1 worker, 1 collector",
        mirror: false,
        workers: 1,
        collectors: 1,
    },
    Variant {
        label: "--workers 4 --collectors 3",
        mirror: false,
        workers: 4,
        collectors: 3,
    },
    Variant {
        label: "mirror-rewrite --mode all, 4 workers, 3 collectors",
        mirror: true,
        workers: 4,
        collectors: 3,
    },
];

fn mirror(dir: &Path, input: &Path, ports: &[u16]) -> PathBuf {
    let out = input.with_extension("mirror.pcap");
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("scripts/mirror-rewrite.py"))
        .arg(input)
        .arg(&out)
        .args(["--mode", "all", "--seed", "17"]);
    for p in ports {
        cmd.args(["--server-port", &p.to_string()]);
    }
    let (ok, _, err) = run(dir, "mirror-rewrite", &mut cmd, 120);
    assert!(ok, "mirror-rewrite: {err}");
    eprintln!("mirror-rewrite: {}", err.trim());
    out
}

fn replay(dir: &Path, file: &Path, ports: &[u16], v: &Variant) -> Value {
    let mut cmd = Command::new(BIN);
    cmd.arg("replay")
        .arg(file)
        .args(["-f", "json", "--top", "1", "--quiet"])
        .args(["--workers", &v.workers.to_string()])
        .args(["--collectors", &v.collectors.to_string()]);
    for p in ports {
        cmd.args(["--target", &format!("127.0.0.1:{p}")]);
    }
    // For diagnosis: extra options (`-c FILE` with raised limits, say).
    if let Ok(extra) = std::env::var("MEMTAP_COUNTERS_ARGS") {
        cmd.args(extra.split_whitespace());
    }
    let (ok, out, err) = run(dir, "memtap", &mut cmd, 120);
    assert!(ok, "memtap replay {}: {err}", file.display());
    serde_json::from_str(&out).unwrap()
}

/// One server's cells: (proto, command) → result → key-requests (over
/// transports: all of this traffic is TCP).
type Cells = BTreeMap<(String, String), BTreeMap<String, u64>>;

fn cells_of(report: &Value, server: &str) -> Cells {
    let mut out = Cells::new();
    let Some(s) = report["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["server"] == server)
    else {
        return out;
    };
    let cmds = s["commands"]
        .as_array()
        .expect("servers[].commands in memtap's JSON report");
    for c in cmds {
        let e = out
            .entry((
                c["proto"].as_str().unwrap().to_string(),
                c["command"].as_str().unwrap().to_string(),
            ))
            .or_default();
        for (r, n) in c["results"].as_object().unwrap() {
            *e.entry(r.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    out
}

// ------------------------------------------------------------ the mapping

/// Key-requests of some commands of one protocol with some results.
struct Term {
    proto: &'static str,
    commands: &'static [&'static str],
    results: &'static [&'static str],
}

impl Term {
    fn sum(&self, c: &Cells) -> u64 {
        self.commands
            .iter()
            .filter_map(|cmd| c.get(&(self.proto.to_string(), cmd.to_string())))
            .flat_map(|r| self.results.iter().filter_map(|x| r.get(*x)))
            .sum()
    }
}

const fn t(
    proto: &'static str,
    commands: &'static [&'static str],
    results: &'static [&'static str],
) -> Term {
    Term {
        proto,
        commands,
        results,
    }
}

const GET_TEXT: &[&str] = &["get", "gets"];
const GET_BIN: &[&str] = &["get", "getq", "getk", "getkq"];
const GAT_TEXT: &[&str] = &["gat", "gats"];
const GAT_BIN: &[&str] = &["gat", "gatq", "gatk", "gatkq"];
const STORE_TEXT: &[&str] = &["set", "add", "replace", "append", "prepend", "cas"];
const STORE_BIN: &[&str] = &[
    "set", "add", "replace", "append", "prepend", "setq", "addq", "replaceq", "appendq", "prependq",
];
const SET_COUNTED: &[&str] = &["stored", "not_stored", "exists", "not_found", "noreply"];
const HIT: &[&str] = &["hit"];
const MISS: &[&str] = &["miss"];
const HIT_MISS: &[&str] = &["hit", "miss"];
const NOREPLY: &[&str] = &["noreply"];

/// A memcached counter as a sum of memtap terms. Counters of one `family`
/// split the same requests (hits and misses); `ambiguous` are the
/// family's requests memtap cannot place (text `noreply`): the family's
/// sum must be exact and each counter within them.
struct Counter {
    name: &'static str,
    family: &'static str,
    terms: &'static [Term],
    ambiguous: &'static [Term],
}

const fn c(
    name: &'static str,
    family: &'static str,
    terms: &'static [Term],
    ambiguous: &'static [Term],
) -> Counter {
    Counter {
        name,
        family,
        terms,
        ambiguous,
    }
}

const COUNTERS: &[Counter] = &[
    c(
        "get_hits",
        "get",
        &[
            t("text", GET_TEXT, HIT),
            t("binary", GET_BIN, HIT),
            t("meta", &["mg"], HIT),
        ],
        &[],
    ),
    c(
        "get_misses",
        "get",
        &[
            t("text", GET_TEXT, MISS),
            t("binary", GET_BIN, MISS),
            t("meta", &["mg"], MISS),
        ],
        &[],
    ),
    c(
        "cmd_get",
        "cmd_get",
        &[
            t("text", GET_TEXT, HIT_MISS),
            t("binary", GET_BIN, HIT_MISS),
            t("meta", &["mg"], HIT_MISS),
        ],
        &[],
    ),
    c(
        "touch_hits",
        "touch",
        &[
            t("text", GAT_TEXT, HIT),
            t("binary", GAT_BIN, HIT),
            t("text", &["touch"], &["touched"]),
            t("binary", &["touch"], &["touched"]),
        ],
        &[t("text", &["touch"], NOREPLY)],
    ),
    c(
        "touch_misses",
        "touch",
        &[
            t("text", GAT_TEXT, MISS),
            t("binary", GAT_BIN, MISS),
            t("text", &["touch"], &["not_found"]),
            t("binary", &["touch"], &["not_found"]),
        ],
        &[t("text", &["touch"], NOREPLY)],
    ),
    c(
        "cmd_touch",
        "cmd_touch",
        &[
            t("text", GAT_TEXT, HIT_MISS),
            t("binary", GAT_BIN, HIT_MISS),
            t("text", &["touch"], &["touched", "not_found", "noreply"]),
            t("binary", &["touch"], &["touched", "not_found"]),
        ],
        &[],
    ),
    c(
        "cmd_set",
        "cmd_set",
        &[
            t("text", STORE_TEXT, SET_COUNTED),
            t("binary", STORE_BIN, SET_COUNTED),
            t("meta", &["ms"], SET_COUNTED),
        ],
        &[],
    ),
    c(
        "delete_hits",
        "delete",
        &[
            t("text", &["delete"], &["deleted"]),
            t("binary", &["delete", "deleteq"], &["deleted"]),
            t("meta", &["md"], &["deleted"]),
        ],
        &[t("text", &["delete"], NOREPLY)],
    ),
    c(
        "delete_misses",
        "delete",
        &[
            t("text", &["delete"], &["not_found"]),
            t("binary", &["delete", "deleteq"], &["not_found"]),
            t("meta", &["md"], &["not_found"]),
        ],
        &[t("text", &["delete"], NOREPLY)],
    ),
    c(
        "incr_hits",
        "incr",
        &[
            t("text", &["incr"], &["value"]),
            t("binary", &["increment", "incrementq"], &["value"]),
        ],
        &[t("text", &["incr"], NOREPLY)],
    ),
    c(
        "incr_misses",
        "incr",
        &[
            t("text", &["incr"], &["not_found"]),
            t("binary", &["increment", "incrementq"], &["not_found"]),
        ],
        &[t("text", &["incr"], NOREPLY)],
    ),
    c(
        "decr_hits",
        "decr",
        &[
            t("text", &["decr"], &["value"]),
            t("binary", &["decrement", "decrementq"], &["value"]),
        ],
        &[t("text", &["decr"], NOREPLY)],
    ),
    c(
        "decr_misses",
        "decr",
        &[
            t("text", &["decr"], &["not_found"]),
            t("binary", &["decrement", "decrementq"], &["not_found"]),
        ],
        &[t("text", &["decr"], NOREPLY)],
    ),
    c(
        "cas_hits",
        "cas",
        &[t("text", &["cas"], &["stored"])],
        &[t("text", &["cas"], NOREPLY)],
    ),
    c(
        "cas_badval",
        "cas",
        &[t("text", &["cas"], &["exists"])],
        &[t("text", &["cas"], NOREPLY)],
    ),
    c(
        "cas_misses",
        "cas",
        &[t("text", &["cas"], &["not_found"])],
        &[t("text", &["cas"], NOREPLY)],
    ),
];

/// Counters memcached has and the wire does not show.
const NOT_ON_THE_WIRE: &[&str] = &["get_expired", "get_flushed"];

// ------------------------------------------------------------ judging

struct Row {
    counter: &'static str,
    server: String,
    memcached: i64,
    memtap: u64,
    ambiguous: u64,
    ok: bool,
}

/// Compares one report with the servers' deltas; returns the rows.
fn judge(report: &Value, servers: &Servers, delta: &[BTreeMap<String, i64>]) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, port) in servers.ports.iter().enumerate() {
        let server = format!("127.0.0.1:{port}");
        let cells = cells_of(report, &server);
        let d = &delta[i];
        // Families first: a family is right when its sum is exact and
        // each member lies within the ambiguous requests.
        let mut family_ok: BTreeMap<&str, bool> = BTreeMap::new();
        let mut fam_sum: BTreeMap<&str, (i64, u64, u64)> = BTreeMap::new();
        for c in COUNTERS {
            let v = d.get(c.name).copied().unwrap_or(0);
            let m: u64 = c.terms.iter().map(|t| t.sum(&cells)).sum();
            let a: u64 = c.ambiguous.iter().map(|t| t.sum(&cells)).sum();
            let e = fam_sum.entry(c.family).or_default();
            e.0 += v;
            e.1 += m;
            e.2 = a;
        }
        for (f, (v, m, a)) in &fam_sum {
            family_ok.insert(f, *v == (*m + *a) as i64);
        }
        for c in COUNTERS {
            let v = d.get(c.name).copied().unwrap_or(0);
            let m: u64 = c.terms.iter().map(|t| t.sum(&cells)).sum();
            let a: u64 = c.ambiguous.iter().map(|t| t.sum(&cells)).sum();
            let within = v >= m as i64 && v <= (m + a) as i64;
            rows.push(Row {
                counter: c.name,
                server: server.clone(),
                memcached: v,
                memtap: m,
                ambiguous: a,
                ok: within && family_ok[c.family],
            });
        }
    }
    rows
}

const WORK_COUNTERS: &[&str] = &[
    "packets",
    "bytes",
    "files",
    "tcp_segments",
    "tcp_flows",
    "tcp_closed",
    "udp_datagrams",
    "records",
    "ip_fragments",
    "ip_reassembled",
];

/// memtap's health counters that are not 0 and count input given up or
/// special handling, and every server's records that are not an answer.
fn health_line(report: &Value) -> String {
    let mut s = String::new();
    for (k, v) in report["health"].as_object().unwrap() {
        let n = v.as_u64().unwrap_or(0);
        if n > 0 && !WORK_COUNTERS.contains(&k.as_str()) {
            let _ = write!(s, "{k} {n}, ");
        }
    }
    let mut odd: BTreeMap<String, u64> = BTreeMap::new();
    for srv in report["servers"].as_array().unwrap() {
        for c in srv["commands"].as_array().into_iter().flatten() {
            for (r, n) in c["results"].as_object().unwrap() {
                if matches!(
                    r.as_str(),
                    "lost" | "error" | "client_error" | "server_error"
                ) {
                    *odd.entry(format!(
                        "{} {} {r}",
                        c["proto"].as_str().unwrap(),
                        c["command"].as_str().unwrap()
                    ))
                    .or_default() += n.as_u64().unwrap();
                }
            }
        }
    }
    for (k, n) in odd {
        let _ = write!(s, "[{k}: {n}], ");
    }
    if s.is_empty() {
        "nothing given up".into()
    } else {
        s.trim_end_matches(", ").to_string()
    }
}

fn table(title: &str, rows: &[Row], extra: &[(String, String, i64)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n== {title}");
    let _ = writeln!(
        s,
        "{:<14} {:<16} {:>10} {:>18}  ok?",
        "counter", "server", "memcached", "memtap"
    );
    for r in rows {
        let m = if r.ambiguous > 0 {
            format!("{} (+{} noreply)", r.memtap, r.ambiguous)
        } else {
            r.memtap.to_string()
        };
        let _ = writeln!(
            s,
            "{:<14} {:<16} {:>10} {:>18}  {}",
            r.counter,
            r.server,
            r.memcached,
            m,
            if r.ok { "ok" } else { "MISMATCH" }
        );
    }
    for (counter, server, v) in extra {
        let _ = writeln!(
            s,
            "{counter:<14} {server:<16} {v:>10} {:>18}  (in get_misses)",
            "not on the wire"
        );
    }
    s
}

/// The whole check of one client run: deltas, capture, every variant.
/// Returns the printed tables and the mismatching rows.
fn check_run(
    dir: &Path,
    name: &str,
    servers: &Servers,
    delta: &[BTreeMap<String, i64>],
    pcap: &Path,
    tallies: &[Value],
    wire: &[(&str, &str)],
) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut bad = Vec::new();
    let mut mirrored = None;
    for v in VARIANTS {
        let file = if v.mirror {
            mirrored
                .get_or_insert_with(|| mirror(dir, pcap, &servers.ports))
                .clone()
        } else {
            pcap.to_path_buf()
        };
        let t0 = Instant::now();
        let report = replay(dir, &file, &servers.ports, v);
        let took = t0.elapsed().as_secs_f64();
        if !v.mirror && v.workers == 1 {
            // The clients sent what they are meant to (binary mode, quiet
            // commands, ...): memtap names the commands it saw.
            let seen: Vec<(String, String)> = report["commands"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["proto"].as_str().unwrap().to_string(),
                        c["command"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            for (proto, command) in wire {
                if !seen.iter().any(|(p, c)| p == proto && c == command) {
                    bad.push(format!(
                        "{name}: no {proto} {command} in the capture (a client mode did not run)"
                    ));
                }
            }
        }
        let rows = judge(&report, servers, delta);
        let extra: Vec<(String, String, i64)> = NOT_ON_THE_WIRE
            .iter()
            .flat_map(|c| {
                servers.ports.iter().zip(delta).filter_map(|(p, d)| {
                    let n = *d.get(*c).unwrap_or(&0);
                    (n != 0).then(|| (c.to_string(), format!("127.0.0.1:{p}"), n))
                })
            })
            .collect();
        let title = format!("{name} / memtap {} ({took:.1} s)", v.label);
        out += &table(&title, &rows, &extra);
        let _ = writeln!(out, "memtap health: {}", health_line(&report));
        for r in rows.iter().filter(|r| !r.ok) {
            bad.push(format!(
                "{title}: {} {} memcached {} memtap {} (+{} noreply)",
                r.counter, r.server, r.memcached, r.memtap, r.ambiguous
            ));
        }
    }
    let _ = writeln!(out, "client tallies:");
    for t in tallies {
        let _ = writeln!(out, "  {t}");
    }
    (out, bad)
}

/// One client run from start to judgement; fails with the tables.
fn scenario(
    test: &str,
    needs: &[Need],
    wire: &[(&str, &str)],
    drive: impl FnOnce(&Path, &Servers) -> (Vec<Value>, Option<Proc>),
    expect: impl FnOnce(&[BTreeMap<String, i64>]),
) {
    if !ready(test, needs) {
        return;
    }
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let servers = servers();
    // A proxy starts inside the capture (it connects to the servers at
    // its first request) and stops before the capture ends, so that every
    // connection's open and close are in the capture.
    let before = servers.stats();
    let cap = capture(dir.path(), test, &servers.ports);
    let (tallies, proxy) = drive(dir.path(), &servers);
    if let Some(mut p) = proxy {
        stop(&mut p, "TERM");
    }
    let pcap = cap.finish();
    let after = servers.stats();
    let delta: Vec<BTreeMap<String, i64>> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| {
            a.iter()
                .map(|(k, v)| (k.clone(), v - b.get(k).unwrap_or(&0)))
                .collect()
        })
        .collect();
    // Every counter of the mapping was exercised.
    for c in COUNTERS {
        assert!(
            total(&delta, c.name) > 0,
            "{test}: the load never moved {}",
            c.name
        );
    }
    expect(&delta);
    let (tables, bad) = check_run(dir.path(), test, &servers, &delta, &pcap, &tallies, wire);
    eprintln!("{tables}");
    eprintln!("{test}: {:.1} s in all", t0.elapsed().as_secs_f64());
    if std::env::var_os("MEMTAP_KEEP_CAPTURES").is_some() {
        let keep = repo().join("target/test-artifacts/servers_counters");
        std::fs::create_dir_all(&keep).unwrap();
        let _ = std::fs::copy(&pcap, keep.join(pcap.file_name().unwrap()));
        eprintln!("capture kept in {}", keep.display());
    }
    assert!(
        bad.is_empty(),
        "{test}: memtap disagrees with the servers' own counters in {} rows:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

fn total(delta: &[BTreeMap<String, i64>], counter: &str) -> i64 {
    delta
        .iter()
        .map(|d| d.get(counter).copied().unwrap_or(0))
        .sum()
}

// ------------------------------------------------------------ the tests

/// The control: a little of everything, always waiting for replies,
/// multi-gets of 20 keys, from both clients. Nothing here is beyond what
/// memtap already does, so this proves the harness (stats deltas,
/// capture, mapping) before the heavy runs are judged.
#[test]
fn control_small_traffic_matches_server_counters() {
    scenario(
        "control",
        &[Need::LibMemcached, Need::PyMemcache],
        &[
            ("text", "get"),
            ("text", "gets"),
            ("text", "cas"),
            ("text", "touch"),
            ("binary", "getkq"),
            ("binary", "noop"),
            ("binary", "touch"),
            ("binary", "increment"),
        ],
        |dir, s| {
            let c = build_c_client(dir);
            let a = client(
                dir,
                "libmemcached_small",
                Command::new(&c).args(["small", &s.list()]),
            );
            let b = py_client(dir, "pymemcache_small", &["small", &s.list()]);
            (vec![a, b], None)
        },
        |d| {
            assert!(total(d, "cmd_get") > 0 && total(d, "cmd_set") > 0);
            assert_eq!(total(d, "get_expired") + total(d, "get_flushed"), 0);
        },
    );
}

/// (a) libmemcached against the servers: 5,000-key text mget, binary
/// (getkq + noop), buffered, noreply (text and binary), cas, incr/decr,
/// touch, delete, expired and flushed reads.
#[test]
fn libmemcached_matches_server_counters() {
    scenario(
        "libmemcached",
        &[Need::LibMemcached],
        &[
            ("text", "get"),
            ("text", "gets"),
            ("text", "cas"),
            ("text", "touch"),
            ("text", "flush_all"),
            ("binary", "getkq"),
            ("binary", "noop"),
            ("binary", "setq"),
            ("binary", "deleteq"),
            ("binary", "incrementq"),
            ("binary", "touch"),
        ],
        |dir, s| {
            let c = build_c_client(dir);
            let a = client(
                dir,
                "libmemcached_direct",
                Command::new(&c).args(["direct", &s.list()]),
            );
            (vec![a], None)
        },
        |d| {
            // The client read 40 items after they expired and 30 after
            // flush_all; with no LRU maintainer the servers count each.
            assert_eq!(total(d, "get_expired"), 40, "get_expired");
            assert_eq!(total(d, "get_flushed"), 30, "get_flushed");
            assert_eq!(total(d, "cmd_flush"), SERVERS as i64);
        },
    );
}

/// (b) pymemcache against the servers: HashClient and plain clients,
/// default_noreply on and off.
#[test]
fn pymemcache_matches_server_counters() {
    scenario(
        "pymemcache",
        &[Need::PyMemcache],
        &[
            ("text", "get"),
            ("text", "gets"),
            ("text", "cas"),
            ("text", "touch"),
            ("text", "append"),
        ],
        |dir, s| {
            (
                vec![py_client(dir, "pymemcache_direct", &["direct", &s.list()])],
                None,
            )
        },
        |d| assert_eq!(total(d, "get_expired") + total(d, "get_flushed"), 0),
    );
}

/// (c) twemproxy in front of the servers: the C client's 6,000-key mget
/// and 64 pymemcache connections at once; the proxy's one connection per
/// server carries every client's requests pipelined. One round of
/// get_many goes out while the servers are stopped (SIGSTOP, 0.5 s), so
/// each server connection holds a TCP window of requests (about 20,000
/// keys) before the first answer, on any machine.
#[test]
fn twemproxy_matches_server_counters() {
    scenario(
        "twemproxy",
        &[Need::Twemproxy, Need::LibMemcached, Need::PyMemcache],
        &[
            ("text", "get"),
            ("text", "gets"),
            ("text", "cas"),
            ("text", "touch"),
        ],
        |dir, s| {
            let c = build_c_client(dir);
            let (proxy, port) = nutcracker(dir, s);
            let addr = format!("127.0.0.1:{port}");
            let a = client(
                dir,
                "libmemcached_proxy",
                Command::new(&c).args(["proxy", &addr]),
            );
            let b = py_client(
                dir,
                "pymemcache_proxy",
                &["proxy", &addr, "--threads", "64", "--pause", &s.pids()],
            );
            (vec![a, b], Some(proxy))
        },
        |d| {
            // One connection per server from the proxy, and the client's.
            assert!(
                total(d, "cmd_get") > 50_000,
                "cmd_get {}",
                total(d, "cmd_get")
            );
        },
    );
}

// ------------------------------------------------------------ the mapping's evidence

/// Every counter the mapping uses, and the two it cannot.
const PROBED: &[&str] = &[
    "cmd_get",
    "cmd_set",
    "cmd_touch",
    "get_hits",
    "get_misses",
    "get_expired",
    "get_flushed",
    "delete_hits",
    "delete_misses",
    "incr_hits",
    "incr_misses",
    "decr_hits",
    "decr_misses",
    "cas_hits",
    "cas_misses",
    "cas_badval",
    "touch_hits",
    "touch_misses",
];

/// Sends `req` then a sentinel (text `version`, binary noop) on `s`, and
/// reads until the sentinel's answer: every reply of `req` has come.
fn exchange(s: &mut TcpStream, req: &[u8], binary: bool) -> Vec<u8> {
    s.write_all(req).unwrap();
    let noop = [
        0x80, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    s.write_all(if binary { &noop } else { b"version\r\n" })
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let done = if binary {
            buf.len() >= 24 && buf[buf.len() - 24] == 0x81 && buf[buf.len() - 23] == 0x0a
        } else {
            buf.ends_with(b"\r\n")
                && buf[..buf.len() - 2]
                    .rsplit(|&b| b == b'\n')
                    .next()
                    .is_some_and(|l| l.starts_with(b"VERSION "))
        };
        if done {
            return buf;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "connection closed after {:?}",
            String::from_utf8_lossy(req)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A binary request: opcode, key, extras, value, cas.
fn bin(op: u8, key: &[u8], extras: &[u8], value: &[u8], cas: u64) -> Vec<u8> {
    let body = (key.len() + extras.len() + value.len()) as u32;
    let mut v = vec![0x80, op];
    v.extend_from_slice(&(key.len() as u16).to_be_bytes());
    v.push(extras.len() as u8);
    v.extend_from_slice(&[0, 0, 0]);
    v.extend_from_slice(&body.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    v.extend_from_slice(&cas.to_be_bytes());
    v.extend_from_slice(extras);
    v.extend_from_slice(key);
    v.extend_from_slice(value);
    v
}

/// The mapping's evidence, kept true: each command alone against a real
/// memcached, and the counters it moved (every other counter of `PROBED`
/// must stay put). If Debian's memcached ever counts differently, this
/// says where, before the comparisons above go wrong for that reason.
#[test]
fn memcached_counts_as_the_mapping_says() {
    if !ready("mapping", &[]) {
        return;
    }
    let port = free_port();
    let _server = memcached_with(
        port,
        &["-m", "64", "-o", "no_lru_crawler,no_lru_maintainer"],
    );
    let mut text = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut binary = TcpStream::connect(("127.0.0.1", port)).unwrap();
    for s in [&text, &binary] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    let exp = |secs: u32| secs.to_be_bytes().to_vec();
    let arith = |delta: u64, initial: u64, exptime: u32| {
        let mut e = delta.to_be_bytes().to_vec();
        e.extend_from_slice(&initial.to_be_bytes());
        e.extend_from_slice(&exptime.to_be_bytes());
        e
    };
    let flags_exp = [0u8; 8];
    let long_key = "k".repeat(300);
    // An item and its cas id, for the cas step.
    let r = exchange(&mut text, b"set cc 0 0 1\r\ny\r\ngets cc\r\n", false);
    let line = String::from_utf8_lossy(&r)
        .lines()
        .find(|l| l.starts_with("VALUE cc "))
        .unwrap()
        .to_string();
    let cas: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    // And one over binary, with the cas id its set answer carries.
    let r = exchange(&mut binary, &bin(0x01, b"x", &[0u8; 8], b"v", 0), true);
    let cas_x = u64::from_be_bytes(r[16..24].try_into().unwrap());
    let mut failures = Vec::new();
    let mut step = |what: &str, binary_conn: bool, req: Vec<u8>, want: &[(&str, i64)]| {
        let a = stats(port);
        let s = if binary_conn { &mut binary } else { &mut text };
        exchange(s, &req, binary_conn);
        let b = stats(port);
        let got: BTreeMap<&str, i64> = PROBED
            .iter()
            .map(|k| (*k, b[*k] - a[*k]))
            .filter(|(_, d)| *d != 0)
            .collect();
        let want: BTreeMap<&str, i64> = want.iter().copied().collect();
        if got != want {
            failures.push(format!(
                "{what}: memcached counted {got:?}, the mapping says {want:?}"
            ));
        }
    };
    let t = |s: &str| s.as_bytes().to_vec();
    step(
        "set a, n",
        false,
        t("set a 0 0 1\r\nx\r\nset n 0 0 2\r\n10\r\n"),
        &[("cmd_set", 2)],
    );
    step(
        "get a b c: per key",
        false,
        t("get a b c\r\n"),
        &[("cmd_get", 3), ("get_hits", 1), ("get_misses", 2)],
    );
    step(
        "gets a b",
        false,
        t("gets a b\r\n"),
        &[("cmd_get", 2), ("get_hits", 1), ("get_misses", 1)],
    );
    step(
        "gat 100 a b: touch, not get",
        false,
        t("gat 100 a b\r\n"),
        &[("cmd_touch", 2), ("touch_hits", 1), ("touch_misses", 1)],
    );
    step(
        "gats 100 a b",
        false,
        t("gats 100 a b\r\n"),
        &[("cmd_touch", 2), ("touch_hits", 1), ("touch_misses", 1)],
    );
    step(
        "touch a, touch zz, touch a noreply",
        false,
        t("touch a 100\r\ntouch zz 100\r\ntouch a 100 noreply\r\n"),
        &[("cmd_touch", 3), ("touch_hits", 2), ("touch_misses", 1)],
    );
    step(
        "incr n, incr zz, incr a (non-numeric: nothing)",
        false,
        t("incr n 1\r\nincr zz 1\r\nincr a 1\r\n"),
        &[("incr_hits", 1), ("incr_misses", 1)],
    );
    step(
        "decr n, decr zz, noreply",
        false,
        t("decr n 1\r\ndecr zz 1\r\ndecr n 1 noreply\r\n"),
        &[("decr_hits", 2), ("decr_misses", 1)],
    );
    step(
        "delete a, delete zz noreply",
        false,
        t("delete a\r\ndelete zz noreply\r\n"),
        &[("delete_hits", 1), ("delete_misses", 1)],
    );
    step(
        "cas good, stale, missing, stale noreply",
        false,
        t(&format!(
            "cas cc 0 0 1 {cas}\r\nz\r\ncas cc 0 0 1 {cas}\r\nz\r\ncas zz 0 0 1 5\r\nz\r\n\
             cas cc 0 0 1 1 noreply\r\nz\r\n"
        )),
        &[
            ("cmd_set", 4),
            ("cas_hits", 1),
            ("cas_badval", 2),
            ("cas_misses", 1),
        ],
    );
    step(
        "add existing, replace/append missing, prepend: cmd_set whatever the result",
        false,
        t("add c 0 0 1\r\nq\r\nreplace zz 0 0 1\r\nq\r\nappend zz 0 0 1\r\nq\r\nprepend c 0 0 1\r\nq\r\n"),
        &[("cmd_set", 4)],
    );
    step(
        "set too large: refused before the data, counts nothing",
        false,
        [
            t("set big 0 0 2000000\r\n"),
            vec![b'x'; 2_000_000],
            t("\r\n"),
        ]
        .concat(),
        &[],
    );
    step(
        "get a, key over 250 bytes, b: counts the keys before it",
        false,
        t(&format!("get a {long_key} b\r\n")),
        &[("cmd_get", 1), ("get_misses", 1)],
    );
    step(
        "meta ms, mg hit and miss",
        false,
        t("ms m 1\r\nx\r\nmg m v\r\nmg zz v\r\n"),
        &[
            ("cmd_set", 1),
            ("cmd_get", 2),
            ("get_hits", 1),
            ("get_misses", 1),
        ],
    );
    step(
        "meta mg T: a hit is a touch, a miss a get miss",
        false,
        t("mg m T30 v\r\nmg zz T30 v\r\n"),
        &[
            ("cmd_touch", 1),
            ("touch_hits", 1),
            ("cmd_get", 1),
            ("get_misses", 1),
        ],
    );
    step(
        "meta md hit and miss",
        false,
        t("md m\r\nmd zz\r\n"),
        &[("delete_hits", 1), ("delete_misses", 1)],
    );
    step(
        "meta ma miss, incr, decr",
        false,
        t("ma zz\r\nset n2 0 0 1\r\n5\r\nma n2\r\nma n2 MD\r\n"),
        &[
            ("cmd_set", 1),
            ("incr_misses", 1),
            ("incr_hits", 1),
            ("decr_hits", 1),
        ],
    );
    // Binary, on a connection of its own.
    step(
        "binary set y",
        true,
        bin(0x01, b"y", &flags_exp, b"v", 0),
        &[("cmd_set", 1)],
    );
    step(
        "binary get x, getk zz, getq x zz, getkq x zz",
        true,
        [
            bin(0x00, b"x", &[], &[], 0),
            bin(0x0c, b"zz", &[], &[], 0),
            bin(0x09, b"x", &[], &[], 0),
            bin(0x09, b"zz", &[], &[], 0),
            bin(0x0d, b"x", &[], &[], 0),
            bin(0x0d, b"zz", &[], &[], 0),
        ]
        .concat(),
        &[("cmd_get", 6), ("get_hits", 3), ("get_misses", 3)],
    );
    step(
        "binary touch x zz, gat x zz, gatq zz, gatkq x",
        true,
        [
            bin(0x1c, b"x", &exp(100), &[], 0),
            bin(0x1c, b"zz", &exp(100), &[], 0),
            bin(0x1d, b"x", &exp(100), &[], 0),
            bin(0x1d, b"zz", &exp(100), &[], 0),
            bin(0x1e, b"zz", &exp(100), &[], 0),
            bin(0x24, b"x", &exp(100), &[], 0),
        ]
        .concat(),
        &[("cmd_touch", 6), ("touch_hits", 3), ("touch_misses", 3)],
    );
    step(
        "binary set with a CAS: a cas (hit, then missing)",
        true,
        [
            bin(0x01, b"x", &flags_exp, b"w", cas_x),
            bin(0x01, b"zz", &flags_exp, b"w", 1),
        ]
        .concat(),
        &[("cmd_set", 2), ("cas_hits", 1), ("cas_misses", 1)],
    );
    step(
        "binary increment: non-numeric (nothing), missing",
        true,
        [
            bin(0x05, b"x", &arith(1, 0, 0xffff_ffff), &[], 0),
            bin(0x05, b"zz", &arith(1, 0, 0xffff_ffff), &[], 0),
        ]
        .concat(),
        &[("incr_misses", 1)],
    );
    step(
        "binary increment creating its item: counts nothing",
        true,
        bin(0x05, b"c2", &arith(1, 7, 0), &[], 0),
        &[],
    );
    step(
        "binary increment hit, decrementq miss and hit",
        true,
        [
            bin(0x05, b"c2", &arith(1, 0, 0xffff_ffff), &[], 0),
            bin(0x16, b"zz", &arith(1, 0, 0xffff_ffff), &[], 0),
            bin(0x16, b"c2", &arith(1, 0, 0xffff_ffff), &[], 0),
        ]
        .concat(),
        &[("incr_hits", 1), ("decr_misses", 1), ("decr_hits", 1)],
    );
    step(
        "binary delete hit, deleteq miss, setq, addq existing",
        true,
        [
            bin(0x04, b"c2", &[], &[], 0),
            bin(0x14, b"c2", &[], &[], 0),
            bin(0x11, b"y", &flags_exp, b"v", 0),
            bin(0x12, b"y", &flags_exp, b"v", 0),
        ]
        .concat(),
        &[("delete_hits", 1), ("delete_misses", 1), ("cmd_set", 2)],
    );
    // Dead items: counted by whatever command finds them.
    let five: String = (0..5).map(|i| format!("set e{i} 0 1 1\r\nq\r\n")).collect();
    step("five items living 1 s", false, t(&five), &[("cmd_set", 5)]);
    std::thread::sleep(Duration::from_millis(2200));
    step(
        "get, delete, incr, touch, set of expired items",
        false,
        t("get e0\r\ndelete e1\r\nincr e2 1\r\ntouch e3 10\r\nset e4 0 0 1\r\nq\r\n"),
        &[
            ("get_expired", 5),
            ("cmd_get", 1),
            ("get_misses", 1),
            ("delete_misses", 1),
            ("incr_misses", 1),
            ("cmd_touch", 1),
            ("touch_misses", 1),
            ("cmd_set", 1),
        ],
    );
    step(
        "set f0 f1",
        false,
        t("set f0 0 0 1\r\nq\r\nset f1 0 0 1\r\nq\r\n"),
        &[("cmd_set", 2)],
    );
    step("flush_all", false, t("flush_all\r\n"), &[]);
    step(
        "get, delete of flushed items",
        false,
        t("get f0\r\ndelete f1\r\n"),
        &[
            ("get_flushed", 2),
            ("cmd_get", 1),
            ("get_misses", 1),
            ("delete_misses", 1),
        ],
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
