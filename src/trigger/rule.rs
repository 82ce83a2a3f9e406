//! What a trigger watches and when it fires: one `[[trigger]]` table of
//! the config, checked once (at start and on reload).

use crate::decode::Ts;

/// What is measured, per subject, over the rule's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A key's share of all requests, percent.
    KeySharePct,
    /// A key's requests per second.
    KeyRequestsPerS,
    /// A key's request and response bytes per second.
    KeyBytesPerS,
    /// A key's misses per second.
    KeyMissesPerS,
    /// The longest run of a key's misses with no store of it between them
    /// in the window: a dogpile (miss storm) in progress.
    KeyMissStorm,
    /// A key's 99th percentile latency, ms.
    KeyP99Ms,
    /// A client's requests per second.
    ClientRequestsPerS,
    /// A server's hits over hits and misses, percent (fires at or below).
    ServerHitRatioPct,
    /// A server's 99th percentile latency, ms.
    ServerP99Ms,
    /// Growth of a loss counter per second (the whole pipeline).
    LossPerS,
}

/// Who a metric is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Key,
    Client,
    Server,
    Pipeline,
}

impl Metric {
    pub const ALL: [(&'static str, Metric); 10] = [
        ("key_share_pct", Metric::KeySharePct),
        ("key_requests_per_s", Metric::KeyRequestsPerS),
        ("key_bytes_per_s", Metric::KeyBytesPerS),
        ("key_misses_per_s", Metric::KeyMissesPerS),
        ("key_p99_ms", Metric::KeyP99Ms),
        ("key_miss_storm", Metric::KeyMissStorm),
        ("client_requests_per_s", Metric::ClientRequestsPerS),
        ("server_hit_ratio_pct", Metric::ServerHitRatioPct),
        ("server_p99_ms", Metric::ServerP99Ms),
        ("loss_per_s", Metric::LossPerS),
    ];

    pub fn name(self) -> &'static str {
        Metric::ALL
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("?", |(n, _)| n)
    }

    pub fn subject(self) -> SubjectKind {
        use Metric::*;
        match self {
            KeySharePct | KeyRequestsPerS | KeyBytesPerS | KeyMissesPerS | KeyP99Ms
            | KeyMissStorm => SubjectKind::Key,
            ClientRequestsPerS => SubjectKind::Client,
            ServerHitRatioPct | ServerP99Ms => SubjectKind::Server,
            LossPerS => SubjectKind::Pipeline,
        }
    }

    /// A low value is the bad one (the rule fires at or below).
    pub fn fires_low(self) -> bool {
        self == Metric::ServerHitRatioPct
    }

    fn is_pct(self) -> bool {
        matches!(self, Metric::KeySharePct | Metric::ServerHitRatioPct)
    }
}

/// Loss counters a `loss_per_s` rule may watch. `lost_requests` comes from
/// the records themselves (replay and live); the others from the threads'
/// counters, which live capture publishes every tick.
pub const LOSS_COUNTERS: [&str; 8] = [
    "lost_requests",
    "kernel_drops",
    "if_drops",
    "tcp_gaps",
    "tcp_gap_bytes",
    "udp_timeouts",
    "records_dropped",
    "packets_dropped",
];

/// One checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub metric: Metric,
    /// Fires when the value reaches this (at or above; at or below for
    /// `fires_low` metrics).
    pub threshold: f64,
    /// Clears when the value is back past this (hysteresis).
    pub clear: f64,
    pub window_ns: Ts,
    /// After firing, the same rule and subject does not fire again for
    /// this long (packet time).
    pub cooldown_ns: Ts,
    /// Requests (of the subject; of the whole pipeline for a key's share)
    /// below which the rule does not judge.
    pub min_requests: u64,
    /// For `loss_per_s`: the counter watched.
    pub counter: Option<String>,
    /// Packets kept from this long before firing ...
    pub before_ns: Ts,
    /// ... to this long after.
    pub after_ns: Ts,
    /// Write a pcapng snippet when it fires.
    pub record: bool,
    pub webhook: Option<String>,
    pub command: Option<String>,
}

/// Rules a config may hold (each adds two series to `/metrics`).
pub const MAX_RULES: usize = 64;

