//! One CSV file per report table, with a header row and the same columns
//! as the JSON objects (RFC 4180 quoting, `\n` line ends).
//!
//! Layout of the directory:
//!
//! * `capture.csv` (one row; files joined with `;`), `health.csv`
//!   (counter,value), `totals.csv` (one row), `results.csv`,
//!   `commands.csv`, `servers.csv`, `server_commands.csv` (server, proto,
//!   transport, command, count, requests, then one column per result in
//!   the order of `results`, 0 where none), `keys.csv` (servers joined with `;`,
//!   commands as `name=count` joined with `;`, latency as
//!   `p50_us,p99_us,max_us`; `clients_unlisted_max` and
//!   `servers_unlisted_max` bound what `key_clients.csv` and
//!   `key_servers.csv` do not list, 0 when they list everything),
//!   `key_clients.csv` and `key_servers.csv` (key, client or server,
//!   requests, error_bound),
//!   `clients.csv`, `families.csv`, `value_size.csv` and `latency.csv`
//!   (le,count), `limits.csv` (one row);
//! * with windows, `windows.csv` (one row per window: start, end, its
//!   directory and its totals) and `windows/<start>-<end>/` holding that
//!   window's `totals.csv` … `latency.csv`.
//!
//! Timestamps are seconds since the epoch with up to six decimals, as in
//! the JSON report.

use super::{
    Bucket, ClientOut, CommandOut, Distributions, FamilyOut, KeyOut, Report, ServerOut, TotalsOut,
};
use crate::protocol::Outcome;
use anyhow::Context;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Writes every table of `r` under `dir` (created if missing) and returns
/// the number of files written.
pub fn write_dir(dir: &Path, r: &Report) -> anyhow::Result<usize> {
    let mut out = Out::new(dir)?;
    let c = &r.capture;
    out.file(
        "capture.csv",
        &["files", "packets", "bytes", "first_ts", "last_ts"],
        [vec![
            c.files.join(";"),
            c.packets.to_string(),
            c.bytes.to_string(),
            ts(c.first_ts),
            ts(c.last_ts),
        ]],
    )?;
    out.file(
        "health.csv",
        &["counter", "value"],
        r.health
            .iter()
            .map(|(k, v)| vec![k.to_string(), v.to_string()]),
    )?;
    tables(
        &mut out,
        &TablesRef {
            totals: &r.totals,
            results: &r.results,
            commands: &r.commands,
            servers: &r.servers,
            keys: &r.keys,
            clients: &r.clients,
            families: &r.families,
            distributions: &r.distributions,
        },
    )?;
    if let Some(i) = &r.insight {
        insight(&mut out, i)?;
    }
    let l = &r.limits;
    out.file(
        "limits.csv",
        &[
            "max_keys",
            "max_clients",
            "max_families",
            "tracked_keys",
            "tracked_clients",
            "tracked_families",
            "key_evictions",
            "client_evictions",
            "family_evictions",
            "key_clients",
        ],
        [[
            l.max_keys as u64,
            l.max_clients as u64,
            l.max_families as u64,
            l.tracked_keys as u64,
            l.tracked_clients as u64,
            l.tracked_families as u64,
            l.key_evictions,
            l.client_evictions,
            l.family_evictions,
            l.key_clients as u64,
        ]
        .iter()
        .map(u64::to_string)
        .collect()],
    )?;

    if !r.windows.is_empty() {
        let mut index = Vec::new();
        for win in &r.windows {
            let name = format!("{}-{}", ts(win.start), ts(win.end));
            let sub = format!("windows/{name}");
            let mut wout = Out::new(&dir.join(&sub))?;
            tables(
                &mut wout,
                &TablesRef {
                    totals: &win.totals,
                    results: &win.results,
                    commands: &win.commands,
                    servers: &win.servers,
                    keys: &win.keys,
                    clients: &win.clients,
                    families: &win.families,
                    distributions: &win.distributions,
                },
            )?;
            out.files += wout.files;
            let t = &win.totals;
            index.push(vec![
                ts(win.start),
                ts(win.end),
                sub,
                t.commands.to_string(),
                t.requests.to_string(),
                t.hits.to_string(),
                t.misses.to_string(),
                t.bytes_in.to_string(),
                t.bytes_out.to_string(),
            ]);
        }
        out.file(
            "windows.csv",
            &[
                "start",
                "end",
                "dir",
                "commands",
                "requests",
                "hits",
                "misses",
                "bytes_in",
                "bytes_out",
            ],
            index,
        )?;
    }
    Ok(out.files)
}

