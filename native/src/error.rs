//! The one mapping from Rust failures to JavaScript errors.
//!
//! Every rejection (and every throw of a synchronous call) is an `Error` that carries its
//! failure as data, in two own properties:
//!
//! - `code`: an `ErrorCode` (exported to `index.d.ts` from the enum below, so TypeScript checks
//!   against the same list);
//! - `subject`: the offending field for `INVALID_ARGUMENT` (`port`, `tags[1]`), otherwise what
//!   failed: the operation (`connect`, `TCP read`) or the closed handle (`TCP stream`).
//!
//! Its message, for people and logs, says the same and what happened:
//!
//! ```text
//! <CODE>: <subject>: <detail>
//! ```
//!
//! napi-rs builds a rejection from a status and a message only, so a call returns
//! [`Settled`], which turns a failure into that `Error` on the JavaScript thread. The codes
//! are documented in `native/README.md`; `@effect-tailscale/core` decodes them.

use std::fmt;

use napi::bindgen_prelude::{JsObjectValue, ToNapiValue};
use napi::{Env, JsValue, sys};
use napi_derive::napi;
use tailscale::netstack;

/// Every code a failure can carry: the `code` of the `Error`, and the start of its message.
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

/// A failure on its way to JavaScript: a code, its subject, and what happened, for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: Code,
    /// The offending field for `INVALID_ARGUMENT`, otherwise the operation or the closed handle.
    pub subject: String,
    pub detail: String,
}

pub type Result<T> = std::result::Result<T, Failure>;

impl Failure {
    pub fn new(code: Code, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { code, subject: subject.into(), detail: detail.into() }
    }

    /// Bad input: names the field, shows the value (never use for secrets) and says why.
    pub fn invalid(field: &str, value: impl fmt::Display, why: &str) -> Self {
        Self::new(Code::InvalidArgument, field, format!("{why} (got {})", Quoted(value)))
    }

    /// Bad input whose value must not be echoed (auth keys, key material).
    pub fn invalid_secret(field: &str, why: &str) -> Self {
        Self::new(Code::InvalidArgument, field, why)
    }

    pub fn device_closed(what: &str) -> Self {
        Self::new(Code::DeviceClosed, what, "is closed")
    }

    pub fn internal(what: &str, detail: impl Into<String>) -> Self {
        Self::new(Code::Internal, what, detail)
    }

    /// This failure as a JavaScript `Error` with `code` and `subject`, held so that napi-rs
    /// rejects (or throws) with that very object. Should the object not be built (the
    /// environment is going away), napi-rs's plain error stands in for it.
    fn into_js(self, env: &Env) -> napi::Error {
        let message = self.to_string();
        let built = env.create_error(napi::Error::from_reason(message)).and_then(|mut error| {
            error.set_named_property("code", self.code.as_str())?;
            error.set_named_property("subject", self.subject)?;
            Ok(napi::Error::from(error.to_unknown()))
        });
        built.unwrap_or_else(|unset| unset)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.code.as_str(), self.subject, self.detail)
    }
}

/// What a call returns: its value, or a failure that reaches JavaScript as an `Error` carrying
/// `code` and `subject`.
///
/// A rejection napi-rs builds itself is made off the JavaScript thread from a status and a
/// message; a value is converted on that thread, and a conversion that fails with a JavaScript
/// value settles the call with that value. So failures travel as values, and become errors
/// here. The name is not `Result`, which napi-rs would treat as its own: the `#[napi]`
/// functions that return it name their TypeScript type with `ts_return_type`.
pub struct Settled<T>(pub Result<T>);

impl<T> Settled<T> {
    /// Runs an async body whose `?` yields [`Failure`]s.
    pub async fn of(body: impl Future<Output = Result<T>>) -> Self {
        Self(body.await)
    }
}

