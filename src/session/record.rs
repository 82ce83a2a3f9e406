//! The record: one memcached key-request with its outcome.

use crate::decode::{Transport, Ts};
use crate::protocol::{Outcome, Proto};
use std::net::SocketAddr;

/// One key-request (a `get a b c` yields three), borrowed from the session
/// that resolved it; a sink copies what it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Time of the packet carrying the request's first byte.
    pub ts: Ts,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub transport: Transport,
    pub proto: Proto,
    /// Lower-case wire name of the command.
    pub command: &'static str,
    /// True for the first record of a command on the wire (a `get a b c`
    /// yields three records, only the first with `first` set), so
    /// commands can be counted as well as key-requests.
    pub first: bool,
    /// The key (meta base64 keys decoded); `None` for key-less commands.
    pub key: Option<&'a [u8]>,
    pub result: Outcome,
    /// Value bytes the client sent (storage payload).
    pub req_bytes: u64,
    /// The exptime the request sets (`Request::exptime`; for `flush_all`
    /// its delay).
    pub exptime: Option<i32>,
    /// Value bytes returned by a retrieval.
    pub resp_bytes: u64,
    /// Request's last byte to response's last byte, in nanoseconds; `None`
    /// when no response was seen (noreply, quiet, lost).
    pub latency_ns: Option<u64>,
}

/// Where a session pushes resolved records.
pub trait RecordSink {
    fn record(&mut self, r: &Record<'_>);
}

impl<F: FnMut(&Record<'_>)> RecordSink for F {
    fn record(&mut self, r: &Record<'_>) {
        self(r)
    }
}