/// The tables a window has too.
struct TablesRef<'a> {
    totals: &'a TotalsOut,
    results: &'a BTreeMap<&'static str, u64>,
    commands: &'a [CommandOut],
    servers: &'a [ServerOut],
    keys: &'a [KeyOut],
    clients: &'a [ClientOut],
    families: &'a [FamilyOut],
    distributions: &'a Distributions,
}

const TRAFFIC: [&str; 7] = [
    "requests",
    "hits",
    "misses",
    "bytes_in",
    "bytes_out",
    "errors",
    "error_bound",
];

fn tables(out: &mut Out, t: &TablesRef) -> anyhow::Result<()> {
    let to = t.totals;
    out.file(
        "totals.csv",
        &[
            "commands",
            "requests",
            "hits",
            "misses",
            "bytes_in",
            "bytes_out",
        ],
        [nums(&[
            to.commands,
            to.requests,
            to.hits,
            to.misses,
            to.bytes_in,
            to.bytes_out,
        ])],
    )?;
    out.file(
        "results.csv",
        &["result", "count"],
        t.results
            .iter()
            .map(|(k, v)| vec![k.to_string(), v.to_string()]),
    )?;
    out.file(
        "commands.csv",
        &["proto", "transport", "command", "count", "requests"],
        t.commands.iter().map(|c| {
            vec![
                c.proto.to_string(),
                c.transport.to_string(),
                c.command.to_string(),
                c.count.to_string(),
                c.requests.to_string(),
            ]
        }),
    )?;
    out.file(
        "servers.csv",
        &[
            "server",
            "requests",
            "hits",
            "misses",
            "bytes_in",
            "bytes_out",
            "errors",
        ],
        t.servers.iter().map(|s| {
            let mut row = vec![s.server.clone()];
            row.extend(nums(&[
                s.requests,
                s.hits,
                s.misses,
                s.bytes_in,
                s.bytes_out,
                s.errors,
            ]));
            row
        }),
    )?;
    let mut head = vec![
        "server",
        "proto",
        "transport",
        "command",
        "count",
        "requests",
    ];
    head.extend(Outcome::ALL.iter().map(|o| o.as_str()));
    out.file(
        "server_commands.csv",
        &head,
        t.servers.iter().flat_map(|s| {
            s.commands.iter().map(|c| {
                let mut row = vec![
                    s.server.clone(),
                    c.proto.to_string(),
                    c.transport.to_string(),
                    c.command.to_string(),
                ];
                row.extend(nums(&[c.count, c.requests]));
                row.extend(
                    Outcome::ALL
                        .iter()
                        .map(|o| c.results.get(o.as_str()).copied().unwrap_or(0).to_string()),
                );
                row
            })
        }),
    )?;
    out.file(
        "keys.csv",
        &[
            "key",
            "requests",
            "hits",
            "misses",
            "bytes_in",
            "bytes_out",
            "errors",
            "error_bound",
            "servers",
            "p50_us",
            "p99_us",
            "max_us",
            "value_size_max",
            "commands",
            "clients_unlisted_max",
            "servers_unlisted_max",
        ],
        t.keys.iter().map(|k| {
            let mut row = vec![k.key.clone()];
            row.extend(nums(&[
                k.requests,
                k.hits,
                k.misses,
                k.bytes_in,
                k.bytes_out,
                k.errors,
                k.error_bound,
            ]));
            row.push(k.servers.join(";"));
            row.extend(nums(&[
                k.latency_us.p50,
                k.latency_us.p99,
                k.latency_us.max,
                k.value_size_max,
            ]));
            let mut cmds = String::new();
            for (i, (c, n)) in k.commands.iter().enumerate() {
                let sep = if i > 0 { ";" } else { "" };
                let _ = write!(cmds, "{sep}{c}={n}");
            }
            row.push(cmds);
            row.extend(nums(&[k.clients_unlisted_max, k.servers_unlisted_max]));
            row
        }),
    )?;
    out.file(
        "key_clients.csv",
        &["key", "client", "requests", "error_bound"],
        t.keys.iter().flat_map(|k| {
            k.clients.iter().map(|c| {
                vec![
                    k.key.clone(),
                    c.client.clone(),
                    c.requests.to_string(),
                    c.error_bound.to_string(),
                ]
            })
        }),
    )?;
    out.file(
        "key_servers.csv",
        &["key", "server", "requests", "error_bound"],
        t.keys.iter().flat_map(|k| {
            k.server_requests.iter().map(|s| {
                vec![
                    k.key.clone(),
                    s.server.clone(),
                    s.requests.to_string(),
                    s.error_bound.to_string(),
                ]
            })
        }),
    )?;
    let mut head = vec!["client"];
    head.extend(TRAFFIC);
    out.file(
        "clients.csv",
        &head,
        t.clients.iter().map(|c| {
            let mut row = vec![c.client.clone()];
            row.extend(nums(&[
                c.requests,
                c.hits,
                c.misses,
                c.bytes_in,
                c.bytes_out,
                c.errors,
                c.error_bound,
            ]));
            row
        }),
    )?;
    head[0] = "family";
    out.file(
        "families.csv",
        &head,
        t.families.iter().map(|f| {
            let mut row = vec![f.family.clone()];
            row.extend(nums(&[
                f.requests,
                f.hits,
                f.misses,
                f.bytes_in,
                f.bytes_out,
                f.errors,
                f.error_bound,
            ]));
            row
        }),
    )?;
    let buckets =
        |b: &[Bucket]| -> Vec<Vec<String>> { b.iter().map(|b| nums(&[b.le, b.count])).collect() };
    out.file(
        "value_size.csv",
        &["le", "count"],
        buckets(&t.distributions.value_size_bytes),
    )?;
    out.file(
        "latency.csv",
        &["le", "count"],
        buckets(&t.distributions.latency_us),
    )?;
    Ok(())
}

