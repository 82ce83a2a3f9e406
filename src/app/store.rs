//! `replay --store`, `memtap report` and `memtap serve`: the CLI side of
//! the interval history.

use super::cli::{By, HistoryArgs, HistoryWhat, ReplayArgs, ReportFormat, ServeArgs};
use super::pipeline::PipelineOutput;
use crate::collect::collector::window_start;
use crate::collect::tables::Tables;
use crate::config::{parse_duration, Config};
use crate::report::{ReportOptions, SortBy};
use crate::store::history::{self, Query};
use crate::store::when::fmt_time;
use crate::store::{CaptureRow, Interval, StoreOptions, Writer};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

fn load(config: &Option<PathBuf>) -> anyhow::Result<Config> {
    match config {
        Some(p) => Config::load(p),
        None => Ok(Config::default()),
    }
}

/// The writer options from `[store]` and the flags.
pub fn store_options(
    cfg: &Config,
    sniffer: Option<&str>,
    store_top: Option<usize>,
    fine_ns: u64,
) -> anyhow::Result<StoreOptions> {
    let sc = &cfg.store;
    if let Some(t) = store_top {
        crate::config::check("--store-top", t as u64, crate::config::range::TOP)?;
    }
    let rollup_ns = parse_duration(&sc.rollup).map_err(|e| anyhow::anyhow!("store.rollup: {e}"))?;
    anyhow::ensure!(
        rollup_ns >= fine_ns && rollup_ns % fine_ns == 0,
        "store.rollup ({}) must be a whole multiple of the window ({})",
        sc.rollup,
        crate::store::schema::dur(fine_ns)
    );
    let keep_fine_ns = match sc.keep_fine.trim() {
        "0" | "" => 0,
        k => parse_duration(k).map_err(|e| anyhow::anyhow!("store.keep_fine: {e}"))?,
    };
    let sniffer = match sniffer {
        Some(s) => s.to_string(),
        None if !sc.sniffer.is_empty() => sc.sniffer.clone(),
        None => crate::store::default_sniffer(),
    };
    Ok(StoreOptions {
        sniffer,
        store_top: store_top.unwrap_or(sc.top),
        fine_ns,
        rollup_ns,
        spool_dir: if sc.spool_dir.is_empty() {
            std::env::temp_dir()
        } else {
            sc.spool_dir.clone().into()
        },
        queue_len: sc.queue_len.max(1),
        keep_fine_ns,
        retry_for: cfg.grace()?.0,
        spool_max: cfg.spool_max()?,
        ..StoreOptions::default()
    })
}

pub fn writer_for(cfg: &Config, url: &str, a: &ReplayArgs, fine_ns: u64) -> anyhow::Result<Writer> {
    let mut o = store_options(cfg, a.keep.sniffer.as_deref(), a.keep.store_top, fine_ns)?;
    // A store that cannot be reached (or written) now does not stop the
    // replay: the report comes out and the intervals wait in its spool.
    o.start_offline = true;
    Writer::spawn(url, o)
}

/// A writer's figures for `/metrics`.
pub fn figures(s: &crate::store::writer::WriterStats) -> crate::export::prometheus::StoreFigures {
    crate::export::prometheus::StoreFigures {
        backlog: s.backlog(),
        spool_bytes: s.spool_bytes(),
        shed: s.shed(),
        foreign: s.foreign(),
        lost: s.lost(),
    }
}

/// After the report: a store that could not take everything says so on
/// standard error; the exit status is 1 only when something was lost (not
/// even spooled), since spooled intervals reach the store on the next run.
pub fn finish_outcome(
    r: anyhow::Result<()>,
    stats: &crate::store::writer::WriterStats,
) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let lost = stats.lost() + stats.shed();
            if lost > 0 {
                eprintln!("memtap: error: {e:#} ({lost} items lost in all)");
                ExitCode::FAILURE
            } else {
                eprintln!("memtap: warning: {e:#}");
                ExitCode::SUCCESS
            }
        }
    }
}

