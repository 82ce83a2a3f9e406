//! Prometheus exposition of the tables: text format 0.0.4 and OpenMetrics
//! 1.0 text ([`Format`]).
//!
//! [`render`] appends one scrape's worth of metrics to the caller's
//! `String`. Every family gets its metadata lines and is emitted once;
//! families always come in the same order, and so do the series within a
//! family, so two renders of the same input are byte-identical.
//!
//! # Why a hand-written renderer (and not `prometheus` or `prometheus-client`)
//!
//! The design card names the `prometheus` crate (tikv); `prometheus-client`
//! (the Prometheus project's own) is the alternative. Neither is used:
//!
//! * **Stale series.** Top-N label sets change every window, and a key that
//!   leaves the top must vanish from the next scrape. Both crates hold
//!   registered, long-lived metric objects; removing series is explicit
//!   (`remove_label_values` / `Family::remove`), so the exporter would have
//!   to diff each window's top against the previous one, and a miss leaves
//!   a stale series forever. Both crates offer an escape hatch (a custom
//!   `Collector` that builds its families from a snapshot at scrape time),
//!   and that is exactly what this module is, without the registry around
//!   it: every scrape is rendered from the current tables, so a series
//!   exists iff its key is in the current top. Nothing to remove, nothing
//!   to forget.
//! * **Escaping correctness.** Keys are arbitrary bytes (binary protocol,
//!   meta base64 keys) and may hold `"`, `\` and newlines. `prometheus-client`
//!   escaped label values incorrectly until 0.25.2 (its PR 347); with a
//!   renderer of our own the escaping is ~20 lines, tested here byte for
//!   byte against keys holding every awkward byte, and checked by
//!   `promtool check metrics` in the tests. Key strings are made UTF-8
//!   first (`\xNN` for non-printable bytes, as in every other output), then
//!   escaped, then cut to [`MAX_LABEL_BYTES`] without splitting an escape.
//! * **Maintenance and weight.** `prometheus` 0.14 has seen no release since
//!   early 2025 and pulls `protobuf` by default; `prometheus-client` is
//!   active but its text encoder speaks OpenMetrics only (counters as
//!   `_total` samples under a suffix-less TYPE, `# EOF`), so a plain 0.0.4
//!   scrape would still need a transform. The two text formats differ in
//!   four rules (see [`Format`]); implementing both here is less code than
//!   adapting a registry to snapshot tables, and adds no dependency.
//! * **Hot path.** The collectors' tables are plain counters owned by one
//!   thread; nothing is instrumented through a metrics library on the
//!   packet path, so the crates' atomics and registries would buy nothing.
//!
//! # What is exported
//!
//! From the whole run (`ExportInput::run`), as counters:
//!
//! * `memtap_requests_total{server,proto,transport,command,result}`:
//!   key-requests (one per key of a multi-key command), exactly: the sum
//!   over any labels equals the report's figure (`totals.requests`, a
//!   server's `requests`, a command's `requests`, `results[...]`). Only
//!   cells that occurred are written. `memtap_commands_total{server,proto,
//!   transport,command}`: commands on the wire.
//! * Servers past [`MAX_SERVERS`](crate::collect::breakdown::MAX_SERVERS) share `server="overflow"` in these and
//!   the histograms (sums stay exact); their key-requests are counted in
//!   `memtap_server_overflow_requests_total`.
//! * `memtap_server_{requests,hits,misses,errors,bytes_in,bytes_out}_total
//!   {server}`: per server address (bytes are value bytes, as in the
//!   report). Hit ratio: `hits / (hits + misses)`.
//! * `memtap_request_latency_seconds{server,class}`: histogram of the
//!   latency of answered key-requests, buckets 10 µs to 1 s in 1-2-5 steps
//!   ([`LATENCY_BOUNDS_NS`]), exact `_sum`. `memtap_value_size_bytes
//!   {server,class}`: value sizes, buckets 16 B to 1 GiB in powers of 4
//!   ([`VALUE_SIZE_BOUNDS`]), exact `_sum`. `class` is a
//!   [`CommandClass`]: `get store delete arith touch other`. A (server,
//!   class) appears once it has a sample.
//! * Health: every counter of [`Counters`] as `memtap_<name>_total`;
//!   `memtap_heavy_hitter_evictions_total{table="keys|clients|families"}`;
//!   `memtap_windows_closed_total`.
//!
//! As gauges: `memtap_build_info{version} 1` (an `info` family in
//! OpenMetrics), `memtap_server_found_info{server,transport,how,dialect} 1`
//! for each server found without `--target` (`dialect` empty when found by
//! port 11211), `memtap_flows_active`, `memtap_store_backlog` and
//! `memtap_store_spool_bytes` (only when there is a store; so are the
//! counters `memtap_store_{shed,spool_foreign,lost}_total`), and the top
//! `top` of the last closed window (nothing
//! at all when there is none yet):
//!
//! * `memtap_window_requests`: the window's key-requests, so that
//!   `memtap_top_key_requests / on(instance) group_left memtap_window_requests`
//!   is a key's share.
//! * `memtap_top_key_{requests,bytes,misses}{key,server}`: the `top` keys
//!   with the most requests, each with its first server (the smallest
//!   address it was seen on); the three families share one ranking, so
//!   their series join one to one. Requests are the heavy-hitter estimate
//!   (`Entry::count`, an upper bound), as in the report.
//! * `memtap_top_key_client_requests{key,client}`: the clients of those
//!   keys with the most requests to them (at most [`KEY_CLIENT_SERIES`]
//!   each; a key's table holds more, `--key-clients`). Exact for a key
//!   with at most `--key-clients` clients; beyond, the count is an upper
//!   bound (the report has each row's `error_bound`).
//! * `memtap_top_client_requests{client}`: the `top` clients.
//!
//! There is no rank label (it would make a new series whenever two keys
//! swap places). Keys are redacted and escaped exactly as the report shows
//! them ([`crate::report::key_string`]: non-printable bytes as `\xNN`, so
//! the output is always UTF-8), then escaped for a label value and cut to
//! [`MAX_LABEL_BYTES`]. Keys that end up with the same label (a redaction
//! or the cut made them equal) are summed into one series, as Prometheus
//! rejects duplicate series. `top` is capped at [`MAX_METRICS_TOP`].

