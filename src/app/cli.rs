//! Command-line flags (clap derive). Only flags live here; `app` merges
//! them over the config file.

use crate::config::DumpFormat;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// memtap: a passive memcached traffic analyzer.
///
/// memtap reads memcached traffic (text, meta and binary protocols, over
/// TCP and UDP) from capture files or a mirror port and reports what every
/// key-request did: hot keys, hot clients, hit/miss, sizes and latencies.
#[derive(Debug, Parser)]
#[command(
    name = "memtap",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "\
Examples:
  memtap replay capture.pcap.zst              the report; servers found by themselves
  memtap top capture.pcap                     the same, live in the terminal
  memtap capture -i eth1                      live from a mirror port, metrics on :9718
  memtap replay --store sqlite:h.db f.pcap    keep the history, then: memtap serve
  memtap dump -f tsv capture.pcap | head      one line per key-request

memtap COMMAND --help tells more.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print one record per memcached key-request found in capture files.
    ///
    /// Reads pcap or pcapng files (optionally gzip- or zstd-compressed, or
    /// `-` for standard input) in order as one capture, reassembles TCP
    /// streams and UDP exchanges to and from the targets, pairs every
    /// request with its response, and prints one record per key-request
    /// (a `get a b c` is three records) on standard output. A summary of
    /// packets, flows, records and every counter of input given up goes to
    /// standard error.
    #[command(after_help = "\
Examples:
  memtap dump capture.pcap > records.jsonl
  memtap dump -f tsv --target 10.0.0.5:11211 capture.pcap.zst | head")]
    Dump(DumpArgs),

    /// Analyse capture files and print a report of what the keys did.
    ///
    /// The report: hot keys, hot clients, hot clients per key, commands,
    /// servers, key families, value-size and latency distributions, and
    /// every counter of input given up.
    ///
    /// Reads captures as `dump` does, through the same pipeline live
    /// capture uses (workers own flows, collectors own keys), in bounded
    /// memory: past --max-keys distinct keys the key table keeps the
    /// heaviest ones and reports an error bound for each.
    #[command(after_help = "\
Examples:
  memtap replay capture.pcap.zst
  memtap replay --target 10.0.0.0/24:11211 --window 5m --per-window -f json a.pcap b.pcap
  memtap replay --serve capture.pcap          then scrape http://127.0.0.1:9718/metrics")]
    Replay(ReplayArgs),

    /// Capture live from a network interface until interrupted, then report.
    ///
    /// On a SPAN/mirror port, or on the memcached host itself; serves
    /// metrics and the JSON API meanwhile, then prints the report of the
    /// whole run.
    ///
    /// The afpacket engine gives every worker its own memory-mapped
    /// TPACKET_V3 ring in one PACKET_FANOUT_HASH group, so both directions
    /// of a connection reach the same worker and no packet is copied; a
    /// kernel filter built from the targets keeps other traffic out of
    /// user space. The pcap engine uses libpcap and fans out in software.
    /// A worker waits for a busy collector only while its ring (or packet
    /// channel) is under half full, so bursts fill the ring instead of
    /// being lost; what still cannot be kept up with is dropped and counted
    /// (kernel, ring and channel drops are all in the report).
    ///
    /// Signals: SIGINT/SIGTERM stop, drain, close the open window and print
    /// the report (a second SIGINT exits at once); SIGHUP re-reads the
    /// config file (targets, filter, limits, report options) keeping all
    /// tables. Needs root or CAP_NET_RAW (CAP_NET_ADMIN for promiscuous
    /// mode) to open the sockets; --user then drops to an unprivileged user.
    #[command(after_help = "\