// napi-rs's conversion trait is `unsafe` to implement and to call.
#[allow(unsafe_code)]
impl<T: ToNapiValue> ToNapiValue for Settled<T> {
    unsafe fn to_napi_value(env: sys::napi_env, settled: Self) -> napi::Result<sys::napi_value> {
        match settled.0 {
            // SAFETY: napi-rs calls this with the live `env` of the JavaScript thread, as `T`'s
            // conversion requires.
            Ok(value) => unsafe { T::to_napi_value(env, value) },
            Err(failure) => Err(failure.into_js(&Env::from_raw(env))),
        }
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
        E::ConnectionReset if op == SocketOp::Connect => {
            Failure::new(Code::ConnectionRefused, what, "the peer refused the connection (reset during the handshake)")
        }
        E::ConnectionReset => Failure::new(Code::ConnectionReset, what, "the connection was reset by the peer"),
        error @ E::BadRequest(_) => from_bad_request(error, what),
        E::Internal(kind) => from_netstack_internal(kind, op),
    }
}

fn from_bad_request(error: netstack::Error, what: &str) -> Failure {
    // The reason type is not exported by the crate; its public constructors are.
    if error == netstack::Error::big_packet() {
        Failure::new(
            Code::MessageTooLarge,
            what,
            format!("the datagram is larger than the socket buffer (at most {} bytes)", crate::limits::MAX_DATAGRAM),
        )
    } else if error == netstack::Error::wrong_ip_version() {
        Failure::new(
            Code::InvalidArgument,
            what,
            "address family mismatch (an IPv4 socket cannot reach an IPv6 address, or the reverse)",
        )
    } else if error == netstack::Error::unaddressable() {
        Failure::new(Code::InvalidArgument, what, "the address cannot be used (port 0 or an unspecified address)")
    } else {
        Failure::new(Code::InvalidArgument, what, error.to_string())
    }
}

fn from_netstack_internal(kind: netstack::InternalErrorKind, op: SocketOp) -> Failure {
    use netstack::InternalErrorKind as K;
    let what = op.describe();
    match kind {
        K::InternalChannelClosed => Failure::new(Code::DeviceClosed, what, "the device's network stack has stopped"),
        // A send or receive on a socket the peer has torn down.
        K::InvalidSocketState if matches!(op, SocketOp::Send | SocketOp::Recv) => {
            Failure::new(Code::ConnectionReset, what, "the connection is no longer open")
        }
        other => Failure::internal(what, format!("network stack error ({other})")),
    }
}

/// Maps an error from a `Device` method.
pub fn from_device(error: tailscale::Error, what: &str) -> Failure {
    use tailscale::{Error as E, InternalErrorKind as K};
    match error {
        E::Timeout => Failure::new(Code::Timeout, what, "timed out"),
        E::ConnectionReset => Failure::new(Code::ConnectionReset, what, "connection reset"),
        E::KeyFileRead => Failure::new(Code::KeyFile, what, "could not read or parse the key file"),
        E::KeyFileWrite => Failure::new(Code::KeyFile, what, "could not write the key file"),
        E::Internal(K::InternalChannelClosed) => {
            Failure::new(Code::DeviceClosed, what, "the device's network stack has stopped")
        }
        E::Internal(K::BadRequest) => Failure::new(Code::InvalidArgument, what, "bad request"),
        E::Internal(kind) => Failure::internal(what, format!("internal error ({kind})")),
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
    fn message_reads_code_subject_detail() {
        let failure = Failure::invalid("hostname", "bad host", "must be a DNS label");
        assert_eq!(failure.subject, "hostname");
        assert_eq!(failure.to_string(), "INVALID_ARGUMENT: hostname: must be a DNS label (got \"bad host\")");
    }

    #[test]
    fn long_values_are_cut() {
        let failure = Failure::invalid("tags[0]", "x".repeat(500), "too long");
        assert!(failure.detail.len() < 300, "{}", failure.detail);
    }

    #[test]
    fn subjects_name_the_operation() {
        assert_eq!(from_netstack(E::ConnectionReset, SocketOp::Recv).subject, "TCP read");
        assert_eq!(from_device(tailscale::Error::Timeout, "ping").subject, "ping");
        assert_eq!(Failure::device_closed("UDP socket").to_string(), "DEVICE_CLOSED: UDP socket: is closed");
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
