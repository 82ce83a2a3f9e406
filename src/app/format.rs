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

/// Decimal digits of `v`, without `core::fmt` (numbers through `write!`
/// were a tenth of `dump`'s instructions).
fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn ts_secs(out: &mut Vec<u8>, ts: u64) {
    put_u64(out, ts / 1_000_000_000);
    out.push(b'.');
    let mut v = (ts % 1_000_000_000) / 1000;
    let mut frac = [b'0'; 6];
    for d in frac.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&frac);
}

/// `ip:port` as `SocketAddr`'s Display writes it; IPv4 by hand (the two
/// addresses through `core::fmt` were a quarter of `dump`'s
/// instructions), IPv6 through `Display`.
fn put_addr(out: &mut Vec<u8>, a: &std::net::SocketAddr) {
    match a {
        std::net::SocketAddr::V4(v4) => {
            for (i, o) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                put_u64(out, *o as u64);
            }
            out.push(b':');
            put_u64(out, v4.port() as u64);
        }
        std::net::SocketAddr::V6(_) => {
            let _ = write!(out, "{a}");
        }
    }
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
            l.push(b'\t');
            put_addr(l, &r.client);
            l.push(b'\t');
            put_addr(l, &r.server);
            l.push(b'\t');
            l.extend_from_slice(r.transport.as_str().as_bytes());
            l.push(b'\t');
            l.extend_from_slice(r.proto.as_str().as_bytes());
            l.push(b'\t');
            l.extend_from_slice(r.command.as_bytes());
            l.push(b'\t');
            l.extend_from_slice(&self.key);
            l.push(b'\t');
            l.extend_from_slice(r.result.as_str().as_bytes());
            l.push(b'\t');
            put_u64(l, r.req_bytes);
            l.push(b'\t');
            put_u64(l, r.resp_bytes);
            l.push(b'\t');
            if let Some(ns) = r.latency_ns {
                put_u64(l, ns / 1000);
            }
            l.push(b'\n');
        } else {
            l.extend_from_slice(b"{\"ts\":");
            ts_secs(l, r.ts);
            l.extend_from_slice(b",\"client\":\"");
            put_addr(l, &r.client);
            l.extend_from_slice(b"\",\"server\":\"");
            put_addr(l, &r.server);
            l.extend_from_slice(b"\",\"transport\":\"");
            l.extend_from_slice(r.transport.as_str().as_bytes());
            l.extend_from_slice(b"\",\"proto\":\"");
            l.extend_from_slice(r.proto.as_str().as_bytes());
            l.extend_from_slice(b"\",\"command\":\"");
            l.extend_from_slice(r.command.as_bytes());
            l.extend_from_slice(b"\",\"key\":");
            if r.key.is_some() {
                l.push(b'"');
                json_str(l, &self.key);
                l.push(b'"');
            } else {
                l.extend_from_slice(b"null");
            }
            l.extend_from_slice(b",\"result\":\"");
            l.extend_from_slice(r.result.as_str().as_bytes());
            l.extend_from_slice(b"\",\"req_bytes\":");
            put_u64(l, r.req_bytes);
            l.extend_from_slice(b",\"resp_bytes\":");
            put_u64(l, r.resp_bytes);
            l.extend_from_slice(b",\"latency_us\":");
            match r.latency_ns {
                Some(ns) => put_u64(l, ns / 1000),
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
            exptime: None,
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
    fn numbers_and_addresses_match_display() {
        for v in [0u64, 7, 10, 99, 1000, 1_234_567, u64::MAX] {
            let mut o = Vec::new();
            put_u64(&mut o, v);
            assert_eq!(String::from_utf8(o).unwrap(), v.to_string());
        }
        for a in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.1.20.3:11211",
            "[::1]:80",
            "[fe80::1%2]:7",
        ] {
            let a: std::net::SocketAddr = a.parse().unwrap();
            let mut o = Vec::new();
            put_addr(&mut o, &a);
            assert_eq!(String::from_utf8(o).unwrap(), a.to_string());
        }
        let mut o = Vec::new();
        ts_secs(&mut o, 1_700_000_000_000_001_999);
        assert_eq!(o, b"1700000000.000001");
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
