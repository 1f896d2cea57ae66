//! Every peer of a device, and each new network map's peer table, through the runtime's own
//! watch (our `ts_runtime` patch 11): the crate's API offers lookups only. The table also holds
//! the user profiles and the packet filter's app-capability grants (patch 22).

use napi_derive::napi;
use tokio::sync::watch;
use ts_runtime::peer_tracker::PeerTable as CratePeerTable;

use crate::node_info::NodeInfo;

/// The peer table as of one network map.
#[napi(object)]
pub struct PeerTable {
    /// Counts the network maps that updated the peers; 0 before the first.
    pub version: f64,
    /// Every peer, ordered by node id.
    pub peers: Vec<NodeInfo>,
}

impl From<&CratePeerTable> for PeerTable {
    fn from(table: &CratePeerTable) -> Self {
        let peers = table.peers.iter().map(|node| NodeInfo::new(node, &table.users)).collect();
        PeerTable { version: table.version as f64, peers }
    }
}

/// A watch of the device's peer table, from its runtime.
pub async fn watch(device: &tailscale::Device) -> Result<watch::Receiver<CratePeerTable>, tailscale::Error> {
    let ts_runtime::peer_tracker::PeerTableWatch(receiver) = device
        .runtime()
        .ask(ts_runtime::WatchPeers)
        .await
        .map_err(|e| tailscale::Error::from(ts_runtime::Error::from(e)))?;
    Ok(receiver)
}

/// The table once its version differs from `known`.
pub async fn changed_from(mut receiver: watch::Receiver<CratePeerTable>, known: u64) -> Option<PeerTable> {
    receiver.wait_for(|table| table.version != known).await.ok().map(|table| PeerTable::from(&*table))
}
