//! memtap: a passive memcached traffic analyzer.
//!
//! Data flows one way through the stages, each a module that imports only
//! from the stages to its left (`tests/layering.rs` checks it):
//!
//! ```text
//! capture ─Frame─▶ decode ─Packet─▶ reassembly ─bytes/gap─▶ protocol ─Request/Response─▶
//!   session ─Record─▶ collect ─Tables─▶ report / export ─▶ store / web / ui ─▶ app
//! ```
//!
//! * `capture` reads frames: pcap/pcapng files (compressed or on stdin), or
//!   live from AF_PACKET TPACKET_V3 rings (one per worker, kernel fanout)
//!   or libpcap, behind kernel BPF filters built from the targets.
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
//! * `trigger` judges rules (a key's share, a client's rate, a server's
//!   hit ratio...) on the collectors' per-second figures, on packet time.
//! * `report` turns tables into the report (JSON, text, CSV); `export`
//!   into Prometheus metrics; `web` serves both over HTTP; `ui` draws the
//!   live terminal view (`memtap top`) from the report's snapshots.
//! * `app` (with `config`) wires the stages together for the CLI and spawns
//!   the threads; it is the only module that knows every stage.
//! * `stats` (counters, warnings), `time`, `escape`, `prefetch` (memory
//!   hints) and `cpu` (thread CPU clocks) are shared by all.
//!
//! Time is always the packet's timestamp; nothing below `app` reads a clock,
//! so a replay is deterministic. Live capture (`app::live`) adds wall-clock
//! ticks between packets so windows close on a quiet network.
#![deny(unsafe_code)]

pub mod app;
pub mod capture;
pub mod collect;
pub mod config;
pub mod cpu;
pub mod decode;
pub mod escape;
pub mod export;
pub mod prefetch;
pub mod protocol;
pub mod reassembly;
pub mod report;
pub mod session;
pub mod stats;
pub mod store;
pub mod time;
pub mod trigger;
pub mod ui;
pub mod web;
