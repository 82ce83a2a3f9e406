//! The `memtap` binary as a user runs it: help, errors and exit codes,
//! input forms (stdin, gzip, zstd, several files), output formats, the
//! summary, and a reader that closes the pipe early.
//!
//! Exit codes: 0 on success (also when standard output is closed early),
//! 1 for every error memtap reports itself (`memtap: error: ...`: missing
//! or unreadable file, not a capture, bad `--target`, bad config), 2 for
//! what the flag parser rejects (unknown flag, bad `--format` value,
//! missing FILE).

mod common;
use common::fixture_dir;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_memtap");

fn memtap<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run memtap")
}

/// Runs memtap with `input` on standard input.
fn memtap_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run memtap");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn capture(case: &str) -> PathBuf {
    fixture_dir(case).join("capture.pcap")
}

/// `*:PORT` for a fixture, from the server of its expected records.
fn target(case: &str) -> String {
    let text = std::fs::read_to_string(fixture_dir(case).join("expected.jsonl")).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let server = first["server"].as_str().unwrap();
    format!("*:{}", server.rsplit(':').next().unwrap())
}

fn expected_len(case: &str) -> usize {
    std::fs::read_to_string(fixture_dir(case).join("expected.jsonl"))
        .unwrap()
        .lines()
        .count()
}

/// `memtap dump --target *:PORT FILE` for a fixture: succeeds, and prints
/// one JSON line per expected record.
fn dump_case(case: &str, extra: &[&str]) -> Output {
    let t = target(case);
    let mut args: Vec<String> = vec!["dump".into(), "--target".into(), t];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(capture(case).to_string_lossy().into_owned());
    let o = memtap(&args);
    assert!(o.status.success(), "{case}: {}", stderr(&o));
    o
}

