//! Limits in one place (`error.rs` and `udp.rs` both need the datagram limit; `device.rs` and
//! `lifecycle.rs` the shutdown default), exported so that JavaScript checks its own copies
//! against them (`maxDatagramBytes` and `Timeouts.defaults.shutdown` in core).

use std::time::Duration;

use napi_derive::napi;

/// The largest UDP datagram the network stack can carry, in bytes (its UDP buffer).
#[napi]
pub const MAX_DATAGRAM_BYTES: u32 = 4096;

/// `MAX_DATAGRAM_BYTES` as a length.
pub const MAX_DATAGRAM: usize = MAX_DATAGRAM_BYTES as usize;

/// How long a shutdown waits for a graceful stop when its caller names no limit, in milliseconds.
#[napi]
pub const DEFAULT_SHUTDOWN_MS: u32 = 5_000;

/// `DEFAULT_SHUTDOWN_MS` as a duration.
pub const DEFAULT_SHUTDOWN: Duration = Duration::from_millis(DEFAULT_SHUTDOWN_MS as u64);
