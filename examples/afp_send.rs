//! A packet sender for the live-capture benchmarks (`benches/zero-drop.sh`):
//! loads the frames of a legacy pcap file into memory once and sends them
//! in a loop on an interface through an AF_PACKET socket, `sendmmsg` in
//! batches with `PACKET_QDISC_BYPASS`, at a given packet rate (or as fast
//! as it can). tcpreplay tops out near 0.4 M packets/s on the 2-core dev
//! VM; this goes well past it because it reads no file and makes one system
//! call per batch.
//!
//! ```sh
//! cargo build --release --example afp_send
//! ip netns exec NS target/release/examples/afp_send --iface mtb0 \
//!     --pcap bench-out/big.pcap --skip 100000 --load 200000 \
//!     --packets 2000000 --rate 1000000
//! ```
//!
//! Prints one line: `sent N packets in S s: R pps, E send errors`. Pacing is
//! per batch (a batch is 1 ms of the rate, 32 to 1024 frames), so the
//! receiver sees 1 ms bursts, as a mirror port would show a busy link.
//! Legacy pcap only (what `benches/gen-capture.sh` writes); frames longer
//! than the interface's MTU plus 14 are left out (counted at start).

use std::ffi::CString;
use std::io::Read;
use std::time::{Duration, Instant};

struct Args {
    iface: String,
    pcap: String,
    skip: usize,
    load: usize,
    packets: u64,
    rate: u64,
    max_frame: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: afp_send --iface IF --pcap FILE [--skip N] [--load N] [--packets N] [--rate PPS|0] [--max-frame BYTES]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        iface: String::new(),
        pcap: String::new(),
        skip: 0,
        load: 200_000,
        packets: 1_000_000,
        rate: 0,
        max_frame: 65535 + 14,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        let num = |v: &str| v.parse::<u64>().unwrap_or_else(|_| usage());
        match k.as_str() {
            "--iface" => a.iface = v,
            "--pcap" => a.pcap = v,
            "--skip" => a.skip = num(&v) as usize,
            "--load" => a.load = num(&v) as usize,
            "--packets" => a.packets = num(&v),
            "--rate" => a.rate = num(&v),
            "--max-frame" => a.max_frame = num(&v) as usize,
            _ => usage(),
        }
    }
    if a.iface.is_empty() || a.pcap.is_empty() {
        usage();
    }
    a
}

/// Frames `skip..skip+load` of a legacy pcap file: (arena, offsets).
fn load(a: &Args) -> (Vec<u8>, Vec<(usize, usize)>, usize) {
    let mut f = std::fs::File::open(&a.pcap).unwrap_or_else(|e| {
        eprintln!("afp_send: {}: {e}", a.pcap);
        std::process::exit(1)
    });
    let mut d = Vec::new();
    f.read_to_end(&mut d).expect("read");
    if d.len() < 24 {
        eprintln!("afp_send: {}: too short for a pcap file", a.pcap);
        std::process::exit(1);
    }
    let le = match d[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => {
            eprintln!("afp_send: {}: not a legacy pcap file", a.pcap);
            std::process::exit(1)
        }
    };
    let u32_at = |at: usize| {
        let b = [d[at], d[at + 1], d[at + 2], d[at + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut arena = Vec::new();
    let mut frames = Vec::new();
    let (mut pos, mut n, mut too_long) = (24usize, 0usize, 0usize);
    while pos + 16 <= d.len() && frames.len() < a.load {
        let caplen = u32_at(pos + 8) as usize;
        let start = pos + 16;
        if start + caplen > d.len() {
            break;
        }
        if n >= a.skip {
            if caplen > a.max_frame || caplen < 14 {
                too_long += 1;
            } else {
                frames.push((arena.len(), caplen));
                arena.extend_from_slice(&d[start..start + caplen]);
            }
        }
        n += 1;
        pos = start + caplen;
    }
    (arena, frames, too_long)
}

fn check(r: libc::c_int, what: &str) {
    if r < 0 {
        eprintln!("afp_send: {what}: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
}

fn main() {
    let a = parse_args();
    let (arena, frames, skipped) = load(&a);
    if frames.is_empty() {
        eprintln!("afp_send: no frames loaded");
        std::process::exit(1);
    }
    eprintln!(
        "afp_send: {} frames loaded ({} bytes, {skipped} left out), sending {} at {}",
        frames.len(),
        arena.len(),
        a.packets,
        if a.rate == 0 {
            "top speed".to_string()
        } else {
            format!("{} pps", a.rate)
        }
    );

    let name = CString::new(a.iface.clone()).expect("interface name");
    // SAFETY: plain libc calls on a socket this function owns; every
    // pointer handed over points at live, correctly sized local data.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    check(fd, "socket(AF_PACKET)");
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        eprintln!("afp_send: no interface {}", a.iface);
        std::process::exit(1);
    }
    let one: libc::c_int = 1;
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(r, "PACKET_QDISC_BYPASS");
    let sndbuf: libc::c_int = 64 << 20;
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            (&sndbuf as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_protocol = 0;
    let r = unsafe {
        libc::bind(
            fd,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    check(r, "bind");

    let batch = if a.rate == 0 {
        256
    } else {
        (a.rate / 1000).clamp(32, 1024) as usize
    };
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(batch);
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(batch);
    let (mut sent, mut errors, mut next) = (0u64, 0u64, 0usize);
    let start = Instant::now();
    while sent < a.packets {
        let n = batch.min((a.packets - sent) as usize);
        iov.clear();
        for _ in 0..n {
            let (off, len) = frames[next];
            next = (next + 1) % frames.len();
            iov.push(libc::iovec {
                iov_base: arena[off..].as_ptr() as *mut libc::c_void,
                iov_len: len,
            });
        }
        msgs.clear();
        for v in iov.iter_mut() {
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            msgs.push(m);
        }
        let mut done = 0usize;
        let mut stalled: Option<Instant> = None;
        while done < n {
            let r = unsafe { libc::sendmmsg(fd, msgs[done..].as_mut_ptr(), (n - done) as u32, 0) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => {
                        // A full device queue: retry, but not forever (a
                        // link that is down answers ENOBUFS for good).
                        errors += 1;
                        let since = *stalled.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(2) {
                            eprintln!("afp_send: sendmmsg: {e} for 2 s; giving up");
                            std::process::exit(1);
                        }
                        std::thread::yield_now();
                        continue;
                    }
                    _ => {
                        eprintln!("afp_send: sendmmsg: {e}");
                        std::process::exit(1);
                    }
                }
            }
            done += r as usize;
            stalled = None;
        }
        sent += n as u64;
        if a.rate > 0 {
            let due = Duration::from_secs_f64(sent as f64 / a.rate as f64);
            let el = start.elapsed();
            if due > el {
                std::thread::sleep(due - el);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} packets in {secs:.3} s: {:.0} pps, {errors} send errors",
        sent as f64 / secs
    );
    unsafe { libc::close(fd) };
}