/// Asserts a failure memtap reports itself: exit 1, nothing on standard
/// output, and exactly one line on standard error, `memtap: error: ...`,
/// containing every string of `names`.
fn assert_one_line_error(o: &Output, names: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(
        o.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(err.lines().count(), 1, "one line expected: {err:?}");
    assert!(err.starts_with("memtap: error: "), "{err:?}");
    for n in names {
        assert!(err.contains(n), "{err:?} does not name {n:?}");
    }
    assert!(!err.contains("panicked"), "{err}");
    err
}

// ------------------------------------------------------------------ help

#[test]
fn help_mentions_every_flag() {
    // The flags are read from the CLI definition itself, so a flag added
    // later is checked too.
    use clap::CommandFactory;
    let mut def = memtap::app::cli::Cli::command();
    def.build();

    let o = memtap(["--help"]);
    assert!(o.status.success());
    assert!(o.stderr.is_empty());
    let top = stdout(&o);
    for s in ["Usage: memtap <COMMAND>", "-h, --help", "-V, --version"] {
        assert!(top.contains(s), "memtap --help lacks {s:?}:\n{top}");
    }
    let mut subs = 0;
    for sub in def
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        subs += 1;
        let name = sub.get_name();
        assert!(
            top.contains(&format!("  {name} ")),
            "memtap --help lacks {name}:\n{top}"
        );
        for args in [vec![name, "--help"], vec!["help", name]] {
            let o = memtap(&args);
            assert!(o.status.success(), "{args:?}");
            assert!(o.stderr.is_empty(), "{args:?}");
            let h = stdout(&o);
            assert!(
                h.contains(&format!("Usage: memtap {name} ")),
                "{args:?}:\n{h}"
            );
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                let shown = match (arg.get_short(), arg.get_long()) {
                    (Some(s), Some(l)) => format!("-{s}, --{l}"),
                    (None, Some(l)) => format!("--{l}"),
                    (Some(s), None) => format!("-{s}"),
                    (None, None) => {
                        let v = arg.get_value_names().expect("positional value name");
                        format!("<{}>", v[0])
                    }
                };
                assert!(h.contains(&shown), "{args:?} lacks {shown:?}:\n{h}");
            }
        }
    }
    assert!(subs >= 1);

    // What the brief of `dump` promises, by name.
    let h = stdout(&memtap(["dump", "--help"]));
    for s in [
        "-c, --config <FILE>",
        "-t, --target <HOST[:PORT]>",
        "-f, --format <FORMAT>",
        "-q, --quiet",
        "-h, --help",
        "-V, --version",
        "<FILE>...",
        "[possible values: json, tsv]",
        "11211",
        "stdin",
    ] {
        assert!(h.contains(s), "dump --help lacks {s:?}:\n{h}");
    }

    let o = memtap(["--version"]);
    assert!(o.status.success());
    assert_eq!(
        stdout(&o),
        format!("memtap {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2() {
    // No subcommand, no file, unknown flag, bad --format value: the flag
    // parser's errors, exit 2, with a usage hint and no output.
    for (args, says) in [
        (&[][..], "Usage: memtap <COMMAND>"),
        (&["dump"][..], "<FILE>"),
        (&["dump", "--bogus", "x.pcap"][..], "--bogus"),
        (&["dump", "--format", "xml", "x.pcap"][..], "xml"),
        (&["frobnicate"][..], "frobnicate"),
    ] {
        let o = memtap(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

// ------------------------------------------------------------------ input errors

#[test]
fn missing_file_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.pcap");
    let m = missing.to_str().unwrap();
    let err = assert_one_line_error(&memtap(["dump", m]), &[m]);
    assert_eq!(
        err,
        format!("memtap: error: cannot open {m}: No such file or directory (os error 2)\n")
    );

    // Every file is checked before any work: a missing second file prints
    // no record of the first.
    let good = capture("text_tcp");
    let o = memtap(["dump".as_ref(), good.as_os_str(), missing.as_os_str()]);
    assert_one_line_error(&o, &[m]);

    // So is a directory.
    let d = dir.path().to_str().unwrap();
    assert_one_line_error(&memtap(["dump", d]), &[d, "is a directory"]);
}

#[test]
fn garbage_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "text.pcap",
            b"# hello, this is not a capture\n",
            "not a pcap or pcapng file",
        ),
        (
            "tiny.pcap",
            b"xx",
            "not a pcap or pcapng file (only 2 bytes",
        ),
        (
            "random.pcap",
            &[0x5au8; 4096],
            "not a pcap or pcapng file (magic 0x5a5a5a5a)",
        ),
        (
            "bad.gz",
            b"\x1f\x8bnot really gzip at all",
            "invalid gzip header",
        ),
    ];
    for (name, bytes, says) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let p = p.to_str().unwrap();
        assert_one_line_error(&memtap(["dump", p]), &[p, says]);
    }

    // A garbage file after a good one: the first file's records are out
    // (files are read in order), then the error names the bad file.
    let bad = dir.path().join("text.pcap");
    let good = capture("text_tcp");
    let t = target("text_tcp");
    let o = memtap([
        "dump".as_ref(),
        "-q".as_ref(),
        "-t".as_ref(),
        t.as_ref(),
        good.as_os_str(),
        bad.as_os_str(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(bad.to_str().unwrap()) && err.contains("not a pcap"),
        "{err}"
    );
    assert_eq!(stdout(&o).lines().count(), expected_len("text_tcp"));
}

#[test]
fn bad_target_is_an_error_exit_1() {
    // --target is checked by memtap (not the flag parser): exit 1, one
    // line that quotes the value.
    let cap = capture("text_tcp");
    let cap = cap.to_str().unwrap();
    for (t, says) in [
        ("notanip:11211", "bad address \"notanip\""),
        ("*:0", "bad port \"0\""),
        ("10.0.0.1:99999", "bad port \"99999\""),
        ("*:http", "bad port \"http\""),
        ("10.0.0.0/33:11211", "bad CIDR block \"10.0.0.0/33\""),
        ("[::1", "missing ']'"),
        ("", "empty target"),
    ] {
        let o = memtap(["dump", "--target", t, cap]);
        let err = assert_one_line_error(&o, &["--target", says]);
        assert!(err.contains(&format!("{t:?}")) || t.is_empty(), "{err}");
    }
}

// ------------------------------------------------------------------ config

/// Every number of the config, and each flag that overrides one, is
/// checked at load against a range: one line naming the key and the
/// range, exit status 1, never a panic (`max_keys` >= 2^32 used to panic
/// a collector thread; huge timeouts overflowed to tiny ones; 100,000
/// workers took 12 GiB). SIGHUP reloads go through the same loader.
#[test]
fn numbers_out_of_range_are_one_line_naming_key_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capture("text_tcp");
    let cases: [(&str, &str); 11] = [
        // a table size past u32
        (
            "[collect]\nmax_keys = 4294967296\n",
            "collect.max_keys = 4294967296 is out of range: allowed 1 to 16777216",
        ),
        (
            "[collect]\nmax_families = 0\n",
            "collect.max_families = 0 is out of range: allowed 1 to 16777216",
        ),
        // a key's client table: each record scans it
        (
            "[collect]\nkey_clients = 0\n",
            "collect.key_clients = 0 is out of range: allowed 1 to 256; each record scans its key's client rows",
        ),
        (
            "[collect]\nkey_clients = 257\n",
            "collect.key_clients = 257 is out of range: allowed 1 to 256; each record scans its key's client rows",
        ),
        // a timeout that overflowed nanoseconds
        (
            "[tcp]\nidle_timeout_s = 18446744073709551\n",
            "tcp.idle_timeout_s = 18446744073709551 is out of range: allowed 1 to 86400; 1 second to 1 day",
        ),
        (
            "[udp]\ntimeout_ms = 18446744073709551615\n",
            "udp.timeout_ms = 18446744073709551615 is out of range: allowed 1 to 86400000; 1 ms to 1 day",
        ),
        // thread counts
        (
            "[pipeline]\nworkers = 100000\n",
            "pipeline.workers = 100000 is out of range: allowed 0 to 1024; 0 = from the core count",
        ),
        // a limit that changes results
        (
            "[protocol]\nmax_value_bytes = 0\n",
            "protocol.max_value_bytes = 0 is out of range: allowed 1024 to 4294967296; memcached's -I allows 1 KiB to 1 GiB",
        ),
        // durations
        (
            "[collect]\nwindow = \"2d\"\n",
            "collect.window = 172800000ms is out of range: allowed 1ms to 1d",
        ),
        // TOML errors: the first line says where, which key and what
        (
            "[udp]\ntimeout_ms = \"soon\"\n",
            "line 2, column 14: udp.timeout_ms: invalid type: string \"soon\", expected u64",
        ),
        (
            "[pipeline]\ncollectors = -1\n",
            "line 2, column 14: pipeline.collectors: invalid value: integer `-1`, expected usize",
        ),
    ];
    for (i, (text, says)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("c{i}.toml"));
        std::fs::write(&p, text).unwrap();
        let o = memtap([
            "replay".as_ref(),
            "--config".as_ref(),
            p.as_os_str(),
            cap.as_os_str(),
        ]);
        let err = assert_one_line_error(&o, &[]);
        assert_eq!(
            err.trim_end(),
            format!("memtap: error: config {}: {says}", p.display()),
            "{text:?}"
        );
    }
    let flags: [(&[&str], &str); 12] = [
        (
            &["--memory", "lots"],
            "--memory = \"lots\" is not a size: write e.g. \"512MiB\", \"2GiB\", \"auto\" or \"off\"",
        ),
        (
            &["--memory", "8MiB"],
            "--memory = 8388608 is out of range: allowed 16777216 to 1099511627776; 16 MiB to 1 TiB",
        ),
        (
            &["--memory", "64MiB", "--workers", "16"],
            "a memory budget of 64 MiB gives each of 16 workers 4 MiB: at least 8 MiB each is needed (raise --memory / limits.memory, or lower --workers)",
        ),
        (
            &["--max-keys", "4294967296"],
            "--max-keys = 4294967296 is out of range: allowed 1 to 16777216",
        ),
        (
            &["--max-clients", "0"],
            "--max-clients = 0 is out of range: allowed 1 to 16777216",
        ),
        (
            &["--key-clients", "0"],
            "--key-clients = 0 is out of range: allowed 1 to 256; each record scans its key's client rows",
        ),
        (
            &["--key-clients", "1000"],
            "--key-clients = 1000 is out of range: allowed 1 to 256; each record scans its key's client rows",
        ),
        (
            &["--workers", "100000"],
            "--workers = 100000 is out of range: allowed 1 to 1024",
        ),
        (
            &["--collectors", "0"],
            "--collectors = 0 is out of range: allowed 1 to 1024",
        ),
        (
            &["--window", "2d"],
            "--window = 172800000ms is out of range: allowed 1ms to 1d",
        ),
        (
            &["--top", "1000001"],
            "--top = 1000001 is out of range: allowed 0 to 1000000",
        ),
        (
            &["--max-keys", "16777216", "--max-clients", "16777217"],
            "--max-clients = 16777217 is out of range: allowed 1 to 16777216",
        ),
    ];
    for (args, says) in flags {
        let mut all = vec!["replay", "--target", "*:11211"];
        all.extend_from_slice(args);
        all.push(cap.to_str().unwrap());
        let o = memtap(&all);
        let err = assert_one_line_error(&o, &[]);
        assert_eq!(err.trim_end(), format!("memtap: error: {says}"), "{args:?}");
    }
    // The bounds themselves are accepted.
    let o = memtap([
        "replay",
        "-v",
        "--target",
        "*:11211",
        "--max-keys",
        "16777216",
        "--workers",
        "2",
        "--window",
        "1d",
        "--memory",
        "16MiB",
        cap.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // With -v, the startup line states the budget and what each worker
    // may hold (without, it is said only when the input needed more).
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.starts_with("memtap: memory budget"))
        .unwrap_or_else(|| panic!("no budget line in {err}"));
    assert!(
        line.starts_with("memtap: memory budget 16 MiB = 2 workers x 8 MiB: each up to "),
        "{line}"
    );
}

