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
            sample(out, name, &[("key", &r.key), ("server", &r.server)], value(r));
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
        let (bytes, cost) = if b[end] == b'\\' && b.get(end + 1) == Some(&b'x') && hex(end + 2) && hex(end + 3)
        {
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
        let twice_mid = if i == 0 { 0 } else { 3u128 * (1u128 << (i - 1)) - 1 };
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
