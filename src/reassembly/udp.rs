//! memcached's UDP frame header (framing only; pairing is `session`'s job).
//!
//! From memcached's `doc/protocol.txt`, "UDP protocol": every datagram starts
//! with an 8-byte header, all fields big-endian 16-bit:
//!
//! ```text
//! 0-1 Request ID
//! 2-3 Sequence number
//! 4-5 Total number of datagrams in this message
//! 6-7 Reserved for future use; must be 0
//! ```
//!
//! memcached 1.6 answers a `get` as a series of messages, each numbered on
//! its own (see the field notes); putting a message together by sequence
//! number is the UDP exchange's job (`session::udp`), which knows where
//! one reply ends.

/// Length of the frame header that precedes every memcached UDP payload.
pub const UDP_FRAME_HEADER_LEN: usize = 8;

/// One memcached UDP datagram: its frame header and the bytes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame<'a> {
    pub req_id: u16,
    pub seq: u16,
    pub total: u16,
    pub reserved: u16,
    /// Protocol bytes after the header (may be empty).
    pub payload: &'a [u8],
}

/// Splits a UDP payload into memcached's frame header and the rest.
///
/// `None` when shorter than the header (the caller counts `udp_bad_frame`).
/// A non-zero `reserved` field is returned as is; judging it is the caller's choice.
pub fn parse_udp_frame(b: &[u8]) -> Option<UdpFrame<'_>> {
    let (h, payload) = b.split_first_chunk::<UDP_FRAME_HEADER_LEN>()?;
    Some(UdpFrame {
        req_id: u16::from_be_bytes([h[0], h[1]]),
        seq: u16::from_be_bytes([h[2], h[3]]),
        total: u16::from_be_bytes([h[4], h[5]]),
        reserved: u16::from_be_bytes([h[6], h[7]]),
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_and_payload() {
        let b = b"\x12\x34\x00\x01\x00\x02\x00\x00get k\r\n";
        let f = parse_udp_frame(b).unwrap();
        assert_eq!(
            f,
            UdpFrame {
                req_id: 0x1234,
                seq: 1,
                total: 2,
                reserved: 0,
                payload: b"get k\r\n"
            }
        );
    }

    #[test]
    fn header_only_is_an_empty_payload() {
        let f = parse_udp_frame(&[0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(f.req_id, 1);
        assert_eq!(f.total, 0);
        assert!(f.payload.is_empty());
    }

    #[test]
    fn short_datagrams_are_rejected() {
        for n in 0..UDP_FRAME_HEADER_LEN {
            assert_eq!(parse_udp_frame(&[0xff; 8][..n]), None);
        }
    }
}
