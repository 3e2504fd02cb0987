//! `graph`: the live topology as Graphviz: the fabric bridge, each node with its uplink and
//! tunnel device, each pod with its eth0 and the node's cali veth, tunnels between nodes.
//! Read from the kernel and the datastore, not from the scenario.

use crate::inventory::Inventory;
use crate::state::LabState;
use anyhow::Result;
use podnet_netlink::{Netlink, Netns};
use std::fmt::Write;

fn id(s: &str) -> String {
    s.replace(['-', '.'], "_")
}

pub fn dot(lab: &LabState) -> Result<String> {
    let inv = Inventory::read(lab);
    let mut g = String::new();
    writeln!(g, "digraph \"{}\" {{", lab.name)?;
    writeln!(
        g,
        "  label=\"podnet lab {} ({}): pod network {}\"; labelloc=t; fontname=Helvetica;",
        lab.name, lab.encapsulation, lab.scenario.pool.cidr
    )?;
    writeln!(g, "  node [fontname=Helvetica, shape=box, style=rounded]; edge [fontname=Helvetica, dir=none];")?;
    writeln!(
        g,
        "  fabric [label=\"fabric bridge br0\\n{} (gateway {})\", shape=hexagon];",
        lab.scenario.fabric, lab.scenario.gateway
    )?;
    for node in &lab.scenario.nodes {
        let mut nl = Netns::open(LabState::netns_path(&node.name))?.run(Netlink::open)??;
        let links = nl.links()?;
        let addrs = nl.addresses()?;
        let addr_of = |index: u32| {
            addrs
                .iter()
                .filter(|a| a.index == index)
                .map(|a| a.net.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let n = id(&node.name);
        writeln!(
            g,
            "  subgraph cluster_{n} {{ label=\"{}\"; style=rounded; color=gray40;",
            node.name
        )?;
        for l in &links {
            let interesting = l.name == "ens3"
                || l.name == "tunl0"
                || l.name == "vxlan.calico"
                || l.name.starts_with("cali");
            if !interesting {
                continue;
            }
            let detail = if l.name.starts_with("cali") {
                format!("mtu {}\\n{}", l.mtu, l.mac_string())
            } else {
                format!("{}\\nmtu {}", addr_of(l.index), l.mtu)
            };
            writeln!(
                g,
                "    {n}_{} [label=\"{}\\n{}\"];",
                id(&l.name),
                l.name,
                detail
            )?;
        }
        let registered = inv.records.iter().any(|r| r.name == node.name);
        if let Some(b) = node.block.filter(|_| registered) {
            writeln!(g, "    {n}_block [label=\"block {b}\\n(blackhole for unused addresses)\", shape=note];")?;
        }
        writeln!(g, "  }}")?;
        writeln!(g, "  fabric -> {n}_ens3;")?;
        for p in lab.pods.iter().filter(|p| p.node == node.name) {
            let pid = id(&p.name);
            let host = p
                .result
                .as_ref()
                .and_then(|r| r["interfaces"][0]["name"].as_str())
                .unwrap_or("cali?");
            let mac = p
                .result
                .as_ref()
                .and_then(|r| r["interfaces"][1]["mac"].as_str())
                .unwrap_or("");
            let containers: Vec<&str> = p.containers.iter().map(|c| c.name.as_str()).collect();
            writeln!(g, "  pod_{pid} [label=\"pod {}\\neth0 {}/32\\n{mac}\\ncontainers: {}\", style=\"rounded,filled\", fillcolor=lightyellow];", p.name, p.ip().unwrap_or_default(), containers.join(", "))?;
            writeln!(g, "  pod_{pid} -> {n}_{} [label=\"veth\"];", id(host))?;
        }
    }
    let dev = match lab.encapsulation.as_str() {
        "ipip" => Some("tunl0"),
        "vxlan" => Some("vxlan.calico"),
        _ => None,
    };
    if let Some(dev) = dev.filter(|_| lab.scenario.nodes.len() <= 10) {
        let names: Vec<String> = lab.scenario.nodes.iter().map(|n| id(&n.name)).collect();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                writeln!(
                    g,
                    "  {a}_{d} -> {b}_{d} [style=dashed, color=steelblue, label=\"{}\"];",
                    lab.encapsulation,
                    d = id(dev)
                )?;
            }
        }
    }
    writeln!(g, "}}")?;
    Ok(g)
}
