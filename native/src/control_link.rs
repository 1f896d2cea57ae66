//! Whether a device has a live session with control.
//!
//! With our `ts_runtime` patch, control going away no longer stops the crate's runtime: the
//! device keeps its addresses, peers and WireGuard sessions, and its control actor dials again
//! with backoff. Only what needs control (new peers, new keys) waits. The runtime watch asks
//! the control actor each second and publishes changes here, so JavaScript can say
//! "running, control unreachable" instead of treating the outage as a lost device.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub struct ControlLink {
    connected: watch::Sender<bool>,
}

impl Default for ControlLink {
    fn default() -> Self {
        Self { connected: watch::Sender::new(false) }
    }
}

impl ControlLink {
    pub fn set(&self, connected: bool) {
        self.connected.send_if_modified(|current| std::mem::replace(current, connected) != connected);
    }

    /// Whether control is connected, once that differs from `known`; `None` once `ended` is
    /// cancelled (the device shut down or lost).
    pub async fn changed_from(&self, known: bool, ended: &CancellationToken) -> Option<bool> {
        let mut receiver = self.connected.subscribe();
        tokio::select! {
            biased;
            () = ended.cancelled() => None,
            result = receiver.wait_for(|connected| *connected != known) => result.ok().map(|c| *c),
        }
    }
}

/// Asks the device's control actor whether it has a session; `None` when it cannot answer
/// (a stopped runtime is the health probe's to report).
pub async fn connected(device: &tailscale::Device) -> Option<bool> {
    device.runtime().ask(ts_runtime::ControlConnected).await.ok()
}
