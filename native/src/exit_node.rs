//! The exit node: the peer that carries this device's traffic to addresses outside the tailnet,
//! set through the runtime's `SetExitNode` (our `ts_runtime` patch 23). Without it the crate
//! routed every approved exit node's default routes, so any of them (the last in its table)
//! carried that traffic unasked; with it, only the chosen one's are used, and none without one.
//!
//! A peer is chosen by name or tailnet address, as Go's `ExitNodeIP` pref is: the `exitNode`
//! option is looked up in each network map until a peer has it (until then, outside addresses
//! have no route), `setExitNode` at once. Once found, the choice is the peer's stable id, and a
//! device built again (`respawn`) keeps it.

use std::net::IpAddr;
use std::sync::Mutex;

use tokio::sync::watch;
use ts_control::StableNodeId as StableId;
use ts_runtime::peer_tracker::PeerTable;
use ts_runtime::{ActorRef, Runtime};

use crate::error::{Failure, Result};
use crate::sync::Recover;

/// Which peer carries traffic to outside addresses.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Choice {
    /// No exit node: outside addresses have no route.
    Nobody,
    /// A peer's name or tailnet address, not found in a network map yet.
    Wanted(String),
    /// This peer.
    Chosen(StableId),
}

/// A device's choice of exit node.
pub(crate) struct ExitNode {
    choice: Mutex<Choice>,
    /// Serializes changes, so the runtime hears them in the order they were made.
    changing: tokio::sync::Mutex<()>,
    /// False while a `Wanted` choice has not been looked up in a network map yet: a dial to an
    /// outside address waits for that, as a dial by name waits for the name.
    settled: watch::Sender<bool>,
}

impl ExitNode {
    pub(crate) fn new(choice: Choice) -> Self {
        let settled = !matches!(choice, Choice::Wanted(_));
        ExitNode {
            choice: Mutex::new(choice),
            changing: tokio::sync::Mutex::new(()),
            settled: watch::Sender::new(settled),
        }
    }

    pub(crate) fn choice(&self) -> Choice {
        self.choice.recover().clone()
    }

    /// The chosen peer's stable id, if one is chosen.
    pub(crate) fn chosen(&self) -> Option<StableId> {
        match &*self.choice.recover() {
            Choice::Chosen(id) => Some(id.clone()),
            _ => None,
        }
    }

    /// Waits until a wanted exit node has been looked up in a network map.
    pub(crate) async fn settled(&self) {
        let mut receiver = self.settled.subscribe();
        let _ = receiver.wait_for(|settled| *settled).await;
    }

    /// Makes `choice` the device's and tells the runtime.
    pub(crate) async fn set(
        &self,
        device: &tailscale::Device,
        choice: Choice,
    ) -> std::result::Result<(), tailscale::Error> {
        let _changing = self.changing.lock().await;
        self.apply(device.runtime(), choice).await
    }

    async fn apply(&self, runtime: &ActorRef<Runtime>, choice: Choice) -> std::result::Result<(), tailscale::Error> {
        let id = match &choice {
            Choice::Chosen(id) => Some(id.clone()),
            _ => None,
        };
        *self.choice.recover() = choice;
        self.settled.send_replace(true);
        runtime.ask(ts_runtime::SetExitNode(id)).await.map_err(|e| tailscale::Error::from(ts_runtime::Error::from(e)))
    }

    /// `apply` through a weak reference (`runtime` upgrades it): nothing to do once the runtime
    /// is gone.
    async fn apply_weak(&self, runtime: &impl Fn() -> Option<ActorRef<Runtime>>, choice: Choice) {
        let Some(runtime) = runtime() else { return };
        if let Err(error) = self.apply(&runtime, choice).await {
            tracing::debug!(%error, "the exit node could not be set");
        }
    }

    /// Tells a new device's runtime the choice, once: a chosen peer at once, a wanted one once a
    /// network map has it (every map is looked at until one does, or the choice changes, or the
    /// table's watch ends with the runtime).
    pub(crate) async fn follow(
        &self,
        runtime: &impl Fn() -> Option<ActorRef<Runtime>>,
        mut table: watch::Receiver<PeerTable>,
    ) {
        let wanted = match self.choice() {
            Choice::Nobody => return,
            Choice::Chosen(id) => {
                let _changing = self.changing.lock().await;
                if self.choice() == Choice::Chosen(id.clone()) {
                    self.apply_weak(runtime, Choice::Chosen(id)).await;
                }
                return;
            }
            Choice::Wanted(wanted) => wanted,
        };
        if table.wait_for(|table| table.version != 0).await.is_err() {
            return;
        }
        loop {
            let peers = table.borrow_and_update().peers.clone();
            {
                let _changing = self.changing.lock().await;
                if self.choice() != Choice::Wanted(wanted.clone()) {
                    return;
                }
                if let Some(peer) = find(&peers, &wanted) {
                    self.apply_weak(runtime, Choice::Chosen(peer.stable_id.clone())).await;
                    return;
                }
                self.settled.send_replace(true);
            }
            if table.changed().await.is_err() {
                return;
            }
        }
    }
}

