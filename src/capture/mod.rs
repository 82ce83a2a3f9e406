//! Raw frames in, nothing parsed beyond the capture's own framing: capture
//! files (`file`) and live interfaces (`afpacket`, the native TPACKET_V3
//! ring, and `live_pcap`, libpcap), plus the BPF compiler (`bpf`) both live
//! sources use.

pub mod afpacket;
pub mod bpf;
pub mod file;
pub mod live_pcap;
mod mapped;
pub mod pcapng_out;
pub mod recorder;

use crate::time::Ts;

/// LINKTYPE_ETHERNET: what both live sources hand out (loopback included:
/// Linux gives `lo` an all-zero Ethernet header).
pub const LINKTYPE_ETHERNET: u32 = 1;

/// One captured frame, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts: Ts,
    /// 1-based index of the frame across all input files (a live source
    /// counts its own frames).
    pub frame_no: u64,
    /// pcap LINKTYPE_* value of the interface the frame was captured on.
    pub linktype: u32,
    /// Length on the wire (may exceed `data.len()` when cut by snap length).
    pub wire_len: u32,
    pub data: &'a [u8],
}

/// Why a live source could not be opened (or its filter compiled). Every
/// message is one line that names the interface or expression and says
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("no such network interface `{0}` (`ip link` lists them)")]
    NoSuchInterface(String),
    #[error("{}", permission_message(.0))]
    PermissionDenied(String),
    #[error("interface `{0}` is down (bring it up with `ip link set {0} up`)")]
    InterfaceDown(String),
    #[error("interface `{iface}` has ARPHRD link type {hatype}, which the af-packet engine does not decode; use `--engine pcap`")]
    UnsupportedLinkType { iface: String, hatype: u16 },
    #[error("cannot set up a capture ring of {block_count} blocks x {block_size} bytes on `{iface}`: {reason}; try fewer or smaller blocks")]
    Ring {
        iface: String,
        block_size: usize,
        block_count: usize,
        reason: String,
    },
    #[error("bad filter `{expr}`: {msg}")]
    BadFilter { expr: String, msg: String },
    #[error("cannot capture on `{iface}`: {what}: {msg}")]
    Os {
        iface: String,
        what: &'static str,
        msg: String,
    },
}

/// The message for a capture refused for lack of privilege: it names the
/// missing capability and the three usual ways to grant it.
pub fn permission_message(iface: &str) -> String {
    format!(
        "permission denied capturing on `{iface}`: memtap lacks CAP_NET_RAW; run as root, or: \
         setcap cap_net_raw,cap_net_admin+eip $(command -v memtap), or under systemd: \
         AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN"
    )
}
