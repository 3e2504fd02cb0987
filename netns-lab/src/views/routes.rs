//! `routes NODE`: the node's routing table in `route`'s layout, node names resolved as
//! /etc/hosts would (the seed's table, row for row), with who made each route at the end
//! (`bird`, `agent`, `cni`, `kernel`).

use crate::inventory::Inventory;
use crate::state::LabState;
use anyhow::{bail, Result};
use ipnet::Ipv4Net;
use podnet_netlink::{Netlink, Netns, RouteKind};
use std::collections::HashMap;

pub fn routes(lab: &LabState, node: &str) -> Result<String> {
    if !lab.nodes.iter().any(|n| n.name == node) {
        bail!("no node {node} in lab {}", lab.name);
    }
    let inv = Inventory::read(lab);
    let mut nl = Netns::open(LabState::netns_path(node))?.run(Netlink::open)??;
    let names: HashMap<u32, String> = nl.links()?.into_iter().map(|l| (l.index, l.name)).collect();
    let mut routes = nl.routes()?;
    routes.retain(|r| r.dst.prefix_len() > 0);
    routes.sort_by_key(|r| (u32::from(r.dst.network()), r.dst.prefix_len()));
    let mut out = String::from("Kernel IP routing table\n");
    out.push_str(&format!(
        "{:<16}{:<16}{:<16}{:<6}{:<7}{:<7}{:>3} {:<16}{}\n",
        "Destination", "Gateway", "Genmask", "Flags", "Metric", "Ref", "Use", "Iface", "Origin"
    ));
    for r in &routes {
        let gateway = match r.gateway {
            Some(g) => inv
                .host_of(g)
                .map(str::to_string)
                .unwrap_or_else(|| g.to_string()),
            None => "0.0.0.0".into(),
        };
        let mut flags = String::from("U");
        if r.gateway.is_some() {
            flags.push('G');
        }
        if r.dst.prefix_len() == 32 {
            flags.push('H');
        }
        let iface = match (r.kind, r.oif) {
            (RouteKind::Blackhole, _) => "*".to_string(),
            (_, Some(i)) => names.get(&i).cloned().unwrap_or_else(|| format!("#{i}")),
            (_, None) => "*".to_string(),
        };
        out.push_str(&format!(
            "{:<16}{:<16}{:<16}{:<6}{:<7}{:<7}{:>3} {:<16}{}\n",
            r.dst.network().to_string(),
            gateway,
            netmask(r.dst).to_string(),
            flags,
            0,
            0,
            0,
            iface,
            podnet_netlink::route_origin(r.protocol)
        ));
    }
    let gateway = lab
        .scenario
        .nodes
        .iter()
        .find(|n| n.name == node)
        .map_or(lab.scenario.gateway, |n| lab.scenario.uplink_of(n).1);
    out.push_str(&format!(
        "(the default route via {gateway} is left out: it is not pod networking)\n"
    ));
    Ok(out)
}

fn netmask(n: Ipv4Net) -> std::net::Ipv4Addr {
    n.netmask()
}