use crate::collect::breakdown::{CommandClass, ServerCells, LATENCY_BOUNDS_NS, VALUE_SIZE_BOUNDS};
use crate::collect::heavy::Entry;
use crate::collect::redact::Redact;
use crate::collect::tables::{ClientId, KeyStats, Tables};

/// Clients exported per top key (`memtap_top_key_client_requests`): the
/// series budget, whatever the size of the keys' client tables.
pub const KEY_CLIENT_SERIES: usize = 8;
use crate::collect::insight::MISS_CLASSES;
use crate::protocol::Outcome;
use crate::stats::Counters;
use std::fmt::Write;

/// The text format written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Prometheus text format 0.0.4: `# HELP` then `# TYPE`, counter
    /// families named with their `_total`, no end marker.
    #[default]
    Prometheus004,
    /// OpenMetrics 1.0 text: `# TYPE` (and `# UNIT`) then `# HELP`, counter
    /// families named without `_total` (samples keep it), `info` for the
    /// build info, canonical `le` values (`1.0`), and `# EOF` at the end.
    OpenMetrics,
}

/// `Content-Type` of [`Format::Prometheus004`].
pub const CONTENT_TYPE_PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of [`Format::OpenMetrics`].
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus004 => CONTENT_TYPE_PROMETHEUS,
            Format::OpenMetrics => CONTENT_TYPE_OPENMETRICS,
        }
    }
}

/// What one scrape renders.
pub struct ExportInput<'a> {
    /// The whole run so far: counters and histograms.
    pub run: &'a Tables,
    /// The last closed window, for the top-N gauges; `None` before the
    /// first window closes (no top-N series then).
    pub last_window: Option<&'a Tables>,
    pub counters: &'a Counters,
    /// Keys and clients in the top-N gauges; 0 = none; capped at
    /// [`MAX_METRICS_TOP`].
    pub top: usize,
    pub redact: &'a Redact,
    /// Reported by `memtap_build_info`.
    pub version: &'a str,
    /// Connections tracked right now (TCP flows and pending UDP
    /// exchanges), summed over workers: `memtap_flows_active`.
    pub flows_active: u64,
    /// Windows closed so far: `memtap_windows_closed_total`.
    pub windows_closed: u64,
    /// The history store's figures, when there is one (`memtap_store_*`,
    /// not written when `None`).
    pub store: Option<StoreFigures>,
    /// What the triggers did, when rules are configured.
    pub triggers: Option<&'a crate::trigger::Stats>,
    /// The servers found without `--target`: `memtap_server_found_info`.
    pub servers_found: &'a [crate::report::FoundOut],
}

/// What became of the intervals a history store was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreFigures {
    /// Intervals (and capture rows) not yet committed:
    /// `memtap_store_backlog`.
    pub backlog: u64,
    /// Bytes of this store's spool file: `memtap_store_spool_bytes`.
    pub spool_bytes: u64,
    /// Items shed at the spool's bound (`store.spool_max`):
    /// `memtap_store_shed_total`.
    pub shed: u64,
    /// Items of a spool made for another store (or an earlier one at the
    /// same address), set aside and never written here:
    /// `memtap_store_spool_foreign_total`.
    pub foreign: u64,
    /// Items neither written nor spooled: `memtap_store_lost_total`.
    pub lost: u64,
}

/// Series of the store's families.
const STORE_SERIES: usize = 5;

/// The default of `--metrics-top` (config `export.metrics_top`).
pub const DEFAULT_METRICS_TOP: usize = 10;
/// The most keys and clients `--metrics-top` may ask for.
pub const MAX_METRICS_TOP: usize = 100;

/// The longest label value written for a key, in bytes of the escaped
/// value as it appears between the quotes, the "…" that marks a cut
/// included. A cut never splits a character or an escape sequence.
pub const MAX_LABEL_BYTES: usize = 128;

/// `le` of the latency buckets in seconds, as Go's `%g` writes them (the
/// rendering OpenMetrics calls canonical, less its `.0`).
const LATENCY_LE: [&str; LATENCY_BOUNDS_NS.len()] = [
    "1e-05", "2e-05", "5e-05", "0.0001", "0.0002", "0.0005", "0.001", "0.002", "0.005", "0.01",
    "0.02", "0.05", "0.1", "0.2", "0.5", "1",
];
/// `le` of the value-size buckets in bytes, likewise.
const VALUE_SIZE_LE: [&str; VALUE_SIZE_BOUNDS.len()] = [
    "16",
    "64",
    "256",
    "1024",
    "4096",
    "16384",
    "65536",
    "262144",
    "1.048576e+06",
    "4.194304e+06",
    "1.6777216e+07",
    "6.7108864e+07",
    "2.68435456e+08",
    "1.073741824e+09",
];

/// Per-server counter families.
const SERVER_FAMILIES: usize = 6;
/// Top-key gauge families sharing one ranking (requests, bytes, misses).
const TOP_KEY_FAMILIES: usize = 3;
/// Heavy-hitter tables with an eviction counter.
const HH_TABLES: usize = 3;

/// What the size of one render depends on, besides the fixed families.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeriesShape {
    /// `--metrics-top`, after the cap.
    pub top: usize,
    /// Server addresses in the run's server table.
    pub servers: usize,
    /// (server, proto, transport, command, result) cells that occurred.
    pub request_cells: usize,
    /// (server, proto, transport, command) pairs that occurred.
    pub command_cells: usize,
    /// (server, class) pairs with a latency sample.
    pub latency_hists: usize,
    /// (server, class) pairs with a value-size sample.
    pub size_hists: usize,
    /// Whether the store's figures are given.
    pub store: bool,
    /// Servers with cache-insight counters, and families with classified
    /// misses (0 with insight off).
    pub insight_servers: usize,
    pub insight_families: usize,
    /// Servers found without `--target` (at most
    /// [`MAX_FOUND`](crate::protocol::sniff::MAX_FOUND)); 0 from `of`.
    pub servers_found: usize,
}

