//! Prometheus text exposition format, version 0.0.4.
//!
//! [`render`] appends one scrape's worth of metrics to the caller's
//! `String`. Every family gets a `# HELP` and a `# TYPE` line and is emitted
//! once; families always come in the same order, and so do the series
//! within a family, so two renders of the same tables are byte-identical.
//!
//! # What is exported
//!
//! From the whole run (`ExportInput::run`), as counters:
//!
//! * `memtap_requests_total{proto,transport,command}`: key-requests (one
//!   per key of a multi-key command, `CommandCounts::requests`), and
//!   `memtap_commands_total{proto,transport,command}`: commands on the wire
//!   (`CommandCounts::count`). The tables do not break requests down by
//!   server, command and result *jointly*, so there is no
//!   `{server,...,result}` family: each breakdown the tables hold exactly
//!   is its own family instead, and none is estimated.
//! * `memtap_results_total{result}`: key-requests per outcome, every
//!   outcome always present (zeros included).
//! * `memtap_server_{requests,hits,misses,errors,bytes_in,bytes_out}_total
//!   {server}`: per server address (bytes are value bytes, as in the
//!   report).
//! * `memtap_request_latency_seconds` and `memtap_value_size_bytes`:
//!   histograms with one bucket per log2 class of the run's distributions
//!   (see [`LATENCY_CLASSES`] and [`VALUE_SIZE_CLASSES`]). The classes keep
//!   no exact sum, so `_sum` is the sum of class midpoints: an estimate
//!   between 3/4 and 3/2 of the true sum (each class spans a factor 2), and
//!   said so in the HELP text.
//! * every health counter of [`Counters`] as `memtap_<name>_total`.
//!
//! As gauges: `memtap_build_info{version} 1`, and the top `top` of the
//! last closed window (nothing at all when there is none yet):
//!
//! * `memtap_top_key_{requests,bytes,misses}{key,server}`: the `top` keys
//!   with the most requests, each with its first server (the smallest
//!   address it was seen on); the three families share one ranking, so
//!   their series join one to one. Requests are the heavy-hitter estimate
//!   (`Entry::count`, an upper bound), as in the report.
//! * `memtap_top_key_client_requests{key,client}`: the per-key top clients
//!   of those keys (at most [`KEY_CLIENTS`] each).
//! * `memtap_top_client_requests{client}`: the `top` clients.
//!
//! There is no rank label (it would make a new series whenever two keys
//! swap places). Keys are redacted and escaped exactly as the report shows
//! them ([`crate::report::key_string`]: non-printable bytes as `\xNN`, so
//! the output is always UTF-8), then escaped for a label value and cut to
//! [`MAX_LABEL_BYTES`]. Keys that end up with the same label (a redaction
//! or the cut made them equal) are summed into one series, as Prometheus
//! rejects duplicate series.

use crate::collect::heavy::Entry;
use crate::collect::hist::{class_le, class_of, Log2Hist};
use crate::collect::redact::Redact;
use crate::collect::tables::{ClientId, KeyStats, Tables, KEY_CLIENTS};
use crate::protocol::Outcome;
use crate::stats::Counters;
use std::fmt::Write;

/// What one scrape renders.
pub struct ExportInput<'a> {
    /// The whole run so far: counters and histograms.
    pub run: &'a Tables,
    /// The last closed window, for the top-N gauges; `None` before the
    /// first window closes (no top-N series then).
    pub last_window: Option<&'a Tables>,
    pub counters: &'a Counters,
    /// Keys and clients in the top-N gauges; 0 = none.
    pub top: usize,
    pub redact: &'a Redact,
    /// Reported by `memtap_build_info`.
    pub version: &'a str,
}

/// The longest label value written for a key, in bytes of the escaped
/// value as it appears between the quotes, the "…" that marks a cut
/// included. A cut never splits a character or an escape sequence.
pub const MAX_LABEL_BYTES: usize = 128;

/// Latency buckets: log2 classes 0..=26 of microseconds, the last one
/// ending at 2^26 - 1 µs (about 67 s). Slower requests count only in
/// `+Inf`.
pub const LATENCY_CLASSES: usize = 27;

/// Value size buckets: log2 classes 0..=30 of bytes, the last one ending
/// at 2^30 - 1 bytes (memcached's largest possible item is 1 GiB). Larger
/// values count only in `+Inf`.
pub const VALUE_SIZE_CLASSES: usize = 31;

/// Per-server counter families.
const SERVER_FAMILIES: usize = 6;
/// Top-key gauge families sharing one ranking (requests, bytes, misses).
const TOP_KEY_FAMILIES: usize = 3;

/// The most series one [`render`] can write (histograms count each bucket,
/// `+Inf`, `_sum` and `_count` as series; `build_info` counts one):
///
/// ```text
///   1                                build_info
/// + 2 × commands                     requests_total, commands_total
/// + Outcome::ALL.len()               results_total (every outcome, always)
/// + 6 × servers                      server_* counters
/// + (LATENCY_CLASSES + 3)
/// + (VALUE_SIZE_CLASSES + 3)         the two histograms
/// + number of Counters fields        health counters
/// + top × (3 + 1 + KEY_CLIENTS)      top keys (3 gauges each), top clients,
///                                    and each top key's own top clients
/// ```
///
/// `commands` is the number of distinct (proto, transport, command)
/// triples and `servers` the number of server addresses in the run's
/// tables: both are bounded by the protocol and the watched targets, not
/// by the traffic, so with `top` fixed the output is bounded however many
/// keys and clients pass. Merging colliding key labels only lowers the
/// count.
pub fn worst_case_series(top: usize, servers: usize, commands: usize) -> usize {
    1 + 2 * commands
        + Outcome::ALL.len()
        + SERVER_FAMILIES * servers
        + (LATENCY_CLASSES + 3)
        + (VALUE_SIZE_CLASSES + 3)
        + Counters::default().iter().count()
        + top * (TOP_KEY_FAMILIES + 1 + KEY_CLIENTS)
}