/// `replay -v` ends with what each stage's threads cost: seconds of CPU
/// and the cost per packet and per record, for sizing a box on one's own
/// traffic, then how long workers and collectors waited for each other
/// (which stage to give more threads). The figures are times, so the test
/// checks what they must be:
/// the line's shape, the counts they are divided by, and that together
/// they are no more than the process used.
#[test]
fn verbose_replay_says_what_each_stage_cost() {
    let cap = capture("text_tcp");
    for (workers, front) in [
        ("1", "reading, decoding and 1 worker "),
        ("2", "reading and decoding "),
    ] {
        let o = memtap([
            "replay",
            "-v",
            "--format",
            "json",
            "--target",
            &target("text_tcp"),
            "--workers",
            workers,
            "--collectors",
            "1",
            cap.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let err = stderr(&o);
        let line = err
            .lines()
            .find(|l| l.starts_with("memtap: CPU: "))
            .unwrap_or_else(|| panic!("no CPU line in {err}"));
        let body = line.strip_prefix("memtap: CPU: ").unwrap();
        assert!(body.starts_with(front), "{line}");
        // Then how long each side waited for the other.
        let (body, waited) = body
            .split_once("; waited: ")
            .unwrap_or_else(|| panic!("{line}"));
        let waits: Vec<f64> = waited
            .strip_prefix("workers ")
            .and_then(|w| w.strip_suffix(" s for records"))
            .and_then(|w| w.split_once(" s for room in a collector's queue, collectors "))
            .map(|(a, b)| vec![a.parse().unwrap(), b.parse().unwrap()])
            .unwrap_or_else(|| panic!("{line}"));
        assert!(waits.iter().all(|&w| (0.0..60.0).contains(&w)), "{line}");
        // Every stage: "<name> S s (U µs a packet|record)", the collector's
        // last and per record.
        let stages: Vec<&str> = body.split("), ").collect();
        assert_eq!(stages.len(), if workers == "1" { 2 } else { 3 }, "{line}");
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let packets = report["health"]["packets"].as_u64().unwrap() as f64;
        let records = report["health"]["records"].as_u64().unwrap() as f64;
        assert!(packets > 0.0 && records > 0.0);
        let mut total = 0.0;
        for (i, st) in stages.iter().enumerate() {
            let (name, rest) = st.rsplit_once(" s (").unwrap_or_else(|| panic!("{line}"));
            let (secs_name, secs) = name.rsplit_once(' ').unwrap();
            let secs: f64 = secs.parse().unwrap_or_else(|_| panic!("{line}"));
            let last = i == stages.len() - 1;
            assert_eq!(secs_name.ends_with("collector"), last, "{line}");
            let (us, unit) = rest.trim_end_matches(')').split_once(" µs a ").unwrap();
            assert_eq!(unit, if last { "record" } else { "packet" }, "{line}");
            let us: f64 = us.parse().unwrap();
            // Each stage's thread did work: its clock moved.
            assert!(us > 0.0, "{line}");
            // Per-unit figures are the seconds divided by the count (the
            // seconds are rounded to 10 ms in the line).
            let n = if last { records } else { packets };
            assert!((us * n / 1e6 - secs).abs() <= 0.006, "{line}");
            total += secs;
        }
        assert!(total < 60.0, "{line}");
    }
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capture("text_tcp");
    let cases: [(&str, &[u8], &[&str]); 8] = [
        (
            "unknown-top.toml",
            b"bogus = 1\n",
            &["unknown field `bogus`"],
        ),
        (
            "unknown-nested.toml",
            b"[tcp]\nmax_flowz = 5\n",
            &["unknown field `max_flowz`", "max_flows"],
        ),
        (
            "bad-type.toml",
            b"[udp]\ntimeout_ms = \"soon\"\n",
            &["timeout_ms", "invalid type"],
        ),
        (
            "zero.toml",
            b"[tcp]\nmax_flows = 0\n",
            &["tcp.max_flows = 0 is out of range: allowed 1 to 16777216"],
        ),
        (
            "small.toml",
            b"[protocol]\nmax_line_bytes = 10\n",
            &["protocol.max_line_bytes"],
        ),
        (
            "bad-host.toml",
            b"[[target]]\nhost = \"nope\"\n",
            &["[[target]] host", "\"nope\""],
        ),
        (
            "bad-format.toml",
            b"[output]\ndump_format = \"xml\"\n",
            &["dump_format", "xml"],
        ),
        (
            "syntax.toml",
            b"[tcp\n",
            &["line 1, column 5: unclosed table, expected `]`"],
        ),
    ];
    for (name, text, says) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let o = memtap([
            "dump".as_ref(),
            "--config".as_ref(),
            p.as_os_str(),
            cap.as_os_str(),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(o.stdout.is_empty(), "{name}");
        assert!(
            err.starts_with(&format!("memtap: error: config {}: ", p.display())),
            "{name}: {err}"
        );
        for s in says {
            assert!(err.contains(s), "{name}: {err:?} lacks {s:?}");
        }
    }

    // Unreadable: missing, a directory, not UTF-8.
    let missing = dir.path().join("missing.toml");
    let latin1 = dir.path().join("latin1.toml");
    std::fs::write(&latin1, b"# caf\xe9\n").unwrap();
    for (p, says) in [
        (missing.as_path(), "No such file or directory"),
        (dir.path(), "Is a directory"),
        (latin1.as_path(), "UTF-8"),
    ] {
        let o = memtap([
            "dump".as_ref(),
            "-c".as_ref(),
            p.as_os_str(),
            cap.as_os_str(),
        ]);
        assert_one_line_error(&o, &[&format!("cannot read config {}", p.display()), says]);
    }
}

#[test]
fn config_file_applies_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let case = "text_tcp";
    let port = target(case).trim_start_matches("*:").to_string();
    let cap = capture(case);
    let want = stdout(&dump_case(case, &[]));

    // Targets and format from the file.
    let cfg = dir.path().join("memtap.toml");
    std::fs::write(
        &cfg,
        format!("[[target]]\nhost = \"127.0.0.0/8\"\nport = {port}\n\n[output]\ndump_format = \"tsv\"\n"),
    )
    .unwrap();
    let o = memtap([
        "dump".as_ref(),
        "-c".as_ref(),
        cfg.as_os_str(),
        cap.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tsv = stdout(&o);
    assert!(tsv.starts_with("ts\tclient\t"), "{tsv}");
    assert_eq!(tsv.lines().count(), expected_len(case) + 1);

    // --format overrides the file's format.
    let o = memtap([
        "dump".as_ref(),
        "-c".as_ref(),
        cfg.as_os_str(),
        "-f".as_ref(),
        "json".as_ref(),
        cap.as_os_str(),
    ]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), want);

    // --target replaces the file's targets.
    let elsewhere = dir.path().join("elsewhere.toml");
    std::fs::write(&elsewhere, "[[target]]\nhost = \"*\"\nport = 1\n").unwrap();
    let o = memtap([
        "dump".as_ref(),
        "-c".as_ref(),
        elsewhere.as_os_str(),
        cap.as_os_str(),
    ]);
    assert!(o.status.success());
    assert!(o.stdout.is_empty(), "no traffic to port 1");
    let t = format!("*:{port}");
    let o = memtap([
        "dump".as_ref(),
        "-c".as_ref(),
        elsewhere.as_os_str(),
        "-t".as_ref(),
        t.as_ref(),
        cap.as_os_str(),
    ]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), want);

    // The shipped config (every option at its default) is valid, and with
    // the fixture's port as target gives the same records.
    let shipped = common::repo().join("config/memtap.toml");
    let o = memtap([
        "dump".as_ref(),
        "-c".as_ref(),
        shipped.as_os_str(),
        "-t".as_ref(),
        t.as_ref(),
        cap.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), want);
}

// ------------------------------------------------------------------ inputs

#[test]
fn stdin_dash_reads_standard_input() {
    for case in ["text_tcp", "udp"] {
        let want = dump_case(case, &["-q"]);
        assert_eq!(stdout(&want).lines().count(), expected_len(case), "{case}");
        let bytes = std::fs::read(capture(case)).unwrap();
        let t = target(case);
        let o = memtap_stdin(&["dump", "-q", "-t", &t, "-"], &bytes);
        assert!(o.status.success(), "{case}: {}", stderr(&o));
        assert_eq!(stdout(&o), stdout(&want), "{case}");
    }
}

/// Compresses `src` into `dst` with the named command when it exists, or
/// with the crate `memtap` itself depends on.
fn compress(tool: &str, src: &Path, dst: &Path) {
    let bytes = std::fs::read(src).unwrap();
    let by_tool = Command::new(tool)
        .arg("-c")
        .arg(src)
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success() && !o.stdout.is_empty());
    let out = match (by_tool, tool) {
        (Some(o), _) => o.stdout,
        (None, "gzip") => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&bytes).unwrap();
            e.finish().unwrap()
        }
        (None, "zstd") => zstd::encode_all(&bytes[..], 3).unwrap(),
        (None, other) => panic!("no compressor {other}"),
    };
    std::fs::write(dst, out).unwrap();
}

