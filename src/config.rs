//! Runtime configuration: the TOML model, its defaults and validation.
//!
//! Every limit memtap enforces lives here, with its default; the shipped
//! `config/memtap.toml` lists each one with a comment. Command-line flags
//! override the file (`app` applies them).

use crate::decode::targets::{Target, Targets};
use crate::session::budget::Split;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Servers to watch: `[[target]]` tables.
    #[serde(default)]
    pub target: Vec<TargetCfg>,
    #[serde(default)]
    pub decode: DecodeCfg,
    #[serde(default)]
    pub tcp: TcpCfg,
    #[serde(default)]
    pub udp: UdpCfg,
    #[serde(default)]
    pub protocol: ProtocolCfg,
    #[serde(default)]
    pub output: OutputCfg,
    #[serde(default)]
    pub pipeline: PipelineCfg,
    #[serde(default)]
    pub collect: CollectCfg,
    #[serde(default)]
    pub report: ReportCfg,
    #[serde(default)]
    pub insight: InsightCfg,
    #[serde(default)]
    pub export: ExportCfg,
    #[serde(default)]
    pub families: crate::collect::families::FamilyConfig,
    #[serde(default)]
    pub capture: CaptureCfg,
    #[serde(default)]
    pub http: HttpCfg,
    #[serde(default)]
    pub store: StoreCfg,
    #[serde(default)]
    pub limits: LimitsCfg,
    /// Rules that fire on the live figures: `[[trigger]]` tables.
    #[serde(default)]
    pub trigger: Vec<TriggerCfg>,
    #[serde(default)]
    pub recorder: RecorderCfg,
    #[serde(default)]
    pub actions: ActionsCfg,
}

/// `[actions]`: how triggers' webhooks and commands run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsCfg {
    /// Actions running at once (each target, a webhook URL or a command,
    /// runs one at a time).
    pub workers: usize,
    /// Actions waiting, per target; past it they are dropped (counted).
    pub queue_len: usize,
    /// How long, at exit and after the report is written, running and
    /// queued actions may still take before they are abandoned (commands
    /// killed), counted.
    pub drain_timeout: String,
}

impl Default for ActionsCfg {
    fn default() -> Self {
        ActionsCfg {
            workers: 4,
            queue_len: 64,
            drain_timeout: "5s".into(),
        }
    }
}

/// One `[[trigger]]` table (see `trigger::rule` for what each means).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerCfg {
    pub name: String,
    pub metric: String,
    pub above: Option<f64>,
    pub below: Option<f64>,
    pub clear: Option<f64>,
    #[serde(default = "d_window")]
    pub window: String,
    #[serde(default = "d_cooldown")]
    pub cooldown: String,
    #[serde(default)]
    pub min_requests: u64,
    pub counter: Option<String>,
    #[serde(default = "d_before")]
    pub before: String,
    #[serde(default = "d_after")]
    pub after: String,
    #[serde(default = "d_true")]
    pub record: bool,
    pub webhook: Option<String>,
    pub command: Option<String>,
}

fn d_window() -> String {
    "10s".into()
}
fn d_cooldown() -> String {
    "60s".into()
}
fn d_before() -> String {
    "5s".into()
}
fn d_after() -> String {
    "2s".into()
}
fn d_true() -> bool {
    true
}

/// `[recorder]`: the flight recorder behind the triggers' snippets.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RecorderCfg {
    /// Where snippets go (`--trigger-dir`); empty: no snippets.
    pub dir: String,
    /// Bytes of recent frames kept, all capture threads together.
    pub memory: String,
    /// Age of the oldest frame kept.
    pub keep: String,
    /// Most bytes of snippets in `dir` (memtap's own files, this run and
    /// earlier ones); past it snippets are not written, and counted.
    pub quota: String,
    /// Snippets one rule may write per hour (packet time).
    pub per_rule_per_hour: u32,
    /// How long a webhook and a command may take.
    pub webhook_timeout: String,
    pub command_timeout: String,
}

impl Default for RecorderCfg {
    fn default() -> Self {
        RecorderCfg {
            dir: String::new(),
            memory: "64MiB".into(),
            keep: "30s".into(),
            quota: "1GiB".into(),
            per_rule_per_hour: 6,
            webhook_timeout: "5s".into(),
            command_timeout: "10s".into(),
        }
    }
}

/// `[limits]`: the memory budget of the per-packet state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsCfg {
    /// Memory for everything that grows with traffic (flows, out-of-order
    /// and carried bytes, pending requests, UDP exchanges and held
    /// datagrams, IP fragments), split evenly across the workers: a size
    /// such as "512MiB" or "2GiB", "auto" (512 MiB, or a quarter of the
    /// machine's memory when that is less), or "off" (each structure
    /// bounded by its own setting only).
    pub memory: String,
}

impl Default for LimitsCfg {
    fn default() -> Self {
        LimitsCfg {
            memory: "auto".into(),
        }
    }
}

/// The default budget: 512 MiB, or a quarter of physical memory on a
/// smaller machine.
fn auto_memory() -> u64 {
    let default = 512u64 << 20;
    // MemTotal from /proc/meminfo, in kB; elsewhere the plain default.
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb.saturating_mul(1024));
    match total {
        Some(t) => default.min((t / 4).max(range::MEMORY.min)),
        None => default,
    }
}

