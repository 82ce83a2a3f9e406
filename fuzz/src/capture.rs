//! The capture reader: pcap and pcapng in any byte order and resolution,
//! plain, gzip or zstd. Input: one byte of mode (0: the bytes as a file as
//! they are; 1: gzip of them; 2: zstd of them; 3: as they are, and also
//! twice over as two files), then the file's bytes.
//!
//! Invariants: counters match the frames handed out; a plain file yields
//! at most one frame per 12 bytes; compression is transparent (the same
//! frames, and the same end, as the plain bytes); reading the same file
//! twice as two inputs yields its frames twice (a file boundary is a batch
//! boundary); the frames decode and run through an engine with records
//! emitted equal to records counted and no flow left after `finish`.

use memtap::capture::file::FileSource;
use memtap::decode::targets::{Target, Targets};
use memtap::decode::{DecodeConfig, Decoder};
use memtap::session::{Engine, EngineConfig, Record};
use memtap::stats::Counters;
use std::io::Write;
use std::path::PathBuf;

/// (linktype, wire_len, ts, data) of every frame, and whether the read
/// ended in an error.
#[derive(Debug, PartialEq, Eq)]
struct Read {
    frames: Vec<(u32, u32, u64, Vec<u8>)>,
    failed: bool,
}

fn path(n: usize) -> PathBuf {
    std::env::temp_dir().join(format!("memtap-fuzz-capture-{}-{n}", std::process::id()))
}

fn write(n: usize, bytes: &[u8]) -> PathBuf {
    let p = path(n);
    std::fs::write(&p, bytes).expect("temp file");
    p
}

/// Reads `paths` to the end; with `engine`, also decodes each frame and
/// runs it through an engine, checking its invariants.
fn read(paths: &[PathBuf], engine: bool, plain_bytes: Option<usize>) -> Read {
    let mut out = Read {
        frames: Vec::new(),
        failed: false,
    };
    let mut src = match FileSource::open(paths) {
        Ok(s) => s,
        Err(e) => {
            assert!(!format!("{e:#}").is_empty());
            out.failed = true;
            return out;
        }
    };
    let mut c = Counters::default();
    let mut dec = Decoder::new(DecodeConfig::default());
    let targets = Targets::new(
        std::iter::once(11211)
            .chain(crate::fixtures::ports())
            .map(|p| format!("*:{p}").parse::<Target>().unwrap())
            .collect(),
    );
    let mut eng = Engine::new(EngineConfig::default(), targets);
    let mut records = 0u64;
    let mut sink = |r: &Record<'_>| {
        records += 1;
        assert!(r.key.is_none_or(|k| k.len() <= 65_535), "{r:?}");
    };
    let mut bytes = 0u64;
    loop {
        match src.next_frame(&mut c) {
            Ok(Some(f)) => {
                bytes += f.data.len() as u64;
                assert!(f.data.len() <= 16 << 20, "frame of {} bytes", f.data.len());
                out.frames
                    .push((f.linktype, f.wire_len, f.ts, f.data.to_vec()));
                if engine {
                    if let Some(p) = dec.decode(&f, &mut c) {
                        eng.packet(&p, &mut sink);
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                assert!(!format!("{e:#}").is_empty());
                out.failed = true;
                break;
            }
        }
    }
    assert_eq!(c.packets, out.frames.len() as u64);
    assert_eq!(c.bytes, bytes);
    if let Some(total) = src.total_bytes() {
        assert!(src.bytes_read() <= total, "{} > {total}", src.bytes_read());
    }
    if let Some(raw) = plain_bytes {
        // A record takes at least 16 bytes (legacy header, pcapng SPB).
        assert!(
            out.frames.len() <= raw / 12,
            "{} frames from {raw} bytes",
            out.frames.len()
        );
    }
    eng.finish(&mut sink);
    dec.finish(&mut c);
    assert_eq!(
        records,
        eng.counters().records,
        "records emitted vs counted"
    );
    assert_eq!(eng.active_flows(), 0, "flows left after finish");
    out
}

/// Whether the reader takes `b` for a compressed file (by its magic).
fn compressed(b: &[u8]) -> bool {
    b.starts_with(&[0x1f, 0x8b]) || b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

pub fn run(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        m @ (1 | 2) => {
            let z = if m == 1 {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(body).unwrap();
                e.finish().unwrap()
            } else {
                zstd::encode_all(body, 1).unwrap()
            };
            // A file whose plain bytes start like a compressed stream is
            // read as one: it is no plain file (its frames may outnumber its
            // bytes / 12), and it cannot be compared with its compressed form.
            let nested = compressed(body);
            let zr = read(&[write(0, &z)], true, None);
            let plain = read(&[write(1, body)], false, (!nested).then_some(body.len()));
            if !nested {
                assert_eq!(zr.frames, plain.frames, "compressed vs plain frames");
                assert_eq!(zr.failed, plain.failed, "compressed vs plain end");
            }
        }
        m => {
            let p = write(0, body);
            let plainish = !compressed(body);
            let one = read(
                std::slice::from_ref(&p),
                true,
                plainish.then_some(body.len()),
            );
            if m == 3 && !one.failed {
                let two = read(&[p.clone(), p], false, None);
                assert!(!two.failed, "the same file twice failed, once did not");
                assert_eq!(
                    two.frames.len(),
                    2 * one.frames.len(),
                    "the same file twice"
                );
                for (a, b) in two.frames.iter().zip(one.frames.iter().chain(&one.frames)) {
                    assert_eq!((a.0, a.1, &a.3), (b.0, b.1, &b.3), "the same file twice");
                }
            }
        }
    }
}
