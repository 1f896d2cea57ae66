//! Disco pings of a peer and the direct path each peer is on, through the runtime's own actor
//! for them (our `ts_runtime` patch 21): the crate's API offers neither.

use std::time::Duration;

use napi_derive::napi;
use tokio::sync::{mpsc, watch};
use ts_runtime::peer_paths::{DirectPaths as CrateDirectPaths, DirectPathsWatch, PingStarted};

use crate::error::{Code, Failure, Result};

/// The direct path of one peer.
#[napi(object)]
pub struct DirectPath {
    /// The peer's `nodekey:<hex>`.
    pub node_key: String,
    /// `ip:port` or `[ip]:port`: where its traffic goes over UDP.
    pub endpoint: String,
}

/// Every peer on a direct path (the others' traffic goes through DERP).
#[napi(object)]
pub struct DirectPaths {
    /// Counts the changes; 0 before the first.
    pub version: f64,
    pub paths: Vec<DirectPath>,
}

impl From<&CrateDirectPaths> for DirectPaths {
    fn from(paths: &CrateDirectPaths) -> Self {
        let mut list: Vec<DirectPath> = paths
            .paths
            .iter()
            .map(|(key, addr)| DirectPath { node_key: key.to_string(), endpoint: addr.to_string() })
            .collect();
        list.sort_by(|a, b| a.node_key.cmp(&b.node_key));
        DirectPaths { version: paths.version as f64, paths: list }
    }
}

/// A disco ping's pong.
#[napi(object)]
pub struct Pong {
    /// Round trip, in milliseconds (fractional).
    pub latency_ms: f64,
    /// The UDP `ip:port` that answered, or null when the pong came through DERP.
    pub endpoint: Option<String>,
}

/// A watch of the device's direct paths, from its runtime.
pub async fn watch(
    device: &tailscale::Device,
) -> std::result::Result<watch::Receiver<CrateDirectPaths>, tailscale::Error> {
    let DirectPathsWatch(receiver) = device
        .runtime()
        .ask(ts_runtime::WatchPaths)
        .await
        .map_err(|e| tailscale::Error::from(ts_runtime::Error::from(e)))?;
    Ok(receiver)
}

/// The paths once their version differs from `known`; without `known`, as they are now.
pub async fn changed_from(mut receiver: watch::Receiver<CrateDirectPaths>, known: Option<u64>) -> Option<DirectPaths> {
    let Some(known) = known else {
        return Some(DirectPaths::from(&*receiver.borrow()));
    };
    receiver.wait_for(|paths| paths.version != known).await.ok().map(|paths| DirectPaths::from(&*paths))
}

/// How often an unanswered ping is sent again: a peer drops pings from a node it has not heard
/// of yet (its network map lags ours), and a datagram may be lost.
const PING_AGAIN: Duration = Duration::from_secs(1);

/// Disco-pings `peer` (known to this device as `address`) until a pong arrives or `timeout`
/// passes; `Ok(None)` when the runtime stopped meanwhile.
pub async fn ping(
    device: &tailscale::Device,
    peer: &tailscale::NodeInfo,
    address: &str,
    timeout: Duration,
) -> Result<Option<Pong>> {
    let (reply, mut pongs) = mpsc::channel(1);
    let attempts = async {
        loop {
            let started =
                device.runtime().ask(ts_runtime::PingPeer { node_key: peer.node_key, reply: reply.clone() }).await;
            match started {
                Ok(PingStarted::Sent) => {}
                Ok(PingStarted::UnknownPeer) => {
                    return Err(Failure::invalid("ip", address, "is no longer the tailnet address of a peer"));
                }
                Ok(PingStarted::NoDiscoKey) => {
                    return Err(Failure::new(
                        Code::ConnectionRefused,
                        "ping",
                        format!("control gave the peer {address} no disco key, so it cannot be pinged"),
                    ));
                }
                Err(_) => return Ok(None),
            }
            if let Ok(pong) = tokio::time::timeout(PING_AGAIN, pongs.recv()).await {
                return Ok(pong.map(|pong| Pong {
                    latency_ms: pong.latency.as_secs_f64() * 1000.0,
                    endpoint: pong.endpoint.map(|addr| addr.to_string()),
                }));
            }
        }
    };
    match tokio::time::timeout(timeout, attempts).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure::new(Code::Timeout, "ping", format!("no pong from {address} within {timeout:?}"))),
    }
}
