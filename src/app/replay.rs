//! `memtap replay`: the pipeline over capture files, then the report.

use super::cli::{ReplayArgs, ReportFormat};
use super::pipeline::{self, PipelineConfig, PipelineOutput};
use super::{load_config, ReplayProgress};
use crate::collect::families::FamilyRules;
use crate::collect::redact::Redact;
use crate::collect::tables::TableLimits;
use crate::config::{parse_duration, Config};
use crate::decode::targets::Targets;
use crate::report::{self, LimitsOut, Report, ReportOptions, RunInfo};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Everything a replay needs, resolved from config and flags.
#[derive(Debug, Clone)]
pub struct ReplaySetup {
    pub pipeline: PipelineConfig,
    pub options: ReportOptions,
    pub per_window: bool,
    /// Keys and clients in the metrics' top-N gauges (`--metrics-top`,
    /// `export.metrics_top`), at most `MAX_METRICS_TOP`.
    pub metrics_top: usize,
    /// The `[[trigger]]` rules and how they act; `None` without rules.
    pub triggers: Option<super::triggers::Settings>,
}

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Merges `[pipeline]`, `[collect]`, `[report]` and `[families]` with the
/// flags (flags win).
pub fn setup(
    cfg: &Config,
    a: &super::cli::AnalysisArgs,
    top: Option<usize>,
    sort: Option<crate::report::SortBy>,
    per_window: bool,
) -> anyhow::Result<ReplaySetup> {
    // Half the cores each by default: a collector's work per packet is
    // about a worker's (more with per-window tables), and on 2 cores one
    // worker and one collector replay big.pcap in 0.46 s where two
    // workers took 0.49 s and 15 % more CPU (docs/performance.md).
    let workers = a.workers.unwrap_or(match cfg.pipeline.workers {
        0 => (cores() / 2).max(1),
        n => n,
    });
    let collectors = a.collectors.unwrap_or(match cfg.pipeline.collectors {
        0 => (cores() / 2).max(1),
        n => n,
    });
    use crate::config::{check, check_window, range};
    if a.workers.is_some() {
        check("--workers", workers as u64, range::THREADS)?;
    }
    if a.collectors.is_some() {
        check("--collectors", collectors as u64, range::THREADS)?;
    }
    // "From the core count" on a machine with more cores than the bound.
    let (workers, collectors) = (
        workers.min(range::THREADS.max as usize),
        collectors.min(range::THREADS.max as usize),
    );
    let window = a
        .window
        .clone()
        .unwrap_or_else(|| cfg.collect.window.clone());
    let window_ns = parse_duration(&window).map_err(|e| anyhow::anyhow!("--window: {e}"))?;
    if a.window.is_some() {
        check_window("--window", window_ns)?;
    }
    let redact_s = a
        .redact_keys
        .clone()
        .unwrap_or_else(|| cfg.collect.redact_keys.clone());
    let redact: Redact = redact_s
        .parse()
        .map_err(|e| anyhow::anyhow!("--redact-keys: {e}"))?;
    let max_keys = a.max_keys.unwrap_or(cfg.collect.max_keys);
    let max_clients = a.max_clients.unwrap_or(cfg.collect.max_clients);
    if a.max_keys.is_some() {
        check("--max-keys", max_keys as u64, range::TABLE)?;
    }
    if a.max_clients.is_some() {
        check("--max-clients", max_clients as u64, range::TABLE)?;
    }
    let key_clients = a.key_clients.unwrap_or(cfg.collect.key_clients);
    if a.key_clients.is_some() {
        check("--key-clients", key_clients as u64, range::KEY_CLIENTS)?;
    }
    if let Some(t) = top {
        check("--top", t as u64, range::TOP)?;
    }
    let metrics_top = a.metrics_top.unwrap_or(cfg.export.metrics_top);
    anyhow::ensure!(
        metrics_top <= crate::export::prometheus::MAX_METRICS_TOP,
        "--metrics-top must be at most {}",
        crate::export::prometheus::MAX_METRICS_TOP
    );
    let memory = match &a.memory {
        Some(m) => crate::config::parse_memory("--memory", m)?,
        None => cfg.memory(),
    };
    if let Some(m) = memory {
        let share = m / workers as u64;
        anyhow::ensure!(
            share >= range::MEMORY_PER_WORKER,
            "a memory budget of {} gives each of {workers} workers {}: at least {} each is needed (raise --memory / limits.memory, or lower --workers)",
            size(m),
            size(share),
            size(range::MEMORY_PER_WORKER),
        );
    }
    let json = a.log_format == Some(super::cli::LogFormat::Json);
    let triggers = super::triggers::Settings::from_config(cfg, a.trigger_dir.clone(), json, false)?;
    let triggers =
        (!triggers.rules.is_empty()).then_some(super::triggers::Settings { redact, ..triggers });
    let rules = FamilyRules::new(&cfg.families).map_err(|e| anyhow::anyhow!("families: {e}"))?;
    Ok(ReplaySetup {
        pipeline: PipelineConfig {
            workers,
            collectors,
            window_ns,
            windows: per_window,
            limits: TableLimits {
                max_keys,
                max_clients,
                max_families: cfg.collect.max_families,
                key_clients,
                insight_examples: 16,
                client_granularity: a
                    .client_granularity
                    .unwrap_or(cfg.collect.client_granularity),
            },
            families: Some(Arc::new(rules)),
            memory,
            seconds: triggers.is_some(),
            insight: cfg.insight()?,
        },
        options: ReportOptions {
            top: top.unwrap_or(cfg.report.top),
            sort: sort.unwrap_or(cfg.report.sort),
            redact,
        },
        per_window,
        metrics_top,
        triggers,
    })
}

