//! A node's routes to the cluster's blocks: the ones it has (by the protocol that owns them:
//! the agent's, or BIRD's in BGP mode) and the ones it should have, from the datastore's
//! blocks and nodes, in one text form (`<block> via <ip> dev <dev> onlink`, `blackhole
//! <block>`) so the two compare as sorted lists. `test` and `chaos` both check them.

use crate::inventory::Inventory;
use crate::state::LabState;
use anyhow::Result;
use ipnet::Ipv4Net;
use podnet_netlink::{Netlink, RouteKind};
use std::collections::HashMap;

/// Every block with an affine node, from the datastore.
pub fn blocks(lab: &LabState) -> Result<Vec<(Ipv4Net, String)>> {
    let s = lab.with_store(|s| podnet_ipam::inspect::summary(s))??;
    Ok(s.blocks
        .into_iter()
        .filter_map(|b| Some((b.cidr, b.node?)))
        .collect())
}

/// The block routes `nl`'s namespace has, sorted.
pub fn have(nl: &mut Netlink, protocol: u8) -> Result<Vec<String>> {
    let links: HashMap<u32, String> = nl.links()?.into_iter().map(|l| (l.index, l.name)).collect();
    let mut have: Vec<String> = nl
        .routes()?
        .iter()
        .filter(|r| r.protocol == protocol)
        .map(|r| match r.kind {
            RouteKind::Blackhole => format!("blackhole {}", r.dst),
            RouteKind::Unicast => format!(
                "{} via {} dev {}{}",
                r.dst,
                r.gateway.map(|g| g.to_string()).unwrap_or_default(),
                r.oif
                    .and_then(|i| links.get(&i).cloned())
                    .unwrap_or_default(),
                if r.onlink { " onlink" } else { "" }
            ),
        })
        .collect();
    have.sort();
    Ok(have)
}

/// The block routes `node` should have, sorted: its own blocks a blackhole, every other
/// node's by the lab's encapsulation (none within a subnet with cross-subnet; off the node's
/// subnet, unencapsulated traffic goes by its router).
pub fn want(
    lab: &LabState,
    inv: &Inventory,
    node: &str,
    blocks: &[(Ipv4Net, String)],
) -> Vec<String> {
    let Some(me) = lab.scenario.nodes.iter().find(|n| n.name == node) else {
        return vec![];
    };
    let (subnet, gateway) = lab.scenario.uplink_of(me);
    let cross = lab.scenario.cross_subnet;
    let mut want: Vec<String> = blocks
        .iter()
        .filter_map(|(block, owner)| {
            if owner == node {
                return Some(format!("blackhole {block}"));
            }
            let r = inv.records.iter().find(|r| &r.name == owner)?;
            let same_subnet = subnet.contains(&r.ip);
            let plain = if same_subnet { r.ip } else { gateway };
            Some(match lab.encapsulation.as_str() {
                "ipip" | "vxlan" if cross && same_subnet => format!("{block} via {plain} dev ens3"),
                "ipip" => format!("{block} via {} dev tunl0 onlink", r.ip),
                "vxlan" => format!("{block} via {} dev vxlan.calico onlink", r.tunnel_ip?),
                _ => format!("{block} via {plain} dev ens3"),
            })
        })
        .collect();
    want.sort();
    want
}
