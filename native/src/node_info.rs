//! `tailscale::NodeInfo` (the crate's `Node`) as a plain JavaScript object, with the user who
//! owns it (from the runtime's user profiles, our `ts_runtime` patch 22).

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use napi_derive::napi;
use tailscale::NodeInfo as Node;

/// A node's connection to the control plane (not reachability), tagged as core's `NodeStatus`
/// is (`_tag`), so it crosses the boundary in the shape core decodes. When `Offline`: the last
/// connection as reported by control (ISO-8601, rounded to ~10 minutes), and as estimated locally.
#[napi(discriminant = "_tag")]
#[derive(Debug, Clone, PartialEq)]
pub enum NodeStatus {
    Unknown,
    Online,
    Offline { last_seen_control: Option<String>, last_seen_estimated: String },
}

/// A tailnet user, as control describes them (`UserProfile`).
#[napi(object)]
#[derive(Debug, Clone, PartialEq)]
pub struct UserProfile {
    pub id: i64,
    /// An email address or "email-ish" name, e.g. `alice@example.com`.
    pub login_name: String,
    pub display_name: Option<String>,
    pub profile_pic_url: Option<String>,
}

impl From<&ts_control::UserProfile> for UserProfile {
    fn from(profile: &ts_control::UserProfile) -> Self {
        UserProfile {
            id: profile.id,
            login_name: profile.login_name.clone(),
            display_name: profile.display_name.clone(),
            profile_pic_url: profile.profile_pic_url.clone(),
        }
    }
}

/// User profiles by user id, as the runtime's peer table keeps them.
pub type Users = BTreeMap<i64, ts_control::UserProfile>;

/// Every field of the crate's `Node`, and its owner. Keys are public keys only.
#[napi(object)]
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    /// Control's numeric node id.
    pub id: i64,
    pub stable_id: String,
    pub hostname: String,
    /// `<hostname>.<tailnet>.` with the trailing dot, or null without a tailnet suffix.
    pub fqdn: Option<String>,
    pub tailnet: Option<String>,
    pub capability_version: u32,
    pub status: NodeStatus,
    pub node_capabilities: HashMap<String, Vec<String>>,
    pub tags: Vec<String>,
    /// The user who owns the node; none for a tagged node (its tags are its identity) or a user
    /// control has sent no profile of.
    pub user: Option<UserProfile>,
    /// CIDR, e.g. `100.64.0.1/32`.
    pub tailnet_ipv4: String,
    /// CIDR, e.g. `fd7a:115c:a1e0::1/128`.
    pub tailnet_ipv6: String,
    /// `nodekey:<hex>`
    pub node_key: String,
    /// ISO-8601. Control's "never" arrives as year 1 (`0001-01-01T00:00:00Z`).
    pub node_key_expiry: Option<String>,
    /// `mkey:<hex>`
    pub machine_key: Option<String>,
    /// `discokey:<hex>`
    pub disco_key: Option<String>,
    /// Base64.
    pub tailnet_lock_key_signature: Option<String>,
    /// CIDRs: the node's own addresses plus any subnet routes.
    pub accepted_routes: Vec<String>,
    /// `ip:port` or `[ip]:port`.
    pub underlay_addresses: Vec<String>,
    pub derp_region: Option<u32>,
}