#[test]
fn gzip_and_zstd_copies_give_identical_output() {
    let dir = tempfile::tempdir().unwrap();
    for case in ["text_tcp", "binary_tcp"] {
        let want = dump_case(case, &["-q"]);
        let t = target(case);
        // Names that do not say what the content is: detection is by magic.
        for (tool, name) in [
            ("gzip", "a.gz"),
            ("zstd", "b.zst"),
            ("gzip", "c.pcap"),
            ("zstd", "d"),
        ] {
            let p = dir.path().join(format!("{case}-{name}"));
            compress(tool, &capture(case), &p);
            let o = memtap([
                "dump".as_ref(),
                "-q".as_ref(),
                "-t".as_ref(),
                t.as_ref(),
                p.as_os_str(),
            ]);
            assert!(o.status.success(), "{case} {tool}: {}", stderr(&o));
            assert_eq!(stdout(&o), stdout(&want), "{case} {tool} {name}");
            // And compressed on standard input.
            let o = memtap_stdin(&["dump", "-q", "-t", &t, "-"], &std::fs::read(&p).unwrap());
            assert!(o.status.success(), "{case} {tool} stdin: {}", stderr(&o));
            assert_eq!(stdout(&o), stdout(&want), "{case} {tool} stdin");
        }
    }
}

