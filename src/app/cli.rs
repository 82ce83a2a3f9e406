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
#[command(name = "memtap", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

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
    Dump(DumpArgs),
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Config file (TOML); see config/memtap.toml for every option.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Server to watch, HOST[:PORT]: an address, a CIDR block or `*`; the
    /// port defaults to 11211. Repeatable; replaces the config's targets.
    /// Default: *:11211.
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

    /// Do not print the summary on standard error.
    #[arg(long, short = 'q')]
    pub quiet: bool,

    /// Capture files (pcap, pcapng; .gz/.zst accepted; `-` = stdin).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}
