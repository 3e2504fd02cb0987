//! Which routes (and, for VXLAN, which neighbour and FDB entries) a node should have: a pure
//! function of the datastore snapshot (nodes and blocks) and the node's own settings.
//!
//! - a block affine to this node: `blackhole <block>` (its pods have /32s; the rest drops);
//! - a block of another node, by encapsulation: ipip `<block> via <nodeIP> dev tunl0 onlink`;
//!   vxlan `<block> via <tunnelIP> dev vxlan.calico onlink` plus "tunnelIP is at MAC" and
//!   "MAC is behind nodeIP"; none `<block> via <nodeIP> dev <uplink>`;
//! - cross-subnet: peers in this node's own subnet get the unencapsulated route.

use ipnet::Ipv4Net;
use podnet_ipam::nodes::NodeRecord;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

/// How packets to other nodes' pods are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    Ipip,
    Vxlan,
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Ipip => "ipip",
            Mode::Vxlan => "vxlan",
            Mode::None => "none",
        }
    }

    /// Bytes the encapsulation takes from the uplink MTU.
    pub fn overhead(self) -> u32 {
        match self {
            Mode::Ipip => 20,
            Mode::Vxlan => 50,
            Mode::None => 0,
        }
    }
}

/// The deciding node.
#[derive(Debug, Clone)]
pub struct Me {
    pub name: String,
    /// The node's address with its subnet's prefix length.
    pub ip: Ipv4Net,
    pub mode: Mode,
    pub cross_subnet: bool,
}

/// Which device a route leaves by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dev {
    Tunnel,
    Uplink,
}

/// A route to have.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Want {
    Blackhole,
    Via {
        gateway: Ipv4Addr,
        dev: Dev,
        onlink: bool,
    },
}

/// Everything the node should have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    pub routes: BTreeMap<Ipv4Net, Want>,
    /// VXLAN: remote tunnel IP -> remote device MAC.
    pub neighbours: BTreeSet<(Ipv4Addr, [u8; 6])>,
    /// VXLAN: remote device MAC -> remote node IP.
    pub fdb: BTreeSet<([u8; 6], Ipv4Addr)>,
}

/// A block as routing sees it: its CIDR and the node it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockView {
    pub cidr: Ipv4Net,
    pub node: Option<String>,
}

