//! The watched memcached servers. Traffic to a target is a request; traffic
//! from it is a response; anything else is counted as `not_target`.

use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One `HOST[:PORT]` target: HOST is an address, a CIDR block or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `None` means any host (`*`).
    pub net: Option<IpNet>,
    pub port: u16,
}

pub const DEFAULT_PORT: u16 = 11211;

/// libpcap: an IPv4 packet whose fragment offset is not zero.
const NON_FIRST_FRAGMENT: &str = "ip[6:2] & 0x1fff != 0";

impl FromStr for Target {
    type Err = String;

    /// Accepts `*`, `*:11211`, `10.0.0.5`, `10.0.0.0/24:11212`, `[::1]:11211`,
    /// `::1`, `[fd00::/64]:11211`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty target".into());
        }
        let (host, port) = split_host_port(s)?;
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("bad port {p:?} in target {s:?} (expected 1-65535)"))?,
        };
        let net = if host == "*" {
            None
        } else if host.contains('/') {
            Some(
                host.parse::<IpNet>()
                    .map_err(|_| format!("bad CIDR block {host:?} in target {s:?}"))?
                    .trunc(),
            )
        } else {
            let ip: IpAddr = host
                .parse()
                .map_err(|_| format!("bad address {host:?} in target {s:?} (expected an IP address, a CIDR block or *)"))?;
            Some(IpNet::from(ip))
        };
        Ok(Target { net, port })
    }
}

fn split_host_port(s: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| format!("missing ']' in target {s:?}"))?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(p))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected {after:?} after ']' in target {s:?}")),
        };
    }
    // More than one ':' without brackets: a bare IPv6 address (no port).
    if s.matches(':').count() > 1 {
        return Ok((s, None));
    }
    match s.split_once(':') {
        Some((h, p)) => Ok((h, Some(p))),
        None => Ok((s, None)),
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.net {
            None => write!(f, "*:{}", self.port),
            Some(IpNet::V6(n)) => write!(f, "[{n}]:{}", self.port),
            Some(n) => write!(f, "{n}:{}", self.port),
        }
    }
}

impl Target {
    pub fn matches(&self, ip: IpAddr, port: u16) -> bool {
        port == self.port && self.net.is_none_or(|n| n.contains(&ip))
    }

    /// This target as one parenthesised libpcap filter term.
    ///
    /// A non-first IPv4 fragment carries no transport header, so libpcap's
    /// `port` never matches it; IPv4 terms also admit those fragments of the
    /// target's addresses, or decode could not reassemble the datagram.
    /// IPv6 fragments are not reassembled by memtap, so IPv6 terms do not.
    fn bpf_term(&self) -> String {
        let p = self.port;
        match &self.net {
            None => format!("(port {p} or {NON_FIRST_FRAGMENT})"),
            Some(IpNet::V4(n)) if n.prefix_len() == n.max_prefix_len() => {
                format!("(host {} and (port {p} or {NON_FIRST_FRAGMENT}))", n.addr())
            }
            Some(IpNet::V4(n)) => format!("(net {n} and (port {p} or {NON_FIRST_FRAGMENT}))"),
            Some(IpNet::V6(n)) if n.prefix_len() == n.max_prefix_len() => {
                format!("(host {} and port {p})", n.addr())
            }
            Some(IpNet::V6(n)) => format!("(net {n} and port {p})"),
        }
    }
}

/// `base` (terms for untagged frames) narrowed by a user's `extra`
/// expression (none when blank), untagged or behind one VLAN tag. The
/// narrowing goes inside each alternative: after the `vlan` keyword every
/// offset is a tagged frame's, so `(… or (vlan and …)) and (extra)` would
/// test untagged frames at the wrong offsets and keep none of them.
pub fn bpf_narrowed(base: &str, extra: &str) -> String {
    let b = if extra.trim().is_empty() {
        base.to_string()
    } else {
        format!("({base}) and ({extra})")
    };
    format!("{b} or (vlan and ({b}))")
}

/// Which way a packet goes relative to the watched servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Destination is a target: a request.
    ToServer,
    /// Source is a target: a response.
    FromServer,
}

/// Single hosts up to this many are scanned with the blocks; beyond, they
/// are looked up in a set (servers found without `--target` can be many).
const SCANNED_HOSTS: usize = 8;

/// A scanned target as two integer compares: checked on every packet,
/// where `IpNet::contains` rebuilt the block's bounds from its prefix
/// each time (about 140 instructions a packet for one target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scan {
    port: u16,
    net: ScanNet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanNet {
    Any,
    V4 { addr: u32, mask: u32 },
    V6 { addr: u128, mask: u128 },
}

