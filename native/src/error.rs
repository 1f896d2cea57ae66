//! The one mapping from Rust failures to JavaScript errors.
//!
//! Every rejection's message follows one grammar (napi-rs cannot attach a custom `code`
//! property to an async rejection):
//!
//! ```text
//! <CODE>: <subject>: <detail>
//! ```
//!
//! `CODE` is an `ErrorCode` (exported to `index.d.ts` from the enum below, so TypeScript checks
//! against the same list); `subject` names the offending field for `INVALID_ARGUMENT` (`port`,
//! `tags[1]`) and the operation for every other code (`connect`, `TCP read`). The codes are
//! documented in `native/README.md`; `@effect-tailscale/core` decodes them.

use std::fmt;

use napi_derive::napi;
use tailscale::netstack;

/// Every code a rejection can carry, as the prefix of its message (`"<CODE>: …"`).
#[napi(string_enum = "UPPER_SNAKE", js_name = "ErrorCode")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    KeyFile,
    InvalidArgument,
    ControlUnreachable,
    NotAuthorized,
    Timeout,
    ConnectionRefused,
    ConnectionReset,
    AddressInUse,
    MessageTooLarge,
    DeviceClosed,
    DeviceLost,
    Internal,
}

impl Code {
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::KeyFile => "KEY_FILE",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::ControlUnreachable => "CONTROL_UNREACHABLE",
            Code::NotAuthorized => "NOT_AUTHORIZED",
            Code::Timeout => "TIMEOUT",
            Code::ConnectionRefused => "CONNECTION_REFUSED",
            Code::ConnectionReset => "CONNECTION_RESET",
            Code::AddressInUse => "ADDRESS_IN_USE",
            Code::MessageTooLarge => "MESSAGE_TOO_LARGE",
            Code::DeviceClosed => "DEVICE_CLOSED",
            Code::DeviceLost => "DEVICE_LOST",
            Code::Internal => "INTERNAL",
        }
    }
}

/// A failure on its way to JavaScript: a code and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Code,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Failure>;

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// Bad input: names the field, shows the value (never use for secrets) and says why.
    pub fn invalid(field: &str, value: impl fmt::Display, why: &str) -> Self {
        Self::new(Code::InvalidArgument, format!("{field}: {why} (got {})", Quoted(value)))
    }

    /// Bad input whose value must not be echoed (auth keys, key material).
    pub fn invalid_secret(field: &str, why: &str) -> Self {
        Self::new(Code::InvalidArgument, format!("{field}: {why}"))
    }

    pub fn device_closed(what: &str) -> Self {
        Self::new(Code::DeviceClosed, format!("the {what} is closed"))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl From<Failure> for napi::Error {
    fn from(failure: Failure) -> Self {
        napi::Error::new(napi::Status::GenericFailure, failure.to_string())
    }
}

struct Quoted<T>(T);

impl<T: fmt::Display> fmt::Display for Quoted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        if text.chars().count() > 200 {
            let cut: String = text.chars().take(200).collect();
            write!(f, "{cut:?}…")
        } else {
            write!(f, "{text:?}")
        }
    }
}

/// What was being done when a netstack error happened; it decides what a reset means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketOp {
    Connect,
    Accept,
    Send,
    Recv,
    UdpSend,
    UdpRecv,
}

impl SocketOp {
    const fn describe(self) -> &'static str {
        match self {
            SocketOp::Connect => "TCP connect",
            SocketOp::Accept => "TCP accept",
            SocketOp::Send => "TCP write",
            SocketOp::Recv => "TCP read",
            SocketOp::UdpSend => "UDP send",
            SocketOp::UdpRecv => "UDP receive",
        }
    }
}

/// Maps an error from the crate's socket types, which keep the precise bad-request reason.
pub fn from_netstack(error: netstack::Error, op: SocketOp) -> Failure {
    use netstack::Error as E;
    let what = op.describe();
    match error {
        E::ConnectionReset if op == SocketOp::Connect => Failure::new(
            Code::ConnectionRefused,
            format!("{what}: the peer refused the connection (reset during the handshake)"),
        ),
        E::ConnectionReset => {
            Failure::new(Code::ConnectionReset, format!("{what}: the connection was reset by the peer"))
        }
        error @ E::BadRequest(_) => from_bad_request(error, what),
        E::Internal(kind) => from_netstack_internal(kind, op),
    }
}