fn iso(time: &chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

impl NodeInfo {
    /// The node, owned by its user's profile from `users` unless it is tagged.
    pub fn new(node: &Node, users: &Users) -> Self {
        use ts_control::NodeStatus as S;
        let status = match &node.status {
            S::Unknown => NodeStatus::Unknown,
            S::Online => NodeStatus::Online,
            S::Offline(seen) => NodeStatus::Offline {
                last_seen_control: seen.control.as_ref().map(iso),
                last_seen_estimated: iso(&seen.estimated),
            },
        };
        NodeInfo {
            id: node.id,
            stable_id: node.stable_id.0.clone(),
            hostname: node.hostname.clone(),
            fqdn: node.fqdn_opt(true),
            tailnet: node.tailnet.clone(),
            capability_version: u32::from(u16::from(node.capability_version)),
            status,
            node_capabilities: node.node_capabilities.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            tags: node.tags.clone(),
            user: if node.tags.is_empty() { users.get(&node.user).map(UserProfile::from) } else { None },
            tailnet_ipv4: node.tailnet_address.ipv4.to_string(),
            tailnet_ipv6: node.tailnet_address.ipv6.to_string(),
            node_key: node.node_key.to_string(),
            node_key_expiry: node.node_key_expiry.as_ref().map(iso),
            machine_key: node.machine_key.as_ref().map(ToString::to_string),
            disco_key: node.disco_key.as_ref().map(ToString::to_string),
            tailnet_lock_key_signature: node
                .tailnet_lock_key_signature
                .as_ref()
                .map(|sig| base64::engine::general_purpose::STANDARD.encode(sig)),
            accepted_routes: node.accepted_routes.iter().map(ToString::to_string).collect(),
            underlay_addresses: node.underlay_addresses.iter().map(ToString::to_string).collect(),
            derp_region: node.derp_region.map(|region| region.0.get()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::num::NonZeroU32;

    use chrono::TimeZone;
    use tailscale::keys::{DiscoKeyPair, MachineKeyPair, NodeKeyPair};
    use ts_control::{NodeLastSeen, NodeStatus as S, StableNodeId, TailnetAddress};

    pub(crate) fn node() -> Node {
        let node_key = NodeKeyPair::random().public;
        Node {
            id: 42,
            stable_id: StableNodeId("nSTABLE1CNTRL".into()),
            hostname: "echo-peer".into(),
            capability_version: ts_capabilityversion::CapabilityVersion::V130,
            status: S::Offline(NodeLastSeen {
                control: Some(chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 40, 0).unwrap()),
                estimated: chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 45, 6).unwrap(),
            }),
            tailnet: Some("tail-test.ts.net".into()),
            node_capabilities: BTreeMap::from([("cap/a".to_string(), vec!["x".to_string()])]),
            tags: vec!["tag:server".into()],
            user: 7,
            tailnet_address: TailnetAddress {
                ipv4: "100.64.0.1/32".parse().unwrap(),
                ipv6: "fd7a:115c:a1e0::1/128".parse().unwrap(),
            },
            node_key,
            node_key_expiry: Some(chrono::Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap()),
            machine_key: Some(MachineKeyPair::random().public),
            disco_key: Some(DiscoKeyPair::random().public),
            tailnet_lock_key_signature: Some(vec![1, 2, 3]),
            accepted_routes: vec!["100.64.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()],
            underlay_addresses: vec!["127.0.0.1:41641".parse().unwrap(), "[::1]:41641".parse().unwrap()],
            derp_region: Some(ts_derp::RegionId(NonZeroU32::new(900).unwrap())),
        }
    }

    #[test]
    fn every_field_is_mapped() {
        let source = node();
        let info = NodeInfo::new(&source, &Users::new());
        assert_eq!(info.id, 42);
        assert_eq!(info.stable_id, "nSTABLE1CNTRL");
        assert_eq!(info.hostname, "echo-peer");
        assert_eq!(info.fqdn.as_deref(), Some("echo-peer.tail-test.ts.net."));
        assert_eq!(info.tailnet.as_deref(), Some("tail-test.ts.net"));
        assert_eq!(info.capability_version, 130);
        assert_eq!(
            info.status,
            NodeStatus::Offline {
                last_seen_control: Some("2026-01-02T03:40:00Z".into()),
                last_seen_estimated: "2026-01-02T03:45:06Z".into()
            }
        );
        assert_eq!(info.node_capabilities["cap/a"], vec!["x".to_string()]);
        assert_eq!(info.tags, vec!["tag:server".to_string()]);
        assert_eq!(info.tailnet_ipv4, "100.64.0.1/32");
        assert_eq!(info.tailnet_ipv6, "fd7a:115c:a1e0::1/128");
        assert_eq!(info.node_key, source.node_key.to_string());
        assert!(info.node_key.starts_with("nodekey:"));
        assert_eq!(info.node_key_expiry.as_deref(), Some("0001-01-01T00:00:00Z"));
        assert!(info.machine_key.as_deref().unwrap().starts_with("mkey:"));
        assert!(info.disco_key.as_deref().unwrap().starts_with("discokey:"));
        assert_eq!(info.tailnet_lock_key_signature.as_deref(), Some("AQID"));
        assert_eq!(info.accepted_routes, vec!["100.64.0.1/32".to_string(), "10.0.0.0/8".to_string()]);
        assert_eq!(info.underlay_addresses, vec!["127.0.0.1:41641".to_string(), "[::1]:41641".to_string()]);
        assert_eq!(info.derp_region, Some(900));
    }

    fn users() -> Users {
        Users::from([(
            7,
            ts_control::UserProfile {
                id: 7,
                login_name: "alice@example.com".into(),
                display_name: Some("Alice".into()),
                profile_pic_url: None,
            },
        )])
    }

    #[test]
    fn an_untagged_node_is_owned_by_its_user() {
        let mut source = node();
        source.tags.clear();
        let user = NodeInfo::new(&source, &users()).user.expect("a user");
        assert_eq!(user.id, 7);
        assert_eq!(user.login_name, "alice@example.com");
        assert_eq!(user.display_name.as_deref(), Some("Alice"));
        assert!(NodeInfo::new(&source, &Users::new()).user.is_none(), "no profile, no user");
    }

    #[test]
    fn a_tagged_node_has_its_tags_and_no_user() {
        let info = NodeInfo::new(&node(), &users());
        assert_eq!(info.tags, vec!["tag:server".to_string()]);
        assert!(info.user.is_none());
    }

    #[test]
    fn online_and_unknown_have_no_times() {
        let mut source = node();
        source.status = S::Online;
        source.tailnet = None;
        let info = NodeInfo::new(&source, &Users::new());
        assert_eq!(info.status, NodeStatus::Online);
        assert!(info.fqdn.is_none());
        source.status = S::Unknown;
        assert_eq!(NodeInfo::new(&source, &Users::new()).status, NodeStatus::Unknown);
    }
}