/// Hands a replay's windows to the store. The pipeline counts health per
/// run, not per window, so the run's counters go with its last window
/// (sums over any range holding the capture's end are exact).
pub fn store_replay(
    w: Writer,
    out: PipelineOutput,
    files: &[PathBuf],
    window_ns: u64,
    events: &[crate::trigger::Event],
) -> anyhow::Result<()> {
    for e in events {
        w.submit_event(e);
    }
    let last_start = window_start(out.last_ts, window_ns);
    let mut windows = out.windows;
    if !windows.iter().any(|(s, _, _)| *s == last_start) && out.counters.packets > 0 {
        // Even a last window without records carries the counters.
        let limits = crate::collect::tables::TableLimits {
            max_keys: out.run.keys.capacity(),
            max_clients: out.run.clients.capacity(),
            max_families: out.run.families.capacity(),
            client_granularity: Default::default(),
            key_clients: out.run.key_clients(),
            insight_examples: 16,
        };
        windows.push((last_start, last_start + window_ns, Tables::new(&limits)));
    }
    for (start, end, tables) in windows {
        let counters = if start == last_start {
            out.counters.clone()
        } else {
            Default::default()
        };
        w.submit(Interval {
            start,
            end,
            tables,
            counters,
        });
    }
    if out.counters.packets > 0 {
        w.submit_capture(CaptureRow {
            first_ns: out.first_ts,
            last_ns: out.last_ts,
            files: files.iter().map(|f| f.display().to_string()).collect(),
        });
    }
    w.finish()
}

/// Parses a time for --since/--until: -DURATION before now, or what
/// `store::when::parse_time` takes. Returns ns.
pub fn parse_time(s: &str) -> anyhow::Result<u64> {
    if let Some(d) = s.trim().strip_prefix('-') {
        let ns = parse_duration(d).map_err(|e| anyhow::anyhow!("time {s:?}: {e}"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return Ok(now.saturating_sub(ns));
    }
    crate::store::when::parse_time(s)
}

/// `memtap report --store URL …`.
pub fn report(a: HistoryArgs) -> anyhow::Result<ExitCode> {
    let cfg = load(&a.config)?;
    let url = a.store.store.clone().unwrap_or(cfg.store.url.clone());
    let q = Query {
        since: a.since.as_deref().map(parse_time).transpose()?.unwrap_or(0),
        until: a.until.as_deref().map(parse_time).transpose()?,
        sniffers: a.sniffer.clone(),
        servers: a.server.clone(),
    };
    let redact: crate::collect::redact::Redact = a
        .redact_keys
        .clone()
        .unwrap_or_else(|| cfg.collect.redact_keys.clone())
        .parse()
        .map_err(|e| anyhow::anyhow!("--redact-keys: {e}"))?;
    let top = a.top.unwrap_or(cfg.report.top);
    let by = a.by.map(|b| match b {
        By::Requests => SortBy::Requests,
        By::Bytes => SortBy::Bytes,
    });
    let mut db = crate::store::open_read(&url)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let res = match &a.what {
        None => {
            if a.format == ReportFormat::Csv && a.output_dir.is_none() {
                anyhow::bail!("--format csv writes one file per table: give --output-dir DIR");
            }
            let o = ReportOptions {
                top,
                sort: by.unwrap_or(cfg.report.sort),
                redact,
            };
            let rep = history::report(db.as_mut(), &q, &o)?;
            match a.format {
                ReportFormat::Json => serde_json::to_writer_pretty(&mut out, &rep)
                    .map_err(std::io::Error::other)
                    .and_then(|_| writeln!(out)),
                ReportFormat::Text => crate::report::text::write(&mut out, &rep),
                ReportFormat::Csv => {
                    let dir = a.output_dir.as_ref().expect("checked above");
                    crate::report::csv::write_dir(dir, &rep)?;
                    Ok(())
                }
            }
        }
        Some(HistoryWhat::Key { key }) => {
            let raw = crate::escape::unescape_key(key);
            let h = history::key_history(db.as_mut(), &q, &raw, top)?;
            match a.format {
                ReportFormat::Text => key_text(&mut out, &h),
                _ => serde_json::to_writer_pretty(&mut out, &h)
                    .map_err(std::io::Error::other)
                    .and_then(|_| writeln!(out)),
            }
        }
        Some(HistoryWhat::Events) => {
            let ev = crate::store::events::read(db.as_mut(), q.since, q.until, &q.sniffers)?;
            match a.format {
                ReportFormat::Text => events_text(&mut out, &ev),
                _ => serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "events": ev }))
                    .map_err(std::io::Error::other)
                    .and_then(|_| writeln!(out)),
            }
        }
        Some(HistoryWhat::Peaks) => {
            let p = history::peaks(db.as_mut(), &q, top, by == Some(SortBy::Bytes))?;
            match a.format {
                ReportFormat::Text => peaks_text(&mut out, &p),
                _ => serde_json::to_writer_pretty(&mut out, &p)
                    .map_err(std::io::Error::other)
                    .and_then(|_| writeln!(out)),
            }
        }
    };
    match res.and_then(|_| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(anyhow::anyhow!("writing the report: {e}")),
    }
}

