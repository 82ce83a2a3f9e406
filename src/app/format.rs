//! Record output: JSON lines and TSV, written without per-record allocation.

use crate::session::Record;
use std::io::{self, Write};

pub use crate::escape::escape_key;

/// Escapes an already key-escaped string for a JSON string body.
fn json_str(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => out.push(b),
        }
    }
}

fn ts_secs(out: &mut Vec<u8>, ts: u64) {
    let _ = write!(
        out,
        "{}.{:06}",
        ts / 1_000_000_000,
        (ts % 1_000_000_000) / 1000
    );
}

/// JSON-lines or TSV record writer with a reusable scratch buffer.
pub struct RecordWriter<W: Write> {
    out: W,
    tsv: bool,
    redact: crate::collect::redact::Redact,
    line: Vec<u8>,
    key: Vec<u8>,
    pub error: Option<io::Error>,
}

pub const TSV_HEADER: &str =
    "ts\tclient\tserver\ttransport\tproto\tcommand\tkey\tresult\treq_bytes\tresp_bytes\tlatency_us\n";

impl<W: Write> RecordWriter<W> {
    pub fn new(mut out: W, tsv: bool) -> io::Result<Self> {
        if tsv {
            out.write_all(TSV_HEADER.as_bytes())?;
        }
        Ok(RecordWriter {
            out,
            tsv,
            redact: Default::default(),
            line: Vec::with_capacity(512),
            key: Vec::with_capacity(512),
            error: None,
        })
    }

    /// Applies key privacy to every record written.
    pub fn with_redaction(mut self, r: crate::collect::redact::Redact) -> Self {
        self.redact = r;
        self
    }

    pub fn write(&mut self, r: &Record<'_>) {
        if self.error.is_some() {
            return;
        }
        self.line.clear();
        self.key.clear();
        if let Some(k) = r.key {
            if self.redact == crate::collect::redact::Redact::None {
                escape_key(&mut self.key, k);
            } else {
                let s = crate::report::key_string(k, &self.redact);
                self.key.extend_from_slice(s.as_bytes());
            }
        }
        let l = &mut self.line;
        if self.tsv {
            ts_secs(l, r.ts);
            let _ = write!(
                l,
                "\t{}\t{}\t{}\t{}\t{}\t",
                r.client,
                r.server,
                r.transport.as_str(),
                r.proto.as_str(),
                r.command
            );
            l.extend_from_slice(&self.key);
            let _ = write!(
                l,
                "\t{}\t{}\t{}\t",
                r.result.as_str(),
                r.req_bytes,
                r.resp_bytes
            );
            if let Some(ns) = r.latency_ns {
                let _ = write!(l, "{}", ns / 1000);
            }
            l.push(b'\n');
        } else {
            l.extend_from_slice(b"{\"ts\":");
            ts_secs(l, r.ts);
            let _ = write!(
                l,
                ",\"client\":\"{}\",\"server\":\"{}\",\"transport\":\"{}\",\"proto\":\"{}\",\"command\":\"{}\",\"key\":",
                r.client,
                r.server,
                r.transport.as_str(),
                r.proto.as_str(),
                r.command
            );
            if r.key.is_some() {
                l.push(b'"');
                json_str(l, &self.key);
                l.push(b'"');
            } else {
                l.extend_from_slice(b"null");
            }
            let _ = write!(
                l,
                ",\"result\":\"{}\",\"req_bytes\":{},\"resp_bytes\":{},\"latency_us\":",
                r.result.as_str(),
                r.req_bytes,
                r.resp_bytes
            );
            match r.latency_ns {
                Some(ns) => {
                    let _ = write!(l, "{}", ns / 1000);
                }
                None => l.extend_from_slice(b"null"),
            }
            l.extend_from_slice(b"}\n");
        }
        if let Err(e) = self.out.write_all(&self.line) {
            self.error = Some(e);
        }
    }

    pub fn finish(mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Transport;
    use crate::protocol::{Outcome, Proto};

    fn rec(key: Option<&[u8]>, lat: Option<u64>) -> Record<'_> {
        Record {
            ts: 1_700_000_000_123_456_789,
            client: "127.0.0.1:5000".parse().unwrap(),
            server: "[::1]:11211".parse().unwrap(),
            transport: Transport::Tcp,
            proto: Proto::Binary,
            command: "getk",
            first: true,
            key,
            result: Outcome::Hit,
            req_bytes: 0,
            resp_bytes: 42,
            latency_ns: lat,
        }
    }

    #[test]
    fn json_line_is_exact_and_parses() {
        let mut w = RecordWriter::new(Vec::new(), false).unwrap();
        w.write(&rec(Some(b"a\"b\\c\x00\xff d"), Some(1_999_999)));
        w.write(&rec(None, None));
        let out = String::from_utf8(w.out.clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"ts":1700000000.123456,"client":"127.0.0.1:5000","server":"[::1]:11211","transport":"tcp","proto":"binary","command":"getk","key":"a\"b\\x5cc\\x00\\xff d","result":"hit","req_bytes":0,"resp_bytes":42,"latency_us":1999}"#
        );
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["key"], "a\"b\\x5cc\\x00\\xff d");
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert!(v["key"].is_null() && v["latency_us"].is_null());
    }

    #[test]
    fn tsv_has_header_and_escaped_tabs() {
        let mut w = RecordWriter::new(Vec::new(), true).unwrap();
        w.write(&rec(Some(b"k\tx"), None));
        let out = String::from_utf8(w.out.clone()).unwrap();
        assert_eq!(
            out,
            format!("{TSV_HEADER}1700000000.123456\t127.0.0.1:5000\t[::1]:11211\ttcp\tbinary\tgetk\tk\\x09x\thit\t0\t42\t\n")
        );
    }
}
