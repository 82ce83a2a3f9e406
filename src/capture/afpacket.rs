//! Live capture on Linux through an AF_PACKET socket with a TPACKET_V3
//! memory-mapped receive ring.
//!
//! Why V3: the kernel packs packets of any size back to back into large
//! blocks and hands a whole block over at once, so one wakeup delivers
//! hundreds of packets, a 64 KiB loopback super-segment costs 64 KiB and a
//! 60-byte ACK costs 60 bytes (V1/V2 give every packet a slot sized for the
//! largest). A block is handed over when it is full or when it has been
//! open `retire_ms` milliseconds, which bounds the latency on a quiet link.
//!
//! Ownership of a block is the `block_status` word of its descriptor: the
//! kernel sets `TP_STATUS_USER` when it hands the block over, we read every
//! packet in it and store `TP_STATUS_KERNEL` to give it back. Blocks are
//! used in ring order, so we only ever look at the next one.
//!
//! Everything the kernel writes into the ring is bounds-checked before use:
//! a bad offset ends that block (counted in `capture_errors`), never reads
//! outside the mapping.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::bpf::{self, BpfInsn};
use super::{CaptureError, Frame, LINKTYPE_ETHERNET};
use crate::stats::Counters;

/// Ring and socket settings for one AF_PACKET source.
#[derive(Debug, Clone)]
pub struct RingConfig {
    pub iface: String,
    /// Bytes per block: a multiple of the page size, larger than the
    /// biggest packet kept (snap length plus headers).
    pub block_size: usize,
    pub block_count: usize,
    /// TPACKET_V3 stores packets back to back whatever their size; the
    /// kernel only uses the frame size to check the request (frames per
    /// block), so it is no limit on packet size. A multiple of 16.
    pub frame_size: usize,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// Milliseconds after which the kernel hands over a block that is not
    /// full: the worst-case delivery delay on a quiet link.
    pub retire_ms: u32,
    pub fanout: Option<Fanout>,
    pub promisc: bool,
    /// Compiled filter (see [`bpf::compile_filter`]); `None` keeps every
    /// packet. Its accepting returns are capped at `snaplen`.
    pub filter: Option<Vec<BpfInsn>>,
}

impl RingConfig {
    /// Defaults for `iface`: 64 blocks of 1 MiB (64 MiB of ring), 10 ms
    /// block timeout, full 65535-byte snap length, no fanout, no filter,
    /// not promiscuous.
    pub fn new(iface: &str) -> RingConfig {
        RingConfig {
            iface: iface.to_string(),
            block_size: 1 << 20,
            block_count: 64,
            frame_size: 2048,
            snaplen: 65535,
            retire_ms: 10,
            fanout: None,
            promisc: false,
            filter: None,
        }
    }
}

/// Membership of a fanout group: the kernel spreads the interface's
/// packets over the sockets of the group by a direction-symmetric flow
/// hash (`PACKET_FANOUT_HASH`), after reassembling IPv4 fragments so they
/// hash with their flow (`PACKET_FANOUT_FLAG_DEFRAG`). Both directions of a
/// connection reach the same socket. Group ids are per network namespace;
/// all members must bind the same interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    pub group: u16,
}

/// Counts the kernel has reported for one source since it opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Packets that passed the filter (received plus dropped; on loopback
    /// both copies of each packet).
    pub packets: u64,
    /// Packets dropped because the ring was full.
    pub drops: u64,
    /// Times the ring was found full.
    pub freezes: u64,
}

/// The ring's mapping, shared by its source and the source's gauges.
struct RingMap {
    ptr: NonNull<u8>,
    len: usize,
    block_size: usize,
    block_count: usize,
    /// The block being read or next to read (the kernel fills them in
    /// ring order). Only the source moves it; gauges read it.
    next: AtomicUsize,
}

// The mapping is only read through atomics (status words) outside the
// source's own thread-confined reads of blocks it owns.
unsafe impl Send for RingMap {}
unsafe impl Sync for RingMap {}

