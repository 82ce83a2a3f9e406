//! L2–L4 decoding over borrowed bytes, and the watched-target test.
//!
//! `Packet` is a view: addresses and ports copied out (they are small), the
//! L4 payload borrowed from the frame (or from the fragment pool's buffer
//! when an IPv4 datagram had to be rebuilt).

use std::net::IpAddr;

pub mod defrag;
pub mod link;
pub mod targets;

/// Packet timestamp in nanoseconds since the Unix epoch.
pub type Ts = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// TCP header fields the reassembler needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpInfo {
    pub seq: u32,
    pub ack: u32,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub ack_flag: bool,
}

/// One decoded TCP or UDP packet.
#[derive(Debug, Clone)]
pub struct Packet<'a> {
    pub ts: Ts,
    /// 1-based index of the frame in the whole input (for warnings).
    pub frame_no: u64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub transport: Transport,
    pub tcp: TcpInfo,
    /// L4 payload actually captured.
    pub payload: &'a [u8],
    /// True when the frame was cut by the snap length, so `payload` is
    /// shorter than what was on the wire.
    pub truncated: bool,
    /// Payload length on the wire (from the IP/UDP length fields).
    pub wire_payload_len: usize,
}
