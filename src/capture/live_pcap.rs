//! Live capture through libpcap: the portable engine, and the fallback for
//! interfaces the native AF_PACKET ring does not decode.
//!
//! Settings that matter on Linux (libpcap 1.10):
//! * immediate mode stays off: libpcap uses a TPACKET_V3 ring only without
//!   it, and V2 sizes every slot for the largest packet;
//! * the capture runs non-blocking and `poll` waits on the descriptor
//!   itself, because with TPACKET_V3 a blocking read on a quiet interface
//!   may never return (the kernel does not retire an empty block);
//! * nanosecond timestamps: `Precision::Nano`. libpcap still hands them
//!   over in a `timeval`, whose `tv_usec` then holds nanoseconds.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::afpacket::Fanout;
use super::{CaptureError, Frame};
use crate::stats::Counters;

/// Settings for one libpcap live source.
#[derive(Debug, Clone)]
pub struct PcapConfig {
    pub iface: String,
    pub snaplen: u32,
    /// Kernel buffer (libpcap's ring) in bytes.
    pub buffer_size: usize,
    /// Block timeout handed to libpcap (the longest a packet waits in a
    /// block that is not full).
    pub timeout_ms: u32,
    pub promisc: bool,
    /// libpcap filter expression; `None` keeps every packet.
    pub filter: Option<String>,
    /// Join an AF_PACKET fanout group (Linux): libpcap has no API for it,
    /// so the option is set on its socket after activation, the
    /// workaround quoted in libpcap PR #869. Packets that reach the
    /// socket between activation and the join (a few milliseconds at
    /// start) may also be seen by another member; the AF_PACKET source
    /// has no such window.
    pub fanout: Option<Fanout>,
}

impl PcapConfig {
    /// Defaults for `iface`: 64 MiB buffer, 10 ms timeout, snap length
    /// 65535, not promiscuous, no filter.
    pub fn new(iface: &str) -> PcapConfig {
        PcapConfig {
            iface: iface.to_string(),
            snaplen: 65535,
            buffer_size: 64 << 20,
            timeout_ms: 10,
            promisc: false,
            filter: None,
            fanout: None,
        }
    }
}

/// An open libpcap live capture.
pub struct PcapSource {
    cap: pcap::Capture<pcap::Active>,
    iface: String,
    linktype: u32,
    frame_no: u64,
    /// libpcap's statistics are totals since open in 32-bit counters;
    /// the last values seen, to add only the difference.
    last: pcap::Stat,
    totals: PcapStats,
}

/// libpcap's counts since open, as of the last [`PcapSource::update_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PcapStats {
    /// Packets that passed the filter (on loopback both copies of each).
    pub received: u64,
    pub dropped: u64,
    pub if_dropped: u64,
}

impl PcapSource {
    pub fn open(cfg: &PcapConfig) -> Result<PcapSource, CaptureError> {
        let iface = cfg.iface.as_str();
        // Checked first so that a typo is reported as such, whatever
        // libpcap would say (it needs privileges to get that far).
        // `any` is libpcap's pseudo-interface (all interfaces, Linux
        // cooked frames); the kernel does not know it by name.
        if iface != "any" {
            super::afpacket::check_iface_exists(iface)?;
        }
        let snap = i32::try_from(cfg.snaplen).unwrap_or(i32::MAX);
        let buf = i32::try_from(cfg.buffer_size).unwrap_or(i32::MAX);
        let timeout = i32::try_from(cfg.timeout_ms.max(1)).unwrap_or(i32::MAX);
        let inactive = pcap::Capture::from_device(iface).map_err(|e| map_open_error(iface, e))?;
        let cap = inactive
            .snaplen(snap)
            .buffer_size(buf)
            .timeout(timeout)
            .promisc(cfg.promisc)
            .immediate_mode(false)
            .precision(pcap::Precision::Nano)
            .open()
            .map_err(|e| map_open_error(iface, e))?;
        let mut cap = cap.setnonblock().map_err(|e| map_open_error(iface, e))?;
        let linktype = cap.get_datalink().0 as u32;
        if is_loopback(iface) {
            // The kernel hands every loopback packet to packet sockets
            // twice, once leaving and once arriving. Keeping only the
            // arriving copy counts each packet once; libpcap 1.10 happens
            // to drop the leaving copy on `lo` already, but that is
            // internal behaviour, and this states what memtap relies on.
            cap.direction(pcap::Direction::In)
                .map_err(|e| map_open_error(iface, e))?;
        }
        if let Some(fo) = cfg.fanout {
            join_fanout(&cap, fo).map_err(|e| CaptureError::Os {
                iface: iface.to_string(),
                what: "joining fanout group",
                msg: e.to_string(),
            })?;
        }
        // Set after joining: libpcap filters in userland whatever blocks
        // the ring already holds when a filter is set, so nothing
        // unfiltered is delivered.
        if let Some(expr) = &cfg.filter {
            cap.filter(expr, true)
                .map_err(|e| CaptureError::BadFilter {
                    expr: expr.clone(),
                    msg: pcap_msg(e),
                })?;
        }
        Ok(PcapSource {
            cap,
            iface: iface.to_string(),
            linktype,
            frame_no: 0,
            last: pcap::Stat {
                received: 0,
                dropped: 0,
                if_dropped: 0,
            },
            totals: PcapStats::default(),
        })
    }

    /// LINKTYPE_* of the frames delivered.
    /// Replaces the filter (config reload).
    pub fn set_filter(&mut self, expr: &str) -> Result<(), CaptureError> {
        self.cap
            .filter(expr, true)
            .map_err(|e| CaptureError::BadFilter {
                expr: expr.to_string(),
                msg: pcap_msg(e),
            })
    }

