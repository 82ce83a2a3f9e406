//! Byte-level mutations in the manner of AFL's havoc stage: bit flips,
//! interesting values, inserts and deletes, block copies, splices between
//! seeds, truncation and length-field tweaks (a u16/u32 at an offset set to
//! a boundary value, or nudged by a small amount, in either byte order).

use super::harness::Rng;

const INTERESTING8: [u8; 12] = [
    0, 1, 0x7f, 0x80, 0x81, 0xff, b'\n', b'\r', b' ', b'0', b'9', b'-',
];
const INTERESTING32: [u32; 12] = [
    0,
    1,
    8,
    24,
    0x7f,
    0xff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];
/// Tokens that steer text parsers towards their edges.
const TOKENS: [&[u8]; 24] = [
    b" ",
    b"\r\n",
    b"\n",
    b"\r",
    b" 0",
    b" 18446744073709551615",
    b" 18446744073709551616",
    b" 4294967296",
    b" -1",
    b" noreply",
    b"get ",
    b"set k 0 0 5\r\n",
    b"VALUE k 0 5\r\n",
    b"END\r\n",
    b"mg k v k q O123 b\r\n",
    b"ms k 5 T0 q\r\n",
    b"VA 5 k t\r\n",
    b"MN\r\n",
    b" b",
    b" k",
    b" q",
    b" O",
    b"\x80\x00",
    b"\x81\x00",
];

/// One to `max_ops` mutations of `data`, kept under `max_len` bytes.
pub fn havoc(r: &mut Rng, data: &mut Vec<u8>, others: &[Vec<u8>], max_ops: usize, max_len: usize) {
    let ops = 1 + r.below(max_ops.max(1));
    for _ in 0..ops {
        one(r, data, others);
    }
    data.truncate(max_len);
}

fn one(r: &mut Rng, d: &mut Vec<u8>, others: &[Vec<u8>]) {
    let len = d.len();
    match r.below(12) {
        0 if len > 0 => {
            let i = r.below(len);
            d[i] ^= 1 << r.below(8);
        }
        1 if len > 0 => {
            let i = r.below(len);
            d[i] = *r.pick(&INTERESTING8);
        }
        2 if len > 0 => {
            let i = r.below(len);
            d[i] = r.next() as u8;
        }
        3 => {
            // Insert random bytes (or a run of one byte).
            let i = r.below(len + 1);
            let most = if r.chance(10) { 4096 } else { 16 };
            let n = 1 + r.below(most);
            let run = r.chance(50);
            let b = r.next() as u8;
            let ins: Vec<u8> = (0..n)
                .map(|_| if run { b } else { r.next() as u8 })
                .collect();
            d.splice(i..i, ins);
        }
        4 if len > 0 => {
            let i = r.below(len);
            let n = 1 + r.below((len - i).min(64));
            d.drain(i..i + n);
        }
        5 if len > 0 => {
            // Copy a block over (or into) another place.
            let a = r.below(len);
            let n = 1 + r.below((len - a).min(256));
            let block = d[a..a + n].to_vec();
            let b = r.below(len + 1);
            if r.chance(50) {
                d.splice(b..b, block);
            } else {
                let end = (b + n).min(len);
                d.splice(b..end, block);
            }
        }
        6 if !others.is_empty() => {
            // Splice: our head, another seed's tail.
            let o = r.pick(others);
            let cut = r.below(len + 1);
            let from = r.below(o.len() + 1);
            d.truncate(cut);
            d.extend_from_slice(&o[from..]);
        }
        7 if len > 0 => {
            let n = r.below(len);
            d.truncate(n);
        }
        8 => {
            let i = r.below(len + 1);
            d.splice(i..i, r.pick(&TOKENS).iter().copied());
        }
        9 | 10 if len >= 2 => {
            let width = if len >= 4 && r.chance(50) { 4 } else { 2 };
            let at = r.below(len - width + 1);
            let be = r.chance(50);
            tweak_int(r, d, at, width, be);
        }
        _ if len > 0 => {
            // A decimal number somewhere, set to an edge value.
            let i = r.below(len);
            let v = *r.pick(&[
                &b"0"[..],
                b"1",
                b"4294967295",
                b"4294967296",
                b"18446744073709551615",
                b"99999999999999999999999",
                b"-1",
                b"+1",
            ]);
            let end = d[i..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map_or(len, |p| i + p);
            d.splice(i..end, v.iter().copied());
        }
        _ => d.push(r.next() as u8),
    }
}

/// Sets the `width`-byte integer at `at` to a boundary value, or moves it
/// by a small delta.
pub fn tweak_int(r: &mut Rng, d: &mut [u8], at: usize, width: usize, big_endian: bool) {
    let field = &mut d[at..at + width];
    let mut cur = [0u8; 4];
    cur[..width].copy_from_slice(field);
    if big_endian {
        cur[..width].reverse();
    }
    let old = u32::from_le_bytes(cur);
    let new = if r.chance(50) {
        *r.pick(&INTERESTING32)
    } else {
        let delta = 1 + r.below(64) as u32;
        if r.chance(50) {
            old.wrapping_add(delta)
        } else {
            old.wrapping_sub(delta)
        }
    };
    let mut b = new.to_le_bytes();
    if big_endian {
        b[..width].reverse();
    }
    field.copy_from_slice(&b[..width]);
}
