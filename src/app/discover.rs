//! Servers found without `--target`: a first pass over the capture files
//! that only decodes and looks at the first packets of each flow
//! (`protocol::sniff`), so the analysis pass then watches exactly those
//! servers from each flow's first packet, as if they had been named.

use super::cli::CommonArgs;
use crate::capture::file::FileSource;
use crate::config::Config;
use crate::decode::targets::{Target, Targets, DEFAULT_PORT};
use crate::decode::Decoder;
use crate::protocol::sniff::{describe, Finder, Found, How};
use crate::stats::Counters;
use ipnet::IpNet;
use std::path::PathBuf;

/// Exit status of `--strict` when no packet was memcached traffic of a
/// target (1 is an error, 2 a usage error).
pub const NOTHING_MATCHED: u8 = 3;

/// Whether the servers were named (`--target`, or `[[target]]` in the
/// config): then memtap looks for nothing by itself.
pub fn targets_given(common: &CommonArgs, cfg: &Config) -> bool {
    !common.target.is_empty() || !cfg.target.is_empty()
}

/// What the first pass found; `None` when the input cannot be read twice
/// (standard input), where port 11211 alone decides, as before.
pub fn scan(cfg: &Config, files: &[PathBuf]) -> anyhow::Result<Option<Vec<Found>>> {
    if files.iter().any(|f| f.as_os_str() == "-") {
        return Ok(None);
    }
    let mut src = FileSource::open(files)?;
    let mut counters = Counters::default();
    let mut decoder = Decoder::new(cfg.decode_config());
    let mut finder = Finder::new();
    while let Some(frame) = src.next_frame(&mut counters)? {
        if let Some(p) = decoder.decode(&frame, &mut counters) {
            finder.packet(&p);
        }
    }
    let mut found = finder.found().to_vec();
    found.sort_by_key(|f| (f.addr, f.transport == crate::decode::Transport::Udp));
    Ok(Some(found))
}

/// The targets that watch what `found` holds: port 11211 as by default,
/// plus each server found by protocol.
pub fn targets_for(found: &[Found]) -> Targets {
    let mut list = vec![Target {
        net: None,
        port: DEFAULT_PORT,
    }];
    for f in found {
        if let How::Protocol(_) = f.how {
            let t = Target {
                net: Some(IpNet::from(f.addr.ip())),
                port: f.addr.port(),
            };
            if !list.contains(&t) {
                list.push(t);
            }
        }
    }
    Targets::new(list)
}

/// The one line said when no packet was memcached traffic of a target,
/// or `None` when some was (or there were no packets at all: the file
/// warnings say that).
pub fn nothing_matched(
    counters: &Counters,
    cfg: &Config,
    files: &[PathBuf],
    given: bool,
    targets: &Targets,
) -> Option<String> {
    if counters.packets == 0 || counters.tcp_segments + counters.udp_datagrams > 0 {
        return None;
    }
    if !given {
        return Some(format!(
            "no memcached traffic in {} packets: nothing to port 11211, and no flow whose first \
             packets are memcached requests answered by memcached responses; \
             if the servers are there, name them with --target HOST:PORT",
            counters.packets
        ));
    }
    let named: Vec<String> = targets.list().iter().map(|t| t.to_string()).collect();
    // Named servers that saw nothing: say which servers the traffic has.
    let seen = scan(cfg, files).ok().flatten().unwrap_or_default();
    let hint = if seen.is_empty() {
        "no memcached servers found in it either".to_string()
    } else {
        format!(
            "memcached servers in it: {} (leave out --target to watch them)",
            describe(&seen)
        )
    };
    Some(format!(
        "no packet of {} matched --target {}; {hint}",
        counters.packets,
        named.join(" ")
    ))
}
