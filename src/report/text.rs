//! Calamaris-style plain-text report: titled sections, aligned columns
//! (numbers right-aligned, percentages of the total beside counts), a rule
//! line under each header, `(none)` for an empty table.
//!
//! The output depends only on the report: no clock, no locale, no
//! environment. Timestamps are UTC ISO-8601, numbers carry no thousands
//! separators, percentages have one decimal.

use super::{Bucket, ClientOut, CommandOut, FamilyOut, KeyOut, Report, ServerOut, TotalsOut};
use std::collections::BTreeMap;
use std::io::{self, Write};

/// Keys longer than this many characters are cut and end in `…`.
const KEY_WIDTH: usize = 48;
/// Width of the longest bar of a distribution.
const BAR_WIDTH: usize = 30;
/// Between two columns.
const GAP: &str = "  ";

/// The work counters of `health`: everything else counts input given up.
const WORK_COUNTERS: &[&str] = &[
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

pub fn write(w: &mut dyn Write, r: &Report) -> io::Result<()> {
    writeln!(w, "memtap replay report")?;
    capture(w, r)?;
    servers_found(w, &r.capture.servers_found)?;
    health(w, &r.health)?;
    title(w, "Totals")?;
    kv(w, &totals_rows(&r.totals))?;
    title(w, "Results")?;
    results(w, &r.results)?;
    title(w, "Commands")?;
    commands(w, &r.commands, r.totals.commands)?;
    title(w, "Servers")?;
    servers(w, &r.servers, r.totals.requests)?;
    title(w, "Servers: commands and results")?;
    server_commands(w, &r.servers)?;

    let cut = (r.keys.len() < r.limits.tracked_keys).then(|| {
        format!(
            "--top cut: the {} keys of the report out of {} tracked, re-sorted in each key table",
            r.keys.len(),
            r.limits.tracked_keys
        )
    });
    for by in [By::Requests, By::Bytes, By::Misses] {
        title(w, &format!("Top keys by {}", by.name()))?;
        if let Some(note) = &cut {
            writeln!(w, "{note}")?;
        }
        key_table(&sorted_keys(&r.keys, by), r.totals.requests).write(w)?;
    }

    title(w, "Top clients")?;
    if r.clients.len() < r.limits.tracked_clients {
        writeln!(
            w,
            "--top cut: the {} clients of the report out of {} tracked",
            r.clients.len(),
            r.limits.tracked_clients
        )?;
    }
    client_table(&r.clients, r.totals.requests).write(w)?;
    title(w, "Hot clients of the top keys")?;
    hot_clients(&sorted_keys(&r.keys, By::Requests)).write(w)?;
    title(w, "Key families")?;
    if r.families.len() < r.limits.tracked_families {
        writeln!(
            w,
            "--top cut: the {} families of the report out of {} tracked",
            r.families.len(),
            r.limits.tracked_families
        )?;
    }
    family_table(&r.families, r.totals.requests).write(w)?;
    title(w, "Value sizes")?;
    distribution(&r.distributions.value_size_bytes, "bytes").write(w)?;
    title(w, "Latencies")?;
    distribution(&r.distributions.latency_us, "µs").write(w)?;
    if let Some(ins) = &r.insight {
        insight(w, ins)?;
    }
    if let Some(t) = &r.triggers {
        triggers(w, &t.stats, t.events.len())?;
    }
    limits(w, r)?;

    let n = r.windows.len();
    for (i, win) in r.windows.iter().enumerate() {
        title(w, &format!("Window {} of {n}", i + 1))?;
        let mut rows = vec![
            ("start", iso_time(win.start)),
            ("end", iso_time(win.end)),
            ("duration", duration(win.start, win.end)),
        ];
        let quiet = win.totals.commands == 0
            && win.commands.is_empty()
            && win.keys.is_empty()
            && win.clients.is_empty();
        if quiet {
            kv(w, &rows)?;
            writeln!(w, "no traffic")?;
            continue;
        }
        rows.extend(totals_rows(&win.totals));
        kv(w, &rows)?;
        subtitle(w, "Top keys by requests")?;
        key_table(&sorted_keys(&win.keys, By::Requests), win.totals.requests).write(w)?;
        subtitle(w, "Top clients")?;
        client_table(&win.clients, win.totals.requests).write(w)?;
        subtitle(w, "Commands")?;
        commands(w, &win.commands, win.totals.commands)?;
    }
    Ok(())
}

/// Distinct clients of a storm: exact up to `STORM_CLIENTS`, then "more".
fn clients_text(n: u64) -> String {
    let cap = crate::collect::insight::STORM_CLIENTS as u64;
    if n > cap {
        format!("more than {cap}")
    } else {
        n.to_string()
    }
}

/// "Why it misses": the cache-insight section (README "Why it misses").
fn insight(w: &mut dyn Write, ins: &super::insight::InsightOut) -> io::Result<()> {
    use crate::collect::insight::{MISS_CLASSES, UNREAD_ENDS};
    use Align::{L, R};
    title(w, "Why it misses")?;
    let mut cols: Vec<(&'static str, Align)> = vec![("server", L), ("misses", R)];
    cols.extend(MISS_CLASSES.iter().map(|c| (*c, R)));
    cols.push(("evicted %", R));
    let mut t = Table::new(&cols);
    for s in ins.servers.iter().chain(std::iter::once(&ins.pool)) {
        let mut row = vec![s.server.clone(), s.classified_misses.to_string()];
        row.extend(MISS_CLASSES.iter().map(|c| s.misses[c].to_string()));
        row.push(format!("{:.1}", s.evicted_share * 100.0));
        t.row(row);
    }
    t.write(w)?;
    subtitle(w, "Miss storms (many misses of one key before its refill)")?;
    let mut t = Table::new(&[
        ("server", L),
        ("storms", R),
        ("misses", R),
        ("most clients", R),
        ("refill p50 µs", R),
        ("refill max µs", R),
    ]);
    for s in ins.servers.iter().filter(|s| s.storms > 0) {
        t.row(vec![
            s.server.clone(),
            s.storms.to_string(),
            s.storm_misses.to_string(),
            clients_text(s.storm_clients_max),
            s.refill_us_p50.to_string(),
            s.refill_us_max.to_string(),
        ]);
    }
    t.write(w)?;
    let mut t = Table::new(&[
        ("key", L),
        ("storms", R),
        ("misses", R),
        ("refill max µs", R),
    ]);
    for k in &ins.storm_keys {
        t.row(vec![
            k.key.clone(),
            k.storms.to_string(),
            k.storm_misses.to_string(),
            k.refill_us_max.to_string(),
        ]);
    }
    if !t.is_empty() {
        t.write(w)?;
    }
    subtitle(w, "Writes nobody read")?;
    let mut cols: Vec<(&'static str, Align)> = vec![("server", L), ("stores", R)];
    cols.extend(UNREAD_ENDS.iter().map(|c| (*c, R)));
    let mut t = Table::new(&cols);
    for s in ins.servers.iter().chain(std::iter::once(&ins.pool)) {
        let mut row = vec![s.server.clone(), s.stores.to_string()];
        row.extend(UNREAD_ENDS.iter().map(|c| s.unread[c].to_string()));
        t.row(row);
    }
    t.write(w)?;
    if !ins.families.is_empty() {
        subtitle(w, "Families")?;
        let mut t = Table::new(&[
            ("family", L),
            ("gets", R),
            ("stores", R),
            ("gets/store", R),
            ("evicted", R),
            ("expired", R),
            ("unread", R),
        ]);
        for f in &ins.families {
            t.row(vec![
                f.family.clone(),
                f.gets.to_string(),
                f.stores.to_string(),
                f.gets_per_store.map_or("-".into(), |g| format!("{g:.1}")),
                f.misses["evicted"].to_string(),
                f.misses["expired"].to_string(),
                f.unread.values().sum::<u64>().to_string(),
            ]);
        }
        t.write(w)?;
    }
    subtitle(w, "TTLs of stores")?;
    let mut t = Table::new(&[("ttl from", L), ("stores", R)]);
    for x in &ins.ttl {
        t.row(vec![x.ttl.clone(), x.stores.to_string()]);
    }
    t.write(w)?;
    subtitle(w, "Slab fit")?;
    writeln!(
        w,
        "-f {} -n {}: {} items, {} of chunks hold {} of items: {:.1} % unused",
        ins.slab.factor,
        ins.slab.min_space,
        ins.slab.items,
        super::insight::iec(ins.slab.chunk_bytes),
        super::insight::iec(ins.slab.item_bytes),
        ins.slab.wasted_share * 100.0
    )?;
    let mut t = Table::new(&[
        ("class", R),
        ("chunk", R),
        ("items", R),
        ("item bytes", R),
        ("unused bytes", R),
    ]);
    for c in &ins.slab.classes {
        t.row(vec![
            c.class.to_string(),
            c.chunk_size.to_string(),
            c.items.to_string(),
            c.item_bytes.to_string(),
            c.wasted_bytes.to_string(),
        ]);
    }
    t.write(w)?;
    if ins.multi_server.keys > 0 {
        subtitle(
            w,
            "Keys on several servers (clients disagree on the hash ring)",
        )?;
        writeln!(w, "{} keys", ins.multi_server.keys)?;
        for m in &ins.multi_server.examples {
            writeln!(w, "{}: {}", m.key, m.servers.join(", "))?;
        }
    }
    subtitle(w, "What more memory would buy (LRU miss-ratio curve)")?;
    for s in std::iter::once(&ins.pool).chain(&ins.servers) {
        let Some(m) = &s.mrc else { continue };
        if m["points"].as_array().is_none_or(|p| p.is_empty()) {
            writeln!(
                w,
                "{}: too few gets sampled for a curve (sampling {})",
                s.server, m["sampling"]
            )?;
            continue;
        }
        let cur = m["current_hit_ratio"].as_f64().unwrap_or(0.0);
        let att = m["attainable_hit_ratio"].as_f64().unwrap_or(0.0);
        writeln!(
            w,
            "{}: hit ratio now {:.1} %, at most {:.1} % with unbounded memory; {}",
            s.server,
            cur * 100.0,
            att * 100.0,
            super::insight::targets_line(m)
        )?;
    }
    writeln!(
        w,
        "state: {} keys forgotten (table full), seen-filter error {} ppm",
        ins.bounds.state_evictions, ins.bounds.seen_filter_fp_ppm
    )
}

fn title(w: &mut dyn Write, t: &str) -> io::Result<()> {
    writeln!(w)?;
    writeln!(w, "# {t}")
}

fn subtitle(w: &mut dyn Write, t: &str) -> io::Result<()> {
    writeln!(w)?;
    writeln!(w, "## {t}")
}

fn capture(w: &mut dyn Write, r: &Report) -> io::Result<()> {
    title(w, "Capture summary")?;
    let c = &r.capture;
    let mut rows: Vec<(&str, String)> = Vec::new();
    if c.files.is_empty() {
        rows.push(("file", "(none)".into()));
    }
    for f in &c.files {
        rows.push(("file", f.clone()));
    }
    let empty = c.first_ts == 0.0 && c.last_ts == 0.0;
    let ts = |t: f64| if empty { "-".to_string() } else { iso_time(t) };
    rows.extend([
        ("packets", c.packets.to_string()),
        ("bytes", bytes_both(c.bytes)),
        ("first packet", ts(c.first_ts)),
        ("last packet", ts(c.last_ts)),
        (
            "duration",
            if empty {
                "-".into()
            } else {
                duration(c.first_ts, c.last_ts)
            },
        ),
        (
            "records",
            r.health.get("records").copied().unwrap_or(0).to_string(),
        ),
    ]);
    kv(w, &rows)
}

/// Only without --target: which servers memtap watched, and why.
fn servers_found(w: &mut dyn Write, found: &[crate::report::FoundOut]) -> io::Result<()> {
    if found.is_empty() {
        return Ok(());
    }
    title(w, "Servers found (no --target)")?;
    let mut t = Table::new(&[("server", L), ("transport", L), ("found by", L)]);
    for f in found {
        let how = match f.dialect {
            Some(d) => format!("protocol ({d} requests answered)"),
            None => "port 11211".into(),
        };
        t.row(vec![f.server.clone(), f.transport.into(), how]);
    }
    t.write(w)
}

fn health(w: &mut dyn Write, h: &BTreeMap<&'static str, u64>) -> io::Result<()> {
    title(w, "Health: input given up")?;
    let mut t = Table::new(&[("counter", L), ("count", R)]);
    for (name, &v) in h {
        if v > 0 && !WORK_COUNTERS.contains(name) {
            t.row(vec![name.to_string(), v.to_string()]);
        }
    }
    if t.is_empty() {
        writeln!(w, "nothing given up")
    } else {
        t.write(w)
    }
}

fn totals_rows(t: &TotalsOut) -> Vec<(&'static str, String)> {
    vec![
        ("commands", t.commands.to_string()),
        ("key-requests", t.requests.to_string()),
        ("hits", t.hits.to_string()),
        ("misses", t.misses.to_string()),
        ("hit ratio", ratio(t.hits, t.misses)),
        ("bytes in (request values)", bytes_both(t.bytes_in)),
        ("bytes out (response values)", bytes_both(t.bytes_out)),
    ]
}

fn results(w: &mut dyn Write, res: &BTreeMap<&'static str, u64>) -> io::Result<()> {
    let total: u64 = res.values().sum();
    let mut v: Vec<(&str, u64)> = res.iter().map(|(k, n)| (*k, *n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut t = Table::new(&[("result", L), ("count", R), ("%", R)]);
    for (k, n) in v {
        t.row(vec![k.into(), n.to_string(), pct(n, total)]);
    }
    t.sum(vec!["Sum".into(), total.to_string(), pct(total, total)]);
    t.write(w)
}

fn commands(w: &mut dyn Write, cmds: &[CommandOut], total: u64) -> io::Result<()> {
    let mut t = Table::new(&[
        ("proto", L),
        ("transport", L),
        ("command", L),
        ("commands", R),
        ("key-requests", R),
        ("% of commands", R),
    ]);
    for c in cmds {
        t.row(vec![
            c.proto.into(),
            c.transport.into(),
            c.command.into(),
            c.count.to_string(),
            c.requests.to_string(),
            pct(c.count, total),
        ]);
    }
    let (n, k) = cmds
        .iter()
        .fold((0, 0), |(n, k), c| (n + c.count, k + c.requests));
    t.sum(vec![
        "Sum".into(),
        String::new(),
        String::new(),
        n.to_string(),
        k.to_string(),
        pct(n, total),
    ]);
    t.write(w)
}

fn servers(w: &mut dyn Write, s: &[ServerOut], total: u64) -> io::Result<()> {
    let mut t = Table::new(&[
        ("server", L),
        ("requests", R),
        ("%", R),
        ("hits", R),
        ("misses", R),
        ("hit ratio", R),
        ("bytes in", R),
        ("bytes out", R),
        ("errors", R),
    ]);
    for v in s {
        t.row(vec![
            v.server.clone(),
            v.requests.to_string(),
            pct(v.requests, total),
            v.hits.to_string(),
            v.misses.to_string(),
            ratio(v.hits, v.misses),
            human_bytes(v.bytes_in),
            human_bytes(v.bytes_out),
            v.errors.to_string(),
        ]);
    }
    t.write(w)
}

/// Per server, its commands (rows) by result (columns: the results that
/// server saw, in the report's result order).
fn server_commands(w: &mut dyn Write, s: &[ServerOut]) -> io::Result<()> {
    if s.iter().all(|v| v.commands.is_empty()) {
        return writeln!(w, "(none)");
    }
    for v in s.iter().filter(|v| !v.commands.is_empty()) {
        subtitle(w, &v.server)?;
        let cols: Vec<&str> = crate::protocol::Outcome::ALL
            .iter()
            .map(|o| o.as_str())
            .filter(|o| v.commands.iter().any(|c| c.results.contains_key(o)))
            .collect();
        let mut head = vec![
            ("proto", L),
            ("transport", L),
            ("command", L),
            ("commands", R),
            ("key-requests", R),
        ];
        head.extend(cols.iter().map(|c| (*c, R)));
        let mut t = Table::new(&head);
        for c in &v.commands {
            let mut row = vec![
                c.proto.to_string(),
                c.transport.to_string(),
                c.command.to_string(),
                c.count.to_string(),
                c.requests.to_string(),
            ];
            row.extend(
                cols.iter()
                    .map(|o| c.results.get(o).map_or(String::new(), u64::to_string)),
            );
            t.row(row);
        }
        t.write(w)?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum By {
    Requests,
    Bytes,
    Misses,
}

impl By {
    fn name(self) -> &'static str {
        match self {
            By::Requests => "requests",
            By::Bytes => "bytes",
            By::Misses => "misses",
        }
    }
}

/// The report's keys re-sorted (stable, so ties keep the report's order);
/// by bytes or misses, keys with none are left out.
fn sorted_keys(keys: &[KeyOut], by: By) -> Vec<&KeyOut> {
    let f = |k: &KeyOut| match by {
        By::Requests => (k.requests, 0),
        By::Bytes => (k.bytes_in + k.bytes_out, k.requests),
        By::Misses => (k.misses, k.requests),
    };
    let mut v: Vec<&KeyOut> = keys
        .iter()
        .filter(|k| match by {
            By::Requests => true,
            By::Bytes => k.bytes_in + k.bytes_out > 0,
            By::Misses => k.misses > 0,
        })
        .collect();
    v.sort_by_key(|k| std::cmp::Reverse(f(k)));
    v
}

fn key_table(keys: &[&KeyOut], total: u64) -> Table {
    let bound = keys.iter().any(|k| k.error_bound > 0);
    let mut cols = vec![("key", L), ("requests", R)];
    if bound {
        cols.push(("±", R));
    }
    cols.extend([
        ("%", R),
        ("hits", R),
        ("misses", R),
        ("bytes in", R),
        ("bytes out", R),
        ("p50 µs", R),
        ("p99 µs", R),
        ("max µs", R),
        ("servers", L),
    ]);
    let mut t = Table::new(&cols);
    for k in keys {
        let mut row = vec![short_key(&k.key), k.requests.to_string()];
        if bound {
            row.push(k.error_bound.to_string());
        }
        let servers = match k.servers.as_slice() {
            [] => "-".to_string(),
            [one] => one.clone(),
            [first, rest @ ..] => format!("{first} +{}", rest.len()),
        };
        row.extend([
            pct(k.requests, total),
            k.hits.to_string(),
            k.misses.to_string(),
            human_bytes(k.bytes_in),
            human_bytes(k.bytes_out),
            k.latency_us.p50.to_string(),
            k.latency_us.p99.to_string(),
            k.latency_us.max.to_string(),
            servers,
        ]);
        t.row(row);
    }
    t
}

/// The columns shared by the client and family tables.
struct TrafficRow<'a> {
    name: &'a str,
    requests: u64,
    hits: u64,
    misses: u64,
    bytes_in: u64,
    bytes_out: u64,
    errors: u64,
    error_bound: u64,
}

fn traffic_table(first: &'static str, rows: &[TrafficRow], total: u64) -> Table {
    let bound = rows.iter().any(|r| r.error_bound > 0);
    let mut cols = vec![(first, L), ("requests", R)];
    if bound {
        cols.push(("±", R));
    }
    cols.extend([
        ("%", R),
        ("hits", R),
        ("misses", R),
        ("hit ratio", R),
        ("bytes in", R),
        ("bytes out", R),
        ("errors", R),
    ]);
    let mut t = Table::new(&cols);
    for r in rows {
        let mut row = vec![short_key(r.name), r.requests.to_string()];
        if bound {
            row.push(r.error_bound.to_string());
        }
        row.extend([
            pct(r.requests, total),
            r.hits.to_string(),
            r.misses.to_string(),
            ratio(r.hits, r.misses),
            human_bytes(r.bytes_in),
            human_bytes(r.bytes_out),
            r.errors.to_string(),
        ]);
        t.row(row);
    }
    t
}

fn client_table(clients: &[ClientOut], total: u64) -> Table {
    let rows: Vec<TrafficRow> = clients
        .iter()
        .map(|c| TrafficRow {
            name: &c.client,
            requests: c.requests,
            hits: c.hits,
            misses: c.misses,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            errors: c.errors,
            error_bound: c.error_bound,
        })
        .collect();
    traffic_table("client", &rows, total)
}

fn family_table(families: &[FamilyOut], total: u64) -> Table {
    let rows: Vec<TrafficRow> = families
        .iter()
        .map(|f| TrafficRow {
            name: &f.family,
            requests: f.requests,
            hits: f.hits,
            misses: f.misses,
            bytes_in: f.bytes_in,
            bytes_out: f.bytes_out,
            errors: f.errors,
            error_bound: f.error_bound,
        })
        .collect();
    traffic_table("family", &rows, total)
}

/// Each key, then its clients indented under it with their share of the
/// key's requests: all of them, with exact counts, for a key with at most
/// `--key-clients` clients; past that the heaviest, each within its `±`,
/// and a last line bounding every client not listed.
fn hot_clients(keys: &[&KeyOut]) -> Table {
    let bound = keys
        .iter()
        .any(|k| k.clients_unlisted_max > 0 || k.clients.iter().any(|c| c.error_bound > 0));
    let mut cols = vec![("key / client", L), ("requests", R)];
    if bound {
        cols.push(("±", R));
    }
    cols.push(("% of key", R));
    let mut t = Table::new(&cols);
    let row = |name: String, requests: String, b: Option<u64>, share: String| {
        let mut r = vec![name, requests];
        if bound {
            r.push(b.map_or(String::new(), |b| b.to_string()));
        }
        r.push(share);
        r
    };
    for k in keys {
        t.row(row(
            short_key(&k.key),
            k.requests.to_string(),
            None,
            String::new(),
        ));
        for c in &k.clients {
            t.row(row(
                format!("  {}", c.client),
                c.requests.to_string(),
                Some(c.error_bound),
                pct(c.requests, k.requests),
            ));
        }
        if k.clients_unlisted_max > 0 {
            t.row(row(
                "  (any other client)".into(),
                format!("≤ {}", k.clients_unlisted_max),
                None,
                String::new(),
            ));
        }
    }
    t
}

fn distribution(buckets: &[Bucket], unit: &'static str) -> Table {
    let total: u64 = buckets.iter().map(|b| b.count).sum();
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(0);
    let mut t = Table::new(&[(unit, R), ("count", R), ("%", R), ("cum %", R), ("", L)]);
    let mut cum = 0;
    for b in buckets {
        cum += b.count;
        t.row(vec![
            format!("≤ {}", b.le),
            b.count.to_string(),
            pct(b.count, total),
            pct(cum, total),
            bar(b.count, max),
        ]);
    }
    t.sum(vec![
        "Sum".into(),
        total.to_string(),
        pct(total, total),
        String::new(),
        String::new(),
    ]);
    t
}

/// What the triggers did, as the JSON report's `triggers` counts. The
/// actions still pending were not waited for: the report came first.
fn triggers(w: &mut dyn Write, t: &crate::trigger::Stats, events: usize) -> io::Result<()> {
    title(w, "Triggers")?;
    let firings: u64 = t.firings.iter().map(|(_, n)| n).sum();
    kv(
        w,
        &[
            ("firings", firings.to_string()),
            ("events", events.to_string()),
            ("snippets written", t.snippets_written.to_string()),
            ("webhooks sent", t.webhooks_sent.to_string()),
            ("webhooks failed", t.webhooks_failed.to_string()),
            ("commands run", t.commands_run.to_string()),
            ("commands failed", t.commands_failed.to_string()),
            ("actions dropped", t.actions_dropped.to_string()),
            (
                "actions pending at the report",
                t.actions_pending.to_string(),
            ),
        ],
    )
}

fn limits(w: &mut dyn Write, r: &Report) -> io::Result<()> {
    title(w, "Bounded tables")?;
    let l = &r.limits;
    let mut t = Table::new(&[
        ("table", L),
        ("tracked", R),
        ("max", R),
        ("% full", R),
        ("evictions", R),
    ]);
    let rows = [
        ("keys", l.tracked_keys, l.max_keys, l.key_evictions),
        (
            "clients",
            l.tracked_clients,
            l.max_clients,
            l.client_evictions,
        ),
        (
            "families",
            l.tracked_families,
            l.max_families,
            l.family_evictions,
        ),
    ];
    for (name, tracked, max, ev) in rows {
        t.row(vec![
            name.into(),
            tracked.to_string(),
            max.to_string(),
            pct(tracked as u64, max as u64),
            ev.to_string(),
        ]);
    }
    t.write(w)?;
    let evicted: Vec<&str> = rows.iter().filter(|r| r.3 > 0).map(|r| r.0).collect();
    if !evicted.is_empty() {
        let names = match evicted.as_slice() {
            [a] => a.to_string(),
            [a, b] => format!("{a} and {b}"),
            [a, b, c] => format!("{a}, {b} and {c}"),
            _ => unreachable!("three tables"),
        };
        writeln!(
            w,
            "counts of {names} admitted after evictions are upper bounds; see ± \
             (their hits, misses and bytes are lower bounds)"
        )?;
    }
    if l.key_clients > 0 {
        writeln!(
            w,
            "each key lists up to {} clients: exact for a key with no more, else the heaviest within ±",
            l.key_clients
        )?;
    }
    Ok(())
}

// ---- formatting ----

/// Percentage of `n` in `d` with one decimal; `-` when `d` is 0.
fn pct(n: u64, d: u64) -> String {
    if d == 0 {
        "-".into()
    } else {
        format!("{:.1}", n as f64 * 100.0 / d as f64)
    }
}

/// hits / (hits + misses) as a percentage; `-` without either.
fn ratio(hits: u64, misses: u64) -> String {
    match hits.checked_add(misses) {
        Some(0) => "-".into(),
        Some(d) => format!("{}%", pct(hits, d)),
        None => format!(
            "{:.1}%",
            hits as f64 * 100.0 / (hits as f64 + misses as f64)
        ),
    }
}

/// Binary units with one decimal above 1 KiB.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Human-readable and exact.
fn bytes_both(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else {
        format!("{} ({n})", human_bytes(n))
    }
}

/// Keys are already escaped to printable ASCII; very long ones are cut.
fn short_key(k: &str) -> String {
    if k.chars().count() <= KEY_WIDTH {
        k.to_string()
    } else {
        let mut s: String = k.chars().take(KEY_WIDTH - 1).collect();
        s.push('…');
        s
    }
}

fn bar(n: u64, max: u64) -> String {
    if max == 0 || n == 0 {
        return String::new();
    }
    let len = (n as u128 * BAR_WIDTH as u128 + max as u128 / 2) / max as u128;
    "#".repeat((len as usize).max(1))
}

/// Seconds since the epoch (microsecond precision) to microseconds.
fn micros(ts: f64) -> i64 {
    (ts * 1e6).round() as i64
}

/// UTC ISO-8601 with microseconds, e.g. `2026-11-22T13:20:45.954381Z`.
fn iso_time(ts: f64) -> String {
    let us = micros(ts);
    let Ok(t) = jiff::Timestamp::from_microsecond(us) else {
        // Beyond jiff's years -9999..=9999: no calendar date to print.
        return format!("{ts} s since 1970");
    };
    let dt = jiff::tz::Offset::UTC.to_datetime(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        us.rem_euclid(1_000_000)
    )
}

/// `last - first` in seconds with microseconds, plus h/m/s past a minute.
fn duration(first: f64, last: f64) -> String {
    let us = micros(last) - micros(first);
    let sign = if us < 0 { "-" } else { "" };
    let us = us.unsigned_abs();
    let s = us / 1_000_000;
    let mut out = format!("{sign}{s}.{:06} s", us % 1_000_000);
    if s >= 60 {
        let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
        if h > 0 {
            out.push_str(&format!(" ({h}h {m:02}m {s:02}s)"));
        } else {
            out.push_str(&format!(" ({m}m {s:02}s)"));
        }
    }
    out
}

/// Label / value lines: labels left, values right-aligned.
fn kv(w: &mut dyn Write, rows: &[(&str, String)]) -> io::Result<()> {
    let lw = rows.iter().map(|r| width(r.0)).max().unwrap_or(0);
    let vw = rows.iter().map(|r| width(&r.1)).max().unwrap_or(0);
    for (k, v) in rows {
        let line = format!("{}{GAP}{}", pad(k, lw, L), pad(v, vw, R));
        writeln!(w, "{}", line.trim_end())?;
    }
    Ok(())
}

// ---- tables ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    L,
    R,
}
use Align::{L, R};

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, w: usize, a: Align) -> String {
    let fill = " ".repeat(w.saturating_sub(width(s)));
    match a {
        L => format!("{s}{fill}"),
        R => format!("{fill}{s}"),
    }
}

enum Line {
    Cells(Vec<String>),
    Rule,
}

struct Table {
    cols: Vec<(&'static str, Align)>,
    lines: Vec<Line>,
    rows: usize,
}

impl Table {
    fn new(cols: &[(&'static str, Align)]) -> Table {
        Table {
            cols: cols.to_vec(),
            lines: Vec::new(),
            rows: 0,
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.cols.len());
        self.lines.push(Line::Cells(cells));
        self.rows += 1;
    }

    /// A rule, then a total line (shown only under data rows).
    fn sum(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.cols.len());
        if self.rows > 0 {
            self.lines.push(Line::Rule);
            self.lines.push(Line::Cells(cells));
        }
    }

    fn is_empty(&self) -> bool {
        self.rows == 0
    }

    fn write(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            return writeln!(w, "(none)");
        }
        let mut widths: Vec<usize> = self.cols.iter().map(|c| width(c.0)).collect();
        for l in &self.lines {
            if let Line::Cells(cells) = l {
                for (wd, c) in widths.iter_mut().zip(cells) {
                    *wd = (*wd).max(width(c));
                }
            }
        }
        let rule = widths
            .iter()
            .map(|&n| "-".repeat(n))
            .collect::<Vec<_>>()
            .join(GAP);
        let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
            let s = cells
                .zip(self.cols.iter().zip(&widths))
                .map(|(c, ((_, a), &wd))| pad(c, wd, *a))
                .collect::<Vec<_>>()
                .join(GAP);
            s.trim_end().to_string()
        };
        writeln!(w, "{}", line(&mut self.cols.iter().map(|c| c.0)))?;
        writeln!(w, "{}", rule.trim_end())?;
        for l in &self.lines {
            match l {
                Line::Cells(cells) => {
                    writeln!(w, "{}", line(&mut cells.iter().map(String::as_str)))?
                }
                Line::Rule => writeln!(w, "{}", rule.trim_end())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::*;

    fn key(name: &str, requests: u64, hits: u64, misses: u64, bytes: (u64, u64)) -> KeyOut {
        KeyOut {
            key: name.into(),
            requests,
            hits,
            misses,
            bytes_in: bytes.0,
            bytes_out: bytes.1,
            errors: 0,
            error_bound: 0,
            servers: vec!["10.0.0.1:11211".into()],
            server_requests: vec![KeyServerOut {
                server: "10.0.0.1:11211".into(),
                requests,
                error_bound: 0,
            }],
            servers_unlisted_max: 0,
            latency_us: LatencyOut {
                p50: 20,
                p99: 90,
                max: 120,
            },
            value_size_max: bytes.0.max(bytes.1),
            commands: [("get", hits + misses), ("set", requests - hits - misses)]
                .into_iter()
                .filter(|c| c.1 > 0)
                .collect(),
            clients: vec![KeyClientOut {
                client: "10.0.0.9".into(),
                requests,
                error_bound: 0,
            }],
            clients_unlisted_max: 0,
        }
    }

    /// A small report exercising every section: odd keys (commas, quotes,
    /// escapes, a long one), an error bound, evictions and one window.
    pub(crate) fn sample() -> Report {
        let mut odd = key("say \"hi\",\\xc3\\xa9", 3, 1, 2, (0, 1500));
        odd.error_bound = 2;
        odd.servers = vec!["10.0.0.1:11211".into(), "10.0.0.2:11211".into()];
        odd.server_requests = vec![
            KeyServerOut {
                server: "10.0.0.1:11211".into(),
                requests: 2,
                error_bound: 0,
            },
            KeyServerOut {
                server: "10.0.0.2:11211".into(),
                requests: 1,
                error_bound: 0,
            },
        ];
        // A client table that was full: each row within its bound, and
        // any client not listed at most 1.
        odd.clients.push(KeyClientOut {
            client: "10.0.0.7".into(),
            requests: 1,
            error_bound: 1,
        });
        odd.clients[0].requests = 2;
        odd.clients_unlisted_max = 1;
        let long = key(&"x".repeat(60), 1, 0, 0, (2_000_000, 0));
        let keys = vec![key("user:1", 6, 4, 0, (10, 40)), odd, long];
        let commands = vec![
            CommandOut {
                proto: "text",
                transport: "tcp",
                command: "get",
                count: 5,
                requests: 7,
            },
            CommandOut {
                proto: "meta",
                transport: "udp",
                command: "ms",
                count: 3,
                requests: 3,
            },
        ];
        let totals = TotalsOut {
            commands: 8,
            requests: 10,
            hits: 5,
            misses: 2,
            bytes_in: 2_000_010,
            bytes_out: 1540,
        };
        let servers = vec![ServerOut {
            server: "10.0.0.1:11211".into(),
            requests: 10,
            hits: 5,
            misses: 2,
            bytes_in: 2_000_010,
            bytes_out: 1540,
            errors: 1,
            commands: vec![
                ServerCommandOut {
                    proto: "text",
                    transport: "tcp",
                    command: "get",
                    count: 5,
                    requests: 7,
                    results: [("hit", 5), ("miss", 2)].into_iter().collect(),
                },
                ServerCommandOut {
                    proto: "meta",
                    transport: "udp",
                    command: "ms",
                    count: 3,
                    requests: 3,
                    results: [("client_error", 1), ("stored", 2)].into_iter().collect(),
                },
            ],
        }];
        let clients = vec![ClientOut {
            client: "10.0.0.9".into(),
            requests: 10,
            hits: 5,
            misses: 2,
            bytes_in: 2_000_010,
            bytes_out: 1540,
            errors: 1,
            error_bound: 0,
        }];
        let families = vec![FamilyOut {
            family: "user:*".into(),
            requests: 6,
            hits: 4,
            misses: 0,
            bytes_in: 10,
            bytes_out: 40,
            errors: 0,
            error_bound: 0,
        }];
        let distributions = Distributions {
            value_size_bytes: vec![
                Bucket { le: 15, count: 4 },
                Bucket { le: 2047, count: 1 },
                Bucket {
                    le: 2_097_151,
                    count: 1,
                },
            ],
            latency_us: vec![Bucket { le: 31, count: 9 }, Bucket { le: 127, count: 1 }],
        };
        let results: BTreeMap<&'static str, u64> = [("hit", 5), ("miss", 2), ("stored", 3)]
            .into_iter()
            .collect();
        // A few counters, not every one (the list grows with the engine).
        let health: BTreeMap<&'static str, u64> = [
            ("bad_requests", 3),
            ("bytes", 2_010_000),
            ("files", 2),
            ("lost_requests", 0),
            ("packets", 40),
            ("records", 10),
            ("tcp_flows", 4),
            ("tcp_gaps", 1),
        ]
        .into_iter()
        .collect();
        let window = WindowOut {
            start: 1_700_000_000.0,
            end: 1_700_000_060.0,
            totals: TotalsOut {
                commands: 2,
                requests: 3,
                hits: 1,
                misses: 2,
                bytes_in: 0,
                bytes_out: 1500,
            },
            results: [("hit", 1), ("miss", 2)].into_iter().collect(),
            commands: vec![CommandOut {
                proto: "text",
                transport: "tcp",
                command: "get",
                count: 2,
                requests: 3,
            }],
            servers: vec![ServerOut {
                server: "10.0.0.1:11211".into(),
                requests: 3,
                hits: 1,
                misses: 2,
                bytes_in: 0,
                bytes_out: 1500,
                errors: 0,
                commands: vec![ServerCommandOut {
                    proto: "text",
                    transport: "tcp",
                    command: "get",
                    count: 2,
                    requests: 3,
                    results: [("hit", 1), ("miss", 2)].into_iter().collect(),
                }],
            }],
            keys: vec![keys[1].clone()],
            clients: vec![ClientOut {
                client: "10.0.0.9".into(),
                requests: 3,
                hits: 1,
                misses: 2,
                bytes_in: 0,
                bytes_out: 1500,
                errors: 0,
                error_bound: 0,
            }],
            families: Vec::new(),
            distributions: Distributions {
                value_size_bytes: Vec::new(),
                latency_us: vec![Bucket { le: 31, count: 3 }],
            },
        };
        Report {
            memtap_report: 1,
            capture: Capture {
                files: vec!["a.pcap".into(), "dir,1/b \"q\".pcap".into()],
                packets: 40,
                bytes: 2_010_000,
                first_ts: 1_700_000_000.123456,
                last_ts: 1_700_003_725.5,
                servers_found: Vec::new(),
            },
            health,
            totals,
            results,
            commands,
            servers,
            keys,
            clients,
            families,
            distributions,
            limits: LimitsOut {
                max_keys: 4,
                max_clients: 100,
                max_families: 100,
                key_clients: 32,
                tracked_keys: 4,
                tracked_clients: 1,
                tracked_families: 1,
                key_evictions: 7,
                client_evictions: 0,
                family_evictions: 0,
            },
            windows: vec![window],
            triggers: None,
            insight: None,
        }
    }

    pub(crate) fn empty() -> Report {
        Report {
            memtap_report: 1,
            capture: Capture {
                files: Vec::new(),
                packets: 0,
                bytes: 0,
                first_ts: 0.0,
                last_ts: 0.0,
                servers_found: Vec::new(),
            },
            health: [("packets", 0), ("records", 0), ("tcp_gaps", 0)]
                .into_iter()
                .collect(),
            totals: TotalsOut::default(),
            results: BTreeMap::new(),
            commands: Vec::new(),
            servers: Vec::new(),
            keys: Vec::new(),
            clients: Vec::new(),
            families: Vec::new(),
            distributions: Distributions::default(),
            limits: LimitsOut {
                max_keys: 100_000,
                max_clients: 10_000,
                max_families: 10_000,
                ..LimitsOut::default()
            },
            windows: Vec::new(),
            triggers: None,
            insight: None,
        }
    }

    fn render(r: &Report) -> String {
        let mut out = Vec::new();
        write(&mut out, r).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formatting() {
        assert_eq!(iso_time(0.0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(iso_time(-1.0), "1969-12-31T23:59:59.000000Z");
        assert_eq!(iso_time(951_782_400.0), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            iso_time(4_107_542_399.999999),
            "2100-02-28T23:59:59.999999Z"
        );
        assert_eq!(
            iso_time(1_795_312_845.954381),
            "2026-11-22T02:00:45.954381Z"
        );
        assert_eq!(iso_time(-0.5), "1969-12-31T23:59:59.500000Z");
        assert_eq!(iso_time(4_107_542_400.0), "2100-03-01T00:00:00.000000Z");
        // jiff's last timestamp is late on 9999-12-30 (UTC); past it, no
        // calendar date, and never a panic.
        assert_eq!(iso_time(253_402_128_000.0), "9999-12-30T00:00:00.000000Z");
        assert_eq!(iso_time(1e12), "1000000000000 s since 1970");
        assert_eq!(duration(10.0, 10.05606), "0.056060 s");
        assert_eq!(duration(0.0, 61.0), "61.000000 s (1m 01s)");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(307_260), "300.1 KiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
        assert_eq!(bytes_both(1023), "1023 B");
        assert_eq!(bytes_both(1536), "1.5 KiB (1536)");
        assert_eq!(pct(1, 3), "33.3");
        assert_eq!(pct(1, 0), "-");
        assert_eq!(ratio(0, 0), "-");
        assert_eq!(ratio(10, 6), "62.5%");
        assert_eq!(ratio(u64::MAX, u64::MAX), "50.0%");
        assert_eq!(short_key(&"k".repeat(48)), "k".repeat(48));
        assert_eq!(short_key(&"k".repeat(49)), format!("{}…", "k".repeat(47)));
        assert_eq!(bar(0, 10), "");
        assert_eq!(bar(1, 1000), "#");
        assert_eq!(bar(10, 10), "#".repeat(BAR_WIDTH));
    }

    #[test]
    fn eviction_note_names_every_evicting_table() {
        let mut r = empty();
        r.limits.client_evictions = 1;
        r.limits.family_evictions = 2;
        let got = render(&r);
        assert!(
            got.ends_with(
                "counts of clients and families admitted after evictions are upper bounds; \
                 see ± (their hits, misses and bytes are lower bounds)\n"
            ),
            "{got}"
        );
    }

    #[test]
    fn quiet_window_is_one_line() {
        let mut r = empty();
        r.windows.push(WindowOut {
            start: 60.0,
            end: 120.0,
            totals: TotalsOut::default(),
            results: BTreeMap::new(),
            commands: Vec::new(),
            servers: Vec::new(),
            keys: Vec::new(),
            clients: Vec::new(),
            families: Vec::new(),
            distributions: Distributions::default(),
        });
        let got = render(&r);
        let tail = "\n# Window 1 of 1\n\
                    start     1970-01-01T00:01:00.000000Z\n\
                    end       1970-01-01T00:02:00.000000Z\n\
                    duration         60.000000 s (1m 00s)\n\
                    no traffic\n";
        assert!(got.ends_with(tail), "{got}");
    }

    #[test]
    fn sample_report() {
        let got = render(&sample());
        assert_eq!(got, SAMPLE);
    }

    #[test]
    fn empty_report() {
        let got = render(&empty());
        assert_eq!(got, EMPTY);
    }

    const SAMPLE: &str = r#"memtap replay report

# Capture summary
file                               a.pcap
file                     dir,1/b "q".pcap
packets                                40
bytes                   1.9 MiB (2010000)
first packet  2023-11-14T22:13:20.123456Z
last packet   2023-11-14T23:15:25.500000Z
duration       3725.376544 s (1h 02m 05s)
records                                10

# Health: input given up
counter       count
------------  -----
bad_requests      3
tcp_gaps          1

# Totals
commands                                     8
key-requests                                10
hits                                         5
misses                                       2
hit ratio                                71.4%
bytes in (request values)    1.9 MiB (2000010)
bytes out (response values)     1.5 KiB (1540)

# Results
result  count      %
------  -----  -----
hit         5   50.0
stored      3   30.0
miss        2   20.0
------  -----  -----
Sum        10  100.0

# Commands
proto  transport  command  commands  key-requests  % of commands
-----  ---------  -------  --------  ------------  -------------
text   tcp        get             5             7           62.5
meta   udp        ms              3             3           37.5
-----  ---------  -------  --------  ------------  -------------
Sum                               8            10          100.0

# Servers
server          requests      %  hits  misses  hit ratio  bytes in  bytes out  errors
--------------  --------  -----  ----  ------  ---------  --------  ---------  ------
10.0.0.1:11211        10  100.0     5       2      71.4%   1.9 MiB    1.5 KiB       1

# Servers: commands and results

## 10.0.0.1:11211
proto  transport  command  commands  key-requests  hit  miss  stored  client_error
-----  ---------  -------  --------  ------------  ---  ----  ------  ------------
text   tcp        get             5             7    5     2
meta   udp        ms              3             3                  2             1

# Top keys by requests
--top cut: the 3 keys of the report out of 4 tracked, re-sorted in each key table
key                                               requests  ±     %  hits  misses  bytes in  bytes out  p50 µs  p99 µs  max µs  servers
------------------------------------------------  --------  -  ----  ----  ------  --------  ---------  ------  ------  ------  -----------------
user:1                                                   6  0  60.0     4       0      10 B       40 B      20      90     120  10.0.0.1:11211
say "hi",\xc3\xa9                                        3  2  30.0     1       2       0 B    1.5 KiB      20      90     120  10.0.0.1:11211 +1
xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…         1  0  10.0     0       0   1.9 MiB        0 B      20      90     120  10.0.0.1:11211

# Top keys by bytes
--top cut: the 3 keys of the report out of 4 tracked, re-sorted in each key table
key                                               requests  ±     %  hits  misses  bytes in  bytes out  p50 µs  p99 µs  max µs  servers
------------------------------------------------  --------  -  ----  ----  ------  --------  ---------  ------  ------  ------  -----------------
xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…         1  0  10.0     0       0   1.9 MiB        0 B      20      90     120  10.0.0.1:11211
say "hi",\xc3\xa9                                        3  2  30.0     1       2       0 B    1.5 KiB      20      90     120  10.0.0.1:11211 +1
user:1                                                   6  0  60.0     4       0      10 B       40 B      20      90     120  10.0.0.1:11211

# Top keys by misses
--top cut: the 3 keys of the report out of 4 tracked, re-sorted in each key table
key                requests  ±     %  hits  misses  bytes in  bytes out  p50 µs  p99 µs  max µs  servers
-----------------  --------  -  ----  ----  ------  --------  ---------  ------  ------  ------  -----------------
say "hi",\xc3\xa9         3  2  30.0     1       2       0 B    1.5 KiB      20      90     120  10.0.0.1:11211 +1

# Top clients
client    requests      %  hits  misses  hit ratio  bytes in  bytes out  errors
--------  --------  -----  ----  ------  ---------  --------  ---------  ------
10.0.0.9        10  100.0     5       2      71.4%   1.9 MiB    1.5 KiB       1

# Hot clients of the top keys
key / client                                      requests  ±  % of key
------------------------------------------------  --------  -  --------
user:1                                                   6
  10.0.0.9                                               6  0     100.0
say "hi",\xc3\xa9                                        3
  10.0.0.9                                               2  0      66.7
  10.0.0.7                                               1  1      33.3
  (any other client)                                   ≤ 1
xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…         1
  10.0.0.9                                               1  0     100.0

# Key families
family  requests     %  hits  misses  hit ratio  bytes in  bytes out  errors
------  --------  ----  ----  ------  ---------  --------  ---------  ------
user:*         6  60.0     4       0     100.0%      10 B       40 B       0

# Value sizes
    bytes  count      %  cum %
---------  -----  -----  -----  ------------------------------
     ≤ 15      4   66.7   66.7  ##############################
   ≤ 2047      1   16.7   83.3  ########
≤ 2097151      1   16.7  100.0  ########
---------  -----  -----  -----  ------------------------------
      Sum      6  100.0

# Latencies
   µs  count      %  cum %
-----  -----  -----  -----  ------------------------------
 ≤ 31      9   90.0   90.0  ##############################
≤ 127      1   10.0  100.0  ###
-----  -----  -----  -----  ------------------------------
  Sum     10  100.0

# Bounded tables
table     tracked  max  % full  evictions
--------  -------  ---  ------  ---------
keys            4    4   100.0          7
clients         1  100     1.0          0
families        1  100     1.0          0
counts of keys admitted after evictions are upper bounds; see ± (their hits, misses and bytes are lower bounds)
each key lists up to 32 clients: exact for a key with no more, else the heaviest within ±

# Window 1 of 1
start                        2023-11-14T22:13:20.000000Z
end                          2023-11-14T22:14:20.000000Z
duration                            60.000000 s (1m 00s)
commands                                               2
key-requests                                           3
hits                                                   1
misses                                                 2
hit ratio                                          33.3%
bytes in (request values)                            0 B
bytes out (response values)               1.5 KiB (1500)

## Top keys by requests
key                requests  ±      %  hits  misses  bytes in  bytes out  p50 µs  p99 µs  max µs  servers
-----------------  --------  -  -----  ----  ------  --------  ---------  ------  ------  ------  -----------------
say "hi",\xc3\xa9         3  2  100.0     1       2       0 B    1.5 KiB      20      90     120  10.0.0.1:11211 +1

## Top clients
client    requests      %  hits  misses  hit ratio  bytes in  bytes out  errors
--------  --------  -----  ----  ------  ---------  --------  ---------  ------
10.0.0.9         3  100.0     1       2      33.3%       0 B    1.5 KiB       0

## Commands
proto  transport  command  commands  key-requests  % of commands
-----  ---------  -------  --------  ------------  -------------
text   tcp        get             2             3          100.0
-----  ---------  -------  --------  ------------  -------------
Sum                               2             3          100.0
"#;
    const EMPTY: &str = r#"memtap replay report

# Capture summary
file          (none)
packets            0
bytes            0 B
first packet       -
last packet        -
duration           -
records            0

# Health: input given up
nothing given up

# Totals
commands                       0
key-requests                   0
hits                           0
misses                         0
hit ratio                      -
bytes in (request values)    0 B
bytes out (response values)  0 B

# Results
(none)

# Commands
(none)

# Servers
(none)

# Servers: commands and results
(none)

# Top keys by requests
(none)

# Top keys by bytes
(none)

# Top keys by misses
(none)

# Top clients
(none)

# Hot clients of the top keys
(none)

# Key families
(none)

# Value sizes
(none)

# Latencies
(none)

# Bounded tables
table     tracked     max  % full  evictions
--------  -------  ------  ------  ---------
keys            0  100000     0.0          0
clients         0   10000     0.0          0
families        0   10000     0.0          0
"#;
}
