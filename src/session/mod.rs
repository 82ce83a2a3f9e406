//! Per-connection pairing of requests and responses; emits records.
//!
//! `Session` implements `reassembly::StreamHandler` for one TCP connection
//! (or one UDP exchange); `UdpTable` keeps UDP exchanges by request id;
//! `Engine` is the whole per-packet path from a decoded packet to records,
//! owned by one thread.

pub mod budget;
pub mod conn;
pub mod engine;
pub mod pending;
pub mod record;
pub mod rules;
pub mod udp;

pub use conn::Session;
pub use engine::{Engine, EngineConfig};
pub use record::{Record, RecordSink};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod causal_tests;
