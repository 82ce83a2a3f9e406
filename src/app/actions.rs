//! The triggers' webhooks and commands: a small pool of threads off the
//! packet path. Each target (one webhook URL, one command line) runs one
//! action at a time, so a webhook that hangs holds one thread and its own
//! queue entries, never the others. Each target's queue is bounded (the
//! excess is dropped, counted); every action has a timeout; a command runs in a
//! process group of its own, killed whole on timeout, with its output on
//! memtap's standard error (never in a report on standard output). At exit
//! `drain` waits a bounded grace, then abandons what is left (counted).

use super::triggers::Shared;
use crate::trigger::{Event, EventKind, Stats as TriggerStats};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub enum Action {
    Webhook { url: String, body: String },
    Command { cmd: String, event: Event },
}

impl Action {
    fn target(&self) -> String {
        match self {
            Action::Webhook { url, .. } => format!("webhook {url}"),
            Action::Command { cmd, .. } => format!("command {cmd}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub workers: usize,
    pub queue_len: usize,
    pub webhook_timeout: Duration,
    pub command_timeout: Duration,
}

#[derive(Default)]
struct State {
    queue: VecDeque<(String, Action)>,
    /// Targets with an action running.
    busy: HashSet<String>,
    /// Process groups of the commands running, by target.
    groups: HashMap<String, u32>,
    active: usize,
    closing: bool,
    abandoned: bool,
}

type Cell = Arc<(Mutex<State>, Condvar)>;

pub struct Pool {
    st: Cell,
    stats: Arc<Mutex<Shared>>,
    queue_len: usize,
    workers: Vec<std::thread::JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn stat(sh: &Mutex<Shared>, f: impl FnOnce(&mut TriggerStats)) {
    f(&mut lock(sh).stats);
}

impl Pool {
    pub fn new(l: Limits, stats: Arc<Mutex<Shared>>) -> Pool {
        let st: Cell = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(l.webhook_timeout))
            .http_status_as_error(true)
            .build()
            .into();
        let workers = (0..l.workers.max(1))
            .filter_map(|i| {
                let (st, stats, agent) = (st.clone(), stats.clone(), agent.clone());
                std::thread::Builder::new()
                    .name(format!("memtap-action-{i}"))
                    .spawn(move || worker(&st, &stats, &agent, l.command_timeout))
                    .ok()
            })
            .collect();
        Pool {
            st,
            stats,
            queue_len: l.queue_len.max(1),
            workers,
        }
    }

    /// Queues an action; one past its target's `queue_len` is dropped
    /// (counted).
    pub fn submit(&self, a: Action) {
        let (m, cv) = &*self.st;
        let mut s = lock(m);
        // Bounded per target: a hung target sheds its own actions and
        // never crowds out the others' (targets are the rules' few).
        let target = a.target();
        let waiting = s.queue.iter().filter(|(t, _)| *t == target).count();
        if waiting >= self.queue_len || s.closing {
            drop(s);
            stat(&self.stats, |t| t.actions_dropped += 1);
            return;
        }
        s.queue.push_back((target, a));
        cv.notify_all();
    }

    /// Actions queued or running now.
    pub fn pending(&self) -> u64 {
        let s = lock(&self.st.0);
        (s.queue.len() + s.active) as u64
    }

    /// Lets running and queued actions finish within `grace`; then the
    /// queue is abandoned and running commands are killed (counted in
    /// `actions_abandoned`), and the threads are left behind.
    pub fn drain(mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let (m, cv) = &*self.st;
        let mut s = lock(m);
        s.closing = true;
        cv.notify_all();
        while (!s.queue.is_empty() || s.active > 0) && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            s = cv
                .wait_timeout(s, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if s.queue.is_empty() && s.active == 0 {
            drop(s);
            for w in self.workers.drain(..) {
                let _ = w.join();
            }
            return;
        }
        s.abandoned = true;
        let n = (s.queue.len() + s.active) as u64;
        s.queue.clear();
        for (_, g) in s.groups.drain() {
            super::procgroup::kill_group(g);
        }
        cv.notify_all();
        stat(&self.stats, |t| t.actions_abandoned += n);
        eprintln!(
            "memtap: warning: actions: {n} still queued or running after actions.drain_timeout ({grace:?}): abandoned (commands killed)"
        );
    }
}

fn worker(st: &Cell, stats: &Mutex<Shared>, agent: &ureq::Agent, command_timeout: Duration) {
    let (m, cv) = &**st;
    loop {
        let (target, a) = {
            let mut s = lock(m);
            loop {
                if s.abandoned {
                    return;
                }
                let free = s.queue.iter().position(|(t, _)| !s.busy.contains(t));
                if let Some(i) = free {
                    let (t, a) = s.queue.remove(i).expect("found");
                    s.busy.insert(t.clone());
                    s.active += 1;
                    break (t, a);
                }
                if s.closing && s.queue.is_empty() {
                    return;
                }
                s = cv
                    .wait_timeout(s, Duration::from_millis(100))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        };
        let ok = run(st, &target, agent, a, command_timeout);
        let mut s = lock(m);
        s.busy.remove(&target);
        s.groups.remove(&target);
        if s.abandoned {
            // Counted as abandoned by `drain`.
            return;
        }
        s.active -= 1;
        let is_hook = target.starts_with("webhook ");
        stat(stats, |t| match (is_hook, ok) {
            (true, true) => t.webhooks_sent += 1,
            (true, false) => t.webhooks_failed += 1,
            (false, true) => t.commands_run += 1,
            (false, false) => t.commands_failed += 1,
        });
        cv.notify_all();
    }
}

/// Runs one action; true when it succeeded.
fn run(st: &Cell, target: &str, agent: &ureq::Agent, a: Action, timeout: Duration) -> bool {
    match a {
        Action::Webhook { url, body } => {
            let r = agent
                .post(&url)
                .header("content-type", "application/json")
                .send(body.as_bytes());
            match r {
                Ok(_) => true,
                Err(e) => {
                    eprintln!("memtap: warning: webhook {url}: {e}");
                    false
                }
            }
        }
        Action::Command { cmd, event } => command(st, target, &cmd, &event, timeout),
    }
}

fn command(st: &Cell, target: &str, cmd: &str, event: &Event, timeout: Duration) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt;
    // Its output joins memtap's log: standard output may be the report.
    let out = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::process::Stdio::from)
        .unwrap_or_else(|_| std::process::Stdio::null());
    let err = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::process::Stdio::from)
        .unwrap_or_else(|_| std::process::Stdio::null());
    let child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("MEMTAP_TRIGGER", &event.trigger)
        .env(
            "MEMTAP_EVENT",
            if event.event == EventKind::Fired {
                "fired"
            } else {
                "cleared"
            },
        )
        .env("MEMTAP_SUBJECT_KIND", event.subject_kind)
        .env("MEMTAP_SUBJECT", &event.subject_str)
        .env("MEMTAP_METRIC", event.metric)
        .env("MEMTAP_VALUE", event.value.to_string())
        .env("MEMTAP_THRESHOLD", event.threshold.to_string())
        .env("MEMTAP_TIME", &event.time)
        .env("MEMTAP_EVENT_JSON", event.json())
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("memtap: warning: trigger {} command: {e}", event.trigger);
            return false;
        }
    };
    let pgid = child.id();
    lock(&st.0).groups.insert(target.to_string(), pgid);
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(s)) if s.success() => return true,
            Ok(Some(s)) => {
                eprintln!(
                    "memtap: warning: trigger {} command exited with {s}",
                    event.trigger
                );
                return false;
            }
            Ok(None) if start.elapsed() < timeout && !lock(&st.0).abandoned => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                super::procgroup::kill_group(pgid);
                let _ = child.wait();
                eprintln!(
                    "memtap: warning: trigger {} command killed after {timeout:?} (its whole process group)",
                    event.trigger
                );
                return false;
            }
        }
    }
}