/// Runs the pipeline and builds the report (no output).
pub fn replay_report(
    cfg: &Config,
    targets: &Targets,
    files: &[PathBuf],
    s: &ReplaySetup,
    progress: &mut dyn ReplayProgress,
) -> anyhow::Result<(Report, Vec<String>)> {
    let out = pipeline::run(cfg, targets, files, &s.pipeline, progress)?;
    Ok((make_report(&out, files, s), out.warnings))
}

pub fn make_report(out: &PipelineOutput, files: &[PathBuf], s: &ReplaySetup) -> Report {
    let windows: Vec<_> = if s.per_window {
        let mut v: Vec<_> = out
            .windows
            .iter()
            .map(|(start, end, t)| (*start, *end, report::tables_out(t, &s.options)))
            .collect();
        fill_quiet_windows(&mut v, out, s);
        v
    } else {
        Vec::new()
    };
    let limits = run_limits(out, s);
    let info = RunInfo {
        files: files.iter().map(|f| f.display().to_string()).collect(),
        counters: out.counters.clone(),
        first_ts: out.first_ts,
        last_ts: out.last_ts,
        servers_found: Vec::new(),
    };
    report::build(&out.run, &windows, &info, limits, &s.options)
}

fn run_limits(out: &PipelineOutput, s: &ReplaySetup) -> LimitsOut {
    let l = &s.pipeline.limits;
    LimitsOut {
        max_keys: l.max_keys,
        max_clients: l.max_clients,
        max_families: l.max_families,
        key_clients: l.key_clients,
        tracked_keys: out.run.keys.len(),
        tracked_clients: out.run.clients.len(),
        tracked_families: out.run.families.len(),
        key_evictions: out.run.keys.evictions(),
        client_evictions: out.run.clients.evictions(),
        family_evictions: out.run.families.evictions(),
    }
}

