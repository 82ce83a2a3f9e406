//! A real memcached for the end-to-end tests that capture live traffic.

use std::net::{TcpStream, UdpSocket};
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