fn events_text(out: &mut dyn Write, ev: &[crate::store::events::EventRow]) -> std::io::Result<()> {
    if ev.is_empty() {
        return writeln!(
            out,
            "No trigger events in the stored history for this span."
        );
    }
    writeln!(
        out,
        "{:<20} {:<12} {:<16} {:<8} {:<8} {:<24} {:<22} {:>10} {:>10}",
        "time", "sniffer", "trigger", "event", "subject", "", "metric", "value", "threshold"
    )?;
    for e in ev {
        writeln!(
            out,
            "{:<20} {:<12} {:<16} {:<8} {:<8} {:<24} {:<22} {:>10} {:>10}",
            fmt_time(e.ts_ns),
            e.sniffer,
            e.trigger,
            e.event,
            e.subject_kind,
            e.subject,
            e.metric,
            e.value,
            e.threshold
        )?;
    }
    Ok(())
}

fn key_text(out: &mut dyn Write, h: &history::KeyHistory) -> std::io::Result<()> {
    writeln!(out, "Key {}", h.key)?;
    match (&h.first_top, &h.peak) {
        (_, None) => return writeln!(out, "  not in the stored history"),
        (first, Some(p)) => {
            match first {
                Some(f) => writeln!(out, "  first in the top {}: {}", h.top, fmt_time(*f))?,
                None => writeln!(out, "  never in the top {}", h.top)?,
            }
            writeln!(
                out,
                "  peak: {} requests at {}",
                p.requests,
                fmt_time(p.start)
            )?;
        }
    }
    writeln!(
        out,
        "\n{:<21} {:>10} {:>10} {:>10} {:>12} {:>12} {:>5}  servers / clients",
        "interval", "requests", "hits", "misses", "bytes_in", "bytes_out", "rank"
    )?;
    for p in &h.points {
        let clients: Vec<String> = p
            .clients
            .iter()
            .map(|(c, n, b)| match b {
                0 => format!("{c}={n}"),
                b => format!("{c}={n}±{b}"),
            })
            .collect();
        writeln!(
            out,
            "{:<21} {:>10} {:>10} {:>10} {:>12} {:>12} {:>5}  {} / {}",
            fmt_time(p.start),
            p.requests,
            p.hits,
            p.misses,
            p.bytes_in,
            p.bytes_out,
            p.rank,
            p.servers.join(","),
            clients.join(",")
        )?;
    }
    Ok(())
}

fn peaks_text(out: &mut dyn Write, v: &[history::Peak]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<24} {:<21} {:>10} {:>10} {:>10} {:>12} {:>12}  sniffer",
        "server", "interval", "requests", "hits", "misses", "bytes_in", "bytes_out"
    )?;
    for p in v {
        writeln!(
            out,
            "{:<24} {:<21} {:>10} {:>10} {:>10} {:>12} {:>12}  {}",
            p.server,
            fmt_time(p.start),
            p.requests,
            p.hits,
            p.misses,
            p.bytes_in,
            p.bytes_out,
            p.sniffer
        )?;
    }
    Ok(())
}

/// `memtap serve`: the history web page.
pub fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = load(&a.config)?;
    let url = a.store.store.clone().unwrap_or(cfg.store.url.clone());
    let listen = a.listen.clone().unwrap_or(cfg.store.listen.clone());
    // Fail now on a bad URL or an unreadable store, not on the first page.
    drop(crate::store::open_read(&url)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        eprintln!(
            "memtap: serving the history of {} on http://{}/",
            crate::store::StoreUrl::to_string(&url.parse()?),
            l.local_addr()?
        );
        axum::serve(l, crate::web::history::router(url))
            .await
            .map_err(|e| anyhow::anyhow!("serve: {e}"))
    })?;
    Ok(ExitCode::SUCCESS)
}