impl RingMap {
    fn status_word(&self, block: usize) -> &AtomicU32 {
        // SAFETY: block < block_count, so the descriptor lies inside the
        // mapping; the offset is 4-aligned (blocks are page-aligned). The
        // kernel writes this word concurrently, hence the atomic view.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .add(block * self.block_size + BLK_STATUS)
                .cast::<AtomicU32>()
        }
    }

    fn block_ready(&self, block: usize) -> bool {
        self.status_word(block).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in open() with this length, and no
        // reference into it outlives the last owner. A socket closed
        // before this leaves the pages to the mapping until now.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// How full a ring is, read from elsewhere (a worker deciding whether it
/// may wait for a collector): the kernel fills blocks in ring order and
/// the reader gives them back in ring order, so the blocks handed over
/// and not yet given back are one run from the reader's block.
#[derive(Clone)]
pub struct RingGauge(Arc<RingMap>);

impl RingGauge {
    /// Whether fewer than half the ring's blocks wait to be read.
    pub fn under_half(&self) -> bool {
        let m = &*self.0;
        let at = m.next.load(Ordering::Relaxed);
        !m.block_ready((at + m.block_count / 2) % m.block_count)
    }

    /// Blocks handed over by the kernel and not yet given back.
    pub fn filled_blocks(&self) -> usize {
        let m = &*self.0;
        let at = m.next.load(Ordering::Relaxed);
        (0..m.block_count)
            .take_while(|i| m.block_ready((at + i) % m.block_count))
            .count()
    }
}

/// An open AF_PACKET TPACKET_V3 ring on one interface.
pub struct AfPacketSource {
    /// Before `fd`: fields drop in order, so the ring is unmapped (unless
    /// a gauge still holds it) before the socket closes.
    map: Arc<RingMap>,
    fd: OwnedFd,
    iface: String,
    loopback: bool,
    frame_no: u64,
    /// Frame with its VLAN tag put back (the kernel strips it into the
    /// packet header); allocated once at open.
    scratch: Vec<u8>,
    totals: KernelStats,
    /// The interface's index when opened: a different one (or none) under
    /// the same name means it was deleted (and perhaps made again), and
    /// this socket will never see another packet.
    ifindex: libc::c_int,
}

// Layout of the structures the kernel writes into the ring
// (include/uapi/linux/if_packet.h). Offsets are read by hand so that every
// access can be bounds-checked against the block.
/// `tpacket_block_desc`: version, offset_to_priv, then `tpacket_hdr_v1`.
const BLK_STATUS: usize = 8;
const BLK_NUM_PKTS: usize = 12;
const BLK_FIRST_PKT: usize = 16;
/// `tpacket3_hdr`.
const PKT_NEXT: usize = 0;
const PKT_SEC: usize = 4;
const PKT_NSEC: usize = 8;
const PKT_SNAPLEN: usize = 12;
const PKT_LEN: usize = 16;
const PKT_STATUS: usize = 20;
const PKT_MAC: usize = 24;
const PKT_VLAN_TCI: usize = 32;
const PKT_VLAN_TPID: usize = 36;
/// The `sockaddr_ll` follows the header at TPACKET_ALIGN(sizeof hdr) = 48;
/// `sll_pkttype` is its byte 10.
const PKT_SLL: usize = 48;
const SLL_PKTTYPE: usize = 10;
const PKT_HDR_MIN: usize = PKT_SLL + 20;
/// Header bytes in front of a packet's data in the worst case: block
/// descriptor (48), packet header and address (68), MAC alignment (16).
const RING_OVERHEAD: usize = 48 + PKT_HDR_MIN + 16 + 16;

const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();
/// asm-generic value (every architecture but mips, sparc and parisc);
/// libc exports it only for some targets.
const SO_ATTACH_FILTER: libc::c_int = 26;

impl AfPacketSource {
    /// Opens the socket and the ring, attaches the filter, joins the
    /// fanout group. Needs CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous
    /// mode).
    pub fn open(cfg: &RingConfig) -> Result<Self, CaptureError> {
        let iface = cfg.iface.as_str();
        let ifindex = ifindex(iface)?;
        check_ring(cfg)?;

        // Protocol 0: the socket receives nothing until bind() names a
        // protocol, so no packet is queued while it is being set up (a ring
        // socket has no other queue to drain).
        // SAFETY: plain syscall; the fd is owned right away.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(os_error(
                iface,
                "socket(AF_PACKET)",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let (flags, hatype) = iface_info(&fd, iface)?;
        if flags & libc::IFF_UP == 0 {
            return Err(CaptureError::InterfaceDown(iface.to_string()));
        }
        let loopback = match hatype {
            libc::ARPHRD_ETHER => false,
            libc::ARPHRD_LOOPBACK => true,
            other => {
                return Err(CaptureError::UnsupportedLinkType {
                    iface: iface.to_string(),
                    hatype: other,
                })
            }
        };

        // Drop everything until the socket is in its fanout group: packets
        // that arrive between bind() and PACKET_FANOUT reach this socket
        // alone and would be seen twice (here and at the member the hash
        // picks). The real filter replaces this one at the end, atomically.
        attach_filter(&fd, &bpf::drop_all())
            .map_err(|e| os_error(iface, "attaching the setup filter", e))?;

        setsockopt(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &(libc::tpacket_versions::TPACKET_V3 as libc::c_int),
        )
        .map_err(|e| os_error(iface, "PACKET_VERSION TPACKET_V3 (kernel too old?)", e))?;
        let req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size as u32,
            tp_block_nr: cfg.block_count as u32,
            tp_frame_size: cfg.frame_size as u32,
            tp_frame_nr: ((cfg.block_size / cfg.frame_size) * cfg.block_count) as u32,
            tp_retire_blk_tov: cfg.retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
            .map_err(|e| ring_error(cfg, e))?;

        let ring_len = cfg.block_size * cfg.block_count;
        // SAFETY: maps the ring the kernel just allocated for this socket;
        // unmapped when the source and its gauges are gone (`RingMap`).
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(ring_error(cfg, io::Error::last_os_error()));
        }
        let Some(ring) = NonNull::new(map.cast::<u8>()) else {
            return Err(ring_error(cfg, io::Error::other("mmap returned null")));
        };
        // From here on Drop unmaps and closes.
        let map = Arc::new(RingMap {
            ptr: ring,
            len: ring_len,
            block_size: cfg.block_size,
            block_count: cfg.block_count,
            next: AtomicUsize::new(0),
        });
        let mut src = AfPacketSource {
            map,
            fd,
            iface: iface.to_string(),
            loopback,
            frame_no: 0,
            scratch: vec![0; (cfg.snaplen as usize).min(cfg.block_size) + 4],
            totals: KernelStats::default(),
            ifindex,
        };

        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL_BE;
        sll.sll_ifindex = ifindex;
        // SAFETY: sll is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                src.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ENODEV) => CaptureError::NoSuchInterface(iface.to_string()),
                Some(libc::ENETDOWN) => CaptureError::InterfaceDown(iface.to_string()),
                _ => os_error(iface, "bind", e),
            });
        }

        if cfg.promisc {
            // Kernel-counted membership: dropped automatically when the
            // socket closes, even if memtap is killed.
            let mreq = libc::packet_mreq {
                mr_ifindex: ifindex,
                mr_type: libc::PACKET_MR_PROMISC as u16,
                mr_alen: 0,
                mr_address: [0; 8],
            };
            setsockopt(
                &src.fd,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &mreq,
            )
            .map_err(|e| perm_or(iface, "promiscuous mode", e))?;
        }

        if let Some(fo) = cfg.fanout {
            let arg: u32 = u32::from(fo.group)
                | ((libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG) << 16);
            setsockopt(&src.fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg).map_err(|e| {
                let why = if e.raw_os_error() == Some(libc::EINVAL) {
                    "joining fanout group (a group with this id exists with other settings or on another interface)"
                } else {
                    "joining fanout group"
                };
                os_error(iface, why, e)
            })?;
        }

        // The real filter. The kernel cuts each packet to the filter's
        // return value, so that is where the snap length is applied: a
        // program's constant returns are capped at it, and without a
        // program one that returns it is installed.
        let prog = match &cfg.filter {
            Some(p) => bpf::cap_returns(p, cfg.snaplen),
            None => bpf::accept_all(cfg.snaplen),
        };
        let prog = prog.as_slice();
        attach_filter(&src.fd, prog).map_err(|e| os_error(iface, "attaching the filter", e))?;

        // Blocks the kernel filled before the real filter was attached hold
        // nothing (the setup filter dropped all); starting from block 0 is
        // right because the kernel starts there too.
        src.update_totals();
        src.totals = KernelStats::default();
        Ok(src)
    }

    /// Whether the interface this socket is bound to is gone: no interface
    /// by its name now, or one with another index (deleted and made
    /// again). A bound AF_PACKET socket reports the deletion once
    /// (ENETDOWN) and is silent after that, so the caller asks.
    pub fn interface_gone(&self) -> bool {
        ifindex(&self.iface).map_or(true, |i| i != self.ifindex)
    }

    /// LINKTYPE_* of the frames delivered (always Ethernet).
    pub fn linktype(&self) -> u32 {
        LINKTYPE_ETHERNET
    }

    /// The interface captured on.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// Waits up to `timeout` for the next ready block and calls `f` for
    /// every packet in it (and any further ready blocks, at most one lap of
    /// the ring), returning the blocks to the kernel afterwards. Returns
    /// the packets delivered (0 on timeout or signal). Allocates nothing.
    ///
    /// An error means the socket failed: the interface went down or was
    /// removed (`ENETDOWN`, `ENXIO`).
    pub fn poll(
        &mut self,
        timeout: Duration,
        counters: &mut Counters,
        f: &mut dyn FnMut(&Frame<'_>),
    ) -> io::Result<usize> {
        let mut cur = self.map.next.load(Ordering::Relaxed);
        if !self.block_ready(cur) {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            // Round up so a sub-millisecond timeout still waits a little
            // instead of spinning.
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
            if pfd.revents & libc::POLLERR != 0 {
                if let Some(e) = self.take_socket_error() {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("capture on `{}` failed: {e}", self.iface),
                    ));
                }
            }
        }
        let mut delivered = 0;
        let count = self.map.block_count;
        for _ in 0..count {
            if !self.block_ready(cur) {
                break;
            }
            delivered += self.read_block(cur, counters, f);
            self.release_block(cur);
            cur = (cur + 1) % count;
            self.map.next.store(cur, Ordering::Relaxed);
        }
        Ok(delivered)
    }

    /// Adds what the kernel counted since the last call to
    /// `counters.kernel_drops` and `counters.ring_freezes` (reading
    /// PACKET_STATISTICS resets the kernel's numbers).
    pub fn update_stats(&mut self, counters: &mut Counters) {
        let d = self.update_totals();
        counters.kernel_drops += d.drops;
        counters.ring_freezes += d.freezes;
    }

    /// Replaces the kernel filter (config reload). The new program applies
    /// to packets queued from now on; blocks already in the ring passed
    /// the old one.
    pub fn set_filter(&mut self, prog: &[BpfInsn]) -> Result<(), CaptureError> {
        attach_filter(&self.fd, prog).map_err(|e| os_error(&self.iface, "attach filter", e))
    }

    /// Totals since open, as of the last [`Self::update_stats`].
    pub fn kernel_stats(&self) -> KernelStats {
        self.totals
    }

    fn update_totals(&mut self) -> KernelStats {
        // SAFETY: plain data; all-zero is valid.
        let mut st: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: st and len describe a valid buffer.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return KernelStats::default();
        }
        // The kernel's tp_packets already includes the drops.
        let d = KernelStats {
            packets: u64::from(st.tp_packets),
            drops: u64::from(st.tp_drops),
            freezes: u64::from(st.tp_freeze_q_cnt),
        };
        self.totals.packets += d.packets;
        self.totals.drops += d.drops;
        self.totals.freezes += d.freezes;
        d
    }

    fn take_socket_error(&self) -> Option<io::Error> {
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: err and len describe a valid buffer.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0 && err != 0).then(|| io::Error::from_raw_os_error(err))
    }

    /// A gauge of this ring's fill, for another part of the same thread
    /// (or another thread); it keeps the mapping alive.
    pub fn gauge(&self) -> RingGauge {
        RingGauge(self.map.clone())
    }

    fn status_word(&self, block: usize) -> &AtomicU32 {
        self.map.status_word(block)
    }

    fn block_ready(&self, block: usize) -> bool {
        self.map.block_ready(block)
    }

    fn release_block(&self, block: usize) {
        // Release: our reads of the block happen before the kernel may
        // reuse it.
        self.status_word(block)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }

    /// Delivers the packets of a block we own.
    fn read_block(
        &mut self,
        block: usize,
        c: &mut Counters,
        f: &mut dyn FnMut(&Frame<'_>),
    ) -> usize {
        fence(Ordering::Acquire);
        // SAFETY: the block lies inside the mapping, and the kernel does
        // not write to it while its status says TP_STATUS_USER (until we
        // hand it back after this function).
        let blk: &[u8] = unsafe {
            std::slice::from_raw_parts(
                self.map.ptr.as_ptr().add(block * self.map.block_size),
                self.map.block_size,
            )
        };
        let num = rd32(blk, BLK_NUM_PKTS).unwrap_or(0);
        let mut off = rd32(blk, BLK_FIRST_PKT).unwrap_or(0) as usize;
        let mut delivered = 0;
        for i in 0..num {
            let Some(p) = parse_packet(blk, off) else {
                c.capture_errors += 1;
                break;
            };
            if self.loopback && p.pkttype == libc::PACKET_OUTGOING {
                // On loopback every packet is seen leaving and arriving.
                c.loopback_duplicates += 1;
            } else {
                let data = &blk[p.data.clone()];
                let mut wire_len = p.wire_len;
                let data = match p.vlan {
                    Some((tpid, tci)) => match reinsert_vlan(&mut self.scratch, data, tpid, tci) {
                        Some(n) => {
                            wire_len = wire_len.saturating_add(4);
                            &self.scratch[..n]
                        }
                        None => data,
                    },
                    None => data,
                };
                self.frame_no += 1;
                c.packets += 1;
                c.bytes += data.len() as u64;
                if (data.len() as u64) < u64::from(wire_len) {
                    c.snaplen_truncated += 1;
                }
                f(&Frame {
                    ts: p.ts,
                    frame_no: self.frame_no,
                    linktype: LINKTYPE_ETHERNET,
                    wire_len,
                    data,
                });
                delivered += 1;
            }
            if i + 1 < num {
                if p.next == 0 {
                    c.capture_errors += 1;
                    break;
                }
                off = match off.checked_add(p.next as usize) {
                    Some(o) => o,
                    None => break,
                };
            }
        }
        delivered
    }
}