impl SeriesShape {
    /// The shape of a render of `run` with `top`.
    pub fn of(run: &Tables, top: usize, store: bool) -> SeriesShape {
        let bd = &run.breakdown;
        SeriesShape {
            top: top.min(MAX_METRICS_TOP),
            servers: run.servers.len(),
            request_cells: bd
                .iter()
                .flat_map(|s| s.commands.iter())
                .map(|c| c.requests.iter().filter(|&&n| n > 0).count())
                .sum(),
            command_cells: bd.iter().map(|s| s.commands.len()).sum(),
            latency_hists: bd
                .iter()
                .flat_map(|s| s.latency.iter())
                .filter(|h| h.total() > 0)
                .count(),
            size_hists: bd
                .iter()
                .flat_map(|s| s.value_size.iter())
                .filter(|h| h.total() > 0)
                .count(),
            store,
            insight_servers: run.insight.servers.len(),
            insight_families: run
                .families
                .iter()
                .filter(|e| e.stats.insight.misses.iter().any(|&m| m > 0))
                .count(),
            servers_found: 0,
        }
    }
}

/// Cache-insight series per server: 6 miss classes, storms, unread writes
/// and their bytes, 3 miss-ratio-curve sizes and the current hit ratio.
const INSIGHT_SERVER_SERIES: usize = 6 + 3 + 3 + 1;

/// Series of the families whose size does not depend on the traffic:
/// build info, health counters, flows, evictions, windows, overflow, the
/// last window's requests (once a window has closed), and the store's
/// figures when there is one.
pub fn fixed_series(store: bool) -> usize {
    1 + Counters::default().iter().count()
        + 1
        + HH_TABLES
        + 1
        + 1
        + 1
        + if store { STORE_SERIES } else { 0 }
}

/// The series one [`render`] writes at most (with a last window whose
/// tables are full), each histogram bucket, `+Inf`, `_sum` and `_count`
/// counting as one:
///
/// ```text
///   fixed_series(store)                   build info, health, flows, evictions, windows, overflow
/// + request_cells + command_cells         requests_total, commands_total
/// + 6 × servers                           server_* counters
/// + latency_hists × (16 + 3)              latency histogram
/// + size_hists × (14 + 3)                 value-size histogram
/// + top × (3 + 1 + KEY_CLIENT_SERIES)    top keys (3 gauges each), top clients,
///                                         and each top key's own top clients
/// + 13 × insight_servers + 4              cache insight per server, the pool's curve
/// + 6 × min(top, insight_families)        miss classes of the top families
/// ```
///
/// Bounds independent of the traffic: breakdown servers are at most
/// [`MAX_SERVERS`](crate::collect::breakdown::MAX_SERVERS) and the overflow
/// entry, classes 6, so at most 390 histogram pairs each; cells are bounded
/// by the protocol's commands × 15 outcomes per server; `top` by
/// [`MAX_METRICS_TOP`]. Merging colliding key labels only lowers the count.
pub fn worst_case_series(s: &SeriesShape) -> usize {
    fixed_series(s.store)
        + s.request_cells
        + s.command_cells
        + SERVER_FAMILIES * s.servers
        + s.latency_hists * (LATENCY_BOUNDS_NS.len() + 3)
        + s.size_hists * (VALUE_SIZE_BOUNDS.len() + 3)
        + s.top * (TOP_KEY_FAMILIES + 1 + KEY_CLIENT_SERIES)
        + s.servers_found
        + if s.insight_servers > 0 {
            INSIGHT_SERVER_SERIES * s.insight_servers
                + 4
                + MISS_CLASSES.len() * s.top.min(s.insight_families)
        } else {
            0
        }
}