Examples:
  memtap capture -i eth1 --target 10.0.0.0/24
  memtap capture -i lo --duration 30s --no-listen")]
    Capture(CaptureArgs),

    /// A live full-screen table of the hottest keys, clients and servers.
    ///
    /// Sortable; also commands and key families. Rates over a sliding
    /// window beside the run's totals, drill-down from a key to its
    /// clients and from a client to its keys.
    ///
    /// Three ways in: `top -i IFACE` captures live (the options of
    /// `capture`); `top --connect http://HOST:9718` watches a running
    /// `memtap capture` (or `replay --serve`) over its HTTP listener;
    /// `top FILE...` replays captures at their own pace (--speed). Press
    /// `?` for the keys. Needs a terminal on standard output.
    #[command(after_help = "\
Examples:
  memtap top --speed 4 capture.pcap.zst
  memtap top -i eth1
  memtap top --connect http://10.0.0.7:9718")]
    Top(TopArgs),

    /// Report over the stored history (`replay --store` writes it).
    ///
    /// The replay report's tables and JSON schema over any time range,
    /// summed from the intervals in a store (`memtap replay --store URL`
    /// writes them); or, with `key KEY`, one key's history; or, with
    /// `peaks`, each server's busiest intervals.
    ///
    /// Times (--since, --until) are UTC: 2026-11-17, 2026-11-17T14:00,
    /// 2026-11-17T14:00:30Z, Unix seconds (1763388000), or -DURATION for
    /// that long before now (-2h). An interval belongs to the range when
    /// its start does.
    #[command(after_help = "\
Examples:
  memtap report --store sqlite:history.db --since -2h
  memtap report --store sqlite:history.db key user:42
  memtap report --store postgres://memtap@db/memtap peaks --top 5")]
    Report(HistoryArgs),

    /// Serve the history web page (charts, top keys, per-key history).
    ///
    /// Pick a time range, sniffers and servers, by requests or by bytes;
    /// charts (request and hit rate per server, top keys, non-get commands,
    /// top clients, value-size and latency distributions, each server's
    /// share of requests) drawn as SVG by memtap itself, so the page works
    /// offline; each key links to its history.
    #[command(after_help = "\
Examples:
  memtap serve --store sqlite:history.db      then open http://127.0.0.1:8091/
  memtap serve --store postgres://memtap@db/memtap --listen 0.0.0.0:8091")]
    Serve(ServeArgs),
}

/// Where the history lives.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// The store: sqlite:PATH (a file, created on first write) or
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DB (one database shared by
    /// many sniffers). Default sqlite:memtap.db (config: store.url).
    #[arg(long, value_name = "URL", global = true)]
    pub store: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// Order by requests.
    Requests,
    /// Order by bytes (in plus out).
    Bytes,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    /// Config file (TOML); see config/memtap.toml.
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub store: StoreArgs,

    /// First interval start to include (UTC; see above). Default: the
    /// beginning.
    #[arg(long, value_name = "TIME", global = true)]
    pub since: Option<String>,

    /// End of the range, exclusive. Default: the end.
    #[arg(long, value_name = "TIME", global = true)]
    pub until: Option<String>,

    /// Only this sniffer's intervals. Repeatable. Default: all.
    #[arg(long, value_name = "NAME", global = true)]
    pub sniffer: Vec<String>,

    /// Only this server (ADDR:PORT, as the servers table shows it).
    /// Repeatable. Restricts the servers table, the totals and the keys
    /// (keys seen on it); clients, families, commands and distributions
    /// are stored per sniffer, not per server, and stay whole.
    #[arg(long, value_name = "ADDR:PORT", global = true)]
    pub server: Vec<String>,

    /// Order of the top tables. Default: requests.
    #[arg(long, value_enum, global = true)]
    pub by: Option<By>,

    /// Rows in the key, client and family tables (0: all stored).
    /// Default 20 (config: report.top).
    #[arg(long, value_name = "N", global = true)]
    pub top: Option<usize>,

    /// Report format.
    #[arg(long, short = 'f', value_enum, default_value = "text", global = true)]
    pub format: ReportFormat,

    /// Directory for --format csv (created if missing).
    #[arg(long, value_name = "DIR", global = true)]
    pub output_dir: Option<PathBuf>,

    /// Key privacy in the output: none, hash or truncate:N. Default: none.
    #[arg(long, value_name = "MODE", global = true)]
    pub redact_keys: Option<String>,

    #[command(subcommand)]
    pub what: Option<HistoryWhat>,
}

