//! What memtap serves over HTTP: metrics, the JSON API, and pages.

pub mod assets;
pub mod charts;
pub mod history;
pub mod server;
pub mod timebox;
