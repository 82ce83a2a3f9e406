//! Writes frames as a pcapng file (trigger snippets): one section with a
//! comment, an interface per link type (nanosecond timestamps), and an
//! enhanced packet block per frame. Any pcapng reader opens it, memtap's
//! own included.

use super::recorder::Kept;
use std::io::Write;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_COMMENT: u16 = 1;
const OPT_SHB_USERAPPL: u16 = 4;
const OPT_IF_TSRESOL: u16 = 9;

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    out.extend(std::iter::repeat_n(0, pad4(value.len())));
}

fn block(w: &mut impl Write, kind: u32, body: &[u8]) -> std::io::Result<usize> {
    let total = (12 + body.len()) as u32;
    w.write_all(&kind.to_le_bytes())?;
    w.write_all(&total.to_le_bytes())?;
    w.write_all(body)?;
    w.write_all(&total.to_le_bytes())?;
    Ok(total as usize)
}

/// The bytes [`write`] writes for these frames and comment.
pub fn size(comment: &str, frames: &[&Kept]) -> u64 {
    let c = comment.len().min(65_000);
    let opt = |n: usize| 4 + n + pad4(n);
    let shb = 12 + 16 + opt(c) + opt(6) + 4;
    let mut links: Vec<u32> = Vec::new();
    for f in frames {
        if !links.contains(&f.linktype) {
            links.push(f.linktype);
        }
    }
    let idb = links.len() * (12 + 8 + opt(1) + 4);
    let epb: usize = frames
        .iter()
        .map(|f| 12 + 20 + f.data.len() + pad4(f.data.len()))
        .sum();
    (shb + idb + epb) as u64
}

/// Writes `frames` (oldest first) with `comment` on the section; returns
/// the bytes written.
pub fn write(w: &mut impl Write, comment: &str, frames: &[&Kept]) -> std::io::Result<u64> {
    let mut written = 0usize;
    let mut body = Vec::new();
    body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes());
    // A comment option holds at most 65535 bytes.
    let c = comment.as_bytes();
    option(&mut body, OPT_COMMENT, &c[..c.len().min(65_000)]);
    option(&mut body, OPT_SHB_USERAPPL, b"memtap");
    option(&mut body, 0, b"");
    written += block(w, SHB, &body)?;
    // One interface per link type, in order of first use.
    let mut links: Vec<u32> = Vec::new();
    for f in frames {
        if !links.contains(&f.linktype) {
            links.push(f.linktype);
        }
    }
    for &l in &links {
        body.clear();
        body.extend_from_slice(&(l as u16).to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&262_144u32.to_le_bytes());
        option(&mut body, OPT_IF_TSRESOL, &[9]);
        option(&mut body, 0, b"");
        written += block(w, IDB, &body)?;
    }
    for f in frames {
        body.clear();
        let iface = links.iter().position(|&l| l == f.linktype).unwrap_or(0) as u32;
        body.extend_from_slice(&iface.to_le_bytes());
        body.extend_from_slice(&((f.ts >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(f.ts as u32).to_le_bytes());
        body.extend_from_slice(&(f.data.len() as u32).to_le_bytes());
        body.extend_from_slice(&f.wire_len.max(f.data.len() as u32).to_le_bytes());
        body.extend_from_slice(&f.data);
        body.extend(std::iter::repeat_n(0, pad4(f.data.len())));
        written += block(w, EPB, &body)?;
    }
    Ok(written as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::file::FileSource;
    use crate::stats::Counters;

    #[test]
    fn memtaps_reader_reads_back_every_frame_and_time() {
        let frames: Vec<Kept> = (0..5u64)
            .map(|i| Kept {
                ts: 1_700_000_000_123_456_789 + i,
                linktype: 1,
                wire_len: 60 + i as u32,
                data: vec![i as u8; 57 + i as usize],
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.pcapng");
        let mut f = std::fs::File::create(&p).unwrap();
        let refs: Vec<&Kept> = frames.iter().collect();
        let n = write(&mut f, "trigger hot-key fired", &refs).unwrap();
        drop(f);
        assert_eq!(n, size("trigger hot-key fired", &refs));
        assert_eq!(n, std::fs::metadata(&p).unwrap().len());
        let mut src = FileSource::open(&[p]).unwrap();
        let mut c = Counters::default();
        let mut got = Vec::new();
        while let Some(fr) = src.next_frame(&mut c).unwrap() {
            got.push((fr.ts, fr.linktype, fr.wire_len, fr.data.to_vec()));
        }
        let want: Vec<_> = frames
            .iter()
            .map(|k| (k.ts, k.linktype, k.wire_len, k.data.clone()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(c.capture_errors, 0);
    }
}
