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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_exactly() {
        assert_eq!(key_string(b"user:42"), "user:42");
        assert_eq!(key_string(b"a\\b"), "a\\x5cb");
        assert_eq!(key_string(b"\x00\xff \x7f~"), "\\x00\\xff \\x7f~");
        assert_eq!(key_string(b""), "");
    }
}