/// The cache-insight tables (docs/insight.md): miss classes and unread
/// writes per server (and `pool`), storm keys, TTLs, slab classes, the
/// miss-ratio curves' points and keys seen on several servers.
fn insight(out: &mut Out, i: &super::insight::InsightOut) -> anyhow::Result<()> {
    use crate::collect::insight::{MISS_CLASSES, UNREAD_ENDS};
    let servers: Vec<_> = i.servers.iter().chain(std::iter::once(&i.pool)).collect();
    let mut head = vec!["server"];
    head.extend(MISS_CLASSES.iter().copied());
    head.extend(["stores", "storms", "storm_misses", "storm_clients_max"]);
    head.extend(["refill_us_p50", "refill_us_max", "multi_server_keys"]);
    let unread_head: Vec<String> = UNREAD_ENDS.iter().map(|e| format!("unread_{e}")).collect();
    head.extend(unread_head.iter().map(|s| s.as_str()));
    out.file(
        "insight_servers.csv",
        &head,
        servers.iter().map(|s| {
            let mut r = vec![s.server.clone()];
            r.extend(MISS_CLASSES.iter().map(|c| s.misses[c].to_string()));
            r.extend(nums(&[
                s.stores,
                s.storms,
                s.storm_misses,
                s.storm_clients_max,
                s.refill_us_p50,
                s.refill_us_max,
                s.multi_server_keys,
            ]));
            r.extend(UNREAD_ENDS.iter().map(|e| s.unread[e].to_string()));
            r
        }),
    )?;
    out.file(
        "insight_storm_keys.csv",
        &[
            "key",
            "storms",
            "storm_misses",
            "storm_clients_max",
            "refill_us_max",
        ],
        i.storm_keys.iter().map(|k| {
            let mut r = vec![k.key.clone()];
            r.extend(nums(&[
                k.storms,
                k.storm_misses,
                k.storm_clients_max,
                k.refill_us_max,
            ]));
            r
        }),
    )?;
    out.file(
        "insight_ttl.csv",
        &["ttl", "stores"],
        i.ttl
            .iter()
            .map(|t| vec![t.ttl.clone(), t.stores.to_string()]),
    )?;
    out.file(
        "insight_slab.csv",
        &[
            "class",
            "chunk_size",
            "items",
            "item_bytes",
            "chunk_bytes",
            "wasted_bytes",
        ],
        i.slab.classes.iter().map(|c| {
            nums(&[
                c.class as u64,
                c.chunk_size,
                c.items,
                c.item_bytes,
                c.chunk_bytes,
                c.wasted_bytes,
            ])
        }),
    )?;
    out.file(
        "insight_mrc.csv",
        &["server", "cache_bytes", "hit_ratio"],
        servers.iter().flat_map(|s| {
            let pts = s
                .mrc
                .as_ref()
                .and_then(|m| m["points"].as_array().cloned())
                .unwrap_or_default();
            pts.into_iter()
                .map(|p| vec![s.server.clone(), p[0].to_string(), p[1].to_string()])
                .collect::<Vec<_>>()
        }),
    )?;
    out.file(
        "insight_multi_server_keys.csv",
        &["key", "servers", "clients"],
        i.multi_server.examples.iter().map(|m| {
            vec![
                m.key.clone(),
                m.servers.join(";"),
                m.clients
                    .iter()
                    .map(|(c, s)| format!("{c}>{s}"))
                    .collect::<Vec<_>>()
                    .join(";"),
            ]
        }),
    )
}