impl Scan {
    fn of(t: &Target) -> Scan {
        let net = match t.net {
            None => ScanNet::Any,
            Some(IpNet::V4(n)) => ScanNet::V4 {
                addr: u32::from(n.network()),
                mask: u32::from(n.netmask()),
            },
            Some(IpNet::V6(n)) => ScanNet::V6 {
                addr: u128::from(n.network()),
                mask: u128::from(n.netmask()),
            },
        };
        Scan { port: t.port, net }
    }

    #[inline]
    fn matches(&self, ip: IpAddr, port: u16) -> bool {
        port == self.port
            && match (self.net, ip) {
                (ScanNet::Any, _) => true,
                (ScanNet::V4 { addr, mask }, IpAddr::V4(a)) => u32::from(a) & mask == addr,
                (ScanNet::V6 { addr, mask }, IpAddr::V6(a)) => u128::from(a) & mask == addr,
                _ => false,
            }
    }
}

/// The set of targets: a short list scanned linearly (fleets name a few
/// pools or CIDR blocks), and many single hosts in a hash set.
#[derive(Debug, Clone)]
pub struct Targets {
    list: Vec<Target>,
    /// What `classify` scans: blocks, `*`, and the hosts when they are few.
    scan: Vec<Scan>,
    /// The single hosts when there are more than `SCANNED_HOSTS`.
    hosts: hashbrown::HashSet<(IpAddr, u16)>,
}

impl Default for Targets {
    fn default() -> Self {
        Targets::new(Vec::new())
    }
}

impl Targets {
    pub fn new(list: Vec<Target>) -> Targets {
        let list = if list.is_empty() {
            vec![Target {
                net: None,
                port: DEFAULT_PORT,
            }]
        } else {
            list
        };
        let host = |t: &Target| match t.net {
            Some(n) if n.prefix_len() == n.max_prefix_len() => Some((n.addr(), t.port)),
            _ => None,
        };
        let many = list.iter().filter(|t| host(t).is_some()).count() > SCANNED_HOSTS;
        let mut scan = Vec::new();
        let mut hosts = hashbrown::HashSet::new();
        for t in &list {
            match host(t) {
                Some(h) if many => {
                    hosts.insert(h);
                }
                _ => scan.push(Scan::of(t)),
            }
        }
        Targets { list, scan, hosts }
    }

    pub fn list(&self) -> &[Target] {
        &self.list
    }

    /// The libpcap filter expression that keeps the targets' traffic (TCP
    /// and UDP on their ports, plus IPv4 fragments of their hosts), also
    /// behind one 802.1Q/802.1ad tag.
    ///
    /// libpcap's `and` and `or` have equal precedence and associate left
    /// to right, so every term is parenthesised. The `vlan` keyword shifts
    /// the offsets of everything after it in the expression (pcap-filter(7)),
    /// so the tagged alternative comes last and repeats the terms. Where the
    /// kernel has already taken the tag off (AF_PACKET on Linux), the
    /// untagged terms match.
    pub fn bpf_expr(&self) -> String {
        bpf_narrowed(&self.bpf_terms(), "")
    }