#[derive(Debug, Subcommand)]
pub enum HistoryWhat {
    /// One key's history: requests, hits, misses and bytes per interval,
    /// its clients and servers, when it first entered the top N (--top)
    /// and its peak.
    Key {
        /// The key, escaped as reports print it (`\xNN` for odd bytes).
        key: String,
    },
    /// The busiest intervals of each server (Seafood's peak table); --top
    /// intervals per server, by requests or --by bytes.
    Peaks,
    /// Trigger firings and clearings stored by `--store` runs, oldest
    /// first (--since, --until and --sniffer apply).
    Events,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (TOML); see config/memtap.toml.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Address to listen on. Default 127.0.0.1:8091 (config:
    /// store.listen).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub analysis: AnalysisArgs,

    /// Interface to capture on (config: capture.interface).
    #[arg(long, short = 'i', value_name = "IFACE")]
    pub interface: Option<String>,

    /// Capture engine. Default afpacket (config: capture.engine).
    #[arg(long, value_enum)]
    pub engine: Option<crate::config::CaptureEngine>,

    /// Extra libpcap filter expression, AND-ed with the targets' filter
    /// (config: capture.filter).
    #[arg(long, value_name = "EXPR")]
    pub filter: Option<String>,

    /// Put the interface in promiscuous mode (config: capture.promisc).
    #[arg(long)]
    pub promisc: bool,

    /// Bytes per ring block, afpacket (config: capture.block_size).
    #[arg(long, value_name = "BYTES")]
    pub block_size: Option<usize>,

    /// Blocks per ring, afpacket (config: capture.block_count).
    #[arg(long, value_name = "N")]
    pub block_count: Option<usize>,

    /// Bytes kept of each packet (config: capture.snaplen).
    #[arg(long, value_name = "BYTES")]
    pub snaplen: Option<u32>,

    /// Switch to this user once the sockets are open (config: capture.user).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// HTTP listener, ADDR:PORT (port 0 picks a free one and prints it).
    /// Default 127.0.0.1:9718 (config: http.listen).
    #[arg(long, value_name = "ADDR:PORT", conflicts_with = "no_listen")]
    pub listen: Option<String>,

    /// No HTTP listener.
    #[arg(long)]
    pub no_listen: bool,

    /// Stop by itself after this long (e.g. 30s, 10m), as if interrupted.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,

    #[command(flatten)]
    pub report: ReportArgs,

    /// Write the final report here instead of standard output.
    #[arg(long, value_name = "PATH")]
    pub report_file: Option<PathBuf>,

    /// Exit with status 3 when no packet was memcached traffic of a target
    /// (a wrong --target, or nothing found without one).
    #[arg(long)]
    pub strict: bool,

    /// No per-window log lines on standard error.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    #[command(flatten)]
    pub keep: KeepArgs,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub capture: CaptureArgs,

    /// Watch a running `memtap capture` (or `replay --serve`) at this URL,
    /// e.g. http://127.0.0.1:9718.
    #[arg(long, value_name = "URL", conflicts_with_all = ["interface", "files"])]
    pub connect: Option<String>,

    /// The sliding window rates are taken over, e.g. 5s, 10s, 1m.
    /// Default 10s.
    #[arg(long, value_name = "DURATION")]
    pub interval: Option<String>,

    /// Replay pace: 1 is the capture's own, 10 ten times faster, max as
    /// fast as memtap reads. Default 1.
    #[arg(long, value_name = "N|max")]
    pub speed: Option<String>,

    /// --connect: the most requested keys fetched each second (0: every
    /// tracked key). Default 2000.
    #[arg(long, value_name = "N")]
    pub keys: Option<usize>,

    /// Capture files to replay (pcap, pcapng; .gz/.zst accepted).
    #[arg(value_name = "FILE", conflicts_with = "interface")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Calamaris-style text tables.
    Text,
    /// The JSON report (`memtap_report: 1`), the contract for other tools.
    Json,
    /// One CSV file per table, written to --output-dir.
    Csv,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub analysis: AnalysisArgs,

    #[command(flatten)]
    pub report: ReportArgs,

    #[command(flatten)]
    pub keep: KeepArgs,

    /// No progress bar and no warnings on standard error.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Also say how the memory budget is split (said anyway when the input
    /// needed more) and, at the end, the CPU each stage's threads used,
    /// per packet and per record (what sizing a capture box needs), and
    /// how long workers and collectors waited for each other (which stage
    /// wants more threads).
    #[arg(long, short = 'v')]
    pub verbose: bool,

    /// Exit with status 3 when no packet was memcached traffic of a target
    /// (a wrong --target, or nothing found without one).
    #[arg(long)]
    pub strict: bool,

    /// After the report, keep serving /metrics, /healthz, /api/report and
    /// /api/windows on --listen until interrupted (Ctrl-C or SIGTERM).
    #[arg(long)]
    pub serve: bool,

    /// HTTP listener for --serve, ADDR:PORT (port 0 picks a free one and
    /// prints it). Default 127.0.0.1:9718 (config: http.listen).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,

    /// Capture files (pcap, pcapng; .gz/.zst accepted; `-` = stdin).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// How the report of a replay or a capture is written.
#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    /// Report format.
    #[arg(long, short = 'f', value_enum, default_value = "text")]
    pub format: ReportFormat,

    /// Directory for --format csv (created if missing).
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,

    /// Rows in the key, client and family tables (0: every tracked one).
    /// Default 20 (config: report.top).
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,

    /// Order of the key, client and family tables. Default: requests.
    #[arg(long, value_enum)]
    pub sort: Option<crate::report::SortBy>,

    /// Add each window's tables to the report (capture: the retained
    /// windows, http.keep_windows).
    #[arg(long)]
    pub per_window: bool,
}

/// Writing closed windows to the interval history.
#[derive(Debug, Args, Clone)]
pub struct KeepArgs {
    /// Also write every window (per sniffer and server) to this store:
    /// sqlite:PATH or postgres://… (see `memtap report`). Re-ingesting
    /// the same capture replaces its intervals, never double counts. The
    /// window length (--window) must be the store's fine interval. While
    /// the database is unavailable, windows wait in a bounded queue, then
    /// a spool file of this store's own (memtap_store_backlog, /healthz
    /// 503); capture also serves the history pages on its listener. At
    /// exit the report is written first, then the store gets up to
    /// store.flush_timeout (default 5s) before the rest is spooled.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,

