//! Seeds: the fixture captures, read into frames, packets and byte streams,
//! and written back in every capture format the reader accepts (legacy pcap
//! in both byte orders, µs/ns, Kuznetzov's modified records; pcapng with
//! several interfaces and sections), remembering where each length field
//! lies so the mutator can aim at it.

use super::common::{self, Seg};
use memtap::capture::file::FileSource;
use memtap::stats::Counters;
use std::sync::OnceLock;

pub struct Fixture {
    pub pcap: Vec<u8>,
    /// (linktype, ts ns, frame bytes) of every frame.
    pub frames: Vec<(u32, u64, Vec<u8>)>,
    pub segs: Vec<Seg>,
    pub server_port: u16,
}

pub fn fixtures() -> &'static [Fixture] {
    static F: OnceLock<Vec<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        common::cases()
            .into_iter()
            .map(|case| {
                let path = common::fixture_dir(case).join("capture.pcap");
                let mut src = FileSource::open(std::slice::from_ref(&path)).unwrap();
                let mut c = Counters::default();
                let mut frames = Vec::new();
                while let Some(f) = src.next_frame(&mut c).unwrap() {
                    frames.push((f.linktype, f.ts, f.data.to_vec()));
                }
                let target = common::server_target(case).to_string();
                let server_port = target.rsplit(':').next().unwrap().parse().unwrap();
                Fixture {
                    pcap: std::fs::read(&path).unwrap(),
                    frames,
                    segs: common::read_segments(&path),
                    server_port,
                }
            })
            .collect()
    })
}