pub fn run(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    let (cfg, targets) = load_config(&a.common)?;
    let mut s = setup(
        &cfg,
        &a.analysis,
        a.report.top,
        a.report.sort,
        a.report.per_window,
    )?;
    if a.report.format == ReportFormat::Csv && a.report.output_dir.is_none() {
        anyhow::bail!("--format csv writes one file per table: give --output-dir DIR");
    }
    // The store needs every window, whether the report lists them or not.
    let store = match &a.keep.store {
        Some(url) => {
            s.pipeline.windows = true;
            Some(super::store::writer_for(
                &cfg,
                url,
                &a,
                s.pipeline.window_ns,
            )?)
        }
        None => None,
    };
    // Bind before the (possibly long) replay: a busy port fails at once.
    let listener = if a.serve {
        // The top-N gauges show the last closed window: keep windows.
        s.pipeline.windows = true;
        let listen = a.listen.clone().unwrap_or_else(|| cfg.http.listen.clone());
        Some(super::serve::Pending::bind(&listen, cfg.http.limits()?)?)
    } else {
        if a.listen.is_some() {
            anyhow::bail!("--listen needs --serve (replay serves only when asked)");
        }
        None
    };
    if a.verbose && !a.quiet {
        eprintln!("memtap: {}", budget_line(&s.pipeline, &cfg));
    }
    // After every check of the flags: a mistake is said before the files
    // are read even once.
    let given = super::discover::targets_given(&a.common, &cfg);
    let found = if given {
        None
    } else {
        super::discover::scan(&cfg, &a.files)?
    };
    let targets = match &found {
        Some(f) => super::discover::targets_for(f),
        None => targets,
    };
    let mut bar = super::progress::Bar::new(!a.quiet);
    let mut tap = s.triggers.clone().map(|mut t| {
        t.quiet = a.quiet;
        super::triggers::ReplayTap::new(t, s.pipeline.collectors)
    });
    let pipe_out = pipeline::run_tapped(
        &cfg,
        &targets,
        &a.files,
        &s.pipeline,
        &mut bar,
        tap.as_mut().map(|t| t as &mut dyn pipeline::Tap),
    )?;
    let mut report = make_report(&pipe_out, &a.files, &s);
    report.capture.servers_found = found
        .iter()
        .flatten()
        .map(report::FoundOut::from_found)
        .collect();
    let nothing =
        super::discover::nothing_matched(&pipe_out.counters, &cfg, &a.files, given, &targets);
    let over_budget = budget_shed(&pipe_out.counters);
    if let Some(t) = &tap {
        report.triggers = Some(t.triggers.summary());
    }
    let warnings = pipe_out.warnings.clone();
    let cpu_said = a.verbose.then(|| cpu_line(&pipe_out, &s));
    bar.finish();
    let mut pipe_out = Some(pipe_out);
    if !a.quiet {
        let mut err = std::io::stderr().lock();
        for w in &warnings {
            let _ = writeln!(err, "memtap: warning: {w}");
        }
        if over_budget && !a.verbose {
            let _ = writeln!(
                err,
                "memtap: the input needed more than the {}",
                budget_line(&s.pipeline, &cfg)
            );
        }
        if let Some(line) = &nothing {
            let _ = writeln!(err, "memtap: {line}");
        }
        if let Some(line) = &cpu_said {
            let _ = writeln!(err, "memtap: {line}");
        }
    }
    // The report first: a store that is slow or gone never costs it.
    emit(
        &report,
        a.report.format,
        a.report.output_dir.as_deref(),
        None,
        a.quiet,
    )?;
    // Then the actions' grace, beside the store's.
    let drain = tap
        .as_mut()
        .and_then(|t| t.triggers.take_actions())
        .map(|d| d.start());
    let mut code = ExitCode::SUCCESS;
    let mut store_figures = None;
    if let Some(w) = store {
        // The store takes the tables; with --serve too, it gets a copy.
        let o = if listener.is_some() {
            copy_output(pipe_out.as_ref().expect("present"), &s)
        } else {
            pipe_out.take().expect("present")
        };
        let events = report
            .triggers
            .as_ref()
            .map(|t| t.events.clone())
            .unwrap_or_default();
        let stats = w.stats();
        let r = super::store::store_replay(w, o, &a.files, s.pipeline.window_ns, &events);
        code = super::store::finish_outcome(r, &stats);
        // What became of the intervals, for --serve's /metrics.
        store_figures = Some(super::store::figures(&stats));
    }
    if let Some(d) = drain {
        let _ = d.join();
    }
    if let Some(l) = listener {
        let out = pipe_out.take().expect("kept for --serve");
        let mut view = finished_view(
            out,
            &a.files,
            &s,
            cfg.http.keep_windows,
            report.triggers.clone(),
            store_figures,
        );
        view.info.servers_found = report.capture.servers_found.clone();
        l.serve_until_signal(std::sync::Arc::new(crate::web::server::FixedView(
            std::sync::Arc::new(view),
        )))?;
    }
    // The process exits next: freeing the tables entry by entry (a heap
    // block per tracked key) would only delay that, by about 1 % of a
    // replay's instructions.
    std::mem::forget(pipe_out);
    if a.strict && nothing.is_some() && code == ExitCode::SUCCESS {
        return Ok(ExitCode::from(super::discover::NOTHING_MATCHED));
    }
    Ok(code)
}