/// Appends the exposition of `s` in format `f` to `out`.
pub fn render(out: &mut String, s: &ExportInput<'_>, f: Format) {
    let run = s.run;
    let top = s.top.min(MAX_METRICS_TOP);

    family(
        out,
        f,
        "memtap_build_info",
        Kind::Info,
        "memtap version that produced these metrics (always 1).",
    );
    sample(out, "memtap_build_info", &[("version", s.version)], 1);
    if !s.servers_found.is_empty() {
        family(
            out,
            f,
            "memtap_server_found_info",
            Kind::Info,
            "A memcached server found without --target (always 1): found by port 11211, or \
             by protocol (its dialect's requests answered).",
        );
        for fo in s.servers_found {
            sample(
                out,
                "memtap_server_found_info",
                &[
                    ("server", &fo.server),
                    ("transport", fo.transport),
                    ("how", fo.how),
                    ("dialect", fo.dialect.unwrap_or("")),
                ],
                1,
            );
        }
    }

    let servers_bd = run.breakdown.sorted();
    let labels: Vec<String> = servers_bd.iter().map(|sc| server_label(sc)).collect();
    family(
        out,
        f,
        "memtap_requests_total",
        Kind::Counter,
        "Key-requests (one per key of a multi-key command) by server, protocol, transport, command and result.",
    );
    for (sc, server) in servers_bd.iter().zip(&labels) {
        let mut cells: Vec<_> = sc.commands.iter().collect();
        cells.sort_unstable_by_key(|a| a.id);
        for c in cells {
            for (o, &n) in Outcome::ALL.iter().zip(c.requests.iter()) {
                if n == 0 {
                    continue;
                }
                let l = [
                    ("server", server.as_str()),
                    ("proto", c.id.proto),
                    ("transport", c.id.transport),
                    ("command", c.id.command),
                    ("result", o.as_str()),
                ];
                sample(out, "memtap_requests_total", &l, n);
            }
        }
    }
    family(
        out,
        f,
        "memtap_commands_total",
        Kind::Counter,
        "Commands on the wire by server, protocol, transport and command.",
    );
    for (sc, server) in servers_bd.iter().zip(&labels) {
        let mut cells: Vec<_> = sc.commands.iter().collect();
        cells.sort_unstable_by_key(|a| a.id);
        for c in cells {
            let l = [
                ("server", server.as_str()),
                ("proto", c.id.proto),
                ("transport", c.id.transport),
                ("command", c.id.command),
            ];
            sample(out, "memtap_commands_total", &l, c.count);
        }
    }
    family(
        out,
        f,
        "memtap_server_overflow_requests_total",
        Kind::Counter,
        "Key-requests of servers past the per-server breakdown bound (labelled server=overflow).",
    );
    sample(
        out,
        "memtap_server_overflow_requests_total",
        &[],
        run.breakdown.overflow_records,
    );

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
        family(out, f, name, Kind::Counter, help);
        for (a, t) in &servers {
            addr.clear();
            let _ = write!(addr, "{a}");
            sample(out, name, &[("server", &addr)], field(t));
        }
    }

    let name = "memtap_request_latency_seconds";
    family(
        out,
        f,
        name,
        Kind::Histogram("seconds"),
        "Latency of answered key-requests (last request byte to last response byte) by server and command class.",
    );
    for (sc, server) in servers_bd.iter().zip(&labels) {
        for (class, h) in CommandClass::ALL.iter().zip(sc.latency.iter()) {
            if h.total() == 0 {
                continue;
            }
            let mut sum = String::new();
            write_scaled(&mut sum, h.sum() as u128, 9);
            histogram(
                out,
                f,
                name,
                &[("server", server), ("class", class.as_str())],
                &h.cumulative(),
                &LATENCY_LE,
                h.total(),
                &sum,
            );
        }
    }
    let name = "memtap_value_size_bytes";
    family(
        out,
        f,
        name,
        Kind::Histogram("bytes"),
        "Value size of key-requests carrying a value (request payload, else response payload) by server and command class.",
    );
    for (sc, server) in servers_bd.iter().zip(&labels) {
        for (class, h) in CommandClass::ALL.iter().zip(sc.value_size.iter()) {
            if h.total() == 0 {
                continue;
            }
            histogram(
                out,
                f,
                name,
                &[("server", server), ("class", class.as_str())],
                &h.cumulative(),
                &VALUE_SIZE_LE,
                h.total(),
                &h.sum().to_string(),
            );
        }
    }

    let mut name = String::new();
    let mut help = String::new();
    for (field, v) in s.counters.iter() {
        name.clear();
        let _ = write!(name, "memtap_{field}_total");
        help.clear();
        let _ = write!(
            help,
            "Health counter {field} (see memtap::stats::Counters)."
        );
        family(out, f, &name, Kind::Counter, &help);
        sample(out, &name, &[], v);
    }
    family(
        out,
        f,
        "memtap_flows_active",
        Kind::Gauge,
        "Connections and UDP exchanges tracked right now.",
    );
    sample(out, "memtap_flows_active", &[], s.flows_active);
    family(
        out,
        f,
        "memtap_heavy_hitter_evictions_total",
        Kind::Counter,
        "Entries evicted from the bounded heavy-hitter tables (the run's tables).",
    );
    for (table, n) in [
        ("keys", run.keys.evictions()),
        ("clients", run.clients.evictions()),
        ("families", run.families.evictions()),
    ] {
        sample(
            out,
            "memtap_heavy_hitter_evictions_total",
            &[("table", table)],
            n,
        );
    }
    family(
        out,
        f,
        "memtap_windows_closed_total",
        Kind::Counter,
        "Windows of packet time closed.",
    );
    sample(out, "memtap_windows_closed_total", &[], s.windows_closed);
    if let Some(st) = &s.store {
        for (name, kind, help, n) in [
            (
                "memtap_store_backlog",
                Kind::Gauge,
                "Closed windows waiting to be written by the store.",
                st.backlog,
            ),
            (
                "memtap_store_spool_bytes",
                Kind::Gauge,
                "Bytes of the store's spool file (intervals waiting on disk for the store).",
                st.spool_bytes,
            ),
            (
                "memtap_store_shed_total",
                Kind::Counter,
                "Intervals shed because the spool file reached store.spool_max.",
                st.shed,
            ),
            (
                "memtap_store_spool_foreign_total",
                Kind::Counter,
                "Intervals of a spool made for another store, set aside and never written to this one.",
                st.foreign,
            ),
            (
                "memtap_store_lost_total",
                Kind::Counter,
                "Intervals neither written to the store nor spooled.",
                st.lost,
            ),
        ] {
            family(out, f, name, kind, help);
            sample(out, name, &[], n);
        }
    }

    if run.insight.applied > 0 {
        render_insight(out, f, run, top);
    }
    if let Some(t) = s.triggers {
        render_triggers(out, f, t);
    }

    if let Some(w) = s.last_window {
        family(
            out,
            f,
            "memtap_window_requests",
            Kind::Gauge,
            "Key-requests in the last closed window (the denominator of a top key's share).",
        );
        sample(out, "memtap_window_requests", &[], w.totals.requests);
        top_keys(out, f, w, top, s.redact);
        family(
            out,
            f,
            "memtap_top_client_requests",
            Kind::Gauge,
            "Requests of the top clients in the last closed window.",
        );
        for e in w.clients.top_n(top, |e| e.count()) {
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
    if f == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
}

/// The `server` label of a breakdown entry.
fn server_label(sc: &ServerCells) -> String {
    match sc.server {
        Some(a) => a.to_string(),
        None => "overflow".to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    /// With its unit (the suffix of the name).
    Histogram(&'static str),
    /// A gauge of value 1 named `..._info` (OpenMetrics `info`).
    Info,
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

fn top_keys(out: &mut String, f: Format, w: &Tables, top: usize, redact: &Redact) {
    let ranked: Vec<&Entry<KeyStats>> = w.keys.top_n(top, |e| e.count());
    let mut rows: Vec<TopKey> = ranked
        .iter()
        .enumerate()
        .map(|(rank, e)| {
            let st = &e.stats;
            TopKey {
                rank,
                key: limit_label(&crate::report::key_string(e.key(), redact)),
                server: crate::report::key_servers(&st.servers)
                    .into_iter()
                    .next()
                    .unwrap_or_default(),
                requests: e.count(),
                bytes: st.traffic.bytes_in + st.traffic.bytes_out,
                misses: st.traffic.misses,
                clients: st
                    .clients
                    .sorted()
                    .iter()
                    .take(KEY_CLIENT_SERIES)
                    .map(|r| (r.addr, r.count))
                    .collect(),
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
        family(out, f, name, Kind::Gauge, help);
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
        f,
        "memtap_top_key_client_requests",
        Kind::Gauge,
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

/// The metadata lines of a family. `name` is the sample name of counters
/// (`..._total`) and info families (`..._info`); OpenMetrics names the
/// family without that suffix. Help texts hold no `\\`, `"` or newline
/// (the formats escape those differently; a test checks).
/// The triggers' families: firings and active subjects per rule, and
/// what the snippets and actions did. `2 R + 8` series for `R` rules.
fn render_triggers(out: &mut String, f: Format, t: &crate::trigger::Stats) {
    family(
        out,
        f,
        "memtap_trigger_firings_total",
        Kind::Counter,
        "Times a trigger fired (once per subject until it clears; cooldown respected).",
    );
    for (name, n) in &t.firings {
        sample(
            out,
            "memtap_trigger_firings_total",
            &[("trigger", name)],
            *n,
        );
    }
    family(
        out,
        f,
        "memtap_triggers_active",
        Kind::Gauge,
        "Subjects (keys, clients, servers) a trigger is firing for now.",
    );
    for (name, n) in &t.active {
        sample(out, "memtap_triggers_active", &[("trigger", name)], *n);
    }
    family(
        out,
        f,
        "memtap_trigger_snippets_total",
        Kind::Counter,
        "Trigger snippets (pcapng), by what became of them.",
    );
    for (result, n) in [
        ("written", t.snippets_written),
        ("over_quota", t.snippets_over_quota),
        ("over_rate", t.snippets_over_rate),
        ("empty", t.snippets_empty),
        ("error", t.snippet_errors),
    ] {
        sample(
            out,
            "memtap_trigger_snippets_total",
            &[("result", result)],
            n,
        );
    }
    family(
        out,
        f,
        "memtap_trigger_actions_failed_total",
        Kind::Counter,
        "Trigger webhooks and commands that failed or were dropped (queue full).",
    );
    sample(
        out,
        "memtap_trigger_actions_failed_total",
        &[("action", "webhook")],
        t.webhooks_failed,
    );
    sample(
        out,
        "memtap_trigger_actions_failed_total",
        &[("action", "command")],
        t.commands_failed,
    );
    sample(
        out,
        "memtap_trigger_actions_failed_total",
        &[("action", "dropped")],
        t.actions_dropped,
    );
    sample(
        out,
        "memtap_trigger_actions_failed_total",
        &[("action", "abandoned")],
        t.actions_abandoned,
    );
}

fn family(out: &mut String, f: Format, name: &str, kind: Kind, help: &str) {
    match f {
        Format::Prometheus004 => {
            let k = match kind {
                Kind::Counter => "counter",
                Kind::Gauge | Kind::Info => "gauge",
                Kind::Histogram(_) => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {k}");
        }
        Format::OpenMetrics => {
            let (fam, k) = match kind {
                Kind::Counter => (name.strip_suffix("_total").unwrap_or(name), "counter"),
                Kind::Gauge => (name, "gauge"),
                Kind::Histogram(_) => (name, "histogram"),
                Kind::Info => (name.strip_suffix("_info").unwrap_or(name), "info"),
            };
            let _ = writeln!(out, "# TYPE {fam} {k}");
            if let Kind::Histogram(unit) = kind {
                let _ = writeln!(out, "# UNIT {fam} {unit}");
            }
            let _ = writeln!(out, "# HELP {fam} {help}");
        }
    }
}

/// Cache insight: bounded (per server, the pool, the top families; no
/// per-key series).
fn render_insight(out: &mut String, f: Format, run: &Tables, top: usize) {
    let ins = &run.insight;
    let mut servers: Vec<(String, &crate::collect::insight::ServerInsight)> = ins
        .servers
        .iter()
        .map(|(a, s)| (a.to_string(), s))
        .collect();
    servers.sort_by(|a, b| a.0.cmp(&b.0));
    family(
        out,
        f,
        "memtap_misses_by_class_total",
        Kind::Counter,
        "Get misses by why they happened: first (never stored), expired, deleted (delete or flush_all), evicted, forgotten (memtap's state was full), unknown_ttl.",
    );
    for (a, s) in &servers {
        for (c, n) in MISS_CLASSES.iter().zip(s.misses) {
            sample(
                out,
                "memtap_misses_by_class_total",
                &[("server", a), ("class", c)],
                n,
            );
        }
    }
    family(
        out,
        f,
        "memtap_family_misses_by_class_total",
        Kind::Counter,
        "Get misses by class, for the key families with the most classified misses.",
    );
    let mut fams: Vec<_> = run
        .families
        .iter()
        .filter(|e| e.stats.insight.misses.iter().any(|&m| m > 0))
        .collect();
    let total = |e: &&crate::collect::Entry<crate::collect::tables::FamilyStats>| -> u64 {
        e.stats.insight.misses.iter().sum()
    };
    fams.sort_by(|a, b| total(b).cmp(&total(a)).then(a.key().cmp(b.key())));
    for e in fams.into_iter().take(top) {
        let name = String::from_utf8_lossy(e.key());
        for (c, n) in MISS_CLASSES.iter().zip(e.stats.insight.misses) {
            sample(
                out,
                "memtap_family_misses_by_class_total",
                &[("family", &name), ("class", c)],
                n,
            );
        }
    }
    let per_server =
        |out: &mut String,
         name: &str,
         help: &str,
         v: &dyn Fn(&crate::collect::insight::ServerInsight) -> u64| {
            family(out, f, name, Kind::Counter, help);
            for (a, s) in &servers {
                sample(out, name, &[("server", a)], v(s));
            }
        };
    per_server(
        out,
        "memtap_miss_storms_total",
        "Miss storms: several clients missing one key before its refill landed.",
        &|s| s.storms,
    );
    per_server(
        out,
        "memtap_unread_writes_total",
        "Stores that ended (overwritten, deleted, expired, evicted) before any read.",
        &|s| s.unread.iter().sum(),
    );
    per_server(
        out,
        "memtap_unread_write_bytes_total",
        "Value bytes of the stores nobody read.",
        &|s| s.unread_bytes.iter().sum(),
    );
    let mut curves: Vec<(String, crate::collect::mrc::Curve)> = Vec::new();
    if let Some(c) = &ins.mrc {
        curves.push(("pool".into(), c.curve()));
    }
    for (a, s) in &servers {
        if let Some(c) = &s.mrc {
            curves.push((a.clone(), c.curve()));
        }
    }
    family(
        out,
        f,
        "memtap_mrc_size_bytes",
        Kind::Gauge,
        "LRU cache bytes the miss-ratio curve needs for a share of the attainable hits (absent when out of range).",
    );
    for (a, c) in &curves {
        for t in crate::collect::mrc::TARGETS {
            if let Some(b) = c.size_for(t) {
                sample(
                    out,
                    "memtap_mrc_size_bytes",
                    &[("server", a), ("target", &format!("{t:.2}"))],
                    b,
                );
            }
        }
    }
    family(
        out,
        f,
        "memtap_mrc_hit_ratio",
        Kind::Gauge,
        "The hit ratio the server gave its gets (the miss-ratio curve's current point).",
    );
    for (a, c) in &curves {
        out.push_str("memtap_mrc_hit_ratio");
        write_labels(out, &[("server", a)]);
        let _ = writeln!(out, " {}", (c.current_hit_ratio * 1e6).round() / 1e6);
    }
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

/// One histogram series: cumulative buckets with their `le` strings, then
/// `+Inf`, `_sum` and `_count`. OpenMetrics wants canonical `le` values:
/// Go's `%g` with `.0` when there is no point or exponent.
#[allow(clippy::too_many_arguments)]
fn histogram(
    out: &mut String,
    f: Format,
    name: &str,
    labels: &[(&str, &str)],
    cumulative: &[u64],
    le: &[&str],
    total: u64,
    sum: &str,
) {
    let mut bucket = String::with_capacity(name.len() + 7);
    bucket.push_str(name);
    bucket.push_str("_bucket");
    let mut v = String::new();
    let les = le.iter().copied().chain(std::iter::once("+Inf"));
    for (n, le) in cumulative.iter().copied().chain([total]).zip(les) {
        v.clear();
        v.push_str(le);
        if f == Format::OpenMetrics && le != "+Inf" && !le.contains(['.', 'e']) {
            v.push_str(".0");
        }
        let mut l: Vec<(&str, &str)> = labels.to_vec();
        l.push(("le", &v));
        sample(out, &bucket, &l, n);
    }
    out.push_str(name);
    out.push_str("_sum");
    write_labels(out, labels);
    out.push(' ');
    out.push_str(sum);
    out.push('\n');
    sample(out, &format!("{name}_count"), labels, total);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::batch::RecordBatch;
    use crate::collect::tables::{ClientGranularity, TableLimits};
    use crate::decode::Transport;
    use crate::protocol::Proto;
    use crate::session::Record;
    use std::collections::BTreeMap;

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
            key_clients: 32,
            insight_examples: 16,
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
                    exptime: None,
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
        render_fmt(run, w, top, redact, Format::Prometheus004)
    }

    fn render_input(
        run: &Tables,
        w: Option<&Tables>,
        top: usize,
        store: Option<StoreFigures>,
        f: Format,
    ) -> String {
        let counters = Counters::default();
        let mut out = String::new();
        let input = ExportInput {
            run,
            last_window: w,
            counters: &counters,
            top,
            redact: &Redact::None,
            version: "0.1.0-test",
            flows_active: 0,
            windows_closed: 0,
            store,
            triggers: None,
            servers_found: &[],
        };
        render(&mut out, &input, f);
        out
    }

    fn render_fmt(
        run: &Tables,
        w: Option<&Tables>,
        top: usize,
        redact: Redact,
        f: Format,
    ) -> String {
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
                flows_active: 3,
                windows_closed: 2,
                store: None,
                triggers: None,
                servers_found: &[],
            },
            f,
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
            .flat_map(|(n, _)| [format!("memtap_{n}_total"), format!("memtap_{n}")])
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

    /// Golden files: `testdata/tiny.prom` and `tiny.om` (health counters
    /// left out). Set `MEMTAP_BLESS=1` to rewrite them after a deliberate
    /// change, and read the diff.
    #[test]
    fn exact_output_for_a_tiny_input() {
        let run = tiny();
        let w = tiny();
        for (f, file, want) in [
            (
                Format::Prometheus004,
                "tiny.prom",
                include_str!("testdata/tiny.prom"),
            ),
            (
                Format::OpenMetrics,
                "tiny.om",
                include_str!("testdata/tiny.om"),
            ),
        ] {
            let out = render_fmt(&run, Some(&w), 2, Redact::None, f);
            let got = without_health(&out);
            if std::env::var_os("MEMTAP_BLESS").is_some() {
                let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("src/export/testdata")
                    .join(file);
                std::fs::write(p, &got).unwrap();
                continue;
            }
            for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
                assert_eq!(g, w, "{file} line {}", i + 1);
            }
            assert_eq!(got.lines().count(), want.lines().count(), "{file}");
            // Deterministic: a second render is identical.
            assert_eq!(out, render_fmt(&run, Some(&w), 2, Redact::None, f));
        }
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
        assert!(!out.contains("memtap_window_requests"), "{out}");
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
            assert_eq!(
                count("memtap_top_key_client_requests"),
                k * KEY_CLIENT_SERIES
            );
            assert_eq!(count("memtap_top_client_requests"), top.min(50));
            // The heaviest keys, heaviest first.
            let keys = label_values(&out, "memtap_top_key_requests", "key");
            let want: Vec<String> = (0..k).map(|i| format!("key:{}", 39 - i)).collect();
            assert_eq!(keys, want);
            let n = samples(&out).count();
            let bound = worst_case_series(&SeriesShape::of(&t, top, false));
            assert!(n <= bound, "{n} > {bound}");
            if top <= 40 {
                // Every table full: the bound is reached.
                assert_eq!(n, bound, "top {top}");
            }
            let st = StoreFigures {
                backlog: 4,
                spool_bytes: 1234,
                shed: 2,
                foreign: 7,
                lost: 1,
            };
            let with_store = render_input(&t, Some(&t), top, Some(st), Format::Prometheus004);
            assert_eq!(
                samples(&with_store).count(),
                n + STORE_SERIES,
                "the store's figures are five more series"
            );
            for line in [
                "memtap_store_backlog 4",
                "memtap_store_spool_bytes 1234",
                "memtap_store_shed_total 2",
                "memtap_store_spool_foreign_total 7",
                "memtap_store_lost_total 1",
            ] {
                assert!(samples(&with_store).any(|l| l == line), "{line}");
            }
            assert_no_duplicate_series(&out);
        }
    }

    #[test]
    fn the_readme_figure_for_defaults() {
        // README "Metrics": 10 servers, 15 commands and 30 (command,
        // result) cells each, every class, --metrics-top 10.
        let shape = SeriesShape {
            top: DEFAULT_METRICS_TOP,
            servers: 10,
            request_cells: 300,
            command_cells: 150,
            latency_hists: 60,
            size_hists: 60,
            store: false,
            insight_servers: 0,
            insight_families: 0,
            servers_found: 0,
        };
        assert_eq!(fixed_series(false), 83);
        assert_eq!(worst_case_series(&shape), 2873);
        let capped = SeriesShape {
            top: MAX_METRICS_TOP,
            ..shape
        };
        assert_eq!(worst_case_series(&capped) - worst_case_series(&shape), 1080);
    }

    #[test]
    fn servers_found_are_one_info_series_each() {
        use crate::report::FoundOut;
        let run = tiny();
        let found = [
            FoundOut {
                server: "10.0.0.1:11211".into(),
                transport: "tcp",
                how: "port",
                dialect: None,
            },
            FoundOut {
                server: "10.0.0.2:22122".into(),
                transport: "udp",
                how: "protocol",
                dialect: Some("meta"),
            },
        ];
        let counters = Counters::default();
        let with = |f: Format, found: &[FoundOut]| {
            let mut out = String::new();
            let input = ExportInput {
                run: &run,
                last_window: None,
                counters: &counters,
                top: 2,
                redact: &Redact::None,
                version: "t",
                flows_active: 0,
                windows_closed: 0,
                store: None,
                triggers: None,
                servers_found: found,
            };
            render(&mut out, &input, f);
            out
        };
        let samples = "memtap_server_found_info{server=\"10.0.0.1:11211\",transport=\"tcp\",\
                       how=\"port\",dialect=\"\"} 1\n\
                       memtap_server_found_info{server=\"10.0.0.2:22122\",transport=\"udp\",\
                       how=\"protocol\",dialect=\"meta\"} 1\n";
        let prom = with(Format::Prometheus004, &found);
        assert!(
            prom.contains(&format!("# TYPE memtap_server_found_info gauge\n{samples}")),
            "{prom}"
        );
        let om = with(Format::OpenMetrics, &found);
        assert!(om.contains("# TYPE memtap_server_found info\n"), "{om}");
        assert!(om.contains(samples), "{om}");
        // None found (or --target given): no family at all.
        assert!(!with(Format::Prometheus004, &[]).contains("memtap_server_found"));
        let n = |s: &str| s.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(n(&prom), n(&with(Format::Prometheus004, &[])) + 2);
        let shape = SeriesShape {
            servers_found: 2,
            ..SeriesShape::of(&run, 2, false)
        };
        assert_eq!(
            worst_case_series(&shape),
            worst_case_series(&SeriesShape::of(&run, 2, false)) + 2
        );
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
                assert!(!h_text(&out, name).contains(['\\', '"']), "{name}");
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
            1 + 3 + 6 + 2 + Counters::default().iter().count() + 3 + 1 + 5
        );
    }

    fn h_text<'a>(out: &'a str, name: &str) -> &'a str {
        let pre = format!("# HELP {name} ");
        out.lines()
            .find_map(|l| l.strip_prefix(&pre))
            .unwrap_or_else(|| panic!("no HELP for {name}"))
    }

    /// Histogram series of `name`: labels without `le` → ([(le, count)],
    /// sum, count).
    #[allow(clippy::type_complexity)]
    fn histograms(out: &str, name: &str) -> BTreeMap<String, (Vec<(f64, u64)>, String, u64)> {
        let mut m: BTreeMap<String, (Vec<(f64, u64)>, String, u64)> = BTreeMap::new();
        for l in samples(out) {
            let (series, v) = l.rsplit_once(' ').unwrap();
            let Some(rest) = series.strip_prefix(name) else {
                continue;
            };
            let (suffix, labels) = rest.split_once('{').unwrap_or((rest, "}"));
            let labels = labels.strip_suffix('}').unwrap();
            match suffix {
                "_bucket" => {
                    let (ls, le) = labels.rsplit_once(",le=\"").unwrap();
                    let le = le.strip_suffix('"').unwrap();
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().unwrap()
                    };
                    m.entry(ls.to_string())
                        .or_default()
                        .0
                        .push((le, v.parse().unwrap()));
                }
                "_sum" => m.entry(labels.to_string()).or_default().1 = v.to_string(),
                "_count" => m.entry(labels.to_string()).or_default().2 = v.parse().unwrap(),
                _ => {}
            }
        }
        m
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let mut recs: Vec<Rec<'_>> = Vec::new();
        for (cmd, v) in [
            ("get", 0u64),
            ("get", 9_999),
            ("get", 10_000),
            ("get", 10_001),
            ("get", 999_999_999),
            ("get", 1_000_000_000),
            ("get", 1_000_000_001),
            ("set", 3_000_000_000),
            ("version", 1),
        ] {
            recs.push((
                None,
                "10.0.0.1:1",
                S1,
                cmd,
                true,
                Outcome::Hit,
                v,
                0,
                Some(v),
            ));
        }
        recs.push((
            None,
            "10.0.0.1:1",
            S2,
            "get",
            true,
            Outcome::Lost,
            0,
            0,
            None,
        ));
        let t = tables(&recs);
        let out = render_with(&t, None, 0, Redact::None);
        let lat = histograms(&out, "memtap_request_latency_seconds");
        let size = histograms(&out, "memtap_value_size_bytes");
        assert_eq!(
            lat.keys().collect::<Vec<_>>(),
            vec![
                "server=\"10.1.0.1:11211\",class=\"get\"",
                "server=\"10.1.0.1:11211\",class=\"other\"",
                "server=\"10.1.0.1:11211\",class=\"store\"",
            ]
        );
        for (b, _, count) in lat.values().chain(size.values()) {
            assert!(
                b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{b:?}"
            );
            assert_eq!(b.last().unwrap(), &(f64::INFINITY, *count));
        }
        let (b, sum, count) = &lat["server=\"10.1.0.1:11211\",class=\"get\""];
        assert_eq!(b.len(), 17);
        assert_eq!(b[0], (0.00001, 3)); // 0, 9999 and 10000 ns
        assert_eq!(b[1], (0.00002, 4));
        assert_eq!(b[15], (1.0, 6));
        assert_eq!(*count, 7);
        assert_eq!(sum, "3.00003");
        assert_eq!(lat["server=\"10.1.0.1:11211\",class=\"store\""].1, "3");
        assert_eq!(
            lat["server=\"10.1.0.1:11211\",class=\"other\""].1,
            "0.000000001"
        );
        // Sizes: 0 is no size; the rest count, 3e9 bytes only in +Inf.
        let (b, sum, count) = &size["server=\"10.1.0.1:11211\",class=\"get\""];
        assert_eq!(b.len(), 15);
        assert_eq!(*count, 6);
        assert_eq!(b[13], (1073741824.0, 6));
        assert_eq!(
            sum,
            &(9_999u64 + 10_000 + 10_001 + 999_999_999 + 1_000_000_000 + 1_000_000_001).to_string()
        );
        let (b, _, count) = &size["server=\"10.1.0.1:11211\",class=\"store\""];
        assert_eq!((*count, b[13].1), (1, 0));
        // The lost request has no latency and no size, but is a request.
        assert!(!out.contains("10.1.0.2:11211\",class"));
        assert!(out.contains("memtap_requests_total{server=\"10.1.0.2:11211\",proto=\"text\",transport=\"tcp\",command=\"get\",result=\"lost\"} 1\n"));
        // Every `le` parses back to its bound.
        for (s, ns) in LATENCY_LE.iter().zip(LATENCY_BOUNDS_NS) {
            assert_eq!(s.parse::<f64>().unwrap(), ns as f64 / 1e9, "{s}");
        }
        for (s, b) in VALUE_SIZE_LE.iter().zip(VALUE_SIZE_BOUNDS) {
            assert_eq!(s.parse::<f64>().unwrap(), b as f64, "{s}");
        }
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

    /// A checker program, or `None` (with the reason printed) when it is
    /// missing outside CI; under `CI=true` a missing checker fails.
    fn checker(path: &str, package: &str) -> Option<std::path::PathBuf> {
        let p = if path.starts_with('/') {
            Some(std::path::PathBuf::from(path)).filter(|p| p.is_file())
        } else {
            std::env::var_os("PATH").and_then(|v| {
                std::env::split_paths(&v)
                    .map(|d| d.join(path))
                    .find(|f| f.is_file())
            })
        };
        if p.is_none() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{path} is missing under CI (Debian package `{package}`; scripts/setup.sh installs it)"
            );
            eprintln!("skipped: {path} is missing (Debian package `{package}`)");
        }
        p
    }

    fn run_checker(cmd: &std::path::Path, args: &[&str], input: &str) {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let mut child = Command::new(cmd)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let r = child.wait_with_output().unwrap();
        assert!(
            r.status.success(),
            "{} {args:?}: {}{}",
            cmd.display(),
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
    }

    fn checker_inputs() -> Vec<(Tables, bool)> {
        vec![
            (busy(20, 10, 30, 2), true),
            (one_key(b"a\"b\\c\nd\xff"), true),
            (busy(20, 10, 30, 2), false),
        ]
    }

    #[test]
    fn promtool_accepts_the_output() {
        let Some(promtool) = checker("promtool", "prometheus") else {
            return;
        };
        for (t, window) in checker_inputs() {
            let out = render_with(&t, window.then_some(&t), 5, Redact::None);
            run_checker(&promtool, &["check", "metrics"], &out);
        }
    }

    #[test]
    fn openmetrics_output_parses_strictly() {
        let Some(py) = checker("/usr/bin/python3", "python3") else {
            return;
        };
        let ok = std::process::Command::new(&py)
            .args(["-c", "import prometheus_client"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "python3-prometheus-client is missing under CI"
            );
            eprintln!("skipped: python3-prometheus-client is not installed");
            return;
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check-openmetrics.py");
        for (t, window) in checker_inputs() {
            let st = StoreFigures {
                backlog: 1,
                shed: 2,
                ..StoreFigures::default()
            };
            let out = render_input(&t, window.then_some(&t), 5, Some(st), Format::OpenMetrics);
            assert!(out.ends_with("\n# EOF\n"));
            run_checker(&py, &[script], &out);
        }
    }
}