/// Longest window a rule may take (the evaluator keeps that many seconds).
pub const MAX_WINDOW_NS: Ts = 300 * 1_000_000_000;

/// What a `[[trigger]]` table says, before checking (the config model
/// builds it; numbers already parsed).
#[derive(Debug, Clone, Default)]
pub struct RuleSpec {
    pub name: String,
    pub metric: String,
    pub above: Option<f64>,
    pub below: Option<f64>,
    pub clear: Option<f64>,
    pub window_ns: Ts,
    pub cooldown_ns: Ts,
    pub min_requests: u64,
    pub counter: Option<String>,
    pub before_ns: Ts,
    pub after_ns: Ts,
    pub record: bool,
    pub webhook: Option<String>,
    pub command: Option<String>,
}

impl RuleSpec {
    /// The rule, or one line saying what is wrong with it.
    pub fn check(&self) -> Result<Rule, String> {
        let name = &self.name;
        let bad = |why: String| Err(format!("trigger {name:?}: {why}"));
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "trigger {name:?}: the name must be letters, digits, '-', '_' or '.'"
            ));
        }
        let Some(&(_, metric)) = Metric::ALL.iter().find(|(n, _)| *n == self.metric) else {
            let names: Vec<&str> = Metric::ALL.iter().map(|(n, _)| *n).collect();
            return bad(format!(
                "unknown metric {:?}: one of {}",
                self.metric,
                names.join(", ")
            ));
        };
        let threshold = match (metric.fires_low(), self.above, self.below) {
            (false, Some(v), None) => v,
            (true, None, Some(v)) => v,
            (false, _, _) => return bad(format!("{} needs `above` (and no `below`)", self.metric)),
            (true, _, _) => return bad(format!("{} needs `below` (and no `above`)", self.metric)),
        };
        if !threshold.is_finite() || threshold < 0.0 || (metric.is_pct() && threshold > 100.0) {
            return bad(format!(
                "threshold {threshold} is out of range: {}",
                if metric.is_pct() {
                    "0 to 100 (percent)"
                } else {
                    "0 or more"
                }
            ));
        }
        let clear = self.clear.unwrap_or(threshold);
        if !clear.is_finite() {
            return bad("`clear` must be a number".into());
        }
        if metric.fires_low() && clear < threshold || !metric.fires_low() && clear > threshold {
            return bad(format!(
                "`clear` = {clear} must be {} the threshold {threshold} (hysteresis)",
                if metric.fires_low() {
                    "at or above"
                } else {
                    "at or below"
                }
            ));
        }
        if self.window_ns < 1_000_000_000
            || self.window_ns > MAX_WINDOW_NS
            || self.window_ns % 1_000_000_000 != 0
        {
            return bad("`window` must be whole seconds, 1s to 300s".into());
        }
        if self.before_ns > 60_000_000_000 || self.after_ns > 60_000_000_000 {
            return bad("`before` and `after` are at most 60s each".into());
        }
        let counter = match (metric, &self.counter) {
            (Metric::LossPerS, Some(c)) if LOSS_COUNTERS.contains(&c.as_str()) => Some(c.clone()),
            (Metric::LossPerS, Some(c)) => {
                return bad(format!(
                    "unknown loss counter {c:?}: one of {}",
                    LOSS_COUNTERS.join(", ")
                ))
            }
            (Metric::LossPerS, None) => Some("lost_requests".into()),
            (_, Some(_)) => return bad("`counter` is only for loss_per_s".into()),
            (_, None) => None,
        };
        if let Some(u) = &self.webhook {
            // memtap's HTTP client is built without TLS: a local relay
            // (or the receiver itself) takes plain HTTP.
            if !u.starts_with("http://") || u.len() <= "http://".len() {
                return bad(format!("webhook {u:?} is not an http:// URL"));
            }
        }
        if self.command.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return bad("`command` is empty".into());
        }
        Ok(Rule {
            name: name.clone(),
            metric,
            threshold,
            clear,
            window_ns: self.window_ns,
            cooldown_ns: self.cooldown_ns,
            min_requests: self.min_requests,
            counter,
            before_ns: self.before_ns,
            after_ns: self.after_ns,
            record: self.record,
            webhook: self.webhook.clone(),
            command: self.command.clone(),
        })
    }
}

