//! Classic BPF filters, compiled by libpcap from its filter language, for
//! the kernel (`SO_ATTACH_FILTER` on the AF_PACKET socket) to run before a
//! packet ever reaches a ring.

use super::CaptureError;

/// One classic BPF instruction, laid out like the kernel's `sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// `BPF_RET | BPF_K`: return a constant (the number of bytes to keep).
const RET_K: u16 = 0x06;

/// A program that keeps the first `snaplen` bytes of every packet: how
/// the AF_PACKET source applies its snap length when no filter is given
/// (the kernel truncates to the filter's return value).
pub fn accept_all(snaplen: u32) -> Vec<BpfInsn> {
    vec![BpfInsn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: snaplen,
    }]
}

/// A program that drops everything.
pub fn drop_all() -> [BpfInsn; 1] {
    [BpfInsn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k: 0,
    }]
}

/// `prog` with every nonzero constant return capped at `snaplen` (a
/// program compiled for a longer snap length would keep more).
pub fn cap_returns(prog: &[BpfInsn], snaplen: u32) -> Vec<BpfInsn> {
    prog.iter()
        .map(|i| match i.code {
            RET_K if i.k != 0 => BpfInsn {
                k: i.k.min(snaplen),
                ..*i
            },
            _ => *i,
        })
        .collect()
}

/// Compiles a libpcap filter expression for frames of `linktype`.
///
/// libpcap's "accept" returns its own snap length (a dead handle's is
/// 65535); the kernel cuts the packet to whatever a filter returns, so a
/// 64 KiB GSO super-segment on loopback would lose its tail. Every nonzero
/// constant return is therefore rewritten to the caller's `snaplen`.
pub fn compile_filter(
    expr: &str,
    linktype: u32,
    snaplen: u32,
) -> Result<Vec<BpfInsn>, CaptureError> {
    let bad = |msg: String| CaptureError::BadFilter {
        expr: expr.to_string(),
        msg,
    };
    let lt =
        i32::try_from(linktype).map_err(|_| bad(format!("link type {linktype} out of range")))?;
    let dead = pcap::Capture::dead(pcap::Linktype(lt)).map_err(|e| bad(pcap_msg(e)))?;
    let prog = dead.compile(expr, true).map_err(|e| bad(pcap_msg(e)))?;
    let mut out = Vec::with_capacity(prog.get_instructions().len());
    for insn in prog.get_instructions() {
        // The crate keeps the instruction's fields private but prints them
        // as "code jt jf k"; parsing that avoids relying on its layout.
        let text = insn.to_string();
        let mut it = text.split(' ');
        let mut next = || it.next().and_then(|s| s.parse::<u32>().ok());
        let (Some(code), Some(jt), Some(jf), Some(k)) = (next(), next(), next(), next()) else {
            return Err(bad(format!("unreadable compiled instruction {text:?}")));
        };
        let (Ok(code), Ok(jt), Ok(jf)) = (u16::try_from(code), u8::try_from(jt), u8::try_from(jf))
        else {
            return Err(bad(format!("unreadable compiled instruction {text:?}")));
        };
        let k = if code == RET_K && k != 0 { snaplen } else { k };
        out.push(BpfInsn { code, jt, jf, k });
    }
    if out.is_empty() {
        return Err(bad("libpcap produced an empty program".into()));
    }
    Ok(out)
}

fn pcap_msg(e: pcap::Error) -> String {
    match e {
        pcap::Error::PcapError(m) => m,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_and_sets_the_snap_length() {
        let p = compile_filter("udp port 11211", 1, 9000).unwrap();
        assert!(p.len() > 4);
        let rets: Vec<u32> = p.iter().filter(|i| i.code == RET_K).map(|i| i.k).collect();
        assert!(rets.contains(&9000) && rets.contains(&0), "{rets:?}");
        assert!(rets.iter().all(|&k| k == 0 || k == 9000));
    }

    #[test]
    fn returns_are_capped_not_raised() {
        let p = compile_filter("tcp", 1, 9000).unwrap();
        let capped = cap_returns(&p, 100);
        assert_eq!(capped.len(), p.len());
        for (a, b) in p.iter().zip(&capped) {
            match a.code {
                RET_K if a.k != 0 => assert_eq!(b.k, 100),
                _ => assert_eq!(a, b),
            }
        }
        assert_eq!(cap_returns(&p, 100_000), p);
    }

    #[test]
    fn bad_expression_names_itself() {
        let e = compile_filter("port banana", 1, 65535)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad filter `port banana`: "), "{e}");
        assert!(e.len() > "bad filter `port banana`: ".len(), "{e}");
    }

    #[test]
    fn empty_expression_accepts_all() {
        assert_eq!(compile_filter("", 1, 1500).unwrap(), accept_all(1500));
    }
}
