//! memtap: a passive memcached traffic analyzer.
//!
//! Data flows one way through the stages, each a module that imports only
//! from the stages to its left (`tests/layering.rs` checks it):
//!
//! ```text
//! capture ─Frame─▶ decode ─Packet─▶ reassembly ─bytes/gap─▶ protocol ─Request/Response─▶
//!   session ─Record─▶ collect ─Tables─▶ report / export ─▶ app
//! ```
//!
//! * `capture` reads frames (pcap/pcapng files, compressed or on stdin).
//! * `decode` turns a frame into an IP/TCP/UDP view over the same bytes
//!   (link layers, VLAN tags, bounded IPv4 defragmentation) and classifies it
//!   against the watched targets.
//! * `reassembly` rebuilds each TCP direction as an ordered byte stream and
//!   reports gaps; it knows nothing of memcached commands.
//! * `protocol` holds pure parsers: bytes in, one message out, no state.
//! * `session` pairs requests with responses per connection (and per UDP
//!   request id) and emits one `Record` per key-request; its `Engine` is
//!   the whole per-packet path of one thread.
//! * `collect` batches records to collector threads (sharded by key) and
//!   keeps the bounded hot-key / hot-client tables and windows.
//! * `report` turns tables into the report (JSON, text, CSV).
//! * `app` (with `config`) wires the stages together for the CLI and spawns
//!   the threads; it is the only module that knows every stage.
//! * `stats` (counters, warnings), `time` and `escape` are shared by all.
//!
//! Time is always the packet's timestamp; nothing below `app` reads a clock,
//! so a replay is deterministic.
#![deny(unsafe_code)]

pub mod app;
pub mod capture;
pub mod collect;
pub mod config;
pub mod decode;
pub mod escape;
pub mod export;
pub mod protocol;
pub mod reassembly;
pub mod report;
pub mod session;
pub mod stats;
pub mod store;
pub mod time;
pub mod web;
