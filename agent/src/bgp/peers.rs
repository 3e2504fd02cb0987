//! Who a node peers with, Calico's way: a pure function of the node records and the BGP
//! settings.
//!
//! - node-to-node mesh (on by default): every other node, `Mesh_<a_b_c_d>`, `passive on` toward
//!   peers with a higher address so that only one side connects (no collision race);
//! - mesh off: a node peers with the route reflectors (nodes with a cluster id), a reflector
//!   with every other node: `rr client` toward nodes that are not reflectors (`Node_*`);
//! - explicit peers (a rack's router): global ones on every node (`Global_*`), node-specific
//!   ones on their node (`Node_*`).

use podnet_ipam::bgp::BgpSettings;
use podnet_ipam::nodes::NodeRecord;
use serde::Serialize;
use std::net::Ipv4Addr;

/// What `calicoctl node status` calls the PEER TYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum PeerType {
    Mesh,
    Global,
    NodeSpecific,
}

impl PeerType {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerType::Mesh => "node-to-node mesh",
            PeerType::Global => "global",
            PeerType::NodeSpecific => "node specific",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            PeerType::Mesh => "Mesh_",
            PeerType::Global => "Global_",
            PeerType::NodeSpecific => "Node_",
        }
    }

    /// The type and address a BIRD protocol name stands for (`Mesh_192_168_110_104`).
    pub fn from_protocol(name: &str) -> Option<(PeerType, Ipv4Addr)> {
        [PeerType::Mesh, PeerType::Global, PeerType::NodeSpecific]
            .into_iter()
            .find_map(|t| {
                let ip = name
                    .strip_prefix(t.prefix())?
                    .replace('_', ".")
                    .parse()
                    .ok()?;
                Some((t, ip))
            })
    }
}

/// One BGP session to configure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BgpPeer {
    pub kind: PeerType,
    pub ip: Ipv4Addr,
    pub as_number: u32,
    /// Wait for the peer to connect.
    pub passive: bool,
    /// This node reflects routes to the peer, with this cluster id.
    pub rr_client_of: Option<Ipv4Addr>,
    /// The node or peer record it comes from, for the config's comments.
    pub from: String,
}

impl BgpPeer {
    /// The BIRD protocol name: `Mesh_192_168_110_104`.
    pub fn protocol(&self) -> String {
        format!(
            "{}{}",
            self.kind.prefix(),
            self.ip.to_string().replace('.', "_")
        )
    }
}

/// Every session node `me` should have, in a stable order, one per peer address.
pub fn peers(me: &str, nodes: &[NodeRecord], bgp: &BgpSettings) -> Vec<BgpPeer> {
    let Some(mine) = nodes.iter().find(|n| n.name == me) else {
        return Vec::new();
    };
    let my_rr = bgp.reflector_id(me);
    let node_peer = |n: &NodeRecord, kind: PeerType, rr_client_of| BgpPeer {
        kind,
        ip: n.ip,
        as_number: bgp.node_as(&n.name),
        passive: n.ip > mine.ip,
        rr_client_of,
        from: format!("node {}", n.name),
    };
    let mut out: Vec<BgpPeer> = Vec::new();
    let others = nodes.iter().filter(|n| n.name != me && n.ip != mine.ip);
    for n in others {
        let their_rr = bgp.reflector_id(&n.name);
        let peer = if bgp.cluster.node_to_node_mesh {
            Some(node_peer(n, PeerType::Mesh, None))
        } else {
            match (my_rr, their_rr) {
                (Some(id), None) => Some(node_peer(n, PeerType::NodeSpecific, Some(id))),
                (_, Some(_)) => Some(node_peer(n, PeerType::NodeSpecific, None)),
                (None, None) => None,
            }
        };
        out.extend(peer);
    }
    for p in &bgp.peers {
        let kind = match p.node.as_deref() {
            None => PeerType::Global,
            Some(n) if n == me => PeerType::NodeSpecific,
            Some(_) => continue,
        };
        if p.peer_ip == mine.ip || out.iter().any(|o| o.ip == p.peer_ip) {
            continue;
        }
        out.push(BgpPeer {
            kind,
            ip: p.peer_ip,
            as_number: p.as_number,
            passive: false,
            rr_client_of: None,
            from: format!("peer {}", p.name),
        });
    }
    out.sort_by_key(|p| (p.kind, p.ip));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::render::tests::{reflectors, seed_nodes, with_peers};
    use crate::desired::Mode;

    fn five() -> Vec<NodeRecord> {
        seed_nodes(Mode::Ipip)
    }

    #[test]
    fn the_mesh_peers_every_other_node_passive_toward_higher_addresses() {
        let p = peers("sung-ubuntu04", &five(), &BgpSettings::default());
        let got: Vec<(String, bool)> = p.iter().map(|p| (p.protocol(), p.passive)).collect();
        assert_eq!(
            got,
            [
                ("Mesh_192_168_110_100".to_string(), false),
                ("Mesh_192_168_110_101".to_string(), false),
                ("Mesh_192_168_110_102".to_string(), false),
                ("Mesh_192_168_110_104".to_string(), true),
            ]
        );
        assert!(p
            .iter()
            .all(|p| p.as_number == 64512 && p.kind == PeerType::Mesh));
    }

    #[test]
    fn without_the_mesh_nodes_peer_with_reflectors_and_reflectors_with_everyone() {
        let bgp = reflectors();
        let client = peers("sung-ubuntu04", &five(), &bgp);
        let ips: Vec<String> = client.iter().map(|p| p.protocol()).collect();
        assert_eq!(ips, ["Node_192_168_110_100", "Node_192_168_110_101"]);
        assert!(client.iter().all(|p| p.rr_client_of.is_none()));

        let rr = peers("sung-ubuntu01", &five(), &bgp);
        assert_eq!(rr.len(), 4);
        let to_other_rr = rr.iter().find(|p| p.ip.octets()[3] == 101).unwrap();
        assert_eq!(to_other_rr.rr_client_of, None, "reflectors peer as equals");
        assert!(rr
            .iter()
            .filter(|p| p.ip.octets()[3] > 101)
            .all(|p| p.rr_client_of == Some("224.0.0.1".parse().unwrap())));
    }

    #[test]
    fn explicit_peers_are_global_or_for_their_node_only() {
        let mut bgp = with_peers();
        bgp.cluster.node_to_node_mesh = false;
        let on4: Vec<String> = peers("sung-ubuntu04", &five(), &bgp)
            .iter()
            .map(|p| format!("{} as {}", p.protocol(), p.as_number))
            .collect();
        assert_eq!(
            on4,
            [
                "Global_192_168_0_254 as 65001",
                "Node_192_168_0_253 as 65002"
            ]
        );
        let on5: Vec<String> = peers("sung-ubuntu05", &five(), &bgp)
            .iter()
            .map(|p| p.protocol())
            .collect();
        assert_eq!(on5, ["Global_192_168_0_254"]);
    }

    #[test]
    fn protocol_names_read_back() {
        assert_eq!(
            PeerType::from_protocol("Mesh_192_168_110_104"),
            Some((PeerType::Mesh, "192.168.110.104".parse().unwrap()))
        );
        assert_eq!(
            PeerType::from_protocol("Global_10_0_0_1").map(|p| p.0),
            Some(PeerType::Global)
        );
        assert_eq!(PeerType::from_protocol("kernel1"), None);
    }
}