/// Parses a memory budget: `auto`, `off`, or a size ("512MiB", "2GiB",
/// "64MB", a number of bytes). `None` is no budget.
pub fn parse_memory(name: &str, s: &str) -> anyhow::Result<Option<u64>> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    if t.eq_ignore_ascii_case("auto") {
        return Ok(Some(auto_memory()));
    }
    let b = t.parse::<bytesize::ByteSize>().map_err(|_| {
        anyhow::anyhow!(
            "{name} = {s:?} is not a size: write e.g. \"512MiB\", \"2GiB\", \"auto\" or \"off\""
        )
    })?;
    check(name, b.as_u64(), range::MEMORY)?;
    Ok(Some(b.as_u64()))
}

/// The interval history (`--store`, `memtap report`, `memtap serve`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreCfg {
    pub url: String,
    pub sniffer: String,
    pub top: usize,
    pub rollup: String,
    pub keep_fine: String,
    pub spool_dir: String,
    pub queue_len: usize,
    /// Most bytes of the spool file; past it intervals are shed (counted).
    pub spool_max: String,
    /// How long, at exit (after the report is written), the writer keeps
    /// trying to write what is left before it spools it for the next run.
    pub flush_timeout: String,
    pub listen: String,
}

impl Default for StoreCfg {
    fn default() -> Self {
        StoreCfg {
            url: "sqlite:memtap.db".into(),
            sniffer: String::new(),
            top: 1000,
            rollup: "1d".into(),
            keep_fine: "0".into(),
            spool_dir: String::new(),
            queue_len: 64,
            spool_max: "256MiB".into(),
            flush_timeout: "5s".into(),
            listen: "127.0.0.1:8091".into(),
        }
    }
}

/// Live capture (`memtap capture`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureCfg {
    /// Interface to capture on (`-i`); empty = must be given on the command line.
    pub interface: String,
    /// `afpacket` (per-worker TPACKET_V3 rings in one fanout group) or `pcap`.
    pub engine: CaptureEngine,
    /// Bytes per ring block (afpacket); a power of two, multiple of the page size.
    pub block_size: usize,
    /// Blocks per ring (afpacket): each worker's ring holds block_size x block_count.
    pub block_count: usize,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// Put the interface in promiscuous mode (a SPAN port needs it unless
    /// the mirror delivers to the interface's own MAC).
    pub promisc: bool,
    /// Extra libpcap filter, AND-ed with the one built from the targets.
    pub filter: String,
    /// Kernel buffer for the pcap engine, bytes.
    pub pcap_buffer: usize,
    /// Fanout group id (afpacket); 0 = derived from the process id. Two
    /// memtaps on one interface need different groups.
    pub fanout_group: u16,
    /// Pin capture threads to cores (one per worker).
    pub pin_cores: bool,
    /// User to switch to once the sockets are open; empty = stay.
    pub user: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CaptureEngine {
    #[default]
    Afpacket,
    Pcap,
}

impl Default for CaptureCfg {
    fn default() -> Self {
        CaptureCfg {
            interface: String::new(),
            engine: CaptureEngine::Afpacket,
            block_size: 1 << 20,
            block_count: 64,
            snaplen: 65535,
            promisc: false,
            filter: String::new(),
            pcap_buffer: 64 << 20,
            fanout_group: 0,
            pin_cores: true,
            user: String::new(),
        }
    }
}

/// The HTTP listener (`--listen`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpCfg {
    /// ADDR:PORT; empty = no listener for `capture` unless `--listen`.
    pub listen: String,
    /// Closed windows kept in memory for /api/windows and /api/report?window=.
    pub keep_windows: usize,
    /// Connections served at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// A request's headers must arrive within this; it also closes a
    /// keep-alive connection idle this long.
    pub header_timeout: String,
}

impl Default for HttpCfg {
    fn default() -> Self {
        HttpCfg {
            listen: "127.0.0.1:9718".into(),
            keep_windows: 60,
            max_connections: 256,
            header_timeout: "10s".into(),
        }
    }
}