    pub fn linktype(&self) -> u32 {
        self.linktype
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Waits up to `timeout` for packets and calls `f` for each one libpcap
    /// has ready (one buffer's worth). Returns the packets delivered (0 on
    /// timeout or signal).
    pub fn poll(
        &mut self,
        timeout: Duration,
        counters: &mut Counters,
        f: &mut dyn FnMut(&Frame<'_>),
    ) -> io::Result<usize> {
        let n = self.dispatch(counters, f)?;
        if n > 0 {
            return Ok(n);
        }
        let mut pfd = libc::pollfd {
            fd: self.cap.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            };
        }
        if rc == 0 {
            return Ok(0);
        }
        self.dispatch(counters, f)
    }

    fn dispatch(&mut self, c: &mut Counters, f: &mut dyn FnMut(&Frame<'_>)) -> io::Result<usize> {
        let linktype = self.linktype;
        let frame_no = &mut self.frame_no;
        let r = self.cap.dispatch(None, |p| {
            let h = p.header;
            // With nanosecond precision tv_usec carries nanoseconds.
            let sec = u64::try_from(h.ts.tv_sec).unwrap_or(0);
            let nsec = u64::try_from(h.ts.tv_usec).unwrap_or(0);
            *frame_no += 1;
            c.packets += 1;
            c.bytes += p.data.len() as u64;
            if (p.data.len() as u64) < u64::from(h.len) {
                c.snaplen_truncated += 1;
            }
            f(&Frame {
                ts: sec.saturating_mul(1_000_000_000).saturating_add(nsec),
                frame_no: *frame_no,
                linktype,
                wire_len: h.len,
                data: p.data,
            });
        });
        r.map_err(|e| {
            io::Error::other(format!(
                "capture on `{}` failed: {}",
                self.iface,
                pcap_msg(e)
            ))
        })
    }

    /// Adds libpcap's drops since the last call: `ps_drop` (ring full) to
    /// `counters.kernel_drops`, `ps_ifdrop` to `counters.if_drops`.
    pub fn update_stats(&mut self, counters: &mut Counters) {
        let Ok(s) = self.cap.stats() else { return };
        // 32-bit totals: the wrapping difference is right across a wrap.
        let recv = u64::from(s.received.wrapping_sub(self.last.received));
        let drop = u64::from(s.dropped.wrapping_sub(self.last.dropped));
        let ifdrop = u64::from(s.if_dropped.wrapping_sub(self.last.if_dropped));
        self.last = s;
        self.totals.received += recv;
        self.totals.dropped += drop;
        self.totals.if_dropped += ifdrop;
        counters.kernel_drops += drop;
        counters.if_drops += ifdrop;
    }

    /// Totals since open, as of the last [`Self::update_stats`].
    pub fn pcap_stats(&self) -> PcapStats {
        self.totals
    }
}

/// PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG on libpcap's socket, as
/// the AF_PACKET source does (see [`Fanout`]).
fn join_fanout(cap: &pcap::Capture<pcap::Active>, fo: Fanout) -> io::Result<()> {
    let arg: u32 =
        u32::from(fo.group) | ((libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG) << 16);
    // SAFETY: arg is a live u32 of the size passed; the descriptor is
    // libpcap's open packet socket.
    let rc = unsafe {
        libc::setsockopt(
            cap.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            (&arg as *const u32).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn is_loopback(iface: &str) -> bool {
    // ARPHRD_LOOPBACK, as sysfs reports it; `lo` by name if sysfs is absent.
    match std::fs::read_to_string(format!("/sys/class/net/{iface}/type")) {
        Ok(t) => t.trim() == "772",
        Err(_) => iface == "lo",
    }
}

fn pcap_msg(e: pcap::Error) -> String {
    match e {
        pcap::Error::PcapError(m) => m,
        other => other.to_string(),
    }
}

/// libpcap reports open failures as text only (the crate drops the status
/// code); these are its Linux wordings.
fn map_open_error(iface: &str, e: pcap::Error) -> CaptureError {
    let msg = pcap_msg(e);
    let lower = msg.to_ascii_lowercase();
    if lower.contains("permission") || lower.contains("operation not permitted") {
        CaptureError::PermissionDenied(iface.to_string())
    } else if lower.contains("no such device") {
        CaptureError::NoSuchInterface(iface.to_string())
    } else if lower.contains("not up") {
        CaptureError::InterfaceDown(iface.to_string())
    } else {
        CaptureError::Os {
            iface: iface.to_string(),
            what: "libpcap",
            msg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpcap_wordings_map_to_clear_errors() {
        let pe = |s: &str| pcap::Error::PcapError(s.to_string());
        let m = map_open_error("eth9", pe("socket: Operation not permitted")).to_string();
        assert!(m.contains("CAP_NET_RAW") && m.contains("`eth9`"), "{m}");
        let m = map_open_error(
            "eth9",
            pe("You don't have permission to perform this capture on that device"),
        )
        .to_string();
        assert!(m.contains("CAP_NET_RAW"), "{m}");
        let m = map_open_error("eth9", pe("No such device exists")).to_string();
        assert!(m.starts_with("no such network interface `eth9`"), "{m}");
        let m = map_open_error("eth9", pe("eth9: That device is not up")).to_string();
        assert!(m.contains("is down"), "{m}");
        let m = map_open_error("eth9", pe("something else")).to_string();
        assert!(m.contains("something else") && m.contains("`eth9`"), "{m}");
    }
}