fn from_bad_request(error: netstack::Error, what: &str) -> Failure {
    // The reason type is not exported by the crate; its public constructors are.
    if error == netstack::Error::big_packet() {
        Failure::new(
            Code::MessageTooLarge,
            format!(
                "{what}: the datagram is larger than the socket buffer (at most {} bytes)",
                crate::limits::MAX_DATAGRAM
            ),
        )
    } else if error == netstack::Error::wrong_ip_version() {
        Failure::new(
            Code::InvalidArgument,
            format!("{what}: address family mismatch (an IPv4 socket cannot reach an IPv6 address, or the reverse)"),
        )
    } else if error == netstack::Error::unaddressable() {
        Failure::new(
            Code::InvalidArgument,
            format!("{what}: the address cannot be used (port 0 or an unspecified address)"),
        )
    } else {
        Failure::new(Code::InvalidArgument, format!("{what}: {error}"))
    }
}

fn from_netstack_internal(kind: netstack::InternalErrorKind, op: SocketOp) -> Failure {
    use netstack::InternalErrorKind as K;
    let what = op.describe();
    match kind {
        K::InternalChannelClosed => {
            Failure::new(Code::DeviceClosed, format!("{what}: the device's network stack has stopped"))
        }
        // A send or receive on a socket the peer has torn down.
        K::InvalidSocketState if matches!(op, SocketOp::Send | SocketOp::Recv) => {
            Failure::new(Code::ConnectionReset, format!("{what}: the connection is no longer open"))
        }
        other => Failure::internal(format!("{what}: network stack error ({other})")),
    }
}

/// Maps an error from a `Device` method.
pub fn from_device(error: tailscale::Error, what: &str) -> Failure {
    use tailscale::{Error as E, InternalErrorKind as K};
    match error {
        E::Timeout => Failure::new(Code::Timeout, format!("{what}: timed out")),
        E::ConnectionReset => Failure::new(Code::ConnectionReset, format!("{what}: connection reset")),
        E::KeyFileRead => Failure::new(Code::KeyFile, format!("{what}: could not read or parse the key file")),
        E::KeyFileWrite => Failure::new(Code::KeyFile, format!("{what}: could not write the key file")),
        E::Internal(K::InternalChannelClosed) => {
            Failure::new(Code::DeviceClosed, format!("{what}: the device's network stack has stopped"))
        }
        E::Internal(K::BadRequest) => Failure::new(Code::InvalidArgument, format!("{what}: bad request")),
        E::Internal(kind) => Failure::internal(format!("{what}: internal error ({kind})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailscale::netstack::{Error as E, InternalErrorKind as K};

    #[test]
    fn codes_read_as_their_names_in_upper_snake_case() {
        // What napi exports to index.d.ts is the variant name in UPPER_SNAKE: the prefix must be too.
        let all = [
            Code::KeyFile,
            Code::InvalidArgument,
            Code::ControlUnreachable,
            Code::NotAuthorized,
            Code::Timeout,
            Code::ConnectionRefused,
            Code::ConnectionReset,
            Code::AddressInUse,
            Code::MessageTooLarge,
            Code::DeviceClosed,
            Code::DeviceLost,
            Code::Internal,
        ];
        for code in all {
            let name = format!("{code:?}");
            let mut upper = String::new();
            for (i, c) in name.chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    upper.push('_');
                }
                upper.push(c.to_ascii_uppercase());
            }
            assert_eq!(code.as_str(), upper);
        }
    }

    #[test]
    fn message_starts_with_code() {
        let failure = Failure::invalid("hostname", "bad host", "must be a DNS label");
        assert_eq!(failure.to_string(), "INVALID_ARGUMENT: hostname: must be a DNS label (got \"bad host\")");
    }

    #[test]
    fn long_values_are_cut() {
        let failure = Failure::invalid("tags[0]", "x".repeat(500), "too long");
        assert!(failure.message.len() < 300, "{}", failure.message);
    }

    #[test]
    fn reset_during_connect_is_refused() {
        assert_eq!(from_netstack(E::ConnectionReset, SocketOp::Connect).code, Code::ConnectionRefused);
        assert_eq!(from_netstack(E::ConnectionReset, SocketOp::Recv).code, Code::ConnectionReset);
    }

    #[test]
    fn closed_stack_is_device_closed() {
        assert_eq!(from_netstack(E::Internal(K::InternalChannelClosed), SocketOp::Send).code, Code::DeviceClosed);
        assert_eq!(
            from_device(tailscale::Error::Internal(tailscale::InternalErrorKind::InternalChannelClosed), "x").code,
            Code::DeviceClosed
        );
    }

    #[test]
    fn invalid_state_on_io_is_reset() {
        assert_eq!(from_netstack(E::Internal(K::InvalidSocketState), SocketOp::Send).code, Code::ConnectionReset);
        assert_eq!(from_netstack(E::Internal(K::InvalidSocketState), SocketOp::Accept).code, Code::Internal);
    }

    #[test]
    fn device_errors_map_to_codes() {
        assert_eq!(from_device(tailscale::Error::Timeout, "x").code, Code::Timeout);
        assert_eq!(from_device(tailscale::Error::KeyFileRead, "x").code, Code::KeyFile);
    }
}