/// Appends the exposition of `s` to `out`.
pub fn render(out: &mut String, s: &ExportInput<'_>) {
    let run = s.run;

    family(
        out,
        "memtap_build_info",
        "gauge",
        "memtap version that produced these metrics (always 1).",
    );
    sample(out, "memtap_build_info", &[("version", s.version)], 1);

    let mut commands: Vec<_> = run.commands.iter().collect();
    commands.sort_unstable_by(|a, b| a.0.cmp(b.0));
    family(
        out,
        "memtap_requests_total",
        "counter",
        "Key-requests (one per key of a multi-key command) by protocol, transport and command.",
    );
    for (id, c) in &commands {
        let l = [
            ("proto", id.proto),
            ("transport", id.transport),
            ("command", id.command),
        ];
        sample(out, "memtap_requests_total", &l, c.requests);
    }
    family(
        out,
        "memtap_commands_total",
        "counter",
        "Commands on the wire by protocol, transport and command.",
    );
    for (id, c) in &commands {
        let l = [
            ("proto", id.proto),
            ("transport", id.transport),
            ("command", id.command),
        ];
        sample(out, "memtap_commands_total", &l, c.count);
    }

    family(
        out,
        "memtap_results_total",
        "counter",
        "Key-requests by outcome.",
    );
    for (o, &n) in Outcome::ALL.iter().zip(run.results.iter()) {
        sample(out, "memtap_results_total", &[("result", o.as_str())], n);
    }

    let mut servers: Vec<_> = run.servers.iter().collect();
    servers.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut addr = String::new();
    type Field = fn(&crate::collect::tables::Traffic) -> u64;
    let server_families: [(&str, &str, Field); SERVER_FAMILIES] = [
        (
            "memtap_server_requests_total",
            "Key-requests by server.",
            |t| t.requests,
        ),
        (
            "memtap_server_hits_total",
            "Retrieval hits by server.",
            |t| t.hits,
        ),
        (
            "memtap_server_misses_total",
            "Retrieval misses by server.",
            |t| t.misses,
        ),
        (
            "memtap_server_errors_total",
            "Error responses (ERROR, CLIENT_ERROR, SERVER_ERROR) by server.",
            |t| t.errors,
        ),
        (
            "memtap_server_bytes_in_total",
            "Value bytes sent to the server (storage payloads).",
            |t| t.bytes_in,
        ),
        (
            "memtap_server_bytes_out_total",
            "Value bytes returned by the server (retrievals).",
            |t| t.bytes_out,
        ),
    ];
    for (name, help, field) in server_families {
        family(out, name, "counter", help);
        for (a, t) in &servers {
            addr.clear();
            let _ = write!(addr, "{a}");
            sample(out, name, &[("server", &addr)], field(t));
        }
    }

    histogram(
        out,
        "memtap_request_latency_seconds",
        "Request latency (last request byte to last response byte) in log2 classes of microseconds; _sum is estimated from class midpoints.",
        &run.latency_us,
        LATENCY_CLASSES,
        6,
    );
    histogram(
        out,
        "memtap_value_size_bytes",
        "Value size of key-requests carrying a value, in log2 classes; _sum is estimated from class midpoints.",
        &run.value_size,
        VALUE_SIZE_CLASSES,
        0,
    );

    let mut name = String::new();
    for (field, v) in s.counters.iter() {
        name.clear();
        let _ = write!(name, "memtap_{field}_total");
        let _ = writeln!(
            out,
            "# HELP {name} Health counter {field} (see memtap::stats::Counters)."
        );
        let _ = writeln!(out, "# TYPE {name} counter");
        sample(out, &name, &[], v);
    }

    if let Some(w) = s.last_window {
        top_keys(out, w, s.top, s.redact);
        family(
            out,
            "memtap_top_client_requests",
            "gauge",
            "Requests of the top clients in the last closed window.",
        );
        for e in w.clients.top_n(s.top, |e| e.count()) {
            addr.clear();
            let _ = write!(addr, "{}", ClientId::from_bytes(e.key()).render());
            sample(
                out,
                "memtap_top_client_requests",
                &[("client", &addr)],
                e.count(),
            );
        }
    }
}

/// One top key as exported, after redaction and the cut.
struct TopKey {
    /// Rank of its first (best) key; keys merged into it rank lower.
    rank: usize,
    key: String,
    server: String,
    requests: u64,
    bytes: u64,
    misses: u64,
    clients: Vec<(ClientId, u64)>,
}