impl HttpCfg {
    /// The listener's limits, checked.
    pub fn limits(&self) -> anyhow::Result<crate::web::server::HttpLimits> {
        check(
            "http.max_connections",
            self.max_connections as u64,
            range::HTTP_CONNECTIONS,
        )?;
        let t = parse_duration(&self.header_timeout)
            .map_err(|e| anyhow::anyhow!("http.header_timeout: {e}"))?;
        anyhow::ensure!(
            (100_000_000..=600_000_000_000).contains(&t),
            "http.header_timeout = {} is out of range: allowed 100ms to 600s",
            self.header_timeout
        );
        Ok(crate::web::server::HttpLimits {
            max_connections: self.max_connections,
            header_timeout: std::time::Duration::from_nanos(t),
        })
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineCfg {
    /// Worker threads; 0 = half the cores, at least 1.
    pub workers: usize,
    /// Collector threads; 0 = half the cores, at least 1.
    pub collectors: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectCfg {
    pub window: String,
    pub max_keys: usize,
    pub max_clients: usize,
    pub max_families: usize,
    /// Rows of each key's client table: a key with at most this many
    /// clients has each one's exact count (`--key-clients`).
    pub key_clients: usize,
    pub client_granularity: crate::collect::tables::ClientGranularity,
    pub redact_keys: String,
}

impl Default for CollectCfg {
    fn default() -> Self {
        CollectCfg {
            window: "60s".into(),
            max_keys: 100_000,
            max_clients: 10_000,
            max_families: 10_000,
            key_clients: crate::collect::keytables::DEFAULT_KEY_CLIENTS,
            client_granularity: Default::default(),
            redact_keys: "none".into(),
        }
    }
}

/// `[insight]`: cache insight (why misses happen, storms, unread writes,
/// TTLs, slab fit, miss-ratio curves).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InsightCfg {
    pub enabled: bool,
    /// Key-server entries of each collector's state table.
    pub max_keys: usize,
    /// A miss storm: this many misses of a key from this many clients
    /// before a store of it, within `storm_window`.
    pub storm_min_misses: u32,
    pub storm_min_clients: u32,
    pub storm_window: String,
    /// memcached's `-f`, `-n` and `slab_chunk_max`.
    pub slab_factor: f64,
    pub slab_min_space: u64,
    pub slab_chunk_max: u64,
    /// Miss-ratio curve: SHARDS sampling rate and its bound on sampled
    /// keys per collector; `mrc_exact` keeps every key (tests).
    pub mrc_sample_rate: f64,
    pub mrc_max_samples: usize,
    pub mrc_exact: bool,
}

impl Default for InsightCfg {
    fn default() -> Self {
        let d = crate::collect::insight::InsightConfig::default();
        let m = crate::collect::mrc::MrcConfig::default();
        InsightCfg {
            enabled: true,
            max_keys: d.max_keys,
            storm_min_misses: d.storm_min_misses,
            storm_min_clients: d.storm_min_clients,
            storm_window: "10s".into(),
            slab_factor: d.slab.factor,
            slab_min_space: d.slab.min_space,
            slab_chunk_max: d.slab.chunk_max,
            mrc_sample_rate: m.sample_rate,
            mrc_max_samples: m.max_samples,
            mrc_exact: false,
        }
    }
}

impl Config {
    /// The analysis' settings, checked; `None` when `[insight] enabled =
    /// false`.
    pub fn insight(&self) -> anyhow::Result<Option<crate::collect::insight::InsightConfig>> {
        let c = &self.insight;
        if !c.enabled {
            return Ok(None);
        }
        let window = parse_duration(&c.storm_window)
            .map_err(|e| anyhow::anyhow!("insight.storm_window: {e}"))?;
        anyhow::ensure!(
            (1.01..=4.0).contains(&c.slab_factor),
            "insight.slab_factor: {} is out of range: 1.01 to 4 (memcached's -f)",
            c.slab_factor
        );
        anyhow::ensure!(
            (1..=1 << 20).contains(&c.slab_min_space),
            "insight.slab_min_space: {} is out of range: 1 to 1048576 (memcached's -n)",
            c.slab_min_space
        );
        anyhow::ensure!(
            (1024..=1 << 30).contains(&c.slab_chunk_max),
            "insight.slab_chunk_max: {} is out of range: 1024 to 1073741824",
            c.slab_chunk_max
        );
        anyhow::ensure!(
            (1..=1 << 26).contains(&c.max_keys),
            "insight.max_keys: {} is out of range: 1 to 67108864",
            c.max_keys
        );
        let mrc = crate::collect::mrc::MrcConfig {
            sample_rate: c.mrc_sample_rate,
            max_samples: c.mrc_max_samples,
            exact: c.mrc_exact,
            scale: 1,
        };
        mrc.check().map_err(|e| anyhow::anyhow!("insight: {e}"))?;
        Ok(Some(crate::collect::insight::InsightConfig {
            max_keys: c.max_keys,
            storm_min_misses: c.storm_min_misses.max(1),
            storm_min_clients: c.storm_min_clients.max(1),
            storm_window_ns: window,
            slab: crate::collect::slab::SlabConfig {
                factor: c.slab_factor,
                min_space: c.slab_min_space,
                chunk_max: c.slab_chunk_max,
            },
            mrc,
            ..Default::default()
        }))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportCfg {
    pub top: usize,
    pub sort: crate::report::SortBy,
}

impl Default for ReportCfg {
    fn default() -> Self {
        ReportCfg {
            top: 20,
            sort: Default::default(),
        }
    }
}

/// The metrics exporter (`/metrics`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportCfg {
    /// Keys and clients in the top-N gauges of the last closed window;
    /// 0 = none, at most `export::prometheus::MAX_METRICS_TOP`.
    pub metrics_top: usize,
}

impl Default for ExportCfg {
    fn default() -> Self {
        ExportCfg {
            metrics_top: crate::export::prometheus::DEFAULT_METRICS_TOP,
        }
    }
}

/// A TOML error on one line: where, which key, what is wrong. toml's own
/// rendering puts the location on the first line and the reason below a
/// source excerpt, so a log that keeps one line kept no reason.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', "; ");
    let Some(span) = e.span() else {
        return msg;
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    match key_on_line(text, line) {
        Some(k) => format!("line {line}, column {col}: {k}: {msg}"),
        None => format!("line {line}, column {col}: {msg}"),
    }
}

/// The dotted key assigned on `line` (1-based), under the last table
/// header above it; `None` when the line assigns nothing.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if i + 1 == line {
            let (k, _) = t.split_once('=')?;
            let k = k.trim();
            if k.is_empty() {
                return None;
            }
            return Some(if table.is_empty() {
                k.to_string()
            } else {
                format!("{table}.{k}")
            });
        }
        if let Some(h) = t.strip_prefix('[') {
            let h = h.trim_start_matches('[');
            if let Some(end) = h.find(']') {
                table = h[..end].trim().to_string();
            }
        }
    }
    None
}