/// (request streams, response streams)
pub type Streams = (Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Request-side and response-side byte streams of every fixture (TCP
/// payloads of a direction joined; UDP bodies after the frame header).
pub fn streams() -> &'static Streams {
    static S: OnceLock<Streams> = OnceLock::new();
    S.get_or_init(|| {
        let (mut req, mut resp) = (Vec::new(), Vec::new());
        for f in fixtures() {
            let (mut q, mut a) = (Vec::new(), Vec::new());
            for s in &f.segs {
                let body = if s.udp {
                    s.payload.get(8..).unwrap_or(&[])
                } else {
                    &s.payload[..]
                };
                if s.dport == f.server_port {
                    q.extend_from_slice(body);
                } else {
                    a.extend_from_slice(body);
                }
            }
            req.push(q);
            resp.push(a);
        }
        (req, resp)
    })
}

/// A capture file and the offsets of its length fields: (offset, width,
/// big-endian).
pub struct Built {
    pub bytes: Vec<u8>,
    pub len_fields: Vec<(usize, usize, bool)>,
}

pub struct LegacyStyle {
    pub big_endian: bool,
    pub nanos: bool,
    pub modified: bool,
    pub snaplen: u32,
    pub linktype: u32,
}

fn put32(out: &mut Vec<u8>, v: u32, be: bool) {
    out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
}

fn put16(out: &mut Vec<u8>, v: u16, be: bool) {
    out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
}

pub fn legacy(frames: &[(u64, &[u8])], s: &LegacyStyle) -> Built {
    let be = s.big_endian && !s.modified;
    let magic = match (s.modified, s.nanos) {
        (true, _) => 0xa1b2_cd34,
        (false, true) => 0xa1b2_3c4d,
        (false, false) => 0xa1b2_c3d4,
    };
    let mut out = Vec::new();
    let mut len_fields = Vec::new();
    put32(&mut out, magic, be);
    put16(&mut out, 2, be);
    put16(&mut out, 4, be);
    put32(&mut out, 0, be);
    put32(&mut out, 0, be);
    len_fields.push((out.len(), 4, be));
    put32(&mut out, s.snaplen, be);
    put32(&mut out, s.linktype, be);
    for &(ts, data) in frames {
        let frac = if s.nanos && !s.modified {
            ts % 1_000_000_000
        } else {
            ts % 1_000_000_000 / 1000
        };
        put32(&mut out, (ts / 1_000_000_000) as u32, be);
        put32(&mut out, frac as u32, be);
        let incl = data.len().min(s.snaplen as usize);
        len_fields.push((out.len(), 4, be));
        put32(&mut out, incl as u32, be);
        len_fields.push((out.len(), 4, be));
        put32(&mut out, data.len() as u32, be);
        if s.modified {
            put32(&mut out, 1, be);
            put16(&mut out, 0x0800, be);
            out.extend_from_slice(&[0, 0]);
        }
        out.extend_from_slice(&data[..incl]);
    }
    Built {
        bytes: out,
        len_fields,
    }
}

/// pcapng: one section per entry of `sections`, each with its byte order,
/// interfaces (linktype, tsresol exponent) and frames (interface, ts,
/// data); a frame on interface `u32::MAX` is written as a Simple Packet
/// Block.
pub struct NgSection<'a> {
    pub big_endian: bool,
    pub ifaces: Vec<(u16, u8)>,
    pub frames: Vec<(u32, u64, &'a [u8])>,
}

pub fn pcapng(sections: &[NgSection<'_>]) -> Built {
    let mut out = Vec::new();
    let mut len_fields = Vec::new();
    for s in sections {
        let be = s.big_endian;
        let block = |out: &mut Vec<u8>, lf: &mut Vec<_>, ty: u32, body: &[u8]| {
            let total = 12 + body.len().div_ceil(4) * 4;
            put32(out, ty, be);
            lf.push((out.len(), 4, be));
            put32(out, total as u32, be);
            out.extend_from_slice(body);
            out.resize(out.len() + (total - 12 - body.len()), 0);
            lf.push((out.len(), 4, be));
            put32(out, total as u32, be);
        };
        let mut shb = Vec::new();
        put32(&mut shb, 0x1a2b_3c4d, be);
        put16(&mut shb, 1, be);
        put16(&mut shb, 0, be);
        shb.extend_from_slice(&[0xff; 8]);
        block(&mut out, &mut len_fields, 0x0a0d_0d0a, &shb);
        for &(linktype, tsresol) in &s.ifaces {
            let mut idb = Vec::new();
            put16(&mut idb, linktype, be);
            put16(&mut idb, 0, be);
            put32(&mut idb, 262_144, be);
            if tsresol != 6 {
                put16(&mut idb, 9, be); // if_tsresol
                put16(&mut idb, 1, be);
                idb.extend_from_slice(&[tsresol, 0, 0, 0]);
                put32(&mut idb, 0, be); // opt_endofopt
            }
            block(&mut out, &mut len_fields, 1, &idb);
        }
        for &(iface, ts, data) in &s.frames {
            let mut body = Vec::new();
            if iface == u32::MAX {
                put32(&mut body, data.len() as u32, be);
                body.extend_from_slice(data);
                block(&mut out, &mut len_fields, 3, &body);
                continue;
            }
            let res = s.ifaces.get(iface as usize).map_or(6, |i| i.1);
            let units = ts / 10u64.pow(9u32.saturating_sub(u32::from(res.min(9))));
            put32(&mut body, iface, be);
            put32(&mut body, (units >> 32) as u32, be);
            put32(&mut body, units as u32, be);
            let at = out.len() + 8 + body.len();
            len_fields.push((at, 4, be));
            put32(&mut body, data.len() as u32, be);
            len_fields.push((at + 4, 4, be));
            put32(&mut body, data.len() as u32, be);
            body.extend_from_slice(data);
            block(&mut out, &mut len_fields, 6, &body);
        }
    }
    Built {
        bytes: out,
        len_fields,
    }
}

/// Handwritten messages of every dialect, both directions, for what the
/// fixtures do not show (every command word, flags, edge lengths).
pub const REQUESTS: &[&[u8]] = &[
    b"get a\r\n",
    b"get a bb ccc dddd\r\n",
    b"gets a b\r\n",
    b"gat 10 a b\r\n",
    b"gats 0 a\r\n",
    b"set k 0 0 5\r\nhello\r\n",
    b"set k 0 0 5 noreply\r\nhello\r\n",
    b"add k 1 2 0\r\n\r\n",
    b"replace k 0 0 1\r\nx\r\n",
    b"append k 0 0 1\r\nx\r\n",
    b"prepend k 0 0 1\r\nx\r\n",
    b"cas k 0 0 1 99\r\nx\r\n",
    b"incr k 1\r\n",
    b"decr k 18446744073709551615 noreply\r\n",
    b"touch k 10\r\n",
    b"delete k\r\n",
    b"delete k 0 noreply\r\n",
    b"stats\r\n",
    b"stats slabs\r\n",
    b"version\r\n",
    b"flush_all 0\r\n",
    b"verbosity 1\r\n",
    b"quit\r\n",
    b"lru_crawler metadump all\r\n",
    b"mg k v f t k O1234 q\r\n",
    b"mg a2V5 b v k\r\n",
    b"ms k 5 T0 F1 I q\r\nhello\r\n",
    b"ms k 0\r\n\r\n",
    b"md k q O9\r\n",
    b"ma k N0 J13 D2 MI\r\n",
    b"mn\r\n",
    b"me k\r\n",
    // Binary: get "k", set "k"="v" (quiet), noop.
    b"\x80\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00k",
    b"\x80\x11\x00\x01\x08\x00\x00\x00\x00\x00\x00\x0a\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00kv",
    b"\x80\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
];

pub const RESPONSES: &[&[u8]] = &[
    b"VALUE a 0 5\r\nhello\r\nEND\r\n",
    b"VALUE a 0 5 77\r\nhello\r\nVALUE bb 1 0\r\n\r\nEND\r\n",
    b"END\r\n",
    b"STORED\r\n",
    b"NOT_STORED\r\n",
    b"EXISTS\r\n",
    b"NOT_FOUND\r\n",
    b"DELETED\r\n",
    b"TOUCHED\r\n",
    b"OK\r\n",
    b"12345\r\n",
    b"STAT pid 1\r\nSTAT uptime 2\r\nEND\r\n",
    b"VERSION 1.6.18\r\n",
    b"ERROR\r\n",
    b"CLIENT_ERROR bad data chunk\r\n",
    b"SERVER_ERROR out of memory\r\n",
    b"RESET\r\n",
    b"VA 5 f0 t-1 k O1234\r\nhello\r\n",
    b"VA 0 b ka2V5\r\n\r\n",
    b"HD\r\n",
    b"HD O9 k\r\n",
    b"EN\r\n",
    b"NF\r\n",
    b"NS\r\n",
    b"EX\r\n",
    b"MN\r\n",
    b"ME k exp=-1 la=1 cas=2 fetch=no cls=1 size=63\r\n",
    // Binary: get hit with flags, miss, noop.
    b"\x81\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00hello",
    b"\x81\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x09\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00\x00Not found",
    b"\x81\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
];