fn top_keys(out: &mut String, w: &Tables, top: usize, redact: &Redact) {
    let ranked: Vec<&Entry<KeyStats>> = w.keys.top_n(top, |e| e.count());
    let mut rows: Vec<TopKey> = ranked
        .iter()
        .enumerate()
        .map(|(rank, e)| {
            let st = &e.stats;
            TopKey {
                rank,
                key: limit_label(&crate::report::key_string(e.key(), redact)),
                server: st
                    .servers
                    .sorted()
                    .first()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                requests: e.count(),
                bytes: st.traffic.bytes_in + st.traffic.bytes_out,
                misses: st.traffic.misses,
                clients: st.clients.iter().copied().collect(),
            }
        })
        .collect();
    // Merge rows whose labels collide (stable: the best rank leads).
    rows.sort_by(|a, b| (&a.key, &a.server).cmp(&(&b.key, &b.server)));
    let mut merged: Vec<TopKey> = Vec::with_capacity(rows.len());
    for r in rows {
        match merged.last_mut() {
            Some(m) if m.key == r.key && m.server == r.server => {
                m.rank = m.rank.min(r.rank);
                m.requests += r.requests;
                m.bytes += r.bytes;
                m.misses += r.misses;
                m.clients.extend(r.clients);
            }
            _ => merged.push(r),
        }
    }
    merged.sort_unstable_by_key(|r| r.rank);
    for r in &mut merged {
        // One series per client, most requests first.
        r.clients.sort_unstable_by_key(|c| c.0);
        r.clients.dedup_by(|b, a| {
            let same = a.0 == b.0;
            if same {
                a.1 += b.1;
            }
            same
        });
        r.clients.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }

    type Value = fn(&TopKey) -> u64;
    let families: [(&str, &str, Value); TOP_KEY_FAMILIES] = [
        (
            "memtap_top_key_requests",
            "Requests (heavy-hitter estimate) of the top keys in the last closed window.",
            |r| r.requests,
        ),
        (
            "memtap_top_key_bytes",
            "Value bytes in and out of the top keys in the last closed window.",
            |r| r.bytes,
        ),
        (
            "memtap_top_key_misses",
            "Misses of the top keys in the last closed window.",
            |r| r.misses,
        ),
    ];
    for (name, help, value) in families {
        family(out, name, "gauge", help);
        for r in &merged {
            sample(
                out,
                name,
                &[("key", &r.key), ("server", &r.server)],
                value(r),
            );
        }
    }
    family(
        out,
        "memtap_top_key_client_requests",
        "gauge",
        "Requests of each top key's own top clients in the last closed window.",
    );
    let mut client = String::new();
    for r in &merged {
        for (c, n) in &r.clients {
            client.clear();
            let _ = write!(client, "{}", c.render());
            sample(
                out,
                "memtap_top_key_client_requests",
                &[("key", &r.key), ("client", &client)],
                *n,
            );
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// `name{l="v",...} value`, label values escaped.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], v: u64) {
    out.push_str(name);
    write_labels(out, labels);
    let _ = writeln!(out, " {v}");
}

fn write_labels(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label(out, v);
        out.push('"');
    }
    out.push('}');
}

/// Label value escaping of the text format: `\` → `\\`, `"` → `\"`,
/// newline → `\n`.
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escaped_len(c: char) -> usize {
    match c {
        '\\' | '"' | '\n' => 2,
        c => c.len_utf8(),
    }
}

/// Cuts a key string so that its escaped label value fits in
/// [`MAX_LABEL_BYTES`], "…" included. A `\xNN` sequence of the key string
/// is kept or dropped whole.
fn limit_label(k: &str) -> String {
    const MORE: &str = "\u{2026}";
    if k.chars().map(escaped_len).sum::<usize>() <= MAX_LABEL_BYTES {
        return k.to_string();
    }
    let budget = MAX_LABEL_BYTES - MORE.len();
    let b = k.as_bytes();
    let (mut used, mut end) = (0, 0);
    while end < k.len() {
        let hex = |i: usize| b.get(i).is_some_and(u8::is_ascii_hexdigit);
        let (bytes, cost) =
            if b[end] == b'\\' && b.get(end + 1) == Some(&b'x') && hex(end + 2) && hex(end + 3) {
                (4, 5)
            } else {
                let c = k[end..].chars().next().expect("in bounds");
                (c.len_utf8(), escaped_len(c))
            };
        if used + cost > budget {
            break;
        }
        used += cost;
        end += bytes;
    }
    let mut s = String::with_capacity(end + MORE.len());
    s.push_str(&k[..end]);
    s.push_str(MORE);
    s
}

/// Writes `n / 10^d` exactly, without trailing zeros.
fn write_scaled(out: &mut String, n: u128, d: u32) {
    let p = 10u128.pow(d);
    let (int, mut frac, mut d) = (n / p, n % p, d as usize);
    let _ = write!(out, "{int}");
    if frac != 0 {
        while frac % 10 == 0 {
            frac /= 10;
            d -= 1;
        }
        let _ = write!(out, ".{frac:0d$}");
    }
}

/// A cumulative histogram over log2 classes `0..classes`; `d` is the
/// power of ten dividing the class unit into the exported base unit (6:
/// µs → s).
fn histogram(out: &mut String, name: &str, help: &str, h: &Log2Hist, classes: usize, d: u32) {
    family(out, name, "histogram", help);
    let mut it = h.classes().map(|(le, n)| (class_of(le), n)).peekable();
    let mut cum = 0u64;
    // Twice the sum of class midpoints, in class units.
    let mut twice_sum = 0u128;
    let mut add = |i: usize, n: u64, cum: &mut u64| {
        *cum += n;
        let twice_mid = if i == 0 {
            0
        } else {
            3u128 * (1u128 << (i - 1)) - 1
        };
        twice_sum = twice_sum.saturating_add(twice_mid.saturating_mul(n as u128));
    };
    for i in 0..classes {
        while let Some(&(c, n)) = it.peek() {
            if c > i {
                break;
            }
            add(c, n, &mut cum);
            it.next();
        }
        out.push_str(name);
        out.push_str("_bucket{le=\"");
        write_scaled(out, class_le(i) as u128, d);
        let _ = writeln!(out, "\"}} {cum}");
    }
    for (c, n) in it {
        add(c, n, &mut cum);
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
    let _ = write!(out, "{name}_sum ");
    // sum = twice_sum / 2 units = twice_sum * 5 / 10^(d + 1) base units.
    write_scaled(out, twice_sum.saturating_mul(5), d + 1);
    out.push('\n');
    let _ = writeln!(out, "{name}_count {}", h.total());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::batch::RecordBatch;
    use crate::collect::tables::{ClientGranularity, TableLimits};
    use crate::decode::Transport;
    use crate::protocol::Proto;
    use crate::session::Record;

    /// (key, client, server, command, first, result, req, resp, latency ns)
    type Rec<'a> = (
        Option<&'a [u8]>,
        &'a str,
        &'a str,
        &'static str,
        bool,
        Outcome,
        u64,
        u64,
        Option<u64>,
    );

    fn tables(recs: &[Rec<'_>]) -> Tables {
        let mut t = Tables::new(&TableLimits {
            max_keys: 1000,
            max_clients: 1000,
            max_families: 10,
            client_granularity: ClientGranularity::Ip,
        });
        let mut b = RecordBatch::default();
        for &(key, client, server, command, first, result, req, resp, lat) in recs {
            let proto = if command.starts_with('m') {
                Proto::Meta
            } else {
                Proto::Text
            };
            b.push(
                &Record {
                    ts: 1,
                    client: client.parse().unwrap(),
                    server: server.parse().unwrap(),
                    transport: Transport::Tcp,
                    proto,
                    command,
                    first,
                    key,
                    result,
                    req_bytes: req,
                    resp_bytes: resp,
                    latency_ns: lat,
                },
                1,
            );
        }
        let mut fam = Vec::new();
        for r in &b.recs {
            t.add(&b, r, None, &mut fam);
        }
        t
    }

    const S1: &str = "10.1.0.1:11211";
    const S2: &str = "10.1.0.2:11211";

    fn tiny() -> Tables {
        tables(&[
            (
                Some(b"user:1"),
                "10.0.0.1:4000",
                S1,
                "get",
                true,
                Outcome::Hit,
                0,
                100,
                Some(20_000),
            ),
            (
                Some(b"user:2"),
                "10.0.0.1:4000",
                S1,
                "get",
                false,
                Outcome::Miss,
                0,
                0,
                Some(20_000),
            ),
            (
                Some(b"user:1"),
                "10.0.0.2:4000",
                S2,
                "set",
                true,
                Outcome::Stored,
                1000,
                0,
                Some(150_000),
            ),
            (
                None,
                "10.0.0.2:4000",
                S2,
                "version",
                true,
                Outcome::Ok,
                0,
                0,
                Some(500),
            ),
        ])
    }

    fn render_with(run: &Tables, w: Option<&Tables>, top: usize, redact: Redact) -> String {
        let counters = Counters {
            packets: 7,
            tcp_gaps: 2,
            ..Counters::default()
        };
        let mut out = String::new();
        render(
            &mut out,
            &ExportInput {
                run,
                last_window: w,
                counters: &counters,
                top,
                redact: &redact,
                version: "0.1.0-test",
            },
        );
        out
    }

    /// Sample lines only.
    fn samples(out: &str) -> impl Iterator<Item = &str> {
        out.lines().filter(|l| !l.starts_with('#'))
    }

    /// The output without the lines of the health-counter families (those
    /// are checked by `health_counters`, so adding a counter does not
    /// break the exact test).
    fn without_health(out: &str) -> String {
        let names: Vec<String> = Counters::default()
            .iter()
            .map(|(n, _)| format!("memtap_{n}_total"))
            .collect();
        out.lines()
            .filter(|l| {
                let body = l
                    .strip_prefix("# HELP ")
                    .or_else(|| l.strip_prefix("# TYPE "))
                    .unwrap_or(l);
                let name = body.split([' ', '{']).next().unwrap();
                !names.iter().any(|n| n == name)
            })
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn exact_output_for_a_tiny_input() {
        let run = tiny();
        let w = tiny();
        let out = render_with(&run, Some(&w), 2, Redact::None);
        let mut lat = String::new();
        for (le, n) in [
            ("0", 1),
            ("0.000001", 1),
            ("0.000003", 1),
            ("0.000007", 1),
            ("0.000015", 1),
            ("0.000031", 3),
            ("0.000063", 3),
            ("0.000127", 3),
            ("0.000255", 4),
            ("0.000511", 4),
            ("0.001023", 4),
            ("0.002047", 4),
            ("0.004095", 4),
            ("0.008191", 4),
            ("0.016383", 4),
            ("0.032767", 4),
            ("0.065535", 4),
            ("0.131071", 4),
            ("0.262143", 4),
            ("0.524287", 4),
            ("1.048575", 4),
            ("2.097151", 4),
            ("4.194303", 4),
            ("8.388607", 4),
            ("16.777215", 4),
            ("33.554431", 4),
            ("67.108863", 4),
            ("+Inf", 4),
        ] {
            lat += &format!("memtap_request_latency_seconds_bucket{{le=\"{le}\"}} {n}\n");
        }
        // 500 ns (the version) is 0 µs, class 0; 20 µs class 5 (midpoint 23.5);
        // 150 µs class 8 (midpoint 191.5): 0 + 2 × 23.5 + 191.5 = 238.5 µs.
        let mut size = String::new();
        for i in 0..31 {
            let le = if i == 0 { 0 } else { (1u64 << i) - 1 };
            let n = match i {
                0..=6 => 0,
                7..=9 => 1, // 100 is class 7
                _ => 2,     // 1000 is class 10
            };
            size += &format!("memtap_value_size_bytes_bucket{{le=\"{le}\"}} {n}\n");
        }
        // 100 → class 7 (midpoint 95.5), 1000 → class 10 (midpoint 767.5).
        let want = format!(
            r#"# HELP memtap_build_info memtap version that produced these metrics (always 1).
# TYPE memtap_build_info gauge
memtap_build_info{{version="0.1.0-test"}} 1
# HELP memtap_requests_total Key-requests (one per key of a multi-key command) by protocol, transport and command.
# TYPE memtap_requests_total counter
memtap_requests_total{{proto="text",transport="tcp",command="get"}} 2
memtap_requests_total{{proto="text",transport="tcp",command="set"}} 1
memtap_requests_total{{proto="text",transport="tcp",command="version"}} 1
# HELP memtap_commands_total Commands on the wire by protocol, transport and command.
# TYPE memtap_commands_total counter
memtap_commands_total{{proto="text",transport="tcp",command="get"}} 1
memtap_commands_total{{proto="text",transport="tcp",command="set"}} 1
memtap_commands_total{{proto="text",transport="tcp",command="version"}} 1
# HELP memtap_results_total Key-requests by outcome.
# TYPE memtap_results_total counter
memtap_results_total{{result="hit"}} 1
memtap_results_total{{result="miss"}} 1
memtap_results_total{{result="stored"}} 1
memtap_results_total{{result="not_stored"}} 0
memtap_results_total{{result="exists"}} 0
memtap_results_total{{result="not_found"}} 0
memtap_results_total{{result="deleted"}} 0
memtap_results_total{{result="touched"}} 0
memtap_results_total{{result="value"}} 0
memtap_results_total{{result="ok"}} 1
memtap_results_total{{result="error"}} 0
memtap_results_total{{result="client_error"}} 0
memtap_results_total{{result="server_error"}} 0
memtap_results_total{{result="noreply"}} 0
memtap_results_total{{result="lost"}} 0
# HELP memtap_server_requests_total Key-requests by server.
# TYPE memtap_server_requests_total counter
memtap_server_requests_total{{server="10.1.0.1:11211"}} 2
memtap_server_requests_total{{server="10.1.0.2:11211"}} 2
# HELP memtap_server_hits_total Retrieval hits by server.
# TYPE memtap_server_hits_total counter
memtap_server_hits_total{{server="10.1.0.1:11211"}} 1
memtap_server_hits_total{{server="10.1.0.2:11211"}} 0
# HELP memtap_server_misses_total Retrieval misses by server.
# TYPE memtap_server_misses_total counter
memtap_server_misses_total{{server="10.1.0.1:11211"}} 1
memtap_server_misses_total{{server="10.1.0.2:11211"}} 0
# HELP memtap_server_errors_total Error responses (ERROR, CLIENT_ERROR, SERVER_ERROR) by server.
# TYPE memtap_server_errors_total counter
memtap_server_errors_total{{server="10.1.0.1:11211"}} 0
memtap_server_errors_total{{server="10.1.0.2:11211"}} 0
# HELP memtap_server_bytes_in_total Value bytes sent to the server (storage payloads).
# TYPE memtap_server_bytes_in_total counter
memtap_server_bytes_in_total{{server="10.1.0.1:11211"}} 0
memtap_server_bytes_in_total{{server="10.1.0.2:11211"}} 1000
# HELP memtap_server_bytes_out_total Value bytes returned by the server (retrievals).
# TYPE memtap_server_bytes_out_total counter
memtap_server_bytes_out_total{{server="10.1.0.1:11211"}} 100
memtap_server_bytes_out_total{{server="10.1.0.2:11211"}} 0
# HELP memtap_request_latency_seconds Request latency (last request byte to last response byte) in log2 classes of microseconds; _sum is estimated from class midpoints.
# TYPE memtap_request_latency_seconds histogram
{lat}memtap_request_latency_seconds_sum 0.0002385
memtap_request_latency_seconds_count 4
# HELP memtap_value_size_bytes Value size of key-requests carrying a value, in log2 classes; _sum is estimated from class midpoints.
# TYPE memtap_value_size_bytes histogram
{size}memtap_value_size_bytes_bucket{{le="+Inf"}} 2
memtap_value_size_bytes_sum 863
memtap_value_size_bytes_count 2
# HELP memtap_top_key_requests Requests (heavy-hitter estimate) of the top keys in the last closed window.
# TYPE memtap_top_key_requests gauge
memtap_top_key_requests{{key="user:1",server="10.1.0.1:11211"}} 2
memtap_top_key_requests{{key="user:2",server="10.1.0.1:11211"}} 1
# HELP memtap_top_key_bytes Value bytes in and out of the top keys in the last closed window.
# TYPE memtap_top_key_bytes gauge
memtap_top_key_bytes{{key="user:1",server="10.1.0.1:11211"}} 1100
memtap_top_key_bytes{{key="user:2",server="10.1.0.1:11211"}} 0
# HELP memtap_top_key_misses Misses of the top keys in the last closed window.
# TYPE memtap_top_key_misses gauge
memtap_top_key_misses{{key="user:1",server="10.1.0.1:11211"}} 0
memtap_top_key_misses{{key="user:2",server="10.1.0.1:11211"}} 1
# HELP memtap_top_key_client_requests Requests of each top key's own top clients in the last closed window.
# TYPE memtap_top_key_client_requests gauge
memtap_top_key_client_requests{{key="user:1",client="10.0.0.1"}} 1
memtap_top_key_client_requests{{key="user:1",client="10.0.0.2"}} 1
memtap_top_key_client_requests{{key="user:2",client="10.0.0.1"}} 1
# HELP memtap_top_client_requests Requests of the top clients in the last closed window.
# TYPE memtap_top_client_requests gauge
memtap_top_client_requests{{client="10.0.0.1"}} 2
memtap_top_client_requests{{client="10.0.0.2"}} 2
"#
        );
        let got = without_health(&out);
        if got != want {
            for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
                assert_eq!(g, w, "line {}", i + 1);
            }
            assert_eq!(got.lines().count(), want.lines().count());
        }
        // Deterministic: a second render is identical.
        assert_eq!(out, render_with(&run, Some(&w), 2, Redact::None));
    }

    #[test]
    fn health_counters() {
        let run = tiny();
        let out = render_with(&run, None, 2, Redact::None);
        assert!(out.contains(
            "# HELP memtap_packets_total Health counter packets (see memtap::stats::Counters).\n\
             # TYPE memtap_packets_total counter\n\
             memtap_packets_total 7\n"
        ));
        assert!(out.contains("\nmemtap_tcp_gaps_total 2\n"));
        for (name, _) in Counters::default().iter() {
            let n = format!("memtap_{name}_total");
            assert_eq!(
                samples(&out)
                    .filter(|l| l.split(' ').next() == Some(&n))
                    .count(),
                1,
                "{n}"
            );
        }
    }

    #[test]
    fn no_window_no_top_families() {
        let run = tiny();
        let out = render_with(&run, None, 5, Redact::None);
        assert!(!out.contains("memtap_top_"), "{out}");
        let out = render_with(&run, Some(&run), 0, Redact::None);
        assert!(
            !samples(&out).any(|l| l.starts_with("memtap_top_")),
            "{out}"
        );
    }

    /// The label values of `family`'s samples, in order, for label `label`.
    fn label_values(out: &str, family: &str, label: &str) -> Vec<String> {
        let pre = format!("{family}{{");
        let at = format!("{label}=\"");
        samples(out)
            .filter_map(|l| l.strip_prefix(&pre))
            .map(|l| {
                let s = &l[l.find(&at).unwrap() + at.len()..];
                // Up to the first unescaped quote.
                let mut end = 0;
                let b = s.as_bytes();
                while b[end] != b'"' {
                    end += if b[end] == b'\\' { 2 } else { 1 };
                }
                s[..end].to_string()
            })
            .collect()
    }

    fn one_key(key: &[u8]) -> Tables {
        tables(&[(
            Some(key),
            "10.0.0.1:1",
            S1,
            "get",
            true,
            Outcome::Hit,
            0,
            1,
            None,
        )])
    }

    #[test]
    fn keys_are_escaped_for_label_values() {
        let w = one_key(b"a\"b\\c\nd\xffe");
        let out = render_with(&w, Some(&w), 3, Redact::None);
        // The report's form is a"b\x5cc\x0ad\xffe; its `"` and `\` are then
        // escaped for the label.
        assert_eq!(
            label_values(&out, "memtap_top_key_requests", "key"),
            vec![r#"a\"b\\x5cc\\x0ad\\xffe"#]
        );
        assert!(out.contains(
            r#"memtap_top_key_requests{key="a\"b\\x5cc\\x0ad\\xffe",server="10.1.0.1:11211"} 1"#
        ));
        // A quote, a backslash and a newline that survive into the key
        // string are escaped too (e.g. the version label).
        let mut s = String::new();
        escape_label(&mut s, "x\"y\\z\nw…");
        assert_eq!(s, r#"x\"y\\z\nw…"#);
        // Redaction comes first.
        let out = render_with(&w, Some(&w), 3, Redact::Hash);
        let k = label_values(&out, "memtap_top_key_requests", "key");
        assert_eq!(
            k,
            vec![crate::report::key_string(b"a\"b\\c\nd\xffe", &Redact::Hash)]
        );
        assert!(!out.contains("a\\\"b"));
    }

    #[test]
    fn long_keys_are_cut_to_the_label_limit() {
        let w = one_key(&[b'k'; 300]);
        let out = render_with(&w, Some(&w), 1, Redact::None);
        let k = &label_values(&out, "memtap_top_key_requests", "key")[0];
        assert_eq!(k.len(), MAX_LABEL_BYTES);
        assert_eq!(*k, format!("{}…", "k".repeat(125)));

        // Exactly at the limit: kept whole.
        assert_eq!(limit_label(&"k".repeat(128)), "k".repeat(128));
        assert_eq!(
            limit_label(&"k".repeat(129)),
            format!("{}…", "k".repeat(125))
        );
        // Escapes are never split: `\xff` costs 5 bytes as a label.
        let ks = format!("{}\\xff{}", "k".repeat(122), "k".repeat(10));
        assert_eq!(limit_label(&ks), format!("{}…", "k".repeat(122)));
        let ks = format!("{}\\xffkkkkkkkk", "k".repeat(120));
        assert_eq!(limit_label(&ks), format!("{}\\xff…", "k".repeat(120)));
        // A `"` costs 2.
        let ks = format!("{}\"\"kkkkkk", "k".repeat(122));
        assert_eq!(limit_label(&ks), format!("{}\"…", "k".repeat(122)));
        for n in 0..400 {
            let key: Vec<u8> = (0..n).map(|i| [b'a', b'"', 0xff, b'\\'][i % 4]).collect();
            let ks = crate::report::key_string(&key, &Redact::None);
            let mut l = String::new();
            escape_label(&mut l, &limit_label(&ks));
            assert!(l.len() <= MAX_LABEL_BYTES, "{n}: {l}");
        }

        // Keys that become equal once cut are one series, their counts summed.
        let a = [b"x".repeat(200), b"1".to_vec()].concat();
        let b = [b"x".repeat(200), b"2".to_vec()].concat();
        let w = tables(&[
            (
                Some(&a),
                "10.0.0.1:1",
                S1,
                "get",
                true,
                Outcome::Hit,
                0,
                10,
                None,
            ),
            (
                Some(&a),
                "10.0.0.2:1",
                S1,
                "get",
                true,
                Outcome::Hit,
                0,
                10,
                None,
            ),
            (
                Some(&b),
                "10.0.0.1:1",
                S1,
                "get",
                true,
                Outcome::Miss,
                0,
                0,
                None,
            ),
            (
                Some(b"y"),
                "10.0.0.3:1",
                S1,
                "get",
                true,
                Outcome::Miss,
                0,
                0,
                None,
            ),
        ]);
        let out = render_with(&w, Some(&w), 10, Redact::None);
        let cut = format!("{}…", "x".repeat(125));
        assert!(
            out.contains(&format!(
                "memtap_top_key_requests{{key=\"{cut}\",server=\"{S1}\"}} 3\n"
            )),
            "{out}"
        );
        assert!(out.contains(&format!(
            "memtap_top_key_misses{{key=\"{cut}\",server=\"{S1}\"}} 1\n"
        )));
        assert!(out.contains(&format!(
            "memtap_top_key_bytes{{key=\"{cut}\",server=\"{S1}\"}} 20\n"
        )));
        assert_eq!(
            samples(&out)
                .filter(|l| l.starts_with("memtap_top_key_client_requests"))
                .collect::<Vec<_>>(),
            vec![
                format!("memtap_top_key_client_requests{{key=\"{cut}\",client=\"10.0.0.1\"}} 2"),
                format!("memtap_top_key_client_requests{{key=\"{cut}\",client=\"10.0.0.2\"}} 1"),
                "memtap_top_key_client_requests{key=\"y\",client=\"10.0.0.3\"} 1".to_string(),
            ]
        );
        assert_no_duplicate_series(&out);
    }

    fn assert_no_duplicate_series(out: &str) {
        let mut seen: Vec<&str> = samples(out)
            .map(|l| l.rsplit_once(' ').unwrap().0)
            .collect();
        let n = seen.len();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), n, "duplicate series");
    }

    /// `keys` keys, key i requested i + 1 times by each of `per_key`
    /// clients (of `clients`), over `servers` servers.
    fn busy(keys: usize, per_key: usize, clients: usize, servers: usize) -> Tables {
        let mut recs = Vec::new();
        let names: Vec<String> = (0..keys).map(|i| format!("key:{i}")).collect();
        let cl: Vec<String> = (0..clients)
            .map(|i| format!("10.0.{}.{}:1", i / 200, i % 200))
            .collect();
        let sv: Vec<String> = (0..servers)
            .map(|i| format!("10.1.0.{}:11211", i + 1))
            .collect();
        for (i, k) in names.iter().enumerate() {
            for j in 0..per_key {
                for _ in 0..=i {
                    recs.push((
                        Some(k.as_bytes()),
                        cl[(i + j) % clients].as_str(),
                        sv[i % servers].as_str(),
                        ["get", "set", "mg"][j % 3],
                        true,
                        if j % 2 == 0 {
                            Outcome::Hit
                        } else {
                            Outcome::Miss
                        },
                        0,
                        (j * 100) as u64,
                        Some((i * j * 1_000_000) as u64),
                    ));
                }
            }
        }
        let recs: Vec<Rec<'_>> = recs;
        tables(&recs)
    }

    #[test]
    fn top_n_is_bounded_and_the_worst_case_holds() {
        let t = busy(40, 12, 50, 3);
        let commands = t.commands.iter().count();
        assert_eq!(commands, 3);
        for top in [0, 1, 5, 39, 40, 100] {
            let out = render_with(&t, Some(&t), top, Redact::None);
            let count = |f: &str| {
                samples(&out)
                    .filter(|l| l.starts_with(&format!("{f}{{")))
                    .count()
            };
            let k = top.min(40);
            assert_eq!(count("memtap_top_key_requests"), k);
            assert_eq!(count("memtap_top_key_bytes"), k);
            assert_eq!(count("memtap_top_key_misses"), k);
            assert_eq!(count("memtap_top_key_client_requests"), k * KEY_CLIENTS);
            assert_eq!(count("memtap_top_client_requests"), top.min(50));
            // The heaviest keys, heaviest first.
            let keys = label_values(&out, "memtap_top_key_requests", "key");
            let want: Vec<String> = (0..k).map(|i| format!("key:{}", 39 - i)).collect();
            assert_eq!(keys, want);
            let n = samples(&out).count();
            let bound = worst_case_series(top, 3, commands);
            assert!(n <= bound, "{n} > {bound}");
            if top <= 40 {
                // Every table full: the bound is reached.
                assert_eq!(n, bound, "top {top}");
            }
            assert_no_duplicate_series(&out);
        }
    }

    #[test]
    fn families_are_emitted_once_with_help_and_type() {
        let t = busy(20, 10, 30, 2);
        let out = render_with(&t, Some(&t), 5, Redact::None);
        let mut families: Vec<(String, String)> = Vec::new();
        let mut last_help: Option<String> = None;
        for l in out.lines() {
            if let Some(h) = l.strip_prefix("# HELP ") {
                let (name, text) = h.split_once(' ').unwrap();
                assert!(!text.is_empty());
                last_help = Some(name.to_string());
            } else if let Some(t) = l.strip_prefix("# TYPE ") {
                let (name, kind) = t.split_once(' ').unwrap();
                assert_eq!(
                    last_help.take().as_deref(),
                    Some(name),
                    "HELP right before TYPE"
                );
                assert!(!families.iter().any(|f| f.0 == name), "{name} twice");
                assert!(["counter", "gauge", "histogram"].contains(&kind));
                assert!(name.starts_with("memtap_"));
                assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
                families.push((name.to_string(), kind.to_string()));
            } else {
                // A sample belongs to the family declared last.
                let (f, kind) = families.last().expect("sample before any TYPE");
                let name = l.split(['{', ' ']).next().unwrap();
                if kind == "histogram" {
                    let suffix = name
                        .strip_prefix(f.as_str())
                        .unwrap_or_else(|| panic!("{l}"));
                    assert!(["_bucket", "_sum", "_count"].contains(&suffix), "{l}");
                } else {
                    assert_eq!(name, f, "{l}");
                }
                let v = l.rsplit_once(' ').unwrap().1;
                assert!(v.parse::<f64>().is_ok(), "{l}");
            }
        }
        assert_eq!(
            families.len(),
            1 + 3 + 6 + 2 + Counters::default().iter().count() + 5
        );
    }

    /// (le, count) of a histogram's buckets, then its `_count`.
    fn buckets(out: &str, name: &str) -> (Vec<(f64, u64)>, u64) {
        let pre = format!("{name}_bucket{{le=\"");
        let v = samples(out)
            .filter_map(|l| l.strip_prefix(&pre))
            .map(|l| {
                let (le, n) = l.split_once("\"} ").unwrap();
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                (le, n.parse().unwrap())
            })
            .collect();
        let c = samples(out)
            .find_map(|l| l.strip_prefix(&format!("{name}_count ")))
            .unwrap()
            .parse()
            .unwrap();
        (v, c)
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let mut recs: Vec<Rec<'_>> = Vec::new();
        for v in [
            0u64,
            1,
            999,
            1_000,
            1_500,
            3_000_000,
            67_108_863_000,
            67_108_864_000,
            u64::MAX,
        ] {
            // Sizes capped so that the byte totals do not overflow.
            recs.push((
                None,
                "10.0.0.1:1",
                S1,
                "get",
                true,
                Outcome::Hit,
                v.min(1 << 50),
                0,
                Some(v),
            ));
        }
        recs.push((
            None,
            "10.0.0.1:1",
            S1,
            "get",
            true,
            Outcome::Hit,
            1 << 40,
            0,
            None,
        ));
        let t = tables(&recs);
        let out = render_with(&t, None, 0, Redact::None);
        for (name, classes, total) in [
            ("memtap_request_latency_seconds", LATENCY_CLASSES, 9),
            ("memtap_value_size_bytes", VALUE_SIZE_CLASSES, 9),
        ] {
            let (b, count) = buckets(&out, name);
            assert_eq!(b.len(), classes + 1);
            assert_eq!(count, total);
            assert!(
                b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{b:?}"
            );
            assert_eq!(*b.last().unwrap(), (f64::INFINITY, count));
        }
        // Latency: 0 and 999 ns are 0 µs, 1000/1500 ns 1 µs, 3 s, and the
        // three beyond 67.108863 s count only in +Inf.
        let (b, _) = buckets(&out, "memtap_request_latency_seconds");
        assert_eq!(b[0], (0.0, 3));
        assert_eq!(b[1], (0.000001, 5));
        assert_eq!(b[LATENCY_CLASSES - 1], (67.108863, 7));
        // Sizes (0 is not a size): 1, 999, 1000, 1500 and 3e6 bytes fit the
        // buckets; 67e9 (twice), 2^50 and 2^40 bytes count only in +Inf.
        let (b, _) = buckets(&out, "memtap_value_size_bytes");
        assert_eq!(b[0], (0.0, 0));
        assert_eq!(b[1], (1.0, 1));
        assert_eq!(b[VALUE_SIZE_CLASSES - 1], (1073741823.0, 5));
        // Empty tables: all zeros, sum 0.
        let e = tables(&[]);
        let out = render_with(&e, None, 0, Redact::None);
        assert!(out.contains("memtap_value_size_bytes_bucket{le=\"+Inf\"} 0\nmemtap_value_size_bytes_sum 0\nmemtap_value_size_bytes_count 0\n"));
    }

    #[test]
    fn scaled_decimals_are_exact() {
        let w = |n: u128, d| {
            let mut s = String::new();
            write_scaled(&mut s, n, d);
            s
        };
        assert_eq!(w(0, 6), "0");
        assert_eq!(w(3, 6), "0.000003");
        assert_eq!(w(1_048_575, 6), "1.048575");
        assert_eq!(w(2_000_000, 6), "2");
        assert_eq!(w(2_385, 7), "0.0002385");
        assert_eq!(w(8_630, 1), "863");
        assert_eq!(w(5, 1), "0.5");
        assert_eq!(w(u128::MAX, 7), "34028236692093846346337460743176.8211455");
    }

    #[test]
    fn promtool_accepts_the_output() {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let Some(promtool) = std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("promtool"))
                .find(|f| f.is_file())
        }) else {
            eprintln!("skipped: promtool is not on PATH (Debian package `prometheus`)");
            return;
        };
        let t = busy(20, 10, 30, 2);
        let k = one_key(b"a\"b\\c\nd\xff");
        for (run, w) in [(&t, Some(&t)), (&k, Some(&k)), (&t, None)] {
            let out = render_with(run, w, 5, Redact::None);
            let mut child = Command::new(&promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(out.as_bytes())
                .unwrap();
            let r = child.wait_with_output().unwrap();
            assert!(
                r.status.success(),
                "promtool: {}{}",
                String::from_utf8_lossy(&r.stdout),
                String::from_utf8_lossy(&r.stderr)
            );
        }
    }
}
