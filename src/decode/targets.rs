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
}

/// Which way a packet goes relative to the watched servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Destination is a target: a request.
    ToServer,
    /// Source is a target: a response.
    FromServer,
}

/// The set of targets (a short list, scanned linearly: fleets name a few
/// pools or CIDR blocks, not thousands of hosts).
#[derive(Debug, Clone)]
pub struct Targets {
    list: Vec<Target>,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            list: vec![Target {
                net: None,
                port: DEFAULT_PORT,
            }],
        }
    }
}

impl Targets {
    pub fn new(list: Vec<Target>) -> Targets {
        if list.is_empty() {
            Targets::default()
        } else {
            Targets { list }
        }
    }

    pub fn list(&self) -> &[Target] {
        &self.list
    }

    fn any(&self, ip: IpAddr, port: u16) -> bool {
        self.list.iter().any(|t| t.matches(ip, port))
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
}