/// The peer `wanted` names: a tailnet address, or a bare hostname or FQDN (as given, then in
/// lower case, how control normalizes names).
pub(crate) fn find<'a>(peers: &'a [tailscale::NodeInfo], wanted: &str) -> Option<&'a tailscale::NodeInfo> {
    if let Ok(ip) = wanted.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return peers.iter().find(|peer| peer.tailnet_address.contains(ip));
    }
    let lower = wanted.to_lowercase();
    peers.iter().find(|peer| peer.matches_name(wanted)).or_else(|| peers.iter().find(|peer| peer.matches_name(&lower)))
}

/// Whether `peer` offers itself as an exit node, as Go tells (`tsaddr.ContainsExitRoutes`):
/// control approved both its default routes, `0.0.0.0/0` and `::/0`.
pub(crate) fn offers_exit(peer: &tailscale::NodeInfo) -> bool {
    let default =
        |v4: bool| peer.accepted_routes.iter().any(|route| route.prefix_len() == 0 && route.addr().is_ipv4() == v4);
    default(true) && default(false)
}

/// Whether `peer` routes `ip` for this device: a route of its other than a default route
/// contains `ip`, or it is the chosen exit node and `ip` is outside the tailnet's own routes.
pub(crate) fn routes(peer: &tailscale::NodeInfo, ip: IpAddr, chosen: Option<&StableId>) -> bool {
    peer.accepted_routes
        .iter()
        .any(|route| route.contains(&ip) && (route.prefix_len() != 0 || chosen == Some(&peer.stable_id)))
}

/// Whether `ip` is in the tailnet's own ranges (Go's `tsaddr.IsTailscaleIP`: `100.64.0.0/10`
/// and `fd7a:115c:a1e0::/48`), where peers have their addresses; anything else is outside.
pub(crate) fn in_tailnet(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            a == 100 && (b & 0xc0) == 64
        }
        IpAddr::V6(v6) => v6.segments()[..3] == [0xfd7a, 0x115c, 0xa1e0],
    }
}

/// Checks an `exitNode` given by a caller: a tailnet address, or a hostname or FQDN.
pub(crate) fn validate(field: &str, peer: &str) -> Result<()> {
    let name = peer.trim_end_matches('.');
    let valid = peer.parse::<IpAddr>().is_ok()
        || (!name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty() && label.len() <= 63 && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }));
    if valid {
        Ok(())
    } else {
        Err(Failure::invalid(field, peer, "must be a peer's hostname, FQDN or tailnet address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(hostname: &str, ipv4: &str, routes: &[&str]) -> tailscale::NodeInfo {
        let mut node = crate::node_info::tests::node();
        node.hostname = hostname.to_string();
        node.stable_id = StableId(format!("stable-{hostname}"));
        node.tailnet_address.ipv4 = format!("{ipv4}/32").parse().unwrap();
        node.accepted_routes = routes.iter().map(|route| route.parse().unwrap()).collect();
        node
    }

    #[test]
    fn a_peer_offers_itself_with_both_default_routes() {
        assert!(offers_exit(&node("exit", "100.64.0.2", &["100.64.0.2/32", "0.0.0.0/0", "::/0"])));
        assert!(!offers_exit(&node("half", "100.64.0.3", &["100.64.0.3/32", "0.0.0.0/0"])));
        assert!(!offers_exit(&node("plain", "100.64.0.4", &["100.64.0.4/32", "10.0.0.0/8"])));
    }

    #[test]
    fn default_routes_count_for_the_chosen_exit_node_only() {
        let exit = node("exit", "100.64.0.2", &["100.64.0.2/32", "0.0.0.0/0", "::/0"]);
        let outside: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(!routes(&exit, outside, None));
        assert!(!routes(&exit, outside, Some(&StableId("stable-other".into()))));
        assert!(routes(&exit, outside, Some(&exit.stable_id)));
        // Its own address is routed whatever the choice.
        assert!(routes(&exit, "100.64.0.2".parse().unwrap(), None));
    }

    #[test]
    fn the_tailnet_ranges_are_told_from_outside_addresses() {
        for inside in ["100.64.0.1", "100.127.255.254", "fd7a:115c:a1e0::1"] {
            assert!(in_tailnet(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["100.63.255.255", "100.128.0.1", "192.0.2.1", "fd7a:115c:a1e1::1", "::1"] {
            assert!(!in_tailnet(outside.parse().unwrap()), "{outside}");
        }
    }

    #[test]
    fn peers_are_found_by_address_or_name() {
        let peers = vec![node("alpha", "100.64.0.2", &[]), node("beta", "100.64.0.3", &[])];
        assert_eq!(find(&peers, "100.64.0.3").map(|p| p.hostname.as_str()), Some("beta"));
        assert_eq!(find(&peers, "Alpha").map(|p| p.hostname.as_str()), Some("alpha"));
        assert!(find(&peers, "gamma").is_none());
    }

    #[test]
    fn a_bad_exit_node_names_the_field() {
        assert!(validate("exitNode", "exit-peer").is_ok());
        assert!(validate("exitNode", "exit-peer.tail-test.ts.net.").is_ok());
        assert!(validate("exitNode", "100.64.0.2").is_ok());
        let failure = validate("exitNode", "no spaces").unwrap_err();
        assert_eq!(failure.subject, "exitNode");
    }
}
