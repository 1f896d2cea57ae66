//! Limits the network stack sets, in one place (`error.rs` and `udp.rs` both need them), and
//! exported so that JavaScript checks its own copy against them (`maxDatagramBytes` in core).

use napi_derive::napi;

/// The largest UDP datagram the network stack can carry, in bytes (its UDP buffer).
#[napi]
pub const MAX_DATAGRAM_BYTES: u32 = 4096;

/// `MAX_DATAGRAM_BYTES` as a length.
pub const MAX_DATAGRAM: usize = MAX_DATAGRAM_BYTES as usize;