    /// The targets' terms for untagged frames.
    pub fn bpf_terms(&self) -> String {
        let mut terms: Vec<String> = Vec::with_capacity(self.list.len());
        for t in &self.list {
            let term = t.bpf_term();
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
        terms.join(" or ")
    }

    fn any(&self, ip: IpAddr, port: u16) -> bool {
        self.scan.iter().any(|t| t.matches(ip, port))
            || (!self.hosts.is_empty() && self.hosts.contains(&(ip, port)))
    }

    /// A packet whose both ends look like targets (server-to-server on the
    /// same port, or a client that happens to use port 11211) is taken as a
    /// request: the destination decides.
    pub fn classify(&self, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Option<Side> {
        if self.any(dst, dport) {
            Some(Side::ToServer)
        } else if self.any(src, sport) {
            Some(Side::FromServer)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            t("*"),
            Target {
                net: None,
                port: 11211
            }
        );
        assert_eq!(
            t("*:11300"),
            Target {
                net: None,
                port: 11300
            }
        );
        assert_eq!(t("10.0.0.5").to_string(), "10.0.0.5/32:11211");
        assert_eq!(t("10.0.0.7/24:11212").to_string(), "10.0.0.0/24:11212");
        assert_eq!(t("[::1]:11211").to_string(), "[::1/128]:11211");
        assert_eq!(t("::1").to_string(), "[::1/128]:11211");
        assert_eq!(t("[fd00::/64]:9").to_string(), "[fd00::/64]:9");
    }

    #[test]
    fn rejects_garbage_with_a_message() {
        for bad in [
            "",
            "host.example:11211",
            "10.0.0.1:0",
            "10.0.0.1:99999",
            "10.0.0.0/40",
            "[::1",
            "[::1]x",
        ] {
            let e = bad.parse::<Target>().unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert!("10.0.0.1:abc"
            .parse::<Target>()
            .unwrap_err()
            .contains("bad port"));
    }

    /// The scanned form answers as the target itself, for blocks of every
    /// width, single hosts, `*`, both families and the wrong family.
    #[test]
    fn scanned_targets_match_as_the_targets_do() {
        let targets = [
            "*",
            "*:22122",
            "10.0.0.5",
            "10.0.0.0/24",
            "10.0.0.0/8:11212",
            "0.0.0.0/0",
            "[::1]:11211",
            "[fd00::/64]:11211",
            "[::/0]:11211",
            "[fd00:1::/127]:11211",
        ];
        let addrs = [
            "10.0.0.5",
            "10.0.0.6",
            "10.0.1.5",
            "10.255.255.255",
            "11.0.0.1",
            "0.0.0.0",
            "::1",
            "::2",
            "fd00::7",
            "fd00:0:0:1::7",
            "fd00:1::1",
            "fd00:1::2",
            "::ffff:10.0.0.5",
        ];
        let mut hits = 0;
        for t in targets {
            let target = t.parse::<Target>().unwrap();
            let scan = Scan::of(&target);
            for a in addrs {
                let ip: IpAddr = a.parse().unwrap();
                for port in [11211, 11212, 22122, 1] {
                    let want = target.matches(ip, port);
                    assert_eq!(scan.matches(ip, port), want, "{t} {a}:{port}");
                    hits += want as u32;
                }
            }
        }
        assert_eq!(hits, 49);
    }

    #[test]
    fn classifies_direction() {
        let ts = Targets::new(vec![t("10.0.0.0/24"), t("[::1]:11300")]);
        let a: IpAddr = "10.0.0.9".parse().unwrap();
        let c: IpAddr = "192.168.1.1".parse().unwrap();
        assert_eq!(ts.classify(c, 5555, a, 11211), Some(Side::ToServer));
        assert_eq!(ts.classify(a, 11211, c, 5555), Some(Side::FromServer));
        assert_eq!(ts.classify(c, 5555, a, 11212), None);
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(ts.classify(v6, 40000, v6, 11300), Some(Side::ToServer));
        assert_eq!(ts.classify(v6, 11300, v6, 40000), Some(Side::FromServer));
        let any = Targets::default();
        assert_eq!(any.classify(c, 1, a, 11211), Some(Side::ToServer));
    }

    #[test]
    fn many_hosts_are_looked_up_like_few() {
        // Past `SCANNED_HOSTS` the hosts go to the set; blocks stay scanned.
        let mut list: Vec<Target> = (1..=20).map(|i| t(&format!("10.0.0.{i}:22122"))).collect();
        list.push(t("10.9.0.0/16:11300"));
        list.push(t("[fd00::7]:22122"));
        let ts = Targets::new(list);
        assert_eq!(ts.hosts.len(), 21);
        assert_eq!(ts.scan.len(), 1);
        assert_eq!(ts.list().len(), 22);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let c = ip("192.168.1.1");
        assert_eq!(
            ts.classify(c, 5, ip("10.0.0.20"), 22122),
            Some(Side::ToServer)
        );
        assert_eq!(
            ts.classify(ip("fd00::7"), 22122, c, 5),
            Some(Side::FromServer)
        );
        assert_eq!(ts.classify(c, 5, ip("10.0.0.21"), 22122), None);
        assert_eq!(ts.classify(c, 5, ip("10.0.0.20"), 22123), None);
        assert_eq!(
            ts.classify(c, 5, ip("10.9.3.4"), 11300),
            Some(Side::ToServer)
        );
    }

    #[test]
    fn bpf_expr_exact() {
        let nff = "ip[6:2] & 0x1fff != 0";
        let any = Targets::default().bpf_expr();
        let b = format!("(port 11211 or {nff})");
        assert_eq!(any, format!("{b} or (vlan and ({b}))"));

        let ts = Targets::new(vec![
            t("10.0.0.5:11211"),
            t("10.1.0.0/16:11300"),
            t("[fd00::1]:11211"),
            t("[fd00:1::/64]:9"),
            t("10.0.0.5"),
        ]);
        let b = format!(
            "(host 10.0.0.5 and (port 11211 or {nff})) or (net 10.1.0.0/16 and (port 11300 or {nff})) \
             or (host fd00::1 and port 11211) or (net fd00:1::/64 and port 9)"
        );
        assert_eq!(ts.bpf_expr(), format!("{b} or (vlan and ({b}))"));

        let ts = Targets::new(vec![t("*:11211"), t("192.168.7.7:11212")]);
        let b = format!("(port 11211 or {nff}) or (host 192.168.7.7 and (port 11212 or {nff}))");
        assert_eq!(ts.bpf_expr(), format!("{b} or (vlan and ({b}))"));
    }

    // ---- frames for the compiled filters ----

    fn eth(vlan: Option<u16>, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        if let Some(id) = vlan {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&id.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// TCP/UDP ports, then filler (20 bytes: enough for a TCP header).
    fn ports(sport: u16, dport: u16) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&sport.to_be_bytes());
        l4.extend_from_slice(&dport.to_be_bytes());
        l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        l4.extend_from_slice(b"get k\r\n");
        l4
    }

    /// IPv4 with `frag` as the flags+offset field.
    fn v4(src: &str, dst: &str, proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let s: std::net::Ipv4Addr = src.parse().unwrap();
        let d: std::net::Ipv4Addr = dst.parse().unwrap();
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0x12, 0x34]);
        p.extend_from_slice(&frag.to_be_bytes());
        p.extend_from_slice(&[64, proto, 0, 0]);
        p.extend_from_slice(&s.octets());
        p.extend_from_slice(&d.octets());
        p.extend_from_slice(l4);
        p
    }

    fn v6(src: &str, dst: &str, next: u8, l4: &[u8]) -> Vec<u8> {
        let s: std::net::Ipv6Addr = src.parse().unwrap();
        let d: std::net::Ipv6Addr = dst.parse().unwrap();
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&s.octets());
        p.extend_from_slice(&d.octets());
        p.extend_from_slice(l4);
        p
    }