/// The values every number of the config (and the flag that overrides
/// it) may take. Each bound keeps memtap's own arithmetic (nanosecond
/// timestamps, u32 table indexes, buffer sizes) far from overflow and its
/// memory and thread count within what one machine has; none of them is
/// near what a sane deployment sets.
pub mod range {
    /// Inclusive bounds and, when the bound has a reason worth saying, why.
    #[derive(Debug, Clone, Copy)]
    pub struct Range {
        pub min: u64,
        pub max: u64,
        pub why: &'static str,
    }

    const fn r(min: u64, max: u64, why: &'static str) -> Range {
        Range { min, max, why }
    }

    const DAY_S: u64 = 86_400;
    /// Threads: 0 means "from the core count". 1024 is far above the cores
    /// of any machine memtap runs on; 100,000 threads took 12 GiB.
    pub const THREADS_OR_AUTO: Range = r(0, 1024, "0 = from the core count");
    pub const THREADS: Range = r(1, 1024, "");
    /// Bounded tables (flows, keys, clients, families, UDP exchanges):
    /// 2^24 entries is hundreds of times the defaults, and keeps every
    /// index well inside a u32.
    pub const TABLE: Range = r(1, 1 << 24, "");
    pub const PENDING_PER_CONN: Range = r(1, 1 << 24, "");
    /// Each record of a key compares its client with the key's client
    /// rows: 256 keeps that scan short (and a full table 10 KiB a key).
    pub const KEY_CLIENTS: Range = r(
        1,
        crate::collect::keytables::MAX_KEY_CLIENTS as u64,
        "each record scans its key's client rows",
    );
    pub const FRAG_DATAGRAMS: Range = r(1, 1 << 20, "");
    pub const TIMEOUT_S: Range = r(1, DAY_S, "1 second to 1 day");
    pub const TIMEOUT_MS: Range = r(1, DAY_S * 1000, "1 ms to 1 day");
    pub const TIMEOUT_MS_OR_0: Range = r(0, DAY_S * 1000, "up to 1 day");
    pub const WINDOW_NS: Range = r(1_000_000, DAY_S * 1_000_000_000, "1ms to 1d");
    pub const BUFFER_BYTES: Range = r(1, 1 << 32, "up to 4 GiB");
    pub const BUFFER_BYTES_OR_0: Range = r(0, 1 << 36, "up to 64 GiB");
    /// memcached's own line limit is 2048.
    pub const LINE_BYTES: Range = r(1024, 16 << 20, "memcached's own line limit is 2048");
    /// memcached's item size limit (`-I`) goes from 1 KiB to 1 GiB; a
    /// lower limit than the traffic's values would misparse it.
    pub const VALUE_BYTES: Range = r(1024, 1 << 32, "memcached's -I allows 1 KiB to 1 GiB");
    /// memcached's keys are at most 250 bytes; binary keys at most 65535.
    pub const KEY_BYTES: Range = r(250, 65_535, "");
    pub const TOP: Range = r(0, 1_000_000, "");
    pub const BLOCK_BYTES: Range = r(4096, 1 << 30, "");
    pub const BLOCKS: Range = r(1, 1 << 16, "");
    pub const SNAPLEN: Range = r(1, 262_144, "");
    /// Each kept window holds its full tables; a day of minute windows.
    pub const KEEP_WINDOWS: Range = r(0, 1440, "");
    pub const QUEUE: Range = r(1, 1 << 16, "");
    pub const ACTION_WORKERS: Range = r(1, 64, "");
    pub const HTTP_CONNECTIONS: Range = r(1, 65536, "");
    pub const SPOOL_BYTES: Range = r(1 << 20, 1 << 40, "1 MiB to 1 TiB");
    /// A budget below 16 MiB leaves a worker too little to follow even a
    /// few hundred connections; 1 TiB is above any machine memtap runs on.
    pub const MEMORY: Range = r(16 << 20, 1 << 40, "16 MiB to 1 TiB");
    /// The flight recorder's ring, all threads together.
    pub const RECORDER_BYTES: Range = r(1 << 20, 16 << 30, "1 MiB to 16 GiB");
    pub const RECORDER_QUOTA: Range = r(1 << 20, 1 << 50, "");
    /// Each worker's share of the budget: below this its batches between
    /// threads alone would pass their part.
    pub const MEMORY_PER_WORKER: u64 = 8 << 20;
}

/// One line naming the key (or flag) and the allowed range.
pub fn check(name: &str, v: u64, r: range::Range) -> anyhow::Result<()> {
    if (r.min..=r.max).contains(&v) {
        return Ok(());
    }
    let why = if r.why.is_empty() {
        String::new()
    } else {
        format!("; {}", r.why)
    };
    anyhow::bail!(
        "{name} = {v} is out of range: allowed {} to {}{why}",
        r.min,
        r.max
    )
}

/// A window length (nanoseconds) as `check` says it, in its own units.
pub fn check_window(name: &str, ns: u64) -> anyhow::Result<()> {
    let r = range::WINDOW_NS;
    anyhow::ensure!(
        (r.min..=r.max).contains(&ns),
        "{name} = {}ms is out of range: allowed {}",
        ns / 1_000_000,
        r.why
    );
    Ok(())
}

