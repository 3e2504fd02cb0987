//! Nodes joining a running lab and leaving it (the soak's node churn): a node joins as `up`
//! makes one (its namespace cabled to the fabric, its agent started; the agent registers it
//! and the other nodes route to it); it leaves as a node is deleted from a cluster (its
//! processes stopped, its record and its blocks removed from the datastore, its namespace
//! removed), and the other nodes drop their routes to it.

use crate::procs;
use crate::runtime::Binaries;
use crate::scenario::Node;
use crate::state::{LabState, NodeState};
use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use podnet_netlink::{netns, Netlink, Netns, Uplink};
use std::net::Ipv4Addr;

/// A name and a fabric address nobody has, and none of a node that left. A node
/// that came back at once under the address of one just gone would be sent to the old MAC:
/// its peers' neighbour entries stay REACHABLE for up to 45 s after the last TCP ACK of the
/// old machine's BGP session, so BGP would not meet the new one for most of a minute (seen in
/// the soak). A cluster reusing an address within seconds is rare; the soak does not.
fn new_node(lab: &LabState) -> Result<Node> {
    let s = &lab.scenario;
    let taken = |name: &str| {
        s.nodes.iter().any(|n| n.name == name)
            || s.pods().iter().any(|p| p.manifest.metadata.name == name)
    };
    let name = (1..)
        .map(|k| format!("node{k}"))
        .find(|n| !taken(n))
        .expect("a free name");
    let used: Vec<Ipv4Addr> = s
        .nodes
        .iter()
        .map(|n| n.ip)
        .chain([s.gateway])
        .chain(lab.retired_ips.iter().copied())
        .collect();
    let ip = s
        .fabric
        .hosts()
        .find(|ip| !used.contains(ip))
        .with_context(|| format!("the fabric {} is full", s.fabric))?;
    Ok(Node {
        name,
        ip,
        block: None,
        roles: Vec::new(),
        segment: None,
        as_number: None,
    })
}

/// Adds a node on the fabric and starts its agent; its name and address.
pub fn add(lab: &mut LabState, bins: &Binaries) -> Result<(String, Ipv4Addr)> {
    let node = new_node(lab)?;
    let name = node.name.clone();
    let mut scenario = lab.scenario.clone();
    scenario.nodes.push(node.clone());
    scenario
        .validate()
        .context("the new node does not fit the lab")?;
    lab.scenario = scenario;
    let path = LabState::netns_path(&name);
    lab.namespaces.push(path.clone());
    lab.nodes.push(NodeState {
        name: name.clone(),
        agent: None,
    });
    lab.save()?;
    let ns = netns::create(&path)?;
    ns.run(crate::up::answer_every_probe)??;
    let (subnet, gateway) = lab.scenario.uplink_of(&node);
    let mut fabric = Netns::open(LabState::netns_path(&lab.fabric()))?.run(Netlink::open)??;
    let br = fabric.link("br0")?.context("the fabric has no br0")?;
    let port: String = format!("u{name}").chars().take(15).collect();
    fabric.plug_node(
        br.index,
        &ns,
        &Uplink {
            port: &port,
            addr: Ipv4Net::new(node.ip, subnet.prefix_len())?,
            gateway,
            onlink: false,
        },
    )?;
    let i = lab.nodes.len() - 1;
    crate::up::start_agent(lab, bins, i)?;
    lab.save()?;
    Ok((name, node.ip))
}

/// Takes node `name` out of the lab and the cluster. Its pods must be gone first.
pub fn remove(lab: &mut LabState, name: &str) -> Result<()> {
    let Some(i) = lab.nodes.iter().position(|n| n.name == name) else {
        bail!("no node {name} in lab {}", lab.name);
    };
    if lab.pods.iter().any(|p| p.node == name) {
        bail!("node {name} still has pods");
    }
    let path = LabState::netns_path(name);
    if let Some(a) = &lab.nodes[i].agent {
        procs::kill(a);
    }
    // BIRD and anything else the node ran.
    for pid in procs::in_namespaces(std::slice::from_ref(&path)) {
        procs::signal_pid(pid, libc::SIGKILL);
    }
    let p = &lab.scenario.pool;
    let pool = podnet_ipam::PoolSpec::new(p.cidr, p.block_size, false, Default::default())?;
    let node = name.to_string();
    lab.with_store(move |s| -> Result<()> {
        podnet_ipam::Ipam::new(s, pool).release_node(&node)?;
        podnet_ipam::nodes::delete(s, &node)?;
        Ok(())
    })??;
    if std::path::Path::new(&path).exists() {
        netns::remove(&path)?;
    }
    let _ = std::fs::remove_dir_all(lab.node_dir(name));
    lab.nodes.remove(i);
    if let Some(n) = lab.scenario.nodes.iter().find(|n| n.name == name) {
        lab.retired_ips.push(n.ip);
    }
    lab.scenario.nodes.retain(|n| n.name != name);
    lab.namespaces.retain(|n| *n != path);
    lab.save()
}