    fn tcp4(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
        v4(src, dst, 6, 0x4000, &ports(sport, dport))
    }

    fn udp4(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
        v4(src, dst, 17, 0, &ports(sport, dport))
    }

    /// A non-first fragment: offset 185 (x8 bytes), payload with no ports.
    fn frag4(src: &str, dst: &str) -> Vec<u8> {
        v4(src, dst, 17, 185, &[0xab; 40])
    }

    /// Checks each (frame, expected) untagged and with a VLAN tag, through
    /// libpcap's own matcher, after checking `compile_filter` accepts the
    /// expression (what the kernel gets).
    fn check(ts: &Targets, cases: &[(&str, Vec<u8>, u16, bool)]) {
        check_expr(&ts.bpf_expr(), cases)
    }

    fn check_expr(expr: &str, cases: &[(&str, Vec<u8>, u16, bool)]) {
        let expr = expr.to_string();
        let insns = crate::capture::bpf::compile_filter(&expr, 1, 65535).unwrap();
        assert!(insns.len() > 10);
        let dead = pcap::Capture::dead(pcap::Linktype(1)).unwrap();
        let prog = dead.compile(&expr, true).unwrap();
        for (what, ip, ethertype, want) in cases {
            let plain = eth(None, *ethertype, ip);
            assert_eq!(prog.filter(&plain), *want, "{what} (untagged) with {expr}");
            let tagged = eth(Some(42), *ethertype, ip);
            assert_eq!(prog.filter(&tagged), *want, "{what} (VLAN 42) with {expr}");
        }
    }

