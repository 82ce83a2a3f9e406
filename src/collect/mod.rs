//! Per-thread statistics collection in bounded memory.
//!
//! * [`batch`]: records crossing from workers to collectors, sharded by key.
//! * [`collector`]: the collector thread loop and window closing.
//! * [`tables`]: what a collector keeps (hot keys, hot clients, families,
//!   commands, servers, results, distributions).
//! * [`keytables`]: what each tracked key keeps of its clients, servers
//!   and commands (exact while they fit, bounded beyond).
//! * [`hist`]: log2-class distributions.
//! * [`breakdown`]: joint counts for the metrics exporter (requests by
//!   server, command and result; latency and value size by server and
//!   command class).
//!
//! * [`insight`]: cache insight: why each miss happened, miss storms,
//!   writes nobody read, TTLs, slab fit, keys on several servers.
//! * [`slab`]: memcached's slab classes and item accounting.
//! * [`mrc`]: miss-ratio curves (SHARDS-sampled LRU stack distances).
//!
//! * [`heavy`]: a bounded heavy-hitter table (Space-Saving) keyed by byte
//!   strings, generic over a per-item stats payload, used for per-key and
//!   per-client statistics; [`keybuf`]: its keys, held in the item when
//!   short.

pub mod batch;
pub mod breakdown;
pub mod collector;
pub mod families;
pub mod heavy;
pub mod hist;
pub mod insight;
pub mod keybuf;
pub mod keytables;
pub mod mrc;
pub mod redact;
pub mod seconds;
pub mod slab;
mod slot_index;
pub mod tables;

pub use heavy::{Entry, HeavyHitters, Merge};
