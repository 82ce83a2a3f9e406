//! `memtap top` in a real terminal: tmux runs it in a 120×40 pane, the
//! test types keys with `send-keys` and reads the screen with
//! `capture-pane`. Three ways in: a fixture replayed at --speed max (rows
//! compared exactly with `memtap replay`), and, as root with a real
//! memcached, `-i lo` and `--connect` to a running capture while a client
//! drives a hot key at a known rate.

mod common;

use common::server::{free_port, memcached, Proc};

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_memtap");

fn have_tmux(test: &str) -> bool {
    if Command::new("tmux").arg("-V").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI must have tmux (scripts/setup.sh installs it)"
    );
    eprintln!("skipping {test}: needs tmux");
    false
}

fn live_ready(test: &str) -> bool {
    let mc = Command::new("memcached").arg("-h").output().is_ok();
    if common::server::is_root() && mc && have_tmux(test) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI must run as root with memcached and tmux installed"
    );
    eprintln!("skipping {test}: needs root, memcached and tmux");
    false
}

/// A private tmux server with one 120×40 session running a plain shell;
/// killed when dropped.
struct Tmux {
    sock: String,
}

static SESSIONS: AtomicUsize = AtomicUsize::new(0);

impl Tmux {
    fn new() -> Tmux {
        let sock = format!(
            "memtap-top-test-{}-{}",
            std::process::id(),
            SESSIONS.fetch_add(1, Ordering::SeqCst)
        );
        let t = Tmux { sock };
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "120",
            "-y",
            "40",
            "env",
            "-i",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "TERM=xterm-256color",
            "PS1=$ ",
            "bash",
            "--norc",
            "--noprofile",
        ]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.sock)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` literally, then Enter.
    fn line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
        self.tmux(&["send-keys", "-t", "t", "Enter"]);
    }

    /// Keys by tmux name (`Enter`, `Escape`, `q`, ...).
    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.tmux(&["send-keys", "-t", "t", k]);
            // One key per redraw: the view answers input at once.
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t"])
    }

    /// The screen once `ok` holds for it (panics with the screen after
    /// `secs`).
    fn wait(&self, secs: u64, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn alternate_on(&self) -> bool {
        self.tmux(&["display", "-p", "-t", "t", "#{alternate_on}"])
            .trim()
            == "1"
    }

    /// After the program quit: the shell printed its status, the screen is
    /// the normal one again, and the line discipline is back (canonical
    /// input and echo, which raw mode turns off).
    fn assert_restored(&self) {
        self.wait(10, "the exit status", |s| s.contains("EXIT=0"));
        assert!(!self.alternate_on(), "still on the alternate screen");
        self.line("stty -a | tr -s ' ;' '\\n\\n' | grep -x -e icanon -e echo | sort | tr '\\n' ' '; echo STTY");
        let s = self.wait(10, "stty", |s| s.contains("echo icanon STTY"));
        assert!(!s.contains("-icanon"), "{s}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.sock, "kill-server"])
            .output();
    }
}

/// A table row of the screen: the name and its cells, by column title.
#[derive(Debug, Clone)]
struct ScreenRow {
    name: String,
    cells: BTreeMap<String, String>,
}

/// Parses the table under the column-title line that starts with `first`
/// (`KEY`, `CLIENT`, ...). Names hold no spaces in these tests.
fn table(screen: &str, first: &str) -> Vec<ScreenRow> {
    let mut lines = screen.lines();
    let head = lines
        .by_ref()
        .find(|l| l.trim_start().starts_with(first))
        .unwrap_or_else(|| panic!("no {first} table on screen:\n{screen}"));
    let titles: Vec<String> = head
        .split_whitespace()
        .map(|t| t.trim_end_matches(['▼', '▲']).to_string())
        .collect();
    let mut rows = Vec::new();
    for l in lines {
        let cells: Vec<&str> = l.split_whitespace().collect();
        if cells.len() != titles.len() {
            break;
        }
        rows.push(ScreenRow {
            name: cells[0].to_string(),
            cells: titles
                .iter()
                .cloned()
                .zip(cells.iter().map(|c| c.to_string()))
                .collect(),
        });
    }
    rows
}

fn num(s: &str) -> f64 {
    let (v, m) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1e3),
        Some('M') => (&s[..s.len() - 1], 1e6),
        Some('G') => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    v.parse::<f64>()
        .unwrap_or_else(|_| panic!("not a number: {s}"))
        * m
}

fn replay_json(case: &str) -> Value {
    let dir = common::fixture_dir(case);
    let target = common::server_target(case).to_string();
    let out = Command::new(BIN)
        .args(["replay", "-q", "-f", "json", "--top", "0", "-t", &target])
        .arg(dir.join("capture.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn without_a_terminal_it_says_so_in_one_line_and_exits_1() {
    let pcap = common::fixture_dir("text_tcp").join("capture.pcap");
    let out = Command::new(BIN)
        .arg("top")
        .arg(&pcap)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "memtap: error: memtap top needs a terminal, and standard output is not one"
        ),
        "{err}"
    );
}

#[test]
fn replay_at_max_speed_shows_what_replay_reports() {
    if !have_tmux("replay_at_max_speed_shows_what_replay_reports") {
        return;
    }
    let case = "pipelined_tcp";
    let want = replay_json(case);
    let pcap = common::fixture_dir(case).join("capture.pcap");
    let target = common::server_target(case).to_string();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let t = Tmux::new();
    t.line(&format!(
        "{BIN} top --speed max -t '{target}' -f json --report-file {} {}; echo EXIT=$?",
        report.display(),
        pcap.display()
    ));
    let s = t.wait(20, "the end of the replay", |s| s.contains("replay done"));
    assert!(t.alternate_on());
    let requests = want["totals"]["requests"].as_u64().unwrap();
    assert!(
        s.contains(&format!(" requests {requests} ")),
        "header lacks the run's {requests} requests:\n{s}"
    );
    assert!(s.contains("sort req/s▼"), "{s}");
    // Every key on screen with its exact run total, by total descending.
    let keys: BTreeMap<String, u64> = want["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_string(),
                k["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    t.keys(&["t"]);
    let s = t.wait(5, "sort by total", |s| s.contains("sort total▼"));
    assert!(s.contains(&format!("keys ({})", keys.len())), "{s}");
    let rows = table(&s, "KEY");
    assert!(rows.len() >= 20, "{s}");
    for r in &rows {
        assert_eq!(
            Some(&(num(&r.cells["TOTAL"]) as u64)),
            keys.get(&r.name),
            "row {r:?}"
        );
    }
    let totals: Vec<u64> = rows.iter().map(|r| num(&r.cells["TOTAL"]) as u64).collect();
    assert!(totals.windows(2).all(|w| w[0] >= w[1]), "{totals:?}");
    assert_eq!(totals[0], *keys.values().max().unwrap());
    // The same key again reverses.
    t.keys(&["t"]);
    let s = t.wait(5, "reversed", |s| s.contains("sort total▲"));
    let rev: Vec<u64> = table(&s, "KEY")
        .iter()
        .map(|r| num(&r.cells["TOTAL"]) as u64)
        .collect();
    assert!(rev.windows(2).all(|w| w[0] <= w[1]), "{rev:?}");
    assert_eq!(rev[0], *keys.values().min().unwrap());
    t.keys(&["t"]);
    // The filter keeps the one key it names.
    let (one, n) = keys
        .iter()
        .max_by_key(|(k, n)| (**n, std::cmp::Reverse(k.len())))
        .unwrap();
    let others = keys.keys().filter(|k| k.contains(one.as_str())).count();
    t.keys(&["/"]);
    t.tmux(&["send-keys", "-t", "t", "-l", one]);
    t.keys(&["Enter"]);
    let s = t.wait(5, "the filter", |s| s.contains(&format!("key~{one}")));
    let rows = table(&s, "KEY");
    assert_eq!(rows.len(), others, "{s}");
    assert!(rows.iter().all(|r| r.name.contains(one.as_str())), "{s}");
    // Drill down: the key's clients, as the report lists them.
    let want_key = want["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key"] == one.as_str())
        .unwrap();
    let sel = rows.iter().position(|r| &r.name == one).unwrap();
    for _ in 0..sel {
        t.keys(&["Down"]);
    }
    t.keys(&["Enter"]);
    let s = t.wait(5, "the key's page", |s| s.contains(&format!("key {one}")));
    assert!(s.contains(&format!("total: {n} requests")), "{s}");
    let clients = table(&s, "CLIENT");
    let want_clients: Vec<(String, u64)> = want_key["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["client"].as_str().unwrap().to_string(),
                c["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    let got: Vec<(String, u64)> = clients
        .iter()
        .map(|r| (r.name.clone(), num(&r.cells["TOTAL"]) as u64))
        .collect();
    assert_eq!(got, want_clients, "{s}");
    // Back, the help overlay, every tab, then quit.
    t.keys(&["Escape"]);
    t.wait(5, "back to the table", |s| s.contains("KEY"));
    t.keys(&["?"]);
    t.wait(5, "help", |s| s.contains("any key closes this help"));
    t.keys(&["Escape", "3"]);
    let s = t.wait(5, "servers", |s| s.contains("SERVER"));
    let servers = table(&s, "SERVER");
    assert_eq!(servers.len(), 1, "{s}");
    assert_eq!(servers[0].cells["SHARE%"], "100.0");
    assert_eq!(num(&servers[0].cells["TOTAL"]) as u64, requests);
    t.keys(&["4"]);
    let s = t.wait(5, "commands", |s| s.contains("COMMAND"));
    let cmds = table(&s, "COMMAND");
    let want_cmds = want["commands"].as_array().unwrap();
    assert_eq!(cmds.len(), want_cmds.len(), "{s}");
    t.keys(&["q"]);
    t.assert_restored();
    // The report on quit is the replay's, table for table.
    let got: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for part in [
        "totals", "results", "commands", "servers", "keys", "clients", "families",
    ] {
        if part == "keys" || part == "clients" || part == "families" {
            // --top defaults to 20 in the report file: compare that prefix.
            let g = got[part].as_array().unwrap();
            let w = want[part].as_array().unwrap();
            assert_eq!(g.as_slice(), &w[..g.len()], "{part}");
        } else {
            assert_eq!(got[part], want[part], "{part}");
        }
    }
}

// ---- live: a real memcached, a hot key driven at a known rate ----

/// Drives `get hot` at `rate`/s (hits: it is set first) and `get cold:N`
/// misses at a tenth of that, on one connection from 127.0.0.1, until
/// stopped.
struct Driver {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Driver {
    fn start(port: u16, rate: u64) -> Driver {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut w = c.try_clone().unwrap();
            let mut r = BufReader::new(c);
            let mut line = String::new();
            w.write_all(b"set hot 0 0 5\r\nhello\r\n").unwrap();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "STORED\r\n");
            let t0 = Instant::now();
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                n += 1;
                // Deadline pacing: the rate holds whatever each get costs.
                let due = t0 + Duration::from_secs_f64(n as f64 / rate as f64);
                if let Some(d) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
                let cmd = if n % 10 == 0 {
                    format!("get cold:{}\r\n", n % 7)
                } else {
                    "get hot\r\n".into()
                };
                w.write_all(cmd.as_bytes()).unwrap();
                // VALUE … / data / END, or END alone.
                loop {
                    line.clear();
                    r.read_line(&mut line).unwrap();
                    if line == "END\r\n" {
                        break;
                    }
                }
            }
            n
        });
        Driver {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const RATE: u64 = 200;
/// The view's rate of the hot key may differ from the driven rate by this
/// share: the window's ends are snapshot times, a capture's tables lag
/// the wire by up to a batch flush (100 ms) and the driver's sleeps
/// overshoot a little.
const TOLERANCE: f64 = 0.15;

/// The checks both live ways in share: the hot key first at its rate, its
/// client in the drill-down, sorting by misses, the filter, and quit.
fn check_live_view(t: &Tmux) {
    let hot = RATE as f64 * 0.9;
    let s = t.wait(30, "the hot key at its rate", |s| {
        if !s.contains("KEY") {
            return false;
        }
        let rows = table(s, "KEY");
        rows.first().is_some_and(|r| {
            r.name == "hot" && (num(&r.cells["REQ/s"]) - hot).abs() <= hot * TOLERANCE
        })
    });
    let rows = table(&s, "KEY");
    assert_eq!(rows[0].cells["HIT%"], "100.0", "{s}");
    assert!(
        rows.iter().skip(1).all(|r| r.name.starts_with("cold:")),
        "{s}"
    );
    // Drill down: its one client.
    t.keys(&["Home", "Enter"]);
    let s = t.wait(5, "the key's page", |s| s.contains("key hot"));
    let clients = table(&s, "CLIENT");
    assert_eq!(clients.len(), 1, "{s}");
    assert_eq!(clients[0].name, "127.0.0.1");
    let r = num(&clients[0].cells["REQ/s"]);
    assert!((r - hot).abs() <= hot * TOLERANCE, "client rate {r}:\n{s}");
    // The client's keys: the hot one first.
    t.keys(&["Enter"]);
    let s = t.wait(5, "the client's keys", |s| s.contains("client 127.0.0.1"));
    assert_eq!(table(&s, "KEY")[0].name, "hot", "{s}");
    t.keys(&["Escape", "Escape"]);
    // By misses, a cold key leads; the filter hides the hot one.
    t.keys(&["m"]);
    let s = t.wait(5, "sort by misses", |s| s.contains("sort misses/s▼"));
    assert!(table(&s, "KEY")[0].name.starts_with("cold:"), "{s}");
    t.keys(&["r", "/", "c", "o", "l", "d", "Enter"]);
    let s = t.wait(5, "the filter", |s| s.contains("key~cold"));
    let rows = table(&s, "KEY");
    assert!(
        !rows.is_empty() && rows.iter().all(|r| r.name.starts_with("cold:")),
        "{s}"
    );
    t.keys(&["Space"]);
    t.wait(5, "frozen", |s| s.contains("FROZEN"));
    t.keys(&["q"]);
    t.assert_restored();
}

#[test]
fn live_on_lo_shows_the_hot_key_at_its_rate() {
    if !live_ready("live_on_lo_shows_the_hot_key_at_its_rate") {
        return;
    }
    let port = free_port();
    let _mc = memcached(port);
    let t = Tmux::new();
    t.line(&format!(
        "{BIN} top -i lo -t 127.0.0.1:{port} --workers 1 --interval 4s; echo EXIT=$?"
    ));
    t.wait(10, "the view", |s| s.contains("memtap top"));
    let _d = Driver::start(port, RATE);
    check_live_view(&t);
}

#[test]
fn connect_to_a_running_capture_shows_the_hot_key_at_its_rate() {
    if !live_ready("connect_to_a_running_capture_shows_the_hot_key_at_its_rate") {
        return;
    }
    let port = free_port();
    let _mc = memcached(port);
    let mut cap = Command::new(BIN)
        .args(["capture", "-i", "lo", "-t", &format!("127.0.0.1:{port}")])
        .args([
            "--workers",
            "1",
            "--listen",
            "127.0.0.1:0",
            "-q",
            "-f",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(cap.stderr.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while addr.is_none() {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "capture exited");
        if let Some(rest) = line.strip_prefix("memtap: listening on http://") {
            addr = Some(rest.split('/').next().unwrap().to_string());
        }
    }
    let cap = Proc(cap);
    let addr = addr.unwrap();
    let _d = Driver::start(port, RATE);
    let t = Tmux::new();
    t.line(&format!(
        "{BIN} top --connect http://{addr} --interval 4s; echo EXIT=$?"
    ));
    check_live_view(&t);
    // The capture goes on after the view left.
    common::signal(&cap.0, "INT");
    let mut cap = cap;
    let mut out = String::new();
    cap.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["keys"][0]["key"], "hot");
}

#[test]
fn connect_to_nothing_fails_before_taking_the_screen() {
    if !have_tmux("connect_to_nothing_fails_before_taking_the_screen") {
        return;
    }
    let port = free_port();
    let t = Tmux::new();
    t.line(&format!(
        "{BIN} top --connect http://127.0.0.1:{port}; echo EXIT=$?"
    ));
    let s = t.wait(10, "the error", |s| s.contains("EXIT=1"));
    assert!(
        s.contains(&format!(
            "memtap: error: --connect http://127.0.0.1:{port}:"
        )),
        "{s}"
    );
    assert!(!t.alternate_on());
}

/// A real `/api/top` answer: `memtap replay --serve` of a fixture.
fn api_top_answer() -> String {
    let case = "pipelined_tcp";
    let target = common::server_target(case).to_string();
    let mut child = Command::new(BIN)
        .args(["replay", "-q", "-f", "json", "-t", &target])
        .args(["--serve", "--listen", "127.0.0.1:0"])
        .arg(common::fixture_dir(case).join("capture.pcap"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, log) = common::wait_for_listener(&mut child);
    let t0 = Instant::now();
    let body = loop {
        let (code, _, body) = common::http_get(&addr, "/api/top?keys=2000", None);
        if code == 200 {
            break body;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{code}: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    common::signal(&child, "INT");
    let _ = child.wait();
    let _ = log.join();
    body
}

/// What a stand-in server does with a request after the first `answered`.
#[derive(Clone, Copy)]
enum Then {
    /// Reads it and never answers.
    Hang,
    /// Answers 200 with a body that never ends.
    Endless,
}

/// A loopback HTTP server answering its first `answered` requests with
/// `body`, then doing `then`. Its channel gets the number of each request
/// as it arrives; `sent` counts the bytes of endless bodies written.
fn stand_in(
    body: String,
    answered: usize,
    then: Then,
) -> (
    String,
    std::sync::mpsc::Receiver<usize>,
    Arc<std::sync::atomic::AtomicU64>,
) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = sent.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (n, s) in l.incoming().enumerate() {
            let Ok(mut s) = s else { return };
            // The request head, whole.
            let mut r = BufReader::new(s.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let _ = tx.send(n + 1);
            if n < answered {
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                continue;
            }
            match then {
                Then::Hang => held.push(s),
                Then::Endless => {
                    let counted = counted.clone();
                    std::thread::spawn(move || {
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n[",
                        );
                        let chunk = vec![b' '; 64 << 10];
                        while s.write_all(&chunk).is_ok() {
                            counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        }
                    });
                }
            }
        }
    });
    (addr, rx, sent)
}

/// The server stops answering while the view is up: `q` still quits at
/// once (the fetch waits on its own thread), and the terminal is restored.
#[test]
fn connect_quits_at_once_while_the_server_never_answers() {
    if !have_tmux("connect_quits_at_once_while_the_server_never_answers") {
        return;
    }
    let (addr, requests, _) = stand_in(api_top_answer(), 1, Then::Hang);
    let t = Tmux::new();
    t.line(&format!("{BIN} top --connect http://{addr}; echo EXIT=$?"));
    t.wait(10, "the view", |s| s.contains("KEY"));
    assert!(t.alternate_on());
    // The second fetch has reached the server, which will never answer it.
    let mut n = 0;
    while n < 2 {
        n = requests.recv_timeout(Duration::from_secs(5)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    t.tmux(&["send-keys", "-t", "t", "q"]);
    t.wait(5, "the exit", |s| s.contains("EXIT=0"));
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "q took {took:?} (the fetch's own timeout is 3 s)"
    );
    t.assert_restored();
}

/// A server that accepts and never answers from the start: the first
/// fetch times out (3 s) and top says so before taking the screen.
#[test]
fn connect_to_a_server_that_never_answers_fails_within_its_timeout() {
    if !have_tmux("connect_to_a_server_that_never_answers_fails_within_its_timeout") {
        return;
    }
    let (addr, _requests, _) = stand_in(String::new(), 0, Then::Hang);
    let t = Tmux::new();
    let t0 = Instant::now();
    t.line(&format!("{BIN} top --connect http://{addr}; echo EXIT=$?"));
    let s = t.wait(10, "the error", |s| s.contains("EXIT=1"));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(
        s.contains(&format!("memtap: error: --connect http://{addr}:")),
        "{s}"
    );
    assert!(s.to_lowercase().contains("timeout"), "{s}");
    assert!(!t.alternate_on());
}

/// An answer that never ends is read up to the 64 MiB limit and no
/// further: the view says so on its status line, memory stays bounded,
/// and `q` quits.
#[test]
fn connect_stops_reading_an_endless_answer_at_its_limit() {
    if !have_tmux("connect_stops_reading_an_endless_answer_at_its_limit") {
        return;
    }
    let (addr, _requests, sent) = stand_in(api_top_answer(), 1, Then::Endless);
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let t = Tmux::new();
    t.line(&format!(
        "sh -c 'echo $$ > {}; exec {BIN} top --connect http://{addr}'; echo EXIT=$?",
        pidfile.display()
    ));
    let s = t.wait(20, "the limit on the status line", |s| {
        s.contains("cannot reach") && s.contains("limit")
    });
    assert!(s.contains("larger than request limit: 67108864"), "{s}");
    assert!(
        sent.load(Ordering::Relaxed) >= 64 << 20,
        "the limit, not a timeout, ended it: {} bytes sent",
        sent.load(Ordering::Relaxed)
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        hwm_kib < 256 << 10,
        "peak RSS {hwm_kib} KiB for a 64 MiB limit"
    );
    t.tmux(&["send-keys", "-t", "t", "q"]);
    t.assert_restored();
}
