//! Link layers: strip whatever precedes the IP header.
//!
//! Handled: Ethernet (1), Linux cooked SLL (113) and SLL2 (276), raw IP
//! (101, 12, 14; 228 IPv4 only, 229 IPv6 only) and BSD NULL/LOOP (0, 108).
//! 802.1Q / 802.1ad / 0x9100 tags are skipped at any depth up to
//! [`MAX_VLAN_TAGS`], after Ethernet and after the cooked headers (libpcap
//! puts the tag back after the SLL header).

/// pcap LINKTYPE_* values.
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    /// DLT_RAW on some BSDs.
    pub const RAW_BSD12: u32 = 12;
    /// DLT_RAW on other BSDs.
    pub const RAW_BSD14: u32 = 14;
    pub const RAW: u32 = 101;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;
}

/// EtherType values used here.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const VLAN_9100: u16 = 0x9100;
}

/// Deepest stack of VLAN tags followed; a deeper one is malformed.
pub const MAX_VLAN_TAGS: usize = 8;

/// What follows the link header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3<'a> {
    /// The link layer says IPv4.
    Ipv4(&'a [u8]),
    /// The link layer says IPv6.
    Ipv6(&'a [u8]),
    /// Not IP: an EtherType, or a BSD address family (ARP, LLDP, ...).
    Other(u32),
}

/// Why no network layer came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// The link header is cut short or malformed.
    Malformed,
    /// A link type memtap does not decode.
    Unsupported(u32),
}

/// Strips the link header (and VLAN tags) of a frame of the given link type.
pub fn network_layer(linktype: u32, data: &[u8]) -> Result<L3<'_>, LinkError> {
    use linktype::*;
    match linktype {
        ETHERNET => {
            if data.len() < 14 {
                return Err(LinkError::Malformed);
            }
            let et = be16(data, 12);
            if et <= 1500 {
                // 802.3 length field: LLC/SNAP frame, not IP for us.
                return Ok(L3::Other(u32::from(et)));
            }
            by_ethertype(et, &data[14..])
        }
        LINUX_SLL => {
            if data.len() < 16 {
                return Err(LinkError::Malformed);
            }
            by_ethertype(be16(data, 14), &data[16..])
        }
        LINUX_SLL2 => {
            if data.len() < 20 {
                return Err(LinkError::Malformed);
            }
            by_ethertype(be16(data, 0), &data[20..])
        }
        RAW | RAW_BSD12 | RAW_BSD14 => by_version(data),
        IPV4 => Ok(L3::Ipv4(data)),
        IPV6 => Ok(L3::Ipv6(data)),
        NULL | LOOP => {
            if data.len() < 4 {
                return Err(LinkError::Malformed);
            }
            let raw = [data[0], data[1], data[2], data[3]];
            // Host byte order of the capturing machine (LOOP: network
            // order): whichever reading gives a small number is the family.
            let be = u32::from_be_bytes(raw);
            let le = u32::from_le_bytes(raw);
            let family = if linktype == LOOP && be <= 0xffff {
                be
            } else {
                be.min(le)
            };
            let rest = &data[4..];
            match family {
                2 => Ok(L3::Ipv4(rest)),
                // AF_INET6 on BSD (24), FreeBSD/DragonFly (28), macOS (30);
                // 10 is Linux's.
                10 | 24 | 28 | 30 => Ok(L3::Ipv6(rest)),
                f => Ok(L3::Other(f)),
            }
        }
        other => Err(LinkError::Unsupported(other)),
    }
}

/// Skips VLAN tags, then maps the EtherType.
fn by_ethertype(mut et: u16, mut rest: &[u8]) -> Result<L3<'_>, LinkError> {
    let mut tags = 0;
    while matches!(et, ethertype::VLAN | ethertype::QINQ | ethertype::VLAN_9100) {
        tags += 1;
        if tags > MAX_VLAN_TAGS || rest.len() < 4 {
            return Err(LinkError::Malformed);
        }
        et = be16(rest, 2);
        rest = &rest[4..];
    }
    Ok(match et {
        ethertype::IPV4 => L3::Ipv4(rest),
        ethertype::IPV6 => L3::Ipv6(rest),
        other => L3::Other(u32::from(other)),
    })
}

