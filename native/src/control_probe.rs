//! Reaching control before the crate tries: the crate's first control dial happens inside an
//! actor whose failure is only logged, after which `Device::new` never returns.

use std::future::Future;
use std::time::Duration;

use crate::error::{Code, Failure, Result};

/// The crate's first control dial happens inside an actor whose failure is only logged, after
/// which `Device::new` never returns. A TCP connection (and, for https, a TLS handshake) first
/// turns the common cases (nobody listening, no route, unknown host, an untrusted certificate)
/// into an immediate, typed error.
pub(crate) async fn probe_control(
    url: &url::Url,
    deadline: Option<tokio::time::Instant>,
    limit: Option<Duration>,
) -> Result<()> {
    let unreachable = |why: String| {
        Failure::new(Code::ControlUnreachable, "connect", format!("cannot reach the control server at {url}: {why}"))
    };
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let dial = tokio::net::TcpStream::connect((host.clone(), port));
    let stream = within(deadline, dial)
        .await
        .ok_or_else(|| connect_timed_out(limit, &format!("no TCP connection to the control server at {url}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    if url.scheme() != "https" {
        return Ok(());
    }
    // The crate's own TLS check (its roots, its verifier): a certificate control's clients will
    // not trust fails here at once with the reason, instead of the crate retrying in silence.
    let name = ts_tls_util::ServerName::try_from(host.clone())
        .map_err(|e| unreachable(format!("{host} is not a name TLS can verify ({e})")))?;
    within(deadline, ts_tls_util::connect(name, stream))
        .await
        .ok_or_else(|| {
            connect_timed_out(limit, &format!("the TLS handshake with the control server at {url} did not finish"))
        })?
        .map(drop)
        .map_err(|e| unreachable(format!("TLS handshake failed: {e}")))
}

/// `connectTimeoutMs` passed: the one limit on connecting (core passes its own through).
pub(crate) fn connect_timed_out(limit: Option<Duration>, pending: &str) -> Failure {
    let ms = limit.map_or(0, |limit| limit.as_millis());
    Failure::new(Code::Timeout, "connect", format!("timed out after {ms} ms: {pending}"))
}

/// `future`, bounded by `deadline` when there is one; `None` when the deadline passed first.
pub(crate) async fn within<T>(deadline: Option<tokio::time::Instant>, future: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, future).await.ok(),
        None => Some(future.await),
    }
}