pub fn desired(me: &Me, nodes: &[NodeRecord], blocks: &[BlockView]) -> Desired {
    let by_name: HashMap<&str, &NodeRecord> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut out = Desired::default();
    for b in blocks {
        let Some(owner) = b.node.as_deref() else {
            continue;
        };
        if owner == me.name {
            out.routes.insert(b.cidr, Want::Blackhole);
            continue;
        }
        let Some(peer) = by_name.get(owner) else {
            continue;
        };
        let direct = Want::Via {
            gateway: peer.ip,
            dev: Dev::Uplink,
            onlink: false,
        };
        let want = if me.cross_subnet && me.ip.contains(&peer.ip) {
            direct
        } else {
            match me.mode {
                Mode::None => direct,
                Mode::Ipip => Want::Via {
                    gateway: peer.ip,
                    dev: Dev::Tunnel,
                    onlink: true,
                },
                Mode::Vxlan => {
                    let (Some(tip), Some(mac)) = (peer.tunnel_ip, peer.tunnel_mac_bytes()) else {
                        continue; // the peer has not published its VTEP yet
                    };
                    out.neighbours.insert((tip, mac));
                    out.fdb.insert((mac, peer.ip));
                    Want::Via {
                        gateway: tip,
                        dev: Dev::Tunnel,
                        onlink: true,
                    }
                }
            }
        };
        out.routes.insert(b.cidr, want);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// The seed's five nodes and their blocks.
    fn seed(mode: Mode) -> (Vec<NodeRecord>, Vec<BlockView>) {
        let rows = [
            ("sung-ubuntu01", "192.168.110.100", "10.233.95.0/24", 1u8),
            ("sung-ubuntu02", "192.168.110.101", "10.233.91.0/24", 2),
            ("sung-ubuntu03", "192.168.110.102", "10.233.112.0/24", 3),
            ("sung-ubuntu04", "192.168.110.103", "10.233.99.0/24", 4),
            ("sung-ubuntu05", "192.168.110.104", "10.233.78.0/24", 5),
        ];
        let nodes = rows
            .iter()
            .map(|(n, i, b, k)| NodeRecord {
                name: n.to_string(),
                ip: ip(i),
                prefix_len: 16,
                tunnel_ip: Some(net(b).network()),
                tunnel_mac: Some(format!("66:00:00:00:00:0{k}")),
                encapsulation: mode.as_str().into(),
                routing: "datastore".into(),
            })
            .collect();
        let blocks = rows
            .iter()
            .map(|(n, _, b, _)| BlockView {
                cidr: net(b),
                node: Some(n.to_string()),
            })
            .collect();
        (nodes, blocks)
    }

    fn me(mode: Mode, cross_subnet: bool) -> Me {
        Me {
            name: "sung-ubuntu04".into(),
            ip: net("192.168.110.103/16"),
            mode,
            cross_subnet,
        }
    }

    #[test]
    fn the_seed_routes_of_sung_ubuntu04_in_ipip() {
        let (nodes, blocks) = seed(Mode::Ipip);
        let d = desired(&me(Mode::Ipip, false), &nodes, &blocks);
        let tunl = |gw: &str| Want::Via {
            gateway: ip(gw),
            dev: Dev::Tunnel,
            onlink: true,
        };
        let want: BTreeMap<Ipv4Net, Want> = [
            (net("10.233.78.0/24"), tunl("192.168.110.104")),
            (net("10.233.91.0/24"), tunl("192.168.110.101")),
            (net("10.233.95.0/24"), tunl("192.168.110.100")),
            (net("10.233.99.0/24"), Want::Blackhole),
            (net("10.233.112.0/24"), tunl("192.168.110.102")),
        ]
        .into();
        assert_eq!(d.routes, want);
        assert!(d.neighbours.is_empty() && d.fdb.is_empty());
    }

    #[test]
    fn vxlan_routes_via_tunnel_addresses_with_neighbours_and_fdb() {
        let (nodes, blocks) = seed(Mode::Vxlan);
        let d = desired(&me(Mode::Vxlan, false), &nodes, &blocks);
        assert_eq!(
            d.routes[&net("10.233.78.0/24")],
            Want::Via {
                gateway: ip("10.233.78.0"),
                dev: Dev::Tunnel,
                onlink: true
            }
        );
        assert_eq!(d.routes[&net("10.233.99.0/24")], Want::Blackhole);
        assert_eq!(d.neighbours.len(), 4);
        assert!(d
            .neighbours
            .contains(&(ip("10.233.78.0"), [0x66, 0, 0, 0, 0, 5])));
        assert!(d
            .fdb
            .contains(&([0x66, 0, 0, 0, 0, 5], ip("192.168.110.104"))));
        // A peer without a published VTEP gets no route yet.
        let mut nodes = nodes;
        nodes[4].tunnel_mac = None;
        let d = desired(&me(Mode::Vxlan, false), &nodes, &blocks);
        assert!(!d.routes.contains_key(&net("10.233.78.0/24")));
    }

    #[test]
    fn none_routes_via_node_addresses_on_the_uplink() {
        let (nodes, blocks) = seed(Mode::None);
        let d = desired(&me(Mode::None, false), &nodes, &blocks);
        assert_eq!(
            d.routes[&net("10.233.95.0/24")],
            Want::Via {
                gateway: ip("192.168.110.100"),
                dev: Dev::Uplink,
                onlink: false
            }
        );
        assert_eq!(d.routes.len(), 5);
    }

    #[test]
    fn cross_subnet_skips_the_tunnel_inside_the_subnet_only() {
        let (mut nodes, blocks) = seed(Mode::Ipip);
        nodes[0].ip = ip("192.169.1.10"); // sung-ubuntu01 in another subnet
        let d = desired(&me(Mode::Ipip, true), &nodes, &blocks);
        assert_eq!(
            d.routes[&net("10.233.95.0/24")],
            Want::Via {
                gateway: ip("192.169.1.10"),
                dev: Dev::Tunnel,
                onlink: true
            },
            "another subnet: tunnel"
        );
        assert_eq!(
            d.routes[&net("10.233.78.0/24")],
            Want::Via {
                gateway: ip("192.168.110.104"),
                dev: Dev::Uplink,
                onlink: false
            },
            "same subnet: direct"
        );
    }

    #[test]
    fn blocks_without_a_known_node_get_no_route() {
        let (nodes, mut blocks) = seed(Mode::Ipip);
        blocks.push(BlockView {
            cidr: net("10.233.64.0/24"),
            node: None,
        });
        blocks.push(BlockView {
            cidr: net("10.233.65.0/24"),
            node: Some("gone".into()),
        });
        let d = desired(&me(Mode::Ipip, false), &nodes, &blocks);
        assert_eq!(d.routes.len(), 5);
    }
}
