//! Whether the crate's runtime behind a device is still there.
//!
//! tailscale-rs runs a device as a tree of actors. When one of them gives up for good (control
//! refusing the node, or a panic that uses up a supervisor's restarts), the runtime stops and every later call fails with `Internal(Actor)`; nothing restarts it and
//! nothing reports it. The addon notices (a probe every second, and after any call that failed
//! that way), marks the device lost, and ends its pending calls and sockets, so JavaScript can
//! build the device again from the same key state (`Device.respawn`).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::{Code, Failure};

/// How often an idle device checks that its runtime is still there.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Health {
    lost: CancellationToken,
    cause: OnceLock<String>,
}

impl Health {
    /// Records the loss once; returns whether this call was the one that recorded it.
    pub fn mark_lost(&self, cause: String) -> bool {
        let first = self.cause.set(cause).is_ok();
        self.lost.cancel();
        first
    }

    pub fn cause(&self) -> Option<&str> {
        self.cause.get().map(String::as_str)
    }

    pub async fn lost(&self) {
        self.lost.cancelled().await;
    }

    /// `DEVICE_LOST` for `what`, when the runtime is gone.
    pub fn failure(&self, what: &str) -> Option<Failure> {
        self.cause().map(|cause| lost(what, cause))
    }
}

pub fn lost(what: &str, cause: &str) -> Failure {
    Failure::new(
        Code::DeviceLost,
        what,
        format!("the device's runtime has stopped ({cause}); it must be connected again"),
    )
}

/// Whether the runtime is gone. A lookup of the unspecified address goes through the runtime
/// and registry actors to the peer tracker (never to control, whose actor is restarted on its
/// own and then answers `Internal(Actor)` for a moment) and answers `Ok(None)` while they live.
pub async fn runtime_gone(device: &tailscale::Device) -> Option<String> {
    match device.peer_by_tailnet_ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).await {
        Err(error @ tailscale::Error::Internal(tailscale::InternalErrorKind::Actor)) => Some(error.to_string()),
        _ => None,
    }
}