/// Parses a duration: a number of seconds, or a number with a unit
/// (`ms`, `s`, `m`, `h`, `d`). Returns nanoseconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (expected e.g. 60, 60s, 5m, 1h)"))?;
    let mult: u64 = match unit.trim() {
        "" | "s" => 1_000_000_000,
        "ms" => 1_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        u => {
            return Err(format!(
                "bad duration unit {u:?} in {s:?} (use ms, s, m, h or d)"
            ))
        }
    };
    let ns = n
        .checked_mul(mult)
        .ok_or_else(|| format!("duration {s:?} is too long"))?;
    if ns == 0 {
        return Err(format!("duration {s:?} must be greater than 0"));
    }
    Ok(ns)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetCfg {
    /// An address, a CIDR block or `*`.
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
}

fn default_port() -> u16 {
    crate::decode::targets::DEFAULT_PORT
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeCfg {
    pub ip_frag_max_datagrams: usize,
    pub ip_frag_max_bytes: usize,
    pub ip_frag_timeout_ms: u64,
}

impl Default for DecodeCfg {
    fn default() -> Self {
        DecodeCfg {
            ip_frag_max_datagrams: 1024,
            ip_frag_max_bytes: 16 << 20,
            ip_frag_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpCfg {
    pub max_flows: usize,
    pub idle_timeout_s: u64,
    pub max_ooo_bytes_per_flow: u64,
    pub max_ooo_bytes_total: u64,
    pub max_carry_bytes: usize,
    pub hole_timeout_ms: u64,
    pub causal_wait_ms: u64,
}

impl Default for TcpCfg {
    fn default() -> Self {
        TcpCfg {
            max_flows: 262_144,
            idle_timeout_s: 300,
            max_ooo_bytes_per_flow: 1 << 20,
            max_ooo_bytes_total: 64 << 20,
            max_carry_bytes: 256 << 10,
            hole_timeout_ms: 1000,
            causal_wait_ms: 200,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UdpCfg {
    pub timeout_ms: u64,
    pub max_pending: usize,
    /// How long a response seen before its request waits for it (0: never).
    pub hold_ms: u64,
    pub max_held: usize,
    pub max_buffered_bytes: usize,
}

impl Default for UdpCfg {
    fn default() -> Self {
        UdpCfg {
            timeout_ms: 5000,
            max_pending: 65_536,
            hold_ms: 1000,
            max_held: 4096,
            max_buffered_bytes: 16 << 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolCfg {
    pub max_line_bytes: usize,
    pub max_value_bytes: u64,
    pub max_key_bytes: usize,
    pub max_pending_per_conn: usize,
}

impl Default for ProtocolCfg {
    fn default() -> Self {
        let l = crate::protocol::Limits::default();
        ProtocolCfg {
            max_line_bytes: l.max_line,
            max_value_bytes: l.max_value,
            max_key_bytes: l.max_key,
            max_pending_per_conn: 1 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DumpFormat {
    #[default]
    Json,
    Tsv,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OutputCfg {
    /// Record format of `memtap dump`.
    pub dump_format: DumpFormat,
}

impl Config {
    /// Reads and validates a config file; errors name the file and the
    /// offending key.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", toml_error(text, &e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.targets()?;
        let n = |v: usize| v as u64;
        let checks = [
            (
                "decode.ip_frag_max_datagrams",
                n(self.decode.ip_frag_max_datagrams),
                range::FRAG_DATAGRAMS,
            ),
            (
                "decode.ip_frag_max_bytes",
                n(self.decode.ip_frag_max_bytes),
                range::BUFFER_BYTES,
            ),
            (
                "decode.ip_frag_timeout_ms",
                self.decode.ip_frag_timeout_ms,
                range::TIMEOUT_MS,
            ),
            ("tcp.max_flows", n(self.tcp.max_flows), range::TABLE),
            (
                "tcp.idle_timeout_s",
                self.tcp.idle_timeout_s,
                range::TIMEOUT_S,
            ),
            (
                "tcp.max_ooo_bytes_per_flow",
                self.tcp.max_ooo_bytes_per_flow,
                range::BUFFER_BYTES_OR_0,
            ),
            (
                "tcp.max_ooo_bytes_total",
                self.tcp.max_ooo_bytes_total,
                range::BUFFER_BYTES_OR_0,
            ),
            (
                "tcp.max_carry_bytes",
                n(self.tcp.max_carry_bytes),
                range::BUFFER_BYTES,
            ),
            (
                "tcp.hole_timeout_ms",
                self.tcp.hole_timeout_ms,
                range::TIMEOUT_MS_OR_0,
            ),
            (
                "tcp.causal_wait_ms",
                self.tcp.causal_wait_ms,
                range::TIMEOUT_MS_OR_0,
            ),
            ("udp.timeout_ms", self.udp.timeout_ms, range::TIMEOUT_MS),
            ("udp.hold_ms", self.udp.hold_ms, range::TIMEOUT_MS_OR_0),
            ("udp.max_held", n(self.udp.max_held), range::TABLE),
            (
                "udp.max_buffered_bytes",
                n(self.udp.max_buffered_bytes),
                range::BUFFER_BYTES,
            ),
            ("udp.max_pending", n(self.udp.max_pending), range::TABLE),
            (
                "protocol.max_line_bytes",
                n(self.protocol.max_line_bytes),
                range::LINE_BYTES,
            ),
            (
                "protocol.max_value_bytes",
                self.protocol.max_value_bytes,
                range::VALUE_BYTES,
            ),
            (
                "protocol.max_key_bytes",
                n(self.protocol.max_key_bytes),
                range::KEY_BYTES,
            ),
            (
                "protocol.max_pending_per_conn",
                n(self.protocol.max_pending_per_conn),
                range::PENDING_PER_CONN,
            ),
            (
                "pipeline.workers",
                n(self.pipeline.workers),
                range::THREADS_OR_AUTO,
            ),
            (
                "pipeline.collectors",
                n(self.pipeline.collectors),
                range::THREADS_OR_AUTO,
            ),
            ("collect.max_keys", n(self.collect.max_keys), range::TABLE),
            (
                "collect.max_clients",
                n(self.collect.max_clients),
                range::TABLE,
            ),
            (
                "collect.max_families",
                n(self.collect.max_families),
                range::TABLE,
            ),
            (
                "collect.key_clients",
                n(self.collect.key_clients),
                range::KEY_CLIENTS,
            ),
            ("report.top", n(self.report.top), range::TOP),
            (
                "capture.block_size",
                n(self.capture.block_size),
                range::BLOCK_BYTES,
            ),
            (
                "capture.block_count",
                n(self.capture.block_count),
                range::BLOCKS,
            ),
            (
                "capture.snaplen",
                u64::from(self.capture.snaplen),
                range::SNAPLEN,
            ),
            (
                "capture.pcap_buffer",
                n(self.capture.pcap_buffer),
                range::BUFFER_BYTES,
            ),
            (
                "http.keep_windows",
                n(self.http.keep_windows),
                range::KEEP_WINDOWS,
            ),
            ("store.top", n(self.store.top), range::TOP),
            ("store.queue_len", n(self.store.queue_len), range::QUEUE),
            (
                "actions.workers",
                n(self.actions.workers),
                range::ACTION_WORKERS,
            ),
            ("actions.queue_len", n(self.actions.queue_len), range::QUEUE),
        ];
        for (name, v, r) in checks {
            check(name, v, r)?;
        }
        parse_memory("limits.memory", &self.limits.memory)?;
        self.triggers()?;
        self.insight()?;
        self.recorder_bounds()?;
        self.grace()?;
        self.spool_max()?;
        self.http.limits()?;
        let window = parse_duration(&self.collect.window)
            .map_err(|e| anyhow::anyhow!("collect.window: {e}"))?;
        check_window("collect.window", window)?;
        self.collect
            .redact_keys
            .parse::<crate::collect::redact::Redact>()
            .map_err(|e| anyhow::anyhow!("collect.redact_keys: {e}"))?;
        crate::collect::families::FamilyRules::new(&self.families)
            .map_err(|e| anyhow::anyhow!("families: {e}"))?;
        anyhow::ensure!(
            self.export.metrics_top <= crate::export::prometheus::MAX_METRICS_TOP,
            "export.metrics_top must be at most {} (each top key adds {} series)",
            crate::export::prometheus::MAX_METRICS_TOP,
            3 + 1 + crate::export::prometheus::KEY_CLIENT_SERIES
        );
        Ok(())
    }

    pub fn targets(&self) -> anyhow::Result<Targets> {
        let mut list = Vec::new();
        for t in &self.target {
            let mut parsed: Target = t
                .host
                .parse()
                .map_err(|e| anyhow::anyhow!("[[target]] host: {e}"))?;
            anyhow::ensure!(t.port != 0, "[[target]] port must be 1-65535");
            parsed.port = t.port;
            list.push(parsed);
        }
        Ok(Targets::new(list))
    }

    /// The `[[trigger]]` rules, checked: one line naming a bad one.
    pub fn triggers(&self) -> anyhow::Result<Vec<crate::trigger::Rule>> {
        let mut specs = Vec::new();
        for t in &self.trigger {
            let d = |what: &str, v: &str| {
                parse_duration(v).map_err(|e| anyhow::anyhow!("trigger {:?}: {what}: {e}", t.name))
            };
            specs.push(crate::trigger::RuleSpec {
                name: t.name.clone(),
                metric: t.metric.clone(),
                above: t.above,
                below: t.below,
                clear: t.clear,
                window_ns: d("window", &t.window)?,
                cooldown_ns: d("cooldown", &t.cooldown)?,
                min_requests: t.min_requests,
                counter: t.counter.clone(),
                before_ns: d("before", &t.before)?,
                after_ns: d("after", &t.after)?,
                record: t.record,
                webhook: t.webhook.clone(),
                command: t.command.clone(),
            });
        }
        crate::trigger::rule::check_all(&specs).map_err(|e| anyhow::anyhow!(e))
    }

    /// `[recorder]`'s sizes and times: (ring bytes, keep ns, quota bytes,
    /// webhook timeout ns, command timeout ns).
    pub fn recorder_bounds(&self) -> anyhow::Result<(u64, u64, u64, u64, u64)> {
        let r = &self.recorder;
        let size = |name: &str, v: &str, range: range::Range| -> anyhow::Result<u64> {
            let b = v.trim().parse::<bytesize::ByteSize>().map_err(|_| {
                anyhow::anyhow!("recorder.{name} = {v:?} is not a size: write e.g. \"64MiB\"")
            })?;
            check(&format!("recorder.{name}"), b.as_u64(), range)?;
            Ok(b.as_u64())
        };
        let time = |name: &str, v: &str, max_s: u64| -> anyhow::Result<u64> {
            let ns = parse_duration(v).map_err(|e| anyhow::anyhow!("recorder.{name}: {e}"))?;
            anyhow::ensure!(
                (1_000_000_000..=max_s * 1_000_000_000).contains(&ns),
                "recorder.{name} = {v} is out of range: allowed 1s to {max_s}s"
            );
            Ok(ns)
        };
        Ok((
            size("memory", &r.memory, range::RECORDER_BYTES)?,
            time("keep", &r.keep, 600)?,
            size("quota", &r.quota, range::RECORDER_QUOTA)?,
            time("webhook_timeout", &r.webhook_timeout, 60)?,
            time("command_timeout", &r.command_timeout, 600)?,
        ))
    }

    /// The exit graces: `store.flush_timeout` and `actions.drain_timeout`
    /// (each 0 to 300 s).
    pub fn grace(&self) -> anyhow::Result<(std::time::Duration, std::time::Duration)> {
        let t = |name: &str, v: &str| -> anyhow::Result<std::time::Duration> {
            let ns = match v.trim() {
                "0" => 0,
                v => parse_duration(v).map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
            };
            anyhow::ensure!(
                ns <= 300_000_000_000,
                "{name} = {v} is out of range: allowed 0s to 300s"
            );
            Ok(std::time::Duration::from_nanos(ns))
        };
        Ok((
            t("store.flush_timeout", &self.store.flush_timeout)?,
            t("actions.drain_timeout", &self.actions.drain_timeout)?,
        ))
    }

    /// `store.spool_max` in bytes.
    pub fn spool_max(&self) -> anyhow::Result<u64> {
        let v = &self.store.spool_max;
        let b = v.trim().parse::<bytesize::ByteSize>().map_err(|_| {
            anyhow::anyhow!("store.spool_max = {v:?} is not a size: write e.g. \"256MiB\"")
        })?;
        check("store.spool_max", b.as_u64(), range::SPOOL_BYTES)?;
        Ok(b.as_u64())
    }

    /// The budget of `[limits] memory`; `None` when it is off. The value
    /// was checked at load.
    pub fn memory(&self) -> Option<u64> {
        parse_memory("limits.memory", &self.limits.memory).unwrap_or(Some(auto_memory()))
    }

    /// One worker's split when the budget (`memory`, `None` for none) is
    /// shared by `workers`.
    pub fn split(memory: Option<u64>, workers: usize) -> Split {
        match memory {
            Some(m) => Split::of(m / workers.max(1) as u64),
            None => Split::unbounded(),
        }
    }

    /// Decoder bounds for one thread with the whole budget.
    pub fn decode_config(&self) -> crate::decode::DecodeConfig {
        self.decode_config_split(&Config::split(self.memory(), 1))
    }

    /// Decoder bounds within a worker's `split` of the budget.
    pub fn decode_config_split(&self, split: &Split) -> crate::decode::DecodeConfig {
        crate::decode::DecodeConfig {
            frag_max_datagrams: self.decode.ip_frag_max_datagrams,
            frag_max_bytes: self.decode.ip_frag_max_bytes.min(split.frag_bytes),
            frag_timeout_ns: self.decode.ip_frag_timeout_ms.saturating_mul(1_000_000),
        }
    }

    pub fn limits(&self) -> crate::protocol::Limits {
        crate::protocol::Limits {
            max_line: self.protocol.max_line_bytes,
            max_value: self.protocol.max_value_bytes,
            max_key: self.protocol.max_key_bytes,
        }
    }
}

// The engine's bounds come from the config file; the impls live here so
// that `session` never depends on the application's config model.
impl crate::session::EngineConfig {
    /// Bounds for one engine with the whole budget (a single-threaded run).
    pub fn from_config(c: &Config) -> crate::session::EngineConfig {
        Self::from_config_split(c, &Config::split(c.memory(), 1))
    }

    /// Bounds for one worker: each configured bound, lowered where the
    /// worker's `split` of the memory budget is smaller.
    pub fn from_config_split(c: &Config, split: &Split) -> crate::session::EngineConfig {
        crate::session::EngineConfig {
            limits: c.limits(),
            max_pending_per_conn: c.protocol.max_pending_per_conn,
            tcp: crate::reassembly::tcp::TcpConfig {
                max_ooo_per_flow: c.tcp.max_ooo_bytes_per_flow,
                max_carry: c.tcp.max_carry_bytes,
                hole_timeout_ns: c.tcp.hole_timeout_ms.saturating_mul(1_000_000),
                causal_wait_ns: c.tcp.causal_wait_ms.saturating_mul(1_000_000),
                ..crate::reassembly::tcp::TcpConfig::default()
            },
            max_flows: c.tcp.max_flows.min(split.flows),
            idle_timeout_ns: c.tcp.idle_timeout_s.saturating_mul(1_000_000_000),
            max_ooo_total: c.tcp.max_ooo_bytes_total.min(split.ooo_bytes),
            udp_timeout_ns: c.udp.timeout_ms.saturating_mul(1_000_000),
            udp_max_pending: c.udp.max_pending.min(split.udp_exchanges),
            udp_hold_ns: c.udp.hold_ms.saturating_mul(1_000_000),
            udp_max_held: c.udp.max_held,
            udp_max_buffered: c.udp.max_buffered_bytes.min(split.udp_buffered),
            max_carry_total: split.carry_bytes,
            max_requests: split.requests,
            udp_max_carry_total: split.udp_carry,
        }
    }
}

impl Default for crate::session::EngineConfig {
    fn default() -> Self {
        crate::session::EngineConfig::from_config(&Config::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_parses_and_equals_defaults() {
        let text = include_str!("../config/memtap.toml");
        let cfg = Config::parse(text).unwrap();
        let d = Config::default();
        assert_eq!(cfg.target.len(), 1);
        assert_eq!(cfg.targets().unwrap().list()[0].to_string(), "*:11211");
        assert_eq!(format!("{:?}", cfg.tcp), format!("{:?}", d.tcp));
        assert_eq!(format!("{:?}", cfg.udp), format!("{:?}", d.udp));
        assert_eq!(format!("{:?}", cfg.decode), format!("{:?}", d.decode));
        assert_eq!(format!("{:?}", cfg.protocol), format!("{:?}", d.protocol));
        assert_eq!(cfg.output.dump_format, DumpFormat::Json);
        assert_eq!(cfg.pipeline.workers, d.pipeline.workers);
        assert_eq!(cfg.pipeline.collectors, d.pipeline.collectors);
        assert_eq!(format!("{:?}", cfg.collect), format!("{:?}", d.collect));
        assert_eq!(format!("{:?}", cfg.report), format!("{:?}", d.report));
        assert_eq!(format!("{:?}", cfg.export), format!("{:?}", d.export));
        assert_eq!(cfg.export.metrics_top, 10);
        assert_eq!(cfg.families, d.families);
        assert_eq!(cfg.capture, d.capture);
        assert_eq!(cfg.http, d.http);
        assert_eq!(format!("{:?}", cfg.store), format!("{:?}", d.store));
        assert_eq!(format!("{:?}", cfg.limits), format!("{:?}", d.limits));
        assert_eq!(cfg.recorder, d.recorder);
        assert!(cfg.trigger.is_empty());
    }

    #[test]
    fn memory_budget_sizes_and_errors() {
        let mem = |t: &str| Config::parse(&format!("[limits]\nmemory = {t}\n"));
        assert_eq!(mem("\"64MiB\"").unwrap().memory(), Some(64 << 20));
        assert_eq!(mem("\"2 GiB\"").unwrap().memory(), Some(2 << 30));
        assert_eq!(mem("\"100MB\"").unwrap().memory(), Some(100_000_000));
        assert_eq!(mem("\"off\"").unwrap().memory(), None);
        let auto = mem("\"auto\"").unwrap().memory().unwrap();
        assert!((16 << 20..=512 << 20).contains(&auto), "{auto}");
        let e = mem("\"lots\"").unwrap_err().to_string();
        assert_eq!(
            e,
            "limits.memory = \"lots\" is not a size: write e.g. \"512MiB\", \"2GiB\", \"auto\" or \"off\""
        );
        let e = mem("\"1MiB\"").unwrap_err().to_string();
        assert_eq!(
            e,
            "limits.memory = 1048576 is out of range: allowed 16777216 to 1099511627776; 16 MiB to 1 TiB"
        );
        // A number is not a size string: serde names the key.
        assert!(mem("512").unwrap_err().to_string().contains("memory"));
    }

    #[test]
    fn the_budget_lowers_bounds_it_cannot_afford_and_keeps_the_others() {
        let c = Config::default();
        let e = crate::session::EngineConfig::from_config_split(&c, &Split::of(64 << 20));
        let s = Split::of(64 << 20);
        assert_eq!(e.max_flows, s.flows);
        assert_eq!(e.udp_max_pending, s.udp_exchanges);
        assert_eq!(e.max_ooo_total, s.ooo_bytes);
        assert_eq!(e.max_requests, s.requests);
        assert_eq!(e.udp_max_held, c.udp.max_held);
        // A bound lower than its part stays.
        let mut small = Config::default();
        small.tcp.max_flows = 10;
        let e = crate::session::EngineConfig::from_config_split(&small, &s);
        assert_eq!(e.max_flows, 10);
        let off = crate::session::EngineConfig::from_config_split(&c, &Split::unbounded());
        assert_eq!(off.max_flows, c.tcp.max_flows);
        assert_eq!(off.max_requests, usize::MAX);
    }

    #[test]
    fn garbage_is_rejected_with_the_key_named() {
        let e = Config::parse("[tcp]\nmax_flowz = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_flowz"), "{e}");
        let e = Config::parse("[tcp]\nmax_flows = 0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "tcp.max_flows = 0 is out of range: allowed 1 to 16777216"
        );
        let e = Config::parse("[[target]]\nhost = \"10.0.0.300\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("10.0.0.300"), "{e}");
        let e = Config::parse("[tcp]\nmax_flows = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_flows"), "{e}");
        assert!(Config::parse("not toml at all [").is_err());
        let e = Config::parse("[export]\nmetrics_top = 101\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("export.metrics_top must be at most 100"),
            "{e}"
        );
        assert_eq!(
            Config::parse("[export]\nmetrics_top = 100\n")
                .unwrap()
                .export
                .metrics_top,
            100
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60"), Ok(60_000_000_000));
        assert_eq!(parse_duration("60s"), Ok(60_000_000_000));
        assert_eq!(parse_duration("5m"), Ok(300_000_000_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000_000_000));
        assert_eq!(parse_duration("250ms"), Ok(250_000_000));
        assert!(parse_duration("0").unwrap_err().contains("greater than 0"));
        assert!(parse_duration("5 fortnights").unwrap_err().contains("unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999d")
            .unwrap_err()
            .contains("too long"));
    }

    #[test]
    fn targets_from_tables() {
        let cfg = Config::parse(
            "[[target]]\nhost = \"10.1.0.0/16\"\n[[target]]\nhost = \"::1\"\nport = 11300\n",
        )
        .unwrap();
        let t: Vec<String> = cfg
            .targets()
            .unwrap()
            .list()
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(t, ["10.1.0.0/16:11211", "[::1/128]:11300"]);
    }
}