struct PacketInfo {
    next: u32,
    ts: u64,
    wire_len: u32,
    pkttype: u8,
    data: std::ops::Range<usize>,
    /// (TPID, TCI) of a tag the kernel took off the frame.
    vlan: Option<(u16, u16)>,
}

/// Reads the packet header at `off` in a block; `None` if anything points
/// outside the block.
fn parse_packet(blk: &[u8], off: usize) -> Option<PacketInfo> {
    let hdr = blk.get(off..off.checked_add(PKT_HDR_MIN)?)?;
    let next = rd32(hdr, PKT_NEXT)?;
    let sec = rd32(hdr, PKT_SEC)?;
    let nsec = rd32(hdr, PKT_NSEC)?;
    let snaplen = rd32(hdr, PKT_SNAPLEN)? as usize;
    let wire_len = rd32(hdr, PKT_LEN)?;
    let status = rd32(hdr, PKT_STATUS)?;
    let mac = rd16(hdr, PKT_MAC)? as usize;
    let pkttype = *hdr.get(PKT_SLL + SLL_PKTTYPE)?;
    let start = off.checked_add(mac)?;
    let end = start.checked_add(snaplen)?;
    if end > blk.len() {
        return None;
    }
    let vlan = if status & libc::TP_STATUS_VLAN_VALID != 0 {
        let tci = rd32(hdr, PKT_VLAN_TCI)? as u16;
        let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
            rd16(hdr, PKT_VLAN_TPID)?
        } else {
            0x8100
        };
        Some((tpid, tci))
    } else {
        None
    };
    Some(PacketInfo {
        next,
        ts: u64::from(sec) * 1_000_000_000 + u64::from(nsec),
        wire_len,
        pkttype,
        data: start..end,
        vlan,
    })
}