fn nums(v: &[u64]) -> Vec<String> {
    v.iter().map(u64::to_string).collect()
}

/// Seconds with microsecond precision, trailing zeros dropped
/// (`1700000000.5`, `1700000000`).
fn ts(t: f64) -> String {
    let us = (t * 1e6).round() as i64;
    let sign = if us < 0 { "-" } else { "" };
    let us = us.unsigned_abs();
    let frac = format!("{:06}", us % 1_000_000);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{sign}{}", us / 1_000_000)
    } else {
        format!("{sign}{}.{frac}", us / 1_000_000)
    }
}

/// One field, quoted when it holds a comma, a quote, CR or LF (RFC 4180).
fn field(out: &mut String, s: &str) {
    if s.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

fn record<S: AsRef<str>>(out: &mut String, cells: &[S]) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, c.as_ref());
    }
    out.push('\n');
}

/// A directory being filled, and how many files went into it.
struct Out {
    dir: PathBuf,
    files: usize,
}

impl Out {
    fn new(dir: &Path) -> anyhow::Result<Out> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Out {
            dir: dir.to_path_buf(),
            files: 0,
        })
    }

    fn file(
        &mut self,
        name: &str,
        head: &[&str],
        rows: impl IntoIterator<Item = Vec<String>>,
    ) -> anyhow::Result<()> {
        let mut s = String::new();
        record(&mut s, head);
        for row in rows {
            debug_assert_eq!(row.len(), head.len(), "{name}");
            record(&mut s, &row);
        }
        let path = self.dir.join(name);
        std::fs::write(&path, s).with_context(|| format!("writing {}", path.display()))?;
        self.files += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::text::tests::{empty, sample};

    /// Every file under `dir`, relative path and content, sorted by path.
    fn read_all(dir: &Path) -> Vec<(String, String)> {
        fn walk(base: &Path, d: &Path, out: &mut Vec<(String, String)>) {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                    out.push((rel, std::fs::read_to_string(&p).unwrap()));
                }
            }
        }
        let mut v = Vec::new();
        walk(dir, dir, &mut v);
        v.sort();
        v
    }

    fn dump(files: &[(String, String)]) -> String {
        let mut s = String::new();
        for (name, body) in files {
            let _ = write!(s, "== {name}\n{body}");
        }
        s
    }

    #[test]
    fn quoting() {
        let mut s = String::new();
        record(
            &mut s,
            &["plain", "a,b", "say \"hi\"", "cr\rlf\n", "", "\\xc3\\xa9 é"],
        );
        assert_eq!(
            s,
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"cr\rlf\n\",,\\xc3\\xa9 é\n"
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(ts(1_700_000_000.0), "1700000000");
        assert_eq!(ts(1_700_000_000.5), "1700000000.5");
        assert_eq!(ts(1_795_312_845.954381), "1795312845.954381");
        assert_eq!(ts(0.0), "0");
    }

    #[test]
    fn sample_report() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("new/csv");
        let n = write_dir(&out, &sample()).unwrap();
        let files = read_all(&out);
        assert_eq!(n, files.len());
        let got = dump(&files);
        assert_eq!(got, SAMPLE);
    }

    #[test]
    fn empty_report() {
        let dir = tempfile::tempdir().unwrap();
        let n = write_dir(dir.path(), &empty()).unwrap();
        let files = read_all(dir.path());
        assert_eq!(n, files.len());
        let got = dump(&files);
        assert_eq!(got, EMPTY);
    }

    const SAMPLE: &str = r#"== capture.csv