/// What each stage's threads cost, per packet and per record: the figures
/// the sizing table is built from, on the user's own traffic and machine.
fn cpu_line(out: &PipelineOutput, s: &ReplaySetup) -> String {
    let (cpu, packets, records) = (out.cpu, out.counters.packets, out.counters.records);
    let per = |ns: u64, n: u64| ns as f64 / n.max(1) as f64 / 1000.0;
    let secs = |ns: u64| ns as f64 / 1e9;
    let front = if s.pipeline.workers == 1 {
        format!(
            "reading, decoding and 1 worker {:.2} s ({:.3} µs a packet)",
            secs(cpu.reader_ns),
            per(cpu.reader_ns, packets)
        )
    } else {
        format!(
            "reading and decoding {:.2} s ({:.3} µs a packet), {} workers {:.2} s ({:.3} µs a packet)",
            secs(cpu.reader_ns),
            per(cpu.reader_ns, packets),
            s.pipeline.workers,
            secs(cpu.workers_ns),
            per(cpu.workers_ns, packets)
        )
    };
    // Which stage held the other back: the cue for --workers and
    // --collectors.
    format!(
        "CPU: {front}, {} collector{} {:.2} s ({:.3} µs a record); \
         waited: workers {:.2} s for room in a collector's queue, collectors {:.2} s for records",
        s.pipeline.collectors,
        if s.pipeline.collectors == 1 { "" } else { "s" },
        secs(cpu.collectors_ns),
        per(cpu.collectors_ns, records),
        secs(cpu.workers_blocked_ns),
        secs(cpu.collectors_idle_ns),
    )
}

/// Whether the memory budget made a worker shed state.
pub fn budget_shed(c: &crate::stats::Counters) -> bool {
    c.iter()
        .any(|(name, n)| name.starts_with("budget_shed_") && n > 0)
}

/// Writes the report in `format` to `file` (or standard output); CSV goes
/// to `dir`. A closed pipe (`| head`) is not an error.
pub fn emit(
    report: &Report,
    format: ReportFormat,
    dir: Option<&std::path::Path>,
    file: Option<&std::path::Path>,
    quiet: bool,
) -> anyhow::Result<()> {
    let mut out: Box<dyn Write> = match file {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| anyhow::anyhow!("--report-file {}: {e}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let res = match format {
        ReportFormat::Json => serde_json::to_writer_pretty(&mut out, report)
            .map_err(std::io::Error::other)
            .and_then(|_| writeln!(out)),
        ReportFormat::Text => crate::report::text::write(&mut out, report),
        ReportFormat::Csv => {
            let dir = dir.ok_or_else(|| anyhow::anyhow!("--format csv needs --output-dir DIR"))?;
            let files = crate::report::csv::write_dir(dir, report)?;
            if !quiet {
                eprintln!("memtap: wrote {} CSV files to {}", files, dir.display());
            }
            Ok(())
        }
    };
    match res.and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::anyhow!("writing the report: {e}")),
    }
}

