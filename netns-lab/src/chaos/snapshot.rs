//! Reading the lab for the invariants: the IPAM's handles and its own consistency check, and
//! every node's veths, pod routes, block routes and egress table, each from the kernel.

use super::invariants::{NodeView, World};
use crate::block_routes;
use crate::inventory::Inventory;
use crate::state::LabState;
use anyhow::{Context, Result};
use podnet_netlink::nft::Nftables;
use podnet_netlink::{Netlink, Netns, ROUTE_PROTOCOL};
use std::collections::HashMap;

/// The agent's egress table (`podnet-agent`'s `egress::TABLE`; the lab links no agent code).
const EGRESS_TABLE: &str = "podnet";

/// The container ID of a pod handle (`podnet.<id>.<ifname>`).
fn container_of(handle: &str) -> Option<String> {
    let rest = handle.strip_prefix("podnet.")?;
    Some(rest.rsplit_once('.')?.0.to_string())
}

pub fn read(lab: &LabState) -> Result<World> {
    let (ipam_problems, handles) = lab.with_store(|s| -> Result<_> {
        let problems = podnet_ipam::inspect::verify(s).context("check the IPAM")?;
        let handles = podnet_ipam::pod_handles(s).context("list the IPAM's handles")?;
        Ok((problems, handles))
    })??;
    let inv = Inventory::read(lab);
    let blocks = block_routes::blocks(lab)?;
    let mut nodes = Vec::new();
    for n in &lab.nodes {
        let mut view = Netns::open(LabState::netns_path(&n.name))?
            .run(|| node_view(lab.block_route_protocol()))??;
        view.name = n.name.clone();
        view.want_block_routes = block_routes::want(lab, &inv, &n.name, &blocks);
        nodes.push(view);
    }
    Ok(World {
        nodes,
        ipam_problems,
        handles: handles.iter().filter_map(|h| container_of(h)).collect(),
    })
}

/// The egress table of every node.
pub fn egress_tables(
    lab: &LabState,
) -> Result<HashMap<String, Option<podnet_netlink::nft::Table>>> {
    lab.nodes
        .iter()
        .map(|n| {
            let t = Netns::open(LabState::netns_path(&n.name))?
                .run(|| Nftables::open()?.read(EGRESS_TABLE))??;
            Ok((n.name.clone(), t))
        })
        .collect()
}

/// In the node's namespace: its veths, pod routes, block routes, egress table.
fn node_view(protocol: u8) -> Result<NodeView> {
    let mut nl = Netlink::open()?;
    let links = nl.links()?;
    let names: HashMap<u32, String> = links.iter().map(|l| (l.index, l.name.clone())).collect();
    let veths = links
        .iter()
        .filter(|l| l.kind.as_deref() == Some("veth") && l.name.starts_with("cali"))
        .map(|l| (l.name.clone(), l.alias.clone()))
        .collect();
    let pod_routes = nl
        .routes()?
        .into_iter()
        .filter(|r| r.protocol == ROUTE_PROTOCOL && r.dst.prefix_len() == 32)
        .map(|r| {
            let dev = r
                .oif
                .and_then(|i| names.get(&i).cloned())
                .unwrap_or_default();
            (r.dst.addr(), dev)
        })
        .collect();
    Ok(NodeView {
        name: String::new(),
        veths,
        pod_routes,
        block_routes: block_routes::have(&mut nl, protocol)?,
        want_block_routes: vec![],
        nft: Nftables::open()?.read(EGRESS_TABLE)?,
    })
}