files,packets,bytes,first_ts,last_ts
"a.pcap;dir,1/b ""q"".pcap",40,2010000,1700000000.123456,1700003725.5
== clients.csv
client,requests,hits,misses,bytes_in,bytes_out,errors,error_bound
10.0.0.9,10,5,2,2000010,1540,1,0
== commands.csv
proto,transport,command,count,requests
text,tcp,get,5,7
meta,udp,ms,3,3
== families.csv
family,requests,hits,misses,bytes_in,bytes_out,errors,error_bound
user:*,6,4,0,10,40,0,0
== health.csv
counter,value
bad_requests,3
bytes,2010000
files,2
lost_requests,0
packets,40
records,10
tcp_flows,4
tcp_gaps,1
== key_clients.csv
key,client,requests,error_bound
user:1,10.0.0.9,6,0
"say ""hi"",\xc3\xa9",10.0.0.9,2,0
"say ""hi"",\xc3\xa9",10.0.0.7,1,1
xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx,10.0.0.9,1,0
== key_servers.csv
key,server,requests,error_bound
user:1,10.0.0.1:11211,6,0
"say ""hi"",\xc3\xa9",10.0.0.1:11211,2,0
"say ""hi"",\xc3\xa9",10.0.0.2:11211,1,0
xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx,10.0.0.1:11211,1,0
== keys.csv
key,requests,hits,misses,bytes_in,bytes_out,errors,error_bound,servers,p50_us,p99_us,max_us,value_size_max,commands,clients_unlisted_max,servers_unlisted_max
user:1,6,4,0,10,40,0,0,10.0.0.1:11211,20,90,120,40,get=4;set=2,0,0
"say ""hi"",\xc3\xa9",3,1,2,0,1500,0,2,10.0.0.1:11211;10.0.0.2:11211,20,90,120,1500,get=3,1,0
xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx,1,0,0,2000000,0,0,0,10.0.0.1:11211,20,90,120,2000000,set=1,0,0
== latency.csv
le,count
31,9
127,1
== limits.csv
max_keys,max_clients,max_families,tracked_keys,tracked_clients,tracked_families,key_evictions,client_evictions,family_evictions,key_clients
4,100,100,4,1,1,7,0,0,32
== results.csv
result,count
hit,5
miss,2
stored,3
== server_commands.csv
server,proto,transport,command,count,requests,hit,miss,stored,not_stored,exists,not_found,deleted,touched,value,ok,error,client_error,server_error,noreply,lost
10.0.0.1:11211,text,tcp,get,5,7,5,2,0,0,0,0,0,0,0,0,0,0,0,0,0
10.0.0.1:11211,meta,udp,ms,3,3,0,0,2,0,0,0,0,0,0,0,0,1,0,0,0
== servers.csv
server,requests,hits,misses,bytes_in,bytes_out,errors
10.0.0.1:11211,10,5,2,2000010,1540,1
== totals.csv
commands,requests,hits,misses,bytes_in,bytes_out
8,10,5,2,2000010,1540
== value_size.csv
le,count
15,4
2047,1
2097151,1
== windows.csv
start,end,dir,commands,requests,hits,misses,bytes_in,bytes_out
1700000000,1700000060,windows/1700000000-1700000060,2,3,1,2,0,1500
== windows/1700000000-1700000060/clients.csv
client,requests,hits,misses,bytes_in,bytes_out,errors,error_bound
10.0.0.9,3,1,2,0,1500,0,0
== windows/1700000000-1700000060/commands.csv
proto,transport,command,count,requests
text,tcp,get,2,3
== windows/1700000000-1700000060/families.csv
family,requests,hits,misses,bytes_in,bytes_out,errors,error_bound
== windows/1700000000-1700000060/key_clients.csv
key,client,requests,error_bound
"say ""hi"",\xc3\xa9",10.0.0.9,2,0
"say ""hi"",\xc3\xa9",10.0.0.7,1,1
== windows/1700000000-1700000060/key_servers.csv
key,server,requests,error_bound
"say ""hi"",\xc3\xa9",10.0.0.1:11211,2,0
"say ""hi"",\xc3\xa9",10.0.0.2:11211,1,0
== windows/1700000000-1700000060/keys.csv
key,requests,hits,misses,bytes_in,bytes_out,errors,error_bound,servers,p50_us,p99_us,max_us,value_size_max,commands,clients_unlisted_max,servers_unlisted_max
"say ""hi"",\xc3\xa9",3,1,2,0,1500,0,2,10.0.0.1:11211;10.0.0.2:11211,20,90,120,1500,get=3,1,0
== windows/1700000000-1700000060/latency.csv
le,count
31,3
== windows/1700000000-1700000060/results.csv
result,count
hit,1
miss,2
== windows/1700000000-1700000060/server_commands.csv
server,proto,transport,command,count,requests,hit,miss,stored,not_stored,exists,not_found,deleted,touched,value,ok,error,client_error,server_error,noreply,lost
10.0.0.1:11211,text,tcp,get,2,3,1,2,0,0,0,0,0,0,0,0,0,0,0,0,0
== windows/1700000000-1700000060/servers.csv
server,requests,hits,misses,bytes_in,bytes_out,errors
10.0.0.1:11211,3,1,2,0,1500,0
== windows/1700000000-1700000060/totals.csv
commands,requests,hits,misses,bytes_in,bytes_out
2,3,1,2,0,1500
== windows/1700000000-1700000060/value_size.csv
le,count
"#;
    const EMPTY: &str = r#"== capture.csv