/// Puts an 802.1Q tag the NIC or kernel took off back after the MAC
/// addresses (as libpcap does), so decoding sees the frame as it was on the
/// wire. Returns the new length, or `None` if the frame is too short or the
/// scratch buffer too small (the frame then goes out untagged).
fn reinsert_vlan(scratch: &mut [u8], data: &[u8], tpid: u16, tci: u16) -> Option<usize> {
    let n = data.len().checked_add(4)?;
    if data.len() < 12 || n > scratch.len() {
        return None;
    }
    scratch[..12].copy_from_slice(&data[..12]);
    scratch[12..14].copy_from_slice(&tpid.to_be_bytes());
    scratch[14..16].copy_from_slice(&tci.to_be_bytes());
    scratch[16..n].copy_from_slice(&data[12..]);
    Some(n)
}

fn rd32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

fn rd16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([s[0], s[1]]))
}

/// Checks the sizes before asking the kernel, whose only answer is EINVAL.
fn check_ring(cfg: &RingConfig) -> Result<(), CaptureError> {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .unwrap_or(4096)
        .max(1);
    let err = |reason: String| CaptureError::Ring {
        iface: cfg.iface.clone(),
        block_size: cfg.block_size,
        block_count: cfg.block_count,
        reason,
    };
    if cfg.block_count == 0 || cfg.block_size == 0 {
        return Err(err(
            "the ring needs at least one block of nonzero size".into()
        ));
    }
    if cfg.block_size % page != 0 {
        return Err(err(format!(
            "the block size must be a multiple of the page size ({page})"
        )));
    }
    if cfg.frame_size < PKT_HDR_MIN || cfg.frame_size % 16 != 0 || cfg.frame_size > cfg.block_size {
        return Err(err(format!(
            "the frame size {} must be a multiple of 16 between {} and the block size",
            cfg.frame_size,
            PKT_HDR_MIN.next_multiple_of(16)
        )));
    }
    if cfg.snaplen == 0 {
        return Err(err("the snap length must be at least 1".into()));
    }
    let need = (cfg.snaplen as usize).saturating_add(RING_OVERHEAD);
    if cfg.block_size < need {
        return Err(err(format!(
            "a block must hold one {}-byte packet plus headers ({need} bytes); use larger blocks or a smaller snap length",
            cfg.snaplen
        )));
    }
    let total = cfg.block_size.checked_mul(cfg.block_count);
    let frames = (cfg.block_size / cfg.frame_size).checked_mul(cfg.block_count);
    if total.is_none_or(|t| t > u32::MAX as usize)
        || frames.is_none_or(|n| n > u32::MAX as usize)
        || cfg.block_size > u32::MAX as usize
    {
        return Err(err("the ring is too large".into()));
    }
    Ok(())
}

