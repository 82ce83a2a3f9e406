//! What memtap serves over HTTP: metrics, the JSON API, and pages.

pub mod history;
pub mod server;