    /// Sniffer name under which --store keeps the windows. Default: the
    /// host name (config: store.sniffer).
    #[arg(long, value_name = "NAME")]
    pub sniffer: Option<String>,

    /// Keys, clients and families stored per window (0 = all), keys by
    /// requests, bytes and misses, the others by requests and bytes; a
    /// remainder row per table keeps its sums exact. Default 1000 (config:
    /// store.top).
    #[arg(long, value_name = "N")]
    pub store_top: Option<usize>,
}

/// Options of the analysis pipeline shared by replay and live capture.
#[derive(Debug, Args, Clone)]
pub struct AnalysisArgs {
    /// Worker threads (each owns a share of the flows). Default: half the
    /// cores, at least 1, at most 1024 (config: pipeline.workers); 1-1024.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Collector threads (each owns a share of the keys). Default: half
    /// the cores, at least 1 (config: pipeline.collectors); 1-1024.
    #[arg(long, value_name = "N")]
    pub collectors: Option<usize>,

    /// Window length in packet time, e.g. 60, 60s, 5m, 1h (Seafood's peak
    /// interval). Default 60s (config: collect.window); 1ms to 1d.
    #[arg(long, value_name = "DURATION")]
    pub window: Option<String>,

    /// Memory for the per-packet state (flows, pending requests, partial
    /// messages, out-of-order bytes, UDP exchanges, IP fragments), split
    /// evenly across the workers; past a worker's share the excess is shed
    /// and counted (budget_shed_*, *_table_full, *_overflow). A size
    /// ("512MiB", "2GiB"), auto (512 MiB, or a quarter of the machine's
    /// memory if less) or off. Default auto (config: limits.memory);
    /// 16 MiB to 1 TiB, at least 8 MiB per worker.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,