/// `NoSuchInterface` unless the kernel knows an interface by this name
/// (needs no privilege, so a typo is reported as a typo).
pub(crate) fn check_iface_exists(iface: &str) -> Result<(), CaptureError> {
    ifindex(iface).map(|_| ())
}

/// No interface by this name now (it was deleted).
pub fn interface_missing(iface: &str) -> bool {
    ifindex(iface).is_err()
}

fn ifindex(iface: &str) -> Result<libc::c_int, CaptureError> {
    let no_such = || CaptureError::NoSuchInterface(iface.to_string());
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(no_such());
    }
    let name = std::ffi::CString::new(iface).map_err(|_| no_such())?;
    // SAFETY: a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        return Err(no_such());
    }
    libc::c_int::try_from(idx).map_err(|_| no_such())
}

/// Interface flags and hardware (ARPHRD_*) type.
fn iface_info(fd: &OwnedFd, iface: &str) -> Result<(libc::c_int, u16), CaptureError> {
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    let ioctl = |req: &mut libc::ifreq, op: libc::c_ulong, what: &'static str| {
        // SAFETY: req is a valid ifreq with a NUL-terminated name (the
        // name is shorter than IFNAMSIZ, checked in ifindex()).
        if unsafe { libc::ioctl(fd.as_raw_fd(), op as _, req as *mut libc::ifreq) } != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::ENODEV) {
                CaptureError::NoSuchInterface(iface.to_string())
            } else {
                os_error(iface, what, e)
            });
        }
        Ok(())
    };
    ioctl(&mut req, libc::SIOCGIFFLAGS, "reading the interface flags")?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = libc::c_int::from(unsafe { req.ifr_ifru.ifru_flags }) & 0xffff;
    ioctl(&mut req, libc::SIOCGIFHWADDR, "reading the interface type")?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let hatype = unsafe { req.ifr_ifru.ifru_hwaddr.sa_family };
    Ok((flags, hatype))
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: val points to a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn attach_filter(fd: &OwnedFd, prog: &[BpfInsn]) -> io::Result<()> {
    if prog.is_empty() || prog.len() > u16::MAX as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "filter program length out of range",
        ));
    }
    // BpfInsn has sock_filter's layout (repr(C), same field types), so the
    // slice can be handed over as is.
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut().cast::<libc::sock_filter>(),
    };
    setsockopt(fd, libc::SOL_SOCKET, SO_ATTACH_FILTER, &fprog)
}

