//! How keys are written in every output: printable ASCII as is, any other
//! byte (and the backslash itself, so the escape is unambiguous) as `\xNN`.

const HEX: &[u8; 16] = b"0123456789abcdef";

pub fn escape_key(out: &mut Vec<u8>, key: &[u8]) {
    for &b in key {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            out.push(b);
        } else {
            out.extend_from_slice(b"\\x");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 15) as usize]);
        }
    }
}

/// `escape_key` into a new `String` (report building, not the hot path).
pub fn key_string(key: &[u8]) -> String {
    let mut out = Vec::with_capacity(key.len());
    escape_key(&mut out, key);
    // Only ASCII is written.
    String::from_utf8(out).unwrap_or_default()
}

/// The inverse of `key_string`: `\xNN` back to its byte (a key typed on a
/// command line or in a URL, as reports print it).
pub fn unescape_key(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            if let Some(v) = s
                .get(i + 2..i + 4)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_what_it_escapes() {
        for k in [&b"user:42"[..], b"a\\b", b"\x00\xff \x7f~", b""] {
            assert_eq!(unescape_key(&key_string(k)), k);
        }
    }

    #[test]
    fn escapes_exactly() {
        assert_eq!(key_string(b"user:42"), "user:42");
        assert_eq!(key_string(b"a\\b"), "a\\x5cb");
        assert_eq!(key_string(b"\x00\xff \x7f~"), "\\x00\\xff \\x7f~");
        assert_eq!(key_string(b""), "");
    }
}