fn copy_output(o: &PipelineOutput, s: &ReplaySetup) -> PipelineOutput {
    let copy = |t: &crate::collect::tables::Tables| {
        let mut c = crate::collect::tables::Tables::new(&s.pipeline.limits);
        c.merge(t);
        c
    };
    PipelineOutput {
        run: copy(&o.run),
        windows: o
            .windows
            .iter()
            .map(|(a, b, t)| (*a, *b, copy(t)))
            .collect(),
        counters: o.counters.clone(),
        warnings: o.warnings.clone(),
        first_ts: o.first_ts,
        last_ts: o.last_ts,
        cpu: o.cpu,
    }
}

/// The view `--serve` shows once the files are read.
fn finished_view(
    out: PipelineOutput,
    files: &[PathBuf],
    s: &ReplaySetup,
    keep_windows: usize,
    triggers: Option<crate::trigger::Summary>,
    store: Option<crate::export::prometheus::StoreFigures>,
) -> crate::web::server::View {
    let limits = run_limits(&out, s);
    let taken_ns = out.last_ts;
    let windows_closed = out.windows.len() as u64;
    let skip = out.windows.len().saturating_sub(keep_windows);
    crate::web::server::View {
        windows: out
            .windows
            .into_iter()
            .skip(skip)
            .map(|(st, en, t)| (st, en, Arc::new(t)))
            .collect(),
        run: out.run,
        info: RunInfo {
            files: files.iter().map(|f| f.display().to_string()).collect(),
            counters: out.counters,
            first_ts: out.first_ts,
            last_ts: out.last_ts,
            servers_found: Vec::new(),
        },
        limits,
        options: s.options.clone(),
        metrics_top: s.metrics_top,
        windows_closed,
        threads: Vec::new(),
        flows_active: 0,
        triggers,
        store,
        taken_ns,
    }
}

/// Windows without a single record still belong in the report (a quiet
/// minute is news when charting), unless the capture spans so many windows
/// that listing empty ones would swamp it.
fn fill_quiet_windows(
    v: &mut Vec<(u64, u64, report::TablesOut)>,
    out: &PipelineOutput,
    s: &ReplaySetup,
) {
    let w = s.pipeline.window_ns;
    if w == 0 || out.last_ts < out.first_ts {
        return;
    }
    let first = crate::collect::collector::window_start(out.first_ts, w);
    let count = (out.last_ts - first) / w + 1;
    if count > 100_000 {
        return;
    }
    let empty = crate::collect::tables::Tables::new(&s.pipeline.limits);
    let have: std::collections::BTreeSet<u64> = v.iter().map(|(st, _, _)| *st).collect();
    for i in 0..count {
        let st = first + i * w;
        if !have.contains(&st) {
            v.push((st, st + w, report::tables_out(&empty, &s.options)));
        }
    }
    v.sort_by_key(|(st, _, _)| *st);
}

/// The startup line's account of the memory budget: what each worker may
/// hold before it sheds.
pub fn budget_line(pc: &PipelineConfig, cfg: &Config) -> String {
    let Some(m) = pc.memory else {
        return "memory budget off: each structure bounded by its own setting only".into();
    };
    let split = pc.split();
    let e = crate::session::EngineConfig::from_config_split(cfg, &split);
    format!(
        "memory budget {} = {} workers x {}: each up to {} flows, {} pending requests, {} UDP exchanges, {} out-of-order and {} carried bytes",
        size(m),
        pc.workers,
        size(split.share),
        e.max_flows,
        e.max_requests,
        e.udp_max_pending,
        size(e.max_ooo_total),
        size(e.max_carry_total),
    )
}

/// A byte count as an operator writes it: whole units when exact
/// ("64 MiB"), one decimal otherwise ("6.4 MiB").
pub fn size(b: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, unit) in UNITS {
        if b >= unit {
            return if b % unit == 0 {
                format!("{} {name}", b / unit)
            } else {
                format!("{:.1} {name}", b as f64 / unit as f64)
            };
        }
    }
    format!("{b} B")
}