fn os_error(iface: &str, what: &'static str, e: io::Error) -> CaptureError {
    perm_or(iface, what, e)
}

/// EPERM/EACCES become the CAP_NET_RAW message; anything else names the
/// step that failed.
fn perm_or(iface: &str, what: &'static str, e: io::Error) -> CaptureError {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => CaptureError::PermissionDenied(iface.to_string()),
        _ => CaptureError::Os {
            iface: iface.to_string(),
            what,
            msg: e.to_string(),
        },
    }
}

fn ring_error(cfg: &RingConfig, e: io::Error) -> CaptureError {
    if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
        return CaptureError::PermissionDenied(cfg.iface.clone());
    }
    CaptureError::Ring {
        iface: cfg.iface.clone(),
        block_size: cfg.block_size,
        block_count: cfg.block_count,
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_can_move_to_capture_threads() {
        fn send<T: Send>() {}
        send::<AfPacketSource>();
        send::<crate::capture::live_pcap::PcapSource>();
    }

    #[test]
    fn bpf_insn_has_sock_filter_layout() {
        assert_eq!(
            std::mem::size_of::<BpfInsn>(),
            std::mem::size_of::<libc::sock_filter>()
        );
        assert_eq!(
            std::mem::align_of::<BpfInsn>(),
            std::mem::align_of::<libc::sock_filter>()
        );
    }

    #[test]
    fn ring_sizes_are_checked_before_the_kernel() {
        let mut c = RingConfig::new("lo");
        assert!(check_ring(&c).is_ok());
        c.block_size = 1000;
        let e = check_ring(&c).unwrap_err().to_string();
        assert!(
            e.contains("64 blocks x 1000 bytes") && e.contains("page size"),
            "{e}"
        );
        c = RingConfig::new("lo");
        c.block_size = 64 << 10;
        let e = check_ring(&c).unwrap_err().to_string();
        assert!(e.contains("65535-byte packet"), "{e}");
        c.snaplen = 1500;
        assert!(check_ring(&c).is_ok());
        c.frame_size = 100;
        assert!(check_ring(&c).is_err());
    }

    #[test]
    fn no_such_interface_is_named() {
        let e = ifindex("memtap-nope0").unwrap_err().to_string();
        assert!(e.contains("`memtap-nope0`"), "{e}");
        assert!(ifindex("").is_err());
        assert!(ifindex("a-name-longer-than-ifnamsiz").is_err());
    }

    /// A block as the kernel would write it, with one packet header.
    fn block_with(mac: u16, snaplen: u32, len: u32, next: u32) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[BLK_NUM_PKTS..BLK_NUM_PKTS + 4].copy_from_slice(&1u32.to_ne_bytes());
        b[BLK_FIRST_PKT..BLK_FIRST_PKT + 4].copy_from_slice(&48u32.to_ne_bytes());
        let o = 48;
        b[o + PKT_NEXT..o + PKT_NEXT + 4].copy_from_slice(&next.to_ne_bytes());
        b[o + PKT_SEC..o + PKT_SEC + 4].copy_from_slice(&7u32.to_ne_bytes());
        b[o + PKT_NSEC..o + PKT_NSEC + 4].copy_from_slice(&9u32.to_ne_bytes());
        b[o + PKT_SNAPLEN..o + PKT_SNAPLEN + 4].copy_from_slice(&snaplen.to_ne_bytes());
        b[o + PKT_LEN..o + PKT_LEN + 4].copy_from_slice(&len.to_ne_bytes());
        b[o + PKT_MAC..o + PKT_MAC + 2].copy_from_slice(&mac.to_ne_bytes());
        b
    }

    #[test]
    fn packet_headers_are_bounds_checked() {
        let b = block_with(82, 100, 120, 0);
        let p = parse_packet(&b, 48).unwrap();
        assert_eq!(p.ts, 7_000_000_009);
        assert_eq!(p.data, 130..230);
        assert_eq!(p.wire_len, 120);
        assert!(p.vlan.is_none());
        // Data running past the block, a header past the end, huge offsets.
        assert!(parse_packet(&block_with(82, 5000, 5000, 0), 48).is_none());
        assert!(parse_packet(&block_with(u16::MAX, u32::MAX, 1, 0), 48).is_none());
        assert!(parse_packet(&b, 4090).is_none());
        assert!(parse_packet(&b, usize::MAX - 3).is_none());
    }

    #[test]
    fn vlan_tag_goes_back_after_the_macs() {
        let mut s = [0u8; 64];
        let data: Vec<u8> = (0u8..20).collect();
        let n = reinsert_vlan(&mut s, &data, 0x8100, 0x0123).unwrap();
        assert_eq!(n, 24);
        assert_eq!(&s[..12], &data[..12]);
        assert_eq!(&s[12..16], &[0x81, 0x00, 0x01, 0x23]);
        assert_eq!(&s[16..24], &data[12..]);
        assert!(reinsert_vlan(&mut s, &data[..11], 0x8100, 1).is_none());
        assert!(reinsert_vlan(&mut s[..10], &data, 0x8100, 1).is_none());
    }
}