    #[test]
    fn compiled_filter_keeps_target_traffic_only() {
        let ts = Targets::new(vec![
            t("10.0.0.5:11211"),
            t("10.1.0.0/16:11300"),
            t("[fd00::1]:11211"),
        ]);
        let ip4 = 0x0800;
        let ip6 = 0x86dd;
        let arp = {
            let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
            a.extend_from_slice(&[0; 20]);
            a
        };
        check(
            &ts,
            &[
                (
                    "request to host",
                    udp4("10.0.0.9", 5000, "10.0.0.5", 11211),
                    ip4,
                    true,
                ),
                (
                    "response from host",
                    tcp4("10.0.0.5", 11211, "10.0.0.9", 40000),
                    ip4,
                    true,
                ),
                (
                    "host, other port",
                    tcp4("10.0.0.5", 22, "10.0.0.9", 40000),
                    ip4,
                    false,
                ),
                (
                    "other host, the port",
                    tcp4("10.0.0.6", 11211, "10.0.0.9", 40000),
                    ip4,
                    false,
                ),
                (
                    "net member",
                    tcp4("10.0.0.9", 40000, "10.1.2.3", 11300),
                    ip4,
                    true,
                ),
                (
                    "net member, default port",
                    tcp4("10.0.0.9", 40000, "10.1.2.3", 11211),
                    ip4,
                    false,
                ),
                (
                    "outside the net",
                    tcp4("10.0.0.9", 40000, "10.2.0.1", 11300),
                    ip4,
                    false,
                ),
                (
                    "first fragment with ports",
                    v4("10.0.0.9", "10.0.0.5", 17, 0x2000, &ports(5000, 11211)),
                    ip4,
                    true,
                ),
                (
                    "non-first fragment from host",
                    frag4("10.0.0.5", "10.0.0.9"),
                    ip4,
                    true,
                ),
                (
                    "non-first fragment to net",
                    frag4("10.0.0.9", "10.1.9.9"),
                    ip4,
                    true,
                ),
                (
                    "non-first fragment elsewhere",
                    frag4("10.0.0.7", "10.0.0.9"),
                    ip4,
                    false,
                ),
                (
                    "IPv6 host",
                    v6("fd00::9", "fd00::1", 6, &ports(40000, 11211)),
                    ip6,
                    true,
                ),
                (
                    "IPv6 host, other port",
                    v6("fd00::9", "fd00::1", 6, &ports(40000, 80)),
                    ip6,
                    false,
                ),
                (
                    "IPv6 other host",
                    v6("fd00::9", "fd00::2", 6, &ports(40000, 11211)),
                    ip6,
                    false,
                ),
                ("ARP", arp, 0x0806, false),
            ],
        );

        let any = Targets::default();
        check(
            &any,
            &[
                (
                    "any host, the port",
                    udp4("1.2.3.4", 11211, "5.6.7.8", 999),
                    ip4,
                    true,
                ),
                (
                    "IPv6, the port",
                    v6("::1", "::2", 17, &ports(11211, 5)),
                    ip6,
                    true,
                ),
                (
                    "other port",
                    tcp4("1.2.3.4", 80, "5.6.7.8", 999),
                    ip4,
                    false,
                ),
                (
                    "any non-first fragment",
                    frag4("1.2.3.4", "5.6.7.8"),
                    ip4,
                    true,
                ),
            ],
        );
    }

    #[test]
    fn a_user_filter_narrows_untagged_and_tagged_frames_alike() {
        let ts = Targets::new(vec![t("10.0.0.5:11211")]);
        let ip4 = 0x0800;
        // Before the narrowing went inside each alternative, no untagged
        // frame passed a filter with --filter.
        check_expr(
            &bpf_narrowed(&ts.bpf_terms(), "tcp port 40000"),
            &[
                (
                    "target, the extra port",
                    tcp4("10.0.0.9", 40000, "10.0.0.5", 11211),
                    ip4,
                    true,
                ),
                (
                    "target, another client port",
                    tcp4("10.0.0.9", 40001, "10.0.0.5", 11211),
                    ip4,
                    false,
                ),
                (
                    "not a target, the extra port",
                    tcp4("10.0.0.9", 40000, "10.0.0.6", 11211),
                    ip4,
                    false,
                ),
            ],
        );
        // Every TCP and UDP packet (servers looked for), narrowed.
        let all = "(tcp or udp or ip[6:2] & 0x1fff != 0)";
        check_expr(
            &bpf_narrowed(all, "port 8080"),
            &[
                (
                    "TCP, the port",
                    tcp4("1.2.3.4", 8080, "5.6.7.8", 9),
                    ip4,
                    true,
                ),
                (
                    "UDP, the port",
                    udp4("1.2.3.4", 9, "5.6.7.8", 8080),
                    ip4,
                    true,
                ),
                (
                    "TCP, other port",
                    tcp4("1.2.3.4", 80, "5.6.7.8", 9),
                    ip4,
                    false,
                ),
            ],
        );
        check_expr(
            &bpf_narrowed(all, " "),
            &[
                ("any TCP", tcp4("1.2.3.4", 80, "5.6.7.8", 9), ip4, true),
                ("a fragment", frag4("1.2.3.4", "5.6.7.8"), ip4, true),
            ],
        );
    }
}