/// Raw IP: the version nibble decides.
fn by_version(data: &[u8]) -> Result<L3<'_>, LinkError> {
    match data.first().map(|b| b >> 4) {
        Some(4) => Ok(L3::Ipv4(data)),
        Some(6) => Ok(L3::Ipv6(data)),
        _ => Err(LinkError::Malformed),
    }
}

#[inline]
fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_and_tags() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[
            0x81, 0x00, 0x00, 0x05, 0x88, 0xa8, 0x00, 0x06, 0x91, 0x00, 0x00, 0x07, 0x08, 0x00,
        ]);
        f.extend_from_slice(&[0x45, 0, 0, 20]);
        assert_eq!(network_layer(1, &f), Ok(L3::Ipv4(&[0x45, 0, 0, 20][..])));
        // Nine tags: too deep.
        let mut g = vec![0u8; 12];
        for _ in 0..9 {
            g.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
        }
        g.extend_from_slice(&[0x08, 0x00, 0x45]);
        assert_eq!(network_layer(1, &g), Err(LinkError::Malformed));
        // Eight is fine.
        let mut h = vec![0u8; 12];
        for _ in 0..8 {
            h.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
        }
        h.extend_from_slice(&[0x86, 0xdd, 0x60]);
        assert_eq!(network_layer(1, &h), Ok(L3::Ipv6(&[0x60][..])));
        // ARP and 802.3.
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06, 1, 2]);
        assert_eq!(network_layer(1, &arp), Ok(L3::Other(0x0806)));
        let mut llc = vec![0u8; 12];
        llc.extend_from_slice(&[0x00, 0x40, 0xaa]);
        assert_eq!(network_layer(1, &llc), Ok(L3::Other(0x40)));
        // Cut inside a tag.
        assert_eq!(network_layer(1, &f[..16]), Err(LinkError::Malformed));
    }

    #[test]
    fn null_either_byte_order() {
        assert_eq!(
            network_layer(0, &[2, 0, 0, 0, 0x45]),
            Ok(L3::Ipv4(&[0x45][..]))
        );
        assert_eq!(
            network_layer(0, &[0, 0, 0, 2, 0x45]),
            Ok(L3::Ipv4(&[0x45][..]))
        );
        assert_eq!(
            network_layer(0, &[30, 0, 0, 0, 0x60]),
            Ok(L3::Ipv6(&[0x60][..]))
        );
        assert_eq!(
            network_layer(108, &[0, 0, 0, 24, 0x60]),
            Ok(L3::Ipv6(&[0x60][..]))
        );
        assert_eq!(network_layer(108, &[0, 0, 0, 28]), Ok(L3::Ipv6(&[][..])));
        assert_eq!(network_layer(0, &[7, 0, 0, 0]), Ok(L3::Other(7)));
        assert_eq!(network_layer(0, &[2, 0, 0]), Err(LinkError::Malformed));
    }

    #[test]
    fn raw_and_unsupported() {
        assert_eq!(network_layer(101, &[0x45, 1]), Ok(L3::Ipv4(&[0x45, 1][..])));
        assert_eq!(network_layer(12, &[0x60]), Ok(L3::Ipv6(&[0x60][..])));
        assert_eq!(network_layer(14, &[0x60]), Ok(L3::Ipv6(&[0x60][..])));
        assert_eq!(network_layer(101, &[0x15]), Err(LinkError::Malformed));
        assert_eq!(network_layer(101, &[]), Err(LinkError::Malformed));
        assert_eq!(network_layer(228, &[1]), Ok(L3::Ipv4(&[1][..])));
        assert_eq!(network_layer(229, &[1]), Ok(L3::Ipv6(&[1][..])));
        assert_eq!(network_layer(127, &[1]), Err(LinkError::Unsupported(127)));
    }

    #[test]
    fn cooked() {
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x86, 0xdd, 0x60]);
        assert_eq!(network_layer(113, &sll), Ok(L3::Ipv6(&[0x60][..])));
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.push(0x45);
        assert_eq!(network_layer(276, &sll2), Ok(L3::Ipv4(&[0x45][..])));
        assert_eq!(network_layer(276, &sll2[..19]), Err(LinkError::Malformed));
        assert_eq!(network_layer(113, &sll[..15]), Err(LinkError::Malformed));
    }
}
