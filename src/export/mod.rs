//! Live exports of the collected statistics for monitoring systems.
//!
//! * [`prometheus`]: the Prometheus text exposition formats (0.0.4 and
//!   OpenMetrics 1.0), rendered from the run's tables, the last closed
//!   window and the health counters.
//!
//! An exporter is an output stage like `report`: it reads merged collector
//! tables and never touches the packet path.

pub mod prometheus;

pub use prometheus::{ExportInput, Format};
