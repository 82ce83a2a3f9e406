//! The fixture captures (`testdata/pcaps/*/capture.pcap`), read once: the
//! engine and UDP targets replay their payloads in fuzzer-chosen orders.

use memtap::capture::file::FileSource;
use memtap::decode::{DecodeConfig, Decoder, Transport};
use memtap::stats::Counters;
use std::path::PathBuf;
use std::sync::OnceLock;

pub struct Payload {
    pub to_server: bool,
    pub udp: bool,
    pub bytes: Vec<u8>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/pcaps")
}

/// The server port of a fixture, from its expected records.
fn server_port(case: &std::path::Path) -> Option<u16> {
    let e = std::fs::read_to_string(case.join("expected.jsonl")).ok()?;
    let at = e.find("\"server\":")? + 9;
    let from = at + e[at..].find('"')? + 1;
    let end = from + e[from..].find('"')?;
    e[from..end].rsplit(':').next()?.parse().ok()
}

/// The fixtures' server ports.
pub fn ports() -> Vec<u16> {
    let Ok(dirs) = std::fs::read_dir(root()) else {
        return Vec::new();
    };
    let mut v: Vec<u16> = dirs
        .flatten()
        .filter_map(|d| server_port(&d.path()))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Every non-empty TCP/UDP payload of every fixture, in capture order.
pub fn payloads() -> &'static [Payload] {
    static P: OnceLock<Vec<Payload>> = OnceLock::new();
    P.get_or_init(|| {
        let mut out = Vec::new();
        let Ok(dirs) = std::fs::read_dir(root()) else {
            return out;
        };
        let mut dirs: Vec<PathBuf> = dirs.flatten().map(|d| d.path()).collect();
        dirs.sort();
        for case in dirs {
            let (Some(port), true) = (server_port(&case), case.join("capture.pcap").exists())
            else {
                continue;
            };
            let Ok(mut src) = FileSource::open(&[case.join("capture.pcap")]) else {
                continue;
            };
            let mut c = Counters::default();
            let mut dec = Decoder::new(DecodeConfig::default());
            while let Ok(Some(f)) = src.next_frame(&mut c) {
                if let Some(p) = dec.decode(&f, &mut c) {
                    if !p.payload.is_empty() {
                        out.push(Payload {
                            to_server: p.dport == port,
                            udp: p.transport == Transport::Udp,
                            bytes: p.payload.to_vec(),
                        });
                    }
                }
            }
        }
        out
    })
}

/// The `i`-th payload (wrapping) of the given transport, if any.
pub fn pick(i: u16, udp: bool) -> Option<&'static Payload> {
    let all: &'static [Payload] = payloads();
    static TCP: OnceLock<Vec<usize>> = OnceLock::new();
    static UDP: OnceLock<Vec<usize>> = OnceLock::new();
    let idx = |u: bool| -> Vec<usize> { (0..all.len()).filter(|&j| all[j].udp == u).collect() };
    let list = if udp {
        UDP.get_or_init(|| idx(true))
    } else {
        TCP.get_or_init(|| idx(false))
    };
    if list.is_empty() {
        return None;
    }
    Some(&all[list[i as usize % list.len()]])
}
