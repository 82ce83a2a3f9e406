//! The end-of-run summary: what was read, and every counter of input given up.

use crate::stats::Counters;
use std::io::{self, Write};

/// Counters that measure work done rather than input given up.
const WORK: &[&str] = &[
    "packets",
    "bytes",
    "files",
    "tcp_segments",
    "tcp_flows",
    "tcp_closed",
    "udp_datagrams",
    "records",
    "ip_fragments",
    "ip_reassembled",
];

pub fn write_summary(w: &mut dyn Write, c: &Counters) -> io::Result<()> {
    writeln!(
        w,
        "memtap: {} packets, {} bytes, {} files, {} TCP flows, {} UDP datagrams, {} records",
        c.packets, c.bytes, c.files, c.tcp_flows, c.udp_datagrams, c.records
    )?;
    let given_up: Vec<(&str, u64)> = c.iter().filter(|(n, _)| !WORK.contains(n)).collect();
    let width = given_up.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    writeln!(
        w,
        "memtap: input given up or unusual (every other counter):"
    )?;
    for chunk in given_up.chunks(3) {
        let mut line = String::from("  ");
        for (n, v) in chunk {
            line.push_str(&format!("{n:<width$} {v:>10}   "));
        }
        writeln!(w, "{}", line.trim_end())?;
    }
    Ok(())
}
