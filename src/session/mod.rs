//! Per-connection pairing of requests and responses; emits records.
