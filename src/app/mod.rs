//! Wiring of the stages for the CLI: the only module that knows them all.

pub mod actions;
pub mod capture;
pub mod cli;
pub mod discover;
pub mod format;
pub mod live;
pub mod pipeline;
pub mod privileges;
pub mod procgroup;
pub mod progress;
pub mod replay;
pub mod serve;
pub mod shape;
pub mod store;
pub mod summary;
pub mod top;
pub mod triggers;

use crate::capture::file::FileSource;
use crate::config::Config;
use crate::decode::targets::{Target, Targets};
use crate::decode::Decoder;
use crate::session::{Engine, EngineConfig, RecordSink};
use crate::stats::Counters;
use cli::{Cli, Command, CommonArgs, DumpArgs};
use std::io::Write;
use std::process::ExitCode;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Dump(a) => dump(a),
        Command::Replay(a) => replay::run(a),
        Command::Capture(a) => capture::run(a),
        Command::Top(a) => top::run(a),
        Command::Report(a) => store::report(a),
        Command::Serve(a) => store::serve(a),
    }
}

/// Where a long replay reports how far it got.
pub trait ReplayProgress {
    /// `bytes` of input read so far out of `total` (when known).
    fn update(&mut self, bytes: u64, total: Option<u64>, packets: u64);
}

/// No progress reporting (tests, `--quiet`).
pub struct NoProgress;

impl ReplayProgress for NoProgress {
    fn update(&mut self, _: u64, _: Option<u64>, _: u64) {}
}

/// Loads the config file (if any) and applies the common flags over it.
pub fn load_config(common: &CommonArgs) -> anyhow::Result<(Config, Targets)> {
    let cfg = match &common.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let targets = if common.target.is_empty() {
        cfg.targets()?
    } else {
        let list = common
            .target
            .iter()
            .map(|t| {
                t.parse::<Target>()
                    .map_err(|e| anyhow::anyhow!("--target: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Targets::new(list)
    };
    Ok((cfg, targets))
}

/// What one pass over the input produced, for summaries and tests.
pub struct RunTotals {
    pub counters: Counters,
    pub warnings: Vec<String>,
}

/// Reads every frame of `files`, runs the single-threaded pipeline, and
/// hands each record to `sink`.
pub fn process_files(
    cfg: &Config,
    targets: &Targets,
    files: &[std::path::PathBuf],
    sink: &mut dyn RecordSink,
    stop: &dyn Fn() -> bool,
) -> anyhow::Result<RunTotals> {
    let mut src = FileSource::open(files)?;
    let mut counters = Counters::default();
    let mut decoder = Decoder::new(cfg.decode_config());
    let mut engine = Engine::new(EngineConfig::from_config(cfg), targets.clone());
    let mut warnings = Vec::new();
    while let Some(frame) = src.next_frame(&mut counters)? {
        if let Some(pkt) = decoder.decode(&frame, &mut counters) {
            engine.packet(&pkt, sink);
        }
        if stop() {
            break;
        }
    }
    engine.finish(sink);
    decoder.finish(&mut counters);
    warnings.extend(src.take_warnings());
    warnings.extend(engine.warnings().lines());
    counters.add(&engine.counters());
    Ok(RunTotals { counters, warnings })
}

fn dump(a: DumpArgs) -> anyhow::Result<ExitCode> {
    let (cfg, targets) = load_config(&a.common)?;
    let tsv = a.format.unwrap_or(cfg.output.dump_format) == crate::config::DumpFormat::Tsv;
    let stdout = std::io::stdout();
    let out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let redact: crate::collect::redact::Redact = a
        .redact_keys
        .clone()
        .unwrap_or_else(|| cfg.collect.redact_keys.clone())
        .parse()
        .map_err(|e| anyhow::anyhow!("--redact-keys: {e}"))?;
    let given = discover::targets_given(&a.common, &cfg);
    let found = if given {
        None
    } else {
        discover::scan(&cfg, &a.files)?
    };
    let targets = match &found {
        Some(f) => discover::targets_for(f),
        None => targets,
    };
    let mut w = format::RecordWriter::new(out, tsv)?.with_redaction(redact);
    let broken = std::cell::Cell::new(false);
    let totals = process_files(
        &cfg,
        &targets,
        &a.files,
        &mut |r: &crate::session::Record<'_>| {
            w.write(r);
            if w.error.is_some() {
                broken.set(true);
            }
        },
        &|| broken.get(),
    )?;
    let res = w.finish();
    let nothing = discover::nothing_matched(&totals.counters, &cfg, &a.files, given, &targets);
    if !a.quiet {
        let mut err = std::io::stderr().lock();
        for warn in &totals.warnings {
            let _ = writeln!(err, "memtap: warning: {warn}");
        }
        if let Some(f) = found.as_ref().filter(|f| !f.is_empty()) {
            let _ = writeln!(
                err,
                "memtap: servers found: {}",
                crate::protocol::sniff::describe(f)
            );
        }
        if let Some(line) = &nothing {
            let _ = writeln!(err, "memtap: {line}");
        }
        let _ = summary::write_summary(&mut err, &totals.counters);
    }
    if a.strict && nothing.is_some() {
        return Ok(ExitCode::from(discover::NOTHING_MATCHED));
    }
    match res {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // `memtap dump f | head` is normal use, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(anyhow::anyhow!("writing records: {e}")),
    }
}
