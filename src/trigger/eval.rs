//! The evaluator: sums the collectors' per-second figures, keeps the last
//! seconds, and at the end of each second (packet time) measures every
//! rule over its window, firing and clearing with hysteresis and a
//! cooldown.

use super::event::{Event, EventKind, Subject};
use super::rule::{Metric, Rule, SubjectKind, LOSS_COUNTERS, MAX_WINDOW_NS};
use crate::collect::seconds::{Agg, SecondMsg, SecondPart, SECOND_NS};
use crate::decode::Ts;
use crate::stats::Counters;
use hashbrown::HashMap;
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// One second, summed over collectors.
#[derive(Default)]
struct Second {
    start: Ts,
    all: Agg,
    keys: HashMap<Vec<u8>, Agg>,
    clients: HashMap<IpAddr, u64>,
    servers: HashMap<SocketAddr, Agg>,
    /// The loss counters' running totals as last observed by then.
    loss: [u64; LOSS_COUNTERS.len()],
}

impl Second {
    fn add(&mut self, p: &SecondPart) {
        self.all.merge(&p.all);
        for (k, a) in &p.keys {
            self.keys.entry(k.clone()).or_default().merge(a);
        }
        for (c, n) in &p.clients {
            *self.clients.entry(*c).or_default() += n;
        }
        for (s, a) in &p.servers {
            self.servers.entry(*s).or_default().merge(a);
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct State {
    active: bool,
    last_fired: Option<Ts>,
}

/// Subjects followed per rule (active ones and those cooling down); past
/// it the oldest idle ones are forgotten.
const MAX_STATES: usize = 4096;

pub struct Evaluator {
    rules: Vec<Rule>,
    upto: Vec<Ts>,
    /// Seconds with parts, not yet complete.
    building: BTreeMap<Ts, Second>,
    /// Complete seconds, oldest first, at most the longest window.
    done: VecDeque<Second>,
    /// The next second to complete.
    next: Option<Ts>,
    states: Vec<HashMap<Subject, State>>,
    loss_now: [u64; LOSS_COUNTERS.len()],
    /// Firings per rule so far.
    pub firings: Vec<u64>,
    /// Firings held back by a cooldown.
    pub suppressed: u64,
}

impl Evaluator {
    pub fn new(rules: Vec<Rule>, collectors: usize) -> Evaluator {
        let n = rules.len();
        Evaluator {
            rules,
            upto: vec![0; collectors.max(1)],
            building: BTreeMap::new(),
            done: VecDeque::new(),
            next: None,
            states: vec![HashMap::new(); n],
            loss_now: [0; LOSS_COUNTERS.len()],
            firings: vec![0; n],
            suppressed: 0,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// New rules (reload): the state of rules that kept their name and
    /// definition stays; the others start afresh.
    pub fn set_rules(&mut self, rules: Vec<Rule>) {
        let mut states = Vec::with_capacity(rules.len());
        let mut firings = Vec::with_capacity(rules.len());
        for r in &rules {
            match self.rules.iter().position(|o| o == r) {
                Some(i) => {
                    states.push(std::mem::take(&mut self.states[i]));
                    firings.push(self.firings[i]);
                }
                None => {
                    states.push(HashMap::new());
                    firings.push(0);
                }
            }
        }
        self.rules = rules;
        self.states = states;
        self.firings = firings;
    }

    /// Rules firing now (subjects active), per rule.
    pub fn active(&self) -> Vec<usize> {
        self.states
            .iter()
            .map(|m| m.values().filter(|s| s.active).count())
            .collect()
    }

    /// The threads' counters, running totals (live capture, every tick).
    pub fn observe(&mut self, c: &Counters) {
        for (i, name) in LOSS_COUNTERS.iter().enumerate() {
            if let Some((_, v)) = c.iter().find(|(n, _)| n == name) {
                self.loss_now[i] = v;
            }
        }
    }

    /// Takes a collector's message; returns the events of the seconds it
    /// completed.
    pub fn take(&mut self, m: SecondMsg) -> Vec<Event> {
        match m {
            SecondMsg::Part(p) => {
                // Each collector sends a second's part before saying it is
                // past that second, so no part comes for a second already
                // judged; the check keeps a misbehaving one harmless.
                if self.next.is_none_or(|n| p.start >= n) {
                    let s = self.building.entry(p.start).or_insert_with(|| Second {
                        start: p.start,
                        ..Default::default()
                    });
                    s.add(&p);
                }
                // A part for a second already judged (a collector far
                // behind) is dropped: it cannot change a past decision.
                Vec::new()
            }
            SecondMsg::Upto { collector, upto } => {
                if let Some(u) = self.upto.get_mut(collector) {
                    *u = (*u).max(upto);
                }
                let low = self.upto.iter().copied().min().unwrap_or(0);
                if low == Ts::MAX {
                    // Every collector is done: judge what is left.
                    return self.finish();
                }
                self.complete_upto(low)
            }
        }
    }

    /// Every second ending at or before `low` is complete: judge them.
    fn complete_upto(&mut self, low: Ts) -> Vec<Event> {
        let mut events = Vec::new();
        // The first second judged is the earliest any collector had: not
        // the first part to arrive (collectors run at their own pace). It
        // is known once every collector is past it (each sends its parts
        // before saying so); until then an earlier part may still come.
        let mut next = match self.next {
            Some(n) => n,
            None => match self.building.keys().next() {
                Some(&f) if f + SECOND_NS <= low => f,
                _ => return events,
            },
        };
        while next + SECOND_NS <= low {
            // A long quiet stretch: only its last `MAX_WINDOW` seconds can
            // matter; the ones before are skipped (windows empty anyway).
            if low - next > MAX_WINDOW_NS + SECOND_NS && self.building.range(..low).next().is_none()
            {
                let skip_to = low - MAX_WINDOW_NS - SECOND_NS;
                next = skip_to - skip_to % SECOND_NS;
                self.done.clear();
            }
            let mut s = self.building.remove(&next).unwrap_or_else(|| Second {
                start: next,
                ..Default::default()
            });
            s.loss = self.loss_now;
            self.done.push_back(s);
            while self
                .done
                .front()
                .is_some_and(|f| f.start + MAX_WINDOW_NS <= next)
            {
                self.done.pop_front();
            }
            next += SECOND_NS;
            self.judge(next, &mut events);
        }
        self.next = Some(next);
        events
    }

    /// Measures every rule over the window ending at `end`.
    fn judge(&mut self, end: Ts, events: &mut Vec<Event>) {
        for i in 0..self.rules.len() {
            let rule = self.rules[i].clone();
            let values = self.measure(&rule, end);
            self.decide(i, &rule, end, values, events);
        }
    }

    /// Each subject's value over the rule's window (subjects without
    /// enough requests are left out).
    fn measure(&self, rule: &Rule, end: Ts) -> Vec<(Subject, f64)> {
        let from = end.saturating_sub(rule.window_ns);
        let secs: Vec<&Second> = self.done.iter().filter(|s| s.start >= from).collect();
        let window_s = (rule.window_ns / SECOND_NS).max(1) as f64;
        let min = rule.min_requests;
        let per_s = |n: u64| n as f64 / window_s;
        let p99_ms = |a: &Agg| a.latency.quantile(0.99) as f64 / 1e6;
        match rule.metric.subject() {
            SubjectKind::Key => {
                let mut sum: HashMap<&[u8], Agg> = HashMap::new();
                let mut total = 0;
                for s in &secs {
                    total += s.all.requests;
                    for (k, a) in &s.keys {
                        sum.entry(k.as_slice()).or_default().merge(a);
                    }
                }
                if rule.metric == Metric::KeySharePct && total < min.max(1) {
                    return Vec::new();
                }
                sum.into_iter()
                    .filter(|(_, a)| rule.metric == Metric::KeySharePct || a.requests >= min.max(1))
                    .map(|(k, a)| {
                        let v = match rule.metric {
                            Metric::KeySharePct => 100.0 * a.requests as f64 / total as f64,
                            Metric::KeyRequestsPerS => per_s(a.requests),
                            Metric::KeyBytesPerS => per_s(a.bytes),
                            Metric::KeyMissesPerS => per_s(a.misses),
                            Metric::KeyMissStorm => a.storm_max as f64,
                            _ => p99_ms(&a),
                        };
                        (Subject::Key(k.to_vec()), v)
                    })
                    .collect()
            }
            SubjectKind::Client => {
                let mut sum: HashMap<IpAddr, u64> = HashMap::new();
                for s in &secs {
                    for (c, n) in &s.clients {
                        *sum.entry(*c).or_default() += n;
                    }
                }
                sum.into_iter()
                    .filter(|(_, n)| *n >= min.max(1))
                    .map(|(c, n)| (Subject::Client(c), per_s(n)))
                    .collect()
            }
            SubjectKind::Server => {
                let mut sum: HashMap<SocketAddr, Agg> = HashMap::new();
                for s in &secs {
                    for (k, a) in &s.servers {
                        sum.entry(*k).or_default().merge(a);
                    }
                }
                sum.into_iter()
                    .filter_map(|(k, a)| {
                        let v = if rule.metric == Metric::ServerHitRatioPct {
                            let judged = a.hits + a.misses;
                            if judged < min.max(1) {
                                return None;
                            }
                            100.0 * a.hits as f64 / judged as f64
                        } else {
                            if a.requests < min.max(1) {
                                return None;
                            }
                            p99_ms(&a)
                        };
                        Some((Subject::Server(k), v))
                    })
                    .collect()
            }
            SubjectKind::Pipeline => {
                let name = rule.counter.as_deref().unwrap_or("lost_requests");
                let grew = if name == "lost_requests" {
                    secs.iter().map(|s| s.all.lost).sum::<u64>()
                } else {
                    let i = LOSS_COUNTERS.iter().position(|n| *n == name).unwrap_or(0);
                    // Growth since just before the window began.
                    let before = self
                        .done
                        .iter()
                        .rev()
                        .find(|s| s.start < from)
                        .or(secs.first().copied())
                        .map_or(0, |s| s.loss[i]);
                    let now = secs.last().map_or(before, |s| s.loss[i]);
                    now.saturating_sub(before)
                };
                vec![(Subject::Pipeline, per_s(grew))]
            }
        }
    }

    fn decide(
        &mut self,
        i: usize,
        rule: &Rule,
        at: Ts,
        values: Vec<(Subject, f64)>,
        events: &mut Vec<Event>,
    ) {
        let states = &mut self.states[i];
        let mut seen: hashbrown::HashSet<Subject> = hashbrown::HashSet::new();
        let mut fired = Vec::new();
        for (subject, v) in values {
            let st = states.entry(subject.clone()).or_default();
            if st.active {
                if rule.clears(v) {
                    st.active = false;
                    events.push(Event::new(rule, EventKind::Cleared, subject.clone(), v, at));
                }
            } else if rule.fires(v) {
                if st.last_fired.is_some_and(|t| at < t + rule.cooldown_ns) {
                    self.suppressed += 1;
                } else {
                    st.active = true;
                    st.last_fired = Some(at);
                    self.firings[i] += 1;
                    fired.push(Event::new(rule, EventKind::Fired, subject.clone(), v, at));
                }
            }
            seen.insert(subject);
        }
        // Subjects gone from the window measure nothing: an active one
        // clears (a key no longer asked for is no longer hot).
        for (subject, st) in states.iter_mut() {
            if st.active && !seen.contains(subject) {
                let v = if rule.metric.fires_low() { 100.0 } else { 0.0 };
                if rule.clears(v) {
                    st.active = false;
                    events.push(Event::new(rule, EventKind::Cleared, subject.clone(), v, at));
                }
            }
        }
        // Forget idle subjects whose cooldown is over.
        states
            .retain(|_, st| st.active || st.last_fired.is_some_and(|t| at < t + rule.cooldown_ns));
        if states.len() > MAX_STATES {
            let mut idle: Vec<(Ts, Subject)> = states
                .iter()
                .filter(|(_, s)| !s.active)
                .map(|(k, s)| (s.last_fired.unwrap_or(0), k.clone()))
                .collect();
            idle.sort();
            for (_, k) in idle.into_iter().take(states.len() - MAX_STATES) {
                states.remove(&k);
            }
        }
        // Firings in a stable order (by subject) so runs agree.
        fired.sort_by(|a, b| a.subject.cmp(&b.subject));
        events.extend(fired);
    }

    /// End of input: the seconds still open are complete.
    pub fn finish(&mut self) -> Vec<Event> {
        match self.building.keys().next_back().copied() {
            Some(l) => self.complete_upto(l + SECOND_NS),
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::rule::RuleSpec;

    const S: Ts = SECOND_NS;
    const T0: Ts = 1_700_000_000 * SECOND_NS;

    fn agg(requests: u64, hits: u64, misses: u64) -> Agg {
        Agg {
            requests,
            hits,
            misses,
            ..Default::default()
        }
    }

    /// One collector's second: `keys` (name, requests), all hits.
    fn second(start: Ts, keys: &[(&str, u64)], server_misses: u64) -> SecondPart {
        let total: u64 = keys.iter().map(|k| k.1).sum();
        SecondPart {
            start,
            all: agg(total + server_misses, total, server_misses),
            keys: keys
                .iter()
                .map(|(k, n)| (k.as_bytes().to_vec(), agg(*n, *n, 0)))
                .collect(),
            clients: Vec::new(),
            servers: vec![(
                "10.0.0.1:11211".parse().unwrap(),
                agg(total + server_misses, total, server_misses),
            )],
            untracked: 0,
        }
    }

    fn rule(spec: RuleSpec) -> Rule {
        spec.check().unwrap()
    }

    fn share(cooldown_s: u64) -> Rule {
        rule(RuleSpec {
            name: "hot".into(),
            metric: "key_share_pct".into(),
            above: Some(30.0),
            clear: Some(10.0),
            window_ns: 2 * S,
            cooldown_ns: cooldown_s * S,
            min_requests: 10,
            ..Default::default()
        })
    }

    /// Feeds seconds (one collector) and returns the events as
    /// (second index it was judged at, kind, subject).
    fn run(rules: Vec<Rule>, secs: Vec<SecondPart>) -> Vec<(u64, EventKind, String)> {
        let mut e = Evaluator::new(rules, 1);
        let mut out = Vec::new();
        for p in secs {
            let end = p.start + S;
            out.extend(e.take(SecondMsg::Part(Box::new(p))));
            out.extend(e.take(SecondMsg::Upto {
                collector: 0,
                upto: end,
            }));
        }
        out.extend(e.take(SecondMsg::Upto {
            collector: 0,
            upto: Ts::MAX,
        }));
        out.into_iter()
            .map(|ev| ((ev.ts - T0) / S, ev.event, ev.subject_str))
            .collect()
    }

    fn steady(i: u64) -> Vec<(&'static str, u64)> {
        let _ = i;
        vec![("a", 10), ("b", 10), ("c", 10), ("d", 10), ("e", 10)]
    }

    #[test]
    fn a_burst_fires_once_and_clears_when_it_ends() {
        let mut secs = Vec::new();
        for i in 0..20u64 {
            let mut k = steady(i);
            if (5..10).contains(&i) {
                k.push(("hot", 200));
            }
            secs.push(second(T0 + i * S, &k, 0));
        }
        let ev = run(vec![share(60)], secs);
        // Judged at the end of second 5 (window [4, 6): 200 of 300 = 67%);
        // the burst ends after second 9: second 10 alone is 0%, the window
        // [10, 12) is 0 -> cleared at 11 (window [9,11) still has 200/350).
        assert_eq!(
            ev,
            vec![
                (6, EventKind::Fired, "hot".to_string()),
                (12, EventKind::Cleared, "hot".to_string()),
            ]
        );
    }

    #[test]
    fn a_flapping_key_fires_once_per_cooldown() {
        let mut secs = Vec::new();
        // Bursts of one second every four seconds.
        for i in 0..40u64 {
            let mut k = steady(i);
            if i % 4 == 0 {
                k.push(("hot", 200));
            }
            secs.push(second(T0 + i * S, &k, 0));
        }
        let fired = |cool| {
            run(vec![share(cool)], secs.clone())
                .into_iter()
                .filter(|e| e.1 == EventKind::Fired)
                .map(|e| e.0)
                .collect::<Vec<_>>()
        };
        // Without a cooldown every burst fires; with 20 s, one in five.
        assert_eq!(fired(0), (0..10).map(|b| b * 4 + 1).collect::<Vec<_>>());
        assert_eq!(fired(20), vec![1, 21]);
    }

    #[test]
    fn hit_ratio_fires_low_and_waits_for_enough_requests() {
        let r = rule(RuleSpec {
            name: "ratio".into(),
            metric: "server_hit_ratio_pct".into(),
            below: Some(60.0),
            clear: Some(80.0),
            window_ns: S,
            min_requests: 40,
            ..Default::default()
        });
        let secs = vec![
            second(T0, &[("a", 50)], 10),         // 83%
            second(T0 + S, &[("a", 5)], 30),      // 14%, but 35 < 40 judged
            second(T0 + 2 * S, &[("a", 20)], 30), // 40%
            second(T0 + 3 * S, &[("a", 30)], 20), // 60%: still firing (clear at 80)
            second(T0 + 4 * S, &[("a", 45)], 5),  // 90%: clears
        ];
        assert_eq!(
            run(vec![r], secs),
            vec![
                (3, EventKind::Fired, "10.0.0.1:11211".to_string()),
                (5, EventKind::Cleared, "10.0.0.1:11211".to_string()),
            ]
        );
    }

    #[test]
    fn two_collectors_sum_before_judging() {
        let r = rule(RuleSpec {
            name: "rate".into(),
            metric: "key_requests_per_s".into(),
            above: Some(100.0),
            window_ns: S,
            ..Default::default()
        });
        let mut e = Evaluator::new(vec![r], 2);
        // Two parts of the same second: 60 + 60 requests of "k".
        for c in 0..2 {
            let p = second(T0, &[("k", 60)], 0);
            assert!(e.take(SecondMsg::Part(Box::new(p))).is_empty());
            let ev = e.take(SecondMsg::Upto {
                collector: c,
                upto: T0 + S,
            });
            // Complete only once both collectors are past it.
            assert_eq!(ev.len(), c);
        }
        assert_eq!(e.firings, vec![1]);
    }

    #[test]
    fn a_loss_rule_watches_lost_requests() {
        let r = rule(RuleSpec {
            name: "loss".into(),
            metric: "loss_per_s".into(),
            above: Some(5.0),
            window_ns: 2 * S,
            ..Default::default()
        });
        let mut p = second(T0, &[("a", 10)], 0);
        p.all.lost = 12;
        let ev = run(vec![r], vec![p, second(T0 + S, &[("a", 10)], 0)]);
        assert_eq!(ev[0], (1, EventKind::Fired, "all".to_string()));
    }

    #[test]
    fn a_collector_whose_first_second_is_earlier_still_counts() {
        // Regression: the first part to arrive (collector 0, second 5)
        // once set the first second judged, and collector 1's part for
        // second 3, arriving after it, was dropped.
        let r = rule(RuleSpec {
            name: "rate".into(),
            metric: "key_requests_per_s".into(),
            above: Some(100.0),
            window_ns: S,
            ..Default::default()
        });
        let mut e = Evaluator::new(vec![r], 2);
        let mut ev = Vec::new();
        ev.extend(e.take(SecondMsg::Part(Box::new(second(
            T0 + 5 * S,
            &[("a", 5)],
            0,
        )))));
        ev.extend(e.take(SecondMsg::Part(Box::new(second(
            T0 + 3 * S,
            &[("k", 150)],
            0,
        )))));
        for c in 0..2 {
            ev.extend(e.take(SecondMsg::Upto {
                collector: c,
                upto: Ts::MAX,
            }));
        }
        let got: Vec<(u64, EventKind, String)> = ev
            .into_iter()
            .map(|x| ((x.ts - T0) / S, x.event, x.subject_str))
            .collect();
        assert_eq!(
            got,
            vec![
                (4, EventKind::Fired, "k".to_string()),
                (5, EventKind::Cleared, "k".to_string()),
            ]
        );
    }

    #[test]
    fn a_later_part_of_an_earlier_second_is_not_dropped() {
        // Regression (seen in replay under load): collector 1 said it was
        // past second 0, collector 0 sent its part of second 2 and said it
        // was past 3; the evaluator took second 2 as the first to judge,
        // and collector 1's part of second 1, which came next, was dropped.
        let r = rule(RuleSpec {
            name: "rate".into(),
            metric: "key_requests_per_s".into(),
            above: Some(100.0),
            window_ns: S,
            ..Default::default()
        });
        let mut e = Evaluator::new(vec![r], 2);
        let up = |c, s| SecondMsg::Upto {
            collector: c,
            upto: T0 + s * S,
        };
        let part = |s, k: &str| SecondMsg::Part(Box::new(second(T0 + s * S, &[(k, 150)], 0)));
        let mut ev = Vec::new();
        for m in [
            up(1, 1),
            part(2, "b"),
            up(0, 3),
            part(1, "a"),
            up(1, 3),
            up(0, 4),
            up(1, 4),
        ] {
            ev.extend(e.take(m));
        }
        let fired: Vec<String> = ev
            .iter()
            .filter(|x| x.event == EventKind::Fired)
            .map(|x| x.subject_str.clone())
            .collect();
        assert_eq!(fired, vec!["a", "b"]);
    }
}