/// Checks every rule and that names are unique.
pub fn check_all(specs: &[RuleSpec]) -> Result<Vec<Rule>, String> {
    if specs.len() > MAX_RULES {
        return Err(format!(
            "{} [[trigger]] tables: at most {MAX_RULES}",
            specs.len()
        ));
    }
    let mut out: Vec<Rule> = Vec::new();
    for s in specs {
        let r = s.check()?;
        if out.iter().any(|o| o.name == r.name) {
            return Err(format!("trigger {:?}: the name is used twice", r.name));
        }
        out.push(r);
    }
    Ok(out)
}

impl Rule {
    /// The value crossed the firing threshold.
    pub fn fires(&self, v: f64) -> bool {
        if self.metric.fires_low() {
            v <= self.threshold
        } else {
            v >= self.threshold
        }
    }

    /// The value is back past the clearing level.
    pub fn clears(&self, v: f64) -> bool {
        if self.metric.fires_low() {
            v > self.clear
        } else {
            v < self.clear
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(metric: &str) -> RuleSpec {
        RuleSpec {
            name: "r1".into(),
            metric: metric.into(),
            above: Some(20.0),
            window_ns: 10_000_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn a_good_rule_and_its_defaults() {
        let r = spec("key_share_pct").check().unwrap();
        assert_eq!(
            (r.metric, r.threshold, r.clear),
            (Metric::KeySharePct, 20.0, 20.0)
        );
        let mut s = spec("server_hit_ratio_pct");
        s.above = None;
        s.below = Some(80.0);
        s.clear = Some(90.0);
        let r = s.check().unwrap();
        assert!(r.fires(80.0) && !r.fires(80.5));
        assert!(!r.clears(90.0) && r.clears(90.1));
        let mut s = spec("loss_per_s");
        s.above = Some(1.0);
        assert_eq!(s.check().unwrap().counter.as_deref(), Some("lost_requests"));
    }

    #[test]
    fn bad_rules_are_refused_with_one_line_naming_them() {
        let cases: Vec<(RuleSpec, &str)> = vec![
            (spec("key_heat"), "trigger \"r1\": unknown metric \"key_heat\": one of key_share_pct, key_requests_per_s, key_bytes_per_s, key_misses_per_s, key_p99_ms, key_miss_storm, client_requests_per_s, server_hit_ratio_pct, server_p99_ms, loss_per_s"),
            (RuleSpec { above: Some(120.0), ..spec("key_share_pct") }, "trigger \"r1\": threshold 120 is out of range: 0 to 100 (percent)"),
            (RuleSpec { clear: Some(30.0), ..spec("key_share_pct") }, "trigger \"r1\": `clear` = 30 must be at or below the threshold 20 (hysteresis)"),
            (spec("server_hit_ratio_pct"), "trigger \"r1\": server_hit_ratio_pct needs `below` (and no `above`)"),
            (RuleSpec { window_ns: 1_500_000_000, ..spec("key_share_pct") }, "trigger \"r1\": `window` must be whole seconds, 1s to 300s"),
            (RuleSpec { counter: Some("tcp_gapz".into()), ..spec("loss_per_s") }, "trigger \"r1\": unknown loss counter \"tcp_gapz\": one of lost_requests, kernel_drops, if_drops, tcp_gaps, tcp_gap_bytes, udp_timeouts, records_dropped, packets_dropped"),
            (RuleSpec { webhook: Some("https://x".into()), ..spec("key_share_pct") }, "trigger \"r1\": webhook \"https://x\" is not an http:// URL"),
            (RuleSpec { name: "a b".into(), ..spec("key_share_pct") }, "trigger \"a b\": the name must be letters, digits, '-', '_' or '.'"),
        ];
        for (s, want) in cases {
            assert_eq!(s.check().unwrap_err(), want);
        }
        let twice = check_all(&[spec("key_share_pct"), spec("key_requests_per_s")]).unwrap_err();
        assert_eq!(twice, "trigger \"r1\": the name is used twice");
    }
}