#[test]
fn two_files_give_the_records_of_both() {
    let (a, b) = ("text_tcp", "binary_tcp");
    let (ta, tb) = (target(a), target(b));
    let one = stdout(&dump_case(a, &["-q"]));
    let two = stdout(&dump_case(b, &["-q"]));
    let o = memtap([
        "dump".as_ref(),
        "-q".as_ref(),
        "-t".as_ref(),
        ta.as_ref(),
        "-t".as_ref(),
        tb.as_ref(),
        capture(a).as_os_str(),
        capture(b).as_os_str(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let both = stdout(&o);
    assert_eq!(both.lines().count(), expected_len(a) + expected_len(b));
    // Read in order as one capture: the first file's records, then the
    // second's.
    assert_eq!(both, format!("{one}{two}"));

    // The summary counts both files.
    let o = memtap([
        "dump".as_ref(),
        "-t".as_ref(),
        ta.as_ref(),
        "-t".as_ref(),
        tb.as_ref(),
        capture(a).as_os_str(),
        capture(b).as_os_str(),
    ]);
    let err = stderr(&o);
    assert!(err.contains(" 2 files, "), "{err}");
    assert!(
        err.contains(&format!(" {} records", expected_len(a) + expected_len(b))),
        "{err}"
    );
}

// ------------------------------------------------------------------ output

/// The TSV row memtap writes for a JSON record.
fn tsv_row(r: &Value) -> String {
    let s = |k: &str| match &r[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    // `ts` is a JSON number with six decimals: keep the text as printed.
    let fields = [
        "client",
        "server",
        "transport",
        "proto",
        "command",
        "key",
        "result",
        "req_bytes",
        "resp_bytes",
        "latency_us",
    ];
    let mut row = String::new();
    for f in fields {
        row.push('\t');
        row.push_str(&s(f));
    }
    row
}

#[test]
fn tsv_prints_a_header_and_the_same_records() {
    for case in ["text_tcp", "meta_tcp", "binary_tcp", "udp", "mixed_noreply"] {
        let json = stdout(&dump_case(case, &["-q"]));
        let tsv = stdout(&dump_case(case, &["-q", "--format", "tsv"]));
        let mut lines = tsv.lines();
        assert_eq!(
            lines.next(),
            Some("ts\tclient\tserver\ttransport\tproto\tcommand\tkey\tresult\treq_bytes\tresp_bytes\tlatency_us"),
            "{case}"
        );
        let rows: Vec<&str> = lines.collect();
        let recs: Vec<&str> = json.lines().collect();
        assert_eq!(rows.len(), recs.len(), "{case}");
        assert_eq!(rows.len(), expected_len(case), "{case}");
        for (row, rec) in rows.iter().zip(&recs) {
            let v: Value = serde_json::from_str(rec).unwrap();
            // The timestamp text, as JSON printed it.
            let ts = &rec[6..rec.find(',').unwrap()];
            assert_eq!(row.split('\t').count(), 11, "{case}: {row:?}");
            assert_eq!(*row, format!("{ts}{}", tsv_row(&v)), "{case}");
        }
    }
}

#[test]
fn quiet_prints_nothing_on_stderr() {
    let loud = dump_case("text_tcp", &[]);
    assert!(!loud.stderr.is_empty());
    for flag in ["--quiet", "-q"] {
        let o = dump_case("text_tcp", &[flag]);
        assert!(o.stderr.is_empty(), "{flag}: {}", stderr(&o));
        assert_eq!(o.stdout, loud.stdout, "{flag}");
    }
    // Errors are still reported.
    let o = memtap(["dump", "-q", "/nonexistent/memtap-test.pcap"]);
    assert_one_line_error(&o, &["/nonexistent/memtap-test.pcap"]);
}

#[test]
fn summary_lists_every_counter() {
    let case = "text_tcp";
    let o = dump_case(case, &[]);
    let err = stderr(&o);
    // Warnings (naming the fixture's deliberate bad command) come first.
    assert!(
        err.lines().next().unwrap().starts_with("memtap: warning: "),
        "{err}"
    );
    let err: String = err
        .lines()
        .skip_while(|l| l.starts_with("memtap: warning: "))
        .map(|l| format!("{l}\n"))
        .collect();
    let first = err.lines().next().unwrap();
    assert!(
        first.starts_with("memtap: ") && first.contains(" packets, "),
        "{first}"
    );
    assert!(
        first.ends_with(&format!(
            " 1 files, 1 TCP flows, 0 UDP datagrams, {} records",
            expected_len(case)
        )),
        "{first}"
    );
    assert!(err.contains("input given up or unusual"), "{err}");
    for (name, _) in memtap::stats::Counters::default().iter() {
        // On the first line, in words.
        let shown = [
            "packets",
            "bytes",
            "files",
            "tcp_flows",
            "udp_datagrams",
            "records",
        ];
        // Work done rather than input given up, left out of the summary
        // (README: "packets, bytes, flows, records and every counter of
        // input given up").
        let work = [
            "tcp_segments",
            "tcp_closed",
            "ip_fragments",
            "ip_reassembled",
        ];
        if shown.contains(&name) || work.contains(&name) {
            continue;
        }
        // Each counter appears as a whole word followed by its value.
        let found = err.lines().skip(1).any(|l| {
            let toks: Vec<&str> = l.split_whitespace().collect();
            toks.windows(2)
                .any(|w| w[0] == name && w[1].parse::<u64>().is_ok())
        });
        assert!(found, "summary lacks counter {name}:\n{err}");
    }
    // The fixture is clean: nothing given up but what the capture holds.
    assert!(
        err.lines().any(|l| l
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w == ["tcp_gaps", "0"])),
        "{err}"
    );
}

#[test]
fn closed_stdout_exits_0_without_panic() {
    // Enough output to fill the pipe and memtap's buffer many times over,
    // so that writes fail while memtap is still reading.
    let case = "binary_tcp";
    let t = target(case);
    let cap = capture(case);
    let mut args: Vec<std::ffi::OsString> = vec!["dump".into(), "-t".into(), t.into()];
    for _ in 0..60 {
        args.push(cap.clone().into());
    }
    let mut child = Command::new(BIN)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err_pipe.read_to_string(&mut s).unwrap();
        s
    });
    {
        // `| head -1`
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["proto"], "binary");
    } // the read end is closed here
    let status = child.wait().unwrap();
    let err = err_reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("memtap: error"), "{err}");
    assert!(!err.to_lowercase().contains("broken pipe"), "{err}");

    // The same through a shell pipeline, when there is a shell: memtap's
    // own exit status is written to a file from inside the pipeline.
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("rc");
    let script = r#"files=""; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do files="$files $2"; done
{ "$0" dump -t "$1" $files 2>"$3.err"; echo $? >"$3"; } | head -1 >/dev/null"#;
    let sh = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(BIN)
        .arg(target(case))
        .arg(&cap)
        .arg(&rc)
        .output();
    if sh.is_ok_and(|o| o.status.success()) {
        let code = std::fs::read_to_string(&rc).unwrap();
        let err = std::fs::read_to_string(dir.path().join("rc.err")).unwrap();
        assert_eq!(code.trim(), "0", "{err}");
        assert!(
            !err.contains("panicked") && !err.contains("memtap: error"),
            "{err}"
        );
    }
}

/// A capture that yields no packet says so, one line naming the file, and
/// still exits 0 (an empty capture is not an error).
#[test]
fn files_without_packets_are_named_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let header = dir.path().join("header.pcap");
    let full = std::fs::read(capture("text_tcp")).unwrap();
    std::fs::write(&header, &full[..24]).unwrap();
    for (p, why) in [(&empty, "an empty file"), (&header, "only the file header")] {
        let o = memtap([
            "dump".as_ref(),
            "--target".as_ref(),
            "*:11211".as_ref(),
            p.as_os_str(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
        let err = stderr(&o);
        let want = format!("memtap: warning: {}: no packets ({why})", p.display());
        assert_eq!(
            err.lines()
                .filter(|l| l.contains("no packets"))
                .collect::<Vec<_>>(),
            vec![want.as_str()],
            "{err}"
        );
    }
    // Neither gave anything up: no truncated_files in the report's health
    // (an empty file used to count one).
    for p in [&empty, &header] {
        let o = memtap([
            "replay".as_ref(),
            "-q".as_ref(),
            "--format".as_ref(),
            "json".as_ref(),
            p.as_os_str(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["health"]["truncated_files"], 0, "{}", p.display());
    }
}