    /// Where triggers write their pcapng snippets (config: recorder.dir;
    /// without it triggers still fire, log and count, but keep no packets).
    /// Checked for writing at start. Webhooks and commands run on a small
    /// pool ([actions]); at exit the report comes first, then they get
    /// actions.drain_timeout (default 5s), then are abandoned (counted).
    #[arg(long, value_name = "DIR")]
    pub trigger_dir: Option<PathBuf>,

    /// Trigger event lines on standard error: text, or one JSON object a
    /// line. Default: text.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Keys tracked exactly before the heavy-hitter table starts evicting.
    /// Default 100000 (config: collect.max_keys); 1-16777216.
    #[arg(long, value_name = "N")]
    pub max_keys: Option<usize>,

    /// Clients tracked. Default 10000 (config: collect.max_clients);
    /// 1-16777216.
    #[arg(long, value_name = "N")]
    pub max_clients: Option<usize>,

    /// Rows of each key's client table: a key with at most N distinct
    /// clients lists each with its exact count; past N, the heaviest with
    /// an error bound. Default 32 (config: collect.key_clients); 1-256.
    #[arg(long, value_name = "N")]
    pub key_clients: Option<usize>,

    /// How clients are told apart. Default: ip.
    #[arg(long, value_enum, value_name = "ip|ip:port")]
    pub client_granularity: Option<crate::collect::tables::ClientGranularity>,

    /// Key privacy in every output: none, hash (a stable pseudonym) or
    /// truncate:N (first N bytes). Default: none.
    #[arg(long, value_name = "MODE")]
    pub redact_keys: Option<String>,

    /// Keys and clients in the top-N gauges of /metrics (last closed
    /// window); 0 = none, at most 100. Default 10 (config:
    /// export.metrics_top).
    #[arg(long, value_name = "N")]
    pub metrics_top: Option<usize>,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Config file (TOML); see config/memtap.toml for every option.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Server to watch, HOST[:PORT]: an address, a CIDR block or `*`; the
    /// port defaults to 11211. Repeatable; replaces the config's targets.
    /// Default: the servers found in the traffic: port 11211, and any port
    /// whose flows open with memcached requests answered by memcached
    /// responses (live capture: from the packet that shows one on).
    #[arg(long, short = 't', value_name = "HOST[:PORT]")]
    pub target: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Record format: JSON lines or tab-separated values with a header.
    #[arg(long, short = 'f', value_enum, value_name = "FORMAT")]
    pub format: Option<DumpFormat>,

    /// Do not print the summary or warnings on standard error.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Exit with status 3 when no packet was memcached traffic of a target
    /// (a wrong --target, or nothing found without one).
    #[arg(long)]
    pub strict: bool,

    /// Key privacy: none, hash (a stable pseudonym) or truncate:N.
    /// Default: none (config: collect.redact_keys).
    #[arg(long, value_name = "MODE")]
    pub redact_keys: Option<String>,

    /// Capture files (pcap, pcapng; .gz/.zst accepted; `-` = stdin).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// How memtap writes its event lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
