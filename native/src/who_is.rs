//! Who is calling: the peer that owns a tailnet address, and the app capabilities the packet
//! filter's grants give it toward this device, as Go's `WhoIs` reports them (`CapsWithValues`
//! for the caller and this device's address of the caller's family). The grants and user
//! profiles come from the runtime's peer table (our `ts_control` patch 03, `ts_runtime` 21).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use napi_derive::napi;
use ts_control::{AppGrant, TailnetAddress};

use crate::node_info::NodeInfo;

/// The peer behind a tailnet address and what the policy grants it toward this device.
#[napi(object)]
pub struct WhoIs {
    /// The peer, with its user (none when tagged) and its node capabilities.
    pub node: NodeInfo,
    /// App capability name to its values, each a raw JSON text (Go's `PeerCapMap`).
    pub app_capabilities: HashMap<String, Vec<String>>,
}

/// The app capabilities `grants` give `caller` (whose node has `caller_caps`) toward `own`'s
/// address of the same family; a capability in several grants has all their values, in order.
pub fn app_capabilities(
    grants: &[AppGrant],
    caller: IpAddr,
    caller_caps: &BTreeMap<String, Vec<String>>,
    own: &TailnetAddress,
) -> BTreeMap<String, Vec<String>> {
    let dst: IpAddr = match caller {
        IpAddr::V4(_) => own.ipv4.addr().into(),
        IpAddr::V6(_) => own.ipv6.addr().into(),
    };
    let mut granted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for grant in grants {
        let from_caller = grant.src_prefixes.iter().any(|prefix| prefix.contains(&caller))
            || grant.src_caps.iter().any(|cap| caller_caps.contains_key(cap));
        if !from_caller || !grant.dsts.iter().any(|prefix| prefix.contains(&dst)) {
            continue;
        }
        for (name, values) in &grant.caps {
            granted.entry(name.clone()).or_default().extend(values.iter().cloned());
        }
    }
    granted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> TailnetAddress {
        TailnetAddress { ipv4: "100.64.0.1/32".parse().unwrap(), ipv6: "fd7a:115c:a1e0::1/128".parse().unwrap() }
    }

    fn grant(srcs: &[&str], src_caps: &[&str], dsts: &[&str], caps: &[(&str, &[&str])]) -> AppGrant {
        AppGrant {
            src_prefixes: srcs.iter().map(|s| s.parse().unwrap()).collect(),
            src_caps: src_caps.iter().map(|s| s.to_string()).collect(),
            dsts: dsts.iter().map(|s| s.parse().unwrap()).collect(),
            caps: caps.iter().map(|(k, v)| (k.to_string(), v.iter().map(|v| v.to_string()).collect())).collect(),
        }
    }

    #[test]
    fn grants_match_the_caller_and_this_devices_address_of_its_family() {
        let grants = [
            grant(&["100.64.0.2/32"], &[], &["100.64.0.1/32"], &[("example.com/cap/a", &[r#"{"x":1}"#])]),
            grant(&["0.0.0.0/0", "::/0"], &[], &["0.0.0.0/0", "::/0"], &[("example.com/cap/a", &["2"])]),
            grant(&["100.64.0.3/32"], &[], &["100.64.0.1/32"], &[("example.com/cap/other-caller", &[])]),
            grant(&["100.64.0.2/32"], &[], &["100.64.0.9/32"], &[("example.com/cap/other-device", &[])]),
            grant(&[], &["example.com/node/admin"], &["100.64.0.0/10"], &[("example.com/cap/admin", &[])]),
        ];
        let caller: IpAddr = "100.64.0.2".parse().unwrap();
        let caps = app_capabilities(&grants, caller, &BTreeMap::new(), &own());
        assert_eq!(caps.len(), 1);
        assert_eq!(caps["example.com/cap/a"], vec![r#"{"x":1}"#.to_string(), "2".to_string()]);

        let admin = BTreeMap::from([("example.com/node/admin".to_string(), vec![])]);
        let caps = app_capabilities(&grants, caller, &admin, &own());
        assert!(caps.contains_key("example.com/cap/admin"), "a source node capability matches");

        let over_ipv6: IpAddr = "fd7a:115c:a1e0::2".parse().unwrap();
        let caps = app_capabilities(&grants, over_ipv6, &BTreeMap::new(), &own());
        assert_eq!(caps.keys().collect::<Vec<_>>(), ["example.com/cap/a"]);
        assert_eq!(caps["example.com/cap/a"], vec!["2".to_string()], "only the wildcard grant covers IPv6");
    }
}