files,packets,bytes,first_ts,last_ts
,0,0,0,0
== clients.csv
client,requests,hits,misses,bytes_in,bytes_out,errors,error_bound
== commands.csv
proto,transport,command,count,requests
== families.csv
family,requests,hits,misses,bytes_in,bytes_out,errors,error_bound
== health.csv
counter,value
packets,0
records,0
tcp_gaps,0
== key_clients.csv
key,client,requests,error_bound
== key_servers.csv
key,server,requests,error_bound
== keys.csv
key,requests,hits,misses,bytes_in,bytes_out,errors,error_bound,servers,p50_us,p99_us,max_us,value_size_max,commands,clients_unlisted_max,servers_unlisted_max
== latency.csv
le,count
== limits.csv
max_keys,max_clients,max_families,tracked_keys,tracked_clients,tracked_families,key_evictions,client_evictions,family_evictions,key_clients
100000,10000,10000,0,0,0,0,0,0,0
== results.csv
result,count
== server_commands.csv
server,proto,transport,command,count,requests,hit,miss,stored,not_stored,exists,not_found,deleted,touched,value,ok,error,client_error,server_error,noreply,lost
== servers.csv
server,requests,hits,misses,bytes_in,bytes_out,errors
== totals.csv
commands,requests,hits,misses,bytes_in,bytes_out
0,0,0,0,0,0
== value_size.csv
le,count
"#;
}
