//! Triggers: rules over a sliding window of the live figures (a key's
//! share, a client's rate, a server's hit ratio, a loss counter's growth)
//! that fire once when crossed and clear with hysteresis, on packet time,
//! in replay and live capture alike.
//!
//! Collectors hand each closed second's figures (`collect::seconds`) to
//! the `Evaluator`, which sums them and judges every rule at the end of
//! each second. What a firing does (a log line, metrics, a pcapng snippet
//! of the packets around it, a webhook or command) is up to `app`.

pub mod eval;
pub mod event;
pub mod rule;

pub use eval::Evaluator;
pub use event::{Event, EventKind, Subject};
pub use rule::{Metric, Rule, RuleSpec};

use serde::Serialize;

/// What the triggers did, for `/metrics`, the report and tests.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Firings per rule (rule order).
    pub firings: Vec<(String, u64)>,
    /// Subjects firing now, per rule.
    pub active: Vec<(String, u64)>,
    pub cleared: u64,
    /// Firings a cooldown held back.
    pub suppressed: u64,
    pub snippets_written: u64,
    pub snippet_bytes: u64,
    /// Snippets not written: over the quota, over the rule's hourly rate,
    /// with no packet of the subject, or failing to write.
    pub snippets_over_quota: u64,
    pub snippets_over_rate: u64,
    pub snippets_empty: u64,
    pub snippet_errors: u64,
    pub webhooks_sent: u64,
    pub webhooks_failed: u64,
    pub commands_run: u64,
    pub commands_failed: u64,
    /// Actions dropped because the action queue was full.
    pub actions_dropped: u64,
    /// Actions still queued or running when the exit's grace
    /// (`actions.drain_timeout`) ran out: not run, or killed.
    pub actions_abandoned: u64,
    /// Actions still queued or running when the report was made: the
    /// report does not wait for them; they get `actions.drain_timeout`
    /// after it (what is left then is abandoned, counted on the log).
    pub actions_pending: u64,
    /// Frames the flight recorder kept, and evicted for room.
    pub ring_frames: u64,
    pub ring_evicted: u64,
    /// Snippet files written, oldest first (the latest 100).
    pub files: Vec<String>,
}

/// What a run's triggers did, for the report.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    #[serde(flatten)]
    pub stats: Stats,
    /// The latest events, oldest first.
    pub events: Vec<Event>,
}
