//! A real memcached for the end-to-end tests that capture live traffic.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when the test lets go of it, so a
/// failing assertion leaves no server or capture behind.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free for both TCP and UDP on 127.0.0.1.
pub fn free_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// memcached on 127.0.0.1, TCP and UDP on `port`, ready to take
/// connections when this returns.
pub fn memcached(port: u16) -> Proc {
    memcached_with(port, &[])
}

/// The same with more command-line options (`-m 64`, `-o ...`).
pub fn memcached_with(port: u16, extra: &[&str]) -> Proc {
    let p = port.to_string();
    let child = Command::new("memcached")
        .args(["-u", "nobody", "-l", "127.0.0.1", "-p", &p, "-U", &p])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start memcached");
    let guard = Proc(child);
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "memcached did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    guard
}

/// Whether the tests run as root (live capture needs it), from our own
/// effective uid in /proc (no unsafe geteuid needed).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// A program on PATH (or in the sbin directories root has).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// Signals a child and waits for it (at most 10 s).
pub fn stop(p: &mut Proc, sig: &str) {
    super::signal(&p.0, sig);
    let t0 = Instant::now();
    while p.0.try_wait().unwrap().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(10), "no exit on {sig}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server's `stats` (numeric ones), over a connection of its own.
pub fn stats(port: u16) -> BTreeMap<String, i64> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"stats\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    while !buf.ends_with(b"END\r\n") {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "stats: connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf)
        .lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("STAT ")?.splitn(2, ' ');
            let k = it.next()?;
            let v = it.next()?.trim().parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// tcpdump on lo for the servers' ports, until `finish`.
pub struct Capture {
    proc: Proc,
    err: PathBuf,
    file: PathBuf,
}

pub fn capture(dir: &Path, name: &str, ports: &[u16]) -> Capture {
    let file = dir.join(format!("{name}.pcap"));
    let err = dir.join(format!("{name}.tcpdump.err"));
    let filter = ports
        .iter()
        .map(|p| format!("port {p}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let tcpdump = which("tcpdump").unwrap();
    // Real-time priority: the drivers and servers of parallel tests keep
    // both cores busy, and a starved tcpdump overflows its ring (a busy CI
    // machine dropped 52 packets; two spinning processes here, 2,562).
    // Where chrt cannot (no CAP_SYS_NICE) tcpdump runs as before.
    let mut cmd = match which("chrt") {
        Some(chrt) if chrt_works(&chrt) => {
            let mut c = Command::new(chrt);
            c.args(["-f", "10"]).arg(tcpdump);
            c
        }
        _ => Command::new(tcpdump),
    };
    let child = cmd
        // Immediate delivery makes libpcap use TPACKET_V2, whose ring has
        // one fixed-size slot per packet, sized by the snap length: 256 MiB
        // with a snap length just over lo's 65,536-byte MTU is ~4,000
        // slots (with 262,144 and 64 MiB it was 256). No -U: a write per
        // packet is what made tcpdump slow; the file is flushed at SIGINT.
        .args(["-i", "lo", "-n", "-B", "262144", "-s", "65600"])
        .args(["--immediate-mode", "-Z", "root", "-w"])
        .arg(&file)
        .arg(format!("tcp and ({filter})"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("start tcpdump");
    let mut proc = Proc(child);
    let t0 = Instant::now();
    loop {
        let e = std::fs::read_to_string(&err).unwrap_or_default();
        if e.contains("listening on") {
            break;
        }
        if let Some(s) = proc.0.try_wait().unwrap() {
            panic!("tcpdump exited ({s}): {e}");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "tcpdump not listening: {e}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The socket is bound before the line is printed; a moment more for
    // the filter to be in place.
    std::thread::sleep(Duration::from_millis(200));
    Capture { proc, err, file }
}

/// Whether `chrt -f` may be used here (root in a container may lack it).
fn chrt_works(chrt: &Path) -> bool {
    Command::new(chrt)
        .args(["-f", "10", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Capture {
    /// Stops tcpdump (SIGINT), checks it dropped nothing; returns the file.
    pub fn finish(mut self) -> PathBuf {
        // The last FIN/ACKs.
        std::thread::sleep(Duration::from_millis(300));
        stop(&mut self.proc, "INT");
        let e = std::fs::read_to_string(&self.err).unwrap();
        let count = |what: &str| -> Option<u64> {
            e.lines()
                .find(|l| l.contains(what))
                .and_then(|l| l.split_whitespace().next()?.parse().ok())
        };
        let captured = count("captured").unwrap_or(0);
        let dropped = count("dropped by kernel");
        assert_eq!(dropped, Some(0), "tcpdump dropped packets: {e}");
        assert!(captured > 0, "tcpdump captured nothing: {e}");
        eprintln!("capture {}: {captured} packets", self.file.display());
        self.file
    }
}

/// Whether the tests run under CI (where a skipped test is a failure).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether a capture test can run here: root (tcpdump on lo) and `tools`.
/// When not, it says why; under CI that fails the test instead.
pub fn can_capture(test: &str, tools: &[&str]) -> bool {
    let why = if !is_root() {
        Some("needs root (tcpdump on lo)".to_string())
    } else {
        tools
            .iter()
            .find(|t| which(t).is_none())
            .map(|t| format!("{t} is not installed"))
    };
    match why {
        None => true,
        Some(w) => {
            assert!(
                !ci(),
                "{test}: {w} (CI must run it; scripts/setup.sh installs it)"
            );
            eprintln!("{test}: skipped: {w}");
            false
        }
    }
}

/// The JSON report of `memtap ARGS` (which must succeed).
pub fn memtap_json(bin: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "memtap {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
