//! What the evaluator says: a rule fired or cleared for a subject, with
//! the value measured and the threshold, at a packet time.

use super::rule::Rule;
use crate::decode::Ts;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};

/// Who a firing is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    Key(Vec<u8>),
    Client(IpAddr),
    Server(SocketAddr),
    /// The whole pipeline (loss rules).
    Pipeline,
}

impl Subject {
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Key(_) => "key",
            Subject::Client(_) => "client",
            Subject::Server(_) => "server",
            Subject::Pipeline => "pipeline",
        }
    }

    /// The subject as text (a key escaped as in every other output).
    pub fn text(&self) -> String {
        match self {
            Subject::Key(k) => crate::escape::key_string(k),
            Subject::Client(c) => c.to_string(),
            Subject::Server(s) => s.to_string(),
            Subject::Pipeline => "all".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Fired,
    Cleared,
}

/// One firing or clearing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub trigger: String,
    pub event: EventKind,
    pub metric: &'static str,
    pub subject_kind: &'static str,
    #[serde(rename = "subject_text")]
    #[serde(skip)]
    pub subject: Subject,
    #[serde(rename = "subject")]
    pub subject_str: String,
    pub value: f64,
    pub threshold: f64,
    pub clear: f64,
    pub window_s: u64,
    /// Packet time, ns since the epoch (the end of the second judged).
    pub ts: Ts,
    /// The same as RFC 3339, UTC.
    pub time: String,
}

impl Event {
    pub fn new(rule: &Rule, kind: EventKind, subject: Subject, value: f64, at: Ts) -> Event {
        Event {
            trigger: rule.name.clone(),
            event: kind,
            metric: rule.metric.name(),
            subject_kind: subject.kind(),
            subject_str: subject.text(),
            subject,
            // Two decimals are all a threshold needs, and keep the line short.
            value: (value * 100.0).round() / 100.0,
            threshold: rule.threshold,
            clear: rule.clear,
            window_s: rule.window_ns / 1_000_000_000,
            ts: at,
            time: crate::time::rfc3339(at),
        }
    }

    /// The event as one JSON object.
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The event as one line of text.
    pub fn text(&self) -> String {
        let verb = match self.event {
            EventKind::Fired => "fired",
            EventKind::Cleared => "cleared",
        };
        format!(
            "trigger {} {verb}: {} {} {} = {} (threshold {}, clear {}, over {}s) at {}",
            self.trigger,
            self.subject_kind,
            self.subject_str,
            self.metric,
            self.value,
            self.threshold,
            self.clear,
            self.window_s,
            self.time
        )
    }
}
